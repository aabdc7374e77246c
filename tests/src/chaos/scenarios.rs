//! The faults, one function per scenario: inject, observe what must (not)
//! happen while the fault lasts, heal. Convergence and the data checks come
//! afterwards, in the checker, the same for every scenario.
//!
//! Rule: a scenario records *faults* (each gets a write-unavailability window),
//! *steps* (heals and other actions, for the timeline), *checks* (its own
//! invariants, pass or fail with the evidence) and *notes* (what was observed).
//! It returns an error only when the fault could not be injected or healed.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use super::checker::sync_standbys;
use super::report::Check;
use super::rng::Rng;
use super::target::{rest_get, rest_send, Target};
use super::{Options, Scenario};
use crate::sampler::{NodeState, Sampler};
use crate::writer::Writer;

/// What a scenario records while it runs.
pub struct Cx<'a> {
    pub writer: &'a Writer,
    pub sampler: &'a Sampler,
    pub rng: &'a mut Rng,
    pub opts: &'a Options,
    pub names: Vec<String>,
    pub faults: Vec<(String, Instant)>,
    pub steps: Vec<(String, Instant)>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl<'a> Cx<'a> {
    pub fn new(
        writer: &'a Writer,
        sampler: &'a Sampler,
        rng: &'a mut Rng,
        opts: &'a Options,
        names: Vec<String>,
    ) -> Cx<'a> {
        Cx {
            writer,
            sampler,
            rng,
            opts,
            names,
            faults: Vec::new(),
            steps: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A fault starts now (its write-unavailability window is measured).
    pub fn fault(&mut self, label: impl Into<String>) -> Instant {
        let now = Instant::now();
        let label = label.into();
        eprintln!("chaos:   fault: {label}");
        self.faults.push((label, now));
        now
    }

    /// A heal or another action, for the timeline.
    pub fn step(&mut self, label: impl Into<String>) -> Instant {
        let now = Instant::now();
        self.steps.push((label.into(), now));
        now
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("chaos:   {text}");
        self.notes.push(text);
    }

    pub fn check(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }

    pub fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.check(name, false, detail);
    }

    fn name(&self, i: usize) -> String {
        self.names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("node #{i}"))
    }

    /// A duration of `ttl + loop_wait` plus 3–5 s, chosen by the seed: the lease
    /// has expired by then even if it was renewed just before the fault, and a
    /// replica has had time to take the key and promote, also on a loaded machine.
    fn beyond_ttl<T: Target>(&mut self, t: &T) -> Duration {
        let tm = t.timings();
        tm.ttl() + Duration::from_secs(tm.loop_wait + self.rng.range(3, 5))
    }
}

/// Run `scenario` against a converged cluster whose primary is `primary`.
pub async fn run<T: Target>(
    scenario: Scenario,
    t: &mut T,
    cx: &mut Cx<'_>,
    primary: usize,
) -> Result<()> {
    match scenario {
        Scenario::PrimaryCrash => primary_crash(t, cx, primary).await,
        Scenario::PostgresCrash => postgres_crash(t, cx, primary).await,
        Scenario::AgentFreeze => isolate(t, cx, primary, Isolation::Freeze).await,
        Scenario::Partition => isolate(t, cx, primary, Isolation::Partition).await,
        Scenario::QuorumLoss => quorum_loss(t, cx, primary).await,
        Scenario::ReplicaCrash => replica_crash(t, cx, primary).await,
        Scenario::Switchover => switchovers(t, cx, 3).await,
        Scenario::LaggingReplica => lagging_replica(t, cx, primary).await,
        Scenario::RollingRestart => rolling_restart(t, cx, primary).await,
        Scenario::StalledSync => stalled_sync(t, cx, primary).await,
        Scenario::ConfigEditUnderPause => config_edit_under_pause(t, cx, primary).await,
        Scenario::FenceProbeFailing => fence_probe_failing(t, cx, primary).await,
        Scenario::SlowEtcd => slow_etcd(t, cx, primary).await,
    }
}

/// Poll `f` every `every` until it returns Ok or `timeout` passes; the error
/// names `what` and the last reason `f` gave.
pub async fn poll<R, F, Fut>(what: &str, timeout: Duration, every: Duration, mut f: F) -> Result<R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(remaining.max(Duration::from_millis(50)), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(why)) => why,
            Err(_) => "the last attempt ran into the deadline".into(),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

const QUERY: Duration = Duration::from_secs(3);

/// `pg_is_in_recovery()` of node `i`, `None` without an answer.
pub async fn in_recovery<T: Target>(t: &T, i: usize) -> Option<bool> {
    let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[i].clone();
    pg.query("SELECT pg_is_in_recovery()", QUERY)
        .await
        .ok()?
        .first()?
        .try_get(0)
        .ok()
}

/// Run a statement on node `i` directly.
async fn exec_on<T: Target>(t: &T, i: usize, sql: &str, timeout: Duration) -> Result<()> {
    let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[i].clone();
    pg.execute(sql, timeout).await
}

/// Wait until a node outside `exclude` answers `/primary` with 200 and is out of
/// recovery; returns it.
pub async fn wait_primary_except<T: Target>(
    t: &T,
    exclude: &[usize],
    timeout: Duration,
) -> Result<usize> {
    let n = t.names().len();
    poll(
        "a primary (GET /primary = 200, out of recovery)",
        timeout,
        Duration::from_millis(100),
        || async move {
            for i in (0..n).filter(|i| !exclude.contains(i)) {
                if rest_get(t, i, "/primary").await.map(|(s, _)| s) == Some(200)
                    && in_recovery(t, i).await == Some(false)
                {
                    return Ok(i);
                }
            }
            Err("no such node yet".to_string())
        },
    )
    .await
}

