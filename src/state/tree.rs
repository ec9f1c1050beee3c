//! The chunk tree: a sled tree of [`Chunk`]s that together hold every entry in order, each
//! chunk stored under its first entry and covering the entries up to the next chunk's key.
//!
//! Lookups go through a few decoded chunks kept with the key range they cover (a listing in time
//! order reads each chunk once); inserts merge sorted entries into the chunks that cover them
//! and split those past the store's bound ([`max_entries`](super::chunk::max_entries)); prune and forget
//! rewrite the chunks that lose entries. Memory is a few chunks, whatever the store holds.

use super::chunk::{Chunk, Entry};
use super::StateError;
use std::ops::Bound;
use std::sync::Mutex;

/// Decoded chunks kept for lookups.
const CACHED_CHUNKS: usize = 8;
/// Chunks rewritten per sled batch (each batch is atomic). sled frees nothing a batch replaced
/// until the batch ends: every write into a leaf leaves the leaf's old lists of keys and values
/// behind (a few KB; the values themselves are shared), and a leaf it consolidates or evicts
/// meanwhile leaves the whole leaf (up to about 100 KB). Each batch also seals and writes sled's
/// log buffer, so not fewer: a commit of a batch of events rewrites about 6 chunks, one batch.
const CHUNKS_PER_BATCH: usize = 64;

/// Free now what sled has finished with on this thread. sled frees a replaced leaf, its old
/// lists or an evicted page through `crossbeam-epoch`: each goes into the thread's bag of
/// deferred frees, which is handed on for freeing only when it holds 64 of them (or on a flush,
/// or when the thread ends). The filter's thread and the one that commits each kept a bag of up
/// to 64 of those resident; a flush after each chunk read from the tree and after each batch
/// written hands the bag on at once (`benches/e2e.sh`, README "Measured"). sled's own re-export
/// of the crate, so that this is the collector sled uses.
fn free_deferred() {
    sled::crossbeam_pin().flush();
}

/// A decoded chunk and the key range it covers.
#[derive(Debug)]
struct Cached {
    /// Its sled key; `None` for the range before the first chunk.
    lo: Option<sled::IVec>,
    /// The next chunk's key; `None` when it is the last.
    hi: Option<sled::IVec>,
    chunk: Chunk,
}

impl Cached {
    fn covers(&self, key: &[u8]) -> bool {
        self.lo.as_deref().is_none_or(|lo| lo <= key) && self.hi.as_deref().is_none_or(|hi| key < hi)
    }
}

/// The chunk tree and its lookup cache.
pub struct ChunkTree {
    tree: sled::Tree,
    /// Entries per chunk written, at most.
    max_entries: usize,
    /// Most recently used last.
    cache: Mutex<Vec<Cached>>,
}

/// `key` followed by a zero byte: the smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(key.len() + 1);
    s.extend_from_slice(key);
    s.push(0);
    s
}

impl ChunkTree {
    /// Wrap a sled tree whose chunks are written with at most `max_entries` entries.
    pub fn new(tree: sled::Tree, max_entries: usize) -> ChunkTree {
        ChunkTree {
            tree,
            max_entries,
            cache: Mutex::new(Vec::with_capacity(CACHED_CHUNKS)),
        }
    }

    /// The chunk covering `key` and its range, from the tree.
    fn load(&self, key: &[u8]) -> Result<Cached, StateError> {
        let (lo, chunk) = match self.tree.get_lt(successor(key))? {
            Some((k, v)) => (Some(k), Chunk::decode(&v)?),
            None => (None, Chunk::default()),
        };
        let hi = match &lo {
            Some(k) => self.tree.get_gt(k)?.map(|(k, _)| k),
            None => self.tree.first()?.map(|(k, _)| k),
        };
        Ok(Cached { lo, hi, chunk })
    }

