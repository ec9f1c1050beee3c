//! The normalised session event, the pipeline's currency.
//!
//! Every fact an encoder needs is derived here once (device host/port split, IP or domain,
//! duration, event id), so ECS and CEF can never derive a field differently. This module knows
//! no output format (that is `encode`). `time` turns the vault's wall-clock texts into
//! instants (with the DST rule); `device` splits the device text.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use crate::key::MAX_SESSION_ID;
pub use crate::key::{EventKey, KeyRef, Phase};
use crate::source::senhasegura::model::{RecordHead, SessionRecord};
mod device;
mod time;

pub use device::Device;
pub use time::{parse_hms, parse_wall_clock, to_utc, TimeField, WallClock, YEARS};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::net::IpAddr;

/// Which vault the events come from; part of every `event.id`.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Base URL of the vault.
    pub base_url: String,
    /// Vault host name (`observer.hostname`, CEF `dvchost`).
    pub vault_host: String,
    /// The vault's zone.
    pub timezone: Tz,
}

/// One event, ready for any encoder; its texts are borrowed from the record (and the origin),
/// so building one copies nothing but what it derives.
#[derive(Debug, Clone)]
pub struct SessionEvent<'r> {
    /// start or end.
    pub phase: Phase,
    /// Deterministic id of (vault, tenant, session, phase).
    pub id: EventId,
    /// The event's own time: start for `start`, end for `end`.
    pub timestamp: DateTime<Utc>,
    /// Session start.
    pub start: Option<DateTime<Utc>>,
    /// Session end (phase end only).
    pub end: Option<DateTime<Utc>>,
    /// Session duration in nanoseconds (phase end only).
    pub duration_ns: Option<i64>,
    /// When the agent read the record.
    pub created: DateTime<Utc>,
    /// The vault's zone name.
    pub timezone: &'static str,
    /// Vault host.
    pub vault_host: &'r str,
    /// Envelope tenant.
    pub tenant: Option<&'r str>,
    /// The session's unique id.
    pub session_id: &'r str,
    /// Record number as sent.
    pub record_id: Option<&'r str>,
    /// Record number as an integer, when it is one.
    pub record_number: Option<i64>,
    /// PAM user.
    pub user: Option<&'r str>,
    /// Origin address as sent.
    pub origin: Option<&'r str>,
    /// Origin as an IP, when it parses.
    pub origin_ip: Option<IpAddr>,
    /// Target account.
    pub credential: Option<&'r str>,
    /// Device as sent.
    pub device_raw: Option<&'r str>,
    /// Device split.
    pub device: Device<'r>,
    /// Protocol, lowercased.
    pub protocol: Option<Cow<'r, str>>,
    /// Proxy.
    pub proxy: Option<&'r str>,
    /// Duration text as sent.
    pub duration_text: Option<&'r str>,
    /// prevent_purge as a boolean.
    pub prevent_purge: Option<bool>,
    /// Access request.
    pub request: Option<&'r str>,
    /// ITSM ticket.
    pub itsm: Option<&'r str>,
    /// The raw record JSON, when asked for.
    pub original: Option<Cow<'r, str>>,
}

/// What a record means for the pipeline before any store lookup: its candidate event's phase
/// and time, and the session it belongs to. Cheap: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'r> {
    /// The session id (checked present and at most `MAX_SESSION_ID` bytes).
    pub session_id: &'r str,
    /// The phase to emit.
    pub phase: Phase,
    /// The event's own time (start or end).
    pub time: DateTime<Utc>,
    /// Parsed start.
    pub start: Option<DateTime<Utc>>,
    /// Parsed end.
    pub end: Option<DateTime<Utc>>,
}

/// Why a record cannot become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    /// No `session_id`.
    #[error("record has no session_id")]
    NoSessionId,
    /// A `session_id` too long to be one.
    #[error("session_id is {0} bytes long, more than the {MAX_SESSION_ID} a session id may have")]
    SessionIdTooLong(usize),
    /// `end` is set but is not a date.
    #[error("record has an unreadable end time `{0}`")]
    BadEnd(String),
    /// A running session without a usable start cannot be placed in time.
    #[error("running session has no usable start time")]
    NoStart,
}

impl<'r> Candidate<'r> {
    /// Decide the candidate event of a record. A session with a usable end is `end`; one
    /// without is `start`.
    pub fn of(record: &'r RecordHead<'_>, tz: Tz) -> Result<Candidate<'r>, RecordProblem> {
        Candidate::read(record, &mut WallClock::new(tz))
    }

    /// [`Candidate::of`], reading the times with `clock` (which remembers the last ones).
    pub fn read(record: &'r RecordHead<'_>, clock: &mut WallClock) -> Result<Candidate<'r>, RecordProblem> {
        let session_id = record.session_id.as_deref().ok_or(RecordProblem::NoSessionId)?;
        if session_id.len() > MAX_SESSION_ID {
            return Err(RecordProblem::SessionIdTooLong(session_id.len()));
        }
        let start = record.start.as_deref().and_then(|s| clock.read(TimeField::Start, s));
        let end = match record.end.as_deref() {
            None => None,
            Some(text) => match clock.read(TimeField::End, text) {
                Some(t) => Some(t),
                None if text.trim().starts_with("0000") => None,
                None => return Err(RecordProblem::BadEnd(crate::source::senhasegura::excerpt(text))),
            },
        };
        match (end, start) {
            (Some(e), _) => Ok(Candidate {
                session_id,
                phase: Phase::End,
                time: e,
                start,
                end,
            }),
            (None, Some(s)) => Ok(Candidate {
                session_id,
                phase: Phase::Start,
                time: s,
                start,
                end: None,
            }),
            (None, None) => Err(RecordProblem::NoStart),
        }
    }
}

