//! Smoke tests of the harness itself: programs are found (or the missing one is
//! named), ports are distinct, test directories belong to `postgres`, etcd
//! starts and can be paused, and the uid switch lets initdb and postgres run.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use agent_tests::proc::{pid_alive, proc_state};
use agent_tests::*;

/// The uid files and processes of PostgreSQL should have: `postgres` when we are root.
fn expected_uid() -> u32 {
    postgres_ids()
        .map(|(uid, _)| uid.as_raw())
        .unwrap_or_else(|| nix::unistd::geteuid().as_raw())
}

#[test]
fn require_finds_installed_programs() {
    assert!(require("etcd", "etcd-server").is_file());
    // Not on PATH on Debian: found in /usr/lib/postgresql/*/bin.
    assert!(require("initdb", "postgresql-15").is_file());
    assert!(pg_bin("pg_ctl").ends_with("15/bin/pg_ctl"));
}

#[test]
#[should_panic(
    expected = "missing no-such-binary-xyz: install the Debian package no-such-package \
                (apt-get install no-such-package)"
)]
fn require_panics_naming_the_package() {
    require("no-such-binary-xyz", "no-such-package");
}

#[test]
fn free_ports_are_distinct_across_threads() {
    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<u16>>()))
        .collect();
    let all: Vec<u16> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("port thread"))
        .collect();
    let distinct: BTreeSet<u16> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a port was handed out twice");
    for p in all.iter().take(20) {
        std::net::TcpListener::bind(("127.0.0.1", *p))
            .unwrap_or_else(|e| panic!("port {p} from free_port() is not free: {e}"));
    }
}

#[test]
fn test_dir_belongs_to_postgres_and_is_removed() {
    let dir = TestDir::new("test_dir_belongs_to_postgres");
    let path = dir.path().to_path_buf();
    let sub = dir.subdir("node0");
    for p in [&path, &sub] {
        let m = std::fs::metadata(p).expect("dir exists");
        assert!(m.is_dir());
        assert_eq!(m.uid(), expected_uid(), "{} owner", p.display());
        assert_eq!(
            m.permissions().mode() & 0o777,
            0o755,
            "{} mode",
            p.display()
        );
    }
    assert!(path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(&format!("-{}-", std::process::id()))));
    drop(dir);
    assert!(!path.exists(), "{} should be removed", path.display());
}

#[test]
fn test_dir_is_kept_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let dir = TestDir::new("kept_on_panic");
        std::fs::write(dir.path().join("agent.log"), "line 1\nthe last line\n").unwrap();
        tx.send(dir.path().to_path_buf()).unwrap();
        panic!("deliberate failure inside a test");
    })
    .join();
    assert!(result.is_err());
    let path = rx.recv().expect("the thread sent its path");
    assert!(
        path.join("agent.log").is_file(),
        "failed test's dir must be kept"
    );
    std::fs::remove_dir_all(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "timed out after 300ms waiting for the impossible")]
