//! ECS 9.4 JSON documents, exactly per docs/mapping.md. Nested objects, as Elastic's own agents
//! write them; `senhasegura.*` holds the vendor fields. Empty values produce no field.

use super::EncodeCounters;
use crate::event::{Phase, SessionEvent};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::net::IpAddr;

/// The ECS version written in `ecs.version`.
pub const ECS_VERSION: &str = "9.4.0";

/// The ECS encoder.
#[derive(Debug, Clone)]
pub struct EcsEncoder {
    include_original: bool,
}

/// A time as ECS wants it: RFC 3339 in UTC with `Z`, fractional seconds only when there are
/// any (in 3, 6 or 9 digits, as chrono's `AutoSi`), written without an allocation.
#[derive(Clone, Copy)]
struct Ts(DateTime<Utc>);

fn ts(t: &DateTime<Utc>) -> Ts {
    Ts(*t)
}

impl Ts {
    /// The text into `buf`; `None` outside years 0..=9999 or in a leap second (then chrono
    /// writes it).
    fn write(self, buf: &mut [u8; 32]) -> Option<usize> {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let nanos = t.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        let mut put = |at: usize, v: u32, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year, 4);
        put(5, t.month(), 2);
        put(8, t.day(), 2);
        put(11, t.hour(), 2);
        put(14, t.minute(), 2);
        put(17, t.second(), 2);
        let (digits, value) = match nanos {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (3, n / 1_000_000),
            n if n % 1_000 == 0 => (6, n / 1_000),
            n => (9, n),
        };
        if digits > 0 {
            put(20, value, digits);
        }
        buf[4] = b'-';
        buf[7] = b'-';
        buf[10] = b'T';
        buf[13] = b':';
        buf[16] = b':';
        let mut end = 19;
        if digits > 0 {
            buf[19] = b'.';
            end = 20 + digits;
        }
        buf[end] = b'Z';
        Some(end + 1)
    }
}

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        match self.write(&mut buf).and_then(|n| std::str::from_utf8(&buf[..n]).ok()) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Ts,
    ecs: Ecs,
    message: Message<'a, 'a>,
    event: Event<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Name<'a>>,
    source: Source<'a>,
    destination: Destination<'a>,
    network: Network<'a>,
    observer: Observer<'a>,
    related: Related<'a>,
    senhasegura: Vendor<'a>,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Event<'a> {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kind_type: [&'static str; 1],
    action: &'static str,
    outcome: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    created: Ts,
    dataset: &'static str,
    module: &'static str,
    timezone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<&'a str>,
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Source<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Name<'a>>,
}

#[derive(Serialize)]
struct Destination<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Name<'a>>,
}

#[derive(Serialize)]
struct Network<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<&'a str>,
    transport: &'static str,
}

#[derive(Serialize)]
struct Observer<'a> {
    vendor: &'static str,
    product: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    hostname: &'a str,
}

#[derive(Serialize)]
struct Related<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<&'a str>,
}

#[derive(Serialize)]
struct Vendor<'a> {
    session: VendorSession<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
}

#[derive(Serialize)]
struct VendorSession<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_id_raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prevent_purge: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    itsm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
}

/// serde_json's compact formatter, also escaping what JSON allows raw but some receivers take
/// as a line break or an end of string: DEL, the C1 controls (NEL), and U+2028/U+2029. The
/// document reads back the same; no value can split a line.
struct LineSafe;

impl serde_json::ser::Formatter for LineSafe {
    #[inline]
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let bytes = fragment.as_bytes();
        // Almost every value is plain ASCII below DEL: write it as is (a plain loop is much
        // cheaper than a search on these short strings).
        if bytes.iter().all(|&b| b < 0x7f) {
            return writer.write_all(bytes);
        }
        let mut done = 0;
        let mut from = 0;
        // DEL is 7F; C1 controls are C2 80..9F; U+2028/9 are E2 80 A8/A9.
        while let Some(off) = memchr::memchr3(0x7f, 0xc2, 0xe2, &bytes[from..]) {
            let at = from + off;
            let escaped = match bytes[at..] {
                [0x7f, ..] => Some((0x7f, 1)),
                [0xc2, b @ 0x80..=0x9f, ..] => Some((u32::from(b), 2)),
                [0xe2, 0x80, b @ (0xa8 | 0xa9), ..] => Some((0x2000 + u32::from(b - 0x80), 3)),
                _ => None,
            };
            match escaped {
                Some((code, len)) => {
                    writer.write_all(&bytes[done..at])?;
                    write!(writer, "\\u{code:04x}")?;
                    done = at + len;
                    from = done;
                }
                None => from = at + 1,
            }
        }
        writer.write_all(&bytes[done..])
    }
}

/// The one-sentence summary in `message`, written straight into the document.
struct Message<'e, 'r>(&'e SessionEvent<'r>);

