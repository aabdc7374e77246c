//! Fixtures shared by the configuration tests: a complete valid file and ways to
//! change one key of it.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{load_str, Config, ConfigError};

/// A complete, valid configuration; tests change one thing at a time.
pub(super) const GOOD: &str = r#"
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

pub(super) fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

pub(super) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn load(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    load_str(text, "node1.yml", &no_env())
}

pub(super) fn err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Remove the key at a dotted path from GOOD and return the YAML.
pub(super) fn without(path: &str) -> String {
    edit(path, None)
}

/// Replace (or with `None`, remove) the value at a dotted path in GOOD.
pub(super) fn edit(path: &str, value: Option<Value>) -> String {
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
