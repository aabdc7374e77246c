//! Probes: SQL over TCP as `postgres`/`postgres`, and the REST API over HTTP.
//!
//! Rule: every probe has a short timeout, so a frozen or dead node makes a
//! probe fail quickly instead of hanging the test; the deadline of the whole
//! wait is [`crate::wait_for`]'s business.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tokio_postgres::{Client, Row};

use crate::cluster::Node;
use crate::pg::Pg;
use crate::postgres::PostgresFixture;

/// Connecting (TCP + authentication) must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole [`sql`] / [`execute`] call (connect included) must finish within this.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// One REST request must finish within this.
pub const REST_TIMEOUT: Duration = Duration::from_secs(2);

/// Something with a PostgreSQL port on 127.0.0.1.
pub trait PgAddr {
    fn pg_port(&self) -> u16;
}

impl PgAddr for u16 {
    fn pg_port(&self) -> u16 {
        *self
    }
}

impl PgAddr for Node {
    fn pg_port(&self) -> u16 {
        self.pg_port()
    }
}

impl PgAddr for PostgresFixture {
    fn pg_port(&self) -> u16 {
        self.port()
    }
}

/// Connect to `127.0.0.1:<port>` as `postgres` (password `postgres`), database
/// `postgres`, within [`CONNECT_TIMEOUT`]. The connection task is spawned on
/// the current tokio runtime and ends when the client is dropped.
pub async fn try_connect(node: &impl PgAddr) -> Result<Client> {
    Pg::local(node.pg_port()).connect(CONNECT_TIMEOUT).await
}

/// Run one query (extended protocol, no parameters) and return its rows.
pub async fn sql(node: &impl PgAddr, query: &str) -> Result<Vec<Row>> {
    let port = node.pg_port();
    tokio::time::timeout(QUERY_TIMEOUT, async {
        let client = try_connect(&port).await?;
        client
            .query(query, &[])
            .await
            .with_context(|| format!("127.0.0.1:{port}: {query}"))
    })
    .await
    .map_err(|_| anyhow!("127.0.0.1:{port}: {query}: timed out after {QUERY_TIMEOUT:?}"))?
}

/// Run one or more statements (simple protocol, `;`-separated).
pub async fn execute(node: &impl PgAddr, statements: &str) -> Result<()> {
    let port = node.pg_port();
    tokio::time::timeout(QUERY_TIMEOUT, async {
        let client = try_connect(&port).await?;
        client
            .batch_execute(statements)
            .await
            .with_context(|| format!("127.0.0.1:{port}: {statements}"))
    })
    .await
    .map_err(|_| anyhow!("127.0.0.1:{port}: {statements}: timed out after {QUERY_TIMEOUT:?}"))?
}

/// `pg_is_in_recovery()`, or `None` when the node cannot be asked.
pub async fn is_in_recovery(node: &impl PgAddr) -> Option<bool> {
    let rows = sql(node, "SELECT pg_is_in_recovery()").await.ok()?;
    rows.first()?.try_get(0).ok()
}

/// True when the node is out of recovery and a real write commits within 5 s
/// (a read-only fence, `default_transaction_read_only` or a synchronous
/// commit with no standby all count as "cannot write").
pub async fn can_write(node: &impl PgAddr) -> bool {
    let port = node.pg_port();
    let probe = async {
        let client = try_connect(&port).await.ok()?;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .ok()?;
        if row.try_get::<_, bool>(0).ok()? {
            return None;
        }
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS agent_tests_write_probe (at timestamptz); \
                 INSERT INTO agent_tests_write_probe VALUES (now())",
            )
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Some(()))
    )
}

/// A client for the node's API: plain HTTP, or HTTPS when its config has
/// `restapi.certfile` (trusting `restapi.cafile`, presenting `ctl.certfile`
/// and `ctl.keyfile` when set, as the members do).
fn rest_client_for(node: &Node, timeout: Duration) -> reqwest::Client {
    let cfg = node.config();
    fn path(v: &Value) -> Option<&std::path::Path> {
        v.as_str()
            .filter(|s| !s.is_empty())
            .map(std::path::Path::new)
    }
    if path(&cfg["restapi"]["certfile"]).is_none() {
        return crate::tls::http_builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .expect("reqwest client without TLS builds");
    }
    let ca = path(&cfg["restapi"]["cafile"])
        .or_else(|| path(&cfg["ctl"]["cacert"]))
        .expect("an HTTPS node in the tests has restapi.cafile or ctl.cacert");
    let client = path(&cfg["ctl"]["certfile"]).zip(path(&cfg["ctl"]["keyfile"]));
    crate::tls::https_client(ca, client, None, timeout)
}

fn rest_client(node: &Node) -> reqwest::Client {
    rest_client_for(node, REST_TIMEOUT)
}

/// `http://` or `https://127.0.0.1:<rest port>/<path>`, as the node serves.
pub fn rest_url(node: &Node, path: &str) -> String {
    let https = node.config()["restapi"]["certfile"]
        .as_str()
        .is_some_and(|s| !s.is_empty());
    format!(
        "{}://127.0.0.1:{}/{}",
        if https { "https" } else { "http" },
        node.rest_port(),
        path.trim_start_matches('/')
    )
}

/// The HTTP status of `GET <path>` on the node's REST API, or `None` when
/// there is no answer within [`REST_TIMEOUT`].
pub async fn rest_status(node: &Node, path: &str) -> Option<u16> {
    rest_client(node)
        .get(rest_url(node, path))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The JSON body of `GET <path>` whatever the status (Patroni answers health
/// checks with a JSON body on 503 too), or `None` without a JSON answer.
pub async fn rest_json(node: &Node, path: &str) -> Option<Value> {
    rest_client(node)
        .get(rest_url(node, path))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Any request (`POST /switchover`, `PATCH /config`, ...): status and body
/// text, or `None` without an answer within [`REST_TIMEOUT`].
pub async fn rest_send(
    node: &Node,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    rest_send_as(node, method, path, body, None).await
}

/// [`rest_send`], panicking when the node does not answer.
pub async fn rest_call(
    node: &Node,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    rest_send(node, method, path, body)
        .await
        .unwrap_or_else(|| panic!("no answer to {method} {path} from {}", node.name()))
}

/// [`rest_send`] with Basic auth credentials, and a long timeout (control
/// requests such as a switchover answer when they are done).
pub async fn rest_send_as(
    node: &Node,
    method: &str,
    path: &str,
    body: Option<&Value>,
    auth: Option<(&str, &str)>,
) -> Option<(u16, String)> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
    let client = rest_client_for(node, Duration::from_secs(120));
    let mut req = client.request(method, rest_url(node, path));
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}
