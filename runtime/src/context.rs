//! Which runtime the current thread is running, if any.
//!
//! Owns the thread-local pointer that `spawn`, `sleep` and the net types use to
//! find their runtime, and the fast path of a wake-up on the runtime's own thread:
//! the current runtime's id and address in plain `Cell`s with constant
//! initialisers, so checking "is this my runtime?" and queueing the task is a TLS
//! load, a compare and a push, and a look at the current runtime
//! ([`with_current`]) is a TLS load. It must never outlive the runtime it points to:
//! entering returns a guard that restores the previous value.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::runtime::Inner;
use crate::task::raw::Header;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
    static LOCAL_ID: Cell<u64> = const { Cell::new(0) };
    /// The runtime in CURRENT, as a plain pointer (null when none): kept alive by the
    /// `Rc` in CURRENT, set and restored together with it.
    static LOCAL_INNER: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
}

/// Restores the previously current runtime when dropped.
pub(crate) struct EnterGuard {
    previous: Option<Rc<Inner>>,
    previous_id: u64,
    previous_inner: *const Inner,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        LOCAL_ID.with(|c| c.set(self.previous_id));
        LOCAL_INNER.with(|c| c.set(self.previous_inner));
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Makes `inner` the current runtime of this thread until the guard drops.
pub(crate) fn enter(inner: Rc<Inner>) -> EnterGuard {
    let previous_id = LOCAL_ID.with(|c| c.replace(inner.id));
    let previous_inner = LOCAL_INNER.with(|c| c.replace(Rc::as_ptr(&inner)));
    let previous = CURRENT.with(|c| c.borrow_mut().replace(inner));
    EnterGuard { previous, previous_id, previous_inner }
}

/// Queues task `h` on the current runtime's run queue.
///
/// Callers check [`is_current`] for the task's owner first.
#[inline]
pub(crate) fn push_task(h: *const Header) {
    let inner = LOCAL_INNER.with(Cell::get);
    debug_assert!(!inner.is_null());
    // SAFETY: `enter` stored the address of the current runtime together with its
    // id; the `Rc<Inner>` in CURRENT keeps that runtime alive until the guard
    // restores both, and callers checked the id, so the pointer is live.
    unsafe { &*inner }.queue.push(h);
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
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Inner) -> R) -> Option<R> {
    let inner = LOCAL_INNER.with(Cell::get);
    // SAFETY: non-null, it is the runtime whose `Rc` CURRENT holds (set and restored
    // together by `enter` and its guard), alive at least until this thread leaves it,
    // which cannot happen while `f` borrows it here.
    (!inner.is_null()).then(|| f(unsafe { &*inner }))
}

/// Whether runtime `id` is the current one of this thread.
#[inline]
pub(crate) fn is_current(id: u64) -> bool {
    LOCAL_ID.with(Cell::get) == id
}
