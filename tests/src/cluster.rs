//! A cluster of agent nodes sharing one etcd, each with its own Patroni-format
//! config file, data directory, ports and log: the one fixture of the
//! integration tests and of the chaos suite's local target.
//!
//! The etcd comes in one of the [`EtcdMode`]s: one member of its own, or three
//! members (one quorum, which a test can take away); either can be reached by
//! every agent through its own cuttable, slowable [`TcpProxy`]
//! ([`ClusterBuilder::proxied`]), to partition one node from etcd.
//!
//! Rule: the fixture owns every process it starts. Dropping it (also while a
//! test panics) resumes etcd and heals the proxies (so a primary can hand its
//! key over), resumes, terminates, then kills the agents, and stops any
//! postmaster still alive whose `postmaster.pid` lies in one of *our* data
//! directories.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::bins::{agent_binaries, pg_bin, require, PG_BIN_DIR};
use crate::dirs::{make_shared_dir, sanitize_name, TestDir};
use crate::etcd::{EtcdClient, EtcdFixture, EtcdServerTls};
use crate::etcd_cluster::EtcdCluster;
use crate::ports::free_port;
use crate::proc::{
    chown_to_postgres, command_as_postgres, kill_child, postgres_ids, postmaster_pid, signal,
    stop_postmaster, wait_child,
};
use crate::proxy::TcpProxy;

/// How long the convenience waits ([`ClusterFixture::wait_primary`], ...) wait by default.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long agents get to stop on SIGTERM when the fixture is dropped.
const DROP_TERM_GRACE: Duration = Duration::from_secs(10);
/// How long a leftover postmaster gets after SIGQUIT before SIGKILL.
const POSTMASTER_GRACE: Duration = Duration::from_secs(5);

type ConfigEdit = Arc<dyn Fn(usize, &mut Value) + Send + Sync>;

/// What every node's config is made from.
#[derive(Clone)]
struct Settings {
    scope: String,
    ttl: u64,
    loop_wait: u64,
    retry_timeout: u64,
    tags: BTreeMap<usize, Value>,
    edits: Vec<ConfigEdit>,
}

/// Which etcd a [`ClusterFixture`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdMode {
    /// One member of its own ([`ClusterFixture::etcd`]).
    Single,
    /// Three members, one quorum ([`ClusterFixture::etcd_members`]).
    Three,
}

/// Builder for [`ClusterFixture`]; defaults: 3 nodes, one etcd member, no
/// proxies, `ttl` 6, `loop_wait` 1, `retry_timeout` 2, agents started.
pub struct ClusterBuilder {
    name: String,
    nodes: usize,
    etcd: EtcdMode,
    proxied: bool,
    settings: Settings,
    start_agents: bool,
    wait_timeout: Duration,
    etcd_tls: Option<EtcdServerTls>,
    etcd_root_password: Option<String>,
}

impl ClusterBuilder {
    /// Run etcd ([`EtcdMode::Single`] only) with TLS on its client port (the node
    /// configs are the caller's to point at it: `etcd3.protocol`, `cacert`, ...
    /// through [`ClusterBuilder::configure`]).
    pub fn etcd_tls(mut self, tls: EtcdServerTls) -> Self {
        self.etcd_tls = Some(tls);
        self
    }

    /// Turn on etcd authentication (user `root` with `password`, [`EtcdMode::Single`]
    /// only) before the agents start.
    pub fn etcd_auth(mut self, password: &str) -> Self {
        self.etcd_root_password = Some(password.to_string());
        self
    }

    /// Number of nodes (`node0` .. `node<n-1>`).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Which etcd to run (default [`EtcdMode::Single`]).
    pub fn etcd(mut self, mode: EtcdMode) -> Self {
        self.etcd = mode;
        self
    }

    /// Route each node's etcd traffic through its own [`TcpProxy`] per etcd
    /// member, so [`ClusterFixture::cut_dcs`] and [`ClusterFixture::slow_dcs`]
    /// can partition or slow one node while the others reach etcd.
    pub fn proxied(mut self) -> Self {
        self.proxied = true;
        self
    }

    /// `bootstrap.dcs.ttl` in seconds.
    pub fn ttl(mut self, secs: u64) -> Self {
        self.settings.ttl = secs;
        self
    }

