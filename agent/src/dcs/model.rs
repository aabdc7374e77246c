//! The cluster as stored in etcd: key names and value formats, exactly as Patroni 4
//! writes them, so that patronictl, vip-manager and dashboards keep working.
//!
//! Rule: no IO here. Parsing is lenient like Patroni's (a garbled value reads as
//! empty, never as an error that stops the agent), serialization is exact.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::DynamicConfig;

/// Key names under the cluster prefix.
pub mod keys {
    pub const INITIALIZE: &str = "initialize";
    pub const CONFIG: &str = "config";
    pub const LEADER: &str = "leader";
    pub const FAILOVER: &str = "failover";
    pub const HISTORY: &str = "history";
    pub const MEMBERS: &str = "members/";
    pub const STATUS: &str = "status";
    pub const LEADER_OPTIME: &str = "optime/leader";
    pub const SYNC: &str = "sync";
    pub const FAILSAFE: &str = "failsafe";
}

/// One key as read from etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct RawKv {
    /// Key relative to the cluster prefix (`leader`, `members/node1`, ...).
    pub key: String,
    pub value: String,
    pub lease: i64,
    pub mod_revision: i64,
    pub create_revision: i64,
}

/// Everything the agent knows about the cluster from one read of the prefix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// `initialize` key: the system identifier, `""` while a bootstrap is in progress.
    pub initialize: Option<String>,
    pub config: Option<ClusterConfig>,
    pub leader: Option<Leader>,
    pub members: Vec<Member>,
    pub status: Status,
    pub failover: Option<Failover>,
    pub sync: Option<SyncState>,
    pub history: History,
    /// etcd revision of the read.
    pub revision: i64,
    /// The dynamic configuration the agent runs with, set by the agent after the
    /// read (bad fields keep their last valid value; an absent `config` key keeps
    /// the last one seen), so `decide` and the executor read one value.
    pub in_force: Option<DynamicConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The JSON as stored (unknown keys survive rewrites).
    pub raw: Value,
    /// Typed view, read leniently (a bad field takes its default and is named in
    /// `notes`); `None` when the stored value is not JSON at all. The agent replaces
    /// it with its own effective configuration, where a bad field keeps its last
    /// valid value instead (see [`DynamicConfig::effective`]).
    pub parsed: Option<DynamicConfig>,
    /// What could not be used as written.
    pub notes: Vec<crate::config::Note>,
    pub mod_revision: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    pub name: String,
    pub lease: i64,
    pub mod_revision: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub lease: i64,
    pub mod_revision: i64,
    pub data: MemberData,
}

/// The JSON value of `members/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub tags: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// Fields we do not know, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl MemberData {
    pub fn parse(value: &str) -> MemberData {
        serde_json::from_str(value).unwrap_or_default()
    }

    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn tag_bool(&self, name: &str) -> bool {
        match self.tags.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => {
                matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1")
            }
            _ => false,
        }
    }

    pub fn tag_int(&self, name: &str) -> Option<i64> {
        match self.tags.get(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// Same rule as [`crate::config::Tags::nofailover`], on published tags.
    pub fn nofailover(&self) -> bool {
        if self.tags.contains_key("nofailover") {
            return self.tag_bool("nofailover");
        }
        matches!(self.tag_int("failover_priority"), Some(p) if p <= 0)
    }

    pub fn failover_priority(&self) -> i64 {
        if self.nofailover() {
            0
        } else {
            self.tag_int("failover_priority").unwrap_or(1)
        }
    }

    /// `(host, port)` of postgres from `conn_url` (`postgres://host:port/postgres`).
    pub fn conn_host_port(&self) -> Option<(String, u16)> {
        parse_conn_url(self.conn_url.as_deref()?)
    }
}

/// `postgres://[user@]host:port/db` or `postgresql://...` -> (host, port).
pub fn parse_conn_url(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))?;
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let hostport = rest.split(['/', '?']).next()?;
    if let Some(stripped) = hostport.strip_prefix('[') {
        // [ipv6]:port
        let (host, after) = stripped.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map(|p| p.parse().ok())
            .unwrap_or(Some(5432))?;
        return Some((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None if !hostport.is_empty() => Some((hostport.to_string(), 5432)),
        None => None,
    }
}

/// The `status` key: the leader's last known WAL position and slot positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub optime: Option<u64>,
    pub slots: Option<BTreeMap<String, u64>>,
    pub retain_slots: Vec<String>,
}

