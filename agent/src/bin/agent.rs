//! `agent CONFIG`: run the HA agent for one node (Patroni-compatible configuration).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "agent",
    version,
    about = "High-availability supervisor for PostgreSQL (Patroni-compatible)"
)]
struct Args {
    /// Patroni-format YAML configuration file (PATRONI_* environment variables override it).
    #[arg(env = "PATRONI_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Only check the configuration and exit (0 when valid).
    #[arg(long)]
    validate_config: bool,
}

fn init_logging(level: Option<&str>) {
    let default = match level.map(|l| l.to_ascii_uppercase()) {
        Some(l) if l == "DEBUG" => "debug",
        Some(l) if l == "WARNING" || l == "WARN" => "warn",
        Some(l) if l == "ERROR" || l == "CRITICAL" || l == "FATAL" => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{default},h2=warn,tonic=warn,tower=warn,hyper=warn"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .init();
}

/// Every build aborts on a panic, as the release build does (`panic = "abort"`):
/// a panic inside a tokio task would otherwise only end that task in a debug
/// build, and the tests would not see what production sees (the agent gone, its
/// postgres stopped by the fence).
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    abort_on_panic();
    if std::env::args().nth(1).as_deref() == Some(agent::fence::WATCHDOG_ARG) {
        agent::fence::watchdog_main();
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    let env = agent::config::process_env();
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("postgres0.yml"));
    let (cfg, warnings) = match agent::config::load_file(&path, &env) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("agent: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.validate_config {
        for w in &warnings {
            eprintln!("agent: warning: {w}");
        }
        // The REST API's certificate files too: a start would fail on them.
        if let Some(tls) = agent::tls::server::ServerSettings::from_config(&cfg.restapi) {
            if let Err(e) = tls.build() {
                eprintln!("agent: invalid configuration: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
        println!("{}: configuration is valid", path.display());
        return ExitCode::SUCCESS;
    }
    init_logging(cfg.log.level.as_deref());
    for w in &warnings {
        tracing::warn!("{w}");
    }
    if let Err(e) = agent::agent::check_not_root() {
        eprintln!("agent: {e}");
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        let agent = agent::agent::Agent::new(cfg).await?;
        agent.run(shutdown_signal()).await
    });
    match result {
        Ok(agent::agent::ExitReason::Shutdown) => ExitCode::SUCCESS,
        Ok(agent::agent::ExitReason::Fatal { code, message }) => {
            eprintln!("agent: {message}");
            ExitCode::from(code.clamp(1, 255) as u8)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received: shutting down"),
    }
}
