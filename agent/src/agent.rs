//! The agent's loop: observe, decide, execute, publish; plus start-up checks and
//! the shutdown order.
//!
//! Rule: no HA policy here. Every `if` about cluster state belongs in
//! [`crate::ha::decide`]; this module gathers the observation, carries out the
//! actions in order (stopping at the first failure), and publishes the result.
//! The lease keep-alive is part of the observation, so a stuck loop lets the
//! lease expire (DESIGN §4).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::api::{self, ApiState, Control, RequestMsg, ScheduledRestart};
use crate::config::{Config, DynamicConfig};
use crate::dcs::etcd::Etcd;
use crate::dcs::model::{Cluster, History, HistoryEntry, MemberData, Status};
use crate::fence::Fence;
use crate::ha::fence::{LeaderKey, LeaseRenewal};
use crate::ha::{
    self, Action, DataDir, Decision, LongKind, LongResult, Memory, Observation, PgView, Settings,
    StopMode,
};
use crate::postgres::{PgCtl, PgSettings, Probe, ProbeResult, ProcState};
use crate::status::{NodeStatus, Xlog, VERSION};

/// Why the agent stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum ExitReason {
    /// SIGTERM/SIGINT: a clean stop.
    Shutdown,
    /// The node must not run (system ID mismatch, failed bootstrap, ...).
    Fatal { code: i32, message: String },
}

/// A long action running in the background.
struct LongTask {
    kind: LongKind,
    handle: JoinHandle<Result<LongOutcome>>,
    /// A REST request answered when the action ends (restart).
    reply: Option<oneshot::Sender<(u16, String)>>,
}

enum LongOutcome {
    Done,
    Bootstrapped(String),
    Following(Option<String>),
}

/// The running agent.
pub struct Agent {
    cfg: Config,
    settings: Settings,
    pg: Arc<PgCtl>,
    probe: Probe,
    etcd: Etcd,
    http: reqwest::Client,
    memory: Memory,
    long: Option<LongTask>,
    status_tx: watch::Sender<Arc<NodeStatus>>,
    wake: Arc<Notify>,
    started: Instant,
    dynamic: DynamicConfig,
    dynamic_params: BTreeMap<String, Value>,
    /// Fields of the dynamic configuration that could not be used as written.
    config_notes: Vec<crate::config::Note>,
    holds_lock: bool,
    last_reason: String,
    last_role: String,
    dcs_last_seen: i64,
    last_probe: Option<ProbeResult>,
    last_status_optime: Option<u64>,
    /// The lease renewal the fence deadline counts from (see
    /// [`ha::fence::next_renewal`]).
    fence_renewal: Option<LeaseRenewal>,
    fence: Option<Fence>,
    /// The fence watchdog died and could not be restarted.
    fence_down: bool,
    /// Requests from the REST API.
    requests_tx: mpsc::Sender<RequestMsg>,
    requests_rx: mpsc::Receiver<RequestMsg>,
    /// The request this cycle answers.
    pending: Option<RequestMsg>,
    scheduled_restart: Arc<std::sync::Mutex<Option<ScheduledRestart>>>,
    /// Run the next cycle no later than this (a scheduled switchover).
    next_wakeup: Option<Instant>,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Refuse to run as root: postgres will not, and the agent is its parent.
pub fn check_not_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        bail!(
            "refusing to run as root: PostgreSQL cannot run as root and the agent runs it as its child; \
             run the agent as the postgres user (e.g. `su postgres -c 'agent node.yml'` or `setpriv --reuid postgres ...`)"
        );
    }
    Ok(())
}

