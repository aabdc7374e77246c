//! The REST API: Patroni's paths, status codes and JSON fields, answered from the
//! snapshot the HA loop publishes.
//!
//! Rule (safety rule 7): a handler reads `status.borrow().clone()` (an `Arc`, so
//! the borrow ends at once), computes its answer and writes it. No handler talks to
//! postgres, takes a lock across `.await`, or can panic on what a client sends:
//! HAProxy must keep getting an answer in milliseconds while postgres or etcd
//! hang.
//!
//! One file per route family in `routes/`:
//!
//! - `health.rs`: `/primary`, `/replica`, `/read-only`, ... (`GET`, `HEAD`, `OPTIONS`),
//!   `/liveness`, `/readiness`.
//! - `node.rs`: `/patroni`.
//! - `cluster.rs`: `/cluster`, `/history`.
//! - `metrics.rs`: `/metrics` (Prometheus text).
//! - `config.rs`: `GET|PATCH|PUT /config`.
//! - `switchover.rs`: `POST|DELETE /switchover`, `POST /failover`.
//! - `restart.rs`: `POST|DELETE /restart`.
//! - `reinit_reload.rs`: `POST /reload`, `POST /reinitialize`.
//!
//! The control routes (all but `GET` above) read and write etcd (with timeouts)
//! and hand requests to the HA loop (`control.rs`). `GET /patroni` reports a WAL
//! position at most 100 ms old: it waits (bounded) for the agent's
//! `postgres::WalSampler`, which owns the one connection
//! and shares each query between the requests in flight (see `routes/node.rs`).
//! `auth.rs` guards the unsafe methods (allowlist, client certificates, Basic
//! auth; `allowlist.rs` has the networks); `server.rs` serves the router over
//! HTTP or TLS with connection, request and time limits; `error.rs` is the one
//! error type every handler answers with.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

use crate::postgres::WalSampler;
use crate::status::NodeStatus;

pub mod allowlist;
mod auth;
mod control;
mod error;
mod routes;
mod server;
#[cfg(test)]
mod tests;

pub use auth::{Access, ConnInfo, Policy};
pub use server::{raise_fd_limit, serve, Limits, ServeOptions};

pub use control::{Control, RequestMsg, ScheduledRestart};
pub use error::ApiError;
pub use routes::cluster::cluster_as_json;
pub use routes::health::parse_lag;
use routes::{cluster, config, health, metrics, node, reinit_reload, restart, switchover};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The snapshot the HA loop publishes after every cycle.
    pub status: watch::Receiver<Arc<NodeStatus>>,
    /// etcd and the HA loop, for the control routes (absent: they answer 503).
    pub control: Option<Arc<Control>>,
    /// Fresh WAL positions for `GET /patroni` (absent: it reports the snapshot's).
    pub wal: Option<WalSampler>,
    /// Who may call the unsafe methods.
    pub access: Arc<Access>,
}

impl ApiState {
    pub fn new(status: watch::Receiver<Arc<NodeStatus>>) -> ApiState {
        ApiState {
            status,
            control: None,
            wal: None,
            access: Arc::default(),
        }
    }

    pub fn with_access(mut self, access: Arc<Access>) -> ApiState {
        self.access = access;
        self
    }

    pub fn with_control(mut self, control: Arc<Control>) -> ApiState {
        self.control = Some(control);
        self
    }

    pub fn with_wal_sampler(mut self, wal: WalSampler) -> ApiState {
        self.wal = Some(wal);
        self
    }

    /// The last published status. The borrow ends before this returns, so the
    /// loop is never blocked by a slow client.
    pub(crate) fn snapshot(&self) -> Arc<NodeStatus> {
        self.status.borrow().clone()
    }
}

/// All routes of the API, ready to serve or to drive with `oneshot` in tests.
pub fn router(state: ApiState) -> Router {
    let mut r = Router::new();
    for (path, check) in health::CHECKS {
        r = r.route(path, health::route(*check));
    }
    r.route("/liveness", health::liveness_route())
        .route("/readiness", health::readiness_route())
        // /patroni shares the sampler's one connection: a flood costs postgres
        // at most one query per 100 ms.
        .route("/patroni", get(node::get_patroni))
        .route("/cluster", get(cluster::get_cluster))
        .route("/history", get(cluster::get_history))
        .route(
            "/config",
            get(config::get_config)
                .patch(config::patch_config_route)
                .put(config::put_config_route),
        )
        .route(
            "/switchover",
            post(switchover::post_switchover).delete(switchover::delete_switchover),
        )
        .route("/failover", post(switchover::post_failover))
        .route(
            "/restart",
            post(restart::post_restart).delete(restart::delete_restart),
        )
        .route("/reload", post(reinit_reload::post_reload))
        .route("/reinitialize", post(reinit_reload::post_reinitialize))
        .route("/metrics", get(metrics::get_metrics))
        // applies to the routes above, so it must come after them
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::auth_layer,
        ))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The query string as Python's `parse_qs` sees it for Patroni: pairs with an
/// empty value are dropped, and the first value of a repeated key wins.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `(key, value)` of every parameter, each key once.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| !self.0[..*i].iter().any(|(k2, _)| k2 == k))
            .map(|(_, (k, v))| (k.as_str(), v.as_str()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok(Params(
            pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        ))
    }
}
