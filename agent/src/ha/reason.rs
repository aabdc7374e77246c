//! Why the agent did what it did this cycle: one typed reason per cycle, printed
//! in plain words (Patroni's wording where Patroni has one), logged when it
//! changes, shown in `/patroni` and `agentctl list`.

use super::{LongKind, NotHealthiest, Operation};

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    LongActionWithLock(LongKind),
    LostLockDuring(LongKind),
    LongActionInProgress(LongKind),
    InitializedNewCluster,
    BootstrapFailed(String),
    BootstrapNewCluster,
    Cloning {
        from: String,
        leader: bool,
    },
    WaitingForLeaderToBootstrap,
    DataDirInvalid(String),
    DataDirEmptyWhileRunning,
    ReleasedLockEmptyDataDir,
    PausedEmptyDataDir,
    InvalidSysid,
    SysidMismatch {
        cluster: String,
        local: String,
    },
    SysidMismatchPaused,
    PausedRemovedLockNotRunning,
    PausedNotRunning,
    PostgresNotAnswering {
        leader: bool,
    },
    DemotedDcsUnavailable,
    DcsUnavailable,
    DcsUnavailablePaused,
    ReleasedLockStartFailed,
    StartingPrimaryAfterFailure,
    StartingReadonlyWithLock,
    StartingAsSecondary,
    WaitingForLeaderHistory,
    CheckingDivergence {
        leader: String,
        timeline: u32,
    },
    ReinitializingAfterRewindFailure,
    RewindFailedStayStopped(String),
    RunningRewind {
        from: String,
    },
    ReinitializingDiverged,
    DivergedNoRewind,
    AcquiredLockAsPrimary,
    PromotedByAcquiringLock,
    DemotingNotHealthiest(NotHealthiest),
    NotHealthiest(NotHealthiest),
    PausedRemovedLockNotPrimary,
    PromotedBecauseHadLock,
    PausedPrimaryWithoutLock,
    DemotingOtherHasLock,
    FollowingNew {
        me: String,
        leader: String,
        upstream: Option<String>,
    },
    Following {
        me: String,
        leader: String,
        upstream: Option<String>,
    },
    LeaderWithLock(String),
    FailoverRefused(String),
    AwaitingScheduled {
        action: Operation,
        at: String,
        me: String,
    },
    DemotingForSwitchover {
        action: Operation,
        candidate: String,
    },
    Reinitializing {
        from: String,
    },
    Restarting,
    FenceDownDemoting,
    FenceDownNotPromoting,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use Reason::*;
        match self {
            LongActionWithLock(k) => write!(f, "updated leader lock during {}", k.describe()),
            LostLockDuring(k) => write!(f, "lost leader lock during {}: stopping postgres", k.describe()),
            LongActionInProgress(k) => write!(f, "{} in progress", k.describe()),
            InitializedNewCluster => write!(f, "initialized a new cluster"),
            BootstrapFailed(e) => write!(f, "failed to bootstrap the cluster: {e}"),
            BootstrapNewCluster => write!(f, "trying to bootstrap a new cluster"),
            Cloning { from, leader } => write!(
                f,
                "trying to bootstrap from {} '{from}'",
                if *leader { "leader" } else { "replica" }
            ),
            WaitingForLeaderToBootstrap => write!(f, "waiting for leader to bootstrap"),
            DataDirInvalid(e) => write!(f, "data directory is not usable: {e}"),
            DataDirEmptyWhileRunning => write!(f, "data directory is empty while postgres runs: stopping it"),
            ReleasedLockEmptyDataDir => {
                write!(f, "released leader key voluntarily as data dir empty and currently leader")
            }
            PausedEmptyDataDir => write!(f, "running with empty data directory"),
            InvalidSysid => write!(
                f,
                "data dir for the cluster is not empty, but system ID is invalid; consider doing reinitialize"
            ),
            SysidMismatch { cluster, local } => {
                write!(f, "system ID mismatch: this node belongs to a different cluster: {cluster} != {local}")
            }
            SysidMismatchPaused => write!(f, "released leader key voluntarily due to the system ID mismatch"),
            PausedRemovedLockNotRunning => write!(f, "removed leader lock because postgres is not running"),
            PausedNotRunning => write!(f, "postgres is not running"),
            PostgresNotAnswering { leader: true } => {
                write!(f, "updated leader lock while postgres is starting or not answering")
            }
            PostgresNotAnswering { leader: false } => write!(f, "postgres is starting or not answering"),
            DemotedDcsUnavailable => write!(f, "demoted self because DCS is not accessible and I was a leader"),
            DcsUnavailable => write!(f, "DCS is not accessible"),
            DcsUnavailablePaused => write!(f, "DCS is not accessible (paused: no action)"),
            ReleasedLockStartFailed => {
                write!(f, "removed leader key after trying and failing to start postgres")
            }
            StartingPrimaryAfterFailure => write!(f, "starting primary after failure"),
            StartingReadonlyWithLock => write!(f, "starting as readonly because i had the session lock"),
            StartingAsSecondary => write!(f, "starting as a secondary"),
            WaitingForLeaderHistory => write!(f, "waiting for the leader to publish its timeline history"),
            CheckingDivergence { leader, timeline } => write!(
                f,
                "stopping to check whether my WAL diverged from leader {leader} on timeline {timeline}"
            ),
            ReinitializingAfterRewindFailure => write!(f, "reinitializing after pg_rewind failed"),
            RewindFailedStayStopped(e) => write!(
                f,
                "pg_rewind failed ({e}); staying stopped: set remove_data_directory_on_rewind_failure or reinitialize"
            ),
            RunningRewind { from } => write!(f, "running pg_rewind from {from}"),
            ReinitializingDiverged => write!(f, "reinitializing due to diverged timelines"),
            DivergedNoRewind => write!(
                f,
                "my timeline diverged from the leader and use_pg_rewind is off; staying stopped until reinitialized"
            ),
            AcquiredLockAsPrimary => write!(f, "acquired session lock as a leader"),
            PromotedByAcquiringLock => write!(f, "promoted self to leader by acquiring session lock"),
            DemotingNotHealthiest(why) => {
                write!(f, "demoting self because i am not the healthiest node: {why}")
            }
            NotHealthiest(why) => write!(f, "not the healthiest node, not racing for the leader key: {why}"),
            PausedRemovedLockNotPrimary => {
                write!(f, "removed leader lock because postgres is not running as primary")
            }
            PromotedBecauseHadLock => write!(f, "promoted self to leader because I had the session lock"),
            PausedPrimaryWithoutLock => write!(f, "continue to run as primary without lock"),
            DemotingOtherHasLock => {
                write!(f, "demoting self because I do not have the lock and I was a leader")
            }
            FollowingNew { me, leader, upstream } => write!(
                f,
                "I am ({me}), a secondary: now following {} (leader {leader})",
                upstream.as_deref().unwrap_or("nobody")
            ),
            Following { me, leader, upstream } => match upstream.as_deref() {
                Some(u) if u != leader => write!(
                    f,
                    "no action. I am ({me}), a secondary, and following {u} (leader {leader})"
                ),
                _ => write!(f, "no action. I am ({me}), a secondary, and following a leader ({leader})"),
            },
            LeaderWithLock(me) => write!(f, "no action. I am ({me}), the leader with the lock"),
            FailoverRefused(why) => write!(f, "cleaning up the failover key: {why}"),
            AwaitingScheduled { action, at, me } => write!(
                f,
                "no action. I am ({me}), the leader with the lock; awaiting {action} at {at}"
            ),
            DemotingForSwitchover { action, candidate } => {
                write!(f, "manual {action}: demoting myself in favour of {candidate}")
            }
            Reinitializing { from } => write!(f, "reinitializing from {from}"),
            Restarting => write!(f, "restarting postgres on request"),
            FenceDownDemoting => {
                write!(f, "demoting self because the fence watchdog is down and could not be restarted")
            }
            FenceDownNotPromoting => {
                write!(f, "not promoting self because the fence watchdog is down and could not be restarted")
            }
        }
    }
}
