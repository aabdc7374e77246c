//! One probe of the local postgres per HA cycle: role, WAL positions, timeline,
//! replication, slots. Keeps one connection open between cycles.
//!
//! Rule: every call is bounded by a timeout; a hung postgres reads as "not answering".

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::Credentials;

/// One row of `pg_stat_replication`, as the probe reads it and `/patroni` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationInfo {
    pub usename: Option<String>,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sync_priority: Option<i32>,
}

/// What one probe found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeResult {
    pub in_recovery: bool,
    pub wal_lsn: Option<u64>,
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub replay_timestamp: Option<String>,
    pub replay_paused: bool,
    pub timeline: Option<u32>,
    pub receiver_status: Option<String>,
    pub receiver_latest_end_lsn: Option<u64>,
    pub sysid: Option<String>,
    pub server_version: Option<u32>,
    pub postmaster_start_time: Option<String>,
    pub replication: Vec<ReplicationInfo>,
    pub slots: Vec<String>,
    pub pending_restart: bool,
    pub sync_standby_names: Option<String>,
    /// The walsenders with their synchronous state, flush position and lag (for
    /// synchronous mode).
    pub walsenders: Vec<super::Walsender>,
    /// Settings waiting for a restart, with the value still in effect.
    pub pending: Vec<(String, String)>,
}

const STATUS_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
       ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint END,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), '0/0')::bigint,
  pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '0/0')::bigint,
  pg_catalog.pg_last_xact_replay_timestamp()::text,
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END,
  CASE WHEN pg_catalog.pg_is_in_recovery()
       THEN COALESCE((SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver),
                     (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()))
       ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  (SELECT status FROM pg_catalog.pg_stat_wal_receiver),
  (SELECT pg_catalog.pg_wal_lsn_diff(latest_end_lsn, '0/0')::bigint FROM pg_catalog.pg_stat_wal_receiver),
  (SELECT system_identifier::text FROM pg_catalog.pg_control_system()),
  pg_catalog.current_setting('server_version_num')::int,
  pg_catalog.pg_postmaster_start_time()::text,
  EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE pending_restart),
  pg_catalog.current_setting('synchronous_standby_names')";

const REPLICATION_SQL: &str =
    "SELECT usename::text, application_name, client_addr::text, state, sync_state, sync_priority,
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
       ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), flush_lsn)::bigint END,
  pg_catalog.pg_wal_lsn_diff(flush_lsn, '0/0')::bigint
  FROM pg_catalog.pg_stat_replication ORDER BY application_name";

const PENDING_SQL: &str =
    "SELECT name, setting FROM pg_catalog.pg_settings WHERE pending_restart ORDER BY 1";

const SLOTS_SQL: &str =
    "SELECT slot_name::text FROM pg_catalog.pg_replication_slots WHERE slot_type = 'physical' AND NOT temporary ORDER BY 1";

/// A reusable probe connection.
pub struct Probe {
    client: Option<Client>,
    timeout: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            client: None,
            timeout: Duration::from_secs(2),
        }
    }
}

impl Probe {
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Drop the connection (postgres stopped or restarted).
    pub fn reset(&mut self) {
        self.client = None;
    }

    async fn client(
        &mut self,
        conn: &tokio_postgres::Config,
        creds: &Credentials,
    ) -> Result<&Client> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            let (client, _connection) =
                tokio::time::timeout(self.timeout, super::tls::connect(conn, creds))
                    .await
                    .map_err(|_| anyhow!("connect timed out"))??;
            self.client = Some(client);
        }
        self.client.as_ref().ok_or_else(|| anyhow!("no connection"))
    }

    /// Run the probe; on any failure the connection is dropped and an error returned.
    pub async fn probe(
        &mut self,
        conn: &tokio_postgres::Config,
        creds: &Credentials,
    ) -> Result<ProbeResult> {
        let timeout = self.timeout;
        let r = tokio::time::timeout(timeout, self.probe_inner(conn, creds)).await;
        match r {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => {
                self.client = None;
                Err(e)
            }
            Err(_) => {
                self.client = None;
                Err(anyhow!("probe timed out after {timeout:?}"))
            }
        }
    }

    async fn probe_inner(
        &mut self,
        conn: &tokio_postgres::Config,
        creds: &Credentials,
    ) -> Result<ProbeResult> {
        let client = self.client(conn, creds).await?;
        let row = client.query_one(STATUS_SQL, &[]).await?;
        let lsn =
            |i: usize| -> Option<u64> { row.get::<_, Option<i64>>(i).map(|v| v.max(0) as u64) };
        let mut p = ProbeResult {
            in_recovery: row.get(0),
            wal_lsn: lsn(1),
            receive_lsn: lsn(2),
            replay_lsn: lsn(3),
            replay_timestamp: row.get(4),
            replay_paused: row.get(5),
            timeline: row.get::<_, Option<i32>>(6).map(|t| t.max(0) as u32),
            receiver_status: row.get(7),
            receiver_latest_end_lsn: lsn(8),
            sysid: row.get(9),
            server_version: row.get::<_, Option<i32>>(10).map(|v| v.max(0) as u32),
            postmaster_start_time: row.get(11),
            pending_restart: row.get(12),
            sync_standby_names: row.get(13),
            ..Default::default()
        };
        for r in client.query(REPLICATION_SQL, &[]).await? {
            p.walsenders.push(super::Walsender {
                name: r.get::<_, Option<String>>(1).unwrap_or_default(),
                state: r.get::<_, Option<String>>(3).unwrap_or_default(),
                sync_state: r.get::<_, Option<String>>(4).unwrap_or_default(),
                flush_lsn: r.get::<_, Option<i64>>(7).map(|v| v.max(0) as u64),
                lag: r.get::<_, Option<i64>>(6).unwrap_or(0).max(0) as u64,
            });
            p.replication.push(ReplicationInfo {
                usename: r.get(0),
                application_name: r.get::<_, Option<String>>(1).unwrap_or_default(),
                client_addr: r.get(2),
                state: r.get(3),
                sync_state: r.get(4),
                sync_priority: r.get(5),
            });
        }
        if p.pending_restart {
            p.pending = client
                .query(PENDING_SQL, &[])
                .await?
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, Option<String>>(1).unwrap_or_default(),
                    )
                })
                .collect();
        }
        p.slots = client
            .query(SLOTS_SQL, &[])
            .await?
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect();
        Ok(p)
    }

    /// Run statements on the probe connection (slot management, promote).
    pub async fn batch(
        &mut self,
        conn: &tokio_postgres::Config,
        creds: &Credentials,
        sql: &str,
    ) -> Result<()> {
        let timeout = self.timeout.max(Duration::from_secs(5));
        let client = self.client(conn, creds).await?;
        match tokio::time::timeout(timeout, client.batch_execute(sql)).await {
            Ok(r) => r.map_err(|e| anyhow!("{e}")),
            Err(_) => {
                self.client = None;
                Err(anyhow!("statement timed out"))
            }
        }
    }
}
