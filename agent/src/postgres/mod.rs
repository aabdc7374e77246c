//! PostgreSQL: the postmaster as a child process of the agent, the files the agent
//! manages in the data directory, the probe query, and the tools (initdb,
//! pg_basebackup, pg_rewind).
//!
//! Files: `process.rs` (the child: spawn, ready, stop, reload), `files.rs` (what
//! the agent writes into and reads from the data directory), `tools.rs` (initdb,
//! pg_basebackup, pg_rewind, pg_controldata), `conf.rs` (rendering, pure),
//! `controldata.rs` (parsing, pure), `probe.rs` (the one query per cycle),
//! `sampler.rs` (the WAL position `GET /patroni` reports, one query shared by
//! every request in flight), `types.rs` (the plain data `ha` decides on and the
//! executor hands back: data directory, source, stop mode, walsender).
//!
//! Rule: this module carries out what it is told; it holds no HA policy, and it
//! does not import `ha` (`ha` imports its types).
//! The postmaster always runs as our child: it is started with a parent-death
//! signal (SIGQUIT = immediate shutdown), so the agent's death takes postgres
//! down with it and a primary can never outlive the agent that fences it.

pub mod callbacks;
mod conf;
mod controldata;
mod files;
mod probe;
mod process;
mod sampler;
mod tls;
mod tools;
mod types;

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
    bootstrap_hba, conninfo, default_hba, param_value, parse_history_file, pgpass_text,
    primary_conninfo, quote_conf, render_hba, render_postgresql_conf, split_listen, ConfInput,
    StandbyConf,
};
pub use controldata::ControlState;
pub use probe::{Probe, ProbeResult, ReplicationInfo};
pub use sampler::{LocalConn, PgWalSource, WalSample, WalSampler, WalSource};
pub use tls::connect;
pub use types::{DataDir, Source, StopMode, Walsender};

use crate::config::{Config, Credentials};

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
    /// The passfile with the users' passwords, for libpq (`postgresql.pgpass`).
    pub pgpass: PathBuf,
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
            pgpass: cfg.pgpass(),
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

    /// Write the passfile (mode 0600, atomically, only when its text changes) and
    /// return its path, or `None` when no user has a password.
    pub fn ensure_pgpass(&self) -> Result<Option<&Path>> {
        let mut users = vec![&self.replication, &self.superuser];
        users.extend(self.rewind.as_ref());
        let text = conf::pgpass_text(&users);
        if text.is_empty() {
            return Ok(None);
        }
        let path = &self.pgpass;
        if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            return Ok(Some(path));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("postgresql.pgpass: create {}", dir.display()))?;
        }
        if path.exists() && !path.is_file() {
            bail!(
                "postgresql.pgpass: {} exists and is not a file",
                path.display()
            );
        }
        let tmp = path.with_extension("tmp-agent");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("postgresql.pgpass: create {}", tmp.display()))?;
            f.write_all(text.as_bytes())
                .with_context(|| format!("postgresql.pgpass: write {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("postgresql.pgpass: rename to {}", path.display()))?;
        Ok(Some(path))
    }

    /// A conninfo to `src` as `creds`, with the passfile, for the tools.
    pub fn tool_conninfo(&self, src: &Source, creds: &Credentials) -> Result<String> {
        let passfile = self.ensure_pgpass()?;
        Ok(conf::conninfo(&src.host, src.port, creds, passfile))
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
    /// The user's scripts around start, stop, reload and role changes.
    pub callbacks: callbacks::Callbacks,
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
    pub fn new(s: PgSettings, wake: Arc<Notify>, scripts: callbacks::Scripts) -> PgCtl {
        PgCtl {
            callbacks: callbacks::Callbacks::new(s.scope.clone(), scripts),
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
}

/// A PostgreSQL version as `server_version_num`, read as Patroni's
/// `postgres_version_to_int`: `X.Y` for 10 and later (`15.2` -> 150002), `X.Y.Z`
/// (`9.6.24` -> 90624). Anything else, or a number too big, is `None`.
pub fn version_num(v: &str) -> Option<u32> {
    let parts: Vec<u32> = v
        .trim()
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (a, b, c) = match parts.as_slice() {
        [major, minor] if *major >= 10 => (*major, 0, *minor),
        [a, b, c] => (*a, *b, *c),
        _ => return None,
    };
    a.checked_mul(10_000)?
        .checked_add(b.checked_mul(100)?)?
        .checked_add(c)
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
