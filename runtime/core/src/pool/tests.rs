use super::*;
use proptest::prelude::*;

fn pool(n: u32) -> BufPool {
    BufPool::new(&PoolConfig { count: n, buf_size: 256, ..PoolConfig::default() }, 16).unwrap()
}

#[test]
fn alloc_until_exhausted_then_release() {
    let p = pool(4);
    let got: Vec<u32> = std::iter::from_fn(|| p.alloc()).collect();
    assert_eq!(got.len(), 4);
    assert_eq!(p.alloc(), None);
    assert_eq!(p.in_use(), 4);
    for i in got {
        // SAFETY: each index came from alloc above and is released once.
        unsafe { p.release(i) };
    }
    assert_eq!(p.free_count(), 4);
}

#[test]
fn rejects_bad_geometry() {
    let cfg = PoolConfig { count: 1, buf_size: 64, ..PoolConfig::default() };
    assert!(BufPool::new(&cfg, 64).is_err());
}

#[test]
fn a_tx_payload_limit_bounds_the_buffers_taken_after_it() {
    let cfg = PoolConfig { count: 4, buf_size: 64, ..PoolConfig::default() };
    let p = BufPool::new(&cfg, 8).unwrap();
    assert_eq!(p.tx_capacity(), 56, "the buffer less the headroom");
    let before = p.tx_buf().unwrap();
    p.limit_tx_payload(20);
    let mut after = p.tx_buf().unwrap();
    assert_eq!((before.capacity(), after.capacity(), p.tx_capacity()), (56, 20, 20));
    after.put(&[7; 20]);
    assert_eq!(after.remaining(), 0);
    // Held within [1, buffer less headroom].
    p.limit_tx_payload(0);
    assert_eq!(p.tx_capacity(), 1);
    p.limit_tx_payload(1000);
    assert_eq!(p.tx_capacity(), 56);
}

#[test]
fn a_buffer_outlives_every_owner_and_frees_the_pool_when_returned() {
    let p = pool(4);
    let mut tx = p.tx_buf().unwrap();
    tx.extend_from_slice(b"still here");
    drop(p);
    assert_eq!(&tx[..], b"still here");
    drop(tx); // the last lent buffer: frees the pool (Miri/ASan would see a leak otherwise)
}

#[test]
fn put_within_appends_only_while_room_is_left_after_the_bytes() {
    let p = pool(2);
    let mut tx = p.tx_buf().unwrap();
    let cap = tx.capacity();
    assert!(tx.put_within(b"head "));
    assert!(tx.put_within(b"and more"));
    assert_eq!(&tx[..], b"head and more");
    // Exactly the room left: it would fill the buffer, so nothing is taken.
    let fill = vec![b'x'; tx.remaining()];
    assert!(!tx.put_within(&fill));
    assert_eq!(tx.len(), 13);
    // One byte less fits, and leaves one byte.
    assert!(tx.put_within(&fill[1..]));
    assert_eq!((tx.len(), tx.remaining()), (cap - 1, 1));
    assert!(!tx.put_within(b"y"));
    assert_eq!(&tx[..13], b"head and more");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot map a file")]
fn file_pool_keeps_contents_and_kept_indices_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PoolConfig { count: 8, buf_size: 128, memory: PoolMemory::File(dir.path().join("pool")), kept: vec![] };
    let kept = {
        let p = BufPool::new(&cfg, 0).unwrap();
        let mut tx = p.tx_buf().unwrap();
        tx.extend_from_slice(b"durable");
        let (idx, len) = tx.into_raw();
        // SAFETY: idx was just taken from the pool and is handed over once.
        let rx = unsafe { p.lend_rx(idx, 0, len) };
        let k = rx.keep();
        assert_eq!(p.kept_count(), 1);
        k
    };
    let cfg = PoolConfig { kept: vec![kept.index], ..cfg };
    let p = BufPool::new(&cfg, 0).unwrap();
    assert_eq!(p.kept_slice(&kept).unwrap(), b"durable");
    assert_eq!(p.free_count(), 7);
    assert!(!p.is_free(kept.index));
    assert!(p.release_kept(kept));
    assert!(!p.release_kept(kept), "a second release is refused");
    assert_eq!(p.free_count(), 8);
}

