//! How much of what sled is given it keeps in memory against its `cache_capacity`: writes N
//! values of a given size in batches (with a flush each, as a commit does) with the store's
//! settings (`state::sled_config`) and allocator setting, then prints the growth of the heap in
//! use (glibc's `mallinfo2`) and the resident size. The README's "Measured" cites it: before the
//! vendored one-shard page cache (vendor/PATCHES.md), sled kept nearly every value written.
//!
//!   cargo run --release --example sled_cache -- VALUES VALUE_BYTES CACHE_BYTES [PER_BATCH]
//!   e.g. 15600 670 1048576 156 (a 1,000,000-key first poll's chunks before 192-entry chunks,
//!   the store's cache size); 5200 4700 1048576 6 for 192-entry chunks, 2600 9400 1048576 3
//!   for the 385-entry chunks of a store with 256 KiB segments

use std::error::Error;

fn in_use() -> usize {
    // SAFETY: mallinfo2 only reads glibc's counters.
    unsafe { libc::mallinfo2().uordblks }
}

fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let (values, size, cache) = match args[..] {
        [v, s, c, ..] => (v, s, c),
        _ => return Err("usage: sled_cache VALUES VALUE_BYTES CACHE_BYTES [PER_BATCH]".into()),
    };
    let per_batch = args.get(3).copied().unwrap_or(156).max(1);
    // As the binary sets it (src/memory.rs).
    // SAFETY: mallopt only changes the allocator's parameters; no other thread runs yet.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    let dir = tempfile::tempdir()?;
    let db = senhasegura_forwarder::state::sled_config(dir.path())?
        .cache_capacity(cache as u64)
        .open()?;
    let tree = db.open_tree("chunks")?;
    let value = vec![7u8; size];
    let before = in_use();
    let mut key = 0u64;
    for _ in 0..values / per_batch {
        let mut batch = sled::Batch::default();
        for _ in 0..per_batch {
            key += 1;
            batch.insert(&key.to_be_bytes(), value.clone());
        }
        tree.apply_batch(batch)?;
        db.flush()?;
    }
    println!(
        "{key} values of {size} bytes, cache_capacity {cache}: heap in use +{} KiB, resident {} KiB",
        in_use().saturating_sub(before) / 1024,
        resident_kib().unwrap_or(0)
    );
    Ok(())
}
