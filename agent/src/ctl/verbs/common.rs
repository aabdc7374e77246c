//! What the verbs share: the context they run in, the timeouts, reaching etcd,
//! picking the members to act on, and patronictl's success and failure lines.
//!
//! Rule: only what two or more verbs use; a verb's own policy stays in its file.

use std::time::Duration;

use serde_json::Value;

use crate::ctl::args::Role;
use crate::ctl::config::CtlConfig;
use crate::ctl::output::{self, Layout};
use crate::ctl::plan;
use crate::ctl::prompt::Prompter;
use crate::ctl::rest::{CallError, Reply, Rest};
use crate::ctl::{select, CtlError, CtlResult};
use crate::dcs::etcd::Etcd;
use crate::dcs::model::{Cluster, Member};

/// Upper bound of one etcd call.
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of a quick REST call (status, reload, config, flush).
pub(super) const REST_TIMEOUT: Duration = Duration::from_secs(10);
/// A switchover or failover request: the member answers once it is done.
pub(super) const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// A restart request: the member answers once postgres runs again.
pub(super) const RESTART_TIMEOUT: Duration = Duration::from_secs(330);
/// How often a switchover is observed in etcd.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// Everything a verb works with.
pub(super) struct Ctx {
    pub(super) cfg: CtlConfig,
    pub(super) rest: Rest,
    pub(super) prompt: Box<dyn Prompter>,
    /// stdout is a terminal: color the diff, clear the screen when watching.
    pub(super) tty_out: bool,
}

/// `2024-01-01 12:00:00.123456` (`precision` digits of the second, 0..=6).
pub(super) fn timestamp(precision: usize) -> String {
    let s = chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let cut = s.len() - (6 - precision.min(6)) - usize::from(precision == 0);
    s[..cut].to_string()
}

pub(super) async fn connect(ctx: &Ctx, cluster: &str) -> CtlResult<Etcd> {
    ctx.cfg.check_etcd()?;
    let prefix = ctx.cfg.prefix(cluster);
    let fut = Etcd::connect(&ctx.cfg.etcd3, &prefix, "agentctl");
    let mut etcd = match tokio::time::timeout(ETCD_TIMEOUT, fut).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return Err(CtlError::failed(format!("etcd: {e:#}"))),
        Err(_) => {
            return Err(CtlError::failed(format!(
                "etcd: no connection within {ETCD_TIMEOUT:?} to {}",
                ctx.cfg.etcd3.endpoints().join(", ")
            )))
        }
    };
    etcd.set_timeout(ETCD_TIMEOUT);
    Ok(etcd)
}

pub(super) async fn read(ctx: &Ctx, cluster: &str) -> CtlResult<(Etcd, Cluster)> {
    let etcd = connect(ctx, cluster).await?;
    let c = etcd.read_cluster().await?;
    Ok((etcd, c))
}

/// `loop_wait` as stored (for messages), 10 by default.
pub(super) fn loop_wait(cluster: &Cluster) -> f64 {
    cluster
        .config
        .as_ref()
        .and_then(|c| c.raw.get("loop_wait"))
        .and_then(Value::as_f64)
        .filter(|v| *v > 0.0)
        .unwrap_or(10.0)
}

/// Seconds from the stored configuration, capped at a day.
pub(super) fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v.min(86_400.0)).unwrap_or(Duration::from_secs(10))
}

pub(super) fn fmt_secs(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

pub(super) fn print_members(cluster: &Cluster, name: &str) {
    println!(
        "{}",
        output::members_output(cluster, name, false, Layout::Pretty)
    );
}

/// The cluster and members named by `[CLUSTER] [MEMBER...]`, and the cluster read.
pub(super) async fn read_target(
    ctx: &Ctx,
    names: &[String],
) -> CtlResult<(String, Vec<String>, Etcd, Cluster)> {
    let scope = ctx.cfg.scope.as_deref();
    if !select::needs_scope_members(names, scope) {
        let (name, members) = select::split_names(names, scope, &[])?;
        let (etcd, cluster) = read(ctx, &name).await?;
        return Ok((name, members, etcd, cluster));
    }
    let scope = scope.unwrap_or_default();
    let (etcd, cluster) = read(ctx, scope).await?;
    let scope_members: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let (name, members) = select::split_names(names, Some(scope), &scope_members)?;
    if name == scope {
        return Ok((name, members, etcd, cluster));
    }
    let (etcd, other) = read(ctx, &name).await?;
    if other.members.is_empty() && other.initialize.is_none() {
        // most likely a mistyped member name rather than another cluster
        return Err(CtlError::usage(format!(
            "{name} is not a member of cluster {scope}, nor a cluster with members"
        )));
    }
    Ok((name, members, etcd, other))
}

/// patronictl's `get_members`: show the cluster, pick members, maybe ask which.
pub(super) fn get_members(
    ctx: &mut Ctx,
    cluster: &Cluster,
    name: &str,
    names: &[String],
    role: Role,
    action: &str,
    force: bool,
) -> CtlResult<Vec<Member>> {
    if !(names.is_empty() && select::members_with_role(cluster, role).is_empty()) {
        print_members(cluster, name);
    }
    plan::pick_or_ask(
        ctx.prompt.as_mut(),
        cluster,
        name,
        names,
        role,
        action,
        force,
    )
}

pub(super) fn confirm_members_action(
    ctx: &mut Ctx,
    members: &[Member],
    force: bool,
    action: &str,
) -> CtlResult<()> {
    plan::confirm_members_action(ctx.prompt.as_mut(), members, force, action, None, false)
}

/// Print patronictl's line for a member's answer; `true` when it succeeded.
pub(super) fn check_response(
    reply: &Result<Reply, CallError>,
    member: &str,
    action: &str,
    silent_success: bool,
) -> bool {
    match reply {
        Ok(r) if r.ok() => {
            if !silent_success {
                println!("Success: {action} for member {member}");
            }
            true
        }
        Ok(r) => {
            println!(
                "Failed: {action} for member {member}, status code={}, ({})",
                r.status,
                r.message()
            );
            false
        }
        Err(e) => {
            println!("Failed: {action} for member {member}, ({e})");
            false
        }
    }
}

pub(super) fn some_failed(failed: usize, action: &str) -> CtlResult<()> {
    if failed == 0 {
        Ok(())
    } else {
        Err(CtlError::failed(format!(
            "{action} failed on {failed} member{}",
            if failed == 1 { "" } else { "s" }
        )))
    }
}
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ctl::plan::is_paused;

    #[test]
    fn helpers() {
        assert_eq!(fmt_secs(10.0), "10");
        assert_eq!(fmt_secs(2.5), "2.5");
        assert_eq!(timestamp(0).len(), "2024-01-01 12:00:00".len());
        assert_eq!(timestamp(6).len(), "2024-01-01 12:00:00.123456".len());
        assert_eq!(timestamp(3).len(), "2024-01-01 12:00:00.123".len());
        assert_eq!(secs(1e300), Duration::from_secs(86_400));
    }

    #[test]
    fn loop_wait_from_the_raw_config() {
        let mut c = Cluster::default();
        assert_eq!(loop_wait(&c), 10.0);
        c.config = Some(crate::dcs::model::ClusterConfig {
            raw: json!({"pause": true, "ttl": "garbage", "loop_wait": 2}),
            parsed: None,
            notes: vec![],
            mod_revision: 1,
        });
        assert_eq!(loop_wait(&c), 2.0);
        assert!(is_paused(&c));
    }
}
