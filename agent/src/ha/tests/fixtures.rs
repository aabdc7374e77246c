//! Builders that keep the decision tests short: a cluster as etcd would show it,
//! postgres and data-directory views, peers and the agent's memory.
//!
//! This node is always [`ME`] (`n1`, port 5432); other members are `n2` (5433) and
//! `n3` (5434). Ports follow the name so that a [`Source`] can be written as `src("n2")`.

use serde_json::{json, Value};

use crate::config::DynamicConfig;
use crate::dcs::model::{
    Cluster, ClusterConfig, Failover, HistoryEntry, Leader, Member, MemberData,
};
use crate::ha::{
    Action, DataDir, LongKind, LongResult, Memory, Observation, PeerStatus, PgView, Settings,
    Source,
};
use crate::postgres::ControlState;

pub const ME: &str = "n1";
/// Our current lease.
pub const LEASE: i64 = 7;
/// An older lease of ours, or another node's.
pub const OLD_LEASE: i64 = 3;
pub const SYSID: &str = "7304861563316969481";
pub const OTHER_SYSID: &str = "7400000000000000001";
/// One WAL segment: a handy unit for positions.
pub const SEG: u64 = 0x100_0000;

/// Postgres port of a member: `n1` -> 5432, `n2` -> 5433, ...
pub fn port_of(name: &str) -> u16 {
    let n: u16 = name.trim_start_matches('n').parse().unwrap_or(9);
    5431 + n
}

pub fn src(name: &str) -> Source {
    Source {
        name: name.to_string(),
        host: "127.0.0.1".into(),
        port: port_of(name),
    }
}

pub fn settings() -> Settings {
    Settings {
        name: ME.into(),
        failover_priority: 1,
        bootstrap_config: json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10}),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- members

/// A running replica on timeline 1 at position 0.
pub fn member(name: &str) -> Member {
    let port = port_of(name);
    Member {
        name: name.into(),
        lease: OLD_LEASE,
        mod_revision: 1,
        data: MemberData {
            conn_url: Some(format!("postgres://127.0.0.1:{port}/postgres")),
            api_url: Some(format!("http://127.0.0.1:{}/patroni", port + 2576)),
            state: Some("running".into()),
            role: Some("replica".into()),
            timeline: Some(1),
            xlog_location: Some(0),
            ..Default::default()
        },
    }
}

pub trait MemberExt: Sized {
    fn data_mut(&mut self) -> &mut MemberData;

    fn primary(mut self) -> Self {
        self.data_mut().role = Some("primary".into());
        self
    }
    fn stopped(mut self) -> Self {
        self.data_mut().state = Some("stopped".into());
        self
    }
    fn timeline(mut self, tl: u32) -> Self {
        self.data_mut().timeline = Some(tl);
        self
    }
    fn xlog(mut self, lsn: u64) -> Self {
        self.data_mut().xlog_location = Some(lsn);
        self
    }
    fn tag(mut self, name: &str, v: Value) -> Self {
        self.data_mut().tags.insert(name.into(), v);
        self
    }
    fn no_conn_url(mut self) -> Self {
        self.data_mut().conn_url = None;
        self
    }
}

impl MemberExt for Member {
    fn data_mut(&mut self) -> &mut MemberData {
        &mut self.data
    }
}

// ---------------------------------------------------------------- cluster

/// An initialized cluster (initialize = [`SYSID`], default config), no leader, no members.
pub fn cluster() -> Cluster {
    Cluster {
        initialize: Some(SYSID.into()),
        config: Some(config_of(json!({}))),
        ..Default::default()
    }
}

/// Nothing in etcd yet.
pub fn empty_cluster() -> Cluster {
    Cluster::default()
}

/// `config` as read back from etcd.
pub fn config_of(raw: Value) -> ClusterConfig {
    let parsed = DynamicConfig::from_json(&raw).ok();
    assert!(parsed.is_some(), "test config does not parse: {raw}");
    ClusterConfig {
        raw,
        parsed,
        notes: vec![],
        mod_revision: 5,
    }
}

pub trait ClusterExt: Sized {
    fn c(&mut self) -> &mut Cluster;

