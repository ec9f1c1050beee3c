//! The configuration tree (DESIGN.md §7), its defaults and its validation.
//!
//! Loading is one step: read the file, parse TOML into these `deny_unknown_fields` structs
//! (so an unknown key or a bad value fails with the key and the line), then resolve what
//! needs the outside world (secret files, the time zone). Nothing here opens a socket.

mod values;

pub use values::{expand_with, Backfill, Expanded, HumanDuration, Secret};

use chrono_tz::Tz;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config is read from when neither `-c` nor the environment names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/senhasegura-forwarder/config.toml";
/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "SENHASEGURA_FORWARDER_CONFIG";
/// The v3 documentation's listing path, tried first.
pub const PATH_V3: &str = "/api/pam/session/remotesessions";
/// The v4 documentation's listing path, the fallback on 404.
pub const PATH_V4: &str = "/api/session/remotesessions";
/// The OAuth 2.0 token endpoint.
pub const TOKEN_PATH: &str = "/iso/oauth2/token";

/// A configuration problem: always names the key, file or value at fault (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// TOML syntax, an unknown key, or a bad value (the message has key and line).
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parsed but makes no sense.
    #[error("invalid config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// A secret file that could not be read.
    #[error("cannot read {key} `{path}`: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The vault to poll.
    pub source: SourceConfig,
    /// The dedup store.
    #[serde(default)]
    pub state: StateConfig,
    /// Where events go; at least one. Defaults to one stdout sink with ECS.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkConfig>,
    /// ECS encoder options.
    #[serde(default)]
    pub ecs: EcsConfig,
    /// CEF encoder options.
    #[serde(default)]
    pub cef: CefConfig,
    /// How sinks are retried.
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

/// `[delivery]`: retrying sinks that did not acknowledge.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// First delay before resending to a sink; doubles each retry, with jitter.
    #[serde(default = "default_delivery_backoff")]
    pub retry_backoff: HumanDuration,
    /// Longest delay between resends.
    #[serde(default = "default_delivery_backoff_max")]
    pub retry_backoff_max: HumanDuration,
    /// `once` gives up (exit 4) when a sink still fails after this long; `run` never gives up.
    #[serde(default = "default_give_up_after")]
    pub give_up_after: HumanDuration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_backoff: default_delivery_backoff(),
            retry_backoff_max: default_delivery_backoff_max(),
            give_up_after: default_give_up_after(),
        }
    }
}

fn default_delivery_backoff() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_delivery_backoff_max() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_give_up_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// `[source]`: the senhasegura API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Base URL of the vault, e.g. `https://vault.example.com`.
    pub url: Expanded,
    /// Listing path. Unset: the v3 path, falling back to the v4 path on 404.
    #[serde(default)]
    pub path: Option<Expanded>,
    /// IANA zone of the vault's wall-clock timestamps. Unset: the host's zone (logged).
    #[serde(default)]
    pub timezone: Option<Expanded>,
    /// Time between the starts of two polls in `run`.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Limit for one whole listing (request, headers and body).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Limit for establishing a TCP/TLS connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// How far back the first run forwards: a duration or `"all"`.
    #[serde(default = "default_backfill")]
    pub backfill: Backfill,
    /// Extra CA certificate(s), PEM; when set, only these roots are trusted for the vault.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Turn TLS certificate verification off. Never in production; logged loudly.
    #[serde(default)]
    pub insecure: bool,
    /// Retries of a failed listing (5xx, timeouts, connection errors) before a cycle fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay; doubles each retry, with jitter.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: HumanDuration,
    /// Longest retry delay.
    #[serde(default = "default_retry_backoff_max")]
    pub retry_backoff_max: HumanDuration,
    /// Authentication against the A2A API.
    pub auth: AuthConfig,
}

