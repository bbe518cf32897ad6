//! The io_uring [`Backend`]: the tick (docs/architecture.md, the tick) and each connection's state.
//!
//! Owns the ring, the pool and its provided buffer rings, and one [`Slot`] per listener,
//! connection or datagram socket the runtime handed over (with the fd, the send queue
//! and every piece of memory an in-flight SQE points to), and the [`DgramTx`] slab: the
//! msghdr, iovec and address of each datagram send in flight, reused, never freed
//! while the kernel may read it. `submit` only turns ops into state and SQEs;
//! `poll` makes the tick's single `io_uring_enter` and turns CQEs into completions.
//!
//! It must never make a system call outside that enter while the backend runs (fds
//! are closed with `IORING_OP_CLOSE`, the eventfd is read with `IORING_OP_READ`), never
//! free memory the kernel may still touch (a slot outlives its last in-flight op), and
//! never report a completion for a token after its `Close`.
//!
//! `user_data` layout: bits 0-31 slot id, 32-39 [`OpKind`], 40-63 the slot's generation
//! (a check: slot ids are only reused once no op of the previous owner is in flight).
//! A datagram send (`OpKind::SendTo`) carries its `DgramTx` index instead of a slot id.
//!
//! Datagrams (`BindDgram`) are received with a multishot `IORING_OP_RECVMSG` into a
//! second provided buffer ring over the same pool (group [`BGID_DGRAM`], registered at
//! the first datagram socket, inside `poll`). Its buffers are offered from byte
//! [`DGRAM_RING_OFFSET`] so that the kernel's `io_uring_recvmsg_out` header and the
//! source address end exactly at [`DGRAM_HEADROOM`]: the payload is lent as the
//! `RxBuf` from there, zero copy, and a datagram longer than the rest of the buffer
//! arrives truncated and flagged (`MSG_TRUNC`), as on every backend. Each datagram
//! sent is one `IORING_OP_SENDMSG` naming its destination; up to
//! [`MAX_DGRAM_INFLIGHT`] per socket are in flight, the rest wait in the slot's queue.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};
use paste_rt_core::{
    Backend, BackendKind, BufPool, Completion, DenseMap, Op, PoolConfig, RemoteWake, SendData, Shutdown, StartError,
    Stats, Token, DGRAM_HEADROOM,
};

use crate::buf_ring::PoolBufRing;
use crate::probe::{self, RingConfig, UringProbe};
use crate::recv;
use crate::submit::{self, SubmitQueue, Wait};
use crate::user_data::{decode, encode as user_data, OpKind, GEN_MASK};
use crate::waker::RingWaker;

/// Buffer group id of the receive buffer ring.
const BGID: u16 = 0;
/// Buffer group id of the datagram receive ring.
pub const BGID_DGRAM: u16 = 1;
/// Bytes of `struct io_uring_recvmsg_out` (namelen, controllen, payloadlen, flags).
const RECVMSG_OUT_LEN: u32 = 16;
/// Room for the source address in a received datagram's buffer (a `sockaddr_in6`).
const DGRAM_NAME_LEN: u32 = std::mem::size_of::<libc::sockaddr_in6>() as u32;
/// Where datagram ring buffers start inside their pool buffer: header and address
/// then end at [`DGRAM_HEADROOM`], where the payload starts.
pub const DGRAM_RING_OFFSET: u32 = DGRAM_HEADROOM - RECVMSG_OUT_LEN - DGRAM_NAME_LEN;
/// Most datagram sends of one socket in flight at once.
pub const MAX_DGRAM_INFLIGHT: u32 = 64;
/// Most sends gathered into one `SENDMSG`.
pub const MAX_SEND_BATCH: usize = 32;

/// Settings of the io_uring backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringConfig {
    /// The buffer pool (anonymous or file-backed). At most 65536 buffers: io_uring
    /// buffer ids are 16-bit. Default: [`PoolConfig::default`] (4096 x 2048 B).
    pub pool: PoolConfig,
    /// Submission queue entries (default 4096). Sized so a tick's SQEs fit: when they
    /// do not, the rest waits in a local overflow queue for the next tick's enter.
    pub sq_entries: u32,
    /// Completion queue entries (default 16384, 4x the SQ: multishot ops post many
    /// CQEs per SQE). Overflow beyond it is kept by the kernel (`NODROP`), not lost.
    pub cq_entries: u32,
    /// Most pool buffers lent to the kernel's receive ring at once, shared by every
    /// connection; the rest of the pool stays free for `TxBuf`s and for the buffers the
    /// application holds. This bounds what connections can take per tick; beyond it a
    /// connection's receive pauses with `ENOBUFS` and re-arms once buffers come back.
    /// Per-connection backpressure is the runtime's `PauseRecv`, made prompt by
    /// [`rx_limit_bufs`](Self::rx_limit_bufs). 0 (default) = half the pool, at least 1
    /// and at most 4096.
    pub rx_ring_bufs: u32,
    /// Receive bundles (one completion filling several buffers) when the kernel has
    /// them (6.10+). Default true.
    pub recv_bundle: bool,
    /// Per-connection bound on receive buffers in flight: each arming of a
    /// connection's multishot receive ends after this many buffers' worth of bytes
    /// (`rx_limit_bufs * buffer size`, the kernel's `mshot_total_len`, Linux 6.16+),
    /// and is re-armed at the next tick unless the runtime paused the connection
    /// meanwhile. So once `PauseRecv` is submitted a connection receives at most one
    /// more arming: this many buffers (a plain, non-bundle receive may take one more).
    /// Default 32 (64 KiB of 2 KiB buffers); 0 = no limit.
    ///
    /// On older kernels (see [`UringProbe::recv_limit`]) the limit is not set and the
    /// bound is weaker: between the `PauseRecv` and the kernel's processing of its
    /// cancel (the next tick's enter), one connection may take every buffer of the
    /// shared receive ring ([`rx_ring_bufs`](Self::rx_ring_bufs)).
    pub rx_limit_bufs: u32,
    /// Most queued sends of one connection gathered into one `SENDMSG` (1 to
    /// [`MAX_SEND_BATCH`], default 16).
    pub send_batch: u32,
    /// How long a listener waits before accepting again after `EMFILE` and the like,
    /// unless a `Close` frees an fd first (default 100 ms).
    pub accept_retry: Duration,
    /// Pool buffers lent to the datagram receive ring (registered at the first
    /// datagram socket), shared by every datagram socket: what they can take before
    /// a pause applies. 0 (default) = an eighth of the pool, at least 1, at most 256.
    pub dgram_ring_bufs: u32,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            pool: PoolConfig::default(),
            sq_entries: 4096,
            cq_entries: 16384,
            rx_ring_bufs: 0,
            recv_bundle: true,
            rx_limit_bufs: 32,
            send_batch: 16,
            accept_retry: Duration::from_millis(100),
            dgram_ring_bufs: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Free,
    Listener,
    Stream,
    Dgram,
}

