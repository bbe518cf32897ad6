//! [`DenseMap`]: a map from small integer keys (tokens, file descriptors) to values,
//! as a vector indexed by the key.
//!
//! Tokens are slab keys and fds are small, reused numbers, so a vector beats a hash
//! map on every lookup (an index and a compare instead of SipHash) — it is on the
//! per-request path of every backend. Memory grows to the largest key seen.

/// A map from small `usize` keys to values, stored by index.
///
/// ```
/// use paste_rt_core::DenseMap;
/// let mut m = DenseMap::new();
/// assert_eq!(m.insert(7, "seven"), None);
/// assert_eq!(m.get(7), Some(&"seven"));
/// assert_eq!(m.remove(7), Some("seven"));
/// assert!(m.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct DenseMap<V> {
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
    pub fn new() -> DenseMap<V> {
        DenseMap::default()
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: usize) -> Option<&V> {
        self.items.get(key).and_then(Option::as_ref)
    }

    /// The value of `key`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key: usize) -> Option<&mut V> {
        self.items.get_mut(key).and_then(Option::as_mut)
    }

    /// Whether `key` has a value.
    #[inline]
    pub fn contains_key(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value of `key`; returns the previous one.
    pub fn insert(&mut self, key: usize, value: V) -> Option<V> {
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
    pub fn remove(&mut self, key: usize) -> Option<V> {
        let old = self.items.get_mut(key).and_then(Option::take);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every (key, value), by key.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &V)> {
        self.items.iter().enumerate().filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }

    /// Removes and returns every value, by key.
    pub fn drain(&mut self) -> impl Iterator<Item = (usize, V)> + '_ {
        self.len = 0;
        self.items.iter_mut().enumerate().filter_map(|(k, v)| v.take().map(|v| (k, v)))
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
            let mut all: Vec<(usize, u8)> = d.drain().collect();
            all.sort_unstable();
            let mut expect: Vec<(usize, u8)> = h.into_iter().collect();
            expect.sort_unstable();
            prop_assert_eq!(all, expect);
            prop_assert!(d.is_empty());
        }
    }
}
