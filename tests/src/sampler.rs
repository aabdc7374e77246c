//! The split-brain detector of the integration tests and the chaos suite:
//! every `every` (100–200 ms) it
//! asks every node *directly* — not through HAProxy — whether it runs as a
//! primary (`pg_is_in_recovery()`) and whether it can write (a transaction
//! that gets an xid, rolled back, so nothing waits on synchronous
//! replication), and keeps every round for the whole run.
//!
//! Rule: two nodes out of recovery in the same round is split brain, whatever
//! HAProxy or etcd say; the round is reported with its time and the nodes.
//! Each node keeps one connection, re-opened after any error. A round lasts
//! one interval: a node that has not answered by then counts as down for that
//! round (its probe, cut off after a timeout under a second, goes on in the
//! background), so a dead or frozen node never slows the sampling of the others.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::background::Background;
use crate::pg::Pg;
use crate::wait::wait_for;

/// What one node answered in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// No answer within the probe timeout.
    Down,
    /// In recovery (a replica, or a demoted primary).
    Replica,
    /// Out of recovery but could not get a transaction id (read-only).
    ReadOnlyPrimary,
    /// Out of recovery and a write transaction could start.
    Writable,
}

impl NodeState {
    pub fn is_primary(self) -> bool {
        matches!(self, NodeState::ReadOnlyPrimary | NodeState::Writable)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Down => "down",
            NodeState::Replica => "replica",
            NodeState::ReadOnlyPrimary => "primary (read-only)",
            NodeState::Writable => "primary (writable)",
        }
    }
}

/// One sampling round.
#[derive(Debug, Clone)]
pub struct Round {
    pub at: Instant,
    pub unix_ms: u64,
    pub states: Vec<NodeState>,
}

impl Round {
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.states.len())
            .filter(|i| self.states[*i].is_primary())
            .collect()
    }
}

/// The node addresses a sampler uses; the target updates them when a node
/// comes back with a new address (a restarted container).
pub type Addrs = Arc<Mutex<Vec<Pg>>>;

/// Background sampler over every node of a target.
pub struct Sampler {
    rounds: Arc<Mutex<Vec<Round>>>,
    task: Background,
}

impl Sampler {
    pub fn start(addrs: Addrs, every: Duration, probe_timeout: Duration) -> Sampler {
        let rounds: Arc<Mutex<Vec<Round>>> = Arc::default();
        let rounds2 = rounds.clone();
        let task = Background::spawn(|stop| async move {
            // A probe that outlives its round (a dead or frozen node) keeps
            // running into later rounds; meanwhile the node counts as down,
            // so the rounds keep their cadence.
            type Probe = JoinHandle<(Option<Client>, NodeState)>;
            let mut clients: Vec<Option<Client>> = Vec::new();
            let mut inflight: Vec<Option<Probe>> = Vec::new();
            while !stop.requested() {
                let at = Instant::now();
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let nodes = addrs.lock().unwrap_or_else(|e| e.into_inner()).clone();
                clients.resize_with(nodes.len(), || None);
                inflight.resize_with(nodes.len(), || None);
                let mut fresh = vec![false; nodes.len()];
                for (i, pg) in nodes.into_iter().enumerate() {
                    if inflight[i].is_none() {
                        let client = clients[i].take();
                        inflight[i] = Some(tokio::spawn(probe(pg, client, probe_timeout)));
                        fresh[i] = true;
                    }
                }
                let deadline = at + every;
                let mut states = vec![NodeState::Down; inflight.len()];
                loop {
                    for i in 0..inflight.len() {
                        if !inflight[i].as_ref().is_some_and(|h| h.is_finished()) {
                            continue;
                        }
                        if let Some(h) = inflight[i].take() {
                            if let Ok((client, state)) = h.await {
                                clients[i] = client;
                                // A late answer belongs to an earlier round.
                                if fresh[i] {
                                    states[i] = state;
                                }
                            }
                            fresh[i] = false;
                        }
                    }
                    let pending = (0..inflight.len()).any(|i| fresh[i] && inflight[i].is_some());
                    if !pending || Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                rounds2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Round {
                        at,
                        unix_ms,
                        states,
                    });
                tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
            }
            for h in inflight.into_iter().flatten() {
                h.abort();
            }
        });
        Sampler { rounds, task }
    }

    /// Rounds taken in `[from, to]`.
    pub fn rounds_between(&self, from: Instant, to: Instant) -> Vec<Round> {
        self.rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.at >= from && r.at <= to)
            .cloned()
            .collect()
    }

    /// Wait (up to 5 s) until a few rounds are in: the sampler watches.
    pub async fn wait_running(&self) {
        wait_for(
            "the sampler's first rounds",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { (self.len() > 3).then_some(()) },
        )
        .await;
    }

    /// Every round so far in which two or more nodes were out of recovery.
    pub fn all_split_brains(&self) -> Vec<Round> {
        self.rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.primaries().len() > 1)
            .cloned()
            .collect()
    }

    /// Rounds in `[from, to]` in which two or more nodes were out of recovery.
    pub fn split_brains(&self, from: Instant, to: Instant) -> Vec<Round> {
        self.rounds_between(from, to)
            .into_iter()
            .filter(|r| r.primaries().len() > 1)
            .collect()
    }

    /// The first round after `from` in which node `i` was not a primary.
    pub fn first_not_primary(&self, i: usize, from: Instant) -> Option<Instant> {
        self.rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.at >= from && !r.states.get(i).is_some_and(|s| s.is_primary()))
            .map(|r| r.at)
    }

    /// How many rounds so far.
    pub fn len(&self) -> usize {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn stop(&mut self) {
        self.task.stop().await;
    }

    /// Stop, and panic with the rounds in which two or more nodes were out of
    /// recovery, if there were any.
    pub async fn stop_expecting_one_primary(&mut self) {
        self.stop().await;
        let splits = self.all_split_brains();
        assert!(splits.is_empty(), "two primaries at once: {splits:?}");
    }
}

/// Ask one node; returns the connection to keep (none after an error).
async fn probe(pg: Pg, client: Option<Client>, timeout: Duration) -> (Option<Client>, NodeState) {
    let run = async {
        let client = match client {
            Some(c) if !c.is_closed() => c,
            _ => match pg.connect(timeout).await {
                Ok(c) => c,
                Err(_) => return (None, NodeState::Down),
            },
        };
        let in_recovery: bool = match client.query_one("SELECT pg_is_in_recovery()", &[]).await {
            Ok(row) => match row.try_get(0) {
                Ok(v) => v,
                Err(_) => return (None, NodeState::Down),
            },
            Err(_) => return (None, NodeState::Down),
        };
        if in_recovery {
            return (Some(client), NodeState::Replica);
        }
        // An xid is what a write needs; rolling back never waits on a standby.
        match client
            .batch_execute("BEGIN; SELECT txid_current(); ROLLBACK")
            .await
        {
            Ok(()) => (Some(client), NodeState::Writable),
            Err(_) => (None, NodeState::ReadOnlyPrimary),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => (None, NodeState::Down),
    }
}
