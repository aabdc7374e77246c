//! The control routes: `PATCH|PUT /config`, `POST /switchover`, `POST /failover`,
//! `DELETE /switchover`, `POST|DELETE /restart`, `POST /reload`,
//! `POST /reinitialize`, with Patroni's semantics and messages.
//!
//! Unlike the health checks, these talk to etcd (with timeouts) and to the HA loop
//! (through a request channel); they never change postgres themselves. Bodies of
//! successful answers are Patroni's plain-text messages (patronictl prints them);
//! refusals carry the same messages as `{"error": "..."}`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use super::ApiState;
use crate::config::{BasicAuth, DynamicConfig};
use crate::dcs::etcd::Etcd;
use crate::dcs::model::{Cluster, Failover};
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
    pub auth: Option<BasicAuth>,
}

/// A plain-text answer, as Patroni writes them.
fn text(code: u16, body: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code.is_success() {
        (code, body.into()).into_response()
    } else {
        (code, Json(json!({"error": body.into()}))).into_response()
    }
}

/// A refusal: status code and Patroni's message (kept small for `Result`).
pub struct Refusal(u16, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn refuse(code: u16, msg: impl Into<String>) -> Refusal {
    Refusal(code, msg.into())
}

fn control(state: &ApiState) -> Result<&Arc<Control>, Refusal> {
    state
        .control
        .as_ref()
        .ok_or_else(|| refuse(503, "this node does not accept control requests"))
}

/// Parse a JSON object body; empty is allowed when `optional`.
fn body_object(body: &[u8], optional: bool) -> Result<Map<String, Value>, Refusal> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        if optional {
            return Ok(Map::new());
        }
        return Err(refuse(400, "a JSON object body is required"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(refuse(400, "the body must be a JSON object")),
        Err(e) => Err(refuse(400, format!("malformed JSON: {e}"))),
    }
}

async fn read_cluster(c: &Control) -> Result<Cluster, Refusal> {
    c.etcd
        .read_cluster()
        .await
        .map_err(|e| refuse(503, format!("cannot read the cluster from etcd: {e}")))
}

/// Basic auth on unsafe methods (POST, PUT, PATCH, DELETE) when
/// `restapi.authentication` is configured; read-only methods stay open.
pub async fn auth_layer(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let unsafe_method = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let auth = state.control.as_ref().and_then(|c| c.auth.as_ref());
    if let (true, Some(auth)) = (unsafe_method, auth) {
        if !authorized(req.headers(), auth) {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "authentication required"})),
            )
                .into_response();
            r.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Basic realm=\"agent\""),
            );
            return r;
        }
    }
    next.run(req).await
}

