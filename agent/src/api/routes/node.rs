//! `GET /patroni`: this node's status, the JSON other members read during a
//! leader race and `patronictl` shows.
//!
//! Answered from the snapshot like every read route (safety rule 7): role and
//! WAL position are those of the loop's last cycle, at most one cycle old
//! (`loop_wait`, about a second while things change), and a postgres that stops
//! answering shows from the next cycle on (`starting`, no `xlog`).

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use crate::api::ApiState;

pub(in crate::api) async fn get_patroni(State(api): State<ApiState>) -> Json<Value> {
    Json(api.snapshot().patroni_json())
}
