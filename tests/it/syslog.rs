//! The syslog sink against a real rsyslog: every transport, both RFC formats, framing, special
//! characters, TLS verification, and an rsyslog restart in the middle of a run.

use crate::rsyslog::{make_certs, Input, Record, Rsyslog};
use crate::support::{Setup, Sim, NOW};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn sink(transport: &str, address: &str, extra: &str) -> String {
    format!(
        "[delivery]\nretry_backoff = \"50ms\"\nretry_backoff_max = \"300ms\"\ngive_up_after = \"3s\"\n\
         [[sink]]\ntype = \"syslog\"\ntransport = \"{transport}\"\naddress = \"{address}\"\nhostname = \"collector1\"\n{extra}\n"
    )
}

/// The CEF key of a received message: externalId and act.
fn cef_key(msg: &str) -> String {
    let cef = crate::cef_parse::parse(msg).unwrap_or_else(|e| panic!("{e}: {msg}"));
    let phase = if cef.get("act") == Some("session-start") {
        "start"
    } else {
        "end"
    };
    format!("{}:{phase}", cef.get("externalId").unwrap())
}

/// Run `once` to rsyslog; compare what arrived with what `--dry-run` says the encoder makes.
fn deliver_and_compare(input: Input, transport: &str, extra: &str, rfc3164: bool) {
    let rs = Rsyslog::start(input);
    let sim = Sim::start(&["--sessions", "40", "--active", "8", "--now", NOW]);
    let extra = if input == Input::Tls {
        format!("{extra}\nca_file = \"{}\"", rs.ca().display())
    } else {
        extra.to_string()
    };
    let setup = Setup::new(&sim.url, "", &sink(transport, &rs.address(), &extra));
    let expected = setup.run(&["once", "--dry-run"]);
    expected.ok();
    let expected: HashSet<String> = expected.stdout.lines().map(str::to_string).collect();
    assert_eq!(expected.len(), 40);
    setup.run(&["once"]).ok();
    let got = rs.wait_for(40, Duration::from_secs(10));
    assert_eq!(got.len(), 40, "{input:?}: rsyslog received {} of 40", got.len());
    let mut msgs = HashSet::new();
    for r in &got {
        assert_eq!(
            r.version,
            if rfc3164 { "0" } else { "1" },
            "{input:?} parsed as RFC {}",
            if rfc3164 { 3164 } else { 5424 }
        );
        assert_eq!(r.app, "senhasegura-forwarder");
        assert_eq!(r.hostname, "collector1");
        let msg = if rfc3164 {
            r.msg.strip_prefix(' ').unwrap_or(&r.msg).to_string()
        } else {
            r.msg.clone()
        };
        if !rfc3164 {
            let phase = if msg.contains("act=session-start") {
                "session-start"
            } else {
                "session-end"
            };
            assert_eq!(r.msgid, phase);
        }
        msgs.insert(msg);
    }
    assert_eq!(msgs, expected, "{input:?}: every message equals the encoder's output");
    let again = setup.run(&["once"]);
    again.ok();
    assert!(
        again.stderr.contains(" delivered=0 "),
        "a second once sends nothing: {}",
        again.stderr
    );
    assert_eq!(rs.records().len(), 40, "a second once sends nothing");
}

#[test]
fn udp_rfc5424() {
    deliver_and_compare(Input::Udp, "udp", "", false);
}

#[test]
fn tcp_octet_counting_rfc5424() {
    deliver_and_compare(Input::Tcp, "tcp", "framing = \"octet-counting\"", false);
}

#[test]
fn tcp_newline_rfc3164() {
    deliver_and_compare(Input::Tcp, "tcp", "framing = \"newline\"\nprotocol = \"rfc3164\"", true);
}

#[test]
fn tls_octet_counting_rfc5424() {
    deliver_and_compare(Input::Tls, "tls", "", false);
}

#[test]
fn unix_datagram_socket() {
    deliver_and_compare(Input::UnixDatagram, "unix", "unix_mode = \"datagram\"", false);
}

