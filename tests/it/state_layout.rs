//! The store under listings that crowd many sessions into little time, and a store written by
//! the previous release (key format 1), opened by this one.

use crate::support::{cmd, fixture, key_of, Setup, Sim};
use std::collections::{HashMap, HashSet};
use std::process::Stdio;

/// `once` with stdout to a file; returns the stdout lines and the summary line's fields.
fn once_to_file(setup: &Setup) -> (Vec<String>, HashMap<String, u64>) {
    let out_path = setup.dir.path().join("out.jsonl");
    let out = std::fs::File::create(&out_path).unwrap();
    let run = cmd()
        .args(["once", "-c"])
        .arg(&setup.config)
        .stdout(Stdio::from(out))
        .stderr(Stdio::piped())
        .output()
        .expect("run agent");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(0), "stderr:\n{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("Poll cycle done"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let fields = summary
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect();
    let text = std::fs::read_to_string(&out_path).unwrap();
    (text.lines().map(str::to_string).collect(), fields)
}

/// (key, event time) of every key `state list` shows.
fn listed(setup: &Setup) -> HashMap<String, chrono::DateTime<chrono::Utc>> {
    setup
        .state_list()
        .iter()
        .map(|l| {
            let (k, t) = l.split_once('\t').unwrap();
            (k.to_string(), chrono::DateTime::parse_from_rfc3339(t).unwrap().into())
        })
        .collect()
}

#[test]
fn dense_listing_first_poll_keeps_the_store_correct() {
    // 200,000 sessions started within one hour; three quarters of them end in the same second
    // (the simulator's listing time).
    let sim = Sim::start(&[
        "--sessions",
        "200000",
        "--active",
        "2000",
        "--history",
        "1h",
        "--seed",
        "11",
    ]);
    let setup = Setup::new(&sim.url, "", "");
    let (lines, first) = once_to_file(&setup);
    assert_eq!(first["new"], 200_000, "{first:?}");
    let sent: HashSet<String> = lines
        .iter()
        .map(|l| key_of(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(sent.len(), 200_000, "one event per session");

    let stored = listed(&setup);
    assert_eq!(
        stored.keys().cloned().collect::<HashSet<_>>(),
        sent,
        "every key found afterwards"
    );
    assert_eq!(setup.state_stats()["keys"], 200_000);

    let (lines, second) = once_to_file(&setup);
    assert!(lines.is_empty(), "a second poll sends nothing");
    assert_eq!((second["new"], second["known"]), (0, 200_000), "{second:?}");

    // Prune with a 30-minute retention: exactly the keys older than the cutoff go.
    let pruning = setup.dir.path().join("prune.toml");
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &pruning,
        config.replace("retention = \"36500d\"", "retention = \"30m\""),
    )
    .unwrap();
    let earliest = chrono::Utc::now() - chrono::Duration::minutes(30);
    let out = cmd()
        .args(["state", "--state-dir"])
        .arg(setup.state_dir())
        .arg("-c")
        .arg(&pruning)
        .arg("prune")
        .output()
        .unwrap();
    let latest = chrono::Utc::now() - chrono::Duration::minutes(30);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kept = listed(&setup);
    let removed: Vec<_> = stored.iter().filter(|(k, _)| !kept.contains_key(*k)).collect();
    assert!(
        !removed.is_empty() && !kept.is_empty(),
        "the cutoff splits this listing"
    );
    assert!(kept.keys().all(|k| stored.contains_key(k)));
    // Times are whole seconds; the cutoff lies between `earliest` and `latest`.
    let second = chrono::Duration::seconds(1);
    assert!(
        removed.iter().all(|(_, t)| **t < latest),
        "only keys older than the retention"
    );
    assert!(
        kept.values().all(|t| *t >= earliest - second),
        "every key older than the retention"
    );
    let said = format!("pruned {} key(s)", removed.len());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&said),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copy a directory tree.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn store_of_the_previous_release_is_migrated_and_nothing_is_sent_again() {
    // tests/fixtures/state-v1: the state directory the previous release (key format 1,
    // commit e55d62c) left after one `once` over this very listing (see its README).
    let args = [
        "--sessions",
        "300",
        "--active",
        "30",
        "--history",
        "1h",
        "--seed",
        "5",
        "--now",
        "2026-01-15 12:00:00",
    ];
    let sim = Sim::start(&args);
    let setup = Setup::new(&sim.url, "", "");
    copy_dir(&fixture("state-v1"), &setup.state_dir());
    std::fs::remove_file(setup.state_dir().join("README.md")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(setup.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let (lines, fields) = once_to_file(&setup);
    assert!(lines.is_empty(), "nothing the old store knew is sent again: {lines:?}");
    assert_eq!((fields["new"], fields["known"]), (0, 300), "{fields:?}");
    let stats = setup.state_stats();
    assert_eq!(
        (stats["keys"].as_u64(), stats["meta"]["key_format"].as_u64()),
        (Some(300), Some(2))
    );

    // The vault moves on: only the new events go out, once.
    let grown = Sim::start(&[&args[..], &["--grow", "7"]].concat());
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, config.replace(&sim.url, &grown.url)).unwrap();
    let (lines, fields) = once_to_file(&setup);
    assert_eq!(lines.len(), 14, "7 sessions ended and 7 started");
    assert_eq!((fields["new"], fields["known"]), (14, 293), "{fields:?}");
}
