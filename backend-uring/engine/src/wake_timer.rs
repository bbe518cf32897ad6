//! The tick's wake-up timer: kernel timeouts kept armed across waits, so that a wait
//! which must end by an instant blocks without a timer of its own.
//!
//! ## Why
//!
//! A wait with a time limit — the timeout passed in the enter (`EXT_ARG`), or the first
//! stage of a wait that looks past a quiet send (`min_wait_usec`, see [`submit`]) — makes
//! the kernel arm a high-resolution timer when the waiting thread sleeps and cancel it
//! when it wakes: once per wait. A server whose connections have receive deadlines waits
//! with a limit every time (its next deadline sweep), and at one connection a quiet wait
//! comes with every request, so that timer is armed and cancelled once per request. In a
//! virtual machine programming the timer device is dear. The deadline, though, is the
//! same instant for every wait until the sweep runs, and the quiet wait's bound only
//! needs *some* completion to come within a span.
//!
//! ## The rule
//!
//! A wait that must end by instant `need` blocks untimed while the timer stands armed at
//! or before `need`. A timer is two `IORING_OP_TIMEOUT`s at one instant, in the ring:
//! when it fires it posts two completions, so it also ends a wait that asks for two
//! completions (one quiet send's and one more) when the kernel parked that send and its
//! completion does not come. What a wait needs:
//!
//! - a wait until instant `at` (the runtime's next timer or deadline sweep): fire by `at`;
//! - a wait that looks past one quiet send for at most `within`
//!   ([`QuietCompletions::within`](crate::QuietCompletions)): fire within `within` of the
//!   wait. A timer that was armed to fire within `within` of its arming fires within
//!   `within` of any later wait too, so one such arming serves every wait until it fires;
//! - both, for a quiet wait with a deadline.
//!
//! A timer armed too late for a wait is moved earlier in place (`IORING_TIMEOUT_UPDATE`,
//! with its own completion skipped on success); once it has fired it is armed anew under
//! a new generation, so the late completions of an earlier arming are recognised. At
//! most two arming pairs are ever in the kernel. Waits that are short
//! ([`MIN_TIMED_WAIT`]), that look past more than one quiet send, or that a listener's
//! retry shortens, keep their own limit as before: the first are a runtime timer's
//! business, the second share their timer among several requests, the last are rare.
//! A timer that fires while nothing is due is a spurious wake-up: the tick finds nothing
//! to do and waits again.
//!
//! [`submit`]: crate::submit

use std::time::{Duration, Instant};

use io_uring::types::Timespec;
use io_uring::{opcode, squeue};

use crate::user_data::{encode, OpKind, GEN_MASK};

/// Waits shorter than this keep their own timeout: arming the shared timer for them
/// costs as much as the wait's own timer and is seldom reused.
pub const MIN_TIMED_WAIT: Duration = Duration::from_millis(2);

/// Timeouts per arming (see the module docs: two completions end a quiet wait).
const TIMEOUTS: u32 = 2;
/// The `user_data` id of an update, whose completion (a failure only) is ignored.
const UPDATE: u32 = TIMEOUTS;

/// What one blocking wait needs the timer for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Need {
    /// The wait's own end: the instant and the time left until it.
    pub(crate) until: Option<(Instant, Duration)>,
    /// Whether the wait looks past a quiet send (it asks for one completion more than
    /// it otherwise would), for at most the timer's guard span.
    pub(crate) guard: bool,
}

/// An arming in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Armed {
    /// When it fires.
    at: Instant,
    /// Whether it fires within the guard span of its arming (so within that span of
    /// any later wait).
    guards: bool,
}

/// The wake-up timer's state; see the module docs.
pub struct WakeTimer {
    armed: Option<Armed>,
    /// The longest a wait may look past a quiet send.
    guard_span: Duration,
    gen: u32,
    /// What the timeout SQEs point to until they are submitted (the kernel copies it
    /// then). Boxed, so it never moves.
    ts: Box<Timespec>,
}

