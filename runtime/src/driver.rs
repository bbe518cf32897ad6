//! The runtime's side of I/O: the [`IoTable`] of every connection, listener and
//! datagram socket, and the backend that completes their operations in place
//! (docs/architecture.md, the tick).
//!
//! Owns the two and the few decisions that need both: telling the backend when a
//! record it is not engaged with has something to send, when a paused receive may
//! resume, and when a handle is gone (close now, or linger until what was queued is
//! sent). The net types borrow the driver for each call; the per-request path is a
//! table method and, for the first send of a batch, one call into the backend. It
//! never makes a system call itself: the backend does, inside `poll` on io_uring and
//! PASTE.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use paste_rt_core::{
    BufPool, Capabilities, CloseStep, IoTable, Received, RemoteWake, RxBuf, SendData, Shutdown, StatsSnapshot, Token,
    Wait,
};

use crate::select::AnyBackend;

/// The runtime's I/O state and its backend.
pub(crate) struct Driver {
    pub(crate) io: IoTable,
    pub(crate) backend: AnyBackend,
    /// Streams whose idle send path took data with more to follow
    /// ([`queue_send_more`](Self::queue_send_more)): the backend is told at the next
    /// poll, once everything queued in between is there to leave with it. (A later
    /// plain `queue_send` finds the path engaged and tells the backend nothing.)
    held_sends: Vec<Token>,
}

impl Driver {
    pub(crate) fn new(backend: AnyBackend) -> Driver {
        let io = IoTable::new(backend.pool().clone());
        // (bytes, issue 13) A `Bytes` lent from the pool and dropped on another thread
        // interrupts the wait, so a receive paused for lack of buffers resumes.
        io.pool().set_return_wake(backend.remote_waker());
        Driver { io, backend, held_sends: Vec::new() }
    }

    /// Steps 2 and 3 of the tick: the backend's one poll; completions land in their
    /// records and wake their tasks inside it.
    #[inline]
    pub(crate) fn poll(&mut self, wait: Wait) -> io::Result<()> {
        // (bytes, issue 13) Buffers that `Bytes` dropped on other threads returned: one
        // relaxed load when there are none.
        self.io.pool().reclaim_returned();
        if !self.held_sends.is_empty() {
            self.start_held_sends();
        }
        self.backend.poll(&mut self.io, wait)
    }

    /// Tells the backend of the sends held by [`queue_send_more`](Self::queue_send_more):
    /// each leaves with everything queued behind it since (on io_uring, one gathered
    /// SQE). A held stream's send path is engaged and idle at the backend, as
    /// `send_queued_data` asks; only a runtime shutdown in between (`close_all`,
    /// which forgets the list) could have closed it, and a record is released only
    /// inside a poll.
    #[inline(never)]
    fn start_held_sends(&mut self) {
        let mut held = std::mem::take(&mut self.held_sends);
        for token in held.drain(..) {
            self.backend.send_queued_data(&mut self.io, token);
        }
        self.held_sends = held;
    }

    pub(crate) fn pool(&self) -> &BufPool {
        self.io.pool()
    }

