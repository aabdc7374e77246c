//! Observe: the lease keep-alive and the cluster read (at once), the dynamic
//! configuration in force, postgres (process and probe), the data directory, the
//! peers when a race may be due, and a finished long action's result.
//!
//! Rule: gathers facts and notes them in `Memory`; decides nothing.

use super::*;
use crate::ha::memory::{Event, LongEnd};

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
        let end = match res {
            Ok(LongOutcome::Done) => LongEnd::Done,
            Ok(LongOutcome::Bootstrapped(sysid)) => LongEnd::Bootstrapped(sysid),
            Ok(LongOutcome::Following(f)) => LongEnd::Following(f),
            Ok(LongOutcome::PrePromoteFailed) => LongEnd::PrePromoteFailed,
            Err(e) => LongEnd::Failed(format!("{e:#}")),
        };
        match &end {
            LongEnd::Failed(message) => {
                tracing::error!("{} failed: {message}", t.kind.describe())
            }
            LongEnd::PrePromoteFailed => tracing::warn!(
                "promotion cancelled because the pre_promote script failed; leader key released"
            ),
            _ => tracing::info!("{} finished", t.kind.describe()),
        }
        if t.kind == LongKind::Demote || end == LongEnd::PrePromoteFailed {
            // the demotion released the key, or gave up on it
            self.holds_lock = false;
        }
        ha::memory::apply(
            &mut self.memory,
            Event::LongEnded {
                kind: t.kind,
                end,
                at: now,
            },
        );
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
            let member_slots = c
                .members
                .iter()
                .map(|m| crate::dcs::model::slot_name_for(&m.name))
                .collect();
            ha::memory::apply(
                &mut self.memory,
                Event::ClusterRead {
                    at: now,
                    pause: self.dynamic.pause,
                    config: c.config.as_ref().map(|cc| &cc.raw),
                    member_slots,
                    retain_slots: &c.status.retain_slots,
                    member_slots_ttl: self.dynamic.member_slots_ttl,
                    published_sysid: c.config.as_ref().and(c.initialize.as_deref()),
                },
            );
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
                ha::memory::apply(&mut self.memory, Event::PostgresGone { crashed: true });
                self.probe.reset();
            }
            ProcState::Stopped | ProcState::NotStarted => {
                ha::memory::apply(&mut self.memory, Event::PostgresGone { crashed: false });
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
            match self.probe.probe(&conn, &self.pg.s.superuser).await {
                Ok(p) => {
                    ha::memory::apply(
                        &mut self.memory,
                        Event::Probed {
                            timeline: p.timeline,
                        },
                    );
                    pg = PgView {
                        timeline: self.memory.timeline_seen,
                        ..PgView::from(&p)
                    };
                    self.last_role = Role::of(p.in_recovery);
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
            self.last_role = Role::Uninitialized;
        }

        // peers: only when the decision may need them (ha::race::wants_peers)
        let peers = match &cluster {
            Some(c) if ha::wants_peers(c, &self.settings, &pg, self.long.is_some()) => Some(
                crate::peers::fetch_all(
                    &self.http,
                    &c.members,
                    &self.cfg.name,
                    Duration::from_secs(2),
                )
                .await,
            ),
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
                self.tempo.scheduled_restart = Some(r.at - unix_now);
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
            Some(cc) if cc.parsed.is_some() => DynamicConfig::effective(&cc.raw, &self.dynamic),
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
