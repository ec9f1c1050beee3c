//! The documentation's snippets are real: every JSON block in docs/ and the README parses,
//! every YAML block parses.

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
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut json = 0;
    for file in ["docs/siem.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
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
