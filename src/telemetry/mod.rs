//! Seeing the agent work: Prometheus metrics ([`metrics`]), the health model behind `/health`,
//! the HTTP endpoint ([`server`]), outages told as "down since / recovered" ([`outage`]) and
//! (librdkafka's log lines are deduplicated by the Kafka sink, `sink/kafka_log.rs`.)
//!
//! One [`Telemetry`] per agent, shared by the pipeline (poll results, records, commits), the
//! delivery (acknowledgements, retries) and the endpoint (which only reads it).

pub mod metrics;
pub mod outage;
pub mod server;

use crate::settings::{ConfigError, Expanded, HumanDuration};
use crate::source::senhasegura::SourceError;
use chrono::{DateTime, Utc};
use outage::{Outage, Transition};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use metrics::Metrics;

/// Health is lost when the last successful poll is older than this many intervals.
pub const HEALTHY_INTERVALS: u32 = 3;

/// `[metrics]`: the Prometheus and health endpoint.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` serving `/metrics` (Prometheus text format) and `/health` (JSON), e.g.
    /// `"127.0.0.1:9464"`. Unset: no endpoint. It has no authentication: keep it on loopback
    /// or a management network.
    #[serde(default)]
    pub listen: Option<Expanded>,
}

impl MetricsConfig {
    /// The address to listen on, checked.
    pub fn address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        listen
            .0
            .trim()
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|e| ConfigError::Invalid {
                key: "metrics.listen",
                message: format!(
                    "`{}` is not an IP address and port such as 127.0.0.1:9464 ({e})",
                    listen.0
                ),
            })
    }
}

/// `[log]`: how outages are logged.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// While the source or a sink stays down, repeat its "still down" line this often.
    #[serde(default = "default_outage_reminder")]
    pub outage_reminder: HumanDuration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            outage_reminder: default_outage_reminder(),
        }
    }
}

fn default_outage_reminder() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// A short, stable name of a source error for the `kind` label.
pub fn source_error_kind(e: &SourceError) -> &'static str {
    match e {
        SourceError::AuthRejected { .. } => "auth",
        SourceError::Token { .. } => "token",
        SourceError::NotAuthorized { .. } => "not_authorized",
        SourceError::NotFound { .. } => "not_found",
        SourceError::Server { .. } => "server",
        SourceError::Api { .. } => "api",
        SourceError::Listing { .. } => "listing",
        SourceError::Tls { .. } => "tls",
        SourceError::Network { .. } => "network",
        SourceError::Timeout { .. } => "timeout",
        SourceError::Body { .. } => "body",
        SourceError::Stalled { .. } => "stalled",
        SourceError::TokenTimeout { .. } => "timeout",
        SourceError::Redirect { .. } => "redirect",
        SourceError::BadUrl { .. } => "config",
    }
}

/// Labels for the sinks: their type, numbered from the second of a type on (`syslog`,
/// `syslog2`).
pub fn sink_labels(types: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for (i, t) in types.iter().enumerate() {
        let n = types[..i].iter().filter(|x| *x == t).count();
        out.push(if n == 0 { t.to_string() } else { format!("{t}{}", n + 1) });
    }
    out
}

#[derive(Debug, Default)]
struct Status {
    source: Option<Outage>,
    sinks: Vec<Option<Outage>>,
    last_success: Option<(Instant, DateTime<Utc>)>,
    poll_started: Option<Instant>,
}

