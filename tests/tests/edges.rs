//! Safety at the edges (issue 9), against real etcd and PostgreSQL: values that
//! Patroni's tools write into the `config` key must not make a paused cluster
//! forget `pause`, and no request or stored value may crash an agent.

use std::time::Duration;

use agent_tests::*;

/// Every agent process still runs.
fn assert_agents_alive(cluster: &mut ClusterFixture, after: &str) {
    for i in 0..cluster.len() {
        let alive = cluster.node_mut(i).is_running();
        assert!(
            alive,
            "agent {} died after {after}:\n{}",
            cluster.node(i).name(),
            cluster.log_tails(40)
        );
    }
}

/// The `config` key as stored, with `edit` applied, written straight to etcd (as
/// `patronictl edit-config` does: no validation by any agent).
async fn put_config_raw(cluster: &ClusterFixture, edit: impl Fn(&mut Value)) {
    let key = format!("{}config", cluster.prefix());
    let raw = cluster.kv().get(&key).await.expect("config key");
    let mut v: Value = serde_json::from_str(&raw).expect("config is JSON");
    edit(&mut v);
    cluster.kv().put(&key, &v.to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_survives_values_patroni_writes_and_a_bad_field() {
    let cluster = ClusterFixture::builder("edgepause").nodes(2).start().await;
    let p = cluster.wait_healthy().await;
    let r = 1 - p;
    // pause through the API, as `patronictl pause` does
    let (code, body) = rest_send(
        cluster.node(p),
        "PATCH",
        "/config",
        Some(&json!({"pause": true})),
    )
    .await
    .expect("answer");
    assert_eq!(code, 200, "{body}");
    for i in [p, r] {
        let n = cluster.node(i);
        wait_for(
            "pause seen",
            Duration::from_secs(15),
            Duration::from_millis(100),
            || async move { (rest_json(n, "/patroni").await?["pause"] == true).then_some(()) },
        )
        .await;
    }
    // values Patroni accepts (units, strings, quorum) next to one it cannot use
    put_config_raw(&cluster, |v| {
        v["member_slots_ttl"] = json!("30min");
        v["loop_wait"] = json!("1");
        v["synchronous_mode"] = json!("off");
        v["maximum_lag_on_failover"] = json!("a lot");
    })
    .await;
    // give the agents a few cycles to read it (the fixed agent says so in /patroni)
    let n = cluster.node(p);
    wait_for(
        "the primary to report a config warning",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            let v = rest_json(n, "/patroni").await?;
            v["config_warnings"]
                .as_array()
                .is_some_and(|w| !w.is_empty())
                .then_some(())
        },
    )
    .await;

    // Paused: a crashed primary is not restarted and nobody is promoted.
    cluster.node(p).kill_postgres();
    let c = &cluster;
    let samples = hold_for(
        "no primary while the cluster is paused",
        Duration::from_secs(10),
        Duration::from_millis(250),
        || async move {
            for i in [p, r] {
                let n = c.node(i);
                if is_in_recovery(n).await == Some(false) {
                    return Err(format!(
                        "{} is a primary although the cluster is paused:\n{}",
                        n.name(),
                        c.log_tails(40)
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    assert!(samples > 10);

    // Only the bad field is reported: in /patroni, and counted in /metrics.
    let v = rest_json(n, "/patroni").await.expect("/patroni");
    assert_eq!(v["pause"], true, "{v}");
    let warnings = v["config_warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "only the bad field is reported: {v}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap_or("")
            .starts_with("maximum_lag_on_failover:"),
        "{warnings:?}"
    );
    let metrics = rest_send(n, "GET", "/metrics", None)
        .await
        .expect("metrics")
        .1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("agent_dynamic_config_warnings") && l.ends_with(" 1")),
        "{metrics}"
    );

    // resume: the old leader's postgres comes back and leads again
    let (code, body) = rest_send(
        cluster.node(r),
        "PATCH",
        "/config",
        Some(&json!({"pause": false})),
    )
    .await
    .expect("answer");
    assert_eq!(code, 200, "{body}");
    cluster.wait_primary().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_or_stored_value_crashes_an_agent() {
    let mut cluster = ClusterFixture::builder("edgecrash").nodes(2).start().await;
    let p = cluster.wait_healthy().await;
    let r = 1 - p;
    // POST /restart with a timeout no Duration can hold
    for timeout in [json!(1e300), json!(-1), json!("1e400"), json!(f64::MAX)] {
        let ans = rest_send(
            cluster.node(r),
            "POST",
            "/restart",
            Some(&json!({"timeout": timeout.clone()})),
        )
        .await;
        let (code, body) =
            ans.unwrap_or_else(|| panic!("no answer to POST /restart timeout={timeout}"));
        assert_eq!(code, 400, "timeout {timeout}: {body}");
    }
    // PATCH /config with timings no Duration can hold is refused, naming a key
    let (code, body) = rest_send(
        cluster.node(p),
        "PATCH",
        "/config",
        Some(&json!({"loop_wait": 1e300, "ttl": 1e301})),
    )
    .await
    .expect("answer");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("ttl") || body.contains("loop_wait"), "{body}");
    // a scheduled restart far in the future is fine and can be cancelled
    let (code, body) = rest_send(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"schedule": "9999-12-31T23:59:59+00:00"})),
    )
    .await
    .expect("answer");
    assert!(code == 202 || code == 400 || code == 422, "{code} {body}");
    let _ = rest_send(cluster.node(r), "DELETE", "/restart", None).await;
    // health checks with odd query strings
    for q in [
        "/replica?lag=1e400",
        "/replica?lag=-99999999999999999999TB",
        "/read-only?lag=%ff%00",
        "/replica?tag_x=%00",
    ] {
        let _ = rest_status(cluster.node(r), q).await;
    }
    assert_agents_alive(&mut cluster, "odd requests");

    // The same timings written straight into etcd (patronictl edit-config does not
    // check): every agent keeps its last valid timings and says so.
    put_config_raw(&cluster, |v| {
        v["loop_wait"] = json!(1e300);
        v["ttl"] = json!(1e301);
        v["retry_timeout"] = json!("forever");
    })
    .await;
    for i in [p, r] {
        let n = cluster.node(i);
        wait_for(
            "the bad timings reported",
            Duration::from_secs(15),
            Duration::from_millis(100),
            || async move {
                let w = rest_json(n, "/patroni").await?["config_warnings"]
                    .as_array()?
                    .len();
                (w == 3).then_some(())
            },
        )
        .await;
    }
    // a few more cycles, then every agent still runs and the primary still leads
    let n = cluster.node(p);
    let c = &cluster;
    hold_for(
        "the primary",
        Duration::from_secs(5),
        Duration::from_millis(500),
        || async move {
            match is_in_recovery(n).await {
                Some(false) => Ok(()),
                other => Err(format!(
                    "the primary was lost ({other:?}):\n{}",
                    c.log_tails(40)
                )),
            }
        },
    )
    .await;
    assert_agents_alive(&mut cluster, "a stored config no Duration can hold");
    // and an agent started now, with that value in etcd, runs too
    cluster.node_mut(r).stop_term(Duration::from_secs(30));
    cluster.node_mut(r).start();
    let n = cluster.node(r);
    wait_for(
        "the restarted agent answers",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            rest_json(n, "/patroni")
                .await
                .filter(|v| v["state"] == "running")
        },
    )
    .await;
    assert_agents_alive(&mut cluster, "a restart with a bad stored config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_leader_publishes_its_last_wal_position_and_the_winner_logs_after_winning() {
    let mut cluster = ClusterFixture::builder("edgeleave").nodes(2).start().await;
    let p = cluster.wait_healthy().await;
    let r = 1 - p;
    // writes right before the stop: the last published optime is older than them
    execute(
        cluster.node(p),
        "CREATE TABLE IF NOT EXISTS leave(x int); INSERT INTO leave SELECT generate_series(1, 50000);",
    )
    .await
    .expect("writes");
    let rows = sql(cluster.node(p), "SELECT pg_current_wal_lsn()::text")
        .await
        .expect("lsn");
    let lsn_text: String = rows[0].get(0);
    let (hi, lo) = lsn_text.split_once('/').expect("an LSN");
    let lsn = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    cluster
        .node_mut(p)
        .stop_term(Duration::from_secs(60))
        .expect("the leader's agent stops");
    let status = cluster
        .kv()
        .get(&format!("{}status", cluster.prefix()))
        .await
        .expect("status key");
    let v: Value = serde_json::from_str(&status).expect("status JSON");
    let optime = v["optime"].as_u64().expect("optime");
    assert!(
        optime >= lsn,
        "status optime {optime} is behind the last write at {lsn} ({lsn_text}): {status}"
    );
    // the replica takes over, and says it promoted itself only after winning the key
    let n = cluster.node(r);
    wait_for(
        "the replica leads",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move { (is_in_recovery(n).await == Some(false)).then_some(()) },
    )
    .await;
    let log = std::fs::read_to_string(cluster.node(r).log_path()).expect("log");
    let won = log
        .find("acquired the leader key")
        .expect("acquired the leader key in the log");
    if let Some(said) = log.find("promoted self to leader") {
        assert!(
            won < said,
            "'promoted self to leader' logged before the key was won:\n{}",
            cluster.node(r).log_tail(40)
        );
    }
}
