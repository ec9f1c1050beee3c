//! The keys emitted in this listing whose batch is not committed yet, each with its batch's
//! number: a key repeated in one listing is emitted once, whatever the commit timing.
//! Committed keys are found in the store, so only these need remembering (without commits, as
//! in `--dry-run`, it keeps every emitted key of the listing).
//!
//! The session ids sit end to end in one buffer and the keys in one list, both in the order the
//! keys came; a hash table holds each key's place in the list. Adding a key allocates nothing
//! once the three have grown to the listing's pace, and dropping the keys of committed batches
//! moves the survivors to the front of the buffer and the list, in place. Lookups compare the
//! ids themselves, so two keys whose hashes collide are still told apart. A key costs its id,
//! 32 bytes in the list (up to twice that while the list's room doubles) and a table bucket of 9
//! bytes (10–21 a key, as full as the table is): a map from hash to a list of places cost 49
//! bytes a bucket and a second buffer to move the survivors into, and at the peak of a
//! million-session first poll it held 2.9 MB (heaptrack; README "Measured").
//!
//! [`Refused`]: the keys of this listing a sink refused for good, which no commit will cover.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use crate::key::{EventKey, KeyRef, Phase};
use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// One key: its hash, where its session id sits in `Pending::ids`, its phase and its batch.
#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    at: usize,
    batch: u64,
    len: u16,
    phase: Phase,
}

/// See the module's comment. `S` hashes the keys (tests give one where every key collides).
#[derive(Default)]
pub(super) struct Pending<S = RandomState> {
    ids: Vec<u8>,
    slots: Vec<Slot>,
    /// Indexes into `slots`.
    table: HashTable<usize>,
    hasher: S,
}

impl<S: BuildHasher> Pending<S> {
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn hash(&self, key: KeyRef<'_>) -> u64 {
        self.hasher.hash_one((key.phase as u8, key.session_id))
    }

    pub(super) fn contains(&self, key: KeyRef<'_>) -> bool {
        let (ids, slots) = (&self.ids, &self.slots);
        self.table
            .find(self.hash(key), |&i| {
                slots
                    .get(i)
                    .is_some_and(|s| s.phase == key.phase && id_of(ids, s) == Some(key.session_id.as_bytes()))
            })
            .is_some()
    }

    /// Remember `key` as sent in `batch` (the caller checked it is not here yet).
    pub(super) fn insert(&mut self, key: KeyRef<'_>, batch: u64) {
        // Session ids are checked at most `MAX_SESSION_ID` (1,024) bytes long before an event
        // is made; a longer one would not be remembered, so a repeat of it could be sent again
        // (a duplicate, never a loss).
        let Ok(len) = u16::try_from(key.session_id.len()) else {
            return;
        };
        let slot = Slot {
            hash: self.hash(key),
            at: self.ids.len(),
            batch,
            len,
            phase: key.phase,
        };
        self.ids.extend_from_slice(key.session_id.as_bytes());
        let index = self.slots.len();
        self.slots.push(slot);
        self.table.insert_unique(slot.hash, index, hash_at(&self.slots));
    }

    /// Drop the keys of batches up to `committed` (the store has them now), and the room their
    /// ids took.
    pub(super) fn retain_after(&mut self, committed: u64) {
        let mut kept = 0usize;
        let mut to = 0usize;
        for i in 0..self.slots.len() {
            let Some(mut s) = self.slots.get(i).copied() else { break };
            if s.batch <= committed {
                continue;
            }
            // Survivors move towards the front: `to` never passes `s.at`.
            let end = s.at.saturating_add(usize::from(s.len));
            if end <= self.ids.len() {
                self.ids.copy_within(s.at..end, to);
            }
            s.at = to;
            to = to.saturating_add(usize::from(s.len));
            if let Some(slot) = self.slots.get_mut(kept) {
                *slot = s;
            }
            kept = kept.saturating_add(1);
        }
        self.slots.truncate(kept);
        self.ids.truncate(to);
        self.table.clear();
        for (i, s) in self.slots.iter().enumerate() {
            self.table.insert_unique(s.hash, i, hash_at(&self.slots));
        }
    }
}

/// The table's rehash function: the stored hash of the slot an index names.
fn hash_at(slots: &[Slot]) -> impl Fn(&usize) -> u64 + '_ {
    |&i| slots.get(i).map_or(0, |s| s.hash)
}

fn id_of<'a>(ids: &'a [u8], s: &Slot) -> Option<&'a [u8]> {
    ids.get(s.at..s.at.saturating_add(usize::from(s.len)))
}

/// The keys a sink refused for good in this listing (a Kafka message over its size limit):
/// not committed, so not in the store, and gone from the pending keys once their batch's
/// commit passed. The filter counts them as emitted, so a listing that repeats one does not
/// send it again in the same poll. Few or none: a plain list, looked at only when not empty.
#[derive(Debug, Default)]
pub struct Refused {
    any: std::sync::atomic::AtomicBool,
    keys: std::sync::Mutex<Vec<EventKey>>,
}

