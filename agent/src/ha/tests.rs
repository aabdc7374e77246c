//! Tests of the HA decision.
//!
//! - this file: a table with one case per branch of [`decide`], each naming the exact
//!   [`Reason`] and action list;
//! - `props`: safety rules 1, 2, 3 and 5 (and "paused means hands off") as
//!   properties over random observations;
//! - `sim`: three nodes on a fake etcd and fake postgres, stepped until nothing changes.
//!
//! Builders live in `fixtures`; the node under test is always `n1`.

mod fence_cases;
mod fixtures;
mod props;
mod sim;
mod sync_cases;
mod sync_sim;

use serde_json::json;

use super::{decide, Action as A, DataDir, LongKind, NotHealthiest as NH, Reason as R, StopMode};
use super::{Observation, Settings};
use crate::dcs::model::Cluster;
use fixtures::*;

const IMMEDIATE: A = A::Stop(StopMode::Immediate);

fn check(o: &Observation, s: &Settings, reason: R, actions: Vec<A>) {
    let d = decide(o, s);
    assert_eq!(
        (&d.reason, &d.actions),
        (&reason, &actions),
        "\nobservation: {o:#?}"
    );
    assert!(!d.reason.to_string().is_empty());
}

/// `name: observation, settings => reason, [actions];` becomes one `#[test]`.
macro_rules! cases {
    ($($name:ident: $obs:expr, $s:expr => $reason:expr, [$($a:expr),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                check(&$obs, &$s, $reason, vec![$($a),*]);
            }
        )*
    };
}

fn nofailover() -> Settings {
    Settings {
        nofailover: true,
        ..settings()
    }
}

fn replicatefrom(name: &str) -> Settings {
    Settings {
        replicatefrom: Some(name.into()),
        ..settings()
    }
}

// ------------------------------------------------------------------ shared setups

/// `n2` leads on timeline 2; timeline 1 ended at `3 * SEG`; pg_rewind allowed.
fn diverged_cluster() -> Cluster {
    cluster()
        .config(json!({"postgresql": {"use_pg_rewind": true}}))
        .led_by_n2(2)
        .history(1, 3 * SEG, "n2")
}

/// We are a stopped former primary on timeline 1 (crashed at `4 * SEG`).
fn crashed_former_primary() -> Observation {
    obs(diverged_cluster()).data(data_with(control("in production", 4 * SEG, 1), false))
}

/// Nobody holds the key; we replicate at `5 * SEG`, the last leader optime; both
/// peers are behind.
fn unlocked() -> Observation {
    let c = cluster()
        .optime(5 * SEG)
        .with_member(member(ME))
        .with_member(member("n2"))
        .with_member(member("n3"));
    obs(c)
        .pg(pg_replica(5 * SEG, 5 * SEG, 1))
        .peers(vec![peer("n2", 4 * SEG), peer("n3", 4 * SEG)])
}

fn unlocked_with(f: impl FnOnce(&mut Observation)) -> Observation {
    let mut o = unlocked();
    f(&mut o);
    o
}

/// We hold the key and run as primary; `n2` and `n3` are members.
fn leading() -> Observation {
    let c = cluster()
        .led_by_me()
        .with_member(member(ME).primary())
        .with_member(member("n2"))
        .with_member(member("n3"));
    obs(c).pg(pg_primary(5 * SEG, 1).slots(&["n2", "n3"]))
}

/// `n2` leads on timeline 1; we are a streaming replica following it.
fn following_n2() -> Observation {
    obs(cluster().led_by_n2(1).with_member(member("n3")))
        .pg(pg_replica(4 * SEG, 4 * SEG, 1))
        .data(data_standby())
        .following(Some("n2"))
}

/// `n2` was promoted to timeline 2 at `3 * SEG`; we run on timeline 1, past that
/// point, and cannot stream.
fn replica_past_switch() -> Observation {
    obs(cluster().led_by_n2(2).history(1, 3 * SEG, "n2"))
        .pg(pg_replica(4 * SEG, 4 * SEG, 1).receiver(None))
        .data(data_standby())
        .following(Some("n2"))
}

fn with_cluster(mut o: Observation, f: impl FnOnce(Cluster) -> Cluster) -> Observation {
    o.cluster = o.cluster.take().map(f);
    o
}

// ------------------------------------------------------------------ the table

