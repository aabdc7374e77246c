//! `POST /restart` (now, through the HA loop, or at a scheduled time) and
//! `DELETE /restart` (cancel the scheduled one), with Patroni's filters.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::api::control::ScheduledRestart;
use crate::api::control::{ask_loop, body_object, control, parse_schedule, unix_now};
use crate::api::error::{refuse, text, Answer};
use crate::api::ApiState;
use crate::ha::Request;

/// `POST /restart`.
pub(in crate::api) async fn post_restart(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Answer {
    let bad = |msg: String| Err(refuse(StatusCode::BAD_REQUEST, msg));
    let c = control(&state)?;
    let req = body_object(&body, true)?;
    let mut role = None;
    let mut below_version = None;
    let mut timeout = None;
    let mut schedule = None;
    for (k, v) in &req {
        match k.as_str() {
            "schedule" => match v.as_str() {
                Some(s) => schedule = Some(s.to_string()),
                None if v.is_null() => {}
                None => return bad("schedule must be a string".into()),
            },
            "role" => match v.as_str() {
                Some(r @ ("primary" | "master" | "replica" | "standby_leader")) => {
                    role = Some(r.to_string())
                }
                None if v.is_null() => {}
                _ => {
                    return bad(
                        "PostgreSQL role should be either primary, standby_leader, or replica"
                            .into(),
                    )
                }
            },
            "postgres_version" => match v.as_str().and_then(crate::postgres::version_num) {
                Some(n) => below_version = Some(n),
                None => return bad(format!("{v} is not a valid PostgreSQL version")),
            },
            "timeout" => {
                // Patroni's forms (`30`, `"30"`, `"30s"`, `"5min"`), bounded to a day.
                let bounded =
                    crate::config::dynamic::secs(v, 0.0, crate::config::dynamic::MAX_TIMEOUT_SECS);
                match bounded {
                    Ok(s) if s > 0.0 => timeout = Some(s),
                    _ => {
                        return bad(
                            "Timeout should be a positive number of seconds, at most 86400".into(),
                        )
                    }
                }
            }
            "restart_pending" => {}
            other => return bad(format!("Unknown filter for the scheduled restart: {other}")),
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
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Can't schedule restart in the paused state",
            ));
        }
        let at = parse_schedule(&s, "restart", unix_now())?.unwrap_or_else(unix_now);
        let mut slot = c
            .scheduled_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(refuse(
                StatusCode::CONFLICT,
                "Another restart is already scheduled",
            ));
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
        return text(StatusCode::ACCEPTED, "Restart scheduled");
    }
    let t = crate::config::duration(timeout.unwrap_or(300.0) + 30.0);
    ask_loop(c, request, t).await
}

/// `DELETE /restart`: cancel a scheduled restart.
pub(in crate::api) async fn delete_restart(State(state): State<ApiState>) -> Answer {
    let c = control(&state)?;
    let had = c
        .scheduled_restart
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .is_some();
    c.wake.notify_one();
    if had {
        text(StatusCode::OK, "scheduled restart deleted")
    } else {
        Err(refuse(StatusCode::NOT_FOUND, "no restarts are scheduled"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        use crate::postgres::version_num;
        assert_eq!(version_num("15.2"), Some(150002));
        assert_eq!(version_num("9.6.24"), Some(90624));
        assert_eq!(version_num("x"), None);
        assert_eq!(version_num("9.6"), None, "X.Y only from 10 on, as Patroni");
        assert_eq!(version_num("4000000000.1"), None, "too big, no overflow");
        assert_eq!(version_num("1.1.4294967295"), None);
    }
}
