//! [`IoTable`]: every [`IoRecord`] of one runtime, indexed by [`Token`], and the
//! batch servers' ready lists (docs/architecture.md, why completions land in place).
//!
//! Both sides use it directly. The backend, while reaping, applies each completion
//! in place — [`deliver`](IoTable::deliver) a buffer, report bytes
//! [`sent`](IoTable::sent), an [`eof`](IoTable::eof), a failure, an accepted socket —
//! and the method wakes whoever waits and tells the backend what to do next (pause
//! receiving, send more, shut down, close). The runtime's net types use the other
//! half: take received buffers, queue sends, begin a close. There is no completion
//! list in between and no second lookup.
//!
//! Tokens are reused only after both sides are done with them: the runtime begins a
//! close, the backend finishes it and [`release`](IoTable::release)s the token once
//! no operation of the kernel can still name it.
//!
//! It never makes a system call and never allocates per request: records, the free
//! list and the ready lists grow to the largest number of live sockets and stay.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::buf::RxBuf;
use crate::pool::BufPool;
use crate::queue::RxQueue;
use crate::record::{
    flag, Datagram, Deadline, DgramIo, IoRecord, ListenerIo, RecordExt, RecordKind, Token, DGRAM_TX_HIGH_WATER,
    NO_GROUP, RX_PAUSE_AT, RX_RESUME_AT, TX_HIGH_WATER,
};
use crate::send::{SendData, Shutdown};
use crate::stream_send::{idle_or_close, step_after_progress, StreamSend};

/// What became of a delivered buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the application.
    Queued,
    /// Queued, and the queue is now long: stop receiving on this connection until
    /// the runtime resumes it.
    Pause,
    /// The application is gone (or this is not a receiving record): dropped.
    Dropped,
}

/// What a backend does next on a connection's send path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStep {
    /// Send the queue's front.
    Data,
    /// Shut down this half (everything queued before was taken); call
    /// [`IoTable::shutdown_done`] when it completed.
    Shutdown(Shutdown),
    /// Nothing queued, but bytes the backend took out of the queue are not confirmed
    /// yet ([`IoTable::take_send`], [`IoTable::copy_send`]): wait for
    /// [`IoTable::taken_sent`].
    Wait,
    /// Nothing to send; the backend is no longer engaged.
    Idle,
    /// Nothing to send and the handle is gone: close the socket.
    Close,
}

/// What the runtime does after beginning a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseStep {
    /// Tell the backend to close now.
    Close,
    /// Sends are still queued: the record lingers until they are taken (the backend
    /// is engaged and will close it). If `resume` is set, receiving was paused and
    /// must resume (the data is discarded), so the peer is not stalled.
    Linger {
        /// Call the backend's `resume_recv`.
        resume: bool,
    },
    /// The token names nothing live (already closing): nothing to do.
    Nothing,
}

/// The result of taking received data.
#[derive(Debug)]
pub enum Received {
    /// A buffer; when `resume` is set receiving was paused and may resume now.
    Buf(RxBuf, bool),
    /// The peer closed its side and everything before it was taken.
    Eof,
}

/// What [`IoTable::poll_take_rx`] took: every buffer received so far.
#[derive(Debug)]
pub struct TakenRx {
    /// The buffers, oldest first.
    pub queue: RxQueue,
    /// Receiving was paused (the queue was long) and may resume now.
    pub resumed: bool,
    /// The caller's waker is registered for what arrives next (no EOF, error or
    /// timeout waits behind these buffers).
    pub armed: bool,
}

/// A batch server's ready list: connections with news since its last batch. The
/// runtime looks at it once a tick (no waker: the server's handler is called from
/// the tick).
#[derive(Debug, Default)]
struct Group {
    ready: Vec<Token>,
    /// Records that belong to the group, closing ones included.
    members: u32,
    live: bool,
}

/// Every record of one runtime; see the module docs.
#[derive(Debug)]
pub struct IoTable {
    records: Vec<IoRecord>,
    free: Vec<u32>,
    groups: Vec<Group>,
    pool: BufPool,
    live: usize,
    /// Records with a receive deadline set.
    deadlines: usize,
    /// The runtime shut down: every lookup fails.
    shut: bool,
    /// Accepted connections closed with their listener (see `take_orphans`).
    orphans: Vec<Token>,
    /// Waiters woken so far (a backend that completes work before its wait checks
    /// it, so it does not block while a task it just woke is ready to run).
    wakes: u64,
}

fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed, or its runtime has shut down")
}

impl IoTable {
    /// An empty table whose records hold buffers of `pool`.
    pub fn new(pool: BufPool) -> IoTable {
        IoTable {
            records: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            groups: Vec::new(),
            pool,
            live: 0,
            deadlines: 0,
            shut: false,
            orphans: Vec::new(),
            wakes: 0,
        }
    }

    /// The pool received buffers come from.
    #[inline]
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    /// How many waiters the table has woken so far. A backend that applies
    /// completions before its wait compares it before and after, and does not block
    /// when it changed: a task it woke is ready to run.
    #[inline]
    pub fn wakes(&self) -> u64 {
        self.wakes
    }

    /// Records in use (live, lingering or waiting for their release).
    pub fn live(&self) -> usize {
        self.live
    }

    /// One record.
    ///
    /// # Panics
    /// If the token was never handed out (a bug of the caller).
    #[inline]
    pub fn get(&self, token: Token) -> &IoRecord {
        &self.records[token.index()]
    }

    /// One record, mutably (for the backend's own bookkeeping; state changes go
    /// through the table's methods).
    #[inline]
    pub fn get_mut(&mut self, token: Token) -> &mut IoRecord {
        &mut self.records[token.index()]
    }

    /// Every token in use, with its record.
    pub fn iter(&self) -> impl Iterator<Item = (Token, &IoRecord)> {
        self.records.iter().enumerate().filter(|(_, r)| r.kind != RecordKind::Free).map(|(i, r)| (Token(i as u32), r))
    }

