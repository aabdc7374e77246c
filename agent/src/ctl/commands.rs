//! The verbs. Each reads the cluster from etcd, decides with the pure helpers
//! (`select`, `plan`, `output`, `edit`, `progress`), asks what patronictl asks, and talks
//! to members' REST APIs or to etcd.
//!
//! Messages and their order follow patronictl; an error ends the command with one
//! `agentctl: ...` line on stderr and exit code 1 (failed) or 2 (usage).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::args::{self, Cli, Command, Role};
use super::config::{default_config_path, CtlConfig};
use super::output::{self, Layout};
use super::plan::{self, is_paused, Action};
use super::progress::SwitchoverWatch;
use super::prompt::{Prompter, Terminal};
use super::rest::{Reply, Rest};
use super::{diff, edit, select, CtlError, CtlResult};
use crate::config::merge::{merge, Null};
use crate::dcs::etcd::Etcd;
use crate::dcs::model::{Cluster, Failover, Member};

/// Upper bound of one etcd call.
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of a quick REST call (status, reload, config, flush).
const REST_TIMEOUT: Duration = Duration::from_secs(10);
/// A switchover or failover request: the member answers once it is done.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// A restart request: the member answers once postgres runs again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(330);
/// How often a switchover is observed in etcd.
const POLL: Duration = Duration::from_millis(100);

/// Everything a verb works with.
struct Ctx {
    cfg: CtlConfig,
    rest: Rest,
    prompt: Box<dyn Prompter>,
    /// stdout is a terminal: color the diff, clear the screen when watching.
    tty_out: bool,
}

/// Load the configuration and run the verb.
pub async fn run(cli: Cli) -> CtlResult<()> {
    let env = crate::config::process_env();
    let (path, explicit) = match &cli.config_file {
        Some(p) => (Some(p.clone()), true),
        None => (default_config_path(&env), false),
    };
    let cfg = CtlConfig::load(path.as_deref(), explicit, cli.dcs_url.as_deref(), &env)?;
    let rest = Rest::new(cfg.auth.clone()).map_err(CtlError::failed)?;
    let mut ctx = Ctx {
        cfg,
        rest,
        prompt: Box::new(Terminal::detect()),
        tty_out: std::io::stdout().is_terminal(),
    };
    match cli.command {
        Command::List(a) => {
            let interval = watch_interval(a.watch_default, a.watch)?;
            list(
                &ctx,
                &a.clusters,
                a.extended,
                a.timestamp,
                a.format.into(),
                interval,
            )
            .await
        }
        Command::Topology(a) => {
            let interval = watch_interval(a.watch_default, a.watch)?;
            list(&ctx, &a.clusters, false, false, Layout::Topology, interval).await
        }
        Command::Switchover(a) => {
            let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
            let fa = plan::FailoverArgs {
                leader: a.leader,
                candidate: a.candidate,
                scheduled: a.scheduled,
                force: a.force,
            };
            failover_or_switchover(&mut ctx, Action::Switchover, &name, fa).await
        }
        Command::Failover(a) => {
            let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
            let fa = plan::FailoverArgs {
                candidate: a.candidate,
                force: a.force,
                ..Default::default()
            };
            failover_or_switchover(&mut ctx, Action::Failover, &name, fa).await
        }
        Command::Restart(a) => restart(&mut ctx, a).await,
        Command::Reload(a) => reload(&mut ctx, a).await,
        Command::Reinit(a) => reinit(&mut ctx, a).await,
        Command::Flush(a) => flush(&mut ctx, a).await,
        Command::Pause(a) => {
            toggle_pause(&mut ctx, a.cluster.cluster.as_deref(), true, a.wait).await
        }
        Command::Resume(a) => {
            toggle_pause(&mut ctx, a.cluster.cluster.as_deref(), false, a.wait).await
        }
        Command::EditConfig(a) => edit_config(&mut ctx, a).await,
        Command::ShowConfig(a) => show_config(&ctx, a.cluster.as_deref()).await,
        Command::History(a) => {
            let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
            let (_, cluster) = read(&ctx, &name).await?;
            println!("{}", output::history_output(&cluster, a.format.into()));
            Ok(())
        }
        Command::Remove(a) => remove(&mut ctx, a).await,
        Command::Dsn(a) => {
            let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
            let (_, cluster) = read(&ctx, &name).await?;
            let m = select::dsn_member(&cluster, a.role, a.member.as_deref())?
                .ok_or_else(|| CtlError::failed("Can not find a suitable member"))?;
            let (host, port) = m.data.conn_host_port().ok_or_else(|| {
                CtlError::failed(format!("member {} publishes no conn_url", m.name))
            })?;
            println!("host={host} port={port}");
            Ok(())
        }
        Command::Version(a) => version(&ctx, a.cluster.as_deref(), &a.members).await,
    }
}

