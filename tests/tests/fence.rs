//! The fence (safety rule 9) against real processes: the watchdog kills in time
//! whatever its stderr does; a killed watchdog is replaced and still stops the
//! primary of a frozen agent; a primary whose probe fails is still fenced; and a
//! slow but working etcd does not fence a healthy primary.
//!
//! Timings: ttl 6 s, loop_wait 1 s, retry_timeout 2 s (the harness default).
//! "Fenced in time" is measured against the leader key itself: the frozen
//! agent's postmaster must be gone before its lease expires and etcd deletes the
//! key (polled every 20 ms), i.e. before any replica could take over.

use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use agent_tests::proc::{pid_alive, signal};
use agent_tests::*;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::Client;

const TTL: Duration = Duration::from_secs(6);

// ---------------------------------------------------------------- helpers

/// The fence clock (`CLOCK_BOOTTIME`), as the agent and its watchdog read it.
fn fence_clock() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .expect("CLOCK_BOOTTIME")
}

fn set_nonblocking(fd: &OwnedFd, on: bool) {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).expect("F_GETFL"));
    let flags = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(flags)).expect("F_SETFL");
}

/// A pipe whose write end is full (a write would block or fail with EAGAIN).
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    set_nonblocking(&w, true);
    let chunk = [b'x'; 4096];
    while nix::unistd::write(&w, &chunk).is_ok() {}
    while nix::unistd::write(&w, b"x").is_ok() {}
    (r, w)
}

/// The pids of `agent --fence-watchdog` processes whose parent is `agent_pid`.
fn watchdogs_of(agent_pid: u32) -> Vec<i32> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_watchdog = cmdline.split(|b| *b == 0).any(|a| a == b"--fence-watchdog");
        if ppid == Some(agent_pid) && is_watchdog && pid_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Freeze node `p`'s agent (SIGSTOP; its postgres and fence keep running) and
