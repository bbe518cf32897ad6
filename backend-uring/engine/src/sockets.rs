//! [`SocketEngine`]: the io_uring socket work both io_uring users need — slots with
//! generations, multishot accept and receive (armed, paused, re-armed), sends
//! gathered straight from the owner's queue, connect, shutdown, and cancel-then-close
//! — driven through a small [`Sink`].
//!
//! The engine owns the ring and everything an in-flight SQE points to; the sink owns
//! the data. A slot is named by an id the owner chooses (the io_uring backend uses its
//! record token, the emulated PASTE port the fd), so a completion reaches the owner's
//! state with one index. Reaping is dispatching: each CQE is applied through the sink
//! at once (a received buffer, bytes sent, an accepted socket), and what the sink
//! answers ([`Delivery`], [`SendStep`]) becomes the next SQE straight away.
//!
//! ## Ownership and drop order
//!
//! * A slot's send state (iovecs, `msghdr`, the connect address) is boxed on first
//!   use and lives until the slot is freed; a slot is freed only when no SQE of it is
//!   in flight (`inflight == 0`), and only then is its id given back to the owner
//!   ([`Sink::released`]).
//! * Data an in-flight send points to is the owner's, and the owner must keep it
//!   until [`Sink::sent`] or [`Sink::tx_failed`] reports it taken.
//! * On drop, the engine submits what is queued, cancels everything and waits
//!   (bounded) for the kernel to let go; what is still in flight after that wait is
//!   leaked (slots and the wake-up buffer are never freed under the kernel), and the
//!   ring itself is closed before the slots are dropped (field order below).
//!
//! `user_data`: see [`user_data`](crate::user_data): bits 0-31 the slot id, 32-39 the
//! [`OpKind`], 40-63 the slot's generation.
//!
//! The engine's state and its slots are here; what the owner asks of it, written as
//! SQEs, is in `ops`, and the tick (the enter and the reap) in `tick`.
//!
//! It makes exactly one system call per [`tick`](SocketEngine::tick) (the enter);
//! everything else writes SQEs. A blocking enter that must end by an instant, or that
//! looks past a quiet send, waits with no timer of its own while the engine's
//! [`wake_timer`](crate::wake_timer) stands armed in the ring to end it in time.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::IoUring;
use paste_rt_core::{Delivery, RemoteWake, SendStep};

use crate::fresh_sends::FreshSends;
use crate::probe::UringProbe;
use crate::shared_ring::SharedRing;
use crate::submit::SubmitQueue;
use crate::user_data::{encode, OpKind};
use crate::wake_timer::WakeTimer;
use crate::waker::RingWaker;

mod ops;
mod tick;

/// Most slices gathered into one `SENDMSG`.
pub const MAX_SEND_BATCH: usize = 32;

/// What the engine's owner does with the socket work's results; see the module docs.
pub trait Sink {
    /// `listener` accepted `fd`: the slot id to serve it in (receiving starts at
    /// once), or `None` to close it.
    fn accepted(&mut self, listener: u32, fd: RawFd) -> Option<u32>;
    /// Accepting on `listener` failed with `errno` (once per episode; the engine
    /// retries later by itself).
    fn accept_failed(&mut self, listener: u32, errno: i32);
    /// `bytes` arrived in the buffer(s) starting at buffer id `bid` of the receive
    /// ring. [`Delivery::Pause`] pauses the slot's receiving.
    fn received(&mut self, slot: u32, bid: u16, bytes: u32) -> Delivery;
    /// The peer closed its side.
    fn eof(&mut self, slot: u32);
    /// Receiving failed for good.
    fn rx_failed(&mut self, slot: u32, errno: i32) -> SendStep;
    /// Calls `f` with up to `max` slices to send on `slot`, oldest first (the data
    /// must stay put until reported sent); returns how many.
    fn gather_send(&mut self, slot: u32, max: usize, f: impl FnMut(&[u8])) -> usize;
    /// The kernel took `bytes` of what was gathered.
    fn sent(&mut self, slot: u32, bytes: u32) -> SendStep;
    /// Sending failed (the queue is dropped).
    fn tx_failed(&mut self, slot: u32, errno: i32) -> SendStep;
    /// A shutdown returned as [`SendStep::Shutdown`] completed.
    fn shutdown_done(&mut self, slot: u32, errno: i32) -> SendStep;
    /// A connect finished (0 or the errno).
    fn connected(&mut self, slot: u32, errno: i32) -> SendStep;
    /// The slot is free: no SQE names it any more; its id may be reused.
    fn released(&mut self, slot: u32);
    /// Buffers the kernel can take now from the receive ring (bounds how many
    /// starved receives are re-armed per tick).
    fn rx_buffers(&self) -> u32;
    /// A receive found the ring empty (`ENOBUFS`): a chance to give it more.
    fn rx_exhausted(&mut self) {}
    /// Whether the completion of the send of `bytes` now in flight on `slot` changes
    /// nothing anyone waits for, so the tick's wait may look past it (see
    /// [`EngineConfig::quiet_send_wait`]): no task waits for send room or a flush,
    /// nothing is queued behind those bytes, and no shutdown or close follows them.
    /// Asked just before the enter, once per send submitted in the tick. Default: no.
    fn send_is_quiet(&self, slot: u32, bytes: u64) -> bool {
        let _ = (slot, bytes);
        false
    }
    /// The tick is about to enter the kernel: top the receive ring up if buffers the
    /// application kept for a while left it short. Returns whether a waiter was woken
    /// since the tick began (then the enter does not block).
    fn before_enter(&mut self) -> bool {
        false
    }
    /// A completion of a kind the engine does not own (the owner's own SQEs, pushed
    /// with [`SocketEngine::push_raw`]): `id` and `gen` are what the owner encoded.
    /// The owner calls [`SocketEngine::op_done`] when an op of a slot ends.
    fn other(&mut self, engine: &mut SocketEngine, id: u32, gen: u32, kind: OpKind, res: i32, flags: u32);
}

