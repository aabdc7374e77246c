//! Synchronous mode in the decision: the leader's one step per cycle (shrink the
//! `sync` key, then `synchronous_standby_names`, then grow the key), the
//! pre-promote claim, and who may race.

use std::collections::BTreeMap;

use serde_json::json;

use super::fixtures::*;
use crate::dcs::model::{Cluster, SyncState};
use crate::ha::sync::{named_standbys, NO_STANDBY};
use crate::ha::{decide, Action as A, NotHealthiest as NH, Observation, Reason as R, Walsender};

/// The primary's flush position in [`leading_sync`].
const PRIMARY_AT: u64 = 5 * SEG;

fn ws(name: &str, sync_state: &str, lag: u64) -> Walsender {
    Walsender {
        name: name.into(),
        state: "streaming".into(),
        sync_state: sync_state.into(),
        flush_lsn: Some(PRIMARY_AT - lag),
        lag,
    }
}

/// Carry out the notes of a decision the way the executor does.
fn remember(o: &mut Observation) {
    for a in decide(o, &settings()).actions {
        if let A::NoteSyncNamed(named) = a {
            o.memory.sync_named = named;
        }
    }
}

fn notes(o: &Observation) -> Vec<A> {
    decide(o, &settings())
        .actions
        .into_iter()
        .filter(|a| matches!(a, A::NoteSyncNamed(_)))
        .collect()
}

fn named(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
    entries.iter().map(|(n, l)| (n.to_string(), *l)).collect()
}

fn sync_key(c: &mut Cluster, leader: &str, standbys: &str) {
    c.sync = Some(SyncState {
        leader: Some(leader.into()),
        sync_standby: (!standbys.is_empty()).then(|| standbys.into()),
        quorum: 0,
        mod_revision: 9,
    });
}

/// We lead with two streaming replicas, synchronous mode on.
fn leading_sync(extra: serde_json::Value) -> Observation {
    let mut cfg = json!({"synchronous_mode": true});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let c = cluster()
        .config(cfg)
        .led_by_me()
        .with_member(member(ME).primary())
        .with_member(member("n2"))
        .with_member(member("n3"));
    let mut o = obs(c).pg(pg_primary(PRIMARY_AT, 1).slots(&["n2", "n3"]));
    o.pg.walsenders = vec![ws("n2", "async", 0), ws("n3", "async", 100)];
    o.pg.sync_standby_names = Some(String::new());
    o
}

fn sync_actions(o: &Observation) -> Vec<A> {
    decide(o, &settings())
        .actions
        .into_iter()
        .filter(|a| {
            matches!(
                a,
                A::WriteSync { .. } | A::DeleteSync { .. } | A::SetSyncNames(_)
            )
        })
        .collect()
}

#[test]
fn first_claims_the_key_then_names_the_best_standby_then_lists_it() {
    let mut o = leading_sync(json!({}));
    // no key yet: claim it with no standby
    assert_eq!(
        sync_actions(&o),
        vec![A::WriteSync {
            standbys: vec![],
            mod_revision: None
        }]
    );
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    // then synchronous_standby_names: n2 has less lag
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames("\"n2\"".into())]);
    // postgres says n2 is sync now, and it has flushed what the primary had
    // when it was named: record that position and list it in the key
    o.pg.sync_standby_names = Some("\"n2\"".into());
    o.pg.walsenders = vec![ws("n2", "sync", 0), ws("n3", "async", 100)];
    assert_eq!(
        notes(&o),
        vec![A::NoteSyncNamed(named(&[("n2", PRIMARY_AT)]))]
    );
    assert_eq!(
        sync_actions(&o),
        vec![A::WriteSync {
            standbys: vec!["n2".into()],
            mod_revision: Some(9)
        }]
    );
    // settled
    remember(&mut o);
    sync_key(o.cluster.as_mut().unwrap(), ME, "n2");
    assert_eq!(sync_actions(&o), vec![]);
    assert!(decide(&o, &settings()).wakeup_in.is_none());
}