/// Wait until node `i` runs as `role` (`primary` or `replica`; a replica must
/// also be streaming).
pub async fn wait_role<T: Target>(t: &T, i: usize, role: &str, timeout: Duration) -> Result<()> {
    let what = format!("{} to run as {role}", t.names()[i]);
    poll(&what, timeout, Duration::from_millis(200), || async move {
        let (_, v) = rest_get(t, i, "/patroni")
            .await
            .ok_or("no REST answer".to_string())?;
        let ok = v["role"] == role
            && v["state"] == "running"
            && (role != "replica" || v["replication_state"] == "streaming");
        if ok {
            Ok(())
        } else {
            Err(format!(
                "role {} state {} replication {} ({})",
                v["role"], v["state"], v["replication_state"], v["reason"]
            ))
        }
    })
    .await
}

/// Member names streaming from node `p` (`pg_stat_replication`).
async fn streaming_from<T: Target>(t: &T, p: usize) -> Result<Vec<String>> {
    let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[p].clone();
    let rows = pg
        .query(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            QUERY,
        )
        .await?;
    let names = t.names();
    let mut all = Vec::new();
    for r in rows {
        let app: String = r.try_get(0)?;
        if names.contains(&app) {
            all.push(app);
        }
    }
    Ok(all)
}

/// Sleep until `until` (a fault's planned end).
async fn sleep_until(until: Instant) {
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
}

async fn primary_crash<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let ttl = t.timings().ttl();
    note_sync_key(t, cx).await;
    let at = cx.fault(format!(
        "SIGKILL agent and postgres of the primary {}",
        cx.name(p)
    ));
    t.kill_node(p).await?;
    match wait_primary_except(t, &[p], ttl + Duration::from_secs(30)).await {
        Ok(q) => cx.note(format!(
            "{} is primary {:.1}s after the kill",
            cx.name(q),
            at.elapsed().as_secs_f64()
        )),
        Err(e) => cx.fail("a replica takes over", format!("{e:#}")),
    }
    cx.step(format!("start {}", cx.name(p)));
    t.start_node(p).await?;
    if let Err(e) = wait_role(t, p, "replica", Duration::from_secs(60)).await {
        cx.fail("the old primary rejoins as a replica", format!("{e:#}"));
    }
    Ok(())
}

async fn postgres_crash<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let at = cx.fault(format!(
        "SIGKILL the postmaster of the primary {}",
        cx.name(p)
    ));
    t.kill_postgres(p).await?;
    let q = wait_primary_except(t, &[], Duration::from_secs(30)).await?;
    cx.note(format!(
        "{} writable again {:.1}s after the kill ({})",
        cx.name(q),
        at.elapsed().as_secs_f64(),
        if q == p {
            "restarted in place"
        } else {
            "failed over"
        }
    ));
    Ok(())
}

#[derive(Clone, Copy)]
enum Isolation {
    Freeze,
    Partition,
}

/// The primary loses contact with etcd (its agent frozen, or its etcd traffic
/// cut) for longer than ttl: it must be read-only before its lease runs out,
/// a replica takes over, and afterwards it comes back as a replica.
async fn isolate<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize, how: Isolation) -> Result<()> {
    let ttl = t.timings().ttl();
    let hold = cx.beyond_ttl(t);
    let (what, undo) = match how {
        Isolation::Freeze => ("SIGSTOP the agent of", "SIGCONT"),
        Isolation::Partition => ("cut etcd off from", "heal etcd link of"),
    };
    note_sync_key(t, cx).await;
    let at = cx.fault(format!(
        "{what} the primary {} for {:.0}s",
        cx.name(p),
        hold.as_secs_f64()
    ));
    match how {
        Isolation::Freeze => t.freeze_agent(p).await?,
        Isolation::Partition => t.cut_dcs(p).await?,
    }
    let new = wait_primary_except(t, &[p], hold)
        .await
        .map(|q| (q, at.elapsed()));
    sleep_until(at + hold).await;
    cx.step(format!("{undo} {}", cx.name(p)));
    match how {
        Isolation::Freeze => t.thaw_agent(p).await?,
        Isolation::Partition => t.heal_dcs(p).await?,
    }
    fenced_in_time(cx, p, at, ttl);
    match new {
        Ok((q, after)) => {
            cx.check(
                "a replica takes over while the primary is cut off",
                true,
                format!(
                    "{} primary {:.1}s after the fault",
                    cx.name(q),
                    after.as_secs_f64()
                ),
            );
            // The old primary lost its lease: it must rejoin as a replica.
            let back = wait_role(t, p, "replica", Duration::from_secs(60)).await;
            cx.check(
                format!("{} comes back as a replica", cx.name(p)),
                back.is_ok(),
                back.err().map(|e| format!("{e:#}")).unwrap_or_default(),
            );
        }
        Err(e) => cx.fail(
            "a replica takes over while the primary is cut off",
            format!(
                "{e:#} (ttl {}s, fault held {:.0}s)",
                ttl.as_secs(),
                hold.as_secs_f64()
            ),
        ),
    }
    Ok(())
}

