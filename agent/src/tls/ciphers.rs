//! `restapi.ciphers`: an OpenSSL cipher list narrowed to what rustls offers.
//!
//! As with OpenSSL (and Python's `set_ciphers`), the list governs TLS 1.2 only;
//! TLS 1.3 suites are always on. Tokens are suite names (OpenSSL's or IANA's),
//! keywords (`HIGH`, `ECDHE`, `AESGCM`, `CHACHA20`, `AES256`, `aRSA`, ...) and
//! `A+B` combinations; `!X` and `-X` remove suites. A name this build does not
//! have (e.g. `DHE-RSA-AES256-GCM-SHA384`) selects nothing, as OpenSSL skips an
//! unknown name; a list that selects no TLS 1.2 suite at all is an error.
//!
//! Rule: pure.

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, SupportedCipherSuite};

/// The cipher part of TLS 1.2 suites: the tail of OpenSSL's suite name and its
/// keyword tags.
struct Cipher {
    name: &'static str,
    tags: &'static [&'static str],
}

const AES256GCM: Cipher = Cipher {
    name: "AES256-GCM-SHA384",
    tags: &["AES", "AES256", "AESGCM", "SHA384"],
};
const AES128GCM: Cipher = Cipher {
    name: "AES128-GCM-SHA256",
    tags: &["AES", "AES128", "AESGCM", "SHA256"],
};
const CHACHA20: Cipher = Cipher {
    name: "CHACHA20-POLY1305",
    tags: &["CHACHA20", "SHA256"],
};

/// A TLS 1.2 suite: ECDHE key exchange, `auth` authentication (`ECDSA` or
/// `RSA`, tags `X` and `aX`), `cipher`.
struct Suite {
    suite: CipherSuite,
    auth: &'static str,
    cipher: Cipher,
}

const fn ecdhe(suite: CipherSuite, auth: &'static str, cipher: Cipher) -> Suite {
    Suite {
        suite,
        auth,
        cipher,
    }
}

/// Each TLS 1.2 suite rustls' `ring` provider has.
#[rustfmt::skip]
const TLS12: &[Suite] = &[
    ecdhe(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDSA", AES256GCM),
    ecdhe(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDSA", AES128GCM),
    ecdhe(CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDSA", CHACHA20),
    ecdhe(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "RSA", AES256GCM),
    ecdhe(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "RSA", AES128GCM),
    ecdhe(CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "RSA", CHACHA20),
];

impl Suite {
    /// OpenSSL's name.
    fn openssl_name(&self) -> String {
        format!("ECDHE-{}-{}", self.auth, self.cipher.name)
    }

    /// Whether the cipher-list token `token` (without its `!`/`-`/`+`) selects this suite.
    fn matches(&self, token: &str) -> bool {
        let name = self.openssl_name();
        let one = |t: &str| {
            t.eq_ignore_ascii_case(&name)
                || self
                    .suite
                    .as_str()
                    .is_some_and(|iana| t.eq_ignore_ascii_case(iana))
                || t == self.auth
                || t.strip_prefix('a') == Some(self.auth)
                || self.cipher.tags.contains(&t)
                || COMMON.contains(&t)
        };
        token.split('+').all(one)
    }
}

/// Keywords every suite above has.
const COMMON: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDH", "TLSv1.2", "AEAD",
    "FIPS",
];

/// The suites `provider` should offer under the cipher list `list`: all of its
/// TLS 1.3 suites and the TLS 1.2 suites the list selects. `Err` says why
/// nothing was selected.
pub fn select_suites(
    provider: &CryptoProvider,
    list: &str,
) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut chosen: Vec<CipherSuite> = Vec::new();
    let mut banned: Vec<CipherSuite> = Vec::new();
    for token in list
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if token.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n: ordering and levels, nothing to select
        }
        let (kind, body) = match token.as_bytes()[0] {
            b'!' => ('!', &token[1..]),
            b'-' => ('-', &token[1..]),
            b'+' => ('+', &token[1..]),
            _ => (' ', token),
        };
        for Suite { suite, .. } in TLS12.iter().filter(|s| s.matches(body)) {
            match kind {
                '!' => {
                    banned.push(*suite);
                    chosen.retain(|s| s != suite);
                }
                '-' => chosen.retain(|s| s != suite),
                '+' => {}
                _ => {
                    if !banned.contains(suite) && !chosen.contains(suite) {
                        chosen.push(*suite);
                    }
                }
            }
        }
    }
    if chosen.is_empty() {
        let have: Vec<String> = TLS12.iter().map(Suite::openssl_name).collect();
        return Err(format!(
            "`{list}` selects none of the TLS 1.2 cipher suites this build supports ({})",
            have.join(", ")
        ));
    }
    Ok(provider
        .cipher_suites
        .iter()
        .filter(|s| match s {
            SupportedCipherSuite::Tls13(_) => true,
            SupportedCipherSuite::Tls12(_) => chosen.contains(&s.suite()),
        })
        .copied()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Result<Vec<String>, String> {
        select_suites(&crate::tls::provider(), list).map(|v| {
            v.iter()
                .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
                .map(|s| format!("{:?}", s.suite()))
                .collect()
        })
    }

    #[test]
    fn patroni_documented_list_keeps_the_ecdhe_suites() {
        let got = names("ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:!SSLv1:!SSLv2:!SSLv3:!TLSv1:!TLSv1.1").unwrap();
        assert_eq!(
            got,
            vec![
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        let tls13 = select_suites(&crate::tls::provider(), "ECDHE-RSA-AES256-GCM-SHA384")
            .unwrap()
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .count();
        assert_eq!(tls13, 3, "TLS 1.3 suites are not governed by the list");
    }

    #[test]
    fn keywords_and_exclusions() {
        assert_eq!(names("HIGH:!CHACHA20:!aECDSA").unwrap().len(), 2);
        assert_eq!(names("ECDHE+AESGCM").unwrap().len(), 4);
        assert_eq!(
            names("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256").unwrap(),
            vec!["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]
        );
        assert!(names("!HIGH:HIGH").is_err(), "a banned suite stays banned");
        assert!(names("RC4-MD5").is_err());
    }

    #[test]
    fn nothing_selected_is_an_error() {
        let e = names("DHE-RSA-AES256-GCM-SHA384:AES256-SHA").unwrap_err();
        assert!(e.contains("selects none"), "{e}");
        assert!(names("").is_err());
    }
}
