//! The load writer of the integration tests and the chaos suite: inserts
//! unique, increasing ids through one PostgreSQL port (a node, or HAProxy's
//! read-write port, as an application would) and records every id whose commit
//! was acknowledged, by which server, at which WAL position.
//!
//! Rule: an id is used once, whether its attempt succeeded or not (a commit
//! whose acknowledgement was lost may still have happened); only acknowledged
//! ids are promises the cluster must keep. One connection, re-opened after any
//! error; every attempt (connect included) is cut off after a short timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::background::Background;
use crate::pg::{parse_lsn, walfile_timeline, Pg};
use crate::wait::wait_for_result;

/// The table the writer inserts into.
pub const TABLE: &str = "agent_tests_writes";

/// One acknowledged commit.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: i64,
    /// When the acknowledgement arrived.
    pub at: Instant,
    /// Wall clock of `at`, milliseconds since the epoch (for the report).
    pub unix_ms: u64,
    /// `address:port` of the server that committed it, as that server sees itself.
    pub server: String,
    /// The server's WAL position while the row was inserted (just before its
    /// commit record), and its timeline: where a lost write lay.
    pub lsn: u64,
    pub timeline: u32,
}

/// Inserts `chaos(id, at)` rows through one port.
pub struct Writer {
    acks: Arc<Mutex<Vec<Ack>>>,
    attempts: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    task: Background,
}

impl Writer {
    /// Create the table through `target` and start writing one row every
    /// `every`, each attempt cut off after `timeout`.
    pub async fn start(target: Pg, every: Duration, timeout: Duration) -> Result<Writer> {
        target
            .execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL)"
                ),
                Duration::from_secs(10),
            )
            .await?;
        let first: i64 = target
            .query(
                &format!("SELECT coalesce(max(id), 0) FROM {TABLE}"),
                Duration::from_secs(10),
            )
            .await?
            .first()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(0);
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let attempts = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (acks2, attempts2, errors2) = (acks.clone(), attempts.clone(), errors.clone());
        let task = Background::spawn(|stop| async move {
            let mut client: Option<tokio_postgres::Client> = None;
            let mut id = first;
            while !stop.requested() {
                let started = Instant::now();
                id += 1;
                attempts2.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(timeout, insert(&target, &mut client, id, timeout)).await
                {
                    Ok(Ok((server, lsn, timeline))) => {
                        let ack = Ack {
                            id,
                            at: Instant::now(),
                            unix_ms: unix_ms(),
                            server,
                            lsn,
                            timeline,
                        };
                        acks2.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
                    }
                    _ => {
                        client = None;
                        errors2.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
            }
        });
        Ok(Writer {
            acks,
            attempts,
            errors,
            task,
        })
    }

    /// Every acknowledged write so far, in order.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Acknowledged writes after `t`.
    pub fn acks_after(&self, t: Instant) -> Vec<Ack> {
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|a| a.at > t)
            .cloned()
            .collect()
    }

    /// The first write acknowledged after `t` by a server `pred` accepts.
    pub fn first_ack_after(&self, t: Instant, pred: impl Fn(&Ack) -> bool) -> Option<Ack> {
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|a| a.at > t && pred(a))
            .cloned()
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

    /// [`handover`] over the writes acknowledged so far.
    pub fn handover(
        &self,
        t: Instant,
        on_new: impl Fn(&Ack) -> bool,
    ) -> Option<(Duration, Ack, Ack)> {
        handover(&self.acks(), t, on_new)
    }

    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Stop writing and wait for the attempt in flight.
    pub async fn stop(&mut self) {
        self.task.stop().await;
    }
}

