//! What agentctl needs from a configuration file: `scope`, `namespace`, `etcd3`,
//! the REST credentials (`ctl.authentication`, else `restapi.authentication`) and
//! HTTPS settings (`ctl.cacert` else `restapi.cafile`, `ctl.certfile`, `ctl.keyfile`,
//! `ctl.keyfile_password`, `ctl.insecure`).
//!
//! Lenient on purpose: `patronictl.yaml` has only these keys, and a node's full
//! YAML has many more that we ignore (no `postgresql.*` is required). `PATRONI_*`
//! variables override these keys as they do for Patroni (`config::env::ctl_overrides`),
//! and `--dcs-url` replaces the etcd endpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{CtlError, CtlResult};
use crate::config::{BasicAuth, Etcd3Config, OTHER_DCS};
use crate::tls::client::ClientSettings;

/// The settings agentctl runs with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CtlConfig {
    pub scope: Option<String>,
    /// etcd key prefix root, `/service/` by default.
    pub namespace: String,
    pub etcd3: Etcd3Config,
    /// Basic auth for the members' REST APIs.
    pub auth: Option<BasicAuth>,
    /// HTTPS to the members' REST APIs (`ctl.cacert`/`certfile`/`keyfile`/`insecure`).
    pub tls: ClientSettings,
    /// Other DCS sections found (`etcd`, `consul`, ...), to explain why there is no etcd3.
    pub other_dcs: Vec<String>,
}

/// Where the configuration comes from when `-c` is not given:
/// `$XDG_CONFIG_HOME/patroni/patronictl.yaml` or `~/.config/patroni/patronictl.yaml`.
pub fn default_config_path(env: &HashMap<String, String>) -> Option<PathBuf> {
    let base = match env.get("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(env.get("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("patroni").join("patronictl.yaml"))
}

impl CtlConfig {
    /// Load `path` (`explicit`: named with `-c` or `PATRONICTL_CONFIG_FILE`, so it
    /// must exist; the default path may be missing), apply `PATRONI_*` overrides and
    /// `dcs_url`.
    pub fn load(
        path: Option<&Path>,
        explicit: bool,
        dcs_url: Option<&str>,
        env: &HashMap<String, String>,
    ) -> CtlResult<CtlConfig> {
        let text = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(_) if !explicit => String::new(),
                Err(e) => {
                    return Err(CtlError::usage(format!(
                        "provided config file {} does not exist or cannot be read ({e}); check the -c/--config-file parameter",
                        p.display()
                    )))
                }
            },
            None => String::new(),
        };
        let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
        let mut cfg = CtlConfig::from_yaml(&text, env).map_err(|e| {
            CtlError::usage(if shown.is_empty() {
                e
            } else {
                format!("{shown}: {e}")
            })
        })?;
        if let Some(url) = dcs_url {
            cfg.apply_dcs_url(url).map_err(CtlError::usage)?;
        }
        Ok(cfg)
    }

    /// Parse YAML text (empty text is an empty configuration) and apply `env`.
    /// Errors name the key.
    pub fn from_yaml(text: &str, env: &HashMap<String, String>) -> Result<CtlConfig, String> {
        let mut tree = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_yaml_ng::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))?
        };
        if tree.is_null() {
            tree = Value::Object(Map::new());
        }
        let Value::Object(root) = &mut tree else {
            return Err("invalid YAML: the top level must be a mapping".into());
        };
        crate::config::env::ctl_overrides(root, env)?;

        let string_at = |key: &str| -> Result<Option<String>, String> {
            match root.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(format!("{key}: expected a string")),
            }
        };
        let scope = string_at("scope")?.filter(|s| !s.is_empty());
        let namespace = string_at("namespace")?.unwrap_or_else(|| "/service/".into());
        let etcd3 = match root.get("etcd3") {
            None | Some(Value::Null) => Etcd3Config::default(),
            Some(v) => {
                serde_path_to_error::deserialize::<_, Etcd3Config>(v.clone()).map_err(|e| {
                    let path = e.path().to_string();
                    format!("etcd3.{path}: {}", e.into_inner())
                })?
            }
        };
        let auth = match auth_at(root, "ctl")? {
            Some(a) => Some(a),
            None => auth_at(root, "restapi")?,
        };
        let tls = ClientSettings::from_tree(root.get("ctl"), root.get("restapi"), None)
            .map_err(|e| e.to_string())?;
        let other_dcs = OTHER_DCS
            .iter()
            .filter(|k| root.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        Ok(CtlConfig {
            scope,
            namespace,
            etcd3,
            auth,
            tls,
            other_dcs,
        })
    }

    /// `--dcs-url [etcd3://]HOST[:PORT][/NAMESPACE]`: replaces the etcd endpoints
    /// (and the namespace when a path is given), as patronictl does.
    pub fn apply_dcs_url(&mut self, url: &str) -> Result<(), String> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s, r),
            None => ("", url.trim_start_matches("//")),
        };
        match scheme {
            "" | "etcd3" | "etcd" | "http" => {}
            other => {
                return Err(format!(
                    "unknown or unsupported dcs scheme: {other} (agentctl speaks etcd3)"
                ))
            }
        }
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| format!("--dcs-url {url}: cannot parse host and port"))?;
        let host = if host.is_empty() { "localhost" } else { host };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        // The endpoint changes; how to reach it (protocol, TLS files, user) does not.
        let old = std::mem::take(&mut self.etcd3);
        self.etcd3 = Etcd3Config {
            host: Some(format!("{host}:{}", port.unwrap_or(2379))),
            hosts: None,
            url: None,
            port: None,
            ..old
        };
        let path = path.trim();
        if !path.is_empty() && path != "/" {
            self.namespace = path.to_string();
        }
        Ok(())
    }

    /// The cluster to act on: the one named on the command line, else `scope`.
    pub fn cluster_name(&self, given: Option<&str>) -> CtlResult<String> {
        match given.filter(|s| !s.is_empty()) {
            Some(c) => Ok(c.to_string()),
            None => self.scope.clone().ok_or_else(|| {
                CtlError::usage(
                    "no cluster name: pass CLUSTER_NAME or use a configuration file with `scope` (-c)",
                )
            }),
        }
    }

    /// `/<namespace>/<cluster>/`.
    pub fn prefix(&self, cluster: &str) -> String {
        crate::config::cluster_prefix(&self.namespace, cluster)
    }

    /// Why etcd cannot be used, when it cannot.
    pub fn check_etcd(&self) -> CtlResult<()> {
        if !self.etcd3.endpoints().is_empty() {
            return Ok(());
        }
        if !self.other_dcs.is_empty() {
            return Err(CtlError::usage(format!(
                "only etcd3 is supported; the configuration has {} but no etcd3 section (or pass --dcs-url etcd3://HOST:PORT)",
                self.other_dcs.join(", ")
            )));
        }
        Err(CtlError::usage(
            "no etcd configured: pass --dcs-url etcd3://HOST:PORT or a configuration file with etcd3.hosts (-c)",
        ))
    }
}

