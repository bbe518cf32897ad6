//! [`WakeTimer`]: a timerfd in the epoll set that ends waits at the runtime's next
//! timer or receive-deadline sweep, armed once per instant instead of once per wait.
//!
//! `epoll_wait` with a timeout arms a kernel high-resolution timer and cancels it
//! when an event comes first — on every call. A server whose connections have
//! receive deadlines always waits with a limit, and its next deadline sweep is the
//! same instant for every wait until the sweep runs (the `at` of
//! [`Wait::Until`](paste_rt_core::Wait::Until)). With this timer armed for that
//! instant, those waits take no timeout at all, and the kernel's timer work happens
//! once per instant. Measured on the 2-core VM the
//! benchmarks run on: a one-connection ping-pong over loopback costs the waiting
//! side about 1 µs more CPU per round trip (of about 21 µs) with a 100 ms
//! `epoll_wait` timeout than with none.
//!
//! The rule that keeps it correct: a wait may go untimed only while the timer stands
//! armed *at or before* the instant the wait is for. It then ends the wait on time,
//! or early (a spurious wake-up: the tick finds nothing due and waits again, with the
//! timer armed for the new instant). Its expiry is an edge-triggered event that is
//! never read ([`expired`](WakeTimer::expired) forgets the arming); `timerfd_settime`
//! resets the count.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use paste_rt_core::{wait_millis, Stats};

use crate::sys;

/// The epoll backend's wake-up timer (see the module docs).
#[derive(Debug)]
pub(crate) struct WakeTimer {
    fd: OwnedFd,
    /// The instant the timer is armed for, until its expiry is seen.
    armed: Option<Instant>,
}

impl WakeTimer {
    /// Waits shorter than this take `epoll_wait`'s own timeout: a short wait is
    /// usually a timer due soon, for which a kernel timer of its own would be armed
    /// as often as the wait.
    pub(crate) const MIN_LEFT: Duration = Duration::from_millis(2);

    /// Creates the timerfd and adds it to `epfd`, its events carrying `data`.
    pub(crate) fn new(stats: &Stats, epfd: &OwnedFd, data: u64) -> io::Result<WakeTimer> {
        let fd = sys::timerfd(stats)?;
        sys::epoll_add(stats, epfd, fd.as_raw_fd(), (libc::EPOLLIN | libc::EPOLLET) as u32, data)?;
        Ok(WakeTimer { fd, armed: None })
    }

    /// The `epoll_wait` timeout for a wait until `at`, at most `left` from now: -1
    /// (none) once the timer stands armed at or before `at` — armed now, with one
    /// `timerfd_settime`, when it was not — else (`left` is short, or arming failed)
    /// `left` in milliseconds.
    pub(crate) fn timeout_ms(&mut self, stats: &Stats, at: Instant, left: Duration) -> i32 {
        if self.armed.is_some_and(|armed| armed <= at) {
            return -1;
        }
        if left < Self::MIN_LEFT {
            return wait_millis(Some(left));
        }
        match sys::timerfd_arm(stats, &self.fd, left) {
            Ok(()) => {
                Stats::add(&stats.wait_timers, 1);
                self.armed = Some(at);
                -1
            }
            // (Not expected: the fd is ours and the value valid.) The wait keeps a
            // timeout of its own.
            Err(_) => wait_millis(Some(left)),
        }
    }

    /// The timer's expiry event came: the next wait arms it again.
    pub(crate) fn expired(&mut self) {
        self.armed = None;
    }
}