impl WakeTimer {
    /// A timer that guards waits past a quiet send for at most `guard_span`
    /// ([`QuietCompletions::within`](crate::QuietCompletions)).
    pub fn new(guard_span: Duration) -> WakeTimer {
        WakeTimer { armed: None, guard_span, gen: 0, ts: Box::new(Timespec::new()) }
    }

    /// Whether the armed timer ends, in time, a wait until `at` (if it has an
    /// instant) that looks past a quiet send if `guard`. The tick's check: a few
    /// compares, no clock read.
    #[inline(always)]
    pub fn covers(&self, at: Option<Instant>, guard: bool) -> bool {
        match self.armed {
            Some(a) => (a.guards || !guard) && at.is_none_or(|at| a.at <= at),
            None => false,
        }
    }

    /// Arms the timer for `need` (which it does not [`covers`](Self::covers)), or
    /// moves it earlier: the SQEs that do it. `now` is read only when the wait has no
    /// instant of its own. `need` has an instant, a guard or both (the engine's tick
    /// asks for nothing else).
    pub(crate) fn arm(&mut self, need: Need, now: impl FnOnce() -> Instant) -> [squeue::Entry; TIMEOUTS as usize] {
        let (at, after) = self.instant_for(need, now);
        *self.ts = Timespec::new().sec(after.as_secs()).nsec(after.subsec_nanos());
        let ts: *const Timespec = &*self.ts;
        let entries = if self.armed.is_some() {
            // Still armed, but too late: move both timeouts earlier, in place.
            std::array::from_fn(|i| {
                opcode::TimeoutUpdate::new(self.user_data(i as u32), ts)
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(self.user_data(UPDATE))
            })
        } else {
            self.gen = self.gen.wrapping_add(1) & GEN_MASK;
            std::array::from_fn(|i| opcode::Timeout::new(ts).build().user_data(self.user_data(i as u32)))
        };
        self.armed = Some(Armed { at, guards: after <= self.guard_span });
        entries
    }

    /// The instant (and the delay from now) to arm at for `need`: its own end, or
    /// earlier to guard a quiet send.
    fn instant_for(&self, need: Need, now: impl FnOnce() -> Instant) -> (Instant, Duration) {
        let span = self.guard_span;
        match (need.until, need.guard) {
            (Some((at, left)), true) if span < left => (at.checked_sub(left).unwrap_or(at) + span, span),
            (Some((at, left)), _) => (at, left),
            (None, true) => (now() + span, span),
            (None, false) => unreachable!("a wait with neither an end nor a quiet send needs no timer"),
        }
    }

    /// A completion of kind [`OpKind::Timer`] with this `id`, `gen` and result: a
    /// timeout of the current arming fired (or was cancelled), so nothing is armed any
    /// more. A move that failed because the timeout had already fired (`ENOENT`)
    /// changes nothing (that timeout's own completion comes too); one that failed
    /// otherwise leaves the timer at its later instant, so it no longer counts as
    /// armed and the next wait arms anew. An earlier arming's completion is stale.
    pub fn completed(&mut self, id: u32, gen: u32, res: i32) {
        if gen == self.gen && (id < TIMEOUTS || res != -libc::ENOENT) {
            self.armed = None;
        }
    }

