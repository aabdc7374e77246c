//! Observe: the lease keep-alive and the cluster read (at once), the dynamic
//! configuration in force, postgres (process and probe), the data directory, the
//! peers when a race may be due, and a finished long action's result.
//!
//! Rule: gathers facts and notes them in `Memory`; decides nothing.

use super::*;

impl Agent {
    pub(super) async fn reap_long_task(&mut self) {
        let finished = self.long.as_ref().is_some_and(|t| t.handle.is_finished());
        if !finished {
            return;
        }
        let Some(t) = self.long.take() else { return };
        let now = self.now();
        let res = match t.handle.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("task failed: {e}")),
        };
        if let Some(reply) = t.reply {
            let _ = reply.send(match &res {
                Ok(_) => (200, "restarted successfully".to_string()),
                Err(e) => (503, format!("restart failed: {e:#}")),
            });
        }
        self.memory.long_action = None;
        let (ok, message) = match &res {
            Ok(_) => (true, String::new()),
            Err(e) => (false, format!("{e:#}")),
        };
        if ok {
            tracing::info!("{} finished", t.kind.describe());
        } else {
            tracing::error!("{} failed: {message}", t.kind.describe());
        }
        match (t.kind, res) {
            (LongKind::Bootstrap, Ok(LongOutcome::Bootstrapped(sysid))) => {
                self.memory.bootstrapped_sysid = Some(sysid);
            }
            (LongKind::Rewind, Ok(_)) => self.memory.rewind_failed = None,
            (LongKind::Rewind, Err(_)) => self.memory.rewind_failed = Some(message.clone()),
            (LongKind::StartPrimary, Ok(_)) => {
                self.memory.failed_primary_starts = 0;
                self.memory.following = None;
            }
            (LongKind::StartPrimary, Err(_)) => self.memory.failed_primary_starts += 1,
            (LongKind::StartReplica | LongKind::Clone, Ok(LongOutcome::Following(f))) => {
                self.memory.following = Some(f);
                self.memory.crashed = false;
            }
            (LongKind::Promote, Ok(_)) => self.memory.following = None,
            (LongKind::Demote, Ok(LongOutcome::Following(f))) => {
                self.holds_lock = false;
                self.memory.following = Some(f);
            }
            (LongKind::Demote, _) => self.holds_lock = false,
            (LongKind::Restart, Ok(LongOutcome::Following(f))) => self.memory.following = Some(f),
            (LongKind::Reinit, Ok(LongOutcome::Following(f))) => {
                self.memory.following = Some(f);
                self.memory.rewind_failed = None;
                self.memory.divergence_checked = None;
                self.memory.crashed = false;
            }
            _ => {}
        }
        self.memory.last_result = Some(LongResult {
            kind: t.kind,
            ok,
            message,
            at: now,
        });
    }

    /// Gather this cycle's view: lease keep-alive and cluster read, postgres probe,
    /// data directory, and the peers when a leader race may be due.
    pub(super) async fn observe(&mut self) -> Observation {
        let now = self.now();
        // The fence must be running before anything else (safety rule 9).
        if let Some(f) = self.fence.as_mut() {
            self.fence_down = !f.supervise();
        }
        // etcd: keep our lease alive and read everything under the prefix, both at
        // once (a slow etcd costs one round trip per cycle here, not two). The
        // fence deadline moves as soon as the keep-alive succeeded, not at the end
        // of the cycle.
        self.etcd.set_timeout(self.retry_timeout());
        let ttl = self.dynamic.lease_ttl_secs();
        let reader = self.etcd.handle();
        let (etcd, fence, fence_renewal) =
            (&mut self.etcd, &mut self.fence, &mut self.fence_renewal);
        let renew = async move {
            let r = etcd.refresh_lease(ttl).await;
            if let Ok(fresh) = &r {
                rearm_fence(fence, fence_renewal, *fresh, LeaderKey::Unknown);
            }
            r
        };
        let (renewed, read) = tokio::join!(renew, reader.read_cluster());
        let mut cluster = match (renewed, read) {
            (Ok(fresh), Ok(c)) => {
                let key = match &c.leader {
                    Some(l) if l.name == self.cfg.name => LeaderKey::OnLease(l.lease),
                    _ => LeaderKey::NotOurs,
                };
                rearm_fence(&mut self.fence, &mut self.fence_renewal, fresh, key);
                Some(c)
            }
            (Ok(_), Err(e)) => {
                tracing::warn!("reading the cluster from etcd failed: {e}");
                None
            }
            (Err(e), _) => {
                tracing::warn!("etcd lease keep-alive failed: {e}");
                None
            }
        };
        if let Some(c) = cluster.as_mut() {
            self.dcs_last_seen = unix_now();
            self.apply_dynamic_config(c);
            self.memory.paused = self.dynamic.pause;
            // member slots seen now (and those the leader keeps for departed members)
            for m in &c.members {
                self.memory
                    .slot_seen
                    .insert(crate::dcs::model::slot_name_for(&m.name), now);
            }
            for slot in &c.status.retain_slots {
                self.memory.slot_seen.entry(slot.clone()).or_insert(now);
            }
            let ttl = self.dynamic.member_slots_ttl;
            self.memory.slot_seen.retain(|_, seen| now - *seen <= ttl);
            // The bootstrap is published once etcd holds our sysid and the config.
            if c.config.is_some()
                && c.initialize.is_some()
                && c.initialize == self.memory.bootstrapped_sysid
            {
                self.memory.bootstrapped_sysid = None;
            }
            self.holds_lock = c
                .leader
                .as_ref()
                .is_some_and(|l| l.name == self.cfg.name && l.lease == self.etcd.lease());
        } else {
            self.holds_lock = false;
        }

        // postgres: did it exit? then probe it.
        match self.pg.proc_state() {
            ProcState::Crashed(status) => {
                tracing::error!("postgres exited unexpectedly ({status})");
                self.memory.crashed = true;
                self.memory.following = None;
                self.probe.reset();
            }
            ProcState::Stopped | ProcState::NotStarted => {
                self.memory.following = None;
                self.probe.reset();
            }
            ProcState::Running { .. } => {}
        }
        let running = self.pg.is_running();
        let mut pg = PgView {
            running,
            ..Default::default()
        };
        if running
            && self
                .long
                .as_ref()
                .is_none_or(|t| !matches!(t.kind, LongKind::Bootstrap))
        {
            let conn = self.pg.s.local_conn(&self.dynamic_params);
            match self.probe.probe(&conn).await {
                Ok(p) => {
                    pg.accepting = true;
                    pg.in_recovery = Some(p.in_recovery);
                    // never report an older timeline than already seen (see Memory)
                    let tl = p.timeline.max(self.memory.timeline_seen);
                    self.memory.timeline_seen = tl;
                    pg.timeline = tl;
                    pg.wal_lsn = p.wal_lsn;
                    pg.receive_lsn = p.receive_lsn;
                    pg.replay_lsn = p.replay_lsn;
                    pg.replay_paused = p.replay_paused;
                    pg.receiver_status = p.receiver_status.clone();
                    pg.slots = Some(p.slots.clone());
                    pg.sysid = p.sysid.clone();
                    pg.server_version = p.server_version;
                    pg.pending_restart = p.pending_restart;
                    pg.walsenders = p.walsenders.clone();
                    pg.sync_standby_names = p.sync_standby_names.clone();
                    self.last_role = if p.in_recovery {
                        "replica".into()
                    } else {
                        "primary".into()
                    };
                    self.memory.crashed = false;
                    self.last_probe = Some(p);
                }
                Err(e) => {
                    tracing::debug!("probe failed: {e:#}");
                    self.last_probe = None;
                }
            }
        } else if !running {
            self.last_probe = None;
        }

        // data directory (pg_controldata only when postgres is down)
        let data_dir = if pg.accepting && pg.sysid.is_some() {
            DataDir::Initialized {
                sysid: pg.sysid.clone(),
                control: None,
                standby_signal: self.pg.s.data_dir.join("standby.signal").exists(),
            }
        } else if self
            .long
            .as_ref()
            .is_some_and(|t| matches!(t.kind, LongKind::Bootstrap | LongKind::Clone))
        {
            // being written right now; the decision only looks at the long action
            // (and the fence: a clone starts as a standby, a bootstrap does not)
            DataDir::Initialized {
                sysid: None,
                control: None,
                standby_signal: self
                    .long
                    .as_ref()
                    .is_some_and(|t| matches!(t.kind, LongKind::Clone)),
            }
        } else {
            self.pg.data_dir_state().await
        };
        if matches!(data_dir, DataDir::Empty) {
            self.last_role = "uninitialized".into();
        }

        // peers: only when nobody holds the key and we could race for it
        let peers = match &cluster {
            Some(c)
                if (c.leader.is_none() && !self.settings.nofailover || c.failover.is_some())
                    && pg.accepting
                    && self.long.is_none() =>
            {
                Some(
                    crate::peers::fetch_all(
                        &self.http,
                        &c.members,
                        &self.cfg.name,
                        Duration::from_secs(2),
                    )
                    .await,
                )
            }
            _ => None,
        };

        // a request from the REST API, or a scheduled restart that is due
        let unix_now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        if self.pending.is_none() {
            self.pending = self.requests_rx.try_recv().ok();
        }
        if self.pending.is_none() {
            let mut slot = self
                .scheduled_restart
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_some_and(|r| r.at <= unix_now) {
                if let Some(due) = slot.take() {
                    tracing::info!("scheduled restart at {} is due", due.schedule);
                    let (tx, _rx) = oneshot::channel();
                    self.pending = Some((due.request, tx));
                }
            } else if let Some(r) = slot.as_ref() {
                let wait = crate::config::duration((r.at - unix_now).max(0.05));
                let when = Instant::now() + wait;
                self.next_wakeup = Some(self.next_wakeup.map_or(when, |w| w.min(when)));
            }
        }
        let config_changed = pg.accepting && self.pg.parameters_changed(&self.dynamic_params);
        Observation {
            now,
            cluster,
            lease: self.etcd.lease(),
            data_dir,
            pg,
            peers,
            memory: self.memory.clone(),
            unix_now,
            request: self.pending.as_ref().map(|(r, _)| r.clone()),
            config_changed,
            fence_down: self.fence_down,
        }
    }

    /// Read the `config` key into the one configuration both `decide` and the
    /// executor use (safety rule 10): a field that cannot be used keeps its last
    /// valid value, each such field is logged once, and a missing or unreadable
    /// key keeps everything as it was.
    fn apply_dynamic_config(&mut self, c: &mut Cluster) {
        let (next, notes) = match &c.config {
            Some(cc) if cc.parsed.is_some() => {
                if cc.raw.is_object() {
                    self.memory.last_config = Some(cc.raw.clone());
                }
                DynamicConfig::effective(&cc.raw, &self.dynamic)
            }
            Some(_) => (
                self.dynamic.clone(),
                vec![crate::config::Note::Invalid {
                    key: "config".into(),
                    message: "the stored value is not JSON".into(),
                }],
            ),
            None => (self.dynamic.clone(), self.config_notes.clone()),
        };
        if notes != self.config_notes {
            for n in &notes {
                tracing::warn!("dynamic configuration: {n}");
            }
            if notes.is_empty() {
                tracing::info!("dynamic configuration: every field is valid again");
            }
            self.config_notes = notes;
        }
        if next != self.dynamic {
            tracing::info!(
                ttl = next.ttl,
                loop_wait = next.loop_wait,
                retry_timeout = next.retry_timeout,
                pause = next.pause,
                synchronous_mode = next.synchronous_mode,
                "dynamic configuration loaded"
            );
            self.dynamic = next;
            self.dynamic_params = self.dynamic.postgresql.parameters.clone();
        }
        c.in_force = Some(self.dynamic.clone());
    }
}
