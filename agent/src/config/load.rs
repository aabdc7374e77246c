//! Loading the local configuration: YAML file (or `PATRONI_CONFIGURATION`, or only
//! `PATRONI_*` variables), environment overrides, typed deserialization, validation.
//!
//! The pipeline works on a `serde_json::Value` tree so that environment overrides can
//! be merged the way Patroni merges them (`patch_config`) before anything is typed:
//!
//! ```text
//! YAML text -> tree -> + PATRONI_* overrides -> required keys -> Config (serde, paths)
//!                                                             -> validation + warnings
//! ```
//!
//! Rules: every error is one line naming the file and the dotted key; a key Patroni
//! knows but we do not implement, or a key nobody knows, is a warning, never an error.
//! Nothing here touches the process environment: the caller passes it in as a map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::merge::{merge, Null};
use super::{Config, DynamicConfig};

/// Prefix of every environment variable Patroni reads.
const PREFIX: &str = "PATRONI_";
/// The whole YAML configuration in one variable, used when the file does not exist.
const CONFIG_VAR: &str = "PATRONI_CONFIGURATION";
/// Patroni reserves this member name for its strict synchronous mode.
const RESERVED_NAME: &str = "__patroni_strict_sync_replica_placeholder__";

/// Why a configuration cannot be used. `Display` is one line naming the file and,
/// where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or directory) could not be read, and no environment fallback applied.
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    /// Not YAML, or not a mapping at the top level.
    #[error("{file}: invalid YAML: {message}")]
    Syntax { file: String, message: String },
    /// A key is missing, has the wrong type, or has a value we cannot use.
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    fn invalid(file: &str, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parse `text` (YAML, Patroni's schema), apply the `PATRONI_*` overrides in `env`, and
/// validate. `file` names the source in errors and warnings and becomes `Config::source`.
/// Returns the configuration and the warnings (one line each).
pub fn load_str(
    text: &str,
    file: &str,
    env: &HashMap<String, String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let tree = parse_yaml(text, file)?;
    let (mut cfg, warnings) = build(tree, file, env)?;
    cfg.source = PathBuf::from(file);
    Ok((cfg, warnings))
}

/// Load the configuration at `path`, as Patroni does:
///
/// - a file is read and the `PATRONI_*` overrides in `env` are applied to it;
/// - a directory: its `*.yml` / `*.yaml` files are merged in name order, then overrides;
/// - a path that does not exist: the YAML in `PATRONI_CONFIGURATION` is used if set,
///   else the configuration is built from the `PATRONI_*` variables alone.
///
/// Unlike Patroni, the individual `PATRONI_*` overrides also apply on top of
/// `PATRONI_CONFIGURATION` (Patroni silently drops them there).
pub fn load_file(
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let shown = path.display().to_string();
    let (tree, label) = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => (load_dir(path, &shown)?, shown),
        Ok(_) => (parse_yaml(&read(path, &shown)?, &shown)?, shown),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(text) = env.get(CONFIG_VAR).filter(|t| !t.trim().is_empty()) {
                (parse_yaml(text, CONFIG_VAR)?, CONFIG_VAR.to_string())
            } else {
                let (from_env, _) = environment_tree(env);
                if from_env.is_empty() {
                    return Err(ConfigError::Read {
                        file: shown,
                        message: format!(
                            "no such file, and neither {CONFIG_VAR} nor any PATRONI_* setting is set"
                        ),
                    });
                }
                let label = format!("{shown} (not found; configuration from PATRONI_* variables)");
                (Value::Object(Map::new()), label)
            }
        }
        Err(e) => {
            return Err(ConfigError::Read {
                file: shown,
                message: e.to_string(),
            })
        }
    };
    let (mut cfg, warnings) = build(tree, &label, env)?;
    cfg.source = path.to_path_buf();
    Ok((cfg, warnings))
}

fn read(path: &Path, shown: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: shown.to_string(),
        message: e.to_string(),
    })
}

/// Patroni's configuration directory: every `*.yml`/`*.yaml` file, merged in name order.
fn load_dir(dir: &Path, shown: &str) -> Result<Value, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::Read {
        file: shown.to_string(),
        message: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::Read {
            file: shown.to_string(),
            message: "directory contains no .yml or .yaml file".to_string(),
        });
    }
    let mut merged = Map::new();
    for f in files {
        let name = f.display().to_string();
        if let Value::Object(m) = parse_yaml(&read(&f, &name)?, &name)? {
            merge(&mut merged, &m, Null::Replaces);
        }
    }
    Ok(Value::Object(merged))
}