    fn with_member(mut self, m: Member) -> Self {
        let c = self.c();
        c.members.retain(|x| x.name != m.name);
        c.members.push(m);
        c.members.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }
    /// The leader key naming `name`, bound to `lease`.
    fn leader(mut self, name: &str, lease: i64) -> Self {
        self.c().leader = Some(Leader {
            name: name.into(),
            lease,
            mod_revision: 9,
        });
        self
    }
    /// `n2` holds the key and runs as primary on `tl`.
    fn led_by_n2(self, tl: u32) -> Self {
        self.with_member(member("n2").primary().timeline(tl))
            .leader("n2", OLD_LEASE)
    }
    /// We hold the key with our current lease.
    fn led_by_me(self) -> Self {
        self.leader(ME, LEASE)
    }
    fn optime(mut self, lsn: u64) -> Self {
        self.c().status.optime = Some(lsn);
        self
    }
    /// `timeline` ended at `lsn`, promoting `new_leader`.
    fn history(mut self, timeline: u32, lsn: u64, new_leader: &str) -> Self {
        self.c().history.entries.push(HistoryEntry {
            timeline,
            lsn,
            reason: "no recovery target specified".into(),
            timestamp: Some("2026-01-01T00:00:00+00:00".into()),
            new_leader: Some(new_leader.into()),
        });
        self
    }
    fn config(mut self, raw: Value) -> Self {
        self.c().config = Some(config_of(raw));
        self
    }
    fn paused(self) -> Self {
        self.config(json!({"pause": true}))
    }
    fn initialize(mut self, v: Option<&str>) -> Self {
        self.c().initialize = v.map(str::to_string);
        self
    }
    fn no_config(mut self) -> Self {
        self.c().config = None;
        self
    }
    fn failover(mut self, leader: Option<&str>, candidate: Option<&str>) -> Self {
        self.c().failover = Some(Failover {
            leader: leader.map(str::to_string),
            candidate: candidate.map(str::to_string),
            scheduled_at: None,
            mod_revision: 42,
        });
        self
    }
}

impl ClusterExt for Cluster {
    fn c(&mut self) -> &mut Cluster {
        self
    }
}

// ---------------------------------------------------------------- postgres

/// A running primary.
pub fn pg_primary(lsn: u64, tl: u32) -> PgView {
    PgView {
        running: true,
        accepting: true,
        in_recovery: Some(false),
        timeline: Some(tl),
        wal_lsn: Some(lsn),
        slots: Some(vec![]),
        sysid: Some(SYSID.into()),
        ..Default::default()
    }
}

/// A running replica, streaming.
pub fn pg_replica(receive: u64, replay: u64, tl: u32) -> PgView {
    PgView {
        running: true,
        accepting: true,
        in_recovery: Some(true),
        timeline: Some(tl),
        receive_lsn: Some(receive),
        replay_lsn: Some(replay),
        receiver_status: Some("streaming".into()),
        slots: Some(vec![]),
        sysid: Some(SYSID.into()),
        ..Default::default()
    }
}

/// The child runs but the probe query failed (starting up, or hung).
pub fn pg_not_answering() -> PgView {
    PgView {
        running: true,
        ..Default::default()
    }
}

pub fn pg_stopped() -> PgView {
    PgView::default()
}

pub trait PgExt: Sized {
    fn p(&mut self) -> &mut PgView;

    fn replay_paused(mut self) -> Self {
        self.p().replay_paused = true;
        self
    }
    fn receiver(mut self, status: Option<&str>) -> Self {
        self.p().receiver_status = status.map(str::to_string);
        self
    }
    fn slots(mut self, slots: &[&str]) -> Self {
        self.p().slots = Some(slots.iter().map(|s| s.to_string()).collect());
        self
    }
}

impl PgExt for PgView {
    fn p(&mut self) -> &mut PgView {
        self
    }
}

// ---------------------------------------------------------------- data directory

/// pg_control with `state` (`shut down`, `in production`, `shut down in recovery`,
/// `in archive recovery`, ...) whose last position is `lsn` on `tl`: the checkpoint of a
/// primary, the minimum recovery point of a replica.
pub fn control(state: &str, lsn: u64, tl: u32) -> ControlState {
    let recovery = matches!(state, "shut down in recovery" | "in archive recovery");
    ControlState {
        state: state.into(),
        sysid: SYSID.into(),
        checkpoint_lsn: if recovery {
            lsn.saturating_sub(0x1000)
        } else {
            lsn
        },
        checkpoint_timeline: tl,
        min_recovery_lsn: if recovery { lsn } else { 0 },
        min_recovery_timeline: if recovery { tl } else { 0 },
    }
}