impl Status {
    pub fn parse(value: &str) -> Status {
        let v: Value = match serde_json::from_str(value) {
            Ok(v) => v,
            // the legacy `optime/leader` key holds a bare integer
            Err(_) => {
                return Status {
                    optime: value.trim().parse().ok(),
                    ..Default::default()
                }
            }
        };
        match v {
            Value::Number(n) => Status {
                optime: n.as_u64(),
                ..Default::default()
            },
            Value::Object(m) => {
                let optime = m.get("optime").and_then(value_as_u64);
                let slots = m.get("slots").and_then(|s| match s {
                    Value::Object(o) => Some(
                        o.iter()
                            .filter_map(|(k, v)| Some((k.clone(), value_as_u64(v)?)))
                            .collect(),
                    ),
                    _ => None,
                });
                let retain_slots = match m.get("retain_slots") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                    _ => vec![],
                };
                Status {
                    optime,
                    slots,
                    retain_slots,
                }
            }
            _ => Status::default(),
        }
    }

    pub fn to_json_string(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("optime".into(), json!(self.optime.unwrap_or(0)));
        if let Some(s) = &self.slots {
            m.insert("slots".into(), json!(s));
        }
        if !self.retain_slots.is_empty() {
            m.insert("retain_slots".into(), json!(self.retain_slots));
        }
        Value::Object(m).to_string()
    }
}

fn value_as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `failover` key: a requested switchover (`leader` set) or failover (`member` only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failover {
    pub leader: Option<String>,
    /// The candidate (`member` in the JSON).
    pub candidate: Option<String>,
    /// ISO 8601 timestamp of a scheduled switchover.
    pub scheduled_at: Option<String>,
    pub mod_revision: i64,
}

impl Failover {
    pub fn parse(value: &str, mod_revision: i64) -> Option<Failover> {
        let v: Value = serde_json::from_str(value).ok()?;
        let m = v.as_object()?;
        let s = |k: &str| {
            m.get(k)
                .and_then(|x| x.as_str())
                .filter(|x| !x.is_empty())
                .map(str::to_string)
        };
        let f = Failover {
            leader: s("leader"),
            candidate: s("member"),
            scheduled_at: s("scheduled_at"),
            mod_revision,
        };
        (f.leader.is_some() || f.candidate.is_some()).then_some(f)
    }

    pub fn to_json_string(&self) -> String {
        let mut m = serde_json::Map::new();
        if let Some(l) = &self.leader {
            m.insert("leader".into(), json!(l));
        }
        if let Some(c) = &self.candidate {
            m.insert("member".into(), json!(c));
        }
        if let Some(t) = &self.scheduled_at {
            m.insert("scheduled_at".into(), json!(t));
        }
        Value::Object(m).to_string()
    }
}

/// The `sync` key (synchronous replication state).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncState {
    pub leader: Option<String>,
    /// Comma-separated member names.
    pub sync_standby: Option<String>,
    pub quorum: u32,
    pub mod_revision: i64,
}

impl SyncState {
    pub fn parse(value: &str, mod_revision: i64) -> SyncState {
        let v: Value = serde_json::from_str(value).unwrap_or(Value::Null);
        let leader = v.get("leader").and_then(|x| x.as_str()).map(str::to_string);
        let sync_standby = v
            .get("sync_standby")
            .and_then(|x| x.as_str())
            .map(str::to_string);
        let quorum = v.get("quorum").and_then(value_as_u64).unwrap_or(0) as u32;
        SyncState {
            leader,
            sync_standby,
            quorum,
            mod_revision,
        }
    }

    pub fn members(&self) -> Vec<String> {
        self.sync_standby
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Is `name` a listed synchronous standby (or, with `check_leader`, the leader)?
    pub fn matches(&self, name: &str, check_leader: bool) -> bool {
        self.members().iter().any(|m| m.eq_ignore_ascii_case(name))
            || (check_leader
                && self
                    .leader
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(name)))
    }

