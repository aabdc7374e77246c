//! Execute: carry out `decide`'s actions in order, stopping at the first
//! failure; long actions run as background tasks, one at a time.
//!
//! Rule: no HA policy here; every `if` about cluster state belongs in `ha::decide`.

use super::*;
use crate::ha::memory::Event;

impl Agent {
    /// Carry out the actions in order; stop at the first failure. Returns the exit
    /// (if the node must stop) and whether every action was carried out.
    pub(super) async fn execute(
        &mut self,
        d: &Decision,
        obs: &Observation,
    ) -> (Option<ExitReason>, bool) {
        for action in &d.actions {
            if let Some(kind) = action.long_kind() {
                self.spawn_long(kind, action.clone(), obs);
                if kind == LongKind::Restart {
                    if let (Some(t), Some((_, reply))) = (self.long.as_mut(), self.pending.take()) {
                        t.reply = Some(reply);
                    }
                }
                break;
            }
            match self.run_action(action, obs).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!("{action:?} did not succeed; stopping this cycle's actions");
                    self.wake.notify_one();
                    return (None, false);
                }
                Err(ActionError::Exit(code, message)) => {
                    tracing::error!("{message}");
                    return (Some(ExitReason::Fatal { code, message }), false);
                }
                Err(ActionError::Failed(e)) => {
                    tracing::error!("{action:?} failed: {e:#}");
                    return (None, false);
                }
            }
        }
        (None, true)
    }

    async fn run_action(
        &mut self,
        action: &Action,
        obs: &Observation,
    ) -> std::result::Result<bool, ActionError> {
        let e = &self.etcd;
        let r: Result<bool> = match action {
            Action::RaceInitialize => e.race_initialize().await.map_err(Into::into),
            Action::SetInitialize(s) => e.set_initialize(s).await.map(|_| true).map_err(Into::into),
            Action::DeleteInitialize => e
                .delete_initialize()
                .await
                .map(|_| true)
                .map_err(Into::into),
            Action::SeedConfig(v) => {
                let mut v = v.clone();
                if !v.is_object() {
                    v = json!({});
                }
                e.seed_config(&v).await.map(|_| true).map_err(Into::into)
            }
            Action::AcquireLeader | Action::RebindLeader => {
                let acquire = matches!(action, Action::AcquireLeader);
                let ok = if acquire {
                    e.acquire_leader().await
                } else {
                    e.rebind_leader().await
                };
                if let Ok(true) = ok {
                    if acquire {
                        tracing::info!("acquired the leader key");
                    } else {
                        tracing::info!("re-bound the leader key to our new lease");
                    }
                    self.holds_lock = true;
                    self.key_on_current_lease();
                }
                ok.map_err(Into::into)
            }
            Action::ReleaseLeader => {
                let ok = e.release_leader().await;
                self.holds_lock = false;
                ok.map(|_| true).map_err(Into::into)
            }
            Action::WriteStatus { optime } => {
                let stored = obs.cluster.as_ref().and_then(|c| c.status.optime);
                if !ha::cadence::status_write_due(*optime, stored, self.last_status_optime) {
                    Ok(true)
                } else {
                    let retain = obs
                        .cluster
                        .as_ref()
                        .map(|c| c.status.retain_slots.clone())
                        .unwrap_or_default();
                    let r = put_status(e, Some(*optime), retain).await;
                    if r.is_ok() {
                        self.last_status_optime = Some(*optime);
                    }
                    r.map(|_| true)
                }
            }
            Action::WriteRetainSlots(slots) => {
                let optime = self
                    .last_status_optime
                    .or_else(|| obs.cluster.as_ref().and_then(|c| c.status.optime));
                let r = put_status(e, optime, slots.clone()).await;
                if r.is_ok() {
                    tracing::info!(?slots, "slots kept for members that are gone");
                }
                r.map(|_| true)
            }
            Action::UpdateHistory { timeline } => {
                self.update_history(*timeline, obs).await.map(|_| true)
            }
            Action::ClearFailover { mod_revision } => e
                .clear_failover(*mod_revision)
                .await
                .map(|_| true)
                .map_err(Into::into),
            Action::Stop(mode) => {
                let t = match mode {
                    StopMode::Immediate => Duration::from_secs(10),
                    _ => Duration::from_secs(60),
                };
                ha::memory::apply(&mut self.memory, Event::Done(action));
                self.probe.reset();
                let was_running = self.pg.is_running();
                let r = self.pg.stop(*mode, t).await;
                if r.is_ok() && was_running {
                    self.pg.callbacks.call(CallbackAction::OnStop, role_of(obs));
                }
                r.map(|_| true)
            }
            Action::Follow(src) => {
                let use_slots = self.dynamic.postgresql.use_slots;
                let standby = self.pg.standby_conf(src.as_ref(), use_slots);
                let hba = self.pg.hba_lines();
                let r = self
                    .pg
                    .write_config(&self.dynamic_params, Some(standby), &hba)
                    .and_then(|_| self.pg.reload());
                if r.is_ok() {
                    ha::memory::apply(&mut self.memory, Event::Done(action));
                    self.pg
                        .callbacks
                        .call(CallbackAction::OnReload, role_of(obs));
                }
                r.map(|_| true)
            }
            Action::RemoveDataDir => {
                ha::memory::apply(&mut self.memory, Event::Done(action));
                self.pg.remove_data_dir().await.map(|_| true)
            }
            Action::WriteSync {
                standbys,
                mod_revision,
            } => {
                let r = e.write_sync(standbys, *mod_revision).await;
                if let Ok(true) = r {
                    tracing::info!(?standbys, "synchronous standbys in the sync key");
                }
                r.map_err(Into::into)
            }
            Action::DeleteSync { mod_revision } => e
                .delete_sync(*mod_revision)
                .await
                .map(|_| true)
                .map_err(Into::into),
            Action::SetSyncNames(v) => {
                let r = self.pg.set_sync_names(&self.dynamic_params, v);
                if r.is_ok() {
                    tracing::info!("synchronous_standby_names = '{v}'");
                }
                r.map(|_| true)
            }
            Action::NoteDivergenceCheck { .. } => {
                ha::memory::apply(&mut self.memory, Event::Done(action));
                Ok(true)
            }
            Action::NoteSyncNamed(named) => {
                for (name, lsn) in named {
                    if !self.memory.sync_named.contains_key(name) {
                        tracing::info!(
                            standby = %name,
                            lsn = %crate::dcs::model::format_lsn(*lsn),
                            "named synchronous: enters the sync key once flushed to here"
                        );
                    }
                }
                ha::memory::apply(&mut self.memory, Event::Done(action));
                Ok(true)
            }
            Action::SyncSlots { create, drop } => {
                let mut sql = String::new();
                for s in create {
                    let lit = crate::postgres::quote_literal(s);
                    sql.push_str(&format!(
                        "SELECT pg_catalog.pg_create_physical_replication_slot({lit}, true) \
                         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = {lit});\n"
                    ));
                }
                for s in drop {
                    let lit = crate::postgres::quote_literal(s);
                    sql.push_str(&format!(
                        "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots \
                         WHERE slot_name = {lit} AND NOT active;\n"
                    ));
                }
                let conn = self.pg.s.local_conn(&self.dynamic_params);
                match self.probe.batch(&conn, &self.pg.s.superuser, &sql).await {
                    Ok(()) => {
                        tracing::info!(?create, ?drop, "replication slots synced");
                        Ok(true)
                    }
                    Err(e) => Err(e),
                }
            }
            Action::Exit { code, message } => {
                return Err(ActionError::Exit(*code, message.clone()))
            }
            Action::Answer { code, text } => {
                if let Some((_, reply)) = self.pending.take() {
                    let _ = reply.send((*code, text.clone()));
                }
                Ok(true)
            }
            Action::Reload => {
                self.reread_config_file();
                let r = self.pg.reload_config(&self.dynamic_params);
                if r.is_ok() {
                    tracing::info!("configuration files rewritten, postgres reloaded");
                    if self.pg.is_running() {
                        self.pg
                            .callbacks
                            .call(CallbackAction::OnReload, role_of(obs));
                    }
                }
                r.map(|_| true)
            }
            Action::CancelLongAction => {
                if let Some(t) = self.long.take() {
                    tracing::warn!("cancelling {}", t.kind.describe());
                    t.handle.abort();
                    if let Some(reply) = t.reply {
                        let _ = reply.send((503, "cancelled".into()));
                    }
                }
                ha::memory::apply(&mut self.memory, Event::Done(action));
                Ok(true)
            }
            Action::Bootstrap
            | Action::Clone(_)
            | Action::StartPrimary
            | Action::StartReplica(_)
            | Action::Promote
            | Action::Rewind(_)
            | Action::DemoteGraceful { .. }
            | Action::Restart { .. }
            | Action::Reinitialize(_) => unreachable!("long actions are spawned"),
        };
        r.map_err(ActionError::Failed)
    }

    /// Add the promotion that created `timeline` to the `history` key.
    async fn update_history(&self, timeline: u32, obs: &Observation) -> Result<()> {
        let lines = self.pg.read_history_file(timeline)?;
        let old = obs
            .cluster
            .as_ref()
            .map(|c| c.history.clone())
            .unwrap_or_default();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
        let entries = lines
            .into_iter()
            .map(|(tl, lsn, reason)| {
                let known = old
                    .entries
                    .iter()
                    .find(|e| e.timeline == tl && e.lsn == lsn);
                let (timestamp, new_leader) = match known {
                    Some(k) => (k.timestamp.clone(), k.new_leader.clone()),
                    None if tl + 1 == timeline => (Some(now.clone()), Some(self.cfg.name.clone())),
                    None => (None, None),
                };
                HistoryEntry {
                    timeline: tl,
                    lsn,
                    reason,
                    timestamp,
                    new_leader,
                }
            })
            .collect();
        let h = History {
            entries,
            mod_revision: 0,
        };
        self.etcd.write_history(&h).await?;
        tracing::info!(timeline, "history updated");
        Ok(())
    }

    fn spawn_long(&mut self, kind: LongKind, action: Action, obs: &Observation) {
        let pg = self.pg.clone();
        let params = self.dynamic_params.clone();
        let wake = self.wake.clone();
        let use_slots = self.dynamic.postgresql.use_slots;
        let start_timeout = crate::config::duration(self.dynamic.primary_start_timeout.max(10.0));
        let replica_timeout = Duration::from_secs(3600);
        let stop_timeout = if self.dynamic.primary_stop_timeout > 0.0 {
            crate::config::duration(self.dynamic.primary_stop_timeout)
        } else {
            Duration::from_secs(60)
        };
        let etcd = self.etcd.handle();
        let http = self.http.clone();
        let role_now = role_of(obs);
        let was_running = self.pg.is_running();
        // pre_promote runs while we hold the key; the lease outlives it only if
        // it ends within ttl.
        let pre_promote_timeout = crate::config::duration(self.dynamic.ttl.max(1.0));
        let retain_slots = obs
            .cluster
            .as_ref()
            .map(|c| c.status.retain_slots.clone())
            .unwrap_or_default();
        let candidate_api = match &action {
            Action::DemoteGraceful { candidate: Some(c) } => obs
                .cluster
                .as_ref()
                .and_then(|cl| cl.member(&c.name))
                .and_then(|m| m.data.api_url.clone()),
            _ => None,
        };
        // A new long action replaces a running one (decide asks for one only when
        // the old one is over or cancelled): never two at once on one data directory.
        if let Some(old) = self.long.take() {
            tracing::warn!(
                "{} replaces {}, which is aborted",
                kind.describe(),
                old.kind.describe()
            );
            old.handle.abort();
            if let Some(reply) = old.reply {
                let _ = reply.send((503, format!("{} was aborted", old.kind.describe())));
            }
        }
        tracing::info!("starting {}", kind.describe());
        let at = self.now();
        ha::memory::apply(&mut self.memory, Event::LongStarted { kind, at });
        if matches!(
            kind,
            LongKind::Promote | LongKind::StartPrimary | LongKind::StartReplica | LongKind::Rewind
        ) {
            self.probe.reset();
        }
        let handle = tokio::spawn(async move {
            let r = async {
                match action {
                    Action::Bootstrap => {
                        let sysid = pg.bootstrap(&params, start_timeout).await?;
                        pg.callbacks.call(CallbackAction::OnStart, CallbackRole::Primary);
                        Ok(LongOutcome::Bootstrapped(sysid))
                    }
                    Action::Clone(src) => {
                        pg.basebackup(&src).await?;
                        let standby = pg.standby_conf(Some(&src), use_slots);
                        pg.start(&params, Some(standby), replica_timeout).await?;
                        pg.callbacks.started(CallbackRole::Replica);
                        Ok(LongOutcome::Following(Some(src.name)))
                    }
                    Action::StartPrimary => {
                        pg.start(&params, None, start_timeout).await?;
                        pg.callbacks.started(CallbackRole::Primary);
                        Ok(LongOutcome::Done)
                    }
                    Action::StartReplica(src) => {
                        let standby = pg.standby_conf(src.as_ref(), use_slots);
                        pg.start(&params, Some(standby), replica_timeout).await?;
                        pg.callbacks.started(CallbackRole::Replica);
                        Ok(LongOutcome::Following(src.map(|s| s.name)))
                    }
                    Action::Promote => {
                        // Patroni's pre_promote: a fencing script run while we
                        // hold the key; unless it exits with 0 we do not promote
                        // and let go of the key.
                        if !pg.callbacks.pre_promote(pre_promote_timeout).await {
                            match etcd.release_leader().await {
                                Ok(_) => tracing::warn!(
                                    "released the leader key: the pre_promote script failed"
                                ),
                                Err(e) => tracing::error!("could not release the leader key: {e}"),
                            }
                            return Ok(LongOutcome::PrePromoteFailed);
                        }
                        let rows = pg
                            .execute(&params, "SELECT pg_catalog.pg_promote(true, 60)", Duration::from_secs(70))
                            .await?;
                        let promoted = rows.iter().any(|m| {
                            matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))
                        });
                        if !promoted {
                            bail!("pg_promote() did not complete");
                        }
                        pg.mark_promoted();
                        pg.callbacks.call(CallbackAction::OnRoleChange, CallbackRole::Primary);
                        // The first checkpoint on the new timeline puts it into
                        // pg_control, which pg_rewind on the old primary reads.
                        // Writes do not wait for it.
                        let (pg, params) = (pg.clone(), params.clone());
                        tokio::spawn(async move {
                            match pg.execute(&params, "CHECKPOINT", Duration::from_secs(600)).await {
                                Ok(_) => tracing::info!("checkpoint after promote done"),
                                Err(e) => tracing::warn!("checkpoint after promote: {e:#}"),
                            }
                        });
                        Ok(LongOutcome::Done)
                    }
                    Action::Rewind(src) => {
                        pg.stop(StopMode::Fast, Duration::from_secs(60)).await?;
                        if was_running {
                            pg.callbacks.call(CallbackAction::OnStop, role_now);
                        }
                        pg.rewind(&src).await?;
                        Ok(LongOutcome::Done)
                    }
                    Action::DemoteGraceful { candidate } => {
                        // Fast shutdown writes the shutdown checkpoint; the walsenders
                        // deliver it to the streaming replicas before they exit.
                        pg.stop(StopMode::Fast, stop_timeout).await?;
                        if was_running {
                            pg.callbacks.call(CallbackAction::OnStop, CallbackRole::Demoted);
                        }
                        // only a clean shutdown's checkpoint is the end of our WAL
                        let checkpoint = pg
                            .controldata()
                            .await
                            .ok()
                            .filter(|c| c.state == "shut down")
                            .map(|c| c.checkpoint_lsn);
                        if let (Some(url), Some(cp)) = (&candidate_api, checkpoint) {
                            wait_caught_up(&http, url, cp, Duration::from_secs(5)).await;
                        }
                        if let Some(cp) = checkpoint {
                            write_final_optime(&etcd, cp, retain_slots).await;
                        }
                        match etcd.release_leader().await {
                            Ok(_) => tracing::info!("released the leader key for the switchover"),
                            Err(e) => tracing::error!("could not release the leader key: {e}"),
                        }
                        let standby = pg.standby_conf(candidate.as_ref(), use_slots);
                        pg.start(&params, Some(standby), replica_timeout).await?;
                        pg.callbacks.started(CallbackRole::Replica);
                        Ok(LongOutcome::Following(candidate.map(|c| c.name)))
                    }
                    Action::Restart { primary, follow } => {
                        pg.stop(StopMode::Fast, stop_timeout).await?;
                        if primary {
                            pg.start(&params, None, start_timeout).await?;
                            pg.callbacks.call(CallbackAction::OnRestart, CallbackRole::Primary);
                            Ok(LongOutcome::Done)
                        } else {
                            let standby = pg.standby_conf(follow.as_ref(), use_slots);
                            pg.start(&params, Some(standby), replica_timeout).await?;
                            pg.callbacks.call(CallbackAction::OnRestart, CallbackRole::Replica);
                            Ok(LongOutcome::Following(follow.map(|s| s.name)))
                        }
                    }
                    Action::Reinitialize(src) => {
                        pg.stop(StopMode::Immediate, Duration::from_secs(10)).await?;
                        if was_running {
                            pg.callbacks.call(CallbackAction::OnStop, role_now);
                        }
                        pg.remove_data_dir().await?;
                        pg.basebackup(&src).await?;
                        let standby = pg.standby_conf(Some(&src), use_slots);
                        pg.start(&params, Some(standby), replica_timeout).await?;
                        pg.callbacks.started(CallbackRole::Replica);
                        Ok(LongOutcome::Following(Some(src.name)))
                    }
                    other => bail!("not a long action: {other:?}"),
                }
            }
            .await;
            wake.notify_one();
            r
        });
        self.long = Some(LongTask {
            kind,
            handle,
            reply: None,
        });
    }

    /// Re-read the configuration file (POST /reload, SIGHUP): tags, the local
    /// postgres parameters and pg_hba, and the rewind settings apply at once; keys
    /// that identify the node or its endpoints need a restart of the agent.
    fn reread_config_file(&mut self) {
        let path = self.cfg.source.clone();
        let new = match crate::config::load_file(&path, &crate::config::process_env()) {
            Ok((new, warnings)) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                new
            }
            Err(e) => {
                tracing::error!("reload: keeping the current configuration: {e}");
                return;
            }
        };
        self.reload_api_security(&new);
        let fixed = [
            ("scope", self.cfg.scope != new.scope),
            ("name", self.cfg.name != new.name),
            ("namespace", self.cfg.namespace != new.namespace),
            (
                "restapi.listen",
                self.cfg.restapi.listen != new.restapi.listen,
            ),
            (
                "restapi.connect_address",
                self.cfg.restapi.connect_address != new.restapi.connect_address,
            ),
            (
                "restapi.certfile (HTTPS on or off)",
                self.cfg.restapi.certfile.is_some() != new.restapi.certfile.is_some(),
            ),
            ("etcd3", self.cfg.etcd3 != new.etcd3),
            (
                "postgresql.listen",
                self.cfg.postgresql.listen != new.postgresql.listen,
            ),
            (
                "postgresql.data_dir",
                self.cfg.postgresql.data_dir != new.postgresql.data_dir,
            ),
            (
                "postgresql.authentication",
                self.cfg.postgresql.authentication != new.postgresql.authentication,
            ),
        ];
        for (key, changed) in fixed {
            if changed {
                tracing::warn!("reload: {key} changed; restart the agent for it to apply");
            }
        }
        *self.pg.s.local.write().unwrap_or_else(|e| e.into_inner()) =
            crate::postgres::LocalPg::from_config(&new);
        let mut cfg = self.cfg.clone();
        cfg.tags = new.tags.clone();
        cfg.postgresql.parameters = new.postgresql.parameters.clone();
        cfg.postgresql.pg_hba = new.postgresql.pg_hba.clone();
        cfg.postgresql.use_pg_rewind = new.postgresql.use_pg_rewind;
        cfg.postgresql.remove_data_directory_on_rewind_failure =
            new.postgresql.remove_data_directory_on_rewind_failure;
        cfg.postgresql.remove_data_directory_on_diverged_timelines =
            new.postgresql.remove_data_directory_on_diverged_timelines;
        cfg.log = new.log.clone();
        if cfg.restapi.certfile.is_some() == new.restapi.certfile.is_some() {
            cfg.restapi = crate::config::RestApiConfig {
                listen: cfg.restapi.listen.clone(),
                connect_address: cfg.restapi.connect_address.clone(),
                ..new.restapi.clone()
            };
        }
        self.pg
            .callbacks
            .update(crate::postgres::callbacks::Scripts::from_config(&new));
        self.settings = settings_from(&cfg);
        self.cfg = cfg;
        tracing::info!("configuration file re-read");
    }
}

