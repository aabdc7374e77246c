//! The untyped tree: YAML text as Patroni (PyYAML, YAML 1.1) reads it, turned into a
//! `serde_json::Value`, and the lookups the checks make on it.
//!
//! Rule: pure. Anything YAML 1.1 reads differently from our YAML 1.2 parser is
//! smoothed over here, at known keys only, before the typed pass sees the tree.

use serde_json::{Map, Value};

use super::load::ConfigError;

/// YAML text to a JSON tree; the top level must be a mapping.
pub(super) fn parse_yaml(text: &str, file: &str) -> Result<Value, ConfigError> {
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

pub(super) fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Patroni reads YAML with PyYAML (YAML 1.1), we with a YAML 1.2 parser. Two
/// differences matter for existing files, and are smoothed over at known keys:
/// `password: 12345` is text to Patroni (a number here), and `yes`/`no`/`on`/`off`
/// are booleans to PyYAML (strings here).
pub(super) fn coerce_yaml11(root: &mut Map<String, Value>) {
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

/// The value at a dotted path; `Err(())` when a parent on the way is not a mapping
/// (a type error the typed pass reports better).
pub(super) fn lookup<'a>(tree: &'a Value, path: &str) -> Result<Option<&'a Value>, ()> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::config::DynamicConfig;

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
    fn yaml_merge_keys_work() {
        let text = GOOD.replace(
            "restapi:\n  listen: 127.0.0.1:8008\n  connect_address: 127.0.0.1:8008\n",
            "x-addr: &addr\n  connect_address: 127.0.0.1:8008\nrestapi:\n  <<: *addr\n  listen: 127.0.0.1:8008\n",
        );
        let (cfg, warnings) = load(&text).unwrap();
        assert_eq!(cfg.restapi.connect_address, "127.0.0.1:8008");
        assert_eq!(warnings, vec!["node1.yml: unknown key x-addr (ignored)"]);
    }
}