#[test]
fn external_pool_owns_only_given_indices() {
    let mut mem = vec![0u8; 10 * 64];
    // SAFETY: mem outlives the pool (dropped at the end of the test, after it).
    let p = unsafe { BufPool::external(mem.as_mut_ptr(), 64, 10, [3, 5, 7], 0, Box::new(())) };
    assert_eq!(p.capacity(), 3);
    assert!(p.adopt_lent(4));
    assert!(!p.adopt_lent(5));
    // SAFETY: 4 is lent (adopted above) and not used again.
    unsafe { p.release(4) };
    assert_eq!(p.free_count(), 4);
    let i = p.alloc().unwrap();
    // SAFETY: i was just allocated.
    unsafe { p.disown(i) };
    assert_eq!(p.capacity(), 3);
    drop(p);
    drop(mem);
}

/// Ring memory for tests: 16-byte descriptors, 8-aligned.
fn ring_mem(entries: usize) -> Vec<u64> {
    vec![0u64; entries * 2]
}

fn desc(mem: &[u64], pos: usize) -> (u64, u32, u16) {
    let lo = mem[pos * 2 + 1];
    (mem[pos * 2], lo as u32, (lo >> 32) as u16)
}

#[test]
fn released_buffers_go_back_to_the_recycle_ring_by_index() {
    let p = pool(8);
    let mut mem = ring_mem(4);
    // SAFETY: mem is zeroed, 8-aligned, and outlives the attachment (detached below).
    assert!(unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 4, 16, 240, 3) });
    assert_eq!(p.recycle_state(), (3, 3));
    assert_eq!(p.free_count(), 5);
    assert_eq!(p.in_use(), 3, "ring buffers count as lent to the consumer");
    let first = desc(&mem, 0).2;
    assert_eq!(desc(&mem, 0).0, p.buf_ptr(first as u32) as u64 + 16);
    assert_eq!(desc(&mem, 0).1, 240);
    // The consumer takes the first buffer, 100 bytes.
    let mut got = vec![];
    // SAFETY: test stands in for the kernel: buffer `first` was taken.
    assert_eq!(unsafe { p.recycle_take(first, 100, |b| got.push(b)) }, 1);
    assert_eq!((got[0].index(), got[0].offset(), got[0].len()), (first as u32, 16, 100));
    assert_eq!(p.recycle_state(), (3, 2));
    // Dropping it gives the same id back to the ring's tail (position 3).
    drop(got);
    assert_eq!(p.recycle_state(), (3, 3));
    assert_eq!(desc(&mem, 3).2, first);
    // SAFETY: the test consumer stopped.
    unsafe { p.detach_recycle_ring() };
    assert_eq!((p.free_count(), p.in_use()), (8, 0));
}

#[test]
fn a_one_buffer_completion_is_taken_without_a_closure_and_a_larger_one_is_refused() {
    let p = pool(8);
    let mut mem = ring_mem(4);
    // SAFETY: mem is zeroed, 8-aligned, and outlives the attachment (detached below).
    assert!(unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 4, 16, 240, 3) });
    assert_eq!(p.recycle_buf_len(), 240);
    let (first, second) = (desc(&mem, 0).2, desc(&mem, 1).2);
    // SAFETY: the test stands in for the kernel; a refused take takes nothing.
    assert!(unsafe { p.recycle_take_one(first, 241) }.is_none(), "two buffers' worth");
    assert_eq!(p.recycle_state(), (3, 3));
    // SAFETY: the consumer took buffer `first` with 240 bytes.
    let buf = unsafe { p.recycle_take_one(first, 240) }.expect("in the ring");
    assert_eq!((buf.index(), buf.offset(), buf.len()), (first as u32, 16, 240));
    assert_eq!(p.recycle_state(), (3, 2));
    // SAFETY: a buffer already lent out is not in the ring: refused.
    assert!(unsafe { p.recycle_take_one(first, 10) }.is_none());
    drop(buf);
    assert_eq!(p.recycle_state(), (3, 3));
    // SAFETY: the consumer took buffer `second` with 0 bytes.
    let empty = unsafe { p.recycle_take_one(second, 0) }.expect("in the ring");
    assert!(empty.is_empty());
    drop(empty);
    // SAFETY: the test consumer stopped.
    unsafe { p.detach_recycle_ring() };
    assert_eq!((p.free_count(), p.in_use()), (8, 0));
}

