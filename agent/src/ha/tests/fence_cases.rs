//! The fence rules (safety rule 9): when the watchdog is armed, which renewal its
//! deadline counts from, and what a node whose watchdog is gone may still do.

use std::time::Duration;

use super::check;
use super::fixtures::*;
use crate::ha::fence::{deadline, must_arm, next_renewal, LeaderKey, LeaseRenewal};
use crate::ha::{Action as A, DataDir, LongKind, Observation, Reason as R, StopMode};

const IMMEDIATE: A = A::Stop(StopMode::Immediate);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn renewal(lease: i64, sent: f64, ttl: u64) -> LeaseRenewal {
    LeaseRenewal {
        lease,
        sent: secs(sent),
        ttl: Duration::from_secs(ttl),
    }
}

// ------------------------------------------------------------------ arming

#[test]
fn armed_whenever_postgres_may_be_primary() {
    let o = || obs(cluster().led_by_me());
    let cases: Vec<(&str, Observation, bool)> = vec![
        ("primary answering", o().pg(pg_primary(SEG, 1)), true),
        ("replica answering", o().pg(pg_replica(SEG, SEG, 1)), false),
        (
            "replica answering, no standby.signal (it says so)",
            o().pg(pg_replica(SEG, SEG, 1)).data(data_ok()),
            false,
        ),
        (
            "probe failing, no standby.signal",
            o().pg(pg_not_answering()).data(data_ok()),
            true,
        ),
        (
            "probe failing, standby.signal",
            o().pg(pg_not_answering()).data(data_standby()),
            false,
        ),
        (
            "probe failing, data directory unreadable",
            o().pg(pg_not_answering())
                .data(DataDir::Invalid("unreadable".into())),
            true,
        ),
        ("stopped", o().pg(pg_stopped()), false),
        (
            "promoting a replica",
            o().pg(pg_replica(SEG, SEG, 1)).long(LongKind::Promote),
            true,
        ),
        (
            "starting as primary, not running yet",
            o().pg(pg_stopped()).long(LongKind::StartPrimary),
            true,
        ),
        (
            "bootstrapping",
            o().pg(pg_not_answering()).long(LongKind::Bootstrap),
            true,
        ),
        (
            "restarting as primary, not answering yet",
            o().pg(pg_not_answering())
                .data(data_ok())
                .long(LongKind::Restart),
            true,
        ),
        (
            "demoting, still primary",
            o().pg(pg_primary(SEG, 1)).long(LongKind::Demote),
            true,
        ),
        (
            "starting as replica, not answering yet",
            o().pg(pg_not_answering())
                .data(data_standby())
                .long(LongKind::StartReplica),
            false,
        ),
        (
            "primary without the leader key",
            obs(cluster().led_by_n2(1)).pg(pg_primary(SEG, 1)),
            true,
        ),
        (
            "primary while etcd is unreachable",
            obs_no_dcs().pg(pg_primary(SEG, 1)),
            true,
        ),
        (
            "paused primary",
            o().pg(pg_primary(SEG, 1)).mem(|m| m.paused = true),
            false,
        ),
        (
            "paused, promoting",
            o().long(LongKind::Promote).mem(|m| m.paused = true),
            false,
        ),
    ];
    for (what, o, armed) in cases {
        assert_eq!(must_arm(&o.pg, &o.data_dir, &o.memory), armed, "{what}");
    }
}

// ------------------------------------------------------------------ deadline

#[test]
fn deadline_is_a_margin_before_the_renewed_lease_expires() {
    let cases = [
        // (sent, ttl) => deadline: 10% of ttl before expiry, at most 1 s
        ((100.0, 30), 129.0),
        ((100.0, 10), 109.0),
        ((100.0, 6), 105.4),
        ((100.0, 1), 100.9),
    ];
    for ((sent, ttl), want) in cases {
        assert_eq!(
            deadline(&renewal(LEASE, sent, ttl)),
            secs(want),
            "sent {sent} ttl {ttl}"
        );
    }
}

#[test]
fn renewal_ttl_is_the_smaller_of_requested_and_granted() {
    let r = |req, granted| LeaseRenewal::new(LEASE, secs(100.0), req, granted).map(|r| r.ttl);
    assert_eq!(r(30, 30), Some(Duration::from_secs(30)));
    assert_eq!(r(30, 60), Some(Duration::from_secs(30)));
    assert_eq!(r(30, 5), Some(Duration::from_secs(5)));
    // the lease is gone (etcd answers a keep-alive of an expired lease with ttl 0)
    assert_eq!(r(30, 0), None);
    assert_eq!(r(30, -1), None);
}

