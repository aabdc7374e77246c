//! The cluster-wide dynamic configuration (the `config` key in etcd, seeded from
//! `bootstrap.dcs`), parsed the way Patroni 4 reads it.
//!
//! Rules:
//! - Every value Patroni accepts is accepted: numbers as JSON numbers or numeric
//!   strings, time values with units (`30s`, `30min`, `1h`, `1d`), byte values with
//!   units (`1MB`), booleans as `on/off/true/false/yes/no/1/0`, and
//!   `synchronous_mode: quorum`.
//! - Every value is bounded (timeouts at most a day, TTLs at most a year), so nothing
//!   read from etcd or the API can overflow a `Duration` or an `Instant`.
//! - One bad field never resets the others: [`DynamicConfig::effective`] keeps the
//!   last valid value of that field only and reports a warning naming it; `pause` and
//!   `synchronous_mode` are never reset by a value next to them.
//! - The timing rule `loop_wait + 2 * retry_timeout <= ttl` is kept as Patroni keeps
//!   it: `loop_wait` is lowered first, then `retry_timeout`, with a warning.
//!
//! Pure: no IO.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest `ttl`, `loop_wait`, `retry_timeout`, start/stop timeout we accept (a day).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// Longest `member_slots_ttl` (a year).
pub const MAX_SLOTS_TTL_SECS: f64 = 365.0 * 86_400.0;
/// Shortest `loop_wait`.
pub const MIN_LOOP_WAIT: f64 = 0.1;
/// Shortest `retry_timeout`.
pub const MIN_RETRY_TIMEOUT: f64 = 0.5;
/// Shortest `ttl` (etcd leases are whole seconds).
pub const MIN_TTL: f64 = 1.0;
/// Most synchronous standbys (postgres allows far fewer walsenders in practice).
pub const MAX_SYNC_NODES: u32 = 128;

/// The cluster-wide configuration, typed.
///
/// The raw JSON is kept next to it by callers so that unknown keys survive a rewrite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicConfig {
    pub ttl: f64,
    pub loop_wait: f64,
    pub retry_timeout: f64,
    pub maximum_lag_on_failover: u64,
    pub maximum_lag_on_syncnode: i64,
    pub primary_start_timeout: f64,
    pub primary_stop_timeout: f64,
    pub synchronous_mode: bool,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    pub check_timeline: bool,
    pub max_timelines_history: u32,
    pub member_slots_ttl: f64,
    pub pause: bool,
    pub postgresql: DynamicPostgresql,
    pub slots: Option<Value>,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        DynamicConfig {
            ttl: 30.0,
            loop_wait: 10.0,
            retry_timeout: 10.0,
            maximum_lag_on_failover: 1_048_576,
            maximum_lag_on_syncnode: -1,
            primary_start_timeout: 300.0,
            primary_stop_timeout: 0.0,
            synchronous_mode: false,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            check_timeline: false,
            max_timelines_history: 0,
            member_slots_ttl: 1800.0,
            pause: false,
            postgresql: DynamicPostgresql::default(),
            slots: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicPostgresql {
    pub use_pg_rewind: bool,
    pub use_slots: bool,
    pub parameters: BTreeMap<String, Value>,
    pub pg_hba: Option<Vec<String>>,
}

impl Default for DynamicPostgresql {
    fn default() -> Self {
        DynamicPostgresql {
            use_pg_rewind: false,
            use_slots: true,
            parameters: BTreeMap::new(),
            pg_hba: None,
        }
    }
}

/// Seconds as a `Duration`, never panicking: NaN and negatives are zero, and the
/// value is capped at a year (so `Instant::now() + d` cannot overflow either).
pub fn duration(secs: f64) -> std::time::Duration {
    let s = if secs.is_nan() {
        0.0
    } else {
        secs.clamp(0.0, MAX_SLOTS_TTL_SECS)
    };
    std::time::Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// What happened to one field while reading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The value cannot be used; the field kept its previous value.
    Invalid { key: String, message: String },
    /// The value was changed to keep a rule (Patroni does the same).
    Adjusted { key: String, message: String },
    /// The value is understood but runs as something close to it.
    Substituted { key: String, message: String },
}

impl Note {
    pub fn key(&self) -> &str {
        match self {
            Note::Invalid { key, .. }
            | Note::Adjusted { key, .. }
            | Note::Substituted { key, .. } => key,
        }
    }

    pub fn is_invalid(&self) -> bool {
        matches!(self, Note::Invalid { .. })
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Invalid { key, message } => {
                write!(f, "{key}: {message}; keeping the previous value")
            }
            Note::Adjusted { key, message } | Note::Substituted { key, message } => {
                write!(f, "{key}: {message}")
            }
        }
    }
}

