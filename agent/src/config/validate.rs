//! Checks on the configuration beyond its types: required keys (named, parents
//! first), addresses, etcd endpoints, credentials, and the cluster-wide settings in
//! `bootstrap.dcs` (including safety rule 2, `ttl >= loop_wait + 2 * retry_timeout`).
//!
//! Rule: pure. An error is one line naming the file and the dotted key; something
//! usable but suspicious is a warning, never an error.

use serde_json::Value;

use super::load::ConfigError;
use super::warnings::OTHER_DCS;
use super::yaml::{kind, lookup};
use super::{Config, DynamicConfig};

/// Patroni reserves this member name for its strict synchronous mode.
const RESERVED_NAME: &str = "__patroni_strict_sync_replica_placeholder__";

/// Checked in this order, parents before children, so the first missing one is named.
pub(super) const REQUIRED: &[&str] = &[
    "scope",
    "name",
    "restapi",
    "restapi.listen",
    "restapi.connect_address",
    "etcd3",
    "postgresql",
    "postgresql.listen",
    "postgresql.connect_address",
    "postgresql.data_dir",
    "postgresql.authentication",
    "postgresql.authentication.superuser",
    "postgresql.authentication.superuser.username",
    "postgresql.authentication.replication",
    "postgresql.authentication.replication.username",
];

pub(super) fn check_required(tree: &Value, file: &str) -> Result<(), ConfigError> {
    for key in REQUIRED {
        match lookup(tree, key) {
            Ok(None) | Ok(Some(Value::Null)) => {
                let mut message = "missing required key".to_string();
                if *key == "etcd3" {
                    if let Some(other) = OTHER_DCS
                        .iter()
                        .find(|d| matches!(lookup(tree, d), Ok(Some(_))))
                    {
                        message = format!(
                            "missing required key (found `{other}`, but etcd v3 is the only supported DCS)"
                        );
                    }
                }
                return Err(ConfigError::invalid(file, *key, message));
            }
            Ok(Some(_)) | Err(()) => {}
        }
    }
    Ok(())
}