#[test]
fn a_bundle_takes_consecutive_ring_buffers() {
    let p = pool(8);
    let mut mem = ring_mem(8);
    // SAFETY: as above.
    assert!(unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 8, 0, 256, 6) });
    let first = desc(&mem, 0).2;
    // The dropped buffers go back to the ring's tail (wrapping onto position 0):
    // read the expected ids first.
    let expect: Vec<(u16, usize)> = vec![(desc(&mem, 0).2, 256), (desc(&mem, 1).2, 256), (desc(&mem, 2).2, 88)];
    let mut got = vec![];
    // SAFETY: test consumer took the first three buffers.
    assert_eq!(unsafe { p.recycle_take(first, 600, |b| got.push((b.index() as u16, b.len()))) }, 3);
    assert_eq!(got, expect);
    assert_eq!(p.recycle_state(), (6, 6), "dropped at once, back in the ring");
    // SAFETY: test consumer stopped.
    unsafe { p.detach_recycle_ring() };
    assert_eq!(p.in_use(), 0);
}

#[test]
fn a_foreign_buffer_is_swapped_for_a_free_one_and_refusals_change_nothing() {
    let mut mem = vec![0u8; 8 * 64];
    // SAFETY: mem outlives the pool (dropped at the end of the test, after it).
    let p = unsafe { BufPool::external(mem.as_mut_ptr(), 64, 8, [2], 0, Box::new(())) };
    assert_eq!(p.swap_foreign(2), ForeignSwap::NotForeign, "already the pool's");
    assert_eq!(p.swap_foreign(8), ForeignSwap::NotForeign, "out of range");
    assert_eq!((p.free_count(), p.capacity()), (1, 1));
    assert_eq!(p.swap_foreign(5), ForeignSwap::Swapped(2));
    assert!(p.is_lent(5) && !p.is_free(2) && !p.is_lent(2));
    assert_eq!((p.free_count(), p.in_use(), p.capacity()), (0, 1, 1));
    assert_eq!(p.swap_foreign(6), ForeignSwap::Exhausted);
    assert!(!p.is_lent(6));
    // SAFETY: 5 joined the pool as lent (swapped above) and is lent out once.
    let rx = unsafe { p.lend_allocated_rx(5, 4, 10) };
    assert_eq!((rx.index(), rx.offset(), rx.len()), (5, 4, 10));
    drop(rx);
    assert!(p.is_free(5));
    assert!(p.adopt_lent(2), "2 left the pool in the swap");
    // SAFETY: 2 is lent (adopted above) and not used again.
    unsafe { p.release(2) };
    assert_eq!(p.in_use(), 0);
    drop(p);
    drop(mem);
}

