//! The leader race: may this replica take over, and is it the healthiest
//! (safety rule 3: within `maximum_lag_on_failover`, nobody further ahead or
//! equally far with a higher priority, nobody still primary).
//!
//! Rule: pure.

use super::*;

/// Ask the other members for their status (`GET /patroni`) this cycle? Only when
/// a race or a hand-over may be decided: nobody holds the key and we may take
/// over, or a `failover` key asks for a switchover; postgres answers; and no
/// long action is running (the decision would not race then anyway).
pub fn wants_peers(cluster: &Cluster, s: &Settings, pg: &PgView, long_running: bool) -> bool {
    let race = cluster.leader.is_none() && !s.nofailover;
    (race || cluster.failover.is_some()) && pg.accepting && !long_running
}

/// Nobody holds the leader key: take it if we are the healthiest, else follow.
pub(super) fn decide_unlocked(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    paused: bool,
) -> Decision {
    match healthiest(obs, s, cluster, paused) {
        Ok(()) => {
            let mut actions = vec![Action::AcquireLeader];
            if let Some(f) = &cluster.failover {
                actions.push(Action::ClearFailover {
                    mod_revision: f.mod_revision,
                });
            }
            if obs.pg.is_primary() {
                Decision::with(Reason::AcquiredLockAsPrimary, actions)
            } else {
                if cluster.dynamic().synchronous_mode {
                    actions.extend(sync::prepromote(s, cluster));
                }
                actions.push(Action::Promote);
                Decision::with(Reason::PromotedByAcquiringLock, actions)
            }
        }
        Err(why) => {
            if obs.pg.is_primary() && !paused {
                return Decision::with(
                    Reason::DemotingNotHealthiest(why),
                    vec![
                        Action::Stop(StopMode::Immediate),
                        Action::StartReplica(None),
                    ],
                );
            }
            Decision::new(Reason::NotHealthiest(why))
        }
    }
}

/// Why this node may not take the leader key now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHealthiest {
    NoFailoverTag,
    Paused,
    Lagging {
        lag: u64,
        max: u64,
    },
    TimelineBehind {
        mine: u32,
        cluster: u32,
    },
    PrimaryAlive(String),
    Ahead(String),
    HigherPriority(String),
    PeersUnknown,
    FailoverToOther(String),
    NotSynchronous,
    /// Our `pre_promote` script failed less than `ttl` ago (Patroni's backoff).
    PrePromoteFailed,
}

impl std::fmt::Display for NotHealthiest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotHealthiest::NoFailoverTag => write!(f, "I am not allowed to promote (nofailover)"),
            NotHealthiest::Paused => write!(f, "the cluster is paused"),
            NotHealthiest::Lagging { lag, max } => {
                write!(f, "my WAL is {lag} bytes behind the last leader position (maximum_lag_on_failover {max})")
            }
            NotHealthiest::TimelineBehind { mine, cluster } => {
                write!(
                    f,
                    "my timeline {mine} is behind the cluster timeline {cluster}"
                )
            }
            NotHealthiest::PrimaryAlive(n) => write!(f, "primary {n} is still alive"),
            NotHealthiest::Ahead(n) => write!(f, "{n} is ahead of me"),
            NotHealthiest::HigherPriority(n) => {
                write!(f, "{n} is as far ahead and has a higher failover priority")
            }
            NotHealthiest::PeersUnknown => write!(f, "peers have not been asked yet"),
            NotHealthiest::NotSynchronous => {
                write!(f, "synchronous mode: I am not a listed synchronous standby")
            }
            NotHealthiest::FailoverToOther(n) => write!(f, "a manual failover to {n} is requested"),
            NotHealthiest::PrePromoteFailed => {
                write!(f, "backoff: my pre_promote script failed less than ttl ago")
            }
        }
    }
}

