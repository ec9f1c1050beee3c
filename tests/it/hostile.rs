//! Hostile and broken vault answers: what a broken proxy, a vault upgrade or an attacker on
//! the path can send. The agent must not crash, forward forged or wrong data, or lose events.
//! The simulator's misbehaviour flags (src/simulate/hostile.rs) and fixture bodies written
//! here stand in for such a vault.

use crate::support::{cmd, Run, Setup, Sim, NOW};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A listing body file in a temp dir, served verbatim by a simulator.
struct Body {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn body(bytes: impl AsRef<[u8]>) -> Body {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listing");
    std::fs::write(&path, bytes).unwrap();
    Body { _dir: dir, path }
}

/// A record with these fields (JSON text without braces) after the usual ones.
fn record(session_id: &str, start: &str, end: &str) -> String {
    format!(
        r#"{{"id":"1","user":"alice","origin_ip":"10.1.1.1","device":"10.2.2.2:22","protocol":"SSH","session_id":"{session_id}","start":"{start}","end":"{end}"}}"#
    )
}

fn listing(records: &[String]) -> String {
    format!(
        r#"{{"response":{{"error":false}},"tenant":"T","remote_sessions":[{}]}}"#,
        records.join(",")
    )
}

fn serve(bytes: impl AsRef<[u8]>, extra: &[&str]) -> (Sim, Body) {
    let b = body(bytes);
    let mut args = vec!["--fixture", b.path.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Sim::start(&args), b)
}

/// The summary line's `bad=` count.
fn summary(run: &Run, field: &str) -> u64 {
    let line = run
        .stderr
        .lines()
        .rfind(|l| l.contains("Poll cycle"))
        .unwrap_or_else(|| panic!("no summary line:\n{}", run.stderr));
    let at = line
        .find(&format!(" {field}="))
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    line[at + field.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn token_lifetimes_of_any_size_never_panic() {
    for expires_in in [
        r#""inf""#,
        r#""1e300""#,
        "1e19",
        "9223372036854775807",
        "-1",
        r#""soon""#,
    ] {
        let flag = format!("--token-expires-in={expires_in}");
        let sim = Sim::start(&[&flag, "--sessions", "5", "--now", NOW]);
        let setup = Setup::new(&sim.url, "interval = \"200ms\"", "");
        let run = setup.run(&["run", "--cycles", "2"]);
        assert_eq!(run.code, 0, "expires_in {expires_in}: {}", run.stderr);
        assert_eq!(run.docs().len(), 5, "expires_in {expires_in}");
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

/// The agent with the vault's zone set (Setup's config reads UTC).
fn setup_in_zone(url: &str, zone: &str, rest: &str) -> Setup {
    let setup = Setup::new(url, "", rest);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("timezone = \"UTC\"", &format!("timezone = \"{zone}\"")),
    )
    .unwrap();
    setup
}

#[test]
fn far_years_and_leap_seconds_are_bad_records_and_the_rest_flows() {
    let records = vec![
        record("far1", "+262142-12-31 23:59:59", "+262142-12-31 23:59:59"),
        record("far2", "-262143-01-01 00:00:00", "-262143-01-01 00:00:00"),
        record("far3", "2024-05-06 10:00:00", "+12026-01-01 00:00:00"),
        record("leap", "2024-05-06 10:00:00", "2024-06-30 23:59:60"),
        record("good1", "2024-05-06 10:00:00", "2024-05-06 11:00:00"),
        // A running session whose start is out of range cannot be placed in time.
        record("far4", "+262142-12-31 23:59:59", ""),
        record("good2", "2024-05-06 12:00:00", "2024-05-06 13:00:00"),
    ];
    let (sim, _b) = serve(listing(&records), &[]);
    let setup = setup_in_zone(&sim.url, "America/Sao_Paulo", "");
    let run = setup.run(&["once"]);
    run.ok();
    let keys = run.keys();
    assert_eq!(keys, vec!["good1:end", "good2:end"], "{}", run.stderr);
    assert_eq!(summary(&run, "bad"), 5);
    assert!(!run.stdout.contains("+12026") && !run.stdout.contains(":60"));
}

#[test]
fn a_nesting_bomb_ends_the_listing_with_memory_bounded_and_earlier_records_delivered() {
    let sim = Sim::start(&["--bomb", "nesting", "--bomb-bytes", "20000000", "--gzip", "--now", NOW]);
    let setup = Setup::new(&sim.url, "retries = 0", "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text.replace("retries = 4\n", "")).unwrap();
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("nests deeper than 512 levels"), "{}", run.stderr);
    assert_eq!(run.keys(), vec!["b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0:end"]);
    assert!(!run.stderr.contains("state store"), "not a state error: {}", run.stderr);
    assert_eq!(setup.state_keys().len(), 1, "the record before the bomb is committed");
}

#[test]
fn a_string_bomb_is_one_oversized_record_named_by_its_session_id() {
    let sim = Sim::start(&["--bomb", "string", "--bomb-bytes", "30000000", "--gzip", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["once"]);
    run.ok();
    assert_eq!(run.keys(), vec!["b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0:end"]);
    assert_eq!(summary(&run, "bad"), 1);
    assert!(run.stderr.contains("record larger than 1024 KiB"), "{}", run.stderr);
    assert!(run.stderr.contains("session_id=\"bomb-string\""), "{}", run.stderr);
}

#[test]
fn a_huge_session_id_is_a_bad_record_and_the_others_are_committed() {
    let huge = "x".repeat(70_000);
    let records = vec![
        record("ok1", "2024-05-06 10:00:00", "2024-05-06 11:00:00"),
        record(&huge, "2024-05-06 10:00:00", "2024-05-06 11:00:00"),
        record("ok2", "2024-05-06 10:00:00", "2024-05-06 11:00:00"),
    ];
    let (sim, _b) = serve(listing(&records), &[]);
    let setup = Setup::new(&sim.url, "", "");
    let run = setup.run(&["once"]);
    run.ok();
    assert_eq!(run.keys(), vec!["ok1:end", "ok2:end"]);
    assert_eq!(summary(&run, "bad"), 1);
    assert!(run.stderr.contains("70000 bytes long"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("session_id=\"{}…\"", "x".repeat(64))),
        "a prefix of the id is logged"
    );
    let again = setup.run(&["once"]);
    again.ok();
    assert!(again.stdout.is_empty(), "nothing is re-sent: {}", again.stdout);
}

#[test]
fn redirects_are_never_followed() {
    // The place a redirect points to: it must never see the secret or serve the listing.
    let elsewhere = Sim::start(&["--sessions", "3", "--now", NOW]);
    let to = format!("{}/iso/oauth2/token", elsewhere.url);
    let vault = Sim::start(&["--redirect-token", &to]);
    let setup = Setup::new(&vault.url, "", "");
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 307 redirecting to"), "{}", run.stderr);
    assert!(run.stderr.contains(&to) && run.stderr.contains("set source.url to the final address"));
    assert_eq!(
        elsewhere.stats()["token_requests"],
        0,
        "the secret never left for the other origin"
    );

    let to = format!("{}/api/pam/session/remotesessions", elsewhere.url);
    let vault = Sim::start(&["--redirect-listing", &to, "--sessions", "3"]);
    let setup = Setup::new(&vault.url, "", "");
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("HTTP 302 redirecting to") && run.stderr.contains(&to),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "no forged event");
    assert_eq!(elsewhere.stats()["listings"], 0);
    assert!(setup.state_keys().is_empty());
}

/// `once` against a fixture body: the run.
fn once_on(bytes: impl AsRef<[u8]>, extra: &[&str]) -> Run {
    let (sim, _b) = serve(bytes, extra);
    let setup = Setup::new(&sim.url, "retries = 0", "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text.replace("retries = 4\n", "")).unwrap();
    setup.run(&["once"])
}

#[test]
fn bodies_that_are_not_a_listing_are_source_errors_saying_what_they_were() {
    let run = once_on(
        "Service under maintenance [back soon]",
        &["--content-type", "text/plain"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not a JSON object"), "{}", run.stderr);
    assert!(run.stderr.contains("text/plain"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Service under maintenance [back soon]"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("records=0 ") || run.code != 0);

    let run = once_on(
        "<!DOCTYPE html>\n<html><title>Sign in</title></html>",
        &["--content-type", "text/html; charset=utf-8"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("looks like a login or proxy page"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(r"<!DOCTYPE html>\n<html>"),
        "escaped first bytes: {}",
        run.stderr
    );

    let run = once_on(r#"{"code":200,"response":{"error":false}}"#, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("no remote_sessions array"), "{}", run.stderr);
    assert!(!run.stderr.contains("reported an error"), "{}", run.stderr);

    let run = once_on(format!("garbage{}", listing(&[])), &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not a JSON object (byte 0"), "{}", run.stderr);
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let rec = record("bom1", "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(listing(&[rec]).as_bytes());
    let run = once_on(bytes, &[]);
    run.ok();
    assert_eq!(run.keys(), vec!["bom1:end"]);
}

#[test]
fn missing_commas_between_records_end_the_listing_after_what_was_valid() {
    let a = record("a", "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let b = record("b", "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let c = record("c", "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let run = once_on(format!(r#"{{"remote_sessions":[{a},{b}{c}]}}"#), &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not valid JSON at byte"), "{}", run.stderr);
    assert_eq!(run.keys(), vec!["a:end", "b:end"]);
}

#[test]
fn items_that_are_not_records_are_counted_and_logged() {
    let good = record("good", "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let run = once_on(
        format!(r#"{{"remote_sessions":[1,"x",null,true,[{good}],{good}]}}"#),
        &[],
    );
    run.ok();
    assert_eq!(run.keys(), vec!["good:end"]);
    assert_eq!(summary(&run, "bad"), 5);
    assert_eq!(summary(&run, "records"), 6);
    for what in ["a number", "a string", "null", "a boolean", "an array"] {
        assert!(
            run.stderr.contains(&format!("an item of remote_sessions is {what}")),
            "{what}: {}",
            run.stderr
        );
    }
}

#[test]
fn tenant_is_per_envelope_in_the_nested_shape() {
    let r = |id: &str| record(id, "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let body = format!(
        r#"{{"remote_sessions":[{{"tenant":"A","remote_sessions":[{}]}},{{"remote_sessions":[{}]}},{{"remote_sessions":[{}],"tenant":"C"}}]}}"#,
        r("in-a"),
        r("in-none"),
        r("in-late")
    );
    let run = once_on(body, &[]);
    run.ok();
    let docs = run.docs();
    let tenant_of = |id: &str| {
        docs.iter()
            .find(|d| d["senhasegura"]["session"]["id"] == id)
            .map(|d| d["senhasegura"]["tenant"].clone())
            .unwrap()
    };
    assert_eq!(tenant_of("in-a"), "A");
    assert_eq!(
        tenant_of("in-none"),
        serde_json::Value::Null,
        "no tenant inherited from group A"
    );
    assert_eq!(tenant_of("in-late"), serde_json::Value::Null);
    assert!(run.stderr.contains("tenant after its sessions"), "{}", run.stderr);
}

#[test]
fn a_key_repeated_in_one_listing_is_emitted_once() {
    let first = record("dup", "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let second = first.replace("alice", "mallory");
    let run = once_on(listing(&[first.clone(), second]), &[]);
    run.ok();
    let docs = run.docs();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["user"]["name"], "alice", "the first one wins");
    assert!(run.stderr.contains("repeats the end of a session"), "{}", run.stderr);
}

#[test]
fn control_characters_never_reach_a_cef_line_or_a_raw_ecs_line() {
    let hostile = r"root\u0000admin\u001b[2J\u0007\u007f\u0085x\u2028y\u2029";
    let rec = format!(
        r#"{{"session_id":"ctl","user":"{hostile}","credential":"{hostile}","device":"10.0.0.1:22","start":"2024-05-06 10:00:00","end":"2024-05-06 11:00:00"}}"#
    );
    let (sim, _b) = serve(listing(&[rec]), &[]);
    for format in ["cef", "ecs"] {
        let setup = Setup::new(
            &sim.url,
            "",
            &format!("[[sink]]\ntype = \"stdout\"\nformat = \"{format}\"\n"),
        );
        let run = setup.run(&["once"]);
        run.ok();
        let line = run.stdout.strip_suffix('\n').unwrap();
        assert_eq!(run.stdout.lines().count(), 1);
        for c in line.chars() {
            assert!(
                !c.is_control() && c != '\u{2028}' && c != '\u{2029}',
                "{format}: raw {c:?} in {line:?}"
            );
        }
        if format == "ecs" {
            let doc: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                doc["user"]["name"],
                "root\u{0}admin\u{1b}[2J\u{7}\u{7f}\u{85}x\u{2028}y\u{2029}"
            );
        } else {
            assert!(
                line.contains("suser=root\u{fffd}admin\u{fffd}[2J\u{fffd}\u{fffd}\u{fffd}x\u{fffd}y\u{fffd}"),
                "{line}"
            );
        }
    }
}

#[test]
fn ecs_over_a_datagram_transport_is_refused_unless_the_operator_opts_in() {
    let sim = Sim::start(&["--sessions", "3", "--now", NOW]);
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = receiver.local_addr().unwrap().to_string();
    let sink = |extra: &str| {
        format!("[[sink]]\ntype = \"syslog\"\ntransport = \"udp\"\naddress = \"{address}\"\nformat = \"ecs\"\nmax_datagram_bytes = 600\n{extra}")
    };
    let run = Setup::new(&sim.url, "", &sink("")).run(&["once"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("allow_truncated_json"), "{}", run.stderr);
    assert!(run.stderr.contains("sink.format"), "{}", run.stderr);

    receiver.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let run = Setup::new(&sim.url, "", &sink("allow_truncated_json = true")).run(&["once"]);
    run.ok();
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        let n = receiver.recv(&mut buf).unwrap();
        assert!(n <= 600, "cut at the limit");
    }
    assert!(run.stderr.contains("truncated"), "the cut is counted: {}", run.stderr);
}

/// A server on loopback that answers every request with `status` and the JSON `body`.
fn answering(status: &str, body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let status = status.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            // The request's head and a small body (the token form) fit in one read or two.
            let mut buf = [0u8; 8192];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_token_answer_is_never_quoted_back() {
    // Not the documented JSON, with a token in it: the error says what is wrong, not the token.
    let url = answering(
        "200 OK",
        r#"{"access_token":"LEAKEDTOKEN123","expires_in":{"seconds":3600}}"#,
    );
    let setup = Setup::new(&url, "retries = 0", "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text.replace("retries = 4\n", "")).unwrap();
    for args in [&["once"][..], &["check"][..]] {
        let run = setup.run(args);
        assert_eq!(run.code, 3, "{args:?}: {}{}", run.stdout, run.stderr);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains("token answer is not the documented JSON"), "{all}");
        assert!(!all.contains("LEAKEDTOKEN123"), "the token was printed: {all}");
    }
}

#[test]
fn a_vault_message_cannot_forge_a_log_line() {
    const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO Poll cycle done FORGED";
    // In an error answer (here the token endpoint's, read like the listing's)...
    let url = answering(
        "500 Internal Server Error",
        r#"{"message":"Unexpected error.\n2026-01-01T00:00:00.000000Z  INFO Poll cycle done FORGED"}"#,
    );
    let setup = Setup::new(&url, "retries = 0", "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text.replace("retries = 4\n", "")).unwrap();
    let run = setup.run(&["once"]);
    // ...and in a listing's own error envelope.
    let listing_error = once_on(
        r#"{"response":{"error":true,"message":"x\n2026-01-01T00:00:00.000000Z  INFO Poll cycle done FORGED"},"remote_sessions":[]}"#,
        &[],
    );
    for run in [run, listing_error] {
        assert_eq!(run.code, 3, "{}", run.stderr);
        assert!(
            run.stderr.contains(r"\n2026-01-01T00:00:00.000000Z"),
            "escaped: {}",
            run.stderr
        );
        assert!(
            !run.stderr
                .lines()
                .chain(run.stdout.lines())
                .any(|l| l.starts_with(FORGED)),
            "a forged line: {}",
            run.stderr
        );
    }
}

#[test]
fn a_huge_or_gzip_bombed_token_answer_is_refused() {
    for gzip in [false, true] {
        let mut args = vec!["--token-pad", "50000000"];
        if gzip {
            args.push("--gzip");
        }
        let sim = Sim::start(&args);
        let setup = Setup::new(&sim.url, "", "");
        let run = setup.run(&["once"]);
        assert_eq!(run.code, 3, "{}", run.stderr);
        assert!(
            run.stderr.contains("token answer is larger than 64 KiB"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_listing_that_stalls_mid_body_fails_after_the_idle_timeout() {
    let sim = Sim::start(&["--sessions", "2000", "--stall-after", "20000", "--now", NOW]);
    let setup = Setup::new(&sim.url, "idle_timeout = \"1s\"\nretries = 0", "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text.replace("retries = 4\n", "")).unwrap();
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("stopped sending the listing: no data for 1s after 20000 bytes"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("source.idle_timeout"));
    // What was read before the stall was delivered and committed.
    let delivered = run.keys().len();
    assert!(delivered > 0);
    assert_eq!(setup.state_keys().len(), delivered);
}

#[test]
fn unparseable_and_oversized_records_are_logged_with_their_session_id() {
    let big = format!(
        r#"{{"session_id":"big-one","user":"{}","start":"2024-05-06 10:00:00","end":"2024-05-06 11:00:00"}}"#,
        "u".repeat(2 << 20)
    );
    let broken = r#"{"session_id":"broken-one","user":{"nested":true},"start":"2024-05-06 10:00:00"}"#.to_string();
    let good = record("fine", "2024-05-06 10:00:00", "2024-05-06 11:00:00");
    let run = once_on(listing(&[big, broken, good]), &[]);
    run.ok();
    assert_eq!(run.keys(), vec!["fine:end"]);
    assert!(run.stderr.contains("session_id=\"big-one\""), "{}", run.stderr);
    assert!(run.stderr.contains("session_id=\"broken-one\""), "{}", run.stderr);
}

fn is_root() -> bool {
    rustix_uid() == 0
}

fn rustix_uid() -> u32 {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

fn chown(path: &Path, uid: u32) {
    let ok = std::process::Command::new("chown")
        .arg(uid.to_string())
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn a_state_directory_of_another_user_or_a_link_to_it_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED a_state_directory_of_another_user_or_a_link_to_it_is_refused: needs root (CI runs as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start(&["--sessions", "3", "--now", NOW]);
    let setup = Setup::new(&sim.url, "", "");
    // Someone else's world-writable directory where the state should be.
    let state = setup.state_dir();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    chown(&state, 65534);
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("owned by uid 65534"), "{}", run.stderr);
    assert!(!run.stderr.contains("corrupt"), "{}", run.stderr);
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777, "not chmod-ed");
    assert!(run.stdout.is_empty());

    // A symlink in its place pointing there.
    let other = setup.dir.path().join("others");
    std::fs::rename(&state, &other).unwrap();
    std::os::unix::fs::symlink(&other, &state).unwrap();
    let run = setup.run(&["once"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("symbolic link to a directory owned by uid 65534"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0, "nothing written there");
}

#[test]
fn a_permission_error_on_the_state_directory_does_not_suggest_corruption() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_permission_error_on_the_state_directory_does_not_suggest_corruption: needs root to switch user"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start(&["--sessions", "3", "--now", NOW]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\ntimezone = \"UTC\"\n[source.auth]\nclient_id = \"forwarder\"\nclient_secret = \"simulator-secret\"\n[state]\npath = \"{}\"\n",
            sim.url,
            locked.join("state").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::support::bin())
        .args(["once", "-c"])
        .arg(&config)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot be used by the agent's user (uid 65534)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("corrupt"), "{}", run.stderr);
}

#[test]
fn a_secret_file_that_is_a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"http://127.0.0.1:9\"\ntimezone = \"UTC\"\n[source.auth]\nclient_id = \"x\"\nclient_secret_file = \"{}\"\n[state]\npath = \"{}\"\n",
            fifo.display(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = cmd()
        .args(["once", "-c"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hang would be the bug: give it ample time, then kill it.
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let run = Run::from(child.wait_with_output().unwrap());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    assert!(run.stderr.contains("client_secret_file"), "{}", run.stderr);
}

#[test]
fn durations_beyond_a_hundred_years_are_configuration_errors() {
    for retention in ["500000000y", "1000000y"] {
        let setup = Setup::new("http://127.0.0.1:9", "", "");
        let text = std::fs::read_to_string(&setup.config).unwrap();
        std::fs::write(
            &setup.config,
            text.replace("retention = \"36500d\"", &format!("retention = \"{retention}\"")),
        )
        .unwrap();
        let run = setup.run(&["once"]);
        assert_eq!(run.code, 2, "{retention}: {}", run.stderr);
        assert!(run.stderr.contains("longer than 100 years"), "{}", run.stderr);
        assert!(run.stderr.contains("retention"), "names the key: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
    }
}
