//! Tests of `model.rs`.

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
        ErrorBody::message_of(br#"{"code":500,"response":{"status":500,"message":"Unexpected error.","error":true}}"#)
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
        // Blank in Unicode only (no-break and ideographic spaces): blank as serde's path reads it.
        (
            "{\"session_id\":\"a\",\"start\":\" \u{a0}\u{3000} \",\"end\":\"\u{a0}x\"}",
            true,
        ),
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
    let body = b"{\"remote_sessions\":[{\"session_id\":\"s\",\"start\":\"2024-01-01 00:00:00\",\"user\":\"a\x01b\"}]}";
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