impl DynamicConfig {
    /// Strict parse, for values a user is writing right now (`bootstrap.dcs` at
    /// start-up, `PATCH`/`PUT /config`, `agentctl edit-config`): any invalid field or
    /// a timing rule violation is an error `key: message`.
    pub fn from_json(v: &Value) -> Result<DynamicConfig, String> {
        let (cfg, notes) = DynamicConfig::effective(v, &DynamicConfig::default());
        for n in &notes {
            match n {
                Note::Invalid { key, message } => return Err(format!("{key}: {message}")),
                Note::Adjusted { key, .. } if key == "loop_wait" || key == "retry_timeout" => {
                    let (lw, rt, ttl) = raw_timings(v);
                    return Err(format!(
                        "ttl: must be >= loop_wait + 2 * retry_timeout ({ttl} < {lw} + 2 * {rt})"
                    ));
                }
                _ => {}
            }
        }
        Ok(cfg)
    }

    /// Check a change of the stored configuration (`PATCH /config`, `agentctl
    /// edit-config`): like [`DynamicConfig::from_json`], but a problem the stored
    /// value already had is not the writer's fault and does not block the change
    /// (a bad field written by another tool must not block `resume`).
    pub fn check_change(before: &Value, after: &Value) -> Result<(), String> {
        let old: Vec<Note> = DynamicConfig::effective(before, &DynamicConfig::default()).1;
        let (_, new) = DynamicConfig::effective(after, &DynamicConfig::default());
        for n in new.iter().filter(|n| !old.contains(n)) {
            match n {
                Note::Invalid { key, message } => return Err(format!("{key}: {message}")),
                Note::Adjusted { .. } => {
                    let (lw, rt, ttl) = raw_timings(after);
                    return Err(format!(
                        "ttl: must be >= loop_wait + 2 * retry_timeout ({ttl} < {lw} + 2 * {rt})"
                    ));
                }
                Note::Substituted { .. } => {}
            }
        }
        Ok(())
    }

