//! The chaos suite: break a running cluster on purpose, under a write load,
//! and check that nothing promised was lost.
//!
//! ```text
//! target (local processes | compose stack)
//!   ├─ Writer: unique increasing ids through HAProxy's rw port, every ack recorded
//!   ├─ Reader: max(id) through the ro port
//!   └─ Sampler: every node directly, every 100 ms: in recovery? can it write?
//! for round in 1..=N, for scenario in the list:
//!   inject the fault (scenarios.rs) → heal → converge and check (checker.rs)
//! → JSON + Markdown report (report.rs); exit status: did every invariant hold
//! ```
//!
//! The invariants, checked after every scenario:
//! - **one primary**: no sampling round saw two nodes out of recovery;
//! - **no lost acknowledged writes**: every acknowledged id is on the primary;
//!   in asynchronous mode a write may be lost only across a failover and only
//!   within `maximum_lag_on_failover` bytes of WAL, in synchronous mode never,
//!   and planned operations (switchover, restarts, replica or postgres
//!   crashes) never lose one;
//! - **convergence**: within a bound after the fault is healed, one primary,
//!   every other node streaming from it on its timeline, the same rows;
//! - scenario-specific ones (a fenced primary is read-only before its lease
//!   runs out, a lagging replica is not promoted, ...).
//!
//! The write-unavailability window of each fault (last ack before it → first
//! ack after it) is measured and reported, not judged.
//!
//! Rule: every wait has a deadline, every fault is undone before the next
//! scenario (and when the run is interrupted), and the fixtures clean up their
//! processes when dropped.

pub mod checker;
pub mod compose;
pub mod local;
pub mod report;
pub mod rng;
pub mod scenarios;
pub mod target;
pub mod workload;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::sampler::Sampler;
use crate::writer::Writer;
pub use report::{Report, ScenarioResult};
use rng::Rng;
use target::{rest_get, rest_send, Target, Timings};
use workload::Reader;

/// One kind of fault and what must happen around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    PrimaryCrash,
    PostgresCrash,
    AgentFreeze,
    Partition,
    QuorumLoss,
    ReplicaCrash,
    Switchover,
    LaggingReplica,
    RollingRestart,
    StalledSync,
    ConfigEditUnderPause,
    FenceProbeFailing,
    SlowEtcd,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 13] = [
        Scenario::PrimaryCrash,
        Scenario::PostgresCrash,
        Scenario::AgentFreeze,
        Scenario::Partition,
        Scenario::QuorumLoss,
        Scenario::ReplicaCrash,
        Scenario::Switchover,
        Scenario::LaggingReplica,
        Scenario::RollingRestart,
        Scenario::StalledSync,
        Scenario::ConfigEditUnderPause,
        Scenario::FenceProbeFailing,
        Scenario::SlowEtcd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PrimaryCrash => "primary-crash",
            Scenario::PostgresCrash => "postgres-crash",
            Scenario::AgentFreeze => "agent-freeze",
            Scenario::Partition => "partition",
            Scenario::QuorumLoss => "quorum-loss",
            Scenario::ReplicaCrash => "replica-crash",
            Scenario::Switchover => "switchover",
            Scenario::LaggingReplica => "lagging-replica",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::StalledSync => "stalled-sync",
            Scenario::ConfigEditUnderPause => "config-edit-under-pause",
            Scenario::FenceProbeFailing => "fence-probe-failing",
            Scenario::SlowEtcd => "slow-etcd",
        }
    }

    /// What the scenario does, in one line (for `--help` and the report).
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::PrimaryCrash => "SIGKILL the primary's agent and postgres; restart the node",
            Scenario::PostgresCrash => "SIGKILL the primary's postmaster; its agent lives",
            Scenario::AgentFreeze => {
                "SIGSTOP the primary's agent for longer than ttl, then SIGCONT: it must come back as a replica"
            }
            Scenario::Partition => {
                "cut the primary off from etcd (clients still reach it) for longer than ttl, then heal"
            }
            Scenario::QuorumLoss => {
                "SIGSTOP two of three etcd members for longer than ttl: the primary demotes; writes resume after"
            }
            Scenario::ReplicaCrash => "SIGKILL a replica's agent and postgres; restart it",
            Scenario::Switchover => "three switchovers in a row through the REST API",
            Scenario::LaggingReplica => {
                "one replica stopped, the other replaying nothing, > maximum_lag_on_failover written, primary killed: the lagging replica must not be promoted"
            }
            Scenario::RollingRestart => "restart every node in turn (replicas first, SIGTERM then start)",
            Scenario::StalledSync => {
                "one replica's WAL receiver SIGSTOPped, then the (synchronous) standby and the primary killed: the stalled replica never enters the sync key behind, nor takes over in synchronous mode"
            }
            Scenario::ConfigEditUnderPause => {
                "paused cluster, the config key rewritten in Patroni's value forms plus one invalid field, the primary's postmaster killed: nobody promotes, nobody restarts it for 3 x ttl"
            }
            Scenario::FenceProbeFailing => {
                "the primary's agent cannot probe its postgres, then is SIGSTOPped for longer than ttl: the fence still stops the old primary before its lease expires"
            }
            Scenario::SlowEtcd => {
                "the primary's etcd link slowed (each call well under retry_timeout) for 3 x ttl: no failover, no demotion, no fence, writes go on"
            }
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Scenarios after which a lost acknowledged write is a bug in any mode:
    /// nothing unplanned happened to the primary's WAL.
    pub fn must_lose_nothing(self) -> bool {
        matches!(
            self,
            Scenario::PostgresCrash
                | Scenario::ReplicaCrash
                | Scenario::Switchover
                | Scenario::RollingRestart
                | Scenario::SlowEtcd
        )
    }
}

