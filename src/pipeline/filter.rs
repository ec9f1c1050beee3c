//! The CPU side of a cycle, on a blocking thread: scan the listing chunks, parse each record,
//! decide its candidate event, skip it by horizon or by a store lookup, build and encode the
//! new ones, and hand full batches to delivery. Known events cost a parse, a time conversion
//! and one store lookup; nothing is allocated for them beyond the parse.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::pending::{Pending, Refused};
use super::{Batch, Counters, Progress, BATCH_POOL};
use crate::encode::{EncodeCounters, Encoder};
use crate::event::{Candidate, Origin, SessionEvent, WallClock};
use crate::key::{EventKey, KeyRef};
use crate::sink::EventMeta;
use crate::source::senhasegura::model::session_id_hint;
use crate::source::senhasegura::model::{ApiResponse, RecordHead, SessionRecord, RECORD_FIELDS};
use crate::source::senhasegura::stream::{Field, Item, ScanError, Scanner, Stop};
use crate::state::{Dedup, StateError};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bad records logged in full per cycle; the rest are only counted.
const BAD_LOG_LIMIT: u64 = 5;
/// A record whose time is this far ahead of the clock is "in the future"...
const FUTURE_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// ...and more than this many of them in one listing make a warning.
const FUTURE_WARN_OVER: u64 = 3;

/// What the filter thread needs.
pub struct FilterInput {
    /// Chunks of the listing body.
    pub chunks: mpsc::Receiver<Vec<u8>>,
    /// Scanned chunks, back to the body reader to be filled again.
    pub spent_chunks: mpsc::Sender<Vec<u8>>,
    /// Where full batches go.
    pub batches: mpsc::Sender<Batch>,
    /// Delivered batches, back to be filled again.
    pub spent: mpsc::Receiver<Batch>,
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
    /// How many of the batches sent so far have their keys committed (set by delivery).
    pub committed_batches: Arc<AtomicU64>,
    /// Keys a sink refused for good in this listing (set by delivery).
    pub refused: Arc<Refused>,
    /// Metrics (records by outcome, bytes), published once per chunk.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

/// What the filter thread did.
#[derive(Debug)]
pub struct FilterOutcome {
    /// Per-cycle counts.
    pub counters: Counters,
    /// Encoder counts.
    pub encode: EncodeCounters,
    /// How it ended.
    pub ended: Ended,
    /// Batches it made (the rest of what it filled came back from delivery).
    pub batches_made: usize,
}

/// How the filter thread ended.
#[derive(Debug)]
pub enum Ended {
    /// The body was read to its end, or to the point where it broke.
    Read {
        /// The scanner's verdict on the body.
        scan: Result<(), ScanError>,
        /// The envelope's `response` said error, with this message.
        api_error: Option<String>,
    },
    /// Delivery stopped taking batches (a sink failed or the cycle was interrupted): the rest
    /// of the body was not read.
    DeliveryGone,
    /// A store lookup failed: the rest of the body was not read.
    StateFailed(StateError),
}

/// Why the worker stops reading before the body's end.
#[derive(Debug)]
enum Halt {
    DeliveryGone,
    State(StateError),
}

struct Worker {
    input: FilterInput,
    counters: Counters,
    encode: EncodeCounters,
    api_error: Option<String>,
    batch: Batch,
    created: DateTime<Utc>,
    /// Keys emitted in this listing whose batch is not committed yet, with that batch's
    /// number: a key repeated in one listing is emitted once, whatever the commit timing.
    /// Committed keys are found in the store, so only these need remembering (without
    /// commits, as in `--dry-run`, it keeps every emitted key of the listing).
    pending: Pending,
    /// Batches handed to delivery so far.
    batches_sent: u64,
    /// Batches this poll has made (at most [`BATCH_POOL`] while delivery goes on).
    batches_made: usize,
    /// `committed_batches` when `pending` was last trimmed.
    trimmed_at: u64,
    published: Counters,
    future: Future,
    /// The last record's event was known or before the horizon (see `record`).
    last_known: bool,
    /// The tenant of the last event emitted, shared by the next ones of the same envelope.
    tenant: Option<Arc<str>>,
    /// Reads the records' times in the vault's zone (remembering the last ones).
    clock: WallClock,
}

/// Records dated in the future (a wrong `source.timezone` shifts every time).
#[derive(Default)]
struct Future {
    count: u64,
    max_ahead: chrono::TimeDelta,
    example: Option<String>,
}

/// Run the filter until the chunk channel closes or delivery goes away.
pub fn run(input: FilterInput) -> FilterOutcome {
    let encoders = input.encoders.len();
    let input_zone = input.origin.timezone;
    let mut w = Worker {
        batch: Batch::new(encoders),
        input,
        counters: Counters::default(),
        encode: EncodeCounters::default(),
        api_error: None,
        created: Utc::now(),
        pending: Pending::default(),
        batches_sent: 0,
        batches_made: 1,
        trimmed_at: 0,
        published: Counters::default(),
        future: Future::default(),
        last_known: false,
        tenant: None,
        clock: WallClock::new(input_zone),
    };
    let mut scanner = Scanner::default().watching(RECORD_FIELDS);
    while let Some(chunk) = w.input.chunks.blocking_recv() {
        w.created = Utc::now();
        let result = scanner.feed(&chunk, &mut |item| w.item(item));
        w.input.progress.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        w.publish(chunk.len() as u64);
        // Never full (the pool's size); gone: the reader ended.
        let _ = w.input.spent_chunks.try_send(chunk);
        match result {
            Ok(()) => {}
            // The body is broken here: what came before is delivered, nothing after is read.
            Err(Stop::Scan(_)) => break,
            Err(Stop::Emit(Halt::DeliveryGone)) => return w.end(Ended::DeliveryGone),
            Err(Stop::Emit(Halt::State(e))) => return w.end(Ended::StateFailed(e)),
        }
    }
    w.warn_future();
    let scan = scanner.finish();
    if scanner.late_tenants > 0 {
        tracing::warn!(
            envelopes = scanner.late_tenants,
            "The listing names an envelope's tenant after its sessions; those events were sent without a tenant"
        );
    }
    if !w.batch.metas.is_empty() {
        let batch = std::mem::replace(&mut w.batch, Batch::new(encoders));
        if w.input.batches.blocking_send(batch).is_err() {
            return w.end(Ended::DeliveryGone);
        }
    }
    let api_error = w.api_error.take();
    w.end(Ended::Read { scan, api_error })
}

impl Worker {
    fn end(self, ended: Ended) -> FilterOutcome {
        FilterOutcome {
            counters: self.counters,
            encode: self.encode,
            ended,
            batches_made: self.batches_made,
        }
    }

