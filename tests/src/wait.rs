//! Waiting for conditions: poll with a deadline, never sleep blindly.
//!
//! The waits on a cluster are methods of [`ClusterFixture`]
//! ([`ClusterFixture::wait_primary`], ...), written once here.
//!
//! Rule: a wait that expires panics with what it waited for, how long, and the
//! last thing it saw. The panic unwinds through the fixtures, whose `Drop`
//! stops the processes and prints the tail of every log in the test directory.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{can_write, rest_json, rest_status, sql};
use serde_json::Value;

use crate::cluster::ClusterFixture;
use crate::pg::Pg;
use crate::sampler::{Addrs, Sampler};

/// Poll interval of the convenience waits.
pub const POLL: Duration = Duration::from_millis(250);

/// Call `f` every `poll` until it returns `Some`, and return that. Each call is
/// cut off at the deadline. Panics after `timeout` with a message naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, poll: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_result(what, timeout, poll, || {
        let fut = f();
        async move { fut.await.ok_or_else(|| "condition not met".to_string()) }
    })
    .await
}

/// Like [`wait_for`], but `f` explains each miss (`Err("2 primaries: [0, 1]")`);
/// the last explanation is part of the panic message.
pub async fn wait_for_result<T, F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(remaining.max(Duration::from_millis(10)), f()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(why)) => why,
            Err(_) => "the last poll itself ran into the deadline".to_string(),
        };
        let now = Instant::now();
        if now >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what} ({attempts} polls); \
                 last seen: {last}"
            );
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

