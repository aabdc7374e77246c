//! Synchronous replication against real etcd and PostgreSQL: the sync key and
//! `synchronous_standby_names` agree, sync moves when the standby goes, strict
//! mode blocks writes with no standby, a failover promotes the synchronous
//! standby even when an asynchronous one received more, a stalled replica is
//! neither listed nor promoted before it has every acknowledged commit, tags,
//! cascading replication, permanent slots.

use std::time::{Duration, Instant};

use agent_tests::*;

/// The `sync` key's synchronous standbys (sorted) and leader.
async fn sync_key(cluster: &ClusterFixture) -> Option<(String, Vec<String>)> {
    let v: Value = serde_json::from_str(
        &cluster
            .kv()
            .get(&format!("{}sync", cluster.prefix()))
            .await?,
    )
    .ok()?;
    let mut standbys: Vec<String> = v["sync_standby"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    standbys.sort();
    Some((v["leader"].as_str()?.to_string(), standbys))
}

async fn ssn(node: &Node) -> String {
    sql(node, "SHOW synchronous_standby_names").await.unwrap()[0].get::<_, String>(0)
}

/// Wait until the sync key names exactly `want` (leader `leader`), and the
/// primary's synchronous_standby_names and pg_stat_replication agree.
async fn wait_sync(cluster: &ClusterFixture, leader: usize, want: &[&str]) {
    let c = cluster;
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let want = &want;
    let what = format!("sync standbys {want:?} on {}", c.node(leader).name());
    wait_for_result(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let key = sync_key(c).await.ok_or("no sync key")?;
            if key.0 != c.node(leader).name() || &key.1 != want {
                return Err(format!("sync key {key:?}"));
            }
            let names = ssn(c.node(leader)).await;
            for w in want {
                if !names.contains(w.as_str()) {
                    return Err(format!("synchronous_standby_names = {names:?}"));
                }
            }
            let rows = sql(
                c.node(leader),
                "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut sync: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            sync.sort();
            if &sync != want {
                return Err(format!("pg_stat_replication sync: {sync:?}"));
            }
            Ok(())
        },
    )
    .await
}

async fn enable_sync(cluster: &ClusterFixture, p: usize, extra: Value) {
    let mut body = json!({"synchronous_mode": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let (code, text) = cluster.patch_config(p, body).await;
    assert_eq!(code, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_standby_is_picked_and_moves_when_it_goes() {
    let mut cluster = ClusterFixture::builder("sync_basic").nodes(3).start().await;
    let p = cluster.wait_formed().await;
    enable_sync(&cluster, p, json!({})).await;
    let n = cluster.node(p);
    let one = wait_for(
        "one sync standby",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let key = sync_key_of(n).await?;
            (key.len() == 1).then(|| key[0].clone())
        },
    )
    .await;
    wait_sync(&cluster, p, &[&one]).await;
    // /sync and /async
    let s = cluster.index_of(&one).unwrap();
    let a = (0..3).find(|i| *i != p && *i != s).unwrap();
    assert_eq!(rest_status(cluster.node(s), "/sync").await, Some(200));
    assert_eq!(rest_status(cluster.node(s), "/async").await, Some(503));
    assert_eq!(rest_status(cluster.node(a), "/async").await, Some(200));
    assert_eq!(rest_status(cluster.node(a), "/sync").await, Some(503));
    // the sync standby goes away: the other replica becomes synchronous
    cluster.node_mut(s).stop_term(Duration::from_secs(30));
    let other = cluster.node(a).name().to_string();
    wait_sync(&cluster, p, &[&other]).await;
    // writes keep working
    execute(
        cluster.node(p),
        "CREATE TABLE s1 (v int); INSERT INTO s1 VALUES (1)",
    )
    .await
    .unwrap();
    // turning synchronous mode off clears both
    let (code, _) = cluster
        .patch_config(p, json!({"synchronous_mode": null}))
        .await;
    assert_eq!(code, 200);
    let c = &cluster;
    wait_for("sync key gone and ssn empty", Duration::from_secs(20), Duration::from_millis(200), || async move {
        (sync_key(c).await.is_none() && ssn(c.node(p)).await.is_empty()).then_some(())
    })
    .await;
}

async fn sync_key_of(node: &Node) -> Option<Vec<String>> {
    let cl = rest_json(node, "/cluster").await?;
    let v: Vec<String> = cl["members"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "sync_standby")
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    (!v.is_empty()).then_some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_blocks_writes_without_a_standby_and_resumes() {
    let mut cluster = ClusterFixture::builder("sync_strict")
        .nodes(2)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    enable_sync(&cluster, p, json!({"synchronous_mode_strict": true})).await;
    let r = 1 - p;
    let rn = cluster.node(r).name().to_string();
    wait_sync(&cluster, p, &[&rn]).await;
    execute(cluster.node(p), "CREATE TABLE strict_t (v int)")
        .await
        .unwrap();
    cluster.node_mut(r).stop_term(Duration::from_secs(30));
    // a commit does not return while no standby can confirm it
    let port = cluster.node(p).pg_port();
    let writer = tokio::spawn(async move {
        let client = try_connect(&port).await.unwrap();
        let t0 = Instant::now();
        client
            .batch_execute("INSERT INTO strict_t VALUES (1)")
            .await
            .unwrap();
        (t0.elapsed(), Instant::now())
    });
    let w = &writer;
    hold_for(
        "a commit blocked with no synchronous standby in strict mode",
        Duration::from_secs(4),
        Duration::from_millis(100),
        || async move {
            match w.is_finished() {
                false => Ok(()),
                true => Err("the commit returned".to_string()),
            }
        },
    )
    .await;
    let n = cluster.node(p);
    // a name no member has: never '*', which any walsender (pg_basebackup too) matches
    assert_eq!(ssn(n).await, "__patroni_strict_sync_replica_placeholder__");
    // the standby returns: the commit completes, and not before
    let back = Instant::now();
    cluster.node_mut(r).start();
    let (waited, done) = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the blocked commit never completed")
        .unwrap();
    eprintln!(
        "strict mode: commit waited {:.1}s for a standby",
        waited.as_secs_f64()
    );
    assert!(
        done >= back,
        "the commit returned before the standby came back"
    );
    let rows = sql(cluster.node(p), "SELECT count(*) FROM strict_t")
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_promotes_the_sync_standby_even_if_an_async_one_is_ahead() {
    let mut cluster = ClusterFixture::builder("sync_failover")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    enable_sync(&cluster, p, json!({})).await;
    let n = cluster.node(p);
    let sname = wait_for(
        "a sync standby",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move { sync_key_of(n).await.map(|v| v[0].clone()) },
    )
    .await;
    wait_sync(&cluster, p, &[&sname]).await;
    let s = cluster.index_of(&sname).unwrap();
    let a = (0..3).find(|i| *i != p && *i != s).unwrap();
    execute(
        cluster.node(p),
        "CREATE TABLE acked (v int); INSERT INTO acked VALUES (1)",
    )
    .await
    .unwrap();
    // Freeze the sync standby's WAL receiver: the next commit waits for it, while
    // the async replica receives that commit's WAL and gets ahead.
    let wr = cluster
        .node(s)
        .walreceiver_pid()
        .expect("walreceiver of the sync standby");
    agent_tests::proc::signal(wr, nix::sys::signal::Signal::SIGSTOP);
    let port = cluster.node(p).pg_port();
    let pending = tokio::spawn(async move {
        let c = try_connect(&port).await.ok()?;
        c.batch_execute("INSERT INTO acked VALUES (2)").await.ok()
    });
    let an = cluster.node(a);
    let pos = |node: &Node| {
        let port = node.pg_port();
        async move {
            sql(
                &port,
                "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint",
            )
            .await
            .ok()?[0]
                .get::<_, Option<i64>>(0)
        }
    };
    let before = pos(cluster.node(s)).await.unwrap_or(0);
    wait_for(
        "the async replica to receive more",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move { (pos(an).await? > before).then_some(()) },
    )
    .await;
    assert!(
        !pending.is_finished(),
        "the commit returned without its synchronous standby"
    );
    cluster.node_mut(p).kill_all();
    agent_tests::proc::signal(wr, nix::sys::signal::Signal::SIGCONT);
    let q = cluster.wait_primary().await;
    assert_eq!(
        q, s,
        "the synchronous standby must be promoted, not the async one that is ahead"
    );
    // every acknowledged write is there
    let rows = sql(cluster.node(q), "SELECT count(*) FROM acked WHERE v = 1")
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    // the async replica diverged (it has the unacknowledged commit): it rejoins
    let names = cluster.wait_streaming_replicas(q, 1).await;
    assert!(
        names.contains(&cluster.node(a).name().to_string()),
        "{names:?}"
    );
    // The new primary re-rendered its configuration for synchronous_standby_names
    // after the promotion: that must not have put standby.signal back (a crash
    // would then restart it as a replica, and pg_rewind refuses such a directory).
    assert!(
        !cluster.node(q).data_dir().join("standby.signal").exists(),
        "standby.signal in the data directory of the promoted primary"
    );
    let conf = std::fs::read_to_string(cluster.node(q).data_dir().join("postgresql.conf")).unwrap();
    assert!(
        !conf.contains("primary_conninfo ="),
        "replica settings in the promoted primary's postgresql.conf"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nosync_and_sync_priority_choose_the_standby() {
    let cluster = ClusterFixture::builder("sync_tags")
        .nodes(3)
        .tags(1, json!({"nosync": true}))
        .tags(2, json!({"sync_priority": 5}))
        .start()
        .await;
    let p = cluster.wait_formed().await;
    enable_sync(&cluster, p, json!({"synchronous_node_count": 2})).await;
    // node0 bootstraps unless it lost the race; the tagged nodes decide the rest
    let expect: Vec<String> = (0..3)
        .filter(|i| *i != p && *i != 1)
        .map(|i| cluster.node(i).name().to_string())
        .collect();
    let refs: Vec<&str> = expect.iter().map(String::as_str).collect();
    wait_sync(&cluster, p, &refs).await;
    if p != 1 {
        let key = sync_key(&cluster).await.unwrap();
        assert!(
            !key.1.contains(&cluster.node(1).name().to_string()),
            "a nosync member was made synchronous"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_replication_streams_through_the_named_member() {
    let cluster = ClusterFixture::builder("cascade")
        .nodes(3)
        .tags(2, json!({"replicatefrom": "node1"}))
        .start()
        .await;
    let p = cluster.wait_primary().await;
    if p != 0 {
        return; // the layout below assumes node0 bootstrapped (it starts first)
    }
    cluster.wait_streaming_replicas(0, 1).await;
    let mid = cluster.node(1);
    wait_for(
        "node2 streaming from node1",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async move {
            let rows = sql(
                mid,
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            )
            .await
            .ok()?;
            rows.iter()
                .any(|r| r.get::<_, String>(0) == "node2")
                .then_some(())
        },
    )
    .await;
    let direct = sql(
        cluster.node(0),
        "SELECT application_name FROM pg_stat_replication",
    )
    .await
    .unwrap();
    assert!(
        !direct.iter().any(|r| r.get::<_, String>(0) == "node2"),
        "node2 streams from the primary"
    );
    // node2's slot lives on node1; the leader keeps none for it (it would hold WAL forever)
    let slots_on = |i: usize| {
        let node = cluster.node(i);
        async move {
            sql(node, "SELECT slot_name::text FROM pg_replication_slots")
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, String>(0))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    assert!(
        slots_on(1).await.contains(&"node2".to_string()),
        "no slot for node2 on node1"
    );
    wait_for(
        "the leader without a slot for node2",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async { (!slots_on(0).await.contains(&"node2".to_string())).then_some(()) },
    )
    .await;
    execute(
        cluster.node(0),
        "CREATE TABLE casc (v int); INSERT INTO casc VALUES (3)",
    )
    .await
    .unwrap();
    let leaf = cluster.node(2);
    wait_for(
        "the row on the cascaded replica",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            (sql(leaf, "SELECT count(*) FROM casc").await.ok()?[0].get::<_, i64>(0) == 1)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_slot_survives_failover() {
    let mut cluster = ClusterFixture::builder("perm_slot").nodes(3).start().await;
    let p = cluster.wait_formed().await;
    let (code, body) = cluster
        .patch_config(p, json!({"slots": {"archiver": {"type": "physical"}}}))
        .await;
    assert_eq!(code, 200, "{body}");
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.pg_port()).collect();
    let has_slot = |port: u16| async move {
        let rows = sql(
            &port,
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'archiver'",
        )
        .await
        .ok()?;
        (!rows.is_empty()).then_some(())
    };
    wait_for(
        "the permanent slot on the primary",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || has_slot(ports[p]),
    )
    .await;
    cluster.node_mut(p).kill_all();
    let q = cluster.wait_primary().await;
    assert_ne!(q, p);
    wait_for(
        "the permanent slot on the new primary",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || has_slot(ports[q]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_slot_is_kept_while_the_member_is_away() {
    let mut cluster = ClusterFixture::builder("slot_ttl").nodes(2).start().await;
    let p = cluster.wait_formed().await;
    let r = 1 - p;
    let slot = cluster.node(r).name().to_string();
    let member_key = format!("{}members/{}", cluster.prefix(), slot);
    cluster.node_mut(r).stop_term(Duration::from_secs(30));
    // its member key expires with its lease; the slot stays on the primary
    let etcd = &cluster.kv();
    wait_for(
        "the member key to expire",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let k = member_key.clone();
            async move { etcd.get(&k).await.is_none().then_some(()) }
        },
    )
    .await;
    let pport = cluster.node(p).pg_port();
    let slot_exists = |name: String| async move {
        let rows = sql(
            &pport,
            &format!("SELECT 1 FROM pg_replication_slots WHERE slot_name = '{name}'"),
        )
        .await
        .ok()?;
        Some(!rows.is_empty())
    };
    let slot_ref = &slot;
    hold_for(
        "the departed member's slot",
        Duration::from_secs(3),
        Duration::from_millis(200),
        || async move {
            match slot_exists(slot_ref.clone()).await {
                Some(false) => Err("the slot of a departed member was dropped".to_string()),
                _ => Ok(()),
            }
        },
    )
    .await;
    assert_eq!(
        slot_exists(slot.clone()).await,
        Some(true),
        "the slot of a departed member was dropped"
    );
    let status = etcd
        .get(&format!("{}status", cluster.prefix()))
        .await
        .unwrap();
    assert!(status.contains(&slot), "retain_slots in /status: {status}");
    // it comes back and streams through its old slot
    cluster.node_mut(r).start();
    cluster.wait_streaming_replicas(p, 1).await;
    let rows = sql(
        &pport,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )
    .await
    .unwrap();
    assert!(rows[0].get::<_, bool>(0));
    // with member_slots_ttl 0 a departed member's slot goes at once
    let (code, _) = cluster
        .patch_config(p, json!({"member_slots_ttl": 0}))
        .await;
    assert_eq!(code, 200);
    cluster.node_mut(r).stop_term(Duration::from_secs(30));
    let s2 = slot.clone();
    wait_for(
        "the slot to be dropped",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let s = s2.clone();
            async move { (slot_exists(s).await == Some(false)).then_some(()) }
        },
    )
    .await;
}

/// `flush_lsn` of member `name` as the primary `node` sees it, as bytes.
async fn standby_flush(node: &Node, name: &str) -> Option<i64> {
    let q = format!(
        "SELECT pg_wal_lsn_diff(flush_lsn, '0/0')::bigint FROM pg_stat_replication \
         WHERE application_name = '{name}'"
    );
    sql(node, &q).await.ok()?.first()?.get::<_, Option<i64>>(0)
}

/// Resumes a SIGSTOPped process when the test ends, also when it fails.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        agent_tests::proc::signal(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// Safety rule 8 (issue 9): a replica whose WAL receiver is frozen still shows
/// `streaming`, and turns `sync` as soon as it is named. It must not enter the
/// `sync` key before it has flushed what was acknowledged through the previous
/// synchronous standby, and so it must not be promoted when that standby and
/// then the primary die.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_replica_is_not_admitted_to_sync_nor_promoted() {
    let mut cluster = ClusterFixture::builder("sync_stalled")
        .nodes(3)
        .configure(|_, cfg| {
            let dcs = &mut cfg["bootstrap"]["dcs"];
            dcs["synchronous_mode"] = json!(true);
            // Out of the way, so that only rule 8 stands between the stalled
            // replica and a promotion: the lag guard is a separate rule.
            dcs["maximum_lag_on_failover"] = json!(1u64 << 32);
            // The frozen receiver must stay `streaming` for the whole test.
            dcs["postgresql"]["parameters"]["wal_sender_timeout"] = json!("10min");
        })
        .start()
        .await;
    let p = cluster.wait_formed().await;
    let n = cluster.node(p);
    let aname = wait_for(
        "a sync standby",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move { sync_key_of(n).await.map(|v| v[0].clone()) },
    )
    .await;
    wait_sync(&cluster, p, &[&aname]).await;
    let a = cluster.index_of(&aname).unwrap();
    let b = (0..3).find(|i| *i != p && *i != a).unwrap();
    let bname = cluster.node(b).name().to_string();

    // Freeze B's WAL receiver; its walsender on the primary stays `streaming`.
    let wr = cluster
        .node(b)
        .walreceiver_pid()
        .expect("walreceiver of the replica");
    assert!(agent_tests::proc::signal(
        wr,
        nix::sys::signal::Signal::SIGSTOP
    ));
    let _resume = Resume(wr);

    // A few MB, then marker rows, each acknowledged through A.
    execute(
        cluster.node(p),
        "CREATE TABLE bulk (v text); CREATE TABLE marker (v int); \
         INSERT INTO bulk SELECT repeat(md5(g::text), 32) FROM generate_series(1, 24000) g",
    )
    .await
    .unwrap();
    const MARKERS: i64 = 20;
    for i in 0..MARKERS {
        execute(cluster.node(p), &format!("INSERT INTO marker VALUES ({i})"))
            .await
            .unwrap();
    }
    let acked = sql(
        cluster.node(p),
        "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint",
    )
    .await
    .unwrap()[0]
        .get::<_, i64>(0);
    let b_flush = standby_flush(cluster.node(p), &bname).await.unwrap_or(0);
    assert!(
        b_flush < acked,
        "the stalled replica has everything ({b_flush} >= {acked}): the stall did not work"
    );

    // A dies: the primary names B in synchronous_standby_names.
    cluster.node_mut(a).kill_all();
    let pn = cluster.node(p);
    let bn = bname.as_str();
    wait_for_result(
        "the primary to name the stalled replica",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let names = ssn(pn).await;
            if names.contains(bn) {
                Ok(())
            } else {
                Err(format!("synchronous_standby_names = {names:?}"))
            }
        },
    )
    .await;
    // For several cycles (loop_wait 1 s), the sync key must not list B while B
    // is behind the acknowledged position.
    let mut violations: Vec<String> = vec![];
    let (c, bname_ref) = (&cluster, &bname);
    let listed_behind = holds_for(
        Duration::from_secs(6),
        Duration::from_millis(100),
        || async move {
            if let Some((leader, standbys)) = sync_key(c).await {
                if standbys.contains(bname_ref) {
                    let f = standby_flush(c.node(p), bname_ref).await.unwrap_or(0);
                    if f < acked {
                        return Err(format!(
                            "the sync key {{leader {leader}, {standbys:?}}} lists {bname_ref}, \
                         flushed to {f} while {acked} was acknowledged"
                        ));
                    }
                }
            }
            Ok(())
        },
    )
    .await;
    violations.extend(listed_behind.err());

    // The primary dies: B must not take over (it lacks acknowledged commits).
    cluster.node_mut(p).kill_all();
    let c = &cluster;
    let took_over = holds_for(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async move {
            match c.leader().await.as_deref() == Some(bn) {
                true => Err(format!("{bname_ref} took the leader key")),
                false => Ok(()),
            }
        },
    )
    .await;
    violations.extend(took_over.err());
    // Let everything converge: B's receiver resumes, the old primary comes back.
    drop(_resume);
    cluster.node_mut(p).start();
    let q = cluster.wait_primary().await;
    let have = sql(cluster.node(q), "SELECT count(*) FROM marker")
        .await
        .map(|r| r[0].get::<_, i64>(0))
        .unwrap_or(0);
    if have != MARKERS {
        violations.push(format!(
            "{} is primary with {have} of {MARKERS} acknowledged marker rows",
            cluster.node(q).name()
        ));
    }
    assert!(violations.is_empty(), "{}", violations.join("; "));
    assert_eq!(q, p, "only the old primary had every acknowledged commit");
    // B catches up and becomes the synchronous standby again.
    wait_sync(&cluster, p, &[&bname]).await;
}
