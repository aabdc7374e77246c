//! Safety rule 8 as a property of the leader's synchronous steps, stepped against
//! a fake primary: three standbys whose WAL receivers may stall (still
//! `streaming`, as a frozen process shows) or disconnect, commits acknowledged
//! the way postgres does for `FIRST n (...)`, and the leader's decisions carried
//! out between random events.
//!
//! Checked after every event and every action: each member the `sync` key lists
//! has flushed every commit acknowledged so far. At the end, with every standby
//! back and streaming, some standby is listed again (admission is not stuck).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::fixtures::*;
use crate::dcs::model::SyncState;
use crate::ha::sync::named_standbys;
use crate::ha::{decide, Action, Memory, Observation, Walsender};

const STANDBYS: [&str; 3] = ["n2", "n3", "n4"];
/// One commit's worth of WAL.
const COMMIT: u64 = 0x100;

#[derive(Debug, Clone)]
enum Event {
    Commit,
    /// The standby receives and flushes everything the primary has.
    Stream(usize),
    /// Freeze or thaw the standby's WAL receiver.
    ToggleStall(usize),
    /// Drop or restore the replication connection.
    ToggleConnected(usize),
    /// One HA cycle of the leader.
    Cycle,
}

#[derive(Debug, Clone)]
struct Standby {
    name: &'static str,
    connected: bool,
    stalled: bool,
    flush: u64,
}

#[derive(Debug)]
struct World {
    flush: u64,
    /// The highest acknowledged commit.
    acked: u64,
    ssn: String,
    /// The `sync` key: its standbys and mod revision.
    key: Option<(Vec<String>, i64)>,
    memory: Memory,
    standbys: Vec<Standby>,
    config: serde_json::Value,
    nofailover: Vec<bool>,
}

impl World {
    fn new(count: u32, strict: bool, nofailover: Vec<bool>) -> World {
        World {
            flush: 10 * COMMIT,
            acked: 10 * COMMIT,
            ssn: String::new(),
            key: None,
            memory: Memory::default(),
            standbys: STANDBYS
                .iter()
                .map(|n| Standby {
                    name: n,
                    connected: true,
                    stalled: false,
                    flush: 10 * COMMIT,
                })
                .collect(),
            config: json!({
                "synchronous_mode": true,
                "synchronous_node_count": count,
                "synchronous_mode_strict": strict,
                "postgresql": {"use_slots": false},
            }),
            nofailover,
        }
    }

    /// `pg_stat_replication.sync_state` of each connected standby under the
    /// current `synchronous_standby_names` (priority order, first `num` sync).
    fn sync_states(&self) -> BTreeMap<&'static str, &'static str> {
        let names = named_standbys(&self.ssn);
        let num: usize = self
            .ssn
            .split_once(" (")
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(1);
        let mut out: BTreeMap<&'static str, &'static str> = self
            .standbys
            .iter()
            .filter(|s| s.connected)
            .map(|s| (s.name, "async"))
            .collect();
        let mut rank = 0;
        for n in &names {
            if let Some(s) = self.standbys.iter().find(|s| s.connected && s.name == n) {
                out.insert(s.name, if rank < num { "sync" } else { "potential" });
                rank += 1;
            }
        }
        out
    }

    /// Release waiting commits: all of them without synchronous standbys named,
    /// else up to what every synchronous standby flushed, once there are `num`.
    fn release(&mut self) {
        if self.ssn.trim().is_empty() {
            self.acked = self.flush;
            return;
        }
        let num: usize = self
            .ssn
            .split_once(" (")
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(1);
        let states = self.sync_states();
        let sync: Vec<u64> = self
            .standbys
            .iter()
            .filter(|s| states.get(s.name) == Some(&"sync"))
            .map(|s| s.flush)
            .collect();
        if sync.len() >= num {
            let upto = sync.into_iter().min().unwrap_or(0).min(self.flush);
            self.acked = self.acked.max(upto);
        }
    }

