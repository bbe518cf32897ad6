//! The engine's tick: re-arming, the one `io_uring_enter` with its wait (and the
//! wake timer that bounds it), and the reap that applies every completion through
//! the sink in place; then the engine's shutdown.

use std::io;
use std::time::{Duration, Instant};

use io_uring::cqueue;
use io_uring::types::CancelBuilder;
use paste_rt_core::{Delivery, SendStep, Stats, Wait as TickWait};

use super::{kind, st, Role, Sink, SocketEngine};
use crate::submit::{self, QuietCompletions, Wait};
use crate::user_data::{decode, OpKind};
use crate::wake_timer::{Need, MIN_TIMED_WAIT};

impl SocketEngine {
    /// One tick of socket work: re-arms what may receive or accept again, makes the
    /// one `io_uring_enter` (submit, and wait as `wait` allows — its time left, in the
    /// enter itself — unless completions or overflowed SQEs are waiting), and applies
    /// every completion through `sink`.
    pub fn tick(&mut self, wait: TickWait, sink: &mut impl Sink, stats: &Stats) -> io::Result<()> {
        // 1. Re-arm: receives that ended in the last reap (unless paused since),
        //    receives that ran dry (as buffers allow), listeners that backed off.
        //    (Each is one look when it has nothing to do, the common tick.)
        if !self.rx_ended.is_empty() {
            self.rearm_ended(stats);
        }
        if !self.rx_starved.is_empty() {
            self.rearm_starved(sink.rx_buffers(), stats);
        }
        let retry_in = if self.accept_waiting.is_empty() {
            self.fd_freed = false;
            None
        } else {
            self.rearm_listeners(stats)
        };
        let woke = sink.before_enter();

        // 2. The one io_uring_enter.
        let (mut wait, mut wait_at) = Wait::of_tick(wait);
        if let Some(retry) = retry_in {
            // A listener's retry keeps its own limit.
            (wait, wait_at) = (wait.at_most(retry), None);
        }
        if woke {
            wait = Wait::No;
        }
        let quiet = if self.fresh_sends.is_empty() { QuietCompletions::NONE } else { self.quiet_sends(wait, sink) };
        if wait.may_block() {
            wait = self.timed_by_wake_timer(wait, wait_at, quiet, stats);
        }
        if self.sq.pending() > 0 {
            // Not all of this tick's SQEs (a timer's among them) are in the ring.
            wait = Wait::No;
        }
        stats.syscall();
        if wait.may_block() {
            Stats::add(&stats.waits, 1);
        }
        // SAFETY: no submission view is held anywhere while the engine runs
        // (shared_ring); the SQEs were pushed under `push`'s contract.
        let entered = unsafe { submit::enter(self.ring.get(), wait, quiet) };
        // SAFETY: as above.
        unsafe { self.sq.refill_ring(self.ring.get()) };
        entered?;

        // 3. Completions, applied in place.
        self.reap(sink, stats);
        Ok(())
    }

    /// Lets the wake-up timer end a blocking wait that has an instant to end by (`at`,
    /// with `wait` the time left) or looks past one quiet send
    /// ([`wake_timer`](crate::wake_timer)): returns the untimed wait to make when the
    /// armed timer ends it in time, or once the SQEs that arm it (or move it earlier)
    /// are pushed. Other waits are returned as they are.
    #[inline(always)] // once a tick, into the tick
    fn timed_by_wake_timer(&mut self, wait: Wait, at: Option<Instant>, quiet: QuietCompletions, stats: &Stats) -> Wait {
        let guard = match quiet.count {
            0 => false,
            1 => true,
            _ => return wait,
        };
        if at.is_none() && !(guard && matches!(wait, Wait::Forever)) {
            return wait;
        }
        if self.wake_timer.covers(at, guard) {
            return Wait::OnTimer;
        }
        self.arm_wake_timer(wait, at, guard, stats).unwrap_or(wait)
    }