fn authorized(headers: &HeaderMap, auth: &BasicAuth) -> bool {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    let Some(decoded) = base64_decode(b64.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", auth.username, auth.password);
    constant_time_eq(&decoded, expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 (with or without padding).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Merge `patch` into `target` like Patroni's `patch_config`: objects merge
/// recursively, `null` deletes. Returns whether anything changed.
pub fn patch_config(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (k, v) in patch {
        match v {
            Value::Null => {
                if target.remove(k).is_some() {
                    changed = true;
                }
            }
            Value::Object(p) => {
                let entry = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                    changed = true;
                }
                if let Value::Object(t) = entry {
                    if patch_config(t, p) {
                        changed = true;
                    }
                }
            }
            other => {
                if target.get(k) != Some(other) {
                    target.insert(k.clone(), other.clone());
                    changed = true;
                }
            }
        }
    }
    changed
}

/// `PATCH /config`: merge into the dynamic configuration, compare-and-set.
pub async fn patch_config_route(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let patch = match body_object(&body, false) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let cluster = match read_cluster(c).await {
        Ok(cl) => cl,
        Err(r) => return r.into_response(),
    };
    let Some(cfg) = &cluster.config else {
        return text(503, "the cluster has no configuration in etcd");
    };
    let mut data = match &cfg.raw {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if patch_config(&mut data, &patch) {
        let value = Value::Object(data.clone());
        if let Err(e) = DynamicConfig::check_change(&cfg.raw, &value) {
            return text(400, format!("invalid configuration: {e}"));
        }
        match c.etcd.set_config(&value, Some(cfg.mod_revision)).await {
            Ok(true) => {}
            Ok(false) => return text(409, "the configuration was changed concurrently; retry"),
            Err(e) => return text(503, format!("cannot write the configuration: {e}")),
        }
    }
    c.wake.notify_one();
    (StatusCode::OK, Json(Value::Object(data))).into_response()
}

/// `PUT /config`: replace the dynamic configuration.
pub async fn put_config_route(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let new = match body_object(&body, false) {
        Ok(p) => Value::Object(p),
        Err(r) => return r.into_response(),
    };
    if let Err(e) = DynamicConfig::from_json(&new) {
        return text(400, format!("invalid configuration: {e}"));
    }
    let cluster = match read_cluster(c).await {
        Ok(cl) => cl,
        Err(r) => return r.into_response(),
    };
    let rev = cluster.config.as_ref().map(|c| c.mod_revision);
    if cluster.config.as_ref().map(|c| &c.raw) != Some(&new) {
        match c.etcd.set_config(&new, rev).await {
            Ok(true) => {}
            Ok(false) => return text(409, "the configuration was changed concurrently; retry"),
            Err(e) => return text(502, format!("cannot write the configuration: {e}")),
        }
    }
    c.wake.notify_one();
    (StatusCode::OK, Json(new)).into_response()
}

fn str_field(m: &Map<String, Value>, k: &str) -> Result<Option<String>, Refusal> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(refuse(400, format!("{k} must be a string"))),
    }
}

/// Parse `scheduled_at`/`schedule`: `Ok(None)` for "now".
fn parse_schedule(s: &str, action: &str, now: f64) -> Result<Option<f64>, Refusal> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let Some(t) = parse_timestamp(s) else {
        return Err(refuse(422, "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"));
    };
    if t < now {
        return Err(refuse(422, format!("Cannot schedule {action} in the past")));
    }
    Ok(Some(t))
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// Why no member can take over, or `None` when `candidate` (or someone) can.
async fn failover_impossible(
    c: &Control,
    cluster: &Cluster,
    leader: Option<&str>,
    candidate: Option<&str>,
    action: &str,
) -> Option<String> {
    if let Some(l) = leader {
        if cluster.leader_name() != Some(l) {
            return Some("leader name does not match".into());
        }
    }
    let cfg = cluster.dynamic();
    let sync_active = crate::ha::sync::active(cluster, &cfg);
    let is_sync = |name: &str| {
        cluster
            .sync
            .as_ref()
            .is_some_and(|k| k.matches(name, false))
    };
    let members: Vec<_> = match candidate {
        Some(cand) => {
            let Some(m) = cluster.member(cand) else {
                return Some("candidate does not exists".into());
            };
            if action == "switchover" && sync_active && !is_sync(cand) {
                return Some("candidate name does not match with sync_standby".into());
            }
            if cluster.leader_name() == Some(cand) {
                return Some(format!("candidate {cand} is already the leader"));
            }
            vec![m.clone()]
        }
        None if sync_active => {
            let m: Vec<_> = cluster
                .members
                .iter()
                .filter(|m| is_sync(&m.name))
                .cloned()
                .collect();
            if m.is_empty() {
                return Some(format!(
                    "{action} is not possible: can not find sync_standby"
                ));
            }
            m
        }
        None => cluster
            .members
            .iter()
            .filter(|m| Some(m.name.as_str()) != cluster.leader_name() && m.data.api_url.is_some())
            .cloned()
            .collect(),
    };
    if members.is_empty() {
        return Some(format!(
            "{action} is not possible: cluster does not have members except leader"
        ));
    }
    let statuses = crate::peers::fetch_all(&c.http, &members, "", Duration::from_secs(2)).await;
    let optime = cluster
        .leader_member()
        .and_then(|m| m.data.xlog_location)
        .or(cluster.status.optime);
    let mut last = None;
    for st in statuses {
        if !st.reachable {
            last = Some(format!("{} is not reachable or not running", st.name));
            continue;
        }
        if st.nofailover {
            last = Some(format!(
                "{} is not allowed to promote (nofailover)",
                st.name
            ));
            continue;
        }
        if !st.in_recovery {
            last = Some(format!("{} is running as a primary", st.name));
            continue;
        }
        if let Some(o) = optime {
            let lag = o.saturating_sub(st.wal_position);
            if lag > cfg.maximum_lag_on_failover {
                last = Some(format!(
                    "{} is lagging: {lag} bytes behind the leader (maximum_lag_on_failover {})",
                    st.name, cfg.maximum_lag_on_failover
                ));
                continue;
            }
        }
        return None;
    }
    Some(match (candidate, last) {
        (Some(_), Some(why)) => format!("{action} is not possible: {why}"),
        _ => format!("{action} is not possible: no good candidates have been found"),
    })
}

/// `POST /switchover` and `POST /failover`.
pub async fn failover_route(state: ApiState, mut action: &'static str, body: &[u8]) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let req = match body_object(body, false) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (leader, candidate, scheduled_at) = match (
        str_field(&req, "leader"),
        str_field(&req, "candidate").and_then(|c| match c {
            Some(c) => Ok(Some(c)),
            None => str_field(&req, "member"),
        }),
        str_field(&req, "scheduled_at"),
    ) {
        (Ok(l), Ok(c), Ok(s)) => (l, c, s),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r.into_response(),
    };
    let cluster = match read_cluster(c).await {
        Ok(cl) => cl,
        Err(r) => return r.into_response(),
    };
    let paused = cluster.dynamic().pause;
    if action == "failover" && candidate.is_none() {
        return text(
            400,
            "Failover could be performed only to a specific candidate",
        );
    }
    if action == "switchover" && leader.is_none() {
        return text(
            400,
            "Switchover could be performed only from a specific leader",
        );
    }
    let mut when = None;
    if let Some(s) = &scheduled_at {
        if action == "failover" {
            return text(400, "Failover can't be scheduled");
        }
        if paused {
            return text(400, "Can't schedule switchover in the paused state");
        }
        when = match parse_schedule(s, action, unix_now()) {
            Ok(w) => w,
            Err(r) => return r.into_response(),
        };
    }
    if paused && candidate.is_none() {
        return text(
            400,
            "Switchover is possible only to a specific candidate in a paused state",
        );
    }
    if action == "failover" && leader.is_some() {
        action = "switchover";
    }
    if leader.is_some() && leader == candidate {
        return text(400, "Switchover target and source are the same");
    }
    if when.is_none() {
        if let Some(why) =
            failover_impossible(c, &cluster, leader.as_deref(), candidate.as_deref(), action).await
        {
            return text(412, why);
        }
    }
    let f = Failover {
        leader: leader.clone(),
        candidate: candidate.clone(),
        scheduled_at: when.and(scheduled_at.clone()),
        mod_revision: 0,
    };
    if let Err(e) = c.etcd.write_failover(f.to_json_string()).await {
        return text(503, format!("failed to write failover key into DCS: {e}"));
    }
    c.wake.notify_one();
    if when.is_some() {
        let title = if action == "switchover" {
            "Switchover"
        } else {
            "Failover"
        };
        return text(202, format!("{title} scheduled"));
    }
    poll_result(
        c,
        cluster.leader_name().map(str::to_string),
        candidate,
        action,
        cluster.dynamic().loop_wait,
    )
    .await
}

