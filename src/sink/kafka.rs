//! The Kafka sink: an rdkafka `FutureProducer`, message key = session id (a session's start
//! and end land in one partition, in order), headers `phase`, `event_id` and `tenant`, the
//! payload in the sink's format. A batch is acknowledged only when every message's delivery
//! report succeeded. Messages acknowledged by the broker are remembered while their batch is
//! retried, so a retry resends only what failed, with a new producer.
//!
//! Producer defaults for at-least-once without producer duplicates: `acks=all`,
//! `enable.idempotence=true`, `compression.type=zstd`, `message.timeout.ms=30000`; any
//! librdkafka property can be set (or overridden) in `[sink.properties]`, and a bad one fails
//! at start with librdkafka's own words.

use super::{Frame, SinkError};
use crate::encode::Format;
use crate::key::EventKey;
use crate::settings::{ConfigError, Expanded};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::kafka_log::KafkaLogContext;

/// The producer, with librdkafka's log lines deduplicated.
type LoggedProducer = FutureProducer<KafkaLogContext>;

/// `type = "kafka"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: Expanded,
    /// Topic to produce to (it must exist, or the cluster must create topics on demand).
    pub topic: Expanded,
    /// `ecs` (default) or `cef`.
    #[serde(default = "default_format")]
    pub format: Format,
    /// librdkafka properties, passed as they are (`security.protocol`, `sasl.*`, `ssl.*`,
    /// `compression.type`, ...). Values expand `${VAR}`; they are never logged.
    #[serde(default)]
    pub properties: BTreeMap<String, Expanded>,
}

fn default_format() -> Format {
    Format::Ecs
}

/// The producer defaults (before `[sink.properties]`).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("compression.type", "zstd"),
    ("message.timeout.ms", "30000"),
    ("linger.ms", "5"),
    ("client.id", "senhasegura-forwarder"),
];

/// The Kafka sink.
pub struct KafkaSink {
    producer: LoggedProducer,
    log: KafkaLogContext,
    config: ClientConfig,
    topic: String,
    brokers: String,
    /// Keys of the current batch the broker already acknowledged.
    acked: HashSet<EventKey>,
    /// Events of the current batch refused for good (larger than the producer's
    /// `message.max.bytes`, which librdkafka checks per message), with why: not retried, not
    /// acknowledged ([`KafkaSink::take_rejected`]). A broker's refusal of a request as too
    /// large is not one of them: it names every message of the request, small ones too, so it
    /// is an ordinary failure (retried, the sink reported down).
    rejected: Vec<(EventKey, String)>,
}

/// A refusal that no retry changes: at enqueue, the message is larger than the producer's
/// `message.max.bytes`.
fn is_permanent(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish()
    }
}

/// The librdkafka configuration of a sink config.
pub fn client_config(c: &KafkaSinkConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in DEFAULTS {
        cc.set(*k, *v);
    }
    cc.set("bootstrap.servers", c.brokers.0.trim());
    for (k, v) in &c.properties {
        cc.set(k, &v.0);
    }
    cc
}

/// The producer for `config`, after the checks librdkafka does not make.
fn producer(c: &KafkaSinkConfig, config: &ClientConfig, log: KafkaLogContext) -> Result<LoggedProducer, ConfigError> {
    if c.brokers.0.trim().is_empty() {
        return Err(ConfigError::Invalid {
            key: "sink.brokers",
            message: "must not be empty".into(),
        });
    }
    if c.topic.0.trim().is_empty() {
        return Err(ConfigError::Invalid {
            key: "sink.topic",
            message: "must not be empty".into(),
        });
    }
    config.create_with_context(log).map_err(|e| ConfigError::Invalid {
        key: "sink.properties",
        message: format!("librdkafka refused the producer configuration: {}", refusal(&e)),
    })
}

/// librdkafka's refusal without the property's value: its text is "<description> <property>
/// <value>", and the value may be a password. The description names properties in quotes (the
/// canonical name, e.g. "queue.buffering.max.ms" for linger.ms) and may hold the value as well,
/// quoted (`Invalid value "x" for configuration property "y"`) or not (`...: x`): every
/// occurrence of the value, whole or by its comma-separated parts, is cut, and then any quoted
/// part after "value ".
fn refusal(e: &rdkafka::error::KafkaError) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
            format!(
                "{} (property `{}`)",
                crate::settings::printable(&without_value(description, value), 200),
                crate::settings::excerpt(key)
            )
        }
        other => other.to_string(),
    }
}

