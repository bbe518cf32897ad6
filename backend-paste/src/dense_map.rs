//! [`DenseMap`]: a map from small integer keys (file descriptors) to values,
//! as a vector indexed by the key.
//!
//! Tokens are slab keys and fds are small, reused numbers, so a vector beats a hash
//! map on every lookup (an index and a compare instead of SipHash) — it is on the
//! per-request path of every backend. Memory grows to the largest key seen.

/// A map from small `usize` keys to values, stored by index.
///
/// (`insert`, `get`, `remove` by key; tests below.)
#[derive(Debug, Clone)]
pub(crate) struct DenseMap<V> {
    items: Vec<Option<V>>,
    len: usize,
}

impl<V> Default for DenseMap<V> {
    fn default() -> Self {
        DenseMap { items: Vec::new(), len: 0 }
    }
}

impl<V> DenseMap<V> {
    /// An empty map.
    pub(crate) fn new() -> DenseMap<V> {
        DenseMap::default()
    }

    /// The value of `key`.
    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&V> {
        self.items.get(key).and_then(Option::as_ref)
    }

    /// The value of `key`, mutably.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut V> {
        self.items.get_mut(key).and_then(Option::as_mut)
    }

    /// Whether `key` has a value.
    #[inline]
    pub(crate) fn contains_key(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value of `key`; returns the previous one.
    pub(crate) fn insert(&mut self, key: usize, value: V) -> Option<V> {
        if self.items.len() <= key {
            self.items.resize_with(key + 1, || None);
        }
        let old = self.items[key].replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the value of `key`.
    pub(crate) fn remove(&mut self, key: usize) -> Option<V> {
        let old = self.items.get_mut(key).and_then(Option::take);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Number of keys with a value.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Behaves like a HashMap under any sequence of inserts and removes.
        #[test]
        fn matches_hash_map(ops in proptest::collection::vec((any::<bool>(), 0usize..64, any::<u8>()), 0..300)) {
            let (mut d, mut h) = (DenseMap::new(), HashMap::new());
            for (insert, k, v) in ops {
                if insert {
                    prop_assert_eq!(d.insert(k, v), h.insert(k, v));
                } else {
                    prop_assert_eq!(d.remove(k), h.remove(&k));
                }
                prop_assert_eq!(d.len(), h.len());
                prop_assert_eq!(d.get(k), h.get(&k));
            }
            for k in 0..64 {
                prop_assert_eq!(d.get(k), h.get(&k));
            }
        }
    }
}