impl Agent {
    /// `POST /reload`, SIGHUP: the REST API's certificate files are read again
    /// (renewed certificates serve the next connection), and the access rules
    /// (authentication, allowlist, client certificates) are rebuilt. A file that
    /// cannot be used keeps the current configuration, with an error in the log.
    fn reload_api_security(&mut self, new: &crate::config::Config) {
        if let Some(tls) = &self.api_tls {
            // HTTPS cannot be switched off without a restart: without a
            // certfile in the new file, keep serving the current one.
            if let Some(settings) = crate::tls::server::ServerSettings::from_config(&new.restapi) {
                match tls.reload(Some(settings)) {
                    Ok(()) => tracing::info!("REST API: TLS certificate and key re-read"),
                    Err(e) => tracing::error!(
                        "reload: keeping the REST API's current TLS configuration: {e}"
                    ),
                }
            }
        }
        if self.api_tls.is_none() && new.restapi.certfile.is_some() {
            return; // HTTPS needs a restart; keep the current rules meanwhile
        }
        let (policy, mut warnings) = crate::api::Policy::from_config(&new.restapi);
        for w in &warnings {
            tracing::warn!("{w}");
        }
        warnings.extend(crate::config::open_api_warning(&new.restapi));
        self.access.set(policy);
        self.security_warnings = warnings;
    }
}

