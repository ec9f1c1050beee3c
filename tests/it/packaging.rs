//! The systemd units (systemd-analyze verify and security) and the packages `packaging/build.sh`
//! builds (lintian, rpmlint, and a real `dpkg -i` / upgrade / remove / purge when root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const UNITS: [&str; 2] = ["senhasegura-forwarder.service", "senhasegura-forwarder@.service"];
const TOOLS: &str = ".cache/senhasegura-forwarder/tools/bin";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (tests/run-all.sh installs the tools)"));
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path_with_tools() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    format!("{home}/{TOOLS}:{}", std::env::var("PATH").unwrap_or_default())
}

/// The .deb and .rpm, built once per test process (`packaging/build.sh`; a no-op rebuild when
/// tests/run-all.sh already ran it).
fn packages() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = run(Command::new("bash")
            .arg("packaging/build.sh")
            .current_dir(root())
            .env("PATH", path_with_tools()));
        assert!(out.status.success(), "packaging/build.sh failed:\n{}", text(&out));
        let dir = root().join("target/packages");
        let find = |ext: &str| {
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == ext))
                .unwrap_or_else(|| panic!("no .{ext} in {}", dir.display()))
        };
        (find("deb"), find("rpm"))
    })
}

fn exposure(unit_file: &Path) -> f64 {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_file.file_name().unwrap())
        .current_dir(unit_file.parent().unwrap()));
    let all = text(&out);
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{all}"));
    let value = line.rsplit(": ").next().unwrap().split_whitespace().next().unwrap();
    value.parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn units_score_2_or_less_on_systemd_analyze_security() {
    for unit in UNITS {
        let file = root().join("packaging/systemd").join(unit);
        let score = exposure(&file);
        assert!(score <= 2.0, "{unit}: exposure {score} > 2.0");
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    // As shipped, except that ExecStart= names the binary under test and the man page (not
    // installed here) is not checked; the installed units are verified as is by the dpkg test.
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let shipped = std::fs::read_to_string(root().join("packaging/systemd").join(unit)).unwrap();
        let local = shipped
            .replace("/usr/bin/senhasegura-forwarder", crate::support::bin())
            .replace("man:senhasegura-forwarder(1) ", "");
        std::fs::write(dir.path().join(unit), local).unwrap();
    }
    for unit in ["senhasegura-forwarder.service", "senhasegura-forwarder@vault1.service"] {
        verify(dir.path(), unit);
    }
}

#[test]
fn the_units_glibc_tunables_are_ones_this_glibc_reads() {
    // Both units give the same value; each `name=value` in it must be a tunable glibc knows, or
    // glibc ignores it without a word. The dynamic loader lists the tunables as it read them
    // from the environment: the unit's value, and another value, must each show as given.
    // glibc's loader (its `--list-tunables` needs glibc 2.33 or later).
    let loader = match std::env::consts::ARCH {
        "x86_64" => "/lib64/ld-linux-x86-64.so.2",
        "aarch64" => "/lib/ld-linux-aarch64.so.1",
        other => panic!("no known glibc loader path for {other}: add it here"),
    };
    let mut values = Vec::new();
    for unit in UNITS {
        let shipped = std::fs::read_to_string(root().join("packaging/systemd").join(unit)).unwrap();
        let value = shipped
            .lines()
            .find_map(|l| l.strip_prefix("Environment=GLIBC_TUNABLES="))
            .unwrap_or_else(|| panic!("{unit} sets GLIBC_TUNABLES"));
        values.push(value.to_string());
    }
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    for pair in values[0].split(':') {
        let (name, value) = pair.split_once('=').unwrap();
        let value: u64 = value.parse().unwrap();
        for v in [value, value + 7] {
            let out = run(Command::new(loader)
                .arg("--list-tunables")
                .env("GLIBC_TUNABLES", format!("{name}={v}")));
            let listed = text(&out);
            assert!(out.status.success(), "{loader} --list-tunables:\n{listed}");
            let line = listed
                .lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .unwrap_or_else(|| panic!("glibc has no tunable {name}:\n{listed}"));
            // Sizes are listed in hex, 32-bit values in decimal.
            let shown = line.split_whitespace().nth(1).unwrap_or_default();
            assert!(
                shown == format!("{v:#x}") || shown == v.to_string(),
                "{name}={v}: {line}"
            );
        }
    }
}

/// `systemd-analyze verify`: exit 0 and not one warning.
fn verify(dir: &Path, unit: &str) {
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--no-pager"])
        .arg(format!("./{unit}"))
        .current_dir(dir));
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "{unit}:\n{}",
        text(&out)
    );
}

