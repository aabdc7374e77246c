//! PostgreSQL: the postmaster as a child process of the agent, the files the agent
//! manages in the data directory, the probe query, and the tools (initdb,
//! pg_basebackup, pg_rewind).
//!
//! Rule: this module carries out what it is told; it holds no HA policy.
//! The postmaster always runs as our child: it is started with a parent-death
//! signal (SIGQUIT = immediate shutdown), so the agent's death takes postgres
//! down with it and a primary can never outlive the agent that fences it.

mod conf;
mod controldata;
mod probe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{watch, Notify};

pub use conf::{
    bootstrap_hba, default_hba, param_value, parse_history_file, primary_conninfo, quote_conf,
    render_hba, render_postgresql_conf, split_listen, ConfInput, StandbyConf,
};
pub use controldata::ControlState;
pub use probe::{Probe, ProbeResult};

use crate::config::{Config, Credentials};
use crate::ha::{DataDir, Source, StopMode};

/// Local postgres settings that `POST /reload` (or SIGHUP) re-reads from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPg {
    pub parameters: BTreeMap<String, Value>,
    pub pg_hba: Option<Vec<String>>,
}

impl LocalPg {
    pub fn from_config(cfg: &Config) -> LocalPg {
        LocalPg {
            parameters: cfg.postgresql.parameters.clone(),
            pg_hba: cfg
                .postgresql
                .pg_hba
                .clone()
                .or_else(|| cfg.bootstrap.pg_hba.clone()),
        }
    }
}

/// Everything the postgres layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub name: String,
    pub scope: String,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub listen_addresses: String,
    pub port: u16,
    pub superuser: Credentials,
    pub replication: Credentials,
    pub rewind: Option<Credentials>,
    /// The parts of the local configuration a reload may change.
    pub local: Arc<std::sync::RwLock<LocalPg>>,
    pub initdb_args: Vec<String>,
    pub basebackup_args: Vec<String>,
    pub post_bootstrap: Option<String>,
}

impl PgSettings {
    pub fn from_config(cfg: &Config) -> Result<PgSettings> {
        let pg = &cfg.postgresql;
        let (listen_addresses, port) = split_listen(&pg.listen)
            .ok_or_else(|| anyhow!("postgresql.listen: expected host:port, got {:?}", pg.listen))?;
        let bin_dir = crate::config::find_pg_bin_dir(pg.bin_dir.as_deref()).ok_or_else(|| {
            anyhow!(
                "postgresql.bin_dir: postgres binaries not found in PATH or /usr/lib/postgresql/*/bin \
                 (install postgresql-15 or set bin_dir)"
            )
        })?;
        Ok(PgSettings {
            name: cfg.name.clone(),
            scope: cfg.scope.clone(),
            data_dir: pg.data_dir.clone(),
            bin_dir,
            listen_addresses,
            port,
            superuser: pg.authentication.superuser.clone(),
            replication: pg.authentication.replication.clone(),
            rewind: pg.authentication.rewind.clone(),
            local: Arc::new(std::sync::RwLock::new(LocalPg::from_config(cfg))),
            initdb_args: cfg
                .bootstrap
                .initdb
                .iter()
                .flat_map(|o| o.to_args())
                .collect(),
            basebackup_args: pg.basebackup.iter().flat_map(|o| o.to_args()).collect(),
            post_bootstrap: cfg
                .bootstrap
                .post_bootstrap
                .clone()
                .or_else(|| cfg.bootstrap.post_init.clone()),
        })
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Parameters in effect: defaults < dynamic `postgresql.parameters` < local ones.
    /// Names are compared as postgres does (case-insensitively); a name or value
    /// that could not be one line of `postgresql.conf` is left out (the
    /// configuration loaders already refuse or warn about it).
    pub fn merged_parameters(&self, dynamic: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let local = self.local.read().unwrap_or_else(|e| e.into_inner());
        for (k, v) in dynamic.iter().chain(local.parameters.iter()) {
            if crate::config::check_parameter(k, v).is_ok() {
                out.insert(k.to_ascii_lowercase(), param_value(v));
            }
        }
        out
    }

    /// Where the agent connects to its own postgres: the first unix socket
    /// directory if any, else the loopback address on the configured port.
    pub fn local_conn(&self, dynamic: &BTreeMap<String, Value>) -> tokio_postgres::Config {
        let params = self.merged_parameters(dynamic);
        let mut c = tokio_postgres::Config::new();
        c.user(&self.superuser.username)
            .dbname("postgres")
            .application_name("agent")
            .port(self.port)
            .connect_timeout(Duration::from_secs(2));
        if let Some(p) = &self.superuser.password {
            c.password(p.as_bytes());
        }
        let socket_dir = match params.get("unix_socket_directories") {
            Some(dirs) => dirs
                .split(',')
                .map(str::trim)
                .find(|d| !d.is_empty())
                .map(PathBuf::from),
            None => Some(PathBuf::from("/var/run/postgresql")).filter(|p| p.is_dir()),
        };
        match socket_dir {
            Some(d) => {
                c.host_path(d);
            }
            None => {
                let first = self.listen_addresses.split(',').next().unwrap_or("").trim();
                let host = match first {
                    "" | "*" | "0.0.0.0" => "127.0.0.1",
                    "::" => "::1",
                    h => h,
                };
                c.host(host);
            }
        }
        c
    }
}

/// The running postmaster.
struct Child {
    pid: i32,
    exited: watch::Receiver<Option<String>>,
    stop_requested: Arc<AtomicBool>,
    started: Instant,
}

/// Controls the postmaster and the data directory. Shared (`Arc`) between the HA
/// loop and the background task running a long action.
pub struct PgCtl {
    pub s: PgSettings,
    child: Mutex<Option<Child>>,
    /// Woken when postgres exits, so the loop reacts at once.
    wake: Arc<Notify>,
    /// What the configuration files last said: the replica settings (`None`: a
    /// primary) and the parameters, so a reload keeps the role and a change of
    /// parameters is noticed.
    written: Mutex<Option<Written>>,
    /// `synchronous_standby_names` (synchronous mode), rendered into postgresql.conf.
    sync_names: Mutex<String>,
}

/// The replica settings (`None`: a primary) and parameters last written.
type Written = (Option<StandbyConf>, BTreeMap<String, String>);

/// What happened to the last postmaster.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcState {
    NotStarted,
    Running {
        pid: i32,
        since: Instant,
    },
    /// It exited although nobody asked it to.
    Crashed(String),
    Stopped,
}

