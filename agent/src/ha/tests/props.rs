//! Safety rules 1–3 (and the rejoin rule 5) as properties of `decide` over random
//! observations: any cluster (no leader, ours with the current or an old lease,
//! someone else's), any postgres state, any peers, positions, lag settings, tags and
//! agent memory. Positions come in half-megabyte steps so that "equal", "within
//! `maximum_lag_on_failover`" and "beyond it" all happen often.
//!
//! The generator stays within what the agent can observe: when postgres answers the
//! probe, the data directory is read from it (its system identifier, no pg_control).

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

use super::fixtures::*;
use crate::dcs::model::{Cluster, Failover, Leader, Member};
use crate::ha::{
    decide, Action as A, DataDir, LongKind, LongResult, Memory, Observation, PeerStatus, PgView,
    Settings, StopMode,
};

const IMMEDIATE: A = A::Stop(StopMode::Immediate);
const OTHERS: [&str; 2] = ["n2", "n3"];
const KINDS: [LongKind; 7] = [
    LongKind::Bootstrap,
    LongKind::Clone,
    LongKind::StartPrimary,
    LongKind::StartReplica,
    LongKind::Promote,
    LongKind::Rewind,
    LongKind::Stop,
];

fn lsn() -> impl Strategy<Value = u64> {
    (0u64..8).prop_map(|x| x * 0x8_0000)
}

fn timeline() -> impl Strategy<Value = u32> {
    1u32..4
}

fn name() -> impl Strategy<Value = String> {
    select(vec!["n1", "n2", "n3"]).prop_map(str::to_string)
}

fn arb_member(name: &'static str) -> impl Strategy<Value = Option<Member>> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
        timeline(),
        lsn(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            move |(present, primary, running, tl, xlog, clonefrom, nofailover)| {
                present.then(|| {
                    let mut m = member(name).timeline(tl).xlog(xlog);
                    if primary {
                        m = m.primary();
                    }
                    if !running {
                        m = m.stopped();
                    }
                    if clonefrom {
                        m = m.tag("clonefrom", json!(true));
                    }
                    if nofailover {
                        m = m.tag("nofailover", json!(true));
                    }
                    m
                })
            },
        )
}

prop_compose! {
    fn arb_config()(
        present in prop::bool::weighted(0.9),
        pause in prop::bool::weighted(0.15),
        max_lag in select(vec![0u64, 0x8_0000, 1_048_576, 4 * 1_048_576]),
        check_timeline in any::<bool>(),
        use_pg_rewind in any::<bool>(),
        use_slots in any::<bool>(),
    ) -> Option<serde_json::Value> {
        present.then(|| json!({
            "pause": pause,
            "maximum_lag_on_failover": max_lag,
            "check_timeline": check_timeline,
            "postgresql": {"use_pg_rewind": use_pg_rewind, "use_slots": use_slots},
            "slots": {"perm": {"type": "physical"}},
        }))
    }
}

prop_compose! {
    fn arb_cluster()(
        initialize in select(vec![None, Some(""), Some(SYSID), Some(OTHER_SYSID)]),
        config in arb_config(),
        leader in 0u8..5,
        members in (arb_member("n1"), arb_member("n2"), arb_member("n3")),
        optime in prop::option::weighted(0.8, lsn()),
        history in prop::collection::vec(lsn(), 0..3),
        failover in 0u8..6,
    ) -> Cluster {
        let mut c = Cluster {
            initialize: initialize.map(str::to_string),
            config: config.map(config_of),
            ..Default::default()
        };
        c.leader = match leader {
            0 => None,
            1 => Some((ME, LEASE)),
            2 => Some((ME, OLD_LEASE)),
            3 => Some(("n2", OLD_LEASE)),
            _ => Some(("n3", OLD_LEASE)),
        }
        .map(|(name, lease)| Leader { name: name.into(), lease, mod_revision: 9 });
        c.members = [members.0, members.1, members.2].into_iter().flatten().collect();
        c.status.optime = optime;
        let mut sorted = history;
        sorted.sort();
        for (i, lsn) in sorted.into_iter().enumerate() {
            c = c.history(i as u32 + 1, lsn, OTHERS[i % 2]);
        }
        c.failover = match failover {
            1 => Some((None, Some(ME))),
            2 => Some((None, Some("n2"))),
            3 => Some((Some("n2"), None)),
            _ => None,
        }
        .map(|(l, m): (Option<&str>, Option<&str>)| Failover {
            leader: l.map(str::to_string),
            candidate: m.map(str::to_string),
            scheduled_at: None,
            mod_revision: 42,
        });
        c
    }
}

