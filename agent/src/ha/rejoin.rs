//! Joining and re-joining: bootstrap or clone an empty node, where a replica
//! streams from (cascading), and how a former primary comes back (pg_rewind,
//! re-clone, or stay stopped; safety rule 5).
//!
//! Rule: pure.

use super::*;

/// Empty data directory: race to bootstrap, clone from a running member, or wait.
pub(super) fn decide_bootstrap_or_clone(cluster: &Cluster, s: &Settings) -> Decision {
    if cluster.is_unlocked() && cluster.initialize.is_none() && !s.nofailover {
        return Decision::with(
            Reason::BootstrapNewCluster,
            vec![
                Action::RaceInitialize,
                Action::AcquireLeader,
                Action::Bootstrap,
            ],
        );
    }
    if let Some(src) = clone_source(cluster, s) {
        let from_leader = cluster.leader_name() == Some(src.name.as_str());
        return Decision::with(
            Reason::Cloning {
                from: src.name.clone(),
                leader: from_leader,
            },
            vec![Action::Clone(src)],
        );
    }
    // The leader's member key turns "running" without a leader-key event to wake
    // us: look again soon rather than a whole loop_wait later.
    let mut d = Decision::new(Reason::WaitingForLeaderToBootstrap);
    d.wakeup_in = Some(0.5);
    d
}

/// Clone source: a running member tagged `clonefrom`, else the running leader.
pub(super) fn clone_source(cluster: &Cluster, s: &Settings) -> Option<Source> {
    let leader = cluster.leader_name()?;
    let running = |m: &crate::dcs::model::Member| m.data.state.as_deref() == Some("running");
    let pick = cluster
        .members
        .iter()
        .filter(|m| {
            m.name != s.name && m.name != leader && m.data.tag_bool("clonefrom") && running(m)
        })
        .chain(
            cluster
                .members
                .iter()
                .filter(|m| m.name == leader && running(m)),
        )
        .find(|m| m.data.conn_host_port().is_some())?;
    let (host, port) = pick.data.conn_host_port()?;
    Some(Source {
        name: pick.name.clone(),
        host,
        port,
    })
}

/// The member a node named `name` with tag `replicatefrom: rf` streams from
/// instead of the leader: `rf`, when that is another member, running and with a
/// connection address. One rule for [`follow_target`] (where this node streams
/// from) and [`upstream_of`] (where the slot of a member must live).
pub(super) fn cascade_upstream<'a>(
    cluster: &'a Cluster,
    name: &str,
    rf: Option<&str>,
) -> Option<&'a crate::dcs::model::Member> {
    let rf = rf.filter(|rf| *rf != name)?;
    cluster
        .member(rf)
        .filter(|m| m.data.state.as_deref() == Some("running") && m.data.conn_host_port().is_some())
}

/// The member `m` streams from: its `replicatefrom` upstream, else the leader.
pub(super) fn upstream_of<'a>(
    cluster: &'a Cluster,
    m: &'a crate::dcs::model::Member,
) -> Option<&'a str> {
    let rf = m.data.tags.get("replicatefrom").and_then(|v| v.as_str());
    cascade_upstream(cluster, &m.name, rf)
        .map(|up| up.name.as_str())
        .or_else(|| cluster.leader_name())
}

/// The member this node should stream from: `replicatefrom` if it is running, else the leader.
pub(super) fn follow_target(cluster: &Cluster, s: &Settings) -> Option<Source> {
    let to_source = |name: &str| -> Option<Source> {
        let m = cluster.member(name)?;
        let (host, port) = m.data.conn_host_port()?;
        Some(Source {
            name: m.name.clone(),
            host,
            port,
        })
    };
    if let Some(up) = cascade_upstream(cluster, &s.name, s.replicatefrom.as_deref()) {
        return to_source(&up.name);
    }
    let leader = cluster.leader_name()?;
    if leader == s.name {
        return None;
    }
    to_source(leader)
}

/// Postgres is not running (crashed, stopped, or never started by this agent).
pub(super) fn decide_recover(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    lock: Lock,
    control: Option<&ControlState>,
    standby_signal: bool,
) -> Decision {
    let was_primary = control.is_some_and(|c| c.was_primary()) && !standby_signal;
    let mine = matches!(lock, Lock::Held | Lock::HeldStale);
    if mine {
        // A primary that fails to come back hands the lock over rather than keep it hostage.
        if obs.memory.failed_primary_starts >= 3 {
            return Decision::with(Reason::ReleasedLockStartFailed, vec![Action::ReleaseLeader]);
        }
        if was_primary {
            let mut actions = vec![];
            if cluster.dynamic().synchronous_mode {
                // commits wait for a standby until the sync state is settled again
                actions.push(Action::SetSyncNames(sync::NO_STANDBY.to_string()));
            }
            actions.push(Action::StartPrimary);
            return Decision::with(Reason::StartingPrimaryAfterFailure, actions);
        }
        // Not a primary's data dir (or a replica that got the lock): start read-only,
        // the next cycle promotes it while we hold the lock.
        return Decision::with(
            Reason::StartingReadonlyWithLock,
            vec![Action::StartReplica(None)],
        );
    }
    let target = follow_target(cluster, s);
    if let Some(d) = rewind_decision(obs, s, cluster, control, target.as_ref()) {
        return d;
    }
    Decision::with(
        Reason::StartingAsSecondary,
        vec![Action::StartReplica(target)],
    )
}

