//! Time: [`sleep`], [`timeout`], [`interval`], driven by the runtime's timer queue.
//!
//! Timers fire in step 4 of the tick (docs/architecture.md, the tick); the wait of step 2 never
//! outlasts the earliest deadline. A timer allocates nothing once the runtime's
//! timer queue has grown to its working size.

mod sweep;
mod timers;

pub(crate) use sweep::SweepClock;
pub(crate) use timers::{TimerKey, Timers};

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use std::time::Instant;

use crate::context;
use crate::runtime::Inner;

thread_local! {
    /// The clock of the tick the thread's runtime is in (`None` outside
    /// `block_on`): a constant-initialised `Cell`, so reading it is one TLS load.
    static TICK_NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The instant the current runtime read at the start of this tick (right after
/// its wait): cheap — no clock read — and at most one tick old. Use it to compute
/// per-request deadlines such as
/// [`TcpStream::set_recv_deadline`](crate::net::TcpStream::set_recv_deadline)'s.
/// Outside a runtime it reads the clock.
#[inline]
pub fn coarse_now() -> Instant {
    TICK_NOW.with(Cell::get).unwrap_or_else(Instant::now)
}

/// Sets the tick's clock ([`coarse_now`]); returns the previous value.
pub(crate) fn set_tick_now(now: Option<Instant>) -> Option<Instant> {
    TICK_NOW.with(|c| c.replace(now))
}

/// Completes at `deadline`.
///
/// ```
/// # paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(async {
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// paste_rt::time::sleep(Duration::from_millis(5)).await;
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// # });
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, key: None, runtime: None }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// The future of [`sleep`] and [`sleep_until`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    key: Option<TimerKey>,
    runtime: Option<Rc<Inner>>,
}

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (the timer entry is reused).
    pub fn reset(&mut self, deadline: Instant) {
        self.deregister();
        self.deadline = deadline;
    }

    fn deregister(&mut self) {
        if let (Some(key), Some(rt)) = (self.key.take(), self.runtime.as_ref()) {
            rt.timers.borrow_mut().remove(key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let rt = this.runtime.get_or_insert_with(context::current);
        match this.key {
            Some(key) => {
                if rt.timers.borrow_mut().poll(key, cx.waker()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            None if Instant::now() >= this.deadline => Poll::Ready(()),
            None => {
                this.key = Some(rt.timers.borrow_mut().insert(this.deadline, cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// The error of [`timeout`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed")
    }
}

/// Runs `future` for at most `duration`; on expiry the future is dropped
/// (cancelled) and `Err(Elapsed)` is returned.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep(duration) }
}

/// The future of [`timeout`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `future`; `sleep` is Unpin and never moved
        // out. Neither field is moved while pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `future` is pinned as part of `self`.
        let fut = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(v) = fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Ticks every `period`, the first tick at once. When ticks are missed (the task
/// was busy), the next tick is scheduled one period after the late one (no burst).
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval period must be non-zero");
    Interval { period, sleep: sleep_until(Instant::now()) }
}

/// The stream-like timer of [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        (&mut self.sleep).await;
        let scheduled = self.sleep.deadline();
        let now = Instant::now();
        let next = if now > scheduled + self.period { now + self.period } else { scheduled + self.period };
        self.sleep.reset(next);
        scheduled
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}
