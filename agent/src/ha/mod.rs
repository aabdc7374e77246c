//! The HA decision: `decide(observation, settings) -> Decision`.
//!
//! Rule: no IO, no clock, no randomness. Everything the decision depends on is in
//! the [`Observation`] (what etcd, postgres and the peers looked like this cycle,
//! plus the agent's own notes from earlier cycles) and the [`Settings`] (the local
//! configuration). The executor carries the returned actions out in order and
//! stops at the first failure; results feed the next observation.
//!
//! The order of the checks follows Patroni's `ha.py` `_run_cycle`.
//!
//! Files: `view.rs` (what decide sees), `action.rs` (what it returns), this file
//! (the cycle's order: DCS, bootstrap, data directory, recover, race or lead),
//! `race.rs` (who may take over), `rejoin.rs` (clone, follow, rewind),
//! `slots.rs`, `sync.rs` (synchronous standbys), `fence.rs` (the fence rules),
//! `manual.rs` (switchover, failover, restart... requests), `memory.rs`
//! (the loop's memory, one `apply`), `reason.rs` (the reason words),
//! `cadence.rs` (when the loop writes its member and status keys, and when it
//! runs the next cycle).

mod action;
pub mod cadence;
pub mod fence;
mod manual;
pub mod memory;
mod race;
mod reason;
mod rejoin;
mod slots;
pub mod sync;
#[cfg(test)]
mod tests;
mod view;

use crate::dcs::model::{Cluster, Failover};
use crate::postgres::ControlState;

pub use crate::postgres::Walsender;
pub use manual::{
    candidate_eligibility, parse_timestamp, Ineligible, Operation, Request, TakeoverBar,
};
pub use reason::Reason;

pub use action::*;
use race::*;
pub use race::{healthiest, wants_peers, NotHealthiest};
use rejoin::*;
pub use slots::permanent_slots;
use slots::*;
pub use view::*;

