//! `flush restart|switchover`: discard scheduled restarts on members, or the
//! scheduled switchover (through a member, else straight in etcd).

use reqwest::Method;

use super::common::{
    check_response, confirm_members_action, get_members, read_target, some_failed, timestamp, Ctx,
    REST_TIMEOUT,
};
use crate::ctl::args::FlushArgs;
use crate::ctl::{select, CtlError, CtlResult};

pub(super) async fn flush(ctx: &mut Ctx, a: FlushArgs) -> CtlResult<()> {
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
