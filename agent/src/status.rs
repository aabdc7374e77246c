//! The node status the HA loop publishes after every cycle, and how a cycle's
//! facts map to it ([`NodeStatus::from_cycle`], [`pg_state`], the `From`
//! conversions of a probe into `xlog` and the member key).
//!
//! Rule (safety rule 7): REST handlers answer from this snapshot (`/patroni`
//! adds a fresh WAL position from `postgres::WalSampler`); they never query
//! postgres or etcd themselves, so health checks stay fast when either hangs.
//! The mapping is pure and table-tested; the agent only gathers its inputs.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::DynamicConfig;
use crate::dcs::model::{Cluster, MemberData};
use crate::ha::{received_position, DataDir, LongKind, LongResult, Memory};
use crate::postgres::ProbeResult;
pub use crate::postgres::ReplicationInfo;

/// Agent version, reported as `patroni.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The role postgres runs in, as `/patroni`, the member key and `/metrics` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// No data directory yet (or it was removed).
    Uninitialized,
}

impl Role {
    /// Patroni's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Uninitialized => "uninitialized",
        }
    }

    /// The role a probe that answered shows.
    pub fn of(in_recovery: bool) -> Role {
        if in_recovery {
            Role::Replica
        } else {
            Role::Primary
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The WAL position part of `/patroni` (`xlog`), in Patroni's two shapes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Xlog {
    Primary {
        location: u64,
    },
    Replica {
        received_location: u64,
        replayed_location: u64,
        replayed_timestamp: Option<String>,
        paused: bool,
    },
}

impl Xlog {
    /// The position peers and the member key compare: the primary's flush
    /// position, a replica's furthest of received and replayed.
    pub fn position(&self) -> u64 {
        match self {
            Xlog::Primary { location } => *location,
            Xlog::Replica {
                received_location, ..
            } => *received_location,
        }
    }
}

impl From<&ProbeResult> for Xlog {
    fn from(p: &ProbeResult) -> Xlog {
        if p.in_recovery {
            Xlog::Replica {
                received_location: received_position(p.receive_lsn, p.replay_lsn),
                replayed_location: p.replay_lsn.unwrap_or(0),
                replayed_timestamp: p.replay_timestamp.clone(),
                paused: p.replay_paused,
            }
        } else {
            Xlog::Primary {
                location: p.wal_lsn.unwrap_or(0),
            }
        }
    }
}

/// The postgres part of the member key, from a probe that answered (the rest
/// (urls, state, role, tags, ...) is the node's, see `agent/publish.rs`).
impl From<&ProbeResult> for MemberData {
    fn from(p: &ProbeResult) -> MemberData {
        let replica = p.in_recovery;
        MemberData {
            xlog_location: if replica {
                Some(Xlog::from(p).position())
            } else {
                p.wal_lsn
            },
            receive_lsn: p.receive_lsn.filter(|_| replica),
            replay_lsn: p.replay_lsn.filter(|_| replica),
            replication_state: p.receiver_status.clone().filter(|_| replica),
            timeline: p.timeline,
            pending_restart: p.pending_restart,
            ..Default::default()
        }
    }
}

/// Patroni's postgres state word: the long action under way if any, else what
/// the postmaster (our child) and the probe show.
pub fn pg_state(memory: &Memory, running: bool, accepting: bool) -> &'static str {
    if let Some((kind, _)) = memory.long_action {
        return match kind {
            LongKind::Bootstrap => "initializing new cluster",
            LongKind::Clone | LongKind::Reinit => "creating replica",
            LongKind::StartPrimary | LongKind::StartReplica => "starting",
            LongKind::Promote if accepting => "running",
            LongKind::Promote => "starting",
            LongKind::Rewind => "stopped",
            LongKind::Stop | LongKind::Demote => "stopping",
            LongKind::Restart => "restarting",
        };
    }
    if running {
        if accepting {
            "running"
        } else {
            "starting"
        }
    } else if memory.crashed {
        "crashed"
    } else if matches!(
        memory.last_result,
        Some(LongResult {
            kind: LongKind::StartPrimary | LongKind::StartReplica,
            ok: false,
            ..
        })
    ) {
        "start failed"
    } else {
        "stopped"
    }
}

