//! [`TcpStream`]: one connection — zero-copy `recv`/`send`, copying
//! `read`/`write_all`, `flush`, `shutdown`.

use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Context, Poll};

use paste_rt_core::{Op, RxBuf, SendData, Shutdown, Token, TxBuf};

use crate::context;
use crate::driver::{register, Conn, TX_HIGH_WATER};
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
    rt: Rc<Inner>,
    token: Token,
}

impl TcpStream {
    pub(crate) fn from_token(rt: Rc<Inner>, token: Token) -> TcpStream {
        TcpStream { rt, token }
    }

    /// Connects to `addr`.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let rt = context::current();
        let addr = socket::resolve(addr)?;
        let fd = socket::for_connect(addr)?;
        let token = {
            let mut d = rt.driver.borrow_mut();
            let token = d.insert_conn(Conn { fd, connect: None, ..Conn::default() });
            d.backend.submit(Op::Connect { token, fd, addr });
            token
        };
        let stream = TcpStream { rt, token };
        poll_fn(|cx| {
            let mut d = stream.rt.driver.borrow_mut();
            let c = d.conn(stream.token);
            match c.connect {
                Some(0) => Poll::Ready(Ok(())),
                Some(errno) => Poll::Ready(Err(io::Error::from_raw_os_error(errno))),
                None => {
                    register(&mut c.tx_waker, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await?;
        Ok(stream)
    }

    /// Receives the next buffer of data, zero copy. `Ok(None)` once the peer has
    /// closed its side (EOF) and everything before it was received; a reset is an
    /// `Err` with kind `ConnectionReset`.
    pub async fn recv(&self) -> io::Result<Option<RxBuf>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next received buffer (see [`recv`](Self::recv)).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RxBuf>>> {
        let mut d = self.rt.driver.borrow_mut();
        let pool = d.pool.clone();
        let c = d.conn(self.token);
        if let Some(buf) = c.rx.pop(&pool) {
            d.maybe_resume(self.token);
            return Poll::Ready(Ok(Some(buf)));
        }
        if let Some(errno) = c.rx_error {
            return Poll::Ready(Err(io::Error::from_raw_os_error(errno)));
        }
        if c.eof {
            return Poll::Ready(Ok(None));
        }
        register(&mut c.rx_waker, cx.waker());
        Poll::Pending
    }

    /// Puts a partly consumed buffer back at the front of the receive queue, to be
    /// returned by the next `recv`/`read`.
    pub fn unrecv(&self, buf: RxBuf) {
        if !buf.is_empty() {
            self.rt.driver.borrow_mut().conn(self.token).rx.push_front(buf);
        }
    }

    /// A pool buffer to fill and [`send`](Self::send); `None` when the pool is
    /// exhausted.
    pub fn tx_buf(&self) -> Option<TxBuf> {
        self.rt.driver.borrow().pool.tx_buf()
    }

    /// Queues a filled pool buffer for sending (zero copy). Waits only when more
    /// than 256 KiB are already queued on this connection (backpressure).
    pub async fn send(&self, buf: TxBuf) -> io::Result<()> {
        self.send_data(SendData::Pool(buf)).await
    }

    /// Queues any [`SendData`] for sending; see [`send`](Self::send).
    pub async fn send_data(&self, data: SendData) -> io::Result<()> {
        self.queue_send(data)?;
        poll_fn(|cx| self.poll_send_ready(cx)).await
    }

    /// Queues data for sending without waiting, however much is queued already.
    /// For handlers that bound their own output (one response per request).
    pub fn queue_send(&self, data: SendData) -> io::Result<()> {
        let mut d = self.rt.driver.borrow_mut();
        let c = d.conn(self.token);
        if let Some(errno) = c.tx_error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if data.is_empty() {
            return Ok(());
        }
        c.tx_queued += data.len() as u64;
        d.backend.submit(Op::Send { token: self.token, data });
        Ok(())
    }

    /// Ready when at most 256 KiB are queued (or an error is pending).
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_queued_at_most(cx, TX_HIGH_WATER)
    }

    fn poll_queued_at_most(&self, cx: &mut Context<'_>, limit: u64) -> Poll<io::Result<()>> {
        let mut d = self.rt.driver.borrow_mut();
        let c = d.conn(self.token);
        if let Some(errno) = c.tx_error {
            return Poll::Ready(Err(io::Error::from_raw_os_error(errno)));
        }
        if c.tx_queued <= limit {
            return Poll::Ready(Ok(()));
        }
        register(&mut c.tx_waker, cx.waker());
        Poll::Pending
    }

    /// Waits until everything queued has been handed to the kernel.
    pub async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Polls [`flush`](Self::flush).
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_queued_at_most(cx, 0)
    }

    /// Reads into `buf` (copying out of the lent buffers). `Ok(0)` at EOF.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Polls [`read`](Self::read).
    pub fn poll_read(&self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut rx = match self.poll_recv(cx) {
            Poll::Ready(Ok(Some(rx))) => rx,
            Poll::Ready(Ok(None)) => return Poll::Ready(Ok(0)),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = rx.len().min(out.len());
        out[..n].copy_from_slice(&rx[..n]);
        rx.advance(n);
        self.unrecv(rx);
        Poll::Ready(Ok(n))
    }

    /// Copies `data` into pool buffers and queues them; waits only for
    /// backpressure. Like every send, it returns once the data is queued: use
    /// [`flush`](Self::flush) to wait until the kernel has it.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.queue_copy(data)?;
            data = &data[n..];
            poll_fn(|cx| self.poll_send_ready(cx)).await?;
        }
        Ok(())
    }

    /// Copies up to one pool buffer's worth of `data` and queues it; returns how
    /// many bytes were taken. Falls back to an owned copy if the pool is exhausted.
    pub fn queue_copy(&self, data: &[u8]) -> io::Result<usize> {
        match self.tx_buf() {
            Some(mut tx) => {
                let n = tx.put(data);
                self.queue_send(SendData::Pool(tx))?;
                Ok(n)
            }
            None => {
                let n = data.len().min(64 * 1024);
                self.queue_send(SendData::Owned(data[..n].to_vec()))?;
                Ok(n)
            }
        }
    }

    /// Shuts down the writing half after everything queued is sent (the peer sees
    /// EOF), and waits until then.
    pub async fn shutdown(&self) -> io::Result<()> {
        self.rt.driver.borrow_mut().backend.submit(Op::Shutdown { token: self.token, how: Shutdown::Write });
        self.flush().await
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket::with_sock(self.fd(), |s| s.peer_addr())?
            .as_socket()
            .ok_or_else(|| io::Error::other("peer has no IP address"))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket::with_sock(self.fd(), |s| s.local_addr())?
            .as_socket()
            .ok_or_else(|| io::Error::other("socket has no IP address"))
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        socket::with_sock(self.fd(), |s| s.set_nodelay(on))
    }

    /// The token naming this connection to the backend (for diagnostics).
    pub fn token(&self) -> Token {
        self.token
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.rt.driver.borrow_mut().conn(self.token).fd
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if let Ok(mut d) = self.rt.driver.try_borrow_mut() {
            d.close(self.token);
        }
    }
}

/// The write side's shutdown state, for the `AsyncWrite` adapters.
impl TcpStream {
    /// Polls a write-half shutdown: queues it once (after everything queued before),
    /// then waits until the queue has drained.
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut d = self.rt.driver.borrow_mut();
            let c = d.conn(self.token);
            if !c.shutdown_queued {
                c.shutdown_queued = true;
                d.backend.submit(Op::Shutdown { token: self.token, how: Shutdown::Write });
            }
        }
        self.poll_flush(cx)
    }

    /// Polls a copying write of `data` (see [`write_all`](Self::write_all)): ready
    /// with the number of bytes queued once the connection is below its high-water
    /// mark. An error of an earlier send surfaces here.
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.poll_send_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(self.queue_copy(data)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
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
