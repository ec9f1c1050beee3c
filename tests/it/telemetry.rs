//! Seeing the agent work: a real Prometheus scraping `/metrics`, promtool on the scrape and on
//! the alert rules, the dashboard's metric names, `/health` through source and sink outages,
//! the outage log story, the future-time warning, librdkafka's deduplicated lines, JSON-only
//! logs. `tests/run-all.sh` installs Debian's `prometheus` (which brings `promtool`).

use crate::rsyslog::{free_port, Input, Rsyslog};
use crate::support::{cmd, Setup, Sim, NOW};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn need(bin: &str) {
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: run `bash tests/run-all.sh`, which installs Debian's prometheus package"
    );
}

/// Poll `f` every 100 ms until it returns `Some`, at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running agent whose stdout and stderr lines are collected as they come.
struct Agent {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Agent {
    fn start(setup: &Setup, extra: &[&str]) -> Agent {
        let mut child = cmd()
            .args(extra)
            .args(["run", "-c"])
            .arg(&setup.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Agent { child, stdout, stderr }
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout_lines(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    fn count(&self, needle: &str) -> usize {
        self.stderr().iter().filter(|l| l.contains(needle)).count()
    }

    /// The endpoint's address, from the agent's "Serving metrics on" line.
    fn metrics_addr(&self) -> String {
        wait_for(Duration::from_secs(30), "the metrics endpoint line", || {
            self.stderr().iter().find_map(|l| {
                let rest = l.split("Serving metrics on http://").nth(1)?;
                Some(rest.split('/').next()?.to_string())
            })
        })
    }
}

impl Agent {
    /// SIGTERM, wait, and every stderr line.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        // The reader thread ends with the pipe; give it a moment to push the last lines.
        std::thread::sleep(Duration::from_millis(300));
        self.stderr()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // already stopped
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.0: status and body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    Some((status, resp.split_once("\r\n\r\n")?.1.to_string()))
}

fn health(addr: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(addr, "/health").expect("GET /health");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("health is not JSON ({e}): {body}")),
    )
}

/// The value of one sample (`name{labels}` exactly as exposed) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every sample name in a scrape.
fn exported_names(scrape: &str) -> std::collections::BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

fn metrics_config() -> &'static str {
    "[metrics]\nlisten = \"127.0.0.1:0\"\n"
}

/// A private Prometheus on loopback scraping `target` every second.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        need(PROMETHEUS);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: senhasegura-forwarder\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, addr, _dir: dir };
        wait_for(Duration::from_secs(60), "prometheus to be ready", || {
            http_get(&p.addr, "/-/ready").filter(|(s, _)| *s == 200)
        });
        p
    }

    /// An instant query's first sample value, when there is one.
    fn query(&self, promql: &str) -> Option<f64> {
        let mut q = String::new();
        for b in promql.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => q.push(b as char),
                _ => q.push_str(&format!("%{b:02X}")),
            }
        }
        let (status, body) = http_get(&self.addr, &format!("/api/v1/query?query={q}"))?;
        assert_eq!(status, 200, "query {promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_delivered_events_and_the_last_success() {
    // 40 sessions, 6 running: 40 events (34 `end`, 6 `start`), all delivered by the first poll.
    let sim = Sim::start(&["--sessions", "40", "--active", "6", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"2s\"", metrics_config());
    let agent = Agent::start(&setup, &[]);
    let addr = agent.metrics_addr();
    let prom = Prometheus::start(&addr);

    let total = wait_for(Duration::from_secs(60), "prometheus to see 40 delivered events", || {
        prom.query("sum(senhasegura_forwarder_events_delivered_total)")
            .filter(|v| *v == 40.0)
    });
    assert_eq!(
        total as usize,
        agent.stdout_lines(),
        "Prometheus counts what the sink received"
    );
    assert_eq!(
        prom.query("senhasegura_forwarder_events_delivered_total{sink=\"stdout\",phase=\"start\"}"),
        Some(6.0)
    );
    assert_eq!(prom.query("up{job=\"senhasegura-forwarder\"}"), Some(1.0));
    // At the moment of the scrape, the last success is within the last interval (2 s; a poll
    // of 40 sessions takes milliseconds).
    let age = wait_for(Duration::from_secs(30), "a scrape after a success", || {
        prom.query(
            "timestamp(senhasegura_forwarder_last_success_timestamp_seconds) - senhasegura_forwarder_last_success_timestamp_seconds",
        )
    });
    assert!((0.0..=2.5).contains(&age), "last success {age}s before the scrape");
    assert!(
        prom.query("senhasegura_forwarder_polls_total{result=\"ok\"}")
            .unwrap_or(0.0)
            >= 1.0
    );

    // The store while the agent runs: on the endpoint, and `state stats` points there.
    let (_, scrape) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(
        sample(&scrape, "senhasegura_forwarder_state_keys"),
        Some(40.0),
        "{scrape}"
    );
    assert!(sample(&scrape, "senhasegura_forwarder_state_last_commit_timestamp_seconds").unwrap() > 1.7e9);
    assert!(sample(&scrape, "senhasegura_forwarder_state_horizon_timestamp_seconds").is_some());
    let stats: crate::support::Run = cmd()
        .args(["state", "-c"])
        .arg(&setup.config)
        .arg("stats")
        .output()
        .unwrap()
        .into();
    assert_eq!(stats.code, 5, "{}", stats.stderr);
    assert!(
        stats.stderr.contains("in use")
            && stats.stderr.contains("/metrics")
            && stats.stderr.contains("senhasegura_forwarder_state_"),
        "{}",
        stats.stderr
    );
}

#[test]
fn a_reload_moves_health_and_metrics_to_the_new_config_and_keeps_their_history() {
    // 30 sessions, 5 running: 30 events, all delivered to stdout by the first poll. The reload
    // then changes the interval, replaces the stdout sink by a file, and asks for another
    // endpoint address (which needs a restart).
    let sim = Sim::start(&["--sessions", "30", "--active", "5", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"1s\"", metrics_config());
    let agent = Agent::start(&setup, &[]);
    let addr = agent.metrics_addr();
    wait_for(Duration::from_secs(30), "30 events on stdout", || {
        (agent.stdout_lines() == 30).then_some(())
    });
    let events = setup.dir.path().join("events.ndjson");
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("interval = \"1s\"", "interval = \"60s\"")
        .replace(
            metrics_config(),
            &format!(
                "[[sink]]\ntype = \"file\"\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:1\"\n",
                events.display()
            ),
        );
    std::fs::write(&setup.config, config).unwrap();
    let polls_before = wait_for(Duration::from_secs(30), "a finished poll", || {
        let (_, scrape) = http_get(&addr, "/metrics")?;
        sample(&scrape, "senhasegura_forwarder_polls_total{result=\"ok\"}").filter(|n| *n >= 1.0)
    });
    Command::new("kill")
        .arg("-HUP")
        .arg(agent.child.id().to_string())
        .status()
        .unwrap();
    wait_for(Duration::from_secs(30), "the reload", || {
        (agent.count("Configuration reloaded") == 1).then_some(())
    });

    // Health: the new interval and sinks, and still healthy (the last success carried over).
    let (status, doc) = health(&addr);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["interval_seconds"], 60.0, "{doc}");
    assert_eq!(doc["sinks"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["sinks"][0]["name"], "file", "{doc}");
    assert!(doc["last_success"].is_string(), "{doc}");
    // Metrics: the same registry goes on; the stdout sink's series leave, the file's come.
    let (_, scrape) = http_get(&addr, "/metrics").unwrap();
    let value = |series: &str| sample(&scrape, &format!("senhasegura_forwarder_{series}"));
    assert_eq!(value("poll_interval_seconds"), Some(60.0), "{scrape}");
    assert_eq!(value("records_total{outcome=\"new\"}"), Some(30.0), "{scrape}");
    assert!(value("polls_total{result=\"ok\"}").unwrap() >= polls_before, "{scrape}");
    assert_eq!(value("state_keys"), Some(30.0), "{scrape}");
    assert_eq!(value("sink_up{sink=\"file\"}"), Some(1.0), "{scrape}");
    assert_eq!(value("sink_retries_total{sink=\"file\"}"), Some(0.0), "{scrape}");
    assert!(!scrape.contains("sink=\"stdout\""), "{scrape}");
    let err = agent.stop();
    assert!(
        err.iter()
            .any(|l| l.contains("metrics.listen changed") && l.contains("127.0.0.1:1")),
        "{}",
        err.join("\n")
    );
}

#[test]
fn clients_that_never_send_a_request_cannot_hold_the_endpoint_or_the_agent() {
    // 300 connections that send nothing (or a request head that never ends): the endpoint
    // keeps a few, closes the rest at once and the kept ones after the header timeout (10 s);
    // the agent keeps polling and /health answers again.
    let sim = Sim::start(&["--sessions", "10", "--active", "2", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"1s\"", metrics_config());
    let agent = Agent::start(&setup, &[]);
    let addr = agent.metrics_addr();
    let polls = |addr: &str| {
        let (_, scrape) = http_get(addr, "/metrics")?;
        sample(&scrape, "senhasegura_forwarder_polls_total{result=\"ok\"}")
    };
    let before = wait_for(Duration::from_secs(30), "a first poll", || {
        polls(&addr).filter(|n| *n >= 1.0)
    });
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            if i % 2 == 0 {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ");
            }
            s
        })
        .collect();
    // Within the header timeout and a little, every one of them is closed by the agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in &mut idle {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let mut b = [0u8; 64];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)) && Instant::now() < deadline,
            "an idle connection was kept open"
        );
    }
    drop(idle);
    let (status, _) = health(&addr);
    assert_eq!(status, 200);
    let after = wait_for(Duration::from_secs(30), "polls going on", || {
        polls(&addr).filter(|n| *n > before)
    });
    assert!(after > before);
    let err = agent.stop();
    assert!(!err.iter().any(|l| l.contains("ERROR")), "{}", err.join("\n"));
}