/// In synchronous mode, what the sync key says (who may take over), as a note.
/// Waits (up to 15 s) for the key to list a standby first: with none listed no
/// replica may take over, and a fault then would test nothing but that.
async fn note_sync_key<T: Target>(t: &T, cx: &mut Cx<'_>) {
    if cx.opts.sync {
        let path = format!("{}sync", t.prefix());
        let deadline = Instant::now() + Duration::from_secs(15);
        let key = loop {
            let key = t.etcd_get(&path).await;
            let listed = key.as_ref().ok().and_then(|k| k.as_ref()).is_some_and(|v| {
                serde_json::from_str::<serde_json::Value>(v)
                    .ok()
                    .and_then(|j| j["sync_standby"].as_str().map(|s| !s.is_empty()))
                    .unwrap_or(false)
            });
            if listed || Instant::now() >= deadline {
                break key;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        cx.note(format!(
            "sync key before the fault: {}",
            match key {
                Ok(Some(v)) => v,
                Ok(None) => "absent".into(),
                Err(e) => format!("unreadable ({e:#})"),
            }
        ));
    }
}

/// Check that node `p` stopped being a primary less than `ttl` after `at`.
fn fenced_in_time(cx: &mut Cx<'_>, p: usize, at: Instant, ttl: Duration) {
    match cx.sampler.first_not_primary(p, at) {
        Some(when) => {
            let after = when.saturating_duration_since(at);
            cx.check(
                "the isolated primary is read-only before its lease expires",
                after < ttl,
                format!(
                    "{} out of the primary role {:.2}s after the fault (ttl {}s)",
                    cx.name(p),
                    after.as_secs_f64(),
                    ttl.as_secs()
                ),
            );
        }
        None => cx.fail(
            "the isolated primary is read-only before its lease expires",
            format!(
                "{} was a primary in every sample from the fault to its heal {:.1}s later (ttl {}s)",
                cx.name(p),
                at.elapsed().as_secs_f64(),
                ttl.as_secs()
            ),
        ),
    }
}

async fn quorum_loss<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let ttl = t.timings().ttl();
    let hold = cx.beyond_ttl(t);
    let seed = cx.rng.next_u64();
    let at = Instant::now();
    let what = t.lose_quorum(seed).await?;
    cx.faults.push((
        format!("{what}: etcd has no quorum for {:.0}s", hold.as_secs_f64()),
        at,
    ));
    eprintln!("chaos:   fault: {what}");
    sleep_until(at + hold).await;
    let restored = cx.step("SIGCONT the etcd members");
    t.restore_quorum().await?;
    fenced_in_time(cx, p, at, ttl);
    let during = cx.sampler.rounds_between(at + ttl, restored);
    let with_primary: Vec<_> = during
        .iter()
        .filter(|r| !r.primaries().is_empty())
        .collect();
    cx.check(
        "no primary while etcd has no quorum (after ttl)",
        with_primary.is_empty(),
        match with_primary.first() {
            None => format!("{} samples, none with a primary", during.len()),
            Some(r) => format!(
                "{} of {} samples had a primary, first {:.2}s after the fault: {:?}",
                with_primary.len(),
                during.len(),
                r.at.saturating_duration_since(at).as_secs_f64(),
                r.primaries()
                    .iter()
                    .map(|i| cx.name(*i))
                    .collect::<Vec<_>>()
            ),
        },
    );
    let q = wait_primary_except(t, &[], Duration::from_secs(60)).await?;
    cx.note(format!(
        "{} writable {:.1}s after etcd came back",
        cx.name(q),
        restored.elapsed().as_secs_f64()
    ));
    Ok(())
}

async fn replica_crash<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let replicas: Vec<usize> = (0..cx.names.len()).filter(|i| *i != p).collect();
    let r = cx
        .rng
        .pick(&replicas)
        .ok_or_else(|| anyhow!("no replica"))?;
    let down = Duration::from_secs(cx.rng.range(2, 4));
    let leader_before = t
        .etcd_get(&format!("{}leader", t.prefix()))
        .await
        .ok()
        .flatten();
    cx.fault(format!(
        "SIGKILL agent and postgres of the replica {}",
        cx.name(r)
    ));
    t.kill_node(r).await?;
    tokio::time::sleep(down).await;
    cx.step(format!("start {}", cx.name(r)));
    t.start_node(r).await?;
    if let Err(e) = wait_role(t, r, "replica", Duration::from_secs(60)).await {
        cx.fail("the replica rejoins", format!("{e:#}"));
    }
    let leader_after = t
        .etcd_get(&format!("{}leader", t.prefix()))
        .await
        .ok()
        .flatten();
    cx.check(
        "a replica crash does not move the leader",
        leader_before == leader_after && leader_after.as_deref() == Some(&cx.name(p)),
        format!("leader key before {leader_before:?}, after {leader_after:?}"),
    );
    Ok(())
}

