//! `remove`: delete a cluster's keys from etcd, after patronictl's confirmations.

use super::common::{read, Ctx};
use crate::ctl::args::RemoveArgs;
use crate::ctl::{output, plan, CtlResult};

pub(super) async fn remove(ctx: &mut Ctx, a: RemoveArgs) -> CtlResult<()> {
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