#[test]
fn promtool_checks_the_scrape_and_the_dashboard_uses_only_exported_metrics() {
    need(PROMTOOL);
    let sim = Sim::start(&["--sessions", "10", "--active", "2", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"1s\"", metrics_config());
    let agent = Agent::start(&setup, &[]);
    let addr = agent.metrics_addr();
    let scrape = wait_for(Duration::from_secs(30), "a poll to finish", || {
        let (_, s) = http_get(&addr, "/metrics")?;
        (sample(&s, "senhasegura_forwarder_polls_total{result=\"ok\"}")? >= 1.0).then_some(s)
    });

    let mut lint = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let exported = exported_names(&scrape);
    for contract in [
        "senhasegura_forwarder_events_delivered_total",
        "senhasegura_forwarder_records_total",
        "senhasegura_forwarder_polls_total",
        "senhasegura_forwarder_last_success_timestamp_seconds",
        "senhasegura_forwarder_poll_duration_seconds_bucket",
        "senhasegura_forwarder_listing_bytes_total",
        "senhasegura_forwarder_sink_retries_total",
        "senhasegura_forwarder_state_keys",
        "senhasegura_forwarder_build_info",
    ] {
        assert!(exported.contains(contract), "{contract} not exported:\n{scrape}");
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("packaging/grafana/senhasegura-forwarder.json")).unwrap())
            .unwrap();
    let mut exprs = Vec::new();
    find_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has {} queries", exprs.len());
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "query names no metric: {expr}");
        for n in names {
            assert!(
                exported.contains(&n),
                "dashboard query `{expr}` uses {n}, which the agent does not export"
            );
        }
    }
    // Alert rules name exported metrics too (and `up`, the series Prometheus keeps for each
    // scrape target).
    let rules = std::fs::read_to_string(repo("packaging/prometheus/senhasegura-forwarder.rules.yml")).unwrap();
    for line in rules.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        for n in metric_names(line.split_once("expr:").unwrap().1) {
            assert!(
                exported.contains(&n) || n == "up",
                "rule `{line}` uses {n}, which the agent does not export"
            );
        }
    }
}

