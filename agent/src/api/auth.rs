//! Who may call the unsafe methods (`POST`, `PUT`, `PATCH`, `DELETE`), checked in
//! Patroni's order:
//!
//! 1. the source address must be in `restapi.allowlist` or, with
//!    `allowlist_include_members`, be a member's address (else 403);
//! 2. with `verify_client: optional|required`, the connection must have
//!    presented a client certificate the CA file verifies (else 403; with
//!    `required` the TLS handshake already refused it);
//! 3. with `restapi.authentication`, Basic auth must match (else 401), compared
//!    in constant time.
//!
//! Read-only methods stay open, so health checks never need credentials.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::allowlist::{self, Net};
use super::ApiState;
use crate::config::{BasicAuth, RestApiConfig};
use crate::tls::server::{verify_client, VerifyClient};

/// What the server knows about a connection; every request carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// A client certificate was presented and verified against `restapi.cafile`.
    pub client_cert: bool,
}

/// The access rules of the unsafe methods (rebuilt on reload).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub auth: Option<BasicAuth>,
    /// `None`: no allowlist configured.
    pub allowlist: Option<Vec<Net>>,
    pub include_members: bool,
    pub verify_client: VerifyClient,
}

impl Policy {
    /// From `restapi`, plus a warning per allowlist entry that cannot be used.
    pub fn from_config(r: &RestApiConfig) -> (Policy, Vec<String>) {
        let (allowlist, warnings) = match r.allowlist.as_deref() {
            Some(entries) if !entries.is_empty() => {
                let (nets, w) = allowlist::build(entries);
                (Some(nets), w)
            }
            _ => (None, Vec::new()),
        };
        let verify = if r.certfile.is_some() {
            verify_client(r)
        } else {
            VerifyClient::None
        };
        (
            Policy {
                auth: r.authentication.clone(),
                allowlist,
                include_members: r.allowlist_include_members == Some(true),
                verify_client: verify,
            },
            warnings,
        )
    }
}

/// The current policy, shared by the server and replaced on reload.
#[derive(Debug, Default)]
pub struct Access(RwLock<Arc<Policy>>);

impl Access {
    pub fn new(p: Policy) -> Access {
        Access(RwLock::new(Arc::new(p)))
    }

    pub fn get(&self) -> Arc<Policy> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, p: Policy) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub(super) async fn auth_layer(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let unsafe_method = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !unsafe_method {
        return next.run(req).await;
    }
    let policy = state.access.get();
    let conn = req.extensions().get::<ConnInfo>().copied();
    if policy.allowlist.is_some() || policy.include_members {
        // No connection info (a request not from the socket): nothing to check
        // the address against, so refuse.
        let allowed = match conn.map(|c| c.peer.ip().to_canonical()) {
            None => false,
            Some(ip) => {
                policy.allowlist.iter().flatten().any(|n| n.contains(ip))
                    || (policy.include_members && is_member(&state, ip).await)
            }
        };
        if !allowed {
            return refuse(StatusCode::FORBIDDEN, "Access is denied");
        }
    }
    if policy.verify_client != VerifyClient::None && !conn.is_some_and(|c| c.client_cert) {
        return refuse(StatusCode::FORBIDDEN, "client certificate required");
    }
    if let Some(auth) = &policy.auth {
        if !authorized(req.headers(), auth) {
            let mut r = refuse(StatusCode::UNAUTHORIZED, "authentication required");
            r.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Basic realm=\"agent\""),
            );
            return r;
        }
    }
    next.run(req).await
}

async fn is_member(state: &ApiState, ip: std::net::IpAddr) -> bool {
    let Some(cluster) = state.snapshot().cluster.clone() else {
        return false;
    };
    allowlist::member_addresses(&cluster).await.contains(&ip)
}

fn authorized(headers: &HeaderMap, auth: &BasicAuth) -> bool {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, b64)) = v.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", auth.username, auth.password);
    // Lengths differ: not equal, and the comparison below would say so too;
    // `ct_eq` on slices of different lengths returns false without leaking where.
    decoded.ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn basic_auth() {
        let a = BasicAuth {
            username: "user".into(),
            password: "pass".into(),
        };
        assert!(authorized(&headers("Basic dXNlcjpwYXNz"), &a));
        assert!(authorized(&headers("basic dXNlcjpwYXNz"), &a));
        assert!(!authorized(&headers("Basic dXNlcjpwYXN6"), &a));
        assert!(!authorized(&headers("Basic dXNlcjpwYXNzeA=="), &a));
        assert!(!authorized(&headers("Basic !!"), &a));
        assert!(!authorized(&headers("Bearer dXNlcjpwYXNz"), &a));
        assert!(!authorized(&HeaderMap::new(), &a));
    }
}
