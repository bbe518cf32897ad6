//! [`Handle`]: reach a runtime from other threads.

use std::future::Future;
use std::sync::Arc;

use crate::runtime::{spawn_remote, Shared};
use crate::task::{JoinError, JoinHandle};

/// A `Send + Sync` handle to a runtime, for spawning `Send` futures onto it from
/// any thread (a tokio task, a plain thread). The runtime's wait is interrupted so
/// the task starts at once.
///
/// ```
/// use paste_rt::runtime::Builder;
/// let rt = Builder::new().backend("epoll").build().unwrap();
/// let handle = rt.handle();
/// let from_thread = std::thread::spawn(move || handle.spawn(async { 1 + 1 })).join().unwrap();
/// assert_eq!(rt.block_on(from_thread).unwrap(), 2);
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Handle {
        Handle { shared }
    }

    /// The handle of the current thread's runtime.
    ///
    /// # Panics
    /// Outside a paste-rt runtime.
    pub fn current() -> Handle {
        Handle::new(crate::context::current().shared.clone())
    }

    /// Spawns a `Send` future onto the runtime. The returned handle can be awaited
    /// from any runtime or thread (it is `Send` when the output is).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_remote(&self.shared, future)
    }
}

impl Handle {
    /// Runs `make` on the runtime's thread and spawns the future it returns there.
    /// The future may be `!Send` (it never leaves that thread) — this is how code
    /// living on another runtime (a tokio task) starts a paste-rt listener:
    ///
    /// ```
    /// use paste_rt::net::TcpListener;
    /// let rt = paste_rt::runtime::Builder::new().backend("epoll").spawn_thread().unwrap();
    /// let port = rt.handle().spawn_with(|| async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap(); // !Send, fine
    ///     listener.local_addr().unwrap().port()
    /// });
    /// // Awaitable from any executor, here a blocking wait on a helper.
    /// let port = paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(port).unwrap();
    /// assert!(port > 0);
    /// rt.shutdown(std::time::Duration::from_secs(1));
    /// ```
    pub fn spawn_with<F, Fut>(&self, make: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        spawn_remote(&self.shared, async move {
            match crate::spawn(make()).await {
                Ok(v) => v,
                Err(JoinError::Panicked(p)) => std::panic::resume_unwind(p),
                // Only when the runtime itself is dropping this task too.
                Err(JoinError::Cancelled) => std::future::pending().await,
            }
        })
    }

    /// Tasks spawned through handles that have not finished yet.
    pub fn tasks_in_flight(&self) -> usize {
        self.shared.remote_tasks.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle { .. }")
    }
}
