//! `agentctl`: the operator CLI, mirroring `patronictl`'s verbs, flags, output and
//! exit codes.
//!
//! It reads the cluster straight from etcd (the same keys the agents write) and
//! asks members to act through their REST API, exactly like `patronictl`, so it
//! works against agents and Patroni nodes alike.
//!
//! One file per concern:
//!
//! - `args.rs`: the command line (clap).
//! - `config.rs`: a lenient reader of `patronictl.yaml` or a node's own YAML (only
//!   `scope`, `namespace`, `etcd3`, `restapi.authentication`, `ctl` matter), `PATRONI_*`
//!   overrides (from `config::env`) and `--dcs-url`.
//! - `output.rs`: tables (`pretty`, `tsv`), `json` and `yaml` in patronictl's layout;
//!   the member list, topology and history views. Pure: returns text.
//! - `diff.rs`: a unified diff as Python's `difflib` prints it. Pure.
//! - `edit.rs`: `edit-config` changes (`-s`, `-p`, `--apply`, `--replace`, `$EDITOR`).
//! - `select.rs`: which members a verb acts on (roles, names, `[CLUSTER] [MEMBER...]`). Pure.
//! - `plan.rs`: what patronictl asks and checks before acting (switchover, restart,
//!   confirmations, `remove`); pure but for the prompter.
//! - `progress.rs`: what a switchover looks like from etcd, step by step. Pure.
//! - `prompt.rs`: questions and confirmations; refuses (exit 2) when stdin is not a terminal.
//! - `rest.rs`: HTTP requests to members' REST APIs, with timeouts.
//! - `verbs/`: the verbs themselves, one file each (`verbs/switchover.rs`, ...), the only
//!   place that does IO; `verbs/mod.rs` dispatches.
//!
//! Exit codes: 0 success, 1 the operation failed (etcd unreachable, a REST call
//! failed or was refused), 2 usage error (bad arguments, unknown member, a prompt
//! that cannot be asked).

use std::process::ExitCode;

mod args;
mod config;
mod diff;
mod edit;
mod output;
mod plan;
mod progress;
mod prompt;
mod rest;
mod select;
mod verbs;

pub use args::Cli;

/// Why a command did not succeed. `Display` is the one line printed after `agentctl: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: u8,
    pub message: String,
}

impl CtlError {
    /// Exit 1: the operation was attempted and failed.
    pub fn failed(message: impl Into<String>) -> CtlError {
        CtlError {
            code: 1,
            message: message.into(),
        }
    }

    /// Exit 2: the command line (or what was typed at a prompt) cannot be used.
    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError {
            code: 2,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CtlError {}

impl From<crate::dcs::etcd::DcsError> for CtlError {
    fn from(e: crate::dcs::etcd::DcsError) -> CtlError {
        CtlError::failed(e.to_string())
    }
}

pub type CtlResult<T> = Result<T, CtlError>;

/// Parse the process arguments, run the verb, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    // `agentctl list | head` should end quietly, as other Unix tools do, not
    // report a write error. Not by restoring SIGPIPE's default: tokio writes to
    // sockets with writev, which raises SIGPIPE too, so etcd closing a TLS
    // connection (a refused client certificate) would kill agentctl without a
    // word. SIGPIPE stays ignored and a closed stdout ends the process here.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and exit 0
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentctl: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(verbs::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentctl: {e}");
            ExitCode::from(e.code)
        }
    }
}
