//! End to end: the compose stack (`compose/`) as a user runs it. Builds the
//! image, brings up three etcd members, three agent nodes and HAProxy, waits
//! for one primary and two streaming replicas, writes through HAProxy's primary
//! port and reads through its replica port, `docker kill`s the primary's
//! container and measures how long writes through the primary port were
//! impossible, `docker start`s it again and waits until it streams as a
//! replica, runs `agentctl list` and `agentctl switchover` inside a container,
//! adds a fourth node with `docker run` (as compose/README.md documents) and
//! removes it again, and checks that `down -v` leaves nothing behind. Then the
//! TLS variant with the same image (`compose/certs.sh`,
//! `docker-compose.tls.yml`): replication over TLS, writes and reads through
//! HAProxy with `sslmode=verify-full` (plaintext refused), HTTPS REST APIs that
//! refuse plain HTTP and clients without a certificate, etcd that refuses
//! plaintext and reads without a user, and `agentctl list` and `switchover`
//! inside a container; `down -v` again.
//!
//! Needs a Docker engine. Without one (`docker info` fails) the test prints a
//! loud SKIPPED line and returns; that is the only skip. Set
//! `AGENT_TESTS_REQUIRE_DOCKER=1` (CI machines that have Docker) to fail
//! instead.
//!
//! Which images (`AGENT_COMPOSE_IMAGES`):
//! - `local` (default): the no-registry path. `compose/build-local.sh` makes
//!   the debootstrapped base image (once; it is kept) and the node image from
//!   the binaries this test run built (debug build, stripped), or from a
//!   `cargo build --release` with `AGENT_COMPOSE_RELEASE=1`;
//! - `public`: `docker compose build` from source with the public images
//!   (rust, debian, etcd, haproxy): needs registry access.
//!
//! Host ports are free loopback ports and the compose project name is unique,
//! so the test does not collide with a stack a user runs on 5000/5001/7000.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agent_tests::*;

/// `bootstrap.dcs.ttl` of the image's default configuration (compose/agent.yml).
const TTL: Duration = Duration::from_secs(15);
/// The harness's SQL helpers log in as postgres/postgres; the stack gets that password.
const SUPERUSER_PASSWORD: &str = "postgres";
/// Bootstrap of a fresh stack: etcd quorum, initdb, two base backups.
const FORM_TIMEOUT: Duration = Duration::from_secs(180);

/// Write to the real stderr: libtest captures `eprintln!` of passing tests,
/// and a skip must be seen.
fn loud(msg: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "\n{}\n{msg}\n{}\n", "*".repeat(78), "*".repeat(78));
}

fn docker_engine() -> Result<(), String> {
    match std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("cannot run docker: {e}")),
    }
}

/// `docker compose` (v2 plugin) if it works, else `docker-compose` (v1).
fn compose_command() -> Vec<String> {
    let works = |cmd: &[&str]| {
        std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for cmd in [&["docker", "compose"][..], &["docker-compose"][..]] {
        if works(cmd) {
            return cmd.iter().map(|s| s.to_string()).collect();
        }
    }
    panic!(
        "a Docker engine is here but no compose: install the Debian package docker-compose \
         (apt-get install docker-compose) or Docker's compose plugin"
    );
}

/// Run a command to completion; its output is appended to `log`. Panics with
/// the output's tail when it fails.
async fn run(mut cmd: tokio::process::Command, what: &str, log: &Path) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
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
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            agent_tests::logs::last_lines(&stdout, 40),
            agent_tests::logs::last_lines(&stderr, 40)
        );
    }
    stdout
}

fn docker(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(args);
    cmd
}

/// The compose project: command, files, environment (passwords, ports, image
/// names) and where its output is logged.
struct Compose {
    cmd: Vec<String>,
    project: String,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Compose {
    fn std_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.cmd[0]);
        cmd.args(&self.cmd[1..]).args(["-p", &self.project]);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd.args(args)
            .current_dir(repo_root())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        self.std_command(args).into()
    }

    async fn run(&self, args: &[&str]) -> String {
        run(
            self.command(args),
            &format!("compose {}", args.join(" ")),
            &self.log,
        )
        .await
    }

    /// The container id of `service`.
    async fn container(&self, service: &str) -> String {
        let id = self.run(&["ps", "-q", service]).await.trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn env(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} not set"))
    }

    /// The published port in the environment variable `key`.
    fn port(&self, key: &str) -> u16 {
        self.env(key)
            .parse()
            .unwrap_or_else(|e| panic!("{key}: {e}"))
    }
}

