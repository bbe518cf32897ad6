//! The emulated provider's [`Sink`]: what the io_uring engine's completions do to
//! the emulated kernel. A received buffer goes straight into the RX ring (or the
//! fd's backlog), a send gathers the socket's send queue in place, and the receive
//! buffer ring is topped up with the kernel's spares (see the provider's module
//! docs).

use std::os::fd::RawFd;

use paste_rt_core::{Delivery, SendStep, Stats};
use paste_rt_uring_engine::buf_ring::BufRing;
use paste_rt_uring_engine::user_data::OpKind;
use paste_rt_uring_engine::{Sink, SocketEngine};

use super::{sock_mut, EmuProvider, SockState, SOCKET_BACKLOG_CAP};
use crate::emu_kernel::{Arrival, EmuKernel, SocketState};
use crate::provider_event::Event;

impl EmuProvider {
    /// Splits the provider into the engine, the sink over the rest, and the engine's
    /// counters.
    #[inline]
    pub(super) fn parts<'a>(
        &'a mut self,
        events: &'a mut Vec<Event>,
    ) -> (&'a mut SocketEngine, EmuSink<'a>, &'a Stats) {
        self.parts_for_tick(events, false)
    }

    /// [`parts`](Self::parts) for the engine's tick: `tx_news_unwanted` says that the
    /// ring driver waits for no socket's send space (see [`EmuSink::send_is_quiet`]).
    pub(super) fn parts_for_tick<'a>(
        &'a mut self,
        events: &'a mut Vec<Event>,
        tx_news_unwanted: bool,
    ) -> (&'a mut SocketEngine, EmuSink<'a>, &'a Stats) {
        let sink = EmuSink {
            tx_news_unwanted,
            kernel: &mut self.kernel,
            bufs: &mut self.bufs,
            buf_target: &mut self.buf_target,
            socks: &mut self.socks,
            watch: &mut self.watch,
            to_close: &mut self.to_close,
            events,
        };
        (&mut self.engine, sink, &self.uring_stats)
    }
}

/// The engine's [`Sink`] over the emulated kernel; see the module docs. Slot id = fd.
pub(super) struct EmuSink<'a> {
    /// Nothing in the application waits for send space this tick.
    tx_news_unwanted: bool,
    kernel: &'a mut EmuKernel,
    bufs: &'a mut BufRing,
    buf_target: &'a mut u32,
    socks: &'a mut Vec<SockState>,
    watch: &'a mut Vec<RawFd>,
    to_close: &'a mut Vec<RawFd>,
    events: &'a mut Vec<Event>,
}

impl EmuSink<'_> {
    /// The next socket that txsync gave TX payloads, to start its send.
    #[inline]
    pub(super) fn take_tx_ready(&mut self) -> Option<RawFd> {
        self.kernel.take_tx_ready()
    }

    /// Tops the receive buffer ring up with the emulated kernel's spares, and
    /// publishes every buffer pushed since the last publish (those the receive
    /// completions offered too).
    #[inline]
    pub(super) fn refill(&mut self) {
        // Each receive completion offers the spare its RX slot gave up (hand_over),
        // so the ring is mostly full here: the top-up is out of line.
        if self.bufs.len() < *self.buf_target {
            self.top_up();
        }
        self.bufs.publish();
    }

    /// Pushes the emulated kernel's spares until the receive buffer ring holds its
    /// target (or no spare is left to lend).
    #[inline(never)]
    fn top_up(&mut self) {
        while self.bufs.len() < *self.buf_target {
            let Some(idx) = self.kernel.rx_buffer() else { break };
            let Some(base) = self.kernel.memory().buf_ptr(idx) else { break };
            // SAFETY: the buffer is held by the emulated kernel as Receiving (lent by
            // rx_buffer just above).
            let pushed = unsafe { offer(self.bufs, idx, base) };
            if !pushed {
                let _ = self.kernel.rx_abandon(idx);
                break;
            }
        }
    }

    /// `fd`'s backlog is full: it stops receiving until it drains to half. Out of
    /// line: rare.
    #[cold]
    #[inline(never)]
    fn pause_backlog(&mut self, fd: RawFd) -> Delivery {
        sock_mut(self.socks, fd).set_backlog_paused(true);
        self.watch(fd);
        Delivery::Pause
    }

    fn watch(&mut self, fd: RawFd) {
        let s = sock_mut(self.socks, fd);
        if !s.watched() {
            s.set_watched(true);
            self.watch.push(fd);
        }
    }

    /// What comes after the send queue drained: a waiting shutdown, or nothing.
    fn after_sends(&mut self, fd: RawFd) -> SendStep {
        let s = sock_mut(self.socks, fd);
        match s.shutdown_q.take() {
            Some(how) if !s.closing() => {
                s.set_shutdown_inflight(true);
                SendStep::Shutdown(how)
            }
            _ => SendStep::Idle,
        }
    }
}

