//! The etcd v3 client: one lease per agent, bound to `leader` and `members/<name>`;
//! acquire = create-if-absent transaction; release = compare-and-delete on our own
//! name; compare-and-set on `config` and `failover`.
//!
//! Rule: every call has a timeout (safety rule 7). Callers branch on [`DcsError`].

use std::time::Duration;

use anyhow::Context;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::Notify;

use super::model::{keys, Cluster, History, MemberData, RawKv, Status};
use crate::config::{Etcd3Config, EtcdTls};
use crate::dcs::model::LeaseRenewal;
use crate::fence::clock_now;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DcsError {
    /// etcd did not answer in time or the connection failed.
    #[error("etcd is not available: {0}")]
    Unavailable(String),
    /// Our lease expired or was revoked.
    #[error("our etcd lease is gone")]
    LeaseLost,
}

type Result<T> = std::result::Result<T, DcsError>;

fn classify(e: etcd_client::Error) -> DcsError {
    let s = describe(&e, false);
    if s.contains("lease not found") {
        DcsError::LeaseLost
    } else {
        DcsError::Unavailable(s)
    }
}

/// The error with its causes (tonic's "transport error" alone does not say that the
/// certificate was refused), and a hint at the TLS keys when the handshake failed.
fn describe(e: &etcd_client::Error, tls: bool) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    let lower = s.to_ascii_lowercase();
    // Only a TLS connection can fail over a certificate.
    if lower.contains("certificate")
        || (tls && (lower.contains("tls") || lower.contains("handshake")))
    {
        s.push_str(" (TLS to etcd failed: check etcd3.cacert, etcd3.cert and etcd3.key)");
    }
    s
}

/// rustls settings from the checked TLS keys; a file that cannot be read is an
/// error naming the key.
fn tls_options(tls: &EtcdTls) -> anyhow::Result<TlsOptions> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))
    };
    let ca = read("etcd3.cacert", &tls.cacert)?;
    let mut opts = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = &tls.identity {
        let cert = read("etcd3.cert", cert)?;
        let key = read("etcd3.key", key)?;
        opts = opts.identity(Identity::from_pem(cert, key));
    }
    Ok(opts)
}

/// A connection to etcd for one cluster (`/<namespace>/<scope>/`) and one member.
pub struct Etcd {
    client: Client,
    prefix: String,
    name: String,
    lease: i64,
    /// The TTL we asked for when the lease was granted.
    lease_ttl: i64,
    /// The TTL etcd granted the lease (its answer to every keep-alive too).
    granted_ttl: i64,
    /// The last successful keep-alive or grant of `lease`.
    renewal: Option<LeaseRenewal>,
    timeout: Duration,
}

