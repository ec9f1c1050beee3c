//! The HTTP side of the vault: a reqwest client with TLS verification on (an optional CA
//! file; `insecure` only when set explicitly), proxies from the standard environment
//! variables, a connect timeout and a whole-listing timeout. `open_listing` gets a token,
//! asks for the listing, refreshes the token once on a 401, falls back from the v3 to the v4
//! path on 404, and returns the response whose body is then streamed. Retries of transient
//! failures are the pipeline's job (it retries whole cycles); this file classifies errors.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::auth::TokenSource;
use super::model::ErrorBody;
use super::oauth1::Oauth1;
use super::{from_reqwest, SourceError};
use super::{PATH_V3, PATH_V4};
use crate::settings::{ConfigError, Secret};
use futures_util::StreamExt;
use std::path::PathBuf;
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
    auth: Credentials,
    timeout: Duration,
    idle_timeout: Duration,
}

/// How requests are authorized.
#[derive(Debug)]
enum Credentials {
    /// A cached bearer token.
    Oauth2(TokenSource),
    /// Signed requests.
    Oauth1(Oauth1),
}

/// What the client is built from (the configuration resolves it: `Resolved::client_settings`).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL of the vault, without a trailing slash.
    pub base_url: String,
    /// The listing path; `None`: the v3 path, falling back to v4 on 404.
    pub path: Option<String>,
    /// The token endpoint's path.
    pub token_path: String,
    /// The client id (OAuth 1.0a: the consumer key).
    pub client_id: String,
    /// The client secret (OAuth 1.0a: the consumer secret).
    pub client_secret: Secret,
    /// OAuth 1.0a: the token and its secret; `None` for OAuth 2.0.
    pub oauth1_token: Option<(String, Secret)>,
    /// CA certificate(s) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Turn TLS verification off.
    pub insecure: bool,
    /// TCP/TLS connect limit.
    pub connect_timeout: Duration,
    /// Whole-listing limit.
    pub timeout: Duration,
    /// Longest pause inside the listing's body.
    pub idle_timeout: Duration,
}

/// The host of an `http://` URL that is not a loopback address or `localhost`: where the
/// credentials would travel unencrypted. `None` for https and for this machine.
pub fn cleartext_host(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if parsed.scheme() != "http" {
        return None;
    }
    let host = parsed.host_str()?.trim_matches(['[', ']']);
    let local =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
    (!local).then(|| host.to_string())
}