/// What one HA cycle saw and did: everything [`NodeStatus::from_cycle`] maps.
#[derive(Debug, Clone)]
pub struct Cycle<'a> {
    pub scope: &'a str,
    pub name: &'a str,
    pub tags: Map<String, Value>,
    pub noloadbalance: bool,
    /// The postmaster (our child) runs now, after the cycle's actions.
    pub running: bool,
    /// This cycle's probe, when postgres answered it.
    pub probe: Option<&'a ProbeResult>,
    pub memory: &'a Memory,
    pub data_dir: &'a DataDir,
    /// The role postgres was last seen in (kept while it does not answer).
    pub last_role: Role,
    /// We hold the leader key on our lease.
    pub holds_lock: bool,
    /// etcd answered this cycle.
    pub dcs_read: bool,
    /// This cycle's cluster, or the last one known.
    pub cluster: Option<Arc<Cluster>>,
    /// The dynamic configuration in force.
    pub dynamic: &'a DynamicConfig,
    pub dcs_last_seen: i64,
    pub reason: String,
    pub scheduled_restart: Option<Value>,
    pub pending_restart_reason: Option<Value>,
    pub config_warnings: Vec<String>,
    /// When the cycle finished.
    pub at: Instant,
}

/// Everything REST needs, as of the last HA cycle.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub scope: String,
    pub name: String,
    /// Patroni's postgres state: `running`, `stopped`, `starting`, `crashed`,
    /// `initializing new cluster`, `creating replica`, `stopping`, `restarting`, ...
    pub state: String,
    pub role: Role,
    pub server_version: Option<u32>,
    pub postmaster_start_time: Option<String>,
    pub timeline: Option<u32>,
    pub xlog: Option<Xlog>,
    pub replication: Vec<ReplicationInfo>,
    /// Replica's `pg_stat_wal_receiver.status` (`streaming`) or `in archive recovery`.
    pub replication_state: Option<String>,
    pub database_system_identifier: Option<String>,
    pub tags: Map<String, Value>,
    pub noloadbalance: bool,
    /// We hold the leader key (renewed this cycle).
    pub is_leader: bool,
    pub cluster_unlocked: bool,
    pub paused: bool,
    /// Unix time of the last successful etcd read.
    pub dcs_last_seen: i64,
    /// The leader's last published WAL position (`status.optime`).
    pub leader_optime: u64,
    /// This node is listed as synchronous standby in `sync`.
    pub sync_standby: bool,
    pub pending_restart: bool,
    /// Why the agent did what it did in the last cycle.
    pub reason: String,
    /// When the last HA cycle finished (for `/liveness`).
    pub last_cycle: Instant,
    pub ttl: f64,
    pub loop_wait: f64,
    pub maximum_lag_on_failover: u64,
    /// The cluster as last read from etcd (for `/cluster`, `/history`, `/config`).
    pub cluster: Option<Arc<Cluster>>,
    /// A restart waiting for its time (`{"schedule": ..., filters}`).
    pub scheduled_restart: Option<Value>,
    /// `{"guc": {"old_value", "new_value"}}` for settings waiting for a restart.
    pub pending_restart_reason: Option<Value>,
    /// Fields of the dynamic configuration that could not be used as written
    /// (`key: message`), or were adjusted.
    pub config_warnings: Vec<String>,
}

impl NodeStatus {
    /// The status before the first cycle.
    pub fn initial(scope: &str, name: &str) -> NodeStatus {
        NodeStatus {
            scope: scope.to_string(),
            name: name.to_string(),
            state: "stopped".into(),
            role: Role::Uninitialized,
            server_version: None,
            postmaster_start_time: None,
            timeline: None,
            xlog: None,
            replication: vec![],
            replication_state: None,
            database_system_identifier: None,
            tags: Map::new(),
            noloadbalance: false,
            is_leader: false,
            cluster_unlocked: true,
            paused: false,
            dcs_last_seen: 0,
            leader_optime: 0,
            sync_standby: false,
            pending_restart: false,
            reason: "starting".into(),
            last_cycle: Instant::now(),
            ttl: 30.0,
            loop_wait: 10.0,
            maximum_lag_on_failover: 1_048_576,
            cluster: None,
            scheduled_restart: None,
            pending_restart_reason: None,
            config_warnings: vec![],
        }
    }

