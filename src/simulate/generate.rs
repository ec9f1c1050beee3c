//! Deterministic sessions for the simulator, and the listing body streamed in chunks so that a
//! million sessions never sit in memory. Session `i`'s values come from a hash of (seed, i);
//! its times from the simulator's clock. `grow` adds running sessions and ends running ones.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{Duration, NaiveDateTime};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

const USERS: &[&str] = &[
    "admin",
    "j.silva",
    "m.santos",
    "a.oliveira",
    "r.costa",
    "l.pereira",
    "c.almeida",
    "f.souza",
    "p.lima",
    "t.gomes",
];
const CREDENTIALS: &[&str] = &[
    "root",
    "administrator",
    "usrdomadm01",
    "usrsudonopass",
    "oracle",
    "postgres",
    "svc_backup",
    "sa",
    "netadmin",
];
const TARGETS: &[(&str, u16, &str)] = &[
    ("ssh", 22, "SSH Proxy"),
    ("rdp", 3389, "RDP Proxy"),
    ("https", 443, "Web Proxy"),
    ("ssh", 22, "Web Proxy"),
    ("rdp", 3389, "Web Proxy"),
    ("mysql", 3306, "Database Proxy"),
    ("oracle", 1521, "Database Proxy"),
    ("telnet", 23, "SSH Proxy"),
];
const HOSTS: &[&str] = &[
    "srv-db-01.corp.example.com",
    "dc01.corp.example.com",
    "fw-edge-02",
    "app07.prod.example.net",
];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Times of a session the simulator tracks explicitly (grown or ended by grow).
#[derive(Debug, Clone, Copy)]
struct Tracked {
    start: NaiveDateTime,
    end: Option<NaiveDateTime>,
}

/// The simulated vault's sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    seed: u64,
    initial: u64,
    active: u64,
    /// Wall-clock time the initial history ends at.
    base: NaiveDateTime,
    history_secs: i64,
    tracked: BTreeMap<u64, Tracked>,
    running: VecDeque<u64>,
    total: u64,
}

impl Sessions {
    /// `n` sessions over `history` ending at `base`, the last `active` of them running.
    pub fn new(seed: u64, n: u64, active: u64, base: NaiveDateTime, history: std::time::Duration) -> Sessions {
        let active = active.min(n);
        Sessions {
            seed,
            initial: n,
            active,
            base,
            history_secs: history.as_secs().max(1) as i64,
            tracked: BTreeMap::new(),
            running: (n - active..n).collect(),
            total: n,
        }
    }

    /// Number of sessions listed.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// End up to `k` of the oldest running sessions at `now`, then add `k` running ones.
    pub fn grow(&mut self, k: u64, now: NaiveDateTime) {
        for _ in 0..k {
            let Some(i) = self.running.pop_front() else {
                break;
            };
            let start = self.times(i).0;
            let end = if now > start { now } else { start + Duration::seconds(1) };
            self.tracked.insert(i, Tracked { start, end: Some(end) });
        }
        for _ in 0..k {
            let i = self.total;
            self.total += 1;
            self.tracked.insert(i, Tracked { start: now, end: None });
            self.running.push_back(i);
        }
    }

    fn initial_start(&self, i: u64) -> NaiveDateTime {
        let n = self.initial.max(1) as i64;
        let offset = self.history_secs * (n - i as i64) / n;
        self.base - Duration::seconds(offset)
    }

    /// (start, end) of session `i`.
    fn times(&self, i: u64) -> (NaiveDateTime, Option<NaiveDateTime>) {
        if let Some(t) = self.tracked.get(&i) {
            return (t.start, t.end);
        }
        let start = self.initial_start(i);
        if i >= self.initial - self.active {
            return (start, None);
        }
        let h = mix(self.seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407));
        let dur = 5 + (h % 7200) as i64;
        let mut end = start + Duration::seconds(dur);
        if end > self.base {
            end = self.base;
        }
        (start, Some(end))
    }

    /// The 40-hex session id of session `i`.
    pub fn session_id(&self, i: u64) -> String {
        let mut s = String::with_capacity(40);
        for k in 0..3u64 {
            let v = mix(self
                .seed
                .wrapping_mul(31)
                .wrapping_add(i)
                .wrapping_mul(0x1000_0000_01B3)
                ^ k.wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
            let _ = write!(s, "{v:016x}");
        }
        s.truncate(40);
        s
    }

    /// Append session `i` as JSON to `out`.
    pub fn write_record(&self, i: u64, out: &mut String) {
        let h = mix(self.seed ^ i);
        let (start, end) = self.times(i);
        let user = USERS[(h % USERS.len() as u64) as usize];
        let cred = CREDENTIALS[((h >> 8) % CREDENTIALS.len() as u64) as usize];
        let (proto, port, proxy) = TARGETS[((h >> 16) % TARGETS.len() as u64) as usize];
        let device = match (h >> 24) % 10 {
            0 => HOSTS[((h >> 28) % HOSTS.len() as u64) as usize].to_string() + ":" + &port.to_string(),
            1 => format!("10.66.{}.{}", (h >> 32) % 256, (h >> 40) % 254 + 1),
            _ => format!("10.66.{}.{}:{port}", (h >> 32) % 256, (h >> 40) % 254 + 1),
        };
        let origin = format!("172.16.{}.{}", (h >> 48) % 256, (h >> 56) % 254 + 1);
        let fmt = "%Y-%m-%d %H:%M:%S";
        let (end_json, time) = match end {
            Some(e) => {
                let secs = (e - start).num_seconds().max(0);
                (
                    format!("\"{}\"", e.format(fmt)),
                    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                )
            }
            // Running sessions show each form of "no end" the vault is known to send.
            None => (
                ["null", "\"\"", "\"0000-00-00 00:00:00\""][(i % 3) as usize].to_string(),
                "00:00:00".to_string(),
            ),
        };
        let request = if h % 7 == 0 {
            format!("\"REQ-{}\"", h % 100_000)
        } else {
            "null".into()
        };
        let itsm = if h % 11 == 0 {
            format!("\"CHG{:07}\"", h % 10_000_000)
        } else {
            "null".into()
        };
        let _ = write!(
            out,
            r#"{{"id":"{id}","user":"{user}","origin_ip":"{origin}","credential":"{cred}","device":"{device}","protocol":"{proto}","proxy":"{proxy}","session_id":"{sid}","start":"{start}","end":{end_json},"time":"{time}","prevent_purge":"{pp}","request":{request},"ITSM":{itsm}}}"#,
            id = i + 1,
            sid = self.session_id(i),
            start = start.format(fmt),
            pp = if h % 5 == 0 { "Yes" } else { "No" },
        );
    }
}

