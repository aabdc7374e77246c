//! The read side of the chaos workload: a reader on HAProxy's read-only port.
//! (The writer is the harness's [`crate::writer::Writer`].)
//!
//! Rule: one connection, re-opened after any error; every attempt (connect
//! included) is cut off after a short timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::background::Background;
use crate::pg::Pg;
use crate::writer::TABLE;

/// Reads `max(id)` through the read-only port every `every`; counts answers
/// and errors.
pub struct Reader {
    ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    task: Background,
}

impl Reader {
    pub fn start(target: Pg, every: Duration, timeout: Duration) -> Reader {
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (ok2, errors2) = (ok.clone(), errors.clone());
        let task = Background::spawn(|stop| async move {
            let mut client: Option<tokio_postgres::Client> = None;
            while !stop.requested() {
                let started = Instant::now();
                let read = async {
                    if client.is_none() {
                        client = Some(target.connect(timeout).await?);
                    }
                    let c = client.as_ref().ok_or_else(|| anyhow!("no connection"))?;
                    c.query_one(&format!("SELECT coalesce(max(id), 0) FROM {TABLE}"), &[])
                        .await?;
                    Ok::<_, anyhow::Error>(())
                };
                match tokio::time::timeout(timeout, read).await {
                    Ok(Ok(())) => {
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        client = None;
                        errors2.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
            }
        });
        Reader { ok, errors, task }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub async fn stop(&mut self) {
        self.task.stop().await;
    }
}
