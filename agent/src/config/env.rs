//! The `PATRONI_*` environment variables, as Patroni's `_build_environment_configuration`
//! maps them onto the configuration tree: for the agent ([`environment_tree`]) and for
//! agentctl ([`ctl_overrides`], the few keys patronictl reads).
//!
//! Rule: pure. The environment comes in as a map (never read from the process here),
//! and the result is a tree to merge over the file's, before anything is typed.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Prefix of every environment variable Patroni reads.
const PREFIX: &str = "PATRONI_";

const RESTAPI_PARAMS: &[&str] = &[
    "listen",
    "connect_address",
    "certfile",
    "keyfile",
    "keyfile_password",
    "cafile",
    "ciphers",
    "verify_client",
    "http_extra_headers",
    "https_extra_headers",
    "allowlist",
    "allowlist_include_members",
    "request_queue_size",
    "server_tokens",
];
const CTL_PARAMS: &[&str] = &[
    "insecure",
    "cacert",
    "certfile",
    "keyfile",
    "keyfile_password",
];
const POSTGRESQL_PARAMS: &[&str] = &[
    "listen",
    "connect_address",
    "proxy_address",
    "config_dir",
    "data_dir",
    "pgpass",
    "bin_dir",
];
const LOG_PARAMS: &[&str] = &[
    "type",
    "level",
    "traceback_level",
    "format",
    "dateformat",
    "static_fields",
    "max_queue_size",
    "dir",
    "mode",
    "file_size",
    "file_num",
    "loggers",
    "deduplicate_heartbeat_logs",
];
const RAFT_PARAMS: &[&str] = &[
    "data_dir",
    "self_addr",
    "partner_addrs",
    "password",
    "bind_addr",
    "min_timeout",
    "max_timeout",
    "connection_timeout",
    "append_entries_period",
    "connection_retry_time",
    "leader_fallback_timeout",
];
const BINARIES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];
/// Connection parameters accepted for the postgres users (`PATRONI_SUPERUSER_SSLMODE`, ...).
const AUTH_PARAMS: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];
/// `PATRONI_<DCS>_<SUFFIX>` suffixes Patroni maps onto a DCS section (`PATRONI_ETCD3_HOSTS`).
const DCS_SUFFIXES: &[&str] = &[
    "HOST",
    "HOSTS",
    "PORT",
    "USE_PROXIES",
    "PROTOCOL",
    "SRV",
    "SRV_SUFFIX",
    "URL",
    "PROXY",
    "CACERT",
    "CERT",
    "KEY",
    "VERIFY",
    "TOKEN",
    "CHECKS",
    "DC",
    "CONSISTENCY",
    "REGISTER_SERVICE",
    "SERVICE_CHECK_INTERVAL",
    "SERVICE_CHECK_TLS_SERVER_NAME",
    "SERVICE_TAGS",
    "NAMESPACE",
    "CONTEXT",
    "USE_ENDPOINTS",
    "SCOPE_LABEL",
    "ROLE_LABEL",
    "POD_IP",
    "PORTS",
    "LABELS",
    "BYPASS_API_SERVICE",
    "RETRIABLE_HTTP_CODES",
    "KEY_PASSWORD",
    "USE_SSL",
    "SET_ACLS",
    "GROUP",
    "DATABASE",
    "LEADER_LABEL_VALUE",
    "FOLLOWER_LABEL_VALUE",
    "STANDBY_LEADER_LABEL_VALUE",
    "TMP_ROLE_LABEL",
    "AUTH_DATA",
    "BOOTSTRAP_LABELS",
];

