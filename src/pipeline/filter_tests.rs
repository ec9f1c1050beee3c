//! Tests of `filter.rs`.

use super::*;
use crate::encode::ecs::EcsEncoder;
use crate::key::Phase;
use crate::state::Delivered;
use proptest::prelude::*;

/// A store that knows the `known` keys, and panics on one key (a stand-in for a bug).
struct Store {
    panics_on: Option<&'static str>,
    known: &'static [&'static str],
}

impl Dedup for Store {
    fn contains(
        &self,
        _time: DateTime<Utc>,
        _start: Option<DateTime<Utc>>,
        key: KeyRef<'_>,
    ) -> Result<bool, StateError> {
        if Some(key.to_string().as_str()) == self.panics_on {
            panic!("a bug on key {key}");
        }
        Ok(self.known.contains(&key.to_string().as_str()))
    }
    fn commit(&self, _delivered: &[Delivered]) -> Result<(), StateError> {
        Ok(())
    }
}

/// The filter's input for `body` cut into `chunk`-byte pieces, batches of `batch_size`; the
/// receiving end of the batch queue and the sending end of the spent batches.
fn input(
    body: &[u8],
    chunk: usize,
    batch_size: usize,
    store: Store,
) -> (FilterInput, mpsc::Receiver<Batch>, mpsc::Sender<Batch>) {
    let pieces: Vec<Vec<u8>> = body.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect();
    let (chunk_tx, chunks) = mpsc::channel(pieces.len() + 1);
    for p in pieces {
        chunk_tx.try_send(p).unwrap();
    }
    drop(chunk_tx);
    let (batches, batch_rx) = mpsc::channel(1 << 16);
    let (spent_tx, spent) = mpsc::channel(BATCH_POOL);
    let (spent_chunks, _) = mpsc::channel(1);
    let input = FilterInput {
        chunks,
        spent_chunks,
        batches,
        spent,
        store: Arc::new(store),
        encoders: Arc::new(vec![Encoder::Ecs(EcsEncoder::new(false))]),
        origin: Arc::new(Origin {
            base_url: "https://vault".into(),
            vault_host: "vault".into(),
            timezone: chrono_tz::America::Sao_Paulo,
        }),
        horizon: DateTime::<Utc>::MIN_UTC,
        batch_size,
        keep_original: false,
        progress: Arc::new(Progress::default()),
        committed_batches: Arc::new(AtomicU64::new(0)),
        refused: Arc::new(Refused::default()),
        telemetry: Arc::new(crate::telemetry::Telemetry::new(
            vec!["stdout".into()],
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(600),
            std::time::Duration::from_secs(300),
        )),
    };
    (input, batch_rx, spent_tx)
}

/// The keys of `batch`'s events, after checking each kept its own payload.
fn batch_keys(batch: &Batch) -> Vec<String> {
    assert_eq!(batch.ranges[0].len(), batch.metas.len());
    for (meta, &(s, t)) in batch.metas.iter().zip(&batch.ranges[0]) {
        let doc: serde_json::Value = serde_json::from_slice(&batch.payloads[0][s..t]).unwrap();
        assert_eq!(
            doc["event"]["id"],
            meta.event_id.as_str(),
            "each event keeps its own payload"
        );
    }
    batch.metas.iter().map(|m| m.key.to_string()).collect()
}

/// Run the filter over `body` cut into `chunk`-byte pieces; the outcome and the keys of
/// the events it emitted.
fn filter(body: &[u8], chunk: usize, store: Store) -> (FilterOutcome, Vec<String>) {
    let (input, mut batch_rx, spent_tx) = input(body, chunk, 3, store);
    // Delivery gives back a batch that still holds an earlier poll's events: nothing of it may
    // reach the next batches.
    let mut junk = Batch::new(1);
    junk.payloads[0].extend_from_slice(b"{\"junk\":1}");
    junk.ranges[0].push((0, junk.payloads[0].len()));
    junk.starts.push(None);
    junk.metas.push(EventMeta {
        key: EventKey::new("junk", Phase::Start),
        time: Utc::now(),
        tenant: None,
        event_id: crate::event::event_id("https://junk", None, "junk", Phase::Start),
    });
    spent_tx.try_send(junk).unwrap();
    // No delivery gives batches back here: with the sender gone, the filter makes new ones.
    drop(spent_tx);
    let outcome = run(input);
    let mut keys = Vec::new();
    while let Ok(batch) = batch_rx.try_recv() {
        keys.extend(batch_keys(&batch));
    }
    (outcome, keys)
}

