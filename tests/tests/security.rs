//! The REST API's protections on real processes: HTTPS with a test CA, client
//! certificates, the allowlist, certificate reload, agentctl over HTTPS, and a
//! bounded load test (idle connections + a flood of `GET /patroni`) that must not
//! stop lease renewal or health checks.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use agent_tests::client::rest_url;
use agent_tests::*;

/// The REST API's server certificate (CN `localhost`) and agentctl's client
/// certificate, both from `ca`.
fn api_certs(ca: &TestCa) -> (CertPair, CertPair) {
    (ca.issue("localhost"), ca.issue("agent-tests-client"))
}

fn https_config(
    ca: &TestCa,
    server: &CertPair,
    client: &CertPair,
    verify_client: &str,
) -> impl Fn(usize, &mut Value) + Send + Sync + 'static {
    let (ca, server, client) = (ca.cert().to_path_buf(), server.clone(), client.clone());
    let verify_client = verify_client.to_string();
    move |_, cfg: &mut Value| {
        cfg["restapi"]["certfile"] = json!(server.cert);
        cfg["restapi"]["keyfile"] = json!(server.key);
        cfg["restapi"]["cafile"] = json!(ca);
        cfg["restapi"]["verify_client"] = json!(verify_client);
        cfg["ctl"] = json!({"cacert": ca, "certfile": client.cert, "keyfile": client.key});
    }
}

/// POST `path` with `client`; the status and body.
async fn post(client: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    let r = client
        .post(url)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default()))
}

