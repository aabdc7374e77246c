//! A switchover as seen from etcd: the old leader demotes, the candidate catches
//! up and takes the leader key, runs as primary, and the old leader follows it.
//!
//! Rule: pure. [`SwitchoverWatch::step`] takes one read of the cluster and the
//! time since the request was sent, and returns what changed; the caller polls
//! and prints. The write-unavailability figure is an estimate from these
//! observations: it is as precise as the polling interval and the agents' delay
//! in publishing their member keys.

use std::time::Duration;

use crate::dcs::model::{format_lsn, Cluster, Member};

/// Something that happened, in the order a switchover goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The old leader stopped being a running primary holding the key.
    Demoting { old: String, detail: String },
    /// The candidate, still a replica, has received all the old leader wrote.
    CaughtUp {
        candidate: String,
        position: u64,
        target: u64,
    },
    /// Another member holds the leader key.
    Promoted { new: String },
    /// The new leader's member key shows a running primary.
    Writable { new: String },
    /// The old leader streams from the new one.
    Following { old: String, new: String },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Demoting { old, detail } => write!(f, "{old} demoting ({detail})"),
            Step::CaughtUp {
                candidate,
                position,
                target,
            } => write!(
                f,
                "candidate {candidate} caught up ({} >= {})",
                format_lsn(*position),
                format_lsn(*target)
            ),
            Step::Promoted { new } => write!(f, "{new} promoted (leader key taken)"),
            Step::Writable { new } => write!(f, "{new} running as primary"),
            Step::Following { old, new } => write!(f, "{old} following {new}"),
        }
    }
}

fn is_primary(m: &Member) -> bool {
    matches!(m.data.role.as_deref(), Some("primary" | "master"))
}

fn is_running(m: &Member) -> bool {
    m.data.state.as_deref() == Some("running")
}

/// Follows one switchover (or failover) from successive reads of the cluster.
#[derive(Debug, Clone)]
pub struct SwitchoverWatch {
    old: String,
    candidate: Option<String>,
    /// The furthest the old leader was seen to write.
    old_optime: u64,
    new_leader: Option<String>,
    write_stop: Option<Duration>,
    write_start: Option<Duration>,
    caught_up: bool,
    following: bool,
}

impl SwitchoverWatch {
    pub fn new(old: &str, candidate: Option<&str>) -> SwitchoverWatch {
        SwitchoverWatch {
            old: old.to_string(),
            candidate: candidate.map(str::to_string),
            old_optime: 0,
            new_leader: None,
            write_stop: None,
            write_start: None,
            caught_up: false,
            following: false,
        }
    }

    /// The new leader runs as primary and the old one follows it: nothing more to
    /// watch (the old leader can stream before the candidate finished promoting).
    pub fn finished(&self) -> bool {
        self.following && self.write_start.is_some()
    }

