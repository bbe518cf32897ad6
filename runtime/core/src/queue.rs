//! A FIFO of received buffers that never allocates.
//!
//! Each connection holds an [`RxQueue`] of the buffers the backend delivered and the
//! application has not taken yet. The links live in the pool's per-index metadata,
//! so a queue is three integers and any number of buffers can wait in it (bounded
//! by the pool) — the property backpressure relies on.

use crate::buf::RxBuf;
use crate::pool::{BufPool, NO_INDEX};

/// A per-connection FIFO of [`RxBuf`]s linked through the pool.
///
/// The queue does not hold a pool handle (it would cost a pointer per connection);
/// every operation takes the pool. Call [`clear`](Self::clear) before dropping a
/// non-empty queue, or its buffers stay lent.
///
/// ```
/// # use paste_rt_core::{BufPool, PoolConfig, RxQueue};
/// let pool = BufPool::new(&PoolConfig::default(), 0).unwrap();
/// let mut q = RxQueue::new();
/// let i = pool.alloc().unwrap();
/// // SAFETY: i was just allocated and is handed over once.
/// q.push(unsafe { pool.lend_rx(i, 0, 10) });
/// assert_eq!((q.len(), q.bytes()), (1, 10));
/// assert_eq!(q.pop(&pool).unwrap().len(), 10);
/// ```
#[derive(Debug)]
pub struct RxQueue {
    head: u32,
    tail: u32,
    len: u32,
    bytes: u64,
}

impl Default for RxQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl RxQueue {
    /// An empty queue.
    pub const fn new() -> RxQueue {
        RxQueue { head: NO_INDEX, tail: NO_INDEX, len: 0, bytes: 0 }
    }

    /// Buffers waiting.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no buffer waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes waiting, over all buffers.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends a buffer.
    #[inline(always)]
    pub fn push(&mut self, buf: RxBuf) {
        let pool = buf.pool_ptr();
        let (idx, off, len) = buf.into_raw();
        // SAFETY: the buffer stays lent while it is linked here, which keeps the pool
        // state alive (see the pool's module docs).
        let p = unsafe { pool.as_ref() };
        let mut m = p.meta[idx as usize].get();
        m.next = NO_INDEX;
        m.off = off;
        m.len = len;
        p.meta[idx as usize].set(m);
        if self.tail == NO_INDEX {
            self.head = idx;
        } else {
            let mut t = p.meta[self.tail as usize].get();
            t.next = idx;
            p.meta[self.tail as usize].set(t);
        }
        self.tail = idx;
        self.len += 1;
        self.bytes += len as u64;
    }

    /// Takes the oldest buffer. `pool` must be the pool the queued buffers belong to.
    #[inline]
    pub fn pop(&mut self, pool: &BufPool) -> Option<RxBuf> {
        if self.head == NO_INDEX {
            return None;
        }
        let idx = self.head;
        let inner = pool.inner_ptr();
        // SAFETY: an owner handle keeps the state alive.
        let m = unsafe { inner.as_ref() }.meta[idx as usize].get();
        self.head = m.next;
        if self.head == NO_INDEX {
            self.tail = NO_INDEX;
        }
        self.len -= 1;
        self.bytes -= m.len as u64;
        Some(RxBuf::from_parts(inner, idx, m.off, m.len))
    }

    /// Takes the one buffer of a queue that holds exactly one (the caller checked
    /// [`len`](Self::len)), leaving it empty: [`pop`](Self::pop) without the looks
    /// at the link. `pool` must be the pool the buffer belongs to.
    #[inline]
    pub fn pop_only(&mut self, pool: &BufPool) -> RxBuf {
        assert_eq!(self.len, 1, "pop_only on a queue of another length");
        let idx = self.head;
        let inner = pool.inner_ptr();
        // SAFETY: an owner handle keeps the state alive.
        let m = unsafe { inner.as_ref() }.meta[idx as usize].get();
        self.head = NO_INDEX;
        self.tail = NO_INDEX;
        self.len = 0;
        self.bytes = 0;
        RxBuf::from_parts(inner, idx, m.off, m.len)
    }

    /// Puts a buffer back at the front (the application took it and used part).
    pub fn push_front(&mut self, buf: RxBuf) {
        let pool = buf.pool_ptr();
        let (idx, off, len) = buf.into_raw();
        // SAFETY: as in `push`.
        let p = unsafe { pool.as_ref() };
        let mut m = p.meta[idx as usize].get();
        m.next = self.head;
        m.off = off;
        m.len = len;
        p.meta[idx as usize].set(m);
        if self.head == NO_INDEX {
            self.tail = idx;
        }
        self.head = idx;
        self.len += 1;
        self.bytes += len as u64;
    }

    /// Takes every waiting buffer at once (O(1)): the queue is empty afterwards.
    #[inline]
    pub fn take(&mut self) -> RxQueue {
        std::mem::take(self)
    }

    /// Puts `front` (buffers taken earlier, still in order) back before what this
    /// queue holds now. O(1) when `front` is not empty.
    pub fn prepend(&mut self, pool: &BufPool, mut front: RxQueue) {
        if front.head == NO_INDEX {
            return;
        }
        if self.head != NO_INDEX {
            // SAFETY: an owner handle keeps the state alive; front's tail is linked in.
            let p = unsafe { pool.inner_ptr().as_ref() };
            let mut t = p.meta[front.tail as usize].get();
            t.next = self.head;
            p.meta[front.tail as usize].set(t);
        } else {
            self.tail = front.tail;
        }
        self.head = front.head;
        self.len += front.len;
        self.bytes += front.bytes;
        front.head = NO_INDEX;
        front.tail = NO_INDEX;
        front.len = 0;
        front.bytes = 0;
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
        assert!(q.is_empty() && q.bytes() == 0 && q.pop(&pool).is_none());
        // The emptied queue links again from scratch.
        q.push(b);
        assert_eq!(q.pop(&pool).map(|b| b.len()), Some(93));
        assert_eq!(pool.in_use(), 0);
    }

    proptest! {
        /// The intrusive queue behaves like a VecDeque model and loses no buffer.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u8..3, 1u32..100), 0..300)) {
            let pool = BufPool::new(&PoolConfig { count: 32, buf_size: 128, ..PoolConfig::default() }, 0).unwrap();
            let mut q = RxQueue::new();
            let mut model: VecDeque<(u32, u32)> = VecDeque::new();
            for (op, len) in ops {
                match op {
                    0 => if let Some(i) = pool.alloc() {
                        // SAFETY: i was just allocated.
                        q.push(unsafe { pool.lend_rx(i, 0, len) });
                        model.push_back((i, len));
                    },
                    1 => {
                        let got = q.pop(&pool).map(|b| (b.index(), b.len() as u32));
                        prop_assert_eq!(got, model.pop_front());
                    }
                    _ => if let Some(mut b) = q.pop(&pool) {
                        b.advance(1);
                        let (i, l) = (b.index(), b.len() as u32);
                        q.push_front(b);
                        let front = model.front_mut().unwrap();
                        *front = (i, l);
                    },
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.bytes(), model.iter().map(|m| m.1 as u64).sum::<u64>());
                prop_assert_eq!(pool.in_use() as usize, model.len());
            }
            q.clear(&pool);
            prop_assert_eq!(pool.in_use(), 0);
        }
    }
}
