//! etcd over TLS, end to end: a real etcd with a test CA, agents and agentctl
//! configured with Patroni's `etcd3.protocol: https`, `cacert`, `cert`, `key`
//! (and `username`/`password`).
//!
//! - `client_cert_only`: etcd with `--client-cert-auth`; the agents authenticate by
//!   certificate alone. The cluster bootstraps and replicates, `agentctl list`
//!   works over TLS, and a client trusting another CA fails with a clear error.
//! - `tls_and_password`: etcd with TLS and its own authentication (`root` user,
//!   `auth enable`); the agents log in with `etcd3.username`/`password`, given
//!   through `PATRONI_ETCD3_*` variables for agentctl.

use std::path::Path;

use agent_tests::*;

async fn healthy(cluster: &ClusterFixture) -> usize {
    let p = cluster.wait_primary().await;
    cluster.wait_streaming_replicas(p, cluster.len() - 1).await;
    p
}

/// `agentctl list -f json` names every member.
async fn list_works(ctl: &Cli, cluster: &ClusterFixture) {
    let run = ctl.run(&["list", "-f", "json"]).await;
    run.assert_success();
    for name in cluster.names() {
        assert!(
            run.stdout.contains(&format!("\"{name}\"")),
            "{name} missing\n{run}"
        );
    }
}

/// A copy of `config` (JSON) at `path` with `etcd3.cacert` replaced.
fn with_cacert(config: &Value, cacert: &Path, path: &Path) {
    let mut c = config.clone();
    c["etcd3"]["cacert"] = json!(cacert);
    std::fs::write(path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_only() {
    let certs = TestDir::new("etcd-tls-certs");
    let ca = TestCa::new(certs.path(), "ca");
    let server = ca.issue("etcd-server");
    let client = ca.issue("agent");
    let tls = EtcdServerTls {
        ca: ca.cert().to_path_buf(),
        server,
        client_cert_auth: true,
    };
    let (cacert, cert, key) = (ca.cert().to_path_buf(), client.cert, client.key);
    let cluster = ClusterFixture::builder("etcd_tls_cert")
        .nodes(2)
        .etcd_tls(tls)
        .configure(move |_, c| {
            c["etcd3"]["protocol"] = json!("https");
            c["etcd3"]["cacert"] = json!(cacert);
            c["etcd3"]["cert"] = json!(cert);
            c["etcd3"]["key"] = json!(key);
        })
        .start()
        .await;
    healthy(&cluster).await;
    let node = cluster.node(0);
    list_works(&Cli::agentctl(node.config_path()), &cluster).await;

    // A client that trusts another CA refuses etcd's certificate, and says so.
    let other = TestCa::new(certs.path(), "other-ca");
    let wrong = certs.path().join("wrong-ca.yml");
    with_cacert(node.config(), other.cert(), &wrong);
    let run = Cli::agentctl(&wrong).run(&["list"]).await;
    run.assert_failure();
    let out = run.output();
    assert!(
        out.contains("certificate") && out.contains("etcd3.cacert"),
        "the error names the certificate problem and the key\n{run}"
    );

    // Without a client certificate etcd refuses the connection; agentctl says so and
    // exits 1 (it used to die of SIGPIPE when etcd closed the TLS connection).
    let mut anon = node.config().clone();
    anon["etcd3"].as_object_mut().unwrap().remove("cert");
    anon["etcd3"].as_object_mut().unwrap().remove("key");
    let anon_path = certs.path().join("no-client-cert.yml");
    std::fs::write(&anon_path, serde_json::to_string_pretty(&anon).unwrap()).unwrap();
    let run = Cli::agentctl(&anon_path).run(&["list"]).await;
    run.assert_code(1);
    // (the refused handshake, or the retries running out: tonic reconnects quietly)
    assert!(run.output().contains("etcd is not available"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_password() {
    const ROOT_PASSWORD: &str = "etcd-root-Pw-7313";
    let certs = TestDir::new("etcd-tls-pw-certs");
    let ca = TestCa::new(certs.path(), "ca");
    let tls = EtcdServerTls {
        ca: ca.cert().to_path_buf(),
        server: ca.issue("etcd-server"),
        client_cert_auth: false,
    };
    let cacert = ca.cert().to_path_buf();
    let cluster = ClusterFixture::builder("etcd_tls_pw")
        .nodes(2)
        .etcd_tls(tls)
        .etcd_auth(ROOT_PASSWORD)
        .configure(move |_, c| {
            c["etcd3"]["protocol"] = json!("https");
            c["etcd3"]["cacert"] = json!(cacert);
            c["etcd3"]["username"] = json!("root");
            c["etcd3"]["password"] = json!(ROOT_PASSWORD);
        })
        .start()
        .await;
    healthy(&cluster).await;

    // agentctl with the TLS settings and the credentials from PATRONI_ETCD3_*.
    let bare = certs.path().join("ctl.yml");
    std::fs::write(
        &bare,
        format!(
            "scope: {}\netcd3:\n  hosts: {}\n",
            cluster.scope(),
            cluster.etcd().endpoint()
        ),
    )
    .unwrap();
    let ctl = Cli::agentctl(&bare)
        .env("PATRONI_ETCD3_PROTOCOL", "https")
        .env("PATRONI_ETCD3_CACERT", &ca.cert().display().to_string())
        .env("PATRONI_ETCD3_USERNAME", "root")
        .env("PATRONI_ETCD3_PASSWORD", ROOT_PASSWORD);
    list_works(&ctl, &cluster).await;

    // A wrong password is refused by etcd.
    let wrong = ctl.env("PATRONI_ETCD3_PASSWORD", "not-the-password");
    let run = wrong.run(&["list"]).await;
    run.assert_failure();
    assert!(
        run.output().contains("authentication failed"),
        "etcd's refusal is shown\n{run}"
    );
}
