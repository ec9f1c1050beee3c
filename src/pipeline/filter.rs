//! The CPU side of a cycle, on a blocking thread: scan the listing chunks, parse each record,
//! decide its candidate event, skip it by horizon or by a store lookup, build and encode the
//! new ones, and hand full batches to delivery. Known events cost a parse, a time conversion
//! and one store lookup; nothing is allocated for them beyond the parse.

use super::{Batch, Counters, Progress};
use crate::encode::{EncodeCounters, Encoder};
use crate::event::{event_key, Candidate, Origin, SessionEvent};
use crate::sink::EventMeta;
use crate::source::senhasegura::model::{ApiResponse, RawSession};
use crate::source::senhasegura::stream::{Item, ScanError, Scanner};
use crate::state::{Dedup, StateError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bad records logged in full per cycle; the rest are only counted.
const BAD_LOG_LIMIT: u64 = 5;

/// What the filter thread needs.
pub struct FilterInput {
    /// Chunks of the listing body.
    pub chunks: mpsc::Receiver<Bytes>,
    /// Where full batches go.
    pub batches: mpsc::Sender<Batch>,
    /// The store to look keys up in.
    pub store: Arc<dyn Dedup>,
    /// One encoder per distinct format.
    pub encoders: Arc<Vec<Encoder>>,
    /// The vault.
    pub origin: Arc<Origin>,
    /// Events before this are skipped.
    pub horizon: DateTime<Utc>,
    /// Events per batch.
    pub batch_size: usize,
    /// Keep the raw record for `event.original`.
    pub keep_original: bool,
    /// Shared progress counters.
    pub progress: Arc<Progress>,
}

/// How the filter thread ended.
#[derive(Debug, Default)]
pub struct FilterOutcome {
    /// Per-cycle counts.
    pub counters: Counters,
    /// Encoder counts.
    pub encode: EncodeCounters,
    /// The scanner's verdict on the body (only meaningful when the body was read to its end).
    pub scan: Option<Result<(), ScanError>>,
    /// The envelope's `response` said error, with this message.
    pub api_error: Option<String>,
    /// A store lookup failed.
    pub state_error: Option<StateError>,
    /// The tenant of the last envelope.
    pub tenant: Option<String>,
    /// Delivery stopped taking batches.
    pub delivery_gone: bool,
}

struct Worker {
    input: FilterInput,
    out: FilterOutcome,
    batch: Batch,
    key: String,
    created: DateTime<Utc>,
}

/// Run the filter until the chunk channel closes or delivery goes away.
pub fn run(input: FilterInput) -> FilterOutcome {
    let encoders = input.encoders.len();
    let mut w = Worker {
        batch: Batch::new(encoders),
        input,
        out: FilterOutcome::default(),
        key: String::new(),
        created: Utc::now(),
    };
    let mut scanner = Scanner::default();
    while let Some(chunk) = w.input.chunks.blocking_recv() {
        w.created = Utc::now();
        let result = scanner.feed(&chunk, &mut |item| w.item(item));
        w.input.progress.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if result.is_err() {
            // Delivery is gone or the store failed: stop reading.
            return w.out;
        }
    }
    w.out.scan = Some(scanner.finish());
    if !scanner.saw_sessions && w.out.api_error.is_none() && matches!(w.out.scan, Some(Ok(()))) {
        w.out.api_error = Some("the listing has no remote_sessions array".into());
    }
    if !w.batch.metas.is_empty() {
        let batch = std::mem::replace(&mut w.batch, Batch::new(encoders));
        if w.input.batches.blocking_send(batch).is_err() {
            w.out.delivery_gone = true;
        }
    }
    w.out
}

impl Worker {
    fn item(&mut self, item: Item<'_>) -> Result<(), ()> {
        match item {
            Item::Tenant(t) => self.out.tenant = Some(t),
            Item::Response(bytes) => {
                if let Ok(r) = serde_json::from_slice::<ApiResponse>(bytes) {
                    if r.is_error() {
                        self.out.api_error = Some(
                            r.message
                                .or(r.mensagem)
                                .unwrap_or_else(|| "error without a message".into()),
                        );
                    }
                }
            }
            Item::Oversized => self.bad("record larger than 1 MiB skipped", None),
            Item::Record(bytes) => return self.record(bytes),
        }
        Ok(())
    }

    fn bad(&mut self, why: &str, session_id: Option<&str>) {
        self.out.counters.bad += 1;
        if self.out.counters.bad <= BAD_LOG_LIMIT {
            tracing::warn!(
                reason = why,
                session_id = session_id.unwrap_or("-"),
                "Skipping a bad record"
            );
        } else if self.out.counters.bad == BAD_LOG_LIMIT + 1 {
            tracing::warn!("More bad records in this listing; only counting them from now on");
        }
    }

    fn record(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.out.counters.records += 1;
        self.input.progress.records.fetch_add(1, Ordering::Relaxed);
        let raw = match RawSession::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.bad(
                    &format!("record is not a JSON object of the documented fields ({e})"),
                    None,
                );
                return Ok(());
            }
        };
        let record = raw.to_record();
        let candidate = match Candidate::of(&record, self.input.origin.timezone) {
            Ok(c) => c,
            Err(problem) => {
                let sid = record.session_id.as_deref().map(str::to_string);
                self.bad(&problem.to_string(), sid.as_deref());
                return Ok(());
            }
        };
        if candidate.time < self.input.horizon {
            self.out.counters.horizon_skipped += 1;
            return Ok(());
        }
        let session_id = record.session_id.as_deref().expect("Candidate::of checked session_id");
        event_key(session_id, candidate.phase, &mut self.key);
        match self.input.store.contains(candidate.time, candidate.start, &self.key) {
            Ok(true) => {
                self.out.counters.known += 1;
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => {
                self.out.state_error = Some(e);
                return Err(());
            }
        }
        let start = candidate.start;
        let original = self.input.keep_original.then_some(bytes);
        let event = SessionEvent::build(
            &record,
            candidate,
            &self.input.origin,
            self.out.tenant.as_deref(),
            self.created,
            original,
        );
        for (i, enc) in self.input.encoders.iter().enumerate() {
            let buf = &mut self.batch.payloads[i];
            let start = buf.len();
            enc.encode(&event, buf, &mut self.out.encode);
            self.batch.ranges[i].push((start, buf.len()));
        }
        self.batch.starts.push(start);
        self.batch.metas.push(EventMeta {
            key: event.key,
            session_id: event.session_id,
            phase: event.phase,
            time: event.timestamp,
            tenant: event.tenant,
            event_id: event.id,
        });
        self.out.counters.new_events += 1;
        if self.batch.metas.len() >= self.input.batch_size {
            let batch = std::mem::replace(&mut self.batch, Batch::new(self.input.encoders.len()));
            if self.input.batches.blocking_send(batch).is_err() {
                self.out.delivery_gone = true;
                return Err(());
            }
        }
        Ok(())
    }
}
