//! Spawned tasks: [`spawn`], [`JoinHandle`] and [`JoinError`].
//!
//! A task is one allocation (see `raw`): its header, its output and its future,
//! stored once. Spawning allocates it; polling, waking and completing it allocate
//! nothing, and a wake-up on the runtime's own thread touches no atomic. A panic
//! inside a task becomes `Err(JoinError::Panicked)` for the joiner instead of
//! unwinding through the runtime. This module never runs tasks: the tick in
//! `runtime.rs` does, from the run queue in `queue`.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context;

pub(crate) mod queue;
pub(crate) mod raw;

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

/// Awaits a spawned task's output. Dropping it detaches the task. It is `Send` when
/// the output is, so a task spawned through a [`Handle`](crate::Handle) can be awaited
/// from another runtime (tokio's, say).
pub struct JoinHandle<T> {
    inner: Join<T>,
}

enum Join<T> {
    /// A runtime task (see `raw`); the handle holds one reference.
    Task(*const raw::Header, PhantomData<T>),
    /// A job of the blocking pool.
    Blocking(async_task::Task<Result<T, JoinError>>),
    /// Consumed: the output was taken, or the handle aborted.
    Done,
}

// SAFETY: every operation of a task's join handle goes through the task's atomic
// state (OUTPUT_READY / JOIN_DROPPED / CANCEL, the atomic waker, the atomic
// reference count), never through owner-thread state; the output is handed over
// once. So the handle may move to, and be used from, another thread when T may.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: as above; `&JoinHandle` only reads the atomic state (`is_finished`).
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    pub(crate) fn from_task(h: *const raw::Header) -> JoinHandle<T> {
        JoinHandle { inner: Join::Task(h, PhantomData) }
    }

    pub(crate) fn from_blocking(task: async_task::Task<Result<T, JoinError>>) -> JoinHandle<T> {
        JoinHandle { inner: Join::Blocking(task) }
    }

    /// Cancels the task: its future is dropped (on its runtime's thread) at the
    /// runtime's next step if it has not finished, and awaiting this handle is no
    /// longer possible.
    pub fn abort(mut self) {
        match std::mem::replace(&mut self.inner, Join::Done) {
            Join::Task(h, _) => {
                // SAFETY: the handle's reference keeps the task live.
                unsafe {
                    (*h).request_cancel();
                    raw::wake(h);
                    raw::join_dropped::<T>(h);
                    raw::release(h);
                }
            }
            Join::Blocking(task) => drop(task),
            Join::Done => {}
        }
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            // SAFETY: the handle's reference keeps the task live.
            Join::Task(h, _) => unsafe { &**h }.sync_bits() & raw::sync::OUTPUT_READY != 0,
            Join::Blocking(task) => task.is_finished(),
            Join::Done => true,
        }
    }
}

// The handle never pins what it points to: the output is moved out by value.
impl<T> Unpin for JoinHandle<T> {}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.inner {
            Join::Task(h, _) => {
                let h = *h;
                // SAFETY: the handle's reference keeps the task live.
                let ready = |h: *const raw::Header| unsafe { &*h }.sync_bits() & raw::sync::OUTPUT_READY != 0;
                if !ready(h) {
                    // SAFETY: live.
                    unsafe { raw::register_join_waker(h, cx.waker()) };
                    if !ready(h) {
                        return Poll::Pending;
                    }
                }
                // SAFETY: OUTPUT_READY observed; this handle is the only taker.
                let out = unsafe { raw::take_output::<T>(h) };
                this.inner = Join::Done;
                // SAFETY: the handle's reference, released once.
                unsafe {
                    raw::join_dropped::<T>(h);
                    raw::release(h);
                }
                Poll::Ready(out.expect("a task's output is taken once"))
            }
            Join::Blocking(task) => Pin::new(task).poll(cx),
            Join::Done => panic!("JoinHandle polled after it returned its output or was aborted"),
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.inner, Join::Done) {
            Join::Task(h, _) => {
                // SAFETY: the handle's reference, given up once.
                unsafe {
                    raw::join_dropped::<T>(h);
                    raw::release(h);
                }
            }
            Join::Blocking(task) => task.detach(),
            Join::Done => {}
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("finished", &self.is_finished()).finish()
    }
}

/// Polls the inner future inside `catch_unwind` (the blocking pool's jobs).
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
            // A task waking itself goes to the back of the queue (not the LIFO slot).
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false).await
}
