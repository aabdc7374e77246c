//! `edit-config` changes: `-s key.path=value`, `-p guc=value`, `--apply FILE`,
//! `--replace FILE`, or `$EDITOR` on the YAML.
//!
//! The pure parts (paths, values) are apart from the two that touch the
//! system (reading a file or stdin, running the editor).

use std::io::Read;

use serde_json::{Map, Value};

use super::{CtlError, CtlResult};

/// A `-s` value as YAML would read it (`10` a number, `true` a boolean, `null` or
/// nothing deletes, anything else a string), with YAML 1.1's `on`/`off`/`yes`/`no`
/// booleans as patronictl (PyYAML) reads them.
pub fn parse_scalar(raw: &str) -> Result<Value, String> {
    let t = raw.trim();
    match t {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Ok(Value::Bool(true)),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => return Ok(Value::Bool(false)),
        _ => {}
    }
    serde_yaml_ng::from_str::<Value>(raw).map_err(|e| format!("cannot parse value {raw:?}: {e}"))
}

/// One `key.path=value` pair.
pub fn parse_pair(pair: &str) -> CtlResult<(Vec<String>, Value)> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(CtlError::usage(format!("invalid parameter setting {pair}")));
    };
    let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(CtlError::usage(format!("invalid parameter setting {pair}")));
    }
    let value = parse_scalar(value)
        .map_err(|e| CtlError::usage(format!("invalid parameter setting {pair}: {e}")))?;
    Ok((path, value))
}

/// Set (or, for `null`, delete) the value at `path`. Under `postgresql.parameters`
/// the rest of the path is one name: GUCs may contain dots (`pg_stat_statements.max`).
/// Mappings left empty by a deletion are removed.
pub fn set_path(config: &mut Map<String, Value>, path: &[String], value: Value) {
    set_path_at(config, path, value, &[]);
}

fn set_path_at(config: &mut Map<String, Value>, path: &[String], value: Value, prefix: &[&str]) {
    let joined;
    let path: &[String] = if prefix == ["postgresql", "parameters"] && path.len() > 1 {
        joined = [path.join(".")];
        &joined
    } else {
        path
    };
    let Some((key, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        if value.is_null() {
            config.remove(key);
        } else {
            config.insert(key.clone(), value);
        }
        return;
    }
    let child = config
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    if let Value::Object(m) = child {
        let mut p: Vec<&str> = prefix.to_vec();
        p.push(key);
        set_path_at(m, rest, value, &p);
        if m.is_empty() {
            config.remove(key);
        }
    }
}

/// Apply `-s` pairs and `-p` pairs (`postgresql.parameters.<name>`), in that order.
pub fn apply_pairs(config: &Value, set: &[String], pg: &[String]) -> CtlResult<Value> {
    let mut m = config.as_object().cloned().unwrap_or_default();
    let pairs = set.iter().cloned().chain(
        pg.iter()
            .map(|p| format!("postgresql.parameters.{}", p.trim_start())),
    );
    for pair in pairs {
        let (path, value) = parse_pair(&pair)?;
        set_path(&mut m, &path, value);
    }
    Ok(Value::Object(m))
}

/// YAML text of a configuration file to a mapping (an empty document is `{}`).
pub fn parse_config_yaml(text: &str, source: &str) -> CtlResult<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(CtlError::usage(format!(
            "{source}: the configuration must be a YAML mapping"
        ))),
        Err(e) => Err(CtlError::usage(format!("{source}: invalid YAML: {e}"))),
    }
}