#[test]
fn next_renewal_follows_the_lease_that_holds_the_key() {
    let old = renewal(OLD_LEASE, 100.0, 10);
    let same = renewal(OLD_LEASE, 102.0, 10);
    let new = renewal(LEASE, 101.0, 60);
    let cases = [
        ("first renewal", None, new, LeaderKey::Unknown, Some(new)),
        (
            "same lease renewed",
            Some(old),
            same,
            LeaderKey::Unknown,
            Some(same),
        ),
        (
            "same lease, key not ours",
            Some(old),
            same,
            LeaderKey::NotOurs,
            Some(same),
        ),
        (
            "new lease, key not read yet",
            Some(old),
            new,
            LeaderKey::Unknown,
            Some(old),
        ),
        (
            "new lease, key still on the old one",
            Some(old),
            new,
            LeaderKey::OnLease(OLD_LEASE),
            Some(old),
        ),
        (
            "new lease, key re-bound to it",
            Some(old),
            new,
            LeaderKey::OnLease(LEASE),
            Some(new),
        ),
        (
            "new lease, we hold no key",
            Some(old),
            new,
            LeaderKey::NotOurs,
            Some(new),
        ),
    ];
    for (what, current, fresh, key, want) in cases {
        assert_eq!(next_renewal(current, fresh, key), want, "{what}");
    }
}

/// `ttl` raised from 10 to 60 after a renewal: the agent grants a new lease with
/// the new ttl, but the leader key still lives on the old lease, so the deadline
/// does not move until the key is re-bound.
#[test]
fn ttl_raised_after_renewal_does_not_stretch_the_deadline() {
    let renewed = renewal(OLD_LEASE, 100.0, 10);
    let before = deadline(&renewed);
    assert_eq!(before, secs(109.0));
    // the new lease (ttl 60) granted a second later
    let granted = renewal(LEASE, 101.0, 60);
    let kept = next_renewal(Some(renewed), granted, LeaderKey::OnLease(OLD_LEASE));
    assert_eq!(kept.map(|r| deadline(&r)), Some(before));
    let kept = next_renewal(Some(renewed), granted, LeaderKey::Unknown);
    assert_eq!(kept.map(|r| deadline(&r)), Some(before));
    // re-bound: from now on the new lease counts
    let rebound = next_renewal(kept, granted, LeaderKey::OnLease(LEASE));
    assert_eq!(rebound.map(|r| deadline(&r)), Some(secs(160.0)));
}

// ------------------------------------------------------------------ fence down

fn fence_down(mut o: Observation) -> Observation {
    o.fence_down = true;
    o
}

fn leading() -> Observation {
    obs(cluster()
        .led_by_me()
        .with_member(member(ME).primary())
        .with_member(member("n2")))
    .pg(pg_primary(5 * SEG, 1).slots(&["n2"]))
}

#[test]
fn fence_down_leader_demotes_and_lets_the_key_go() {
    check(
        &fence_down(leading()),
        &settings(),
        R::FenceDownDemoting,
        vec![IMMEDIATE, A::ReleaseLeader],
    );
}

#[test]
fn fence_down_unanswering_leader_demotes() {
    let o = fence_down(leading().pg(pg_not_answering()).data(data_ok()));
    check(
        &o,
        &settings(),
        R::FenceDownDemoting,
        vec![IMMEDIATE, A::ReleaseLeader],
    );
}

#[test]
fn fence_down_promotion_in_progress_is_stopped_and_cancelled() {
    let o = fence_down(
        obs(cluster().led_by_me())
            .pg(pg_replica(SEG, SEG, 1))
            .long(LongKind::Promote),
    );
    check(
        &o,
        &settings(),
        R::FenceDownDemoting,
        vec![IMMEDIATE, A::CancelLongAction, A::ReleaseLeader],
    );
}

#[test]
fn fence_down_stopped_leader_does_not_start_as_primary() {
    let o = fence_down(
        obs(cluster().led_by_me()).data(data_with(control("in production", 4 * SEG, 1), false)),
    );
    check(
        &o,
        &settings(),
        R::FenceDownDemoting,
        vec![A::ReleaseLeader],
    );
}

#[test]
fn fence_down_healthiest_replica_does_not_race() {
    let c = cluster()
        .optime(5 * SEG)
        .with_member(member(ME))
        .with_member(member("n2"));
    let o = obs(c)
        .pg(pg_replica(5 * SEG, 5 * SEG, 1))
        .peers(vec![peer("n2", 4 * SEG)]);
    // without the rule it would race
    assert!(crate::ha::decide(&o, &settings())
        .actions
        .contains(&A::AcquireLeader));
    check(
        &fence_down(o),
        &settings(),
        R::FenceDownNotPromoting,
        vec![],
    );
}

#[test]
fn fence_down_never_bootstraps() {
    let o = fence_down(obs(empty_cluster()).data(DataDir::Empty));
    check(&o, &settings(), R::FenceDownNotPromoting, vec![]);
}

#[test]
fn fence_down_replica_keeps_following() {
    let o = obs(cluster().led_by_n2(1).with_member(member("n3")))
        .pg(pg_replica(4 * SEG, 4 * SEG, 1))
        .data(data_standby())
        .following(Some("n2"));
    let want = crate::ha::decide(&o, &settings());
    assert!(matches!(want.reason, R::Following { .. }), "{want:?}");
    check(&fence_down(o), &settings(), want.reason, want.actions);
}

#[test]
fn fence_down_paused_leader_is_left_alone() {
    let o = obs(cluster()
        .paused()
        .led_by_me()
        .with_member(member(ME).primary()))
    .pg(pg_primary(5 * SEG, 1));
    let want = crate::ha::decide(&o, &settings());
    check(&fence_down(o), &settings(), want.reason, want.actions);
}