/// Safety rule 3: race for the key only when no reachable member is better.
pub fn healthiest(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    paused: bool,
) -> Result<(), NotHealthiest> {
    let cfg = cluster.dynamic();
    let me_primary = obs.pg.is_primary();
    if me_primary {
        // A primary without the key may take it back only if nobody promoted past it.
        let mine = obs.pg.timeline.unwrap_or(0);
        let ct = cluster.history.current_timeline();
        if mine < ct {
            return Err(NotHealthiest::TimelineBehind { mine, cluster: ct });
        }
        return Ok(());
    }
    // Patroni's backoff: after our pre_promote script failed (and we let go of
    // the key), stay out of the race for ttl seconds.
    if let Some(at) = obs.memory.pre_promote_failed_at {
        if obs.now - at < cfg.ttl {
            return Err(NotHealthiest::PrePromoteFailed);
        }
    }
    // Never while another member still runs as a primary (whatever its tags): it
    // has not demoted yet, and promoting now would make two.
    if let Some(p) = obs
        .peers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|p| p.name != s.name && p.reachable && !p.in_recovery)
    {
        return Err(NotHealthiest::PrimaryAlive(p.name.clone()));
    }
    // A manual failover to a specific candidate: only the candidate races,
    // unless the candidate is gone or cannot be promoted (also when paused).
    if let Some(Failover {
        candidate: Some(c),
        scheduled_at: None,
        ..
    }) = &cluster.failover
    {
        let sync_ok = !sync::active(cluster, &cfg)
            || cluster
                .sync
                .as_ref()
                .is_some_and(|k| k.matches(&s.name, true));
        if c == &s.name && !s.nofailover && sync_ok {
            return Ok(());
        }
    }
    if paused {
        return Err(NotHealthiest::Paused);
    }
    if s.nofailover {
        return Err(NotHealthiest::NoFailoverTag);
    }
    // Synchronous mode: only a listed synchronous standby (or the former leader)
    // has every acknowledged commit.
    let sync_only = sync::active(cluster, &cfg);
    if sync_only
        && !cluster
            .sync
            .as_ref()
            .is_some_and(|k| k.matches(&s.name, true))
    {
        return Err(NotHealthiest::NotSynchronous);
    }
    if let Some(Failover {
        candidate: Some(c), ..
    }) = &cluster.failover
    {
        let candidate_ok = obs
            .peers
            .as_ref()
            .and_then(|p| p.iter().find(|p| &p.name == c))
            .is_some_and(|p| p.reachable && !p.nofailover);
        if candidate_ok {
            return Err(NotHealthiest::FailoverToOther(c.clone()));
        }
    }
    // A switchover without a named candidate: the former leader stands back while
    // anyone else can take over; the others race among themselves without the lag
    // check (the demoted leader handed over everything it had).
    let switchover_from = cluster
        .failover
        .as_ref()
        .filter(|f| f.candidate.is_none())
        .and_then(|f| f.leader.clone());
    if switchover_from.as_deref() == Some(s.name.as_str()) {
        let others = obs
            .peers
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|p| p.name != s.name && p.reachable && p.in_recovery && !p.nofailover);
        if others {
            return Err(NotHealthiest::FailoverToOther("another member".into()));
        }
    }
    let my_pos = obs.pg.failover_position();
    if let (Some(optime), None) = (cluster.status.optime, &switchover_from) {
        let lag = optime.saturating_sub(my_pos);
        if lag > cfg.maximum_lag_on_failover {
            return Err(NotHealthiest::Lagging {
                lag,
                max: cfg.maximum_lag_on_failover,
            });
        }
    }
    if cfg.check_timeline {
        let mine = obs.pg.timeline.unwrap_or(0);
        let ct = cluster.history.current_timeline();
        if mine < ct {
            return Err(NotHealthiest::TimelineBehind { mine, cluster: ct });
        }
    }
    let Some(peers) = &obs.peers else {
        return Err(NotHealthiest::PeersUnknown);
    };
    let my_wal = obs.pg.wal_position();
    let former_leader = cluster
        .history
        .entries
        .last()
        .and_then(|e| e.new_leader.clone());
    for p in peers {
        if p.name == s.name || !p.reachable || p.nofailover {
            continue;
        }
        if !p.in_recovery {
            return Err(NotHealthiest::PrimaryAlive(p.name.clone()));
        }
        if switchover_from.as_deref() == Some(p.name.as_str()) {
            continue;
        }
        if sync_only
            && !cluster
                .sync
                .as_ref()
                .is_some_and(|k| k.matches(&p.name, true))
        {
            continue;
        }
        if my_wal < p.wal_position {
            return Err(NotHealthiest::Ahead(p.name.clone()));
        }
        if p.wal_position > 0
            && my_wal == p.wal_position
            && s.failover_priority < p.failover_priority
            && former_leader.as_deref() != Some(p.name.as_str())
        {
            return Err(NotHealthiest::HigherPriority(p.name.clone()));
        }
    }
    Ok(())
}
