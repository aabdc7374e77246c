//! The API driven through `router(...)` without a socket (one test uses a real
//! listener for `serve`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::config::DynamicConfig;
use crate::dcs::model::{Cluster, Status};
use crate::dcs::model::{
    ClusterConfig, Failover, History, HistoryEntry, Leader, Member, SyncState,
};
use crate::status::Role;
use crate::status::{NodeStatus, Xlog};

const MB: u64 = 1024 * 1024;

fn member(name: &str, data: Value) -> Member {
    Member {
        name: name.into(),
        lease: 7,
        mod_revision: 3,
        data: serde_json::from_value(data).expect("member fixture"),
    }
}

/// node1 leads, node2 streams as synchronous standby, node3 is stopped.
fn cluster() -> Cluster {
    let raw = json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "synchronous_mode": true,
                     "maximum_lag_on_failover": 1048576});
    Cluster {
        initialize: Some("7000000000000000001".into()),
        config: Some(ClusterConfig {
            parsed: Some(DynamicConfig::from_json(&raw).expect("config fixture")),
            raw,
            notes: vec![],
            mod_revision: 5,
        }),
        leader: Some(Leader {
            name: "node1".into(),
            lease: 7,
            mod_revision: 9,
        }),
        members: vec![
            member(
                "node3",
                json!({"conn_url": "postgres://10.0.0.3:5433/postgres",
                       "api_url": "http://10.0.0.3:8008/patroni", "state": "stopped",
                       "role": "replica"}),
            ),
            member(
                "node1",
                json!({"conn_url": "postgres://10.0.0.1:5432/postgres",
                       "api_url": "http://10.0.0.1:8008/patroni", "state": "running",
                       "role": "primary", "xlog_location": 100 * MB, "timeline": 2}),
            ),
            member(
                "node2",
                json!({"conn_url": "postgres://10.0.0.2:5432/postgres",
                       "api_url": "http://10.0.0.2:8008/patroni", "state": "running",
                       "role": "replica", "replication_state": "streaming",
                       "xlog_location": 99 * MB, "receive_lsn": 99 * MB + 512,
                       "replay_lsn": 99 * MB, "timeline": 2, "tags": {"nofailover": false},
                       "pending_restart": true}),
            ),
        ],
        status: Status {
            optime: Some(100 * MB),
            ..Default::default()
        },
        failover: None,
        sync: Some(SyncState {
            leader: Some("node1".into()),
            sync_standby: Some("node2".into()),
            quorum: 0,
            mod_revision: 4,
        }),
        history: History {
            entries: vec![HistoryEntry {
                timeline: 1,
                lsn: 50_331_800,
                reason: "no recovery target specified".into(),
                timestamp: Some("2024-05-01T12:00:00.000000+00:00".into()),
                new_leader: Some("node1".into()),
            }],
            mod_revision: 6,
        },
        revision: 10,
        in_force: None,
    }
}

fn primary() -> NodeStatus {
    let mut s = NodeStatus::initial("demo", "node1");
    s.state = "running".into();
    s.role = Role::Primary;
    s.is_leader = true;
    s.cluster_unlocked = false;
    s.server_version = Some(150002);
    s.postmaster_start_time = Some("2024-05-01 12:00:00.5+00".into());
    s.timeline = Some(2);
    s.xlog = Some(Xlog::Primary { location: 100 * MB });
    s.database_system_identifier = Some("7000000000000000001".into());
    s.dcs_last_seen = 1_714_564_800;
    s.leader_optime = 100 * MB;
    s.cluster = Some(Arc::new(cluster()));
    s.reason = "no action: I am node1, the leader with the lock".into();
    s
}

