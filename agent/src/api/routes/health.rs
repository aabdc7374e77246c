//! Health checks for load balancers and orchestrators: `200` when this node can
//! serve the kind of traffic the path names, `503` otherwise.
//!
//! `GET` answers with the node status JSON as body; `HEAD` and `OPTIONS` answer
//! with the status code only, which is what HAProxy's `option httpchk` reads.
//! `/liveness` and `/readiness` answer with the status code only, like Patroni.
//!
//! The decision ([`passes`], [`live`], [`ready`]) is a pure function of the
//! snapshot and the query, so every branch is testable without a server.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, MethodRouter};
use axum::Json;
use serde_json::Value;

use crate::api::{ApiState, Params};
use crate::status::{NodeStatus, Role, Xlog};

/// Which question a health path asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Writable primary holding the leader key.
    Primary,
    /// Holds the leader key.
    Leader,
    /// Leader of a standby cluster (not supported yet: always no).
    StandbyLeader,
    /// Running replica that takes read traffic.
    Replica,
    /// Primary or replica.
    ReadOnly,
    /// Postgres is running, whatever its role.
    Health,
    /// Replica listed as synchronous standby.
    Sync,
    /// Replica not listed as synchronous standby.
    Async,
    /// Primary or synchronous replica.
    ReadOnlySync,
    /// Quorum standby (no quorum commit yet: always no).
    Quorum,
    /// Primary or quorum standby.
    ReadOnlyQuorum,
}

