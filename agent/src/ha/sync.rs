//! Synchronous replication (Patroni's `synchronous_mode`): which standbys the
//! primary waits for (`synchronous_standby_names`) and who may take over (the
//! `sync` key).
//!
//! The ordering that keeps it safe (safety rule 8), one step per cycle:
//! - a standby is named in `synchronous_standby_names` before it appears in `sync`;
//! - it is listed in `sync` only once `pg_stat_replication` shows it as `sync`
//!   *and* its flush position has reached the primary's flush position recorded
//!   the first time a probe showed it named ([`Memory::sync_named`]). `sync`
//!   alone proves nothing: a standby whose WAL receiver is frozen still shows
//!   `streaming`, and turns `sync` the moment it is named, while it lacks what
//!   the previous synchronous standby acknowledged;
//! - a standby leaves `sync` before it leaves `synchronous_standby_names`.
//!
//! So at any moment every member listed in `sync` has every commit the primary
//! acknowledged, and only those members (or the former leader) may be promoted.
//! We name at most `synchronous_node_count` standbys, so every named standby
//! confirms every later commit; that is what keeps a recorded position valid
//! while the standby stays named. `'*'` is never written: a `pg_basebackup`
//! stream or an unknown application would confirm commits. Where Patroni uses
//! its placeholder (commits wait, nobody can confirm them), we write the same
//! [`NO_STANDBY`].
//!
//! Rule: pure, like the rest of `ha`. The recorded positions live in the loop's
//! memory, changed only through [`Action::NoteSyncNamed`].
//!
//! [`Memory::sync_named`]: super::Memory::sync_named

use std::collections::BTreeMap;

use super::{Action, Observation, Settings};
use crate::config::DynamicConfig;
use crate::dcs::model::Cluster;

/// `synchronous_standby_names` for these members (FIRST n semantics).
pub fn render_names(names: &[String], count: usize) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
        .collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        _ => format!("{} ({})", count.max(1), quoted.join(",")),
    }
}

/// The value that blocks every commit until a standby is named: a name no
/// member has (Patroni's, so both agents read a running primary alike).
pub const NO_STANDBY: &str = "__patroni_strict_sync_replica_placeholder__";

/// The standbys `synchronous_standby_names` names, in order. A `*` or
/// [`NO_STANDBY`] names nobody in particular, and a value we cannot parse names
/// nobody: no standby is admitted on their account.
pub fn named_standbys(ssn: &str) -> Vec<String> {
    let Some(tokens) = tokenize(ssn) else {
        return vec![];
    };
    // FIRST n (...), ANY n (...), n (...), or a bare list
    let inner: &[Token] = match tokens.as_slice() {
        [Token::Name(kw, false), Token::Num, Token::Open, list @ .., Token::Close]
            if kw.eq_ignore_ascii_case("first") || kw.eq_ignore_ascii_case("any") =>
        {
            list
        }
        [Token::Num, Token::Open, list @ .., Token::Close] => list,
        list => list,
    };
    let mut names = vec![];
    for (i, t) in inner.iter().enumerate() {
        match (i % 2, t) {
            (0, Token::Name(n, _)) => names.push(n.clone()),
            (0, Token::Star) => return vec![],
            (1, Token::Comma) if i + 1 < inner.len() => {}
            _ => return vec![],
        }
    }
    if names.iter().any(|n| n == NO_STANDBY) {
        return vec![];
    }
    names
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A name; `true` when it was double-quoted.
    Name(String, bool),
    Num,
    Star,
    Comma,
    Open,
    Close,
}

/// `synchronous_standby_names` as tokens (the grammar of postgres' syncrep
/// scanner); `None` when something does not fit.
fn tokenize(s: &str) -> Option<Vec<Token>> {
    let mut out = vec![];
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            ',' => out.push(Token::Comma),
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '*' => out.push(Token::Star),
            '"' => {
                let mut name = String::new();
                loop {
                    match it.next()? {
                        '"' if it.peek() == Some(&'"') => {
                            it.next();
                            name.push('"');
                        }
                        '"' => break,
                        c => name.push(c),
                    }
                }
                out.push(Token::Name(name, true));
            }
            c if c.is_ascii_digit() => {
                while it.peek().is_some_and(|c| c.is_ascii_digit()) {
                    it.next();
                }
                out.push(Token::Num);
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut name = c.to_string();
                while let Some(&c) = it.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        name.push(c);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Name(name, false));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The primary flush position recorded for each standby named now: kept from
/// memory while it stays named, this probe's position for one named since the
/// last cycle (the probe already shows the new value, so postgres reloaded it),
/// dropped once it is no longer named.
pub fn named_since(obs: &Observation) -> BTreeMap<String, u64> {
    let ssn = obs.pg.sync_standby_names.as_deref().unwrap_or("");
    let mut out = BTreeMap::new();
    for name in named_standbys(ssn) {
        match obs.memory.sync_named.get(&name).copied().or(obs.pg.wal_lsn) {
            Some(lsn) => out.insert(name, lsn),
            None => continue,
        };
    }
    out
}

/// The position recorded for `name` (names match case-insensitively, as in postgres).
fn recorded(named: &BTreeMap<String, u64>, name: &str) -> Option<u64> {
    named
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, lsn)| *lsn)
}

