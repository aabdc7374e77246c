//! Output in patronictl's layouts: bordered tables with the cluster in the top
//! line (`pretty`, `topology`), tab-separated values, JSON (Python's `json.dumps`
//! spacing) and YAML (block style, sorted keys).
//!
//! Rule: pure. Every function returns the text; the caller prints it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::args::Format;
use crate::dcs::model::Cluster;

/// How a table is laid out: `Topology` is `Pretty` with members indented under
/// the member they replicate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Pretty,
    Topology,
    Tsv,
    Json,
    Yaml,
}

impl From<Format> for Layout {
    fn from(f: Format) -> Layout {
        match f {
            Format::Pretty => Layout::Pretty,
            Format::Tsv => Layout::Tsv,
            Format::Json => Layout::Json,
            Format::Yaml => Layout::Yaml,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A bordered table. `title` replaces the start of the top border.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub align: Vec<Align>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn render(&self) -> String {
        let n = self.columns.len();
        let cell_lines: Vec<Vec<Vec<&str>>> = self
            .rows
            .iter()
            .map(|r| {
                (0..n)
                    .map(|i| {
                        r.get(i)
                            .map(|c| c.split('\n').collect())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| width(c)).collect();
        for row in &cell_lines {
            for (i, lines) in row.iter().enumerate() {
                for l in lines {
                    widths[i] = widths[i].max(width(l));
                }
            }
        }
        let hrule: String = {
            let mut s = String::from("+");
            for w in &widths {
                s.push_str(&"-".repeat(w + 2));
                s.push('+');
            }
            s
        };
        let line = |cells: &[&str]| -> String {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let text = cells.get(i).copied().unwrap_or("");
                let pad = " ".repeat(w.saturating_sub(width(text)));
                let align = self.align.get(i).copied().unwrap_or(Align::Left);
                s.push(' ');
                match align {
                    Align::Left => {
                        s.push_str(text);
                        s.push_str(&pad);
                    }
                    Align::Right => {
                        s.push_str(&pad);
                        s.push_str(text);
                    }
                }
                s.push_str(" |");
            }
            s
        };
        let every_row_ruled = cell_lines
            .iter()
            .any(|r| r.iter().any(|lines| lines.len() > 1));
        let mut out = Vec::new();
        out.push(title_rule(&hrule, &self.title));
        let names: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        out.push(line(&names));
        out.push(hrule.clone());
        for (k, row) in cell_lines.iter().enumerate() {
            let height = row.iter().map(Vec::len).max().unwrap_or(1).max(1);
            for h in 0..height {
                let cells: Vec<&str> = row
                    .iter()
                    .map(|lines| lines.get(h).copied().unwrap_or(""))
                    .collect();
                out.push(line(&cells));
            }
            if every_row_ruled && k + 1 < cell_lines.len() {
                out.push(hrule.clone());
            }
        }
        out.push(hrule);
        out.join("\n")
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `+------+` with `title` written over its start: `+ Cluster: demo (...) --+`.
fn title_rule(rule: &str, title: &str) -> String {
    if title.is_empty() {
        return rule.to_string();
    }
    let chars: Vec<char> = rule.chars().collect();
    let room = chars.len().saturating_sub(2);
    let head: String = title.chars().take(room).collect();
    let taken = head.chars().count();
    let mut s = String::new();
    s.push(chars[0]);
    s.push_str(&head);
    s.extend(chars.iter().skip(1 + taken));
    s
}

/// A value as Python's `str()` shows it in a table cell.
fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        other => py_json(other),
    }
}

/// Whether a cell counts as present in `json`/`yaml` output (Python's `str(v)` is non-empty).
fn present(v: &Value) -> bool {
    !matches!(v, Value::String(s) if s.is_empty())
}

/// JSON as Python's `json.dumps` writes it: `", "` and `": "` separators, non-ASCII escaped.
pub fn py_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_json_str(s),
        Value::Array(a) => format!("[{}]", a.iter().map(py_json).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => py_json_object(m.iter()),
    }
}

fn py_json_object<'a>(pairs: impl Iterator<Item = (&'a String, &'a Value)>) -> String {
    let inner: Vec<String> = pairs
        .map(|(k, v)| format!("{}: {}", py_json_str(k), py_json(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// YAML in block style with sorted keys (patronictl's `format_config_for_editing`).
pub fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_else(|_| format!("{v}\n"))
}

/// YAML in flow style, one line (`{nofailover: true, priority: 1}`): tags in `tsv` and `topology`.
pub fn yaml_flow(v: &Value) -> String {
    match v {
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", yaml_flow_scalar_key(k), yaml_flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")
        ),
        other => {
            let s = yaml(other);
            let s = s.trim_end_matches('\n');
            s.strip_suffix("\n...").unwrap_or(s).to_string()
        }
    }
}

fn yaml_flow_scalar_key(k: &str) -> String {
    yaml_flow(&Value::String(k.to_string()))
}

/// Rows of named cells, printed in one of the formats. `title` is the cluster line
/// of member lists; when set, the first column (the cluster name) is printed only
/// in `tsv`, and empty cells are left out of `json`/`yaml`.
pub fn render_rows(
    columns: &[&str],
    rows: &[Vec<Value>],
    right: &[&str],
    layout: Layout,
    title: &str,
) -> String {
    match layout {
        Layout::Json | Layout::Yaml => {
            let elements: Vec<Vec<(String, Value)>> = rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .zip(r)
                        .filter(|(_, v)| title.is_empty() || present(v))
                        .map(|(c, v)| (c.to_string(), v.clone()))
                        .collect()
                })
                .collect();
            if layout == Layout::Json {
                let objects: Vec<String> = elements
                    .iter()
                    .map(|pairs| py_json_object(pairs.iter().map(|(k, v)| (k, v))))
                    .collect();
                format!("[{}]", objects.join(", "))
            } else {
                let list = Value::Array(
                    elements
                        .into_iter()
                        .map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>()))
                        .collect(),
                );
                yaml(&list)
            }
        }
        Layout::Tsv => {
            let mut lines = vec![columns.join("\t")];
            for r in rows {
                lines.push(r.iter().map(cell_text).collect::<Vec<_>>().join("\t"));
            }
            lines.join("\n")
        }
        Layout::Pretty | Layout::Topology => {
            let skip = usize::from(!title.is_empty());
            let table = Table {
                title: title.to_string(),
                columns: columns.iter().skip(skip).map(|c| c.to_string()).collect(),
                align: columns
                    .iter()
                    .skip(skip)
                    .map(|c| {
                        if right.contains(c) {
                            Align::Right
                        } else {
                            Align::Left
                        }
                    })
                    .collect(),
                rows: rows
                    .iter()
                    .map(|r| r.iter().skip(skip).map(cell_text).collect())
                    .collect(),
            };
            table.render()
        }
    }
}