    /// [`timed_by_wake_timer`](Self::timed_by_wake_timer)'s arming: pushes the SQEs,
    /// unless the wait is too short to share a timer ([`MIN_TIMED_WAIT`]: it keeps its
    /// own limit, `None`).
    #[cold]
    #[inline(never)]
    fn arm_wake_timer(&mut self, wait: Wait, at: Option<Instant>, guard: bool, stats: &Stats) -> Option<Wait> {
        let until = match (at, wait) {
            (Some(at), Wait::For(left)) if left >= MIN_TIMED_WAIT => Some((at, left)),
            (Some(_), _) => return None,
            (None, _) => None,
        };
        let entries = self.wake_timer.arm(Need { until, guard }, Instant::now);
        // Counted as an arming, not as I/O submissions.
        Stats::add(&stats.wait_timers, 1);
        for entry in entries {
            // SAFETY: a timeout (or its update) points only at the timer's boxed
            // timespec, which lives as long as the engine; the kernel copies it when
            // the enter submits the SQE. No submission view is held anywhere while the
            // engine runs (shared_ring).
            unsafe { self.sq.push(self.ring.get(), entry) }
        }
        Some(Wait::OnTimer)
    }

    /// How many of the sends submitted since the last enter are quiet (and forgets
    /// them): only a wait that may block looks past them, and only when they were few
    /// ([`FreshSends`](crate::fresh_sends::FreshSends)).
    #[inline(never)]
    fn quiet_sends(&mut self, wait: Wait, sink: &impl Sink) -> QuietCompletions {
        let blocks = wait.may_block();
        let count = self.fresh_sends.take_quiet(|id, bytes| blocks && sink.send_is_quiet(id, bytes));
        QuietCompletions { count, within: self.config.quiet_send_wait }
    }

    #[inline(never)]
    fn rearm_ended(&mut self, stats: &Stats) {
        for k in 0..self.rx_ended.len() {
            let (id, gen) = self.rx_ended[k];
            if self.slots[id as usize].gen == gen {
                self.arm_recv(id, stats);
            }
        }
        self.rx_ended.clear();
    }

    /// Re-arms receives that stopped for lack of buffers, at most one per buffer the
    /// ring holds now (each takes at least one), oldest first.
    #[inline(never)]
    fn rearm_starved(&mut self, mut budget: u32, stats: &Stats) {
        while budget > 0 {
            let Some((id, gen)) = self.rx_starved.pop_front() else { break };
            let s = &mut self.slots[id as usize];
            if s.gen != gen || !s.has(st::RX_STARVED) {
                continue;
            }
            budget -= 1;
            s.state &= !st::RX_STARVED;
            self.arm_recv(id, stats);
        }
    }

