//! Golden files: input listings in `tests/golden/` (and the two documentation fixtures) with
//! the exact ECS and CEF output expected for them. `event.created` (read time) and `event.id`
//! (includes the simulator's random port) are blanked before comparing, and ECS documents are
//! compared as JSON (keys sorted); CEF lines must match byte for byte. After a deliberate change of output, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test it golden` and review the diff.

use crate::support::{fixture, Setup, Sim};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn blank_volatile(line: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(line).unwrap();
    crate::ecs::validate(&doc);
    doc["event"]["created"] = "<created>".into();
    doc["event"]["id"] = "<id>".into();
    serde_json::to_string(&doc).unwrap()
}

fn run(input: &Path, format: &str) -> crate::support::Run {
    run_formats(input, &[format])
}

/// A dry run of `input` with one stdout sink per format.
fn run_formats(input: &Path, formats: &[&str]) -> crate::support::Run {
    let sim = Sim::start(&["--fixture", input.to_str().unwrap()]);
    let sinks: String = formats
        .iter()
        .map(|f| format!("[[sink]]\ntype = \"stdout\"\nformat = \"{f}\"\n"))
        .collect();
    let setup = Setup::new(&sim.url, "", &format!("[cef]\nversion = \"test\"\n{sinks}"));
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("\"UTC\"", "\"America/Sao_Paulo\"");
    std::fs::write(&setup.config, text).unwrap();
    let run = setup.run(&["once", "--dry-run"]);
    run.ok();
    run
}

fn check(name: &str, input: &Path) {
    for (format, ext) in [("ecs", "ecs.jsonl"), ("cef", "cef.txt")] {
        let out = run(input, format);
        let got: String = match format {
            "ecs" => out.stdout.lines().map(|l| blank_volatile(l) + "\n").collect(),
            _ => out.stdout.clone(),
        };
        let path = golden_dir().join(format!("{name}.{ext}"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(got, expected, "{name} as {format} differs from {}", path.display());
    }
}

#[test]
fn golden_v3_nested_fixture() {
    check("v3-docs-nested", &fixture("v3-docs-nested.json"));
}

#[test]
fn golden_v4_flat_fixture() {
    check("v4-docs-flat", &fixture("v4-docs-flat.json"));
}

#[test]
fn golden_edge_cases() {
    check("edge-cases", &golden_dir().join("edge-cases.json"));
}

#[test]
fn unmappable_record_is_emitted_partially_and_counted() {
    let out = run(&golden_dir().join("edge-cases.json"), "ecs");
    let docs = out.docs();
    assert_eq!(docs.len(), 6, "7 records, one without session_id");
    let bad = docs
        .iter()
        .find(|d| d["senhasegura"]["session"]["record_id"] == 105)
        .unwrap();
    assert_eq!(bad["senhasegura"]["session"]["device"], "bad device:abc");
    assert_eq!(bad["destination"]["address"], "bad device:abc");
    assert!(bad["destination"].get("port").is_none() && bad["destination"].get("ip").is_none());
    assert_eq!(bad["user"]["name"], "bea", "what can be mapped still is");
    assert!(out.stderr.contains("partial=1"), "{}", out.stderr);
    // Counted per record, not once per output format.
    let both = run_formats(&golden_dir().join("edge-cases.json"), &["ecs", "cef"]);
    assert!(both.stderr.contains("partial=1 "), "{}", both.stderr);
    assert!(
        out.stderr.contains("bad=1"),
        "the record without session_id is counted: {}",
        out.stderr
    );
    assert!(out.stderr.contains("record has no session_id"), "{}", out.stderr);
}

#[test]
fn once_prints_one_cef_line_per_event_for_both_fixtures() {
    for f in ["v3-docs-nested.json", "v4-docs-flat.json"] {
        let out = run(&fixture(f), "cef");
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{f}");
        for l in lines {
            let cef = crate::cef_parse::parse(l).unwrap();
            assert_eq!(&cef.header[..3], ["CEF:0", "MT4", "senhasegura"]);
            assert_eq!(cef.get("act"), Some("session-end"));
        }
    }
}