async fn insert(
    target: &Pg,
    client: &mut Option<tokio_postgres::Client>,
    id: i64,
    timeout: Duration,
) -> Result<(String, u64, u32)> {
    if client.is_none() {
        *client = Some(target.connect(timeout).await?);
    }
    let c = client.as_ref().ok_or_else(|| anyhow!("no connection"))?;
    let row = c
        .query_one(
            &format!(
                "INSERT INTO {TABLE} (id, at) VALUES ($1, clock_timestamp()) RETURNING \
                 host(inet_server_addr()) || ':' || inet_server_port(), \
                 pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())"
            ),
            &[&id],
        )
        .await?;
    let server: String = row.try_get(0)?;
    let lsn: String = row.try_get(1)?;
    let wal: String = row.try_get(2)?;
    Ok((
        server,
        parse_lsn(&lsn).ok_or_else(|| anyhow!("bad lsn {lsn}"))?,
        walfile_timeline(&wal).ok_or_else(|| anyhow!("bad wal file name {wal}"))?,
    ))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The write-unavailability window around a fault at `from`: the longest gap
/// between consecutive acknowledgements from the last one before `from` to
/// the first one after `until` (or the last one seen). `None` when nothing
/// was acknowledged after `from`.
pub fn unavailability(acks: &[Ack], from: Instant, until: Instant) -> Option<Duration> {
    let start = acks.iter().rposition(|a| a.at <= from);
    let end = acks.iter().position(|a| a.at > until);
    let lo = start.unwrap_or(0);
    let hi = end.unwrap_or(acks.len().saturating_sub(1));
    if acks.is_empty() || hi <= lo || !acks[lo + 1..=hi].iter().any(|a| a.at > from) {
        return None;
    }
    let mut worst = Duration::ZERO;
    if start.is_none() {
        worst = acks[lo].at.saturating_duration_since(from);
    }
    for w in acks[lo..=hi].windows(2) {
        worst = worst.max(w[1].at - w[0].at);
    }
    Some(worst)
}

/// The write-unavailability window of a hand-over after `t`: from the last
/// write acknowledged before the first write after `t` that `on_new` accepts
/// (on the new primary), to that write. Writes that still landed on the old
/// primary after `t` (in flight when it was killed or demoted) count as
/// acknowledged. Returns the window, the last write before it and the first
/// write after it.
pub fn handover(
    acks: &[Ack],
    t: Instant,
    on_new: impl Fn(&Ack) -> bool,
) -> Option<(Duration, Ack, Ack)> {
    let i = acks.iter().position(|a| a.at > t && on_new(a))?;
    let before = acks[..i].last()?;
    let after = &acks[i];
    Some((after.at - before.at, before.clone(), after.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack_at(t0: Instant, ms: u64) -> Ack {
        Ack {
            id: ms as i64,
            at: t0 + Duration::from_millis(ms),
            unix_ms: ms,
            server: String::new(),
            lsn: 0,
            timeline: 1,
        }
    }

    #[test]
    fn handover_window() {
        let t0 = Instant::now();
        let ack = |ms: u64, server: &str| Ack {
            server: server.into(),
            ..ack_at(t0, ms)
        };
        let acks = vec![
            ack(0, "old"),
            ack(20, "old"),
            ack(60, "old"), // in flight at the kill (t0 + 50 ms)
            ack(3060, "new"),
            ack(3080, "new"),
        ];
        let (gap, before, after) =
            handover(&acks, t0 + Duration::from_millis(50), |a| a.server == "new").unwrap();
        assert_eq!(gap, Duration::from_millis(3000));
        assert_eq!(before.server, "old");
        assert_eq!(before.at, t0 + Duration::from_millis(60));
        assert_eq!(after.at, t0 + Duration::from_millis(3060));
        assert!(
            handover(&acks, t0 + Duration::from_millis(4000), |a| a.server
                == "new")
            .is_none()
        );
    }

    #[test]
    fn window_spans_last_ack_before_to_first_after() {
        let t0 = Instant::now();
        let acks: Vec<Ack> = [0, 20, 40, 60, 3060, 3080, 3100, 9000]
            .iter()
            .map(|ms| ack_at(t0, *ms))
            .collect();
        let ms = Duration::from_millis;
        // fault at 50 ms, recovered by 3090 ms: the gap 60 -> 3060
        assert_eq!(
            unavailability(&acks, t0 + ms(50), t0 + ms(3090)),
            Some(ms(3000))
        );
        // a later gap outside the interval does not count ...
        assert_eq!(
            unavailability(&acks, t0 + ms(3070), t0 + ms(3090)),
            Some(ms(20))
        );
        // ... unless it straddles its end
        assert_eq!(
            unavailability(&acks, t0 + ms(3090), t0 + ms(3200)),
            Some(ms(5900))
        );
        // nothing after the fault
        assert_eq!(unavailability(&acks, t0 + ms(9500), t0 + ms(9600)), None);
    }
}
