//! `history`: the cluster's past failovers and switchovers, from etcd.

use super::common::{read, Ctx};
use crate::ctl::args::HistoryArgs;
use crate::ctl::output;
use crate::ctl::CtlResult;

pub(super) async fn history(ctx: &Ctx, a: HistoryArgs) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
    let (_, cluster) = read(ctx, &name).await?;
    println!("{}", output::history_output(&cluster, a.format.into()));
    Ok(())
}
