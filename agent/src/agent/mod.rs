//! The agent's loop: observe, decide, execute, publish; plus start-up checks and
//! the shutdown order.
//!
//! - `observe`: lease keep-alive + cluster read, dynamic config, postgres probe,
//!   data directory, peers -> an `ha::Observation`;
//! - `ha::decide` (pure) -> actions and a reason;
//! - `execute`: the actions in order, long ones as background tasks;
//! - `publish`: `NodeStatus::from_cycle` for the REST API (and where the WAL
//!   sampler behind `GET /patroni` finds postgres), the member key, the fence;
//! - then sleep for `ha::cadence::next_cycle_in`, or until woken.
//!
//! Rule: no HA policy here. Every `if` about cluster state belongs in
//! [`crate::ha::decide`] or another pure rule of `ha` or `status`; this module
//! gathers the observation, carries out the actions in order (stopping at the
//! first failure), and publishes the result.
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

use crate::api::{self, Access, ApiState, Control, Policy, RequestMsg, ScheduledRestart};
use crate::config::{Config, DynamicConfig};
use crate::dcs::etcd::Etcd;
use crate::dcs::model::{Cluster, History, HistoryEntry, MemberData, Status};
use crate::fence::Fence;
use crate::ha::fence::{LeaderKey, LeaseRenewal};
use crate::ha::{
    self, Action, DataDir, Decision, LongKind, Memory, Observation, PgView, Settings, StopMode,
};
use crate::postgres::callbacks::{CallbackAction, CallbackRole};
use crate::postgres::{PgCtl, PgSettings, Probe, ProbeResult, ProcState, WalSampler};
use crate::status::{Cycle, NodeStatus, Role, VERSION};
use crate::tls::client::ClientSettings;
use crate::tls::server::{ServerSettings, ServerTls};

mod execute;
mod observe;
mod publish;

use execute::write_final_optime;
use publish::rearm_fence;

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
    /// The pre_promote script failed: not promoted, leader key released.
    PrePromoteFailed,
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
    /// Where the WAL sampler behind `GET /patroni` finds postgres (kept current
    /// by `publish`).
    wal_conn: watch::Sender<Option<crate::postgres::LocalConn>>,
    wal: WalSampler,
    wake: Arc<Notify>,
    started: Instant,
    dynamic: DynamicConfig,
    dynamic_params: BTreeMap<String, Value>,
    /// Fields of the dynamic configuration that could not be used as written.
    config_notes: Vec<crate::config::Note>,
    holds_lock: bool,
    last_reason: String,
    last_role: Role,
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
    /// What this cycle found about when to run the next one (see
    /// [`ha::cadence::next_cycle_in`]).
    tempo: ha::cadence::Tempo,
    /// The REST API's TLS configuration (HTTPS when set), reloaded with the file.
    api_tls: Option<Arc<ServerTls>>,
    /// Who may call the REST API's unsafe methods, reloaded with the file.
    access: Arc<Access>,
    /// Warnings about the local configuration shown in `/patroni` (an API open
    /// to the network, allowlist entries that do not resolve).
    security_warnings: Vec<String>,
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
        // TLS and access first: a certificate we cannot use stops the start
        // before anything else is touched (fail closed).
        let api_tls = match ServerSettings::from_config(&cfg.restapi) {
            Some(s) => Some(Arc::new(ServerTls::new(s)?)),
            None => None,
        };
        let (policy, mut security_warnings) = Policy::from_config(&cfg.restapi);
        for w in &security_warnings {
            tracing::warn!("{w}");
        }
        security_warnings.extend(crate::config::open_api_warning(&cfg.restapi));
        let access = Arc::new(Access::new(policy));
        let client_tls = client_settings(&cfg)?;
        let pg_settings = PgSettings::from_config(&cfg)?;
        let pg = Arc::new(PgCtl::new(
            pg_settings,
            wake.clone(),
            crate::postgres::callbacks::Scripts::from_config(&cfg),
        ));
        let etcd = Etcd::connect(&cfg.etcd3, &cfg.cluster_prefix(), &cfg.name).await?;
        let settings = settings_from(&cfg);
        // Until etcd says otherwise, the bootstrap section is our best guess of the timings.
        let (dynamic, _) =
            DynamicConfig::effective(&settings.bootstrap_config, &DynamicConfig::default());
        let dynamic_params = dynamic.postgresql.parameters.clone();
        let (status_tx, _) = watch::channel(Arc::new(NodeStatus::initial(&cfg.scope, &cfg.name)));
        let (requests_tx, requests_rx) = mpsc::channel(1);
        let (wal_conn, wal_conn_rx) = watch::channel(None);
        let http = client_tls
            .http_client_builder()?
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
            wal_conn,
            wal: WalSampler::postgres(wal_conn_rx),
            wake,
            started: Instant::now(),
            dynamic,
            dynamic_params,
            config_notes: Vec::new(),
            holds_lock: false,
            last_reason: String::new(),
            last_role: Role::Uninitialized,
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
            tempo: Default::default(),
            api_tls,
            access,
            security_warnings,
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
        });
        let router = api::router(
            ApiState::new(self.status())
                .with_control(control)
                .with_wal_sampler(self.wal.clone())
                .with_access(self.access.clone()),
        );
        let options = api::ServeOptions {
            tls: self.api_tls.clone(),
            limits: api::Limits::for_fd_limit(api::raise_fd_limit()),
        };
        let api_task = tokio::spawn(api::serve(listener, router, options, async move {
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
            let tempo = ha::cadence::Tempo {
                loop_wait: self.dynamic.loop_wait,
                elapsed: cycle_start.elapsed().as_secs_f64(),
                ..std::mem::take(&mut self.tempo)
            };
            let next = Instant::now() + crate::config::duration(ha::cadence::next_cycle_in(&tempo));
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
        let was_running = self.pg.is_running();
        let was_primary = was_running && self.last_probe.as_ref().is_some_and(|p| !p.in_recovery);
        let stop_timeout = if self.dynamic.primary_stop_timeout > 0.0 {
            crate::config::duration(self.dynamic.primary_stop_timeout)
        } else {
            Duration::from_secs(60)
        };
        match self.pg.stop(StopMode::Fast, stop_timeout).await {
            Err(e) => tracing::error!("stopping postgres: {e:#}"),
            Ok(()) if was_running => {
                let role = if was_primary {
                    CallbackRole::Primary
                } else {
                    CallbackRole::Replica
                };
                self.pg.callbacks.call(CallbackAction::OnStop, role);
            }
            Ok(()) => {}
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
        let data = self.member_data(None, "stopped");
        let _ = self.etcd.touch_member(&data).await;
        // 6. Give the on_stop callback a moment (it keeps running if slower).
        self.pg.callbacks.drain(Duration::from_secs(10)).await;
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
        self.tempo.reason_changed = reason != self.last_reason;
        self.tempo.decided = decision.wakeup_in;
        if self.tempo.reason_changed {
            tracing::info!("{reason}");
            self.last_reason = reason;
        } else {
            tracing::debug!("{reason}");
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
}

/// How the agent reaches its peers' REST APIs: Patroni's agent verifies no
/// server certificate unless it presents one of its own (`ctl.certfile`).
fn client_settings(cfg: &Config) -> Result<ClientSettings> {
    let restapi = serde_json::to_value(&cfg.restapi)?;
    Ok(ClientSettings::from_tree(
        cfg.ctl.as_ref(),
        Some(&restapi),
        Some(true),
    )?)
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