impl PgCtl {
    pub fn new(s: PgSettings, wake: Arc<Notify>) -> PgCtl {
        PgCtl {
            s,
            child: Mutex::new(None),
            wake,
            written: Mutex::new(None),
            sync_names: Mutex::new(String::new()),
        }
    }

    fn data(&self) -> &Path {
        &self.s.data_dir
    }

    /// Is the postmaster running? Reaps an exited child and tells how it ended.
    pub fn proc_state(&self) -> ProcState {
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ch) = slot.as_ref() else {
            return ProcState::NotStarted;
        };
        let exited = ch.exited.borrow().clone();
        match exited {
            None => ProcState::Running {
                pid: ch.pid,
                since: ch.started,
            },
            Some(status) => {
                let requested = ch.stop_requested.load(Ordering::SeqCst);
                *slot = None;
                if requested {
                    ProcState::Stopped
                } else {
                    ProcState::Crashed(status)
                }
            }
        }
    }

    pub fn is_running(&self) -> bool {
        let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().is_some_and(|c| c.exited.borrow().is_none())
    }

    pub fn postmaster_pid(&self) -> Option<i32> {
        let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|c| c.exited.borrow().is_none())
            .map(|c| c.pid)
    }

    /// Examine the data directory (runs pg_controldata when initialized).
    pub async fn data_dir_state(&self) -> DataDir {
        let dir = self.data();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DataDir::Empty,
            Err(e) => return DataDir::Invalid(format!("{}: {e}", dir.display())),
        };
        if entries.count() == 0 {
            return DataDir::Empty;
        }
        if !dir.join("PG_VERSION").is_file() || !dir.join("global/pg_control").is_file() {
            return DataDir::Invalid(format!(
                "{} is not empty but is not a postgres data directory",
                dir.display()
            ));
        }
        let control = self.controldata().await.ok();
        DataDir::Initialized {
            sysid: control
                .as_ref()
                .map(|c| c.sysid.clone())
                .filter(|s| !s.is_empty()),
            control,
            standby_signal: dir.join("standby.signal").exists(),
        }
    }

    pub async fn controldata(&self) -> Result<ControlState> {
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new(self.s.bin("pg_controldata"))
                .arg(self.data())
                .env("LC_ALL", "C")
                .env("LANG", "C")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("pg_controldata timed out")?
        .context("run pg_controldata")?;
        if !out.status.success() {
            bail!(
                "pg_controldata: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        ControlState::parse(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| anyhow!("pg_controldata: unexpected output"))
    }

    /// A postmaster left behind by an earlier agent (its pid file points to a live
    /// postgres): stop it, since we cannot supervise a process that is not our child.
    pub async fn stop_orphan(&self) -> Result<()> {
        let pidfile = self.data().join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pidfile) else {
            return Ok(());
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return Ok(());
        };
        if self.postmaster_pid() == Some(pid) {
            return Ok(());
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.trim().starts_with("postgres") {
            return Ok(());
        }
        tracing::warn!(
            pid,
            "found a postgres we did not start (pid file in our data dir): stopping it"
        );
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if kill(Pid::from_raw(pid), None).is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        tokio::time::sleep(Duration::from_secs(2)).await;
        if kill(Pid::from_raw(pid), None).is_ok() {
            bail!("could not stop the leftover postmaster {pid}");
        }
        Ok(())
    }

    /// Write postgresql.conf, pg_hba.conf and standby.signal for the next start.
    pub fn write_config(
        &self,
        dynamic: &BTreeMap<String, Value>,
        standby: Option<StandbyConf>,
        hba: &[String],
    ) -> Result<()> {
        let d = self.data();
        let conf = d.join("postgresql.conf");
        let base = d.join("postgresql.base.conf");
        if !base.exists() && conf.exists() {
            let text = std::fs::read_to_string(&conf).unwrap_or_default();
            if !text.starts_with("# Managed by agent") {
                std::fs::rename(&conf, &base)
                    .context("keep initdb's postgresql.conf as postgresql.base.conf")?;
            }
        }
        let parameters = self.s.merged_parameters(dynamic);
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((standby.clone(), parameters.clone()));
        let input = ConfInput {
            listen_addresses: self.s.listen_addresses.clone(),
            port: self.s.port,
            cluster_name: self.s.scope.clone(),
            parameters,
            hba_file: d.join("pg_hba.conf").display().to_string(),
            ident_file: d.join("pg_ident.conf").display().to_string(),
            synchronous_standby_names: self
                .sync_names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            standby: standby.clone(),
        };
        write_atomic(&conf, &render_postgresql_conf(&input))?;
        write_atomic(&d.join("pg_hba.conf"), &render_hba(hba))?;
        let signal = d.join("standby.signal");
        if standby.is_some() {
            std::fs::write(&signal, b"").context("write standby.signal")?;
        } else if signal.exists() {
            std::fs::remove_file(&signal).context("remove standby.signal")?;
        }
        let _ = std::fs::remove_file(d.join("recovery.signal"));
        Ok(())
    }

    /// Do the parameters in effect differ from what the files say?
    pub fn parameters_changed(&self, dynamic: &BTreeMap<String, Value>) -> bool {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.as_ref() {
            Some((_, params)) => *params != self.s.merged_parameters(dynamic),
            None => false,
        }
    }

    /// Re-render the files with the current parameters (same role) and reload.
    pub fn reload_config(&self, dynamic: &BTreeMap<String, Value>) -> Result<()> {
        let standby = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(s, _)| s.clone())
            .ok_or_else(|| anyhow!("no configuration written yet"))?;
        self.write_config(dynamic, standby, &self.hba_lines())?;
        self.reload()
    }

    /// postgres was promoted: it removed standby.signal itself, and later
    /// re-renderings (reloads, synchronous_standby_names) must not write the
    /// replica settings of its last start back into a primary's data directory.
    /// (They did: a crash then looked like a replica's, and pg_rewind's
    /// single-user recovery refused to run with standby.signal present.)
    pub fn mark_promoted(&self) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((standby, _)) = written.as_mut() {
            *standby = None;
        }
        drop(written);
        let _ = std::fs::remove_file(self.data().join("standby.signal"));
    }

    /// Set `synchronous_standby_names`; a running postgres reloads it at once.
    pub fn set_sync_names(&self, dynamic: &BTreeMap<String, Value>, value: &str) -> Result<()> {
        *self.sync_names.lock().unwrap_or_else(|e| e.into_inner()) = value.to_string();
        let written = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if self.is_running() && written {
            self.reload_config(dynamic)?;
        }
        Ok(())
    }

    /// The pg_hba lines in effect (configured, or the defaults).
    pub fn hba_lines(&self) -> Vec<String> {
        let local = self.s.local.read().unwrap_or_else(|e| e.into_inner());
        local
            .pg_hba
            .clone()
            .unwrap_or_else(|| default_hba(&self.s.replication.username))
    }

    /// Replica settings for streaming from `src` (or from nobody).
    pub fn standby_conf(&self, src: Option<&Source>, use_slots: bool) -> StandbyConf {
        match src {
            Some(src) => StandbyConf {
                primary_conninfo: primary_conninfo(
                    &src.host,
                    src.port,
                    &self.s.replication.username,
                    self.s.replication.password.as_deref(),
                    &self.s.name,
                ),
                primary_slot_name: use_slots
                    .then(|| crate::dcs::model::slot_name_for(&self.s.name)),
            },
            None => StandbyConf {
                primary_conninfo: String::new(),
                primary_slot_name: None,
            },
        }
    }

    /// Spawn the postmaster as our child (parent-death signal SIGQUIT, own process group).
    pub fn spawn(&self) -> Result<()> {
        if self.is_running() {
            bail!("postgres is already running");
        }
        let mut cmd = tokio::process::Command::new(self.s.bin("postgres"));
        cmd.arg("-D")
            .arg(self.data())
            .arg(format!(
                "--config-file={}",
                self.data().join("postgresql.conf").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_MESSAGES", "C")
            .process_group(0);
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT).map_err(std::io::Error::from)?;
                if nix::unistd::getppid().as_raw() != parent {
                    // the agent died before prctl took effect
                    return Err(std::io::Error::other("parent exited"));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.s.bin("postgres").display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("postmaster has no pid"))? as i32;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err));
        }
        let (tx, rx) = watch::channel(None);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = tx.send(Some(status));
            wake.notify_one();
        });
        tracing::info!(pid, "postgres started");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(Child {
            pid,
            exited: rx,
            stop_requested: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        });
        Ok(())
    }

    /// Wait until postgres accepts connections, or fail if it exits or the deadline passes.
    pub async fn wait_ready(
        &self,
        dynamic: &BTreeMap<String, Value>,
        timeout: Duration,
    ) -> Result<()> {
        let conn = self.s.local_conn(dynamic);
        let deadline = Instant::now() + timeout;
        let mut last_err = String::new();
        loop {
            let exited = {
                let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
                match slot.as_ref() {
                    None => Some("not running".to_string()),
                    Some(c) => c.exited.borrow().clone(),
                }
            };
            if let Some(status) = exited {
                bail!("postgres exited during start-up ({status})");
            }
            match tokio::time::timeout(Duration::from_secs(2), conn.connect(tokio_postgres::NoTls))
                .await
            {
                Ok(Ok((client, connection))) => {
                    let h = tokio::spawn(connection);
                    let ok = client.simple_query("SELECT 1").await.is_ok();
                    drop(client);
                    h.abort();
                    if ok {
                        return Ok(());
                    }
                }
                Ok(Err(e)) => last_err = e.to_string(),
                Err(_) => last_err = "connect timed out".into(),
            }
            if Instant::now() > deadline {
                bail!("postgres did not accept connections within {timeout:?}: {last_err}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Start postgres as primary (`standby = None`) or replica, and wait until it answers.
    pub async fn start(
        &self,
        dynamic: &BTreeMap<String, Value>,
        standby: Option<StandbyConf>,
        timeout: Duration,
    ) -> Result<()> {
        self.write_config(dynamic, standby, &self.hba_lines())?;
        self.spawn()?;
        if let Err(e) = self.wait_ready(dynamic, timeout).await {
            let _ = self
                .stop(StopMode::Immediate, Duration::from_secs(10))
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Stop postgres with the given mode; escalates to immediate, then SIGKILL, after `timeout`.
    pub async fn stop(&self, mode: StopMode, timeout: Duration) -> Result<()> {
        let (pid, mut exited) = {
            let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                None => return Ok(()),
                Some(c) => {
                    c.stop_requested.store(true, Ordering::SeqCst);
                    (c.pid, c.exited.clone())
                }
            }
        };
        let sig = match mode {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        };
        tracing::info!(pid, ?mode, "stopping postgres");
        let _ = kill(Pid::from_raw(pid), sig);
        let wait = |d: Duration, rx: &mut watch::Receiver<Option<String>>| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(d, rx.wait_for(|s| s.is_some()))
                    .await
                    .is_ok()
            }
        };
        if !wait(timeout, &mut exited).await {
            tracing::warn!(pid, "postgres did not stop in time: immediate shutdown");
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            if !wait(Duration::from_secs(10), &mut exited).await {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = wait(Duration::from_secs(5), &mut exited).await;
            }
        }
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.pid == pid) {
            *slot = None;
        }
        Ok(())
    }

    /// Ask the postmaster to re-read its configuration.
    pub fn reload(&self) -> Result<()> {
        let pid = self
            .postmaster_pid()
            .ok_or_else(|| anyhow!("postgres is not running"))?;
        kill(Pid::from_raw(pid), Signal::SIGHUP).context("send SIGHUP")?;
        Ok(())
    }

    /// Run a SQL statement on the local postgres with a timeout.
    pub async fn execute(
        &self,
        dynamic: &BTreeMap<String, Value>,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>> {
        let conn = self.s.local_conn(dynamic);
        let fut = async {
            let (client, connection) = conn.connect(tokio_postgres::NoTls).await?;
            let h = tokio::spawn(connection);
            let r = client.simple_query(sql).await;
            drop(client);
            let _ = h.await;
            r
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("query timed out after {timeout:?}"))?
            .map_err(|e| anyhow!("{e}"))
    }

    /// initdb, start as primary with loopback-only trust, create the roles, then
    /// install the real pg_hba. Returns the system identifier.
    pub async fn bootstrap(
        &self,
        dynamic: &BTreeMap<String, Value>,
        timeout: Duration,
    ) -> Result<String> {
        let d = self.data();
        if let Some(parent) = d.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        let mut cmd = tokio::process::Command::new(self.s.bin("initdb"));
        cmd.arg("-D")
            .arg(d)
            .arg(format!("--username={}", self.s.superuser.username));
        for a in &self.s.initdb_args {
            if a.starts_with("--username") || a.starts_with("--pgdata") {
                continue;
            }
            cmd.arg(a);
        }
        run_tool(cmd, "initdb", tool_timeouts::INITDB).await?;
        self.write_config(dynamic, None, &bootstrap_hba())?;
        self.spawn()?;
        self.wait_ready(dynamic, timeout).await?;
        let mut sql = String::new();
        let su = &self.s.superuser;
        if let Some(pw) = &su.password {
            sql.push_str(&format!(
                "ALTER ROLE {} WITH PASSWORD {};\n",
                quote_ident(&su.username),
                quote_literal(pw)
            ));
        }
        let rep = &self.s.replication;
        if rep.username != su.username {
            sql.push_str(&create_role_sql(
                &rep.username,
                rep.password.as_deref(),
                "LOGIN REPLICATION",
            ));
        }
        if let Some(rw) = &self.s.rewind {
            if rw.username != su.username {
                sql.push_str(&create_role_sql(
                    &rw.username,
                    rw.password.as_deref(),
                    "LOGIN",
                ));
                for f in [
                    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
                    "pg_catalog.pg_stat_file(text, boolean)",
                    "pg_catalog.pg_read_binary_file(text)",
                    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
                ] {
                    sql.push_str(&format!(
                        "GRANT EXECUTE ON function {f} TO {};\n",
                        quote_ident(&rw.username)
                    ));
                }
            }
        }
        if !sql.is_empty() {
            self.execute(dynamic, &sql, Duration::from_secs(30))
                .await
                .context("create roles")?;
        }
        if let Some(script) = &self.s.post_bootstrap {
            let url = format!(
                "postgres://{}@{}:{}/postgres",
                su.username,
                self.s
                    .listen_addresses
                    .split(',')
                    .next()
                    .unwrap_or("127.0.0.1"),
                self.s.port
            );
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(format!("{script} \"$1\""))
                .arg("post_bootstrap")
                .arg(url);
            if let Some(pw) = &su.password {
                cmd.env("PGPASSWORD", pw);
            }
            run_tool(cmd, "post_bootstrap script", tool_timeouts::SCRIPT).await?;
        }
        self.write_config(dynamic, None, &self.hba_lines())?;
        self.reload()?;
        let sysid = self.controldata().await?.sysid;
        Ok(sysid)
    }

    /// pg_basebackup from `src` into the (empty) data directory.
    pub async fn basebackup(&self, src: &Source) -> Result<()> {
        let d = self.data();
        if let Some(parent) = d.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        if d.exists() {
            remove_dir_blocking(d.to_path_buf()).await?;
        }
        let mut cmd = tokio::process::Command::new(self.s.bin("pg_basebackup"));
        cmd.arg("-D")
            .arg(d)
            .args(["-X", "stream", "-c", "fast", "--no-password"])
            .arg("-h")
            .arg(&src.host)
            .arg("-p")
            .arg(src.port.to_string())
            .arg("-U")
            .arg(&self.s.replication.username)
            .env("PGAPPNAME", format!("{}-clone", self.s.name))
            .env("PGCONNECT_TIMEOUT", "5");
        for a in &self.s.basebackup_args {
            cmd.arg(a);
        }
        if let Some(pw) = &self.s.replication.password {
            cmd.env("PGPASSWORD", pw);
        }
        let r = run_tool(cmd, "pg_basebackup", tool_timeouts::BASEBACKUP).await;
        if r.is_err() && d.exists() {
            let _ = remove_dir_blocking(d.to_path_buf()).await;
        }
        r.map(|_| ())
    }

    /// pg_rewind the stopped data directory to `src`.
    pub async fn rewind(&self, src: &Source) -> Result<()> {
        let creds = self.s.rewind.as_ref().unwrap_or(&self.s.superuser);
        let conninfo = format!(
            "host={} port={} user={} dbname=postgres connect_timeout=5",
            conf::quote_libpq(&src.host),
            src.port,
            conf::quote_libpq(&creds.username)
        );
        // pg_rewind reads the source's timeline from its pg_control, which a freshly
        // promoted primary updates only with its first checkpoint. Until then
        // pg_rewind sees one timeline on both sides and declares, wrongly, that no
        // rewind is needed. Ask for that checkpoint (as Patroni does) first.
        let checkpointed = self.checkpoint_source(src).await;
        // A target that was not shut down cleanly (a fenced or crashed primary that
        // was then started as a standby and stopped again) is recovered by
        // pg_rewind in single-user mode, which refuses to run with standby.signal
        // ("standby mode is not supported by single-user servers"). Take the
        // signal files away for the rewind; put standby.signal back if it fails,
        // a successful rewind is followed by a start that writes it again.
        let signal = self.data().join("standby.signal");
        let had_signal = signal.exists();
        if had_signal {
            std::fs::remove_file(&signal).context("remove standby.signal before pg_rewind")?;
        }
        let _ = std::fs::remove_file(self.data().join("recovery.signal"));
        // pg_rewind copies the source's configuration files; ours are rewritten before start.
        let mut cmd = tokio::process::Command::new(self.s.bin("pg_rewind"));
        cmd.arg(format!("--target-pgdata={}", self.data().display()))
            .arg(format!("--source-server={conninfo}"));
        if let Some(pw) = &creds.password {
            // in the environment, not on the command line where `ps` shows it
            cmd.env("PGPASSWORD", pw);
        }
        let out = match run_tool(cmd, "pg_rewind", tool_timeouts::REWIND).await {
            Ok(out) => out,
            Err(e) => {
                if had_signal {
                    let _ = std::fs::write(&signal, b"");
                }
                return Err(e);
            }
        };
        if out.contains("source and target cluster are on the same timeline") {
            if had_signal {
                let _ = std::fs::write(&signal, b"");
            }
            if let Err(e) = checkpointed {
                tracing::warn!("could not ask {} for a checkpoint: {e:#}", src.name);
            }
            // Not a failure of the rewind (nothing was changed): the loop decides
            // again, after a pause so that this does not spin.
            tracing::warn!(
                "{}'s pg_control does not show its new timeline yet (no checkpoint since \
                 its promotion); trying again shortly",
                src.name
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    }

    /// Make sure the primary `src` has checkpointed since its promotion: its
    /// pg_control then carries its current timeline. Needs the superuser
    /// credentials to be valid on `src` (they are the same on every node).
    async fn checkpoint_source(&self, src: &Source) -> Result<()> {
        let mut c = tokio_postgres::Config::new();
        c.host(&src.host)
            .port(src.port)
            .user(&self.s.superuser.username)
            .dbname("postgres")
            .application_name("agent")
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = &self.s.superuser.password {
            c.password(p.as_bytes());
        }
        let fut = async {
            let (client, connection) = c.connect(tokio_postgres::NoTls).await?;
            let h = tokio::spawn(connection);
            let r = async {
                let row = client
                    .query_one(
                        "SELECT pg_catalog.pg_is_in_recovery(), \
                         (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())",
                        &[],
                    )
                    .await?;
                let (in_recovery, cp_tl): (bool, i32) = (row.get(0), row.get(1));
                if in_recovery {
                    return Ok::<_, tokio_postgres::Error>(());
                }
                let wal = client
                    .query_one(
                        "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())",
                        &[],
                    )
                    .await?;
                let name: String = wal.get(0);
                let tl = name
                    .get(..8)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                if (cp_tl as u32) < tl {
                    tracing::info!(
                        "{} has not checkpointed on timeline {tl} yet: CHECKPOINT",
                        src.name
                    );
                    client.batch_execute("CHECKPOINT").await?;
                }
                Ok(())
            }
            .await;
            drop(client);
            let _ = h.await;
            r
        };
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .map_err(|_| anyhow!("timed out"))?
            .map_err(|e| anyhow!("{e}"))
    }

    /// Remove the data directory so the node can be re-cloned.
    pub async fn remove_data_dir(&self) -> Result<()> {
        let d = self.data();
        if d.exists() {
            tracing::warn!(dir = %d.display(), "removing the data directory");
            remove_dir_blocking(d.to_path_buf()).await?;
        }
        Ok(())
    }

    /// The timeline history file of `timeline` from pg_wal: (timeline, switch lsn, reason).
    pub fn read_history_file(&self, timeline: u32) -> Result<Vec<(u32, u64, String)>> {
        let p = self
            .data()
            .join("pg_wal")
            .join(format!("{timeline:08X}.history"));
        let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        Ok(parse_history_file(&text))
    }
}

/// How long each tool may run before it is killed: long enough for big clusters,
/// bounded so that a hung tool cannot hold the node forever.
mod tool_timeouts {
    use std::time::Duration;
    pub const INITDB: Duration = Duration::from_secs(600);
    pub const SCRIPT: Duration = Duration::from_secs(3600);
    pub const REWIND: Duration = Duration::from_secs(6 * 3600);
    pub const BASEBACKUP: Duration = Duration::from_secs(24 * 3600);
}

/// `remove_dir_all` of a big data directory takes seconds: off the runtime's one
/// thread, so the loop, the lease and the REST API keep going.
async fn remove_dir_blocking(d: PathBuf) -> Result<()> {
    let shown = d.display().to_string();
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d))
        .await
        .map_err(|e| anyhow!("remove {shown}: {e}"))?
        .with_context(|| format!("remove {shown}"))
}

fn create_role_sql(name: &str, password: Option<&str>, options: &str) -> String {
    let pw = password
        .map(|p| format!(" PASSWORD {}", quote_literal(p)))
        .unwrap_or_default();
    format!(
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {lit}) THEN \
         CREATE ROLE {id} WITH {options}{pw}; ELSE ALTER ROLE {id} WITH {options}{pw}; END IF; END$$;\n",
        lit = quote_literal(name),
        id = quote_ident(name),
    )
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp-agent");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// Run a PostgreSQL tool, log its output, fail on a non-zero exit; returns its
/// output (stdout, then stderr).
async fn run_tool(
    mut cmd: tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_MESSAGES", "C")
        .kill_on_drop(true);
    // program and arguments only: the environment carries passwords
    let std = cmd.as_std();
    let args: Vec<String> = std
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    tracing::info!(
        tool = what,
        "running {} {}",
        std.get_program().to_string_lossy(),
        args.join(" ")
    );
    // kill_on_drop: a tool that runs past its time is killed with the future
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(r) => r.with_context(|| format!("start {what}"))?,
        Err(_) => bail!(
            "{what} did not finish within {}s; killed",
            timeout.as_secs()
        ),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in stdout.lines().chain(stderr.lines()) {
        tracing::info!(target: "postgres", "{what}: {l}");
    }
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}): {}", out.status, tail.join(" | "));
    }
    Ok(format!("{stdout}{stderr}"))
}

async fn forward_lines<R: tokio::io::AsyncRead + Unpin>(r: R) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "postgres", "{line}");
    }
}
