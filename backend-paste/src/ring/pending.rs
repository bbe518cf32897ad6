//! [`PendingSends`]: one fd's data waiting for TX slots, boxed on first use.
//!
//! Most fds never queue anything in the ring driver (a reply that fits a free slot is
//! placed at once), yet every fd has an entry in its per-fd table. So the queue, the
//! offset into its partly placed front entry and the byte count live together behind
//! one pointer: an fd that never queued costs one word here, and the per-fd entry
//! stays small. The box is kept once made, so a busy fd allocates once.
//!
//! It must never drop, reorder or invent data, and its byte count is always the sum
//! of the queued entries' lengths minus the front offset.

use std::collections::VecDeque;

use paste_rt_core::SendData;

/// The queued data, the front entry's placed bytes and the bytes still to place.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<SendData>,
    /// Bytes of the front entry already placed.
    front_off: usize,
    /// Bytes queued and not yet placed.
    bytes: u64,
}

/// One fd's data waiting for TX slots (see the module docs).
#[derive(Debug, Default)]
pub(super) struct PendingSends(Option<Box<Queue>>);

impl PendingSends {
    /// Whether nothing is queued.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.items.is_empty())
    }

    /// Bytes queued and not yet placed.
    #[inline]
    pub(super) fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, |q| q.bytes)
    }

    /// Bytes of the front entry already placed (0 when nothing is queued).
    #[inline]
    pub(super) fn front_off(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.front_off)
    }

    /// Appends `data` (boxing the queue on first use).
    #[inline]
    pub(super) fn push_back(&mut self, data: SendData) {
        let q = self.0.get_or_insert_with(Box::default);
        q.bytes += data.len() as u64;
        q.items.push_back(data);
    }

    /// Appends `data` whose first `placed` bytes were placed already (in TX slots,
    /// straight from where it was queued before), as the partly placed front entry;
    /// only into an empty queue (`data` comes back otherwise, or when `placed` is
    /// not below its length).
    #[inline]
    pub(super) fn push_back_placed(&mut self, data: SendData, placed: usize) -> Result<(), SendData> {
        if !self.is_empty() || placed >= data.len() {
            return Err(data);
        }
        let q = self.0.get_or_insert_with(Box::default);
        q.bytes += (data.len() - placed) as u64;
        q.front_off = placed;
        q.items.push_back(data);
        Ok(())
    }

    /// The oldest entry.
    #[inline]
    pub(super) fn front(&self) -> Option<&SendData> {
        self.0.as_ref()?.items.front()
    }

    /// Takes the oldest entry out whole (its bytes leave the count); only when none
    /// of it was placed yet (`None` otherwise, or when nothing is queued).
    #[inline]
    pub(super) fn take_front(&mut self) -> Option<SendData> {
        let q = self.0.as_mut()?;
        if q.front_off != 0 {
            return None;
        }
        let d = q.items.pop_front()?;
        q.bytes -= d.len() as u64;
        Some(d)
    }

    /// Puts `data` back in front (undoes [`take_front`](Self::take_front)).
    #[inline]
    pub(super) fn put_front(&mut self, data: SendData) {
        let q = self.0.get_or_insert_with(Box::default);
        q.bytes += data.len() as u64;
        q.items.push_front(data);
    }

    /// Records `n` more bytes of the front entry as placed; the entry leaves the
    /// queue once all of it is.
    #[inline]
    pub(super) fn consume_front(&mut self, n: usize) {
        let Some(q) = self.0.as_mut() else { return };
        let Some(front) = q.items.front() else { return };
        let n = n.min(front.len() - q.front_off);
        q.front_off += n;
        q.bytes -= n as u64;
        if q.front_off == front.len() {
            q.items.pop_front();
            q.front_off = 0;
        }
    }

    /// The queued entries, oldest first (the front one whole, placed part included).
    pub(super) fn iter(&self) -> impl Iterator<Item = &SendData> + '_ {
        self.0.iter().flat_map(|q| q.items.iter())
    }

    /// The queued entries, oldest first, mutably. The caller keeps every entry's
    /// length (the byte count does not follow a change of it).
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut SendData> + '_ {
        self.0.iter_mut().flat_map(|q| q.items.iter_mut())
    }

    /// Drops everything queued (the allocation is kept); returns the bytes dropped.
    pub(super) fn clear(&mut self) -> u64 {
        let Some(q) = self.0.as_mut() else { return 0 };
        q.items.clear();
        q.front_off = 0;
        std::mem::take(&mut q.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_fd_that_never_queued_costs_one_word() {
        assert_eq!(size_of::<PendingSends>(), size_of::<usize>());
        let q = PendingSends::default();
        assert!(q.is_empty());
        assert_eq!((q.bytes(), q.front_off()), (0, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Consume(usize),
        TakeAndPutBack,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..40).prop_map(Op::Push),
            (0usize..50).prop_map(Op::Consume),
            Just(Op::TakeAndPutBack),
            Just(Op::Clear),
        ]
    }

    proptest! {
        /// The byte count stays the queued lengths minus the front offset, and the
        /// bytes come out in order, as from a plain byte FIFO.
        #[test]
        fn the_byte_count_and_order_match_a_plain_fifo(ops in proptest::collection::vec(op(), 0..60)) {
            let mut q = PendingSends::default();
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut next = 0u8;
            for op in ops {
                match op {
                    Op::Push(n) => {
                        let bytes: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                        model.extend(&bytes);
                        q.push_back(SendData::Owned(bytes));
                    }
                    Op::Consume(n) => {
                        let off = q.front_off();
                        let want = q.front().map(|f| f.as_slice()[off..].iter().take(n).copied().collect::<Vec<_>>());
                        q.consume_front(n);
                        if let Some(want) = want {
                            let got: Vec<u8> = model.drain(..want.len()).collect();
                            prop_assert_eq!(got, want);
                        }
                    }
                    Op::TakeAndPutBack => {
                        if let Some(d) = q.take_front() {
                            q.put_front(d);
                        }
                    }
                    Op::Clear => {
                        prop_assert_eq!(q.clear(), model.len() as u64);
                        model.clear();
                    }
                }
                prop_assert_eq!(q.bytes(), model.len() as u64);
                prop_assert_eq!(q.is_empty(), q.iter().next().is_none());
                let queued: u64 = q.iter().map(|d| d.len() as u64).sum::<u64>() - q.front_off() as u64;
                prop_assert_eq!(queued, q.bytes());
            }
        }
    }
}
