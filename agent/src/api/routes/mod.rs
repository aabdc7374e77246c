//! One file per route family; `api/mod.rs` puts them on paths.
//!
//! The read routes answer from the published snapshot only; the control routes
//! (`config`, `switchover`, `restart`, `reinit_reload`) also talk to etcd and
//! the HA loop, through [`crate::api::control`].

pub(super) mod cluster;
pub(super) mod config;
pub(super) mod health;
pub(super) mod metrics;
pub(super) mod node;
pub(super) mod reinit_reload;
pub(super) mod restart;
pub(super) mod switchover;
