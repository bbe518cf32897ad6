//! Counters a backend keeps and the benchmark reports next to throughput.
//!
//! One [`Stats`] per runtime thread, updated with plain `Cell` stores (no atomics
//! on the data path). [`Stats::snapshot`] copies them out; subtracting two
//! snapshots gives the figures of a measurement window.

use std::cell::Cell;
use std::ops::Sub;

/// Live counters of one backend instance.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls to `poll` (one per runtime tick).
    pub ticks: Cell<u64>,
    /// System calls made by the backend, every kind.
    pub syscalls: Cell<u64>,
    /// System calls that may block (`epoll_wait`, `io_uring_enter` with a wait,
    /// `poll` on a PASTE port).
    pub waits: Cell<u64>,
    /// Completions applied to records (io_uring CQEs, epoll reads and writes, PASTE
    /// slots), each exactly once: there is no intermediate completion list.
    pub completions: Cell<u64>,
    /// Operations handed to the kernel: io_uring SQEs, epoll `read`/`write`/`send`
    /// calls, PASTE TX slots.
    pub submissions: Cell<u64>,
    /// Receive buffers delivered.
    pub rx_buffers: Cell<u64>,
    /// Bytes delivered in receive buffers.
    pub rx_bytes: Cell<u64>,
    /// Ticks that delivered at least one receive buffer.
    pub rx_batches: Cell<u64>,
    /// Bytes handed to the kernel for sending.
    pub tx_bytes: Cell<u64>,
    /// Connections accepted.
    pub accepts: Cell<u64>,
    /// Wake-ups from other threads that interrupted a wait.
    pub remote_wakeups: Cell<u64>,
    /// Times receiving paused because the pool had no free buffer.
    pub pool_exhausted: Cell<u64>,
    /// System calls made outside `poll` (after the backend started). The data path
    /// must keep this at zero: tests assert it.
    pub syscalls_outside_poll: Cell<u64>,
    /// Kernel timers armed (or moved earlier) to end waits: epoll's wake-up timer for
    /// the runtime's next timer or deadline sweep, once per instant, not once per wait
    /// (a `timerfd_settime`, also counted in `syscalls`); io_uring's timer in the ring,
    /// which also bounds a wait past a quiet send, about once per 10 ms while such
    /// waits go on (two SQEs in the tick's enter, not counted in `submissions`).
    pub wait_timers: Cell<u64>,
    in_poll: Cell<bool>,
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get() + n);
    }

    /// Counts `n` system calls made together (a backend's walk over its ready
    /// sockets counts its reads or writes once, at the end).
    #[inline]
    pub fn syscalls(&self, n: u64) {
        Self::add(&self.syscalls, n);
        if !self.in_poll.get() {
            Self::add(&self.syscalls_outside_poll, n);
        }
    }

    /// Counts one system call.
    #[inline]
    pub fn syscall(&self) {
        Self::add(&self.syscalls, 1);
        if !self.in_poll.get() {
            Self::add(&self.syscalls_outside_poll, 1);
        }
    }

    /// Marks the start of one `poll` and counts the tick: system calls counted
    /// until [`exit_poll`](Self::exit_poll) are inside `poll`.
    #[inline]
    pub fn enter_poll(&self) {
        Self::add(&self.ticks, 1);
        self.in_poll.set(true);
    }

    /// Marks the end of a `poll`.
    #[inline]
    pub fn exit_poll(&self) {
        self.in_poll.set(false);
    }

    /// Copies the counters out.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            ticks: self.ticks.get(),
            syscalls: self.syscalls.get(),
            waits: self.waits.get(),
            completions: self.completions.get(),
            submissions: self.submissions.get(),
            rx_buffers: self.rx_buffers.get(),
            rx_bytes: self.rx_bytes.get(),
            rx_batches: self.rx_batches.get(),
            tx_bytes: self.tx_bytes.get(),
            accepts: self.accepts.get(),
            remote_wakeups: self.remote_wakeups.get(),
            pool_exhausted: self.pool_exhausted.get(),
            syscalls_outside_poll: self.syscalls_outside_poll.get(),
            wait_timers: self.wait_timers.get(),
            pool_in_use: 0,
        }
    }
}

/// A copy of [`Stats`] at one moment, plus the pool's buffers in use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::ticks`].
    pub ticks: u64,
    /// See [`Stats::syscalls`].
    pub syscalls: u64,
    /// See [`Stats::waits`].
    pub waits: u64,
    /// See [`Stats::completions`].
    pub completions: u64,
    /// See [`Stats::submissions`].
    pub submissions: u64,
    /// See [`Stats::rx_buffers`].
    pub rx_buffers: u64,
    /// See [`Stats::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`Stats::rx_batches`].
    pub rx_batches: u64,
    /// See [`Stats::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`Stats::accepts`].
    pub accepts: u64,
    /// See [`Stats::remote_wakeups`].
    pub remote_wakeups: u64,
    /// See [`Stats::pool_exhausted`].
    pub pool_exhausted: u64,
    /// See [`Stats::syscalls_outside_poll`].
    pub syscalls_outside_poll: u64,
    /// See [`Stats::wait_timers`].
    pub wait_timers: u64,
    /// Pool buffers lent out when the snapshot was taken (not a counter: a
    /// difference of two snapshots keeps the later value).
    pub pool_in_use: u64,
}

impl StatsSnapshot {
    /// Mean receive buffers per tick that received anything.
    pub fn mean_rx_batch(&self) -> f64 {
        if self.rx_batches == 0 {
            0.0
        } else {
            self.rx_buffers as f64 / self.rx_batches as f64
        }
    }

    /// System calls per `n` requests.
    pub fn syscalls_per(&self, n: u64) -> f64 {
        if n == 0 {
            0.0
        } else {
            self.syscalls as f64 / n as f64
        }
    }
}

impl Sub for StatsSnapshot {
    type Output = StatsSnapshot;
    fn sub(self, before: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            ticks: self.ticks - before.ticks,
            syscalls: self.syscalls - before.syscalls,
            waits: self.waits - before.waits,
            completions: self.completions - before.completions,
            submissions: self.submissions - before.submissions,
            rx_buffers: self.rx_buffers - before.rx_buffers,
            rx_bytes: self.rx_bytes - before.rx_bytes,
            rx_batches: self.rx_batches - before.rx_batches,
            tx_bytes: self.tx_bytes - before.tx_bytes,
            accepts: self.accepts - before.accepts,
            remote_wakeups: self.remote_wakeups - before.remote_wakeups,
            pool_exhausted: self.pool_exhausted - before.pool_exhausted,
            syscalls_outside_poll: self.syscalls_outside_poll - before.syscalls_outside_poll,
            wait_timers: self.wait_timers - before.wait_timers,
            pool_in_use: self.pool_in_use,
        }
    }
}