/// Python's `round()` (half to even) of bytes to MB.
fn lag_mb(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) => Value::from((f / 1024.0 / 1024.0).round_ties_even() as i64),
            None => v.clone(),
        },
        Value::String(s) if s == "unknown" => Value::String(String::new()),
        other => other.clone(),
    }
}

fn str_or_empty(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(x) => x.clone(),
    }
}

/// `leader` -> `Leader`, `sync_standby` -> `Sync Standby` (Python's `str.title()`).
fn title_case(role: &str) -> String {
    role.replace('_', " ")
        .split(' ')
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f
                    .to_uppercase()
                    .chain(cs.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

/// Members in replication-tree order, names prefixed with `+ ` per level below the
/// leader. A replica hangs under its `replicatefrom` tag when that names another
/// replica, else under the leader.
pub fn topology_sort(members: &[Value]) -> Vec<Value> {
    let is_leader = |m: &Value| m["role"].as_str().is_some_and(|r| r.ends_with("leader"));
    let name_of = |m: &Value| m["name"].as_str().unwrap_or("").to_string();
    let leader = members.iter().find(|m| is_leader(m));
    let leader_name = leader.map(name_of);
    let replicas: Vec<String> = members
        .iter()
        .filter(|m| !is_leader(m))
        .map(name_of)
        .collect();
    let mut children: BTreeMap<Option<String>, Vec<&Value>> = BTreeMap::new();
    for m in members.iter().filter(|m| !is_leader(m)) {
        let name = name_of(m);
        let parent = m["tags"]["replicatefrom"]
            .as_str()
            .filter(|p| !p.is_empty() && *p != name && replicas.iter().any(|r| r == p))
            .map(str::to_string)
            .or_else(|| leader_name.clone());
        children.entry(parent).or_default().push(m);
    }
    let mut out = Vec::new();
    let mut visited = std::collections::HashSet::new();
    fn walk(
        level: usize,
        key: Option<String>,
        member: Option<&Value>,
        children: &BTreeMap<Option<String>, Vec<&Value>>,
        visited: &mut std::collections::HashSet<Option<String>>,
        out: &mut Vec<Value>,
    ) {
        // replicatefrom cycles (a -> b -> a) must not loop forever
        if !visited.insert(key.clone()) {
            return;
        }
        if let Some(m) = member {
            let mut m = m.clone();
            if level > 0 {
                let name = m["name"].as_str().unwrap_or("").to_string();
                m["name"] = Value::String(format!("{}+ {}", " ".repeat((level - 1) * 2), name));
            }
            out.push(m);
        }
        for child in children.get(&key).into_iter().flatten() {
            let name = child["name"].as_str().map(str::to_string);
            walk(level + 1, name, Some(child), children, visited, out);
        }
    }
    walk(0, leader_name, leader, &children, &mut visited, &mut out);
    out
}

/// What a member list says below the table: maintenance mode and a scheduled switchover.
pub fn service_info(cluster_json: &Value) -> Vec<String> {
    let mut info = Vec::new();
    if cluster_json["pause"].as_bool() == Some(true) {
        info.push("Maintenance mode: on".to_string());
    }
    if let Some(s) = cluster_json.get("scheduled_switchover") {
        let mut line = format!(
            "Switchover scheduled at: {}",
            s["at"].as_str().unwrap_or("")
        );
        for name in ["from", "to"] {
            if let Some(v) = s.get(name).and_then(Value::as_str) {
                line.push_str(&format!("\n{name:>24}: {v}"));
            }
        }
        info.push(line);
    }
    info
}

/// The member list of `patronictl list` (and `topology`) for one cluster.
pub fn members_output(cluster: &Cluster, name: &str, extended: bool, layout: Layout) -> String {
    let cj = crate::api::cluster_as_json(cluster);
    let initialize = match cluster.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(s) => s,
    };
    let mut columns: Vec<&str> = vec![
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag",
        "Replay LSN",
        "Replay Lag",
    ];
    let members: Vec<Value> = cj["members"].as_array().cloned().unwrap_or_default();
    let with_host: Vec<&Value> = members.iter().filter(|m| m.get("host").is_some()).collect();
    let truthy = |v: &Value| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
    };
    for (col, key) in [
        ("Pending restart", "pending_restart"),
        ("Pending restart reason", "pending_restart_reason"),
        ("Scheduled restart", "scheduled_restart"),
        ("Tags", "tags"),
    ] {
        if extended || with_host.iter().any(|m| truthy(&m[key])) {
            columns.push(col);
        }
    }
    // host:port when a port is not the default or two members share a host
    let append_port = with_host
        .iter()
        .any(|m| m.get("port").is_some_and(|p| p.as_u64() != Some(5432)))
        || {
            let mut hosts: Vec<&str> = with_host
                .iter()
                .filter_map(|m| m["host"].as_str())
                .collect();
            let n = hosts.len();
            hosts.sort();
            hosts.dedup();
            hosts.len() < n
        };
    let ordered = if layout == Layout::Topology {
        topology_sort(&members)
    } else {
        members
    };
    let hide_long = matches!(layout, Layout::Pretty | Layout::Topology);
    let mut rows = Vec::new();
    for m in &ordered {
        let mut receive_lsn = str_or_empty(m.get("receive_lsn"));
        let mut replay_lsn = str_or_empty(m.get("replay_lsn"));
        let mut receive_lag = str_or_empty(m.get("receive_lag"));
        let mut replay_lag = str_or_empty(m.get("replay_lag"));
        let lsn = str_or_empty(m.get("lsn"));
        let unknown = |v: &Value| v.as_str() == Some("unknown");
        // members that publish only `lsn` (older versions)
        if unknown(&receive_lsn) && unknown(&replay_lsn) && present(&lsn) && !unknown(&lsn) {
            let lag = str_or_empty(m.get("lag"));
            if m["state"].as_str() == Some("streaming") {
                receive_lag = lag;
                receive_lsn = lsn;
            } else {
                replay_lag = lag;
                replay_lsn = lsn;
            }
        }
        let mut host = m["host"].as_str().unwrap_or("").to_string();
        if append_port && !host.is_empty() {
            if let Some(p) = m.get("port").and_then(Value::as_u64) {
                host = format!("{host}:{p}");
            }
        }
        let reason = match m.get("pending_restart_reason") {
            Some(Value::Object(params)) => params
                .iter()
                .map(|(k, v)| {
                    let old = cell_text(&v["old_value"]);
                    let new = cell_text(&v["new_value"]);
                    let full = format!("{k}: {old}->{new}");
                    if hide_long && full.chars().count() > 50 {
                        format!("{k}: [hidden - too long]")
                    } else {
                        full
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        let scheduled = match m.get("scheduled_restart") {
            Some(s @ Value::Object(_)) => {
                let mut v = cell_text(&s["schedule"]);
                if let Some(pv) = s.get("postgres_version") {
                    v.push_str(&format!(" if version < {}", cell_text(pv)));
                }
                Value::String(v)
            }
            Some(Value::Null) | None => Value::String(String::new()),
            Some(other) => other.clone(),
        };
        let tags = match m.get("tags") {
            Some(t @ Value::Object(o)) if !o.is_empty() => match layout {
                Layout::Pretty => Value::String(yaml(t).trim().to_string()),
                Layout::Tsv | Layout::Topology => Value::String(yaml_flow(t)),
                Layout::Json | Layout::Yaml => t.clone(),
            },
            _ => Value::String(String::new()),
        };
        let row: Vec<Value> = columns
            .iter()
            .map(|c| match *c {
                "Cluster" => Value::String(name.to_string()),
                "Member" => str_or_empty(m.get("name")),
                "Host" => Value::String(host.clone()),
                "Role" => Value::String(title_case(m["role"].as_str().unwrap_or(""))),
                "State" => str_or_empty(m.get("state")),
                "TL" => str_or_empty(m.get("timeline")),
                "Receive LSN" => receive_lsn.clone(),
                "Receive Lag" => lag_mb(&receive_lag),
                "Replay LSN" => replay_lsn.clone(),
                "Replay Lag" => lag_mb(&replay_lag),
                "Pending restart" => Value::String(
                    if truthy(&m["pending_restart"]) {
                        "*"
                    } else {
                        ""
                    }
                    .into(),
                ),
                "Pending restart reason" => Value::String(reason.clone()),
                "Scheduled restart" => scheduled.clone(),
                "Tags" => tags.clone(),
                _ => Value::String(String::new()),
            })
            .collect();
        rows.push(row);
    }
    let title = format!(" Cluster: {name} ({initialize}) ");
    let shown: Vec<&str> = if hide_long {
        columns
            .iter()
            .map(|c| match *c {
                "Receive Lag" | "Replay Lag" => "Lag",
                other => other,
            })
            .collect()
    } else {
        columns.clone()
    };
    let mut out = render_rows(
        &shown,
        &rows,
        &["Receive LSN", "Replay LSN", "Lag", "TL"],
        layout,
        &title,
    );
    if hide_long {
        let info = service_info(&cj);
        if !info.is_empty() {
            out.push_str("\n ");
            out.push_str(&info.join("\n "));
        }
    }
    out
}

/// `patronictl history`: `TL, LSN, Reason, Timestamp, New Leader`.
pub fn history_output(cluster: &Cluster, layout: Layout) -> String {
    let rows: Vec<Vec<Value>> = cluster
        .history
        .entries
        .iter()
        .map(|e| {
            vec![
                Value::from(e.timeline),
                Value::from(e.lsn),
                Value::String(e.reason.clone()),
                Value::String(e.timestamp.clone().unwrap_or_default()),
                Value::String(e.new_leader.clone().unwrap_or_default()),
            ]
        })
        .collect();
    render_rows(
        &["TL", "LSN", "Reason", "Timestamp", "New Leader"],
        &rows,
        &["TL", "LSN"],
        layout,
        "",
    )
}

#[cfg(test)]
mod tests {
    //! Expected texts were produced by patronictl 4.1.5 from the same keys in etcd.
    use super::*;
    use crate::dcs::model::RawKv;

    fn kv(key: &str, value: &str) -> RawKv {
        RawKv {
            key: key.into(),
            value: value.into(),
            lease: 0,
            mod_revision: 7,
            create_revision: 1,
        }
    }

    const NODE1: &str = r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","xlog_location":67128408,"timeline":5,"replication_state":"streaming","receive_lsn":67128408,"replay_lsn":67128408}"#;
    const NODE2: &str = r#"{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"primary","xlog_location":67128632,"timeline":6}"#;
    const HISTORY: &str = r#"[[1,67111272,"no recovery target specified"],[2,67127560,"no recovery target specified","2026-11-22T04:07:53.184684+00:00","node2"]]"#;

    /// `kvs` over a base of node1 (streaming) and node2 (leader) on one host.
    fn cluster(extra: &[(&str, &str)]) -> Cluster {
        let mut kvs = vec![
            kv("initialize", "7710838162357262999"),
            kv("config", r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#),
            kv("leader", "node2"),
            kv("status", r#"{"optime":67128632}"#),
            kv("members/node1", NODE1),
            kv("members/node2", NODE2),
            kv("history", HISTORY),
        ];
        for (k, v) in extra {
            kvs.retain(|x| x.key != *k);
            kvs.push(kv(k, v));
        }
        Cluster::from_kvs(&kvs, 10)
    }

    /// node3 cascades from node1.
    fn fake() -> Cluster {
        cluster(&[(
            "members/node3",
            r#"{"conn_url":"postgres://127.0.0.1:5434/postgres","api_url":"http://127.0.0.1:8010/patroni","state":"running","role":"replica","xlog_location":54545824,"timeline":6,"replication_state":"streaming","receive_lsn":54545824,"replay_lsn":12602784,"tags":{"replicatefrom":"node1"}}"#,
        )])
    }

    /// Paused, a switchover scheduled, node1 pending a restart.
    fn fake2() -> Cluster {
        cluster(&[
            (
                "config",
                r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"pause":true}"#,
            ),
            (
                "failover",
                r#"{"leader":"node2","member":"node1","scheduled_at":"2030-01-01T10:00:00+00:00"}"#,
            ),
            (
                "members/node1",
                r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","xlog_location":67128408,"timeline":5,"replication_state":"streaming","receive_lsn":67128408,"replay_lsn":67128408,"pending_restart":true,"scheduled_restart":{"schedule":"2030-01-01T09:00:00+00:00","postgres_version":"15.4"},"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"},"shared_preload_libraries":{"old_value":"pg_stat_statements","new_value":"pg_stat_statements,auto_explain,pg_cron"}}}"#,
            ),
        ])
    }

    /// Synchronous mode, one host per member, node1 with two tags, node4 stopped.
    fn fake3() -> Cluster {
        cluster(&[
            (
                "config",
                r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"synchronous_mode":true}"#,
            ),
            (
                "sync",
                r#"{"leader":"node2","sync_standby":"node4","quorum":0}"#,
            ),
            (
                "members/node1",
                r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","xlog_location":67128408,"timeline":5,"replication_state":"streaming","receive_lsn":67128408,"replay_lsn":67128408,"tags":{"nofailover":true,"failover_priority":0}}"#,
            ),
            (
                "members/node2",
                r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"primary","xlog_location":67128632,"timeline":6}"#,
            ),
            (
                "members/node4",
                r#"{"conn_url":"postgres://10.0.0.4:5432/postgres","api_url":"http://127.0.0.1:8011/patroni","state":"stopped","role":"replica","timeline":6}"#,
            ),
        ])
    }

    #[test]
    fn list_pretty() {
        assert_eq!(
            members_output(&fake(), "fake", false, Layout::Pretty),
            r#"+ Cluster: fake (7710838162357262999) ----------+----+-------------+-----+------------+-----+----------------------+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags                 |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+----------------------+
| node1  | 127.0.0.1:5432 | Replica | streaming |  5 |   0/4004C58 |   0 |  0/4004C58 |   0 |                      |
| node2  | 127.0.0.1:5433 | Leader  | running   |  6 |             |     |            |     |                      |
| node3  | 127.0.0.1:5434 | Replica | streaming |  6 |   0/3404DA0 |  12 |   0/C04DA0 |  52 | replicatefrom: node1 |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+----------------------+"#
        );
    }

    #[test]
    fn list_extended_paused_scheduled_pending() {
        assert_eq!(
            members_output(&fake2(), "fake2", true, Layout::Pretty),
            r#"+ Cluster: fake2 (7710838162357262999) ---------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason                        | Scheduled restart                           | Tags |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------+
| node1  | 127.0.0.1:5432 | Replica | streaming |  5 |   0/4004C58 |   0 |  0/4004C58 |   0 | *               | max_connections: 100->200                     | 2030-01-01T09:00:00+00:00 if version < 15.4 |      |
|        |                |         |           |    |             |     |            |     |                 | shared_preload_libraries: [hidden - too long] |                                             |      |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------+
| node2  | 127.0.0.1:5433 | Leader  | running   |  6 |             |     |            |     |                 |                                               |                                             |      |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------+
 Maintenance mode: on
 Switchover scheduled at: 2030-01-01T10:00:00+00:00
                    from: node2
                      to: node1"#
        );
    }

    #[test]
    fn multi_line_cells_rule_every_row_and_sync_standby() {
        assert_eq!(
            members_output(&fake3(), "fake3", false, Layout::Pretty),
            r#"+ Cluster: fake3 (7710838162357262999) --------+----+-------------+-----+------------+-----+----------------------+
| Member | Host     | Role         | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags                 |
+--------+----------+--------------+-----------+----+-------------+-----+------------+-----+----------------------+
| node1  | 10.0.0.1 | Replica      | streaming |  5 |   0/4004C58 |   0 |  0/4004C58 |   0 | failover_priority: 0 |
|        |          |              |           |    |             |     |            |     | nofailover: true     |
+--------+----------+--------------+-----------+----+-------------+-----+------------+-----+----------------------+
| node2  | 10.0.0.2 | Leader       | running   |  6 |             |     |            |     |                      |
+--------+----------+--------------+-----------+----+-------------+-----+------------+-----+----------------------+
| node4  | 10.0.0.4 | Sync Standby | stopped   |  6 |     unknown |     |    unknown |     |                      |
+--------+----------+--------------+-----------+----+-------------+-----+------------+-----+----------------------+"#
        );
        assert_eq!(
            members_output(&fake3(), "fake3", false, Layout::Tsv),
            r#"Cluster	Member	Host	Role	State	TL	Receive LSN	Receive Lag	Replay LSN	Replay Lag	Tags
fake3	node1	10.0.0.1	Replica	streaming	5	0/4004C58	0	0/4004C58	0	{failover_priority: 0, nofailover: true}
fake3	node2	10.0.0.2	Leader	running	6					
fake3	node4	10.0.0.4	Sync Standby	stopped	6	unknown		unknown		"#
        );
    }

    #[test]
    fn topology_indents_cascading_replicas() {
        assert_eq!(
            members_output(&fake(), "fake", false, Layout::Topology),
            r#"+ Cluster: fake (7710838162357262999) -+-----------+----+-------------+-----+------------+-----+------------------------+
| Member    | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags                   |
+-----------+----------------+---------+-----------+----+-------------+-----+------------+-----+------------------------+
| node2     | 127.0.0.1:5433 | Leader  | running   |  6 |             |     |            |     |                        |
| + node1   | 127.0.0.1:5432 | Replica | streaming |  5 |   0/4004C58 |   0 |  0/4004C58 |   0 |                        |
|   + node3 | 127.0.0.1:5434 | Replica | streaming |  6 |   0/3404DA0 |  12 |   0/C04DA0 |  52 | {replicatefrom: node1} |
+-----------+----------------+---------+-----------+----+-------------+-----+------------+-----+------------------------+"#
        );
        assert_eq!(
            members_output(&fake3(), "fake3", false, Layout::Topology),
            r#"+ Cluster: fake3 (7710838162357262999) ---------+----+-------------+-----+------------+-----+------------------------------------------+
| Member  | Host     | Role         | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags                                     |
+---------+----------+--------------+-----------+----+-------------+-----+------------+-----+------------------------------------------+
| node2   | 10.0.0.2 | Leader       | running   |  6 |             |     |            |     |                                          |
| + node1 | 10.0.0.1 | Replica      | streaming |  5 |   0/4004C58 |   0 |  0/4004C58 |   0 | {failover_priority: 0, nofailover: true} |
| + node4 | 10.0.0.4 | Sync Standby | stopped   |  6 |     unknown |     |    unknown |     |                                          |
+---------+----------+--------------+-----------+----+-------------+-----+------------+-----+------------------------------------------+"#
        );
    }

    #[test]
    fn list_tsv_json_yaml() {
        let c = fake();
        assert_eq!(
            members_output(&c, "fake", false, Layout::Tsv),
            r#"Cluster	Member	Host	Role	State	TL	Receive LSN	Receive Lag	Replay LSN	Replay Lag	Tags
fake	node1	127.0.0.1:5432	Replica	streaming	5	0/4004C58	0	0/4004C58	0	
fake	node2	127.0.0.1:5433	Leader	running	6					
fake	node3	127.0.0.1:5434	Replica	streaming	6	0/3404DA0	12	0/C04DA0	52	{replicatefrom: node1}"#
        );
        assert_eq!(
            members_output(&c, "fake", false, Layout::Json),
            r#"[{"Cluster": "fake", "Member": "node1", "Host": "127.0.0.1:5432", "Role": "Replica", "State": "streaming", "TL": 5, "Receive LSN": "0/4004C58", "Receive Lag": 0, "Replay LSN": "0/4004C58", "Replay Lag": 0}, {"Cluster": "fake", "Member": "node2", "Host": "127.0.0.1:5433", "Role": "Leader", "State": "running", "TL": 6}, {"Cluster": "fake", "Member": "node3", "Host": "127.0.0.1:5434", "Role": "Replica", "State": "streaming", "TL": 6, "Receive LSN": "0/3404DA0", "Receive Lag": 12, "Replay LSN": "0/C04DA0", "Replay Lag": 52, "Tags": {"replicatefrom": "node1"}}]"#
        );
        let yaml_out = members_output(&c, "fake", false, Layout::Yaml);
        assert!(
            yaml_out.starts_with("- Cluster: fake\n  Host: 127.0.0.1:5432\n  Member: node1\n"),
            "{yaml_out}"
        );
        assert!(
            yaml_out.contains("  Tags:\n    replicatefrom: node1\n"),
            "{yaml_out}"
        );
    }

    #[test]
    fn uninitialized_cluster() {
        let c = Cluster::default();
        assert_eq!(
            members_output(&c, "nope", false, Layout::Pretty),
            "+ Cluster: nope (uninitialized) ----+-------------+-----+------------+-----+\n\
             | Member | Host | Role | State | TL | Receive LSN | Lag | Replay LSN | Lag |\n\
             +--------+------+------+-------+----+-------------+-----+------------+-----+\n\
             +--------+------+------+-------+----+-------------+-----+------------+-----+"
        );
        assert_eq!(members_output(&c, "nope", false, Layout::Json), "[]");
        assert_eq!(members_output(&c, "nope", false, Layout::Yaml), "[]\n");
    }

    #[test]
    fn title_is_cut_to_the_table_width() {
        let t = Table {
            title: " Cluster: a-very-long-cluster-name (initializing) ".into(),
            columns: vec!["TL".into()],
            align: vec![Align::Right],
            rows: vec![vec!["1".into()]],
        };
        assert_eq!(t.render(), "+ Clu+\n| TL |\n+----+\n|  1 |\n+----+");
    }

    #[test]
    fn history_formats() {
        let c = fake();
        assert_eq!(
            history_output(&c, Layout::Pretty),
            r#"+----+----------+------------------------------+----------------------------------+------------+
| TL |      LSN | Reason                       | Timestamp                        | New Leader |
+----+----------+------------------------------+----------------------------------+------------+
|  1 | 67111272 | no recovery target specified |                                  |            |
|  2 | 67127560 | no recovery target specified | 2026-11-22T04:07:53.184684+00:00 | node2      |
+----+----------+------------------------------+----------------------------------+------------+"#
        );
        assert_eq!(
            history_output(&c, Layout::Tsv),
            r#"TL	LSN	Reason	Timestamp	New Leader
1	67111272	no recovery target specified		
2	67127560	no recovery target specified	2026-11-22T04:07:53.184684+00:00	node2"#
        );
        assert_eq!(
            history_output(&c, Layout::Json),
            r#"[{"TL": 1, "LSN": 67111272, "Reason": "no recovery target specified", "Timestamp": "", "New Leader": ""}, {"TL": 2, "LSN": 67127560, "Reason": "no recovery target specified", "Timestamp": "2026-11-22T04:07:53.184684+00:00", "New Leader": "node2"}]"#
        );
        assert!(history_output(&c, Layout::Yaml).starts_with("- LSN: 67111272\n  New Leader: ''\n"));
        assert_eq!(
            history_output(&Cluster::default(), Layout::Pretty),
            "+----+-----+--------+-----------+------------+\n\
             | TL | LSN | Reason | Timestamp | New Leader |\n\
             +----+-----+--------+-----------+------------+\n\
             +----+-----+--------+-----------+------------+"
        );
    }

    #[test]
    fn topology_without_leader_and_with_cycles() {
        let ms = vec![
            serde_json::json!({"name": "a", "role": "replica", "tags": {"replicatefrom": "b"}}),
            serde_json::json!({"name": "b", "role": "replica", "tags": {"replicatefrom": "a"}}),
            serde_json::json!({"name": "c", "role": "replica"}),
        ];
        let names: Vec<String> = topology_sort(&ms)
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["+ c"]);
    }

    #[test]
    fn python_style_json() {
        let v = serde_json::json!({"b": [1, 2.5, null, true], "a": "\u{e9}\"\n"});
        assert_eq!(
            py_json(&v),
            r#"{"a": "\u00e9\"\n", "b": [1, 2.5, null, true]}"#
        );
        assert_eq!(
            py_json(&Value::String("\u{1f600}".into())),
            r#""\ud83d\ude00""#
        );
    }

    #[test]
    fn flow_yaml() {
        let v = serde_json::json!({"nofailover": true, "x": "a b", "p": 1, "s": "*"});
        assert_eq!(yaml_flow(&v), "{nofailover: true, p: 1, s: '*', x: a b}");
    }

    #[test]
    fn lag_rounds_half_to_even() {
        assert_eq!(lag_mb(&Value::from(1024 * 1024 * 5 / 2)), Value::from(2));
        assert_eq!(lag_mb(&Value::from(1024 * 1024 * 7 / 2)), Value::from(4));
        assert_eq!(lag_mb(&Value::from(0)), Value::from(0));
        assert_eq!(lag_mb(&Value::from("unknown")), Value::from(""));
    }

    #[test]
    fn roles_in_title_case() {
        assert_eq!(title_case("leader"), "Leader");
        assert_eq!(title_case("sync_standby"), "Sync Standby");
        assert_eq!(title_case("standby_leader"), "Standby Leader");
    }
}
