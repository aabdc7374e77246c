//! The checker: after every scenario, the same questions, answered from the
//! cluster itself (each node's postgres and REST API) and from what the
//! workload and the sampler recorded.
//!
//! - convergence: one primary, every other node streaming from it, the same
//!   timeline everywhere, the same rows (count and checksum up to an id the
//!   replicas have provably replayed), and writes through HAProxy landing on
//!   that primary;
//! - lost acknowledged writes: every acknowledged id on the primary; a missing
//!   one is located on its timeline and measured against the timeline's fork
//!   point (from postgres's own `.history` file);
//! - split brain: sampling rounds with two nodes out of recovery;
//! - write-unavailability windows of each fault.
//!
//! Rule: nothing here injects faults or changes the cluster, except the writes
//! the workload makes anyway.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::report::{split_brain_json, Event, ScenarioResult};
use super::scenarios::Cx;
use super::secs;
use super::target::{rest_get, Target};
use crate::pg::{parse_lsn, walfile_timeline, Pg};
use crate::sampler::Sampler;
use crate::writer::{unavailability, Ack, Writer, TABLE};

const QUERY: Duration = Duration::from_secs(5);

/// A converged cluster.
#[derive(Debug, Clone)]
pub struct Converged {
    pub primary: usize,
    pub timeline: u32,
    /// Rows and checksum of `chaos` up to `upto`, the same on every node.
    pub rows: i64,
    pub checksum: String,
    pub upto: i64,
    /// How long convergence took from the start of the check.
    pub after: Duration,
}

/// Wait up to `timeout` for the cluster to converge (see the module doc).
/// With a running `writer`, a write through HAProxy must also land on the
/// primary. The error is the last reason it was not converged.
/// In synchronous mode (`sync`), a streaming synchronous standby named in the
/// sync key is part of convergence: without one no replica may take over.
pub async fn converge<T: Target>(
    t: &T,
    writer: &Writer,
    timeout: Duration,
    sync: bool,
) -> Result<Converged, String> {
    converge_with(t, Some(writer), timeout, sync).await
}

