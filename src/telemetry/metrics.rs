//! The Prometheus registry and every metric the agent exports. The names are a contract that
//! dashboards and alert rules rely on (`packaging/prometheus/`): rename nothing.
//!
//! Hot paths hold pre-resolved handles (one atomic add each); the filter thread publishes its
//! counts once per body chunk, not per record.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric name starts with this.
pub const PREFIX: &str = "senhasegura_forwarder_";

/// The `kind` values of `source_errors_total` (see `telemetry::source_error_kind`), exported
/// at 0 from the start so that `increase()` works from the first error on.
pub const SOURCE_ERROR_KINDS: &[&str] = &[
    "auth",
    "token",
    "not_authorized",
    "not_found",
    "server",
    "api",
    "listing",
    "tls",
    "network",
    "timeout",
    "body",
];

/// Poll duration buckets, in seconds (a poll of a huge listing takes minutes).
const POLL_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The agent's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `events_delivered_total{sink,phase}`, per sink: `[start, end]`.
    pub delivered: Vec<[IntCounter; 2]>,
    /// `records_total{outcome="new"}`.
    pub records_new: IntCounter,
    /// `records_total{outcome="known"}`.
    pub records_known: IntCounter,
    /// `records_total{outcome="horizon"}`.
    pub records_horizon: IntCounter,
    /// `records_total{outcome="bad"}`.
    pub records_bad: IntCounter,
    /// `polls_total{result="ok"}`.
    pub polls_ok: IntCounter,
    /// `polls_total{result="error"}`.
    pub polls_error: IntCounter,
    /// `last_success_timestamp_seconds`.
    pub last_success: Gauge,
    /// `poll_duration_seconds`.
    pub poll_duration: Histogram,
    /// `poll_interval_seconds` (for alert rules: "no success for N intervals").
    pub poll_interval: Gauge,
    /// `listing_bytes_total`.
    pub listing_bytes: IntCounter,
    /// `source_errors_total{kind}`.
    pub source_errors: IntCounterVec,
    /// `source_up` (1 while the last listing attempt succeeded).
    pub source_up: IntGauge,
    /// `sink_retries_total{sink}`, per sink.
    pub sink_retries: Vec<IntCounter>,
    /// `sink_up{sink}`, per sink.
    pub sink_up: Vec<IntGauge>,
    /// `events_waiting`: events of the current poll found but not yet acknowledged by all sinks.
    pub events_waiting: IntGauge,
    /// `events_in_future_total`: records whose time is more than 5 minutes ahead of the clock.
    pub events_in_future: IntCounter,
    /// `state_keys`.
    pub state_keys: IntGauge,
    /// `state_horizon_timestamp_seconds`.
    pub state_horizon: Gauge,
    /// `state_last_commit_timestamp_seconds`.
    pub state_last_commit: Gauge,
    /// The families of the per-sink series above, for [`Metrics::for_sinks`].
    sink_families: SinkFamilies,
}

/// The metrics labelled by sink.
#[derive(Clone)]
struct SinkFamilies {
    delivered: IntCounterVec,
    retries: IntCounterVec,
    up: IntGaugeVec,
}

/// The series of each sink, in order: `delivered` (`[start, end]`), `retries`, `up`.
type SinkSeries = (Vec<[IntCounter; 2]>, Vec<IntCounter>, Vec<IntGauge>);

impl SinkFamilies {
    /// The series of `sinks`. Those not in `kept` start up (nothing failed yet), their retries
    /// exported at 0 so that `rate()` and alerts see them before the first retry.
    fn series(&self, sinks: &[String], kept: &[String]) -> SinkSeries {
        let delivered = sinks
            .iter()
            .map(|s| {
                [
                    self.delivered.with_label_values(&[s.as_str(), "start"]),
                    self.delivered.with_label_values(&[s.as_str(), "end"]),
                ]
            })
            .collect();
        let retries: Vec<IntCounter> = sinks
            .iter()
            .map(|s| self.retries.with_label_values(&[s.as_str()]))
            .collect();
        let up: Vec<IntGauge> = sinks.iter().map(|s| self.up.with_label_values(&[s.as_str()])).collect();
        for ((name, u), r) in sinks.iter().zip(&up).zip(&retries) {
            if !kept.contains(name) {
                u.set(1);
                r.inc_by(0);
            }
        }
        (delivered, retries, up)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn name(short: &str) -> String {
    format!("{PREFIX}{short}")
}

/// The one way metrics are created: register or report the (programming) error and go on
/// with an unregistered metric, so a metrics problem never stops delivery.
fn reg<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    if let Err(e) = registry.register(Box::new(m.clone())) {
        tracing::error!(error = %e, "Cannot register a metric");
    }
    m
}

fn counter(r: &Registry, short: &str, help: &str) -> IntCounter {
    reg(
        r,
        IntCounter::with_opts(Opts::new(name(short), help)).expect("a valid constant metric name"),
    )
}

fn gauge(r: &Registry, short: &str, help: &str) -> Gauge {
    reg(
        r,
        Gauge::with_opts(Opts::new(name(short), help)).expect("a valid constant metric name"),
    )
}

fn int_gauge(r: &Registry, short: &str, help: &str) -> IntGauge {
    reg(
        r,
        IntGauge::with_opts(Opts::new(name(short), help)).expect("a valid constant metric name"),
    )
}

fn counter_vec(r: &Registry, short: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name(short), help), labels).expect("a valid constant metric name"),
    )
}