/// Members that may be synchronous now, best first: streaming from us with a
/// known flush position, not tagged `nosync` (or `sync_priority <= 0`), within
/// `maximum_lag_on_syncnode`. Ordered as Patroni orders them: members that may
/// fail over before `nofailover` ones (a synchronous standby that cannot be
/// promoted protects no failover), then by `sync_priority` (higher first), then
/// those postgres already treats as synchronous (so an equally good replica that
/// comes back does not displace the synchronous standby: each change empties the
/// `sync` key for a cycle or two, when no failover is possible), then by lag,
/// then by name.
pub fn candidates(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    cfg: &DynamicConfig,
) -> Vec<String> {
    let mut c: Vec<(bool, i64, bool, u64, String)> = obs
        .pg
        .walsenders
        .iter()
        .filter(|w| w.state == "streaming" && w.flush_lsn.is_some() && w.name != s.name)
        .filter_map(|w| {
            let m = cluster.member(&w.name)?;
            if m.data.tag_bool("nosync") {
                return None;
            }
            let prio = m.data.tag_int("sync_priority").unwrap_or(1);
            if prio <= 0 {
                return None;
            }
            if cfg.maximum_lag_on_syncnode > 0 && w.lag > cfg.maximum_lag_on_syncnode as u64 {
                return None;
            }
            let not_sync = !(w.sync_state == "sync" || w.sync_state == "quorum");
            Some((m.data.nofailover(), -prio, not_sync, w.lag, w.name.clone()))
        })
        .collect();
    c.sort();
    c.into_iter().map(|(_, _, _, _, n)| n).collect()
}

/// The leader's synchronous-replication step for this cycle (empty when settled),
/// preceded by a note of the positions recorded for the named standbys when
/// those changed.
pub(super) fn leader_steps(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    cfg: &DynamicConfig,
) -> Vec<Action> {
    let ssn = obs.pg.sync_standby_names.clone().unwrap_or_default();
    let key = cluster.sync.as_ref();
    let named = if cfg.synchronous_mode {
        named_since(obs)
    } else {
        BTreeMap::new()
    };
    let mut a = vec![];
    if named != obs.memory.sync_named {
        a.push(Action::NoteSyncNamed(named.clone()));
    }
    if !cfg.synchronous_mode {
        if let Some(k) = key {
            a.push(Action::DeleteSync {
                mod_revision: k.mod_revision,
            });
        }
        if !ssn.trim().is_empty() {
            a.push(Action::SetSyncNames(String::new()));
        }
        return a;
    }
    let count = cfg.synchronous_node_count.max(1) as usize;
    let mut picked = candidates(obs, s, cluster, cfg);
    picked.truncate(count);
    // Confirmed synchronous right now, under the current synchronous_standby_names.
    let confirmed: Vec<String> = obs
        .pg
        .walsenders
        .iter()
        .filter(|w| w.state == "streaming" && (w.sync_state == "sync" || w.sync_state == "quorum"))
        .map(|w| w.name.clone())
        .collect();
    let mine = key.is_some_and(|k| k.leader.as_deref() == Some(s.name.as_str()));
    let current: Vec<String> = if mine {
        key.map(|k| k.members()).unwrap_or_default()
    } else {
        vec![]
    };
    let write = |standbys: Vec<String>| Action::WriteSync {
        standbys,
        mod_revision: key.map(|k| k.mod_revision),
    };
    // 1. Shrink the key first: drop members no longer confirmed or no longer wanted.
    let keep: Vec<String> = current
        .iter()
        .filter(|m| confirmed.contains(m) && picked.contains(m))
        .cloned()
        .collect();
    if !mine || keep.len() != current.len() {
        a.push(write(keep));
        return a;
    }
    // 2. Then name the picked standbys in postgresql.conf (or block all commits in
    //    strict mode when nobody can be synchronous).
    let desired = if picked.is_empty() && cfg.synchronous_mode_strict {
        NO_STANDBY.to_string()
    } else {
        render_names(&picked, count)
    };
    if ssn.trim() != desired {
        a.push(Action::SetSyncNames(desired));
        return a;
    }
    // 3. Finally list in the key those postgres confirms as synchronous and that
    //    have flushed what was acknowledged before they were named (a member
    //    already listed was admitted so, by us, and stayed named since).
    let flushed = |m: &String| {
        let flush = obs
            .pg
            .walsenders
            .iter()
            .find(|w| &w.name == m)
            .and_then(|w| w.flush_lsn);
        matches!((flush, recorded(&named, m)), (Some(f), Some(at)) if f >= at)
    };
    let grow: Vec<String> = picked
        .iter()
        .filter(|m| confirmed.contains(m) && (current.contains(m) || flushed(m)))
        .cloned()
        .collect();
    if grow != current {
        a.push(write(grow));
    }
    a
}

/// Before promoting in synchronous mode: block commits until a standby is
/// admitted, and claim the `sync` key (no standby yet) so nobody else is eligible.
pub(super) fn prepromote(s: &Settings, cluster: &Cluster) -> Vec<Action> {
    let _ = s;
    vec![
        Action::SetSyncNames(NO_STANDBY.to_string()),
        Action::WriteSync {
            standbys: vec![],
            mod_revision: cluster.sync.as_ref().map(|k| k.mod_revision),
        },
    ]
}

/// Is synchronous mode in force for the leader race (a `sync` key with a leader)?
pub fn active(cluster: &Cluster, cfg: &DynamicConfig) -> bool {
    cfg.synchronous_mode && cluster.sync.as_ref().is_some_and(|k| k.leader.is_some())
}
