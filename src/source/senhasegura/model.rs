//! The senhasegura API's record and envelope as the vault sends them. This is the only file
//! that knows API field names: past [`SessionRecord::parse`] the code speaks in the record's
//! own field names.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::stream::Field;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// One element of `remote_sessions[]`: the facts of one session, borrowed from the listing
/// bytes where possible. Parsed tolerantly: every field may be missing, null, a string, a
/// number or a boolean (`id` is documented as int but sent as a string); blank strings are
/// `None`; unknown fields are ignored. The field names below are the API's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SessionRecord<'a> {
    /// The record number (`id`), as sent.
    #[serde(borrow, rename = "id", deserialize_with = "text")]
    pub record_id: Option<Cow<'a, str>>,
    /// The PAM user who opened the session.
    #[serde(borrow, deserialize_with = "text")]
    pub user: Option<Cow<'a, str>>,
    /// Where the user connected from.
    #[serde(borrow, deserialize_with = "text")]
    pub origin_ip: Option<Cow<'a, str>>,
    /// The target account used.
    #[serde(borrow, deserialize_with = "text")]
    pub credential: Option<Cow<'a, str>>,
    /// The target device, `host:port`, IP or host name.
    #[serde(borrow, deserialize_with = "text")]
    pub device: Option<Cow<'a, str>>,
    /// ssh, rdp, https...
    #[serde(borrow, deserialize_with = "text")]
    pub protocol: Option<Cow<'a, str>>,
    /// The proxy that carried the session.
    #[serde(borrow, deserialize_with = "text")]
    pub proxy: Option<Cow<'a, str>>,
    /// The session's unique hash.
    #[serde(borrow, deserialize_with = "text")]
    pub session_id: Option<Cow<'a, str>>,
    /// Start, vault wall-clock text.
    #[serde(borrow, deserialize_with = "text")]
    pub start: Option<Cow<'a, str>>,
    /// End, vault wall-clock text; absent, empty or a zero date while running.
    #[serde(borrow, deserialize_with = "text")]
    pub end: Option<Cow<'a, str>>,
    /// Duration text `HH:MM:SS` (`time`; hours may exceed 24).
    #[serde(borrow, rename = "time", deserialize_with = "text")]
    pub duration: Option<Cow<'a, str>>,
    /// `prevent_purge` Yes/No (Sim/Não).
    #[serde(borrow, deserialize_with = "text")]
    pub prevent_purge: Option<Cow<'a, str>>,
    /// The access request, if any.
    #[serde(borrow, deserialize_with = "text")]
    pub request: Option<Cow<'a, str>>,
    /// The ITSM ticket, if any.
    #[serde(borrow, rename = "ITSM", alias = "itsm", deserialize_with = "text")]
    pub itsm: Option<Cow<'a, str>>,
}

impl<'a> SessionRecord<'a> {
    /// Parse one record's JSON bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<SessionRecord<'a>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The record read off where the scanner found [`RECORD_FIELDS`] in `bytes`, without
    /// parsing it; `None` unless every key of the record is one of those names
    /// (`only_watched`, so nothing else in it goes unchecked) and every value is a plain
    /// string, `null` or absent (the caller parses the record then). Same result as
    /// [`SessionRecord::parse`] where both give one.
    pub fn from_fields(bytes: &'a [u8], fields: &[Field], only_watched: bool) -> Option<SessionRecord<'a>> {
        let [session_id, start, end, id, user, origin_ip, credential, device, protocol, proxy, time, prevent_purge, request, itsm_upper, itsm_lower] =
            fields
        else {
            return None;
        };
        if !only_watched {
            return None;
        }
        let itsm = match (itsm_upper, itsm_lower) {
            (f, Field::Absent) | (Field::Absent, f) => *f,
            // Both spellings: serde refuses the record (a duplicate field); let it say so.
            _ => return None,
        };
        Some(SessionRecord {
            record_id: field_text(bytes, *id)?,
            user: field_text(bytes, *user)?,
            origin_ip: field_text(bytes, *origin_ip)?,
            credential: field_text(bytes, *credential)?,
            device: field_text(bytes, *device)?,
            protocol: field_text(bytes, *protocol)?,
            proxy: field_text(bytes, *proxy)?,
            session_id: field_text(bytes, *session_id)?,
            start: field_text(bytes, *start)?,
            end: field_text(bytes, *end)?,
            duration: field_text(bytes, *time)?,
            prevent_purge: field_text(bytes, *prevent_purge)?,
            request: field_text(bytes, *request)?,
            itsm: field_text(bytes, itsm)?,
        })
    }

    /// The fields that decide the record's event, borrowed.
    pub fn head(&self) -> RecordHead<'_> {
        fn borrow<'s>(f: &'s Option<Cow<'_, str>>) -> Option<Cow<'s, str>> {
            f.as_deref().map(Cow::Borrowed)
        }
        RecordHead {
            session_id: borrow(&self.session_id),
            start: borrow(&self.start),
            end: borrow(&self.end),
        }
    }
}