#[test]
fn a_standby_that_goes_leaves_the_key_before_the_names() {
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "n2");
    o.pg.sync_standby_names = Some("\"n2\"".into());
    o.pg.walsenders = vec![ws("n3", "async", 0)]; // n2 disconnected
    assert_eq!(
        sync_actions(&o),
        vec![A::WriteSync {
            standbys: vec![],
            mod_revision: Some(9)
        }]
    );
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames("\"n3\"".into())]);
}

#[test]
fn strict_mode_without_standbys_blocks_all_commits() {
    let mut o = leading_sync(json!({"synchronous_mode_strict": true}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    o.pg.walsenders = vec![];
    // a name no member has, never '*' (any walsender, a pg_basebackup too,
    // would confirm commits)
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames(NO_STANDBY.into())]);
    // non-strict: asynchronous instead
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    o.pg.walsenders = vec![];
    o.pg.sync_standby_names = Some(NO_STANDBY.into());
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames(String::new())]);
}

#[test]
fn tags_and_lag_shape_the_choice() {
    let mut o = leading_sync(json!({"synchronous_node_count": 2, "maximum_lag_on_syncnode": 1000}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    let c = o.cluster.take().unwrap();
    let c = Cluster {
        members: vec![
            member(ME).primary(),
            member("n2").tag("nosync", json!(true)),
            member("n3").tag("sync_priority", json!(3)),
            member("n4"),
            member("n5"),
        ],
        ..c
    };
    o.cluster = Some(c);
    o.pg.walsenders = vec![
        ws("n2", "async", 0),
        ws("n3", "async", 500),
        ws("n4", "async", 10),
        ws("n5", "async", 5000),
    ];
    // n2 is nosync, n5 lags beyond maximum_lag_on_syncnode, n3 has the higher priority
    assert_eq!(
        sync_actions(&o),
        vec![A::SetSyncNames("2 (\"n3\",\"n4\")".into())]
    );
}

#[test]
fn turning_sync_off_deletes_the_key_and_clears_the_names() {
    let mut o = leading_sync(json!({"synchronous_mode": false}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "n2");
    o.pg.sync_standby_names = Some("\"n2\"".into());
    assert_eq!(
        sync_actions(&o),
        vec![
            A::DeleteSync { mod_revision: 9 },
            A::SetSyncNames(String::new())
        ]
    );
}

fn unlocked_sync(key_standbys: &str) -> Observation {
    let mut c = cluster()
        .config(json!({"synchronous_mode": true}))
        .with_member(member("n2"))
        .with_member(member("n3"));
    sync_key(&mut c, "n2", key_standbys);
    let mut o = obs(c)
        .pg(pg_replica(5 * SEG, 5 * SEG, 1))
        .data(data_standby());
    o.peers = Some(vec![]);
    o
}

#[test]
fn only_a_listed_sync_standby_races_and_it_claims_the_key_before_promoting() {
    let o = unlocked_sync("n3");
    let d = decide(&o, &settings());
    assert_eq!(d.reason, R::NotHealthiest(NH::NotSynchronous));
    let o = unlocked_sync("n1");
    let d = decide(&o, &settings());
    assert_eq!(d.reason, R::PromotedByAcquiringLock);
    assert_eq!(
        d.actions,
        vec![
            A::AcquireLeader,
            A::SetSyncNames(NO_STANDBY.into()),
            A::WriteSync {
                standbys: vec![],
                mod_revision: Some(9)
            },
            A::Promote,
        ]
    );
}

#[test]
fn an_async_peer_ahead_does_not_stop_the_sync_standby() {
    let mut o = unlocked_sync("n1");
    let mut ahead = crate::ha::PeerStatus {
        name: "n3".into(),
        reachable: true,
        in_recovery: true,
        wal_position: 9 * SEG,
        timeline: Some(1),
        nofailover: false,
        failover_priority: 1,
    };
    o.peers = Some(vec![ahead.clone()]);
    assert_eq!(decide(&o, &settings()).reason, R::PromotedByAcquiringLock);
    // but a synchronous peer that is ahead wins
    sync_key(o.cluster.as_mut().unwrap(), "n2", "n1,n3");
    ahead.name = "n3".into();
    o.peers = Some(vec![ahead]);
    assert_eq!(
        decide(&o, &settings()).reason,
        R::NotHealthiest(NH::Ahead("n3".into()))
    );
}

#[test]
fn departed_member_slot_is_kept_until_member_slots_ttl() {
    // n3 left the cluster 100 s ago; its slot stays (ttl 1800 by default)
    let c = cluster()
        .led_by_me()
        .with_member(member(ME).primary())
        .with_member(member("n2"));
    let mut o = obs(c).pg(pg_primary(5 * SEG, 1).slots(&["n2", "n3"]));
    o.now = 1000.0;
    o.memory.slot_seen.insert("n2".into(), 1000.0);
    o.memory.slot_seen.insert("n3".into(), 900.0);
    let d = decide(&o, &settings());
    assert!(
        d.actions.contains(&A::WriteRetainSlots(vec!["n3".into()])),
        "{d:?}"
    );
    assert!(
        !d.actions.iter().any(|a| matches!(a, A::SyncSlots { .. })),
        "{d:?}"
    );
    // with member_slots_ttl 60 it is dropped
    let mut o2 = o.clone();
    o2.cluster.as_mut().unwrap().config = Some(config_of(json!({"member_slots_ttl": 60})));
    o2.cluster.as_mut().unwrap().leader = o.cluster.as_ref().unwrap().leader.clone();
    let d = decide(&o2, &settings());
    assert!(
        d.actions.contains(&A::SyncSlots {
            create: vec![],
            drop: vec!["n3".into()]
        }),
        "{d:?}"
    );
    // a new leader creates the slots its predecessor kept
    let mut o3 = o.clone();
    o3.memory.slot_seen.clear();
    o3.memory.slot_seen.insert("n3".into(), 1000.0);
    o3.pg.slots = Some(vec!["n2".into()]);
    o3.cluster.as_mut().unwrap().status.retain_slots = vec!["n3".into()];
    let d = decide(&o3, &settings());
    assert!(
        d.actions.contains(&A::SyncSlots {
            create: vec!["n3".into()],
            drop: vec![]
        }),
        "{d:?}"
    );
}

#[test]
fn an_equally_good_replica_does_not_displace_the_synchronous_standby() {
    // n3 is synchronous and listed; n2 comes back, as close (lag 0) and first by
    // name: nothing changes (a change would empty the key for a cycle or two,
    // when no failover is possible)
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "n3");
    o.pg.sync_standby_names = Some("\"n3\"".into());
    o.pg.walsenders = vec![ws("n2", "async", 0), ws("n3", "sync", 0)];
    assert_eq!(sync_actions(&o), vec![]);
    // a higher sync_priority still wins
    let c = o.cluster.take().unwrap();
    o.cluster = Some(c.with_member(member("n2").tag("sync_priority", json!(5))));
    assert_eq!(
        sync_actions(&o),
        vec![A::WriteSync {
            standbys: vec![],
            mod_revision: Some(9)
        }]
    );
}

// ---- admission (safety rule 8)

/// n2 was the synchronous standby and is gone; n3 is named now, and its WAL
/// receiver is frozen: it shows `streaming` and `sync`, flushed to 3 segments
/// while the primary acknowledged up to 5.
fn stalled_n3_named() -> Observation {
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    o.pg.sync_standby_names = Some("\"n3\"".into());
    o.pg.walsenders = vec![ws("n3", "sync", 2 * SEG)];
    o
}

#[test]
fn a_stalled_standby_named_but_behind_is_not_admitted() {
    let mut o = stalled_n3_named();
    // the first probe that shows it named records the primary's flush position
    assert_eq!(
        notes(&o),
        vec![A::NoteSyncNamed(named(&[("n3", PRIMARY_AT)]))]
    );
    assert_eq!(sync_actions(&o), vec![]);
    remember(&mut o);
    // cycle after cycle: `sync` in pg_stat_replication, but behind the record
    for _ in 0..3 {
        let d = decide(&o, &settings());
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, A::WriteSync { .. } | A::NoteSyncNamed(_))),
            "{d:?}"
        );
    }
    // the primary moves on (commits wait for n3 now); n3 resumes and reaches
    // the recorded position: admitted, though still behind the current one
    o.pg.wal_lsn = Some(PRIMARY_AT + SEG);
    o.pg.walsenders = vec![Walsender {
        flush_lsn: Some(PRIMARY_AT),
        lag: SEG,
        ..ws("n3", "sync", 0)
    }];
    assert_eq!(notes(&o), vec![]);
    assert_eq!(
        sync_actions(&o),
        vec![A::WriteSync {
            standbys: vec!["n3".into()],
            mod_revision: Some(9)
        }]
    );
}