impl Etcd {
    /// Connect lazily: this succeeds even when etcd is down; calls fail until it is up.
    pub async fn connect(cfg: &Etcd3Config, prefix: &str, name: &str) -> anyhow::Result<Etcd> {
        let endpoints = cfg.endpoints();
        if endpoints.is_empty() {
            anyhow::bail!("etcd3: no hosts configured");
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts = opts.with_user(u.clone(), p.clone());
        }
        let tls = cfg
            .tls()
            .map_err(|(key, m)| anyhow::anyhow!("{key}: {m}"))?;
        if let Some(tls) = &tls {
            opts = opts.with_tls(tls_options(tls)?);
        }
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe(&e, tls.is_some())))?;
        Ok(Etcd {
            client,
            prefix: prefix.to_string(),
            name: name.to_string(),
            lease: 0,
            lease_ttl: 0,
            granted_ttl: 0,
            renewal: None,
            timeout: Duration::from_secs(10),
        })
    }

    /// Another handle on the same connection, cluster and member, without the lease
    /// keep-alive state (for the REST API and background actions).
    pub fn handle(&self) -> Etcd {
        Etcd {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
            name: self.name.clone(),
            lease: self.lease,
            lease_ttl: self.lease_ttl,
            granted_ttl: self.granted_ttl,
            renewal: self.renewal,
            timeout: self.timeout,
        }
    }

    /// Upper bound for every etcd call.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t.max(Duration::from_millis(100));
    }

    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The last successful keep-alive or grant of the current lease.
    pub fn renewal(&self) -> Option<LeaseRenewal> {
        self.renewal.filter(|r| r.lease == self.lease)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, k: &str) -> String {
        format!("{}{}", self.prefix, k)
    }

    async fn timed<T, F>(&self, f: F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(DcsError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Keep our lease alive; grant a new one when we have none, when it expired, or
    /// when the wanted TTL changed. Returns the renewal: when the successful request
    /// was sent (fence clock) and the TTL it bought. A renewal of another lease than
    /// before means a new lease (keys bound to the old one must be re-bound).
    ///
    /// Transient errors (a closed stream, a dropped connection) are retried until the
    /// call's timeout (`retry_timeout`) is used up, like Patroni's retries: a single
    /// hiccup must not look like a lost etcd and demote a healthy primary.
    pub async fn refresh_lease(&mut self, ttl: i64) -> Result<LeaseRenewal> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last = DcsError::Unavailable("no attempt".into());
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, self.refresh_once(ttl)).await {
                Ok(Ok(renewal)) => return Ok(renewal),
                Ok(Err(e)) => {
                    tracing::debug!("lease keep-alive attempt failed: {e}");
                    last = e;
                }
                Err(_) => {
                    last = DcsError::Unavailable(format!(
                        "keep-alive: no answer within {:?}",
                        self.timeout
                    ));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    async fn refresh_once(&mut self, ttl: i64) -> Result<LeaseRenewal> {
        if self.lease != 0 && self.lease_ttl == ttl {
            let sent = clock_now();
            match self.keep_alive_once().await {
                Ok(true) => {
                    // etcd answers a keep-alive with the lease's granted TTL (the
                    // client checks it is positive but does not hand it out; it is
                    // the TTL the grant answered with).
                    if let Some(r) = LeaseRenewal::new(self.lease, sent, ttl, self.granted_ttl) {
                        self.renewal = Some(r);
                        return Ok(r);
                    }
                }
                Ok(false) | Err(DcsError::LeaseLost) => {
                    tracing::warn!(lease = self.lease, "our etcd lease expired");
                }
                Err(e) => return Err(e),
            }
        }
        let mut c = self.client.clone();
        let sent = clock_now();
        let resp = self.timed(c.lease_grant(ttl, None)).await?;
        let renewal = LeaseRenewal::new(resp.id(), sent, ttl, resp.ttl()).ok_or_else(|| {
            DcsError::Unavailable(format!("etcd granted a lease with ttl {}", resp.ttl()))
        })?;
        self.lease = resp.id();
        self.lease_ttl = ttl;
        self.granted_ttl = resp.ttl();
        self.renewal = Some(renewal);
        tracing::info!(
            lease = self.lease,
            ttl,
            granted = resp.ttl(),
            "granted a new etcd lease"
        );
        Ok(renewal)
    }

    /// One keep-alive round trip on a fresh stream (a stream kept idle between
    /// cycles can be closed under us). `Ok(false)`: the lease no longer exists.
    async fn keep_alive_once(&mut self) -> Result<bool> {
        let mut c = self.client.clone();
        let id = self.lease;
        // Opening the stream sends one keep-alive and waits for its answer (an
        // error says "lease not found" when the lease expired).
        match tokio::time::timeout(self.timeout, c.lease_keep_alive(id)).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => match classify(e) {
                DcsError::LeaseLost => Ok(false),
                other => Err(other),
            },
            Err(_) => Err(DcsError::Unavailable(format!(
                "keep-alive: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Read every key of the cluster in one request (retried on transient errors
    /// until the timeout is used up).
    pub async fn read_cluster(&self) -> Result<Cluster> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.read_cluster_once()).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e))
                    if tokio::time::Instant::now() + Duration::from_millis(100) < deadline =>
                {
                    tracing::debug!("reading the cluster failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(DcsError::Unavailable(format!(
                        "no answer within {:?}",
                        self.timeout
                    )))
                }
            }
        }
    }

    async fn read_cluster_once(&self) -> Result<Cluster> {
        let mut c = self.client.clone();
        let resp = self
            .timed(c.get(self.prefix.clone(), Some(GetOptions::new().with_prefix())))
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let kvs: Vec<RawKv> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = kv.key_str().ok()?;
                let rel = key.strip_prefix(&self.prefix)?;
                Some(RawKv {
                    key: rel.to_string(),
                    value: kv.value_str().unwrap_or("").to_string(),
                    lease: kv.lease(),
                    mod_revision: kv.mod_revision(),
                    create_revision: kv.create_revision(),
                })
            })
            .collect();
        Ok(Cluster::from_kvs(&kvs, revision))
    }

    /// Write our member key (bound to our lease).
    pub async fn touch_member(&self, data: &MemberData) -> Result<()> {
        if self.lease == 0 {
            return Err(DcsError::LeaseLost);
        }
        let mut c = self.client.clone();
        let key = self.key(&format!("{}{}", keys::MEMBERS, self.name));
        self.timed(c.put(
            key,
            data.to_json_string(),
            Some(PutOptions::new().with_lease(self.lease)),
        ))
        .await?;
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<bool> {
        let mut c = self.client.clone();
        let resp = self.timed(c.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    /// Safety rule 1: create `leader` = our name, bound to our lease, only if it does not exist.
    pub async fn acquire_leader(&self) -> Result<bool> {
        if self.lease == 0 {
            return Err(DcsError::LeaseLost);
        }
        let key = self.key(keys::LEADER);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                self.name.clone(),
                Some(PutOptions::new().with_lease(self.lease)),
            )]);
        self.txn(txn).await
    }

    /// `leader` names us but is bound to an older lease: bind it to the current one,
    /// only if it still names us.
    pub async fn rebind_leader(&self) -> Result<bool> {
        if self.lease == 0 {
            return Err(DcsError::LeaseLost);
        }
        let key = self.key(keys::LEADER);
        let txn = Txn::new()
            .when([Compare::value(
                key.clone(),
                CompareOp::Equal,
                self.name.clone(),
            )])
            .and_then([TxnOp::put(
                key,
                self.name.clone(),
                Some(PutOptions::new().with_lease(self.lease)),
            )]);
        self.txn(txn).await
    }

    /// Compare-and-delete `leader` on our own name.
    pub async fn release_leader(&self) -> Result<bool> {
        let key = self.key(keys::LEADER);
        let txn = Txn::new()
            .when([Compare::value(
                key.clone(),
                CompareOp::Equal,
                self.name.clone(),
            )])
            .and_then([TxnOp::delete(key, None)]);
        self.txn(txn).await
    }

    /// Bootstrap race: create `initialize` with an empty value if absent.
    pub async fn race_initialize(&self) -> Result<bool> {
        self.create_if_absent(keys::INITIALIZE, String::new()).await
    }

    async fn create_if_absent(&self, k: &str, value: String) -> Result<bool> {
        let key = self.key(k);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        self.txn(txn).await
    }

    async fn put(&self, k: &str, value: String) -> Result<()> {
        let mut c = self.client.clone();
        self.timed(c.put(self.key(k), value, None)).await?;
        Ok(())
    }

    async fn put_cas(&self, k: &str, value: String, mod_revision: Option<i64>) -> Result<bool> {
        match mod_revision {
            None => self.create_if_absent(k, value).await,
            Some(rev) => {
                let key = self.key(k);
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                    .and_then([TxnOp::put(key, value, None)]);
                self.txn(txn).await
            }
        }
    }

    pub async fn set_initialize(&self, sysid: &str) -> Result<()> {
        self.put(keys::INITIALIZE, sysid.to_string()).await
    }

    pub async fn delete_initialize(&self) -> Result<()> {
        let mut c = self.client.clone();
        self.timed(c.delete(self.key(keys::INITIALIZE), None))
            .await?;
        Ok(())
    }

    /// Create `config` if absent.
    pub async fn seed_config(&self, value: &serde_json::Value) -> Result<bool> {
        self.create_if_absent(keys::CONFIG, value.to_string()).await
    }

    /// Compare-and-set `config` on its mod revision (`None`: create if absent).
    pub async fn set_config(
        &self,
        value: &serde_json::Value,
        mod_revision: Option<i64>,
    ) -> Result<bool> {
        self.put_cas(keys::CONFIG, value.to_string(), mod_revision)
            .await
    }

    pub async fn write_status(&self, status: &Status) -> Result<()> {
        self.put(keys::STATUS, status.to_json_string()).await
    }

    pub async fn write_history(&self, history: &History) -> Result<()> {
        self.put(keys::HISTORY, history.to_json_string()).await
    }

    /// Compare-and-set the `sync` key: `leader` is us, `standbys` the synchronous ones
    /// (`None`: create if absent).
    pub async fn write_sync(&self, standbys: &[String], mod_revision: Option<i64>) -> Result<bool> {
        let state = crate::dcs::model::SyncState {
            leader: Some(self.name.clone()),
            sync_standby: (!standbys.is_empty()).then(|| standbys.join(",")),
            quorum: 0,
            mod_revision: 0,
        };
        self.put_cas(keys::SYNC, state.to_json_string(), mod_revision)
            .await
    }

    /// Delete the `sync` key if it is still the version we saw.
    pub async fn delete_sync(&self, mod_revision: i64) -> Result<bool> {
        let key = self.key(keys::SYNC);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then([TxnOp::delete(key, None)]);
        self.txn(txn).await
    }

    /// Write the `failover` key unconditionally (Patroni's `manual_failover`).
    pub async fn write_failover(&self, json: String) -> Result<()> {
        self.put(keys::FAILOVER, json).await
    }

    /// Clear a failover request the way Patroni does: write `{}` over that exact version.
    pub async fn clear_failover(&self, mod_revision: i64) -> Result<bool> {
        self.put_cas(keys::FAILOVER, "{}".to_string(), Some(mod_revision))
            .await
    }

    /// Delete every key of the cluster.
    pub async fn delete_cluster(&self) -> Result<()> {
        let mut c = self.client.clone();
        let opts = etcd_client::DeleteOptions::new().with_prefix();
        self.timed(c.delete(self.prefix.clone(), Some(opts)))
            .await?;
        Ok(())
    }

    /// Watch the cluster prefix in the background and wake `notify` when the
    /// `leader` or `failover` key changes (or `config`, so settings apply at once).
    /// Reconnects by itself; never blocks the caller.
    pub fn spawn_watch(&self, notify: std::sync::Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let prefix = self.prefix.clone();
        let watched: Vec<String> = [keys::LEADER, keys::FAILOVER, keys::CONFIG]
            .iter()
            .map(|k| format!("{prefix}{k}"))
            .collect();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let mut c = client.clone();
                let res = tokio::time::timeout(
                    Duration::from_secs(5),
                    c.watch(prefix.clone(), Some(WatchOptions::new().with_prefix())),
                )
                .await;
                let mut stream = match res {
                    Ok(Ok(s)) => s,
                    _ => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                backoff = Duration::from_millis(200);
                // The world may have changed while we were not watching.
                notify.notify_one();
                while let Ok(Some(resp)) = stream.message().await {
                    {
                        {
                            let hit = resp.events().iter().any(|ev| {
                                ev.kv().and_then(|kv| kv.key_str().ok()).is_some_and(|k| {
                                    watched.iter().any(|w| w == k)
                                        || (ev.event_type() == EventType::Delete
                                            && k.ends_with(keys::LEADER))
                                })
                            });
                            if hit {
                                notify.notify_one();
                            }
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
            }
        })
    }
}
