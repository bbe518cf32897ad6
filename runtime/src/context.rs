//! Which runtime the current thread is running, if any.
//!
//! Owns the thread-local pointer that `spawn`, `sleep` and the net types use to
//! find their runtime. It must never outlive the runtime it points to: entering
//! returns a guard that restores the previous value.

use std::cell::RefCell;
use std::rc::Rc;

use crate::runtime::Inner;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// Restores the previously current runtime when dropped.
pub(crate) struct EnterGuard {
    previous: Option<Rc<Inner>>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Makes `inner` the current runtime of this thread until the guard drops.
pub(crate) fn enter(inner: Rc<Inner>) -> EnterGuard {
    let previous = CURRENT.with(|c| c.borrow_mut().replace(inner));
    EnterGuard { previous }
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

/// Runs `f` with the current runtime if it is the one with `id`.
pub(crate) fn with_runtime<R>(id: u64, f: impl FnOnce(&Inner) -> R) -> Option<R> {
    CURRENT.with(|c| match c.try_borrow() {
        Ok(cur) => match cur.as_deref() {
            Some(inner) if inner.id == id => Some(f(inner)),
            _ => None,
        },
        Err(_) => None,
    })
}