/// Settings of a [`SocketEngine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Buffer group of the receive ring.
    pub bgid: u16,
    /// Receive bundles (6.10+).
    pub bundle: bool,
    /// Bytes one arming of a receive may take (`mshot_total_len`, 6.16+); 0: no limit.
    pub recv_limit: u32,
    /// Most queued slices gathered into one send (1 to [`MAX_SEND_BATCH`]).
    pub send_batch: usize,
    /// How long a listener waits after `EMFILE` and the like, unless an fd is freed.
    pub accept_retry: Duration,
    /// How long the tick's wait may look past completions of its own sends that
    /// nobody waits for ([`Sink::send_is_quiet`]) before it settles for them:
    /// [`QuietCompletions::within`](crate::submit::QuietCompletions::within). A small answer's send completes while it is
    /// submitted, so without this a request on an otherwise idle connection costs two
    /// enters (see [`submit`](crate::submit)). Zero turns it off; so does a kernel
    /// without `IORING_FEAT_MIN_TIMEOUT` (6.12). A send the kernel has to park on a
    /// full socket delays the next wake-up by at most this much.
    pub quiet_send_wait: Duration,
}

/// The default [`EngineConfig::quiet_send_wait`]: longer than a scheduler tick, so the
/// wait's first stage does not add a timer interrupt per request, and short enough
/// that a send parked on a full socket delays other connections' news only briefly.
pub const QUIET_SEND_WAIT: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Free,
    Listener,
    Stream,
    /// Served by the owner's own SQEs (a datagram socket).
    Owned,
}

mod st {
    pub const ACCEPT_ARMED: u16 = 1 << 0;
    pub const ACCEPT_ERROR_REPORTED: u16 = 1 << 1;
    pub const CONNECTING: u16 = 1 << 2;
    pub const RX_ARMED: u16 = 1 << 3;
    pub const RX_CANCELLING: u16 = 1 << 4;
    pub const RX_PAUSED: u16 = 1 << 5;
    pub const RX_DONE: u16 = 1 << 6;
    pub const RX_STARVED: u16 = 1 << 7;
    pub const SEND_INFLIGHT: u16 = 1 << 8;
    pub const OPEN: u16 = 1 << 9;
    /// A listener backing off after an accept error (its retry time waits in
    /// `accept_waiting`).
    pub const ACCEPT_BACKOFF: u16 = 1 << 10;
}

/// The kinds of every request as the byte `reap` reads from `user_data`.
mod kind {
    use crate::user_data::OpKind;

    pub const RECV: u8 = OpKind::Recv as u8;
    pub const SEND: u8 = OpKind::Send as u8;
}

/// The memory a gathered send or a connect points to while in flight. Boxed, so it
/// never moves; made on first use.
struct SendState {
    iov: [libc::iovec; MAX_SEND_BATCH],
    msg: libc::msghdr,
    addr: libc::sockaddr_storage,
}

impl SendState {
    fn new() -> Box<SendState> {
        Box::new(SendState {
            iov: [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_SEND_BATCH],
            // SAFETY: msghdr and sockaddr_storage are plain C structs; all-zero is a
            // valid (empty) value for both.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            addr: unsafe { std::mem::zeroed() },
        })
    }
}

/// One socket's engine state (see the module docs).
struct Slot {
    gen: u32,
    role: Role,
    state: u16,
    fd: RawFd,
    /// SQEs in the kernel that name this slot (a multishot counts once).
    inflight: u32,
    send: Option<Box<SendState>>,
}

