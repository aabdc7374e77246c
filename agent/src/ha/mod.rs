//! The HA decision: `decide(observation, settings) -> Decision`.
//!
//! Rule: no IO, no clock, no randomness. Everything the decision depends on is in
//! the [`Observation`] (what etcd, postgres and the peers looked like this cycle,
//! plus the agent's own notes from earlier cycles) and the [`Settings`] (the local
//! configuration). The executor carries the returned actions out in order and
//! stops at the first failure; results feed the next observation.
//!
//! The order of the checks follows Patroni's `ha.py` `_run_cycle`.

pub mod fence;
mod manual;
mod reason;
pub mod sync;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::dcs::model::{Cluster, Failover};
use crate::postgres::ControlState;

pub use manual::{
    candidate_eligibility, parse_timestamp, Ineligible, Operation, Request, TakeoverBar,
};
pub use reason::Reason;
pub use sync::Walsender;

/// Seconds since the agent started (monotonic). `decide` never reads a clock.
pub type Mono = f64;

/// What the agent saw this cycle.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub now: Mono,
    /// `None` when etcd could not be read or our lease could not be renewed this
    /// cycle: the DCS is unavailable to us.
    pub cluster: Option<Cluster>,
    /// Our lease id (0 when we have none).
    pub lease: i64,
    pub data_dir: DataDir,
    pub pg: PgView,
    /// Peers' `GET /patroni`, fetched when a leader race or a switchover may be needed.
    pub peers: Option<Vec<PeerStatus>>,
    pub memory: Memory,
    /// Wall-clock seconds since the epoch (for scheduled switchovers).
    pub unix_now: f64,
    /// A request from the REST API waiting for an answer.
    pub request: Option<Request>,
    /// The postgres parameters in effect differ from those in postgresql.conf.
    pub config_changed: bool,
    /// The fence watchdog died and could not be restarted: this node must not
    /// be or become a primary (see [`fence::without_fence`]).
    pub fence_down: bool,
}

/// The data directory as found on disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum DataDir {
    /// Missing or empty.
    #[default]
    Empty,
    /// A postgres data directory; `sysid` from pg_control.
    Initialized {
        sysid: Option<String>,
        control: Option<ControlState>,
        /// `standby.signal` present.
        standby_signal: bool,
    },
    /// Not empty, but not a data directory we can use (no PG_VERSION), or unreadable.
    Invalid(String),
}

/// Postgres as seen by the agent (its child process plus one probe query).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PgView {
    /// The child process exists and has not exited.
    pub running: bool,
    /// The probe query succeeded.
    pub accepting: bool,
    /// `pg_is_in_recovery()`; `None` when the probe failed.
    pub in_recovery: Option<bool>,
    pub timeline: Option<u32>,
    /// Primary: `pg_current_wal_flush_lsn()`.
    pub wal_lsn: Option<u64>,
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub replay_paused: bool,
    /// `pg_stat_wal_receiver.status`, e.g. `streaming`.
    pub receiver_status: Option<String>,
    /// Physical replication slots present on this node.
    pub slots: Option<Vec<String>>,
    pub sysid: Option<String>,
    /// Members streaming from us (`pg_stat_replication`).
    pub walsenders: Vec<Walsender>,
    /// `synchronous_standby_names` as postgres has it now.
    pub sync_standby_names: Option<String>,
    /// `server_version_num`.
    pub server_version: Option<u32>,
    /// A changed setting waits for a restart (`pg_settings.pending_restart`).
    pub pending_restart: bool,
}

impl PgView {
    pub fn is_primary(&self) -> bool {
        self.running && self.in_recovery == Some(false)
    }

    pub fn is_replica(&self) -> bool {
        self.running && self.in_recovery == Some(true)
    }

    /// WAL position for comparisons between candidates: the primary's flush
    /// position, or the furthest of received and replayed on a replica.
    pub fn wal_position(&self) -> u64 {
        if self.in_recovery == Some(false) {
            self.wal_lsn.unwrap_or(0)
        } else {
            self.receive_lsn
                .unwrap_or(0)
                .max(self.replay_lsn.unwrap_or(0))
        }
    }

    /// WAL position for the `maximum_lag_on_failover` check. A replica whose replay
    /// is paused counts only what it has replayed: it is being held back on purpose
    /// and could not take over promptly.
    pub fn failover_position(&self) -> u64 {
        if self.in_recovery == Some(true) && self.replay_paused {
            self.replay_lsn.unwrap_or(0)
        } else {
            self.wal_position()
        }
    }
}

/// A peer's answer to `GET /patroni` (or the lack of one).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    pub reachable: bool,
    /// `false` when the peer runs as primary.
    pub in_recovery: bool,
    pub wal_position: u64,
    pub timeline: Option<u32>,
    pub nofailover: bool,
    pub failover_priority: i64,
}

/// Where a replica streams from or clones from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// How postgres is stopped (pg_ctl's modes, as signals to the postmaster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopMode {
    Smart,
    Fast,
    Immediate,
}

/// Work the executor runs in the background while the loop keeps ticking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LongKind {
    Bootstrap,
    Clone,
    StartPrimary,
    StartReplica,
    Promote,
    Rewind,
    Stop,
    Demote,
    Restart,
    Reinit,
}

impl LongKind {
    pub fn describe(self) -> &'static str {
        match self {
            LongKind::Bootstrap => "bootstrap",
            LongKind::Clone => "clone",
            LongKind::StartPrimary => "starting primary",
            LongKind::StartReplica => "starting replica",
            LongKind::Promote => "promote",
            LongKind::Rewind => "pg_rewind",
            LongKind::Stop => "stop",
            LongKind::Demote => "demote",
            LongKind::Restart => "restart",
            LongKind::Reinit => "reinitialize",
        }
    }
}

/// Outcome of a long action, remembered until the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct LongResult {
    pub kind: LongKind,
    pub ok: bool,
    pub message: String,
    pub at: Mono,
}

