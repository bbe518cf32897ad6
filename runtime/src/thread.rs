//! [`RuntimeThread`]: a paste-rt runtime on a thread of its own, beside an
//! application that lives elsewhere (typically a tokio runtime).
//!
//! Owns the thread, its stop signal and the graceful-shutdown wait. A tokio service
//! moves one listener at a time: it starts a `RuntimeThread`, hands it the listener's
//! code with [`Handle::spawn_with`], awaits results from tokio (a `JoinHandle` is a
//! plain future), shares `tokio::sync` or `futures::channel` channels, and calls
//! [`shutdown`](RuntimeThread::shutdown) when it stops.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use paste_rt_core::BackendKind;

use crate::build_error::BuildError;

use crate::runtime::Builder;
use crate::Handle;

/// Tells the runtime thread to stop.
#[derive(Default)]
struct Stop {
    requested: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Stop {
    fn request(&self) {
        self.requested.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            if self.requested.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// A runtime running on its own thread; see the module docs.
pub struct RuntimeThread {
    handle: Handle,
    backend: BackendKind,
    stop: Arc<Stop>,
    grace: Arc<Mutex<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RuntimeThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeThread").field("backend", &self.backend).finish()
    }
}

impl Builder {
    /// Starts a runtime on a new thread and returns at once with its handle. The
    /// backend is chosen as for [`build`](Builder::build); a start error is returned.
    pub fn spawn_thread(self) -> Result<RuntimeThread, BuildError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(Stop::default());
        let grace = Arc::new(Mutex::new(Duration::ZERO));
        let (stop2, grace2) = (stop.clone(), grace.clone());
        let spawned = std::thread::Builder::new().name("paste-rt".into()).spawn(move || {
            let rt = match self.build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok((rt.handle(), rt.backend())));
            rt.block_on(async {
                stop2.wait().await;
                // Graceful: tell every task, then let them finish (requests in
                // flight are answered) until none is left or the grace period ends.
                let grace = *grace2.lock().unwrap_or_else(|e| e.into_inner());
                tracing::info!(
                    target: "paste_rt::shutdown",
                    live_tasks = crate::runtime::live_tasks(),
                    grace_ms = grace.as_millis() as u64,
                    "runtime thread shutting down"
                );
                crate::runtime::request_shutdown();
                let deadline = Instant::now() + grace;
                while crate::runtime::live_tasks() > 0 && Instant::now() < deadline {
                    crate::time::sleep(Duration::from_millis(1)).await;
                }
                let left = crate::runtime::live_tasks();
                if left > 1 {
                    // The waiting task itself is one of them.
                    tracing::warn!(
                        target: "paste_rt::shutdown",
                        tasks_left = left - 1,
                        "grace period over; cancelling the tasks left and closing their connections"
                    );
                }
            });
            drop(rt);
            tracing::debug!(target: "paste_rt::shutdown", "runtime thread stopped");
        });
        let thread = spawned.map_err(|source| BuildError::Spawn { index: 0, source })?;
        match rx.recv() {
            Ok(Ok((handle, backend))) => Ok(RuntimeThread { handle, backend, stop, grace, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(BuildError::ThreadLost { index: 0 })
            }
        }
    }
}

impl RuntimeThread {
    /// The handle for spawning onto the runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The backend it runs.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// Stops the runtime gracefully: completes every
    /// [`shutdown_requested`](crate::runtime::shutdown_requested) future, waits up to
    /// `grace` for the runtime's tasks to finish (requests in flight), then drops the
    /// runtime (closing every connection, cancelling what is left) and joins the
    /// thread. Blocks the
    /// caller; from async code call it inside `spawn_blocking`.
    pub fn shutdown(mut self, grace: Duration) {
        *self.grace.lock().unwrap_or_else(|e| e.into_inner()) = grace;
        self.stop.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
