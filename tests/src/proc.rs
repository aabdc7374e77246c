//! Processes: running as the `postgres` user, signals, and liveness checks.
//!
//! Rule: we only ever signal PIDs we started ourselves or read from a pid file
//! inside our own test directory, and for the latter we check `/proc` first.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, geteuid, Gid, Pid, Uid, User};

/// The uid and gid to run PostgreSQL and the agent as: those of the `postgres`
/// user when we are root, `None` (stay as we are) otherwise.
pub fn postgres_ids() -> Option<(Uid, Gid)> {
    if !geteuid().is_root() {
        return None;
    }
    match User::from_name("postgres") {
        Ok(Some(u)) => Some((u.uid, u.gid)),
        _ => panic!(
            "missing OS user postgres (PostgreSQL refuses to run as root): install the \
             Debian package postgresql-15 (apt-get install postgresql-15), which creates it, \
             or run `useradd --system --create-home postgres`"
        ),
    }
}

/// Give `path` to `postgres` when we are root; a no-op otherwise.
pub fn chown_to_postgres(path: &Path) {
    if let Some((uid, gid)) = postgres_ids() {
        chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("cannot chown {} to postgres: {e}", path.display()));
    }
}

/// A command that runs as `postgres` (when we are root), with `HOME` and the
/// working directory set to `home`, and without inherited `PATRONI_*` / `PG*`
/// variables that would silently change what the program does.
pub fn command_as_postgres(program: impl AsRef<OsStr>, home: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = postgres_ids() {
        // std drops supplementary groups (setgroups(0)) when switching from root.
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("PATRONI_") || k.starts_with("PG") {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.env("HOME", home).current_dir(home);
    cmd
}

/// Send `sig` to `pid`; false when the process does not exist (or is not ours to signal).
pub fn signal(pid: i32, sig: Signal) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), sig).is_ok()
}

/// The state letter from `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces or ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// True while `pid` exists and is not a zombie (an orphan may never be reaped
/// when PID 1 of a container does not reap).
pub fn pid_alive(pid: i32) -> bool {
    pid > 0 && matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// `/proc/<pid>/comm` without the newline.
pub fn proc_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Poll `pid` until it is gone or `timeout` passes; true when gone.
pub fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pid_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll our child until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGCONT (a stopped process cannot act on anything else), SIGKILL, and reap.
pub fn kill_child(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let pid = child.id() as i32;
    signal(pid, Signal::SIGCONT);
    signal(pid, Signal::SIGKILL);
    child.wait().ok()
}

/// The postmaster of `data_dir`, from the first line of `postmaster.pid`, if it
/// is alive, is called `postgres` and its pid file names this data directory.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    if let Some(dir) = lines.next() {
        let same = match (
            Path::new(dir.trim()).canonicalize(),
            data_dir.canonicalize(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => Path::new(dir.trim()) == data_dir,
        };
        if !same {
            return None;
        }
    }
    (pid_alive(pid) && proc_comm(pid).as_deref() == Some("postgres")).then_some(pid)
}

/// Stop the postmaster of `data_dir` if one is running: SIGQUIT (immediate
/// shutdown), then SIGKILL if it is still there after `grace`.
pub fn stop_postmaster(data_dir: &Path, grace: Duration) {
    let Some(pid) = postmaster_pid(data_dir) else {
        return;
    };
    signal(pid, Signal::SIGCONT);
    signal(pid, Signal::SIGQUIT);
    if !wait_pid_gone(pid, grace) && postmaster_pid(data_dir) == Some(pid) {
        signal(pid, Signal::SIGKILL);
        wait_pid_gone(pid, Duration::from_secs(5));
    }
}