/// The three fields of a [`SessionRecord`] that decide its event and key, parsed on their own:
/// looking up a record that turns out known costs these alone (serde_json skips the other
/// fields without copying or checking them as UTF-8). Same names and leniency as the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RecordHead<'a> {
    /// The session's unique hash.
    #[serde(borrow, deserialize_with = "text")]
    pub session_id: Option<Cow<'a, str>>,
    /// Start, vault wall-clock text.
    #[serde(borrow, deserialize_with = "text")]
    pub start: Option<Cow<'a, str>>,
    /// End, vault wall-clock text; absent, empty or a zero date while running.
    #[serde(borrow, deserialize_with = "text")]
    pub end: Option<Cow<'a, str>>,
}

/// The API names of a record's fields, in the order [`SessionRecord::from_fields`] takes their
/// spans; [`RecordHead`]'s three come first. The scanner watches these
/// ([`super::stream::Scanner::watching`]). `ITSM` is also accepted as `itsm`.
pub const RECORD_FIELDS: &[&[u8]] = &[
    b"session_id",
    b"start",
    b"end",
    b"id",
    b"user",
    b"origin_ip",
    b"credential",
    b"device",
    b"protocol",
    b"proxy",
    b"time",
    b"prevent_purge",
    b"request",
    b"ITSM",
    b"itsm",
];

impl<'a> RecordHead<'a> {
    /// Parse the head of one record's JSON bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<RecordHead<'a>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The head read off where the scanner found [`RECORD_FIELDS`] in `bytes`, without parsing
    /// the record; `None` unless every key of the record is one of those names
    /// (`only_watched`: the scanner checks the structure, not number forms, escapes or control
    /// bytes, so a record with other keys may hold what serde refuses) and the head's values
    /// are plain strings, `null` or absent (the caller parses the record then). Same result as
    /// [`RecordHead::parse`] where both give one.
    pub fn from_fields(bytes: &'a [u8], fields: &[Field], only_watched: bool) -> Option<RecordHead<'a>> {
        let [session_id, start, end, ..] = fields else {
            return None;
        };
        // The other fields are not read, but what the scanner saw only the start of (a number,
        // a literal, an object) must be for serde to judge.
        let unread = |f: &Field| match *f {
            Field::Other => true,
            Field::Scalar { start } => !is_null(bytes, start),
            Field::Absent | Field::Text { .. } => false,
        };
        if !only_watched || fields.iter().any(unread) {
            return None;
        }
        Some(RecordHead {
            session_id: field_text(bytes, *session_id)?,
            start: field_text(bytes, *start)?,
            end: field_text(bytes, *end)?,
        })
    }
}

/// Is the scalar at `start` exactly `null`? The scanner lets any run of letters, digits, `-`,
/// `+` and `.` through as one value, so what follows must end it.
fn is_null(bytes: &[u8], start: usize) -> bool {
    bytes.get(start..).is_some_and(|rest| {
        rest.starts_with(b"null") && matches!(rest.get(4), Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
    })
}

/// One watched field's value as [`text`] would give it; `None` when only a parse can tell.
fn field_text(bytes: &[u8], field: Field) -> Option<Option<Cow<'_, str>>> {
    match field {
        Field::Absent => Some(None),
        Field::Text { start, end } => {
            let raw = bytes.get(start..end)?;
            // JSON strings hold no raw control characters; the parser refuses them.
            let mut ascii = true;
            for &b in raw {
                if b < 0x20 {
                    return None;
                }
                ascii &= b < 0x80;
            }
            let s = std::str::from_utf8(raw).ok()?;
            // In ASCII without control characters the only white space is the space.
            let blank = match ascii {
                true => raw.iter().all(|&b| b == b' '),
                false => s.trim().is_empty(),
            };
            Some((!blank).then_some(Cow::Borrowed(s)))
        }
        Field::Scalar { start } => is_null(bytes, start).then_some(None),
        Field::Other => None,
    }
}

/// A lenient value with blank strings as `None`.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(lenient(d)?.filter(|s| !s.trim().is_empty()))
}

