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
//! It makes exactly one system call per [`tick`](SocketEngine::tick) (the enter);
//! everything else writes SQEs. A blocking enter that must end by an instant, or that
//! looks past a quiet send, waits with no timer of its own while the engine's
//! [`wake_timer`](crate::wake_timer) stands armed in the ring to end it in time.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};
use paste_rt_core::{Delivery, RemoteWake, SendStep, Shutdown, Stats, Wait as TickWait};

use crate::fresh_sends::FreshSends;
use crate::probe::UringProbe;
use crate::recv;
use crate::shared_ring::SharedRing;
use crate::submit::{self, QuietCompletions, SubmitQueue, Wait};
use crate::user_data::{decode, encode, OpKind, GEN_MASK};
use crate::wake_timer::{Need, WakeTimer, MIN_TIMED_WAIT};
use crate::waker::RingWaker;

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
    /// [`QuietCompletions::within`]. A small answer's send completes while it is
    /// submitted, so without this a request on an otherwise idle connection costs two
    /// enters (see [`submit`]). Zero turns it off; so does a kernel
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

    // ---- SQEs (no system call) ----

    fn push(&mut self, entry: squeue::Entry, stats: &Stats) {
        Stats::add(&stats.submissions, 1);
        // SAFETY: every SQE built by the engine points only at memory that outlives
        // its op: the owner's send data (kept until reported sent), a slot's boxed
        // send state (freed only with the slot, once nothing is in flight), and the
        // waker's boxed read buffer; an owner's SQE (push_raw) is under its contract.
        // No submission view is held anywhere while the engine runs (shared_ring).
        unsafe { self.sq.push(self.ring.get(), entry) }
    }

    /// Pushes an SQE of the owner's, its `user_data` already set (with a kind the
    /// engine does not own, see [`Sink::other`]).
    ///
    /// # Safety
    /// Everything the SQE points to must stay valid until its completion is reaped.
    pub unsafe fn push_raw(&mut self, entry: squeue::Entry, stats: &Stats) {
        self.push(entry, stats);
    }

    /// The owner started an op that names slot `id`: the slot is not freed before
    /// [`op_done`](Self::op_done).
    pub fn op_started(&mut self, id: u32) {
        self.slots[id as usize].inflight += 1;
    }

    /// The generation of slot `id` (to encode in the owner's `user_data`).
    pub fn generation(&self, id: u32) -> u32 {
        self.slots[id as usize].gen
    }

    /// An op started with [`op_started`](Self::op_started) ended (its last completion
    /// was seen): the slot may be freed.
    pub fn op_done(&mut self, id: u32, sink: &mut impl Sink) {
        let s = &mut self.slots[id as usize];
        s.inflight -= 1;
        self.maybe_free(id, sink);
    }

    /// The `user_data` an SQE of slot `id` and kind `kind` carries (to cancel it).
    pub fn user_data(&self, id: u32, kind: OpKind) -> u64 {
        self.slots[id as usize].ud(id, kind)
    }

    fn push_ignored(&mut self, entry: squeue::Entry, stats: &Stats) {
        self.ignore_inflight += 1;
        self.push(entry.user_data(encode(0, OpKind::Ignore, 0)), stats);
    }

    /// Cancels an SQE of the owner's by its `user_data` (its completion still comes).
    pub fn cancel(&mut self, user_data: u64, stats: &Stats) {
        self.push_ignored(opcode::AsyncCancel::new(user_data).build(), stats);
    }

    fn arm_waker(&mut self) {
        let entry = self.waker.read_sqe(encode(0, OpKind::Wake, 0));
        self.waker_armed = true;
        // SAFETY: the read buffer is boxed in the waker, which lives as long as the
        // engine (and is leaked with it if the read is still in flight at drop). No
        // submission view is held anywhere while the engine runs (shared_ring).
        unsafe { self.sq.push(self.ring.get(), entry) };
    }

    fn open_slot(&mut self, id: u32, fd: RawFd, role: Role) {
        let i = id as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, Slot::new);
        }
        let s = &mut self.slots[i];
        debug_assert!(s.role == Role::Free && s.inflight == 0, "slot {id} reused while busy");
        s.gen = s.gen.wrapping_add(1) & GEN_MASK;
        s.role = role;
        s.state = st::OPEN;
        s.fd = fd;
    }

    /// Starts accepting on listening socket `fd` in slot `id`.
    pub fn listen(&mut self, id: u32, fd: RawFd, stats: &Stats) {
        self.open_slot(id, fd, Role::Listener);
        self.arm_accept(id, stats);
    }

    /// Starts receiving on connected socket `fd` in slot `id`.
    pub fn register(&mut self, id: u32, fd: RawFd, stats: &Stats) {
        self.open_slot(id, fd, Role::Stream);
        self.arm_recv(id, stats);
    }

    /// Serves socket `fd` in slot `id` with the owner's own SQEs ([`push_raw`](Self::push_raw)).
    pub fn adopt(&mut self, id: u32, fd: RawFd) {
        self.open_slot(id, fd, Role::Owned);
    }

    /// Connects fresh socket `fd` in slot `id` to `addr`; receiving starts once it is
    /// connected, and sends queued meanwhile wait for it.
    pub fn connect(&mut self, id: u32, fd: RawFd, addr: SocketAddr, stats: &Stats) {
        self.open_slot(id, fd, Role::Stream);
        let s = &mut self.slots[id as usize];
        s.state |= st::CONNECTING;
        s.inflight += 1;
        let state = s.send.get_or_insert_with(SendState::new);
        let len = paste_rt_core::sockaddr::write(&addr, &mut state.addr);
        let entry = opcode::Connect::new(Fd(fd), (&state.addr as *const libc::sockaddr_storage).cast(), len)
            .build()
            .user_data(s.ud(id, OpKind::Connect));
        self.push(entry, stats);
    }

    fn arm_accept(&mut self, id: u32, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        if !s.has(st::OPEN) || s.has(st::ACCEPT_ARMED) || s.has(st::ACCEPT_BACKOFF) {
            return;
        }
        s.state |= st::ACCEPT_ARMED;
        s.inflight += 1;
        let entry = opcode::AcceptMulti::new(Fd(s.fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(s.ud(id, OpKind::Accept));
        self.push(entry, stats);
    }

    fn arm_recv(&mut self, id: u32, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        let blocked = st::RX_ARMED | st::RX_PAUSED | st::RX_DONE | st::RX_STARVED | st::CONNECTING;
        if !s.has(st::OPEN) || s.state & blocked != 0 || s.role != Role::Stream {
            return;
        }
        s.state |= st::RX_ARMED;
        s.inflight += 1;
        let c = &self.config;
        let entry = recv::multishot_recv(s.fd, c.bgid, c.bundle, c.recv_limit).user_data(s.ud(id, OpKind::Recv));
        self.push(entry, stats);
    }

    /// Stops receiving on slot `id` until [`resume`](Self::resume) (what arrives
    /// meanwhile stays in the socket).
    pub fn pause(&mut self, id: u32, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        s.state |= st::RX_PAUSED;
        if s.has(st::RX_ARMED) && !s.has(st::RX_CANCELLING) {
            s.state |= st::RX_CANCELLING;
            let target = s.ud(id, OpKind::Recv);
            self.push_ignored(opcode::AsyncCancel::new(target).build(), stats);
        }
    }

    /// Receiving on slot `id` may go on.
    pub fn resume(&mut self, id: u32, stats: &Stats) {
        let Some(s) = self.slots.get_mut(id as usize) else { return };
        s.state &= !st::RX_PAUSED;
        self.arm_recv(id, stats);
    }

    /// Applies the sink's answer on slot `id`'s send path.
    #[inline]
    pub fn drive_send(&mut self, id: u32, step: SendStep, sink: &mut impl Sink, stats: &Stats) {
        match step {
            SendStep::Data => self.submit_send(id, sink, stats),
            SendStep::Shutdown(how) => self.submit_shutdown(id, how, stats),
            SendStep::Idle | SendStep::Wait => {}
            SendStep::Close => self.close(id, sink, stats),
        }
    }

    /// Writes one SQE for what slot `id`'s owner has queued: a `SEND` for one slice,
    /// a `SENDMSG` gathering up to `send_batch`. One in flight per slot keeps the byte
    /// order; the next goes out when it completes.
    fn submit_send(&mut self, id: u32, sink: &mut impl Sink, stats: &Stats) {
        let batch = self.config.send_batch;
        let s = &mut self.slots[id as usize];
        if s.state & (st::SEND_INFLIGHT | st::CONNECTING) != 0 || !s.has(st::OPEN) {
            return;
        }
        let mut first: (*const u8, usize) = (std::ptr::null(), 0);
        let mut n = 0usize;
        let mut total = 0u64;
        let send = &mut s.send;
        sink.gather_send(id, batch, |bytes| {
            total += bytes.len() as u64;
            if n == 0 {
                first = (bytes.as_ptr(), bytes.len());
            } else {
                let state = send.get_or_insert_with(SendState::new);
                if n == 1 {
                    state.iov[0] = libc::iovec { iov_base: first.0 as *mut libc::c_void, iov_len: first.1 };
                }
                state.iov[n] = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
            }
            n += 1;
        });
        if n == 0 {
            return;
        }
        let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        let entry = if n == 1 {
            let len = first.1.min(u32::MAX as usize) as u32;
            opcode::Send::new(Fd(s.fd), first.0, len).flags(flags).build()
        } else {
            let state = s.send.as_mut().expect("made above for a gathered send");
            state.msg.msg_iov = state.iov.as_mut_ptr();
            state.msg.msg_iovlen = n as _;
            state.msg.msg_name = std::ptr::null_mut();
            state.msg.msg_namelen = 0;
            opcode::SendMsg::new(Fd(s.fd), &state.msg).flags(flags as u32).build()
        };
        s.state |= st::SEND_INFLIGHT;
        s.inflight += 1;
        let ud = s.ud(id, OpKind::Send);
        if self.fresh_sends.is_on() {
            self.fresh_sends.record(id, total);
        }
        self.push(entry.user_data(ud), stats);
    }

    fn submit_shutdown(&mut self, id: u32, how: Shutdown, stats: &Stats) {
        let s = &mut self.slots[id as usize];
        if s.has(st::SEND_INFLIGHT) || !s.has(st::OPEN) {
            return;
        }
        s.state |= st::SEND_INFLIGHT;
        s.inflight += 1;
        let entry = opcode::Shutdown::new(Fd(s.fd), how.how()).build().user_data(s.ud(id, OpKind::Shutdown));
        self.push(entry, stats);
    }

    /// Closes slot `id`: cancels every op on its fd, closes the fd (after the cancel,
    /// in SQ order), and frees the slot once nothing is in flight. Sends still in
    /// flight complete (or are cancelled) first.
    pub fn close(&mut self, id: u32, sink: &mut impl Sink, stats: &Stats) {
        let Some(fd) = self.stop(id, stats) else { return };
        self.push_ignored(opcode::Close::new(Fd(fd)).build(), stats);
        self.fd_freed = true;
        self.maybe_free(id, sink);
    }

    /// Stops slot `id` without closing its fd: cancels every op on the fd and frees
    /// the slot once none is in flight ([`Sink::released`], maybe at once); the owner
    /// then closes the fd with [`close_fd`](Self::close_fd). For owners whose slot id
    /// is the fd number (the emulated PASTE port): the number cannot be reused by a
    /// new socket while completions of the old one may still come, so a slot is never
    /// opened again while busy. Sends still in flight are cancelled.
    pub fn retire(&mut self, id: u32, sink: &mut impl Sink, stats: &Stats) {
        if self.stop(id, stats).is_some() {
            self.maybe_free(id, sink);
        }
    }

    /// What [`close`](Self::close) and [`retire`](Self::retire) share: marks open
    /// slot `id` closed, takes its fd from it and cancels every op in flight on the
    /// fd. Returns the fd, or `None` when the slot was not open.
    fn stop(&mut self, id: u32, stats: &Stats) -> Option<RawFd> {
        let s = self.slots.get_mut(id as usize).filter(|s| s.has(st::OPEN))?;
        s.state &= !st::OPEN;
        let (fd, busy) = (s.fd, s.inflight > 0);
        s.fd = -1;
        if busy {
            self.push_ignored(opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all()).build(), stats);
        }
        Some(fd)
    }

    /// Closes `fd`, which no open slot owns (its slot was [`retire`](Self::retire)d,
    /// or it was never handed to the engine), through the ring (`IORING_OP_CLOSE`; a
    /// plain `close` once the engine is shutting down).
    pub fn close_fd(&mut self, fd: RawFd, stats: &Stats) {
        self.close_stray(fd, stats);
    }

    /// Closes an fd nobody will own (accepted for a listener that is gone).
    fn close_stray(&mut self, fd: RawFd, stats: &Stats) {
        if self.dropping {
            // SAFETY: the kernel handed us this fd and nobody else knows it.
            unsafe { libc::close(fd) };
        } else {
            self.push_ignored(opcode::Close::new(Fd(fd)).build(), stats);
            self.fd_freed = true;
        }
    }

    fn maybe_free(&mut self, id: u32, sink: &mut impl Sink) {
        let s = &mut self.slots[id as usize];
        if !s.has(st::OPEN) && s.inflight == 0 && s.role != Role::Free {
            s.role = Role::Free;
            s.state = 0;
            // A free slot's generation moves on at once (and again when it is
            // opened): no `user_data` issued names it any more, so a completion is
            // current by its generation alone (`is_current`).
            s.gen = s.gen.wrapping_add(1) & GEN_MASK;
            sink.released(id);
        }
    }

    // ---- the tick ----

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
    /// ([`FreshSends`]).
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

    fn reap(&mut self, sink: &mut impl Sink, stats: &Stats) {
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
    fn is_current(&self, id: u32, gen: u32) -> bool {
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
