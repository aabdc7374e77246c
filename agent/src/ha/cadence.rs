//! The loop's cadence: when a cycle writes what it publishes to etcd, and when
//! the next cycle runs.
//!
//! Rule: pure. The agent asks these and does what they say; it decides nothing
//! about when to write or when to wake.

use crate::dcs::model::{Member, MemberData};

/// Write our member key? Only when what we would write differs from what etcd
/// holds, or the key is missing or bound to another lease (it must live on the
/// lease we keep alive). `None` for `stored`: etcd could not be read this cycle,
/// so there is nothing to compare with and nothing is written.
pub fn member_write_due(stored: Option<Option<&Member>>, data: &MemberData, lease: i64) -> bool {
    match stored {
        None => false,
        Some(None) => true,
        Some(Some(m)) => m.data != *data || m.lease != lease,
    }
}

/// Write the leader's `status` key with `optime`? Not when etcd already holds
/// that position and it is the one we wrote last (a key someone else changed or
/// a position we have not written ourselves is written again).
pub fn status_write_due(optime: u64, stored: Option<u64>, last_written: Option<u64>) -> bool {
    !(stored == Some(optime) && last_written == Some(optime))
}

/// What the end of a cycle knows about when to run the next one. Times in
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tempo {
    /// `loop_wait`, counted from the start of the cycle.
    pub loop_wait: f64,
    /// How long the cycle took.
    pub elapsed: f64,
    /// The cycle's reason differs from the last one: things are changing.
    pub reason_changed: bool,
    /// The decision asked to look again this soon (`Decision::wakeup_in`).
    pub decided: Option<f64>,
    /// A scheduled restart comes due in this many seconds.
    pub scheduled_restart: Option<f64>,
}

/// Look again this soon after a cycle whose reason changed, rather than a whole
/// `loop_wait`, so the member key and `/patroni` catch up quickly (a new replica
/// starts streaming, a promoted leader creates its slots).
pub const SETTLE: f64 = 1.0;

/// The shortest wait asked for (a timer due now or past still yields).
const MIN_WAIT: f64 = 0.05;

/// Seconds from the end of this cycle to the start of the next: `loop_wait`
/// after this one started, or sooner when the reason changed, the decision asks
/// for it, or a scheduled restart comes due. (An etcd watch event or an API
/// request wakes the loop earlier still; that is not decided here.)
pub fn next_cycle_in(t: &Tempo) -> f64 {
    let mut wait = (t.loop_wait.max(0.1) - t.elapsed).max(0.0);
    if t.reason_changed {
        wait = wait.min(SETTLE);
    }
    for soon in [t.decided, t.scheduled_restart].into_iter().flatten() {
        wait = wait.min(soon.max(MIN_WAIT));
    }
    if wait.is_nan() {
        MIN_WAIT
    } else {
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(data: &MemberData, lease: i64) -> Member {
        Member {
            name: "me".into(),
            lease,
            mod_revision: 1,
            data: data.clone(),
        }
    }

    #[test]
    fn member_write_rows() {
        let data: MemberData =
            serde_json::from_value(json!({"state": "running", "role": "replica"})).unwrap();
        let other: MemberData =
            serde_json::from_value(json!({"state": "stopped", "role": "replica"})).unwrap();
        let same = member(&data, 7);
        let changed = member(&other, 7);
        let old_lease = member(&data, 6);
        let rows: &[(&str, Option<Option<&Member>>, bool)] = &[
            ("etcd not read: nothing to compare with", None, false),
            ("no member key yet", Some(None), true),
            ("the same data on our lease", Some(Some(&same)), false),
            ("the data changed", Some(Some(&changed)), true),
            ("the key is on an older lease", Some(Some(&old_lease)), true),
        ];
        for (name, stored, want) in rows {
            assert_eq!(member_write_due(*stored, &data, 7), *want, "{name}");
        }
    }

    #[test]
    fn status_write_rows() {
        // (situation, optime to write, stored, last written by us, write?)
        type Row = (&'static str, u64, Option<u64>, Option<u64>, bool);
        let rows: &[Row] = &[
            ("stored and ours", 100, Some(100), Some(100), false),
            ("moved on", 200, Some(100), Some(100), true),
            (
                "stored but not by us (a new leader)",
                100,
                Some(100),
                None,
                true,
            ),
            ("ours but changed in etcd", 100, Some(90), Some(100), true),
            ("nothing stored", 100, None, None, true),
        ];
        for (name, optime, stored, last, want) in rows {
            assert_eq!(status_write_due(*optime, *stored, *last), *want, "{name}");
        }
    }

    #[test]
    fn next_cycle_rows() {
        let base = Tempo {
            loop_wait: 10.0,
            elapsed: 0.5,
            ..Default::default()
        };
        let rows: &[(&str, Tempo, f64)] = &[
            ("loop_wait after the start", base, 9.5),
            (
                "a slow cycle does not wait",
                Tempo {
                    elapsed: 12.0,
                    ..base
                },
                0.0,
            ),
            (
                "the reason changed",
                Tempo {
                    reason_changed: true,
                    ..base
                },
                SETTLE,
            ),
            (
                "the decision asks sooner",
                Tempo {
                    reason_changed: true,
                    decided: Some(0.5),
                    ..base
                },
                0.5,
            ),
            (
                "the decision asks later than the settle wake",
                Tempo {
                    reason_changed: true,
                    decided: Some(3.0),
                    ..base
                },
                SETTLE,
            ),
            (
                "a scheduled restart soon",
                Tempo {
                    scheduled_restart: Some(2.0),
                    ..base
                },
                2.0,
            ),
            (
                "a scheduled restart after loop_wait",
                Tempo {
                    scheduled_restart: Some(60.0),
                    ..base
                },
                9.5,
            ),
            (
                "past due waits the minimum",
                Tempo {
                    scheduled_restart: Some(-3.0),
                    ..base
                },
                MIN_WAIT,
            ),
            (
                "a tiny loop_wait is floored",
                Tempo {
                    loop_wait: 0.0,
                    elapsed: 0.0,
                    ..base
                },
                0.1,
            ),
            (
                "not a number wakes early rather than never",
                Tempo {
                    decided: Some(f64::NAN),
                    ..base
                },
                MIN_WAIT,
            ),
        ];
        for (name, t, want) in rows {
            let got = next_cycle_in(t);
            assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
        }
    }
}
