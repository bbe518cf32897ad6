//! [`Handle`]: reach a runtime from other threads.

use std::future::Future;
use std::sync::Arc;

use crate::runtime::{spawn_remote, Shared};
use crate::task::JoinHandle;

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

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle { .. }")
    }
}
