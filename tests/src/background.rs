//! A loop a fixture runs in the background (the sampler, the writer, the
//! chaos reader) until it is stopped.
//!
//! Rule: [`Background::stop`] lets the round in flight finish and waits for
//! it; dropping the handle aborts the loop, so a panicking test leaves no
//! task behind.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;

/// Tells a background loop to finish: check [`Stop::requested`] each round.
#[derive(Clone)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The handle of a background loop.
pub struct Background {
    stop: Stop,
    task: Option<JoinHandle<()>>,
}

impl Background {
    /// Spawn `body(stop)` on the current runtime.
    pub fn spawn<F, Fut>(body: F) -> Background
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = Stop(Arc::new(AtomicBool::new(false)));
        let task = tokio::spawn(body(stop.clone()));
        Background {
            stop,
            task: Some(task),
        }
    }

    /// Ask the loop to finish and wait for the round in flight.
    pub async fn stop(&mut self) {
        self.stop.0.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.0.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
