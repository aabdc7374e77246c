//! The compose target: the stack in `compose/` (three etcd members, three
//! nodes, HAProxy), built without a registry (`compose/build-local.sh` with
//! this run's agent binaries) and started under a project name of its own on
//! free host ports, so it never touches a stack a user runs.
//!
//! Faults, each on what the suite itself created:
//! - node crash: `docker kill` (tini, agent and postgres die at once);
//! - clean stop / start: `docker stop -t 60` / `docker start`;
//! - postgres crash: `kill -9` of the postmaster inside the container;
//! - agent freeze: SIGSTOP/SIGCONT of the agent process (found from the
//!   container's init pid on the host), postgres and the fence keep running;
//! - partition from etcd: an iptables rule *inside the node container's network
//!   namespace* (`nsenter -n`) dropping traffic to and from etcd's port 2379,
//!   so clients and HAProxy still reach the node (needs root and iptables;
//!   without them the scenario is reported as not supported);
//! - quorum loss: `docker pause` of two etcd containers;
//! - stalled replica: SIGSTOP/SIGCONT of the WAL receiver inside the container
//!   (`docker exec kill`, the pid from `pg_stat_wal_receiver`);
//! - failing probe: the unix socket the agent connects through is renamed
//!   inside the container (`docker exec mv`) and its connections terminated;
//! - a config edit: `etcdctl put` inside an etcd container.
//!
//! Rule: `Drop` undoes every fault and runs `down -v`, so nothing (containers,
//! volumes, the network) is left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use super::target::{rest_get, rest_send, Target, Timings};
use super::{Options, Scenario};
use crate::pg::Pg;
use crate::proc::signal;
use crate::sampler::Addrs;
use crate::{agent_binaries, free_port, repo_root, TestDir};

/// The password the stack's superuser gets (the suite's SQL logs in with it).
const PASSWORD: &str = "postgres";
/// The image this suite builds and runs.
const IMAGE: &str = "agent:chaos";
/// Bootstrap of a fresh stack: etcd quorum, initdb, two base backups.
const FORM_TIMEOUT: Duration = Duration::from_secs(240);
/// Any one docker command.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
/// The data directory inside a node container (compose/agent.yml).
const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// The unix socket the agent connects through inside a node container
/// (`unix_socket_directories` in compose/agent.yml, port 5432).
const SOCKET: &str = "/var/run/postgresql/.s.PGSQL.5432";
/// A statement the suite runs on a node to inject a fault.
const QUERY: Duration = Duration::from_secs(3);

/// The running stack and the faults in place.
pub struct ComposeTarget {
    compose: Vec<String>,
    project: String,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
    dir: TestDir,
    log: PathBuf,
    names: Vec<String>,
    containers: Vec<String>,
    rest_ports: Vec<u16>,
    etcd_containers: Vec<String>,
    addrs: Addrs,
    rw_port: u16,
    ro_port: u16,
    auth: (String, String),
    timings: Timings,
    can_partition: bool,
    frozen: BTreeSet<i32>,
    cut: BTreeSet<usize>,
    paused_etcd: Vec<String>,
    /// Stalled WAL receivers: node -> (container, pid inside it).
    stalled: BTreeMap<usize, (String, i32)>,
    /// Nodes whose agent socket is hidden -> container.
    hidden: BTreeMap<usize, String>,
    keep: bool,
}

/// `docker compose` (v2) if it works, else `docker-compose` (v1).
fn compose_command() -> Result<Vec<String>> {
    for cmd in [&["docker", "compose"][..], &["docker-compose"][..]] {
        let ok = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(cmd.iter().map(|s| s.to_string()).collect());
        }
    }
    bail!("no docker compose: install docker-compose or Docker's compose plugin")
}

/// Run a command with a deadline; its output goes to `log`. Returns stdout.
async fn run_cmd(mut cmd: tokio::process::Command, what: &str, log: &Path) -> Result<String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(DOCKER_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("{what}: timed out after {DOCKER_TIMEOUT:?}"))?
        .with_context(|| format!("{what}: cannot run"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "===== {what} ({})\n{stdout}{stderr}", out.status);
    }
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            crate::logs::last_lines(&stderr, 10)
        );
    }
    Ok(stdout)
}

