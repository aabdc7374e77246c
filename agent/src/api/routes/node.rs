//! `GET /patroni`: this node's status, the JSON other members read during a
//! leader race and `patronictl` shows.
//!
//! Unlike the health checks, the WAL position here is read live (one short query,
//! bounded by a timeout, falling back to the snapshot): peers compare positions to
//! pick the most advanced replica, and a snapshot up to `loop_wait` old could make
//! a replica that is behind look ahead.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::api::ApiState;

/// How long `/patroni` may spend on the live query.
const LIVE_TIMEOUT: Duration = Duration::from_millis(700);

const LIVE_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
       ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint END,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), '0/0')::bigint,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '0/0')::bigint,
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END";

pub(in crate::api) async fn get_patroni(State(api): State<ApiState>) -> Json<Value> {
    let st = api.snapshot();
    let mut body = st.patroni_json();
    if st.is_running() {
        if let Some(conn) = st.local_conn.clone() {
            match tokio::time::timeout(LIVE_TIMEOUT, live_wal(conn)).await {
                Ok(Some(live)) => merge_live(&mut body, live),
                // Postgres does not answer now: do not vouch for an old position.
                _ => {
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

/// (in_recovery, flush, receive, replay, paused)
type Live = (bool, Option<i64>, Option<i64>, Option<i64>, bool);

async fn live_wal(conn: tokio_postgres::Config) -> Option<Live> {
    let (client, connection) = conn.connect(tokio_postgres::NoTls).await.ok()?;
    let h = tokio::spawn(connection);
    let row = client.query_one(LIVE_SQL, &[]).await.ok();
    drop(client);
    h.abort();
    let row = row?;
    Some((row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
}

fn merge_live(body: &mut Value, (in_recovery, flush, receive, replay, paused): Live) {
    let pos = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
    if in_recovery {
        let replayed = pos(replay);
        let mut xlog = body.get("xlog").cloned().unwrap_or_else(|| json!({}));
        xlog["received_location"] = json!(pos(receive).max(replayed));
        xlog["replayed_location"] = json!(replayed);
        xlog["paused"] = json!(paused);
        if xlog.get("replayed_timestamp").is_none() {
            xlog["replayed_timestamp"] = Value::Null;
        }
        if let Some(o) = xlog.as_object_mut() {
            o.remove("location");
        }
        body["xlog"] = xlog;
        body["role"] = json!("replica");
    } else {
        body["xlog"] = json!({"location": pos(flush)});
        body["role"] = json!("primary");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_positions_replace_the_snapshot() {
        let mut b = json!({"role": "replica", "xlog": {"received_location": 1, "replayed_location": 1, "replayed_timestamp": "t", "paused": false}});
        merge_live(&mut b, (true, None, Some(100), Some(90), true));
        assert_eq!(b["xlog"]["received_location"], 100);
        assert_eq!(b["xlog"]["replayed_location"], 90);
        assert_eq!(b["xlog"]["paused"], true);
        assert_eq!(b["xlog"]["replayed_timestamp"], "t");
        merge_live(&mut b, (false, Some(500), None, None, false));
        assert_eq!(b["xlog"], json!({"location": 500}));
        assert_eq!(b["role"], "primary");
    }
}
