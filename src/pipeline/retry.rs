//! When to try the vault again: exponential backoff with jitter, and what the vault asked for
//! (`Retry-After`), capped by the policy's longest delay. Delivery's retries use the backoff too.

use crate::source::senhasegura::SourceError;
use std::time::Duration;

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

impl RetryPolicy {
    /// The pause the answer behind `e` asked for (`Retry-After`), never beyond `backoff_max`: a
    /// vault that asks for an hour does not hold the agent up for an hour (raise
    /// `source.retry_backoff_max` to wait as long as it asks). Zero when it asked for none.
    pub fn asked(&self, e: &SourceError) -> Duration {
        e.retry_after().map_or(Duration::ZERO, |d| d.min(self.backoff_max))
    }

    /// How long to wait before retry `attempt` after `e`: the backoff, or longer when the vault
    /// (or a proxy before it) asked for longer (RFC 9110: at least that long), up to the cap.
    pub fn delay(&self, e: &SourceError, attempt: u32) -> Duration {
        backoff_delay(attempt, self.backoff, self.backoff_max).max(self.asked(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(retry_after: Option<Duration>) -> SourceError {
        SourceError::Server {
            status: 429,
            message: "Too Many Requests".into(),
            retry_after,
        }
    }

    #[test]
    fn a_retry_waits_as_long_as_the_vault_asked_up_to_the_longest_backoff() {
        let policy = RetryPolicy {
            retries: 5,
            backoff: Duration::from_millis(10),
            backoff_max: Duration::from_secs(60),
        };
        for attempt in 0..6 {
            // Without Retry-After: the backoff alone, within [d/2, d] of 10 ms doubling.
            let own = policy.delay(&busy(None), attempt);
            assert!(own <= Duration::from_millis(10 << attempt), "{own:?}");
            assert_eq!(
                policy.delay(&busy(Some(Duration::from_secs(2))), attempt),
                Duration::from_secs(2)
            );
            // Capped at the longest backoff.
            assert_eq!(
                policy.delay(&busy(Some(Duration::from_secs(3600))), attempt),
                Duration::from_secs(60)
            );
            assert_eq!(
                policy.delay(&busy(Some(Duration::MAX)), attempt),
                Duration::from_secs(60)
            );
        }
        // Asking for less than the backoff does not shorten it.
        let slow = RetryPolicy {
            retries: 5,
            backoff: Duration::from_secs(4),
            backoff_max: Duration::from_secs(60),
        };
        assert!(slow.delay(&busy(Some(Duration::ZERO)), 0) >= Duration::from_secs(2));
        assert_eq!(slow.asked(&busy(None)), Duration::ZERO);
    }
}
