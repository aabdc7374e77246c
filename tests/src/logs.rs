//! Log tails for post-mortems: what a failed test prints about its processes.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Only the end of a log matters; do not read a runaway log whole.
const MAX_TAIL_BYTES: u64 = 256 * 1024;

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of the file at `path` (empty when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_TAIL_BYTES {
        let _ = f.seek(SeekFrom::Start(len - MAX_TAIL_BYTES));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    last_lines(&String::from_utf8_lossy(&buf), n)
}

/// Every `*.log` file below `dir` (not following symlinks), sorted by path.
pub fn log_files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let p = entry.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && p.extension().is_some_and(|e| e == "log") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The last `n` lines of every log file below `dir`, each under a header.
pub fn tails_below(dir: &Path, n: usize) -> String {
    let mut out = String::new();
    for f in log_files_below(dir) {
        out.push_str(&format!(
            "----- last {n} lines of {} -----\n{}\n",
            f.display(),
            tail(&f, n)
        ));
    }
    if out.is_empty() {
        out.push_str(&format!("(no *.log files below {})\n", dir.display()));
    }
    out
}