/// Something queued to send, in order.
#[derive(Debug)]
enum TxItem {
    Data(SendData),
    Shutdown(Shutdown),
    /// One datagram and its destination (datagram sockets only).
    Datagram(SendData, SocketAddr),
}

/// The memory one datagram `SENDMSG` points to while in flight. Boxed in the slab so it
/// never moves; reused for the next datagram once its completion arrived.
struct DgramTx {
    /// The socket's slot and its generation.
    slot: u32,
    gen: u32,
    /// The datagram (dropped, returning a pool buffer, at the completion).
    data: Option<SendData>,
    /// Its destination (`addr` below is the kernel's copy).
    to: Option<SocketAddr>,
    iov: libc::iovec,
    msg: libc::msghdr,
    addr: libc::sockaddr_storage,
}

impl DgramTx {
    fn new() -> DgramTx {
        DgramTx {
            slot: 0,
            gen: 0,
            data: None,
            to: None,
            iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
            // SAFETY: msghdr and sockaddr_storage are plain C structs; all-zero is a
            // valid (empty) value for both.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            addr: unsafe { std::mem::zeroed() },
        }
    }
}

/// A listener or a connection. Boxed in the slot table so that the iovecs, msghdr and
/// address it holds for in-flight SQEs never move.
struct Slot {
    gen: u32,
    role: Role,
    token: Token,
    fd: RawFd,
    /// The token still names this slot (no `Close` yet).
    open: bool,
    /// Ops in the kernel that point at this slot (a multishot op counts once).
    inflight: u32,

    accept_armed: bool,
    /// After an accept error: when to try again.
    accept_retry_at: Option<Instant>,
    /// An `AcceptError` was reported and no accept succeeded since.
    accept_error_reported: bool,

    connecting: bool,
    rx_armed: bool,
    rx_cancelling: bool,
    rx_paused: bool,
    /// EOF or an error was reported: no more receives.
    rx_done: bool,
    /// The receive stopped with `ENOBUFS`; listed in `rx_starved`.
    rx_starved: bool,

    txq: VecDeque<TxItem>,
    /// Items at the front of `txq` that an in-flight SQE sends (or 1 for a shutdown).
    tx_inflight: usize,
    /// Bytes of `txq[0]` already sent.
    tx_off: usize,
    tx_failed: Option<i32>,
    /// Listed in `tx_dirty`.
    tx_dirty: bool,
    iov: [libc::iovec; MAX_SEND_BATCH],
    msg: libc::msghdr,
    addr: libc::sockaddr_storage,
    /// The multishot `RECVMSG` template of a datagram socket (only its name and
    /// control lengths are read by the kernel).
    rx_msg: libc::msghdr,
    /// Datagram sends in flight.
    dgram_inflight: u32,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            gen: 0,
            role: Role::Free,
            token: Token(0),
            fd: -1,
            open: false,
            inflight: 0,
            accept_armed: false,
            accept_retry_at: None,
            accept_error_reported: false,
            connecting: false,
            rx_armed: false,
            rx_cancelling: false,
            rx_paused: false,
            rx_done: false,
            rx_starved: false,
            txq: VecDeque::new(),
            tx_inflight: 0,
            tx_off: 0,
            tx_failed: None,
            tx_dirty: false,
            iov: [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_SEND_BATCH],
            // SAFETY: msghdr and sockaddr_storage are plain C structs; all-zero is a
            // valid (empty) value for both.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            addr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            rx_msg: unsafe { std::mem::zeroed() },
            dgram_inflight: 0,
        }
    }

    fn reset(&mut self, role: Role, token: Token, fd: RawFd) {
        debug_assert_eq!(self.inflight, 0);
        self.gen = self.gen.wrapping_add(1) & GEN_MASK;
        self.role = role;
        self.token = token;
        self.fd = fd;
        self.open = true;
        self.accept_armed = false;
        self.accept_retry_at = None;
        self.accept_error_reported = false;
        self.connecting = false;
        self.rx_armed = false;
        self.rx_cancelling = false;
        self.rx_paused = false;
        self.rx_done = false;
        self.rx_starved = false;
        self.txq.clear();
        self.tx_inflight = 0;
        self.tx_off = 0;
        self.tx_failed = None;
        self.tx_dirty = false;
        self.rx_msg.msg_namelen = DGRAM_NAME_LEN;
        self.rx_msg.msg_controllen = 0;
        self.dgram_inflight = 0;
    }

    fn ud(&self, id: u32, kind: OpKind) -> u64 {
        user_data(id, kind, self.gen)
    }
}

