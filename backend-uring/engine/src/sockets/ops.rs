//! What the owner asks of the engine, written as SQEs with no system call: slots
//! opened and closed, multishot accept and receive armed, paused and resumed, sends
//! gathered from the owner's queue, connect, shutdown, cancel-then-close.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{opcode, squeue};
use paste_rt_core::{SendStep, Shutdown, Stats};

use super::{st, Role, SendState, Sink, Slot, SocketEngine};
use crate::recv;
use crate::user_data::{encode, OpKind, GEN_MASK};

impl SocketEngine {
    pub(super) fn push(&mut self, entry: squeue::Entry, stats: &Stats) {
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

    pub(super) fn arm_waker(&mut self) {
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

    pub(super) fn arm_accept(&mut self, id: u32, stats: &Stats) {
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

    pub(super) fn arm_recv(&mut self, id: u32, stats: &Stats) {
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
    pub(super) fn stop(&mut self, id: u32, stats: &Stats) -> Option<RawFd> {
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
    pub(super) fn close_stray(&mut self, fd: RawFd, stats: &Stats) {
        if self.dropping {
            // SAFETY: the kernel handed us this fd and nobody else knows it.
            unsafe { libc::close(fd) };
        } else {
            self.push_ignored(opcode::Close::new(Fd(fd)).build(), stats);
            self.fd_freed = true;
        }
    }

    pub(super) fn maybe_free(&mut self, id: u32, sink: &mut impl Sink) {
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
}