cases! {
    // ---- etcd unreachable: a primary fences itself (rule 2)
    dcs_unavailable_primary_demotes:
        obs_no_dcs().pg(pg_primary(5 * SEG, 1)), settings()
        => R::DemotedDcsUnavailable, [IMMEDIATE, A::StartReplica(None)];
    dcs_unavailable_while_promoting_demotes:
        obs_no_dcs().pg(pg_replica(SEG, SEG, 1)).long(LongKind::Promote), settings()
        => R::DemotedDcsUnavailable, [IMMEDIATE, A::StartReplica(None)];
    dcs_unavailable_unanswering_primary_demotes:
        obs_no_dcs().pg(pg_not_answering()).data(data_ok()), settings()
        => R::DemotedDcsUnavailable, [IMMEDIATE, A::StartReplica(None)];
    dcs_unavailable_unanswering_standby_does_nothing:
        obs_no_dcs().pg(pg_not_answering()).data(data_standby()), settings()
        => R::DcsUnavailable, [];
    dcs_unavailable_replica_does_nothing:
        obs_no_dcs().pg(pg_replica(SEG, SEG, 1)), settings()
        => R::DcsUnavailable, [];
    dcs_unavailable_stopped_does_nothing:
        obs_no_dcs(), settings()
        => R::DcsUnavailable, [];
    dcs_unavailable_paused_does_nothing:
        obs_no_dcs().pg(pg_primary(SEG, 1)).mem(|m| m.paused = true), settings()
        => R::DcsUnavailablePaused, [];

    // ---- a long action is running
    long_action_with_lock_keeps_it:
        obs(cluster().led_by_me()).pg(pg_replica(SEG, SEG, 1)).long(LongKind::Promote), settings()
        => R::LongActionWithLock(LongKind::Promote), [];
    long_action_with_stale_lock_rebinds:
        obs(cluster().leader(ME, OLD_LEASE)).long(LongKind::StartPrimary), settings()
        => R::LongActionWithLock(LongKind::StartPrimary), [A::RebindLeader];
    promote_without_lock_stops:
        obs(cluster().led_by_n2(1)).pg(pg_replica(SEG, SEG, 1)).long(LongKind::Promote), settings()
        => R::LostLockDuring(LongKind::Promote), [IMMEDIATE];
    start_primary_without_lock_stops:
        obs(cluster()).long(LongKind::StartPrimary), settings()
        => R::LostLockDuring(LongKind::StartPrimary), [IMMEDIATE];
    primary_during_other_long_action_without_lock_stops:
        obs(cluster().led_by_n2(1)).pg(pg_primary(SEG, 1)).long(LongKind::Stop), settings()
        => R::LostLockDuring(LongKind::Stop), [IMMEDIATE];
    replica_long_action_without_lock_waits:
        obs(cluster().led_by_n2(1)).long(LongKind::StartReplica), settings()
        => R::LongActionInProgress(LongKind::StartReplica), [];
    bootstrap_in_progress_is_left_alone:
        obs(cluster().led_by_n2(1)).pg(pg_primary(SEG, 1)).long(LongKind::Bootstrap), settings()
        => R::LongActionInProgress(LongKind::Bootstrap), [];
    paused_promote_without_lock_is_left_alone:
        obs(cluster().paused().led_by_n2(1)).long(LongKind::Promote), settings()
        => R::LongActionInProgress(LongKind::Promote), [];

    // ---- empty data directory: bootstrap, clone or wait
    bootstrap_race:
        obs(empty_cluster()).data(DataDir::Empty), settings()
        => R::BootstrapNewCluster, [A::RaceInitialize, A::AcquireLeader, A::Bootstrap];
    nofailover_never_bootstraps:
        obs(empty_cluster()).data(DataDir::Empty), nofailover()
        => R::WaitingForLeaderToBootstrap, [];
    clone_from_running_leader:
        obs(cluster().led_by_n2(1).with_member(member("n3"))).data(DataDir::Empty), settings()
        => R::Cloning { from: "n2".into(), leader: true }, [A::Clone(src("n2"))];
    clone_from_clonefrom_replica:
        obs(cluster().led_by_n2(1).with_member(member("n3").tag("clonefrom", json!(true))))
            .data(DataDir::Empty), settings()
        => R::Cloning { from: "n3".into(), leader: false }, [A::Clone(src("n3"))];
    clonefrom_replica_not_running_falls_back_to_leader:
        obs(cluster().led_by_n2(1).with_member(member("n3").stopped().tag("clonefrom", json!("on"))))
            .data(DataDir::Empty), settings()
        => R::Cloning { from: "n2".into(), leader: true }, [A::Clone(src("n2"))];
    waiting_for_leader_to_bootstrap:
        obs(empty_cluster().initialize(Some("")).with_member(member("n2").primary().stopped())
            .leader("n2", OLD_LEASE)).data(DataDir::Empty), settings()
        => R::WaitingForLeaderToBootstrap, [];
    initialized_cluster_without_leader_waits:
        obs(cluster()).data(DataDir::Empty), settings()
        => R::WaitingForLeaderToBootstrap, [];
    leader_without_conn_url_cannot_be_cloned:
        obs(cluster().with_member(member("n2").primary().no_conn_url()).leader("n2", OLD_LEASE))
            .data(DataDir::Empty), settings()
        => R::WaitingForLeaderToBootstrap, [];
    empty_data_dir_paused_waits:
        obs(cluster().paused().led_by_n2(1)).data(DataDir::Empty), settings()
        => R::PausedEmptyDataDir, [];
    empty_data_dir_while_leader_releases:
        obs(cluster().led_by_me()).data(DataDir::Empty), settings()
        => R::ReleasedLockEmptyDataDir, [A::ReleaseLeader];
    empty_data_dir_while_running_stops:
        obs(cluster().led_by_me()).data(DataDir::Empty).pg(pg_primary(SEG, 1)), settings()
        => R::DataDirEmptyWhileRunning, [IMMEDIATE];

    // ---- after our bootstrap: publish it
    publishes_after_bootstrap:
        obs(empty_cluster().initialize(Some("")).with_member(member(ME).primary()).led_by_me())
            .pg(pg_primary(SEG, 1)).mem(|m| m.bootstrapped_sysid = Some(SYSID.into())), settings()
        => R::InitializedNewCluster,
           [A::SetInitialize(SYSID.into()), A::SeedConfig(settings().bootstrap_config)];
    publishes_after_bootstrap_with_stale_lock:
        obs(cluster().no_config().leader(ME, OLD_LEASE))
            .pg(pg_primary(SEG, 1)).mem(|m| m.bootstrapped_sysid = Some(SYSID.into())), settings()
        => R::InitializedNewCluster,
           [A::RebindLeader, A::SeedConfig(settings().bootstrap_config)];
    bootstrapped_primary_retakes_free_lock:
        obs(empty_cluster().initialize(Some("")))
            .pg(pg_primary(SEG, 1)).mem(|m| m.bootstrapped_sysid = Some(SYSID.into())), settings()
        => R::InitializedNewCluster,
           [A::AcquireLeader, A::SetInitialize(SYSID.into()), A::SeedConfig(settings().bootstrap_config)];
    published_bootstrap_leads_normally:
        obs(cluster().led_by_me().with_member(member(ME).primary()))
            .pg(pg_primary(SEG, 1)).mem(|m| m.bootstrapped_sysid = Some(SYSID.into())), settings()
        => R::LeaderWithLock(ME.into()), [A::WriteStatus { optime: SEG }];
    stale_bootstrap_note_does_not_skip_health_checks:
        with_cluster(unlocked(), |c| c.no_config())
            .mem(|m| m.bootstrapped_sysid = Some(SYSID.into()))
            .peers(vec![peer("n2", 6 * SEG)]), settings()
        => R::NotHealthiest(NH::Ahead("n2".into())), [];
    failed_bootstrap_gives_up:
        obs(empty_cluster().initialize(Some("")).led_by_me())
            .last_result(LongKind::Bootstrap, false, "initdb: exit status 1"), settings()
        => R::BootstrapFailed("initdb: exit status 1".into()),
           [A::ReleaseLeader, A::DeleteInitialize, A::RemoveDataDir,
            A::Exit { code: 1, message: "failed to bootstrap the cluster: initdb: exit status 1".into() }];
    failed_bootstrap_stops_postgres_first:
        obs(empty_cluster().initialize(Some("")).led_by_me()).pg(pg_not_answering())
            .last_result(LongKind::Bootstrap, false, "create users"), settings()
        => R::BootstrapFailed("create users".into()),
           [IMMEDIATE, A::ReleaseLeader, A::DeleteInitialize, A::RemoveDataDir,
            A::Exit { code: 1, message: "failed to bootstrap the cluster: create users".into() }];
    failed_bootstrap_without_lock_keeps_others_initialize:
        obs(cluster()).last_result(LongKind::Bootstrap, false, "x"), settings()
        => R::BootstrapFailed("x".into()),
           [A::RemoveDataDir, A::Exit { code: 1, message: "failed to bootstrap the cluster: x".into() }];

    // ---- the data directory must be usable and ours
    invalid_data_dir_waits:
        obs(cluster().led_by_n2(1)).data(DataDir::Invalid("/d: not a data directory".into())), settings()
        => R::DataDirInvalid("/d: not a data directory".into()), [];
    invalid_data_dir_releases_the_lock:
        obs(cluster().led_by_me()).data(DataDir::Invalid("e".into())), settings()
        => R::DataDirInvalid("e".into()), [A::ReleaseLeader];
    invalid_data_dir_stops_postgres:
        obs(cluster().led_by_n2(1)).data(DataDir::Invalid("e".into())).pg(pg_not_answering()), settings()
        => R::DataDirInvalid("e".into()), [IMMEDIATE];
    invalid_sysid:
        obs(cluster().led_by_n2(1))
            .data(DataDir::Initialized { sysid: Some("123".into()), control: None, standby_signal: false }),
        settings()
        => R::InvalidSysid, [];
    missing_sysid_is_invalid:
        obs(cluster().led_by_n2(1))
            .data(DataDir::Initialized { sysid: None, control: None, standby_signal: false }),
        settings()
        => R::InvalidSysid, [];
    sysid_mismatch_exits:
        obs(cluster().led_by_n2(1))
            .data(DataDir::Initialized { sysid: Some(OTHER_SYSID.into()), control: None, standby_signal: false }),
        settings()
        => R::SysidMismatch { cluster: SYSID.into(), local: OTHER_SYSID.into() },
           [A::Exit { code: 1, message: format!(
               "system ID mismatch: node n1 belongs to a different cluster: {SYSID} != {OTHER_SYSID}") }];
    sysid_mismatch_paused_releases_lock:
        obs(cluster().paused().led_by_me())
            .data(DataDir::Initialized { sysid: Some(OTHER_SYSID.into()), control: None, standby_signal: false }),
        settings()
        => R::SysidMismatchPaused, [A::ReleaseLeader];
    unlocked_node_with_data_claims_initialize:
        obs(cluster().initialize(None)).data(data_with(control("shut down", SEG, 1), false)), settings()
        => R::StartingAsSecondary, [A::SetInitialize(SYSID.into()), A::StartReplica(None)];
    leader_publishes_missing_initialize:
        obs(cluster().initialize(Some("garbage")).led_by_me())
            .data(data_with(control("shut down", SEG, 1), false)), settings()
        => R::StartingPrimaryAfterFailure, [A::SetInitialize(SYSID.into()), A::StartPrimary];

    // ---- postgres is not running
    start_primary_with_lock:
        obs(cluster().led_by_me()).data(data_with(control("shut down", 3 * SEG, 1), false)), settings()
        => R::StartingPrimaryAfterFailure, [A::StartPrimary];
    start_primary_with_stale_lock_rebinds_first:
        obs(cluster().leader(ME, OLD_LEASE)).data(data_with(control("in production", 3 * SEG, 1), false)),
        settings()
        => R::StartingPrimaryAfterFailure, [A::RebindLeader, A::StartPrimary];
    replica_data_with_lock_starts_readonly:
        obs(cluster().led_by_me()).data(data_with(control("shut down in recovery", 3 * SEG, 1), true)),
        settings()
        => R::StartingReadonlyWithLock, [A::StartReplica(None)];
    standby_signal_with_lock_starts_readonly:
        obs(cluster().led_by_me()).data(data_with(control("shut down", 3 * SEG, 1), true)), settings()
        => R::StartingReadonlyWithLock, [A::StartReplica(None)];
    three_failed_primary_starts_release_the_lock:
        obs(cluster().led_by_me()).data(data_with(control("shut down", 3 * SEG, 1), false))
            .mem(|m| m.failed_primary_starts = 3), settings()
        => R::ReleasedLockStartFailed, [A::ReleaseLeader];
    not_running_without_lock_starts_replica_of_leader:
        obs(cluster().led_by_n2(1)).data(data_with(control("shut down in recovery", 2 * SEG, 1), true)),
        settings()
        => R::StartingAsSecondary, [A::StartReplica(Some(src("n2")))];
    not_running_unlocked_starts_replica_without_upstream:
        obs(cluster()).data(data_with(control("shut down", 2 * SEG, 1), false)), settings()
        => R::StartingAsSecondary, [A::StartReplica(None)];
    not_running_uses_replicatefrom:
        obs(cluster().led_by_n2(1).with_member(member("n3")))
            .data(data_with(control("shut down in recovery", 2 * SEG, 1), true)),
        replicatefrom("n3")
        => R::StartingAsSecondary, [A::StartReplica(Some(src("n3")))];
    paused_not_running_does_not_start:
        obs(cluster().paused().led_by_n2(1)).data(data_with(control("shut down", 2 * SEG, 1), false)),
        settings()
        => R::PausedNotRunning, [];
    paused_not_running_with_lock_releases:
        obs(cluster().paused().led_by_me()).data(data_with(control("shut down", 2 * SEG, 1), false)),
        settings()
        => R::PausedRemovedLockNotRunning, [A::ReleaseLeader];

    // ---- rejoining a leader on a newer timeline (rule 5)
    crashed_former_primary_rewinds:
        crashed_former_primary(), settings()
        => R::RunningRewind { from: "n2".into() }, [A::Rewind(src("n2"))];
    crashed_former_primary_below_switch_still_rewinds:
        obs(diverged_cluster()).data(data_with(control("in production", 2 * SEG, 1), false)), settings()
        => R::RunningRewind { from: "n2".into() }, [A::Rewind(src("n2"))];
    local_use_pg_rewind_overrides_dynamic:
        with_cluster(crashed_former_primary(), |c| c.config(json!({}))),
        Settings { use_pg_rewind_local: Some(true), ..settings() }
        => R::RunningRewind { from: "n2".into() }, [A::Rewind(src("n2"))];
    rewind_source_is_the_leader_even_with_replicatefrom:
        with_cluster(crashed_former_primary(), |c| c.with_member(member("n3"))),
        replicatefrom("n3")
        => R::RunningRewind { from: "n2".into() }, [A::Rewind(src("n2"))];
    diverged_without_rewind_reclones_when_allowed:
        crashed_former_primary(),
        Settings {
            use_pg_rewind_local: Some(false),
            remove_data_directory_on_diverged_timelines: true,
            ..settings()
        }
        => R::ReinitializingDiverged, [A::RemoveDataDir];
    diverged_without_rewind_stays_stopped:
        crashed_former_primary(), Settings { use_pg_rewind_local: Some(false), ..settings() }
        => R::DivergedNoRewind, [];
    rewind_failed_reclones_when_allowed:
        crashed_former_primary().mem(|m| m.rewind_failed = Some("no common ancestor".into())),
        Settings { remove_data_directory_on_rewind_failure: true, ..settings() }
        => R::ReinitializingAfterRewindFailure, [A::RemoveDataDir];
    rewind_failed_stays_stopped:
        crashed_former_primary().mem(|m| m.rewind_failed = Some("no common ancestor".into())), settings()
        => R::RewindFailedStayStopped("no common ancestor".into()), [];
    clean_former_primary_before_switch_streams:
        obs(diverged_cluster()).data(data_with(control("shut down", 3 * SEG - 0x28, 1), false)), settings()
        => R::StartingAsSecondary, [A::StartReplica(Some(src("n2")))];
    clean_former_primary_at_switch_rewinds:
        obs(diverged_cluster()).data(data_with(control("shut down", 3 * SEG, 1), false)), settings()
        => R::RunningRewind { from: "n2".into() }, [A::Rewind(src("n2"))];
    stopped_replica_at_switch_streams:
        obs(diverged_cluster()).data(data_with(control("shut down in recovery", 3 * SEG, 1), true)),
        settings()
        => R::StartingAsSecondary, [A::StartReplica(Some(src("n2")))];
    stopped_replica_past_switch_rewinds:
        obs(diverged_cluster()).data(data_with(control("shut down in recovery", 3 * SEG + 1, 1), true)),
        settings()
        => R::RunningRewind { from: "n2".into() }, [A::Rewind(src("n2"))];
    local_timeline_ahead_of_leader_rewinds:
        obs(diverged_cluster()).data(data_with(control("shut down", SEG, 3), false)), settings()
        => R::RunningRewind { from: "n2".into() }, [A::Rewind(src("n2"))];
    same_timeline_as_leader_streams:
        obs(diverged_cluster()).data(data_with(control("in production", 9 * SEG, 2), false)), settings()
        => R::StartingAsSecondary, [A::StartReplica(Some(src("n2")))];
    history_not_yet_published_waits:
        obs(cluster().led_by_n2(2)).data(data_with(control("shut down", SEG, 1), false)), settings()
        => R::WaitingForLeaderHistory, [];
    leader_not_running_is_not_compared:
        obs(cluster().with_member(member("n2").primary().stopped().timeline(2)).leader("n2", OLD_LEASE))
            .data(data_with(control("in production", 4 * SEG, 1), false)), settings()
        => R::StartingAsSecondary, [A::StartReplica(Some(src("n2")))];

    // ---- nobody holds the key: race only when healthiest (rule 3)
    healthiest_replica_takes_over:
        unlocked(), settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    takeover_clears_the_failover_key:
        with_cluster(unlocked(), |c| c.failover(Some("n2"), None)), settings()
        => R::PromotedByAcquiringLock,
           [A::AcquireLeader, A::ClearFailover { mod_revision: 42 }, A::Promote];
    unlocked_primary_takes_the_lock_back:
        unlocked().pg(pg_primary(5 * SEG, 1)), settings()
        => R::AcquiredLockAsPrimary, [A::AcquireLeader];
    unlocked_primary_behind_cluster_timeline_demotes:
        with_cluster(unlocked().pg(pg_primary(5 * SEG, 1)), |c| c.history(1, SEG, "n2")),
        settings()
        => R::DemotingNotHealthiest(NH::TimelineBehind { mine: 1, cluster: 2 }),
           [IMMEDIATE, A::StartReplica(None)];
    paused_unlocked_primary_behind_timeline_stays:
        with_cluster(unlocked().pg(pg_primary(5 * SEG, 1)), |c| c.paused().history(1, SEG, "n2")),
        settings()
        => R::NotHealthiest(NH::TimelineBehind { mine: 1, cluster: 2 }), [];
    failed_pre_promote_backs_off_for_ttl:
        unlocked_with(|o| o.memory.pre_promote_failed_at = Some(o.now - 29.0)), settings()
        => R::NotHealthiest(NH::PrePromoteFailed), [];
    failed_pre_promote_races_again_after_ttl:
        unlocked_with(|o| o.memory.pre_promote_failed_at = Some(o.now - 30.0)), settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    lagging_replica_does_not_race:
        unlocked().pg(pg_replica(3 * SEG, 3 * SEG, 1)), settings()
        => R::NotHealthiest(NH::Lagging { lag: 2 * SEG, max: 1_048_576 }), [];
    lag_within_configured_maximum_races:
        with_cluster(unlocked().pg(pg_replica(3 * SEG, 3 * SEG, 1)).peers(vec![peer("n2", SEG)]),
            |c| c.config(json!({"maximum_lag_on_failover": 2 * SEG}))),
        settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    received_but_not_replayed_counts_as_received:
        unlocked().pg(pg_replica(5 * SEG, 3 * SEG, 1)), settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    paused_replay_counts_only_replayed:
        unlocked().pg(pg_replica(5 * SEG, 3 * SEG, 1).replay_paused()), settings()
        => R::NotHealthiest(NH::Lagging { lag: 2 * SEG, max: 1_048_576 }), [];
    peer_ahead_wins:
        unlocked().peers(vec![peer("n2", 5 * SEG + 1), peer("n3", SEG)]), settings()
        => R::NotHealthiest(NH::Ahead("n2".into())), [];
    peer_still_primary_blocks:
        unlocked().peers(vec![peer("n3", SEG), peer("n2", SEG).primary()]), settings()
        => R::NotHealthiest(NH::PrimaryAlive("n2".into())), [];
    equal_peer_with_higher_priority_wins:
        unlocked().peers(vec![peer("n2", 5 * SEG).priority(2)]), settings()
        => R::NotHealthiest(NH::HigherPriority("n2".into())), [];
    equal_peer_with_lower_priority_loses:
        unlocked().peers(vec![peer("n2", 5 * SEG)]), Settings { failover_priority: 2, ..settings() }
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    former_leader_priority_is_ignored:
        with_cluster(unlocked().peers(vec![peer("n2", 5 * SEG).priority(5)]),
            |c| c.history(1, SEG, "n2")),
        settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    nofailover_never_races:
        unlocked(), nofailover()
        => R::NotHealthiest(NH::NoFailoverTag), [];
    peers_not_fetched_blocks:
        unlocked_with(|o| o.peers = None), settings()
        => R::NotHealthiest(NH::PeersUnknown), [];
    no_peers_races:
        unlocked().peers(vec![]), settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    unreachable_peers_are_ignored:
        unlocked().peers(vec![peer("n2", 9 * SEG).primary().unreachable(), peer("n3", 9 * SEG).unreachable()]),
        settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    nofailover_peers_are_ignored:
        unlocked().peers(vec![peer("n2", 9 * SEG).nofailover()]),
        settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    a_running_primary_blocks_the_race_whatever_its_tags:
        unlocked().peers(vec![peer("n3", 9 * SEG).primary().nofailover()]),
        settings()
        => R::NotHealthiest(NH::PrimaryAlive("n3".into())), [];
    a_running_primary_blocks_even_the_manual_candidate:
        with_cluster(unlocked().peers(vec![peer("n3", 9 * SEG).primary()]), |c| c.failover(None, Some(ME))),
        settings()
        => R::NotHealthiest(NH::PrimaryAlive("n3".into())), [];
    own_entry_in_peers_is_ignored:
        unlocked().peers(vec![peer(ME, 9 * SEG)]), settings()
        => R::PromotedByAcquiringLock, [A::AcquireLeader, A::Promote];
    check_timeline_blocks_replica_behind:
        with_cluster(unlocked(),
            |c| c.config(json!({"check_timeline": true})).history(1, SEG, "n2")),
        settings()
        => R::NotHealthiest(NH::TimelineBehind { mine: 1, cluster: 2 }), [];
    manual_failover_to_reachable_other_waits:
        with_cluster(unlocked(), |c| c.failover(None, Some("n2"))), settings()
        => R::NotHealthiest(NH::FailoverToOther("n2".into())), [];
    manual_failover_to_unreachable_other_races:
        with_cluster(unlocked().peers(vec![peer("n2", 5 * SEG).unreachable()]),
            |c| c.failover(None, Some("n2"))),
        settings()
        => R::PromotedByAcquiringLock,
           [A::AcquireLeader, A::ClearFailover { mod_revision: 42 }, A::Promote];
    manual_failover_to_me_races_even_lagging:
        with_cluster(unlocked().pg(pg_replica(SEG, SEG, 1)), |c| c.failover(None, Some(ME))),
        settings()
        => R::PromotedByAcquiringLock,
           [A::AcquireLeader, A::ClearFailover { mod_revision: 42 }, A::Promote];
    paused_replica_never_races:
        with_cluster(unlocked(), |c| c.paused()), settings()
        => R::NotHealthiest(NH::Paused), [];

    // ---- we hold the key
    leader_publishes_status_and_slots:
        leading().pg(pg_primary(5 * SEG, 1)), settings()
        => R::LeaderWithLock(ME.into()),
           [A::WriteStatus { optime: 5 * SEG },
            A::SyncSlots { create: vec!["n2".into(), "n3".into()], drop: vec![] }];
    leader_gives_a_cascading_member_no_slot:
        with_cluster(leading().pg(pg_primary(5 * SEG, 1).slots(&["n3"])),
            |c| c.with_member(member("n3").tag("replicatefrom", json!("n2")))),
        settings()
        => R::LeaderWithLock(ME.into()),
           [A::WriteStatus { optime: 5 * SEG },
            A::SyncSlots { create: vec!["n2".into()], drop: vec!["n3".into()] }];
    leader_keeps_the_slot_of_a_cascading_member_whose_upstream_is_down:
        with_cluster(leading(),
            |c| c.with_member(member("n2").stopped())
                .with_member(member("n3").tag("replicatefrom", json!("n2")))),
        settings()
        => R::LeaderWithLock(ME.into()), [A::WriteStatus { optime: 5 * SEG }];
    leader_in_steady_state_only_writes_status:
        leading(), settings()
        => R::LeaderWithLock(ME.into()), [A::WriteStatus { optime: 5 * SEG }];
    leader_drops_slots_of_gone_members_but_keeps_permanent:
        with_cluster(leading().pg(pg_primary(5 * SEG, 1).slots(&["n2", "gone", "perm"])),
            |c| c.config(json!({"slots": {
                "perm": {"type": "physical"},
                "logi": {"type": "logical", "database": "postgres", "plugin": "pgoutput"}
            }}))),
        settings()
        => R::LeaderWithLock(ME.into()),
           [A::WriteStatus { optime: 5 * SEG },
            A::SyncSlots { create: vec!["n3".into()], drop: vec!["gone".into()] }];
    leader_without_use_slots_leaves_slots_alone:
        with_cluster(leading().pg(pg_primary(5 * SEG, 1).slots(&["gone"])),
            |c| c.config(json!({"postgresql": {"use_slots": false}}))),
        settings()
        => R::LeaderWithLock(ME.into()), [A::WriteStatus { optime: 5 * SEG }];
    leader_on_new_timeline_updates_history:
        with_cluster(leading().pg(pg_primary(5 * SEG, 3).slots(&["n2", "n3"])),
            |c| c.history(1, SEG, "n2")),
        settings()
        => R::LeaderWithLock(ME.into()),
           [A::WriteStatus { optime: 5 * SEG }, A::UpdateHistory { timeline: 3 }];
    leader_with_current_history_does_not_update_it:
        with_cluster(leading().pg(pg_primary(5 * SEG, 2).slots(&["n2", "n3"])),
            |c| c.history(1, SEG, ME)),
        settings()
        => R::LeaderWithLock(ME.into()), [A::WriteStatus { optime: 5 * SEG }];
    leader_clears_stale_failover_naming_it:
        with_cluster(leading(), |c| c.failover(None, Some(ME))), settings()
        => R::FailoverRefused("I am already the leader, no need to failover".into()),
           [A::WriteStatus { optime: 5 * SEG }, A::ClearFailover { mod_revision: 42 }];
    leader_with_stale_lock_rebinds_first:
        with_cluster(leading(), |c| c.leader(ME, OLD_LEASE)), settings()
        => R::LeaderWithLock(ME.into()), [A::RebindLeader, A::WriteStatus { optime: 5 * SEG }];
    leader_without_lease_rebinds:
        { let mut o = with_cluster(leading(), |c| c.leader(ME, 0)); o.lease = 0; o },
        settings()
        => R::LeaderWithLock(ME.into()), [A::RebindLeader, A::WriteStatus { optime: 5 * SEG }];
    lock_holder_running_as_replica_promotes:
        obs(cluster().led_by_me()).pg(pg_replica(SEG, SEG, 1)).data(data_standby()), settings()
        => R::PromotedBecauseHadLock, [A::Promote];
    stale_lock_holder_running_as_replica_rebinds_then_promotes:
        obs(cluster().leader(ME, OLD_LEASE)).pg(pg_replica(SEG, SEG, 1)).data(data_standby()), settings()
        => R::PromotedBecauseHadLock, [A::RebindLeader, A::Promote];
    paused_lock_holder_running_as_replica_releases:
        obs(cluster().paused().led_by_me()).pg(pg_replica(SEG, SEG, 1)).data(data_standby()), settings()
        => R::PausedRemovedLockNotPrimary, [A::ReleaseLeader];
    lock_holder_not_answering_keeps_lock:
        obs(cluster().led_by_me()).pg(pg_not_answering()), settings()
        => R::PostgresNotAnswering { leader: true }, [];
    stale_lock_holder_not_answering_rebinds:
        obs(cluster().leader(ME, OLD_LEASE)).pg(pg_not_answering()), settings()
        => R::PostgresNotAnswering { leader: true }, [A::RebindLeader];

    // ---- another node holds the key
    primary_without_lock_demotes:
        obs(cluster().led_by_n2(2)).pg(pg_primary(5 * SEG, 1)), settings()
        => R::DemotingOtherHasLock, [IMMEDIATE, A::StartReplica(Some(src("n2")))];
    unanswering_primary_without_lock_demotes:
        obs(cluster().led_by_n2(2)).pg(pg_not_answering()).data(data_ok()), settings()
        => R::DemotingOtherHasLock, [IMMEDIATE, A::StartReplica(Some(src("n2")))];
    unanswering_standby_without_lock_waits:
        obs(cluster().led_by_n2(2)).pg(pg_not_answering()).data(data_standby()), settings()
        => R::PostgresNotAnswering { leader: false }, [];
    paused_primary_without_lock_continues:
        obs(cluster().paused().led_by_n2(2)).pg(pg_primary(5 * SEG, 1)), settings()
        => R::PausedPrimaryWithoutLock, [];
    replica_following_wrong_upstream_follows_leader:
        following_n2().following(Some("n3")), settings()
        => R::FollowingNew { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) },
           [A::Follow(Some(src("n2")))];
    replica_with_unknown_upstream_follows_leader:
        following_n2().mem(|m| m.following = None), settings()
        => R::FollowingNew { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) },
           [A::Follow(Some(src("n2")))];
    replica_following_leader_does_nothing:
        following_n2(), settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
    replica_keeps_slots_for_members_cascading_from_it:
        with_cluster(following_n2().pg(pg_replica(4 * SEG, 4 * SEG, 1).slots(&["old", "perm"])),
            |c| c.with_member(member(ME))
                .with_member(member("n3").tag("replicatefrom", json!(ME)))
                .config(json!({"slots": {"perm": {"type": "physical"}}}))),
        settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) },
           [A::SyncSlots { create: vec!["n3".into()], drop: vec!["old".into()] }];
    paused_replica_leaves_slots_alone:
        with_cluster(following_n2().pg(pg_replica(4 * SEG, 4 * SEG, 1).slots(&["old"])),
            |c| c.paused()),
        settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
    replicatefrom_running_member_is_followed:
        following_n2(), replicatefrom("n3")
        => R::FollowingNew { me: ME.into(), leader: "n2".into(), upstream: Some("n3".into()) },
           [A::Follow(Some(src("n3")))];
    replicatefrom_stopped_member_falls_back_to_leader:
        with_cluster(following_n2().following(Some("n3")),
            |c| c.with_member(member("n3").stopped())),
        replicatefrom("n3")
        => R::FollowingNew { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) },
           [A::Follow(Some(src("n2")))];
    replicatefrom_unknown_member_falls_back_to_leader:
        following_n2(), replicatefrom("n9")
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
    paused_replica_keeps_its_upstream:
        with_cluster(following_n2().following(Some("n3")), |c| c.paused()), settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
    replica_past_switch_stops_to_check_divergence:
        replica_past_switch(), settings()
        => R::CheckingDivergence { leader: "n2".into(), timeline: 2 },
           [A::NoteDivergenceCheck { leader: "n2".into(), timeline: 2 }, A::Stop(StopMode::Fast)];
    divergence_checked_once_per_leader_timeline:
        replica_past_switch().mem(|m| m.divergence_checked = Some(("n2".into(), 2))), settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
    divergence_checked_again_for_a_new_timeline:
        replica_past_switch().mem(|m| m.divergence_checked = Some(("n2".into(), 1))), settings()
        => R::CheckingDivergence { leader: "n2".into(), timeline: 2 },
           [A::NoteDivergenceCheck { leader: "n2".into(), timeline: 2 }, A::Stop(StopMode::Fast)];
    streaming_replica_is_not_checked:
        replica_past_switch().pg(pg_replica(4 * SEG, 4 * SEG, 1)), settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
    replica_before_switch_is_not_checked:
        replica_past_switch().pg(pg_replica(3 * SEG, 3 * SEG, 1).receiver(None)), settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
    paused_replica_is_not_checked:
        with_cluster(replica_past_switch(), |c| c.config(json!({"pause": true}))), settings()
        => R::Following { me: ME.into(), leader: "n2".into(), upstream: Some("n2".into()) }, [];
}

