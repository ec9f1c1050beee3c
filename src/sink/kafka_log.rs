//! librdkafka's log and error callbacks, deduplicated and rate-limited. An unreachable broker
//! makes librdkafka repeat the same lines (connect failed, all brokers down, ...) dozens of
//! times a minute, with only counts and milliseconds changing. Lines are keyed by their text
//! with digits blanked out; a key is logged at most once per [`EVERY`], and the next time it is
//! logged it carries how many repeats were suppressed. The sink's own "down since" line says
//! what the outage means for events.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One line per distinct message at most this often.
pub const EVERY: Duration = Duration::from_secs(60);
/// Distinct messages remembered; beyond this the oldest are forgotten.
const MAX_KEYS: usize = 256;

#[derive(Debug)]
struct Seen {
    last: Instant,
    suppressed: u64,
}

/// The dedup state, shared by every producer a sink creates (it renews them after failures).
#[derive(Debug, Default)]
pub struct LogLimiter {
    seen: Mutex<HashMap<String, Seen>>,
}

/// The text with every parenthesised remark that holds a number dropped (librdkafka's
/// "(after 0ms in state CONNECT, 3 identical error(s) suppressed)") and every other run of
/// digits replaced by `#`.
pub fn normalize(message: &str) -> String {
    let mut kept = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('(') {
        kept.push_str(&rest[..open]);
        let group = &rest[open..];
        // up to the matching `)`, nesting included: "(... error(s) suppressed)"
        let mut depth = 0;
        let end = group
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(group.len(), |(i, _)| i + 1);
        if !group[..end].bytes().any(|b| b.is_ascii_digit()) {
            kept.push_str(&group[..end]);
        }
        rest = &group[end..];
    }
    kept.push_str(rest);
    let mut out = String::with_capacity(kept.len());
    let mut in_digits = false;
    for c in kept.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

impl LogLimiter {
    /// `Some(suppressed since the last time)` when this message may be logged at `now`.
    pub fn admit(&self, message: &str, now: Instant) -> Option<u64> {
        let key = normalize(message);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = seen.get_mut(&key) {
            if now.saturating_duration_since(s.last) < EVERY {
                s.suppressed += 1;
                return None;
            }
            let n = s.suppressed;
            s.last = now;
            s.suppressed = 0;
            return Some(n);
        }
        if seen.len() >= MAX_KEYS {
            if let Some(oldest) = seen.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone()) {
                seen.remove(&oldest);
            }
        }
        seen.insert(
            key,
            Seen {
                last: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// The producer context: librdkafka's lines through the limiter into `tracing`.
#[derive(Debug, Clone, Default)]
pub struct KafkaLogContext {
    limiter: Arc<LogLimiter>,
    /// Warnings and errors only (a producer made to validate a config, `check --offline`).
    quiet: bool,
}

impl KafkaLogContext {
    /// A context that passes on warnings and errors only.
    pub fn quiet() -> KafkaLogContext {
        KafkaLogContext {
            quiet: true,
            ..KafkaLogContext::default()
        }
    }
}

impl ClientContext for KafkaLogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if self.quiet
            && matches!(
                level,
                RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
            )
        {
            return;
        }
        let text = format!("{fac}: {log_message}");
        let Some(suppressed) = self.limiter.admit(&text, Instant::now()) else {
            return;
        };
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(suppressed, "librdkafka: {text}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(suppressed, "librdkafka: {text}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(suppressed, "librdkafka: {text}"),
            RDKafkaLogLevel::Debug => tracing::debug!(suppressed, "librdkafka: {text}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        if let Some(suppressed) = self.limiter.admit(&text, Instant::now()) {
            tracing::error!(suppressed, "librdkafka: {text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_numbered_remarks_and_numbers() {
        assert_eq!(
            normalize("Connect to ipv4#10.0.0.1:9092 failed: refused (after 12ms in state CONNECT, 2 identical error(s) suppressed) (see docs)"),
            "Connect to ipv###.#.#.#:# failed: refused  (see docs)"
        );
    }

    #[test]
    fn repeats_differing_only_in_numbers_are_suppressed_for_a_minute() {
        let l = LogLimiter::default();
        let t0 = Instant::now();
        let line = |ms: u32| {
            format!("FAIL: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after {ms}ms in state CONNECT, {} identical error(s) suppressed)", ms % 3)
        };
        assert_eq!(l.admit(&line(0), t0), Some(0));
        for i in 1..30u32 {
            assert_eq!(l.admit(&line(i), t0 + Duration::from_secs(u64::from(i))), None);
        }
        assert_eq!(
            l.admit("other: all brokers down", t0),
            Some(0),
            "a different message passes"
        );
        assert_eq!(
            l.admit(&line(99), t0 + EVERY),
            Some(29),
            "after a minute, with the count"
        );
        assert_eq!(l.admit(&line(100), t0 + EVERY), None);
    }
}
