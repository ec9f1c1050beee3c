//! The streaming listing scanner: finds session records in a listing body as its bytes
//! arrive, without building the document.
//!
//! A small validating lexer tracks where it is in the JSON structure. Every object inside a
//! `remote_sessions` array is captured as a byte slice (borrowed from the chunk when it lies in
//! one, copied once when it spans chunks) and handed out whole, so records can be parsed with
//! `serde_json::from_slice` into borrowed structs, which is much faster than a reader-based
//! parse. When such an object turns out to hold a `remote_sessions` array of its own (the v3
//! documentation's nested shape), the capture is dropped and the scanner descends.
//!
//! What it checks, and why (the rule: *the body's structure is validated before anything in it
//! is trusted; everything read from it is bounded*):
//! - the body is one JSON object (after an optional UTF-8 byte order mark), and nothing but
//!   whitespace follows it; a plain-text or HTML page fails at its first byte;
//! - outside records the grammar is checked strictly (commas, colons, where values may stand);
//!   the first violation ends the listing as malformed: what came before was read, nothing
//!   after it is guessed at;
//! - inside a record only strings and brackets are tracked: a record that is not valid JSON is
//!   still cut out whole and left to the record parser, so it costs one bad record, not the
//!   listing;
//! - nesting deeper than [`MAX_DEPTH`] ends the listing (memory stays bounded whatever the
//!   body: the stack, one record of at most `max_record` bytes, a 64-byte key, a tenant);
//! - items of a sessions array that are not objects are reported, so they are counted;
//! - each record carries the tenant of the envelope that holds its array (declared before the
//!   array; a nested envelope without one takes its enclosing envelope's).
//!
//! The scanner knows nothing about record fields: that is `model.rs`.
//!
//! Where things are: this file holds the public items, the scanner's state and the byte loop
//! that drives the rest; `grammar.rs` the structural state machine (frames, roles, what may
//! come next, opening containers); `strings.rs` strings, keys and tenant text; `capture.rs`
//! record captures, across chunks and out when their object closes.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

mod capture;
mod fields;
mod grammar;
mod strings;

use capture::Capture;
pub use fields::{Field, MAX_FIELDS};
use grammar::{is_scalar_byte, Frame};
use strings::StringKind;

/// Something the scanner found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// The bytes of one session record object, and the tenant of its envelope.
    Record {
        /// The record's JSON object.
        bytes: &'a [u8],
        /// The tenant declared by the envelope holding the record's array.
        tenant: Option<&'a str>,
        /// Where the watched fields lie ([`Scanner::watching`]), in the order of their
        /// names; empty when none are watched or they could not be told for sure.
        fields: &'a [Field],
        /// Every key of the record is a watched name (then `fields` tell all it holds).
        only_watched: bool,
    },
    /// An envelope's `response` object.
    Response(&'a [u8]),
    /// A record larger than the limit, skipped; the first bytes are kept for the log line.
    Oversized {
        /// The record's first bytes (at most [`OVERSIZED_PREFIX`]).
        prefix: &'a [u8],
    },
    /// An item of a sessions array that is not an object.
    NotAnObject {
        /// What it is: `a number`, `a string`, `null`, `a boolean`, `an array`.
        what: &'static str,
    },
}

/// Default cap on one record's size.
pub const DEFAULT_MAX_RECORD: usize = 1 << 20;
/// How deep the body may nest. The documented shapes need 4 levels and records a few more.
pub const MAX_DEPTH: usize = 512;
/// How much of an oversized record is kept for its log line.
pub const OVERSIZED_PREFIX: usize = 4096;
const KEY_LIMIT: usize = 64;
const TENANT_LIMIT: usize = 4096;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Structural problems found in the body.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    /// The body ended inside the document.
    #[error("the listing ended before its JSON was complete ({depth} levels still open); the transfer was cut short")]
    Incomplete { depth: usize },
    /// The body is empty.
    #[error("the listing body is empty")]
    Empty,
    /// The body does not start with a JSON object.
    #[error("the listing is not a JSON object (byte {offset} is not `{{`)")]
    NotAnObject { offset: u64 },
    /// The JSON structure is broken.
    #[error("the listing is not valid JSON at byte {offset}: expected {expected}")]
    Malformed { offset: u64, expected: &'static str },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error(
        "the listing nests deeper than {limit} levels at byte {offset}; no senhasegura listing does, so it is refused"
    )]
    TooDeep { offset: u64, limit: usize },
    /// A complete object without any `remote_sessions` array.
    #[error("the listing has no remote_sessions array")]
    NoSessions,
}