pub(super) fn validate(
    cfg: &mut Config,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let err = |key: &str, message: String| ConfigError::invalid(file, key, message);

    for (key, value) in [("scope", &cfg.scope), ("name", &cfg.name)] {
        if value.trim().is_empty() {
            return Err(err(key, "must not be empty".into()));
        }
    }
    if cfg.name == RESERVED_NAME {
        return Err(err("name", format!("`{RESERVED_NAME}` is reserved")));
    }

    // postgresql.parameters: each one becomes one line of postgresql.conf.
    for (name, value) in &cfg.postgresql.parameters {
        crate::config::check_parameter(name, value).map_err(|m| {
            let shown: String = name
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            err(&format!("postgresql.parameters.{shown}"), m)
        })?;
    }

    // Scripts: each command line must split into a program and its arguments.
    let c = cfg.postgresql.callbacks.clone().unwrap_or_default();
    for (key, cmd) in [
        ("postgresql.callbacks.on_start", &c.on_start),
        ("postgresql.callbacks.on_stop", &c.on_stop),
        ("postgresql.callbacks.on_restart", &c.on_restart),
        ("postgresql.callbacks.on_reload", &c.on_reload),
        ("postgresql.callbacks.on_role_change", &c.on_role_change),
        ("postgresql.pre_promote", &cfg.postgresql.pre_promote),
        ("postgresql.before_stop", &cfg.postgresql.before_stop),
    ] {
        // an empty command is no script, as in Patroni
        if let Some(cmd) = cmd.as_deref().filter(|c| !c.trim().is_empty()) {
            crate::postgres::callbacks::split(cmd).map_err(|m| err(key, m))?;
        }
    }

    // REST API. Patroni binds `*:port` and `:port` to all interfaces; so do we,
    // by rewriting them to an address a socket can bind.
    let (host, port) =
        split_host_port(&cfg.restapi.listen).map_err(|m| err("restapi.listen", m))?;
    if host.contains(',') {
        return Err(err("restapi.listen", "expected a single host:port".into()));
    }
    if host.is_empty() || host == "*" {
        cfg.restapi.listen = format!("0.0.0.0:{port}");
    }
    check_connect_address(
        "restapi.connect_address",
        &cfg.restapi.connect_address,
        file,
        warnings,
    )?;
    if let Some(auth) = &cfg.restapi.authentication {
        if auth.username.is_empty() {
            return Err(err(
                "restapi.authentication.username",
                "must not be empty".into(),
            ));
        }
    }

    check_restapi_security(cfg, file, warnings)?;

    // etcd.
    match cfg.etcd3.protocol.as_deref() {
        None | Some("http") | Some("https") => {}
        Some(other) => {
            return Err(err(
                "etcd3.protocol",
                format!("expected http or https, got `{other}`"),
            ))
        }
    }
    check_etcd_endpoints(cfg, file)?;
    cfg.etcd3.tls().map_err(|(key, m)| err(key, m))?;

    // postgres.
    let pg = &cfg.postgresql;
    let (hosts, _) = split_host_port(&pg.listen).map_err(|m| err("postgresql.listen", m))?;
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(err(
            "postgresql.listen",
            format!(
                "expected host[,host...]:port (`*:port` for all interfaces), got `{}`",
                pg.listen
            ),
        ));
    }
    if hosts.contains(&"*") && hosts.len() > 1 {
        return Err(err("postgresql.listen", "`*` must be the only host".into()));
    }
    check_connect_address(
        "postgresql.connect_address",
        &pg.connect_address,
        file,
        warnings,
    )?;
    if let Some(proxy) = &pg.proxy_address {
        check_connect_address("postgresql.proxy_address", proxy, file, warnings)?;
    }
    if pg.data_dir.as_os_str().is_empty() {
        return Err(err("postgresql.data_dir", "must not be empty".into()));
    }
    let users = [
        ("superuser", Some(&pg.authentication.superuser)),
        ("replication", Some(&pg.authentication.replication)),
        ("rewind", pg.authentication.rewind.as_ref()),
    ];
    for (user, creds) in users {
        if creds.is_some_and(|c| c.username.is_empty()) {
            return Err(err(
                &format!("postgresql.authentication.{user}.username"),
                "must not be empty".into(),
            ));
        }
        if let Some(Err((key, m))) = creds.map(|c| c.check()) {
            return Err(err(&format!("postgresql.authentication.{user}.{key}"), m));
        }
    }

    // Cluster-wide settings, including safety rule 2 (ttl >= loop_wait + 2 * retry_timeout).
    match &cfg.bootstrap.dcs {
        Value::Null | Value::Object(_) => {}
        other => {
            return Err(err(
                "bootstrap.dcs",
                format!("expected a mapping, got {}", kind(other)),
            ))
        }
    }
    DynamicConfig::from_json(&cfg.bootstrap.dcs).map_err(|e| {
        let (key, message) = match e.split_once(": ") {
            Some((k, m)) if k != "." => (format!("bootstrap.dcs.{k}"), m.to_string()),
            Some((_, m)) => ("bootstrap.dcs".to_string(), m.to_string()),
            None => ("bootstrap.dcs".to_string(), e.clone()),
        };
        ConfigError::invalid(file, key, message)
    })?;
    Ok(())
}

/// The REST API's TLS and access keys (fail closed: what cannot be honoured is an
/// error), and the loud warning for an API open to the network with no guard.
fn check_restapi_security(
    cfg: &mut Config,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let err = |key: &str, message: String| ConfigError::invalid(file, key, message);
    let r = &mut cfg.restapi;
    let blank =
        |p: &Option<std::path::PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
    // Patroni: an empty certfile means plain HTTP.
    if blank(&r.certfile) {
        r.certfile = None;
    }
    if blank(&r.keyfile) {
        r.keyfile = None;
    }
    if blank(&r.cafile) {
        r.cafile = None;
    }
    let https = r.certfile.is_some();
    if let Some(v) = &r.verify_client {
        let v = v.trim().to_ascii_lowercase();
        if !matches!(v.as_str(), "none" | "optional" | "required") {
            return Err(err(
                "restapi.verify_client",
                format!("expected none, optional or required, got `{v}`"),
            ));
        }
        if v != "none" && !https {
            return Err(err(
                "restapi.verify_client",
                format!("`{v}` needs restapi.certfile (client certificates exist only over HTTPS)"),
            ));
        }
        if v != "none" && r.cafile.is_none() {
            return Err(err(
                "restapi.cafile",
                format!("required when restapi.verify_client is `{v}` (the CA client certificates are verified against)"),
            ));
        }
        r.verify_client = Some(v);
    }
    if !https {
        for (key, set) in [
            ("restapi.keyfile", r.keyfile.is_some()),
            ("restapi.keyfile_password", r.keyfile_password.is_some()),
        ] {
            if set {
                return Err(err(
                    key,
                    "set without restapi.certfile: the API would run over plain HTTP".into(),
                ));
            }
        }
        if r.ciphers.is_some() {
            warnings.push(format!(
                "{file}: restapi.ciphers: ignored without restapi.certfile (the API runs over plain HTTP)"
            ));
        }
    }
    for entry in r.allowlist.iter().flatten() {
        if entry.contains('/') {
            crate::api::allowlist::Net::parse(entry).map_err(|m| err("restapi.allowlist", m))?;
        } else if entry.trim().is_empty() {
            return Err(err("restapi.allowlist", "empty entry".into()));
        }
    }
    if let Some(w) = open_api_warning(r) {
        warnings.push(format!("{file}: {w}"));
    }
    Ok(())
}

