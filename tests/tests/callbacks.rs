//! Patroni's user scripts against real etcd and PostgreSQL: the callbacks
//! (`postgresql.callbacks.*`) get `action role scope` at the right moment;
//! `before_stop` runs before postgres stops; a failing `pre_promote` keeps a
//! node from promoting and makes it let go of the leader key.
//!
//! Each node's scripts append one line per call to `callbacks.log` in its
//! directory: `<unix time> <name> <arguments>`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_tests::proc::chown_to_postgres;
use agent_tests::wait::POLL;
use agent_tests::*;

/// Write an executable script owned by postgres.
fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_to_postgres(path);
}

fn node_dir(cfg: &serde_json::Value) -> PathBuf {
    Path::new(cfg["postgresql"]["data_dir"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Configure every node's scripts. `pre_promote` exits with the number in
/// `pre_promote_rc` of the node's directory (0 when the file is absent).
fn with_scripts(builder: ClusterBuilder) -> ClusterBuilder {
    builder.configure(|_, cfg| {
        let dir = node_dir(cfg);
        let log = dir.join("callbacks.log");
        let log = log.display();
        let cb = dir.join("callback.sh");
        write_script(&cb, &format!("echo \"$(date +%s.%N) callback $*\" >> {log}"));
        let before_stop = dir.join("before_stop.sh");
        write_script(
            &before_stop,
            &format!("echo \"$(date +%s.%N) before_stop $*\" >> {log}"),
        );
        let pre_promote = dir.join("pre_promote.sh");
        let rc = dir.join("pre_promote_rc");
        write_script(
            &pre_promote,
            &format!(
                "echo \"$(date +%s.%N) pre_promote $*\" >> {log}\nexit $(cat {} 2>/dev/null || echo 0)",
                rc.display()
            ),
        );
        // a command line with an argument, split without a shell
        let cmd = format!("{} 'quoted arg'", cb.display());
        let pg = cfg["postgresql"].as_object_mut().unwrap();
        pg.insert(
            "callbacks".into(),
            json!({
                "on_start": cmd,
                "on_stop": cmd,
                "on_restart": cmd,
                "on_reload": cmd,
                "on_role_change": cmd,
            }),
        );
        pg.insert("pre_promote".into(), json!(pre_promote.display().to_string()));
        pg.insert("before_stop".into(), json!(before_stop.display().to_string()));
    })
}

/// The node's script calls so far, without the timestamps.
fn calls(node: &Node) -> Vec<String> {
    std::fs::read_to_string(node.dir().join("callbacks.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.trim().to_string()))
        .collect()
}

/// Wait until the node's log has `line` after the first `after` calls; returns
/// its index.
async fn wait_call(cluster: &ClusterFixture, i: usize, line: &str, after: usize) -> usize {
    let node = cluster.node(i);
    wait_for_result(
        &format!("{}: callback `{line}`", node.name()),
        cluster.wait_timeout(),
        POLL,
        || async {
            let c = calls(node);
            c.iter()
                .skip(after)
                .position(|l| l == line)
                .map(|p| p + after)
                .ok_or_else(|| format!("calls so far: {c:?}"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_get_action_role_scope_at_the_right_moment() {
    let cluster = with_scripts(ClusterFixture::builder("callbacks"))
        .nodes(2)
        .start()
        .await;
    let scope = cluster.scope().to_string();
    let cb = |action: &str, role: &str| format!("callback quoted arg {action} {role} {scope}");
    let p = cluster.wait_healthy().await;
    let r = 1 - p;
    cluster.wait_streaming_replicas(p, 1).await;

    // bootstrap: on_start as primary; the clone: on_start as replica
    wait_call(&cluster, p, &cb("on_start", "primary"), 0).await;
    wait_call(&cluster, r, &cb("on_start", "replica"), 0).await;

    // switchover: pre_promote then on_role_change primary on the candidate;
    // before_stop, on_stop (demoted) and on_role_change replica on the old leader
    let (np, nr) = (calls(cluster.node(p)).len(), calls(cluster.node(r)).len());
    let (code, body) = rest_call(
        cluster.node(p),
        "POST",
        "/switchover",
        Some(&json!({"leader": cluster.node(p).name(), "candidate": cluster.node(r).name()})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(cluster.wait_primary().await, r);
    let pre = wait_call(&cluster, r, "pre_promote", nr).await;
    wait_call(&cluster, r, &cb("on_role_change", "primary"), pre).await;
    let stop = wait_call(&cluster, p, "before_stop", np).await;
    let on_stop = wait_call(&cluster, p, &cb("on_stop", "demoted"), stop).await;
    wait_call(&cluster, p, &cb("on_role_change", "replica"), on_stop).await;
    cluster.wait_streaming_replicas(r, 1).await;

    // restart of the replica: before_stop, then on_restart (no on_stop/on_start)
    let n = calls(cluster.node(p)).len();
    let (code, body) = rest_call(cluster.node(p), "POST", "/restart", Some(&json!({}))).await;
    assert_eq!(code, 200, "{body}");
    let stop = wait_call(&cluster, p, "before_stop", n).await;
    wait_call(&cluster, p, &cb("on_restart", "replica"), stop).await;
    let since: Vec<String> = calls(cluster.node(p)).split_off(n);
    assert!(
        !since
            .iter()
            .any(|l| l.contains(" on_stop ") || l.contains(" on_start ")),
        "{since:?}"
    );

    // reload of the primary: on_reload primary
    let n = calls(cluster.node(r)).len();
    let (code, body) = rest_call(cluster.node(r), "POST", "/reload", None).await;
    assert!(code == 200 || code == 202, "{code} {body}");
    wait_call(&cluster, r, &cb("on_reload", "primary"), n).await;

    // stopping the replica's agent: before_stop, then on_stop replica
    let mut cluster = cluster;
    let n = calls(cluster.node(p)).len();
    assert!(cluster
        .node_mut(p)
        .stop_term(Duration::from_secs(120))
        .is_some());
    let stop = wait_call(&cluster, p, "before_stop", n).await;
    wait_call(&cluster, p, &cb("on_stop", "replica"), stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pre_promote_never_promotes_and_releases_the_key() {
    let mut cluster = with_scripts(ClusterFixture::builder("pre-promote"))
        .nodes(2)
        .start()
        .await;
    let p = cluster.wait_healthy().await;
    let r = 1 - p;
    cluster.wait_streaming_replicas(p, 1).await;
    let rc = cluster.node(r).dir().join("pre_promote_rc");
    std::fs::write(&rc, "1\n").unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o644)).unwrap();

    // the leader goes away (its agent stops postgres and releases the key)
    assert!(cluster
        .node_mut(p)
        .stop_term(Duration::from_secs(120))
        .is_some());
    let replica = cluster.node(r).name().to_string();
    // the replica races, runs pre_promote, fails, lets go of the key, and
    // (after the ttl backoff) tries again: all the while still in recovery and
    // never the holder of the key once the script has failed
    let first = wait_call(&cluster, r, "pre_promote", 0).await;
    wait_for_result(
        "a second failed pre_promote",
        cluster.wait_timeout(),
        POLL,
        || async {
            let rows = sql(cluster.node(r), "SELECT pg_is_in_recovery()").await;
            if let Ok(rows) = &rows {
                assert!(rows[0].get::<_, bool>(0), "{replica} was promoted");
            }
            let c = calls(cluster.node(r));
            let n = c
                .iter()
                .skip(first + 1)
                .filter(|l| *l == "pre_promote")
                .count();
            (n >= 1)
                .then_some(())
                .ok_or_else(|| format!("calls: {c:?}"))
        },
    )
    .await;
    assert!(!calls(cluster.node(r))
        .iter()
        .any(|l| l.contains(" on_role_change ")));
    let log = std::fs::read_to_string(cluster.node(r).log_path()).unwrap();
    assert!(
        log.contains("the pre_promote script failed"),
        "the agent logs why it let go of the key"
    );
    // the key is not kept by the node whose script failed
    wait_for(
        "the leader key released",
        cluster.wait_timeout(),
        POLL,
        || async { (cluster.leader().await.as_deref() != Some(replica.as_str())).then_some(()) },
    )
    .await;

    // once the script succeeds the node promotes
    std::fs::write(&rc, "0\n").unwrap();
    assert_eq!(cluster.wait_primary().await, r);
    let scope = cluster.scope().to_string();
    wait_call(
        &cluster,
        r,
        &format!("callback quoted arg on_role_change primary {scope}"),
        first,
    )
    .await;
}
