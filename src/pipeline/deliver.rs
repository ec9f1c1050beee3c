//! Delivery: fan one batch out to every sink, concurrently, and retry the sinks that did not
//! acknowledge (only those: a sink that acknowledged is not sent the batch again) with
//! backoff. Returns only when all acknowledged, when a sink is closed for good, when the
//! give-up time of `once` passed, or when shutdown or a reload abandons the batch (never
//! committed).

use super::{backoff_delay, Batch};
use crate::encode::Encoder;
use crate::key::{EventKey, Phase};
use crate::shutdown::Shutdown;
use crate::sink::{Frame, Sink, SinkError};
use crate::state::Delivered;
use crate::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long and how often delivery retries.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// First retry delay.
    pub backoff: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Give up after this long (`once`); `None` retries until shutdown (`run`).
    pub give_up_after: Option<Duration>,
}

/// The configured sinks with the encoder each one reads.
pub struct SinkSet {
    /// The sinks.
    pub sinks: Vec<Sink>,
    /// Index into `encoders` for each sink.
    pub encoder_of: Vec<usize>,
    /// One encoder per distinct format.
    pub encoders: Arc<Vec<Encoder>>,
    /// Retry policy.
    pub policy: DeliveryPolicy,
    /// Per-sink counters, outages and health.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// `run`'s SIGHUP, watched from the poll's start: a reload requested while a sink fails
    /// abandons the batch, so that the new configuration (a fixed sink address, say) applies
    /// now instead of after a poll that cannot end while the sink is down.
    pub reload: Option<crate::shutdown::Reload>,
    /// Nanoseconds spent on failed delivery rounds and their retry waits: the time a failing
    /// sink held the poll up, which the listing's `source.timeout` does not count.
    pub failing_time: Arc<std::sync::atomic::AtomicU64>,
}

/// The keys of a delivered batch, moved out of it (the batch is refilled next), except those a
/// sink refused for good (`rejected`): they were not delivered.
pub fn take_delivered(batch: &mut Batch, rejected: &[EventKey], into: &mut Vec<Delivered>) {
    let starts = batch.starts.drain(..);
    into.extend(
        batch
            .metas
            .drain(..)
            .zip(starts)
            .filter(|(m, _)| !rejected.contains(&m.key))
            .map(|(m, start)| Delivered {
                key: m.key,
                time: m.time,
                start,
            }),
    );
}

impl SinkSet {
    /// Close every sink's connections (at exit).
    pub async fn close(&mut self) {
        for sink in &mut self.sinks {
            sink.close().await;
        }
    }

    /// Deliver `batch` to every sink; `Ok` once all acknowledged, with the keys some sink
    /// refused for good (each logged here; they are not delivered, so not committed, and come
    /// again with the next poll).
    pub async fn deliver(&mut self, batch: &Batch, shutdown: &Shutdown) -> Result<Vec<EventKey>, Error> {
        let frames: Vec<Vec<Frame<'_>>> = (0..self.encoders.len())
            .map(|e| {
                batch
                    .metas
                    .iter()
                    .zip(&batch.ranges[e])
                    .map(|(meta, &(s, t))| Frame {
                        meta,
                        payload: &batch.payloads[e][s..t],
                    })
                    .collect()
            })
            .collect();
        let starts = batch.metas.iter().filter(|m| m.key.phase() == Phase::Start).count() as u64;
        let ends = batch.metas.len() as u64 - starts;
        let telemetry = self.telemetry.clone();
        let mut acked = vec![false; self.sinks.len()];
        let mut rejected: Vec<EventKey> = Vec::new();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let round = Instant::now();
            let pending = self
                .sinks
                .iter_mut()
                .zip(&self.encoder_of)
                .zip(acked.iter())
                .filter(|(_, done)| !**done);
            let results = futures_util::future::join_all(pending.map(|((sink, &e), _)| {
                let frames = &frames[e];
                async move { (sink.name(), sink.deliver(frames).await) }
            }))
            .await;
            let mut last_error = None;
            let mut failing = Vec::new();
            let mut results = results.into_iter();
            for (i, done) in acked.iter_mut().enumerate().filter(|(_, d)| !**d) {
                let (name, result) = results.next().expect("one result per pending sink");
                match result {
                    Ok(()) => {
                        *done = true;
                        let (mut s, mut e) = (starts, ends);
                        for (key, why) in self.sinks.get_mut(i).map(Sink::take_rejected).unwrap_or_default() {
                            tracing::error!(
                                sink = name,
                                session_id = %crate::settings::excerpt(key.session_id()),
                                phase = key.phase().as_str(),
                                reason = %why,
                                "Event refused by the sink for good: not delivered, not marked sent; it comes again with the next poll"
                            );
                            match key.phase() {
                                Phase::Start => s = s.saturating_sub(1),
                                Phase::End => e = e.saturating_sub(1),
                            }
                            if !rejected.contains(&key) {
                                rejected.push(key);
                            }
                        }
                        telemetry.sink_acked(i, s, e);
                    }
                    Err(e @ (SinkError::Closed { .. } | SinkError::Rejected { .. })) => {
                        telemetry.sink_failed(i, &e);
                        return Err(e.into());
                    }
                    Err(e) => {
                        telemetry.sink_failed(i, &e);
                        failing.push(i);
                        last_error = Some((name, e));
                    }
                }
            }
            let Some((name, error)) = last_error else {
                telemetry.acked(batch.metas.len().saturating_sub(rejected.len()) as u64);
                return Ok(rejected);
            };
            if let Some(limit) = self.policy.give_up_after {
                if started.elapsed() >= limit {
                    return Err(SinkError::GaveUp {
                        sink: name,
                        seconds: limit.as_secs(),
                        message: error.to_string(),
                    }
                    .into());
                }
            }
            for &i in &failing {
                telemetry.sink_retry(i);
            }
            let delay = backoff_delay(attempt, self.policy.backoff, self.policy.backoff_max);
            let mut sd = shutdown.clone();
            let mut reload = self.reload.clone();
            let reload_requested = async {
                match reload.as_mut() {
                    Some(r) => r.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {
                    let failed = u64::try_from(round.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.failing_time.fetch_add(failed, std::sync::atomic::Ordering::AcqRel);
                }
                _ = sd.wait() => {
                    tracing::warn!(sink = name, events = batch.metas.len(), "Shutdown: abandoning a batch the sink has not acknowledged; it is not marked sent");
                    return Err(SinkError::Failed { sink: name, message: format!("abandoned at shutdown: {error}") }.into());
                }
                _ = reload_requested => {
                    tracing::warn!(sink = name, events = batch.metas.len(), "Reload requested while the sink fails: abandoning a batch it has not acknowledged (not marked sent; the next poll reads it again) to apply the new configuration now");
                    return Err(SinkError::Failed { sink: name, message: format!("abandoned for a reload: {error}") }.into());
                }
            }
            attempt += 1;
        }
    }
}