impl Agent {
    /// Build the agent; nothing is started yet.
    pub async fn new(cfg: Config) -> Result<Agent> {
        let wake = Arc::new(Notify::new());
        let pg_settings = PgSettings::from_config(&cfg)?;
        let pg = Arc::new(PgCtl::new(pg_settings, wake.clone()));
        let etcd = Etcd::connect(&cfg.etcd3, &cfg.cluster_prefix(), &cfg.name).await?;
        let settings = settings_from(&cfg);
        // Until etcd says otherwise, the bootstrap section is our best guess of the timings.
        let (dynamic, _) =
            DynamicConfig::effective(&settings.bootstrap_config, &DynamicConfig::default());
        let dynamic_params = dynamic.postgresql.parameters.clone();
        let (status_tx, _) = watch::channel(Arc::new(NodeStatus::initial(&cfg.scope, &cfg.name)));
        let (requests_tx, requests_rx) = mpsc::channel(1);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(3))
            .build()?;
        Ok(Agent {
            cfg,
            settings,
            pg,
            probe: Probe::default(),
            etcd,
            http,
            memory: Memory::default(),
            long: None,
            status_tx,
            wake,
            started: Instant::now(),
            dynamic,
            dynamic_params,
            config_notes: Vec::new(),
            holds_lock: false,
            last_reason: String::new(),
            last_role: "uninitialized".into(),
            dcs_last_seen: 0,
            last_probe: None,
            last_status_optime: None,
            fence_renewal: None,
            fence: None,
            fence_down: false,
            requests_tx,
            requests_rx,
            pending: None,
            scheduled_restart: Arc::default(),
            next_wakeup: None,
        })
    }

    /// A receiver of the published status (for the REST API and tests).
    pub fn status(&self) -> watch::Receiver<Arc<NodeStatus>> {
        self.status_tx.subscribe()
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn retry_timeout(&self) -> Duration {
        crate::config::duration(self.dynamic.retry_timeout.max(0.5))
    }

    /// Safety rule 6: a second agent with our name refuses to start. The member key
    /// alone is not proof (it outlives a crashed agent until its lease expires), so
    /// ask the API it advertises, as Patroni does.
    async fn ensure_unique_name(&self) -> Result<()> {
        // Like Patroni, wait for etcd as long as it takes (the caller races this
        // against the shutdown signal).
        let mut attempts = 0u32;
        let cluster = loop {
            match self.etcd.read_cluster().await {
                Ok(c) => break c,
                Err(e) => {
                    if attempts.is_multiple_of(10) {
                        tracing::warn!("waiting for etcd at {:?}: {e}", self.cfg.etcd3.endpoints());
                    }
                    attempts += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let Some(m) = cluster.member(&self.cfg.name) else {
            return Ok(());
        };
        let Some(api) = &m.data.api_url else {
            return Ok(());
        };
        let url = match api.rsplit_once('/') {
            Some((base, _)) if base.contains("://") && base.len() > "http://".len() => {
                format!("{base}/liveness")
            }
            _ => format!("{api}/liveness"),
        };
        let answered = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_ok();
        if answered {
            bail!(
                "can't start: there is already a node named '{}' running in cluster '{}' (its API {} answers)",
                self.cfg.name,
                self.cfg.scope,
                api
            );
        }
        Ok(())
    }

    /// Run until `shutdown` resolves or a fatal condition; then stop postgres and
    /// release the leader key (in that order).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<ExitReason> {
        tokio::pin!(shutdown);
        tokio::select! {
            r = self.ensure_unique_name() => r?,
            _ = &mut shutdown => return Ok(ExitReason::Shutdown),
        }
        self.pg.stop_orphan().await?;
        self.fence =
            Some(Fence::start(self.pg.s.data_dir.clone()).context("start the fence watchdog")?);
        let listener = tokio::net::TcpListener::bind(&self.cfg.restapi.listen)
            .await
            .with_context(|| format!("restapi.listen: cannot bind {}", self.cfg.restapi.listen))?;
        let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let control = Arc::new(Control {
            etcd: self.etcd.handle(),
            requests: self.requests_tx.clone(),
            scheduled_restart: self.scheduled_restart.clone(),
            wake: self.wake.clone(),
            http: self.http.clone(),
            auth: self.cfg.restapi.authentication.clone(),
        });
        let router = api::router(ApiState::new(self.status()).with_control(control));
        let api_task = tokio::spawn(api::serve(listener, router, async move {
            let _ = api_stop_rx.await;
        }));
        let watch_task = self.etcd.spawn_watch(self.wake.clone());
        tracing::info!(name = %self.cfg.name, scope = %self.cfg.scope, "agent {VERSION} started");

        let mut sighup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let exit = loop {
            let cycle_start = Instant::now();
            if let Some(exit) = self.cycle().await {
                break exit;
            }
            let mut next = cycle_start + crate::config::duration(self.dynamic.loop_wait.max(0.1));
            if let Some(w) = self.next_wakeup.take() {
                next = next.min(w);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = self.wake.notified() => {}
                _ = &mut shutdown => break ExitReason::Shutdown,
                Some(()) = recv_sighup(&mut sighup) => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    if self.pending.is_none() {
                        let (tx, _rx) = oneshot::channel();
                        self.pending = Some((ha::Request::Reload, tx));
                    }
                }
            }
        };
        self.teardown().await;
        watch_task.abort();
        let _ = api_stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), api_task).await;
        Ok(exit)
    }

    /// Shutdown order (safety rule 4):
    async fn teardown(&mut self) {
        // 1. Stop a long action: its child tools are killed with the task.
        if let Some(t) = self.long.take() {
            t.handle.abort();
        }
        // 2. Stop postgres first, so no write is accepted after we let go of the key.
        let was_primary =
            self.pg.is_running() && self.last_probe.as_ref().is_some_and(|p| !p.in_recovery);
        let stop_timeout = if self.dynamic.primary_stop_timeout > 0.0 {
            crate::config::duration(self.dynamic.primary_stop_timeout)
        } else {
            Duration::from_secs(60)
        };
        if let Err(e) = self.pg.stop(StopMode::Fast, stop_timeout).await {
            tracing::error!("stopping postgres: {e:#}");
        }
        // 3. Publish where our WAL ends (the shutdown checkpoint), so the
        //    candidates judge their lag against the real last position.
        // 4. Then release the leader key so a replica takes over at once.
        if self.holds_lock || was_primary {
            // Only a clean shutdown's checkpoint is the end of our WAL; an older
            // position would let a lagging replica pass maximum_lag_on_failover.
            let control = self.pg.controldata().await.ok();
            if let Some(c) = control.filter(|c| c.state == "shut down") {
                let retain = self
                    .status_tx
                    .borrow()
                    .cluster
                    .as_ref()
                    .map(|c| c.status.retain_slots.clone())
                    .unwrap_or_default();
                write_final_optime(&self.etcd, c.checkpoint_lsn, retain).await;
            }
            match self.etcd.release_leader().await {
                Ok(true) => tracing::info!("released the leader key"),
                Ok(false) => {}
                Err(e) => tracing::error!("could not release the leader key: {e}"),
            }
            self.holds_lock = false;
        }
        // 5. Tell the others we are stopped (the key expires with our lease).
        let mut data = self.member_data(None, "stopped");
        data.xlog_location = None;
        let _ = self.etcd.touch_member(&data).await;
        tracing::info!("agent stopped");
    }

    /// One HA cycle. Returns `Some` when the agent must exit.
    async fn cycle(&mut self) -> Option<ExitReason> {
        self.reap_long_task().await;
        let obs = self.observe().await;
        let decision = ha::decide(&obs, &self.settings);
        let (exit, completed) = self.execute(&decision, &obs).await;
        // Log what was done, after doing it: "promoted self to leader" only once
        // the key was won.
        let reason = if completed {
            decision.reason.to_string()
        } else {
            format!("not carried out to the end: {}", decision.reason)
        };
        if reason != self.last_reason {
            tracing::info!("{reason}");
            self.last_reason = reason;
            // Things are changing: look again in a second rather than a whole
            // loop_wait, so the member key and /patroni catch up quickly (a new
            // replica starts streaming, a promoted leader creates its slots).
            self.next_wakeup = Some(Instant::now() + Duration::from_secs(1));
        } else {
            tracing::debug!("{reason}");
        }
        if let Some(w) = decision.wakeup_in {
            self.next_wakeup = Some(Instant::now() + crate::config::duration(w.max(0.05)));
        }
        if let Some((req, reply)) = self.pending.take() {
            // decide answers every request; this is a guard against a lost reply
            let _ = reply.send((
                503,
                format!(
                    "{} was not carried out: {}",
                    req.describe(),
                    decision.reason
                ),
            ));
        }
        self.publish(&obs, &decision).await;
        exit
    }

    async fn reap_long_task(&mut self) {
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
    async fn observe(&mut self) -> Observation {
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

    /// Carry out the actions in order; stop at the first failure. Returns the exit
    /// (if the node must stop) and whether every action was carried out.
    async fn execute(&mut self, d: &Decision, obs: &Observation) -> (Option<ExitReason>, bool) {
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
            Action::AcquireLeader => {
                let ok = e.acquire_leader().await;
                if let Ok(true) = ok {
                    tracing::info!("acquired the leader key");
                    self.holds_lock = true;
                    self.key_on_current_lease();
                }
                ok.map_err(Into::into)
            }
            Action::RebindLeader => {
                let ok = e.rebind_leader().await;
                if let Ok(true) = ok {
                    tracing::info!("re-bound the leader key to our new lease");
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
                if stored == Some(*optime) && self.last_status_optime == Some(*optime) {
                    Ok(true)
                } else {
                    let status = Status {
                        optime: Some(*optime),
                        retain_slots: obs
                            .cluster
                            .as_ref()
                            .map(|c| c.status.retain_slots.clone())
                            .unwrap_or_default(),
                        ..Default::default()
                    };
                    let r = e
                        .write_status(&status)
                        .await
                        .map(|_| true)
                        .map_err(Into::into);
                    if r.is_ok() {
                        self.last_status_optime = Some(*optime);
                    }
                    r
                }
            }
            Action::WriteRetainSlots(slots) => {
                let optime = self
                    .last_status_optime
                    .or_else(|| obs.cluster.as_ref().and_then(|c| c.status.optime));
                let status = Status {
                    optime,
                    retain_slots: slots.clone(),
                    ..Default::default()
                };
                let r = e
                    .write_status(&status)
                    .await
                    .map(|_| true)
                    .map_err(Into::into);
                if r.is_ok() {
                    tracing::info!(?slots, "slots kept for members that are gone");
                }
                r
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
                self.memory.following = None;
                self.probe.reset();
                self.pg.stop(*mode, t).await.map(|_| true)
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
                    self.memory.following = Some(src.as_ref().map(|s| s.name.clone()));
                }
                r.map(|_| true)
            }
            Action::RemoveDataDir => {
                self.memory.timeline_seen = None;
                self.memory.rewind_failed = None;
                self.memory.following = None;
                self.memory.divergence_checked = None;
                self.memory.last_result = None;
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
            Action::NoteDivergenceCheck { leader, timeline } => {
                self.memory.divergence_checked = Some((leader.clone(), *timeline));
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
                self.memory.sync_named = named.clone();
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
                match self.probe.batch(&conn, &sql).await {
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
                self.memory.long_action = None;
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
        self.memory.long_action = Some((kind, self.now()));
        if matches!(kind, LongKind::Clone | LongKind::Reinit) {
            self.memory.timeline_seen = None;
        }
        self.memory.last_result = None;
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
                        Ok(LongOutcome::Bootstrapped(sysid))
                    }
                    Action::Clone(src) => {
                        pg.basebackup(&src).await?;
                        let standby = pg.standby_conf(Some(&src), use_slots);
                        pg.start(&params, Some(standby), replica_timeout).await?;
                        Ok(LongOutcome::Following(Some(src.name)))
                    }
                    Action::StartPrimary => {
                        pg.start(&params, None, start_timeout).await?;
                        Ok(LongOutcome::Done)
                    }
                    Action::StartReplica(src) => {
                        let standby = pg.standby_conf(src.as_ref(), use_slots);
                        pg.start(&params, Some(standby), replica_timeout).await?;
                        Ok(LongOutcome::Following(src.map(|s| s.name)))
                    }
                    Action::Promote => {
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
                        pg.rewind(&src).await?;
                        Ok(LongOutcome::Done)
                    }
                    Action::DemoteGraceful { candidate } => {
                        // Fast shutdown writes the shutdown checkpoint; the walsenders
                        // deliver it to the streaming replicas before they exit.
                        pg.stop(StopMode::Fast, stop_timeout).await?;
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
                        Ok(LongOutcome::Following(candidate.map(|c| c.name)))
                    }
                    Action::Restart { primary, follow } => {
                        pg.stop(StopMode::Fast, stop_timeout).await?;
                        if primary {
                            pg.start(&params, None, start_timeout).await?;
                            Ok(LongOutcome::Done)
                        } else {
                            let standby = pg.standby_conf(follow.as_ref(), use_slots);
                            pg.start(&params, Some(standby), replica_timeout).await?;
                            Ok(LongOutcome::Following(follow.map(|s| s.name)))
                        }
                    }
                    Action::Reinitialize(src) => {
                        pg.stop(StopMode::Immediate, Duration::from_secs(10)).await?;
                        pg.remove_data_dir().await?;
                        pg.basebackup(&src).await?;
                        let standby = pg.standby_conf(Some(&src), use_slots);
                        pg.start(&params, Some(standby), replica_timeout).await?;
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
        let fixed = [
            ("scope", self.cfg.scope != new.scope),
            ("name", self.cfg.name != new.name),
            ("namespace", self.cfg.namespace != new.namespace),
            ("restapi", self.cfg.restapi != new.restapi),
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
        self.settings = settings_from(&cfg);
        self.cfg = cfg;
        tracing::info!("configuration file re-read");
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

    fn member_data(&self, probe: Option<&ProbeResult>, state: &str) -> MemberData {
        let mut d = MemberData {
            conn_url: Some(format!(
                "postgres://{}/postgres",
                self.cfg.postgresql.connect_address
            )),
            api_url: Some(format!(
                "http://{}/patroni",
                self.cfg.restapi.connect_address
            )),
            state: Some(state.to_string()),
            role: Some(self.last_role.clone()),
            version: Some(VERSION.to_string()),
            tags: self.cfg.tags.to_json(),
            pause: self.dynamic.pause,
            ..Default::default()
        };
        if let Some(p) = probe {
            if p.in_recovery {
                d.xlog_location = Some(p.receive_lsn.unwrap_or(0).max(p.replay_lsn.unwrap_or(0)));
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
    async fn publish(&mut self, obs: &Observation, d: &Decision) {
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
                    received_location: p.receive_lsn.unwrap_or(0).max(p.replay_lsn.unwrap_or(0)),
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
        let role = match &probe {
            Some(p) if p.in_recovery => "replica".to_string(),
            Some(_) => "primary".to_string(),
            None => self.last_role.clone(),
        };
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
            config_warnings: self.config_notes.iter().map(|n| n.to_string()).collect(),
        };
        self.status_tx.send_replace(Arc::new(status));
        self.update_fence(obs);
    }

    /// Our leader key is now bound to the current lease: the fence deadline
    /// follows that lease's renewals from here on.
    fn key_on_current_lease(&mut self) {
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
fn rearm_fence(
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
async fn write_final_optime(etcd: &Etcd, lsn: u64, retain_slots: Vec<String>) {
    let status = Status {
        optime: Some(lsn),
        retain_slots,
        ..Default::default()
    };
    match etcd.write_status(&status).await {
        Ok(()) => tracing::info!(optime = lsn, "final WAL position written to status"),
        Err(e) => tracing::warn!("could not write the final WAL position: {e}"),
    }
}

/// Wait until the member at `api_url` reports having received WAL up to `lsn`
/// (it got the shutdown checkpoint), or the timeout passes.
async fn wait_caught_up(http: &reqwest::Client, api_url: &str, lsn: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let got = async {
            let v: serde_json::Value = http.get(api_url).send().await.ok()?.json().await.ok()?;
            let x = v.get("xlog")?;
            let received = x
                .get("received_location")
                .and_then(|r| r.as_u64())
                .unwrap_or(0);
            let replayed = x
                .get("replayed_location")
                .and_then(|r| r.as_u64())
                .unwrap_or(0);
            Some(received.max(replayed))
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

/// The HA decision's view of the local configuration.
fn settings_from(cfg: &Config) -> Settings {
    Settings {
        name: cfg.name.clone(),
        nofailover: cfg.tags.nofailover(),
        failover_priority: cfg.tags.failover_priority(),
        replicatefrom: cfg.tags.replicatefrom.clone(),
        use_pg_rewind_local: cfg.postgresql.use_pg_rewind,
        remove_data_directory_on_rewind_failure: cfg
            .postgresql
            .remove_data_directory_on_rewind_failure,
        remove_data_directory_on_diverged_timelines: cfg
            .postgresql
            .remove_data_directory_on_diverged_timelines,
        bootstrap_config: cfg.bootstrap_dynamic(),
    }
}

/// The next SIGHUP, or never when the handler could not be installed.
async fn recv_sighup(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(sig) => sig.recv().await,
        None => std::future::pending().await,
    }
}