/// One received buffer `b` (`len` bytes) of `fd`, whose provider state is `s`, to
/// the emulated kernel: straight into the RX ring or the backlog (`backlog` becomes
/// its length then), held while the application paused receiving, or back to the
/// spares when there is nothing in it or the fd is closing.
/// With `ring` (the receive buffer ring and how many buffers it wants), the spare
/// buffer the RX slot gives up in exchange goes straight back to the ring while it
/// wants buffers, instead of through the kernel's free ones and the next refill.
#[inline(always)]
fn hand_over(
    kernel: &mut EmuKernel,
    s: &mut SockState,
    fd: RawFd,
    b: u16,
    len: u32,
    backlog: &mut usize,
    ring: Option<(&mut BufRing, u32)>,
) {
    let b = u32::from(b);
    if len == 0 || s.flags & (SockState::CLOSING | SockState::APP_PAUSED) != 0 {
        hold_back(kernel, s, b, len);
    } else {
        let lend_spare = ring.as_ref().is_some_and(|(bufs, target)| bufs.len() < *target);
        // Err cannot happen for a buffer taken from our ring.
        match kernel.rx_arrived_lending(fd, b, len as usize, lend_spare) {
            Ok((Arrival::Backlogged { backlog: n }, _)) => *backlog = n,
            Ok((_, Some((spare, base)))) => {
                if let Some((bufs, _)) = ring {
                    // SAFETY: the emulated kernel lent `spare` for receiving just now.
                    // (The next refill publishes it, before the next enter.)
                    if unsafe { offer(bufs, spare, base) } {
                        return;
                    }
                }
                give_back_spare(kernel, spare);
            }
            _ => {}
        }
    }
}

/// A received buffer that does not go to the kernel now ([`hand_over`]): back to the
/// spares when there is nothing in it or the fd is closing, else held while the
/// application paused receiving. Out of line: rare.
#[cold]
#[inline(never)]
fn hold_back(kernel: &mut EmuKernel, s: &mut SockState, b: u32, len: u32) {
    if len == 0 || s.closing() {
        let _ = kernel.rx_abandon(b);
    } else {
        s.held.push_back(Some((b, len)));
    }
}

/// A spare the receive buffer ring could not take goes back to the kernel's free ones.
#[cold]
fn give_back_spare(kernel: &mut EmuKernel, spare: u32) {
    let _ = kernel.rx_abandon(spare);
}

/// Adds buffer `idx` (memory at `base`) to the receive buffer ring, visible to the
/// kernel at the next publish. The only place that pushes to the ring, so the push
/// stays inlined into both callers (the refill and the receive completion).
///
/// # Safety
/// As for `BufRing::push`: the emulated kernel holds `idx` as Receiving, so nobody
/// reads or writes it until its receive completion (then it is handed over or
/// abandoned) or the ring is drained after unregistration.
#[inline]
unsafe fn offer(bufs: &mut BufRing, idx: u32, base: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { bufs.push(idx as u16, base) }
}