    /// `bootstrap.dcs.loop_wait` in seconds.
    pub fn loop_wait(mut self, secs: u64) -> Self {
        self.settings.loop_wait = secs;
        self
    }

    /// `bootstrap.dcs.retry_timeout` in seconds.
    pub fn retry_timeout(mut self, secs: u64) -> Self {
        self.settings.retry_timeout = secs;
        self
    }

    /// The `tags` object of node `i` (default `{}`), e.g. `json!({"nofailover": true})`.
    pub fn tags(mut self, i: usize, tags: Value) -> Self {
        self.settings.tags.insert(i, tags);
        self
    }

    /// Edit every node's config (as JSON) before it is written; called with
    /// the node index. Edits run in the order they were added, after the
    /// defaults and tags.
    pub fn configure(mut self, edit: impl Fn(usize, &mut Value) + Send + Sync + 'static) -> Self {
        self.settings.edits.push(Arc::new(edit));
        self
    }

    /// Whether [`ClusterBuilder::start`] starts the agents (default true);
    /// when false only etcd runs and the configs are written.
    pub fn start_agents(mut self, yes: bool) -> Self {
        self.start_agents = yes;
        self
    }

    /// Timeout of the convenience waits on this cluster.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Create the test directory, start etcd (and the proxies), write the
    /// node configs and (by default) start the agents. Does not wait for the
    /// cluster to form.
    pub async fn start(self) -> ClusterFixture {
        // Fail on missing programs before anything is started.
        require("etcd", "etcd-server");
        pg_bin("postgres");
        pg_bin("initdb");
        pg_bin("pg_basebackup");
        pg_bin("pg_rewind");
        postgres_ids();
        if self.start_agents {
            agent_binaries();
        }

        let dir = TestDir::new(&self.name);
        let etcd = match self.etcd {
            EtcdMode::Single => {
                let mut etcd = EtcdFixture::start_with(dir.path(), self.etcd_tls).await;
                if let Some(password) = &self.etcd_root_password {
                    etcd.enable_auth(password);
                }
                Etcd::Single(etcd)
            }
            EtcdMode::Three => {
                assert!(
                    self.etcd_tls.is_none() && self.etcd_root_password.is_none(),
                    "etcd TLS and authentication are for EtcdMode::Single"
                );
                Etcd::Three(EtcdCluster::start(&dir.path().join("etcd-cluster"), 3).await)
            }
        };
        let mut cluster = ClusterFixture {
            nodes: Vec::new(),
            proxies: Vec::new(),
            etcd,
            settings: self.settings,
            wait_timeout: self.wait_timeout,
            dir,
        };
        for _ in 0..self.nodes {
            let hosts = if self.proxied {
                let mut mine = Vec::new();
                for endpoint in cluster.etcd_endpoints() {
                    mine.push(TcpProxy::start(&endpoint).await);
                }
                let hosts = mine.iter().map(|p| p.endpoint()).collect();
                cluster.proxies.push(mine);
                hosts
            } else {
                cluster.etcd_endpoints()
            };
            let i = cluster.nodes.len();
            let node = Node::create(i, &cluster.settings, &hosts, &cluster.dir);
            cluster.nodes.push(node);
        }
        if self.start_agents {
            cluster.start_all();
        }
        cluster
    }
}

/// The etcd of a cluster.
enum Etcd {
    Single(EtcdFixture),
    Three(EtcdCluster),
}

/// N agent nodes plus their etcd, in one [`TestDir`].
pub struct ClusterFixture {
    // Field order is drop order: nodes, proxies, etcd, then the directory
    // (which prints log tails when the test failed, so everything is stopped
    // by then).
    nodes: Vec<Node>,
    /// Per node, one proxy per etcd member (empty unless proxied).
    proxies: Vec<Vec<TcpProxy>>,
    etcd: Etcd,
    settings: Settings,
    wait_timeout: Duration,
    dir: TestDir,
}

