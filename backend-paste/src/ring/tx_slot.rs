//! Placing bytes into one TX slot: a lone send copied or swapped straight into the
//! next free slot ([`DirectSlot`]), and the fill's placing of a queue's front
//! ([`place_one`]); both charge the fd and publish the slot the same way.

use std::num::NonZeroU32;

use paste_rt_core::{BufPool, SendData, TxBuf};

use super::tx_state::{narrow_credit, FdTx, TxRing, TxShadow};
use super::DriverConfig;
use crate::sys::abi::{slotflags, NetmapSlot, FIRST_DATA_BUF};
use crate::sys::addr::RingPtr;
use crate::sys::slot;

/// A free TX slot found for a send placed directly ([`RingDriver::direct_slot`](crate::ring::RingDriver::direct_slot)(super::RingDriver::direct_slot)), with
/// everything placing into it touches, borrowed once: its ring, the fd's entry, the
/// slot as read, its generic offset and the payload room after it. Only `direct_slot`
/// makes one, once it found the fd within its in-flight bound and, with a budget, its
/// credit positive.
pub(super) struct DirectSlot<'a> {
    pub(super) t: &'a mut TxRing,
    pub(super) f: &'a mut FdTx,
    pub(super) pool: &'a BufPool,
    pub(super) cfg: &'a DriverConfig,
    pub(super) low_credit: &'a mut Vec<i32>,
    pub(super) home: &'a [bool],
    pub(super) index_limit: u32,
    pub(super) fd: i32,
    /// The slot (the ring's `head`).
    pub(super) head: u32,
    /// The ring's slots.
    pub(super) n: u32,
    /// The slot's generic offset.
    pub(super) g: u32,
    /// Payload bytes the slot holds ([`slot_room`]).
    pub(super) room: u32,
    pub(super) slot: NetmapSlot,
}