    pub(crate) fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    pub(crate) fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.backend.remote_waker()
    }

    /// The backend's counters, with the pool's buffers in use.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.backend.stats().snapshot();
        s.pool_in_use = self.io.pool().in_use() as u64;
        s
    }

    // ---- sockets handed to the backend ----

    pub(crate) fn listen(&mut self, fd: RawFd) -> Token {
        let t = self.io.insert_listener(fd);
        self.backend.listen(&mut self.io, t);
        t
    }

    pub(crate) fn register(&mut self, fd: RawFd) -> Token {
        let t = self.io.insert_stream(fd, false);
        self.backend.register(&mut self.io, t);
        t
    }

    pub(crate) fn connect(&mut self, fd: RawFd, addr: SocketAddr) -> Token {
        let t = self.io.insert_stream(fd, true);
        self.backend.connect(&mut self.io, t, addr);
        t
    }

    pub(crate) fn bind_dgram(&mut self, fd: RawFd) -> Token {
        let t = self.io.insert_dgram(fd);
        self.backend.bind_dgram(&mut self.io, t);
        t
    }

    // ---- the per-request path ----

    /// The oldest received buffer of `token` (resuming a paused receive when its
    /// queue is short again), its EOF (`None`), or its error.
    #[inline]
    pub(crate) fn poll_recv(&mut self, token: Token, cx: &mut Context<'_>) -> Poll<io::Result<Option<RxBuf>>> {
        match self.io.poll_recv(token, cx) {
            Poll::Ready(Ok(Received::Buf(buf, resume))) => {
                if resume {
                    self.resume_recv_cold(token);
                }
                Poll::Ready(Ok(Some(buf)))
            }
            Poll::Ready(Ok(Received::Eof)) => Poll::Ready(Ok(None)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// [`resume_recv`](Self::resume_recv) out of the per-request path (a paused
    /// receive is rare): keeps the backend dispatch out of its callers' code.
    #[cold]
    #[inline(never)]
    pub(crate) fn resume_recv_cold(&mut self, token: Token) {
        self.backend.resume_recv(&mut self.io, token);
    }

    /// Queues `data` on `token`; tells the backend when it is not engaged yet (on
    /// io_uring that writes the SQE now).
    #[inline]
    pub(crate) fn queue_send(&mut self, token: Token, data: SendData) -> io::Result<bool> {
        let (engage, room) = self.io.queue_send_room(token, data)?;
        if engage {
            self.backend.send_queued_data(&mut self.io, token);
        }
        Ok(room)
    }

    /// [`queue_send`](Self::queue_send) for data that more will follow before the
    /// next poll: when it engages the idle send path, the backend is told at that
    /// poll instead of now, so what is queued in between leaves with it.
    #[inline]
    pub(crate) fn queue_send_more(&mut self, token: Token, data: SendData) -> io::Result<bool> {
        let (engage, room) = self.io.queue_send_room(token, data)?;
        if engage {
            self.held_sends.push(token);
        }
        Ok(room)
    }

    /// [`queue_send_more`](Self::queue_send_more) for the batch API.
    #[inline]
    pub(crate) fn queue_batch_send_more(&mut self, token: Token, data: SendData) -> io::Result<()> {
        if self.io.queue_send_engage(token, data)? {
            self.held_sends.push(token);
        }
        Ok(())
    }

    /// [`queue_send`](Self::queue_send) for the batch API, which does not report
    /// the room left: inlined into the batch handler's loop, down to the backend.
    #[inline(always)]
    pub(crate) fn queue_batch_send(&mut self, token: Token, data: SendData) -> io::Result<()> {
        if self.io.queue_send_engage(token, data)? {
            self.backend.send_queued_data(&mut self.io, token);
        }
        Ok(())
    }

    /// Queues a shutdown of `how` after what is queued on `token`.
    pub(crate) fn queue_shutdown(&mut self, token: Token, how: Shutdown) -> io::Result<()> {
        if self.io.queue_shutdown(token, how)? {
            self.backend.send(&mut self.io, token);
        }
        Ok(())
    }

    /// Queues one datagram on `token`.
    pub(crate) fn queue_datagram(&mut self, token: Token, data: SendData, to: SocketAddr) -> io::Result<()> {
        if self.io.queue_datagram(token, data, to)? {
            self.backend.send(&mut self.io, token);
        }
        Ok(())
    }

    /// Receiving may resume on `token`.
    pub(crate) fn resume_recv(&mut self, token: Token) {
        self.backend.resume_recv(&mut self.io, token);
    }

    // ---- closing ----

    /// The handle of `token` was dropped: close now, or linger until what it queued
    /// is sent (the backend closes it then).
    pub(crate) fn close(&mut self, token: Token) {
        match self.io.begin_close(token) {
            CloseStep::Close => {
                self.backend.close(&mut self.io, token);
                for orphan in self.io.take_orphans() {
                    self.backend.close(&mut self.io, orphan);
                }
            }
            CloseStep::Linger { resume: true } => self.backend.resume_recv(&mut self.io, token),
            CloseStep::Linger { resume: false } | CloseStep::Nothing => {}
        }
    }

    /// Closes everything (runtime shutdown): queued sends are abandoned.
    pub(crate) fn close_all(&mut self) {
        self.held_sends.clear();
        for token in self.io.close_all() {
            self.backend.close(&mut self.io, token);
        }
    }

    /// Wakes every task waiting to receive (graceful shutdown: idle connections look
    /// at `is_shutting_down()` and close).
    pub(crate) fn wake_receivers(&mut self) {
        self.io.wake_all_receivers();
    }

    /// Sets (or clears) `token`'s receive deadline; one at or before `now` expires at
    /// once.
    #[inline]
    pub(crate) fn set_recv_deadline(&mut self, token: Token, deadline: Option<Instant>, now: Instant) {
        self.io.set_deadline(token, deadline, now);
    }

    /// Whether any receive deadline is set.
    pub(crate) fn has_deadlines(&self) -> bool {
        self.io.has_deadlines()
    }

    /// Fails the receives whose deadline passed by `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.io.expire(now);
    }
}
