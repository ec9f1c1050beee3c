//! The health model behind `/health`: healthy while polls succeed in time; the document
//! names why not (stale polls, the source or a sink down).

use super::{Telemetry, HEALTHY_INTERVALS};
use chrono::{DateTime, Utc};
use std::time::Instant;

impl Telemetry {
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

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
