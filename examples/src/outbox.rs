//! [`Outbox`]: the replies of one connection, written into pool buffers and queued
//! for the next tick's batched send.
//!
//! Owns the filling of [`TxBuf`]s: replies are appended to the current pool buffer
//! (many small replies share one), a full buffer is queued at once with
//! [`TcpStream::queue_send`] (no await, no system call: it leaves at the next
//! tick with everything else), and [`flush`](Outbox::flush) queues the partly
//! filled one at the end of a batch of requests. It never waits and never decides
//! what to reply; it allocates only when the pool is exhausted (then the bytes are
//! queued as an owned copy rather than dropped).
//!
//! A canned reply ([`put_static`](Outbox::put_static)) goes without a copy when it
//! is the batch's only reply. When a batch has several (pipelined requests), the
//! small ones are copied into the pool buffer with the rest instead: one queued
//! item per batch rather than one per reply. An item costs more than copying a few
//! hundred bytes — a queue entry, an iovec and its accounting on io_uring and epoll,
//! a TX slot and a segment of its own on PASTE — so sixteen pipelined 151-byte
//! replies queued one by one cost the server more than the copies (see
//! [`COPY_CANNED_MAX`]).

use std::io;
use std::task::{ready, Context, Poll};

use paste_rt::net::TcpStream;
use paste_rt::{SendData, TxBuf};

use crate::memcache::ResponseSink;

/// Largest canned reply ([`Outbox::put_static`], `BatchOutbox::put_static`) copied
/// into the pool buffer when it shares a batch with other replies; a larger one is
/// always queued as it is. Copying 1 KiB costs a few dozen instructions; a queued
/// item of its own costs a few hundred (and on PASTE a TX slot and a segment).
pub const COPY_CANNED_MAX: usize = 1024;

/// Both outboxes' common case: appends `bytes` to the buffer being filled when they
/// fit without filling it, and says whether it did. (A buffer they would fill is left
/// to the caller's slow path, which queues it at once.)
#[inline(always)]
pub(crate) fn put_within(current: &mut Option<TxBuf>, bytes: &[u8]) -> bool {
    current.as_mut().is_some_and(|tx| tx.put_within(bytes))
}

/// Replies of one connection on their way to pool buffers.
///
/// ```no_run
/// # async fn demo(stream: paste_rt::net::TcpStream) -> std::io::Result<()> {
/// use paste_rt_examples::outbox::Outbox;
/// let mut out = Outbox::new(&stream);
/// out.put(b"first reply\r\n");
/// out.put(b"second reply, same pool buffer\r\n");
/// out.flush()?; // queued; sent at the next tick
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Outbox<'s> {
    stream: &'s TcpStream,
    /// The buffer being filled.
    current: Option<TxBuf>,
    /// A canned reply put while nothing else was: queued as it is at
    /// [`flush`](Outbox::flush) if it stays alone, copied into `current` when more
    /// follows. (Never set together with `current`.)
    canned: Option<&'static [u8]>,
    /// The first error queueing reported; later bytes are dropped.
    error: Option<io::Error>,
    /// A queued reply found the connection's backlog over the runtime's limit.
    full: bool,
}

impl<'s> Outbox<'s> {
    /// An empty outbox sending on `stream`.
    pub fn new(stream: &'s TcpStream) -> Self {
        Outbox { stream, current: None, canned: None, error: None, full: false }
    }

    /// Appends `bytes` to the replies, queueing every buffer that fills up.
    #[inline]
    pub fn put(&mut self, bytes: &[u8]) {
        // The common case, inlined into the reply writer: a memcached reply is several
        // short pieces, and they fit the buffer being filled without filling it.
        if !put_within(&mut self.current, bytes) {
            self.put_slow(bytes);
        }
    }

    /// [`put`](Self::put) when there is no buffer yet, or `bytes` fill it up.
    #[inline(never)]
    fn put_slow(&mut self, bytes: &[u8]) {
        if let Some(canned) = self.canned.take() {
            self.release_canned(canned);
        }
        self.copy(bytes);
    }

    /// A held canned reply that another reply follows: it goes first, copied when
    /// small, queued as it is when large.
    #[inline(never)]
    fn release_canned(&mut self, canned: &'static [u8]) {
        if canned.len() > COPY_CANNED_MAX {
            self.queue(SendData::Static(canned), true);
        } else {
            self.copy(canned);
        }
    }

