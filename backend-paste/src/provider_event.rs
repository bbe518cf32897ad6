//! [`Event`]: what a port provider (emulated or kernel) reports from its sync, by fd.
//!
//! The vocabulary between the providers and [`PasteBackend`](crate::PasteBackend),
//! which maps each fd to its record's token and applies the event there. It has a
//! module of its own so that the providers and the backend both depend on it, and
//! neither provider on the backend.

use std::os::fd::RawFd;

/// What a provider reports from its sync, by fd (the backend maps fds to tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A listener accepted `fd`.
    Accepted {
        /// The listening socket.
        listener: RawFd,
        /// The new socket.
        fd: RawFd,
    },
    /// Accepting on `listener` failed (reported once per episode; retried later).
    AcceptError {
        /// The listening socket.
        listener: RawFd,
        /// The errno.
        errno: i32,
    },
    /// A connect finished (0 = ok); on success the socket is registered.
    Connected {
        /// The socket.
        fd: RawFd,
        /// 0 or the errno.
        errno: i32,
    },
    /// The socket failed (a reset): no slot comes for it, the socket said so.
    RecvError {
        /// The socket.
        fd: RawFd,
        /// The errno (`ECONNRESET`, ...).
        errno: i32,
    },
    /// Sending on the socket failed; what was queued is gone.
    SendError {
        /// The socket.
        fd: RawFd,
        /// The errno.
        errno: i32,
    },
    /// The provider closed `fd`: its number may be reused from now on.
    Closed {
        /// The closed fd.
        fd: RawFd,
    },
    /// `fd`'s socket has send space (seen after the sync's txsync) and the ring driver
    /// wanted to know ([`RingDriver::tx_wants_space`](crate::RingDriver::tx_wants_space),
    /// [`RingDriver::tx_low_credit`](crate::RingDriver::tx_low_credit)).
    Writable {
        /// The socket.
        fd: RawFd,
        /// The exact free send space, when the provider knows it (emulated port);
        /// `None`: `POLLOUT` (at least a third of the send buffer).
        free: Option<u64>,
    },
}