    /// Lenient parse, for what is stored in etcd (anybody may have written it,
    /// `patronictl edit-config` included): a field absent from `v` takes its
    /// default, a field that cannot be used keeps its value from `previous`, and
    /// every such case is reported.
    pub fn effective(v: &Value, previous: &DynamicConfig) -> (DynamicConfig, Vec<Note>) {
        let mut notes = Vec::new();
        let empty = Map::new();
        let obj = match v {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => {
                notes.push(Note::Invalid {
                    key: "config".into(),
                    message: format!("expected a JSON object, got {}", kind(other)),
                });
                return (previous.clone(), notes);
            }
        };
        let mut c = DynamicConfig::default();
        let field = |key: &str| -> Option<&Value> { obj.get(key).filter(|v| !v.is_null()) };
        // One field: absent keeps the default; unusable keeps the previous value
        // and is noted; otherwise the parsed value.
        fn read<T: Clone>(
            raw: Option<&Value>,
            key: &str,
            previous: &T,
            parse: impl Fn(&Value) -> Result<T, String>,
            notes: &mut Vec<Note>,
        ) -> Option<T> {
            let raw = raw?;
            Some(parse(raw).unwrap_or_else(|message| {
                notes.push(Note::Invalid {
                    key: key.into(),
                    message,
                });
                previous.clone()
            }))
        }
        macro_rules! read {
            ($key:expr, $field:ident, $parse:expr) => {
                if let Some(x) = read(field($key), $key, &previous.$field, $parse, &mut notes) {
                    c.$field = x;
                }
            };
        }
        read!("ttl", ttl, |r| secs(r, MIN_TTL, MAX_TIMEOUT_SECS));
        read!("loop_wait", loop_wait, |r| secs(
            r,
            MIN_LOOP_WAIT,
            MAX_TIMEOUT_SECS
        ));
        read!("retry_timeout", retry_timeout, |r| {
            secs(r, MIN_RETRY_TIMEOUT, MAX_TIMEOUT_SECS)
        });
        read!("maximum_lag_on_failover", maximum_lag_on_failover, |r| {
            bytes(r, 0).map(|b| b as u64)
        });
        read!("maximum_lag_on_syncnode", maximum_lag_on_syncnode, |r| {
            bytes(r, -1)
        });
        // Patroni's older names count when the new ones are absent.
        let start_key = if obj.contains_key("primary_start_timeout") {
            "primary_start_timeout"
        } else {
            "master_start_timeout"
        };
        read!(start_key, primary_start_timeout, |r| secs(
            r,
            0.0,
            MAX_TIMEOUT_SECS
        ));
        let stop_key = if obj.contains_key("primary_stop_timeout") {
            "primary_stop_timeout"
        } else {
            "master_stop_timeout"
        };
        read!(stop_key, primary_stop_timeout, |r| secs(
            r,
            0.0,
            MAX_TIMEOUT_SECS
        ));
        read!("synchronous_mode", synchronous_mode, |r: &Value| match r {
            Value::String(s) if s.trim().eq_ignore_ascii_case("quorum") => Ok(true),
            other => boolean(other).map_err(|m| format!("{m} or quorum")),
        });
        if field("synchronous_mode")
            .and_then(Value::as_str)
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("quorum"))
        {
            notes.push(Note::Substituted {
                key: "synchronous_mode".into(),
                message: "quorum commit is not implemented; running synchronous_mode: on \
                          (every listed standby confirms each commit), which loses no more than quorum mode"
                    .into(),
            });
        }
        read!("synchronous_mode_strict", synchronous_mode_strict, boolean);
        read!("synchronous_node_count", synchronous_node_count, |r| {
            integer(r, 1, MAX_SYNC_NODES as i64).map(|n| n as u32)
        });
        read!("check_timeline", check_timeline, boolean);
        read!("max_timelines_history", max_timelines_history, |r| {
            integer(r, 0, u32::MAX as i64).map(|n| n as u32)
        });
        read!("member_slots_ttl", member_slots_ttl, |r| {
            secs(r, 0.0, MAX_SLOTS_TTL_SECS)
        });
        read!("pause", pause, boolean);
        if let Some(raw) = field("slots") {
            match raw {
                Value::Object(_) => c.slots = Some(raw.clone()),
                other => {
                    notes.push(Note::Invalid {
                        key: "slots".into(),
                        message: format!("expected a mapping, got {}", kind(other)),
                    });
                    c.slots = previous.slots.clone();
                }
            }
        }
        match obj.get("postgresql") {
            None | Some(Value::Null) => {}
            Some(Value::Object(pg)) => {
                c.postgresql = read_postgresql(pg, &previous.postgresql, &mut notes);
            }
            Some(other) => {
                notes.push(Note::Invalid {
                    key: "postgresql".into(),
                    message: format!("expected a mapping, got {}", kind(other)),
                });
                c.postgresql = previous.postgresql.clone();
            }
        }
        adjust_timings(&mut c, &mut notes);
        (c, notes)
    }

    /// Safety rule 2: `ttl >= loop_wait + 2 * retry_timeout`, and sane ranges.
    pub fn validate(&self) -> Result<(), String> {
        let v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        DynamicConfig::from_json(&v).map(|_| ())
    }

    /// The etcd lease TTL in whole seconds (etcd leases are integral; round up).
    pub fn lease_ttl_secs(&self) -> i64 {
        let t = self.ttl.clamp(MIN_TTL, MAX_TIMEOUT_SECS).ceil();
        // bounded above, so the conversion is exact
        t as i64
    }
}

/// `ttl`, `loop_wait`, `retry_timeout` as written (for the error message).
fn raw_timings(v: &Value) -> (String, String, String) {
    let get = |k: &str, d: &str| {
        v.get(k)
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| d.to_string())
    };
    (
        get("loop_wait", "10"),
        get("retry_timeout", "10"),
        get("ttl", "30"),
    )
}