#[test]
fn lintian_finds_no_errors_in_the_deb() {
    let (deb, _) = packages();
    let out = run(Command::new("lintian")
        .args(["--fail-on", "error", "--tag-display-limit", "0"])
        .arg(deb));
    let all = text(&out);
    println!("lintian:\n{all}");
    assert!(out.status.success(), "lintian:\n{all}");
    assert!(!all.lines().any(|l| l.starts_with("E:")), "lintian errors:\n{all}");
}

#[test]
fn rpmlint_finds_no_errors_in_the_rpm() {
    let (_, rpm) = packages();
    // packaging/rpmlint.toml filters five messages, each with its reason (tags
    // cargo-generate-rpm cannot write; no signature before the release step).
    let out = run(Command::new("rpmlint")
        .arg("-c")
        .arg(root().join("packaging/rpmlint.toml"))
        .arg(rpm));
    let all = text(&out);
    println!("rpmlint:\n{all}");
    let summary = all
        .lines()
        .find(|l| l.contains("errors") && l.contains("warnings"))
        .unwrap_or_else(|| panic!("no rpmlint summary:\n{all}"));
    assert!(summary.contains(" 0 errors"), "rpmlint errors:\n{all}");
}

#[test]
fn the_rpm_holds_the_layout() {
    let (_, rpm) = packages();
    let list = text(&run(Command::new("rpm").args(["-qlp"]).arg(rpm)));
    for f in [
        "/usr/bin/senhasegura-forwarder",
        "/etc/senhasegura-forwarder/config.toml",
        "/etc/sysconfig/senhasegura-forwarder",
        "/usr/lib/systemd/system/senhasegura-forwarder.service",
        "/usr/lib/systemd/system/senhasegura-forwarder@.service",
        "/usr/lib/sysusers.d/senhasegura-forwarder.conf",
        "/usr/share/man/man1/senhasegura-forwarder.1.gz",
        "/usr/share/man/man1/senhasegura-forwarder-check.1.gz",
        "/usr/share/bash-completion/completions/senhasegura-forwarder",
        "/usr/share/doc/senhasegura-forwarder/README.md",
        "/usr/share/doc/senhasegura-forwarder/THIRD-PARTY-LICENSES.gz",
    ] {
        assert!(list.lines().any(|l| l == f), "{f} missing from the rpm:\n{list}");
    }
    let config = text(&run(Command::new("rpm").args(["-qp", "--configfiles"]).arg(rpm)));
    assert!(config.contains("/etc/senhasegura-forwarder/config.toml"), "{config}");
    assert!(config.contains("/etc/sysconfig/senhasegura-forwarder"), "{config}");
    let scripts = text(&run(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm)));
    assert!(scripts.contains("systemd-sysusers"), "{scripts}");
    assert!(scripts.contains("chmod 0750 /etc/senhasegura-forwarder"), "{scripts}");
}

/// The crates.io `NAME-VERSION` source directories named in `binary` (the source paths of panic
/// locations and debug info that rustc leaves in it), as (name, version): a list of the crates
/// whose code the binary holds, found independently of `cargo tree`.
fn crates_named_in(binary: &[u8]) -> std::collections::BTreeSet<(String, String)> {
    let mark: &[u8] = b"index.crates.io-";
    let mut found = std::collections::BTreeSet::new();
    let mut at = 0;
    while let Some(pos) = binary[at..].windows(mark.len()).position(|w| w == mark) {
        let mut start = at + pos + mark.len();
        at = start;
        // index.crates.io-HASH/NAME-VERSION/...: past the registry directory's hash.
        let Some(slash) = binary[start..]
            .iter()
            .take(64)
            .take_while(|&&b| b != 0)
            .position(|&b| b == b'/')
        else {
            continue;
        };
        start += slash + 1;
        let dir: String = binary[start..]
            .iter()
            .take(128)
            .take_while(|&&b| b != b'/' && b.is_ascii_graphic())
            .map(|&b| b as char)
            .collect();
        if let Some(split) = split_name_version(&dir) {
            found.insert(split);
        }
    }
    found
}

/// `md-5-0.10.6` → ("md-5", "0.10.6"): the name ends at the first hyphen followed by
/// MAJOR.MINOR.PATCH and then the end, a pre-release (-) or build metadata (+).
fn split_name_version(dir: &str) -> Option<(String, String)> {
    let is_version = |v: &str| {
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    dir.match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| i > 0 && is_version(&dir[i + 1..]))
        .map(|i| (dir[..i].to_string(), dir[i + 1..].to_string()))
}