    fn insert(&mut self, kind: RecordKind, fd: RawFd, ext: Option<Box<RecordExt>>) -> Token {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.records.push(IoRecord::free());
                self.records.len() - 1
            }
        };
        let r = &mut self.records[index];
        debug_assert_eq!(r.kind, RecordKind::Free);
        r.kind = kind;
        r.fd = fd;
        r.ext = ext;
        self.live += 1;
        Token(index as u32)
    }

    /// A new stream record for socket `fd` (`connecting`: a connect is in progress).
    pub fn insert_stream(&mut self, fd: RawFd, connecting: bool) -> Token {
        let t = self.insert(RecordKind::Stream, fd, None);
        if connecting {
            self.records[t.index()].flags |= flag::CONNECTING;
        }
        t
    }

    /// A new listener record for listening socket `fd`.
    pub fn insert_listener(&mut self, fd: RawFd) -> Token {
        self.insert(RecordKind::Listener, fd, Some(Box::new(RecordExt::Listener(ListenerIo::default()))))
    }

    /// A new datagram record for bound socket `fd`.
    pub fn insert_dgram(&mut self, fd: RawFd) -> Token {
        self.insert(RecordKind::Dgram, fd, Some(Box::new(RecordExt::Dgram(DgramIo::default()))))
    }

    /// The backend is done with `token`: no operation of the kernel can name it any
    /// more. The record is cleared and the token may be handed out again.
    pub fn release(&mut self, token: Token) {
        let Some(r) = self.records.get_mut(token.index()) else { return };
        if r.kind == RecordKind::Free {
            return;
        }
        let group = r.group;
        r.rx.clear(&self.pool);
        if r.deadline.is_some() {
            self.deadlines -= 1;
        }
        *r = IoRecord::free();
        self.free.push(token.0);
        self.live -= 1;
        // A shutting-down batch server waits for its closing connections to go.
        if let Some(g) = self.groups.get_mut(group as usize) {
            g.members -= 1;
        }
    }

    // ------------------------------------------------------------------------
    // The backend's side: completions applied in place.
    // ------------------------------------------------------------------------

    /// Tells whoever waits for this connection's input: its task, or its batch
    /// server (which then finds it in its ready list).
    #[inline(always)]
    fn notify_rx(records: &mut [IoRecord], groups: &mut [Group], token: Token) -> u64 {
        Self::notify_record(&mut records[token.index()], groups, token)
    }

    /// [`notify_rx`](Self::notify_rx) with `token`'s record in hand (no second
    /// lookup).
    #[inline(always)]
    fn notify_record(r: &mut IoRecord, groups: &mut [Group], token: Token) -> u64 {
        if r.group == NO_GROUP {
            return r.wake_rx() as u64;
        }
        if r.flags & flag::IN_READY == 0 {
            r.flags |= flag::IN_READY;
            if let Some(g) = groups.get_mut(r.group as usize) {
                g.ready.push(token);
                return 1;
            }
        }
        0
    }

    /// A buffer arrived for `token`.
    #[inline(always)]
    pub fn deliver(&mut self, token: Token, buf: RxBuf) -> Delivery {
        let Some(r) = self.records.get_mut(token.index()) else { return Delivery::Dropped };
        if r.kind != RecordKind::Stream || r.flags & (flag::LINGER | flag::CLOSED) != 0 {
            return Delivery::Dropped;
        }
        r.rx.push(buf);
        let pause = r.rx.len() >= RX_PAUSE_AT && r.flags & flag::PAUSED == 0;
        if pause {
            r.flags |= flag::PAUSED;
        }
        self.wakes += Self::notify_record(r, &mut self.groups, token);
        if pause {
            Delivery::Pause
        } else {
            Delivery::Queued
        }
    }

    /// The peer closed its sending half.
    pub fn eof(&mut self, token: Token) {
        let Some(r) = self.records.get_mut(token.index()) else { return };
        if r.kind != RecordKind::Stream || r.flags & flag::EOF != 0 {
            return;
        }
        r.flags |= flag::EOF;
        self.wakes += Self::notify_record(r, &mut self.groups, token);
    }

    /// Receiving failed (a reset): no more data comes, and queued sends are dropped.
    /// Returns what to do on the send path: [`SendStep::Close`] when the handle is
    /// gone (the backend closes now), else `Idle` (or `Data` never: the queue is
    /// dropped).
    pub fn rx_failed(&mut self, token: Token, errno: i32) -> SendStep {
        tracing::debug!(target: "paste_rt::io", token = token.0, errno, reset = errno == libc::ECONNRESET, "receive failed");
        let Some(r) = self.records.get_mut(token.index()) else { return SendStep::Idle };
        match r.kind {
            RecordKind::Stream => {}
            RecordKind::Dgram => {
                if r.rx_errno == 0 {
                    r.rx_errno = errno;
                    self.wakes += r.wake_rx() as u64;
                }
                return SendStep::Idle;
            }
            _ => return SendStep::Idle,
        }
        if r.rx_errno == 0 {
            r.rx_errno = errno;
        }
        self.fail_send(token, errno)
    }

    /// Sending failed: queued sends are dropped, later ones fail with `errno`.
    /// Returns [`SendStep::Close`] when the handle is gone, else `Idle`.
    pub fn tx_failed(&mut self, token: Token, errno: i32) -> SendStep {
        tracing::debug!(
            target: "paste_rt::io",
            token = token.0,
            errno,
            reset = errno == libc::ECONNRESET || errno == libc::EPIPE,
            "send failed"
        );
        if self.records.get(token.index()).is_none_or(|r| r.kind != RecordKind::Stream) {
            return SendStep::Idle;
        }
        self.fail_send(token, errno)
    }

    fn fail_send(&mut self, token: Token, errno: i32) -> SendStep {
        let r = &mut self.records[token.index()];
        if r.tx_errno == 0 {
            r.tx_errno = errno;
        }
        r.tx.clear();
        r.tx_taken = 0;
        self.wakes += r.wake_tx() as u64;
        // A batch handler hears of it through its ready list; a task blocked in recv
        // on a reset connection too.
        self.wakes += Self::notify_record(r, &mut self.groups, token);
        r.flags &= !flag::SEND_ENGAGED;
        idle_or_close(r)
    }

    /// What the backend does next on `token`'s send path (after being told of new
    /// data, or after a completion). [`SendStep::Idle`] and [`SendStep::Close`]
    /// disengage the backend.
    #[inline]
    pub fn send_step(&mut self, token: Token) -> SendStep {
        match self.stream_send(token) {
            Some(mut tx) => tx.step(),
            None => SendStep::Idle,
        }
    }

    /// The kernel took `bytes` more of `token`'s queued bytes. Wakes a sender waiting
    /// for room and returns the next step.
    #[inline]
    pub fn sent(&mut self, token: Token, bytes: u64) -> SendStep {
        match self.stream_send(token) {
            Some(mut tx) => tx.sent(bytes),
            None => SendStep::Idle,
        }
    }

    /// `token`'s send side for a backend's write loop: one lookup for every
    /// [`step`](StreamSend::step), [`queue`](StreamSend::queue) and
    /// [`sent`](StreamSend::sent) of it. `None` unless it is a stream.
    #[inline]
    pub fn stream_send(&mut self, token: Token) -> Option<StreamSend<'_>> {
        match self.records.get_mut(token.index()) {
            Some(r) if r.kind == RecordKind::Stream => Some(StreamSend::new(r, &mut self.wakes)),
            _ => None,
        }
    }

    /// Whether the completion of a send of the `in_flight` bytes at the front of
    /// `token`'s queue would change nothing anyone waits for: they are all that is
    /// queued, no task waits for send room or a flush, no shutdown is queued, and the
    /// handle is still held (no close follows). A backend may then reap that
    /// completion late (after the next one), as the io_uring engine's tick does.
    #[inline]
    pub fn send_completion_is_quiet(&self, token: Token, in_flight: u64) -> bool {
        let Some(r) = self.records.get(token.index()) else { return false };
        r.kind == RecordKind::Stream
            && r.flags & (flag::TX_WANT | flag::LINGER) == 0
            && r.tx.bytes() == in_flight
            && !r.tx.shutdown_pending()
            && r.tx_errno == 0
    }

    /// Takes the oldest queued item out of `token`'s queue for a backend that keeps it
    /// itself until the kernel takes it (PASTE's TX ring), with how many of its bytes
    /// were sent before. Its bytes stay counted as queued until
    /// [`taken_sent`](Self::taken_sent) reports them.
    pub fn take_send(&mut self, token: Token) -> Option<(SendData, u32)> {
        let r = self.records.get_mut(token.index())?;
        if r.tx_errno != 0 {
            return None;
        }
        let (data, sent) = r.tx.pop()?;
        r.tx_taken += (data.len() - sent as usize) as u64;
        Some((data, sent))
    }

    /// Copies from the front of `token`'s queue in place, for a backend that copies
    /// queued bytes into buffers of its own until the kernel takes them (PASTE's TX
    /// slots) — [`take_send`](Self::take_send) without moving the item out and
    /// dropping it separately. `copy` gets the oldest item and its unsent bytes and
    /// returns how many of those it copied, from their start (see
    /// [`SendQueue::copy_front`](crate::SendQueue::copy_front)): they leave the queue
    /// (a partly copied item keeps its rest in front, in order) and, as with
    /// `take_send`, stay counted as pending until [`taken_sent`](Self::taken_sent)
    /// reports them. Returns the bytes copied and whether more is queued (so the
    /// common lone reply needs no second look); `None`, without calling `copy`, when
    /// nothing is queued or sending failed.
    #[inline]
    pub fn copy_send(&mut self, token: Token, copy: impl FnOnce(&SendData, &[u8]) -> usize) -> Option<CopiedSend> {
        let r = self.records.get_mut(token.index())?;
        if r.tx_errno != 0 {
            return None;
        }
        let bytes = r.tx.copy_front(copy)?;
        r.tx_taken += bytes as u64;
        Some(CopiedSend { bytes, more: !r.tx.is_empty() })
    }

    /// The kernel took `bytes` of what was taken with [`take_send`](Self::take_send)
    /// or [`copy_send`](Self::copy_send). Wakes a sender waiting for room and returns
    /// the next step.
    pub fn taken_sent(&mut self, token: Token, bytes: u64) -> SendStep {
        let Some(r) = self.records.get_mut(token.index()) else { return SendStep::Idle };
        r.tx_taken = r.tx_taken.saturating_sub(bytes);
        if r.kind == RecordKind::Stream {
            return step_after_progress(r, &mut self.wakes);
        }
        if r.tx_pending() <= TX_HIGH_WATER {
            self.wakes += r.wake_tx() as u64;
        }
        SendStep::Idle
    }

    /// A shutdown returned by [`SendStep::Shutdown`] completed (`errno` 0 or its
    /// failure, which is not reported further). Returns the next step.
    pub fn shutdown_done(&mut self, token: Token, _errno: i32) -> SendStep {
        let Some(r) = self.records.get_mut(token.index()) else { return SendStep::Idle };
        self.wakes += r.wake_tx() as u64;
        self.send_step(token)
    }

    /// A connect finished: `errno` 0 or its failure (which fails the connection).
    /// Returns the send step for data queued while connecting.
    pub fn connected(&mut self, token: Token, errno: i32) -> SendStep {
        let Some(r) = self.records.get_mut(token.index()) else { return SendStep::Idle };
        r.flags &= !flag::CONNECTING;
        self.wakes += r.wake_tx() as u64;
        self.wakes += r.wake_rx() as u64;
        if errno != 0 {
            r.rx_errno = errno;
            return self.fail_send(token, errno);
        }
        if r.flags & flag::SEND_ENGAGED != 0 {
            self.send_step(token)
        } else {
            SendStep::Idle
        }
    }

    /// Listener `listener` accepted socket `fd`: a stream record is made for it and
    /// put in the listener's backlog. Returns its token (the backend starts receiving
    /// on it at once), or `None` when the listener is closing (the backend closes
    /// `fd`).
    pub fn accepted(&mut self, listener: Token, fd: RawFd) -> Option<Token> {
        let l = self.records.get(listener.index())?;
        if l.kind != RecordKind::Listener || !l.is_open() {
            return None;
        }
        let token = self.insert_stream(fd, false);
        let l = &mut self.records[listener.index()];
        if let Some(io) = l.listener() {
            io.backlog.push_back(token);
        }
        self.wakes += l.wake_rx() as u64;
        Some(token)
    }

    /// Accepting on `listener` failed with `errno` (reported once to the acceptor).
    pub fn accept_failed(&mut self, listener: Token, errno: i32) {
        tracing::warn!(
            target: "paste_rt::io",
            errno,
            out_of_fds = errno == libc::EMFILE || errno == libc::ENFILE,
            "accept failed: {}",
            io::Error::from_raw_os_error(errno)
        );
        let Some(l) = self.records.get_mut(listener.index()) else { return };
        if let Some(io) = l.listener() {
            io.error = Some(errno);
            self.wakes += l.wake_rx() as u64;
        }
    }

    /// A datagram arrived on `token`.
    pub fn deliver_datagram(&mut self, token: Token, buf: RxBuf, from: SocketAddr, truncated: bool) -> Delivery {
        let Some(r) = self.records.get_mut(token.index()) else { return Delivery::Dropped };
        if !r.is_open() {
            return Delivery::Dropped;
        }
        let paused = r.flags & flag::PAUSED != 0;
        let Some(d) = r.dgram() else { return Delivery::Dropped };
        d.rx.push_back(Datagram { buf, from, truncated });
        let pause = !paused && d.rx.len() >= RX_PAUSE_AT;
        if pause {
            r.flags |= flag::PAUSED;
        }
        self.wakes += r.wake_rx() as u64;
        if pause {
            Delivery::Pause
        } else {
            Delivery::Queued
        }
    }

    /// The next datagram queued on `token` for the backend to send.
    pub fn next_datagram(&mut self, token: Token) -> Option<(SendData, SocketAddr)> {
        self.records.get_mut(token.index())?.dgram()?.tx.pop_front()
    }

    /// Puts a datagram taken with [`next_datagram`](Self::next_datagram) back at the
    /// front (the socket was full).
    pub fn unpop_datagram(&mut self, token: Token, data: SendData, to: SocketAddr) {
        if let Some(d) = self.records.get_mut(token.index()).and_then(|r| r.dgram()) {
            d.tx.push_front((data, to));
        }
    }

    /// One datagram taken with [`next_datagram`](Self::next_datagram) left (`errno`
    /// 0) or was refused. Returns [`SendStep::Close`] when the handle is gone and
    /// nothing is pending any more.
    pub fn datagram_sent(&mut self, token: Token, errno: i32) -> SendStep {
        let Some(r) = self.records.get_mut(token.index()) else { return SendStep::Idle };
        let linger = r.flags & flag::LINGER != 0;
        let Some(d) = r.dgram() else { return SendStep::Idle };
        d.tx_pending = d.tx_pending.saturating_sub(1);
        if errno != 0 {
            d.tx_error = Some(errno);
        }
        let (pending, wake) = (d.tx_pending, d.tx_pending <= DGRAM_TX_HIGH_WATER || errno != 0);
        if wake {
            self.wakes += r.wake_tx() as u64;
        }
        if pending == 0 {
            r.flags &= !flag::SEND_ENGAGED;
            if linger {
                r.flags = (r.flags & !flag::LINGER) | flag::CLOSED;
                return SendStep::Close;
            }
            return SendStep::Idle;
        }
        SendStep::Data
    }

    /// Receiving on a datagram socket failed for good (or is not supported).
    pub fn dgram_failed(&mut self, token: Token, errno: i32) {
        let Some(r) = self.records.get_mut(token.index()) else { return };
        if r.kind == RecordKind::Dgram && r.rx_errno == 0 {
            r.rx_errno = errno;
            self.wakes += r.wake_rx() as u64;
            self.wakes += r.wake_tx() as u64;
        }
    }

    // ------------------------------------------------------------------------
    // The runtime's side.
    // ------------------------------------------------------------------------

    /// `token` as a live stream, or the error a user sees when it is not.
    #[inline]
    fn stream(&mut self, token: Token) -> io::Result<&mut IoRecord> {
        match self.records.get_mut(token.index()) {
            Some(r) if r.kind == RecordKind::Stream && !self.shut => Ok(r),
            _ => Err(not_connected()),
        }
    }

    /// `token`'s socket, if it is live.
    pub fn fd(&self, token: Token) -> io::Result<RawFd> {
        match self.records.get(token.index()) {
            Some(r) if r.kind != RecordKind::Free && !self.shut && r.fd >= 0 => Ok(r.fd),
            _ => Err(not_connected()),
        }
    }

    /// Takes the oldest received buffer, the EOF, the error or the timeout of
    /// `token`; registers `cx` when nothing is there.
    #[inline]
    pub fn poll_recv(&mut self, token: Token, cx: &mut Context<'_>) -> Poll<io::Result<Received>> {
        let r = match self.records.get_mut(token.index()) {
            Some(r) if r.kind == RecordKind::Stream && !self.shut => r,
            _ => return Poll::Ready(Err(not_connected())),
        };
        if let Some(buf) = r.rx.pop(&self.pool) {
            let resume = r.flags & flag::PAUSED != 0 && r.rx.len() <= RX_RESUME_AT;
            if resume {
                r.flags &= !flag::PAUSED;
            }
            return Poll::Ready(Ok(Received::Buf(buf, resume)));
        }
        if r.rx_errno != 0 {
            return Poll::Ready(Err(io::Error::from_raw_os_error(r.rx_errno)));
        }
        if r.flags & flag::EOF != 0 {
            return Poll::Ready(Ok(Received::Eof));
        }
        if r.flags & flag::TIMED_OUT != 0 {
            // Sticky: every receive fails until the deadline is cleared or replaced.
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        r.want_rx(cx.waker());
        Poll::Pending
    }

    /// Takes every buffer received on `token` at once (one lookup for a whole batch;
    /// pop them with [`RxQueue::pop`] and give back what is left with
    /// [`put_back_rx`](Self::put_back_rx)); or `None` at EOF, or the error or
    /// timeout; registers `cx` when nothing is there.
    ///
    /// Taking data also registers `cx` for what comes next, unless an EOF, error or
    /// timeout already waits behind the data (the next call reports it):
    /// [`TakenRx::armed`]. A caller that hands out the whole queue and is then done
    /// may return `Pending` without calling again, since nothing is delivered while
    /// it runs (completions are applied only between task polls) and what is
    /// delivered later wakes it.
    #[inline(always)]
    pub fn poll_take_rx(&mut self, token: Token, cx: &mut Context<'_>) -> Poll<io::Result<Option<TakenRx>>> {
        let r = match self.records.get_mut(token.index()) {
            Some(r) if r.kind == RecordKind::Stream && !self.shut => r,
            _ => return Poll::Ready(Err(not_connected())),
        };
        let ended = r.rx_errno != 0 || r.flags & (flag::EOF | flag::TIMED_OUT) != 0;
        if !r.rx.is_empty() {
            let resumed = r.flags & flag::PAUSED != 0;
            r.flags &= !flag::PAUSED;
            if !ended {
                r.want_rx(cx.waker());
            }
            return Poll::Ready(Ok(Some(TakenRx { queue: r.rx.take(), resumed, armed: !ended })));
        }
        if !ended {
            r.want_rx(cx.waker());
            return Poll::Pending;
        }
        if r.rx_errno != 0 {
            return Poll::Ready(Err(io::Error::from_raw_os_error(r.rx_errno)));
        }
        if r.flags & flag::EOF != 0 {
            return Poll::Ready(Ok(None));
        }
        // Sticky: every receive fails until the deadline is cleared or replaced.
        Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
    }

    /// Gives back buffers taken with [`poll_take_rx`](Self::poll_take_rx) and not
    /// used, before anything that arrived since.
    pub fn put_back_rx(&mut self, token: Token, rest: RxQueue) {
        match self.records.get_mut(token.index()) {
            Some(r) if r.kind == RecordKind::Stream => r.rx.prepend(&self.pool, rest),
            _ => {
                let mut rest = rest;
                rest.clear(&self.pool);
            }
        }
    }

    /// Puts a partly used buffer back at the front of `token`'s queue.
    pub fn unrecv(&mut self, token: Token, buf: RxBuf) {
        if let Ok(r) = self.stream(token) {
            if !buf.is_empty() {
                r.rx.push_front(buf);
            }
        }
    }

    /// Queues `data` on `token`. Returns `true` when the backend must be told (its
    /// send path was idle).
    #[inline]
    pub fn queue_send(&mut self, token: Token, data: SendData) -> io::Result<bool> {
        self.queue_send_room(token, data).map(|(engage, _)| engage)
    }

    /// [`queue_send`](Self::queue_send), also saying whether `token` still has room
    /// (at most [`TX_HIGH_WATER`] bytes queued): `(engage, room)`.
    #[inline]
    pub fn queue_send_room(&mut self, token: Token, data: SendData) -> io::Result<(bool, bool)> {
        let r = self.stream(token)?;
        if r.tx_errno != 0 {
            return Err(io::Error::from_raw_os_error(r.tx_errno));
        }
        if !r.tx.push_if_nonempty(data) {
            return Ok((false, r.tx_pending() <= TX_HIGH_WATER));
        }
        let engage = r.engage();
        Ok((engage, r.tx_pending() <= TX_HIGH_WATER))
    }

    /// [`queue_send_room`](Self::queue_send_room) for a caller that does not ask
    /// about room (the batch API), inlined into its loop: queues `data` on `token`
    /// and returns whether the backend must be told (its send path was idle).
    #[inline(always)]
    pub fn queue_send_engage(&mut self, token: Token, data: SendData) -> io::Result<bool> {
        let r = self.stream(token)?;
        if r.tx_errno != 0 {
            return Err(io::Error::from_raw_os_error(r.tx_errno));
        }
        Ok(r.tx.push_if_nonempty(data) && r.engage())
    }

    /// Queues a write shutdown after what is queued. Returns `true` when the backend
    /// must be told.
    pub fn queue_shutdown(&mut self, token: Token, how: Shutdown) -> io::Result<bool> {
        let r = self.stream(token)?;
        if r.tx_errno != 0 {
            return Err(io::Error::from_raw_os_error(r.tx_errno));
        }
        r.tx.queue_shutdown(how);
        r.flags |= flag::SHUT_QUEUED;
        Ok(r.engage())
    }

    /// Whether a shutdown was queued on `token` (it may be done already).
    pub fn shutdown_queued(&self, token: Token) -> bool {
        self.records.get(token.index()).is_some_and(|r| r.flags & flag::SHUT_QUEUED != 0)
    }

    /// Ready once at most `limit` bytes are queued on `token` (0: all sent, and a
    /// queued shutdown done), or its send failed; else registers `cx`.
    #[inline]
    pub fn poll_queued_at_most(&mut self, token: Token, limit: u64, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.stream(token)?;
        if r.tx_errno != 0 {
            return Poll::Ready(Err(io::Error::from_raw_os_error(r.tx_errno)));
        }
        let done = if limit == 0 { r.flags & flag::SEND_ENGAGED == 0 } else { r.tx_pending() <= limit };
        if done {
            return Poll::Ready(Ok(()));
        }
        r.want_tx(cx.waker());
        Poll::Pending
    }

    /// Bytes queued on `token` and not yet taken by the kernel.
    pub fn queued(&self, token: Token) -> u64 {
        self.records.get(token.index()).map_or(0, |r| r.tx_pending())
    }

    /// Ready once `token`'s connect finished: `Ok` or its error.
    pub fn poll_connected(&mut self, token: Token, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.stream(token)?;
        if r.flags & flag::CONNECTING != 0 {
            r.want_tx(cx.waker());
            return Poll::Pending;
        }
        match r.tx_errno {
            0 => Poll::Ready(Ok(())),
            e => Poll::Ready(Err(io::Error::from_raw_os_error(e))),
        }
    }

    /// Takes the next accepted connection of `listener` (or its error).
    pub fn poll_accept(&mut self, listener: Token, cx: &mut Context<'_>) -> Poll<io::Result<Token>> {
        let shut = self.shut;
        let Some(r) = self.records.get_mut(listener.index()).filter(|r| r.is_open() && !shut) else {
            return Poll::Ready(Err(not_connected()));
        };
        let Some(l) = r.listener() else { return Poll::Ready(Err(not_connected())) };
        if let Some(t) = l.backlog.pop_front() {
            return Poll::Ready(Ok(t));
        }
        if let Some(errno) = l.error.take() {
            return Poll::Ready(Err(io::Error::from_raw_os_error(errno)));
        }
        r.want_rx(cx.waker());
        Poll::Pending
    }

    /// Whether `listener` has an accepted connection waiting (a batch server's look
    /// once a tick). Clears a pending accept error: a batch server skips them.
    #[inline]
    pub fn listener_has_backlog(&mut self, listener: Token) -> bool {
        let Some(l) = self.records.get_mut(listener.index()).and_then(IoRecord::listener) else { return false };
        l.error = None;
        !l.backlog.is_empty()
    }

    /// Takes the next accepted connection of `listener` without waiting.
    pub fn take_accepted(&mut self, listener: Token) -> Option<Token> {
        self.records.get_mut(listener.index())?.listener()?.backlog.pop_front()
    }

    /// Takes the oldest datagram of `token`, or registers `cx`. Returns whether
    /// receiving may resume.
    pub fn poll_recv_from(&mut self, token: Token, cx: &mut Context<'_>) -> Poll<io::Result<(Datagram, bool)>> {
        let shut = self.shut;
        let Some(r) = self.records.get_mut(token.index()).filter(|r| r.kind == RecordKind::Dgram && !shut) else {
            return Poll::Ready(Err(not_connected()));
        };
        let paused = r.flags & flag::PAUSED != 0;
        let rx_errno = r.rx_errno;
        let Some(d) = r.dgram() else { return Poll::Ready(Err(not_connected())) };
        if let Some(dg) = d.rx.pop_front() {
            let resume = paused && d.rx.len() <= RX_RESUME_AT;
            if resume {
                r.flags &= !flag::PAUSED;
            }
            return Poll::Ready(Ok((dg, resume)));
        }
        if rx_errno != 0 {
            return Poll::Ready(Err(io::Error::from_raw_os_error(rx_errno)));
        }
        r.want_rx(cx.waker());
        Poll::Pending
    }

    /// Ready once at most `limit` datagrams are pending on `token` (0: all sent), or
    /// reports a refused one.
    pub fn poll_datagrams_at_most(&mut self, token: Token, limit: u32, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = self.shut;
        let Some(r) = self.records.get_mut(token.index()).filter(|r| r.kind == RecordKind::Dgram && !shut) else {
            return Poll::Ready(Err(not_connected()));
        };
        let rx_errno = r.rx_errno;
        let Some(d) = r.dgram() else { return Poll::Ready(Err(not_connected())) };
        if let Some(errno) = d.tx_error.take() {
            return Poll::Ready(Err(io::Error::from_raw_os_error(errno)));
        }
        if rx_errno != 0 {
            return Poll::Ready(Err(io::Error::from_raw_os_error(rx_errno)));
        }
        if d.tx_pending <= limit {
            return Poll::Ready(Ok(()));
        }
        r.want_tx(cx.waker());
        Poll::Pending
    }

    /// Queues one datagram. Returns `true` when the backend must be told.
    pub fn queue_datagram(&mut self, token: Token, data: SendData, to: SocketAddr) -> io::Result<bool> {
        let shut = self.shut;
        let Some(r) = self.records.get_mut(token.index()).filter(|r| r.kind == RecordKind::Dgram && !shut) else {
            return Err(not_connected());
        };
        if r.rx_errno != 0 {
            return Err(io::Error::from_raw_os_error(r.rx_errno));
        }
        let Some(d) = r.dgram() else { return Err(not_connected()) };
        if let Some(errno) = d.tx_error.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        d.tx.push_back((data, to));
        d.tx_pending += 1;
        Ok(r.engage())
    }

    /// Wakes every task waiting to receive or accept (the runtime's graceful
    /// shutdown: idle connections then notice it).
    pub fn wake_all_receivers(&mut self) {
        for r in self.records.iter_mut() {
            if matches!(r.kind, RecordKind::Stream | RecordKind::Listener) {
                self.wakes += r.wake_rx() as u64;
            }
        }
    }

    /// Sets (or clears) `token`'s receive deadline: once it passed, a pending or
    /// later receive fails with `TimedOut` (checked by [`expire`](Self::expire)); a
    /// deadline at or before `now` expires at once. Replacing a deadline forgets an
    /// expiry not reported yet.
    pub fn set_deadline(&mut self, token: Token, deadline: Option<Instant>, now: Instant) {
        let Some(r) = self.records.get_mut(token.index()).filter(|r| r.kind == RecordKind::Stream) else { return };
        match (r.deadline.is_some(), deadline.is_some()) {
            (false, true) => self.deadlines += 1,
            (true, false) => self.deadlines -= 1,
            _ => {}
        }
        r.deadline = Deadline::at(deadline);
        r.flags &= !flag::TIMED_OUT;
        if deadline.is_some_and(|d| d <= now) {
            r.deadline = Deadline::NONE;
            r.flags |= flag::TIMED_OUT;
            self.deadlines -= 1;
            self.wakes += Self::notify_rx(&mut self.records, &mut self.groups, token);
        }
    }

    /// Whether any record has a deadline (the runtime then sweeps periodically).
    pub fn has_deadlines(&self) -> bool {
        self.deadlines > 0
    }

    /// Marks every record whose deadline passed by `now` as timed out and wakes its
    /// receiver (or lists it for its batch server). Returns how many expired.
    pub fn expire(&mut self, now: Instant) -> usize {
        if self.deadlines == 0 {
            return 0;
        }
        let mut expired = 0;
        let now = Deadline::at(Some(now));
        for i in 0..self.records.len() {
            let r = &mut self.records[i];
            if r.deadline.passed_by(now) && r.is_open() {
                r.deadline = Deadline::NONE;
                r.flags |= flag::TIMED_OUT;
                self.deadlines -= 1;
                expired += 1;
                self.wakes += Self::notify_rx(&mut self.records, &mut self.groups, Token(i as u32));
            }
        }
        expired
    }

    /// The application dropped `token`'s handle: received data is dropped, waiters
    /// forgotten, and the record either closes now or lingers until its queued sends
    /// are taken (a stream whose send did not fail; a datagram socket with datagrams
    /// pending).
    pub fn begin_close(&mut self, token: Token) -> CloseStep {
        let Some(r) = self.records.get_mut(token.index()) else { return CloseStep::Nothing };
        if !r.is_open() {
            return CloseStep::Nothing;
        }
        r.rx.clear(&self.pool);
        r.rx_waker = None;
        r.tx_waker = None;
        r.flags &= !(flag::RX_WANT | flag::TX_WANT);
        if r.deadline.take().is_some() {
            self.deadlines -= 1;
        }
        match r.kind {
            RecordKind::Stream => {
                let busy = r.flags & flag::SEND_ENGAGED != 0 && r.tx_errno == 0 && r.rx_errno == 0;
                if busy {
                    let resume = r.flags & flag::PAUSED != 0;
                    r.flags = (r.flags & !flag::PAUSED) | flag::LINGER;
                    return CloseStep::Linger { resume };
                }
            }
            RecordKind::Dgram => {
                let pending = r.dgram().map_or(0, |d| {
                    d.rx.clear();
                    d.tx_pending
                });
                if pending > 0 {
                    r.flags |= flag::LINGER;
                    return CloseStep::Linger { resume: false };
                }
            }
            RecordKind::Listener => {
                // Accepted connections nobody took are closed with it.
                let backlog = r.listener().map(|l| std::mem::take(&mut l.backlog)).unwrap_or_default();
                r.flags |= flag::CLOSED;
                for t in backlog {
                    if let Some(c) = self.records.get_mut(t.index()) {
                        c.flags |= flag::CLOSED;
                        c.rx.clear(&self.pool);
                    }
                    self.orphans.push(t);
                }
                return CloseStep::Close;
            }
            RecordKind::Free => return CloseStep::Nothing,
        }
        r.flags |= flag::CLOSED;
        r.tx.clear();
        CloseStep::Close
    }

    /// Connections closed along with their listener (its backlog) that the backend
    /// must close too; drained by the runtime right after [`begin_close`](Self::begin_close).
    pub fn take_orphans(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.orphans)
    }

    /// Closes everything (runtime shutdown): queued sends are abandoned. Returns every
    /// token the backend must close; afterwards every lookup fails.
    pub fn close_all(&mut self) -> Vec<Token> {
        let mut out = Vec::new();
        for i in 0..self.records.len() {
            let r = &mut self.records[i];
            if r.kind == RecordKind::Free || r.flags & flag::CLOSED != 0 {
                continue;
            }
            r.rx.clear(&self.pool);
            r.rx_waker = None;
            r.tx_waker = None;
            r.tx.clear();
            if let Some(d) = r.dgram() {
                d.rx.clear();
                d.tx.clear();
            }
            r.flags = flag::CLOSED;
            out.push(Token(i as u32));
        }
        self.shut = true;
        // Every group goes: records closing still leave theirs (as `remove_group`).
        self.groups.clear();
        for r in &mut self.records {
            r.group = NO_GROUP;
        }
        out
    }

    // ------------------------------------------------------------------------
    // Batch servers.
    // ------------------------------------------------------------------------

    /// A new batch group (a batch server's ready list).
    pub fn add_group(&mut self) -> u32 {
        if let Some(i) = self.groups.iter().position(|g| !g.live) {
            self.groups[i].live = true;
            return i as u32;
        }
        self.groups.push(Group { live: true, ..Group::default() });
        (self.groups.len() - 1) as u32
    }

    /// Forgets a batch group. Records still in it (closing ones) leave it: a group
    /// made later in the same place starts empty.
    pub fn remove_group(&mut self, group: u32) {
        let Some(g) = self.groups.get_mut(group as usize) else { return };
        if g.members > 0 {
            for r in self.records.iter_mut().filter(|r| r.group == group) {
                r.group = NO_GROUP;
            }
        }
        *g = Group::default();
    }

    /// Adopts `token` into `group`: its events go to the group's ready list from now
    /// on. Returns whether it already has news (it is listed at once).
    pub fn join_group(&mut self, token: Token, group: u32) -> bool {
        let r = &mut self.records[token.index()];
        if r.group != group {
            r.group = group;
            self.groups[group as usize].members += 1;
        }
        r.rx_waker = None;
        r.flags &= !flag::RX_WANT;
        let news = !r.rx.is_empty() || r.rx_ended() || r.tx_errno != 0;
        if news {
            r.flags |= flag::IN_READY;
            self.groups[group as usize].ready.push(token);
        }
        news
    }

    /// Swaps `group`'s ready list with `into` (empty): the batch in hand.
    pub fn take_ready(&mut self, group: u32, into: &mut Vec<Token>) {
        if let Some(g) = self.groups.get_mut(group as usize) {
            std::mem::swap(&mut g.ready, into);
        }
    }

    /// Puts tokens the handler did not get to back on `group`'s ready list.
    pub fn requeue_ready(&mut self, group: u32, tokens: impl IntoIterator<Item = Token>) {
        if let Some(g) = self.groups.get_mut(group as usize) {
            g.ready.extend(tokens);
        }
    }

    /// Whether `group` has news: members listed since its last batch (a batch
    /// server's look once a tick).
    #[inline]
    pub fn group_has_news(&self, group: u32) -> bool {
        self.groups.get(group as usize).is_some_and(|g| !g.ready.is_empty())
    }

    /// Whether any record (closing ones included) still belongs to `group`.
    pub fn group_has_members(&self, group: u32) -> bool {
        self.groups.get(group as usize).is_some_and(|g| g.members > 0)
    }

    /// The open members of `group` (with `unreported`, only those whose end was not
    /// reported yet).
    pub fn group_members(&self, group: u32, unreported: bool) -> Vec<Token> {
        self.iter()
            .filter(|(_, r)| r.group == group && r.is_open() && (!unreported || r.flags & flag::END_REPORTED == 0))
            .map(|(t, _)| t)
            .collect()
    }

    /// The next event of a batch member: a buffer, or (once) its end with the error.
    /// `Done` when it has nothing more; it then leaves the ready state, and the
    /// returned flag says whether receiving may resume. A last buffer with nothing
    /// else pending comes as `Last`, the member out of the ready state already.
    pub fn next_member_event(&mut self, token: Token) -> MemberEvent {
        let Some(r) = self.records.get_mut(token.index()).filter(|r| r.kind == RecordKind::Stream) else {
            return MemberEvent::Done { resume: false };
        };
        if !r.is_open() {
            r.flags &= !flag::IN_READY;
            return MemberEvent::Done { resume: false };
        }
        if let Some(buf) = r.rx.pop(&self.pool) {
            // The common case, one buffer and nothing else to say: the member leaves
            // the ready state now, saving the batch a second look for `Done`.
            let quiet = r.rx.is_empty()
                && r.flags & (flag::TIMED_OUT | flag::PAUSED | flag::EOF) == 0
                && r.rx_errno == 0
                && r.tx_errno == 0;
            if quiet {
                r.flags &= !flag::IN_READY;
                return MemberEvent::Last(buf);
            }
            return MemberEvent::Data(buf);
        }
        r.flags &= !flag::IN_READY;
        if r.flags & flag::TIMED_OUT != 0 {
            r.flags &= !flag::TIMED_OUT;
            return MemberEvent::TimedOut;
        }
        let ended = r.rx_ended() || r.tx_errno != 0;
        if ended && r.flags & flag::END_REPORTED == 0 {
            r.flags |= flag::END_REPORTED;
            let errno = if r.rx_errno != 0 { r.rx_errno } else { r.tx_errno };
            return MemberEvent::End((errno != 0).then_some(errno));
        }
        let resume = r.flags & flag::PAUSED != 0;
        if resume {
            r.flags &= !flag::PAUSED;
        }
        MemberEvent::Done { resume }
    }

    /// A batch member's common news, cheaply: when `token`'s only news is one
    /// received buffer (nothing else queued, no end, error, pause or timeout), takes
    /// it and takes the member out of the ready state, as a
    /// [`MemberEvent::Last`] from [`next_member_event`](Self::next_member_event)
    /// would. `None`, changing nothing, in every other case.
    #[inline]
    pub fn take_only_buffer(&mut self, token: Token) -> Option<RxBuf> {
        let r = self.records.get_mut(token.index())?;
        let quiet = r.kind == RecordKind::Stream
            && r.rx.len() == 1
            && r.flags & (flag::LINGER | flag::CLOSED | flag::TIMED_OUT | flag::PAUSED | flag::EOF) == 0
            && r.rx_errno == 0
            && r.tx_errno == 0;
        if !quiet {
            return None;
        }
        r.flags &= !flag::IN_READY;
        Some(r.rx.pop_only(&self.pool))
    }

    /// Marks `token`'s end as reported (the handler closes it). Returns `false` if it
    /// was already.
    pub fn mark_end_reported(&mut self, token: Token) -> bool {
        match self.records.get_mut(token.index()) {
            Some(r) if r.kind == RecordKind::Stream && r.flags & flag::END_REPORTED == 0 => {
                r.flags |= flag::END_REPORTED;
                true
            }
            _ => false,
        }
    }
}

