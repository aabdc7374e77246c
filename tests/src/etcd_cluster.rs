//! A multi-member etcd (one quorum) on free loopback ports, each member a child
//! of the test process: what losing etcd's quorum looks like to the agents.
//!
//! Rule: the fixture owns the members; `Drop` kills and reaps every one of
//! them, paused or not. Pausing a majority (SIGSTOP) loses the quorum without
//! losing data: the member left running answers nothing that needs consensus,
//! and the agents see timeouts, as in a real outage. Keys are read through any
//! member's HTTP/JSON gateway that answers.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::bins::require;
use crate::dirs::make_shared_dir;
use crate::etcd::{b64, kvs, prefix_end};
use crate::ports::free_port;
use crate::proc::{kill_child, signal};

/// How long the members may take to elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one HTTP request to a member.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// One member: its ports, directory and (while running) its process.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A running etcd cluster of N members (`etcd0` .. `etcd<n-1>`).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
}

impl EtcdCluster {
    /// Start `n` members with data and logs in `<dir>/etcd<i>` and
    /// `<dir>/etcd<i>.log`; returns once every member reports healthy (a
    /// leader is elected).
    pub async fn start(dir: &Path, n: usize) -> EtcdCluster {
        make_shared_dir(dir);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("etcd{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(format!("etcd{i}")),
                log_path: dir.join(format!("etcd{i}.log")),
                child: None,
                paused: false,
            })
            .collect();
        let token = format!("agent-chaos-{}", members[0].client_port);
        let mut cluster = EtcdCluster { members, token };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(START_TIMEOUT).await;
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let bin = require("etcd", "etcd-server");
        let initial = self.initial_cluster();
        let token = self.token.clone();
        let m = &mut self.members[i];
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", m.log_path.display()));
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={token}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr");
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("ETCD") && k != "ETCD_UNSUPPORTED_ARCH" {
                cmd.env_remove(k.as_ref());
            }
        }
        if cfg!(target_arch = "aarch64") {
            cmd.env("ETCD_UNSUPPORTED_ARCH", "arm64");
        }
        let _ = writeln!(
            log,
            "===== harness: starting {} {} on {client} =====",
            bin.display(),
            m.name
        );
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log fd: {e}"));
        cmd.stdin(Stdio::null()).stdout(log).stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        m.child = Some(child);
        m.paused = false;
    }

    /// Wait until every running member reports healthy; panics after `timeout`
    /// with the tail of the logs.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for i in 0..self.members.len() {
                let m = &mut self.members[i];
                let Some(child) = m.child.as_mut() else {
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited ({status}); last lines of {}:\n{}",
                        m.name,
                        m.log_path.display(),
                        crate::logs::tail(&m.log_path, 40)
                    );
                }
                if !self.is_healthy(i).await {
                    all = false;
                }
            }
            if all {
                return;
            }
            if Instant::now() >= deadline {
                let tails: String = self
                    .members
                    .iter()
                    .map(|m| {
                        format!(
                            "--- {}:\n{}\n",
                            m.log_path.display(),
                            crate::logs::tail(&m.log_path, 20)
                        )
                    })
                    .collect();
                panic!("etcd cluster not healthy after {timeout:?}:\n{tails}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `127.0.0.1:<client port>` of member `i`, the form `etcd3.hosts` takes.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The log file of member `i`.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log_path
    }

    /// Freeze member `i` (SIGSTOP): its connections stay open, nothing answers.
    pub fn pause(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(c) = &m.child {
            signal(c.id() as i32, Signal::SIGSTOP);
            m.paused = true;
        }
    }

    /// Undo [`EtcdCluster::pause`] (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(c) = &m.child {
            signal(c.id() as i32, Signal::SIGCONT);
        }
        m.paused = false;
    }

    /// Resume every paused member.
    pub fn resume_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i);
            }
        }
    }

    /// SIGKILL member `i` (data kept; [`EtcdCluster::restart`] brings it back).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            kill_child(&mut c);
        }
        self.members[i].paused = false;
    }

    /// Start member `i` again on its ports and data (after [`EtcdCluster::kill`]).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
    }

    /// True when member `i` answers `GET /health` with `{"health":"true"}`.
    pub async fn is_healthy(&self, i: usize) -> bool {
        let url = format!("http://{}/health", self.endpoint(i));
        let Ok(resp) = http_client().get(url).send().await else {
            return false;
        };
        match resp.json::<Value>().await {
            Ok(v) => v["health"] == "true" || v["health"] == true,
            Err(_) => false,
        }
    }

    /// POST to `/v3/<path>` on the first running, unpaused member that answers.
    async fn gateway(&self, path: &str, body: Value) -> Result<Value> {
        let mut last = anyhow!("no etcd member is running");
        for m in self
            .members
            .iter()
            .filter(|m| m.child.is_some() && !m.paused)
        {
            let url = format!("http://127.0.0.1:{}/v3/{path}", m.client_port);
            let attempt = async {
                let resp = http_client()
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let status = resp.status();
                let v: Value = resp
                    .json()
                    .await
                    .with_context(|| format!("POST {url}: body"))?;
                if !status.is_success() {
                    bail!("POST {url}: {status}: {v}");
                }
                Ok(v)
            };
            match attempt.await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The value of `key`, or `None` when it does not exist.
    pub async fn try_get(&self, key: &str) -> Result<Option<String>> {
        let v = self
            .gateway("kv/range", json!({ "key": b64(key.as_bytes()) }))
            .await?;
        Ok(kvs(&v)?.into_iter().next().map(|(_, val)| val))
    }

    /// Write `key` = `value` (no lease), as `etcdctl put` or `patronictl
    /// edit-config` would.
    pub async fn try_put(&self, key: &str, value: &str) -> Result<()> {
        self.gateway(
            "kv/put",
            json!({ "key": b64(key.as_bytes()), "value": b64(value.as_bytes()) }),
        )
        .await
        .map(|_| ())
    }

    /// All `(key, value)` pairs under `prefix`, sorted by key.
    pub async fn try_get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let v = self
            .gateway(
                "kv/range",
                json!({
                    "key": b64(prefix.as_bytes()),
                    "range_end": b64(&prefix_end(prefix.as_bytes())),
                }),
            )
            .await?;
        kvs(&v)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn http_client() -> reqwest::Client {
    crate::tls::http_builder()
        .timeout(HTTP_TIMEOUT)
        .no_proxy()
        .build()
        .expect("reqwest client without TLS builds")
}