fn docker(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(args);
    cmd
}

/// `KEY=value` lines of compose/.env.
fn dot_env(key: &str) -> Option<String> {
    let text = std::fs::read_to_string(repo_root().join("compose/.env")).ok()?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

/// Stripped copies of this run's agent binaries, for the image.
fn stage_binaries(dir: &Path) -> Result<PathBuf> {
    let bins = agent_binaries();
    let out = dir.join("binaries");
    std::fs::create_dir_all(&out)?;
    for src in [&bins.agent, &bins.agentctl] {
        let dst = out.join(src.file_name().ok_or_else(|| anyhow!("binary name"))?);
        let stripped = std::process::Command::new("strip")
            .arg("-o")
            .arg(&dst)
            .arg(src)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(src, &dst)?;
        }
    }
    Ok(out)
}

impl ComposeTarget {
    /// Build the image, start the stack and wait until it formed.
    pub async fn start(opts: &Options) -> Result<ComposeTarget> {
        let info = std::process::Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .output();
        match info {
            Ok(o) if o.status.success() => {}
            _ => bail!("the compose target needs a Docker engine (`docker info` failed)"),
        }
        let compose = compose_command()?;
        let dir = TestDir::new(&format!("{}-compose", opts.name));
        let log = dir.path().join("compose.log");
        let root = repo_root();
        let files = vec![
            root.join("compose/docker-compose.yml"),
            root.join("compose/docker-compose.local.yml"),
        ];
        let rw_port = free_port();
        let ro_port = free_port();
        let stats_port = free_port();
        let rest_ports = vec![free_port(), free_port(), free_port()];
        let mut env: Vec<(String, String)> = vec![
            ("AGENT_IMAGE".into(), IMAGE.into()),
            ("PATRONI_SUPERUSER_PASSWORD".into(), PASSWORD.into()),
            ("PUBLISH_ADDRESS".into(), "127.0.0.1".into()),
            ("PRIMARY_PORT".into(), rw_port.to_string()),
            ("REPLICA_PORT".into(), ro_port.to_string()),
            ("STATS_PORT".into(), stats_port.to_string()),
        ];
        for (k, p) in ["NODE1_REST_PORT", "NODE2_REST_PORT", "NODE3_REST_PORT"]
            .iter()
            .zip(&rest_ports)
        {
            env.push((k.to_string(), p.to_string()));
        }

        eprintln!("chaos: building {IMAGE} (compose/build-local.sh) ...");
        let mut build = tokio::process::Command::new(root.join("compose/build-local.sh"));
        build
            .env("AGENT_IMAGE", IMAGE)
            .env("AGENT_BINARIES_DIR", stage_binaries(dir.path())?)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(1200), build.output())
            .await
            .map_err(|_| anyhow!("compose/build-local.sh timed out"))??;
        std::fs::write(
            dir.path().join("build.log"),
            [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
        )?;
        if !out.status.success() {
            bail!(
                "compose/build-local.sh failed: {}",
                crate::logs::last_lines(&String::from_utf8_lossy(&out.stderr), 20)
            );
        }

        let project = format!("agentchaos{}", std::process::id());
        let mut t = ComposeTarget {
            compose,
            project,
            files,
            env,
            dir,
            log,
            names: vec!["node1".into(), "node2".into(), "node3".into()],
            containers: Vec::new(),
            rest_ports,
            etcd_containers: Vec::new(),
            addrs: Arc::new(Mutex::new(Vec::new())),
            rw_port,
            ro_port,
            auth: (
                dot_env("PATRONI_RESTAPI_USERNAME").unwrap_or_else(|| "admin".into()),
                dot_env("PATRONI_RESTAPI_PASSWORD").unwrap_or_else(|| "admin-demo".into()),
            ),
            timings: Timings {
                ttl: 15,
                loop_wait: 5,
                retry_timeout: 5,
                maximum_lag_on_failover: 1_048_576,
            },
            can_partition: nix::unistd::geteuid().is_root()
                && which("iptables").is_some()
                && which("nsenter").is_some(),
            frozen: BTreeSet::new(),
            cut: BTreeSet::new(),
            paused_etcd: Vec::new(),
            stalled: BTreeMap::new(),
            hidden: BTreeMap::new(),
            keep: false,
        };
        eprintln!("chaos: compose up (project {}) ...", t.project);
        t.compose_run(&["up", "-d", "--no-build"]).await?;
        for name in ["node1", "node2", "node3"] {
            let id = t.container(name).await?;
            t.containers.push(id);
        }
        for name in ["etcd1", "etcd2", "etcd3"] {
            let id = t.container(name).await?;
            t.etcd_containers.push(id);
        }
        let mut addrs = Vec::new();
        for c in &t.containers {
            addrs.push(Pg::new(t.ip(c).await?, 5432, PASSWORD));
        }
        *t.addrs.lock().unwrap_or_else(|e| e.into_inner()) = addrs;
        t.wait_formed().await?;

        // The image's timings, or the ones asked for (PATCH /config).
        let (_, cfg) = rest_get(&t, 0, "/config")
            .await
            .ok_or_else(|| anyhow!("GET /config: no answer"))?;
        let mut patch = serde_json::Map::new();
        for (key, want) in [
            ("ttl", opts.ttl),
            ("loop_wait", opts.loop_wait),
            ("retry_timeout", opts.retry_timeout),
        ] {
            if let Some(v) = want {
                if cfg[key].as_u64() != Some(v) {
                    patch.insert(key.into(), json!(v));
                }
            }
        }
        if !patch.is_empty() {
            let (code, body) = rest_send(&t, 0, "PATCH", "/config", &Value::Object(patch)).await?;
            if code != 200 {
                bail!("PATCH /config: {code} {body}");
            }
            // The agents pick the change up on their next cycle.
            tokio::time::sleep(Duration::from_secs(
                cfg["loop_wait"].as_u64().unwrap_or(5) + 2,
            ))
            .await;
        }
        let (_, cfg) = rest_get(&t, 0, "/config")
            .await
            .ok_or_else(|| anyhow!("GET /config: no answer"))?;
        t.timings = Timings {
            ttl: cfg["ttl"].as_u64().unwrap_or(30),
            loop_wait: cfg["loop_wait"].as_u64().unwrap_or(10),
            retry_timeout: cfg["retry_timeout"].as_u64().unwrap_or(10),
            maximum_lag_on_failover: cfg["maximum_lag_on_failover"].as_u64().unwrap_or(1_048_576),
        };
        Ok(t)
    }

