//! The main path: first poll emits every event once, later polls only new ones, both fixture
//! shapes, time conversion, running sessions becoming ended.

use crate::support::{fixture, key_of, Setup, Sim, NOW};
use std::collections::{HashMap, HashSet};

#[test]
fn first_once_emits_every_event_once_and_second_nothing() {
    let sim = Sim::start(&["--sessions", "300", "--active", "20", "--now", NOW, "--history", "2h"]);
    let setup = Setup::new(&sim.url, "", "");
    let first = setup.run(&["once"]);
    first.ok();
    let docs = first.docs();
    assert_eq!(docs.len(), 300, "one event per session");
    let keys: HashSet<String> = docs.iter().map(key_of).collect();
    assert_eq!(keys.len(), 300, "no duplicates");
    let starts = docs.iter().filter(|d| d["event"]["type"][0] == "start").count();
    assert_eq!(starts, 20, "running sessions emit start");
    let ids: HashSet<&str> = docs.iter().map(|d| d["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 300, "event ids are distinct");
    assert!(
        first.stderr.contains("Poll cycle done"),
        "summary line: {}",
        first.stderr
    );
    let second = setup.run(&["once"]);
    second.ok();
    assert_eq!(second.stdout, "", "second once emits nothing");
    assert!(second.stderr.contains("known=300"), "{}", second.stderr);
}

#[test]
fn grow_emits_only_new_events_and_ends_follow_starts() {
    let sim = Sim::start(&["--sessions", "10", "--active", "2", "--grow", "3", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let mut started: HashSet<String> = HashSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    for poll in 0..4 {
        let run = setup.run(&["once"]);
        run.ok();
        let docs = run.docs();
        // Poll 1: 8 ended + 2 ended by grow = 10 ends, 3 new running. Then 3 ends + 3 starts.
        let (expect_end, expect_start) = if poll == 0 { (10, 3) } else { (3, 3) };
        let ends: Vec<_> = docs.iter().filter(|d| d["event"]["type"][0] == "end").collect();
        let starts: Vec<_> = docs.iter().filter(|d| d["event"]["type"][0] == "start").collect();
        assert_eq!((ends.len(), starts.len()), (expect_end, expect_start), "poll {poll}");
        for d in &docs {
            assert!(seen.insert(key_of(d)), "event repeated: {}", key_of(d));
        }
        if poll > 0 {
            for e in &ends {
                let sid = e["senhasegura"]["session"]["id"].as_str().unwrap();
                assert!(
                    started.contains(sid),
                    "end of {sid} follows its start from an earlier poll"
                );
                assert!(e["event"]["duration"].as_i64().unwrap() >= 0);
                assert!(e["event"]["start"].is_string() && e["event"]["end"].is_string());
            }
        }
        for s in &starts {
            started.insert(s["senhasegura"]["session"]["id"].as_str().unwrap().to_string());
            assert!(s["event"].get("end").is_none(), "start events carry no end");
        }
    }
}

fn without_volatile(mut d: serde_json::Value) -> serde_json::Value {
    let ev = d["event"].as_object_mut().unwrap();
    ev.remove("created");
    ev.remove("id");
    d["senhasegura"].as_object_mut().unwrap().remove("tenant");
    d
}

#[test]
fn both_fixture_shapes_give_the_same_two_end_events_in_utc() {
    let mut outputs = Vec::new();
    for (file, tenant) in [("v3-docs-nested.json", "senhasegura"), ("v4-docs-flat.json", "Segura")] {
        let path = fixture(file);
        let sim = Sim::start(&["--fixture", path.to_str().unwrap()]);
        let setup = Setup::new(&sim.url, "", "");
        std::fs::write(
            &setup.config,
            std::fs::read_to_string(&setup.config)
                .unwrap()
                .replace("\"UTC\"", "\"America/Sao_Paulo\""),
        )
        .unwrap();
        let run = setup.run(&["once"]);
        run.ok();
        let docs = run.docs();
        assert_eq!(docs.len(), 2, "{file}");
        let by_id: HashMap<i64, &serde_json::Value> = docs
            .iter()
            .map(|d| (d["senhasegura"]["session"]["record_id"].as_i64().unwrap(), d))
            .collect();
        let s3 = by_id[&3];
        assert_eq!(s3["@timestamp"], "2024-05-06T19:07:59Z");
        assert_eq!(s3["event"]["start"], "2024-05-06T19:05:07Z");
        assert_eq!(s3["event"]["end"], "2024-05-06T19:07:59Z");
        assert_eq!(s3["event"]["duration"], 172_000_000_000i64);
        assert_eq!(s3["event"]["timezone"], "America/Sao_Paulo");
        assert_eq!(s3["destination"]["ip"], "10.66.33.15");
        assert_eq!(s3["destination"]["port"], 3389);
        assert_eq!(s3["senhasegura"]["tenant"], tenant);
        assert_eq!(by_id[&6]["event"]["duration"], 13_000_000_000i64);
        assert!(docs.iter().all(|d| d["event"]["type"][0] == "end"));
        let mut normal: Vec<_> = docs.into_iter().map(without_volatile).collect();
        normal.sort_by_key(|d| d["senhasegura"]["session"]["record_id"].as_i64());
        outputs.push(normal);
    }
    assert_eq!(outputs[0], outputs[1], "both shapes give the same events");
}

#[test]
fn v3_path_falls_back_to_v4_on_404() {
    let sim = Sim::start(&["--paths", "v4", "--sessions", "5", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["once"]);
    run.ok();
    assert_eq!(run.docs().len(), 5);
    assert!(run.stderr.contains("falling back to the v4 path"), "{}", run.stderr);
}

/// 100 sessions over 10 days ending now, and a config with backfill 24h.
fn ten_days_backfill_one(sim: &Sim) -> Setup {
    let setup = Setup::new(&sim.url, "", "");
    setup.edit("backfill = \"all\"", "backfill = \"24h\"");
    setup
}

/// A first poll of `ten_days_backfill_one` forwards only the last day's events.
fn assert_first_poll_keeps_to_backfill(setup: &Setup) {
    let run = setup.run(&["once"]);
    run.ok();
    let n = run.docs().len();
    assert!(
        (8..=12).contains(&n),
        "about a tenth of the sessions end in the last day, got {n}"
    );
    assert!(run.stderr.contains("skipped_horizon="), "{}", run.stderr);
}

#[test]
fn horizon_skips_old_events_on_first_run() {
    let sim = Sim::start(&["--sessions", "100", "--active", "0", "--history", "10d"]);
    assert_first_poll_keeps_to_backfill(&ten_days_backfill_one(&sim));
}

/// The package creates the state directory empty. Looking into it before the first start
/// (`state stats`, a dry run) must not create a store: one made without the agent recorded no
/// first-run horizon, and the first poll forwarded all ten days.
#[test]
fn state_commands_and_dry_runs_leave_an_empty_state_directory_empty() {
    let sim = Sim::start(&["--sessions", "100", "--active", "0", "--history", "10d"]);
    let setup = ten_days_backfill_one(&sim);
    let dir = setup.state_dir();
    std::fs::create_dir(&dir).unwrap();
    for action in [
        &["stats"][..],
        &["list"],
        &["export"],
        &["prune"],
        &["forget", "--session", "x"],
    ] {
        let out = crate::support::cmd()
            .args(["state", "-c"])
            .arg(&setup.config)
            .args(action)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{action:?}: {stderr}");
        assert!(stderr.contains("no state store in"), "{action:?}: {stderr}");
    }
    let dry = setup.run(&["once", "--dry-run"]);
    let n = dry.ok().docs().len();
    assert!((8..=12).contains(&n), "a dry run keeps to backfill too, got {n}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing created");
    assert_first_poll_keeps_to_backfill(&setup);
}

#[test]
fn dry_run_prints_and_writes_nothing() {
    let sim = Sim::start(&["--sessions", "7", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let dry = setup.run(&["once", "--dry-run"]);
    dry.ok();
    assert_eq!(dry.docs().len(), 7);
    assert!(!setup.state_dir().exists(), "dry run created no state");
    let real = setup.run(&["once"]);
    assert_eq!(real.ok().docs().len(), 7);
    let dry = setup.run(&["once", "--dry-run"]);
    assert_eq!(dry.ok().stdout, "");
}

#[test]
fn dry_run_prints_each_format_once_whatever_the_number_of_sinks() {
    let sim = Sim::start(&["--sessions", "7", "--now", NOW]);
    let sinks = "[[sink]]\ntype = \"stdout\"\n[[sink]]\ntype = \"syslog\"\naddress = \"127.0.0.1:9\"\n[[sink]]\ntype = \"stdout\"\nformat = \"ecs\"\n";
    let setup = Setup::new(&sim.url, "", sinks);
    let dry = setup.run(&["once", "--dry-run"]);
    dry.ok();
    let (cef, ecs): (Vec<&str>, Vec<&str>) = dry.stdout.lines().partition(|l| l.starts_with("CEF:"));
    assert_eq!(
        (ecs.len(), cef.len()),
        (7, 7),
        "ECS once (two stdout sinks) and CEF once (syslog)"
    );
}

#[test]
fn run_gives_freed_heap_back_between_polls_and_once_does_not_need_to() {
    let sim = Sim::start(&["--sessions", "2000", "--grow", "5", "--now", NOW, "--history", "2h"]);
    let setup = Setup::new(&sim.url, "interval = \"100ms\"", "");
    let run = setup.run(&["run", "--cycles", "3", "--log-level", "senhasegura_forwarder=debug"]);
    run.ok();
    // After each poll but the last (then the process ends).
    assert_eq!(
        run.stderr.matches("Returned free heap memory to the system").count(),
        2,
        "{}",
        run.stderr
    );
    let once = setup.run(&["once", "--log-level", "senhasegura_forwarder=debug"]);
    once.ok();
    assert!(!once.stderr.contains("Returned free heap memory"), "{}", once.stderr);
}

#[test]
fn environment_variables_expand_in_paths_and_names_too() {
    // `${VAR}` in every string: the state directory, a secret file, a file sink's path.
    let sim = Sim::start(&["--sessions", "5", "--active", "1", "--now", NOW]);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("data");
    std::fs::create_dir(&base).unwrap();
    let secret = base.join("secret");
    std::fs::write(&secret, "simulator-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\ntimezone = \"UTC\"\nbackfill = \"all\"\n\
             [source.auth]\nclient_id = \"forwarder\"\nclient_secret_file = \"${{FWD_BASE}}/secret\"\n\
             [state]\npath = \"${{FWD_BASE}}/state\"\nretention = \"36500d\"\n\
             [[sink]]\ntype = \"file\"\npath = \"${{FWD_BASE}}/events.ndjson\"\n",
            sim.url
        ),
    )
    .unwrap();
    let run: crate::support::Run = crate::support::cmd()
        .args(["once", "-c"])
        .arg(&config)
        .env("FWD_BASE", &base)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        base.join("state").is_dir(),
        "the state under the expanded path: {}",
        run.stderr
    );
    let events = std::fs::read_to_string(base.join("events.ndjson")).unwrap();
    assert_eq!(events.lines().count(), 5, "{events}");
}
