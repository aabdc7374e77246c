//! `list` and `topology`: the members of one or more clusters, once or every
//! `--watch` seconds.

use std::time::{Duration, Instant};

use super::common::{connect, timestamp, Ctx};
use crate::ctl::args::{ListArgs, TopologyArgs};
use crate::ctl::output::{self, Layout};
use crate::ctl::{CtlError, CtlResult};

pub(super) async fn list(ctx: &Ctx, a: ListArgs) -> CtlResult<()> {
    let interval = watch_interval(a.watch_default, a.watch)?;
    show_members(
        ctx,
        &a.clusters,
        a.extended,
        a.timestamp,
        a.format.into(),
        interval,
    )
    .await
}

pub(super) async fn topology(ctx: &Ctx, a: TopologyArgs) -> CtlResult<()> {
    let interval = watch_interval(a.watch_default, a.watch)?;
    show_members(ctx, &a.clusters, false, false, Layout::Topology, interval).await
}

fn watch_interval(w: bool, watch: Option<f64>) -> CtlResult<Option<Duration>> {
    match watch {
        Some(s) if s > 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| CtlError::usage(format!("--watch: {s} seconds is out of range"))),
        Some(s) => Err(CtlError::usage(format!(
            "--watch: expected a positive number of seconds, got {s}"
        ))),
        None if w => Ok(Some(Duration::from_secs(2))),
        None => Ok(None),
    }
}

async fn show_members(
    ctx: &Ctx,
    clusters: &[String],
    extended: bool,
    ts: bool,
    layout: Layout,
    interval: Option<Duration>,
) -> CtlResult<()> {
    let names: Vec<String> = if clusters.is_empty() {
        vec![ctx.cfg.cluster_name(None)?]
    } else {
        clusters.to_vec()
    };
    let mut conns = Vec::new();
    for n in &names {
        conns.push((n.clone(), connect(ctx, n).await?));
    }
    loop {
        let started = Instant::now();
        if interval.is_some() && ctx.tty_out {
            // clear the screen, as `watch` does
            print!("\x1b[H\x1b[2J");
        }
        if ts {
            println!("{}", timestamp(0));
        }
        for (name, etcd) in &conns {
            match etcd.read_cluster().await {
                Ok(c) => println!("{}", output::members_output(&c, name, extended, layout)),
                Err(e) if interval.is_some() => eprintln!("agentctl: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        let Some(every) = interval else {
            return Ok(());
        };
        tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_intervals() {
        assert_eq!(
            watch_interval(true, None).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(watch_interval(false, None).unwrap(), None);
        assert_eq!(
            watch_interval(true, Some(0.5)).unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(watch_interval(false, Some(0.0)).unwrap_err().code, 2);
        assert_eq!(watch_interval(false, Some(f64::NAN)).unwrap_err().code, 2);
        assert_eq!(watch_interval(false, Some(1e300)).unwrap_err().code, 2);
    }
}