/// The certificate the server presented on a new connection.
async fn presented_cert(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = client.get(url).send().await.expect("GET over HTTPS");
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_client_certificates_allowlist_and_reload() {
    let certs_dir = TestDir::new("https-api-certs");
    let ca = TestCa::new(certs_dir.path(), "ca");
    let (server, client) = api_certs(&ca);
    let mut cluster = ClusterFixture::builder("https_api")
        .nodes(1)
        .configure(https_config(&ca, &server, &client, "optional"))
        .configure(|_, cfg| cfg["restapi"]["allowlist"] = json!(["127.0.0.1/32"]))
        .start()
        .await;
    let p = cluster.wait_primary().await;
    let node = cluster.node(p);
    assert!(rest_url(node, "/x").starts_with("https://"));
    let port = node.rest_port();
    let url = move |path: &str| format!("https://127.0.0.1:{port}{path}");
    let scope = cluster.scope().to_string();

    // The member key advertises https.
    let members = rest_json(node, "/cluster").await.expect("GET /cluster");
    let api_url = members["members"][0]["api_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(api_url.starts_with("https://"), "{members}");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = tls::http_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://127.0.0.1:{}/primary", node.rest_port()))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP answered: {r:?}");

    // verify_client optional: safe methods without a certificate, unsafe ones need one.
    let anon = ca.client(None, None);
    let with_cert = ca.client(Some(&client), None);
    assert_eq!(
        anon.get(url("/primary")).send().await.unwrap().status(),
        200
    );
    let (status, body) = post(&anon, &url("/reload")).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("client certificate required"), "{body}");
    let (status, body) = post(&with_cert, &url("/reload")).await.unwrap();
    assert!(
        status < 300,
        "POST /reload with a client certificate: {status} {body}"
    );

    // The allowlist (127.0.0.1/32) refuses another loopback address.
    let other = ca.client(Some(&client), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    let (status, body) = post(&other, &url("/reload")).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Access is denied"), "{body}");
    assert_eq!(
        other.get(url("/primary")).send().await.unwrap().status(),
        200,
        "safe methods stay open"
    );

    // agentctl over HTTPS: ctl.cacert + client certificate from the node's own file.
    let ctl = Cli::agentctl(node.config_path());
    ctl.run(&["reload", &scope, "--force"])
        .await
        .assert_success();
    // Without a CA to trust, agentctl refuses the server's certificate ...
    let untrusting = cluster.dir().path().join("ctl-no-ca.yml");
    let mut cfg = node.config().clone();
    cfg["ctl"] = json!({});
    cfg["restapi"]["cafile"] = Value::Null;
    cfg["restapi"]["verify_client"] = json!("none");
    std::fs::write(&untrusting, serde_json::to_string(&cfg).unwrap()).unwrap();

    // Renew the server certificate, drop client-certificate checks, reload.
    let before = presented_cert(&anon, &url("/primary")).await;
    assert_eq!(before, server.der());
    let renewed = ca.issue("localhost").der();
    assert_ne!(before, renewed);
    let mut cfg = cluster.node(p).config().clone();
    cfg["restapi"]["verify_client"] = json!("none");
    cluster.node_mut(p).write_config(cfg);
    let (status, body) = post(&with_cert, &url("/reload")).await.unwrap();
    assert!(status < 300, "{status} {body}");
    wait_for(
        "the renewed certificate on a new connection",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let anon = ca.client(None, None);
            let url = url("/primary");
            let renewed = renewed.clone();
            async move { (presented_cert(&anon, &url).await == renewed).then_some(()) }
        },
    )
    .await;
    let anon = ca.client(None, None);
    let (status, body) = post(&anon, &url("/reload")).await.unwrap();
    assert!(
        status < 300,
        "verify_client none: no certificate needed: {status} {body}"
    );

    // agentctl: no CA -> refused; -k -> accepted.
    let r = Cli::agentctl(&untrusting)
        .run(&["reload", &scope, "--force"])
        .await;
    r.assert_failure();
    Cli::agentctl(&untrusting)
        .run(&["-k", "reload", &scope, "--force"])
        .await
        .assert_success();

    // verify_client required: the handshake itself needs a certificate.
    let mut cfg = cluster.node(p).config().clone();
    cfg["restapi"]["verify_client"] = json!("required");
    cluster.node_mut(p).write_config(cfg);
    let with_cert = ca.client(Some(&client), None);
    post(&with_cert, &url("/reload")).await.unwrap();
    wait_for(
        "GET without a client certificate refused",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let anon = ca.client(None, None);
            let url = url("/primary");
            async move { anon.get(url).send().await.is_err().then_some(()) }
        },
    )
    .await;
    let with_cert = ca.client(Some(&client), None);
    assert_eq!(
        with_cert
            .get(url("/primary"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Raise this process's open-file limit to the hard limit (1,000 held
/// connections need more than the usual 1,024 descriptors).
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard
}

/// How many of `conns` the server has not closed.
fn count_open(conns: &[tokio::net::TcpStream]) -> usize {
    conns
        .iter()
        .filter(|s| {
            let mut buf = [0u8; 1];
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

/// 1,000 idle connections and a flood of `GET /patroni` for 10 s against the
/// leader's API: health checks keep answering, the leader lease keeps being
/// renewed, and postgres keeps accepting the agent. Prints the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_flood_do_not_stop_the_leader() {
    const IDLE: usize = 1000;
    const FLOODERS: usize = 16;
    const FLOOD: Duration = Duration::from_secs(10);
    let nofile = raise_fd_limit();
    assert!(
        nofile as usize > IDLE + 200,
        "open-file hard limit {nofile} too low for the test"
    );
    let cluster = ClusterFixture::builder("api_flood").nodes(1).start().await;
    let p = cluster.wait_primary().await;
    let node = cluster.node(p);
    let leader_key = format!("{}leader", cluster.prefix());
    let ttl = 6i64; // the builder's default
    let loop_wait = 1i64;
    let leader = cluster.kv().get(&leader_key).await.expect("leader key");
    let port = node.rest_port();

    // 1. The idle clients: connected, never sending a byte.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("idle connection"),
        );
    }

    let deadline = tokio::time::Instant::now() + FLOOD;
    // 2. The flood: keep-alive clients asking GET /patroni as fast as answered.
    let mut flood = Vec::new();
    for _ in 0..FLOODERS {
        flood.push(tokio::spawn(async move {
            let client = tls::http_builder()
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()
                .unwrap();
            let (mut ok, mut not_running, mut failed) = (0u64, 0u64, 0u64);
            while tokio::time::Instant::now() < deadline {
                match client
                    .get(format!("http://127.0.0.1:{port}/patroni"))
                    .send()
                    .await
                {
                    Ok(r) => match r.json::<Value>().await {
                        Ok(v) if v["state"] == "running" => ok += 1,
                        Ok(_) => not_running += 1,
                        Err(_) => failed += 1,
                    },
                    Err(_) => failed += 1,
                }
            }
            (ok, not_running, failed)
        }));
    }
    // 3. Health checks on new connections, and the lease, sampled meanwhile.
    let (mut checks, mut check_failures) = (0u32, Vec::new());
    let (mut min_ttl, mut danger) = (i64::MAX, 0u32);
    let mut leader_changes = 0u32;
    let mut pg_refusals = 0u32;
    let midpoint = deadline - FLOOD / 2;
    let mut open_at_midpoint = None;
    while tokio::time::Instant::now() < deadline {
        if open_at_midpoint.is_none() && tokio::time::Instant::now() >= midpoint {
            open_at_midpoint = Some(count_open(&idle));
        }
        let fresh = tls::http_builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        checks += 1;
        match fresh
            .get(format!("http://127.0.0.1:{port}/primary"))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {}
            other => check_failures.push(format!("{other:?}")),
        }
        if let Ok(Some(t)) = cluster.kv().try_lease_ttl(&leader_key).await {
            min_ttl = min_ttl.min(t);
            // More than two loop_waits since the last renewal.
            if t < ttl - 2 * loop_wait - 1 {
                danger += 1;
            }
        }
        if cluster.kv().get(&leader_key).await.as_deref() != Some(leader.as_str()) {
            leader_changes += 1;
        }
        if sql(node, "SELECT 1").await.is_err() {
            pg_refusals += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut ok, mut not_running, mut failed) = (0, 0, 0);
    for f in flood {
        let (a, b, c) = f.await.expect("flooder");
        ok += a;
        not_running += b;
        failed += c;
    }
    let still_open = count_open(&idle);
    let open_at_midpoint = open_at_midpoint.unwrap_or(0);
    let status = rest_json(node, "/patroni")
        .await
        .expect("GET /patroni after the flood");
    println!(
        "LOAD TEST: {IDLE} idle connections opened, {open_at_midpoint} still held halfway through the flood, {still_open} at its end (the server closes a connection without a request head after 10 s); \
         {FLOODERS} clients flooding GET /patroni: {ok} answered 'running' ({:.0}/s), {not_running} other state, {failed} failed; \
         health checks GET /primary on new connections: {checks} sent, {} failed; \
         leader lease: lowest remaining TTL {min_ttl} s of {ttl} s, renewals missed (TTL < ttl - 2 x loop_wait - 1): {danger}; \
         leader changes: {leader_changes}; test's own postgres connections refused: {pg_refusals}",
        ok as f64 / FLOOD.as_secs_f64(),
        check_failures.len(),
    );
    drop(idle);
    assert!(
        check_failures.is_empty(),
        "health checks failed: {check_failures:?}"
    );
    assert_eq!(
        danger, 0,
        "the leader lease was not renewed in time (lowest TTL {min_ttl})"
    );
    assert_eq!(leader_changes, 0);
    assert_eq!(
        pg_refusals, 0,
        "postgres refused connections during the flood"
    );
    assert!(ok > 0, "no GET /patroni was answered");
    assert_eq!(
        not_running, 0,
        "GET /patroni saw postgres not answering the agent"
    );
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["role"], "primary", "{status}");
}

/// Patroni's own patronictl against an HTTPS cluster (ctl.cacert + client
/// certificate, `verify_client: optional`), and HAProxy health-checking the
/// REST APIs with `check-ssl verify required ca-file`: :5000 follows the
/// primary through a switchover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patronictl_and_haproxy_over_https() {
    let certs_dir = TestDir::new("https-cluster-certs");
    let ca = TestCa::new(certs_dir.path(), "ca");
    let (server, client) = api_certs(&ca);
    let cluster = ClusterFixture::builder("https_cluster")
        .nodes(2)
        .configure(https_config(&ca, &server, &client, "optional"))
        .start()
        .await;
    let p = cluster.wait_primary().await;
    cluster.wait_streaming_replicas(p, 1).await;
    let c = 1 - p;
    let (leader, cand) = (
        cluster.node(p).name().to_string(),
        cluster.node(c).name().to_string(),
    );
    let ca = ca.cert().display().to_string();
    let haproxy =
        HaproxyFixture::start_with(&cluster, &["--check-ssl", "required", "--ca-file", &ca]);
    let config = std::fs::read_to_string(haproxy.config_path()).unwrap();
    assert!(
        config.contains("check-ssl verify required ca-file"),
        "{config}"
    );
    haproxy
        .wait_up("primary", &[&leader], Duration::from_secs(60))
        .await;
    assert_eq!(is_in_recovery(&haproxy.primary_port()).await, Some(false));

    let ctl = Cli::patronictl(cluster.node(0).config_path());
    let scope = cluster.scope().to_string();
    wait_for_result(
        "patronictl list to show a leader and a streaming replica",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let ctl = &ctl;
            async move {
                let run = ctl.run(&["list", "-f", "json"]).await;
                let ok = run.code == Some(0)
                    && run.stdout.contains("\"Leader\"")
                    && run.stdout.contains("streaming");
                if ok {
                    Ok(())
                } else {
                    Err(run.to_string())
                }
            }
        },
    )
    .await;
    // patronictl posts the switchover to the leader's https api_url, trusting
    // ctl.cacert and presenting ctl.certfile (required for unsafe methods here).
    ctl.switchover(Some(&scope), &leader, &cand).await;
    assert_eq!(cluster.wait_primary().await, c);
    haproxy
        .wait_up("primary", &[&cand], Duration::from_secs(60))
        .await;
    assert_eq!(is_in_recovery(&haproxy.primary_port()).await, Some(false));
}

