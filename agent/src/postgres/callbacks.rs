//! User scripts run around postgres' life cycle, as Patroni runs them:
//! `postgresql.callbacks.{on_start,on_stop,on_restart,on_reload,on_role_change}`
//! get `action role scope` appended to their command line; `pre_promote` and
//! `before_stop` get no arguments and are waited for.
//!
//! Rule: no shell runs a script (its command line is split like a shell would
//! split it) and it gets the scrubbed environment ([`crate::child_env`]). The
//! callbacks run one at a time in the background, never blocking the loop: a new
//! one kills the running one's process group (SIGKILL), waits for it to exit, then
//! starts. `on_reload` has a lane of its own, as in Patroni. The waited scripts
//! are bounded by a timeout, after which their process group is killed.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{CallbackCommands, Config};

/// The event a callback reports (its first appended argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAction {
    OnStart,
    OnStop,
    OnRestart,
    OnReload,
    OnRoleChange,
}

impl CallbackAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackAction::OnStart => "on_start",
            CallbackAction::OnStop => "on_stop",
            CallbackAction::OnRestart => "on_restart",
            CallbackAction::OnReload => "on_reload",
            CallbackAction::OnRoleChange => "on_role_change",
        }
    }
}

/// The role a callback reports, as Patroni names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRole {
    Primary,
    Replica,
    /// A primary being stopped to become a replica.
    Demoted,
}

impl CallbackRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackRole::Primary => "primary",
            CallbackRole::Replica => "replica",
            CallbackRole::Demoted => "demoted",
        }
    }
}

/// Split a command line like a POSIX shell (quotes, backslashes), without running one.
pub fn split(cmd: &str) -> std::result::Result<Vec<String>, String> {
    match shlex::split(cmd) {
        None => Err("cannot split the command line (unbalanced quotes?)".into()),
        Some(v) if v.is_empty() => Err("empty command".into()),
        Some(v) => Ok(v),
    }
}

/// A callback's argv: its command line, then `action role scope`.
pub fn argv(
    cmd: &str,
    action: CallbackAction,
    role: CallbackRole,
    scope: &str,
) -> std::result::Result<Vec<String>, String> {
    let mut v = split(cmd)?;
    v.extend([
        action.as_str().to_string(),
        role.as_str().to_string(),
        scope.to_string(),
    ]);
    Ok(v)
}

/// The configured scripts and the two lanes they run in.
pub struct Callbacks {
    scope: String,
    scripts: RwLock<Scripts>,
    main: Lane,
    reload: Lane,
    /// The role the last start/stop/role-change callback reported.
    last_role: Mutex<Option<CallbackRole>>,
}

/// The scripts of the configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scripts {
    pub callbacks: CallbackCommands,
    pub pre_promote: Option<String>,
    pub before_stop: Option<String>,
}

impl Scripts {
    pub fn from_config(cfg: &Config) -> Scripts {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        Scripts {
            callbacks: cfg.postgresql.callbacks.clone().unwrap_or_default(),
            pre_promote: non_empty(&cfg.postgresql.pre_promote),
            before_stop: non_empty(&cfg.postgresql.before_stop),
        }
    }
}

impl Callbacks {
    pub fn new(scope: String, scripts: Scripts) -> Callbacks {
        Callbacks {
            scope,
            scripts: RwLock::new(scripts),
            main: Lane::default(),
            reload: Lane::default(),
            last_role: Mutex::new(None),
        }
    }

    /// Take the scripts of a re-read configuration file.
    pub fn update(&self, scripts: Scripts) {
        *self.scripts.write().unwrap_or_else(|e| e.into_inner()) = scripts;
    }

