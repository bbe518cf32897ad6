//! The recycle ring: the descriptor ring a kernel takes receive buffers from
//! (io_uring's provided-buffer ring), kept full by the pool itself (see the pool's
//! module docs). A released buffer goes straight to the ring's tail while the ring
//! holds fewer than its target; buffer id = pool index, so taking a completion's
//! buffers back needs no lookup.

use std::cell::Cell;
use std::sync::atomic::{AtomicU16, Ordering};

use super::{BufPool, BufState, PoolInner, RecycleRing, RECYCLE_DESC_SIZE};
use crate::buf::RxBuf;

impl RecycleRing {
    pub(super) fn detached() -> RecycleRing {
        RecycleRing {
            descs: Cell::new(std::ptr::null_mut()),
            mask: Cell::new(0),
            tail: Cell::new(0),
            queued: Cell::new(0),
            target: Cell::new(0),
            addr_offset: Cell::new(0),
            buf_len: Cell::new(0),
        }
    }

    /// Buffers in the ring, not yet reported taken.
    pub(super) fn queued(&self) -> u32 {
        self.queued.get()
    }

    #[inline]
    pub(super) fn wants(&self) -> bool {
        self.queued.get() < self.target.get()
    }

    /// The index pushed at ring position `pos` (masked): the buffer id of its
    /// descriptor, which only the pool writes (the consumer only reads a descriptor's
    /// id), so the ring itself maps positions to indices.
    #[inline]
    pub(super) fn index_at(&self, pos: u32) -> u32 {
        debug_assert!(!self.descs.get().is_null() && pos <= self.mask.get());
        // SAFETY: a ring is attached (callers hold positions of buffers it was given)
        // and pos <= mask, so the descriptor lies inside the ring memory, which stays
        // valid until detach_recycle_ring; bytes 12..14 are its buffer id, written by
        // ring_push and never by the consumer.
        unsafe { self.descs.get().add(pos as usize * RECYCLE_DESC_SIZE + 12).cast::<u16>().read() as u32 }
    }
}

impl BufPool {
    /// Attaches a recycle ring of `entries` descriptors at `descs` (see the module
    /// docs): from now on released buffers refill it up to `target`, each offered as
    /// `buf_len` bytes from `addr_offset` into the buffer, with the pool index as its
    /// buffer id. Fills it from the free list at once. Returns `false` (attaching
    /// nothing) if one is attached already, `entries` is not a power of two up to
    /// 32768, indices do not fit 16 bits, or the offer does not fit a buffer.
    ///
    /// # Safety
    /// `descs` must point to `entries * 16` zeroed, writable bytes, aligned for the
    /// ring's atomic tail, that stay valid and are only read by the consumer until
    /// [`detach_recycle_ring`](Self::detach_recycle_ring).
    pub unsafe fn attach_recycle_ring(
        &self,
        descs: *mut u8,
        entries: u32,
        addr_offset: u32,
        buf_len: u32,
        target: u32,
    ) -> bool {
        let p = self.p();
        let r = &p.recycle;
        if !r.descs.get().is_null()
            || descs.is_null()
            || !entries.is_power_of_two()
            || entries > 32768
            || p.meta.len() > 1 << 16
            || addr_offset as u64 + buf_len as u64 > p.buf_size as u64
            || buf_len == 0
        {
            return false;
        }
        r.descs.set(descs);
        r.mask.set(entries - 1);
        r.tail.set(0);
        r.queued.set(0);
        r.target.set(target.min(entries));
        r.addr_offset.set(addr_offset);
        r.buf_len.set(buf_len);
        self.recycle_fill();
        true
    }

    /// Moves free buffers into the recycle ring until it holds its target. Returns how
    /// many were moved.
    #[inline]
    pub fn recycle_fill(&self) -> u32 {
        let p = self.p();
        if !p.recycle.wants() || p.free_len.get() == 0 {
            return 0;
        }
        let mut moved = 0;
        while !p.recycle.descs.get().is_null() && p.recycle.wants() {
            let Some(idx) = p.alloc() else { break };
            p.ring_push(idx);
            moved += 1;
        }
        moved
    }

    /// Sets how many buffers the recycle ring should hold (at most its size), and
    /// fills it up to that from the free list.
    pub fn set_recycle_target(&self, target: u32) {
        let p = self.p();
        if p.recycle.descs.get().is_null() {
            return;
        }
        p.recycle.target.set(target.min(p.recycle.mask.get() + 1));
        self.recycle_fill();
    }

    /// The recycle ring's target, and how many buffers it holds now.
    pub fn recycle_state(&self) -> (u32, u32) {
        let r = &self.p().recycle;
        (r.target.get(), r.queued.get())
    }

    /// The size of the attached recycle ring (0 when none).
    pub fn recycle_capacity(&self) -> u32 {
        let r = &self.p().recycle;
        if r.descs.get().is_null() {
            0
        } else {
            r.mask.get() + 1
        }
    }

