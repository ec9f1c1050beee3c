//! The Kafka sink against a real Kafka-protocol broker (tansu): exactly-once content on a
//! clean run, keys and headers, a broker outage in the middle of a run, and `check`.

use crate::broker::Broker;
use crate::support::{Setup, Sim, NOW};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn kafka_sink(brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        "[delivery]\nretry_backoff = \"100ms\"\nretry_backoff_max = \"500ms\"\ngive_up_after = \"4s\"\n\
         [[sink]]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n{extra}\n"
    )
}

fn key_of(m: &crate::broker::Msg) -> String {
    format!("{}:{}", m.key, m.header("phase").unwrap())
}

#[test]
fn once_produces_every_event_exactly_once_with_keys_and_headers() {
    let broker = Broker::start();
    broker.create_topic("pam.sessions", 3);
    let sim = Sim::start(&["--sessions", "200", "--active", "20", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", &kafka_sink(&broker.brokers(), "pam.sessions", ""));
    let expected = setup.run(&["once", "--dry-run"]);
    expected.ok();
    let expected: HashMap<String, serde_json::Value> = expected
        .docs()
        .into_iter()
        .map(|d| (crate::support::key_of(&d), d))
        .collect();
    assert_eq!(expected.len(), 200);
    setup.run(&["once"]).ok();
    let msgs = broker.consume("pam.sessions", 200, Duration::from_secs(20));
    assert_eq!(msgs.len(), 200, "every event once");
    let mut partitions_of: HashMap<&str, HashSet<i32>> = HashMap::new();
    for m in &msgs {
        let doc: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        crate::ecs::validate(&doc);
        let key = key_of(m);
        let mut want = expected[&key].clone();
        let mut got = doc.clone();
        want["event"]["created"] = "".into();
        got["event"]["created"] = "".into();
        assert_eq!(got, want, "payload of {key}");
        assert_eq!(
            m.key, doc["senhasegura"]["session"]["id"],
            "message key is the session id"
        );
        assert_eq!(Some(doc["event"]["id"].as_str().unwrap()), m.header("event_id"));
        assert_eq!(m.header("tenant"), Some("Segura"));
        partitions_of.entry(&m.key).or_default().insert(m.partition);
    }
    assert!(partitions_of.values().all(|p| p.len() == 1));
    let second = setup.run(&["once"]);
    second.ok();
    assert!(second.stderr.contains("new=0"), "{}", second.stderr);
    assert_eq!(
        broker.consume("pam.sessions", 200, Duration::from_secs(5)).len(),
        200,
        "a second once produces nothing"
    );
}

/// A finished session record (`extra`: more fields, each after a comma).
fn finished(id: &str, extra: &str) -> String {
    format!(
        r#"{{"id":"1","user":"alice","origin_ip":"10.1.1.1","device":"10.2.2.2:22","protocol":"SSH","session_id":"{id}","start":"2026-01-15 10:00:00","end":"2026-01-15 10:05:00"{extra}}}"#
    )
}

/// A record whose ECS document is over librdkafka's message.max.bytes (1,000,000).
fn too_large(id: &str) -> String {
    finished(id, &format!(r#","request":"{}""#, "x".repeat(1_000_000)))
}

/// A broker with `topic` (one partition), a simulator serving `records` as its listing, and a
/// config with a Kafka sink to them.
fn kafka_setup_for(records: &[String], topic: &str) -> (Broker, Sim, Setup, tempfile::TempDir) {
    let listing = format!(
        r#"{{"response":{{"error":false}},"tenant":"T","remote_sessions":[{}]}}"#,
        records.join(",")
    );
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("listing");
    std::fs::write(&fixture, listing).unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 1);
    let sim = Sim::start(&["--fixture", fixture.to_str().unwrap()]);
    let setup = Setup::new(&sim.url, "", &kafka_sink(&broker.brokers(), topic, ""));
    (broker, sim, setup, dir)
}

#[test]
fn a_message_too_large_for_kafka_is_refused_alone_and_never_marked_sent() {
    // Three finished sessions; the middle one carries a megabyte: its ECS document is over
    // librdkafka's message.max.bytes (1,000,000). The other two go through and are committed.
    let (broker, _sim, setup, _dir) = kafka_setup_for(
        &[
            finished("s-small-1", ""),
            too_large("s-huge"),
            finished("s-small-2", ""),
        ],
        "pam.big",
    );
    for round in 1..=2 {
        let run = setup.run(&["once"]);
        assert_ne!(
            run.code, 0,
            "round {round}: one event was not delivered:\n{}",
            run.stderr
        );
        let refusals: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("Event refused by the sink for good"))
            .collect();
        assert_eq!(refusals.len(), 1, "round {round}:\n{}", run.stderr);
        assert!(
            refusals[0].contains("s-huge") && refusals[0].contains("message.max.bytes"),
            "{}",
            refusals[0]
        );
        let got: Vec<String> = broker
            .consume("pam.big", 2, Duration::from_secs(10))
            .iter()
            .map(key_of)
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(
            got_sorted,
            ["s-small-1:end", "s-small-2:end"],
            "round {round}: each small one once"
        );
        let state = setup.state_keys();
        assert_eq!(state.len(), 2, "round {round}: {state:?}");
        assert!(state.iter().all(|k| !k.contains("s-huge")), "{state:?}");
    }
}

#[test]
fn a_refused_event_repeated_later_in_the_listing_is_not_sent_again_in_that_poll() {
    // The big session, 20,000 small ones (commits pass in between: the filter no longer holds
    // the first batches' keys), then the big one again.
    let mut records = vec![too_large("s-huge")];
    records.extend((0..20_000).map(|i| finished(&format!("s-{i}"), "")));
    records.push(too_large("s-huge"));
    let (_broker, _sim, setup, _dir) = kafka_setup_for(&records, "pam.repeat");
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("Event refused by the sink for good").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("new=20001 delivered=20000"), "{}", run.stderr);
    assert_eq!(setup.state_stats()["keys"], 20_000);
}

#[test]
fn starts_and_ends_of_a_session_share_a_partition_in_order() {
    let broker = Broker::start();
    broker.create_topic("pam.sessions", 4);
    let sim = Sim::start(&["--sessions", "10", "--active", "0", "--grow", "5", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", &kafka_sink(&broker.brokers(), "pam.sessions", ""));
    setup.run(&["once"]).ok();
    setup.run(&["once"]).ok();
    let msgs = broker.consume("pam.sessions", 10 + 5 + 5 + 5, Duration::from_secs(20));
    let mut by_session: HashMap<&str, Vec<(&str, i32)>> = HashMap::new();
    for m in &msgs {
        by_session
            .entry(&m.key)
            .or_default()
            .push((m.header("phase").unwrap(), m.partition));
    }
    let both: Vec<_> = by_session.values().filter(|v| v.len() == 2).collect();
    assert_eq!(both.len(), 5, "five sessions started in poll 1 and ended in poll 2");
    for v in both {
        assert_eq!(v[0].0, "start");
        assert_eq!(v[1].0, "end");
        assert_eq!(v[0].1, v[1].1);
    }
}

#[test]
fn broker_outage_mid_run_loses_nothing() {
    let mut broker = Broker::start();
    broker.create_topic("pam.sessions", 2);
    let sim = Sim::start(&["--sessions", "30", "--active", "5", "--grow", "4", "--now", NOW]);
    let props = "[sink.properties]\n\"message.timeout.ms\" = \"2000\"";
    let setup = Setup::new(
        &sim.url,
        "interval = \"1s\"",
        &kafka_sink(&broker.brokers(), "pam.sessions", props),
    );
    let agent = setup.start_run();
    // Memory storage forgets on restart: consume everything before the stop and after the
    // restart. `consume` returns once 40 arrived and 300 ms passed without more, i.e. between
    // two polls (1 s apart), and the broker is stopped right then.
    let before = broker.consume("pam.sessions", 40, Duration::from_secs(20));
    broker.stop();
    assert!(before.len() >= 40, "delivered before the outage: {}", before.len());
    // Polls find events; none can be delivered.
    agent.wait_for_log("Sink down", 1, Duration::from_secs(60));
    let polls = agent.log_count("Poll cycle done");
    broker.spawn();
    broker.create_topic("pam.sessions", 2);
    // Recovery, then two more polls.
    agent.wait_for_log("Sink recovered", 1, Duration::from_secs(90));
    agent.wait_for_log("Poll cycle done", polls + 2, Duration::from_secs(60));
    let out = agent.stop();
    let stderr = out.stderr.clone();
    out.ok();
    assert!(
        stderr.contains("Sink down: events wait until it acknowledges sink=\"kafka\""),
        "the outage was logged: {stderr}"
    );
    let after = broker.consume("pam.sessions", 1, Duration::from_secs(10));
    assert!(
        !after.is_empty(),
        "events were delivered after the broker came back: {stderr}"
    );

    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in before.iter().chain(&after) {
        *counts.entry(key_of(m)).or_default() += 1;
    }
    let delivered: HashSet<String> = counts.keys().cloned().collect();
    let state = setup.state_keys();
    assert!(
        state.len() > before.len(),
        "events from during and after the outage were committed"
    );
    let missing: Vec<_> = state.difference(&delivered).collect();
    assert!(missing.is_empty(), "committed but not in the topic: {missing:?}");
    let uncommitted: Vec<_> = delivered.difference(&state).collect();
    assert!(
        uncommitted.is_empty(),
        "in the topic but not committed: {uncommitted:?}"
    );
    let repeats: usize = counts.values().map(|c| c - 1).sum();
    assert!(repeats <= 1000, "repeats bounded by one batch: {repeats}");
}

#[test]
fn check_reports_bad_properties_and_unreachable_brokers() {
    let sim = Sim::start(&["--sessions", "1"]);
    let bad = Setup::new(
        &sim.url,
        "",
        &kafka_sink("127.0.0.1:9", "t", "[sink.properties]\n\"no.such.property\" = \"1\""),
    );
    let run = bad.run(&["check"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stdout.contains("FAIL sink kafka") && run.stdout.contains("no.such.property"),
        "{}",
        run.stdout
    );

    let port = crate::rsyslog::free_port();
    let down = Setup::new(&sim.url, "", &kafka_sink(&format!("127.0.0.1:{port}"), "t", ""));
    let run = down.run(&["check"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stdout.contains("FAIL sink kafka") && run.stdout.contains("metadata"),
        "{}",
        run.stdout
    );
    let once = down.run(&["once"]);
    assert_eq!(
        once.code, 4,
        "once gives up after delivery.give_up_after: {}",
        once.stderr
    );
    let stats = down.state_stats();
    assert_eq!(stats["keys"], 0, "nothing committed");

    let broker = Broker::start();
    broker.create_topic("pam.sessions", 1);
    let good = Setup::new(&sim.url, "", &kafka_sink(&broker.brokers(), "pam.sessions", ""));
    let run = good.run(&["check"]);
    run.ok();
    assert!(
        run.stdout
            .contains("ok   sink kafka: topic pam.sessions has 1 partition(s)"),
        "{}",
        run.stdout
    );
}
