//! What the control routes share: the [`Control`] handle (etcd, the HA loop's
//! request channel, the scheduled restart), and the parsing of their bodies.
//!
//! Unlike the read routes, the control routes talk to etcd (with timeouts) and
//! to the HA loop (through a request channel); they never change postgres
//! themselves. Bodies of successful answers are Patroni's plain-text messages
//! (patronictl prints them); refusals carry the same messages as
//! `{"error": "..."}` (see [`ApiError::Refused`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use super::error::{answer, refuse, Answer, ApiError};
use super::ApiState;
use crate::dcs::etcd::Etcd;
use crate::dcs::model::Cluster;
use crate::ha::{parse_timestamp, Request};

/// A request for the HA loop and where to send its answer.
pub type RequestMsg = (Request, oneshot::Sender<(u16, String)>);

/// A restart waiting for its time (`POST /restart` with `schedule`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledRestart {
    /// Unix seconds.
    pub at: f64,
    /// As given, for the member key and `/patroni`.
    pub schedule: String,
    pub request: Request,
    /// The filters as given (published in the member key).
    pub raw: Value,
}

/// What the control routes need besides the status snapshot.
pub struct Control {
    pub etcd: Etcd,
    pub requests: mpsc::Sender<RequestMsg>,
    pub scheduled_restart: Arc<Mutex<Option<ScheduledRestart>>>,
    pub wake: Arc<Notify>,
    pub http: reqwest::Client,
}

/// The control handle, or 503 on a node built without one.
pub(super) fn control(state: &ApiState) -> Result<&Arc<Control>, ApiError> {
    state.control.as_ref().ok_or_else(|| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node does not accept control requests",
        )
    })
}

/// Parse a JSON object body; empty is allowed when `optional`.
pub(super) fn body_object(body: &[u8], optional: bool) -> Result<Map<String, Value>, ApiError> {
    let bad = |msg: String| refuse(StatusCode::BAD_REQUEST, msg);
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        if optional {
            return Ok(Map::new());
        }
        return Err(bad("a JSON object body is required".into()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("the body must be a JSON object".into())),
        Err(e) => Err(bad(format!("malformed JSON: {e}"))),
    }
}

/// A string field of a request body, trimmed; `None` when absent or blank.
pub(super) fn str_field(m: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("{k} must be a string"),
        )),
    }
}

/// The cluster as etcd has it now (the control routes act on fresh state).
pub(super) async fn read_cluster(c: &Control) -> Result<Cluster, ApiError> {
    c.etcd.read_cluster().await.map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the cluster from etcd: {e}"),
        )
    })
}

/// Parse `scheduled_at`/`schedule`: `Ok(None)` for "now".
pub(super) fn parse_schedule(s: &str, action: &str, now: f64) -> Result<Option<f64>, ApiError> {
    let unprocessable = |msg: String| refuse(StatusCode::UNPROCESSABLE_ENTITY, msg);
    if s.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let Some(t) = parse_timestamp(s) else {
        return Err(unprocessable("Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601".into()));
    };
    if t < now {
        return Err(unprocessable(format!(
            "Cannot schedule {action} in the past"
        )));
    }
    Ok(Some(t))
}

pub(super) fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// Send a request to the HA loop and wait for its answer.
pub(super) async fn ask_loop(c: &Control, req: Request, timeout: Duration) -> Answer {
    let unavailable = |msg: &str| Err(refuse(StatusCode::SERVICE_UNAVAILABLE, msg));
    let (tx, rx) = oneshot::channel();
    if c.requests.try_send((req, tx)).is_err() {
        return unavailable("another request is being processed; retry");
    }
    c.wake.notify_one();
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok((code, body))) => answer(code, body),
        Ok(Err(_)) => unavailable("the request was dropped"),
        Err(_) => unavailable("no answer in time; the operation may still be in progress"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_parsing() {
        assert_eq!(parse_schedule("now", "restart", 0.0).ok(), Some(None));
        assert!(parse_schedule("2000-01-01T00:00:00+00:00", "restart", 2e9).is_err());
        assert_eq!(
            parse_schedule("2030-01-01T00:00:00+00:00", "restart", 0.0).ok(),
            Some(Some(1893456000.0))
        );
        assert!(parse_schedule("tomorrow", "restart", 0.0).is_err());
    }
}