/// Read `--apply`/`--replace` input: a file, or stdin for `-`.
pub fn read_source(name: &str) -> CtlResult<Map<String, Value>> {
    let text = if name == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CtlError::usage(format!("cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(name)
            .map_err(|e| CtlError::usage(format!("cannot read {name}: {e}")))?
    };
    parse_config_yaml(&text, if name == "-" { "stdin" } else { name })
}

/// A temporary file holding the YAML while the editor runs; removed on drop
/// unless [`EditFile::keep`] is called.
pub struct EditFile {
    pub path: std::path::PathBuf,
    keep: bool,
}

impl EditFile {
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for EditFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Run `$EDITOR` (else `editor`, else `vi`) on `text`; returns the edited text and its file.
pub fn run_editor(text: &str, cluster: &str) -> CtlResult<(String, EditFile)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            ["editor", "vi"]
                .iter()
                .find(|e| which(e))
                .map(|e| e.to_string())
        })
        .ok_or_else(|| {
            CtlError::usage("EDITOR is not set and neither editor nor vi is available")
        })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "{}-config-{}-{nanos}.yaml",
        cluster.replace('/', "_"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| CtlError::failed(format!("cannot create {}: {e}", path.display())))?;
    let file = EditFile { path, keep: false };
    f.write_all(text.as_bytes())
        .map_err(|e| CtlError::failed(format!("cannot write {}: {e}", file.path.display())))?;
    drop(f);
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status = std::process::Command::new(program)
        .args(words)
        .arg(&file.path)
        .status()
        .map_err(|e| CtlError::failed(format!("cannot run editor {editor}: {e}")))?;
    if !status.success() {
        return Err(CtlError::failed(format!(
            "editor exited with {}",
            status
                .code()
                .map(|c| format!("return code {c}"))
                .unwrap_or_else(|| "a signal".into())
        )));
    }
    let after = std::fs::read_to_string(&file.path)
        .map_err(|e| CtlError::failed(format!("cannot read {}: {e}", file.path.display())))?;
    Ok((after, file))
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn scalars_as_yaml_reads_them() {
        assert_eq!(parse_scalar("10").unwrap(), json!(10));
        assert_eq!(parse_scalar("1.5").unwrap(), json!(1.5));
        assert_eq!(parse_scalar("true").unwrap(), json!(true));
        assert_eq!(parse_scalar("False").unwrap(), json!(false));
        assert_eq!(parse_scalar("on").unwrap(), json!(true));
        assert_eq!(parse_scalar("off").unwrap(), json!(false));
        assert_eq!(parse_scalar("128MB").unwrap(), json!("128MB"));
        assert_eq!(parse_scalar("'10'").unwrap(), json!("10"));
        assert_eq!(parse_scalar("null").unwrap(), Value::Null);
        assert_eq!(parse_scalar("").unwrap(), Value::Null);
        assert_eq!(parse_scalar("~").unwrap(), Value::Null);
        assert_eq!(parse_scalar("[a, b]").unwrap(), json!(["a", "b"]));
        assert_eq!(parse_scalar("{a: 1}").unwrap(), json!({"a": 1}));
        assert_eq!(
            parse_scalar("host all all 0.0.0.0/0 md5").unwrap(),
            json!("host all all 0.0.0.0/0 md5")
        );
        assert!(parse_scalar("[unclosed").is_err());
    }

    #[test]
    fn pairs() {
        assert_eq!(
            parse_pair("ttl=40").unwrap(),
            (vec!["ttl".to_string()], json!(40))
        );
        assert_eq!(
            parse_pair(" postgresql.use_slots = false").unwrap(),
            (
                vec!["postgresql".to_string(), "use_slots".to_string()],
                json!(false)
            )
        );
        // only the first = splits
        assert_eq!(parse_pair("a=b=c").unwrap().1, json!("b=c"));
        for bad in ["ttl", "=5", "a..b=1", "a.=1", "x=[1"] {
            let e = parse_pair(bad).unwrap_err();
            assert_eq!(e.code, 2, "{bad}");
        }
    }

    #[test]
    fn set_nested_and_delete() {
        let config = json!({
            "ttl": 30,
            "postgresql": {"parameters": {"max_connections": 100}, "use_slots": true}
        });
        let out = apply_pairs(
            &config,
            &[
                "ttl=40".into(),
                "postgresql.use_slots=null".into(),
                "slots.s1.type=physical".into(),
                "synchronous_mode=on".into(),
            ],
            &[
                "max_connections=200".into(),
                " pg_stat_statements.max=5000".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "ttl": 40,
                "synchronous_mode": true,
                "slots": {"s1": {"type": "physical"}},
                "postgresql": {"parameters": {"max_connections": 200, "pg_stat_statements.max": 5000}}
            })
        );
        // deleting the last key of a mapping removes the mapping too
        let out = apply_pairs(
            &out,
            &["slots.s1.type=null".into()],
            &[
                "max_connections=null".into(),
                "pg_stat_statements.max=".into(),
            ],
        )
        .unwrap();
        assert_eq!(out, json!({"ttl": 40, "synchronous_mode": true}));
        // deleting what is not there changes nothing
        assert_eq!(apply_pairs(&out, &["a.b.c=null".into()], &[]).unwrap(), out);
        // a scalar in the way becomes a mapping
        assert_eq!(
            apply_pairs(&json!({"a": 1}), &["a.b=2".into()], &[]).unwrap(),
            json!({"a": {"b": 2}})
        );
    }

    #[test]
    fn config_yaml_documents() {
        assert_eq!(parse_config_yaml("", "f").unwrap(), Map::new());
        assert_eq!(parse_config_yaml("~\n", "f").unwrap(), Map::new());
        assert_eq!(
            parse_config_yaml("ttl: 5\n", "f").unwrap(),
            obj(json!({"ttl": 5}))
        );
        assert_eq!(parse_config_yaml("- 1\n", "f").unwrap_err().code, 2);
        let e = parse_config_yaml("a: [\n", "f.yml").unwrap_err();
        assert!(e.message.starts_with("f.yml: invalid YAML"), "{e}");
    }
}