/// Does this stopped node's WAL history diverge from the leader's? Returns the
/// decision to rewind, re-clone or stay stopped, or `None` when it can simply stream.
pub(super) fn rewind_decision(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    control: Option<&ControlState>,
    target: Option<&Source>,
) -> Option<Decision> {
    let leader = cluster.leader.as_ref()?;
    let leader_member = cluster.member(&leader.name)?;
    // Only compare against a leader that runs as primary.
    if leader_member.data.role.as_deref() != Some("primary")
        || leader_member.data.state.as_deref() != Some("running")
    {
        return None;
    }
    let leader_tl = leader_member.data.timeline?;
    let c = control?;
    let (local_tl, local_lsn) = (c.timeline(), c.lsn());
    let diverged = if local_tl > leader_tl {
        true
    } else if local_tl == leader_tl {
        false
    } else if c.was_primary_crashed() {
        // A crashed primary's end of WAL is unknown from pg_control alone:
        // pg_rewind finds out exactly (and changes nothing when not needed).
        true
    } else {
        match cluster.history.switch_lsn(local_tl) {
            // A cleanly stopped primary's last record is its shutdown checkpoint at
            // `local_lsn`: the new timeline must start after that record.
            Some(switch) if c.was_primary() => local_lsn >= switch,
            Some(switch) => local_lsn > switch,
            None => {
                // The leader's history does not know our timeline yet (just promoted).
                if cluster.history.current_timeline() < leader_tl {
                    return Some(Decision::new(Reason::WaitingForLeaderHistory));
                }
                true
            }
        }
    };
    if !diverged {
        return None;
    }
    let src = target
        .cloned()
        .filter(|t| t.name == leader.name)
        .or_else(|| {
            let (host, port) = leader_member.data.conn_host_port()?;
            Some(Source {
                name: leader.name.clone(),
                host,
                port,
            })
        })?;
    if let Some(err) = &obs.memory.rewind_failed {
        if s.remove_data_directory_on_rewind_failure {
            return Some(Decision::with(
                Reason::ReinitializingAfterRewindFailure,
                vec![Action::RemoveDataDir],
            ));
        }
        return Some(Decision::new(Reason::RewindFailedStayStopped(err.clone())));
    }
    let use_rewind = s
        .use_pg_rewind_local
        .unwrap_or(cluster.dynamic().postgresql.use_pg_rewind);
    if use_rewind {
        return Some(Decision::with(
            Reason::RunningRewind {
                from: src.name.clone(),
            },
            vec![Action::Rewind(src)],
        ));
    }
    if s.remove_data_directory_on_diverged_timelines {
        return Some(Decision::with(
            Reason::ReinitializingDiverged,
            vec![Action::RemoveDataDir],
        ));
    }
    Some(Decision::new(Reason::DivergedNoRewind))
}

/// A running replica that cannot stream may have diverged from a new leader
/// (it replayed past the point where the leader's timeline forked). Stop it once
/// per leader timeline so that pg_control can be read and the stopped-node check
/// above decides between streaming and pg_rewind.
pub(super) fn running_replica_divergence(obs: &Observation, cluster: &Cluster) -> Option<Decision> {
    if obs.pg.receiver_status.as_deref() == Some("streaming") {
        return None;
    }
    let leader = cluster.leader.as_ref()?;
    let lm = cluster.member(&leader.name)?;
    if lm.data.role.as_deref() != Some("primary") || lm.data.state.as_deref() != Some("running") {
        return None;
    }
    let leader_tl = lm.data.timeline?;
    let my_tl = obs.pg.timeline?;
    if my_tl >= leader_tl {
        return None;
    }
    let switch = cluster.history.switch_lsn(my_tl)?;
    if obs.pg.replay_lsn.unwrap_or(0) <= switch {
        return None;
    }
    let key = (leader.name.clone(), leader_tl);
    if obs.memory.divergence_checked.as_ref() == Some(&key) {
        return None;
    }
    Some(Decision::with(
        Reason::CheckingDivergence {
            leader: leader.name.clone(),
            timeline: leader_tl,
        },
        vec![
            Action::NoteDivergenceCheck {
                leader: key.0,
                timeline: key.1,
            },
            Action::Stop(StopMode::Fast),
        ],
    ))
}