/// YAML text to a JSON tree; the top level must be a mapping.
fn parse_yaml(text: &str, file: &str) -> Result<Value, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        file: file.to_string(),
        message,
    };
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let mut message = one_line(&e.to_string());
        if let Some(loc) = e.location() {
            if !message.contains("line") {
                message = format!("{message} at line {} column {}", loc.line(), loc.column());
            }
        }
        syntax(message)
    })?;
    // `<<: *anchor` merge keys, which PyYAML's safe_load honours.
    yaml.apply_merge()
        .map_err(|e| syntax(one_line(&e.to_string())))?;
    let tree = serde_json::to_value(&yaml).map_err(|e| syntax(one_line(&e.to_string())))?;
    match tree {
        Value::Object(_) => Ok(tree),
        Value::Null => Err(syntax("the document is empty".to_string())),
        other => Err(syntax(format!(
            "expected a mapping of keys to values at the top level, got {}",
            kind(&other)
        ))),
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Everything after the YAML is parsed: overrides, checks, typed config, warnings.
fn build(
    tree: Value,
    file: &str,
    env: &HashMap<String, String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let Value::Object(mut root) = tree else {
        return Err(ConfigError::Syntax {
            file: file.to_string(),
            message: "expected a mapping at the top level".to_string(),
        });
    };
    let (overrides, env_warnings) = environment_tree(env);
    merge(&mut root, &overrides, Null::Replaces);
    coerce_yaml11(&mut root);
    let mut warnings: Vec<String> = env_warnings
        .into_iter()
        .map(|w| format!("{file}: {w}"))
        .collect();

    let tree = Value::Object(root);
    check_required(&tree, file)?;

    let mut ignored = Vec::new();
    let mut cfg: Config = deserialize(tree.clone(), &mut ignored)
        .map_err(|(key, message)| ConfigError::invalid(file, key, message))?;

    validate(&mut cfg, file, &mut warnings)?;

    for key in ignored {
        warnings.push(ignored_warning(file, &key, &tree));
    }
    unsupported_warnings(&cfg, &tree, file, &mut warnings);
    Ok((cfg, warnings))
}

// ---------------------------------------------------------------------------
// Environment overrides (Patroni's `_build_environment_configuration`)
// ---------------------------------------------------------------------------

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
fn environment_tree(env: &HashMap<String, String>) -> (Map<String, Value>, Vec<String>) {
    let get = |name: &str| -> Option<String> {
        env.get(&format!("{PREFIX}{}", name.to_ascii_uppercase()))
            .filter(|v| !v.is_empty())
            .cloned()
    };
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
            let pg = section_mut(&mut ret, "postgresql");
            let names = pg
                .entry("bin_name")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = names {
                m.insert(binary.to_string(), Value::String(v));
            }
        }
    }

    for section in ["ctl", "restapi"] {
        let auth = auth_from_env(&get, section, &AUTH_PARAMS[..2]);
        if !auth.is_empty() {
            section_mut(&mut ret, section).insert("authentication".into(), Value::Object(auth));
        }
    }

    let mut users = Map::new();
    for user in ["replication", "superuser", "rewind"] {
        let auth = auth_from_env(&get, user, AUTH_PARAMS);
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
        let auth = auth_from_env(&get, dcs, &AUTH_PARAMS[..2]);
        if !auth.is_empty() {
            section_mut(&mut ret, dcs).extend(auth);
        }
    }

    (ret, warnings)
}

fn auth_from_env(
    get: &dyn Fn(&str) -> Option<String>,
    section: &str,
    params: &[&str],
) -> Map<String, Value> {
    params
        .iter()
        .filter_map(|p| get(&format!("{section}_{p}")).map(|v| (p.to_string(), Value::String(v))))
        .collect()
}

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

/// Patroni reads YAML with PyYAML (YAML 1.1), we with a YAML 1.2 parser. Two
/// differences matter for existing files, and are smoothed over at known keys:
/// `password: 12345` is text to Patroni (a number here), and `yes`/`no`/`on`/`off`
/// are booleans to PyYAML (strings here).
fn coerce_yaml11(root: &mut Map<String, Value>) {
    const TEXT: &[&str] = &[
        "scope",
        "name",
        "namespace",
        "restapi.authentication.username",
        "restapi.authentication.password",
        "etcd3.username",
        "etcd3.password",
        "postgresql.authentication.*.username",
        "postgresql.authentication.*.password",
    ];
    const BOOL: &[&str] = &[
        "postgresql.use_pg_rewind",
        "postgresql.remove_data_directory_on_rewind_failure",
        "postgresql.remove_data_directory_on_diverged_timelines",
        "tags.nofailover",
        "tags.noloadbalance",
        "tags.clonefrom",
        "tags.nosync",
        "tags.nostream",
        "bootstrap.dcs.synchronous_mode",
        "bootstrap.dcs.synchronous_mode_strict",
        "bootstrap.dcs.check_timeline",
        "bootstrap.dcs.pause",
        "bootstrap.dcs.postgresql.use_pg_rewind",
        "bootstrap.dcs.postgresql.use_slots",
    ];
    /// Apply `f` to every value at `path` (`*` matches any key).
    fn each(v: &mut Value, path: &[&str], f: &dyn Fn(&mut Value)) {
        match path.split_first() {
            None => f(v),
            Some((&"*", rest)) => {
                if let Value::Object(m) = v {
                    m.values_mut().for_each(|c| each(c, rest, f));
                }
            }
            Some((key, rest)) => {
                if let Some(c) = v.as_object_mut().and_then(|m| m.get_mut(*key)) {
                    each(c, rest, f);
                }
            }
        }
    }
    let mut tree = Value::Object(std::mem::take(root));
    for path in TEXT {
        let segs: Vec<&str> = path.split('.').collect();
        each(&mut tree, &segs, &|v| {
            if v.is_number() {
                *v = Value::String(v.to_string());
            }
        });
    }
    for path in BOOL {
        let segs: Vec<&str> = path.split('.').collect();
        each(&mut tree, &segs, &|v| {
            let b = match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("yes" | "y" | "on") => true,
                Some("no" | "n" | "off") => false,
                _ => return,
            };
            *v = Value::Bool(b);
        });
    }
    if let Value::Object(m) = tree {
        *root = m;
    }
}

// ---------------------------------------------------------------------------
// Required keys and typed deserialization
// ---------------------------------------------------------------------------

/// Checked in this order, parents before children, so the first missing one is named.
const REQUIRED: &[&str] = &[
    "scope",
    "name",
    "restapi",
    "restapi.listen",
    "restapi.connect_address",
    "etcd3",
    "postgresql",
    "postgresql.listen",
    "postgresql.connect_address",
    "postgresql.data_dir",
    "postgresql.authentication",
    "postgresql.authentication.superuser",
    "postgresql.authentication.superuser.username",
    "postgresql.authentication.replication",
    "postgresql.authentication.replication.username",
];

/// Other DCS sections a Patroni configuration may have instead of `etcd3`.
const OTHER_DCS: &[&str] = &[
    "etcd",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
];

