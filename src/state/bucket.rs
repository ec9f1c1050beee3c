//! Time buckets: the unit the sled store reads and writes. All delivered keys whose event time
//! falls in one [`BUCKET_SECS`] window are stored as one sled value, so a poll that commits a
//! million keys writes a few thousand values instead of a million (sled 0.34 spends ~10 µs and
//! a lot of memory per small insert), and lookups of a listing, which is in time order, hit a
//! few recently used buckets held decoded in memory.
//!
//! Value layout, repeated per entry: a tag byte (bit 0: phase end; bit 1: the session id is
//! packed lowercase hex), the stored id's length (u16, big-endian), the id (raw UTF-8, or two
//! hex digits per byte when packed, so a 40-hex session id takes 20 bytes), and the event time
//! as seconds after the bucket's start (u16, big-endian). About 25 bytes per key: the store's
//! size, and the memory sled uses to read it, scale with this.

use super::StateError;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// Width of one bucket.
pub const BUCKET_SECS: i64 = 600;
/// Decoded buckets kept in memory.
pub const CACHED_BUCKETS: usize = 32;
const SIGN: u64 = 1 << 63;

/// The bucket number of a time.
pub fn bucket_of(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(BUCKET_SECS)
}

/// The sled key of bucket `b`: its start time, sign-flipped big-endian, so byte order is time order.
pub fn bucket_key(b: i64) -> [u8; 8] {
    ((b.saturating_mul(BUCKET_SECS) as u64) ^ SIGN).to_be_bytes()
}

const TAG_END: u8 = 1;
const TAG_HEX: u8 = 2;

/// `<session_id>:<phase>` as stored: tag byte, then the id bytes (packed when hex).
fn pack(key: &str) -> Result<Vec<u8>, StateError> {
    let (sid, tag) = if let Some(sid) = key.strip_suffix(":end") {
        (sid, TAG_END)
    } else if let Some(sid) = key.strip_suffix(":start") {
        (sid, 0)
    } else {
        return Err(StateError::Io(format!(
            "`{key}` is not a <session_id>:start or <session_id>:end key"
        )));
    };
    let hex = !sid.is_empty() && sid.len() % 2 == 0 && sid.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let mut out = Vec::with_capacity(1 + sid.len());
    if hex {
        out.push(tag | TAG_HEX);
        out.extend(hex::decode(sid).expect("checked lowercase hex"));
    } else {
        out.push(tag);
        out.extend_from_slice(sid.as_bytes());
    }
    if out.len() > u16::MAX as usize {
        return Err(StateError::Io("session id longer than 64 KiB".into()));
    }
    Ok(out)
}

fn unpack(packed: &[u8]) -> String {
    let (tag, id) = (packed[0], &packed[1..]);
    let sid = if tag & TAG_HEX != 0 {
        hex::encode(id)
    } else {
        String::from_utf8_lossy(id).into_owned()
    };
    format!("{sid}:{}", if tag & TAG_END != 0 { "end" } else { "start" })
}

/// The bucket number of a sled key.
pub fn bucket_from_key(key: &[u8]) -> Result<i64, StateError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StateError::Io(format!("corrupt state bucket key of {} bytes", key.len())))?;
    Ok(((u64::from_be_bytes(bytes) ^ SIGN) as i64).div_euclid(BUCKET_SECS))
}

/// The keys of one bucket with their event times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Unix seconds of the bucket's start.
    base: i64,
    /// Packed key → seconds after `base`.
    entries: HashMap<Box<[u8]>, u16>,
}

impl Bucket {
    /// An empty bucket number `b`.
    pub fn empty(b: i64) -> Bucket {
        Bucket {
            base: b * BUCKET_SECS,
            entries: HashMap::new(),
        }
    }

    /// Decode the stored value of bucket `b`.
    pub fn decode(b: i64, mut v: &[u8]) -> Result<Bucket, StateError> {
        let corrupt = || StateError::Io(format!("corrupt state bucket {b} (truncated entry)"));
        let mut bucket = Bucket::empty(b);
        while !v.is_empty() {
            let len = u16::from_be_bytes(v.get(1..3).ok_or_else(corrupt)?.try_into().expect("2 bytes")) as usize;
            let entry = v.get(..3 + len + 2).ok_or_else(corrupt)?;
            let mut key = Vec::with_capacity(1 + len);
            key.push(entry[0]);
            key.extend_from_slice(&entry[3..3 + len]);
            let offset = u16::from_be_bytes(entry[3 + len..].try_into().expect("2 bytes"));
            bucket.entries.insert(key.into_boxed_slice(), offset);
            v = &v[3 + len + 2..];
        }
        Ok(bucket)
    }

