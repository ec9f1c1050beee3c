//! `run` as a service: SIGHUP reloads, SIGTERM during a slow listing, SIGKILL mid-poll, systemd notifications,
//! the journal warning, and `--version`.

use crate::support::{cmd, key_of, Setup, Sim, NOW};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous upper bound for anything the tests wait for.
const WAIT: Duration = Duration::from_secs(60);

/// A running `run` whose stdout and stderr lines are collected by threads.
struct Agent {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    out: Vec<String>,
    err: Vec<String>,
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Agent {
    fn spawn(setup: &Setup, envs: &[(&str, &str)]) -> Agent {
        let mut c = cmd();
        c.args(["run", "-c"]).arg(&setup.config);
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Agent {
            child,
            stdout,
            stderr,
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    fn drain(&mut self) {
        self.out.extend(self.stdout.try_iter());
        self.err.extend(self.stderr.try_iter());
    }

    /// Wait until a stderr line contains `text` (after `skip` earlier lines).
    fn wait_log(&mut self, text: &str, skip: usize) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drain();
            if let Some(i) = self.err.iter().skip(skip).position(|l| l.contains(text)) {
                return skip + i;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}; stderr:\n{}",
                self.err.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until `pred` holds for the stdout lines so far.
    fn wait_out(&mut self, what: &str, pred: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drain();
            if pred(&self.out) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stdout never showed {what}; stderr:\n{}",
                self.err.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Wait for the exit (at most `limit`); the exit code and every line.
    fn wait_exit(mut self, limit: Duration) -> (i32, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                self.child.wait().unwrap();
                self.drain();
                panic!(
                    "the agent did not exit within {limit:?}; stderr:\n{}",
                    self.err.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader threads end at EOF.
        let (stdout, stderr) = (self.stdout, self.stderr);
        self.out.extend(stdout.iter());
        self.err.extend(stderr.iter());
        (status.code().unwrap_or(-1), self.out, self.err)
    }
}

fn ecs_key(line: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not ECS JSON ({e}): {line}"));
    crate::ecs::validate(&doc);
    key_of(&doc)
}

/// `<session_id>:<phase>` of a CEF line (session id in `externalId`, phase in the signature id).
fn cef_key(line: &str) -> String {
    let cef = crate::cef_parse::parse(line).unwrap_or_else(|e| panic!("not CEF ({e}): {line}"));
    let session = cef.get("externalId").expect("externalId").to_string();
    let phase = cef.header[4].strip_prefix("remote-session-").expect("signature id");
    format!("{session}:{phase}")
}

fn write_config(setup: &Setup, url: &str, rest: &str) {
    let fresh = Setup::new(url, "interval = \"300ms\"", rest);
    let text = std::fs::read_to_string(&fresh.config).unwrap().replace(
        &fresh.state_dir().display().to_string(),
        &setup.state_dir().display().to_string(),
    );
    // Atomic, as an editor or configuration management would.
    let tmp = setup.config.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &setup.config).unwrap();
}

const ECS: &str = "[[sink]]\ntype = \"stdout\"\nformat = \"ecs\"\n";
const CEF: &str = "[[sink]]\ntype = \"stdout\"\nformat = \"cef\"\n";

/// `run` of a listing that grows every cycle, with the sinks `before`; after its first cycle the
/// config gets the sinks `after` and a SIGHUP; two more cycles (each with new sessions), a
/// stdout line starting with `after_line`, then SIGTERM. Returns the setup and stdout's lines,
/// once the agent exited cleanly.
fn reload_after_the_first_cycle(before: &str, after: &str, after_line: &str) -> (Setup, Vec<String>) {
    let sim = Sim::start(&["--sessions", "20", "--active", "4", "--grow", "2", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", before);
    let mut agent = Agent::spawn(&setup, &[]);
    let first = agent.wait_log("Poll cycle done", 0);
    write_config(&setup, &sim.url, after);
    agent.signal("HUP");
    let reloaded = agent.wait_log("Configuration reloaded", first);
    let next = agent.wait_log("Poll cycle done", reloaded);
    agent.wait_log("Poll cycle done", next + 1);
    agent.wait_out(after_line, |out| out.iter().any(|l| l.starts_with(after_line)));
    agent.signal("TERM");
    let (code, out, err) = agent.wait_exit(WAIT);
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    (setup, out)
}

#[test]
fn sighup_applies_a_new_format_and_keeps_the_state() {
    let (setup, out) = reload_after_the_first_cycle(ECS, CEF, "CEF:");

    // ECS before the reload, CEF after it, nothing in between or after in the old format.
    let first_cef = out.iter().position(|l| l.starts_with("CEF:")).unwrap();
    assert!(first_cef > 0, "ECS lines came first");
    assert!(
        out[first_cef..].iter().all(|l| l.starts_with("CEF:")),
        "only CEF after the reload"
    );
    let mut keys: Vec<String> = out[..first_cef].iter().map(|l| ecs_key(l)).collect();
    keys.extend(out[first_cef..].iter().map(|l| cef_key(l)));
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "an event was sent twice across the reload");
    // Every delivered key is in the state, and only those.
    let state: HashSet<String> = setup.state_keys();
    assert_eq!(state, keys.iter().cloned().collect::<HashSet<_>>());
}

#[test]
fn sighup_from_kafka_to_stdout_sends_each_event_once() {
    // The old Kafka sink is flushed and let go: the events went to Kafka before the reload and
    // go to stdout after it, each once, and the state holds exactly those.
    let broker = crate::broker::Broker::start();
    broker.create_topic("pam.reload", 1);
    let kafka = format!(
        "[[sink]]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopic = \"pam.reload\"\n",
        broker.brokers()
    );
    let (setup, out) = reload_after_the_first_cycle(&kafka, ECS, "{");

    // Read until no message came for 3 s (the count is not known in advance).
    let produced = broker.consume("pam.reload", usize::MAX, Duration::from_secs(3));
    let before: Vec<String> = produced
        .iter()
        .map(|m| key_of(&serde_json::from_str(&m.payload).expect("an ECS document")))
        .collect();
    let after: Vec<String> = out.iter().map(|l| ecs_key(l)).collect();
    assert!(before.len() >= 20, "the first cycle's events went to Kafka: {before:?}");
    assert!(!after.is_empty(), "events after the reload went to stdout");
    let all: Vec<String> = before.into_iter().chain(after).collect();
    let unique: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "an event was sent twice across the reload");
    assert_eq!(setup.state_keys(), unique);
}

/// A sink that fails holds its poll up (`run` retries it until it acknowledges), so a reload
/// that fixes it must not wait for the poll's end: the batch is abandoned (not marked sent), the
/// new config applies, and the next poll delivers everything to the fixed sink, each once.
#[test]
fn sighup_fixes_a_failing_sink_without_waiting_for_the_poll() {
    let sim = Sim::start(&["--sessions", "20", "--active", "4", "--now", NOW]);
    let missing = "[[sink]]\ntype = \"file\"\npath = \"DIR/missing/events.ndjson\"\n";
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", "");
    let dir = setup.dir.path().display().to_string();
    write_config(&setup, &sim.url, &missing.replace("DIR", &dir));
    // The unit's check lets it through (the directory may be a mount to come), with a warning.
    let check = cmd()
        .args(["check", "--offline", "-c"])
        .arg(&setup.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{said}");
    assert!(
        said.contains("warn sink file: directory") && said.contains("missing does not exist"),
        "{said}"
    );
    let mut agent = Agent::spawn(&setup, &[]);
    let down = agent.wait_log("Sink down", 0);
    let fixed = setup.dir.path().join("events.ndjson");
    write_config(
        &setup,
        &sim.url,
        &format!("[[sink]]\ntype = \"file\"\npath = \"{}\"\n", fixed.display()),
    );
    agent.signal("HUP");
    let abandoned = agent.wait_log("abandoning a batch it has not acknowledged", down);
    let reloaded = agent.wait_log("Configuration reloaded", abandoned);
    agent.wait_log("Poll cycle done", reloaded);
    agent.signal("TERM");
    let (code, _, err) = agent.wait_exit(WAIT);
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    let lines: Vec<String> = std::fs::read_to_string(&fixed).unwrap().lines().map(ecs_key).collect();
    let unique: HashSet<String> = lines.iter().cloned().collect();
    assert_eq!(unique.len(), lines.len(), "each event once");
    assert_eq!(
        setup.state_keys(),
        unique,
        "the state holds exactly what the fixed sink got"
    );
    assert!(!unique.is_empty());
}

/// A reload of a config that reads `${VAR}` applies the value the agent started with (its
/// environment cannot change), and says so: the vault's URL from the environment stays.
#[test]
fn sighup_keeps_environment_values_and_says_so() {
    let sim = Sim::start(&["--sessions", "5", "--now", NOW]);
    let setup = Setup::new("${FWD_TEST_VAULT}", "interval = \"300ms\"", "");
    let mut agent = Agent::spawn(&setup, &[("FWD_TEST_VAULT", sim.url.as_str())]);
    let first = agent.wait_log("Poll cycle done", 0);
    agent.signal("HUP");
    let reloaded = agent.wait_log("Configuration reloaded", first);
    agent.wait_log("Poll cycle done", reloaded);
    agent.signal("TERM");
    let (code, _, err) = agent.wait_exit(WAIT);
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    assert!(
        err.iter().any(|l| l.contains("keep the values the agent started with")),
        "{}",
        err.join("\n")
    );
}

/// A running agent gets `config` and a SIGHUP, refuses it, and keeps polling and delivering on
/// its old config; returns the refusal (with the lines that follow it) and the stdout lines.
fn reload_is_refused(config: &str) -> (Setup, String, Vec<String>) {
    let sim = Sim::start(&["--sessions", "10", "--active", "2", "--grow", "2", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", ECS);
    let mut agent = Agent::spawn(&setup, &[]);
    let first = agent.wait_log("Poll cycle done", 0);
    let config = config.replace("STATE", &setup.state_dir().display().to_string());
    std::fs::write(&setup.config, config).unwrap();
    agent.signal("HUP");
    let refused = agent.wait_log("Reload refused", first);
    let message = agent.err[refused..].join("\n");
    // Still polling, and still delivering new events.
    let seen = agent.out.len();
    let next = agent.wait_log("Poll cycle done", refused);
    agent.wait_log("Poll cycle done", next + 1);
    agent.wait_out("new events after the refused reload", |out| out.len() > seen);
    agent.signal("TERM");
    let (code, out, err) = agent.wait_exit(WAIT);
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    // Still ECS on stdout, each event once, all of it committed in the old state directory.
    let keys: Vec<String> = out.iter().map(|l| ecs_key(l)).collect();
    let unique: HashSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "no repeats");
    assert_eq!(setup.state_keys(), unique);
    (setup, message, out)
}

#[test]
fn sighup_with_an_invalid_config_keeps_the_old_one() {
    let (_, message, _) = reload_is_refused("[source]\nurl = \"http://x\"\nintervall = \"1s\"\n");
    // The message (TOML errors span lines) names the unknown key.
    assert!(
        message.contains("unknown field `intervall`"),
        "names the problem: {message}"
    );
}

#[test]
fn sighup_refuses_a_new_state_path() {
    let config = format!(
        "[source]\nurl = \"http://127.0.0.1:1\"\ntimezone = \"UTC\"\n[source.auth]\nclient_id = \"forwarder\"\nclient_secret = \"simulator-secret\"\n[state]\npath = \"STATE-elsewhere\"\n{CEF}"
    );
    let (setup, message, _) = reload_is_refused(&config);
    assert!(message.contains("moving the state needs a restart"), "{message}");
    assert!(!setup.dir.path().join("state-elsewhere").exists());
}

#[test]
fn sighup_during_a_cycle_loses_nothing() {
    // The listing takes 1.5 s to answer; the HUP comes while the agent waits for it.
    let sim = Sim::start(&["--sessions", "40", "--active", "5", "--delay-ms", "1500", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", ECS);
    let mut agent = Agent::spawn(&setup, &[]);
    agent.wait_log("Polling started", 0);
    std::thread::sleep(Duration::from_millis(300));
    write_config(&setup, &sim.url, CEF);
    agent.signal("HUP");
    let done = agent.wait_log("Poll cycle done", 0);
    let reloaded = agent.wait_log("Configuration reloaded", 0);
    assert!(reloaded > done, "applied after the cycle, not in the middle of it");
    agent.signal("TERM");
    let (code, out, err) = agent.wait_exit(WAIT);
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    // The interrupted-by-HUP cycle delivered the whole listing, once, in the old format.
    let keys: Vec<String> = out.iter().map(|l| ecs_key(l)).collect();
    let expected = Setup::new(
        &Sim::start(&["--sessions", "40", "--active", "5", "--now", NOW]).url,
        "",
        ECS,
    )
    .run(&["once", "--dry-run"])
    .ok()
    .keys();
    assert_eq!(keys.len(), expected.len(), "stderr:\n{}", err.join("\n"));
    assert_eq!(
        keys.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );
    assert_eq!(setup.state_keys(), keys.into_iter().collect::<HashSet<_>>());
}

#[test]
fn sigterm_interrupts_a_slow_listing_and_commits_only_what_was_acknowledged() {
    // First, a normal cycle commits the current sessions.
    let fast = Sim::start(&["--sessions", "30", "--active", "5", "--now", NOW]);
    let setup = Setup::new(&fast.url, "interval = \"300ms\"", ECS);
    let first = setup.run(&["once"]);
    first.ok();
    let committed: HashSet<String> = first.keys().into_iter().collect();
    assert_eq!(setup.state_keys(), committed);
    drop(fast);
    // Then the vault grows and takes 30 s to answer.
    let slow = Sim::start(&[
        "--sessions",
        "30",
        "--active",
        "5",
        "--grow",
        "5",
        "--delay-ms",
        "30000",
        "--now",
        NOW,
    ]);
    write_config(&setup, &slow.url, ECS);
    let mut agent = Agent::spawn(&setup, &[]);
    agent.wait_log("Polling started", 0);
    // The listing request is in flight (the simulator counts it once it arrived).
    let deadline = Instant::now() + WAIT;
    while slow.stats()["listings"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the agent never asked for the listing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    agent.signal("TERM");
    let (code, out, err) = agent.wait_exit(Duration::from_secs(3));
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    assert!(sent.elapsed() < Duration::from_secs(3));
    assert!(out.is_empty(), "nothing was delivered: {out:?}");
    assert_eq!(setup.state_keys(), committed, "nothing new committed");
}

/// Every notification datagram until the agent exits.
fn notifications(socket: &UnixDatagram, agent: &mut Child) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => {
                if agent.try_wait().unwrap().is_some() {
                    // Anything sent just before the exit is already queued.
                    while let Ok(n) = socket.recv(&mut buf) {
                        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                    return got;
                }
            }
        }
        assert!(Instant::now() < deadline, "the agent did not finish; got {got:?}");
    }
}

#[test]
fn systemd_gets_ready_status_watchdog_and_stopping_in_order() {
    let sim = Sim::start(&["--sessions", "10", "--active", "2", "--grow", "1", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", ECS);
    let path = setup.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut agent = cmd()
        .args(["run", "--cycles", "4", "-c"])
        .arg(&setup.config)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let got = notifications(&socket, &mut agent);
    assert!(agent.wait().unwrap().success());
    let first = |pred: &dyn Fn(&str) -> bool| got.iter().position(|m| pred(m));
    let ready = first(&|m| m.lines().any(|l| l == "READY=1")).expect("READY=1");
    let status = first(&|m| m.contains("STATUS=Last cycle") && m.contains("delivered")).expect("STATUS");
    let watchdog_after_status = got[status..].iter().position(|m| m == "WATCHDOG=1").map(|i| i + status);
    let stopping = first(&|m| m.lines().any(|l| l == "STOPPING=1")).expect("STOPPING=1");
    assert_eq!(ready, 0, "READY first: {got:?}");
    assert!(status > ready, "{got:?}");
    let watchdog = watchdog_after_status.expect("WATCHDOG=1 after the first STATUS");
    assert!(stopping > watchdog, "{got:?}");
    assert_eq!(stopping, got.len() - 1, "STOPPING last: {got:?}");
    assert!(got[0].contains("STATUS=Polling every 300ms"), "{got:?}");
}

#[test]
fn a_stdout_sink_into_the_journal_is_warned_about() {
    use std::os::unix::fs::MetadataExt;
    let sim = Sim::start(&["--sessions", "2", "--active", "1", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", ECS);
    let out_path = setup.dir.path().join("stdout");
    for (journal, warned) in [(true, true), (false, false)] {
        let out = std::fs::File::create(&out_path).unwrap();
        let meta = out.metadata().unwrap();
        // systemd sets JOURNAL_STREAM to the device and inode of the stream it gave stdout.
        let ino = if journal { meta.ino() } else { meta.ino() + 1 };
        let run = cmd()
            .args(["run", "--cycles", "1", "-c"])
            .arg(&setup.config)
            .env("JOURNAL_STREAM", format!("{}:{ino}", meta.dev()))
            .stdout(out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(stderr.contains("writes into the systemd journal"), warned, "{stderr}");
    }
}

#[test]
fn version_names_commit_and_target() {
    let out = cmd().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("senhasegura-forwarder {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    if let Ok(git) = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        let commit = String::from_utf8_lossy(&git.stdout).trim().to_string();
        if git.status.success() {
            assert!(text.contains(&commit), "{text} lacks {commit}");
        }
    }
    let target = format!("{}-", std::env::consts::ARCH);
    assert!(text.contains(&target) && text.contains(std::env::consts::OS), "{text}");
}

#[test]
fn the_file_sink_appends_fsynced_lines_and_follows_a_rotation() {
    let sim = Sim::start(&["--sessions", "10", "--active", "3", "--grow", "2", "--now", NOW]);
    let logs = tempfile::tempdir().unwrap();
    let events = logs.path().join("events.ndjson");
    let rotated = logs.path().join("events.ndjson.1");
    let sink = format!("[[sink]]\ntype = \"file\"\npath = \"{}\"\n", events.display());
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", &sink);
    let mut agent = Agent::spawn(&setup, &[]);
    let lines_in = |p: &std::path::Path| std::fs::read_to_string(p).map(|t| t.lines().count()).unwrap_or(0);
    let deadline = Instant::now() + WAIT;
    while lines_in(&events) == 0 {
        assert!(Instant::now() < deadline, "no events in the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Rotation by rename, as logrotate does; the agent reopens the path.
    std::fs::rename(&events, &rotated).unwrap();
    let at_rename = agent.err.len();
    agent.wait_log("rotated or removed; reopening", at_rename);
    while lines_in(&events) == 0 {
        assert!(Instant::now() < deadline, "no events in the new file");
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.signal("TERM");
    let (code, out, err) = agent.wait_exit(WAIT);
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    assert!(out.is_empty(), "nothing on stdout");
    let mut keys = Vec::new();
    for file in [&rotated, &events] {
        let text = std::fs::read_to_string(file).unwrap();
        keys.extend(text.lines().map(ecs_key));
    }
    let unique: HashSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "no event in both files");
    assert_eq!(setup.state_keys(), unique, "the files hold exactly what was committed");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&events).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn sigterm_while_a_sink_is_down_mid_listing_ends_the_agent() {
    // A listing of several batches (5,000 events, batches of 1,000) and a syslog sink nobody
    // listens for: delivery retries the first batch while the filter waits with the next ones.
    // SIGTERM abandons the batch; the filter, waiting for a batch back (all three of the pool
    // are out) or on the full batch queue, must end too.
    let sim = Sim::start(&["--sessions", "5000", "--active", "50", "--now", NOW]);
    let port = crate::rsyslog::free_port();
    let sink = format!(
        "[[sink]]\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\
         [delivery]\nretry_backoff = \"100ms\"\nretry_backoff_max = \"200ms\"\n"
    );
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", &sink);
    let mut agent = Agent::spawn(&setup, &[]);
    agent.wait_log("Sink down", 0);
    // Time for the filter to read ahead until every batch of the pool is out (three of 1,000).
    std::thread::sleep(Duration::from_millis(1500));
    agent.signal("TERM");
    let (code, _, err) = agent.wait_exit(Duration::from_secs(15));
    assert_eq!(code, 0, "stderr:\n{}", err.join("\n"));
    assert!(setup.state_keys().is_empty(), "nothing was acknowledged");
    let read = err
        .iter()
        .find_map(|l| l.split("records=").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        read >= 3000,
        "the filter had filled the three batches: stderr:\n{}",
        err.join("\n")
    );
}

#[test]
fn a_write_cut_short_leaves_no_torn_line_and_a_later_run_delivers_everything() {
    use std::os::unix::process::CommandExt;
    // 300 events, one batch of about 350 KB, into a file that may not grow past 100,000 bytes
    // (RLIMIT_FSIZE, with SIGXFSZ ignored: the write is cut short, then fails, as on a full
    // disk). What part of the batch was written must not stay in the file.
    let sim = Sim::start(&["--sessions", "300", "--active", "30", "--now", NOW]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.ndjson");
    let sink = format!(
        "[[sink]]\ntype = \"file\"\npath = \"{}\"\n\
         [delivery]\nretry_backoff = \"50ms\"\nretry_backoff_max = \"100ms\"\ngive_up_after = \"1s\"\n",
        out.display()
    );
    let setup = Setup::new(&sim.url, "", &sink);
    let mut limited = crate::support::cmd();
    limited.args(["once", "-c"]).arg(&setup.config);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        limited.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 100_000,
                rlim_max: 100_000,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let cut: crate::support::Run = limited.output().unwrap().into();
    assert_eq!(cut.code, 4, "{}", cut.stderr);
    assert!(setup.state_keys().is_empty(), "nothing acknowledged, nothing committed");
    let lines = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn line ({e}): {l:.120}")))
            .collect()
    };
    assert!(lines(&std::fs::read_to_string(&out).unwrap_or_default()).is_empty());
    // Without the limit, the same events arrive, each once, every line whole.
    setup.run(&["once"]).ok();
    let docs = lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(docs.len(), 300);
    assert_eq!(setup.state_keys().len(), 300);
}

/// A refused reload's STATUS= quotes the config error on one line, with the value escaped: a
/// line break in a config value cannot become a notification of its own (here
/// `WATCHDOG=trigger`, which would make systemd run the unit's watchdog action), end to end
/// (`service::tests` checks the one-line STATUS= alone).
#[test]
fn a_refused_reload_cannot_inject_a_notification() {
    let sim = Sim::start(&["--sessions", "4", "--active", "1", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", ECS);
    let path = setup.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut agent = cmd()
        .args(["run", "-c"])
        .arg(&setup.config)
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut wait_for = |got: &mut Vec<String>, what: &str| {
        let deadline = Instant::now() + WAIT;
        while !got.iter().any(|m| m.contains(what)) {
            assert!(Instant::now() < deadline, "no {what} notification; got {got:?}");
            if let Ok(n) = socket.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    wait_for(&mut got, "STATUS=Last cycle");
    let bad = std::fs::read_to_string(&setup.config).unwrap().replace(
        ECS,
        "[[sink]]\ntype = \"syslog\"\ntransport = \"udp\"\naddress = \"127.0.0.1:9\"\napp_name = \"a\\nWATCHDOG=trigger\\nb\"\n",
    );
    std::fs::write(&setup.config, bad).unwrap();
    let pid = agent.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(&mut got, "STATUS=Reload refused");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(agent.wait().unwrap().success());
    let refused = got.iter().find(|m| m.contains("STATUS=Reload refused")).unwrap();
    assert!(refused.contains("sink.app_name"), "{refused}");
    assert_eq!(refused.lines().count(), 2, "READY=1 and one STATUS line: {refused:?}");
    assert!(
        got.iter().all(|m| m.lines().all(|l| l != "WATCHDOG=trigger")),
        "{got:?}"
    );
}

/// SIGKILL in the middle of a first poll, twice, then a poll to its end. The store opens after
/// each kill; it never holds a key that was not delivered; a committed key is never sent again;
/// what is sent twice is only what was delivered after the last commit (at most 5,000 keys and
/// the batches in flight); and in the end every event of the listing was delivered and is known.
#[test]
fn sigkill_mid_poll_loses_nothing_and_repeats_only_what_was_not_committed() {
    let args = ["--sessions", "40000", "--active", "400", "--now", NOW];
    let sim = Sim::start(&args);
    let setup = Setup::new(&sim.url, "interval = \"300ms\"", ECS);
    let mut delivered: Vec<String> = Vec::new();
    for round in 0..3 {
        let before = if setup.state_dir().join("db").exists() {
            setup.state_keys()
        } else {
            HashSet::new()
        };
        let mut agent = Agent::spawn(&setup, &[]);
        if round < 2 {
            agent.wait_out("12,000 events", |out| out.len() >= 12_000);
            agent.signal("KILL");
        } else {
            agent.wait_log("Poll cycle done", 0);
            agent.signal("TERM");
        }
        let (_, mut out, err) = agent.wait_exit(WAIT);
        // A kill can cut the last write short: only the last line may be torn, and its event
        // was not acknowledged.
        if round < 2
            && out
                .last()
                .is_some_and(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        {
            out.pop();
        }
        let sent: Vec<String> = out
            .iter()
            .map(|l| key_of(&serde_json::from_str(l).unwrap_or_else(|e| panic!("round {round}: not JSON ({e}): {l}"))))
            .collect();
        let once: HashSet<&String> = sent.iter().collect();
        assert_eq!(once.len(), sent.len(), "round {round}: nothing twice within a run");
        assert!(
            sent.iter().all(|k| !before.contains(k)),
            "round {round}: a committed key was sent again"
        );
        // Opens after the kill (`state list` fails on a store it cannot read).
        let after = setup.state_keys();
        let newly: HashSet<&String> = after.difference(&before).collect();
        assert!(
            newly.iter().all(|k| once.contains(k)),
            "round {round}: a key was committed that this run did not deliver"
        );
        if round < 2 {
            let uncommitted = sent.len() - newly.len();
            assert!(
                uncommitted <= 5_000 + 2 * 1_000,
                "round {round}: {uncommitted} delivered but not committed; stderr:\n{}",
                err.join("\n")
            );
        }
        delivered.extend(sent);
    }
    let expected: HashSet<String> = Setup::new(&Sim::start(&args).url, "", ECS)
        .run(&["once", "--dry-run"])
        .ok()
        .keys()
        .into_iter()
        .collect();
    assert_eq!(
        delivered.iter().cloned().collect::<HashSet<_>>(),
        expected,
        "every event delivered"
    );
    assert_eq!(setup.state_keys(), expected, "and known");
}
