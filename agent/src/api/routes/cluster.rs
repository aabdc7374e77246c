//! `/cluster` and `/history`: the cluster as this node last read it from etcd,
//! in Patroni's formats.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::{ApiError, ApiState};
use crate::dcs::model::{format_lsn, Cluster};

/// `GET /cluster`: the topology, as `patronictl list` and dashboards read it.
pub(in crate::api) async fn get_cluster(
    State(api): State<ApiState>,
) -> Result<Json<Value>, ApiError> {
    let st = api.snapshot();
    let cluster = st.cluster.as_ref().ok_or_else(|| {
        ApiError::Unavailable("cluster state unknown: etcd has not been read yet".into())
    })?;
    let mut body = cluster_as_json(cluster);
    if let Value::Object(m) = &mut body {
        m.insert("scope".into(), json!(st.scope));
    }
    Ok(Json(body))
}

/// `GET /history`: `[[timeline, lsn, reason, timestamp, new_leader], ...]`.
pub(in crate::api) async fn get_history(State(api): State<ApiState>) -> Json<Value> {
    let st = api.snapshot();
    Json(
        st.cluster
            .as_ref()
            .map(|c| c.history.to_json())
            .unwrap_or_else(|| json!([])),
    )
}

/// The cluster in the shape of Patroni's `cluster_as_json`: members sorted by
/// name with role, state, addresses and lag behind the leader's last published
/// position; `pause` and `scheduled_switchover` when they apply.
pub fn cluster_as_json(cluster: &Cluster) -> Value {
    let leader = cluster.leader_name();
    let config = cluster.config.as_ref().and_then(|c| c.parsed.as_ref());
    let synchronous_mode = config.is_some_and(|c| c.synchronous_mode);
    let cluster_lsn = cluster.status.optime.unwrap_or(0);

    let mut members: Vec<Value> = cluster
        .members
        .iter()
        .map(|m| {
            let d = &m.data;
            let is_leader = Some(m.name.as_str()) == leader;
            let role = if is_leader {
                "leader"
            } else if synchronous_mode
                && cluster
                    .sync
                    .as_ref()
                    .is_some_and(|s| s.matches(&m.name, false))
            {
                "sync_standby"
            } else {
                "replica"
            };
            // a replica shows how it replicates (`streaming`), the leader its state
            let state = d
                .replication_state
                .as_deref()
                .filter(|s| !is_leader && !s.is_empty())
                .or(d.state.as_deref())
                .unwrap_or("");
            let mut o = Map::new();
            o.insert("name".into(), json!(m.name));
            o.insert("role".into(), json!(role));
            o.insert("state".into(), json!(state));
            o.insert("api_url".into(), json!(d.api_url));
            if let Some((host, port)) = d.conn_host_port() {
                o.insert("host".into(), json!(host));
                o.insert("port".into(), json!(port));
            }
            if let Some(t) = d.timeline {
                o.insert("timeline".into(), json!(t));
            }
            if d.pending_restart {
                o.insert("pending_restart".into(), json!(true));
            }
            if let Some(r) = &d.pending_restart_reason {
                o.insert("pending_restart_reason".into(), r.clone());
            }
            if let Some(r) = &d.scheduled_restart {
                o.insert("scheduled_restart".into(), r.clone());
            }
            if !d.tags.is_empty() {
                o.insert("tags".into(), Value::Object(d.tags.clone()));
            }
            if !is_leader {
                for (prefix, lsn) in [
                    ("receive_", d.receive_lsn),
                    ("replay_", d.replay_lsn),
                    ("", d.xlog_location),
                ] {
                    let (lsn_value, lag_value) = match lsn {
                        None | Some(0) => (json!("unknown"), json!("unknown")),
                        Some(lsn) => (
                            json!(format_lsn(lsn)),
                            json!(cluster_lsn.saturating_sub(lsn)),
                        ),
                    };
                    o.insert(format!("{prefix}lsn"), lsn_value);
                    o.insert(format!("{prefix}lag"), lag_value);
                }
            }
            Value::Object(o)
        })
        .collect();
    members.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));

    let mut out = Map::new();
    out.insert("members".into(), Value::Array(members));
    if config.is_some_and(|c| c.pause) {
        out.insert("pause".into(), json!(true));
    }
    if let Some(f) = &cluster.failover {
        if let Some(at) = &f.scheduled_at {
            let mut s = Map::new();
            s.insert("at".into(), json!(at));
            if let Some(l) = &f.leader {
                s.insert("from".into(), json!(l));
            }
            if let Some(c) = &f.candidate {
                s.insert("to".into(), json!(c));
            }
            out.insert("scheduled_switchover".into(), Value::Object(s));
        }
    }
    Value::Object(out)
}
