//! Tests of `sled_store.rs` (and of the operator's commands on a real store).

use super::*;
use crate::key::EventKey;
use crate::state::chunk::pack;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).unwrap()
}

fn k(text: &str) -> EventKey {
    text.parse().unwrap()
}

fn d(key: &str, time: i64, start: Option<i64>) -> Delivered {
    Delivered {
        key: k(key),
        time: t(time),
        start: start.map(t),
    }
}

/// Open `path` again in this process: sled lets go of its lock on the store when its last
/// background job for the dropped handle ends, a moment after the drop, so a reopen at once
/// can find it still held. Retried for up to 5 s; any other error at once.
fn reopen(path: &Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SledStore::open(path, None, None) {
            Err(StateError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

#[test]
fn the_key_count_is_kept_without_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = SledStore::open(&path, None, None).unwrap();
    assert_eq!(store.key_count().unwrap(), 0);
    store
        .commit(&[d("a:end", 1000, Some(400)), d("b:start", 10, Some(10))])
        .unwrap();
    // A repeat of a known key adds nothing.
    store
        .commit(&[d("a:end", 1000, Some(400)), d("c:end", 20, None)])
        .unwrap();
    assert_eq!(store.key_count().unwrap(), 3);
    assert_eq!(store.prune(t(15)).unwrap(), 1);
    assert_eq!(store.forget(&[k("c:end")]).unwrap(), 1);
    assert_eq!(store.key_count().unwrap(), 1);
    drop(store);
    let store = reopen(&path);
    assert_eq!(store.key_count().unwrap(), 1, "kept across opens");
    assert_eq!(store.stats().unwrap().keys, 1, "and true");
}

#[test]
fn commit_contains_prune_export_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("s"), Some(t(100)), Some("https://v")).unwrap();
    assert!(!store.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap());
    store
        .commit(&[
            d("a:end", 1000, Some(400)),
            d("b:start", 10, Some(10)),
            d("c:end", 20, None),
        ])
        .unwrap();
    assert!(store.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap());
    assert!(store.contains(t(10), Some(t(10)), k("b:start").as_ref()).unwrap());
    assert!(store.contains(t(20), None, k("c:end").as_ref()).unwrap());
    assert!(!store.contains(t(1000), Some(t(400)), k("a:start").as_ref()).unwrap());
    assert!(
        !store.contains(t(1000), Some(t(401)), k("a:end").as_ref()).unwrap(),
        "filed under the start"
    );
    let stats = store.stats().unwrap();
    assert_eq!((stats.keys, stats.start, stats.end), (3, 1, 2));
    assert_eq!((stats.oldest, stats.newest), (Some(t(10)), Some(t(1000))));
    assert_eq!(store.meta().unwrap().first_run_horizon, Some(t(100)));
    assert_eq!(store.remember_zone("UTC").unwrap(), None);
    assert_eq!(store.remember_zone("UTC").unwrap(), None);
    assert_eq!(
        store.remember_zone("America/Sao_Paulo").unwrap().as_deref(),
        Some("UTC")
    );
    let mut out = Vec::new();
    assert_eq!(store.export(&mut out).unwrap(), 3);
    // a:end is filed under 400 but happened at 1000: pruning at 500 keeps it.
    assert_eq!(store.prune(t(500)).unwrap(), 2);
    assert!(!store.contains(t(10), Some(t(10)), k("b:start").as_ref()).unwrap());
    assert!(store.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap());
    assert_eq!(store.forget(&[k("a:end")]).unwrap(), 1);
    assert!(!store.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap());
    let other = SledStore::open(&dir.path().join("o"), None, None).unwrap();
    assert_eq!(other.import(&mut out.as_slice()).unwrap(), 3);
    assert!(other.contains(t(10), Some(t(10)), k("b:start").as_ref()).unwrap());
    assert!(other.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap());
    assert!(other.contains(t(20), None, k("c:end").as_ref()).unwrap());
    assert_eq!(
        other.list().next().unwrap().unwrap(),
        (k("b:start"), t(10)),
        "filing order"
    );
    assert_eq!(other.meta().unwrap().first_run_horizon, Some(t(100)));
}

