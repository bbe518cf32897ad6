//! The TX side's records: each TX ring's shadow of who filled which slot
//! ([`TxRing`], [`TxShadow`]) and each fd's entry ([`FdTx`]: its queue, in-flight
//! slots and send credit). The fill (`tx`) and the placing of one slot (`tx_slot`)
//! both work on them.

use std::num::NonZeroU32;

use super::pending::PendingSends;
use crate::sys::addr::RingPtr;

/// `v` held to the `i32` range of an fd's stored credit (see `FdTx::credit`).
#[inline]
pub(super) fn narrow_credit(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TxShadow {
    pub(super) fd: i32,
    pub(super) gen: u16,
    pub(super) bytes: u32,
}

pub(super) struct TxRing {
    pub(super) ring: RingPtr,
    /// First slot handed to the kernel and not yet seen taken back.
    pub(super) pending_start: u32,
    /// The kernel's `tail` when completions were last collected.
    pub(super) seen_tail: u32,
    /// The first slot left in the ring after the last sync (`u32::MAX`: none): a
    /// slot left by two syncs in a row is refused ([`RingDriver::tx_wants_space`](crate::ring::RingDriver::tx_wants_space)).
    pub(super) left_after_sync: u32,
    /// Per slot: who filled it, so taken slots can be reported per fd.
    pub(super) shadow: Box<[TxShadow]>,
}

/// One fd's entry: every fd the driver ever sent on has one, busy or idle, so it is
/// kept at 32 bytes (size asserted in the tests): the queue is boxed on first use, the
/// bytes taken and not yet reported wait in `sent_fds`, and the slot-bounded counts
/// are narrow ([`RingDriver::new`](crate::ring::RingDriver::new) checks the bounds).
#[derive(Default)]
pub(super) struct FdTx {
    /// Data waiting for slots (one word until the fd first queues).
    pub(super) queue: PendingSends,
    /// Lower bound of the socket's free send space (see the module docs), held to
    /// the `i32` range ([`narrow_credit`]): beyond it the answer is the same (no
    /// credit, or more than any socket buffer).
    pub(super) credit: i32,
    /// Charge of this fd's slots in the ring not yet taken by the kernel: at most a
    /// ring's slots of at most `u16::MAX + tx_slot_overhead` each, which `new` keeps
    /// within `u32`.
    pub(super) untaken_charge: u32,
    /// The socket's send buffer (`SO_SNDBUF` at registration); `None`: no bound.
    /// (`NonZero`: one word with the option; a send buffer is never empty.)
    pub(super) budget: Option<NonZeroU32>,
    /// This fd's slots in the ring not taken yet (fewer than a ring's slots,
    /// [`pst::MAX_SLOTS`](crate::sys::abi::pst::MAX_SLOTS) at most).
    pub(super) inflight: u16,
    /// Bumped by `tx_drop_fd`, so slots of a previous connection on the same fd number
    /// are not reported to the new one. (A number is reused only once its slots left
    /// the ring, so wrapping around is harmless.)
    pub(super) gen: u16,
    /// 1 + this fd's entry in `sent_fds` (bytes taken, not reported yet); 0: none.
    /// (At most one entry per fd, and fds are at most [`pst::MAX_FD`](crate::sys::abi::pst::MAX_FD).)
    pub(super) sent_at: u16,
    pub(super) active: bool,
    /// Listed in `space_waiters` (out of credit with data queued).
    pub(super) waiting: bool,
    /// Listed in `stuck` (slots left untaken by the last sync).
    pub(super) stuck: bool,
    /// Listed in `low_credit` (credit below half the budget).
    pub(super) low: bool,
}
