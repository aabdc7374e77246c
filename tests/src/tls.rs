//! A throw-away certificate authority for TLS tests, made with the `openssl` CLI.
//!
//! Rule: everything is generated at test time in the test's own directory (EC P-256
//! keys, valid two days); nothing is checked in. Keys are mode 0600 and owned by
//! `postgres` (postgres refuses a server key readable by others, and the agents run
//! as `postgres`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bins::require;
use crate::dirs::make_shared_dir;
use crate::proc::chown_to_postgres;

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

fn openssl(args: &[&str], cwd: &Path) {
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
        openssl(
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
        openssl(
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
        openssl(
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
