//! Tests of the streaming scanner (`stream/`).

use super::*;

fn scan(body: &[u8], chunk: usize) -> (Vec<String>, Result<(), ScanError>) {
    let mut s = Scanner::new(1 << 16);
    let mut out = Vec::new();
    for c in body.chunks(chunk.max(1)) {
        let fed = s.feed::<()>(c, &mut |item| {
            out.push(match item {
                Item::Record { bytes, tenant, .. } => {
                    format!(
                        "R{}{}",
                        tenant.map(|t| format!("[{t}]")).unwrap_or_default(),
                        String::from_utf8_lossy(bytes)
                    )
                }
                Item::Response(r) => format!("E{}", String::from_utf8_lossy(r)),
                Item::Oversized { prefix } => format!("O{}", prefix.len()),
                Item::NotAnObject { what } => format!("N{what}"),
            });
            Ok(())
        });
        if fed.is_err() {
            break;
        }
    }
    (out, s.finish())
}

fn all_chunkings(body: &[u8]) -> (Vec<String>, Result<(), ScanError>) {
    let first = scan(body, body.len().max(1));
    for chunk in 1..body.len() {
        assert_eq!(scan(body, chunk), first, "chunk size {chunk}");
    }
    first
}

#[test]
fn flat_and_nested_shapes_at_every_chunk_size() {
    let flat = br#"{"response":{"error":false},"tenant":"T\"1","remote_sessions":[{"id":"1","x":{"remote_sessions":[1]}},{"id":"2"}]}"#;
    let nested = br#"{"remote_sessions":[{"tenant":"A","remote_sessions":[{"id":"1"},{"id":"2","s":"}]{["}]}]}"#;
    let (items, end) = all_chunkings(flat);
    assert_eq!(end, Ok(()));
    assert_eq!(
        items,
        vec![
            r#"E{"error":false}"#.to_string(),
            r#"R[T"1]{"id":"1","x":{"remote_sessions":[1]}}"#.into(),
            r#"R[T"1]{"id":"2"}"#.into()
        ]
    );
    let (items, end) = all_chunkings(nested);
    assert_eq!(end, Ok(()));
    assert_eq!(
        items,
        vec![r#"R[A]{"id":"1"}"#.to_string(), r#"R[A]{"id":"2","s":"}]{["}"#.into()]
    );
}

#[test]
fn tenant_is_per_envelope() {
    // The second group has no tenant, the third declares it after its array: neither
    // inherits the first group's.
    let body = br#"{"remote_sessions":[{"tenant":"A","remote_sessions":[{"id":"1"}]},{"remote_sessions":[{"id":"2"}]},{"remote_sessions":[{"id":"3"}],"tenant":"C"}]}"#;
    let (items, end) = all_chunkings(body);
    assert_eq!(end, Ok(()));
    assert_eq!(
        items,
        vec![
            r#"R[A]{"id":"1"}"#.to_string(),
            r#"R{"id":"2"}"#.into(),
            r#"R{"id":"3"}"#.into()
        ]
    );
    // A group without a tenant takes its enclosing envelope's.
    let body = br#"{"tenant":"Root","remote_sessions":[{"remote_sessions":[{"id":"1"}]}]}"#;
    assert_eq!(all_chunkings(body).0, vec![r#"R[Root]{"id":"1"}"#.to_string()]);
}

#[test]
fn truncated_and_broken_bodies() {
    let (items, end) = scan(br#"{"remote_sessions":[{"id":"1"},{"id":"#, 7);
    assert_eq!(items.len(), 1);
    assert!(matches!(end, Err(ScanError::Incomplete { .. })));
    assert_eq!(scan(b"", 4).1, Err(ScanError::Empty));
    assert_eq!(scan(b"  \n", 4).1, Err(ScanError::Empty));
    assert!(matches!(
        scan(br#"{"remote_sessions":[]}}"#, 4).1,
        Err(ScanError::Malformed { .. })
    ));
    assert!(matches!(
        scan(br#"{"remote_sessions":[]} x"#, 4).1,
        Err(ScanError::Malformed { .. })
    ));
    assert!(matches!(
        scan(br#"{"remote_sessions":[]]"#, 4).1,
        Err(ScanError::Malformed { .. })
    ));
    assert_eq!(scan(br#"{"code":200}"#, 4).1, Err(ScanError::NoSessions));
    assert_eq!(scan(br#"{"remote_sessions":null}"#, 4).1, Err(ScanError::NoSessions));
}

#[test]
fn not_an_object_fails_at_the_first_byte() {
    for body in [
        &b"Service under maintenance [back soon]"[..],
        b"<html><body>Login</body></html>",
        b"[{\"id\":\"1\"}]",
        b"\"remote_sessions\"",
        b"xyz{\"remote_sessions\":[]}",
        b"\xEF\xBB{\"remote_sessions\":[]}",
    ] {
        let (items, end) = all_chunkings(body);
        assert!(items.is_empty());
        assert!(matches!(end, Err(ScanError::NotAnObject { .. })), "{end:?}");
    }
    // A UTF-8 byte order mark is allowed (RFC 8259 lets a parser ignore it).
    let (items, end) = all_chunkings(b"\xEF\xBB\xBF {\"remote_sessions\":[{\"id\":\"1\"}]}");
    assert_eq!((items.len(), end), (1, Ok(())));
}

#[test]
fn missing_commas_between_records_end_the_listing_there() {
    let (items, end) = all_chunkings(br#"{"remote_sessions":[{"id":"1"},{"id":"2"}{"id":"3"}]}"#);
    assert_eq!(items, vec![r#"R{"id":"1"}"#.to_string(), r#"R{"id":"2"}"#.into()]);
    assert!(matches!(end, Err(ScanError::Malformed { offset: 41, .. })), "{end:?}");
    let (_, end) = all_chunkings(br#"{"remote_sessions" [{"id":"1"}]}"#);
    assert!(matches!(end, Err(ScanError::Malformed { .. })));
}

#[test]
fn a_broken_record_is_still_cut_out_whole() {
    let (items, end) = all_chunkings(br#"{"remote_sessions":[{"id":"1" "x":: ,},{"id":"2"}]}"#);
    assert_eq!(end, Ok(()));
    assert_eq!(
        items,
        vec![r#"R{"id":"1" "x":: ,}"#.to_string(), r#"R{"id":"2"}"#.into()]
    );
}

#[test]
fn items_that_are_not_objects_are_reported() {
    let (items, end) = all_chunkings(br#"{"remote_sessions":[1, "x", null, true, [{"id":"9"}], -2.5e3, {"id":"1"}]}"#);
    assert_eq!(end, Ok(()));
    assert_eq!(
        items,
        vec![
            "Na number".to_string(),
            "Na string".into(),
            "Nnull".into(),
            "Na boolean".into(),
            "Nan array".into(),
            "Na number".into(),
            r#"R{"id":"1"}"#.into()
        ]
    );
}

#[test]
fn nesting_is_bounded() {
    let mut body = br#"{"remote_sessions":[{"id":"1"},"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', 100_000));
    let (items, end) = scan(&body, 4096);
    assert_eq!(items.first().map(String::as_str), Some(r#"R{"id":"1"}"#));
    assert!(
        matches!(end, Err(ScanError::TooDeep { limit: MAX_DEPTH, .. })),
        "{end:?}"
    );
    // Deep nesting inside a record ends the listing too.
    let mut body = br#"{"remote_sessions":[{"id":"1","x":"#.to_vec();
    body.extend(std::iter::repeat_n(b'{', 10_000));
    assert!(matches!(scan(&body, 10).1, Err(ScanError::TooDeep { .. })));
}

#[test]
fn oversized_records_are_skipped_with_their_first_bytes() {
    let big = format!(
        r#"{{"remote_sessions":[{{"session_id":"big","id":"{}"}},{{"id":"2"}}]}}"#,
        "x".repeat(100_000)
    );
    for chunk in [7, 4096, big.len()] {
        let (items, end) = scan(big.as_bytes(), chunk);
        assert_eq!(end, Ok(()));
        assert_eq!(
            items,
            vec![format!("O{OVERSIZED_PREFIX}"), r#"R{"id":"2"}"#.into()],
            "chunk {chunk}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Whatever the bytes, the scanner's memory stays within its bounds.
    #[test]
    fn memory_is_bounded_whatever_the_bytes(
        body in proptest::collection::vec(proptest::sample::select(b"{}[]\":, ax1\\".to_vec()), 0..4096),
        chunk in 1usize..300,
    ) {
        let mut s = Scanner::new(256);
        for c in body.chunks(chunk) {
            let fed = s.feed::<()>(c, &mut |_| Ok(()));
            proptest::prop_assert!(s.stack.len() <= MAX_DEPTH);
            proptest::prop_assert!(s.buf.len() <= 256.max(OVERSIZED_PREFIX) + chunk);
            proptest::prop_assert!(s.text.len() <= TENANT_LIMIT);
            if fed.is_err() {
                break;
            }
        }
        let _ = s.finish();
    }
}

/// Each record's watched fields as text (`-` absent, `S` scalar, `O` other), and whether
/// they were all its keys; "unsure" when none are reported.
fn watched(body: &[u8], names: &'static [&'static [u8]], chunk: usize) -> Vec<String> {
    let mut s = Scanner::new(1 << 16).watching(names);
    let mut out = Vec::new();
    for c in body.chunks(chunk.max(1)) {
        s.feed::<()>(c, &mut |item| {
            if let Item::Record {
                bytes,
                fields,
                only_watched,
                ..
            } = item
            {
                if fields.is_empty() {
                    out.push("unsure".to_string());
                    return Ok(());
                }
                let shown: Vec<String> = fields
                    .iter()
                    .map(|f| match *f {
                        Field::Absent => "-".to_string(),
                        Field::Text { start, end } => String::from_utf8_lossy(&bytes[start..end]).into_owned(),
                        Field::Scalar { .. } => "S".to_string(),
                        Field::Other => "O".to_string(),
                    })
                    .collect();
                out.push(format!("{} {only_watched}", shown.join(",")));
            }
            Ok(())
        })
        .unwrap();
    }
    s.finish().unwrap();
    out
}

#[test]
fn watched_fields_whatever_the_order_of_the_keys() {
    // The scanner guesses each key from the order of the last record; a record in another
    // order, one with a key missing, repeated or unwatched, must come out the same as alone.
    let records = [
        r#"{"a":"1","b":"2","c":"3"}"#,
        r#"{"c":"3","a":"1","b":"2"}"#,
        r#"{"a":"1","c":"3"}"#,
        r#"{"b":"2","b":"2","x":"9"}"#,
        r#"{"a":null,"tenant":"t","b":"2"}"#,
        r#"{"a":"1","b":"2","c":"3"}"#,
    ];
    let expected = [
        "1,2,3 true",
        "1,2,3 true",
        "1,-,3 true",
        "-,O,- false",
        "S,2,- false",
        "1,2,3 true",
    ];
    const NAMES: &[&[u8]] = &[b"a", b"b", b"c"];
    let body = format!(r#"{{"remote_sessions":[{}]}}"#, records.join(","));
    for chunk in [1, 2, 3, 7, body.len()] {
        assert_eq!(watched(body.as_bytes(), NAMES, chunk), expected, "chunk size {chunk}");
    }
    for (r, e) in records.iter().zip(expected) {
        let alone = format!(r#"{{"remote_sessions":[{r}]}}"#);
        assert_eq!(watched(alone.as_bytes(), NAMES, alone.len()), [e], "{r}");
    }
    // Watching a name the scanner steers by: it keeps steering (a record's `tenant` is not
    // reported as a field), and the other names are still found.
    const STEER: &[&[u8]] = &[b"tenant", b"a"];
    assert_eq!(
        watched(br#"{"remote_sessions":[{"tenant":"t","a":"1"},{"a":"2"}]}"#, STEER, 5),
        ["-,1 false", "-,2 true"]
    );
}

#[test]
fn quote_or_backslash_finds_what_memchr_finds() {
    // Every position and pair of the two bytes in buffers up to 80 long, over a background
    // of bytes that differ from them in one bit (and high bytes, where false flags hide).
    for len in 0..80usize {
        for background in [b'a', b'"' ^ 1, b'\\' ^ 0x80, 0xff, 0x00, 0x21, 0x5d] {
            let base = vec![background; len];
            assert_eq!(
                super::strings::quote_or_backslash(&base),
                memchr::memchr2(b'"', b'\\', &base)
            );
            for i in 0..len {
                for first in [b'"', b'\\'] {
                    let mut b = base.clone();
                    b[i] = first;
                    assert_eq!(super::strings::quote_or_backslash(&b), Some(i), "{len} {i}");
                    for j in i + 1..len.min(i + 10) {
                        let mut c = b.clone();
                        c[j] = b'"';
                        assert_eq!(super::strings::quote_or_backslash(&c), Some(i), "{len} {i} {j}");
                    }
                }
            }
        }
    }
}