prop_compose! {
    /// 0 stopped, 1 primary, 2 replica, 3 running but not answering.
    fn arb_pg()(
        kind in 0u8..4,
        tl in timeline(),
        wal in lsn(),
        receive in lsn(),
        replay in lsn(),
        replay_paused in prop::bool::weighted(0.2),
        streaming in any::<bool>(),
        slots in prop::sample::subsequence(vec!["n2", "n3", "gone", "perm"], 0..4),
        other_sysid in prop::bool::weighted(0.05),
    ) -> PgView {
        let mut pg = match kind {
            0 => pg_stopped(),
            1 => pg_primary(wal, tl),
            2 => pg_replica(receive, replay, tl)
                .receiver(streaming.then_some("streaming")),
            _ => pg_not_answering(),
        };
        if pg.accepting {
            pg.replay_paused = replay_paused && kind == 2;
            pg.slots = Some(slots.into_iter().map(str::to_string).collect());
            if other_sysid {
                pg.sysid = Some(OTHER_SYSID.into());
            }
        }
        pg
    }
}

prop_compose! {
    fn arb_data_dir()(
        kind in prop::sample::select(vec![0u8, 1, 2, 2, 2, 2]),
        sysid in select(vec![None, Some(SYSID), Some(SYSID), Some(SYSID), Some(OTHER_SYSID), Some("12")]),
        ctl in prop::option::weighted(0.8, (
            select(vec![
                "shut down", "in production", "shut down in recovery",
                "in archive recovery", "in crash recovery", "shutting down",
            ]),
            lsn(),
            timeline(),
            prop::bool::weighted(0.2),
        )),
        standby_signal in any::<bool>(),
    ) -> DataDir {
        match kind {
            0 => DataDir::Empty,
            1 => DataDir::Invalid("not a data directory".into()),
            _ => DataDir::Initialized {
                sysid: sysid.map(str::to_string),
                control: ctl.map(|(state, lsn, tl, no_min_recovery)| {
                    let mut c = control(state, lsn, tl);
                    if no_min_recovery {
                        // a primary that crashed: no minimum recovery point
                        c.min_recovery_lsn = 0;
                        c.min_recovery_timeline = 0;
                    }
                    c
                }),
                standby_signal,
            },
        }
    }
}

fn arb_peer(name: &'static str) -> impl Strategy<Value = Option<PeerStatus>> {
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.85),
        lsn(),
        prop::bool::weighted(0.15),
        0i64..3,
    )
        .prop_map(
            move |(present, reachable, in_recovery, wal, nofailover, prio)| {
                present.then(|| PeerStatus {
                    name: name.into(),
                    reachable,
                    in_recovery,
                    wal_position: wal,
                    timeline: Some(1),
                    nofailover,
                    failover_priority: prio,
                })
            },
        )
}

fn arb_peers() -> impl Strategy<Value = Option<Vec<PeerStatus>>> {
    prop::option::weighted(
        0.8,
        (arb_peer("n1"), arb_peer("n2"), arb_peer("n3"))
            .prop_map(|(a, b, c)| [a, b, c].into_iter().flatten().collect()),
    )
}

prop_compose! {
    fn arb_memory()(
        long in prop::option::weighted(0.2, select(KINDS.to_vec())),
        last in prop::option::weighted(0.2, (select(KINDS.to_vec()), any::<bool>())),
        bootstrapped in prop::option::weighted(0.1, select(vec![SYSID, OTHER_SYSID])),
        following in prop::option::of(prop::option::of(name())),
        rewind_failed in prop::bool::weighted(0.15),
        crashed in any::<bool>(),
        failed_primary_starts in 0u32..5,
        divergence_checked in prop::option::weighted(0.2, (name(), timeline())),
        paused in prop::bool::weighted(0.15),
        sync_named in prop::option::weighted(0.2, (name(), lsn())),
        pre_promote_failed in prop::bool::weighted(0.1),
    ) -> Memory {
        Memory {
            long_action: long.map(|k| (k, 10.0)),
            last_result: last.map(|(kind, ok)| LongResult {
                kind,
                ok,
                message: "boom".into(),
                at: 11.0,
            }),
            bootstrapped_sysid: bootstrapped.map(str::to_string),
            following,
            rewind_failed: rewind_failed.then(|| "no common ancestor".to_string()),
            crashed,
            failed_primary_starts,
            divergence_checked,
            paused,
            slot_seen: Default::default(),
            timeline_seen: None,
            last_config: None,
            sync_named: sync_named.into_iter().collect(),
            pre_promote_failed_at: pre_promote_failed.then_some(5.0),
        }
    }
}

