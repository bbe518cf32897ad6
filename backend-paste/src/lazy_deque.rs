//! [`LazyDeque`]: a FIFO queue that costs one word until something is queued in it.
//!
//! The per-fd tables of the emulated kernel and its provider hold a queue per socket
//! (backlog, held data), and most sockets are idle with nothing queued — but an empty
//! `VecDeque` is four words inline, for every fd. This one is a pointer: the deque is boxed on the first push
//! and kept afterwards, so a busy socket allocates once and an idle one never.
//!
//! It only forwards to the deque: it must never drop, reorder or invent items.

use std::collections::VecDeque;

/// A `VecDeque` boxed on first use (see the module docs).
// The box is the point: `Option<Box<_>>` is one word, an empty `VecDeque` four.
#[allow(clippy::box_collection)]
#[derive(Debug)]
pub(crate) struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> Default for LazyDeque<T> {
    fn default() -> Self {
        LazyDeque(None)
    }
}

impl<T> LazyDeque<T> {
    /// An empty queue (no allocation).
    pub(crate) const fn new() -> Self {
        LazyDeque(None)
    }

    /// Whether nothing is queued.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    /// Items queued.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    /// Appends `item` (boxing the deque on first use).
    #[inline]
    pub(crate) fn push_back(&mut self, item: T) {
        self.0.get_or_insert_with(Box::default).push_back(item);
    }

    /// Takes the oldest item.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    /// The items, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.0.iter().flat_map(|q| q.iter())
    }

    /// Takes every item out, oldest first (the allocation is kept).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.0.iter_mut().flat_map(|q| q.drain(..))
    }
}

impl<T> IntoIterator for LazyDeque<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::option::IntoIter<VecDeque<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.map(|q| *q).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_empty_queue_is_one_word_and_allocates_nothing() {
        assert_eq!(size_of::<LazyDeque<u64>>(), size_of::<usize>());
        let q: LazyDeque<u64> = LazyDeque::new();
        assert!(q.0.is_none() && q.is_empty());
        assert_eq!(q.len(), 0);
    }

    proptest! {
        /// Behaves like a VecDeque under any sequence of pushes, pops and drains.
        #[test]
        fn matches_vec_deque(ops in proptest::collection::vec(0u8..4, 0..200)) {
            let (mut lazy, mut plain) = (LazyDeque::new(), VecDeque::new());
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    0 | 1 => { lazy.push_back(i); plain.push_back(i); }
                    2 => prop_assert_eq!(lazy.pop_front(), plain.pop_front()),
                    _ => prop_assert_eq!(lazy.drain().collect::<Vec<_>>(), plain.drain(..).collect::<Vec<_>>()),
                }
                prop_assert_eq!(lazy.len(), plain.len());
                prop_assert_eq!(lazy.iter().collect::<Vec<_>>(), plain.iter().collect::<Vec<_>>());
            }
            prop_assert_eq!(lazy.into_iter().collect::<Vec<_>>(), plain.into_iter().collect::<Vec<_>>());
        }
    }
}