/// `all`, or a comma-separated list of scenario names.
pub fn parse_scenarios(s: &str) -> Result<Vec<Scenario>> {
    if s == "all" {
        return Ok(Scenario::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match Scenario::parse(name) {
            Some(sc) => out.push(sc),
            None => bail!(
                "unknown scenario {name:?}; known: all, {}",
                Scenario::ALL.map(|s| s.name()).join(", ")
            ),
        }
    }
    if out.is_empty() {
        bail!("no scenario given");
    }
    Ok(out)
}

/// Which cluster to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Local,
    Compose,
}

/// Everything a run is parameterised by.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: TargetKind,
    pub scenarios: Vec<Scenario>,
    pub rounds: u32,
    pub seed: u64,
    /// Timings; `None`: 6/1/2 locally, the image's 15/5/5 on compose.
    pub ttl: Option<u64>,
    pub loop_wait: Option<u64>,
    pub retry_timeout: Option<u64>,
    /// `synchronous_mode: true` (set through `PATCH /config` before the faults).
    pub sync: bool,
    /// Directory for `<date>-<seed>.json` / `.md` and `latest.md`; none: no files.
    pub out: Option<PathBuf>,
    pub write_every: Duration,
    pub sample_every: Duration,
    /// How long the cluster gets to converge after a fault is healed.
    pub converge_timeout: Duration,
    /// Name of the test directory / scope (local) and compose project prefix.
    pub name: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            target: TargetKind::Local,
            scenarios: Scenario::ALL.to_vec(),
            rounds: 1,
            seed: 1,
            ttl: None,
            loop_wait: None,
            retry_timeout: None,
            sync: false,
            out: None,
            write_every: Duration::from_millis(20),
            sample_every: Duration::from_millis(100),
            converge_timeout: Duration::from_secs(90),
            name: "chaos".into(),
        }
    }
}

/// Timeout of one write attempt (connect included) and of one read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Timeout of one sampler probe: under a second, so a round stays short.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Run the suite; the report is filled in as scenarios finish (so a caller
/// can write what was found even if the run dies). Returns whether every
/// invariant held.
pub async fn run(opts: &Options, report: Arc<Mutex<Report>>) -> Result<bool> {
    if opts.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    match opts.target {
        TargetKind::Local => {
            let timings = Timings {
                ttl: opts.ttl.unwrap_or(6),
                loop_wait: opts.loop_wait.unwrap_or(1),
                retry_timeout: opts.retry_timeout.unwrap_or(2),
                maximum_lag_on_failover: 1_048_576,
            };
            check_timings(&timings)?;
            init_report(&report, opts, "local", &timings);
            let mut t = local::LocalTarget::start(&opts.name, timings).await?;
            let ok = drive(&mut t, opts, &report).await;
            finish(&mut t, &report, ok)
        }
        TargetKind::Compose => {
            let mut t = compose::ComposeTarget::start(opts).await?;
            let timings = t.timings();
            check_timings(&timings)?;
            init_report(&report, opts, "compose", &timings);
            let ok = drive(&mut t, opts, &report).await;
            finish(&mut t, &report, ok)
        }
    }
}

