//! What Patroni's schema has and this agent does not: the tables of unsupported keys,
//! other DCS sections, and the warning for each key the typed configuration did not
//! use; plus warnings about settings accepted but not acted on.
//!
//! Rule: pure, and never an error: a key Patroni knows but we do not implement, or a
//! key nobody knows, is one warning line naming the file and the key.

use serde_json::Value;

use super::load::deserialize;
use super::yaml::lookup;
use super::{Config, DynamicConfig};

/// Other DCS sections a Patroni configuration may have instead of `etcd3`.
pub(crate) const OTHER_DCS: &[&str] = &[
    "etcd",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
];

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
    "restapi.http_extra_headers",
    "restapi.https_extra_headers",
    "restapi.request_queue_size",
    "restapi.server_tokens",
    "etcd3.use_proxies",
    "etcd3.proxy",
    "etcd3.srv",
    "etcd3.srv_suffix",
    "bootstrap.method",
    "bootstrap.users",
    "postgresql.bin_name",
    "postgresql.pg_ctl_timeout",
    "postgresql.rewind",
    "postgresql.custom_conf",
    "postgresql.recovery_conf",
    "postgresql.use_unix_socket",
    "postgresql.use_unix_socket_repl",
    "postgresql.database",
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
pub(super) fn ignored_warning(file: &str, key: &str, tree: &Value) -> String {
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
pub(super) fn unsupported_warnings(
    cfg: &Config,
    tree: &Value,
    file: &str,
    warnings: &mut Vec<String>,
) {
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
    use serde_json::Value;

    use super::super::testing::*;

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
            "  create_replica_methods: [pgbackrest, basebackup]\n  pgbackrest:\n    command: restore\n  bin_name:\n    postgres: pg\n  data_dir: /tmp",
        );
        let text = text.replace(
            "  listen: 127.0.0.1:8008",
            "  listen: 127.0.0.1:8008\n  server_tokens: Minimal",
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
            "node1.yml: postgresql.create_replica_methods: not supported",
            "node1.yml: postgresql.pgbackrest: not supported",
            "node1.yml: postgresql.bin_name: not supported",
            "node1.yml: restapi.server_tokens: not supported",
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
}
