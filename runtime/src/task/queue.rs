//! The run queue and the registry of live tasks, both intrusive lists through the
//! task headers: pushing, popping, linking and unlinking never allocate.
//!
//! [`RunQueue`] is a FIFO plus a LIFO slot, as in tokio: a task woken by the task
//! that is running goes to the slot and runs next (the data it was woken for is
//! still in cache), at most [`MAX_LIFO_POLLS`] times in a row so that a ping-pong of
//! two tasks cannot starve the rest; everything else (wake-ups from I/O completions,
//! spawns, a task waking itself) goes to the back. [`Registry`] holds every task that
//! has not completed, so the runtime can cancel them — on its own thread — when it
//! shuts down. Both are owner-thread only (plain `Cell`s).

use std::cell::Cell;
use std::ptr;

use super::raw::Header;

/// Most consecutive runs from the LIFO slot before the FIFO gets a turn.
pub(crate) const MAX_LIFO_POLLS: u32 = 3;

/// See the module docs.
pub(crate) struct RunQueue {
    head: Cell<*const Header>,
    tail: Cell<*const Header>,
    len: Cell<usize>,
    lifo: Cell<*const Header>,
    running: Cell<*const Header>,
}

impl RunQueue {
    pub(crate) fn new() -> RunQueue {
        RunQueue {
            head: Cell::new(ptr::null()),
            tail: Cell::new(ptr::null()),
            len: Cell::new(0),
            lifo: Cell::new(ptr::null()),
            running: Cell::new(ptr::null()),
        }
    }

    /// A wake-up: to the LIFO slot when another task is running (the one it displaces
    /// goes to the back), else to the back.
    #[inline]
    pub(crate) fn push(&self, h: *const Header) {
        let running = self.running.get();
        if !running.is_null() && running != h {
            let old = self.lifo.replace(h);
            if !old.is_null() {
                self.push_back(old);
            }
        } else {
            self.push_back(h);
        }
    }

    /// To the back of the FIFO.
    #[inline]
    pub(crate) fn push_back(&self, h: *const Header) {
        // SAFETY: queued tasks are live (their registration holds a reference) and
        // only this thread touches the links.
        unsafe { (*h).next.set(ptr::null()) };
        let tail = self.tail.get();
        if tail.is_null() {
            self.head.set(h);
        } else {
            // SAFETY: as above.
            unsafe { (*tail).next.set(h) };
        }
        self.tail.set(h);
        self.len.set(self.len.get() + 1);
    }

    /// The front of the FIFO.
    #[inline]
    pub(crate) fn pop(&self) -> Option<*const Header> {
        let h = self.head.get();
        if h.is_null() {
            return None;
        }
        // SAFETY: as in push_back.
        let next = unsafe { (*h).next.get() };
        self.head.set(next);
        if next.is_null() {
            self.tail.set(ptr::null());
        }
        self.len.set(self.len.get() - 1);
        Some(h)
    }

    /// The LIFO slot's task, if any.
    #[inline]
    pub(crate) fn take_lifo(&self) -> Option<*const Header> {
        let h = self.lifo.get();
        if h.is_null() {
            return None;
        }
        self.lifo.set(ptr::null());
        Some(h)
    }

    /// Marks `h` as the task being polled (null: none).
    #[inline]
    pub(crate) fn set_running(&self, h: *const Header) {
        self.running.set(h);
    }

    /// Whether nothing is queued.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.get().is_null() && self.lifo.get().is_null()
    }

    /// Forgets every queued task (shutdown: the registry still holds them).
    pub(crate) fn clear(&self) {
        self.head.set(ptr::null());
        self.tail.set(ptr::null());
        self.lifo.set(ptr::null());
        self.len.set(0);
    }
}

/// Every task of a runtime that has not completed; see the module docs.
pub(crate) struct Registry {
    head: Cell<*const Header>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry { head: Cell::new(ptr::null()) }
    }

    /// Links a new task (its registration reference is the caller's to keep).
    #[inline]
    pub(crate) fn link(&self, h: *const Header) {
        // SAFETY: live tasks; owner thread only.
        unsafe {
            let head = self.head.get();
            (*h).prev_all.set(ptr::null());
            (*h).next_all.set(head);
            if !head.is_null() {
                (*head).prev_all.set(h);
            }
        }
        self.head.set(h);
    }

    /// Unlinks a task that completed.
    #[inline]
    pub(crate) fn unlink(&self, h: *const Header) {
        // SAFETY: as in link; h is linked here.
        unsafe {
            let (prev, next) = ((*h).prev_all.get(), (*h).next_all.get());
            if prev.is_null() {
                self.head.set(next);
            } else {
                (*prev).next_all.set(next);
            }
            if !next.is_null() {
                (*next).prev_all.set(prev);
            }
            (*h).prev_all.set(ptr::null());
            (*h).next_all.set(ptr::null());
        }
    }

    /// The first linked task, if any.
    pub(crate) fn first(&self) -> Option<*const Header> {
        let h = self.head.get();
        (!h.is_null()).then_some(h)
    }
}
