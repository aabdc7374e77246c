//! The WAL-position sampler behind `GET /patroni`: one persistent connection to
//! the local postgres, one query at a time, its answer shared by every request
//! that arrives while it runs.
//!
//! Why: peers compare `/patroni` positions in a leader race, so the position must
//! be fresh (the cycle's snapshot, up to `loop_wait` old, could make a lagging
//! replica look ahead); but a flood of requests must not become a flood of
//! connections or queries. A request takes a sample younger than its `max_age`,
//! or joins (or starts) the query in flight, and waits for it at most
//! [`WAIT`]. With `max_age` 100 ms that is at most about 10 queries a second on
//! one connection, however many requests come.
//!
//! Rule: the agent creates the sampler and tells it where postgres is; the REST
//! handler only waits (bounded) for an answer and never touches the connection.
//! Every connect and every query is bounded by a timeout.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::config::Credentials;

/// How long a request waits for a sample before it answers without one.
pub const WAIT: Duration = Duration::from_millis(700);

/// Bound on one connect and on one query of the real source.
const PG_TIMEOUT: Duration = Duration::from_millis(1000);

/// WAL positions as one query saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalSample {
    pub in_recovery: bool,
    /// Primary: `pg_current_wal_flush_lsn()`.
    pub flush: Option<u64>,
    pub receive: Option<u64>,
    pub replay: Option<u64>,
    pub paused: bool,
}

/// Where samples come from: postgres ([`PgWalSource`]) or a fake in tests.
pub trait WalSource: Send + 'static {
    /// One sample, or `None` when postgres cannot be asked now. Bounded in time
    /// by the source itself.
    fn sample(&mut self) -> impl Future<Output = Option<WalSample>> + Send;
}

/// A handle on the sampler; clones share it. The worker task stops when the
/// last handle is dropped.
#[derive(Clone)]
pub struct WalSampler {
    shared: Arc<Shared>,
    _worker: Arc<AbortOnDrop>,
}

struct Shared {
    flight: Mutex<Flight>,
    /// Wakes the worker when a query is wanted and none runs.
    start: Notify,
    /// The last sample taken.
    taken: watch::Sender<Option<Taken>>,
    wait: Duration,
}

/// The query in flight, if any.
#[derive(Debug, Default)]
struct Flight {
    /// A query runs (or is about to), counting as taken at this instant.
    running: Option<Instant>,
    /// A request needs a newer one: run again when this one ends.
    again: bool,
}

#[derive(Debug, Clone, Copy)]
struct Taken {
    /// No later than the moment the query was sent.
    at: Instant,
    sample: Option<WalSample>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Taken at `at`, is the sample young enough for a request made at `asked`?
fn recent(at: Instant, asked: Instant, max_age: Duration) -> bool {
    at.checked_add(max_age).is_none_or(|t| t >= asked)
}

impl Shared {
    fn flight(&self) -> MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WalSampler {
    /// Start the worker (needs a tokio runtime); requests wait at most `wait`.
    pub fn start<S: WalSource>(source: S, wait: Duration) -> WalSampler {
        let (taken, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            flight: Mutex::new(Flight::default()),
            start: Notify::new(),
            taken,
            wait,
        });
        let worker = tokio::spawn(work(source, shared.clone()));
        WalSampler {
            shared,
            _worker: Arc::new(AbortOnDrop(worker)),
        }
    }

    /// The sampler of the local postgres, reached as `conn` says (the agent
    /// keeps it current); requests wait at most `WAIT` (700 ms).
    pub fn postgres(conn: watch::Receiver<Option<LocalConn>>) -> WalSampler {
        WalSampler::start(PgWalSource::new(conn), WAIT)
    }

    /// A sample taken no earlier than `max_age` before this call: the last one if
    /// it is young enough, else the one in flight (if young enough) or the next.
    /// `None` when postgres did not answer, or not within the wait.
    pub async fn fresh(&self, max_age: Duration) -> Option<WalSample> {
        let asked = Instant::now();
        let mut rx = self.shared.taken.subscribe();
        {
            // The worker publishes under this lock too, so a sample and the
            // flight state are always seen together.
            let mut f = self.shared.flight();
            if let Some(t) = *rx.borrow_and_update() {
                if recent(t.at, asked, max_age) {
                    return t.sample;
                }
            }
            match f.running {
                Some(at) if recent(at, asked, max_age) => {}
                Some(_) => f.again = true,
                None => {
                    f.running = Some(asked);
                    self.shared.start.notify_one();
                }
            }
        }
        let answer = async {
            loop {
                rx.changed().await.ok()?;
                if let Some(t) = *rx.borrow_and_update() {
                    if recent(t.at, asked, max_age) {
                        return t.sample;
                    }
                }
            }
        };
        tokio::time::timeout(self.shared.wait, answer)
            .await
            .ok()
            .flatten()
    }
}

/// The worker: one query per wake-up, and another right after while requests
/// need a newer sample than the one just taken.
async fn work<S: WalSource>(mut source: S, shared: Arc<Shared>) {
    loop {
        shared.start.notified().await;
        loop {
            let Some(at) = shared.flight().running else {
                break;
            };
            let sample = source.sample().await;
            let mut f = shared.flight();
            shared.taken.send_replace(Some(Taken { at, sample }));
            if f.again {
                f.again = false;
                f.running = Some(Instant::now());
            } else {
                f.running = None;
                break;
            }
        }
    }
}

const WAL_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
       ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint END,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), '0/0')::bigint,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '0/0')::bigint,
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END";

