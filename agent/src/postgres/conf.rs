//! Rendering the files the agent manages in the data directory: `postgresql.conf`
//! (which includes initdb's original as `postgresql.base.conf`), `pg_hba.conf`,
//! and the replica settings (`primary_conninfo`, `primary_slot_name`).
//!
//! Rule: pure functions from settings to text; writing them is the caller's job.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::config::Credentials;

/// Settings the agent always controls (the user cannot turn them off).
pub const MANAGED: &[&str] = &[
    "listen_addresses",
    "port",
    "cluster_name",
    "hba_file",
    "ident_file",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target_timeline",
    "hot_standby",
    "synchronous_standby_names",
];

/// Defaults the user may override through `postgresql.parameters`.
pub fn default_parameters() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("wal_level", "replica"),
        ("wal_log_hints", "on"),
        ("max_wal_senders", "10"),
        ("max_replication_slots", "10"),
        ("wal_keep_size", "128MB"),
        ("max_connections", "100"),
        ("max_locks_per_transaction", "64"),
        ("max_worker_processes", "8"),
        ("max_prepared_transactions", "0"),
        ("track_commit_timestamp", "off"),
        ("wal_retrieve_retry_interval", "1s"),
    ] {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// A JSON/YAML scalar as a postgresql.conf value (without quoting).
pub fn param_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "on" } else { "off" }.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Quote a value for postgresql.conf: `'...'` with `'` doubled and `\` escaped.
pub fn quote_conf(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// Quote a value for a libpq connection string.
pub fn quote_libpq(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A libpq connection string to `host:port` as `creds.username`, with the user's
/// TLS and authentication options (Patroni's defaults `sslmode`, `gssencmode`,
/// `channel_binding` = `prefer` when unset) and `passfile` instead of a password.
/// No secret ever appears in it: it goes into `postgresql.conf` and command lines.
pub fn conninfo(host: &str, port: u16, creds: &Credentials, passfile: Option<&Path>) -> String {
    let mut parts = vec![
        format!("user={}", quote_libpq(&creds.username)),
        format!("host={}", quote_libpq(host)),
        format!("port={port}"),
    ];
    if let Some(p) = passfile {
        parts.push(format!(
            "passfile={}",
            quote_libpq(&p.display().to_string())
        ));
    }
    let options = creds.libpq_options();
    for (k, v) in &options {
        parts.push(format!("{k}={}", quote_libpq(v)));
    }
    for k in ["sslmode", "gssencmode", "channel_binding"] {
        if !options.iter().any(|(o, _)| *o == k) {
            parts.push(format!("{k}=prefer"));
        }
    }
    parts.join(" ")
}

/// `primary_conninfo` for streaming from `host:port` as the replication user.
pub fn primary_conninfo(
    host: &str,
    port: u16,
    creds: &Credentials,
    passfile: Option<&Path>,
    app_name: &str,
) -> String {
    let mut s = conninfo(host, port, creds, passfile);
    for p in [
        format!("application_name={}", quote_libpq(app_name)),
        "connect_timeout=2".to_string(),
        "keepalives=1".to_string(),
        "keepalives_idle=5".to_string(),
        "keepalives_interval=2".to_string(),
        "keepalives_count=3".to_string(),
    ] {
        s.push(' ');
        s.push_str(&p);
    }
    s
}

/// The passfile's text: one line per user with a password, for any host, port and
/// database (libpq takes the first line whose user matches). `:` and `\` escaped.
pub fn pgpass_text(users: &[&Credentials]) -> String {
    let esc = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    let mut out = String::new();
    let mut seen = Vec::new();
    for c in users {
        let Some(pw) = &c.password else { continue };
        if seen.contains(&c.username.as_str()) {
            continue;
        }
        seen.push(c.username.as_str());
        out.push_str(&format!("*:*:*:{}:{}\n", esc(&c.username), esc(pw)));
    }
    out
}

/// What `postgresql.conf` should say for this start.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfInput {
    pub listen_addresses: String,
    pub port: u16,
    pub cluster_name: String,
    /// Dynamic `postgresql.parameters` then local `postgresql.parameters` (local wins).
    pub parameters: BTreeMap<String, String>,
    pub hba_file: String,
    pub ident_file: String,
    /// Managed by synchronous mode (empty: asynchronous).
    pub synchronous_standby_names: String,
    /// Replica settings; `None` renders a primary's configuration.
    pub standby: Option<StandbyConf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StandbyConf {
    /// Empty when the replica has no upstream yet.
    pub primary_conninfo: String,
    pub primary_slot_name: Option<String>,
}

/// Render `postgresql.conf`.
pub fn render_postgresql_conf(input: &ConfInput) -> String {
    let mut params = default_parameters();
    for (k, v) in &input.parameters {
        let name = k.to_ascii_lowercase();
        // Managed names are compared as postgres compares names (case-insensitively),
        // so `Port` cannot override the port; a line break cannot start a new line.
        if MANAGED.contains(&name.as_str()) || v.chars().any(|c| c.is_control()) {
            continue;
        }
        params.insert(name, v.clone());
    }
    let mut out = String::new();
    out.push_str("# Managed by agent. Do not edit: it is rewritten before every start.\n");
    out.push_str("# Put local changes in postgresql.parameters of the agent's configuration.\n");
    out.push_str("include_if_exists 'postgresql.base.conf'\n\n");
    let mut line = |k: &str, v: &str| {
        out.push_str(&format!("{k} = {}\n", quote_conf(v)));
    };
    line("listen_addresses", &input.listen_addresses);
    line("port", &input.port.to_string());
    line("cluster_name", &input.cluster_name);
    line("hba_file", &input.hba_file);
    line("ident_file", &input.ident_file);
    line("hot_standby", "on");
    line(
        "synchronous_standby_names",
        &input.synchronous_standby_names,
    );
    for (k, v) in &params {
        line(k, v);
    }
    if let Some(s) = &input.standby {
        line("primary_conninfo", &s.primary_conninfo);
        if let Some(slot) = &s.primary_slot_name {
            line("primary_slot_name", slot);
        }
        line("recovery_target_timeline", "latest");
    }
    out
}

/// Render `pg_hba.conf` from the configured lines.
pub fn render_hba(lines: &[String]) -> String {
    let mut out = String::from("# Managed by agent from postgresql.pg_hba. Do not edit.\n");
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// pg_hba lines when the configuration gives none: `peer` on the unix socket,
/// password (scram) for everything over TCP, replication for the replication user.
///
/// The agent runs as the OS user that owns postgres and connects to it over the
/// socket as the superuser: `peer` lets it in when the two names are the same
/// (`postgres`, the usual case). A superuser with another name logs in over the
/// socket with its password (`scram-sha-256`, a line of its own before `peer`).
pub fn default_hba(superuser: &Credentials, replication_user: &str, os_user: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if superuser.username != os_user {
        lines.push(format!(
            "local all {} scram-sha-256",
            quote_hba(&superuser.username)
        ));
    }
    let rep = quote_hba(replication_user);
    lines.extend([
        "local all all peer".to_string(),
        format!("host replication {rep} 0.0.0.0/0 scram-sha-256"),
        format!("host replication {rep} ::/0 scram-sha-256"),
        "host all all 0.0.0.0/0 scram-sha-256".to_string(),
        "host all all ::/0 scram-sha-256".to_string(),
    ]);
    lines
}

/// pg_hba during bootstrap, before any password exists: only the superuser, only
/// locally (`peer` on the socket when it is our OS user, else trust for that one
/// role; loopback TCP for a node without a socket directory).
pub fn bootstrap_hba(superuser: &str, os_user: &str) -> Vec<String> {
    let su = quote_hba(superuser);
    let local = if superuser == os_user {
        "peer"
    } else {
        "trust"
    };
    vec![
        format!("local all {su} {local}"),
        format!("host all {su} 127.0.0.1/32 trust"),
        format!("host all {su} ::1/128 trust"),
    ]
}

/// A role name as a pg_hba field (double-quoted unless plain).
fn quote_hba(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The name of the OS user this process runs as (empty when unknown).
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default()
}

/// Split `host1,host2:port` (Patroni's `listen`) into (`host1,host2`, port).
pub fn split_listen(listen: &str) -> Option<(String, u16)> {
    let (hosts, port) = listen.rsplit_once(':')?;
    let port: u16 = port.trim().parse().ok()?;
    let hosts = hosts.trim().trim_start_matches('[').trim_end_matches(']');
    Some((
        if hosts.is_empty() {
            "*".to_string()
        } else {
            hosts.to_string()
        },
        port,
    ))
}

/// Parse one line of a timeline history file: `1\t0/3000060\treason`.
pub fn parse_history_file(text: &str) -> Vec<(u32, u64, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut it = l.splitn(3, char::is_whitespace);
            let tl: u32 = it.next()?.trim().parse().ok()?;
            let lsn = crate::dcs::model::parse_lsn(it.next()?.trim())?;
            let reason = it.next().unwrap_or("").trim().to_string();
            Some((tl, lsn, reason))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_renders_primary_and_standby() {
        let mut params = BTreeMap::new();
        params.insert("max_connections".to_string(), "50".to_string());
        params.insert("port".to_string(), "1".to_string()); // managed: ignored
        params.insert("Port".to_string(), "2".to_string()); // managed, any case
        params.insert(
            "work_mem".to_string(),
            "1'\narchive_command = 'x".to_string(),
        ); // a second line
        let mut input = ConfInput {
            listen_addresses: "127.0.0.1".into(),
            port: 5433,
            cluster_name: "demo".into(),
            parameters: params,
            hba_file: "/d/pg_hba.conf".into(),
            ident_file: "/d/pg_ident.conf".into(),
            synchronous_standby_names: String::new(),
            standby: None,
        };
        let text = render_postgresql_conf(&input);
        assert!(text.contains("port = '5433'"));
        assert_eq!(text.matches("port = ").count(), 1, "{text}");
        assert!(!text.contains("archive_command"), "{text}");
        assert!(text.contains("max_connections = '50'"));
        assert!(text.contains("wal_level = 'replica'"));
        assert!(!text.contains("primary_conninfo"));
        input.standby = Some(StandbyConf {
            primary_conninfo: primary_conninfo(
                "10.0.0.1",
                5432,
                &Credentials {
                    username: "rep".into(),
                    password: Some("secret-pw".into()),
                    sslmode: Some("verify-full".into()),
                    sslrootcert: Some("/etc/pg/root ca.crt".into()),
                    ..Default::default()
                },
                Some(Path::new("/home/postgres/pgpass")),
                "node2",
            ),
            primary_slot_name: Some("node2".into()),
        });
        let text = render_postgresql_conf(&input);
        assert!(text.contains("primary_slot_name = 'node2'"));
        assert!(text.contains("recovery_target_timeline = 'latest'"));
        assert!(text.contains("application_name=node2"));
        // never the password: a passfile, and the user's TLS options
        assert!(!text.contains("secret-pw"), "{text}");
        assert!(text.contains("passfile=/home/postgres/pgpass"), "{text}");
        assert!(text.contains("sslmode=verify-full"), "{text}");
        // a quote or space survives both quoting layers
        assert!(
            text.contains(r"sslrootcert=''/etc/pg/root ca.crt''"),
            "{text}"
        );
        assert!(
            text.contains("gssencmode=prefer channel_binding=prefer"),
            "{text}"
        );
    }

    #[test]
    fn pgpass_lines_escape_and_skip() {
        let user = |u: &str, p: Option<&str>| Credentials {
            username: u.into(),
            password: p.map(String::from),
            ..Default::default()
        };
        let (su, rep, rw, dup) = (
            user("postgres", Some("a:b\\c")),
            user("rep", None),
            user("rewind", Some("r")),
            user("postgres", Some("other")),
        );
        assert_eq!(
            pgpass_text(&[&su, &rep, &rw, &dup]),
            "*:*:*:postgres:a\\:b\\\\c\n*:*:*:rewind:r\n"
        );
    }

    #[test]
    fn default_hba_is_peer_locally() {
        let su = |name: &str| Credentials {
            username: name.into(),
            password: Some("pw".into()),
            ..Default::default()
        };
        let lines = default_hba(&su("postgres"), "replicator", "postgres");
        assert_eq!(lines[0], "local all all peer");
        assert!(!lines.iter().any(|l| l.contains("trust")), "{lines:?}");
        let lines = default_hba(&su("admin"), "replicator", "postgres");
        assert_eq!(
            lines[..2],
            ["local all admin scram-sha-256", "local all all peer"]
        );
        assert_eq!(
            bootstrap_hba("postgres", "postgres")[0],
            "local all postgres peer"
        );
        assert_eq!(
            bootstrap_hba("my admin", "postgres")[0],
            "local all \"my admin\" trust"
        );
    }

    #[test]
    fn listen_split() {
        assert_eq!(
            split_listen("127.0.0.1:5432"),
            Some(("127.0.0.1".into(), 5432))
        );
        assert_eq!(split_listen("*:5432"), Some(("*".into(), 5432)));
        assert_eq!(split_listen("a,b:6000"), Some(("a,b".into(), 6000)));
        assert_eq!(split_listen("nope"), None);
    }

    #[test]
    fn history_file() {
        let h =
            parse_history_file("1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tx\n");
        assert_eq!(
            h,
            vec![
                (1, 0x3000060, "no recovery target specified".into()),
                (2, 0x5000000, "x".into())
            ]
        );
    }
}
