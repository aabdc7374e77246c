//! Operator-requested changes: switchover and failover (the `failover` key), and
//! requests sent to this node's REST API (restart, reinitialize, reload).
//!
//! Rule: pure, like the rest of `ha`. Requests are only acted on from a steady
//! state (leading with the lock, or following a leader); anywhere else they are
//! answered with 503 and the reason the node is busy, so a request can never
//! bypass fencing or the leader race.

use std::fmt;

use chrono::DateTime;

use super::{Action, Decision, Observation, PeerStatus, Reason, Settings, Source};
use crate::dcs::model::{Cluster, Failover, SyncState};

/// How an operator asks for a new leader: a switchover starts from a named
/// leader (and may be scheduled), a failover names only the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Switchover,
    Failover,
}

impl Operation {
    /// What a `failover` key asks for: a switchover when it names the leader.
    pub fn of(f: &Failover) -> Operation {
        if f.leader.is_some() {
            Operation::Switchover
        } else {
            Operation::Failover
        }
    }

    /// `switchover` or `failover`, as Patroni's messages say it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Switchover => "switchover",
            Operation::Failover => "failover",
        }
    }

    /// `Switchover` or `Failover`, at the start of a message.
    pub fn title(self) -> &'static str {
        match self {
            Operation::Switchover => "Switchover",
            Operation::Failover => "Failover",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a candidate is measured against when the leader hands over or an
/// operator asks for a new leader.
#[derive(Debug, Clone, Copy, Default)]
pub struct TakeoverBar<'a> {
    /// The leader's WAL position; `None` skips the lag check.
    pub leader_lsn: Option<u64>,
    /// `maximum_lag_on_failover`, in bytes.
    pub max_lag: u64,
    /// Synchronous mode: only the standbys listed in this `sync` key qualify.
    pub sync: Option<&'a SyncState>,
}

/// Why a member may not take over (Patroni's words, for the API's 412).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error("{0} is not reachable or not running")]
    Unreachable(String),
    #[error("{0} is not allowed to promote (nofailover)")]
    NoFailover(String),
    #[error("{0} is running as a primary")]
    Primary(String),
    #[error("{0} is not a synchronous standby")]
    NotSynchronous(String),
    #[error("{name} is lagging: {lag} bytes behind the leader (maximum_lag_on_failover {max})")]
    Lagging { name: String, lag: u64, max: u64 },
}

