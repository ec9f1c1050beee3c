//! sled's page cache keeps to the store's capacity (vendor/PATCHES.md): what a first poll writes
//! is not all kept in memory. Its own test binary, because it counts every live heap byte of the
//! process: a test running beside it would count too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap in use after writing `values` values of 670 bytes (a chunk of 64 keys, the layout before
/// 192-entry chunks: the cache's bound does not depend on the value's size) in batches of 156
/// with a flush each, as the commits of a first poll do, over the heap in use after the open.
fn kept_after_writing(values: u64) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let db = senhasegura_forwarder::state::sled_config(dir.path())
        .unwrap()
        .open()
        .unwrap();
    let tree = db.open_tree("chunks").unwrap();
    let value = vec![7u8; 670];
    let before = LIVE.load(Ordering::Relaxed);
    for first in (0..values).step_by(156) {
        let mut batch = sled::Batch::default();
        for key in first..(first + 156).min(values) {
            batch.insert(&key.to_be_bytes(), value.clone());
        }
        tree.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    LIVE.load(Ordering::Relaxed).saturating_sub(before)
}

#[test]
fn sled_cache_is_bounded_by_its_capacity() {
    // 40,000 values, 26 MB written. sled as published keeps 5.4 to 6.6 MiB of it with the store's
    // 1 MiB capacity, and more as more is written (glibc counted +7.7 MB after 40,000 values and
    // +9.6 MB after 100,000, benches/sled_cache.rs); the vendored one-shard cache about 2 MiB
    // (the capacity, the pages of up to 64 accesses not yet weighed, the page table, the log).
    let kept = kept_after_writing(40_000);
    assert!(kept < 4 << 20, "sled kept {} KiB of the 26 MB written", kept >> 10);
}
