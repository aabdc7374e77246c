//! TLS for the agent's own connections to postgres (tokio-postgres with rustls),
//! with libpq's meaning of a user's `sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
//! `channel_binding` (Patroni's `postgresql.authentication.<user>.*`).
//!
//! Rule: as libpq does: `disable` never encrypts; `allow`/`prefer` encrypt when the
//! server offers it; `require` insists on TLS without checking the certificate;
//! `verify-ca` checks the chain against `sslrootcert`; `verify-full` also the host
//! name. A unix socket never uses TLS (libpq ignores `sslmode` there too). What we
//! cannot honour (`gssencmode: require`: no GSSAPI here) is an error, not a silent
//! downgrade.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::{ChannelBinding, Host, SslMode};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Credentials;

/// Connect with `creds`' TLS settings; the connection runs in a spawned task whose
/// handle is returned (abort or await it after dropping the client).
pub async fn connect(
    conn: &tokio_postgres::Config,
    creds: &Credentials,
) -> Result<(Client, tokio::task::JoinHandle<()>)> {
    let mut conn = conn.clone();
    let unix = conn.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
    if creds.gssencmode.as_deref() == Some("require") && !unix {
        bail!("gssencmode: require cannot be honoured by the agent's own connections (no GSSAPI)");
    }
    let mode = creds.sslmode.as_deref().unwrap_or("prefer");
    conn.ssl_mode(match mode {
        _ if unix => SslMode::Disable,
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        _ => SslMode::Require,
    });
    conn.channel_binding(match creds.channel_binding.as_deref() {
        Some("disable") => ChannelBinding::Disable,
        Some("require") => ChannelBinding::Require,
        _ => ChannelBinding::Prefer,
    });
    let tls = MakeRustlsConnect::new(client_config(creds)?);
    let (client, connection) = conn.connect(tls).await?;
    let handle = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, handle))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client settings for `creds` (read from the files named in it).
pub fn client_config(creds: &Credentials) -> Result<ClientConfig> {
    let provider = provider();
    let mode = creds.sslmode.as_deref().unwrap_or("prefer");
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        "verify-ca" | "verify-full" => {
            let path = creds
                .sslrootcert
                .as_deref()
                .context("sslrootcert: required with sslmode verify-ca or verify-full")?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("sslrootcert: cannot read {path}"))?
            {
                let cert = cert.with_context(|| format!("sslrootcert: {path}"))?;
                roots
                    .add(cert)
                    .with_context(|| format!("sslrootcert: {path}"))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .with_context(|| format!("sslrootcert: {path}"))?;
            Arc::new(Verify {
                webpki: Some(webpki),
                check_name: mode == "verify-full",
                provider: provider.clone(),
            })
        }
        _ => Arc::new(Verify {
            webpki: None,
            check_name: false,
            provider: provider.clone(),
        }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cert = creds.sslcert.as_deref().filter(|s| !s.is_empty());
    let key = creds.sslkey.as_deref().filter(|s| !s.is_empty());
    Ok(match (cert, key) {
        (Some(cert), Some(key)) if Path::new(cert).exists() => {
            let certs = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("sslcert: cannot read {cert}"))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("sslcert: {cert}"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("sslkey: cannot read {key}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .context("sslcert/sslkey")?
        }
        _ => builder.with_no_client_auth(),
    })
}

/// libpq's certificate checks: none below `verify-ca`; the chain against
/// `sslrootcert` for `verify-ca`; chain and host name for `verify-full`.
/// Handshake signatures are always verified.
#[derive(Debug)]
struct Verify {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the name after the chain: a name mismatch means the chain is good
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