impl std::fmt::Display for Message<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0;
        let who = e.user.unwrap_or("unknown user");
        let verb = match e.phase {
            Phase::Start => "started",
            Phase::End => "ended",
        };
        write!(f, "{who} {verb} a ")?;
        match e.protocol.as_deref() {
            None => f.write_str("remote")?,
            Some(p) => {
                let mut buf = [0u8; 32];
                match buf.get_mut(..p.len()) {
                    Some(upper) => {
                        upper.copy_from_slice(p.as_bytes());
                        upper.make_ascii_uppercase();
                        f.write_str(std::str::from_utf8(upper).map_err(|_| std::fmt::Error)?)?;
                    }
                    None => f.write_str(&p.to_ascii_uppercase())?,
                }
            }
        }
        write!(f, " session to {}", e.device_raw.unwrap_or("unknown device"))?;
        if let Some(c) = e.credential {
            write!(f, " as {c}")?;
        }
        Ok(())
    }
}

impl Serialize for Message<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl EcsEncoder {
    /// A new encoder.
    pub fn new(include_original: bool) -> EcsEncoder {
        EcsEncoder { include_original }
    }

    /// Append the JSON document of `e` to `out`.
    pub fn encode(&self, e: &SessionEvent, out: &mut Vec<u8>, counters: &mut EncodeCounters) {
        let (action, kind_type) = match e.phase {
            Phase::Start => ("remote-session-started", "start"),
            Phase::End => ("remote-session-ended", "end"),
        };
        if e.device.unparsed {
            counters.partial += 1;
        }
        let mut related_ip: Vec<IpAddr> = Vec::with_capacity(2);
        for ip in [e.origin_ip, e.device.ip].into_iter().flatten() {
            if !related_ip.contains(&ip) {
                related_ip.push(ip);
            }
        }
        let mut related_user: Vec<&str> = Vec::with_capacity(2);
        for u in [e.user, e.credential].into_iter().flatten() {
            if !related_user.contains(&u) {
                related_user.push(u);
            }
        }
        let doc = Doc {
            timestamp: ts(&e.timestamp),
            ecs: Ecs { version: ECS_VERSION },
            message: Message(e),
            event: Event {
                kind: "event",
                category: ["session"],
                kind_type: [kind_type],
                action,
                outcome: "success",
                id: &e.id,
                start: e.start.as_ref().map(ts),
                end: e.end.as_ref().map(ts),
                duration: e.duration_ns,
                created: ts(&e.created),
                dataset: "senhasegura.session",
                module: "senhasegura",
                timezone: e.timezone,
                original: if self.include_original {
                    e.original.as_deref()
                } else {
                    None
                },
            },
            user: e.user.map(|name| Name { name }),
            source: Source {
                address: e.origin,
                ip: e.origin_ip,
                user: e.user.map(|name| Name { name }),
            },
            destination: Destination {
                address: if e.device.unparsed { e.device_raw } else { e.device.host },
                ip: e.device.ip,
                domain: e.device.domain,
                port: e.device.port,
                user: e.credential.map(|name| Name { name }),
            },
            network: Network {
                protocol: e.protocol.as_deref(),
                application: e.protocol.as_deref(),
                transport: "tcp",
            },
            observer: Observer {
                vendor: "senhasegura",
                product: "PAM",
                kind: "proxy",
                hostname: e.vault_host,
            },
            related: Related {
                ip: related_ip,
                user: related_user,
                hosts: e.device.domain.into_iter().collect(),
            },
            senhasegura: Vendor {
                session: VendorSession {
                    id: e.session_id,
                    record_id: e.record_number,
                    record_id_raw: if e.record_number.is_none() { e.record_id } else { None },
                    proxy: e.proxy,
                    prevent_purge: e.prevent_purge,
                    duration: e.duration_text,
                    request: e.request,
                    itsm: e.itsm,
                    device: if e.device.unparsed { e.device_raw } else { None },
                },
                tenant: e.tenant,
            },
        };
        let mut ser = serde_json::Serializer::with_formatter(&mut *out, LineSafe);
        // Serialising plain structs of strings and numbers into a Vec cannot fail.
        let _ = doc.serialize(&mut ser);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let nanos = [0, 5_000_000, 123_000_000, 1_000, 123_456_000, 1, 999_999_999];
        for i in 0..5000 {
            let secs = (next() % 253_402_300_800) as i64; // 1970..=9999
            let t = Utc.timestamp_opt(secs, nanos[i % nanos.len()]).unwrap();
            let text = serde_json::to_string(&ts(&t)).unwrap();
            assert_eq!(text, format!("\"{}\"", t.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
        }
        // Outside what the fast path writes, chrono writes it.
        let far = Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            serde_json::to_string(&ts(&far)).unwrap(),
            format!("\"{}\"", far.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        );
    }

    #[test]
    fn line_breaking_characters_are_escaped_and_read_back() {
        let value = "a\u{0}b\u{7f}c\u{85}d\u{9f}e\u{2028}f\u{2029}g\u{a0}é€\u{2027}";
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, LineSafe);
        value.serialize(&mut ser).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "\"a\\u0000b\\u007fc\\u0085d\\u009fe\\u2028f\\u2029g\u{a0}é€\u{2027}\""
        );
        assert_eq!(serde_json::from_str::<String>(&text).unwrap(), value);
    }
}
