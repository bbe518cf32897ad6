//! Unix stream sockets: [`UnixListener`] and [`UnixStream`], on epoll and io_uring.
//!
//! Only the control path differs from TCP: the socket is created, bound and
//! connected here (a Unix-socket connect completes at once or finds the listener's
//! queue full, so it is done right here, as `socket`/`bind`/`listen` are, and the
//! connected fd is handed to the backend with `Register`). The backend then accepts
//! and moves data exactly as for TCP, and the stream's data path is the shared
//! [`Connection`]. PASTE registers TCP sockets only, so on a PASTE runtime both types
//! refuse with `ErrorKind::Unsupported`.

use std::future::poll_fn;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use paste_rt_core::{RxBuf, SendData, Token, TxBuf};

use crate::context;
use crate::net::conn::Connection;
use crate::net::listener::{close_listener, poll_backlog, start_listening};
use crate::net::socket::{self, UnixConnect};
use crate::runtime::Inner;

const NOT_ON_PASTE: &str = "PASTE registers TCP sockets only";
/// Accept queue length of a Unix listener.
const BACKLOG: i32 = 1024;
/// How often a connect retries while the listener's accept queue is full, and the
/// longest pause between tries (the first is 1 ms, doubling).
const CONNECT_TRIES: u32 = 20;
const CONNECT_MAX_PAUSE: Duration = Duration::from_millis(100);

/// A Unix stream listener. Connections are accepted by the backend as soon as they
/// arrive (and start receiving at once); [`accept`](Self::accept) hands them out.
///
/// The socket file is not removed when the listener is dropped (as with std's).
#[derive(Debug)]
pub struct UnixListener {
    rt: Rc<Inner>,
    token: Token,
    local: SocketAddr,
}

impl UnixListener {
    /// Binds to `path` (which must not exist) and listens. Synchronous: binding
    /// never waits. On a PASTE runtime: `ErrorKind::Unsupported`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let rt = context::current();
        socket::require(&rt, "a Unix socket", |c| c.unix_streams, NOT_ON_PASTE)?;
        let fd = socket::unix_listen(path.as_ref(), BACKLOG)?;
        // SAFETY: `fd` is the listening socket just created; the ManuallyDrop view
        // only asks for its address and never closes it.
        let local = ManuallyDrop::new(unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) }).local_addr();
        let local = match local {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: nobody else owns `fd` yet; closed once.
                drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
                return Err(e);
            }
        };
        let token = start_listening(&rt, fd);
        Ok(UnixListener { rt, token, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local.clone())
    }

    /// Waits for the next connection; returns it with the peer's address (usually
    /// unnamed: a Unix client rarely binds). An accept error is returned once, as
    /// for [`TcpListener::accept`](crate::net::TcpListener::accept).
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let stream = poll_fn(|cx| self.poll_accept(cx)).await?;
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }

    /// Polls for the next accepted connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<UnixStream>> {
        poll_backlog(&self.rt, self.token, cx)
            .map_ok(|token| UnixStream { conn: Connection::from_token(self.rt.clone(), token) })
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        close_listener(&self.rt, self.token);
    }
}

/// A Unix stream connection served by the runtime's backend, with the same data
/// path as [`TcpStream`](crate::net::TcpStream): zero-copy [`recv`](Self::recv) and
/// [`send`](Self::send), copying [`read`](Self::read) and
/// [`write_all`](Self::write_all), deferred and batched sends, and tokio's and
/// futures' `AsyncRead`/`AsyncWrite`.
///
/// Dropping the stream closes it; data already queued is still sent first.
#[derive(Debug)]
pub struct UnixStream {
    conn: Connection,
}

impl UnixStream {
    /// Connects to the listener at `path`. While the listener's accept queue is
    /// full the connect is retried for a while (pausing 1 ms, doubling up to
    /// 100 ms, 20 tries), then fails with `WouldBlock`. On a PASTE runtime:
    /// `ErrorKind::Unsupported`.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let rt = context::current();
        socket::require(&rt, "a Unix socket", |c| c.unix_streams, NOT_ON_PASTE)?;
        let path = path.as_ref();
        let mut pause = Duration::from_millis(1);
        for _ in 0..CONNECT_TRIES {
            match socket::unix_connect(path)? {
                UnixConnect::Done(fd) => return Ok(UnixStream { conn: Connection::register(rt, fd) }),
                UnixConnect::Full => {
                    crate::time::sleep(pause).await;
                    pause = (pause * 2).min(CONNECT_MAX_PAUSE);
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("connect to Unix socket {}: its accept queue stayed full", path.display()),
        ))
    }

    /// The shared stream data path (for the I/O trait adapters).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
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

    /// Sets or clears a coarse receive deadline, as
    /// [`TcpStream::set_recv_deadline`](crate::net::TcpStream::set_recv_deadline).
    pub fn set_recv_deadline(&self, deadline: Option<std::time::Instant>) {
        self.conn.set_recv_deadline(deadline)
    }

    /// Puts a partly consumed buffer back at the front of the receive queue.
    pub fn unrecv(&self, buf: RxBuf) {
        self.conn.unrecv(buf)
    }

    /// A pool buffer to fill and [`send`](Self::send); `None` when the pool is
    /// exhausted.
    pub fn tx_buf(&self) -> Option<TxBuf> {
        self.conn.tx_buf()
    }

    /// Queues a filled pool buffer for sending (zero copy). Waits only when more
    /// than 256 KiB are already queued on this connection (backpressure).
    pub async fn send(&self, buf: TxBuf) -> io::Result<()> {
        self.conn.send_data(SendData::Pool(buf)).await
    }

    /// Queues any [`SendData`] for sending; see [`send`](Self::send).
    pub async fn send_data(&self, data: SendData) -> io::Result<()> {
        self.conn.send_data(data).await
    }

    /// Queues data for sending without waiting, however much is queued already.
    pub fn queue_send(&self, data: SendData) -> io::Result<()> {
        self.conn.queue_send(data).map(|_room| ())
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
    /// backpressure. Use [`flush`](Self::flush) to wait until the kernel has it.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.conn.write_all(data).await
    }

    /// Copies up to one pool buffer's worth of `data` and queues it; returns how
    /// many bytes were taken.
    pub fn queue_copy(&self, data: &[u8]) -> io::Result<usize> {
        self.conn.queue_copy(data)
    }

    /// Polls a copying write of `data` (see [`write_all`](Self::write_all)).
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.conn.poll_write(cx, data)
    }

    /// Shuts down the writing half after everything queued is sent (the peer sees
    /// EOF), and waits until then.
    pub async fn shutdown(&self) -> io::Result<()> {
        self.conn.shutdown().await
    }

    /// Polls a write-half shutdown (queued once, after everything queued before).
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.poll_shutdown(cx)
    }

    /// The peer's address (usually unnamed for an accepted client).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std_view()?.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std_view()?.local_addr()
    }

    /// The token naming this connection to the backend (for diagnostics).
    pub fn token(&self) -> Token {
        self.conn.token()
    }

    /// A std view of the socket for address queries (control path), never closed.
    fn std_view(&self) -> io::Result<ManuallyDrop<std::os::unix::net::UnixStream>> {
        // SAFETY: the fd stays open while this stream lives (the backend closes it
        // only after the stream submitted Close); the view is never dropped, so it
        // never closes the fd, and it does not outlive `self`'s use of it.
        Ok(ManuallyDrop::new(unsafe { std::os::unix::net::UnixStream::from_raw_fd(self.conn.fd()?) }))
    }
}
