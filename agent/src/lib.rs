//! # agent: a high-availability supervisor for PostgreSQL, compatible with Patroni
//!
//! One `agent` runs on every database node. It is the parent of its postgres,
//! holds the cluster's leader lease in etcd when its node is the primary, and
//! promotes, demotes, rewinds and re-clones so that the cluster always has at
//! most one writable primary.
//!
//! Layout, one module per concern:
//!
//! - [`config`]: the Patroni-format YAML file, `PATRONI_*` overrides, the dynamic config.
//! - [`dcs`]: etcd: the key layout and value formats ([`dcs::model`], pure) and the client ([`dcs::etcd`]).
//! - [`postgres`]: the postgres child process, its configuration files, probes, initdb,
//!   pg_basebackup, pg_rewind.
//! - [`ha`]: the pure HA decision `decide(observation) -> actions + reason`.
//! - [`agent`]: the loop: `agent/observe.rs`, `ha::decide`, `agent/execute.rs`,
//!   `agent/publish.rs`; startup and shutdown in `agent/mod.rs`.
//! - [`status`]: the snapshot the loop publishes for the REST API.
//! - [`api`]: the REST API (axum), answering from the snapshot only.
//! - [`peers`]: asking other members for their status during a leader race.
//! - [`fence`]: a watchdog process that stops the primary if the agent freezes and its lease runs out.
//! - [`tls`]: rustls configurations: the REST API's server side, HTTPS to members' APIs.
//! - [`ctl`]: `agentctl`, the operator CLI (patronictl's verbs), over etcd and the members' REST APIs.
//!
//! The data flow of one cycle:
//!
//! ```text
//! observe (etcd read + lease keep-alive + postgres probe [+ peers])
//!     -> ha::decide (pure) -> execute actions (IO) -> publish NodeStatus (REST)
//! ```

pub mod agent;
pub mod api;
pub mod config;
pub mod ctl;
pub mod dcs;
pub mod fence;
pub mod ha;
pub mod peers;
pub mod postgres;
pub mod status;
pub mod tls;

#[cfg(test)]
mod hostile;
