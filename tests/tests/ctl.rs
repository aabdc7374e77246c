//! `agentctl`, end to end: every verb against a real 3-node cluster (real etcd,
//! PostgreSQL and agents), checked both in what it prints and in what it did to
//! the cluster (etcd keys, REST API, postmaster pids, SQL).
//!
//! Two clusters, run in parallel: `ctl_ops` (read verbs, member actions,
//! configuration, refusals; REST with Basic auth, so agentctl must send it) and
//! `ctl_switch` (switchover and failover, with a `nofailover` member), plus one
//! test of usage errors that needs no cluster. Every run has a deadline and
//! reads stdin from `/dev/null`, so a verb that would prompt must refuse, not hang.

use std::time::Duration;

use agent_tests::*;

/// Basic auth of the `ctl_ops` cluster's REST APIs.
const AUTH: (&str, &str) = ("admin", "ctl-secret");

/// A verb that may prompt gets this long to refuse.
const PROMPT_DEADLINE: Duration = Duration::from_secs(20);

async fn system_id(cluster: &ClusterFixture) -> String {
    cluster
        .kv()
        .get(&format!("{}initialize", cluster.prefix()))
        .await
        .expect("the initialize key exists")
}

/// `list -f json`, parsed.
async fn list_json(ctl: &Cli) -> Vec<Value> {
    let run = ctl.run(&["list", "-f", "json"]).await;
    run.assert_success();
    let v: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("list -f json is not JSON ({e})\n{run}"));
    v.as_array()
        .unwrap_or_else(|| panic!("list -f json is not an array\n{run}"))
        .clone()
}

/// Wait until the postmaster of node `i` is a new process (not `old`), and return it.
async fn wait_new_postmaster(cluster: &ClusterFixture, i: usize, old: i32) -> i32 {
    let n = cluster.node(i);
    let what = format!("a new postmaster on {}", n.name());
    wait_for(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move { n.postmaster_pid().filter(|p| *p != old) },
    )
    .await
}

