//! What patronictl asks and checks before it acts: the switchover/failover
//! request, the members and body of a restart, the confirmations of member
//! actions and of `remove`.
//!
//! Rule: no IO but the [`Prompter`]. Given a cluster read and the answers, each
//! function returns the request to send or the error to stop with, so the
//! questions, their order and the refusals without a terminal are testable.

use serde_json::{json, Map, Value};

use super::args::{self, Role};
use super::prompt::Prompter;
use super::{select, CtlError, CtlResult};
use crate::dcs::model::{Cluster, Member};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Switchover,
    Failover,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Switchover => "switchover",
            Action::Failover => "failover",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Action::Switchover => "Switchover",
            Action::Failover => "Failover",
        }
    }
}

/// What the command line said about a switchover or failover.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailoverArgs {
    pub leader: Option<String>,
    pub candidate: Option<String>,
    pub scheduled: Option<String>,
    pub force: bool,
}

/// The request to send, and to whom.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverPlan {
    /// The current leader, if any.
    pub leader: Option<String>,
    /// The leader named in a switchover request.
    pub switchover_leader: Option<String>,
    pub candidate: Option<String>,
    /// ISO 8601, for a scheduled switchover.
    pub scheduled_at: Option<String>,
    /// `{"leader", "candidate", "scheduled_at"}` as present.
    pub body: Value,
    /// Who gets the request: the leader, or the candidate when there is none.
    pub target: Option<String>,
}

/// Is the cluster in maintenance mode (the stored `pause`, whatever else is in the key)?
pub fn is_paused(cluster: &Cluster) -> bool {
    cluster
        .config
        .as_ref()
        .is_some_and(|c| match c.raw.get("pause") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => {
                matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1")
            }
            _ => false,
        })
}

