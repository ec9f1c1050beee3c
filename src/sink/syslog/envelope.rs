//! The syslog envelope around an encoded event (docs/mapping.md, "Syslog"): RFC 5424
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG` or RFC 3164
//! `<PRI>Mmm dd hh:mm:ss HOSTNAME APP-NAME[PROCID]: MSG`, with the event's own time (UTC;
//! RFC 3164 has neither year nor zone), and the stream framing: octet counting (RFC 5425/6587)
//! or a newline after each message.
//!
//! Written here rather than with the `syslog` crate's formatters because those stamp the
//! current time, take a numeric MSGID and frame nothing; the crate's `Facility` and `Severity`
//! give the PRI.

use crate::event::Phase;
use crate::sink::EventMeta;
use std::fmt::Write as _;

/// RFC 5424 or RFC 3164.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The structured, zoned format (default).
    Rfc5424,
    /// The BSD format.
    Rfc3164,
}

/// How messages are delimited on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `LEN SP MSG` (RFC 5425, RFC 6587 3.4.1).
    OctetCounting,
    /// `MSG LF` (RFC 6587 3.4.2); line breaks inside a message are replaced by spaces.
    Newline,
}

/// The fixed parts of every header.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// RFC 5424 or 3164.
    pub protocol: Protocol,
    /// Facility and severity, as the PRI number.
    pub pri: u8,
    /// HOSTNAME field.
    pub hostname: String,
    /// APP-NAME field.
    pub app_name: String,
    /// PROCID field.
    pub procid: String,
    /// MSGID of start events.
    pub msgid_start: String,
    /// MSGID of end events.
    pub msgid_end: String,
}

/// PRI of a facility and severity.
pub fn pri(facility: syslog::Facility, severity: syslog::Severity) -> u8 {
    facility as u8 | severity as u8
}

/// Parse a severity name (`info`, `notice`, ... or `LOG_INFO`).
pub fn parse_severity(s: &str) -> Option<syslog::Severity> {
    use syslog::Severity::*;
    Some(match s.to_ascii_lowercase().trim_start_matches("log_") {
        "emerg" | "emergency" => LOG_EMERG,
        "alert" => LOG_ALERT,
        "crit" | "critical" => LOG_CRIT,
        "err" | "error" => LOG_ERR,
        "warning" | "warn" => LOG_WARNING,
        "notice" => LOG_NOTICE,
        "info" | "informational" => LOG_INFO,
        "debug" => LOG_DEBUG,
        _ => return None,
    })
}

/// Is `s` a valid RFC 5424 header field of at most `max` printable ASCII characters?
pub fn valid_header_field(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

impl Envelope {
    /// Append the message (header + payload) for one event to `out`.
    pub fn write(&self, meta: &EventMeta, payload: &[u8], out: &mut Vec<u8>) {
        let msgid = match meta.key.phase() {
            Phase::Start => &self.msgid_start,
            Phase::End => &self.msgid_end,
        };
        let mut head = String::with_capacity(128);
        match self.protocol {
            Protocol::Rfc5424 => {
                // RFC 5424's TIME-SECFRAC has at most 6 digits (rsyslog garbled 7 to 9): a vault
                // time with nanoseconds is cut to microseconds here.
                let ts = chrono::SubsecRound::trunc_subsecs(meta.time, 6)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                let _ = write!(
                    head,
                    "<{}>1 {ts} {} {} {} {msgid} - ",
                    self.pri, self.hostname, self.app_name, self.procid
                );
            }
            Protocol::Rfc3164 => {
                let ts = meta.time.format("%b %e %H:%M:%S");
                let _ = write!(
                    head,
                    "<{}>{ts} {} {}[{}]: ",
                    self.pri, self.hostname, self.app_name, self.procid
                );
            }
        }
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(payload);
    }
}

/// Cut `msg` to at most `max` bytes at a UTF-8 boundary; true when it was cut.
pub fn truncate_utf8(msg: &mut Vec<u8>, max: usize) -> bool {
    if msg.len() <= max {
        return false;
    }
    let mut end = max;
    while end > 0 && (msg[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    msg.truncate(end);
    true
}

/// Append `msg` to `out` with `framing`; returns true when line breaks had to be replaced.
pub fn frame(framing: Framing, msg: &[u8], out: &mut Vec<u8>) -> bool {
    match framing {
        Framing::OctetCounting => {
            out.extend_from_slice(msg.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(msg);
            false
        }
        Framing::Newline => {
            let dirty = msg.iter().any(|&b| b == b'\n' || b == b'\r');
            out.extend(msg.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
            out.push(b'\n');
            dirty
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn meta(phase: Phase) -> EventMeta {
        EventMeta {
            key: crate::key::EventKey::new("s", phase),
            time: chrono::Utc.with_ymd_and_hms(2024, 5, 6, 19, 7, 59).unwrap(),
            tenant: None,
            event_id: crate::event::event_id("https://v", None, "s", phase),
        }
    }

    fn env(protocol: Protocol) -> Envelope {
        Envelope {
            protocol,
            pri: pri(syslog::Facility::LOG_AUTHPRIV, syslog::Severity::LOG_INFO),
            hostname: "collector1".into(),
            app_name: "senhasegura-forwarder".into(),
            procid: "42".into(),
            msgid_start: "session-start".into(),
            msgid_end: "session-end".into(),
        }
    }

    #[test]
    fn headers() {
        let mut out = Vec::new();
        env(Protocol::Rfc5424).write(&meta(Phase::End), b"CEF:0|x", &mut out);
        assert_eq!(
            out,
            b"<86>1 2024-05-06T19:07:59Z collector1 senhasegura-forwarder 42 session-end - CEF:0|x"
        );
        // At most 6 fractional digits (RFC 5424 TIME-SECFRAC), cut, not rounded.
        for (nanos, shown) in [
            (123_456_789, ".123456Z"),
            (123_400_000, ".123400Z"),
            (120_000_000, ".120Z"),
        ] {
            let mut m = meta(Phase::End);
            m.time += chrono::Duration::nanoseconds(nanos);
            let mut out = Vec::new();
            env(Protocol::Rfc5424).write(&m, b"", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.starts_with(&format!("<86>1 2024-05-06T19:07:59{shown} ")),
                "{text}"
            );
        }
        let mut out = Vec::new();
        env(Protocol::Rfc3164).write(&meta(Phase::Start), b"{}", &mut out);
        assert_eq!(out, b"<86>May  6 19:07:59 collector1 senhasegura-forwarder[42]: {}");
    }

    #[test]
    fn framing_and_truncation() {
        let mut out = Vec::new();
        assert!(!frame(Framing::OctetCounting, "é=1".as_bytes(), &mut out));
        assert_eq!(out, "4 é=1".as_bytes());
        let mut out = Vec::new();
        assert!(frame(Framing::Newline, b"a\nb", &mut out));
        assert_eq!(out, b"a b\n");
        let mut m = "aé".as_bytes().to_vec();
        assert!(truncate_utf8(&mut m, 2));
        assert_eq!(m, b"a");
        assert_eq!(parse_severity("LOG_NOTICE").map(|s| s as u8), Some(5));
        assert!(valid_header_field("session-start", 32) && !valid_header_field("a b", 32));
    }
}
