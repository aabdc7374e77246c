//! # agent: a high-availability supervisor for PostgreSQL, compatible with Patroni
//!
//! One `agent` runs on every database node. It is the parent of its postgres,
//! holds the cluster's leader lease in etcd when its node is the primary, and
//! promotes, demotes, rewinds and re-clones so that the cluster always has at
//! most one writable primary.
//!
//! Layout, one module per concern:
//!
//! - [`config`]: the Patroni-format YAML file, `PATRONI_*` overrides, the dynamic config,
//!   and the one JSON merge ([`config::merge`], Patroni's `patch_config`) that the
//!   loader, `PATCH /config` and `agentctl edit-config` share.
//! - [`dcs`]: etcd: the key layout and value formats ([`dcs::model`], pure) and the client ([`dcs::etcd`]).
//! - [`postgres`]: the postgres child process, its configuration files, probes, initdb,
//!   pg_basebackup, pg_rewind; the user's scripts (Patroni's callbacks,
//!   `pre_promote`, `before_stop`: [`postgres::callbacks`]); the WAL sampler behind `GET /patroni`
//!   ([`postgres::WalSampler`]); the plain types `ha` decides on
//!   ([`postgres::DataDir`], [`postgres::Source`], ...). It imports neither `ha`
//!   nor `status`.
//! - [`ha`]: the pure HA decision `decide(observation) -> actions + reason`, and
//!   every other state rule of the loop as a pure function: the loop's memory
//!   ([`ha::memory::apply`]), when to ask the peers ([`ha::wants_peers`]), the
//!   fence ([`ha::fence`]), when to write and when to wake ([`ha::cadence`]).
//! - [`agent`]: the loop: `agent/observe.rs`, `ha::decide`, `agent/execute.rs`,
//!   `agent/publish.rs`; startup and shutdown in `agent/mod.rs`. It gathers
//!   facts, carries out actions and publishes; it decides nothing.
//! - [`status`]: the snapshot the loop publishes for the REST API, and the pure
//!   mapping of a cycle to it ([`status::NodeStatus::from_cycle`]).
//! - [`api`]: the REST API (axum), answering from the snapshot (and, for
//!   `/patroni`'s WAL position, the sampler); it never talks to postgres itself.
//! - [`peers`]: asking other members for their status during a leader race.
//! - [`fence`]: a watchdog process that stops the primary if the agent freezes and its lease runs out.
//! - [`child_env`]: the scrubbed environment of every child process (no secrets inherited).
//! - [`tls`]: rustls configurations: the REST API's server side, HTTPS to members' APIs; the
//!   certificate loading and server-certificate checks `postgres` uses for its own connections too.
//! - [`ctl`]: `agentctl`, the operator CLI (patronictl's verbs), over etcd and the members' REST APIs.
//!
//! The data flow of one cycle:
//!
//! ```text
//! observe (etcd read + lease keep-alive + postgres probe [+ peers])
//!     -> ha::decide (pure) -> execute actions (IO)
//!     -> publish NodeStatus::from_cycle (REST) + member key (if ha::cadence says so)
//!     -> sleep ha::cadence::next_cycle_in (or until woken)
//! ```

pub mod agent;
pub mod api;
pub mod child_env;
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
