//! `GET /metrics`: this node's status as Prometheus gauges and counters, with
//! Patroni's metric names and `scope`/`name` labels so existing dashboards and
//! alerts keep working.

use std::fmt::{Display, Write};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, FixedOffset};

use crate::api::ApiState;
use crate::dcs::model::MemberData;
use crate::status::{NodeStatus, Role, Xlog, VERSION};

pub(in crate::api) async fn get_metrics(State(api): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&api.snapshot()),
    )
}

/// The exposition text for `st`.
pub(crate) fn render(st: &NodeStatus) -> String {
    let labels = format!(
        "{{scope=\"{}\",name=\"{}\"}}",
        escape_label(&st.scope),
        escape_label(&st.name)
    );
    let mut out = String::new();
    let mut m = |name: &str, kind: &str, help: &str, value: &dyn Display| {
        // writing to a String cannot fail
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    let flag = |b: bool| u8::from(b);
    let (location, received, replayed, replayed_ts, paused) = match &st.xlog {
        Some(Xlog::Primary { location }) => (*location, 0, 0, None, false),
        Some(Xlog::Replica {
            received_location,
            replayed_location,
            replayed_timestamp,
            paused,
        }) => (
            0,
            *received_location,
            *replayed_location,
            replayed_timestamp.as_deref(),
            *paused,
        ),
        None => (0, 0, 0, None, false),
    };
    let running = st.is_running();

    m(
        "patroni_version",
        "gauge",
        "Agent version as zero-padded digits (0.1.0 is 000100).",
        &padded_version(VERSION),
    );
    m(
        "patroni_postgres_running",
        "gauge",
        "1 if postgres is running, else 0.",
        &flag(running),
    );
    m(
        "patroni_postmaster_start_time",
        "gauge",
        "Unix time postgres started, 0 if unknown.",
        &st.postmaster_start_time
            .as_deref()
            .and_then(epoch_seconds)
            .unwrap_or(0.0),
    );
    m(
        "patroni_primary",
        "gauge",
        "1 if this node is the primary, else 0.",
        &flag(st.role == Role::Primary),
    );
    m(
        "patroni_xlog_location",
        "counter",
        "WAL position of the primary in bytes, 0 on other nodes.",
        &location,
    );
    m(
        "patroni_standby_leader",
        "gauge",
        "1 if this node leads a standby cluster, else 0.",
        &0,
    );
    m(
        "patroni_replica",
        "gauge",
        "1 if this node is a replica, else 0.",
        &flag(st.role == Role::Replica),
    );
    m(
        "patroni_sync_standby",
        "gauge",
        "1 if this node is a synchronous standby, else 0.",
        &flag(st.sync_standby),
    );
    m(
        "patroni_xlog_received_location",
        "counter",
        "WAL received by this replica in bytes, 0 on other nodes.",
        &received,
    );
    m(
        "patroni_xlog_replayed_location",
        "counter",
        "WAL replayed by this replica in bytes, 0 on other nodes.",
        &replayed,
    );
    m(
        "patroni_xlog_replayed_timestamp",
        "gauge",
        "Unix time of the last replayed transaction, 0 if unknown.",
        &replayed_ts.and_then(epoch_seconds).unwrap_or(0.0),
    );
    m(
        "patroni_xlog_paused",
        "gauge",
        "1 if WAL replay is paused, else 0.",
        &flag(paused),
    );
    if st.server_version.unwrap_or(0) >= 90600 {
        let rs = st.replication_state.as_deref();
        m(
            "patroni_postgres_streaming",
            "gauge",
            "1 if postgres streams from another node, else 0.",
            &flag(rs == Some("streaming")),
        );
        m(
            "patroni_postgres_in_archive_recovery",
            "gauge",
            "1 if postgres replays WAL from the archive, else 0.",
            &flag(rs == Some("in archive recovery")),
        );
    }
    m(
        "patroni_postgres_server_version",
        "gauge",
        "Postgres version number (150002 is 15.2), 0 if unknown.",
        &st.server_version.unwrap_or(0),
    );
    m(
        "patroni_cluster_unlocked",
        "gauge",
        "1 if no member holds the leader key, else 0.",
        &flag(st.cluster_unlocked),
    );
    m(
        "patroni_postgres_timeline",
        "gauge",
        "Postgres timeline, 0 if unknown.",
        &st.timeline.unwrap_or(0),
    );
    m(
        "patroni_dcs_last_seen",
        "gauge",
        "Unix time of the last successful etcd read.",
        &st.dcs_last_seen,
    );
    m(
        "patroni_pending_restart",
        "gauge",
        "1 if postgres needs a restart to apply settings, else 0.",
        &flag(st.pending_restart),
    );
    m(
        "patroni_is_paused",
        "gauge",
        "1 if the cluster is in maintenance mode, else 0.",
        &flag(st.paused),
    );
    m(
        "agent_dynamic_config_warnings",
        "gauge",
        "Fields of the dynamic configuration that could not be used as written (each keeps its last valid value) or were adjusted.",
        &st.config_warnings.len(),
    );
    let priority = MemberData {
        tags: st.tags.clone(),
        ..Default::default()
    }
    .failover_priority();
    m(
        "patroni_failover_priority",
        "gauge",
        "Failover priority of this node, 0 if it never takes over.",
        &priority,
    );
    out
}

/// `0.1.0` -> `000100`, as Patroni pads its own version.
fn padded_version(v: &str) -> String {
    v.split(['.', '-', '+'])
        .take(3)
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            format!("{:0>2}", if digits.is_empty() { "0" } else { &digits })
        })
        .collect()
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Seconds since the epoch of a timestamp as postgres prints it
/// (`2024-05-01 12:34:56.789+00`) or as RFC 3339.
fn epoch_seconds(ts: &str) -> Option<f64> {
    let ts = ts.trim();
    let t: DateTime<FixedOffset> = DateTime::parse_from_rfc3339(ts)
        .or_else(|_| DateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .ok()?;
    Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pad_like_patroni() {
        assert_eq!(padded_version("0.1.0"), "000100");
        assert_eq!(padded_version("4.1.15"), "040115");
        assert_eq!(padded_version("1.2.3-dev"), "010203");
    }

    #[test]
    fn postgres_timestamps_parse() {
        assert_eq!(epoch_seconds("1970-01-01 00:00:10+00"), Some(10.0));
        assert_eq!(epoch_seconds("1970-01-01 02:00:10.5+02"), Some(10.5));
        assert_eq!(epoch_seconds("1970-01-01 05:30:01+05:30"), Some(1.0));
        assert_eq!(epoch_seconds("1970-01-01T00:00:10Z"), Some(10.0));
        assert_eq!(epoch_seconds("yesterday"), None);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
