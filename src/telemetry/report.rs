//! What the pipeline, the filter and the delivery report: polls, records, commits and sink
//! results, turned into counters, gauges and outage log lines ("down since / recovered").

use super::outage::{self, Transition};
use super::{source_error_kind, unix_now, Telemetry};
use crate::source::senhasegura::SourceError;
use chrono::Utc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Records of a listing by what became of them (deltas, for the counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordCounts {
    /// New events.
    pub new: u64,
    /// Known to the store.
    pub known: u64,
    /// Older than the horizon.
    pub horizon: u64,
    /// Bad records.
    pub bad: u64,
}

/// How a poll ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollEnd {
    /// Its wall time, retries included.
    pub duration: Duration,
    /// New events it found.
    pub new_events: u64,
    /// Shutdown interrupted it.
    pub interrupted: bool,
    /// The listing's body began to arrive: the vault answered this poll.
    pub answered: bool,
    /// Why it failed, if it did.
    pub failed: Option<Failed>,
}

/// What made a poll fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The vault could not be read.
    Source,
    /// Anything else (a sink, the store).
    Other,
}

impl Telemetry {
    /// A poll cycle starts.
    pub fn poll_started(&self) {
        self.status().poll_started = Some(Instant::now());
    }

    /// A listing attempt starts: the waiting count restarts.
    pub fn attempt_started(&self) {
        self.cycle_new.store(0, Ordering::Relaxed);
        self.cycle_acked.store(0, Ordering::Relaxed);
        self.metrics.events_waiting.set(0);
    }

    /// The filter read `bytes` more of the listing and classified records (deltas).
    pub fn records(&self, delta: &RecordCounts, bytes: u64) {
        let m = &self.metrics;
        m.records_new.inc_by(delta.new);
        m.records_known.inc_by(delta.known);
        m.records_horizon.inc_by(delta.horizon);
        m.records_bad.inc_by(delta.bad);
        m.listing_bytes.inc_by(bytes);
        if delta.new > 0 {
            self.cycle_new.fetch_add(delta.new, Ordering::Relaxed);
            m.events_waiting.set(self.waiting() as i64);
        }
    }

    /// Every sink acknowledged `n` events.
    pub fn acked(&self, n: u64) {
        self.cycle_acked.fetch_add(n, Ordering::Relaxed);
        self.metrics.events_waiting.set(self.waiting() as i64);
    }

    /// `n` keys were committed to the store.
    pub fn committed(&self, n: usize) {
        self.metrics.state_keys.add(n as i64);
        self.metrics.state_last_commit.set(unix_now());
    }

    /// The listing attempt failed.
    pub fn source_failed(&self, e: &SourceError) {
        self.metrics
            .source_errors
            .with_label_values(&[source_error_kind(e)])
            .inc();
        self.metrics.source_up.set(0);
        let mut st = self.status();
        let transition = outage::fail(&mut st.source, e.to_string(), Instant::now(), self.reminder);
        let Some(o) = st.source.as_ref() else { return };
        let since = o.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match transition {
            Transition::Down => tracing::warn!(since = %since, error = %e, "Source down: the vault cannot be read"),
            Transition::Reminder => tracing::warn!(
                since = %since,
                failures = o.failures,
                down_s = outage::secs(Utc::now().signed_duration_since(o.since).to_std().unwrap_or_default()),
                error = %e,
                "Source still down"
            ),
            _ => tracing::debug!(error = %e, "Source still down"),
        }
    }

    /// A poll ended.
    pub fn poll_done(&self, end: &PollEnd) {
        let m = &self.metrics;
        m.poll_duration.observe(end.duration.as_secs_f64());
        let mut st = self.status();
        st.poll_started = None;
        // A source error, or a stop before the vault answered (in a retry's wait, say): this
        // poll learned nothing new of the source, so no "recovered".
        if end.failed == Some(Failed::Source) || (end.interrupted && !end.answered) {
            m.polls_error.inc();
            return;
        }
        m.source_up.set(1);
        if let Transition::Recovered { down_for, failures } = outage::recover(&mut st.source, Instant::now()) {
            tracing::info!(
                down_s = outage::secs(down_for),
                failed_attempts = failures,
                events_waited = end.new_events,
                "Source recovered"
            );
        }
        if end.failed.is_some() || end.interrupted {
            m.polls_error.inc();
            return;
        }
        m.polls_ok.inc();
        m.last_success.set(unix_now());
        st.last_success = Some((Instant::now(), Utc::now()));
    }

    /// Sink `i` did not acknowledge a batch.
    pub fn sink_failed(&self, i: usize, e: &dyn std::fmt::Display) {
        if let Some(up) = self.metrics.sink_up.get(i) {
            up.set(0);
        }
        let name = self.sinks.get(i).map(String::as_str).unwrap_or("?");
        let waiting = self.waiting();
        let mut st = self.status();
        let Some(slot) = st.sinks.get_mut(i) else { return };
        let transition = outage::fail(slot, e.to_string(), Instant::now(), self.reminder);
        let Some(o) = slot.as_ref() else { return };
        let since = o.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match transition {
            Transition::Down => {
                tracing::warn!(sink = name, since = %since, events_waiting = waiting, error = %e, "Sink down: events wait until it acknowledges")
            }
            Transition::Reminder => tracing::warn!(
                sink = name,
                since = %since,
                failures = o.failures,
                events_waiting = waiting,
                error = %e,
                "Sink still down"
            ),
            _ => tracing::debug!(sink = name, error = %e, "Sink did not acknowledge; will retry"),
        }
    }

    /// A failed batch of sink `i` will be sent again.
    pub fn sink_retry(&self, i: usize) {
        if let Some(c) = self.metrics.sink_retries.get(i) {
            c.inc();
        }
    }

    /// Sink `i` acknowledged a batch of `start` + `end` events.
    pub fn sink_acked(&self, i: usize, start: u64, end: u64) {
        if let Some([s, e]) = self.metrics.delivered.get(i) {
            s.inc_by(start);
            e.inc_by(end);
        }
        let mut st = self.status();
        let Some(slot) = st.sinks.get_mut(i) else { return };
        if slot.is_none() {
            return;
        }
        if let Some(up) = self.metrics.sink_up.get(i) {
            up.set(1);
        }
        if let Transition::Recovered { down_for, failures } = outage::recover(slot, Instant::now()) {
            tracing::info!(
                sink = self.sinks.get(i).map(String::as_str).unwrap_or("?"),
                down_s = outage::secs(down_for),
                failed_attempts = failures,
                events_waited = self.waiting(),
                "Sink recovered"
            );
        }
    }
}
