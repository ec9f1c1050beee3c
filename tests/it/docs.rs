//! The documentation is real and self-contained: every JSON and YAML block in docs/ and the
//! README parses, the configuration in docs/design.md is one the agent accepts, no file cites a
//! document outside the repository, and every relative Markdown link leads to a file.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, ARCHITECTURE.md and every docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            None if line.trim_start() == fence => cur = Some(String::new()),
            Some(body) if line.trim_start() == "```" => {
                out.push(std::mem::take(body));
                cur = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_json_and_yaml_snippet_parses() {
    let mut json = 0;
    for path in markdown_files() {
        let file = path.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for block in blocks(&text, "json") {
            serde_json::from_str::<serde_json::Value>(&block).unwrap_or_else(|e| panic!("{file}: {e}\n{block}"));
            json += 1;
        }
        for block in blocks(&text, "yaml") {
            serde_yaml::from_str::<serde_yaml::Value>(&block).unwrap_or_else(|e| panic!("{file}: {e}\n{block}"));
        }
    }
    assert!(json >= 2, "the Elastic recipes have their JSON");
}

#[test]
fn the_design_config_is_accepted() {
    let text = std::fs::read_to_string(root().join("docs/design.md")).unwrap();
    let blocks = blocks(&text, "toml");
    assert_eq!(blocks.len(), 1, "docs/design.md shows one configuration");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &blocks[0]).unwrap();
    let config = senhasegura_forwarder::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.sinks.len(), 3);
}

/// Every file under `dir` (recursively), or `dir` itself when it is a file.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        files_under(&entry.unwrap().path(), out);
    }
}

#[test]
fn no_file_cites_documents_outside_the_repository() {
    // Built from pieces so that this file does not match itself.
    let needles = [
        ["DESIGN", ".md"].concat(),
        ["MAPPING", ".md"].concat(),
        ["..", "/shared"].concat(),
        ["/work", "/shared"].concat(),
    ];
    let mut files = Vec::new();
    for top in [
        "src",
        "tests",
        "benches",
        "docs",
        "config",
        "packaging",
        "README.md",
        "ARCHITECTURE.md",
    ] {
        files_under(&root().join(top), &mut files);
    }
    assert!(
        files.len() > 50,
        "the walk found the repository's files ({})",
        files.len()
    );
    let mut found = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            for needle in &needles {
                if line.contains(needle.as_str()) {
                    let name = file.strip_prefix(root()).unwrap().display();
                    found.push(format!("{name}:{}: cites {needle}", n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "point these at docs/design.md or docs/mapping.md:\n{}",
        found.join("\n")
    );
}

/// The targets of inline (`[text](target)`) and reference (`[label]: target`) links outside
/// fenced code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find("](") {
            let tail = &rest[pos + 2..];
            let Some(end) = tail.find(')') else { break };
            out.push(tail[..end].split_whitespace().next().unwrap_or("").to_string());
            rest = &tail[end..];
        }
        let trimmed = line.trim_start();
        if let Some(label_end) = trimmed.strip_prefix('[').and_then(|t| t.find("]:")) {
            let target = trimmed[label_end + 3..].split_whitespace().next().unwrap_or("");
            out.push(target.to_string());
        }
    }
    out
}

#[test]
fn every_relative_markdown_link_leads_to_a_file() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for path in markdown_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let dir = path.parent().unwrap();
        for target in link_targets(&text) {
            if target.is_empty() || target.starts_with('#') || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            checked += 1;
            if !dir.join(file).exists() {
                let name = path.strip_prefix(root()).unwrap().display();
                broken.push(format!("{name}: ({target})"));
            }
        }
    }
    assert!(checked >= 8, "the links were found ({checked})");
    assert!(broken.is_empty(), "links to missing files:\n{}", broken.join("\n"));
}

#[test]
fn link_targets_are_found_outside_code() {
    let text = "See [a](docs/a.md#x) and [b](b.md \"title\").\n```\n[c](not-a-link.md)\n```\n[ref]: ../c.md\n";
    assert_eq!(link_targets(text), ["docs/a.md#x", "b.md", "../c.md"]);
}

/// The command that README.md and the packaged config give for typing the client secret,
/// run as written (its shell, its script) with the secret on stdin: the file must hold the
/// secret exactly (no newline). A script with bash-only `read` flags given to `sh` fails here
/// (Debian's sh is dash: "read: Illegal option -s").
#[test]
fn the_secret_prompt_command_writes_the_secret() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    const TARGET: &str = "/etc/senhasegura-forwarder/client_secret";
    for file in ["README.md", "packaging/config.toml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("read -r") && l.contains(TARGET))
            .unwrap_or_else(|| panic!("{file}: no secret prompt command"));
        let cmd = line.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
        let rest = cmd.strip_prefix("sudo ").unwrap_or_else(|| panic!("{file}: {cmd}"));
        let (shell, script) = rest.split_once(" -c ").unwrap_or_else(|| panic!("{file}: {cmd}"));
        let script = script
            .trim()
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("client_secret");
        let script = script.replace(TARGET, out.to_str().unwrap());
        let mut child = Command::new(shell)
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b" s3cr3t value\t\n").unwrap();
        let done = child.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "{file}: `{cmd}` failed: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        // Blanks around the secret are part of it.
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            " s3cr3t value\t",
            "{file}: `{cmd}`"
        );
    }
}