    /// Hand the counts since the last call to the metrics.
    fn publish(&mut self, bytes: u64) {
        let last = &mut self.published;
        let c = &self.counters;
        let delta = crate::telemetry::RecordCounts {
            new: c.new_events.saturating_sub(last.new_events),
            known: c.known.saturating_sub(last.known),
            horizon: c.horizon_skipped.saturating_sub(last.horizon_skipped),
            bad: c.bad.saturating_sub(last.bad),
        };
        *last = *c;
        self.input.telemetry.records(&delta, bytes);
    }

    /// One WARN per listing when more than a few records are dated in the future.
    fn warn_future(&self) {
        let f = &self.future;
        self.input.telemetry.metrics.events_in_future.inc_by(f.count);
        if f.count > FUTURE_WARN_OVER {
            tracing::warn!(
                records = f.count,
                max_ahead_min = f.max_ahead.num_minutes(),
                example_session = f.example.as_deref().unwrap_or("-"),
                zone = self.input.origin.timezone.name(),
                "Records are dated more than 5 minutes in the future: source.timezone is probably not the vault's zone (their times are read in this zone)"
            );
        }
    }

    fn item(&mut self, item: Item<'_>) -> Result<(), Halt> {
        match item {
            Item::Response(bytes) => {
                if let Ok(r) = serde_json::from_slice::<ApiResponse>(bytes) {
                    if r.is_error() {
                        self.api_error = Some(r.message.or(r.mensagem).map_or_else(
                            || "error without a message".into(),
                            |m| crate::settings::printable(&m, crate::source::senhasegura::model::MESSAGE_CHARS),
                        ));
                    }
                }
            }
            Item::Oversized { prefix } => {
                self.count_record();
                let sid = session_id_hint(prefix);
                self.bad(
                    &format!(
                        "record larger than {} KiB skipped",
                        crate::source::senhasegura::stream::DEFAULT_MAX_RECORD / 1024
                    ),
                    sid.as_deref(),
                );
            }
            Item::NotAnObject { what } => {
                self.count_record();
                self.bad(
                    &format!("an item of remote_sessions is {what}, not a record object"),
                    None,
                );
            }
            Item::Record {
                bytes,
                tenant,
                fields,
                only_watched,
            } => {
                self.count_record();
                // A bug on one record's path must not take the others down: it costs that
                // record, logged as the bug it is.
                let events = self.batch.metas.len();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.record(bytes, tenant, fields, only_watched)
                }));
                return match outcome {
                    Ok(result) => result,
                    Err(panic) => {
                        self.batch.truncate(events);
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(
                            panic = message,
                            session_id = session_id_hint(bytes).as_deref().unwrap_or("-"),
                            "Internal error (a bug in senhasegura-forwarder; please report it) on one record; it was skipped"
                        );
                        self.counters.bad = self.counters.bad.saturating_add(1);
                        Ok(())
                    }
                };
            }
        }
        Ok(())
    }

    /// An empty batch: a delivered one if delivery gave one back, else a new one while the poll
    /// has fewer than [`BATCH_POOL`]; with that many out, it waits for delivery to give one
    /// back. So the poll's batch buffers are the same few from its first second to its last,
    /// instead of one more mapped and dropped whenever delivery's hand-back and the filter's
    /// need crossed. `None` from the wait: delivery ended, and the send after this fails.
    fn next_batch(&mut self) -> Batch {
        let spent = if self.batches_made < BATCH_POOL {
            self.input.spent.try_recv().ok()
        } else {
            self.input.spent.blocking_recv()
        };
        match spent {
            Some(mut batch) => {
                batch.clear();
                batch
            }
            None => {
                self.batches_made = self.batches_made.saturating_add(1);
                Batch::new(self.input.encoders.len())
            }
        }
    }

    fn count_record(&mut self) {
        self.counters.records = self.counters.records.saturating_add(1);
        self.input.progress.records.fetch_add(1, Ordering::Relaxed);
    }

    fn bad(&mut self, why: &str, session_id: Option<&str>) {
        self.counters.bad = self.counters.bad.saturating_add(1);
        if self.counters.bad <= BAD_LOG_LIMIT {
            tracing::warn!(
                reason = why,
                session_id = session_id
                    .map(crate::source::senhasegura::excerpt)
                    .as_deref()
                    .unwrap_or("-"),
                "Skipping a bad record"
            );
        } else if self.counters.bad == BAD_LOG_LIMIT + 1 {
            tracing::warn!("More bad records in this listing; only counting them from now on");
        }
    }

    /// Was this key already emitted in this listing, in a batch not yet committed?
    fn emitted_in_this_listing(&mut self, key: KeyRef<'_>) -> bool {
        if self.input.refused.contains(key) {
            return true;
        }
        if self.pending.is_empty() {
            return false;
        }
        let committed = self.input.committed_batches.load(Ordering::Acquire);
        if committed != self.trimmed_at {
            self.pending.retain_after(committed);
            self.trimmed_at = committed;
        }
        self.pending.contains(key)
    }

    fn unparsable(&mut self, bytes: &[u8], e: &serde_json::Error) {
        let sid = session_id_hint(bytes);
        self.bad(
            &format!("record is not a JSON object of the documented fields ({e})"),
            sid.as_deref(),
        );
    }

    fn record(&mut self, bytes: &[u8], tenant: Option<&str>, fields: &[Field], only_watched: bool) -> Result<(), Halt> {
        // After a known record, read only the head first: the next is likely known too, and
        // then the rest of it is never read. After a new one, read the whole record at once.
        // Either is read off where the scanner found the fields, and parsed by serde only when
        // a value is not a plain string or null, or (the whole record) when it has keys the
        // scanner did not watch.
        // Either way a record is judged on its head until it turns out new: a known event is
        // known whatever its other fields hold; a new one needs them all.
        let parse =
            || SessionRecord::from_fields(bytes, fields, only_watched).map_or_else(|| SessionRecord::parse(bytes), Ok);
        let full = match self.last_known {
            true => None,
            false => parse().ok(),
        };
        let head = match &full {
            Some(r) => r.head(),
            None => match RecordHead::from_fields(bytes, fields, only_watched)
                .map_or_else(|| RecordHead::parse(bytes), Ok)
            {
                Ok(h) => h,
                Err(e) => {
                    self.unparsable(bytes, &e);
                    return Ok(());
                }
            },
        };
        let candidate = match Candidate::read(&head, &mut self.clock) {
            Ok(c) => c,
            Err(problem) => {
                self.bad(&problem.to_string(), head.session_id.as_deref());
                return Ok(());
            }
        };
        let ahead = candidate.time.signed_duration_since(self.created);
        if ahead > FUTURE_SLACK {
            let f = &mut self.future;
            f.count = f.count.saturating_add(1);
            if ahead > f.max_ahead {
                f.max_ahead = ahead;
                f.example = Some(candidate.session_id.to_string());
            }
        }
        if candidate.time < self.input.horizon {
            self.counters.horizon_skipped = self.counters.horizon_skipped.saturating_add(1);
            self.last_known = true;
            return Ok(());
        }
        let key = KeyRef::new(candidate.session_id, candidate.phase);
        if self.emitted_in_this_listing(key) {
            self.bad(
                &format!(
                    "the listing repeats the {} of a session already read in it",
                    candidate.phase.as_str()
                ),
                Some(candidate.session_id),
            );
            return Ok(());
        }
        match self.input.store.contains(candidate.time, candidate.start, key) {
            Ok(true) => {
                self.counters.known = self.counters.known.saturating_add(1);
                self.last_known = true;
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(Halt::State(e)),
        }
        self.last_known = false;
        let reparsed;
        let record = match &full {
            Some(r) => r,
            None => match parse() {
                Ok(r) => {
                    reparsed = r;
                    &reparsed
                }
                Err(e) => {
                    self.unparsable(bytes, &e);
                    return Ok(());
                }
            },
        };
        let start = candidate.start;
        let original = self.input.keep_original.then_some(bytes);
        let event = SessionEvent::build(record, candidate, &self.input.origin, tenant, self.created, original);
        if event.device.unparsed {
            self.encode.partial = self.encode.partial.saturating_add(1);
        }
        for (i, enc) in self.input.encoders.iter().enumerate() {
            let buf = &mut self.batch.payloads[i];
            let start = buf.len();
            enc.encode(&event, buf, &mut self.encode);
            self.batch.ranges[i].push((start, buf.len()));
        }
        self.batch.starts.push(start);
        self.pending.insert(key, self.batches_sent.saturating_add(1));
        self.batch.metas.push(EventMeta {
            key: EventKey::new(event.session_id, event.phase),
            time: event.timestamp,
            tenant: event.tenant.map(|t| shared(&mut self.tenant, t)),
            event_id: event.id,
        });
        self.counters.new_events = self.counters.new_events.saturating_add(1);
        if self.batch.metas.len() >= self.input.batch_size {
            let next = self.next_batch();
            let batch = std::mem::replace(&mut self.batch, next);
            self.batches_sent = self.batches_sent.saturating_add(1);
            if self.input.batches.blocking_send(batch).is_err() {
                return Err(Halt::DeliveryGone);
            }
        }
        Ok(())
    }
}

/// `tenant` as an `Arc`, allocated once per envelope rather than once per event: `last` holds
/// the one given out last.
fn shared(last: &mut Option<Arc<str>>, tenant: &str) -> Arc<str> {
    match last {
        Some(t) if **t == *tenant => t.clone(),
        _ => last.insert(Arc::from(tenant)).clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
#[path = "filter_tests.rs"]
mod tests;
