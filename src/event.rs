//! The normalised session event, the pipeline's currency, and the rules that turn a record's
//! wall-clock texts into instants.
//!
//! Every fact an encoder needs is derived here once (device host/port split, IP or domain,
//! duration, event id), so ECS and CEF can never derive a field differently. This module knows
//! neither the API's field names (that is `model.rs`) nor any output format (that is `encode`).
//!
//! Time rule: the vault writes local wall-clock times without a zone. They are read in the
//! configured IANA zone. A time that falls in a DST fold (it happened twice) takes the earlier
//! instant (the offset in force before the change); a time in a DST gap (it never happened on
//! the clock) is moved forward by the gap's length, i.e. read with the offset in force before
//! the gap. This is the rule of java.time's `ZonedDateTime.ofLocal` and Python's `fold=0`.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use crate::source::senhasegura::model::{SessionRecord, MAX_SESSION_ID};
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// Which moment of a session an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// The years a vault time may carry. Earlier than the Unix epoch or past 9999 is not a session
/// time but a broken or hostile record: ECS and Elasticsearch dates are four-digit years, and
/// bounding the year keeps every later time computation far from chrono's limits.
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// Parse a vault wall-clock text (`YYYY-MM-DD HH:MM:SS`, also with `T` or fractional seconds).
/// Zero dates and other unusable values give `None`, and so do years outside [`YEARS`] and
/// leap seconds (`23:59:60`: the vault's clock does not write them; chrono would carry them as
/// a 61st second that no receiver accepts).
pub fn parse_wall_clock(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    if t.starts_with("0000") {
        return None;
    }
    let parsed = parse_fixed(t.as_bytes()).or_else(|| {
        NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
    })?;
    let leap_second = parsed.nanosecond() >= 1_000_000_000;
    (YEARS.contains(&parsed.year()) && !leap_second).then_some(parsed)
}

/// The documented `YYYY-MM-DD HH:MM:SS` form, read without the general parser (it is on the
/// per-record path of every poll).
fn parse_fixed(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() != 19
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b' ' | b'T'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    // At most four ASCII digits: no overflow.
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, &c| {
            let digit = u32::from(c.checked_sub(b'0').filter(|d| *d < 10)?);
            acc.checked_mul(10)?.checked_add(digit)
        })
    };
    NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?.and_hms_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

/// Convert a wall-clock time in `tz` to UTC by the module's gap/fold rule. `None` only when
/// the time is so far from the present that the conversion would leave chrono's range, which
/// [`parse_wall_clock`]'s year bound rules out.
pub fn to_utc(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: read it with the offset in force just before the gap, which moves it
            // forward by the gap's length. Gaps are at most a few hours; step back to find it.
            let mut probe = local;
            for _ in 0..48 {
                probe = probe.checked_sub_signed(chrono::Duration::minutes(30))?;
                if let Some(before) = tz.from_local_datetime(&probe).earliest() {
                    let offset = chrono::Offset::fix(before.offset()).local_minus_utc();
                    let utc = local.checked_sub_signed(chrono::Duration::seconds(i64::from(offset)))?;
                    return Some(Utc.from_utc_datetime(&utc));
                }
            }
            Some(Utc.from_utc_datetime(&local))
        }
    }
}

/// Parse `HH:MM:SS` (hours may exceed 24) into seconds.
pub fn parse_hms(text: &str) -> Option<i64> {
    let mut parts = text.trim().split(':');
    let h: i64 = parts.next()?.trim().parse().ok()?;
    let m: i64 = parts.next()?.trim().parse().ok()?;
    let s: i64 = parts.next()?.trim().parse().ok()?;
    if parts.next().is_some() || h < 0 || !(0..60).contains(&m) || !(0..60).contains(&s) {
        return None;
    }
    h.checked_mul(3600)?.checked_add(m.checked_mul(60)?.checked_add(s)?)
}

/// The target device, split into what encoders map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// Host part as written (brackets of IPv6 removed).
    pub host: Option<String>,
    /// The host when it is an IP address.
    pub ip: Option<IpAddr>,
    /// The host when it is a host name.
    pub domain: Option<String>,
    /// The port, when given.
    pub port: Option<u16>,
    /// Set when the text is neither host nor host:port; then only the text as sent is usable.
    pub unparsed: bool,
}

fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !h.starts_with('.')
        && !h.starts_with('-')
}

