//! Convergence (STYLE habit 3): three nodes on a fake etcd, each with a fake
//! postgres (data directory, running, role, position, timeline), stepped in rounds
//! until a round changes nothing.
//!
//! A round is concurrent like real agents: every node observes the same world, then
//! the decisions are carried out one node after the other by a tiny executor with
//! the real one's rules (actions in order, stop at the first that fails; the etcd
//! writes are compare-and-set, so of two racers only one wins). Long actions finish
//! at once. Between rounds, replicas stream from their upstream when their WAL
//! history allows it.
//!
//! Checked throughout: a node becomes primary only while etcd names it leader with
//! its lease; a running primary that is not the leader demotes in its very next
//! decision; at the end of a round at most one primary is running unless one of
//! them is frozen (not stepping) and then it is not the leader.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::fixtures::{config_of, control, member, port_of, MemberExt, SEG, SYSID};
use crate::dcs::model::{Cluster, History, HistoryEntry, Leader, Member, MemberData, Status};
use crate::ha::{
    decide, Action, DataDir, Decision, LongResult, Memory, Observation, PeerStatus, PgView, Reason,
    Settings, StopMode,
};

/// The data directory of a node.
#[derive(Debug, Clone, PartialEq)]
struct Data {
    sysid: String,
    timeline: u32,
    /// End of WAL.
    lsn: u64,
    /// The timeline history: (ended timeline, switch point).
    history: Vec<(u32, u64)>,
    standby_signal: bool,
    /// pg_control's cluster state, as left by the last stop.
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Pg {
    running: bool,
    primary: bool,
    upstream: Option<String>,
    /// The WAL receiver streams (set by replication between rounds).
    streaming: bool,
    slots: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    name: String,
    /// The agent runs (and answers its REST API).
    up: bool,
    /// The agent runs but is not scheduled (a stalled VM): no decisions.
    frozen: bool,
    /// Connected to the network: etcd, the other agents, replication.
    net: bool,
    lease: i64,
    data: Option<Data>,
    pg: Pg,
    memory: Memory,
    last: Option<Decision>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Etcd {
    initialize: Option<String>,
    config: Option<Value>,
    /// (name, lease)
    leader: Option<(String, i64)>,
    members: BTreeMap<String, MemberData>,
    optime: Option<u64>,
    history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq)]
struct World {
    etcd: Etcd,
    nodes: Vec<Node>,
}

struct Sim {
    w: World,
    settings: Vec<Settings>,
    next_lease: i64,
    trace: Vec<String>,
}

fn bootstrap_config(rewind: bool) -> Value {
    json!({
        "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
        "postgresql": {"use_pg_rewind": rewind},
    })
}

impl Sim {
    /// Three nodes with empty data directories and an empty etcd.
    fn new(rewind: bool) -> Sim {
        let names = ["n1", "n2", "n3"];
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| Node {
                name: n.to_string(),
                up: true,
                frozen: false,
                net: true,
                lease: 100 + i as i64,
                data: None,
                pg: Pg::default(),
                memory: Memory::default(),
                last: None,
            })
            .collect();
        let settings = names
            .iter()
            .map(|n| Settings {
                name: n.to_string(),
                failover_priority: 1,
                bootstrap_config: bootstrap_config(rewind),
                ..Default::default()
            })
            .collect();
        Sim {
            w: World {
                etcd: Etcd::default(),
                nodes,
            },
            settings,
            next_lease: 200,
            trace: vec![],
        }
    }