    fn compose_cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..]).args(["-p", &self.project]);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd.args(args)
            .current_dir(repo_root())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    async fn compose_run(&self, args: &[&str]) -> Result<String> {
        run_cmd(
            self.compose_cmd(args),
            &format!("compose {}", args.join(" ")),
            &self.log,
        )
        .await
    }

    async fn docker(&self, args: &[&str]) -> Result<String> {
        run_cmd(
            docker(args),
            &format!("docker {}", args.join(" ")),
            &self.log,
        )
        .await
    }

    async fn container(&self, service: &str) -> Result<String> {
        let id = self
            .compose_run(&["ps", "-q", service])
            .await?
            .trim()
            .to_string();
        if id.is_empty() {
            bail!("no container for {service}");
        }
        Ok(id)
    }

    async fn ip(&self, id: &str) -> Result<String> {
        let ip = self
            .docker(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                id,
            ])
            .await?
            .trim()
            .to_string();
        if ip.is_empty() {
            bail!("container {id} has no address");
        }
        Ok(ip)
    }

    /// The host pid of the container's init (tini).
    async fn init_pid(&self, i: usize) -> Result<i32> {
        let pid: i32 = self
            .docker(&["inspect", "-f", "{{.State.Pid}}", &self.containers[i]])
            .await?
            .trim()
            .parse()
            .context("container pid")?;
        if pid <= 0 {
            bail!("{} is not running", self.names[i]);
        }
        Ok(pid)
    }

    /// The host pid of the node's agent: the child of its init whose command
    /// is `agent <config>` (not the `--fence-watchdog`).
    async fn agent_pid(&self, i: usize) -> Result<i32> {
        let init = self.init_pid(i).await?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let ppid = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|v| v.trim().parse::<i32>().ok());
            if ppid != Some(init) {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect();
            if args.first().is_some_and(|a| a.ends_with("agent"))
                && !args.iter().any(|a| a == "--fence-watchdog")
            {
                found.push(pid);
            }
        }
        match found.as_slice() {
            [pid] => Ok(*pid),
            other => bail!(
                "{}: expected one agent process under init {init}, found {other:?}",
                self.names[i]
            ),
        }
    }

    async fn wait_formed(&self) -> Result<()> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let mut primaries = 0;
            let mut streaming_replicas = 0;
            for i in 0..self.names.len() {
                if let Some((_, v)) = rest_get(self, i, "/patroni").await {
                    if v["role"] == "primary" && v["state"] == "running" {
                        primaries += 1;
                    } else if v["role"] == "replica" && v["replication_state"] == "streaming" {
                        streaming_replicas += 1;
                    }
                }
            }
            if primaries == 1 && streaming_replicas == self.names.len() - 1 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the compose stack did not form within {FORM_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn iptables(&self, i: usize, op: &str) -> Result<()> {
        let pid = self.init_pid(i).await?.to_string();
        for rule in [["OUTPUT", "--dport"], ["INPUT", "--sport"]] {
            self.docker_free(&[
                "nsenter", "-t", &pid, "-n", "iptables", op, rule[0], "-p", "tcp", rule[1], "2379",
                "-j", "DROP",
            ])
            .await?;
        }
        Ok(())
    }

    /// A host command (not docker), logged like the others.
    async fn docker_free(&self, args: &[&str]) -> Result<String> {
        let mut cmd = tokio::process::Command::new(args[0]);
        cmd.args(&args[1..]);
        run_cmd(cmd, &args.join(" "), &self.log).await
    }

    /// Put a hidden agent socket back (unless a new postmaster made a new one).
    async fn unhide(&self, id: &str) -> Result<()> {
        let script = format!(
            "S={SOCKET}; H=$S.chaos-hidden; if [ -e \"$S\" ]; then rm -f \"$H\"; \
             elif [ -e \"$H\" ]; then mv \"$H\" \"$S\"; fi"
        );
        self.docker(&["exec", id, "sh", "-c", &script])
            .await
            .map(|_| ())
    }

    async fn running(&self, id: &str) -> bool {
        self.docker(&["inspect", "-f", "{{.State.Running}}", id])
            .await
            .is_ok_and(|s| s.trim() == "true")
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

impl Target for ComposeTarget {
    fn kind(&self) -> &'static str {
        "compose"
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn addrs(&self) -> Addrs {
        self.addrs.clone()
    }

    fn rw(&self) -> Pg {
        Pg::new("127.0.0.1", self.rw_port, PASSWORD)
    }

    fn ro(&self) -> Pg {
        Pg::new("127.0.0.1", self.ro_port, PASSWORD)
    }

    fn rest_base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.rest_ports[i])
    }

    fn rest_auth(&self) -> Option<(String, String)> {
        Some(self.auth.clone())
    }

    fn prefix(&self) -> String {
        "/service/demo/".into()
    }

    fn timings(&self) -> Timings {
        self.timings
    }

    fn supports(&self, s: Scenario) -> bool {
        match s {
            Scenario::Partition => self.can_partition,
            // A delay inside the container's namespace (netem) would slow its
            // clients and replication too, not only its etcd traffic.
            Scenario::SlowEtcd => false,
            _ => true,
        }
    }

    fn logs_hint(&self) -> String {
        format!(
            "{} (compose.log; containers' logs in containers.log)",
            self.dir.path().display()
        )
    }

    fn keep(&mut self) {
        self.keep = true;
        self.dir.keep();
    }

    async fn etcd_get(&self, key: &str) -> Result<Option<String>> {
        let id = self
            .etcd_containers
            .iter()
            .find(|c| !self.paused_etcd.contains(c))
            .ok_or_else(|| anyhow!("every etcd container is paused"))?;
        let out = self
            .docker(&[
                "exec",
                "-e",
                "ETCDCTL_API=3",
                id,
                "etcdctl",
                "--endpoints=http://127.0.0.1:2379",
                "--command-timeout=3s",
                "get",
                key,
                "--print-value-only",
            ])
            .await?;
        let v = out.trim_end_matches('\n').to_string();
        Ok((!v.is_empty()).then_some(v))
    }

    async fn etcd_put(&self, key: &str, value: &str) -> Result<()> {
        let id = self
            .etcd_containers
            .iter()
            .find(|c| !self.paused_etcd.contains(c))
            .ok_or_else(|| anyhow!("every etcd container is paused"))?;
        self.docker(&[
            "exec",
            "-e",
            "ETCDCTL_API=3",
            id,
            "etcdctl",
            "--endpoints=http://127.0.0.1:2379",
            "--command-timeout=3s",
            "put",
            key,
            value,
        ])
        .await
        .map(|_| ())
    }

    async fn stall_receiver(&mut self, i: usize) -> Result<()> {
        let id = self.containers[i].clone();
        let pg = self.addrs.lock().unwrap_or_else(|e| e.into_inner())[i].clone();
        let pid = pg.walreceiver_pid(QUERY).await?;
        self.docker(&["exec", &id, "sh", "-c", &format!("kill -STOP {pid}")])
            .await?;
        self.stalled.insert(i, (id, pid));
        Ok(())
    }

    async fn resume_receiver(&mut self, i: usize) -> Result<()> {
        if let Some((id, pid)) = self.stalled.remove(&i) {
            // Gone with its container, or already continued: nothing to undo.
            let _ = self
                .docker(&["exec", &id, "sh", "-c", &format!("kill -CONT {pid}")])
                .await;
        }
        Ok(())
    }

    async fn break_probe(&mut self, i: usize) -> Result<()> {
        let id = self.containers[i].clone();
        self.docker(&["exec", &id, "mv", SOCKET, &format!("{SOCKET}.chaos-hidden")])
            .await?;
        self.hidden.insert(i, id);
        let pg = self.addrs.lock().unwrap_or_else(|e| e.into_inner())[i].clone();
        pg.terminate("agent", QUERY).await?;
        Ok(())
    }

    async fn mend_probe(&mut self, i: usize) -> Result<()> {
        match self.hidden.remove(&i) {
            Some(id) => self.unhide(&id).await,
            None => Ok(()),
        }
    }

    async fn kill_node(&mut self, i: usize) -> Result<()> {
        let id = self.containers[i].clone();
        self.docker(&["kill", &id]).await.map(|_| ())
    }

    async fn stop_node(&mut self, i: usize) -> Result<()> {
        let id = self.containers[i].clone();
        self.docker(&["stop", "-t", "60", &id]).await.map(|_| ())
    }

    async fn start_node(&mut self, i: usize) -> Result<()> {
        let id = self.containers[i].clone();
        self.docker(&["start", &id]).await?;
        // A restarted container may get another address.
        let ip = self.ip(&id).await?;
        self.addrs.lock().unwrap_or_else(|e| e.into_inner())[i] = Pg::new(ip, 5432, PASSWORD);
        Ok(())
    }

    async fn kill_postgres(&mut self, i: usize) -> Result<()> {
        let id = self.containers[i].clone();
        self.docker(&[
            "exec",
            &id,
            "sh",
            "-c",
            &format!("kill -9 $(head -1 {PGDATA}/postmaster.pid)"),
        ])
        .await
        .map(|_| ())
    }

    async fn freeze_agent(&mut self, i: usize) -> Result<()> {
        let pid = self.agent_pid(i).await?;
        if !signal(pid, Signal::SIGSTOP) {
            bail!("cannot SIGSTOP {pid}");
        }
        self.frozen.insert(pid);
        Ok(())
    }

    async fn thaw_agent(&mut self, i: usize) -> Result<()> {
        let pid = self.agent_pid(i).await?;
        signal(pid, Signal::SIGCONT);
        self.frozen.remove(&pid);
        Ok(())
    }

    async fn slow_dcs(&mut self, i: usize, _latency: Duration) -> Result<()> {
        bail!(
            "{}: a slow etcd link is not supported on the compose target",
            self.names[i]
        )
    }

    async fn cut_dcs(&mut self, i: usize) -> Result<()> {
        if !self.can_partition {
            bail!("partitions need root, iptables and nsenter");
        }
        self.iptables(i, "-I").await?;
        self.cut.insert(i);
        Ok(())
    }

    async fn heal_dcs(&mut self, i: usize) -> Result<()> {
        self.iptables(i, "-D").await?;
        self.cut.remove(&i);
        Ok(())
    }

    async fn lose_quorum(&mut self, seed: u64) -> Result<String> {
        let n = self.etcd_containers.len();
        let survivor = (seed % n as u64) as usize;
        let mut names = Vec::new();
        for (m, id) in self.etcd_containers.clone().iter().enumerate() {
            if m != survivor {
                self.docker(&["pause", id]).await?;
                self.paused_etcd.push(id.clone());
                names.push(format!("etcd{}", m + 1));
            }
        }
        Ok(format!(
            "docker pause {} (etcd{} left running)",
            names.join(" "),
            survivor + 1
        ))
    }

    async fn restore_quorum(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.paused_etcd) {
            self.docker(&["unpause", &id]).await?;
        }
        Ok(())
    }

    async fn heal_all(&mut self) {
        let _ = self.restore_quorum().await;
        for i in self.stalled.keys().copied().collect::<Vec<_>>() {
            let _ = self.resume_receiver(i).await;
        }
        for (_, id) in std::mem::take(&mut self.hidden) {
            let _ = self.unhide(&id).await;
        }
        for i in std::mem::take(&mut self.cut) {
            let _ = self.iptables(i, "-D").await;
        }
        for pid in std::mem::take(&mut self.frozen) {
            signal(pid, Signal::SIGCONT);
        }
        for i in 0..self.containers.len() {
            let id = self.containers[i].clone();
            if !self.running(&id).await {
                let _ = self.start_node(i).await;
            }
        }
    }
}

impl Drop for ComposeTarget {
    fn drop(&mut self) {
        let blocking = |args: &[&str]| {
            let mut cmd = std::process::Command::new(&self.compose[0]);
            cmd.args(&self.compose[1..]).args(["-p", &self.project]);
            for f in &self.files {
                cmd.arg("-f").arg(f);
            }
            cmd.args(args)
                .current_dir(repo_root())
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .output()
        };
        for id in &self.paused_etcd {
            let _ = std::process::Command::new("docker")
                .args(["unpause", id])
                .output();
        }
        for pid in &self.frozen {
            signal(*pid, Signal::SIGCONT);
        }
        for (id, pid) in self.stalled.values() {
            let _ = std::process::Command::new("docker")
                .args(["exec", id, "sh", "-c", &format!("kill -CONT {pid}")])
                .output();
        }
        if self.keep || std::thread::panicking() {
            if let Ok(out) = blocking(&["logs", "--no-color", "--tail", "300"]) {
                let _ = std::fs::write(self.dir.path().join("containers.log"), &out.stdout);
            }
        }
        match blocking(&["down", "-v", "--remove-orphans", "-t", "30"]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "compose down -v failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cannot run compose down -v: {e}"),
        }
    }
}
