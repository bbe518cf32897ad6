//! A FIFO of received buffers that never allocates.
//!
//! Each connection holds an [`RxQueue`] of the buffers the backend delivered and the
//! application has not taken yet. The links live in the pool's per-index metadata,
//! so a queue is five integers (ends, length, and the front buffer's offset and
//! length, kept inline for the common queue of one) and any number of buffers can
//! wait in it (bounded by the pool) — the property backpressure relies on.

use crate::buf::RxBuf;
use crate::pool::{BufPool, PoolInner, NO_INDEX};

/// A per-connection FIFO of [`RxBuf`]s linked through the pool.
///
/// The queue does not hold a pool handle (it would cost a pointer per connection);
/// every operation takes the pool. Call [`clear`](Self::clear) before dropping a
/// non-empty queue, or its buffers stay lent.
///
/// The front buffer's offset and length live in the queue itself, so the common
/// queue of one buffer — pushed by the backend, popped by the application — never
/// touches the pool's metadata. Behind the front, each buffer's offset and length,
/// and the link to it from the one before, are in the pool's metadata.
///
/// ```
/// # use paste_rt_core::{BufPool, PoolConfig, RxQueue};
/// let pool = BufPool::new(&PoolConfig::default(), 0).unwrap();
/// let mut q = RxQueue::new();
/// let i = pool.alloc().unwrap();
/// // SAFETY: i was just allocated and is handed over once.
/// q.push(unsafe { pool.lend_rx(i, 0, 10) });
/// assert_eq!(q.len(), 1);
/// assert_eq!(q.pop(&pool).unwrap().len(), 10);
/// ```
#[derive(Debug)]
pub struct RxQueue {
    head: u32,
    tail: u32,
    len: u32,
    /// The front buffer's offset and length (meaningful while `len > 0`).
    head_off: u32,
    head_len: u32,
}

impl Default for RxQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl RxQueue {
    /// An empty queue.
    pub const fn new() -> RxQueue {
        RxQueue { head: NO_INDEX, tail: NO_INDEX, len: 0, head_off: 0, head_len: 0 }
    }

    /// Buffers waiting.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no buffer waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a buffer.
    #[inline(always)]
    pub fn push(&mut self, buf: RxBuf) {
        let pool = buf.pool_ptr();
        let (idx, off, len) = buf.into_raw();
        if self.len == 0 {
            // The front: kept here, nothing written to the pool.
            self.head = idx;
            self.tail = idx;
            self.head_off = off;
            self.head_len = len;
            self.len = 1;
            return;
        }
        // SAFETY: the buffer stays lent while it is linked here, which keeps the pool
        // state alive (see the pool's module docs).
        let p = unsafe { pool.as_ref() };
        let mut m = p.meta[idx as usize].get();
        m.off = off;
        m.len = len;
        p.meta[idx as usize].set(m);
        let mut t = p.meta[self.tail as usize].get();
        t.next = idx;
        p.meta[self.tail as usize].set(t);
        self.tail = idx;
        self.len += 1;
    }

    /// Takes the oldest buffer. `pool` must be the pool the queued buffers belong to.
    #[inline]
    pub fn pop(&mut self, pool: &BufPool) -> Option<RxBuf> {
        if self.len == 0 {
            return None;
        }
        let (idx, off, len) = (self.head, self.head_off, self.head_len);
        let inner = pool.inner_ptr();
        self.len -= 1;
        if self.len == 0 {
            self.head = NO_INDEX;
            self.tail = NO_INDEX;
        } else {
            // SAFETY: an owner handle keeps the state alive.
            let meta = &unsafe { inner.as_ref() }.meta;
            let next = meta[idx as usize].get().next;
            let m = meta[next as usize].get();
            self.head = next;
            self.head_off = m.off;
            self.head_len = m.len;
        }
        Some(RxBuf::from_parts(inner, idx, off, len))
    }

    /// Takes the one buffer of a queue that holds exactly one (the caller checked
    /// [`len`](Self::len)), leaving it empty: [`pop`](Self::pop) without the look
    /// for a next one. `pool` must be the pool the buffer belongs to.
    #[inline]
    pub fn pop_only(&mut self, pool: &BufPool) -> RxBuf {
        assert_eq!(self.len, 1, "pop_only on a queue of another length");
        let (idx, off, len) = (self.head, self.head_off, self.head_len);
        self.head = NO_INDEX;
        self.tail = NO_INDEX;
        self.len = 0;
        RxBuf::from_parts(pool.inner_ptr(), idx, off, len)
    }