#[test]
fn unix_stream_socket() {
    deliver_and_compare(Input::UnixStream, "unix", "unix_mode = \"stream\"", false);
}

#[test]
fn special_characters_arrive_as_one_record_each_intact() {
    let input = crate::golden_input("edge-cases.json");
    for (framing, format) in [("newline", "cef"), ("octet-counting", "cef"), ("newline", "ecs")] {
        let rs = Rsyslog::start(Input::Tcp);
        let sim = Sim::start(&["--fixture", input.to_str().unwrap()]);
        let setup = Setup::new(
            &sim.url,
            "",
            &sink(
                "tcp",
                &rs.address(),
                &format!("framing = \"{framing}\"\nformat = \"{format}\""),
            ),
        );
        let expected = setup.run(&["once", "--dry-run"]);
        expected.ok();
        let expected: Vec<&str> = expected.stdout.lines().collect();
        setup.run(&["once"]).ok();
        let got = rs.wait_for(expected.len(), Duration::from_secs(10));
        assert_eq!(got.len(), 6, "{framing}/{format}: one record per event");
        let normal = |m: &str| -> String {
            if format == "ecs" {
                let mut v: serde_json::Value = serde_json::from_str(m).unwrap_or_else(|e| panic!("{e}: {m}"));
                v["event"]["created"] = "".into();
                v.to_string()
            } else {
                m.to_string()
            }
        };
        let want: HashSet<String> = expected.iter().map(|m| normal(m)).collect();
        let have: HashSet<String> = got.iter().map(|r| normal(&r.msg)).collect();
        assert_eq!(have, want, "{framing}/{format}");
        assert!(
            have.iter().any(|m| m.contains("quoted")),
            "the record with specials is there"
        );
    }
}

#[test]
fn tls_without_the_right_ca_fails_clearly_and_commits_nothing() {
    let rs = Rsyslog::start(Input::Tls);
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = make_certs(other.path(), "other-");
    let sim = Sim::start(&["--sessions", "5", "--now", NOW]);
    let setup = Setup::new(
        &sim.url,
        "",
        &sink("tls", &rs.address(), &format!("ca_file = \"{}\"", wrong_ca.display())),
    );
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("certificate") && run.stderr.contains("ca_file"),
        "{}",
        run.stderr
    );
    let stats = setup.state_stats();
    assert_eq!(stats["keys"], 0);
    assert!(rs.records().is_empty());
    let check = setup.run(&["check"]);
    assert_eq!(check.code, 4);
    assert!(check.stdout.contains("FAIL sink syslog"), "{}", check.stdout);
}

#[test]
fn check_health_checks_the_syslog_sink() {
    let rs = Rsyslog::start(Input::Tls);
    let sim = Sim::start(&["--sessions", "1"]);
    let setup = Setup::new(
        &sim.url,
        "",
        &sink("tls", &rs.address(), &format!("ca_file = \"{}\"", rs.ca().display())),
    );
    let run = setup.run(&["check"]);
    run.ok();
    assert!(
        run.stdout.contains("ok   sink syslog: connected to tls://127.0.0.1"),
        "{}",
        run.stdout
    );
    let down = Setup::new(
        &sim.url,
        "",
        &sink("tcp", &format!("127.0.0.1:{}", crate::rsyslog::free_port()), ""),
    );
    let run = down.run(&["check"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stdout.contains("FAIL sink syslog") && run.stdout.contains("cannot connect"),
        "{}",
        run.stdout
    );
}

#[test]
fn rsyslog_restart_mid_run_loses_nothing() {
    let mut rs = Rsyslog::start(Input::Tcp);
    let sim = Sim::start(&["--sessions", "30", "--active", "5", "--grow", "4", "--now", NOW]);
    let setup = Setup::new(
        &sim.url,
        "interval = \"300ms\"",
        &format!(
            "[[sink]]\ntype = \"stdout\"\nformat = \"cef\"\n{}",
            sink("tcp", &rs.address(), "")
        ),
    );
    let agent = setup.start_run();
    let before = rs.wait_for(40, Duration::from_secs(10)).len();
    assert!(before >= 40, "the run delivers before the outage");
    rs.stop();
    // Polls keep finding events; none can be delivered.
    agent.wait_for_log("Sink down", 1, Duration::from_secs(30));
    let polls = agent.log_count("Poll cycle done");
    rs.spawn();
    // Recovery, then two more polls.
    agent.wait_for_log("Sink recovered", 1, Duration::from_secs(60));
    agent.wait_for_log("Poll cycle done", polls + 2, Duration::from_secs(60));
    let out = agent.stop();
    let stderr = out.stderr.clone();
    out.ok();
    assert!(
        stderr.contains("syslog sink failed"),
        "the outage was noticed: {stderr}"
    );

    let received: Vec<Record> = rs.records();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *counts.entry(cef_key(&r.msg)).or_default() += 1;
    }
    let rsyslog_keys: HashSet<String> = counts.keys().cloned().collect();
    let stdout_keys: HashSet<String> = out.stdout.lines().map(cef_key).collect();
    let state_keys = setup.state_keys();
    assert!(
        state_keys.len() > 40,
        "events from before, during and after the outage: {}",
        state_keys.len()
    );
    assert_eq!(rsyslog_keys, state_keys, "rsyslog has exactly the committed events");
    assert_eq!(stdout_keys, state_keys, "and so does stdout, the other sink");
    let repeats: usize = counts.values().map(|c| c - 1).sum();
    assert!(repeats <= 1000, "repeats bounded by one batch: {repeats}");
}

