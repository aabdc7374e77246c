//! The local target: the harness's [`ClusterFixture`] of three agent nodes on
//! loopback with a three-member etcd ([`EtcdMode::Three`]), every agent's etcd
//! traffic through its own cuttable proxies ([`crate::ClusterBuilder::proxied`]), and
//! HAProxy in front.
//!
//! ```text
//!  writer -> HAProxy :rw/:ro -> node0..2 (agent + postgres)       sampler -> each postgres directly
//!                                  | etcd traffic through proxy[node][member]
//!                              etcd0  etcd1  etcd2   (one quorum)
//! ```
//!
//! Rule: network faults exist only inside this process: a partition cuts the
//! node's proxies (bytes stop in both directions, connections hang, as with a
//! dropped link), so nothing on the machine outside the suite's own loopback
//! sockets is touched; a slow link delays every byte in the same proxies.
//! Quorum loss is SIGSTOP of two etcd members.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use serde_json::json;

use super::target::{Target, Timings};
use super::Scenario;
use crate::pg::Pg;
use crate::proc::{proc_comm, signal};
use crate::sampler::Addrs;
use crate::{ClusterFixture, EtcdMode, HaproxyFixture};

/// How long a node gets to stop on SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// A statement the suite runs on a node to inject a fault.
const QUERY: Duration = Duration::from_secs(3);
/// The `application_name` of the agent's own connection to its postgres.
const AGENT_APP: &str = "agent";

/// Three local nodes, three etcd members, HAProxy; owns them all.
pub struct LocalTarget {
    // Drop order: HAProxy, then the cluster (which heals its proxies and
    // resumes etcd before it stops the agents, so a primary hands over cleanly).
    haproxy: HaproxyFixture,
    cluster: ClusterFixture,
    addrs: Addrs,
    timings: Timings,
    frozen: BTreeSet<usize>,
    cut: BTreeSet<usize>,
    paused_etcd: Vec<usize>,
    /// Stalled WAL receivers: node -> pid.
    stalled: BTreeMap<usize, i32>,
    /// Hidden unix sockets: node -> (hidden path, real path).
    hidden: BTreeMap<usize, (PathBuf, PathBuf)>,
}

impl LocalTarget {
    /// Start everything and wait for one primary, two streaming replicas and
    /// HAProxy routing to the primary.
    pub async fn start(name: &str, timings: Timings) -> Result<LocalTarget> {
        let max_lag = timings.maximum_lag_on_failover;
        let cluster = ClusterFixture::builder(name)
            .nodes(3)
            .etcd(EtcdMode::Three)
            .proxied()
            .ttl(timings.ttl)
            .loop_wait(timings.loop_wait)
            .retry_timeout(timings.retry_timeout)
            .configure(move |_, cfg| {
                cfg["bootstrap"]["dcs"]["maximum_lag_on_failover"] = json!(max_lag);
            })
            .start()
            .await;
        let p = cluster.wait_formed().await;
        let haproxy = HaproxyFixture::start(&cluster);
        haproxy
            .wait_up(
                "primary",
                &[cluster.node(p).name()],
                Duration::from_secs(30),
            )
            .await;
        let addrs: Addrs = Arc::new(Mutex::new(
            cluster
                .nodes()
                .iter()
                .map(|n| Pg::local(n.pg_port()))
                .collect(),
        ));
        Ok(LocalTarget {
            haproxy,
            cluster,
            addrs,
            timings,
            frozen: BTreeSet::new(),
            cut: BTreeSet::new(),
            paused_etcd: Vec::new(),
            stalled: BTreeMap::new(),
            hidden: BTreeMap::new(),
        })
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i >= self.cluster.len() {
            bail!("no node {i}");
        }
        Ok(())
    }

    fn pg(&self, i: usize) -> Pg {
        self.addrs.lock().unwrap_or_else(|e| e.into_inner())[i].clone()
    }

    /// The unix socket node `i`'s agent connects through (the first, and
    /// only, `unix_socket_directories` entry of the harness is the node's dir).
    fn socket(&self, i: usize) -> PathBuf {
        let node = self.cluster.node(i);
        node.dir().join(format!(".s.PGSQL.{}", node.pg_port()))
    }
}

/// SIGCONT `pid` if it is still a postgres process (not a reused pid).
fn resume_postgres_pid(pid: i32) {
    if proc_comm(pid).is_some_and(|c| c.starts_with("postgres")) {
        signal(pid, Signal::SIGCONT);
    }
}

/// Put a hidden socket back, unless a new postmaster made a new one meanwhile.
fn unhide(hidden: &PathBuf, real: &PathBuf) -> Result<()> {
    if real.exists() {
        std::fs::remove_file(hidden).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
    } else if hidden.exists() {
        std::fs::rename(hidden, real)
    } else {
        Ok(())
    }
    .with_context(|| format!("put {} back", real.display()))
}

impl Target for LocalTarget {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn names(&self) -> Vec<String> {
        self.cluster.names()
    }

    fn addrs(&self) -> Addrs {
        self.addrs.clone()
    }

    fn rw(&self) -> Pg {
        Pg::local(self.haproxy.primary_port())
    }

    fn ro(&self) -> Pg {
        Pg::local(self.haproxy.replica_port())
    }

