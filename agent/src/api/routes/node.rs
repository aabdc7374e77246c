//! `GET /patroni`: this node's status, the JSON other members read during a
//! leader race and `patronictl` shows.
//!
//! Unlike the health checks, the WAL position here is fresh: peers compare
//! positions to pick the most advanced replica, and the snapshot, up to
//! `loop_wait` old, could make a replica that is behind look ahead. The handler
//! asks the agent's WAL sampler ([`crate::postgres::WalSampler`]) for a sample at
//! most [`FRESH`] old; the sampler runs one query at a time on its own
//! connection and shares it between the requests in flight, so a flood of
//! requests costs postgres about ten queries a second. No sample within the
//! sampler's wait: the position is left out and the state is `unknown`.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::api::ApiState;
use crate::ha::received_position;
use crate::postgres::WalSample;

/// How old a WAL sample `/patroni` may report.
const FRESH: Duration = Duration::from_millis(100);

pub(in crate::api) async fn get_patroni(State(api): State<ApiState>) -> Json<Value> {
    let st = api.snapshot();
    let mut body = st.patroni_json();
    if st.is_running() {
        if let Some(wal) = &api.wal {
            match wal.fresh(FRESH).await {
                Some(live) => merge_live(&mut body, live),
                // Postgres does not answer now: do not vouch for an old position.
                None => {
                    if let Some(o) = body.as_object_mut() {
                        o.remove("xlog");
                        o.insert("state".into(), json!("unknown"));
                    }
                }
            }
        }
    }
    Json(body)
}

fn merge_live(body: &mut Value, live: WalSample) {
    if live.in_recovery {
        let replayed = live.replay.unwrap_or(0);
        let mut xlog = body.get("xlog").cloned().unwrap_or_else(|| json!({}));
        xlog["received_location"] = json!(received_position(live.receive, live.replay));
        xlog["replayed_location"] = json!(replayed);
        xlog["paused"] = json!(live.paused);
        if xlog.get("replayed_timestamp").is_none() {
            xlog["replayed_timestamp"] = Value::Null;
        }
        if let Some(o) = xlog.as_object_mut() {
            o.remove("location");
        }
        body["xlog"] = xlog;
        body["role"] = json!("replica");
    } else {
        body["xlog"] = json!({"location": live.flush.unwrap_or(0)});
        body["role"] = json!("primary");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(
        in_recovery: bool,
        flush: Option<u64>,
        receive: Option<u64>,
        replay: Option<u64>,
        paused: bool,
    ) -> WalSample {
        WalSample {
            in_recovery,
            flush,
            receive,
            replay,
            paused,
        }
    }

    #[test]
    fn live_positions_replace_the_snapshot() {
        let mut b = json!({"role": "replica", "xlog": {"received_location": 1, "replayed_location": 1, "replayed_timestamp": "t", "paused": false}});
        merge_live(&mut b, live(true, None, Some(100), Some(90), true));
        assert_eq!(b["xlog"]["received_location"], 100);
        assert_eq!(b["xlog"]["replayed_location"], 90);
        assert_eq!(b["xlog"]["paused"], true);
        assert_eq!(b["xlog"]["replayed_timestamp"], "t");
        // the receiver is down: received is at least what was replayed
        merge_live(&mut b, live(true, None, None, Some(95), false));
        assert_eq!(b["xlog"]["received_location"], 95);
        merge_live(&mut b, live(false, Some(500), None, None, false));
        assert_eq!(b["xlog"], json!({"location": 500}));
        assert_eq!(b["role"], "primary");
    }
}