/// watch its postmaster and the leader key. Returns (postmaster gone, leader key
/// gone) as times since the freeze; panics if the postmaster outlived the key.
async fn freeze_and_watch(cluster: &ClusterFixture, p: usize) -> (Duration, Duration) {
    let node = cluster.node(p);
    let pm = node
        .postmaster_pid()
        .expect("the primary's postmaster runs");
    let key = format!("{}leader", cluster.prefix());
    assert_eq!(
        cluster.kv().try_get(&key).await.ok().flatten().as_deref(),
        Some(node.name()),
        "{} does not hold the leader key",
        node.name()
    );
    let t0 = Instant::now();
    node.pause_agent();
    let (mut fenced, mut key_gone) = (None, None);
    while t0.elapsed() < 4 * TTL && (fenced.is_none() || key_gone.is_none()) {
        if fenced.is_none() && !pid_alive(pm) {
            fenced = Some(t0.elapsed());
        }
        if key_gone.is_none() {
            if let Ok(v) = cluster.kv().try_get(&key).await {
                if v.as_deref() != Some(node.name()) {
                    key_gone = Some(t0.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key_gone = key_gone.expect("the frozen agent's leader key never expired");
    let fenced = fenced.unwrap_or_else(|| {
        panic!(
            "the frozen agent's postmaster (pid {pm}) still ran {:?} after the freeze; \
             its leader key expired after {key_gone:?}",
            t0.elapsed()
        )
    });
    eprintln!(
        "frozen agent: postmaster gone {:.2}s, leader key gone {:.2}s after SIGSTOP",
        fenced.as_secs_f64(),
        key_gone.as_secs_f64()
    );
    assert!(
        fenced < key_gone,
        "the postmaster outlived the lease: gone after {fenced:?}, key expired after {key_gone:?}"
    );
    (fenced, key_gone)
}

/// Thaw node `p` and wait until it streams from the new primary.
async fn thaw_and_rejoin(cluster: &ClusterFixture, p: usize) {
    cluster.node(p).resume_agent();
    let q = cluster.wait_primary().await;
    assert_ne!(q, p);
    let names = cluster.wait_streaming_replicas(q, 2).await;
    assert!(names.contains(&cluster.node(p).name().to_string()));
}

// ---------------------------------------------------------------- the watchdog

enum Stderr {
    /// A full pipe in blocking mode: a blocking write would hang forever.
    FullBlocking,
    /// A full pipe already in non-blocking mode: a write fails with EAGAIN.
    FullNonBlocking,
    /// The read end is closed: a write fails with EPIPE.
    Broken,
}

/// Run `agent --fence-watchdog` with `stderr`, arm it for a stand-in postgres
/// (a copy of `sleep` named `postgres`), and check the stand-in is killed at the
/// deadline and the watchdog lives on.
fn watchdog_kills_with(stderr: Stderr, dir: &TestDir, label: &str) {
    let stand_in = dir.path().join(format!("{label}/postgres"));
    std::fs::create_dir_all(stand_in.parent().unwrap()).unwrap();
    std::fs::copy(require("sleep", "coreutils"), &stand_in).unwrap();
    let mut target: Child = command_as_postgres(&stand_in, dir.path())
        .arg("600")
        .spawn()
        .expect("start the stand-in postgres");
    let (reader, writer) = match stderr {
        Stderr::FullBlocking => {
            let (r, w) = full_pipe();
            set_nonblocking(&w, false);
            (Some(r), w)
        }
        Stderr::FullNonBlocking => {
            let (r, w) = full_pipe();
            (Some(r), w)
        }
        Stderr::Broken => {
            let (r, w) = nix::unistd::pipe().expect("pipe");
            drop(r);
            (None, w)
        }
    };
    let mut watchdog = command_as_postgres(&agent_binaries().agent, dir.path())
        .arg("--fence-watchdog")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer))
        .spawn()
        .expect("start the watchdog");
    let mut stdin = watchdog.stdin.take().unwrap();
    let deadline = fence_clock() + Duration::from_millis(300);
    let armed_at = Instant::now();
    use std::io::Write;
    writeln!(stdin, "arm {} {}", target.id(), deadline.as_millis()).unwrap();

    let mut killed = None;
    while armed_at.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(status)) = target.try_wait() {
            killed = Some((armed_at.elapsed(), status));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let watchdog_alive = matches!(watchdog.try_wait(), Ok(None));
    let _ = target.kill();
    let _ = target.wait();
    drop(stdin); // EOF: the watchdog exits (disarmed: its target is gone)
    let exit = wait_child_for(&mut watchdog, Duration::from_secs(5));
    drop(reader);
    let (after, status) =
        killed.unwrap_or_else(|| panic!("{label}: the armed stand-in postgres was not killed"));
    eprintln!("{label}: stand-in killed {after:?} after arming (deadline 300 ms): {status}");
    assert!(
        after < Duration::from_millis(1500),
        "{label}: killed only after {after:?}"
    );
    assert!(watchdog_alive, "{label}: the watchdog died after the kill");
    assert!(
        exit.is_some_and(|s| s.success()),
        "{label}: the watchdog did not exit cleanly on EOF: {exit:?}"
    );
}

fn wait_child_for(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Rule 9: the watchdog kills before it logs, and a full or broken stderr can
/// neither block nor kill it.
#[test]
fn watchdog_kills_in_time_whatever_its_stderr_does() {
    let dir = TestDir::new("fence_watchdog_stderr");
    watchdog_kills_with(Stderr::FullBlocking, &dir, "full-blocking");
    watchdog_kills_with(Stderr::FullNonBlocking, &dir, "full-nonblocking");
    watchdog_kills_with(Stderr::Broken, &dir, "broken");
}

// ---------------------------------------------------------------- the agent

/// Rule 9: the agent notices its watchdog died, starts a new one at once and
/// arms it: a frozen agent's primary is still stopped before its lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_watchdog_is_replaced_and_still_fences_a_frozen_agent() {
    let cluster = ClusterFixture::builder("fence_watchdog_killed")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    let agent = cluster.node(p).pid().expect("the primary's agent runs");
    let old = watchdogs_of(agent);
    assert_eq!(old.len(), 1, "one watchdog per agent: {old:?}");
    assert!(signal(old[0], Signal::SIGKILL));

    let new = wait_for(
        "a new watchdog",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { watchdogs_of(agent).into_iter().find(|w| *w != old[0]) },
    )
    .await;
    eprintln!("watchdog {} killed, {new} took over", old[0]);
    let log = std::fs::read_to_string(cluster.node(p).log_path()).unwrap();
    assert!(
        log.contains("the fence watchdog exited") && log.contains("restarted it"),
        "no error logged:\n{}",
        cluster.node(p).log_tail(20)
    );

    freeze_and_watch(&cluster, p).await;
    thaw_and_rejoin(&cluster, p).await;
}

/// Fill every connection slot of `node`'s postgres with our own sessions and
/// take over the agent's probe slot: the agent's probe fails to connect ("too
/// many clients") while postgres, a primary, keeps taking writes from us.
async fn starve_the_probe(node: &Node) -> Vec<Client> {
    let mut held: Vec<Client> = vec![];
    for round in 0..20 {
        while let Ok(c) = try_connect(node).await {
            held.push(c);
        }
        let probe: Vec<i32> = held[0]
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'agent'",
                &[],
            )
            .await
            .expect("list sessions")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if probe.is_empty() {
            eprintln!(
                "probe starved after {round} rounds, {} sessions held",
                held.len()
            );
            return held;
        }
        for pid in probe {
            held[0]
                .query("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .expect("terminate the probe's session");
        }
        // take its slot before the agent reconnects (at most a cycle from now)
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok(c) = try_connect(node).await {
                held.push(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    panic!("the agent kept getting a connection slot");
}

/// Rule 9: the fence does not depend on the probe. A primary whose agent
/// cannot probe it (out of connections) is still armed, so when the agent
/// freezes, its postgres is stopped before the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_agent_with_failing_probe_is_still_fenced() {
    let cluster = ClusterFixture::builder("fence_failing_probe")
        .nodes(3)
        .start()
        .await;
    let p = cluster.wait_formed().await;
    execute(cluster.node(p), "CREATE TABLE fence_probe (v int)")
        .await
        .unwrap();
    let held = starve_the_probe(cluster.node(p)).await;
    // The agent sees a running postgres that does not answer...
    wait_for(
        "the agent to see its postgres not answering",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let s = rest_json(cluster.node(p), "/patroni").await?;
            (s["state"] == "starting").then_some(())
        },
    )
    .await;
    // ...as the HA loop itself sees it: its member key says so (REST's /patroni
    // asks postgres directly); the cycle that published it set the fence next...
    cluster
        .wait_member(
            cluster.node(p).name(),
            "the loop to publish its postgres as not answering",
            |m| m["state"] == "starting",
        )
        .await;
    // ...and it still is a writable primary.
    held[0]
        .batch_execute("INSERT INTO fence_probe VALUES (1)")
        .await
        .expect("the starved primary takes writes");

    freeze_and_watch(&cluster, p).await;
    let write = held[1]
        .batch_execute("INSERT INTO fence_probe VALUES (2)")
        .await;
    assert!(write.is_err(), "the fenced postgres took a write");
    drop(held);
    thaw_and_rejoin(&cluster, p).await;
}

// ---------------------------------------------------------------- slow etcd

/// The test proxy's latency mode: every chunk is delayed, in order, in each
/// direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_latency_delays_each_direction_in_order() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = TcpProxy::start(&addr.to_string()).await;
    let mut c = tokio::net::TcpStream::connect(proxy.endpoint())
        .await
        .unwrap();
    c.set_nodelay(true).unwrap();
    let slow = echo_rtt(&mut c, &proxy, Duration::from_millis(200)).await;
    assert!(
        slow >= Duration::from_millis(450) && slow < Duration::from_millis(900),
        "{slow:?}"
    );
    let fast = echo_rtt(&mut c, &proxy, Duration::ZERO).await;
    assert!(fast < Duration::from_millis(250), "{fast:?}");
}

/// Send five bytes 20 ms apart through `proxy` (delaying by `latency`) and
/// read their echo: the time from the first send to the last byte back.
async fn echo_rtt(c: &mut tokio::net::TcpStream, proxy: &TcpProxy, latency: Duration) -> Duration {
    proxy.set_latency(latency);
    let t = Instant::now();
    for i in 0..5u8 {
        c.write_all(&[i]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = [0u8; 5];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(got, [0, 1, 2, 3, 4], "order kept");
    t.elapsed()
}

/// A slow but working etcd (every call slowed, each well below retry_timeout)
/// must not fence a healthy primary: for 3 x ttl its postmaster keeps running,
/// it keeps the leader key, and writes keep succeeding.
///
/// 500 ms per direction: an etcd call takes about 1 s (retry_timeout 2 s) and a
/// cycle of the primary about 3 s (keep-alive and read together, then `status`,
/// then its member key). The fence deadline, 5.4 s after a keep-alive was sent,
/// holds only because it moves as soon as the next keep-alive succeeds (about
/// 4 s after the previous one was sent); armed only at the end of each cycle
/// (about 6 s), the primary is fenced. (Keep-alive and read one after the other
/// make a cycle 4 s: still in time here, with less room.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_etcd_does_not_fence_a_healthy_primary() {
    const LATENCY: Duration = Duration::from_millis(500);
    let cluster = ClusterFixture::builder("fence_slow_etcd")
        .nodes(3)
        .proxied()
        .start()
        .await;
    let p = cluster.wait_formed().await;
    let node = cluster.node(p);
    let pm = node.postmaster_pid().expect("postmaster");
    execute(node, "CREATE TABLE slow_etcd (v bigint)")
        .await
        .unwrap();
    let client = try_connect(node).await.unwrap();
    let status_key = format!("{}status", cluster.prefix());

    cluster.slow_dcs(p, LATENCY);
    let t0 = Instant::now();
    let mut writes = 0u64;
    let mut failed_writes = vec![];
    let mut problems = vec![];
    // the status key changes once per cycle of the primary (its optime moves)
    let mut last_status: Option<(String, Instant)> = None;
    let mut cycles: Vec<Duration> = vec![];
    let mut last_check = Instant::now() - Duration::from_secs(1);
    while t0.elapsed() < 3 * TTL + Duration::from_secs(2) {
        writes += 1;
        let w = tokio::time::timeout(
            Duration::from_secs(2),
            client.batch_execute(&format!("INSERT INTO slow_etcd VALUES ({writes})")),
        )
        .await;
        if !matches!(w, Ok(Ok(()))) {
            failed_writes.push((t0.elapsed(), format!("{w:?}")));
        }
        if let Ok(Some(v)) = cluster.kv().try_get(&status_key).await {
            match &last_status {
                Some((old, at)) if *old != v => {
                    cycles.push(at.elapsed());
                    last_status = Some((v, Instant::now()));
                }
                None => last_status = Some((v, Instant::now())),
                _ => {}
            }
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            if node.postmaster_pid() != Some(pm) || !pid_alive(pm) {
                problems.push(format!("{:?}: postmaster {pm} is gone", t0.elapsed()));
            }
            let leader = cluster.leader().await;
            if leader.as_deref() != Some(node.name()) {
                problems.push(format!("{:?}: leader key is {leader:?}", t0.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.heal_dcs(p);
    cycles.sort();
    let median = cycles.get(cycles.len() / 2).copied().unwrap_or_default();
    let max = cycles.last().copied().unwrap_or_default();
    eprintln!(
        "slow etcd ({LATENCY:?} per direction, {:?}): {writes} writes, {} failed; \
         {} status updates, cycle median {median:?}, max {max:?}",
        t0.elapsed(),
        failed_writes.len(),
        cycles.len()
    );
    let log = std::fs::read_to_string(node.log_path()).unwrap();
    assert!(
        problems.is_empty() && failed_writes.is_empty(),
        "the primary was disturbed by a slow etcd: {} problems, first {:?}; \
         {} failed writes, first {:?}\n{}",
        problems.len(),
        problems.first(),
        failed_writes.len(),
        failed_writes.first(),
        node.log_tail(40)
    );
    for bad in ["fence watchdog:", "demot", "keep-alive failed"] {
        assert!(
            !log.contains(bad),
            "'{bad}' in the primary's log:\n{}",
            node.log_tail(40)
        );
    }
    assert!(cycles.len() >= 3, "the primary's cycles did not run");
    // writes during the slow period replicated
    let q = (p + 1) % 3;
    wait_for(
        "the writes on a replica",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let rows = sql(
                cluster.node(q),
                &format!("SELECT count(*) FROM slow_etcd WHERE v = {writes}"),
            )
            .await
            .ok()?;
            (rows.first()?.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await;
}