    /// Copies `bytes` into pool buffers, queueing every buffer that fills up.
    #[inline(always)] // into put_slow: the copying replies' (echo, kv) common path
    fn copy(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.error.is_none() {
            let tx = match &mut self.current {
                Some(tx) => tx,
                None => match self.stream.tx_buf() {
                    Some(tx) => self.current.insert(tx),
                    None => {
                        // Pool exhausted: an owned copy keeps the stream intact.
                        self.queue(SendData::Owned(bytes.to_vec()), true);
                        return;
                    }
                },
            };
            let n = tx.put(bytes);
            bytes = &bytes[n..];
            if tx.remaining() == 0 {
                if let Some(full) = self.current.take() {
                    self.queue(SendData::Pool(full), true);
                }
            }
        }
    }

    /// Appends bytes that live for ever (a canned response), after whatever was put
    /// before them. The batch's only reply is queued as it is at
    /// [`flush`](Self::flush), with no copy on io_uring and epoll; one of several
    /// replies is copied with the others when it is at most [`COPY_CANNED_MAX`]
    /// bytes (one queued item for the batch), and queued as it is when larger.
    #[inline]
    pub fn put_static(&mut self, bytes: &'static [u8]) {
        if self.current.is_none() && self.canned.is_none() {
            self.canned = Some(bytes);
        } else {
            self.put_static_behind(bytes);
        }
    }

    /// [`put_static`](Self::put_static) when something was put before `bytes`.
    #[inline(never)]
    fn put_static_behind(&mut self, bytes: &'static [u8]) {
        if bytes.len() <= COPY_CANNED_MAX {
            self.put(bytes);
            return;
        }
        self.queue_put(true);
        self.queue(SendData::Static(bytes), true);
    }

    /// Queues what was put and not queued yet: the partly filled buffer, or a canned
    /// reply held alone. Returns the first error queueing met (the connection's send
    /// failed earlier; the bytes since are lost).
    #[inline]
    pub fn flush(&mut self) -> io::Result<()> {
        self.queue_put(false);
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether a queued reply found the connection's backlog over the runtime's limit
    /// (a peer that does not read): wait for room ([`poll_room`](Self::poll_room))
    /// before answering more.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Ready once the backlog is back under the runtime's limit (at once when it
    /// never went over), or with the send's error.
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.full {
            ready!(self.stream.poll_send_ready(cx))?;
            self.full = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues what was put and not queued yet: the buffer being filled or the held
    /// canned reply (never both); `more`: with more to follow (see
    /// [`queue`](Self::queue)).
    #[inline(always)] // into flush: one check per batch, each branch with its variant known
    fn queue_put(&mut self, more: bool) {
        if let Some(tx) = self.current.take() {
            self.queue(SendData::Pool(tx), more);
        } else if let Some(canned) = self.canned.take() {
            if more {
                self.queue(SendData::Static(canned), true);
            } else {
                self.queue_static(canned);
            }
        }
    }

    /// Queues the lone canned reply of a batch as it is, at [`flush`](Self::flush):
    /// the common answer, kept apart from [`queue`](Self::queue) so that it stays a
    /// straight line (with `queue`'s choice folded in it cost about 20 instructions
    /// per request more).
    #[inline]
    fn queue_static(&mut self, bytes: &'static [u8]) {
        if self.error.is_none() {
            match self.stream.queue_send_with_room(SendData::Static(bytes)) {
                Ok(room) => self.full |= !room,
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// Queues `data` unless an earlier send failed. The batch's last piece (at
    /// [`flush`](Self::flush)) starts the send on an idle stream; a piece that more
    /// will follow (`more`: a full buffer, a large canned reply) leaves with the rest
    /// of the batch at the runtime's next poll ([`TcpStream::queue_send_more`]).
    fn queue(&mut self, data: SendData, more: bool) {
        if self.error.is_some() {
            return;
        }
        let queued = if more { self.stream.queue_send_more(data) } else { self.stream.queue_send_with_room(data) };
        match queued {
            Ok(room) => self.full |= !room,
            Err(e) => self.error = Some(e),
        }
    }
}

impl ResponseSink for Outbox<'_> {
    fn put(&mut self, bytes: &[u8]) {
        Outbox::put(self, bytes);
    }
}