/// The simulator's `--history 1h` shape: 200,000 sessions started over one hour, ends up to
/// two hours later but never after the listing's time, so three quarters end in the same
/// second.
fn dense_hour() -> Vec<Delivered> {
    let base = 1_768_478_400;
    (0..200_000i64)
        .map(|i| {
            let start = base - 3600 + 3600 * i / 200_000;
            // 40 hex digits and no padding, like the vault's session ids (entries of ~26 bytes).
            let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let sid = format!(
                "{h:016x}{:016x}{:08x}",
                h.rotate_left(29) ^ 0x5851_F42D_4C95_7F2D,
                h >> 32
            );
            if i % 100 == 0 {
                d(&format!("{sid}:start"), start, Some(start))
            } else {
                d(
                    &format!("{sid}:end"),
                    (start + 5 + (i * 7919) % 7200).min(base),
                    Some(start),
                )
            }
        })
        .collect()
}

/// The log segment size a store at `path` has on disk.
fn segment_of(path: &Path) -> usize {
    sled_config(path).unwrap().segment_size
}

/// The log segment size of every store made before `SEGMENT_BYTES` grew.
const OLD_SEGMENT: usize = 128 * 1024;

/// A sled database with the log segments of a store made before `SEGMENT_BYTES` grew.
fn sled_of_old_segments(path: &Path) -> sled::Db {
    sled::Config::new().path(path).segment_size(OLD_SEGMENT).open().unwrap()
}

#[test]
fn dense_hour_stays_correct() {
    for made_before in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        if made_before {
            // Empty: the agent adds its own records to it on its first open.
            sled_of_old_segments(dir.path()).flush().unwrap();
        }
        dense_hour_in(dir.path());
        // The store keeps its segment size (sled refuses another) and the chunk bound that
        // goes with it, so its leaves still fit its segments.
        let store = reopen(dir.path());
        let (segment, bound) = if made_before {
            (OLD_SEGMENT, 192)
        } else {
            (SEGMENT_BYTES, 385)
        };
        assert_eq!(segment_of(dir.path()), segment);
        assert_eq!(chunk::max_entries(segment), bound);
        let chunks: Vec<_> = store.chunks.chunks().map(Result::unwrap).collect();
        let largest = chunks.iter().map(|c| c.len()).max().unwrap();
        assert!(largest <= bound && largest > bound * 3 / 4, "largest chunk {largest}");
        // Entries as large as real ones make (about 26 bytes), so that leaves are too.
        let bytes: usize = chunks.iter().map(|c| c.encode().len()).sum();
        let keys: usize = chunks.iter().map(|c| c.len()).sum();
        assert!(bytes / keys >= 24, "{bytes} bytes for {keys} keys");
    }
}

/// A first poll of a dense hour into the store at `path`: every key found, none twice, no blob
/// file, prune removes exactly the keys older than the cutoff.
fn dense_hour_in(path: &Path) {
    let store = SledStore::open(path, None, None).unwrap();
    let all = dense_hour();
    for batch in all.chunks(10_000) {
        assert!(batch
            .iter()
            .all(|x| !store.contains(x.time, x.start, x.key.as_ref()).unwrap()));
        store.commit(batch).unwrap();
    }
    assert!(
        all.iter()
            .all(|x| store.contains(x.time, x.start, x.key.as_ref()).unwrap()),
        "every key found"
    );
    assert_eq!(store.stats().unwrap().keys, 200_000);
    // Every leaf stayed in sled's log (vendor/PATCHES.md, change 5, and `chunk::max_entries`):
    // a leaf over its inline limit is written to a file of its own under blobs/ at every rewrite.
    store.db.flush().unwrap();
    let blobs = std::fs::read_dir(path.join("blobs")).unwrap().count();
    assert_eq!(blobs, 0, "sled wrote {blobs} blob files");
    let cutoff = 1_768_478_400 - 1800;
    let expect = all.iter().filter(|x| x.time.timestamp() < cutoff).count();
    assert!(expect > 10_000, "{expect}");
    assert_eq!(store.prune(t(cutoff)).unwrap(), expect);
    for x in &all {
        assert_eq!(
            store.contains(x.time, x.start, x.key.as_ref()).unwrap(),
            x.time.timestamp() >= cutoff
        );
    }
    assert_eq!(store.stats().unwrap().keys as usize, 200_000 - expect);
}