/// A streaming replica 1 MB behind the leader.
fn replica() -> NodeStatus {
    let mut s = NodeStatus::initial("demo", "node2");
    s.state = "running".into();
    s.role = Role::Replica;
    s.cluster_unlocked = false;
    s.server_version = Some(150002);
    s.timeline = Some(2);
    s.xlog = Some(Xlog::Replica {
        received_location: 99 * MB + 512,
        replayed_location: 99 * MB,
        replayed_timestamp: None,
        paused: false,
    });
    s.replication_state = Some("streaming".into());
    s.leader_optime = 100 * MB;
    s.tags = json!({"nofailover": false, "dc": "east", "priority": 5})
        .as_object()
        .cloned()
        .unwrap_or_default();
    s.cluster = Some(Arc::new(cluster()));
    s
}

fn stopped() -> NodeStatus {
    NodeStatus::initial("demo", "node3")
}

async fn call(st: NodeStatus, method: Method, uri: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let (_tx, rx) = watch::channel(Arc::new(st));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let res = router(ApiState::new(rx))
        .oneshot(req)
        .await
        .expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

async fn code(st: NodeStatus, uri: &str) -> u16 {
    call(st, Method::GET, uri).await.0.as_u16()
}

async fn get_json(st: NodeStatus, uri: &str) -> (u16, Value) {
    let (status, headers, body) = call(st, Method::GET, uri).await;
    assert_eq!(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "{uri}"
    );
    let v = serde_json::from_slice(&body).expect("JSON body");
    (status.as_u16(), v)
}

const PRIMARY_PATHS: &[&str] = &["/", "/primary", "/master", "/read-write"];

#[tokio::test]
async fn primary_paths_answer_200_only_on_a_running_primary_with_the_lock() {
    for path in PRIMARY_PATHS {
        assert_eq!(code(primary(), path).await, 200, "{path}");
        assert_eq!(code(replica(), path).await, 503, "{path}");
        assert_eq!(code(stopped(), path).await, 503, "{path}");

        // the lock alone is not enough (stricter than Patroni)
        let mut s = primary();
        s.state = "stopped".into();
        assert_eq!(code(s, path).await, 503, "{path} stopped");
        let mut s = primary();
        s.role = Role::Replica;
        assert_eq!(code(s, path).await, 503, "{path} still read-only");
        // nor is postgres being primary without the lock
        let mut s = primary();
        s.is_leader = false;
        assert_eq!(code(s, path).await, 503, "{path} without lock");
    }
}

#[tokio::test]
async fn leader_and_standby_leader() {
    assert_eq!(code(primary(), "/leader").await, 200);
    assert_eq!(code(replica(), "/leader").await, 503);
    let mut s = primary();
    s.state = "starting".into();
    assert_eq!(code(s, "/leader").await, 200, "the lock is what counts");
    for path in ["/standby-leader", "/standby_leader"] {
        assert_eq!(code(primary(), path).await, 503);
        assert_eq!(code(replica(), path).await, 503);
    }
}

#[tokio::test]
async fn replica_path() {
    assert_eq!(code(replica(), "/replica").await, 200);
    assert_eq!(code(primary(), "/replica").await, 503);
    assert_eq!(code(stopped(), "/replica").await, 503);

    let mut s = replica();
    s.state = "starting".into();
    assert_eq!(code(s, "/replica").await, 503, "not running");
    let mut s = replica();
    s.noloadbalance = true;
    assert_eq!(code(s, "/replica").await, 503, "noloadbalance");
}

#[tokio::test]
async fn replica_lag_threshold_in_bytes_and_units() {
    // the replica is exactly 1 MB behind
    for (lag, want) in [
        ("1048576", 200),
        ("1048575", 503),
        ("1MB", 200),
        ("1024kB", 200),
        ("1023kB", 503),
        ("1048576B", 200),
        ("512B", 503),
        ("100kB", 503),
        ("16MB", 200),
        ("1GB", 200),
        ("0x100000", 200),
        ("0.5MB", 503),
        ("1.5MB", 200),
        // unparsable: no limit, as in Patroni
        ("lots", 200),
        ("10XB", 200),
        ("", 200),
    ] {
        let uri = format!("/replica?lag={lag}");
        assert_eq!(code(replica(), &uri).await, want, "{uri}");
    }
    // unknown leader position: never lagging
    let mut s = replica();
    s.leader_optime = 0;
    assert_eq!(code(s, "/replica?lag=0").await, 200);
    // ahead of the published position: not lagging
    let mut s = replica();
    s.leader_optime = 10;
    assert_eq!(code(s, "/replica?lag=0").await, 200);
    // lag on /async too
    assert_eq!(code(replica_async(), "/async?lag=1kB").await, 503);
    assert_eq!(code(replica_async(), "/async?lag=1MB").await, 200);
}

#[test]
fn lag_parsing_follows_patroni_parse_int() {
    for (s, want) in [
        ("0", Some(0)),
        ("42", Some(42)),
        (" 42 ", Some(42)),
        ("+7", Some(7)),
        ("-1", Some(-1)),
        ("010", Some(8)),
        ("0x10", Some(16)),
        ("512B", Some(512)),
        ("100kB", Some(102_400)),
        ("16MB", Some(16 * 1024 * 1024)),
        ("16 MB", Some(16 * 1024 * 1024)),
        ("1GB", Some(1 << 30)),
        ("1TB", Some(1 << 40)),
        ("1.5MB", Some(1_572_864)),
        (".5kB", Some(512)),
        ("1e3", Some(1000)),
        ("2.5", Some(2)),
        ("3.5", Some(4)),
        ("16mb", None),
        ("1 PB", None),
        ("MB", None),
        ("abc", None),
        ("", None),
        ("08", None),
        ("1.", None),
        (
            "99999999999999999999999999999999999999999999",
            Some(i64::MAX),
        ),
        ("1e400MB", Some(i64::MAX)),
    ] {
        assert_eq!(parse_lag(s), want, "{s:?}");
    }
}

#[tokio::test]
async fn replication_state_filter() {
    assert_eq!(
        code(replica(), "/replica?replication_state=streaming").await,
        200
    );
    let mut s = replica();
    s.replication_state = Some("in archive recovery".into());
    assert_eq!(code(s, "/replica?replication_state=streaming").await, 503);
    let mut s = replica();
    s.replication_state = None;
    assert_eq!(
        code(s.clone(), "/replica?replication_state=streaming").await,
        503
    );
    assert_eq!(code(s, "/replica").await, 200);
}

#[tokio::test]
async fn tag_filters() {
    for (query, want) in [
        ("tag_dc=east", 200),
        ("tag_dc=west", 503),
        ("tag_rack=1", 503),
        ("tag_nofailover=false", 200),
        ("tag_nofailover=False", 503),
        ("tag_nofailover=true", 503),
        ("tag_priority=5", 200),
        ("tag_dc=east&tag_priority=5", 200),
        ("tag_dc=east&tag_priority=6", 503),
        // the first value of a repeated key counts; empty values are ignored
        ("tag_dc=east&tag_dc=west", 200),
        ("tag_dc=&tag_dc=east", 200),
        ("tag_rack=", 200),
        ("other=1", 200),
    ] {
        let uri = format!("/replica?{query}");
        assert_eq!(code(replica(), &uri).await, want, "{uri}");
    }
    // tags apply to /read-only and /health too, not to the leader paths
    assert_eq!(code(replica(), "/read-only?tag_dc=west").await, 503);
    assert_eq!(code(replica(), "/health?tag_dc=west").await, 503);
    assert_eq!(code(primary(), "/primary?tag_dc=west").await, 200);
    assert_eq!(code(primary(), "/leader?tag_dc=west").await, 200);
}

#[tokio::test]
async fn read_only_and_health() {
    assert_eq!(code(primary(), "/read-only").await, 200);
    assert_eq!(code(replica(), "/read-only").await, 200);
    assert_eq!(code(stopped(), "/read-only").await, 503);
    let mut s = replica();
    s.noloadbalance = true;
    assert_eq!(code(s, "/read-only").await, 503);

    assert_eq!(code(primary(), "/health").await, 200);
    assert_eq!(code(replica(), "/health").await, 200);
    assert_eq!(code(stopped(), "/health").await, 503);
    let mut s = primary();
    s.is_leader = false;
    assert_eq!(code(s, "/health").await, 200, "running is all /health asks");
}

fn replica_sync() -> NodeStatus {
    let mut s = replica();
    s.sync_standby = true;
    s
}

fn replica_async() -> NodeStatus {
    replica()
}

#[tokio::test]
async fn sync_and_async() {
    for path in ["/sync", "/synchronous"] {
        assert_eq!(code(replica_sync(), path).await, 200, "{path}");
        assert_eq!(code(replica_async(), path).await, 503, "{path}");
        assert_eq!(code(primary(), path).await, 503, "{path}");
    }
    for path in ["/async", "/asynchronous"] {
        assert_eq!(code(replica_async(), path).await, 200, "{path}");
        assert_eq!(code(replica_sync(), path).await, 503, "{path}");
        assert_eq!(code(primary(), path).await, 503, "{path}");
    }
    for path in ["/read-only-sync", "/read-only-synchronous"] {
        assert_eq!(code(primary(), path).await, 200, "{path}");
        assert_eq!(code(replica_sync(), path).await, 200, "{path}");
        assert_eq!(code(replica_async(), path).await, 503, "{path}");
        assert_eq!(code(stopped(), path).await, 503, "{path}");
    }
    let mut s = replica_sync();
    s.state = "stopped".into();
    assert_eq!(code(s, "/sync").await, 503);
    assert_eq!(code(replica_sync(), "/quorum").await, 503);
    assert_eq!(code(primary(), "/read-only-quorum").await, 200);
}

#[tokio::test]
async fn get_health_check_bodies_are_the_status_json() {
    let (status, body) = get_json(primary(), "/primary").await;
    assert_eq!(status, 200);
    assert_eq!(body, primary().patroni_json());
    let (status, body) = get_json(replica(), "/primary").await;
    assert_eq!(status, 503);
    assert_eq!(body["role"], "replica");
}

#[tokio::test]
async fn head_and_options_answer_with_the_code_only() {
    for method in [Method::HEAD, Method::OPTIONS] {
        for (st, path, want) in [
            (primary(), "/primary", 200),
            (replica(), "/primary", 503),
            (replica(), "/replica?lag=1MB", 200),
            (replica(), "/replica?lag=1kB", 503),
            (stopped(), "/health", 503),
            (primary(), "/liveness", 200),
            (primary(), "/readiness", 200),
        ] {
            let (status, _, body) = call(st, method.clone(), path).await;
            assert_eq!(status.as_u16(), want, "{method} {path}");
            assert!(body.is_empty(), "{method} {path}: body {body:?}");
        }
    }
}

#[tokio::test]
async fn patroni_status_fields() {
    let (status, v) = get_json(primary(), "/patroni").await;
    assert_eq!(status, 200);
    assert_eq!(v["state"], "running");
    assert_eq!(v["role"], "primary");
    assert_eq!(v["timeline"], 2);
    assert_eq!(v["xlog"], json!({"location": 100 * MB}));
    assert_eq!(v["server_version"], 150002);
    assert_eq!(v["database_system_identifier"], "7000000000000000001");
    assert_eq!(v["patroni"]["name"], "node1");
    assert_eq!(v["patroni"]["scope"], "demo");
    assert_eq!(v["patroni"]["version"], crate::status::VERSION);
    assert!(v.get("cluster_unlocked").is_none());

    let (status, v) = get_json(replica(), "/patroni").await;
    assert_eq!(status, 200);
    assert_eq!(v["role"], "replica");
    assert_eq!(v["replication_state"], "streaming");
    assert_eq!(v["xlog"]["received_location"], 99 * MB + 512);
    assert_eq!(v["xlog"]["replayed_location"], 99 * MB);
    assert_eq!(v["xlog"]["paused"], false);
    assert_eq!(v["tags"]["dc"], "east");

    // answers 200 whatever the state
    let (status, v) = get_json(stopped(), "/patroni").await;
    assert_eq!(status, 200);
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["cluster_unlocked"], true);
}

