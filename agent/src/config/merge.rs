//! Patroni's `patch_config` on JSON trees: mappings merge key by key, recursively;
//! anything else in the patch replaces what was there.
//!
//! Rule: pure, no IO. One walk for every caller; they differ only in what a `null`
//! in the patch means ([`Null`]).

use serde_json::{Map, Value};

/// What a `null` in the patch does to the key it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Null {
    /// Deletes the key, as Patroni's `patch_config` does (`edit-config --apply`).
    Deletes,
    /// Is stored like any other value. The local configuration loader merges files
    /// and `PATRONI_*` overrides this way, so `key: ~` in a later file still reaches
    /// the typed pass (and its error or warning) instead of vanishing.
    Replaces,
}

/// Merge `patch` into `config`. A mapping in the patch is merged into a mapping in
/// `config`; over anything else (or nothing) it is inserted as it is, `null`s and all.
pub fn merge(config: &mut Map<String, Value>, patch: &Map<String, Value>, null: Null) {
    for (k, v) in patch {
        match (config.get_mut(k), v) {
            (_, Value::Null) if null == Null::Deletes => {
                config.remove(k);
            }
            (Some(Value::Object(c)), Value::Object(p)) => merge(c, p, null),
            _ => {
                config.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn merge_like_patroni() {
        let mut c = obj(json!({"ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}}, "x": 1}));
        merge(
            &mut c,
            &obj(
                json!({"ttl": 40, "postgresql": {"parameters": {"b": null, "c": 3}}, "x": {"y": 1}, "z": null}),
            ),
            Null::Deletes,
        );
        assert_eq!(
            Value::Object(c),
            json!({"ttl": 40, "postgresql": {"parameters": {"a": 1, "c": 3}}, "x": {"y": 1}})
        );
    }

    #[test]
    fn null_replaces_when_asked() {
        let mut c = obj(json!({"a": {"b": 1, "c": 2}, "d": 1}));
        merge(
            &mut c,
            &obj(json!({"a": {"b": null}, "d": null, "e": {"f": null}})),
            Null::Replaces,
        );
        assert_eq!(
            Value::Object(c),
            json!({"a": {"b": null, "c": 2}, "d": null, "e": {"f": null}})
        );
    }
}