/// The configuration tree the `PATRONI_*` variables describe, plus warnings about
/// values that could not be parsed (those are dropped, as Patroni drops them).
///
/// Patroni has no environment variables for `tags`, so neither do we.
pub(super) fn environment_tree(env: &HashMap<String, String>) -> (Map<String, Value>, Vec<String>) {
    let get = |name: &str| var(env, name);
    let mut ret = Map::new();
    let mut warnings = Vec::new();

    for param in [
        "name",
        "namespace",
        "scope",
        "thread_pool_size",
        "thread_stack_size",
    ] {
        if let Some(v) = get(param) {
            ret.insert(param.to_string(), Value::String(v));
        }
    }

    let sections: [(&str, &[&str]); 5] = [
        ("restapi", RESTAPI_PARAMS),
        ("ctl", CTL_PARAMS),
        ("postgresql", POSTGRESQL_PARAMS),
        ("log", LOG_PARAMS),
        ("raft", RAFT_PARAMS),
    ];
    for (section, params) in sections {
        for param in params {
            let mut value = get(&format!("{section}_{param}"));
            if section == "log" && value.is_none() {
                // Older names Patroni still honours when the new one is unset.
                value = match *param {
                    "level" => get("loglevel"),
                    "format" => get("logformat"),
                    "dateformat" => get("log_datefmt"),
                    _ => None,
                };
            }
            let Some(raw) = value else { continue };
            let var = format!("{PREFIX}{}_{}", section, param).to_ascii_uppercase();
            let typed = match (section, *param) {
                ("restapi", "allowlist_include_members")
                | ("ctl", "insecure")
                | ("log", "deduplicate_heartbeat_logs") => parse_bool(&raw).map(Value::Bool),
                ("restapi", "request_queue_size")
                | ("log", "max_queue_size" | "file_size" | "file_num" | "mode") => {
                    raw.trim().parse::<i64>().ok().map(Value::from)
                }
                ("restapi", "allowlist") => parse_list(&raw),
                ("log", "format") if !has_percent_field(&raw) => parse_list(&raw),
                ("restapi", "http_extra_headers" | "https_extra_headers")
                | ("log", "static_fields" | "loggers") => parse_dict(&raw),
                _ => Some(Value::String(raw)),
            };
            match typed {
                Some(v) => {
                    section_mut(&mut ret, section).insert(param.to_string(), v);
                }
                None => warnings.push(format!("{var}: cannot parse its value, ignored")),
            }
        }
    }

    for binary in BINARIES {
        if let Some(v) = get(&format!("postgresql_bin_{binary}")) {
            section_mut(section_mut(&mut ret, "postgresql"), "bin_name")
                .insert(binary.to_string(), Value::String(v));
        }
    }

    for section in ["ctl", "restapi"] {
        let auth = auth_from_env(env, section, &AUTH_PARAMS[..2]);
        if !auth.is_empty() {
            section_mut(&mut ret, section).insert("authentication".into(), Value::Object(auth));
        }
    }

    let mut users = Map::new();
    for user in ["replication", "superuser", "rewind"] {
        let auth = auth_from_env(env, user, AUTH_PARAMS);
        if !auth.is_empty() {
            users.insert(user.to_string(), Value::Object(auth));
        }
    }
    if !users.is_empty() {
        section_mut(&mut ret, "postgresql").insert("authentication".into(), Value::Object(users));
    }

    // PATRONI_<DCS>_<SUFFIX>, e.g. PATRONI_ETCD3_HOSTS. Sorted so results do not
    // depend on the map's order.
    let mut keys: Vec<&String> = env.keys().filter(|k| k.starts_with(PREFIX)).collect();
    keys.sort();
    for var in keys {
        let rest = &var[PREFIX.len()..];
        let Some((name, suffix)) = rest.split_once('_') else {
            continue;
        };
        if name.is_empty() || !DCS_SUFFIXES.contains(&suffix) {
            continue;
        }
        let raw = env[var].clone();
        if raw.is_empty() {
            continue;
        }
        let value = match (name, suffix) {
            ("CITUS", "GROUP") => raw.trim().parse::<i64>().ok().map(Value::from),
            ("CITUS", "DATABASE") => Some(Value::String(raw)),
            ("CITUS", _) => continue,
            (_, "PORT") => raw.trim().parse::<i64>().ok().map(Value::from),
            (_, "HOSTS" | "PORTS" | "CHECKS" | "SERVICE_TAGS" | "RETRIABLE_HTTP_CODES") => {
                parse_list(&raw)
            }
            (_, "LABELS" | "SET_ACLS" | "AUTH_DATA" | "BOOTSTRAP_LABELS") => parse_dict(&raw),
            (_, "USE_PROXIES" | "REGISTER_SERVICE" | "USE_ENDPOINTS" | "BYPASS_API_SERVICE")
            | (_, "VERIFY") => parse_bool(&raw).map(Value::Bool),
            _ => Some(Value::String(raw)),
        };
        match value {
            Some(v) => {
                section_mut(&mut ret, &name.to_ascii_lowercase())
                    .insert(suffix.to_ascii_lowercase(), v);
            }
            None => warnings.push(format!("{var}: cannot parse its value, ignored")),
        }
    }

    // Patroni only reads PATRONI_ETCD3_USERNAME/PASSWORD when another PATRONI_ETCD3_*
    // variable created the section; we read them regardless.
    for dcs in ["etcd", "etcd3"] {
        let auth = auth_from_env(env, dcs, &AUTH_PARAMS[..2]);
        if !auth.is_empty() {
            section_mut(&mut ret, dcs).extend(auth);
        }
    }

    (ret, warnings)
}

