//! The TOML tree: the `deny_unknown_fields` structs of the config file, a doc comment per
//! field, and their named defaults. Validation and resolving live in `resolve.rs`.

use super::{Backfill, Expanded, HumanDuration, Secret, SinkConfig, StdoutSinkConfig, TOKEN_PATH};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Output format of a sink (the encoders' own type).
pub use crate::encode::Format;

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
    /// The Prometheus `/metrics` and `/health` endpoint (off unless `listen` is set).
    #[serde(default)]
    pub metrics: crate::telemetry::MetricsConfig,
    /// How outages are logged.
    #[serde(default)]
    pub log: crate::telemetry::LogConfig,
}

impl Config {
    /// A config built in code rather than read (as `demo` does): `source` as given, every
    /// other section at the defaults a file with only `[source]` gets.
    pub fn new(source: SourceConfig) -> Config {
        Config {
            source,
            state: StateConfig::default(),
            sinks: vec![default_sink()],
            ecs: EcsConfig::default(),
            cef: CefConfig::default(),
            delivery: DeliveryConfig::default(),
            metrics: Default::default(),
            log: Default::default(),
        }
    }
}

/// The sink of a config that names none: stdout, ECS.
pub(super) fn default_sink() -> SinkConfig {
    SinkConfig::Stdout(StdoutSinkConfig { format: Format::Ecs })
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
    /// Limit for a pause in the middle of the listing's body: the vault stopped sending.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// How far back the first run forwards: a duration or `"all"`.
    #[serde(default = "default_backfill")]
    pub backfill: Backfill,
    /// Extra CA certificate(s), PEM; when set, only these roots are trusted for the vault.
    #[serde(default)]
    #[serde(deserialize_with = "crate::settings::expand::opt_path")]
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

impl SourceConfig {
    /// `[source]` with the vault's URL and credentials, everything else at its default.
    pub fn new(url: impl Into<String>, auth: AuthConfig) -> SourceConfig {
        SourceConfig {
            url: Expanded(url.into()),
            path: None,
            timezone: None,
            interval: default_interval(),
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            idle_timeout: default_idle_timeout(),
            backfill: default_backfill(),
            ca_file: None,
            insecure: false,
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
            retry_backoff_max: default_retry_backoff_max(),
            auth,
        }
    }
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
    #[serde(deserialize_with = "crate::settings::expand::opt_path")]
    pub client_secret_file: Option<PathBuf>,
    /// OAuth 1.0a only: the token.
    #[serde(default)]
    pub token: Option<Expanded>,
    /// OAuth 1.0a only: the token secret inline.
    #[serde(default)]
    pub token_secret: Option<Secret>,
    /// OAuth 1.0a only: a file holding the token secret.
    #[serde(default)]
    #[serde(deserialize_with = "crate::settings::expand::opt_path")]
    pub token_secret_file: Option<PathBuf>,
    /// Token endpoint path (OAuth 2.0).
    #[serde(default = "default_token_path")]
    #[serde(deserialize_with = "crate::settings::expand::string")]
    pub token_path: String,
}

impl AuthConfig {
    /// OAuth 2.0 client credentials, the secret given inline.
    pub fn client_credentials(client_id: impl Into<String>, client_secret: Secret) -> AuthConfig {
        AuthConfig {
            method: AuthMethod::Oauth2,
            client_id: Expanded(client_id.into()),
            client_secret: Some(client_secret),
            client_secret_file: None,
            token: None,
            token_secret: None,
            token_secret_file: None,
            token_path: default_token_path(),
        }
    }
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
    #[serde(deserialize_with = "crate::settings::expand::path")]
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
}

// The CEF defaults are the encoder's own (`CefOptions::default`), written once.
fn default_cef_vendor() -> Expanded {
    Expanded(crate::encode::cef::CefOptions::default().vendor)
}
fn default_cef_product() -> Expanded {
    Expanded(crate::encode::cef::CefOptions::default().product)
}
fn default_cef_version() -> Expanded {
    Expanded(crate::encode::cef::CefOptions::default().version)
}
fn default_severity() -> u8 {
    crate::encode::cef::CefOptions::default().severity_start
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
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
