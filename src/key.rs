//! The event key: what identifies one event, and what the store remembers as delivered.
//!
//! A session yields at most two events, its `start` (first seen running) and its `end`, so an
//! event is identified by its session id and its [`Phase`]. The filter builds the key once per
//! record, borrowed from the parsed record ([`KeyRef`]: the lookup of a known event allocates
//! nothing); only an event that is emitted owns its key ([`EventKey`]), which travels with the
//! event to the sinks and back to the store's commit. The store packs it into its own bytes
//! (`state/chunk.rs`); nothing parses it on the way.
//!
//! Operators see a key as `<session_id>:<phase>` (`state list`, `state forget`, export lines,
//! logs): the only place where it is text, read by [`EventKey::from_str`](std::str::FromStr).
// Input path: keys are read from operators' files and arguments.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use std::fmt;

/// The longest session id the agent accepts (longer ones are bad records): the vault's ids are
/// 40 hex digits; this leaves room for other schemes while bounding what one key costs.
pub const MAX_SESSION_ID: usize = 1024;

/// Which moment of a session an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// The session was first seen running.
    Start,
    /// The session has ended.
    End,
}

impl Phase {
    /// `start` or `end`, as used in keys, MSGIDs and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::End => "end",
        }
    }
}

/// A borrowed event key: the form every record's lookup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    /// The session's id.
    pub session_id: &'a str,
    /// Its phase.
    pub phase: Phase,
}

impl<'a> KeyRef<'a> {
    /// The key of `phase` of session `session_id`.
    pub fn new(session_id: &'a str, phase: Phase) -> KeyRef<'a> {
        KeyRef { session_id, phase }
    }

    /// An owned copy (one allocation: the id).
    pub fn to_owned(self) -> EventKey {
        EventKey::new(self.session_id, self.phase)
    }
}

/// An owned event key: carried by an emitted event until the store commits it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    session_id: Box<str>,
    phase: Phase,
}

impl EventKey {
    /// The key of `phase` of session `session_id`.
    pub fn new(session_id: impl Into<Box<str>>, phase: Phase) -> EventKey {
        EventKey {
            session_id: session_id.into(),
            phase,
        }
    }

    /// The borrowed form.
    pub fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            session_id: &self.session_id,
            phase: self.phase,
        }
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }
}

impl fmt::Display for KeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.session_id, self.phase.as_str())
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// Text that is not an event key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    /// No `:start` or `:end` suffix.
    #[error("`{0}` is not an event key: expected <session_id>:start or <session_id>:end")]
    Form(String),
    /// Nothing before the phase.
    #[error("`{0}` has an empty session id")]
    EmptyId(String),
    /// A session id no record could have.
    #[error("a key's session id is {0} bytes long, more than the {MAX_SESSION_ID} a session id may have")]
    TooLong(usize),
}

impl std::str::FromStr for EventKey {
    type Err = BadKey;

    /// `<session_id>:start` or `<session_id>:end` (the id may itself contain colons).
    fn from_str(text: &str) -> Result<EventKey, BadKey> {
        let shown = || crate::settings::excerpt(text);
        let (session_id, phase) = match text.rsplit_once(':') {
            Some((id, "start")) => (id, Phase::Start),
            Some((id, "end")) => (id, Phase::End),
            _ => return Err(BadKey::Form(shown())),
        };
        if session_id.is_empty() {
            return Err(BadKey::EmptyId(shown()));
        }
        if session_id.len() > MAX_SESSION_ID {
            return Err(BadKey::TooLong(session_id.len()));
        }
        Ok(EventKey::new(session_id, phase))
    }
}

impl serde::Serialize for EventKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EventKey, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_refusals() {
        for text in [
            "e7acacb6aedbab70073456da5744166939b77527:end",
            "odd:id:with:colons:start",
        ] {
            let key: EventKey = text.parse().unwrap();
            assert_eq!(key.to_string(), text);
            assert_eq!(key.as_ref().to_owned(), key);
        }
        let key: EventKey = "a:b:end".parse().unwrap();
        assert_eq!((key.session_id(), key.phase()), ("a:b", Phase::End));
        assert!(matches!("abc".parse::<EventKey>(), Err(BadKey::Form(_))));
        assert!(matches!("abc:stop".parse::<EventKey>(), Err(BadKey::Form(_))));
        assert!(matches!(":start".parse::<EventKey>(), Err(BadKey::EmptyId(_))));
        let long = format!("{}:end", "a".repeat(MAX_SESSION_ID + 1));
        assert_eq!(long.parse::<EventKey>(), Err(BadKey::TooLong(MAX_SESSION_ID + 1)));
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, r#""a:b:end""#);
        assert_eq!(serde_json::from_str::<EventKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<EventKey>(r#""nope""#).is_err());
    }
}