/// `description` with `value` (and its comma-separated parts, trimmed) cut out and any quoted
/// part after "value " replaced by `…`.
fn without_value(description: &str, value: &str) -> String {
    let mut text = description.to_string();
    let mut pieces: Vec<&str> = value.split(',').map(str::trim).collect();
    pieces.push(value);
    pieces.push(value.trim());
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
        text = text.replace(piece, "…");
    }
    let parts: Vec<&str> = text.split('"').collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 if parts[i - 1].ends_with("value ") => "`…`".to_string(),
            1 => format!("`{part}`"),
            _ => part.to_string(),
        })
        .collect()
}

impl KafkaSink {
    /// Validate `c` as [`KafkaSink::new`] does, with a producer that has no brokers to
    /// resolve or connect to (`check --offline`).
    pub fn validate(c: &KafkaSinkConfig) -> Result<(), ConfigError> {
        let mut config = client_config(c);
        config.remove("bootstrap.servers");
        // librdkafka's notice that there is no broker is the point here, not news.
        producer(c, &config, KafkaLogContext::quiet()).map(drop)
    }

    /// Create the producer; librdkafka validates every property here.
    pub fn new(c: &KafkaSinkConfig) -> Result<KafkaSink, ConfigError> {
        let config = client_config(c);
        let log = KafkaLogContext::default();
        let producer = producer(c, &config, log.clone())?;
        Ok(KafkaSink {
            producer,
            log,
            config,
            topic: c.topic.0.trim().to_string(),
            brokers: c.brokers.0.trim().to_string(),
            acked: HashSet::new(),
            rejected: Vec::new(),
        })
    }

