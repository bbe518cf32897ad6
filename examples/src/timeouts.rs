//! Time limits of the example servers' connections: how long a request head (a kv
//! command) may take to arrive, how long a kept-alive connection may sit idle, and
//! how long graceful shutdown waits for the requests in hand.
//!
//! Owns the policy — which limit applies in which [`Phase`] of a connection and
//! when its deadline moves — as a small state machine per connection
//! ([`ConnTimer`]) over the runtime's coarse receive deadlines
//! (`TcpStream::set_recv_deadline`, `Batch::set_recv_deadline`). It never reads the
//! clock (callers pass `paste_rt::time::coarse_now()`), never allocates, and never
//! touches a connection: it says which deadline to set, and the caller sets it. A
//! deadline moves only when the connection changes phase or, for the idle limit, at
//! most every eighth of the limit (and at most once a second), so a busy
//! connection costs one comparison per batch of received buffers.

use std::time::{Duration, Instant};

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time for a request head (kv: a whole command) to arrive complete, counted
    /// from its first byte (HTTP: from the connection's start for its first
    /// request). `None`: no limit.
    pub header: Option<Duration>,
    /// Longest wait for the next request on a kept-alive connection, and (HTTP) the
    /// longest pause inside a request body. `None`: no limit.
    pub idle: Option<Duration>,
    /// After graceful shutdown is requested, how long a connection in the middle of
    /// a request may take to finish it before it is closed.
    pub shutdown_grace: Duration,
}

/// Default `--header-timeout`: 10 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--idle-timeout` of the HTTP servers: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--shutdown-grace`: 2 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl Timeouts {
    /// The HTTP servers' defaults (phttpd, wal): 10 s for a head, 60 s idle, 2 s grace.
    pub const HTTP: Timeouts = Timeouts {
        header: Some(DEFAULT_HEADER_TIMEOUT),
        idle: Some(DEFAULT_IDLE_TIMEOUT),
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
    };
    /// kv's defaults: 10 s for a command, no idle limit (as memcached), 2 s grace.
    pub const KV: Timeouts =
        Timeouts { header: Some(DEFAULT_HEADER_TIMEOUT), idle: None, shutdown_grace: DEFAULT_SHUTDOWN_GRACE };
    /// No receive limit (echo): only the shutdown grace.
    pub const NONE: Timeouts = Timeouts { header: None, idle: None, shutdown_grace: DEFAULT_SHUTDOWN_GRACE };
}

/// Where a connection is between two batches of received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests: nothing of the next one received.
    Idle,
    /// Part of a request head (kv: of a command) received.
    Head,
    /// The head is complete, part of the body received.
    Body,
}

/// A deadline change for the caller to apply: `Some(d)` means "set the receive
/// deadline to `d`" (`d` may be `None`: clear it); `None` means "leave it".
pub type DeadlineChange = Option<Option<Instant>>;

/// One connection's deadline state (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct ConnTimer {
    timeouts: Timeouts,
    /// How stale the idle deadline may get ([`refresh_step`] of the idle limit).
    idle_step: Duration,
    phase: Phase,
    /// The deadline last handed out.
    deadline: Option<Instant>,
    /// From when an idle (or body) deadline in the same phase moves again; `None`:
    /// it does not (the head's deadline, no limit, or the shutdown grace).
    refresh_at: Option<Instant>,
    /// Graceful shutdown fixed the deadline: it never moves again.
    in_grace: bool,
}

impl ConnTimer {
    /// A new connection starting in `phase` (HTTP: [`Phase::Head`], so that a client
    /// that sends nothing has the header limit; kv: [`Phase::Idle`]), and the
    /// deadline to set on it.
    pub fn start(timeouts: Timeouts, phase: Phase, now: Instant) -> (ConnTimer, Option<Instant>) {
        let idle_step = timeouts.idle.map_or(Duration::ZERO, refresh_step);
        let mut timer = ConnTimer { timeouts, idle_step, phase, deadline: None, refresh_at: None, in_grace: false };
        let deadline = timer.arm(phase, now);
        (timer, deadline)
    }

    /// The phase the connection was last seen in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The connection was left in `phase` by the bytes received up to `now`: the
    /// deadline to set, if it changes. A head's deadline counts from when the head
    /// was first seen, so bytes trickling in never extend it. The common case —
    /// same phase, nothing due — is two comparisons.
    #[inline]
    pub fn update(&mut self, phase: Phase, now: Instant) -> DeadlineChange {
        if phase == self.phase && self.refresh_at.is_none_or(|at| now < at) {
            return None;
        }
        self.phase = phase;
        if self.in_grace {
            return None;
        }
        let before = self.deadline;
        let deadline = self.arm(phase, now);
        (deadline != before).then_some(deadline)
    }

