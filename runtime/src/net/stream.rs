//! [`TcpStream`]: one TCP connection — zero-copy `recv`/`send`, copying
//! `read`/`write_all`, `flush`, `shutdown` (the data path is [`Connection`]'s,
//! shared with [`UnixStream`](crate::net::UnixStream)), TCP addresses and options.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Context, Poll};

use paste_rt_core::{RxBuf, SendData, Token, TxBuf};

use crate::context;
use crate::net::conn::{Connection, RecvEach};
use crate::net::socket;
use crate::runtime::Inner;

/// A TCP connection served by the runtime's backend.
///
/// Receiving is zero copy: [`recv`](Self::recv) hands out the pool buffer the
/// backend received into. Sending is deferred and batched: [`send`](Self::send)
/// queues a buffer and returns; everything queued during a tick leaves at the next
/// `poll`, together. Errors of a send surface on a later call, or on
/// [`flush`](Self::flush).
///
/// Dropping the stream closes it; data already queued is still sent first.
#[derive(Debug)]
pub struct TcpStream {
    conn: Connection,
}

impl TcpStream {
    pub(crate) fn from_token(rt: Rc<Inner>, token: Token) -> TcpStream {
        TcpStream { conn: Connection::from_token(rt, token) }
    }

    /// The shared stream data path (for the I/O trait adapters).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Connects to `addr`.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let rt = context::current();
        let addr = socket::resolve(addr)?;
        let fd = socket::for_connect(addr)?;
        Ok(TcpStream { conn: Connection::connect(rt, fd, addr).await? })
    }

    /// Receives the next buffer of data, zero copy. `Ok(None)` once the peer has
    /// closed its side (EOF) and everything before it was received; a reset is an
    /// `Err` with kind `ConnectionReset`.
    pub async fn recv(&self) -> io::Result<Option<RxBuf>> {
        self.conn.recv().await
    }

    /// Polls for the next received buffer (see [`recv`](Self::recv)).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RxBuf>>> {
        self.conn.poll_recv(cx)
    }

    /// Sets a coarse receive deadline: once `deadline` has passed, a pending or later
    /// [`recv`](Self::recv)/[`read`](Self::read)/[`poll_recv`](Self::poll_recv) fails
    /// with `ErrorKind::TimedOut` (data received before is still handed out first;
    /// EOF and errors win). The connection stays open: the application decides what
    /// to do (answer `408` and close, for example). `None` clears it, and setting a
    /// new deadline clears an expiry. Deadlines are checked by a sweep in the tick
    /// every 100 ms, so one is reported up to that late (and up to a millisecond
    /// more: a tick waits for the sweep in whole milliseconds). Setting it is O(1),
    /// allocates nothing and makes no system call; compute it from
    /// [`time::coarse_now`](crate::time::coarse_now) on a per-request path.
    ///
    /// ```
    /// # paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use paste_rt::net::{TcpListener, TcpStream};
    /// let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    /// let (server, _) = listener.accept().await.unwrap();
    /// server.set_recv_deadline(Some(paste_rt::time::coarse_now() + Duration::from_millis(10)));
    /// let err = server.recv().await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # });
    /// ```
    pub fn set_recv_deadline(&self, deadline: Option<std::time::Instant>) {
        self.conn.set_recv_deadline(deadline)
    }

    /// Hands every buffer received so far to `on_buf`, in order, in one step: the
    /// batch form of [`poll_recv`](Self::poll_recv), with one look at the connection
    /// however many buffers wait and no second, waker-registering poll. When `on_buf`
    /// returns `Break`, the buffers it did not get stay first in line. Ready with what
    /// it handed out ([`RecvEach`]: how many buffers, none meaning the peer closed,
    /// and whether the task is already registered for the next data, so that a caller
    /// done with the batch can return `Pending` without polling again); pending when
    /// nothing is there (the waker is registered).
    ///
    /// ```
    /// # paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(async {
    /// use std::future::poll_fn;
    /// use std::io::Write;
    /// use std::ops::ControlFlow;
    /// let listener = paste_rt::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let (stream, _) = listener.accept().await.unwrap();
    /// client.write_all(b"hello").unwrap();
    /// let mut got = Vec::new();
    /// while got.len() < 5 {
    ///     poll_fn(|cx| stream.poll_recv_each(cx, |buf| {
    ///         got.extend_from_slice(&buf);
    ///         ControlFlow::Continue(())
    ///     }))
    ///     .await
    ///     .unwrap();
    /// }
    /// assert_eq!(got, b"hello");
    /// # });
    /// ```
    #[inline]
    pub fn poll_recv_each(
        &self,
        cx: &mut Context<'_>,
        on_buf: impl FnMut(RxBuf) -> std::ops::ControlFlow<()>,
    ) -> Poll<io::Result<RecvEach>> {
        self.conn.poll_recv_each(cx, on_buf)
    }

    /// Puts a partly consumed buffer back at the front of the receive queue, to be
    /// returned by the next `recv`/`read`.
    pub fn unrecv(&self, buf: RxBuf) {
        self.conn.unrecv(buf)
    }

    /// A pool buffer to fill and [`send`](Self::send); `None` when the pool is
    /// exhausted.
    pub fn tx_buf(&self) -> Option<TxBuf> {
        self.conn.tx_buf()
    }

    /// Queues a filled pool buffer for sending (zero copy; on PASTE a buffer of at
    /// most 512 bytes is copied into its TX slot instead, which costs less than the
    /// swap). Waits only when more than 256 KiB are already queued on this
    /// connection (backpressure).
    pub async fn send(&self, buf: TxBuf) -> io::Result<()> {
        self.conn.send_data(SendData::Pool(buf)).await
    }

    /// Queues any [`SendData`] for sending; see [`send`](Self::send).
    pub async fn send_data(&self, data: SendData) -> io::Result<()> {
        self.conn.send_data(data).await
    }

    /// Queues data for sending without waiting, however much is queued already.
    /// For handlers that bound their own output (one response per request).
    pub fn queue_send(&self, data: SendData) -> io::Result<()> {
        self.conn.queue_send(data).map(|_room| ())
    }

    /// [`queue_send`](Self::queue_send) that also says whether the connection
    /// still has room: `false` once more than 256 KiB are queued, when the caller
    /// should await [`poll_send_ready`](Self::poll_send_ready) before queuing more.
    /// Lets a handler that answers a batch of requests skip that wait (a poll and
    /// a look at the connection) in the common case, in the same step as the send.
    #[inline]
    pub fn queue_send_with_room(&self, data: SendData) -> io::Result<bool> {
        self.conn.queue_send(data)
    }

    /// [`queue_send_with_room`](Self::queue_send_with_room) for data that more will
    /// follow before the task yields: a full buffer of a batch of replies, a piece
    /// of a longer message. The send it would start is started by the runtime's
    /// next poll instead, with everything queued on this stream by then (by this
    /// method or [`queue_send`](Self::queue_send)), so the pieces leave together: on
    /// io_uring one gathered send, where a send started at once would carry the
    /// first piece alone and the rest only after it completed, a tick later.
    /// Nothing waits longer than with `queue_send`: a send queued in a task reaches
    /// the kernel at the next poll either way.
    #[inline]
    pub fn queue_send_more(&self, data: SendData) -> io::Result<bool> {
        self.conn.queue_send_more(data)
    }

    /// Ready when at most 256 KiB are queued (or an error is pending).
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.poll_send_ready(cx)
    }

    /// Waits until everything queued has been handed to the kernel.
    pub async fn flush(&self) -> io::Result<()> {
        self.conn.flush().await
    }

    /// Polls [`flush`](Self::flush).
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.poll_flush(cx)
    }

    /// Reads into `buf` (copying out of the lent buffers). `Ok(0)` at EOF.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.read(buf).await
    }

    /// Polls [`read`](Self::read).
    pub fn poll_read(&self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        self.conn.poll_read(cx, out)
    }

    /// Copies `data` into pool buffers and queues them; waits only for
    /// backpressure. Like every send, it returns once the data is queued: use
    /// [`flush`](Self::flush) to wait until the kernel has it.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.conn.write_all(data).await
    }

    /// Copies up to one pool buffer's worth of `data` and queues it; returns how
    /// many bytes were taken. Falls back to an owned copy if the pool is exhausted.
    /// When not all of `data` was taken, the part taken is queued as with
    /// [`queue_send_more`](Self::queue_send_more): call again with the rest, and
    /// the pieces leave together.
    pub fn queue_copy(&self, data: &[u8]) -> io::Result<usize> {
        self.conn.queue_copy(data)
    }

    /// Shuts down the writing half after everything queued is sent (the peer sees
    /// EOF), and waits until then.
    pub async fn shutdown(&self) -> io::Result<()> {
        self.conn.shutdown().await
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket::with_sock(self.conn.fd()?, |s| s.peer_addr())?
            .as_socket()
            .ok_or_else(|| io::Error::other("peer has no IP address"))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket::with_sock(self.conn.fd()?, |s| s.local_addr())?
            .as_socket()
            .ok_or_else(|| io::Error::other("socket has no IP address"))
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        socket::with_sock(self.conn.fd()?, |s| s.set_nodelay(on))
    }

    /// Bytes queued on this connection and not yet taken by the kernel.
    pub fn queued(&self) -> u64 {
        self.conn.queued()
    }

    /// The token naming this connection to the backend (for diagnostics).
    pub fn token(&self) -> Token {
        self.conn.token()
    }

    // ---- `bytes` (issue 13) ----

    /// Queues a [`Bytes`](bytes::Bytes) for sending, without copying on epoll and
    /// io_uring: the `Bytes` stays in the connection's send queue until the kernel
    /// has taken its last byte (io_uring: its completion; epoll: the `write` that
    /// took it), then drops. Several queued in one tick leave in one gathered send
    /// where the backend gathers (io_uring). PASTE sends only from its port
    /// buffers, so on `paste` and `paste-emu` it is copied once into TX slots (a
    /// `Bytes` made with [`RxBuf::into_bytes`] too: see
    /// [`SendData::Bytes`]). Waits, like
    /// [`send`](Self::send), only for backpressure.
    ///
    /// ```
    /// # paste_rt::runtime::Builder::new().backend("epoll").build().unwrap().block_on(async {
    /// use paste_rt::net::{TcpListener, TcpStream};
    /// let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    /// let (server, _) = listener.accept().await.unwrap();
    /// static BODY: bytes::Bytes = bytes::Bytes::from_static(b"hello");
    /// server.send_bytes(BODY.clone()).await.unwrap(); // no copy, no allocation
    /// let got = client.recv().await.unwrap().unwrap().into_bytes(); // no copy either
    /// assert_eq!(got, "hello");
    /// # });
    /// ```
    pub async fn send_bytes(&self, bytes: bytes::Bytes) -> io::Result<()> {
        self.conn.send_data(SendData::Bytes(bytes)).await
    }
}