#[test]
fn source_directory_names_split_into_name_and_version() {
    let split = |d: &str| split_name_version(d).map(|(n, v)| format!("{n} {v}"));
    assert_eq!(split("md-5-0.10.6").as_deref(), Some("md-5 0.10.6"));
    assert_eq!(
        split("rdkafka-sys-4.10.0+2.12.1").as_deref(),
        Some("rdkafka-sys 4.10.0+2.12.1")
    );
    assert_eq!(
        split("x25519-dalek-2.0.0-rc.3").as_deref(),
        Some("x25519-dalek 2.0.0-rc.3")
    );
    assert_eq!(split("utf-8-0.7.6").as_deref(), Some("utf-8 0.7.6"));
    assert_eq!(split("serde"), None);
}

/// The packages carry the licence texts of the code compiled into the binary: every crate
/// whose sources the (unstripped) binary names is listed with its version, and the bundled C
/// library's licence (librdkafka, inside rdkafka-sys) and the vendored sled's are there.
#[test]
fn the_packages_carry_the_licences_of_the_crates_in_the_binary() {
    use std::io::Read;
    let (deb, _) = packages();
    let doc = root().join("usr/share/doc/senhasegura-forwarder/THIRD-PARTY-LICENSES.gz");
    let tar = run(Command::new("dpkg-deb").arg("--fsys-tarfile").arg(deb));
    assert!(tar.status.success(), "{}", text(&tar));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deb.tar"), &tar.stdout).unwrap();
    let member = format!(
        ".{}",
        doc.strip_prefix(root()).map(|p| format!("/{}", p.display())).unwrap()
    );
    let gz = run(Command::new("tar")
        .arg("-xOf")
        .arg(dir.path().join("deb.tar"))
        .arg(&member));
    assert!(
        gz.status.success() && !gz.stdout.is_empty(),
        "{member} not in the deb: {}",
        text(&gz)
    );
    let mut licences = String::new();
    flate2::read::GzDecoder::new(&gz.stdout[..])
        .read_to_string(&mut licences)
        .unwrap();

    let binary = std::fs::read(root().join("target/release/senhasegura-forwarder")).unwrap();
    let crates = crates_named_in(&binary);
    assert!(
        crates.len() > 50,
        "the binary names {} crates: {crates:?}",
        crates.len()
    );
    for (name, version) in &crates {
        assert!(
            licences.contains(&format!("\n  {name} {version}: ")),
            "{name} {version} is in the binary but not in THIRD-PARTY-LICENSES"
        );
    }
    // The standard library's notices, as its toolchain ships them (they name the crates std is
    // built from whose licences differ from its own; the binary names some others, e.g.
    // addr2line, that those notices leave under std's own terms).
    let std_part = licences
        .split("The Rust standard library, compiled into the binary")
        .nth(1)
        .expect("no section on the Rust standard library");
    assert!(
        std_part.contains("The Rust Standard Library is dual-licensed under Apache 2.0 and MIT terms."),
        "{}",
        &std_part[..std_part.len().min(2000)]
    );
    for text in [
        "rdkafka-sys 4.10.0+2.12.1 (librdkafka/LICENSE)\n",
        "librdkafka - Apache Kafka C driver library",
        "\n  sled 0.34.7: ",
        "sled 0.34.7 (LICENSE-MIT)",
    ] {
        assert!(licences.contains(text), "{text:?} missing from THIRD-PARTY-LICENSES");
    }
}

const PKG: &str = "senhasegura-forwarder";
const USER: &str = "senhasegura-forwarder";

fn sh(script: &str) -> Output {
    run(Command::new("sh").args(["-c", script]))
}

fn ok(script: &str) -> String {
    let out = sh(script);
    assert!(out.status.success(), "{script}:\n{}", text(&out));
    text(&out)
}

