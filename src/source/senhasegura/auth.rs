//! OAuth 2.0 client credentials: fetch a token, cache it, refresh it before it expires and on
//! demand after a 401. The secret is sent only in the token request's form body and never
//! logged; the token is never logged either.

use super::model::{ErrorBody, TokenResponse};
use super::{from_reqwest, SourceError};
use crate::config::Secret;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Used when the token answer carries no lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

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
            SourceError::AuthRejected { .. } | SourceError::NotFound { .. } => e,
            cause => SourceError::Token {
                url: self.url.clone(),
                cause: Box::new(cause),
            },
        })?;
        // Refresh ahead of expiry: a tenth of the lifetime, at most a minute, before it.
        let margin = (ttl / 10).min(Duration::from_secs(60));
        tracing::debug!(ttl_secs = ttl.as_secs(), "Obtained an access token");
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + ttl - margin,
        });
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(Secret, Duration), SourceError> {
        let timeout = Duration::from_secs(60);
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
            .map_err(|e| from_reqwest(&e, timeout))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| from_reqwest(&e, timeout))?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| SourceError::Api {
                status: status.as_u16(),
                message: format!("the token answer is not the documented JSON ({e})"),
            })?;
            let ttl = parsed
                .expires_in
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(DEFAULT_TTL);
            return Ok((Secret::new(parsed.access_token), ttl));
        }
        let message = ErrorBody::message_of(&body).unwrap_or_else(|| format!("HTTP {status}"));
        if status.is_server_error() && !message.contains("authentication") {
            return Err(SourceError::Server {
                status: status.as_u16(),
                message,
            });
        }
        if status.as_u16() == 404 {
            return Err(SourceError::NotFound {
                path: self.url.clone(),
                message,
            });
        }
        Err(SourceError::AuthRejected { message })
    }
}
