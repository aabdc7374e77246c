//! `reinit`: re-create replicas from scratch, and with `--wait` follow them until
//! they run again.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::common::{
    check_response, confirm_members_action, get_members, loop_wait, read_target, secs, some_failed,
    Ctx, REST_TIMEOUT,
};
use crate::ctl::args::{ReinitArgs, Role};
use crate::ctl::{CtlError, CtlResult};
use crate::dcs::model::Member;

pub(super) async fn reinit(ctx: &mut Ctx, a: ReinitArgs) -> CtlResult<()> {
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
