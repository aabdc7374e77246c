//! The client side: requests to members' REST APIs over HTTPS, by agentctl
//! (`ctl.*`, `-k`) and by the agent itself (its peers during a leader race).
//!
//! Patroni's rules (its `PatroniRequest`), kept here:
//! - trusted CAs: `ctl.cacert`, else `restapi.cafile`, else the system's;
//! - a client certificate `ctl.certfile` (+ `ctl.keyfile`, `ctl.keyfile_password`)
//!   is presented when set (needed against `verify_client: required`);
//! - insecure (`ctl.insecure`, `-k`; always for the agent's own requests): with a
//!   client certificate, the server's chain is still verified but not its host
//!   name; without one, the server's certificate is not verified at all.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::ClientConfig;
use serde_json::Value;

use super::{load_certs, load_key, load_roots, provider, ServerVerifier, TlsError};

/// How to reach members' REST APIs over HTTPS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSettings {
    pub cacert: Option<PathBuf>,
    /// The key `cacert` came from, for errors (`ctl.cacert` or `restapi.cafile`).
    pub cacert_key: &'static str,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<crate::config::Secret>,
    pub insecure: bool,
}

impl ClientSettings {
    /// From a configuration tree's `ctl` and `restapi` sections; `insecure`
    /// overrides `ctl.insecure` when given (`-k`, or `true` for the agent).
    pub fn from_tree(
        ctl: Option<&Value>,
        restapi: Option<&Value>,
        insecure: Option<bool>,
    ) -> Result<ClientSettings, TlsError> {
        let string =
            |section: Option<&Value>, sname: &str, key: &str| -> Result<Option<String>, TlsError> {
                match section.and_then(|s| s.get(key)) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.is_empty() => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(TlsError::new(
                        &format!("{sname}.{key}"),
                        "expected a string",
                    )),
                }
            };
        let path = |s: Option<String>| s.map(PathBuf::from);
        let (cacert, cacert_key) = match string(ctl, "ctl", "cacert")? {
            Some(c) => (Some(c), "ctl.cacert"),
            None => (string(restapi, "restapi", "cafile")?, "restapi.cafile"),
        };
        let ctl_insecure = match ctl.and_then(|c| c.get("insecure")) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" | "" => false,
                _ => {
                    return Err(TlsError::new(
                        "ctl.insecure",
                        format!("expected a boolean, got `{s}`"),
                    ))
                }
            },
            Some(_) => return Err(TlsError::new("ctl.insecure", "expected a boolean")),
        };
        Ok(ClientSettings {
            cacert: path(cacert),
            cacert_key,
            certfile: path(string(ctl, "ctl", "certfile")?),
            keyfile: path(string(ctl, "ctl", "keyfile")?),
            keyfile_password: string(ctl, "ctl", "keyfile_password")?.map(crate::config::Secret),
            insecure: insecure.unwrap_or(ctl_insecure),
        })
    }

    /// The rustls client configuration.
    pub fn build(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(provider());
        // The trusted CAs, read only when something will be verified.
        let roots = || -> Result<Arc<rustls::RootCertStore>, TlsError> {
            match &self.cacert {
                Some(path) => load_roots(path, self.cacert_key),
                None => {
                    let mut roots = rustls::RootCertStore::empty();
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                    Ok(Arc::new(roots))
                }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("ctl", e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure && self.certfile.is_none() {
            ServerVerifier::any(provider.clone())
        } else {
            // Insecure with a client certificate: the chain still, not the host name.
            ServerVerifier::chain(roots()?, !self.insecure, provider.clone()).map_err(|e| {
                TlsError::new("ctl.cacert", format!("no usable CA certificate: {e}"))
            })?
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut cfg = match &self.certfile {
            None => builder.with_no_client_auth(),
            Some(certfile) => {
                let certs = load_certs(certfile, "ctl.certfile")?;
                let (key_path, key_name) = match &self.keyfile {
                    Some(k) => (k, "ctl.keyfile"),
                    None => (certfile, "ctl.certfile"),
                };
                let key = load_key(
                    key_path,
                    key_name,
                    "ctl.keyfile_password",
                    self.keyfile_password.as_ref().map(|p| p.expose()),
                )?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    TlsError::new(key_name, format!("does not go with ctl.certfile: {e}"))
                })?
            }
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// A `reqwest` client builder that speaks HTTPS with these settings (and
    /// plain HTTP to `http://` URLs).
    pub fn http_client_builder(&self) -> Result<reqwest::ClientBuilder, TlsError> {
        let cfg = self.build()?;
        Ok(super::http_client_builder().tls_backend_preconfigured(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patroni_precedence() {
        let s = ClientSettings::from_tree(
            Some(&json!({"certfile": "/c.pem", "insecure": true})),
            Some(&json!({"cafile": "/ca.pem"})),
            None,
        )
        .unwrap();
        assert_eq!(s.cacert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.cacert_key, "restapi.cafile");
        assert!(s.insecure);
        let s = ClientSettings::from_tree(
            Some(&json!({"cacert": "/ctl-ca.pem", "insecure": "no"})),
            Some(&json!({"cafile": "/ca.pem"})),
            Some(true),
        )
        .unwrap();
        assert_eq!(s.cacert, Some(PathBuf::from("/ctl-ca.pem")));
        assert!(s.insecure, "-k wins");
        let e = ClientSettings::from_tree(Some(&json!({"certfile": 3})), None, None).unwrap_err();
        assert_eq!(e.to_string(), "ctl.certfile: expected a string");
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_the_key() {
        let s = ClientSettings {
            cacert: Some("/nonexistent/ca.pem".into()),
            cacert_key: "ctl.cacert",
            ..Default::default()
        };
        let e = s.build().unwrap_err();
        assert_eq!(e.key, "ctl.cacert");
    }
}
