//! The senhasegura A2A API: authentication ([`auth`]), the HTTP client with its retries and
//! path fallback ([`client`]), the record model ([`model`], the only file that knows field
//! names) and the streaming listing scanner ([`stream`]).
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

pub mod auth;
pub mod client;
pub mod model;
pub mod oauth1;
pub mod stream;

pub use client::VaultClient;

use std::time::{Duration, SystemTime};

/// The v3 documentation's listing path, tried first.
pub const PATH_V3: &str = "/api/pam/session/remotesessions";
/// The v4 documentation's listing path, the fallback on 404.
pub const PATH_V4: &str = "/api/session/remotesessions";
/// The OAuth 2.0 token endpoint.
pub const TOKEN_PATH: &str = "/iso/oauth2/token";

/// A failure to read the vault (exit 3). Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The token endpoint refused the client credentials.
    #[error("the vault rejected the client credentials ({message}): check source.auth.client_id and the client secret, and that the A2A authorization for this application is enabled in senhasegura (A2A > Applications > Authorizations)")]
    AuthRejected { message: String },
    /// The listing was refused even with a fresh token.
    #[error("the vault refused the listing with a fresh token ({message}): {hint}")]
    NotAuthorized { message: String, hint: &'static str },
    /// The path does not exist on this vault.
    #[error("the listing path {path} was not found ({message}); set source.path to the path your vault version documents ({v3} or {v4})", v3 = PATH_V3, v4 = PATH_V4)]
    NotFound { path: String, message: String },
    /// The token endpoint does not exist at the configured address.
    #[error("the token endpoint {url} was not found ({message}); check source.url (the vault's address, without a path) and source.auth.token_path (default {TOKEN_PATH})")]
    TokenNotFound { url: String, message: String },
    /// A 5xx, 408 or 429 answer from the vault (or a proxy before it), with how long it asked
    /// the client to wait (`Retry-After`), if it said.
    #[error("the vault answered HTTP {status}: {message}{}", asked(*.retry_after))]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Another unexpected answer.
    #[error("the vault answered HTTP {status}: {message}")]
    Api { status: u16, message: String },
    /// The listing envelope says the call failed.
    #[error("the vault reported an error in the listing: {message}")]
    Listing { message: String },
    /// The TLS certificate could not be verified.
    #[error(
        "TLS to the vault failed: {message}; if the vault uses a private CA, set source.ca_file to its PEM certificate"
    )]
    Tls { message: String },
    /// Connection refused, reset, DNS, or the body was cut short.
    #[error("network error talking to the vault: {message}")]
    Network { message: String },
    /// The listing did not complete in time.
    #[error("the listing did not complete within {seconds}s{via} (source.timeout); raise it for very long listings")]
    Timeout {
        seconds: u64,
        /// " (through the proxy ...)" when the environment names one.
        via: String,
    },
    /// The vault stopped sending in the middle of the listing.
    #[error("the vault stopped sending the listing: no data for {seconds}s after {bytes} bytes (source.idle_timeout); the vault or a proxy in between stalled")]
    Stalled { seconds: u64, bytes: u64 },
    /// The token endpoint did not answer in time.
    #[error(
        "the token endpoint did not answer within {seconds}s; check that the vault is reachable and not overloaded"
    )]
    TokenTimeout { seconds: u64 },
    /// The listing URL built from the config does not parse.
    #[error("the listing URL `{url}` is not valid ({message}); check source.url and source.path")]
    BadUrl { url: String, message: String },
    /// A redirect, which the agent never follows.
    #[error("the {what} answered HTTP {status} redirecting to `{location}`; the agent follows no redirects (they could send the credentials or take the listing from elsewhere): set source.url to the final address")]
    Redirect {
        what: &'static str,
        status: u16,
        location: String,
    },
    /// The token request failed before the vault judged the credentials (network, timeout,
    /// server error, an unreadable answer).
    #[error("the token request to {url} failed: {cause}")]
    Token { url: String, cause: Box<SourceError> },
    /// The listing body is not what the API documents.
    #[error("the listing body is invalid: {message}")]
    Body { message: String, retryable: bool },
}

impl SourceError {
    /// Worth retrying with backoff (never auth errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Server { .. }
            | SourceError::Network { .. }
            | SourceError::Timeout { .. }
            | SourceError::Stalled { .. }
            | SourceError::TokenTimeout { .. } => true,
            SourceError::Body { retryable, .. } => *retryable,
            SourceError::Token { cause, .. } => cause.is_retryable(),
            _ => false,
        }
    }

    /// How long the answer asked the client to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::Server { retry_after, .. } => *retry_after,
            SourceError::Token { cause, .. } => cause.retry_after(),
            _ => None,
        }
    }
}

/// What the answer's `Retry-After` said, for the message: what was asked, not what the agent
/// waits (that is capped, `source.retry_backoff_max`).
fn asked(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| format!(" (Retry-After: {} s)", d.as_secs()))
}

/// How long an answer asks the client to wait before its next request (`Retry-After`, RFC 9110
/// section 10.2.3): a number of seconds, or an HTTP date (IMF-fixdate `Sun, 06 Nov 1994
/// 08:49:37 GMT`, or the obsolete RFC 850 and asctime forms a recipient must also read) that is
/// `now` or later; a date already past asks for no wait. `None` when the header is absent or is
/// neither (then the agent's own backoff alone decides).
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds: the longest wait (the caller caps it).
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The whole cause chain of an error on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// A 3xx answer as an error naming where it pointed.
pub fn redirect_error(resp: &reqwest::Response, what: &'static str) -> SourceError {
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|l| body_excerpt(l.as_bytes()))
        .unwrap_or_else(|| "(no Location header)".into());
    SourceError::Redirect {
        what,
        status: resp.status().as_u16(),
        location,
    }
}