/// How the agent reaches its postgres: where, and as whom (with TLS settings).
pub type LocalConn = (tokio_postgres::Config, Credentials);

/// The local postgres as a [`WalSource`]: one connection kept open, made again
/// after an error or when the agent says postgres is reached differently.
pub struct PgWalSource {
    /// Where postgres listens, as the agent last said (`None`: do not ask).
    conn: watch::Receiver<Option<LocalConn>>,
    client: Option<(LocalConn, Client)>,
}

impl PgWalSource {
    pub fn new(conn: watch::Receiver<Option<LocalConn>>) -> PgWalSource {
        PgWalSource { conn, client: None }
    }

    async fn query(&mut self) -> Option<WalSample> {
        let conn = self.conn.borrow().clone()?;
        if self
            .client
            .as_ref()
            .is_some_and(|(c, client)| *c != conn || client.is_closed())
        {
            self.client = None;
        }
        if self.client.is_none() {
            let (client, _connection) =
                tokio::time::timeout(PG_TIMEOUT, super::tls::connect(&conn.0, &conn.1))
                    .await
                    .ok()?
                    .ok()?;
            self.client = Some((conn, client));
        }
        let (_, client) = self.client.as_ref()?;
        let row = match tokio::time::timeout(PG_TIMEOUT, client.query_one(WAL_SQL, &[])).await {
            Ok(Ok(row)) => row,
            _ => {
                self.client = None;
                return None;
            }
        };
        let lsn = |i: usize| -> Option<Option<u64>> {
            let v: Option<i64> = row.try_get(i).ok()?;
            Some(v.map(|v| v.max(0).unsigned_abs()))
        };
        Some(WalSample {
            in_recovery: row.try_get(0).ok()?,
            flush: lsn(1)?,
            receive: lsn(2)?,
            replay: lsn(3)?,
            paused: row.try_get(4).ok()?,
        })
    }
}

impl WalSource for PgWalSource {
    async fn sample(&mut self) -> Option<WalSample> {
        let s = self.query().await;
        if s.is_none() {
            tracing::debug!("WAL sample for /patroni: postgres did not answer");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn sample(n: u64) -> WalSample {
        WalSample {
            in_recovery: true,
            flush: None,
            receive: Some(n),
            replay: Some(n),
            paused: false,
        }
    }

    /// Counts queries; each waits for a permit from `gate` and answers its number.
    struct Fake {
        started: Arc<AtomicUsize>,
        gate: Arc<Semaphore>,
        answer: bool,
    }

    impl WalSource for Fake {
        async fn sample(&mut self) -> Option<WalSample> {
            let n = self.started.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            self.gate.acquire().await.ok()?.forget();
            self.answer.then(|| sample(n))
        }
    }

    fn fake(
        permits: usize,
        answer: bool,
        wait: Duration,
    ) -> (WalSampler, Arc<AtomicUsize>, Arc<Semaphore>) {
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(permits));
        let s = WalSampler::start(
            Fake {
                started: started.clone(),
                gate: gate.clone(),
                answer,
            },
            wait,
        );
        (s, started, gate)
    }

    #[tokio::test]
    async fn a_flood_of_requests_costs_one_query() {
        // The query is held until every request has been made, so all 200 find it
        // in flight (or its fresh answer) whatever the scheduling.
        let (s, started, gate) = fake(0, true, LONG);
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.fresh(LONG).await })
            })
            .collect();
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        for c in calls {
            assert_eq!(c.await.expect("request task"), Some(sample(1)));
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
        // a later request is served from the same sample while it is young enough
        assert_eq!(s.fresh(LONG).await, Some(sample(1)));
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_sample_too_old_is_taken_again() {
        let (s, started, _gate) = fake(100, true, LONG);
        assert_eq!(s.fresh(Duration::ZERO).await, Some(sample(1)));
        assert_eq!(s.fresh(Duration::ZERO).await, Some(sample(2)));
        assert_eq!(s.fresh(LONG).await, Some(sample(2)));
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_behind_an_old_query_gets_the_next_one() {
        let (s, started, gate) = fake(0, true, LONG);
        let first = tokio::spawn({
            let s = s.clone();
            async move { s.fresh(Duration::ZERO).await }
        });
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // asked after the running query was sent: that one is too old for it
        let second = tokio::spawn({
            let s = s.clone();
            async move { s.fresh(Duration::ZERO).await }
        });
        while !s.shared.flight().again {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        assert_eq!(first.await.expect("first"), Some(sample(1)));
        gate.add_permits(1);
        assert_eq!(second.await.expect("second"), Some(sample(2)));
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_answer_is_none_and_not_retried_while_young() {
        let (s, started, _gate) = fake(100, false, LONG);
        assert_eq!(s.fresh(LONG).await, None);
        assert_eq!(s.fresh(LONG).await, None);
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hung_query_is_given_up_after_the_wait() {
        let (s, _started, _gate) = fake(0, true, Duration::from_millis(50));
        assert_eq!(s.fresh(LONG).await, None);
        // the query still runs; the next request joins it and gives up too
        assert_eq!(s.fresh(LONG).await, None);
    }

    #[test]
    fn recent_is_bounded() {
        let now = Instant::now();
        assert!(recent(now, now, Duration::ZERO));
        assert!(recent(
            now,
            now + Duration::from_millis(100),
            Duration::from_millis(100)
        ));
        assert!(!recent(
            now,
            now + Duration::from_millis(101),
            Duration::from_millis(100)
        ));
        assert!(recent(now, now, Duration::MAX));
    }
}
