//! The core agent against real etcd and real PostgreSQL: bootstrap, failover,
//! rejoin with pg_rewind, postgres crash, clean stop, fencing, lagging replica,
//! duplicate names, bad configuration.
//!
//! Timings: ttl 6 s, loop_wait 1 s, retry_timeout 2 s (the harness default), so
//! every bound below is "ttl + a few seconds", never a tight wall-clock claim.

use std::time::{Duration, Instant};

use agent_tests::*;

const TTL: Duration = Duration::from_secs(6);

async fn insert_row(node: &Node, table: &str, value: i64) {
    execute(
        node,
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} (v bigint); INSERT INTO {table} VALUES ({value})"
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("insert into {table} on {}: {e:#}", node.name()));
}

async fn wait_row(cluster: &ClusterFixture, i: usize, table: &str, value: i64) {
    let node = cluster.node(i);
    let what = format!("row {value} of {table} on {}", node.name());
    wait_for(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let rows = sql(
                node,
                &format!("SELECT count(*) FROM {table} WHERE v = {value}"),
            )
            .await
            .ok()?;
            (rows.first()?.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_one_primary_two_streaming_replicas() {
    let cluster = ClusterFixture::builder("bootstrap").nodes(3).start().await;
    let p = cluster.wait_primary().await;
    let replicas = cluster.wait_streaming_replicas(p, 2).await;
    assert_eq!(replicas.len(), 2);

    insert_row(cluster.node(p), "boot", 1).await;
    for i in (0..3).filter(|i| *i != p) {
        wait_row(&cluster, i, "boot", 1).await;
        assert_eq!(is_in_recovery(cluster.node(i)).await, Some(true));
        assert_eq!(rest_status(cluster.node(i), "/replica").await, Some(200));
        assert_eq!(rest_status(cluster.node(i), "/primary").await, Some(503));
    }
    assert_eq!(rest_status(cluster.node(p), "/replica").await, Some(503));

    // The etcd layout Patroni's tools read.
    let prefix = cluster.prefix();
    let etcd = &cluster.kv();
    assert_eq!(
        etcd.get(&format!("{prefix}leader")).await.as_deref(),
        Some(cluster.node(p).name())
    );
    let sysid = etcd
        .get(&format!("{prefix}initialize"))
        .await
        .expect("initialize key");
    assert!(
        sysid.len() >= 10 && sysid.bytes().all(|b| b.is_ascii_digit()),
        "{sysid}"
    );
    let config: Value = serde_json::from_str(
        &etcd
            .get(&format!("{prefix}config"))
            .await
            .expect("config key"),
    )
    .unwrap();
    assert_eq!(config["ttl"], 6);
    let members = etcd.get_prefix(&format!("{prefix}members/")).await;
    assert_eq!(members.len(), 3, "{members:?}");
    for (_, v) in &members {
        let m: Value = serde_json::from_str(v).unwrap();
        assert!(
            m["conn_url"]
                .as_str()
                .unwrap()
                .starts_with("postgres://127.0.0.1:"),
            "{m}"
        );
        assert!(m["api_url"].as_str().unwrap().ends_with("/patroni"), "{m}");
        assert_eq!(m["state"], "running", "{m}");
    }
    let patroni = rest_json(cluster.node(p), "/patroni").await.unwrap();
    assert_eq!(patroni["role"], "primary");
    assert_eq!(patroni["database_system_identifier"], sysid.as_str());
    // one physical slot per replica on the primary
    let slots = sql(
        cluster.node(p),
        "SELECT slot_name FROM pg_replication_slots WHERE active",
    )
    .await
    .unwrap();
    assert_eq!(slots.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_crash_fails_over_and_old_primary_rejoins_with_rewind() {
    let mut cluster = ClusterFixture::builder("node_crash").nodes(3).start().await;
    let p = cluster.wait_formed().await;
    insert_row(cluster.node(p), "crash", 1).await;
    for i in (0..3).filter(|i| *i != p) {
        wait_row(&cluster, i, "crash", 1).await;
    }

    let t0 = Instant::now();
    cluster.node_mut(p).kill_all();
    let q = cluster.wait_new_primary(p).await;
    let window = t0.elapsed();
    eprintln!(
        "node crash: new primary {} writable {:.2}s after the kill",
        cluster.node(q).name(),
        window.as_secs_f64()
    );
    assert!(
        window < TTL + Duration::from_secs(10),
        "failover took {window:?}"
    );
    // The old primary comes back at once, before the new one has necessarily
    // checkpointed on its new timeline (pg_rewind reads the timeline from the
    // source's pg_control), and rejoins as a replica of the new one.
    cluster.node_mut(p).start();
    // the other replica follows the new primary; the row survived
    cluster.wait_streaming_replicas(q, 1).await;
    let r = (0..3).find(|i| *i != p && *i != q).unwrap();
    wait_row(&cluster, q, "crash", 1).await;
    insert_row(cluster.node(q), "crash", 2).await;
    wait_row(&cluster, r, "crash", 2).await;
    let names = cluster.wait_streaming_replicas(q, 2).await;
    assert!(names.contains(&cluster.node(p).name().to_string()));
    assert_eq!(is_in_recovery(cluster.node(p)).await, Some(true));
    insert_row(cluster.node(q), "crash", 3).await;
    wait_row(&cluster, p, "crash", 3).await;
    let log = std::fs::read_to_string(cluster.node(p).log_path()).unwrap();
    assert!(
        log.contains("running pg_rewind from"),
        "the old primary did not run pg_rewind"
    );
    // one rewind does it (before the fix it spun, seeing "the same timeline" on
    // both sides until the new primary's next checkpoint)
    let runs = log.matches("tool=\"pg_rewind\"").count();
    assert!(runs <= 2, "pg_rewind ran {runs} times");
    // history records the promotion with the new leader's name
    let history = rest_json(cluster.node(q), "/history").await.unwrap();
    let last = history
        .as_array()
        .and_then(|a| a.last().cloned())
        .unwrap_or_default();
    assert_eq!(last[4], cluster.node(q).name(), "{history}");
}

/// A crashed primary whose data directory also holds standby.signal (it had been
/// started as a standby after the crash, as a fenced primary is) still rewinds:
/// pg_rewind's single-user crash recovery refuses to run with standby.signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_primary_with_standby_signal_rewinds_and_rejoins() {
    let mut cluster = ClusterFixture::builder("crash_signal")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    insert_row(cluster.node(p), "sig", 1).await;
    cluster.node_mut(p).kill_all();
    let q = cluster.wait_new_primary(p).await;
    insert_row(cluster.node(q), "sig", 2).await;
    let signal = cluster.node(p).data_dir().join("standby.signal");
    std::fs::write(&signal, b"").unwrap();
    // owned like the data directory (the nodes may run as `postgres`)
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(cluster.node(p).data_dir()).unwrap(),
    );
    std::os::unix::fs::chown(&signal, Some(owner), None).unwrap();
    cluster.node_mut(p).start();
    let names = cluster.wait_streaming_replicas(q, 2).await;
    assert!(names.contains(&cluster.node(p).name().to_string()));
    insert_row(cluster.node(q), "sig", 3).await;
    wait_row(&cluster, p, "sig", 3).await;
    let log = std::fs::read_to_string(cluster.node(p).log_path()).unwrap();
    assert!(
        !log.contains("standby mode is not supported by single-user servers"),
        "pg_rewind ran into standby.signal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_restarts_primary_in_place() {
    let cluster = ClusterFixture::builder("pg_crash").nodes(3).start().await;
    let p = cluster.wait_formed().await;
    let leader = cluster.leader().await;
    let old_pm = cluster.node(p).postmaster_pid().expect("postmaster");

    let t0 = Instant::now();
    cluster.node(p).kill_postgres();
    let again = cluster.wait_primary().await;
    eprintln!(
        "postgres crash: writable again after {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        again, p,
        "a postgres crash under a live agent must not fail over"
    );
    assert_eq!(cluster.leader().await, leader);
    assert_ne!(cluster.node(p).postmaster_pid(), Some(old_pm));
    let patroni = rest_json(cluster.node(p), "/patroni").await.unwrap();
    assert_eq!(patroni["timeline"], 1, "no promotion happened: {patroni}");
    cluster.wait_streaming_replicas(p, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stop_hands_over_well_before_ttl() {
    let mut cluster = ClusterFixture::builder("clean_stop").nodes(3).start().await;
    let p = cluster.wait_formed().await;
    insert_row(cluster.node(p), "stop", 1).await;

    let t0 = Instant::now();
    let status = cluster.node_mut(p).stop_term(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "agent exit status {status:?}"
    );
    assert!(
        cluster.node(p).postmaster_pid().is_none(),
        "postgres outlived its agent"
    );
    let q = cluster.wait_new_primary(p).await;
    let window = t0.elapsed();
    eprintln!(
        "clean stop: new primary writable {:.2}s after SIGTERM",
        window.as_secs_f64()
    );
    assert!(
        window < TTL,
        "hand-over took {window:?}, not faster than the lease"
    );
    wait_row(&cluster, q, "stop", 1).await;

    // Restarted, it rejoins as a replica (cleanly stopped: no rewind needed).
    cluster.node_mut(p).start();
    let names = cluster.wait_streaming_replicas(q, 2).await;
    assert!(names.contains(&cluster.node(p).name().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_primary_cut_off_from_etcd_goes_read_only_before_ttl() {
    let cluster = ClusterFixture::builder("fencing_partition")
        .nodes(3)
        .proxied()
        .start()
        .await;
    let p = cluster.wait_formed().await;
    let mut sampler = cluster.sampler().await;

    let cut_at = Instant::now();
    cluster.cut_dcs(p);
    let q = cluster.wait_new_primary(p).await;
    let demoted_at = sampler
        .first_not_primary(p, cut_at)
        .expect("old primary never stopped being primary");
    let fenced = demoted_at - cut_at;
    eprintln!(
        "fencing: old primary read-only {:.2}s after the cut (ttl {TTL:?})",
        fenced.as_secs_f64()
    );
    assert!(
        fenced < TTL,
        "the isolated primary stayed writable for {fenced:?}"
    );

    // Heal: the old primary rejoins as a replica of the new one.
    cluster.heal_dcs(p);
    let names = cluster.wait_streaming_replicas(q, 2).await;
    assert!(names.contains(&cluster.node(p).name().to_string()));
    sampler.stop_expecting_one_primary().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_etcd_stopped_primary_demotes_and_cluster_recovers() {
    let cluster = ClusterFixture::builder("fencing_etcd_stop")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    let mut sampler = cluster.sampler().await;

    let stop_at = Instant::now();
    cluster.etcd().pause();
    let fenced = wait_for(
        "the primary to fence itself",
        TTL,
        Duration::from_millis(100),
        || async { sampler.first_not_primary(p, stop_at) },
    )
    .await
        - stop_at;
    eprintln!(
        "fencing (etcd stopped): primary read-only {:.2}s after SIGSTOP",
        fenced.as_secs_f64()
    );
    // Keep etcd away for longer than the lease, then bring it back.
    let s = &sampler;
    hold_for(
        "one primary at most while etcd is away",
        TTL,
        Duration::from_millis(200),
        || async move {
            match s.all_split_brains().first() {
                Some(r) => Err(format!("two primaries at once: {r:?}")),
                None => Ok(()),
            }
        },
    )
    .await;
    cluster.etcd().resume();
    let q = cluster.wait_primary().await;
    cluster.wait_streaming_replicas(q, 2).await;
    sampler.stop_expecting_one_primary().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_is_not_promoted() {
    let mut cluster = ClusterFixture::builder("lagging").nodes(3).start().await;
    let p = cluster.wait_formed().await;
    let mut others = (0..3).filter(|i| *i != p);
    let (lag, gone) = (others.next().unwrap(), others.next().unwrap());
    // One replica leaves; the other stops replaying and falls behind by > 1 MB.
    cluster.node_mut(gone).stop_term(Duration::from_secs(30));
    execute(cluster.node(lag), "SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    execute(
        cluster.node(p),
        "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g",
    )
    .await
    .unwrap();
    // the leader publishes its position in /status
    let lsn: i64 = sql(
        cluster.node(p),
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
    )
    .await
    .unwrap()[0]
        .get(0);
    let key = format!("{}status", cluster.prefix());
    let etcd = &cluster.kv();
    wait_for(
        "status optime to include the big write",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let key = key.clone();
            async move {
                let v: Value = serde_json::from_str(&etcd.get(&key).await?).ok()?;
                (v["optime"].as_i64()? >= lsn).then_some(())
            }
        },
    )
    .await;

    cluster.node_mut(p).kill_all();
    // Well past the lease: the lagging replica must not take over.
    let n = cluster.node(lag);
    hold_for(
        "the lagging replica stays a replica",
        TTL + Duration::from_secs(6),
        Duration::from_millis(200),
        || async move {
            match is_in_recovery(n).await {
                Some(true) => {}
                other => return Err(format!("the lagging replica was promoted: {other:?}")),
            }
            match rest_status(n, "/primary").await {
                Some(200) => Err("the lagging replica answers /primary with 200".to_string()),
                _ => Ok(()),
            }
        },
    )
    .await;
    let patroni = rest_json(cluster.node(lag), "/patroni").await.unwrap();
    let reason = patroni["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("maximum_lag_on_failover"),
        "reason: {reason}"
    );
    // Once it replays what it received, it is no longer behind and takes over.
    execute(cluster.node(lag), "SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let q = cluster.wait_primary().await;
    assert_eq!(q, lag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_name_is_refused() {
    let cluster = ClusterFixture::builder("duplicate").nodes(1).start().await;
    let p = cluster.wait_primary().await;
    // A second agent with the same name but its own ports and directory.
    let node = cluster.node(p);
    let dir = cluster.dir().subdir("dup");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = node.config().clone();
    let (rest, pg) = (free_port(), free_port());
    cfg["restapi"]["listen"] = json!(format!("127.0.0.1:{rest}"));
    cfg["restapi"]["connect_address"] = json!(format!("127.0.0.1:{rest}"));
    cfg["postgresql"]["listen"] = json!(format!("127.0.0.1:{pg}"));
    cfg["postgresql"]["connect_address"] = json!(format!("127.0.0.1:{pg}"));
    cfg["postgresql"]["data_dir"] = json!(dir.join("data").display().to_string());
    let path = dir.join("agent.yml");
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    agent_tests::proc::chown_to_postgres(&dir);
    let out = command_as_postgres(&agent_binaries().agent, &dir)
        .arg(&path)
        .output()
        .expect("run a second agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the duplicate agent started");
    assert!(stderr.contains("already a node named"), "stderr: {stderr}");
    assert!(
        !dir.join("data").exists(),
        "the duplicate agent touched a data directory"
    );
    // the original is unaffected
    assert_eq!(rest_status(node, "/primary").await, Some(200));
}

fn write_config(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
scope: s
name: n1
restapi: {listen: "127.0.0.1:1", connect_address: "127.0.0.1:1"}
etcd3: {hosts: ["127.0.0.1:1"]}
bootstrap: {dcs: {ttl: 30, loop_wait: 10, retry_timeout: 10}}
postgresql:
  listen: "127.0.0.1:2"
  connect_address: "127.0.0.1:2"
  data_dir: DATA
  authentication:
    superuser: {username: postgres, password: x}
    replication: {username: rep, password: y}
"#;

#[test]
fn bad_config_is_refused_naming_the_key_and_file() {
    let dir = TestDir::new("bad_config");
    let data = dir.path().join("data");
    let good = GOOD.replace("DATA", &data.display().to_string());
    let cases = [
        (
            "missing.yml",
            good.replace(&format!("  data_dir: {}\n", data.display()), ""),
            "postgresql.data_dir",
        ),
        (
            "type.yml",
            good.replace("ttl: 30", "ttl: soon"),
            "bootstrap.dcs.ttl",
        ),
        (
            "rule.yml",
            good.replace("ttl: 30", "ttl: 20"),
            "bootstrap.dcs.ttl",
        ),
        (
            "syntax.yml",
            good.replace("scope: s", "scope: [s"),
            "syntax.yml",
        ),
    ];
    for (file, text, key) in cases {
        let path = write_config(dir.path(), file, &text);
        let out = command_as_postgres(&agent_binaries().agent, dir.path())
            .arg(&path)
            .output()
            .expect("run agent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{file}: one line expected: {stderr}"
        );
        assert!(
            stderr.contains(key) && stderr.contains(file),
            "{file}: {stderr}"
        );
    }
    assert!(
        !data.exists(),
        "nothing may be started with a bad configuration"
    );
}

#[test]
fn agent_refuses_to_run_as_root() {
    if postgres_ids().is_none() {
        eprintln!("not running as root: nothing to check");
        return;
    }
    let dir = TestDir::new("as_root");
    let data = dir.path().join("data");
    let path = write_config(
        dir.path(),
        "ok.yml",
        &GOOD.replace("DATA", &data.display().to_string()),
    );
    let out = std::process::Command::new(&agent_binaries().agent)
        .arg(&path)
        .output()
        .expect("run agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("refusing to run as root"), "{stderr}");
    assert!(!data.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_primary_agent_is_fenced_and_rejoins_as_replica() {
    let cluster = ClusterFixture::builder("frozen_agent")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    let mut sampler = cluster.sampler().await;

    // The agent freezes (postgres keeps running): its lease runs out, a replica
    // takes over, and the fence must have stopped the old primary before that.
    let frozen_at = Instant::now();
    cluster.node(p).pause_agent();
    let q = cluster.wait_new_primary(p).await;
    let fenced = sampler
        .first_not_primary(p, frozen_at)
        .expect("the frozen agent's postgres stayed primary")
        - frozen_at;
    eprintln!(
        "frozen agent: its postgres stopped {:.2}s after SIGSTOP",
        fenced.as_secs_f64()
    );
    assert!(fenced < TTL, "fenced only after {fenced:?}");

    // Thawed, it sees it lost the lock and comes back as a replica.
    cluster.node(p).resume_agent();
    let names = cluster.wait_streaming_replicas(q, 2).await;
    assert!(names.contains(&cluster.node(p).name().to_string()));
    sampler.stop_expecting_one_primary().await;
}

/// Patroni's default timings (30/10/10): an idle cluster stays exactly as it is
/// over several loops — no spurious demotion when etcd streams sit idle between
/// cycles (a bug the fast test timings could not show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_timings_idle_cluster_stays_stable() {
    let cluster = ClusterFixture::builder("default_timings")
        .nodes(2)
        .ttl(30)
        .loop_wait(10)
        .retry_timeout(10)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    let leader = cluster.leader().await;
    // three loops of idling
    cluster
        .hold_leader("an idle leader", leader.as_deref(), Duration::from_secs(32))
        .await;
    assert_eq!(cluster.leader().await, leader);
    let patroni = rest_json(cluster.node(p), "/patroni").await.unwrap();
    assert_eq!(
        patroni["timeline"], 1,
        "the primary was demoted and promoted again: {patroni}"
    );
    for n in cluster.nodes() {
        let log = std::fs::read_to_string(n.log_path()).unwrap();
        assert!(
            !log.contains("keep-alive failed"),
            "{}: spurious etcd failure:\n{}",
            n.name(),
            n.log_tail(30)
        );
        assert!(
            !log.contains("demot"),
            "{}: demoted:\n{}",
            n.name(),
            n.log_tail(30)
        );
    }
}
