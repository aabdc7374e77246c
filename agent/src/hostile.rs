//! Property tests: nothing a user or a peer can send panics the agent (safety
//! rule 10). The release build aborts on a panic, and an aborted agent takes
//! its postgres down, so every route of the REST API, the cluster parser (what
//! etcd holds) and `ha::decide` over what was parsed are fed arbitrary input.
//!
//! A panic hook counts panics, so a panic inside a task that
//! axum or tokio would swallow in a debug build still fails the test. CI runs
//! this module under an optimised profile too (`cargo test --profile
//! release-checks -p agent --lib hostile`), where integer overflow wraps instead
//! of panicking and debug assertions are off, as in the release binary.

use std::cell::Cell;
use std::sync::{Arc, Once};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::api::{router, ApiState, Control};
use crate::config::{DynamicConfig, Etcd3Config};
use crate::dcs::etcd::Etcd;
use crate::dcs::model::{Cluster, RawKv};
use crate::status::NodeStatus;

static HOOK: Once = Once::new();

thread_local! {
    /// Panics on this thread. The runtimes here are current-thread ones, so the
    /// tasks a test spawns run on the test's thread; other tests' failures (on
    /// their own threads) do not count.
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

fn count_panics() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            default(info);
        }));
    });
}

fn panics() -> usize {
    PANICS.with(Cell::get)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Strings that have broken parsers before: huge and odd numbers, units,
/// timestamps far away, control characters, empty.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1e300".to_string()),
        Just("1e400".to_string()),
        Just("-1".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("18446744073709551616".to_string()),
        Just("30min".to_string()),
        Just("1 XB".to_string()),
        Just("now".to_string()),
        Just("9999-12-31T23:59:59+00:00".to_string()),
        Just("0001-01-01T00:00:00-23:59".to_string()),
        Just("quorum".to_string()),
        Just("4000000000.1".to_string()),
        Just("99999999999999999999.9.9".to_string()),
        Just(String::new()),
        Just("a\nb\u{0}".to_string()),
        "[a-z_]{1,12}",
        ".{0,24}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(1e300),
            Just(-1e300),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE)
        ]
        .prop_map(|f| json!(f)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys the agent looks for, so the values land where they are parsed.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "ttl",
            "loop_wait",
            "retry_timeout",
            "pause",
            "synchronous_mode",
            "synchronous_mode_strict",
            "synchronous_node_count",
            "maximum_lag_on_failover",
            "maximum_lag_on_syncnode",
            "member_slots_ttl",
            "primary_start_timeout",
            "primary_stop_timeout",
            "postgresql",
            "parameters",
            "use_slots",
            "slots",
            "leader",
            "candidate",
            "member",
            "scheduled_at",
            "schedule",
            "timeout",
            "role",
            "postgres_version",
            "restart_pending",
            "force",
            "optime",
            "retain_slots",
            "sync_standby",
            "quorum",
            "xlog_location",
            "timeline",
            "tags",
            "nofailover",
            "failover_priority",
            "sync_priority",
            "api_url",
            "conn_url",
            "state",
            "role",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,8}",
    ]
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/restart"),
    ("DELETE", "/restart"),
    ("POST", "/switchover"),
    ("DELETE", "/switchover"),
    ("POST", "/failover"),
    ("PATCH", "/config"),
    ("PUT", "/config"),
    ("POST", "/reload"),
    ("POST", "/reinitialize"),
    ("GET", "/patroni"),
    ("GET", "/cluster"),
    ("GET", "/history"),
    ("GET", "/config"),
    ("GET", "/metrics"),
    ("GET", "/replica"),
    ("GET", "/readiness"),
    ("GET", "/liveness"),
    ("GET", "/primary"),
];

/// A router whose control side reaches no etcd (a closed loopback port, so
/// every etcd call fails fast) and whose HA loop answers every request at once.
async fn hostile_router(cluster: Option<Cluster>) -> axum::Router {
    let cfg = Etcd3Config {
        hosts: Some(crate::config::StringOrList::One("127.0.0.1:1".into())),
        ..Default::default()
    };
    let mut etcd = Etcd::connect(&cfg, "/service/demo/", "node1")
        .await
        .expect("lazy etcd client");
    etcd.set_timeout(Duration::from_millis(20));
    let (tx, mut rx) = mpsc::channel::<crate::api::RequestMsg>(4);
    tokio::spawn(async move {
        while let Some((_, reply)) = rx.recv().await {
            let _ = reply.send((200, "done".into()));
        }
    });
    let control = Arc::new(Control {
        etcd,
        requests: tx,
        scheduled_restart: Arc::default(),
        wake: Arc::default(),
        http: crate::tls::http_client_builder().build().unwrap(),
    });
    let mut st = NodeStatus::initial("demo", "node1");
    st.cluster = cluster.map(Arc::new);
    let (_tx, status) = watch::channel(Arc::new(st));
    std::mem::forget(_tx);
    router(ApiState::new(status).with_control(control))
}

