//! What `decide` returns: the actions for the executor, in order, and the reason.
//!
//! Rule: plain data; pure.

use super::*;

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
    pub(super) fn new(reason: Reason) -> Decision {
        Decision {
            actions: vec![],
            reason,
            wakeup_in: None,
        }
    }

    pub(super) fn with(reason: Reason, actions: Vec<Action>) -> Decision {
        Decision {
            actions,
            reason,
            wakeup_in: None,
        }
    }
}
