//! The sled implementation of the dedup store, plus the operator's view of it (stats, list,
//! forget, prune, export, import). The directory is created 0700 and the process umask keeps
//! sled's files 0600. sled takes an exclusive lock, so a second agent fails at once.
//!
//! Key format 1: the `events` tree holds one value per time bucket (see `bucket.rs`), keyed
//! by the bucket's start time so that byte order is time order. Lookups go through a small
//! cache of decoded buckets; commits rewrite the buckets they touch in one `apply_batch`, then
//! flush.

use super::bucket::{bucket_from_key, bucket_key, bucket_of, Bucket, BucketCache};
use super::{Dedup, Delivered, StateError, KEY_FORMAT};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const EVENTS_TREE: &str = "events";
const META_FORMAT: &[u8] = b"key_format";
const META_FIRST_RUN: &[u8] = b"first_run_horizon";
const META_CREATED: &[u8] = b"created";
const META_VAULT: &[u8] = b"vault";
const META_ZONE: &[u8] = b"timezone";
/// Page cache size: small, the store is read mostly once per key per poll.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// sled's log segment (and IO buffer) size; the 512 KiB default costs ~20 MiB more peak RSS
/// during a million-key first poll (measured with benches/e2e.sh).
const SEGMENT_BYTES: usize = 128 * 1024;

/// The sled-backed store.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    events: sled::Tree,
    cache: Mutex<BucketCache>,
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
}

/// Counts for `state stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// All remembered keys.
    pub keys: u64,
    /// Keys of start events.
    pub start: u64,
    /// Keys of end events.
    pub end: u64,
    /// Oldest remembered event time.
    pub oldest: Option<DateTime<Utc>>,
    /// Newest remembered event time.
    pub newest: Option<DateTime<Utc>>,
    /// Bytes on disk.
    pub size_on_disk: u64,
    /// The store's meta.
    pub meta: StateMeta,
}

/// One line of an export: the meta line first, then one line per key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExportLine {
    /// The header line.
    Meta {
        /// The exported store's meta.
        meta: StateMeta,
    },
    /// One delivered key.
    Key {
        /// `<session_id>:<phase>`.
        key: String,
        /// Event time.
        time: DateTime<Utc>,
    },
}

impl SledStore {
    /// Open (or create) the store at `path`. `first_run_horizon` is remembered only when the
    /// store is created.
    pub fn open(
        path: &Path,
        first_run_horizon: Option<DateTime<Utc>>,
        vault: Option<&str>,
    ) -> Result<SledStore, StateError> {
        create_private_dir(path)?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .segment_size(SEGMENT_BYTES)
            .open()
            .map_err(|e| open_error(path, e))?;
        let events = db.open_tree(EVENTS_TREE)?;
        let store = SledStore {
            path: path.to_path_buf(),
            db,
            events,
            cache: Mutex::new(BucketCache::default()),
        };
        match store.db.get(META_FORMAT)? {
            None => {
                store.db.insert(META_FORMAT, &KEY_FORMAT.to_be_bytes())?;
                store.db.insert(META_CREATED, &Utc::now().timestamp().to_be_bytes())?;
                let first = first_run_horizon.map(|t| t.timestamp()).unwrap_or(i64::MIN);
                store.db.insert(META_FIRST_RUN, &first.to_be_bytes())?;
                store.db.flush()?;
            }
            Some(v) => {
                let found = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                if found != KEY_FORMAT {
                    return Err(StateError::Format {
                        path: path.to_path_buf(),
                        found,
                        expected: KEY_FORMAT,
                    });
                }
            }
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

    /// Remember the vault's time zone; returns the previous one when it was different.
    /// Event times (and so the store's buckets) depend on the zone: after a change, events
    /// already delivered look new.
    pub fn remember_zone(&self, zone: &str) -> Result<Option<String>, StateError> {
        let previous = self.db.insert(META_ZONE, zone.as_bytes())?;
        Ok(previous
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .filter(|p| p != zone))
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
        })
    }