    fn user_data(&self, id: u32) -> u64 {
        encode(id, OpKind::Timer, self.gen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submit::{enter, QuietCompletions, Wait};
    use crate::user_data::decode;
    use io_uring::IoUring;

    const MS: Duration = Duration::from_millis(1);

    impl WakeTimer {
        /// Whether a timer is armed (and has not been seen to fire).
        fn is_armed(&self) -> bool {
            self.armed.is_some()
        }

        /// What the engine's tick does: `None` when the armed timer covers `need`,
        /// else the SQEs of [`arm`](WakeTimer::arm).
        fn cover(&mut self, need: Need, now: impl FnOnce() -> Instant) -> Option<[squeue::Entry; TIMEOUTS as usize]> {
            if self.covers(need.until.map(|(at, _)| at), need.guard) {
                return None;
            }
            Some(self.arm(need, now))
        }
    }

    fn until(now: Instant, left: Duration) -> Option<(Instant, Duration)> {
        Some((now + left, left))
    }

    #[test]
    fn one_arming_serves_every_wait_for_the_same_or_a_later_instant() {
        let (mut t, now) = (WakeTimer::new(10 * MS), Instant::now());
        let need = Need { until: until(now, 100 * MS), guard: false };
        assert!(t.cover(need, || unreachable!()).is_some(), "the first wait arms it");
        for k in 0..50 {
            // The same sweep instant, seen from later and later ticks.
            let later = now + k * MS;
            let need = Need { until: Some((now + 100 * MS, now + 100 * MS - later)), guard: false };
            assert!(t.cover(need, || unreachable!()).is_none());
        }
        assert!(t.cover(Need { until: until(now, 500 * MS), guard: false }, || now).is_none(), "a later instant");
        assert!(
            t.cover(Need { until: until(now, 50 * MS), guard: false }, || now).is_some(),
            "an earlier one moves it"
        );
        // Two armings: the first (a new generation) and the move (in place, the same).
        assert_eq!((t.gen, t.is_armed()), (1, true), "one arming, then one move");
    }

    #[test]
    fn a_quiet_wait_needs_an_arming_that_fires_within_its_bound() {
        let (mut t, now) = (WakeTimer::new(10 * MS), Instant::now());
        // Armed for a sweep 100 ms away: too late to guard a quiet send for 10 ms.
        assert!(t.cover(Need { until: until(now, 100 * MS), guard: false }, || now).is_some());
        let quiet = Need { until: until(now, 100 * MS), guard: true };
        let moved = t.cover(quiet, || unreachable!()).expect("moved earlier");
        assert!(moved.iter().all(|e| decode(e.get_user_data()) == (UPDATE, Some(OpKind::Timer), t.gen)));
        // Now it guards every later quiet wait, with or without a deadline, until it fires.
        for _ in 0..100 {
            assert!(t.cover(quiet, || unreachable!()).is_none());
            assert!(t.cover(Need { until: None, guard: true }, || unreachable!()).is_none());
            assert!(t.cover(Need { until: until(now, 100 * MS), guard: false }, || unreachable!()).is_none());
        }
        // It fired: the next quiet wait arms a new one, of a new generation.
        let gen = t.gen;
        t.completed(1, gen, -libc::ETIME);
        assert!(!t.is_armed());
        let fresh = t.cover(Need { until: None, guard: true }, || now).expect("armed anew");
        assert!(fresh.iter().all(|e| decode(e.get_user_data()).2 == gen + 1));
        // The late second completion of the old arming, and an update's failure,
        // leave the new one armed.
        t.completed(0, gen, -libc::ETIME);
        t.completed(UPDATE, gen + 1, -libc::ENOENT);
        assert!(t.is_armed());
        // A move that failed otherwise leaves it at a later instant: not armed for us.
        t.completed(UPDATE, gen + 1, -libc::EINVAL);
        assert!(!t.is_armed());
    }

    #[test]
    fn a_deadline_nearer_than_the_guard_is_armed_for_itself() {
        let now = Instant::now();
        let need = Need { until: until(now, 3 * MS), guard: true };
        let t = WakeTimer::new(10 * MS);
        assert_eq!(t.instant_for(need, || unreachable!()), (now + 3 * MS, 3 * MS));
        let need = Need { until: until(now, 30 * MS), guard: true };
        assert_eq!(t.instant_for(need, || unreachable!()), (now + 10 * MS, 10 * MS));
    }

    /// Enters `ring` from a test, which holds no submission view across calls.
    fn enter_now(ring: &IoUring, wait: Wait, quiet: QuietCompletions) {
        // SAFETY: the tests make submission views only as temporaries.
        unsafe { enter(ring, wait, quiet) }.unwrap();
    }

    fn push_all(ring: &mut IoUring, entries: &[squeue::Entry]) {
        for e in entries {
            // SAFETY: timeouts and updates point only at the timer's boxed timespec,
            // which outlives the enter that submits them.
            unsafe { ring.submission().push(e) }.unwrap();
        }
    }

    /// Runs `check` on a ring as the engine makes it (completion work deferred to
    /// the enter) and on one with the kernel's default task work.
    fn on_each_ring(check: impl Fn(IoUring)) {
        check(IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(8).unwrap());
        check(IoUring::new(8).unwrap());
    }

    /// Makes `t` cover `need` in `ring`: the SQEs it asks for, queued (not entered).
    fn cover_in(ring: &mut IoUring, t: &mut WakeTimer, need: Need) {
        let entries = t.cover(need, Instant::now).expect("the timer had to be armed or moved");
        push_all(ring, &entries);
    }

    #[test]
    fn a_firing_ends_a_wait_for_two_completions_when_the_quiet_one_never_comes() {
        on_each_ring(firing_ends_a_wait_for_two);
    }

    /// The parked-send case: the wait asks for two completions, nothing else ever
    /// completes, and the timer alone must end it.
    fn firing_ends_a_wait_for_two(mut ring: IoUring) {
        let mut t = WakeTimer::new(20 * MS);
        let start = Instant::now();
        cover_in(&mut ring, &mut t, Need { until: None, guard: true });
        // A backstop, so that a timer posting one completion fails this test rather
        // than hanging it.
        let backstop = Timespec::new().sec(5);
        // SAFETY: `backstop` outlives the enter that submits it.
        unsafe { ring.submission().push(&opcode::Timeout::new(&backstop).build().user_data(u64::MAX)) }.unwrap();
        enter_now(&ring, Wait::OnTimer, QuietCompletions { count: 1, within: 20 * MS });
        let elapsed = start.elapsed();
        assert!(elapsed >= 20 * MS && elapsed < 4000 * MS, "the timer alone must end the wait: {elapsed:?}");
        let seen: Vec<_> = ring.completion().map(|c| (decode(c.user_data()), c.result())).collect();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for ((id, kind, gen), res) in seen {
            assert_eq!((kind, gen, res), (Some(OpKind::Timer), t.gen, -libc::ETIME));
            t.completed(id, gen, -libc::ETIME);
        }
        assert!(!t.is_armed());
    }

    #[test]
    fn a_move_earlier_takes_effect_and_its_success_posts_nothing() {
        on_each_ring(move_earlier_takes_effect);
    }

    fn move_earlier_takes_effect(mut ring: IoUring) {
        let mut t = WakeTimer::new(10 * MS);
        cover_in(&mut ring, &mut t, Need { until: until(Instant::now(), 3_600_000 * MS), guard: false });
        enter_now(&ring, Wait::No, QuietCompletions::NONE);
        assert_eq!(ring.completion().len(), 0, "an hour away: armed, nothing yet");
        cover_in(&mut ring, &mut t, Need { until: until(Instant::now(), 20 * MS), guard: false });
        let start = Instant::now();
        // A wait for one completion: the successful updates must not end it.
        enter_now(&ring, Wait::OnTimer, QuietCompletions::NONE);
        assert!(start.elapsed() >= 15 * MS, "ended before the moved timer: {:?}", start.elapsed());
        let seen: Vec<_> = ring.completion().map(|c| decode(c.user_data())).collect();
        assert!(seen.iter().all(|&(id, kind, _)| kind == Some(OpKind::Timer) && id < TIMEOUTS), "{seen:?}");
    }
}
