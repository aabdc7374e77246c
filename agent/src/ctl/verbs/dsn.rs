//! `dsn`: `host=... port=...` of a member (the leader by default), from its key in etcd.

use super::common::{read, Ctx};
use crate::ctl::args::DsnArgs;
use crate::ctl::{select, CtlError, CtlResult};

pub(super) async fn dsn(ctx: &Ctx, a: DsnArgs) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
    let (_, cluster) = read(ctx, &name).await?;
    let m = select::dsn_member(&cluster, a.role, a.member.as_deref())?
        .ok_or_else(|| CtlError::failed("Can not find a suitable member"))?;
    let (host, port) = m
        .data
        .conn_host_port()
        .ok_or_else(|| CtlError::failed(format!("member {} publishes no conn_url", m.name)))?;
    println!("host={host} port={port}");
    Ok(())
}