    /// Counts, times and size.
    pub fn stats(&self) -> Result<Stats, StateError> {
        let (mut keys, mut start, mut end) = (0, 0, 0);
        let (mut oldest, mut newest): (Option<i64>, Option<i64>) = (None, None);
        for item in self.events.iter() {
            let (k, v) = item?;
            for (is_end, t) in Bucket::decode(bucket_from_key(&k)?, &v)?.phases() {
                keys += 1;
                if is_end {
                    end += 1;
                } else {
                    start += 1;
                }
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
        let at = |s: Option<i64>| s.and_then(|s| Utc.timestamp_opt(s, 0).single());
        Ok(Stats {
            keys,
            start,
            end,
            oldest: at(oldest),
            newest: at(newest),
            size_on_disk: self.db.size_on_disk()?,
            meta: self.meta()?,
        })
    }

    /// Every key with its event time, in time order.
    pub fn list(&self) -> impl Iterator<Item = Result<(String, DateTime<Utc>), StateError>> + '_ {
        self.events.iter().flat_map(|item| {
            let entries: Vec<Result<(String, DateTime<Utc>), StateError>> = match item
                .map_err(StateError::from)
                .and_then(|(k, v)| Bucket::decode(bucket_from_key(&k)?, &v))
            {
                Ok(bucket) => bucket
                    .sorted()
                    .into_iter()
                    .map(|(t, k)| Ok((k, Utc.timestamp_opt(t, 0).single().unwrap_or_default())))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            entries
        })
    }

    /// Rewrite every bucket through `edit` (which returns how many entries it removed).
    fn rewrite(
        &self,
        range: impl std::ops::RangeBounds<[u8; 8]>,
        mut edit: impl FnMut(&mut Bucket) -> usize,
    ) -> Result<usize, StateError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self.events.range(range) {
            let (k, v) = item?;
            let mut bucket = Bucket::decode(bucket_from_key(&k)?, &v)?;
            let n = edit(&mut bucket);
            if n > 0 {
                removed += n;
                if bucket.is_empty() {
                    batch.remove(k);
                } else {
                    batch.insert(k, bucket.encode());
                }
            }
        }
        self.events.apply_batch(batch)?;
        self.db.flush()?;
        self.cache.lock().expect("bucket cache lock").clear();
        Ok(removed)
    }

    /// Forget keys (so their events are forwarded again if the vault still lists them).
    /// Keys are `<session_id>:<phase>`; the whole store is scanned (an operator's command).
    pub fn forget(&self, keys: &[String]) -> Result<usize, StateError> {
        self.rewrite(.., |bucket| keys.iter().filter(|k| bucket.remove(k)).count())
    }

    /// Remove keys whose event time is before `before` (only the expired buckets are read).
    pub fn prune(&self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let cutoff = before.timestamp();
        self.rewrite(..=bucket_key(bucket_of(before)), |bucket| bucket.retain_from(cutoff))
    }

    /// The bucket `b`, from the cache or the tree.
    fn bucket(&self, cache: &mut BucketCache, b: i64) -> Result<Arc<Bucket>, StateError> {
        if let Some(bucket) = cache.get(b) {
            return Ok(bucket);
        }
        let bucket = Arc::new(match self.events.get(bucket_key(b))? {
            Some(v) => Bucket::decode(b, &v)?,
            None => Bucket::empty(b),
        });
        cache.put(b, bucket.clone());
        Ok(bucket)
    }

    /// Write the meta line and every key as JSON lines.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64, StateError> {
        let io = |e: std::io::Error| StateError::Io(format!("export: {e}"));
        let line = serde_json::to_string(&ExportLine::Meta { meta: self.meta()? })
            .map_err(|e| StateError::Io(e.to_string()))?;
        writeln!(out, "{line}").map_err(io)?;
        let mut n = 0;
        for item in self.list() {
            let (key, time) = item?;
            let line =
                serde_json::to_string(&ExportLine::Key { key, time }).map_err(|e| StateError::Io(e.to_string()))?;
            writeln!(out, "{line}").map_err(io)?;
            n += 1;
        }
        out.flush().map_err(io)?;
        Ok(n)
    }

    /// Read an export; keys are added (existing ones kept), and the first-run horizon is taken
    /// from the export when it is later than the store's.
    pub fn import(&self, input: &mut dyn BufRead) -> Result<u64, StateError> {
        let mut batch = Vec::new();
        let mut n = 0;
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|e| StateError::Import {
                line: i + 1,
                message: e.to_string(),
            })?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<ExportLine>(&line) {
                Ok(ExportLine::Meta { meta }) => {
                    if meta.key_format != KEY_FORMAT {
                        return Err(StateError::Import {
                            line: i + 1,
                            message: format!(
                                "export has key format {}, this build reads {KEY_FORMAT}",
                                meta.key_format
                            ),
                        });
                    }
                    let ours = self.meta()?.first_run_horizon;
                    if let Some(theirs) = meta.first_run_horizon {
                        if ours.is_none_or(|o| theirs > o) {
                            self.db.insert(META_FIRST_RUN, &theirs.timestamp().to_be_bytes())?;
                        }
                    }
                }
                Ok(ExportLine::Key { key, time }) => {
                    batch.push(Delivered { key, time });
                    n += 1;
                    if batch.len() >= 10_000 {
                        self.commit(&batch)?;
                        batch.clear();
                    }
                }
                Err(e) => {
                    return Err(StateError::Import {
                        line: i + 1,
                        message: e.to_string(),
                    })
                }
            }
        }
        self.commit(&batch)?;
        Ok(n)
    }
}

