//! Syslog sink throughput: deliver N realistic CEF events (about 560 bytes each, RFC 5424,
//! octet counting) in batches of 1000 to a syslog server, and print events per second, as the
//! agent sees them acknowledged (written and flushed). `benches/syslog.sh` runs it against a
//! local rsyslog over TCP and TLS and also times until rsyslog has written every event.
//!
//! Usage: `syslog_throughput tcp|tls ADDRESS N [CA_FILE]`

use chrono::TimeZone;
use senhasegura_forwarder::key::{EventKey, Phase};
use senhasegura_forwarder::sink::syslog::{SyslogSink, SyslogSinkConfig};
use senhasegura_forwarder::sink::{EventMeta, Frame};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (transport, address, n) = (&args[1], &args[2], args[3].parse::<usize>()?);
    let ca = args.get(4).map(|c| format!("ca_file = \"{c}\"")).unwrap_or_default();
    let config: SyslogSinkConfig =
        toml::from_str(&format!("transport = \"{transport}\"\naddress = \"{address}\"\n{ca}\n"))?;
    let mut sink = SyslogSink::new(&config)?;
    let time = chrono::Utc.with_ymd_and_hms(2024, 5, 6, 19, 7, 59).unwrap();
    let metas: Vec<EventMeta> = (0..1000)
        .map(|i| EventMeta {
            key: EventKey::new(format!("{i:040x}"), Phase::End),
            time,
            tenant: None,
            event_id: senhasegura_forwarder::event::event_id("https://bench", None, &format!("{i:040x}"), Phase::End),
        })
        .collect();
    let payloads: Vec<String> = metas
        .iter()
        .map(|m| format!(
            "CEF:0|MT4|senhasegura|0.1.0|remote-session-end|Remote session ended|3|rt=1715022479000 start=1715022307000 \
             end=1715022479000 act=session-end outcome=success cat=/PAM/Session/End suser=Admin duser=usrdomadm01 \
             src=172.16.20.125 dst=10.66.33.15 dpt=3389 app=RDP proto=TCP externalId={} cn1Label=durationSeconds cn1=172 \
             cs1Label=proxy cs1=Web Proxy cs2Label=recordId cs2=3 cs5Label=tenant cs5=Segura dvchost=vault.example.com",
            m.key.session_id()
        ))
        .collect();
    let frames: Vec<Frame<'_>> = metas
        .iter()
        .zip(&payloads)
        .map(|(meta, p)| Frame {
            meta,
            payload: p.as_bytes(),
        })
        .collect();
    sink.deliver(&frames[..1]).await?; // connect (and handshake) outside the timing
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(frames.len());
        sink.deliver(&frames[..k]).await?;
        sent += k;
    }
    let secs = started.elapsed().as_secs_f64();
    sink.close().await;
    println!(
        "{transport}: {n} events acknowledged in {secs:.3} s = {:.0} events/s",
        n as f64 / secs
    );
    Ok(())
}
