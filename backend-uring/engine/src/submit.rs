//! Getting SQEs to the kernel: the overflow queue and the tick's one `io_uring_enter`.
//!
//! [`SubmitQueue`] owns the SQEs that did not fit in the submission ring this tick; they
//! move into the ring after the next enter empties it, in order, so a cancellation or
//! a close is never lost and never overtakes what was queued before it. [`enter`] is
//! the single `io_uring_enter` of a tick: submit everything, run completion work, and
//! wait (or not) with the timeout passed in the call itself (`IORING_ENTER_EXT_ARG`).
//!
//! ## Waiting past completions nobody waits for
//!
//! A small send on a socket with room completes while it is submitted, so its
//! completion is in the queue before the enter even starts to wait, and a plain
//! "wait for one" returns at once: one connection's request then costs two enters,
//! one that submits the answer and comes straight back with its send completion, and
//! one that waits for the next request. When the tick's caller knows that `count` of
//! the completions this enter may bring change nothing anyone waits for
//! ([`QuietCompletions`]), the enter waits for `count + 1` completions instead, but
//! for at most `within` (`IORING_FEAT_MIN_TIMEOUT`, 6.12): once that passes it returns
//! with whatever arrived, even just those quiet ones, or when the first completion
//! arrives after it. A quiet completion that never comes (a send the kernel had to
//! park on a full socket) therefore delays the next wake-up by at most `within`,
//! never loses it; the caller's own timeout still bounds the whole wait. Both stages
//! arm a kernel timer in every enter; [`Wait::OnTimer`] is the same wait with neither,
//! for when the engine's [`wake_timer`](crate::wake_timer) already stands armed in the
//! ring to end it in time.
//!
//! Nothing here ever calls `IoUring::submit` or lets the SQ's own push submit: the only
//! system call is [`enter`], which the caller counts.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

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
    /// its completion arrives, as for [`squeue::SubmissionQueue::push`]; and no
    /// submission view of `ring` may exist during the call (see
    /// [`shared_ring`](crate::shared_ring)).
    #[inline]
    pub unsafe fn push(&mut self, ring: &IoUring, entry: squeue::Entry) {
        if self.overflow.is_empty() {
            // SAFETY: the only submission view, by this function's contract; the
            // entry's memory is the caller's to keep, likewise.
            if unsafe { ring.submission_shared().push(&entry) }.is_ok() {
                return;
            }
        }
        self.overflowed_total += 1;
        self.overflow.push_back(entry);
    }

    /// Moves as many overflowed entries as fit into the submission ring. Call right
    /// after an enter (which emptied it).
    ///
    /// # Safety
    /// No submission view of `ring` may exist during the call.
    pub unsafe fn refill_ring(&mut self, ring: &IoUring) {
        if self.overflow.is_empty() {
            return;
        }
        // SAFETY: the only submission view, by this function's contract.
        let mut sq = unsafe { ring.submission_shared() };
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
    /// Block untimed until one completion beyond the quiet ones arrives: a timer
    /// already in the ring ends the wait in time ([`wake_timer`](crate::wake_timer):
    /// its firing posts two completions, so it also ends a wait past one quiet
    /// completion that never comes).
    OnTimer,
}

impl Wait {
    /// The enter's wait for the runtime's tick wait, with the instant it names: `No`
    /// for a poll, `For(left)` and `at` for a wait until an instant (the timeout
    /// travels in the enter, the instant is for the [`wake_timer`](crate::wake_timer)),
    /// `Forever` for no limit.
    #[inline(always)] // once a tick, into the engine's tick
    pub fn of_tick(wait: paste_rt_core::Wait) -> (Wait, Option<Instant>) {
        match wait {
            paste_rt_core::Wait::Poll => (Wait::No, None),
            paste_rt_core::Wait::Until { at, left } => (Wait::For(left), Some(at)),
            paste_rt_core::Wait::Forever => (Wait::Forever, None),
        }
    }

    /// This wait, ending within `limit` at the latest (`No` for a zero limit).
    pub fn at_most(self, limit: Duration) -> Wait {
        match self {
            _ if limit.is_zero() => Wait::No,
            Wait::No => Wait::No,
            Wait::For(t) => Wait::For(t.min(limit)),
            Wait::Forever | Wait::OnTimer => Wait::For(limit),
        }
    }

    /// Whether this wait may block (counted in `Stats::waits`).
    pub fn may_block(self) -> bool {
        self != Wait::No
    }
}

/// Completions an enter may bring that nobody waits for (see the module docs): it may
/// wait for `count` more than one, for at most `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietCompletions {
    /// How many of the completions to come change nothing anyone waits for.
    pub count: u32,
    /// The longest the enter waits for more than one completion.
    pub within: Duration,
}

