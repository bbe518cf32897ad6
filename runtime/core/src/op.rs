//! What the runtime asks of a backend ([`Op`]) and what comes back ([`Completion`]).
//!
//! Ops are queued during the run phase of a tick and handed to the kernel together
//! at the next `poll`; completions are collected by that same `poll`. Connections
//! and listeners are named by a [`Token`] the runtime chooses (a slab key). Once a
//! `Close` for a token has been submitted the backend produces no further completion
//! for it, so the runtime may reuse the token for the next connection at once.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::buf::{RxBuf, TxBuf};

/// Names a connection or a listener between the runtime and its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u32);

/// Bytes to send: a pool buffer (zero copy on every backend) or owned bytes
/// (sent in place on epoll and io_uring, copied into port buffers on PASTE).
#[derive(Debug)]
pub enum SendData {
    /// A filled pool buffer.
    Pool(TxBuf),
    /// Owned bytes.
    Owned(Vec<u8>),
    /// Bytes that live forever (a canned response).
    Static(&'static [u8]),
}

impl SendData {
    /// Number of bytes.
    pub fn len(&self) -> usize {
        match self {
            SendData::Pool(b) => b.len(),
            SendData::Owned(v) => v.len(),
            SendData::Static(s) => s.len(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SendData::Pool(b) => b,
            SendData::Owned(v) => v,
            SendData::Static(s) => s,
        }
    }
}

/// Bytes at the start of a pool buffer that a backend may use for a received
/// datagram's metadata (io_uring writes its `io_uring_recvmsg_out` header and the
/// source address there). So on every backend a datagram of at most
/// `buf_size - DGRAM_HEADROOM` bytes (1984 with 2048-byte buffers, more than a
/// 1500-byte MTU's 1472) arrives whole; a longer one arrives truncated to that
/// length and flagged (`truncated` in [`Completion::RecvFrom`]).
pub const DGRAM_HEADROOM: u32 = 64;

/// The longest datagram received whole into buffers of `buf_size` bytes (see
/// [`DGRAM_HEADROOM`]).
pub const fn max_datagram(buf_size: u32) -> u32 {
    buf_size.saturating_sub(DGRAM_HEADROOM)
}

/// Which half of a connection to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// No more sends (a FIN after the queued data).
    Write,
    /// No more receives.
    Read,
    /// Both.
    Both,
}

/// An operation queued for the backend. No system call happens when it is
/// submitted; the backend performs it in its next `poll`.
#[derive(Debug)]
pub enum Op {
    /// Start accepting on a bound, listening, nonblocking socket. The backend owns
    /// the fd from now on and closes it on `Close`.
    Listen {
        /// The listener's token.
        token: Token,
        /// The listening socket.
        fd: RawFd,
    },
    /// Start receiving on a connected socket (from `Accepted`). The backend owns the
    /// fd from now on.
    Register {
        /// The connection's token.
        token: Token,
        /// The socket.
        fd: RawFd,
    },
    /// Connect a nonblocking socket; on success the backend starts receiving on it
    /// as after `Register`. Completes with `Connected`.
    Connect {
        /// The connection's token.
        token: Token,
        /// A fresh nonblocking socket of the right family.
        fd: RawFd,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Stop delivering received data to this connection (its queue is full).
    /// Data stays in the kernel; nothing is dropped.
    PauseRecv(Token),
    /// Deliver again after `PauseRecv`.
    ResumeRecv(Token),
    /// Queue bytes to send, after anything queued before. Completes with `Sent`
    /// (or `SendError`) once the kernel has taken the bytes.
    Send {
        /// The connection's token.
        token: Token,
        /// What to send.
        data: SendData,
    },
    /// Shut down a half of the connection, after the queued sends for `Write`.
    Shutdown {
        /// The connection's token.
        token: Token,
        /// Which half.
        how: Shutdown,
    },
    /// Close a connection, listener or datagram socket and forget its token. Queued
    /// sends are flushed first where the kernel accepts them without waiting.
    Close(Token),
    /// Start receiving datagrams on a bound, nonblocking datagram (UDP) socket. The
    /// backend owns the fd from now on and closes it on `Close`. Each datagram
    /// completes as `RecvFrom`; `PauseRecv`/`ResumeRecv` apply (while paused the
    /// kernel keeps what its receive buffer holds and drops the rest, as UDP does).
    /// A backend without datagram support (PASTE is TCP only) answers with
    /// `RecvError { errno: EPROTONOSUPPORT }` and closes the fd.
    BindDgram {
        /// The socket's token.
        token: Token,
        /// The bound datagram socket.
        fd: RawFd,
    },
    /// Queue one datagram to `addr` on a `BindDgram` socket, after those queued before.
    /// Completes with one `SentTo` once the kernel took it or refused it.
    SendTo {
        /// The socket's token.
        token: Token,
        /// The datagram (one datagram, however long).
        data: SendData,
        /// Where to send it.
        addr: SocketAddr,
    },
}

/// What a backend's `poll` reports.
#[derive(Debug)]
pub enum Completion {
    /// A listener accepted a connection (a nonblocking, close-on-exec socket that
    /// the runtime now owns until it submits `Register` or closes it).
    Accepted {
        /// The listener.
        listener: Token,
        /// The accepted socket.
        fd: RawFd,
    },
    /// Accepting failed with this errno (e.g. `EMFILE`); the backend retries by
    /// itself later without spinning.
    AcceptError {
        /// The listener.
        listener: Token,
        /// The errno.
        errno: i32,
    },
    /// A `Connect` finished: `Ok` or the errno.
    Connected {
        /// The connection.
        token: Token,
        /// 0 on success, else the errno.
        errno: i32,
    },
    /// Bytes arrived, in a pool buffer lent to the application.
    Recv {
        /// The connection.
        token: Token,
        /// The data.
        buf: RxBuf,
    },
    /// The peer closed its sending half (FIN); no more data will come.
    Eof(Token),
    /// Receiving failed (e.g. `ECONNRESET`); no more data will come.
    RecvError {
        /// The connection.
        token: Token,
        /// The errno.
        errno: i32,
    },
    /// The kernel took `bytes` more queued bytes.
    Sent {
        /// The connection.
        token: Token,
        /// How many bytes.
        bytes: u32,
    },
    /// Sending failed (e.g. `EPIPE`); queued sends were dropped.
    SendError {
        /// The connection.
        token: Token,
        /// The errno.
        errno: i32,
    },
    /// A datagram arrived on a `BindDgram` socket, in a pool buffer lent to the
    /// application (zero copy), with its source address.
    RecvFrom {
        /// The socket.
        token: Token,
        /// The payload (possibly empty: an empty datagram is not an EOF).
        buf: RxBuf,
        /// Who sent it.
        from: SocketAddr,
        /// The datagram was longer than [`max_datagram`] of the buffer size: `buf`
        /// holds its first bytes, the rest was discarded by the kernel.
        truncated: bool,
    },
    /// One datagram queued with `SendTo` left the queue: sent (`errno == 0`) or
    /// refused by the kernel (e.g. `EMSGSIZE`, `ECONNREFUSED`); a failure concerns
    /// that datagram only, the socket stays usable. Exactly one per `SendTo`, in the
    /// order the kernel finished them.
    SentTo {
        /// The socket.
        token: Token,
        /// The datagram's length.
        bytes: u32,
        /// 0 on success, else the errno.
        errno: i32,
    },
}
