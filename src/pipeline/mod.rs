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

mod deliver;
mod filter;

use crate::encode::{EncodeCounters, Encoder};
use crate::event::Origin;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::senhasegura::{from_reqwest, SourceError, VaultClient};
use crate::state::{Dedup, Delivered, StateError};
use crate::Error;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use deliver::{DeliveryPolicy, SinkSet};

/// Batches waiting for delivery (bounds memory).
const BATCH_QUEUE: usize = 4;
/// Body chunks waiting for the filter.
const CHUNK_QUEUE: usize = 32;
/// Acknowledged keys are committed (apply + fsync) once this many are pending...
const COMMIT_KEYS: usize = 10_000;
/// ...or this long after the previous commit, whichever comes first, and at the cycle's end.
const COMMIT_EVERY: Duration = Duration::from_millis(500);

async fn commit_keys(store: &Arc<dyn Dedup>, keys: Vec<Delivered>) -> Result<(), Error> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.commit(&keys))
        .await
        .map_err(|e| StateError::Io(format!("commit task failed: {e}")))??;
    Ok(())
}

/// Per-cycle counts, for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Records read from the listing.
    pub records: u64,
    /// New events found.
    pub new_events: u64,
    /// Events skipped because the store knows them.
    pub known: u64,
    /// Events skipped because they are older than the horizon.
    pub horizon_skipped: u64,
    /// Records that could not be used.
    pub bad: u64,
    /// Events delivered and committed.
    pub delivered: u64,
}

/// Live progress of the current listing (for the interactive progress line).
#[derive(Debug, Default)]
pub struct Progress {
    /// Body bytes scanned.
    pub bytes: AtomicU64,
    /// Records scanned.
    pub records: AtomicU64,
}

/// Encoded events on their way to the sinks: one payload buffer per encoder.
#[derive(Debug)]
pub struct Batch {
    metas: Vec<crate::sink::EventMeta>,
    payloads: Vec<Vec<u8>>,
    ranges: Vec<Vec<(usize, usize)>>,
}

impl Batch {
    fn new(encoders: usize) -> Batch {
        Batch {
            metas: Vec::new(),
            payloads: vec![Vec::new(); encoders],
            ranges: vec![Vec::new(); encoders],
        }
    }
}

/// The result of one cycle.
#[derive(Debug, Default, Clone)]
pub struct CycleSummary {
    /// Counts.
    pub counters: Counters,
    /// Encoder counts.
    pub encode: EncodeCounters,
    /// Body bytes read.
    pub bytes: u64,
    /// Wall time.
    pub duration: Duration,
    /// Listing attempts (1 + retries).
    pub attempts: u32,
    /// Shutdown interrupted the cycle.
    pub interrupted: bool,
}

/// How the pipeline retries the source.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First delay.
    pub backoff: Duration,
    /// Longest delay.
    pub backoff_max: Duration,
}

