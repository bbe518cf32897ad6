//! Which runtime the current thread is running, if any.
//!
//! Owns the thread-local pointer that `spawn`, `sleep` and the net types use to
//! find their runtime. It must never outlive the runtime it points to: entering
//! returns a guard that restores the previous value.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use async_task::Runnable;

use crate::runtime::Inner;

type RunQueue = RefCell<VecDeque<Runnable>>;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
    /// The fast path of a wake-up on the runtime's own thread: the current
    /// runtime's id (0: none) and its run queue. Plain `Cell`s with constant
    /// initialisers, so reading them is one TLS load — this is on every wake.
    static LOCAL_ID: Cell<u64> = const { Cell::new(0) };
    static LOCAL_QUEUE: Cell<*const RunQueue> = const { Cell::new(std::ptr::null()) };
}

/// Restores the previously current runtime when dropped.
pub(crate) struct EnterGuard {
    previous: Option<Rc<Inner>>,
    previous_id: u64,
    previous_queue: *const RunQueue,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        LOCAL_ID.with(|c| c.set(self.previous_id));
        LOCAL_QUEUE.with(|c| c.set(self.previous_queue));
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Makes `inner` the current runtime of this thread until the guard drops.
pub(crate) fn enter(inner: Rc<Inner>) -> EnterGuard {
    let previous_id = LOCAL_ID.with(|c| c.replace(inner.id));
    let previous_queue = LOCAL_QUEUE.with(|c| c.replace(&inner.queue as *const RunQueue));
    let previous = CURRENT.with(|c| c.borrow_mut().replace(inner));
    EnterGuard { previous, previous_id, previous_queue }
}

/// Pushes `runnable` onto the run queue of runtime `id` if that runtime is the
/// current one of this thread (the common case of a wake-up); otherwise hands it
/// back.
#[inline]
pub(crate) fn push_local(id: u64, runnable: Runnable) -> Result<(), Runnable> {
    if LOCAL_ID.with(Cell::get) != id {
        return Err(runnable);
    }
    let queue = LOCAL_QUEUE.with(Cell::get);
    // SAFETY: `enter` stored the address of the current runtime's queue together
    // with its id; the `Rc<Inner>` in CURRENT keeps that runtime alive until the
    // guard restores both, and the id matched, so the pointer is live.
    let queue = unsafe { &*queue };
    match queue.try_borrow_mut() {
        Ok(mut q) => {
            q.push_back(runnable);
            Ok(())
        }
        Err(_) => Err(runnable),
    }
}

/// The current runtime.
///
/// # Panics
/// Outside a paste-rt runtime: a programming error, reported like tokio's.
pub(crate) fn current() -> Rc<Inner> {
    try_current().expect("this must be called from inside a paste-rt runtime (block_on, #[paste_rt::main] or a task)")
}

/// The current runtime, if any.
pub(crate) fn try_current() -> Option<Rc<Inner>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Runs `f` on the current runtime, if any, without cloning its handle.
pub(crate) fn with_current<R>(f: impl FnOnce(&Inner) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_deref().map(f))
}

/// Whether runtime `id` is the current one of this thread.
#[inline]
pub(crate) fn is_current(id: u64) -> bool {
    LOCAL_ID.with(Cell::get) == id
}
