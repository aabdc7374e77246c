//! The loop's memory changes in one place: `apply(memory, event)`.
//!
//! The agent (`agent/observe.rs`, `agent/execute.rs`) and the simulation
//! (`ha/tests/sim.rs`) call the same function for the same events, so the
//! simulation steps the real bookkeeping, not a copy of it.
//!
//! Rule: pure, like the rest of `ha`.

use serde_json::Value;

use super::{Action, LongKind, LongResult, Memory, Mono};

/// How a long action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LongEnd {
    /// Done; nothing to note beyond the kind.
    Done,
    /// A bootstrap wrote a new cluster with this system identifier.
    Bootstrapped(String),
    /// Postgres now runs as a replica following this member (`None`: no upstream).
    Following(Option<String>),
    /// It failed, with this message.
    Failed(String),
    /// A promotion abandoned because the `pre_promote` script failed; the
    /// leader key was released.
    PrePromoteFailed,
}

/// Something the agent saw or did that the next cycles must remember.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// One of `decide`'s actions was carried out (its bookkeeping part). Called
    /// before the action for `Stop` and `RemoveDataDir` (whatever their outcome,
    /// the old upstream and timeline no longer hold), after it succeeded for
    /// the others.
    Done(&'a Action),
    /// A long action started.
    LongStarted { kind: LongKind, at: Mono },
    /// A long action ended.
    LongEnded {
        kind: LongKind,
        end: LongEnd,
        at: Mono,
    },
    /// The cluster was read from etcd this cycle.
    ClusterRead {
        at: Mono,
        /// `pause` of the configuration in force.
        pause: bool,
        /// The stored `config` key when it is a JSON object.
        config: Option<&'a Value>,
        /// Slot names of the members present now.
        member_slots: Vec<String>,
        /// Slots the leader keeps for members that are gone (`status.retain_slots`).
        retain_slots: &'a [String],
        member_slots_ttl: f64,
        /// `initialize` and `config` both published, with this system identifier.
        published_sysid: Option<&'a str>,
    },
    /// Postgres exited: on its own (`crashed`) or because it was stopped.
    PostgresGone { crashed: bool },
    /// The probe answered, on this timeline.
    Probed { timeline: Option<u32> },
}

