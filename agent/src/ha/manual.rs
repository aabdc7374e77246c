//! Operator-requested changes: switchover and failover (the `failover` key), and
//! requests sent to this node's REST API (restart, reinitialize, reload).
//!
//! Rule: pure, like the rest of `ha`. Requests are only acted on from a steady
//! state (leading with the lock, or following a leader); anywhere else they are
//! answered with 503 and the reason the node is busy, so a request can never
//! bypass fencing or the leader race.

use chrono::DateTime;

use super::{Action, Decision, Observation, PeerStatus, Reason, Settings, Source};
use crate::dcs::model::{Cluster, Failover};

/// A request from the REST API, answered through [`Action::Answer`].
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `POST /restart` (immediate, or a scheduled one that is due).
    Restart {
        /// Only restart when this node has this role (`primary`, `replica`).
        role: Option<String>,
        /// Only restart when postgres reports a pending restart.
        pending_only: bool,
        /// Only restart when the running server version is lower (server_version_num form).
        below_version: Option<u32>,
    },
    /// `POST /reinitialize`: wipe the data directory and clone again.
    Reinitialize { force: bool },
    /// `POST /reload`: re-render the configuration files and signal postgres.
    Reload,
}

impl Request {
    pub fn describe(&self) -> &'static str {
        match self {
            Request::Restart { .. } => "restart",
            Request::Reinitialize { .. } => "reinitialize",
            Request::Reload => "reload",
        }
    }
}

/// Seconds since the epoch of an ISO 8601 timestamp.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let t = DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .or_else(|| DateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f%z").ok())?;
    Some(t.timestamp_millis() as f64 / 1000.0)
}

/// Can `p` take over? Reachable, allowed, and (with `min_lsn`) caught up.
fn eligible(p: &PeerStatus, min_lsn: Option<u64>) -> bool {
    p.reachable && p.in_recovery && !p.nofailover && min_lsn.is_none_or(|m| p.wal_position >= m)
}

/// The leader sees a `failover` key: demote gracefully for the candidate, wait
/// for a scheduled time, or clean up a request that cannot be honoured.
pub(super) fn failover_from_leader(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    f: &Failover,
    paused: bool,
) -> Option<Decision> {
    let clear = |why: String| {
        Some(Decision::with(
            Reason::FailoverRefused(why),
            vec![Action::ClearFailover {
                mod_revision: f.mod_revision,
            }],
        ))
    };
    let action = if f.leader.is_some() {
        "switchover"
    } else {
        "failover"
    };
    if let Some(at) = &f.scheduled_at {
        let Some(when) = parse_timestamp(at) else {
            return clear(format!("incorrect value of scheduled_at: {at}"));
        };
        let delta = when - obs.unix_now;
        let loop_wait = cluster.dynamic().loop_wait;
        if delta > 0.0 {
            let mut d = Decision::new(Reason::AwaitingScheduled {
                action: action.to_string(),
                at: at.clone(),
                me: s.name.clone(),
            });
            d.wakeup_in = Some(delta.min(loop_wait));
            return Some(d);
        }
        if delta < -(loop_wait * 1.5).max(5.0) {
            return clear(format!("found a stale {action} scheduled at {at}"));
        }
    }
    if let Some(l) = &f.leader {
        if l != &s.name {
            return clear(format!("leader name does not match: {l} != {}", s.name));
        }
    }
    if f.candidate.as_deref() == Some(s.name.as_str()) {
        return clear(format!("I am already the leader, no need to {action}"));
    }
    if paused && f.candidate.is_none() {
        return clear(format!(
            "{action} is possible only to a specific candidate in a paused state"
        ));
    }
    let peers = obs.peers.as_deref().unwrap_or(&[]);
    // The candidate must be reachable, allowed to promote, and not further behind
    // than maximum_lag_on_failover (the leader knows its own position exactly).
    let max_lag = cluster.dynamic().maximum_lag_on_failover;
    let min_lsn = obs.pg.wal_lsn.map(|l| l.saturating_sub(max_lag));
    // In synchronous mode only a listed synchronous standby can take over.
    let sync_ok = |name: &str| {
        !super::sync::active(cluster, &cluster.dynamic())
            || cluster
                .sync
                .as_ref()
                .is_some_and(|k| k.matches(name, false))
    };
    let candidate = match &f.candidate {
        Some(c) => peers
            .iter()
            .find(|p| &p.name == c && eligible(p, min_lsn) && sync_ok(&p.name))
            .map(|p| p.name.clone()),
        None => peers
            .iter()
            .filter(|p| eligible(p, min_lsn) && sync_ok(&p.name))
            .max_by_key(|p| (p.wal_position, p.failover_priority))
            .map(|p| p.name.clone()),
    };
    let Some(candidate) = candidate else {
        return clear(format!(
            "no healthy candidate found, {action} is not possible"
        ));
    };
    let source = cluster.member(&candidate).and_then(|m| {
        let (host, port) = m.data.conn_host_port()?;
        Some(Source {
            name: m.name.clone(),
            host,
            port,
        })
    });
    Some(Decision::with(
        Reason::DemotingForSwitchover {
            action: action.to_string(),
            candidate: candidate.clone(),
        },
        vec![Action::DemoteGraceful { candidate: source }],
    ))
}