async fn wait_for_names_what_it_waited_for() {
    wait_for(
        "the impossible",
        Duration::from_millis(300),
        Duration::from_millis(50),
        || async { None::<()> },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_returns_the_value() {
    let mut n = 0;
    let v = wait_for(
        "the third poll",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || {
            n += 1;
            let n = n;
            async move { (n >= 3).then_some(n) }
        },
    )
    .await;
    assert_eq!(v, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_fixture_keys_pause_resume_and_restart() {
    let dir = TestDir::new("etcd_fixture");
    let mut etcd = EtcdFixture::start(&dir).await;
    assert!(etcd.endpoint().starts_with("127.0.0.1:"));
    assert!(etcd.is_healthy().await);
    let kv = etcd.client();

    kv.put("/service/smoke/leader", "node0").await;
    kv.put("/service/smoke/members/node0", r#"{"role":"primary"}"#)
        .await;
    kv.put("/service/smokey/other", "not in the prefix").await;
    assert_eq!(
        kv.get("/service/smoke/leader").await.as_deref(),
        Some("node0")
    );
    assert_eq!(kv.get("/service/smoke/nothing").await, None);
    assert_eq!(
        kv.get_prefix("/service/smoke/").await,
        vec![
            ("/service/smoke/leader".to_string(), "node0".to_string()),
            (
                "/service/smoke/members/node0".to_string(),
                r#"{"role":"primary"}"#.to_string()
            ),
        ]
    );
    assert_eq!(kv.delete("/service/smoke/leader").await, 1);
    assert_eq!(kv.get("/service/smoke/leader").await, None);

    // Paused: the process is stopped and requests time out.
    let pid = etcd.pid().expect("etcd running") as i32;
    etcd.pause();
    wait_for(
        "etcd stopped",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { (proc_state(pid) == Some('T')).then_some(()) },
    )
    .await;
    assert!(!etcd.is_healthy().await, "a paused etcd cannot answer");
    assert!(kv.try_get("/service/smoke/members/node0").await.is_err());
    etcd.resume();
    let e = &etcd;
    wait_for(
        "etcd healthy after resume",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async move { e.is_healthy().await.then_some(()) },
    )
    .await;

    // Killed: gone; restarted on the same port with the same data.
    etcd.kill();
    assert!(!pid_alive(pid));
    assert!(etcd.pid().is_none());
    assert!(!etcd.is_healthy().await);
    etcd.restart().await;
    assert_eq!(
        kv.get("/service/smoke/members/node0").await.as_deref(),
        Some(r#"{"role":"primary"}"#)
    );

    // Drop kills even a paused etcd.
    let pid = etcd.pid().expect("etcd running") as i32;
    etcd.pause();
    drop(etcd);
    assert!(!pid_alive(pid), "dropped etcd must be gone");
    assert!(dir.path().join("etcd.log").is_file());
}

#[test]
fn initdb_runs_as_postgres() {
    let dir = TestDir::new("initdb_runs_as_postgres");
    let home = dir.subdir("pg");
    let data = home.join("data");
    let out = command_as_postgres(pg_bin("initdb"), &home)
        .arg("-D")
        .arg(&data)
        .args(["--no-sync", "--auth=trust"])
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let version = std::fs::read_to_string(data.join("PG_VERSION")).expect("PG_VERSION");
    assert_eq!(version.trim(), "15");
    let m = std::fs::metadata(&data).unwrap();
    assert_eq!(m.uid(), expected_uid());
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fixture_runs_as_postgres_and_answers_sql() {
    let dir = TestDir::new("postgres_fixture");
    let mut pg = PostgresFixture::start(&dir, "pg").await;
    assert!(pg.data_dir().join("PG_VERSION").is_file());

    let rows = sql(
        &pg,
        "SELECT current_user::text, current_setting('server_version_num')::int",
    )
    .await
    .expect("query");
    assert_eq!(rows[0].get::<_, String>(0), "postgres");
    assert!(rows[0].get::<_, i32>(1) / 10000 == 15);
    assert_eq!(is_in_recovery(&pg).await, Some(false));
    assert!(can_write(&pg).await);
    execute(&pg, "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
        .await
        .expect("execute");
    let rows = sql(&pg, "SELECT count(*) FROM t").await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 2);

    // The server process runs as postgres (real uid, fourth field is fs uid).
    let pid = pg.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|u| u.parse().unwrap())
        .collect();
    assert!(uids.iter().all(|u| *u == expected_uid()), "{uid_line}");
    assert_eq!(proc::postmaster_pid(pg.data_dir()), Some(pid as i32));

    pg.stop();
    assert!(!pid_alive(pid as i32));
    assert!(try_connect(&pg).await.is_err());
    assert_eq!(is_in_recovery(&pg).await, None);
    assert!(!can_write(&pg).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_configs_are_written_without_starting_agents() {
    let cluster = ClusterFixture::builder("cluster_configs")
        .nodes(2)
        .ttl(9)
        .tags(1, json!({"nofailover": true}))
        .configure(|i, cfg| cfg["tags"]["zone"] = json!(format!("z{i}")))
        .start_agents(false)
        .start()
        .await;
    assert_eq!(cluster.len(), 2);
    assert_eq!(cluster.names(), vec!["node0", "node1"]);
    assert_eq!(cluster.prefix(), "/service/cluster_configs/");
    assert!(cluster.etcd().is_healthy().await);
    assert_eq!(cluster.leader().await, None);

    let mut ports = BTreeSet::new();
    for n in cluster.nodes() {
        assert!(ports.insert(n.rest_port()) && ports.insert(n.pg_port()));
        assert_eq!(n.pid(), None);
        let text = std::fs::read_to_string(n.config_path()).unwrap();
        let cfg: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(&cfg, n.config());
        assert_eq!(cfg["scope"], "cluster_configs");
        assert_eq!(cfg["name"], n.name());
        assert_eq!(cfg["etcd3"]["hosts"][0], json!(cluster.etcd().endpoint()));
        assert_eq!(cfg["bootstrap"]["dcs"]["ttl"], 9);
        assert_eq!(cfg["bootstrap"]["dcs"]["loop_wait"], 1);
        assert_eq!(
            cfg["postgresql"]["listen"],
            json!(format!("127.0.0.1:{}", n.pg_port()))
        );
        assert_eq!(
            cfg["postgresql"]["data_dir"],
            json!(n.data_dir().to_str().unwrap())
        );
        assert_eq!(cfg["tags"]["zone"], json!(format!("z{}", n.index())));
        let m = std::fs::metadata(n.config_path()).unwrap();
        assert_eq!(m.uid(), expected_uid());
        assert_eq!(std::fs::metadata(n.dir()).unwrap().uid(), expected_uid());
        assert!(!n.data_dir().exists(), "the agent creates the data dir");
    }
    assert_eq!(cluster.node(1).config()["tags"]["nofailover"], true);
    assert!(cluster.node(0).config()["tags"].get("nofailover").is_none());
}

/// `EtcdMode::Three` with `.proxied()` (the chaos local target's shape): each
/// node reaches every member through its own proxy, a cut node's proxies pass
/// nothing while the others still do, and pausing two members loses the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_etcd_through_per_node_proxies() {
    let mut cluster = ClusterFixture::builder("etcd_three_proxied")
        .nodes(2)
        .etcd(EtcdMode::Three)
        .proxied()
        .start_agents(false)
        .start()
        .await;
    let members = cluster.etcd_endpoints();
    assert_eq!(members.len(), 3);
    let hosts_of = |i: usize| -> Vec<String> {
        serde_json::from_value(cluster.node(i).config()["etcd3"]["hosts"].clone()).unwrap()
    };
    let (hosts0, hosts1) = (hosts_of(0), hosts_of(1));
    assert_eq!(hosts0.len(), 3);
    for h in hosts0.iter().chain(&hosts1) {
        assert!(!members.contains(h), "{h} is an etcd member, not a proxy");
    }
    assert!(
        hosts0.iter().all(|h| !hosts1.contains(h)),
        "proxies are per node"
    );

    let key = format!("{}smoke", cluster.prefix());
    cluster.kv().put(&key, "through any member").await;
    let (via0, via1) = (EtcdClient::new(hosts0), EtcdClient::new(hosts1));
    assert_eq!(via0.get(&key).await.as_deref(), Some("through any member"));

    // Node 0 cut off: nothing passes its proxies; node 1 still gets through.
    cluster.cut_dcs(0);
    assert!(
        via0.try_get(&key).await.is_err(),
        "a cut proxy passed a request"
    );
    assert_eq!(via1.get(&key).await.as_deref(), Some("through any member"));
    cluster.heal_dcs(0);
    assert_eq!(via0.get(&key).await.as_deref(), Some("through any member"));

    // Two of three members paused: no quorum, so a (linearizable) read fails.
    cluster.etcd_members().pause(1);
    cluster.etcd_members().pause(2);
    assert!(
        cluster.kv().try_get(&key).await.is_err(),
        "read without a quorum"
    );
    cluster.etcd_members().resume_all();
    let kv = cluster.kv();
    let key = &key;
    wait_for(
        "the quorum back",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let kv = kv.clone();
            async move { kv.try_get(key).await.ok().flatten() }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_builds_and_accepts_the_generated_configs() {
    let bins = agent_binaries();
    for b in [&bins.agent, &bins.agentctl] {
        let m = std::fs::metadata(b).unwrap();
        assert_eq!(m.permissions().mode() & 0o755, 0o755, "{}", b.display());
    }
    let cluster = ClusterFixture::builder("agent_accepts_configs")
        .nodes(2)
        .start_agents(false)
        .start()
        .await;
    for n in cluster.nodes() {
        let out = command_as_postgres(&bins.agent, n.dir())
            .arg("--validate-config")
            .arg(n.config_path())
            .output()
            .expect("run agent --validate-config");
        assert!(
            out.status.success(),
            "agent rejects {}: {}{}",
            n.config_path().display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "agent warns about {}: {}",
            n.config_path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The cluster fixture end to end with the real agent: it forms a cluster, the
/// node controls act on the right processes, and dropping the fixture leaves
/// no agent or postmaster behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_fixture_controls_and_cleans_up_processes() {
    let mut cluster = ClusterFixture::builder("cluster_fixture_lifecycle")
        .nodes(2)
        .start()
        .await;
    let p = cluster.wait_primary().await;
    let r = 1 - p;
    let replicas = cluster.wait_streaming_replicas(p, 1).await;
    assert_eq!(replicas, vec![cluster.node(r).name().to_string()]);
    assert_eq!(
        cluster.leader().await.as_deref(),
        Some(cluster.node(p).name())
    );
    assert_eq!(is_in_recovery(cluster.node(r)).await, Some(true));
    assert!(!can_write(cluster.node(r)).await);
    let patroni = rest_json(cluster.node(p), "/patroni")
        .await
        .expect("GET /patroni");
    assert_eq!(patroni["patroni"]["name"], cluster.node(p).name());
    assert!(cluster
        .kv()
        .get_prefix(&format!("{}members/", cluster.prefix()))
        .await
        .iter()
        .any(|(k, _)| k.ends_with(cluster.node(r).name())));

    // Pause and resume act on the agent process only.
    let agent = cluster.node(r).pid().expect("agent running") as i32;
    cluster.node(r).pause_agent();
    wait_for(
        "agent stopped",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { (proc_state(agent) == Some('T')).then_some(()) },
    )
    .await;
    cluster.node(r).resume_agent();
    assert_ne!(proc_state(agent), Some('T'));

    // SIGTERM stops the agent; start brings the replica back.
    let status = cluster.node_mut(r).stop_term(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "agent did not stop on SIGTERM within 30 s"
    );
    assert!(!cluster.node_mut(r).is_running());
    cluster.node_mut(r).start();
    assert!(cluster.node_mut(r).is_running());
    cluster.wait_streaming_replicas(p, 1).await;

    // kill_postgres SIGKILLs exactly the postmaster of that node.
    let pm = cluster
        .node(r)
        .postmaster_pid()
        .expect("replica postmaster");
    assert_ne!(Some(pm), cluster.node(p).postmaster_pid());
    assert_eq!(cluster.node(r).kill_postgres(), Some(pm));
    wait_for(
        "killed postmaster gone",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { (!pid_alive(pm)).then_some(()) },
    )
    .await;

    // Drop: agents, postmasters and etcd are all gone, and so is the directory.
    let mut pids: Vec<i32> = cluster
        .nodes()
        .iter()
        .filter_map(|n| n.pid().map(|p| p as i32))
        .collect();
    pids.extend(cluster.nodes().iter().filter_map(|n| n.postmaster_pid()));
    pids.push(cluster.etcd().pid().expect("etcd running") as i32);
    let path = cluster.dir().path().to_path_buf();
    drop(cluster);
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} survived the fixture");
    }
    assert!(!path.exists());
}
