//! [`IoRecord`]: the state of one connection, listener or datagram socket, shared by
//! the backend and the runtime.
//!
//! A record is found by its [`Token`], the index the kernel hands back (io_uring's
//! `user_data`, a PASTE slot's fd mapped once), so completing an operation is one
//! index into the [`IoTable`](crate::IoTable) and a method call here: append a
//! buffer, return send credit, take and wake the waiter. The state sits behind
//! methods; the invariants kept here are:
//!
//! * the receive queue holds buffers delivered and not yet taken, in order, and
//!   receiving is marked paused from the moment it reaches [`RX_PAUSE_AT`] until the
//!   application has taken it down to [`RX_RESUME_AT`];
//! * the send queue holds bytes accepted and not yet taken by the kernel; the backend
//!   is "engaged" (it holds the connection on its send path) from the first queued
//!   item until the queue and any queued shutdown are done, so the runtime tells it
//!   about new data only when it is not engaged;
//! * a waker is woken once per registration (`wake_by_ref`, no waker clone or drop
//!   per request);
//! * once the application's handle is gone, received data is discarded, and the
//!   record closes as soon as what was queued before has been sent.
//!
//! It never makes a system call and never talks to a backend: the table's methods
//! return what the caller must do next.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::buf::RxBuf;
use crate::queue::RxQueue;
use crate::send::{SendData, SendQueue};

/// Names a connection, listener or datagram socket between the runtime and its
/// backend: the index of its [`IoRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u32);

impl Token {
    /// The index, as a `usize`.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Buffers a connection may have waiting before its receiving pauses.
pub const RX_PAUSE_AT: usize = 64;
/// Receiving resumes when the queue is back at or below this.
pub const RX_RESUME_AT: usize = 16;
/// Bytes queued for sending beyond which a sender waits.
pub const TX_HIGH_WATER: u64 = 256 * 1024;
/// Datagrams queued for sending beyond which `send_to` waits.
pub const DGRAM_TX_HIGH_WATER: u32 = 128;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Unused.
    Free,
    /// A stream connection (TCP or Unix).
    Stream,
    /// A listening socket.
    Listener,
    /// A datagram (UDP) socket.
    Dgram,
}

pub(crate) mod flag {
    /// A task waits for received data (its waker is in `rx_waker`).
    pub const RX_WANT: u16 = 1 << 0;
    /// A task waits for send room (its waker is in `tx_waker`).
    pub const TX_WANT: u16 = 1 << 1;
    /// The peer sent FIN.
    pub const EOF: u16 = 1 << 2;
    /// Receiving is paused (the queue is long).
    pub const PAUSED: u16 = 1 << 3;
    /// The handle is gone; close once what was queued is sent.
    pub const LINGER: u16 = 1 << 4;
    /// The backend was told to close; the token waits for its release.
    pub const CLOSED: u16 = 1 << 5;
    /// Listed in its batch group's ready list.
    pub const IN_READY: u16 = 1 << 6;
    /// Its end (EOF or error) was reported to the batch handler.
    pub const END_REPORTED: u16 = 1 << 7;
    /// A connect is in progress.
    pub const CONNECTING: u16 = 1 << 8;
    /// The backend holds this connection on its send path.
    pub const SEND_ENGAGED: u16 = 1 << 9;
    /// The receive deadline passed and was not reported yet.
    pub const TIMED_OUT: u16 = 1 << 10;
    /// A write shutdown was queued (once is enough).
    pub const SHUT_QUEUED: u16 = 1 << 11;
}

/// A receive deadline in one word (an `Option<Instant>` takes two, in the record of
/// every connection): nanoseconds since a process-wide epoch, plus one; 0 is none.
/// Instants convert exactly, so comparisons agree with `Instant`'s; an instant
/// before the epoch (a day before the first conversion) becomes the earliest
/// deadline, long passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deadline(u64);

impl Deadline {
    /// No deadline.
    pub(crate) const NONE: Deadline = Deadline(0);