impl ClusterFixture {
    /// A builder for the test called `name`; `name` (sanitized) is also the scope.
    pub fn builder(name: &str) -> ClusterBuilder {
        ClusterBuilder {
            name: name.to_string(),
            nodes: 3,
            etcd: EtcdMode::Single,
            proxied: false,
            settings: Settings {
                scope: sanitize_name(name),
                ttl: 6,
                loop_wait: 1,
                retry_timeout: 2,
                tags: BTreeMap::new(),
                edits: Vec::new(),
            },
            start_agents: true,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            etcd_tls: None,
            etcd_root_password: None,
        }
    }

    /// Start every node whose agent is not running.
    pub fn start_all(&mut self) {
        for n in &mut self.nodes {
            if !n.is_running() {
                n.start();
            }
        }
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Member names, in index order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name().to_string()).collect()
    }

    /// The index of the member called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name() == name)
    }

    /// The cluster's scope (the sanitized test name).
    pub fn scope(&self) -> &str {
        &self.settings.scope
    }

    /// The etcd key prefix of this cluster: `/service/<scope>/`.
    pub fn prefix(&self) -> String {
        format!("/service/{}/", self.settings.scope)
    }

    /// The member name in `/service/<scope>/leader`, if any (`None` also when
    /// etcd cannot be asked).
    pub async fn leader(&self) -> Option<String> {
        self.kv()
            .try_get(&format!("{}leader", self.prefix()))
            .await
            .ok()
            .flatten()
    }

    /// The JSON value of this cluster's key `rel` (`config`, `members/node0`,
    /// ...), `Null` when absent; panics when etcd cannot be asked or the value
    /// is not JSON.
    pub async fn key_json(&self, rel: &str) -> Value {
        match self.kv().get(&format!("{}{rel}", self.prefix())).await {
            Some(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{rel} is not JSON ({e}): {text}")),
            None => Value::Null,
        }
    }

    /// `PATCH /config` with `body` on node `i`: status and body text (panics
    /// without an answer).
    pub async fn patch_config(&self, i: usize, body: Value) -> (u16, String) {
        crate::client::rest_call(self.node(i), "PATCH", "/config", Some(&body)).await
    }

    /// Keys in this cluster's etcd, through any member that answers.
    pub fn kv(&self) -> EtcdClient {
        match &self.etcd {
            Etcd::Single(e) => e.client(),
            Etcd::Three(c) => c.client(),
        }
    }

    /// The etcd endpoints (`127.0.0.1:<port>`), not the proxies.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        match &self.etcd {
            Etcd::Single(e) => vec![e.endpoint()],
            Etcd::Three(c) => c.endpoints(),
        }
    }

    /// The etcd of an [`EtcdMode::Single`] cluster (panics otherwise).
    pub fn etcd(&self) -> &EtcdFixture {
        match &self.etcd {
            Etcd::Single(e) => e,
            Etcd::Three(_) => panic!("this cluster runs EtcdMode::Three: use etcd_members()"),
        }
    }

    /// The etcd members of an [`EtcdMode::Three`] cluster (panics otherwise).
    pub fn etcd_members(&mut self) -> &mut EtcdCluster {
        match &mut self.etcd {
            Etcd::Three(c) => c,
            Etcd::Single(_) => panic!("this cluster runs EtcdMode::Single: use etcd()"),
        }
    }

    /// Node `i`'s proxies to etcd (one per member; panics unless proxied).
    fn proxies_of(&self, i: usize) -> &[TcpProxy] {
        self.proxies
            .get(i)
            .unwrap_or_else(|| panic!("node {i} has no etcd proxies: build with .proxied()"))
    }

    /// Partition node `i` from etcd: its proxies pass no byte (connections
    /// hang, as with a dropped link); clients still reach the node.
    pub fn cut_dcs(&self, i: usize) {
        for p in self.proxies_of(i) {
            p.cut();
        }
    }

    /// Undo [`ClusterFixture::cut_dcs`] and [`ClusterFixture::slow_dcs`].
    pub fn heal_dcs(&self, i: usize) {
        for p in self.proxies_of(i) {
            p.heal();
            p.set_latency(Duration::ZERO);
        }
    }

    /// Delay node `i`'s etcd traffic by `latency` in each direction.
    pub fn slow_dcs(&self, i: usize, latency: Duration) {
        for p in self.proxies_of(i) {
            p.set_latency(latency);
        }
    }

    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// Keep the test directory even if the test passes.
    pub fn keep_dir(&mut self) {
        self.dir.keep();
    }

    /// Timeout of the convenience waits ([`ClusterFixture::wait_primary`], ...).
    pub fn wait_timeout(&self) -> Duration {
        self.wait_timeout
    }

    /// The last `lines` lines of every log in the test directory.
    pub fn log_tails(&self, lines: usize) -> String {
        self.dir.log_tails(lines)
    }
}