fn watch_interval(w: bool, watch: Option<f64>) -> CtlResult<Option<Duration>> {
    match watch {
        Some(s) if s > 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| CtlError::usage(format!("--watch: {s} seconds is out of range"))),
        Some(s) => Err(CtlError::usage(format!(
            "--watch: expected a positive number of seconds, got {s}"
        ))),
        None if w => Ok(Some(Duration::from_secs(2))),
        None => Ok(None),
    }
}

/// `2024-01-01 12:00:00.123456` (`precision` digits of the second, 0..=6).
fn timestamp(precision: usize) -> String {
    let s = chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let cut = s.len() - (6 - precision.min(6)) - usize::from(precision == 0);
    s[..cut].to_string()
}

async fn connect(ctx: &Ctx, cluster: &str) -> CtlResult<Etcd> {
    ctx.cfg.check_etcd()?;
    let prefix = ctx.cfg.prefix(cluster);
    let fut = Etcd::connect(&ctx.cfg.etcd3, &prefix, "agentctl");
    let mut etcd = match tokio::time::timeout(ETCD_TIMEOUT, fut).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return Err(CtlError::failed(format!("etcd: {e:#}"))),
        Err(_) => {
            return Err(CtlError::failed(format!(
                "etcd: no connection within {ETCD_TIMEOUT:?} to {}",
                ctx.cfg.etcd3.endpoints().join(", ")
            )))
        }
    };
    etcd.set_timeout(ETCD_TIMEOUT);
    Ok(etcd)
}

async fn read(ctx: &Ctx, cluster: &str) -> CtlResult<(Etcd, Cluster)> {
    let etcd = connect(ctx, cluster).await?;
    let c = etcd.read_cluster().await?;
    Ok((etcd, c))
}

/// `loop_wait` as stored (for messages), 10 by default.
fn loop_wait(cluster: &Cluster) -> f64 {
    cluster
        .config
        .as_ref()
        .and_then(|c| c.raw.get("loop_wait"))
        .and_then(Value::as_f64)
        .filter(|v| *v > 0.0)
        .unwrap_or(10.0)
}

/// Seconds from the stored configuration, capped at a day.
fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v.min(86_400.0)).unwrap_or(Duration::from_secs(10))
}

