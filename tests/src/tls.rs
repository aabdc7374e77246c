//! TLS for the tests: a throw-away CA with a server certificate (SAN
//! `127.0.0.1`, `localhost`) and a client certificate, made with the `openssl`
//! CLI at test time; HTTPS clients that trust that CA.
//!
//! Rule: nothing is stored in the repository; every test makes its own CA in its
//! own directory, and the key files are readable only by their owner (the agent
//! runs as `postgres`, so they are given to `postgres`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::bins::require;
use crate::dirs::make_shared_dir;
use crate::proc::chown_to_postgres;
use std::os::unix::fs::PermissionsExt;

/// Make `ring` rustls' default provider (reqwest is built without one) and
/// return a client builder. Every HTTP client of the tests starts here.
pub fn http_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A CA, a server certificate and a client certificate in one directory.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCerts {
    /// Create the CA and both certificates in `dir` (which must exist).
    pub fn create(dir: &Path) -> TestCerts {
        require("openssl", "openssl");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=agent-tests-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let certs = TestCerts {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        certs.issue(
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        certs.issue(
            "client",
            "agent-tests-client",
            "extendedKeyUsage=clientAuth\n",
        );
        for f in [
            &certs.ca,
            &certs.server_cert,
            &certs.client_cert,
            &certs.server_key,
            &certs.client_key,
        ] {
            chown_to_postgres(f);
        }
        certs
    }

    /// A new key and certificate for `name` (`server` or `client`), signed by the CA.
    pub fn issue(&self, name: &str, cn: &str, ext: &str) {
        let ext_file = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext_file, ext).expect("write ext file");
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
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
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
        chown_to_postgres(&self.dir.join(&key));
        chown_to_postgres(&self.dir.join(&crt));
    }

    /// Replace the server certificate and key with new ones (a renewal).
    pub fn renew_server(&self) {
        self.issue(
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
    }

    /// The server certificate (DER) as the file holds it now.
    pub fn server_cert_der(&self) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(&self.server_cert)
            .expect("server certificate")
            .to_vec()
    }

    /// An HTTPS client trusting the CA; with the client certificate when
    /// `client_cert`; from source address `local` when given.
    pub fn client(&self, client_cert: bool, local: Option<IpAddr>) -> reqwest::Client {
        let client = client_cert.then_some((self.client_cert.as_path(), self.client_key.as_path()));
        https_client(&self.ca, client, local, Duration::from_secs(20))
    }
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

fn private(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
    chown_to_postgres(path);
}

fn public(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
    chown_to_postgres(path);
}

impl TestCa {
    /// A new CA called `name` under `dir` (created readable by `postgres`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let dir = dir.join(name);
        make_shared_dir(&dir);
        let subject = format!("/CN={name}");
        openssl_in(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            &dir,
        );
        let ca = CertPair {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        private(&ca.key);
        public(&ca.cert);
        TestCa { dir, ca }
    }

    /// The CA certificate (what clients and servers trust).
    pub fn cert(&self) -> &Path {
        &self.ca.cert
    }

    /// A certificate for `cn`, valid for 127.0.0.1 and localhost, usable as server
    /// and as client certificate (a client certificate's CN is the user name etcd
    /// and postgres see).
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
        openssl_in(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
            &self.dir,
        );
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
        private(&pair.key);
        public(&pair.cert);
        pair
    }
}
