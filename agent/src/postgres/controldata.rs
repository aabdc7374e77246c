//! `pg_controldata` output: what the data directory says about how postgres
//! last stopped. Pure parsing.

use std::collections::BTreeMap;

use crate::dcs::model::parse_lsn;

/// The parts of pg_control the HA decision needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlState {
    /// `Database cluster state`: `in production`, `shut down`, `shut down in recovery`,
    /// `in archive recovery`, `in crash recovery`, `shutting down`, ...
    pub state: String,
    pub sysid: String,
    pub checkpoint_lsn: u64,
    pub checkpoint_timeline: u32,
    pub min_recovery_lsn: u64,
    pub min_recovery_timeline: u32,
}

impl ControlState {
    /// Parse the `key: value` lines of pg_controldata.
    pub fn parse(output: &str) -> Option<ControlState> {
        let map: BTreeMap<&str, &str> = output
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim(), v.trim()))
            })
            .collect();
        let state = map.get("Database cluster state")?.to_string();
        let sysid = map
            .get("Database system identifier")
            .unwrap_or(&"")
            .to_string();
        let lsn = |k: &str| map.get(k).and_then(|v| parse_lsn(v)).unwrap_or(0);
        let num = |k: &str| map.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        Some(ControlState {
            state,
            sysid,
            checkpoint_lsn: lsn("Latest checkpoint location"),
            checkpoint_timeline: num("Latest checkpoint's TimeLineID"),
            min_recovery_lsn: lsn("Minimum recovery ending location"),
            min_recovery_timeline: num("Min recovery ending loc's timeline"),
        })
    }

    fn in_recovery_state(&self) -> bool {
        matches!(
            self.state.as_str(),
            "shut down in recovery" | "in archive recovery"
        )
    }

    /// The data directory was last running as a primary (cleanly stopped or not).
    pub fn was_primary(&self) -> bool {
        match self.state.as_str() {
            "in production" | "shut down" | "shutting down" | "in crash recovery" => true,
            // A primary that crashed has no minimum recovery point.
            _ if self.in_recovery_state() => {
                self.min_recovery_lsn == 0 && self.min_recovery_timeline == 0
            }
            _ => false,
        }
    }

    /// It was a primary and did not shut down cleanly.
    pub fn was_primary_crashed(&self) -> bool {
        matches!(
            self.state.as_str(),
            "in production" | "shutting down" | "in crash recovery"
        )
    }

    /// Timeline of the last known position.
    pub fn timeline(&self) -> u32 {
        if self.in_recovery_state() && self.min_recovery_timeline != 0 {
            self.min_recovery_timeline
        } else {
            self.checkpoint_timeline
        }
    }

    /// Last known WAL position: the minimum recovery point of a replica, or the
    /// last checkpoint of a primary.
    pub fn lsn(&self) -> u64 {
        if self.in_recovery_state() && self.min_recovery_lsn != 0 {
            self.min_recovery_lsn
        } else {
            self.checkpoint_lsn
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY_SHUT_DOWN: &str = "pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7304861563316969481
Database cluster state:               shut down
pg_control last modified:             Sun 22 Nov 2026 03:40:01 AM UTC
Latest checkpoint location:           0/3000028
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
";

    #[test]
    fn parses_a_cleanly_stopped_primary() {
        let c = ControlState::parse(PRIMARY_SHUT_DOWN).unwrap();
        assert_eq!(c.state, "shut down");
        assert_eq!(c.sysid, "7304861563316969481");
        assert_eq!(c.checkpoint_lsn, 0x3000028);
        assert_eq!(c.timeline(), 1);
        assert!(c.was_primary());
        assert!(!c.was_primary_crashed());
        assert_eq!(c.lsn(), 0x3000028);
    }

    #[test]
    fn replica_uses_min_recovery_point() {
        let text = PRIMARY_SHUT_DOWN
            .replace("shut down\n", "shut down in recovery\n")
            .replace(
                "Minimum recovery ending location:     0/0",
                "Minimum recovery ending location:     0/5000100",
            )
            .replace(
                "Min recovery ending loc's timeline:   0",
                "Min recovery ending loc's timeline:   2",
            );
        let c = ControlState::parse(&text).unwrap();
        assert!(!c.was_primary());
        assert_eq!(c.timeline(), 2);
        assert_eq!(c.lsn(), 0x5000100);
    }

    #[test]
    fn crashed_primary() {
        let c = ControlState::parse(&PRIMARY_SHUT_DOWN.replace("shut down\n", "in production\n"))
            .unwrap();
        assert!(c.was_primary());
        assert!(c.was_primary_crashed());
    }

    #[test]
    fn garbage_is_none() {
        assert!(ControlState::parse("nothing useful").is_none());
    }
}
