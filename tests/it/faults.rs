//! Faults: retries, token expiry and revocation, rejected credentials, cut connections, TLS,
//! a closed stdout.

use crate::support::{Setup, Sim, NOW};
use std::collections::HashSet;
use std::process::Stdio;

#[test]
fn fail_first_is_retried_then_succeeds() {
    let sim = Sim::start(&["--fail-first", "3", "--sessions", "20", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["once"]);
    run.ok();
    assert_eq!(run.docs().len(), 20);
    // One "down" line and one "recovered" line for the three failures, not one per retry.
    assert_eq!(run.stderr.matches("Source down").count(), 1, "{}", run.stderr);
    assert_eq!(run.stderr.matches("Source recovered").count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("failed_attempts=3"), "{}", run.stderr);
    assert!(run.stderr.contains("Unexpected error."));
    assert_eq!(sim.stats()["listings"], 4);
}

/// The delays of the agent's "retrying" debug lines (`retry_in_ms=N`).
fn retry_delays_ms(stderr: &str) -> Vec<u64> {
    stderr
        .split("retry_in_ms=")
        .skip(1)
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
        .collect()
}

/// A config whose source retries with these settings instead of the test defaults.
fn with_source(setup: &Setup, retries: u32, backoff_max: &str) {
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replace("retries = 4", &format!("retries = {retries}")).replace(
        "retry_backoff_max = \"100ms\"",
        &format!("retry_backoff_max = \"{backoff_max}\""),
    );
    std::fs::write(&setup.config, text).unwrap();
}

/// A simulator whose first listing answers 429 with `Retry-After: 2`.
fn rate_limited_once(sessions: &str) -> Sim {
    let args = [
        "--fail-first",
        "1",
        "--fail-status",
        "429",
        "--retry-after",
        "2",
        "--sessions",
        sessions,
    ];
    Sim::start(&[&args[..], &["--now", NOW]].concat())
}

/// The agent's run and how long it took (tests use it as a lower bound only).
fn timed(setup: &Setup, args: &[&str]) -> (crate::support::Run, std::time::Duration) {
    let started = std::time::Instant::now();
    let run = setup.run(args);
    (run, started.elapsed())
}

/// A vault (or a proxy before it) that answers 429 with `Retry-After: 2` is left alone for
/// those 2 s, though the agent's own first backoff is 20 ms; the message says what it asked.
#[test]
fn a_rate_limited_listing_is_retried_after_what_the_vault_asked() {
    let sim = rate_limited_once("20");
    let setup = Setup::new(&sim.url, "", "");
    with_source(&setup, 4, "10s");
    let (run, took) = timed(&setup, &["once", "--log-level", "debug"]);
    run.ok();
    assert_eq!(run.docs().len(), 20);
    assert!(
        run.stderr.contains("HTTP 429: Too Many Requests (Retry-After: 2 s)"),
        "{}",
        run.stderr
    );
    assert_eq!(retry_delays_ms(&run.stderr), [2000], "{}", run.stderr);
    // A lower bound only: the retry cannot have come sooner than it waited.
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}");
    assert_eq!(sim.stats()["listings"], 2);
}

/// What the vault asks is waited only up to `source.retry_backoff_max` (100 ms here).
#[test]
fn what_the_vault_asks_is_capped_at_the_longest_backoff() {
    let sim = Sim::start(&[
        "--fail-first",
        "1",
        "--fail-status",
        "503",
        "--retry-after",
        "30",
        "--sessions",
        "5",
        "--now",
        NOW,
    ]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["once", "--log-level", "debug"]);
    run.ok();
    assert_eq!(run.docs().len(), 5);
    assert!(
        run.stderr.contains("HTTP 503: Service Unavailable (Retry-After: 30 s)"),
        "{}",
        run.stderr
    );
    assert_eq!(retry_delays_ms(&run.stderr), [100], "{}", run.stderr);
}

/// A token endpoint that answers 429 or 408 is busy, not refusing the credentials, whatever its
/// message says: retried (both were reported as rejected credentials, exit 3). A `Retry-After` date
/// already past (RFC 850 form) asks for no wait.
#[test]
fn a_rate_limited_token_request_is_retried_not_called_rejected() {
    // A rate limiter's message may well speak of authentication; it judges nothing.
    for (status, reason) in [("429", "Too many authentication attempts"), ("408", "Request Timeout")] {
        let sim = Sim::start(&[
            "--fail-token-first",
            "2",
            "--fail-status",
            status,
            "--fail-message",
            reason,
            "--retry-after",
            "Thursday, 01-Jan-70 00:00:00 GMT",
            "--sessions",
            "5",
            "--now",
            NOW,
        ]);
        let setup = Setup::new(&sim.url, "", "");
        let run = setup.run(&["once"]);
        run.ok();
        assert_eq!(run.docs().len(), 5);
        assert!(
            !run.stderr.contains("rejected the client credentials"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!("HTTP {status}: {reason} (Retry-After: 0 s)")),
            "{}",
            run.stderr
        );
        assert_eq!(sim.stats()["token_requests"], 3);
    }
}