#[test]
fn a_caught_up_standby_is_admitted_in_the_cycle_that_records_it() {
    let mut o = stalled_n3_named();
    o.pg.walsenders = vec![ws("n3", "sync", 0)];
    let d = decide(&o, &settings());
    let sync: Vec<&A> = d
        .actions
        .iter()
        .filter(|a| matches!(a, A::NoteSyncNamed(_) | A::WriteSync { .. }))
        .collect();
    // the note first: the executor stops at the first failure
    assert_eq!(
        sync,
        vec![
            &A::NoteSyncNamed(named(&[("n3", PRIMARY_AT)])),
            &A::WriteSync {
                standbys: vec!["n3".into()],
                mod_revision: Some(9)
            }
        ]
    );
}

#[test]
fn no_flush_position_means_not_admitted_nor_picked() {
    let mut o = stalled_n3_named();
    o.pg.walsenders[0].flush_lsn = None;
    remember(&mut o);
    // not a candidate either: synchronous_standby_names goes empty (non-strict)
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames(String::new())]);
}

#[test]
fn the_position_is_recorded_from_a_probe_that_shows_the_name() {
    // the cycle that names n2 records nothing: postgres has not reloaded yet
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames("\"n2\"".into())]);
    assert_eq!(notes(&o), vec![]);
    // a recorded position is kept while the name stays, even as the primary moves
    o.memory.sync_named = named(&[("n2", 3 * SEG)]);
    o.pg.sync_standby_names = Some("\"n2\"".into());
    assert_eq!(notes(&o), vec![]);
    // and dropped once it is no longer named
    o.pg.sync_standby_names = Some("\"n3\"".into());
    o.pg.walsenders = vec![ws("n3", "async", 0)];
    assert_eq!(
        notes(&o),
        vec![A::NoteSyncNamed(named(&[("n3", PRIMARY_AT)]))]
    );
}