/// `[source.auth]`: A2A credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `oauth2` (client credentials, default) or `oauth1` (signed requests).
    #[serde(default)]
    pub method: AuthMethod,
    /// The A2A application's client id (OAuth 1.0a: the consumer key).
    #[serde(alias = "consumer_key")]
    pub client_id: Expanded,
    /// The client secret inline (prefer `${VAR}` or `client_secret_file`). OAuth 1.0a: the
    /// consumer secret.
    #[serde(default, alias = "consumer_secret")]
    pub client_secret: Option<Secret>,
    /// A file holding the client (consumer) secret (trailing newline ignored); mode 0600.
    #[serde(default, alias = "consumer_secret_file")]
    pub client_secret_file: Option<PathBuf>,
    /// OAuth 1.0a only: the token.
    #[serde(default)]
    pub token: Option<Expanded>,
    /// OAuth 1.0a only: the token secret inline.
    #[serde(default)]
    pub token_secret: Option<Secret>,
    /// OAuth 1.0a only: a file holding the token secret.
    #[serde(default)]
    pub token_secret_file: Option<PathBuf>,
    /// Token endpoint path (OAuth 2.0).
    #[serde(default = "default_token_path")]
    pub token_path: String,
}

/// Authentication method.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// OAuth 2.0 client credentials.
    #[default]
    Oauth2,
    /// OAuth 1.0a signed requests.
    Oauth1,
}

/// `[state]`: the dedup store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of the store (created 0700).
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// How long delivered keys are remembered; older events are never forwarded.
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
    /// How often the agent writes `backup.jsonl` (a `state export`) into the state directory,
    /// for recovery from a corrupt store; `"0s"` turns it off.
    #[serde(default = "default_backup_every")]
    pub backup_every: HumanDuration,
}

fn default_backup_every() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backup_every: default_backup_every(),
            path: default_state_path(),
            retention: default_retention(),
        }
    }
}

/// Output format of a sink.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Elastic Common Schema JSON, one document per event.
    Ecs,
    /// ArcSight Common Event Format, one line per event.
    Cef,
}

/// `[ecs]`: ECS encoder options.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct EcsConfig {
    /// Put the raw record JSON in `event.original`.
    #[serde(default)]
    pub include_original: bool,
}

/// `[cef]`: CEF header options.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CefConfig {
    /// Device Vendor header field (default senhasegura's own: `MT4`).
    #[serde(default = "default_cef_vendor")]
    pub vendor: Expanded,
    /// Device Product header field.
    #[serde(default = "default_cef_product")]
    pub product: Expanded,
    /// Device Version header field (default the agent's version).
    #[serde(default = "default_cef_version")]
    pub version: Expanded,
    /// Severity (0 to 10) of `start` events.
    #[serde(default = "default_severity")]
    pub severity_start: u8,
    /// Severity (0 to 10) of `end` events.
    #[serde(default = "default_severity")]
    pub severity_end: u8,
}

impl Default for CefConfig {
    fn default() -> Self {
        CefConfig {
            vendor: default_cef_vendor(),
            product: default_cef_product(),
            version: default_cef_version(),
            severity_start: default_severity(),
            severity_end: default_severity(),
        }
    }
}

impl CefConfig {
    /// The encoder options.
    pub fn options(&self) -> crate::encode::cef::CefOptions {
        crate::encode::cef::CefOptions {
            vendor: self.vendor.0.clone(),
            product: self.product.0.clone(),
            version: self.version.0.clone(),
            severity_start: self.severity_start,
            severity_end: self.severity_end,
        }
    }

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

fn default_cef_vendor() -> Expanded {
    Expanded("MT4".into())
}
fn default_cef_product() -> Expanded {
    Expanded("senhasegura".into())
}
fn default_cef_version() -> Expanded {
    Expanded(env!("CARGO_PKG_VERSION").into())
}
fn default_severity() -> u8 {
    3
}

/// `[[sink]]`: one delivery target.
#[derive(Debug, Deserialize, Clone)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// One event per line on standard output.
    Stdout(StdoutSinkConfig),
    /// A syslog server (UDP, TCP, TLS or a unix socket).
    Syslog(Box<crate::sink::syslog::SyslogSinkConfig>),
    /// A Kafka topic.
    Kafka(Box<crate::sink::kafka::KafkaSinkConfig>),
    /// A local file, fsynced per batch (the packaged default).
    File(crate::sink::file::FileSinkConfig),
}

