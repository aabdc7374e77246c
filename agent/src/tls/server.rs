//! The REST API's TLS server configuration, built from `restapi.*` and rebuilt
//! from the files on `POST /reload` and SIGHUP, so a renewed certificate is used
//! by the next connection without a restart.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::{load_certs, load_key, load_roots, provider, select_suites, TlsError};
use crate::config::RestApiConfig;

/// `restapi.verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyClient {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client certificate is asked for; unsafe methods need one.
    Optional,
    /// Every connection must present a valid client certificate.
    Required,
}

/// The TLS part of `restapi`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub certfile: PathBuf,
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<crate::config::Secret>,
    pub cafile: Option<PathBuf>,
    pub ciphers: Option<String>,
    pub verify_client: VerifyClient,
}

impl ServerSettings {
    /// `None` when `restapi.certfile` is not set (plain HTTP).
    pub fn from_config(r: &RestApiConfig) -> Option<ServerSettings> {
        Some(ServerSettings {
            certfile: r.certfile.clone()?,
            keyfile: r.keyfile.clone(),
            keyfile_password: r.keyfile_password.clone(),
            cafile: r.cafile.clone(),
            ciphers: r.ciphers.clone(),
            verify_client: verify_client(r),
        })
    }

    /// Read the files and build the rustls configuration.
    pub fn build(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut provider = provider();
        if let Some(list) = &self.ciphers {
            provider.cipher_suites =
                select_suites(&provider, list).map_err(|m| TlsError::new("restapi.ciphers", m))?;
        }
        let provider = Arc::new(provider);
        let certs = load_certs(&self.certfile, "restapi.certfile")?;
        let (key_path, key_name) = match &self.keyfile {
            Some(k) => (k, "restapi.keyfile"),
            None => (&self.certfile, "restapi.certfile"),
        };
        let key = load_key(
            key_path,
            key_name,
            "restapi.keyfile_password",
            self.keyfile_password.as_ref().map(|p| p.expose()),
        )?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("restapi.ciphers", e.to_string()))?;
        let builder = match self.verify_client {
            VerifyClient::None => builder.with_no_client_auth(),
            mode => {
                let cafile = self.cafile.as_ref().ok_or_else(|| {
                    TlsError::new("restapi.cafile", "required when verify_client is set")
                })?;
                let roots = load_roots(cafile, "restapi.cafile")?;
                let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let v = if mode == VerifyClient::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(
                    v.build()
                        .map_err(|e| TlsError::new("restapi.cafile", e.to_string()))?,
                )
            }
        };
        let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
            TlsError::new(key_name, format!("does not go with restapi.certfile: {e}"))
        })?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// `restapi.verify_client` as validated (`none` when unset).
pub fn verify_client(r: &RestApiConfig) -> VerifyClient {
    match r.verify_client.as_deref() {
        Some("optional") => VerifyClient::Optional,
        Some("required") => VerifyClient::Required,
        _ => VerifyClient::None,
    }
}

/// The server configuration new connections get; replaced on reload.
pub struct ServerTls {
    settings: RwLock<ServerSettings>,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Build from `settings`; an error stops the start.
    pub fn new(settings: ServerSettings) -> Result<ServerTls, TlsError> {
        let cfg = settings.build()?;
        Ok(ServerTls {
            settings: RwLock::new(settings),
            current: RwLock::new(cfg),
        })
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-read the files (with `settings` when given: paths changed in the
    /// config file). On error the current configuration stays and the error is
    /// returned for the log.
    pub fn reload(&self, settings: Option<ServerSettings>) -> Result<(), TlsError> {
        let s = match settings {
            Some(s) => s,
            None => self
                .settings
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        };
        let cfg = s.build()?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = cfg;
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
        Ok(())
    }

    pub fn verify_client(&self) -> VerifyClient {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .verify_client
    }
}
