//! The JSON writer under the ECS encoder: strings escaped so that no value can split a line,
//! times as ECS wants them, IP addresses, and objects written field by field, all straight
//! into the document's buffer without building a value tree.

use chrono::{DateTime, SecondsFormat, Utc};
use std::net::IpAddr;

/// A time as ECS wants it: RFC 3339 in UTC with `Z`, fractional seconds only when there are
/// any (in 3, 6 or 9 digits, as chrono's `AutoSi`), written without an allocation.
#[derive(Clone, Copy)]
pub(super) struct Ts(pub(super) DateTime<Utc>);

impl Ts {
    /// The text into `buf`; `None` outside years 0..=9999 or in a leap second (then chrono
    /// writes it).
    pub(super) fn write(self, buf: &mut [u8; 32]) -> Option<usize> {
        use chrono::{Datelike, Timelike};
        // The UTC fields read off the naive time (the zone's offset is zero; reading them off
        // the zoned time adds it again for each field).
        let t = self.0.naive_utc();
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

impl Ts {
    /// The text, as a JSON string value (no character in it needs escaping).
    pub(super) fn put(self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 32];
        out.push(b'"');
        match self.write(&mut buf) {
            Some(n) => out.extend_from_slice(&buf[..n]),
            None => out.extend_from_slice(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes()),
        }
        out.push(b'"');
    }
}

/// Bytes that go into a JSON string as they are: printable ASCII but `"` and `\`, and UTF-8
/// bytes at or above 0x80 except the lead bytes of what [`put_escaped`] must look at (C2: the
/// C1 controls; E2: U+2028/U+2029).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 256 {
        t[b] = !matches!(b, 0x22 | 0x5c | 0x7f | 0xc2 | 0xe2);
        b += 1;
    }
    t
};

/// Are these 8 bytes all printable ASCII other than `"` and `\\` (plain, and none of them the
/// start of what [`put_escaped`] must look at)? Checked on the word at once.
#[inline]
pub(super) fn plain_ascii(word: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut w = [0u8; 8];
    w.copy_from_slice(word);
    let v = u64::from_le_bytes(w);
    // Some byte is zero / below 0x20 / above 0x7e (its high bit ends up set in the result).
    let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH;
    let below_space = v.wrapping_sub(LOW * 0x20) & !v & HIGH;
    let above_tilde = (v.wrapping_add(LOW) | v) & HIGH;
    below_space | above_tilde | zero(v ^ (LOW * u64::from(b'"'))) | zero(v ^ (LOW * u64::from(b'\\'))) == 0
}

/// `text` escaped as a JSON string's contents, as serde_json escapes it (`\"`, `\\`, the short
/// forms of \b \f \n \r \t, `\u00XX` for the other controls), and also what JSON allows raw
/// but some receivers take as a line break or an end of string: DEL, the C1 controls (NEL) and
/// U+2028/U+2029. The document reads back the same; no value can split a line.
pub(super) fn put_escaped(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut done = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            if plain_ascii(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if PLAIN[b as usize] {
            i += 1;
            continue;
        }
        let (code, len) = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (0x00..=0x1f | b'"' | b'\\' | 0x7f, _, _) => (u32::from(b), 1),
            (0xc2, Some(&c @ 0x80..=0x9f), _) => (u32::from(c), 2),
            (0xe2, Some(0x80), Some(&c @ (0xa8 | 0xa9))) => (0x2000 + u32::from(c - 0x80), 3),
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[done..i]);
        match code {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5c => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                HEX[(code >> 12) as usize & 0xf],
                HEX[(code >> 8) as usize & 0xf],
                HEX[(code >> 4) as usize & 0xf],
                HEX[code as usize & 0xf],
            ]),
        }
        i += len;
        done = i;
    }
    out.extend_from_slice(&bytes[done..]);
}

/// A JSON string value.
pub(super) fn put_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    put_escaped(out, text);
    out.push(b'"');
}

/// An address as a JSON string (its text needs no escaping).
pub(super) fn put_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    use std::io::Write;
    out.push(b'"');
    match ip {
        IpAddr::V4(v4) => {
            // The dotted quad, as `Display` writes it, without the formatting machinery.
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(*octet).as_bytes());
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(_) => drop(write!(out, "{ip}")),
    }
    out.push(b'"');
}

/// Escapes text into a JSON string as it is formatted (`message`).
pub(super) struct Escaping<'o>(pub(super) &'o mut Vec<u8>);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        put_escaped(self.0, s);
        Ok(())
    }
}

