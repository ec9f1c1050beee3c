//! Strings: skipping through them fast, and keeping the text of the few that matter (object
//! keys, to know where the scanner is, and envelope tenants), bounded.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::grammar::{Key, Role};
use super::{Scanner, KEY_LIMIT, TENANT_LIMIT};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum StringKind {
    Key,
    Tenant,
    /// The value of a watched field of a record.
    Field,
    Other,
}

/// The first `"` or `\\` in `bytes`. Most strings are short (keys, ids, times): their first
/// 32 bytes are looked at 8 at a time here, and memchr takes the rest.
#[inline]
pub(super) fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at: usize = 0;
    for word in bytes.chunks_exact(8).take(4) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let v = u64::from_le_bytes(w);
        // A byte of `x` is zero exactly where `v` has the byte sought; the lowest byte flagged
        // below is the first such (flags above it may be false).
        let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH;
        let found = zero(v ^ (LOW * u64::from(b'"'))) | zero(v ^ (LOW * u64::from(b'\\')));
        if found != 0 {
            return Some(at.saturating_add((found.trailing_zeros() >> 3) as usize));
        }
        at = at.saturating_add(8);
    }
    memchr::memchr2(b'"', b'\\', bytes.get(at..)?).map(|i| at.saturating_add(i))
}

impl Scanner {
    #[inline]
    pub(super) fn start_string(&mut self, kind: StringKind) {
        self.in_string = true;
        self.string_kind = kind;
        self.text.clear();
        self.text_overflow = false;
        self.string_escaped = false;
    }

    /// Consume string bytes from `i`; returns the next position to scan.
    #[inline]
    pub(super) fn scan_string(&mut self, chunk: &[u8], i: usize) -> usize {
        let rest = chunk.get(i..).unwrap_or_default();
        if self.escape {
            self.escape = false;
            self.keep_text(rest.get(..1).unwrap_or_default());
            return i.saturating_add(1);
        }
        match quote_or_backslash(rest) {
            None => {
                self.keep_text(rest);
                chunk.len()
            }
            Some(off) => {
                self.keep_text(&rest[..off]);
                let at = i.saturating_add(off);
                if rest[off] == b'\\' {
                    self.keep_text(b"\\");
                    self.escape = true;
                    self.string_escaped = true;
                } else {
                    self.in_string = false;
                    self.close_string(at);
                }
                i.saturating_add(off).saturating_add(1)
            }
        }
    }

    fn keep_text(&mut self, bytes: &[u8]) {
        let limit = match self.string_kind {
            StringKind::Other | StringKind::Field => return,
            StringKind::Key => KEY_LIMIT,
            StringKind::Tenant => TENANT_LIMIT,
        };
        if self.text.len().saturating_add(bytes.len()) > limit {
            self.text_overflow = true;
        } else {
            self.text.extend_from_slice(bytes);
        }
    }

    /// The string closed at chunk position `at` (its quote).
    fn close_string(&mut self, at: usize) {
        match self.string_kind {
            StringKind::Key => {
                let plain = !self.text_overflow && !self.string_escaped;
                let record =
                    self.capture.is_some() && matches!(self.stack.last(), Some(top) if top.role == Role::Candidate);
                // A record's keys are nearly all watched names, found at the first guess; the
                // names the scanner itself steers by are looked for only in the rest (or all
                // keys, when the caller watches one of those names).
                let field = match plain && record && !self.watch.steering {
                    true => self.watch.key(&self.text),
                    false => Key::Other,
                };
                let key = match (plain, self.text.as_slice()) {
                    _ if field != Key::Other => field,
                    (true, b"remote_sessions") => Key::RemoteSessions,
                    (true, b"tenant") => Key::Tenant,
                    (true, b"response") => Key::Response,
                    (true, text) if record && self.watch.steering => self.watch.key(text),
                    (true, _) if record => Key::Other,
                    (false, _) if record => {
                        // It could spell a watched name in a way its raw bytes do not show.
                        self.watch.unsure = true;
                        Key::Other
                    }
                    _ => Key::Other,
                };
                if record && !matches!(key, Key::Field(_)) {
                    self.watch.other_keys = true;
                }
                if let Some(top) = self.stack.last_mut() {
                    top.key = key;
                }
            }
            StringKind::Field => self.close_field_string(at),
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
}
