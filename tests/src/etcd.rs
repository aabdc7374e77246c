//! A one-member etcd on free loopback ports, as a child of the test process.
//!
//! Rule: the fixture owns the process; `Drop` always kills and reaps it, even
//! when it is paused. Keys are read and written by [`EtcdClient`], through
//! etcd's HTTP/JSON gateway (`/v3/kv/*`), so assertions need no etcdctl and no
//! gRPC client.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::bins::require;
use crate::dirs::TestDir;
use crate::ports::free_port;
use crate::proc::{kill_child, signal};
use crate::tls::CertPair;

/// How long etcd may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one HTTP request to etcd.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// TLS for etcd's client port: its server certificate, and whether clients must
/// present a certificate signed by `ca` (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct EtcdServerTls {
    pub ca: PathBuf,
    pub server: CertPair,
    pub client_cert_auth: bool,
}

/// A running (or deliberately stopped) single-member etcd.
#[derive(Debug)]
pub struct EtcdFixture {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// With TLS, `client_port` speaks https (for the agents) and this plain-http
    /// loopback port serves the harness's gateway reads.
    tls: Option<(EtcdServerTls, u16)>,
    /// etcd user and password once authentication is enabled ([`EtcdFixture::enable_auth`]).
    auth: Option<(String, String)>,
}

impl EtcdFixture {
    /// Start etcd with data in `<dir>/etcd` and its log in `<dir>/etcd.log`;
    /// returns once `/health` reports healthy.
    pub async fn start(dir: &TestDir) -> EtcdFixture {
        Self::start_in(dir.path()).await
    }

    /// Like [`EtcdFixture::start`] for any directory (etcd runs as the current user).
    pub async fn start_in(dir: &Path) -> EtcdFixture {
        Self::start_with(dir, None).await
    }

    /// Like [`EtcdFixture::start_in`], with TLS on the client port when `tls` is given.
    pub async fn start_with(dir: &Path, tls: Option<EtcdServerTls>) -> EtcdFixture {
        let mut etcd = EtcdFixture {
            child: None,
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: dir.join("etcd"),
            log_path: dir.join("etcd.log"),
            tls: tls.map(|t| (t, free_port())),
            auth: None,
        };
        etcd.spawn().await;
        etcd
    }

