//! Real-process test harness for the agent's integration tests.
//!
//! Rule: everything here runs *real* programs on loopback — etcd, PostgreSQL 15
//! and the agent binaries — in a temporary directory per test, on free ports,
//! and cleans them up in `Drop` even when the test panics. Nothing is mocked and
//! nothing is skipped: a missing program is a loud panic naming the Debian
//! package to install. Tests wait for conditions by polling with a deadline
//! ([`wait_for`], the fixture's `wait_*` methods), never with bare sleeps.
//!
//! Layout, by concern:
//!
//! | module | what |
//! |---|---|
//! | [`background`] | [`background::Background`]: the stoppable loop under the sampler and the writer |
//! | [`bins`] | [`require`] a program, [`pg_bin`], build and stage the agent binaries once per process ([`agent_binaries`]) |
//! | [`dirs`] | [`TestDir`]: `/tmp/agent-tests/<name>-<pid>-<n>`, owned by `postgres`, kept (with log tails printed) when the test fails |
//! | [`ports`] | [`free_port`]: distinct free loopback ports for parallel tests |
//! | [`proc`] | running things as the `postgres` OS user ([`command_as_postgres`]), signals, liveness of PIDs |
//! | [`etcd`] | [`EtcdFixture`]: a one-member etcd, pause/resume/kill/restart; [`EtcdClient`]: the one key client (HTTP gateway) |
//! | [`etcd_cluster`] | [`EtcdCluster`]: a multi-member etcd (one quorum) on loopback; pause a majority to lose the quorum |
//! | [`postgres`] | [`PostgresFixture`]: a bare `initdb` + `postgres` (no agent), for tests of the harness itself or of tools |
//! | [`cluster`] | [`ClusterBuilder`] / [`ClusterFixture`] of N agent [`Node`]s with Patroni-format configs, an etcd per [`EtcdMode`], optionally proxied; process control per node, partitions |
//! | [`pg`] | [`Pg`]: a PostgreSQL endpoint (host, port, password); the one place connections are opened |
//! | [`client`] | SQL ([`sql`], [`execute`], [`can_write`], ...) and REST ([`rest_status`], [`rest_json`]) probes with short timeouts |
//! | [`wait`] | [`wait_for`], and the waits on a cluster as its methods ([`ClusterFixture::wait_primary`], [`ClusterFixture::wait_healthy`], ...) |
//! | [`logs`] | tails of log files for post-mortems |
//! | [`proxy`] | [`TcpProxy`]: a loopback TCP proxy that can be cut or slowed, to partition one agent from etcd |
//! | [`sampler`] | [`Sampler`]: asks every node every 100 ms whether it is a primary and can write, to catch two primaries at once |
//! | [`tls`] | [`TestCa`]: throw-away CAs (openssl CLI) issuing [`CertPair`]s for 127.0.0.1 (server and client use); HTTPS clients trusting them; [`tls::http_builder`] for every client (reqwest has no default TLS provider) |
//! | [`writer`] | [`Writer`]: a load of unique ids through one port, every acknowledged commit recorded (hand-over windows, lost writes) |
//! | [`ctl`] | [`Cli`]: runs `agentctl` or Patroni's `patronictl` with a deadline and stdin from `/dev/null`, capturing a [`CliRun`] |
//! | [`haproxy`] | [`HaproxyFixture`]: a real HAProxy in front of a cluster, configured by `haproxy/haproxy-config.sh` |
//! | [`chaos`] | the chaos suite (faults under a write load, invariant checks, reports) behind `chaos/run` and `tests/tests/chaos.rs`; its local target is a [`ClusterFixture`] too |
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
//!     let p = cluster.wait_healthy().await;
//!     let sampler = cluster.sampler().await;
//!     cluster.node_mut(p).kill_all();
//!     let q = cluster.wait_new_primary(p).await;
//!     assert_ne!(p, q);
//!     assert!(sampler.all_split_brains().is_empty());
//! }
//! ```

pub mod background;
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
pub mod pg;
pub mod ports;
pub mod postgres;
pub mod proc;
pub mod proxy;
pub mod sampler;
pub mod tls;
pub mod wait;
pub mod writer;

pub use bins::{agent_binaries, pg_bin, require, AgentBinaries, PG_BIN_DIR};
pub use client::{
    can_write, execute, is_in_recovery, rest_call, rest_json, rest_send, rest_send_as, rest_status,
    sql, try_connect, PgAddr,
};
pub use cluster::{ClusterBuilder, ClusterFixture, EtcdMode, Node};
pub use ctl::{
    iso8601_utc, parse_tables, patronictl_path, unix_now, Cli, CliRun, TextTable,
    PATRONICTL_DEFAULT, PATRONICTL_INSTALL,
};
pub use dirs::TestDir;
pub use etcd::{EtcdClient, EtcdFixture, EtcdServerTls};
pub use etcd_cluster::EtcdCluster;
pub use haproxy::{generate_config, repo_root, stats_states, wait_up, HaproxyFixture, ServerState};
pub use pg::Pg;
pub use ports::free_port;
pub use postgres::PostgresFixture;
pub use proc::{command_as_postgres, postgres_ids};
pub use proxy::TcpProxy;
pub use sampler::{NodeState, Round, Sampler};
pub use tls::{CertPair, TestCa};
pub use wait::{hold_for, holds_for, wait_for, wait_for_result};
pub use writer::{Ack, Writer};

/// Re-exported so tests can build config edits and assert on REST bodies
/// without adding their own dependency.
pub use serde_json::{json, Value};
/// Rows returned by [`sql`].
pub use tokio_postgres::Row;
