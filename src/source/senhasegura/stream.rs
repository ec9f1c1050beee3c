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
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

/// Something the scanner found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// The bytes of one session record object, and the tenant of its envelope.
    Record {
        /// The record's JSON object.
        bytes: &'a [u8],
        /// The tenant declared by the envelope holding the record's array.
        tenant: Option<&'a str>,
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    None,
    RemoteSessions,
    Tenant,
    Response,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// An envelope object (the root, or a converted candidate).
    Envelope,
    /// An object in a sessions array: a record unless it has its own `remote_sessions`.
    Candidate,
    /// An array of records.
    Sessions,
    Other,
}

/// What the grammar allows next inside a container.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a key.
    Colon,
    /// After `:` or `,` in an array.
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After a value.
    CommaOrEnd,
}

#[derive(Debug)]
struct Frame {
    object: bool,
    role: Role,
    expect: Expect,
    key: Key,
    /// Envelope: its own tenant; Sessions: the tenant its records carry; Candidate: a tenant
    /// seen inside it, used if it turns out to be an envelope.
    tenant: Option<String>,
    /// An envelope whose sessions array was already read.
    sessions_read: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StringKind {
    Key,
    Tenant,
    Other,
}

#[derive(Debug)]
struct Capture {
    /// Stack length when the captured object opened; it closes when the stack is back here.
    depth: usize,
    response: bool,
    /// Offset of the capture's start in the current chunk (0 after a chunk boundary).
    start: usize,
    oversized: bool,
    /// The grammar inside it was broken: only strings and brackets are tracked until it closes.
    broken: bool,
}

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
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new(DEFAULT_MAX_RECORD)
    }
}

fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