async fn switchovers<T: Target>(t: &mut T, cx: &mut Cx<'_>, count: usize) -> Result<()> {
    for _ in 0..count {
        let leader = wait_primary_except(t, &[], Duration::from_secs(30)).await?;
        // In synchronous mode only a synchronous standby may be the candidate.
        let pool = if cx.opts.sync {
            let t: &T = t;
            poll(
                "a synchronous standby",
                Duration::from_secs(30),
                Duration::from_millis(200),
                || async move {
                    let s = sync_standbys(t, leader).await?;
                    (!s.is_empty()).then_some(s).ok_or("none yet".to_string())
                },
            )
            .await?
        } else {
            streaming_from(t, leader).await?
        };
        let idx: Vec<usize> = pool
            .iter()
            .filter_map(|n| cx.names.iter().position(|x| x == n))
            .collect();
        let c = cx
            .rng
            .pick(&idx)
            .ok_or_else(|| anyhow!("no switchover candidate streaming from {}", cx.name(leader)))?;
        let at = cx.fault(format!("switchover {} -> {}", cx.name(leader), cx.name(c)));
        let (code, body) = rest_send(
            t,
            leader,
            "POST",
            "/switchover",
            &json!({"leader": cx.name(leader), "candidate": cx.name(c)}),
        )
        .await?;
        if code != 200 {
            bail!("POST /switchover: {code} {body}");
        }
        wait_role(t, c, "primary", Duration::from_secs(30)).await?;
        let promoted = at.elapsed();
        // Writes through HAProxy reach the new primary before the next one,
        // so each switchover's window is measured on its own.
        let addr = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[c].addr();
        let writer = cx.writer;
        let routed = poll(
            "a write through HAProxy on the new primary",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let addr = addr.clone();
                async move {
                    writer
                        .first_ack_after(at, |a| a.server == addr)
                        .map(|a| a.at)
                        .ok_or("none yet".to_string())
                }
            },
        )
        .await?;
        cx.note(format!(
            "{} primary {:.1}s after the request, writes through HAProxy on it after {:.1}s",
            cx.name(c),
            promoted.as_secs_f64(),
            routed.saturating_duration_since(at).as_secs_f64()
        ));
        // The next switchover needs both replicas streaming again.
        let n = cx.names.len();
        let t: &T = t;
        poll(
            "every other node streaming from the new primary",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async move {
                let s = streaming_from(t, c).await.map_err(|e| format!("{e:#}"))?;
                if s.len() == n - 1 {
                    Ok(())
                } else {
                    Err(format!("streaming: {s:?}"))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// The leader's optime in `/service/<scope>/status`.
async fn status_optime<T: Target>(t: &T) -> Option<u64> {
    let v: Value =
        serde_json::from_str(&t.etcd_get(&format!("{}status", t.prefix())).await.ok()??).ok()?;
    v["optime"].as_u64()
}

async fn lagging_replica<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let timings = t.timings();
    let replicas: Vec<usize> = (0..cx.names.len()).filter(|i| *i != p).collect();
    let lag = cx
        .rng
        .pick(&replicas)
        .ok_or_else(|| anyhow!("no replica"))?;
    let others: Vec<usize> = replicas.iter().copied().filter(|i| *i != lag).collect();
    // Everyone else who could take over leaves, cleanly.
    for &o in &others {
        cx.step(format!("stop {} (SIGTERM)", cx.name(o)));
        t.stop_node(o).await?;
    }
    cx.step(format!("pause replay on {}", cx.name(lag)));
    exec_on(t, lag, "SELECT pg_wal_replay_pause()", QUERY).await?;
    let rows = timings.maximum_lag_on_failover * 4 / 250;
    exec_on(
        t,
        p,
        &format!(
            "DROP TABLE IF EXISTS chaos_pad; CREATE TABLE chaos_pad (g int, pad text); \
             INSERT INTO chaos_pad SELECT g, repeat('x', 200) FROM generate_series(1, {rows}) g"
        ),
        Duration::from_secs(60),
    )
    .await?;
    let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[p].clone();
    let lsn: i64 = pg
        .query(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            QUERY,
        )
        .await?
        .first()
        .and_then(|r| r.try_get(0).ok())
        .ok_or_else(|| anyhow!("no WAL position from the primary"))?;
    let tr = &*t;
    poll(
        "the leader's optime in etcd to include the big write",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            match status_optime(tr).await {
                Some(o) if o as i64 >= lsn => Ok(()),
                other => Err(format!("optime {other:?} < {lsn}")),
            }
        },
    )
    .await?;

    let hold = cx.beyond_ttl(t) + Duration::from_secs(2);
    note_sync_key(t, cx).await;
    let at = cx.fault(format!(
        "SIGKILL the primary {} while {} lags by > maximum_lag_on_failover",
        cx.name(p),
        cx.name(lag)
    ));
    t.kill_node(p).await?;
    let mut promoted: Option<String> = None;
    while at.elapsed() < hold {
        let rec = in_recovery(t, lag).await;
        let rest = rest_get(t, lag, "/primary").await.map(|(s, _)| s);
        if rec == Some(false) || rest == Some(200) {
            promoted = Some(format!(
                "{:.2}s after the kill: pg_is_in_recovery {rec:?}, GET /primary {rest:?}",
                at.elapsed().as_secs_f64()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reason = rest_get(t, lag, "/patroni")
        .await
        .map(|(_, v)| v["reason"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    cx.check(
        format!(
            "the lagging replica is not promoted for {:.0}s",
            hold.as_secs_f64()
        ),
        promoted.is_none(),
        promoted.unwrap_or_else(|| format!("its reason: {reason}")),
    );

    // Heal: it replays what it has (and may take over), the others come back.
    cx.step(format!(
        "resume replay on {}, start {}",
        cx.name(lag),
        others
            .iter()
            .map(|o| cx.name(*o))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    exec_on(t, lag, "SELECT pg_wal_replay_resume()", QUERY).await?;
    for &o in &others {
        t.start_node(o).await?;
    }
    let q = wait_primary_except(t, &[p], Duration::from_secs(60)).await?;
    cx.note(format!(
        "{} primary {:.1}s after the kill",
        cx.name(q),
        at.elapsed().as_secs_f64()
    ));
    cx.step(format!("start {}", cx.name(p)));
    t.start_node(p).await?;
    Ok(())
}

async fn rolling_restart<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let mut order: Vec<usize> = (0..cx.names.len()).filter(|i| *i != p).collect();
    cx.rng.shuffle(&mut order);
    order.push(p);
    for i in order {
        cx.fault(format!("restart {} (SIGTERM, then start)", cx.name(i)));
        t.stop_node(i).await?;
        t.start_node(i).await?;
        let n = cx.names.len();
        let what = format!("{} running again and the cluster whole", cx.name(i));
        let t: &T = t;
        poll(
            &what,
            Duration::from_secs(90),
            Duration::from_millis(200),
            || async move {
                // The restarted agent's own view first: pg_stat_replication on the
                // primary may still list the connection of the stopped node.
                let (_, v) = rest_get(t, i, "/patroni")
                    .await
                    .ok_or("the restarted node's REST API does not answer".to_string())?;
                let up = v["state"] == "running"
                    && (v["role"] == "primary" || v["replication_state"] == "streaming");
                if !up {
                    return Err(format!(
                        "{}: role {} state {} replication {}",
                        t.names()[i],
                        v["role"],
                        v["state"],
                        v["replication_state"]
                    ));
                }
                let q = wait_primary_except(t, &[], Duration::from_secs(5))
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let s = streaming_from(t, q).await.map_err(|e| format!("{e:#}"))?;
                if s.len() == n - 1 {
                    Ok(())
                } else {
                    Err(format!("streaming from {}: {s:?}", t.names()[q]))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// `pg_current_wal_flush_lsn()` of node `p` as a byte position.
async fn flush_lsn<T: Target>(t: &T, p: usize) -> Result<u64> {
    let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[p].clone();
    pg.query(
        "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint",
        QUERY,
    )
    .await?
    .first()
    .and_then(|r| r.try_get::<_, i64>(0).ok())
    .map(|v| v.max(0) as u64)
    .ok_or_else(|| anyhow!("no flush position from {}", t.names()[p]))
}

/// The flush position the primary `p` has for the standby `name`
/// (`pg_stat_replication.flush_lsn`), if it streams from it.
async fn standby_flush<T: Target>(t: &T, p: usize, name: &str) -> Option<u64> {
    let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[p].clone();
    let sql = format!(
        "SELECT pg_wal_lsn_diff(flush_lsn, '0/0')::bigint FROM pg_stat_replication \
         WHERE application_name = '{}' ORDER BY flush_lsn DESC NULLS LAST LIMIT 1",
        name.replace('\'', "''")
    );
    pg.query(&sql, QUERY)
        .await
        .ok()?
        .first()?
        .try_get::<_, Option<i64>>(0)
        .ok()
        .flatten()
        .map(|v| v.max(0) as u64)
}

/// The members the `sync` key lists (`None`: no key, or unreadable).
async fn sync_key_members<T: Target>(t: &T) -> Option<Vec<String>> {
    let raw = t.etcd_get(&format!("{}sync", t.prefix())).await.ok()??;
    let v: Value = serde_json::from_str(&raw).ok()?;
    Some(
        v["sync_standby"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// What the sync key said about a stalled replica while it was watched.
#[derive(Default)]
struct SyncWatch {
    polls: u32,
    /// Polls in which the key listed the replica.
    listed: u32,
    /// Polls in which the primary's `synchronous_standby_names` named it.
    named: u32,
    violations: Vec<String>,
}

impl SyncWatch {
    /// Poll until `until`: each time the sync key lists `b`, `b`'s flush position
    /// on the primary `p` must have reached `floor`, a position the primary had
    /// flushed (and, in synchronous mode, acknowledged) before the poll.
    async fn run<T: Target>(&mut self, t: &T, p: usize, b: &str, floor: u64, until: Instant) {
        let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[p].clone();
        while Instant::now() < until {
            self.polls += 1;
            if let Ok(rows) = pg.query("SHOW synchronous_standby_names", QUERY).await {
                let names: String = rows
                    .first()
                    .and_then(|r| r.try_get(0).ok())
                    .unwrap_or_default();
                if names.contains(b) {
                    self.named += 1;
                }
            }
            if let Some(listed) = sync_key_members(t).await {
                if listed.iter().any(|m| m == b) {
                    self.listed += 1;
                    let f = standby_flush(t, p, b).await;
                    if f.is_none_or(|f| f < floor) && self.violations.len() < 5 {
                        self.violations.push(format!(
                            "the sync key lists {b} ({listed:?}) while it flushed {} of {floor} already flushed on the primary",
                            f.map(|f| f.to_string()).unwrap_or_else(|| "nothing known".into())
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// A synchronous standby A, a replica B whose WAL receiver is frozen (its
/// walsender on the primary stays `streaming`): the writer goes on, A dies,
/// then the primary dies. B must never enter the sync key while it lacks
/// what was acknowledged, and (synchronous mode) must not take over; the
/// checker then finds every acknowledged write. Without `--sync` the same
/// faults run and B may take over within `maximum_lag_on_failover`.
async fn stalled_sync<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let timings = t.timings();
    let replicas: Vec<usize> = (0..cx.names.len()).filter(|i| *i != p).collect();
    let a = if cx.opts.sync {
        let tr: &T = t;
        let s = poll(
            "a synchronous standby",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async move {
                let s = sync_standbys(tr, p).await?;
                s.first().cloned().ok_or("none yet".to_string())
            },
        )
        .await?;
        cx.names
            .iter()
            .position(|n| *n == s)
            .ok_or_else(|| anyhow!("unknown synchronous standby {s}"))?
    } else {
        cx.rng
            .pick(&replicas)
            .ok_or_else(|| anyhow!("no replica"))?
    };
    let b = replicas
        .iter()
        .copied()
        .find(|i| *i != a)
        .ok_or_else(|| anyhow!("no second replica"))?;
    let (an, bn, pn) = (cx.name(a), cx.name(b), cx.name(p));
    note_sync_key(t, cx).await;

    cx.fault(format!("SIGSTOP the WAL receiver of the replica {bn}"));
    t.stall_receiver(b).await?;
    let mut watch = SyncWatch::default();
    // What the primary flushed once B was frozen: B never gets past it.
    let floor = flush_lsn(t, p).await?;
    let writing = Duration::from_secs(cx.rng.range(3, 5));
    watch.run(t, p, &bn, floor, Instant::now() + writing).await;
    let still = streaming_from(t, p).await.unwrap_or_default();
    let acked = flush_lsn(t, p).await?;
    let b_flush = standby_flush(t, p, &bn).await;
    cx.note(format!(
        "after {:.0}s of writes {bn} flushed {} of the primary's {acked}; streaming per the primary: {still:?}",
        writing.as_secs_f64(),
        b_flush.map(|f| f.to_string()).unwrap_or_else(|| "?".into()),
    ));

    cx.fault(format!(
        "SIGKILL agent and postgres of the {} {an}",
        if cx.opts.sync {
            "synchronous standby"
        } else {
            "replica"
        }
    ));
    t.kill_node(a).await?;
    // Several cycles in which the primary may name B (it looks `streaming`).
    let cycles = Duration::from_secs((4 * timings.loop_wait).max(5));
    watch.run(t, p, &bn, acked, Instant::now() + cycles).await;
    let key = t
        .etcd_get(&format!("{}sync", t.prefix()))
        .await
        .ok()
        .flatten();
    cx.note(format!(
        "{} polls: the primary named {bn} in synchronous_standby_names in {}, the sync key listed it in {}; key before the primary dies: {}",
        watch.polls,
        watch.named,
        watch.listed,
        key.as_deref().unwrap_or("absent")
    ));

    let hold = cx.beyond_ttl(t);
    let at = cx.fault(format!("SIGKILL agent and postgres of the primary {pn}"));
    t.kill_node(p).await?;
    let mut took_over: Option<String> = None;
    while at.elapsed() < hold {
        let leader = t
            .etcd_get(&format!("{}leader", t.prefix()))
            .await
            .ok()
            .flatten();
        let rec = in_recovery(t, b).await;
        if leader.as_deref() == Some(bn.as_str()) || rec == Some(false) {
            took_over = Some(format!(
                "{:.2}s after the kill: leader key {leader:?}, pg_is_in_recovery {rec:?}",
                at.elapsed().as_secs_f64()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if cx.opts.sync {
        cx.check(
            format!("{bn} is never in the sync key while it lacks acknowledged WAL"),
            watch.violations.is_empty(),
            if watch.violations.is_empty() {
                format!(
                    "{} polls, listed in {}, named in synchronous_standby_names in {}",
                    watch.polls, watch.listed, watch.named
                )
            } else {
                watch.violations.join("; ")
            },
        );
        cx.check(
            format!(
                "the stalled {bn} does not take over for {:.0}s",
                hold.as_secs_f64()
            ),
            took_over.is_none(),
            took_over.unwrap_or_else(|| "it stayed a replica without the leader key".into()),
        );
    } else if let Some(what) = took_over {
        cx.note(format!("asynchronous mode: {bn} took over, {what}"));
    }

    cx.step(format!(
        "SIGCONT the WAL receiver of {bn}, start {pn} and {an}"
    ));
    t.resume_receiver(b).await?;
    t.start_node(p).await?;
    t.start_node(a).await?;
    let q = wait_primary_except(t, &[], Duration::from_secs(60)).await?;
    cx.note(format!(
        "{} primary {:.1}s after the primary's kill",
        cx.name(q),
        at.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `GET /patroni` of every node.
async fn patroni_all<T: Target>(t: &T) -> Vec<Option<Value>> {
    let mut out = Vec::new();
    for i in 0..t.names().len() {
        out.push(rest_get(t, i, "/patroni").await.map(|(_, v)| v));
    }
    out
}

/// A paused cluster gets its `config` key rewritten as `patronictl
/// edit-config` would, in value forms Patroni accepts plus one invalid field;
/// then the primary's postmaster dies. For 3 x ttl nobody may promote and the
/// paused leader's agent must not start postgres again; then the bad field is
/// taken out, the cluster resumed, and it must recover.
async fn config_edit_under_pause<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let timings = t.timings();
    let key = format!("{}config", t.prefix());
    let pn = cx.name(p);
    cx.step("pause: PATCH /config {\"pause\": true}");
    let (code, body) = rest_send(t, p, "PATCH", "/config", &json!({"pause": true})).await?;
    if code != 200 {
        bail!("PATCH /config pause: {code} {body}");
    }
    let tr: &T = t;
    poll(
        "every node to report pause",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let all = patroni_all(tr).await;
            if all
                .iter()
                .all(|v| v.as_ref().is_some_and(|v| v["pause"] == true))
            {
                Ok(())
            } else {
                Err(format!(
                    "pause: {:?}",
                    all.iter()
                        .map(|v| v.as_ref().map(|v| v["pause"].clone()))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await?;

    let original: Value = serde_json::from_str(
        &t.etcd_get(&key)
            .await?
            .ok_or_else(|| anyhow!("no config key at {key}"))?,
    )?;
    let mut edited = original.clone();
    edited["member_slots_ttl"] = json!("30min");
    edited["loop_wait"] = json!(timings.loop_wait.to_string());
    edited["maximum_lag_on_failover"] = json!("a lot");
    cx.step(format!("put the config key straight into etcd: {edited}"));
    t.etcd_put(&key, &edited.to_string()).await?;
    let tr: &T = t;
    let seen = poll(
        "every node to warn about maximum_lag_on_failover and stay paused",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async move {
            let all = patroni_all(tr).await;
            let ok = all.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    v["pause"] == true
                        && v["config_warnings"].as_array().is_some_and(|w| {
                            w.iter()
                                .any(|w| w.to_string().contains("maximum_lag_on_failover"))
                        })
                })
            });
            let summary = all
                .iter()
                .map(|v| {
                    v.as_ref()
                        .map(|v| format!("pause {} warnings {}", v["pause"], v["config_warnings"]))
                        .unwrap_or_else(|| "no answer".into())
                })
                .collect::<Vec<_>>()
                .join(" | ");
            if ok {
                Ok(summary)
            } else {
                Err(summary)
            }
        },
    )
    .await;
    cx.check(
        "the edited config keeps pause, and every node names the invalid field",
        seen.is_ok(),
        match seen {
            Ok(s) => s,
            Err(e) => format!("{e:#}"),
        },
    );

    let hold = timings.ttl() * 3;
    let at = cx.fault(format!(
        "SIGKILL the postmaster of the paused primary {pn} (agent alive), for {:.0}s",
        hold.as_secs_f64()
    ));
    t.kill_postgres(p).await?;
    // The agent's own view, every half second: it must not start postgres.
    let mut started: Option<String> = None;
    let mut states = BTreeSet::new();
    while at.elapsed() < hold {
        if let Some((_, v)) = rest_get(t, p, "/patroni").await {
            let state = v["state"].as_str().unwrap_or("?").to_string();
            if at.elapsed() > Duration::from_secs(2)
                && started.is_none()
                && matches!(state.as_str(), "running" | "starting" | "restarting")
            {
                started = Some(format!(
                    "{:.1}s after the kill: state {state}, reason {}",
                    at.elapsed().as_secs_f64(),
                    v["reason"]
                ));
            }
            states.insert(state);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let end = Instant::now();
    // A backend of the killed postmaster may still answer for a moment.
    let rounds = cx.sampler.rounds_between(at + Duration::from_secs(2), end);
    let promoted: Vec<_> = rounds
        .iter()
        .filter(|r| r.primaries().iter().any(|q| *q != p))
        .collect();
    cx.check(
        format!(
            "nobody is promoted for 3 x ttl ({:.0}s) in pause",
            hold.as_secs_f64()
        ),
        promoted.is_empty(),
        match promoted.first() {
            None => format!("{} samples, no other primary", rounds.len()),
            Some(r) => format!(
                "{} of {} samples with another primary, first {:.2}s after the kill: {:?}",
                promoted.len(),
                rounds.len(),
                r.at.saturating_duration_since(at).as_secs_f64(),
                r.primaries()
                    .iter()
                    .map(|i| cx.name(*i))
                    .collect::<Vec<_>>()
            ),
        },
    );
    let answered = rounds
        .iter()
        .filter(|r| r.states.get(p).is_some_and(|s| *s != NodeState::Down))
        .count();
    cx.check(
        format!("the paused agent does not start {pn}'s postgres again"),
        started.is_none() && answered == 0,
        match started {
            Some(s) => s,
            None if answered > 0 => format!(
                "its postgres answered in {answered} of {} samples",
                rounds.len()
            ),
            None => format!(
                "states seen: {states:?}; no answer in {} samples",
                rounds.len()
            ),
        },
    );
    // Patroni releases the key of a paused leader whose postgres is not
    // running ("removed leader lock because postgres is not running"): noted.
    let leader = t
        .etcd_get(&format!("{}leader", t.prefix()))
        .await
        .ok()
        .flatten();
    cx.note(format!(
        "leader key at the end of the pause: {}; {pn}'s states: {states:?}",
        leader.as_deref().unwrap_or("none")
    ));

    // Heal: the bad field out, the rest as edited; then resume.
    let mut restored = edited.clone();
    match original.get("maximum_lag_on_failover") {
        Some(v) => restored["maximum_lag_on_failover"] = v.clone(),
        None => {
            if let Some(o) = restored.as_object_mut() {
                o.remove("maximum_lag_on_failover");
            }
        }
    }
    cx.step(format!(
        "put the config key without the invalid field: {restored}"
    ));
    t.etcd_put(&key, &restored.to_string()).await?;
    let resumed = cx.step("resume: PATCH /config {\"pause\": null}");
    let (code, body) = rest_send(t, p, "PATCH", "/config", &json!({"pause": null})).await?;
    if code != 200 {
        bail!("PATCH /config resume: {code} {body}");
    }
    let q = wait_primary_except(t, &[], Duration::from_secs(60)).await?;
    cx.note(format!(
        "{} writable {:.1}s after the resume ({})",
        cx.name(q),
        resumed.elapsed().as_secs_f64(),
        if q == p {
            "restarted in place"
        } else {
            "failed over"
        }
    ));
    let tr: &T = t;
    poll(
        "no node to report warnings or pause",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async move {
            let all = patroni_all(tr).await;
            if all.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    v.get("pause").is_none_or(|p| p == false) && v.get("config_warnings").is_none()
                })
            }) {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    all.iter()
                        .map(|v| v
                            .as_ref()
                            .map(|v| (v["pause"].clone(), v["config_warnings"].clone())))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await
    .map_err(|e| {
        cx.fail(
            "after the repair and resume: no pause, no warnings",
            format!("{e:#}"),
        );
    })
    .ok();
    Ok(())
}

/// The primary's agent cannot probe its postgres (the socket it connects
/// through is hidden, its connection terminated: it sees postgres running but
/// not answering), then it freezes for longer than ttl. The fence must not
/// depend on the probe: the old primary is read-only before its lease
/// expires, a replica takes over, and the old primary comes back as a replica.
async fn fence_probe_failing<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let ttl = t.timings().ttl();
    let hold = cx.beyond_ttl(t);
    let pn = cx.name(p);
    note_sync_key(t, cx).await;
    cx.step(format!(
        "hide {pn}'s postgres socket from its agent, terminate the agent's connection"
    ));
    t.break_probe(p).await?;
    // The HA loop's own view, as it publishes it in its member key (the REST
    // API's `/patroni` asks postgres itself and would say `unknown` at once).
    let member = format!("{}members/{pn}", t.prefix());
    let tr: &T = t;
    let member = &member;
    let failing = poll(
        "the agent's loop to see its probe fail (member key state not running)",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async move {
            let raw = tr
                .etcd_get(member)
                .await
                .map_err(|e| format!("{e:#}"))?
                .ok_or("no member key".to_string())?;
            let v: Value = serde_json::from_str(&raw).map_err(|e| e.to_string())?;
            if v["state"] != "running" {
                Ok(format!("state {}, role {}", v["state"], v["role"]))
            } else {
                Err(format!("state {}", v["state"]))
            }
        },
    )
    .await?;
    // The cycle that published it arms or disarms the fence right after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cx.note(format!("{pn}'s agent with a failing probe: {failing}"));
    let at = cx.fault(format!(
        "SIGSTOP the agent of the primary {pn}, its probe failing, for {:.0}s",
        hold.as_secs_f64()
    ));
    t.freeze_agent(p).await?;
    let new = wait_primary_except(t, &[p], hold)
        .await
        .map(|q| (q, at.elapsed()));
    sleep_until(at + hold).await;
    cx.step(format!("put {pn}'s socket back, SIGCONT its agent"));
    t.mend_probe(p).await?;
    t.thaw_agent(p).await?;
    fenced_in_time(cx, p, at, ttl);
    match new {
        Ok((q, after)) => {
            cx.check(
                "a replica takes over while the primary's agent is frozen",
                true,
                format!(
                    "{} primary {:.1}s after the fault",
                    cx.name(q),
                    after.as_secs_f64()
                ),
            );
            let back = wait_role(t, p, "replica", Duration::from_secs(60)).await;
            cx.check(
                format!("{pn} comes back as a replica"),
                back.is_ok(),
                back.err().map(|e| format!("{e:#}")).unwrap_or_default(),
            );
        }
        Err(e) => cx.fail(
            "a replica takes over while the primary's agent is frozen",
            format!(
                "{e:#} (ttl {}s, fault held {:.0}s)",
                ttl.as_secs(),
                hold.as_secs_f64()
            ),
        ),
    }
    Ok(())
}

/// The primary's etcd link slowed (every byte delayed `d` each way, so each
/// call takes about `2d` longer, well under `retry_timeout`) for 3 x ttl and
/// more: a slow but working etcd must not fence, demote or replace a healthy
/// primary, and writes go on.
async fn slow_etcd<T: Target>(t: &mut T, cx: &mut Cx<'_>, p: usize) -> Result<()> {
    let timings = t.timings();
    let pn = cx.name(p);
    // Each direction 1/8 to 1/4 of retry_timeout: a call 1/4 to 1/2 of it slower.
    let rt_ms = timings.retry_timeout * 1000;
    let d = Duration::from_millis(cx.rng.range(rt_ms / 8, rt_ms / 4));
    let hold = timings.ttl() * 3 + Duration::from_secs(cx.rng.range(0, 2));
    let leader_key = format!("{}leader", t.prefix());
    let at = cx.fault(format!(
        "slow {pn}'s etcd link by {} ms each way for {:.0}s",
        d.as_millis(),
        hold.as_secs_f64()
    ));
    t.slow_dcs(p, d).await?;
    let mut leaders: BTreeSet<String> = BTreeSet::new();
    while at.elapsed() < hold {
        if let Ok(v) = t.etcd_get(&leader_key).await {
            leaders.insert(v.unwrap_or_else(|| "none".into()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let end = cx.step(format!("restore {pn}'s etcd link"));
    t.heal_dcs(p).await?;

    cx.check(
        format!("no failover: the leader key stays with {pn}"),
        leaders.len() == 1 && leaders.contains(&pn),
        format!("leader key values seen: {leaders:?}"),
    );
    let rounds = cx.sampler.rounds_between(at, end);
    let demoted: Vec<_> = rounds
        .iter()
        .filter(|r| {
            matches!(
                r.states.get(p),
                Some(NodeState::Replica | NodeState::ReadOnlyPrimary)
            )
        })
        .collect();
    let others: Vec<_> = rounds
        .iter()
        .filter(|r| r.primaries().iter().any(|q| *q != p))
        .collect();
    let down = rounds
        .iter()
        .filter(|r| r.states.get(p) == Some(&NodeState::Down))
        .count();
    cx.check(
        format!("{pn} is neither demoted nor fenced, and nobody else is primary"),
        demoted.is_empty() && others.is_empty(),
        match (demoted.first(), others.first()) {
            (None, None) => format!(
                "{} samples: {pn} writable in {}, no answer in {down}",
                rounds.len(),
                rounds.len() - down
            ),
            (Some(r), _) => format!(
                "{pn} {} {:.2}s after the fault ({} such samples)",
                r.states[p].as_str(),
                r.at.saturating_duration_since(at).as_secs_f64(),
                demoted.len()
            ),
            (None, Some(r)) => format!(
                "{:?} primary {:.2}s after the fault",
                r.primaries()
                    .iter()
                    .map(|i| cx.name(*i))
                    .collect::<Vec<_>>(),
                r.at.saturating_duration_since(at).as_secs_f64()
            ),
        },
    );
    let addr = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[p].addr();
    let acks: Vec<Instant> = cx
        .writer
        .acks_after(at)
        .into_iter()
        .filter(|a| a.at <= end && a.server == addr)
        .map(|a| a.at)
        .collect();
    let mut gap = Duration::ZERO;
    let mut last = at;
    for a in acks.iter().copied().chain(std::iter::once(end)) {
        gap = gap.max(a.saturating_duration_since(last));
        last = a;
    }
    cx.check(
        format!("writes go on on {pn} through the slow etcd link"),
        !acks.is_empty() && gap < timings.ttl(),
        format!(
            "{} writes acknowledged in {:.0}s, the longest gap {:.2}s (ttl {}s)",
            acks.len(),
            end.saturating_duration_since(at).as_secs_f64(),
            gap.as_secs_f64(),
            timings.ttl
        ),
    );
    Ok(())
}
