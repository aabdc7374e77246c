//! `switchover` and `failover`: plan as patronictl does (questions, checks), ask a
//! member through its REST API (or, when none can be reached, write the failover key
//! in etcd), and show the change in etcd step by step while it happens.

use std::time::Instant;

use reqwest::Method;

use super::common::{print_members, read, timestamp, Ctx, POLL, SWITCHOVER_TIMEOUT};
use crate::ctl::args::{FailoverArgs, SwitchoverArgs};
use crate::ctl::plan::{self, Action};
use crate::ctl::progress::SwitchoverWatch;
use crate::ctl::rest::CallError;
use crate::ctl::{CtlError, CtlResult};
use crate::dcs::model::{Cluster, Failover, Member};

pub(super) async fn switchover(ctx: &mut Ctx, a: SwitchoverArgs) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
    let fa = plan::FailoverArgs {
        leader: a.leader,
        candidate: a.candidate,
        scheduled: a.scheduled,
        force: a.force,
    };
    failover_or_switchover(ctx, Action::Switchover, &name, fa).await
}

pub(super) async fn failover(ctx: &mut Ctx, a: FailoverArgs) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
    let fa = plan::FailoverArgs {
        candidate: a.candidate,
        force: a.force,
        ..Default::default()
    };
    failover_or_switchover(ctx, Action::Failover, &name, fa).await
}

async fn failover_or_switchover(
    ctx: &mut Ctx,
    action: Action,
    name: &str,
    a: plan::FailoverArgs,
) -> CtlResult<()> {
    let (etcd, cluster) = read(ctx, name).await?;
    println!("Current cluster topology");
    print_members(&cluster, name);
    let plan = plan::plan_failover(ctx.prompt.as_mut(), &cluster, name, action, a)?;
    let target: Option<Member> = plan
        .target
        .as_deref()
        .and_then(|t| cluster.member(t))
        .cloned();

    let started = Instant::now();
    let request = async {
        match &target {
            Some(m) => {
                ctx.rest
                    .call(
                        m,
                        Method::POST,
                        action.name(),
                        Some(&plan.body),
                        SWITCHOVER_TIMEOUT,
                    )
                    .await
            }
            None => Err(CallError {
                unreachable: true,
                message: "no member key to send the request to".into(),
            }),
        }
    };
    tokio::pin!(request);

    // Watch an immediate switchover (or a failover away from a leader) in etcd
    // while the member works on it.
    let mut watch = match (&plan.leader, &plan.scheduled_at) {
        (Some(l), None) => Some(SwitchoverWatch::new(l, plan.candidate.as_deref())),
        _ => None,
    };
    let mut answered = false;
    let mut last: Option<Cluster> = None;
    // the first observation right away, then every POLL
    let mut next_poll = started;
    loop {
        if answered && watch.as_ref().is_none_or(|w| w.finished()) {
            break;
        }
        if started.elapsed() >= SWITCHOVER_TIMEOUT {
            println!(
                "Stopped watching after {} s; check with: agentctl list {name}",
                SWITCHOVER_TIMEOUT.as_secs()
            );
            break;
        }
        tokio::select! {
            r = &mut request, if !answered => {
                answered = true;
                match r {
                    Ok(reply) if reply.status == 200 || reply.status == 202 => {
                        println!("{} {}", timestamp(6), reply.message());
                        if reply.status == 202 {
                            watch = None;
                        }
                    }
                    Ok(reply) => {
                        let details = reply.message();
                        let result = if details.to_ascii_lowercase().contains("status unknown") {
                            "result unknown"
                        } else {
                            "failed"
                        };
                        return Err(CtlError::failed(format!(
                            "{} {result}, details: {}, {details}",
                            action.title(),
                            reply.status
                        )));
                    }
                    Err(e) if e.unreachable => {
                        // as patronictl: the request surely did not arrive, so ask
                        // the agents through etcd instead
                        println!(
                            "{} Could not {} using Patroni api ({e}), falling back to DCS",
                            timestamp(6),
                            action.name()
                        );
                        let value = Failover {
                            leader: plan.switchover_leader.clone(),
                            candidate: plan.candidate.clone(),
                            scheduled_at: plan.scheduled_at.clone(),
                            mod_revision: 0,
                        };
                        etcd.write_failover(value.to_json_string()).await?;
                    }
                    Err(e) => {
                        return Err(CtlError::failed(format!(
                            "{} result unknown: {e}",
                            action.title()
                        )));
                    }
                }
            }
            c = async {
                tokio::time::sleep_until(tokio::time::Instant::from_std(next_poll)).await;
                etcd.read_cluster().await
            } => {
                next_poll = Instant::now() + POLL;
                if let Ok(c) = c {
                    if let Some(w) = watch.as_mut() {
                        for step in w.step(&c, started.elapsed()) {
                            println!("  +{:.2}s {step}", started.elapsed().as_secs_f64());
                        }
                    }
                    last = Some(c);
                }
            }
        }
    }
    if let Some(w) = &watch {
        println!("{}", w.summary(POLL));
    }
    let cluster = match etcd.read_cluster().await {
        Ok(c) => c,
        Err(_) => last.unwrap_or(cluster),
    };
    print_members(&cluster, name);
    Ok(())
}
