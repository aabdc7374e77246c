//! What the scenarios need from a cluster, whatever runs it: addresses to
//! probe, the REST API, etcd reads, and the faults themselves.
//!
//! Rule: a target injects a fault and undoes it, nothing more; what a fault
//! *should* lead to is the scenarios' and the checker's business. Every method
//! returns within a bounded time, and [`Target::heal_all`] undoes every fault
//! still in place (also before the target is dropped).

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::Scenario;
use crate::pg::Pg;
use crate::sampler::Addrs;

/// One REST request must finish within this (control requests get longer).
pub const REST_TIMEOUT: Duration = Duration::from_secs(3);

/// The cluster's timing settings, as the agents run them.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub ttl: u64,
    pub loop_wait: u64,
    pub retry_timeout: u64,
    pub maximum_lag_on_failover: u64,
}

impl Timings {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl)
    }
}

/// A cluster the suite can break: the local processes or the compose stack.
#[allow(async_fn_in_trait)]
pub trait Target {
    /// `local` or `compose`.
    fn kind(&self) -> &'static str;
    /// Member names, in index order.
    fn names(&self) -> Vec<String>;
    /// The nodes' PostgreSQL addresses (shared with the sampler).
    fn addrs(&self) -> Addrs;
    /// HAProxy's read-write and read-only ports.
    fn rw(&self) -> Pg;
    fn ro(&self) -> Pg;
    /// `http://host:port` of node `i`'s REST API.
    fn rest_base(&self, i: usize) -> String;
    /// Basic-auth credentials for unsafe REST methods, if the cluster wants them.
    fn rest_auth(&self) -> Option<(String, String)>;
    /// The etcd key prefix, `/service/<scope>/`.
    fn prefix(&self) -> String;
    fn timings(&self) -> Timings;
    /// Which scenarios this target can run.
    fn supports(&self, s: Scenario) -> bool;
    /// Where the logs are, for the report.
    fn logs_hint(&self) -> String;
    /// Keep logs and data for a post-mortem.
    fn keep(&mut self);

    async fn etcd_get(&self, key: &str) -> Result<Option<String>>;
    /// Write `key` straight into etcd, as `patronictl edit-config` does.
    async fn etcd_put(&self, key: &str, value: &str) -> Result<()>;

    /// SIGKILL the node: agent and postgres (a machine crash).
    async fn kill_node(&mut self, i: usize) -> Result<()>;
    /// SIGTERM the node's agent and wait for it (a clean shutdown).
    async fn stop_node(&mut self, i: usize) -> Result<()>;
    /// Start a killed or stopped node again.
    async fn start_node(&mut self, i: usize) -> Result<()>;
    /// SIGKILL the node's postmaster; the agent lives.
    async fn kill_postgres(&mut self, i: usize) -> Result<()>;
    /// SIGSTOP / SIGCONT the node's agent (postgres and the fence keep running).
    async fn freeze_agent(&mut self, i: usize) -> Result<()>;
    async fn thaw_agent(&mut self, i: usize) -> Result<()>;
    /// Cut / restore the node's traffic to etcd; clients still reach it.
    /// `heal_dcs` also undoes [`Target::slow_dcs`].
    async fn cut_dcs(&mut self, i: usize) -> Result<()>;
    async fn heal_dcs(&mut self, i: usize) -> Result<()>;
    /// Delay the node's etcd traffic by `latency` in each direction (a call
    /// takes about twice that longer); the link keeps working.
    async fn slow_dcs(&mut self, i: usize, latency: Duration) -> Result<()>;
    /// SIGSTOP / SIGCONT the WAL receiver of node `i` (a stalled replica: the
    /// primary's walsender still says `streaming`); the process is the one
    /// `pg_stat_wal_receiver.pid` names.
    async fn stall_receiver(&mut self, i: usize) -> Result<()>;
    async fn resume_receiver(&mut self, i: usize) -> Result<()>;
    /// Make node `i`'s agent fail to probe its own postgres (the unix socket
    /// it connects through is hidden, its connections terminated), while
    /// clients over TCP, the sampler among them, still get through; and undo it.
    async fn break_probe(&mut self, i: usize) -> Result<()>;
    async fn mend_probe(&mut self, i: usize) -> Result<()>;
    /// Take away / give back a majority of the etcd members (`seed` picks
    /// which member survives).
    async fn lose_quorum(&mut self, seed: u64) -> Result<String>;
    async fn restore_quorum(&mut self) -> Result<()>;
    /// Undo every fault still in place and start every node that is down.
    async fn heal_all(&mut self);
}

fn client(timeout: Duration) -> Result<reqwest::Client> {
    Ok(crate::tls::http_builder()
        .timeout(timeout)
        .no_proxy()
        .build()?)
}

/// `GET <path>` on node `i`: status and JSON body (`Null` without one).
pub async fn rest_get<T: Target>(t: &T, i: usize, path: &str) -> Option<(u16, Value)> {
    let resp = client(REST_TIMEOUT)
        .ok()?
        .get(format!("{}{path}", t.rest_base(i)))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// An unsafe request (`POST /switchover`, `PATCH /config`) on node `i`, with
/// the target's credentials; status and body text.
pub async fn rest_send<T: Target>(
    t: &T,
    i: usize,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<(u16, String)> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = client(Duration::from_secs(60))?
        .request(method.clone(), format!("{}{path}", t.rest_base(i)))
        .json(body);
    if let Some((u, p)) = t.rest_auth() {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| anyhow!("{method} {path} on node {i}: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}