/// May `p` take over from the leader? Only when it answered, runs as a replica,
/// is not tagged `nofailover`, is listed in the `sync` key in synchronous mode,
/// and is within `maximum_lag_on_failover` of the leader's position.
///
/// The one rule for both places that pick a candidate: the leader handing over
/// for a `failover` key, and `POST /switchover|/failover` before it writes one.
pub fn candidate_eligibility(p: &PeerStatus, bar: &TakeoverBar) -> Result<(), Ineligible> {
    let name = || p.name.clone();
    if !p.reachable {
        return Err(Ineligible::Unreachable(name()));
    }
    if p.nofailover {
        return Err(Ineligible::NoFailover(name()));
    }
    if !p.in_recovery {
        return Err(Ineligible::Primary(name()));
    }
    if bar.sync.is_some_and(|k| !k.matches(&p.name, false)) {
        return Err(Ineligible::NotSynchronous(name()));
    }
    if let Some(leader) = bar.leader_lsn {
        let lag = leader.saturating_sub(p.wal_position);
        if lag > bar.max_lag {
            return Err(Ineligible::Lagging {
                name: name(),
                lag,
                max: bar.max_lag,
            });
        }
    }
    Ok(())
}

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
    let action = Operation::of(f);
    if let Some(at) = &f.scheduled_at {
        let Some(when) = parse_timestamp(at) else {
            return clear(format!("incorrect value of scheduled_at: {at}"));
        };
        let delta = when - obs.unix_now;
        let loop_wait = cluster.dynamic().loop_wait;
        if delta > 0.0 {
            let mut d = Decision::new(Reason::AwaitingScheduled {
                action,
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
    // The leader knows its own position exactly; in synchronous mode only a
    // listed synchronous standby can take over.
    let cfg = cluster.dynamic();
    let bar = TakeoverBar {
        leader_lsn: obs.pg.wal_lsn,
        max_lag: cfg.maximum_lag_on_failover,
        sync: cluster
            .sync
            .as_ref()
            .filter(|_| super::sync::active(cluster, &cfg)),
    };
    let mut eligible = obs
        .peers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter(|p| candidate_eligibility(p, &bar).is_ok());
    let candidate = match &f.candidate {
        Some(c) => eligible.find(|p| &p.name == c),
        None => eligible.max_by_key(|p| (p.wal_position, p.failover_priority)),
    }
    .map(|p| p.name.clone());
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
            action,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, wal_position: u64) -> PeerStatus {
        PeerStatus {
            name: name.into(),
            reachable: true,
            in_recovery: true,
            wal_position,
            timeline: Some(1),
            nofailover: false,
            failover_priority: 1,
        }
    }

    #[test]
    fn candidate_eligibility_table() {
        let sync = SyncState {
            leader: Some("n1".into()),
            sync_standby: Some("n2".into()),
            ..Default::default()
        };
        let lag_bar = TakeoverBar {
            leader_lsn: Some(1000),
            max_lag: 100,
            sync: None,
        };
        let sync_bar = TakeoverBar {
            sync: Some(&sync),
            ..TakeoverBar::default()
        };
        let no_bar = TakeoverBar::default();
        let lagging = |lag| Ineligible::Lagging {
            name: "n2".into(),
            lag,
            max: 100,
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, PeerStatus, &TakeoverBar, Result<(), Ineligible>)> = vec![
            ("a replica, no bar", peer("n2", 0), &no_bar, Ok(())),
            ("unreachable", PeerStatus { reachable: false, ..peer("n2", 1000) }, &no_bar, Err(Ineligible::Unreachable("n2".into()))),
            ("nofailover", PeerStatus { nofailover: true, ..peer("n2", 1000) }, &no_bar, Err(Ineligible::NoFailover("n2".into()))),
            ("a primary", PeerStatus { in_recovery: false, ..peer("n2", 1000) }, &no_bar, Err(Ineligible::Primary("n2".into()))),
            ("unreachable comes first", PeerStatus { reachable: false, nofailover: true, in_recovery: false, ..peer("n2", 0) }, &lag_bar, Err(Ineligible::Unreachable("n2".into()))),
            ("caught up", peer("n2", 1000), &lag_bar, Ok(())),
            ("ahead of the leader", peer("n2", 2000), &lag_bar, Ok(())),
            ("exactly max_lag behind", peer("n2", 900), &lag_bar, Ok(())),
            ("one byte too far behind", peer("n2", 899), &lag_bar, Err(lagging(101))),
            ("no position at all", peer("n2", 0), &lag_bar, Err(lagging(1000))),
            ("listed synchronous standby", peer("n2", 0), &sync_bar, Ok(())),
            ("listed, any case", peer("N2", 0), &sync_bar, Ok(())),
            ("not listed", peer("n3", 0), &sync_bar, Err(Ineligible::NotSynchronous("n3".into()))),
            ("the sync leader is not a standby", peer("n1", 0), &sync_bar, Err(Ineligible::NotSynchronous("n1".into()))),
        ];
        for (what, p, bar, want) in cases {
            assert_eq!(candidate_eligibility(&p, bar), want, "{what}");
        }
    }

    #[test]
    fn ineligible_in_patronis_words() {
        assert_eq!(
            Ineligible::Lagging {
                name: "n2".into(),
                lag: 5,
                max: 1
            }
            .to_string(),
            "n2 is lagging: 5 bytes behind the leader (maximum_lag_on_failover 1)"
        );
        assert_eq!(
            Ineligible::Unreachable("n2".into()).to_string(),
            "n2 is not reachable or not running"
        );
    }

    #[test]
    fn operation_of_a_failover_key() {
        let f = |leader: Option<&str>| Failover {
            leader: leader.map(str::to_string),
            candidate: Some("n2".into()),
            ..Default::default()
        };
        assert_eq!(Operation::of(&f(Some("n1"))), Operation::Switchover);
        assert_eq!(Operation::of(&f(None)), Operation::Failover);
        assert_eq!(Operation::Switchover.to_string(), "switchover");
        assert_eq!(Operation::Failover.title(), "Failover");
    }
}