/// The warning for a REST API reachable from other hosts whose unsafe methods
/// (`PATCH /config`, `POST /restart`, ...) anyone who reaches it may call.
pub fn open_api_warning(r: &super::RestApiConfig) -> Option<String> {
    let (host, _) = split_host_port(&r.listen).ok()?;
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let client_certs =
        r.certfile.is_some() && matches!(r.verify_client.as_deref(), Some("optional" | "required"));
    let allowlist = r.allowlist.as_ref().is_some_and(|a| !a.is_empty())
        || r.allowlist_include_members == Some(true);
    if loopback || r.authentication.is_some() || client_certs || allowlist {
        return None;
    }
    Some(format!(
        "SECURITY: restapi.listen {} accepts connections from other hosts, and its unsafe methods \
         (PATCH /config, POST /restart, /reinitialize, /switchover, ...) need no credentials: \
         set restapi.authentication, restapi.verify_client (with certfile and cafile) or restapi.allowlist",
        r.listen
    ))
}

/// `host:port` with a host other members can reach.
fn check_connect_address(
    key: &str,
    value: &str,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let (host, _) = split_host_port(value).map_err(|m| ConfigError::invalid(file, key, m))?;
    if host.is_empty() || host == "*" || host.contains(',') {
        return Err(ConfigError::invalid(
            file,
            key,
            format!("expected one host:port that other members can connect to, got `{value}`"),
        ));
    }
    if host == "0.0.0.0" || host == "::" {
        warnings.push(format!(
            "{file}: {key}: `{host}` is a listen-everywhere address; other members cannot connect to it"
        ));
    }
    Ok(())
}

/// Split Patroni's `host:port` (also `[v6]:port` and `h1,h2:port`); the port must be 1..=65535.
fn split_host_port(value: &str) -> Result<(String, u16), String> {
    let value = value.trim();
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("expected host:port, got `{value}`"));
    };
    let port: u16 = port
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port `{port}` in `{value}` (expected 1-65535)"))?;
    let host = host
        .split(',')
        .map(|h| h.trim().trim_start_matches('[').trim_end_matches(']'))
        .collect::<Vec<_>>()
        .join(",");
    Ok((host, port))
}

