//! The fence: a tiny watchdog process that stops a primary whose agent stopped
//! renewing the leader lease.
//!
//! Why: the agent demotes its primary when it cannot renew the lease (safety
//! rule 2), but a *frozen* agent (SIGSTOP, a stalled VM, a runaway loop) cannot
//! demote anything, and its postgres would keep taking writes after the lease
//! expired and a replica was promoted. Patroni relies on the kernel watchdog for
//! this; we use a separate process that is not frozen with the agent.
//!
//! Protocol (one line per message on the watchdog's stdin):
//! `arm <postmaster pid> <milliseconds until the lease may expire>` and `disarm`.
//! When an armed deadline passes without a new `arm`, the watchdog sends SIGQUIT
//! (immediate shutdown) to the postmaster, then SIGKILL if it is still alive a
//! second later. When the agent dies (EOF), an armed postmaster is stopped too.
//!
//! Rule: the watchdog uses only the standard library and nix; no runtime, no
//! allocation-heavy work, so it keeps working when the agent does not.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The argument that turns the `agent` binary into the watchdog.
pub const WATCHDOG_ARG: &str = "--fence-watchdog";

/// The agent's handle on its watchdog process.
pub struct Fence {
    child: Child,
    stdin: ChildStdin,
    armed_pid: Option<i32>,
}

impl Fence {
    /// Start the watchdog (the same executable with [`WATCHDOG_ARG`]).
    pub fn spawn() -> std::io::Result<Fence> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(WATCHDOG_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("watchdog has no stdin"))?;
        Ok(Fence {
            child,
            stdin,
            armed_pid: None,
        })
    }

    /// Postgres `pid` must be stopped if no new `arm` arrives within `remaining`.
    pub fn arm(&mut self, pid: i32, remaining: Duration) {
        let line = format!("arm {pid} {}\n", remaining.as_millis());
        if self.stdin.write_all(line.as_bytes()).is_ok() {
            self.armed_pid = Some(pid);
        }
    }

    pub fn disarm(&mut self) {
        if self.armed_pid.take().is_some() {
            let _ = self.stdin.write_all(b"disarm\n");
        }
    }

    pub fn is_armed(&self) -> bool {
        self.armed_pid.is_some()
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.disarm();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One parsed message.
#[derive(Debug, PartialEq, Eq)]
enum Msg {
    Arm { pid: i32, ms: u64 },
    Disarm,
}

fn parse(line: &str) -> Option<Msg> {
    let mut it = line.split_whitespace();
    match it.next()? {
        "arm" => Some(Msg::Arm {
            pid: it.next()?.parse().ok()?,
            ms: it.next()?.parse().ok()?,
        }),
        "disarm" => Some(Msg::Disarm),
        _ => None,
    }
}

fn is_postgres(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().starts_with("postgres"))
        .unwrap_or(false)
}

fn stop_postgres(pid: i32, why: &str) {
    if pid <= 1 || !is_postgres(pid) {
        return;
    }
    eprintln!("agent fence: {why}: stopping postgres (pid {pid}) so it cannot take writes");
    let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if kill(Pid::from_raw(pid), None).is_err() || !is_postgres(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// The watchdog process's main loop. Returns when the agent is gone.
pub fn watchdog_main() {
    // Read fd 0 directly: std's buffered stdin could hold a message that poll()
    // no longer sees, and a delayed `arm` would fence a healthy primary.
    let stdin = std::io::stdin();
    let fd = std::os::fd::AsFd::as_fd(&stdin);
    let mut armed: Option<(i32, Instant)> = None;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let timeout = match armed {
            Some((_, deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                    .unwrap_or(PollTimeout::ZERO)
            }
            None => PollTimeout::NONE,
        };
        let ready = {
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(n) => n > 0,
                Err(nix::errno::Errno::EINTR) => false,
                Err(_) => false,
            }
        };
        if ready {
            match nix::unistd::read(fd, &mut chunk) {
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Ok(0) | Err(_) => {
                    if let Some((pid, _)) = armed {
                        stop_postgres(pid, "the agent is gone");
                    }
                    return;
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        match parse(&String::from_utf8_lossy(&line)) {
                            Some(Msg::Arm { pid, ms }) => {
                                armed = Some((pid, Instant::now() + Duration::from_millis(ms)));
                            }
                            Some(Msg::Disarm) => armed = None,
                            None => {}
                        }
                    }
                }
            }
        }
        if let Some((pid, deadline)) = armed {
            if Instant::now() >= deadline {
                stop_postgres(pid, "the leader lease was not renewed in time");
                armed = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages() {
        assert_eq!(
            parse("arm 123 4500\n"),
            Some(Msg::Arm { pid: 123, ms: 4500 })
        );
        assert_eq!(parse("disarm"), Some(Msg::Disarm));
        assert_eq!(parse("arm x 1"), None);
        assert_eq!(parse(""), None);
    }
}