    fn idx(&self, name: &str) -> usize {
        self.w
            .nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn node(&self, name: &str) -> &Node {
        &self.w.nodes[self.idx(name)]
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        let i = self.idx(name);
        &mut self.w.nodes[i]
    }

    fn fail(&self, msg: String) -> ! {
        let tail = self.trace.len().saturating_sub(40);
        panic!(
            "{msg}\n--- trace (last rounds) ---\n{}\n--- world ---\n{:#?}",
            self.trace[tail..].join("\n"),
            self.w
        );
    }

    // ------------------------------------------------------------ observation

    fn cluster(&self) -> Cluster {
        let e = &self.w.etcd;
        Cluster {
            initialize: e.initialize.clone(),
            config: e.config.clone().map(config_of),
            leader: e.leader.as_ref().map(|(name, lease)| Leader {
                name: name.clone(),
                lease: *lease,
                mod_revision: 1,
            }),
            members: e
                .members
                .iter()
                .map(|(name, data)| Member {
                    name: name.clone(),
                    lease: 0,
                    mod_revision: 1,
                    data: data.clone(),
                })
                .collect(),
            status: Status {
                optime: e.optime,
                ..Default::default()
            },
            history: History {
                entries: e.history.clone(),
                mod_revision: 1,
            },
            ..Default::default()
        }
    }

    fn pg_view(n: &Node) -> PgView {
        let (Some(d), true) = (&n.data, n.pg.running) else {
            return PgView {
                running: n.pg.running,
                ..Default::default()
            };
        };
        let mut pg = PgView {
            running: true,
            accepting: true,
            in_recovery: Some(!n.pg.primary),
            timeline: Some(d.timeline),
            slots: Some(n.pg.slots.clone()),
            sysid: Some(d.sysid.clone()),
            ..Default::default()
        };
        if n.pg.primary {
            pg.wal_lsn = Some(d.lsn);
        } else {
            pg.receive_lsn = Some(d.lsn);
            pg.replay_lsn = Some(d.lsn);
            pg.receiver_status = n.pg.streaming.then(|| "streaming".to_string());
        }
        pg
    }

    fn observe(&self, i: usize) -> Observation {
        let n = &self.w.nodes[i];
        let cluster = n.net.then(|| self.cluster());
        let pg = Self::pg_view(n);
        let data_dir = match &n.data {
            None => DataDir::Empty,
            Some(d) => DataDir::Initialized {
                sysid: Some(d.sysid.clone()),
                control: (!n.pg.running).then(|| {
                    let mut c = control(d.state, d.lsn, d.timeline);
                    c.sysid = d.sysid.clone();
                    c
                }),
                standby_signal: d.standby_signal,
            },
        };
        // Like the agent: peers are asked only when nobody holds the key.
        let peers = match &cluster {
            Some(c) if c.leader.is_none() && pg.accepting && !self.settings[i].nofailover => Some(
                c.members
                    .iter()
                    .filter(|m| m.name != n.name)
                    .map(|m| {
                        let j = self.idx(&m.name);
                        let o = &self.w.nodes[j];
                        let running = o.pg.running && o.data.is_some();
                        PeerStatus {
                            name: o.name.clone(),
                            reachable: o.up && !o.frozen && o.net,
                            in_recovery: !(running && o.pg.primary),
                            wal_position: if running {
                                o.data.as_ref().map_or(0, |d| d.lsn)
                            } else {
                                0
                            },
                            timeline: o.data.as_ref().map(|d| d.timeline),
                            nofailover: self.settings[j].nofailover,
                            failover_priority: self.settings[j].failover_priority,
                        }
                    })
                    .collect(),
            ),
            _ => None,
        };
        Observation {
            now: 0.0,
            cluster,
            lease: n.lease,
            data_dir,
            pg,
            peers,
            memory: n.memory.clone(),
            unix_now: 1_800_000_000.0,
            request: None,
            config_changed: false,
            fence_down: false,
        }
    }

    fn decide_for(&self, i: usize) -> Decision {
        decide(&self.observe(i), &self.settings[i])
    }

    // ------------------------------------------------------------ execution

    /// Carry out one action; `false` stops the list (like a failed CAS).
    fn apply(&mut self, i: usize, a: &Action) -> bool {
        let name = self.w.nodes[i].name.clone();
        let lease = self.w.nodes[i].lease;
        if matches!(
            a,
            Action::Promote | Action::StartPrimary | Action::Bootstrap
        ) {
            // Rule 1 at the executor: the key names us with our lease right now.
            if self.w.etcd.leader != Some((name.clone(), lease)) {
                self.fail(format!(
                    "{name} runs {a:?} while the leader key is {:?}",
                    self.w.etcd.leader
                ));
            }
        }
        let other_data = |sim: &Sim, src: &str| -> Option<Data> {
            let o = sim.node(src);
            o.pg.running.then(|| o.data.clone()).flatten()
        };
        let e = &mut self.w.etcd;
        match a {
            Action::RaceInitialize => {
                if e.initialize.is_some() {
                    return false;
                }
                e.initialize = Some(String::new());
            }
            Action::SetInitialize(s) => e.initialize = Some(s.clone()),
            Action::DeleteInitialize => e.initialize = None,
            Action::SeedConfig(v) => {
                if e.config.is_none() {
                    e.config = Some(v.clone());
                }
            }
            Action::AcquireLeader => {
                if e.leader.is_some() {
                    return false;
                }
                e.leader = Some((name.clone(), lease));
            }
            Action::RebindLeader => match &mut e.leader {
                Some((n, l)) if *n == name => *l = lease,
                _ => return false,
            },
            Action::ReleaseLeader => {
                if e.leader.as_ref().is_some_and(|(n, _)| *n == name) {
                    e.leader = None;
                }
            }
            Action::WriteStatus { optime } => e.optime = Some(*optime),
            Action::UpdateHistory { timeline } => {
                let Some(d) = &self.w.nodes[i].data else {
                    return false;
                };
                let known = e.history.clone();
                e.history = d
                    .history
                    .iter()
                    .filter(|(tl, _)| tl < timeline)
                    .map(|&(tl, lsn)| HistoryEntry {
                        timeline: tl,
                        lsn,
                        reason: "no recovery target specified".into(),
                        timestamp: Some("t".into()),
                        new_leader: known
                            .iter()
                            .find(|k| k.timeline == tl)
                            .and_then(|k| k.new_leader.clone())
                            .or_else(|| (tl + 1 == *timeline).then(|| name.clone())),
                    })
                    .collect();
            }
            Action::ClearFailover { .. } => {}
            Action::Stop(mode) => {
                let n = &mut self.w.nodes[i];
                if n.pg.running {
                    if let Some(d) = &mut n.data {
                        d.state = match (n.pg.primary, mode) {
                            (true, StopMode::Immediate) => "in production",
                            (true, _) => "shut down",
                            (false, _) => "shut down in recovery",
                        };
                    }
                }
                n.pg = Pg {
                    slots: n.pg.slots.clone(),
                    ..Pg::default()
                };
                n.memory.following = None;
            }
            Action::Follow(src) => {
                let n = &mut self.w.nodes[i];
                n.pg.upstream = src.as_ref().map(|s| s.name.clone());
                n.pg.streaming = false;
                n.memory.following = Some(n.pg.upstream.clone());
            }
            Action::RemoveDataDir => {
                if self.w.nodes[i].pg.running {
                    self.fail(format!(
                        "{name}: data directory removed under a running postgres"
                    ));
                }
                let n = &mut self.w.nodes[i];
                n.data = None;
                n.pg.slots.clear();
                n.memory.rewind_failed = None;
                n.memory.following = None;
                n.memory.divergence_checked = None;
                n.memory.last_result = None;
            }
            Action::NoteDivergenceCheck { leader, timeline } => {
                self.w.nodes[i].memory.divergence_checked = Some((leader.clone(), *timeline));
            }
            Action::NoteSyncNamed(named) => {
                self.w.nodes[i].memory.sync_named = named.clone();
            }
            Action::SyncSlots { create, drop } => {
                let n = &mut self.w.nodes[i];
                n.pg.slots.retain(|s| !drop.contains(s));
                n.pg.slots.extend(create.iter().cloned());
                n.pg.slots.sort();
            }
            Action::Exit { message, .. } => {
                self.fail(format!("{name} exits: {message}"));
            }
            // operator actions are not part of these scenarios
            Action::DemoteGraceful { .. }
            | Action::Restart { .. }
            | Action::Reinitialize(_)
            | Action::Reload
            | Action::Answer { .. }
            | Action::CancelLongAction
            | Action::WriteSync { .. }
            | Action::DeleteSync { .. }
            | Action::SetSyncNames(_)
            | Action::WriteRetainSlots(_) => {
                self.fail(format!("{name}: unexpected operator action {a:?}"));
            }
            // ---- long actions: they finish at once
            Action::Bootstrap => {
                let n = &mut self.w.nodes[i];
                assert!(n.data.is_none() && !n.pg.running, "bootstrap over data");
                n.data = Some(Data {
                    sysid: SYSID.into(),
                    timeline: 1,
                    lsn: SEG,
                    history: vec![],
                    standby_signal: false,
                    state: "in production",
                });
                n.pg = Pg {
                    running: true,
                    primary: true,
                    ..Pg::default()
                };
                n.memory.bootstrapped_sysid = Some(SYSID.into());
            }
            Action::Clone(src) => {
                let Some(mut d) = other_data(self, &src.name) else {
                    return false;
                };
                d.standby_signal = true;
                let n = &mut self.w.nodes[i];
                n.data = Some(d);
                n.pg = Pg {
                    running: true,
                    upstream: Some(src.name.clone()),
                    ..Pg::default()
                };
                n.memory.following = Some(Some(src.name.clone()));
            }
            Action::StartPrimary => {
                let n = &mut self.w.nodes[i];
                let Some(d) = &mut n.data else { return false };
                d.standby_signal = false;
                n.pg = Pg {
                    running: true,
                    primary: true,
                    slots: n.pg.slots.clone(),
                    ..Pg::default()
                };
                n.memory.failed_primary_starts = 0;
                n.memory.following = None;
            }
            Action::StartReplica(src) => {
                let n = &mut self.w.nodes[i];
                let Some(d) = &mut n.data else { return false };
                d.standby_signal = true;
                let upstream = src.as_ref().map(|s| s.name.clone());
                n.pg = Pg {
                    running: true,
                    upstream: upstream.clone(),
                    slots: n.pg.slots.clone(),
                    ..Pg::default()
                };
                n.memory.following = Some(upstream);
            }
            Action::Promote => {
                let n = &mut self.w.nodes[i];
                let Some(d) = &mut n.data else { return false };
                if !n.pg.running || n.pg.primary {
                    return false;
                }
                d.history.push((d.timeline, d.lsn));
                d.timeline += 1;
                d.standby_signal = false;
                n.pg.primary = true;
                n.pg.upstream = None;
                n.pg.streaming = false;
                n.memory.following = None;
            }
            Action::Rewind(src) => {
                let Some(s) = other_data(self, &src.name) else {
                    self.w.nodes[i].memory.rewind_failed = Some("source not running".into());
                    return false;
                };
                if self.w.nodes[i].pg.running {
                    self.fail(format!("{name}: pg_rewind on a running postgres"));
                }
                let n = &mut self.w.nodes[i];
                let Some(d) = &mut n.data else { return false };
                d.timeline = s.timeline;
                d.lsn = s.lsn;
                d.history = s.history;
                d.standby_signal = true;
                d.state = "in archive recovery";
                n.memory.rewind_failed = None;
            }
        }
        if let Some(kind) = a.long_kind() {
            let n = &mut self.w.nodes[i];
            n.memory.long_action = None;
            n.memory.last_result = Some(LongResult {
                kind,
                ok: true,
                message: String::new(),
                at: 0.0,
            });
        }
        true
    }

    /// The member key, as the agent publishes it after each cycle.
    fn publish(&mut self, i: usize) {
        let n = &self.w.nodes[i];
        if !n.up || !n.net {
            return;
        }
        let mut m = member(&n.name);
        m.data.state = Some(if n.pg.running { "running" } else { "stopped" }.into());
        m.data.role = Some(
            match (&n.data, n.pg.primary) {
                (None, _) => "uninitialized",
                (Some(_), true) => "primary",
                (Some(_), false) => "replica",
            }
            .into(),
        );
        m.data.timeline = n.data.as_ref().map(|d| d.timeline);
        m = m.xlog(n.data.as_ref().map_or(0, |d| d.lsn));
        let name = n.name.clone();
        self.w.etcd.members.insert(name, m.data);
    }

    /// Replicas catch up with their upstream when its WAL history allows it.
    fn replicate_only(&mut self, names: &[&str]) {
        for i in 0..self.w.nodes.len() {
            let n = &self.w.nodes[i];
            if !names.contains(&n.name.as_str()) || !n.pg.running || n.pg.primary {
                continue;
            }
            let up =
                n.pg.upstream
                    .as_ref()
                    .map(|u| self.node(u))
                    .filter(|u| u.pg.running && u.net && !u.frozen && n.net && !n.frozen)
                    .and_then(|u| u.data.clone());
            let n = &mut self.w.nodes[i];
            let (Some(up), Some(d)) = (up, &mut n.data) else {
                n.pg.streaming = false;
                continue;
            };
            let ok = if d.timeline == up.timeline {
                true
            } else if d.timeline < up.timeline {
                up.history
                    .iter()
                    .find(|(tl, _)| *tl == d.timeline)
                    .is_some_and(|&(_, switch)| d.lsn <= switch)
            } else {
                false
            };
            n.pg.streaming = ok;
            if ok && up.lsn >= d.lsn {
                d.timeline = up.timeline;
                d.lsn = up.lsn;
                d.history = up.history;
            }
        }
    }

    fn replicate(&mut self) {
        self.replicate_only(&["n1", "n2", "n3"]);
    }

    /// Clients write to the leader.
    fn write(&mut self, bytes: u64) {
        let Some((leader, _)) = self.w.etcd.leader.clone() else {
            return;
        };
        let n = self.node_mut(&leader);
        if n.pg.running && n.pg.primary {
            if let Some(d) = &mut n.data {
                d.lsn += bytes;
            }
        }
    }

    // ------------------------------------------------------------ stepping

    fn active(&self, i: usize) -> bool {
        let n = &self.w.nodes[i];
        n.up && !n.frozen
    }

    /// One round: everybody observes, then the decisions are carried out in order.
    fn round(&mut self) {
        let decisions: Vec<(usize, Decision)> = (0..self.w.nodes.len())
            .filter(|&i| self.active(i))
            .map(|i| (i, self.decide_for(i)))
            .collect();
        let mut line = format!("round {}:", self.trace.len());
        for (i, d) in decisions {
            line.push_str(&format!(
                "\n  {}: {} {:?}",
                self.w.nodes[i].name, d.reason, d.actions
            ));
            for a in &d.actions {
                let ok = self.apply(i, a);
                if !ok || a.long_kind().is_some() {
                    break;
                }
            }
            self.w.nodes[i].last = Some(d);
            self.publish(i);
        }
        self.trace.push(line);
        self.replicate();
        self.check_invariants();
    }

    /// Step until a round changes nothing; returns the number of rounds.
    fn settle(&mut self) -> usize {
        for n in 1..=40 {
            let before = self.w.clone();
            self.round();
            if self.w == before {
                return n;
            }
        }
        self.fail("no convergence within 40 rounds".into());
    }

    fn check_invariants(&self) {
        let leader = self.w.etcd.leader.as_ref().map(|(n, _)| n.clone());
        let primaries: Vec<&Node> = self
            .w
            .nodes
            .iter()
            .filter(|n| n.pg.running && n.pg.primary)
            .collect();
        for p in &primaries {
            if leader.as_deref() == Some(p.name.as_str()) || !p.up {
                continue;
            }
            // A primary that is not the leader demotes in its very next decision.
            let d = self.decide_for(self.idx(&p.name));
            let other_holds = leader.is_some() || !p.net;
            if other_holds && d.actions.first() != Some(&Action::Stop(StopMode::Immediate)) {
                self.fail(format!(
                    "{} runs as primary without the key and would not stop: {d:?}",
                    p.name
                ));
            }
        }
        let live: Vec<&&Node> = primaries.iter().filter(|p| !p.frozen).collect();
        if live.len() > 1 {
            self.fail(format!(
                "{} running primaries: {:?}",
                live.len(),
                live.iter().map(|p| &p.name).collect::<Vec<_>>()
            ));
        }
        for n in &self.w.nodes {
            if let Some(d) = &n.data {
                assert_eq!(d.sysid, SYSID, "{} has a foreign system id", n.name);
            }
        }
    }

    // ------------------------------------------------------------ events

    /// The node dies: postgres crashes, its lease (leader and member keys) expires.
    fn kill(&mut self, name: &str) {
        let n = self.node_mut(name);
        n.up = false;
        if n.pg.running && n.pg.primary {
            if let Some(d) = &mut n.data {
                d.state = "in production";
            }
        }
        n.pg = Pg::default();
        self.expire_lease(name);
    }

    fn expire_lease(&mut self, name: &str) {
        if self.w.etcd.leader.as_ref().is_some_and(|(n, _)| n == name) {
            self.w.etcd.leader = None;
        }
        self.w.etcd.members.remove(name);
    }

    /// The node's agent starts again with a new lease and a fresh memory.
    fn restart_agent(&mut self, name: &str) {
        let lease = self.next_lease;
        self.next_lease += 1;
        let n = self.node_mut(name);
        n.up = true;
        n.frozen = false;
        n.net = true;
        n.lease = lease;
        n.memory = Memory::default();
        n.last = None;
    }

    // ------------------------------------------------------------ assertions

    fn leader(&self) -> String {
        let Some((l, lease)) = &self.w.etcd.leader else {
            self.fail("no leader".into())
        };
        assert_eq!(*lease, self.node(l).lease, "leader key on a stale lease");
        l.clone()
    }

    /// Exactly one running primary, holding the key; every other live node is a
    /// streaming replica of it on its timeline and position.
    fn assert_healthy(&self, replicas: &[&str]) {
        let leader = self.leader();
        let l = self.node(&leader);
        let ld = l.data.as_ref().expect("leader data");
        if !(l.pg.running && l.pg.primary) {
            self.fail(format!("leader {leader} is not a running primary"));
        }
        assert!(matches!(
            l.last.as_ref().map(|d| &d.reason),
            Some(Reason::LeaderWithLock(_))
        ));
        assert_eq!(self.w.etcd.optime, Some(ld.lsn), "status optime");
        assert_eq!(self.w.etcd.initialize.as_deref(), Some(SYSID));
        assert!(self.w.etcd.config.is_some());
        for r in replicas {
            let n = self.node(r);
            let d = n.data.as_ref().expect("replica data");
            if !(n.pg.running && !n.pg.primary && n.pg.streaming) {
                self.fail(format!("{r} is not a streaming replica"));
            }
            assert_eq!(
                n.pg.upstream.as_deref(),
                Some(leader.as_str()),
                "{r} upstream"
            );
            assert_eq!((d.timeline, d.lsn), (ld.timeline, ld.lsn), "{r} position");
            assert!(
                l.pg.slots.contains(&r.to_string()),
                "no slot for {r} on {leader}"
            );
            assert!(matches!(
                n.last.as_ref().map(|d| &d.reason),
                Some(Reason::Following { .. })
            ));
        }
        // the history in etcd tells every timeline the leader went through
        let tls: Vec<u32> = self.w.etcd.history.iter().map(|e| e.timeline).collect();
        let want: Vec<u32> = ld.history.iter().map(|h| h.0).collect();
        assert_eq!(tls, want, "history");
    }
}

fn others(leader: &str) -> Vec<&'static str> {
    ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| *n != leader)
        .collect()
}

