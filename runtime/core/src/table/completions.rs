//! The backend's side of the table: each completion applied to its record in place
//! (a buffer delivered, bytes sent, an EOF, a failure, an accepted socket), waking
//! whoever waits and answering what the backend does next.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::{CopiedSend, Delivery, Group, IoTable, SendStep};
use crate::buf::RxBuf;
use crate::record::{
    flag, Datagram, IoRecord, RecordKind, Token, DGRAM_TX_HIGH_WATER, NO_GROUP, RX_PAUSE_AT, TX_HIGH_WATER,
};
use crate::send::SendData;
use crate::stream_send::{idle_or_close, step_after_progress, StreamSend};

impl IoTable {
    /// Tells whoever waits for this connection's input: its task, or its batch
    /// server (which then finds it in its ready list).
    #[inline(always)]
    pub(super) fn notify_rx(records: &mut [IoRecord], groups: &mut [Group], token: Token) -> u64 {
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
}
