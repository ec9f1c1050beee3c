//! The syslog sink: RFC 5424 (default) or RFC 3164 envelopes ([`envelope`]) over UDP, TCP,
//! TLS or unix sockets ([`transport`]). A batch is acknowledged once it was written and flushed
//! on a stream, or every datagram was sent. A broken stream is dropped; the pipeline retries
//! the batch with backoff, and the sink reconnects and resends the whole unacknowledged batch
//! (so repeats are bounded by one batch). Certificate failures are not retried within a cycle.

pub mod envelope;
pub mod transport;

use super::{Frame, SinkError};
use crate::encode::Format;
use crate::settings::{ConfigError, Expanded, HumanDuration};
use envelope::{Envelope, Framing, Protocol};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use transport::{Conn, ConnectError, TlsSettings, Transport, UnixMode};

/// `type = "syslog"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// `udp`, `tcp` (default), `tls` or `unix`.
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// `host:port` (default port 514, 6514 for TLS), or the socket path for `unix`.
    pub address: Expanded,
    /// `rfc5424` (default) or `rfc3164`.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// Stream framing: `octet-counting` (default) or `newline`.
    #[serde(default = "default_framing")]
    pub framing: Framing,
    /// `cef` (default) or `ecs`.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Facility name (default `authpriv`).
    #[serde(default = "default_facility")]
    #[serde(deserialize_with = "crate::settings::expand::string")]
    pub facility: String,
    /// Severity name (default `info`).
    #[serde(default = "default_severity")]
    #[serde(deserialize_with = "crate::settings::expand::string")]
    pub severity: String,
    /// APP-NAME (default `senhasegura-forwarder`).
    #[serde(default = "default_app_name")]
    #[serde(deserialize_with = "crate::settings::expand::string")]
    pub app_name: String,
    /// HOSTNAME (default this host's name).
    #[serde(default)]
    #[serde(deserialize_with = "crate::settings::expand::opt_string")]
    pub hostname: Option<String>,
    /// MSGID of start events.
    #[serde(default = "default_msgid_start")]
    #[serde(deserialize_with = "crate::settings::expand::string")]
    pub msgid_start: String,
    /// MSGID of end events.
    #[serde(default = "default_msgid_end")]
    #[serde(deserialize_with = "crate::settings::expand::string")]
    pub msgid_end: String,
    /// Datagram size limit (udp, unix datagram); longer messages are truncated and counted.
    #[serde(default = "default_max_datagram")]
    pub max_datagram_bytes: usize,
    /// `datagram` (default, like /dev/log) or `stream`, for `transport = "unix"`.
    #[serde(default)]
    pub unix_mode: UnixMode,
    /// Accept ECS documents cut at `max_datagram_bytes` (invalid JSON) on a datagram
    /// transport. Off: `format = "ecs"` over udp or a unix datagram socket is refused.
    #[serde(default)]
    pub allow_truncated_json: bool,
    /// CA certificate(s) to verify the server (default: the system's).
    #[serde(default)]
    #[serde(deserialize_with = "crate::settings::expand::opt_path")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM chain) for mutual TLS.
    #[serde(default)]
    #[serde(deserialize_with = "crate::settings::expand::opt_path")]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[serde(default)]
    #[serde(deserialize_with = "crate::settings::expand::opt_path")]
    pub client_key: Option<PathBuf>,
    /// Name the server certificate must carry (default: the address's host).
    #[serde(default)]
    #[serde(deserialize_with = "crate::settings::expand::opt_string")]
    pub server_name: Option<String>,
    /// Limit for connecting (and the TLS handshake).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Limit for writing one batch.
    #[serde(default = "default_write_timeout")]
    pub write_timeout: HumanDuration,
}

