//! Publish: the node status for the REST API, our member key in etcd, and the
//! fence (armed while postgres may be primary, see `ha::fence`).
//!
//! Rule: reports what was observed and done; decides nothing.

use super::*;

impl Agent {
    /// Patroni's postgres state string.
    fn pg_state(&self, obs: &Observation) -> String {
        if let Some((kind, _)) = self.memory.long_action {
            return match kind {
                LongKind::Bootstrap => "initializing new cluster",
                LongKind::Clone => "creating replica",
                LongKind::StartPrimary | LongKind::StartReplica => "starting",
                LongKind::Promote => {
                    if obs.pg.accepting {
                        "running"
                    } else {
                        "starting"
                    }
                }
                LongKind::Rewind => "stopped",
                LongKind::Stop | LongKind::Demote => "stopping",
                LongKind::Restart => "restarting",
                LongKind::Reinit => "creating replica",
            }
            .into();
        }
        if self.pg.is_running() {
            if obs.pg.accepting {
                "running".into()
            } else {
                "starting".into()
            }
        } else if self.memory.crashed {
            "crashed".into()
        } else if matches!(
            self.memory.last_result,
            Some(LongResult {
                kind: LongKind::StartPrimary | LongKind::StartReplica,
                ok: false,
                ..
            })
        ) {
            "start failed".into()
        } else {
            "stopped".into()
        }
    }

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

    pub(super) fn member_data(&self, probe: Option<&ProbeResult>, state: &str) -> MemberData {
        let mut d = MemberData {
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
            ..Default::default()
        };
        if let Some(p) = probe {
            if p.in_recovery {
                d.xlog_location = Some(ha::received_position(p.receive_lsn, p.replay_lsn));
                d.receive_lsn = p.receive_lsn;
                d.replay_lsn = p.replay_lsn;
                d.replication_state = p.receiver_status.clone();
            } else {
                d.xlog_location = p.wal_lsn;
            }
            d.timeline = p.timeline;
            d.pending_restart = p.pending_restart;
            d.pending_restart_reason = self.pending_restart_reason(p);
        }
        d
    }

    /// Publish the node status for REST and the member key in etcd.
    pub(super) async fn publish(&mut self, obs: &Observation, d: &Decision) {
        let state = self.pg_state(obs);
        let probe = if obs.pg.accepting {
            self.last_probe.clone()
        } else {
            None
        };
        let mut data = self.member_data(probe.as_ref(), &state);
        let scheduled_restart = self
            .scheduled_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.raw.clone());
        data.scheduled_restart = scheduled_restart.clone();
        if let Some(c) = &obs.cluster {
            let me = c.member(&self.cfg.name);
            let stale = me.is_none_or(|m| m.data != data || m.lease != self.etcd.lease());
            if stale {
                if let Err(e) = self.etcd.touch_member(&data).await {
                    tracing::warn!("could not update our member key: {e}");
                }
            }
        }
        let cluster: Option<Arc<Cluster>> = match &obs.cluster {
            Some(c) => Some(Arc::new(c.clone())),
            None => self.status_tx.borrow().cluster.clone(),
        };
        let sync_standby = cluster
            .as_ref()
            .and_then(|c| c.sync.as_ref())
            .is_some_and(|s| self.dynamic.synchronous_mode && s.matches(&self.cfg.name, false));
        let xlog = probe.as_ref().map(|p| {
            if p.in_recovery {
                Xlog::Replica {
                    received_location: ha::received_position(p.receive_lsn, p.replay_lsn),
                    replayed_location: p.replay_lsn.unwrap_or(0),
                    replayed_timestamp: p.replay_timestamp.clone(),
                    paused: p.replay_paused,
                }
            } else {
                Xlog::Primary {
                    location: p.wal_lsn.unwrap_or(0),
                }
            }
        });
        let role = probe
            .as_ref()
            .map_or(self.last_role, |p| Role::of(p.in_recovery));
        let status = NodeStatus {
            scope: self.cfg.scope.clone(),
            name: self.cfg.name.clone(),
            state,
            role,
            server_version: probe.as_ref().and_then(|p| p.server_version),
            postmaster_start_time: probe.as_ref().and_then(|p| p.postmaster_start_time.clone()),
            timeline: probe.as_ref().and_then(|p| p.timeline),
            xlog,
            replication: probe
                .as_ref()
                .map(|p| p.replication.clone())
                .unwrap_or_default(),
            replication_state: probe
                .as_ref()
                .filter(|p| p.in_recovery)
                .and_then(|p| p.receiver_status.clone()),
            database_system_identifier: probe.as_ref().and_then(|p| p.sysid.clone()).or_else(
                || match &obs.data_dir {
                    DataDir::Initialized { sysid, .. } => sysid.clone(),
                    _ => None,
                },
            ),
            tags: self.cfg.tags.to_json(),
            noloadbalance: self.cfg.tags.noloadbalance(),
            is_leader: self.holds_lock && obs.cluster.is_some(),
            cluster_unlocked: cluster.as_ref().is_none_or(|c| c.leader.is_none()),
            paused: self.dynamic.pause,
            dcs_last_seen: self.dcs_last_seen,
            leader_optime: cluster.as_ref().and_then(|c| c.status.optime).unwrap_or(0),
            sync_standby,
            pending_restart: probe.as_ref().is_some_and(|p| p.pending_restart),
            reason: d.reason.to_string(),
            last_cycle: Instant::now(),
            ttl: self.dynamic.ttl,
            loop_wait: self.dynamic.loop_wait,
            maximum_lag_on_failover: self.dynamic.maximum_lag_on_failover,
            cluster,
            scheduled_restart,
            local_conn: Some(self.pg.s.local_conn(&self.dynamic_params)),
            pending_restart_reason: data.pending_restart_reason.clone(),
            config_warnings: self
                .security_warnings
                .iter()
                .cloned()
                .chain(self.config_notes.iter().map(|n| n.to_string()))
                .collect(),
        };
        self.status_tx.send_replace(Arc::new(status));
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
