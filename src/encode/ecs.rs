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

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    ecs: Ecs,
    message: String,
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
    start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    created: String,
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

/// The one-sentence summary in `message`.
pub fn message(e: &SessionEvent) -> String {
    let who = e.user.as_deref().unwrap_or("unknown user");
    let proto = e
        .protocol
        .as_deref()
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| "remote".into());
    let target = e.device_raw.as_deref().unwrap_or("unknown device");
    let account = e.credential.as_deref().map(|c| format!(" as {c}")).unwrap_or_default();
    let verb = match e.phase {
        Phase::Start => "started",
        Phase::End => "ended",
    };
    format!("{who} {verb} a {proto} session to {target}{account}")
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
        for u in [e.user.as_deref(), e.credential.as_deref()].into_iter().flatten() {
            if !related_user.contains(&u) {
                related_user.push(u);
            }
        }
        let doc = Doc {
            timestamp: ts(&e.timestamp),
            ecs: Ecs { version: ECS_VERSION },
            message: message(e),
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
            user: e.user.as_deref().map(|name| Name { name }),
            source: Source {
                address: e.origin.as_deref(),
                ip: e.origin_ip,
                user: e.user.as_deref().map(|name| Name { name }),
            },
            destination: Destination {
                address: if e.device.unparsed {
                    e.device_raw.as_deref()
                } else {
                    e.device.host.as_deref()
                },
                ip: e.device.ip,
                domain: e.device.domain.as_deref(),
                port: e.device.port,
                user: e.credential.as_deref().map(|name| Name { name }),
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
                hostname: &e.vault_host,
            },
            related: Related {
                ip: related_ip,
                user: related_user,
                hosts: e.device.domain.as_deref().into_iter().collect(),
            },
            senhasegura: Vendor {
                session: VendorSession {
                    id: &e.session_id,
                    record_id: e.record_number,
                    record_id_raw: if e.record_number.is_none() {
                        e.record_id.as_deref()
                    } else {
                        None
                    },
                    proxy: e.proxy.as_deref(),
                    prevent_purge: e.prevent_purge,
                    duration: e.duration_text.as_deref(),
                    request: e.request.as_deref(),
                    itsm: e.itsm.as_deref(),
                    device: if e.device.unparsed {
                        e.device_raw.as_deref()
                    } else {
                        None
                    },
                },
                tenant: e.tenant.as_deref(),
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