fn default_transport() -> Transport {
    Transport::Tcp
}
fn default_protocol() -> Protocol {
    Protocol::Rfc5424
}
fn default_framing() -> Framing {
    Framing::OctetCounting
}
fn default_format() -> Format {
    Format::Cef
}
fn default_facility() -> String {
    "authpriv".into()
}
fn default_severity() -> String {
    "info".into()
}
fn default_app_name() -> String {
    "senhasegura-forwarder".into()
}
fn default_msgid_start() -> String {
    "session-start".into()
}
fn default_msgid_end() -> String {
    "session-end".into()
}
fn default_max_datagram() -> usize {
    2048
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_write_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// This host's name, for HOSTNAME.
fn system_hostname() -> String {
    let name = rustix::system::uname().nodename().to_string_lossy().into_owned();
    if envelope::valid_header_field(&name, 255) {
        name
    } else {
        "-".into()
    }
}

/// The syslog sink.
pub struct SyslogSink {
    transport: Transport,
    unix_mode: UnixMode,
    address: String,
    framing: Framing,
    envelope: Envelope,
    max_datagram: usize,
    tls: Option<(Arc<rustls::ClientConfig>, TlsSettings)>,
    connect_timeout: Duration,
    write_timeout: Duration,
    conn: Option<Conn>,
    buf: Vec<u8>,
    msg: Vec<u8>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("transport", &self.transport)
            .field("address", &self.address)
            .finish()
    }
}

impl SyslogSink {
    /// Validate the config and build the sink (no connection yet).
    pub fn new(c: &SyslogSinkConfig) -> Result<SyslogSink, ConfigError> {
        let facility: syslog::Facility = c.facility.parse().map_err(|_| {
            invalid(
                "sink.facility",
                format!("`{}` is not a syslog facility", crate::settings::excerpt(&c.facility)),
            )
        })?;
        let severity = envelope::parse_severity(&c.severity).ok_or_else(|| {
            invalid(
                "sink.severity",
                format!("`{}` is not a syslog severity", crate::settings::excerpt(&c.severity)),
            )
        })?;
        let hostname = c.hostname.clone().unwrap_or_else(system_hostname);
        for (key, value, max) in [
            ("sink.hostname", &hostname, 255),
            ("sink.app_name", &c.app_name, 48),
            ("sink.msgid_start", &c.msgid_start, 32),
            ("sink.msgid_end", &c.msgid_end, 32),
        ] {
            if !envelope::valid_header_field(value, max) {
                return Err(invalid(
                    key,
                    format!(
                        "`{}` must be 1 to {max} printable ASCII characters without spaces",
                        crate::settings::excerpt(value)
                    ),
                ));
            }
        }
        let mut address = c.address.0.trim().to_string();
        if address.is_empty() {
            return Err(invalid("sink.address", "must not be empty"));
        }
        if c.transport != Transport::Unix && !address.contains(':') {
            address.push_str(if c.transport == Transport::Tls { ":6514" } else { ":514" });
        }
        if c.max_datagram_bytes < 480 {
            return Err(invalid(
                "sink.max_datagram_bytes",
                "must be at least 480 (RFC 5424 minimum)",
            ));
        }
        let datagram =
            c.transport == Transport::Udp || (c.transport == Transport::Unix && c.unix_mode == UnixMode::Datagram);
        if datagram && c.format == Format::Ecs && !c.allow_truncated_json {
            return Err(invalid(
                "sink.format",
                format!(
                    "format = \"ecs\" over a datagram transport would cut documents longer than max_datagram_bytes ({}) into invalid JSON; use transport = \"tcp\", \"tls\" or unix_mode = \"stream\", or format = \"cef\", or set allow_truncated_json = true to accept cut documents",
                    c.max_datagram_bytes
                ),
            ));
        }
        let tls = if c.transport == Transport::Tls {
            let settings = TlsSettings {
                ca_file: c.ca_file.clone(),
                client_cert: c.client_cert.clone(),
                client_key: c.client_key.clone(),
                server_name: c.server_name.clone(),
            };
            let config = transport::tls_config(&settings).map_err(|(key, e)| invalid(key, e))?;
            Some((config, settings))
        } else {
            None
        };
        Ok(SyslogSink {
            transport: c.transport,
            unix_mode: c.unix_mode,
            address,
            framing: c.framing,
            envelope: Envelope {
                protocol: c.protocol,
                pri: envelope::pri(facility, severity),
                hostname,
                app_name: c.app_name.clone(),
                procid: std::process::id().to_string(),
                msgid_start: c.msgid_start.clone(),
                msgid_end: c.msgid_end.clone(),
            },
            max_datagram: c.max_datagram_bytes,
            tls,
            connect_timeout: c.connect_timeout.0,
            write_timeout: c.write_timeout.0,
            conn: None,
            buf: Vec::with_capacity(1 << 16),
            msg: Vec::with_capacity(4096),
        })
    }