/// The agent's own notes, kept across cycles by the executor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// A long action currently running.
    pub long_action: Option<(LongKind, Mono)>,
    /// The last finished long action.
    pub last_result: Option<LongResult>,
    /// We bootstrapped this cluster and still have to publish it (initialize, config).
    pub bootstrapped_sysid: Option<String>,
    /// The member we last configured `primary_conninfo` for (`Some(None)`: no upstream).
    pub following: Option<Option<String>>,
    /// pg_rewind ran and failed; reason.
    pub rewind_failed: Option<String>,
    /// Postgres exited without being asked to.
    pub crashed: bool,
    /// Start-as-primary attempts since the last healthy cycle (to give up).
    pub failed_primary_starts: u32,
    /// A running replica was stopped once to check for divergence from this leader timeline.
    pub divergence_checked: Option<(String, u32)>,
    /// `pause` as last seen in the dynamic config (used while etcd is unreachable).
    pub paused: bool,
    /// When each member's slot name was last seen in the cluster (members, or the
    /// leader's `retain_slots`), for `member_slots_ttl`.
    pub slot_seen: std::collections::BTreeMap<String, Mono>,
    /// The highest timeline this data directory was seen on (a replica's
    /// `pg_control_checkpoint()` lags behind the timeline it replays until the next
    /// restartpoint, and the WAL receiver's timeline is unknown while it is down).
    pub timeline_seen: Option<u32>,
    /// The dynamic configuration as last read (to restore a deleted `config` key).
    pub last_config: Option<serde_json::Value>,
    /// Synchronous mode: each standby named in `synchronous_standby_names`, with
    /// the primary's flush position when a probe first showed it named. It enters
    /// the `sync` key only once its own flush position has reached that (rule 8).
    /// Kept only while postgres runs as primary.
    pub sync_named: std::collections::BTreeMap<String, u64>,
}

/// Local settings `decide` needs (from the config file).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub name: String,
    pub nofailover: bool,
    pub failover_priority: i64,
    pub replicatefrom: Option<String>,
    pub use_pg_rewind_local: Option<bool>,
    pub remove_data_directory_on_rewind_failure: bool,
    pub remove_data_directory_on_diverged_timelines: bool,
    /// The bootstrap dynamic configuration (written to `config` by the bootstrapper).
    pub bootstrap_config: serde_json::Value,
}

/// One step for the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    // ---- etcd ----
    /// Create `initialize` with an empty value if it does not exist (bootstrap race).
    RaceInitialize,
    /// Write the system identifier into `initialize`.
    SetInitialize(String),
    /// Delete `initialize` (a failed bootstrap).
    DeleteInitialize,
    /// Create `config` if absent.
    SeedConfig(serde_json::Value),
    /// Create `leader` bound to our lease if it does not exist.
    AcquireLeader,
    /// `leader` names us but carries an old lease: rebind it to our lease (compare on value).
    RebindLeader,
    /// Compare-and-delete `leader` on our own name.
    ReleaseLeader,
    /// Publish the leader's WAL position in `status`.
    WriteStatus { optime: u64 },
    /// Publish the slots kept for members that are gone (`status.retain_slots`).
    WriteRetainSlots(Vec<String>),
    /// Add the promotion to `history` (reads the timeline history file of `timeline`).
    UpdateHistory { timeline: u32 },
    /// Remove the `failover` key (compare on mod revision).
    ClearFailover { mod_revision: i64 },
    // ---- postgres ----
    /// initdb, start as primary, create users, final pg_hba (long).
    Bootstrap,
    /// pg_basebackup from `Source` then start as replica (long).
    Clone(Source),
    /// Start postgres as primary (no standby.signal) (long).
    StartPrimary,
    /// Start postgres in recovery, streaming from the source if any (long).
    StartReplica(Option<Source>),
    /// `pg_promote()` (long).
    Promote,
    /// Stop postgres.
    Stop(StopMode),
    /// Point a running replica at a new upstream (rewrites primary_conninfo, reloads).
    Follow(Option<Source>),
    /// pg_rewind from the source (long). Postgres must be stopped.
    Rewind(Source),
    /// Move the data directory aside so the node re-clones.
    RemoveDataDir,
    /// Switchover/failover: fast shutdown (writes the shutdown checkpoint, which the
    /// walsenders deliver), wait for the candidate to have it, release the leader
    /// key, start as a replica of the candidate (long).
    DemoteGraceful { candidate: Option<Source> },
    /// Restart postgres in its current role (long).
    Restart {
        primary: bool,
        follow: Option<Source>,
    },
    /// Stop, remove the data directory, clone from the source, start (long).
    Reinitialize(Source),
    /// Re-render the configuration files and signal postgres to reload them.
    Reload,
    /// Answer the pending REST request.
    Answer { code: u16, text: String },
    /// Abort the running long action (a forced reinitialize).
    CancelLongAction,
    /// Write the `sync` key: this node leads, these standbys are synchronous
    /// (compare-and-set on the mod revision; `None`: create if absent).
    WriteSync {
        standbys: Vec<String>,
        mod_revision: Option<i64>,
    },
    /// Delete the `sync` key (synchronous mode turned off).
    DeleteSync { mod_revision: i64 },
    /// Set `synchronous_standby_names` (reloaded at once if postgres runs).
    SetSyncNames(String),
    /// Remember that a divergence check was done for this leader timeline.
    NoteDivergenceCheck { leader: String, timeline: u32 },
    /// Remember the standbys named in `synchronous_standby_names` and the primary
    /// flush position recorded for each (replaces [`Memory::sync_named`]).
    NoteSyncNamed(std::collections::BTreeMap<String, u64>),
    /// Create physical slots for members and drop slots of members that are gone.
    SyncSlots {
        create: Vec<String>,
        drop: Vec<String>,
    },
    /// The node must not run: exit the agent with an error.
    Exit { code: i32, message: String },
}

