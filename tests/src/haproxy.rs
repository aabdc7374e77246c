//! HAProxy in front of a [`ClusterFixture`], configured by the project's own
//! generator (`haproxy/haproxy-config.sh`), and a [`Writer`] that measures how
//! long writes through a PostgreSQL port were impossible.
//!
//! Rule: the fixture owns its `haproxy` process (killed on drop) and keeps its
//! configuration and log (`haproxy/haproxy.log`) in the cluster's test
//! directory, so a failed test prints the log and keeps both. The config is
//! never written by hand here: it is what a user gets from the script.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use tokio::task::JoinHandle;

use crate::bins::require;
use crate::client::try_connect;
use crate::cluster::ClusterFixture;
use crate::ports::free_port;
use crate::proc::{kill_child, signal, wait_child};
use crate::wait::wait_for_result;

/// The repository root (the workspace that contains `tests/`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Run `haproxy/haproxy-config.sh ARGS...` and return the configuration it
/// prints; panics with its stderr when it fails.
pub fn generate_config<S: AsRef<str>>(args: &[S]) -> String {
    let script = repo_root().join("haproxy/haproxy-config.sh");
    let out = Command::new("sh")
        .arg(&script)
        .args(args.iter().map(|a| a.as_ref()))
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("the generator writes ASCII")
}

/// `haproxy -c -f <path>`: Ok, or the checker's output as the error.
pub fn check_config(path: &Path) -> Result<()> {
    let haproxy = require("haproxy", "haproxy");
    let out = Command::new(&haproxy)
        .args(["-c", "-f"])
        .arg(path)
        .output()
        .with_context(|| format!("run {} -c", haproxy.display()))?;
    if !out.status.success() {
        bail!(
            "haproxy -c -f {}: {}\n{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// How long HAProxy gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A real `haproxy -db` in front of every node of a cluster: writes on
/// [`HaproxyFixture::primary_port`], reads on [`HaproxyFixture::replica_port`],
/// stats on [`HaproxyFixture::stats_port`], all on 127.0.0.1.
pub struct HaproxyFixture {
    child: Option<Child>,
    config_path: PathBuf,
    log_path: PathBuf,
    primary_port: u16,
    replica_port: u16,
    stats_port: u16,
}

impl HaproxyFixture {
    /// The generator's defaults (`inter 1s fall 2 rise 1`, `/primary`, `/replica`).
    pub fn start(cluster: &ClusterFixture) -> HaproxyFixture {
        Self::start_with(cluster, &[])
    }

    /// With extra generator options, e.g. `["--replica-lag", "16MB"]`.
    pub fn start_with(cluster: &ClusterFixture, options: &[&str]) -> HaproxyFixture {
        let haproxy = require("haproxy", "haproxy");
        let dir = cluster.dir().subdir("haproxy");
        let (primary_port, replica_port, stats_port) = (free_port(), free_port(), free_port());
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--primary-port".into(),
            primary_port.to_string(),
            "--replica-port".into(),
            replica_port.to_string(),
            "--stats-port".into(),
            stats_port.to_string(),
        ];
        args.extend(options.iter().map(|o| o.to_string()));
        args.extend(
            cluster
                .nodes()
                .iter()
                .map(|n| format!("{}=127.0.0.1:{}:{}", n.name(), n.pg_port(), n.rest_port())),
        );
        let config_path = dir.join("haproxy.cfg");
        std::fs::write(&config_path, generate_config(&args))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        if let Err(e) = check_config(&config_path) {
            panic!("the generated configuration is invalid: {e:#}");
        }
        let log_path = dir.join("haproxy.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log fd: {e}"));
        let child = Command::new(&haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", haproxy.display()));
        HaproxyFixture {
            child: Some(child),
            config_path,
            log_path,
            primary_port,
            replica_port,
            stats_port,
        }
    }

    /// The read-write frontend: reaches the node whose `/primary` is 200.
    pub fn primary_port(&self) -> u16 {
        self.primary_port
    }

    /// The read-only frontend: round-robin over nodes whose `/replica` is 200.
    pub fn replica_port(&self) -> u16 {
        self.replica_port
    }

    pub fn stats_port(&self) -> u16 {
        self.stats_port
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Server states from the stats page.
    pub async fn states(&self) -> Result<Vec<ServerState>> {
        stats_states(self.stats_port).await
    }

    /// Wait until the servers UP in `backend` are exactly `names`.
    pub async fn wait_up(&self, backend: &str, names: &[&str], timeout: Duration) {
        wait_up(self.stats_port, backend, names, timeout).await
    }
}

impl Drop for HaproxyFixture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, Signal::SIGTERM);
            if wait_child(&mut child, STOP_GRACE).is_none() {
                kill_child(&mut child);
            }
        }
    }
}