/// Build the HTTP client the settings describe. What fails here is the configuration (an
/// unreadable or empty `source.ca_file`): exit 2 from `once` and `run` as from `check`.
pub fn http_client(src: &ClientSettings) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("senhasegura-forwarder/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(src.connect_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        // A redirect could carry the credentials to another origin or take the listing from
        // one: none is followed, a 3xx is an error naming its Location.
        .redirect(reqwest::redirect::Policy::none())
        .gzip(true);
    if let Some(ca) = &src.ca_file {
        let bad = |message: String| ConfigError::Invalid {
            key: "source.ca_file",
            message,
        };
        let pem = std::fs::read(ca).map_err(|e| bad(format!("cannot read {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| bad(format!("{} holds no usable PEM certificate: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(bad(format!("{} holds no PEM certificate", ca.display())));
        }
        builder = builder.tls_certs_only(certs);
    }
    if let Some(host) = cleartext_host(&src.base_url) {
        tracing::warn!(host, "source.url is http:// to a host that is not this one: the client secret and every token cross the network in cleartext; use https://");
    }
    if let Some(proxy) = super::env_proxy(&src.base_url) {
        tracing::info!(
            proxy,
            "Vault requests go through the proxy the environment names (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY; NO_PROXY exempts hosts)"
        );
        if proxy.starts_with("socks") {
            tracing::warn!(
                proxy,
                "That is a SOCKS proxy, which this build does not speak: every request to the vault will fail; name an HTTP proxy (http://host:port) instead"
            );
        }
    }
    if src.insecure {
        tracing::warn!("TLS CERTIFICATE VERIFICATION IS OFF (source.insecure = true): anyone on the path can read the vault's answers and the credentials; use source.ca_file instead");
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| ConfigError::Invalid {
        key: "source",
        message: format!("the HTTP client cannot be built: {}", super::chain(&e)),
    })
}

impl VaultClient {
    /// A client for the configured vault.
    pub fn new(src: &ClientSettings) -> Result<VaultClient, ConfigError> {
        let http = http_client(src)?;
        let path = src.path.clone().unwrap_or_else(|| PATH_V3.to_string());
        let token_url = format!("{}{}", src.base_url, src.token_path);
        Ok(VaultClient {
            http,
            base_url: src.base_url.clone(),
            may_fall_back: src.path.is_none(),
            path: Mutex::new(path),
            auth: match &src.oauth1_token {
                None => Credentials::Oauth2(TokenSource::new(
                    token_url,
                    src.client_id.clone(),
                    src.client_secret.clone(),
                )),
                Some((token, token_secret)) => Credentials::Oauth1(Oauth1 {
                    consumer_key: src.client_id.clone(),
                    consumer_secret: src.client_secret.clone(),
                    token: token.clone(),
                    token_secret: token_secret.clone(),
                }),
            },
            timeout: src.timeout,
            idle_timeout: src.idle_timeout,
        })
    }

    /// The listing path in use (after any fallback).
    pub fn path(&self) -> String {
        self.path
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The whole-listing timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The longest pause allowed between two chunks of the listing's body.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The authentication method, for reports.
    pub fn auth_method(&self) -> &'static str {
        match self.auth {
            Credentials::Oauth2(_) => "oauth2",
            Credentials::Oauth1(_) => "oauth1",
        }
    }

    /// Get a token (proves OAuth 2.0 credentials; OAuth 1.0a has no token to fetch).
    pub async fn authenticate(&self) -> Result<(), SourceError> {
        match &self.auth {
            Credentials::Oauth2(t) => t.token(&self.http).await.map(|_| ()),
            Credentials::Oauth1(_) => Ok(()),
        }
    }

    /// Start the listing request and return the response once its headers say success, with
    /// the time that request was sent (its body's `source.timeout` counts from there).
    pub async fn open_listing(&self) -> Result<(reqwest::Response, tokio::time::Instant), SourceError> {
        let mut refreshed = false;
        loop {
            let path = self.path();
            let url = format!("{}{}", self.base_url, path);
            let authorization = match &self.auth {
                Credentials::Oauth2(t) => format!("Bearer {}", t.token(&self.http).await?.expose()),
                Credentials::Oauth1(o) => {
                    let parsed = reqwest::Url::parse(&url).map_err(|e| SourceError::BadUrl {
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
                    o.authorization("GET", &parsed)
                }
            };
            let mut authorization =
                reqwest::header::HeaderValue::from_str(&authorization).map_err(|_| SourceError::NotAuthorized {
                    message: "credentials hold characters not allowed in a header".into(),
                    hint: "check the client id and token",
                })?;
            authorization.set_sensitive(true);
            // source.timeout bounds the answer's head here and its body in the pipeline's
            // reader, which leaves out the time a failing sink holds the listing up (a
            // request timeout would count it, and blame the vault for a SIEM outage).
            let request = self
                .http
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, authorization)
                .header(reqwest::header::ACCEPT, "application/json")
                .send();
            let sent = tokio::time::Instant::now();
            let deadline = sent.checked_add(self.timeout).unwrap_or(sent);
            let resp = match tokio::time::timeout_at(deadline, request).await {
                Ok(answer) => answer.map_err(|e| from_reqwest(&e, self.timeout))?,
                Err(_) => {
                    return Err(super::listing_timeout(
                        reqwest::Url::parse(&url).ok().as_ref(),
                        self.timeout,
                    ))
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok((resp, sent));
            }
            if status.is_redirection() {
                return Err(super::redirect_error(&resp, "listing"));
            }
            let asked = super::retry_after(resp.headers(), std::time::SystemTime::now());
            // Within the same deadline: an error answer whose body stalls would hang the poll.
            let body = tokio::time::timeout_at(deadline, read_limited(resp))
                .await
                .unwrap_or_default();
            let message = ErrorBody::message_of(&body)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_string());
            match classify(status.as_u16(), &message) {
                Answer::Unauthorized if !refreshed => {
                    tracing::info!(
                        status = status.as_u16(),
                        message,
                        "Listing refused; fetching a new token and trying once more"
                    );
                    if let Credentials::Oauth2(t) = &self.auth {
                        t.invalidate().await;
                    }
                    refreshed = true;
                }
                Answer::Unauthorized => {
                    return Err(SourceError::NotAuthorized {
                        hint: unauthorized_hint(&message),
                        message,
                    });
                }
                Answer::NotFound if self.may_fall_back && path == PATH_V3 => {
                    tracing::warn!(
                        from = PATH_V3,
                        to = PATH_V4,
                        message,
                        "Listing path not found; falling back to the v4 path (set source.path to skip this)"
                    );
                    *self.path.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = PATH_V4.to_string();
                }
                Answer::NotFound => return Err(SourceError::NotFound { path, message }),
                Answer::Transient => {
                    return Err(SourceError::Server {
                        status: status.as_u16(),
                        message,
                        retry_after: asked,
                    })
                }
                Answer::Other => {
                    return Err(SourceError::Api {
                        status: status.as_u16(),
                        message,
                    })
                }
            }
        }
    }
}

async fn read_limited(resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = ERROR_BODY_LIMIT.saturating_sub(out.len());
        out.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
        if out.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    out
}

/// What an error answer of the listing means.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// The token or signature was refused: refresh once, then fail (never retried).
    Unauthorized,
    /// The path does not exist here.
    NotFound,
    /// Worth retrying with backoff.
    Transient,
    /// Anything else: fail.
    Other,
}

/// Classify an error answer by status and the vault's message (docs/design.md, "Errors"): it sends
/// "You are not authorized to access this resource." with a 500, so the message wins.
fn classify(status: u16, message: &str) -> Answer {
    let auth_message = [
        "not authorized",
        "No route matched",
        "Invalid signature",
        "authentication failed",
    ]
    .iter()
    .any(|m| message.contains(m));
    if auth_message || matches!(status, 401 | 403) {
        Answer::Unauthorized
    } else if status == 404 {
        Answer::NotFound
    } else if status >= 500 || matches!(status, 408 | 429) || message.contains("timed out") {
        Answer::Transient
    } else {
        Answer::Other
    }
}

/// What to do about a refused listing, by the vault's message.
fn unauthorized_hint(message: &str) -> &'static str {
    if message.contains("No route matched") {
        "the request reached the vault without its Authorization header; check that no proxy between the agent and the vault strips it"
    } else if message.contains("Invalid signature") {
        "the OAuth 1.0a signature did not match; check the consumer key/secret and token/secret, and the host's clock"
    } else {
        "the A2A authorization must be enabled and grant access to the remote sessions resource"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_is_named_only_beyond_this_machine() {
        assert_eq!(
            cleartext_host("http://vault.example.com"),
            Some("vault.example.com".into())
        );
        assert_eq!(cleartext_host("http://10.0.0.5:8080/x"), Some("10.0.0.5".into()));
        for here in [
            "http://127.0.0.1:9000",
            "http://[::1]:80",
            "http://LOCALHOST",
            "https://vault.example.com",
        ] {
            assert_eq!(cleartext_host(here), None, "{here}");
        }
    }

    #[test]
    fn every_documented_message_is_classified() {
        assert_eq!(classify(404, "Resource sub not found"), Answer::NotFound);
        assert_eq!(classify(500, "Unexpected error."), Answer::Transient);
        assert_eq!(
            classify(500, "You are not authorized to access this resource."),
            Answer::Unauthorized
        );
        assert_eq!(classify(401, "Client authentication failed."), Answer::Unauthorized);
        assert_eq!(classify(401, "Invalid signature"), Answer::Unauthorized);
        assert_eq!(
            classify(401, "No route matched with those values."),
            Answer::Unauthorized
        );
        assert_eq!(
            classify(404, "No route matched with those values."),
            Answer::Unauthorized
        );
        assert_eq!(classify(504, "Request timed out."), Answer::Transient);
        assert_eq!(classify(200, "Request timed out."), Answer::Transient);
        assert_eq!(classify(400, "Bad request"), Answer::Other);
        assert!(unauthorized_hint("No route matched with those values.").contains("Authorization header"));
        assert!(unauthorized_hint("Invalid signature").contains("signature"));
    }
}