/// Keep `loop_wait + 2 * retry_timeout <= ttl` the way Patroni does: lower
/// `loop_wait` first; if even the shortest loop does not fit, lower `retry_timeout`.
fn adjust_timings(c: &mut DynamicConfig, notes: &mut Vec<Note>) {
    if c.loop_wait + 2.0 * c.retry_timeout <= c.ttl {
        return;
    }
    if MIN_LOOP_WAIT + 2.0 * c.retry_timeout > c.ttl {
        let retry = ((c.ttl - MIN_LOOP_WAIT) / 2.0).max(MIN_RETRY_TIMEOUT);
        notes.push(Note::Adjusted {
            key: "retry_timeout".into(),
            message: format!(
                "loop_wait + 2 * retry_timeout must be <= ttl ({}); lowering loop_wait from {} to {} and retry_timeout from {} to {}",
                c.ttl, c.loop_wait, MIN_LOOP_WAIT, c.retry_timeout, retry
            ),
        });
        c.loop_wait = MIN_LOOP_WAIT;
        c.retry_timeout = retry;
        if c.loop_wait + 2.0 * c.retry_timeout > c.ttl {
            c.ttl = c.loop_wait + 2.0 * c.retry_timeout;
        }
    } else {
        let lw = c.ttl - 2.0 * c.retry_timeout;
        notes.push(Note::Adjusted {
            key: "loop_wait".into(),
            message: format!(
                "loop_wait + 2 * retry_timeout must be <= ttl ({}); lowering loop_wait from {} to {}",
                c.ttl, c.loop_wait, lw
            ),
        });
        c.loop_wait = lw;
    }
}

fn read_postgresql(
    pg: &Map<String, Value>,
    previous: &DynamicPostgresql,
    notes: &mut Vec<Note>,
) -> DynamicPostgresql {
    let mut out = DynamicPostgresql::default();
    let flag = |key: &str, prev: bool, default: bool, notes: &mut Vec<Note>| -> bool {
        match pg.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => boolean(v).unwrap_or_else(|message| {
                notes.push(Note::Invalid {
                    key: format!("postgresql.{key}"),
                    message,
                });
                prev
            }),
        }
    };
    out.use_pg_rewind = flag("use_pg_rewind", previous.use_pg_rewind, false, notes);
    out.use_slots = flag("use_slots", previous.use_slots, true, notes);
    match pg.get("parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            for (name, value) in params {
                match check_parameter(name, value) {
                    Ok(()) => {
                        out.parameters
                            .insert(name.to_ascii_lowercase(), value.clone());
                    }
                    Err(message) => {
                        notes.push(Note::Invalid {
                            key: format!("postgresql.parameters.{}", printable(name)),
                            message,
                        });
                        let lower = name.to_ascii_lowercase();
                        if let Some(v) = previous.parameters.get(&lower) {
                            out.parameters.insert(lower, v.clone());
                        }
                    }
                }
            }
        }
        Some(other) => {
            notes.push(Note::Invalid {
                key: "postgresql.parameters".into(),
                message: format!("expected a mapping, got {}", kind(other)),
            });
            out.parameters = previous.parameters.clone();
        }
    }
    match pg.get("pg_hba") {
        None | Some(Value::Null) => {}
        Some(Value::Array(lines)) => {
            let mut ok = Vec::new();
            let mut bad = None;
            for l in lines {
                match l {
                    Value::String(s) if !s.chars().any(|c| c.is_control()) => ok.push(s.clone()),
                    Value::String(_) => bad = Some("a line contains a control character".into()),
                    other => bad = Some(format!("expected strings, got {}", kind(other))),
                }
            }
            match bad {
                None => out.pg_hba = Some(ok),
                Some(message) => {
                    notes.push(Note::Invalid {
                        key: "postgresql.pg_hba".into(),
                        message,
                    });
                    out.pg_hba = previous.pg_hba.clone();
                }
            }
        }
        Some(other) => {
            notes.push(Note::Invalid {
                key: "postgresql.pg_hba".into(),
                message: format!("expected a list of lines, got {}", kind(other)),
            });
            out.pg_hba = previous.pg_hba.clone();
        }
    }
    out
}

/// A postgres parameter name and value that can be written to `postgresql.conf`
/// as one line: the name is an identifier (letters, digits, `_`, and `.` for
/// extension settings), the value a scalar without control characters.
pub fn check_parameter(name: &str, value: &Value) -> Result<(), String> {
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !name.starts_with('.')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid_name {
        return Err("not a valid parameter name (letters, digits, '_' and '.' only)".into());
    }
    match value {
        Value::String(s) if s.chars().any(|c| c.is_control()) => {
            Err("the value contains a control character".into())
        }
        Value::Array(_) | Value::Object(_) => {
            Err(format!("expected a scalar value, got {}", kind(value)))
        }
        _ => Ok(()),
    }
}

