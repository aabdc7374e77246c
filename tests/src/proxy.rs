//! A TCP proxy on loopback that can be cut, to isolate one agent from etcd while
//! the others still reach it (a network partition without root-only tricks).
//!
//! `cut()` blackholes: connections stay open but no byte passes in either
//! direction and new connections are accepted and left silent, so the agent sees
//! timeouts as in a real partition, not quick "connection refused" errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy from `127.0.0.1:<port>` to `target`.
pub struct TcpProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    gen_tx: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Start forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (gen_tx, gen_rx) = watch::channel(0u64);
        let target = target.to_string();
        let cut2 = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                let cut = cut2.clone();
                let gen_rx = gen_rx.clone();
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    // While cut, hold the connection silently until healed.
                    while cut.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    pipe(client, server, cut, gen_rx).await;
                });
            }
        });
        TcpProxy {
            port,
            cut,
            gen_tx,
            task,
        }
    }

    /// `127.0.0.1:<port>`, to put in an agent's `etcd3.hosts`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop passing bytes (existing connections hang, new ones hang).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Pass bytes again. Connections that were open during the cut are closed
    /// (their streams are in an unknown state); clients reconnect.
    pub fn heal(&self) {
        self.gen_tx.send_modify(|g| *g += 1);
        self.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    cut: Arc<AtomicBool>,
    mut gen: watch::Receiver<u64>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let start_gen = *gen.borrow();
    let c1 = cut.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while c1.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let c2 = cut.clone();
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while c2.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let healed = async move {
        loop {
            if gen.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if *gen.borrow() != start_gen {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = healed => {}
    }
}
