//! The RX side of the ring driver: the walk over each RX ring's `[head, tail)`,
//! lending every slot's payload to the application by swapping a free pool buffer
//! into the slot (zero copy), and reporting an EOF slot as such.

use paste_rt_core::{BufPool, ForeignSwap, RxBuf};

use super::{RingDriver, RxEvent, RxWalk};
use crate::sys::abi::FIRST_DATA_BUF;
use crate::sys::slot;

impl RingDriver {
    /// RX slots the kernel can fill at most (each ring keeps one slot empty).
    pub fn rx_capacity(&self) -> u32 {
        self.rx.iter().map(|r| r.num_slots().saturating_sub(1)).sum()
    }

    /// Whether the last [`rx_walk`](Self::rx_walk) left RX slots unwalked (the pool
    /// ran dry, or the budget ran out). Until the next sync moves the rings' tails,
    /// this is [`rx_ready`](Self::rx_ready)` > 0` without a look at every ring: the
    /// per-tick question "can anything be taken without waiting?".
    #[inline]
    pub fn rx_left(&self) -> bool {
        self.rx_left
    }

    /// RX slots waiting to be walked.
    pub fn rx_ready(&self) -> u32 {
        self.rx.iter().map(|r| slot::ring_space(r.head(), r.tail(), r.num_slots())).sum()
    }

    /// Walks every RX ring over `[head, tail)`, at most `budget` slots in all, and hands
    /// each to `on_event`. Data slots are lent zero copy: a free pool buffer replaces
    /// the slot's buffer (`NS_BUF_CHANGED`, `ptr` untouched) and the old one becomes an
    /// [`RxBuf`] at offset `G + doff`. When the pool has no free buffer the walk stops
    /// and leaves the rest in the ring. Consumed slots are released (`head = cur`).
    pub fn rx_walk(&mut self, budget: u32, mut on_event: impl FnMut(RxEvent)) -> RxWalk {
        let mut w = RxWalk::default();
        'rings: for ring in &self.rx {
            let n = ring.num_slots();
            let (head, tail) = (ring.head(), ring.tail());
            if head >= n || tail >= n {
                continue;
            }
            let mut i = head;
            while i != tail && w.slots < budget {
                let s = ring.slot(i);
                let fd = slot::get_fd(s.ptr);
                let doff = slot::get_doff(s.ptr) as u32;
                let g = slot::generic_offset(s.ptr, ring.offset_mask()) as u32;
                let len = s.len as u32;
                let valid =
                    doff <= len && g + len <= self.buf_size && (FIRST_DATA_BUF..self.index_limit).contains(&s.buf_idx);
                // (One call of `on_event` below, so the caller's handler is inlined.)
                let ev = if !valid {
                    w.bad_slots += 1;
                    None
                } else if len == doff {
                    w.eofs += 1;
                    Some(RxEvent::Eof { fd })
                } else if self.is_home(s.buf_idx) {
                    match self.pool.swap_foreign(s.buf_idx) {
                        ForeignSwap::Swapped(fresh) => {
                            let old = s.buf_idx;
                            ring.set_buf_changed(i, fresh);
                            w.data += 1;
                            w.bytes += (len - doff) as u64;
                            // SAFETY: `old` was just swapped out of the ring and joined
                            // the pool as lent (swap_foreign); g + len <= buf_size
                            // (checked above).
                            let buf = unsafe { self.pool.lend_allocated_rx(old, g + doff, len - doff) };
                            Some(RxEvent::Data { fd, buf })
                        }
                        ForeignSwap::Exhausted => {
                            w.pool_exhausted = true;
                            ring.set_head_cur(i);
                            break 'rings;
                        }
                        ForeignSwap::NotForeign => {
                            // The ring holds a buffer the pool already owns: not a
                            // kernel buffer. Leave it there and skip the slot.
                            w.bad_slots += 1;
                            None
                        }
                    }
                } else {
                    // SAFETY: the slot's buffer is owned by us until head moves past
                    // it and lies in the region (index checked above), and
                    // g + len <= buf_size (checked above).
                    let Some(buf) = (unsafe { copy_out(&self.pool, s.buf_idx, g + doff, len - doff) }) else {
                        w.pool_exhausted = true;
                        ring.set_head_cur(i);
                        break 'rings;
                    };
                    w.data += 1;
                    w.copied += 1;
                    w.bytes += (len - doff) as u64;
                    Some(RxEvent::Data { fd, buf })
                };
                if let Some(ev) = ev {
                    on_event(ev);
                }
                w.slots += 1;
                i = slot::ring_next(i, n);
            }
            ring.set_head_cur(i);
        }
        self.rx_left = w.pool_exhausted || w.slots >= budget;
        w
    }
}

/// A persistent pool lends home buffers only: the payload of `src` (`len` bytes at
/// `off`) is copied into a fresh pool buffer at the same offset, lent as received
/// data, and the slot keeps its buffer. `None` when the pool has no free buffer.
/// Out of line: only a persistent pool's walk copies.
///
/// # Safety
/// `src` must be a buffer of the pool's region that the caller owns (a ring slot's
/// before head moves past it), and `off + len` at most the buffer size.
#[cold]
#[inline(never)]
unsafe fn copy_out(pool: &BufPool, src: u32, off: u32, len: u32) -> Option<RxBuf> {
    let fresh = pool.alloc()?;
    // SAFETY: `fresh` is lent to us and not in any ring; `src` is the caller's (the
    // contract); both lie in the region and `off + len` fits a buffer.
    unsafe {
        let from = pool.buf_ptr(src).add(off as usize);
        let to = pool.buf_ptr(fresh).add(off as usize);
        std::ptr::copy_nonoverlapping(from, to, len as usize);
        Some(pool.lend_rx(fresh, off, len))
    }
}
