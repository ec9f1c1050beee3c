//! The HTTP side of the vault: a reqwest client with TLS verification on (an optional CA
//! file; `insecure` only when set explicitly), proxies from the standard environment
//! variables, a connect timeout and a whole-listing timeout. `open_listing` gets a token,
//! asks for the listing, refreshes the token once on a 401, falls back from the v3 to the v4
//! path on 404, and returns the response whose body is then streamed. Retries of transient
//! failures are the pipeline's job (it retries whole cycles); this file classifies errors.

use super::auth::TokenSource;
use super::model::ErrorBody;
use super::{from_reqwest, SourceError};
use crate::config::{Resolved, PATH_V3, PATH_V4};
use futures_util::StreamExt;
use std::sync::Mutex;
use std::time::Duration;

/// Error bodies are read up to this size for their message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The vault client.
#[derive(Debug)]
pub struct VaultClient {
    http: reqwest::Client,
    base_url: String,
    path: Mutex<String>,
    may_fall_back: bool,
    auth: TokenSource,
    timeout: Duration,
}

/// Build the HTTP client the config describes.
pub fn http_client(config: &Resolved) -> Result<reqwest::Client, SourceError> {
    let src = &config.config.source;
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("senhasegura-forwarder/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(src.connect_timeout.0)
        .tcp_keepalive(Duration::from_secs(30))
        .gzip(true);
    if let Some(ca) = &src.ca_file {
        let pem = std::fs::read(ca).map_err(|e| SourceError::Tls {
            message: format!("cannot read source.ca_file {}: {e}", ca.display()),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SourceError::Tls {
            message: format!(
                "source.ca_file {} holds no usable PEM certificate: {e}",
                ca.display()
            ),
        })?;
        if certs.is_empty() {
            return Err(SourceError::Tls {
                message: format!("source.ca_file {} holds no PEM certificate", ca.display()),
            });
        }
        builder = builder.tls_certs_only(certs);
    }
    if src.insecure {
        tracing::warn!("TLS CERTIFICATE VERIFICATION IS OFF (source.insecure = true): anyone on the path can read the vault's answers and the credentials; use source.ca_file instead");
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| SourceError::Tls {
        message: super::chain(&e),
    })
}

impl VaultClient {
    /// A client for the configured vault.
    pub fn new(config: &Resolved) -> Result<VaultClient, SourceError> {
        let src = &config.config.source;
        let http = http_client(config)?;
        let path = src
            .path
            .as_ref()
            .map(|p| p.0.clone())
            .unwrap_or_else(|| PATH_V3.to_string());
        let token_url = format!("{}{}", config.base_url, src.auth.token_path);
        Ok(VaultClient {
            http,
            base_url: config.base_url.clone(),
            may_fall_back: src.path.is_none(),
            path: Mutex::new(path),
            auth: TokenSource::new(
                token_url,
                src.auth.client_id.0.clone(),
                config.client_secret.clone(),
            ),
            timeout: src.timeout.0,
        })
    }

    /// The listing path in use (after any fallback).
    pub fn path(&self) -> String {
        self.path
            .lock()
            .expect("path lock is never poisoned")
            .clone()
    }

    /// The whole-listing timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Get a token (proves the credentials).
    pub async fn authenticate(&self) -> Result<(), SourceError> {
        self.auth.token(&self.http).await.map(|_| ())
    }

    /// Start the listing request and return the response once its headers say success.
    pub async fn open_listing(&self) -> Result<reqwest::Response, SourceError> {
        let mut refreshed = false;
        loop {
            let token = self.auth.token(&self.http).await?;
            let path = self.path();
            let url = format!("{}{}", self.base_url, path);
            let resp = self
                .http
                .get(&url)
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| from_reqwest(&e, self.timeout))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            let body = read_limited(resp).await;
            let message = ErrorBody::message_of(&body).unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            });
            let auth_problem = matches!(status.as_u16(), 401 | 403)
                || message.contains("not authorized")
                || message.contains("No route matched")
                || message.contains("Invalid signature");
            if auth_problem {
                if !refreshed {
                    tracing::info!(
                        status = status.as_u16(),
                        message,
                        "Listing refused; fetching a new token and trying once more"
                    );
                    self.auth.invalidate().await;
                    refreshed = true;
                    continue;
                }
                return Err(SourceError::NotAuthorized { message });
            }
            if status.as_u16() == 404 {
                if self.may_fall_back && path == PATH_V3 {
                    tracing::warn!(from = PATH_V3, to = PATH_V4, message, "Listing path not found; falling back to the v4 path (set source.path to skip this)");
                    *self.path.lock().expect("path lock is never poisoned") = PATH_V4.to_string();
                    continue;
                }
                return Err(SourceError::NotFound { path, message });
            }
            if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                return Err(SourceError::Server {
                    status: status.as_u16(),
                    message,
                });
            }
            return Err(SourceError::Api {
                status: status.as_u16(),
                message,
            });
        }
    }
}

async fn read_limited(resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY_LIMIT - out.len())]);
        if out.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    out
}