prop_compose! {
    fn arb_settings()(
        nofailover in prop::bool::weighted(0.2),
        failover_priority in 0i64..3,
        replicatefrom in prop::option::weighted(0.2, name()),
        use_pg_rewind_local in prop::option::of(any::<bool>()),
        remove_on_rewind_failure in any::<bool>(),
        remove_on_diverged in any::<bool>(),
    ) -> Settings {
        Settings {
            nofailover,
            failover_priority,
            replicatefrom,
            use_pg_rewind_local,
            remove_data_directory_on_rewind_failure: remove_on_rewind_failure,
            remove_data_directory_on_diverged_timelines: remove_on_diverged,
            ..settings()
        }
    }
}

prop_compose! {
    fn arb_obs()(
        dcs_up in prop::bool::weighted(0.85),
        cluster in arb_cluster(),
        lease in select(vec![LEASE, LEASE, LEASE, 0]),
        pg in arb_pg(),
        data_dir in arb_data_dir(),
        peers in arb_peers(),
        memory in arb_memory(),
    ) -> Observation {
        // What the agent can see: a data directory read through a postgres that
        // answers gives its system identifier and no pg_control.
        let data_dir = match data_dir {
            DataDir::Initialized { standby_signal, .. } if pg.accepting => DataDir::Initialized {
                sysid: pg.sysid.clone(),
                control: None,
                standby_signal,
            },
            d => d,
        };
        Observation {
            now: 100.0,
            cluster: dcs_up.then_some(cluster),
            lease,
            data_dir,
            pg,
            peers,
            memory,
            unix_now: 1_800_000_000.0,
            request: None,
            config_changed: false,
            fence_down: false,
        }
    }
}

prop_compose! {
    /// A stopped node rejoining a cluster that `n2` leads as a running primary: the
    /// corner rule 5 is about, which random observations reach too rarely.
    fn arb_rejoin()(
        o in arb_obs(),
        leader_tl in timeline(),
        data_dir in arb_data_dir(),
    ) -> Observation {
        let mut o = o;
        let mut c = o.cluster.take().unwrap_or_default().initialize(Some(SYSID)).led_by_n2(leader_tl);
        if c.history.entries.is_empty() && leader_tl > 1 {
            c = c.history(1, 0x8_0000, "n2");
        }
        o.cluster = Some(c);
        o.pg = pg_stopped();
        o.data_dir = match data_dir {
            DataDir::Initialized { control, standby_signal, .. } => DataDir::Initialized {
                sysid: Some(SYSID.into()),
                control,
                standby_signal,
            },
            d => d,
        };
        o.memory.long_action = None;
        o.memory.last_result = None;
        o.memory.bootstrapped_sysid = None;
        o
    }
}

/// Holding the key with our current lease.
fn holds(o: &Observation, s: &Settings) -> bool {
    o.cluster
        .as_ref()
        .and_then(|c| c.leader.as_ref())
        .is_some_and(|l| l.name == s.name && l.lease == o.lease && o.lease != 0)
}