    fn rest_base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.cluster.node(i).rest_port())
    }

    fn rest_auth(&self) -> Option<(String, String)> {
        None
    }

    fn prefix(&self) -> String {
        self.cluster.prefix()
    }

    fn timings(&self) -> Timings {
        self.timings
    }

    fn supports(&self, _: Scenario) -> bool {
        true
    }

    fn logs_hint(&self) -> String {
        self.cluster.dir().path().display().to_string()
    }

    fn keep(&mut self) {
        self.cluster.keep_dir();
    }

    async fn etcd_get(&self, key: &str) -> Result<Option<String>> {
        self.cluster.kv().try_get(key).await
    }

    async fn etcd_put(&self, key: &str, value: &str) -> Result<()> {
        self.cluster.kv().try_put(key, value).await
    }

    async fn kill_node(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        self.frozen.remove(&i);
        let node = self.cluster.node_mut(i);
        if node.pid().is_none() {
            bail!("{}: agent not running", node.name());
        }
        tokio::task::block_in_place(|| node.kill_all());
        Ok(())
    }

    async fn stop_node(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        self.frozen.remove(&i);
        let node = self.cluster.node_mut(i);
        let name = node.name().to_string();
        match tokio::task::block_in_place(|| node.stop_term(STOP_TIMEOUT)) {
            Some(_) => Ok(()),
            None => Err(anyhow!(
                "{name}: agent not running or still running {STOP_TIMEOUT:?} after SIGTERM"
            )),
        }
    }

    async fn start_node(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        let node = self.cluster.node_mut(i);
        if node.is_running() {
            bail!("{}: agent already running", node.name());
        }
        // A killed agent's postgres dies with it (parent-death signal), but
        // give a postmaster that is still shutting down a moment to go.
        for _ in 0..50 {
            if node.postmaster_pid().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node.start();
        Ok(())
    }

    async fn kill_postgres(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        let node = self.cluster.node(i);
        node.kill_postgres()
            .map(|_| ())
            .ok_or_else(|| anyhow!("{}: no postmaster running", node.name()))
    }

    async fn freeze_agent(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        let node = self.cluster.node(i);
        if node.pid().is_none() {
            bail!("{}: agent not running", node.name());
        }
        node.pause_agent();
        self.frozen.insert(i);
        Ok(())
    }

    async fn thaw_agent(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        self.cluster.node(i).resume_agent();
        self.frozen.remove(&i);
        Ok(())
    }

    async fn cut_dcs(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        self.cluster.cut_dcs(i);
        self.cut.insert(i);
        Ok(())
    }

    async fn heal_dcs(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        self.cluster.heal_dcs(i);
        self.cut.remove(&i);
        Ok(())
    }

    async fn slow_dcs(&mut self, i: usize, latency: Duration) -> Result<()> {
        self.check_index(i)?;
        self.cluster.slow_dcs(i, latency);
        // heal_all restores the link (no cut, no delay).
        self.cut.insert(i);
        Ok(())
    }

    async fn stall_receiver(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        let pid = self.pg(i).walreceiver_pid(QUERY).await?;
        if !proc_comm(pid).is_some_and(|c| c.starts_with("postgres")) {
            bail!("pid {pid} (the WAL receiver of node {i}) is not a postgres process");
        }
        if !signal(pid, Signal::SIGSTOP) {
            bail!("cannot SIGSTOP the WAL receiver {pid} of node {i}");
        }
        self.stalled.insert(i, pid);
        Ok(())
    }

    async fn resume_receiver(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        if let Some(pid) = self.stalled.remove(&i) {
            resume_postgres_pid(pid);
        }
        Ok(())
    }

    async fn break_probe(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        let real = self.socket(i);
        let hidden = PathBuf::from(format!("{}.chaos-hidden", real.display()));
        std::fs::rename(&real, &hidden).with_context(|| format!("hide {}", real.display()))?;
        self.hidden.insert(i, (hidden, real));
        self.pg(i).terminate(AGENT_APP, QUERY).await?;
        Ok(())
    }

    async fn mend_probe(&mut self, i: usize) -> Result<()> {
        self.check_index(i)?;
        match self.hidden.remove(&i) {
            Some((hidden, real)) => unhide(&hidden, &real),
            None => Ok(()),
        }
    }

    async fn lose_quorum(&mut self, seed: u64) -> Result<String> {
        let n = self.cluster.etcd_members().len();
        let survivor = (seed % n as u64) as usize;
        let victims: Vec<usize> = (0..n).filter(|m| *m != survivor).collect();
        for m in &victims {
            self.cluster.etcd_members().pause(*m);
        }
        self.paused_etcd = victims.clone();
        Ok(format!(
            "SIGSTOP etcd{} (etcd{survivor} left running)",
            victims
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", etcd")
        ))
    }

    async fn restore_quorum(&mut self) -> Result<()> {
        self.cluster.etcd_members().resume_all();
        self.paused_etcd.clear();
        Ok(())
    }

    async fn heal_all(&mut self) {
        self.cluster.etcd_members().resume_all();
        self.paused_etcd.clear();
        for (_, pid) in std::mem::take(&mut self.stalled) {
            resume_postgres_pid(pid);
        }
        for (_, (hidden, real)) in std::mem::take(&mut self.hidden) {
            if let Err(e) = unhide(&hidden, &real) {
                eprintln!("chaos: {e:#}");
            }
        }
        for i in std::mem::take(&mut self.cut) {
            self.cluster.heal_dcs(i);
        }
        for i in std::mem::take(&mut self.frozen) {
            self.cluster.node(i).resume_agent();
        }
        for i in 0..self.cluster.len() {
            if !self.cluster.node_mut(i).is_running() {
                let _ = self.start_node(i).await;
            }
        }
    }
}

impl Drop for LocalTarget {
    fn drop(&mut self) {
        // (The cluster resumes etcd and heals the proxies itself.)
        for i in &self.frozen {
            self.cluster.node(*i).resume_agent();
        }
        for pid in self.stalled.values() {
            resume_postgres_pid(*pid);
        }
        for (hidden, real) in self.hidden.values() {
            let _ = unhide(hidden, real);
        }
    }
}