/// The value at a dotted path; `Err(())` when a parent on the way is not a mapping
/// (a type error the typed pass reports better).
fn lookup<'a>(tree: &'a Value, path: &str) -> Result<Option<&'a Value>, ()> {
    let mut cur = tree;
    for seg in path.split('.') {
        match cur {
            Value::Object(m) => match m.get(seg) {
                Some(v) => cur = v,
                None => return Ok(None),
            },
            Value::Null => return Ok(None),
            _ => return Err(()),
        }
    }
    Ok(Some(cur))
}

fn check_required(tree: &Value, file: &str) -> Result<(), ConfigError> {
    for key in REQUIRED {
        match lookup(tree, key) {
            Ok(None) | Ok(Some(Value::Null)) => {
                let mut message = "missing required key".to_string();
                if *key == "etcd3" {
                    if let Some(other) = OTHER_DCS
                        .iter()
                        .find(|d| matches!(lookup(tree, d), Ok(Some(_))))
                    {
                        message = format!(
                            "missing required key (found `{other}`, but etcd v3 is the only supported DCS)"
                        );
                    }
                }
                return Err(ConfigError::invalid(file, *key, message));
            }
            Ok(Some(_)) | Err(()) => {}
        }
    }
    Ok(())
}

/// Typed deserialization that names the key of a type error and records the paths
/// of keys the types do not use.
fn deserialize<T: DeserializeOwned>(
    tree: Value,
    ignored: &mut Vec<String>,
) -> Result<T, (String, String)> {
    let mut record = |path: serde_ignored::Path| {
        let mut segs = Vec::new();
        ignored_segments(&path, &mut segs);
        ignored.push(segs.join("."));
    };
    let de = serde_ignored::Deserializer::new(tree, &mut record);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let segs: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = one_line(&e.into_inner().to_string());
        // serde reports a missing field at its parent: move it into the key.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let mut segs = segs;
            segs.push(field.to_string());
            return (segs.join("."), "missing required key".to_string());
        }
        let key = if segs.is_empty() {
            "(top level)".to_string()
        } else {
            segs.join(".")
        };
        (key, message)
    })
}

fn ignored_segments(p: &serde_ignored::Path, out: &mut Vec<String>) {
    use serde_ignored::Path as P;
    match p {
        P::Root => {}
        P::Seq { parent, index } => {
            ignored_segments(parent, out);
            out.push(index.to_string());
        }
        P::Map { parent, key } => {
            ignored_segments(parent, out);
            out.push(key.clone());
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_segments(parent, out)
        }
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

fn validate(cfg: &mut Config, file: &str, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let err = |key: &str, message: String| ConfigError::invalid(file, key, message);

    for (key, value) in [("scope", &cfg.scope), ("name", &cfg.name)] {
        if value.trim().is_empty() {
            return Err(err(key, "must not be empty".into()));
        }
    }
    if cfg.name == RESERVED_NAME {
        return Err(err("name", format!("`{RESERVED_NAME}` is reserved")));
    }

    // postgresql.parameters: each one becomes one line of postgresql.conf.
    for (name, value) in &cfg.postgresql.parameters {
        crate::config::check_parameter(name, value).map_err(|m| {
            let shown: String = name
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            err(&format!("postgresql.parameters.{shown}"), m)
        })?;
    }

    // REST API. Patroni binds `*:port` and `:port` to all interfaces; so do we,
    // by rewriting them to an address a socket can bind.
    let (host, port) =
        split_host_port(&cfg.restapi.listen).map_err(|m| err("restapi.listen", m))?;
    if host.contains(',') {
        return Err(err("restapi.listen", "expected a single host:port".into()));
    }
    if host.is_empty() || host == "*" {
        cfg.restapi.listen = format!("0.0.0.0:{port}");
    }
    check_connect_address(
        "restapi.connect_address",
        &cfg.restapi.connect_address,
        file,
        warnings,
    )?;
    if let Some(auth) = &cfg.restapi.authentication {
        if auth.username.is_empty() {
            return Err(err(
                "restapi.authentication.username",
                "must not be empty".into(),
            ));
        }
    }

    // etcd.
    match cfg.etcd3.protocol.as_deref() {
        None | Some("http") => {}
        Some("https") => {
            return Err(err(
                "etcd3.protocol",
                "https is not supported yet (this build talks to etcd over plain http)".into(),
            ))
        }
        Some(other) => {
            return Err(err(
                "etcd3.protocol",
                format!("expected http, got `{other}`"),
            ))
        }
    }
    check_etcd_endpoints(cfg, file)?;

    // postgres.
    let pg = &cfg.postgresql;
    let (hosts, _) = split_host_port(&pg.listen).map_err(|m| err("postgresql.listen", m))?;
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(err(
            "postgresql.listen",
            format!(
                "expected host[,host...]:port (`*:port` for all interfaces), got `{}`",
                pg.listen
            ),
        ));
    }
    if hosts.contains(&"*") && hosts.len() > 1 {
        return Err(err("postgresql.listen", "`*` must be the only host".into()));
    }
    check_connect_address(
        "postgresql.connect_address",
        &pg.connect_address,
        file,
        warnings,
    )?;
    if let Some(proxy) = &pg.proxy_address {
        check_connect_address("postgresql.proxy_address", proxy, file, warnings)?;
    }
    if pg.data_dir.as_os_str().is_empty() {
        return Err(err("postgresql.data_dir", "must not be empty".into()));
    }
    let users = [
        ("superuser", Some(&pg.authentication.superuser)),
        ("replication", Some(&pg.authentication.replication)),
        ("rewind", pg.authentication.rewind.as_ref()),
    ];
    for (user, creds) in users {
        if creds.is_some_and(|c| c.username.is_empty()) {
            return Err(err(
                &format!("postgresql.authentication.{user}.username"),
                "must not be empty".into(),
            ));
        }
    }

    // Cluster-wide settings, including safety rule 2 (ttl >= loop_wait + 2 * retry_timeout).
    match &cfg.bootstrap.dcs {
        Value::Null | Value::Object(_) => {}
        other => {
            return Err(err(
                "bootstrap.dcs",
                format!("expected a mapping, got {}", kind(other)),
            ))
        }
    }
    DynamicConfig::from_json(&cfg.bootstrap.dcs).map_err(|e| {
        let (key, message) = match e.split_once(": ") {
            Some((k, m)) if k != "." => (format!("bootstrap.dcs.{k}"), m.to_string()),
            Some((_, m)) => ("bootstrap.dcs".to_string(), m.to_string()),
            None => ("bootstrap.dcs".to_string(), e.clone()),
        };
        ConfigError::invalid(file, key, message)
    })?;
    Ok(())
}

/// `host:port` with a host other members can reach.
fn check_connect_address(
    key: &str,
    value: &str,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let (host, _) = split_host_port(value).map_err(|m| ConfigError::invalid(file, key, m))?;
    if host.is_empty() || host == "*" || host.contains(',') {
        return Err(ConfigError::invalid(
            file,
            key,
            format!("expected one host:port that other members can connect to, got `{value}`"),
        ));
    }
    if host == "0.0.0.0" || host == "::" {
        warnings.push(format!(
            "{file}: {key}: `{host}` is a listen-everywhere address; other members cannot connect to it"
        ));
    }
    Ok(())
}

/// Split Patroni's `host:port` (also `[v6]:port` and `h1,h2:port`); the port must be 1..=65535.
fn split_host_port(value: &str) -> Result<(String, u16), String> {
    let value = value.trim();
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("expected host:port, got `{value}`"));
    };
    let port: u16 = port
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port `{port}` in `{value}` (expected 1-65535)"))?;
    let host = host
        .split(',')
        .map(|h| h.trim().trim_start_matches('[').trim_end_matches(']'))
        .collect::<Vec<_>>()
        .join(",");
    Ok((host, port))
}