/// A poll that failed on a 429 (no retries left) holds the next poll off for what the vault
/// asked (2 s), though the interval is 100 ms.
#[test]
fn run_waits_what_the_vault_asked_before_the_next_poll() {
    let sim = rate_limited_once("5");
    let setup = Setup::new(&sim.url, "interval = \"100ms\"", "");
    with_source(&setup, 0, "10s");
    let (run, took) = timed(&setup, &["run", "--cycles", "2"]);
    run.ok();
    assert_eq!(run.docs().len(), 5);
    assert!(run.stderr.contains("the vault asked for that pause"), "{}", run.stderr);
    // A lower bound only: the second poll cannot have come sooner than the pause.
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}");
    assert_eq!(sim.stats()["listings"], 2);
}

#[test]
fn rejected_credentials_exit_3_naming_the_a2a_authorization() {
    let sim = Sim::start(&["--reject-auth"]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("Client authentication failed."), "{}", run.stderr);
    assert!(run.stderr.contains("A2A authorization"), "{}", run.stderr);
    assert!(!run.stderr.contains("simulator-secret"), "the secret is never printed");
    assert_eq!(sim.stats()["token_requests"], 1, "auth errors are not retried");
}

#[test]
fn expired_token_between_polls_is_refreshed() {
    let sim = Sim::start(&["--token-ttl", "1", "--grow", "1", "--sessions", "3", "--now", NOW]);
    let setup = Setup::new(&sim.url, "interval = \"1500ms\"", "");
    let run = setup.run(&["run", "--cycles", "3"]);
    run.ok();
    assert!(!run.stderr.contains("Poll cycle failed"), "{}", run.stderr);
    // 3 sessions, each poll grows by 1: 3+1 events, then 2 per poll.
    assert_eq!(run.docs().len(), 4 + 2 + 2);
    assert_eq!(
        sim.stats()["token_requests"],
        3,
        "a new token for each poll, fetched before expiry"
    );
}

#[test]
fn token_revoked_mid_run_gets_one_refresh_and_loses_nothing() {
    let sim = Sim::start(&[
        "--revoke-tokens-every",
        "1",
        "--grow",
        "2",
        "--sessions",
        "4",
        "--active",
        "0",
        "--now",
        NOW,
    ]);
    let setup = Setup::new(&sim.url, "interval = \"200ms\"", "");
    let run = setup.run(&["run", "--cycles", "3"]);
    run.ok();
    assert_eq!(
        run.stderr.matches("Listing refused; fetching a new token").count(),
        2,
        "{}",
        run.stderr
    );
    let keys: HashSet<String> = run.keys().into_iter().collect();
    // 4 ended + 2 started, then 2 ends + 2 starts per poll.
    assert_eq!(keys.len(), 6 + 4 + 4);
    assert_eq!(sim.stats()["token_requests"], 3);
}

#[test]
fn truncated_listing_exits_3_and_a_rerun_delivers_the_rest() {
    let args = ["--sessions", "3000", "--active", "0", "--now", NOW, "--seed", "9"];
    let cut = Sim::start(&[&args[..], &["--truncate-at", "600000"]].concat());
    let setup = Setup::new(&cut.url, "", "");
    let first = setup.run(&["once"]);
    assert_eq!(first.code, 3, "{}", first.stderr);
    assert!(
        first.stderr.contains("network error") || first.stderr.contains("ended before"),
        "{}",
        first.stderr
    );
    let first_keys = first.keys();
    drop(cut);
    let whole = Sim::start(&args);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let old_url = text.lines().find(|l| l.starts_with("url")).unwrap().to_string();
    std::fs::write(
        &setup.config,
        text.replace(&old_url, &format!("url = \"{}\"", whole.url)),
    )
    .unwrap();
    let second = setup.run(&["once"]);
    second.ok();
    let second_keys = second.keys();
    let union: HashSet<&String> = first_keys.iter().chain(&second_keys).collect();
    assert_eq!(union.len(), 3000, "every event delivered across both runs");
    assert!(
        !first_keys.is_empty(),
        "the complete records before the cut were delivered"
    );
    let repeats = first_keys.len() + second_keys.len() - union.len();
    assert_eq!(repeats, 0, "committed events are not sent again");
}