impl DirectSlot<'_> {
    /// Copies `bytes` (not empty) into the slot and publishes it: their start, as much
    /// as the slot holds, when `partial`; else all of them or (when they do not fit)
    /// nothing. Returns the bytes copied.
    #[inline(always)]
    pub(super) fn copy(self, bytes: &[u8], partial: bool) -> usize {
        let (g, buf_idx, room) = (self.g, self.slot.buf_idx, self.room as usize);
        if !(FIRST_DATA_BUF..self.index_limit).contains(&buf_idx) || room == 0 || (bytes.len() > room && !partial) {
            return 0;
        }
        let n = bytes.len().min(room);
        // SAFETY: the slot's buffer index is in range (checked above), so the buffer
        // lies in the region.
        let dst = unsafe { self.pool.buf_ptr(buf_idx).add((g + u32::from(self.cfg.tx_doff)) as usize) };
        // The slot and the accounting first, the payload next, `head` last: the slot
        // is the application's until `head` moves past it, and little is left to keep
        // across the copy. n <= room <= u16::MAX.
        let (ring, next) = self.commit_slot(n as u32);
        // SAFETY: `dst` is [g + doff, g + doff + n) of the slot's buffer, that end at
        // most buf_size (n <= room, see `slot_room`), never the kernel's [0, g); the
        // buffer stays the slot's (nobody else writes it) until `head` moves.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n) };
        SendData::count_copy(n);
        ring.set_head_cur(next);
        n
    }

    /// Copies `data` into the slot when it is not a pool buffer, is not empty and fits
    /// one slot — what [`RingDriver::tx_fill`](crate::ring::RingDriver::tx_fill) would do with it, without queueing it
    /// first. Returns whether it did (the caller then drops `data`).
    #[inline]
    pub(super) fn copy_whole(self, data: &SendData) -> bool {
        let bytes = match data {
            SendData::Pool(_) => return false,
            d => d.as_slice(),
        };
        !bytes.is_empty() && self.copy(bytes, false) != 0
    }

    /// Swaps pool buffer `b` into the slot (zero copy) when `b` fits it as
    /// [`RingDriver::tx_fill`](crate::ring::RingDriver::tx_fill) would swap it; hands `b` back otherwise.
    #[inline]
    pub(super) fn swap(mut self, b: TxBuf) -> Result<(), TxBuf> {
        let old = self.slot.buf_idx;
        let pool = self.pool;
        let doff = self.cfg.tx_doff as u32;
        // A pool buffer carries its payload at `tx_headroom` = G + doff; it fits a slot
        // whose generic offset is G when it holds at most one MSS.
        let fits = b.is_from(pool)
            && !b.is_empty()
            && b.len() as u32 <= self.cfg.mss.min(u16::MAX as u32 - doff)
            && self.g + doff == pool.tx_headroom()
            && (FIRST_DATA_BUF..self.index_limit).contains(&old)
            // A persistent pool takes no foreign buffer in exchange (module docs).
            && (self.home.is_empty() || self.home.get(old as usize).copied().unwrap_or(false));
        if !fits || !pool.adopt_lent(old) {
            return Err(b);
        }
        let (idx, len) = b.into_raw();
        // SAFETY: `old` was adopted as lent just above and is not used again by us (it
        // goes to the free list); `idx` is lent (taken from the TxBuf) and goes into the
        // ring, so it leaves the pool.
        unsafe {
            pool.release(old);
            pool.disown(idx);
        }
        self.slot.buf_idx = idx;
        self.slot.flags |= slotflags::BUF_CHANGED;
        self.commit(len);
        Ok(())
    }

    /// Publishes the slot, its buffer set, now carrying `len` payload bytes of the fd,
    /// charges the fd's send credit for it and advances the ring's head.
    #[inline(always)]
    pub(super) fn commit(self, len: u32) {
        let (ring, next) = self.commit_slot(len);
        ring.set_head_cur(next);
    }

    /// [`commit`](Self::commit) but for the head: writes the slot and charges the fd;
    /// returns the ring and the head to publish once the payload is in place.
    #[inline(always)]
    fn commit_slot(self, len: u32) -> (RingPtr, u32) {
        let DirectSlot { t, f, cfg, low_credit, fd, head, n, slot: mut s, .. } = self;
        s.len = (cfg.tx_doff as u32 + len) as u16;
        s.ptr = slot::set_fd(slot::set_doff(s.ptr, cfg.tx_doff), fd);
        t.ring.set_slot(head, s);
        t.shadow[head as usize] = TxShadow { fd, gen: f.gen, bytes: len };
        f.inflight += 1;
        let charge = len + cfg.tx_slot_overhead;
        f.untaken_charge += charge;
        if let Some(budget) = f.budget.map(NonZeroU32::get) {
            // No overflow: `direct_slot` found the credit positive, and the charge is
            // at most `u16::MAX + MAX_TX_SLOT_OVERHEAD`, far within `i32`.
            f.credit -= charge as i32;
            if cfg.lists_low_credit && !f.low && i64::from(f.credit) < i64::from(budget / 2) {
                f.low = true;
                low_credit.push(fd);
            }
        }
        (t.ring, slot::ring_next(head, n))
    }
}

/// Payload bytes one TX slot with generic offset `g` holds in `buf_size`-byte buffers:
/// at most one MSS, within the buffer after `g + doff` and within a slot's 16-bit
/// length; 0 when `g + doff` leaves no room. (The port's own generic offset's answer
/// is worked out once, at start: [`RingDriver::direct_slot`](crate::ring::RingDriver::direct_slot) uses that.)
#[inline]
pub(super) fn slot_room(cfg: &DriverConfig, buf_size: u32, g: u32) -> u32 {
    let doff = u32::from(cfg.tx_doff);
    if g + doff >= buf_size {
        return 0;
    }
    cfg.mss.min(buf_size - g - doff).min(u32::from(u16::MAX) - doff)
}

pub(super) enum Placed {
    Slot {
        bytes: u32,
        zero_copy: bool,
    },
    /// An empty send was discarded; no slot used.
    Skipped,
    BadSlot,
}

