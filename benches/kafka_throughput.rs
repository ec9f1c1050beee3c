//! Kafka sink throughput: produce N realistic ECS events (~1.2 KB each) in batches of 1000
//! with the sink's defaults (acks=all, idempotent, zstd) and print events per second as
//! acknowledged by delivery reports. `benches/kafka.sh` runs it against a local tansu broker.
//!
//! Usage: `kafka_throughput BROKERS TOPIC N`

use chrono::TimeZone;
use senhasegura_forwarder::key::{EventKey, Phase};
use senhasegura_forwarder::sink::kafka::{KafkaSink, KafkaSinkConfig};
use senhasegura_forwarder::sink::{EventMeta, Frame};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic, n) = (&args[1], &args[2], args[3].parse::<usize>()?);
    let config: KafkaSinkConfig = toml::from_str(&format!("brokers = \"{brokers}\"\ntopic = \"{topic}\"\n"))?;
    let mut sink = KafkaSink::new(&config)?;
    let time = chrono::Utc.with_ymd_and_hms(2024, 5, 6, 19, 7, 59).unwrap();
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/v4-docs-flat.ecs.jsonl"
    ))?;
    let template = template.lines().next().ok_or("no template")?.to_string();
    let mut started = None;
    let mut sent = 0;
    let mut round = 0;
    while sent < n {
        let k = (n - sent).min(1000);
        let metas: Vec<EventMeta> = (0..k)
            .map(|i| EventMeta {
                key: EventKey::new(format!("{round:08x}{i:032x}"), Phase::End),
                time,
                tenant: Some(std::sync::Arc::from("Segura")),
                event_id: senhasegura_forwarder::event::event_id(
                    "https://bench",
                    None,
                    &format!("{round:08x}{i:032x}"),
                    Phase::End,
                ),
            })
            .collect();
        let payloads: Vec<String> = metas
            .iter()
            .map(|m| template.replace("e7acacb6aedbab70073456da5744166939b77527", m.key.session_id()))
            .collect();
        let frames: Vec<Frame<'_>> = metas
            .iter()
            .zip(&payloads)
            .map(|(meta, p)| Frame {
                meta,
                payload: p.as_bytes(),
            })
            .collect();
        if started.is_none() {
            sink.deliver(&frames[..1]).await?; // connect and fetch metadata outside the timing
            started = Some(Instant::now());
        }
        sink.deliver(&frames).await?;
        sent += k;
        round += 1;
    }
    let secs = started.expect("at least one batch").elapsed().as_secs_f64();
    println!(
        "kafka: {n} events acknowledged (acks=all) in {secs:.3} s = {:.0} events/s",
        n as f64 / secs
    );
    Ok(())
}