    /// Take one observation made `at` after the request was sent.
    pub fn step(&mut self, cluster: &Cluster, at: Duration) -> Vec<Step> {
        let mut steps = Vec::new();
        let leader = cluster.leader_name();
        let old_member = cluster.member(&self.old);

        // how far the old leader wrote, while it led
        if leader == Some(self.old.as_str()) {
            self.old_optime = self.old_optime.max(cluster.status.optime.unwrap_or(0));
        }
        // its own position until it turns replica: a demoted primary publishes
        // where it stopped, which is what the candidate must reach
        if let Some(m) = old_member.filter(|m| m.data.role.as_deref() != Some("replica")) {
            self.old_optime = self.old_optime.max(m.data.xlog_location.unwrap_or(0));
        }

        if self.write_stop.is_none() {
            let detail = match (leader, old_member) {
                (l, _) if l != Some(self.old.as_str()) => Some(match l {
                    None => "leader key released".to_string(),
                    Some(other) => format!("leader key now held by {other}"),
                }),
                (_, None) => Some("member key gone".to_string()),
                (_, Some(m)) if !(is_primary(m) && is_running(m)) => Some(format!(
                    "state {}, role {}",
                    m.data.state.as_deref().unwrap_or("unknown"),
                    m.data.role.as_deref().unwrap_or("unknown")
                )),
                _ => None,
            };
            if let Some(detail) = detail {
                self.write_stop = Some(at);
                steps.push(Step::Demoting {
                    old: self.old.clone(),
                    detail,
                });
            }
        }

        if let Some(l) = leader.filter(|l| *l != self.old) {
            if self.new_leader.as_deref() != Some(l) {
                self.new_leader = Some(l.to_string());
                steps.push(Step::Promoted { new: l.to_string() });
            }
        }

        if !self.caught_up && self.write_stop.is_some() && self.old_optime > 0 {
            let target = self.candidate.as_deref().or(self.new_leader.as_deref());
            if let Some(c) = target.and_then(|t| cluster.member(t)) {
                let pos = c
                    .data
                    .receive_lsn
                    .unwrap_or(0)
                    .max(c.data.xlog_location.unwrap_or(0));
                if !is_primary(c) && pos >= self.old_optime {
                    self.caught_up = true;
                    steps.push(Step::CaughtUp {
                        candidate: c.name.clone(),
                        position: pos,
                        target: self.old_optime,
                    });
                }
            }
        }

        if self.write_start.is_none() && self.write_stop.is_some() {
            if let Some(new) = self.new_leader.as_deref() {
                if cluster
                    .member(new)
                    .is_some_and(|m| is_primary(m) && is_running(m))
                    && leader == Some(new)
                {
                    self.write_start = Some(at);
                    steps.push(Step::Writable {
                        new: new.to_string(),
                    });
                }
            }
        }

        if !self.following {
            if let (Some(new), Some(m)) = (self.new_leader.clone(), old_member) {
                let streams = m.data.replication_state.as_deref() == Some("streaming")
                    || m.data.state.as_deref() == Some("streaming");
                if m.data.role.as_deref() == Some("replica") && streams && leader == Some(&new) {
                    self.following = true;
                    steps.push(Step::Following {
                        old: self.old.clone(),
                        new,
                    });
                }
            }
        }
        steps
    }

    /// The estimated write unavailability, once both ends were observed.
    pub fn unavailability(&self) -> Option<Duration> {
        Some(self.write_start?.saturating_sub(self.write_stop?))
    }

