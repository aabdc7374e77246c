//! Patroni's own `patronictl` against a cluster of our agents (issue 3,
//! "Compatibility with patronictl"): each verb must succeed and leave the
//! cluster as patronictl says, checked through our REST API, etcd, postmaster
//! pids and SQL.
//!
//! patronictl is found through `PATRONICTL` or at `/opt/patroni-venv/bin/patronictl`
//! (`.ci/run` installs it there); when it is missing the test fails and says
//! how to install it. It runs as whoever runs the tests (root in CI): it is only
//! a client. The REST APIs require Basic auth, which patronictl takes from the
//! node's `restapi.authentication`, as a Patroni user's setup would.

use std::time::Duration;

use agent_tests::*;

const AUTH: (&str, &str) = ("patroni", "patronictl-secret");

/// Wait until every node's `/patroni` shows `pause` as `paused`.
async fn wait_pause_seen(cluster: &ClusterFixture, paused: bool) {
    for n in cluster.nodes() {
        let what = format!("pause={paused} in /patroni of {}", n.name());
        wait_for(
            &what,
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async move {
                let v = rest_json(n, "/patroni").await?;
                ((v["pause"] == true) == paused).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patronictl_operates_a_cluster_of_agents() {
    // Fail before starting anything when patronictl is not installed.
    let patronictl = patronictl_path();
    eprintln!("using {}", patronictl.display());

    let cluster = ClusterFixture::builder("patronictl")
        .configure(|_, cfg| {
            cfg["restapi"]["authentication"] = json!({"username": AUTH.0, "password": AUTH.1});
        })
        .start()
        .await;
    let p = cluster.wait_formed().await;
    cluster.wait_all_running().await;
    let scope = cluster.scope().to_string();
    let leader = cluster.node(p).name().to_string();
    let c = (0..3).find(|i| *i != p).unwrap();
    let cand = cluster.node(c).name().to_string();
    // patronictl reads the node's own configuration file, as it would Patroni's
    let ctl = Cli::patronictl(cluster.node(0).config_path());
    // the unsafe methods patronictl uses need the credentials it reads from the file
    let (code, _) = rest_send_as(cluster.node(p), "POST", "/reload", None, None)
        .await
        .unwrap();
    assert_eq!(code, 401);
    let sysid = cluster
        .kv()
        .get(&format!("{}initialize", cluster.prefix()))
        .await
        .unwrap();

    // ---- list
    ctl.wait_list_settled(&leader, 1).await;
    let run = ctl.run(&["list"]).await;
    run.assert_success();
    let tables = parse_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{run}");
    let t = &tables[0];
    assert!(
        t.title
            .starts_with(&format!("+ Cluster: {scope} ({sysid}) ")),
        "{run}"
    );
    assert_eq!(t.rows.len(), 3, "{run}");
    for (i, n) in cluster.nodes().iter().enumerate() {
        let row = t
            .row_where("Member", n.name())
            .unwrap_or_else(|| panic!("no row for {}\n{run}", n.name()));
        let (role, state) = if i == p {
            ("Leader", "running")
        } else {
            ("Replica", "streaming")
        };
        assert_eq!(t.cell(row, "Role"), role, "{run}");
        assert_eq!(t.cell(row, "State"), state, "{run}");
        assert_eq!(t.cell(row, "TL"), "1", "{run}");
        assert_eq!(
            t.cell(row, "Host"),
            format!("127.0.0.1:{}", n.pg_port()),
            "{run}"
        );
    }
    // the same picture as our own agentctl's (positions aside: WAL moves on)
    let ours = Cli::agentctl(cluster.node(0).config_path())
        .run(&["list"])
        .await;
    ours.assert_success();
    let stable = |t: &TextTable| -> (String, Vec<String>, Vec<Vec<String>>) {
        let cols = ["Member", "Host", "Role", "State", "TL"];
        let rows = t
            .rows
            .iter()
            .map(|r| cols.iter().map(|c| t.cell(r, c).to_string()).collect())
            .collect();
        // the rule after the title is as wide as the columns
        let title = t.title.split(") ").next().unwrap_or_default().to_string();
        (title, t.columns.clone(), rows)
    };
    let theirs = stable(t);
    assert_eq!(
        stable(&parse_tables(&ours.stdout)[0]),
        theirs,
        "{ours}\n{run}"
    );
    ctl.run(&["topology"]).await.assert_success();
    ctl.run(&["show-config"])
        .await
        .assert_success()
        .assert_stdout_contains("ttl: 6\n");
    ctl.run(&["dsn"])
        .await
        .assert_success()
        .assert_stdout_contains(&format!("port={}", cluster.node(p).pg_port()));
    let run = ctl.run(&["version", &scope]).await;
    run.assert_success();
    for n in cluster.nodes() {
        run.assert_stdout_contains(&format!("{}: Patroni ", n.name()));
    }

    // ---- restart every member (the leader keeps its key). Done on timeline 1:
    // after a timeline change a leader restart makes replicas restart too (see
    // ctl.rs, switchover_failover_and_their_refusals), which would refuse
    // patronictl's next request with 503.
    let before: Vec<i32> = cluster
        .nodes()
        .iter()
        .map(|n| n.postmaster_pid().expect("postgres runs"))
        .collect();
    let run = ctl.run(&["restart", &scope, "--force"]).await;
    run.assert_success();
    for n in cluster.nodes() {
        run.assert_stdout_contains(&format!("Success: restart on member {}", n.name()));
    }
    for (i, n) in cluster.nodes().iter().enumerate() {
        let old = before[i];
        let what = format!("a new postmaster on {}", n.name());
        wait_for(
            &what,
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async move { n.postmaster_pid().filter(|pid| *pid != old) },
        )
        .await;
    }
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));
    assert_eq!(cluster.wait_primary().await, p);
    cluster.wait_streaming_replicas(p, 2).await;

    // ---- a scheduled restart, then flushed
    let at = iso8601_utc(unix_now() + 3600);
    let run = ctl
        .run(&["restart", &scope, &cand, "--scheduled", &at, "--force"])
        .await;
    run.assert_success()
        .assert_stdout_contains(&format!("Success: restart scheduled on member {cand}"));
    cluster
        .wait_member(&cand, "a scheduled restart", |m| {
            m["scheduled_restart"]["schedule"].is_string()
        })
        .await;
    ctl.run(&["list", "-e"])
        .await
        .assert_success()
        .assert_stdout_contains(&at);
    let run = ctl.run(&["flush", &scope, "restart", "--force"]).await;
    run.assert_success().assert_stdout_contains(&format!(
        "Success: flush scheduled restart for member {cand}"
    ));
    cluster
        .wait_member(&cand, "no scheduled restart", |m| {
            m.get("scheduled_restart").is_none()
        })
        .await;

    // ---- switchover (patronictl 4: [CLUSTER] --leader X --candidate Y --force)
    ctl.wait_list_settled(&leader, 1).await;
    ctl.switchover(Some(&scope), &leader, &cand).await;
    cluster.wait_leader(&cand).await;
    assert_eq!(cluster.wait_primary().await, c);
    let names = cluster.wait_streaming_replicas(c, 2).await;
    assert!(names.contains(&leader), "{names:?}");
    ctl.wait_list_settled(&cand, 2).await;

    // ---- failover back to the first leader
    let run = ctl
        .run(&["failover", "--candidate", &leader, "--force"])
        .await;
    run.assert_success()
        .assert_stdout_contains(&format!("Successfully failed over to \"{leader}\""));
    cluster.wait_leader(&leader).await;
    assert_eq!(cluster.wait_primary().await, p);
    let names = cluster.wait_streaming_replicas(p, 2).await;
    assert!(names.contains(&cand), "{names:?}");
    ctl.wait_list_settled(&leader, 3).await;

    // ---- history: both changes, as the history key and GET /history have them
    let run = ctl.run(&["history", "-f", "json"]).await;
    run.assert_success();
    let h: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("history -f json is not JSON ({e})\n{run}"));
    let h = h.as_array().unwrap_or_else(|| panic!("{run}"));
    assert_eq!(h.len(), 2, "{run}");
    assert_eq!(
        (&h[0]["TL"], &h[0]["New Leader"]),
        (&json!(1), &json!(cand)),
        "{run}"
    );
    assert_eq!(
        (&h[1]["TL"], &h[1]["New Leader"]),
        (&json!(2), &json!(leader)),
        "{run}"
    );
    let stored = cluster.key_json("history").await;
    assert_eq!(stored.as_array().map(Vec::len), Some(2), "{stored}");
    let run = ctl.run(&["history"]).await;
    run.assert_success();
    let t = &parse_tables(&run.stdout)[0];
    assert_eq!(
        t.columns,
        ["TL", "LSN", "Reason", "Timestamp", "New Leader"],
        "{run}"
    );
    assert_eq!(t.rows.len(), 2, "{run}");

    // ---- pause and resume (PATCH /config on the leader), waiting for every member
    let run = ctl.run(&["pause", &scope, "--wait"]).await;
    run.assert_success()
        .assert_stdout_contains("Success: cluster management is paused");
    assert_eq!(cluster.key_json("config").await["pause"], true);
    wait_pause_seen(&cluster, true).await;
    ctl.run(&["list"])
        .await
        .assert_success()
        .assert_stdout_contains("Maintenance mode: on");
    let run = ctl.run(&["resume", &scope, "--wait"]).await;
    run.assert_success()
        .assert_stdout_contains("Success: cluster management is resumed");
    assert_ne!(cluster.key_json("config").await["pause"], true);
    wait_pause_seen(&cluster, false).await;
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));

    // ---- edit-config
    let run = ctl.run(&["edit-config", "-s", "ttl=20", "--force"]).await;
    run.assert_success()
        .assert_stdout_contains("+ttl: 20")
        .assert_stdout_contains("Configuration changed");
    let config = cluster.key_json("config").await;
    assert_eq!(config["ttl"], 20, "{config}");
    assert_eq!(config["loop_wait"], 1, "other keys are kept: {config}");
    let n = cluster.node(p);
    wait_for(
        "ttl 20 in GET /config",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move { (rest_json(n, "/config").await?["ttl"] == 20).then_some(()) },
    )
    .await;

    // ---- reinit a replica and wait for it to stream again
    execute(
        cluster.node(p),
        "CREATE TABLE pctl_reinit (v int); INSERT INTO pctl_reinit VALUES (7)",
    )
    .await
    .unwrap();
    let old = cluster.node(c).postmaster_pid().expect("postgres runs");
    let run = ctl
        .run(&["reinit", &scope, &cand, "--force", "--wait"])
        .await;
    run.assert_success()
        .assert_stdout_contains(&format!("Success: reinitialize for member {cand}"))
        .assert_stdout_contains(&format!("Reinitialize is completed on: {cand}"));
    let r = cluster.node(c);
    wait_for(
        "the re-cloned replica to have the new row",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async move {
            let rows = sql(r, "SELECT count(*) FROM pctl_reinit").await.ok()?;
            (rows[0].get::<_, i64>(0) == 1 && r.postmaster_pid() != Some(old)).then_some(())
        },
    )
    .await;
    let log = std::fs::read_to_string(r.log_path()).unwrap_or_default();
    assert!(
        log.contains("reinitializing from"),
        "no re-clone in the log"
    );
    let names = cluster.wait_streaming_replicas(p, 2).await;
    assert!(names.contains(&cand), "{names:?}");

    // ---- remove, confirmed on stdin as patronictl asks (name, "Yes I am aware",
    // the leader): the running agents write their keys again, and the leader the
    // dynamic configuration it runs with, as Patroni's does (ha.py: "has_lock and
    // not cluster.config" -> set_config_value)
    let input = format!("{scope}\nYes I am aware\n{leader}\n");
    let run = ctl.run_with_input(&["remove", &scope], &input).await;
    run.assert_success();
    let cl = &cluster;
    wait_for_result(
        "the agents to write their keys again after remove",
        Duration::from_secs(15),
        Duration::from_millis(250),
        || async move {
            let keys: Vec<String> = cl
                .kv()
                .get_prefix(&cl.prefix())
                .await
                .into_iter()
                .map(|(k, _)| k.trim_start_matches(&cl.prefix()).to_string())
                .collect();
            let want = [
                "config",
                "initialize",
                "leader",
                "members/node0",
                "members/node1",
                "members/node2",
            ];
            match want.iter().find(|k| !keys.iter().any(|have| have == *k)) {
                Some(missing) => Err(format!("no {missing} key; keys: {keys:?}")),
                None => Ok(()),
            }
        },
    )
    .await;
    assert_eq!(cluster.key_json("config").await["ttl"], 20);
    ctl.run(&["show-config"])
        .await
        .assert_success()
        .assert_stdout_contains("ttl: 20\n");
}