/// What [`IoTable::copy_send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedSend {
    /// Bytes copied from the front of the queue (0: the backend took none of it).
    pub bytes: usize,
    /// Whether anything is still queued: the rest of the front item, or items
    /// behind it.
    pub more: bool,
}

/// One step of a batch member (see [`IoTable::next_member_event`]).
#[derive(Debug)]
pub enum MemberEvent {
    /// A received buffer; more follows.
    Data(RxBuf),
    /// A received buffer, the member's last news: it has left the ready state
    /// already (no `Done` follows).
    Last(RxBuf),
    /// The receive deadline passed.
    TimedOut,
    /// The connection ended: `None` for EOF, else the errno.
    End(Option<i32>),
    /// Nothing more; `resume` says whether receiving may resume.
    Done {
        /// Call the backend's `resume_recv`.
        resume: bool,
    },
}

impl IoRecord {
    /// Marks the backend engaged on the send path; returns whether it was not (it
    /// must be told).
    #[inline]
    fn engage(&mut self) -> bool {
        let was = self.flags & flag::SEND_ENGAGED != 0;
        self.flags |= flag::SEND_ENGAGED;
        !was && self.flags & flag::CONNECTING == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    fn table() -> IoTable {
        let cfg = PoolConfig { buf_size: 2048, count: 8, ..PoolConfig::default() };
        IoTable::new(BufPool::new(&cfg, 0).expect("a small heap pool"))
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_group_counts_its_members_until_released_and_a_removed_group_lets_them_go() {
        let mut io = table();
        let g = io.add_group();
        assert!(!io.group_has_members(g));
        let (a, b) = (io.insert_stream(3, false), io.insert_stream(4, false));
        assert!(!io.join_group(a, g), "nothing received yet: not listed");
        io.join_group(b, g);
        io.join_group(b, g); // joining twice counts once
        assert!(io.group_has_members(g));
        assert!(!io.group_has_news(g));
        io.release(a);
        assert!(io.group_has_members(g), "b is still in");
        // The group goes while b still closes: a group made later in its place
        // starts empty, and b's release does not count against it.
        io.remove_group(g);
        let again = io.add_group();
        assert_eq!(again, g, "the place is reused");
        assert!(!io.group_has_members(again));
        io.release(b);
        assert!(!io.group_has_members(again));
        let c = io.insert_stream(5, false);
        io.join_group(c, again);
        assert!(io.group_has_members(again));
    }

    #[test]
    fn copied_bytes_stay_pending_until_the_kernel_takes_them_and_then_wake_the_sender() {
        static CHUNK: [u8; 64 * 1024] = [7; 64 * 1024];
        let mut io = table();
        let t = io.insert_stream(3, false);
        for _ in 0..5 {
            io.queue_send(t, SendData::Static(&CHUNK)).unwrap();
        }
        let queued = 5 * CHUNK.len() as u64; // above TX_HIGH_WATER
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(io.poll_queued_at_most(t, TX_HIGH_WATER, &mut cx).is_pending());
        // Everything copied (a slot's worth at a time): still pending, nobody woken.
        let mut copied = 0;
        while let Some(c) = io.copy_send(t, |_, b| b.len().min(1448)) {
            copied += c.bytes as u64;
            assert_eq!(c.more, copied < queued, "more is queued until the last copy");
        }
        assert_eq!(copied, queued);
        assert!(io.get(t).send_queue().is_empty());
        assert_eq!(io.queued(t), queued, "copied bytes are pending until the kernel took them");
        assert_eq!(io.send_step(t), SendStep::Wait);
        assert_eq!(counter.0.load(Ordering::Relaxed), 0);
        // The kernel takes some: still above the high-water mark, no wake.
        assert_eq!(io.taken_sent(t, queued - TX_HIGH_WATER - 1), SendStep::Wait);
        assert_eq!(counter.0.load(Ordering::Relaxed), 0);
        // One more byte: at the mark, the sender is woken once.
        assert_eq!(io.taken_sent(t, 1), SendStep::Wait);
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert_eq!(io.taken_sent(t, TX_HIGH_WATER), SendStep::Idle);
        assert_eq!(io.queued(t), 0);
    }

    #[test]
    fn a_write_loop_through_stream_send_steps_reports_and_wakes_on_the_record_in_hand() {
        static ANSWER: [u8; 100] = [7; 100];
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = table();
        assert!(io.stream_send(Token(99)).is_none(), "no record there");
        let t = io.insert_stream(3, false);
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        // A task waits until everything is sent.
        assert!(io.poll_queued_at_most(t, 0, &mut cx).is_pending());
        let mut tx = io.stream_send(t).unwrap();
        assert_eq!(tx.step(), SendStep::Data);
        assert_eq!(tx.queue().front().map(<[u8]>::len), Some(100));
        // The first item and half the second went: the rest is next, and the waiter
        // (under the high-water mark now) is woken to look again.
        assert_eq!(tx.sent(150), SendStep::Data);
        assert_eq!(tx.queue().front().map(<[u8]>::len), Some(50));
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        // All of it: the path goes idle; nobody waits any more, nobody is woken.
        assert_eq!(tx.sent(50), SendStep::Idle);
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert_eq!(io.queued(t), 0);
        // The handle is gone with data queued: its last send ends in a close.
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        assert!(matches!(io.begin_close(t), CloseStep::Linger { .. }));
        let mut tx = io.stream_send(t).unwrap();
        assert_eq!(tx.step(), SendStep::Data);
        assert_eq!(tx.sent(100), SendStep::Close);
    }

    #[test]
    fn a_send_completion_is_quiet_only_when_nothing_waits_on_it() {
        static ANSWER: [u8; 100] = [1; 100];
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = table();
        let t = io.insert_stream(3, false);
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        // All that is queued is in flight, nobody waits: quiet.
        assert!(io.send_completion_is_quiet(t, 100));
        // Part of it in flight: the rest goes out when it completes.
        assert!(!io.send_completion_is_quiet(t, 60));
        // More queued behind it.
        io.queue_send(t, SendData::Static(&ANSWER)).unwrap();
        assert!(!io.send_completion_is_quiet(t, 100));
        assert!(io.send_completion_is_quiet(t, 200));
        // A task waits for everything to be sent (a flush).
        assert!(io.poll_queued_at_most(t, 0, &mut cx).is_pending());
        assert!(!io.send_completion_is_quiet(t, 200));
        // A shutdown follows the data.
        let t2 = io.insert_stream(4, false);
        io.queue_send(t2, SendData::Static(&ANSWER)).unwrap();
        io.queue_shutdown(t2, Shutdown::Write).unwrap();
        assert!(!io.send_completion_is_quiet(t2, 100));
        // The handle is gone: a close follows the data.
        let t3 = io.insert_stream(5, false);
        io.queue_send(t3, SendData::Static(&ANSWER)).unwrap();
        assert!(io.send_completion_is_quiet(t3, 100));
        assert!(matches!(io.begin_close(t3), CloseStep::Linger { .. }));
        assert!(!io.send_completion_is_quiet(t3, 100));
        // Not a stream, or no record at all.
        let l = io.insert_listener(6);
        assert!(!io.send_completion_is_quiet(l, 0));
        assert!(!io.send_completion_is_quiet(Token(999), 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// The application queues this many bytes.
        Queue(usize),
        /// The backend copies up to this many bytes of the front (it may claim more
        /// than there are; the count is held to the front's unsent bytes).
        Copy(usize),
        /// The backend reports up to this many copied bytes taken by the kernel.
        Taken(u64),
        /// Sending fails.
        Fail,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1usize..40).prop_map(Op::Queue),
            4 => (0usize..50).prop_map(Op::Copy),
            2 => (0u64..60).prop_map(Op::Taken),
            1 => Just(Op::Fail),
        ]
    }

    proptest! {
        /// Copying from the queue in place, in pieces of any size: the bytes come out
        /// in order and once, copied bytes stay pending until reported taken, the send
        /// step says `Wait` while only copied bytes are unconfirmed, and after a failure
        /// nothing more is copied.
        #[test]
        fn copy_send_keeps_order_accounting_and_stops_at_a_failure(ops in proptest::collection::vec(op(), 1..60)) {
            let mut io = table();
            let t = io.insert_stream(3, false);
            let (mut queued, mut out, mut confirmed, mut failed) = (Vec::<u8>::new(), Vec::<u8>::new(), 0u64, false);
            let mut next = 0u8;
            for op in ops {
                match op {
                    Op::Queue(n) => {
                        let bytes: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                        let r = io.queue_send(t, SendData::Owned(bytes.clone()));
                        prop_assert_eq!(r.is_err(), failed, "a failed connection refuses sends");
                        if !failed {
                            queued.extend_from_slice(&bytes);
                        }
                    }
                    Op::Copy(k) => {
                        let waiting = queued.len() - out.len();
                        let mut called = false;
                        let got = io.copy_send(t, |data, unsent| {
                            called = true;
                            assert!(data.as_slice().ends_with(unsent));
                            out.extend_from_slice(&unsent[..k.min(unsent.len())]);
                            k
                        });
                        if failed || waiting == 0 {
                            prop_assert!(got.is_none() && !called);
                        } else {
                            prop_assert!(called);
                            prop_assert!(got.is_some_and(|c| c.bytes <= k));
                            let left = waiting - got.map_or(0, |c| c.bytes.min(waiting));
                            prop_assert_eq!(got.is_some_and(|c| c.more), left > 0);
                        }
                    }
                    Op::Taken(m) => {
                        let m = m.min(out.len() as u64 - confirmed);
                        if !failed {
                            let step = io.taken_sent(t, m);
                            confirmed += m;
                            let expect = if queued.len() > out.len() {
                                SendStep::Data
                            } else if (out.len() as u64) > confirmed {
                                SendStep::Wait
                            } else {
                                SendStep::Idle
                            };
                            prop_assert_eq!(step, expect);
                        }
                    }
                    Op::Fail => {
                        io.tx_failed(t, libc::EPIPE);
                        failed = true;
                    }
                }
                prop_assert_eq!(&out[..], &queued[..out.len()], "copied in order, once");
                let pending = if failed { 0 } else { queued.len() as u64 - confirmed };
                prop_assert_eq!(io.queued(t), pending);
                prop_assert_eq!(io.get(t).send_queue().bytes(), if failed { 0 } else { (queued.len() - out.len()) as u64 });
            }
        }
    }
}