/// A name as it may be shown in one log line.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(80)
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Split `"  30 min "` into `(30.0, "min")`, like Patroni's `strtod`.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|(i, c)| {
            !(c.is_ascii_digit()
                || *c == '.'
                || ((*c == '-' || *c == '+')
                    && (*i == 0 || matches!(s.as_bytes()[i - 1], b'e' | b'E')))
                || ((*c == 'e' || *c == 'E') && *i > 0))
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    // "1e" or "5min": an 'e' not followed by digits belongs to the unit
    let (mut num, mut unit) = s.split_at(end);
    if let Some(pos) = num.find(['e', 'E']) {
        if num[pos + 1..].trim_start_matches(['+', '-']).is_empty() {
            unit = &s[pos..];
            num = &s[..pos];
        }
    }
    let x: f64 = num.parse().ok()?;
    Some((x, unit.trim()))
}

/// A duration in seconds: a number, or a string with an optional unit
/// (`us`, `ms`, `s`, `min`, `h`, `d`; Patroni's units, case-sensitive).
pub fn secs(v: &Value, min: f64, max: f64) -> Result<f64, String> {
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let (x, unit) = number_and_unit(s).ok_or_else(|| {
                format!("expected a number of seconds (units: ms, s, min, h, d), got {s:?}")
            })?;
            let factor = match unit {
                "" | "s" => 1.0,
                "us" => 1e-6,
                "ms" => 1e-3,
                "min" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                other => {
                    return Err(format!(
                        "unknown time unit {other:?} (valid units: us, ms, s, min, h, d)"
                    ))
                }
            };
            Some(x * factor)
        }
        other => return Err(format!("expected a number of seconds, got {}", kind(other))),
    };
    match x {
        Some(x) if x.is_finite() && x >= min && x <= max => Ok(x),
        Some(x) if x.is_finite() => {
            Err(format!("must be between {min} and {max} seconds (got {x})"))
        }
        _ => Err("not a finite number".into()),
    }
}

/// A byte count: an integer, or a string with a unit (`B`, `kB`, `MB`, `GB`, `TB`).
/// Negative values down to `min` are kept (`-1` means "off" for some keys).
pub fn bytes(v: &Value, min: i64) -> Result<i64, String> {
    let x = match v {
        Value::Number(n) => n.as_i64().map(|i| i as f64).or_else(|| n.as_f64()),
        Value::String(s) => {
            let (x, unit) = number_and_unit(s).ok_or_else(|| {
                format!("expected a number of bytes (units: kB, MB, GB, TB), got {s:?}")
            })?;
            let factor = match unit {
                "" | "B" => 1.0,
                "kB" => 1024.0,
                "MB" => 1024.0 * 1024.0,
                "GB" => 1024.0 * 1024.0 * 1024.0,
                "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                other => {
                    return Err(format!(
                        "unknown size unit {other:?} (valid units: B, kB, MB, GB, TB)"
                    ))
                }
            };
            Some(x * factor)
        }
        other => return Err(format!("expected a number of bytes, got {}", kind(other))),
    };
    match x {
        // i64::MAX as f64 rounds up to 2^63, so compare strictly below it
        Some(x) if x.is_finite() && x >= min as f64 && x < 9.2e18 => Ok(x.round() as i64),
        Some(x) if x.is_finite() => Err(format!("must be between {min} and 2^63 bytes (got {x})")),
        _ => Err("not a finite number".into()),
    }
}

/// An integer in `[min, max]`: a JSON integer or a numeric string (Patroni's `int()`).
pub fn integer(v: &Value, min: i64, max: i64) -> Result<i64, String> {
    let x = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9.2e18)
                .map(|f| f.trunc() as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        other => return Err(format!("expected an integer, got {}", kind(other))),
    };
    match x {
        Some(x) if (min..=max).contains(&x) => Ok(x),
        Some(x) => Err(format!("must be between {min} and {max} (got {x})")),
        None => Err(format!("expected an integer, got {v}")),
    }
}

