//! [`SharedRing`]: the engine's io_uring, on the heap and only ever reached through
//! shared references, so that a reap walks the completion queue in place while the
//! completions it applies push SQEs.
//!
//! The `io-uring` crate ties its queue views to `&mut IoUring`, which would make a
//! reap copy every CQE out before applying any (the sink may push SQEs, which needs
//! the ring again). The engine instead makes its views with `submission_shared` and
//! `completion_shared`, under the one rule those functions ask for, kept by the
//! engine's structure:
//!
//! * a **submission view** lives only inside one call of `submit`'s `push`,
//!   `refill_ring`, `pending_sqes` or `enter`, none of which calls another while it
//!   holds its view;
//! * the **completion view** lives only inside one reap, and a reap never runs
//!   inside another (nothing a sink is handed can start one).
//!
//! So at most one view of each queue exists at any time. The ring is never reached
//! mutably after [`SharedRing::new`]; it is dropped (closing its fd, which ends every
//! op the kernel still holds) when the `SharedRing` is.

use std::ptr::NonNull;

use io_uring::IoUring;

/// The engine's ring, boxed and shared; see the module docs.
pub struct SharedRing {
    ring: NonNull<IoUring>,
}

impl SharedRing {
    /// Moves `ring` to the heap.
    pub fn new(ring: IoUring) -> SharedRing {
        SharedRing { ring: NonNull::from(Box::leak(Box::new(ring))) }
    }

    /// The ring, for as long as `self` is borrowed.
    #[inline(always)]
    pub fn get(&self) -> &IoUring {
        // SAFETY: `ring` came from a live Box that only `Drop` frees, and no `&mut
        // IoUring` is ever made from it.
        unsafe { self.ring.as_ref() }
    }

    /// The ring, for a lifetime the caller chooses rather than a borrow of `self`:
    /// what lets a reap hold the completion view while it calls the engine's `&mut
    /// self` methods (which push SQEs through [`get`](Self::get)).
    ///
    /// # Safety
    /// The reference must not outlive `self` (the engine must not drop its
    /// `SharedRing` while using it).
    #[inline(always)]
    pub unsafe fn detached<'a>(&self) -> &'a IoUring {
        // SAFETY: as in `get`; the caller keeps the Box alive for 'a. A `&mut
        // SharedRing` does not cover the ring itself (it is behind a raw pointer).
        unsafe { self.ring.as_ref() }
    }
}

impl Drop for SharedRing {
    fn drop(&mut self) {
        // SAFETY: made from `Box::leak` in `new`, freed exactly once, here; every
        // reference handed out is tied to a borrow of `self` or, for `detached`, kept
        // within `self`'s life by its caller.
        drop(unsafe { Box::from_raw(self.ring.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::opcode;

    /// A NOP pushed through one shared view completes and is read through another
    /// while the first ring reference is still held: the views are independent.
    #[test]
    fn a_completion_view_and_a_submission_view_coexist() {
        let shared = SharedRing::new(IoUring::new(8).unwrap());
        // SAFETY: the only submission view; the NOP points at no memory.
        unsafe { shared.get().submission_shared().push(&opcode::Nop::new().build().user_data(7)) }.unwrap();
        shared.get().submit_and_wait(1).unwrap();
        // SAFETY: `shared` outlives `ring` (same scope, declared first).
        let ring = unsafe { shared.detached() };
        // SAFETY: the only completion view.
        let mut cq = unsafe { ring.completion_shared() };
        let first = cq.next().map(|c| c.user_data());
        // SAFETY: the only submission view, made while the completion view lives.
        unsafe { shared.get().submission_shared().push(&opcode::Nop::new().build().user_data(8)) }.unwrap();
        drop(cq);
        shared.get().submit_and_wait(1).unwrap();
        // SAFETY: the only completion view (the last one was dropped).
        let second: Vec<u64> = unsafe { shared.get().completion_shared() }.map(|c| c.user_data()).collect();
        assert_eq!((first, second), (Some(7), vec![8]));
    }
}