    pub fn to_json_string(&self) -> String {
        json!({
            "leader": self.leader,
            "sync_standby": self.sync_standby,
            "quorum": self.quorum,
        })
        .to_string()
    }
}

/// One promotion: `[timeline, switch_lsn, reason, timestamp, new_leader]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where it ended (the new timeline starts here).
    pub lsn: u64,
    pub reason: String,
    pub timestamp: Option<String>,
    pub new_leader: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
    pub mod_revision: i64,
}

impl History {
    pub fn parse(value: &str, mod_revision: i64) -> History {
        let v: Value = serde_json::from_str(value).unwrap_or(Value::Null);
        let entries = match v {
            Value::Array(lines) => lines
                .iter()
                .filter_map(|line| {
                    let a = line.as_array()?;
                    Some(HistoryEntry {
                        timeline: value_as_u64(a.first()?)? as u32,
                        lsn: value_as_u64(a.get(1)?)?,
                        reason: a.get(2).and_then(|x| x.as_str()).unwrap_or("").to_string(),
                        timestamp: a.get(3).and_then(|x| x.as_str()).map(str::to_string),
                        new_leader: a.get(4).and_then(|x| x.as_str()).map(str::to_string),
                    })
                })
                .collect(),
            _ => vec![],
        };
        History {
            entries,
            mod_revision,
        }
    }

    pub fn to_json(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|e| {
                    let mut a = vec![json!(e.timeline), json!(e.lsn), json!(e.reason)];
                    if let Some(t) = &e.timestamp {
                        a.push(json!(t));
                        if let Some(l) = &e.new_leader {
                            a.push(json!(l));
                        }
                    }
                    Value::Array(a)
                })
                .collect(),
        )
    }

    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }

    /// Where `timeline` ended, if the history knows.
    pub fn switch_lsn(&self, timeline: u32) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.timeline == timeline)
            .map(|e| e.lsn)
    }

    /// The newest timeline this history leads to (last ended timeline + 1), 1 when empty.
    pub fn current_timeline(&self) -> u32 {
        self.entries
            .iter()
            .map(|e| e.timeline + 1)
            .max()
            .unwrap_or(1)
    }
}

impl Cluster {
    /// Build the cluster view from the keys under the prefix (keys relative to it).
    pub fn from_kvs(kvs: &[RawKv], revision: i64) -> Cluster {
        let mut c = Cluster {
            revision,
            ..Default::default()
        };
        let mut leader_raw: Option<&RawKv> = None;
        let mut legacy_optime: Option<&RawKv> = None;
        for kv in kvs {
            match kv.key.as_str() {
                keys::INITIALIZE => c.initialize = Some(kv.value.clone()),
                keys::CONFIG => {
                    let raw: Option<Value> = serde_json::from_str(&kv.value).ok();
                    let (parsed, notes) = match &raw {
                        Some(r) => {
                            let (cfg, notes) =
                                DynamicConfig::effective(r, &DynamicConfig::default());
                            (Some(cfg), notes)
                        }
                        None => (None, vec![]),
                    };
                    let raw = raw.unwrap_or(Value::Null);
                    c.config = Some(ClusterConfig {
                        raw,
                        parsed,
                        notes,
                        mod_revision: kv.mod_revision,
                    });
                }
                keys::LEADER => leader_raw = Some(kv),
                keys::FAILOVER => c.failover = Failover::parse(&kv.value, kv.mod_revision),
                keys::HISTORY => c.history = History::parse(&kv.value, kv.mod_revision),
                keys::STATUS => c.status = Status::parse(&kv.value),
                keys::LEADER_OPTIME => legacy_optime = Some(kv),
                keys::SYNC => c.sync = Some(SyncState::parse(&kv.value, kv.mod_revision)),
                k => {
                    if let Some(name) = k.strip_prefix(keys::MEMBERS) {
                        if !name.is_empty() && !name.contains('/') {
                            c.members.push(Member {
                                name: name.to_string(),
                                lease: kv.lease,
                                mod_revision: kv.mod_revision,
                                data: MemberData::parse(&kv.value),
                            });
                        }
                    }
                }
            }
        }
        if c.status.optime.is_none() {
            if let Some(kv) = legacy_optime {
                c.status.optime = Status::parse(&kv.value).optime;
            }
        }
        if let Some(kv) = leader_raw {
            if !kv.value.is_empty() {
                c.leader = Some(Leader {
                    name: kv.value.clone(),
                    lease: kv.lease,
                    mod_revision: kv.mod_revision,
                });
            }
        }
        c.members.sort_by(|a, b| a.name.cmp(&b.name));
        c
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }

