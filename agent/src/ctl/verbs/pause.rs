//! `pause` and `resume`: maintenance mode on or off (the `pause` key of the dynamic
//! configuration, set through a member), and with `--wait` until every member shows it.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::common::{fmt_secs, loop_wait, read, secs, Ctx, REST_TIMEOUT};
use crate::ctl::args::PauseArgs;
use crate::ctl::plan::is_paused;
use crate::ctl::{select, CtlError, CtlResult};
use crate::dcs::model::Member;

pub(super) async fn pause(ctx: &mut Ctx, a: PauseArgs) -> CtlResult<()> {
    toggle_pause(ctx, a.cluster.cluster.as_deref(), true, a.wait).await
}

pub(super) async fn resume(ctx: &mut Ctx, a: PauseArgs) -> CtlResult<()> {
    toggle_pause(ctx, a.cluster.cluster.as_deref(), false, a.wait).await
}

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
