//! Patroni's `patch_config` on JSON trees, the one merge for every caller: the
//! local configuration loader (files, then `PATRONI_*` overrides), `PATCH /config`
//! and `agentctl edit-config --apply`.
//!
//! Patroni's rules, key by key of the patch:
//!
//! - `null` removes the key, at any depth the patch walks into (only
//!   [`Null::Deletes`]; see [`Null`]);
//! - a mapping over a mapping merges into it, recursively;
//! - anything else (a mapping over a non-mapping, a key not there yet) is stored
//!   as it is, nested `null`s and all: Patroni walks into what exists only;
//! - a scalar replaces the old value only when Python's `str()` of the two
//!   differs, so `"30"` over `30` or `"True"` over `true` changes nothing.
//!
//! Rule: pure, no IO.

use serde_json::{Map, Number, Value};

/// What a `null` in the patch does to the key it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Null {
    /// Deletes the key, as Patroni's `patch_config` does (`PATCH /config`,
    /// `edit-config --apply`).
    Deletes,
    /// Is stored like any other value. The local configuration loader merges files
    /// and `PATRONI_*` overrides this way, so `key: ~` in a later file still reaches
    /// the typed pass (and its error or warning) instead of vanishing.
    Replaces,
}

/// Merge `patch` into `config`; returns whether `config` changed (Patroni's
/// `patch_config` return value: `PATCH /config` writes only then).
pub fn merge(config: &mut Map<String, Value>, patch: &Map<String, Value>, null: Null) -> bool {
    let mut changed = false;
    for (k, v) in patch {
        match (config.get_mut(k), v) {
            (_, Value::Null) if null == Null::Deletes => {
                // a key that held `null` is gone, but nothing changed (Patroni)
                changed |= config.remove(k).is_some_and(|old| !old.is_null());
            }
            (Some(Value::Object(c)), Value::Object(p)) => changed |= merge(c, p, null),
            (Some(old), _) if same_str(old, v) => {}
            _ => {
                config.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Python's `str(a) == str(b)` for JSON values: scalars compare by their text
/// (`30` and `"30"` are the same, `true` and `"True"` too); a list or a mapping
/// compares equal only to an equal value.
fn same_str(a: &Value, b: &Value) -> bool {
    match (py_str(a), py_str(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Python's `str()` of a JSON scalar as Patroni holds it (`None` for a list or a
/// mapping).
fn py_str(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => py_number(n),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Python's `repr` of a number: integers as they are; floats with a `.0` when
/// whole, in exponent form (`1e+16`, `1e-05`) outside `[1e-4, 1e16)`.
fn py_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    if !f.is_finite() {
        return n.to_string();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust's shortest exponent form (`1e16`, `1.5e-5`) in Python's spelling
        let s = format!("{f:e}");
        return match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        };
    }
    if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// (config, patch, config after, changed) with `null` deleting, as
    /// `PATCH /config` and `edit-config --apply` merge (Patroni's `patch_config`).
    #[test]
    fn patch_rows() {
        type Row = (&'static str, Value, Value, Value, bool);
        let rows: &[Row] = &[
            (
                "scalars replace, mappings merge",
                json!({"ttl": 30, "postgresql": {"parameters": {"a": 1}}}),
                json!({"ttl": 40, "postgresql": {"parameters": {"c": 3}}}),
                json!({"ttl": 40, "postgresql": {"parameters": {"a": 1, "c": 3}}}),
                true,
            ),
            (
                "null deletes at the top",
                json!({"ttl": 30, "pause": true}),
                json!({"pause": null}),
                json!({"ttl": 30}),
                true,
            ),
            (
                "null deletes at any depth the patch walks into",
                json!({"postgresql": {"parameters": {"a": 1, "b": 2}, "use_slots": true}}),
                json!({"postgresql": {"parameters": {"b": null}, "use_slots": null}}),
                json!({"postgresql": {"parameters": {"a": 1}}}),
                true,
            ),
            (
                "null for a key not there changes nothing",
                json!({"ttl": 30, "postgresql": {"parameters": {"a": 1}}}),
                json!({"x": null, "postgresql": {"parameters": {"zz": null}}}),
                json!({"ttl": 30, "postgresql": {"parameters": {"a": 1}}}),
                false,
            ),
            (
                "null over a stored null removes it but is no change",
                json!({"ttl": 30, "x": null}),
                json!({"x": null}),
                json!({"ttl": 30}),
                false,
            ),
            (
                "a mapping for a key not there is stored as it is, nested nulls and all",
                json!({"ttl": 30}),
                json!({"slots": {"s1": {"type": "physical", "database": null}}}),
                json!({"ttl": 30, "slots": {"s1": {"type": "physical", "database": null}}}),
                true,
            ),
            (
                "a mapping over a scalar replaces it as it is, nested nulls and all",
                json!({"slots": "none"}),
                json!({"slots": {"s1": null}}),
                json!({"slots": {"s1": null}}),
                true,
            ),
            (
                "a scalar over a mapping replaces it",
                json!({"postgresql": {"parameters": {"a": 1}}}),
                json!({"postgresql": {"parameters": 5}}),
                json!({"postgresql": {"parameters": 5}}),
                true,
            ),
            (
                "the same text is no change, and the old type stays",
                json!({"ttl": 30, "pause": true, "x": 1.5}),
                json!({"ttl": "30", "pause": "True", "x": "1.5"}),
                json!({"ttl": 30, "pause": true, "x": 1.5}),
                false,
            ),
            (
                "another text replaces",
                json!({"pause": true, "x": 1}),
                json!({"pause": "true", "x": 1.0}),
                json!({"pause": "true", "x": 1.0}),
                true,
            ),
            (
                "equal lists are no change",
                json!({"l": [1, "a"]}),
                json!({"l": [1, "a"]}),
                json!({"l": [1, "a"]}),
                false,
            ),
        ];
        for (name, config, patch, want, want_changed) in rows {
            let mut c = obj(config.clone());
            let changed = merge(&mut c, &obj(patch.clone()), Null::Deletes);
            assert_eq!(Value::Object(c.clone()), *want, "{name}");
            assert_eq!(changed, *want_changed, "{name}: changed");
            // a second time nothing changes
            assert!(
                !merge(&mut c, &obj(patch.clone()), Null::Deletes),
                "{name}: again"
            );
        }
    }

    #[test]
    fn null_replaces_when_asked() {
        let mut c = obj(json!({"a": {"b": 1, "c": 2}, "d": 1}));
        let changed = merge(
            &mut c,
            &obj(json!({"a": {"b": null}, "d": null, "e": {"f": null}})),
            Null::Replaces,
        );
        assert!(changed);
        assert_eq!(
            Value::Object(c),
            json!({"a": {"b": null, "c": 2}, "d": null, "e": {"f": null}})
        );
    }

    #[test]
    fn python_str_of_numbers() {
        for (v, want) in [
            (json!(30), "30"),
            (json!(-7), "-7"),
            (json!(1.0), "1.0"),
            (json!(1.5), "1.5"),
            (json!(0.0001), "0.0001"),
            (json!(0.00001), "1e-05"),
            (json!(1e16), "1e+16"),
            (json!(1.5e300), "1.5e+300"),
            (json!(123456789.125), "123456789.125"),
        ] {
            assert_eq!(py_str(&v).as_deref(), Some(want), "{v}");
        }
    }
}