    /// `instant` as a deadline (`None`: no deadline).
    pub(crate) fn at(instant: Option<Instant>) -> Deadline {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let Some(instant) = instant else { return Deadline::NONE };
        let epoch = *EPOCH.get_or_init(|| {
            let now = Instant::now();
            now.checked_sub(Duration::from_secs(86_400))
                .or_else(|| now.checked_sub(Duration::from_secs(1)))
                .unwrap_or(now)
        });
        let nanos = instant.saturating_duration_since(epoch).as_nanos();
        Deadline(u64::try_from(nanos).unwrap_or(u64::MAX - 1).min(u64::MAX - 1) + 1)
    }

    /// Whether a deadline is set.
    #[inline]
    pub(crate) fn is_some(self) -> bool {
        self.0 != 0
    }

    /// Whether this deadline is set and passed by `now` (a set deadline).
    #[inline]
    pub(crate) fn passed_by(self, now: Deadline) -> bool {
        self.0 != 0 && self.0 <= now.0
    }

    /// Takes the deadline, leaving none.
    #[inline]
    pub(crate) fn take(&mut self) -> Deadline {
        std::mem::take(self)
    }
}

/// No batch group.
pub(crate) const NO_GROUP: u32 = u32::MAX;

/// One received datagram, waiting for `recv_from`.
#[derive(Debug)]
pub struct Datagram {
    /// The payload, zero copy.
    pub buf: RxBuf,
    /// Who sent it.
    pub from: SocketAddr,
    /// It was longer than the buffer and arrived cut.
    pub truncated: bool,
}

/// A listener's own state.
#[derive(Debug, Default)]
pub(crate) struct ListenerIo {
    /// Accepted connections (registered with the backend) not yet taken.
    pub(crate) backlog: VecDeque<Token>,
    /// The last accept error, reported once.
    pub(crate) error: Option<i32>,
}

/// A datagram socket's own state.
#[derive(Debug, Default)]
pub(crate) struct DgramIo {
    /// Received datagrams, oldest first (reused: no allocation per datagram once it
    /// has grown to what arrives before a pause).
    pub(crate) rx: VecDeque<Datagram>,
    /// Datagrams waiting for the backend, oldest first.
    pub(crate) tx: VecDeque<(SendData, SocketAddr)>,
    /// Datagrams queued or in flight, not yet reported.
    pub(crate) tx_pending: u32,
    /// The errno of a datagram the kernel refused, reported once.
    pub(crate) tx_error: Option<i32>,
}

#[derive(Debug)]
pub(crate) enum RecordExt {
    Listener(ListenerIo),
    Dgram(DgramIo),
}

/// The state of one connection, listener or datagram socket; see the module docs.
#[derive(Debug)]
pub struct IoRecord {
    pub(crate) kind: RecordKind,
    pub(crate) flags: u16,
    pub(crate) fd: RawFd,
    pub(crate) group: u32,
    /// Receiving failed with this errno (0: no).
    pub(crate) rx_errno: i32,
    /// Sending failed (or the connect did) with this errno (0: no).
    pub(crate) tx_errno: i32,
    pub(crate) rx: RxQueue,
    pub(crate) rx_waker: Option<Waker>,
    pub(crate) tx_waker: Option<Waker>,
    pub(crate) tx: SendQueue,
    /// Bytes a backend took out of the queue (PASTE: into its TX ring) and has not
    /// yet reported taken by the kernel.
    pub(crate) tx_taken: u64,
    pub(crate) deadline: Deadline,
    pub(crate) ext: Option<Box<RecordExt>>,
}

impl IoRecord {
    pub(crate) const fn free() -> IoRecord {
        IoRecord {
            kind: RecordKind::Free,
            flags: 0,
            fd: -1,
            group: NO_GROUP,
            rx_errno: 0,
            tx_errno: 0,
            rx: RxQueue::new(),
            rx_waker: None,
            tx_waker: None,
            tx: SendQueue::new(),
            tx_taken: 0,
            deadline: Deadline::NONE,
            ext: None,
        }
    }

    /// What this record is.
    #[inline]
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The socket (owned by the backend while the record is live).
    #[inline]
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the application still holds this record (no close began).
    #[inline]
    pub fn is_open(&self) -> bool {
        self.kind != RecordKind::Free && self.flags & (flag::LINGER | flag::CLOSED) == 0
    }