/// A WAL source that answers `answer` and counts the questions.
struct FakeWal {
    answer: Option<crate::postgres::WalSample>,
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

impl crate::postgres::WalSource for FakeWal {
    async fn sample(&mut self) -> Option<crate::postgres::WalSample> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.answer
    }
}

async fn patroni_with_sampler(
    st: NodeStatus,
    answer: Option<crate::postgres::WalSample>,
) -> (Value, usize) {
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let wal = crate::postgres::WalSampler::start(
        FakeWal {
            answer,
            asked: asked.clone(),
        },
        Duration::from_secs(30),
    );
    let (_tx, rx) = watch::channel(Arc::new(st));
    let req = Request::builder()
        .uri("/patroni")
        .body(Body::empty())
        .expect("request");
    let res = router(ApiState::new(rx).with_wal_sampler(wal))
        .oneshot(req)
        .await
        .expect("infallible");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&body).expect("JSON body");
    (v, asked.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test]
async fn patroni_reports_the_sampled_wal_position() {
    let live = crate::postgres::WalSample {
        in_recovery: true,
        flush: None,
        receive: Some(200 * MB),
        replay: Some(150 * MB),
        paused: true,
    };
    let (v, asked) = patroni_with_sampler(replica(), Some(live)).await;
    assert_eq!(asked, 1);
    assert_eq!(v["state"], "running");
    assert_eq!(v["xlog"]["received_location"], 200 * MB);
    assert_eq!(v["xlog"]["replayed_location"], 150 * MB);
    assert_eq!(v["xlog"]["paused"], true);

    // postgres does not answer: no position, state unknown
    let (v, asked) = patroni_with_sampler(replica(), None).await;
    assert_eq!(asked, 1);
    assert_eq!(v["state"], "unknown");
    assert!(v.get("xlog").is_none(), "{v}");

    // not running: the sampler is not asked
    let (v, asked) = patroni_with_sampler(stopped(), Some(live)).await;
    assert_eq!(asked, 0);
    assert_eq!(v["state"], "stopped");
}

