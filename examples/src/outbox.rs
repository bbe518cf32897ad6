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

use std::io;
use std::task::{ready, Context, Poll};

use paste_rt::net::TcpStream;
use paste_rt::{SendData, TxBuf};

use crate::memcache::ResponseSink;

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
    /// The first error queueing reported; later bytes are dropped.
    error: Option<io::Error>,
    /// A queued reply found the connection's backlog over the runtime's limit.
    full: bool,
}

impl<'s> Outbox<'s> {
    /// An empty outbox sending on `stream`.
    pub fn new(stream: &'s TcpStream) -> Self {
        Outbox { stream, current: None, error: None, full: false }
    }

    /// Appends `bytes` to the replies, queueing every buffer that fills up.
    #[inline]
    pub fn put(&mut self, bytes: &[u8]) {
        // The common case, inlined into the reply writer: a memcached reply is several
        // short pieces, and they fit the buffer being filled without filling it.
        if let Some(tx) = &mut self.current {
            if bytes.len() < tx.remaining() {
                tx.put(bytes);
                return;
            }
        }
        self.put_slow(bytes);
    }

    /// [`put`](Self::put) when there is no buffer yet, or `bytes` fill it up.
    #[inline(never)]
    fn put_slow(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.error.is_none() {
            let tx = match &mut self.current {
                Some(tx) => tx,
                None => match self.stream.tx_buf() {
                    Some(tx) => self.current.insert(tx),
                    None => {
                        // Pool exhausted: an owned copy keeps the stream intact.
                        self.queue(SendData::Owned(bytes.to_vec()));
                        return;
                    }
                },
            };
            let n = tx.put(bytes);
            bytes = &bytes[n..];
            if tx.remaining() == 0 {
                if let Some(full) = self.current.take() {
                    self.queue(SendData::Pool(full));
                }
            }
        }
    }

    /// Appends bytes that live for ever (a canned response): queued as they are, with
    /// no copy on io_uring and epoll, after whatever was put before them.
    #[inline]
    pub fn put_static(&mut self, bytes: &'static [u8]) {
        if let Some(tx) = self.current.take() {
            self.queue(SendData::Pool(tx));
        }
        // Inlined here with the variant known: the queue's look at the variant and
        // the drop glue fold away (one canned response per request).
        if self.error.is_none() {
            match self.stream.queue_send_with_room(SendData::Static(bytes)) {
                Ok(room) => self.full |= !room,
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// Queues the partly filled buffer, if any. Returns the first error queueing met
    /// (the connection's send failed earlier; the bytes since are lost).
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(tx) = self.current.take() {
            self.queue(SendData::Pool(tx));
        }
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

    fn queue(&mut self, data: SendData) {
        if self.error.is_none() {
            match self.stream.queue_send_with_room(data) {
                Ok(room) => self.full |= !room,
                Err(e) => self.error = Some(e),
            }
        }
    }
}

impl ResponseSink for Outbox<'_> {
    fn put(&mut self, bytes: &[u8]) {
        Outbox::put(self, bytes);
    }
}
