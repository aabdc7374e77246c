//! HAProxy in front of a [`ClusterFixture`], configured by the project's own
//! generator (`haproxy/haproxy-config.sh`). Writes through it are measured by
//! the harness's [`crate::Writer`].
//!
//! Rule: the fixture owns its `haproxy` process (killed on drop) and keeps its
//! configuration and log (`haproxy/haproxy.log`) in the cluster's test
//! directory, so a failed test prints the log and keeps both. The config is
//! never written by hand here: it is what a user gets from the script.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use crate::bins::require;
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
}
