//! Getting SQEs to the kernel: the overflow queue and the tick's one `io_uring_enter`.
//!
//! [`SubmitQueue`] owns the SQEs that did not fit in the submission ring this tick; they
//! move into the ring after the next enter empties it, in order, so a cancellation or
//! a close is never lost and never overtakes what was queued before it. [`enter`] is
//! the single `io_uring_enter` of a tick: submit everything, run completion work, and
//! wait (or not) with the timeout passed in the call itself (`IORING_ENTER_EXT_ARG`).
//!
//! Nothing here ever calls `IoUring::submit` or lets the SQ's own push submit: the only
//! system call is [`enter`], which the caller counts.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{squeue, EnterFlags, IoUring};

/// SQEs waiting for room in the submission ring, oldest first.
#[derive(Default)]
pub struct SubmitQueue {
    overflow: VecDeque<squeue::Entry>,
    overflowed_total: u64,
}

impl SubmitQueue {
    /// An empty queue with room for `capacity` overflowed entries before it allocates.
    pub fn with_capacity(capacity: usize) -> SubmitQueue {
        SubmitQueue { overflow: VecDeque::with_capacity(capacity), overflowed_total: 0 }
    }

    /// Puts `entry` in the submission ring, or behind the overflow if the ring is full
    /// or older entries are still waiting (so order is kept).
    ///
    /// # Safety
    /// Everything `entry` points to (buffers, iovecs, addresses) must stay valid until
    /// its completion arrives, as for [`squeue::SubmissionQueue::push`].
    pub unsafe fn push(&mut self, ring: &mut IoUring, entry: squeue::Entry) {
        if self.overflow.is_empty() {
            // SAFETY: forwarded from this function's contract.
            if unsafe { ring.submission().push(&entry) }.is_ok() {
                return;
            }
        }
        self.overflowed_total += 1;
        self.overflow.push_back(entry);
    }

    /// Moves as many overflowed entries as fit into the submission ring. Call right
    /// after an enter (which emptied it).
    pub fn refill_ring(&mut self, ring: &mut IoUring) {
        if self.overflow.is_empty() {
            return;
        }
        let mut sq = ring.submission();
        while let Some(entry) = self.overflow.front() {
            // SAFETY: the entry was pushed through `push`, whose caller guaranteed its
            // resources outlive the operation.
            if unsafe { sq.push(entry) }.is_err() {
                break;
            }
            self.overflow.pop_front();
        }
    }

    /// Entries still waiting for room.
    pub fn pending(&self) -> usize {
        self.overflow.len()
    }

    /// Entries that ever had to wait (a sign the SQ is too small).
    pub fn overflowed_total(&self) -> u64 {
        self.overflowed_total
    }
}

/// How long [`enter`] may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Do not block: submit, run completion work, return.
    No,
    /// Block until one completion arrives or this much time passes.
    For(Duration),
    /// Block until one completion arrives.
    Forever,
}

impl Wait {
    /// `Wait::No` for a zero timeout, `For(t)` for `Some(t)`, `Forever` for `None`.
    pub fn from_timeout(timeout: Option<Duration>) -> Wait {
        match timeout {
            Some(t) if t.is_zero() => Wait::No,
            Some(t) => Wait::For(t),
            None => Wait::Forever,
        }
    }

    /// Whether this wait may block (counted in `Stats::waits`).
    pub fn may_block(self) -> bool {
        self != Wait::No
    }
}

/// The tick's one `io_uring_enter`: submits every SQE in the ring, runs pending
/// completion work (`GETEVENTS`, needed with `DEFER_TASKRUN` even when not waiting) and
/// waits as `wait` says, the timeout travelling in the call (`EXT_ARG`).
///
/// Returns how many SQEs were submitted. A timeout, a signal (`EINTR`) or a full
/// completion queue (`EBUSY`/`EAGAIN`: unsubmitted SQEs stay queued) is not an error.
///
/// This calls `Submitter::enter` rather than `submit_with_args` because the latter
/// leaves out `GETEVENTS` when not waiting, which under `DEFER_TASKRUN` would reap
/// nothing.
#[inline(always)] // once a tick, into the engine's tick
pub fn enter(ring: &mut IoUring, wait: Wait) -> io::Result<usize> {
    let to_submit = ring.submission().len() as u32;
    let (min_complete, ts) = match wait {
        Wait::No => (0, None),
        Wait::For(t) => (1, Some(Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos()))),
        Wait::Forever => (1, None),
    };
    let args = match &ts {
        Some(ts) => SubmitArgs::new().timespec(ts),
        None => SubmitArgs::new(),
    };
    let flags = (EnterFlags::GETEVENTS | EnterFlags::EXT_ARG).bits();
    // SAFETY: EXT_ARG tells the kernel the last argument is a `struct
    // io_uring_getevents_arg`, which `SubmitArgs` is (repr(transparent)), alive for the
    // call along with the timespec it points to. The SQEs being submitted were pushed
    // under `SubmitQueue::push`'s contract.
    let res = unsafe { ring.submitter().enter(to_submit, min_complete, flags, Some(&args)) };
    match res {
        Ok(n) => Ok(n),
        Err(e) => match e.raw_os_error() {
            Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(0),
            _ => Err(io::Error::new(e.kind(), format!("io_uring_enter (submitting {to_submit}): {e}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::opcode;

    #[test]
    fn overflow_keeps_order_and_drains_after_enter() {
        let mut ring = IoUring::new(4).unwrap();
        let cap = ring.submission().capacity();
        let mut q = SubmitQueue::with_capacity(8);
        for i in 0..cap as u64 + 3 {
            // SAFETY: NOPs point to nothing.
            unsafe { q.push(&mut ring, opcode::Nop::new().build().user_data(i)) };
        }
        assert_eq!(q.pending(), 3);
        assert_eq!(enter(&mut ring, Wait::No).unwrap(), cap);
        q.refill_ring(&mut ring);
        assert_eq!(q.pending(), 0);
        assert_eq!(enter(&mut ring, Wait::For(Duration::from_millis(1))).unwrap(), 3);
        let seen: Vec<u64> = ring.completion().map(|c| c.user_data()).collect();
        assert_eq!(seen, (0..cap as u64 + 3).collect::<Vec<_>>());
    }

    #[test]
    fn zero_wait_returns_with_nothing_to_do() {
        let mut ring = IoUring::new(4).unwrap();
        assert_eq!(enter(&mut ring, Wait::No).unwrap(), 0);
        assert_eq!(enter(&mut ring, Wait::For(Duration::from_millis(1))).unwrap(), 0);
    }
}
