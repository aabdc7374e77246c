//! Physical replication slots: for members streaming from this node, the
//! permanent ones from the dynamic configuration, and dropping departed ones
//! after `member_slots_ttl`.
//!
//! Rule: pure.

use super::*;

/// A running replica keeps physical slots for the members that cascade from it
/// (and drops other slots it still has, e.g. from its time as a primary, so they
/// do not hold WAL back; permanent slots stay).
pub(super) fn replica_slots(obs: &Observation, s: &Settings, cluster: &Cluster) -> Option<Action> {
    let cfg = cluster.dynamic();
    if !cfg.postgresql.use_slots || obs.pg.in_recovery != Some(true) {
        return None;
    }
    let have = obs.pg.slots.as_ref()?;
    let wanted = slots_streaming_from(cluster, &s.name);
    slot_changes(have, &wanted, &permanent_slots(&cfg))
}

/// Slot names of the members that stream from `me`.
pub(super) fn slots_streaming_from(cluster: &Cluster, me: &str) -> Vec<String> {
    cluster
        .members
        .iter()
        .filter(|m| m.name != me && upstream_of(cluster, m) == Some(me))
        .map(|m| crate::dcs::model::slot_name_for(&m.name))
        .collect()
}

/// The slots to create (`wanted` but missing) and to drop (there, neither wanted
/// nor permanent), if any.
pub(super) fn slot_changes(
    have: &[String],
    wanted: &[String],
    permanent: &[String],
) -> Option<Action> {
    let create: Vec<String> = wanted
        .iter()
        .filter(|w| !have.contains(w))
        .cloned()
        .collect();
    let drop: Vec<String> = have
        .iter()
        .filter(|h| !wanted.contains(h) && !permanent.contains(h))
        .cloned()
        .collect();
    (!create.is_empty() || !drop.is_empty()).then_some(Action::SyncSlots { create, drop })
}

/// Names of permanent physical slots from the dynamic `slots:` section.
pub fn permanent_slots(cfg: &crate::config::DynamicConfig) -> Vec<String> {
    match &cfg.slots {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| {
                v.is_null()
                    || v.get("type").and_then(|t| t.as_str()).unwrap_or("physical") == "physical"
            })
            .map(|(k, _)| k.clone())
            .collect(),
        _ => vec![],
    }
}