/// Does this node match the restart filters?
fn restart_matches(obs: &Observation, req: &Request) -> Result<(), String> {
    let Request::Restart {
        role,
        pending_only,
        below_version,
    } = req
    else {
        return Ok(());
    };
    let my_role = if obs.pg.is_primary() {
        "primary"
    } else {
        "replica"
    };
    if let Some(r) = role {
        let r = if r == "master" || r == "leader" {
            "primary"
        } else {
            r.as_str()
        };
        if r != my_role && r != "any" {
            return Err("host role mismatch".into());
        }
    }
    if let Some(v) = below_version {
        if obs.pg.server_version.is_some_and(|have| *v <= have) {
            return Err("postgres version mismatch".into());
        }
    }
    if *pending_only && !obs.pg.pending_restart {
        return Err("pending restart flag is not set".into());
    }
    Ok(())
}

/// Is `reason` a steady state in which requests may be carried out?
pub(super) fn steady(reason: &Reason) -> bool {
    matches!(
        reason,
        Reason::LeaderWithLock(_)
            | Reason::Following { .. }
            | Reason::PausedPrimaryWithoutLock
            | Reason::NotHealthiest(_)
            | Reason::AwaitingScheduled { .. }
    )
}

/// Fold a pending request into the cycle's decision.
pub(super) fn with_request(
    obs: &Observation,
    s: &Settings,
    cluster: Option<&Cluster>,
    mut d: Decision,
) -> Decision {
    let Some(req) = &obs.request else {
        return d;
    };
    let answer = |code: u16, text: String| Action::Answer { code, text };
    let Some(cluster) = cluster else {
        d.actions.push(answer(503, "DCS is not accessible".into()));
        return d;
    };
    let i_lead = cluster.leader_name() == Some(s.name.as_str());
    // Reinitialize is also the way out of broken states, so it is allowed outside
    // the steady ones, but never on the leader.
    if let Request::Reinitialize { force } = req {
        if i_lead {
            d.actions
                .push(answer(503, "I am the leader, can not reinitialize".into()));
            return d;
        }
        let Some(src) = cluster.leader_member().and_then(|m| {
            let (host, port) = m.data.conn_host_port()?;
            Some(Source {
                name: m.name.clone(),
                host,
                port,
            })
        }) else {
            d.actions.push(answer(
                503,
                "Cluster has no leader, can not reinitialize".into(),
            ));
            return d;
        };
        if let Some((kind, _)) = obs.memory.long_action {
            if !force {
                d.actions.push(answer(
                    503,
                    format!("{} already in progress", kind.describe()),
                ));
                return d;
            }
            return Decision::with(
                Reason::Reinitializing {
                    from: src.name.clone(),
                },
                vec![
                    Action::CancelLongAction,
                    answer(200, "reinitialize started".into()),
                    Action::Reinitialize(src),
                ],
            );
        }
        return Decision::with(
            Reason::Reinitializing {
                from: src.name.clone(),
            },
            vec![
                answer(200, "reinitialize started".into()),
                Action::Reinitialize(src),
            ],
        );
    }
    if let Some((kind, _)) = obs.memory.long_action {
        d.actions.push(answer(
            503,
            format!("{} already in progress", kind.describe()),
        ));
        return d;
    }
    if !steady(&d.reason) || !obs.pg.running {
        d.actions.push(answer(
            503,
            format!("cannot {} now: {}", req.describe(), d.reason),
        ));
        return d;
    }
    match req {
        Request::Reload => {
            d.actions.push(Action::Reload);
            d.actions.push(answer(202, "reload scheduled".into()));
            d
        }
        Request::Restart { .. } => {
            if let Err(why) = restart_matches(obs, req) {
                d.actions.push(answer(
                    503,
                    format!("restart conditions are not satisfied: {why}"),
                ));
                return d;
            }
            let primary = obs.pg.is_primary();
            let follow = if primary {
                None
            } else {
                super::follow_target(cluster, s)
            };
            // Whatever else the steady state wanted can wait for the next cycle.
            Decision::with(
                Reason::Restarting,
                vec![Action::Restart { primary, follow }],
            )
        }
        Request::Reinitialize { .. } => d,
    }
}
