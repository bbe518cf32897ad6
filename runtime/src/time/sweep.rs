//! [`SweepClock`]: when the runtime next checks receive deadlines, and how long a
//! tick may wait before then, without subtracting two `Instant`s on every tick.
//!
//! Receive deadlines are swept every [`SweepClock::PERIOD`] while any is set, so
//! every tick that waits needs "time until the next sweep". std's `Instant`
//! subtraction is an out-of-line call of about forty instructions (it cannot be
//! inlined across the standard library) while comparing two `Instant`s is a few. The
//! clock therefore measures the exact time left once, at a millisecond mark, and
//! answers later ticks from the mark with one comparison: the wait it gives is at
//! most one millisecond longer than the exact time left (and never shorter), which
//! `poll(2)` and `epoll_wait(2)` round to anyway. It never reads the clock itself:
//! callers pass the tick's `now`. The wait also names the sweep's instant
//! ([`Wait::Until`]), the same one until the sweep runs.

use std::cell::Cell;
use std::time::{Duration, Instant};

use paste_rt_core::Wait;

/// The next receive-deadline sweep and the whole milliseconds left before it.
#[derive(Debug)]
pub(crate) struct SweepClock {
    /// When the next sweep is due.
    due: Cell<Instant>,
    /// A whole number of milliseconds before `due`, measured at the last look:
    /// until `now` reaches it, at most `left_ms + 1` ms remain.
    mark: Cell<Instant>,
    /// Milliseconds from `mark` to `due`.
    left_ms: Cell<u32>,
}

impl SweepClock {
    /// Time between two sweeps: the granularity of receive deadlines.
    pub(crate) const PERIOD: Duration = Duration::from_millis(100);

    /// A clock whose first sweep is due at `now`.
    pub(crate) fn new(now: Instant) -> SweepClock {
        SweepClock { due: Cell::new(now), mark: Cell::new(now), left_ms: Cell::new(0) }
    }

    /// Whether the sweep is due at `now`.
    #[inline]
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        now >= self.due.get()
    }

    /// A sweep ran at `now`: the next is due a [`PERIOD`](Self::PERIOD) later.
    pub(crate) fn swept(&self, now: Instant) {
        self.due.set(now + Self::PERIOD);
        // Measured at the next look.
        self.mark.set(now);
    }

    /// The tick's wait at `now` as far as the sweep goes: [`Wait::Poll`] once it is
    /// due, else [`Wait::Until`] the sweep, with at least the exact time left and at
    /// most one millisecond more.
    #[inline]
    pub(crate) fn wait(&self, now: Instant) -> Wait {
        if now >= self.mark.get() {
            if self.is_due(now) {
                return Wait::Poll;
            }
            self.measure(now);
        }
        Wait::Until { at: self.due.get(), left: Duration::from_millis(u64::from(self.left_ms.get()) + 1) }
    }

    /// Measures the time left from `now` (before `due`) and sets the next mark: the
    /// whole milliseconds left, counted back from `due`. Once a millisecond at most.
    #[inline(never)]
    fn measure(&self, now: Instant) {
        let due = self.due.get();
        let left = due.saturating_duration_since(now);
        // Below u32::MAX: `due` is at most a period after any `now` it was set from.
        let whole_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX);
        self.left_ms.set(whole_ms);
        // `due - whole_ms` is after `now` unless `left` is a whole number of
        // milliseconds (then it is `now`, and the next look measures again).
        self.mark.set(due - Duration::from_millis(u64::from(whole_ms)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wait never ends before the sweep is due and never more than 1 ms after.
    fn assert_bound(clock: &SweepClock, now: Instant) {
        let exact = clock.due.get().saturating_duration_since(now);
        let wait = clock.wait(now);
        if exact.is_zero() {
            assert_eq!(wait, Wait::Poll, "due: no wait");
        } else {
            let Wait::Until { at, left: limit } = wait else { panic!("{wait:?} before the sweep") };
            assert_eq!(at, clock.due.get(), "the wait names the sweep's instant");
            assert!(limit >= exact, "waits {limit:?}, {exact:?} left: the sweep would be late");
            assert!(limit <= exact + Duration::from_millis(1), "waits {limit:?} for {exact:?} left");
        }
    }

    #[test]
    fn limit_follows_the_exact_time_left_within_a_millisecond() {
        let start = Instant::now();
        let clock = SweepClock::new(start);
        assert!(clock.is_due(start));
        assert_eq!(clock.wait(start), Wait::Poll);
        clock.swept(start);
        assert!(!clock.is_due(start));
        // Ticks at uneven steps through the period, past its end, and a new period.
        let mut at = Duration::ZERO;
        let mut step = 1u64;
        while at <= SweepClock::PERIOD + Duration::from_millis(3) {
            assert_bound(&clock, start + at);
            step = (step * 7919 + 13) % 2_100_000; // up to 2.1 ms, pseudo-random
            at += Duration::from_nanos(step);
        }
        assert!(clock.is_due(start + SweepClock::PERIOD));
        let later = start + SweepClock::PERIOD + Duration::from_millis(5);
        clock.swept(later);
        assert_bound(&clock, later);
        assert_bound(&clock, later + Duration::from_micros(999));
        assert_bound(&clock, later + Duration::from_millis(1));
        assert_bound(&clock, later + Duration::from_millis(99) + Duration::from_micros(999));
    }

    #[test]
    fn a_look_on_a_whole_millisecond_still_bounds_the_wait() {
        let start = Instant::now();
        let clock = SweepClock::new(start);
        clock.swept(start);
        // Exactly 40 ms left: the mark falls on `now` itself.
        let now = start + Duration::from_millis(60);
        assert_bound(&clock, now);
        assert_bound(&clock, now);
        assert_bound(&clock, now + Duration::from_nanos(1));
    }
}
