//! Split-brain detector: asks every node directly, every 100 ms, whether it runs
//! as a primary (`pg_is_in_recovery() = false`), and records any moment when two
//! nodes answered "primary" in the same sampling round.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::client::is_in_recovery;

/// One sampling round in which more than one node was a primary.
#[derive(Debug, Clone)]
pub struct SplitBrain {
    pub at: Duration,
    pub primaries: Vec<u16>,
}

/// Every sampling round: when, and which ports answered "primary".
type Rounds = Arc<Mutex<Vec<(Duration, Vec<u16>)>>>;

/// Background sampler over a fixed set of postgres ports.
pub struct PrimarySampler {
    started: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Rounds,
    task: Option<JoinHandle<()>>,
}

impl PrimarySampler {
    /// Start sampling `ports` every `every`.
    pub fn start(ports: Vec<u16>, every: Duration) -> PrimarySampler {
        let started = Instant::now();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let log: Rounds = Arc::default();
        let (stop2, log2) = (stop.clone(), log.clone());
        let task = tokio::spawn(async move {
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let round = Instant::now();
                let answers = futures_join(ports.iter().map(|p| {
                    let p = *p;
                    async move {
                        let r =
                            tokio::time::timeout(Duration::from_millis(900), is_in_recovery(&p))
                                .await;
                        (p, matches!(r, Ok(Some(false))))
                    }
                }))
                .await;
                let primaries: Vec<u16> = answers
                    .into_iter()
                    .filter(|(_, w)| *w)
                    .map(|(p, _)| p)
                    .collect();
                log2.lock().unwrap().push((started.elapsed(), primaries));
                let spent = round.elapsed();
                if spent < every {
                    tokio::time::sleep(every - spent).await;
                }
            }
        });
        PrimarySampler {
            started,
            stop,
            log,
            task: Some(task),
        }
    }

    /// Time since the sampler started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Rounds in which two or more nodes were primaries.
    pub fn split_brains(&self) -> Vec<SplitBrain> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| p.len() > 1)
            .map(|(at, p)| SplitBrain {
                at: *at,
                primaries: p.clone(),
            })
            .collect()
    }

    /// The first time (since start) at which `port` was not a primary, after `after`.
    pub fn first_not_primary_after(&self, port: u16, after: Duration) -> Option<Duration> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(at, p)| *at >= after && !p.contains(&port))
            .map(|(at, _)| *at)
    }

    pub fn rounds(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Stop sampling (also on drop).
    pub async fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for PrimarySampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}
