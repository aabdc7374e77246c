//! Plain data the postgres layer reports and takes, shared with `ha` (which
//! decides on it) and the executor: the data directory as found, a replication
//! source, a stop mode, a walsender.
//!
//! Rule: data only, no IO, no policy. `ha` imports these; nothing here imports
//! `ha`, so the dependency runs one way (ha -> postgres types).

use serde::Serialize;

use super::ControlState;

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

/// One walsender as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Walsender {
    pub name: String,
    pub state: String,
    /// `async`, `potential`, `sync`, `quorum`.
    pub sync_state: String,
    /// The standby's flush position (`flush_lsn`), absolute; `None` until it
    /// first replied.
    pub flush_lsn: Option<u64>,
    /// Bytes between the primary's flush position and the standby's flush position.
    pub lag: u64,
}