impl Drop for ClusterFixture {
    fn drop(&mut self) {
        // 1. A paused etcd or a cut proxy would keep agents from releasing
        //    their keys and exiting.
        match &mut self.etcd {
            Etcd::Single(e) => e.resume(),
            Etcd::Three(c) => c.resume_all(),
        }
        for i in 0..self.proxies.len() {
            self.heal_dcs(i);
        }
        // 2. Ask every agent to stop at once, so their grace periods overlap.
        for n in &self.nodes {
            if let Some(pid) = n.pid() {
                signal(pid as i32, Signal::SIGCONT);
                signal(pid as i32, Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + DROP_TERM_GRACE;
        for n in &mut self.nodes {
            if let Some(child) = n.child.as_mut() {
                wait_child(child, deadline.saturating_duration_since(Instant::now()));
            }
        }
        // 3. SIGKILL survivors and stop postmasters the agents left behind.
        for n in &mut self.nodes {
            n.cleanup();
        }
    }
}

/// One agent node: its ports, paths, config and (while started) its process.
pub struct Node {
    index: usize,
    name: String,
    rest_port: u16,
    pg_port: u16,
    dir: PathBuf,
    data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    config: Value,
    child: Option<Child>,
    /// Extra environment of the agent (`PATRONI_*` overrides), set before start.
    env: Vec<(String, String)>,
}

impl Node {
    fn create(
        index: usize,
        settings: &Settings,
        etcd_hosts: &[String],
        test_dir: &TestDir,
    ) -> Node {
        let name = format!("node{index}");
        let dir = test_dir.path().join(&name);
        make_shared_dir(&dir);
        let mut node = Node {
            index,
            rest_port: free_port(),
            pg_port: free_port(),
            data_dir: dir.join("data"),
            config_path: dir.join("agent.yml"),
            log_path: dir.join("agent.log"),
            dir,
            name,
            config: Value::Null,
            child: None,
            env: Vec::new(),
        };
        let mut cfg = node.default_config(settings, etcd_hosts);
        for edit in &settings.edits {
            edit(index, &mut cfg);
        }
        node.write_config(cfg);
        node
    }

    /// The Patroni-format config of this node before edits.
    fn default_config(&self, s: &Settings, etcd_hosts: &[String]) -> Value {
        let rest = format!("127.0.0.1:{}", self.rest_port);
        let pg = format!("127.0.0.1:{}", self.pg_port);
        json!({
            "scope": s.scope,
            "namespace": "/service/",
            "name": self.name,
            "restapi": { "listen": rest, "connect_address": rest },
            "etcd3": { "hosts": etcd_hosts },
            "bootstrap": {
                "dcs": {
                    "ttl": s.ttl,
                    "loop_wait": s.loop_wait,
                    "retry_timeout": s.retry_timeout,
                    "maximum_lag_on_failover": 1_048_576,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "use_slots": true,
                        "parameters": {
                            "max_connections": 50,
                            "wal_keep_size": "128MB",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                        },
                    },
                },
                "initdb": [ { "encoding": "UTF8" }, "data-checksums" ],
            },
            "postgresql": {
                "listen": pg,
                "connect_address": pg,
                "data_dir": self.data_dir,
                "bin_dir": PG_BIN_DIR,
                "authentication": {
                    "superuser": { "username": "postgres", "password": "postgres" },
                    "replication": { "username": "replicator", "password": "rep-pass" },
                    "rewind": { "username": "rewind_user", "password": "rewind-pass" },
                },
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
                "parameters": {
                    "unix_socket_directories": self.dir,
                    "shared_buffers": "16MB",
                    "logging_collector": "off",
                },
            },
            "tags": s.tags.get(&self.index).cloned().unwrap_or_else(|| json!({})),
        })
    }

    /// Replace this node's config and write it to [`Node::config_path`] (JSON,
    /// which is YAML). A running agent sees it on its next reload.
    pub fn write_config(&mut self, config: Value) {
        let text = serde_json::to_string_pretty(&config).expect("a JSON value serializes");
        std::fs::write(&self.config_path, text + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.config_path.display()));
        std::fs::set_permissions(&self.config_path, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", self.config_path.display()));
        chown_to_postgres(&self.config_path);
        self.config = config;
    }

    /// Give the agent the variable `key` = `value` from its next start on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Start `agent <config>` as `postgres`, output appended to [`Node::log_path`].
    /// `RUST_LOG` defaults to `info`. Panics if this node's agent is running.
    pub fn start(&mut self) {
        if self.is_running() {
            panic!(
                "{}: agent already running (pid {:?})",
                self.name,
                self.pid()
            );
        }
        let bin = &agent_binaries().agent;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let _ = writeln!(
            log,
            "===== harness: starting {} {} =====",
            bin.display(),
            self.config_path.display()
        );
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log fd: {e}"));
        let mut cmd = command_as_postgres(bin, &self.dir);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg(&self.config_path)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start {}: {e}", self.name, bin.display()));
        self.child = Some(child);
    }

    /// SIGTERM the agent (SIGCONT first, in case it is paused) and wait up to
    /// `timeout` for it to exit; `None` if it is still running (or was not).
    pub fn stop_term(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = child.id() as i32;
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            return Some(status);
        }
        signal(pid, Signal::SIGCONT);
        signal(pid, Signal::SIGTERM);
        let status = wait_child(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// SIGKILL the agent and reap it. Its postgres keeps running.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        kill_child(&mut child)
    }

    /// SIGKILL this node's postmaster (pid from `postmaster.pid`); returns the
    /// pid killed, `None` when no postmaster of ours is running.
    pub fn kill_postgres(&self) -> Option<i32> {
        let pid = postmaster_pid(&self.data_dir)?;
        signal(pid, Signal::SIGKILL).then_some(pid)
    }

    /// SIGKILL the agent first (so it cannot restart postgres), then the postmaster.
    pub fn kill_all(&mut self) {
        self.kill();
        self.kill_postgres();
    }

    /// Freeze the agent (SIGSTOP); its postgres keeps running.
    pub fn pause_agent(&self) {
        if let Some(pid) = self.pid() {
            signal(pid as i32, Signal::SIGSTOP);
        }
    }

    /// Undo [`Node::pause_agent`] (SIGCONT).
    pub fn resume_agent(&self) {
        if let Some(pid) = self.pid() {
            signal(pid as i32, Signal::SIGCONT);
        }
    }

    /// True while the agent process exists (reaps it when it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The agent's pid while we hold it (it may have exited but not been reaped yet).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The running postmaster of this node's data directory, if any.
    pub fn postmaster_pid(&self) -> Option<i32> {
        postmaster_pid(&self.data_dir)
    }

    /// The pid of this node's WAL receiver process (a child of its postmaster
    /// named `walreceiver`), when one runs.
    pub fn walreceiver_pid(&self) -> Option<i32> {
        let pm = self.postmaster_pid()?;
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid: Option<i32> = stat
                .rsplit(") ")
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|x| x.parse().ok());
            if ppid != Some(pm) {
                continue;
            }
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmd.contains("walreceiver") {
                return Some(pid);
            }
        }
        None
    }

    fn cleanup(&mut self) {
        self.kill();
        stop_postmaster(&self.data_dir, POSTMASTER_GRACE);
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// `node<i>`: the member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rest_port(&self) -> u16 {
        self.rest_port
    }

    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// `<base>/node<i>`: HOME, working directory and unix socket directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<base>/node<i>/data` (created by the agent).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `<base>/node<i>/agent.yml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config last written (as JSON).
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// `<base>/node<i>/agent.log`: agent stdout and stderr (and postgres's, if
    /// the agent passes them through).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the agent log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::logs::tail(&self.log_path, lines)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("rest_port", &self.rest_port)
            .field("pg_port", &self.pg_port)
            .field("dir", &self.dir)
            .field("pid", &self.pid())
            .finish()
    }
}