    /// Create user `root` with `password` and turn on etcd authentication; the
    /// harness's own reads authenticate from then on.
    pub fn enable_auth(&mut self, password: &str) {
        let bin = require("etcdctl", "etcd-client");
        let endpoint = self.url();
        for args in [
            vec!["user".to_string(), "add".into(), format!("root:{password}")],
            vec!["auth".into(), "enable".into()],
        ] {
            let out = Command::new(&bin)
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoint}"))
                .args(&args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run etcdctl: {e}"));
            assert!(
                out.status.success(),
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.auth = Some(("root".into(), password.into()));
    }

    async fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        self.child = Some(spawn_member(&Member {
            name: "etcd0",
            client_port: self.client_port,
            peer_port: self.peer_port,
            data_dir: &self.data_dir,
            log_path: &self.log_path,
            initial_cluster: &format!("etcd0={peer}"),
            state: "new",
            token: &format!("agent-tests-{}", self.client_port),
            tls: self.tls.as_ref().map(|(t, gateway)| (t, *gateway)),
        }));

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "etcd exited during startup ({status}); last lines of {}:\n{}",
                    self.log_path.display(),
                    crate::logs::tail(&self.log_path, 40)
                );
            }
            if self.is_healthy().await {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd on {client} not healthy after {START_TIMEOUT:?}; last lines of {}:\n{}",
                    self.log_path.display(),
                    crate::logs::tail(&self.log_path, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:<client port>`, the form the agent config's `etcd3.hosts` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<client port>` (with TLS: the plain-http loopback port the
    /// harness reads through; the agents use [`EtcdFixture::endpoint`] over https).
    pub fn url(&self) -> String {
        format!("http://{}", self.gateway_endpoint())
    }

    /// Where the harness's plain-http reads go: the client port, or with TLS the
    /// extra plain-http loopback port.
    fn gateway_endpoint(&self) -> String {
        match &self.tls {
            None => self.endpoint(),
            Some((_, gateway)) => format!("127.0.0.1:{gateway}"),
        }
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The etcd process id while it has not been killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Freeze etcd (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            signal(pid as i32, Signal::SIGSTOP);
        }
    }

    /// Undo [`EtcdFixture::pause`] (SIGCONT).
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal(pid as i32, Signal::SIGCONT);
        }
    }

    /// SIGKILL etcd and reap it. Its data stays; [`EtcdFixture::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// Start etcd again on the same ports and data dir (after [`EtcdFixture::kill`]).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// True when `GET /health` answers `{"health":"true"}` within 2 s.
    pub async fn is_healthy(&self) -> bool {
        is_healthy(&self.gateway_endpoint()).await
    }

    /// A key client through this member's HTTP gateway.
    pub fn client(&self) -> EtcdClient {
        let client = EtcdClient::new(vec![self.gateway_endpoint()]);
        match &self.auth {
            Some((user, password)) => client.with_auth(user, password),
            None => client,
        }
    }
}

impl Drop for EtcdFixture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one etcd member is started with.
pub(crate) struct Member<'a> {
    pub name: &'a str,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: &'a Path,
    pub log_path: &'a Path,
    /// `--initial-cluster`: `name=http://127.0.0.1:<peer port>,...`.
    pub initial_cluster: &'a str,
    /// `new`, or `existing` for a restart.
    pub state: &'a str,
    pub token: &'a str,
    /// TLS on the client port, and the extra plain-http loopback port for the harness.
    pub tls: Option<(&'a EtcdServerTls, u16)>,
}

/// Start one etcd member on loopback, output appended to its log.
pub(crate) fn spawn_member(m: &Member) -> Child {
    let bin = require("etcd", "etcd-server");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.log_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", m.log_path.display()));
    let client = match m.tls {
        None => format!("http://127.0.0.1:{}", m.client_port),
        Some(_) => format!("https://127.0.0.1:{}", m.client_port),
    };
    let listen = match m.tls {
        None => client.clone(),
        Some((_, gateway)) => format!("{client},http://127.0.0.1:{gateway}"),
    };
    let peer = format!("http://127.0.0.1:{}", m.peer_port);
    let mut cmd = Command::new(&bin);
    if let Some((tls, _)) = m.tls {
        cmd.arg(format!("--cert-file={}", tls.server.cert.display()))
            .arg(format!("--key-file={}", tls.server.key.display()));
        // etcd asks for a client certificate whenever it has a trusted CA.
        if tls.client_cert_auth {
            cmd.arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", tls.ca.display()));
        }
    }
    cmd.arg(format!("--name={}", m.name))
        .arg(format!("--data-dir={}", m.data_dir.display()))
        .arg(format!("--listen-client-urls={listen}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster={}", m.initial_cluster))
        .arg(format!("--initial-cluster-state={}", m.state))
        .arg(format!("--initial-cluster-token={}", m.token))
        .arg("--logger=zap")
        .arg("--log-outputs=stderr");
    // ETCD_* variables would override or conflict with the flags above.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ETCD") && k != "ETCD_UNSUPPORTED_ARCH" {
            cmd.env_remove(k.as_ref());
        }
    }
    if cfg!(target_arch = "aarch64") {
        cmd.env("ETCD_UNSUPPORTED_ARCH", "arm64");
    }
    let _ = writeln!(
        log,
        "===== harness: starting {} {} on {client} =====",
        bin.display(),
        m.name
    );
    let stderr = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot dup log fd: {e}"));
    cmd.stdin(Stdio::null()).stdout(log).stderr(stderr);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

fn http_client() -> reqwest::Client {
    crate::tls::http_builder()
        .timeout(HTTP_TIMEOUT)
        .no_proxy()
        .build()
        .expect("reqwest client without TLS builds")
}

/// True when the etcd member at `endpoint` (`host:port`) answers `GET /health`
/// with `{"health":"true"}` within 2 s.
pub async fn is_healthy(endpoint: &str) -> bool {
    let Ok(resp) = http_client()
        .get(format!("http://{endpoint}/health"))
        .send()
        .await
    else {
        return false;
    };
    match resp.json::<Value>().await {
        Ok(v) => v["health"] == "true" || v["health"] == true,
        Err(_) => false,
    }
}

/// Keys through etcd's HTTP/JSON gateway (`/v3/kv/*`) of the first of its
/// endpoints that answers: the one key client of the harness, for a single
/// member, a multi-member cluster or endpoints someone else runs.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoints: Vec<String>,
    /// etcd user and password, when etcd authentication is on.
    auth: Option<(String, String)>,
}

impl EtcdClient {
    /// Ask `endpoints` (`host:port`), in order, until one answers.
    pub fn new(endpoints: Vec<String>) -> EtcdClient {
        EtcdClient {
            endpoints,
            auth: None,
        }
    }

    /// Authenticate as `user` (a token per request, through `/v3/auth/authenticate`).
    pub fn with_auth(mut self, user: &str, password: &str) -> EtcdClient {
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    /// A token for `endpoint` when authentication is on.
    async fn token(&self, endpoint: &str) -> Result<Option<String>> {
        let Some((user, password)) = &self.auth else {
            return Ok(None);
        };
        let url = format!("http://{endpoint}/v3/auth/authenticate");
        let v: Value = http_client()
            .post(&url)
            .json(&json!({"name": user, "password": password}))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?
            .json()
            .await
            .with_context(|| format!("POST {url}: body"))?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| anyhow!("POST {url}: no token in {v}"))?;
        Ok(Some(token.to_string()))
    }

