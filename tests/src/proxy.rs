//! A TCP proxy on loopback that can be cut, to isolate one agent from etcd while
//! the others still reach it (a network partition without root-only tricks).
//!
//! `cut()` blackholes: connections stay open but no byte passes in either
//! direction and new connections are accepted and left silent, so the agent sees
//! timeouts as in a real partition, not quick "connection refused" errors.
//!
//! `set_latency(d)` slows a working link: every chunk is forwarded `d` after it
//! arrived, in order, in each direction (a request/response call takes about
//! `2 * d` longer), without limiting throughput.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A running proxy from `127.0.0.1:<port>` to `target`.
pub struct TcpProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    /// Added delay per direction, in microseconds.
    latency: Arc<AtomicU64>,
    gen_tx: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Start forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let latency = Arc::new(AtomicU64::new(0));
        let (gen_tx, gen_rx) = watch::channel(0u64);
        let target = target.to_string();
        let cut2 = cut.clone();
        let latency2 = latency.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                let cut = cut2.clone();
                let latency = latency2.clone();
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
                    pipe(client, server, cut, latency, gen_rx).await;
                });
            }
        });
        TcpProxy {
            port,
            cut,
            latency,
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

    /// Delay every byte by `d` in each direction from now on (`Duration::ZERO`:
    /// no delay). Bytes already in flight keep the delay they got.
    pub fn set_latency(&self, d: Duration) {
        self.latency
            .store(d.as_micros().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency.load(Ordering::SeqCst))
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
    latency: Arc<AtomicU64>,
    mut gen: watch::Receiver<u64>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let start_gen = *gen.borrow();
    let up = forward(cr, sw, cut.clone(), latency.clone());
    let down = forward(sr, cw, cut, latency);
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

/// Copy `from` to `to`: each chunk is written `latency` after it was read (in
/// order), and nothing is written while the proxy is cut. Returns when either
/// side closes (after the chunks already read went out).
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    cut: Arc<AtomicBool>,
    latency: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + Duration::from_micros(latency.load(Ordering::SeqCst));
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            while cut.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    // The reader ends first on EOF; the writer then drains what is queued.
    tokio::join!(read, write);
}