/// Run the filter and `deliver` (taking its batches and giving them back) on threads of their
/// own; the outcome and what `deliver` returned. A filter that does not end within a minute
/// fails the test (a deadlock, not a slow run: the listings here take milliseconds).
fn filter_with<T: Send + 'static>(
    body: &[u8],
    batch_size: usize,
    deliver: impl FnOnce(mpsc::Receiver<Batch>, mpsc::Sender<Batch>) -> T + Send + 'static,
) -> (FilterOutcome, T) {
    let (input, batch_rx, spent_tx) = input(
        body,
        4096,
        batch_size,
        Store {
            panics_on: None,
            known: &[],
        },
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || drop(done_tx.send(Box::new(run(input)))));
    let delivery = std::thread::spawn(move || deliver(batch_rx, spent_tx));
    let outcome = done_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the filter ended");
    (*outcome, delivery.join().expect("delivery ended"))
}

#[test]
fn a_poll_fills_the_same_few_batches_over_and_over() {
    let records: Vec<String> = (0..100).map(|i| rec(&format!("s{i:03}"))).collect();
    let body = format!(r#"{{"remote_sessions":[{}]}}"#, records.join(","));
    // Delivery keeps each batch until the next one comes, as a sink still sending does: a
    // filter that made a new batch whenever none had come back would make more than three
    // whenever it ran ahead of delivery.
    let (out, keys) = filter_with(body.as_bytes(), 3, |mut batches, spent| {
        let (mut keys, mut held) = (Vec::new(), None);
        while let Some(batch) = batches.blocking_recv() {
            keys.extend(batch_keys(&batch));
            if let Some(previous) = held.replace(batch) {
                // Closed once the filter has ended; never full.
                let full = matches!(spent.try_send(previous), Err(mpsc::error::TrySendError::Full(_)));
                assert!(!full, "no room for a batch given back");
            }
        }
        keys
    });
    let expected: Vec<String> = (0..100).map(|i| format!("s{i:03}:end")).collect();
    assert_eq!(keys, expected);
    assert!(matches!(out.ended, Ended::Read { scan: Ok(()), .. }), "{:?}", out.ended);
    assert!(
        (1..=BATCH_POOL).contains(&out.batches_made),
        "{} batches made for 34 sent",
        out.batches_made
    );
}

#[test]
fn a_filter_waiting_for_a_batch_back_ends_when_delivery_does() {
    let records: Vec<String> = (0..100).map(|i| rec(&format!("s{i:03}"))).collect();
    let body = format!(r#"{{"remote_sessions":[{}]}}"#, records.join(","));
    // Delivery takes two batches, gives none back and ends (a sink failed): the filter, out of
    // batches, must stop waiting for one.
    let (out, taken) = filter_with(body.as_bytes(), 3, |mut batches, spent| {
        let taken = [batches.blocking_recv(), batches.blocking_recv()];
        drop((batches, spent));
        taken.iter().flatten().count()
    });
    assert_eq!(taken, 2);
    assert!(matches!(out.ended, Ended::DeliveryGone), "{:?}", out.ended);
}

fn rec(id: &str) -> String {
    format!(r#"{{"session_id":"{id}","start":"2024-05-06 10:00:00","end":"2024-05-06 11:00:00"}}"#)
}

#[test]
fn a_panic_on_one_record_costs_that_record_only() {
    let body = format!(r#"{{"remote_sessions":[{},{},{}]}}"#, rec("a"), rec("boom"), rec("c"));
    let (out, keys) = filter(
        body.as_bytes(),
        7,
        Store {
            panics_on: Some("boom:end"),
            known: &[],
        },
    );
    assert_eq!(keys, vec!["a:end", "c:end"]);
    assert_eq!((out.counters.records, out.counters.bad), (3, 1));
    assert!(
        matches!(
            out.ended,
            Ended::Read {
                scan: Ok(()),
                api_error: None
            }
        ),
        "{:?}",
        out.ended
    );
}

#[test]
fn a_key_repeated_in_one_listing_is_emitted_once_across_batches() {
    let ids = ["a", "b", "c", "d", "a", "e", "b"];
    let body = format!(
        r#"{{"remote_sessions":[{}]}}"#,
        ids.iter().map(|i| rec(i)).collect::<Vec<_>>().join(",")
    );
    let (out, keys) = filter(
        body.as_bytes(),
        5,
        Store {
            panics_on: None,
            known: &[],
        },
    );
    assert_eq!(keys, vec!["a:end", "b:end", "c:end", "d:end", "e:end"]);
    assert_eq!(out.counters.bad, 2);
}

/// After a known record only the next one's head is parsed first. Outcomes do not depend on
/// that: a new record whose other fields are broken is a bad record, a known one is known,
/// whichever record came before.
#[test]
fn head_first_after_a_known_record_changes_no_outcome() {
    let broken = r#"{"session_id":"b","start":"2024-05-06 10:00:00","end":"2024-05-06 11:00:00","user":{"x":1}}"#;
    let known_broken = r#"{"session_id":"k","start":"2024-05-06 10:00:00","end":"2024-05-06 11:00:00","user":[1]}"#;
    let body = format!(
        r#"{{"remote_sessions":[{},{},{},{},{},{},{},{}]}}"#,
        rec("a"),
        broken,
        rec("c"),
        broken,
        known_broken,
        rec("a2"),
        known_broken,
        rec("d")
    );
    for chunk in [1, 7, 4096] {
        let (out, keys) = filter(
            body.as_bytes(),
            chunk,
            Store {
                panics_on: None,
                known: &["a:end", "a2:end", "k:end"],
            },
        );
        assert_eq!(keys, vec!["c:end", "d:end"], "chunk {chunk}");
        let c = out.counters;
        assert_eq!((c.records, c.known, c.new_events, c.bad), (8, 4, 2, 2), "chunk {chunk}");
    }
}

/// A valid listing to mutate: records of several shapes, nested and flat.
fn seed_listing() -> Vec<u8> {
    format!(
        r#"{{"response":{{"error":false}},"tenant":"T","remote_sessions":[{},{{"tenant":"N","remote_sessions":[{},{}]}},{},1,"x"]}}"#,
        rec("a"),
        rec("b"),
        r#"{"session_id":"r","start":"2024-05-06 10:00:00","end":null}"#,
        r#"{"session_id":"u","user":"\u0000\"\\","start":"2024-02-30 10:00:00"}"#
    )
    .into_bytes()
}

fn every_record_is_accounted_for(out: &FilterOutcome, emitted: usize) {
    let c = &out.counters;
    assert_eq!(c.new_events, emitted as u64);
    assert_eq!(
        c.records,
        c.new_events + c.known + c.horizon_skipped + c.bad,
        "every record is an event or counted: {c:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary bytes: no panic, and every record found is an event or counted as bad.
    #[test]
    fn arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        let (out, keys) = filter(&body, chunk, Store { panics_on: None, known: &[] });
        every_record_is_accounted_for(&out, keys.len());
    }

    /// A valid listing with bytes flipped, inserted and removed: the same.
    #[test]
    fn mutated_listings(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8),
        chunk in 1usize..97,
    ) {
        let mut body = seed_listing();
        for (at, byte, op) in edits {
            let i = at.index(body.len() + 1);
            match op {
                0 if i < body.len() => body[i] = byte,
                1 => body.insert(i, byte),
                _ if i < body.len() => { body.remove(i); }
                _ => {}
            }
        }
        let (out, keys) = filter(&body, chunk, Store { panics_on: None, known: &[] });
        every_record_is_accounted_for(&out, keys.len());
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        prop_assert_eq!(unique.len(), keys.len(), "a key at most once per listing");
    }
}

/// A record whose path panics after one encoder wrote its payload leaves nothing behind: every
/// later event of the batch keeps its own payload (else delivery would send one event's payload
/// under the next one's key and commit a key whose event was never sent).
#[test]
fn a_record_cut_short_leaves_nothing_in_the_batch() {
    fn push(b: &mut Batch, id: &str) {
        for (i, payload) in b.payloads.iter_mut().enumerate() {
            let start = payload.len();
            payload.extend_from_slice(format!("{id}{i}").as_bytes());
            b.ranges[i].push((start, payload.len()));
        }
        b.starts.push(None);
        b.metas.push(EventMeta {
            key: EventKey::new(id, Phase::End),
            time: Utc::now(),
            tenant: None,
            event_id: crate::event::event_id("https://v", None, id, Phase::End),
        });
    }
    let mut b = Batch::new(2);
    push(&mut b, "a");
    let events = b.metas.len();
    // "b": the first encoder ran, the second panicked.
    let start = b.payloads[0].len();
    b.payloads[0].extend_from_slice(b"b0");
    b.ranges[0].push((start, start + 2));
    b.truncate(events);
    push(&mut b, "c");
    for (i, (payload, ranges)) in b.payloads.iter().zip(&b.ranges).enumerate() {
        let texts: Vec<&[u8]> = ranges.iter().map(|&(s, t)| &payload[s..t]).collect();
        let expected = [format!("a{i}"), format!("c{i}")];
        assert_eq!(texts, expected.iter().map(|s| s.as_bytes()).collect::<Vec<_>>());
    }
    let keys: Vec<String> = b.metas.iter().map(|m| m.key.to_string()).collect();
    assert_eq!(keys, ["a:end", "c:end"]);
    assert_eq!(b.starts.len(), 2);
}
