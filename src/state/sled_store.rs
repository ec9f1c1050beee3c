//! The sled implementation of the dedup store: open (and migrate), look up, commit, prune;
//! the operator's commands on it are in `operator.rs`. The directory is created 0700 and the
//! process umask keeps sled's files 0600. sled takes an exclusive lock, so a second agent fails at once.
//!
//! Key format 2: the `chunks` tree holds the delivered keys as entries in bounded chunks (see
//! `chunk.rs` and `tree.rs`). A key is filed under its session's start when the record has one
//! (else under the event's own time), so both events of a session sit where a listing in start
//! order looks them up, and the event's own time is kept for pruning. Commits merge the keys
//! into the chunks that cover them, then flush.
//!
//! A format-1 store (one value per 10-minute bucket, `bucket.rs`) is migrated when opened. It
//! did not record sessions' starts, so its end keys stay filed under their own time; until
//! events after the newest of them arrive, a lookup that misses under the start also looks there
//! (`legacy_until`). An export from format 1 is imported the same way.

use super::chunk::{self, commit_entry, entry_key, is_end, lookup_entry, time_prefix, CommitEntry};
use super::tree::ChunkTree;
use super::{bucket, Dedup, Delivered, StateError, KEY_FORMAT};
use crate::key::KeyRef;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

/// Format 1's tree (read only to migrate it).
const EVENTS_TREE_V1: &str = "events";
const CHUNKS_TREE: &str = "chunks";
const META_FORMAT: &[u8] = b"key_format";
pub(super) const META_FIRST_RUN: &[u8] = b"first_run_horizon";
const META_CREATED: &[u8] = b"created";
const META_VAULT: &[u8] = b"vault";
const META_ZONE: &[u8] = b"timezone";
/// The newest event time among end keys filed under their own time by a migration or an
/// import of format 1 (absent: none).
const META_LEGACY_UNTIL: &[u8] = b"legacy_until";
/// How many keys the store holds, kept by every change (so the metrics need no scan).
const META_KEYS: &[u8] = b"keys";
/// Page cache size: small, the store is read mostly once per key per poll. sled holds to it
/// only with the vendored one-shard cache (vendor/PATCHES.md); with 4 MiB a store of 100,000
/// sessions stayed cached whole and `run`'s resident size grew with the store.
const CACHE_BYTES: u64 = 1024 * 1024;
/// sled's log segment (and IO buffer) size for a new store. A store keeps the size it was made
/// with (sled refuses to open it with another): stores made before this one was chosen have
/// 128 KiB segments, and chunks of at most 192 entries. Twice the segment makes chunks twice as
/// large (`chunk::max_entries`), so half as many sled pages and segments, whose records sled
/// keeps in memory for as long as the store is open: 0.8–1.3 MiB less anonymous memory at the peak
/// of an all-known poll of 10,000,000 sessions, no difference at 100,000 (README "Measured");
/// 512 KiB (sled's default) saved little more and cost 0.7–1.0 MiB in an all-new poll of 100,000.
const SEGMENT_BYTES: usize = 256 * 1024;
/// Keys sorted and inserted at once by a migration or an import.
pub(super) const INSERT_RUN: usize = 10_000;

/// sled's settings for the store at `path`: its page cache, and the log segment size the store
/// was made with (`SEGMENT_BYTES` for a new one), which sled records in the store's `conf`
/// file before it writes the log. A log without that record is refused: read with a guessed
/// segment size, it would be misread, and sled would record the guess.
pub fn sled_config(path: &Path) -> Result<sled::Config, StateError> {
    let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES);
    let conf = path.join("conf");
    let segment = match config.stored_segment_size().map_err(|e| open_error(&conf, e))? {
        Some(size) => size,
        None if std::fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0) => {
            return Err(StateError::Open {
                path: conf,
                message: "missing or empty, but the store's log is not: it records the size of the log's segments, without which the log cannot be read".into(),
            })
        }
        None => SEGMENT_BYTES,
    };
    Ok(config.segment_size(segment))
}

