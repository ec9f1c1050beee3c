//! The command line: config errors and exit codes, `check`, `state`, file modes, the lock.

use crate::support::{Setup, Sim, NOW};

fn with_config(text: &str) -> (tempfile::TempDir, crate::support::Run) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    // A state directory of its own: the default, /var/lib/senhasegura-forwarder, is the
    // package's (a run that gets as far as opening the store would create it as root).
    let text = if text.contains("[state]") {
        text.to_string()
    } else {
        format!("{text}\n[state]\npath = \"{}\"\n", dir.path().join("state").display())
    };
    std::fs::write(&path, text).unwrap();
    let out = crate::support::cmd().args(["once", "-c"]).arg(&path).output().unwrap();
    (dir, out.into())
}

const BASE: &str = "[source]\nurl = \"http://127.0.0.1:9\"\ntimezone = \"UTC\"\n[source.auth]\nclient_id = \"a\"\nclient_secret = \"b\"\n";

#[test]
fn bad_configs_exit_2_naming_the_problem() {
    let (_d, run) = with_config(&format!("{BASE}[state]\npaht = \"/tmp/x\"\n"));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown field `paht`") && run.stderr.contains("line 8"),
        "{}",
        run.stderr
    );

    // A zero timeout: every request would fail at once, every poll.
    for key in ["timeout", "connect_timeout"] {
        let (_d, run) =
            with_config(&BASE.replace("timezone = \"UTC\"", &format!("timezone = \"UTC\"\n{key} = \"0s\"")));
        assert_eq!(run.code, 2, "{key}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("source.{key}: must be greater than zero")),
            "{}",
            run.stderr
        );
    }

    // A log filter tracing cannot read was replaced by `info` without a word.
    let bad_filter = crate::support::cmd()
        .args(["--log-level", "info,[", "check", "--offline"])
        .output()
        .unwrap();
    assert_eq!(bad_filter.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_filter.stderr).contains("not a log filter"));

    let (_d, run) = with_config(&BASE.replace("timezone = \"UTC\"", "timezone = \"UTC\"\ninterval = \"every minute\""));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("every minute") && run.stderr.contains("line 4"),
        "{}",
        run.stderr
    );

    // A missing secret file in an existing directory is named with its path; one whose
    // directory does not exist either may be a secret put in the wrong key: not shown.
    let (_d, run) = with_config(&BASE.replace(
        "client_secret = \"b\"",
        "client_secret_file = \"/tmp/no-such-secret-file\"",
    ));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("client_secret_file") && run.stderr.contains("/tmp/no-such-secret-file"),
        "{}",
        run.stderr
    );
    let (_d, run) = with_config(&BASE.replace("client_secret = \"b\"", "client_secret_file = \"/nonexistent/secret\""));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("client_secret_file") && !run.stderr.contains("/nonexistent/secret"),
        "{}",
        run.stderr
    );

    // Secrets in the wrong place are named by their key, never echoed: a secret written into a
    // `_file` key, a Kafka password under a property librdkafka does not know, a string where
    // a table belongs.
    let (_d, run) = with_config(&BASE.replace("client_secret = \"b\"", "client_secret_file = \"s3cr3t-val\""));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("client_secret_file") && !run.stderr.contains("s3cr3t-val"),
        "{}",
        run.stderr
    );
    let kafka = "[[sink]]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9\"\ntopic = \"t\"\n";
    for (sink, named) in [
        (
            format!("{kafka}[sink.properties]\n\"sasl.pasword\" = \"s3cr3t-val\"\n"),
            "sasl.pasword",
        ),
        (
            format!("{kafka}properties = \"sasl.password=s3cr3t-val\"\n"),
            "invalid type: string",
        ),
    ] {
        let (_d, run) = with_config(&format!("{BASE}{sink}"));
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(named) && !run.stderr.contains("s3cr3t-val"),
            "{}",
            run.stderr
        );
    }

    let (_d, run) = with_config(&BASE.replace("client_secret = \"b\"", "client_secret = \"${SSF_TEST_UNSET_VAR}\""));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("SSF_TEST_UNSET_VAR") && run.stderr.contains("not set"),
        "{}",
        run.stderr
    );

    let (_d, run) = with_config(&BASE.replace("client_secret = \"b\"", "client_secret = \"b\"\nmethod = \"oauth1\""));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("source.auth.token") && run.stderr.contains("oauth1"),
        "{}",
        run.stderr
    );

    let out = crate::support::cmd()
        .args(["once", "-c", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.toml"));

    let out = crate::support::cmd().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn secrets_come_from_files_and_the_environment() {
    let sim = Sim::start(&["--sessions", "2", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let secret = setup.dir.path().join("secret");
    std::fs::write(&secret, "simulator-secret\n").unwrap();
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let from_file = text.replace(
        "client_secret = \"simulator-secret\"",
        &format!("client_secret_file = \"{}\"", secret.display()),
    );
    std::fs::write(&setup.config, &from_file).unwrap();
    assert_eq!(setup.run(&["once", "--dry-run"]).ok().docs().len(), 2);
    let from_env = text.replace("\"simulator-secret\"", "\"${SSF_TEST_SECRET}\"");
    std::fs::write(&setup.config, &from_env).unwrap();
    let out = crate::support::cmd()
        .args(["once", "--dry-run", "-c"])
        .arg(&setup.config)
        .env("SSF_TEST_SECRET", "simulator-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_reports_each_step() {
    let sim = Sim::start(&["--sessions", "2"]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["check"]);
    run.ok();
    for step in ["ok   config", "ok   token", "ok   listing", "ok   sink stdout"] {
        assert!(run.stdout.contains(step), "missing {step:?} in\n{}", run.stdout);
    }
    let bad = Sim::start(&["--reject-auth"]);
    let setup = Setup::new(&bad.url, "", "");
    let run = setup.run(&["check"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stdout.contains("FAIL token") && run.stdout.contains("A2A"),
        "{}",
        run.stdout
    );
}

#[test]
fn state_is_private_locked_and_manageable() {
    let sim = Sim::start(&["--sessions", "6", "--active", "1", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"30s\"", "");
    setup.run(&["once"]).ok();
    let state = setup.state_dir();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        for entry in walk(&state) {
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is accessible to others ({:o})",
                entry.display(),
                mode
            );
        }
    }
    // A running agent holds the state; a second one fails at once with exit 5.
    let running = setup.start_run();
    running.wait_for_log("Poll cycle done", 1, std::time::Duration::from_secs(30));
    let second = setup.run(&["once"]);
    running.stop();
    assert_eq!(second.code, 5, "{}", second.stderr);
    assert!(second.stderr.contains("in use by another"), "{}", second.stderr);

    let state_cmd = |args: &[&str]| -> crate::support::Run {
        crate::support::cmd()
            .args(["state", "--state-dir"])
            .arg(&state)
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let stats: serde_json::Value = serde_json::from_str(&state_cmd(&["stats"]).ok().stdout).unwrap();
    assert_eq!(
        (stats["keys"].as_u64(), stats["start"].as_u64(), stats["end"].as_u64()),
        (Some(6), Some(1), Some(5))
    );
    let list = state_cmd(&["list"]).ok().stdout.clone();
    assert_eq!(list.lines().count(), 6);
    let export = setup.dir.path().join("export.jsonl");
    state_cmd(&["export", "-o", export.to_str().unwrap()]).ok();
    let first_key = list.lines().next().unwrap().split('\t').next().unwrap().to_string();
    state_cmd(&["forget", &first_key]).ok();
    assert_eq!(state_cmd(&["list"]).stdout.lines().count(), 5);
    // The forgotten event is sent again by the next poll.
    assert_eq!(setup.run(&["once"]).ok().docs().len(), 1);
    state_cmd(&["forget", &first_key]).ok();
    // Prune by a directory alone would use the default retention, not the agent's: refused,
    // and the store keeps every key.
    let prune = state_cmd(&["prune"]);
    assert_eq!(prune.code, 2, "{}", prune.stderr);
    assert!(prune.stderr.contains("add -c FILE"), "{}", prune.stderr);
    assert!(!prune.stderr.contains("pruned"), "{}", prune.stderr);
    assert_eq!(state_cmd(&["list"]).stdout.lines().count(), 5);
    // The config named by $SENHASEGURA_FORWARDER_CONFIG serves as well (its retention keeps all).
    let via_env: crate::support::Run = crate::support::cmd()
        .args(["state", "--state-dir"])
        .arg(&state)
        .arg("prune")
        .env("SENHASEGURA_FORWARDER_CONFIG", &setup.config)
        .output()
        .unwrap()
        .into();
    assert_eq!(via_env.code, 0, "{}", via_env.stderr);
    assert!(via_env.stderr.contains("pruned 0 key(s)"), "{}", via_env.stderr);
    assert_eq!(state_cmd(&["list"]).stdout.lines().count(), 5);
    // What is not a key is refused by name, before the store changes.
    let bad = state_cmd(&["forget", "e7acacb6:stop"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("`e7acacb6:stop` is not an event key"),
        "{}",
        bad.stderr
    );
    let bad_import = setup.dir.path().join("bad.jsonl");
    std::fs::write(&bad_import, "{\"key\":\"nophase\",\"time\":\"2024-05-06T19:07:59Z\"}\n").unwrap();
    let bad = state_cmd(&["import", bad_import.to_str().unwrap()]);
    assert_eq!(bad.code, 5, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("import line 1: `nophase` is not an event key"),
        "{}",
        bad.stderr
    );
    // A line of something else, and a line that is not JSON: named as such, not in serde's
    // words about a Rust enum.
    for (line, said) in [
        (
            "{\"session\":\"x\"}",
            "import line 1: not a line of a state export: expected {\"meta\"",
        ),
        ("garbage", "import line 1: not JSON: "),
    ] {
        std::fs::write(&bad_import, format!("{line}\n")).unwrap();
        let bad = state_cmd(&["import", bad_import.to_str().unwrap()]);
        assert_eq!(bad.code, 5, "{}", bad.stderr);
        assert!(bad.stderr.contains(said), "{}", bad.stderr);
        assert!(!bad.stderr.contains("untagged enum"), "{}", bad.stderr);
    }
    state_cmd(&["import", export.to_str().unwrap()]).ok();
    assert_eq!(state_cmd(&["list"]).stdout.lines().count(), 6);
    assert_eq!(setup.run(&["once"]).ok().stdout, "", "imported keys are known");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn demo_runs_without_config() {
    let out = crate::support::cmd()
        .args(["demo", "--cycles", "2", "--interval", "1"])
        .output()
        .unwrap();
    let run: crate::support::Run = out.into();
    run.ok();
    assert!(run.docs().len() >= 14 + 4, "{}", run.stdout);
}

#[test]
fn json_logs_are_one_object_per_line_on_stderr() {
    let sim = Sim::start(&["--sessions", "3", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["--log-format", "json", "once"]);
    run.ok();
    assert_eq!(run.docs().len(), 3, "events stay on stdout");
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines
        .iter()
        .find(|l| l["message"] == "Poll cycle done")
        .expect("summary line");
    assert_eq!(summary["new"], 3);
    assert_eq!(summary["records"], 3);
}

#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::env::set_var("SENHASEGURA_CLIENT_ID", "example");
            senhasegura_forwarder::config::Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "minimal, syslog-tls, syslog-udp");
}

#[test]
fn interactive_once_shows_progress_while_the_listing_streams() {
    // `script` gives the agent a terminal, as an operator running `once` by hand has.
    let sim = Sim::start(&["--sessions", "3", "--now", NOW, "--delay-ms", "2500"]);
    let setup = Setup::new(&sim.url, "", "");
    let command = format!("{} once --dry-run -c {}", crate::support::bin(), setup.config.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("reading listing:"), "{text}");
    let piped = setup.run(&["once", "--dry-run"]);
    assert!(
        !piped.stderr.contains("reading listing:"),
        "no progress line when stderr is not a terminal"
    );
}

#[test]
fn automatic_backup_restores_a_lost_store_without_reforwarding() {
    let sim = Sim::start(&["--sessions", "25", "--active", "3", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "retention = \"36500d\"",
        "retention = \"36500d\"\nbackup_every = \"1s\"",
    );
    std::fs::write(&setup.config, text).unwrap();
    assert_eq!(setup.run(&["once"]).ok().docs().len(), 25);
    // The next backup is due once the last one is older than backup_every (1 s).
    let backup = setup.state_dir().join("backup.jsonl");
    let written = std::fs::metadata(&backup).unwrap().modified().unwrap();
    while written.elapsed().unwrap_or_default() <= std::time::Duration::from_millis(1050) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = setup.run(&["once"]);
    second.ok();
    assert!(
        second.stderr.contains("State backup written keys=25"),
        "{}",
        second.stderr
    );
    let backup = setup.state_dir().join("backup.jsonl");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o077,
            0,
            "backup is private"
        );
    }
    // The store is lost (corrupt, deleted): move it aside, import the backup into a new one.
    let aside = setup.dir.path().join("state.corrupt");
    std::fs::rename(setup.state_dir(), &aside).unwrap();
    let import = crate::support::cmd()
        .args(["state", "--state-dir"])
        .arg(setup.state_dir())
        .arg("import")
        .arg(aside.join("backup.jsonl"))
        .output()
        .unwrap();
    assert_eq!(
        import.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert_eq!(setup.state_stats()["keys"], 25);
    assert_eq!(setup.run(&["once"]).ok().stdout, "", "nothing is forwarded again");
}

/// `state list | head` and `state export | head`: the reader goes away after a line, and the
/// command ends quietly with success (it panicked on the closed stdout, exit 101, and an export
/// failed as a state error, exit 5).
#[test]
fn state_output_into_a_closed_pipe_ends_quietly() {
    use std::io::BufRead;
    let sim = Sim::start(&["--sessions", "3000", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    setup.run(&["once"]).ok();
    for action in ["list", "export"] {
        let mut child = crate::support::cmd()
            .args(["state", "--state-dir"])
            .arg(setup.state_dir())
            .arg(action)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        // More than a pipe holds is waiting behind this line (3,000 keys, over 150 KB).
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{action}");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{action}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{action}: {stderr}");
    }
}

/// Nobody reading stderr (`2>&1 | head` after the reader left): the message is lost, the exit
/// code is not (it was 101, a panic in `eprintln!`).
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let closed_stderr = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let status = crate::support::cmd()
        .args(["state", "--state-dir", "/nonexistent/state", "stats"])
        .stdout(std::process::Stdio::null())
        .stderr(closed_stderr())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(5));

    let sim = Sim::start(&["--sessions", "3", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    setup.run(&["once"]).ok();
    let export = setup.dir.path().join("export.jsonl");
    let status = crate::support::cmd()
        .args(["state", "--state-dir"])
        .arg(setup.state_dir())
        .args(["export", "--output"])
        .arg(&export)
        .stderr(closed_stderr())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(std::fs::read_to_string(&export).unwrap().lines().count() > 3);
}

/// The environment the simulator started by `cmd` ends up with, read once it serves: the
/// variables named `GLIBC_TUNABLES` and `SENHASEGURA_FORWARDER_ALLOCATOR_SET`, and its command
/// line.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn allocator_environment(cmd: std::process::Command) -> (Vec<String>, Vec<String>) {
    let sim = Sim::start_from(cmd, "127.0.0.1:0", &["--sessions", "3"]);
    let split = |file: &str| -> Vec<String> {
        let bytes = std::fs::read(format!("/proc/{}/{file}", sim.pid())).unwrap();
        bytes
            .split(|&b| b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    let mut env: Vec<String> = split("environ")
        .into_iter()
        .filter(|v| v.starts_with("GLIBC_TUNABLES=") || v.starts_with("SENHASEGURA_FORWARDER_ALLOCATOR_SET="))
        .collect();
    env.sort();
    (env, split("cmdline"))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_turns_glibcs_per_thread_cache_off_unless_tunables_are_set() {
    let cmd = |tunables: Option<&str>, marked: bool| {
        let mut c = crate::support::cmd();
        c.env_remove("GLIBC_TUNABLES")
            .env_remove("SENHASEGURA_FORWARDER_ALLOCATOR_SET");
        if let Some(t) = tunables {
            c.env("GLIBC_TUNABLES", t);
        }
        if marked {
            c.env("SENHASEGURA_FORWARDER_ALLOCATOR_SET", "1");
        }
        c
    };
    // Started again in the same process (the pid spawn returned), with its arguments.
    let (env, cmdline) = allocator_environment(cmd(None, false));
    assert_eq!(
        env,
        [
            "GLIBC_TUNABLES=glibc.malloc.tcache_count=0",
            "SENHASEGURA_FORWARDER_ALLOCATOR_SET=1"
        ]
    );
    assert_eq!(cmdline[0], crate::support::bin());
    assert_eq!(cmdline[1..], ["simulate", "--listen", "127.0.0.1:0", "--sessions", "3"]);
    // Tunables the operator sets stay as they are: no new start.
    let (env, _) = allocator_environment(cmd(Some("glibc.malloc.tcache_count=5"), false));
    assert_eq!(env, ["GLIBC_TUNABLES=glibc.malloc.tcache_count=5"]);
    let (env, _) = allocator_environment(cmd(Some("glibc.malloc.arena_max=4"), false));
    assert_eq!(env, ["GLIBC_TUNABLES=glibc.malloc.arena_max=4"]);
    // Started again once at most, even when the variable is gone (as the loader drops it for a
    // program with more privileges than its caller).
    let (env, _) = allocator_environment(cmd(None, true));
    assert_eq!(env, ["SENHASEGURA_FORWARDER_ALLOCATOR_SET=1"]);
}
