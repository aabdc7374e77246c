//! The fence: a tiny watchdog process that stops a primary whose agent stopped
//! renewing the leader lease (safety rule 9).
//!
//! Why: the agent demotes its primary when it cannot renew the lease (safety
//! rule 2), but a *frozen* agent (SIGSTOP, a stalled VM, a runaway loop) cannot
//! demote anything, and its postgres would keep taking writes after the lease
//! expired and a replica was promoted. Patroni relies on the kernel watchdog for
//! this; we use a separate process that is not frozen with the agent.
//!
//! Protocol (one line per message on the watchdog's stdin):
//! `arm <postmaster pid> <deadline> [<data directory>]` and `disarm`, the
//! deadline in milliseconds on the fence clock ([`clock_now`], `CLOCK_BOOTTIME`,
//! shared by both processes). The deadline is absolute, computed from when the
//! lease renewal was sent, so a message delayed by a stalled agent cannot stretch
//! it. The targets are the pid (0: not started yet, e.g. a promotion or a start
//! as primary under way) and the postmaster of the data directory, found in its
//! `postmaster.pid` at the deadline (a process named `postgres*` working in that
//! directory), so a postmaster started after the last `arm` is covered too. When
//! an armed deadline passes without a new `arm`, the watchdog sends SIGQUIT
//! (immediate shutdown) to the targets, then SIGKILL to those still alive a
//! second later. When the agent dies (EOF), armed targets are stopped too.
//!
//! The watchdog kills first and logs after; its stderr is a non-blocking pipe
//! read by the agent (which forwards the lines into its log), and write errors are
//! ignored, so a full or broken stderr can neither block nor kill it. The agent
//! checks every cycle that the watchdog still runs and restarts it (re-sending the
//! armed deadline) when it does not ([`Fence::supervise`]).
//!
//! Rule: the watchdog uses only the standard library and nix; no runtime, no
//! allocation-heavy work, so it keeps working when the agent does not.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigHandler, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;

/// The argument that turns the `agent` binary into the watchdog.
pub const WATCHDOG_ARG: &str = "--fence-watchdog";

/// The watchdog's process name (`/proc/<pid>/comm`, what `ps` shows).
pub const WATCHDOG_NAME: &str = "agent-fence";

/// The fence clock: `CLOCK_BOOTTIME`, which both the agent and the watchdog read
/// (it keeps counting while the machine is suspended, as etcd's lease clock
/// does elsewhere).
pub fn clock_now() -> Duration {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
        .map(Duration::from)
        .unwrap_or_default()
}

/// The agent's handle on its watchdog process: what it must enforce, and the
/// process itself (restarted when it dies).
pub struct Fence {
    program: PathBuf,
    args: Vec<OsString>,
    /// The data directory whose postmaster an armed watchdog stops.
    data_dir: Option<PathBuf>,
    proc: Option<Watchdog>,
    /// Postmaster pid and deadline (fence clock) the watchdog enforces.
    armed: Option<(i32, Duration)>,
}

/// One running watchdog process.
struct Watchdog {
    child: Child,
    stdin: ChildStdin,
}

impl Fence {
    /// Start the watchdog for the postmaster of `data_dir`: this very executable
    /// (`/proc/self/exe`, which still works after the binary on disk was
    /// replaced) with [`WATCHDOG_ARG`].
    pub fn start(data_dir: PathBuf) -> std::io::Result<Fence> {
        let exe = PathBuf::from("/proc/self/exe");
        let program = if exe.exists() {
            exe
        } else {
            std::env::current_exe()?
        };
        let mut f = Fence::with_command(program, vec![WATCHDOG_ARG.into()])?;
        f.data_dir = Some(data_dir);
        Ok(f)
    }

    /// Start `program args` as the watchdog (tests use stand-ins).
    pub fn with_command(program: PathBuf, args: Vec<OsString>) -> std::io::Result<Fence> {
        let proc = Watchdog::spawn(&program, &args)?;
        Ok(Fence {
            program,
            args,
            data_dir: None,
            proc: Some(proc),
            armed: None,
        })
    }

    /// Postgres `pid` (0: not started yet) and the postmaster of the data
    /// directory must be stopped unless a new `arm` arrives before `deadline`
    /// (fence clock).
    pub fn arm(&mut self, pid: i32, deadline: Duration) {
        if self.armed == Some((pid, deadline)) {
            return;
        }
        self.armed = Some((pid, deadline));
        self.send_armed();
    }