#[test]
fn recorded_positions_are_forgotten_when_postgres_is_not_primary() {
    // stopped, or a replica: after a restart, demotion or promotion the
    // standbys are named and recorded afresh
    let c = cluster()
        .config(json!({"synchronous_mode": true}))
        .led_by_me();
    let o = obs(c)
        .data(data_with(control("in production", 3 * SEG, 1), false))
        .mem(|m| m.sync_named = named(&[("n2", SEG)]));
    let d = decide(&o, &settings());
    assert!(
        d.actions.contains(&A::NoteSyncNamed(BTreeMap::new())),
        "{d:?}"
    );
    // and a crashed primary restarts with commits held, never with '*'
    assert_eq!(d.reason, R::StartingPrimaryAfterFailure);
    assert!(
        d.actions.contains(&A::SetSyncNames(NO_STANDBY.into())),
        "{d:?}"
    );
}

#[test]
fn a_member_already_in_the_key_stays_after_an_agent_restart() {
    // the agent restarted (empty memory) while postgres kept running; n2 is in
    // the key, named and sync: it was admitted before and stays, while the
    // position is recorded again
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "n2");
    o.pg.sync_standby_names = Some("\"n2\"".into());
    o.pg.walsenders = vec![ws("n2", "sync", SEG), ws("n3", "async", SEG)];
    assert_eq!(sync_actions(&o), vec![]);
    assert_eq!(
        notes(&o),
        vec![A::NoteSyncNamed(named(&[("n2", PRIMARY_AT)]))]
    );
}

