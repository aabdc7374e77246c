//! The node status the HA loop publishes after every cycle.
//!
//! Rule (safety rule 7): REST handlers answer from this snapshot only; they never
//! query postgres or etcd themselves, so health checks stay fast when either hangs.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::dcs::model::Cluster;

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

/// One row of `pg_stat_replication`, as `/patroni` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationInfo {
    pub usename: Option<String>,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sync_priority: Option<i32>,
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
