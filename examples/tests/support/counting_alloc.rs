//! A global allocator that counts, per thread, the allocations made: the tests that
//! prove "no allocation per request" install it with `#[global_allocator]`.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts every allocation of the calling thread, then forwards to `System`.
pub struct CountingAllocator;

/// How many layers a thread's allocations can be attributed to (see [`in_layer`]).
pub const LAYERS: usize = 4;

thread_local! {
    /// The layer the calling thread's allocations are counted under (0 unless a test
    /// attributes them with [`in_layer`]).
    static LAYER: Cell<u8> = const { Cell::new(0) };
    static ALLOCATIONS: [Cell<u64>; LAYERS] = const { [const { Cell::new(0) }; LAYERS] };
}

fn count_one() {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = LAYER.try_with(|l| {
        let layer = usize::from(l.get());
        let _ = ALLOCATIONS.try_with(|n| n[layer].set(n[layer].get() + 1));
    });
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged, so it upholds the same contract; counting touches no allocated memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made by the calling thread so far, in every layer.
pub fn allocations() -> u64 {
    allocations_by_layer().iter().sum()
}

/// Allocations made by the calling thread so far, per layer.
pub fn allocations_by_layer() -> [u64; LAYERS] {
    ALLOCATIONS.with(|n| std::array::from_fn(|i| n[i].get()))
}

/// Runs `f` with the calling thread's allocations counted under `layer` (< [`LAYERS`]).
pub fn in_layer<R>(layer: u8, f: impl FnOnce() -> R) -> R {
    assert!(usize::from(layer) < LAYERS, "layer {layer} out of range");
    let previous = LAYER.with(|l| l.replace(layer));
    let result = f();
    LAYER.with(|l| l.set(previous));
    result
}
