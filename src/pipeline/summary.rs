//! What one poll cycle reports: its counts, the summary line in the log, and what the metrics
//! learn of it.

use crate::encode::EncodeCounters;
use crate::Error;
use std::time::Duration;

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
    /// The last attempt's listing body began to arrive: the vault answered it.
    pub answered: bool,
}

/// What the metrics need to know of a finished poll.
pub(super) fn poll_end(s: &CycleSummary, error: Option<&Error>) -> crate::telemetry::PollEnd {
    use crate::telemetry::Failed;
    crate::telemetry::PollEnd {
        duration: s.duration,
        new_events: s.counters.new_events,
        interrupted: s.interrupted,
        answered: s.answered,
        failed: error.map(|e| match e {
            Error::Source(_) => Failed::Source,
            _ => Failed::Other,
        }),
    }
}

/// The cycle's summary line (INFO), done or failed.
pub(super) fn log_summary(s: &CycleSummary, error: Option<&Error>) {
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
        // The error itself is logged once where it happens (WARN "Source down" / "Sink down",
        // or the exit error), so an outage does not repeat a WARN every cycle.
        Some(e) => tracing::info!(
            records = fields.0, new = fields.1, delivered = fields.2, known = fields.3,
            skipped_horizon = fields.4, bad = fields.5, bytes = s.bytes, attempts = s.attempts,
            duration_ms = s.duration.as_millis() as u64, failed = %failure_kind(e),
            "Poll cycle failed"
        ),
    }
}

fn failure_kind(e: &Error) -> &'static str {
    match e {
        Error::Source(_) => "source",
        Error::Sink(_) => "sink",
        Error::State(_) => "state",
        _ => "other",
    }
}