    /// Reports what the consumer took for one completion: the buffer `first` (its id,
    /// from the completion) and, when `bytes` spans several buffers (a bundle), the
    /// ones pushed right after it. Lends each out as an [`RxBuf`] holding its part of
    /// `bytes`, in data order, to `f`. Returns how many buffers were taken (0 if
    /// `first` is not in the ring).
    ///
    /// # Safety
    /// The consumer must really have taken (and finished writing) these buffers.
    #[inline]
    pub unsafe fn recycle_take(&self, first: u16, bytes: u32, mut f: impl FnMut(RxBuf)) -> u32 {
        let p = self.p();
        let r = &p.recycle;
        let idx = first as u32;
        if idx as usize >= p.meta.len() || p.state(idx) != BufState::Ring {
            return 0;
        }
        let off = r.addr_offset.get();
        let buf_len = r.buf_len.get();
        if bytes <= buf_len {
            // One buffer: the common case needs no position lookup.
            r.queued.set(r.queued.get() - 1);
            p.set_state(idx, BufState::Lent);
            f(RxBuf::from_parts(self.inner, idx, off, bytes));
            return 1;
        }
        let count = bytes.div_ceil(buf_len).min(r.queued.get());
        let start = p.meta[idx as usize].get().next;
        let mask = r.mask.get();
        let mut left = bytes;
        for i in 0..count {
            let bid = r.index_at((start + i) & mask);
            let len = left.min(buf_len);
            left -= len;
            r.queued.set(r.queued.get() - 1);
            p.set_state(bid, BufState::Lent);
            f(RxBuf::from_parts(self.inner, bid, off, len));
        }
        count
    }

    /// [`recycle_take`](Self::recycle_take) for a completion that fits one buffer
    /// (`bytes` at most the size each buffer is offered with), the common case: the
    /// buffer `id` lent out as an [`RxBuf`] of `bytes` bytes, returned rather than
    /// handed to a closure. `None` (taking nothing) when `id` is not in the ring or
    /// `bytes` does not fit one buffer (then use `recycle_take`).
    ///
    /// # Safety
    /// As for [`recycle_take`](Self::recycle_take).
    #[inline]
    pub unsafe fn recycle_take_one(&self, id: u16, bytes: u32) -> Option<RxBuf> {
        let p = self.p();
        let r = &p.recycle;
        let idx = id as u32;
        if bytes > r.buf_len.get() || idx as usize >= p.meta.len() || p.state(idx) != BufState::Ring {
            return None;
        }
        r.queued.set(r.queued.get() - 1);
        p.set_state(idx, BufState::Lent);
        Some(RxBuf::from_parts(self.inner, idx, r.addr_offset.get(), bytes))
    }

    /// The bytes each buffer of the recycle ring is offered with (0 when none is
    /// attached): a completion of at most this many bytes took one buffer.
    #[inline]
    pub fn recycle_buf_len(&self) -> u32 {
        self.p().recycle.buf_len.get()
    }

    /// Detaches the recycle ring after its consumer stopped reading it (the kernel
    /// ring was unregistered): every buffer it still held goes back to the free list.
    ///
    /// # Safety
    /// The consumer must no longer take or write any buffer of the ring.
    pub unsafe fn detach_recycle_ring(&self) {
        let p = self.p();
        let r = &p.recycle;
        if r.descs.get().is_null() {
            return;
        }
        let (tail, queued, mask) = (r.tail.get() as u32, r.queued.get(), r.mask.get());
        // Target 0 first: what is released below goes to the free list.
        r.target.set(0);
        r.queued.set(0);
        for i in 0..queued {
            let idx = r.index_at(tail.wrapping_sub(queued).wrapping_add(i) & mask);
            if p.state(idx) == BufState::Ring {
                p.set_state(idx, BufState::Lent);
                p.release(idx);
            }
        }
        r.descs.set(std::ptr::null_mut());
    }
}

impl PoolInner {
    /// Writes `idx` into the recycle ring's next descriptor and publishes the tail.
    #[inline]
    pub(super) fn ring_push(&self, idx: u32) {
        let r = &self.recycle;
        let tail = r.tail.get();
        let pos = tail as u32 & r.mask.get();
        let descs = r.descs.get();
        let addr = self.base_of(idx) as u64 + r.addr_offset.get() as u64;
        // SAFETY: a ring is attached (wants() is false otherwise, target 0), pos <=
        // mask, so the 16-byte descriptor lies inside the ring memory given to
        // attach_recycle_ring. addr/len/bid are plain fields the consumer reads only
        // up to the published tail; bytes 14..16 of entry 0 are the shared tail,
        // written only by the release store below.
        unsafe {
            let d = descs.add(pos as usize * RECYCLE_DESC_SIZE);
            d.cast::<u64>().write(addr);
            d.add(8).cast::<u32>().write(r.buf_len.get());
            d.add(12).cast::<u16>().write(idx as u16);
            let shared_tail = &*descs.add(14).cast::<AtomicU16>();
            shared_tail.store(tail.wrapping_add(1), Ordering::Release);
        }
        r.tail.set(tail.wrapping_add(1));
        r.queued.set(r.queued.get() + 1);
        let cell = &self.meta[idx as usize];
        let mut m = cell.get();
        m.state = BufState::Ring;
        m.next = pos;
        cell.set(m);
    }
}
