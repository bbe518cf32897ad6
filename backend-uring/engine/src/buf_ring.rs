//! Provided buffer rings over buffers someone else owns.
//!
//! [`BufRing`] owns one io_uring provided-buffer ring (`IORING_REGISTER_PBUF_RING`): its
//! page-aligned memory, its tail, and a shadow of which buffer id sits at which ring
//! position, so that a recv *bundle* (one completion filling several consecutive
//! buffers) can be mapped back to its buffer ids. Each buffer handed to the kernel may
//! start at a fixed `addr_offset` inside its memory, so received payload lands at
//! `buffer + N` (PASTE's emulated port leaves room for its slot header there).
//!
//! [`PoolBufRing`] is a [`BufRing`] whose buffers are a [`BufPool`]'s: buffer id = pool
//! index, refilled from the pool's free list, consumed buffers lent out as [`RxBuf`]s.
//!
//! Neither ever frees or reuses a buffer the kernel may still write to: a buffer leaves
//! the ring only when a completion says the kernel consumed it, or after the ring was
//! unregistered ([`PoolBufRing::unregister`]). Neither makes a system call outside
//! construction and unregistration.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use paste_rt_core::{BufPool, RxBuf};

pub use crate::ring_mapping::MAX_ENTRIES;
use crate::ring_mapping::{RingMapping, DESC_SIZE};

/// One provided buffer ring registered with a ring under a buffer group id.
///
/// Buffer ids (`bid`) are chosen by the owner and must be below the `bid_limit` given
/// at construction. The ring holds at most [`capacity`](Self::capacity) buffers.
pub struct BufRing {
    /// The registered descriptors.
    map: RingMapping,
    /// `entries - 1` (entries a power of two): a ring position from a tail.
    mask: u32,
    /// Our tail (entries pushed), published to the kernel by [`publish`](Self::publish).
    tail: u16,
    buf_len: u32,
    addr_offset: u32,
    /// Ring position (masked) → bid of the buffer pushed there.
    slot_bid: Box<[u16]>,
    /// Bid → ring position (masked) it was last pushed at.
    bid_slot: Box<[u32]>,
    /// Buffers pushed and not yet reported consumed.
    queued: u32,
}

