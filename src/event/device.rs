//! The target device text (`host:port`, `[v6]:port`, an IP or a host name), split into what
//! the encoders map.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use std::net::IpAddr;

/// The target device, split into what encoders map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device<'a> {
    /// Host part as written (brackets of IPv6 removed).
    pub host: Option<&'a str>,
    /// The host when it is an IP address.
    pub ip: Option<IpAddr>,
    /// The host when it is a host name.
    pub domain: Option<&'a str>,
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

impl<'a> Device<'a> {
    /// Parse `host:port`, `[v6]:port`, a bare IPv6, an IP or a host name.
    pub fn parse(raw: &'a str) -> Device<'a> {
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
                host: Some(host),
                ip: Some(ip),
                domain: None,
                port,
                unparsed: false,
            };
        }
        if is_hostname(host) {
            return Device {
                host: Some(host),
                ip: None,
                domain: Some(host),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

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
            (d.domain, d.host),
            (Some("DB-01.corp.example"), Some("DB-01.corp.example"))
        );
        assert!(Device::parse("a b:c").unparsed);
        assert!(Device::parse("host:99999").unparsed);
    }
}
