//! PostgreSQL endpoints the tests talk to: a node directly, HAProxy's ports, or
//! a container. The one place the harness opens a PostgreSQL connection.
//!
//! Rule: every call has a timeout, so a frozen or unreachable node makes a
//! probe fail quickly instead of stalling a sampling round or a check.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio_postgres::{Client, NoTls, Row};

/// `host:port` plus the superuser password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pg {
    pub host: String,
    pub port: u16,
    pub password: String,
}

impl Pg {
    pub fn new(host: impl Into<String>, port: u16, password: impl Into<String>) -> Pg {
        Pg {
            host: host.into(),
            port,
            password: password.into(),
        }
    }

    /// `127.0.0.1:<port>` with the harness's superuser password (`postgres`).
    pub fn local(port: u16) -> Pg {
        Pg::new("127.0.0.1", port, "postgres")
    }

    /// `host:port`, as the writer's `RETURNING` reports the server.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connect as `postgres` within `timeout`; the connection task runs on
    /// the current runtime until the client is dropped.
    pub async fn connect(&self, timeout: Duration) -> Result<Client> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user("postgres")
            .password(&self.password)
            .dbname("postgres")
            .application_name("agent-tests")
            .connect_timeout(timeout);
        let (client, connection) = tokio::time::timeout(timeout, cfg.connect(NoTls))
            .await
            .map_err(|_| anyhow!("connect to {}: timed out after {timeout:?}", self.addr()))?
            .with_context(|| format!("connect to {}", self.addr()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// One query on a fresh connection, everything within `timeout`.
    pub async fn query(&self, query: &str, timeout: Duration) -> Result<Vec<Row>> {
        tokio::time::timeout(timeout, async {
            let client = self.connect(timeout).await?;
            client
                .query(query, &[])
                .await
                .with_context(|| format!("{}: {query}", self.addr()))
        })
        .await
        .map_err(|_| anyhow!("{}: {query}: timed out after {timeout:?}", self.addr()))?
    }

    /// Statements (simple protocol) on a fresh connection, within `timeout`.
    pub async fn execute(&self, statements: &str, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, async {
            let client = self.connect(timeout).await?;
            client
                .batch_execute(statements)
                .await
                .with_context(|| format!("{}: {statements}", self.addr()))
        })
        .await
        .map_err(|_| anyhow!("{}: {statements}: timed out after {timeout:?}", self.addr()))?
    }
}

impl Pg {
    /// The pid of this replica's WAL receiver (`pg_stat_wal_receiver.pid`), in
    /// the server's own pid namespace.
    pub async fn walreceiver_pid(&self, timeout: Duration) -> Result<i32> {
        self.query("SELECT pid FROM pg_stat_wal_receiver", timeout)
            .await?
            .first()
            .and_then(|r| r.try_get::<_, Option<i32>>(0).ok().flatten())
            .ok_or_else(|| anyhow!("{}: no WAL receiver running", self.addr()))
    }

    /// Terminate the backends of the connections named `application_name`;
    /// returns how many.
    pub async fn terminate(&self, application_name: &str, timeout: Duration) -> Result<i64> {
        let sql = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{}' AND pid <> pg_backend_pid()",
            application_name.replace('\'', "''")
        );
        self.query(&sql, timeout)
            .await?
            .first()
            .and_then(|r| r.try_get::<_, i64>(0).ok())
            .ok_or_else(|| anyhow!("{}: no answer to {sql}", self.addr()))
    }
}

/// `X/Y` (PostgreSQL's text form of an LSN) as a byte position.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The timeline of a WAL file name (`000000020000000000000003` → 2).
pub fn walfile_timeline(name: &str) -> Option<u32> {
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_and_timeline() {
        assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(walfile_timeline("000000020000000000000003"), Some(2));
        assert_eq!(walfile_timeline("0000000A"), Some(10));
    }
}
