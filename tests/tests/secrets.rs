//! Secrets stay secret through a whole cluster life: bootstrap, clone, switchover,
//! failover, rewind. The passwords (distinctive strings) come from `PATRONI_*`
//! variables only; afterwards none of them may appear in
//!
//! - the environment or command line of any process the agents started
//!   (postgres and its backends, initdb, pg_basebackup, pg_rewind), sampled every
//!   50 ms while the cluster lives; nor any `PATRONI_*` variable there;
//! - the agents' logs, `GET /patroni`, `GET /config`, the whole etcd keyspace;
//! - `postgresql.conf`, `postgresql.auto.conf`, `postgresql.base.conf`.
//!
//! Only the passfile (mode 0600) holds the database passwords.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_tests::*;

const SU_PW: &str = "Su-Pw-8Xq1zK";
const REP_PW: &str = "Rep-Pw-3Jd9vL";
const RW_PW: &str = "Rw-Pw-5Tn2cM";
const API_PW: &str = "Api-Pw-7Hb4wQ";
const SECRETS: [&str; 4] = [SU_PW, REP_PW, RW_PW, API_PW];
const WAIT: Duration = Duration::from_secs(120);

/// What the sampler saw: the names of the processes it read, and every leak.
#[derive(Default)]
struct Seen {
    comms: BTreeSet<String>,
    leaks: Vec<String>,
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `(pid, ppid, comm)` of every process.
fn processes() -> Vec<(i32, i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = read(format!("/proc/{pid}/stat"))?;
        // comm is in parentheses and may contain spaces
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        Some((pid, ppid, comm))
    })
    .collect()
}

/// One pass: every descendant of the agents running `agent_bin` with a config in
/// `test_dir`, its environment and command line checked.
fn sample(agent_bin: &Path, test_dir: &str, seen: &Mutex<Seen>) {
    let procs = processes();
    let agents: BTreeSet<i32> = procs
        .iter()
        .filter(|(pid, _, _)| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .as_deref()
                == Some(agent_bin)
                && read(format!("/proc/{pid}/cmdline")).is_some_and(|c| c.contains(test_dir))
        })
        .map(|(pid, _, _)| *pid)
        .collect();
    let parent: HashMap<i32, i32> = procs.iter().map(|(p, pp, _)| (*p, *pp)).collect();
    for (pid, _, comm) in &procs {
        let mut up = parent.get(pid).copied();
        let mut hops = 0;
        let mut descendant = false;
        while let Some(p) = up.filter(|p| *p > 1 && hops < 64) {
            if agents.contains(&p) {
                descendant = true;
                break;
            }
            up = parent.get(&p).copied();
            hops += 1;
        }
        if !descendant {
            continue;
        }
        let (Some(environ), Some(cmdline)) = (
            read(format!("/proc/{pid}/environ")),
            read(format!("/proc/{pid}/cmdline")),
        ) else {
            continue; // exited meanwhile
        };
        let mut s = seen.lock().unwrap();
        s.comms.insert(comm.clone());
        for var in environ.split('\0').filter(|v| v.starts_with("PATRONI_")) {
            let name = var.split('=').next().unwrap_or(var);
            s.leaks
                .push(format!("{comm} (pid {pid}) has {name} in its environment"));
        }
        for secret in SECRETS {
            if environ.contains(secret) {
                s.leaks
                    .push(format!("{comm} (pid {pid}): a password in its environment"));
            }
            if cmdline.contains(secret) {
                s.leaks.push(format!(
                    "{comm} (pid {pid}): a password on its command line"
                ));
            }
        }
    }
}

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} contains the password {secret}"
        );
    }
}

