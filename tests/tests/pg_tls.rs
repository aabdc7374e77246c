//! The postgres links over TLS: a cluster whose `pg_hba` lets the replication and
//! rewind users in only over `hostssl`, with `postgresql.authentication.*.sslmode`
//! `verify-full`/`verify-ca` and a test CA. It bootstraps, clones (pg_basebackup),
//! streams (`primary_conninfo`), fails over, and the old primary rewinds
//! (pg_rewind, after the agent's own TLS connection asks the new primary for a
//! checkpoint) and rejoins. Passwords reach libpq through the passfile only.
//!
//! The harness's own SQL connections are plain TCP as `postgres`, so `pg_hba`
//! keeps one `hostnossl` line for that user; the agent's superuser connections are
//! shown to be TLS by postgres' `log_connections` lines.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use agent_tests::*;

const WAIT: Duration = Duration::from_secs(120);

async fn write_row(node: &Node, v: i64) {
    execute(
        node,
        &format!("CREATE TABLE IF NOT EXISTS t (v bigint); INSERT INTO t VALUES ({v})"),
    )
    .await
    .unwrap_or_else(|e| panic!("insert {v} on {}: {e:#}", node.name()));
}

async fn wait_row(node: &Node, v: i64) {
    wait_for(
        &format!("row {v} on {}", node.name()),
        WAIT,
        Duration::from_millis(200),
        || async move {
            let rows = sql(node, &format!("SELECT 1 FROM t WHERE v = {v}"))
                .await
                .ok()?;
            (!rows.is_empty()).then_some(())
        },
    )
    .await
}

/// How many of the primary's walsenders run over TLS, and how many there are.
async fn walsenders_tls(node: &Node) -> (i64, i64) {
    let rows = sql(
        node,
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) \
         FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
    )
    .await
    .unwrap();
    (rows[0].get(0), rows[0].get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostssl_only_cluster_replicates_fails_over_and_rewinds() {
    let certs = TestDir::new("pg-tls-certs");
    let ca = TestCa::new(certs.path(), "ca");
    let server = ca.issue("postgres-server");
    let root = ca.cert().to_path_buf();
    let mut cluster = ClusterFixture::builder("pg_tls")
        .nodes(2)
        .configure(move |_, c| {
            let pg = &mut c["postgresql"];
            pg["parameters"]["ssl"] = json!("on");
            pg["parameters"]["ssl_cert_file"] = json!(server.cert);
            pg["parameters"]["ssl_key_file"] = json!(server.key);
            pg["parameters"]["log_connections"] = json!("on");
            pg["pg_hba"] = json!([
                "local all all trust",
                "hostssl replication replicator 127.0.0.1/32 scram-sha-256",
                "hostssl all all 127.0.0.1/32 scram-sha-256",
                // the test harness's own plain connections
                "hostnossl all postgres 127.0.0.1/32 scram-sha-256",
            ]);
            let auth = &mut pg["authentication"];
            for (user, mode) in [
                ("superuser", "verify-full"),
                ("replication", "verify-full"),
                ("rewind", "verify-ca"),
            ] {
                auth[user]["sslmode"] = json!(mode);
                auth[user]["sslrootcert"] = json!(root);
            }
        })
        .start()
        .await;
    let p = cluster.wait_primary().await;
    cluster.wait_streaming_replicas(p, 1).await;
    let r = 1 - p;
    assert_eq!(walsenders_tls(cluster.node(p)).await, (1, 1));
    write_row(cluster.node(p), 1).await;
    wait_row(cluster.node(r), 1).await;

    // The replica's primary_conninfo names the passfile, never the password.
    let conf = std::fs::read_to_string(cluster.node(r).data_dir().join("postgresql.conf")).unwrap();
    assert!(!conf.contains("rep-pass"), "{conf}");
    assert!(conf.contains("passfile="), "{conf}");
    assert!(conf.contains("sslmode=verify-full"), "{conf}");
    let pgpass = cluster.node(r).dir().join("pgpass");
    let mode = std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", pgpass.display());

    // Failover, then the old primary rewinds and rejoins, all over TLS. The
    // replica's WAL receiver is frozen while the primary writes one more row, so
    // the old primary's timeline runs past the promotion point and a rewind is
    // needed (without it the old primary may end exactly where the new one
    // forked, and rejoin without one).
    let wr = cluster
        .node(r)
        .walreceiver_pid()
        .expect("walreceiver of the replica");
    assert!(agent_tests::proc::signal(
        wr,
        nix::sys::signal::Signal::SIGSTOP
    ));
    write_row(cluster.node(p), 3).await;
    cluster.node_mut(p).kill_all();
    assert!(agent_tests::proc::signal(
        wr,
        nix::sys::signal::Signal::SIGCONT
    ));
    let q = wait_for("node1 primary", WAIT, Duration::from_millis(200), || {
        let node = cluster.node(r);
        async move { (is_in_recovery(node).await == Some(false)).then_some(r) }
    })
    .await;
    write_row(cluster.node(q), 2).await;
    cluster.node_mut(p).start();
    cluster.wait_streaming_replicas(q, 1).await;
    wait_row(cluster.node(p), 2).await;
    assert_eq!(walsenders_tls(cluster.node(q)).await, (1, 1));
    let log = std::fs::read_to_string(cluster.node(p).log_path()).unwrap();
    assert!(
        log.contains("running pg_rewind from"),
        "the old primary did not run pg_rewind"
    );
    // The agent's own TCP connection (the checkpoint before pg_rewind) used TLS.
    let new_primary_log = std::fs::read_to_string(cluster.node(q).log_path()).unwrap();
    assert!(
        new_primary_log
            .lines()
            .any(|l| l.contains("application_name=agent SSL enabled")),
        "no TLS connection from the agent in {}'s log",
        cluster.node(q).name()
    );
}
