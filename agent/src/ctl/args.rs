//! The command line: patronictl's verbs and flags.
//!
//! Verbs that act on members take `[CLUSTER] [MEMBER...]` as one list of
//! positionals; `select::split_cluster_and_members` decides which is which.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "agentctl",
    version,
    about = "Operator CLI for agent (and Patroni) clusters: the patronictl verbs"
)]
pub struct Cli {
    /// Configuration file: patronictl.yaml or a node's own YAML
    /// [default: ~/.config/patroni/patronictl.yaml]
    #[arg(
        short = 'c',
        long = "config-file",
        env = "PATRONICTL_CONFIG_FILE",
        global = true
    )]
    pub config_file: Option<PathBuf>,
    /// etcd to use instead of the configured one: etcd3://HOST:PORT[/NAMESPACE]
    #[arg(
        short = 'd',
        long = "dcs-url",
        visible_alias = "dcs",
        env = "DCS_URL",
        global = true
    )]
    pub dcs_url: Option<String>,
    /// Do not verify the members' REST API certificates (with ctl.certfile: only
    /// their host names), as ctl.insecure
    #[arg(short = 'k', long, global = true)]
    pub insecure: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Command {
    /// List the members of a cluster
    List(ListArgs),
    /// Show the members as a replication tree
    Topology(TopologyArgs),
    /// Switch the leader over to a replica (planned)
    Switchover(SwitchoverArgs),
    /// Fail over to a replica (also without a healthy leader)
    Failover(FailoverArgs),
    /// Restart postgres on members
    Restart(RestartArgs),
    /// Reload the configuration of members
    Reload(ReloadArgs),
    /// Re-create a replica from scratch
    Reinit(ReinitArgs),
    /// Discard a scheduled restart or switchover
    Flush(FlushArgs),
    /// Put the cluster in maintenance mode (no automatic failover)
    Pause(PauseArgs),
    /// Leave maintenance mode
    Resume(PauseArgs),
    /// Change the cluster-wide (dynamic) configuration
    EditConfig(EditConfigArgs),
    /// Show the cluster-wide (dynamic) configuration
    ShowConfig(ClusterArg),
    /// Show the history of failovers and switchovers
    History(HistoryArgs),
    /// Delete the cluster's keys from etcd
    Remove(RemoveArgs),
    /// Print a connection string for a member (the leader by default)
    Dsn(DsnArgs),
    /// Show the version of agentctl and of the members
    Version(VersionArgs),
}

/// Output formats of `list` and `history` (`yml` is an alias of `yaml`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Pretty,
    Tsv,
    Json,
    #[value(alias = "yml")]
    Yaml,
}

/// Member roles as patronictl names them.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The holder of the leader key.
    Leader,
    /// The leader, when it runs a primary (not a standby leader).
    Primary,
    /// The leader of a standby cluster.
    StandbyLeader,
    /// Every member but the leader.
    Replica,
    /// Same as replica.
    Standby,
    /// Every member.
    Any,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Primary => "primary",
            Role::StandbyLeader => "standby-leader",
            Role::Replica => "replica",
            Role::Standby => "standby",
            Role::Any => "any",
        }
    }
}