/// The `agentctl`-relevant `PATRONI_*` variables (the cluster, etcd and the REST
/// credentials, as patronictl reads them), applied over the file's tree `root`.
///
/// Stricter than [`environment_tree`]: a list or a port that cannot be parsed is an
/// error naming the variable, not a warning, since agentctl has nothing to fall back on.
pub fn ctl_overrides(
    root: &mut Map<String, Value>,
    env: &HashMap<String, String>,
) -> Result<(), String> {
    for key in ["scope", "namespace"] {
        if let Some(v) = var(env, key) {
            root.insert(key.into(), Value::String(v));
        }
    }
    for param in [
        "host", "url", "protocol", "username", "password", "cacert", "cert", "key",
    ] {
        if let Some(v) = var(env, &format!("etcd3_{param}")) {
            section_mut(root, "etcd3").insert(param.to_string(), Value::String(v));
        }
    }
    for section in ["restapi", "ctl"] {
        let auth = auth_from_env(env, section, &AUTH_PARAMS[..2]);
        if !auth.is_empty() {
            section_mut(section_mut(root, section), "authentication").extend(auth);
        }
    }
    if let Some(v) = var(env, "restapi_cafile") {
        section_mut(root, "restapi").insert("cafile".into(), Value::String(v));
    }
    for param in CTL_PARAMS {
        let Some(v) = var(env, &format!("ctl_{param}")) else {
            continue;
        };
        let value =
            if *param == "insecure" {
                Value::Bool(parse_bool(&v).ok_or_else(|| {
                    format!("PATRONI_CTL_INSECURE: expected a boolean, got {v:?}")
                })?)
            } else {
                Value::String(v)
            };
        section_mut(root, "ctl").insert(param.to_string(), value);
    }
    if let Some(v) = var(env, "etcd3_hosts") {
        let hosts = parse_host_list(&v)
            .ok_or_else(|| format!("PATRONI_ETCD3_HOSTS: cannot parse {v:?} as a list"))?;
        section_mut(root, "etcd3").insert("hosts".into(), hosts);
    }
    if let Some(v) = var(env, "etcd3_port") {
        let port: u16 = v
            .trim()
            .parse()
            .map_err(|_| format!("PATRONI_ETCD3_PORT: not a port number: {v:?}"))?;
        section_mut(root, "etcd3").insert("port".into(), Value::from(port));
    }
    Ok(())
}

/// The value of `PATRONI_<NAME>` (`name` in any case); empty counts as unset.
fn var(env: &HashMap<String, String>, name: &str) -> Option<String> {
    env.get(&format!("{PREFIX}{}", name.to_ascii_uppercase()))
        .filter(|v| !v.is_empty())
        .cloned()
}

/// `PATRONI_<SECTION>_<PARAM>` for each of `params` that is set, as a mapping.
fn auth_from_env(
    env: &HashMap<String, String>,
    section: &str,
    params: &[&str],
) -> Map<String, Value> {
    params
        .iter()
        .filter_map(|p| {
            var(env, &format!("{section}_{p}")).map(|v| (p.to_string(), Value::String(v)))
        })
        .collect()
}

/// The mapping at `section`, made one (replacing whatever was there) if it is not.
fn section_mut<'a>(ret: &'a mut Map<String, Value>, section: &str) -> &'a mut Map<String, Value> {
    let entry = ret
        .entry(section.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("just made it an object"),
    }
}

