//! The keys emitted in this listing whose batch is not committed yet, each with its batch's
//! number: a key repeated in one listing is emitted once, whatever the commit timing.
//! Committed keys are found in the store, so only these need remembering (without commits, as
//! in `--dry-run`, it keeps every emitted key of the listing).
//!
//! The session ids sit end to end in one string, and the map holds where each one is: adding a
//! key allocates nothing once the string and the map have grown to the listing's pace (a map of
//! boxed ids cost an allocation and a free per new event). Lookups compare the ids themselves,
//! so two keys whose hashes collide are still told apart.
//!
//! [`Refused`]: the keys of this listing a sink refused for good, which no commit will cover.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use crate::key::{EventKey, KeyRef, Phase};
use smallvec::SmallVec;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Where one key's session id sits in `Pending::ids`, its phase, and its batch.
#[derive(Clone, Copy)]
struct Slot {
    at: usize,
    len: usize,
    phase: Phase,
    batch: u64,
}

/// The map's keys are already hashes: use them as they are.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by a `u64` key; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// See the module's comment. `S` hashes the keys (tests give one where every key collides).
#[derive(Default)]
pub(super) struct Pending<S = RandomState> {
    ids: String,
    /// Where the surviving ids are copied when some are dropped (then the two swap), so
    /// neither is allocated again once they have grown to the listing's pace.
    spare: String,
    slots: HashMap<u64, SmallVec<[Slot; 1]>, BuildHasherDefault<Prehashed>>,
    keys: usize,
    hasher: S,
}

impl<S: BuildHasher> Pending<S> {
    pub(super) fn is_empty(&self) -> bool {
        self.keys == 0
    }

    fn hash(&self, key: KeyRef<'_>) -> u64 {
        self.hasher.hash_one((key.phase as u8, key.session_id))
    }

    pub(super) fn contains(&self, key: KeyRef<'_>) -> bool {
        self.slots.get(&self.hash(key)).is_some_and(|slots| {
            slots
                .iter()
                .any(|s| s.phase == key.phase && self.ids.get(s.at..s.at.saturating_add(s.len)) == Some(key.session_id))
        })
    }

    /// Remember `key` as sent in `batch` (the caller checked it is not here yet).
    pub(super) fn insert(&mut self, key: KeyRef<'_>, batch: u64) {
        let slot = Slot {
            at: self.ids.len(),
            len: key.session_id.len(),
            phase: key.phase,
            batch,
        };
        self.ids.push_str(key.session_id);
        let h = self.hash(key);
        self.slots.entry(h).or_default().push(slot);
        self.keys = self.keys.saturating_add(1);
    }

    /// Drop the keys of batches up to `committed` (the store has them now), and the room their
    /// ids took.
    pub(super) fn retain_after(&mut self, committed: u64) {
        let ids = &mut self.spare;
        ids.clear();
        let mut keys: usize = 0;
        self.slots.retain(|_, slots| {
            slots.retain(|s| s.batch > committed);
            for s in slots.iter_mut() {
                let at = ids.len();
                ids.push_str(self.ids.get(s.at..s.at.saturating_add(s.len)).unwrap_or_default());
                s.at = at;
            }
            keys = keys.saturating_add(slots.len());
            !slots.is_empty()
        });
        std::mem::swap(&mut self.ids, &mut self.spare);
        self.keys = keys;
    }
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
        assert_eq!(p.ids, "a1", "the ids of dropped keys are let go");
        p.retain_after(3);
        assert!(p.is_empty());
        assert!(!p.contains(KeyRef::new("a1", Phase::End)));
    }

    #[test]
    fn keys_whose_hashes_collide_are_told_apart() {
        /// Every key hashes to 0: all of them share one slot list.
        #[derive(Default)]
        struct Same;
        impl BuildHasher for Same {
            type Hasher = Zero;
            fn build_hasher(&self) -> Zero {
                Zero
            }
        }
        struct Zero;
        impl Hasher for Zero {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let mut p = Pending::<Same>::default();
        p.insert(KeyRef::new("x", Phase::Start), 1);
        p.insert(KeyRef::new("y", Phase::Start), 2);
        p.insert(KeyRef::new("xy", Phase::End), 3);
        assert_eq!(p.slots.len(), 1, "all in one list");
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
    }
}