#[derive(Args, Debug, Clone, PartialEq, Default)]
pub struct ClusterArg {
    /// Cluster name [default: scope from the configuration]
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster: Option<String>,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct ListArgs {
    /// Clusters to list [default: scope from the configuration]
    #[arg(value_name = "CLUSTER_NAMES")]
    pub clusters: Vec<String>,
    /// Also show pending restarts, scheduled restarts and tags
    #[arg(short = 'e', long)]
    pub extended: bool,
    /// Print a timestamp first
    #[arg(short = 't', long)]
    pub timestamp: bool,
    /// Output format
    #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Pretty)]
    pub format: Format,
    /// Refresh every 2 seconds
    #[arg(short = 'W')]
    pub watch_default: bool,
    /// Refresh every SECONDS
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub watch: Option<f64>,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct TopologyArgs {
    /// Clusters to show [default: scope from the configuration]
    #[arg(value_name = "CLUSTER_NAMES")]
    pub clusters: Vec<String>,
    /// Refresh every 2 seconds
    #[arg(short = 'W')]
    pub watch_default: bool,
    /// Refresh every SECONDS
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub watch: Option<f64>,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// The current leader
    #[arg(long = "leader", visible_alias = "primary", value_name = "NAME")]
    pub leader: Option<String>,
    /// The member to promote (any healthy replica when not given with --force)
    #[arg(long, value_name = "NAME")]
    pub candidate: Option<String>,
    /// When: "now" or a timestamp (ISO 8601, e.g. 2024-05-01T13:00+02:00)
    #[arg(long, value_name = "TIME")]
    pub scheduled: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// The member to promote
    #[arg(long, value_name = "NAME")]
    pub candidate: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RestartArgs {
    /// [CLUSTER_NAME] [MEMBER_NAMES]...
    #[arg(value_name = "CLUSTER_NAME_AND_MEMBERS")]
    pub names: Vec<String>,
    /// Restart only members with this role
    #[arg(short = 'r', long, value_enum, default_value_t = Role::Any)]
    pub role: Role,
    /// Restart one member only (picked at random)
    #[arg(long = "any")]
    pub any: bool,
    /// When: "now" or a timestamp (ISO 8601)
    #[arg(long, value_name = "TIME")]
    pub scheduled: Option<String>,
    /// Restart only if the running PostgreSQL version is below this (e.g. 15.4)
    #[arg(long = "pg-version", value_name = "VERSION")]
    pub pg_version: Option<String>,
    /// Restart only members with a pending restart
    #[arg(long)]
    pub pending: bool,
    /// Fail (and fail over if needed) when the restart takes longer than this
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct ReloadArgs {
    /// [CLUSTER_NAME] [MEMBER_NAMES]...
    #[arg(value_name = "CLUSTER_NAME_AND_MEMBERS")]
    pub names: Vec<String>,
    /// Reload only members with this role
    #[arg(short = 'r', long, value_enum, default_value_t = Role::Any)]
    pub role: Role,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct ReinitArgs {
    /// [CLUSTER_NAME] MEMBER_NAMES...
    #[arg(value_name = "CLUSTER_NAME_AND_MEMBERS")]
    pub names: Vec<String>,
    /// Do not ask for confirmation; cancel a reinit already in progress
    #[arg(long)]
    pub force: bool,
    /// Take the base backup from the leader
    #[arg(long = "from-leader")]
    pub from_leader: bool,
    /// Wait until the members run again
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct FlushArgs {
    /// [CLUSTER_NAME] [MEMBER_NAMES]... {restart|switchover}
    #[arg(value_name = "ARGS", required = true)]
    pub names: Vec<String>,
    /// Flush only members with this role
    #[arg(short = 'r', long, value_enum, default_value_t = Role::Any)]
    pub role: Role,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct PauseArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Wait until every member has applied it
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct EditConfigArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Do not show the changes
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set a value: key.path=value (YAML value; null deletes). Repeatable
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Set a PostgreSQL parameter: name=value (short for -s postgresql.parameters.name=value). Repeatable
    #[arg(short = 'p', long = "pg", value_name = "NAME=VALUE")]
    pub pg: Vec<String>,
    /// Merge the configuration in FILE ("-": stdin) into the current one
    #[arg(long, value_name = "FILE")]
    pub apply: Option<String>,
    /// Replace the configuration with the one in FILE ("-": stdin)
    #[arg(long, value_name = "FILE")]
    pub replace: Option<String>,
    /// Do not ask for confirmation at any point
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Output format
    #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Pretty)]
    pub format: Format,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RemoveArgs {
    /// Cluster name
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster: String,
    /// Output format of the member list shown first
    #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Pretty)]
    pub format: Format,
    /// For scripts: skip the confirmations; still refused while a leader holds the key
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct DsnArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// A member with this role
    #[arg(short = 'r', long, value_enum)]
    pub role: Option<Role>,
    /// This member
    #[arg(short = 'm', long, value_name = "NAME")]
    pub member: Option<String>,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct VersionArgs {
    /// Also ask the members of this cluster
    #[arg(value_name = "CLUSTER_NAME")]
    pub cluster: Option<String>,
    /// Only these members
    #[arg(value_name = "MEMBER_NAMES")]
    pub members: Vec<String>,
}

/// `--scheduled`: `None` for "now" (or nothing); otherwise a timestamp, ISO 8601 or
/// `YYYY-MM-DD HH:MM[:SS]`, in local time when it has no offset.
pub fn parse_scheduled(
    raw: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, super::CtlError> {
    use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};
    let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty() && *s != "now") else {
        return Ok(None);
    };
    let bad = || {
        super::CtlError::usage(format!(
            "Unable to parse scheduled timestamp ({s}). It should be in an unambiguous format (e.g. ISO 8601)"
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t));
    }
    let s_z = match s.strip_suffix(['Z', 'z']) {
        Some(head) => format!("{head}+00:00"),
        None => s.to_string(),
    };
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%d %H:%M%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(&s_z, f) {
            return Ok(Some(t));
        }
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(bad)?;
    let local = Local
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(bad)?;
    Ok(Some(local.fixed_offset()))
}

/// A timestamp as Python's `isoformat()` writes it (what patronictl sends).
pub fn isoformat(t: &chrono::DateTime<chrono::FixedOffset>) -> String {
    use chrono::Timelike;
    if t.nanosecond() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    }
}

/// `--pg-version`: `X.Y` or `X.Y.Z` (what Patroni's `postgres_version_to_int` accepts).
pub fn pg_version_to_int(v: &str) -> Result<u64, super::CtlError> {
    let bad = || {
        super::CtlError::usage(format!(
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {v}"
        ))
    };
    crate::postgres::version_num(v)
        .map(u64::from)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut v = vec!["agentctl"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)
    }

    fn cmd(args: &[&str]) -> Command {
        match parse(args) {
            Ok(c) => c.command,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn usage_error(args: &[&str]) {
        match parse(args) {
            Ok(c) => panic!("{args:?} parsed: {c:?}"),
            Err(e) => assert!(e.use_stderr(), "{args:?}: {e}"),
        }
    }

    #[test]
    fn global_options() {
        let c = parse(&[
            "-c",
            "/etc/node1.yml",
            "--dcs-url",
            "etcd3://10.0.0.1:2379",
            "-k",
            "list",
        ])
        .unwrap();
        assert_eq!(c.config_file, Some(PathBuf::from("/etc/node1.yml")));
        assert_eq!(c.dcs_url.as_deref(), Some("etcd3://10.0.0.1:2379"));
        assert!(c.insecure);
        // also after the verb, and by the --dcs alias
        let c = parse(&["list", "--dcs", "etcd3://h:1", "--config-file", "x.yml"]).unwrap();
        assert_eq!(c.dcs_url.as_deref(), Some("etcd3://h:1"));
        assert_eq!(c.config_file, Some(PathBuf::from("x.yml")));
        usage_error(&[]);
        usage_error(&["frobnicate"]);
    }

    #[test]
    fn list_and_topology() {
        let Command::List(a) = cmd(&["list"]) else {
            panic!()
        };
        assert!(a.clusters.is_empty());
        assert_eq!(a.format, Format::Pretty);
        assert!(!a.extended && !a.timestamp && !a.watch_default && a.watch.is_none());
        let Command::List(a) = cmd(&[
            "list", "demo", "other", "-e", "-t", "-f", "json", "-w", "1.5",
        ]) else {
            panic!()
        };
        assert_eq!(a.clusters, vec!["demo", "other"]);
        assert!(a.extended && a.timestamp);
        assert_eq!(a.format, Format::Json);
        assert_eq!(a.watch, Some(1.5));
        let Command::List(a) = cmd(&["list", "--format", "yml", "-W"]) else {
            panic!()
        };
        assert_eq!(a.format, Format::Yaml);
        assert!(a.watch_default);
        let Command::List(a) = cmd(&["list", "-f", "tsv", "--extended", "--timestamp"]) else {
            panic!()
        };
        assert_eq!(a.format, Format::Tsv);
        usage_error(&["list", "-f", "xml"]);
        usage_error(&["list", "-w", "soon"]);
        let Command::Topology(t) = cmd(&["topology", "demo", "-W"]) else {
            panic!()
        };
        assert_eq!(t.clusters, vec!["demo"]);
        assert!(t.watch_default);
    }

    #[test]
    fn switchover_and_failover() {
        let Command::Switchover(s) = cmd(&["switchover"]) else {
            panic!()
        };
        assert_eq!(s.cluster.cluster, None);
        assert!(!s.force && s.leader.is_none() && s.candidate.is_none() && s.scheduled.is_none());
        let Command::Switchover(s) = cmd(&[
            "switchover",
            "demo",
            "--primary",
            "node1",
            "--candidate",
            "node2",
            "--scheduled",
            "now",
            "--force",
        ]) else {
            panic!()
        };
        assert_eq!(s.cluster.cluster.as_deref(), Some("demo"));
        assert_eq!(s.leader.as_deref(), Some("node1"));
        assert_eq!(s.candidate.as_deref(), Some("node2"));
        assert_eq!(s.scheduled.as_deref(), Some("now"));
        assert!(s.force);
        let Command::Switchover(s) = cmd(&["switchover", "--leader", "node3"]) else {
            panic!()
        };
        assert_eq!(s.leader.as_deref(), Some("node3"));
        let Command::Failover(f) = cmd(&["failover", "--candidate", "node2", "--force"]) else {
            panic!()
        };
        assert_eq!(f.candidate.as_deref(), Some("node2"));
        assert!(f.force && f.cluster.cluster.is_none());
        usage_error(&["failover", "--leader", "node1"]);
        usage_error(&["switchover", "a", "b"]);
    }

    #[test]
    fn restart_reload_reinit_flush() {
        let Command::Restart(r) = cmd(&["restart", "demo", "node1", "node2"]) else {
            panic!()
        };
        assert_eq!(r.names, vec!["demo", "node1", "node2"]);
        assert_eq!(r.role, Role::Any);
        assert!(!r.any && !r.pending && !r.force);
        let Command::Restart(r) = cmd(&[
            "restart",
            "-r",
            "replica",
            "--any",
            "--scheduled",
            "2030-01-01T10:00",
            "--pg-version",
            "15.4",
            "--pending",
            "--timeout",
            "30",
            "--force",
        ]) else {
            panic!()
        };
        assert!(r.names.is_empty());
        assert_eq!(r.role, Role::Replica);
        assert!(r.any && r.pending && r.force);
        assert_eq!(r.scheduled.as_deref(), Some("2030-01-01T10:00"));
        assert_eq!(r.pg_version.as_deref(), Some("15.4"));
        assert_eq!(r.timeout.as_deref(), Some("30"));
        for role in [
            "leader",
            "primary",
            "standby-leader",
            "replica",
            "standby",
            "any",
        ] {
            let Command::Restart(r) = cmd(&["restart", "--role", role]) else {
                panic!()
            };
            assert_eq!(r.role.name(), role);
        }
        usage_error(&["restart", "--role", "master"]);

        let Command::Reload(r) = cmd(&["reload", "demo", "--role", "leader", "--force"]) else {
            panic!()
        };
        assert_eq!(r.names, vec!["demo"]);
        assert_eq!(r.role, Role::Leader);
        assert!(r.force);

        let Command::Reinit(r) = cmd(&["reinit", "demo", "node2", "--wait", "--from-leader"])
        else {
            panic!()
        };
        assert_eq!(r.names, vec!["demo", "node2"]);
        assert!(r.wait && r.from_leader && !r.force);

        let Command::Flush(f) = cmd(&["flush", "demo", "node1", "restart", "-r", "replica"]) else {
            panic!()
        };
        assert_eq!(f.names, vec!["demo", "node1", "restart"]);
        assert_eq!(f.role, Role::Replica);
        usage_error(&["flush"]);
    }

    #[test]
    fn pause_resume_config_history() {
        let Command::Pause(p) = cmd(&["pause", "--wait"]) else {
            panic!()
        };
        assert!(p.wait && p.cluster.cluster.is_none());
        let Command::Resume(p) = cmd(&["resume", "demo"]) else {
            panic!()
        };
        assert!(!p.wait);
        assert_eq!(p.cluster.cluster.as_deref(), Some("demo"));

        let Command::EditConfig(e) = cmd(&[
            "edit-config",
            "demo",
            "-s",
            "ttl=40",
            "--set",
            "loop_wait=5",
            "-p",
            "max_connections=200",
            "--pg",
            "work_mem=8MB",
            "-q",
            "--force",
        ]) else {
            panic!()
        };
        assert_eq!(e.set, vec!["ttl=40", "loop_wait=5"]);
        assert_eq!(e.pg, vec!["max_connections=200", "work_mem=8MB"]);
        assert!(e.quiet && e.force);
        let Command::EditConfig(e) = cmd(&["edit-config", "--apply", "-", "--replace", "f.yml"])
        else {
            panic!()
        };
        assert_eq!(e.apply.as_deref(), Some("-"));
        assert_eq!(e.replace.as_deref(), Some("f.yml"));

        let Command::ShowConfig(s) = cmd(&["show-config"]) else {
            panic!()
        };
        assert!(s.cluster.is_none());
        let Command::History(h) = cmd(&["history", "demo", "-f", "tsv"]) else {
            panic!()
        };
        assert_eq!(h.format, Format::Tsv);
        assert_eq!(h.cluster.cluster.as_deref(), Some("demo"));
    }

    #[test]
    fn remove_dsn_version() {
        usage_error(&["remove"]);
        let Command::Remove(r) = cmd(&["remove", "demo"]) else {
            panic!()
        };
        assert_eq!(r.cluster, "demo");
        assert!(!r.force);
        let Command::Dsn(d) = cmd(&["dsn", "demo", "-r", "replica"]) else {
            panic!()
        };
        assert_eq!(d.role, Some(Role::Replica));
        let Command::Dsn(d) = cmd(&["dsn", "--member", "node2"]) else {
            panic!()
        };
        assert_eq!(d.member.as_deref(), Some("node2"));
        assert_eq!(d.role, None);
        let Command::Version(v) = cmd(&["version"]) else {
            panic!()
        };
        assert!(v.cluster.is_none() && v.members.is_empty());
        let Command::Version(v) = cmd(&["version", "demo", "node1", "node3"]) else {
            panic!()
        };
        assert_eq!(v.cluster.as_deref(), Some("demo"));
        assert_eq!(v.members, vec!["node1", "node3"]);
    }

    #[test]
    fn scheduled_times() {
        assert_eq!(parse_scheduled(None).unwrap(), None);
        assert_eq!(parse_scheduled(Some("now")).unwrap(), None);
        assert_eq!(parse_scheduled(Some("")).unwrap(), None);
        let t = parse_scheduled(Some("2030-05-29T04:32:31+02:00"))
            .unwrap()
            .unwrap();
        assert_eq!(isoformat(&t), "2030-05-29T04:32:31+02:00");
        let t = parse_scheduled(Some("2030-05-29T04:32:31Z"))
            .unwrap()
            .unwrap();
        assert_eq!(isoformat(&t), "2030-05-29T04:32:31+00:00");
        let t = parse_scheduled(Some("2030-05-29 04:32+0130"))
            .unwrap()
            .unwrap();
        assert_eq!(isoformat(&t), "2030-05-29T04:32:00+01:30");
        let t = parse_scheduled(Some("2030-05-29T04:32:31.5-03:00"))
            .unwrap()
            .unwrap();
        assert_eq!(isoformat(&t), "2030-05-29T04:32:31.500000-03:00");
        // no offset: local time
        let t = parse_scheduled(Some("2030-05-29T04:32")).unwrap().unwrap();
        assert!(
            isoformat(&t).starts_with("2030-05-29T04:32:00"),
            "{}",
            isoformat(&t)
        );
        assert!(parse_scheduled(Some("2030-05-29")).unwrap().is_some());
        let e = parse_scheduled(Some("tomorrow")).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e
            .message
            .starts_with("Unable to parse scheduled timestamp (tomorrow)"));
    }

    #[test]
    fn postgres_versions() {
        assert_eq!(pg_version_to_int("9.5.2").unwrap(), 90502);
        assert_eq!(pg_version_to_int("15.4").unwrap(), 150004);
        for bad in ["15", "15.x", "1.2.3.4", ""] {
            assert_eq!(pg_version_to_int(bad).unwrap_err().code, 2, "{bad}");
        }
    }
}
