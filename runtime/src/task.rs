//! Spawned tasks: [`spawn`], [`JoinHandle`] and [`JoinError`].
//!
//! A task is an `async_task` allocation (one per spawn, none per poll) whose future
//! is wrapped so that a panic inside it becomes `Err(JoinError::Panicked)` for the
//! joiner instead of unwinding through the runtime. This module never runs tasks:
//! the tick in `runtime.rs` does.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context;

/// Spawns a task on the current thread's runtime. The future need not be `Send`:
/// it runs on this thread only (thread-per-core). Dropping the [`JoinHandle`]
/// detaches the task; it keeps running.
///
/// ```
/// # paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(async {
/// let shared = std::rc::Rc::new(41); // !Send is fine
/// let h = paste_rt::spawn({ let s = shared.clone(); async move { *s + 1 } });
/// assert_eq!(h.await.unwrap(), 42);
/// # });
/// ```
///
/// # Panics
/// Outside a paste-rt runtime.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::current().spawn_local(future)
}

/// Why a task produced no value.
#[derive(thiserror::Error)]
pub enum JoinError {
    /// The task panicked; the payload is the panic's.
    #[error("task panicked: {}", panic_message(&**.0))]
    Panicked(Box<dyn Any + Send + 'static>),
    /// The task was aborted, or its runtime shut down before it finished.
    #[error("task was cancelled")]
    Cancelled,
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(p) => write!(f, "JoinError::Panicked({:?})", panic_message(&**p)),
            JoinError::Cancelled => f.write_str("JoinError::Cancelled"),
        }
    }
}

impl JoinError {
    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "(non-string payload)"
    }
}

/// Awaits a spawned task's output. Dropping it detaches the task.
pub struct JoinHandle<T> {
    task: Option<async_task::Task<Result<T, JoinError>>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: async_task::Task<Result<T, JoinError>>) -> JoinHandle<T> {
        JoinHandle { task: Some(task) }
    }

    /// Cancels the task: its future is dropped at once if it is not running, and
    /// awaiting this handle is no longer possible.
    pub fn abort(mut self) {
        drop(self.task.take());
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.task.as_mut() {
            Some(task) => Pin::new(task).poll(cx),
            None => Poll::Ready(Err(JoinError::Cancelled)),
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("finished", &self.is_finished()).finish()
    }
}

/// Polls the inner future inside `catch_unwind`.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: the inner future is never moved out of `self`.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(JoinError::Panicked(payload))),
        }
    }
}

/// Yields once to the runtime, letting other tasks and I/O run.
pub async fn yield_now() {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false).await
}
