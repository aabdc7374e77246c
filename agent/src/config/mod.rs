//! Configuration: the local YAML file (Patroni's schema), `PATRONI_*` environment
//! overrides, and the cluster-wide dynamic configuration stored in etcd.
//!
//! Rule: loading is pure parsing plus validation; nothing here starts anything.
//! An unknown key is a warning naming it, a wrong type or a missing required key
//! is an error naming the key and the file.
//!
//! One file per concern:
//!
//! - `mod.rs`: the typed configuration ([`Config`] and its sections).
//! - `load.rs`: the load pipeline (file, directory or environment; the steps in order).
//! - `yaml.rs`: YAML text to a tree as PyYAML (YAML 1.1) reads it.
//! - `env.rs`: the `PATRONI_*` variables, for the agent and for agentctl.
//! - `merge.rs`: Patroni's `patch_config` on JSON trees, the one merge for the loader,
//!   `PATCH /config` and `agentctl edit-config --apply`.
//! - `validate.rs`: required keys and the checks beyond types.
//! - `warnings.rs`: unsupported and unknown keys, and what we accept but ignore.
//! - `dynamic.rs`: the cluster-wide dynamic configuration stored in etcd.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod dynamic;
pub(crate) mod env;
mod load;
pub mod merge;
#[cfg(test)]
mod testing;
mod validate;
mod warnings;
mod yaml;

pub use dynamic::{check_parameter, duration, DynamicConfig, DynamicPostgresql, Note};

pub use load::{load_file, load_str, ConfigError};
pub use validate::open_api_warning;
pub(crate) use warnings::OTHER_DCS;

/// The local configuration of one node (Patroni's YAML file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Config {
    /// Cluster name; all members of one cluster share it.
    pub scope: String,
    /// Key prefix in etcd, default `/service/`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// This member's name, unique in the cluster.
    pub name: String,
    #[serde(default)]
    pub log: LogConfig,
    pub restapi: RestApiConfig,
    pub etcd3: Etcd3Config,
    #[serde(default)]
    pub bootstrap: BootstrapConfig,
    pub postgresql: PostgresqlConfig,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub watchdog: Option<Value>,
    #[serde(default)]
    pub ctl: Option<Value>,
    /// The file this configuration was read from (for error messages).
    #[serde(skip)]
    pub source: PathBuf,
}

fn default_namespace() -> String {
    "/service/".to_string()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct LogConfig {
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL` (Patroni's names) or tracing's.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RestApiConfig {
    /// `host:port` to bind the REST API to.
    pub listen: String,
    /// `host:port` other members and clients use to reach this API.
    pub connect_address: String,
    #[serde(default)]
    pub authentication: Option<BasicAuth>,
    /// PEM certificate (chain): when set, the API speaks HTTPS only.
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// PEM private key of `certfile` (default: the key inside `certfile`).
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
    /// Password of an encrypted (PKCS#8) `keyfile`.
    #[serde(default)]
    pub keyfile_password: Option<Secret>,
    /// PEM CA bundle that client certificates are verified against.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// OpenSSL-style cipher list; TLS 1.2 suites are narrowed to it.
    #[serde(default)]
    pub ciphers: Option<String>,
    /// `none` (default), `optional` (a client certificate for unsafe methods) or
    /// `required` (a client certificate for every request).
    #[serde(default)]
    pub verify_client: Option<String>,
    /// Addresses, networks (CIDR) and host names allowed to use unsafe methods.
    #[serde(default)]
    pub allowlist: Option<Vec<String>>,
    /// Also allow the cluster's members (the hosts of their `api_url`/`conn_url`).
    #[serde(default)]
    pub allowlist_include_members: Option<bool>,
}

#[derive(Clone, Deserialize, Serialize, PartialEq)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

/// The password never shows in logs or error messages.
impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Etcd3Config {
    /// A single `host[:port]`.
    #[serde(default)]
    pub host: Option<String>,
    /// A list of `host[:port]`, or one comma-separated string. Wins over `host`.
    #[serde(default)]
    pub hosts: Option<StringOrList>,
    /// Default port for hosts given without one (2379).
    #[serde(default)]
    pub port: Option<u16>,
    /// One endpoint as a URL (`http://host:port`). Wins over `hosts` and `host`.
    #[serde(default)]
    pub url: Option<String>,
    /// `http` (default) or `https` (TLS; needs `cacert`).
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// PEM file of the CA that signed etcd's server certificate (https only).
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// PEM client certificate presented to etcd (with `key`), for `--client-cert-auth`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`, unencrypted.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Patroni's password for an encrypted `key`: not supported, a startup error.
    #[serde(default)]
    pub key_password: Option<String>,
}

/// The password never shows in logs or error messages.
impl std::fmt::Debug for Etcd3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd3Config")
            .field("host", &self.host)
            .field("hosts", &self.hosts)
            .field("port", &self.port)
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("key_password", &redacted(&self.key_password))
            .finish()
    }
}

