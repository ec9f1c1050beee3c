//! ArcSight CEF lines, exactly per docs/mapping.md: `CEF:0|vendor|product|version|class|name|
//! severity|extension`. Header fields escape `\` and `|`; extension values escape `\`, `=`,
//! CR and LF, so no raw line break ever appears in an event and any CEF parser reads every value
//! back exactly. Values over their field's limit are cut at a character boundary before
//! escaping (so never inside an escape) and counted.

use super::EncodeCounters;
use crate::event::{Phase, SessionEvent};
use std::fmt::Write as _;
use std::net::IpAddr;

/// CEF header options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefOptions {
    /// Device vendor (default `MT4`, senhasegura's own CEF header).
    pub vendor: String,
    /// Device product (default `senhasegura`).
    pub product: String,
    /// Device version (default the agent's version).
    pub version: String,
    /// Severity of start events (0 to 10).
    pub severity_start: u8,
    /// Severity of end events (0 to 10).
    pub severity_end: u8,
}

impl Default for CefOptions {
    fn default() -> Self {
        CefOptions {
            vendor: "MT4".into(),
            product: "senhasegura".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            severity_start: 3,
            severity_end: 3,
        }
    }
}

/// The CEF encoder.
#[derive(Debug, Clone)]
pub struct CefEncoder {
    header: String,
    options: CefOptions,
}

/// Field length limits (characters), per the CEF key reference.
mod limit {
    pub const USER: usize = 1023;
    pub const APP: usize = 31;
    pub const EXTERNAL_ID: usize = 40;
    pub const HOST: usize = 1023;
    pub const DVCHOST: usize = 100;
    pub const CUSTOM_STRING: usize = 4000;
}

/// Characters that CEF cannot carry and has no escape for: control characters (C0, DEL, C1:
/// a NUL ends the message for a C receiver, NEL and the Unicode line and paragraph separators
/// break lines for others). They are written as U+FFFD, so no value can hide or forge what
/// follows it. (Line feed and carriage return have CEF escapes in extension values.)
pub fn unsafe_in_cef(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Append `value` with header escaping.
fn header_escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if unsafe_in_cef(c) => out.push(char::REPLACEMENT_CHARACTER),
            _ => out.push(c),
        }
    }
}

/// Append `value`, cut to `max` characters, with extension escaping; counts a cut.
fn ext_escape(out: &mut String, value: &str, max: usize, counters: &mut EncodeCounters) {
    for (taken, c) in value.chars().enumerate() {
        if taken == max {
            counters.truncated += 1;
            return;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if unsafe_in_cef(c) => out.push(char::REPLACEMENT_CHARACTER),
            _ => out.push(c),
        }
    }
}

struct Ext<'a> {
    out: String,
    counters: &'a mut EncodeCounters,
}

impl Ext<'_> {
    fn raw(&mut self, key: &str, value: impl std::fmt::Display) {
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        let _ = write!(self.out, "{key}={value}");
    }

    fn text(&mut self, key: &str, value: Option<&str>, max: usize) {
        if let Some(v) = value {
            if !self.out.is_empty() {
                self.out.push(' ');
            }
            self.out.push_str(key);
            self.out.push('=');
            ext_escape(&mut self.out, v, max, self.counters);
        }
    }

    fn labelled(&mut self, key: &str, label: &str, value: Option<&str>, max: usize) {
        if value.is_some() {
            self.raw(&format!("{key}Label"), label);
            self.text(key, value, max);
        }
    }
}

impl CefEncoder {
    /// An encoder with these header options (validated by the config).
    pub fn new(options: CefOptions) -> CefEncoder {
        let mut header = String::from("CEF:0|");
        for part in [&options.vendor, &options.product, &options.version] {
            header_escape(&mut header, part);
            header.push('|');
        }
        CefEncoder { header, options }
    }