/// One JSON object of the document being written: the keys are this file's constants
/// (written as they are), the values escaped by [`put_escaped`]. Fields come in the order of
/// the calls; an absent value (`None`, an empty list) writes no field.
pub(super) struct Obj<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Obj<'o> {
    pub(super) fn open(out: &'o mut Vec<u8>) -> Obj<'o> {
        out.push(b'{');
        Obj { out, first: true }
    }

    pub(super) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(super) fn str(&mut self, key: &str, value: &str) {
        put_str(self.key(key), value);
    }

    pub(super) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// A list of one string.
    pub(super) fn one(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        out.push(b'[');
        put_str(out, value);
        out.push(b']');
    }

    pub(super) fn list<T>(&mut self, key: &str, items: &[T], put: impl Fn(&mut Vec<u8>, &T)) {
        if items.is_empty() {
            return;
        }
        let out = self.key(key);
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put(out, item);
        }
        out.push(b']');
    }

    pub(super) fn int(&mut self, key: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.key(key)
                .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
    }

    pub(super) fn bool(&mut self, key: &str, value: Option<bool>) {
        if let Some(v) = value {
            self.key(key).extend_from_slice(if v { b"true" } else { b"false" });
        }
    }

    pub(super) fn ts(&mut self, key: &str, value: Option<&DateTime<Utc>>) {
        if let Some(t) = value {
            Ts(*t).put(self.key(key));
        }
    }

    pub(super) fn ip(&mut self, key: &str, value: Option<IpAddr>) {
        if let Some(ip) = value {
            put_ip(self.key(key), &ip);
        }
    }

    /// `{"name": ...}` under `key`, when there is a name.
    pub(super) fn name(&mut self, key: &str, name: Option<&str>) {
        if let Some(name) = name {
            let mut o = self.obj(key);
            o.str("name", name);
            o.close();
        }
    }

    pub(super) fn obj(&mut self, key: &str) -> Obj<'_> {
        Obj::open(self.key(key))
    }

    pub(super) fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ts_text(t: DateTime<Utc>) -> String {
        let mut out = Vec::new();
        Ts(t).put(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_byte_is_looked_at_wherever_it_falls_in_a_word() {
        // Each character that needs escaping (or a non-ASCII one), at every offset of strings
        // long enough to be read 8 bytes at a time, comes out as one at a time would write it.
        let specials = [
            "\"", "\\", "\n", "\u{1}", "\u{1f}", "\u{7f}", "\u{85}", "\u{2028}", "é", "\u{ffff}", " ", "~",
        ];
        for len in 0..40 {
            for at in 0..=len {
                for s in specials {
                    let text = format!("{}{s}{}", "a".repeat(at), "z".repeat(len - at));
                    let mut fast = Vec::new();
                    put_escaped(&mut fast, &text);
                    // One byte at a time: every prefix of 7 bytes or fewer goes the slow way.
                    let mut slow = Vec::new();
                    for c in text.chars() {
                        put_escaped(&mut slow, c.encode_utf8(&mut [0u8; 4]));
                    }
                    assert_eq!(fast, slow, "{text:?}");
                }
            }
        }
        for word in [*b"abcdefgh", *b"        ", *b"~~~~~~~~", *b"a b!#$}{"] {
            assert!(plain_ascii(&word), "{word:?}");
        }
        for bad in [b'"', b'\\', 0x1f, 0x00, 0x7f, 0x80, 0xc2, 0xe2, 0xff] {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = bad;
                assert!(!plain_ascii(&word), "{bad:#x} at {at}");
            }
        }
    }

    #[test]
    fn ip_addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "192.168.0.10",
            "::1",
            "2001:db8::ff00:42:8329",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = Vec::new();
            put_ip(&mut out, &ip);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{ip}\""));
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does_and_line_breakers_too() {
        let line_breakers = |c: char| matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}');
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            // Alone between two letters, and after 9 bytes (past the 8 read at once).
            for (before, after) in [("a", "b"), ("abcdefghi", "jklmnopqr")] {
                let text = format!("{before}{c}{after}");
                let mut out = Vec::new();
                put_str(&mut out, &text);
                let ours = String::from_utf8(out).unwrap();
                if line_breakers(c) {
                    assert_eq!(ours, format!("\"{before}\\u{:04x}{after}\"", c as u32));
                } else {
                    assert_eq!(ours, serde_json::to_string(&text).unwrap(), "U+{:04X}", c as u32);
                }
                assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), text);
            }
        }
    }

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
            let text = ts_text(t);
            assert_eq!(text, format!("\"{}\"", t.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
        }
        // Outside what the fast path writes, chrono writes it.
        let far = Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            ts_text(far),
            format!("\"{}\"", far.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        );
    }

    #[test]
    fn line_breaking_characters_are_escaped_and_read_back() {
        let value = "a\u{0}b\u{7f}c\u{85}d\u{9f}e\u{2028}f\u{2029}g\u{a0}é€\u{2027}";
        let mut out = Vec::new();
        put_str(&mut out, value);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "\"a\\u0000b\\u007fc\\u0085d\\u009fe\\u2028f\\u2029g\u{a0}é€\u{2027}\""
        );
        assert_eq!(serde_json::from_str::<String>(&text).unwrap(), value);
    }
}