/// `Some("<redacted>")` for a set secret, for `Debug` output.
/// A password (`keyfile_password`): serialized as is, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

pub(crate) fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

/// The TLS settings of the etcd connection, checked ([`Etcd3Config::tls`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdTls {
    pub cacert: PathBuf,
    /// Client certificate and key, when etcd wants one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Etcd3Config {
    /// Whether the connection is TLS (`protocol: https` or an `https://` url), and its
    /// settings. Fails closed: a TLS key set on a plain-http connection, https without
    /// a CA, half a client identity, or `key_password` is an error `(key, message)`.
    pub fn tls(&self) -> Result<Option<EtcdTls>, (&'static str, String)> {
        let endpoints = self.endpoints();
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https > 0 && https < endpoints.len() {
            return Err((
                "etcd3.hosts",
                "mixes http:// and https:// endpoints; use one protocol".into(),
            ));
        }
        if self.key_password.is_some() {
            return Err((
                "etcd3.key_password",
                "not supported: give an unencrypted key in etcd3.key \
                 (e.g. `openssl pkey -in enc.key -out etcd.key`, mode 0600)"
                    .into(),
            ));
        }
        let set = |p: &Option<PathBuf>| p.as_ref().filter(|p| !p.as_os_str().is_empty()).cloned();
        let (cacert, cert, key) = (set(&self.cacert), set(&self.cert), set(&self.key));
        if https == 0 {
            for (name, v) in [
                ("etcd3.cacert", &cacert),
                ("etcd3.cert", &cert),
                ("etcd3.key", &key),
            ] {
                if v.is_some() {
                    return Err((
                        name,
                        "is set but etcd is reached over plain http: set etcd3.protocol: https \
                         (or https:// endpoints), or remove the key"
                            .into(),
                    ));
                }
            }
            return Ok(None);
        }
        let Some(cacert) = cacert else {
            return Err((
                "etcd3.cacert",
                "required with https: the CA file that signed etcd's certificate \
                 (the agent always verifies the server)"
                    .into(),
            ));
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(("etcd3.key", "required with etcd3.cert".into())),
            (None, Some(_)) => return Err(("etcd3.cert", "required with etcd3.key".into())),
        };
        Ok(Some(EtcdTls { cacert, identity }))
    }

    /// All configured endpoints as `http://host:port` URLs. Same precedence as
    /// Patroni: `url`, else `hosts`, else `host`; a missing port is `port` or 2379.
    pub fn endpoints(&self) -> Vec<String> {
        if let Some(url) = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            return vec![url.trim_end_matches('/').to_string()];
        }
        let protocol = self.protocol.as_deref().unwrap_or("http");
        let default_port = self.port.unwrap_or(2379);
        let mut hosts = self.hosts.as_ref().map(|h| h.items()).unwrap_or_default();
        hosts.retain(|h| !h.trim().is_empty());
        if hosts.is_empty() {
            hosts.extend(self.host.iter().filter(|h| !h.trim().is_empty()).cloned());
        }
        hosts
            .iter()
            .map(|h| {
                let h = h.trim();
                let has_port = if h.starts_with('[') {
                    h.contains("]:")
                } else {
                    h.rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                };
                if h.contains("://") {
                    h.to_string()
                } else if has_port {
                    format!("{protocol}://{h}")
                } else if h.contains(':') && !h.starts_with('[') {
                    format!("{protocol}://[{h}]:{default_port}")
                } else {
                    format!("{protocol}://{h}:{default_port}")
                }
            })
            .collect()
    }
}

