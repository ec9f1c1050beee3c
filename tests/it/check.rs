//! `check --offline`: what needs no network, each failure printed once, with exit 2 (config)
//! or 5 (state directory).

use crate::support::{cmd, Run, Setup};

/// A config for a vault that does not answer (nothing listens on port 1).
fn setup(source_extra: &str, rest: &str) -> Setup {
    Setup::new("http://127.0.0.1:1", source_extra, rest)
}

fn check(setup: &Setup, args: &[&str]) -> Run {
    cmd()
        .arg("check")
        .args(args)
        .arg("-c")
        .arg(&setup.config)
        .output()
        .unwrap()
        .into()
}

/// Fails with `code`, one FAIL line naming `what` and `text`, and the message exactly once.
fn assert_fails_once(run: &Run, code: i32, what: &str, text: &str) {
    assert_eq!(run.code, code, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let fails: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 1, "one FAIL line: {}", run.stdout);
    assert!(fails[0].starts_with(&format!("FAIL {what}:")), "{}", fails[0]);
    assert!(fails[0].contains(text), "{} should name {text}", fails[0]);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(all.matches(text).count(), 1, "printed once:\n{all}");
}

#[test]
fn offline_check_passes_with_the_vault_unreachable() {
    let s = setup("", "[[sink]]\ntype = \"syslog\"\naddress = \"127.0.0.1:1\"\n");
    let run = check(&s, &["--offline"]);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    for item in ["config", "timezone", "source", "state", "sink syslog"] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&format!("ok   {item}:"))),
            "{item}:\n{}",
            run.stdout
        );
    }
    // The online check does the same, then fails at the token: printed once, exit 3.
    let online = check(&s, &[]);
    assert_fails_once(&online, 3, "token", "Connection refused");
    assert!(online.stdout.contains("ok   state:"), "{}", online.stdout);
}

#[test]
fn offline_check_refuses_a_state_directory_owned_by_another_user() {
    use std::os::unix::fs::MetadataExt;
    // As root, a directory given to nobody; otherwise a directory of root's.
    let s = setup("", "");
    let dir = if rustix::process::geteuid().is_root() {
        let d = s.dir.path().join("state");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        d
    } else {
        std::path::PathBuf::from("/")
    };
    let owner = std::fs::metadata(&dir).unwrap().uid();
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(&s.state_dir().display().to_string(), &dir.display().to_string());
    std::fs::write(&s.config, text).unwrap();
    let run = check(&s, &["--offline"]);
    assert_fails_once(&run, 5, "state", &format!("is owned by uid {owner}"));
}

#[test]
fn offline_check_refuses_a_state_directory_it_cannot_create() {
    let s = setup("", "");
    let file = s.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        &s.state_dir().display().to_string(),
        &file.join("state").display().to_string(),
    );
    std::fs::write(&s.config, text).unwrap();
    let run = check(&s, &["--offline"]);
    assert_eq!(run.code, 5, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAIL state:"), "{}", run.stdout);
}