/// `host`, `host:port`, `[v6]:port`, `:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((h, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((h, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p.parse().ok()?))),
        Some(_) => Some((s, None)), // bare IPv6
        None => Some((s, None)),
    }
}

fn auth_at(root: &Map<String, Value>, section: &str) -> Result<Option<BasicAuth>, String> {
    let Some(auth) = root.get(section).and_then(|s| s.get("authentication")) else {
        return Ok(None);
    };
    if auth.is_null() {
        return Ok(None);
    }
    let field = |k: &str| -> Result<Option<String>, String> {
        match auth.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(format!("{section}.authentication.{k}: expected a string")),
        }
    };
    match (field("username")?, field("password")?) {
        (Some(username), Some(password)) => Ok(Some(BasicAuth { username, password })),
        (None, None) => Ok(None),
        _ => Err(format!(
            "{section}.authentication: both username and password are required"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NODE_YAML: &str = include_str!("../../examples/node1.yml");

    #[test]
    fn a_node_yaml_is_enough() {
        let c = CtlConfig::from_yaml(NODE_YAML, &HashMap::new()).unwrap();
        assert_eq!(c.scope.as_deref(), Some("demo"));
        assert_eq!(c.namespace, "/service/");
        assert_eq!(c.etcd3.endpoints(), vec!["http://127.0.0.1:2379"]);
        assert_eq!(c.auth, None);
        assert_eq!(c.prefix("demo"), "/service/demo/");
        assert!(c.check_etcd().is_ok());
    }

    #[test]
    fn minimal_and_empty_files() {
        let c = CtlConfig::from_yaml("", &HashMap::new()).unwrap();
        assert_eq!(c.scope, None);
        assert_eq!(c.check_etcd().unwrap_err().code, 2);
        assert_eq!(c.cluster_name(None).unwrap_err().code, 2);
        assert_eq!(c.cluster_name(Some("x")).unwrap(), "x");
        let c = CtlConfig::from_yaml(
            "scope: prod\nnamespace: /db/\netcd3:\n  hosts: a:2379,b:2379\n",
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(c.prefix("prod"), "/db/prod/");
        assert_eq!(c.etcd3.endpoints(), vec!["http://a:2379", "http://b:2379"]);
        assert_eq!(c.cluster_name(None).unwrap(), "prod");
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = CtlConfig::from_yaml("scope: [a]\n", &HashMap::new()).unwrap_err();
        assert!(e.starts_with("scope:"), "{e}");
        let e = CtlConfig::from_yaml("etcd3:\n  port: high\n", &HashMap::new()).unwrap_err();
        assert!(e.starts_with("etcd3.port:"), "{e}");
        let e = CtlConfig::from_yaml("- a\n", &HashMap::new()).unwrap_err();
        assert!(e.contains("mapping"), "{e}");
        let e = CtlConfig::from_yaml("scope: a: b: c\n", &HashMap::new()).unwrap_err();
        assert!(e.contains("invalid YAML"), "{e}");
        let e = CtlConfig::from_yaml(
            "restapi:\n  authentication:\n    username: u\n",
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(e.starts_with("restapi.authentication"), "{e}");
    }

    #[test]
    fn authentication_ctl_wins_over_restapi() {
        let yaml = "restapi:\n  authentication:\n    username: api\n    password: p1\n";
        let c = CtlConfig::from_yaml(yaml, &HashMap::new()).unwrap();
        assert_eq!(c.auth.as_ref().unwrap().username, "api");
        let yaml2 = format!("{yaml}ctl:\n  authentication:\n    username: ctl\n    password: p2\n");
        let c = CtlConfig::from_yaml(&yaml2, &HashMap::new()).unwrap();
        assert_eq!(c.auth.as_ref().unwrap().username, "ctl");
        assert_eq!(c.auth.as_ref().unwrap().password, "p2");
    }

    #[test]
    fn environment_overrides() {
        let vars = env(&[
            ("PATRONI_SCOPE", "envscope"),
            ("PATRONI_NAMESPACE", "/ns/"),
            ("PATRONI_ETCD3_HOSTS", "['e1:2379', 'e2:2380']"),
            ("PATRONI_RESTAPI_USERNAME", "admin"),
            ("PATRONI_RESTAPI_PASSWORD", "secret"),
            ("PATRONI_NAME", "ignored"),
        ]);
        let c = CtlConfig::from_yaml(NODE_YAML, &vars).unwrap();
        assert_eq!(c.scope.as_deref(), Some("envscope"));
        assert_eq!(c.prefix("x"), "/ns/x/");
        assert_eq!(
            c.etcd3.endpoints(),
            vec!["http://e1:2379", "http://e2:2380"]
        );
        assert_eq!(
            c.auth,
            Some(BasicAuth {
                username: "admin".into(),
                password: "secret".into()
            })
        );
        let c = CtlConfig::from_yaml(
            "",
            &env(&[("PATRONI_ETCD3_HOST", "h1"), ("PATRONI_ETCD3_PORT", "2999")]),
        )
        .unwrap();
        assert_eq!(c.etcd3.endpoints(), vec!["http://h1:2999"]);
        let e = CtlConfig::from_yaml("", &env(&[("PATRONI_ETCD3_PORT", "x")])).unwrap_err();
        assert!(e.starts_with("PATRONI_ETCD3_PORT"), "{e}");
    }

    #[test]
    fn dcs_url_overrides_hosts_and_namespace() {
        let mut c = CtlConfig::from_yaml(NODE_YAML, &HashMap::new()).unwrap();
        c.apply_dcs_url("etcd3://10.1.1.1:2390").unwrap();
        assert_eq!(c.etcd3.endpoints(), vec!["http://10.1.1.1:2390"]);
        assert_eq!(c.namespace, "/service/");
        c.apply_dcs_url("etcd3://h/custom").unwrap();
        assert_eq!(c.etcd3.endpoints(), vec!["http://h:2379"]);
        assert_eq!(c.prefix("demo"), "/custom/demo/");
        c.apply_dcs_url("myhost:2400").unwrap();
        assert_eq!(c.etcd3.endpoints(), vec!["http://myhost:2400"]);
        c.apply_dcs_url("etcd3://:2401").unwrap();
        assert_eq!(c.etcd3.endpoints(), vec!["http://localhost:2401"]);
        c.apply_dcs_url("etcd3://[::1]:2402").unwrap();
        assert_eq!(c.etcd3.endpoints(), vec!["http://[::1]:2402"]);
        assert!(c.apply_dcs_url("consul://h:8500").is_err());
        assert!(c.apply_dcs_url("etcd3://h:port").is_err());
    }

    #[test]
    fn other_dcs_is_explained() {
        let c = CtlConfig::from_yaml("consul:\n  host: x\n", &HashMap::new()).unwrap();
        let e = c.check_etcd().unwrap_err();
        assert!(e.message.contains("consul"), "{e}");
    }

    #[test]
    fn missing_files() {
        let p = Path::new("/nonexistent/agentctl.yaml");
        let e = CtlConfig::load(Some(p), true, None, &HashMap::new()).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("-c/--config-file"), "{e}");
        // the default location may be missing
        let c = CtlConfig::load(Some(p), false, Some("etcd3://h:1"), &HashMap::new()).unwrap();
        assert_eq!(c.etcd3.endpoints(), vec!["http://h:1"]);
        assert_eq!(
            default_config_path(&env(&[("HOME", "/home/u")])),
            Some(PathBuf::from("/home/u/.config/patroni/patronictl.yaml"))
        );
        assert_eq!(
            default_config_path(&env(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/x")])),
            Some(PathBuf::from("/x/patroni/patronictl.yaml"))
        );
    }
}