/// The running stack: `down -v` on drop (with the logs saved first when the
/// test failed), so nothing is left behind even when an assertion fails.
struct Stack {
    compose: Compose,
}

impl Stack {
    /// `up -d` the project `compose`: the stack, its three nodes and its ports.
    async fn up(compose: Compose) -> (Stack, Vec<Node>, Ports) {
        let stack = Stack { compose };
        let c = &stack.compose;
        c.run(&["up", "-d", "--no-build"]).await;
        let mut nodes = Vec::new();
        for (i, key) in ["NODE1_REST_PORT", "NODE2_REST_PORT", "NODE3_REST_PORT"]
            .iter()
            .enumerate()
        {
            let name = format!("node{}", i + 1);
            nodes.push(Node {
                container: c.container(&name).await,
                rest_port: c.port(key),
                name,
            });
        }
        let ports = Ports {
            primary: c.port("PRIMARY_PORT"),
            replica: c.port("REPLICA_PORT"),
            stats: c.port("STATS_PORT"),
        };
        (stack, nodes, ports)
    }

    /// Take the stack down (`down -v`) and check that no container, volume or
    /// network of the project is left.
    async fn down_leaving_nothing(self) {
        let (project, log) = (self.compose.project.clone(), self.compose.log.clone());
        drop(self);
        let label = format!("label=com.docker.compose.project={project}");
        for what in [
            &["ps", "-aq", "--filter", &label][..],
            &["volume", "ls", "-q", "--filter", &label][..],
            &["network", "ls", "-q", "--filter", &label][..],
        ] {
            let left = run(docker(what), "docker ls", &log).await;
            assert!(
                left.trim().is_empty(),
                "left behind after down -v ({}): {left}",
                what[0]
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let blocking = |args: &[&str]| self.compose.std_command(args).stdin(Stdio::null()).output();
        if std::thread::panicking() {
            if let Ok(out) = blocking(&["logs", "--no-color", "--tail", "60"]) {
                let path = self.compose.log.with_file_name("containers.log");
                let _ = std::fs::write(&path, &out.stdout);
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

/// `GET http://127.0.0.1:<port><path>` as JSON, whatever the status.
async fn rest_get(port: u16, path: &str) -> Option<Value> {
    agent_tests::tls::http_builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .ok()?
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// HAProxy's published ports.
#[derive(Clone, Copy)]
struct Ports {
    primary: u16,
    replica: u16,
    stats: u16,
}

/// The members, their published REST ports and their container ids.
struct Node {
    name: String,
    rest_port: u16,
    container: String,
}

/// `GET https://127.0.0.1:<port><path>` with `openssl s_client`, verifying the
/// server against `certs/ca.crt` and presenting `certs/<client>.crt` when a
/// client is given; the body as JSON, whatever the status. `None` when the TLS
/// handshake or the request fails.
async fn https_get(port: u16, path: &str, certs: &Path, client: Option<&str>) -> Option<Value> {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args([
        "s_client",
        "-quiet",
        "-verify_return_error",
        "-servername",
        "localhost",
    ])
    .arg("-connect")
    .arg(format!("127.0.0.1:{port}"))
    .arg("-CAfile")
    .arg(certs.join("ca.crt"));
    if let Some(c) = client {
        cmd.arg("-cert")
            .arg(certs.join(format!("{c}.crt")))
            .arg("-key")
            .arg(certs.join(format!("{c}.key")));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, request.as_bytes())
        .await
        .ok()?;
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/").then_some(())?;
    serde_json::from_str(body).ok()
}

/// `GET /patroni` and the like: plain HTTP, or HTTPS with a node's client
/// certificate from `tls` (the certificates directory).
async fn status(port: u16, path: &str, tls: Option<&Path>) -> Option<Value> {
    match tls {
        None => rest_get(port, path).await,
        Some(certs) => https_get(port, path, certs, Some("node1")).await,
    }
}

/// Wait until exactly one node is a running primary and the others are
/// running replicas streaming from it; returns the primary's index.
async fn wait_formed(nodes: &[Node], timeout: Duration) -> usize {
    wait_formed_with(nodes, timeout, None).await
}

/// [`wait_formed`], asking the REST APIs over HTTPS when `tls` is given.
async fn wait_formed_with(nodes: &[Node], timeout: Duration, tls: Option<&Path>) -> usize {
    wait_for_result(
        "one primary and two streaming replicas",
        timeout,
        Duration::from_millis(500),
        || async move {
            let mut primaries = Vec::new();
            let mut states = Vec::new();
            for (i, n) in nodes.iter().enumerate() {
                let Some(v) = status(n.rest_port, "/patroni", tls).await else {
                    states.push(format!("{}: no answer", n.name));
                    continue;
                };
                states.push(format!(
                    "{}: {} {} {}",
                    n.name, v["role"], v["state"], v["replication_state"]
                ));
                if v["role"] == "primary" && v["state"] == "running" {
                    let streaming = v["replication"]
                        .as_array()
                        .map(|r| r.iter().filter(|x| x["state"] == "streaming").count())
                        .unwrap_or(0);
                    if streaming == nodes.len() - 1 {
                        primaries.push(i);
                    }
                } else if v["role"] != "replica"
                    || v["state"] != "running"
                    || v["replication_state"] != "streaming"
                {
                    return Err(states.join("; "));
                }
            }
            match primaries.as_slice() {
                [p] => Ok(*p),
                _ => Err(states.join("; ")),
            }
        },
    )
    .await
}

/// The container's address on the stack's network.
async fn container_ip(id: &str, log: &Path) -> String {
    run(
        docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            id,
        ]),
        "docker inspect ip",
        log,
    )
    .await
    .trim()
    .to_string()
}

async fn node_ips(nodes: &[Node], log: &Path) -> Vec<String> {
    let mut ips = Vec::new();
    for n in nodes {
        ips.push(container_ip(&n.container, log).await);
    }
    ips
}

/// The index of the node whose address is in a writer's `server` (`ip:port`).
fn node_at(ips: &[String], server: &str) -> Option<usize> {
    ips.iter()
        .position(|ip| server.split(':').next() == Some(ip.as_str()))
}

/// A fresh stack formed ([`wait_formed_with`], within [`FORM_TIMEOUT`]) and
/// HAProxy routing its primary port to the primary and its replica port to the
/// other nodes; the primary's index.
async fn wait_formed_and_routed(nodes: &[Node], ports: &Ports, tls: Option<&Path>) -> usize {
    let p = wait_formed_with(nodes, FORM_TIMEOUT, tls).await;
    let replicas: Vec<&str> = (0..nodes.len())
        .filter(|i| *i != p)
        .map(|i| nodes[i].name.as_str())
        .collect();
    wait_up(
        ports.stats,
        "primary",
        &[&nodes[p].name],
        Duration::from_secs(30),
    )
    .await;
    wait_up(ports.stats, "replicas", &replicas, Duration::from_secs(30)).await;
    p
}

/// `agentctl <args>` inside `container` with the image's configuration; its
/// output (`what` names it in the log).
async fn agentctl(container: &str, args: &[&str], what: &str, log: &Path) -> String {
    let mut cmd = docker(&["exec", container, "agentctl", "-c", "/etc/agent/agent.yml"]);
    cmd.args(args);
    run(cmd, what, log).await
}

/// `agentctl list` inside `container`: every node is listed. The output.
async fn agentctl_list(nodes: &[Node], container: &str, what: &str, log: &Path) -> String {
    let list = agentctl(container, &["list"], what, log).await;
    for n in nodes {
        assert!(
            list.contains(&n.name),
            "agentctl list lacks {}:\n{list}",
            n.name
        );
    }
    list
}

/// `agentctl switchover` from `nodes[from]` to `nodes[to]`, run inside `container`.
async fn agentctl_switchover(
    nodes: &[Node],
    container: &str,
    (from, to): (usize, usize),
    what: &str,
    log: &Path,
) -> String {
    let args = [
        "switchover",
        "--leader",
        &nodes[from].name,
        "--candidate",
        &nodes[to].name,
        "--force",
    ];
    agentctl(container, &args, what, log).await
}

/// Stage stripped copies of this run's agent binaries for the image.
fn stage_binaries(dir: &Path) -> PathBuf {
    let bins = agent_binaries();
    let out = dir.join("binaries");
    std::fs::create_dir_all(&out).unwrap();
    for src in [&bins.agent, &bins.agentctl] {
        let dst = out.join(src.file_name().unwrap());
        let stripped = std::process::Command::new("strip")
            .arg("-o")
            .arg(&dst)
            .arg(src)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(src, &dst).unwrap();
        }
    }
    out
}

/// `docker rm -f -v` a container and remove a volume on drop: for what the
/// test starts outside the compose project (the added replica).
struct Extra {
    container: String,
    volume: String,
}

impl Drop for Extra {
    fn drop(&mut self) {
        for args in [
            vec!["rm", "-f", "-v", self.container.as_str()],
            vec!["volume", "rm", "-f", self.volume.as_str()],
        ] {
            let _ = std::process::Command::new("docker")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The member names in the primary's `GET /cluster`.
async fn members(rest_port: u16) -> Option<BTreeSet<String>> {
    let v = rest_get(rest_port, "/cluster").await?;
    Some(
        v["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Add a replica as compose/README.md says (one more container with the same
/// scope on the stack's network), wait until it streams, then remove it
/// (stop it; its member key expires with its lease).
async fn add_and_remove_replica(project: &str, image: &str, primary: &Node, log: &Path) {
    let extra = Extra {
        container: format!("{project}-node4"),
        volume: format!("{project}-node4"),
    };
    let env_file = repo_root().join("compose/.env");
    let network = format!("{project}_default");
    let volume = format!("{}:/var/lib/postgresql/data", extra.volume);
    run(
        docker(&[
            "run",
            "-d",
            "--name",
            &extra.container,
            "--hostname",
            "node4",
            "--network",
            &network,
            "--network-alias",
            "node4",
            "--env-file",
            &env_file.to_string_lossy(),
            "-e",
            &format!("PATRONI_SUPERUSER_PASSWORD={SUPERUSER_PASSWORD}"),
            "-v",
            &volume,
            image,
        ]),
        "docker run node4",
        log,
    )
    .await;
    let added = Instant::now();
    let port = primary.rest_port;
    wait_for(
        "node4 streaming from the primary",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async move {
            let v = rest_get(port, "/patroni").await?;
            v["replication"]
                .as_array()?
                .iter()
                .any(|r| r["application_name"] == "node4" && r["state"] == "streaming")
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "compose: node4 added with docker run, streaming {:.1}s later",
        added.elapsed().as_secs_f64()
    );
    run(
        docker(&["stop", "-t", "60", &extra.container]),
        "docker stop node4",
        log,
    )
    .await;
    let stopped = Instant::now();
    wait_for(
        "node4's member key to go",
        TTL + Duration::from_secs(15),
        Duration::from_millis(250),
        || async move { members(port).await.filter(|m| !m.contains("node4")) },
    )
    .await;
    eprintln!(
        "compose: node4 stopped; gone from the cluster {:.1}s later",
        stopped.elapsed().as_secs_f64()
    );
    drop(extra);
}

/// `psql` on the host against `127.0.0.1:<port>` (HAProxy) with `sslmode`,
/// trusting the stack's CA: the last line of the output (`-At`), or the error.
async fn psql(port: u16, sslmode: &str, certs: &Path, query: &str) -> Result<String, String> {
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5 \
         sslmode={sslmode} sslrootcert={}",
        certs.join("ca.crt").display()
    );
    let out = tokio::process::Command::new(pg_bin("psql"))
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", query])
        .arg(conninfo)
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .env_remove("PGSSLMODE")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.trim().lines().last().unwrap_or("").to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Wait until `query` through `port` ([`psql`] with `sslmode=verify-full`,
/// trusting `certs`) answers `want`.
async fn wait_psql(
    what: &str,
    timeout: Duration,
    (port, certs): (u16, &Path),
    query: &str,
    want: &str,
) {
    wait_for(what, timeout, Duration::from_millis(200), || async move {
        psql(port, "verify-full", certs, query)
            .await
            .ok()
            .filter(|out| out == want)
    })
    .await;
}

/// A command's combined output, and whether it succeeded (no panic on failure).
async fn try_run(mut cmd: tokio::process::Command) -> (bool, String) {
    match cmd.stdin(Stdio::null()).output().await {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run: {e}")),
    }
}

/// `etcdctl <conn> get --prefix /service/` inside `container`: whether it
/// succeeded, and its output.
async fn etcdctl_get(container: &str, conn: &[&str]) -> (bool, String) {
    let mut cmd = docker(&["exec", container, "etcdctl"]);
    cmd.args(conn).args([
        "--dial-timeout=3s",
        "--command-timeout=5s",
        "get",
        "--prefix",
        "/service/",
    ]);
    try_run(cmd).await
}

/// The TLS variant (`compose/docker-compose.tls.yml` over the same files, the
/// same image): certificates from `compose/certs.sh`, then one primary and two
/// streaming replicas with HTTPS REST APIs, replication over TLS and etcd with
/// client certificates and authentication; a write through HAProxy's primary
/// port and a read through its replica port over TLS (a plaintext connection
/// is refused), `agentctl list` and `switchover` inside a container over HTTPS
/// and TLS to etcd, plain HTTP to a REST port and plaintext etcd refused.
async fn tls_variant(
    cmd: Vec<String>,
    mut files: Vec<PathBuf>,
    mut env: Vec<(String, String)>,
    dir: &Path,
    log: &Path,
) {
    let started = Instant::now();
    let root = repo_root();
    let certs = dir.join("certs");
    let mut gen = tokio::process::Command::new(root.join("compose/certs.sh"));
    gen.env("CERTS_DIR", &certs);
    run(gen, "compose/certs.sh", log).await;
    files.push(root.join("compose/docker-compose.tls.yml"));
    env.push(("AGENT_CERTS_DIR".into(), certs.to_string_lossy().into()));
    let (stack, nodes, ports) = Stack::up(Compose {
        cmd,
        project: format!("agente2etls{}", std::process::id()),
        files,
        env,
        log: log.to_path_buf(),
    })
    .await;
    let c = &stack.compose;
    let t_up = Instant::now();
    // HAProxy's checks speak HTTPS with its client certificate.
    let p = wait_formed_and_routed(&nodes, &ports, Some(&certs)).await;
    let replicas: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    eprintln!(
        "compose TLS: primary {} and two streaming replicas (over TLS), routed by HAProxy's \
         HTTPS checks, {:.1}s after up",
        nodes[p].name,
        t_up.elapsed().as_secs_f64()
    );

    // Writes through :5000 and reads through :5001, verify-full against the CA.
    let ips = node_ips(&nodes, log).await;
    let at = psql(
        ports.primary,
        "verify-full",
        &certs,
        "CREATE TABLE e2e_tls (v int); INSERT INTO e2e_tls VALUES (1); \
         SELECT host(inet_server_addr()) || ' ' || ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
    .unwrap_or_else(|e| panic!("write through the primary port over TLS: {e}"));
    assert_eq!(
        at,
        format!("{} true", ips[p]),
        "the write went to the primary over TLS"
    );
    wait_psql(
        "the row written through the primary port, read over TLS through the replica port",
        Duration::from_secs(30),
        (ports.replica, &certs),
        "SELECT count(*) || ' ' || pg_is_in_recovery() FROM e2e_tls",
        "1 true",
    )
    .await;
    let plain = psql(ports.primary, "disable", &certs, "SELECT 1").await;
    assert!(
        plain
            .as_ref()
            .is_err_and(|e| e.contains("no encryption") || e.contains("pg_hba")),
        "a plaintext connection through HAProxy must be refused: {plain:?}"
    );
    // Replication itself runs over TLS.
    let repl = psql(
        ports.primary,
        "verify-full",
        &certs,
        "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl",
    )
    .await
    .unwrap();
    assert_eq!(repl, "2", "both replicas stream over TLS");

    // The REST API: HTTPS with a client certificate only.
    let n0 = &nodes[0];
    assert!(
        rest_get(n0.rest_port, "/patroni").await.is_none(),
        "plain HTTP to a REST port must fail"
    );
    assert!(
        https_get(n0.rest_port, "/patroni", &certs, None)
            .await
            .is_none(),
        "HTTPS without a client certificate must fail (verify_client: required)"
    );
    assert!(https_get(n0.rest_port, "/patroni", &certs, Some("haproxy"))
        .await
        .is_some_and(|v| v["state"] == "running"));

    // etcd: no plaintext, and no keys without a user.
    let etcd1 = c.container("etcd1").await;
    let (ok, out) = etcdctl_get(&etcd1, &["--endpoints=http://127.0.0.1:2379"]).await;
    assert!(!ok, "plaintext etcd must fail:\n{out}");
    let tls = [
        "--endpoints=https://127.0.0.1:2379",
        "--cacert=/etc/etcd/tls/ca.crt",
        "--cert=/etc/etcd/tls/etcd.crt",
        "--key=/etc/etcd/tls/etcd.key",
    ];
    let (ok, out) = etcdctl_get(&etcd1, &tls).await;
    assert!(
        !ok && out.contains("permission denied"),
        "etcd without a user must refuse reads (authentication on):\n{out}"
    );

    // agentctl inside a container: etcd over TLS with user/password, the
    // members over HTTPS with the node's client certificate.
    let (q, r) = (replicas[0], replicas[1]);
    agentctl_list(&nodes, &nodes[r].container, "agentctl list (TLS)", log).await;
    let switched = Instant::now();
    let out = agentctl_switchover(
        &nodes,
        &nodes[r].container,
        (p, q),
        "agentctl switchover (TLS)",
        log,
    )
    .await;
    eprintln!("compose TLS: agentctl switchover\n{out}");
    wait_psql(
        "a write through the primary port on the switchover candidate",
        Duration::from_secs(60),
        (ports.primary, &certs),
        "INSERT INTO e2e_tls VALUES (2); \
         SELECT host(inet_server_addr()) || ' ' || pg_is_in_recovery()",
        &format!("{} false", ips[q]),
    )
    .await;
    eprintln!(
        "compose TLS: switchover to {}: first write through HAProxy there {:.1}s later",
        nodes[q].name,
        switched.elapsed().as_secs_f64()
    );
    let again = wait_formed_with(&nodes, Duration::from_secs(90), Some(&certs)).await;
    assert_eq!(again, q);

    stack.down_leaving_nothing().await;
    eprintln!(
        "compose TLS: variant end to end in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_end_to_end() {
    if let Err(why) = docker_engine() {
        let msg = format!(
            "SKIPPED compose_stack_end_to_end: no Docker engine (`docker info`: {why}).\n\
             The compose end-to-end test did NOT run."
        );
        if std::env::var("AGENT_TESTS_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
            panic!("{msg} AGENT_TESTS_REQUIRE_DOCKER=1 makes this a failure.");
        }
        loud(&msg);
        return;
    }
    let started = Instant::now();
    let dir = TestDir::new("compose_e2e");
    let log = dir.path().join("compose.log");
    let cmd = compose_command();
    let public = match std::env::var("AGENT_COMPOSE_IMAGES").as_deref() {
        Ok("public") => true,
        Ok("local") | Err(_) => false,
        Ok(other) => panic!("AGENT_COMPOSE_IMAGES must be local or public, not {other}"),
    };
    let root = repo_root();
    let mut files = vec![root.join("compose/docker-compose.yml")];
    let image = if public {
        "agent:e2e-public"
    } else {
        "agent:e2e"
    };
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let mut env: Vec<(String, String)> = vec![
        ("AGENT_IMAGE".into(), image.into()),
        (
            "PATRONI_SUPERUSER_PASSWORD".into(),
            SUPERUSER_PASSWORD.into(),
        ),
        ("PUBLISH_ADDRESS".into(), "127.0.0.1".into()),
    ];
    for (key, port) in [
        "PRIMARY_PORT",
        "REPLICA_PORT",
        "STATS_PORT",
        "NODE1_REST_PORT",
        "NODE2_REST_PORT",
        "NODE3_REST_PORT",
    ]
    .iter()
    .zip(&ports)
    {
        env.push((key.to_string(), port.to_string()));
    }

    // 1. The image.
    if public {
        let compose = Compose {
            cmd: cmd.clone(),
            project: "agente2ebuild".into(),
            files: files.clone(),
            env: env.clone(),
            log: log.clone(),
        };
        compose.run(&["build", "node1"]).await;
    } else {
        files.push(root.join("compose/docker-compose.local.yml"));
        let base_missing = std::process::Command::new("docker")
            .args(["image", "inspect", "agent-base:bookworm"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success());
        if base_missing {
            require("debootstrap", "debootstrap");
        }
        let mut build = tokio::process::Command::new(root.join("compose/build-local.sh"));
        build.env("AGENT_IMAGE", image);
        if std::env::var("AGENT_COMPOSE_RELEASE").is_ok_and(|v| v == "1") {
            build.env_remove("AGENT_BINARIES_DIR");
        } else {
            build.env("AGENT_BINARIES_DIR", stage_binaries(dir.path()));
        }
        run(build, "compose/build-local.sh", &log).await;
    }
    let size: u64 = run(
        docker(&["image", "inspect", "-f", "{{.Size}}", image]),
        "docker image inspect",
        &log,
    )
    .await
    .trim()
    .parse()
    .expect("image size in bytes");
    let built = started.elapsed();
    eprintln!(
        "compose: image {image} built in {:.1}s, {:.0} MB",
        built.as_secs_f64(),
        size as f64 / 1e6
    );

    // 2. The stack.
    let tls_setup = (cmd.clone(), files.clone(), env.clone());
    let project = format!("agente2e{}", std::process::id());
    let (stack, nodes, ports) = Stack::up(Compose {
        cmd,
        project: project.clone(),
        files,
        env,
        log: log.clone(),
    })
    .await;
    let t_up = Instant::now();
    let p = wait_formed_and_routed(&nodes, &ports, None).await;
    let replicas: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    eprintln!(
        "compose: primary {} and two streaming replicas, routed by HAProxy, {:.1}s after up",
        nodes[p].name,
        t_up.elapsed().as_secs_f64()
    );

    // 3. Writes through the primary port, reads through the replica port.
    let ips = node_ips(&nodes, &log).await;
    let rows = sql(
        &ports.primary,
        "SELECT pg_is_in_recovery(), host(inet_server_addr())",
    )
    .await
    .unwrap();
    assert!(!rows[0].get::<_, bool>(0));
    assert_eq!(rows[0].get::<_, String>(1), ips[p]);
    execute(
        &ports.primary,
        "CREATE TABLE e2e (v int); INSERT INTO e2e VALUES (1)",
    )
    .await
    .unwrap();
    wait_for(
        "the row written through the primary port, read through the replica port",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let rows = sql(&ports.replica, "SELECT count(*) FROM e2e").await.ok()?;
            (rows[0].get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await;
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let rows = sql(
            &ports.replica,
            "SELECT pg_is_in_recovery(), host(inet_server_addr())",
        )
        .await
        .unwrap();
        assert!(
            rows[0].get::<_, bool>(0),
            "a read was served by the primary"
        );
        let at = node_at(&ips, &rows[0].get::<_, String>(1)).expect("a read from a node");
        assert!(
            replicas.contains(&at),
            "a read was served by {}",
            nodes[at].name
        );
        seen.insert(at);
    }
    assert_eq!(seen.len(), 2, "round-robin over both replicas");

    // 4. agentctl inside a container.
    let list = agentctl_list(&nodes, &nodes[replicas[0]].container, "agentctl list", &log).await;
    eprintln!("compose: agentctl list\n{list}");

    // 5. docker kill the primary's container: writes through the primary port
    //    work again within ttl + a few seconds, on another node.
    let mut writer = Writer::start(
        Pg::local(ports.primary),
        Duration::from_millis(20),
        Duration::from_secs(1),
    )
    .await
    .expect("start the writer");
    writer
        .wait_ack_after(Instant::now(), Duration::from_secs(10))
        .await;
    let killed = Instant::now();
    run(docker(&["kill", &nodes[p].container]), "docker kill", &log).await;
    let kill_returned = killed.elapsed();
    // Writes may still land on the old primary while `docker kill` is under
    // way; the window runs from the last of those to the first on another node.
    let ips_ref = &ips;
    let first = writer
        .wait_ack(
            "a write through HAProxy on another node after docker kill",
            TTL + Duration::from_secs(30),
            |a| a.at > killed && node_at(ips_ref, &a.server) != Some(p),
        )
        .await;
    let q = node_at(&ips, &first.server).expect("the first write after the kill hit a node");
    let (window, before, _) = writer
        .handover(killed, |a| node_at(ips_ref, &a.server) != Some(p))
        .expect("writes before and after the kill");
    assert_eq!(node_at(&ips, &before.server), Some(p));
    eprintln!(
        "compose: docker kill of the primary {}: writes through HAProxy impossible for {:.2}s \
         (docker kill returned after {:.2}s; new primary {}; ttl {}s)",
        nodes[p].name,
        window.as_secs_f64(),
        kill_returned.as_secs_f64(),
        nodes[q].name,
        TTL.as_secs()
    );
    assert!(
        window < TTL + Duration::from_secs(10),
        "writes through HAProxy were impossible for {window:?}"
    );
    assert!(
        writer
            .acks()
            .iter()
            .filter(|a| a.at >= first.at)
            .all(|a| node_at(&ips, &a.server) == Some(q)),
        "after {} took over, a write landed elsewhere",
        nodes[q].name
    );

    // 6. docker start: the old primary rejoins as a streaming replica.
    run(
        docker(&["start", &nodes[p].container]),
        "docker start",
        &log,
    )
    .await;
    let t_start = Instant::now();
    let again = wait_formed(&nodes, Duration::from_secs(120)).await;
    assert_eq!(
        again, q,
        "the restarted node must not take the primary back"
    );
    eprintln!(
        "compose: {} rejoined as a streaming replica {:.1}s after docker start",
        nodes[p].name,
        t_start.elapsed().as_secs_f64()
    );
    let ips = node_ips(&nodes, &log).await; // a restarted container may have a new address
    let others = [nodes[p].name.as_str(), nodes[3 - p - q].name.as_str()];
    wait_up(ports.stats, "replicas", &others, Duration::from_secs(30)).await;

    // 7. agentctl switchover inside a container: back to the old primary.
    let switched = Instant::now();
    let out = agentctl_switchover(
        &nodes,
        &nodes[q].container,
        (q, p),
        "agentctl switchover",
        &log,
    )
    .await;
    eprintln!("compose: agentctl switchover\n{out}");
    let ips_ref = &ips;
    writer
        .wait_ack(
            "a write through HAProxy on the switchover candidate",
            Duration::from_secs(60),
            |a| a.at > switched && node_at(ips_ref, &a.server) == Some(p),
        )
        .await;
    writer.stop().await;
    let (gap, _, _) = writer
        .handover(switched, |a| node_at(ips_ref, &a.server) == Some(p))
        .expect("writes before and after the switchover");
    eprintln!(
        "compose: agentctl switchover to {}: writes through HAProxy impossible for {:.2}s",
        nodes[p].name,
        gap.as_secs_f64()
    );
    let p = wait_formed(&nodes, Duration::from_secs(60)).await;

    // 8. A fourth node joins as a replica, and leaves.
    add_and_remove_replica(&project, image, &nodes[p], &log).await;

    // 9. down -v leaves nothing behind.
    stack.down_leaving_nothing().await;
    // 10. The same image, the TLS variant.
    let (tls_cmd, tls_files, tls_env) = tls_setup;
    tls_variant(tls_cmd, tls_files, tls_env, dir.path(), &log).await;

    eprintln!(
        "compose: end to end in {:.1}s (image build {:.1}s)",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64()
    );
}
