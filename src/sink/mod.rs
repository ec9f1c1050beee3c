//! Sinks deliver encoded events and say when they are safe: `deliver` returns `Ok` only once
//! every frame of the batch is acknowledged (written and flushed for streams; a delivery
//! report for Kafka). Sinks see bytes plus a small envelope ([`EventMeta`]), never records,
//! and they do not know ECS or CEF.

pub mod file;
pub mod kafka;
pub mod kafka_log;
pub mod stdout;
pub mod syslog;

use crate::encode::Format;
use crate::key::EventKey;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A sink failure.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output is gone for good (e.g. stdout's reader closed the pipe): stop cleanly.
    #[error("{sink} sink closed: {message}")]
    Closed { sink: &'static str, message: String },
    /// Delivery failed; may succeed on retry.
    #[error("{sink} sink failed: {message}")]
    Failed { sink: &'static str, message: String },
    /// Delivery cannot work until the configuration or the server changes (e.g. a certificate
    /// that does not verify): not retried within the cycle.
    #[error("{sink} sink failed: {message}")]
    Rejected { sink: &'static str, message: String },
    /// Delivery kept failing until the retry time ran out.
    #[error("{sink} sink did not acknowledge after retrying for {seconds}s: {message}")]
    GaveUp {
        sink: &'static str,
        seconds: u64,
        message: String,
    },
}

/// What a sink may need besides the payload (Kafka key and headers, syslog MSGID and time).
#[derive(Debug, Clone)]
pub struct EventMeta {
    /// The event's key: its session (the Kafka message key) and phase.
    pub key: EventKey,
    /// The event's own time.
    pub time: DateTime<Utc>,
    /// The envelope tenant (one allocation shared by the events of a listing).
    pub tenant: Option<std::sync::Arc<str>>,
    /// The deterministic event id.
    pub event_id: crate::event::EventId,
}

/// One encoded event for one sink.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Envelope facts.
    pub meta: &'a EventMeta,
    /// The encoded event (no trailing newline).
    pub payload: &'a [u8],
}

/// `[[sink]]`: one delivery target.
#[derive(Debug, Deserialize, Clone)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// One event per line on standard output.
    Stdout(StdoutSinkConfig),
    /// A syslog server (UDP, TCP, TLS or a unix socket).
    Syslog(Box<syslog::SyslogSinkConfig>),
    /// A Kafka topic.
    Kafka(Box<kafka::KafkaSinkConfig>),
    /// A local file, fsynced per batch (the packaged default).
    File(file::FileSinkConfig),
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

fn default_format_ecs() -> Format {
    Format::Ecs
}

/// The configured sinks (static dispatch; each variant one file).
#[derive(Debug)]
pub enum Sink {
    /// Standard output.
    Stdout(stdout::StdoutSink),
    /// A syslog server.
    Syslog(Box<syslog::SyslogSink>),
    /// A Kafka topic.
    Kafka(Box<kafka::KafkaSink>),
    /// A local file, fsynced per batch.
    File(file::FileSink),
}

impl Sink {
    /// Build the sink a config entry describes.
    pub fn from_config(config: &SinkConfig) -> Result<Sink, crate::settings::ConfigError> {
        Ok(match config {
            SinkConfig::Stdout(_) => Sink::Stdout(stdout::StdoutSink::new()),
            SinkConfig::Syslog(c) => Sink::Syslog(Box::new(syslog::SyslogSink::new(c)?)),
            SinkConfig::Kafka(c) => Sink::Kafka(Box::new(kafka::KafkaSink::new(c)?)),
            SinkConfig::File(c) => Sink::File(file::FileSink::new(c)?),
        })
    }

    /// Check a config entry without the network (`check --offline`): as
    /// [`Sink::from_config`], but a Kafka producer is built without its brokers, so librdkafka
    /// checks every property, CA and key file and resolves no name.
    pub fn validate(config: &SinkConfig) -> Result<(), crate::settings::ConfigError> {
        match config {
            SinkConfig::Kafka(c) => kafka::KafkaSink::validate(c),
            other => Sink::from_config(other).map(drop),
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Stdout(_) => "stdout",
            Sink::Syslog(_) => "syslog",
            Sink::Kafka(_) => "kafka",
            Sink::File(_) => "file",
        }
    }

    /// Deliver a batch; `Ok` means every frame was acknowledged.
    pub async fn deliver(&mut self, frames: &[Frame<'_>]) -> Result<(), SinkError> {
        match self {
            Sink::Stdout(s) => s.deliver(frames).await,
            Sink::Syslog(s) => s.deliver(frames).await,
            Sink::Kafka(s) => s.deliver(frames).await,
            Sink::File(s) => s.deliver(frames).await,
        }
    }

    /// The events of the batch just acknowledged that this sink refused for good (only Kafka
    /// does: a message over its size limit), with why. They are not delivered: not committed.
    pub fn take_rejected(&mut self) -> Vec<(crate::key::EventKey, String)> {
        match self {
            Sink::Kafka(s) => s.take_rejected(),
            Sink::Stdout(_) | Sink::Syslog(_) | Sink::File(_) => Vec::new(),
        }
    }

    /// Flush and close connections (at exit).
    pub async fn close(&mut self) {
        match self {
            Sink::Stdout(_) | Sink::File(_) => {}
            Sink::Syslog(s) => s.close().await,
            Sink::Kafka(s) => s.close().await,
        }
    }

    /// Check that the sink can take events (for `check`).
    pub async fn health_check(&mut self) -> Result<String, SinkError> {
        match self {
            Sink::Stdout(_) => Ok("standard output is writable".into()),
            Sink::Syslog(s) => s.health_check().await,
            Sink::Kafka(s) => s.health_check().await,
            Sink::File(s) => s.health_check().await,
        }
    }
}