impl Action {
    /// Long actions run in the background; they always end an action list.
    pub fn long_kind(&self) -> Option<LongKind> {
        match self {
            Action::Bootstrap => Some(LongKind::Bootstrap),
            Action::Clone(_) => Some(LongKind::Clone),
            Action::StartPrimary => Some(LongKind::StartPrimary),
            Action::StartReplica(_) => Some(LongKind::StartReplica),
            Action::Promote => Some(LongKind::Promote),
            Action::Rewind(_) => Some(LongKind::Rewind),
            Action::DemoteGraceful { .. } => Some(LongKind::Demote),
            Action::Restart { .. } => Some(LongKind::Restart),
            Action::Reinitialize(_) => Some(LongKind::Reinit),
            _ => None,
        }
    }
}

/// What to do this cycle and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub reason: Reason,
    /// Run the next cycle no later than this many seconds from now.
    pub wakeup_in: Option<f64>,
}

impl Decision {
    fn new(reason: Reason) -> Decision {
        Decision {
            actions: vec![],
            reason,
            wakeup_in: None,
        }
    }

    fn with(reason: Reason, actions: Vec<Action>) -> Decision {
        Decision {
            actions,
            reason,
            wakeup_in: None,
        }
    }
}

/// A system identifier looks like one: at least 10 digits.
pub fn sysid_valid(s: Option<&str>) -> bool {
    s.is_some_and(|s| s.len() >= 10 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Our view of the leader lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// We hold it with our current lease.
    Held,
    /// It names us but is bound to an older lease of ours.
    HeldStale,
    /// Someone else holds it.
    Other,
    /// Nobody holds it.
    Free,
}

/// The HA decision for one cycle, including the answer to a pending REST request.
pub fn decide(obs: &Observation, s: &Settings) -> Decision {
    let mut d = decide_cluster(obs, s);
    // Positions recorded for synchronous standbys hold only while postgres runs
    // as primary without a break: after a restart, demotion or promotion the
    // standbys are named (and recorded) afresh. Noted after a fence (which comes
    // first) and before a long action or an exit (which come last).
    if !obs.pg.is_primary() && !obs.memory.sync_named.is_empty() {
        let at = d
            .actions
            .iter()
            .position(|a| a.long_kind().is_some() || matches!(a, Action::Exit { .. }))
            .unwrap_or(d.actions.len());
        d.actions
            .insert(at, Action::NoteSyncNamed(Default::default()));
    }
    // Changed `postgresql.parameters` apply at once where postgres allows (reload);
    // the others show as pending_restart.
    if obs.config_changed
        && obs.cluster.is_some()
        && obs.pg.accepting
        && obs.memory.long_action.is_none()
        && manual::steady(&d.reason)
        && d.actions.iter().all(|a| a.long_kind().is_none())
    {
        d.actions.push(Action::Reload);
    }
    let d = manual::with_request(obs, s, obs.cluster.as_ref(), d);
    fence::without_fence(obs, s, d)
}

/// The HA decision without requests.
fn decide_cluster(obs: &Observation, s: &Settings) -> Decision {
    let Some(cluster) = &obs.cluster else {
        return decide_dcs_unavailable(obs);
    };
    let cfg = cluster.dynamic();
    let lock = match &cluster.leader {
        None => Lock::Free,
        Some(l) if l.name == s.name && l.lease == obs.lease && obs.lease != 0 => Lock::Held,
        Some(l) if l.name == s.name => Lock::HeldStale,
        Some(_) => Lock::Other,
    };
    let mine = matches!(lock, Lock::Held | Lock::HeldStale);
    // Actions that make the lock ours before anything relies on holding it.
    let rebind = if lock == Lock::HeldStale {
        vec![Action::RebindLeader]
    } else {
        vec![]
    };
    let with_lock = |mut v: Vec<Action>| {
        let mut out = rebind.clone();
        out.append(&mut v);
        out
    };
    let paused = cfg.pause;

    // 1. A long action is running: keep the lock, or stop a would-be primary that lost it.
    if let Some((kind, _since)) = obs.memory.long_action {
        if mine {
            return Decision::with(Reason::LongActionWithLock(kind), with_lock(vec![]));
        }
        if !paused && matches!(kind, LongKind::Promote | LongKind::StartPrimary) {
            return Decision::with(
                Reason::LostLockDuring(kind),
                vec![Action::Stop(StopMode::Immediate)],
            );
        }
        if !paused && obs.pg.is_primary() && kind != LongKind::Bootstrap {
            return Decision::with(
                Reason::LostLockDuring(kind),
                vec![Action::Stop(StopMode::Immediate)],
            );
        }
        return Decision::new(Reason::LongActionInProgress(kind));
    }

    // 2. We bootstrapped the cluster: publish it. Once published (or when the note is
    // stale: the executor keeps it), the normal checks below apply.
    if let Some(sysid) = &obs.memory.bootstrapped_sysid {
        let mut actions = vec![];
        if cluster.initialize.as_deref() != Some(sysid.as_str()) {
            actions.push(Action::SetInitialize(sysid.clone()));
        }
        if cluster.config.is_none() {
            actions.push(Action::SeedConfig(s.bootstrap_config.clone()));
        }
        if mine && !actions.is_empty() {
            return Decision::with(Reason::InitializedNewCluster, with_lock(actions));
        }
        // We lost the lock while bootstrapping: somebody else cannot have data, so
        // take it back if free; otherwise the next cycles sort it out. Only a node
        // that runs the freshly bootstrapped primary skips the health checks.
        if lock == Lock::Free && !actions.is_empty() && obs.pg.is_primary() {
            actions.insert(0, Action::AcquireLeader);
            return Decision::with(Reason::InitializedNewCluster, actions);
        }
    }
    if let Some(r) = &obs.memory.last_result {
        if r.kind == LongKind::Bootstrap && !r.ok && obs.memory.bootstrapped_sysid.is_none() {
            let mut actions = vec![];
            // initdb may have got as far as starting postgres: stop it before its
            // data directory is removed and before the key is let go (rule 4).
            if obs.pg.running {
                actions.push(Action::Stop(StopMode::Immediate));
            }
            if mine {
                actions.push(Action::ReleaseLeader);
            }
            if cluster.initialize.as_deref() == Some("") {
                actions.push(Action::DeleteInitialize);
            }
            actions.push(Action::RemoveDataDir);
            actions.push(Action::Exit {
                code: 1,
                message: format!("failed to bootstrap the cluster: {}", r.message),
            });
            return Decision::with(Reason::BootstrapFailed(r.message.clone()), actions);
        }
    }

    // 3. Empty or unusable data directory.
    let (sysid, control, standby_signal) = match &obs.data_dir {
        DataDir::Invalid(e) => {
            // Like an empty one (Patroni: "not accessible"): postgres must not keep
            // running on it, and the key must not be held hostage by a node that
            // cannot start.
            let mut actions = vec![];
            if obs.pg.running {
                actions.push(Action::Stop(StopMode::Immediate));
            }
            if mine {
                actions.push(Action::ReleaseLeader);
            }
            return Decision::with(Reason::DataDirInvalid(e.clone()), actions);
        }
        DataDir::Empty => {
            if obs.pg.running {
                return Decision::with(
                    Reason::DataDirEmptyWhileRunning,
                    vec![Action::Stop(StopMode::Immediate)],
                );
            }
            if mine {
                return Decision::with(
                    Reason::ReleasedLockEmptyDataDir,
                    vec![Action::ReleaseLeader],
                );
            }
            if paused {
                return Decision::new(Reason::PausedEmptyDataDir);
            }
            return decide_bootstrap_or_clone(cluster, s);
        }
        DataDir::Initialized {
            sysid,
            control,
            standby_signal,
        } => (
            sysid.clone().or(obs.pg.sysid.clone()),
            control.clone(),
            *standby_signal,
        ),
    };

    // 4. The data directory must belong to this cluster.
    if !sysid_valid(sysid.as_deref()) {
        return Decision::new(Reason::InvalidSysid);
    }
    let sysid = sysid.unwrap_or_default();
    let mut publish_sysid = vec![];
    match cluster.initialize.as_deref() {
        Some(init) if sysid_valid(Some(init)) => {
            if init != sysid {
                if paused {
                    let mut a = vec![];
                    if mine {
                        a.push(Action::ReleaseLeader);
                    }
                    return Decision::with(Reason::SysidMismatchPaused, a);
                }
                return Decision::with(
                    Reason::SysidMismatch {
                        cluster: init.to_string(),
                        local: sysid.clone(),
                    },
                    vec![Action::Exit {
                        code: 1,
                        message: format!(
                            "system ID mismatch: node {} belongs to a different cluster: {} != {}",
                            s.name, init, sysid
                        ),
                    }],
                );
            }
        }
        _ => {
            // No (valid) initialize key but we have data: claim the cluster for it,
            // unless someone else is leader (then the leader will publish it).
            if (lock == Lock::Free && !paused) || mine {
                publish_sysid.push(Action::SetInitialize(sysid.clone()));
            }
        }
    }

    // 5. Postgres is not running.
    if !obs.pg.running {
        if paused {
            if mine {
                return Decision::with(
                    Reason::PausedRemovedLockNotRunning,
                    vec![Action::ReleaseLeader],
                );
            }
            return Decision::new(Reason::PausedNotRunning);
        }
        let mut d = decide_recover(obs, s, cluster, lock, control.as_ref(), standby_signal);
        if mine {
            d.actions = with_lock(d.actions);
        }
        let mut a = publish_sysid;
        a.append(&mut d.actions);
        d.actions = a;
        return d;
    }

    // 6. Postgres runs but does not answer yet (starting up, or hung).
    if obs.pg.in_recovery.is_none() {
        if lock == Lock::Other && !paused && may_be_primary(obs) {
            return Decision::with(
                Reason::DemotingOtherHasLock,
                vec![
                    Action::Stop(StopMode::Immediate),
                    Action::StartReplica(follow_target(cluster, s)),
                ],
            );
        }
        if mine {
            return Decision::with(
                Reason::PostgresNotAnswering { leader: true },
                with_lock(vec![]),
            );
        }
        return Decision::new(Reason::PostgresNotAnswering { leader: false });
    }

    // 7. Postgres runs: race, lead, or follow.
    let mut d = if lock == Lock::Free {
        decide_unlocked(obs, s, cluster, paused)
    } else {
        decide_locked(obs, s, cluster, lock, paused)
    };
    if mine {
        d.actions = with_lock(d.actions);
    }
    let mut a = publish_sysid;
    a.append(&mut d.actions);
    d.actions = a;
    d
}

/// The DCS could not be read or our lease not renewed: a primary stops taking writes.
fn decide_dcs_unavailable(obs: &Observation) -> Decision {
    if obs.memory.paused {
        return Decision::new(Reason::DcsUnavailablePaused);
    }
    let becoming_primary = obs
        .memory
        .long_action
        .is_some_and(|(k, _)| matches!(k, LongKind::Promote | LongKind::StartPrimary));
    if may_be_primary(obs) || becoming_primary {
        return Decision::with(
            Reason::DemotedDcsUnavailable,
            vec![
                Action::Stop(StopMode::Immediate),
                Action::StartReplica(None),
            ],
        );
    }
    Decision::new(Reason::DcsUnavailable)
}

/// Postgres may be accepting writes: it answered as a primary, or it runs but did
/// not answer the probe (hung, or out of connections) and was not started as a
/// standby (Patroni falls back to the role it last saw). Fencing must not depend on
/// the probe succeeding.
fn may_be_primary(obs: &Observation) -> bool {
    if obs.pg.is_primary() {
        return true;
    }
    obs.pg.running
        && obs.pg.in_recovery.is_none()
        && obs.memory.long_action.is_none()
        && matches!(
            obs.data_dir,
            DataDir::Initialized {
                standby_signal: false,
                ..
            }
        )
}

/// Empty data directory: race to bootstrap, clone from a running member, or wait.
fn decide_bootstrap_or_clone(cluster: &Cluster, s: &Settings) -> Decision {
    if cluster.is_unlocked() && cluster.initialize.is_none() && !s.nofailover {
        return Decision::with(
            Reason::BootstrapNewCluster,
            vec![
                Action::RaceInitialize,
                Action::AcquireLeader,
                Action::Bootstrap,
            ],
        );
    }
    if let Some(src) = clone_source(cluster, s) {
        let from_leader = cluster.leader_name() == Some(src.name.as_str());
        return Decision::with(
            Reason::Cloning {
                from: src.name.clone(),
                leader: from_leader,
            },
            vec![Action::Clone(src)],
        );
    }
    // The leader's member key turns "running" without a leader-key event to wake
    // us: look again soon rather than a whole loop_wait later.
    let mut d = Decision::new(Reason::WaitingForLeaderToBootstrap);
    d.wakeup_in = Some(0.5);
    d
}

/// Clone source: a running member tagged `clonefrom`, else the running leader.
fn clone_source(cluster: &Cluster, s: &Settings) -> Option<Source> {
    let leader = cluster.leader_name()?;
    let running = |m: &crate::dcs::model::Member| m.data.state.as_deref() == Some("running");
    let pick = cluster
        .members
        .iter()
        .filter(|m| {
            m.name != s.name && m.name != leader && m.data.tag_bool("clonefrom") && running(m)
        })
        .chain(
            cluster
                .members
                .iter()
                .filter(|m| m.name == leader && running(m)),
        )
        .find(|m| m.data.conn_host_port().is_some())?;
    let (host, port) = pick.data.conn_host_port()?;
    Some(Source {
        name: pick.name.clone(),
        host,
        port,
    })
}

/// The member a node named `name` with tag `replicatefrom: rf` streams from
/// instead of the leader: `rf`, when that is another member, running and with a
/// connection address. One rule for [`follow_target`] (where this node streams
/// from) and [`upstream_of`] (where the slot of a member must live).
fn cascade_upstream<'a>(
    cluster: &'a Cluster,
    name: &str,
    rf: Option<&str>,
) -> Option<&'a crate::dcs::model::Member> {
    let rf = rf.filter(|rf| *rf != name)?;
    cluster
        .member(rf)
        .filter(|m| m.data.state.as_deref() == Some("running") && m.data.conn_host_port().is_some())
}