/// Three empty nodes, settled: n1 wins the bootstrap race (it applies first).
fn bootstrapped(rewind: bool) -> Sim {
    let mut sim = Sim::new(rewind);
    sim.settle();
    sim
}

/// After bootstrap: some writes that everybody has, a write only n3 received, and
/// one nobody received; then n1 dies.
fn after_primary_killed() -> (Sim, u64) {
    let mut sim = bootstrapped(true);
    sim.write(0x1000);
    sim.replicate();
    sim.write(0x800);
    sim.replicate_only(&["n3"]);
    sim.write(0x400);
    let lost = sim.node("n1").data.as_ref().map_or(0, |d| d.lsn);
    sim.kill("n1");
    sim.settle();
    (sim, lost)
}

#[test]
fn three_empty_nodes_converge_to_one_primary_and_two_replicas() {
    let mut sim = Sim::new(true);
    let rounds = sim.settle();
    assert!(rounds <= 6, "took {rounds} rounds");
    assert_eq!(sim.leader(), "n1");
    sim.assert_healthy(&["n2", "n3"]);
    // the losers of the race never touched their (empty) data directories
    let first = &sim.trace[0];
    assert!(
        first.contains("n2: trying to bootstrap a new cluster"),
        "{first}"
    );
    // and the bootstrap was published once
    assert_eq!(sim.w.etcd.config, Some(bootstrap_config(true)));
}