    /// Re-arms listeners whose retry time came, or all of them if an fd was freed.
    /// Returns how long until the next one is due.
    #[inline(never)]
    fn rearm_listeners(&mut self, stats: &Stats) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        let mut i = 0;
        while i < self.accept_waiting.len() {
            let (id, gen, at) = self.accept_waiting[i];
            let s = &mut self.slots[id as usize];
            if s.gen != gen || !s.has(st::OPEN) || !s.has(st::ACCEPT_BACKOFF) {
                self.accept_waiting.swap_remove(i);
                continue;
            }
            if self.fd_freed || now >= at {
                s.state &= !st::ACCEPT_BACKOFF;
                self.accept_waiting.swap_remove(i);
                self.arm_accept(id, stats);
            } else {
                let left = at - now;
                next = Some(next.map_or(left, |n| n.min(left)));
                i += 1;
            }
        }
        self.fd_freed = false;
        next
    }

    pub(super) fn reap(&mut self, sink: &mut impl Sink, stats: &Stats) {
        // Walked in place: each CQE is read from the ring as it is applied, and the
        // head moves once, when `cq` drops at the end (the kernel writes no CQE over
        // one not yet consumed). The sink may push SQEs meanwhile: a submission view
        // beside this completion view (shared_ring).
        // SAFETY: `ring` is used only within this call, while `self` (which owns the
        // ring) is alive.
        let ring = unsafe { self.ring.detached() };
        // SAFETY: the engine's only completion view: made here alone, and no reap
        // runs inside another.
        let mut cq = unsafe { ring.completion_shared() };
        Stats::add(&stats.completions, cq.len() as u64);
        let mut rx = false;
        for c in &mut cq {
            let (ud, res, flags) = (c.user_data(), c.result(), c.flags());
            // One look at the kind byte (see `user_data` for the layout); socket
            // completions whose slot was reused since (another generation) or freed
            // are stale and skipped. The two kinds of every request are one compare
            // each (a match on the kind is a jump table, dearer); the rest is out of
            // line.
            let (id, kind, gen) = (ud as u32, (ud >> 32) as u8, (ud >> 40) as u32);
            if kind == kind::RECV {
                if !self.is_current(id, gen) {
                    continue;
                }
                // Data with the receive still armed (the common case) ends nothing:
                // the slot cannot have become free, no need to look.
                if !self.on_recv(id, res, flags, &mut rx, sink, stats) {
                    continue;
                }
            } else if kind == kind::SEND {
                // A send on an open slot frees nothing here (a close it leads to frees
                // the slot itself): no need to look.
                if !self.is_current(id, gen) || !self.on_send(id, res, sink, stats) {
                    continue;
                }
            } else if !self.on_other_kind(ud, res, flags, sink, stats) {
                continue;
            }
            self.maybe_free(id, sink);
        }
        drop(cq);
        if rx {
            Stats::add(&stats.rx_batches, 1);
        }
    }

    /// Applies a completion of any kind but a stream's receive or send (those are
    /// [`reap`](Self::reap)'s own). Returns whether it was a current op of a socket
    /// slot, which may be free now.
    #[inline(never)]
    fn on_other_kind(&mut self, ud: u64, res: i32, flags: u32, sink: &mut impl Sink, stats: &Stats) -> bool {
        let (id, kind, gen) = decode(ud);
        match kind {
            Some(OpKind::Accept) if self.is_current(id, gen) => self.on_accept(id, res, flags, sink, stats),
            Some(OpKind::Shutdown) if self.is_current(id, gen) => self.on_shutdown(id, res, sink, stats),
            Some(OpKind::Connect) if self.is_current(id, gen) => self.on_connect(id, res, sink, stats),
            Some(OpKind::Wake) => {
                self.on_wake(res, stats);
                return false;
            }
            Some(OpKind::Ignore) => {
                self.ignore_inflight -= 1;
                return false;
            }
            Some(OpKind::Timer) => {
                self.wake_timer.completed(id, gen, res);
                return false;
            }
            Some(other @ (OpKind::RecvFrom | OpKind::SendTo)) => {
                sink.other(self, id, gen, other, res, flags);
                return false;
            }
            // Stale (a slot closed or reused since), or not ours.
            _ => return false,
        }
        true
    }

    /// Whether slot `id` is live and still of generation `gen` (a completion for it
    /// is not stale). A freed slot's generation moved on when it was freed
    /// (`maybe_free`), so the generation alone says it.
    #[inline(always)]
    pub(super) fn is_current(&self, id: u32, gen: u32) -> bool {
        match self.slots.get(id as usize) {
            Some(s) => {
                debug_assert_eq!(s.gen, gen, "completion for a reused or freed slot");
                debug_assert!(s.gen != gen || s.role != Role::Free, "a free slot kept its generation");
                s.gen == gen
            }
            None => false,
        }
    }

    fn on_wake(&mut self, res: i32, stats: &Stats) {
        self.waker_armed = false;
        if self.waker.on_read(res) {
            Stats::add(&stats.remote_wakeups, 1);
        }
        if !self.dropping && res != -libc::ECANCELED {
            self.arm_waker();
        }
    }

    fn on_accept(&mut self, id: u32, res: i32, flags: u32, sink: &mut impl Sink, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        if !cqueue::more(flags) {
            s.state &= !st::ACCEPT_ARMED;
            s.inflight -= 1;
        }
        let open = s.has(st::OPEN);
        if res >= 0 {
            s.state &= !st::ACCEPT_ERROR_REPORTED;
            match open.then(|| sink.accepted(id, res)).flatten() {
                Some(new) => {
                    Stats::add(&stats.accepts, 1);
                    self.register(new, res, stats);
                }
                None => self.close_stray(res, stats),
            }
        } else if open {
            match -res {
                libc::ECANCELED => {}
                // The peer gave up before we took it, or a signal: just accept again.
                libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO => {}
                errno => {
                    if !s.has(st::ACCEPT_ERROR_REPORTED) {
                        s.state |= st::ACCEPT_ERROR_REPORTED;
                        sink.accept_failed(id, errno);
                    }
                    let s = &mut self.slots[id as usize];
                    s.state |= st::ACCEPT_BACKOFF;
                    self.accept_waiting.push((id, s.gen, Instant::now() + self.config.accept_retry));
                }
            }
        }
        self.arm_accept(id, stats);
    }

    /// Applies a receive completion. Returns whether it ended the receive or brought
    /// no data (an end, an error, a cancel): then the slot may be free now. A buffer
    /// it brings sets `rx` (the tick received data).
    #[inline]
    fn on_recv(&mut self, id: u32, res: i32, flags: u32, rx: &mut bool, sink: &mut impl Sink, stats: &Stats) -> bool {
        let ended = !cqueue::more(flags);
        if ended {
            let s = &mut self.slots[id as usize];
            s.state &= !(st::RX_ARMED | st::RX_CANCELLING);
            s.inflight -= 1;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            *rx = true;
            let bytes = res.max(0) as u32;
            Stats::add(&stats.rx_bytes, bytes as u64);
            if sink.received(id, bid, bytes) == Delivery::Pause {
                self.pause(id, stats);
            }
        }
        if res > 0 && !ended {
            // The common case: data, and the receive stays armed.
            return false;
        }
        self.on_recv_end(id, res, ended, sink, stats);
        true
    }

    /// The rest of [`on_recv`](Self::on_recv) for a receive that ended or brought no
    /// data: the peer's end, a failure, a dry ring, or a re-arm to schedule.
    #[inline(never)]
    fn on_recv_end(&mut self, id: u32, res: i32, ended: bool, sink: &mut impl Sink, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        if res == 0 {
            s.state |= st::RX_DONE;
            if s.has(st::OPEN) {
                sink.eof(id);
            }
        } else if res < 0 {
            match -res {
                libc::ECANCELED => {}
                libc::ENOBUFS => {
                    Stats::add(&stats.pool_exhausted, 1);
                    if s.has(st::OPEN) && !s.has(st::RX_STARVED) {
                        s.state |= st::RX_STARVED;
                        self.rx_starved.push_back((id, s.gen));
                    }
                    sink.rx_exhausted();
                }
                errno => {
                    s.state |= st::RX_DONE;
                    if s.has(st::OPEN) {
                        let step = sink.rx_failed(id, errno);
                        self.drive_send(id, step, sink, stats);
                    }
                }
            }
        }
        let s = &self.slots[id as usize];
        if ended && s.has(st::OPEN) && !s.has(st::RX_DONE) {
            // Not re-armed now: the owner first sees these buffers and may pause.
            self.rx_ended.push((id, s.gen));
        }
    }

    /// Applies a send completion. Returns whether the slot was closed already (its
    /// last completion may have come: it may be free now); on an open slot, what
    /// the owner answers ([`Sink::sent`]) may close it, and closing frees it.
    #[inline]
    fn on_send(&mut self, id: u32, res: i32, sink: &mut impl Sink, stats: &Stats) -> bool {
        let s = &mut self.slots[id as usize];
        s.inflight -= 1;
        s.state &= !st::SEND_INFLIGHT;
        let closed = !s.has(st::OPEN);
        let step = if res > 0 {
            Stats::add(&stats.tx_bytes, res as u64);
            sink.sent(id, res as u32)
        } else if res == -libc::EAGAIN || res == -libc::EINTR {
            // Nothing was sent: io_uring can end a send with EAGAIN when it handed it
            // to a worker that found the socket buffer full. The queue is untouched.
            SendStep::Data
        } else {
            // A stream socket never takes 0 of n > 0 bytes unless it is broken.
            sink.tx_failed(id, if res == 0 { libc::EPIPE } else { -res })
        };
        self.drive_send(id, step, sink, stats);
        closed
    }

    fn on_shutdown(&mut self, id: u32, res: i32, sink: &mut impl Sink, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        s.inflight -= 1;
        s.state &= !st::SEND_INFLIGHT;
        let step = sink.shutdown_done(id, if res < 0 { -res } else { 0 });
        self.drive_send(id, step, sink, stats);
    }

    fn on_connect(&mut self, id: u32, res: i32, sink: &mut impl Sink, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        s.inflight -= 1;
        s.state &= !st::CONNECTING;
        if !s.has(st::OPEN) {
            return;
        }
        let errno = if res < 0 { -res } else { 0 };
        if errno != 0 {
            s.state |= st::RX_DONE;
        }
        let step = sink.connected(id, errno);
        if errno == 0 {
            self.arm_recv(id, stats);
        }
        self.drive_send(id, step, sink, stats);
    }

    /// Shuts the engine down (the owner's drop): submits what is queued, cancels every
    /// op and waits, bounded, for the kernel to let go of the engine's memory, then
    /// closes the fds still open. What is still in flight after the wait is leaked.
    /// Returns whether nothing is in flight any more (buffer rings may then be
    /// unregistered).
    pub fn shutdown(&mut self, sink: &mut impl Sink, stats: &Stats) -> bool {
        self.dropping = true;
        let mut owned = Vec::new();
        for s in self.slots.iter_mut() {
            if s.role != Role::Free && s.fd >= 0 {
                owned.push(s.fd);
                s.fd = -1;
            }
            s.state &= !st::OPEN;
        }
        for _ in 0..4 {
            // SAFETY: no submission view is held anywhere while the engine runs
            // (shared_ring); the SQEs were pushed under `push`'s contract.
            if unsafe { submit::enter(self.ring.get(), Wait::No, QuietCompletions::NONE) }.is_err() {
                break;
            }
            // SAFETY: as above.
            unsafe { self.sq.refill_ring(self.ring.get()) };
            self.reap(sink, stats);
            // SAFETY: as above; the view is a temporary.
            if self.sq.pending() == 0 && unsafe { self.ring.get().submission_shared() }.is_empty() {
                break;
            }
        }
        let _ = self.ring.get().submitter().register_sync_cancel(None, CancelBuilder::any().all());
        for _ in 0..100 {
            if self.ops_in_flight() == 0 {
                break;
            }
            let wait = Wait::For(Duration::from_millis(10));
            // SAFETY: as above.
            if unsafe { submit::enter(self.ring.get(), wait, QuietCompletions::NONE) }.is_err() {
                break;
            }
            self.reap(sink, stats);
        }
        for fd in owned {
            // SAFETY: the engine owns this fd (handed over by listen/register/connect/
            // adopt) and closes it exactly once (its slot's fd was cleared above).
            unsafe { libc::close(fd) };
        }
        let idle = self.ops_in_flight() == 0;
        if !idle {
            // The kernel still holds memory of ours: never free it.
            std::mem::forget(std::mem::take(&mut self.slots));
            self.waker.leak_buffer();
        }
        idle
    }
}