fn postmaster(cluster: &ClusterFixture, i: usize) -> i32 {
    cluster
        .node(i)
        .postmaster_pid()
        .unwrap_or_else(|| panic!("{} runs no postmaster", cluster.node(i).name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_without_touching_a_cluster() {
    let dir = TestDir::new("ctl_usage");
    // No configuration file anywhere: the default path is looked up under here.
    let ctl = Cli::new(&agent_binaries().agentctl)
        .env("HOME", &dir.path().display().to_string())
        .env(
            "XDG_CONFIG_HOME",
            &dir.path().join("xdg").display().to_string(),
        )
        .timeout(PROMPT_DEADLINE);

    ctl.run(&["frobnicate"])
        .await
        .assert_code(2)
        .assert_stderr_contains("frobnicate");
    ctl.run(&["list", "--bogus"])
        .await
        .assert_code(2)
        .assert_stderr_contains("--bogus");
    ctl.run(&[]).await.assert_code(2);
    ctl.run(&["restart", "--role", "master"])
        .await
        .assert_code(2)
        .assert_stderr_contains("master");
    ctl.run(&["list", "-f", "xml"]).await.assert_code(2);
    // a named configuration file must exist
    let missing = dir.path().join("missing.yml");
    ctl.run(&["-c", &missing.display().to_string(), "list"])
        .await
        .assert_code(2)
        .assert_stderr_contains("missing.yml");
    // no scope and no etcd: says what to pass
    ctl.run(&["list"])
        .await
        .assert_code(2)
        .assert_stderr_contains("no cluster name");

    // help and version are not errors
    let help = ctl.run(&["--help"]).await;
    help.assert_success();
    for verb in [
        "list",
        "topology",
        "switchover",
        "failover",
        "restart",
        "reload",
        "reinit",
        "flush",
        "pause",
        "resume",
        "edit-config",
        "show-config",
        "history",
        "remove",
        "dsn",
        "version",
    ] {
        assert!(
            help.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(verb)),
            "--help does not list {verb}\n{help}"
        );
    }
    ctl.run(&["version"])
        .await
        .assert_success()
        .assert_stdout_contains("agentctl version ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_verbs_member_actions_configuration_and_refusals() {
    let cluster = ClusterFixture::builder("ctl_ops")
        .configure(|_, cfg| {
            cfg["restapi"]["authentication"] = json!({"username": AUTH.0, "password": AUTH.1});
        })
        .start()
        .await;
    let p = cluster.wait_healthy().await;
    let scope = cluster.scope().to_string();
    let leader = cluster.node(p).name().to_string();
    let replicas: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    let (r1, r2) = (replicas[0], replicas[1]);
    let (r1_name, r2_name) = (
        cluster.node(r1).name().to_string(),
        cluster.node(r2).name().to_string(),
    );
    // the unsafe methods agentctl uses need the credentials it reads from the file
    let (code, _) = rest_send_as(cluster.node(p), "POST", "/reload", None, None)
        .await
        .unwrap();
    assert_eq!(code, 401);
    // a replica's config file works as well as the leader's
    let ctl = Cli::agentctl(cluster.node(r1).config_path());
    let sysid = system_id(&cluster).await;

    // ---- list: pretty, json, yaml, tsv
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
        assert_eq!(
            t.cell(row, "Host"),
            format!("127.0.0.1:{}", n.pg_port()),
            "{run}"
        );
        assert_eq!(t.cell(row, "TL"), "1", "{run}");
        if i == p {
            assert_eq!(t.cell(row, "Role"), "Leader", "{run}");
            assert_eq!(t.cell(row, "State"), "running", "{run}");
        } else {
            assert_eq!(t.cell(row, "Role"), "Replica", "{run}");
            assert_eq!(t.cell(row, "State"), "streaming", "{run}");
            assert!(t.cell(row, "Receive LSN").contains('/'), "{run}");
        }
    }
    let rows = list_json(&ctl).await;
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r["Cluster"], scope.as_str(), "{r}");
        let name = r["Member"].as_str().unwrap_or_default();
        if name == leader {
            assert_eq!(r["Role"], "Leader", "{r}");
            assert!(r.get("Receive LSN").is_none(), "{r}");
        } else {
            assert_eq!(r["Role"], "Replica", "{r}");
            assert!(r["Replay Lag"].is_number(), "{r}");
        }
        assert_eq!(r["TL"], 1, "{r}");
    }
    let run = ctl.run(&["list", "-f", "yaml"]).await;
    run.assert_success()
        .assert_stdout_contains(&format!("- Cluster: {scope}\n"))
        .assert_stdout_contains(&format!("  Member: {leader}\n"))
        .assert_stdout_contains("  Role: Leader\n")
        .assert_stdout_contains("  State: streaming\n");
    assert_eq!(run.stdout.matches("- Cluster: ").count(), 3, "{run}");
    let run = ctl.run(&["list", "-f", "tsv"]).await;
    run.assert_success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("Cluster\tMember\tHost\tRole\tState\tTL"),
        "{run}"
    );
    assert_eq!(lines.len(), 4, "{run}");

    // ---- topology: the leader first, replicas indented under it
    let run = ctl.run(&["topology"]).await;
    run.assert_success();
    let t = &parse_tables(&run.stdout)[0];
    assert_eq!(t.cell(&t.rows[0], "Member"), leader, "{run}");
    let mut below: Vec<&str> = t.rows[1..].iter().map(|r| t.cell(r, "Member")).collect();
    below.sort();
    let mut want = vec![format!("+ {r1_name}"), format!("+ {r2_name}")];
    want.sort();
    assert_eq!(below, want, "{run}");

    // ---- history (empty: no failover yet), show-config, dsn, version
    let run = ctl.run(&["history"]).await;
    run.assert_success();
    let t = &parse_tables(&run.stdout)[0];
    assert_eq!(
        t.columns,
        ["TL", "LSN", "Reason", "Timestamp", "New Leader"],
        "{run}"
    );
    assert!(t.rows.is_empty(), "{run}");
    ctl.run(&["show-config"])
        .await
        .assert_success()
        .assert_stdout_contains("ttl: 6\n")
        .assert_stdout_contains("loop_wait: 1\n")
        .assert_stdout_contains("use_pg_rewind: true\n");
    let run = ctl.run(&["dsn", "--role", "replica"]).await;
    run.assert_success();
    let replica_dsns: Vec<String> = replicas
        .iter()
        .map(|i| format!("host=127.0.0.1 port={}", cluster.node(*i).pg_port()))
        .collect();
    assert!(
        replica_dsns.contains(&run.stdout.trim().to_string()),
        "{run}"
    );
    ctl.run(&["dsn"])
        .await
        .assert_success()
        .assert_stdout_contains(&format!(
            "host=127.0.0.1 port={}",
            cluster.node(p).pg_port()
        ));
    ctl.run(&["dsn", "--member", &r2_name])
        .await
        .assert_success()
        .assert_stdout_contains(&format!("port={}", cluster.node(r2).pg_port()));
    let run = ctl.run(&["version", &scope]).await;
    run.assert_success()
        .assert_stdout_contains("agentctl version ");
    for n in cluster.nodes() {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{}: ", n.name())))
            .unwrap_or_else(|| panic!("no version of {}\n{run}", n.name()));
        assert!(line.contains(" PostgreSQL 15."), "{run}");
    }

    // ---- without --force and without a terminal: refused at once, nothing done
    let pids: Vec<i32> = (0..3).map(|i| postmaster(&cluster, i)).collect();
    let quick = ctl.clone().timeout(PROMPT_DEADLINE);
    for (args, hint) in [
        (vec!["switchover"], "--leader or --force"),
        (
            vec!["switchover", "--leader", &leader, "--candidate", &r1_name],
            "--force",
        ),
        (vec!["failover"], "--candidate or --force"),
        (vec!["restart", &scope, &r1_name], "--force"),
        (
            vec!["restart", &scope, &r1_name, "--scheduled", "now"],
            "--force",
        ),
        (vec!["reload", &scope], "--force"),
        (vec!["reinit", &scope, &r1_name], "--force"),
        (vec!["flush", &scope, "restart"], "--force"),
        (vec!["edit-config", "-s", "ttl=30"], "--force"),
        (vec!["edit-config"], "-s/--set"),
        (vec!["remove", &scope], "--force"),
    ] {
        let run = quick.run(&args).await;
        run.assert_code(2)
            .assert_stderr_contains("stdin is not a terminal")
            .assert_stderr_contains(hint);
        assert!(run.elapsed < Duration::from_secs(10), "slow refusal\n{run}");
    }
    // `remove --force` is refused while a leader holds the key
    let run = quick.run(&["remove", &scope, "--force"]).await;
    run.assert_code(1).assert_stderr_contains(&leader);
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));
    assert_eq!(system_id(&cluster).await, sysid);
    assert_eq!(cluster.key_json("config").await["ttl"], 6);
    for (n, pid) in cluster.nodes().iter().zip(&pids) {
        assert_eq!(
            n.postmaster_pid(),
            Some(*pid),
            "a refused verb restarted {}",
            n.name()
        );
    }

    // ---- restart one member, then every replica by role
    let run = ctl.run(&["restart", &scope, &r1_name, "--force"]).await;
    run.assert_success()
        .assert_stdout_contains(&format!("Success: restart on member {r1_name}"));
    let r1_pid = wait_new_postmaster(&cluster, r1, pids[r1]).await;
    assert_eq!(cluster.node(r2).postmaster_pid(), Some(pids[r2]));
    assert_eq!(cluster.node(p).postmaster_pid(), Some(pids[p]));
    cluster.wait_streaming_replicas(p, 2).await;
    let run = ctl
        .run(&["restart", &scope, "--role", "replica", "--force"])
        .await;
    run.assert_success()
        .assert_stdout_contains(&format!("Success: restart on member {r1_name}"))
        .assert_stdout_contains(&format!("Success: restart on member {r2_name}"));
    assert!(!run.stdout.contains(&format!("member {leader}")), "{run}");
    wait_new_postmaster(&cluster, r1, r1_pid).await;
    wait_new_postmaster(&cluster, r2, pids[r2]).await;
    assert_eq!(cluster.node(p).postmaster_pid(), Some(pids[p]));
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));
    cluster.wait_streaming_replicas(p, 2).await;

    // ---- reload every member
    let run = ctl.run(&["reload", &scope, "--force"]).await;
    run.assert_success();
    for n in cluster.nodes() {
        run.assert_stdout_contains(&format!("Reload request received for member {}", n.name()));
    }

    // ---- reinit a replica and wait for it
    execute(
        cluster.node(p),
        "CREATE TABLE ctl_reinit (v int); INSERT INTO ctl_reinit VALUES (42)",
    )
    .await
    .unwrap();
    let r2_pid = postmaster(&cluster, r2);
    let run = ctl
        .run(&["reinit", &scope, &r2_name, "--force", "--wait"])
        .await;
    run.assert_success()
        .assert_stdout_contains(&format!("Success: reinitialize for member {r2_name}"))
        .assert_stdout_contains(&format!("Reinitialize is completed on: {r2_name}"));
    assert_ne!(cluster.node(r2).postmaster_pid(), Some(r2_pid), "{run}");
    let log = std::fs::read_to_string(cluster.node(r2).log_path()).unwrap_or_default();
    assert!(
        log.contains("reinitializing from"),
        "no re-clone in the log"
    );
    cluster.wait_streaming_replicas(p, 2).await;
    let rows = sql(cluster.node(r2), "SELECT v FROM ctl_reinit")
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 42);

    // ---- a scheduled restart, shown by list -e, then flushed
    let at = iso8601_utc(unix_now() + 3600);
    let r1_pid = postmaster(&cluster, r1);
    let run = ctl
        .run(&["restart", &scope, &r1_name, "--scheduled", &at, "--force"])
        .await;
    run.assert_success()
        .assert_stdout_contains(&format!("Success: restart scheduled on member {r1_name}"));
    cluster
        .wait_member(&r1_name, "a scheduled restart", |m| {
            m["scheduled_restart"]["schedule"].is_string()
        })
        .await;
    let run = ctl.run(&["list", "-e"]).await;
    run.assert_success();
    let t = &parse_tables(&run.stdout)[0];
    let row = t.row_where("Member", &r1_name).unwrap();
    assert_eq!(t.cell(row, "Scheduled restart"), at, "{run}");
    let run = ctl.run(&["flush", &scope, "restart", "--force"]).await;
    run.assert_success().assert_stdout_contains(&format!(
        "Success: flush scheduled restart for member {r1_name}"
    ));
    cluster
        .wait_member(&r1_name, "no scheduled restart", |m| {
            m.get("scheduled_restart").is_none()
        })
        .await;
    let (code, _) = rest_send_as(cluster.node(r1), "DELETE", "/restart", None, Some(AUTH))
        .await
        .unwrap();
    assert_eq!(code, 404, "the scheduled restart is still there");
    assert_eq!(cluster.node(r1).postmaster_pid(), Some(r1_pid));

    // ---- pause and resume, with --wait
    let run = ctl.run(&["pause", "--wait"]).await;
    run.assert_success()
        .assert_stdout_contains("Success: cluster management is paused");
    assert_eq!(cluster.key_json("config").await["pause"], true);
    for n in cluster.nodes() {
        assert_eq!(rest_json(n, "/patroni").await.unwrap()["pause"], true);
    }
    ctl.run(&["list"])
        .await
        .assert_success()
        .assert_stdout_contains("Maintenance mode: on");
    ctl.run(&["pause"])
        .await
        .assert_code(1)
        .assert_stderr_contains("already paused");
    let run = ctl.run(&["resume", "--wait"]).await;
    run.assert_success()
        .assert_stdout_contains("Success: cluster management is resumed");
    assert_ne!(cluster.key_json("config").await["pause"], true);
    for n in cluster.nodes() {
        assert_ne!(rest_json(n, "/patroni").await.unwrap()["pause"], true);
    }
    let run = ctl.run(&["list"]).await;
    assert!(!run.stdout.contains("Maintenance mode"), "{run}");

    // ---- edit-config: an invalid value is refused and names the key
    let run = ctl.run(&["edit-config", "-s", "ttl=3", "--force"]).await;
    run.assert_code(1).assert_stderr_contains("ttl");
    assert_eq!(cluster.key_json("config").await["ttl"], 6);
    let run = ctl.run(&["edit-config", "-s", "ttl=6", "--force"]).await;
    run.assert_success().assert_stdout_contains("Not changed");
    let run = ctl
        .run(&[
            "edit-config",
            "-s",
            "ttl=20",
            "-s",
            "loop_wait=2",
            "-p",
            "work_mem=8MB",
            "--force",
        ])
        .await;
    run.assert_success()
        .assert_stdout_contains("-ttl: 6\n")
        .assert_stdout_contains("+ttl: 20\n")
        .assert_stdout_contains("-loop_wait: 1\n")
        .assert_stdout_contains("+loop_wait: 2\n")
        .assert_stdout_contains("+    work_mem: 8MB\n")
        .assert_stdout_contains("Configuration changed");
    let config = cluster.key_json("config").await;
    assert_eq!(config["ttl"], 20, "{config}");
    assert_eq!(config["loop_wait"], 2, "{config}");
    assert_eq!(config["retry_timeout"], 2, "other keys are kept: {config}");
    assert_eq!(
        config["postgresql"]["parameters"]["work_mem"], "8MB",
        "{config}"
    );
    assert_eq!(
        config["postgresql"]["parameters"]["max_connections"], 50,
        "{config}"
    );
    for n in cluster.nodes() {
        wait_for(
            "work_mem applied",
            Duration::from_secs(20),
            Duration::from_millis(200),
            || async move {
                let rows = sql(n, "SHOW work_mem").await.ok()?;
                (rows[0].get::<_, String>(0) == "8MB").then_some(())
            },
        )
        .await;
    }
    ctl.run(&["show-config"])
        .await
        .assert_success()
        .assert_stdout_contains("ttl: 20\n");

    // ---- --dcs-url with a configuration file that has no etcd3 section
    let bare = cluster.dir().path().join("ctl-no-etcd3.yml");
    std::fs::write(&bare, format!("scope: {scope}\n")).unwrap();
    let no_etcd = Cli::agentctl(&bare).timeout(PROMPT_DEADLINE);
    no_etcd
        .run(&["list"])
        .await
        .assert_code(2)
        .assert_stderr_contains("--dcs-url");
    let url = format!("etcd3://127.0.0.1:{}", cluster.etcd().client_port());
    let run = no_etcd.run(&["--dcs-url", &url, "list"]).await;
    run.assert_success();
    let t = &parse_tables(&run.stdout)[0];
    assert!(
        t.title.contains(&format!("Cluster: {scope} ({sysid})")),
        "{run}"
    );
    assert_eq!(t.rows.len(), 3, "{run}");
    // the namespace in the URL, and the verb before the option
    let run = no_etcd
        .run(&["show-config", "--dcs-url", &format!("{url}/service/")])
        .await;
    run.assert_success().assert_stdout_contains("ttl: 20\n");
    // a Patroni file for another DCS: says etcd3 is needed, and the override works
    let v2 = cluster.dir().path().join("ctl-etcd-v2.yml");
    std::fs::write(&v2, format!("scope: {scope}\netcd:\n  host: 127.0.0.1:1\n")).unwrap();
    let v2_ctl = Cli::agentctl(&v2).timeout(PROMPT_DEADLINE);
    v2_ctl
        .run(&["list"])
        .await
        .assert_code(2)
        .assert_stderr_contains("etcd3");
    v2_ctl.run(&["-d", &url, "history"]).await.assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_failover_and_their_refusals() {
    // node2 may never lead: node0 or node1 bootstraps, the other is the candidate.
    let cluster = ClusterFixture::builder("ctl_switch")
        .tags(2, json!({"nofailover": true}))
        .start()
        .await;
    let p = cluster.wait_healthy().await;
    assert_ne!(p, 2, "the nofailover member bootstrapped");
    let c = 1 - p;
    let scope = cluster.scope().to_string();
    let (leader, cand) = (
        cluster.node(p).name().to_string(),
        cluster.node(c).name().to_string(),
    );
    let tagged = cluster.node(2).name().to_string();
    let ctl = Cli::agentctl(cluster.node(p).config_path()).timeout(Duration::from_secs(90));
    ctl.wait_list_settled(&leader, 1).await;

    // ---- refusals (all with --force: nothing to ask, so every check is agentctl's or the API's)
    // the wrong leader: patronictl exits 1 with "Member X is not the leader of cluster Y";
    // the API's own words are "leader name does not match"
    let run = ctl
        .run(&[
            "switchover",
            "--leader",
            &cand,
            "--candidate",
            &leader,
            "--force",
        ])
        .await;
    run.assert_failure();
    assert!(
        run.stderr
            .contains(&format!("Member {cand} is not the leader"))
            || run.stderr.contains("leader name does not match"),
        "{run}"
    );
    // checked last, so that the rest of the test runs whatever this says
    let wrong_leader = run;
    let run = ctl
        .run(&[
            "switchover",
            "--leader",
            &leader,
            "--candidate",
            "nobody",
            "--force",
        ])
        .await;
    run.assert_failure().assert_stderr_contains("nobody");
    let run = ctl
        .run(&[
            "switchover",
            "--leader",
            &leader,
            "--candidate",
            &leader,
            "--force",
        ])
        .await;
    run.assert_failure()
        .assert_stderr_contains(&format!("Member {leader} is already the leader"));
    let run = ctl
        .run(&[
            "switchover",
            "--leader",
            &leader,
            "--candidate",
            &tagged,
            "--force",
        ])
        .await;
    run.assert_failure()
        .assert_stderr_contains(&tagged)
        .assert_stderr_contains("nofailover");
    let run = ctl
        .run(&["failover", "--candidate", &tagged, "--force"])
        .await;
    run.assert_failure()
        .assert_stderr_contains(&tagged)
        .assert_stderr_contains("nofailover");
    let run = ctl
        .run(&["failover", "--candidate", &leader, "--force"])
        .await;
    run.assert_failure()
        .assert_stderr_contains("already the leader");
    let run = ctl.run(&["failover", "--force"]).await;
    run.assert_failure()
        .assert_stderr_contains("specific candidate");
    let run = ctl.run(&["switchover", "other_cluster", "--force"]).await;
    run.assert_failure().assert_stderr_contains("no leader");
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));
    assert_eq!(cluster.key_json("failover").await.get("scheduled_at"), None);

    // ---- switchover: progress, the write-unavailability estimate, the new leader
    let run = ctl.switchover(Some(&scope), &leader, &cand).await;
    run.assert_stdout_contains("Current cluster topology")
        .assert_stdout_contains(&format!("{leader} demoting"))
        .assert_stdout_contains(&format!("{cand} promoted (leader key taken)"));
    // checked last: the new primary seen running, and the estimate printed
    let switchover = run.clone();
    let progress: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("  +") && l.contains("s "))
        .collect();
    assert!(progress.len() >= 3, "{run}");
    // the table before and the table after
    let tables = parse_tables(&run.stdout);
    assert_eq!(tables.len(), 2, "{run}");
    let after = &tables[1];
    let row = after.row_where("Member", &cand).unwrap();
    assert_eq!(after.cell(row, "Role"), "Leader", "{run}");
    assert_eq!(cluster.leader().await.as_deref(), Some(cand.as_str()));
    assert_eq!(cluster.wait_primary().await, c);
    let names = cluster.wait_streaming_replicas(c, 2).await;
    assert!(names.contains(&leader), "{names:?}");
    ctl.wait_list_settled(&cand, 2).await;
    let run = ctl.run(&["history"]).await;
    run.assert_success();
    let t = &parse_tables(&run.stdout)[0];
    assert_eq!(t.rows.len(), 1, "{run}");
    assert_eq!(t.cell(&t.rows[0], "TL"), "1", "{run}");
    assert_eq!(t.cell(&t.rows[0], "New Leader"), cand, "{run}");

    // ---- failover back to the old leader
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
    let run = ctl.run(&["history", "-f", "json"]).await;
    run.assert_success();
    let h: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 2, "{run}");
    assert_eq!(
        (&h[0]["TL"], &h[0]["New Leader"]),
        (&json!(1), &json!(cand))
    );
    assert_eq!(
        (&h[1]["TL"], &h[1]["New Leader"]),
        (&json!(2), &json!(leader))
    );
    let n = cluster.node(p);
    wait_for(
        "both entries in GET /history",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move { (rest_json(n, "/history").await?.as_array()?.len() == 2).then_some(()) },
    )
    .await;

    // ---- a scheduled switchover is shown by list, then flushed
    let at = iso8601_utc(unix_now() + 3600);
    let run = ctl
        .run(&[
            "switchover",
            "--leader",
            &leader,
            "--candidate",
            &cand,
            "--scheduled",
            &at,
            "--force",
        ])
        .await;
    run.assert_success()
        .assert_stdout_contains("Switchover scheduled");
    let run = ctl.run(&["list"]).await;
    run.assert_success()
        .assert_stdout_contains(&format!("Switchover scheduled at: {at}"))
        .assert_stdout_contains(&format!("from: {leader}"))
        .assert_stdout_contains(&format!("to: {cand}"));
    ctl.run(&["flush", &scope, "switchover", "--force"])
        .await
        .assert_success()
        .assert_stdout_contains("Success: scheduled switchover deleted");
    let run = ctl.run(&["list"]).await;
    assert!(!run.stdout.contains("Switchover scheduled"), "{run}");
    ctl.run(&["flush", &scope, "switchover", "--force"])
        .await
        .assert_success()
        .assert_stdout_contains("No pending scheduled switchover");
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));

    // ---- restart the leader on timeline 3: it keeps the key, and the replicas'
    // postgres keep running while their receivers reconnect (postgres retries
    // every wal_retrieve_retry_interval, 5 s)
    let replicas: Vec<(usize, i32)> = [c, 2]
        .iter()
        .map(|i| (*i, cluster.node(*i).postmaster_pid().expect("replica runs")))
        .collect();
    let leader_pid = cluster.node(p).postmaster_pid().expect("leader runs");
    ctl.run(&["restart", &scope, &leader, "--force"])
        .await
        .assert_success()
        .assert_stdout_contains(&format!("Success: restart on member {leader}"));
    wait_new_postmaster(&cluster, p, leader_pid).await;
    assert_eq!(cluster.leader().await.as_deref(), Some(leader.as_str()));
    let (c, replicas) = (&cluster, &replicas);
    let restarted_replicas = holds_for(
        Duration::from_secs(8),
        Duration::from_millis(200),
        || async move {
            let restarted: Vec<&str> = replicas
                .iter()
                .filter(|(i, pid)| c.node(*i).postmaster_pid() != Some(*pid))
                .map(|(i, _)| c.node(*i).name())
                .collect();
            if restarted.is_empty() {
                Ok(())
            } else {
                Err(restarted.join(","))
            }
        },
    )
    .await
    .err()
    .map(|names| names.split(',').map(String::from).collect::<Vec<_>>())
    .unwrap_or_default();
    cluster.wait_streaming_replicas(p, 2).await;

    // ---- checked last, all together, so that the rest ran whatever they say
    let mut broken: Vec<String> = Vec::new();
    // A refused switchover exits 1, as patronictl's does (PatroniCtlException).
    if wrong_leader.code != Some(1) {
        broken.push(format!(
            "a refused switchover must exit 1, as patronictl's does:\n{wrong_leader}"
        ));
    }
    // The watch ends once the new primary was seen running, so the estimate of
    // the write unavailability is always printed.
    if !(switchover
        .stdout
        .contains(&format!("{cand} running as primary"))
        && switchover
            .stdout
            .contains("Estimated write unavailability: "))
    {
        broken.push(format!(
            "the switchover's progress must show {cand} running as primary and the \
             estimated write unavailability:\n{switchover}"
        ));
    }
    // A replica does not stop its postgres because the leader's restarted: its
    // receiver being down for a moment is no sign of a diverged timeline.
    for name in &restarted_replicas {
        let i = cluster.index_of(name).expect("a member");
        let log = std::fs::read_to_string(cluster.node(i).log_path()).unwrap_or_default();
        let why = log
            .lines()
            .rfind(|l| l.contains("stopping to"))
            .or_else(|| log.lines().rfind(|l| l.contains("stopping")))
            .unwrap_or("(no \"stopping\" line in its log)");
        broken.push(format!(
            "restarting the leader restarted the postgres of replica {name}: {why}"
        ));
    }
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}