    /// One line about the write unavailability, labelled as the estimate it is.
    pub fn summary(&self, poll: Duration) -> String {
        match (self.write_stop, self.write_start, self.unavailability()) {
            (Some(stop), Some(start), Some(gap)) => format!(
                "Estimated write unavailability: {:.2} s (from etcd observations: {} stopped being a running primary at +{:.2} s, {} ran as primary at +{:.2} s; precision about {} ms polling plus the agents' publish delay)",
                gap.as_secs_f64(),
                self.old,
                stop.as_secs_f64(),
                self.new_leader.as_deref().unwrap_or("?"),
                start.as_secs_f64(),
                poll.as_millis()
            ),
            (Some(stop), None, _) => format!(
                "Write unavailability not measured: {} stopped being a running primary at +{:.2} s, but no new primary was seen running",
                self.old,
                stop.as_secs_f64()
            ),
            _ => format!(
                "Write unavailability not measured: {} was not seen to stop being the primary",
                self.old
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::model::{Leader, MemberData, Status};

    fn member(name: &str, role: &str, state: &str, lsn: u64, streaming: bool) -> Member {
        Member {
            name: name.into(),
            lease: 1,
            mod_revision: 1,
            data: MemberData {
                role: Some(role.into()),
                state: Some(state.into()),
                xlog_location: Some(lsn),
                replication_state: streaming.then(|| "streaming".to_string()),
                ..Default::default()
            },
        }
    }

    fn cluster(leader: Option<&str>, optime: u64, members: Vec<Member>) -> Cluster {
        Cluster {
            leader: leader.map(|l| Leader {
                name: l.into(),
                lease: 1,
                mod_revision: 1,
            }),
            status: Status {
                optime: Some(optime),
                ..Default::default()
            },
            members,
            ..Default::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_whole_switchover() {
        let mut w = SwitchoverWatch::new("node1", Some("node2"));
        // before anything happens
        let c = cluster(
            Some("node1"),
            100,
            vec![
                member("node1", "primary", "running", 120, false),
                member("node2", "replica", "running", 90, true),
            ],
        );
        assert!(w.step(&c, ms(0)).is_empty());
        // the old primary stops
        let c = cluster(
            Some("node1"),
            120,
            vec![
                member("node1", "primary", "stopping", 130, false),
                member("node2", "replica", "running", 125, true),
            ],
        );
        assert_eq!(
            w.step(&c, ms(200)),
            vec![Step::Demoting {
                old: "node1".into(),
                detail: "state stopping, role primary".into()
            }]
        );
        // the candidate has everything, the key is released
        let c = cluster(
            None,
            130,
            vec![
                member("node1", "demoted", "stopped", 130, false),
                member("node2", "replica", "running", 130, true),
            ],
        );
        assert_eq!(
            w.step(&c, ms(300)),
            vec![Step::CaughtUp {
                candidate: "node2".into(),
                position: 130,
                target: 130
            }]
        );
        // the candidate takes the key and is promoted
        let c = cluster(
            Some("node2"),
            130,
            vec![
                member("node1", "demoted", "stopped", 130, false),
                member("node2", "primary", "running", 140, false),
            ],
        );
        assert_eq!(
            w.step(&c, ms(1100)),
            vec![
                Step::Promoted {
                    new: "node2".into()
                },
                Step::Writable {
                    new: "node2".into()
                }
            ]
        );
        assert!(!w.finished());
        // the old primary follows
        let c = cluster(
            Some("node2"),
            150,
            vec![
                member("node1", "replica", "running", 150, true),
                member("node2", "primary", "running", 150, false),
            ],
        );
        assert_eq!(
            w.step(&c, ms(2500)),
            vec![Step::Following {
                old: "node1".into(),
                new: "node2".into()
            }]
        );
        assert!(w.finished());
        assert_eq!(w.unavailability(), Some(ms(900)));
        let s = w.summary(ms(100));
        assert!(
            s.starts_with("Estimated write unavailability: 0.90 s (from etcd observations"),
            "{s}"
        );
        assert_eq!(w.step(&c, ms(2600)), vec![]);
    }

    #[test]
    fn everything_between_two_polls() {
        // a fast switchover seen in one read: all steps at once, caught-up unobservable
        let mut w = SwitchoverWatch::new("a", None);
        let before = cluster(
            Some("a"),
            10,
            vec![
                member("a", "primary", "running", 10, false),
                member("b", "replica", "running", 10, true),
            ],
        );
        assert!(w.step(&before, ms(0)).is_empty());
        let after = cluster(
            Some("b"),
            20,
            vec![
                member("a", "replica", "running", 20, true),
                member("b", "primary", "running", 20, false),
            ],
        );
        let steps = w.step(&after, ms(100));
        assert_eq!(
            steps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            vec![
                "a demoting (leader key now held by b)",
                "b promoted (leader key taken)",
                "b running as primary",
                "a following b"
            ]
        );
        assert_eq!(w.unavailability(), Some(Duration::ZERO));
    }

    #[test]
    fn nothing_happens() {
        let mut w = SwitchoverWatch::new("a", Some("b"));
        let c = cluster(
            Some("a"),
            10,
            vec![member("a", "primary", "running", 10, false)],
        );
        assert!(w.step(&c, ms(0)).is_empty());
        assert!(w.step(&c, ms(100)).is_empty());
        assert_eq!(w.unavailability(), None);
        assert!(w.summary(ms(100)).contains("was not seen to stop"));
        // the old leader's agent vanished
        let gone = cluster(None, 10, vec![]);
        let steps = w.step(&gone, ms(200));
        assert_eq!(steps[0].to_string(), "a demoting (leader key released)");
        assert!(w
            .summary(ms(100))
            .contains("no new primary was seen running"));
    }
}