    /// `transport://address`, for logs.
    pub fn target(&self) -> String {
        format!("{:?}://{}", self.transport, self.address).to_lowercase()
    }

    async fn connection(&mut self) -> Result<&mut Conn, SinkError> {
        if self.conn.as_mut().is_some_and(|c| !c.is_alive()) {
            tracing::info!(target = %self.target(), "Syslog server closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            let tls = self.tls.as_ref().map(|(c, s)| (c, s));
            let conn = transport::connect(self.transport, self.unix_mode, &self.address, tls, self.connect_timeout)
                .await
                .map_err(|e| match e {
                    ConnectError::Transient(message) => SinkError::Failed {
                        sink: "syslog",
                        message,
                    },
                    ConnectError::Fatal(message) => SinkError::Rejected {
                        sink: "syslog",
                        message,
                    },
                })?;
            tracing::debug!(target = %self.target(), "Connected to the syslog server");
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Deliver a batch; `Ok` once all of it was written and flushed (streams) or sent.
    pub async fn deliver(&mut self, frames: &[Frame<'_>]) -> Result<(), SinkError> {
        let framing = self.framing;
        let max = self.max_datagram;
        let write_timeout = self.write_timeout;
        let datagram = matches!(self.transport, Transport::Udp)
            || (self.transport == Transport::Unix && self.unix_mode == UnixMode::Datagram);
        let (mut truncated, mut rewrapped) = (0u64, 0u64);
        self.buf.clear();
        if !datagram {
            for f in frames {
                self.msg.clear();
                self.envelope.write(f.meta, f.payload, &mut self.msg);
                if envelope::frame(framing, &self.msg, &mut self.buf) {
                    rewrapped += 1;
                }
            }
        }
        let mut msg = std::mem::take(&mut self.msg);
        let buf = std::mem::take(&mut self.buf);
        let result = async {
            let envelope = self.envelope.clone();
            let conn = self.connection().await?;
            let io = |e: std::io::Error| SinkError::Failed {
                sink: "syslog",
                message: format!("write failed: {e}"),
            };
            let send = async {
                if datagram {
                    for f in frames {
                        msg.clear();
                        envelope.write(f.meta, f.payload, &mut msg);
                        if envelope::truncate_utf8(&mut msg, max) {
                            truncated += 1;
                        }
                        conn.send(&msg).await.map_err(io)?;
                    }
                    Ok(())
                } else {
                    conn.write_all(&buf).await.map_err(io)
                }
            };
            tokio::time::timeout(write_timeout, send).await.unwrap_or_else(|_| {
                Err(SinkError::Failed {
                    sink: "syslog",
                    message: format!("write timed out after {write_timeout:?}"),
                })
            })
        }
        .await;
        self.msg = msg;
        self.buf = buf;
        if result.is_err() {
            self.conn = None;
        }
        if truncated > 0 {
            tracing::warn!(
                count = truncated,
                limit = max,
                "Syslog messages truncated to the datagram size limit"
            );
        }
        if rewrapped > 0 {
            tracing::warn!(count = rewrapped, "Line breaks replaced by spaces for newline framing");
        }
        result
    }

    /// Close the connection politely.
    pub async fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// Connect (and handshake) now.
    pub async fn health_check(&mut self) -> Result<String, SinkError> {
        self.conn = None;
        let datagram = self.connection().await?.is_datagram();
        Ok(if datagram {
            // UDP (and unix datagrams) have no handshake: nothing on the other side answered.
            format!(
                "socket ready for {} (datagrams are not acknowledged: delivery cannot be confirmed)",
                self.target()
            )
        } else {
            format!("connected to {}", self.target())
        })
    }
}