/// The io_uring backend. See the crate docs.
pub struct UringBackend {
    ring: IoUring,
    probe: UringProbe,
    pool: BufPool,
    rx_ring: PoolBufRing,
    sq: SubmitQueue,
    waker: RingWaker,
    stats: Stats,
    /// Boxed: in-flight SQEs point into slots, which must not move when this grows.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<Slot>>,
    free_slots: Vec<u32>,
    tokens: DenseMap<u32>,
    /// Slots (id, generation) with queued sends to turn into SQEs at the next poll.
    tx_dirty: Vec<(u32, u32)>,
    /// Slots whose receive ran out of buffers, oldest first.
    rx_starved: VecDeque<(u32, u32)>,
    /// Slots whose multishot receive ended (byte limit reached, cancelled for a pause)
    /// in the last reap: re-armed at the next tick unless paused meanwhile.
    rx_ended: Vec<(u32, u32)>,
    /// Listeners waiting to accept again after an error.
    accept_waiting: Vec<(u32, u32)>,
    /// An fd was closed since the last poll (a listener out of fds may retry).
    fd_freed: bool,
    /// Completions decided outside a poll (e.g. a send on a failed connection).
    deferred: Vec<Completion>,
    cqes: Vec<(u64, i32, u32)>,
    /// Cancels and closes in the kernel.
    ignore_inflight: u64,
    waker_armed: bool,
    use_bundle: bool,
    /// Bytes one arming of a connection's receive may take (`mshot_total_len`); 0 = no
    /// limit (not configured, or the kernel lacks it).
    recv_limit: u32,
    send_batch: usize,
    accept_retry: Duration,
    dropping: bool,
    /// The datagram receive ring, registered at the first `BindDgram`.
    dgram_ring: Option<PoolBufRing>,
    /// Buffers the datagram ring holds once registered.
    dgram_ring_target: u32,
    /// A datagram socket exists but the ring is not registered yet.
    dgram_ring_wanted: bool,
    /// Registering the datagram ring failed with this errno: datagram sockets fail.
    dgram_ring_error: Option<i32>,
    /// Per-send state of datagrams in flight (boxed: SQEs point into them).
    #[allow(clippy::vec_box)]
    dgram_tx: Vec<Box<DgramTx>>,
    dgram_tx_free: Vec<u32>,
}

impl UringBackend {
    /// Builds the pool, opens and probes the ring, registers the receive buffer ring and
    /// arms the wake-up eventfd. Never falls back: an error says what is missing.
    pub fn new(config: &UringConfig) -> Result<UringBackend, StartError> {
        let kind = BackendKind::Uring;
        let pool = BufPool::new(&config.pool, 0).map_err(|e| StartError::os(kind, "buffer pool", &e))?;
        let ring_config = RingConfig { sq_entries: config.sq_entries, cq_entries: config.cq_entries };
        let (ring, probe) = probe::open_ring(&ring_config).map_err(|e| e.into_start_error(kind))?;
        let target = match config.rx_ring_bufs {
            0 => (pool.capacity() / 2).clamp(1, 4096),
            n => n.min(pool.capacity()).max(1),
        };
        let rx_ring = PoolBufRing::new(&ring.submitter(), &pool, BGID, target, 0)
            .map_err(|e| StartError::os(kind, "register the provided buffer ring (IORING_REGISTER_PBUF_RING)", &e))?;
        let waker = RingWaker::new().map_err(|e| StartError::os(kind, "eventfd for remote wake-ups", &e))?;
        let use_bundle = config.recv_bundle && probe.recv_bundle;
        let recv_limit = if probe.recv_limit {
            (config.rx_limit_bufs as u64 * rx_ring.ring().buf_len() as u64).min(u32::MAX as u64) as u32
        } else {
            0
        };
        let pool_capacity = pool.capacity();
        let mut backend = UringBackend {
            sq: SubmitQueue::with_capacity(256),
            ring,
            probe,
            pool,
            rx_ring,
            waker,
            stats: Stats::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            tokens: DenseMap::new(),
            tx_dirty: Vec::new(),
            rx_starved: VecDeque::new(),
            rx_ended: Vec::with_capacity(256),
            accept_waiting: Vec::new(),
            fd_freed: false,
            deferred: Vec::new(),
            cqes: Vec::new(),
            ignore_inflight: 0,
            waker_armed: false,
            use_bundle,
            recv_limit,
            send_batch: (config.send_batch as usize).clamp(1, MAX_SEND_BATCH),
            accept_retry: config.accept_retry,
            dropping: false,
            dgram_ring: None,
            dgram_ring_target: match config.dgram_ring_bufs {
                0 => (pool_capacity / 8).clamp(1, 256),
                n => n.min(pool_capacity).max(1),
            },
            dgram_ring_wanted: false,
            dgram_ring_error: None,
            dgram_tx: Vec::new(),
            dgram_tx_free: Vec::new(),
        };
        backend.arm_waker();
        Ok(backend)
    }

    /// What was probed at start.
    pub fn probe(&self) -> &UringProbe {
        &self.probe
    }

    /// Operations in the kernel (or queued for it): multishot receives and accepts,
    /// sends, connects, cancels, closes, and the wake-up read. At rest this is the
    /// number of armed listeners and connections plus one.
    pub fn ops_in_flight(&self) -> u64 {
        let slots: u64 = self.slots.iter().map(|s| s.inflight as u64).sum();
        slots + self.ignore_inflight + self.waker_armed as u64
    }

    /// Slots in use: open listeners and connections, plus closed ones whose last
    /// operations have not completed yet.
    pub fn live_slots(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// SQEs that ever waited in the overflow queue because the SQ was full.
    pub fn sq_overflows(&self) -> u64 {
        self.sq.overflowed_total()
    }

    // ---- ops -> state and SQEs (no system call) ----

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every SQE built by this backend points only at memory that outlives
        // its op: pool buffers (the pool outlives the ring, see Drop), `SendData` and
        // iovecs/msghdr/sockaddr inside a boxed slot that is not freed or reset while
        // `inflight > 0`, and the waker's boxed read buffer.
        unsafe { self.sq.push(&mut self.ring, entry) }
    }

    fn push_ignored(&mut self, entry: squeue::Entry) {
        self.ignore_inflight += 1;
        self.push(entry.user_data(user_data(0, OpKind::Ignore, 0)));
    }

    fn arm_waker(&mut self) {
        let entry = self.waker.read_sqe(user_data(0, OpKind::Wake, 0));
        self.waker_armed = true;
        self.push(entry);
    }