fn other_holds(o: &Observation, s: &Settings) -> bool {
    o.cluster
        .as_ref()
        .and_then(|c| c.leader.as_ref())
        .is_some_and(|l| l.name != s.name)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 4096,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Rule 1: Promote, StartPrimary and Bootstrap (the ways to become a writable
    /// primary) only while the leader key names us; when the key is not held with our
    /// current lease, an AcquireLeader (key free) or RebindLeader (key ours, old lease)
    /// comes first, so the executor stops before promoting if that fails. Without etcd
    /// nothing is promoted, started as primary or acquired; while paused nothing is
    /// promoted.
    #[test]
    fn rule1_promote_only_holding_the_key(o in arb_obs(), s in arb_settings()) {
        let d = decide(&o, &s);
        let Some(c) = &o.cluster else {
            for a in &d.actions {
                prop_assert!(
                    !makes_primary(a) && !matches!(a, A::AcquireLeader | A::RebindLeader),
                    "{a:?} without etcd ({d:?})"
                );
            }
            return Ok(());
        };
        if let Some(i) = d.actions.iter().position(makes_primary) {
            let before = &d.actions[..i];
            match &c.leader {
                None => prop_assert!(before.contains(&A::AcquireLeader), "{d:?}"),
                Some(l) => {
                    prop_assert_eq!(&l.name, &s.name, "{:?}", d);
                    if !holds(&o, &s) {
                        prop_assert!(
                            before.contains(&A::RebindLeader) || before.contains(&A::AcquireLeader),
                            "{d:?}"
                        );
                    }
                }
            }
            // the operator may fail over to a named candidate while paused (Patroni too)
            let manual_to_me = c.failover.as_ref().is_some_and(|f| {
                f.candidate.as_deref() == Some(s.name.as_str()) && f.scheduled_at.is_none()
            });
            prop_assert!(!c.dynamic().pause || manual_to_me, "promoted while paused: {d:?}");
        }
    }

    /// Rule 2: without etcd a primary (or a running postgres that does not answer and
    /// was not started as a standby) is stopped first thing. With etcd, a primary
    /// while another node holds the key is stopped first thing, or the agent exits
    /// (which stops postgres). A bootstrap in progress is left alone, as in Patroni.
    #[test]
    fn rule2_fence_a_primary_without_the_key(o in arb_obs(), s in arb_settings()) {
        let d = decide(&o, &s);
        match &o.cluster {
            None => {
                let unanswering_primary = o.pg.running
                    && o.pg.in_recovery.is_none()
                    && o.memory.long_action.is_none()
                    && matches!(o.data_dir, DataDir::Initialized { standby_signal: false, .. });
                if !o.memory.paused && (o.pg.is_primary() || unanswering_primary) {
                    prop_assert_eq!(d.actions.first(), Some(&IMMEDIATE), "{:?}", d);
                }
            }
            Some(c) => {
                let bootstrapping = o.memory.long_action.is_some_and(|(k, _)| k == LongKind::Bootstrap);
                if other_holds(&o, &s) && !c.dynamic().pause && o.pg.is_primary() && !bootstrapping {
                    let exits = matches!(d.actions.as_slice(), [A::Exit { .. }]);
                    prop_assert!(d.actions.first() == Some(&IMMEDIATE) || exits, "{d:?}");
                }
            }
        }
    }

    /// Rule 9: with the fence watchdog down for good, nothing takes the key,
    /// promotes, starts as primary or bootstraps; a postgres that may be primary
    /// is stopped first thing and a key of ours let go (unless paused).
    #[test]
    fn rule9_no_primary_without_a_fence(o in arb_obs(), s in arb_settings()) {
        let mut o = o;
        o.fence_down = true;
        let d = decide(&o, &s);
        let Some(c) = &o.cluster else { return Ok(()) };
        if c.dynamic().pause {
            return Ok(());
        }
        let promotes = d.actions.iter().any(|a| matches!(
            a,
            A::AcquireLeader | A::RebindLeader | A::RaceInitialize | A::Promote
                | A::StartPrimary | A::Bootstrap
        ));
        prop_assert!(!promotes, "{d:?}");
        if crate::ha::fence::may_be_primary(&o.pg, &o.data_dir, &o.memory) {
            prop_assert_eq!(d.actions.first(), Some(&IMMEDIATE), "{:?}", d);
        }
        if c.leader_name() == Some(s.name.as_str()) {
            prop_assert!(d.actions.contains(&A::ReleaseLeader), "{d:?}");
        }
    }

    /// Rule 3: a replica takes the free key only when it is allowed to fail over, is
    /// within `maximum_lag_on_failover` of the last leader optime (counting only
    /// replayed WAL while replay is paused), has asked its peers, and no reachable
    /// failover-capable peer runs as primary, is further ahead, or is as far with a
    /// higher priority (the former leader's priority does not count). A manual
    /// failover naming this node is the operator's call and skips these checks.
    #[test]
    fn rule3_race_only_when_healthiest(o in arb_obs(), s in arb_settings()) {
        let d = decide(&o, &s);
        let Some(c) = &o.cluster else { return Ok(()) };
        if c.leader.is_some() || !o.pg.is_replica() || !d.actions.contains(&A::AcquireLeader) {
            return Ok(());
        }
        let no_primary_peer = o.peers.as_deref().unwrap_or(&[]).iter().all(|p| {
            p.name == s.name || !p.reachable || p.in_recovery
        });
        prop_assert!(no_primary_peer, "raced while a peer runs as primary: {d:?}");
        if c.failover.as_ref().and_then(|f| f.candidate.as_deref()) == Some(s.name.as_str()) {
            return Ok(());
        }
        // a switchover without a named candidate: the others race without the lag check
        let switchover_from = c.failover.as_ref().filter(|f| f.candidate.is_none()).and_then(|f| f.leader.clone());
        let cfg = c.dynamic();
        prop_assert!(!s.nofailover, "nofailover raced: {d:?}");
        prop_assert!(!cfg.pause, "raced while paused: {d:?}");
        if let (Some(optime), None) = (c.status.optime, &switchover_from) {
            let lag = optime.saturating_sub(o.pg.failover_position());
            prop_assert!(lag <= cfg.maximum_lag_on_failover, "lag {lag}: {d:?}");
        }
        let Some(peers) = &o.peers else {
            return Err(TestCaseError::fail(format!("raced without asking peers: {d:?}")));
        };
        let mine = o.pg.wal_position();
        let former = c.history.entries.last().and_then(|e| e.new_leader.clone());
        for p in peers.iter().filter(|p| {
            p.name != s.name && p.reachable && !p.nofailover && switchover_from.as_deref() != Some(p.name.as_str())
        }) {
            prop_assert!(p.in_recovery, "{} is primary: {d:?}", p.name);
            prop_assert!(p.wal_position <= mine, "{} is ahead: {d:?}", p.name);
            let better = p.wal_position > 0
                && p.wal_position == mine
                && p.failover_priority > s.failover_priority
                && former.as_deref() != Some(p.name.as_str());
            prop_assert!(!better, "{} has a higher priority: {d:?}", p.name);
        }
    }

    /// Rule 5: a stopped former primary that crashed on a timeline older than the
    /// running leader's never starts streaming: it rewinds, re-clones or stays down.
    #[test]
    fn rule5_crashed_former_primary_never_streams_diverged(o in arb_rejoin(), s in arb_settings()) {
        let d = decide(&o, &s);
        let Some(c) = &o.cluster else { return Ok(()) };
        let DataDir::Initialized { control: Some(ctl), .. } = &o.data_dir else { return Ok(()) };
        let Some(leader) = c.leader_member() else { return Ok(()) };
        let leader_primary = leader.data.role.as_deref() == Some("primary")
            && leader.data.state.as_deref() == Some("running");
        if o.pg.running || !other_holds(&o, &s) || !leader_primary || !ctl.was_primary_crashed() {
            return Ok(());
        }
        if ctl.timeline() >= leader.data.timeline.unwrap_or(0) {
            return Ok(());
        }
        for a in &d.actions {
            prop_assert!(!matches!(a, A::StartReplica(_) | A::StartPrimary), "{a:?}: {d:?}");
        }
    }

    /// While paused the agent leaves postgres alone: it never starts, promotes,
    /// rewinds, clones or re-points it.
    #[test]
    fn paused_never_touches_postgres_roles(o in arb_obs(), s in arb_settings()) {
        let d = decide(&o, &s);
        let paused = match &o.cluster {
            Some(c) => c.dynamic().pause,
            None => o.memory.paused,
        };
        let manual_to_me = o.cluster.as_ref().and_then(|c| c.failover.as_ref()).is_some_and(|f| {
            f.candidate.as_deref() == Some(s.name.as_str()) && f.scheduled_at.is_none()
        });
        if paused && !manual_to_me {
            for a in &d.actions {
                prop_assert!(
                    !makes_primary(a)
                        && !matches!(a, A::StartReplica(_) | A::Clone(_) | A::Rewind(_) | A::Follow(_)),
                    "{a:?} while paused: {d:?}"
                );
            }
        }
    }

    /// The executor spawns the first long action and stops there, and `Exit` ends
    /// the agent: either one may only come last.
    #[test]
    fn long_actions_and_exit_come_last(o in arb_obs(), s in arb_settings()) {
        let d = decide(&o, &s);
        let n = d.actions.len();
        for (i, a) in d.actions.iter().enumerate() {
            if is_long(a) || matches!(a, A::Exit { .. }) {
                prop_assert_eq!(i + 1, n, "{:?}", d);
            }
        }
        prop_assert!(!d.reason.to_string().is_empty());
    }
}

/// A quick sanity check that the generator reaches the interesting corners; a
/// property that is never exercised proves nothing.
#[test]
fn generator_covers_the_rules() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut promote, mut fence, mut race, mut rewind) = (0, 0, 0, 0);
    for _ in 0..20_000 {
        let o = arb_obs().new_tree(&mut runner).unwrap().current();
        let s = arb_settings().new_tree(&mut runner).unwrap().current();
        let d = decide(&o, &s);
        promote += d.actions.iter().any(makes_primary) as u32;
        fence += (d.actions.first() == Some(&IMMEDIATE)) as u32;
        race += (o.pg.is_replica() && d.actions.contains(&A::AcquireLeader)) as u32;
        rewind += d.actions.iter().any(|a| matches!(a, A::Rewind(_))) as u32;
    }
    assert!(promote > 50, "promote {promote}");
    assert!(fence > 50, "fence {fence}");
    assert!(race > 20, "race {race}");
    assert!(rewind > 5, "rewind {rewind}");
}