impl Refused {
    /// Delivery: `keys` were refused.
    pub fn add(&self, keys: &[EventKey]) {
        if keys.is_empty() {
            return;
        }
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(keys);
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    pub(super) fn contains(&self, key: KeyRef<'_>) -> bool {
        self.any.load(std::sync::atomic::Ordering::Acquire)
            && self
                .keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|k| k.as_ref() == key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    #[test]
    fn keys_are_found_by_id_and_phase_until_their_batch_is_committed() {
        let mut p = Pending::<RandomState>::default();
        assert!(p.is_empty());
        p.insert(KeyRef::new("a1", Phase::Start), 1);
        p.insert(KeyRef::new("b2", Phase::End), 2);
        p.insert(KeyRef::new("a1", Phase::End), 3);
        assert!(p.contains(KeyRef::new("a1", Phase::Start)));
        assert!(p.contains(KeyRef::new("a1", Phase::End)));
        assert!(p.contains(KeyRef::new("b2", Phase::End)));
        assert!(!p.contains(KeyRef::new("b2", Phase::Start)));
        // A prefix or extension of an id is another id.
        assert!(!p.contains(KeyRef::new("a", Phase::Start)));
        assert!(!p.contains(KeyRef::new("a1b", Phase::Start)));
        p.retain_after(2);
        assert!(!p.contains(KeyRef::new("a1", Phase::Start)));
        assert!(!p.contains(KeyRef::new("b2", Phase::End)));
        assert!(p.contains(KeyRef::new("a1", Phase::End)));
        assert!(!p.is_empty());
        assert_eq!(p.ids, b"a1", "the ids of dropped keys are let go");
        p.retain_after(3);
        assert!(p.is_empty());
        assert!(!p.contains(KeyRef::new("a1", Phase::End)));
    }

    /// Every key hashes to 0.
    #[derive(Default)]
    struct AllZero;
    impl BuildHasher for AllZero {
        type Hasher = ZeroHasher;
        fn build_hasher(&self) -> ZeroHasher {
            ZeroHasher
        }
    }
    struct ZeroHasher;
    impl Hasher for ZeroHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn keys_whose_hashes_collide_are_told_apart() {
        let mut p = Pending::<AllZero>::default();
        p.insert(KeyRef::new("x", Phase::Start), 1);
        p.insert(KeyRef::new("y", Phase::Start), 2);
        p.insert(KeyRef::new("xy", Phase::End), 3);
        assert!(p.slots.iter().all(|s| s.hash == 0), "all under one hash");
        assert!(p.contains(KeyRef::new("x", Phase::Start)));
        assert!(p.contains(KeyRef::new("y", Phase::Start)));
        assert!(p.contains(KeyRef::new("xy", Phase::End)));
        assert!(!p.contains(KeyRef::new("xy", Phase::Start)));
        assert!(!p.contains(KeyRef::new("yx", Phase::End)));
        assert!(!p.contains(KeyRef::new("x", Phase::End)));
        p.retain_after(1);
        assert!(!p.contains(KeyRef::new("x", Phase::Start)));
        assert!(p.contains(KeyRef::new("y", Phase::Start)));
        assert!(p.contains(KeyRef::new("xy", Phase::End)));
    }

    /// Inserts (of keys not held yet, as the filter does) and trims in any order, with ids of
    /// any length, shared prefixes and both phases: after every step `contains` says what a
    /// plain map of key → batch says.
    fn agrees_with_a_map<S: BuildHasher + Default>(ops: &[(bool, u8, u8, bool)]) {
        let mut p = Pending::<S>::default();
        let mut model: std::collections::HashMap<(String, Phase), u64> = Default::default();
        let mut batch = 1u64;
        for &(trim, id, len, end) in ops {
            if trim {
                let committed = batch.saturating_sub(u64::from(id % 4));
                p.retain_after(committed);
                model.retain(|_, b| *b > committed);
            } else {
                let id = format!("{id:02x}").repeat(usize::from(len % 5));
                let phase = if end { Phase::End } else { Phase::Start };
                if !model.contains_key(&(id.clone(), phase)) {
                    p.insert(KeyRef::new(&id, phase), batch);
                    model.insert((id, phase), batch);
                }
                batch += u64::from(len % 3 == 0);
            }
            for id in 0..24u8 {
                for len in 0..5usize {
                    let id = format!("{id:02x}").repeat(len);
                    for phase in [Phase::Start, Phase::End] {
                        let held = model.contains_key(&(id.clone(), phase));
                        assert_eq!(p.contains(KeyRef::new(&id, phase)), held, "{id}:{phase:?}");
                    }
                }
            }
            assert_eq!(p.is_empty(), model.is_empty());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn inserts_and_trims_agree_with_a_map(
            ops in proptest::collection::vec((proptest::bool::weighted(0.15), 0u8..24, 0u8..8, proptest::bool::ANY), 0..120)
        ) {
            agrees_with_a_map::<RandomState>(&ops);
            agrees_with_a_map::<AllZero>(&ops);
        }
    }

    #[test]
    fn many_keys_survive_trimming_in_order() {
        let mut p = Pending::<RandomState>::default();
        for i in 0..10_000u64 {
            p.insert(KeyRef::new(&format!("s{i}"), Phase::Start), i / 100 + 1);
        }
        p.retain_after(50);
        for i in 0..10_000u64 {
            assert_eq!(
                p.contains(KeyRef::new(&format!("s{i}"), Phase::Start)),
                i / 100 + 1 > 50,
                "s{i}"
            );
        }
        // Keys added after a trim sit after the moved survivors, and a second trim keeps both.
        for i in 0..3_000u64 {
            p.insert(KeyRef::new(&format!("later-{i}"), Phase::End), 200 + i / 1000);
        }
        p.retain_after(99);
        for i in 0..10_000u64 {
            assert_eq!(
                p.contains(KeyRef::new(&format!("s{i}"), Phase::Start)),
                i >= 9_900,
                "s{i}"
            );
        }
        for i in 0..3_000u64 {
            assert!(p.contains(KeyRef::new(&format!("later-{i}"), Phase::End)), "later-{i}");
            assert!(
                !p.contains(KeyRef::new(&format!("later-{i}"), Phase::Start)),
                "later-{i}"
            );
        }
        p.retain_after(201);
        assert_eq!(p.slots.len(), 1_000);
        assert_eq!(
            p.ids.len(),
            (2_000..3_000).map(|i| format!("later-{i}").len()).sum::<usize>()
        );
    }
}
