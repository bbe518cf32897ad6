//! How long a tick's wait may block: [`Wait`], and [`wait_millis`], a limit as the
//! millisecond timeout `poll(2)` and `epoll_wait(2)` take. Pure values and
//! arithmetic; nothing here makes a system call.
//!
//! A timed wait is not free in the kernel: `epoll_wait`, `poll` and `io_uring_enter`
//! arm a high-resolution timer for their timeout and cancel it when an event comes
//! first, on every wait (about a microsecond a wait in a VM, where reprogramming the
//! timer device traps to the host). A server whose connections have receive deadlines
//! always has a limit, yet its next deadline sweep is the same instant for many
//! waits in a row. [`Wait::Until`] therefore names that instant as well as the time
//! left, so that a backend can arm one kernel timer for it and then wait without a
//! timeout until the instant moves.

use std::time::{Duration, Instant};

/// How long one tick's wait may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Do not block: take what is ready.
    Poll,
    /// Block until something completes or a remote wake arrives.
    Forever,
    /// Block at most `left`: until `at`, the runtime's next timer or receive-deadline
    /// sweep (`left` is never shorter than the time to `at`, and at most a millisecond
    /// longer). `at` stays the same on every tick until it passes or something earlier
    /// is due, so a backend may arm a kernel timer for `at` once and wait untimed
    /// while it stands (see the module docs).
    Until {
        /// The instant the wait is for.
        at: Instant,
        /// The longest the wait may last from now.
        left: Duration,
    },
}

impl Wait {
    /// A wait of at most `limit` from now: [`Wait::Poll`] for zero, [`Wait::Forever`]
    /// for `None`. For callers without an instant of their own (tests, a drain).
    pub fn within(limit: Option<Duration>) -> Wait {
        match limit {
            None => Wait::Forever,
            Some(left) => Wait::until(Instant::now() + left, left),
        }
    }

    /// A wait until `at`, `left` from now: [`Wait::Poll`] when nothing is left.
    #[inline]
    pub fn until(at: Instant, left: Duration) -> Wait {
        if left.is_zero() {
            Wait::Poll
        } else {
            Wait::Until { at, left }
        }
    }

    /// Whichever of the two waits ends first (`self` when they end together).
    #[inline]
    pub fn earlier(self, other: Wait) -> Wait {
        match (self, other) {
            (Wait::Poll, _) | (_, Wait::Poll) => Wait::Poll,
            (w, Wait::Forever) | (Wait::Forever, w) => w,
            (Wait::Until { left: a, .. }, Wait::Until { left: b, .. }) => {
                if a <= b {
                    self
                } else {
                    other
                }
            }
        }
    }

    /// The longest the wait may last: `None` for no limit.
    #[inline]
    pub fn timeout(self) -> Option<Duration> {
        match self {
            Wait::Poll => Some(Duration::ZERO),
            Wait::Forever => None,
            Wait::Until { left, .. } => Some(left),
        }
    }
}

/// The timeout argument of `poll(2)` / `epoll_wait(2)` for a wait of at most
/// `limit`: -1 (no limit) for `None`, else milliseconds rounded up (a wait never
/// ends before its limit), at most `i32::MAX`. It runs on every tick, so it stays
/// in 64-bit arithmetic (`Duration::as_millis` divides a `u128`: dozens of
/// instructions).
#[inline]
pub fn wait_millis(limit: Option<Duration>) -> i32 {
    let Some(t) = limit else { return -1 };
    let ms = t.as_secs().saturating_mul(1000).saturating_add(u64::from(t.subsec_nanos().div_ceil(1_000_000)));
    ms.min(i32::MAX as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_within_a_limit_names_its_instant() {
        assert_eq!(Wait::within(None), Wait::Forever);
        assert_eq!(Wait::within(Some(Duration::ZERO)), Wait::Poll);
        let before = Instant::now();
        let Wait::Until { at, left } = Wait::within(Some(Duration::from_millis(30))) else { panic!("a limit") };
        assert_eq!(left, Duration::from_millis(30));
        assert!(at >= before + left && at <= Instant::now() + left, "at is now + left");
        for w in [Wait::Poll, Wait::Forever, Wait::Until { at, left }] {
            assert_eq!(Wait::within(w.timeout()).timeout(), w.timeout(), "{w:?}");
        }
    }

    #[test]
    fn the_earlier_wait_is_the_one_that_ends_first() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let (soon, late) = (Wait::until(now + ms(5), ms(5)), Wait::until(now + ms(50), ms(50)));
        assert_eq!(Wait::until(now, Duration::ZERO), Wait::Poll, "nothing left: a poll");
        assert_eq!(soon.earlier(late), soon);
        assert_eq!(late.earlier(soon), soon);
        assert_eq!(late.earlier(Wait::Forever), late);
        assert_eq!(Wait::Forever.earlier(late), late);
        assert_eq!(Wait::Forever.earlier(Wait::Forever), Wait::Forever);
        assert_eq!(soon.earlier(Wait::Poll), Wait::Poll);
        assert_eq!(Wait::Poll.earlier(Wait::Forever), Wait::Poll);
        let tie = Wait::until(now + ms(7), ms(5));
        assert_eq!(soon.earlier(tie), soon, "a tie keeps the first");
    }

    #[test]
    fn waits_round_up_to_whole_milliseconds_and_none_is_forever() {
        assert_eq!(wait_millis(None), -1);
        assert_eq!(wait_millis(Some(Duration::ZERO)), 0);
        assert_eq!(wait_millis(Some(Duration::from_nanos(1))), 1, "a wait never ends early");
        assert_eq!(wait_millis(Some(Duration::from_millis(1))), 1);
        assert_eq!(wait_millis(Some(Duration::from_micros(1_500))), 2);
        assert_eq!(wait_millis(Some(Duration::from_secs(3) + Duration::from_nanos(999_999_999))), 4000);
        assert_eq!(wait_millis(Some(Duration::from_secs(u64::MAX))), i32::MAX);
        assert_eq!(wait_millis(Some(Duration::from_millis(i32::MAX as u64 + 5))), i32::MAX);
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_u128_formula(secs in 0u64..5_000_000, nanos in 0u32..1_000_000_000) {
            let t = Duration::new(secs, nanos);
            let want = t.as_millis().min(i32::MAX as u128) as i32
                + i32::from(t.subsec_nanos() % 1_000_000 != 0 && t.as_millis() < i32::MAX as u128);
            proptest::prop_assert_eq!(wait_millis(Some(t)), want);
        }
    }
}