impl Metrics {
    /// The registry with every metric, for these sink labels.
    pub fn new(sinks: &[String]) -> Metrics {
        let r = Registry::new();
        let delivered = counter_vec(
            &r,
            "events_delivered_total",
            "Events acknowledged by each sink, by phase.",
            &["sink", "phase"],
        );
        let records = counter_vec(
            &r,
            "records_total",
            "Listing records by outcome: new event, known event, older than the horizon, bad record.",
            &["outcome"],
        );
        let polls = counter_vec(&r, "polls_total", "Poll cycles by result.", &["result"]);
        let retries = counter_vec(
            &r,
            "sink_retries_total",
            "Batches a sink did not acknowledge and that will be resent.",
            &["sink"],
        );
        let sink_up = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(name("sink_up"), "1 while the sink acknowledges, 0 while it fails."),
                &["sink"],
            )
            .expect("a valid constant metric name"),
        );
        let build = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(name("build_info"), "The agent's version (always 1)."),
                &["version"],
            )
            .expect("a valid constant metric name"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let poll_duration = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    name("poll_duration_seconds"),
                    "Wall time of a poll cycle, retries included.",
                )
                .buckets(POLL_BUCKETS.to_vec()),
            )
            .expect("a valid constant metric name"),
        );
        let sink_families = SinkFamilies {
            delivered,
            retries,
            up: sink_up,
        };
        let (delivered, sink_retries, sink_up) = sink_families.series(sinks, &[]);
        let m = Metrics {
            delivered,
            records_new: records.with_label_values(&["new"]),
            records_known: records.with_label_values(&["known"]),
            records_horizon: records.with_label_values(&["horizon"]),
            records_bad: records.with_label_values(&["bad"]),
            polls_ok: polls.with_label_values(&["ok"]),
            polls_error: polls.with_label_values(&["error"]),
            last_success: gauge(
                &r,
                "last_success_timestamp_seconds",
                "Unix time of the end of the last successful poll (0: none yet).",
            ),
            poll_duration,
            poll_interval: gauge(&r, "poll_interval_seconds", "The configured source.interval."),
            listing_bytes: counter(&r, "listing_bytes_total", "Listing body bytes read."),
            source_errors: counter_vec(
                &r,
                "source_errors_total",
                "Failed listing attempts by kind (token, auth, network, timeout, server, ...).",
                &["kind"],
            ),
            source_up: int_gauge(&r, "source_up", "1 while the vault answers, 0 while it fails."),
            sink_retries,
            sink_up,
            events_waiting: int_gauge(
                &r,
                "events_waiting",
                "New events of the current poll not yet acknowledged by every sink.",
            ),
            events_in_future: counter(
                &r,
                "events_in_future_total",
                "Records more than 5 minutes ahead of the agent's clock (source.timezone wrong?).",
            ),
            state_keys: int_gauge(&r, "state_keys", "Keys in the dedup store."),
            state_horizon: gauge(
                &r,
                "state_horizon_timestamp_seconds",
                "Events older than this Unix time are skipped without a lookup.",
            ),
            state_last_commit: gauge(
                &r,
                "state_last_commit_timestamp_seconds",
                "Unix time of the last commit of delivered keys (0: none since start).",
            ),
            registry: r,
            sink_families,
        };
        m.source_up.set(1);
        // Present from the start, so rate() and alerts see them before the first event.
        for k in SOURCE_ERROR_KINDS {
            m.source_errors.with_label_values(&[k]).inc_by(0);
        }
        m
    }

    /// The same registry and series for another set of sinks (a reload): every metric not
    /// labelled by sink goes on counting; a sink that stays keeps its series; a sink that is
    /// gone leaves the scrape (Prometheus marks its series stale); a new one starts up, at 0.
    pub fn for_sinks(&self, old: &[String], sinks: &[String]) -> Metrics {
        let f = &self.sink_families;
        for gone in old.iter().filter(|s| !sinks.contains(s)) {
            for phase in ["start", "end"] {
                let _ = f.delivered.remove_label_values(&[gone.as_str(), phase]);
            }
            let _ = f.retries.remove_label_values(&[gone.as_str()]);
            let _ = f.up.remove_label_values(&[gone.as_str()]);
        }
        let (delivered, sink_retries, sink_up) = f.series(sinks, old);
        Metrics {
            delivered,
            sink_retries,
            sink_up,
            ..self.clone()
        }
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "Cannot encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_contract_name() {
        let m = Metrics::new(&["stdout".into(), "syslog".into()]);
        m.delivered[1][0].inc_by(3);
        m.source_errors.with_label_values(&["network"]).inc();
        m.poll_duration.observe(0.3);
        let text = String::from_utf8(m.render()).unwrap();
        for n in [
            "events_delivered_total{phase=\"start\",sink=\"syslog\"} 3",
            "records_total{outcome=\"bad\"} 0",
            "polls_total{result=\"ok\"} 0",
            "last_success_timestamp_seconds 0",
            "poll_duration_seconds_bucket{le=\"0.5\"} 1",
            "listing_bytes_total 0",
            "source_errors_total{kind=\"network\"} 1",
            "sink_retries_total{sink=\"stdout\"} 0",
            "state_keys 0",
            "build_info{version=\"",
        ] {
            assert!(text.contains(&format!("{PREFIX}{n}")), "{n} missing in\n{text}");
        }
    }
}