/// At least one etcd endpoint, each `[scheme://]host[:port]` with a valid port.
fn check_etcd_endpoints(cfg: &Config, file: &str) -> Result<(), ConfigError> {
    let e = &cfg.etcd3;
    let (key, items) = if let Some(url) = e.url.as_ref().filter(|u| !u.trim().is_empty()) {
        ("etcd3.url", vec![url.clone()])
    } else if let Some(hosts) = e.hosts.as_ref().filter(|h| !h.items().is_empty()) {
        ("etcd3.hosts", hosts.items())
    } else if let Some(host) = e.host.as_ref().filter(|h| !h.trim().is_empty()) {
        ("etcd3.host", vec![host.clone()])
    } else {
        return Err(ConfigError::invalid(
            file,
            "etcd3.hosts",
            "missing required key (set etcd3.hosts or etcd3.host to at least one host:port)",
        ));
    };
    for item in items {
        let item = item.trim();
        let hostport = match item.split_once("://") {
            Some(("http", rest)) => rest.split('/').next().unwrap_or(""),
            Some((scheme, _)) => {
                return Err(ConfigError::invalid(
                    file,
                    key,
                    format!("unsupported scheme `{scheme}` in `{item}` (expected http)"),
                ))
            }
            None => item,
        };
        let has_port = if hostport.starts_with('[') {
            hostport.contains("]:")
        } else {
            hostport.contains(':')
        };
        let host = if has_port {
            split_host_port(hostport)
                .map_err(|m| ConfigError::invalid(file, key, m))?
                .0
        } else {
            hostport.to_string()
        };
        if host.is_empty() {
            return Err(ConfigError::invalid(
                file,
                key,
                format!("expected host:port, got `{item}`"),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Warnings
// ---------------------------------------------------------------------------

/// Keys of Patroni's schema that this agent does not implement (`*` = any one key).
const UNSUPPORTED: &[&str] = &[
    "thread_pool_size",
    "thread_stack_size",
    "citus",
    "log.type",
    "log.traceback_level",
    "log.format",
    "log.dateformat",
    "log.static_fields",
    "log.max_queue_size",
    "log.dir",
    "log.file_num",
    "log.file_size",
    "log.mode",
    "log.loggers",
    "log.deduplicate_heartbeat_logs",
    "restapi.thread_pool_size",
    "restapi.certfile",
    "restapi.keyfile",
    "restapi.keyfile_password",
    "restapi.cafile",
    "restapi.ciphers",
    "restapi.verify_client",
    "restapi.allowlist",
    "restapi.allowlist_include_members",
    "restapi.http_extra_headers",
    "restapi.https_extra_headers",
    "restapi.request_queue_size",
    "restapi.server_tokens",
    "etcd3.use_proxies",
    "etcd3.proxy",
    "etcd3.srv",
    "etcd3.srv_suffix",
    "etcd3.cacert",
    "etcd3.cert",
    "etcd3.key",
    "etcd3.key_password",
    "bootstrap.method",
    "bootstrap.users",
    "postgresql.bin_name",
    "postgresql.pg_ctl_timeout",
    "postgresql.rewind",
    "postgresql.custom_conf",
    "postgresql.recovery_conf",
    "postgresql.use_unix_socket",
    "postgresql.use_unix_socket_repl",
    "postgresql.pre_promote",
    "postgresql.before_stop",
    "postgresql.database",
    "postgresql.authentication.*.sslmode",
    "postgresql.authentication.*.sslcert",
    "postgresql.authentication.*.sslkey",
    "postgresql.authentication.*.sslpassword",
    "postgresql.authentication.*.sslrootcert",
    "postgresql.authentication.*.sslcrl",
    "postgresql.authentication.*.sslcrldir",
    "postgresql.authentication.*.gssencmode",
    "postgresql.authentication.*.channel_binding",
    "postgresql.authentication.*.sslnegotiation",
];

/// Dynamic (`bootstrap.dcs`) keys of Patroni's that this agent does not implement.
const UNSUPPORTED_DCS: &[&str] = &[
    "standby_cluster",
    "failsafe_mode",
    "ignore_slots",
    "master_start_timeout",
    "master_stop_timeout",
    "postgresql.recovery_conf",
    "postgresql.pg_ident",
    "postgresql.pg_ctl_timeout",
    "postgresql.rewind",
    "postgresql.basebackup",
    "postgresql.remove_data_directory_on_rewind_failure",
    "postgresql.remove_data_directory_on_diverged_timelines",
];

fn matches_pattern(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    // A pattern also covers everything below it (`citus.group` under `citus`).
    k.len() >= p.len() && p.iter().zip(&k).all(|(p, k)| *p == "*" || p == k)
}

/// The warning for one key the typed configuration did not use.
fn ignored_warning(file: &str, key: &str, tree: &Value) -> String {
    let first = key.split('.').next().unwrap_or(key);
    if OTHER_DCS.contains(&first) {
        return format!(
            "{file}: {first}: not supported, ignored (etcd3 is the only supported DCS)"
        );
    }
    if UNSUPPORTED.iter().any(|p| matches_pattern(p, key)) {
        return format!("{file}: {key}: not supported, ignored");
    }
    // Sections named by `bootstrap.method` / `postgresql.create_replica_methods`
    // configure those (unsupported) methods.
    let mut segs = key.splitn(3, '.');
    if let (Some(section), Some(name)) = (segs.next(), segs.next()) {
        let named = match section {
            "bootstrap" => lookup(tree, "bootstrap.method")
                .ok()
                .flatten()
                .and_then(Value::as_str)
                .is_some_and(|m| m == name),
            "postgresql" => lookup(tree, "postgresql.create_replica_methods")
                .ok()
                .flatten()
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|m| m.as_str() == Some(name))),
            _ => false,
        };
        if named {
            return format!("{file}: {section}.{name}: not supported, ignored");
        }
    }
    format!("{file}: unknown key {key} (ignored)")
}

/// Warnings about settings we accept but do not act on, and suspicious combinations.
fn unsupported_warnings(cfg: &Config, tree: &Value, file: &str, warnings: &mut Vec<String>) {
    // bootstrap.dcs: unknown keys (the typed view ignores them; they are still stored).
    let mut ignored = Vec::new();
    if cfg.bootstrap.dcs.is_object()
        && deserialize::<DynamicConfig>(cfg.bootstrap.dcs.clone(), &mut ignored).is_ok()
    {
        for key in ignored {
            if UNSUPPORTED_DCS.iter().any(|p| matches_pattern(p, &key)) {
                warnings.push(format!(
                    "{file}: bootstrap.dcs.{key}: not supported, ignored"
                ));
            } else {
                warnings.push(format!("{file}: unknown key bootstrap.dcs.{key} (ignored)"));
            }
        }
    }

    if let Some(method) = lookup(tree, "bootstrap.method").ok().flatten() {
        if method.as_str() != Some("initdb") {
            // Already warned as an unsupported key; say what happens instead.
            warnings.push(format!(
                "{file}: bootstrap.method: only initdb is supported; a new cluster is created with initdb"
            ));
        }
    }

    let pg = &cfg.postgresql;
    if let Some(methods) = &pg.create_replica_methods {
        let only_basebackup = methods
            .as_array()
            .is_some_and(|a| a.iter().all(|m| m.as_str() == Some("basebackup")));
        if !only_basebackup {
            warnings.push(format!(
                "{file}: postgresql.create_replica_methods: not supported, ignored (replicas are cloned with pg_basebackup)"
            ));
        }
    }
    if pg.callbacks.as_ref().is_some_and(|c| !c.is_null()) {
        warnings.push(format!(
            "{file}: postgresql.callbacks: not supported, ignored"
        ));
    }

    if let Some(wd) = &cfg.watchdog {
        let mode = match wd.get("mode") {
            None => Some("automatic".to_string()),
            Some(Value::Bool(false)) => None,
            Some(Value::String(m))
                if matches!(m.to_ascii_lowercase().as_str(), "off" | "false" | "no") =>
            {
                None
            }
            Some(Value::String(m)) => Some(m.to_ascii_lowercase()),
            Some(other) => Some(other.to_string()),
        };
        if let Some(mode) = mode {
            if !wd.is_null() {
                warnings.push(format!(
                    "{file}: watchdog: not supported, ignored (mode {mode}; this node runs without a watchdog)"
                ));
            }
        }
    }

    if let Some(level) = &cfg.log.level {
        const LEVELS: &[&str] = &[
            "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL",
        ];
        if !LEVELS.contains(&level.to_ascii_uppercase().as_str()) {
            warnings.push(format!(
                "{file}: log.level: unknown level `{level}` (expected one of {}), using INFO",
                LEVELS.join(", ")
            ));
        }
    }

    if let Some(c) = cfg.tags.contradiction() {
        warnings.push(format!("{file}: tags: {c}"));
    }
    match (cfg.tags.nosync, cfg.tags.sync_priority) {
        (Some(true), Some(p)) if p > 0 => warnings.push(format!(
            "{file}: tags: conflicting tags: nosync: true and sync_priority: {p}; nosync wins"
        )),
        (Some(false), Some(p)) if p <= 0 => warnings.push(format!(
            "{file}: tags: conflicting tags: nosync: false and sync_priority: {p}; the node will not be a synchronous standby"
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete, valid configuration; tests change one thing at a time.
    const GOOD: &str = r#"
scope: demo
name: node1
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
etcd3:
  hosts:
    - 127.0.0.1:2379
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    postgresql:
      use_pg_rewind: true
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /tmp/agent-test/node1/data
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: rep-pass
tags:
  nofailover: false
"#;

    fn no_env() -> HashMap<String, String> {
        HashMap::new()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        load_str(text, "node1.yml", &no_env())
    }

    fn err(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// Remove the key at a dotted path from GOOD and return the YAML.
    fn without(path: &str) -> String {
        edit(path, None)
    }

    /// Replace (or with `None`, remove) the value at a dotted path in GOOD.
    fn edit(path: &str, value: Option<Value>) -> String {
        let mut tree: Value = serde_yaml_ng::from_str(GOOD).unwrap();
        let segs: Vec<&str> = path.split('.').collect();
        let (last, parents) = segs.split_last().unwrap();
        let mut cur = &mut tree;
        for p in parents {
            cur = cur
                .as_object_mut()
                .unwrap()
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        let m = cur.as_object_mut().unwrap();
        match value {
            Some(v) => {
                m.insert(last.to_string(), v);
            }
            None => {
                m.remove(*last);
            }
        }
        serde_yaml_ng::to_string(&tree).unwrap()
    }

    #[test]
    fn good_file_parses_without_warnings() {
        let (cfg, warnings) = load(GOOD).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.scope, "demo");
        assert_eq!(cfg.name, "node1");
        assert_eq!(cfg.namespace, "/service/");
        assert_eq!(cfg.cluster_prefix(), "/service/demo/");
        assert_eq!(cfg.restapi.listen, "127.0.0.1:8008");
        assert_eq!(cfg.etcd3.endpoints(), vec!["http://127.0.0.1:2379"]);
        assert_eq!(
            cfg.postgresql.data_dir,
            PathBuf::from("/tmp/agent-test/node1/data")
        );
        assert_eq!(
            cfg.postgresql.authentication.replication.username,
            "replicator"
        );
        assert_eq!(
            cfg.bootstrap
                .initdb
                .iter()
                .flat_map(|o| o.to_args())
                .collect::<Vec<_>>(),
            vec!["--encoding=UTF8", "--data-checksums"]
        );
        let dynamic = DynamicConfig::from_json(&cfg.bootstrap_dynamic()).unwrap();
        assert!(cfg.use_pg_rewind(&dynamic));
        assert_eq!(cfg.source, PathBuf::from("node1.yml"));
        assert!(!cfg.tags.nofailover());
    }

    #[test]
    fn each_required_key_missing_is_an_error_naming_it() {
        for key in REQUIRED {
            let e = err(&without(key));
            assert_eq!(
                e,
                format!("node1.yml: {key}: missing required key"),
                "removing {key}"
            );
        }
    }

    #[test]
    fn missing_etcd_endpoints_is_an_error() {
        let e = err(&without("etcd3.hosts"));
        assert!(
            e.starts_with("node1.yml: etcd3.hosts: missing required key"),
            "{e}"
        );
        let e = err(&edit("etcd3.hosts", Some(Value::Array(vec![]))));
        assert!(
            e.starts_with("node1.yml: etcd3.hosts: missing required key"),
            "{e}"
        );
        // `host` alone is enough.
        let text = edit("etcd3", Some(serde_json::json!({"host": "10.0.0.1:2379"})));
        let (cfg, _) = load(&text).unwrap();
        assert_eq!(cfg.etcd3.endpoints(), vec!["http://10.0.0.1:2379"]);
    }

    #[test]
    fn etcd_v2_section_is_named_in_the_error() {
        let text = without("etcd3") + "etcd:\n  host: 127.0.0.1:2379\n";
        let e = err(&text);
        assert!(
            e.starts_with("node1.yml: etcd3: missing required key (found `etcd`"),
            "{e}"
        );
    }

    #[test]
    fn missing_password_in_rest_auth_is_an_error() {
        let text = edit(
            "restapi.authentication",
            Some(serde_json::json!({"username": "admin"})),
        );
        assert_eq!(
            err(&text),
            "node1.yml: restapi.authentication.password: missing required key"
        );
        let text = edit(
            "restapi.authentication",
            Some(serde_json::json!({"username": "admin", "password": "secret"})),
        );
        let (cfg, _) = load(&text).unwrap();
        assert_eq!(cfg.restapi.authentication.unwrap().password, "secret");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = err(&edit(
            "bootstrap.dcs.ttl",
            Some(Value::String("abc".into())),
        ));
        assert_eq!(
            e,
            r#"node1.yml: bootstrap.dcs.ttl: expected a number of seconds (units: ms, s, min, h, d), got "abc""#
        );
        let e = err(&edit(
            "postgresql.use_pg_rewind",
            Some(Value::String("sure".into())),
        ));
        assert!(
            e.starts_with("node1.yml: postgresql.use_pg_rewind: invalid type"),
            "{e}"
        );
        let e = err(&edit(
            "postgresql.parameters",
            Some(serde_json::json!([1, 2])),
        ));
        assert!(
            e.starts_with("node1.yml: postgresql.parameters: invalid type"),
            "{e}"
        );
        let e = err(&edit("restapi", Some(Value::String("x".into()))));
        assert!(e.starts_with("node1.yml: restapi: invalid type"), "{e}");
        let e = err(&edit(
            "bootstrap.dcs.postgresql.use_slots",
            Some(Value::from(3)),
        ));
        assert!(
            e.starts_with("node1.yml: bootstrap.dcs.postgresql.use_slots: expected a boolean"),
            "{e}"
        );
        let e = err(&edit(
            "postgresql.parameters",
            Some(serde_json::json!({"work_mem": "4MB'\nshared_preload_libraries = 'evil"})),
        ));
        assert!(
            e.starts_with(
                "node1.yml: postgresql.parameters.work_mem: the value contains a control character"
            ),
            "{e}"
        );
        let e = err(&edit(
            "tags.failover_priority",
            Some(Value::String("high".into())),
        ));
        assert_eq!(
            e,
            r#"node1.yml: tags.failover_priority: invalid type: string "high", expected i64"#
        );
    }

    #[test]
    fn errors_are_one_line() {
        for text in [
            "scope: [unclosed\nname: x\n".to_string(),
            edit("bootstrap.dcs.ttl", Some(Value::String("a\nb".into()))),
            without("name"),
        ] {
            let e = err(&text);
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn yaml_syntax_error_names_file_and_line() {
        let e = err("scope: demo\nname: node1\nrestapi:\n  listen: [a\n  bad: : :\n");
        assert!(e.starts_with("node1.yml: invalid YAML:"), "{e}");
        assert!(e.contains("line"), "{e}");
        let e = err("");
        assert!(
            e.starts_with("node1.yml: invalid YAML: the document is empty"),
            "{e}"
        );
        let e = err("- a\n- b\n");
        assert!(e.contains("expected a mapping"), "{e}");
    }

    #[test]
    fn unknown_key_warns() {
        let text = edit("postgresql.foo", Some(Value::from(1)));
        let (_, warnings) = load(&text).unwrap();
        assert_eq!(
            warnings,
            vec!["node1.yml: unknown key postgresql.foo (ignored)"]
        );
        let text = edit(
            "restapi.authentication",
            Some(serde_json::json!({"username": "a", "password": "b", "extra": 1})),
        );
        let (_, warnings) = load(&text).unwrap();
        assert_eq!(
            warnings,
            vec!["node1.yml: unknown key restapi.authentication.extra (ignored)"]
        );
        let text = edit("bootstrap.dcs.wat", Some(Value::from(1)));
        let (_, warnings) = load(&text).unwrap();
        assert_eq!(
            warnings,
            vec!["node1.yml: unknown key bootstrap.dcs.wat (ignored)"]
        );
    }

    #[test]
    fn unsupported_patroni_keys_warn() {
        let text = format!(
            "{GOOD}watchdog:\n  mode: required\n  device: /dev/watchdog\nthread_pool_size: 5\nkubernetes:\n  labels: {{}}\n"
        );
        let text = text.replace(
            "  data_dir: /tmp",
            "  callbacks:\n    on_start: /bin/true\n  create_replica_methods: [pgbackrest, basebackup]\n  pgbackrest:\n    command: restore\n  bin_name:\n    postgres: pg\n  data_dir: /tmp",
        );
        let text = text.replace(
            "  listen: 127.0.0.1:8008",
            "  listen: 127.0.0.1:8008\n  certfile: /x.pem",
        );
        let text = text.replace(
            "    ttl: 30",
            "    ttl: 30\n    standby_cluster:\n      host: 10.0.0.1",
        );
        let (_, warnings) = load(&text).unwrap();
        let expect = [
            "node1.yml: watchdog: not supported",
            "node1.yml: thread_pool_size: not supported",
            "node1.yml: kubernetes: not supported",
            "node1.yml: postgresql.callbacks: not supported",
            "node1.yml: postgresql.create_replica_methods: not supported",
            "node1.yml: postgresql.pgbackrest: not supported",
            "node1.yml: postgresql.bin_name: not supported",
            "node1.yml: restapi.certfile: not supported",
            "node1.yml: bootstrap.dcs.standby_cluster: not supported",
        ];
        for e in expect {
            assert!(
                warnings.iter().any(|w| w.starts_with(e)),
                "missing {e:?} in {warnings:#?}"
            );
        }
        assert_eq!(warnings.len(), expect.len(), "{warnings:#?}");

        // watchdog off is fine.
        let (_, warnings) = load(&format!("{GOOD}watchdog:\n  mode: \"off\"\n")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn bad_ttl_rule_names_the_key() {
        let text = edit("bootstrap.dcs.ttl", Some(Value::from(20)));
        let e = err(&text);
        assert!(
            e.starts_with("node1.yml: bootstrap.dcs.ttl: must be >= loop_wait + 2 * retry_timeout"),
            "{e}"
        );
        // Below Patroni's floor of 20 but safe: accepted.
        let text = edit(
            "bootstrap.dcs",
            Some(serde_json::json!({"ttl": 6, "loop_wait": 1, "retry_timeout": 2})),
        );
        load(&text).unwrap();
        let e = err(&edit("bootstrap.dcs", Some(Value::from(5))));
        assert!(
            e.starts_with("node1.yml: bootstrap.dcs: expected a mapping"),
            "{e}"
        );
    }

    #[test]
    fn addresses_are_checked() {
        for (key, bad) in [
            ("restapi.listen", "127.0.0.1"),
            ("restapi.listen", "127.0.0.1:99999"),
            ("restapi.listen", "a,b:8008"),
            ("restapi.connect_address", "127.0.0.1:0"),
            ("restapi.connect_address", "*:8008"),
            ("postgresql.listen", "a,,b:5432"),
            ("postgresql.listen", "*,a:5432"),
            ("postgresql.connect_address", "127.0.0.1:x"),
            ("etcd3.hosts", "127.0.0.1:70000"),
        ] {
            let e = err(&edit(key, Some(Value::String(bad.into()))));
            assert!(e.starts_with(&format!("node1.yml: {key}: ")), "{bad}: {e}");
        }
        for (key, good) in [
            ("postgresql.listen", "*:5432"),
            ("postgresql.listen", "127.0.0.1,10.0.0.1:5432"),
            ("postgresql.listen", "[::1]:5432"),
            ("restapi.connect_address", "node1.example.com:8008"),
            ("etcd3.hosts", "10.0.0.1:2379,10.0.0.2:2379"),
            ("etcd3.hosts", "etcd1"),
        ] {
            load(&edit(key, Some(Value::String(good.into()))))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        // Patroni binds `*:port` to all interfaces.
        let (cfg, _) = load(&edit(
            "restapi.listen",
            Some(Value::String("*:8008".into())),
        ))
        .unwrap();
        assert_eq!(cfg.restapi.listen, "0.0.0.0:8008");
    }

    #[test]
    fn empty_name_is_an_error() {
        assert_eq!(
            err(&edit("name", Some(Value::String(" ".into())))),
            "node1.yml: name: must not be empty"
        );
        assert_eq!(
            err(&edit("postgresql.data_dir", Some(Value::String("".into())))),
            "node1.yml: postgresql.data_dir: must not be empty"
        );
    }

    #[test]
    fn numeric_password_is_text() {
        let text = GOOD.replace("password: rep-pass", "password: 12345");
        let (cfg, _) = load(&text).unwrap();
        assert_eq!(
            cfg.postgresql
                .authentication
                .replication
                .password
                .as_deref(),
            Some("12345")
        );
    }

    #[test]
    fn yaml_1_1_booleans_are_booleans() {
        let text = GOOD
            .replace("nofailover: false", "nofailover: yes")
            .replace("use_pg_rewind: true", "use_pg_rewind: on")
            .replace("    ttl: 30", "    ttl: 30\n    synchronous_mode: off");
        let (cfg, warnings) = load(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(cfg.tags.nofailover());
        let dynamic = DynamicConfig::from_json(&cfg.bootstrap_dynamic()).unwrap();
        assert!(dynamic.postgresql.use_pg_rewind);
        assert!(!dynamic.synchronous_mode);
        // Elsewhere strings stay strings.
        let text = GOOD.replace("password: rep-pass", "password: yes");
        let (cfg, _) = load(&text).unwrap();
        assert_eq!(
            cfg.postgresql
                .authentication
                .replication
                .password
                .as_deref(),
            Some("yes")
        );
    }

    #[test]
    fn tag_contradiction_warns() {
        let text = GOOD.replace(
            "nofailover: false",
            "nofailover: true\n  failover_priority: 2",
        );
        let (cfg, warnings) = load(&text).unwrap();
        assert!(cfg.tags.nofailover());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("node1.yml: tags: conflicting tags"),
            "{warnings:?}"
        );
    }

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
            e.starts_with("node1.yml: etcd3.protocol: https is not supported"),
            "{e}"
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
    fn config_from_environment_only() {
        let vars = env(&[
            ("PATRONI_SCOPE", "demo"),
            ("PATRONI_NAME", "node2"),
            ("PATRONI_RESTAPI_LISTEN", "127.0.0.1:8009"),
            ("PATRONI_RESTAPI_CONNECT_ADDRESS", "127.0.0.1:8009"),
            ("PATRONI_ETCD3_HOSTS", "127.0.0.1:2379"),
            ("PATRONI_POSTGRESQL_LISTEN", "127.0.0.1:5433"),
            ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "127.0.0.1:5433"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/tmp/d"),
            ("PATRONI_SUPERUSER_USERNAME", "postgres"),
            ("PATRONI_REPLICATION_USERNAME", "replicator"),
        ]);
        let path = Path::new("/nonexistent/agent-config-test.yml");
        let (cfg, _) = load_file(path, &vars).unwrap();
        assert_eq!(cfg.name, "node2");
        assert_eq!(cfg.source, path);

        let mut partial = vars.clone();
        partial.remove("PATRONI_POSTGRESQL_DATA_DIR");
        let e = load_file(path, &partial).unwrap_err().to_string();
        assert!(
            e.contains("not found") && e.ends_with("postgresql.data_dir: missing required key"),
            "{e}"
        );

        let e = load_file(path, &no_env()).unwrap_err().to_string();
        assert!(
            e.starts_with("/nonexistent/agent-config-test.yml: no such file"),
            "{e}"
        );
    }

    #[test]
    fn patroni_configuration_variable() {
        let path = Path::new("/nonexistent/agent-config-test.yml");
        let vars = env(&[("PATRONI_CONFIGURATION", GOOD), ("PATRONI_NAME", "node7")]);
        let (cfg, warnings) = load_file(path, &vars).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.scope, "demo");
        assert_eq!(cfg.name, "node7");
        assert_eq!(cfg.source, path);

        let vars = env(&[("PATRONI_CONFIGURATION", &without("postgresql.data_dir"))]);
        let e = load_file(path, &vars).unwrap_err().to_string();
        assert_eq!(
            e,
            "PATRONI_CONFIGURATION: postgresql.data_dir: missing required key"
        );
    }

    #[test]
    fn file_and_directory_loading() {
        let dir = std::env::temp_dir().join(format!("agent-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("00-base.yml");
        std::fs::write(&file, GOOD).unwrap();
        std::fs::write(
            dir.join("10-local.yaml"),
            "name: node5\npostgresql:\n  data_dir: /tmp/x\n",
        )
        .unwrap();
        std::fs::write(dir.join("README"), "not yaml: [").unwrap();

        let (cfg, _) = load_file(&file, &no_env()).unwrap();
        assert_eq!(cfg.name, "node1");
        assert_eq!(cfg.source, file);

        let (cfg, _) = load_file(&dir, &no_env()).unwrap();
        assert_eq!(cfg.name, "node5");
        assert_eq!(cfg.postgresql.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cfg.postgresql.authentication.superuser.username, "postgres");

        std::fs::write(dir.join("20-bad.yml"), "name: [").unwrap();
        let e = load_file(&dir, &no_env()).unwrap_err().to_string();
        assert!(e.contains("20-bad.yml: invalid YAML"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn yaml_merge_keys_work() {
        let text = GOOD.replace(
            "restapi:\n  listen: 127.0.0.1:8008\n  connect_address: 127.0.0.1:8008\n",
            "x-addr: &addr\n  connect_address: 127.0.0.1:8008\nrestapi:\n  <<: *addr\n  listen: 127.0.0.1:8008\n",
        );
        let (cfg, warnings) = load(&text).unwrap();
        assert_eq!(cfg.restapi.connect_address, "127.0.0.1:8008");
        assert_eq!(warnings, vec!["node1.yml: unknown key x-addr (ignored)"]);
    }

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                let (cfg, warnings) = load_file(&path, &no_env()).unwrap_or_else(|e| panic!("{e}"));
                assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
                DynamicConfig::from_json(&cfg.bootstrap_dynamic()).unwrap();
                seen += 1;
            }
        }
        assert!(
            seen >= 3,
            "expected the example configs in {}",
            dir.display()
        );
    }
}