proptest! {
    /// Buffer conservation: under any sequence of alloc / release / keep /
    /// release_kept, with or without a recycle ring, every index is in exactly
    /// one state and the counters agree.
    #[test]
    fn conservation(ops in proptest::collection::vec(0u8..5, 0..400), ring in any::<bool>()) {
        let p = pool(16);
        let mut mem = ring_mem(8);
        if ring {
            // SAFETY: mem outlives the attachment (detached at the end).
            let attached = unsafe { p.attach_recycle_ring(mem.as_mut_ptr().cast(), 8, 0, 256, 4) };
            prop_assert!(attached);
        }
        let mut lent: Vec<u32> = vec![];
        let mut kept: Vec<KeptBuf> = vec![];
        let mut tail = 0u32;
        let mut taken = 0u32;
        for op in ops {
            match op {
                0 => if let Some(i) = p.alloc() { lent.push(i) },
                1 => if let Some(i) = lent.pop() {
                    // SAFETY: i is lent by this test and released once.
                    unsafe { p.release(i) }
                },
                2 => if let Some(i) = lent.pop() {
                    // SAFETY: i is lent by this test; lend_rx takes it over.
                    kept.push(unsafe { p.lend_rx(i, 0, 0) }.keep())
                },
                3 => if let Some(k) = kept.pop() { prop_assert!(p.release_kept(k)) },
                _ => if ring && p.recycle_state().1 > 0 {
                    // The consumer takes the oldest ring buffer.
                    let bid = desc(&mem, (taken & 7) as usize).2;
                    taken += 1;
                    // SAFETY: stands in for the kernel, in ring order.
                    let n = unsafe { p.recycle_take(bid, 10, |b| lent.push(b.into_raw().0)) };
                    prop_assert_eq!(n, 1);
                },
            }
            tail = tail.max(taken);
            let (_, queued) = p.recycle_state();
            prop_assert_eq!(p.free_count() + p.in_use() + p.kept_count(), 16);
            prop_assert_eq!(p.in_use() as usize, lent.len() + queued as usize);
            prop_assert_eq!(p.kept_count() as usize, kept.len());
            let free = (0..16).filter(|&i| p.is_free(i)).count();
            prop_assert_eq!(free, p.free_count() as usize);
        }
        let _ = tail;
        // SAFETY: the test consumer stopped.
        unsafe { p.detach_recycle_ring() };
        for i in lent {
            // SAFETY: lent by this test.
            unsafe { p.release(i) };
        }
        prop_assert_eq!(p.in_use(), 0);
    }

    /// `swap_foreign` against a model: under any mix of alloc / release /
    /// disown / adopt_lent / swap_foreign over an external pool, each index is
    /// free, lent or foreign as the model says, a swap hands out the free buffer
    /// `alloc` would have, and a refused swap changes nothing.
    #[test]
    fn swap_foreign_matches_alloc_adopt_and_disown(
        ops in proptest::collection::vec((0u8..5, 0u32..20), 0..300),
    ) {
        const LIMIT: u32 = 16;
        let mut mem = vec![0u8; LIMIT as usize * 64];
        // SAFETY: mem outlives the pool (dropped after it, at the end).
        let p = unsafe { BufPool::external(mem.as_mut_ptr(), 64, LIMIT, 0..6, 0, Box::new(())) };
        let mut free: Vec<u32> = (0..6).collect();
        let mut lent: Vec<u32> = vec![];
        for (op, idx) in ops {
            match op {
                0 => prop_assert_eq!(p.alloc(), free.pop().inspect(|&i| lent.push(i))),
                1 => if let Some(i) = lent.pop() {
                    // SAFETY: i is lent by this test and released once.
                    unsafe { p.release(i) };
                    free.push(i);
                },
                2 => if let Some(i) = lent.pop() {
                    // SAFETY: i is lent by this test and leaves the pool once.
                    unsafe { p.disown(i) };
                },
                3 => {
                    let foreign = idx < LIMIT && !free.contains(&idx) && !lent.contains(&idx);
                    prop_assert_eq!(p.adopt_lent(idx), foreign);
                    if foreign { lent.push(idx) }
                },
                _ => {
                    let foreign = idx < LIMIT && !free.contains(&idx) && !lent.contains(&idx);
                    let want = match free.last() {
                        None => ForeignSwap::Exhausted,
                        Some(_) if !foreign => ForeignSwap::NotForeign,
                        Some(&f) => ForeignSwap::Swapped(f),
                    };
                    prop_assert_eq!(p.swap_foreign(idx), want);
                    if let ForeignSwap::Swapped(_) = want {
                        free.pop();
                        lent.push(idx);
                    }
                },
            }
            prop_assert_eq!(p.free_count() as usize, free.len());
            prop_assert_eq!(p.in_use() as usize, lent.len());
            prop_assert_eq!(p.capacity() as usize, free.len() + lent.len());
            for i in 0..LIMIT {
                prop_assert_eq!(p.is_free(i), free.contains(&i));
                prop_assert_eq!(p.is_lent(i), lent.contains(&i));
            }
        }
        for i in lent {
            // SAFETY: lent by this test.
            unsafe { p.release(i) };
        }
        prop_assert_eq!(p.in_use(), 0);
        drop(p);
        drop(mem);
    }
}