    /// The status one cycle leaves behind (pure; the table in the tests below
    /// shows it situation by situation).
    pub fn from_cycle(c: Cycle<'_>) -> NodeStatus {
        let p = c.probe;
        let cluster = c.cluster;
        let sync_standby = c.dynamic.synchronous_mode
            && cluster
                .as_ref()
                .and_then(|cl| cl.sync.as_ref())
                .is_some_and(|s| s.matches(c.name, false));
        NodeStatus {
            scope: c.scope.to_string(),
            name: c.name.to_string(),
            state: pg_state(c.memory, c.running, p.is_some()).to_string(),
            role: p.map_or(c.last_role, |p| Role::of(p.in_recovery)),
            server_version: p.and_then(|p| p.server_version),
            postmaster_start_time: p.and_then(|p| p.postmaster_start_time.clone()),
            timeline: p.and_then(|p| p.timeline),
            xlog: p.map(Xlog::from),
            replication: p.map(|p| p.replication.clone()).unwrap_or_default(),
            replication_state: p
                .filter(|p| p.in_recovery)
                .and_then(|p| p.receiver_status.clone()),
            database_system_identifier: p.and_then(|p| p.sysid.clone()).or_else(|| {
                match c.data_dir {
                    DataDir::Initialized { sysid, .. } => sysid.clone(),
                    _ => None,
                }
            }),
            tags: c.tags,
            noloadbalance: c.noloadbalance,
            is_leader: c.holds_lock && c.dcs_read,
            cluster_unlocked: cluster.as_ref().is_none_or(|cl| cl.leader.is_none()),
            paused: c.dynamic.pause,
            dcs_last_seen: c.dcs_last_seen,
            leader_optime: cluster
                .as_ref()
                .and_then(|cl| cl.status.optime)
                .unwrap_or(0),
            sync_standby,
            pending_restart: p.is_some_and(|p| p.pending_restart),
            reason: c.reason,
            last_cycle: c.at,
            ttl: c.dynamic.ttl,
            loop_wait: c.dynamic.loop_wait,
            maximum_lag_on_failover: c.dynamic.maximum_lag_on_failover,
            cluster,
            scheduled_restart: c.scheduled_restart,
            pending_restart_reason: c.pending_restart_reason,
            config_warnings: c.config_warnings,
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// Replayed position of a replica (0 otherwise).
    pub fn replayed_location(&self) -> u64 {
        match &self.xlog {
            Some(Xlog::Replica {
                replayed_location, ..
            }) => *replayed_location,
            _ => 0,
        }
    }

    /// The body of `GET /patroni`, with Patroni's field names.
    pub fn patroni_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("state".into(), json!(self.state));
        if let Some(t) = &self.postmaster_start_time {
            m.insert("postmaster_start_time".into(), json!(t));
        }
        m.insert("role".into(), json!(self.role));
        if let Some(v) = self.server_version {
            m.insert("server_version".into(), json!(v));
        }
        // Like Patroni: WAL positions only while postgres runs; a stopping or
        // stopped node must not look like a primary to a peer in a leader race.
        let live = matches!(self.state.as_str(), "running" | "starting" | "restarting");
        if let (Some(x), true) = (&self.xlog, live) {
            m.insert(
                "xlog".into(),
                serde_json::to_value(x).unwrap_or(Value::Null),
            );
        }
        if self.sync_standby {
            m.insert("sync_standby".into(), json!(true));
        }
        if let Some(t) = self.timeline {
            m.insert("timeline".into(), json!(t));
        }
        if let Some(r) = &self.replication_state {
            m.insert("replication_state".into(), json!(r));
        }
        if !self.replication.is_empty() {
            m.insert("replication".into(), json!(self.replication));
        }
        if self.paused {
            m.insert("pause".into(), json!(true));
        }
        if self.cluster_unlocked {
            m.insert("cluster_unlocked".into(), json!(true));
        }
        m.insert("dcs_last_seen".into(), json!(self.dcs_last_seen));
        if !self.tags.is_empty() {
            m.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        if let Some(s) = &self.database_system_identifier {
            m.insert("database_system_identifier".into(), json!(s));
        }
        if self.pending_restart {
            m.insert("pending_restart".into(), json!(true));
            if let Some(r) = &self.pending_restart_reason {
                m.insert("pending_restart_reason".into(), r.clone());
            }
        }
        if let Some(r) = &self.scheduled_restart {
            m.insert("scheduled_restart".into(), r.clone());
        }
        m.insert(
            "patroni".into(),
            json!({"version": VERSION, "scope": self.scope, "name": self.name}),
        );
        m.insert("reason".into(), json!(self.reason));
        if !self.config_warnings.is_empty() {
            m.insert("config_warnings".into(), json!(self.config_warnings));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::model::{Leader, SyncState};

    fn primary_probe() -> ProbeResult {
        ProbeResult {
            in_recovery: false,
            wal_lsn: Some(500),
            timeline: Some(3),
            sysid: Some("7000000000000000001".into()),
            server_version: Some(150002),
            ..Default::default()
        }
    }

    fn replica_probe(receive: Option<u64>, replay: Option<u64>) -> ProbeResult {
        ProbeResult {
            in_recovery: true,
            receive_lsn: receive,
            replay_lsn: replay,
            replay_timestamp: Some("t".into()),
            receiver_status: Some("streaming".into()),
            timeline: Some(3),
            sysid: Some("7000000000000000001".into()),
            ..Default::default()
        }
    }

    fn long(kind: LongKind) -> Memory {
        Memory {
            long_action: Some((kind, 1.0)),
            ..Default::default()
        }
    }

    fn replica_xlog(received: u64, replayed: u64) -> Option<Xlog> {
        Some(Xlog::Replica {
            received_location: received,
            replayed_location: replayed,
            replayed_timestamp: Some("t".into()),
            paused: false,
        })
    }

    /// A situation: postgres running?, its probe, the loop's memory, the role
    /// last seen; and the state, role and `xlog` the status shows for it.
    struct Row {
        name: &'static str,
        running: bool,
        probe: Option<ProbeResult>,
        memory: Memory,
        last_role: Role,
        state: &'static str,
        role: Role,
        xlog: Option<Xlog>,
    }

    fn row(name: &'static str, running: bool, probe: Option<ProbeResult>) -> Row {
        let role = probe
            .as_ref()
            .map_or(Role::Replica, |p| Role::of(p.in_recovery));
        Row {
            name,
            running,
            probe,
            memory: Memory::default(),
            last_role: Role::Replica,
            state: "running",
            role,
            xlog: None,
        }
    }

    fn status_of(r: &Row, dynamic: &DynamicConfig, cluster: Option<Arc<Cluster>>) -> NodeStatus {
        let data_dir = DataDir::Initialized {
            sysid: Some("7000000000000000009".into()),
            control: None,
            standby_signal: false,
        };
        NodeStatus::from_cycle(Cycle {
            scope: "demo",
            name: "node1",
            tags: Map::new(),
            noloadbalance: false,
            running: r.running,
            probe: r.probe.as_ref(),
            memory: &r.memory,
            data_dir: &data_dir,
            last_role: r.last_role,
            holds_lock: true,
            dcs_read: true,
            cluster,
            dynamic,
            dcs_last_seen: 42,
            reason: "why".into(),
            scheduled_restart: None,
            pending_restart_reason: None,
            config_warnings: vec![],
            at: Instant::now(),
        })
    }

    #[test]
    fn state_role_and_xlog_per_situation() {
        let rows = vec![
            Row {
                xlog: Some(Xlog::Primary { location: 500 }),
                ..row("primary running", true, Some(primary_probe()))
            },
            Row {
                xlog: replica_xlog(200, 150),
                ..row(
                    "replica streaming",
                    true,
                    Some(replica_probe(Some(200), Some(150))),
                )
            },
            Row {
                xlog: replica_xlog(150, 150),
                ..row(
                    "replica, receiver down: received is what was replayed",
                    true,
                    Some(replica_probe(None, Some(150))),
                )
            },
            Row {
                state: "starting",
                ..row(
                    "running, the probe failed: the role last seen, no position",
                    true,
                    None,
                )
            },
            Row {
                state: "stopped",
                ..row("stopped", false, None)
            },
            Row {
                state: "crashed",
                memory: Memory {
                    crashed: true,
                    ..Default::default()
                },
                ..row("crashed", false, None)
            },
            Row {
                state: "start failed",
                memory: Memory {
                    last_result: Some(LongResult {
                        kind: LongKind::StartReplica,
                        ok: false,
                        message: "x".into(),
                        at: 1.0,
                    }),
                    ..Default::default()
                },
                ..row("a start failed", false, None)
            },
            Row {
                state: "stopped",
                memory: Memory {
                    last_result: Some(LongResult {
                        kind: LongKind::Stop,
                        ok: false,
                        message: "x".into(),
                        at: 1.0,
                    }),
                    ..Default::default()
                },
                ..row("another long action failed", false, None)
            },
            Row {
                state: "initializing new cluster",
                memory: long(LongKind::Bootstrap),
                last_role: Role::Uninitialized,
                role: Role::Uninitialized,
                ..row("bootstrapping", true, None)
            },
            Row {
                state: "creating replica",
                memory: long(LongKind::Clone),
                ..row("cloning", false, None)
            },
            Row {
                state: "creating replica",
                memory: long(LongKind::Reinit),
                ..row("reinitializing", false, None)
            },
            Row {
                state: "starting",
                memory: long(LongKind::Promote),
                ..row("promoting, not answering", true, None)
            },
            Row {
                state: "running",
                memory: long(LongKind::Promote),
                xlog: replica_xlog(200, 200),
                ..row(
                    "promoting, still a replica",
                    true,
                    Some(replica_probe(Some(200), Some(200))),
                )
            },
            Row {
                state: "stopping",
                memory: long(LongKind::Demote),
                xlog: Some(Xlog::Primary { location: 500 }),
                ..row("demoting", true, Some(primary_probe()))
            },
            Row {
                state: "restarting",
                memory: long(LongKind::Restart),
                ..row("restarting", false, None)
            },
            Row {
                state: "stopped",
                memory: long(LongKind::Rewind),
                ..row("rewinding", false, None)
            },
        ];
        let dynamic = DynamicConfig::default();
        for r in &rows {
            let st = status_of(r, &dynamic, None);
            assert_eq!(st.state, r.state, "{}: state", r.name);
            assert_eq!(st.role, r.role, "{}: role", r.name);
            assert_eq!(st.xlog, r.xlog, "{}: xlog", r.name);
            // the identifier postgres reports, else the data directory's
            let sysid = if r.probe.is_some() {
                "7000000000000000001"
            } else {
                "7000000000000000009"
            };
            assert_eq!(
                st.database_system_identifier.as_deref(),
                Some(sysid),
                "{}",
                r.name
            );
            assert_eq!(
                st.replication_state.is_some(),
                r.probe.as_ref().is_some_and(|p| p.in_recovery),
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn cluster_facts_and_pause() {
        let r = row(
            "replica streaming",
            true,
            Some(replica_probe(Some(200), Some(150))),
        );
        let mut dynamic = DynamicConfig {
            pause: true,
            ..Default::default()
        };
        let st = status_of(&r, &dynamic, None);
        assert!(st.paused);
        assert_eq!(st.state, "running", "paused changes no state");
        assert!(st.cluster_unlocked, "no cluster known: unlocked");
        assert!(!st.sync_standby);

        let mut cluster = Cluster {
            leader: Some(Leader {
                name: "node2".into(),
                lease: 1,
                mod_revision: 1,
            }),
            sync: Some(SyncState::parse(
                r#"{"leader": "node2", "sync_standby": "node1"}"#,
                1,
            )),
            ..Default::default()
        };
        cluster.status.optime = Some(900);
        let cluster = Some(Arc::new(cluster));
        let st = status_of(&r, &dynamic, cluster.clone());
        assert!(!st.cluster_unlocked);
        assert_eq!(st.leader_optime, 900);
        assert!(
            !st.sync_standby,
            "the sync key counts in synchronous mode only"
        );
        dynamic.synchronous_mode = true;
        assert!(status_of(&r, &dynamic, cluster).sync_standby);
    }

    #[test]
    fn member_key_from_a_probe() {
        let m = MemberData::from(&replica_probe(None, Some(150)));
        assert_eq!(m.xlog_location, Some(150));
        assert_eq!((m.receive_lsn, m.replay_lsn), (None, Some(150)));
        assert_eq!(m.replication_state.as_deref(), Some("streaming"));
        assert_eq!(m.timeline, Some(3));
        let m = MemberData::from(&primary_probe());
        assert_eq!(m.xlog_location, Some(500));
        assert_eq!(
            (m.receive_lsn, m.replay_lsn, m.replication_state),
            (None, None, None)
        );
    }
}