impl Device {
    /// Parse `host:port`, `[v6]:port`, a bare IPv6, an IP or a host name.
    pub fn parse(raw: &str) -> Device {
        let text = raw.trim();
        let (host, port_text) = if let Some(rest) = text.strip_prefix('[') {
            match rest.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, tail)) => match tail.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => {
                        return Device {
                            unparsed: true,
                            ..Device::default()
                        }
                    }
                },
                None => {
                    return Device {
                        unparsed: true,
                        ..Device::default()
                    }
                }
            }
        } else {
            match text.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                _ => (text, None),
            }
        };
        let port = match port_text {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => {
                    return Device {
                        unparsed: true,
                        ..Device::default()
                    }
                }
            },
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Device {
                host: Some(host.to_string()),
                ip: Some(ip),
                domain: None,
                port,
                unparsed: false,
            };
        }
        if is_hostname(host) {
            return Device {
                host: Some(host.to_string()),
                ip: None,
                domain: Some(host.to_string()),
                port,
                unparsed: false,
            };
        }
        Device {
            unparsed: true,
            ..Device::default()
        }
    }
}

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

/// One event, ready for any encoder.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    /// start or end.
    pub phase: Phase,
    /// The dedup key `<session_id>:<phase>`.
    pub key: String,
    /// Deterministic id of (vault, tenant, session, phase).
    pub id: String,
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
    pub vault_host: String,
    /// Envelope tenant.
    pub tenant: Option<String>,
    /// The session's unique id.
    pub session_id: String,
    /// Record number as sent.
    pub record_id: Option<String>,
    /// Record number as an integer, when it is one.
    pub record_number: Option<i64>,
    /// PAM user.
    pub user: Option<String>,
    /// Origin address as sent.
    pub origin: Option<String>,
    /// Origin as an IP, when it parses.
    pub origin_ip: Option<IpAddr>,
    /// Target account.
    pub credential: Option<String>,
    /// Device as sent.
    pub device_raw: Option<String>,
    /// Device split.
    pub device: Device,
    /// Protocol, lowercased.
    pub protocol: Option<String>,
    /// Proxy.
    pub proxy: Option<String>,
    /// Duration text as sent.
    pub duration_text: Option<String>,
    /// prevent_purge as a boolean.
    pub prevent_purge: Option<bool>,
    /// Access request.
    pub request: Option<String>,
    /// ITSM ticket.
    pub itsm: Option<String>,
    /// The raw record JSON, when asked for.
    pub original: Option<String>,
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
    pub fn of(record: &'r SessionRecord<'_>, tz: Tz) -> Result<Candidate<'r>, RecordProblem> {
        let session_id = record.session_id.as_deref().ok_or(RecordProblem::NoSessionId)?;
        if session_id.len() > MAX_SESSION_ID {
            return Err(RecordProblem::SessionIdTooLong(session_id.len()));
        }
        let start = record
            .start
            .as_deref()
            .and_then(parse_wall_clock)
            .and_then(|t| to_utc(t, tz));
        let end = match record.end.as_deref() {
            None => None,
            Some(text) => match parse_wall_clock(text).and_then(|t| to_utc(t, tz)) {
                Some(t) => Some(t),
                None if text.trim().starts_with("0000") => None,
                None => return Err(RecordProblem::BadEnd(excerpt(text))),
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

/// A short, printable excerpt of a text from the vault, for log lines and error messages: at
/// most 64 characters, control characters and quotes escaped, `…` when cut.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = text.chars().take(MAX).flat_map(char::escape_debug).collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// The dedup key of a session's phase.
pub fn event_key(session_id: &str, phase: Phase, out: &mut String) {
    out.clear();
    out.push_str(session_id);
    out.push(':');
    out.push_str(phase.as_str());
}

/// The deterministic `event.id`: SHA-256 of (base URL, tenant, session id, phase), 128 bits hex.
pub fn event_id(base_url: &str, tenant: Option<&str>, session_id: &str, phase: Phase) -> String {
    let mut h = Sha256::new();
    for part in [base_url, tenant.unwrap_or(""), session_id, phase.as_str()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

fn owned(v: &Option<std::borrow::Cow<'_, str>>) -> Option<String> {
    v.as_deref().map(str::to_string)
}

impl SessionEvent {
    /// Build the event of a record whose candidate passed the filter.
    pub fn build(
        record: &SessionRecord<'_>,
        candidate: Candidate<'_>,
        origin: &Origin,
        tenant: Option<&str>,
        created: DateTime<Utc>,
        original: Option<&[u8]>,
    ) -> SessionEvent {
        let tenant = tenant.filter(|t| !t.trim().is_empty());
        let session_id = candidate.session_id.to_string();
        let mut key = String::with_capacity(session_id.len().saturating_add(6));
        event_key(&session_id, candidate.phase, &mut key);
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
        let device_raw = owned(&record.device);
        let device = device_raw.as_deref().map(Device::parse).unwrap_or_default();
        let origin_text = owned(&record.origin_ip);
        let origin_ip = origin_text.as_deref().and_then(|o| o.parse().ok());
        SessionEvent {
            phase: candidate.phase,
            id: event_id(&origin.base_url, tenant, &session_id, candidate.phase),
            key,
            timestamp: candidate.time,
            start: candidate.start,
            end: candidate.end.filter(|_| candidate.phase == Phase::End),
            duration_ns,
            created,
            timezone: origin.timezone.name(),
            vault_host: origin.vault_host.clone(),
            tenant: tenant.map(str::to_string),
            session_id,
            record_id: owned(&record.record_id),
            record_number: record.record_id.as_deref().and_then(|s| s.trim().parse().ok()),
            user: owned(&record.user),
            origin: origin_text,
            origin_ip,
            credential: owned(&record.credential),
            device_raw,
            device,
            protocol: record.protocol.as_deref().map(str::to_ascii_lowercase),
            proxy: owned(&record.proxy),
            duration_text: owned(&record.duration),
            prevent_purge: record
                .prevent_purge
                .as_deref()
                .and_then(|p| match p.trim().to_ascii_lowercase().as_str() {
                    "yes" | "sim" | "true" | "1" | "y" => Some(true),
                    "no" | "nao" | "não" | "false" | "0" | "n" => Some(false),
                    _ => None,
                }),
            request: owned(&record.request),
            itsm: owned(&record.itsm),
            original: original.map(|o| String::from_utf8_lossy(o).into_owned()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn utc(tz: Tz, text: &str) -> String {
        to_utc(parse_wall_clock(text).unwrap(), tz).unwrap().to_rfc3339()
    }

    #[test]
    fn wall_clock_to_utc_with_gaps_and_folds() {
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        assert_eq!(utc(sp, "2024-05-06 16:07:59"), "2024-05-06T19:07:59+00:00");
        let ny: Tz = "America/New_York".parse().unwrap();
        // Gap: 2024-03-10 02:30 never happened; read with EST (-5) → 07:30Z (= 03:30 EDT).
        assert_eq!(utc(ny, "2024-03-10 02:30:00"), "2024-03-10T07:30:00+00:00");
        // Fold: 2024-11-03 01:30 happened twice; the earlier (EDT, -4) is taken.
        assert_eq!(utc(ny, "2024-11-03 01:30:00"), "2024-11-03T05:30:00+00:00");
    }

    /// DST rules around real switch dates: (zone, wall time, expected UTC).
    #[test]
    fn dst_switches_in_three_zones() {
        let cases = [
            // São Paulo had DST until 2019. Summer time (-02) and standard time (-03).
            ("America/Sao_Paulo", "2018-01-15 12:00:00", "2018-01-15T14:00:00+00:00"),
            ("America/Sao_Paulo", "2018-07-15 12:00:00", "2018-07-15T15:00:00+00:00"),
            // 2018-11-04: 00:00 jumped to 01:00. 00:30 is in the gap: read at -03.
            ("America/Sao_Paulo", "2018-11-03 23:59:59", "2018-11-04T02:59:59+00:00"),
            ("America/Sao_Paulo", "2018-11-04 00:30:00", "2018-11-04T03:30:00+00:00"),
            ("America/Sao_Paulo", "2018-11-04 01:00:00", "2018-11-04T03:00:00+00:00"),
            // 2019-02-17 00:00 (-02) went back to 2019-02-16 23:00 (-03): 23:30 happened twice.
            ("America/Sao_Paulo", "2019-02-16 23:30:00", "2019-02-17T01:30:00+00:00"),
            ("America/Sao_Paulo", "2019-02-17 00:30:00", "2019-02-17T03:30:00+00:00"),
            // Since 2019 no DST: -03 all year.
            ("America/Sao_Paulo", "2024-01-15 12:00:00", "2024-01-15T15:00:00+00:00"),
            // New York 2024-03-10 02:00 EST → 03:00 EDT; 2024-11-03 02:00 EDT → 01:00 EST.
            ("America/New_York", "2024-03-10 01:59:59", "2024-03-10T06:59:59+00:00"),
            ("America/New_York", "2024-03-10 02:30:00", "2024-03-10T07:30:00+00:00"),
            ("America/New_York", "2024-03-10 03:00:00", "2024-03-10T07:00:00+00:00"),
            ("America/New_York", "2024-11-03 00:59:59", "2024-11-03T04:59:59+00:00"),
            ("America/New_York", "2024-11-03 01:30:00", "2024-11-03T05:30:00+00:00"),
            ("America/New_York", "2024-11-03 02:00:00", "2024-11-03T07:00:00+00:00"),
            // Berlin 2024-03-31 02:00 CET → 03:00 CEST; 2024-10-27 03:00 CEST → 02:00 CET.
            ("Europe/Berlin", "2024-03-31 01:59:59", "2024-03-31T00:59:59+00:00"),
            ("Europe/Berlin", "2024-03-31 02:30:00", "2024-03-31T01:30:00+00:00"),
            ("Europe/Berlin", "2024-03-31 03:00:00", "2024-03-31T01:00:00+00:00"),
            ("Europe/Berlin", "2024-10-27 02:30:00", "2024-10-27T00:30:00+00:00"),
            ("Europe/Berlin", "2024-10-27 03:00:00", "2024-10-27T02:00:00+00:00"),
        ];
        for (zone, wall, expected) in cases {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(utc(tz, wall), expected, "{zone} {wall}");
        }
    }

    #[test]
    fn zero_dates_and_hms() {
        assert_eq!(parse_wall_clock("0000-00-00 00:00:00"), None);
        assert_eq!(parse_hms("9223372036854775807:00:00"), None, "no overflow");
        assert_eq!(parse_hms("27:00:05"), Some(27 * 3600 + 5));
        assert_eq!(parse_hms("1:75:00"), None);
    }

    /// Far years and leap seconds are not session times; nothing on the way panics.
    #[test]
    fn years_outside_the_range_and_leap_seconds_are_refused() {
        for text in [
            "+262142-12-31 23:59:59",
            "-262143-01-01 00:00:00",
            "+12026-01-01 00:00:00",
            "10000-01-01 00:00:00",
            "1969-12-31 23:59:59",
            "2024-06-30 23:59:60",
            "2024-06-30T23:59:60.5",
        ] {
            assert_eq!(parse_wall_clock(text), None, "{text}");
        }
        assert!(parse_wall_clock("1970-01-01 00:00:00").is_some());
        let far = parse_wall_clock("9999-12-31 23:59:59").unwrap();
        for zone in ["America/Sao_Paulo", "Pacific/Kiritimati", "Etc/GMT+12"] {
            let tz: Tz = zone.parse().unwrap();
            assert!(to_utc(far, tz).is_some(), "{zone}");
        }
        // chrono's extremes do not panic either, whatever the zone.
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        let _ = to_utc(NaiveDateTime::MAX, sp);
        let _ = to_utc(NaiveDateTime::MIN, sp);
    }

    #[test]
    fn devices() {
        let d = Device::parse("10.66.33.15:3389");
        assert_eq!((d.ip.unwrap().to_string(), d.port), ("10.66.33.15".into(), Some(3389)));
        let d = Device::parse("[fd00::1]:22");
        assert_eq!((d.ip.unwrap().to_string(), d.port), ("fd00::1".into(), Some(22)));
        let d = Device::parse("fd00::1");
        assert_eq!((d.ip.unwrap().to_string(), d.port), ("fd00::1".into(), None));
        let d = Device::parse("DB-01.corp.example");
        assert_eq!(
            (d.domain.as_deref(), d.host.as_deref()),
            (Some("DB-01.corp.example"), Some("DB-01.corp.example"))
        );
        assert!(Device::parse("a b:c").unparsed);
        assert!(Device::parse("host:99999").unparsed);
    }

    #[test]
    fn event_ids_are_stable_and_distinct() {
        let a = event_id("https://v", Some("t"), "s", Phase::Start);
        assert_eq!(a, event_id("https://v", Some("t"), "s", Phase::Start));
        assert_ne!(a, event_id("https://v", Some("t"), "s", Phase::End));
        assert_ne!(a, event_id("https://w", Some("t"), "s", Phase::Start));
        assert_eq!(a.len(), 32);
    }
}