/// The member `m` streams from: its `replicatefrom` upstream, else the leader.
fn upstream_of<'a>(cluster: &'a Cluster, m: &'a crate::dcs::model::Member) -> Option<&'a str> {
    let rf = m.data.tags.get("replicatefrom").and_then(|v| v.as_str());
    cascade_upstream(cluster, &m.name, rf)
        .map(|up| up.name.as_str())
        .or_else(|| cluster.leader_name())
}

/// A running replica keeps physical slots for the members that cascade from it
/// (and drops other slots it still has, e.g. from its time as a primary, so they
/// do not hold WAL back; permanent slots stay).
fn replica_slots(obs: &Observation, s: &Settings, cluster: &Cluster) -> Option<Action> {
    let cfg = cluster.dynamic();
    if !cfg.postgresql.use_slots || obs.pg.in_recovery != Some(true) {
        return None;
    }
    let have = obs.pg.slots.as_ref()?;
    let wanted = slots_streaming_from(cluster, &s.name);
    slot_changes(have, &wanted, &permanent_slots(&cfg))
}

/// Slot names of the members that stream from `me`.
fn slots_streaming_from(cluster: &Cluster, me: &str) -> Vec<String> {
    cluster
        .members
        .iter()
        .filter(|m| m.name != me && upstream_of(cluster, m) == Some(me))
        .map(|m| crate::dcs::model::slot_name_for(&m.name))
        .collect()
}

