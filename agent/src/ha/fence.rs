//! The fence rules (safety rule 9): when the watchdog must be armed, which lease
//! renewal its deadline counts from, the deadline itself, and what a node whose
//! watchdog is gone may still do.
//!
//! Rule: no IO, no clock. Timestamps are read by the caller on the fence clock
//! ([`crate::fence::clock_now`]), which the watchdog process shares.

use std::time::Duration;

use super::{
    Action, DataDir, Decision, LongKind, Memory, Observation, PgView, Reason, Settings, StopMode,
};

pub use crate::dcs::model::LeaseRenewal;

/// When the fence stops postgres: a margin before the lease renewed by `r` can
/// expire (10% of its TTL, at most one second), so the old primary is gone before
/// anyone else can take the key. Only the renewal counts: a `ttl` changed in the
/// dynamic configuration since then does not move it.
pub fn deadline(r: &LeaseRenewal) -> Duration {
    let margin = (r.ttl / 10).min(Duration::from_secs(1));
    r.sent + r.ttl - margin
}

/// The leader key as the last cluster read showed it, for [`next_renewal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderKey {
    /// Not read since the renewal.
    Unknown,
    /// Absent, or naming another member.
    NotOurs,
    /// Names us and is bound to this lease.
    OnLease(i64),
}

/// The renewal the fence deadline counts from once `fresh` succeeded.
///
/// A renewal of the lease the deadline already follows always counts. A *new*
/// lease (granted because the old one expired or the `ttl` changed) counts only
/// once our leader key is bound to it: until it is re-bound, the key dies with
/// the old lease, which nobody renews any more, and so must the primary.
pub fn next_renewal(
    current: Option<LeaseRenewal>,
    fresh: LeaseRenewal,
    key: LeaderKey,
) -> Option<LeaseRenewal> {
    let Some(cur) = current else {
        return Some(fresh);
    };
    if cur.lease == fresh.lease {
        return Some(fresh);
    }
    match key {
        LeaderKey::OnLease(l) if l == fresh.lease => Some(fresh),
        LeaderKey::NotOurs => Some(fresh),
        LeaderKey::OnLease(_) | LeaderKey::Unknown => Some(cur),
    }
}

/// Postgres may be a primary, or is becoming one: the fence must be armed.
///
/// Armed whenever postgres runs and is not positively known to be a replica
/// (the probe said so, or it did not answer and `standby.signal` is there), and
/// while a promotion, a start as primary or a bootstrap is under way. It does not
/// depend on the probe succeeding, nor on what the loop believes about the leader
/// key. Only pause mode (no automatic demotion at all) disarms it.
pub fn must_arm(pg: &PgView, data_dir: &DataDir, memory: &Memory) -> bool {
    !memory.paused && may_be_primary(pg, data_dir, memory)
}

/// Postgres runs and is not positively known to be a replica, or a promotion, a
/// start as primary or a bootstrap is under way.
pub fn may_be_primary(pg: &PgView, data_dir: &DataDir, memory: &Memory) -> bool {
    becoming_primary(memory) || (pg.running && !known_replica(pg, data_dir))
}

fn becoming_primary(memory: &Memory) -> bool {
    memory.long_action.is_some_and(|(k, _)| {
        matches!(
            k,
            LongKind::Promote | LongKind::StartPrimary | LongKind::Bootstrap
        )
    })
}

fn known_replica(pg: &PgView, data_dir: &DataDir) -> bool {
    match pg.in_recovery {
        Some(in_recovery) => in_recovery,
        None => matches!(
            data_dir,
            DataDir::Initialized {
                standby_signal: true,
                ..
            }
        ),
    }
}

/// The fence process is dead and could not be restarted (`obs.fence_down`):
/// like Patroni without its watchdog, the node must not be or become a primary.
/// A postgres that may be primary is stopped, a promotion under way cancelled and
/// the key let go (in that order, rule 4); a decision to take the key, promote, start as primary or bootstrap
/// is dropped. Paused: hands off. Without etcd the DCS rule already demotes.
pub(super) fn without_fence(obs: &Observation, s: &Settings, d: Decision) -> Decision {
    let Some(cluster) = &obs.cluster else {
        return d;
    };
    if !obs.fence_down || cluster.dynamic().pause {
        return d;
    }
    let mine = cluster.leader_name() == Some(s.name.as_str());
    let may_be_primary = may_be_primary(&obs.pg, &obs.data_dir, &obs.memory);
    let promoting = d.actions.iter().any(|a| {
        matches!(
            a,
            Action::AcquireLeader
                | Action::RebindLeader
                | Action::RaceInitialize
                | Action::Promote
                | Action::StartPrimary
                | Action::Bootstrap
        )
    });
    if !may_be_primary && !promoting && !mine {
        return d;
    }
    let mut actions = vec![];
    if may_be_primary {
        actions.push(Action::Stop(StopMode::Immediate));
    }
    if becoming_primary(&obs.memory) {
        actions.push(Action::CancelLongAction);
    }
    if mine {
        actions.push(Action::ReleaseLeader);
    }
    let reason = if actions.is_empty() {
        Reason::FenceDownNotPromoting
    } else {
        Reason::FenceDownDemoting
    };
    Decision::with(reason, actions)
}
