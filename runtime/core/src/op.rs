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
    /// Close a connection or listener and forget its token. Queued sends are
    /// flushed first where the kernel accepts them without waiting.
    Close(Token),
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
}