/// The slots to create (`wanted` but missing) and to drop (there, neither wanted
/// nor permanent), if any.
fn slot_changes(have: &[String], wanted: &[String], permanent: &[String]) -> Option<Action> {
    let create: Vec<String> = wanted
        .iter()
        .filter(|w| !have.contains(w))
        .cloned()
        .collect();
    let drop: Vec<String> = have
        .iter()
        .filter(|h| !wanted.contains(h) && !permanent.contains(h))
        .cloned()
        .collect();
    (!create.is_empty() || !drop.is_empty()).then_some(Action::SyncSlots { create, drop })
}

/// The member this node should stream from: `replicatefrom` if it is running, else the leader.
fn follow_target(cluster: &Cluster, s: &Settings) -> Option<Source> {
    let to_source = |name: &str| -> Option<Source> {
        let m = cluster.member(name)?;
        let (host, port) = m.data.conn_host_port()?;
        Some(Source {
            name: m.name.clone(),
            host,
            port,
        })
    };
    if let Some(up) = cascade_upstream(cluster, &s.name, s.replicatefrom.as_deref()) {
        return to_source(&up.name);
    }
    let leader = cluster.leader_name()?;
    if leader == s.name {
        return None;
    }
    to_source(leader)
}

/// Postgres is not running (crashed, stopped, or never started by this agent).
fn decide_recover(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    lock: Lock,
    control: Option<&ControlState>,
    standby_signal: bool,
) -> Decision {
    let was_primary = control.is_some_and(|c| c.was_primary()) && !standby_signal;
    let mine = matches!(lock, Lock::Held | Lock::HeldStale);
    if mine {
        // A primary that fails to come back hands the lock over rather than keep it hostage.
        if obs.memory.failed_primary_starts >= 3 {
            return Decision::with(Reason::ReleasedLockStartFailed, vec![Action::ReleaseLeader]);
        }
        if was_primary {
            let mut actions = vec![];
            if cluster.dynamic().synchronous_mode {
                // commits wait for a standby until the sync state is settled again
                actions.push(Action::SetSyncNames(sync::NO_STANDBY.to_string()));
            }
            actions.push(Action::StartPrimary);
            return Decision::with(Reason::StartingPrimaryAfterFailure, actions);
        }
        // Not a primary's data dir (or a replica that got the lock): start read-only,
        // the next cycle promotes it while we hold the lock.
        return Decision::with(
            Reason::StartingReadonlyWithLock,
            vec![Action::StartReplica(None)],
        );
    }
    let target = follow_target(cluster, s);
    if let Some(d) = rewind_decision(obs, s, cluster, control, target.as_ref()) {
        return d;
    }
    Decision::with(
        Reason::StartingAsSecondary,
        vec![Action::StartReplica(target)],
    )
}