    fn open_slot(&mut self, token: Token, fd: RawFd, role: Role) -> u32 {
        if self.tokens.contains_key(token.0 as usize) {
            // The runtime reused a token it did not close: the old owner goes.
            self.close(token);
        }
        let id = match self.free_slots.pop() {
            Some(id) => id,
            None => {
                self.slots.push(Box::new(Slot::new()));
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[id as usize].reset(role, token, fd);
        self.tokens.insert(token.0 as usize, id);
        id
    }

    fn lookup(&self, token: Token, role: Role) -> Option<u32> {
        self.tokens.get(token.0 as usize).copied().filter(|&id| self.slots[id as usize].role == role)
    }

    /// A connection or datagram socket (what receives).
    fn lookup_rx(&self, token: Token) -> Option<u32> {
        self.tokens
            .get(token.0 as usize)
            .copied()
            .filter(|&id| matches!(self.slots[id as usize].role, Role::Stream | Role::Dgram))
    }

    /// The `user_data` kind of a slot's receive.
    fn recv_kind(role: Role) -> OpKind {
        if role == Role::Dgram {
            OpKind::RecvFrom
        } else {
            OpKind::Recv
        }
    }

    fn arm_accept(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        if !s.open || s.accept_armed || s.accept_retry_at.is_some() {
            return;
        }
        s.accept_armed = true;
        s.inflight += 1;
        let entry = opcode::AcceptMulti::new(Fd(s.fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(s.ud(id, OpKind::Accept));
        self.push(entry);
    }

    fn arm_recv(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        if !s.open || s.rx_armed || s.rx_paused || s.rx_done || s.rx_starved || s.connecting {
            return;
        }
        let entry = if s.role == Role::Dgram {
            if self.dgram_ring.is_none() {
                // Armed at the next tick, once the datagram ring is registered.
                self.dgram_ring_wanted = true;
                self.rx_ended.push((id, s.gen));
                return;
            }
            // MSG_TRUNC: the header's flags say when a datagram did not fit.
            opcode::RecvMsgMulti::new(Fd(s.fd), &s.rx_msg, BGID_DGRAM)
                .flags(libc::MSG_TRUNC as u32)
                .build()
                .user_data(s.ud(id, OpKind::RecvFrom))
        } else {
            recv::multishot_recv(s.fd, BGID, self.use_bundle, self.recv_limit).user_data(s.ud(id, OpKind::Recv))
        };
        s.rx_armed = true;
        s.inflight += 1;
        self.push(entry);
    }

    /// Registers the datagram receive ring (the first time a datagram socket needs
    /// it; inside `poll`, counted). On failure every datagram socket fails.
    fn setup_dgram_ring(&mut self, out: &mut Vec<Completion>) {
        if !self.dgram_ring_wanted || self.dgram_ring.is_some() {
            return;
        }
        self.dgram_ring_wanted = false;
        if self.dgram_ring_error.is_none() {
            self.stats.syscall();
            match PoolBufRing::new(
                &self.ring.submitter(),
                &self.pool,
                BGID_DGRAM,
                self.dgram_ring_target,
                DGRAM_RING_OFFSET,
            ) {
                Ok(mut ring) => {
                    ring.refill();
                    self.dgram_ring = Some(ring);
                    return;
                }
                Err(e) => self.dgram_ring_error = Some(e.raw_os_error().unwrap_or(libc::ENOMEM)),
            }
        }
        let errno = self.dgram_ring_error.unwrap_or(libc::ENOMEM);
        for s in self.slots.iter_mut() {
            if s.role == Role::Dgram && s.open && !s.rx_done {
                s.rx_done = true;
                out.push(Completion::RecvError { token: s.token, errno });
            }
        }
    }

    fn mark_tx_dirty(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        if !s.tx_dirty {
            s.tx_dirty = true;
            self.tx_dirty.push((id, s.gen));
        }
    }

    /// Turns the front of a connection's send queue into one SQE: a SEND, a SENDMSG
    /// gathering up to `send_batch` queued sends, or a SHUTDOWN. One in flight per
    /// connection keeps the byte order. `closing` flushes without waiting (what the
    /// socket takes now) and never shuts down.
    fn start_send(&mut self, id: u32, closing: bool) {
        if self.slots[id as usize].role == Role::Dgram {
            return self.start_dgram_sends(id);
        }
        let batch = self.send_batch;
        let s = &mut *self.slots[id as usize];
        if s.tx_inflight > 0 || s.connecting || (!s.open && !closing) {
            return;
        }
        let entry = match s.txq.front() {
            None => return,
            Some(TxItem::Shutdown(_)) if closing => return,
            Some(TxItem::Shutdown(how)) => {
                let how = match how {
                    Shutdown::Write => libc::SHUT_WR,
                    Shutdown::Read => libc::SHUT_RD,
                    Shutdown::Both => libc::SHUT_RDWR,
                };
                s.tx_inflight = 1;
                opcode::Shutdown::new(Fd(s.fd), how).build().user_data(s.ud(id, OpKind::Shutdown))
            }
            Some(TxItem::Datagram(..)) => return,
            Some(TxItem::Data(_)) => {
                let mut n = 0;
                for item in s.txq.iter() {
                    let TxItem::Data(data) = item else { break };
                    if n == batch {
                        break;
                    }
                    let bytes = if n == 0 { &data.as_slice()[s.tx_off..] } else { data.as_slice() };
                    s.iov[n] = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
                    n += 1;
                }
                let flags = libc::MSG_NOSIGNAL | if closing { libc::MSG_DONTWAIT } else { libc::MSG_WAITALL };
                s.tx_inflight = n;
                let entry = if n == 1 {
                    let len = s.iov[0].iov_len.min(u32::MAX as usize) as u32;
                    opcode::Send::new(Fd(s.fd), s.iov[0].iov_base as *const u8, len).flags(flags).build()
                } else {
                    s.msg.msg_iov = s.iov.as_mut_ptr();
                    s.msg.msg_iovlen = n as _;
                    opcode::SendMsg::new(Fd(s.fd), &s.msg).flags(flags as u32).build()
                };
                entry.user_data(s.ud(id, OpKind::Send))
            }
        };
        s.inflight += 1;
        self.push(entry);
    }

    /// Turns queued datagrams into one `SENDMSG` each, up to [`MAX_DGRAM_INFLIGHT`] in
    /// flight for the socket. Each uses a [`DgramTx`] from the slab (grown only when
    /// more datagrams are in flight than ever before).
    fn start_dgram_sends(&mut self, id: u32) {
        loop {
            let s = &mut *self.slots[id as usize];
            if !s.open || s.dgram_inflight >= MAX_DGRAM_INFLIGHT {
                return;
            }
            let Some(TxItem::Datagram(..)) = s.txq.front() else { return };
            let Some(TxItem::Datagram(data, addr)) = s.txq.pop_front() else { return };
            let gen = s.gen;
            s.inflight += 1;
            s.dgram_inflight += 1;
            let fd = s.fd;
            let tx_id = match self.dgram_tx_free.pop() {
                Some(i) => i,
                None => {
                    self.dgram_tx.push(Box::new(DgramTx::new()));
                    (self.dgram_tx.len() - 1) as u32
                }
            };
            let t = &mut *self.dgram_tx[tx_id as usize];
            t.slot = id;
            t.gen = gen;
            let bytes = data.as_slice();
            t.iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
            t.data = Some(data);
            t.to = Some(addr);
            let len = paste_rt_core::sockaddr::write(&addr, &mut t.addr);
            t.msg.msg_name = (&mut t.addr as *mut libc::sockaddr_storage).cast();
            t.msg.msg_namelen = len;
            t.msg.msg_iov = &mut t.iov;
            t.msg.msg_iovlen = 1;
            let entry = opcode::SendMsg::new(Fd(fd), &t.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
                .user_data(user_data(tx_id, OpKind::SendTo, 0));
            self.push(entry);
        }
    }

    /// Close: flush what the socket takes without waiting, cancel every op on the fd,
    /// close it with `IORING_OP_CLOSE` (after the cancel, in SQ order), forget the token.
    fn close(&mut self, token: Token) {
        let Some(id) = self.tokens.remove(token.0 as usize) else { return };
        let s = &mut self.slots[id as usize];
        s.open = false;
        if s.role == Role::Dgram {
            // The runtime closes a datagram socket once its queue was sent (or at
            // shutdown, when the rest is abandoned).
            s.txq.clear();
        }
        if s.role == Role::Stream {
            if s.tx_failed.is_none() {
                self.start_send(id, true);
            }
            let s = &mut self.slots[id as usize];
            let keep = s.tx_inflight;
            s.txq.truncate(keep);
        }
        let s = &mut self.slots[id as usize];
        let (fd, busy) = (s.fd, s.inflight > 0);
        s.fd = -1;
        if busy {
            self.push_ignored(opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all()).build());
        }
        self.push_ignored(opcode::Close::new(Fd(fd)).build());
        self.fd_freed = true;
        self.maybe_free(id);
    }

    /// An accepted fd nobody will own (its listener is closed).
    fn close_stray(&mut self, fd: RawFd) {
        if self.dropping {
            // SAFETY: the kernel handed us this fd and nobody else knows it.
            unsafe { libc::close(fd) };
        } else {
            self.push_ignored(opcode::Close::new(Fd(fd)).build());
            self.fd_freed = true;
        }
    }

    fn maybe_free(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        if !s.open && s.inflight == 0 && s.role != Role::Free {
            s.role = Role::Free;
            s.txq.clear();
            self.free_slots.push(id);
        }
    }

    // ---- the tick's steps before the enter ----

    /// Re-arms receives that ended in the last reap (their byte limit reached, or
    /// cancelled by a pause since lifted), unless the runtime paused them meanwhile.
    fn rearm_ended(&mut self) {
        for k in 0..self.rx_ended.len() {
            let (id, gen) = self.rx_ended[k];
            if self.slots[id as usize].gen == gen {
                self.arm_recv(id);
            }
        }
        self.rx_ended.clear();
    }

    /// Re-arms receives that stopped for lack of buffers, at most one per buffer now in
    /// the ring (each takes at least one), oldest first.
    fn rearm_starved(&mut self) {
        let mut budget = self.rx_ring.ring().len();
        let mut dgram_budget = self.dgram_ring.as_ref().map_or(0, |r| r.ring().len());
        let mut left = self.rx_starved.len();
        while left > 0 && (budget > 0 || dgram_budget > 0) {
            left -= 1;
            let Some((id, gen)) = self.rx_starved.pop_front() else { break };
            let s = &mut self.slots[id as usize];
            if s.gen != gen || !s.rx_starved {
                continue;
            }
            let budget = if s.role == Role::Dgram { &mut dgram_budget } else { &mut budget };
            if *budget == 0 {
                // Its ring is still dry: keep its place for a later tick.
                self.rx_starved.push_back((id, gen));
                continue;
            }
            *budget -= 1;
            s.rx_starved = false;
            self.arm_recv(id);
        }
    }

    /// Re-arms listeners whose retry time came, or all of them if an fd was freed.
    /// Returns how long until the next one is due.
    fn rearm_listeners(&mut self) -> Option<Duration> {
        if self.accept_waiting.is_empty() {
            self.fd_freed = false;
            return None;
        }
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        let mut i = 0;
        while i < self.accept_waiting.len() {
            let (id, gen) = self.accept_waiting[i];
            let s = &mut self.slots[id as usize];
            let Some(at) = s.accept_retry_at.filter(|_| s.gen == gen && s.open) else {
                self.accept_waiting.swap_remove(i);
                continue;
            };
            if self.fd_freed || now >= at {
                s.accept_retry_at = None;
                self.accept_waiting.swap_remove(i);
                self.arm_accept(id);
            } else {
                let left = at - now;
                next = Some(next.map_or(left, |n| n.min(left)));
                i += 1;
            }
        }
        self.fd_freed = false;
        next
    }

    fn flush_sends(&mut self) {
        for k in 0..self.tx_dirty.len() {
            let (id, gen) = self.tx_dirty[k];
            let s = &mut self.slots[id as usize];
            if s.gen != gen || !s.tx_dirty {
                continue;
            }
            s.tx_dirty = false;
            self.start_send(id, false);
        }
        self.tx_dirty.clear();
    }

    // ---- CQEs -> completions ----

    fn reap(&mut self, out: &mut Vec<Completion>) {
        self.cqes.clear();
        self.cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        let mut rx = false;
        for k in 0..self.cqes.len() {
            let (ud, res, flags) = self.cqes[k];
            let (id, kind, gen) = decode(ud);
            match kind {
                Some(OpKind::Wake) => self.on_wake(res),
                Some(OpKind::Ignore) => self.ignore_inflight -= 1,
                Some(OpKind::SendTo) => self.on_sendto(id, res, out),
                Some(kind) => {
                    let Some(s) = self.slots.get(id as usize) else { continue };
                    debug_assert_eq!(s.gen, gen, "completion for a reused slot");
                    if s.gen != gen || s.role == Role::Free {
                        continue;
                    }
                    match kind {
                        OpKind::Accept => self.on_accept(id, res, flags, out),
                        OpKind::Recv => rx |= self.on_recv(id, res, flags, out),
                        OpKind::Send => self.on_send(id, res, out),
                        OpKind::Shutdown => self.on_shutdown(id),
                        OpKind::Connect => self.on_connect(id, res, out),
                        OpKind::RecvFrom => rx |= self.on_recvfrom(id, res, flags, out),
                        OpKind::Wake | OpKind::Ignore | OpKind::SendTo => {}
                    }
                    self.maybe_free(id);
                }
                None => {}
            }
        }
        if rx {
            Stats::add(&self.stats.rx_batches, 1);
        }
    }

    fn on_wake(&mut self, res: i32) {
        self.waker_armed = false;
        if self.waker.on_read(res) {
            Stats::add(&self.stats.remote_wakeups, 1);
        }
        if !self.dropping && res != -libc::ECANCELED {
            self.arm_waker();
        }
    }

    fn on_accept(&mut self, id: u32, res: i32, flags: u32, out: &mut Vec<Completion>) {
        let s = &mut self.slots[id as usize];
        if !cqueue::more(flags) {
            s.accept_armed = false;
            s.inflight -= 1;
        }
        let (open, token) = (s.open, s.token);
        if res >= 0 {
            if open {
                s.accept_error_reported = false;
                Stats::add(&self.stats.accepts, 1);
                out.push(Completion::Accepted { listener: token, fd: res });
            } else {
                self.close_stray(res);
            }
        } else if open {
            match -res {
                libc::ECANCELED => {}
                // The peer gave up before we took it, or a signal: just accept again.
                libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO => {}
                errno => {
                    if !s.accept_error_reported {
                        s.accept_error_reported = true;
                        out.push(Completion::AcceptError { listener: token, errno });
                    }
                    s.accept_retry_at = Some(Instant::now() + self.accept_retry);
                    self.accept_waiting.push((id, s.gen));
                }
            }
        }
        self.arm_accept(id);
    }

    /// Returns whether buffers were delivered.
    fn on_recv(&mut self, id: u32, res: i32, flags: u32, out: &mut Vec<Completion>) -> bool {
        let s = &mut self.slots[id as usize];
        let ended = !cqueue::more(flags);
        if ended {
            s.rx_armed = false;
            s.rx_cancelling = false;
            s.inflight -= 1;
        }
        let (open, token, gen) = (s.open, s.token, s.gen);
        let mut delivered = false;
        if let Some(bid) = cqueue::buffer_select(flags) {
            let bytes = res.max(0) as u32;
            let stats = &self.stats;
            let n = self.rx_ring.take(bid, bytes, |buf| {
                if open {
                    out.push(Completion::Recv { token, buf });
                }
            });
            if open && n > 0 {
                Stats::add(&stats.rx_buffers, n as u64);
                Stats::add(&stats.rx_bytes, bytes as u64);
                delivered = true;
            }
        }
        let s = &mut self.slots[id as usize];
        if res == 0 {
            s.rx_done = true;
            if open {
                out.push(Completion::Eof(token));
            }
        } else if res < 0 {
            self.recv_failed(id, -res, out);
        }
        if ended && open {
            // Not re-armed now: the runtime first sees these buffers and may pause.
            self.rx_ended.push((id, gen));
        }
        delivered
    }

    /// A receive (stream or datagram) ended with `errno`: cancelled (nothing to do),
    /// out of buffers (re-armed once buffers are back, without spinning), or a real
    /// error reported once to the runtime.
    fn recv_failed(&mut self, id: u32, errno: i32, out: &mut Vec<Completion>) {
        let s = &mut self.slots[id as usize];
        let (open, token) = (s.open, s.token);
        match errno {
            libc::ECANCELED => {}
            libc::ENOBUFS => {
                Stats::add(&self.stats.pool_exhausted, 1);
                if open && !s.rx_starved {
                    s.rx_starved = true;
                    self.rx_starved.push_back((id, s.gen));
                }
            }
            errno => {
                s.rx_done = true;
                if open {
                    out.push(Completion::RecvError { token, errno });
                }
            }
        }
    }

    /// A datagram socket's multishot `RECVMSG` completion: one datagram in one buffer,
    /// `io_uring_recvmsg_out` and the source address first. Returns whether a datagram
    /// was delivered.
    fn on_recvfrom(&mut self, id: u32, res: i32, flags: u32, out: &mut Vec<Completion>) -> bool {
        let s = &mut self.slots[id as usize];
        let ended = !cqueue::more(flags);
        if ended {
            s.rx_armed = false;
            s.rx_cancelling = false;
            s.inflight -= 1;
        }
        let (open, token, gen) = (s.open, s.token, s.gen);
        let mut delivered = false;
        if let (Some(bid), Some(ring)) = (cqueue::buffer_select(flags), self.dgram_ring.as_mut()) {
            let bytes = res.max(0) as u32;
            let stats = &self.stats;
            ring.take(bid, bytes, |mut buf| {
                let Some((from, truncated)) = parse_recvmsg_out(&buf) else { return };
                buf.advance((RECVMSG_OUT_LEN + DGRAM_NAME_LEN) as usize);
                if open {
                    Stats::add(&stats.rx_buffers, 1);
                    Stats::add(&stats.rx_bytes, buf.len() as u64);
                    out.push(Completion::RecvFrom { token, buf, from, truncated });
                    delivered = true;
                }
            });
        }
        if res < 0 {
            self.recv_failed(id, -res, out);
        }
        if ended && open {
            self.rx_ended.push((id, gen));
        }
        delivered
    }

    /// One datagram's `SENDMSG` completed: report it, return its state to the slab.
    fn on_sendto(&mut self, tx_id: u32, res: i32, out: &mut Vec<Completion>) {
        let Some(t) = self.dgram_tx.get_mut(tx_id as usize) else { return };
        let (Some(data), Some(to)) = (t.data.take(), t.to.take()) else { return };
        let (id, gen) = (t.slot, t.gen);
        self.dgram_tx_free.push(tx_id);
        let bytes = data.len() as u32;
        let s = &mut *self.slots[id as usize];
        debug_assert_eq!(s.gen, gen, "datagram completion for a reused slot");
        s.inflight -= 1;
        s.dgram_inflight -= 1;
        if s.open && (res == -libc::EAGAIN || res == -libc::EINTR) {
            // Not sent (see `on_send`): first in line again, submitted next tick.
            s.txq.push_front(TxItem::Datagram(data, to));
            self.mark_tx_dirty(id);
        } else if s.open {
            let errno = if res < 0 { -res } else { 0 };
            if errno == 0 {
                Stats::add(&self.stats.tx_bytes, res as u64);
            }
            out.push(Completion::SentTo { token: s.token, bytes, errno });
            if !s.txq.is_empty() {
                self.mark_tx_dirty(id);
            }
        }
        self.maybe_free(id);
    }

    fn on_send(&mut self, id: u32, res: i32, out: &mut Vec<Completion>) {
        let s = &mut *self.slots[id as usize];
        s.inflight -= 1;
        s.tx_inflight = 0;
        if !s.open {
            // Closed meanwhile: whatever was sent is gone, the rest is dropped.
            s.txq.clear();
            return;
        }
        if res == -libc::EAGAIN || res == -libc::EINTR {
            // Nothing was sent: io_uring can end a send with EAGAIN when it handed it
            // to a worker that found the socket buffer full (seen with Unix sockets on
            // 6.18). The queue is untouched; the send is submitted again next tick.
            self.mark_tx_dirty(id);
        } else if res > 0 {
            Stats::add(&self.stats.tx_bytes, res as u64);
            out.push(Completion::Sent { token: s.token, bytes: res as u32 });
            let mut left = res as usize;
            while left > 0 {
                let Some(TxItem::Data(data)) = s.txq.front() else { break };
                let rest = data.len() - s.tx_off;
                if left >= rest {
                    left -= rest;
                    s.tx_off = 0;
                    s.txq.pop_front();
                } else {
                    s.tx_off += left;
                    left = 0;
                }
            }
            if !s.txq.is_empty() {
                self.mark_tx_dirty(id);
            }
        } else {
            // A stream socket never takes 0 of n > 0 bytes unless it is broken.
            let errno = if res == 0 { libc::EPIPE } else { -res };
            s.txq.clear();
            s.tx_off = 0;
            s.tx_failed = Some(errno);
            out.push(Completion::SendError { token: s.token, errno });
        }
    }

    fn on_shutdown(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        s.inflight -= 1;
        s.tx_inflight = 0;
        s.txq.pop_front();
        if s.open && !s.txq.is_empty() {
            self.mark_tx_dirty(id);
        }
    }

    fn on_connect(&mut self, id: u32, res: i32, out: &mut Vec<Completion>) {
        let s = &mut self.slots[id as usize];
        s.inflight -= 1;
        s.connecting = false;
        if !s.open {
            return;
        }
        let errno = if res < 0 { -res } else { 0 };
        out.push(Completion::Connected { token: s.token, errno });
        if errno == 0 {
            if !s.txq.is_empty() {
                self.mark_tx_dirty(id);
            }
            self.arm_recv(id);
        } else {
            s.rx_done = true;
            s.tx_failed = Some(errno);
            if !s.txq.is_empty() {
                s.txq.clear();
                out.push(Completion::SendError { token: s.token, errno });
            }
        }
    }
}

impl Backend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn describe(&self) -> String {
        format!(
            "io_uring: {}; rx buffer ring {} x {} B{}, {}, send batch {}",
            self.probe.describe(),
            self.rx_ring.target(),
            self.rx_ring.ring().buf_len(),
            if self.use_bundle { " with bundles" } else { "" },
            match (self.recv_limit, self.probe.recv_limit) {
                (0, true) => "no per-connection recv limit (configured off)".to_string(),
                (0, false) =>
                    "no per-connection recv limit (kernel lacks it: a connection may fill the ring)".to_string(),
                (n, _) => format!("recv limit {n} B per connection arming"),
            },
            self.send_batch,
        )
    }

    fn pool(&self) -> &BufPool {
        &self.pool
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn submit(&mut self, op: Op) {
        match op {
            Op::Listen { token, fd } => {
                let id = self.open_slot(token, fd, Role::Listener);
                self.arm_accept(id);
            }
            Op::Register { token, fd } => {
                let id = self.open_slot(token, fd, Role::Stream);
                self.arm_recv(id);
            }
            Op::Connect { token, fd, addr } => {
                let id = self.open_slot(token, fd, Role::Stream);
                let s = &mut *self.slots[id as usize];
                s.connecting = true;
                s.inflight += 1;
                let len = paste_rt_core::sockaddr::write(&addr, &mut s.addr);
                let entry = opcode::Connect::new(Fd(fd), (&s.addr as *const libc::sockaddr_storage).cast(), len)
                    .build()
                    .user_data(s.ud(id, OpKind::Connect));
                self.push(entry);
            }
            Op::PauseRecv(token) => {
                let Some(id) = self.lookup_rx(token) else { return };
                let s = &mut self.slots[id as usize];
                s.rx_paused = true;
                if s.rx_armed && !s.rx_cancelling {
                    s.rx_cancelling = true;
                    let target = s.ud(id, Self::recv_kind(s.role));
                    self.push_ignored(opcode::AsyncCancel::new(target).build());
                }
            }
            Op::ResumeRecv(token) => {
                let Some(id) = self.lookup_rx(token) else { return };
                self.slots[id as usize].rx_paused = false;
                self.arm_recv(id);
            }
            Op::Send { token, data } => {
                let Some(id) = self.lookup(token, Role::Stream) else { return };
                if data.is_empty() {
                    return;
                }
                let s = &mut self.slots[id as usize];
                if let Some(errno) = s.tx_failed {
                    self.deferred.push(Completion::SendError { token, errno });
                    return;
                }
                s.txq.push_back(TxItem::Data(data));
                self.mark_tx_dirty(id);
            }
            Op::Shutdown { token, how } => {
                let Some(id) = self.lookup(token, Role::Stream) else { return };
                self.slots[id as usize].txq.push_back(TxItem::Shutdown(how));
                self.mark_tx_dirty(id);
            }
            Op::Close(token) => self.close(token),
            Op::BindDgram { token, fd } => {
                let id = self.open_slot(token, fd, Role::Dgram);
                self.arm_recv(id);
            }
            Op::SendTo { token, data, addr } => {
                let Some(id) = self.lookup(token, Role::Dgram) else { return };
                self.slots[id as usize].txq.push_back(TxItem::Datagram(data, addr));
                self.mark_tx_dirty(id);
            }
        }
    }

    /// The tick (see `UringBackend::tick`).
    fn flush_and_wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        self.tick(timeout, out)
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.waker.handle()
    }
}

impl UringBackend {
    /// One tick's I/O (docs/architecture.md, the tick, step 2), top to bottom.
    fn tick(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        let first = out.len();
        out.append(&mut self.deferred);

        // 1. Buffers the application dropped go back to the kernel's receive ring;
        //    receives that ran dry and listeners that backed off are re-armed.
        //    A receive that ended in the last reap is re-armed only now, so that a
        //    `PauseRecv` the runtime submitted after seeing its buffers stops it.
        self.setup_dgram_ring(out);
        self.rx_ring.refill();
        if let Some(ring) = self.dgram_ring.as_mut() {
            ring.refill();
        }
        self.rearm_ended();
        self.rearm_starved();
        let retry_in = self.rearm_listeners();

        // 2. Queued sends become SQEs (one in flight per connection).
        self.flush_sends();

        // 3. The one io_uring_enter: submit everything, wait for the first completion
        //    unless completions are already waiting or SQEs are left over.
        let timeout = match (timeout, retry_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut wait = Wait::from_timeout(timeout);
        if out.len() > first || self.sq.pending() > 0 {
            wait = Wait::No;
        }
        self.stats.syscall();
        if wait.may_block() {
            Stats::add(&self.stats.waits, 1);
        }
        let entered = submit::enter(&mut self.ring, wait);
        self.sq.refill_ring(&mut self.ring);
        entered?;

        // 4. Completions; the buffers they took are replaced at once (no system call),
        //    so between polls the ring is at its target whenever the pool allows and
        //    the pool's in-use count above that is exactly what the application holds.
        self.reap(out);
        self.rx_ring.refill();
        if let Some(ring) = self.dgram_ring.as_mut() {
            ring.refill();
        }
        Stats::add(&self.stats.completions, (out.len() - first) as u64);
        Ok(())
    }
}

impl Drop for UringBackend {
    /// Submits what is queued (closes included), cancels every op and waits for the
    /// kernel to let go of our memory, closes the fds still owned, and returns the
    /// receive ring's buffers to the pool. System calls are fine here: no tick runs.
    fn drop(&mut self) {
        self.dropping = true;
        // The fds still owned: closed last, after the kernel let go of every op.
        let mut owned = Vec::new();
        for s in self.slots.iter_mut() {
            if s.role != Role::Free && s.fd >= 0 {
                owned.push(s.fd);
                s.fd = -1;
            }
            s.open = false;
        }
        let mut scratch = Vec::new();
        for _ in 0..4 {
            if submit::enter(&mut self.ring, Wait::No).is_err() {
                break;
            }
            self.sq.refill_ring(&mut self.ring);
            self.reap(&mut scratch);
            if self.sq.pending() == 0 && self.ring.submission().is_empty() {
                break;
            }
        }
        let _ = self.ring.submitter().register_sync_cancel(None, CancelBuilder::any().all());
        for _ in 0..100 {
            if self.ops_in_flight() == 0 {
                break;
            }
            if submit::enter(&mut self.ring, Wait::For(Duration::from_millis(10))).is_err() {
                break;
            }
            self.reap(&mut scratch);
        }
        drop(scratch);
        for fd in owned {
            // SAFETY: the backend owns this fd (handed over by Listen/Register/Connect)
            // and closes it exactly once (its slot's fd was cleared above).
            unsafe { libc::close(fd) };
        }
        if self.ops_in_flight() == 0 {
            let _ = self.rx_ring.unregister(&self.ring.submitter());
            if let Some(ring) = self.dgram_ring.as_mut() {
                let _ = ring.unregister(&self.ring.submitter());
            }
        }
    }
}

/// Reads the `io_uring_recvmsg_out` header and the source address at the start of a
/// datagram ring buffer: (source, truncated). `None` if the completion is too short to
/// hold them or the address is not IPv4/IPv6 (neither happens on a UDP socket).
fn parse_recvmsg_out(buf: &[u8]) -> Option<(SocketAddr, bool)> {
    let head = RECVMSG_OUT_LEN as usize;
    let name = buf.get(head..head + DGRAM_NAME_LEN as usize)?;
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let namelen = u32_at(buf, 0) as usize;
    let flags = u32_at(buf, 12);
    let from = paste_rt_core::sockaddr::read_bytes(&name[..namelen.min(name.len())])?;
    Some((from, flags & libc::MSG_TRUNC as u32 != 0))
}
