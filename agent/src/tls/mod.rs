//! TLS with rustls and its `ring` provider: the REST API's server side
//! ([`server`]), the client side used for requests to members' REST APIs by
//! the agent (peers) and agentctl ([`client`]), and the server-certificate
//! checks of every client, postgres connections included ([`verify`]).
//!
//! Rule: fail closed. A certificate, key or CA file that cannot be read or used,
//! an encrypted key, a cipher list that selects nothing: each is an error naming
//! the configuration key, never a silent fallback to plain HTTP or to no
//! verification.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

mod ciphers;
pub mod client;
pub mod server;
pub mod verify;

pub use ciphers::select_suites;
pub use verify::ServerVerifier;

/// An error about one configuration key (`restapi.certfile: ...`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TlsError {
    pub key: String,
    pub message: String,
}

impl TlsError {
    pub fn new(key: &str, message: impl Into<String>) -> TlsError {
        TlsError {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// The `ring` provider with all its cipher suites.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Make `ring` the process-wide default provider (reqwest needs one to build any
/// client, plain HTTP included). Idempotent.
pub fn install_default_provider() {
    let _ = provider().install_default();
}

/// A `reqwest` client builder with the default provider installed.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_default_provider();
    reqwest::Client::builder()
}

/// Every certificate in the PEM file `path` (at least one).
pub fn load_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError::new(
                key,
                format!("{}: not PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(TlsError::new(
            key,
            format!(
                "{}: no certificate (BEGIN CERTIFICATE) in the file",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The private key in the PEM file `path`. Encrypted keys are refused: no
/// pure-Rust decryption is linked, and a key we cannot use must stop the start.
pub fn load_key(
    path: &Path,
    key: &str,
    password_key: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, key)?;
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        let why = if password.is_some() {
            format!(
                "{password_key} is set, but encrypted private keys are not supported by this build"
            )
        } else {
            format!("the key is encrypted and {password_key} is not set (encrypted keys are not supported by this build)")
        };
        return Err(TlsError::new(
            key,
            format!(
                "{}: {why}; store the key unencrypted, readable only by the agent's user \
                 (openssl pkey -in KEY -out KEY.plain; chmod 600 KEY.plain)",
                path.display()
            ),
        ));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        TlsError::new(
            key,
            format!(
                "{}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
                path.display()
            ),
        )
    })
}

/// A root store with every certificate of the CA bundle `path`.
pub fn load_roots(path: &Path, key: &str) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path, key)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::new(key, format!("{}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path)
        .map_err(|e| TlsError::new(key, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::server::{ServerSettings, VerifyClient};
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("agent-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn encrypted_keys_are_refused_naming_the_key() {
        let enc = temp(
            "enc.key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let e = load_key(
            &enc,
            "restapi.keyfile",
            "restapi.keyfile_password",
            Some("pw"),
        )
        .unwrap_err();
        assert_eq!(e.key, "restapi.keyfile");
        assert!(
            e.message.contains(
                "restapi.keyfile_password is set, but encrypted private keys are not supported"
            ),
            "{e}"
        );
        let e = load_key(&enc, "restapi.keyfile", "restapi.keyfile_password", None).unwrap_err();
        assert!(e.message.contains("is not set"), "{e}");
        let legacy = temp(
            "legacy.key",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        );
        assert!(load_key(&legacy, "ctl.keyfile", "ctl.keyfile_password", None).is_err());
    }

    #[test]
    fn unusable_files_name_their_key() {
        let settings = ServerSettings {
            certfile: "/nonexistent/server.crt".into(),
            keyfile: None,
            keyfile_password: None,
            cafile: None,
            ciphers: None,
            verify_client: VerifyClient::None,
        };
        assert_eq!(settings.build().unwrap_err().key, "restapi.certfile");
        let not_pem = temp("not.pem", "hello\n");
        let e = load_certs(&not_pem, "restapi.cafile").unwrap_err();
        assert_eq!(e.key, "restapi.cafile");
        assert!(e.message.contains("no certificate"), "{e}");
        let e = load_key(
            &not_pem,
            "restapi.keyfile",
            "restapi.keyfile_password",
            None,
        )
        .unwrap_err();
        assert_eq!(e.key, "restapi.keyfile");
        let bad_ciphers = ServerSettings {
            ciphers: Some("RC4-MD5".into()),
            ..settings
        };
        assert_eq!(bad_ciphers.build().unwrap_err().key, "restapi.ciphers");
    }
}
