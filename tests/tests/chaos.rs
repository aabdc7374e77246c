//! The chaos suite's CI round: every scenario once, on the local target (three
//! agent nodes, a three-member etcd, HAProxy; ttl 6 / loop_wait 1 /
//! retry_timeout 2), under a write load through HAProxy, with the checker's
//! invariants (one primary, no lost acknowledged writes, convergence, and each
//! scenario's own). Fails when an invariant breaks; prints the Markdown table
//! either way (`--nocapture`).
//!
//! The full suite (more rounds, synchronous mode, the compose stack) is
//! `chaos/run`; see chaos/README.md. Knobs: `AGENT_CHAOS_SEED` (default 1),
//! `AGENT_CHAOS_OUT` (a directory: also write the JSON and Markdown reports).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_tests::chaos::{self, Options, Report, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_scenario_once() {
    let seed = std::env::var("AGENT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let out = std::env::var_os("AGENT_CHAOS_OUT").map(PathBuf::from);
    let opts = Options {
        scenarios: Scenario::ALL.to_vec(),
        rounds: 1,
        seed,
        out: out.clone(),
        name: "chaos_ci".into(),
        ..Options::default()
    };
    let report = Arc::new(Mutex::new(Report::new()));
    let ran = chaos::run(&opts, report.clone()).await;
    let report = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let table = report.markdown();
    eprintln!("{table}");
    if let Some(dir) = &out {
        let path = report.write_files(dir).expect("write the chaos report");
        eprintln!("chaos report: {}", path.display());
    }
    let ok =
        ran.unwrap_or_else(|e| panic!("the chaos run could not be carried out: {e:#}\n{table}"));
    assert!(
        ok && report.ok(),
        "an invariant broke (seed {seed}):\n{table}"
    );
}