    /// The deadline of `phase` entered (or refreshed) at `now`, and when it may move.
    fn arm(&mut self, phase: Phase, now: Instant) -> Option<Instant> {
        let limit = limit(&self.timeouts, phase);
        self.refresh_at = match phase {
            Phase::Idle | Phase::Body if limit.is_some() => Some(now + self.idle_step),
            _ => None,
        };
        let deadline = limit.map(|l| now + l);
        self.deadline = deadline;
        deadline
    }

    /// Graceful shutdown started while this connection is in the middle of a
    /// request: the deadline that gives it at most the shutdown grace (once; later
    /// calls change nothing, and the deadline no longer moves).
    pub fn shutdown(&mut self, now: Instant) -> DeadlineChange {
        if self.in_grace {
            return None;
        }
        self.in_grace = true;
        self.refresh_at = None;
        let grace = now + self.timeouts.shutdown_grace;
        let deadline = Some(self.deadline.map_or(grace, |d| d.min(grace)));
        if deadline == self.deadline {
            return None;
        }
        self.deadline = deadline;
        Some(deadline)
    }
}

/// The limit of `phase`.
fn limit(timeouts: &Timeouts, phase: Phase) -> Option<Duration> {
    match phase {
        Phase::Idle | Phase::Body => timeouts.idle,
        Phase::Head => timeouts.header,
    }
}

/// How stale an idle deadline may get before it is moved: an eighth of the limit,
/// at most a second (so the limit is honoured within that much).
fn refresh_step(limit: Duration) -> Duration {
    (limit / 8).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Some(Duration::from_secs(10)),
        idle: Some(Duration::from_secs(60)),
        shutdown_grace: Duration::from_secs(2),
    };

    #[test]
    fn a_head_deadline_counts_from_the_first_byte_and_trickling_never_extends_it() {
        let t0 = Instant::now();
        let (mut timer, first) = ConnTimer::start(T, Phase::Idle, t0);
        assert_eq!(first, Some(t0 + Duration::from_secs(60)));
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(timer.update(Phase::Head, t1), Some(Some(t1 + Duration::from_secs(10))));
        for s in 6..30 {
            assert_eq!(timer.update(Phase::Head, t0 + Duration::from_secs(s)), None, "trickle at {s} s");
        }
        let t2 = t0 + Duration::from_secs(9);
        assert_eq!(timer.update(Phase::Body, t2), Some(Some(t2 + Duration::from_secs(60))));
        assert_eq!(timer.update(Phase::Idle, t2), None, "same deadline: nothing to set");
    }

    #[test]
    fn an_idle_deadline_moves_at_most_once_a_second() {
        let t0 = Instant::now();
        let (mut timer, _) = ConnTimer::start(T, Phase::Idle, t0);
        assert_eq!(timer.update(Phase::Idle, t0 + Duration::from_millis(999)), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(timer.update(Phase::Idle, t1), Some(Some(t1 + Duration::from_secs(60))));
        let short = Timeouts { idle: Some(Duration::from_millis(800)), ..T };
        let (mut timer, _) = ConnTimer::start(short, Phase::Idle, t0);
        assert_eq!(timer.update(Phase::Idle, t0 + Duration::from_millis(99)), None);
        assert!(timer.update(Phase::Idle, t0 + Duration::from_millis(100)).is_some(), "an eighth of 800 ms");
    }

    #[test]
    fn no_limit_means_no_deadline() {
        let t0 = Instant::now();
        let (mut timer, first) = ConnTimer::start(Timeouts::NONE, Phase::Head, t0);
        assert_eq!(first, None);
        assert_eq!(timer.update(Phase::Idle, t0), None);
        assert_eq!(timer.update(Phase::Head, t0 + Duration::from_secs(100)), None);
        let (mut kv, first) = ConnTimer::start(Timeouts::KV, Phase::Idle, t0);
        assert_eq!(first, None, "kv has no idle limit by default");
        assert_eq!(kv.update(Phase::Head, t0), Some(Some(t0 + DEFAULT_HEADER_TIMEOUT)));
        assert_eq!(kv.update(Phase::Idle, t0), Some(None), "back to idle clears it");
    }

    #[test]
    fn shutdown_caps_the_deadline_at_the_grace_once() {
        let t0 = Instant::now();
        let (mut timer, _) = ConnTimer::start(T, Phase::Head, t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(timer.shutdown(t1), Some(Some(t1 + Duration::from_secs(2))));
        assert_eq!(timer.shutdown(t1 + Duration::from_secs(1)), None);
        assert_eq!(timer.update(Phase::Body, t1 + Duration::from_secs(1)), None, "fixed during the grace");
        // A head deadline earlier than the grace stays.
        let (mut timer, _) = ConnTimer::start(T, Phase::Head, t0);
        assert_eq!(timer.shutdown(t0 + Duration::from_secs(9)), None);
        // No limit at all: the grace applies.
        let (mut timer, _) = ConnTimer::start(Timeouts::NONE, Phase::Idle, t0);
        assert_eq!(timer.shutdown(t0), Some(Some(t0 + DEFAULT_SHUTDOWN_GRACE)));
    }
}