#[test]
fn offline_check_refuses_unreadable_ca_files() {
    let s = setup("", "");
    // A directory where a CA file belongs.
    let dir = s.dir.path().join("ca-dir");
    std::fs::create_dir(&dir).unwrap();
    let with_ca = |ca: &std::path::Path| {
        let s = setup(&format!("ca_file = \"{}\"", ca.display()), "");
        check(&s, &["--offline"])
    };
    assert_fails_once(&with_ca(&dir), 2, "source ca", "is not a regular file");
    // A file that is not PEM.
    let junk = s.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    assert_fails_once(&with_ca(&junk), 2, "source", "holds no");
    // The same file stops `once` and `run` as a config error too (they said exit 3, a source
    // error, and `run` does not stop for those).
    let junk_setup = setup(&format!("ca_file = \"{}\"", junk.display()), "");
    for command in ["once", "run"] {
        let run = junk_setup.run(&[command]);
        assert_eq!(run.code, 2, "{command}: {}", run.stderr);
        assert!(run.stderr.contains("source.ca_file"), "{command}: {}", run.stderr);
    }
    // A missing file.
    assert_fails_once(
        &with_ca(&s.dir.path().join("missing.pem")),
        2,
        "source ca",
        "No such file",
    );
    // The syslog sink's CA, missing.
    let sink = setup(
        "",
        &format!(
            "[[sink]]\ntype = \"syslog\"\ntransport = \"tls\"\naddress = \"127.0.0.1:1\"\nca_file = \"{}\"\n",
            s.dir.path().join("siem-ca.pem").display()
        ),
    );
    let run = check(&sink, &["--offline"]);
    assert_fails_once(&run, 2, "sink syslog", "siem-ca.pem");
    // A client certificate without its key, then a certificate file that is missing: each
    // named as the fault of its own setting, not the CA's.
    let tls = "[[sink]]\ntype = \"syslog\"\ntransport = \"tls\"\naddress = \"127.0.0.1:1\"\n";
    let cert = s.dir.path().join("client.pem");
    for (extra, said) in [
        (
            format!("client_cert = \"{}\"\n", cert.display()),
            "sink.client_key: client_cert and client_key go together",
        ),
        (
            format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                cert.display(),
                s.dir.path().join("client.key").display()
            ),
            "sink.client_cert: ",
        ),
    ] {
        let run = check(&setup("", &format!("{tls}{extra}")), &["--offline"]);
        assert_fails_once(&run, 2, "sink syslog", said);
    }
}

#[test]
fn offline_check_refuses_a_bad_facility() {
    let s = setup(
        "",
        "[[sink]]\ntype = \"syslog\"\naddress = \"127.0.0.1:514\"\nfacility = \"kern2\"\n",
    );
    assert_fails_once(
        &check(&s, &["--offline"]),
        2,
        "sink syslog",
        "`kern2` is not a syslog facility",
    );
}

#[test]
fn offline_check_refuses_a_bad_librdkafka_property() {
    let s = setup(
        "",
        "[[sink]]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\ntopic = \"t\"\n[sink.properties]\n\"linger.ms\" = \"soon\"\n",
    );
    assert_fails_once(&check(&s, &["--offline"]), 2, "sink kafka", "linger.ms");
}

#[test]
fn offline_check_of_kafka_resolves_no_broker_and_still_reads_the_ca() {
    // A broker name that cannot resolve: the online producer would log resolve failures.
    let kafka = "[[sink]]\ntype = \"kafka\"\nbrokers = \"broker.invalid:9092\"\ntopic = \"t\"\n";
    let run = check(&setup("", kafka), &["--offline"]);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ok   sink kafka:"), "{}", run.stdout);
    assert!(
        !run.stderr.contains("librdkafka"),
        "librdkafka spoke offline:\n{}",
        run.stderr
    );
    // librdkafka still builds the producer: a CA it cannot read fails the check.
    let ca = format!(
        "{kafka}[sink.properties]\n\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n"
    );
    assert_fails_once(
        &check(&setup("", &ca), &["--offline"]),
        2,
        "sink kafka",
        "ssl.ca.location",
    );
}

