//! TLS for the tests: throw-away CAs issuing certificates for `127.0.0.1` /
//! `localhost` (usable as server and as client certificates), made with the
//! `openssl` CLI at test time; HTTPS clients that trust such a CA.
//!
//! Rule: nothing is stored in the repository; every test makes its own CA in its
//! own directory, and the key files are readable only by their owner (the agent
//! runs as `postgres`, so they are given to `postgres`).

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::bins::require;
use crate::dirs::make_shared_dir;
use crate::proc::chown_to_postgres;

/// Make `ring` rustls' default provider (reqwest is built without one) and
/// return a client builder. Every HTTP client of the tests starts here.
pub fn http_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// An HTTPS client trusting the CA file `ca`, presenting `client` (certificate,
/// key) when given, connecting from `local` when given.
pub fn https_client(
    ca: &Path,
    client: Option<(&Path, &Path)>,
    local: Option<IpAddr>,
    timeout: Duration,
) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots
            .add(cert.expect("CA certificate"))
            .expect("CA into the store");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .expect("client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert");
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let mut b = http_builder()
        .tls_backend_preconfigured(cfg)
        .tls_info(true)
        .no_proxy()
        .timeout(timeout);
    if let Some(ip) = local {
        b = b.local_address(ip);
    }
    b.build().expect("HTTPS client")
}

/// A certificate and its private key (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPair {
    /// The (first) certificate in DER, as the file holds it now.
    pub fn der(&self) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(&self.cert)
            .unwrap_or_else(|e| panic!("certificate {}: {e}", self.cert.display()))
            .to_vec()
    }
}

/// A test CA in `<dir>/<name>/`: `ca.crt` signs what [`TestCa::issue`] makes.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    ca: CertPair,
}

fn openssl_in(args: &[&str], cwd: &Path) {
    let bin = require("openssl", "openssl");
    let out = Command::new(&bin)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` in `dir`: a new P-256 key (unencrypted) into `key` and, for
/// `subject`, a request or (`-x509` in `extra`) a self-signed certificate into `out`.
fn new_key(dir: &Path, (key, out): (&str, &str), subject: &str, extra: &[&str]) {
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        out,
        "-subj",
        subject,
    ];
    args.extend(extra);
    openssl_in(&args, dir);
}

/// Give `pair` to `postgres`: the key readable by its owner only, the
/// certificate by everyone.
fn hand_over(pair: &CertPair) {
    for (path, mode) in [(&pair.key, 0o600), (&pair.cert, 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
        chown_to_postgres(path);
    }
}

impl TestCa {
    /// A new CA called `name` under `dir` (created readable by `postgres`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let dir = dir.join(name);
        make_shared_dir(&dir);
        let subject = format!("/CN={name}");
        new_key(
            &dir,
            ("ca.key", "ca.crt"),
            &subject,
            &[
                "-x509",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let ca = CertPair {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        hand_over(&ca);
        TestCa { dir, ca }
    }

    /// The CA certificate (what clients and servers trust).
    pub fn cert(&self) -> &Path {
        &self.ca.cert
    }

    /// A certificate for `cn`, valid for 127.0.0.1 and localhost, usable as server
    /// and as client certificate (a client certificate's CN is the user name etcd
    /// and postgres see). Issuing for the same `cn` again replaces the files
    /// with a new key and certificate (a renewal).
    pub fn issue(&self, cn: &str) -> CertPair {
        let base = cn.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let key = format!("{base}.key");
        let csr = format!("{base}.csr");
        let crt = format!("{base}.crt");
        let ext = format!("{base}.ext");
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             extendedKeyUsage=serverAuth,clientAuth\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n",
        )
        .unwrap_or_else(|e| panic!("cannot write {ext}: {e}"));
        let subject = format!("/CN={cn}");
        new_key(&self.dir, (&key, &csr), &subject, &["-new"]);
        openssl_in(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &ext,
            ],
            &self.dir,
        );
        let pair = CertPair {
            cert: self.dir.join(crt),
            key: self.dir.join(key),
        };
        hand_over(&pair);
        pair
    }

    /// An HTTPS client trusting this CA, presenting `client` when given,
    /// connecting from `local` when given (20 s timeout).
    pub fn client(&self, client: Option<&CertPair>, local: Option<IpAddr>) -> reqwest::Client {
        let client = client.map(|p| (p.cert.as_path(), p.key.as_path()));
        https_client(self.cert(), client, local, Duration::from_secs(20))
    }
}
