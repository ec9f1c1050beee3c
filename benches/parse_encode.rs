//! Micro-benchmarks of the CPU path: scanning a listing into records, parsing records,
//! building events, encoding ECS and CEF, and a store lookup on a warm chunk.
//! `cargo bench --bench parse_encode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use senhasegura_forwarder::encode::{
    cef::{CefEncoder, CefOptions},
    ecs::EcsEncoder,
    EncodeCounters,
};
use senhasegura_forwarder::event::{Candidate, Origin, SessionEvent};
use senhasegura_forwarder::key::{EventKey, Phase};
use senhasegura_forwarder::simulate::generate::{Body, Sessions, Shape};
use senhasegura_forwarder::source::senhasegura::model::{RecordHead, SessionRecord, RECORD_FIELDS};
use senhasegura_forwarder::source::senhasegura::stream::{Field, Item, Scanner};
use senhasegura_forwarder::state::{Dedup, Delivered, SledStore};
use std::sync::Arc;

fn listing(n: u64) -> Vec<u8> {
    let base = chrono::NaiveDateTime::parse_from_str("2026-01-15 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
    let sessions = Arc::new(Sessions::new(
        3,
        n,
        n / 100,
        base,
        std::time::Duration::from_secs(86400 * 30),
    ));
    let mut body = Body::new(sessions, Shape::Flat, "Segura");
    let mut out = Vec::new();
    while let Some(c) = body.next_chunk() {
        out.extend_from_slice(&c);
    }
    out
}

/// Scan `body` in 64 KiB chunks as the filter does (noting the record fields); count the
/// records `each` accepts.
fn scan_records(body: &[u8], mut each: impl FnMut(&[u8], &[Field], bool) -> bool) -> u64 {
    let mut s = Scanner::default().watching(RECORD_FIELDS);
    let mut n = 0u64;
    for chunk in body.chunks(64 * 1024) {
        s.feed::<()>(chunk, &mut |i| {
            if let Item::Record {
                bytes,
                fields,
                only_watched,
                ..
            } = i
            {
                n += u64::from(each(bytes, fields, only_watched));
            }
            Ok(())
        })
        .unwrap();
    }
    n
}

fn benches(c: &mut Criterion) {
    let body = listing(20_000);
    let mut g = c.benchmark_group("listing");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let tz: chrono_tz::Tz = "America/Sao_Paulo".parse().unwrap();
    g.bench_function("scan", |b| b.iter(|| scan_records(&body, |_, _, _| true)));
    g.bench_function("scan+parse+candidate", |b| {
        b.iter(|| {
            scan_records(&body, |r, _, _| {
                Candidate::of(&SessionRecord::parse(r).unwrap().head(), tz).is_ok()
            })
        })
    });
    // What a known record costs to decide: the head alone (the filter's path after a known one).
    g.bench_function("scan+head+candidate", |b| {
        b.iter(|| {
            scan_records(&body, |r, _, _| {
                Candidate::of(&RecordHead::parse(r).unwrap(), tz).is_ok()
            })
        })
    });
    // A new record, read off where the scanner found its fields (what the filter does).
    g.bench_function("scan+fields_record+candidate", |b| {
        b.iter(|| {
            scan_records(&body, |r, f, only| {
                Candidate::of(&SessionRecord::from_fields(r, f, only).unwrap().head(), tz).is_ok()
            })
        })
    });
    // The same, with the head read off where the scanner found it (what the filter does).
    g.bench_function("scan+fields+candidate", |b| {
        b.iter(|| {
            scan_records(&body, |r, f, only| {
                Candidate::of(&RecordHead::from_fields(r, f, only).unwrap(), tz).is_ok()
            })
        })
    });
    g.finish();

    let rec_bytes = br#"{"id":"3","user":"Admin","origin_ip":"172.16.20.125","credential":"usrdomadm01","device":"10.66.33.15:3389","protocol":"rdp","proxy":"Web Proxy","session_id":"e7acacb6aedbab70073456da5744166939b77527","start":"2024-05-06 16:05:07","end":"2024-05-06 16:07:59","time":"00:02:52","prevent_purge":"No","request":null,"ITSM":null}"#;
    let origin = Origin {
        base_url: "https://vault".into(),
        vault_host: "vault".into(),
        timezone: chrono_tz::Tz::UTC,
    };
    let rec = SessionRecord::parse(rec_bytes).unwrap();
    let head = rec.head();
    let cand = Candidate::of(&head, chrono_tz::Tz::UTC).unwrap();
    let mut g = c.benchmark_group("event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("build", |b| {
        b.iter(|| SessionEvent::build(&rec, cand, &origin, Some("Segura"), chrono::Utc::now(), None))
    });
    let ev = SessionEvent::build(&rec, cand, &origin, Some("Segura"), chrono::Utc::now(), None);
    let enc = EcsEncoder::new(false);
    let mut out = Vec::with_capacity(2048);
    let mut counters = EncodeCounters::default();
    g.bench_function("encode_ecs", |b| {
        b.iter(|| {
            out.clear();
            enc.encode(&ev, &mut out, &mut counters);
            out.len()
        })
    });
    let cef = CefEncoder::new(CefOptions::default());
    g.bench_function("encode_cef", |b| {
        b.iter(|| {
            out.clear();
            cef.encode(&ev, &mut out, &mut counters);
            out.len()
        })
    });
    g.finish();

    // A store of 10,000 keys of one busy hour; the lookups hit a chunk already in the cache.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("state"), None, None).unwrap();
    let at = |s: i64| chrono::DateTime::from_timestamp(1_768_478_400 + s, 0).unwrap();
    let keys: Vec<Delivered> = (0..10_000i64)
        .map(|i| Delivered {
            key: EventKey::new(format!("{:040x}", i), Phase::End),
            time: at(i / 3 + 600),
            start: Some(at(i / 3)),
        })
        .collect();
    store.commit(&keys).unwrap();
    let probe = &keys[5_000];
    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(1));
    g.bench_function("contains_warm", |b| {
        b.iter(|| store.contains(probe.time, probe.start, probe.key.as_ref()).unwrap())
    });
    g.finish();
}

criterion_group!(micro, benches);
criterion_main!(micro);