impl Dedup for SledStore {
    fn contains(&self, time: DateTime<Utc>, key: &str) -> Result<bool, StateError> {
        let mut cache = self.cache.lock().expect("bucket cache lock");
        Ok(self.bucket(&mut cache, bucket_of(time))?.contains(key))
    }

    fn commit(&self, delivered: &[Delivered]) -> Result<(), StateError> {
        let mut by_bucket: BTreeMap<i64, Vec<&Delivered>> = BTreeMap::new();
        for d in delivered {
            by_bucket.entry(bucket_of(d.time)).or_default().push(d);
        }
        let mut cache = self.cache.lock().expect("bucket cache lock");
        let mut batch = sled::Batch::default();
        let mut updated = Vec::with_capacity(by_bucket.len());
        for (b, items) in by_bucket {
            let mut bucket = Arc::unwrap_or_clone(self.bucket(&mut cache, b)?);
            for d in items {
                bucket.insert(&d.key, d.time.timestamp())?;
            }
            batch.insert(&bucket_key(b), bucket.encode());
            updated.push((b, Arc::new(bucket)));
        }
        self.events.apply_batch(batch)?;
        self.db.flush()?;
        for (b, bucket) in updated {
            cache.put(b, bucket);
        }
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
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[test]
    fn commit_contains_prune_export_import() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("s"), Some(t(100)), Some("https://v")).unwrap();
        assert!(!store.contains(t(1000), "a:end").unwrap());
        store
            .commit(&[
                Delivered {
                    key: "a:end".into(),
                    time: t(1000),
                },
                Delivered {
                    key: "b:start".into(),
                    time: t(10),
                },
            ])
            .unwrap();
        assert!(store.contains(t(1000), "a:end").unwrap());
        assert!(
            store.contains(t(1001), "a:end").unwrap(),
            "a time in the same bucket finds it"
        );
        assert!(
            !store.contains(t(1600), "a:end").unwrap(),
            "the time's bucket is part of the key"
        );
        let stats = store.stats().unwrap();
        assert_eq!((stats.keys, stats.start, stats.end), (2, 1, 1));
        assert_eq!(store.meta().unwrap().first_run_horizon, Some(t(100)));
        assert_eq!(store.remember_zone("UTC").unwrap(), None);
        assert_eq!(store.remember_zone("UTC").unwrap(), None);
        assert_eq!(
            store.remember_zone("America/Sao_Paulo").unwrap().as_deref(),
            Some("UTC")
        );
        let mut out = Vec::new();
        assert_eq!(store.export(&mut out).unwrap(), 2);
        assert_eq!(store.prune(t(500)).unwrap(), 1);
        assert!(!store.contains(t(10), "b:start").unwrap());
        assert!(store.contains(t(1000), "a:end").unwrap());
        assert_eq!(store.forget(&["a:end".to_string()]).unwrap(), 1);
        assert!(!store.contains(t(1000), "a:end").unwrap());
        let other = SledStore::open(&dir.path().join("o"), None, None).unwrap();
        assert_eq!(other.import(&mut out.as_slice()).unwrap(), 2);
        assert!(other.contains(t(10), "b:start").unwrap());
        assert_eq!(
            other.list().next().unwrap().unwrap(),
            ("b:start".to_string(), t(10)),
            "time order"
        );
        assert_eq!(other.meta().unwrap().first_run_horizon, Some(t(100)));
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _a = SledStore::open(dir.path(), None, None).unwrap();
        // sled's lock is per process file lock; within one process a second open of the same
        // path is refused too.
        match SledStore::open(dir.path(), None, None) {
            Err(StateError::Locked { .. }) => {}
            other => panic!("expected Locked, got {:?}", other.err()),
        }
    }
}