/// Wait until the leader changed (200) or the request was dropped (503).
async fn poll_result(
    c: &Control,
    old_leader: Option<String>,
    candidate: Option<String>,
    action: &str,
    loop_wait: f64,
) -> Response {
    let (verb, verb_title, title) = if action == "switchover" {
        ("switched", "Switched", "Switchover")
    } else {
        ("failed", "Failed", "Failover")
    };
    let timeout = crate::config::duration(loop_wait.max(10.0) * 2.0);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(cluster) = c.etcd.read_cluster().await else {
            continue;
        };
        if let Some(l) = cluster.leader_name() {
            if Some(l) != old_leader.as_deref() {
                return match &candidate {
                    Some(cand) if cand != l => text(
                        200,
                        format!("{verb_title} over to \"{l}\" instead of \"{cand}\""),
                    ),
                    _ => text(200, format!("Successfully {verb} over to \"{l}\"")),
                };
            }
        }
        if cluster.failover.is_none() {
            return text(503, format!("{title} failed"));
        }
    }
    text(
        503,
        format!(
            "{title} status unknown after {} seconds; operation may still be in progress",
            timeout.as_secs()
        ),
    )
}

pub async fn post_switchover(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    failover_route(state, "switchover", &body).await
}

pub async fn post_failover(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    failover_route(state, "failover", &body).await
}

/// `DELETE /switchover`: cancel a scheduled switchover.
pub async fn delete_switchover(State(state): State<ApiState>) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let cluster = match read_cluster(c).await {
        Ok(cl) => cl,
        Err(r) => return r.into_response(),
    };
    match &cluster.failover {
        Some(f) if f.scheduled_at.is_some() => match c.etcd.clear_failover(f.mod_revision).await {
            Ok(true) => {
                c.wake.notify_one();
                text(200, "scheduled switchover deleted")
            }
            Ok(false) => text(409, "the failover key was changed concurrently"),
            Err(e) => text(503, format!("cannot update the failover key: {e}")),
        },
        _ => text(404, "no switchover is scheduled"),
    }
}

/// `18.1` or `9.6.24` -> server_version_num (180001, 90624).
pub fn postgres_version_to_int(v: &str) -> Option<u32> {
    let parts: Vec<u32> = v
        .trim()
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [major, minor] if *major >= 10 => Some(major * 10000 + minor),
        [major] if *major >= 10 => Some(major * 10000),
        [a, b, c] if *a < 10 => Some(a * 10000 + b * 100 + c),
        [a, b] if *a < 10 => Some(a * 10000 + b * 100),
        _ => None,
    }
}

