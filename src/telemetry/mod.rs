//! Seeing the agent work: Prometheus metrics ([`metrics`]), the health model behind `/health`
//! (`health.rs`), the HTTP endpoint ([`server`]), outages told as "down since / recovered"
//! ([`outage`]) and (librdkafka's log lines are deduplicated by the Kafka sink,
//! `sink/kafka_log.rs`.)
//!
//! One [`Telemetry`] per agent, shared by the pipeline (poll results, records, commits), the
//! delivery (acknowledgements, retries) and the endpoint (which only reads it); what they
//! report and how it is counted is `report.rs`, the configuration sections `config.rs`. This
//! file holds the shared state, the labels and the endpoint's start.

mod config;
mod health;
pub mod metrics;
pub mod outage;
mod report;
pub mod server;

use crate::settings::ConfigError;
use crate::source::senhasegura::SourceError;
use chrono::{DateTime, Utc};
use outage::Outage;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use config::{LogConfig, MetricsConfig};
pub use metrics::Metrics;
pub use report::{Failed, PollEnd, RecordCounts};

/// Health is lost when the last successful poll is older than this many intervals.
pub const HEALTHY_INTERVALS: u32 = 3;

/// A short, stable name of a source error for the `kind` label.
pub fn source_error_kind(e: &SourceError) -> &'static str {
    match e {
        SourceError::AuthRejected { .. } => "auth",
        SourceError::Token { .. } => "token",
        SourceError::NotAuthorized { .. } => "not_authorized",
        SourceError::NotFound { .. } | SourceError::TokenNotFound { .. } => "not_found",
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

    /// The telemetry of a reloaded config: the same metrics (their series for these sinks, see
    /// [`Metrics::for_sinks`]), and the same health: the last success, the source's outage and
    /// the outage of every sink that stays (by label) carry over, so a reload neither resets
    /// `/health` nor repeats a "down" line. Built between polls (nothing is in flight).
    pub fn reconfigured(
        &self,
        sinks: Vec<String>,
        interval: Duration,
        timeout: Duration,
        reminder: Duration,
    ) -> Telemetry {
        let metrics = self.metrics.for_sinks(&self.sinks, &sinks);
        metrics.poll_interval.set(interval.as_secs_f64());
        let st = self.status();
        let status = Status {
            source: st.source.clone(),
            sinks: sinks
                .iter()
                .map(|s| {
                    let old = self.sinks.iter().position(|o| o == s);
                    old.and_then(|i| st.sinks.get(i).cloned().flatten())
                })
                .collect(),
            last_success: st.last_success,
            poll_started: None,
        };
        Telemetry {
            metrics,
            status: Mutex::new(status),
            sinks,
            reminder,
            interval,
            timeout,
            started: self.started,
            cycle_new: AtomicU64::new(0),
            cycle_acked: AtomicU64::new(0),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting(&self) -> u64 {
        self.cycle_new
            .load(Ordering::Relaxed)
            .saturating_sub(self.cycle_acked.load(Ordering::Relaxed))
    }
}

/// Start the endpoint when `[metrics] listen` is set, and read the store's kept key count
/// for `state_keys` (then kept current by commits and prunes). Returns what the endpoint
/// serves, to be replaced on reload.
pub fn start(
    config: &MetricsConfig,
    telemetry: &std::sync::Arc<Telemetry>,
    store: Option<std::sync::Arc<crate::state::SledStore>>,
) -> Result<Option<std::sync::Arc<server::Served>>, crate::Error> {
    let Some(addr) = config.address()? else {
        return Ok(None);
    };
    let served = std::sync::Arc::new(server::Served::new(telemetry.clone()));
    let bound = server::start(addr, served.clone()).map_err(|e| ConfigError::Invalid {
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
    Ok(Some(served))
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