/// A simulator serving HTTPS (5 sessions), and the file in `dir` with the CA its certificate
/// verifies with.
fn tls_sim(dir: &tempfile::TempDir) -> (Sim, std::path::PathBuf) {
    let ca = dir.path().join("ca.pem");
    let sim = Sim::start(&[
        "--tls",
        "--tls-ca-out",
        ca.to_str().unwrap(),
        "--sessions",
        "5",
        "--now",
        NOW,
    ]);
    (sim, ca)
}

#[test]
fn tls_works_with_the_ca_file_and_fails_without() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ca) = tls_sim(&dir);
    assert!(sim.url.starts_with("https://"));
    let without = Setup::new(&sim.url, "", "");
    let run = without.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("TLS") && run.stderr.contains("ca_file"),
        "{}",
        run.stderr
    );
    let with = Setup::new(&sim.url, &format!("ca_file = \"{}\"", ca.display()), "");
    let run = with.run(&["once"]);
    run.ok();
    assert_eq!(run.docs().len(), 5);
}

/// `once` of this setup, its stdout and stderr piped.
fn spawn_once(setup: &Setup) -> std::process::Child {
    crate::support::cmd()
        .args(["once", "-c"])
        .arg(&setup.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn closed_stdout_ends_cleanly_without_committing() {
    let sim = Sim::start(&["--sessions", "50", "--now", NOW, "--delay-ms", "300"]);
    let setup = Setup::new(&sim.url, "", "");
    let mut child = spawn_once(&setup);
    drop(child.stdout.take()); // the reader goes away before anything is written
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Output closed") || stderr.contains("closed the pipe"),
        "{stderr}"
    );
    let stats = setup.state_stats();
    assert_eq!(stats["keys"], 0, "nothing unwritten was committed");
}

fn oauth1(setup: &Setup, token_secret: &str) {
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "client_secret = \"simulator-secret\"",
        &format!("client_secret = \"simulator-secret\"\nmethod = \"oauth1\"\ntoken = \"simulator-token\"\ntoken_secret = \"{token_secret}\""),
    );
    std::fs::write(&setup.config, text).unwrap();
}

#[test]
fn oauth1_signed_requests_are_accepted_and_a_bad_signature_is_explained() {
    let sim = Sim::start(&["--sessions", "12", "--now", NOW]);
    let good = Setup::new(&sim.url, "", "");
    oauth1(&good, "simulator-token-secret");
    let run = good.run(&["once"]);
    run.ok();
    assert_eq!(run.docs().len(), 12);
    assert_eq!(sim.stats()["token_requests"], 0, "OAuth 1.0a fetches no token");
    let check = good.run(&["check"]);
    check.ok();
    assert!(check.stdout.contains("OAuth 1.0a"), "{}", check.stdout);

    let bad = Setup::new(&sim.url, "", "");
    oauth1(&bad, "wrong-secret");
    let run = bad.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("Invalid signature") && run.stderr.contains("consumer key/secret"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-secret"), "secrets are never printed");
}

/// An HTTP proxy: a request in absolute form (`GET http://host:port/path`) goes to that host
/// as it is, and `CONNECT host:port` opens a tunnel to it; then bytes go both ways as they
/// come. Keeps what clients sent (request heads, and what follows them outside tunnels).
struct ForwardProxy {
    addr: std::net::SocketAddr,
    sent: std::sync::Arc<std::sync::Mutex<String>>,
}

fn forward_proxy() -> ForwardProxy {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let kept = sent.clone();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                kept.lock().unwrap().push_str(&text);
                let mut words = text.split(' ');
                let tunnel = words.next() == Some("CONNECT");
                let target = words.next().unwrap_or_default();
                let authority = if tunnel {
                    target
                } else {
                    target
                        .strip_prefix("http://")
                        .and_then(|rest| rest.split('/').next())
                        .unwrap_or_default()
                };
                let Ok(mut server) = std::net::TcpStream::connect(authority) else {
                    return;
                };
                let opened = if tunnel {
                    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                } else {
                    server.write_all(&head)
                };
                if opened.is_err() {
                    return;
                }
                let (mut back_from, mut back_to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut back_from, &mut back_to));
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = client.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    if !tunnel {
                        kept.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                    if server.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    ForwardProxy { addr, sent }
}

/// `once` on `setup`'s config with these environment variables (proxy variables the test does
/// not set are cleared, `support::cmd`).
fn once_with_env(setup: &Setup, vars: &[(&str, &str)]) -> crate::support::Run {
    let mut cmd = crate::support::cmd();
    cmd.args(["once", "-c"]).arg(&setup.config);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    crate::support::Run::from(cmd.output().unwrap())
}

/// `HTTPS_PROXY` (the packaged default's case): an `https://` vault is reached through a
/// CONNECT tunnel, with the proxy's credentials, and TLS still verifies the vault itself.
#[test]
fn an_https_vault_is_reached_through_a_connect_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ca) = tls_sim(&dir);
    let proxy = forward_proxy();
    let setup = Setup::new(&sim.url, &format!("ca_file = \"{}\"", ca.display()), "");
    let proxy_url = format!("http://agent:proxy-pass@{}", proxy.addr);
    let run = once_with_env(&setup, &[("HTTPS_PROXY", &proxy_url)]);
    run.ok();
    assert_eq!(run.docs().len(), 5);
    let authority = sim.url.trim_start_matches("https://");
    let sent = proxy.sent.lock().unwrap().to_ascii_lowercase();
    assert!(sent.starts_with(&format!("connect {authority} ")), "{sent}");
    assert!(sent.contains("proxy-authorization: basic"), "{sent}");
    assert!(
        run.stderr.contains(&format!("proxy=\"http://{}\"", proxy.addr)),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("proxy-pass"), "{}", run.stderr);
}