    /// Encode for storage (sorted, so equal buckets store equal bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut sorted: Vec<(&[u8], u16)> = self.entries.iter().map(|(k, &t)| (&**k, t)).collect();
        sorted.sort_unstable_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        let mut out = Vec::with_capacity(sorted.iter().map(|(k, _)| 4 + k.len()).sum());
        for (k, t) in sorted {
            out.push(k[0]);
            out.extend_from_slice(&((k.len() - 1) as u16).to_be_bytes());
            out.extend_from_slice(&k[1..]);
            out.extend_from_slice(&t.to_be_bytes());
        }
        out
    }

    /// Is `key` in this bucket? (A malformed key never is.)
    pub fn contains(&self, key: &str) -> bool {
        pack(key).is_ok_and(|k| self.entries.contains_key(k.as_slice()))
    }

    /// Add `key` at `time` (unix seconds, within this bucket).
    pub fn insert(&mut self, key: &str, time: i64) -> Result<(), StateError> {
        let offset = (time - self.base).clamp(0, BUCKET_SECS - 1) as u16;
        self.entries.insert(pack(key)?.into_boxed_slice(), offset);
        Ok(())
    }

    /// Remove `key`; true when it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        pack(key).is_ok_and(|k| self.entries.remove(k.as_slice()).is_some())
    }

    /// Keep only entries at or after `cutoff` (unix seconds); returns how many were removed.
    pub fn retain_from(&mut self, cutoff: i64) -> usize {
        let before = self.entries.len();
        let base = self.base;
        self.entries.retain(|_, t| base + *t as i64 >= cutoff);
        before - self.entries.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (time, key) of every entry, in that order.
    pub fn sorted(&self) -> Vec<(i64, String)> {
        let mut v: Vec<(i64, String)> = self
            .entries
            .iter()
            .map(|(k, &t)| (self.base + t as i64, unpack(k)))
            .collect();
        v.sort_unstable();
        v
    }

    /// (is_end, time) of every entry, for counting.
    pub fn phases(&self) -> impl Iterator<Item = (bool, i64)> + '_ {
        self.entries
            .iter()
            .map(|(k, &t)| (k[0] & TAG_END != 0, self.base + t as i64))
    }
}

/// A few decoded buckets, most recently used last.
#[derive(Debug, Default)]
pub struct BucketCache {
    slots: Vec<(i64, Arc<Bucket>)>,
}

impl BucketCache {
    /// A cached bucket, marked as just used.
    pub fn get(&mut self, b: i64) -> Option<Arc<Bucket>> {
        let pos = self.slots.iter().rposition(|(n, _)| *n == b)?;
        let slot = self.slots.remove(pos);
        let bucket = slot.1.clone();
        self.slots.push(slot);
        Some(bucket)
    }

    /// Remember a bucket, evicting the least recently used.
    pub fn put(&mut self, b: i64, bucket: Arc<Bucket>) {
        self.slots.retain(|(n, _)| *n != b);
        if self.slots.len() >= CACHED_BUCKETS {
            self.slots.remove(0);
        }
        self.slots.push((b, bucket));
    }

    /// Forget everything (after a bulk change).
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trip_and_order() {
        let mut b = Bucket::empty(1);
        b.insert("e7acacb6aedbab70073456da5744166939b77527:end", 605).unwrap();
        b.insert("Odd Id|with:colons:start", 601).unwrap();
        b.insert("ABCDEF:start", 602).unwrap();
        assert!(b.insert("no-phase", 601).is_err());
        let bytes = b.encode();
        assert_eq!(bytes.len(), (4 + 20 + 1) + (4 + 18 + 1) + (4 + 6 + 1));
        let back = Bucket::decode(1, &bytes).unwrap();
        assert_eq!(back, b);
        assert_eq!(
            back.sorted(),
            vec![
                (601, "Odd Id|with:colons:start".to_string()),
                (602, "ABCDEF:start".to_string()),
                (605, "e7acacb6aedbab70073456da5744166939b77527:end".to_string())
            ]
        );
        assert!(back.contains("e7acacb6aedbab70073456da5744166939b77527:end"));
        assert!(!back.contains("e7acacb6aedbab70073456da5744166939b77527:start"));
        assert!(Bucket::decode(1, &bytes[..bytes.len() - 1]).is_err());
        let mut pruned = back.clone();
        assert_eq!(pruned.retain_from(602), 1);
        assert!(pruned.remove("ABCDEF:start") && !pruned.remove("ABCDEF:start"));
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        assert_eq!(bucket_of(t(599)), 0);
        assert_eq!(bucket_of(t(-1)), -1);
        assert!(bucket_key(-1) < bucket_key(0) && bucket_key(0) < bucket_key(1));
        assert_eq!(bucket_from_key(&bucket_key(-7)).unwrap(), -7);
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let mut c = BucketCache::default();
        for b in 0..CACHED_BUCKETS as i64 {
            c.put(b, Arc::new(Bucket::empty(b)));
        }
        assert!(c.get(0).is_some());
        c.put(1000, Arc::new(Bucket::empty(1000)));
        assert!(c.get(0).is_some(), "0 was used recently");
        assert!(c.get(1).is_none(), "1 was the least recently used");
    }
}