/// Every health path Patroni answers, with the check behind it.
pub(crate) const CHECKS: &[(&str, Check)] = &[
    ("/", Check::Primary),
    ("/primary", Check::Primary),
    ("/master", Check::Primary),
    ("/read-write", Check::Primary),
    ("/leader", Check::Leader),
    ("/standby-leader", Check::StandbyLeader),
    ("/standby_leader", Check::StandbyLeader),
    ("/replica", Check::Replica),
    ("/read-only", Check::ReadOnly),
    ("/health", Check::Health),
    ("/sync", Check::Sync),
    ("/synchronous", Check::Sync),
    ("/async", Check::Async),
    ("/asynchronous", Check::Async),
    ("/read-only-sync", Check::ReadOnlySync),
    ("/read-only-synchronous", Check::ReadOnlySync),
    ("/quorum", Check::Quorum),
    ("/read-only-quorum", Check::ReadOnlyQuorum),
];

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET` with the status JSON, `HEAD` and `OPTIONS` with the code only.
pub(in crate::api) fn route(check: Check) -> MethodRouter<ApiState> {
    let code_only = move |State(api): State<ApiState>, params: Params| async move {
        code(passes(check, &api.snapshot(), &params))
    };
    get(
        move |State(api): State<ApiState>, params: Params| async move {
            let st = api.snapshot();
            (code(passes(check, &st, &params)), Json(st.patroni_json()))
        },
    )
    .head(code_only)
    .options(code_only)
}

pub(in crate::api) fn liveness_route() -> MethodRouter<ApiState> {
    let h = |State(api): State<ApiState>| async move { code(live(&api.snapshot())) };
    get(h).head(h).options(h)
}

pub(in crate::api) fn readiness_route() -> MethodRouter<ApiState> {
    let h = |State(api): State<ApiState>, params: Params| async move {
        code(ready(&api.snapshot(), &params))
    };
    get(h).head(h).options(h)
}

/// Does this node pass `check`, given the query (`lag`, `replication_state`, `tag_*`)?
pub(crate) fn passes(check: Check, st: &NodeStatus, params: &Params) -> bool {
    // Stricter than Patroni, which trusts the leader key alone: HAProxy must not
    // send writes to a leader whose postgres is down or still read-only.
    let primary = st.is_leader && st.role == Role::Primary && st.is_running();
    let replica = replica_ok(st, params);
    let ok = match check {
        // Paths about the leader ignore tag filters, as in Patroni.
        Check::Primary => return primary,
        Check::Leader => return st.is_leader,
        Check::StandbyLeader => return false,
        Check::Replica => replica,
        Check::ReadOnly => primary || replica,
        Check::Health => st.is_running(),
        Check::Sync => st.sync_standby && replica,
        Check::Async => !st.sync_standby && replica,
        Check::ReadOnlySync => primary || (st.sync_standby && replica),
        Check::Quorum => false,
        Check::ReadOnlyQuorum => primary,
    };
    ok && tags_match(st, params)
}

/// A running replica that takes load, is not behind by more than `?lag=` and is
/// in the `?replication_state=` asked for.
fn replica_ok(st: &NodeStatus, params: &Params) -> bool {
    // A lag Patroni cannot parse means no limit; so here.
    let lagging = match params.get("lag").and_then(parse_lag) {
        Some(max) => {
            st.leader_optime > 0
                && i128::from(st.leader_optime)
                    > i128::from(st.replayed_location()) + i128::from(max)
        }
        None => false,
    };
    let state_ok = params
        .get("replication_state")
        .is_none_or(|want| st.replication_state.as_deref() == Some(want));
    !st.noloadbalance && !lagging && st.role == Role::Replica && st.is_running() && state_ok
}

/// Every `?tag_<key>=<value>` must name a tag of this node with that value.
/// Non-string tags compare by their JSON text, so booleans are `true`/`false`.
fn tags_match(st: &NodeStatus, params: &Params) -> bool {
    params.iter().all(|(key, want)| {
        let Some(tag) = key.strip_prefix("tag_") else {
            return true;
        };
        match st.tags.get(tag) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => s == want,
            Some(other) => other.to_string().to_lowercase() == want,
        }
    })
}

/// `/liveness`: the HA loop is not stuck. A primary gets `ttl` (its leader key
/// is gone by then anyway), others twice that; in maintenance mode always alive.
pub(crate) fn live(st: &NodeStatus) -> bool {
    if st.paused {
        return true;
    }
    let primary = st.role == Role::Primary && st.is_running();
    let threshold = if primary { st.ttl } else { 2.0 * st.ttl };
    st.last_cycle.elapsed().as_secs_f64() < threshold
}

/// `/readiness`: the leader, or a streaming replica within `?lag=` (default
/// `maximum_lag_on_failover`) of the leader; `?mode=write` measures the received
/// instead of the replayed position.
pub(crate) fn ready(st: &NodeStatus, params: &Params) -> bool {
    if st.is_leader {
        return true;
    }
    if !st.is_running() || st.replication_state.as_deref() != Some("streaming") {
        return false;
    }
    // Without a view of the cluster the leader's position is unknown.
    if st.cluster.is_none() {
        return false;
    }
    let position = match &st.xlog {
        Some(Xlog::Replica {
            received_location,
            replayed_location,
            ..
        }) => {
            if params.get("mode") == Some("write") {
                *received_location
            } else {
                *replayed_location
            }
        }
        _ => 0,
    };
    let lag = i128::from(st.leader_optime) - i128::from(position);
    let max = params
        .get("lag")
        .and_then(parse_lag)
        .map(i128::from)
        .unwrap_or(i128::from(st.maximum_lag_on_failover));
    lag <= max
}

/// Parse a lag the way Patroni's `parse_int(value, 'B')` does: an integer (decimal,
/// `0x` hex or leading-zero octal) or a decimal number, optionally followed by a
/// unit `B`, `kB`, `MB`, `GB` or `TB` (case-sensitive, powers of 1024). `None`
/// when it does not parse.
pub fn parse_lag(value: &str) -> Option<i64> {
    let value = value.trim();
    let (int, rest) = strtol(value);
    let (number, rest) = if rest.starts_with(['.', 'e', 'E']) {
        let (f, rest) = strtod(value)?;
        (Number::Float(f), rest)
    } else {
        (Number::Int(int?), rest)
    };
    let unit = rest.trim();
    if unit.is_empty() {
        return Some(match number {
            Number::Int(i) => saturate(i),
            Number::Float(f) => f.round_ties_even() as i64,
        });
    }
    let exponent = match unit {
        "B" => 0,
        "kB" => 1,
        "MB" => 2,
        "GB" => 3,
        "TB" => 4,
        _ => return None,
    };
    let factor = 1024f64.powi(exponent);
    let mut bytes = match number {
        Number::Int(i) => i as f64 * factor,
        Number::Float(f) => f * factor,
    };
    if exponent > 0 {
        // like postgres, round to a whole number of the next smaller unit
        let step = 1024f64.powi(exponent - 1);
        bytes = (bytes / step).round_ties_even() * step;
    }
    // `as` saturates (and maps NaN to 0), so absurd input cannot panic
    Some(bytes.round_ties_even() as i64)
}

enum Number {
    Int(i128),
    Float(f64),
}

fn saturate(i: i128) -> i64 {
    i64::try_from(i).unwrap_or(if i < 0 { i64::MIN } else { i64::MAX })
}

/// C `strtol` with base 0 on the start of `s`: the value and the rest, or
/// `None` and all of `s` when `s` does not start with a number.
fn strtol(s: &str) -> (Option<i128>, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let digits_start = |radix: u32, from: usize| {
        let mut end = from;
        while end < b.len() && (b[end] as char).is_digit(radix) {
            end += 1;
        }
        end
    };
    let (radix, from, end) = if b[i..].starts_with(b"0x") && digits_start(16, i + 2) > i + 2 {
        (16, i + 2, digits_start(16, i + 2))
    } else if b.get(i) == Some(&b'0') {
        (8, i, digits_start(8, i + 1))
    } else if b.get(i).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        (10, i, digits_start(10, i))
    } else {
        return (None, s);
    };
    let mut v: i128 = 0;
    for c in &b[from..end] {
        let d = i128::from((*c as char).to_digit(radix).unwrap_or(0));
        v = v.saturating_mul(i128::from(radix)).saturating_add(d);
    }
    (Some(if negative { -v } else { v }), &s[end..])
}

/// C `strtod` on the start of `s` (sign, digits, fraction, exponent).
fn strtod(s: &str) -> Option<(f64, &str)> {
    let b = s.as_bytes();
    let digits = |from: usize| {
        let mut end = from;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        end
    };
    let mut end = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let int_end = digits(end);
    if b.get(int_end) == Some(&b'.') && digits(int_end + 1) > int_end + 1 {
        end = digits(int_end + 1);
    } else if int_end > end {
        end = int_end;
    } else {
        return None;
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(end + 1), Some(b'-' | b'+')));
        let exp_end = digits(end + 1 + sign);
        if exp_end > end + 1 + sign {
            end = exp_end;
        }
    }
    let f = s[..end].parse::<f64>().ok()?;
    Some((f, &s[end..]))
}
