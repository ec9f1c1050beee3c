//! Property tests of both encoders over arbitrary field contents: Unicode, control characters,
//! CEF and JSON specials, very long strings. Records go through the real path (JSON bytes →
//! model → event → encoder) and come back through readers that share no code with it.

use crate::cef_parse;
use proptest::prelude::*;
use senhasegura_forwarder::encode::cef::{CefEncoder, CefOptions};
use senhasegura_forwarder::encode::ecs::EcsEncoder;
use senhasegura_forwarder::encode::EncodeCounters;
use senhasegura_forwarder::event::{Candidate, Device, Origin, SessionEvent};
use senhasegura_forwarder::source::senhasegura::model::SessionRecord;

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        3 => "[a-z|=\\\\\"\\]\\[ \n\r\t:.{}é€😀\u{0}\u{1b}\u{7}\u{7f}\u{85}\u{2028}\u{2029}-]{0,40}",
        1 => "[a-zA-Z0-9=|\\\\\n ]{1000,1200}",
        1 => Just(String::new()),
    ]
}

#[derive(Debug, Clone)]
struct Input {
    user: String,
    origin: String,
    credential: String,
    device: String,
    protocol: String,
    proxy: String,
    session_id: String,
    request: String,
    itsm: String,
    tenant: String,
    ended: bool,
}

fn input() -> impl Strategy<Value = Input> {
    let sid = prop_oneof!["[0-9a-f]{40}", "s[^\u{0}]{0,60}"];
    (
        (field(), field(), field(), field(), field()),
        (field(), sid, field(), field(), field(), any::<bool>()),
    )
        .prop_map(
            |((user, origin, credential, device, protocol), (proxy, session_id, request, itsm, tenant, ended))| Input {
                user,
                origin,
                credential,
                device,
                protocol,
                proxy,
                session_id,
                request,
                itsm,
                tenant,
                ended,
            },
        )
}