#[tokio::test]
async fn cluster_format() {
    let (status, v) = get_json(replica(), "/cluster").await;
    assert_eq!(status, 200);
    assert_eq!(v["scope"], "demo");
    assert!(v.get("pause").is_none());
    assert!(v.get("scheduled_switchover").is_none());
    let members = v["members"].as_array().expect("members");
    let names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3"], "sorted by name");

    assert_eq!(
        members[0],
        json!({"name": "node1", "role": "leader", "state": "running",
               "api_url": "http://10.0.0.1:8008/patroni", "host": "10.0.0.1", "port": 5432,
               "timeline": 2})
    );
    assert_eq!(
        members[1],
        json!({"name": "node2", "role": "sync_standby", "state": "streaming",
               "api_url": "http://10.0.0.2:8008/patroni", "host": "10.0.0.2", "port": 5432,
               "timeline": 2, "tags": {"nofailover": false}, "pending_restart": true,
               "lsn": "0/6300000", "lag": MB,
               "receive_lsn": "0/6300200", "receive_lag": MB - 512,
               "replay_lsn": "0/6300000", "replay_lag": MB})
    );
    assert_eq!(
        members[2],
        json!({"name": "node3", "role": "replica", "state": "stopped",
               "api_url": "http://10.0.0.3:8008/patroni", "host": "10.0.0.3", "port": 5433,
               "lsn": "unknown", "lag": "unknown",
               "receive_lsn": "unknown", "receive_lag": "unknown",
               "replay_lsn": "unknown", "replay_lag": "unknown"})
    );
}

