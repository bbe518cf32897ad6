//! [`UdpSocket`]: datagrams through the backend, on epoll and io_uring.
//!
//! Owns one datagram socket's token. Received datagrams arrive in pool buffers lent
//! as [`RxBuf`]s with their source address (zero copy); datagrams to send are queued
//! (a pool buffer, or bytes copied into one) and leave at the next tick with
//! everything else. It never makes a data-path system call: the socket is created
//! and bound here (control path), then handed to the backend with `BindDgram`.
//!
//! Backpressure: at most 64 received datagrams wait per socket before the backend
//! stops receiving for it (the kernel's socket buffer then fills and drops, as UDP
//! does — nothing is dropped in paste-rt itself); `send_to` waits while more than
//! 128 datagrams are queued. PASTE v4 carries TCP only: on a PASTE runtime
//! [`UdpSocket::bind`] fails with `ErrorKind::Unsupported`.

use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Context, Poll};

use paste_rt_core::{max_datagram, RxBuf, SendData, Token, TxBuf, DGRAM_TX_HIGH_WATER};

use crate::context;
use crate::net::socket;
use crate::runtime::Inner;

/// A received datagram did not fit a pool buffer: the kernel truncated it, and it
/// was discarded rather than handed out incomplete. Carried inside an
/// [`io::Error`] of kind `InvalidData` (see [`UdpSocket::recv_from`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "a datagram from {from} was longer than the {max} bytes a pool buffer receives whole; \
     it was truncated by the kernel and discarded"
)]
pub struct DatagramTruncated {
    /// Who sent it.
    pub from: SocketAddr,
    /// The longest datagram received whole ([`max_datagram`] of the buffer size).
    pub max: usize,
}

/// A UDP socket served by the runtime's backend.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use paste_rt::net::UdpSocket;
/// let socket = UdpSocket::bind("127.0.0.1:0").await?;
/// loop {
///     let (buf, from) = socket.recv_from().await?; // zero copy
///     socket.send_to(&buf, from).await?; // echo (copied into a pool buffer)
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    rt: Rc<Inner>,
    token: Token,
    local: SocketAddr,
}

impl UdpSocket {
    /// Binds a UDP socket to `addr` (port 0 picks one) and starts receiving.
    /// On a PASTE runtime: `ErrorKind::Unsupported` ("UDP is not supported by PASTE
    /// (TCP only, PASTE v4)").
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let rt = context::current();
        socket::require(&rt, "UDP", |c| c.datagrams, "PASTE v4 carries TCP only")?;
        let addr = socket::resolve(addr)?;
        let (fd, local) = socket::udp_bind(addr)?;
        let token = rt.driver.borrow_mut().bind_dgram(fd);
        Ok(UdpSocket { rt, token, local })
    }

    /// The bound address (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The longest datagram this socket receives whole (1984 bytes with the default
    /// 2048-byte pool buffers).
    pub fn max_datagram(&self) -> usize {
        max_datagram(self.rt.driver.borrow().pool().buf_size()) as usize
    }

    /// Receives the next datagram, zero copy, with its source address. A datagram
    /// longer than [`max_datagram`](Self::max_datagram) is discarded and reported
    /// as an error of kind `InvalidData` carrying [`DatagramTruncated`]; the socket
    /// stays usable and the next call returns the next datagram.
    pub async fn recv_from(&self) -> io::Result<(RxBuf, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from(cx)).await
    }

    /// Polls [`recv_from`](Self::recv_from).
    pub fn poll_recv_from(&self, cx: &mut Context<'_>) -> Poll<io::Result<(RxBuf, SocketAddr)>> {
        let mut d = self.rt.driver.borrow_mut();
        let max = max_datagram(d.pool().buf_size()) as usize;
        let (dgram, resume) = match d.io.poll_recv_from(self.token, cx) {
            Poll::Ready(Ok(x)) => x,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if resume {
            d.resume_recv(self.token);
        }
        if dgram.truncated {
            let err = DatagramTruncated { from: dgram.from, max };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
        }
        Poll::Ready(Ok((dgram.buf, dgram.from)))
    }

    /// Receives the next datagram into `buf` (a copy), like std's `recv_from`: the
    /// part that does not fit `buf` is discarded. Errors as for
    /// [`recv_from`](Self::recv_from).
    pub async fn recv_from_into(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (data, from) = self.recv_from().await?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok((n, from))
    }

    /// A pool buffer to fill and send with [`send_buf_to`](Self::send_buf_to);
    /// `None` when the pool is exhausted.
    pub fn tx_buf(&self) -> Option<TxBuf> {
        self.rt.driver.borrow().pool().tx_buf()
    }

    /// Queues `data` as one datagram to `target` (copied into a pool buffer, or into
    /// an owned buffer when longer than one); returns its length. Waits only while
    /// more than 128 datagrams are queued. Like every send it returns once queued: a
    /// datagram the kernel refuses (e.g. `EMSGSIZE`) is reported by a later call or
    /// by [`flush`](Self::flush).
    pub async fn send_to(&self, data: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let target = socket::resolve(target)?;
        let copy = match self.tx_buf() {
            Some(mut tx) if tx.capacity() >= data.len() => {
                tx.put(data);
                SendData::Pool(tx)
            }
            _ => SendData::Owned(data.to_vec()),
        };
        self.send_data_to(copy, target).await?;
        Ok(data.len())
    }

    /// Queues a filled pool buffer as one datagram to `target` (zero copy); see
    /// [`send_to`](Self::send_to).
    pub async fn send_buf_to(&self, buf: TxBuf, target: SocketAddr) -> io::Result<()> {
        self.send_data_to(SendData::Pool(buf), target).await
    }

    /// Queues any [`SendData`] as one datagram to `target`; see
    /// [`send_to`](Self::send_to).
    pub async fn send_data_to(&self, data: SendData, target: SocketAddr) -> io::Result<()> {
        self.queue_send_to(data, target)?;
        poll_fn(|cx| self.poll_queued_at_most(cx, DGRAM_TX_HIGH_WATER)).await
    }

    /// Queues one datagram without waiting, however many are queued already.
    /// Returns the error of an earlier refused datagram, if one is pending (this
    /// datagram is then not queued).
    pub fn queue_send_to(&self, data: SendData, target: SocketAddr) -> io::Result<()> {
        self.rt.driver.borrow_mut().queue_datagram(self.token, data, target)
    }

    /// Waits until every queued datagram has been handed to the kernel; returns the
    /// error of a refused one, once.
    pub async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_queued_at_most(cx, 0)).await
    }

    fn poll_queued_at_most(&self, cx: &mut Context<'_>, limit: u32) -> Poll<io::Result<()>> {
        self.rt.driver.borrow_mut().io.poll_datagrams_at_most(self.token, limit, cx)
    }

    /// Sets `SO_RCVBUF`: how much the kernel keeps while receiving is paused.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        let fd = self.rt.driver.borrow().io.fd(self.token)?;
        socket::with_sock(fd, |s| s.set_recv_buffer_size(bytes))
    }

    /// The token naming this socket to the backend (for diagnostics).
    pub fn token(&self) -> Token {
        self.token
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if let Ok(mut d) = self.rt.driver.try_borrow_mut() {
            d.close(self.token);
        }
    }
}