/// Does this stopped node's WAL history diverge from the leader's? Returns the
/// decision to rewind, re-clone or stay stopped, or `None` when it can simply stream.
fn rewind_decision(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    control: Option<&ControlState>,
    target: Option<&Source>,
) -> Option<Decision> {
    let leader = cluster.leader.as_ref()?;
    let leader_member = cluster.member(&leader.name)?;
    // Only compare against a leader that runs as primary.
    if leader_member.data.role.as_deref() != Some("primary")
        || leader_member.data.state.as_deref() != Some("running")
    {
        return None;
    }
    let leader_tl = leader_member.data.timeline?;
    let c = control?;
    let (local_tl, local_lsn) = (c.timeline(), c.lsn());
    let diverged = if local_tl > leader_tl {
        true
    } else if local_tl == leader_tl {
        false
    } else if c.was_primary_crashed() {
        // A crashed primary's end of WAL is unknown from pg_control alone:
        // pg_rewind finds out exactly (and changes nothing when not needed).
        true
    } else {
        match cluster.history.switch_lsn(local_tl) {
            // A cleanly stopped primary's last record is its shutdown checkpoint at
            // `local_lsn`: the new timeline must start after that record.
            Some(switch) if c.was_primary() => local_lsn >= switch,
            Some(switch) => local_lsn > switch,
            None => {
                // The leader's history does not know our timeline yet (just promoted).
                if cluster.history.current_timeline() < leader_tl {
                    return Some(Decision::new(Reason::WaitingForLeaderHistory));
                }
                true
            }
        }
    };
    if !diverged {
        return None;
    }
    let src = target
        .cloned()
        .filter(|t| t.name == leader.name)
        .or_else(|| {
            let (host, port) = leader_member.data.conn_host_port()?;
            Some(Source {
                name: leader.name.clone(),
                host,
                port,
            })
        })?;
    if let Some(err) = &obs.memory.rewind_failed {
        if s.remove_data_directory_on_rewind_failure {
            return Some(Decision::with(
                Reason::ReinitializingAfterRewindFailure,
                vec![Action::RemoveDataDir],
            ));
        }
        return Some(Decision::new(Reason::RewindFailedStayStopped(err.clone())));
    }
    let use_rewind = s
        .use_pg_rewind_local
        .unwrap_or(cluster.dynamic().postgresql.use_pg_rewind);
    if use_rewind {
        return Some(Decision::with(
            Reason::RunningRewind {
                from: src.name.clone(),
            },
            vec![Action::Rewind(src)],
        ));
    }
    if s.remove_data_directory_on_diverged_timelines {
        return Some(Decision::with(
            Reason::ReinitializingDiverged,
            vec![Action::RemoveDataDir],
        ));
    }
    Some(Decision::new(Reason::DivergedNoRewind))
}

/// A running replica that cannot stream may have diverged from a new leader
/// (it replayed past the point where the leader's timeline forked). Stop it once
/// per leader timeline so that pg_control can be read and the stopped-node check
/// above decides between streaming and pg_rewind.
fn running_replica_divergence(obs: &Observation, cluster: &Cluster) -> Option<Decision> {
    if obs.pg.receiver_status.as_deref() == Some("streaming") {
        return None;
    }
    let leader = cluster.leader.as_ref()?;
    let lm = cluster.member(&leader.name)?;
    if lm.data.role.as_deref() != Some("primary") || lm.data.state.as_deref() != Some("running") {
        return None;
    }
    let leader_tl = lm.data.timeline?;
    let my_tl = obs.pg.timeline?;
    if my_tl >= leader_tl {
        return None;
    }
    let switch = cluster.history.switch_lsn(my_tl)?;
    if obs.pg.replay_lsn.unwrap_or(0) <= switch {
        return None;
    }
    let key = (leader.name.clone(), leader_tl);
    if obs.memory.divergence_checked.as_ref() == Some(&key) {
        return None;
    }
    Some(Decision::with(
        Reason::CheckingDivergence {
            leader: leader.name.clone(),
            timeline: leader_tl,
        },
        vec![
            Action::NoteDivergenceCheck {
                leader: key.0,
                timeline: key.1,
            },
            Action::Stop(StopMode::Fast),
        ],
    ))
}

/// Nobody holds the leader key: take it if we are the healthiest, else follow.
fn decide_unlocked(obs: &Observation, s: &Settings, cluster: &Cluster, paused: bool) -> Decision {
    match healthiest(obs, s, cluster, paused) {
        Ok(()) => {
            let mut actions = vec![Action::AcquireLeader];
            if let Some(f) = &cluster.failover {
                actions.push(Action::ClearFailover {
                    mod_revision: f.mod_revision,
                });
            }
            if obs.pg.is_primary() {
                Decision::with(Reason::AcquiredLockAsPrimary, actions)
            } else {
                if cluster.dynamic().synchronous_mode {
                    actions.extend(sync::prepromote(s, cluster));
                }
                actions.push(Action::Promote);
                Decision::with(Reason::PromotedByAcquiringLock, actions)
            }
        }
        Err(why) => {
            if obs.pg.is_primary() && !paused {
                return Decision::with(
                    Reason::DemotingNotHealthiest(why),
                    vec![
                        Action::Stop(StopMode::Immediate),
                        Action::StartReplica(None),
                    ],
                );
            }
            Decision::new(Reason::NotHealthiest(why))
        }
    }
}