/// The sled-backed store.
pub struct SledStore {
    path: PathBuf,
    pub(super) db: sled::Db,
    pub(super) chunks: ChunkTree,
    /// `META_LEGACY_UNTIL`, or `i64::MIN`.
    legacy_until: AtomicI64,
    /// A commit's entries, kept between commits (a first poll commits hundreds of lists of
    /// thousands of entries; each would be a fresh mapping of half a megabyte).
    commit_list: std::sync::Mutex<Vec<(CommitEntry, i64)>>,
}

/// Unix seconds a key is filed under.
pub(super) fn filed(time: DateTime<Utc>, start: Option<DateTime<Utc>>) -> i64 {
    start.unwrap_or(time).timestamp()
}

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// Sort by entry and drop repeats (of equal entries, the one with the earliest time stays).
pub(super) fn sorted<K: Ord>(mut entries: Vec<(K, i64)>) -> Vec<(K, i64)> {
    // In place (a stable sort would allocate half the list again for every commit).
    entries.sort_unstable();
    entries.dedup_by(|a, b| a.0 == b.0);
    entries
}

/// What the store remembers about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateMeta {
    /// Key format version.
    pub key_format: u64,
    /// When the store was created.
    pub created: DateTime<Utc>,
    /// `now - backfill` at creation; `None` when backfill was `all`.
    pub first_run_horizon: Option<DateTime<Utc>>,
    /// The vault base URL last used with this store.
    pub vault: Option<String>,
    /// Until when end events are looked up under their own time too, as key format 1 filed them
    /// (set by a migration or an import of format 1; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_until: Option<DateTime<Utc>>,
}

/// Whether `path` holds a store (sled's `db` file), as opposed to a missing or empty directory.
/// Only the agent's first poll (and `state import`) create a store: one created by anything
/// else would record no first-run horizon, and the first poll would forward all of
/// `state.retention` instead of `source.backfill`.
pub fn store_exists(path: &Path) -> bool {
    path.join("db").is_file()
}

