//! What `decide` sees: the observation (etcd, postgres, peers, the agent's own
//! memory) and the local settings. The postgres facts it shares with the
//! executor (`DataDir`, `Source`, `StopMode`, `Walsender`) are plain types of
//! `postgres` (`postgres/types.rs`), re-exported here.
//!
//! Rule: plain data; pure.

use serde::Serialize;

use crate::postgres::ProbeResult;
pub use crate::postgres::{DataDir, Source, StopMode};

use super::*;

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
            received_position(self.receive_lsn, self.replay_lsn)
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

impl From<&ProbeResult> for PgView {
    /// A running postgres that answered this probe. Its timeline is the
    /// probe's; the agent puts the highest seen (`Memory::timeline_seen`) in.
    fn from(p: &ProbeResult) -> PgView {
        PgView {
            running: true,
            accepting: true,
            in_recovery: Some(p.in_recovery),
            timeline: p.timeline,
            wal_lsn: p.wal_lsn,
            receive_lsn: p.receive_lsn,
            replay_lsn: p.replay_lsn,
            replay_paused: p.replay_paused,
            receiver_status: p.receiver_status.clone(),
            slots: Some(p.slots.clone()),
            sysid: p.sysid.clone(),
            walsenders: p.walsenders.clone(),
            sync_standby_names: p.sync_standby_names.clone(),
            server_version: p.server_version,
            pending_restart: p.pending_restart,
        }
    }
}

/// A replica's WAL position: the furthest of what it received and what it
/// replayed (the receiver's position is unknown while it is down). The one
/// definition, used for the member key, `/patroni` and the leader race.
pub fn received_position(receive: Option<u64>, replay: Option<u64>) -> u64 {
    receive.unwrap_or(0).max(replay.unwrap_or(0))
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
    /// When our `pre_promote` script last failed (the promotion was abandoned
    /// and the leader key released): no leader race for `ttl` after it.
    pub pre_promote_failed_at: Option<Mono>,
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
