//! Operating the cluster through the REST control endpoints, against real etcd
//! and PostgreSQL: switchover, failover, scheduled switchover, pause/resume,
//! restart, reinitialize, reload, config changes, Basic auth, refusals.

use std::time::{Duration, Instant};

use agent_tests::*;

const TTL: Duration = Duration::from_secs(6);

fn other(cluster: &ClusterFixture, not: &[usize]) -> usize {
    (0..cluster.len()).find(|i| !not.contains(i)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_hands_over_and_old_leader_follows_without_rewind() {
    let cluster = ClusterFixture::builder("switchover").nodes(3).start().await;
    let p = cluster.wait_healthy().await;
    let c = other(&cluster, &[p]);
    let (leader, cand) = (
        cluster.node(p).name().to_string(),
        cluster.node(c).name().to_string(),
    );
    execute(
        cluster.node(p),
        "CREATE TABLE sw (v int); INSERT INTO sw VALUES (1)",
    )
    .await
    .unwrap();

    let t0 = Instant::now();
    let (code, body) = rest_call(
        cluster.node(p),
        "POST",
        "/switchover",
        Some(&json!({"leader": leader, "candidate": cand})),
    )
    .await;
    eprintln!(
        "switchover answered after {:.2}s: {code} {body}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, format!("Successfully switched over to \"{cand}\""));
    let q = cluster.wait_primary().await;
    assert_eq!(q, c);
    // the old leader streams from the candidate, without pg_rewind, with the data
    let names = cluster.wait_streaming_replicas(c, 2).await;
    assert!(names.contains(&leader), "{names:?}");
    let log = std::fs::read_to_string(cluster.node(p).log_path()).unwrap();
    assert!(
        !log.contains("running pg_rewind"),
        "a switchover must not need pg_rewind"
    );
    let rows = sql(cluster.node(c), "SELECT count(*) FROM sw")
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    // the failover key is gone and history names the new leader
    assert_eq!(
        cluster
            .kv()
            .get(&format!("{}failover", cluster.prefix()))
            .await
            .as_deref()
            .unwrap_or("{}"),
        "{}"
    );
    let history = rest_json(cluster.node(c), "/history").await.unwrap();
    assert_eq!(
        history.as_array().unwrap().last().unwrap()[4],
        cand.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_and_failover_refusals() {
    let cluster = ClusterFixture::builder("refusals").nodes(3).start().await;
    let p = cluster.wait_healthy().await;
    let c = other(&cluster, &[p]);
    let (leader, cand) = (
        cluster.node(p).name().to_string(),
        cluster.node(c).name().to_string(),
    );
    let n = cluster.node(p);
    let cases = [
        (
            "/switchover",
            json!({"leader": cand, "candidate": leader}),
            412,
            "leader name does not match",
        ),
        (
            "/switchover",
            json!({"leader": leader, "candidate": "nobody"}),
            412,
            "candidate does not exists",
        ),
        (
            "/switchover",
            json!({"leader": leader, "candidate": leader}),
            400,
            "Switchover target and source are the same",
        ),
        (
            "/switchover",
            json!({"candidate": cand}),
            400,
            "Switchover could be performed only from a specific leader",
        ),
        (
            "/failover",
            json!({"leader": leader}),
            400,
            "Failover could be performed only to a specific candidate",
        ),
        (
            "/failover",
            json!({"candidate": leader}),
            412,
            "already the leader",
        ),
        (
            "/failover",
            json!({"candidate": cand, "scheduled_at": "2099-01-01T00:00:00+00:00"}),
            400,
            "Failover can't be scheduled",
        ),
        (
            "/switchover",
            json!({"leader": leader, "scheduled_at": "2001-01-01T00:00:00+00:00"}),
            422,
            "in the past",
        ),
        (
            "/switchover",
            json!({"leader": leader, "scheduled_at": "soon"}),
            422,
            "Unable to parse",
        ),
    ];
    for (path, body, code, msg) in cases {
        let (got, text) = rest_call(n, "POST", path, Some(&body)).await;
        assert_eq!(got, code, "{path} {body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert!(
            v["error"].as_str().unwrap_or_default().contains(msg),
            "{path} {body}: {text}"
        );
    }
    // malformed requests: 400 with a JSON reason
    for raw in ["{not json", "[1,2]", ""] {
        let resp = agent_tests::tls::http_builder()
            .build()
            .expect("http client")
            .post(format!("http://127.0.0.1:{}/switchover", n.rest_port()))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{raw:?}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"].is_string());
    }
    // nothing changed
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nofailover_candidate_is_refused() {
    let cluster = ClusterFixture::builder("nofailover_candidate")
        .nodes(2)
        .tags(1, json!({"nofailover": true}))
        .start()
        .await;
    // the tagged node never bootstraps, so node index 0 leads
    let p = cluster.wait_primary().await;
    assert_eq!(p, 0);
    cluster.wait_streaming_replicas(p, 1).await;
    cluster.wait_all_running().await;
    let tagged = cluster.node(1).name().to_string();
    let leader = cluster.node(p).name().to_string();
    let (code, text) = rest_call(
        cluster.node(p),
        "POST",
        "/switchover",
        Some(&json!({"leader": leader, "candidate": tagged})),
    )
    .await;
    assert_eq!(code, 412, "{text}");
    assert!(text.contains("nofailover"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_candidate() {
    let cluster = ClusterFixture::builder("failover_candidate")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_healthy().await;
    let c = other(&cluster, &[p]);
    let cand = cluster.node(c).name().to_string();
    let (code, body) = rest_call(
        cluster.node(c),
        "POST",
        "/failover",
        Some(&json!({"candidate": cand})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&format!("\"{cand}\"")), "{body}");
    assert_eq!(cluster.wait_primary().await, c);
    cluster.wait_streaming_replicas(c, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_switchover_fires_on_time_and_can_be_cancelled() {
    let cluster = ClusterFixture::builder("scheduled").nodes(3).start().await;
    let p = cluster.wait_healthy().await;
    let c = other(&cluster, &[p]);
    let (leader, cand) = (
        cluster.node(p).name().to_string(),
        cluster.node(c).name().to_string(),
    );

    // cancelled
    let (code, body) = rest_call(cluster.node(p), "POST", "/switchover", Some(&json!({"leader": leader, "candidate": cand, "scheduled_at": iso8601_utc(unix_now() + 30)})))
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body, "Switchover scheduled");
    let n = cluster.node(p);
    let cand2 = cand.clone();
    wait_for(
        "the scheduled switchover in /cluster",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let cand = cand2.clone();
            async move {
                let cl = rest_json(n, "/cluster").await?;
                (cl["scheduled_switchover"]["to"] == cand.as_str()).then_some(())
            }
        },
    )
    .await;
    let (code, body) = rest_call(cluster.node(p), "DELETE", "/switchover", None).await;
    assert_eq!((code, body.as_str()), (200, "scheduled switchover deleted"));
    let (code, _) = rest_call(cluster.node(p), "DELETE", "/switchover", None).await;
    assert_eq!(code, 404);

    // fires
    let fire_at = unix_now() + 4;
    let (code, body) = rest_call(
        cluster.node(p),
        "POST",
        "/switchover",
        Some(&json!({"leader": leader, "candidate": cand, "scheduled_at": iso8601_utc(fire_at)})),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    cluster
        .hold_leader(
            "no early switchover",
            Some(leader.as_str()),
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(
        cluster.leader().await.as_deref(),
        Some(leader.as_str()),
        "fired early"
    );
    cluster.wait_leader(&cand).await;
    let fired = unix_now();
    assert!(fired >= fire_at, "fired at {fired}, scheduled {fire_at}");
    assert!(fired <= fire_at + 10, "fired late: {fired} vs {fire_at}");
    cluster.wait_streaming_replicas(c, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_automation_and_resume_restores_it() {
    let cluster = ClusterFixture::builder("pause").nodes(3).start().await;
    let p = cluster.wait_healthy().await;
    let (code, body) = cluster.patch_config(p, json!({"pause": true})).await;
    assert_eq!(code, 200, "{body}");
    for i in 0..3 {
        let n = cluster.node(i);
        wait_for(
            "pause in /patroni",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async move { (rest_json(n, "/patroni").await?["pause"] == true).then_some(()) },
        )
        .await;
    }
    // a dead primary postgres is neither restarted nor failed over while paused
    let leader = cluster.leader().await;
    cluster.node(p).kill_postgres();
    let c = &cluster;
    hold_for(
        "no promotion while paused",
        TTL + Duration::from_secs(3),
        Duration::from_millis(250),
        || async move {
            for i in (0..3).filter(|i| *i != p) {
                let r = is_in_recovery(c.node(i)).await;
                if r != Some(true) {
                    return Err(format!("{}: in recovery {r:?}", c.node(i).name()));
                }
            }
            Ok(())
        },
    )
    .await;
    assert!(
        cluster.node(p).postmaster_pid().is_none(),
        "postgres restarted while paused"
    );
    let _ = leader;
    // resume: the cluster heals by itself
    let (code, body) = cluster.patch_config(p, json!({"pause": null})).await;
    assert_eq!(code, 200, "{body}");
    let q = cluster.wait_primary().await;
    cluster.wait_streaming_replicas(q, 2).await;
    assert!(rest_json(cluster.node(q), "/patroni")
        .await
        .unwrap()
        .get("pause")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_without_failover_when_the_primary_is_healthy() {
    let cluster = ClusterFixture::builder("pause_resume")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_healthy().await;
    let leader = cluster.leader().await;
    assert_eq!(cluster.patch_config(p, json!({"pause": true})).await.0, 200);
    cluster
        .hold_leader("a paused leader", leader.as_deref(), Duration::from_secs(2))
        .await;
    assert_eq!(cluster.patch_config(p, json!({"pause": null})).await.0, 200);
    cluster
        .hold_leader(
            "a resumed healthy leader",
            leader.as_deref(),
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(cluster.leader().await, leader);
    assert_eq!(cluster.wait_primary().await, p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reload_and_their_refusals() {
    let cluster = ClusterFixture::builder("restart").nodes(3).start().await;
    let p = cluster.wait_healthy().await;
    let r = other(&cluster, &[p]);
    let old_pm = cluster.node(r).postmaster_pid().unwrap();
    let (code, body) = rest_call(cluster.node(r), "POST", "/restart", Some(&json!({}))).await;
    assert_eq!((code, body.as_str()), (200, "restarted successfully"));
    assert_ne!(cluster.node(r).postmaster_pid(), Some(old_pm));
    cluster.wait_streaming_replicas(p, 2).await;

    // the primary restarts in place and keeps the key
    let leader = cluster.leader().await;
    let (code, body) = rest_call(
        cluster.node(p),
        "POST",
        "/restart",
        Some(&json!({"role": "primary"})),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "restarted successfully"));
    assert_eq!(cluster.leader().await, leader);
    assert_eq!(cluster.wait_primary().await, p);

    // filters and bad requests
    let (code, body) = rest_call(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"role": "primary"})),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("restart conditions are not satisfied"),
        "{body}"
    );
    let (code, body) = rest_call(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"restart_pending": true})),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    let (code, body) = rest_call(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"bogus": 1})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = rest_call(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"role": "king"})),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = rest_call(cluster.node(r), "DELETE", "/restart", None).await;
    assert_eq!(code, 404);
    let (code, body) = rest_call(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"schedule": iso8601_utc(unix_now() + 3600)})),
    )
    .await;
    assert_eq!((code, body.as_str()), (202, "Restart scheduled"));
    let (code, _) = rest_call(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"schedule": iso8601_utc(unix_now() + 3600)})),
    )
    .await;
    assert_eq!(code, 409);
    let (code, body) = rest_call(cluster.node(r), "DELETE", "/restart", None).await;
    assert_eq!((code, body.as_str()), (200, "scheduled restart deleted"));

    // in pause a restart may not be scheduled
    assert_eq!(cluster.patch_config(p, json!({"pause": true})).await.0, 200);
    let n = cluster.node(r);
    wait_for(
        "pause seen",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move { (rest_json(n, "/patroni").await?["pause"] == true).then_some(()) },
    )
    .await;
    let (code, body) = rest_call(
        cluster.node(r),
        "POST",
        "/restart",
        Some(&json!({"schedule": iso8601_utc(unix_now() + 60)})),
    )
    .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(cluster.patch_config(p, json!({"pause": null})).await.0, 200);

    let (code, body) = rest_call(cluster.node(p), "POST", "/reload", Some(&json!({}))).await;
    assert_eq!((code, body.as_str()), (202, "reload scheduled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinitialize_replica_and_refuse_on_leader() {
    let cluster = ClusterFixture::builder("reinit").nodes(3).start().await;
    let p = cluster.wait_healthy().await;
    let r = other(&cluster, &[p]);
    let (code, body) = rest_call(cluster.node(p), "POST", "/reinitialize", Some(&json!({}))).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("I am the leader"), "{body}");
    execute(
        cluster.node(p),
        "CREATE TABLE ri (v int); INSERT INTO ri VALUES (7)",
    )
    .await
    .unwrap();
    let old_pm = cluster.node(r).postmaster_pid();
    let (code, body) = rest_call(
        cluster.node(r),
        "POST",
        "/reinitialize",
        Some(&json!({"force": true})),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "reinitialize started"));
    let n = cluster.node(r);
    wait_for(
        "the replica to be re-cloned",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async move {
            let rows = sql(n, "SELECT count(*) FROM ri").await.ok()?;
            (rows[0].get::<_, i64>(0) == 1 && n.postmaster_pid() != old_pm).then_some(())
        },
    )
    .await;
    cluster.wait_streaming_replicas(p, 2).await;
    let log = std::fs::read_to_string(cluster.node(r).log_path()).unwrap();
    assert!(
        log.contains("reinitializing from"),
        "no reinitialize in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_everywhere_and_are_validated() {
    let cluster = ClusterFixture::builder("config").nodes(3).start().await;
    let p = cluster.wait_healthy().await;
    // the ttl rule is enforced
    let (code, body) = cluster
        .patch_config(p, json!({"ttl": 5, "loop_wait": 2}))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("ttl"), "{body}");
    let (code, _) = cluster.patch_config(p, json!({"ttl": "soon"})).await;
    assert_eq!(code, 400);
    // a reloadable parameter applies on every node within a loop or two
    let (code, body) = cluster.patch_config(p, json!({"postgresql": {"parameters": {"work_mem": "7MB"}}, "maximum_lag_on_failover": 2097152}))
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["postgresql"]["parameters"]["work_mem"], "7MB");
    assert_eq!(v["ttl"], 6, "other keys are kept: {v}");
    for i in 0..3 {
        let n = cluster.node(i);
        wait_for(
            "work_mem applied",
            Duration::from_secs(15),
            Duration::from_millis(200),
            || async move {
                let rows = sql(n, "SHOW work_mem").await.ok()?;
                (rows[0].get::<_, String>(0) == "7MB").then_some(())
            },
        )
        .await;
    }
    // one that needs a restart shows as pending_restart
    let (code, _) = cluster
        .patch_config(
            p,
            json!({"postgresql": {"parameters": {"max_connections": 60}}}),
        )
        .await;
    assert_eq!(code, 200);
    let n = cluster.node(p);
    wait_for("pending_restart in /patroni", Duration::from_secs(15), Duration::from_millis(200), || async move {
        (rest_json(n, "/patroni").await?["pending_restart"] == true).then_some(())
    })
    .await;
    // PUT replaces the whole configuration (after validation)
    let mut cfg: Value = rest_json(cluster.node(p), "/config").await.unwrap();
    cfg["loop_wait"] = json!(1);
    cfg.as_object_mut()
        .unwrap()
        .remove("maximum_lag_on_failover");
    let (code, body) = rest_call(cluster.node(p), "PUT", "/config", Some(&cfg.clone())).await;
    assert_eq!(code, 200, "{body}");
    let cfg = &cfg;
    wait_for(
        "the new config in GET /config",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move { (rest_json(n, "/config").await.as_ref() == Some(cfg)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_need_basic_auth() {
    let cluster = ClusterFixture::builder("auth")
        .nodes(1)
        .configure(|_, cfg| {
            cfg["restapi"]["authentication"] = json!({"username": "admin", "password": "s3cret"});
        })
        .start()
        .await;
    let p = cluster.wait_primary().await;
    let n = cluster.node(p);
    assert_eq!(rest_status(n, "/patroni").await, Some(200));
    for (method, path) in [
        ("POST", "/restart"),
        ("PATCH", "/config"),
        ("POST", "/switchover"),
        ("DELETE", "/restart"),
        ("POST", "/reload"),
    ] {
        let (code, body) = rest_send_as(n, method, path, Some(&json!({})), None)
            .await
            .unwrap();
        assert_eq!(code, 401, "{method} {path}: {body}");
        let (code, _) = rest_send_as(n, method, path, Some(&json!({})), Some(("admin", "wrong")))
            .await
            .unwrap();
        assert_eq!(code, 401, "{method} {path} with a wrong password");
    }
    let (code, body) = rest_send_as(
        n,
        "POST",
        "/reload",
        Some(&json!({})),
        Some(("admin", "s3cret")),
    )
    .await
    .unwrap();
    assert_eq!((code, body.as_str()), (202, "reload scheduled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rereads_the_configuration_file() {
    let mut cluster = ClusterFixture::builder("reload_file")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_healthy().await;
    let r = other(&cluster, &[p]);
    assert_eq!(rest_status(cluster.node(r), "/replica").await, Some(200));
    // edit the replica's file: a tag and a local parameter, then POST /reload
    let mut cfg = cluster.node(r).config().clone();
    cfg["tags"]["noloadbalance"] = json!(true);
    cfg["postgresql"]["parameters"]["work_mem"] = json!("9MB");
    cluster.node_mut(r).write_config(cfg.clone());
    let (code, body) = rest_call(cluster.node(r), "POST", "/reload", Some(&json!({}))).await;
    assert_eq!((code, body.as_str()), (202, "reload scheduled"));
    let n = cluster.node(r);
    wait_for(
        "the new tag and parameter",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async move {
            let tags = rest_json(n, "/patroni").await?["tags"].clone();
            let wm = sql(n, "SHOW work_mem").await.ok()?[0].get::<_, String>(0);
            (tags["noloadbalance"] == true && wm == "9MB").then_some(())
        },
    )
    .await;
    assert_eq!(
        rest_status(cluster.node(r), "/replica").await,
        Some(503),
        "noloadbalance keeps it out of /replica"
    );
    // SIGHUP does the same
    cfg["postgresql"]["parameters"]["work_mem"] = json!("10MB");
    cluster.node_mut(r).write_config(cfg);
    let pid = cluster.node(r).pid().unwrap() as i32;
    agent_tests::proc::signal(pid, nix::sys::signal::Signal::SIGHUP);
    let n = cluster.node(r);
    wait_for(
        "work_mem after SIGHUP",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async move {
            (sql(n, "SHOW work_mem").await.ok()?[0].get::<_, String>(0) == "10MB").then_some(())
        },
    )
    .await;
}