/// Patroni's `parse_bool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A YAML list given as `a,b`, `[a, b]` or `- a\n- b` (Patroni's `_parse_list`).
fn parse_list(s: &str) -> Option<Value> {
    let text = if s.trim_start().starts_with('-') || s.contains('[') {
        s.to_string()
    } else {
        format!("[{s}]")
    };
    match serde_yaml_ng::from_str::<Value>(&text) {
        Ok(v @ Value::Array(_)) => Some(v),
        Ok(Value::String(one)) => Some(Value::Array(vec![Value::String(one)])),
        _ => None,
    }
}

/// agentctl's reading of `PATRONI_ETCD3_HOSTS`: a YAML list (`['a:1', 'b:2']`,
/// `- a:1`) of strings or numbers, else comma-separated words. Unlike Patroni's
/// `_parse_list` ([`parse_list`]) it keeps `h1:2379,[::1]:2379` as two hosts and
/// skips empty items; kept as agentctl has always read it.
fn parse_host_list(raw: &str) -> Option<Value> {
    let t = raw.trim();
    if t.starts_with('[') || t.starts_with('-') {
        let v: Value = serde_yaml_ng::from_str(t).ok()?;
        let items: Vec<Value> = v
            .as_array()?
            .iter()
            .map(|x| match x {
                Value::String(s) => Some(Value::String(s.clone())),
                Value::Number(n) => Some(Value::String(n.to_string())),
                _ => None,
            })
            .collect::<Option<_>>()?;
        return Some(Value::Array(items));
    }
    Some(Value::Array(
        t.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect(),
    ))
}

