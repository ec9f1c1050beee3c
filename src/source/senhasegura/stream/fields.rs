//! Watched fields: where a record's top-level fields of a few given names lie, noted while
//! the record is scanned, so a caller that needs only those fields can read them without
//! parsing the record again. The scanner still knows nothing about what the fields mean; the
//! caller names them ([`Scanner::watching`]) and decides what the spans are worth.
//!
//! A field is reported as [`Field::Other`] whenever its value cannot be read off the raw
//! bytes with certainty (an escaped string, an object, the key given twice), and the record's
//! fields are not reported at all when a key of the record could spell a watched name in a way
//! the raw bytes do not show (an escaped or over-long key) or when the record's grammar broke:
//! the caller then parses the record, and nothing is decided on a guess.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::grammar::{Key, Role};
use super::Scanner;

/// How many field names a scanner can watch.
pub const MAX_FIELDS: usize = 16;

/// Where a watched field lies in its record's bytes (offsets into the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Field {
    /// The record has no such field.
    #[default]
    Absent,
    /// A string without escapes: the bytes between its quotes.
    Text {
        /// Offset of the first byte after the opening quote.
        start: usize,
        /// Offset of the closing quote.
        end: usize,
    },
    /// A number, `true`, `false` or `null` (not checked here) starting at this offset.
    Scalar {
        /// Offset of its first byte.
        start: usize,
    },
    /// Anything else: an escaped string, an object or array, or the key given twice.
    Other,
}

/// What is watched: the names, the state of the record being read (reset when a record
/// capture opens), and the guess of the key order carried from one record to the next.
#[derive(Debug, Default)]
pub(super) struct Watch {
    pub(super) names: &'static [&'static [u8]],
    pub(super) fields: [Field; MAX_FIELDS],
    /// A key of the record could be a watched name in disguise: report nothing.
    pub(super) unsure: bool,
    /// The record has a key that is not watched.
    pub(super) other_keys: bool,
    /// The watched string value being read: its field and where it started.
    pub(super) open: Option<(usize, usize)>,
    /// The watched name last found in this record ([`MAX_FIELDS`] at its start).
    pub(super) last: usize,
    /// For each watched name (and the record's start, at [`MAX_FIELDS`]), the name that came
    /// next the last time: tried first, since the records of one listing list their fields in
    /// one order.
    pub(super) follows: [usize; MAX_FIELDS + 1],
    /// A watched name is one the scanner steers by (`remote_sessions`, `tenant`, `response`).
    pub(super) steering: bool,
}

impl Watch {
    /// The plain (unescaped, short) key just read in a record's own object.
    pub(super) fn key(&mut self, text: &[u8]) -> Key {
        let guess = self.follows.get(self.last).copied().unwrap_or_default();
        let found = match self.names.get(guess) {
            Some(n) if same(n, text) => Some(guess),
            _ => self.names.iter().position(|n| same(n, text)),
        };
        match found {
            Some(i) => {
                if let Some(f) = self.follows.get_mut(self.last) {
                    *f = i;
                }
                self.last = i;
                Key::Field(i)
            }
            None => Key::Other,
        }
    }
}

/// `a == b` for short byte strings, compared a word at a time in place (slice equality calls
/// `memcmp`, a call per key of every record).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        let (mut u, mut v) = ([0u8; 8], [0u8; 8]);
        u.copy_from_slice(p);
        v.copy_from_slice(q);
        if u64::from_ne_bytes(u) != u64::from_ne_bytes(v) {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

impl Scanner {
    /// Note where the record's top-level fields with these names lie (at most
    /// [`MAX_FIELDS`]; more are ignored); [`super::Item::Record`] carries them.
    pub fn watching(mut self, names: &'static [&'static [u8]]) -> Scanner {
        self.watch.names = names.get(..names.len().min(MAX_FIELDS)).unwrap_or_default();
        self.watch.steering = self
            .watch
            .names
            .iter()
            .any(|n| matches!(*n, b"remote_sessions" | b"tenant" | b"response"));
        self
    }

    /// A record capture opened: forget the previous record's fields.
    pub(super) fn watch_reset(&mut self) {
        let w = &mut self.watch;
        w.fields = [Field::Absent; MAX_FIELDS];
        w.unsure = false;
        w.other_keys = false;
        w.open = None;
        w.last = MAX_FIELDS;
    }

    /// The watched field whose value starts now, if the innermost frame is a record's own
    /// object and its last key is watched.
    pub(super) fn watched_value(&self) -> Option<usize> {
        match self.stack.last() {
            Some(top) if top.role == Role::Candidate && self.capture.is_some() => match top.key {
                Key::Field(i) => Some(i),
                _ => None,
            },
            _ => None,
        }
    }

    /// Offset in the current record of byte `i` of the current chunk.
    pub(super) fn record_offset(&self, i: usize) -> usize {
        let start = self.capture.as_ref().map_or(0, |c| c.start);
        self.buf.len().saturating_add(i.saturating_sub(start))
    }

    /// A watched field's value was found (a second one makes it [`Field::Other`]).
    pub(super) fn set_field(&mut self, i: usize, value: Field) {
        if let Some(slot) = self.watch.fields.get_mut(i) {
            *slot = if *slot == Field::Absent { value } else { Field::Other };
        }
    }

    /// A watched string value opens at chunk position `i` (its quote).
    pub(super) fn open_field_string(&mut self, field: usize, i: usize) {
        self.watch.open = Some((field, self.record_offset(i).saturating_add(1)));
    }

    /// The watched string value closes at chunk position `i` (its quote).
    pub(super) fn close_field_string(&mut self, i: usize) {
        if let Some((field, start)) = self.watch.open.take() {
            let value = match self.string_escaped {
                true => Field::Other,
                false => Field::Text {
                    start,
                    end: self.record_offset(i),
                },
            };
            self.set_field(field, value);
        }
    }

    /// The watched fields of the record that just closed (empty when they cannot be trusted),
    /// and whether they are all its keys.
    pub(super) fn record_fields(&self, broken: bool) -> (&[Field], bool) {
        if broken || self.watch.unsure {
            return (&[], false);
        }
        let fields = self.watch.fields.get(..self.watch.names.len()).unwrap_or_default();
        (fields, !self.watch.other_keys)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_is_slice_equality() {
        let words: [&[u8]; 10] = [
            b"",
            b"a",
            b"b",
            b"ab",
            b"session_id",
            b"session_ie",
            b"start",
            b"prevent_purge",
            b"prevent_purgf",
            b"12345678",
        ];
        for a in words {
            for b in words {
                assert_eq!(super::same(a, b), a == b, "{a:?} {b:?}");
            }
        }
        // A difference at every position of strings 1 to 40 long.
        for len in 1..40 {
            let a = vec![b'k'; len];
            assert!(super::same(&a, &a.clone()));
            for i in 0..len {
                let mut b = a.clone();
                b[i] = b'j';
                assert!(!super::same(&a, &b), "{len} {i}");
            }
        }
    }
}
