//! The streaming listing scanner: finds session records in a listing body as its bytes
//! arrive, without building the document.
//!
//! A small structural lexer (strings, brackets, `:` and `,`) tracks where it is. Every object
//! inside a `remote_sessions` array is captured as a byte slice (borrowed from the chunk when
//! it lies in one, copied once when it spans chunks) and handed out whole, so records can be
//! parsed with `serde_json::from_slice` into borrowed structs, which is much faster than a
//! reader-based parse. When such an object turns out to hold a `remote_sessions` array of its
//! own (the v3 documentation's nested shape), the capture is dropped and the scanner descends.
//! `tenant` strings and `response` objects of every envelope level are reported too.
//!
//! Memory is one record (bounded by `max_record`) plus the nesting stack, whatever the size of
//! the listing. The scanner knows nothing about record fields: that is `model.rs`.

/// Something the scanner found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// The bytes of one session record object.
    Record(&'a [u8]),
    /// An envelope's `tenant` string (reported before the records that follow it).
    Tenant(String),
    /// An envelope's `response` object.
    Response(&'a [u8]),
    /// A record larger than the limit, skipped.
    Oversized,
}

/// Default cap on one record's size.
pub const DEFAULT_MAX_RECORD: usize = 1 << 20;

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

#[derive(Debug)]
struct Frame {
    object: bool,
    role: Role,
    expect_key: bool,
    key: Key,
    pending_tenant: Option<String>,
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
}

/// Structural problems found in the body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    /// The body ended inside the document.
    #[error("the listing ended before its JSON was complete ({depth} levels still open); the transfer was cut short")]
    Incomplete { depth: usize },
    /// The body is empty.
    #[error("the listing body is empty")]
    Empty,
    /// Brackets do not match, or data follows the document.
    #[error("the listing is not valid JSON near byte {offset}")]
    Malformed { offset: u64 },
}

/// The streaming scanner. Feed it chunks in order, then call [`Scanner::finish`].
#[derive(Debug)]
pub struct Scanner {
    stack: Vec<Frame>,
    in_string: bool,
    escape: bool,
    string_kind: StringKind,
    text: Vec<u8>,
    text_overflow: bool,
    capture: Option<Capture>,
    buf: Vec<u8>,
    max_record: usize,
    consumed: u64,
    root_seen: bool,
    root_done: bool,
    malformed: Option<u64>,
    tenant_ready: bool,
    /// Whether any `remote_sessions` array was entered.
    pub saw_sessions: bool,
}