#[test]
fn a_star_left_in_the_names_admits_nobody() {
    // e.g. written by an older agent: any walsender confirms, so `sync` says
    // nothing about which one has the acknowledged commits
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    o.pg.sync_standby_names = Some("*".into());
    o.pg.walsenders = vec![ws("n2", "sync", 0), ws("n3", "potential", 0)];
    assert_eq!(notes(&o), vec![]);
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames("\"n2\"".into())]);
}

#[test]
fn turning_sync_off_forgets_the_recorded_positions() {
    let mut o = leading_sync(json!({"synchronous_mode": false}));
    o.memory.sync_named = named(&[("n2", SEG)]);
    o.pg.sync_standby_names = Some("\"n2\"".into());
    assert_eq!(notes(&o), vec![A::NoteSyncNamed(BTreeMap::new())]);
}

#[test]
fn nofailover_members_are_chosen_last() {
    // n2 is closest and has the higher sync_priority, but may not fail over
    let mut o = leading_sync(json!({}));
    sync_key(o.cluster.as_mut().unwrap(), ME, "");
    let c = o.cluster.take().unwrap();
    let c = Cluster {
        members: vec![
            member(ME).primary(),
            member("n2")
                .tag("nofailover", json!(true))
                .tag("sync_priority", json!(5)),
            member("n3"),
        ],
        ..c
    };
    o.cluster = Some(c);
    o.pg.walsenders = vec![ws("n2", "async", 0), ws("n3", "async", SEG)];
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames("\"n3\"".into())]);
    // failover_priority 0 means the same
    let c = o.cluster.take().unwrap();
    let c = Cluster {
        members: vec![
            member(ME).primary(),
            member("n2").tag("failover_priority", json!(0)),
            member("n3"),
        ],
        ..c
    };
    o.cluster = Some(c);
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames("\"n3\"".into())]);
    // still chosen when nobody else can be
    o.pg.walsenders = vec![ws("n2", "async", 0)];
    assert_eq!(sync_actions(&o), vec![A::SetSyncNames("\"n2\"".into())]);
}

#[test]
fn synchronous_standby_names_are_parsed_as_postgres_does() {
    let n = |s: &str| named_standbys(s);
    assert_eq!(n(""), Vec::<String>::new());
    assert_eq!(n("\"n2\""), vec!["n2"]);
    assert_eq!(n("2 (\"n2\",\"n3\")"), vec!["n2", "n3"]);
    assert_eq!(n("FIRST 1 (a, \"b c\")"), vec!["a", "b c"]);
    assert_eq!(n("any 2(a,b)"), vec!["a", "b"]);
    assert_eq!(n(" a , b "), vec!["a", "b"]);
    assert_eq!(n("\"x\"\"y\""), vec!["x\"y"]);
    assert_eq!(n("first"), vec!["first"]);
    // nobody in particular
    assert_eq!(n("*"), Vec::<String>::new());
    assert_eq!(n("2 (a, *)"), Vec::<String>::new());
    assert_eq!(n(NO_STANDBY), Vec::<String>::new());
    // not parsable: nobody
    assert_eq!(n("a,"), Vec::<String>::new());
    assert_eq!(n("1"), Vec::<String>::new());
    assert_eq!(n("2 (,)"), Vec::<String>::new());
    assert_eq!(n("a b"), Vec::<String>::new());
    assert_eq!(n("\"open"), Vec::<String>::new());
    // what we render reads back
    let names = vec!["n2".to_string(), "we\"ird".to_string()];
    assert_eq!(n(&crate::ha::sync::render_names(&names, 2)), names);
}