/// Fail closed: an agent whose REST API key cannot be used (an encrypted key with
/// the wrong password) does not start (no plain-HTTP fallback), and says which
/// key is wrong; with the right `keyfile_password` it serves HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_certificate_stops_the_start() {
    let certs_dir = TestDir::new("bad-cert-certs");
    let ca = TestCa::new(certs_dir.path(), "ca");
    let (server, client) = api_certs(&ca);
    let encrypted = certs_dir.path().join("encrypted.key");
    let status = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
            "-in",
        ])
        .arg(&server.key)
        .arg("-out")
        .arg(&encrypted)
        .status()
        .expect("openssl pkcs8");
    assert!(status.success());
    // Readable by the agent (it runs as postgres): the failure must be the password.
    agent_tests::proc::chown_to_postgres(&encrypted);
    let enc = encrypted.clone();
    let mut cluster = ClusterFixture::builder("bad_cert")
        .nodes(1)
        .configure(https_config(&ca, &server, &client, "none"))
        .configure(move |_, cfg| {
            cfg["restapi"]["keyfile"] = json!(enc);
            cfg["restapi"]["keyfile_password"] = json!("not the password");
        })
        .start()
        .await;
    let node = cluster.node_mut(0);
    wait_for(
        "the agent to exit",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let running = node.is_running();
            async move { (!running).then_some(()) }
        },
    )
    .await;
    let log = node.log_tail(20);
    assert!(
        log.contains("restapi.keyfile:") && log.contains("cannot decrypt"),
        "{log}"
    );
    assert!(
        !node.data_dir().join("PG_VERSION").exists(),
        "postgres was set up anyway"
    );

    let mut config = node.config().clone();
    config["restapi"]["keyfile_password"] = json!("secret");
    node.write_config(config);
    node.start();
    let p = cluster.wait_primary().await;
    assert_eq!(p, 0);
}
