//! Serving the router on a socket, over plain HTTP or TLS, with the limits that
//! keep a flood or slow clients from taking the node down:
//!
//! - at most `max_connections` open connections (a semaphore permit per
//!   connection; beyond it new ones wait in the kernel's accept queue);
//! - the TLS handshake and the request head must arrive within
//!   `header_timeout` (hyper's `header_read_timeout`), the body within
//!   `body_timeout` (tower-http), so idle or slow clients cannot hold
//!   connections for long;
//! - at most `max_requests` requests in handlers at once (tower's global
//!   concurrency limit), and GET `/patroni`, which asks postgres, has its own
//!   smaller budget (see `api::router`).
//!
//! Health checks need none of the budgets a slow client can hold for long: the
//! connection cap is far above what HAProxy and the members use, and the
//! timeouts return the slots held by idle clients.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::auth::ConnInfo;
use crate::tls::server::ServerTls;

/// The server's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_requests: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_requests: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The defaults, with the connection cap lowered to half the open-file
    /// limit `nofile` (the rest is for postgres connections, etcd, logs).
    pub fn for_fd_limit(nofile: u64) -> Limits {
        let d = Limits::default();
        let half = usize::try_from(nofile / 2).unwrap_or(usize::MAX);
        Limits {
            max_connections: d.max_connections.min(half).max(64),
            ..d
        }
    }
}

/// How to serve: TLS (reloadable) or plain HTTP, and the limits.
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub tls: Option<Arc<ServerTls>>,
    pub limits: Limits,
}

/// Serve `router` on `listener` until `shutdown` resolves, then let the
/// requests in flight finish (up to 5 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = options.limits;
    let router = router.layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(
        Semaphore::new(limits.max_requests),
    )));
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!("REST API: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = options.tls.as_ref().map(|t| t.current());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let info = ConnInfo {
                        peer,
                        client_cert: false,
                    };
                    serve_connection(TokioIo::new(stream), info, router, limits, watcher).await
                }
                Some(cfg) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                    let stream =
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!("REST API: TLS handshake with {peer} failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                    let client_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty());
                    let info = ConnInfo { peer, client_cert };
                    serve_connection(TokioIo::new(stream), info, router, limits, watcher).await
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

async fn serve_connection<I>(
    io: I,
    info: ConnInfo,
    router: Router,
    limits: Limits,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .map_request(move |mut req: axum::http::Request<_>| {
            req.extensions_mut().insert(info);
            req
        })
        .service(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!("REST API: connection from {}: {e}", info.peer);
    }
}

/// Raise the soft open-file limit to the hard one (a node holds connections
/// from HAProxy, members and clients); returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}
