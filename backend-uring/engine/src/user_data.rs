//! The `user_data` of an SQE: which slot (or fd) it concerns, what it was for, and
//! the generation of that slot when it was submitted — so a completion that arrives
//! after its slot was freed, or freed and reused, is recognised as stale (the
//! socket engine moves a slot's generation on both when it frees it and when it
//! opens it).
//!
//! Layout: bits 0–31 the id, 32–39 the [`OpKind`], 40–63 the generation
//! ([`GEN_MASK`] bits). Shared by the io_uring backend and PASTE's emulated provider.

/// The generation bits kept in `user_data`; generations wrap within them.
pub const GEN_MASK: u32 = 0x00FF_FFFF;

/// What an SQE was for (bits 32-39 of its `user_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// A multishot accept.
    Accept = 1,
    /// A stream's multishot receive.
    Recv = 2,
    /// A stream send.
    Send = 3,
    /// A shutdown.
    Shutdown = 4,
    /// A connect.
    Connect = 5,
    /// The remote waker's eventfd read.
    Wake = 6,
    /// Cancels and closes: their result is not needed.
    Ignore = 7,
    /// A datagram socket's multishot `RECVMSG`.
    RecvFrom = 8,
    /// One datagram's `SENDMSG` (the id indexes the backend's datagram send state).
    SendTo = 9,
    /// The tick's wake-up timer (the id says which timeout of an arming, or an
    /// update; see [`wake_timer`](crate::wake_timer)).
    Timer = 10,
}

impl OpKind {
    /// The kind stored in bits 32–39, if valid.
    pub fn from_u8(v: u8) -> Option<OpKind> {
        Some(match v {
            1 => OpKind::Accept,
            2 => OpKind::Recv,
            3 => OpKind::Send,
            4 => OpKind::Shutdown,
            5 => OpKind::Connect,
            6 => OpKind::Wake,
            7 => OpKind::Ignore,
            8 => OpKind::RecvFrom,
            9 => OpKind::SendTo,
            10 => OpKind::Timer,
            _ => return None,
        })
    }
}

/// Packs `id`, `kind` and `gen` (masked to [`GEN_MASK`]) into a `user_data`.
#[inline]
pub fn encode(id: u32, kind: OpKind, gen: u32) -> u64 {
    id as u64 | (kind as u64) << 32 | ((gen & GEN_MASK) as u64) << 40
}

/// Unpacks a `user_data`: (id, kind if valid, generation).
#[inline]
pub fn decode(ud: u64) -> (u32, Option<OpKind>, u32) {
    (ud as u32, OpKind::from_u8((ud >> 32) as u8), (ud >> 40) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let ud = encode(123_456, OpKind::Send, 0xAB_CDEF);
        assert_eq!(decode(ud), (123_456, Some(OpKind::Send), 0xAB_CDEF));
        let ud = encode(u32::MAX, OpKind::Ignore, GEN_MASK + 5);
        assert_eq!(decode(ud), (u32::MAX, Some(OpKind::Ignore), 4));
        assert_eq!(decode(0).1, None);
    }
}