/// `type = "stdout"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `ecs` (default) or `cef`.
    #[serde(default = "default_format_ecs")]
    pub format: Format,
}

impl SinkConfig {
    /// The format this sink emits.
    pub fn format(&self) -> Format {
        match self {
            SinkConfig::Stdout(s) => s.format,
            SinkConfig::Syslog(s) => s.format,
            SinkConfig::Kafka(s) => s.format,
            SinkConfig::File(s) => s.format,
        }
    }
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::File(_) => "file",
        }
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_backfill() -> Backfill {
    Backfill::Since(Duration::from_secs(24 * 3600))
}
fn default_retries() -> u32 {
    5
}
fn default_retry_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_retry_backoff_max() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_token_path() -> String {
    TOKEN_PATH.to_string()
}
fn default_state_path() -> PathBuf {
    PathBuf::from("/var/lib/senhasegura-forwarder")
}
fn default_retention() -> HumanDuration {
    HumanDuration(Duration::from_secs(90 * 86400))
}
fn default_format_ecs() -> Format {
    Format::Ecs
}

/// The config file to read: `-c`, else the environment, else the default path.
pub fn config_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
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

impl Config {
    /// Parse TOML text; `origin` names the file in messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().replace("\n", "\n  "),
        })?;
        if config.sinks.is_empty() {
            config
                .sinks
                .push(SinkConfig::Stdout(StdoutSinkConfig { format: Format::Ecs }));
        }
        Ok(config)
    }

    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Validate values and resolve secrets and the time zone.
    pub fn resolve(self) -> Result<Resolved, ConfigError> {
        let url = self.source.url.0.trim().trim_end_matches('/').to_string();
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| invalid("source.url", format!("`{url}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(
                "source.url",
                format!("`{url}` must start with https:// (or http://)"),
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
            std::fs::metadata(ca).map_err(|source| ConfigError::SecretFile {
                key: "source.ca_file",
                path: ca.clone(),
                source,
            })?;
        }
        if self.source.interval.0.is_zero() {
            return Err(invalid("source.interval", "must be greater than zero"));
        }
        self.cef.validate()?;
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

/// Read a secret from a file: trailing newline trimmed, warns when others can read it.
pub fn read_secret_file(key: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        path: path.to_path_buf(),
        source,
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    const MINIMAL: &str = "[source]\nurl = \"https://v\"\n[source.auth]\nclient_id = \"a\"\nclient_secret = \"b\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.sinks.len(), 1);
        assert_eq!(c.source.interval.0, Duration::from_secs(60));
        assert_eq!(c.state.retention.0, Duration::from_secs(90 * 86400));
        let r = c.resolve().unwrap();
        assert_eq!(r.vault_host, "v");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse(&format!("{MINIMAL}[state]\npath = \"/x\"\nretension = \"1d\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("retension"), "{err}");
        assert!(err.contains("line 8"), "{err}");
    }

    #[test]
    fn unknown_sink_key_is_rejected() {
        let err = parse(&format!("{MINIMAL}[[sink]]\ntype = \"stdout\"\nformt = \"ecs\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("formt"), "{err}");
    }

    #[test]
    fn bad_duration_names_value() {
        let err = parse(&MINIMAL.replace("[source.auth]", "interval = \"soon\"\n[source.auth]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("soon") && err.contains("interval") || err.contains("line 3"),
            "{err}"
        );
    }

    #[test]
    fn bad_timezone_is_an_error() {
        let c = parse(&MINIMAL.replace("[source.auth]", "timezone = \"Mars/Base\"\n[source.auth]")).unwrap();
        assert!(c.resolve().unwrap_err().to_string().contains("Mars/Base"));
    }
}
