//! The pipeline: source → filter → encode → sinks → commit, one poll cycle at a time.
//!
//! A cycle runs three things at once: the async body reader (chunks from reqwest), the filter
//! on a blocking thread ([`filter`]: scan, parse, horizon, dedup lookup, encode, batch), and
//! delivery ([`deliver`]: fan a batch out to every sink, then commit its keys). Channels
//! between them are bounded, so memory does not grow with the listing.
//!
//! Invariants: a key is committed only after every sink acknowledged its event; a sink that
//! fails holds the commit point (the cycle never skips past an undelivered event); a failed
//! or interrupted cycle keeps what was committed and the next cycle re-reads the rest.

mod batch;
mod deliver;
mod filter;
mod pending;
mod pieces;
mod retry;
mod summary;

use crate::encode::Encoder;
use crate::event::Origin;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::senhasegura::stream::ScanError;
use crate::source::senhasegura::{from_reqwest, SourceError, VaultClient};
use crate::state::{Dedup, Delivered};
use crate::telemetry::Telemetry;
use crate::Error;
use futures_util::StreamExt;
use pieces::{Pieces, CHUNK_POOL, CHUNK_QUEUE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use batch::Batch;
pub use deliver::{DeliveryPolicy, SinkSet};
pub use retry::{backoff_delay, RetryPolicy};
use summary::{log_summary, poll_end};
pub use summary::{Counters, CycleSummary};

/// Batches waiting for delivery (bounds memory). One is enough to keep both sides busy: the
/// filter fills the next batch while delivery sends the last, and whichever side is slower
/// keeps the queue full or empty whatever its length. Two cost a megabyte more at the
/// all-new peak for no measured speed (`benches/e2e.sh`).
const BATCH_QUEUE: usize = 1;
/// Batches a poll fills and delivers in turn: the one the filter fills, the one waiting
/// ([`BATCH_QUEUE`]) and the one being sent. A batch's payload is about a megabyte, so a poll
/// holds these three from its first second to its last and never maps a fourth: with a new one
/// made whenever none had come back yet, four or five were alive at once now and then, and the
/// longer the poll, the likelier its peak met such a moment (`benches/e2e.sh`, README
/// "Measured").
pub(crate) const BATCH_POOL: usize = BATCH_QUEUE + 2;
/// Acknowledged keys are committed (apply + fsync) once this many are pending... 5,000 against
/// 10,000: a first poll of a million sessions ran no slower (2.66–2.90 s against 2.81–2.93 s)
/// and peaked 2 MiB lower (27.6–27.9 against 29.4–30.5 MiB): the commit's lists and the
/// filter's pending keys are half as long, and a commit holds delivery up half as long; 2,500
/// and 1,000 were slower, and lower still (`benches/e2e.sh`, alternating runs, README
/// "Measured"). Twice the flushes to disk: nothing measurable here, ~1 s more per million keys
/// where a flush takes 10 ms.
const COMMIT_KEYS: usize = 5_000;
/// ...or this long after the previous commit, whichever comes first, and at the cycle's end.
const COMMIT_EVERY: Duration = Duration::from_millis(500);

/// Commit `keys` and empty the list (keeping its allocation for the next keys).
async fn commit_keys(store: &Arc<dyn Dedup>, keys: &mut Vec<Delivered>, telemetry: &Telemetry) -> Result<(), Error> {
    let store = store.clone();
    let n = keys.len();
    let list = std::mem::take(keys);
    let (mut list, result) = tokio::task::spawn_blocking(move || {
        let result = store.commit(&list);
        (list, result)
    })
    .await
    .map_err(|e| Error::Internal(format!("the commit task failed: {e}")))?;
    result?;
    list.clear();
    *keys = list;
    telemetry.committed(n);
    Ok(())
}

/// Live progress of the current listing (for the interactive progress line).
#[derive(Debug, Default)]
pub struct Progress {
    /// Body bytes scanned.
    pub bytes: AtomicU64,
    /// Records scanned.
    pub records: AtomicU64,
}

/// Everything one cycle needs.
pub struct Pipeline {
    /// The vault client.
    pub client: Arc<VaultClient>,
    /// The dedup store.
    pub store: Arc<dyn Dedup>,
    /// The sinks and their encoders.
    pub sinks: SinkSet,
    /// The vault's identity and zone.
    pub origin: Arc<Origin>,
    /// Source retries.
    pub retry: RetryPolicy,
    /// Commit delivered keys (false for `--dry-run`).
    pub commit: bool,
    /// Events per batch.
    pub batch_size: usize,
    /// Fill `event.original`.
    pub keep_original: bool,
    /// Live progress.
    pub progress: Arc<Progress>,
    /// Metrics, health and outage logging.
    pub telemetry: Arc<Telemetry>,
}

impl Pipeline {
    /// One poll with retries: keeps what each attempt delivered, retries transient source
    /// errors with backoff, never retries auth or sink errors.
    pub async fn poll(
        &mut self,
        horizon: chrono::DateTime<chrono::Utc>,
        shutdown: &Shutdown,
    ) -> Result<CycleSummary, Error> {
        let started = Instant::now();
        self.telemetry.poll_started();
        self.telemetry
            .metrics
            .state_horizon
            .set(horizon.timestamp_millis() as f64 / 1000.0);
        let mut total = CycleSummary::default();
        let mut attempt = 0;
        loop {
            total.attempts = attempt + 1;
            let result = self.attempt(horizon, shutdown, &mut total).await;
            match result {
                Ok(()) => break,
                Err(Error::Source(e)) if e.is_retryable() && attempt < self.retry.retries => {
                    // Bytes came, but the attempt failed: the vault did not answer it.
                    total.answered = false;
                    self.telemetry.source_failed(&e);
                    // A stop that came during the attempt ends the cycle as interrupted, as a
                    // stop during the wait below does: it, not the vault, ends the retries.
                    if shutdown.is_fired() {
                        total.interrupted = true;
                        break;
                    }
                    let delay = self.retry.delay(&e, attempt);
                    tracing::debug!(error = %e, attempt = attempt + 1, retry_in_ms = delay.as_millis() as u64, "Vault request failed; retrying");
                    let mut sd = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = sd.wait() => { total.interrupted = true; break; }
                    }
                    attempt += 1;
                }
                Err(e) => {
                    total.duration = started.elapsed();
                    if let Error::Source(se) = &e {
                        self.telemetry.source_failed(se);
                    }
                    self.telemetry.poll_done(&poll_end(&total, Some(&e)));
                    log_summary(&total, Some(&e));
                    return Err(e);
                }
            }
        }
        total.duration = started.elapsed();
        self.telemetry.poll_done(&poll_end(&total, None));
        log_summary(&total, None);
        Ok(total)
    }

    async fn attempt(
        &mut self,
        horizon: chrono::DateTime<chrono::Utc>,
        shutdown: &Shutdown,
        total: &mut CycleSummary,
    ) -> Result<(), Error> {
        self.telemetry.attempt_started();
        total.answered = false;
        // SIGTERM does not wait for a vault that is slow to answer (token or listing headers).
        let mut sd = shutdown.clone();
        let (response, opened) = tokio::select! {
            r = self.client.open_listing() => r?,
            _ = sd.wait() => {
                total.interrupted = true;
                return Ok(());
            }
        };
        let timeout = self.client.timeout();
        let idle_timeout = self.client.idle_timeout();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let committed_batches = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(pending::Refused::default());
        let (chunk_tx, chunk_rx) = mpsc::channel(CHUNK_QUEUE);
        // Scanned chunk buffers come back to be filled again (see the reader below).
        let (spent_chunk_tx, spent_chunk_rx) = mpsc::channel::<Vec<u8>>(CHUNK_POOL);
        let (batch_tx, mut batch_rx) = mpsc::channel(BATCH_QUEUE);
        // Delivered batches go back to the filter to be filled again.
        let (spent_tx, spent_rx) = mpsc::channel(BATCH_POOL);
        self.progress.bytes.store(0, Ordering::Relaxed);
        self.progress.records.store(0, Ordering::Relaxed);
        let input = filter::FilterInput {
            chunks: chunk_rx,
            spent_chunks: spent_chunk_tx,
            batches: batch_tx,
            spent: spent_rx,
            store: self.store.clone(),
            encoders: self.sinks.encoders.clone(),
            origin: self.origin.clone(),
            horizon,
            batch_size: self.batch_size,
            keep_original: self.keep_original,
            progress: self.progress.clone(),
            committed_batches: committed_batches.clone(),
            refused: refused.clone(),
            telemetry: self.telemetry.clone(),
        };
        // The one blocking task that lives for the whole listing, and it waits on delivery (a
        // full batch queue), whose writes and commits need the other blocking thread (shared
        // with the process's other short blocking work, none of which waits on the filter):
        // the runtime keeps room for both (`memory::BLOCKING_THREADS`).
        let filter = tokio::task::spawn_blocking(move || filter::run(input));
        // The body's first bytes, to say what it was when it is not a listing.
        let mut head: Vec<u8> = Vec::new();

        let mut sd = shutdown.clone();
        let head_ref = &mut head;
        let failing_time = self.sinks.failing_time.clone();
        let read = async move {
            let url = response.url().clone();
            let mut stream = response.bytes_stream();
            let mut bytes = 0u64;
            let mut pieces = Pieces::new(spent_chunk_rx);
            // source.timeout: the time the vault takes, not the time a failing sink holds the
            // reader up (waiting for the filter, which waits for delivery): that much of each
            // wait pushes the deadline back. A slow sink's waits still count: they end, and an
            // endless listing must meet the deadline whatever the sinks.
            let mut deadline = opened.checked_add(timeout).unwrap_or(opened);
            let timed_out = || Err(crate::source::senhasegura::listing_timeout(Some(&url), timeout));
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                // Checked here too: `timeout` polls the stream first, so a vault that always
                // has data ready (an endless listing) would never meet it.
                if left.is_zero() {
                    return timed_out();
                }
                tokio::select! {
                    next = tokio::time::timeout(idle_timeout.min(left), stream.next()) => match next {
                        Err(_) if left < idle_timeout => return timed_out(),
                        Err(_) => return Err(SourceError::Stalled { seconds: idle_timeout.as_secs(), bytes }),
                        Ok(Some(Ok(chunk))) => {
                            bytes = bytes.saturating_add(chunk.len() as u64);
                            if head_ref.len() < HEAD_BYTES {
                                let take = chunk.len().min(HEAD_BYTES - head_ref.len());
                                head_ref.extend_from_slice(&chunk[..take]);
                            }
                            // Copied into pieces of our own and let go once they are queued,
                            // before the next read: hyper then reads on into the same
                            // allocation instead of mapping a fresh 400 KiB block while the
                            // filter still holds the last ones.
                            let (held, failing_before) = (tokio::time::Instant::now(), failing_time.load(Ordering::Acquire));
                            if !pieces.queue(&chunk, &chunk_tx).await {
                                return Ok(false);
                            }
                            drop(chunk);
                            let failing = failing_time.load(Ordering::Acquire).saturating_sub(failing_before);
                            let pushed = held.elapsed().min(Duration::from_nanos(failing));
                            deadline = deadline.checked_add(pushed).unwrap_or(deadline);
                        }
                        Ok(Some(Err(e))) => return Err(from_reqwest(&e, timeout)),
                        Ok(None) => return Ok(false),
                    },
                    _ = chunk_tx.closed() => return Ok(false),
                    _ = sd.wait() => return Ok(true),
                }
            }
        };
        let commit = self.commit;
        let store = self.store.clone();
        let telemetry = &self.telemetry;
        let sinks = &mut self.sinks;
        // Delivery left batches unsent because SIGTERM came.
        let stopped = std::cell::Cell::new(false);
        let deliver = async {
            // Owned here, so the filter's wait for a batch back ends when delivery does.
            let spent_tx = spent_tx;
            let result = async {
                let mut delivered = 0u64;
                let mut pending: Vec<Delivered> = Vec::new();
                let mut since = Instant::now();
                let mut received = 0u64;
                let result = loop {
                    let Some(mut batch) = batch_rx.recv().await else {
                        break Ok(());
                    };
                    // After SIGTERM, only the batch in flight is finished: what the filter read
                    // ahead (thousands of events, minutes to a slow collector) is not sent, not
                    // committed, and read again at the next start.
                    if shutdown.is_fired() {
                        stopped.set(true);
                        break Ok(());
                    }
                    received += 1;
                    let rejected = match sinks.deliver(&batch, shutdown).await {
                        Ok(rejected) => rejected,
                        Err(e) => break Err(e),
                    };
                    refused.add(&rejected);
                    delivered += batch.metas.len().saturating_sub(rejected.len()) as u64;
                    if commit {
                        deliver::take_delivered(&mut batch, &rejected, &mut pending);
                    }
                    // Never full (the pool's size); gone: the filter ended.
                    let _ = spent_tx.try_send(batch);
                    if commit && (pending.len() >= COMMIT_KEYS || since.elapsed() >= COMMIT_EVERY) {
                        commit_keys(&store, &mut pending, telemetry).await?;
                        // The filter may forget these batches' keys: the store has them now.
                        committed_batches.store(received, Ordering::Release);
                        since = Instant::now();
                    }
                };
                // What was acknowledged is committed even when a later batch failed.
                if !pending.is_empty() {
                    commit_keys(&store, &mut pending, telemetry).await?;
                }
                result.map(|()| delivered)
            }
            .await;
            // However delivery ended, the filter must not wait on a batch queue that nobody
            // reads any more: closed, its next send fails and it ends (and the reader after it).
            batch_rx.close();
            drop(spent_tx);
            result
        };
        let (read_result, deliver_result) = tokio::join!(read, deliver);
        let outcome = filter
            .await
            .map_err(|e| Error::Internal(format!("the filter thread failed: {e}")))?;
        let read_now = self.progress.bytes.load(Ordering::Relaxed);
        tracing::debug!(bytes = read_now, batches_made = outcome.batches_made, "Listing read");
        total.bytes += read_now;
        total.answered = read_now > 0;
        let c = &mut total.counters;
        c.records = outcome.counters.records;
        c.known = outcome.counters.known;
        c.horizon_skipped = outcome.counters.horizon_skipped;
        c.bad = outcome.counters.bad;
        c.new_events += outcome.counters.new_events;
        total.encode.truncated += outcome.encode.truncated;
        total.encode.partial += outcome.encode.partial;
        let delivered = deliver_result?;
        total.counters.delivered += delivered;
        if let filter::Ended::StateFailed(e) = outcome.ended {
            return Err(e.into());
        }
        // Also when the listing was read whole but SIGTERM stopped delivery (which leaves the
        // batches read ahead unsent): the cycle did not finish.
        let interrupted = read_result? || stopped.get();
        if interrupted {
            total.interrupted = true;
            return Ok(());
        }
        match outcome.ended {
            filter::Ended::Read {
                api_error: Some(message),
                ..
            } => Err(SourceError::Listing { message }.into()),
            filter::Ended::Read { scan: Err(e), .. } => Err(body_error(&e, content_type.as_deref(), &head).into()),
            // Delivery acknowledged everything it took (its result was Ok), so the listing
            // ended where delivery stopped taking batches: nothing more to do this attempt.
            _ => Ok(()),
        }
    }
}