#[tokio::test]
async fn cluster_pause_switchover_and_async_roles() {
    let mut c = cluster();
    let raw = json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "pause": true});
    c.config = Some(ClusterConfig {
        parsed: Some(DynamicConfig::from_json(&raw).expect("config")),
        raw,
        notes: vec![],
        mod_revision: 8,
    });
    c.failover = Some(Failover {
        leader: Some("node1".into()),
        candidate: Some("node2".into()),
        scheduled_at: Some("2030-01-01T00:00:00+00:00".into()),
        mod_revision: 9,
    });
    // a replica ahead of the published optime shows lag 0
    for m in c.members.iter_mut().filter(|m| m.name == "node2") {
        m.data.xlog_location = Some(101 * MB);
    }
    let mut s = replica();
    s.cluster = Some(Arc::new(c));
    let (status, v) = get_json(s, "/cluster").await;
    assert_eq!(status, 200);
    assert_eq!(v["pause"], true);
    assert_eq!(
        v["scheduled_switchover"],
        json!({"at": "2030-01-01T00:00:00+00:00", "from": "node1", "to": "node2"})
    );
    // without synchronous_mode, a listed sync standby is a plain replica
    assert_eq!(v["members"][1]["role"], "replica");
    assert_eq!(v["members"][1]["lag"], 0);
    assert_eq!(v["members"][1]["lsn"], "0/6500000");

    // a failover without a schedule is not a scheduled switchover
    let mut c = cluster();
    c.failover = Some(Failover {
        leader: None,
        candidate: Some("node2".into()),
        scheduled_at: None,
        mod_revision: 9,
    });
    let mut s = replica();
    s.cluster = Some(Arc::new(c));
    let (_, v) = get_json(s, "/cluster").await;
    assert!(v.get("scheduled_switchover").is_none());
}