/// A boolean as Patroni's `parse_bool`: `true/false`, `on/off`, `yes/no`, `1/0`.
pub fn boolean(v: &Value) -> Result<bool, String> {
    let s = match v {
        Value::Bool(b) => return Ok(*b),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        other => return Err(format!("expected a boolean, got {}", kind(other))),
    };
    match s.as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!(
            "expected a boolean (on/off, true/false, yes/no, 1/0), got {v}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eff(v: Value) -> (DynamicConfig, Vec<Note>) {
        DynamicConfig::effective(&v, &DynamicConfig::default())
    }

    #[test]
    fn patroni_value_forms_are_read() {
        let (c, notes) = eff(json!({
            "ttl": "30", "loop_wait": 10.0, "retry_timeout": "10s",
            "member_slots_ttl": "30min", "maximum_lag_on_failover": "1MB",
            "maximum_lag_on_syncnode": -1,
            "synchronous_mode": "on", "synchronous_mode_strict": "off",
            "pause": "yes", "check_timeline": 1, "synchronous_node_count": "2",
            "primary_start_timeout": "5min", "primary_stop_timeout": 0,
            "postgresql": {"use_slots": "false", "use_pg_rewind": "true",
                           "parameters": {"Max_Connections": 200}}
        }));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(c.ttl, 30.0);
        assert_eq!(c.retry_timeout, 10.0);
        assert_eq!(c.member_slots_ttl, 1800.0);
        assert_eq!(c.maximum_lag_on_failover, 1_048_576);
        assert!(c.synchronous_mode && !c.synchronous_mode_strict && c.pause && c.check_timeline);
        assert_eq!(c.synchronous_node_count, 2);
        assert_eq!(c.primary_start_timeout, 300.0);
        assert!(!c.postgresql.use_slots && c.postgresql.use_pg_rewind);
        assert_eq!(
            c.postgresql.parameters.get("max_connections"),
            Some(&json!(200))
        );
    }

    #[test]
    fn quorum_runs_as_synchronous_mode_with_a_note() {
        let (c, notes) = eff(json!({"synchronous_mode": "quorum", "pause": true}));
        assert!(c.synchronous_mode && c.pause);
        assert!(matches!(&notes[..], [Note::Substituted { key, .. }] if key == "synchronous_mode"));
        assert!(DynamicConfig::from_json(&json!({"synchronous_mode": "quorum"})).is_ok());
    }

    #[test]
    fn one_bad_field_keeps_its_previous_value_only() {
        let prev = DynamicConfig {
            pause: true,
            synchronous_mode: true,
            member_slots_ttl: 60.0,
            ..Default::default()
        };
        let (c, notes) = DynamicConfig::effective(
            &json!({"pause": true, "synchronous_mode": true, "member_slots_ttl": "30 fortnights",
                    "loop_wait": 1e300}),
            &prev,
        );
        assert!(c.pause, "pause must survive a bad neighbour");
        assert!(c.synchronous_mode);
        assert_eq!(c.member_slots_ttl, 60.0);
        assert_eq!(c.loop_wait, prev.loop_wait);
        let keys: Vec<&str> = notes.iter().map(|n| n.key()).collect();
        assert_eq!(keys, ["loop_wait", "member_slots_ttl"]);
        assert!(notes.iter().all(Note::is_invalid));
    }

    #[test]
    fn bad_pause_value_does_not_unpause() {
        let prev = DynamicConfig {
            pause: true,
            ..Default::default()
        };
        let (c, notes) = DynamicConfig::effective(&json!({"pause": "maybe"}), &prev);
        assert!(c.pause);
        assert_eq!(notes.len(), 1);
        let (c, _) = DynamicConfig::effective(&json!("not an object"), &prev);
        assert!(c.pause);
    }

    #[test]
    fn huge_and_odd_numbers_are_refused_not_converted() {
        for v in [
            json!(1e300),
            json!(-1),
            json!("NaN"),
            json!("inf"),
            json!(f64::MAX),
            json!([1]),
        ] {
            let (c, notes) = eff(
                json!({ "ttl": v.clone(), "loop_wait": v.clone(), "retry_timeout": v.clone(),
                                         "primary_stop_timeout": v.clone(), "member_slots_ttl": v.clone(),
                                         "maximum_lag_on_failover": v.clone(), "synchronous_node_count": v }),
            );
            assert_eq!(notes.len(), 7, "{notes:?}");
            assert_eq!(c, DynamicConfig::default());
            assert!(c.lease_ttl_secs() > 0);
        }
    }

    #[test]
    fn timings_are_adjusted_as_patroni_does() {
        // loop_wait lowered first
        let (c, notes) = eff(json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 8}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (20.0, 4.0, 8.0));
        assert!(matches!(&notes[..], [Note::Adjusted { key, .. }] if key == "loop_wait"));
        // then retry_timeout
        let (c, notes) = eff(json!({"ttl": 5, "loop_wait": 10, "retry_timeout": 10}));
        assert_eq!(
            (c.ttl, c.loop_wait, c.retry_timeout),
            (5.0, MIN_LOOP_WAIT, 2.45)
        );
        assert!(c.loop_wait + 2.0 * c.retry_timeout <= c.ttl);
        assert_eq!(notes.len(), 1);
        // the strict parse refuses both
        let e = DynamicConfig::from_json(&json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 8}))
            .unwrap_err();
        assert!(
            e.starts_with("ttl: must be >= loop_wait + 2 * retry_timeout"),
            "{e}"
        );
    }

    #[test]
    fn parameters_that_could_inject_lines_are_refused() {
        let prev = DynamicConfig::default();
        let (c, notes) = DynamicConfig::effective(
            &json!({"postgresql": {"parameters": {
                "work_mem": "4MB",
                "x = 1\narchive_command": "sh",
                "shared_buffers": "1GB'\narchive_command = 'rm -rf /'",
                "my_ext.setting": "on",
                "list": [1, 2]
            }}}),
            &prev,
        );
        assert_eq!(
            c.postgresql.parameters.keys().collect::<Vec<_>>(),
            ["my_ext.setting", "work_mem"]
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            DynamicConfig::from_json(&json!({"postgresql": {"parameters": {"a b": 1}}})).is_err()
        );
    }

    #[test]
    fn a_change_is_judged_by_what_it_breaks() {
        let stored = json!({"pause": true, "maximum_lag_on_failover": "a lot"});
        let mut resumed = stored.clone();
        resumed["pause"] = json!(false);
        assert_eq!(DynamicConfig::check_change(&stored, &resumed), Ok(()));
        let mut worse = stored.clone();
        worse["loop_wait"] = json!(1e300);
        assert!(DynamicConfig::check_change(&stored, &worse)
            .unwrap_err()
            .starts_with("loop_wait: "));
        let rule = json!({"ttl": 5, "loop_wait": 2});
        assert!(DynamicConfig::check_change(&stored, &rule)
            .unwrap_err()
            .starts_with("ttl: "));
    }

    #[test]
    fn strict_parse_names_the_key() {
        let e = DynamicConfig::from_json(&json!({"maximum_lag_on_failover": "lots"})).unwrap_err();
        assert!(e.starts_with("maximum_lag_on_failover: "), "{e}");
        let e =
            DynamicConfig::from_json(&json!({"postgresql": {"use_slots": "perhaps"}})).unwrap_err();
        assert!(e.starts_with("postgresql.use_slots: "), "{e}");
        assert!(DynamicConfig::from_json(&Value::Null).is_ok());
    }

    #[test]
    fn units_parse() {
        assert_eq!(secs(&json!("1.5 min"), 0.0, 1e9), Ok(90.0));
        assert_eq!(secs(&json!("250ms"), 0.0, 1e9), Ok(0.25));
        assert_eq!(secs(&json!("2d"), 0.0, 1e9), Ok(172_800.0));
        assert_eq!(secs(&json!("1e1"), 0.0, 1e9), Ok(10.0));
        assert!(secs(&json!("10 parsecs"), 0.0, 1e9).is_err());
        assert_eq!(bytes(&json!("16MB"), 0), Ok(16 << 20));
        assert_eq!(bytes(&json!(-1), -1), Ok(-1));
        assert!(bytes(&json!("1 XB"), 0).is_err());
        assert_eq!(integer(&json!(2.7), 0, 9), Ok(2));
        assert_eq!(boolean(&json!("OFF")), Ok(false));
        assert!(boolean(&json!("2")).is_err());
    }
}