#[test]
fn a_config_error_on_a_secret_line_does_not_print_the_secret() {
    // The packaged unit runs `check --offline` before every start: its output is in the journal.
    for value in [
        r#""SUPER\qSECRET-XYZ""#,
        r#""SUPER${SECRET-XYZ""#,
        r#""SUPER${SECRET-XYZ}""#,
    ] {
        let s = setup("", "");
        let text = std::fs::read_to_string(&s.config).unwrap();
        std::fs::write(&s.config, text.replace(r#""simulator-secret""#, value)).unwrap();
        let run = check(&s, &["--offline"]);
        assert_eq!(run.code, 2, "{value}: {}{}", run.stdout, run.stderr);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains("SECRET-XYZ"), "{value} printed: {all}");
        assert!(all.contains("client_secret") && all.contains("line "), "{all}");
    }
    // Nor under a misspelled key, inside an inline table, or quoted by a type error.
    for (from, to) in [
        ("client_secret = ", "client_secert = "),
        ("client_secret = \"simulator-secret\"", "client_secret = 12345678"),
    ] {
        let s = setup("", "");
        let text = std::fs::read_to_string(&s.config).unwrap();
        std::fs::write(&s.config, text.replace(from, to)).unwrap();
        let run = check(&s, &["--offline"]);
        assert_eq!(run.code, 2, "{to}: {}", run.stdout);
        assert!(
            !run.stdout.contains("simulator-secret") && !run.stdout.contains("12345678"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("at line 11, column "), "{}", run.stdout);
    }
    let kafka = "[[sink]]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"t\"\nproperties = { \"sasl.password\" = \"SECRET-XYZ\\q\" }\n";
    let run = check(&setup("", kafka), &["--offline"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(!run.stdout.contains("SECRET-XYZ"), "{}", run.stdout);
    assert!(run.stdout.contains("`properties = …`"), "{}", run.stdout);
}

#[test]
fn offline_check_refuses_a_secret_that_is_not_a_regular_file() {
    let s = setup("", "");
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "client_secret = \"simulator-secret\"",
        &format!("client_secret_file = \"{}\"", s.dir.path().display()),
    );
    std::fs::write(&s.config, text).unwrap();
    assert_fails_once(&check(&s, &["--offline"]), 2, "secret", "is not a regular file");
}

#[test]
fn a_config_error_is_printed_once_in_json_log_mode() {
    let s = setup("", "");
    std::fs::write(&s.config, "[source]\nurl = 1\n").unwrap();
    let run = check(&s, &["--offline", "--log-format", "json"]);
    assert_fails_once(&run, 2, "config", "invalid config file");
    assert!(!run.stderr.contains("error:"), "no plain-text line: {}", run.stderr);
    // `once` in JSON mode: the error is one JSON record, no plain-text line after it.
    let once: Run = cmd()
        .args(["once", "--log-format", "json", "-c"])
        .arg(&s.config)
        .output()
        .unwrap()
        .into();
    assert_eq!(once.code, 2);
    for line in once.stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert_eq!(once.stderr.matches("invalid config file").count(), 1, "{}", once.stderr);
}

#[test]
fn online_check_does_not_call_a_udp_sink_connected() {
    let sim = crate::support::Sim::start(&["--sessions", "1"]);
    let s = Setup::new(
        &sim.url,
        "",
        "[[sink]]\ntype = \"syslog\"\ntransport = \"udp\"\naddress = \"127.0.0.1:9\"\n",
    );
    let run = check(&s, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let line = run.stdout.lines().find(|l| l.contains("sink syslog:")).unwrap();
    assert!(
        line.contains("socket ready for udp://127.0.0.1:9") && line.contains("cannot be confirmed"),
        "{line}"
    );
    assert!(!line.contains("connected"), "{line}");
}

/// A user and password in `source.url` would be logged, shown by `check` and `/health`, kept in
/// the state, and sent as Basic credentials: refused as a config error, never echoed.
#[test]
fn a_password_in_the_vault_url_is_refused_and_never_shown() {
    let s = Setup::new("https://svc:P4ssw0rd-Secret@127.0.0.1:1", "", "");
    let run = check(&s, &["--offline"]);
    assert_fails_once(&run, 2, "config", "holds a user name or password");
    let once = s.run(&["once"]);
    assert_eq!(once.code, 2, "{}", once.stderr);
    for out in [&run.stdout, &run.stderr, &once.stdout, &once.stderr] {
        assert!(!out.contains("P4ssw0rd"), "{out}");
    }
    assert!(!s.state_dir().exists(), "refused before the store is opened");
    // A password with a `/` breaks the parse: the URL is not echoed in that error either.
    let s = Setup::new("https://svc:P4ss/w0rd@127.0.0.1:1", "", "");
    let run = check(&s, &["--offline"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.contains("source.url: (not shown"), "{}", run.stdout);
    assert!(
        !format!("{}{}", run.stdout, run.stderr).contains("w0rd"),
        "{}",
        run.stdout
    );
}