#[tokio::test]
async fn cluster_unknown_is_503() {
    let (status, v) = get_json(stopped(), "/cluster").await;
    assert_eq!(status, 503);
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn history() {
    let (status, v) = get_json(primary(), "/history").await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!([[
            1,
            50_331_800,
            "no recovery target specified",
            "2024-05-01T12:00:00.000000+00:00",
            "node1"
        ]])
    );
    let (status, v) = get_json(stopped(), "/history").await;
    assert_eq!(status, 200);
    assert_eq!(v, json!([]));
    let mut c = cluster();
    c.history = History::default();
    let mut s = primary();
    s.cluster = Some(Arc::new(c));
    assert_eq!(get_json(s, "/history").await, (200, json!([])));
}

#[tokio::test]
async fn config() {
    let (status, v) = get_json(primary(), "/config").await;
    assert_eq!(status, 200);
    assert_eq!(v["synchronous_mode"], true);
    assert_eq!(v["ttl"], 30);

    let (status, v) = get_json(stopped(), "/config").await;
    assert_eq!(status, 502);
    assert!(v["error"].is_string());

    let mut c = cluster();
    c.config = None;
    let mut s = primary();
    s.cluster = Some(Arc::new(c));
    assert_eq!(get_json(s, "/config").await.0, 502);
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let (status, v) = get_json(primary(), "/nope").await;
    assert_eq!(status, 404);
    assert!(v["error"].as_str().is_some_and(|e| e.contains("/nope")));
    let (status, _) = get_json(primary(), "/primary/extra").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn wrong_method_is_405_json() {
    for (method, path) in [
        (Method::POST, "/primary"),
        (Method::DELETE, "/patroni"),
        (Method::PUT, "/cluster"),
        (Method::OPTIONS, "/metrics"),
    ] {
        let (status, headers, body) = call(primary(), method.clone(), path).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(headers.contains_key(header::ALLOW), "{method} {path}");
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        assert!(v["error"].is_string(), "{method} {path}");
    }
}

#[tokio::test]
async fn hostile_queries_do_not_panic() {
    for uri in [
        "/replica?lag=%ZZ",
        "/replica?lag=%FF%FE",
        "/replica?=&&&=x&tag_",
        "/replica?lag=-99999999999999999999999999999999999999999999999",
        "/replica?lag=1e99999TB",
        "/readiness?lag=%00&mode=%",
        "/replica?tag_%E2%82%AC=%E2%82%AC",
    ] {
        let status = code(replica(), uri).await;
        assert!(
            status == 200 || status == 503 || status == 400,
            "{uri}: {status}"
        );
    }
}

fn with_last_cycle_ago(mut s: NodeStatus, secs: u64) -> NodeStatus {
    s.last_cycle = Instant::now()
        .checked_sub(Duration::from_secs(secs))
        .unwrap_or(s.last_cycle);
    s
}

#[tokio::test]
async fn liveness_fresh_vs_stale() {
    // ttl 30: a primary is dead after 30 s without a cycle, a replica after 60 s
    assert_eq!(code(primary(), "/liveness").await, 200);
    assert_eq!(code(replica(), "/liveness").await, 200);
    assert_eq!(
        code(with_last_cycle_ago(primary(), 31), "/liveness").await,
        503
    );
    assert_eq!(
        code(with_last_cycle_ago(replica(), 31), "/liveness").await,
        200
    );
    assert_eq!(
        code(with_last_cycle_ago(replica(), 61), "/liveness").await,
        503
    );
    let mut s = with_last_cycle_ago(primary(), 3600);
    s.paused = true;
    assert_eq!(code(s, "/liveness").await, 200, "paused: always alive");
    let (_, _, body) = call(primary(), Method::GET, "/liveness").await;
    assert!(body.is_empty());
}

#[tokio::test]
async fn readiness() {
    assert_eq!(code(primary(), "/readiness").await, 200);
    // 1 MB behind, maximum_lag_on_failover 1 MB
    assert_eq!(code(replica(), "/readiness").await, 200);
    let mut s = replica();
    s.maximum_lag_on_failover = MB - 1;
    assert_eq!(code(s, "/readiness").await, 503);
    assert_eq!(code(replica(), "/readiness?lag=1kB").await, 503);
    assert_eq!(code(replica(), "/readiness?lag=2MB").await, 200);
    // received is 512 bytes closer
    assert_eq!(code(replica(), "/readiness?lag=1023kB").await, 503);
    assert_eq!(
        code(replica(), "/readiness?lag=1023.5kB&mode=write").await,
        200
    );
    let mut s = replica();
    s.replication_state = Some("in archive recovery".into());
    assert_eq!(code(s, "/readiness").await, 503);
    let mut s = replica();
    s.cluster = None;
    assert_eq!(code(s, "/readiness").await, 503, "etcd never read");
    assert_eq!(code(stopped(), "/readiness").await, 503);
}

#[tokio::test]
async fn metrics() {
    let (status, headers, body) = call(primary(), Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = String::from_utf8(body).expect("utf-8");
    let value = |name: &str| {
        let prefix = format!("{name}{{scope=\"demo\",name=\"node1\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
    };
    assert_eq!(value("patroni_postgres_running"), "1");
    assert_eq!(value("patroni_postmaster_start_time"), "1714564800.5");
    assert_eq!(value("patroni_primary"), "1");
    assert_eq!(value("patroni_replica"), "0");
    assert_eq!(value("patroni_xlog_location"), (100 * MB).to_string());
    assert_eq!(value("patroni_xlog_received_location"), "0");
    assert_eq!(value("patroni_xlog_replayed_location"), "0");
    assert_eq!(value("patroni_xlog_paused"), "0");
    assert_eq!(value("patroni_postgres_timeline"), "2");
    assert_eq!(value("patroni_cluster_unlocked"), "0");
    assert_eq!(value("patroni_is_paused"), "0");
    assert_eq!(value("patroni_dcs_last_seen"), "1714564800");
    assert_eq!(value("patroni_postgres_server_version"), "150002");
    assert_eq!(value("patroni_failover_priority"), "1");
    assert!(!value("patroni_version").is_empty());
    assert!(text.contains("# TYPE patroni_xlog_location counter"));

    let mut s = replica();
    s.name = "we\"ird".into();
    let text = crate::api::routes::metrics::render(&s);
    assert!(text.contains("patroni_replica{scope=\"demo\",name=\"we\\\"ird\"} 1"));
    assert!(text.contains("patroni_postgres_streaming{scope=\"demo\",name=\"we\\\"ird\"} 1"));
    assert!(text.contains(&format!(
        "patroni_xlog_replayed_location{{scope=\"demo\",name=\"we\\\"ird\"}} {}",
        99 * MB
    )));
    let text = crate::api::routes::metrics::render(&stopped());
    assert!(text.contains("patroni_postgres_running{scope=\"demo\",name=\"node3\"} 0"));
    assert!(text.contains("patroni_cluster_unlocked{scope=\"demo\",name=\"node3\"} 1"));
}

#[tokio::test]
async fn handlers_answer_from_the_latest_snapshot() {
    let (tx, rx) = watch::channel(Arc::new(replica()));
    let app = router(ApiState::new(rx));
    let get = |uri: &'static str| {
        Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request")
    };
    let res = app.clone().oneshot(get("/primary")).await.expect("call");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    tx.send_replace(Arc::new(primary()));
    let res = app.oneshot(get("/primary")).await.expect("call");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn serve_answers_on_a_socket_and_stops_on_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_tx, rx) = watch::channel(Arc::new(primary()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        router(ApiState::new(rx)),
        crate::api::ServeOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"OPTIONS /primary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut reply))
        .await
        .expect("reply in time")
        .expect("read");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");

    stop_tx.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("serve");
}

#[tokio::test]
async fn unsafe_methods_follow_the_access_policy_in_patronis_order() {
    use crate::api::allowlist::Net;
    use crate::tls::server::VerifyClient;

    let (_tx, rx) = watch::channel(Arc::new(primary()));
    let access = Arc::new(Access::new(Policy {
        auth: Some(crate::config::BasicAuth {
            username: "u".into(),
            password: "p".into(),
        }),
        allowlist: Some(vec![Net::parse("127.0.0.1/32").expect("net")]),
        include_members: false,
        verify_client: VerifyClient::Optional,
    }));
    let app = router(ApiState::new(rx).with_access(access));
    let call = |method: Method, peer: Option<&str>, cert: bool, auth: bool| {
        let app = app.clone();
        let mut req = Request::builder()
            .method(method)
            .uri("/reload")
            .body(Body::empty())
            .expect("request");
        if let Some(p) = peer {
            req.extensions_mut().insert(ConnInfo {
                peer: p.parse().expect("addr"),
                client_cert: cert,
            });
        }
        if auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, "Basic dTpw".parse().expect("header"));
        }
        async move {
            let res = app.oneshot(req).await.expect("call");
            let status = res.status();
            let body = res.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (s, b) = call(Method::POST, Some("127.0.0.2:5000"), true, true).await;
    assert_eq!(
        (s, b.contains("Access is denied")),
        (StatusCode::FORBIDDEN, true),
        "{b}"
    );
    let (s, b) = call(Method::POST, None, true, true).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "no connection info, allowlist set: {b}"
    );
    let (s, b) = call(Method::POST, Some("127.0.0.1:5000"), false, true).await;
    assert_eq!(
        (s, b.contains("client certificate required")),
        (StatusCode::FORBIDDEN, true),
        "{b}"
    );
    let (s, b) = call(Method::POST, Some("[::ffff:127.0.0.1]:5000"), true, false).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // Past every check: this router has no control handle, so the route answers 503.
    let (s, b) = call(Method::POST, Some("127.0.0.1:5000"), true, true).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    // Safe methods stay open to anyone.
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/primary")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("call");
    assert_eq!(res.status(), StatusCode::OK);
}