impl Slot {
    const fn new() -> Slot {
        Slot { gen: 0, role: Role::Free, state: 0, fd: -1, inflight: 0, send: None }
    }

    #[inline]
    fn has(&self, f: u16) -> bool {
        self.state & f != 0
    }

    #[inline]
    fn ud(&self, id: u32, kind: OpKind) -> u64 {
        encode(id, kind, self.gen)
    }
}

/// The io_uring socket engine; see the module docs.
///
/// Field order is drop order: the ring goes first (closing it ends every op the
/// kernel still holds), then the slots and the wake-up buffer its SQEs pointed to.
pub struct SocketEngine {
    /// Reached only through shared references ([`SharedRing`]), so that a reap walks
    /// the completion queue in place while it pushes SQEs.
    ring: SharedRing,
    probe: UringProbe,
    sq: SubmitQueue,
    config: EngineConfig,
    slots: Vec<Slot>,
    /// Slots whose receive ran out of buffers, oldest first.
    rx_starved: VecDeque<(u32, u32)>,
    /// Slots whose multishot receive ended (byte limit, a cancel for a pause) in the
    /// last reap: re-armed at the next tick unless paused meanwhile.
    rx_ended: Vec<(u32, u32)>,
    /// Listeners waiting to accept again after an error: slot, generation, when.
    /// (Kept here rather than in every socket's slot: only a failing listener has a
    /// retry time.)
    accept_waiting: Vec<(u32, u32, Instant)>,
    /// An fd was closed since the last tick (a listener out of fds may retry).
    fd_freed: bool,
    /// Cancels and closes in the kernel.
    ignore_inflight: u64,
    waker: RingWaker,
    waker_armed: bool,
    dropping: bool,
    /// Sends submitted since the last enter, checked for quietness just before it.
    /// Empty when `quiet_send_wait` is off.
    fresh_sends: FreshSends,
    /// Ends waits that have an instant or look past a quiet send.
    wake_timer: WakeTimer,
}

impl SocketEngine {
    /// An engine over `ring` (opened and probed with [`crate::probe::open_ring`]).
    pub fn new(ring: IoUring, probe: UringProbe, config: EngineConfig) -> io::Result<SocketEngine> {
        let waker = RingWaker::new()?;
        let quiet_send_wait = if probe.min_timeout { config.quiet_send_wait } else { Duration::ZERO };
        let config = EngineConfig { send_batch: config.send_batch.clamp(1, MAX_SEND_BATCH), quiet_send_wait, ..config };
        let mut engine = SocketEngine {
            ring: SharedRing::new(ring),
            probe,
            sq: SubmitQueue::with_capacity(256),
            config,
            slots: Vec::new(),
            rx_starved: VecDeque::new(),
            rx_ended: Vec::with_capacity(256),
            accept_waiting: Vec::new(),
            fd_freed: false,
            ignore_inflight: 0,
            waker,
            waker_armed: false,
            dropping: false,
            fresh_sends: FreshSends::new(!quiet_send_wait.is_zero()),
            wake_timer: WakeTimer::new(quiet_send_wait),
        };
        engine.arm_waker();
        Ok(engine)
    }

    /// What was probed at start.
    pub fn probe(&self) -> &UringProbe {
        &self.probe
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The ring (to register buffer rings).
    pub fn ring(&self) -> &IoUring {
        self.ring.get()
    }

    /// A handle other threads use to interrupt the wait.
    pub fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.waker.handle()
    }

    /// Operations in the kernel (or queued for it): multishot receives and accepts,
    /// sends, connects, cancels, closes, and the wake-up read. At rest this is the
    /// number of armed listeners and connections plus one.
    pub fn ops_in_flight(&self) -> u64 {
        let slots: u64 = self.slots.iter().map(|s| s.inflight as u64).sum();
        slots + self.ignore_inflight + self.waker_armed as u64
    }

    /// Slots in use (open, or closed with operations still in flight).
    pub fn live_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.role != Role::Free).count()
    }

    /// SQEs that ever waited in the overflow queue because the SQ was full.
    pub fn sq_overflows(&self) -> u64 {
        self.sq.overflowed_total()
    }

    /// Whether slot `id` is open (not closed or free).
    pub fn is_open(&self, id: u32) -> bool {
        self.slots.get(id as usize).is_some_and(|s| s.has(st::OPEN))
    }

    /// The fd of slot `id` (-1 once closed).
    pub fn fd(&self, id: u32) -> RawFd {
        self.slots.get(id as usize).map_or(-1, |s| s.fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection has a slot, so a field that grows it grows idle memory at
    /// 10 000 connections (a listener's retry time lives in `accept_waiting`).
    #[test]
    fn a_socket_slot_stays_within_three_words() {
        assert!(std::mem::size_of::<Slot>() <= 24, "Slot is {} bytes", std::mem::size_of::<Slot>());
    }
}
