//! The licence texts of the third-party code in the binary, for the packages
//! (`/usr/share/doc/senhasegura-forwarder/THIRD-PARTY-LICENSES.gz`). `packaging/build.sh` runs:
//!
//! ```sh
//! cargo tree --locked -e normal,no-proc-macro --target HOST --prefix none -f '{p}' > CRATES
//! cargo metadata --format-version 1 --locked --filter-platform HOST \
//!   | cargo run --release --locked --example third_party_licenses -- CRATES OUT \
//!       "$(rustc --print sysroot)/share/doc/rust/COPYRIGHT-library.html"
//! ```
//!
//! The crates are those `cargo tree` lists for the package's normal dependencies with the
//! features a build of the binary resolves (not dev or build dependencies, not procedural
//! macros, and not what only a dev-dependency's features pull in); `cargo metadata` says where
//! each one's files are. A crate's texts are the files at its root whose names start with
//! LICENSE, LICENCE, COPYING, NOTICE, UNLICENSE or COPYRIGHT, plus its manifest's
//! `license-file`; for a crate that builds bundled native code (a `links` crate, such as
//! rdkafka-sys with librdkafka), also such files up to [`BUNDLED_DEPTH`] directories down,
//! where the bundled sources keep theirs. Identical texts are written once, under the list of
//! crates they come with. A crate that publishes no licence file of its own is listed with the
//! licence its manifest declares. The last section is the Rust standard library's notices, as
//! the toolchain ships them (optional third argument).

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    license_file: Option<String>,
    manifest_path: PathBuf,
    links: Option<String>,
}

#[derive(Deserialize)]
struct Resolve {
    root: Option<String>,
}

const PREFIXES: &[&str] = &["LICENSE", "LICENCE", "COPYING", "NOTICE", "UNLICENSE", "COPYRIGHT"];

fn is_licence_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// Licence files in `dir` (not recursive), sorted by name.
fn licence_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        if path.is_file() && is_licence_name(&entry.file_name().to_string_lossy()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `cargo tree --prefix none -f '{p}'` lines ("name vX.Y.Z", maybe " (path)" or " (*)") as
/// (name, version), without repeats.
fn parse_tree(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next().and_then(|v| v.strip_prefix('v'))) {
            (Some(name), Some(version)) => {
                out.insert((name.to_string(), version.to_string()));
            }
            _ => return Err(format!("not a `cargo tree` line: {line:?}")),
        }
    }
    Ok(out.into_iter().collect())
}

/// The listed crates' packages, sorted, the root package (the project) left out.
fn shipped<'m>(meta: &'m Metadata, crates: &[(String, String)]) -> Result<Vec<&'m Package>, String> {
    let root = meta.resolve.as_ref().and_then(|r| r.root.as_deref());
    let mut by_name: HashMap<(&str, &str), Vec<&Package>> = HashMap::new();
    for p in &meta.packages {
        by_name
            .entry((p.name.as_str(), p.version.as_str()))
            .or_default()
            .push(p);
    }
    let mut out = Vec::new();
    for (name, version) in crates {
        let p = match by_name.get(&(name.as_str(), version.as_str())).map(Vec::as_slice) {
            Some([p]) => *p,
            Some(_) => {
                return Err(format!(
                    "{name} {version} comes from more than one source; cannot tell which one is built"
                ))
            }
            None => {
                return Err(format!(
                    "{name} {version} is in the crate list but not in cargo metadata"
                ))
            }
        };
        if Some(p.id.as_str()) != root {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err("no third-party crate listed".into());
    }
    Ok(out)
}

/// How deep below a `links` crate's root its bundled sources' licence files are looked for
/// (libz-sys keeps zlib's at `src/zlib/LICENSE`).
const BUNDLED_DEPTH: usize = 3;

/// Licence files in the directories below `dir`, down to `depth` levels, sorted.
fn bundled_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if depth == 0 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        out.extend(licence_files(&sub)?);
        bundled_files(&sub, depth - 1, out)?;
    }
    Ok(())
}

/// A package's licence texts, (file shown, text): its own (at its root, and its manifest's
/// `license-file`), and those of the native sources it bundles.
struct Texts {
    own: Vec<(String, String)>,
    bundled: Vec<(String, String)>,
}

/// The non-empty texts of `files`, each shown relative to `dir`.
fn read_all(dir: &Path, files: Vec<PathBuf>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !text.trim().is_empty() {
            out.push((path.strip_prefix(dir).unwrap_or(&path).display().to_string(), text));
        }
    }
    Ok(out)
}

