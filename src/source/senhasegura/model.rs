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
            if raw.iter().any(|&b| b < 0x20) {
                return None;
            }
            let s = std::str::from_utf8(raw).ok()?;
            Some((!s.trim().is_empty()).then_some(Cow::Borrowed(s)))
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
mod tests {
    use super::*;

    #[test]
    fn tolerant_record() {
        let raw = br#"{"id": 7, "user": "", "session_id": "abc", "end": null, "ITSM": "CHG1", "extra": {"x": 1}}"#;
        let r = SessionRecord::parse(raw).unwrap();
        assert_eq!(r.record_id.as_deref(), Some("7"));
        assert_eq!(r.user, None);
        assert_eq!(r.session_id.as_deref(), Some("abc"));
        assert_eq!(r.end, None);
        assert_eq!(r.itsm.as_deref(), Some("CHG1"));
    }

    #[test]
    fn escaped_strings_are_owned() {
        let raw = br#"{"user": "a\"b", "session_id": "s"}"#;
        let r = SessionRecord::parse(raw).unwrap();
        assert_eq!(r.user.as_deref(), Some("a\"b"));
    }

    #[test]
    fn session_id_of_a_broken_record() {
        assert_eq!(
            session_id_hint(br#"{"id":1,"session_id" : "ab\"c","user":{}}"#).as_deref(),
            Some("ab\"c")
        );
        assert_eq!(session_id_hint(br#"{"session_id":12345,"#).as_deref(), Some("12345"));
        assert_eq!(
            session_id_hint(br#"{"session_id":"abcdef"#).as_deref(),
            Some("abcdef"),
            "cut short"
        );
        assert_eq!(session_id_hint(br#"{"session_id":{"x":1}}"#), None);
        assert_eq!(session_id_hint(br#"{"user":"x"}"#), None);
        let long = format!(r#"{{"session_id":"{}"}}"#, "a".repeat(70_000));
        assert_eq!(session_id_hint(long.as_bytes()).map(|s| s.len()), Some(256));
    }

    #[test]
    fn error_messages_from_every_shape() {
        assert_eq!(
            ErrorBody::message_of(
                br#"{"code":500,"response":{"status":500,"message":"Unexpected error.","error":true}}"#
            )
            .as_deref(),
            Some("Unexpected error.")
        );
        assert_eq!(
            ErrorBody::message_of(br#"{"message":"No route matched with those values."}"#).as_deref(),
            Some("No route matched with those values.")
        );
        assert_eq!(
            ErrorBody::message_of(br#"{"error":"invalid_client","error_description":"Client authentication failed."}"#)
                .as_deref(),
            Some("Client authentication failed.")
        );
        assert_eq!(ErrorBody::message_of(b"<html>"), None);
    }

    /// The records of `body` with the head fields the scanner noted, fed `chunk` bytes at a time.
    fn scanned(body: &[u8], chunk: usize) -> Vec<(Vec<u8>, Vec<Field>, bool)> {
        use crate::source::senhasegura::stream::{Item, Scanner};
        let mut scanner = Scanner::default().watching(RECORD_FIELDS);
        let mut out = Vec::new();
        for c in body.chunks(chunk) {
            scanner
                .feed::<()>(c, &mut |item| {
                    if let Item::Record {
                        bytes,
                        fields,
                        only_watched,
                        ..
                    } = item
                    {
                        out.push((bytes.to_vec(), fields.to_vec(), only_watched));
                    }
                    Ok(())
                })
                .unwrap();
        }
        scanner.finish().unwrap();
        out
    }

    #[test]
    fn the_head_read_off_the_scan_is_the_parsed_head_or_nothing() {
        // (record, whether the scan alone must give its head)
        let cases: &[(&str, bool)] = &[
            (
                r#"{"id":"1","session_id":"abc","start":"2024-01-01 00:00:00","end":"2024-01-01 01:00:00","user":"x"}"#,
                true,
            ),
            (
                r#"{ "session_id" : "abc" , "start" : "2024-01-01 00:00:00" , "end" : null }"#,
                true,
            ),
            (r#"{"session_id":"abc","start":"2024-01-01 00:00:00","end":""}"#, true),
            (
                r#"{"session_id":"abc","start":"2024-01-01 00:00:00","end":"0000-00-00 00:00:00"}"#,
                true,
            ),
            (
                r#"{"x":{"session_id":"inner","start":"1999"},"session_id":"outer","y":[{"end":"z"}]}"#,
                false,
            ),
            (r#"{"session_id":"ção","start":"  "}"#, true),
            (
                r#"{"session_id":"abc","start":"2024-01-01 00:00:00","end":null-}"#,
                false,
            ),
            (
                r#"{"session_id":"abc","start":"2024-01-01 00:00:00","end":null.5}"#,
                false,
            ),
            (
                r#"{"session_id":"abc","end":null+,"start":"2024-01-01 00:00:00"}"#,
                false,
            ),
            (
                r#"{"session_id":"abc","start":"2024-01-01 00:00:00","user":tru}"#,
                false,
            ),
            (
                r#"{"session_id":"abc","start":"2024-01-01 00:00:00","other":"x"}"#,
                false,
            ),
            (r#"{"user":"only"}"#, true),
            (r#"{"session_id":123,"start":"2024-01-01 00:00:00"}"#, false),
            (r#"{"session_id":true}"#, false),
            (r#"{"session_id":"a\"b","start":"2024-01-01 00:00:00"}"#, false),
            (
                r#"{"sess\u0069on_id":"disguised","start":"2024-01-01 00:00:00"}"#,
                false,
            ),
            (r#"{"session_id":"a","session_id":"b"}"#, false),
            (r#"{"session_id":"a","end":nulls}"#, false),
            (r#"{"session_id":"a","end":{"at":"2024"}}"#, false),
            (r#"{"session_id":"a","end":["2024"]}"#, false),
            ("{\"session_id\":\"a\tb\"}", false),
            (r#"{"session_id":"a" "start":"2024-01-01 00:00:00"}"#, false),
            (
                r#"{"a_key_longer_than_sixty_four_bytes_is_never_a_head_field_name_but_unsure":1,"session_id":"a"}"#,
                false,
            ),
        ];
        let mut body = br#"{"remote_sessions":["#.to_vec();
        for (i, (record, _)) in cases.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(record.as_bytes());
        }
        body.extend_from_slice(b"]}");
        for chunk in [1, 2, 3, 7, 64, body.len()] {
            let records = scanned(&body, chunk);
            assert_eq!(records.len(), cases.len(), "chunk {chunk}");
            for ((bytes, fields, only), (record, fast)) in records.iter().zip(cases) {
                assert_eq!(bytes, record.as_bytes());
                let read = RecordHead::from_fields(bytes, fields, *only);
                assert_eq!(read.is_some(), *fast, "chunk {chunk}: {record} {fields:?}");
                if let Some(head) = read {
                    assert_eq!(
                        Ok(head),
                        RecordHead::parse(bytes).map_err(|e| e.to_string()),
                        "{record}"
                    );
                }
            }
        }
        // The whole record, read off the scan only when every key is watched and plain.
        let full = r#"{"id":"3","user":"Admin","origin_ip":"172.16.20.125","credential":"usr","device":"10.66.33.15:3389","protocol":"rdp","proxy":"Web Proxy","session_id":"e7ac","start":"2024-05-06 16:05:07","end":"2024-05-06 16:07:59","time":"00:02:52","prevent_purge":"No","request":null,"ITSM":"CHG1"}"#;
        let with = |extra: &str| full.replace(r#""request":null"#, &format!(r#""request":null,{extra}"#));
        let records: &[(String, bool)] = &[
            (full.to_string(), true),
            (full.replace("ITSM", "itsm"), true),
            (with(r#""session_id":"again""#), false),
            (with(r#""itsm":"CHG2""#), false),
            (with(r#""extra":"x""#), false),
            (with(r#""extra":tru"#), false),
            (with(r#""extra":"\x""#), false),
            (full.replace(r#""id":"3""#, r#""id":3"#), false),
            (full.replace(r#""user":"Admin""#, r#""user":"Ad\u006din""#), false),
            (full.replace(r#""user":"Admin""#, r#""user":{"name":"Admin"}"#), false),
            (r#"{"session_id":"s","start":"2024-05-06 16:05:07"}"#.to_string(), true),
        ];
        let mut body = br#"{"remote_sessions":["#.to_vec();
        let joined: Vec<&str> = records.iter().map(|(r, _)| r.as_str()).collect();
        body.extend_from_slice(joined.join(",").as_bytes());
        body.extend_from_slice(b"]}");
        for chunk in [1, 5, 64, body.len()] {
            let scanned = scanned(&body, chunk);
            assert_eq!(scanned.len(), records.len());
            for ((bytes, fields, only), (record, fast)) in scanned.iter().zip(records) {
                let read = SessionRecord::from_fields(bytes, fields, *only);
                assert_eq!(read.is_some(), *fast, "chunk {chunk}: {record}");
                if let Some(r) = read {
                    assert_eq!(
                        Ok(r),
                        SessionRecord::parse(bytes).map_err(|e| e.to_string()),
                        "{record}"
                    );
                }
            }
        }

        // Where the head read off the spans and serde differ, by design: a plain string in
        // another documented field is not read, so a raw control byte in it (which serde
        // refuses) does not stop the head from being read; such a record counts as known when
        // its event is, and as bad (by serde) when it is new.
        let body =
            b"{\"remote_sessions\":[{\"session_id\":\"s\",\"start\":\"2024-01-01 00:00:00\",\"user\":\"a\x01b\"}]}";
        let scanned_ = scanned(body, body.len());
        let (bytes, fields, only) = &scanned_[0];
        assert!(RecordHead::from_fields(bytes, fields, *only).is_some());
        assert!(RecordHead::parse(bytes).is_err());
        assert!(SessionRecord::from_fields(bytes, fields, *only).is_none());

        // Bytes that are not UTF-8 in a field: the parse decides (and refuses).
        let bad = b"{\"remote_sessions\":[{\"session_id\":\"\xff\"}]}";
        let records = scanned(bad, bad.len());
        assert_eq!(
            RecordHead::from_fields(&records[0].0, &records[0].1, records[0].2),
            None
        );
        assert_eq!(
            SessionRecord::from_fields(&records[0].0, &records[0].1, records[0].2),
            None
        );
        assert!(RecordHead::parse(&records[0].0).is_err());
    }
}