    /// Puts a buffer back at the front (the application took it and used part).
    pub fn push_front(&mut self, buf: RxBuf) {
        if self.len == 0 {
            // Front and back at once: the inline case of `push`.
            self.push(buf);
            return;
        }
        let pool = buf.pool_ptr();
        let (idx, off, len) = buf.into_raw();
        // SAFETY: as in `push`.
        self.put_front_behind(unsafe { pool.as_ref() }, idx);
        self.head = idx;
        self.head_off = off;
        self.head_len = len;
        self.len += 1;
    }

    /// This (non-empty) queue's front moves behind buffer `before`, which is about
    /// to come first: the front's offset and length go to the pool's metadata (only
    /// the front keeps them inline), and `before` links to it.
    fn put_front_behind(&self, p: &PoolInner, before: u32) {
        let mut old = p.meta[self.head as usize].get();
        old.off = self.head_off;
        old.len = self.head_len;
        p.meta[self.head as usize].set(old);
        let mut m = p.meta[before as usize].get();
        m.next = self.head;
        p.meta[before as usize].set(m);
    }

    /// Takes every waiting buffer at once (O(1)): the queue is empty afterwards.
    #[inline]
    pub fn take(&mut self) -> RxQueue {
        std::mem::take(self)
    }

    /// Puts `front` (buffers taken earlier, still in order) back before what this
    /// queue holds now. O(1) when `front` is not empty.
    pub fn prepend(&mut self, pool: &BufPool, mut front: RxQueue) {
        if front.len == 0 {
            return;
        }
        if self.len > 0 {
            // SAFETY: an owner handle keeps the state alive.
            self.put_front_behind(unsafe { pool.inner_ptr().as_ref() }, front.tail);
        } else {
            self.tail = front.tail;
        }
        self.head = front.head;
        self.head_off = front.head_off;
        self.head_len = front.head_len;
        self.len += front.len;
        front.head = NO_INDEX;
        front.tail = NO_INDEX;
        front.len = 0;
    }

    /// Returns every waiting buffer to the pool.
    pub fn clear(&mut self, pool: &BufPool) {
        while self.pop(pool).is_some() {}
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        debug_assert!(self.len == 0, "RxQueue dropped with {} buffers still linked", self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn the_only_buffer_of_a_queue_of_one_comes_out_whole_and_leaves_it_empty() {
        let pool = BufPool::new(&PoolConfig { count: 4, buf_size: 128, ..PoolConfig::default() }, 0).unwrap();
        let mut q = RxQueue::new();
        let i = pool.alloc().unwrap();
        // SAFETY: i was just allocated and is handed over once.
        let mut b = unsafe { pool.lend_rx(i, 0, 100) };
        b.advance(7);
        q.push(b);
        let b = q.pop_only(&pool);
        assert_eq!((b.index(), b.offset(), b.len()), (i, 7, 93));
        assert!(q.is_empty() && q.pop(&pool).is_none());
        // The emptied queue links again from scratch.
        q.push(b);
        assert_eq!(q.pop(&pool).map(|b| b.len()), Some(93));
        assert_eq!(pool.in_use(), 0);
    }

    proptest! {
        /// The intrusive queue behaves like a VecDeque model and loses no buffer.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u8..4, 1u32..100), 0..300)) {
            let pool = BufPool::new(&PoolConfig { count: 32, buf_size: 128, ..PoolConfig::default() }, 0).unwrap();
            let mut q = RxQueue::new();
            let mut model: VecDeque<(u32, u32, u32)> = VecDeque::new();
            for (op, len) in ops {
                match op {
                    0 => if let Some(i) = pool.alloc() {
                        // SAFETY: i was just allocated.
                        q.push(unsafe { pool.lend_rx(i, 0, len) });
                        model.push_back((i, 0, len));
                    },
                    1 => {
                        let got = q.pop(&pool).map(|b| (b.index(), b.offset(), b.len() as u32));
                        prop_assert_eq!(got, model.pop_front());
                    }
                    2 => if let Some(i) = pool.alloc() {
                        // Everything queued is taken out, a new buffer arrives, and
                        // what was taken goes back before it.
                        let front = q.take();
                        // SAFETY: i was just allocated.
                        q.push(unsafe { pool.lend_rx(i, len % 7, len) });
                        q.prepend(&pool, front);
                        model.push_back((i, len % 7, len));
                    },
                    _ => if let Some(mut b) = q.pop(&pool) {
                        b.advance(1);
                        let (i, o, l) = (b.index(), b.offset(), b.len() as u32);
                        q.push_front(b);
                        let front = model.front_mut().unwrap();
                        *front = (i, o, l);
                    },
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(pool.in_use() as usize, model.len());
            }
            q.clear(&pool);
            prop_assert_eq!(pool.in_use(), 0);
        }
    }
}
