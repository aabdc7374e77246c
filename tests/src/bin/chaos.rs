//! `chaos`: inject real faults into a running cluster under a write load and
//! check the invariants (one primary, no lost acknowledged writes,
//! convergence); see `chaos/README.md`. Usually run through `chaos/run`.
//!
//! Exit status: 0 when every invariant held, 1 when one broke, 2 when the run
//! could not be carried out (setup failed, interrupted).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_tests::chaos::{self, Options, Report, Scenario, TargetKind};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetArg {
    /// Three agent nodes, a three-member etcd and HAProxy as local processes.
    Local,
    /// The compose stack in compose/ (needs a Docker engine).
    Compose,
}

/// Break the cluster on purpose, under load, and prove nothing is lost.
#[derive(Debug, Parser)]
#[command(name = "chaos", version)]
struct Args {
    /// Where to inject the faults.
    #[arg(long, value_enum, default_value = "local")]
    target: TargetArg,
    /// `all` or a comma-separated list of scenarios (see --list).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// How many times to run the scenario list.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Seed for the victims, candidates and fault durations (default: the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// bootstrap.dcs.ttl (default 6 locally; the image's 15 on compose).
    #[arg(long)]
    ttl: Option<u64>,
    /// bootstrap.dcs.loop_wait (default 1 locally; 5 on compose).
    #[arg(long)]
    loop_wait: Option<u64>,
    /// bootstrap.dcs.retry_timeout (default 2 locally; 5 on compose).
    #[arg(long)]
    retry_timeout: Option<u64>,
    /// Turn synchronous_mode on (PATCH /config) before the faults.
    #[arg(long)]
    sync: bool,
    /// Directory for <date>-<target>-<seed>.json/.md and latest.md.
    #[arg(long, default_value = "chaos/results")]
    out: PathBuf,
    /// Write no report files (the table still goes to stdout).
    #[arg(long)]
    no_files: bool,
    /// Milliseconds between two writes through HAProxy.
    #[arg(long, default_value_t = 20)]
    write_every_ms: u64,
    /// Milliseconds between two sampling rounds of every node (100-200).
    #[arg(long, default_value_t = 100)]
    sample_every_ms: u64,
    /// Seconds the cluster gets to converge after a fault is healed.
    #[arg(long, default_value_t = 90)]
    converge_timeout: u64,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in Scenario::ALL {
            println!("{:<24} {}", s.name(), s.describe());
        }
        return ExitCode::SUCCESS;
    }
    let scenarios = match chaos::parse_scenarios(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    if !(50..=1000).contains(&args.sample_every_ms) {
        eprintln!("chaos: --sample-every-ms must be between 50 and 1000");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let opts = Options {
        target: match args.target {
            TargetArg::Local => TargetKind::Local,
            TargetArg::Compose => TargetKind::Compose,
        },
        scenarios,
        rounds: args.rounds,
        seed,
        ttl: args.ttl,
        loop_wait: args.loop_wait,
        retry_timeout: args.retry_timeout,
        sync: args.sync,
        out: (!args.no_files).then(|| args.out.clone()),
        write_every: Duration::from_millis(args.write_every_ms.max(1)),
        sample_every: Duration::from_millis(args.sample_every_ms),
        converge_timeout: Duration::from_secs(args.converge_timeout),
        name: "chaos".into(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(opts))
}

async fn run(opts: Options) -> ExitCode {
    let report = Arc::new(Mutex::new(Report::new()));
    let task = {
        let (opts, report) = (opts.clone(), report.clone());
        tokio::spawn(async move { chaos::run(&opts, report).await })
    };
    let abort = task.abort_handle();
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let outcome = tokio::select! {
        res = task => match res {
            Ok(Ok(ok)) => Ok(ok),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(e) if e.is_panic() => Err(format!("the run panicked: {}", panic_text(e.into_panic()))),
            Err(e) => Err(format!("the run was cancelled: {e}")),
        },
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run drops the fixtures, which stop everything.
            abort.abort();
            Err("interrupted (SIGINT)".into())
        }
        _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } } => {
            abort.abort();
            Err("interrupted (SIGTERM)".into())
        }
    };
    if outcome.is_err() {
        // Give the aborted run's fixtures a moment to be dropped.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut report = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Err(why) = &outcome {
        if report.aborted.is_none() {
            report.aborted = Some(why.clone());
        }
    }
    if report.finished_unix_ms == 0 {
        report.finished_unix_ms = chaos::report::now_ms();
    }
    println!("{}", report.markdown());
    if let Some(dir) = &opts.out {
        match report.write_files(dir) {
            Ok(path) => eprintln!("chaos: report written to {}", path.display()),
            Err(e) => eprintln!("chaos: cannot write the report: {e:#}"),
        }
    }
    match outcome {
        Ok(true) if report.ok() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(why) => {
            eprintln!("chaos: {why}");
            ExitCode::from(2)
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}
