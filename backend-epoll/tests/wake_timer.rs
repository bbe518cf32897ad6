//! The epoll backend's wake-up timer: waits for one instant arm a kernel timer once
//! and then wait untimed; the timer ends a wait at its instant; an earlier instant
//! arms it again, a later one does not; a short wait keeps its own timeout.

use std::time::{Duration, Instant};

use paste_rt_core::conformance::Kit;
use paste_rt_core::{Backend, StatsSnapshot, Wait};
use paste_rt_epoll::{EpollBackend, EpollConfig};

fn kit() -> Kit<EpollBackend> {
    Kit::new(EpollBackend::new(EpollConfig::default()).expect("the epoll backend starts"))
}

/// One tick waiting for `at`, ended at once by a remote wake (so the test never
/// waits for the instant itself).
fn woken_poll(k: &mut Kit<EpollBackend>, at: Instant) {
    k.be.remote_waker().wake();
    let left = at.saturating_duration_since(Instant::now());
    k.be.poll(&mut k.io, Wait::Until { at, left }).expect("poll");
}

/// System calls besides the waits, and timers armed, since `before`.
fn calls_and_arms(k: &Kit<EpollBackend>, before: StatsSnapshot) -> (u64, u64) {
    let d = k.stats() - before;
    (d.syscalls - d.waits, d.wait_timers)
}

#[test]
fn waits_for_one_instant_arm_the_timer_once() {
    let mut k = kit();
    let at = Instant::now() + Duration::from_secs(5);
    let before = k.stats();
    for _ in 0..50 {
        woken_poll(&mut k, at);
    }
    let (calls, arms) = calls_and_arms(&k, before);
    assert_eq!(arms, 1, "one timer for fifty waits for the same instant");
    assert_eq!(calls, 1, "the arming is the only system call besides the waits");
    assert_eq!(k.stats().waits - before.waits, 50);
}

#[test]
fn the_timer_ends_an_untimed_wait_at_its_instant() {
    let mut k = kit();
    let left = Duration::from_millis(30);
    let start = Instant::now();
    let before = k.stats();
    k.be.poll(&mut k.io, Wait::Until { at: start + left, left }).expect("poll");
    let waited = start.elapsed();
    assert!(waited >= left, "the wait ended before its instant: {waited:?}");
    assert!(waited < Duration::from_secs(5), "the timer never ended the wait: {waited:?}");
    assert_eq!(calls_and_arms(&k, before).1, 1);
    // The expiry was seen: the next instant arms the timer again.
    woken_poll(&mut k, Instant::now() + Duration::from_secs(5));
    assert_eq!(calls_and_arms(&k, before).1, 2);
}

#[test]
fn an_earlier_instant_arms_again_and_a_later_one_waits_for_the_armed_timer() {
    let mut k = kit();
    let now = Instant::now();
    let before = k.stats();
    woken_poll(&mut k, now + Duration::from_secs(20));
    woken_poll(&mut k, now + Duration::from_secs(10));
    assert_eq!(calls_and_arms(&k, before), (2, 2), "an earlier instant needs the timer moved");
    // Armed for 10 s: a wait for 30 s ends no later than the wait it was armed for
    // (early, which the runtime takes as a spurious wake-up), so nothing is armed.
    woken_poll(&mut k, now + Duration::from_secs(30));
    woken_poll(&mut k, now + Duration::from_secs(10));
    assert_eq!(calls_and_arms(&k, before), (2, 2));
}

#[test]
fn a_short_wait_keeps_its_own_timeout() {
    let mut k = kit();
    let before = k.stats();
    let left = Duration::from_millis(1);
    let start = Instant::now();
    k.be.poll(&mut k.io, Wait::Until { at: start + left, left }).expect("poll");
    assert!(start.elapsed() >= left, "the wait ended before its limit");
    assert_eq!(calls_and_arms(&k, before), (0, 0), "no timer for a wait shorter than two milliseconds");
    k.be.poll(&mut k.io, Wait::Poll).expect("poll");
    assert_eq!(calls_and_arms(&k, before), (0, 0), "no timer for a poll");
}
