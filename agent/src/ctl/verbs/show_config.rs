//! `show-config`: the dynamic configuration as stored in etcd, as YAML.

use serde_json::json;

use super::common::{read, Ctx};
use crate::ctl::args::ClusterArg;
use crate::ctl::output;
use crate::ctl::CtlResult;

pub(super) async fn show_config(ctx: &Ctx, a: ClusterArg) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(a.cluster.as_deref())?;
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