/// Python's `repr()` of a list of names: `['node1', 'node2']`.
pub fn py_list(names: &[String]) -> String {
    format!(
        "[{}]",
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// An hour from now, as patronictl's prompts suggest it.
fn next_hour() -> String {
    (chrono::Local::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// patronictl's switchover/failover dialogue and checks.
pub fn plan_failover(
    prompt: &mut dyn Prompter,
    cluster: &Cluster,
    name: &str,
    action: Action,
    a: FailoverArgs,
) -> CtlResult<FailoverPlan> {
    let leader = cluster.leader_name().map(str::to_string);
    let mut switchover_leader = None;
    if action == Action::Switchover {
        let Some(current) = leader.clone() else {
            return Err(CtlError::failed("This cluster has no leader"));
        };
        let given = match a.leader {
            Some(l) => l,
            None if a.force => current.clone(),
            None => prompt.ask("Primary", Some(&current), "--leader or --force")?,
        };
        if given != current {
            return Err(CtlError::failed(format!(
                "Member {given} is not the leader of cluster {name}"
            )));
        }
        switchover_leader = Some(given);
    }

    let candidates = select::failover_candidates(cluster);
    if candidates.is_empty() {
        return Err(CtlError::failed(format!(
            "No candidates found to {} to",
            action.name()
        )));
    }
    let candidate = match a.candidate {
        Some(c) => Some(c),
        None if a.force => None,
        None => Some(prompt.ask(
            &format!("Candidate {}", py_list(&candidates)),
            Some(""),
            "--candidate or --force",
        )?),
    }
    .filter(|c| !c.is_empty());
    if action == Action::Failover && candidate.is_none() {
        return Err(CtlError::failed(
            "Failover could be performed only to a specific candidate",
        ));
    }
    if let Some(c) = &candidate {
        if !candidates.contains(c) {
            if Some(c) == leader.as_ref() {
                return Err(CtlError::failed(format!(
                    "Member {c} is already the leader of cluster {name}"
                )));
            }
            return Err(CtlError::failed(format!(
                "Member {c} does not exist in cluster {name} or is tagged as nofailover"
            )));
        }
    }
    if action == Action::Failover && !a.force {
        let sync_mode = cluster
            .config
            .as_ref()
            .and_then(|c| c.parsed.as_ref())
            .is_some_and(|c| c.synchronous_mode);
        if let (true, Some(sync), Some(c)) = (sync_mode, cluster.sync.as_ref(), &candidate) {
            if (sync.leader.is_some() || !sync.members().is_empty()) && !sync.matches(c, true) {
                let q = format!("Are you sure you want to failover to the asynchronous node {c}?");
                if !prompt.confirm(&q, "--force")? {
                    return Err(CtlError::failed("Aborting failover"));
                }
            }
        }
    }

    let mut scheduled_at = None;
    if action == Action::Switchover {
        let when = match a.scheduled {
            Some(s) => Some(s),
            None if a.force => None,
            None => Some(prompt.ask(
                &format!(
                    "When should the switchover take place (e.g. {} ) ",
                    next_hour()
                ),
                Some("now"),
                "--scheduled or --force",
            )?),
        };
        if let Some(t) = args::parse_scheduled(when.as_deref())? {
            if is_paused(cluster) {
                return Err(CtlError::failed(
                    "Can't schedule switchover in the paused state",
                ));
            }
            scheduled_at = Some(args::isoformat(&t));
        }
    }

    let mut body = Map::new();
    if let Some(c) = &candidate {
        body.insert("candidate".into(), json!(c));
    }
    if let Some(l) = &switchover_leader {
        body.insert("leader".into(), json!(l));
    }
    if let Some(t) = &scheduled_at {
        body.insert("scheduled_at".into(), json!(t));
    }

    if !a.force {
        let demote = leader
            .as_ref()
            .map(|l| format!(", demoting current leader {l}"))
            .unwrap_or_default();
        let q = match &scheduled_at {
            Some(t) => format!(
                "Are you sure you want to schedule switchover of cluster {name} at {t}{demote}?"
            ),
            None => format!(
                "Are you sure you want to {} cluster {name}{demote}?",
                action.name()
            ),
        };
        if !prompt.confirm(&q, "--force")? {
            return Err(CtlError::failed(match scheduled_at {
                Some(_) => format!("Aborting scheduled {}", action.name()),
                None => format!("Aborting {}", action.name()),
            }));
        }
    }
    let target = leader.clone().or_else(|| candidate.clone());
    Ok(FailoverPlan {
        leader,
        switchover_leader,
        candidate,
        scheduled_at,
        body: Value::Object(body),
        target,
    })
}

/// patronictl's `get_members` after the table is shown: the members picked, or
/// for `reinitialize` without names, the one the user names.
pub fn pick_or_ask(
    prompt: &mut dyn Prompter,
    cluster: &Cluster,
    name: &str,
    names: &[String],
    role: Role,
    action: &str,
    force: bool,
) -> CtlResult<Vec<Member>> {
    let mut picked: Vec<Member> = select::pick_members(cluster, name, names, role, action)?
        .into_iter()
        .cloned()
        .collect();
    if picked.is_empty() && !force {
        let candidates: Vec<String> = select::members_with_role(cluster, role)
            .iter()
            .map(|m| m.name.clone())
            .collect();
        let answer = prompt.ask(
            &format!(
                "Which member do you want to {action} [{}]?",
                candidates.join(", ")
            ),
            Some(""),
            "MEMBER_NAMES",
        )?;
        picked = select::pick_members(cluster, name, &[answer], role, action)?
            .into_iter()
            .cloned()
            .collect();
    }
    Ok(picked)
}

fn member_names(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// patronictl's last confirmation before a member action.
pub fn confirm_members_action(
    prompt: &mut dyn Prompter,
    members: &[Member],
    force: bool,
    action: &str,
    scheduled_at: Option<&str>,
    pending: bool,
) -> CtlResult<()> {
    if force {
        return Ok(());
    }
    let (q, abort) = match scheduled_at {
        Some(_) if pending => (
            "The nodes needing a restart will be identified at the scheduled time, and might be different from the ones showing pending restart right now. Is this fine?".to_string(),
            format!("Aborted scheduled {action}"),
        ),
        Some(t) => (
            format!(
                "Are you sure you want to schedule {action} of members {} at {t}?",
                member_names(members)
            ),
            format!("Aborted scheduled {action}"),
        ),
        None => (
            format!(
                "Are you sure you want to {action} members {}?",
                member_names(members)
            ),
            format!("Aborted {action}"),
        ),
    };
    if prompt.confirm(&q, "--force")? {
        Ok(())
    } else {
        Err(CtlError::failed(abort))
    }
}

/// What the command line said about a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartArgs {
    pub role: Option<Role>,
    pub any: bool,
    pub scheduled: Option<String>,
    pub pg_version: Option<String>,
    pub pending: bool,
    pub timeout: Option<String>,
    pub force: bool,
}

/// The members to restart and the `POST /restart` body.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPlan {
    pub members: Vec<Member>,
    pub scheduled_at: Option<String>,
    pub body: Value,
}

/// The `role` a restart request carries, so the member re-checks it (Patroni's names).
pub fn api_role(role: Role) -> Option<&'static str> {
    match role {
        Role::Leader | Role::Primary => Some("primary"),
        Role::StandbyLeader => Some("standby_leader"),
        Role::Replica | Role::Standby => Some("replica"),
        Role::Any => None,
    }
}

/// patronictl's restart dialogue: when, which of the picked members, confirm, version.
/// `pick_one` chooses the member for `--any` (an index below the count).
pub fn plan_restart(
    prompt: &mut dyn Prompter,
    cluster: &Cluster,
    mut members: Vec<Member>,
    a: RestartArgs,
    pick_one: impl FnOnce(usize) -> usize,
) -> CtlResult<RestartPlan> {
    let scheduled = match a.scheduled {
        Some(s) => Some(s),
        None if a.force => None,
        None => Some(prompt.ask(
            &format!("When should the restart take place (e.g. {}) ", next_hour()),
            Some("now"),
            "--scheduled or --force",
        )?),
    };
    let scheduled_at = args::parse_scheduled(scheduled.as_deref())?.map(|t| args::isoformat(&t));

    let mut body = Map::new();
    if a.pending {
        body.insert("restart_pending".into(), json!(true));
        // a scheduled restart decides at its time which members need it
        if scheduled_at.is_none() {
            members.retain(|m| m.data.pending_restart);
        }
    }
    if a.any && members.len() > 1 {
        let i = pick_one(members.len()).min(members.len() - 1);
        members = vec![members.swap_remove(i)];
    }
    if members.is_empty() {
        return Ok(RestartPlan {
            members,
            scheduled_at,
            body: Value::Object(body),
        });
    }
    confirm_members_action(
        prompt,
        &members,
        a.force,
        "restart",
        scheduled_at.as_deref(),
        a.pending,
    )?;
    let version = match a.pg_version {
        Some(v) => Some(v),
        None if a.force => None,
        None => Some(prompt.ask(
            "Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ",
            Some(""),
            "--pg-version or --force",
        )?),
    };
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        args::pg_version_to_int(&v)?;
        body.insert("postgres_version".into(), json!(v));
    }
    if let Some(t) = &scheduled_at {
        if is_paused(cluster) {
            return Err(CtlError::failed(
                "Can't schedule restart in the paused state",
            ));
        }
        body.insert("schedule".into(), json!(t));
    }
    if let Some(t) = &a.timeout {
        body.insert("timeout".into(), json!(t));
    }
    if let Some(r) = a.role.and_then(api_role) {
        body.insert("role".into(), json!(r));
    }
    Ok(RestartPlan {
        members,
        scheduled_at,
        body: Value::Object(body),
    })
}

/// patronictl's `remove` confirmations: the cluster name, "Yes I am aware", and
/// the leader's name when a leader holds the key. `force` skips them for a
/// cluster without a leader only.
pub fn confirm_remove(
    prompt: &mut dyn Prompter,
    name: &str,
    leader: Option<&str>,
    force: bool,
) -> CtlResult<()> {
    if force {
        return match leader {
            Some(l) => Err(CtlError::failed(format!(
                "This cluster currently is healthy (leader {l}); remove it interactively to confirm"
            ))),
            None => Ok(()),
        };
    }
    let avoid = "--force (for a cluster without a leader)";
    if prompt.ask("Please confirm the cluster name to remove", None, avoid)? != name {
        return Err(CtlError::failed("Cluster names specified do not match"));
    }
    let message = "Yes I am aware";
    let q = format!(
        "You are about to remove all information in DCS for {name}, please type: \"{message}\""
    );
    if prompt.ask(&q, None, avoid)? != message {
        return Err(CtlError::failed(format!(
            "You did not exactly type \"{message}\""
        )));
    }
    if let Some(l) = leader {
        let q = "This cluster currently is healthy. Please specify the leader name to continue";
        if prompt.ask(q, None, avoid)? != l {
            return Err(CtlError::failed(
                "You did not specify the current leader of the cluster",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::prompt::{Scripted, Terminal};
    use crate::dcs::model::{Leader, MemberData};

    fn member(name: &str, role: &str) -> Member {
        Member {
            name: name.into(),
            lease: 1,
            mod_revision: 1,
            data: MemberData {
                role: Some(role.into()),
                state: Some("running".into()),
                api_url: Some(format!("http://{name}:8008/patroni")),
                ..Default::default()
            },
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            leader: Some(Leader {
                name: "node1".into(),
                lease: 1,
                mod_revision: 1,
            }),
            members: vec![
                member("node1", "primary"),
                member("node2", "replica"),
                member("node3", "replica"),
            ],
            ..Default::default()
        }
    }

    fn no_tty() -> Terminal {
        Terminal { interactive: false }
    }

    #[test]
    fn switchover_asks_like_patronictl() {
        let mut p = Scripted::new(&["", "node2", "", "y"]);
        let plan = plan_failover(
            &mut p,
            &cluster(),
            "demo",
            Action::Switchover,
            FailoverArgs::default(),
        )
        .unwrap();
        assert_eq!(p.asked[0], "Primary [node1]: ");
        assert_eq!(p.asked[1], "Candidate ['node2', 'node3'] []: ");
        assert!(p.asked[2].starts_with("When should the switchover take place (e.g. "));
        assert!(p.asked[2].ends_with(" )  [now]: "), "{}", p.asked[2]);
        assert_eq!(
            p.asked[3],
            "Are you sure you want to switchover cluster demo, demoting current leader node1? [y/N]: "
        );
        assert_eq!(plan.body, json!({"leader": "node1", "candidate": "node2"}));
        assert_eq!(plan.target.as_deref(), Some("node1"));
        assert_eq!(plan.scheduled_at, None);
    }

    #[test]
    fn switchover_with_force_asks_nothing_even_without_a_terminal() {
        let plan = plan_failover(
            &mut no_tty(),
            &cluster(),
            "demo",
            Action::Switchover,
            FailoverArgs {
                force: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plan.body, json!({"leader": "node1"}));
        let plan = plan_failover(
            &mut no_tty(),
            &cluster(),
            "demo",
            Action::Switchover,
            FailoverArgs {
                candidate: Some("node3".into()),
                scheduled: Some("2030-01-01T10:00+00:00".into()),
                force: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            plan.body,
            json!({"leader": "node1", "candidate": "node3", "scheduled_at": "2030-01-01T10:00:00+00:00"})
        );
    }

    #[test]
    fn without_a_terminal_a_needed_question_is_refused() {
        // every option given but --force: the final confirmation cannot be asked
        let e = plan_failover(
            &mut no_tty(),
            &cluster(),
            "demo",
            Action::Switchover,
            FailoverArgs {
                leader: Some("node1".into()),
                candidate: Some("node2".into()),
                scheduled: Some("now".into()),
                force: false,
            },
        )
        .unwrap_err();
        assert_eq!(e.code, 2);
        assert_eq!(
            e.message,
            "refusing to prompt: stdin is not a terminal; pass --force"
        );
        let e = plan_failover(
            &mut no_tty(),
            &cluster(),
            "demo",
            Action::Failover,
            FailoverArgs::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "refusing to prompt: stdin is not a terminal; pass --candidate or --force"
        );
        let e = confirm_remove(&mut no_tty(), "demo", None, false).unwrap_err();
        assert_eq!(e.code, 2);
        let e = confirm_members_action(
            &mut no_tty(),
            &[member("a", "replica")],
            false,
            "restart",
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, 2);
        assert!(confirm_members_action(&mut no_tty(), &[], true, "restart", None, false).is_ok());
    }

    #[test]
    fn failover_checks() {
        let c = cluster();
        let force = |candidate: Option<&str>| FailoverArgs {
            candidate: candidate.map(str::to_string),
            force: true,
            ..Default::default()
        };
        let e =
            plan_failover(&mut no_tty(), &c, "demo", Action::Failover, force(None)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                1,
                "Failover could be performed only to a specific candidate"
            )
        );
        let e = plan_failover(
            &mut no_tty(),
            &c,
            "demo",
            Action::Failover,
            force(Some("node1")),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Member node1 is already the leader of cluster demo"
        );
        let e = plan_failover(
            &mut no_tty(),
            &c,
            "demo",
            Action::Failover,
            force(Some("nodeX")),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Member nodeX does not exist in cluster demo or is tagged as nofailover"
        );
        let plan = plan_failover(
            &mut no_tty(),
            &c,
            "demo",
            Action::Failover,
            force(Some("node2")),
        )
        .unwrap();
        assert_eq!(plan.body, json!({"candidate": "node2"}));
        // no leader: the candidate is asked
        let mut leaderless = c.clone();
        leaderless.leader = None;
        let plan = plan_failover(
            &mut no_tty(),
            &leaderless,
            "demo",
            Action::Failover,
            force(Some("node2")),
        )
        .unwrap();
        assert_eq!(plan.target.as_deref(), Some("node2"));
        let e = plan_failover(
            &mut no_tty(),
            &leaderless,
            "demo",
            Action::Switchover,
            force(Some("node2")),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (1, "This cluster has no leader")
        );
        // the wrong leader named
        let e = plan_failover(
            &mut no_tty(),
            &c,
            "demo",
            Action::Switchover,
            FailoverArgs {
                leader: Some("node2".into()),
                force: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (1, "Member node2 is not the leader of cluster demo")
        );
        // declined
        let mut p = Scripted::new(&["n"]);
        let e = plan_failover(
            &mut p,
            &c,
            "demo",
            Action::Failover,
            FailoverArgs {
                candidate: Some("node2".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (1, "Aborting failover"));
    }

    #[test]
    fn no_scheduled_switchover_while_paused() {
        let mut c = cluster();
        c.config = Some(crate::dcs::model::ClusterConfig {
            raw: json!({"pause": true}),
            parsed: None,
            notes: vec![],
            mod_revision: 1,
        });
        assert!(is_paused(&c));
        let e = plan_failover(
            &mut no_tty(),
            &c,
            "demo",
            Action::Switchover,
            FailoverArgs {
                scheduled: Some("2030-01-01T10:00Z".into()),
                force: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.message, "Can't schedule switchover in the paused state");
    }

    #[test]
    fn restart_dialogue_and_body() {
        let c = cluster();
        let members: Vec<Member> = c.members.clone();
        let mut p = Scripted::new(&["", "y", "15.4"]);
        let plan = plan_restart(
            &mut p,
            &c,
            members.clone(),
            RestartArgs {
                role: Some(Role::Replica),
                timeout: Some("30".into()),
                ..Default::default()
            },
            |_| 0,
        )
        .unwrap();
        assert!(p.asked[0].starts_with("When should the restart take place (e.g. "));
        assert!(p.asked[0].ends_with(")  [now]: "), "{}", p.asked[0]);
        assert_eq!(
            p.asked[1],
            "Are you sure you want to restart members node1, node2, node3? [y/N]: "
        );
        assert_eq!(
            p.asked[2],
            "Restart if the PostgreSQL version is less than provided (e.g. 9.5.2)  []: "
        );
        assert_eq!(
            plan.body,
            json!({"postgres_version": "15.4", "timeout": "30", "role": "replica"})
        );
        // --pending keeps only members pending a restart; --any picks one
        let mut pending = members.clone();
        pending[1].data.pending_restart = true;
        pending[2].data.pending_restart = true;
        let plan = plan_restart(
            &mut no_tty(),
            &c,
            pending,
            RestartArgs {
                pending: true,
                any: true,
                force: true,
                ..Default::default()
            },
            |n| n - 1,
        )
        .unwrap();
        assert_eq!(plan.members.len(), 1);
        assert_eq!(plan.members[0].name, "node3");
        assert_eq!(plan.body, json!({"restart_pending": true}));
        // scheduled
        let plan = plan_restart(
            &mut no_tty(),
            &c,
            members.clone(),
            RestartArgs {
                scheduled: Some("2030-01-01T10:00:00+01:00".into()),
                force: true,
                ..Default::default()
            },
            |_| 0,
        )
        .unwrap();
        assert_eq!(plan.body, json!({"schedule": "2030-01-01T10:00:00+01:00"}));
        // a bad version is a usage error
        let e = plan_restart(
            &mut no_tty(),
            &c,
            members,
            RestartArgs {
                pg_version: Some("fifteen".into()),
                force: true,
                ..Default::default()
            },
            |_| 0,
        )
        .unwrap_err();
        assert_eq!(e.code, 2);
    }

    #[test]
    fn reinit_asks_for_a_member() {
        let c = cluster();
        let mut p = Scripted::new(&["node3"]);
        let picked = pick_or_ask(
            &mut p,
            &c,
            "demo",
            &[],
            Role::Replica,
            "reinitialize",
            false,
        )
        .unwrap();
        assert_eq!(
            p.asked,
            vec!["Which member do you want to reinitialize [node2, node3]? []: "]
        );
        assert_eq!(picked[0].name, "node3");
        let e = pick_or_ask(
            &mut no_tty(),
            &c,
            "demo",
            &[],
            Role::Replica,
            "reinitialize",
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "refusing to prompt: stdin is not a terminal; pass MEMBER_NAMES"
        );
        let mut p = Scripted::new(&["node1"]);
        let e = pick_or_ask(
            &mut p,
            &c,
            "demo",
            &[],
            Role::Replica,
            "reinitialize",
            false,
        )
        .unwrap_err();
        assert_eq!(e.message, "No replica among provided members");
    }

    #[test]
    fn remove_confirmations() {
        let mut p = Scripted::new(&["demo", "Yes I am aware", "node1"]);
        confirm_remove(&mut p, "demo", Some("node1"), false).unwrap();
        assert_eq!(p.asked.len(), 3);
        assert_eq!(p.asked[0], "Please confirm the cluster name to remove: ");
        assert_eq!(
            p.asked[1],
            "You are about to remove all information in DCS for demo, please type: \"Yes I am aware\": "
        );
        let mut p = Scripted::new(&["demo", "yes"]);
        let e = confirm_remove(&mut p, "demo", None, false).unwrap_err();
        assert_eq!(e.message, "You did not exactly type \"Yes I am aware\"");
        let mut p = Scripted::new(&["other"]);
        assert_eq!(
            confirm_remove(&mut p, "demo", None, false)
                .unwrap_err()
                .message,
            "Cluster names specified do not match"
        );
        let mut p = Scripted::new(&["demo", "Yes I am aware", "node2"]);
        assert_eq!(
            confirm_remove(&mut p, "demo", Some("node1"), false)
                .unwrap_err()
                .message,
            "You did not specify the current leader of the cluster"
        );
        // --force: only without a leader
        assert!(confirm_remove(&mut no_tty(), "demo", None, true).is_ok());
        assert_eq!(
            confirm_remove(&mut no_tty(), "demo", Some("node1"), true)
                .unwrap_err()
                .code,
            1
        );
    }
}
