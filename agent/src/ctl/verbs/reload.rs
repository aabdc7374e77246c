//! `reload`: ask the chosen members to reload their configuration.

use reqwest::Method;

use super::common::{
    check_response, confirm_members_action, fmt_secs, get_members, loop_wait, read_target,
    some_failed, Ctx, REST_TIMEOUT,
};
use crate::ctl::args::ReloadArgs;
use crate::ctl::CtlResult;

pub(super) async fn reload(ctx: &mut Ctx, a: ReloadArgs) -> CtlResult<()> {
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