impl Sink for EmuSink<'_> {
    fn accepted(&mut self, listener: u32, fd: RawFd) -> Option<u32> {
        let s = sock_mut(self.socks, fd);
        if s.busy() {
            // The number's previous socket still has completions to come: refuse
            // (a clean close) rather than mix the two up.
            return None;
        }
        *s = SockState { flags: SockState::BUSY | SockState::ACCEPTED, ..SockState::default() };
        self.events.push(Event::Accepted { listener: listener as RawFd, fd });
        Some(fd as u32)
    }

    fn accept_failed(&mut self, listener: u32, errno: i32) {
        self.events.push(Event::AcceptError { listener: listener as RawFd, errno });
    }

    #[inline]
    fn received(&mut self, slot: u32, bid: u16, bytes: u32) -> Delivery {
        let fd = slot as RawFd;
        let kernel = &mut *self.kernel;
        let s = sock_mut(self.socks, fd);
        let mut backlog = 0;
        // The common completion fills one buffer: handled here, without a call per
        // buffer (a bundle goes through `consume`).
        if bytes <= self.bufs.buf_len() && self.bufs.consume_one(bid) {
            // The spare the RX slot gives up goes straight back to the receive buffer
            // ring (see hand_over).
            let ring = Some((&mut *self.bufs, *self.buf_target));
            hand_over(kernel, s, fd, bid, bytes, &mut backlog, ring);
        } else {
            self.bufs.consume(bid, bytes, |b, len| hand_over(kernel, s, fd, b, len, &mut backlog, None));
        }
        if backlog >= SOCKET_BACKLOG_CAP && !s.backlog_paused() {
            return self.pause_backlog(fd);
        }
        Delivery::Queued
    }

    fn eof(&mut self, slot: u32) {
        let fd = slot as RawFd;
        let s = sock_mut(self.socks, fd);
        if s.closing() {
            return;
        }
        if s.app_paused() {
            s.held.push_back(None);
        } else {
            self.kernel.rx_eof_arrived(fd);
        }
    }

    fn rx_failed(&mut self, slot: u32, errno: i32) -> SendStep {
        let fd = slot as RawFd;
        let s = sock_mut(self.socks, fd);
        if s.closing() {
            return SendStep::Idle;
        }
        if s.app_paused() || !s.held.is_empty() || self.kernel.rx_backlog(fd) > 0 {
            // After the data before it.
            s.error_pending = std::num::NonZeroI32::new(errno).or(std::num::NonZeroI32::new(libc::EIO));
            self.watch(fd);
        } else {
            self.events.push(Event::RecvError { fd, errno });
        }
        SendStep::Idle
    }

    #[inline]
    fn gather_send(&mut self, slot: u32, max: usize, f: impl FnMut(&[u8])) -> usize {
        self.kernel.sends_gather(slot as RawFd, max, f)
    }

    #[inline]
    fn sent(&mut self, slot: u32, bytes: u32) -> SendStep {
        if self.kernel.sends_done(slot as RawFd, u64::from(bytes)) {
            SendStep::Data
        } else if self.socks.get(slot as usize).is_some_and(|s| s.shutdown_q.is_some()) {
            self.after_sends(slot as RawFd)
        } else {
            SendStep::Idle
        }
    }

    /// Quiet when the application waits for no send space (its TX slots were taken
    /// at txsync already), the send carries the whole of the socket's send queue, and
    /// neither a shutdown nor a close waits for it to finish.
    #[inline]
    fn send_is_quiet(&self, slot: u32, bytes: u64) -> bool {
        let fd = slot as RawFd;
        self.tx_news_unwanted
            && self.socks.get(slot as usize).is_some_and(|s| s.shutdown_q.is_none() && !s.closing())
            && self.kernel.sends_queued_are(fd, bytes)
    }

    fn tx_failed(&mut self, slot: u32, errno: i32) -> SendStep {
        let fd = slot as RawFd;
        self.kernel.sends_fail(fd);
        let s = sock_mut(self.socks, fd);
        s.shutdown_q = None;
        if !s.closing() {
            self.events.push(Event::SendError { fd, errno });
        }
        SendStep::Idle
    }

    fn shutdown_done(&mut self, slot: u32, _errno: i32) -> SendStep {
        let fd = slot as RawFd;
        sock_mut(self.socks, fd).set_shutdown_inflight(false);
        if self.kernel.has_sends(fd) {
            SendStep::Data
        } else {
            self.after_sends(fd)
        }
    }

    fn connected(&mut self, slot: u32, errno: i32) -> SendStep {
        let fd = slot as RawFd;
        if errno != 0 {
            self.events.push(Event::Connected { fd, errno });
            return SendStep::Idle;
        }
        self.events.push(Event::Connected { fd, errno: 0 });
        if let Err(e) = self.kernel.register_fd(fd, SocketState::Connected) {
            self.events.push(Event::RecvError { fd, errno: e.errno });
        }
        SendStep::Idle
    }

    fn released(&mut self, slot: u32) {
        let s = sock_mut(self.socks, slot as RawFd);
        for (buf, _) in s.held.drain().flatten() {
            let _ = self.kernel.rx_abandon(buf);
        }
        if s.retiring() {
            self.to_close.push(slot as RawFd);
        }
        *s = SockState::default();
    }

    fn rx_buffers(&self) -> u32 {
        self.bufs.len()
    }

    fn rx_exhausted(&mut self) {
        // The ring ran dry: let it hold more of the spares, up to its size.
        *self.buf_target = (*self.buf_target * 2).min(self.bufs.capacity());
    }

    #[inline]
    fn before_enter(&mut self) -> bool {
        self.refill();
        false
    }

    fn other(&mut self, _engine: &mut SocketEngine, _id: u32, _gen: u32, _kind: OpKind, _res: i32, _flags: u32) {
        // Datagram ops are never submitted here (PASTE is TCP only).
    }
}