/// The write side's shutdown state, for the `AsyncWrite` adapters.
impl TcpStream {
    /// Polls a write-half shutdown: queues it once (after everything queued before),
    /// then waits until the queue has drained.
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.poll_shutdown(cx)
    }

    /// Polls a copying write of `data` (see [`write_all`](Self::write_all)): ready
    /// with the number of bytes queued once the connection is below its high-water
    /// mark. An error of an earlier send surfaces here.
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.conn.poll_write(cx, data)
    }

    /// Borrowed read and write halves (both may be used from one task at once, e.g.
    /// with `tokio::io::copy` or `select!`).
    pub fn split(&self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf(self), WriteHalf(self))
    }

    /// Owned halves sharing the connection; it closes when both are dropped.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let shared = Rc::new(self);
        (OwnedReadHalf(shared.clone()), OwnedWriteHalf(shared))
    }
}

/// The reading half of [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a>(&'a TcpStream);
/// The writing half of [`TcpStream::split`].
#[derive(Debug)]
pub struct WriteHalf<'a>(&'a TcpStream);
/// The owned reading half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf(Rc<TcpStream>);
/// The owned writing half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedWriteHalf(Rc<TcpStream>);

impl ReadHalf<'_> {
    /// The stream.
    pub fn stream(&self) -> &TcpStream {
        self.0
    }
}
impl WriteHalf<'_> {
    /// The stream.
    pub fn stream(&self) -> &TcpStream {
        self.0
    }
}
impl OwnedReadHalf {
    /// The stream.
    pub fn stream(&self) -> &TcpStream {
        &self.0
    }
}
impl OwnedWriteHalf {
    /// The stream.
    pub fn stream(&self) -> &TcpStream {
        &self.0
    }
}