/// Exponential backoff with full jitter in [d/2, d].
pub fn backoff_delay(attempt: u32, first: Duration, max: Duration) -> Duration {
    let exp = first.saturating_mul(1u32 << attempt.min(20)).min(max);
    let half = exp / 2;
    half + half.mul_f64(rand::random::<f64>())
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
        let mut total = CycleSummary::default();
        let mut attempt = 0;
        loop {
            total.attempts = attempt + 1;
            let result = self.attempt(horizon, shutdown, &mut total).await;
            match result {
                Ok(()) => break,
                Err(Error::Source(e)) if e.is_retryable() && attempt < self.retry.retries && !shutdown.is_fired() => {
                    let delay = backoff_delay(attempt, self.retry.backoff, self.retry.backoff_max);
                    tracing::warn!(error = %e, attempt = attempt + 1, retry_in_ms = delay.as_millis() as u64, "Listing failed; retrying");
                    let mut sd = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = sd.wait() => { total.interrupted = true; break; }
                    }
                    attempt += 1;
                }
                Err(e) => {
                    total.duration = started.elapsed();
                    log_summary(&total, Some(&e));
                    return Err(e);
                }
            }
        }
        total.duration = started.elapsed();
        log_summary(&total, None);
        Ok(total)
    }

    async fn attempt(
        &mut self,
        horizon: chrono::DateTime<chrono::Utc>,
        shutdown: &Shutdown,
        total: &mut CycleSummary,
    ) -> Result<(), Error> {
        // SIGTERM does not wait for a vault that is slow to answer (token or listing headers).
        let mut sd = shutdown.clone();
        let response = tokio::select! {
            r = self.client.open_listing() => r?,
            _ = sd.wait() => {
                total.interrupted = true;
                return Ok(());
            }
        };
        let timeout = self.client.timeout();
        let (chunk_tx, chunk_rx) = mpsc::channel(CHUNK_QUEUE);
        let (batch_tx, mut batch_rx) = mpsc::channel(BATCH_QUEUE);
        self.progress.bytes.store(0, Ordering::Relaxed);
        self.progress.records.store(0, Ordering::Relaxed);
        let input = filter::FilterInput {
            chunks: chunk_rx,
            batches: batch_tx,
            store: self.store.clone(),
            encoders: self.sinks.encoders.clone(),
            origin: self.origin.clone(),
            horizon,
            batch_size: self.batch_size,
            keep_original: self.keep_original,
            progress: self.progress.clone(),
        };
        let filter = tokio::task::spawn_blocking(move || filter::run(input));

        let mut sd = shutdown.clone();
        let read = async move {
            let mut stream = response.bytes_stream();
            loop {
                tokio::select! {
                    next = stream.next() => match next {
                        Some(Ok(chunk)) => {
                            if chunk_tx.send(chunk).await.is_err() {
                                return Ok(false);
                            }
                        }
                        Some(Err(e)) => return Err(from_reqwest(&e, timeout)),
                        None => return Ok(false),
                    },
                    _ = chunk_tx.closed() => return Ok(false),
                    _ = sd.wait() => return Ok(true),
                }
            }
        };
        let commit = self.commit;
        let store = self.store.clone();
        let sinks = &mut self.sinks;
        let deliver = async {
            let mut delivered = 0u64;
            let mut pending: Vec<Delivered> = Vec::new();
            let mut since = Instant::now();
            let result = loop {
                let Some(batch) = batch_rx.recv().await else {
                    break Ok(());
                };
                if let Err(e) = sinks.deliver(&batch, shutdown).await {
                    break Err(e);
                }
                delivered += batch.metas.len() as u64;
                if commit {
                    pending.extend(deliver::delivered_keys(&batch));
                    if pending.len() >= COMMIT_KEYS || since.elapsed() >= COMMIT_EVERY {
                        commit_keys(&store, std::mem::take(&mut pending)).await?;
                        since = Instant::now();
                    }
                }
            };
            // What was acknowledged is committed even when a later batch failed.
            if !pending.is_empty() {
                commit_keys(&store, pending).await?;
            }
            result.map(|()| delivered)
        };
        let (read_result, deliver_result) = tokio::join!(read, deliver);
        let outcome = filter
            .await
            .map_err(|e| StateError::Io(format!("filter task failed: {e}")))?;
        total.bytes += self.progress.bytes.load(Ordering::Relaxed);
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
        if let Some(e) = outcome.state_error {
            return Err(e.into());
        }
        let interrupted = read_result?;
        if interrupted {
            total.interrupted = true;
            return Ok(());
        }
        if let Some(message) = outcome.api_error {
            return Err(SourceError::Listing { message }.into());
        }
        match outcome.scan {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                let retryable = matches!(e, crate::source::senhasegura::stream::ScanError::Incomplete { .. });
                Err(SourceError::Body {
                    message: e.to_string(),
                    retryable,
                }
                .into())
            }
            None => Ok(()),
        }
    }
}

fn log_summary(s: &CycleSummary, error: Option<&Error>) {
    let c = &s.counters;
    let fields = (c.records, c.new_events, c.delivered, c.known, c.horizon_skipped, c.bad);
    match error {
        None => tracing::info!(
            records = fields.0,
            new = fields.1,
            delivered = fields.2,
            known = fields.3,
            skipped_horizon = fields.4,
            bad = fields.5,
            partial = s.encode.partial,
            truncated = s.encode.truncated,
            bytes = s.bytes,
            attempts = s.attempts,
            interrupted = s.interrupted,
            duration_ms = s.duration.as_millis() as u64,
            "Poll cycle done"
        ),
        Some(e) => tracing::error!(
            records = fields.0, new = fields.1, delivered = fields.2, known = fields.3,
            skipped_horizon = fields.4, bad = fields.5, bytes = s.bytes, attempts = s.attempts,
            duration_ms = s.duration.as_millis() as u64, error = %e,
            "Poll cycle failed"
        ),
    }
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
    (formats.into_iter().map(|f| Encoder::new(f, config)).collect(), index)
}
