//! Datagram (UDP) sockets on io_uring: the backend's own SQEs on engine slots.
//!
//! Owns the datagram receive ring (a second provided-buffer ring over the same pool,
//! group [`BGID_DGRAM`], registered at the first datagram socket, inside `poll`), the
//! per-socket multishot `RECVMSG` template, and the [`DgramTx`] slab: the msghdr,
//! iovec and address of each datagram send in flight, reused, never freed while the
//! kernel may read it.
//!
//! Ring buffers are offered from byte [`DGRAM_RING_OFFSET`] so that the kernel's
//! `io_uring_recvmsg_out` header and the source address end exactly at
//! [`DGRAM_HEADROOM`]: the payload is lent as the `RxBuf` from there, zero copy, and a
//! datagram longer than the rest of the buffer arrives truncated and flagged
//! (`MSG_TRUNC`), as on every backend. Each datagram sent is one `SENDMSG` naming its
//! destination; up to [`MAX_DGRAM_INFLIGHT`] per socket are in flight, the rest wait
//! in the record's queue. It never makes a system call outside `poll`.

use std::net::SocketAddr;

use io_uring::types::Fd;
use io_uring::{cqueue, opcode, Submitter};
use paste_rt_core::{Delivery, SendData, SendStep, Stats, Token, DGRAM_HEADROOM};
use paste_rt_uring_engine::buf_ring::PoolBufRing;
use paste_rt_uring_engine::user_data::{encode, OpKind};
use paste_rt_uring_engine::SocketEngine;

use crate::sink::TableSink;

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

/// One datagram socket's receive state. Boxed: the `RECVMSG` SQE points at `rx_msg`.
struct DgramSock {
    /// The multishot `RECVMSG` template (only its name and control lengths are read).
    rx_msg: libc::msghdr,
    armed: bool,
    cancelling: bool,
    paused: bool,
    done: bool,
    /// Sends in flight.
    tx_inflight: u32,
}

/// The memory one datagram `SENDMSG` points to while in flight. Boxed in the slab so it
/// never moves; reused for the next datagram once its completion arrived.
struct DgramTx {
    slot: u32,
    data: Option<SendData>,
    iov: libc::iovec,
    msg: libc::msghdr,
    addr: libc::sockaddr_storage,
}

impl DgramTx {
    fn new() -> Box<DgramTx> {
        Box::new(DgramTx {
            slot: 0,
            data: None,
            iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
            // SAFETY: msghdr and sockaddr_storage are plain C structs; all-zero is a
            // valid (empty) value for both.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            addr: unsafe { std::mem::zeroed() },
        })
    }
}

/// The backend's datagram state; see the module docs.
pub(crate) struct Datagrams {
    ring: Option<PoolBufRing>,
    target: u32,
    /// A datagram socket exists but the ring is not registered yet.
    wanted: bool,
    /// Registering the ring failed with this errno: datagram sockets fail.
    error: Option<i32>,
    #[allow(clippy::vec_box)]
    socks: Vec<Option<Box<DgramSock>>>,
    /// Sockets to arm at the next tick (the ring was missing or dry, or a receive
    /// ended).
    to_arm: Vec<u32>,
    #[allow(clippy::vec_box)]
    tx: Vec<Box<DgramTx>>,
    tx_free: Vec<u32>,
}

impl Datagrams {
    pub(crate) fn new(target: u32) -> Datagrams {
        Datagrams {
            ring: None,
            target,
            wanted: false,
            error: None,
            socks: Vec::new(),
            to_arm: Vec::new(),
            tx: Vec::new(),
            tx_free: Vec::new(),
        }
    }

    fn sock(&mut self, id: u32) -> Option<&mut DgramSock> {
        self.socks.get_mut(id as usize).and_then(|s| s.as_deref_mut())
    }

    /// Slot `id` was freed.
    pub(crate) fn forget(&mut self, id: u32) {
        if let Some(s) = self.socks.get_mut(id as usize) {
            *s = None;
        }
    }

    /// Unregisters the ring (the engine is idle), returning its buffers to the pool.
    pub(crate) fn unregister(&mut self, submitter: &Submitter<'_>) {
        if let Some(ring) = self.ring.as_mut() {
            let _ = ring.unregister(submitter);
        }
    }
}