impl BufRing {
    /// Maps and registers a ring of `entries` (a power of two, at most
    /// [`MAX_ENTRIES`]) buffers under group `bgid`. Every buffer is offered to the
    /// kernel as `buf_len` bytes starting `addr_offset` bytes into the memory the
    /// owner pushes. Buffer ids must be below `bid_limit` (at most 65536).
    pub fn new(
        submitter: &Submitter<'_>,
        bgid: u16,
        entries: u32,
        buf_len: u32,
        addr_offset: u32,
        bid_limit: u32,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > MAX_ENTRIES || bid_limit > 1 << 16 || buf_len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "buffer ring: {entries} entries (need a power of two <= {MAX_ENTRIES}), \
                     {bid_limit} buffer ids (need <= 65536), {buf_len}-byte buffers"
                ),
            ));
        }
        let map = RingMapping::register(submitter, bgid, entries)?;
        let ring = BufRing {
            map,
            mask: entries - 1,
            tail: 0,
            buf_len,
            addr_offset,
            slot_bid: vec![0; entries as usize].into_boxed_slice(),
            bid_slot: vec![0; bid_limit as usize].into_boxed_slice(),
            queued: 0,
        };
        Ok(ring)
    }

    /// The buffer group id to put in recv SQEs.
    pub fn bgid(&self) -> u16 {
        self.map.bgid()
    }

    /// Most buffers the ring can hold.
    pub fn capacity(&self) -> u32 {
        self.map.entries()
    }

    /// Buffers offered to the kernel and not yet reported consumed.
    pub fn len(&self) -> u32 {
        self.queued
    }

    /// Whether the kernel has no buffer of ours (a recv now fails with `ENOBUFS`).
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Bytes of each buffer offered to the kernel.
    pub fn buf_len(&self) -> u32 {
        self.buf_len
    }

    /// Where received data starts inside each buffer's memory.
    pub fn addr_offset(&self) -> u32 {
        self.addr_offset
    }

    /// Adds a buffer at the tail (visible to the kernel after [`publish`](Self::publish)).
    /// Returns `false`, doing nothing, if the ring is full or `bid` is out of range.
    ///
    /// # Safety
    /// `base + addr_offset .. + buf_len` must be valid writable memory that nobody reads
    /// or writes until the buffer is reported consumed by [`consume`](Self::consume) or
    /// returned by [`drain`](Self::drain) after unregistration.
    #[inline(always)]
    pub unsafe fn push(&mut self, bid: u16, base: *mut u8) -> bool {
        if self.queued >= self.map.entries() || bid as usize >= self.bid_slot.len() {
            return false;
        }
        let pos = self.tail as u32 & self.mask;
        // SAFETY: pos < entries, so the 16-byte entry lies inside the mapping. Only the
        // addr/len/bid fields are written: the last 2 bytes of entry 0 are the shared
        // tail, which only `publish` writes.
        unsafe {
            let entry = self.map.base().add(pos as usize * DESC_SIZE);
            entry.cast::<u64>().write(base.add(self.addr_offset as usize) as u64);
            entry.add(8).cast::<u32>().write(self.buf_len);
            entry.add(12).cast::<u16>().write(bid);
        }
        self.slot_bid[pos as usize] = bid;
        self.bid_slot[bid as usize] = pos;
        self.tail = self.tail.wrapping_add(1);
        self.queued += 1;
        true
    }

    /// Makes every pushed buffer visible to the kernel (a release store of the tail).
    pub fn publish(&mut self) {
        // SAFETY: the tail is the u16 at byte 14 of the mapping (`struct
        // io_uring_buf_ring`), 2-byte aligned; the kernel only reads it.
        let tail = unsafe { &*self.map.base().add(14).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Reports what one completion consumed: the buffer `first_bid` (from the CQE
    /// flags) and, for a bundle, the buffers pushed right after it, `bytes` in all.
    /// Calls `f(bid, len)` for each buffer, in data order; returns how many there were.
    pub fn consume(&mut self, first_bid: u16, bytes: u32, mut f: impl FnMut(u16, u32)) -> u32 {
        if first_bid as usize >= self.bid_slot.len() || self.queued == 0 {
            return 0;
        }
        if bytes <= self.buf_len {
            // One buffer (no bundle, or a bundle that filled only its first): no
            // division, no walk over the ring positions.
            self.queued -= 1;
            f(first_bid, bytes);
            return 1;
        }
        let count = bytes.div_ceil(self.buf_len).min(self.queued);
        let start = self.bid_slot[first_bid as usize];
        let mut left = bytes;
        for i in 0..count {
            let bid = self.slot_bid[((start + i) & self.mask) as usize];
            let len = left.min(self.buf_len);
            left -= len;
            f(bid, len);
        }
        self.queued -= count;
        count
    }

    /// Reports that one completion consumed exactly buffer `bid` (its bytes fit one
    /// buffer: `bytes <= buf_len`, so no bundle went past it), as
    /// [`consume`](Self::consume) would with its callback called once for `bid`.
    /// Returns `false`, doing nothing, when `bid` is out of range or the ring holds
    /// no buffer.
    #[inline]
    pub fn consume_one(&mut self, bid: u16) -> bool {
        if bid as usize >= self.bid_slot.len() || self.queued == 0 {
            return false;
        }
        self.queued -= 1;
        true
    }

    /// Unregisters the group: the kernel takes no more buffers from it. Returns the
    /// error of the unregistration, if any (the ring is then treated as unregistered
    /// only when the ring fd itself goes away).
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        self.map.unregister(submitter).map(drop)
    }

    /// After [`unregister`](Self::unregister): every buffer still offered, oldest first,
    /// given back to the caller. Does nothing while registered.
    pub fn drain(&mut self, mut f: impl FnMut(u16)) {
        if self.map.is_registered() {
            return;
        }
        let tail = self.tail as u32;
        for i in 0..self.queued {
            let pos = tail.wrapping_sub(self.queued).wrapping_add(i) & self.mask;
            f(self.slot_bid[pos as usize]);
        }
        self.queued = 0;
    }
}

/// Whether a refill could top the ring up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refill {
    /// Buffers added.
    pub added: u32,
    /// The pool had no free buffer before the ring reached its target.
    pub pool_dry: bool,
}