/// Why this node may not take the leader key now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHealthiest {
    NoFailoverTag,
    Paused,
    Lagging { lag: u64, max: u64 },
    TimelineBehind { mine: u32, cluster: u32 },
    PrimaryAlive(String),
    Ahead(String),
    HigherPriority(String),
    PeersUnknown,
    FailoverToOther(String),
    NotSynchronous,
}

impl std::fmt::Display for NotHealthiest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotHealthiest::NoFailoverTag => write!(f, "I am not allowed to promote (nofailover)"),
            NotHealthiest::Paused => write!(f, "the cluster is paused"),
            NotHealthiest::Lagging { lag, max } => {
                write!(f, "my WAL is {lag} bytes behind the last leader position (maximum_lag_on_failover {max})")
            }
            NotHealthiest::TimelineBehind { mine, cluster } => {
                write!(
                    f,
                    "my timeline {mine} is behind the cluster timeline {cluster}"
                )
            }
            NotHealthiest::PrimaryAlive(n) => write!(f, "primary {n} is still alive"),
            NotHealthiest::Ahead(n) => write!(f, "{n} is ahead of me"),
            NotHealthiest::HigherPriority(n) => {
                write!(f, "{n} is as far ahead and has a higher failover priority")
            }
            NotHealthiest::PeersUnknown => write!(f, "peers have not been asked yet"),
            NotHealthiest::NotSynchronous => {
                write!(f, "synchronous mode: I am not a listed synchronous standby")
            }
            NotHealthiest::FailoverToOther(n) => write!(f, "a manual failover to {n} is requested"),
        }
    }
}

/// Safety rule 3: race for the key only when no reachable member is better.
pub fn healthiest(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    paused: bool,
) -> Result<(), NotHealthiest> {
    let cfg = cluster.dynamic();
    let me_primary = obs.pg.is_primary();
    if me_primary {
        // A primary without the key may take it back only if nobody promoted past it.
        let mine = obs.pg.timeline.unwrap_or(0);
        let ct = cluster.history.current_timeline();
        if mine < ct {
            return Err(NotHealthiest::TimelineBehind { mine, cluster: ct });
        }
        return Ok(());
    }
    // Never while another member still runs as a primary (whatever its tags): it
    // has not demoted yet, and promoting now would make two.
    if let Some(p) = obs
        .peers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|p| p.name != s.name && p.reachable && !p.in_recovery)
    {
        return Err(NotHealthiest::PrimaryAlive(p.name.clone()));
    }
    // A manual failover to a specific candidate: only the candidate races,
    // unless the candidate is gone or cannot be promoted (also when paused).
    if let Some(Failover {
        candidate: Some(c),
        scheduled_at: None,
        ..
    }) = &cluster.failover
    {
        let sync_ok = !sync::active(cluster, &cfg)
            || cluster
                .sync
                .as_ref()
                .is_some_and(|k| k.matches(&s.name, true));
        if c == &s.name && !s.nofailover && sync_ok {
            return Ok(());
        }
    }
    if paused {
        return Err(NotHealthiest::Paused);
    }
    if s.nofailover {
        return Err(NotHealthiest::NoFailoverTag);
    }
    // Synchronous mode: only a listed synchronous standby (or the former leader)
    // has every acknowledged commit.
    let sync_only = sync::active(cluster, &cfg);
    if sync_only
        && !cluster
            .sync
            .as_ref()
            .is_some_and(|k| k.matches(&s.name, true))
    {
        return Err(NotHealthiest::NotSynchronous);
    }
    if let Some(Failover {
        candidate: Some(c), ..
    }) = &cluster.failover
    {
        let candidate_ok = obs
            .peers
            .as_ref()
            .and_then(|p| p.iter().find(|p| &p.name == c))
            .is_some_and(|p| p.reachable && !p.nofailover);
        if candidate_ok {
            return Err(NotHealthiest::FailoverToOther(c.clone()));
        }
    }
    // A switchover without a named candidate: the former leader stands back while
    // anyone else can take over; the others race among themselves without the lag
    // check (the demoted leader handed over everything it had).
    let switchover_from = cluster
        .failover
        .as_ref()
        .filter(|f| f.candidate.is_none())
        .and_then(|f| f.leader.clone());
    if switchover_from.as_deref() == Some(s.name.as_str()) {
        let others = obs
            .peers
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|p| p.name != s.name && p.reachable && p.in_recovery && !p.nofailover);
        if others {
            return Err(NotHealthiest::FailoverToOther("another member".into()));
        }
    }
    let my_pos = obs.pg.failover_position();
    if let (Some(optime), None) = (cluster.status.optime, &switchover_from) {
        let lag = optime.saturating_sub(my_pos);
        if lag > cfg.maximum_lag_on_failover {
            return Err(NotHealthiest::Lagging {
                lag,
                max: cfg.maximum_lag_on_failover,
            });
        }
    }
    if cfg.check_timeline {
        let mine = obs.pg.timeline.unwrap_or(0);
        let ct = cluster.history.current_timeline();
        if mine < ct {
            return Err(NotHealthiest::TimelineBehind { mine, cluster: ct });
        }
    }
    let Some(peers) = &obs.peers else {
        return Err(NotHealthiest::PeersUnknown);
    };
    let my_wal = obs.pg.wal_position();
    let former_leader = cluster
        .history
        .entries
        .last()
        .and_then(|e| e.new_leader.clone());
    for p in peers {
        if p.name == s.name || !p.reachable || p.nofailover {
            continue;
        }
        if !p.in_recovery {
            return Err(NotHealthiest::PrimaryAlive(p.name.clone()));
        }
        if switchover_from.as_deref() == Some(p.name.as_str()) {
            continue;
        }
        if sync_only
            && !cluster
                .sync
                .as_ref()
                .is_some_and(|k| k.matches(&p.name, true))
        {
            continue;
        }
        if my_wal < p.wal_position {
            return Err(NotHealthiest::Ahead(p.name.clone()));
        }
        if p.wal_position > 0
            && my_wal == p.wal_position
            && s.failover_priority < p.failover_priority
            && former_leader.as_deref() != Some(p.name.as_str())
        {
            return Err(NotHealthiest::HigherPriority(p.name.clone()));
        }
    }
    Ok(())
}

