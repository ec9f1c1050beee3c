//! OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), for A2A authorizations of the OAuth 1.0
//! kind: every request carries an `Authorization: OAuth ...` header signed with the consumer
//! secret and the token secret. Nothing is fetched; the secrets never leave this file.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use crate::settings::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// RFC 3986 percent-encoding as RFC 5849 §3.6 requires (unreserved characters kept).
pub fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len().saturating_mul(3));
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The HMAC-SHA1 signature of a request (RFC 5849 §3.4), base64.
pub fn signature(
    method: &str,
    url: &reqwest::Url,
    oauth: &[(&str, &str)],
    consumer_secret: &str,
    token_secret: &str,
) -> String {
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (percent(&k), percent(&v)))
        .chain(oauth.iter().map(|(k, v)| (percent(k), percent(v))))
        .collect();
    params.sort();
    let normalized = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut base_uri = format!(
        "{}://{}",
        url.scheme(),
        url.host_str().unwrap_or_default().to_ascii_lowercase()
    );
    if let Some(port) = url.port() {
        base_uri.push_str(&format!(":{port}"));
    }
    base_uri.push_str(url.path());
    let base = format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent(&base_uri),
        percent(&normalized)
    );
    let key = format!("{}&{}", percent(consumer_secret), percent(token_secret));
    // HMAC takes keys of any length, so this never fails; an empty signature would be refused.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The credentials of an OAuth 1.0a A2A authorization.
#[derive(Debug, Clone)]
pub struct Oauth1 {
    /// Consumer key.
    pub consumer_key: String,
    /// Consumer secret.
    pub consumer_secret: Secret,
    /// Token.
    pub token: String,
    /// Token secret.
    pub token_secret: Secret,
}

impl Oauth1 {
    /// The `Authorization` header value for `method url`, with a fresh timestamp and nonce.
    pub fn authorization(&self, method: &str, url: &reqwest::Url) -> String {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        self.header(method, url, &timestamp, &nonce)
    }

    fn header(&self, method: &str, url: &reqwest::Url, timestamp: &str, nonce: &str) -> String {
        let mut oauth = vec![
            ("oauth_consumer_key", self.consumer_key.as_str()),
            ("oauth_nonce", nonce),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", timestamp),
            ("oauth_token", self.token.as_str()),
            ("oauth_version", "1.0"),
        ];
        let sig = signature(
            method,
            url,
            &oauth,
            self.consumer_secret.expose(),
            self.token_secret.expose(),
        );
        oauth.push(("oauth_signature", &sig));
        let fields: Vec<String> = oauth.iter().map(|(k, v)| format!("{k}=\"{}\"", percent(v))).collect();
        format!("OAuth {}", fields.join(", "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// RFC 5849 §1.2: the signed request for the photo.
    #[test]
    fn rfc5849_example_signature() {
        let url = reqwest::Url::parse("http://photos.example.net/photos?file=vacation.jpg&size=original").unwrap();
        let oauth = [
            ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
            ("oauth_token", "nnch734d00sl2jdk"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131202"),
            ("oauth_nonce", "chapoH"),
        ];
        assert_eq!(
            signature("GET", &url, &oauth, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00"),
            "MdpQcU8iPSUjWoN/UDMsK2sui9I="
        );
    }

    #[test]
    fn header_carries_every_parameter_encoded() {
        let o = Oauth1 {
            consumer_key: "ck".into(),
            consumer_secret: Secret::new("cs"),
            token: "t k".into(),
            token_secret: Secret::new("ts"),
        };
        let url = reqwest::Url::parse("https://vault.example/api/pam/session/remotesessions").unwrap();
        let h = o.header("GET", &url, "1", "n");
        assert!(
            h.starts_with("OAuth oauth_consumer_key=\"ck\", oauth_nonce=\"n\""),
            "{h}"
        );
        assert!(
            h.contains("oauth_token=\"t%20k\"") && h.contains("oauth_signature=\""),
            "{h}"
        );
        assert!(
            !h.contains("cs") && !h.contains("ts\""),
            "secrets are not in the header"
        );
        assert_eq!(percent("a b+ü~"), "a%20b%2B%C3%BC~");
    }
}
