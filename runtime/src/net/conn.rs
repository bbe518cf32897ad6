//! [`Connection`]: the stream-socket data path shared by [`TcpStream`] and
//! [`UnixStream`] — zero-copy `recv`/`send`, copying `read`/`write_all`, `flush`,
//! `shutdown`, the receive deadline, and the `poll_*` forms the I/O traits use.
//!
//! Owns one connection's token (its record) and closes it on drop. Everything here
//! reads or queues through the driver's record; it never makes a system call, and
//! it knows nothing of address families: the public stream types add what differs
//! (how they connect, their addresses, socket options).
//!
//! [`TcpStream`]: crate::net::TcpStream
//! [`UnixStream`]: crate::net::UnixStream

use std::future::poll_fn;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Context, Poll};

use paste_rt_core::{RxBuf, SendData, Shutdown, TakenRx, Token, TxBuf, TX_HIGH_WATER};

use crate::runtime::Inner;

/// What one [`TcpStream::poll_recv_each`](crate::net::TcpStream::poll_recv_each)
/// handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvEach {
    handed_out: usize,
    drained: bool,
}

impl RecvEach {
    /// How many buffers `on_buf` was given; `0` means the peer closed (EOF).
    #[inline]
    pub fn handed_out(self) -> usize {
        self.handed_out
    }

    /// Whether the peer closed its side (EOF) and every buffer before it was taken.
    #[inline]
    pub fn is_eof(self) -> bool {
        self.handed_out == 0
    }

    /// Whether every buffer received so far was handed out with the task's waker
    /// already registered for what comes next (data, EOF, an error or the deadline).
    ///
    /// A caller that is done with the batch may then return `Pending` at once and
    /// save the second, waker-registering poll: the backend delivers nothing while a
    /// task runs, and whatever arrives or happens later wakes this task (provided it
    /// does not receive from this stream under another waker first). `false` when
    /// `on_buf` stopped early, or when an EOF, error or timeout waits behind the
    /// data: the next poll reports it.
    #[inline]
    pub fn is_drained(self) -> bool {
        self.drained
    }
}

/// One stream connection served by the runtime's backend.
#[derive(Debug)]
pub(crate) struct Connection {
    rt: Rc<Inner>,
    token: Token,
}

impl Connection {
    pub(crate) fn from_token(rt: Rc<Inner>, token: Token) -> Connection {
        Connection { rt, token }
    }

    /// Hands a connected socket to the backend (which starts receiving on it).
    pub(crate) fn register(rt: Rc<Inner>, fd: RawFd) -> Connection {
        let token = rt.driver.borrow_mut().register(fd);
        Connection { rt, token }
    }

    /// Hands a fresh socket to the backend to connect to `addr`, and waits.
    pub(crate) async fn connect(rt: Rc<Inner>, fd: RawFd, addr: std::net::SocketAddr) -> io::Result<Connection> {
        let token = rt.driver.borrow_mut().connect(fd, addr);
        let conn = Connection { rt, token };
        poll_fn(|cx| conn.rt.driver.borrow_mut().io.poll_connected(conn.token, cx)).await?;
        Ok(conn)
    }

    pub(crate) async fn recv(&self) -> io::Result<Option<RxBuf>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    #[inline]
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RxBuf>>> {
        self.rt.driver.borrow_mut().poll_recv(self.token, cx)
    }

    /// Sets (`Some`) or clears (`None`) the receive deadline; see
    /// [`TcpStream::set_recv_deadline`](crate::net::TcpStream::set_recv_deadline).
    pub(crate) fn set_recv_deadline(&self, deadline: Option<std::time::Instant>) {
        let now = crate::time::coarse_now();
        self.rt.driver.borrow_mut().set_recv_deadline(self.token, deadline, now);
    }