    /// Whether the backend was told to close it (it waits for its release).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.flags & flag::CLOSED != 0
    }

    /// Whether receiving is paused.
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.flags & flag::PAUSED != 0
    }

    /// Whether receiving ended (EOF or an error).
    #[inline]
    pub fn rx_ended(&self) -> bool {
        self.flags & flag::EOF != 0 || self.rx_errno != 0
    }

    /// Whether a connect is in progress.
    #[inline]
    pub fn is_connecting(&self) -> bool {
        self.flags & flag::CONNECTING != 0
    }

    /// The send queue (a backend reads its front in place).
    #[inline]
    pub fn send_queue(&self) -> &SendQueue {
        &self.tx
    }

    /// The errno sending failed with, if it did.
    #[inline]
    pub fn tx_error(&self) -> Option<i32> {
        (self.tx_errno != 0).then_some(self.tx_errno)
    }

    /// Bytes queued or taken by the backend, not yet taken by the kernel.
    #[inline]
    pub fn tx_pending(&self) -> u64 {
        self.tx.bytes() + self.tx_taken
    }

    /// Buffers waiting to be taken by the application.
    #[inline]
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    /// Wakes the receive waiter, if one is registered. Returns whether it did.
    #[inline]
    pub(crate) fn wake_rx(&mut self) -> bool {
        if self.flags & flag::RX_WANT == 0 {
            return false;
        }
        self.flags &= !flag::RX_WANT;
        if let Some(w) = &self.rx_waker {
            w.wake_by_ref();
        }
        true
    }

    /// Wakes the send waiter, if one is registered. Returns whether it did.
    #[inline]
    pub(crate) fn wake_tx(&mut self) -> bool {
        if self.flags & flag::TX_WANT == 0 {
            return false;
        }
        self.flags &= !flag::TX_WANT;
        if let Some(w) = &self.tx_waker {
            w.wake_by_ref();
        }
        true
    }

    /// Registers `waker` for received data (no clone when the same task waits again).
    #[inline]
    pub(crate) fn want_rx(&mut self, waker: &Waker) {
        register(&mut self.rx_waker, waker);
        self.flags |= flag::RX_WANT;
    }

    /// Registers `waker` for send room or a connect.
    #[inline]
    pub(crate) fn want_tx(&mut self, waker: &Waker) {
        register(&mut self.tx_waker, waker);
        self.flags |= flag::TX_WANT;
    }

    pub(crate) fn listener(&mut self) -> Option<&mut ListenerIo> {
        match self.ext.as_deref_mut() {
            Some(RecordExt::Listener(l)) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn dgram(&mut self) -> Option<&mut DgramIo> {
        match self.ext.as_deref_mut() {
            Some(RecordExt::Dgram(d)) => Some(d),
            _ => None,
        }
    }
}

/// Stores `waker` in `slot` unless an equivalent one is already there (no clone,
/// so no reference-count traffic, on the common path).
#[inline(always)]
pub fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_record_stays_small() {
        // One per connection, idle ones included: 216 bytes with the send queue's
        // second-item deque inline and the deadline an `Option<Instant>`.
        let size = std::mem::size_of::<IoRecord>();
        assert!(size <= 184, "IoRecord is {size} bytes (at most 184 expected)");
    }

    #[test]
    fn deadlines_compare_as_their_instants() {
        let now = Instant::now();
        let later = now + Duration::from_millis(1);
        assert!(Deadline::at(Some(now)).passed_by(Deadline::at(Some(now))));
        assert!(Deadline::at(Some(now)).passed_by(Deadline::at(Some(later))));
        assert!(!Deadline::at(Some(later)).passed_by(Deadline::at(Some(now))));
        assert!(!Deadline::at(None).is_some());
        assert!(!Deadline::NONE.passed_by(Deadline::at(Some(later))), "no deadline never passes");
        let mut d = Deadline::at(Some(now));
        assert!(d.take().is_some() && !d.is_some());
    }
}