#[test]
fn killed_primary_is_replaced_by_the_most_advanced_replica() {
    let (sim, _) = after_primary_killed();
    // n3 received more WAL than n2: n2 must not race (rule 3), n3 takes over.
    assert_eq!(sim.leader(), "n3");
    sim.assert_healthy(&["n2"]);
    let n3 = sim.node("n3").data.clone().expect("n3 data");
    assert_eq!(n3.timeline, 2);
    assert!(sim
        .trace
        .iter()
        .any(|t| t.contains("n2: not the healthiest node") && t.contains("n3 is ahead of me")));
    let last = sim.w.etcd.history.last().expect("history entry");
    assert_eq!((last.timeline, last.new_leader.as_deref()), (1, Some("n3")));
}

#[test]
fn old_primary_rejoins_as_replica_via_rewind() {
    let (mut sim, lost) = after_primary_killed();
    let switch = sim.w.etcd.history[0].lsn;
    assert!(lost > switch, "n1 must have diverged");
    sim.restart_agent("n1");
    sim.settle();
    assert!(sim
        .trace
        .iter()
        .any(|t| t.contains("n1: running pg_rewind from n3")));
    sim.assert_healthy(&["n1", "n2"]);
}

#[test]
fn old_primary_reclones_when_rewind_is_off() {
    let mut sim = bootstrapped(false);
    sim.settings[0].remove_data_directory_on_diverged_timelines = true;
    sim.write(0x1000);
    sim.replicate();
    sim.write(0x400);
    sim.kill("n1");
    sim.settle();
    let leader = sim.leader();
    sim.restart_agent("n1");
    sim.settle();
    assert!(sim
        .trace
        .iter()
        .any(|t| t.contains("n1: reinitializing due to diverged timelines")));
    let mut replicas = others(&leader);
    replicas.sort();
    sim.assert_healthy(&replicas);
}