/// A [`BufRing`] fed from a [`BufPool`]: buffer id = pool index.
pub struct PoolBufRing {
    ring: BufRing,
    pool: BufPool,
    target: u32,
}

impl PoolBufRing {
    /// Registers a ring under `bgid` that holds up to `target` (at least 1, at most
    /// [`MAX_ENTRIES`]) of `pool`'s buffers, each offered from `addr_offset` to the
    /// buffer's end. The pool's indices must fit a buffer id (`index_limit <= 65536`).
    pub fn new(
        submitter: &Submitter<'_>,
        pool: &BufPool,
        bgid: u16,
        target: u32,
        addr_offset: u32,
    ) -> io::Result<PoolBufRing> {
        if pool.index_limit() > 1 << 16 || addr_offset >= pool.buf_size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "buffer ring over a pool of {} buffers of {} bytes with offset {addr_offset}: \
                     io_uring buffer ids are 16-bit (at most 65536 buffers) and the offset must \
                     leave room for data",
                    pool.index_limit(),
                    pool.buf_size()
                ),
            ));
        }
        let target = target.clamp(1, MAX_ENTRIES);
        let entries = target.next_power_of_two();
        let ring =
            BufRing::new(submitter, bgid, entries, pool.buf_size() - addr_offset, addr_offset, pool.index_limit())?;
        Ok(PoolBufRing { ring, pool: pool.clone(), target })
    }

    /// The underlying ring.
    pub fn ring(&self) -> &BufRing {
        &self.ring
    }

    /// Most pool buffers the ring holds at once.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Tops the ring up to its target from the pool's free list and publishes it.
    pub fn refill(&mut self) -> Refill {
        let mut added = 0;
        let mut pool_dry = false;
        while self.ring.len() < self.target {
            let Some(index) = self.pool.alloc() else {
                pool_dry = true;
                break;
            };
            // SAFETY: `index` was just taken off the free list, so nobody else uses the
            // buffer until the kernel reports it consumed (then it is lent out) or the
            // ring is drained after unregistration (then it is released).
            let pushed = unsafe { self.ring.push(index as u16, self.pool.buf_ptr(index)) };
            debug_assert!(pushed, "ring below target but push refused");
            added += 1;
        }
        if added > 0 {
            self.ring.publish();
        }
        Refill { added, pool_dry }
    }

    /// Lends out what one completion consumed (see [`BufRing::consume`]), one
    /// [`RxBuf`] per buffer, in data order.
    pub fn take(&mut self, first_bid: u16, bytes: u32, mut f: impl FnMut(RxBuf)) -> u32 {
        let pool = &self.pool;
        let offset = self.ring.addr_offset();
        self.ring.consume(first_bid, bytes, |bid, len| {
            // SAFETY: the kernel consumed this buffer (it will not write it again) and
            // it is still lent from the pool (it went into the ring through `refill`);
            // offset + len <= buf_size since len <= buf_size - offset.
            f(unsafe { pool.lend_rx(bid as u32, offset, len) })
        })
    }

    /// Unregisters the ring and returns every buffer it still held to the pool.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        self.ring.unregister(submitter)?;
        let pool = &self.pool;
        // SAFETY: the ring is unregistered, so the kernel no longer takes these
        // buffers; each was lent by `refill` and is released exactly once.
        self.ring.drain(|bid| unsafe { pool.release(bid as u32) });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::IoUring;
    use paste_rt_core::PoolConfig;

    #[test]
    fn bundles_map_back_to_consecutive_buffers() {
        let uring = IoUring::new(8).unwrap();
        let pool = BufPool::new(&PoolConfig { buf_size: 64, count: 16, ..PoolConfig::default() }, 0).unwrap();
        let mut ring = PoolBufRing::new(&uring.submitter(), &pool, 3, 6, 0).unwrap();
        assert_eq!(ring.ring().capacity(), 8);
        assert_eq!(ring.refill(), Refill { added: 6, pool_dry: false });
        assert_eq!(pool.in_use(), 6);
        // Pool hands out indices from the top of its stack: 0, 1, 2, ...
        let mut got = vec![];
        assert_eq!(ring.take(0, 150, |b| got.push((b.index(), b.len()))), 3);
        assert_eq!(got, vec![(0, 64), (1, 64), (2, 22)]);
        assert_eq!(ring.ring().len(), 3);
        // The lent RxBufs were dropped by the closure: back on the free list.
        assert_eq!(pool.in_use(), 3);
        assert_eq!(ring.refill().added, 3);
        ring.unregister(&uring.submitter()).unwrap();
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_completion_within_one_buffer_takes_that_buffer_only() {
        let uring = IoUring::new(8).unwrap();
        let pool = BufPool::new(&PoolConfig { buf_size: 64, count: 16, ..PoolConfig::default() }, 0).unwrap();
        let mut ring = PoolBufRing::new(&uring.submitter(), &pool, 3, 4, 0).unwrap();
        assert_eq!(ring.refill().added, 4);
        let mut got = vec![];
        // Exactly one buffer's worth, then less than one: one buffer each, in order.
        assert_eq!(ring.take(0, 64, |b| got.push((b.index(), b.len()))), 1);
        assert_eq!(ring.take(1, 5, |b| got.push((b.index(), b.len()))), 1);
        assert_eq!(got, vec![(0, 64), (1, 5)]);
        assert_eq!(ring.ring().len(), 2);
        // A bundle after them still maps to the buffers pushed next.
        got.clear();
        assert_eq!(ring.take(2, 70, |b| got.push((b.index(), b.len()))), 2);
        assert_eq!(got, vec![(2, 64), (3, 6)]);
        assert!(ring.ring().is_empty());
        ring.unregister(&uring.submitter()).unwrap();
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn consume_one_takes_a_single_buffer_as_consume_would() {
        let uring = IoUring::new(8).unwrap();
        let mut mem = vec![0u8; 4 * 64];
        let mut ring = BufRing::new(&uring.submitter(), 5, 4, 64, 0, 4).unwrap();
        for bid in 0..3u16 {
            // SAFETY: each 64-byte chunk of `mem` is used by this ring only, and `mem`
            // outlives it (declared first, dropped last; the ring is unregistered).
            assert!(unsafe { ring.push(bid, mem.as_mut_ptr().add(bid as usize * 64)) });
        }
        ring.publish();
        assert!(ring.consume_one(0));
        assert_eq!(ring.len(), 2);
        assert!(!ring.consume_one(9), "a buffer id out of range is refused");
        // The buffers after it are still found by a bundle.
        let mut got = vec![];
        assert_eq!(ring.consume(1, 100, |b, n| got.push((b, n))), 2);
        assert_eq!(got, vec![(1, 64), (2, 36)]);
        assert!(!ring.consume_one(0), "an empty ring has nothing to consume");
        ring.unregister(&uring.submitter()).unwrap();
    }

    #[test]
    fn offset_and_limits() {
        let uring = IoUring::new(8).unwrap();
        let pool = BufPool::new(&PoolConfig { buf_size: 64, count: 2, ..PoolConfig::default() }, 0).unwrap();
        let mut ring = PoolBufRing::new(&uring.submitter(), &pool, 4, 4, 16).unwrap();
        assert_eq!(ring.ring().buf_len(), 48);
        assert_eq!(ring.refill(), Refill { added: 2, pool_dry: true });
        let mut got = vec![];
        ring.take(0, 48, |b| got.push((b.index(), b.offset(), b.len())));
        assert_eq!(got, vec![(0, 16, 48)]);
        assert!(PoolBufRing::new(&uring.submitter(), &pool, 5, 4, 64).is_err());
        ring.unregister(&uring.submitter()).unwrap();
        assert_eq!(pool.in_use(), 0);
    }
}