    pub fn leader_member(&self) -> Option<&Member> {
        self.member(self.leader_name()?)
    }

    pub fn is_unlocked(&self) -> bool {
        self.leader.is_none()
    }

    /// Dynamic config in effect: the agent's (see `in_force`), else the stored one
    /// read leniently, else defaults.
    pub fn dynamic(&self) -> DynamicConfig {
        if let Some(c) = &self.in_force {
            return c.clone();
        }
        self.config
            .as_ref()
            .and_then(|c| c.parsed.clone())
            .unwrap_or_default()
    }

    /// Cluster timeline: the leader's published timeline, else from history.
    pub fn timeline(&self) -> u32 {
        self.leader_member()
            .and_then(|m| m.data.timeline)
            .unwrap_or_else(|| self.history.current_timeline())
    }
}

/// Physical slot name for a member, as Patroni derives it.
pub fn slot_name_for(member: &str) -> String {
    let mut s: String = member
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(63);
    s
}

/// Format an LSN as postgres prints it (`0/3000060`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parse `0/3000060` into a byte position.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// One successful keep-alive (or grant) of one of our etcd leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRenewal {
    pub lease: i64,
    /// When the request was sent, on the fence clock: etcd restarted the lease's
    /// countdown no earlier than this.
    pub sent: Duration,
    /// The lease's TTL: the smaller of what we asked for and what etcd granted.
    pub ttl: Duration,
}