/// Patroni accepts either a YAML list or a comma-separated string in several places.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn items(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            StringOrList::Many(v) => v.iter().map(|x| x.trim().to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct BootstrapConfig {
    /// Seeds the dynamic configuration in etcd when the cluster is created.
    #[serde(default)]
    pub dcs: Value,
    /// Options for initdb: strings (`data-checksums`) or one-key maps (`encoding: UTF8`).
    #[serde(default)]
    pub initdb: Vec<InitdbOption>,
    /// Legacy: pg_hba lines used when `postgresql.pg_hba` is not set.
    #[serde(default)]
    pub pg_hba: Option<Vec<String>>,
    /// Script run on the new primary after initdb (`post_bootstrap` or `post_init`).
    #[serde(default)]
    pub post_bootstrap: Option<String>,
    #[serde(default)]
    pub post_init: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum InitdbOption {
    Flag(String),
    KeyValue(BTreeMap<String, Value>),
}

impl InitdbOption {
    /// Render as initdb command line arguments (`--encoding=UTF8`, `--data-checksums`).
    pub fn to_args(&self) -> Vec<String> {
        match self {
            InitdbOption::Flag(f) => vec![format!("--{}", f.trim_start_matches('-'))],
            InitdbOption::KeyValue(m) => m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    format!("--{}={}", k.trim_start_matches('-'), v)
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PostgresqlConfig {
    /// `host[,host...]:port` postgres listens on (`listen_addresses` and `port`).
    pub listen: String,
    /// `host:port` other members and clients use to reach this postgres.
    pub connect_address: String,
    #[serde(default)]
    pub proxy_address: Option<String>,
    pub data_dir: PathBuf,
    /// Directory of postgres binaries; when absent, PATH and `/usr/lib/postgresql/*/bin` are searched.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    #[serde(default)]
    pub pgpass: Option<PathBuf>,
    pub authentication: Authentication,
    /// Local postgres parameters (merged over the dynamic `postgresql.parameters`).
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    #[serde(default)]
    pub pg_hba: Option<Vec<String>>,
    #[serde(default)]
    pub pg_ident: Option<Vec<String>>,
    #[serde(default)]
    pub use_pg_rewind: Option<bool>,
    #[serde(default)]
    pub remove_data_directory_on_rewind_failure: bool,
    #[serde(default)]
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Extra pg_basebackup options: strings or one-key maps, like `bootstrap.initdb`.
    #[serde(default)]
    pub basebackup: Vec<InitdbOption>,
    /// Unsupported keys we accept and ignore (warned about).
    #[serde(default)]
    pub create_replica_methods: Option<Value>,
    /// Scripts run after postgres starts, stops, restarts, reloads or changes
    /// role (Patroni's `postgresql.callbacks`; an empty `callbacks:` is none).
    #[serde(default)]
    pub callbacks: Option<CallbackCommands>,
    /// Run (and waited for) after the leader key is taken, before promoting; a
    /// non-zero exit aborts the promotion and releases the key.
    #[serde(default)]
    pub pre_promote: Option<String>,
    /// Run (and waited for) before postgres is stopped; its exit code is logged.
    #[serde(default)]
    pub before_stop: Option<String>,
}

/// `postgresql.callbacks`: a command line per event, split like a shell would
/// (no shell runs it); `action role scope` are appended.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct CallbackCommands {
    #[serde(default)]
    pub on_start: Option<String>,
    #[serde(default)]
    pub on_stop: Option<String>,
    #[serde(default)]
    pub on_restart: Option<String>,
    #[serde(default)]
    pub on_reload: Option<String>,
    #[serde(default)]
    pub on_role_change: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Authentication {
    pub superuser: Credentials,
    pub replication: Credentials,
    #[serde(default)]
    pub rewind: Option<Credentials>,
}

/// One postgres user and how to reach a server as it (Patroni's
/// `postgresql.authentication.<user>`): libpq's TLS and authentication options,
/// used in `primary_conninfo`, pg_basebackup, pg_rewind and the agent's own
/// connections. The password goes through a passfile ([`Config::pgpass`]), never
/// into `postgresql.conf` or a command line.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Credentials {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// `disable|allow|prefer|require|verify-ca|verify-full` (libpq; `prefer` when unset).
    #[serde(default)]
    pub sslmode: Option<String>,
    #[serde(default)]
    pub sslcert: Option<String>,
    #[serde(default)]
    pub sslkey: Option<String>,
    #[serde(default)]
    pub sslrootcert: Option<String>,
    #[serde(default)]
    pub sslcrl: Option<String>,
    #[serde(default)]
    pub sslcrldir: Option<String>,
    /// `disable|prefer|require`.
    #[serde(default)]
    pub channel_binding: Option<String>,
    /// `disable|prefer|require`.
    #[serde(default)]
    pub gssencmode: Option<String>,
    /// Not supported (it would have to be written into `primary_conninfo` and
    /// command lines): a startup error.
    #[serde(default)]
    pub sslpassword: Option<String>,
    /// Not supported by PostgreSQL 15's libpq: a startup error.
    #[serde(default)]
    pub sslnegotiation: Option<String>,
}

/// The passwords never show in logs or error messages.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Credentials");
        d.field("username", &self.username)
            .field("password", &redacted(&self.password));
        for (k, v) in self.libpq_options() {
            d.field(k, &v);
        }
        d.field("sslpassword", &redacted(&self.sslpassword))
            .finish()
    }
}

