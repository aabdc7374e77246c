//! Asking the other members for their status (`GET /patroni`) during a leader race.
//!
//! Rule: all members in parallel, one short timeout; an unreachable member is
//! reported as such, never waited for.

use std::time::Duration;

use serde_json::Value;

use crate::dcs::model::Member;
use crate::ha::{received_position, PeerStatus};

/// Interpret a `/patroni` answer the way Patroni does: a member is a primary when
/// its WAL section has `location` or its role says so.
pub fn parse_peer(name: &str, v: &Value) -> Option<PeerStatus> {
    let wal = v.get("wal").or_else(|| v.get("xlog"))?;
    let role = v.get("role").and_then(|r| r.as_str()).unwrap_or("");
    let has_location = wal.get("location").and_then(|l| l.as_u64()).unwrap_or(0) > 0;
    let in_recovery = !(has_location || role == "primary" || role == "master");
    let num = |k: &str| wal.get(k).and_then(|x| x.as_u64());
    let wal_position = if in_recovery {
        received_position(num("received_location"), num("replayed_location"))
    } else {
        0
    };
    let tags = v.get("tags");
    let tag = |k: &str| tags.and_then(|t| t.get(k));
    let nofailover_tag = tag("nofailover").map(|x| match x {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1"),
        _ => false,
    });
    let priority = tag("failover_priority").and_then(|x| match x {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let nofailover = match (nofailover_tag, priority) {
        (Some(b), _) => b,
        (None, Some(p)) => p <= 0,
        _ => false,
    };
    Some(PeerStatus {
        name: name.to_string(),
        reachable: true,
        in_recovery,
        wal_position,
        timeline: v.get("timeline").and_then(|t| t.as_u64()).map(|t| t as u32),
        nofailover,
        failover_priority: if nofailover { 0 } else { priority.unwrap_or(1) },
    })
}

fn unreachable(name: &str) -> PeerStatus {
    PeerStatus {
        name: name.to_string(),
        reachable: false,
        in_recovery: true,
        wal_position: 0,
        timeline: None,
        nofailover: false,
        failover_priority: 0,
    }
}

/// `GET <api_url>` of every member but `me`, in parallel, each bounded by `timeout`.
pub async fn fetch_all(
    http: &reqwest::Client,
    members: &[Member],
    me: &str,
    timeout: Duration,
) -> Vec<PeerStatus> {
    let futs = members.iter().filter(|m| m.name != me).map(|m| {
        let name = m.name.clone();
        let url = m.data.api_url.clone();
        let http = http.clone();
        async move {
            let Some(url) = url else {
                return unreachable(&name);
            };
            let req = async {
                let resp = http.get(&url).timeout(timeout).send().await.ok()?;
                let v: Value = resp.json().await.ok()?;
                parse_peer(&name, &v)
            };
            match tokio::time::timeout(timeout, req).await {
                Ok(Some(p)) => p,
                _ => {
                    tracing::info!(member = %name, %url, "no usable answer from peer");
                    unreachable(&name)
                }
            }
        }
    });
    let mut out = Vec::new();
    // join_all without an extra crate: spawn locally and await in order
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        if let Ok(p) = h.await {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn primary_and_replica_answers() {
        let p = parse_peer(
            "a",
            &json!({"role": "primary", "xlog": {"location": 100}, "timeline": 2}),
        )
        .unwrap();
        assert!(!p.in_recovery);
        let r = parse_peer(
            "b",
            &json!({"role": "replica", "xlog": {"received_location": 90, "replayed_location": 80},
                    "tags": {"failover_priority": 3}}),
        )
        .unwrap();
        assert!(r.in_recovery);
        assert_eq!(r.wal_position, 90);
        assert_eq!(r.failover_priority, 3);
        let n = parse_peer(
            "c",
            &json!({"role": "replica", "xlog": {}, "tags": {"nofailover": true}}),
        )
        .unwrap();
        assert!(n.nofailover);
        assert!(parse_peer("d", &json!({"state": "stopped"})).is_none());
    }
}