/// An `event.id`: 128 bits as 32 lowercase hex digits, held inline (no allocation per event).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId([u8; 32]);

impl EventId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The deterministic `event.id`: SHA-256 of (base URL, tenant, session id, phase), 128 bits hex.
pub fn event_id(base_url: &str, tenant: Option<&str>, session_id: &str, phase: Phase) -> EventId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = Sha256::new();
    for part in [base_url, tenant.unwrap_or(""), session_id, phase.as_str()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut id = [0u8; 32];
    for (pair, byte) in id.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    EventId(id)
}

/// A yes/no flag as the vault writes it (English or Portuguese, any ASCII case).
fn yes_or_no(text: &str) -> Option<bool> {
    let t = text.trim();
    let any = |words: &[&str]| words.iter().any(|w| t.eq_ignore_ascii_case(w));
    match () {
        _ if any(&["yes", "sim", "true", "1", "y"]) => Some(true),
        _ if any(&["no", "nao", "não", "false", "0", "n"]) => Some(false),
        _ => None,
    }
}

fn text<'r>(v: &'r Option<Cow<'_, str>>) -> Option<&'r str> {
    v.as_deref()
}

impl<'r> SessionEvent<'r> {
    /// The event's key.
    pub fn key(&self) -> KeyRef<'r> {
        KeyRef::new(self.session_id, self.phase)
    }

    /// Build the event of a record whose candidate passed the filter.
    pub fn build(
        record: &'r SessionRecord<'_>,
        candidate: Candidate<'r>,
        origin: &'r Origin,
        tenant: Option<&'r str>,
        created: DateTime<Utc>,
        original: Option<&'r [u8]>,
    ) -> SessionEvent<'r> {
        let tenant = tenant.filter(|t| !t.trim().is_empty());
        let session_id = candidate.session_id;
        let duration_ns = match candidate.phase {
            Phase::Start => None,
            Phase::End => match (candidate.start, candidate.end) {
                (Some(s), Some(e)) if e >= s => e.signed_duration_since(s).num_nanoseconds(),
                _ => record
                    .duration
                    .as_deref()
                    .and_then(parse_hms)
                    .and_then(|s| s.checked_mul(1_000_000_000)),
            },
        };
        let device_raw = text(&record.device);
        let device = device_raw.map(Device::parse).unwrap_or_default();
        let origin_text = text(&record.origin_ip);
        let origin_ip = origin_text.and_then(|o| o.parse().ok());
        SessionEvent {
            phase: candidate.phase,
            id: event_id(&origin.base_url, tenant, session_id, candidate.phase),
            timestamp: candidate.time,
            start: candidate.start,
            end: candidate.end.filter(|_| candidate.phase == Phase::End),
            duration_ns,
            created,
            timezone: origin.timezone.name(),
            vault_host: &origin.vault_host,
            tenant,
            session_id,
            record_id: text(&record.record_id),
            record_number: record.record_id.as_deref().and_then(|s| s.trim().parse().ok()),
            user: text(&record.user),
            origin: origin_text,
            origin_ip,
            credential: text(&record.credential),
            device_raw,
            device,
            protocol: record
                .protocol
                .as_deref()
                .map(|p| match p.bytes().any(|b| b.is_ascii_uppercase()) {
                    true => Cow::Owned(p.to_ascii_lowercase()),
                    false => Cow::Borrowed(p),
                }),
            proxy: text(&record.proxy),
            duration_text: text(&record.duration),
            prevent_purge: record.prevent_purge.as_deref().and_then(yes_or_no),
            request: text(&record.request),
            itsm: text(&record.itsm),
            original: original.map(String::from_utf8_lossy),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn yes_and_no_are_read_in_either_language_and_any_ascii_case() {
        for t in ["yes", " Yes ", "SIM", "true", "1", "y", "Y"] {
            assert_eq!(yes_or_no(t), Some(true), "{t:?}");
        }
        for t in ["no", "NO", "Nao", "não", "false", "0", "n", "\tN\n"] {
            assert_eq!(yes_or_no(t), Some(false), "{t:?}");
        }
        // Only ASCII letters fold, as before: "NÃO" is not read.
        for t in ["", "maybe", "NÃO", "yes please", "2"] {
            assert_eq!(yes_or_no(t), None, "{t:?}");
        }
    }

    #[test]
    fn event_ids_are_stable_and_distinct() {
        let a = event_id("https://v", Some("t"), "s", Phase::Start);
        assert_eq!(a, event_id("https://v", Some("t"), "s", Phase::Start));
        assert_ne!(a, event_id("https://v", Some("t"), "s", Phase::End));
        assert_ne!(a, event_id("https://w", Some("t"), "s", Phase::Start));
        assert_eq!(a.as_str().len(), 32);
        assert!(a
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // The first 16 bytes of SHA-256 over the parts, each followed by a NUL.
        let mut h = Sha256::new();
        h.update(b"https://v\0t\0s\0start\0");
        assert_eq!(a.as_str(), hex::encode(&h.finalize()[..16]));
    }
}