    /// Move the deadline of an armed fence (a lease renewal succeeded); a
    /// disarmed fence stays disarmed.
    pub fn rearm(&mut self, deadline: Duration) {
        if let Some((pid, _)) = self.armed {
            self.arm(pid, deadline);
        }
    }

    pub fn disarm(&mut self) {
        if self.armed.take().is_some() {
            self.send_armed();
        }
    }

    /// What the watchdog enforces: postmaster pid and deadline.
    pub fn armed(&self) -> Option<(i32, Duration)> {
        self.armed
    }

    /// The watchdog's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    /// Check that the watchdog still runs; restart it when it exited (or could
    /// not be started last time), re-sending what it must enforce. Returns false
    /// when there is no watchdog: the fence is down.
    pub fn supervise(&mut self) -> bool {
        let exited = match self.proc.as_mut().map(|p| p.child.try_wait()) {
            Some(Ok(None)) => return true,
            Some(Ok(Some(status))) => Some(format!("exited ({status})")),
            Some(Err(e)) => Some(format!("cannot be waited for ({e})")),
            None => None,
        };
        match exited {
            Some(how) => self.restart(&format!("the fence watchdog {how}")),
            None => self.restart("the fence watchdog is not running"),
        }
        self.proc.is_some()
    }

    /// Tell the watchdog what to enforce now; restart it when it cannot be told.
    fn send_armed(&mut self) {
        let line = self.message();
        let Some(p) = self.proc.as_mut() else {
            return; // down: supervise() keeps trying to start one
        };
        if let Err(e) = p.stdin.write_all(line.as_bytes()) {
            self.restart(&format!("cannot write to the fence watchdog ({e})"));
        }
    }

    fn message(&self) -> String {
        match (self.armed, &self.data_dir) {
            (Some((pid, deadline)), Some(dir)) => {
                format!("arm {pid} {} {}\n", deadline.as_millis(), dir.display())
            }
            (Some((pid, deadline)), None) => format!("arm {pid} {}\n", deadline.as_millis()),
            (None, _) => "disarm\n".to_string(),
        }
    }

    /// Replace the watchdog (killing a stuck one) and re-send the armed state.
    fn restart(&mut self, why: &str) {
        self.proc = None; // Drop kills and reaps it
        match Watchdog::spawn(&self.program, &self.args) {
            Ok(mut p) => {
                let line = self.message();
                match p.stdin.write_all(line.as_bytes()) {
                    Ok(()) => {
                        tracing::error!(
                            pid = p.child.id(),
                            armed = self.armed.is_some(),
                            "{why}: restarted it"
                        );
                        self.proc = Some(p);
                    }
                    Err(e) => tracing::error!("{why}; a new one does not listen either: {e}"),
                }
            }
            Err(e) => tracing::error!("{why}; cannot start a new one: {e}"),
        }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl Watchdog {
    fn spawn(program: &PathBuf, args: &[OsString]) -> std::io::Result<Watchdog> {
        let mut child = crate::child_env::std_command(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let (Some(stdin), Some(stderr)) = (stdin, stderr) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("the watchdog has no stdin or stderr"));
        };
        // Never block the agent on a watchdog that stopped reading: a message is
        // far shorter than PIPE_BUF, so a write goes through whole or not at all.
        set_nonblocking(&stdin)?;
        let pid = child.id();
        std::thread::Builder::new()
            .name("fence-log".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    match line {
                        Ok(l) => tracing::error!(pid, "fence watchdog: {l}"),
                        Err(_) => break,
                    }
                }
            })?;
        Ok(Watchdog { child, stdin })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    let flags = fcntl(&fd, FcntlArg::F_GETFL)?;
    fcntl(
        &fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

// ---------------------------------------------------------------- the watchdog

/// What an armed watchdog stops at its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The postmaster as the agent knows it (0: none yet).
    pid: i32,
    /// Its data directory: whatever postmaster runs there at the deadline.
    data_dir: Option<PathBuf>,
}

/// One parsed message.
#[derive(Debug, PartialEq, Eq)]
enum Msg {
    /// Stop the target at `deadline` (fence clock).
    Arm {
        target: Target,
        deadline: Duration,
    },
    Disarm,
}

fn parse(line: &str) -> Option<Msg> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut it = line.splitn(4, ' ');
    match it.next()? {
        "arm" => {
            let pid = it.next()?.parse().ok()?;
            let deadline = Duration::from_millis(it.next()?.parse().ok()?);
            let data_dir = it.next().filter(|d| !d.is_empty()).map(PathBuf::from);
            Some(Msg::Arm {
                target: Target { pid, data_dir },
                deadline,
            })
        }
        "disarm" => Some(Msg::Disarm),
        _ => None,
    }
}

