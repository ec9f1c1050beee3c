//! Chunks: the unit the sled store reads and writes (key format 2).
//!
//! Every delivered key becomes an *entry*: a byte string that sorts by the time the key is filed
//! under (the session's start when the record has one, else the event's own time; see
//! `sled_store.rs`), then by the key itself, plus the event's own time (for pruning). The
//! entries, in order, are cut into chunks of at most [`max_entries`]; each chunk is one sled
//! value, stored under its first entry, and covers the entries from its own sled key up to the
//! next chunk's. A chunk's size is bounded whatever the density of sessions in time, so reading,
//! decoding and rewriting one costs the same in a listing of 1,000 sessions a day or 1,000 a
//! second.
//!
//! Entry bytes: the filing time (unix seconds, sign-flipped big-endian, so byte order is time
//! order), a tag byte (bit 0: phase end; bit 1: the session id is packed lowercase hex), and the
//! id (raw UTF-8, or two hex digits per byte when packed, so a 40-hex id takes 20 bytes).
//!
//! Value layout, repeated per entry: the length of the prefix shared with the previous entry
//! (varint), the length of the rest (varint), the rest, and the event time minus the filing time
//! (zigzag varint). About 26 bytes per key for 40-hex session ids.

use super::StateError;
use crate::key::{EventKey, KeyRef, Phase};

/// Chunks a sled leaf holds at most: it splits past 16 items, on its next write.
const LEAF_CHUNKS: usize = 17;
/// Bytes an entry may take in a chunk, about, for the leaf to stay inside one log segment (the
/// leaf's keys and headers take a little more): 40-hex session ids take about 26 (31 at most,
/// with no prefix shared with the entry before).
const ENTRY_BYTES: usize = 40;

/// Entries per chunk, at most, in a store whose sled log segments are `segment` bytes
/// (`sled_store.rs`): 385 in the 256 KiB segments of a new store, 192 in the 128 KiB ones of
/// a store made before. sled keeps about 110 bytes in memory for every page of an open store,
/// read or not, so larger chunks make fewer pages; but a leaf (up to 17 chunks) larger than a
/// segment is written to a file of its own under `blobs/` at every rewrite (vendor/PATCHES.md,
/// change 5), so a leaf of chunks of entries of about 40 bytes must fit in one. Ids longer than
/// about 40 bytes still make blob files. Chunks written with another bound (64 entries, earlier)
/// are read as they are, and merged and split by this one when they next change.
pub fn max_entries(segment: usize) -> usize {
    (segment / (LEAF_CHUNKS * ENTRY_BYTES)).max(1)
}
const SIGN: u64 = 1 << 63;
const TAG_END: u8 = 1;
const TAG_HEX: u8 = 2;

/// The 8 leading bytes of every entry filed at `secs`.
pub fn time_prefix(secs: i64) -> [u8; 8] {
    ((secs as u64) ^ SIGN).to_be_bytes()
}

fn prefix_time(entry: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    let n = entry.len().min(8);
    b[..n].copy_from_slice(&entry[..n]);
    (u64::from_be_bytes(b) ^ SIGN) as i64
}

/// A key as stored: tag byte, then the id bytes (packed when hex).
pub fn pack(key: KeyRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.session_id.len());
    pack_into(key, &mut out);
    out
}

/// Lowercase hex digit values; 0xff for every other byte.
const NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Pack `id` (lowercase hex of an even length) two digits to a byte into `out`, which must be
/// `id.len() / 2` long; false (and `out` partly written) when `id` is not such hex.
fn pack_hex(id: &[u8], out: &mut [u8]) -> bool {
    if id.is_empty() || id.len() % 2 != 0 || out.len() != id.len() / 2 {
        return false;
    }
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(id.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= hi | lo;
        *o = hi << 4 | (lo & 0x0f);
    }
    bad & 0xf0 == 0
}

fn tag_of(key: KeyRef<'_>) -> u8 {
    if key.phase == Phase::End {
        TAG_END
    } else {
        0
    }
}