#[test]
fn diverged_old_primary_stays_stopped_without_rewind_or_reclone() {
    let mut sim = bootstrapped(false);
    sim.write(0x1000);
    sim.replicate();
    sim.write(0x400);
    sim.kill("n1");
    sim.settle();
    let leader = sim.leader();
    sim.restart_agent("n1");
    sim.settle();
    let n1 = sim.node("n1");
    assert!(!n1.pg.running);
    assert_eq!(
        n1.last.as_ref().map(|d| &d.reason),
        Some(&Reason::DivergedNoRewind)
    );
    let other = others(&leader)
        .into_iter()
        .find(|n| *n != "n1")
        .expect("a replica");
    sim.assert_healthy(&[other]);
}

#[test]
fn partitioned_primary_fences_itself_then_rejoins() {
    let mut sim = bootstrapped(true);
    sim.write(0x1000);
    sim.replicate();
    sim.write(0x400); // only the old primary has it
    sim.node_mut("n1").net = false;
    // Rule 2: n1 cannot renew its lease and demotes before the lease runs out.
    sim.round();
    let n1 = sim.node("n1");
    assert!(
        n1.pg.running && !n1.pg.primary,
        "n1 did not fence: {:?}",
        n1.last
    );
    // Then its lease expires and another node takes over.
    sim.expire_lease("n1");
    sim.settle();
    let leader = sim.leader();
    assert_ne!(leader, "n1");
    // The partition heals: n1 gets a new lease, finds it diverged, rewinds, follows.
    sim.node_mut("n1").net = true;
    sim.node_mut("n1").lease = 300;
    sim.settle();
    assert!(sim
        .trace
        .iter()
        .any(|t| t.contains("n1: stopping to check whether my WAL diverged")));
    let mut replicas = others(&leader);
    replicas.sort();
    sim.assert_healthy(&replicas);
}