/// A system identifier looks like one: at least 10 digits.
pub fn sysid_valid(s: Option<&str>) -> bool {
    s.is_some_and(|s| s.len() >= 10 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Our view of the leader lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// We hold it with our current lease.
    Held,
    /// It names us but is bound to an older lease of ours.
    HeldStale,
    /// Someone else holds it.
    Other,
    /// Nobody holds it.
    Free,
}

/// The HA decision for one cycle, including the answer to a pending REST request.
pub fn decide(obs: &Observation, s: &Settings) -> Decision {
    let mut d = decide_cluster(obs, s);
    // Positions recorded for synchronous standbys hold only while postgres runs
    // as primary without a break: after a restart, demotion or promotion the
    // standbys are named (and recorded) afresh. Noted after a fence (which comes
    // first) and before a long action or an exit (which come last).
    if !obs.pg.is_primary() && !obs.memory.sync_named.is_empty() {
        let at = d
            .actions
            .iter()
            .position(|a| a.long_kind().is_some() || matches!(a, Action::Exit { .. }))
            .unwrap_or(d.actions.len());
        d.actions
            .insert(at, Action::NoteSyncNamed(Default::default()));
    }
    // Changed `postgresql.parameters` apply at once where postgres allows (reload);
    // the others show as pending_restart.
    if obs.config_changed
        && obs.cluster.is_some()
        && obs.pg.accepting
        && obs.memory.long_action.is_none()
        && manual::steady(&d.reason)
        && d.actions.iter().all(|a| a.long_kind().is_none())
    {
        d.actions.push(Action::Reload);
    }
    let d = manual::with_request(obs, s, obs.cluster.as_ref(), d);
    fence::without_fence(obs, s, d)
}

/// The HA decision without requests.
fn decide_cluster(obs: &Observation, s: &Settings) -> Decision {
    let Some(cluster) = &obs.cluster else {
        return decide_dcs_unavailable(obs);
    };
    let cfg = cluster.dynamic();
    let lock = match &cluster.leader {
        None => Lock::Free,
        Some(l) if l.name == s.name && l.lease == obs.lease && obs.lease != 0 => Lock::Held,
        Some(l) if l.name == s.name => Lock::HeldStale,
        Some(_) => Lock::Other,
    };
    let mine = matches!(lock, Lock::Held | Lock::HeldStale);
    // Actions that make the lock ours before anything relies on holding it.
    let rebind = if lock == Lock::HeldStale {
        vec![Action::RebindLeader]
    } else {
        vec![]
    };
    let with_lock = |mut v: Vec<Action>| {
        let mut out = rebind.clone();
        out.append(&mut v);
        out
    };
    let paused = cfg.pause;

    // 1. A long action is running: keep the lock, or stop a would-be primary that lost it.
    if let Some((kind, _since)) = obs.memory.long_action {
        if mine {
            return Decision::with(Reason::LongActionWithLock(kind), with_lock(vec![]));
        }
        if !paused && matches!(kind, LongKind::Promote | LongKind::StartPrimary) {
            return Decision::with(
                Reason::LostLockDuring(kind),
                vec![Action::Stop(StopMode::Immediate)],
            );
        }
        if !paused && obs.pg.is_primary() && kind != LongKind::Bootstrap {
            return Decision::with(
                Reason::LostLockDuring(kind),
                vec![Action::Stop(StopMode::Immediate)],
            );
        }
        return Decision::new(Reason::LongActionInProgress(kind));
    }

    // 2. We bootstrapped the cluster: publish it. Once published (or when the note is
    // stale: the executor keeps it), the normal checks below apply.
    if let Some(sysid) = &obs.memory.bootstrapped_sysid {
        let mut actions = vec![];
        if cluster.initialize.as_deref() != Some(sysid.as_str()) {
            actions.push(Action::SetInitialize(sysid.clone()));
        }
        if cluster.config.is_none() {
            actions.push(Action::SeedConfig(s.bootstrap_config.clone()));
        }
        if mine && !actions.is_empty() {
            return Decision::with(Reason::InitializedNewCluster, with_lock(actions));
        }
        // We lost the lock while bootstrapping: somebody else cannot have data, so
        // take it back if free; otherwise the next cycles sort it out. Only a node
        // that runs the freshly bootstrapped primary skips the health checks.
        if lock == Lock::Free && !actions.is_empty() && obs.pg.is_primary() {
            actions.insert(0, Action::AcquireLeader);
            return Decision::with(Reason::InitializedNewCluster, actions);
        }
    }
    if let Some(r) = &obs.memory.last_result {
        if r.kind == LongKind::Bootstrap && !r.ok && obs.memory.bootstrapped_sysid.is_none() {
            let mut actions = vec![];
            // initdb may have got as far as starting postgres: stop it before its
            // data directory is removed and before the key is let go (rule 4).
            if obs.pg.running {
                actions.push(Action::Stop(StopMode::Immediate));
            }
            if mine {
                actions.push(Action::ReleaseLeader);
            }
            if cluster.initialize.as_deref() == Some("") {
                actions.push(Action::DeleteInitialize);
            }
            actions.push(Action::RemoveDataDir);
            actions.push(Action::Exit {
                code: 1,
                message: format!("failed to bootstrap the cluster: {}", r.message),
            });
            return Decision::with(Reason::BootstrapFailed(r.message.clone()), actions);
        }
    }

    // 3. Empty or unusable data directory.
    let (sysid, control, standby_signal) = match &obs.data_dir {
        DataDir::Invalid(e) => {
            // Like an empty one (Patroni: "not accessible"): postgres must not keep
            // running on it, and the key must not be held hostage by a node that
            // cannot start.
            let mut actions = vec![];
            if obs.pg.running {
                actions.push(Action::Stop(StopMode::Immediate));
            }
            if mine {
                actions.push(Action::ReleaseLeader);
            }
            return Decision::with(Reason::DataDirInvalid(e.clone()), actions);
        }
        DataDir::Empty => {
            if obs.pg.running {
                return Decision::with(
                    Reason::DataDirEmptyWhileRunning,
                    vec![Action::Stop(StopMode::Immediate)],
                );
            }
            if mine {
                return Decision::with(
                    Reason::ReleasedLockEmptyDataDir,
                    vec![Action::ReleaseLeader],
                );
            }
            if paused {
                return Decision::new(Reason::PausedEmptyDataDir);
            }
            return decide_bootstrap_or_clone(cluster, s);
        }
        DataDir::Initialized {
            sysid,
            control,
            standby_signal,
        } => (
            sysid.clone().or(obs.pg.sysid.clone()),
            control.clone(),
            *standby_signal,
        ),
    };

    // 4. The data directory must belong to this cluster.
    if !sysid_valid(sysid.as_deref()) {
        return Decision::new(Reason::InvalidSysid);
    }
    let sysid = sysid.unwrap_or_default();
    let mut publish_sysid = vec![];
    match cluster.initialize.as_deref() {
        Some(init) if sysid_valid(Some(init)) => {
            if init != sysid {
                if paused {
                    let mut a = vec![];
                    if mine {
                        a.push(Action::ReleaseLeader);
                    }
                    return Decision::with(Reason::SysidMismatchPaused, a);
                }
                return Decision::with(
                    Reason::SysidMismatch {
                        cluster: init.to_string(),
                        local: sysid.clone(),
                    },
                    vec![Action::Exit {
                        code: 1,
                        message: format!(
                            "system ID mismatch: node {} belongs to a different cluster: {} != {}",
                            s.name, init, sysid
                        ),
                    }],
                );
            }
        }
        _ => {
            // No (valid) initialize key but we have data: claim the cluster for it,
            // unless someone else is leader (then the leader will publish it).
            if (lock == Lock::Free && !paused) || mine {
                publish_sysid.push(Action::SetInitialize(sysid.clone()));
            }
        }
    }

    // 5. Postgres is not running.
    if !obs.pg.running {
        if paused {
            if mine {
                return Decision::with(
                    Reason::PausedRemovedLockNotRunning,
                    vec![Action::ReleaseLeader],
                );
            }
            return Decision::new(Reason::PausedNotRunning);
        }
        let mut d = decide_recover(obs, s, cluster, lock, control.as_ref(), standby_signal);
        if mine {
            d.actions = with_lock(d.actions);
        }
        let mut a = publish_sysid;
        a.append(&mut d.actions);
        d.actions = a;
        return d;
    }

    // 6. Postgres runs but does not answer yet (starting up, or hung).
    if obs.pg.in_recovery.is_none() {
        if lock == Lock::Other && !paused && may_be_primary(obs) {
            return Decision::with(
                Reason::DemotingOtherHasLock,
                vec![
                    Action::Stop(StopMode::Immediate),
                    Action::StartReplica(follow_target(cluster, s)),
                ],
            );
        }
        if mine {
            return Decision::with(
                Reason::PostgresNotAnswering { leader: true },
                with_lock(vec![]),
            );
        }
        return Decision::new(Reason::PostgresNotAnswering { leader: false });
    }

    // 7. Postgres runs: race, lead, or follow.
    let mut d = if lock == Lock::Free {
        decide_unlocked(obs, s, cluster, paused)
    } else {
        decide_locked(obs, s, cluster, lock, paused)
    };
    if mine {
        d.actions = with_lock(d.actions);
    }
    let mut a = publish_sysid;
    a.append(&mut d.actions);
    d.actions = a;
    d
}

/// The DCS could not be read or our lease not renewed: a primary stops taking writes.
fn decide_dcs_unavailable(obs: &Observation) -> Decision {
    if obs.memory.paused {
        return Decision::new(Reason::DcsUnavailablePaused);
    }
    let becoming_primary = obs
        .memory
        .long_action
        .is_some_and(|(k, _)| matches!(k, LongKind::Promote | LongKind::StartPrimary));
    if may_be_primary(obs) || becoming_primary {
        return Decision::with(
            Reason::DemotedDcsUnavailable,
            vec![
                Action::Stop(StopMode::Immediate),
                Action::StartReplica(None),
            ],
        );
    }
    Decision::new(Reason::DcsUnavailable)
}

/// Postgres may be accepting writes: it answered as a primary, or it runs but did
/// not answer the probe (hung, or out of connections) and was not started as a
/// standby (Patroni falls back to the role it last saw). Fencing must not depend on
/// the probe succeeding.
fn may_be_primary(obs: &Observation) -> bool {
    if obs.pg.is_primary() {
        return true;
    }
    obs.pg.running
        && obs.pg.in_recovery.is_none()
        && obs.memory.long_action.is_none()
        && matches!(
            obs.data_dir,
            DataDir::Initialized {
                standby_signal: false,
                ..
            }
        )
}

/// Somebody (maybe us) holds the leader key.
fn decide_locked(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    lock: Lock,
    paused: bool,
) -> Decision {
    let mine = matches!(lock, Lock::Held | Lock::HeldStale);
    if mine {
        if obs.pg.is_primary() {
            return decide_leader_steady(obs, s, cluster);
        }
        if paused {
            return Decision::with(
                Reason::PausedRemovedLockNotPrimary,
                vec![Action::ReleaseLeader],
            );
        }
        let mut actions = vec![];
        if cluster.dynamic().synchronous_mode {
            actions.extend(sync::prepromote(s, cluster));
        }
        actions.push(Action::Promote);
        return Decision::with(Reason::PromotedBecauseHadLock, actions);
    }
    let leader = cluster.leader_name().unwrap_or_default().to_string();
    if obs.pg.is_primary() {
        if paused {
            return Decision::new(Reason::PausedPrimaryWithoutLock);
        }
        let target = follow_target(cluster, s);
        return Decision::with(
            Reason::DemotingOtherHasLock,
            vec![
                Action::Stop(StopMode::Immediate),
                Action::StartReplica(target),
            ],
        );
    }
    // A replica: check the timeline, then the upstream.
    let target = follow_target(cluster, s);
    if !paused {
        if let Some(d) = running_replica_divergence(obs, cluster) {
            return d;
        }
    }
    let want = target.as_ref().map(|t| t.name.clone());
    if obs.memory.following.as_ref() != Some(&want) && !paused {
        return Decision::with(
            Reason::FollowingNew {
                me: s.name.clone(),
                leader: leader.clone(),
                upstream: want,
            },
            vec![Action::Follow(target)],
        );
    }
    let mut d = Decision::new(Reason::Following {
        me: s.name.clone(),
        leader,
        upstream: want,
    });
    if !paused {
        d.actions.extend(replica_slots(obs, s, cluster));
    }
    d
}

/// The leader with a running primary: publish position, history, slots.
fn decide_leader_steady(obs: &Observation, s: &Settings, cluster: &Cluster) -> Decision {
    let cfg = cluster.dynamic();
    let manual = cluster
        .failover
        .as_ref()
        .and_then(|f| manual::failover_from_leader(obs, s, cluster, f, cfg.pause));
    if let Some(d) = &manual {
        if d.actions.iter().any(|a| a.long_kind().is_some()) {
            return d.clone();
        }
    }
    let mut actions = vec![];
    if cluster.config.is_none() {
        // The key was deleted (e.g. `remove` on a running cluster): the leader puts
        // back the configuration it last knew, as Patroni does.
        let cfg = obs
            .memory
            .last_config
            .clone()
            .unwrap_or_else(|| s.bootstrap_config.clone());
        actions.push(Action::SeedConfig(cfg));
    }
    if let Some(lsn) = obs.pg.wal_lsn {
        actions.push(Action::WriteStatus { optime: lsn });
    }
    if let Some(tl) = obs.pg.timeline {
        if tl > 1 && cluster.history.entries.iter().all(|e| e.timeline != tl - 1) {
            actions.push(Action::UpdateHistory { timeline: tl });
        }
    }
    if cfg.postgresql.use_slots {
        if let Some(have) = &obs.pg.slots {
            let permanent = permanent_slots(&cfg);
            let my_slot = crate::dcs::model::slot_name_for(&s.name);
            // A slot for every member that streams from us; a cascading replica
            // (`replicatefrom` a running member) gets its slot on that member.
            let mut wanted = slots_streaming_from(cluster, &s.name);
            let present: Vec<String> = cluster
                .members
                .iter()
                .map(|m| crate::dcs::model::slot_name_for(&m.name))
                .collect();
            // Slots of members that went away are kept for member_slots_ttl, so a
            // replica that comes back in time continues where it stopped.
            let retained: Vec<String> = obs
                .memory
                .slot_seen
                .iter()
                .filter(|(slot, seen)| {
                    !wanted.contains(slot)
                        && !present.contains(slot)
                        && **slot != my_slot
                        && obs.now - **seen <= cfg.member_slots_ttl
                })
                .map(|(slot, _)| slot.clone())
                .collect();
            let mut published = cluster.status.retain_slots.clone();
            published.sort();
            if retained != published {
                actions.push(Action::WriteRetainSlots(retained.clone()));
            }
            wanted.extend(retained);
            wanted.extend(permanent.iter().filter(|p| **p != my_slot).cloned());
            actions.extend(slot_changes(have, &wanted, &permanent));
        }
    }
    let sync_steps = sync::leader_steps(obs, s, cluster, &cfg);
    let settling = !sync_steps.is_empty();
    actions.extend(sync_steps);
    let mut d = match manual {
        // waiting for a scheduled switchover, or cleaning up a request we refuse
        Some(mut d) => {
            actions.append(&mut d.actions);
            d.actions = actions;
            d
        }
        None => Decision::with(Reason::LeaderWithLock(s.name.clone()), actions),
    };
    if settling {
        // synchronous replication takes a few steps: do them without waiting a loop
        d.wakeup_in = Some(0.5);
    }
    d
}