    /// Hands every buffer received so far to `on_buf`, in order, with one look at the
    /// connection (buffers `on_buf` did not take, after it broke, stay first in line).
    /// Ready with what it handed out — nothing at EOF — or the error; pending (waker
    /// registered) when nothing is there.
    #[inline]
    pub(crate) fn poll_recv_each(
        &self,
        cx: &mut Context<'_>,
        mut on_buf: impl FnMut(RxBuf) -> ControlFlow<()>,
    ) -> Poll<io::Result<RecvEach>> {
        let mut driver = self.rt.driver.borrow_mut();
        let TakenRx { mut queue, armed, resumed } = match driver.io.poll_take_rx(self.token, cx) {
            Poll::Ready(Ok(Some(taken))) => taken,
            Poll::Ready(Ok(None)) => return Poll::Ready(Ok(RecvEach { handed_out: 0, drained: false })),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if resumed {
            driver.resume_recv_cold(self.token);
        }
        // The driver is not borrowed while `on_buf` runs (it may send, or take a
        // TxBuf).
        drop(driver);
        let mut handed_out = 0;
        while let Some(buf) = queue.pop(&self.rt.pool) {
            handed_out += 1;
            if on_buf(buf).is_break() {
                break;
            }
        }
        if !queue.is_empty() {
            self.rt.driver.borrow_mut().io.put_back_rx(self.token, queue);
            return Poll::Ready(Ok(RecvEach { handed_out, drained: false }));
        }
        Poll::Ready(Ok(RecvEach { handed_out, drained: armed }))
    }

    pub(crate) fn unrecv(&self, buf: RxBuf) {
        self.rt.driver.borrow_mut().io.unrecv(self.token, buf);
    }

    pub(crate) fn tx_buf(&self) -> Option<TxBuf> {
        self.rt.driver.borrow().pool().tx_buf()
    }

    pub(crate) async fn send_data(&self, data: SendData) -> io::Result<()> {
        self.queue_send(data)?;
        poll_fn(|cx| self.poll_send_ready(cx)).await
    }

    /// Queues `data`; whether the connection still has send room.
    #[inline]
    pub(crate) fn queue_send(&self, data: SendData) -> io::Result<bool> {
        self.rt.driver.borrow_mut().queue_send(self.token, data)
    }

    /// [`queue_send`](Self::queue_send) with more to follow before the next poll.
    #[inline]
    pub(crate) fn queue_send_more(&self, data: SendData) -> io::Result<bool> {
        self.rt.driver.borrow_mut().queue_send_more(self.token, data)
    }

    #[inline]
    pub(crate) fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.rt.driver.borrow_mut().io.poll_queued_at_most(self.token, TX_HIGH_WATER, cx)
    }

    pub(crate) async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Ready once everything queued (and a queued shutdown) was taken by the kernel.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.rt.driver.borrow_mut().io.poll_queued_at_most(self.token, 0, cx)
    }

    /// Bytes queued and not yet taken by the kernel.
    pub(crate) fn queued(&self) -> u64 {
        self.rt.driver.borrow().io.queued(self.token)
    }

    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    pub(crate) fn poll_read(&self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
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

    pub(crate) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.queue_copy(data)?;
            data = &data[n..];
            poll_fn(|cx| self.poll_send_ready(cx)).await?;
        }
        Ok(())
    }

    /// Copies the start of `data` into a pool buffer and queues it. When the rest
    /// does not fit, it is queued with more to follow: the caller writes the rest
    /// next, and on io_uring the pieces then leave in one gathered send rather than
    /// the first alone and the others a tick later.
    pub(crate) fn queue_copy(&self, data: &[u8]) -> io::Result<usize> {
        let (item, n) = match self.tx_buf() {
            Some(mut tx) => {
                let n = tx.put(data);
                (SendData::Pool(tx), n)
            }
            None => {
                let n = data.len().min(64 * 1024);
                (SendData::Owned(data[..n].to_vec()), n)
            }
        };
        if n < data.len() {
            self.queue_send_more(item)?;
        } else {
            self.queue_send(item)?;
        }
        Ok(n)
    }

    pub(crate) async fn shutdown(&self) -> io::Result<()> {
        self.rt.driver.borrow_mut().queue_shutdown(self.token, Shutdown::Write)?;
        self.flush().await
    }

    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut d = self.rt.driver.borrow_mut();
            if !d.io.shutdown_queued(self.token) {
                if let Err(e) = d.queue_shutdown(self.token, Shutdown::Write) {
                    return Poll::Ready(Err(e));
                }
            }
        }
        self.poll_flush(cx)
    }

    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.poll_send_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(self.queue_copy(data)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// The socket (owned by the backend; valid while this connection lives).
    pub(crate) fn fd(&self) -> io::Result<RawFd> {
        self.rt.driver.borrow().io.fd(self.token)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(mut d) = self.rt.driver.try_borrow_mut() {
            d.close(self.token);
        }
    }
}