impl QuietCompletions {
    /// None: a blocking enter returns at the first completion.
    pub const NONE: QuietCompletions = QuietCompletions { count: 0, within: Duration::ZERO };
}

/// The tick's one `io_uring_enter`: submits every SQE in the ring, runs pending
/// completion work (`GETEVENTS`, needed with `DEFER_TASKRUN` even when not waiting) and
/// waits as `wait` says, the timeout travelling in the call (`EXT_ARG`). With `quiet`
/// completions expected (only on a kernel with `IORING_FEAT_MIN_TIMEOUT`), a blocking
/// wait asks for `quiet.count` more, settling for any one after `quiet.within` or
/// `wait`'s timeout, whichever is shorter ([`Wait::OnTimer`]: without a first stage,
/// the ring's wake timer ending it).
///
/// A wait with no time limit (a poll, an untimed wait) passes no argument at all.
///
/// Returns how many SQEs were submitted. A timeout, a signal (`EINTR`) or a full
/// completion queue (`EBUSY`/`EAGAIN`: unsubmitted SQEs stay queued) is not an error.
///
/// This calls `Submitter::enter` rather than `submit_with_args` because the latter
/// leaves out `GETEVENTS` when not waiting, which under `DEFER_TASKRUN` would reap
/// nothing.
///
/// # Safety
/// No submission view of `ring` may exist during the call (the SQEs it submits were
/// pushed under [`SubmitQueue::push`]'s contract).
#[inline(always)] // once a tick, into the engine's tick
pub unsafe fn enter(ring: &IoUring, wait: Wait, quiet: QuietCompletions) -> io::Result<usize> {
    // SAFETY: the only submission view, by this function's contract; dropped at once.
    let to_submit = unsafe { ring.submission_shared() }.len() as u32;
    // Without a time limit the call carries no argument (no `EXT_ARG` to copy in).
    // SAFETY: no argument (a null signal mask, which the kernel ignores); the SQEs
    // being submitted were pushed under `SubmitQueue::push`'s contract.
    let untimed = |min_complete: u32| unsafe {
        ring.submitter().enter::<libc::sigset_t>(to_submit, min_complete, EnterFlags::GETEVENTS.bits(), None)
    };
    // SAFETY: EXT_ARG tells the kernel the last argument is a `struct
    // io_uring_getevents_arg`, which `SubmitArgs` is (repr(transparent)), alive for the
    // call along with the timespec it points to (`min_wait_usec` is non-zero only when
    // the caller saw IORING_FEAT_MIN_TIMEOUT; older kernels reject it with EINVAL). The
    // SQEs being submitted were pushed under `SubmitQueue::push`'s contract.
    let timed = |min_complete: u32, ts: Option<&Timespec>, min_wait_usec: u32| unsafe {
        let args = match ts {
            Some(ts) => SubmitArgs::new().timespec(ts),
            None => SubmitArgs::new(),
        }
        .min_wait_usec(min_wait_usec);
        let flags = (EnterFlags::GETEVENTS | EnterFlags::EXT_ARG).bits();
        ring.submitter().enter(to_submit, min_complete, flags, Some(&args))
    };
    let res = match wait {
        Wait::No => untimed(0),
        // A timer in the ring ends it in time: no timer of its own.
        Wait::OnTimer => untimed(quiet.count.saturating_add(1)),
        // One timer, not two: with no general timeout the kernel returns when the
        // first stage ends, with whatever arrived (nothing: ETIME, a timeout).
        _ if quiet.count > 0 => {
            let first_stage = match wait {
                Wait::For(t) => t.min(quiet.within),
                _ => quiet.within,
            };
            let usec = first_stage.as_micros().clamp(1, u128::from(u32::MAX)) as u32;
            timed(quiet.count.saturating_add(1), None, usec)
        }
        Wait::For(t) => timed(1, Some(&Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos())), 0),
        Wait::Forever => untimed(1),
    };
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
    fn a_tick_wait_becomes_the_enter_wait_and_a_retry_caps_it() {
        use paste_rt_core::Wait as Tick;
        let ms = Duration::from_millis;
        assert_eq!(Wait::of_tick(Tick::Poll), (Wait::No, None));
        assert_eq!(Wait::of_tick(Tick::Forever), (Wait::Forever, None));
        let until = Tick::within(Some(ms(30)));
        let Tick::Until { at, .. } = until else { panic!("a limit") };
        assert_eq!(Wait::of_tick(until), (Wait::For(ms(30)), Some(at)));
        assert_eq!(Wait::Forever.at_most(ms(5)), Wait::For(ms(5)));
        assert_eq!(Wait::For(ms(30)).at_most(ms(5)), Wait::For(ms(5)));
        assert_eq!(Wait::For(ms(3)).at_most(ms(5)), Wait::For(ms(3)));
        assert_eq!(Wait::No.at_most(ms(5)), Wait::No);
        assert_eq!(Wait::Forever.at_most(Duration::ZERO), Wait::No, "a retry due now does not block");
    }

    /// [`enter`] from a test, which never holds a submission view across calls.
    fn enter_now(ring: &IoUring, wait: Wait, quiet: QuietCompletions) -> io::Result<usize> {
        // SAFETY: the tests make submission views only as temporaries.
        unsafe { enter(ring, wait, quiet) }
    }

    #[test]
    fn overflow_keeps_order_and_drains_after_enter() {
        let mut ring = IoUring::new(4).unwrap();
        let cap = ring.submission().capacity();
        let mut q = SubmitQueue::with_capacity(8);
        for i in 0..cap as u64 + 3 {
            // SAFETY: NOPs point to nothing.
            unsafe { q.push(&ring, opcode::Nop::new().build().user_data(i)) };
        }
        assert_eq!(q.pending(), 3);
        assert_eq!(enter_now(&ring, Wait::No, QuietCompletions::NONE).unwrap(), cap);
        // SAFETY: no submission view is held here.
        unsafe { q.refill_ring(&ring) };
        assert_eq!(q.pending(), 0);
        assert_eq!(enter_now(&ring, Wait::For(Duration::from_millis(1)), QuietCompletions::NONE).unwrap(), 3);
        let seen: Vec<u64> = ring.completion().map(|c| c.user_data()).collect();
        assert_eq!(seen, (0..cap as u64 + 3).collect::<Vec<_>>());
    }

    #[test]
    fn zero_wait_returns_with_nothing_to_do() {
        let ring = IoUring::new(4).unwrap();
        assert_eq!(enter_now(&ring, Wait::No, QuietCompletions::NONE).unwrap(), 0);
        assert_eq!(enter_now(&ring, Wait::For(Duration::from_millis(1)), QuietCompletions::NONE).unwrap(), 0);
    }

    /// Whether this kernel has the two-stage wait; a kernel from 6.12 on must have it
    /// (before, the engine never asks for it: see `SocketEngine::new`).
    fn has_two_stage_wait(ring: &IoUring) -> bool {
        let has = ring.params().is_feature_min_timeout();
        let (release, version) = crate::probe::kernel_version();
        assert_eq!(has, version >= (6, 12), "IORING_FEAT_MIN_TIMEOUT on {release}");
        has
    }

    /// A NOP completes while it is submitted: the quiet completion of these tests.
    fn submit_one_nop(ring: &mut IoUring, user_data: u64) {
        // SAFETY: a NOP points to nothing.
        unsafe { ring.submission().push(&opcode::Nop::new().build().user_data(user_data)) }.unwrap();
    }

    #[test]
    fn a_wait_past_a_quiet_completion_returns_with_the_next_one() {
        let mut ring = IoUring::new(4).unwrap();
        if !has_two_stage_wait(&ring) {
            return;
        }
        submit_one_nop(&mut ring, 1);
        // The second completion: a timeout op 20 ms from now.
        let ts = Timespec::new().nsec(20_000_000);
        // SAFETY: `ts` outlives the op: the enter below waits for its completion.
        unsafe { ring.submission().push(&opcode::Timeout::new(&ts).build().user_data(2)) }.unwrap();
        let quiet = QuietCompletions { count: 1, within: Duration::from_secs(10) };
        enter_now(&ring, Wait::Forever, quiet).unwrap();
        let seen: Vec<u64> = ring.completion().map(|c| c.user_data()).collect();
        // A plain wait for one would have come back with the NOP alone.
        assert_eq!(seen, [1, 2]);
    }

    #[test]
    fn a_wait_past_a_quiet_completion_settles_for_it_after_the_first_stage() {
        let mut ring = IoUring::new(4).unwrap();
        if !has_two_stage_wait(&ring) {
            return;
        }
        submit_one_nop(&mut ring, 1);
        // Nothing else ever completes: the wait must end with the NOP once the first
        // stage (here the caller's shorter timeout) has passed, not block forever.
        let quiet = QuietCompletions { count: 1, within: Duration::from_secs(3600) };
        enter_now(&ring, Wait::For(Duration::from_millis(5)), quiet).unwrap();
        let seen: Vec<u64> = ring.completion().map(|c| c.user_data()).collect();
        assert_eq!(seen, [1]);
        // Without a timeout of the caller's, `within` ends the first stage.
        submit_one_nop(&mut ring, 3);
        let quiet = QuietCompletions { count: 1, within: Duration::from_millis(5) };
        enter_now(&ring, Wait::Forever, quiet).unwrap();
        assert_eq!(ring.completion().map(|c| c.user_data()).collect::<Vec<_>>(), [3]);
    }
}