/// Write `key` as stored (tag byte, then the id: packed when it is lowercase hex of an even
/// length, raw otherwise) at the start of `out`; its length, or `None` when it does not fit.
fn pack_to(key: KeyRef<'_>, out: &mut [u8]) -> Option<usize> {
    let id = key.session_id.as_bytes();
    let hex_len = 1 + id.len() / 2;
    if let Some(hex) = out.get_mut(..hex_len) {
        hex[0] = tag_of(key) | TAG_HEX;
        if pack_hex(id, &mut hex[1..]) {
            return Some(hex_len);
        }
    }
    let raw = out.get_mut(..1 + id.len())?;
    raw[0] = tag_of(key);
    raw[1..].copy_from_slice(id);
    Some(raw.len())
}

/// [`pack`], appended to `out`.
pub fn pack_into(key: KeyRef<'_>, out: &mut Vec<u8>) {
    let mark = out.len();
    out.resize(mark + 1 + key.session_id.len(), 0);
    // The raw form always fits in `1 + id.len()`.
    if let Some(n) = pack_to(key, &mut out[mark..]) {
        out.truncate(mark + n);
    }
}

/// The key of a packed key (tag byte first).
pub fn unpack(packed: &[u8]) -> EventKey {
    let (tag, id) = packed.split_first().map_or((0, &[][..]), |(t, id)| (*t, id));
    let sid = if tag & TAG_HEX != 0 {
        hex::encode(id)
    } else {
        String::from_utf8_lossy(id).into_owned()
    };
    EventKey::new(sid, if tag & TAG_END != 0 { Phase::End } else { Phase::Start })
}

/// Is the packed key (tag byte first) an end key?
pub fn is_end(packed: &[u8]) -> bool {
    packed.first().is_some_and(|t| t & TAG_END != 0)
}

/// The entry bytes of a packed key filed at `filed` (unix seconds).
pub fn entry_key(filed: i64, packed: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + packed.len());
    k.extend_from_slice(&time_prefix(filed));
    k.extend_from_slice(packed);
    k
}

/// The entry bytes of `key` filed at `filed`, built in one allocation (for a commit).
pub fn entry_of(filed: i64, key: KeyRef<'_>) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.session_id.len());
    k.extend_from_slice(&time_prefix(filed));
    pack_into(key, &mut k);
    k
}

/// An entry built for a commit: inline for ids up to 23 bytes packed (the vault's 40 hex
/// digits pack to 20), so a commit does not allocate once per key.
pub type CommitEntry = smallvec::SmallVec<[u8; 32]>;

/// The entry bytes of `key` filed at `filed`, for a commit (the same bytes as [`entry_of`]).
pub fn commit_entry(filed: i64, key: KeyRef<'_>) -> CommitEntry {
    inline_entry(filed, key)
}

/// An entry built for one lookup: on the stack for ids up to 55 bytes (the vault's are 40 hex
/// digits, 20 bytes packed), so looking up a known event allocates nothing.
pub type LookupEntry = smallvec::SmallVec<[u8; 64]>;

/// The entry bytes of `key` filed at `filed`, for a lookup (the same bytes as [`entry_of`]).
pub fn lookup_entry(filed: i64, key: KeyRef<'_>) -> LookupEntry {
    inline_entry(filed, key)
}

/// [`entry_of`] written into the inline room of a `SmallVec`, or on the heap when it does not fit.
fn inline_entry<A: smallvec::Array<Item = u8>>(filed: i64, key: KeyRef<'_>) -> smallvec::SmallVec<A> {
    let mut entry = smallvec::SmallVec::<A>::new();
    entry.extend_from_slice(&time_prefix(filed));
    entry.resize(A::size().max(8), 0);
    match pack_to(key, &mut entry[8..]) {
        Some(n) => {
            entry.truncate(8 + n);
            entry
        }
        None => smallvec::SmallVec::from_vec(entry_of(filed, key)),
    }
}

/// One entry, borrowed from a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The entry bytes (filing time, tag, id).
    pub key: &'a [u8],
    /// The event's own time, unix seconds.
    pub time: i64,
}

impl Entry<'_> {
    /// The filing time, unix seconds.
    pub fn filed(&self) -> i64 {
        prefix_time(self.key)
    }

    /// The packed key (tag byte, id).
    pub fn packed(&self) -> &[u8] {
        self.key.get(8..).unwrap_or_default()
    }
}

/// A decoded chunk: sorted entries, their bytes back to back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    times: Vec<i64>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(v: &mut &[u8]) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = v.split_first()?;
        *v = rest;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