#[test]
fn long_actions_end_the_list() {
    // The executor spawns the first long action and stops: nothing may follow it.
    for a in [
        A::Bootstrap,
        A::Clone(src("n2")),
        A::StartPrimary,
        A::StartReplica(None),
        A::Promote,
        A::Rewind(src("n2")),
    ] {
        assert!(is_long(&a), "{a:?}");
    }
    for a in [
        IMMEDIATE,
        A::AcquireLeader,
        A::Follow(None),
        A::RemoveDataDir,
    ] {
        assert!(!is_long(&a), "{a:?}");
    }
}

#[test]
fn reasons_read_as_patroni_words() {
    assert_eq!(
        R::LeaderWithLock("n1".into()).to_string(),
        "no action. I am (n1), the leader with the lock"
    );
    assert_eq!(
        R::Following {
            me: "n1".into(),
            leader: "n2".into(),
            upstream: Some("n2".into())
        }
        .to_string(),
        "no action. I am (n1), a secondary, and following a leader (n2)"
    );
    assert_eq!(
        R::NotHealthiest(NH::Ahead("n2".into())).to_string(),
        "not the healthiest node, not racing for the leader key: n2 is ahead of me"
    );
}

#[test]
fn peers_are_asked_only_when_a_race_or_hand_over_may_be_decided() {
    use super::wants_peers;
    let free = cluster();
    let led = cluster().leader("n2", 7);
    let handing_over = cluster().leader("n2", 7).failover(Some("n2"), Some("n1"));
    let up = pg_replica(4 * SEG, 4 * SEG, 1);
    let down = pg_stopped();
    let s = settings();
    let nofailover = Settings {
        nofailover: true,
        ..settings()
    };
    // (cluster, settings, postgres, long action running) -> ask?
    let rows: &[(&Cluster, &Settings, &super::PgView, bool, bool)] = &[
        (&free, &s, &up, false, true),
        (&free, &nofailover, &up, false, false),
        (&free, &s, &down, false, false),
        (&free, &s, &up, true, false),
        (&led, &s, &up, false, false),
        (&handing_over, &s, &up, false, true),
        (&handing_over, &nofailover, &up, false, true),
    ];
    for (i, (c, st, pg, long, want)) in rows.iter().enumerate() {
        assert_eq!(wants_peers(c, st, pg, *long), *want, "row {i}");
    }
}