/// Read a whole body of at most `limit` bytes; `None` when it is longer (reading stops there,
/// so a huge or gzip-bombed answer costs at most `limit` bytes of memory).
pub async fn read_capped(resp: reqwest::Response, limit: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if chunk.len() > limit.saturating_sub(out.len()) {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

pub use crate::settings::excerpt;

/// The first bytes of a body as printable text for a message: at most 80 characters, control
/// characters and quotes escaped, invalid UTF-8 replaced.
pub fn body_excerpt(body: &[u8]) -> String {
    let head = body.get(..body.len().min(320)).unwrap_or(body);
    excerpt(&String::from_utf8_lossy(head).chars().take(80).collect::<String>())
}

/// The proxy the environment sends requests for `base_url` through, read as reqwest reads it
/// (hyper-util's matcher: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper case
/// before lower, none at all when `REQUEST_METHOD` is set), for the log: its scheme, host and
/// port only (the port it connects to when the variable gives none), so that a password in
/// the variable is never shown.
pub fn env_proxy(base_url: &str) -> Option<String> {
    // Parsed as reqwest parses it (a URL first), so that the same requests match.
    let url = reqwest::Url::parse(base_url).ok()?;
    let uri: hyper::Uri = url.as_str().parse().ok()?;
    let proxy = hyper_util::client::proxy::matcher::Matcher::from_system().intercept(&uri)?;
    let at = proxy.uri();
    let scheme = at.scheme_str().unwrap_or("http");
    let port = at.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(format!("{scheme}://{}:{port}", at.host().unwrap_or("?")))
}

/// " (through the proxy ..., from the environment)" when one applies to `url`.
fn via_proxy(url: Option<&reqwest::Url>) -> String {
    url.and_then(|u| env_proxy(u.as_str()))
        .map(|proxy| format!(" (through the proxy {proxy}, from the environment)"))
        .unwrap_or_default()
}

/// `source.timeout` ran out for the listing at `url`.
pub fn listing_timeout(url: Option<&reqwest::Url>, timeout: std::time::Duration) -> SourceError {
    SourceError::Timeout {
        seconds: timeout.as_secs(),
        via: via_proxy(url),
    }
}

/// Classify a reqwest error.
pub fn from_reqwest(e: &reqwest::Error, timeout: std::time::Duration) -> SourceError {
    // The listing's requests carry no reqwest timeout (the pipeline keeps source.timeout), so a
    // timeout while connecting is source.connect_timeout's: a network error, named as such.
    if e.is_timeout() && !e.is_connect() {
        return listing_timeout(e.url(), timeout);
    }
    // A refusal, a reset, a certificate (a TLS-inspecting proxy's) or a timeout that came from a
    // proxy reads as the vault's: say which proxy the request went through.
    let via = via_proxy(e.url());
    let message = format!("{}{via}", chain(e));
    let lower = message.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("invalid peer") {
        return SourceError::Tls { message };
    }
    SourceError::Network { message }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn asked_for(value: &[u8]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_bytes(value).unwrap());
        // Thu, 15 Jan 2026 12:00:00 GMT
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_768_478_400);
        retry_after(&headers, now)
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(asked_for(b"120"), Some(Duration::from_secs(120)));
        assert_eq!(asked_for(b" 0 "), Some(Duration::ZERO));
        // The three forms of RFC 9110's HTTP-date.
        for date in [
            &b"Thu, 15 Jan 2026 12:01:30 GMT"[..],
            b"Thursday, 15-Jan-26 12:01:30 GMT",
            b"Thu Jan 15 12:01:30 2026",
        ] {
            assert_eq!(
                asked_for(date),
                Some(Duration::from_secs(90)),
                "{:?}",
                String::from_utf8_lossy(date)
            );
        }
        // A date already past: no wait.
        assert_eq!(asked_for(b"Thu, 15 Jan 2026 11:00:00 GMT"), Some(Duration::ZERO));
        // More digits than a u64 holds: the longest wait, for the caller to cap.
        assert_eq!(
            asked_for(b"99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_ignores_what_is_neither() {
        let not_http_dates = [
            &b"Thu, 15 Jan 2026 12:01:30 +0000"[..],
            b"2026-01-15T12:01:30Z",
            b"Thu, 32 Jan 2026 12:01:30 GMT",
        ];
        let not_numbers = [&b""[..], b"-5", b"1.5", b"soon", b"120s", b"\xff\xfe"];
        for bad in not_numbers.into_iter().chain(not_http_dates) {
            assert_eq!(asked_for(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(retry_after(&HeaderMap::new(), SystemTime::now()), None);
    }

    #[test]
    fn a_server_error_says_what_it_asked() {
        let e = SourceError::Server {
            status: 429,
            message: "Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            e.to_string(),
            "the vault answered HTTP 429: Too Many Requests (Retry-After: 30 s)"
        );
        let token = SourceError::Token {
            url: "u".into(),
            cause: Box::new(e),
        };
        assert_eq!(token.retry_after(), Some(Duration::from_secs(30)));
        assert!(token.is_retryable());
    }
}
