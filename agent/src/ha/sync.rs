//! Synchronous replication (Patroni's `synchronous_mode`): which standbys the
//! primary waits for (`synchronous_standby_names`) and who may take over (the
//! `sync` key).
//!
//! The ordering that keeps it safe, one step per cycle:
//! - a standby is named in `synchronous_standby_names` before it appears in `sync`,
//!   and it is listed in `sync` only once `pg_stat_replication` shows it as `sync`;
//! - a standby leaves `sync` before it leaves `synchronous_standby_names`.
//!
//! So at any moment every member listed in `sync` has every commit the primary
//! acknowledged, and only those members (or the former leader) may be promoted.
//!
//! Rule: pure, like the rest of `ha`.

use super::{Action, Observation, Settings};
use crate::config::DynamicConfig;
use crate::dcs::model::Cluster;

/// One walsender as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Walsender {
    pub name: String,
    pub state: String,
    /// `async`, `potential`, `sync`, `quorum`.
    pub sync_state: String,
    /// Bytes between the primary's flush position and the standby's flush position.
    pub lag: u64,
}

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

/// The value that blocks every commit until some standby confirms it.
pub const ANY_STANDBY: &str = "*";

/// Members that may be synchronous now, best first: streaming from us, not tagged
/// `nosync` (or `sync_priority <= 0`), within `maximum_lag_on_syncnode`; ordered by
/// `sync_priority` (higher first), then those postgres already treats as
/// synchronous (so an equally good replica that comes back does not displace the
/// synchronous standby: each change empties the `sync` key for a cycle or two,
/// when no failover is possible), then by lag, then by name.
pub fn candidates(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    cfg: &DynamicConfig,
) -> Vec<String> {
    let mut c: Vec<(i64, bool, u64, String)> = obs
        .pg
        .walsenders
        .iter()
        .filter(|w| w.state == "streaming" && w.name != s.name)
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
            Some((-prio, not_sync, w.lag, w.name.clone()))
        })
        .collect();
    c.sort();
    c.into_iter().map(|(_, _, _, n)| n).collect()
}

/// The leader's synchronous-replication step for this cycle (empty when settled).
pub(super) fn leader_steps(
    obs: &Observation,
    s: &Settings,
    cluster: &Cluster,
    cfg: &DynamicConfig,
) -> Vec<Action> {
    let ssn = obs.pg.sync_standby_names.clone().unwrap_or_default();
    let key = cluster.sync.as_ref();
    if !cfg.synchronous_mode {
        let mut a = vec![];
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
        return vec![write(keep)];
    }
    // 2. Then name the picked standbys in postgresql.conf (or block all commits in
    //    strict mode when nobody can be synchronous).
    let desired = if picked.is_empty() && cfg.synchronous_mode_strict {
        ANY_STANDBY.to_string()
    } else {
        render_names(&picked, count)
    };
    if ssn.trim() != desired {
        return vec![Action::SetSyncNames(desired)];
    }
    // 3. Finally list in the key those postgres confirms as synchronous.
    let grow: Vec<String> = picked
        .iter()
        .filter(|m| confirmed.contains(m))
        .cloned()
        .collect();
    if grow != current {
        return vec![write(grow)];
    }
    vec![]
}

/// Before promoting in synchronous mode: block commits until a standby confirms
/// them, and claim the `sync` key (no standby yet) so nobody else is eligible.
pub(super) fn prepromote(s: &Settings, cluster: &Cluster) -> Vec<Action> {
    let _ = s;
    vec![
        Action::SetSyncNames(ANY_STANDBY.to_string()),
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
