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
use rustls::client::danger::ServerCertVerifier;
use rustls::ClientConfig;
use tokio_postgres::config::{ChannelBinding, Host, SslMode};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Credentials;
use crate::tls::{self, ServerVerifier};

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

/// The rustls client settings for `creds` (read from the files named in it).
pub fn client_config(creds: &Credentials) -> Result<ClientConfig> {
    let provider = Arc::new(tls::provider());
    let mode = creds.sslmode.as_deref().unwrap_or("prefer");
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        "verify-ca" | "verify-full" => {
            let path = creds
                .sslrootcert
                .as_deref()
                .context("sslrootcert: required with sslmode verify-ca or verify-full")?;
            let roots = tls::load_roots(Path::new(path), "sslrootcert")?;
            ServerVerifier::chain(roots, mode == "verify-full", provider.clone())
                .with_context(|| format!("sslrootcert: {path}"))?
        }
        _ => ServerVerifier::any(provider.clone()),
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
            let certs = tls::load_certs(Path::new(cert), "sslcert")?;
            let key = tls::load_key(Path::new(key), "sslkey", "sslpassword", None)?;
            builder
                .with_client_auth_cert(certs, key)
                .context("sslcert/sslkey")?
        }
        _ => builder.with_no_client_auth(),
    })
}