/// How much of the body's start is kept to describe a body that is not a listing.
const HEAD_BYTES: usize = 256;

/// A listing body the scanner refused, described so the operator can tell what answered:
/// content type and first bytes, and a hint when it looks like a web page.
fn body_error(e: &ScanError, content_type: Option<&str>, head: &[u8]) -> SourceError {
    let retryable = matches!(e, ScanError::Incomplete { .. });
    let mut message = e.to_string();
    if !matches!(e, ScanError::Incomplete { .. } | ScanError::TooDeep { .. }) {
        let start = head.trim_ascii_start();
        let page = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html")) || start.starts_with(b"<");
        message.push_str(&format!(
            "; the answer's content type is {}, and it starts with \"{}\"",
            content_type
                .map(crate::source::senhasegura::excerpt)
                .unwrap_or_else(|| "not given".into()),
            crate::source::senhasegura::body_excerpt(start)
        ));
        if page {
            message.push_str("; it looks like a login or proxy page, not the API: check source.url and any proxy between the agent and the vault");
        }
    }
    SourceError::Body { message, retryable }
}

/// Encoders and sinks wired together.
pub fn encoders_for(
    sinks: &[(Sink, crate::config::Format)],
    config: &crate::config::Config,
) -> (Vec<Encoder>, Vec<usize>) {
    let mut formats: Vec<crate::config::Format> = Vec::new();
    let mut index = Vec::new();
    for (_, f) in sinks {
        let i = match formats.iter().position(|x| x == f) {
            Some(i) => i,
            None => {
                formats.push(*f);
                formats.len() - 1
            }
        };
        index.push(i);
    }
    let options = crate::encode::Options {
        include_original: config.ecs.include_original,
        cef: config.cef.options(),
    };
    (formats.into_iter().map(|f| Encoder::new(f, &options)).collect(), index)
}