impl SledStore {
    /// Open (or create) the store at `path`, migrating a format-1 store. `first_run_horizon` is
    /// remembered only when the store is created.
    pub fn open(
        path: &Path,
        first_run_horizon: Option<DateTime<Utc>>,
        vault: Option<&str>,
    ) -> Result<SledStore, StateError> {
        create_private_dir(path)?;
        let config = sled_config(path)?;
        let max_entries = chunk::max_entries(config.segment_size);
        let db = config.open().map_err(|e| open_error(path, e))?;
        let chunks = ChunkTree::new(db.open_tree(CHUNKS_TREE)?, max_entries);
        let store = SledStore {
            path: path.to_path_buf(),
            db,
            chunks,
            legacy_until: AtomicI64::new(i64::MIN),
            commit_list: std::sync::Mutex::new(Vec::new()),
        };
        match store.db.get(META_FORMAT)? {
            None => {
                store.db.insert(META_FORMAT, &KEY_FORMAT.to_be_bytes())?;
                store.db.insert(META_CREATED, &Utc::now().timestamp().to_be_bytes())?;
                let first = first_run_horizon.map(|t| t.timestamp()).unwrap_or(i64::MIN);
                store.db.insert(META_FIRST_RUN, &first.to_be_bytes())?;
                store.db.insert(META_KEYS, &0u64.to_be_bytes())?;
                store.db.flush()?;
            }
            Some(v) => match v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) {
                1 => store.migrate_v1()?,
                KEY_FORMAT => {
                    if store.db.tree_names().iter().any(|n| n == EVENTS_TREE_V1.as_bytes()) {
                        // A migration that stopped after switching the format.
                        store.db.drop_tree(EVENTS_TREE_V1)?;
                    }
                }
                found => {
                    return Err(StateError::Format {
                        path: path.to_path_buf(),
                        found,
                        expected: KEY_FORMAT,
                    })
                }
            },
        }
        if let Some(v) = store.db.get(META_LEGACY_UNTIL)? {
            let until = v.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(i64::MAX);
            store.legacy_until.store(until, Ordering::Relaxed);
        }
        if let Some(vault) = vault {
            let previous = store.db.insert(META_VAULT, vault.as_bytes())?;
            if let Some(prev) = previous {
                if prev.as_ref() != vault.as_bytes() {
                    tracing::warn!(previous = %String::from_utf8_lossy(&prev), now = vault,
                        "State directory was used with another vault URL; keys are per session id, so nothing is lost, but use one state directory per vault");
                }
            }
        }
        Ok(store)
    }

    /// Rewrite a format-1 store's buckets as chunks, then switch the format. Interrupted, it
    /// starts over at the next open (the format switches last).
    fn migrate_v1(&self) -> Result<(), StateError> {
        let old = self.db.open_tree(EVENTS_TREE_V1)?;
        self.chunks.clear()?;
        let mut run = Vec::new();
        let (mut keys, mut legacy) = (0u64, i64::MIN);
        for item in old.iter() {
            let (k, v) = item?;
            for (time, packed) in bucket::decode(&k, &v)? {
                if is_end(&packed) {
                    legacy = legacy.max(time);
                }
                run.push((entry_key(time, &packed), time));
            }
            if run.len() >= INSERT_RUN {
                keys += run.len() as u64;
                let added = self.chunks.insert_sorted(&sorted(std::mem::take(&mut run)))?;
                self.count_keys(added as i64)?;
            }
        }
        keys += run.len() as u64;
        let added = self.chunks.insert_sorted(&sorted(run))?;
        self.count_keys(added as i64)?;
        self.db.flush()?;
        self.raise_legacy_until(legacy)?;
        self.db.insert(META_FORMAT, &KEY_FORMAT.to_be_bytes())?;
        self.db.flush()?;
        self.db.drop_tree(EVENTS_TREE_V1)?;
        self.db.flush()?;
        tracing::info!(keys, path = %self.path.display(), "Migrated the state store from key format 1 to {KEY_FORMAT}");
        Ok(())
    }

    pub(super) fn raise_legacy_until(&self, time: i64) -> Result<(), StateError> {
        if time > self.legacy_until.load(Ordering::Relaxed) {
            self.db.insert(META_LEGACY_UNTIL, &time.to_be_bytes())?;
            self.legacy_until.store(time, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Remember the vault's time zone; returns the previous one when it was different.
    /// Event times (and so where keys are filed) depend on the zone: after a change, events
    /// already delivered look new.
    pub fn remember_zone(&self, zone: &str) -> Result<Option<String>, StateError> {
        let previous = self.db.insert(META_ZONE, zone.as_bytes())?;
        Ok(previous
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .filter(|p| p != zone))
    }

    /// How many keys the store holds. Kept by commits, prunes, forgets, imports and the
    /// migration; a store from before the count existed is counted once, at the first call.
    pub fn key_count(&self) -> Result<u64, StateError> {
        if let Some(v) = self.db.get(META_KEYS)? {
            if let Ok(bytes) = <[u8; 8]>::try_from(v.as_ref()) {
                return Ok(u64::from_be_bytes(bytes));
            }
        }
        let mut n = 0u64;
        for chunk in self.chunks.chunks() {
            n = n.saturating_add(chunk?.len() as u64);
        }
        self.db.insert(META_KEYS, &n.to_be_bytes())?;
        Ok(n)
    }

    /// Move the kept key count by `delta` (not flushed: the change it counts flushes it).
    pub(super) fn count_keys(&self, delta: i64) -> Result<(), StateError> {
        if delta == 0 || self.db.get(META_KEYS)?.is_none() {
            // No count yet: `key_count` makes it from the keys themselves.
            return Ok(());
        }
        self.db.fetch_and_update(META_KEYS, |old| {
            let n = old
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let n = if delta >= 0 {
                n.saturating_add(delta.unsigned_abs())
            } else {
                n.saturating_sub(delta.unsigned_abs())
            };
            Some(n.to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's meta.
    pub fn meta(&self) -> Result<StateMeta, StateError> {
        let read_i64 = |k: &[u8]| -> Result<Option<i64>, StateError> {
            Ok(self
                .db
                .get(k)?
                .and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes)))
        };
        let first = read_i64(META_FIRST_RUN)?
            .filter(|&s| s != i64::MIN)
            .and_then(|s| Utc.timestamp_opt(s, 0).single());
        Ok(StateMeta {
            key_format: KEY_FORMAT,
            created: read_i64(META_CREATED)?
                .and_then(|s| Utc.timestamp_opt(s, 0).single())
                .unwrap_or_default(),
            first_run_horizon: first,
            vault: self
                .db
                .get(META_VAULT)?
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            legacy_until: Some(self.legacy_until.load(Ordering::Relaxed))
                .filter(|&s| s != i64::MIN)
                .and_then(|s| Utc.timestamp_opt(s, 0).single()),
        })
    }

    /// Remove keys whose event time is before `before`. Only chunks filed before it are read:
    /// a key is filed at or before its event time (a session's start precedes its end).
    pub fn prune(&self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let cutoff = before.timestamp();
        let bound = time_prefix(cutoff);
        let n = self.chunks.rewrite(Bound::Excluded(&bound[..]), |e| e.time >= cutoff)?;
        self.count_keys(-(n as i64))?;
        self.db.flush()?;
        Ok(n)
    }
}

impl Dedup for SledStore {
    fn contains(&self, time: DateTime<Utc>, start: Option<DateTime<Utc>>, key: KeyRef<'_>) -> Result<bool, StateError> {
        if self.chunks.contains(&lookup_entry(filed(time, start), key))? {
            return Ok(true);
        }
        // Keys from format 1 are filed under their own time.
        let legacy = start.is_some_and(|s| s != time) && time.timestamp() <= self.legacy_until.load(Ordering::Relaxed);
        Ok(legacy && self.chunks.contains(&lookup_entry(time.timestamp(), key))?)
    }

    fn commit(&self, delivered: &[Delivered]) -> Result<(), StateError> {
        // A poisoned lock only means an earlier commit panicked midway: the list is cleared anyway.
        let mut list = self
            .commit_list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut entries = std::mem::take(&mut *list);
        entries.clear();
        entries.extend(
            delivered
                .iter()
                .map(|d| (commit_entry(filed(d.time, d.start), d.key.as_ref()), d.time.timestamp())),
        );
        let mut entries = sorted(entries);
        let added = self.chunks.insert_sorted(&entries);
        // Only the room is kept: an entry too long to sit inline owns a block of its own.
        entries.clear();
        *list = entries;
        drop(list);
        let added = added?;
        self.count_keys(added as i64)?;
        self.db.flush()?;
        Ok(())
    }
}

fn open_error(path: &Path, e: sled::Error) -> StateError {
    // sled reports the exclusive lock of another process as an I/O error ("could not acquire
    // lock", WouldBlock).
    let locked = matches!(&e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
        || e.to_string().contains("could not acquire lock");
    if locked {
        return StateError::Locked {
            path: path.to_path_buf(),
        };
    }
    if let sled::Error::Io(io) = e {
        return super::dir::io_error(path, io);
    }
    StateError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Create `path` (and parents) with mode 0700, or check that it is the agent's own.
pub fn create_private_dir(path: &Path) -> Result<(), StateError> {
    super::dir::prepare(path)
}

#[cfg(test)]
#[path = "sled_store_tests.rs"]
mod tests;