/// An initialized data directory of this cluster, pg_control not read.
pub fn data_ok() -> DataDir {
    DataDir::Initialized {
        sysid: Some(SYSID.into()),
        control: None,
        standby_signal: false,
    }
}

/// An initialized data directory with `standby.signal`.
pub fn data_standby() -> DataDir {
    DataDir::Initialized {
        sysid: Some(SYSID.into()),
        control: None,
        standby_signal: true,
    }
}

pub fn data_with(c: ControlState, standby_signal: bool) -> DataDir {
    DataDir::Initialized {
        sysid: Some(c.sysid.clone()),
        control: Some(c),
        standby_signal,
    }
}

// ---------------------------------------------------------------- observation

/// This node's view of `cluster`: our lease, an initialized data dir, postgres stopped.
pub fn obs(cluster: Cluster) -> Observation {
    Observation {
        now: 100.0,
        cluster: Some(cluster),
        lease: LEASE,
        data_dir: data_ok(),
        pg: pg_stopped(),
        peers: None,
        memory: Memory::default(),
        unix_now: 1_800_000_000.0,
        request: None,
        config_changed: false,
        fence_down: false,
    }
}

/// etcd could not be read this cycle.
pub fn obs_no_dcs() -> Observation {
    Observation {
        cluster: None,
        ..obs(Cluster::default())
    }
}

pub trait ObsExt: Sized {
    fn o(&mut self) -> &mut Observation;

    fn pg(mut self, pg: PgView) -> Self {
        self.o().pg = pg;
        self
    }
    fn data(mut self, d: DataDir) -> Self {
        self.o().data_dir = d;
        self
    }
    fn peers(mut self, peers: Vec<PeerStatus>) -> Self {
        self.o().peers = Some(peers);
        self
    }
    fn mem(mut self, f: impl FnOnce(&mut Memory)) -> Self {
        f(&mut self.o().memory);
        self
    }
    fn long(self, kind: LongKind) -> Self {
        self.mem(|m| m.long_action = Some((kind, 90.0)))
    }
    fn last_result(self, kind: LongKind, ok: bool, message: &str) -> Self {
        self.mem(|m| {
            m.last_result = Some(LongResult {
                kind,
                ok,
                message: message.into(),
                at: 95.0,
            })
        })
    }
    fn following(self, upstream: Option<&str>) -> Self {
        self.mem(|m| m.following = Some(upstream.map(str::to_string)))
    }
}

impl ObsExt for Observation {
    fn o(&mut self) -> &mut Observation {
        self
    }
}

// ---------------------------------------------------------------- peers

/// A reachable replica at `wal`, priority 1.
pub fn peer(name: &str, wal: u64) -> PeerStatus {
    PeerStatus {
        name: name.into(),
        reachable: true,
        in_recovery: true,
        wal_position: wal,
        timeline: Some(1),
        nofailover: false,
        failover_priority: 1,
    }
}

pub trait PeerExt: Sized {
    fn ps(&mut self) -> &mut PeerStatus;

    fn primary(mut self) -> Self {
        self.ps().in_recovery = false;
        self
    }
    fn unreachable(mut self) -> Self {
        self.ps().reachable = false;
        self
    }
    fn nofailover(mut self) -> Self {
        self.ps().nofailover = true;
        self
    }
    fn priority(mut self, p: i64) -> Self {
        self.ps().failover_priority = p;
        self
    }
}

impl PeerExt for PeerStatus {
    fn ps(&mut self) -> &mut PeerStatus {
        self
    }
}

// ---------------------------------------------------------------- actions

pub fn is_long(a: &Action) -> bool {
    a.long_kind().is_some()
}

/// Actions that make this node a writable primary.
pub fn makes_primary(a: &Action) -> bool {
    matches!(
        a,
        Action::Promote | Action::StartPrimary | Action::Bootstrap
    )
}