/// A YAML mapping given as `a: 1, b: 2` or `{a: 1}` (Patroni's `_parse_dict`).
fn parse_dict(s: &str) -> Option<Value> {
    let text = if s.trim_start().starts_with('{') {
        s.to_string()
    } else {
        format!("{{{s}}}")
    };
    match serde_yaml_ng::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Whether a log format string uses Python's `%(field)s` placeholders.
fn has_percent_field(s: &str) -> bool {
    s.match_indices("%(").any(|(i, _)| {
        let tail = &s[i + 2..];
        let word = tail
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .count();
        word > 0 && tail[word..].starts_with(')')
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::testing::*;
    use crate::config::load_str;

    #[test]
    fn env_overrides_apply() {
        let env = env(&[
            ("PATRONI_NAME", "node9"),
            ("PATRONI_SCOPE", "prod"),
            ("PATRONI_NAMESPACE", "/db/"),
            ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8018"),
            ("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.0.0.9:8018"),
            ("PATRONI_RESTAPI_USERNAME", "admin"),
            ("PATRONI_RESTAPI_PASSWORD", "admin-pass"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/data/pg"),
            ("PATRONI_POSTGRESQL_LISTEN", "*:5442"),
            ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.9:5442"),
            ("PATRONI_POSTGRESQL_BIN_DIR", "/usr/lib/postgresql/16/bin"),
            ("PATRONI_POSTGRESQL_PGPASS", "/tmp/pgpass"),
            ("PATRONI_SUPERUSER_PASSWORD", "su-secret"),
            ("PATRONI_REPLICATION_USERNAME", "repl"),
            ("PATRONI_REPLICATION_PASSWORD", "repl-secret"),
            ("PATRONI_REWIND_USERNAME", "rw"),
            ("PATRONI_REWIND_PASSWORD", "rw-secret"),
            (
                "PATRONI_ETCD3_HOSTS",
                "10.0.0.1:2379,10.0.0.2:2379, 10.0.0.3:2379",
            ),
            ("PATRONI_ETCD3_USERNAME", "etcd-user"),
            ("PATRONI_ETCD3_PASSWORD", "etcd-pass"),
            ("PATRONI_LOG_LEVEL", "DEBUG"),
            ("PATRONI_EMPTY", ""),
            ("PATRONI_NAME_UNUSED", "x"),
        ]);
        let (cfg, warnings) = load_str(GOOD, "node1.yml", &env).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.name, "node9");
        assert_eq!(cfg.scope, "prod");
        assert_eq!(cfg.cluster_prefix(), "/db/prod/");
        assert_eq!(cfg.restapi.listen, "0.0.0.0:8018");
        assert_eq!(cfg.restapi.connect_address, "10.0.0.9:8018");
        let auth = cfg.restapi.authentication.as_ref().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("admin", "admin-pass")
        );
        let pg = &cfg.postgresql;
        assert_eq!(pg.data_dir, PathBuf::from("/data/pg"));
        assert_eq!(pg.listen, "*:5442");
        assert_eq!(pg.connect_address, "10.0.0.9:5442");
        assert_eq!(
            pg.bin_dir,
            Some(PathBuf::from("/usr/lib/postgresql/16/bin"))
        );
        assert_eq!(pg.pgpass, Some(PathBuf::from("/tmp/pgpass")));
        // The password merges with the username from the file.
        assert_eq!(pg.authentication.superuser.username, "postgres");
        assert_eq!(
            pg.authentication.superuser.password.as_deref(),
            Some("su-secret")
        );
        assert_eq!(pg.authentication.replication.username, "repl");
        assert_eq!(
            pg.authentication.replication.password.as_deref(),
            Some("repl-secret")
        );
        let rewind = pg.authentication.rewind.as_ref().unwrap();
        assert_eq!(
            (rewind.username.as_str(), rewind.password.as_deref()),
            ("rw", Some("rw-secret"))
        );
        assert_eq!(
            cfg.etcd3.endpoints(),
            vec![
                "http://10.0.0.1:2379",
                "http://10.0.0.2:2379",
                "http://10.0.0.3:2379"
            ]
        );
        assert_eq!(cfg.etcd3.username.as_deref(), Some("etcd-user"));
        assert_eq!(cfg.etcd3.password.as_deref(), Some("etcd-pass"));
        assert_eq!(cfg.log.level.as_deref(), Some("DEBUG"));
    }

    #[test]
    fn etcd3_env_forms() {
        for (vars, want) in [
            (
                vec![("PATRONI_ETCD3_HOSTS", "['10.0.0.1:2379', '10.0.0.2:2379']")],
                vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"],
            ),
            (
                vec![("PATRONI_ETCD3_HOSTS", "- 10.0.0.1:2379\n- 10.0.0.2:2379")],
                vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"],
            ),
            (
                vec![
                    ("PATRONI_ETCD3_HOSTS", "etcd1,etcd2"),
                    ("PATRONI_ETCD3_PORT", "2479"),
                ],
                vec!["http://etcd1:2479", "http://etcd2:2479"],
            ),
        ] {
            let (cfg, warnings) = load_str(GOOD, "node1.yml", &env(&vars)).unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(cfg.etcd3.endpoints(), want, "{vars:?}");
        }
        // A single host replaces the file's hosts only when the file has no `hosts`.
        let text = edit("etcd3", Some(serde_json::json!({})));
        let (cfg, _) = load_str(
            &text,
            "node1.yml",
            &env(&[("PATRONI_ETCD3_HOST", "10.1.1.1:2379")]),
        )
        .unwrap();
        assert_eq!(cfg.etcd3.endpoints(), vec!["http://10.1.1.1:2379"]);
        let e = load_str(
            GOOD,
            "node1.yml",
            &env(&[("PATRONI_ETCD3_PROTOCOL", "https")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("node1.yml: etcd3.cacert: required with https"),
            "{e}"
        );
        // The TLS files come from the environment too.
        let (cfg, warnings) = load_str(
            GOOD,
            "node1.yml",
            &env(&[
                ("PATRONI_ETCD3_PROTOCOL", "https"),
                ("PATRONI_ETCD3_CACERT", "/etc/etcd/ca.crt"),
                ("PATRONI_ETCD3_CERT", "/etc/etcd/client.crt"),
                ("PATRONI_ETCD3_KEY", "/etc/etcd/client.key"),
            ]),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.etcd3.endpoints()[0], "https://127.0.0.1:2379");
        let tls = cfg.etcd3.tls().unwrap().unwrap();
        assert_eq!(tls.cacert, std::path::PathBuf::from("/etc/etcd/ca.crt"));
        assert_eq!(
            tls.identity,
            Some(("/etc/etcd/client.crt".into(), "/etc/etcd/client.key".into()))
        );
        // agentctl reads the same variables.
        let mut root = serde_json::Map::new();
        super::ctl_overrides(
            &mut root,
            &env(&[
                ("PATRONI_ETCD3_PROTOCOL", "https"),
                ("PATRONI_ETCD3_CACERT", "/ca.crt"),
                ("PATRONI_ETCD3_CERT", "/c.crt"),
                ("PATRONI_ETCD3_KEY", "/c.key"),
            ]),
        )
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(root)["etcd3"],
            serde_json::json!({"protocol": "https", "cacert": "/ca.crt", "cert": "/c.crt", "key": "/c.key"})
        );
    }

    #[test]
    fn log_level_old_name_and_unsupported_env_warn() {
        let vars = env(&[
            ("PATRONI_LOGLEVEL", "WARNING"),
            ("PATRONI_LOG_DIR", "/var/log/x"),
        ]);
        let (cfg, warnings) = load_str(GOOD, "node1.yml", &vars).unwrap();
        assert_eq!(cfg.log.level.as_deref(), Some("WARNING"));
        assert_eq!(warnings, vec!["node1.yml: log.dir: not supported, ignored"]);
    }

    #[test]
    fn restapi_tls_keys_from_the_environment() {
        let vars = env(&[
            ("PATRONI_RESTAPI_CERTFILE", "/etc/agent/server.crt"),
            ("PATRONI_RESTAPI_KEYFILE", "/etc/agent/server.key"),
            ("PATRONI_RESTAPI_CAFILE", "/etc/agent/ca.crt"),
            ("PATRONI_RESTAPI_VERIFY_CLIENT", "optional"),
            ("PATRONI_RESTAPI_CIPHERS", "ECDHE-RSA-AES128-GCM-SHA256"),
            ("PATRONI_RESTAPI_ALLOWLIST", "[127.0.0.1, 10.0.0.0/8]"),
            ("PATRONI_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS", "true"),
        ]);
        let (cfg, warnings) = load_str(GOOD, "node1.yml", &vars).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let r = &cfg.restapi;
        assert_eq!(r.certfile, Some(PathBuf::from("/etc/agent/server.crt")));
        assert_eq!(r.keyfile, Some(PathBuf::from("/etc/agent/server.key")));
        assert_eq!(r.cafile, Some(PathBuf::from("/etc/agent/ca.crt")));
        assert_eq!(r.verify_client.as_deref(), Some("optional"));
        assert_eq!(r.ciphers.as_deref(), Some("ECDHE-RSA-AES128-GCM-SHA256"));
        assert_eq!(
            r.allowlist,
            Some(vec!["127.0.0.1".to_string(), "10.0.0.0/8".to_string()])
        );
        assert_eq!(r.allowlist_include_members, Some(true));
        let e = load_str(
            GOOD,
            "node1.yml",
            &env(&[("PATRONI_RESTAPI_VERIFY_CLIENT", "required")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("restapi.verify_client"), "{e}");
    }

    #[test]
    fn ctl_tls_keys_from_the_environment() {
        let mut root = serde_json::Map::new();
        let vars = env(&[
            ("PATRONI_CTL_CACERT", "/ca.crt"),
            ("PATRONI_CTL_CERTFILE", "/c.crt"),
            ("PATRONI_CTL_INSECURE", "yes"),
            ("PATRONI_RESTAPI_CAFILE", "/rest-ca.crt"),
        ]);
        super::ctl_overrides(&mut root, &vars).unwrap();
        assert_eq!(root["ctl"]["cacert"], "/ca.crt");
        assert_eq!(root["ctl"]["certfile"], "/c.crt");
        assert_eq!(root["ctl"]["insecure"], true);
        assert_eq!(root["restapi"]["cafile"], "/rest-ca.crt");
        let e = super::ctl_overrides(&mut root, &env(&[("PATRONI_CTL_INSECURE", "maybe")]))
            .unwrap_err();
        assert!(e.starts_with("PATRONI_CTL_INSECURE"), "{e}");
    }
}