/// Send a request to the HA loop and wait for its answer.
async fn ask_loop(c: &Control, req: Request, timeout: Duration) -> Response {
    let (tx, rx) = oneshot::channel();
    if c.requests.try_send((req, tx)).is_err() {
        return text(503, "another request is being processed; retry");
    }
    c.wake.notify_one();
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok((code, body))) => text(code, body),
        Ok(Err(_)) => text(503, "the request was dropped"),
        Err(_) => text(
            503,
            "no answer in time; the operation may still be in progress",
        ),
    }
}

/// `POST /restart`.
pub async fn post_restart(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let req = match body_object(&body, true) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let mut role = None;
    let mut below_version = None;
    let mut timeout = None;
    let mut schedule = None;
    for (k, v) in &req {
        match k.as_str() {
            "schedule" => match v.as_str() {
                Some(s) => schedule = Some(s.to_string()),
                None if v.is_null() => {}
                None => return text(400, "schedule must be a string"),
            },
            "role" => match v.as_str() {
                Some(r @ ("primary" | "master" | "replica" | "standby_leader")) => {
                    role = Some(r.to_string())
                }
                None if v.is_null() => {}
                _ => {
                    return text(
                        400,
                        "PostgreSQL role should be either primary, standby_leader, or replica",
                    )
                }
            },
            "postgres_version" => match v.as_str().and_then(postgres_version_to_int) {
                Some(n) => below_version = Some(n),
                None => return text(400, format!("{v} is not a valid PostgreSQL version")),
            },
            "timeout" => {
                // Patroni's forms (`30`, `"30"`, `"30s"`, `"5min"`), bounded to a day.
                let bounded =
                    crate::config::dynamic::secs(v, 0.0, crate::config::dynamic::MAX_TIMEOUT_SECS);
                match bounded {
                    Ok(s) if s > 0.0 => timeout = Some(s),
                    _ => {
                        return text(
                            400,
                            "Timeout should be a positive number of seconds, at most 86400",
                        )
                    }
                }
            }
            "restart_pending" => {}
            other => {
                return text(
                    400,
                    format!("Unknown filter for the scheduled restart: {other}"),
                )
            }
        }
    }
    let pending_only = req
        .get("restart_pending")
        .is_some_and(|v| v.as_bool().unwrap_or(!v.is_null()));
    let request = Request::Restart {
        role,
        pending_only,
        below_version,
    };
    let paused = state.snapshot().paused;
    if let Some(s) = schedule {
        if paused {
            return text(500, "Can't schedule restart in the paused state");
        }
        let at = match parse_schedule(&s, "restart", unix_now()) {
            Ok(Some(t)) => t,
            Ok(None) => unix_now(),
            Err(r) => return r.into_response(),
        };
        let mut slot = c
            .scheduled_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return text(409, "Another restart is already scheduled");
        }
        let mut raw = req.clone();
        raw.insert("schedule".into(), json!(s));
        *slot = Some(ScheduledRestart {
            at,
            schedule: s,
            request,
            raw: Value::Object(raw),
        });
        drop(slot);
        c.wake.notify_one();
        return text(202, "Restart scheduled");
    }
    let t = crate::config::duration(timeout.unwrap_or(300.0) + 30.0);
    ask_loop(c, request, t).await
}

/// `DELETE /restart`: cancel a scheduled restart.
pub async fn delete_restart(State(state): State<ApiState>) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let had = c
        .scheduled_restart
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .is_some();
    c.wake.notify_one();
    if had {
        text(200, "scheduled restart deleted")
    } else {
        text(404, "no restarts are scheduled")
    }
}

/// `POST /reload`.
pub async fn post_reload(State(state): State<ApiState>) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    ask_loop(c, Request::Reload, Duration::from_secs(30)).await
}

/// `POST /reinitialize` `{force?}`.
pub async fn post_reinitialize(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let c = match control(&state) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let req = match body_object(&body, true) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let force = match req.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1")
        }
        Some(_) => return text(400, "force must be a boolean"),
    };
    ask_loop(c, Request::Reinitialize { force }, Duration::from_secs(30)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_merges_and_deletes() {
        let mut t: Map<String, Value> = serde_json::from_value(json!({
            "ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}}, "pause": true
        }))
        .unwrap();
        let p: Map<String, Value> = serde_json::from_value(json!({
            "ttl": 20, "pause": null, "postgresql": {"parameters": {"b": null, "c": "x"}}
        }))
        .unwrap();
        assert!(patch_config(&mut t, &p));
        assert_eq!(
            Value::Object(t.clone()),
            json!({"ttl": 20, "postgresql": {"parameters": {"a": 1, "c": "x"}}})
        );
        assert!(!patch_config(&mut t, &p));
    }

    #[test]
    fn base64_and_versions() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
        assert_eq!(postgres_version_to_int("15.2"), Some(150002));
        assert_eq!(postgres_version_to_int("9.6.24"), Some(90624));
        assert_eq!(postgres_version_to_int("x"), None);
    }

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