impl Chunk {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Entry<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Entry {
            key: &self.bytes[start..self.ends[i] as usize],
            time: self.times[i],
        }
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The first entry's bytes (the chunk's sled key), if any.
    pub fn first_key(&self) -> Option<&[u8]> {
        (!self.is_empty()).then(|| self.get(0).key)
    }

    /// Append an entry; it must sort after the last one.
    pub fn push(&mut self, key: &[u8], time: i64) {
        debug_assert!(self.is_empty() || self.get(self.len() - 1).key < key);
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len() as u32);
        self.times.push(time);
    }

    /// Where `key` is (`Ok`) or would go (`Err`).
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).key.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Is `key` here?
    pub fn contains(&self, key: &[u8]) -> bool {
        self.search(key).is_ok()
    }

    /// Decode a stored value.
    pub fn decode(mut v: &[u8]) -> Result<Chunk, StateError> {
        let corrupt = || StateError::Corrupt("a chunk has a truncated or malformed entry".into());
        let mut c = Chunk::default();
        let mut prev_start = 0usize;
        while !v.is_empty() {
            let shared = get_varint(&mut v).ok_or_else(corrupt)? as usize;
            let rest = get_varint(&mut v).ok_or_else(corrupt)? as usize;
            let prev_len = c.bytes.len() - prev_start;
            if shared > prev_len || rest > v.len() {
                return Err(corrupt());
            }
            let start = c.bytes.len();
            c.bytes.extend_from_within(prev_start..prev_start + shared);
            c.bytes.extend_from_slice(&v[..rest]);
            v = &v[rest..];
            let delta = get_varint(&mut v).ok_or_else(corrupt)?;
            let delta = ((delta >> 1) as i64) ^ -((delta & 1) as i64);
            let key = &c.bytes[start..];
            if key.len() < 9 || (start > 0 && &c.bytes[prev_start..start] >= key) {
                return Err(corrupt());
            }
            c.times.push(prefix_time(key).saturating_add(delta));
            c.ends.push(c.bytes.len() as u32);
            prev_start = start;
        }
        Ok(c)
    }

    /// Encode for storage.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() / 2 + 4 * self.len());
        let mut prev: &[u8] = &[];
        for e in self.iter() {
            let shared = prev.iter().zip(e.key).take_while(|(a, b)| a == b).count();
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (e.key.len() - shared) as u64);
            out.extend_from_slice(&e.key[shared..]);
            let delta = e.time.wrapping_sub(e.filed());
            put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
            prev = e.key;
        }
        out
    }

    /// This chunk's entries merged with `new` (sorted, distinct); an entry in both keeps the
    /// earlier event time.
    pub fn merge<K: AsRef<[u8]>>(&self, new: &[(K, i64)]) -> Chunk {
        let mut out = Chunk::default();
        let (mut i, mut j) = (0, 0);
        while i < self.len() || j < new.len() {
            let old = (i < self.len()).then(|| self.get(i));
            let add = new.get(j);
            match (old, add) {
                (Some(o), Some((k, t))) if o.key == k.as_ref() => {
                    out.push(o.key, o.time.min(*t));
                    i += 1;
                    j += 1;
                }
                (Some(o), Some((k, _))) if o.key < k.as_ref() => {
                    out.push(o.key, o.time);
                    i += 1;
                }
                (Some(o), None) => {
                    out.push(o.key, o.time);
                    i += 1;
                }
                (_, Some((k, t))) => {
                    out.push(k.as_ref(), *t);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        out
    }

    /// Only the entries `keep` accepts; returns how many were dropped.
    pub fn retain(&self, mut keep: impl FnMut(Entry<'_>) -> bool) -> (Chunk, usize) {
        let mut out = Chunk::default();
        for e in self.iter() {
            if keep(e) {
                out.push(e.key, e.time);
            }
        }
        let dropped = self.len() - out.len();
        (out, dropped)
    }

    /// Cut into pieces of at most `max` entries, as even as possible.
    pub fn split(self, max: usize) -> Vec<Chunk> {
        if self.len() <= max {
            return vec![self];
        }
        let pieces = self.len().div_ceil(max);
        let per = self.len().div_ceil(pieces);
        let mut out = Vec::with_capacity(pieces);
        let mut cur = Chunk::default();
        for e in self.iter() {
            if cur.len() == per {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(e.key, e.time);
        }
        out.push(cur);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> EventKey {
        text.parse().unwrap()
    }

    fn p(text: &str) -> Vec<u8> {
        pack(key(text).as_ref())
    }

    fn entry(filed: i64, text: &str) -> Vec<u8> {
        entry_key(filed, &p(text))
    }

    #[test]
    fn pack_round_trip() {
        for text in [
            "e7acacb6aedbab70073456da5744166939b77527:end",
            "Odd Id|with:colons:start",
            "ABCDEF:start",
            "abc:end",
        ] {
            assert_eq!(unpack(&p(text)).to_string(), text);
        }
        assert_eq!(p("e7acacb6aedbab70073456da5744166939b77527:end").len(), 21);
        assert_eq!(p("abc:end"), [TAG_END, b'a', b'b', b'c'], "odd length: raw");
        assert_eq!(p("0aF1:start"), [0, b'0', b'a', b'F', b'1'], "upper case: raw");
        assert_eq!(p("0af1:start"), [TAG_HEX, 0x0a, 0xf1]);
        assert_eq!(entry_of(7, key("0af1:end").as_ref()), entry_key(7, &p("0af1:end")));
        // A lookup builds the same bytes as a commit, on the stack up to 64 bytes.
        let long_hex = format!("{}:end", "ab".repeat(200));
        let long_raw = format!("{}:start", "x".repeat(56));
        let shapes = [
            "0af1:end",
            "e7acacb6aedbab70073456da5744166939b77527:start",
            "5f0c3a4e-5a47-4c2b-9f53-4d1e2b8c7a10:end",
            "0aF1:start",
            "abc:end",
            "0g:end",
            "a b:end",
            long_hex.as_str(),
            long_raw.as_str(),
        ];
        for text in shapes {
            let k = key(text);
            let entry = lookup_entry(-7, k.as_ref());
            assert_eq!(&entry[..], entry_of(-7, k.as_ref()), "{text}");
            assert_eq!(entry.spilled(), entry.len() > 64, "{text}");
            let commit = commit_entry(-7, k.as_ref());
            assert_eq!(&commit[..], &entry[..], "{text}");
            assert_eq!(commit.spilled(), entry.len() > 32, "{text}");
        }
        assert!(is_end(&p("x:end")) && !is_end(&p("x:start")));
        assert!(time_prefix(-1) < time_prefix(0) && time_prefix(0) < time_prefix(1));
    }

    #[test]
    fn encode_decode_search_merge_split() {
        let mut c = Chunk::default();
        let mut keys: Vec<(Vec<u8>, i64)> = (0..300)
            .map(|i| {
                (
                    entry(1_700_000_000 + i / 7, &format!("{:040x}:end", i * 7919)),
                    1_700_000_000 + i,
                )
            })
            .collect();
        keys.push((entry(-5, "odd id:start"), -5));
        keys.sort();
        for (k, t) in &keys {
            c.push(k, *t);
        }
        let bytes = c.encode();
        assert!(bytes.len() < 300 * 28, "{} bytes", bytes.len());
        let back = Chunk::decode(&bytes).unwrap();
        assert_eq!(back, c);
        assert!(Chunk::decode(&bytes[..bytes.len() - 1]).is_err());
        for (k, t) in &keys {
            let i = back.search(k).unwrap();
            assert_eq!(back.get(i).time, *t);
        }
        assert!(!back.contains(&entry(1_700_000_000, "ffff:end")));
        assert_eq!(back.get(0).filed(), -5);
        assert_eq!(unpack(back.get(0).packed()), key("odd id:start"));

        let merged = Chunk::default().merge(&keys[..10]).merge(&keys[5..]);
        assert_eq!(merged, c);
        let pieces = merged.split(64);
        assert_eq!(pieces.len(), 301usize.div_ceil(64));
        assert!(pieces.iter().all(|p| p.len() <= 64 && p.len() >= 32));
        let all: Vec<_> = pieces.iter().flat_map(|p| p.iter().map(|e| e.key.to_vec())).collect();
        assert_eq!(all, keys.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
        let (kept, dropped) = c.retain(|e| e.time >= 1_700_000_100);
        assert_eq!((kept.len(), dropped), (200, 101));
    }
}