    /// POST to `/v3/<path>` on the first endpoint that answers.
    async fn gateway(&self, path: &str, body: Value) -> Result<Value> {
        let mut last = anyhow!("no etcd endpoint to ask");
        for endpoint in &self.endpoints {
            let url = format!("http://{endpoint}/v3/{path}");
            let attempt = async {
                let mut req = http_client().post(&url);
                if let Some(token) = self.token(endpoint).await? {
                    req = req.header("Authorization", token);
                }
                let resp = req
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let status = resp.status();
                let v: Value = resp
                    .json()
                    .await
                    .with_context(|| format!("POST {url}: body"))?;
                if !status.is_success() {
                    bail!("POST {url}: {status}: {v}");
                }
                Ok(v)
            };
            match attempt.await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The value of `key`, or `None` when it does not exist.
    pub async fn try_get(&self, key: &str) -> Result<Option<String>> {
        let v = self
            .gateway("kv/range", json!({ "key": b64(key.as_bytes()) }))
            .await?;
        Ok(kvs(&v)?.into_iter().next().map(|(_, val)| val))
    }

    /// All `(key, value)` pairs under `prefix`, sorted by key.
    pub async fn try_get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let v = self
            .gateway(
                "kv/range",
                json!({
                    "key": b64(prefix.as_bytes()),
                    "range_end": b64(&prefix_end(prefix.as_bytes())),
                }),
            )
            .await?;
        kvs(&v)
    }

    /// Write `key` = `value` (no lease), as `etcdctl put` or `patronictl
    /// edit-config` would.
    pub async fn try_put(&self, key: &str, value: &str) -> Result<()> {
        self.gateway(
            "kv/put",
            json!({ "key": b64(key.as_bytes()), "value": b64(value.as_bytes()) }),
        )
        .await
        .map(|_| ())
    }

    /// Delete `key`; returns how many keys were deleted (0 or 1).
    pub async fn try_delete(&self, key: &str) -> Result<u64> {
        let v = self
            .gateway("kv/deleterange", json!({ "key": b64(key.as_bytes()) }))
            .await?;
        // int64 fields are JSON strings in the gateway; absent means 0.
        Ok(v["deleted"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| v["deleted"].as_u64())
            .unwrap_or(0))
    }

    /// The seconds left on the lease `key` is bound to (`None`: no such key, or
    /// not bound to a lease).
    pub async fn try_lease_ttl(&self, key: &str) -> Result<Option<i64>> {
        let v = self
            .gateway("kv/range", json!({ "key": b64(key.as_bytes()) }))
            .await?;
        let Some(lease) = v["kvs"][0]["lease"].as_str().filter(|l| *l != "0") else {
            return Ok(None);
        };
        let t = self
            .gateway("lease/timetolive", json!({ "ID": lease }))
            .await?;
        Ok(t["TTL"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| t["TTL"].as_i64()))
    }

    /// [`EtcdClient::try_get`], panicking when etcd cannot be asked.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.try_get(key)
            .await
            .unwrap_or_else(|e| panic!("etcd get {key}: {e:#}"))
    }

    /// [`EtcdClient::try_get_prefix`], panicking when etcd cannot be asked.
    pub async fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.try_get_prefix(prefix)
            .await
            .unwrap_or_else(|e| panic!("etcd get --prefix {prefix}: {e:#}"))
    }

    /// [`EtcdClient::try_put`], panicking when etcd cannot be asked.
    pub async fn put(&self, key: &str, value: &str) {
        self.try_put(key, value)
            .await
            .unwrap_or_else(|e| panic!("etcd put {key}: {e:#}"))
    }

    /// [`EtcdClient::try_delete`], panicking when etcd cannot be asked.
    pub async fn delete(&self, key: &str) -> u64 {
        self.try_delete(key)
            .await
            .unwrap_or_else(|e| panic!("etcd delete {key}: {e:#}"))
    }
}

/// Decode the `kvs` of a range response (absent when empty; values absent when empty).
fn kvs(v: &Value) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for kv in v["kvs"].as_array().into_iter().flatten() {
        let key = unb64(kv["key"].as_str().unwrap_or(""))?;
        let val = unb64(kv["value"].as_str().unwrap_or(""))?;
        out.push((
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&val).into_owned(),
        ));
    }
    Ok(out)
}

/// The etcd range end covering every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from `prefix` on.
    vec![0]
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what the gateway expects for `bytes` fields).
pub fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Inverse of [`b64`].
pub fn unb64(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()) {
        let v = match B64.iter().position(|&x| x == c) {
            Some(v) => v as u32,
            None => bail!("invalid base64 character {:?} in {s:?}", c as char),
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "/service/x/leader",
        ] {
            assert_eq!(unb64(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"f"), "Zg==");
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/service/a/"), b"/service/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }
}