/// Fills TX slot `i` of ring `t` from the front of `f`'s queue.
#[allow(clippy::too_many_arguments)]
pub(super) fn place_one(
    pool: &BufPool,
    cfg: &DriverConfig,
    buf_size: u32,
    index_limit: u32,
    home: &[bool],
    t: &mut TxRing,
    i: u32,
    fd: i32,
    f: &mut FdTx,
) -> Placed {
    let ring = t.ring;
    let mut s = ring.slot(i);
    let doff = cfg.tx_doff as u32;
    let g = slot::generic_offset(s.ptr, ring.offset_mask()) as u32;
    if !(FIRST_DATA_BUF..index_limit).contains(&s.buf_idx) || g + doff >= buf_size {
        return Placed::BadSlot;
    }
    let room = cfg.mss.min(buf_size - g - doff).min(u16::MAX as u32 - doff) as usize;
    let Some(front) = f.queue.front() else { return Placed::Skipped };
    if front.is_empty() {
        f.queue.take_front();
        return Placed::Skipped;
    }
    let front_off = f.queue.front_off();
    let zero_copy = match front {
        SendData::Pool(b) => {
            front_off == 0
                && b.len() <= room
                && pool.tx_headroom() == g + doff
                && b.is_from(pool)
                // A persistent pool takes no foreign buffer in exchange (module docs).
                && (home.is_empty() || home.get(s.buf_idx as usize).copied().unwrap_or(false))
        }
        _ => false,
    };
    let n;
    if zero_copy {
        let old = s.buf_idx;
        let b = match f.queue.take_front() {
            Some(SendData::Pool(b)) => b,
            other => {
                // Cannot happen (the front was just seen to be a whole pool buffer);
                // put it back rather than lose it.
                if let Some(o) = other {
                    f.queue.put_front(o);
                }
                return Placed::BadSlot;
            }
        };
        if !pool.adopt_lent(old) {
            f.queue.put_front(SendData::Pool(b));
            return Placed::BadSlot;
        }
        let (idx, len) = b.into_raw();
        // SAFETY: `old` was adopted as lent just above and is not used again by us (it
        // goes to the free list); `idx` is lent (taken from the TxBuf) and goes into the
        // ring, so it leaves the pool.
        unsafe {
            pool.release(old);
            pool.disown(idx);
        }
        s.buf_idx = idx;
        s.flags |= slotflags::BUF_CHANGED;
        n = len as usize;
    } else {
        // Owned, static and `Bytes` data (a `Bytes` made from a pool buffer too: its
        // buffer cannot go into the slot while other clones may read it) and a pool
        // buffer that does not fit one slot: copied once, counted.
        let data = &front.as_slice()[front_off..];
        n = data.len().min(room);
        // SAFETY: the slot's buffer index is in range (checked above), so the buffer lies
        // in the region; we write [g + doff, g + doff + n) with g + doff + n <= buf_size,
        // never the kernel's [0, g).
        unsafe {
            let dst = pool.buf_ptr(s.buf_idx).add((g + doff) as usize);
            std::ptr::copy_nonoverlapping(data.as_ptr(), dst, n);
        }
        SendData::count_copy(n);
        f.queue.consume_front(n);
    }
    s.len = (doff as usize + n) as u16;
    s.ptr = slot::set_fd(slot::set_doff(s.ptr, cfg.tx_doff), fd);
    ring.set_slot(i, s);
    t.shadow[i as usize] = TxShadow { fd, gen: f.gen, bytes: n as u32 };
    f.inflight += 1;
    // n <= u16::MAX (a slot's length), the overhead bounded by `RingDriver::new`.
    let charge = n as u32 + cfg.tx_slot_overhead;
    f.untaken_charge += charge;
    if f.budget.is_some() {
        f.credit = narrow_credit(i64::from(f.credit) - i64::from(charge));
    }
    Placed::Slot { bytes: n as u32, zero_copy }
}