/// At least one etcd endpoint, each `[scheme://]host[:port]` with a valid port.
fn check_etcd_endpoints(cfg: &Config, file: &str) -> Result<(), ConfigError> {
    let e = &cfg.etcd3;
    let (key, items) = if let Some(url) = e.url.as_ref().filter(|u| !u.trim().is_empty()) {
        ("etcd3.url", vec![url.clone()])
    } else if let Some(hosts) = e.hosts.as_ref().filter(|h| !h.items().is_empty()) {
        ("etcd3.hosts", hosts.items())
    } else if let Some(host) = e.host.as_ref().filter(|h| !h.trim().is_empty()) {
        ("etcd3.host", vec![host.clone()])
    } else {
        return Err(ConfigError::invalid(
            file,
            "etcd3.hosts",
            "missing required key (set etcd3.hosts or etcd3.host to at least one host:port)",
        ));
    };
    for item in items {
        let item = item.trim();
        let hostport = match item.split_once("://") {
            Some(("http" | "https", rest)) => rest.split('/').next().unwrap_or(""),
            Some((scheme, _)) => {
                return Err(ConfigError::invalid(
                    file,
                    key,
                    format!("unsupported scheme `{scheme}` in `{item}` (expected http or https)"),
                ))
            }
            None => item,
        };
        let has_port = if hostport.starts_with('[') {
            hostport.contains("]:")
        } else {
            hostport.contains(':')
        };
        let host = if has_port {
            split_host_port(hostport)
                .map_err(|m| ConfigError::invalid(file, key, m))?
                .0
        } else {
            hostport.to_string()
        };
        if host.is_empty() {
            return Err(ConfigError::invalid(
                file,
                key,
                format!("expected host:port, got `{item}`"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn scripts_are_read_and_bad_command_lines_refused() {
        let text = edit(
            "postgresql.callbacks",
            Some(
                serde_json::json!({"on_role_change": "/bin/vip.sh 'eth 0'", "on_start": "/bin/true"}),
            ),
        );
        let (cfg, warnings) = load(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            cfg.postgresql
                .callbacks
                .as_ref()
                .and_then(|c| c.on_role_change.as_deref()),
            Some("/bin/vip.sh 'eth 0'")
        );
        let text = edit("postgresql.pre_promote", Some("/bin/fence.sh".into()));
        let (cfg, warnings) = load(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.postgresql.pre_promote.as_deref(), Some("/bin/fence.sh"));
        let e = err(&edit("postgresql.before_stop", Some("/bin/x 'open".into())));
        assert!(e.contains("postgresql.before_stop"), "{e}");
        let e = err(&edit(
            "postgresql.callbacks",
            Some(serde_json::json!({"on_stop": "a\\"})),
        ));
        assert!(e.contains("postgresql.callbacks.on_stop"), "{e}");
        // an empty command is no script; an empty `callbacks:` is none
        load(&edit("postgresql.callbacks", Some(serde_json::Value::Null))).unwrap();
        load(&edit(
            "postgresql.callbacks",
            Some(serde_json::json!({"on_stop": ""})),
        ))
        .unwrap();
        let (_, warnings) = load(&edit(
            "postgresql.callbacks",
            Some(serde_json::json!({"on_wat": "/bin/true"})),
        ))
        .unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("postgresql.callbacks.on_wat")),
            "{warnings:?}"
        );
    }

    #[test]
    fn each_required_key_missing_is_an_error_naming_it() {
        for key in REQUIRED {
            let e = err(&without(key));
            assert_eq!(
                e,
                format!("node1.yml: {key}: missing required key"),
                "removing {key}"
            );
        }
    }

    #[test]
    fn etcd_tls_keys_fail_closed() {
        let etcd = |v: serde_json::Value| err(&edit("etcd3", Some(v)));
        let cases = [
            (
                serde_json::json!({"hosts": "h:2379", "cacert": "/ca.crt"}),
                "etcd3.cacert: is set but etcd is reached over plain http",
            ),
            (
                serde_json::json!({"hosts": "h:2379", "protocol": "https"}),
                "etcd3.cacert: required with https",
            ),
            (
                serde_json::json!({"url": "https://h:2379", "cacert": "/ca", "cert": "/c"}),
                "etcd3.key: required with etcd3.cert",
            ),
            (
                serde_json::json!({"hosts": "h:2379", "protocol": "https", "cacert": "/ca", "key_password": "x"}),
                "etcd3.key_password: not supported",
            ),
            (
                serde_json::json!({"hosts": ["https://a:2379", "http://b:2379"], "cacert": "/ca"}),
                "etcd3.hosts: mixes http:// and https://",
            ),
            (
                serde_json::json!({"hosts": "h:2379", "protocol": "ftp"}),
                "etcd3.protocol: expected http or https",
            ),
        ];
        for (v, want) in cases {
            let e = etcd(v.clone());
            assert!(e.starts_with(&format!("node1.yml: {want}")), "{v}: {e}");
        }
        let text = edit(
            "etcd3",
            Some(serde_json::json!({"hosts": "h:2379", "protocol": "https", "cacert": "/ca"})),
        );
        let (cfg, warnings) = load(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.etcd3.endpoints(), vec!["https://h:2379"]);
    }

    #[test]
    fn postgres_link_options_are_checked() {
        let e = err(&edit(
            "postgresql.authentication.replication.sslmode",
            Some("verify-full".into()),
        ));
        assert!(
            e.starts_with("node1.yml: postgresql.authentication.replication.sslrootcert: required"),
            "{e}"
        );
        let e = err(&edit(
            "postgresql.authentication.superuser.sslmode",
            Some("maybe".into()),
        ));
        assert!(
            e.starts_with(
                "node1.yml: postgresql.authentication.superuser.sslmode: expected one of"
            ),
            "{e}"
        );
        let e = err(&edit(
            "postgresql.authentication.superuser.sslpassword",
            Some("pw".into()),
        ));
        assert!(
            e.starts_with(
                "node1.yml: postgresql.authentication.superuser.sslpassword: not supported"
            ),
            "{e}"
        );
        let text = edit(
            "postgresql.authentication.replication",
            Some(serde_json::json!({
                "username": "rep", "password": "pw", "sslmode": "verify-ca",
                "sslrootcert": "/ca.crt", "channel_binding": "require", "gssencmode": "disable",
            })),
        );
        let (cfg, warnings) = load(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let rep = &cfg.postgresql.authentication.replication;
        assert_eq!(
            rep.libpq_options(),
            vec![
                ("sslmode", "verify-ca"),
                ("sslrootcert", "/ca.crt"),
                ("channel_binding", "require"),
                ("gssencmode", "disable")
            ]
        );
        // Debug output never shows a password.
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("rep-pass") && !shown.contains("\"pw\""),
            "{shown}"
        );
    }

    #[test]
    fn restapi_tls_and_access_keys_fail_closed() {
        let with = |extra: &str| {
            GOOD.replace(
                "  listen: 127.0.0.1:8008",
                &format!("  listen: 127.0.0.1:8008\n{extra}"),
            )
        };
        let e = err(&with("  certfile: /c.pem\n  verify_client: sometimes"));
        assert!(
            e.starts_with("node1.yml: restapi.verify_client: expected none, optional or required"),
            "{e}"
        );
        let e = err(&with("  verify_client: required\n  cafile: /ca.pem"));
        assert!(
            e.starts_with("node1.yml: restapi.verify_client: `required` needs restapi.certfile"),
            "{e}"
        );
        let e = err(&with("  certfile: /c.pem\n  verify_client: optional"));
        assert!(e.starts_with("node1.yml: restapi.cafile: required"), "{e}");
        let e = err(&with("  keyfile: /k.pem"));
        assert!(
            e.starts_with("node1.yml: restapi.keyfile: set without restapi.certfile"),
            "{e}"
        );
        let e = err(&with("  allowlist: [10.0.0.0/40]"));
        assert!(
            e.starts_with("node1.yml: restapi.allowlist: `10.0.0.0/40`"),
            "{e}"
        );
        let (cfg, warnings) = load(&with(
            "  certfile: /c.pem\n  cafile: /ca.pem\n  verify_client: REQUIRED\n  allowlist: [127.0.0.1, 10.0.0.0/8]\n  allowlist_include_members: true",
        ))
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.restapi.verify_client.as_deref(), Some("required"));
        assert_eq!(cfg.restapi.allowlist.as_ref().map(Vec::len), Some(2));
        // An empty certfile is plain HTTP, as in Patroni.
        let (cfg, _) = load(&with("  certfile: ''")).unwrap();
        assert_eq!(cfg.restapi.certfile, None);
    }

    #[test]
    fn an_open_api_on_the_network_is_a_loud_warning() {
        let open = GOOD.replace("  listen: 127.0.0.1:8008", "  listen: 0.0.0.0:8008");
        let (_, warnings) = load(&open).unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("SECURITY: restapi.listen 0.0.0.0:8008")),
            "{warnings:?}"
        );
        for guard in [
            "  authentication:\n    username: a\n    password: b",
            "  allowlist: [10.0.0.1]",
            "  allowlist_include_members: true",
            "  certfile: /c.pem\n  cafile: /ca.pem\n  verify_client: optional",
        ] {
            let text = open.replace(
                "  listen: 0.0.0.0:8008",
                &format!("  listen: 0.0.0.0:8008\n{guard}"),
            );
            let (_, warnings) = load(&text).unwrap();
            assert!(
                !warnings.iter().any(|w| w.contains("SECURITY")),
                "{guard}: {warnings:?}"
            );
        }
        let (_, warnings) = load(GOOD).unwrap();
        assert!(
            !warnings.iter().any(|w| w.contains("SECURITY")),
            "loopback: {warnings:?}"
        );
    }

    #[test]
    fn missing_etcd_endpoints_is_an_error() {
        let e = err(&without("etcd3.hosts"));
        assert!(
            e.starts_with("node1.yml: etcd3.hosts: missing required key"),
            "{e}"
        );
        let e = err(&edit("etcd3.hosts", Some(Value::Array(vec![]))));
        assert!(
            e.starts_with("node1.yml: etcd3.hosts: missing required key"),
            "{e}"
        );
        // `host` alone is enough.
        let text = edit("etcd3", Some(serde_json::json!({"host": "10.0.0.1:2379"})));
        let (cfg, _) = load(&text).unwrap();
        assert_eq!(cfg.etcd3.endpoints(), vec!["http://10.0.0.1:2379"]);
    }

    #[test]
    fn etcd_v2_section_is_named_in_the_error() {
        let text = without("etcd3") + "etcd:\n  host: 127.0.0.1:2379\n";
        let e = err(&text);
        assert!(
            e.starts_with("node1.yml: etcd3: missing required key (found `etcd`"),
            "{e}"
        );
    }

    #[test]
    fn bad_ttl_rule_names_the_key() {
        let text = edit("bootstrap.dcs.ttl", Some(Value::from(20)));
        let e = err(&text);
        assert!(
            e.starts_with("node1.yml: bootstrap.dcs.ttl: must be >= loop_wait + 2 * retry_timeout"),
            "{e}"
        );
        // Below Patroni's floor of 20 but safe: accepted.
        let text = edit(
            "bootstrap.dcs",
            Some(serde_json::json!({"ttl": 6, "loop_wait": 1, "retry_timeout": 2})),
        );
        load(&text).unwrap();
        let e = err(&edit("bootstrap.dcs", Some(Value::from(5))));
        assert!(
            e.starts_with("node1.yml: bootstrap.dcs: expected a mapping"),
            "{e}"
        );
    }

    #[test]
    fn addresses_are_checked() {
        for (key, bad) in [
            ("restapi.listen", "127.0.0.1"),
            ("restapi.listen", "127.0.0.1:99999"),
            ("restapi.listen", "a,b:8008"),
            ("restapi.connect_address", "127.0.0.1:0"),
            ("restapi.connect_address", "*:8008"),
            ("postgresql.listen", "a,,b:5432"),
            ("postgresql.listen", "*,a:5432"),
            ("postgresql.connect_address", "127.0.0.1:x"),
            ("etcd3.hosts", "127.0.0.1:70000"),
        ] {
            let e = err(&edit(key, Some(Value::String(bad.into()))));
            assert!(e.starts_with(&format!("node1.yml: {key}: ")), "{bad}: {e}");
        }
        for (key, good) in [
            ("postgresql.listen", "*:5432"),
            ("postgresql.listen", "127.0.0.1,10.0.0.1:5432"),
            ("postgresql.listen", "[::1]:5432"),
            ("restapi.connect_address", "node1.example.com:8008"),
            ("etcd3.hosts", "10.0.0.1:2379,10.0.0.2:2379"),
            ("etcd3.hosts", "etcd1"),
        ] {
            load(&edit(key, Some(Value::String(good.into()))))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        // Patroni binds `*:port` to all interfaces.
        let (cfg, _) = load(&edit(
            "restapi.listen",
            Some(Value::String("*:8008".into())),
        ))
        .unwrap();
        assert_eq!(cfg.restapi.listen, "0.0.0.0:8008");
    }

    #[test]
    fn empty_name_is_an_error() {
        assert_eq!(
            err(&edit("name", Some(Value::String(" ".into())))),
            "node1.yml: name: must not be empty"
        );
        assert_eq!(
            err(&edit("postgresql.data_dir", Some(Value::String("".into())))),
            "node1.yml: postgresql.data_dir: must not be empty"
        );
    }
}
