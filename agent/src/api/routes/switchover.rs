//! `POST /switchover`, `POST /failover` and `DELETE /switchover`: write (or
//! delete) the `failover` key for the leader to act on, with Patroni's checks
//! and messages, then wait for the leader to change.
//!
//! Whether a member may take over is [`candidate_eligibility`], the same rule
//! the leader applies when it hands over.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;

use crate::api::control::{
    body_object, control, parse_schedule, read_cluster, str_field, unix_now, Control,
};
use crate::api::error::{refuse, text, Answer, ApiError};
use crate::api::ApiState;
use crate::dcs::model::{Cluster, Failover};
use crate::ha::{candidate_eligibility, Operation, TakeoverBar};

pub(in crate::api) async fn post_switchover(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Answer {
    failover_route(state, Operation::Switchover, &body).await
}

pub(in crate::api) async fn post_failover(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Answer {
    failover_route(state, Operation::Failover, &body).await
}

/// `DELETE /switchover`: cancel a scheduled switchover.
pub(in crate::api) async fn delete_switchover(State(state): State<ApiState>) -> Answer {
    let c = control(&state)?;
    let cluster = read_cluster(c).await?;
    match &cluster.failover {
        Some(f) if f.scheduled_at.is_some() => match c.etcd.clear_failover(f.mod_revision).await {
            Ok(true) => {
                c.wake.notify_one();
                text(StatusCode::OK, "scheduled switchover deleted")
            }
            Ok(false) => Err(refuse(
                StatusCode::CONFLICT,
                "the failover key was changed concurrently",
            )),
            Err(e) => Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot update the failover key: {e}"),
            )),
        },
        _ => Err(refuse(StatusCode::NOT_FOUND, "no switchover is scheduled")),
    }
}

/// `POST /switchover` and `POST /failover`.
async fn failover_route(state: ApiState, mut op: Operation, body: &[u8]) -> Answer {
    let bad = |msg: &str| Err(refuse(StatusCode::BAD_REQUEST, msg));
    let c = control(&state)?;
    let req = body_object(body, false)?;
    let leader = str_field(&req, "leader")?;
    let candidate = match str_field(&req, "candidate")? {
        Some(c) => Some(c),
        None => str_field(&req, "member")?,
    };
    let scheduled_at = str_field(&req, "scheduled_at")?;
    let cluster = read_cluster(c).await?;
    let paused = cluster.dynamic().pause;
    if op == Operation::Failover && candidate.is_none() {
        return bad("Failover could be performed only to a specific candidate");
    }
    if op == Operation::Switchover && leader.is_none() {
        return bad("Switchover could be performed only from a specific leader");
    }
    let mut when = None;
    if let Some(s) = &scheduled_at {
        if op == Operation::Failover {
            return bad("Failover can't be scheduled");
        }
        if paused {
            return bad("Can't schedule switchover in the paused state");
        }
        when = parse_schedule(s, op.name(), unix_now())?;
    }
    if paused && candidate.is_none() {
        return bad("Switchover is possible only to a specific candidate in a paused state");
    }
    // A failover that names the leader is a switchover (as the key will say).
    if leader.is_some() {
        op = Operation::Switchover;
    }
    if leader.is_some() && leader == candidate {
        return bad("Switchover target and source are the same");
    }
    if when.is_none() {
        failover_possible(c, &cluster, leader.as_deref(), candidate.as_deref(), op)
            .await
            .map_err(|why| refuse(StatusCode::PRECONDITION_FAILED, why))?;
    }
    let f = Failover {
        leader: leader.clone(),
        candidate: candidate.clone(),
        scheduled_at: when.and(scheduled_at.clone()),
        mod_revision: 0,
    };
    c.etcd
        .write_failover(f.to_json_string())
        .await
        .map_err(|e| {
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("failed to write failover key into DCS: {e}"),
            )
        })?;
    c.wake.notify_one();
    if when.is_some() {
        return text(StatusCode::ACCEPTED, format!("{} scheduled", op.title()));
    }
    poll_result(
        c,
        cluster.leader_name().map(str::to_string),
        candidate,
        op,
        cluster.dynamic().loop_wait,
    )
    .await
}

/// `Ok` when `candidate` (or, unnamed, some member) can take over; otherwise
/// why not, in Patroni's words.
async fn failover_possible(
    c: &Control,
    cluster: &Cluster,
    leader: Option<&str>,
    candidate: Option<&str>,
    op: Operation,
) -> Result<(), String> {
    if let Some(l) = leader {
        if cluster.leader_name() != Some(l) {
            return Err("leader name does not match".into());
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
                return Err("candidate does not exists".into());
            };
            if op == Operation::Switchover && sync_active && !is_sync(cand) {
                return Err("candidate name does not match with sync_standby".into());
            }
            if cluster.leader_name() == Some(cand) {
                return Err(format!("candidate {cand} is already the leader"));
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
                return Err(format!("{op} is not possible: can not find sync_standby"));
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
        return Err(format!(
            "{op} is not possible: cluster does not have members except leader"
        ));
    }
    let statuses = crate::peers::fetch_all(&c.http, &members, "", Duration::from_secs(2)).await;
    // Patroni: a failover may go to any named member; a switchover in
    // synchronous mode only to a listed synchronous standby.
    let bar = TakeoverBar {
        leader_lsn: cluster
            .leader_member()
            .and_then(|m| m.data.xlog_location)
            .or(cluster.status.optime),
        max_lag: cfg.maximum_lag_on_failover,
        sync: cluster
            .sync
            .as_ref()
            .filter(|_| sync_active && op == Operation::Switchover),
    };
    let mut last = None;
    for st in &statuses {
        match candidate_eligibility(st, &bar) {
            Ok(()) => return Ok(()),
            Err(why) => last = Some(why),
        }
    }
    Err(match (candidate, last) {
        (Some(_), Some(why)) => format!("{op} is not possible: {why}"),
        _ => format!("{op} is not possible: no good candidates have been found"),
    })
}

/// Wait until the leader changed (200) or the request was dropped (503).
async fn poll_result(
    c: &Control,
    old_leader: Option<String>,
    candidate: Option<String>,
    op: Operation,
    loop_wait: f64,
) -> Answer {
    let (verb, verb_title) = match op {
        Operation::Switchover => ("switched", "Switched"),
        Operation::Failover => ("failed", "Failed"),
    };
    let title = op.title();
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
                        StatusCode::OK,
                        format!("{verb_title} over to \"{l}\" instead of \"{cand}\""),
                    ),
                    _ => text(
                        StatusCode::OK,
                        format!("Successfully {verb} over to \"{l}\""),
                    ),
                };
            }
        }
        if cluster.failover.is_none() {
            return Err(unavailable(format!("{title} failed")));
        }
    }
    Err(unavailable(format!(
        "{title} status unknown after {} seconds; operation may still be in progress",
        timeout.as_secs()
    )))
}

fn unavailable(msg: String) -> ApiError {
    refuse(StatusCode::SERVICE_UNAVAILABLE, msg)
}