/// One server line of HAProxy's stats CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// `primary` or `replicas` (the proxy name).
    pub backend: String,
    /// The node name.
    pub server: String,
    /// `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/1` (coming up), `MAINT`, ...
    pub status: String,
}

impl ServerState {
    /// Receiving traffic: `UP`, or `UP x/y` while failing checks accumulate.
    pub fn is_up(&self) -> bool {
        self.status == "UP" || self.status.starts_with("UP ")
    }
}

/// The server lines of the stats page at `127.0.0.1:<stats_port>` (`/;csv`).
pub async fn stats_states(stats_port: u16) -> Result<Vec<ServerState>> {
    let client = crate::tls::http_builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .context("http client")?;
    let text = client
        .get(format!("http://127.0.0.1:{stats_port}/;csv"))
        .send()
        .await
        .with_context(|| format!("GET 127.0.0.1:{stats_port}/;csv"))?
        .text()
        .await
        .context("stats body")?;
    parse_stats_csv(&text)
}

/// HAProxy's stats CSV: a `# pxname,svname,...` header, one line per frontend,
/// server and backend. Only server lines are returned.
pub fn parse_stats_csv(text: &str) -> Result<Vec<ServerState>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| anyhow!("no stats header in {text:?}"))?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| anyhow!("no {name} column"))
    };
    let (px, sv, status) = (col("pxname")?, col("svname")?, col("status")?);
    Ok(lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > status && f[sv] != "FRONTEND" && f[sv] != "BACKEND")
        .map(|f| ServerState {
            backend: f[px].to_string(),
            server: f[sv].to_string(),
            status: f[status].to_string(),
        })
        .collect())
}