#[test]
fn the_deb_installs_upgrades_keeping_edits_and_purges() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED the_deb_installs_upgrades_keeping_edits_and_purges: dpkg -i needs root (CI runs tests/run-all.sh as root)");
        return;
    }
    let (deb, _) = packages();
    // A disposable machine; a leftover of an earlier run goes first.
    sh(&format!("dpkg --purge {PKG}; userdel {USER}"));
    ok(&format!("dpkg -i {}", deb.display()));

    // The user, and the files laid out as designed.
    ok(&format!("getent passwd {USER}"));
    for f in [
        "/usr/bin/senhasegura-forwarder",
        "/etc/senhasegura-forwarder/config.toml",
        "/etc/default/senhasegura-forwarder",
        "/etc/logrotate.d/senhasegura-forwarder",
        "/lib/systemd/system/senhasegura-forwarder.service",
        "/lib/systemd/system/senhasegura-forwarder@.service",
        "/usr/lib/sysusers.d/senhasegura-forwarder.conf",
        "/usr/share/man/man1/senhasegura-forwarder.1.gz",
        "/usr/share/man/man1/senhasegura-forwarder-check.1.gz",
        "/usr/share/bash-completion/completions/senhasegura-forwarder",
        "/usr/share/doc/senhasegura-forwarder/README.md",
        "/usr/share/doc/senhasegura-forwarder/copyright",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let modes = ok("stat -c '%n %U:%G %a' /etc/senhasegura-forwarder /etc/senhasegura-forwarder/config.toml /var/lib/senhasegura-forwarder /var/log/senhasegura-forwarder");
    for expected in [
        "/etc/senhasegura-forwarder root:senhasegura-forwarder 750",
        "/etc/senhasegura-forwarder/config.toml root:root 644",
        "/var/lib/senhasegura-forwarder senhasegura-forwarder:senhasegura-forwarder 700",
        "/var/log/senhasegura-forwarder senhasegura-forwarder:senhasegura-forwarder 750",
    ] {
        assert!(modes.contains(expected), "{expected}:\n{modes}");
    }
    let conffiles = ok(&format!("dpkg-query --showformat='${{Conffiles}}' --show {PKG}"));
    assert!(
        conffiles.contains("/etc/senhasegura-forwarder/config.toml"),
        "{conffiles}"
    );
    assert!(conffiles.contains("/etc/default/senhasegura-forwarder"), "{conffiles}");
    ok("man -w senhasegura-forwarder");

    // The installed units verify as they are (binary, man page and all).
    for unit in ["senhasegura-forwarder.service", "senhasegura-forwarder@vault1.service"] {
        let out = ok(&format!("systemd-analyze verify --no-pager {unit} 2>&1"));
        assert!(out.trim().is_empty(), "{unit}: {out}");
    }

    // The quick start: secret without shell history, client id in /etc/default, check as the
    // service user with the packaged config (the vault is not reachable from here).
    ok("install -m 0640 -g senhasegura-forwarder /dev/null /etc/senhasegura-forwarder/client_secret");
    ok("printf %s 'simulator-secret' | sh -c 'read -r s; printf %s \"$s\" > /etc/senhasegura-forwarder/client_secret'");
    ok("sed -i 's/^SENHASEGURA_CLIENT_ID=.*/SENHASEGURA_CLIENT_ID=forwarder/' /etc/default/senhasegura-forwarder");
    let check = ok(&format!(
        "runuser -u {USER} -- sh -c 'set -a; . /etc/default/senhasegura-forwarder; exec senhasegura-forwarder check --offline'"
    ));
    assert!(check.contains("ok   sink file:"), "{check}");
    assert!(check.contains("ok   state: /var/lib/senhasegura-forwarder"), "{check}");

    // The packaged default, end to end, against the simulator as the vault: `check` online,
    // then `once` writes the events to the file, as the service user.
    let sim = crate::support::Sim::start(&["--sessions", "5", "--active", "1"]);
    ok(&format!(
        "sed -i 's#^SENHASEGURA_URL=.*#SENHASEGURA_URL={}#' /etc/default/senhasegura-forwarder",
        sim.url
    ));
    let as_service = |command: &str| {
        ok(&format!(
            "runuser -u {USER} -- sh -c 'set -a; . /etc/default/senhasegura-forwarder; exec senhasegura-forwarder {command}' 2>&1"
        ))
    };
    let online = as_service("check");
    assert!(
        online.contains("ok   token:")
            && online.contains("ok   sink file: appending to /var/log/senhasegura-forwarder/events.ndjson"),
        "{online}"
    );
    as_service("once");
    let events = ok("cat /var/log/senhasegura-forwarder/events.ndjson");
    let keys: Vec<String> = events
        .lines()
        .map(|l| crate::support::key_of(&serde_json::from_str(l).unwrap()))
        .collect();
    // One event or two per session, each once, and exactly what the state remembers.
    assert!((5..=10).contains(&keys.len()), "{events}");
    let unique: std::collections::HashSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len());
    let state = as_service("state list");
    let remembered: std::collections::HashSet<String> = state
        .lines()
        .filter(|l| l.contains('\t'))
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(remembered, unique, "{state}");
    assert!(ok("stat -c '%U %a' /var/log/senhasegura-forwarder/events.ndjson").contains("senhasegura-forwarder 600"));

    // The packaged logrotate rule rotates as the service's user (`su`), by rename, and creates
    // the new file for it.
    ok("logrotate --force --state /tmp/senhasegura-forwarder-logrotate.state /etc/logrotate.d/senhasegura-forwarder");
    let rotated = ok(
        "stat -c '%U %a' /var/log/senhasegura-forwarder/events.ndjson.1 /var/log/senhasegura-forwarder/events.ndjson",
    );
    assert_eq!(
        rotated.lines().collect::<Vec<_>>(),
        ["senhasegura-forwarder 600", "senhasegura-forwarder 600"],
        "{rotated}"
    );
    assert_eq!(ok("cat /var/log/senhasegura-forwarder/events.ndjson.1"), events);

    // An edited conffile survives an upgrade to a newer build.
    ok("echo '# edited by the operator' >> /etc/senhasegura-forwarder/config.toml");
    let newer = tempfile::tempdir().unwrap();
    let out = run(Command::new("cargo")
        .args([
            "deb",
            "--no-build",
            "--no-strip",
            "--deb-version",
            "0.1.0+test.2",
            "--output",
        ])
        .arg(newer.path())
        .current_dir(root())
        .env("PATH", path_with_tools()));
    assert!(out.status.success(), "{}", text(&out));
    ok(&format!("dpkg -i --force-confold {}/*.deb", newer.path().display()));
    assert_eq!(
        ok(&format!("dpkg-query --showformat='${{Version}}' --show {PKG}")),
        "0.1.0+test.2"
    );
    assert!(ok("cat /etc/senhasegura-forwarder/config.toml").contains("# edited by the operator"));
    assert!(ok("stat -c '%U:%G %a' /etc/senhasegura-forwarder").contains("root:senhasegura-forwarder 750"));

    // Remove keeps the state and the config; purge removes them (the user stays, by policy).
    ok(&format!(
        "runuser -u {USER} -- touch /var/lib/senhasegura-forwarder/marker"
    ));
    ok(&format!("dpkg -r {PKG}"));
    assert!(
        Path::new("/var/lib/senhasegura-forwarder/marker").exists(),
        "remove keeps the state"
    );
    assert!(
        Path::new("/etc/senhasegura-forwarder/config.toml").exists(),
        "remove keeps conffiles"
    );
    assert!(!Path::new("/usr/bin/senhasegura-forwarder").exists());
    ok(&format!("dpkg --purge {PKG}"));
    for gone in [
        "/etc/senhasegura-forwarder",
        "/etc/default/senhasegura-forwarder",
        "/var/lib/senhasegura-forwarder",
        "/var/log/senhasegura-forwarder",
    ] {
        assert!(!Path::new(gone).exists(), "purge left {gone}");
    }
    let overrides = ok("dpkg-statoverride --list");
    assert!(!overrides.contains("senhasegura-forwarder"), "{overrides}");
}

