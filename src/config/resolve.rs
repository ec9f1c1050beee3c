//! Resolving a parsed tree: validate values, read secret files, find the time zone. What the
//! agent is built from is the result, [`Resolved`]. Nothing here opens a socket.

use super::{AuthMethod, CefConfig, Config, ConfigError, Secret};
use chrono_tz::Tz;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}
/// A loaded, validated config with everything resolved that the agent needs.
#[derive(Debug)]
pub struct Resolved {
    /// The parsed tree.
    pub config: Config,
    /// The client secret, read from the file or the inline value.
    pub client_secret: Secret,
    /// OAuth 1.0a: the token and its secret.
    pub oauth1_token: Option<(String, Secret)>,
    /// The vault's time zone.
    pub timezone: Tz,
    /// True when the zone came from the host, not the config.
    pub timezone_from_host: bool,
    /// The base URL without a trailing slash.
    pub base_url: String,
    /// The vault host name, for `observer.hostname`.
    pub vault_host: String,
}

impl Resolved {
    /// What the vault client is built from.
    pub fn client_settings(&self) -> crate::source::senhasegura::client::ClientSettings {
        let src = &self.config.source;
        crate::source::senhasegura::client::ClientSettings {
            base_url: self.base_url.clone(),
            path: src.path.as_ref().map(|p| p.0.clone()),
            token_path: src.auth.token_path.clone(),
            client_id: src.auth.client_id.0.clone(),
            client_secret: self.client_secret.clone(),
            oauth1_token: self.oauth1_token.clone(),
            ca_file: src.ca_file.clone(),
            insecure: src.insecure,
            connect_timeout: src.connect_timeout.0,
            timeout: src.timeout.0,
            idle_timeout: src.idle_timeout.0,
        }
    }
}
impl Config {
    /// Validate values and resolve secrets and the time zone.
    pub fn resolve(self) -> Result<Resolved, ConfigError> {
        let url = self.source.url.0.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&url).map_err(|e| {
            // An `@` may follow a password (one with a `/` or `#` breaks the parse): not shown.
            let shown = if url.contains('@') {
                "(not shown: it holds an `@`, perhaps a password)".to_string()
            } else {
                format!("`{}`", crate::settings::excerpt(&url))
            };
            invalid("source.url", format!("{shown} is not a URL: {e}"))
        })?;
        // Before anything echoes the URL: it is logged, shown by `check` and `/health`, and
        // kept in the state, and reqwest would send these as Basic credentials.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "source.url",
                "holds a user name or password (`user:...@`); remove them: the agent signs in with source.auth, and the URL is logged, shown by check and /health, and kept in the state",
            ));
        }
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(
                "source.url",
                format!(
                    "`{}` must start with https:// (or http://)",
                    crate::settings::excerpt(&url)
                ),
            ));
        }
        let vault_host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let auth = &self.source.auth;
        if auth.client_id.0.is_empty() {
            return Err(invalid("source.auth.client_id", "must not be empty"));
        }
        let client_secret = one_secret(
            "source.auth.client_secret",
            &auth.client_secret,
            "source.auth.client_secret_file",
            &auth.client_secret_file,
        )?;
        let oauth1_token = match auth.method {
            AuthMethod::Oauth2 => {
                if auth.token.is_some() || auth.token_secret.is_some() || auth.token_secret_file.is_some() {
                    return Err(invalid(
                        "source.auth.token",
                        "token and token_secret are for method = \"oauth1\"",
                    ));
                }
                None
            }
            AuthMethod::Oauth1 => {
                let token = auth
                    .token
                    .as_ref()
                    .map(|t| t.0.clone())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "source.auth.token",
                            "method = \"oauth1\" needs the authorization's token",
                        )
                    })?;
                let secret = one_secret(
                    "source.auth.token_secret",
                    &auth.token_secret,
                    "source.auth.token_secret_file",
                    &auth.token_secret_file,
                )?;
                Some((token, secret))
            }
        };
        if let Some(ca) = &self.source.ca_file {
            regular_file("source.ca_file", ca)?;
        }
        for (key, value) in [
            ("source.timeout", self.source.timeout.0),
            ("source.connect_timeout", self.source.connect_timeout.0),
        ] {
            if value.is_zero() {
                return Err(invalid(
                    key,
                    "must be greater than zero (every request would time out at once)",
                ));
            }
        }
        if self.source.interval.0.is_zero() {
            return Err(invalid("source.interval", "must be greater than zero"));
        }
        if self.source.idle_timeout.0 < Duration::from_secs(1) {
            return Err(invalid("source.idle_timeout", "must be at least 1s"));
        }
        // Joined to the vault's URL as they are: without the slash the host name would run on.
        let listing_path = self.source.path.as_ref().map(|p| p.0.as_str());
        for (key, path) in [
            ("source.path", listing_path),
            ("source.auth.token_path", Some(self.source.auth.token_path.as_str())),
        ] {
            if path.is_some_and(|p| !p.starts_with('/')) {
                return Err(invalid(key, "must start with /"));
            }
        }
        // A zero delay would retry a failing sink (forever, in `run`) or the vault in a tight loop.
        for (key, delay) in [
            ("source.retry_backoff", self.source.retry_backoff.0),
            ("source.retry_backoff_max", self.source.retry_backoff_max.0),
            ("delivery.retry_backoff", self.delivery.retry_backoff.0),
            ("delivery.retry_backoff_max", self.delivery.retry_backoff_max.0),
        ] {
            if delay < MIN_RETRY_DELAY {
                return Err(invalid(key, "must be at least 10ms"));
            }
        }
        self.cef.validate()?;
        self.metrics.address()?;
        if self.state.retention.0 < Duration::from_secs(3600) {
            return Err(invalid("state.retention", "must be at least 1h"));
        }
        let (timezone, timezone_from_host) = match &self.source.timezone {
            Some(name) => (parse_tz(&name.0)?, false),
            None => (host_timezone(), true),
        };
        Ok(Resolved {
            config: self,
            client_secret,
            oauth1_token,
            timezone,
            timezone_from_host,
            base_url: url,
            vault_host,
        })
    }
}