async fn call(r: axum::Router, method: &str, uri: &str, body: Vec<u8>) -> u16 {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body));
    let Ok(req) = req else {
        return 0; // not a valid URI: hyper would refuse it before the router
    };
    let res = r.oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}

/// The keys a cluster prefix can hold, with arbitrary values.
fn raw_kvs() -> impl Strategy<Value = Vec<RawKv>> {
    let k = prop::sample::select(vec![
        "config",
        "leader",
        "members/node1",
        "members/node2",
        "status",
        "history",
        "failover",
        "sync",
        "initialize",
        "optime/leader",
        "failsafe",
    ]);
    let v = prop_oneof![json_value().prop_map(|v| v.to_string()), nasty_string(),];
    prop::collection::vec((k, v, 0i64..3), 0..10).prop_map(|kvs| {
        kvs.into_iter()
            .enumerate()
            .map(|(i, (k, v, lease))| RawKv {
                key: k.to_string(),
                value: v,
                lease,
                mod_revision: i as i64 + 1,
                create_revision: 1,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_request_panics_the_api(route in 0..ROUTES.len(), body in body_bytes(),
                                 query in prop::collection::vec((key(), nasty_string()), 0..3)) {
        count_panics();
        let before = panics();
        let (method, path) = ROUTES[route];
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", v.bytes().map(|b| format!("%{b:02X}")).collect::<String>()))
            .collect();
        let uri = if q.is_empty() { path.to_string() } else { format!("{path}?{}", q.join("&")) };
        let status = runtime().block_on(async {
            let r = hostile_router(None).await;
            call(r, method, &uri, body.clone()).await
        });
        prop_assert!(status < 600);
        prop_assert_eq!(panics(), before, "a panic on {} {}", method, uri);
    }

    #[test]
    fn no_etcd_content_panics_the_parser_or_decide(kvs in raw_kvs(), lease in 0i64..3) {
        count_panics();
        let before = panics();
        let mut cluster = Cluster::from_kvs(&kvs, 42);
        let cfg = cluster.dynamic();
        let _ = cfg.lease_ttl_secs();
        let _ = crate::config::duration(cfg.loop_wait);
        let _ = crate::config::duration(cfg.member_slots_ttl);
        // the agent's own reading of the same key, from any previous value
        if let Some(raw) = cluster.config.as_ref().map(|c| c.raw.clone()) {
            let (eff, _) = DynamicConfig::effective(&raw, &cfg);
            cluster.in_force = Some(eff);
        }
        let obs = crate::ha::Observation {
            cluster: Some(cluster.clone()),
            lease,
            ..Default::default()
        };
        let settings = crate::ha::Settings { name: "node1".into(), ..Default::default() };
        let _ = crate::ha::decide(&obs, &settings);
        // and the REST views of that cluster
        let status = runtime().block_on(async {
            let mut worst = 0;
            for path in ["/cluster", "/history", "/config", "/patroni", "/metrics"] {
                let r = hostile_router(Some(cluster.clone())).await;
                worst = worst.max(call(r, "GET", path, vec![]).await);
            }
            worst
        });
        prop_assert!(status < 600);
        prop_assert_eq!(panics(), before);
    }

    #[test]
    fn no_dynamic_config_panics_or_escapes_its_bounds(v in json_value(), prev_pause in any::<bool>()) {
        let prev = DynamicConfig { pause: prev_pause, ..DynamicConfig::default() };
        let wrapped = json!({"ttl": v.clone(), "loop_wait": v.clone(), "retry_timeout": v.clone(),
                             "pause": v.clone(), "member_slots_ttl": v.clone(),
                             "postgresql": {"parameters": v.clone()}});
        for input in [&v, &wrapped] {
            let (c, notes) = DynamicConfig::effective(input, &prev);
            prop_assert!(c.ttl >= c.loop_wait + 2.0 * c.retry_timeout - 1e-9);
            prop_assert!(c.ttl.is_finite() && c.ttl <= crate::config::dynamic::MAX_TIMEOUT_SECS + 1.0);
            prop_assert!(c.loop_wait >= crate::config::dynamic::MIN_LOOP_WAIT);
            prop_assert!(c.member_slots_ttl.is_finite());
            // pause changes only when a valid pause value says so
            let said = input.get("pause").filter(|p| !p.is_null()).map(crate::config::dynamic::boolean);
            match said {
                Some(Ok(b)) => prop_assert_eq!(c.pause, b),
                Some(Err(_)) => prop_assert_eq!(c.pause, prev_pause),
                None if input.is_object() || input.is_null() => prop_assert!(!c.pause),
                None => prop_assert_eq!(c.pause, prev_pause),
            }
            for p in c.postgresql.parameters.keys() {
                prop_assert!(crate::config::check_parameter(p, &Value::Null).is_ok());
            }
            let _ = notes;
        }
    }
}
