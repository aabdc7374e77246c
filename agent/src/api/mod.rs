//! The REST API: Patroni's paths, status codes and JSON fields, answered from the
//! snapshot the HA loop publishes.
//!
//! Rule (safety rule 7): a handler reads `status.borrow().clone()` (an `Arc`, so
//! the borrow ends at once), computes its answer and writes it. No handler talks to
//! postgres or etcd, takes a lock across `.await`, or can panic on what a client
//! sends: HAProxy must keep getting an answer in milliseconds while postgres or
//! etcd hang.
//!
//! One file per route group:
//!
//! - `health.rs`: `/primary`, `/replica`, `/read-only`, ... (`GET`, `HEAD`, `OPTIONS`),
//!   `/liveness`, `/readiness`.
//! - `node.rs`: `/patroni`.
//! - `cluster.rs`: `/cluster`, `/history`, `/config`.
//! - `metrics.rs`: `/metrics` (Prometheus text).
//! - `control.rs`: the actions (`/switchover`, `/failover`, `/restart`, `/reload`,
//!   `/reinitialize`, `PATCH|PUT /config`) and Basic auth on unsafe methods. These
//!   are the exception to the rule above: they read and write etcd (with
//!   timeouts) and hand requests to the HA loop; they never touch postgres.

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use crate::status::NodeStatus;

mod cluster;
pub mod control;
mod health;
mod metrics;
mod node;
#[cfg(test)]
mod tests;

pub use cluster::cluster_as_json;
pub use control::{Control, RequestMsg, ScheduledRestart};
pub use health::parse_lag;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The snapshot the HA loop publishes after every cycle.
    pub status: watch::Receiver<Arc<NodeStatus>>,
    /// etcd and the HA loop, for the control routes (absent: they answer 503).
    pub control: Option<Arc<Control>>,
}

impl ApiState {
    pub fn new(status: watch::Receiver<Arc<NodeStatus>>) -> ApiState {
        ApiState {
            status,
            control: None,
        }
    }

    pub fn with_control(mut self, control: Arc<Control>) -> ApiState {
        self.control = Some(control);
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
        .route("/patroni", get(node::get_patroni))
        .route("/cluster", get(cluster::get_cluster))
        .route("/history", get(cluster::get_history))
        .route(
            "/config",
            get(cluster::get_config)
                .patch(control::patch_config_route)
                .put(control::put_config_route),
        )
        .route(
            "/switchover",
            post(control::post_switchover).delete(control::delete_switchover),
        )
        .route("/failover", post(control::post_failover))
        .route(
            "/restart",
            post(control::post_restart).delete(control::delete_restart),
        )
        .route("/reload", post(control::post_reload))
        .route("/reinitialize", post(control::post_reinitialize))
        .route("/metrics", get(metrics::get_metrics))
        // applies to the routes above, so it must come after them
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            control::auth_layer,
        ))
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` resolves, then finish the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every error the API answers with: a status code and `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The answer depends on state the agent does not have yet (etcd not read).
    #[error("{0}")]
    Unavailable(String),
    /// Like Patroni's `/config` when the cluster has no configuration key.
    #[error("{0}")]
    BadGateway(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({"error": self.to_string()}))).into_response()
    }
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
