//! `POST /reload` and `POST /reinitialize`: requests handed to the HA loop,
//! which answers them (or refuses outside a steady state).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use crate::api::control::{ask_loop, body_object, control};
use crate::api::error::{refuse, Answer};
use crate::api::ApiState;
use crate::ha::Request;

/// How long these requests wait for the loop's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /reload`.
pub(in crate::api) async fn post_reload(State(state): State<ApiState>) -> Answer {
    let c = control(&state)?;
    ask_loop(c, Request::Reload, ANSWER_TIMEOUT).await
}

/// `POST /reinitialize` `{force?}`.
pub(in crate::api) async fn post_reinitialize(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Answer {
    let c = control(&state)?;
    let req = body_object(&body, true)?;
    let force = match req.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1")
        }
        Some(_) => return Err(refuse(StatusCode::BAD_REQUEST, "force must be a boolean")),
    };
    ask_loop(c, Request::Reinitialize { force }, ANSWER_TIMEOUT).await
}
