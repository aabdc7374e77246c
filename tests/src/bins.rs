//! Finding the programs the tests run, and building the agent once per process.
//!
//! Rule: a missing program is a panic that names the Debian package to install;
//! a test never skips itself because something is not installed.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::dirs::{base_root, make_shared_dir};
use crate::proc::pid_alive;

/// Where the PostgreSQL binaries the agent configs point at live (`bin_dir`).
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `/usr/lib/postgresql/<v>/bin` directories, newest version first.
fn pg_bin_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.into_iter().rev().map(|(_, p)| p).collect()
}

/// Find `binary` on `PATH`, then in `/usr/lib/postgresql/*/bin` (newest first),
/// or panic: `missing <binary>: install the Debian package <pkg> (apt-get install <pkg>)`.
pub fn require(binary: &str, debian_package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(pg_bin_dirs())
        .map(|d| d.join(binary))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| {
            panic!(
                "missing {binary}: install the Debian package {debian_package} \
                 (apt-get install {debian_package})"
            )
        })
}

/// A PostgreSQL 15 program from [`PG_BIN_DIR`] (the version the agent configs
/// name), or a panic naming `postgresql-15`.
pub fn pg_bin(tool: &str) -> PathBuf {
    let p = Path::new(PG_BIN_DIR).join(tool);
    if !is_executable(&p) {
        panic!(
            "missing {tool} ({}): install the Debian package postgresql-15 \
             (apt-get install postgresql-15)",
            p.display()
        );
    }
    p
}

/// The agent binaries, staged where the `postgres` user can execute them.
#[derive(Debug, Clone)]
pub struct AgentBinaries {
    /// `agent <config.yml>`.
    pub agent: PathBuf,
    /// `agentctl`.
    pub agentctl: PathBuf,
}

static BINARIES: OnceLock<AgentBinaries> = OnceLock::new();

/// Build `agent` and `agentctl` once per test process (`cargo build -p agent --bins`)
/// and stage them in `<base>/bin-<pid>/`, readable by `postgres` even when the
/// checkout is under a root-only path. Panics with cargo's output when the build fails.
pub fn agent_binaries() -> &'static AgentBinaries {
    BINARIES.get_or_init(build_and_stage)
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .canonicalize()
        .unwrap_or_else(|_| manifest.parent().unwrap_or(manifest).to_path_buf())
}

fn build_and_stage() -> AgentBinaries {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args([
            "build",
            "-p",
            "agent",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cargo} build -p agent --bins`: {e}"));
    if !out.status.success() {
        panic!(
            "`{cargo} build -p agent --bins` failed ({}):\n{}",
            out.status,
            crate::logs::last_lines(&String::from_utf8_lossy(&out.stderr), 80)
        );
    }

    // Cargo reports where it put each executable; that also covers target dirs
    // configured in .cargo/config.toml. CARGO_TARGET_DIR is the fallback.
    let mut built: HashMap<String, PathBuf> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            built.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    };
    let find = |name: &str| -> PathBuf {
        let p = built
            .get(name)
            .cloned()
            .unwrap_or_else(|| target_dir.join("debug").join(name));
        if !is_executable(&p) {
            panic!("cargo built the agent but {} is not there", p.display());
        }
        p
    };
    let (agent, agentctl) = (find("agent"), find("agentctl"));

    let base = base_root();
    sweep_stale_bin_dirs(&base);
    let dir = base.join(format!("bin-{}", std::process::id()));
    make_shared_dir(&dir);
    AgentBinaries {
        agent: stage(&agent, &dir),
        agentctl: stage(&agentctl, &dir),
    }
}

/// Hard link (same file system) or copy `src` into `dir`, mode 0755.
fn stage(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().expect("binary has a file name"));
    let _ = std::fs::remove_file(&dst);
    if std::fs::hard_link(src, &dst).is_err() {
        std::fs::copy(src, &dst)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", src.display(), dst.display()));
    }
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dst.display()));
    dst
}

/// Staged binaries are ~100 MB each when copied; remove those of test
/// processes that are gone.
fn sweep_stale_bin_dirs(base: &Path) {
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("bin-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() as i32 && !pid_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
