//! A real Kafka-protocol broker for the Kafka sink tests: tansu (crates.io, Apache-2.0) with
//! in-memory storage on a loopback port, installed once by `tests/run-all.sh` into
//! `~/.cache/senhasegura-forwarder/`. Read back with an rdkafka consumer.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let p = home.join(".cache/senhasegura-forwarder/tansu-0.6.0/bin/tansu");
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/run-all.sh`, which installs the tansu broker",
        p.display()
    );
    p
}

pub struct Broker {
    pub port: u16,
    child: Option<Child>,
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: String,
    pub payload: String,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
}

impl Msg {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(hk, _)| hk == k).map(|(_, v)| v.as_str())
    }
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker {
            port: crate::rsyslog::free_port(),
            child: None,
        };
        b.spawn();
        b
    }

    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        let url = self.url();
        let child = Command::new(tansu())
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &self.url(),
                "--partitions",
                &partitions.to_string(),
            ])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message in `topic`, read from the beginning until `expect` arrived or `wait`
    /// passed without new ones.
    pub fn consume(&self, topic: &str, expect: usize, wait: Duration) -> Vec<Msg> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", format!("test-{}", rand_suffix()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .expect("topic")
            .partitions()
            .len();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let mut last = Instant::now();
        while out.len() < expect || last.elapsed() < Duration::from_millis(300) {
            if last.elapsed() > wait {
                break;
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Msg {
                        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                        payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                        headers,
                        partition: m.partition(),
                    });
                }
                Some(Err(e)) => panic!("consume: {e}"),
                None => {}
            }
        }
        out
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