/// Somebody (maybe us) holds the leader key.
fn decide_locked(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    lock: Lock,
    paused: bool,
) -> Decision {
    let mine = matches!(lock, Lock::Held | Lock::HeldStale);
    if mine {
        if obs.pg.is_primary() {
            return decide_leader_steady(obs, s, cluster);
        }
        if paused {
            return Decision::with(
                Reason::PausedRemovedLockNotPrimary,
                vec![Action::ReleaseLeader],
            );
        }
        let mut actions = vec![];
        if cluster.dynamic().synchronous_mode {
            actions.extend(sync::prepromote(s, cluster));
        }
        actions.push(Action::Promote);
        return Decision::with(Reason::PromotedBecauseHadLock, actions);
    }
    let leader = cluster.leader_name().unwrap_or_default().to_string();
    if obs.pg.is_primary() {
        if paused {
            return Decision::new(Reason::PausedPrimaryWithoutLock);
        }
        let target = follow_target(cluster, s);
        return Decision::with(
            Reason::DemotingOtherHasLock,
            vec![
                Action::Stop(StopMode::Immediate),
                Action::StartReplica(target),
            ],
        );
    }
    // A replica: check the timeline, then the upstream.
    let target = follow_target(cluster, s);
    if !paused {
        if let Some(d) = running_replica_divergence(obs, cluster) {
            return d;
        }
    }
    let want = target.as_ref().map(|t| t.name.clone());
    if obs.memory.following.as_ref() != Some(&want) && !paused {
        return Decision::with(
            Reason::FollowingNew {
                me: s.name.clone(),
                leader: leader.clone(),
                upstream: want,
            },
            vec![Action::Follow(target)],
        );
    }
    let mut d = Decision::new(Reason::Following {
        me: s.name.clone(),
        leader,
        upstream: want,
    });
    if !paused {
        d.actions.extend(replica_slots(obs, s, cluster));
    }
    d
}

/// The leader with a running primary: publish position, history, slots.
fn decide_leader_steady(obs: &Observation, s: &Settings, cluster: &Cluster) -> Decision {
    let cfg = cluster.dynamic();
    let manual = cluster
        .failover
        .as_ref()
        .and_then(|f| manual::failover_from_leader(obs, s, cluster, f, cfg.pause));
    if let Some(d) = &manual {
        if d.actions.iter().any(|a| a.long_kind().is_some()) {
            return d.clone();
        }
    }
    let mut actions = vec![];
    if cluster.config.is_none() {
        // The key was deleted (e.g. `remove` on a running cluster): the leader puts
        // back the configuration it last knew, as Patroni does.
        let cfg = obs
            .memory
            .last_config
            .clone()
            .unwrap_or_else(|| s.bootstrap_config.clone());
        actions.push(Action::SeedConfig(cfg));
    }
    if let Some(lsn) = obs.pg.wal_lsn {
        actions.push(Action::WriteStatus { optime: lsn });
    }
    if let Some(tl) = obs.pg.timeline {
        if tl > 1 && cluster.history.entries.iter().all(|e| e.timeline != tl - 1) {
            actions.push(Action::UpdateHistory { timeline: tl });
        }
    }
    if cfg.postgresql.use_slots {
        if let Some(have) = &obs.pg.slots {
            let permanent = permanent_slots(&cfg);
            let my_slot = crate::dcs::model::slot_name_for(&s.name);
            // A slot for every member that streams from us; a cascading replica
            // (`replicatefrom` a running member) gets its slot on that member.
            let mut wanted = slots_streaming_from(cluster, &s.name);
            let present: Vec<String> = cluster
                .members
                .iter()
                .map(|m| crate::dcs::model::slot_name_for(&m.name))
                .collect();
            // Slots of members that went away are kept for member_slots_ttl, so a
            // replica that comes back in time continues where it stopped.
            let retained: Vec<String> = obs
                .memory
                .slot_seen
                .iter()
                .filter(|(slot, seen)| {
                    !wanted.contains(slot)
                        && !present.contains(slot)
                        && **slot != my_slot
                        && obs.now - **seen <= cfg.member_slots_ttl
                })
                .map(|(slot, _)| slot.clone())
                .collect();
            let mut published = cluster.status.retain_slots.clone();
            published.sort();
            if retained != published {
                actions.push(Action::WriteRetainSlots(retained.clone()));
            }
            wanted.extend(retained);
            wanted.extend(permanent.iter().filter(|p| **p != my_slot).cloned());
            actions.extend(slot_changes(have, &wanted, &permanent));
        }
    }
    let sync_steps = sync::leader_steps(obs, s, cluster, &cfg);
    let settling = !sync_steps.is_empty();
    actions.extend(sync_steps);
    let mut d = match manual {
        // waiting for a scheduled switchover, or cleaning up a request we refuse
        Some(mut d) => {
            actions.append(&mut d.actions);
            d.actions = actions;
            d
        }
        None => Decision::with(Reason::LeaderWithLock(s.name.clone()), actions),
    };
    if settling {
        // synchronous replication takes a few steps: do them without waiting a loop
        d.wakeup_in = Some(0.5);
    }
    d
}

/// Names of permanent physical slots from the dynamic `slots:` section.
pub fn permanent_slots(cfg: &crate::config::DynamicConfig) -> Vec<String> {
    match &cfg.slots {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| {
                v.is_null()
                    || v.get("type").and_then(|t| t.as_str()).unwrap_or("physical") == "physical"
            })
            .map(|(k, _)| k.clone())
            .collect(),
        _ => vec![],
    }
}