    fn scripts(&self) -> Scripts {
        self.scripts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Start the callback for `action` in the background (if one is configured).
    pub fn call(&self, action: CallbackAction, role: CallbackRole) {
        if action != CallbackAction::OnReload {
            *self.last_role.lock().unwrap_or_else(|e| e.into_inner()) = Some(role);
        }
        let s = self.scripts().callbacks;
        let cmd = match action {
            CallbackAction::OnStart => s.on_start,
            CallbackAction::OnStop => s.on_stop,
            CallbackAction::OnRestart => s.on_restart,
            CallbackAction::OnReload => s.on_reload,
            CallbackAction::OnRoleChange => s.on_role_change,
        };
        let Some(cmd) = cmd.filter(|c| !c.trim().is_empty()) else {
            return;
        };
        match argv(&cmd, action, role, &self.scope) {
            Ok(v) => {
                let lane = match action {
                    CallbackAction::OnReload => &self.reload,
                    _ => &self.main,
                };
                lane.run(v);
            }
            Err(e) => tracing::error!("callback {}: {e}", action.as_str()),
        }
    }

    /// Postgres was started in `role`: `on_start`, or `on_role_change` when it
    /// last ran as a primary and now runs as a replica (a demotion, as Patroni
    /// reports it).
    pub fn started(&self, role: CallbackRole) -> CallbackAction {
        let last = *self.last_role.lock().unwrap_or_else(|e| e.into_inner());
        let action = match (last, role) {
            (Some(CallbackRole::Primary | CallbackRole::Demoted), CallbackRole::Replica) => {
                CallbackAction::OnRoleChange
            }
            _ => CallbackAction::OnStart,
        };
        self.call(action, role);
        action
    }

    /// The role the last callback reported, if any (what postgres was).
    pub fn last_role(&self) -> Option<CallbackRole> {
        *self.last_role.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `pre_promote` and wait for it (at most `timeout`). `true` when there is
    /// none or it exited with 0; anything else aborts the promotion.
    pub async fn pre_promote(&self, timeout: Duration) -> bool {
        let Some(cmd) = self.scripts().pre_promote else {
            return true;
        };
        match run_waited(&cmd, timeout).await {
            Ok(status) if status.success() => {
                tracing::info!("pre_promote script `{cmd}` exited with 0");
                true
            }
            Ok(status) => {
                tracing::warn!("pre_promote script `{cmd}` exited with {status}");
                false
            }
            Err(e) => {
                tracing::error!("pre_promote script `{cmd}`: {e:#}");
                false
            }
        }
    }

    /// Run `before_stop` and wait for it (at most `timeout`); its exit code is logged.
    pub async fn before_stop(&self, timeout: Duration) {
        let Some(cmd) = self.scripts().before_stop else {
            return;
        };
        match run_waited(&cmd, timeout).await {
            Ok(status) => tracing::info!("before_stop script `{cmd}` exited with {status}"),
            Err(e) => tracing::error!("before_stop script `{cmd}`: {e:#}"),
        }
    }

    /// Wait (at most `timeout`) for the callbacks started so far to finish (at shutdown).
    pub async fn drain(&self, timeout: Duration) {
        let handles = [self.main.last(), self.reload.last()];
        let _ = tokio::time::timeout(timeout, async {
            for h in handles.into_iter().flatten() {
                let _ = h.await;
            }
        })
        .await;
    }
}

fn command(argv: &[String]) -> Result<tokio::process::Command> {
    let (program, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let mut cmd = crate::child_env::command(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    Ok(cmd)
}

/// Kill the process group of a child that has not been reaped yet (so its pid,
/// the group id, cannot have been reused), then reap it.
async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill().await;
}

/// Run a script without arguments and wait for it, at most `timeout`.
async fn run_waited(cmd: &str, timeout: Duration) -> Result<ExitStatus> {
    let argv = split(cmd).map_err(|e| anyhow!(e))?;
    let mut child = command(&argv)?.spawn()?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(r) => Ok(r?),
        Err(_) => {
            kill_group(&mut child).await;
            Err(anyhow!("did not finish within {timeout:?}; killed"))
        }
    }
}

/// One callback at a time: starting one cancels the running one.
#[derive(Default)]
struct Lane {
    state: Arc<Mutex<LaneState>>,
}

#[derive(Default)]
struct LaneState {
    /// Bumped by every call; a task that is no longer the newest does not start.
    generation: u64,
    /// Cancels the running callback.
    cancel: Option<oneshot::Sender<()>>,
    /// The newest task; the next one waits for it.
    last: Option<JoinHandle<()>>,
}

impl Lane {
    fn run(&self, argv: Vec<String>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.generation = st.generation.wrapping_add(1);
        let mine = st.generation;
        if let Some(cancel) = st.cancel.take() {
            let _ = cancel.send(());
        }
        let previous = st.last.take();
        let state = self.state.clone();
        st.last = Some(tokio::spawn(async move {
            if let Some(p) = previous {
                let _ = p.await;
            }
            let (tx, rx) = oneshot::channel();
            let mut child = {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                if st.generation != mine {
                    return; // a newer callback replaced this one before it started
                }
                let spawned = command(&argv).and_then(|mut c| Ok(c.spawn()?));
                match spawned {
                    Ok(child) => {
                        st.cancel = Some(tx);
                        child
                    }
                    Err(e) => {
                        tracing::error!(?argv, "callback could not start: {e:#}");
                        return;
                    }
                }
            };
            tracing::info!(?argv, "callback started");
            tokio::select! {
                r = child.wait() => match r {
                    Ok(status) => tracing::info!(?argv, "callback exited with {status}"),
                    Err(e) => tracing::warn!(?argv, "callback: {e}"),
                },
                _ = rx => {
                    kill_group(&mut child).await;
                    tracing::info!(?argv, "callback killed: a newer one replaces it");
                }
            }
        }));
    }

    fn last(&self) -> Option<JoinHandle<()>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_split_like_a_shell_and_gets_action_role_scope() {
        let v = argv(
            r#"/usr/local/bin/vip.sh --iface "eth 0" 'a b' c\ d"#,
            CallbackAction::OnRoleChange,
            CallbackRole::Primary,
            "batman",
        )
        .unwrap();
        assert_eq!(
            v,
            [
                "/usr/local/bin/vip.sh",
                "--iface",
                "eth 0",
                "a b",
                "c d",
                "on_role_change",
                "primary",
                "batman"
            ]
        );
        // no shell: operators stay plain arguments
        let v = argv(
            "echo a; rm -rf /",
            CallbackAction::OnStop,
            CallbackRole::Replica,
            "s",
        )
        .unwrap();
        assert_eq!(
            v,
            ["echo", "a;", "rm", "-rf", "/", "on_stop", "replica", "s"]
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert!(split("").is_err());
        assert!(split("   ").is_err());
        assert!(split("echo 'unbalanced").is_err());
    }

    fn with_callback(callback: &str) -> Callbacks {
        let mut s = Scripts::default();
        s.callbacks.on_start = Some(callback.to_string());
        s.callbacks.on_stop = Some(callback.to_string());
        s.callbacks.on_role_change = Some(callback.to_string());
        Callbacks::new("sc".into(), s)
    }

    /// A script that records its arguments when it starts and when it ends
    /// (sleeping `$SLEEP` seconds between, read from a file).
    fn script(dir: &std::path::Path) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("cb.sh");
        let log = dir.join("log");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"start $*\" >> {log}\nif [ \"$1\" = on_start ]; then sleep 30; fi\necho \"end $*\" >> {log}\n",
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    async fn wait_for_lines(log: &std::path::Path, n: usize) -> Vec<String> {
        for _ in 0..600 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(String::from).collect();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} lines in {}", log.display());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_new_callback_kills_the_running_one_and_they_never_overlap() {
        let dir = std::env::temp_dir().join(format!("agent-cb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cb = with_callback(&script(&dir));
        let log = dir.join("log");
        cb.call(CallbackAction::OnStart, CallbackRole::Replica);
        // on_start is running (it sleeps): the next one cancels it
        wait_for_lines(&log, 1).await;
        cb.call(CallbackAction::OnRoleChange, CallbackRole::Primary);
        cb.call(CallbackAction::OnStop, CallbackRole::Primary);
        cb.drain(Duration::from_secs(60)).await;
        let lines = wait_for_lines(&log, 3).await;
        // on_start never finished; on_role_change was replaced before it started
        // or ran to its end before on_stop started; on_stop ran to its end.
        assert_eq!(lines[0], "start on_start replica sc");
        assert!(!lines.iter().any(|l| l.starts_with("end on_start")));
        let rest: Vec<&str> = lines[1..].iter().map(String::as_str).collect();
        assert!(
            rest == ["start on_stop primary sc", "end on_stop primary sc"]
                || rest
                    == [
                        "start on_role_change primary sc",
                        "end on_role_change primary sc",
                        "start on_stop primary sc",
                        "end on_stop primary sc"
                    ]
                || rest
                    == [
                        "start on_role_change primary sc",
                        "start on_stop primary sc",
                        "end on_stop primary sc"
                    ],
            "{lines:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn started_reports_a_demotion_as_a_role_change() {
        let cb = Callbacks::new("sc".into(), Scripts::default());
        assert_eq!(cb.started(CallbackRole::Replica), CallbackAction::OnStart);
        assert_eq!(cb.last_role(), Some(CallbackRole::Replica));
        assert_eq!(cb.started(CallbackRole::Replica), CallbackAction::OnStart);
        cb.call(CallbackAction::OnRoleChange, CallbackRole::Primary);
        assert_eq!(
            cb.started(CallbackRole::Replica),
            CallbackAction::OnRoleChange
        );
        cb.call(CallbackAction::OnStop, CallbackRole::Primary);
        assert_eq!(cb.started(CallbackRole::Primary), CallbackAction::OnStart);
        assert_eq!(cb.last_role(), Some(CallbackRole::Primary));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pre_promote_exit_code_decides() {
        let pre = |cmd: Option<&str>| Scripts {
            pre_promote: cmd.map(String::from),
            ..Scripts::default()
        };
        let cb = Callbacks::new("sc".into(), pre(Some("/bin/false")));
        assert!(!cb.pre_promote(Duration::from_secs(30)).await);
        cb.update(pre(Some("/bin/true")));
        assert!(cb.pre_promote(Duration::from_secs(30)).await);
        cb.update(pre(Some("/bin/sleep 60")));
        assert!(!cb.pre_promote(Duration::from_millis(200)).await);
        cb.update(pre(Some("/nonexistent/script")));
        assert!(!cb.pre_promote(Duration::from_secs(30)).await);
        cb.update(pre(None));
        assert!(cb.pre_promote(Duration::from_secs(1)).await);
    }
}