    /// Produce a batch; `Ok` once every message has a successful delivery report.
    pub async fn deliver(&mut self, frames: &[Frame<'_>]) -> Result<(), SinkError> {
        if !frames.iter().any(|f| self.acked.contains(&f.meta.key)) {
            // A new batch.
            self.acked.clear();
            self.rejected.clear();
        }
        let mut pending = Vec::with_capacity(frames.len());
        for f in frames {
            if self.acked.contains(&f.meta.key) {
                continue;
            }
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "phase",
                    value: Some(f.meta.key.phase().as_str()),
                })
                .insert(Header {
                    key: "event_id",
                    value: Some(f.meta.event_id.as_str()),
                });
            if let Some(t) = &f.meta.tenant {
                headers = headers.insert(Header {
                    key: "tenant",
                    value: Some(&**t),
                });
            }
            let mut record = FutureRecord::to(&self.topic)
                .key(f.meta.key.session_id().as_bytes())
                .payload(f.payload)
                .headers(headers)
                .timestamp(f.meta.time.timestamp_millis());
            let future = loop {
                match self.producer.send_result(record) {
                    Ok(future) => break Some(future),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) if is_permanent(&e) => break None,
                    Err((e, _)) => {
                        return Err(SinkError::Failed {
                            sink: "kafka",
                            message: format!("cannot enqueue: {e}"),
                        })
                    }
                }
            };
            let Some(future) = future else {
                self.reject(&f.meta.key, f.payload.len());
                continue;
            };
            pending.push((&f.meta.key, future));
        }
        let mut first_error = None;
        let mut failed = 0usize;
        for (key, future) in pending {
            match future.await {
                Ok(Ok(_)) => {
                    self.acked.insert(key.clone());
                }
                Ok(Err((e, _))) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| "the producer dropped the delivery report".into());
                }
            }
        }
        if first_error.is_some() {
            self.renew_producer();
        }
        match first_error {
            None => {
                self.acked.clear();
                Ok(())
            }
            Some(e) => Err(SinkError::Failed {
                sink: "kafka",
                message: format!(
                    "{failed} of {} messages not delivered to {} ({}): {e}",
                    frames.len(),
                    self.topic,
                    self.brokers
                ),
            }),
        }
    }

    /// Refuse `key` (a `size`-byte message) for good in this batch: counted as done for its
    /// retries, and reported.
    fn reject(&mut self, key: &EventKey, size: usize) {
        self.acked.insert(key.clone());
        self.rejected.push((
            key.clone(),
            format!("a {size}-byte message is larger than the producer's message.max.bytes"),
        ));
    }

    /// The events of the batch just acknowledged that Kafka refused for good, with why.
    pub fn take_rejected(&mut self) -> Vec<(EventKey, String)> {
        std::mem::take(&mut self.rejected)
    }

    /// Replace the producer after a failed delivery. An idempotent producer whose messages
    /// timed out must re-establish its producer id and sequence with the broker, and a broker
    /// that came back without that state (seen with tansu's memory storage) can leave it stuck
    /// for good; librdkafka reports no fatal error then. A new producer starts clean: messages
    /// the broker did not acknowledge are resent by the retry, as at-least-once allows.
    fn renew_producer(&mut self) {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(?code, reason, "Kafka producer hit a fatal error");
        }
        match self.config.create_with_context::<_, LoggedProducer>(self.log.clone()) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.producer, fresh);
                // Dropping purges and flushes for up to 500 ms: not on the async runtime.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => tracing::error!(error = %refusal(&e), "Cannot create a new Kafka producer; keeping the old one"),
        }
    }

    /// Ask the brokers for the topic's metadata.
    pub async fn health_check(&mut self) -> Result<String, SinkError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(|e| SinkError::Failed {
                    sink: "kafka",
                    message: format!("no metadata from {brokers}: {e}"),
                })?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .ok_or_else(|| SinkError::Failed {
                    sink: "kafka",
                    message: format!("topic {topic} is not in the metadata from {brokers}"),
                })?;
            if let Some(err) = t.error() {
                return Err(SinkError::Failed {
                    sink: "kafka",
                    message: format!(
                        "topic {topic}: {:?} (create it, or check the ACLs)",
                        RDKafkaErrorCode::from(err)
                    ),
                });
            }
            Ok(format!(
                "topic {topic} has {} partition(s) on {} broker(s)",
                t.partitions().len(),
                md.brokers().len()
            ))
        })
        .await
        .map_err(|e| SinkError::Failed {
            sink: "kafka",
            message: e.to_string(),
        })?
    }

    /// Wait for queued messages (at exit).
    pub async fn close(&mut self) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;

    fn shown(description: &str, key: &str, value: &str) -> String {
        refusal(&KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            description.into(),
            key.into(),
            value.into(),
        ))
    }

    #[test]
    fn the_value_is_cut_from_every_shape_of_refusal() {
        for (description, key, value) in [
            // librdkafka's rdkafka_conf.c, the shapes rd_kafka_conf_set answers with.
            (
                "No such configuration property: \"sasl.pasword\"",
                "sasl.pasword",
                "hunter2",
            ),
            (
                "Invalid value for configuration property \"sasl.mechanisms\": hun ter2",
                "sasl.mechanism",
                "hun ter2",
            ),
            (
                "Invalid value \"hun\"ter2\" for configuration property \"security.protocol\"",
                "security.protocol",
                "hun\"ter2",
            ),
            (
                "Unsupported value \"hunter2\" for configuration property \"x\": y",
                "x",
                "hunter2",
            ),
            (
                "Invalid value for configuration property \"p\": a, b",
                "p",
                "hunter2, b",
            ),
            (
                "Configuration property \"q\" value 1 is outside allowed range",
                "q",
                "1",
            ),
        ] {
            let text = shown(description, key, value);
            for secret in ["hunter2", "hun ter2", "ter2", "value 1 "] {
                assert!(!text.contains(secret), "{text}");
            }
            assert!(text.contains(&format!("property `{key}`")), "{text}");
        }
        let text = shown(
            "No such configuration property: \"sasl.pasword\"",
            "sasl.pasword",
            "hunter2",
        );
        assert_eq!(
            text,
            "No such configuration property: `sasl.pasword` (property `sasl.pasword`)"
        );
    }
}