/// Patroni's and libpq's names of the options in [`Credentials::libpq_options`].
pub const LIBPQ_OPTIONS: &[&str] = &[
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "channel_binding",
    "gssencmode",
];

impl Credentials {
    /// The libpq connection options that are set, as `(keyword, value)` (no secrets).
    pub fn libpq_options(&self) -> Vec<(&'static str, &str)> {
        let values = [
            &self.sslmode,
            &self.sslcert,
            &self.sslkey,
            &self.sslrootcert,
            &self.sslcrl,
            &self.sslcrldir,
            &self.channel_binding,
            &self.gssencmode,
        ];
        LIBPQ_OPTIONS
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (*k, v)))
            .collect()
    }

    /// `(key, message)` for an option that is wrong or that we do not implement.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let one_of = |key: &'static str, v: &Option<String>, allowed: &[&str]| match v.as_deref() {
            Some(x) if !allowed.contains(&x) => Err((
                key,
                format!("expected one of {}, got `{x}`", allowed.join(", ")),
            )),
            _ => Ok(()),
        };
        one_of(
            "sslmode",
            &self.sslmode,
            &[
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ],
        )?;
        one_of(
            "channel_binding",
            &self.channel_binding,
            &["disable", "prefer", "require"],
        )?;
        one_of(
            "gssencmode",
            &self.gssencmode,
            &["disable", "prefer", "require"],
        )?;
        if self.sslpassword.is_some() {
            return Err((
                "sslpassword",
                "not supported: it would have to be written into primary_conninfo and command \
                 lines; give an unencrypted sslkey (mode 0600, owned by the postgres user)"
                    .into(),
            ));
        }
        if self.sslnegotiation.is_some() {
            return Err((
                "sslnegotiation",
                "not supported (PostgreSQL 17 libpq); remove it".into(),
            ));
        }
        if self
            .sslmode
            .as_deref()
            .is_some_and(|m| m.starts_with("verify"))
            && self.sslrootcert.as_deref().is_none_or(str::is_empty)
        {
            return Err((
                "sslrootcert",
                "required with sslmode verify-ca or verify-full (the CA that signed the server's certificate)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Member tags (Patroni's `tags` section). Unknown tags are kept and published.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Tags {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofailover: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noloadbalance: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clonefrom: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nosync: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nostream: Option<bool>,
    /// Any other user tag.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Tags {
    /// True when this member must never be promoted. `nofailover: true` wins over
    /// `failover_priority`; `failover_priority <= 0` alone also forbids promotion.
    pub fn nofailover(&self) -> bool {
        match (self.nofailover, self.failover_priority) {
            (Some(b), _) => b,
            (None, Some(p)) => p <= 0,
            (None, None) => false,
        }
    }

    /// Priority among equally advanced candidates (higher wins); 0 when not allowed.
    pub fn failover_priority(&self) -> i64 {
        if self.nofailover() {
            0
        } else {
            self.failover_priority.unwrap_or(1)
        }
    }

    pub fn noloadbalance(&self) -> bool {
        self.noloadbalance.unwrap_or(false)
    }

    pub fn clonefrom(&self) -> bool {
        self.clonefrom.unwrap_or(false)
    }

    pub fn nosync(&self) -> bool {
        self.nosync.unwrap_or(false)
    }

    /// Tags as published in the member key and `/patroni` (only what is set).
    pub fn to_json(&self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }

    /// A warning when `nofailover` and `failover_priority` contradict each other.
    pub fn contradiction(&self) -> Option<String> {
        match (self.nofailover, self.failover_priority) {
            (Some(true), Some(p)) if p > 0 => Some(format!(
                "conflicting tags: nofailover: true and failover_priority: {p}; nofailover wins"
            )),
            (Some(false), Some(p)) if p <= 0 => Some(format!(
                "conflicting tags: nofailover: false and failover_priority: {p}; the node will not be promoted"
            )),
            _ => None,
        }
    }
}

impl Config {
    /// The etcd key prefix of this cluster: `/<namespace>/<scope>/`.
    pub fn cluster_prefix(&self) -> String {
        cluster_prefix(&self.namespace, &self.scope)
    }

    /// The passfile the agent writes for libpq (`postgresql.pgpass`, else `~/pgpass`
    /// as Patroni: `$HOME`, else the home directory of the user we run as).
    pub fn pgpass(&self) -> PathBuf {
        if let Some(p) = self
            .postgresql
            .pgpass
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            return p.clone();
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.dir)
            })
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join("pgpass")
    }

    /// Whether pg_rewind may be used: local setting wins over the dynamic one.
    pub fn use_pg_rewind(&self, dynamic: &DynamicConfig) -> bool {
        self.postgresql
            .use_pg_rewind
            .unwrap_or(dynamic.postgresql.use_pg_rewind)
    }

    /// The dynamic configuration to seed etcd with (`bootstrap.dcs` over defaults).
    pub fn bootstrap_dynamic(&self) -> Value {
        match &self.bootstrap.dcs {
            Value::Object(_) => self.bootstrap.dcs.clone(),
            _ => Value::Object(Default::default()),
        }
    }
}

/// `/<namespace>/<scope>/` with duplicate slashes collapsed.
pub fn cluster_prefix(namespace: &str, scope: &str) -> String {
    let ns = namespace.trim_matches('/');
    if ns.is_empty() {
        format!("/{scope}/")
    } else {
        format!("/{ns}/{scope}/")
    }
}

/// Environment variables as a map, so loading can be tested without touching the process env.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// Find a postgres binary: `bin_dir` if set, else PATH, else `/usr/lib/postgresql/*/bin` (newest first).
pub fn find_pg_bin_dir(bin_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = bin_dir {
        return Some(d.to_path_buf());
    }
    // A complete set of tools: distributions often link only some of them into PATH,
    // so follow the `postgres` link to the directory it really lives in.
    let complete = |d: &Path| {
        [
            "postgres",
            "initdb",
            "pg_controldata",
            "pg_basebackup",
            "pg_rewind",
        ]
        .iter()
        .all(|b| d.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let Ok(real) = std::fs::canonicalize(dir.join("postgres")) else {
                continue;
            };
            if let Some(parent) = real.parent() {
                if complete(parent) {
                    return Some(parent.to_path_buf());
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}