/// The `session_id` of a record that could not be parsed (broken JSON, a field of the wrong
/// type, or only its first bytes when it was too large), found by a plain search, so the log
/// line can name the session for the operator to find in the vault. Looks at most at the
/// first 64 KiB; the id is cut at 256 bytes.
pub fn session_id_hint(bytes: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"session_id\"";
    let bytes = bytes.get(..bytes.len().min(64 * 1024))?;
    let at = memchr::memmem::find(bytes, KEY)?;
    let rest = bytes.get(at.checked_add(KEY.len())?..)?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    let rest = rest.strip_prefix(b":")?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    if let Some(digits) = rest.get(..rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len())) {
        if !digits.is_empty() {
            return Some(String::from_utf8_lossy(digits).into_owned());
        }
    }
    let body = rest.strip_prefix(b"\"")?;
    let mut end: usize = 0;
    let mut escaped = false;
    for &b in body.iter().take(256) {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => break,
            _ => {}
        }
        end = end.saturating_add(1);
    }
    let raw = body.get(..end)?;
    let mut quoted = Vec::with_capacity(raw.len().saturating_add(2));
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted)
        .ok()
        .or_else(|| Some(String::from_utf8_lossy(raw).into_owned()))
        .filter(|s| !s.trim().is_empty())
}

/// The listing envelope's `response` object (also sent alone on errors).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ApiResponse {
    /// HTTP-like status.
    #[serde(deserialize_with = "lenient_owned")]
    pub status: Option<String>,
    /// Human message (English).
    #[serde(deserialize_with = "lenient_owned")]
    pub message: Option<String>,
    /// Portuguese message.
    #[serde(deserialize_with = "lenient_owned")]
    pub mensagem: Option<String>,
    /// True on error.
    #[serde(deserialize_with = "lenient_bool")]
    pub error: bool,
    /// Portuguese `error`.
    #[serde(deserialize_with = "lenient_bool")]
    pub erro: bool,
}

/// An error body in any of the shapes seen: `{response:{message}}`, `{message}`,
/// `{error_description}`, `{error}`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ErrorBody {
    response: Option<ApiResponse>,
    #[serde(deserialize_with = "lenient_owned")]
    message: Option<String>,
    #[serde(deserialize_with = "lenient_owned")]
    error_description: Option<String>,
    #[serde(deserialize_with = "lenient_owned")]
    error: Option<String>,
}

/// The most characters of a vault's error message that are kept.
pub const MESSAGE_CHARS: usize = 240;

impl ErrorBody {
    /// The most specific message in an error body, if there is one.
    pub fn message_of(body: &[u8]) -> Option<String> {
        let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
        let from_response = parsed.response.and_then(|r| r.message.or(r.mensagem));
        [from_response, parsed.message, parsed.error_description, parsed.error]
            .into_iter()
            .flatten()
            .map(|m| m.trim().to_string())
            .find(|m| !m.is_empty() && m != "true" && m != "false")
            // The vault's words go into errors, logs and /health: escaped, bounded.
            .map(|m| crate::settings::printable(&m, MESSAGE_CHARS))
    }
}

impl ApiResponse {
    /// The envelope says the call failed.
    pub fn is_error(&self) -> bool {
        self.error || self.erro
    }
}

/// The OAuth 2.0 token answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Lifetime in seconds (may come as a string).
    #[serde(default, deserialize_with = "lenient_owned")]
    pub expires_in: Option<String>,
}

/// Accept a string, number, bool or null as an optional string.
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, a number, a boolean or null")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(if v { "true" } else { "false" })))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_any(V)
}

fn lenient_owned<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    lenient(d).map(|v| v.map(Cow::into_owned))
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(matches!(
        lenient(d)?.as_deref().map(str::to_ascii_lowercase).as_deref(),
        Some("true" | "1" | "yes")
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
#[path = "model_tests.rs"]
mod tests;
