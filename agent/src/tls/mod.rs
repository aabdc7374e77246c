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

/// The private key in the PEM file `path`. An encrypted PKCS#8 key (`BEGIN
/// ENCRYPTED PRIVATE KEY`, what `openssl genpkey -aes256` and `openssl pkcs8
/// -topk8` write) is decrypted with `password` (PBES2: PBKDF2 or scrypt with
/// AES-CBC); a legacy OpenSSL-encrypted PEM (`Proc-Type: 4,ENCRYPTED`), a
/// missing or wrong password is an error naming the key: a key we cannot use
/// stops the start.
pub fn load_key(
    path: &Path,
    key: &str,
    password_key: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, key)?;
    let text = String::from_utf8_lossy(&bytes);
    let fail = |why: String| TlsError::new(key, format!("{}: {why}", path.display()));
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(fail(format!(
            "a legacy OpenSSL-encrypted key cannot be read; convert it to encrypted PKCS#8 \
             (openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.p8) and set {password_key}"
        )));
    }
    if text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        let Some(password) = password else {
            return Err(fail(format!(
                "the key is encrypted and {password_key} is not set"
            )));
        };
        return decrypt_pkcs8(&text, password)
            .map_err(|e| fail(format!("cannot decrypt the key with {password_key}: {e}")));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        fail(format!(
            "no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"
        ))
    })
}

/// Decrypt a PEM `ENCRYPTED PRIVATE KEY` into a PKCS#8 key.
fn decrypt_pkcs8(pem: &str, password: &str) -> Result<PrivateKeyDer<'static>, String> {
    use pkcs8::der::Decode;
    let (label, der) = pkcs8::Document::from_pem(pem.trim()).map_err(|e| e.to_string())?;
    if label != "ENCRYPTED PRIVATE KEY" {
        return Err(format!("unexpected PEM block {label}"));
    }
    let info =
        pkcs8::EncryptedPrivateKeyInfo::from_der(der.as_bytes()).map_err(|e| e.to_string())?;
    let plain = info
        .decrypt(password)
        .map_err(|e| format!("{e} (wrong password?)"))?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
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
    fn encrypted_keys_need_their_password() {
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
            e.message
                .contains("cannot decrypt the key with restapi.keyfile_password"),
            "{e}"
        );
        let e = load_key(&enc, "restapi.keyfile", "restapi.keyfile_password", None).unwrap_err();
        assert!(e.message.contains("is not set"), "{e}");
        let legacy = temp(
            "legacy.key",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        );
        let e = load_key(&legacy, "ctl.keyfile", "ctl.keyfile_password", None).unwrap_err();
        assert!(e.message.contains("legacy OpenSSL-encrypted"), "{e}");
    }

    /// A real key, encrypted by `openssl pkcs8 -topk8 -v2 aes-256-cbc` (PBKDF2-SHA256):
    /// the right password gives the same key as the plain file, a wrong one an error.
    #[test]
    fn encrypted_pkcs8_keys_are_decrypted() {
        let Ok(out) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            panic!("this test needs the openssl CLI (Debian package openssl)");
        };
        assert!(out.status.success());
        let dir = std::env::temp_dir().join(format!("agent-tls-enc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plain = dir.join("plain.key");
        let enc = dir.join("enc.key");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let p = |x: &std::path::Path| x.to_string_lossy().into_owned();
        run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &p(&plain),
        ]);
        run(&[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            &p(&plain),
            "-out",
            &p(&enc),
            "-passout",
            "pass:s3cret",
        ]);
        let want = load_key(&plain, "restapi.keyfile", "restapi.keyfile_password", None).unwrap();
        let got = load_key(
            &enc,
            "restapi.keyfile",
            "restapi.keyfile_password",
            Some("s3cret"),
        )
        .unwrap();
        assert_eq!(got.secret_der(), want.secret_der());
        let e = load_key(
            &enc,
            "restapi.keyfile",
            "restapi.keyfile_password",
            Some("nope"),
        )
        .unwrap_err();
        assert!(e.message.contains("wrong password"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
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