/// The role a callback reports for postgres as this cycle saw it.
fn role_of(obs: &Observation) -> CallbackRole {
    if obs.pg.is_primary() {
        CallbackRole::Primary
    } else {
        CallbackRole::Replica
    }
}

enum ActionError {
    Exit(i32, String),
    Failed(anyhow::Error),
}

impl From<crate::dcs::etcd::DcsError> for ActionError {
    fn from(e: crate::dcs::etcd::DcsError) -> Self {
        ActionError::Failed(e.into())
    }
}

/// A leader that lets go of the key first publishes its final WAL position in
/// `status` (Patroni does the same), keeping the slots it retains.
pub(super) async fn write_final_optime(etcd: &Etcd, lsn: u64, retain_slots: Vec<String>) {
    match put_status(etcd, Some(lsn), retain_slots).await {
        Ok(()) => tracing::info!(optime = lsn, "final WAL position written to status"),
        Err(e) => tracing::warn!("could not write the final WAL position: {e}"),
    }
}

/// Write the `status` key: the leader's WAL position and the slots it keeps.
async fn put_status(etcd: &Etcd, optime: Option<u64>, retain_slots: Vec<String>) -> Result<()> {
    let status = Status {
        optime,
        retain_slots,
        ..Default::default()
    };
    etcd.write_status(&status).await.map_err(Into::into)
}

/// Wait until the member at `api_url` reports having received WAL up to `lsn`
/// (it got the shutdown checkpoint), or the timeout passes.
async fn wait_caught_up(http: &reqwest::Client, api_url: &str, lsn: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let got = async {
            let v: serde_json::Value = http.get(api_url).send().await.ok()?.json().await.ok()?;
            let x = v.get("xlog")?;
            let position = |k: &str| x.get(k).and_then(|r| r.as_u64());
            Some(ha::received_position(
                position("received_location"),
                position("replayed_location"),
            ))
        }
        .await;
        if got.is_some_and(|g| g >= lsn) {
            tracing::info!("the candidate received the shutdown checkpoint");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(
        "the candidate did not confirm the shutdown checkpoint in time; releasing anyway"
    );
}
