//! `restart`: restart postgres on the chosen members, now or at a scheduled time,
//! optionally only where a restart is pending or the version is older.

use reqwest::Method;

use super::common::{
    check_response, get_members, read_target, some_failed, Ctx, RESTART_TIMEOUT, REST_TIMEOUT,
};
use crate::ctl::args::RestartArgs;
use crate::ctl::plan;
use crate::ctl::CtlResult;

pub(super) async fn restart(ctx: &mut Ctx, a: RestartArgs) -> CtlResult<()> {
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