/// Wait until the servers UP in `backend` of the HAProxy whose stats page is
/// on `stats_port` are exactly `names`.
pub async fn wait_up(stats_port: u16, backend: &str, names: &[&str], timeout: Duration) {
    let want: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    let want = &want;
    let what = format!("HAProxy backend {backend} to have exactly {want:?} UP");
    wait_for_result(&what, timeout, Duration::from_millis(100), || async move {
        let states = stats_states(stats_port)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let up: BTreeSet<String> = states
            .iter()
            .filter(|s| s.backend == backend && s.is_up())
            .map(|s| s.server.clone())
            .collect();
        if &up == want {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                states
                    .iter()
                    .filter(|s| s.backend == backend)
                    .map(|s| format!("{}={}", s.server, s.status))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await
}

/// The table [`Writer`] inserts into (created by [`Writer::start`]).
pub const WRITER_TABLE: &str = "agent_tests_writes";

/// One committed insert: when the commit was acknowledged, and which server
/// (`address:port` as the server saw itself) committed it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub at: Instant,
    pub server: String,
}

/// A client that inserts a row every `every` through one PostgreSQL port (as
/// an application behind HAProxy would): one connection, re-opened after any
/// error, each attempt cut off after one second.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<usize>>,
    task: Option<JoinHandle<()>>,
}

/// Connect, insert and commit must finish within this, or the attempt failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

impl Writer {
    /// Create [`WRITER_TABLE`] through `port` (panics if that fails) and start
    /// writing every `every`.
    pub async fn start(port: u16, every: Duration) -> Writer {
        let client = try_connect(&port)
            .await
            .unwrap_or_else(|e| panic!("writer: {e:#}"));
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {WRITER_TABLE} (n bigserial, at timestamptz)"
            ))
            .await
            .unwrap_or_else(|e| panic!("writer: create {WRITER_TABLE}: {e}"));
        drop(client);
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let errors: Arc<Mutex<usize>> = Arc::default();
        let (stop2, acks2, errors2) = (stop.clone(), acks.clone(), errors.clone());
        let task = tokio::spawn(async move {
            let mut client = None;
            while !stop2.load(Ordering::SeqCst) {
                let started = Instant::now();
                match tokio::time::timeout(WRITE_TIMEOUT, insert(port, &mut client)).await {
                    Ok(Ok(server)) => acks2.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                        at: Instant::now(),
                        server,
                    }),
                    _ => {
                        client = None;
                        *errors2.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    }
                }
                tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
            }
        });
        Writer {
            stop,
            acks,
            errors,
            task: Some(task),
        }
    }

    /// The acknowledged writes so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Failed attempts so far.
    pub fn errors(&self) -> usize {
        *self.errors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for the first acknowledged write after `t` and return it.
    pub async fn wait_ack_after(&self, t: Instant, timeout: Duration) -> Ack {
        self.wait_ack("a write acknowledged through the port", timeout, |a| {
            a.at > t
        })
        .await
    }

    /// Wait for the first acknowledged write that `pred` accepts and return it.
    pub async fn wait_ack(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Ack) -> bool,
    ) -> Ack {
        let pred = &pred;
        wait_for_result(what, timeout, Duration::from_millis(50), || async move {
            self.acks()
                .into_iter()
                .find(|a| pred(a))
                .ok_or_else(|| format!("{} failed attempts so far", self.errors()))
        })
        .await
    }

    /// What was acknowledged so far.
    pub fn log(&self) -> WriteLog {
        WriteLog {
            acks: self.acks(),
            errors: self.errors(),
        }
    }

    /// Stop writing; returns what was acknowledged.
    pub async fn stop(mut self) -> WriteLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        WriteLog {
            acks: self.acks(),
            errors: self.errors(),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn insert(port: u16, client: &mut Option<tokio_postgres::Client>) -> Result<String> {
    if client.is_none() {
        *client = Some(try_connect(&port).await?);
    }
    let c = client.as_ref().expect("connected above");
    let row = c
        .query_one(
            &format!(
                "INSERT INTO {WRITER_TABLE} (at) VALUES (clock_timestamp()) \
                 RETURNING host(inet_server_addr()) || ':' || inet_server_port()"
            ),
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// What a [`Writer`] saw.
#[derive(Debug, Clone)]
pub struct WriteLog {
    pub acks: Vec<Ack>,
    pub errors: usize,
}

impl WriteLog {
    /// The write-unavailability window of a hand-over after `t`: from the
    /// last write acknowledged before the first write after `t` that `on_new`
    /// accepts (on the new primary), to that write. Writes that still landed on
    /// the old primary after `t` (in flight when it was killed or demoted)
    /// count as acknowledged. Returns the window, the last write before it and
    /// the first write after it.
    pub fn handover(
        &self,
        t: Instant,
        on_new: impl Fn(&Ack) -> bool,
    ) -> Option<(Duration, Ack, Ack)> {
        let i = self.acks.iter().position(|a| a.at > t && on_new(a))?;
        let before = self.acks[..i].last()?;
        let after = &self.acks[i];
        Some((after.at - before.at, before.clone(), after.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_csv_server_lines() {
        let csv = "# pxname,svname,qcur,qmax,scur,status,weight\n\
                   primary,FRONTEND,,,0,OPEN,\n\
                   primary,node1,0,0,0,UP,1\n\
                   primary,node2,0,0,0,DOWN,1\n\
                   primary,BACKEND,0,0,0,UP,1\n\
                   replicas,node2,0,0,0,UP 1/2,1\n";
        let s = parse_stats_csv(csv).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            ServerState {
                backend: "primary".into(),
                server: "node1".into(),
                status: "UP".into()
            }
        );
        assert!(!s[1].is_up());
        assert!(s[2].is_up());
    }

    #[test]
    fn handover_window() {
        let t0 = Instant::now();
        let ack = |ms: u64, server: &str| Ack {
            at: t0 + Duration::from_millis(ms),
            server: server.into(),
        };
        let log = WriteLog {
            acks: vec![
                ack(0, "old"),
                ack(20, "old"),
                ack(60, "old"), // in flight at the kill (t0 + 50 ms)
                ack(3060, "new"),
                ack(3080, "new"),
            ],
            errors: 5,
        };
        let (gap, before, after) = log
            .handover(t0 + Duration::from_millis(50), |a| a.server == "new")
            .unwrap();
        assert_eq!(gap, Duration::from_millis(3000));
        assert_eq!(before.server, "old");
        assert_eq!(before.at, t0 + Duration::from_millis(60));
        assert_eq!(after.at, t0 + Duration::from_millis(3060));
        assert!(log
            .handover(t0 + Duration::from_millis(4000), |a| a.server == "new")
            .is_none());
    }
}
