//! The `[metrics]` (endpoint address) and `[log]` (outage reminders) configuration sections.

use crate::settings::{ConfigError, Expanded, HumanDuration};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// `[metrics]`: the Prometheus and health endpoint.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` serving `/metrics` (Prometheus text format) and `/health` (JSON), e.g.
    /// `"127.0.0.1:9464"`. Unset: no endpoint. It has no authentication: keep it on loopback
    /// or a management network.
    #[serde(default)]
    pub listen: Option<Expanded>,
}

impl MetricsConfig {
    /// The address to listen on, checked.
    pub fn address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        listen
            .0
            .trim()
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|e| ConfigError::Invalid {
                key: "metrics.listen",
                message: format!(
                    "`{}` is not an IP address and port such as 127.0.0.1:9464 ({e})",
                    listen.0
                ),
            })
    }
}

/// `[log]`: how outages are logged.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// While the source or a sink stays down, repeat its "still down" line this often.
    #[serde(default = "default_outage_reminder")]
    pub outage_reminder: HumanDuration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            outage_reminder: default_outage_reminder(),
        }
    }
}

fn default_outage_reminder() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