impl LeaseRenewal {
    /// `requested` and `granted` in seconds as etcd counts them (`granted <= 0`:
    /// the lease does not exist, nothing was renewed).
    pub fn new(lease: i64, sent: Duration, requested: i64, granted: i64) -> Option<LeaseRenewal> {
        let ttl = requested.min(granted);
        (ttl > 0).then(|| LeaseRenewal {
            lease,
            sent,
            ttl: Duration::from_secs(ttl.unsigned_abs()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, lease: i64, rev: i64) -> RawKv {
        RawKv {
            key: key.into(),
            value: value.into(),
            lease,
            mod_revision: rev,
            create_revision: rev,
        }
    }

    #[test]
    fn reads_a_patroni_written_cluster() {
        // Values as Patroni 4 writes them.
        let kvs = vec![
            kv("initialize", "7304861563316969481", 0, 1),
            kv(
                "config",
                r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true}}"#,
                0,
                2,
            ),
            kv("leader", "node1", 77, 9),
            kv(
                "members/node1",
                r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":50331808,"timeline":2}"#,
                77,
                8,
            ),
            kv(
                "members/node2",
                r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":50331808,"replication_state":"streaming","timeline":2,"tags":{"nofailover":true},"custom":"kept"}"#,
                78,
                7,
            ),
            kv(
                "status",
                r#"{"optime":50331808,"slots":{"node2":50331808},"retain_slots":["node2"]}"#,
                0,
                6,
            ),
            kv(
                "history",
                r#"[[1,25165984,"no recovery target specified","2026-11-22T02:30:00.123456+00:00","node1"]]"#,
                0,
                5,
            ),
            kv(
                "failover",
                r#"{"leader":"node1","member":"node2","scheduled_at":"2026-11-22T03:00:00+00:00"}"#,
                0,
                4,
            ),
            kv(
                "sync",
                r#"{"leader":"node1","sync_standby":"node2","quorum":0}"#,
                0,
                3,
            ),
        ];
        let c = Cluster::from_kvs(&kvs, 10);
        assert_eq!(c.initialize.as_deref(), Some("7304861563316969481"));
        assert_eq!(
            c.leader.as_ref().map(|l| (l.name.as_str(), l.lease)),
            Some(("node1", 77))
        );
        assert_eq!(c.members.len(), 2);
        let n2 = c.member("node2").unwrap();
        assert!(n2.data.nofailover());
        assert_eq!(n2.data.extra.get("custom"), Some(&json!("kept")));
        assert_eq!(n2.data.conn_host_port(), Some(("10.0.0.2".into(), 5432)));
        assert_eq!(c.status.optime, Some(50331808));
        assert_eq!(c.status.retain_slots, vec!["node2".to_string()]);
        assert_eq!(c.history.switch_lsn(1), Some(25165984));
        assert_eq!(c.history.current_timeline(), 2);
        assert_eq!(c.timeline(), 2);
        let f = c.failover.as_ref().unwrap();
        assert_eq!(
            (f.leader.as_deref(), f.candidate.as_deref()),
            (Some("node1"), Some("node2"))
        );
        assert!(c.sync.as_ref().unwrap().matches("node2", false));
        assert!(c.sync.as_ref().unwrap().matches("node1", true));
        let cfg = c.dynamic();
        assert!(cfg.postgresql.use_pg_rewind);
        assert_eq!(cfg.ttl, 30.0);
    }

    #[test]
    fn values_round_trip() {
        let m = MemberData::parse(
            r#"{"conn_url":"postgres://h:1/postgres","api_url":"http://h:2/patroni","state":"running","role":"replica","xlog_location":5,"tags":{"clonefrom":true},"other":[1,2]}"#,
        );
        assert_eq!(MemberData::parse(&m.to_json_string()), m);
        let h = History::parse(
            r#"[[1,100,"r"],[2,200,"s","2026-01-01T00:00:00+00:00","n2"]]"#,
            3,
        );
        let again = History::parse(&h.to_json_string(), 3);
        assert_eq!(again, h);
        assert_eq!(again.entries[0].timestamp, None);
        let s = Status {
            optime: Some(42),
            slots: None,
            retain_slots: vec![],
        };
        assert_eq!(Status::parse(&s.to_json_string()), s);
        let f = Failover {
            leader: Some("a".into()),
            candidate: Some("b".into()),
            scheduled_at: None,
            mod_revision: 5,
        };
        assert_eq!(Failover::parse(&f.to_json_string(), 5), Some(f));
        let y = SyncState {
            leader: Some("a".into()),
            sync_standby: Some("b,c".into()),
            quorum: 0,
            mod_revision: 2,
        };
        assert_eq!(SyncState::parse(&y.to_json_string(), 2), y);
        assert_eq!(y.members(), vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn garbage_reads_as_empty_never_panics() {
        assert_eq!(MemberData::parse("{not json"), MemberData::default());
        assert_eq!(History::parse("\"x\"", 1).entries, vec![]);
        assert_eq!(Status::parse("12345").optime, Some(12345));
        assert_eq!(Status::parse("[]"), Status::default());
        assert_eq!(Failover::parse("{}", 1), None);
        assert_eq!(Failover::parse("nope", 1), None);
        let c = Cluster::from_kvs(
            &[
                kv("leader", "", 1, 1),
                kv("members/", "{}", 1, 1),
                kv("config", "[", 0, 1),
            ],
            1,
        );
        assert!(c.leader.is_none());
        assert!(c.members.is_empty());
        assert!(c.config.as_ref().unwrap().parsed.is_none());
        assert_eq!(c.dynamic(), DynamicConfig::default());
    }

    #[test]
    fn lsn_and_slot_names() {
        assert_eq!(format_lsn(0x1_0300_0060), "1/3000060");
        assert_eq!(parse_lsn("1/3000060"), Some(0x1_0300_0060));
        assert_eq!(parse_lsn("zz"), None);
        assert_eq!(slot_name_for("Node-1.a"), "node_1_a");
        assert_eq!(
            parse_conn_url("postgres://u@[::1]:6432/db"),
            Some(("::1".into(), 6432))
        );
        assert_eq!(
            parse_conn_url("postgresql://host/db"),
            Some(("host".into(), 5432))
        );
        assert_eq!(parse_conn_url("http://x"), None);
    }
}