fn texts(p: &Package) -> Result<Texts, String> {
    let dir = p.manifest_path.parent().ok_or("manifest path has no directory")?;
    let mut own = licence_files(dir)?;
    if let Some(extra) = &p.license_file {
        let path = dir.join(extra);
        if !own.contains(&path) {
            own.push(path);
        }
    }
    let mut bundled = Vec::new();
    if p.links.is_some() {
        bundled_files(dir, BUNDLED_DEPTH, &mut bundled)?;
    }
    Ok(Texts {
        own: read_all(dir, own)?,
        bundled: read_all(dir, bundled)?,
    })
}

/// The whole document.
fn render(meta: &Metadata, crates: &[(String, String)]) -> Result<String, String> {
    let packages = shipped(meta, crates)?;
    let mut by_text: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut without = Vec::new();
    let mut out = String::from(
        "Third-party software in senhasegura-forwarder\n\n\
         The senhasegura-forwarder binary is built from the crates listed below (name, version,\n\
         licence as the crate declares it). Their licence and notice files follow, each text once,\n\
         under the crates it comes with.\n\n",
    );
    for p in &packages {
        let licence = p.license.as_deref().unwrap_or("(see its licence file)");
        out.push_str(&format!("  {} {}: {licence}\n", p.name, p.version));
        let found = texts(p)?;
        if found.own.is_empty() {
            without.push(format!("  {} {}: {licence}\n", p.name, p.version));
        }
        for (file, text) in found.own.into_iter().chain(found.bundled) {
            by_text
                .entry(text)
                .or_default()
                .push(format!("{} {} ({file})", p.name, p.version));
        }
    }
    if !without.is_empty() {
        out.push_str("\nCrates published without a licence file (the licence their manifest declares applies;\nits text is among those below):\n");
        out.extend(without);
    }
    let mut sections: Vec<(Vec<String>, String)> = by_text.into_iter().map(|(t, w)| (w, t)).collect();
    sections.sort();
    for (whose, text) in sections {
        out.push_str(&format!("\n{}\n", "=".repeat(78)));
        for w in whose {
            out.push_str(&format!("{w}\n"));
        }
        out.push_str(&format!("{}\n\n", "-".repeat(78)));
        out.push_str(text.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// The text of an HTML document: tags dropped, the common entities decoded, runs of blank
/// lines cut to one.
fn html_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => in_tag = true,
            (true, '>') => in_tag = false,
            (false, c) => text.push(c),
            (true, _) => {}
        }
    }
    for (entity, c) in [
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&quot;", "\""),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&nbsp;", " "),
    ] {
        text = text.replace(entity, c);
    }
    let text = text.replace("&amp;", "&");
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        blank = if line.is_empty() { blank + 1 } else { 0 };
        if blank <= 1 {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The section on the Rust standard library, from the toolchain's own notices
/// (`share/doc/rust/COPYRIGHT-library.html` under `rustc --print sysroot`).
fn std_section(html: &str) -> String {
    format!(
        "\n{}\nThe Rust standard library, compiled into the binary, with the crates it is built from\n\
         (the toolchain's COPYRIGHT-library.html):\n{}\n{}",
        "=".repeat(78),
        "-".repeat(78),
        html_text(html)
    )
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (crates, out, std_notices) = match args.as_slice() {
        [crates, out] => (crates, out, None),
        [crates, out, std_notices] => (crates, out, Some(std_notices)),
        _ => {
            eprintln!(
                "usage: cargo metadata --format-version 1 | third_party_licenses CRATES OUT [COPYRIGHT-library.html]"
            );
            std::process::exit(2);
        }
    };
    let result = (|| -> Result<(), String> {
        let list = std::fs::read_to_string(crates).map_err(|e| format!("{}: {e}", crates.display()))?;
        let meta: Metadata = serde_json::from_reader(std::io::stdin().lock())
            .map_err(|e| format!("reading cargo metadata from stdin: {e}"))?;
        let mut doc = render(&meta, &parse_tree(&list)?)?;
        if let Some(path) = std_notices {
            let html = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            doc.push_str(&std_section(&String::from_utf8_lossy(&html)));
        }
        std::fs::write(out, doc).map_err(|e| format!("{}: {e}", out.display()))
    })();
    if let Err(e) = result {
        eprintln!("third_party_licenses: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, name: &str, links: bool, files: &[(&str, &str)]) -> serde_json::Value {
        let root = dir.join(name);
        for (file, text) in files {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("Cargo.toml"), "").unwrap();
        serde_json::json!({
            "id": format!("{name} 1.0.0"), "name": name, "version": "1.0.0",
            "license": "MIT", "license_file": null,
            "manifest_path": root.join("Cargo.toml"),
            "links": if links { serde_json::json!(name) } else { serde_json::Value::Null },
        })
    }

    #[test]
    fn listed_crates_with_their_texts_each_text_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let meta = serde_json::json!({
            "packages": [
                package(d, "app", false, &[("LICENSE", "our own")]),
                package(d, "alpha", false, &[("LICENSE-MIT", "MIT text alpha"), ("LICENSE-APACHE", "Apache text"), ("README.md", "not a licence")]),
                package(d, "beta", false, &[("LICENCE", "Apache text")]),
                package(d, "native-sys", true, &[("bundled/LICENSE", "bundled C licence"), ("src/zlib/LICENSE", "zlib licence"), ("a/b/c/d/LICENSE", "too deep")]),
                package(d, "plain", false, &[]),
                package(d, "unlisted", false, &[("LICENSE", "unlisted licence")]),
            ],
            "resolve": {"root": "app 1.0.0"}
        });
        let meta: Metadata = serde_json::from_value(meta).unwrap();
        // As `cargo tree --prefix none -f '{p}'` prints them: the root with its path, repeats
        // marked (*).
        let tree = format!(
            "app v1.0.0 ({})\nalpha v1.0.0\nbeta v1.0.0\nplain v1.0.0\nbeta v1.0.0 (*)\nnative-sys v1.0.0\n",
            d.display()
        );
        let doc = render(&meta, &parse_tree(&tree).unwrap()).unwrap();
        for listed in [
            "alpha 1.0.0: MIT",
            "beta 1.0.0: MIT",
            "native-sys 1.0.0: MIT",
            "plain 1.0.0: MIT",
        ] {
            assert!(doc.contains(listed), "{listed} missing:\n{doc}");
        }
        for absent in ["app 1.0.0", "our own", "unlisted", "not a licence", "too deep"] {
            assert!(!doc.contains(absent), "{absent} present:\n{doc}");
        }
        assert!(doc.contains("native-sys 1.0.0 (bundled/LICENSE)\n"), "{doc}");
        assert!(doc.contains("bundled C licence"), "{doc}");
        assert!(doc.contains("native-sys 1.0.0 (src/zlib/LICENSE)\n"), "{doc}");
        assert!(doc.contains("zlib licence"), "{doc}");
        // The shared text once, under both crates.
        assert_eq!(doc.matches("Apache text").count(), 1, "{doc}");
        assert!(
            doc.contains("alpha 1.0.0 (LICENSE-APACHE)\nbeta 1.0.0 (LICENCE)\n"),
            "{doc}"
        );
        let without = doc
            .split("without a licence file")
            .nth(1)
            .unwrap()
            .split("=====")
            .next()
            .unwrap();
        assert!(without.contains("plain 1.0.0: MIT"), "{doc}");
        // A crate with only its bundled code's texts has none of its own.
        assert!(without.contains("native-sys 1.0.0: MIT"), "{doc}");
        assert!(!without.contains("alpha"), "{doc}");
        assert_eq!(doc.matches("beta 1.0.0: MIT").count(), 1, "listed once:\n{doc}");
    }

    #[test]
    fn the_standard_library_notices_read_as_text() {
        let html = "<html><h1>Copyright notices for The Rust Standard Library</h1>\n\n\n\n<p>&#34;Object&#34; &amp; <b>more</b> &lt;x&gt;</p>\n<li>\u{1f4e6} addr2line-0.25.1</li></html>";
        let section = std_section(html);
        assert!(
            section.contains("Copyright notices for The Rust Standard Library\n\n\"Object\" & more <x>\n"),
            "{section}"
        );
        assert!(section.contains("\u{1f4e6} addr2line-0.25.1"), "{section}");
        assert!(!section.contains('<') || section.contains("<x>"), "{section}");
    }

    #[test]
    fn a_listed_crate_missing_from_the_metadata_or_a_bad_line_is_an_error() {
        let meta: Metadata =
            serde_json::from_value(serde_json::json!({"packages": [], "resolve": {"root": null}})).unwrap();
        let crates = parse_tree("ghost v0.1.0\n").unwrap();
        assert!(render(&meta, &crates)
            .unwrap_err()
            .contains("ghost 0.1.0 is in the crate list but not in cargo metadata"));
        assert!(parse_tree("ghost 0.1.0\n")
            .unwrap_err()
            .contains("not a `cargo tree` line"));
    }

    #[test]
    fn one_name_and_version_from_two_sources_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = package(&dir.path().join("a"), "twin", false, &[("LICENSE", "one")]);
        let mut git = package(&dir.path().join("b"), "twin", false, &[("LICENSE", "other")]);
        registry["id"] = serde_json::json!("registry+https://crates.io#twin@1.0.0");
        git["id"] = serde_json::json!("git+https://example.com/twin#twin@1.0.0");
        let meta: Metadata =
            serde_json::from_value(serde_json::json!({"packages": [registry, git], "resolve": {"root": null}}))
                .unwrap();
        let err = render(&meta, &parse_tree("twin v1.0.0\n").unwrap()).unwrap_err();
        assert!(err.contains("twin 1.0.0 comes from more than one source"), "{err}");
    }
}
