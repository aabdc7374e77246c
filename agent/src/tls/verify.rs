//! How our TLS clients check a server's certificate, at one of three levels:
//! not at all, the chain against trusted CAs, or the chain and the host name.
//! Used for members' REST APIs ([`super::client`]) and for the agent's own
//! connections to postgres (libpq's `require`, `verify-ca`, `verify-full`).
//!
//! Rule: the handshake signatures are verified at every level; only the
//! certificate checks are relaxed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// A server-certificate verifier (see the module header).
#[derive(Debug)]
pub struct ServerVerifier {
    /// The chain check; `None`: any certificate is accepted.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// With a chain check: also check the host name.
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerVerifier {
    /// Accepts any server certificate.
    pub fn any(provider: Arc<CryptoProvider>) -> Arc<ServerVerifier> {
        Arc::new(ServerVerifier {
            webpki: None,
            check_name: false,
            provider,
        })
    }

    /// Checks the chain against `roots`, and the host name when `check_name`.
    pub fn chain(
        roots: Arc<RootCertStore>,
        check_name: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<ServerVerifier>, VerifierBuilderError> {
        let webpki =
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
        Ok(Arc::new(ServerVerifier {
            webpki: Some(webpki),
            check_name,
            provider,
        }))
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the name after the chain: a name mismatch means the chain is good
            Err(Error::InvalidCertificate(
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
    ) -> Result<HandshakeSignatureValid, Error> {
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
    ) -> Result<HandshakeSignatureValid, Error> {
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
