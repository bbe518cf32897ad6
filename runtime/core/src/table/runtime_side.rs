//! The runtime's side of the table: what the net types do with a record (take
//! received buffers, queue sends and shutdowns, accept, wait for room, set
//! deadlines, begin a close).

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{not_connected, CloseStep, IoTable, Received, TakenRx};
use crate::buf::RxBuf;
use crate::queue::RxQueue;
use crate::record::{flag, Datagram, Deadline, IoRecord, RecordKind, Token, NO_GROUP, RX_RESUME_AT, TX_HIGH_WATER};
use crate::send::{SendData, Shutdown};

impl IoTable {
    /// `token` as a live stream, or the error a user sees when it is not.
    #[inline]
    pub(super) fn stream(&mut self, token: Token) -> io::Result<&mut IoRecord> {
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
}
