//! Which members a verb acts on: by role (patronictl's `leader`, `primary`,
//! `replica`, `any`, ...), by name, and how `[CLUSTER] [MEMBER...]` splits.
//!
//! Rule: pure, over a [`Cluster`] already read.

use super::args::Role;
use super::{CtlError, CtlResult};
use crate::dcs::model::{Cluster, Member};

fn is_primary_role(role: Option<&str>) -> bool {
    matches!(role, Some("primary" | "master"))
}

/// Members with `role`, in name order. Leader roles need the leader's member key.
pub fn members_with_role(cluster: &Cluster, role: Role) -> Vec<&Member> {
    let leader = cluster.leader_name();
    match role {
        Role::Leader | Role::Primary | Role::StandbyLeader => {
            let Some(m) = cluster.leader_member() else {
                return vec![];
            };
            let r = m.data.role.as_deref();
            let ok = match role {
                Role::Leader => true,
                Role::Primary => r != Some("standby_leader"),
                _ => !is_primary_role(r),
            };
            if ok {
                vec![m]
            } else {
                vec![]
            }
        }
        Role::Replica | Role::Standby => cluster
            .members
            .iter()
            .filter(|m| Some(m.name.as_str()) != leader)
            .collect(),
        Role::Any => cluster.members.iter().collect(),
    }
}

/// Does the first positional of `restart`/`reload`/`reinit`/`flush` need the
/// members of the configured cluster to be told apart from a cluster name?
pub fn needs_scope_members(names: &[String], scope: Option<&str>) -> bool {
    match (names.first(), scope) {
        (Some(first), Some(scope)) => first != scope,
        _ => false,
    }
}

/// `[CLUSTER] [MEMBER...]`: the first name is the cluster unless a cluster is
/// configured (`scope`) and the first name is one of its members.
pub fn split_names(
    names: &[String],
    scope: Option<&str>,
    scope_members: &[String],
) -> CtlResult<(String, Vec<String>)> {
    match (names.split_first(), scope) {
        (None, Some(s)) => Ok((s.to_string(), vec![])),
        (None, None) => Err(CtlError::usage(
            "no cluster name: pass CLUSTER_NAME or use a configuration file with `scope` (-c)",
        )),
        (Some((first, _)), Some(s)) if first != s && scope_members.contains(first) => {
            Ok((s.to_string(), names.to_vec()))
        }
        (Some((first, rest)), _) => Ok((first.clone(), rest.to_vec())),
    }
}

/// patronictl's member choice for `restart`, `reload`, `reinit` and `flush`: the
/// named members (each must exist; those without `role` are left out), else every
/// member with `role` (none for `reinitialize`: it asks).
pub fn pick_members<'a>(
    cluster: &'a Cluster,
    cluster_name: &str,
    names: &[String],
    role: Role,
    action: &str,
) -> CtlResult<Vec<&'a Member>> {
    let candidates = members_with_role(cluster, role);
    if names.is_empty() && candidates.is_empty() {
        return Err(CtlError::failed(format!(
            "{cluster_name} cluster doesn't have any members"
        )));
    }
    if names.is_empty() {
        return Ok(if action == "reinitialize" {
            vec![]
        } else {
            candidates
        });
    }
    for n in names {
        if cluster.member(n).is_none() {
            return Err(CtlError::usage(format!(
                "{n} is not a member of cluster {cluster_name}"
            )));
        }
    }
    let picked: Vec<&Member> = candidates
        .into_iter()
        .filter(|m| names.contains(&m.name))
        .collect();
    if picked.is_empty() {
        return Err(CtlError::usage(format!(
            "No {} among provided members",
            role.name()
        )));
    }
    Ok(picked)
}

/// Switchover/failover candidates: every member but the leader, not tagged `nofailover`.
pub fn failover_candidates(cluster: &Cluster) -> Vec<String> {
    let leader = cluster.leader_name();
    let mut names: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) != leader && !m.data.nofailover())
        .map(|m| m.name.clone())
        .collect();
    names.sort();
    names
}

/// `dsn`: the member named, else the first with `role` (the leader by default).
pub fn dsn_member<'a>(
    cluster: &'a Cluster,
    role: Option<Role>,
    member: Option<&str>,
) -> CtlResult<Option<&'a Member>> {
    if member.is_some() && role.is_some() {
        return Err(CtlError::usage(
            "--role and --member are mutually exclusive options",
        ));
    }
    let role = if member.is_some() {
        Role::Any
    } else {
        role.unwrap_or(Role::Leader)
    };
    Ok(members_with_role(cluster, role)
        .into_iter()
        .find(|m| member.is_none_or(|n| m.name == n)))
}

