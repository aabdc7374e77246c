//! Temporary directories, one per test, shared with the `postgres` user.
//!
//! Rule: a failed test keeps its directory and prints where it is plus the tail
//! of every log file in it; a passed test leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::proc::chown_to_postgres;

/// Lines of each log printed when a test fails.
const TAIL_LINES: usize = 60;

/// `AGENT_TESTS_DIR` or `/tmp/agent-tests`, created with mode 0755 so that the
/// `postgres` user can reach the directories below it.
pub fn base_root() -> PathBuf {
    let root = std::env::var_os("AGENT_TESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/agent-tests"));
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    // Only chmod what we own: a shared base made by someone else stays as it is.
    if root
        .metadata()
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == nix::unistd::geteuid().as_raw())
        .unwrap_or(false)
    {
        let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755));
    }
    root
}

/// Create `dir` (and parents) with mode 0755, owned by `postgres` when we are root.
pub fn make_shared_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dir.display()));
    chown_to_postgres(dir);
}

/// Directory names end up in unix socket paths (max 107 bytes), so keep them short.
fn sanitize(name: &str, max: usize) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('_');
    let s = if s.is_empty() { "test" } else { s };
    s.chars().take(max).collect()
}

/// A name safe for paths and etcd keys: ASCII letters, digits, `-` and `_`.
pub fn sanitize_name(name: &str) -> String {
    sanitize(name, 200)
}

/// `<base>/<name>-<pid>-<n>`, owned by `postgres`, mode 0755.
///
/// On drop: kept when the thread is panicking (path and log tails go to
/// stderr), when [`TestDir::keep`] was called or `AGENT_TESTS_KEEP=1`;
/// removed otherwise. Drop it *after* the processes using it (declare it first,
/// or own it in the fixture that stops them).
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
    keep: bool,
}

impl TestDir {
    /// A fresh directory for the test called `name` (unique per process and call).
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base_root().join(format!("{}-{}-{n}", sanitize(name, 40), std::process::id()));
        // Leftovers of an earlier process with the same pid would confuse a post-mortem.
        let _ = std::fs::remove_dir_all(&path);
        make_shared_dir(&path);
        TestDir { path, keep: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<dir>/<rel>`, created 0755 and owned by `postgres`.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        make_shared_dir(&p);
        p
    }

    /// Keep the directory even when the test passes.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The last `lines` lines of every `*.log` file below this directory.
    pub fn log_tails(&self, lines: usize) -> String {
        crate::logs::tails_below(&self.path, lines)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== test failed; keeping {} for post-mortem =====\n{}",
                self.path.display(),
                self.log_tails(TAIL_LINES)
            );
            return;
        }
        if self.keep || std::env::var("AGENT_TESTS_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("cannot remove {}: {e}", self.path.display());
        }
    }
}