/// sled's log cleaner moves the live pages out of segments left at most half full, and a
/// segment recovered at open is cleaned after the first flush (vendor/PATCHES.md, change 6,
/// changed how a segment records its pages). A store written, pruned, reopened, written again
/// while the cleaner runs, and reopened once more still knows exactly its keys.
#[test]
fn a_store_cleaned_across_reopens_keeps_exactly_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let all = dense_hour();
    let (first, later) = all.split_at(150_000);
    let store = SledStore::open(dir.path(), None, None).unwrap();
    for batch in first.chunks(5_000) {
        store.commit(batch).unwrap();
    }
    // Prune a third, spread over every chunk: every leaf is rewritten, and the segments that
    // held them are left sparse.
    let cutoff = 1_768_478_400;
    let pruned = store.prune(t(cutoff)).unwrap();
    assert!(pruned > 40_000, "{pruned}");
    drop(store);
    let store = reopen(dir.path());
    for batch in later.chunks(5_000) {
        store.commit(batch).unwrap();
        // The flusher cleans segments in the background every half second.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    store.db.flush().unwrap();
    drop(store);
    let store = reopen(dir.path());
    let kept = |x: &Delivered| x.time.timestamp() >= cutoff;
    for x in first {
        assert_eq!(
            store.contains(x.time, x.start, x.key.as_ref()).unwrap(),
            kept(x),
            "{:?}",
            x.key
        );
    }
    assert!(later
        .iter()
        .all(|x| store.contains(x.time, x.start, x.key.as_ref()).unwrap()));
    let expect = first.iter().filter(|x| kept(x)).count() + later.len();
    assert_eq!(store.stats().unwrap().keys as usize, expect);
    // The log stays proportional to the keys: 62–70 bytes a key here (40-hex ids, a third of
    // every leaf rewritten by the prune); the cleaner moves five or six pages in this test (a
    // scratch build that logged them), too few to change that.
    let size = std::fs::metadata(dir.path().join("db")).unwrap().len();
    assert!(size / expect as u64 <= 90, "{size} bytes for {expect} keys");
}