/// `HTTP_PROXY` (with a user and password) sends the token request and the listing through the
/// proxy, and the log names the proxy without its password; `NO_PROXY` exempts the vault.
#[test]
fn the_vault_is_reached_through_the_proxy_the_environment_names() {
    let sim = Sim::start(&["--sessions", "5", "--now", NOW]);
    let proxy = forward_proxy();
    let setup = Setup::new(&sim.url, "", "");
    let proxy_url = format!("http://agent:proxy-pass@{}", proxy.addr);
    let run = once_with_env(&setup, &[("HTTP_PROXY", &proxy_url)]);
    run.ok();
    assert_eq!(run.docs().len(), 5);
    let sent = proxy.sent.lock().unwrap().to_ascii_lowercase();
    assert!(sent.contains(&format!("post {}/iso/oauth2/token ", sim.url)), "{sent}");
    assert!(
        sent.contains(&format!("get {}/api/pam/session/remotesessions", sim.url)),
        "{sent}"
    );
    assert!(sent.contains("proxy-authorization: basic"), "{sent}");
    assert!(
        run.stderr.contains(&format!("proxy=\"http://{}\"", proxy.addr)),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("proxy-pass"), "{}", run.stderr);

    let through = proxy.sent.lock().unwrap().len();
    let run = once_with_env(&setup, &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")]);
    run.ok();
    assert!(!run.stderr.contains("through the proxy"), "{}", run.stderr);
    assert_eq!(
        proxy.sent.lock().unwrap().len(),
        through,
        "NO_PROXY: nothing through the proxy"
    );
    assert_eq!(sim.stats()["listings"], 2);

    // A proxy that refuses: the error says the request went through it (not that the vault
    // refused), still without the password.
    let run = once_with_env(&setup, &[("HTTP_PROXY", "http://agent:proxy-pass@127.0.0.1:1")]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("(through the proxy http://127.0.0.1:1, from the environment)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("proxy-pass"), "{}", run.stderr);

    // A SOCKS proxy, which this build does not speak: said at start, not left to the errors.
    let run = once_with_env(&setup, &[("ALL_PROXY", "socks5h://127.0.0.1:1")]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("That is a SOCKS proxy, which this build does not speak"),
        "{}",
        run.stderr
    );
}

/// A stop while the poll waits to retry a vault that is down is not a recovery: no "Source
/// recovered" line (alerts pair it with "Source down").
#[test]
fn a_stop_during_an_outage_logs_no_recovery() {
    let sim = Sim::start(&["--fail-first", "100000", "--sessions", "5", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    setup.edit("retries = 4", "retries = 100000");
    let agent = setup.start_run();
    agent.wait_for_log("Source down", 1, std::time::Duration::from_secs(20));
    let run = agent.stop();
    assert!(run.stderr.contains("interrupted=true"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("Source recovered").count(), 0, "{}", run.stderr);
}

/// A 404 from the token endpoint names the token endpoint and its settings, not the listing's
/// path (it said "set source.path", which cannot fix it).
#[test]
fn a_missing_token_endpoint_is_named_as_such() {
    let sim = Sim::start(&["--sessions", "5", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    setup.edit(
        "client_secret = \"simulator-secret\"",
        "client_secret = \"simulator-secret\"\ntoken_path = \"/oauth2/token\"",
    );
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("the token endpoint {}/oauth2/token was not found", sim.url)),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("source.auth.token_path"), "{}", run.stderr);
    assert!(!run.stderr.contains("set source.path"), "{}", run.stderr);
}

/// SIGTERM while a slow reader holds up delivery: only the batch in flight is finished. What the
/// filter had read ahead (thousands of events, minutes to a slow collector, past the unit's
/// stop timeout) is neither sent nor committed; the next start reads it again.
#[test]
fn sigterm_finishes_the_batch_in_flight_not_what_was_read_ahead() {
    use std::io::BufRead;
    let sim = Sim::start(&["--sessions", "30000", "--active", "0", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let mut child = spawn_once(&setup);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // The pipe fills while this test reads nothing: delivery blocks in its first batch, and
    // the listing is read ahead meanwhile.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let sent = 1 + out.lines().count();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("interrupted=true"), "{stderr}");
    assert!(
        sent <= 2000,
        "{sent} events sent after a stop in the first batch: {stderr}"
    );
    assert_eq!(setup.state_keys().len(), sent, "exactly what was sent is committed");
    // The next run sends the rest, each once.
    let rest = setup.run(&["once"]);
    assert_eq!(rest.ok().docs().len() + sent, 30000, "{}", rest.stderr);
}

/// A sink down for longer than `source.timeout` in the middle of a long listing is the sink's
/// outage, not the vault's: the listing was not cut by the timeout, read twice, and reported as
/// "Source down" (the time the filter holds the reader up no longer counts).
#[test]
fn a_sink_outage_longer_than_the_source_timeout_is_not_the_vaults() {
    let sim = Sim::start(&["--sessions", "50000", "--active", "0", "--now", NOW]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("later");
    let sink = format!(
        "[[sink]]\ntype = \"file\"\npath = \"{}\"\n[delivery]\nretry_backoff = \"50ms\"\nretry_backoff_max = \"200ms\"\n",
        out.join("events.ndjson").display()
    );
    let setup = Setup::new(&sim.url, "timeout = \"2s\"\ninterval = \"1h\"", &sink);
    let agent = setup.start_run();
    agent.wait_for_log("Sink down", 1, std::time::Duration::from_secs(20));
    std::thread::sleep(std::time::Duration::from_secs(4));
    std::fs::create_dir(&out).unwrap();
    agent.wait_for_log("Poll cycle done", 1, std::time::Duration::from_secs(60));
    let run = agent.stop();
    assert!(!run.stderr.contains("Source down"), "{}", run.stderr);
    assert!(run.stderr.contains("attempts=1 "), "{}", run.stderr);
    assert!(run.stderr.contains("delivered=50000 "), "{}", run.stderr);
    assert_eq!(sim.stats()["listings"], 1);
}

/// `source.timeout` still bounds the vault's own time: a listing whose head comes late, and one
/// that stalls mid-body (idle timeout longer), each fail as a timeout.
#[test]
fn the_source_timeout_bounds_a_slow_vault() {
    for slow in [
        &["--delay-ms", "2500"][..],
        &["--stall-after", "5000"],
        // A 503 whose body stalls after its first bytes: read within the same deadline, it
        // is a 503 (its message cut), not a poll that hangs.
        &["--fail-first", "1", "--fail-status", "503", "--stall-after", "10"],
    ] {
        let mut args = vec!["--sessions", "50", "--now", NOW];
        args.extend_from_slice(slow);
        let sim = Sim::start(&args);
        let setup = Setup::new(&sim.url, "timeout = \"1s\"\nidle_timeout = \"30s\"", "");
        setup.edit("retries = 4", "retries = 0");
        let run = setup.run(&["once"]);
        assert_eq!(run.code, 3, "{slow:?}: {}", run.stderr);
        let said = if slow.contains(&"503") {
            "the vault answered HTTP 503: Service Unavailable"
        } else {
            "the listing did not complete within 1s (source.timeout)"
        };
        assert!(run.stderr.contains(said), "{slow:?}: {}", run.stderr);
    }
}