/// The agent's counters, gauges and health, shared by everything that reports.
#[derive(Debug)]
pub struct Telemetry {
    /// The Prometheus metrics.
    pub metrics: Metrics,
    sinks: Vec<String>,
    status: Mutex<Status>,
    reminder: Duration,
    interval: Duration,
    timeout: Duration,
    started: Instant,
    cycle_new: AtomicU64,
    cycle_acked: AtomicU64,
}

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
    /// Telemetry for these sink labels, a poll interval and a listing timeout.
    pub fn new(sinks: Vec<String>, interval: Duration, timeout: Duration, reminder: Duration) -> Telemetry {
        let metrics = Metrics::new(&sinks);
        metrics.poll_interval.set(interval.as_secs_f64());
        Telemetry {
            metrics,
            status: Mutex::new(Status {
                sinks: vec![None; sinks.len()],
                ..Status::default()
            }),
            sinks,
            reminder,
            interval,
            timeout,
            started: Instant::now(),
            cycle_new: AtomicU64::new(0),
            cycle_acked: AtomicU64::new(0),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

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

    /// The sinks' labels, in order.
    pub fn sink_names(&self) -> &[String] {
        &self.sinks
    }

    fn waiting(&self) -> u64 {
        self.cycle_new
            .load(Ordering::Relaxed)
            .saturating_sub(self.cycle_acked.load(Ordering::Relaxed))
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
        if end.failed == Some(Failed::Source) {
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

    /// The health verdict and its JSON document.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let st = self.status();
        let now = Instant::now();
        let limit = self.interval * HEALTHY_INTERVALS;
        let mut reasons: Vec<String> = Vec::new();
        let polling_in_time = st
            .poll_started
            .is_some_and(|t| now.saturating_duration_since(t) <= self.timeout)
            && st.source.is_none();
        let age = st.last_success.map(|(t, _)| now.saturating_duration_since(t));
        match age {
            Some(a) if a <= limit || polling_in_time => {}
            Some(a) => reasons.push(format!(
                "no successful poll for {:.1}s (more than {HEALTHY_INTERVALS} intervals of {}s)",
                a.as_secs_f64(),
                self.interval.as_secs_f64()
            )),
            None if polling_in_time
                || (st.source.is_none() && now.saturating_duration_since(self.started) <= self.timeout) => {}
            None => reasons.push(format!(
                "no successful poll since the start {:.1}s ago",
                now.saturating_duration_since(self.started).as_secs_f64()
            )),
        }
        if let Some(o) = &st.source {
            if !reasons.is_empty() {
                reasons.push(format!("source down since {}: {}", rfc3339(o.since), o.error));
            }
        }
        let mut sinks = Vec::new();
        for (name, slot) in self.sinks.iter().zip(&st.sinks) {
            if let Some(o) = slot {
                reasons.push(format!("sink {name} failing since {}: {}", rfc3339(o.since), o.error));
            }
            sinks.push(serde_json::json!({
                "name": name,
                "up": slot.is_none(),
                "down_since": slot.as_ref().map(|o| rfc3339(o.since)),
                "failures": slot.as_ref().map_or(0, |o| o.failures),
                "error": slot.as_ref().map(|o| o.error.clone()),
            }));
        }
        let healthy = reasons.is_empty();
        let doc = serde_json::json!({
            "status": if healthy { "ok" } else { "unhealthy" },
            "reasons": reasons,
            "last_success": st.last_success.map(|(_, t)| rfc3339(t)),
            "last_success_age_seconds": age.map(|a| a.as_secs_f64()),
            "interval_seconds": self.interval.as_secs_f64(),
            "polling": st.poll_started.is_some(),
            "source": {
                "up": st.source.is_none(),
                "down_since": st.source.as_ref().map(|o| rfc3339(o.since)),
                "failures": st.source.as_ref().map_or(0, |o| o.failures),
                "error": st.source.as_ref().map(|o| o.error.clone()),
            },
            "sinks": sinks,
            "events_waiting": self.waiting(),
        });
        (healthy, doc)
    }
}

/// Start the endpoint when `[metrics] listen` is set, and read the store's kept key count
/// for `state_keys` (then kept current by commits and prunes).
pub fn start(
    config: &MetricsConfig,
    telemetry: &std::sync::Arc<Telemetry>,
    store: Option<std::sync::Arc<crate::state::SledStore>>,
) -> Result<(), crate::Error> {
    let Some(addr) = config.address()? else {
        return Ok(());
    };
    let bound = server::start(addr, telemetry.clone()).map_err(|e| ConfigError::Invalid {
        key: "metrics.listen",
        message: format!("cannot listen on {addr}: {e}"),
    })?;
    tracing::info!(
        address = %bound,
        "Serving metrics on http://{bound}/metrics and health on http://{bound}/health"
    );
    if !bound.ip().is_loopback() {
        tracing::warn!(address = %bound, "The metrics endpoint has no authentication and listens beyond loopback");
    }
    if let Some(store) = store {
        let t = telemetry.clone();
        // A kept count (a store from before it existed is counted once, in the background).
        tokio::task::spawn_blocking(move || match store.key_count() {
            Ok(keys) => t.metrics.state_keys.add(keys as i64),
            Err(e) => tracing::warn!(error = %e, "Cannot count the state's keys for the metrics"),
        });
    }
    Ok(())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now as Unix seconds.
pub fn unix_now() -> f64 {
    Utc::now().timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry() -> Telemetry {
        Telemetry::new(
            vec!["stdout".into(), "syslog".into()],
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn labels_number_repeated_types() {
        assert_eq!(
            sink_labels(&["syslog", "kafka", "syslog"]),
            ["syslog", "kafka", "syslog2"]
        );
    }

    #[test]
    fn healthy_after_a_poll_then_unhealthy_when_it_ages_then_a_failing_sink_is_named() {
        let t = telemetry();
        assert!(t.health().0, "within the first poll's timeout");
        t.poll_done(&PollEnd::default());
        assert!(t.health().0);
        std::thread::sleep(Duration::from_millis(350));
        let (ok, doc) = t.health();
        assert!(!ok);
        assert!(
            doc["reasons"][0].as_str().unwrap().contains("no successful poll"),
            "{doc}"
        );
        t.poll_done(&PollEnd::default());
        assert!(t.health().0);
        t.sink_failed(1, &"connection refused");
        let (ok, doc) = t.health();
        assert!(!ok);
        assert!(
            doc["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("sink syslog failing since"),
            "{doc}"
        );
        assert_eq!(doc["sinks"][1]["up"], false);
        t.sink_acked(1, 1, 0);
        assert!(t.health().0);
    }

    #[test]
    fn waiting_counts_found_minus_acknowledged() {
        let t = telemetry();
        t.attempt_started();
        let found = RecordCounts {
            new: 5,
            ..RecordCounts::default()
        };
        t.records(&found, 100);
        t.acked(2);
        assert_eq!(t.health().1["events_waiting"], 3);
        assert_eq!(t.metrics.events_waiting.get(), 3);
    }
}
