//! The runtime's timer queue: a binary heap of deadlines over a slab of entries.
//!
//! Owns every pending timer of one runtime thread. A `Sleep` registers itself here
//! on first poll and deregisters on drop; cancelled entries are skipped lazily when
//! they reach the top of the heap (each entry has a generation). Heap and slab keep
//! their capacity, so timers allocate nothing in steady state. It never blocks and
//! never reads a clock other than the `now` it is given.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::Waker;
use std::time::Instant;

use slab::Slab;

/// A registered timer's key: slab index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    index: usize,
    generation: u64,
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    waker: Option<Waker>,
    fired: bool,
}

/// All timers of one runtime.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    entries: Slab<Entry>,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_generation: u64,
}

impl Timers {
    /// Registers a timer firing at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        self.next_generation += 1;
        let generation = self.next_generation;
        let index = self.entries.insert(Entry { generation, waker: Some(waker), fired: false });
        self.heap.push(Reverse((deadline, generation, index)));
        TimerKey { index, generation }
    }

    /// Whether the timer has fired; refreshes its waker if not.
    pub(crate) fn poll(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.entries.get_mut(key.index) {
            Some(e) if e.generation == key.generation => {
                if !e.fired && !e.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    e.waker = Some(waker.clone());
                }
                e.fired
            }
            _ => true,
        }
    }

    /// Forgets a timer (fired or not).
    pub(crate) fn remove(&mut self, key: TimerKey) {
        if self.entries.get(key.index).is_some_and(|e| e.generation == key.generation) {
            self.entries.remove(key.index);
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, generation, index))) = self.heap.peek() {
            match self.entries.get(index) {
                Some(e) if e.generation == generation && !e.fired => return Some(deadline),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Fires every timer due at `now`, in deadline order. Returns how many fired.
    pub(crate) fn fire_due(&mut self, now: Instant) -> usize {
        let mut fired = 0;
        while let Some(&Reverse((deadline, generation, index))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if let Some(e) = self.entries.get_mut(index) {
                if e.generation == generation && !e.fired {
                    e.fired = true;
                    fired += 1;
                    if let Some(w) = e.waker.take() {
                        w.wake();
                    }
                }
            }
        }
        fired
    }

    /// Number of registered timers (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::task::Wake;
    use std::time::Duration;

    struct Record(Arc<Mutex<Vec<u32>>>, u32);
    impl Wake for Record {
        fn wake(self: Arc<Self>) {
            self.0.lock().unwrap().push(self.1);
        }
    }

    #[test]
    fn fires_in_deadline_order_and_skips_removed() {
        let log = Arc::new(Mutex::new(vec![]));
        let mut t = Timers::default();
        let now = Instant::now();
        let mk = |id| Waker::from(Arc::new(Record(log.clone(), id)));
        let _a = t.insert(now + Duration::from_millis(30), mk(3));
        let b = t.insert(now + Duration::from_millis(10), mk(1));
        let _c = t.insert(now + Duration::from_millis(20), mk(2));
        let d = t.insert(now + Duration::from_millis(15), mk(99));
        t.remove(d);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(10)));
        assert_eq!(t.fire_due(now + Duration::from_millis(25)), 2);
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
        assert!(t.poll(b, &mk(0)));
        assert_eq!(t.fire_due(now + Duration::from_secs(1)), 1);
        assert_eq!(*log.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(t.len(), 3, "fired timers stay until their Sleep drops");
    }
}