/// Why [`Scanner::feed`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop<E> {
    /// The emit callback returned this error.
    Emit(E),
    /// The body is broken; nothing after this point is read.
    Scan(ScanError),
}

/// The streaming scanner. Feed it chunks in order, then call [`Scanner::finish`].
#[derive(Debug)]
pub struct Scanner {
    stack: Vec<Frame>,
    in_string: bool,
    escape: bool,
    in_scalar: bool,
    string_kind: StringKind,
    text: Vec<u8>,
    text_overflow: bool,
    /// The string being read held a backslash escape.
    string_escaped: bool,
    capture: Option<Capture>,
    buf: Vec<u8>,
    max_record: usize,
    consumed: u64,
    /// BOM bytes matched at the very start.
    bom: usize,
    root_seen: bool,
    root_done: bool,
    failed: Option<ScanError>,
    saw_sessions: bool,
    /// Envelopes whose `tenant` came after their records (those records carry none).
    pub late_tenants: u64,
    watch: fields::Watch,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new(DEFAULT_MAX_RECORD)
    }
}

impl Scanner {
    /// A scanner that skips records over `max_record` bytes.
    pub fn new(max_record: usize) -> Scanner {
        Scanner {
            stack: Vec::with_capacity(8),
            in_string: false,
            escape: false,
            in_scalar: false,
            string_kind: StringKind::Other,
            text: Vec::with_capacity(KEY_LIMIT),
            text_overflow: false,
            string_escaped: false,
            capture: None,
            buf: Vec::new(),
            max_record,
            consumed: 0,
            bom: 0,
            root_seen: false,
            root_done: false,
            failed: None,
            saw_sessions: false,
            late_tenants: 0,
            watch: fields::Watch::default(),
        }
    }

    /// Scan one chunk, calling `emit` for each item found. Stops at `emit`'s first error, or
    /// at the first structural error (then every later call fails with it too).
    pub fn feed<E>(&mut self, chunk: &[u8], emit: &mut impl FnMut(Item<'_>) -> Result<(), E>) -> Result<(), Stop<E>> {
        if let Some(e) = &self.failed {
            return Err(Stop::Scan(e.clone()));
        }
        let result = self.feed_inner(chunk, emit);
        if let Err(Stop::Scan(e)) = &result {
            self.failed = Some(e.clone());
            self.capture = None;
            self.buf = Vec::new();
        }
        result
    }

    fn feed_inner<E>(&mut self, chunk: &[u8], emit: &mut impl FnMut(Item<'_>) -> Result<(), E>) -> Result<(), Stop<E>> {
        let n = chunk.len();
        let mut i = 0;
        while i < n {
            if self.in_string {
                i = self.scan_string(chunk, i);
                continue;
            }
            let b = chunk[i];
            if !self.root_seen && self.bom < BOM.len() && self.offset(i) == self.bom as u64 {
                if BOM.get(self.bom) == Some(&b) {
                    self.bom = self.bom.saturating_add(1);
                    i = i.saturating_add(1);
                    continue;
                }
                if self.bom > 0 {
                    return Err(Stop::Scan(ScanError::NotAnObject { offset: self.offset(i) }));
                }
            }
            if self.in_scalar {
                if is_scalar_byte(b) {
                    i = i.saturating_add(1);
                    continue;
                }
                self.in_scalar = false;
            }
            if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                i = i.saturating_add(1);
                continue;
            }
            if !self.lenient() {
                self.strict(b, chunk, i, emit)?;
            }
            // A byte that broke a record's grammar is read again leniently (strict() changed
            // nothing when it found the violation).
            if self.lenient() {
                self.lenient_byte(b, chunk, i, emit)?;
            }
            i = i.saturating_add(1);
        }
        self.carry_capture(chunk);
        self.consumed = self.consumed.saturating_add(n as u64);
        Ok(())
    }

    /// Check that the document was complete and was a listing.
    pub fn finish(&self) -> Result<(), ScanError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.root_seen {
            return Err(ScanError::Empty);
        }
        if !self.stack.is_empty() || self.in_string {
            return Err(ScanError::Incomplete {
                depth: self.stack.len(),
            });
        }
        if !self.saw_sessions {
            return Err(ScanError::NoSessions);
        }
        Ok(())
    }

    #[inline]
    fn offset(&self, i: usize) -> u64 {
        self.consumed.saturating_add(i as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests;