    /// Is the entry `key` in the tree?
    pub fn contains(&self, key: &[u8]) -> Result<bool, StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = cache.iter().rposition(|c| c.covers(key)) {
            // Most recently used last (a listing in order hits the last one: no move).
            if pos + 1 != cache.len() {
                let hit = cache.remove(pos);
                cache.push(hit);
            }
            return Ok(cache.last().is_some_and(|c| c.chunk.contains(key)));
        }
        let loaded = self.load(key)?;
        free_deferred();
        let found = loaded.chunk.contains(key);
        if cache.len() >= CACHED_CHUNKS {
            cache.remove(0);
        }
        cache.push(loaded);
        Ok(found)
    }

    fn forget_cache(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Clear the lookup cache now and again when the returned guard drops, however the write
    /// ends (an error after a first sled batch included): a lookup running during the write may
    /// have cached a chunk as it was.
    fn writing(&self) -> impl Drop + '_ {
        struct Forget<'t>(&'t ChunkTree);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget_cache();
            }
        }
        self.forget_cache();
        Forget(self)
    }

    /// Apply one sled batch, then free what it replaced.
    fn apply(&self, batch: sled::Batch) -> Result<(), StateError> {
        self.tree.apply_batch(batch)?;
        free_deferred();
        Ok(())
    }

    /// Add `entries` (sorted by key, distinct); not flushed. Returns how many were not there.
    pub fn insert_sorted<K: AsRef<[u8]>>(&self, entries: &[(K, i64)]) -> Result<u64, StateError> {
        let _writing = self.writing();
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        let mut i = 0;
        let mut added = 0u64;
        while i < entries.len() {
            let key = entries[i].0.as_ref();
            // The chunk covering `key`; before the first chunk, the first chunk (re-keyed).
            let (old, chunk) = match self.tree.get_lt(successor(key))? {
                Some((k, v)) => (Some(k), Chunk::decode(&v)?),
                None => match self.tree.first()? {
                    Some((k, v)) => (Some(k), Chunk::decode(&v)?),
                    None => (None, Chunk::default()),
                },
            };
            let hi = match &old {
                Some(k) => self.tree.get_gt(k)?.map(|(k, _)| k),
                None => None,
            };
            let n = entries[i..].partition_point(|(k, _)| hi.as_deref().is_none_or(|hi| k.as_ref() < hi));
            let before = chunk.len();
            let pieces = chunk.merge(&entries[i..i + n]).split(self.max_entries);
            let after: usize = pieces.iter().map(Chunk::len).sum();
            added = added.saturating_add(after.saturating_sub(before) as u64);
            if let Some(old) = old {
                if pieces.first().and_then(Chunk::first_key) != Some(&old[..]) {
                    batch.remove(old);
                }
            }
            for piece in pieces {
                if let Some(first) = piece.first_key() {
                    batch.insert(first, piece.encode());
                }
            }
            i += n.max(1);
            in_batch += 1;
            if in_batch >= CHUNKS_PER_BATCH {
                self.apply(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        self.apply(batch)?;
        Ok(added)
    }

    /// Drop the entries `keep` refuses among the chunks whose key is before `end`; returns how
    /// many were dropped. Not flushed.
    pub fn rewrite(&self, end: Bound<&[u8]>, mut keep: impl FnMut(Entry<'_>) -> bool) -> Result<usize, StateError> {
        let _writing = self.writing();
        let end = end.map(|e| e.to_vec());
        let mut from: Bound<Vec<u8>> = Bound::Unbounded;
        let mut dropped = 0;
        loop {
            let mut batch = sled::Batch::default();
            let mut seen = 0;
            for item in self.tree.range((from.clone(), end.clone())) {
                let (k, v) = item?;
                let (kept, n) = Chunk::decode(&v)?.retain(&mut keep);
                let mut last = k.to_vec();
                if n > 0 {
                    dropped += n;
                    batch.remove(k);
                    if let Some(first) = kept.first_key() {
                        last = last.max(first.to_vec());
                        batch.insert(first, kept.encode());
                    }
                }
                from = Bound::Excluded(last);
                seen += 1;
                if seen >= CHUNKS_PER_BATCH {
                    break;
                }
            }
            self.apply(batch)?;
            if seen < CHUNKS_PER_BATCH {
                return Ok(dropped);
            }
        }
    }

    /// Every chunk, in order.
    pub fn chunks(&self) -> impl Iterator<Item = Result<Chunk, StateError>> + '_ {
        self.tree
            .iter()
            .map(|item| item.map_err(StateError::from).and_then(|(_, v)| Chunk::decode(&v)))
    }

    /// Remove everything; not flushed.
    pub fn clear(&self) -> Result<(), StateError> {
        let _writing = self.writing();
        self.tree.clear()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::chunk::{entry_key, pack};

    /// The bound in these tests (a store with 128 KiB log segments has it).
    const MAX: usize = 192;

    fn key(filed: i64, i: u64) -> Vec<u8> {
        entry_key(
            filed,
            &pack(crate::key::KeyRef::new(&format!("{i:040x}"), crate::key::Phase::End)),
        )
    }

    #[test]
    fn insert_lookup_split_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let t = ChunkTree::new(db.open_tree("c").unwrap(), MAX);
        // Appends, then inserts before, between and inside existing chunks.
        let mut all: Vec<(Vec<u8>, i64)> = Vec::new();
        for (lo, hi, step) in [(1000, 3000, 1), (0, 500, 3), (500, 3000, 7), (5000, 5100, 1)] {
            let mut add: Vec<(Vec<u8>, i64)> = (lo..hi)
                .step_by(step)
                .map(|i| (key(i as i64 / 10, i), i as i64))
                .collect();
            add.sort();
            add.retain(|e| !all.iter().any(|a| a.0 == e.0));
            t.insert_sorted(&add).unwrap();
            all.extend(add);
        }
        all.sort();
        for (k, _) in &all {
            assert!(t.contains(k).unwrap());
        }
        assert!(!t.contains(&key(-1, 1)).unwrap());
        assert!(!t.contains(&key(400, 4001)).unwrap());
        assert!(!t.contains(&key(999, 9999)).unwrap());
        let chunks: Vec<Chunk> = t.chunks().map(Result::unwrap).collect();
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= MAX));
        let flat: Vec<Vec<u8>> = chunks.iter().flat_map(|c| c.iter().map(|e| e.key.to_vec())).collect();
        assert_eq!(
            flat,
            all.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
            "in order, each once"
        );

        // Drop times below 2000 among chunks filed before 250: exactly those entries go.
        let bound = crate::state::chunk::time_prefix(250);
        let expect = all
            .iter()
            .filter(|(k, t)| k.as_slice() < &bound[..] && *t < 2000)
            .count();
        assert_eq!(
            t.rewrite(Bound::Excluded(&bound[..]), |e| e.time >= 2000).unwrap(),
            expect
        );
        for (k, time) in &all {
            let gone = k.as_slice() < &bound[..] && *time < 2000;
            assert_eq!(t.contains(k).unwrap(), !gone);
        }
    }

    /// A tree the previous release wrote (chunks of at most 64 entries) is read as it is, and
    /// commits into it merge into those chunks and split at today's limit: nothing lost,
    /// nothing twice, every chunk within the limit, and a rewrite drops exactly what it should.
    #[test]
    fn chunks_of_the_previous_size_are_read_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let raw = db.open_tree("c").unwrap();
        // Every other i from `first`, sorted: 6,400 entries.
        let every_other = |first: u64| {
            let mut v: Vec<(Vec<u8>, i64)> = (first..12_800u64)
                .step_by(2)
                .map(|i| (key(i as i64 / 7, i), i as i64))
                .collect();
            v.sort();
            v
        };
        // The even ones in chunks of 64, written as the previous release did.
        let old = every_other(0);
        for piece in old.chunks(64) {
            let mut c = Chunk::default();
            for (k, t) in piece {
                c.push(k, *t);
            }
            raw.insert(c.first_key().unwrap(), c.encode()).unwrap();
        }
        let t = ChunkTree::new(raw, MAX);
        assert!(old.iter().all(|(k, _)| t.contains(k).unwrap()));
        assert!(t.chunks().map(Result::unwrap).all(|c| c.len() == 64));
        // The odd ones, in three commits: each lands between two old entries, inside old chunks.
        let new = every_other(1);
        for part in new.chunks(2_200) {
            assert_eq!(t.insert_sorted(part).unwrap(), part.len() as u64);
        }
        let mut all: Vec<(Vec<u8>, i64)> = old.iter().chain(&new).cloned().collect();
        all.sort();
        let chunks: Vec<Chunk> = t.chunks().map(Result::unwrap).collect();
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= MAX));
        assert!(
            chunks.iter().any(|c| c.len() > 64),
            "merged chunks grow past the old size"
        );
        let flat: Vec<Vec<u8>> = chunks.iter().flat_map(|c| c.iter().map(|e| e.key.to_vec())).collect();
        assert_eq!(
            flat,
            all.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
            "in order, each once"
        );
        assert_eq!(t.insert_sorted(&new[..100]).unwrap(), 0, "already there");
        let dropped = t.rewrite(Bound::Unbounded, |e| e.time >= 5_000).unwrap();
        assert_eq!(dropped, all.iter().filter(|(_, time)| *time < 5_000).count());
        for (k, time) in &all {
            assert_eq!(t.contains(k).unwrap(), *time >= 5_000);
        }
    }

    /// Lookups racing with inserts never leave a chunk cached as it was before the insert:
    /// once `insert_sorted` returns, every key it added is found (the filter looks up the next
    /// listing while delivery commits the last batches of this one).
    #[test]
    fn lookups_during_inserts_see_every_committed_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let t = std::sync::Arc::new(ChunkTree::new(db.open_tree("c").unwrap(), MAX));
        let batches: Vec<Vec<(Vec<u8>, i64)>> = (0..200u64)
            .map(|b| (0..20).map(|i| (key(b as i64, b * 100 + i), b as i64)).collect())
            .collect();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (t, done, batches) = (t.clone(), done.clone(), batches.clone());
            std::thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for b in &batches {
                        t.contains(&b[0].0).unwrap();
                    }
                }
            })
        };
        for b in &batches {
            t.insert_sorted(b).unwrap();
            assert!(
                b.iter().all(|(k, _)| t.contains(k).unwrap()),
                "found right after its insert"
            );
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        assert!(batches.iter().flatten().all(|(k, _)| t.contains(k).unwrap()));
    }
}