/// Apply one event.
pub fn apply(m: &mut Memory, e: Event<'_>) {
    match e {
        Event::Done(a) => match a {
            Action::Stop(_) => m.following = None,
            Action::Follow(src) => m.following = Some(src.as_ref().map(|s| s.name.clone())),
            Action::RemoveDataDir => {
                m.timeline_seen = None;
                m.rewind_failed = None;
                m.following = None;
                m.divergence_checked = None;
                m.last_result = None;
            }
            Action::NoteDivergenceCheck { leader, timeline } => {
                m.divergence_checked = Some((leader.clone(), *timeline));
            }
            Action::NoteSyncNamed(named) => m.sync_named = named.clone(),
            Action::CancelLongAction => m.long_action = None,
            _ => {}
        },
        Event::LongStarted { kind, at } => {
            m.long_action = Some((kind, at));
            if matches!(kind, LongKind::Clone | LongKind::Reinit) {
                m.timeline_seen = None;
            }
            m.last_result = None;
        }
        Event::LongEnded { kind, end, at } => {
            m.long_action = None;
            let message = match &end {
                LongEnd::Failed(msg) => msg.clone(),
                LongEnd::PrePromoteFailed => {
                    "the pre_promote script failed; leader key released".to_string()
                }
                _ => String::new(),
            };
            let ok = !matches!(end, LongEnd::Failed(_) | LongEnd::PrePromoteFailed);
            match (kind, end) {
                (LongKind::Bootstrap, LongEnd::Bootstrapped(sysid)) => {
                    m.bootstrapped_sysid = Some(sysid);
                }
                (LongKind::Rewind, LongEnd::Failed(msg)) => m.rewind_failed = Some(msg),
                (LongKind::Rewind, _) => m.rewind_failed = None,
                (LongKind::StartPrimary, LongEnd::Failed(_)) => {
                    m.failed_primary_starts = m.failed_primary_starts.saturating_add(1);
                }
                (LongKind::StartPrimary, _) => {
                    m.failed_primary_starts = 0;
                    m.following = None;
                }
                (LongKind::StartReplica | LongKind::Clone, LongEnd::Following(f)) => {
                    m.following = Some(f);
                    m.crashed = false;
                }
                (LongKind::Promote, LongEnd::Done) => m.following = None,
                (LongKind::Promote, LongEnd::PrePromoteFailed) => {
                    m.pre_promote_failed_at = Some(at);
                }
                (LongKind::Demote | LongKind::Restart, LongEnd::Following(f)) => {
                    m.following = Some(f);
                }
                (LongKind::Reinit, LongEnd::Following(f)) => {
                    m.following = Some(f);
                    m.rewind_failed = None;
                    m.divergence_checked = None;
                    m.crashed = false;
                }
                _ => {}
            }
            m.last_result = Some(LongResult {
                kind,
                ok,
                message,
                at,
            });
        }
        Event::ClusterRead {
            at,
            pause,
            config,
            member_slots,
            retain_slots,
            member_slots_ttl,
            published_sysid,
        } => {
            m.paused = pause;
            if let Some(c) = config.filter(|c| c.is_object()) {
                m.last_config = Some(c.clone());
            }
            for slot in member_slots {
                m.slot_seen.insert(slot, at);
            }
            for slot in retain_slots {
                m.slot_seen.entry(slot.clone()).or_insert(at);
            }
            m.slot_seen.retain(|_, seen| at - *seen <= member_slots_ttl);
            if published_sysid.is_some() && published_sysid == m.bootstrapped_sysid.as_deref() {
                m.bootstrapped_sysid = None;
            }
        }
        Event::PostgresGone { crashed } => {
            if crashed {
                m.crashed = true;
            }
            m.following = None;
        }
        Event::Probed { timeline } => {
            // never report an older timeline than already seen (see Memory)
            m.timeline_seen = timeline.max(m.timeline_seen);
            m.crashed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::{Source, StopMode};

    fn src(name: &str) -> Source {
        Source {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 5432,
        }
    }

    #[test]
    fn long_actions_start_and_end() {
        let mut m = Memory {
            timeline_seen: Some(3),
            ..Default::default()
        };
        apply(
            &mut m,
            Event::LongStarted {
                kind: LongKind::Clone,
                at: 1.0,
            },
        );
        assert_eq!(m.long_action, Some((LongKind::Clone, 1.0)));
        assert_eq!(m.timeline_seen, None, "a clone starts a new history");
        apply(
            &mut m,
            Event::LongEnded {
                kind: LongKind::Clone,
                end: LongEnd::Following(Some("n1".into())),
                at: 2.0,
            },
        );
        assert_eq!(m.long_action, None);
        assert_eq!(m.following, Some(Some("n1".into())));
        assert!(m.last_result.as_ref().is_some_and(|r| r.ok && r.at == 2.0));
    }

    #[test]
    fn failures_are_counted_and_remembered() {
        let mut m = Memory::default();
        let failed_start = Event::LongEnded {
            kind: LongKind::StartPrimary,
            end: LongEnd::Failed("no".into()),
            at: 0.0,
        };
        apply(&mut m, failed_start.clone());
        apply(&mut m, failed_start.clone());
        assert_eq!(m.failed_primary_starts, 2);
        m.failed_primary_starts = u32::MAX;
        apply(&mut m, failed_start);
        assert_eq!(m.failed_primary_starts, u32::MAX, "saturates");
        apply(
            &mut m,
            Event::LongEnded {
                kind: LongKind::Rewind,
                end: LongEnd::Failed("diverged".into()),
                at: 0.0,
            },
        );
        assert_eq!(m.rewind_failed.as_deref(), Some("diverged"));
        assert!(m
            .last_result
            .as_ref()
            .is_some_and(|r| !r.ok && r.message == "diverged"));
    }

    #[test]
    fn actions_note_what_they_change() {
        let mut m = Memory {
            following: Some(Some("n1".into())),
            timeline_seen: Some(2),
            rewind_failed: Some("x".into()),
            ..Default::default()
        };
        apply(&mut m, Event::Done(&Action::Follow(Some(src("n2")))));
        assert_eq!(m.following, Some(Some("n2".into())));
        apply(&mut m, Event::Done(&Action::Stop(StopMode::Fast)));
        assert_eq!(m.following, None);
        apply(&mut m, Event::Done(&Action::RemoveDataDir));
        assert_eq!((m.timeline_seen, m.rewind_failed.clone()), (None, None));
        apply(&mut m, Event::Done(&Action::AcquireLeader));
        assert_eq!(
            m,
            Memory::default(),
            "an action without bookkeeping changes nothing"
        );
    }

    #[test]
    fn cluster_reads_keep_slots_for_member_slots_ttl() {
        let mut m = Memory {
            bootstrapped_sysid: Some("7000000000000000001".into()),
            ..Default::default()
        };
        let retain = vec!["gone".to_string()];
        let read = |at, members: Vec<String>, sysid| Event::ClusterRead {
            at,
            pause: true,
            config: None,
            member_slots: members,
            retain_slots: &retain,
            member_slots_ttl: 10.0,
            published_sysid: sysid,
        };
        apply(&mut m, read(0.0, vec!["n1".into()], None));
        assert!(m.paused);
        assert_eq!(m.slot_seen.keys().collect::<Vec<_>>(), ["gone", "n1"]);
        assert!(m.bootstrapped_sysid.is_some());
        apply(&mut m, read(20.0, vec![], Some("7000000000000000001")));
        assert!(m.slot_seen.is_empty(), "both outlived member_slots_ttl");
        assert_eq!(m.bootstrapped_sysid, None, "published");
    }

    #[test]
    fn probes_never_go_back_a_timeline() {
        let mut m = Memory {
            crashed: true,
            timeline_seen: Some(4),
            ..Default::default()
        };
        apply(&mut m, Event::Probed { timeline: Some(3) });
        assert_eq!((m.timeline_seen, m.crashed), (Some(4), false));
        apply(&mut m, Event::PostgresGone { crashed: true });
        assert!(m.crashed);
    }
}