/// Members that have a REST API, the leader first (who to ask for cluster-wide changes).
pub fn leader_first(cluster: &Cluster) -> Vec<&Member> {
    let has_api = |m: &&Member| m.data.api_url.as_deref().is_some_and(|u| !u.is_empty());
    let leader = cluster.leader_member().filter(has_api);
    let mut out: Vec<&Member> = leader.into_iter().collect();
    out.extend(
        cluster
            .members
            .iter()
            .filter(has_api)
            .filter(|m| Some(m.name.as_str()) != cluster.leader_name()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::model::{Leader, MemberData};

    fn member(name: &str, role: &str, api: bool) -> Member {
        Member {
            name: name.into(),
            lease: 1,
            mod_revision: 1,
            data: MemberData {
                role: Some(role.into()),
                api_url: api.then(|| format!("http://{name}:8008/patroni")),
                ..Default::default()
            },
        }
    }

    fn cluster() -> Cluster {
        let mut n3 = member("node3", "replica", true);
        n3.data
            .tags
            .insert("nofailover".into(), serde_json::Value::Bool(true));
        Cluster {
            leader: Some(Leader {
                name: "node2".into(),
                lease: 1,
                mod_revision: 1,
            }),
            members: vec![
                member("node1", "replica", true),
                member("node2", "primary", true),
                n3,
                member("node4", "replica", false),
            ],
            ..Default::default()
        }
    }

    fn names(ms: &[&Member]) -> Vec<String> {
        ms.iter().map(|m| m.name.clone()).collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn roles() {
        let c = cluster();
        assert_eq!(names(&members_with_role(&c, Role::Leader)), s(&["node2"]));
        assert_eq!(names(&members_with_role(&c, Role::Primary)), s(&["node2"]));
        assert!(members_with_role(&c, Role::StandbyLeader).is_empty());
        assert_eq!(
            names(&members_with_role(&c, Role::Replica)),
            s(&["node1", "node3", "node4"])
        );
        assert_eq!(
            names(&members_with_role(&c, Role::Standby)),
            s(&["node1", "node3", "node4"])
        );
        assert_eq!(members_with_role(&c, Role::Any).len(), 4);
        let mut no_leader = c.clone();
        no_leader.leader = None;
        assert!(members_with_role(&no_leader, Role::Leader).is_empty());
        assert_eq!(members_with_role(&no_leader, Role::Replica).len(), 4);
    }

    #[test]
    fn cluster_or_member_first() {
        let members = s(&["node1", "node2"]);
        // no positional: the configured cluster
        assert_eq!(
            split_names(&[], Some("demo"), &members).unwrap(),
            ("demo".to_string(), vec![])
        );
        assert_eq!(split_names(&[], None, &[]).unwrap_err().code, 2);
        // the configured cluster named explicitly
        assert_eq!(
            split_names(&s(&["demo", "node1"]), Some("demo"), &members).unwrap(),
            ("demo".to_string(), s(&["node1"]))
        );
        // members only: the configured cluster
        assert!(needs_scope_members(&s(&["node1"]), Some("demo")));
        assert_eq!(
            split_names(&s(&["node1", "node2"]), Some("demo"), &members).unwrap(),
            ("demo".to_string(), s(&["node1", "node2"]))
        );
        // another cluster
        assert_eq!(
            split_names(&s(&["other", "x1"]), Some("demo"), &members).unwrap(),
            ("other".to_string(), s(&["x1"]))
        );
        // nothing configured: patronictl's CLUSTER_NAME first
        assert!(!needs_scope_members(&s(&["node1"]), None));
        assert_eq!(
            split_names(&s(&["c1", "m1"]), None, &[]).unwrap(),
            ("c1".to_string(), s(&["m1"]))
        );
    }

    #[test]
    fn picking_members() {
        let c = cluster();
        assert_eq!(
            names(&pick_members(&c, "demo", &[], Role::Any, "restart").unwrap()),
            s(&["node1", "node2", "node3", "node4"])
        );
        assert_eq!(
            names(&pick_members(&c, "demo", &[], Role::Leader, "restart").unwrap()),
            s(&["node2"])
        );
        assert!(pick_members(&c, "demo", &[], Role::Replica, "reinitialize")
            .unwrap()
            .is_empty());
        assert_eq!(
            names(
                &pick_members(
                    &c,
                    "demo",
                    &s(&["node3", "node2"]),
                    Role::Replica,
                    "restart"
                )
                .unwrap()
            ),
            s(&["node3"])
        );
        let e =
            pick_members(&c, "demo", &s(&["node1", "nodeX"]), Role::Any, "restart").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "nodeX is not a member of cluster demo")
        );
        let e = pick_members(&c, "demo", &s(&["node2"]), Role::Replica, "reload").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "No replica among provided members")
        );
        let e = pick_members(&Cluster::default(), "demo", &[], Role::Any, "reload").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (1, "demo cluster doesn't have any members")
        );
    }

    #[test]
    fn candidates_and_dsn() {
        let c = cluster();
        assert_eq!(failover_candidates(&c), s(&["node1", "node4"]));
        assert_eq!(dsn_member(&c, None, None).unwrap().unwrap().name, "node2");
        assert_eq!(
            dsn_member(&c, Some(Role::Replica), None)
                .unwrap()
                .unwrap()
                .name,
            "node1"
        );
        assert_eq!(
            dsn_member(&c, None, Some("node3")).unwrap().unwrap().name,
            "node3"
        );
        assert!(dsn_member(&c, None, Some("nodeX")).unwrap().is_none());
        assert_eq!(
            dsn_member(&c, Some(Role::Any), Some("node3"))
                .unwrap_err()
                .code,
            2
        );
        assert_eq!(names(&leader_first(&c)), s(&["node2", "node1", "node3"]));
    }
}