/// Write a format-1 store the way the previous release laid it out (128 KiB log segments).
fn format_1_store(path: &Path, keys: &[(i64, &str)]) {
    let db = sled_of_old_segments(path);
    db.insert(META_FORMAT, &1u64.to_be_bytes()).unwrap();
    db.insert(META_CREATED, &5i64.to_be_bytes()).unwrap();
    db.insert(META_FIRST_RUN, &i64::MIN.to_be_bytes()).unwrap();
    let events = db.open_tree(EVENTS_TREE_V1).unwrap();
    let mut by_bucket: std::collections::BTreeMap<i64, Vec<(i64, Vec<u8>)>> = Default::default();
    for (time, key) in keys {
        by_bucket
            .entry(time.div_euclid(bucket::BUCKET_SECS) * bucket::BUCKET_SECS)
            .or_default()
            .push((*time, pack(k(key).as_ref())));
    }
    for (base, entries) in by_bucket {
        let (k, v) = bucket::encode(base, &entries);
        events.insert(k, v).unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn format_1_is_migrated_and_still_known() {
    let dir = tempfile::tempdir().unwrap();
    format_1_store(
        dir.path(),
        &[(1000, "a:end"), (100, "b:start"), (2000, "c:end"), (-30, "d:start")],
    );
    let store = reopen(dir.path());
    assert_eq!(store.stats().unwrap().keys, 4);
    assert_eq!(store.stats().unwrap().meta.key_format, 2);
    assert!(store.contains(t(100), Some(t(100)), k("b:start").as_ref()).unwrap());
    assert!(store.contains(t(-30), Some(t(-30)), k("d:start").as_ref()).unwrap());
    // End keys were filed under their own time: found whatever the start.
    assert!(store.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap());
    assert!(store.contains(t(2000), None, k("c:end").as_ref()).unwrap());
    assert!(!store.contains(t(1000), Some(t(400)), k("c:end").as_ref()).unwrap());
    // New keys are filed under the start.
    store.commit(&[d("e:end", 2500, Some(1500))]).unwrap();
    assert!(store.contains(t(2500), Some(t(1500)), k("e:end").as_ref()).unwrap());
    drop(store);
    let store = reopen(dir.path());
    assert!(
        store.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap(),
        "after reopening"
    );
    assert_eq!(store.stats().unwrap().keys, 5);
    let mut out = Vec::new();
    store.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"key_format\":2"), "{text}");
    assert_eq!(segment_of(dir.path()), OLD_SEGMENT, "the store keeps its segments");
    // Its export, imported into a new store (README, "Recovering the state"), still finds the
    // end keys format 1 filed under their own time.
    let moved = tempfile::tempdir().unwrap();
    let other = SledStore::open(moved.path(), None, None).unwrap();
    other.import(&mut text.as_bytes()).unwrap();
    assert!(
        other.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap(),
        "{text}"
    );
    assert_eq!(other.meta().unwrap().legacy_until, store.meta().unwrap().legacy_until);
    assert_eq!(segment_of(moved.path()), SEGMENT_BYTES);
}

/// sled records a store's segment size in `conf` before it writes the log: a log without that
/// record is refused, naming the file, rather than read with a guessed size.
#[test]
fn a_store_without_its_segment_size_is_refused() {
    for damage in ["remove", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), None, None).unwrap();
        store.commit(&[d("a:start", 100, Some(100))]).unwrap();
        drop(store);
        let conf = dir.path().join("conf");
        match damage {
            "remove" => std::fs::remove_file(&conf).unwrap(),
            _ => std::fs::write(&conf, b"segm").unwrap(),
        }
        let err = SledStore::open(dir.path(), None, None).err().expect("refused");
        assert!(
            matches!(&err, StateError::Open { path, .. } if *path == conf),
            "{damage}: {err}"
        );
        assert!(err.to_string().contains("segments"), "{err}");
    }
}

#[test]
fn format_1_export_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), None, None).unwrap();
    let export = concat!(
        r#"{"meta":{"key_format":1,"created":"2026-01-01T00:00:00Z","first_run_horizon":null,"vault":null}}"#,
        "\n",
        r#"{"key":"a:end","time":"1970-01-01T00:16:40Z"}"#,
        "\n"
    );
    assert_eq!(store.import(&mut export.as_bytes()).unwrap(), 1);
    assert!(store.contains(t(1000), Some(t(400)), k("a:end").as_ref()).unwrap());
    let bad = r#"{"meta":{"key_format":7,"created":"2026-01-01T00:00:00Z","first_run_horizon":null,"vault":null}}"#;
    assert!(matches!(
        store.import(&mut bad.as_bytes()),
        Err(StateError::Import { line: 1, .. })
    ));
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

/// An import whose meta line holds a first-run horizon after now is refused, and the store's
/// horizon stays: it would skip every event until then, with no command to lower it.
#[test]
fn an_import_with_a_future_horizon_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("s"), Some(t(100)), None).unwrap();
    let future =
        r#"{"meta":{"key_format":2,"created":"2026-01-01T00:00:00Z","first_run_horizon":"2099-01-01T00:00:00Z"}}"#;
    let err = store.import(&mut future.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("in the future"), "{err}");
    assert_eq!(store.meta().unwrap().first_run_horizon, Some(t(100)));
}