impl TableSink<'_> {
    /// A datagram socket was adopted in slot `id`: arm its receive (now, or at the
    /// next tick once the ring is registered).
    pub(crate) fn dgram_open(&mut self, engine: &mut SocketEngine, id: u32, stats: &Stats) {
        let d = &mut *self.dgram;
        if d.socks.len() <= id as usize {
            d.socks.resize_with(id as usize + 1, || None);
        }
        let mut rx_msg: libc::msghdr = {
            // SAFETY: msghdr is a plain C struct; all-zero is a valid (empty) value.
            unsafe { std::mem::zeroed() }
        };
        rx_msg.msg_namelen = DGRAM_NAME_LEN;
        d.socks[id as usize] = Some(Box::new(DgramSock {
            rx_msg,
            armed: false,
            cancelling: false,
            paused: false,
            done: false,
            tx_inflight: 0,
        }));
        if let Some(errno) = d.error {
            self.io.dgram_failed(Token(id), errno);
            return;
        }
        self.arm(engine, id, stats);
    }

    /// Registers the ring if a socket needs it, refills it, and arms what waits (the
    /// tick's first step; the registration is a counted system call inside `poll`).
    pub(crate) fn dgram_setup(&mut self, engine: &mut SocketEngine, stats: &Stats) {
        let d = &mut *self.dgram;
        if d.wanted && d.ring.is_none() && d.error.is_none() {
            d.wanted = false;
            stats.syscall();
            match PoolBufRing::new(&engine.ring().submitter(), self.pool, BGID_DGRAM, d.target, DGRAM_RING_OFFSET) {
                Ok(ring) => d.ring = Some(ring),
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(libc::ENOMEM);
                    d.error = Some(errno);
                    for (i, s) in d.socks.iter().enumerate() {
                        if s.is_some() {
                            self.io.dgram_failed(Token(i as u32), errno);
                        }
                    }
                    return;
                }
            }
        }
        let Some(ring) = self.dgram.ring.as_mut() else { return };
        ring.refill();
        let to_arm = std::mem::take(&mut self.dgram.to_arm);
        for &id in &to_arm {
            self.arm(engine, id, stats);
        }
        let mut to_arm = to_arm;
        to_arm.clear();
        if self.dgram.to_arm.is_empty() {
            self.dgram.to_arm = to_arm;
        }
    }

    fn arm(&mut self, engine: &mut SocketEngine, id: u32, stats: &Stats) {
        let ring_ready = self.dgram.ring.as_ref().is_some_and(|r| !r.ring().is_empty());
        let registered = self.dgram.ring.is_some();
        if !engine.is_open(id) {
            return;
        }
        let fd = engine.fd(id);
        let gen = engine.generation(id);
        let d = &mut *self.dgram;
        let Some(s) = d.socks.get_mut(id as usize).and_then(|s| s.as_deref_mut()) else { return };
        if s.armed || s.paused || s.done {
            return;
        }
        if !ring_ready {
            d.wanted |= !registered;
            if !d.to_arm.contains(&id) {
                d.to_arm.push(id);
            }
            return;
        }
        s.armed = true;
        // MSG_TRUNC: the header's flags say when a datagram did not fit.
        let entry = opcode::RecvMsgMulti::new(Fd(fd), &s.rx_msg, BGID_DGRAM)
            .flags(libc::MSG_TRUNC as u32)
            .build()
            .user_data(encode(id, OpKind::RecvFrom, gen));
        engine.op_started(id);
        // SAFETY: the SQE points at the boxed template, freed only with the slot,
        // which the engine frees only once this op ended (op_done).
        unsafe { engine.push_raw(entry, stats) };
    }

    /// Receiving may resume on datagram socket `id`.
    pub(crate) fn dgram_resume(&mut self, engine: &mut SocketEngine, id: u32, stats: &Stats) {
        if let Some(s) = self.dgram.sock(id) {
            s.paused = false;
        }
        self.arm(engine, id, stats);
    }

    /// Datagrams were queued on `id`: submit as many as may be in flight.
    pub(crate) fn dgram_send(&mut self, engine: &mut SocketEngine, id: u32, stats: &Stats) {
        if !engine.is_open(id) {
            return;
        }
        let fd = engine.fd(id);
        loop {
            let Some(s) = self.dgram.sock(id) else { return };
            if s.tx_inflight >= MAX_DGRAM_INFLIGHT {
                return;
            }
            let Some((data, to)) = self.io.next_datagram(Token(id)) else { return };
            if let Some(s) = self.dgram.sock(id) {
                s.tx_inflight += 1;
            }
            let d = &mut *self.dgram;
            let tx_id = match d.tx_free.pop() {
                Some(i) => i,
                None => {
                    d.tx.push(DgramTx::new());
                    (d.tx.len() - 1) as u32
                }
            };
            let t = &mut *d.tx[tx_id as usize];
            t.slot = id;
            let bytes = data.as_slice();
            t.iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
            t.data = Some(data);
            let len = paste_rt_core::sockaddr::write(&to, &mut t.addr);
            t.msg.msg_name = (&mut t.addr as *mut libc::sockaddr_storage).cast();
            t.msg.msg_namelen = len;
            t.msg.msg_iov = &mut t.iov;
            t.msg.msg_iovlen = 1;
            let entry = opcode::SendMsg::new(Fd(fd), &t.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
                .user_data(encode(tx_id, OpKind::SendTo, 0));
            engine.op_started(id);
            // SAFETY: the SQE points into the boxed DgramTx, which is reused only after
            // this send's completion and never freed while it is in flight.
            unsafe { engine.push_raw(entry, stats) };
        }
    }

    /// A datagram socket's multishot `RECVMSG` completion: one datagram in one buffer,
    /// `io_uring_recvmsg_out` and the source address first.
    pub(crate) fn on_recvfrom(&mut self, engine: &mut SocketEngine, id: u32, gen: u32, res: i32, flags: u32) {
        let stats = self.stats;
        if engine.generation(id) != gen {
            return;
        }
        let ended = !cqueue::more(flags);
        if let Some(s) = self.dgram.sock(id) {
            if ended {
                s.armed = false;
                s.cancelling = false;
            }
        }
        let mut pause = false;
        if let (Some(bid), Some(ring)) = (cqueue::buffer_select(flags), self.dgram.ring.as_mut()) {
            let io = &mut *self.io;
            ring.take(bid, res.max(0) as u32, |mut buf| {
                let Some((from, truncated)) = parse_recvmsg_out(&buf) else { return };
                buf.advance((RECVMSG_OUT_LEN + DGRAM_NAME_LEN) as usize);
                Stats::add(&stats.rx_buffers, 1);
                Stats::add(&stats.rx_bytes, buf.len() as u64);
                pause |= io.deliver_datagram(Token(id), buf, from, truncated) == Delivery::Pause;
            });
        }
        let mut rearm = ended;
        if res < 0 {
            match -res {
                libc::ECANCELED => {}
                libc::ENOBUFS => Stats::add(&stats.pool_exhausted, 1),
                errno => {
                    rearm = false;
                    if let Some(s) = self.dgram.sock(id) {
                        s.done = true;
                    }
                    self.io.dgram_failed(Token(id), errno);
                }
            }
        }
        if pause {
            if let Some(s) = self.dgram.sock(id) {
                s.paused = true;
                if s.armed && !s.cancelling {
                    s.cancelling = true;
                    engine.cancel(engine.user_data(id, OpKind::RecvFrom), stats);
                }
            }
        }
        if ended {
            if rearm && engine.is_open(id) && !self.dgram.to_arm.contains(&id) {
                self.dgram.to_arm.push(id);
            }
            engine.op_done(id, self);
        }
    }

    /// One datagram's `SENDMSG` completed: report it, return its state to the slab.
    pub(crate) fn on_sendto(&mut self, engine: &mut SocketEngine, tx_id: u32, res: i32) {
        let stats = self.stats;
        let d = &mut *self.dgram;
        let Some(t) = d.tx.get_mut(tx_id as usize) else { return };
        let Some(data) = t.data.take() else { return };
        let id = t.slot;
        d.tx_free.push(tx_id);
        if let Some(s) = d.sock(id) {
            s.tx_inflight -= 1;
        }
        let errno = if res < 0 { -res } else { 0 };
        if errno == 0 {
            Stats::add(&stats.tx_bytes, res as u64);
        }
        drop(data);
        let step = self.io.datagram_sent(Token(id), errno);
        engine.op_done(id, self);
        match step {
            SendStep::Data => self.dgram_send(engine, id, stats),
            SendStep::Close => engine.close(id, self, stats),
            _ => {}
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