fn find_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => find_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| find_exprs(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression reads: identifiers outside strings, label matchers,
/// ranges and `by (...)` lists that are neither functions nor keywords nor numbers.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        // the aggregation operators, which may take `by (...)` before their `(`
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => cleaned.push(c),
        }
        if matches!(c, '{' | '}' | '[' | ']' | '"') {
            cleaned.push(' ');
        }
    }
    // Drop `by (...)` / `without (...)` / `on (...)` label lists.
    let mut out = Vec::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut skip_parens = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                skip_parens = true;
            } else if next == Some(&'(') || KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
            } else {
                out.push(word);
            }
            continue;
        }
        if c == '(' && skip_parens {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_parens = false;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn metric_names_reads_promql() {
    assert_eq!(
        metric_names("sum by (sink) (rate(a_total{sink=\"x\"}[5m])) / on (x) b > 3 * c_seconds offset 1h"),
        ["a_total", "b", "c_seconds"]
    );
    assert_eq!(
        metric_names("histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))"),
        ["x_bucket"]
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    need(PROMTOOL);
    let rules = repo("packaging/prometheus/senhasegura-forwarder.rules.yml");
    let tests = repo("packaging/prometheus/senhasegura-forwarder.rules.test.yml");
    for args in [vec!["check", "rules"], vec!["test", "rules"]] {
        let file = if args[0] == "check" { &rules } else { &tests };
        let out = Command::new(PROMTOOL).args(&args).arg(file).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Health, and the log story, through a 10 s outage of the vault and then of a syslog sink.
#[test]
fn outages_of_the_source_and_a_sink_show_in_health_and_in_one_down_and_one_recovered_line() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let sim_args = ["--sessions", "20", "--active", "4", "--grow", "2", "--now", NOW];
    let sim = Sim::start_on(&listen, &sim_args);
    let mut rsyslog = Rsyslog::start(Input::Tcp);
    let sink = format!(
        "[[sink]]\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"{}\"\nformat = \"cef\"\n\
         [delivery]\nretry_backoff = \"200ms\"\nretry_backoff_max = \"1s\"\n[log]\noutage_reminder = \"4s\"\n{}",
        rsyslog.address(),
        metrics_config()
    );
    let setup = Setup::new(&sim.url, "interval = \"1s\"", &sink);
    let agent = Agent::start(&setup, &[]);
    let addr = agent.metrics_addr();
    wait_for(Duration::from_secs(30), "health 200", || {
        (health(&addr).0 == 200).then_some(())
    });

    // The vault goes away: 503 within three intervals, saying why.
    drop(sim);
    let down_at = Instant::now();
    let (_, doc) = wait_for(Duration::from_secs(30), "health 503 after the vault stopped", || {
        Some(health(&addr)).filter(|(s, _)| *s == 503)
    });
    let age = doc["last_success_age_seconds"].as_f64().unwrap();
    assert!(
        age < 3.0 + 1.5,
        "503 came {age}s after the last success (3 intervals of 1 s): {doc}"
    );
    let reasons = doc["reasons"].to_string();
    assert!(
        reasons.contains("no successful poll") && reasons.contains("source down since"),
        "{doc}"
    );
    assert_eq!(doc["source"]["up"], false);
    // 10 s of outage in all, then the vault is back on the same address.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed()));
    // The vault recorded more sessions meanwhile: they waited for the agent.
    let more = ["--sessions", "40", "--active", "4", "--grow", "2", "--now", NOW];
    let _sim = Sim::start_on(&listen, &more);
    wait_for(Duration::from_secs(30), "the source recovered line", || {
        (agent.count("Source recovered") == 1).then_some(())
    });
    wait_for(Duration::from_secs(30), "health 200 again", || {
        (health(&addr).0 == 200).then_some(())
    });

    // The SIEM's syslog collector goes away for 10 s: new events cannot be delivered.
    rsyslog.stop();
    let (_, doc) = wait_for(Duration::from_secs(30), "health 503 naming the sink", || {
        Some(health(&addr)).filter(|(s, _)| *s == 503)
    });
    assert!(
        doc["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("sink syslog failing since"),
        "{doc}"
    );
    assert_eq!(doc["sinks"][0]["up"], false, "{doc}");
    std::thread::sleep(Duration::from_secs(10));
    rsyslog.spawn();
    wait_for(Duration::from_secs(30), "the sink recovered line", || {
        (agent.count("Sink recovered") == 1).then_some(())
    });
    wait_for(Duration::from_secs(30), "health 200 after the sink came back", || {
        (health(&addr).0 == 200).then_some(())
    });
    let lines = agent.stop();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    let all = lines.join("\n");
    assert_eq!(count("Source down"), 1, "{all}");
    assert_eq!(count("Source recovered"), 1, "{all}");
    assert_eq!(count("Sink down"), 1, "{all}");
    assert_eq!(count("Sink recovered"), 1, "{all}");
    // Dozens of failed attempts in 10 s, but a reminder at most every 4 s.
    for what in ["Source still down", "Sink still down"] {
        let n = count(what);
        assert!((1..=3).contains(&n), "{n} x {what}: {all}");
    }
    let recovered = lines.iter().find(|l| l.contains("Source recovered")).unwrap();
    let failed: u64 = field(recovered, "failed_attempts").parse().unwrap();
    assert!(
        failed >= 10,
        "the reminder, not the retries, sets the pace: {recovered}"
    );
    let down_s: f64 = field(recovered, "down_s").parse().unwrap();
    assert!(down_s >= 9.0, "{recovered}");
    assert!(
        field(recovered, "events_waited").parse::<u64>().unwrap() >= 2,
        "{recovered}"
    );
    let sink_back = lines.iter().find(|l| l.contains("Sink recovered")).unwrap();
    assert!(field(sink_back, "down_s").parse::<f64>().unwrap() >= 9.0, "{sink_back}");
    assert!(
        field(sink_back, "events_waited").parse::<u64>().unwrap() >= 1,
        "{sink_back}"
    );
    // No WARN per retry or per failed cycle: only the down line and the reminders.
    let warns = lines.iter().filter(|l| l.contains(" WARN ")).count();
    assert_eq!(
        warns,
        count("Source down") + count("Source still down") + count("Sink down") + count("Sink still down"),
        "{all}"
    );
}

/// A `key=value` field of a text log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let needle = format!(" {key}=");
    let rest = &line[line.find(&needle).unwrap_or_else(|| panic!("no {key} in {line}")) + needle.len()..];
    rest.split(' ').next().unwrap().trim_matches('"')
}

/// The vault's clock 3 hours ahead of the agent's zone (as with a wrong `source.timezone`).
#[test]
fn times_three_hours_ahead_warn_once_per_cycle_naming_source_timezone() {
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(3))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let sim = Sim::start(&["--sessions", "20", "--active", "4", "--history", "1h", "--now", &ahead]);
    let setup = Setup::new(&sim.url, "interval = \"1s\"", "");
    let run = setup.run(&["run", "--cycles", "2"]);
    run.ok();
    let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.contains("in the future")).collect();
    assert_eq!(warnings.len(), 2, "one per cycle: {}", run.stderr);
    for w in &warnings {
        assert!(w.contains("source.timezone") && w.contains("WARN"), "{w}");
        assert!(w.contains("records=20") && w.contains(r#"zone="UTC""#), "{w}");
        let ahead_min: i64 = field(w, "max_ahead_min").parse().unwrap();
        assert!((170..=180).contains(&ahead_min), "{w}");
    }
    // The same listing with the vault's clock right: no warning.
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let sim = Sim::start(&["--sessions", "20", "--active", "4", "--history", "1h", "--now", &now]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["once"]);
    run.ok();
    assert!(!run.stderr.contains("in the future"), "{}", run.stderr);
}

/// A Kafka sink whose broker does not answer, for `once` (gives up after `give_up_after`).
fn unreachable_kafka(sim: &Sim) -> Setup {
    let port = free_port(); // nothing listens there
    Setup::new(
        &sim.url,
        "",
        &format!(
            "[[sink]]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:{port}\"\ntopic = \"t\"\n\
             [sink.properties]\n\"message.timeout.ms\" = \"1500\"\n\
             [delivery]\nretry_backoff = \"200ms\"\nretry_backoff_max = \"500ms\"\ngive_up_after = \"6s\"\n"
        ),
    )
}

#[test]
fn librdkafka_lines_are_deduplicated_while_the_broker_is_unreachable() {
    let sim = Sim::start(&["--sessions", "5", "--now", NOW]);
    let setup = unreachable_kafka(&sim);
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("librdkafka:")).collect();
    // Unlimited, librdkafka writes about 90 lines in these 6 s (one per reconnect).
    assert!(!lines.is_empty(), "librdkafka said nothing? {}", run.stderr);
    // The same message (numbers aside) at most once a minute, whatever the retries.
    let mut seen = std::collections::HashSet::new();
    for l in &lines {
        let text = l.split("librdkafka:").nth(1).unwrap();
        // numbers and librdkafka's "(after 0ms ..., 3 identical error(s) suppressed)" aside
        let key: String = text
            .split(" (")
            .next()
            .unwrap()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        assert!(seen.insert(key), "repeated: {l}\n{}", run.stderr);
    }
    assert_eq!(run.stderr.matches("Sink down").count(), 1, "{}", run.stderr);
}

#[test]
fn json_log_mode_writes_only_json_lines() {
    let sim = Sim::start(&["--sessions", "5", "--now", NOW]);
    let setup = unreachable_kafka(&sim);
    let run = setup.run(&["--log-format", "json", "once"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let mut errors = 0;
    for line in run.stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{}", run.stderr));
        if v["message"] == "Exiting" {
            errors += 1;
            assert_eq!(v["level"], "ERROR");
            assert!(v["error"].as_str().unwrap().contains("kafka sink"), "{v}");
        }
    }
    assert_eq!(errors, 1, "the final error once: {}", run.stderr);
    // And a failing source (the token request) in JSON too, named as a token error.
    let refused = format!("http://127.0.0.1:{}", free_port());
    let setup = Setup::new(&refused, "", "");
    let run = setup.run(&["--log-format", "json", "once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    for line in run.stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(run.stderr.contains("the token request to"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("Source down").count(), 1, "{}", run.stderr);
}