    /// Append the CEF line of `e` to `out` (no trailing newline).
    pub fn encode(&self, e: &SessionEvent, out: &mut Vec<u8>, counters: &mut EncodeCounters) {
        let (class, name, act, cat, severity) = match e.phase {
            Phase::Start => (
                "remote-session-start",
                "Remote session started",
                "session-start",
                "/PAM/Session/Start",
                self.options.severity_start,
            ),
            Phase::End => (
                "remote-session-end",
                "Remote session ended",
                "session-end",
                "/PAM/Session/End",
                self.options.severity_end,
            ),
        };
        let mut line = String::with_capacity(768);
        line.push_str(&self.header);
        let _ = write!(line, "{class}|{name}|{severity}|");
        let mut x = Ext {
            out: String::with_capacity(640),
            counters,
        };
        x.raw("rt", e.timestamp.timestamp_millis());
        if let Some(s) = e.start {
            x.raw("start", s.timestamp_millis());
        }
        if let (Phase::End, Some(end)) = (e.phase, e.end) {
            x.raw("end", end.timestamp_millis());
        }
        x.raw("act", act);
        x.raw("outcome", "success");
        x.raw("cat", cat);
        x.text("suser", e.user, limit::USER);
        x.text("duser", e.credential, limit::USER);
        match e.origin_ip {
            Some(IpAddr::V4(ip)) => x.raw("src", ip),
            Some(IpAddr::V6(ip)) => {
                x.raw("c6a2Label", "sourceIPv6Address");
                x.raw("c6a2", ip);
            }
            None => x.text("shost", e.origin, limit::HOST),
        }
        match e.device.ip {
            Some(IpAddr::V4(ip)) => x.raw("dst", ip),
            Some(IpAddr::V6(ip)) => {
                x.raw("c6a3Label", "destinationIPv6Address");
                x.raw("c6a3", ip);
            }
            None => x.text("dhost", e.device.domain, limit::HOST),
        }
        if let Some(port) = e.device.port {
            x.raw("dpt", port);
        }
        let app = e.protocol.as_deref().map(str::to_ascii_uppercase);
        x.text("app", app.as_deref(), limit::APP);
        x.raw("proto", "TCP");
        x.text("externalId", Some(e.session_id), limit::EXTERNAL_ID);
        if e.phase == Phase::End {
            if let Some(ns) = e.duration_ns {
                x.raw("cn1Label", "durationSeconds");
                x.raw("cn1", ns / 1_000_000_000);
            }
        }
        x.labelled("cs1", "proxy", e.proxy, limit::CUSTOM_STRING);
        x.labelled("cs2", "recordId", e.record_id, limit::CUSTOM_STRING);
        x.labelled("cs3", "request", e.request, limit::CUSTOM_STRING);
        x.labelled("cs4", "itsm", e.itsm, limit::CUSTOM_STRING);
        x.labelled("cs5", "tenant", e.tenant, limit::CUSTOM_STRING);
        if e.device.unparsed {
            x.labelled("cs6", "rawDevice", e.device_raw, limit::CUSTOM_STRING);
        }
        x.text("dvchost", Some(e.vault_host).filter(|h| !h.is_empty()), limit::DVCHOST);
        line.push_str(&x.out);
        out.extend_from_slice(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_truncation() {
        let mut c = EncodeCounters::default();
        let mut s = String::new();
        header_escape(&mut s, r"a|b\c");
        assert_eq!(s, r"a\|b\\c");
        let mut s = String::new();
        ext_escape(&mut s, "x=y\\z\r\n|", 100, &mut c);
        assert_eq!(s, r"x\=y\\z\r\n|");
        let mut s = String::new();
        ext_escape(&mut s, "ééé==", 4, &mut c);
        assert_eq!(s, r"ééé\=");
        assert_eq!(c.truncated, 1);
    }

    #[test]
    fn control_characters_never_reach_the_line() {
        let hostile = "root\u{0}admin\u{1b}[2J\u{7}\u{7f}\u{85}x\u{2028}y\u{2029}\t";
        let mut c = EncodeCounters::default();
        let mut ext = String::new();
        ext_escape(&mut ext, hostile, 1000, &mut c);
        assert_eq!(
            ext,
            "root\u{fffd}admin\u{fffd}[2J\u{fffd}\u{fffd}\u{fffd}x\u{fffd}y\u{fffd}\u{fffd}"
        );
        let mut head = String::new();
        header_escape(&mut head, "a\nb\u{0}");
        assert_eq!(head, "a\u{fffd}b\u{fffd}");
    }
}
