//! OAuth 2.0 client credentials: fetch a token, cache it, refresh it before it expires and on
//! demand after a 401. The secret is sent only in the token request's form body and never
//! logged; the token is never logged either.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::model::{ErrorBody, TokenResponse};
use super::{from_reqwest, read_capped, redirect_error, SourceError};
use crate::settings::Secret;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Used when the token answer carries no usable lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Whatever lifetime the token endpoint states is clamped to this range: a few seconds or
/// "forever" (`inf`, `1e300`) are broken answers, not reasons to hammer the endpoint or to
/// keep a token past its real life (a 401 then refreshes it anyway).
const TTL_RANGE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(24 * 3600));
/// A token answer is a few hundred bytes; larger is refused (a gzip bomb never gets far).
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;
/// The token request's own timeout: its answer is small, so a minute is generous.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);

/// The token's lifetime from the answer's `expires_in` text: seconds, clamped to
/// `TTL_RANGE`; missing, unreadable, zero or negative values give `DEFAULT_TTL`.
pub fn token_ttl(expires_in: Option<&str>) -> Duration {
    let Some(seconds) = expires_in
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
    else {
        return DEFAULT_TTL;
    };
    let (min, max) = TTL_RANGE;
    // Clamped in f64 first, so the conversion cannot fail.
    Duration::try_from_secs_f64(seconds.clamp(min.as_secs_f64(), max.as_secs_f64())).unwrap_or(DEFAULT_TTL)
}

#[derive(Debug)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// A cached client-credentials token.
#[derive(Debug)]
pub struct TokenSource {
    url: String,
    client_id: String,
    client_secret: Secret,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    /// A token source for `url` (the token endpoint).
    pub fn new(url: String, client_id: String, client_secret: Secret) -> TokenSource {
        TokenSource {
            url,
            client_id,
            client_secret,
            cached: Mutex::new(None),
        }
    }

    /// Drop the cached token (after the API said it is no longer valid).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// A valid token: the cached one, or a new one when it is near expiry.
    pub async fn token(&self, http: &reqwest::Client) -> Result<Secret, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let (token, ttl) = self.fetch(http).await.map_err(|e| match e {
            // The vault answered about the credentials: already named as such.
            SourceError::AuthRejected { .. } | SourceError::TokenNotFound { .. } => e,
            cause => SourceError::Token {
                url: self.url.clone(),
                cause: Box::new(cause),
            },
        })?;
        // Refresh ahead of expiry: a tenth of the lifetime, at most a minute, before it.
        let margin = ttl.checked_div(10).unwrap_or_default().min(Duration::from_secs(60));
        tracing::debug!(ttl_secs = ttl.as_secs(), "Obtained an access token");
        let now = Instant::now();
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: now.checked_add(ttl.saturating_sub(margin)).unwrap_or(now),
        });
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(Secret, Duration), SourceError> {
        let timeout = TOKEN_TIMEOUT;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let resp = http
            .post(&self.url)
            .form(&form)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| token_error(&e))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(redirect_error(&resp, "token endpoint"));
        }
        let asked = super::retry_after(resp.headers(), std::time::SystemTime::now());
        let body = read_capped(resp, TOKEN_BODY_LIMIT)
            .await
            .map_err(|e| token_error(&e))?
            .ok_or_else(|| SourceError::Api {
                status: status.as_u16(),
                message: format!(
                    "the token answer is larger than {} KiB, which no token endpoint sends; check source.url and source.auth.token_path",
                    TOKEN_BODY_LIMIT / 1024
                ),
            })?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| SourceError::Api {
                status: status.as_u16(),
                // Not the body, nor serde's text of it: a token answer holds the token.
                message: format!(
                    "the token answer is not the documented JSON ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            })?;
            let ttl = token_ttl(parsed.expires_in.as_deref());
            return Ok((Secret::new(parsed.access_token), ttl));
        }
        let message = ErrorBody::message_of(&body).unwrap_or_else(|| format!("HTTP {status}"));
        // Rate-limited or timed out (a proxy before the vault may answer 429 or 408, whatever
        // its message says, e.g. "too many authentication attempts"), or a server error that is
        // not the vault's judgment of the credentials: retried.
        let busy =
            matches!(status.as_u16(), 408 | 429) || (status.is_server_error() && !message.contains("authentication"));
        if busy {
            return Err(SourceError::Server {
                status: status.as_u16(),
                message,
                retry_after: asked,
            });
        }
        if status.as_u16() == 404 {
            return Err(SourceError::TokenNotFound {
                url: self.url.clone(),
                message,
            });
        }
        Err(SourceError::AuthRejected { message })
    }
}

/// A failed token request: a timeout names the token request, not `source.timeout`.
fn token_error(e: &reqwest::Error) -> SourceError {
    if e.is_timeout() {
        return SourceError::TokenTimeout {
            seconds: TOKEN_TIMEOUT.as_secs(),
        };
    }
    from_reqwest(e, TOKEN_TIMEOUT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn any_stated_lifetime_gives_a_bounded_ttl() {
        let day = Duration::from_secs(86400);
        for (text, expected) in [
            (Some("inf"), DEFAULT_TTL),
            (Some("NaN"), DEFAULT_TTL),
            (Some("-5"), DEFAULT_TTL),
            (Some("0"), DEFAULT_TTL),
            (Some("soon"), DEFAULT_TTL),
            (None, DEFAULT_TTL),
            (Some("1e300"), day),
            (Some("1e19"), day),
            (Some("9223372036854775807"), day),
            (Some("1"), Duration::from_secs(10)),
            (Some(" 300 "), Duration::from_secs(300)),
            (Some("90.5"), Duration::from_secs_f64(90.5)),
        ] {
            assert_eq!(token_ttl(text), expected, "{text:?}");
        }
    }
}
