//! The workload: a writer that inserts unique, increasing ids through HAProxy's
//! read-write port and records every id whose commit was acknowledged, and a
//! reader on the read-only port.
//!
//! Rule: an id is used once, whether its attempt succeeded or not (a commit
//! whose acknowledgement was lost may still have happened); only acknowledged
//! ids are promises the cluster must keep. One connection, re-opened after any
//! error; every attempt (connect included) is cut off after a short timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tokio::task::JoinHandle;

use super::pg::{parse_lsn, walfile_timeline, Pg};

/// The table the writer inserts into.
pub const TABLE: &str = "chaos";

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
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    attempts: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let attempts = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (stop2, acks2, attempts2, errors2) =
            (stop.clone(), acks.clone(), attempts.clone(), errors.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            let mut id = first;
            while !stop2.load(Ordering::SeqCst) {
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
            stop,
            acks,
            attempts,
            errors,
            task: Some(task),
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

    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Stop writing and wait for the attempt in flight.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            t.abort();
        }
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

/// Reads `max(id)` through the read-only port every `every`; counts answers
/// and errors.
pub struct Reader {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl Reader {
    pub fn start(target: Pg, every: Duration, timeout: Duration) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (stop2, ok2, errors2) = (stop.clone(), ok.clone(), errors.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            while !stop2.load(Ordering::SeqCst) {
                let started = Instant::now();
                let read = async {
                    if client.is_none() {
                        client = Some(target.connect(timeout).await?);
                    }
                    let c = client.as_ref().ok_or_else(|| anyhow!("no connection"))?;
                    c.query_one(&format!("SELECT coalesce(max(id), 0) FROM {TABLE}"), &[])
                        .await?;
                    Ok::<_, anyhow::Error>(())
                };
                match tokio::time::timeout(timeout, read).await {
                    Ok(Ok(())) => {
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        client = None;
                        errors2.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
            }
        });
        Reader {
            stop,
            ok,
            errors,
            task: Some(task),
        }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(t0: Instant, ms: u64) -> Ack {
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
    fn window_spans_last_ack_before_to_first_after() {
        let t0 = Instant::now();
        let acks: Vec<Ack> = [0, 20, 40, 60, 3060, 3080, 3100, 9000]
            .iter()
            .map(|ms| ack(t0, *ms))
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