#[test]
fn stalled_primary_demotes_as_soon_as_it_runs_again() {
    // A stalled machine cannot fence itself in time: its lease runs out while it is
    // frozen and another node promotes. The invariant checked every round is that
    // the stalled primary's very next decision stops it.
    let mut sim = bootstrapped(true);
    sim.write(0x1000);
    sim.replicate();
    sim.write(0x400);
    sim.node_mut("n1").frozen = true;
    sim.expire_lease("n1");
    sim.settle();
    let leader = sim.leader();
    assert_ne!(leader, "n1");
    assert!(sim.node("n1").pg.primary, "still a (frozen) primary");
    sim.node_mut("n1").frozen = false;
    sim.node_mut("n1").lease = 300;
    let d = sim.decide_for(0);
    assert_eq!(d.reason, Reason::DemotingOtherHasLock);
    assert_eq!(d.actions[0], Action::Stop(StopMode::Immediate));
    sim.settle();
    let mut replicas = others(&leader);
    replicas.sort();
    sim.assert_healthy(&replicas);
}

#[test]
fn members_publish_their_ports() {
    // The fixture ports and the simulated conn_urls agree (clone sources resolve).
    let sim = bootstrapped(true);
    for n in ["n1", "n2", "n3"] {
        let m = &sim.w.etcd.members[n];
        assert_eq!(
            m.conn_host_port(),
            Some(("127.0.0.1".to_string(), port_of(n)))
        );
    }
}