#[test]
fn man_page_and_completions_come_from_the_cli() {
    packages();
    let assets = root().join("target/package-assets");
    let page = run(Command::new("zcat").arg(assets.join("senhasegura-forwarder.1.gz")));
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "troff: {page:.200}");
    for sub in ["run", "once", "check", "state", "simulate", "demo"] {
        assert!(
            page.contains(&format!("senhasegura\\-forwarder\\-{sub}(1)")),
            "{sub} missing"
        );
        assert!(
            assets.join(format!("senhasegura-forwarder-{sub}.1.gz")).exists(),
            "{sub}'s page"
        );
    }
    assert!(!page.contains("package\\-assets"), "the hidden command stays hidden");
    let check = run(Command::new("zcat").arg(assets.join("senhasegura-forwarder-check.1.gz")));
    assert!(String::from_utf8_lossy(&check.stdout).contains("\\-\\-offline"));
    let bash = std::fs::read_to_string(assets.join("completions/senhasegura-forwarder")).unwrap();
    assert!(
        bash.contains("--offline") && bash.contains("--cycles"),
        "bash completion lacks options"
    );
    let bash_ok = run(Command::new("bash")
        .arg("-n")
        .arg(assets.join("completions/senhasegura-forwarder")));
    assert!(bash_ok.status.success(), "{}", text(&bash_ok));
    let zsh = std::fs::read_to_string(assets.join("completions/_senhasegura-forwarder")).unwrap();
    assert!(zsh.starts_with("#compdef senhasegura-forwarder"), "{zsh:.80}");
    let fish = std::fs::read_to_string(assets.join("completions/senhasegura-forwarder.fish")).unwrap();
    assert!(fish.contains("complete -c senhasegura-forwarder"), "{fish:.200}");
}