/// For `period`, check `f` every `poll`: `Ok(checks)` when it held every
/// time, or the first miss `f` explained. For claims that something does
/// *not* happen (no promotion while paused, a commit stays blocked): the
/// condition is checked all along, not once after a sleep.
pub async fn holds_for<F, Fut>(period: Duration, poll: Duration, mut f: F) -> Result<u32, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + period;
    let mut checks = 0u32;
    loop {
        f().await?;
        checks += 1;
        let now = Instant::now();
        if now >= deadline {
            return Ok(checks);
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

/// [`holds_for`], panicking at the first miss with `what` and the
/// explanation; returns how many checks passed.
pub async fn hold_for<F, Fut>(what: &str, period: Duration, poll: Duration, f: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    holds_for(period, poll, f)
        .await
        .unwrap_or_else(|miss| panic!("{what} did not hold for {period:?}: {miss}"))
}

impl ClusterFixture {
    /// Wait until exactly one node answers `GET /primary` with 200 and accepts
    /// a write; returns its index. Uses [`ClusterFixture::wait_timeout`].
    pub async fn wait_primary(&self) -> usize {
        let c = self;
        wait_for_result(
            "a single writable primary (GET /primary = 200)",
            c.wait_timeout(),
            POLL,
            || async move {
                let mut primaries = Vec::new();
                for (i, n) in c.nodes().iter().enumerate() {
                    if rest_status(n, "/primary").await == Some(200) {
                        primaries.push(i);
                    }
                }
                match primaries.as_slice() {
                    [p] if can_write(c.node(*p)).await => Ok(*p),
                    [p] => Err(format!(
                        "{} says primary but is not writable",
                        c.node(*p).name()
                    )),
                    [] => Err("no node answers /primary with 200".to_string()),
                    many => Err(format!("several nodes answer /primary with 200: {many:?}")),
                }
            },
        )
        .await
    }

    /// Wait until a node other than `old` answers `GET /primary` with 200 and
    /// accepts a write (`old` may still think it is primary); returns its index.
    pub async fn wait_new_primary(&self, old: usize) -> usize {
        let c = self;
        wait_for_result(
            "a new writable primary",
            c.wait_timeout(),
            Duration::from_millis(100),
            || async move {
                for (i, n) in c.nodes().iter().enumerate() {
                    if i != old
                        && rest_status(n, "/primary").await == Some(200)
                        && can_write(n).await
                    {
                        return Ok(i);
                    }
                }
                Err("no other node is primary yet".to_string())
            },
        )
        .await
    }

    /// Wait until the primary `primary` streams to at least `n` members of the
    /// cluster (`pg_stat_replication.state = 'streaming'`, `application_name` a
    /// member name); returns those member names, sorted.
    pub async fn wait_streaming_replicas(&self, primary: usize, n: usize) -> Vec<String> {
        let c = self;
        let names = c.names();
        let names = &names;
        let what = format!("{n} streaming replicas of {}", c.node(primary).name());
        wait_for_result(&what, c.wait_timeout(), POLL, || async move {
            let rows = sql(
                c.node(primary),
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
            let mut streaming: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get::<_, String>(0).ok())
                .filter(|a| names.contains(a) && a != c.node(primary).name())
                .collect();
            streaming.sort();
            streaming.dedup();
            if streaming.len() >= n {
                Ok(streaming)
            } else {
                Err(format!("streaming: {streaming:?}"))
            }
        })
        .await
    }

    /// Wait until every node's `/patroni` says `state: running` (no clone,
    /// start or other action still in progress).
    pub async fn wait_all_running(&self) {
        let c = self;
        wait_for_result(
            "every node running",
            c.wait_timeout(),
            POLL,
            || async move {
                for n in c.nodes() {
                    let v = rest_json(n, "/patroni")
                        .await
                        .ok_or(format!("{} does not answer", n.name()))?;
                    if v["state"] != "running" {
                        return Err(format!("{} is {}", n.name(), v["state"]));
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// A formed cluster: one writable primary and every other node
    /// streaming from it; returns the primary's index.
    pub async fn wait_formed(&self) -> usize {
        let p = self.wait_primary().await;
        self.wait_streaming_replicas(p, self.len() - 1).await;
        p
    }

    /// [`ClusterFixture::wait_formed`], and every node `running` (no
    /// action in progress); returns the primary's index.
    pub async fn wait_healthy(&self) -> usize {
        let p = self.wait_formed().await;
        self.wait_all_running().await;
        p
    }

    /// For `period`, the leader key stays `leader` (a read that fails is no
    /// miss); panics naming `what` when another value is seen.
    pub async fn hold_leader(&self, what: &str, leader: Option<&str>, period: Duration) {
        let key = format!("{}leader", self.prefix());
        let (key, kv) = (&key, &self.kv());
        hold_for(what, period, Duration::from_millis(200), || async move {
            match kv.try_get(key).await {
                Ok(now) if now.as_deref() != leader => Err(format!("the leader key is {now:?}")),
                _ => Ok(()),
            }
        })
        .await;
    }

    /// Wait (up to 30 s) until the member `name` holds the leader key.
    pub async fn wait_leader(&self, name: &str) {
        let what = format!("{name} to hold the leader key");
        wait_for(
            &what,
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async move { (self.leader().await.as_deref() == Some(name)).then_some(()) },
        )
        .await;
    }

    /// Wait until the member key of `name` (as JSON, `Null` while absent)
    /// satisfies `pred`, naming `what`; returns it.
    pub async fn wait_member(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let rel = format!("members/{name}");
        let (rel, pred) = (&rel, &pred);
        let what = format!("{what} (the member key of {name})");
        wait_for_result(
            &what,
            self.wait_timeout(),
            Duration::from_millis(100),
            || async move {
                let v = self.key_json(rel).await;
                if pred(&v) {
                    Ok(v)
                } else {
                    Err(format!("{v}"))
                }
            },
        )
        .await
    }

    /// A [`Sampler`] over every node's postgres, every 100 ms, already
    /// sampling when it is returned.
    pub async fn sampler(&self) -> Sampler {
        let addrs: Addrs = Arc::new(Mutex::new(
            self.nodes()
                .iter()
                .map(|n| Pg::local(n.pg_port()))
                .collect(),
        ));
        let sampler = Sampler::start(
            addrs,
            Duration::from_millis(100),
            Duration::from_millis(900),
        );
        sampler.wait_running().await;
        sampler
    }
}