fn fmt_secs(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn print_members(cluster: &Cluster, name: &str) {
    println!(
        "{}",
        output::members_output(cluster, name, false, Layout::Pretty)
    );
}

// ---------------------------------------------------------------- list, topology

async fn list(
    ctx: &Ctx,
    clusters: &[String],
    extended: bool,
    ts: bool,
    layout: Layout,
    interval: Option<Duration>,
) -> CtlResult<()> {
    let names: Vec<String> = if clusters.is_empty() {
        vec![ctx.cfg.cluster_name(None)?]
    } else {
        clusters.to_vec()
    };
    let mut conns = Vec::new();
    for n in &names {
        conns.push((n.clone(), connect(ctx, n).await?));
    }
    loop {
        let started = Instant::now();
        if interval.is_some() && ctx.tty_out {
            // clear the screen, as `watch` does
            print!("\x1b[H\x1b[2J");
        }
        if ts {
            println!("{}", timestamp(0));
        }
        for (name, etcd) in &conns {
            match etcd.read_cluster().await {
                Ok(c) => println!("{}", output::members_output(&c, name, extended, layout)),
                Err(e) if interval.is_some() => eprintln!("agentctl: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        let Some(every) = interval else {
            return Ok(());
        };
        tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
    }
}

// ---------------------------------------------------------------- switchover, failover

async fn failover_or_switchover(
    ctx: &mut Ctx,
    action: Action,
    name: &str,
    a: plan::FailoverArgs,
) -> CtlResult<()> {
    let (etcd, cluster) = read(ctx, name).await?;
    println!("Current cluster topology");
    print_members(&cluster, name);
    let plan = plan::plan_failover(ctx.prompt.as_mut(), &cluster, name, action, a)?;
    let target: Option<Member> = plan
        .target
        .as_deref()
        .and_then(|t| cluster.member(t))
        .cloned();

    let started = Instant::now();
    let request = async {
        match &target {
            Some(m) => {
                ctx.rest
                    .call(
                        m,
                        Method::POST,
                        action.name(),
                        Some(&plan.body),
                        SWITCHOVER_TIMEOUT,
                    )
                    .await
            }
            None => Err(super::rest::CallError {
                unreachable: true,
                message: "no member key to send the request to".into(),
            }),
        }
    };
    tokio::pin!(request);

    // Watch an immediate switchover (or a failover away from a leader) in etcd
    // while the member works on it.
    let mut watch = match (&plan.leader, &plan.scheduled_at) {
        (Some(l), None) => Some(SwitchoverWatch::new(l, plan.candidate.as_deref())),
        _ => None,
    };
    let mut answered = false;
    let mut last: Option<Cluster> = None;
    // the first observation right away, then every POLL
    let mut next_poll = started;
    loop {
        if answered && watch.as_ref().is_none_or(|w| w.finished()) {
            break;
        }
        if started.elapsed() >= SWITCHOVER_TIMEOUT {
            println!(
                "Stopped watching after {} s; check with: agentctl list {name}",
                SWITCHOVER_TIMEOUT.as_secs()
            );
            break;
        }
        tokio::select! {
            r = &mut request, if !answered => {
                answered = true;
                match r {
                    Ok(reply) if reply.status == 200 || reply.status == 202 => {
                        println!("{} {}", timestamp(6), reply.message());
                        if reply.status == 202 {
                            watch = None;
                        }
                    }
                    Ok(reply) => {
                        let details = reply.message();
                        let result = if details.to_ascii_lowercase().contains("status unknown") {
                            "result unknown"
                        } else {
                            "failed"
                        };
                        return Err(CtlError::failed(format!(
                            "{} {result}, details: {}, {details}",
                            action.title(),
                            reply.status
                        )));
                    }
                    Err(e) if e.unreachable => {
                        // as patronictl: the request surely did not arrive, so ask
                        // the agents through etcd instead
                        println!(
                            "{} Could not {} using Patroni api ({e}), falling back to DCS",
                            timestamp(6),
                            action.name()
                        );
                        let value = Failover {
                            leader: plan.switchover_leader.clone(),
                            candidate: plan.candidate.clone(),
                            scheduled_at: plan.scheduled_at.clone(),
                            mod_revision: 0,
                        };
                        etcd.write_failover(value.to_json_string()).await?;
                    }
                    Err(e) => {
                        return Err(CtlError::failed(format!(
                            "{} result unknown: {e}",
                            action.title()
                        )));
                    }
                }
            }
            c = async {
                tokio::time::sleep_until(tokio::time::Instant::from_std(next_poll)).await;
                etcd.read_cluster().await
            } => {
                next_poll = Instant::now() + POLL;
                if let Ok(c) = c {
                    if let Some(w) = watch.as_mut() {
                        for step in w.step(&c, started.elapsed()) {
                            println!("  +{:.2}s {step}", started.elapsed().as_secs_f64());
                        }
                    }
                    last = Some(c);
                }
            }
        }
    }
    if let Some(w) = &watch {
        println!("{}", w.summary(POLL));
    }
    let cluster = match etcd.read_cluster().await {
        Ok(c) => c,
        Err(_) => last.unwrap_or(cluster),
    };
    print_members(&cluster, name);
    Ok(())
}

// ---------------------------------------------------------------- member actions

/// The cluster and members named by `[CLUSTER] [MEMBER...]`, and the cluster read.
async fn read_target(
    ctx: &Ctx,
    names: &[String],
) -> CtlResult<(String, Vec<String>, Etcd, Cluster)> {
    let scope = ctx.cfg.scope.as_deref();
    if !select::needs_scope_members(names, scope) {
        let (name, members) = select::split_names(names, scope, &[])?;
        let (etcd, cluster) = read(ctx, &name).await?;
        return Ok((name, members, etcd, cluster));
    }
    let scope = scope.unwrap_or_default();
    let (etcd, cluster) = read(ctx, scope).await?;
    let scope_members: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let (name, members) = select::split_names(names, Some(scope), &scope_members)?;
    if name == scope {
        return Ok((name, members, etcd, cluster));
    }
    let (etcd, other) = read(ctx, &name).await?;
    if other.members.is_empty() && other.initialize.is_none() {
        // most likely a mistyped member name rather than another cluster
        return Err(CtlError::usage(format!(
            "{name} is not a member of cluster {scope}, nor a cluster with members"
        )));
    }
    Ok((name, members, etcd, other))
}

/// patronictl's `get_members`: show the cluster, pick members, maybe ask which.
fn get_members(
    ctx: &mut Ctx,
    cluster: &Cluster,
    name: &str,
    names: &[String],
    role: Role,
    action: &str,
    force: bool,
) -> CtlResult<Vec<Member>> {
    if !(names.is_empty() && select::members_with_role(cluster, role).is_empty()) {
        print_members(cluster, name);
    }
    plan::pick_or_ask(
        ctx.prompt.as_mut(),
        cluster,
        name,
        names,
        role,
        action,
        force,
    )
}

fn confirm_members_action(
    ctx: &mut Ctx,
    members: &[Member],
    force: bool,
    action: &str,
) -> CtlResult<()> {
    plan::confirm_members_action(ctx.prompt.as_mut(), members, force, action, None, false)
}

/// Print patronictl's line for a member's answer; `true` when it succeeded.
fn check_response(
    reply: &Result<Reply, super::rest::CallError>,
    member: &str,
    action: &str,
    silent_success: bool,
) -> bool {
    match reply {
        Ok(r) if r.ok() => {
            if !silent_success {
                println!("Success: {action} for member {member}");
            }
            true
        }
        Ok(r) => {
            println!(
                "Failed: {action} for member {member}, status code={}, ({})",
                r.status,
                r.message()
            );
            false
        }
        Err(e) => {
            println!("Failed: {action} for member {member}, ({e})");
            false
        }
    }
}

fn some_failed(failed: usize, action: &str) -> CtlResult<()> {
    if failed == 0 {
        Ok(())
    } else {
        Err(CtlError::failed(format!(
            "{action} failed on {failed} member{}",
            if failed == 1 { "" } else { "s" }
        )))
    }
}

async fn restart(ctx: &mut Ctx, a: args::RestartArgs) -> CtlResult<()> {
    let (name, names, _, cluster) = read_target(ctx, &a.names).await?;
    let members = get_members(ctx, &cluster, &name, &names, a.role, "restart", a.force)?;
    let force = a.force;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    let plan = plan::plan_restart(
        ctx.prompt.as_mut(),
        &cluster,
        members,
        plan::RestartArgs {
            role: Some(a.role),
            any: a.any,
            scheduled: a.scheduled,
            pg_version: a.pg_version,
            pending: a.pending,
            timeout: a.timeout,
            force,
        },
        |n| nanos % n,
    )?;
    if plan.members.is_empty() {
        println!("No member to restart");
        return Ok(());
    }
    let mut failed = 0;
    for m in &plan.members {
        if plan.scheduled_at.is_some() && force && m.data.scheduled_restart.is_some() {
            let r = ctx
                .rest
                .call(m, Method::DELETE, "restart", None, REST_TIMEOUT)
                .await;
            check_response(&r, &m.name, "flush scheduled restart", true);
        }
        let r = ctx
            .rest
            .call(
                m,
                Method::POST,
                "restart",
                Some(&plan.body),
                RESTART_TIMEOUT,
            )
            .await;
        match r {
            Ok(r) if r.status == 200 => println!("Success: restart on member {}", m.name),
            Ok(r) if r.status == 202 => {
                println!("Success: restart scheduled on member {}", m.name)
            }
            Ok(r) if r.status == 409 => {
                failed += 1;
                println!(
                    "Failed: another restart is already scheduled on member {}",
                    m.name
                )
            }
            other => {
                failed += 1;
                check_response(&other, &m.name, "restart", false);
            }
        }
    }
    some_failed(failed, "restart")
}

async fn reload(ctx: &mut Ctx, a: args::ReloadArgs) -> CtlResult<()> {
    let (name, names, _, cluster) = read_target(ctx, &a.names).await?;
    let members = get_members(ctx, &cluster, &name, &names, a.role, "reload", a.force)?;
    confirm_members_action(ctx, &members, a.force, "reload")?;
    let mut failed = 0;
    for m in &members {
        let r = ctx
            .rest
            .call(m, Method::POST, "reload", None, REST_TIMEOUT)
            .await;
        match r {
            Ok(r) if r.status == 200 => println!("No changes to apply on member {}", m.name),
            Ok(r) if r.status == 202 => println!(
                "Reload request received for member {} and will be processed within {} seconds",
                m.name,
                fmt_secs(loop_wait(&cluster))
            ),
            other => {
                failed += 1;
                check_response(&other, &m.name, "reload", false);
            }
        }
    }
    some_failed(failed, "reload")
}

async fn reinit(ctx: &mut Ctx, a: args::ReinitArgs) -> CtlResult<()> {
    let (name, names, _, cluster) = read_target(ctx, &a.names).await?;
    let members = get_members(
        ctx,
        &cluster,
        &name,
        &names,
        Role::Replica,
        "reinitialize",
        a.force,
    )?;
    if members.is_empty() {
        return Err(CtlError::usage(
            "no member to reinitialize: pass MEMBER_NAMES",
        ));
    }
    confirm_members_action(ctx, &members, a.force, "reinitialize")?;

    let mut waiting: Vec<Member> = Vec::new();
    let mut failed = 0;
    for m in &members {
        let mut body = json!({"force": a.force, "from_leader": a.from_leader});
        loop {
            let r = ctx
                .rest
                .call(m, Method::POST, "reinitialize", Some(&body), REST_TIMEOUT)
                .await;
            let started = check_response(&r, &m.name, "reinitialize", false);
            let in_progress =
                matches!(&r, Ok(rep) if rep.message().ends_with(" already in progress"));
            if !started
                && in_progress
                && !a.force
                && ctx.prompt.confirm(
                    "Do you want to cancel it and reinitialize anyway?",
                    "--force",
                )?
            {
                body["force"] = json!(true);
                continue;
            }
            if !started {
                failed += 1;
            } else if a.wait {
                waiting.push(m.clone());
            }
            break;
        }
    }

    // Done when the member runs again; a reinit that finished before we looked
    // counts once the agent had time for a cycle.
    let patience = secs(loop_wait(&cluster) + 2.0);
    let since = Instant::now();
    let mut seen_busy: Vec<String> = Vec::new();
    let mut shown: Vec<String> = Vec::new();
    while !waiting.is_empty() {
        let now_names: Vec<String> = waiting.iter().map(|m| m.name.clone()).collect();
        if now_names != shown {
            println!(
                "Waiting for reinitialize to complete on: {}",
                now_names.join(", ")
            );
            shown = now_names;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut still = Vec::new();
        for m in waiting.drain(..) {
            let state = ctx
                .rest
                .call(&m, Method::GET, "patroni", None, REST_TIMEOUT)
                .await
                .ok()
                .and_then(|r| r.json())
                .and_then(|v| v["state"].as_str().map(str::to_string));
            match state.as_deref() {
                Some("running") if seen_busy.contains(&m.name) || since.elapsed() >= patience => {
                    println!("Reinitialize is completed on: {}", m.name);
                }
                Some(s) if s.contains("failed") => {
                    failed += 1;
                    println!("Reinitialize failed on: {} (state: {s})", m.name);
                }
                Some("running") | None => still.push(m),
                Some(_) => {
                    if !seen_busy.contains(&m.name) {
                        seen_busy.push(m.name.clone());
                    }
                    still.push(m);
                }
            }
        }
        waiting = still;
    }
    some_failed(failed, "reinitialize")
}

async fn flush(ctx: &mut Ctx, a: args::FlushArgs) -> CtlResult<()> {
    let Some((target, rest)) = a.names.split_last() else {
        return Err(CtlError::usage("missing argument {restart|switchover}"));
    };
    if target != "restart" && target != "switchover" {
        return Err(CtlError::usage(format!(
            "invalid value for {{restart|switchover}}: '{target}' is not one of 'restart', 'switchover'"
        )));
    }
    let (name, names, etcd, cluster) = read_target(ctx, rest).await?;
    if target == "restart" {
        let members = get_members(ctx, &cluster, &name, &names, a.role, "flush", a.force)?;
        confirm_members_action(ctx, &members, a.force, "flush")?;
        let mut failed = 0;
        for m in &members {
            if m.data.scheduled_restart.is_some() {
                let r = ctx
                    .rest
                    .call(m, Method::DELETE, "restart", None, REST_TIMEOUT)
                    .await;
                if !check_response(&r, &m.name, "flush scheduled restart", false) {
                    failed += 1;
                }
            } else {
                println!("No scheduled restart for member {}", m.name);
            }
        }
        return some_failed(failed, "flush");
    }
    let Some(failover) = cluster
        .failover
        .as_ref()
        .filter(|f| f.scheduled_at.is_some())
    else {
        println!("No pending scheduled switchover");
        return Ok(());
    };
    for m in select::leader_first(&cluster) {
        match ctx
            .rest
            .call(m, Method::DELETE, "switchover", None, REST_TIMEOUT)
            .await
        {
            Ok(r) if r.status == 200 => {
                println!("Success: {}", r.message());
                return Ok(());
            }
            Ok(r) if r.status == 404 => {
                return Err(CtlError::failed(format!("Failed: {}", r.message())));
            }
            Ok(r) => println!(
                "Failed: member={}, status_code={}, ({})",
                m.name,
                r.status,
                r.message()
            ),
            Err(e) => eprintln!("agentctl: member {} is not accessible: {e}", m.name),
        }
    }
    println!(
        "{} Could not find any accessible member of cluster {name}",
        timestamp(6)
    );
    if etcd.clear_failover(failover.mod_revision).await? {
        println!("Success: scheduled switchover discarded in etcd");
        Ok(())
    } else {
        Err(CtlError::failed(
            "the failover key changed meanwhile; nothing discarded",
        ))
    }
}

// ---------------------------------------------------------------- pause, resume

async fn toggle_pause(
    ctx: &mut Ctx,
    cluster: Option<&str>,
    paused: bool,
    wait: bool,
) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(cluster)?;
    let (_, cluster) = read(ctx, &name).await?;
    if is_paused(&cluster) == paused {
        return Err(CtlError::failed(format!(
            "Cluster is {} paused",
            if paused { "already" } else { "not" }
        )));
    }
    let (verb, done) = if paused {
        ("pause", "paused")
    } else {
        ("resume", "resumed")
    };
    let body = json!({"pause": if paused { json!(true) } else { Value::Null }});
    for m in select::leader_first(&cluster) {
        let r = match ctx
            .rest
            .call(m, Method::PATCH, "config", Some(&body), REST_TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("agentctl: member {} is not accessible: {e}", m.name);
                continue;
            }
        };
        if r.status != 200 {
            return Err(CtlError::failed(format!(
                "Failed: {verb} cluster management status code={}, ({})",
                r.status,
                r.message()
            )));
        }
        if !wait {
            println!("Success: cluster management is {done}");
            return Ok(());
        }
        println!("'{verb}' request sent, waiting until it is recognized by all nodes");
        let limit = secs(loop_wait(&cluster) + 1.0);
        let since = Instant::now();
        let mut pending: Vec<&Member> = select::leader_first(&cluster);
        loop {
            let mut still = Vec::new();
            for m in pending {
                let applied = ctx
                    .rest
                    .call(m, Method::GET, "patroni", None, REST_TIMEOUT)
                    .await
                    .ok()
                    .and_then(|r| r.json())
                    .map(|v| v["pause"].as_bool().unwrap_or(false) == paused);
                if applied != Some(true) {
                    still.push(m);
                }
            }
            pending = still;
            if pending.is_empty() {
                println!("Success: cluster management is {done}");
                return Ok(());
            }
            if since.elapsed() >= limit {
                let names: Vec<&str> = pending.iter().map(|m| m.name.as_str()).collect();
                return Err(CtlError::failed(format!(
                    "{} members didn't recognize the {verb} after {} seconds",
                    names.join(", "),
                    fmt_secs(limit.as_secs_f64())
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Err(CtlError::failed("Can not find accessible cluster member"))
}

// ---------------------------------------------------------------- configuration

async fn show_config(ctx: &Ctx, cluster: Option<&str>) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(cluster)?;
    let (_, cluster) = read(ctx, &name).await?;
    if let Some(c) = &cluster.config {
        let data = if c.raw.is_object() {
            c.raw.clone()
        } else {
            json!({})
        };
        println!("{}", output::yaml(&data));
    }
    Ok(())
}

async fn edit_config(ctx: &mut Ctx, a: args::EditConfigArgs) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
    let (etcd, cluster) = read(ctx, &name).await?;
    let Some(config) = &cluster.config else {
        return Err(CtlError::failed(format!(
            "The config key does not exist in the cluster {name}"
        )));
    };
    let before_data = if config.raw.is_object() {
        config.raw.clone()
    } else {
        json!({})
    };
    let before = output::yaml(&before_data);

    let mut changed = before_data.clone();
    let mut after: Option<String> = None;
    if let Some(f) = &a.replace {
        changed = Value::Object(edit::read_source(f)?);
        after = Some(output::yaml(&changed));
    }
    if let Some(f) = &a.apply {
        let patch = edit::read_source(f)?;
        let mut m = changed.as_object().cloned().unwrap_or_default();
        merge(&mut m, &patch, Null::Deletes);
        changed = Value::Object(m);
        after = Some(output::yaml(&changed));
    }
    if !a.set.is_empty() || !a.pg.is_empty() {
        changed = edit::apply_pairs(&changed, &a.set, &a.pg)?;
        after = Some(output::yaml(&changed));
    }
    let mut edited_file = None;
    let after = match after {
        Some(t) => t,
        None => {
            if !std::io::stdin().is_terminal() {
                return Err(CtlError::usage(
                    "refusing to start an editor: stdin is not a terminal; pass -s/--set, -p/--pg, --apply or --replace",
                ));
            }
            let (text, file) = edit::run_editor(&before, &name)?;
            changed = Value::Object(edit::parse_config_yaml(&text, "the edited configuration")?);
            edited_file = Some(file);
            text
        }
    };

    if changed == before_data {
        if !a.quiet {
            println!("Not changed");
        }
        return Ok(());
    }
    if !a.quiet {
        println!("{}", diff::render(&before, &after, ctx.tty_out));
    }
    if let Err(e) = crate::config::DynamicConfig::check_change(&before_data, &changed) {
        let kept = edited_file.as_mut().map(|f| {
            f.keep();
            format!(" (your edit is kept in {})", f.path.display())
        });
        return Err(CtlError::failed(format!(
            "invalid configuration, not applied: {e}{}",
            kept.unwrap_or_default()
        )));
    }
    let from_stdin = a.apply.as_deref() == Some("-") || a.replace.as_deref() == Some("-");
    if from_stdin && !a.force {
        return Err(CtlError::usage(
            "Use --force option to apply changes (stdin was read for the configuration, so there is no one to ask)",
        ));
    }
    if a.force || ctx.prompt.confirm("Apply these changes?", "--force")? {
        if !etcd.set_config(&changed, Some(config.mod_revision)).await? {
            return Err(CtlError::failed(
                "Config modification aborted due to concurrent changes",
            ));
        }
        println!("Configuration changed");
    }
    Ok(())
}

// ---------------------------------------------------------------- remove, version

async fn remove(ctx: &mut Ctx, a: args::RemoveArgs) -> CtlResult<()> {
    let name = a.cluster;
    let (etcd, cluster) = read(ctx, &name).await?;
    println!(
        "{}",
        output::members_output(&cluster, &name, false, a.format.into())
    );
    plan::confirm_remove(ctx.prompt.as_mut(), &name, cluster.leader_name(), a.force)?;
    etcd.delete_cluster().await?;
    Ok(())
}

/// `150004` -> `15.4`, `90624` -> `9.6.24`.
fn format_pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10000, v % 100)
    }
}

async fn version(ctx: &Ctx, cluster: Option<&str>, members: &[String]) -> CtlResult<()> {
    println!("agentctl version {}", env!("CARGO_PKG_VERSION"));
    let Some(name) = cluster else {
        return Ok(());
    };
    println!();
    let (_, cluster) = read(ctx, name).await?;
    let mut failed = 0;
    for m in &cluster.members {
        if m.data.api_url.is_none() || !(members.is_empty() || members.contains(&m.name)) {
            continue;
        }
        let r = ctx
            .rest
            .call(m, Method::GET, "patroni", None, REST_TIMEOUT)
            .await;
        match r.as_ref().ok().and_then(Reply::json) {
            Some(data) => {
                let v = output::py_json(&data["patroni"]["version"]);
                let v = data["patroni"]["version"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(v);
                let pg = data["server_version"]
                    .as_u64()
                    .map(|p| format!(" PostgreSQL {}", format_pg_version(p)))
                    .unwrap_or_default();
                println!("{}: Patroni {v}{pg}", m.name);
            }
            None => {
                failed += 1;
                let why = match r {
                    Ok(r) => format!("status code={}, ({})", r.status, r.message()),
                    Err(e) => e.to_string(),
                };
                println!("{}: failed to get version: {why}", m.name);
            }
        }
    }
    some_failed(failed, "version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(format_pg_version(90624), "9.6.24");
        assert_eq!(format_pg_version(100000), "10.0");
        assert_eq!(format_pg_version(150004), "15.4");
        assert_eq!(fmt_secs(10.0), "10");
        assert_eq!(fmt_secs(2.5), "2.5");
        assert_eq!(timestamp(0).len(), "2024-01-01 12:00:00".len());
        assert_eq!(timestamp(6).len(), "2024-01-01 12:00:00.123456".len());
        assert_eq!(timestamp(3).len(), "2024-01-01 12:00:00.123".len());
        assert_eq!(
            watch_interval(true, None).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(watch_interval(false, None).unwrap(), None);
        assert_eq!(
            watch_interval(true, Some(0.5)).unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(watch_interval(false, Some(0.0)).unwrap_err().code, 2);
        assert_eq!(watch_interval(false, Some(f64::NAN)).unwrap_err().code, 2);
        assert_eq!(watch_interval(false, Some(1e300)).unwrap_err().code, 2);
        assert_eq!(secs(1e300), Duration::from_secs(86_400));
    }

    #[test]
    fn loop_wait_from_the_raw_config() {
        let mut c = Cluster::default();
        assert_eq!(loop_wait(&c), 10.0);
        c.config = Some(crate::dcs::model::ClusterConfig {
            raw: json!({"pause": true, "ttl": "garbage", "loop_wait": 2}),
            parsed: None,
            notes: vec![],
            mod_revision: 1,
        });
        assert_eq!(loop_wait(&c), 2.0);
        assert!(is_paused(&c));
    }
}