#[test]
fn udp_messages_over_the_limit_are_truncated_and_reported() {
    let rs = Rsyslog::start(Input::Udp);
    let sim = Sim::start(&["--sessions", "10", "--active", "0", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", &sink("udp", &rs.address(), "max_datagram_bytes = 480"));
    let expected = setup.run(&["once", "--dry-run"]);
    expected.ok();
    let run = setup.run(&["once"]);
    run.ok();
    assert!(
        run.stderr
            .contains("Syslog messages truncated to the datagram size limit count=10 limit=480"),
        "{}",
        run.stderr
    );
    let got = rs.wait_for(10, Duration::from_secs(10));
    assert_eq!(got.len(), 10, "one datagram per event, even when cut");
    for r in &got {
        assert!(r.msg.len() < 480, "message cut to the limit: {}", r.msg.len());
        assert!(
            expected
                .stdout
                .lines()
                .any(|full| full.len() > r.msg.len() && full.starts_with(&r.msg)),
            "a prefix of an event"
        );
    }
}

#[test]
fn tls_1_3_session_tickets_are_not_the_server_closing_the_connection() {
    // A TLS 1.3 syslog server (rustls, which sends session tickets after the handshake) that
    // reads slowly. The agent once took the tickets for the server closing the connection: it
    // reconnected before every batch and dropped the old socket unread, and the kernel's reset
    // threw away what the server had not read yet.
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let (ca_pem, config) = senhasegura_forwarder::simulate::tls::generate().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let received = Arc::new(Mutex::new((0usize, Vec::<u8>::new())));
    let server = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            server.lock().unwrap().0 += 1;
            let (config, server) = (config.clone(), server.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut buf = [0u8; 16 * 1024];
                loop {
                    std::thread::sleep(Duration::from_millis(5));
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => server.lock().unwrap().1.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    // 3,000 events: three batches.
    let sim = Sim::start(&["--sessions", "3000", "--active", "30", "--now", NOW]);
    let extra = format!("ca_file = \"{}\"", ca.display());
    let setup = Setup::new(&sim.url, "", &sink("tls", &address, &extra));
    let run = setup.run(&["once"]);
    run.ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let count = || {
        String::from_utf8_lossy(&received.lock().unwrap().1)
            .matches("CEF:0|")
            .count()
    };
    while count() < 3000 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        count(),
        3000,
        "every acknowledged event reached the server: {}",
        run.stderr
    );
    assert_eq!(received.lock().unwrap().0, 1, "one connection: {}", run.stderr);
    assert!(!run.stderr.contains("closed the connection"), "{}", run.stderr);
}
