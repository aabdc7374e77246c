//! `version`: agentctl's version, and with a cluster name, each member's Patroni and
//! PostgreSQL versions from its REST API.

use reqwest::Method;

use super::common::{read, some_failed, Ctx, REST_TIMEOUT};
use crate::ctl::args::VersionArgs;
use crate::ctl::output;
use crate::ctl::rest::Reply;
use crate::ctl::CtlResult;

/// `150004` -> `15.4`, `90624` -> `9.6.24`.
fn format_pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10000, v % 100)
    }
}

pub(super) async fn version(ctx: &Ctx, a: VersionArgs) -> CtlResult<()> {
    let members = &a.members;
    println!("agentctl version {}", env!("CARGO_PKG_VERSION"));
    let Some(name) = a.cluster.as_deref() else {
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
    fn pg_versions() {
        assert_eq!(format_pg_version(90624), "9.6.24");
        assert_eq!(format_pg_version(100000), "10.0");
        assert_eq!(format_pg_version(150004), "15.4");
    }
}
