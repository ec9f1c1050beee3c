//! The structural state machine: a stack of frames, each with its role (envelope, record
//! candidate, sessions array) and what the grammar allows next; strict checking outside
//! records, lenient inside a record whose grammar broke; opening containers.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::{Capture, Field, Item, ScanError, Scanner, Stop, StringKind, MAX_DEPTH};

/// The last key read in an object frame, as far as the scanner cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Key {
    None,
    RemoteSessions,
    Tenant,
    Response,
    /// The n-th watched field name (in a record's own object).
    Field(usize),
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
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
pub(super) enum Expect {
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
pub(super) struct Frame {
    pub(super) object: bool,
    pub(super) role: Role,
    pub(super) expect: Expect,
    pub(super) key: Key,
    /// Envelope: its own tenant; Sessions: the tenant its records carry; Candidate: a tenant
    /// seen inside it, used if it turns out to be an envelope.
    pub(super) tenant: Option<String>,
    /// An envelope whose sessions array was already read.
    pub(super) sessions_read: bool,
}

#[inline]
pub(super) fn is_scalar_byte(b: u8) -> bool {
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
    /// One byte of a record whose grammar broke: only strings and brackets count.
    pub(super) fn lenient_byte<E>(
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
    #[inline]
    pub(super) fn lenient(&self) -> bool {
        matches!(&self.capture, Some(c) if c.broken)
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

    pub(super) fn strict<E>(
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
                if let Some(field) = self.watched_value() {
                    self.set_field(field, Field::Other);
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
                if let Some(field) = self.watched_value() {
                    self.start_string(StringKind::Field);
                    self.open_field_string(field, i);
                    return Ok(());
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
                if let Some(field) = self.watched_value() {
                    self.set_field(
                        field,
                        Field::Scalar {
                            start: self.record_offset(i),
                        },
                    );
                }
                if item_of_sessions {
                    emit(Item::NotAnObject { what }).map_err(Stop::Emit)?;
                }
                Ok(())
            }
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
            self.watch_reset();
        }
        self.push(object, role, i)?;
        if let Some(top) = self.stack.last_mut() {
            top.tenant = tenant;
        }
        Ok(())
    }
}
