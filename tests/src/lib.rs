//! Real-process test harness for the agent's integration tests.
//!
//! Rule: everything here runs *real* programs on loopback — etcd, PostgreSQL 15
//! and the agent binaries — in a temporary directory per test, on free ports,
//! and cleans them up in `Drop` even when the test panics. Nothing is mocked and
//! nothing is skipped: a missing program is a loud panic naming the Debian
//! package to install. Tests wait for conditions by polling with a deadline
//! ([`wait_for`]), never with bare sleeps.
//!
//! Layout, by concern:
//!
//! | module | what |
//! |---|---|
//! | [`bins`] | [`require`] a program, [`pg_bin`], build and stage the agent binaries once per process ([`agent_binaries`]) |
//! | [`dirs`] | [`TestDir`]: `/tmp/agent-tests/<name>-<pid>-<n>`, owned by `postgres`, kept (with log tails printed) when the test fails |
//! | [`ports`] | [`free_port`]: distinct free loopback ports for parallel tests |
//! | [`proc`] | running things as the `postgres` OS user ([`command_as_postgres`]), signals, liveness of PIDs |
//! | [`etcd`] | [`EtcdFixture`]: a one-member etcd, pause/resume/kill/restart, key reads through the HTTP gateway |
//! | [`etcd_cluster`] | [`EtcdCluster`]: a multi-member etcd (one quorum) on loopback; pause a majority to lose the quorum |
//! | [`postgres`] | [`PostgresFixture`]: a bare `initdb` + `postgres` (no agent), for tests of the harness itself or of tools |
//! | [`cluster`] | [`ClusterFixture`] of N agent [`Node`]s with Patroni-format configs, process control per node |
//! | [`client`] | SQL ([`sql`], [`execute`], [`can_write`], ...) and REST ([`rest_status`], [`rest_json`]) probes with short timeouts |
//! | [`wait`] | [`wait_for`] and the common waits ([`wait_primary`], [`wait_streaming_replicas`]) |
//! | [`logs`] | tails of log files for post-mortems |
//! | [`proxy`] | [`TcpProxy`]: a loopback TCP proxy that can be cut, to partition one agent from etcd |
//! | [`sampler`] | [`PrimarySampler`]: asks every node every 100 ms whether it is writable, to catch two primaries at once |
//! | [`ctl`] | [`Cli`]: runs `agentctl` or Patroni's `patronictl` with a deadline and stdin from `/dev/null`, capturing a [`CliRun`] |
//! | [`haproxy`] | [`HaproxyFixture`]: a real HAProxy in front of a cluster, configured by `haproxy/haproxy-config.sh`; [`Writer`]: measures write-unavailability windows through a port |
//! | [`tls`] | [`TestCerts`]: a test CA, server and client certificates made with `openssl`; HTTPS clients trusting it; [`tls::http_builder`] for every client |
//! | [`chaos`] | the chaos suite (faults under a write load, invariant checks, reports) behind `chaos/run` and `tests/tests/chaos.rs` |
//!
//! The test process runs as root in CI. PostgreSQL and the agent refuse to run
//! as root, so they are spawned as `postgres` (uid/gid switched in the child);
//! etcd stays root. When the tests are run by an ordinary user, everything runs
//! as that user and no ownership changes are made.
//!
//! Environment knobs: `AGENT_TESTS_DIR` (base directory, default
//! `/tmp/agent-tests`), `AGENT_TESTS_KEEP=1` (keep test directories even on
//! success), `RUST_LOG` (passed to agents; default `info`), `CARGO`,
//! `CARGO_TARGET_DIR` (honoured by the one-time `cargo build -p agent --bins`).
//!
//! A typical test:
//!
//! ```no_run
//! use agent_tests::*;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn failover() {
//!     let mut cluster = ClusterFixture::builder("failover").nodes(3).start().await;
//!     let p = wait_primary(&cluster).await;
//!     wait_streaming_replicas(&cluster, p, 2).await;
//!     cluster.node_mut(p).kill_all();
//!     let q = wait_primary(&cluster).await;
//!     assert_ne!(p, q);
//! }
//! ```

pub mod bins;
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod ctl;
pub mod dirs;
pub mod etcd;
pub mod etcd_cluster;
pub mod haproxy;
pub mod logs;
pub mod ports;
pub mod postgres;
pub mod proc;
pub mod proxy;
pub mod sampler;
pub mod tls;
pub mod wait;

pub use bins::{agent_binaries, pg_bin, require, AgentBinaries, PG_BIN_DIR};
pub use client::{
    can_write, execute, is_in_recovery, rest_json, rest_send, rest_send_as, rest_status, sql,
    try_connect, PgAddr,
};
pub use cluster::{ClusterBuilder, ClusterFixture, Node};
pub use ctl::{
    iso8601_utc, parse_tables, patronictl_path, unix_now, Cli, CliRun, TextTable,
    PATRONICTL_DEFAULT, PATRONICTL_INSTALL,
};
pub use dirs::TestDir;
pub use etcd::EtcdFixture;
pub use etcd_cluster::EtcdCluster;
pub use haproxy::{
    generate_config, repo_root, stats_states, wait_up, Ack, HaproxyFixture, ServerState, WriteLog,
    Writer,
};
pub use ports::free_port;
pub use postgres::PostgresFixture;
pub use proc::{command_as_postgres, postgres_ids};
pub use proxy::TcpProxy;
pub use sampler::{PrimarySampler, SplitBrain};
pub use tls::TestCerts;
pub use wait::{
    wait_all_running, wait_for, wait_for_result, wait_primary, wait_streaming_replicas,
};

/// Re-exported so tests can build config edits and assert on REST bodies
/// without adding their own dependency.
pub use serde_json::{json, Value};
/// Rows returned by [`sql`].
pub use tokio_postgres::Row;