async fn wait_leader(cluster: &ClusterFixture, name: &str) {
    wait_for(
        &format!("{name} holds the leader key and is writable"),
        WAIT,
        Duration::from_millis(200),
        || async {
            let i = cluster.index_of(name)?;
            (cluster.leader().await.as_deref() == Some(name)
                && is_in_recovery(cluster.node(i)).await == Some(false))
            .then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_leaks_through_a_cluster_life() {
    let mut cluster = ClusterFixture::builder("secrets")
        .nodes(2)
        .start_agents(false)
        .configure(|_, c| {
            let auth = &mut c["postgresql"]["authentication"];
            for user in ["superuser", "replication", "rewind"] {
                auth[user].as_object_mut().unwrap().remove("password");
            }
            // The harness's own SQL connections log in as postgres over loopback
            // without the (secret) password; everything else needs its password.
            c["postgresql"]["pg_hba"] = json!([
                "local all all trust",
                "host replication replicator 127.0.0.1/32 scram-sha-256",
                "host all rewind_user 127.0.0.1/32 scram-sha-256",
                "host all postgres 127.0.0.1/32 trust",
            ]);
        })
        .start()
        .await;
    for node in cluster.nodes_mut() {
        node.set_env("PATRONI_SUPERUSER_PASSWORD", SU_PW);
        node.set_env("PATRONI_REPLICATION_PASSWORD", REP_PW);
        node.set_env("PATRONI_REWIND_PASSWORD", RW_PW);
        node.set_env("PATRONI_RESTAPI_USERNAME", "admin");
        node.set_env("PATRONI_RESTAPI_PASSWORD", API_PW);
    }

    // Sample the agents' children for the whole life of the cluster.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let bin: PathBuf = agent_binaries().agent.clone();
        let dir = cluster.dir().path().display().to_string();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sample(&bin, &dir, &seen);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Bootstrap and clone.
    cluster.start_all();
    let p = cluster.wait_primary().await;
    cluster.wait_streaming_replicas(p, 1).await;
    let r = 1 - p;
    let (p_name, r_name) = (
        cluster.node(p).name().to_string(),
        cluster.node(r).name().to_string(),
    );

    // Switchover through agentctl, with the REST credentials from the environment.
    let ctl = Cli::agentctl(cluster.node(p).config_path())
        .env("PATRONI_RESTAPI_USERNAME", "admin")
        .env("PATRONI_RESTAPI_PASSWORD", API_PW);
    ctl.switchover(None, &p_name, &r_name).await;
    wait_leader(&cluster, &r_name).await;
    cluster.wait_streaming_replicas(r, 1).await;

    // Failover: the new leader crashes, the old one takes over; the crashed one
    // comes back, rewinds and follows.
    cluster.node_mut(r).kill_all();
    wait_leader(&cluster, &p_name).await;
    execute(cluster.node(p), "CREATE TABLE after_failover (v int)")
        .await
        .unwrap();
    cluster.node_mut(r).start();
    cluster.wait_streaming_replicas(p, 1).await;

    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!("processes sampled: {:?}", seen.comms);
    assert!(seen.leaks.is_empty(), "leaks:\n{}", seen.leaks.join("\n"));
    assert!(seen.comms.contains("postgres"), "{:?}", seen.comms);

    // The REST API, etcd and the logs.
    for node in cluster.nodes() {
        for path in ["/patroni", "/config", "/cluster"] {
            let v = rest_json(node, path).await.unwrap();
            assert_clean(&format!("GET {path} on {}", node.name()), &v.to_string());
        }
        let log = std::fs::read_to_string(node.log_path()).unwrap();
        assert!(log.contains("pg_basebackup") || log.contains("initdb"));
        assert_clean(&format!("{}'s log", node.name()), &log);
        for file in [
            "postgresql.conf",
            "postgresql.auto.conf",
            "postgresql.base.conf",
        ] {
            if let Ok(text) = std::fs::read_to_string(node.data_dir().join(file)) {
                assert_clean(&format!("{}'s {file}", node.name()), &text);
            }
        }
        // The passfile is where the database passwords live.
        let pgpass = std::fs::read_to_string(node.dir().join("pgpass")).unwrap();
        assert!(pgpass.contains(REP_PW) && pgpass.contains(RW_PW));
    }
    let keys = cluster.kv().get_prefix("/").await;
    assert!(keys.len() > 3, "{keys:?}");
    for (k, v) in keys {
        assert_clean(&format!("etcd key {k}"), &format!("{k}={v}"));
    }
}
