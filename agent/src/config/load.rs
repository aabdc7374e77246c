//! Loading the local configuration: YAML file (or `PATRONI_CONFIGURATION`, or only
//! `PATRONI_*` variables), environment overrides, typed deserialization, validation.
//!
//! The pipeline works on a `serde_json::Value` tree so that environment overrides can
//! be merged the way Patroni merges them (`patch_config`) before anything is typed:
//!
//! ```text
//! YAML text -> tree -> + PATRONI_* overrides -> required keys -> Config (serde, paths)
//! (yaml.rs)            (env.rs, merge.rs)       (validate.rs)  -> validation + warnings
//!                                                                 (validate.rs, warnings.rs)
//! ```
//!
//! Rules: this file only reads files and runs the steps in order; each step lives in
//! its own module. Every error is one line naming the file and the dotted key.
//! Nothing here touches the process environment: the caller passes it in as a map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::env::environment_tree;
use super::merge::{merge, Null};
use super::validate::{check_required, validate};
use super::warnings::{ignored_warning, unsupported_warnings};
use super::yaml::{coerce_yaml11, one_line, parse_yaml};
use super::Config;

/// The whole YAML configuration in one variable, used when the file does not exist.
const CONFIG_VAR: &str = "PATRONI_CONFIGURATION";

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

    pub(super) fn invalid(
        file: &str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
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

/// Typed deserialization that names the key of a type error and records the paths
/// of keys the types do not use.
pub(super) fn deserialize<T: DeserializeOwned>(
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::testing::*;
    use super::*;
    use crate::config::DynamicConfig;

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