fn scalar_kind(first: u8) -> Option<&'static str> {
    match first {
        b'-' | b'0'..=b'9' => Some("a number"),
        b't' | b'f' => Some("a boolean"),
        b'n' => Some("null"),
        _ => None,
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
        if let Some(cap) = &mut self.capture {
            if !cap.oversized {
                self.buf.extend_from_slice(chunk.get(cap.start..).unwrap_or_default());
                if self.buf.len() > self.max_record {
                    cap.oversized = true;
                    self.buf.truncate(OVERSIZED_PREFIX);
                    self.buf.shrink_to_fit();
                }
            }
            cap.start = 0;
        }
        self.consumed = self.consumed.saturating_add(n as u64);
        Ok(())
    }

    /// One byte of a record whose grammar broke: only strings and brackets count.
    fn lenient_byte<E>(
        &mut self,
        b: u8,
        chunk: &[u8],
        i: usize,
        emit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        match b {
            b'"' => self.start_string(StringKind::Other),
            b'{' | b'[' => self.push(b == b'{', Role::Other, i)?,
            b'}' | b']' => self.close(b == b'}', chunk, i, emit)?,
            _ => {}
        }
        Ok(())
    }

    /// Inside a record whose grammar broke: only strings and brackets count until it closes.
    fn lenient(&self) -> bool {
        matches!(&self.capture, Some(c) if c.broken)
    }

    fn offset(&self, i: usize) -> u64 {
        self.consumed.saturating_add(i as u64)
    }

    /// A grammar violation: inside a record it only breaks that record; elsewhere it ends the
    /// listing.
    fn violation<E>(&mut self, i: usize, expected: &'static str) -> Result<(), Stop<E>> {
        match &mut self.capture {
            Some(c) if !c.response => {
                c.broken = true;
                Ok(())
            }
            _ => Err(Stop::Scan(ScanError::Malformed {
                offset: self.offset(i),
                expected,
            })),
        }
    }

    /// Is a value allowed here? If so, the container now expects what follows a value.
    fn take_value_slot(&mut self) -> bool {
        match self.stack.last_mut() {
            None => !self.root_seen,
            Some(top) => {
                let ok = matches!(top.expect, Expect::Value | Expect::ValueOrEnd);
                if ok {
                    top.expect = Expect::CommaOrEnd;
                }
                ok
            }
        }
    }

    fn in_sessions(&self) -> bool {
        matches!(self.stack.last(), Some(f) if f.role == Role::Sessions && self.capture.is_none())
    }

    fn strict<E>(
        &mut self,
        b: u8,
        chunk: &[u8],
        i: usize,
        emit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        if self.stack.is_empty() {
            if self.root_done {
                return Err(Stop::Scan(ScanError::Malformed {
                    offset: self.offset(i),
                    expected: "the end of the body after the listing object",
                }));
            }
            if b != b'{' {
                return Err(Stop::Scan(ScanError::NotAnObject { offset: self.offset(i) }));
            }
        }
        match b {
            b'{' | b'[' => {
                let item_of_sessions = self.in_sessions();
                if !self.take_value_slot() {
                    return self.violation(i, "`,` or the end of the container before a new value");
                }
                if item_of_sessions && b == b'[' {
                    emit(Item::NotAnObject { what: "an array" }).map_err(Stop::Emit)?;
                }
                self.open(b == b'{', i)
            }
            b'}' | b']' => {
                let object = b == b'}';
                let ok = matches!(self.stack.last(), Some(top) if top.object == object
                    && matches!(top.expect, Expect::KeyOrEnd | Expect::ValueOrEnd | Expect::CommaOrEnd));
                if !ok {
                    return self.violation(i, "a value, or a bracket that matches the open one");
                }
                self.close(object, chunk, i, emit)
            }
            b'"' => {
                let key = matches!(self.stack.last(), Some(top) if top.object
                    && matches!(top.expect, Expect::KeyOrEnd | Expect::Key));
                if key {
                    if let Some(top) = self.stack.last_mut() {
                        top.expect = Expect::Colon;
                    }
                    self.start_string(StringKind::Key);
                    return Ok(());
                }
                let item_of_sessions = self.in_sessions();
                if !self.take_value_slot() {
                    return self.violation(i, "`,`, `:` or the end of the container before a string");
                }
                if item_of_sessions {
                    emit(Item::NotAnObject { what: "a string" }).map_err(Stop::Emit)?;
                }
                let tenant = matches!(self.stack.last(), Some(top) if top.object && top.key == Key::Tenant
                    && matches!(top.role, Role::Envelope | Role::Candidate));
                self.start_string(if tenant { StringKind::Tenant } else { StringKind::Other });
                Ok(())
            }
            b':' => match self.stack.last_mut() {
                Some(top) if top.expect == Expect::Colon => {
                    top.expect = Expect::Value;
                    Ok(())
                }
                _ => self.violation(i, "a value or `,` instead of `:`"),
            },
            b',' => match self.stack.last_mut() {
                Some(top) if top.expect == Expect::CommaOrEnd => {
                    top.expect = if top.object { Expect::Key } else { Expect::Value };
                    Ok(())
                }
                _ => self.violation(i, "a value before `,`"),
            },
            _ => {
                let Some(what) = scalar_kind(b) else {
                    return self.violation(i, "a JSON value (object, array, string, number, true, false or null)");
                };
                let item_of_sessions = self.in_sessions();
                if !self.take_value_slot() {
                    return self.violation(i, "`,` or the end of the container before a value");
                }
                self.in_scalar = true;
                if item_of_sessions {
                    emit(Item::NotAnObject { what }).map_err(Stop::Emit)?;
                }
                Ok(())
            }
        }
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

    fn start_string(&mut self, kind: StringKind) {
        self.in_string = true;
        self.string_kind = kind;
        self.text.clear();
        self.text_overflow = false;
    }

    /// Consume string bytes from `i`; returns the next position to scan.
    fn scan_string(&mut self, chunk: &[u8], i: usize) -> usize {
        let rest = chunk.get(i..).unwrap_or_default();
        if self.escape {
            self.escape = false;
            self.keep_text(rest.get(..1).unwrap_or_default());
            return i.saturating_add(1);
        }
        match memchr::memchr2(b'"', b'\\', rest) {
            None => {
                self.keep_text(rest);
                chunk.len()
            }
            Some(off) => {
                self.keep_text(&rest[..off]);
                if rest[off] == b'\\' {
                    self.keep_text(b"\\");
                    self.escape = true;
                } else {
                    self.in_string = false;
                    self.close_string();
                }
                i.saturating_add(off).saturating_add(1)
            }
        }
    }

    fn keep_text(&mut self, bytes: &[u8]) {
        let limit = match self.string_kind {
            StringKind::Other => return,
            StringKind::Key => KEY_LIMIT,
            StringKind::Tenant => TENANT_LIMIT,
        };
        if self.text.len().saturating_add(bytes.len()) > limit {
            self.text_overflow = true;
        } else {
            self.text.extend_from_slice(bytes);
        }
    }

    fn close_string(&mut self) {
        match self.string_kind {
            StringKind::Key => {
                if let Some(top) = self.stack.last_mut() {
                    top.key = if self.text_overflow {
                        Key::Other
                    } else {
                        match self.text.as_slice() {
                            b"remote_sessions" => Key::RemoteSessions,
                            b"tenant" => Key::Tenant,
                            b"response" => Key::Response,
                            _ => Key::Other,
                        }
                    };
                }
            }
            StringKind::Tenant if !self.text_overflow => {
                let mut quoted = Vec::with_capacity(self.text.len().saturating_add(2));
                quoted.push(b'"');
                quoted.extend_from_slice(&self.text);
                quoted.push(b'"');
                if let (Ok(tenant), Some(top)) = (serde_json::from_slice::<String>(&quoted), self.stack.last_mut()) {
                    if top.sessions_read {
                        self.late_tenants = self.late_tenants.saturating_add(1);
                    } else {
                        top.tenant = Some(tenant);
                    }
                }
            }
            _ => {}
        }
    }

    /// The tenant records of a sessions array opened now carry: the innermost envelope's own,
    /// else its enclosing envelope's.
    fn envelope_tenant(&self) -> Option<String> {
        self.stack
            .iter()
            .rev()
            .filter(|f| f.role == Role::Envelope)
            .find_map(|f| f.tenant.clone())
    }

    fn push<E>(&mut self, object: bool, role: Role, i: usize) -> Result<(), Stop<E>> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Stop::Scan(ScanError::TooDeep {
                offset: self.offset(i),
                limit: MAX_DEPTH,
            }));
        }
        self.stack.push(Frame {
            object,
            role,
            expect: if object { Expect::KeyOrEnd } else { Expect::ValueOrEnd },
            key: Key::None,
            tenant: None,
            sessions_read: false,
        });
        Ok(())
    }

    fn open<E>(&mut self, object: bool, i: usize) -> Result<(), Stop<E>> {
        let depth = self.stack.len();
        let role = match self.stack.last_mut() {
            None => {
                self.root_seen = true;
                Role::Envelope
            }
            Some(parent) => match (parent.object, parent.role, parent.key, object) {
                (false, Role::Sessions, _, true) if self.capture.is_none() => Role::Candidate,
                (true, Role::Envelope, Key::RemoteSessions, false) => Role::Sessions,
                (true, Role::Candidate, Key::RemoteSessions, false) if matches!(&self.capture, Some(c) if c.depth.saturating_add(1) == depth) =>
                {
                    // Not a record: an envelope nesting the real list. Stop capturing it.
                    parent.role = Role::Envelope;
                    self.capture = None;
                    self.buf.clear();
                    Role::Sessions
                }
                _ => Role::Other,
            },
        };
        let mut tenant = None;
        if role == Role::Sessions {
            self.saw_sessions = true;
            tenant = self.envelope_tenant();
            if let Some(parent) = self.stack.last_mut() {
                parent.sessions_read = true;
            }
        }
        let response = object
            && matches!(self.stack.last(), Some(p) if p.object && p.role == Role::Envelope && p.key == Key::Response);
        if self.capture.is_none() && (role == Role::Candidate || response) {
            self.buf.clear();
            self.capture = Some(Capture {
                depth,
                response,
                start: i,
                oversized: false,
                broken: false,
            });
        }
        self.push(object, role, i)?;
        if let Some(top) = self.stack.last_mut() {
            top.tenant = tenant;
        }
        Ok(())
    }

    fn close<E>(
        &mut self,
        object: bool,
        chunk: &[u8],
        i: usize,
        emit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        match self.stack.last() {
            Some(top) if top.object == object => {}
            _ => {
                return Err(Stop::Scan(ScanError::Malformed {
                    offset: self.offset(i),
                    expected: "a bracket that matches the open one",
                }))
            }
        }
        self.stack.pop();
        if self.stack.is_empty() {
            self.root_done = true;
        }
        if !matches!(&self.capture, Some(c) if c.depth == self.stack.len()) {
            return Ok(());
        }
        let Some(cap) = self.capture.take() else {
            return Ok(());
        };
        let here = chunk.get(cap.start..=i).unwrap_or_default();
        let oversized = cap.oversized || self.buf.len().saturating_add(here.len()) > self.max_record;
        let result = if oversized {
            if !cap.oversized {
                self.buf.extend_from_slice(&here[..here.len().min(OVERSIZED_PREFIX)]);
                self.buf.truncate(OVERSIZED_PREFIX);
            }
            if cap.response {
                Ok(())
            } else {
                emit(Item::Oversized { prefix: &self.buf })
            }
        } else {
            let slice: &[u8] = if self.buf.is_empty() {
                here
            } else {
                self.buf.extend_from_slice(here);
                &self.buf
            };
            if cap.response {
                emit(Item::Response(slice))
            } else {
                let tenant = self.stack.last().and_then(|f| f.tenant.as_deref());
                emit(Item::Record { bytes: slice, tenant })
            }
        };
        if self.buf.capacity() > OVERSIZED_PREFIX.max(self.max_record.min(1 << 16)).saturating_mul(2) {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        result.map_err(Stop::Emit)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
#[path = "stream_tests.rs"]
mod tests;