fn check_timings(t: &Timings) -> Result<()> {
    if t.ttl < t.loop_wait + 2 * t.retry_timeout {
        bail!(
            "ttl {} < loop_wait {} + 2 * retry_timeout {}: the agent would refuse it",
            t.ttl,
            t.loop_wait,
            t.retry_timeout
        );
    }
    Ok(())
}

fn init_report(report: &Arc<Mutex<Report>>, opts: &Options, target: &str, t: &Timings) {
    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
    r.settings = json!({
        "target": target,
        "scenarios": opts.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "rounds": opts.rounds,
        "seed": opts.seed,
        "ttl": t.ttl,
        "loop_wait": t.loop_wait,
        "retry_timeout": t.retry_timeout,
        "maximum_lag_on_failover": t.maximum_lag_on_failover,
        "synchronous_mode": opts.sync,
        "write_every_ms": opts.write_every.as_millis() as u64,
        "sample_every_ms": opts.sample_every.as_millis() as u64,
        "converge_timeout_s": opts.converge_timeout.as_secs(),
        "git": git_head(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
}

fn finish<T: Target>(t: &mut T, report: &Arc<Mutex<Report>>, ok: Result<bool>) -> Result<bool> {
    let ok = match ok {
        Ok(ok) => ok,
        Err(e) => {
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
            r.aborted = Some(format!("{e:#}"));
            false
        }
    };
    if !ok {
        t.keep();
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
        r.logs = Some(t.logs_hint());
    }
    Ok(ok)
}

fn git_head() -> String {
    let root = crate::repo_root();
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(&root)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}

/// Seconds since `t0`, for the report.
pub(crate) fn secs(t0: Instant, t: Instant) -> f64 {
    (t.saturating_duration_since(t0).as_secs_f64() * 1000.0).round() / 1000.0
}

/// Turn synchronous mode on and wait until a standby is synchronous.
async fn enable_sync<T: Target>(t: &T, primary: usize) -> Result<()> {
    let (code, body) = rest_send(
        t,
        primary,
        "PATCH",
        "/config",
        &json!({"synchronous_mode": true}),
    )
    .await?;
    if code != 200 {
        bail!("PATCH /config synchronous_mode: {code} {body}");
    }
    let pg = t.addrs().lock().unwrap_or_else(|e| e.into_inner())[primary].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = pg
            .query(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                Duration::from_secs(5),
            )
            .await;
        if let Ok(rows) = rows {
            if rows.first().and_then(|r| r.try_get::<_, i64>(0).ok()) >= Some(1) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("no synchronous standby 60 s after turning synchronous_mode on");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// After a scenario left the cluster unconverged (already a failure), get a
/// healthy cluster back for the scenarios still to run: undo every fault,
/// wait a little, then do what an operator would — `POST /reinitialize` on
/// every node that is not running — and wait again. Each repair is recorded.
async fn recover<T: Target>(
    t: &mut T,
    writer: &Writer,
    opts: &Options,
    scenario: Scenario,
    round: u32,
    report: &Arc<Mutex<Report>>,
) -> Result<checker::Converged, String> {
    t.heal_all().await;
    if let Ok(c) = checker::converge(t, writer, Duration::from_secs(30), opts.sync).await {
        return Ok(c);
    }
    let names = t.names();
    for (i, name) in names.iter().enumerate() {
        let Some((_, v)) = rest_get(t, i, "/patroni").await else {
            continue;
        };
        if v["state"] == "running" {
            continue;
        }
        let answer = rest_send(t, i, "POST", "/reinitialize", &json!({"force": true})).await;
        let line = format!(
            "after {} round {round}: POST /reinitialize on {name} (state {}, reason {}): {}",
            scenario.name(),
            v["state"],
            v["reason"],
            match answer {
                Ok((code, body)) => format!("{code} {}", body.trim()),
                Err(e) => format!("{e:#}"),
            }
        );
        eprintln!("chaos: repair: {line}");
        report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .repairs
            .push(line);
    }
    checker::converge(t, writer, opts.converge_timeout, opts.sync).await
}

/// Rounds × scenarios on a formed cluster; Ok(false) when an invariant broke.
async fn drive<T: Target>(t: &mut T, opts: &Options, report: &Arc<Mutex<Report>>) -> Result<bool> {
    let run_start = Instant::now();
    let names = t.names();
    let mut sampler = Sampler::start(t.addrs(), opts.sample_every, PROBE_TIMEOUT);
    let mut writer = Writer::start(t.rw(), opts.write_every, WRITE_TIMEOUT)
        .await
        .context("start the writer through HAProxy")?;
    let mut reader = Reader::start(t.ro(), Duration::from_millis(100), WRITE_TIMEOUT);
    let mut state = checker::converge(t, &writer, opts.converge_timeout, false)
        .await
        .map_err(|why| anyhow::anyhow!("the cluster did not form: {why}"))?;
    if opts.sync {
        enable_sync(t, state.primary).await?;
        state = checker::converge(t, &writer, opts.converge_timeout, opts.sync)
            .await
            .map_err(|why| anyhow::anyhow!("no convergence after enabling sync: {why}"))?;
    }
    eprintln!(
        "chaos: {} nodes formed, primary {}; running {} scenario(s) x {} round(s), seed {}",
        names.len(),
        names[state.primary],
        opts.scenarios.len(),
        opts.rounds,
        opts.seed
    );

    let mut rng = Rng::new(opts.seed);
    let mut known_lost: BTreeSet<i64> = BTreeSet::new();
    let mut all_ok = true;
    'rounds: for round in 1..=opts.rounds {
        for &scenario in &opts.scenarios {
            let mut result = ScenarioResult::new(scenario, round);
            if !t.supports(scenario) {
                result.skipped = Some(format!("not supported on the {} target", t.kind()));
                report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .results
                    .push(result);
                continue;
            }
            eprintln!("chaos: round {round}: {} ...", scenario.name());
            let started = Instant::now();
            let acks_before = writer.acks().len();
            let (w_err, r_ok, r_err) = (writer.errors(), reader.ok(), reader.errors());
            let mut cx = scenarios::Cx::new(&writer, &sampler, &mut rng, opts, names.clone());
            let ran = scenarios::run(scenario, t, &mut cx, state.primary).await;
            if let Err(e) = &ran {
                cx.fail("scenario ran to the end", format!("{e:#}"));
            }
            // Whatever the scenario left behind is undone before judging.
            t.heal_all().await;
            let converged = checker::converge(t, &writer, opts.converge_timeout, opts.sync).await;
            let ended = Instant::now();
            result.started_s = secs(run_start, started);
            result.duration_s = secs(started, ended);
            checker::judge(
                &mut result,
                &mut cx,
                t,
                &writer,
                &sampler,
                &converged,
                started,
                ended,
                run_start,
                &mut known_lost,
            )
            .await;
            result.acks = (writer.acks().len() - acks_before) as u64;
            result.write_errors = writer.errors() - w_err;
            result.reads = reader.ok() - r_ok;
            result.read_errors = reader.errors() - r_err;
            let ok = result.ok();
            all_ok &= ok;
            eprintln!(
                "chaos: round {round}: {} {} ({:.1}s){}",
                scenario.name(),
                if ok { "ok" } else { "FAILED" },
                result.duration_s,
                result
                    .failures()
                    .iter()
                    .map(|f| format!("\n    - {f}"))
                    .collect::<String>()
            );
            report
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .results
                .push(result);
            match converged {
                Ok(c) => state = c,
                Err(_) => match recover(t, &writer, opts, scenario, round, report).await {
                    Ok(c) => state = c,
                    Err(why) => {
                        report.lock().unwrap_or_else(|e| e.into_inner()).aborted =
                            Some(format!("the cluster did not recover: {why}"));
                        all_ok = false;
                        break 'rounds;
                    }
                },
            }
        }
    }

    // The last word: every write ever acknowledged is on the final primary.
    writer.stop().await;
    reader.stop().await;
    let final_check =
        checker::final_check(t, &writer, opts.converge_timeout, &known_lost, opts.sync).await;
    sampler.stop().await;
    let split = sampler.split_brains(run_start, Instant::now());
    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
    match final_check {
        Ok(v) => {
            all_ok &= v["ok"].as_bool().unwrap_or(false);
            r.final_check = v;
        }
        Err(e) => {
            all_ok = false;
            r.final_check = json!({"ok": false, "error": e});
        }
    }
    r.totals = json!({
        "acknowledged_writes": writer.acks().len(),
        "write_attempts": writer.attempts(),
        "write_errors": writer.errors(),
        "reads": reader.ok(),
        "read_errors": reader.errors(),
        "sampler_rounds": sampler.len(),
        "split_brain_rounds": split.len(),
        "duration_s": secs(run_start, Instant::now()),
    });
    if !split.is_empty() {
        all_ok = false;
    }
    r.split_brains = split
        .iter()
        .map(|round| report::split_brain_json(round, run_start, &names))
        .collect();
    r.finished_unix_ms = report::now_ms();
    Ok(all_ok)
}