fn is_postgres(pid: i32) -> bool {
    pid > 1
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().starts_with("postgres"))
            .unwrap_or(false)
}

/// The pids to stop: the known postmaster, and the one `postmaster.pid` names
/// if it is a postgres process working in that data directory (a stale pid file
/// whose pid was reused by something else is ignored).
fn resolve(target: &Target) -> Vec<i32> {
    let mut pids = vec![];
    if is_postgres(target.pid) {
        pids.push(target.pid);
    }
    if let Some(dir) = &target.data_dir {
        let from_file = std::fs::read_to_string(dir.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = from_file.filter(|p| !pids.contains(p) && is_postgres(*p)) {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
            let dir = std::fs::canonicalize(dir).ok();
            if cwd.is_some() && cwd == dir {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Write a line to stderr, which is non-blocking: a full pipe drops the line, a
/// closed one returns an error we ignore (never `eprintln!`, which panics).
fn log(line: &str) {
    let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
}

fn stop_postgres(target: &Target, why: &str) {
    let pids = resolve(target);
    // Kill first: nothing, not even logging, may delay this.
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGQUIT);
    }
    if pids.is_empty() {
        log(&format!(
            "{why}; no postgres runs ({target:?}), nothing to stop\n"
        ));
        return;
    }
    log(&format!(
        "{why}: sent SIGQUIT to postgres {pids:?} so it cannot take writes\n"
    ));
    let alive = |pid: &i32| kill(Pid::from_raw(*pid), None).is_ok() && is_postgres(*pid);
    let until = clock_now() + Duration::from_secs(1);
    while clock_now() < until && pids.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = pids.into_iter().filter(alive).collect();
    for pid in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    if !left.is_empty() {
        log(&format!(
            "postgres {left:?} still ran a second after SIGQUIT: sent SIGKILL\n"
        ));
    }
}

/// Longest sleep while armed: the deadline is re-checked on the fence clock at
/// least this often (poll's own timeout does not count a suspended machine).
const ARMED_TICK: Duration = Duration::from_millis(200);

/// The watchdog process's main loop. Returns when the agent is gone.
pub fn watchdog_main() {
    let _ = nix::sys::prctl::set_name(c"agent-fence");
    // A write to a full stderr pipe fails at once instead of blocking.
    let _ = set_nonblocking(std::io::stderr());
    // Live exactly as long as the agent (EOF on stdin): a Ctrl-C or a SIGTERM to
    // the whole process group must not take the fence down before the agent.
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigIgn) };
    }
    // Read fd 0 directly: std's buffered stdin could hold a message that poll()
    // no longer sees, and a delayed `arm` would fence a healthy primary.
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut armed: Option<(Target, Duration)> = None;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let timeout = match &armed {
            Some((_, deadline)) => {
                let left = deadline.saturating_sub(clock_now()).min(ARMED_TICK);
                // round up: waking before the deadline would only spin
                PollTimeout::try_from(left.as_micros().div_ceil(1000) as i32)
                    .unwrap_or(PollTimeout::ZERO)
            }
            None => PollTimeout::NONE,
        };
        let ready = {
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
        };
        if ready {
            match nix::unistd::read(fd, &mut chunk) {
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Ok(0) | Err(_) => {
                    if let Some((target, _)) = &armed {
                        stop_postgres(target, "the agent is gone");
                    }
                    return;
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        match parse(&String::from_utf8_lossy(&line)) {
                            Some(Msg::Arm { target, deadline }) => armed = Some((target, deadline)),
                            Some(Msg::Disarm) => armed = None,
                            None => {}
                        }
                    }
                }
            }
        }
        if let Some((target, deadline)) = &armed {
            if clock_now() >= *deadline {
                stop_postgres(target, "the leader lease was not renewed in time");
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
        let arm = |pid, ms, dir: Option<&str>| {
            Some(Msg::Arm {
                target: Target {
                    pid,
                    data_dir: dir.map(PathBuf::from),
                },
                deadline: Duration::from_millis(ms),
            })
        };
        assert_eq!(parse("arm 123 4500\n"), arm(123, 4500, None));
        assert_eq!(
            parse("arm 0 4500 /var/lib/my data\n"),
            arm(0, 4500, Some("/var/lib/my data"))
        );
        assert_eq!(parse("disarm\n"), Some(Msg::Disarm));
        assert_eq!(parse("arm x 1"), None);
        assert_eq!(parse("arm 1"), None);
        assert_eq!(parse(""), None);
    }

    /// A stand-in postmaster: a copy of `sleep` named `postgres`, working in
    /// `cwd`, with its pid in `cwd/postmaster.pid`.
    fn stand_in_postgres(cwd: &std::path::Path) -> Child {
        let bin = cwd.join("postgres");
        std::fs::copy("/bin/sleep", &bin).expect("copy sleep");
        let child = std::process::Command::new(&bin)
            .arg("60")
            .current_dir(cwd)
            .spawn()
            .expect("start the stand-in");
        std::fs::write(cwd.join("postmaster.pid"), format!("{}\n/x\n", child.id())).unwrap();
        child
    }

    #[test]
    fn targets_are_the_pid_and_the_postmaster_of_the_data_dir() {
        let base = std::env::temp_dir().join(format!("fence-resolve-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let mut pa = stand_in_postgres(&a);
        let mut pb = stand_in_postgres(&b);
        let (ia, ib) = (pa.id() as i32, pb.id() as i32);
        std::thread::sleep(Duration::from_millis(50)); // exec done: comm is `postgres`
        let t = |pid, dir: Option<&PathBuf>| Target {
            pid,
            data_dir: dir.cloned(),
        };
        assert_eq!(resolve(&t(ia, None)), vec![ia]);
        assert_eq!(resolve(&t(0, Some(&a))), vec![ia], "found by its data dir");
        assert_eq!(resolve(&t(ia, Some(&a))), vec![ia], "not twice");
        assert_eq!(resolve(&t(ib, Some(&a))), vec![ib, ia]);
        // a pid file naming a postgres that works elsewhere is ignored
        std::fs::write(a.join("postmaster.pid"), format!("{ib}\n")).unwrap();
        assert_eq!(resolve(&t(0, Some(&a))), Vec::<i32>::new());
        assert_eq!(
            resolve(&t(std::process::id() as i32, None)),
            Vec::<i32>::new()
        );
        assert_eq!(resolve(&t(0, Some(&base.join("none")))), Vec::<i32>::new());
        for c in [&mut pa, &mut pb] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn clock_moves_forward() {
        let a = clock_now();
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock_now() > a);
    }

    /// A stand-in watchdog that reads its stdin and never exits on its own.
    fn stand_in() -> Fence {
        Fence::with_command(
            PathBuf::from("/bin/sh"),
            vec!["-c".into(), "exec cat >/dev/null".into()],
        )
        .expect("start /bin/sh")
    }

    fn kill_watchdog(f: &Fence) -> u32 {
        let pid = f.pid().expect("a watchdog runs");
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the watchdog");
        // wait until it is a zombie (or gone), so try_wait sees it
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        pid
    }

    #[test]
    fn a_dead_watchdog_is_restarted_and_keeps_the_arm() {
        let mut f = stand_in();
        f.arm(4242, Duration::from_secs(99));
        assert!(f.supervise());
        let old = kill_watchdog(&f);
        assert!(f.supervise(), "restarted");
        let new = f.pid().expect("a new watchdog runs");
        assert_ne!(new, old);
        assert_eq!(f.armed(), Some((4242, Duration::from_secs(99))));
    }

    #[test]
    fn a_watchdog_that_cannot_be_restarted_is_reported_down() {
        let mut f = stand_in();
        f.arm(4242, Duration::from_secs(99));
        f.program = PathBuf::from("/nonexistent/agent");
        kill_watchdog(&f);
        assert!(!f.supervise(), "the fence is down");
        assert!(!f.supervise(), "still down");
        // arming while down is remembered, and sent once a watchdog runs again
        f.arm(4243, Duration::from_secs(98));
        f.program = PathBuf::from("/bin/sh");
        assert!(f.supervise());
        assert_eq!(f.armed(), Some((4243, Duration::from_secs(98))));
    }

    #[test]
    fn rearm_moves_only_an_armed_deadline() {
        let mut f = stand_in();
        f.rearm(Duration::from_secs(5));
        assert_eq!(f.armed(), None);
        f.arm(7, Duration::from_secs(5));
        f.rearm(Duration::from_secs(9));
        assert_eq!(f.armed(), Some((7, Duration::from_secs(9))));
        f.disarm();
        assert_eq!(f.armed(), None);
    }
}
