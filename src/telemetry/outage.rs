//! Outages told as a story: one WARN when something goes down ("down since"), a reminder at
//! most every `log.outage_reminder` while it stays down, one INFO when it recovers (how long it
//! was down and how many events waited). The retries in between log at DEBUG only.

use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// An ongoing outage of the source or of one sink.
#[derive(Debug, Clone)]
pub struct Outage {
    /// When the first failure happened.
    pub since: DateTime<Utc>,
    since_instant: Instant,
    last_logged: Instant,
    /// The latest error.
    pub error: String,
    /// Failed attempts so far.
    pub failures: u64,
}

/// What a failure or success means for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    /// First failure: log "down since".
    Down,
    /// Still down, and the reminder is due.
    Reminder,
    /// Still down; nothing to log above DEBUG.
    Quiet,
    /// Back after this long, with this many failed attempts.
    Recovered { down_for: Duration, failures: u64 },
    /// Was not down.
    Fine,
}

/// Record a failure in `slot` at `now`.
pub fn fail(slot: &mut Option<Outage>, error: String, now: Instant, reminder: Duration) -> Transition {
    match slot {
        None => {
            *slot = Some(Outage {
                since: Utc::now(),
                since_instant: now,
                last_logged: now,
                error,
                failures: 1,
            });
            Transition::Down
        }
        Some(o) => {
            o.failures += 1;
            o.error = error;
            if now.saturating_duration_since(o.last_logged) >= reminder {
                o.last_logged = now;
                Transition::Reminder
            } else {
                Transition::Quiet
            }
        }
    }
}

/// Record a success in `slot` at `now`.
pub fn recover(slot: &mut Option<Outage>, now: Instant) -> Transition {
    match slot.take() {
        None => Transition::Fine,
        Some(o) => Transition::Recovered {
            down_for: now.saturating_duration_since(o.since_instant),
            failures: o.failures,
        },
    }
}

/// Seconds, rounded to tenths, for log fields.
pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_once_reminders_rate_limited_recovered_once() {
        let reminder = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut slot = None;
        assert_eq!(recover(&mut slot, t0), Transition::Fine);
        assert_eq!(fail(&mut slot, "refused".into(), t0, reminder), Transition::Down);
        let mut reminders = 0;
        for s in 1..=150u64 {
            // a retry every second for 150 s: reminders at 60 s and 120 s only
            match fail(&mut slot, format!("refused {s}"), t0 + Duration::from_secs(s), reminder) {
                Transition::Reminder => reminders += 1,
                Transition::Quiet => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(reminders, 2);
        assert_eq!(slot.as_ref().map(|o| o.error.as_str()), Some("refused 150"));
        match recover(&mut slot, t0 + Duration::from_secs(151)) {
            Transition::Recovered { down_for, failures } => {
                assert_eq!(down_for, Duration::from_secs(151));
                assert_eq!(failures, 151);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(recover(&mut slot, t0 + Duration::from_secs(152)), Transition::Fine);
    }
}