    fn check(&self, what: &str) -> Result<(), TestCaseError> {
        if let Some((listed, _)) = &self.key {
            for m in listed {
                let s = self.standbys.iter().find(|s| s.name == m).unwrap();
                prop_assert!(
                    s.flush >= self.acked,
                    "after {what}: {m} is in the sync key, flushed to {} while {} was \
                     acknowledged; {self:?}",
                    s.flush,
                    self.acked
                );
            }
        }
        Ok(())
    }

    fn observe(&self) -> Observation {
        let mut c = cluster()
            .config(self.config.clone())
            .led_by_me()
            .with_member(member(ME).primary());
        for (i, n) in STANDBYS.iter().enumerate() {
            c = c.with_member(member(n).tag("nofailover", json!(self.nofailover[i])));
        }
        c.sync = self.key.as_ref().map(|(listed, rev)| SyncState {
            leader: Some(ME.into()),
            sync_standby: (!listed.is_empty()).then(|| listed.join(",")),
            quorum: 0,
            mod_revision: *rev,
        });
        let mut o = obs(c).pg(pg_primary(self.flush, 1));
        let states = self.sync_states();
        o.pg.walsenders = self
            .standbys
            .iter()
            .filter(|s| s.connected)
            .map(|s| Walsender {
                name: s.name.into(),
                state: "streaming".into(),
                sync_state: states[s.name].into(),
                flush_lsn: Some(s.flush),
                lag: self.flush - s.flush,
            })
            .collect();
        o.pg.sync_standby_names = Some(self.ssn.clone());
        o.memory = self.memory.clone();
        o
    }

    /// One leader cycle, carried out like the executor: in order, stopping at a
    /// failed compare-and-set.
    fn cycle(&mut self) -> Result<(), TestCaseError> {
        let d = decide(&self.observe(), &settings());
        for a in &d.actions {
            match a {
                Action::WriteSync {
                    standbys,
                    mod_revision,
                } => {
                    if *mod_revision != self.key.as_ref().map(|(_, r)| *r) {
                        break;
                    }
                    let rev = self.key.as_ref().map_or(1, |(_, r)| r + 1);
                    self.key = Some((standbys.clone(), rev));
                }
                Action::DeleteSync { .. } => self.key = None,
                Action::SetSyncNames(v) => self.ssn = v.clone(),
                // the loop's memory changes as the agent's does
                Action::NoteSyncNamed(_) => {
                    crate::ha::memory::apply(&mut self.memory, crate::ha::memory::Event::Done(a))
                }
                _ => {}
            }
            self.release();
            self.check(&format!("{a:?}"))?;
        }
        Ok(())
    }

    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        match e {
            Event::Commit => self.flush += COMMIT,
            Event::Stream(i) => {
                let s = &mut self.standbys[*i];
                if s.connected && !s.stalled {
                    s.flush = self.flush;
                }
            }
            Event::ToggleStall(i) => self.standbys[*i].stalled ^= true,
            Event::ToggleConnected(i) => self.standbys[*i].connected ^= true,
            Event::Cycle => return self.cycle(),
        }
        self.release();
        self.check(&format!("{e:?}"))
    }
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Commit),
        3 => (0..3usize).prop_map(Event::Stream),
        1 => (0..3usize).prop_map(Event::ToggleStall),
        1 => (0..3usize).prop_map(Event::ToggleConnected),
        4 => Just(Event::Cycle),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rule8_the_sync_key_lists_only_standbys_with_every_acknowledged_commit(
        count in 1u32..3,
        strict in any::<bool>(),
        nofailover in prop::collection::vec(prop::bool::weighted(0.2), 3),
        events in prop::collection::vec(event(), 1..60),
    ) {
        let mut w = World::new(count, strict, nofailover);
        for e in &events {
            w.apply(e)?;
        }
        // everyone back and streaming: some standby is admitted again
        for s in &mut w.standbys {
            s.connected = true;
            s.stalled = false;
        }
        for _ in 0..8 {
            for i in 0..3 {
                w.apply(&Event::Stream(i))?;
            }
            w.apply(&Event::Cycle)?;
        }
        let listed = w.key.as_ref().map_or(0, |(l, _)| l.len());
        prop_assert!(listed >= 1, "nobody admitted after convergence: {w:?}");
    }
}