const KEY_LIMIT: usize = 64;
const TENANT_LIMIT: usize = 4096;

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
            string_kind: StringKind::Other,
            text: Vec::with_capacity(KEY_LIMIT),
            text_overflow: false,
            capture: None,
            buf: Vec::new(),
            max_record,
            consumed: 0,
            root_seen: false,
            root_done: false,
            malformed: None,
            tenant_ready: false,
            saw_sessions: false,
        }
    }

    /// Bytes fed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Scan one chunk, calling `emit` for each item found. Stops early with `emit`'s error.
    pub fn feed<E>(&mut self, chunk: &[u8], emit: &mut impl FnMut(Item<'_>) -> Result<(), E>) -> Result<(), E> {
        let mut i = 0;
        let n = chunk.len();
        while i < n {
            if self.in_string {
                i = self.scan_string(chunk, i);
                if self.tenant_ready {
                    self.tenant_ready = false;
                    if let Some(t) = self.stack.last_mut().and_then(|top| top.pending_tenant.take()) {
                        emit(Item::Tenant(t))?;
                    }
                }
                continue;
            }
            let b = chunk[i];
            match b {
                b'"' => self.open_string(),
                b'{' | b'[' => self.open(b == b'{', i, emit)?,
                b'}' | b']' => self.close(chunk, i, emit)?,
                b':' => {
                    if let Some(top) = self.stack.last_mut() {
                        top.expect_key = false;
                    }
                }
                b',' => {
                    if let Some(top) = self.stack.last_mut() {
                        if top.object {
                            top.expect_key = true;
                        }
                    }
                }
                b' ' | b'\n' | b'\r' | b'\t' => {}
                _ => {
                    if self.root_done && self.malformed.is_none() {
                        self.malformed = Some(self.consumed + i as u64);
                    }
                    if self.stack.is_empty() {
                        self.root_seen = true;
                    }
                }
            }
            i += 1;
        }
        if let Some(cap) = &mut self.capture {
            if !cap.oversized {
                self.buf.extend_from_slice(&chunk[cap.start..]);
                if self.buf.len() > self.max_record {
                    cap.oversized = true;
                    self.buf = Vec::new();
                }
            }
            cap.start = 0;
        }
        self.consumed += n as u64;
        Ok(())
    }

    /// Check that the document was complete.
    pub fn finish(&self) -> Result<(), ScanError> {
        if let Some(offset) = self.malformed {
            return Err(ScanError::Malformed { offset });
        }
        if !self.root_seen {
            return Err(ScanError::Empty);
        }
        if !self.stack.is_empty() || self.in_string {
            return Err(ScanError::Incomplete {
                depth: self.stack.len(),
            });
        }
        Ok(())
    }

    fn open_string(&mut self) {
        self.in_string = true;
        self.text.clear();
        self.text_overflow = false;
        self.string_kind = match self.stack.last() {
            Some(top) if top.object && top.expect_key => StringKind::Key,
            Some(top)
                if top.object && top.key == Key::Tenant && matches!(top.role, Role::Envelope | Role::Candidate) =>
            {
                StringKind::Tenant
            }
            Some(_) => StringKind::Other,
            None => {
                self.root_seen = true;
                StringKind::Other
            }
        };
    }

    /// Consume string bytes from `i`; returns the next position to scan.
    fn scan_string(&mut self, chunk: &[u8], mut i: usize) -> usize {
        if self.escape {
            self.escape = false;
            self.keep_text(&chunk[i..i + 1]);
            return i + 1;
        }
        match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
            None => {
                self.keep_text(&chunk[i..]);
                chunk.len()
            }
            Some(off) => {
                self.keep_text(&chunk[i..i + off]);
                i += off;
                if chunk[i] == b'\\' {
                    self.keep_text(&chunk[i..i + 1]);
                    self.escape = true;
                } else {
                    self.in_string = false;
                    self.close_string();
                }
                i + 1
            }
        }
    }

    fn keep_text(&mut self, bytes: &[u8]) {
        let limit = match self.string_kind {
            StringKind::Other => return,
            StringKind::Key => KEY_LIMIT,
            StringKind::Tenant => TENANT_LIMIT,
        };
        if self.text.len() + bytes.len() > limit {
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
                let mut quoted = Vec::with_capacity(self.text.len() + 2);
                quoted.push(b'"');
                quoted.extend_from_slice(&self.text);
                quoted.push(b'"');
                if let (Ok(tenant), Some(top)) = (serde_json::from_slice::<String>(&quoted), self.stack.last_mut()) {
                    // An envelope's tenant is reported at once; a candidate's waits until the
                    // candidate turns out to be an envelope.
                    self.tenant_ready = top.role == Role::Envelope;
                    top.pending_tenant = Some(tenant);
                }
            }
            _ => {}
        }
    }

    fn open<E>(&mut self, object: bool, i: usize, emit: &mut impl FnMut(Item<'_>) -> Result<(), E>) -> Result<(), E> {
        let depth = self.stack.len();
        let parent = self.stack.last_mut();
        let role = match parent {
            None => {
                if self.root_done && self.malformed.is_none() {
                    self.malformed = Some(self.consumed + i as u64);
                }
                self.root_seen = true;
                if object {
                    Role::Envelope
                } else {
                    self.saw_sessions = true;
                    Role::Sessions
                }
            }
            Some(parent) => match (parent.object, parent.role, parent.key, object) {
                (false, Role::Sessions, _, true) => Role::Candidate,
                (true, Role::Envelope, Key::RemoteSessions, false) => Role::Sessions,
                (true, Role::Candidate, Key::RemoteSessions, false) => {
                    // Not a record: an envelope nesting the real list. Stop capturing it.
                    parent.role = Role::Envelope;
                    let tenant = parent.pending_tenant.take();
                    self.capture = None;
                    self.buf.clear();
                    if let Some(t) = tenant {
                        emit(Item::Tenant(t))?;
                    }
                    Role::Sessions
                }
                _ => Role::Other,
            },
        };
        if role == Role::Sessions {
            self.saw_sessions = true;
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
            });
        }
        self.stack.push(Frame {
            object,
            role,
            expect_key: object,
            key: Key::None,
            pending_tenant: None,
        });
        Ok(())
    }

    fn close<E>(&mut self, chunk: &[u8], i: usize, emit: &mut impl FnMut(Item<'_>) -> Result<(), E>) -> Result<(), E> {
        if self.stack.pop().is_none() {
            if self.malformed.is_none() {
                self.malformed = Some(self.consumed + i as u64);
            }
            return Ok(());
        }
        if self.stack.is_empty() {
            self.root_done = true;
        }
        let closes_capture = matches!(&self.capture, Some(c) if c.depth == self.stack.len());
        if closes_capture {
            let cap = self.capture.take().expect("checked above");
            if cap.oversized {
                self.buf = Vec::new();
                return emit(Item::Oversized);
            }
            let slice: &[u8] = if self.buf.is_empty() {
                &chunk[cap.start..=i]
            } else {
                self.buf.extend_from_slice(&chunk[cap.start..=i]);
                &self.buf
            };
            let result = if cap.response {
                emit(Item::Response(slice))
            } else {
                emit(Item::Record(slice))
            };
            self.buf.clear();
            return result;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &[u8], chunk: usize) -> (Vec<String>, Result<(), ScanError>) {
        let mut s = Scanner::new(1 << 16);
        let mut out = Vec::new();
        for c in body.chunks(chunk.max(1)) {
            s.feed::<()>(c, &mut |item| {
                out.push(match item {
                    Item::Record(r) => format!("R{}", String::from_utf8_lossy(r)),
                    Item::Tenant(t) => format!("T{t}"),
                    Item::Response(r) => format!("E{}", String::from_utf8_lossy(r)),
                    Item::Oversized => "O".into(),
                });
                Ok(())
            })
            .unwrap();
        }
        (out, s.finish())
    }

    #[test]
    fn flat_and_nested_shapes_at_every_chunk_size() {
        let flat = br#"{"response":{"error":false},"tenant":"T\"1","remote_sessions":[{"id":"1","x":{"remote_sessions":[1]}},{"id":"2"}]}"#;
        let nested = br#"{"remote_sessions":[{"tenant":"A","remote_sessions":[{"id":"1"},{"id":"2","s":"}]{["}]}]}"#;
        for chunk in 1..flat.len() + 1 {
            let (items, end) = scan(flat, chunk);
            assert_eq!(end, Ok(()));
            assert_eq!(
                items,
                vec![
                    r#"E{"error":false}"#.to_string(),
                    "TT\"1".into(),
                    r#"R{"id":"1","x":{"remote_sessions":[1]}}"#.into(),
                    r#"R{"id":"2"}"#.into()
                ],
                "chunk {chunk}"
            );
            let (items, end) = scan(nested, chunk);
            assert_eq!(end, Ok(()));
            assert_eq!(
                items,
                vec![
                    "TA".to_string(),
                    r#"R{"id":"1"}"#.into(),
                    r#"R{"id":"2","s":"}]{["}"#.into()
                ]
            );
        }
    }

    #[test]
    fn truncated_body_is_incomplete() {
        let (items, end) = scan(br#"{"remote_sessions":[{"id":"1"},{"id":"#, 7);
        assert_eq!(items.len(), 1);
        assert!(matches!(end, Err(ScanError::Incomplete { .. })));
        assert_eq!(scan(b"", 4).1, Err(ScanError::Empty));
        assert!(matches!(scan(b"{}}", 4).1, Err(ScanError::Malformed { .. })));
    }

    #[test]
    fn oversized_records_are_skipped() {
        let big = format!(
            r#"{{"remote_sessions":[{{"id":"{}"}},{{"id":"2"}}]}}"#,
            "x".repeat(100_000)
        );
        let (items, end) = scan(big.as_bytes(), 4096);
        assert_eq!(end, Ok(()));
        assert_eq!(items, vec!["O".to_string(), r#"R{"id":"2"}"#.into()]);
    }
}