/// Build the event of `i` and hand it to `f` (it borrows from the record built here).
fn with_event<T>(i: &Input, f: impl FnOnce(&SessionEvent<'_>) -> T) -> T {
    let json = serde_json::json!({
        "id": "42", "user": i.user, "origin_ip": i.origin, "credential": i.credential, "device": i.device,
        "protocol": i.protocol, "proxy": i.proxy, "session_id": i.session_id,
        "start": "2024-05-06 16:05:07", "end": if i.ended { "2024-05-06 16:07:59" } else { "" },
        "time": "00:02:52", "prevent_purge": "No", "request": i.request, "ITSM": i.itsm,
    });
    let bytes = serde_json::to_vec(&json).unwrap();
    let record = SessionRecord::parse(&bytes).unwrap();
    let tz = "America/Sao_Paulo".parse().unwrap();
    let head = record.head();
    let candidate = Candidate::of(&head, tz).unwrap();
    let origin = Origin {
        base_url: "https://vault.example".into(),
        vault_host: "vault.example".into(),
        timezone: tz,
    };
    let tenant = (!i.tenant.is_empty()).then_some(i.tenant.as_str());
    f(&SessionEvent::build(
        &record,
        candidate,
        &origin,
        tenant,
        chrono::Utc::now(),
        None,
    ))
}

/// What the encoders should show for an input field: absent when blank.
fn present(s: &str) -> Option<&str> {
    (!s.trim().is_empty()).then_some(s)
}

fn g(cef: &cef_parse::Cef, key: &str) -> Option<String> {
    cef.get(key).map(str::to_string)
}

/// What CEF shows of a value: cut to `max` characters, and every character CEF cannot carry
/// (control characters other than the escaped line breaks, U+2028, U+2029) as U+FFFD.
fn cut(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| {
            let line_break = c == '\n' || c == '\r';
            if (c.is_control() && !line_break) || c == '\u{2028}' || c == '\u{2029}' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// No raw control character, NEL or Unicode line separator anywhere in an output line.
fn line_safe(line: &str) -> bool {
    !line
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn cef_reads_back_every_value(i in input(), vendor in field(), product in field()) {
        prop_assume!(!vendor.contains(['\n', '\r']) && !product.contains(['\n', '\r']));
        let enc = CefEncoder::new(CefOptions { vendor: vendor.clone(), product: product.clone(), ..CefOptions::default() });
        let mut out = Vec::new();
        let mut counters = EncodeCounters::default();
        with_event(&i, |e| enc.encode(e, &mut out, &mut counters));
        let line = String::from_utf8(out).unwrap();
        prop_assert!(line_safe(&line), "raw control character in {:?}", line);
        let cef = cef_parse::parse(&line).map_err(|m| TestCaseError::fail(format!("{m}: {line:?}")))?;
        prop_assert_eq!(&cef.header[..3], &["CEF:0".to_string(), cut(&vendor, usize::MAX), cut(&product, usize::MAX)][..]);
        prop_assert_eq!(&cef.header[4], if i.ended { "remote-session-end" } else { "remote-session-start" });
        prop_assert_eq!(g(&cef, "suser"), present(&i.user).map(|s| cut(s, 1023)));
        prop_assert_eq!(g(&cef, "duser"), present(&i.credential).map(|s| cut(s, 1023)));
        prop_assert_eq!(g(&cef, "externalId"), Some(cut(&i.session_id, 40)));
        prop_assert_eq!(g(&cef, "cs1"), present(&i.proxy).map(|s| cut(s, 4000)));
        prop_assert_eq!(g(&cef, "cs2"), Some("42".to_string()));
        prop_assert_eq!(g(&cef, "cs3"), present(&i.request).map(|s| cut(s, 4000)));
        prop_assert_eq!(g(&cef, "cs4"), present(&i.itsm).map(|s| cut(s, 4000)));
        prop_assert_eq!(g(&cef, "cs5"), present(&i.tenant).map(|s| cut(s, 4000)));
        let app = present(&i.protocol).map(|p| cut(&p.to_ascii_uppercase(), 31));
        prop_assert_eq!(g(&cef, "app"), app);
        match present(&i.origin).map(|o| o.parse::<std::net::IpAddr>()) {
            Some(Ok(std::net::IpAddr::V4(ip))) => prop_assert_eq!(g(&cef, "src"), Some(ip.to_string())),
            Some(Ok(std::net::IpAddr::V6(ip))) => prop_assert_eq!(g(&cef, "c6a2"), Some(ip.to_string())),
            Some(Err(_)) => prop_assert_eq!(g(&cef, "shost"), present(&i.origin).map(|s| cut(s, 1023))),
            None => prop_assert!(g(&cef, "src").is_none() && g(&cef, "shost").is_none()),
        }
        if let Some(device) = present(&i.device) {
            if Device::parse(device).unparsed {
                prop_assert_eq!(g(&cef, "cs6"), Some(cut(device, 4000)));
            }
        }
        let expected_cuts = [(present(&i.user), 1023), (present(&i.credential), 1023), (Some(i.session_id.as_str()), 40)]
            .iter().filter(|(v, max)| v.is_some_and(|v| v.chars().count() > *max)).count() as u64;
        prop_assert!(counters.truncated >= expected_cuts);
    }

    #[test]
    fn ecs_is_valid_and_exact(i in input()) {
        let mut out = Vec::new();
        with_event(&i, |e| EcsEncoder::new(false).encode(e, &mut out, &mut EncodeCounters::default()));
        prop_assert!(line_safe(std::str::from_utf8(&out).unwrap()), "raw control character in {:?}", String::from_utf8_lossy(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        crate::ecs::validate(&doc);
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
        prop_assert_eq!(s(&doc["user"]["name"]), present(&i.user).map(str::to_string));
        prop_assert_eq!(s(&doc["source"]["user"]["name"]), present(&i.user).map(str::to_string));
        prop_assert_eq!(s(&doc["destination"]["user"]["name"]), present(&i.credential).map(str::to_string));
        prop_assert_eq!(s(&doc["source"]["address"]), present(&i.origin).map(str::to_string));
        prop_assert_eq!(s(&doc["senhasegura"]["session"]["id"]), Some(i.session_id.clone()));
        prop_assert_eq!(s(&doc["senhasegura"]["session"]["proxy"]), present(&i.proxy).map(str::to_string));
        prop_assert_eq!(s(&doc["senhasegura"]["session"]["request"]), present(&i.request).map(str::to_string));
        prop_assert_eq!(s(&doc["senhasegura"]["session"]["itsm"]), present(&i.itsm).map(str::to_string));
        prop_assert_eq!(s(&doc["senhasegura"]["tenant"]), present(&i.tenant).map(str::to_string));
        prop_assert_eq!(s(&doc["network"]["protocol"]), present(&i.protocol).map(str::to_ascii_lowercase));
        if let Some(device) = present(&i.device) {
            let d = Device::parse(device);
            if d.unparsed {
                prop_assert_eq!(s(&doc["destination"]["address"]), Some(device.to_string()));
                prop_assert_eq!(s(&doc["senhasegura"]["session"]["device"]), Some(device.to_string()));
            } else {
                prop_assert_eq!(s(&doc["destination"]["address"]), d.host.map(str::to_string));
            }
        }
    }
}
