//! Publish: the node status for the REST API (`status::NodeStatus::from_cycle`),
//! the connection settings for the WAL sampler behind `GET /patroni`, our member
//! key in etcd (when `ha::cadence::member_write_due`), and the fence (armed while
//! postgres may be primary, see `ha::fence`).
//!
//! Rule: reports what was observed and done; decides nothing.

use super::*;

impl Agent {
    /// Patroni 4's `pending_restart_reason`: `{"guc": {"old_value", "new_value"}}`.
    fn pending_restart_reason(&self, p: &ProbeResult) -> Option<Value> {
        if p.pending.is_empty() {
            return None;
        }
        let configured = self.pg.s.merged_parameters(&self.dynamic_params);
        let reasons: serde_json::Map<String, Value> = p
            .pending
            .iter()
            .map(|(name, old)| {
                let new = configured.get(name).cloned().unwrap_or_default();
                (name.clone(), json!({"old_value": old, "new_value": new}))
            })
            .collect();
        Some(Value::Object(reasons))
    }

    /// Our member key: who we are (from the configuration), the state and role
    /// published, and the postgres part from a probe that answered.
    pub(super) fn member_data(&self, probe: Option<&ProbeResult>, state: &str) -> MemberData {
        MemberData {
            conn_url: Some(format!(
                "postgres://{}/postgres",
                self.cfg.postgresql.connect_address
            )),
            api_url: Some(format!(
                "{}://{}/patroni",
                if self.api_tls.is_some() {
                    "https"
                } else {
                    "http"
                },
                self.cfg.restapi.connect_address
            )),
            state: Some(state.to_string()),
            role: Some(self.last_role.to_string()),
            version: Some(VERSION.to_string()),
            tags: self.cfg.tags.to_json(),
            pause: self.dynamic.pause,
            pending_restart_reason: probe.and_then(|p| self.pending_restart_reason(p)),
            ..probe.map(MemberData::from).unwrap_or_default()
        }
    }

    /// Publish the node status for REST and the member key in etcd.
    pub(super) async fn publish(&mut self, obs: &Observation, d: &Decision) {
        // the probe counts only if postgres answered it this cycle
        let probe = if obs.pg.accepting {
            self.last_probe.clone()
        } else {
            None
        };
        let scheduled_restart = self
            .scheduled_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.raw.clone());
        let cluster: Option<Arc<Cluster>> = match &obs.cluster {
            Some(c) => Some(Arc::new(c.clone())),
            None => self.status_tx.borrow().cluster.clone(),
        };
        let status = NodeStatus::from_cycle(Cycle {
            scope: &self.cfg.scope,
            name: &self.cfg.name,
            tags: self.cfg.tags.to_json(),
            noloadbalance: self.cfg.tags.noloadbalance(),
            running: self.pg.is_running(),
            probe: probe.as_ref(),
            memory: &self.memory,
            data_dir: &obs.data_dir,
            last_role: self.last_role,
            holds_lock: self.holds_lock,
            dcs_read: obs.cluster.is_some(),
            cluster,
            dynamic: &self.dynamic,
            dcs_last_seen: self.dcs_last_seen,
            reason: d.reason.to_string(),
            scheduled_restart: scheduled_restart.clone(),
            pending_restart_reason: probe.as_ref().and_then(|p| self.pending_restart_reason(p)),
            config_warnings: self
                .security_warnings
                .iter()
                .cloned()
                .chain(self.config_notes.iter().map(|n| n.to_string()))
                .collect(),
            at: Instant::now(),
        });
        let mut data = self.member_data(probe.as_ref(), &status.state);
        data.scheduled_restart = scheduled_restart;
        let stored = obs.cluster.as_ref().map(|c| c.member(&self.cfg.name));
        if ha::cadence::member_write_due(stored, &data, self.etcd.lease()) {
            if let Err(e) = self.etcd.touch_member(&data).await {
                tracing::warn!("could not update our member key: {e}");
            }
        }
        self.status_tx.send_replace(Arc::new(status));
        let conn = (
            self.pg.s.local_conn(&self.dynamic_params),
            self.pg.s.superuser.clone(),
        );
        self.wal_conn.send_if_modified(|c| {
            let changed = c.as_ref() != Some(&conn);
            *c = Some(conn);
            changed
        });
        self.update_fence(obs);
    }

    /// Our leader key is now bound to the current lease: the fence deadline
    /// follows that lease's renewals from here on.
    pub(super) fn key_on_current_lease(&mut self) {
        if let Some(r) = self.etcd.renewal() {
            rearm_fence(
                &mut self.fence,
                &mut self.fence_renewal,
                r,
                LeaderKey::OnLease(r.lease),
            );
        }
    }

    /// Arm the fence while postgres may be a primary (or one is coming up), so
    /// neither a frozen agent nor a broken demotion can leave a writable primary
    /// behind an expired lease; disarm it otherwise (a replica, stopped, paused).
    fn update_fence(&mut self, obs: &Observation) {
        // this cycle's postgres view, with the long action as it is now (one may
        // have started during the cycle)
        let arm = ha::fence::must_arm(&obs.pg, &obs.data_dir, &self.memory);
        let pid = self.pg.postmaster_pid();
        let Some(fence) = self.fence.as_mut() else {
            return;
        };
        if arm {
            // No renewal at all: the deadline has passed. No postmaster yet (a
            // start as primary under way): the watchdog finds it by its data dir.
            let deadline = self
                .fence_renewal
                .as_ref()
                .map(ha::fence::deadline)
                .unwrap_or_default();
            fence.arm(pid.unwrap_or(0), deadline);
        } else {
            fence.disarm();
        }
    }
}

/// A lease renewal succeeded: move the fence deadline if the renewal counts for
/// it (see [`ha::fence::next_renewal`]).
pub(super) fn rearm_fence(
    fence: &mut Option<Fence>,
    current: &mut Option<LeaseRenewal>,
    fresh: LeaseRenewal,
    key: LeaderKey,
) {
    let next = ha::fence::next_renewal(*current, fresh, key);
    if next != *current {
        *current = next;
        if let (Some(f), Some(r)) = (fence.as_mut(), next) {
            f.rearm(ha::fence::deadline(&r));
        }
    }
}