async fn converge_with<T: Target>(
    t: &T,
    writer: Option<&Writer>,
    timeout: Duration,
    sync: bool,
) -> Result<Converged, String> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let attempt = tokio::time::timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1)),
            converged_once(t, writer, sync),
        )
        .await
        .unwrap_or_else(|_| Err("the last check ran into the deadline".into()));
        match attempt {
            Ok(mut c) => {
                c.after = start.elapsed();
                return Ok(c);
            }
            Err(why) if Instant::now() >= deadline => {
                return Err(format!("not converged after {timeout:?}: {why}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn one_value<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    pg: &Pg,
    sql: &str,
) -> Result<T, String> {
    pg.query(sql, QUERY)
        .await
        .map_err(|e| format!("{e:#}"))?
        .first()
        .ok_or_else(|| format!("{}: no row from {sql}", pg.addr()))?
        .try_get(0)
        .map_err(|e| format!("{}: {sql}: {e}", pg.addr()))
}

/// The members `GET /cluster` on node `p` lists as synchronous standbys.
pub async fn sync_standbys<T: Target>(t: &T, p: usize) -> Result<Vec<String>, String> {
    let (_, v) = rest_get(t, p, "/cluster")
        .await
        .ok_or("GET /cluster: no answer".to_string())?;
    Ok(v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "sync_standby" && m["state"] == "streaming")
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect())
}

async fn converged_once<T: Target>(
    t: &T,
    writer: Option<&Writer>,
    sync: bool,
) -> Result<Converged, String> {
    let names = t.names();
    let addrs: Vec<Pg> = t.addrs().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut primaries = Vec::new();
    let mut timelines = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (_, v) = rest_get(t, i, "/patroni")
            .await
            .ok_or_else(|| format!("{name}: REST API does not answer"))?;
        if v["state"] != "running" {
            return Err(format!("{name} is {} ({})", v["state"], v["reason"]));
        }
        match v["role"].as_str() {
            Some("primary") => primaries.push(i),
            Some("replica") => {}
            other => return Err(format!("{name} has role {other:?}")),
        }
        timelines.push(v["timeline"].as_u64());
    }
    let p = match primaries.as_slice() {
        [p] => *p,
        many => {
            return Err(format!(
                "{} nodes say primary: {:?}",
                many.len(),
                many.iter().map(|i| &names[*i]).collect::<Vec<_>>()
            ))
        }
    };
    if one_value::<bool>(&addrs[p], "SELECT pg_is_in_recovery()").await? {
        return Err(format!("{} says primary but is in recovery", names[p]));
    }
    let rows = addrs[p]
        .query(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            QUERY,
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    let streaming: BTreeSet<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
    for (i, name) in names.iter().enumerate() {
        if i != p && !streaming.contains(name) {
            return Err(format!(
                "{name} is not streaming from {} (streaming: {streaming:?})",
                names[p]
            ));
        }
        if timelines[i] != timelines[p] {
            return Err(format!(
                "{name} is on timeline {:?}, the primary {} on {:?}",
                timelines[i], names[p], timelines[p]
            ));
        }
    }
    let wal: String = one_value(&addrs[p], "SELECT pg_walfile_name(pg_current_wal_lsn())").await?;
    let timeline = walfile_timeline(&wal).ok_or(format!("bad WAL file name {wal}"))?;
    if sync && sync_standbys(t, p).await?.is_empty() {
        return Err("no streaming synchronous standby in the sync key yet".into());
    }

    // Writes through HAProxy land on this primary.
    if let Some(w) = writer {
        let since = Instant::now();
        let addr = addrs[p].addr();
        let deadline = since + Duration::from_secs(10);
        loop {
            if w.first_ack_after(since, |a| a.server == addr).is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let last = w.acks_after(since).last().map(|a| a.server.clone());
                return Err(format!(
                    "no write through HAProxy acknowledged by {} ({addr}) within 10 s; last by {last:?}",
                    names[p]
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The same rows everywhere, up to an id every replica has replayed.
    let row = addrs[p]
        .query(
            &format!("SELECT pg_current_wal_lsn()::text, coalesce(max(id), 0) FROM {TABLE}"),
            QUERY,
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    let row = row.first().ok_or("no row")?;
    let lsn_text: String = row.try_get(0).map_err(|e| e.to_string())?;
    let upto: i64 = row.try_get(1).map_err(|e| e.to_string())?;
    let lsn = parse_lsn(&lsn_text).ok_or(format!("bad lsn {lsn_text}"))?;
    for (i, name) in names.iter().enumerate().filter(|(i, _)| *i != p) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let replayed: Option<String> =
                one_value(&addrs[i], "SELECT pg_last_wal_replay_lsn()::text").await?;
            let replayed = replayed.as_deref().and_then(parse_lsn).unwrap_or(0);
            if replayed >= lsn {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} replayed up to {replayed:#x}, the primary is at {lsn:#x}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let sum_sql = format!(
        "SELECT count(*), md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) \
         FROM {TABLE} WHERE id <= {upto}"
    );
    let mut sums = Vec::new();
    for pg in &addrs {
        let rows = pg
            .query(&sum_sql, QUERY)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let r = rows.first().ok_or("no row")?;
        let count: i64 = r.try_get(0).map_err(|e| e.to_string())?;
        let md5: String = r.try_get(1).map_err(|e| e.to_string())?;
        sums.push((count, md5));
    }
    if sums.iter().any(|s| *s != sums[p]) {
        return Err(format!(
            "the nodes disagree on the rows up to id {upto}: {}",
            names
                .iter()
                .zip(&sums)
                .map(|(n, (c, m))| format!("{n}: {c} rows, md5 {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(Converged {
        primary: p,
        timeline,
        rows: sums[p].0,
        checksum: sums[p].1.clone(),
        upto,
        after: Duration::ZERO,
    })
}

/// Where timelines forked, from the primary's own history file: timeline →
/// the LSN where it ended.
async fn fork_points(primary: &Pg) -> Result<BTreeMap<u32, u64>, String> {
    let wal: String = one_value(primary, "SELECT pg_walfile_name(pg_current_wal_lsn())").await?;
    let tl = walfile_timeline(&wal).ok_or(format!("bad WAL file name {wal}"))?;
    let mut out = BTreeMap::new();
    if tl <= 1 {
        return Ok(out);
    }
    let text: String = one_value(
        primary,
        &format!("SELECT pg_read_file('pg_wal/{tl:08X}.history')"),
    )
    .await?;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if let (Some(t), Some(l)) = (f.next(), f.next()) {
            if let (Ok(t), Some(l)) = (t.parse::<u32>(), parse_lsn(l)) {
                out.insert(t, l);
            }
        }
    }
    Ok(out)
}

/// The acknowledged writes that are not on `primary`.
async fn missing(primary: &Pg, acks: &[Ack]) -> Result<Vec<Ack>, String> {
    let (Some(lo), Some(hi)) = (
        acks.iter().map(|a| a.id).min(),
        acks.iter().map(|a| a.id).max(),
    ) else {
        return Ok(Vec::new());
    };
    let rows = primary
        .query(
            &format!("SELECT id FROM {TABLE} WHERE id BETWEEN {lo} AND {hi}"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    let present: HashSet<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
    Ok(acks
        .iter()
        .filter(|a| !present.contains(&a.id))
        .cloned()
        .collect())
}

/// Fill in `result` from what the scenario and the workload recorded.
#[allow(clippy::too_many_arguments)]
pub async fn judge<T: Target>(
    result: &mut ScenarioResult,
    cx: &mut Cx<'_>,
    t: &T,
    writer: &Writer,
    sampler: &Sampler,
    converged: &Result<Converged, String>,
    started: Instant,
    ended: Instant,
    run_start: Instant,
    known_lost: &mut BTreeSet<i64>,
) {
    let names = t.names();
    let acks = writer.acks();
    // Windows: each fault until the next one (or the end of the scenario).
    let faults = cx.faults.clone();
    for (k, (label, at)) in faults.iter().enumerate() {
        let until = faults.get(k + 1).map(|(_, t)| *t).unwrap_or(ended);
        let window = unavailability(&acks, *at, until);
        result.events.push(Event {
            label: label.clone(),
            at_s: secs(run_start, *at),
            window_s: window.map(|w| (w.as_secs_f64() * 1000.0).round() / 1000.0),
        });
        if window.is_none() {
            cx.fail(
                "writes resume after the fault",
                format!("no write acknowledged after {label:?}"),
            );
        }
    }
    result.steps = cx
        .steps
        .iter()
        .map(|(l, at)| json!({"label": l, "at_s": secs(run_start, *at)}))
        .collect();

    // One primary at a time.
    let split = sampler.split_brains(started, ended);
    result.split_brain_samples = split.len();
    result.split_brain = split
        .iter()
        .take(20)
        .map(|r| split_brain_json(r, run_start, &names))
        .collect();
    if let Some(first) = split.first() {
        cx.fail(
            "never two primaries at once",
            format!(
                "{} sampling rounds with two or more nodes out of recovery; first at {:.2}s: {}",
                split.len(),
                secs(run_start, first.at),
                first
                    .states
                    .iter()
                    .zip(&names)
                    .map(|(s, n)| format!("{n} {}", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    match converged {
        Ok(c) => {
            result.converged = true;
            result.converge_s = Some((c.after.as_secs_f64() * 10.0).round() / 10.0);
            result.converge_detail = format!(
                "primary {} on timeline {}, {} rows up to id {} on every node (md5 {})",
                names[c.primary], c.timeline, c.rows, c.upto, c.checksum
            );
            lost_writes(result, cx, t, c, &acks, known_lost).await;
        }
        Err(why) => {
            result.converged = false;
            result.converge_detail = why.clone();
            cx.fail("the cluster converges", why.clone());
            cx.note("lost writes not checked: the cluster did not converge");
        }
    }
    result.checks = std::mem::take(&mut cx.checks);
    result.notes = std::mem::take(&mut cx.notes);
}

async fn lost_writes<T: Target>(
    result: &mut ScenarioResult,
    cx: &mut Cx<'_>,
    t: &T,
    c: &Converged,
    acks: &[Ack],
    known_lost: &mut BTreeSet<i64>,
) {
    let primary = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[c.primary].clone();
    let gone = match missing(&primary, acks).await {
        Ok(g) => g,
        Err(e) => {
            cx.fail("every acknowledged write is on the primary", e);
            return;
        }
    };
    let new: Vec<Ack> = gone
        .into_iter()
        .filter(|a| !known_lost.contains(&a.id))
        .collect();
    known_lost.extend(new.iter().map(|a| a.id));
    result.lost = new.len() as u64;
    result.lost_ids = new.iter().take(20).map(|a| a.id).collect();
    if new.is_empty() {
        cx.check("no acknowledged write lost", true, "");
        return;
    }
    let forks = fork_points(&primary).await.unwrap_or_default();
    let max_lag = t.timings().maximum_lag_on_failover;
    // A write's recorded position is where its row was inserted; its commit
    // record follows, so a write lost right at the fork shows an offset <= 0.
    let mut worst: Option<i64> = None;
    let mut off_branch = Vec::new();
    for a in &new {
        match forks.get(&a.timeline) {
            Some(fork) => {
                let offset = a.lsn as i64 - *fork as i64;
                worst = Some(worst.map_or(offset, |w| w.max(offset)));
            }
            None => off_branch.push(a.id),
        }
    }
    let worst = worst.unwrap_or(0);
    result.lost_wal_bytes = worst.max(0) as u64;
    let first = &new[0];
    let detail = format!(
        "{} acknowledged writes missing on {} (ids {:?}{}); first acknowledged by {} on timeline {} \
         (row inserted at {:#x}); the furthest lost row was inserted {:+} bytes from its timeline's \
         fork point (maximum_lag_on_failover {})",
        new.len(),
        cx.names[c.primary],
        result.lost_ids,
        if new.len() > 20 { ", ..." } else { "" },
        first.server,
        first.timeline,
        first.lsn,
        worst,
        max_lag
    );
    if cx.opts.sync {
        cx.fail("no acknowledged write lost (synchronous mode)", detail);
    } else if result.scenario.must_lose_nothing() {
        cx.fail(
            "no acknowledged write lost (no unplanned failover in this scenario)",
            detail,
        );
    } else if !off_branch.is_empty() {
        cx.fail(
            "lost writes lie past a failover's fork point",
            format!("{detail}; ids {off_branch:?} on a timeline that is not an ancestor of the primary's"),
        );
    } else {
        cx.check(
            "acknowledged writes lost in a failover are within maximum_lag_on_failover",
            worst <= max_lag as i64,
            detail,
        );
    }
}

/// After the run (writer stopped): the cluster converges once more and every
/// write ever acknowledged is on the final primary, except those already
/// reported lost by a scenario.
pub async fn final_check<T: Target>(
    t: &T,
    writer: &Writer,
    timeout: Duration,
    known_lost: &BTreeSet<i64>,
    sync: bool,
) -> Result<Value, String> {
    let c = converge_with(t, None, timeout, sync).await?;
    let primary = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[c.primary].clone();
    let acks = writer.acks();
    let gone = missing(&primary, &acks).await?;
    let unreported: Vec<i64> = gone
        .iter()
        .map(|a| a.id)
        .filter(|id| !known_lost.contains(id))
        .collect();
    Ok(json!({
        "ok": unreported.is_empty(),
        "missing_not_reported_by_a_scenario": unreported,
        "primary": t.names()[c.primary],
        "timeline": c.timeline,
        "acknowledged": acks.len(),
        "missing": gone.len(),
        "missing_ids": gone.iter().take(50).map(|a| a.id).collect::<Vec<_>>(),
        "rows": c.rows,
        "checksum": c.checksum,
    }))
}
