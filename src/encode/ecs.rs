//! ECS 9.4 JSON documents, exactly per docs/mapping.md. Nested objects, as Elastic's own agents
//! write them; `senhasegura.*` holds the vendor fields. Empty values produce no field.

use super::json::{put_ip, put_str, Escaping, Obj};
use super::EncodeCounters;
use crate::event::{Phase, SessionEvent};
use smallvec::SmallVec;
use std::net::IpAddr;

/// The ECS version written in `ecs.version`.
pub const ECS_VERSION: &str = "9.4.0";

/// The ECS encoder.
#[derive(Debug, Clone)]
pub struct EcsEncoder {
    include_original: bool,
}

/// The one-sentence summary in `message`, written straight into the document.
fn put_message(out: &mut Vec<u8>, e: &SessionEvent<'_>) {
    out.push(b'"');
    // Escaping into a Vec never fails.
    let _ = write_message(&mut Escaping(out), e);
    out.push(b'"');
}

fn write_message(f: &mut impl std::fmt::Write, e: &SessionEvent<'_>) -> std::fmt::Result {
    let who = e.user.unwrap_or("unknown user");
    let verb = match e.phase {
        Phase::Start => "started",
        Phase::End => "ended",
    };
    write!(f, "{who} {verb} a ")?;
    match e.protocol.as_deref() {
        None => f.write_str("remote")?,
        Some(p) => {
            let mut buf = [0u8; 32];
            match buf.get_mut(..p.len()) {
                Some(upper) => {
                    upper.copy_from_slice(p.as_bytes());
                    upper.make_ascii_uppercase();
                    f.write_str(std::str::from_utf8(upper).map_err(|_| std::fmt::Error)?)?;
                }
                None => f.write_str(&p.to_ascii_uppercase())?,
            }
        }
    }
    write!(f, " session to {}", e.device_raw.unwrap_or("unknown device"))?;
    if let Some(c) = e.credential {
        write!(f, " as {c}")?;
    }
    Ok(())
}

/// The distinct values among two, in order.
fn distinct<T: PartialEq + Copy>(a: Option<T>, b: Option<T>) -> impl Iterator<Item = T> {
    let b = if a == b { None } else { b };
    a.into_iter().chain(b)
}

impl EcsEncoder {
    /// A new encoder.
    pub fn new(include_original: bool) -> EcsEncoder {
        EcsEncoder { include_original }
    }

    /// Append the JSON document of `e` to `out` (one line, no newline), written field by field
    /// in the order of docs/mapping.md: no intermediate structure, one pass over each value.
    /// `_counters`: nothing to count, JSON has no length limits to cut values to (a record with an
    /// unparsed device is counted by the filter, once whatever the formats).
    pub fn encode(&self, e: &SessionEvent, out: &mut Vec<u8>, _counters: &mut EncodeCounters) {
        let (action, kind_type) = match e.phase {
            Phase::Start => ("remote-session-started", "start"),
            Phase::End => ("remote-session-ended", "end"),
        };
        let mut doc = Obj::open(out);
        doc.ts("@timestamp", Some(&e.timestamp));
        let mut ecs = doc.obj("ecs");
        ecs.str("version", ECS_VERSION);
        ecs.close();
        put_message(doc.key("message"), e);

        let mut event = doc.obj("event");
        event.str("kind", "event");
        event.one("category", "session");
        event.one("type", kind_type);
        event.str("action", action);
        event.str("outcome", "success");
        event.str("id", e.id.as_str());
        event.ts("start", e.start.as_ref());
        event.ts("end", e.end.as_ref());
        event.int("duration", e.duration_ns);
        event.ts("created", Some(&e.created));
        event.str("dataset", "senhasegura.session");
        event.str("module", "senhasegura");
        event.str("timezone", e.timezone);
        if self.include_original {
            event.opt_str("original", e.original.as_deref());
        }
        event.close();

        doc.name("user", e.user);
        let mut source = doc.obj("source");
        source.opt_str("address", e.origin);
        source.ip("ip", e.origin_ip);
        source.name("user", e.user);
        source.close();

        let mut destination = doc.obj("destination");
        destination.opt_str("address", if e.device.unparsed { e.device_raw } else { e.device.host });
        destination.ip("ip", e.device.ip);
        destination.opt_str("domain", e.device.domain);
        destination.int("port", e.device.port.map(i64::from));
        destination.name("user", e.credential);
        destination.close();

        let mut network = doc.obj("network");
        network.opt_str("protocol", e.protocol.as_deref());
        network.opt_str("application", e.protocol.as_deref());
        network.str("transport", "tcp");
        network.close();

        let mut observer = doc.obj("observer");
        observer.str("vendor", "senhasegura");
        observer.str("product", "PAM");
        observer.str("type", "proxy");
        if !e.vault_host.is_empty() {
            observer.str("hostname", e.vault_host);
        }
        observer.close();

        let ips: SmallVec<[IpAddr; 2]> = distinct(e.origin_ip, e.device.ip).collect();
        let users: SmallVec<[&str; 2]> = distinct(e.user, e.credential).collect();
        let hosts: SmallVec<[&str; 1]> = e.device.domain.into_iter().collect();
        let mut related = doc.obj("related");
        related.list("ip", &ips, put_ip);
        related.list("user", &users, |out, u| put_str(out, u));
        related.list("hosts", &hosts, |out, h| put_str(out, h));
        related.close();

        let mut vendor = doc.obj("senhasegura");
        let mut session = vendor.obj("session");
        session.str("id", e.session_id);
        session.int("record_id", e.record_number);
        session.opt_str(
            "record_id_raw",
            if e.record_number.is_none() { e.record_id } else { None },
        );
        session.opt_str("proxy", e.proxy);
        session.bool("prevent_purge", e.prevent_purge);
        session.opt_str("duration", e.duration_text);
        session.opt_str("request", e.request);
        session.opt_str("itsm", e.itsm);
        session.opt_str("device", if e.device.unparsed { e.device_raw } else { None });
        session.close();
        vendor.opt_str("tenant", e.tenant);
        vendor.close();
        doc.close();
    }
}
