//! The verbs, one file each (mini-redis's `cmd/`); verbs that share their work share
//! a file (`list`/`topology`, `switchover`/`failover`, `pause`/`resume`). Each reads
//! the cluster from etcd, decides with the pure helpers (`select`, `plan`, `output`,
//! `edit`, `progress`), asks what patronictl asks, and talks to members' REST APIs
//! or to etcd. What several verbs use is in `common.rs`.
//!
//! Rule: this is the only part of `ctl` that does IO. Messages and their order follow
//! patronictl; an error ends the command with one `agentctl: ...` line on stderr and
//! exit code 1 (failed) or 2 (usage).

use std::io::IsTerminal;

use super::args::{Cli, Command};
use super::config::{default_config_path, CtlConfig};
use super::prompt::Terminal;
use super::rest::Rest;
use super::{CtlError, CtlResult};
use common::Ctx;

mod common;
mod dsn;
mod edit_config;
mod flush;
mod history;
mod list;
mod pause;
mod reinit;
mod reload;
mod remove;
mod restart;
mod show_config;
mod switchover;
mod version;

/// Load the configuration and run the verb.
pub async fn run(cli: Cli) -> CtlResult<()> {
    let env = crate::config::process_env();
    let (path, explicit) = match &cli.config_file {
        Some(p) => (Some(p.clone()), true),
        None => (default_config_path(&env), false),
    };
    let mut cfg = CtlConfig::load(path.as_deref(), explicit, cli.dcs_url.as_deref(), &env)?;
    if cli.insecure {
        cfg.tls.insecure = true;
    }
    let rest = Rest::new(cfg.auth.clone(), &cfg.tls).map_err(CtlError::failed)?;
    let mut ctx = Ctx {
        cfg,
        rest,
        prompt: Box::new(Terminal::detect()),
        tty_out: std::io::stdout().is_terminal(),
    };
    match cli.command {
        Command::List(a) => list::list(&ctx, a).await,
        Command::Topology(a) => list::topology(&ctx, a).await,
        Command::Switchover(a) => switchover::switchover(&mut ctx, a).await,
        Command::Failover(a) => switchover::failover(&mut ctx, a).await,
        Command::Restart(a) => restart::restart(&mut ctx, a).await,
        Command::Reload(a) => reload::reload(&mut ctx, a).await,
        Command::Reinit(a) => reinit::reinit(&mut ctx, a).await,
        Command::Flush(a) => flush::flush(&mut ctx, a).await,
        Command::Pause(a) => pause::pause(&mut ctx, a).await,
        Command::Resume(a) => pause::resume(&mut ctx, a).await,
        Command::EditConfig(a) => edit_config::edit_config(&mut ctx, a).await,
        Command::ShowConfig(a) => show_config::show_config(&ctx, a).await,
        Command::History(a) => history::history(&ctx, a).await,
        Command::Remove(a) => remove::remove(&mut ctx, a).await,
        Command::Dsn(a) => dsn::dsn(&ctx, a).await,
        Command::Version(a) => version::version(&ctx, a).await,
    }
}