/// Envelope shape of the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// `remote_sessions[]` at the top (v4 documentation).
    Flat,
    /// `remote_sessions[0].remote_sessions[]` (v3 documentation).
    Nested,
}

const HEAD: &str = r#"{"code":200,"response":{"status":200,"message":"","error":false,"error_code":0,"detail":"","mensagem":"","erro":false,"cod_erro":0},"#;

/// The listing body of `sessions`, generated chunk by chunk.
pub struct Body {
    sessions: std::sync::Arc<Sessions>,
    shape: Shape,
    tenant: String,
    next: u64,
    done: bool,
    chunk_records: u64,
}

impl Body {
    /// A body over a snapshot of the sessions.
    pub fn new(sessions: std::sync::Arc<Sessions>, shape: Shape, tenant: &str) -> Body {
        Body {
            sessions,
            shape,
            tenant: tenant.to_string(),
            next: 0,
            done: false,
            chunk_records: 256,
        }
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut s = String::with_capacity(self.chunk_records as usize * 420 + 512);
        if self.next == 0 {
            s.push_str(HEAD);
            let tenant = serde_json::to_string(&self.tenant).expect("a string serialises");
            match self.shape {
                Shape::Flat => {
                    let _ = write!(s, r#""tenant":{tenant},"remote_sessions":["#);
                }
                Shape::Nested => {
                    let _ = write!(s, r#""remote_sessions":[{HEAD}"tenant":{tenant},"remote_sessions":["#);
                }
            }
        }
        let end = (self.next + self.chunk_records).min(self.sessions.len());
        while self.next < end {
            if self.next > 0 {
                s.push(',');
            }
            self.sessions.write_record(self.next, &mut s);
            self.next += 1;
        }
        if self.next >= self.sessions.len() {
            s.push_str(match self.shape {
                Shape::Flat => "]}",
                Shape::Nested => "]}]}",
            });
            self.done = true;
        }
        let mut b = BytesMut::with_capacity(s.len());
        b.put_slice(s.as_bytes());
        Some(b.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2024-05-06 16:00:00", "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn body_is_valid_json_with_every_session() {
        for shape in [Shape::Flat, Shape::Nested] {
            let s = std::sync::Arc::new(Sessions::new(
                7,
                1000,
                10,
                base(),
                std::time::Duration::from_secs(86400),
            ));
            let mut body = Body::new(s, shape, "Segura");
            let mut all = Vec::new();
            while let Some(c) = body.next_chunk() {
                all.extend_from_slice(&c);
            }
            let v: serde_json::Value = serde_json::from_slice(&all).unwrap();
            let list = match shape {
                Shape::Flat => &v["remote_sessions"],
                Shape::Nested => &v["remote_sessions"][0]["remote_sessions"],
            };
            assert_eq!(list.as_array().unwrap().len(), 1000);
        }
    }

    #[test]
    fn grow_adds_and_ends() {
        let mut s = Sessions::new(1, 10, 2, base(), std::time::Duration::from_secs(3600));
        let before_8 = s.times(8);
        assert!(before_8.1.is_none());
        s.grow(3, base() + Duration::seconds(60));
        assert_eq!(s.len(), 13);
        assert!(s.times(8).1.is_some() && s.times(9).1.is_some());
        assert!(s.times(10).1.is_none(), "new sessions are running");
        assert_ne!(s.session_id(1), s.session_id(2));
    }
}