impl CefConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("cef.vendor", &self.vendor),
            ("cef.product", &self.product),
            ("cef.version", &self.version),
        ] {
            if v.0.contains(['\n', '\r']) {
                return Err(invalid(key, "must not contain a line break"));
            }
        }
        for (key, v) in [
            ("cef.severity_start", self.severity_start),
            ("cef.severity_end", self.severity_end),
        ] {
            if v > 10 {
                return Err(invalid(key, format!("{v} is not a CEF severity (0 to 10)")));
            }
        }
        Ok(())
    }
}

fn parse_tz(name: &str) -> Result<Tz, ConfigError> {
    name.trim().parse::<Tz>().map_err(|_| {
        invalid(
            "source.timezone",
            format!("`{name}` is not an IANA time zone name (e.g. \"America/Sao_Paulo\")"),
        )
    })
}

/// The host's IANA zone, or UTC when it cannot be determined.
pub fn host_timezone() -> Tz {
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| name.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

/// A secret given inline or in a file (exactly one of them).
fn one_secret(
    key: &'static str,
    inline: &Option<Secret>,
    file_key: &'static str,
    file: &Option<PathBuf>,
) -> Result<Secret, ConfigError> {
    let secret = match (inline, file) {
        (Some(_), Some(_)) => return Err(invalid(key, format!("set either {key} or {file_key}, not both"))),
        (Some(s), None) => s.clone(),
        (None, Some(path)) => read_secret_file(file_key, path)?,
        (None, None) => {
            return Err(invalid(
                key,
                format!("missing: set {file_key} (recommended) or {key} = \"${{VAR}}\""),
            ))
        }
    };
    if secret.expose().is_empty() {
        return Err(invalid(key, "is empty"));
    }
    Ok(secret)
}

/// The shortest delay before a retry.
const MIN_RETRY_DELAY: Duration = Duration::from_millis(10);

/// A secret file larger than this is not a secret file.
const SECRET_FILE_LIMIT: u64 = 64 * 1024;

/// Check that `path` is a regular file (a FIFO or a device would hang or never end the read).
pub fn regular_file(key: &'static str, path: &Path) -> Result<std::fs::Metadata, ConfigError> {
    let err = |source| ConfigError::SecretFile {
        key,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket, device or directory is refused)",
        )));
    }
    Ok(meta)
}

/// Read a secret from a file: trailing newline trimmed, warns when others can read it.
pub fn read_secret_file(key: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let meta = regular_file(key, path)?;
    let err = |source| ConfigError::SecretFile {
        key,
        path: path.to_path_buf(),
        source,
    };
    if meta.len() > SECRET_FILE_LIMIT {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than 64 KiB, which no secret is",
        )));
    }
    let text = std::fs::read_to_string(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o007 != 0 {
                tracing::warn!(file = %path.display(), key, "Secret file is readable by others; chmod o-rwx it (0600 or 0640)");
            }
        }
    }
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}
