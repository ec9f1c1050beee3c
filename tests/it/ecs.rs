//! Validation of emitted documents against the ECS 9.4 field definitions
//! (`tests/data/ecs/ecs_flat.yml`, Elastic's generated file, unmodified): every field exists,
//! has its type, uses allowed values, and each event.type is expected for its category.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

struct Field {
    kind: String,
    array: bool,
    allowed: Option<Vec<String>>,
}

struct Schema {
    fields: HashMap<String, Field>,
    expected_types: HashMap<String, Vec<String>>,
}

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ecs/ecs_flat.yml");
        let text = std::fs::read_to_string(path).expect("ecs_flat.yml");
        let yaml: serde_yaml::Mapping = serde_yaml::from_str(&text).expect("ecs_flat.yml parses");
        let mut fields = HashMap::new();
        let mut expected_types = HashMap::new();
        for (name, def) in yaml {
            let name = name.as_str().unwrap().to_string();
            let kind = def["type"].as_str().unwrap_or("").to_string();
            let array = def["normalize"]
                .as_sequence()
                .is_some_and(|n| n.iter().any(|v| v.as_str() == Some("array")));
            let allowed = def.get("allowed_values").and_then(|a| a.as_sequence()).map(|vals| {
                vals.iter()
                    .map(|v| {
                        let n = v["name"].as_str().unwrap().to_string();
                        if name == "event.category" {
                            let types = v
                                .get("expected_event_types")
                                .and_then(|t| t.as_sequence())
                                .map(|t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                                .unwrap_or_default();
                            expected_types.insert(n.clone(), types);
                        }
                        n
                    })
                    .collect()
            });
            fields.insert(name, Field { kind, array, allowed });
        }
        Schema { fields, expected_types }
    })
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn check_scalar(name: &str, kind: &str, v: &Value) {
    let ok = match kind {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => v.is_string(),
        "long" | "integer" | "short" | "byte" | "unsigned_long" => v.is_i64() || v.is_u64(),
        "float" | "double" | "scaled_float" | "half_float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "date" => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        "ip" => v.as_str().is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        other => panic!("field {name}: type {other} not handled by the validator"),
    };
    assert!(ok, "field {name} = {v} is not a valid ECS {kind}");
}

/// Panic with the reason unless `doc` is a valid ECS 9.4 document.
pub fn validate(doc: &Value) {
    let s = schema();
    let mut flat = Vec::new();
    flatten("", doc, &mut flat);
    assert!(!flat.is_empty());
    for (name, value) in &flat {
        if name.starts_with("senhasegura.") {
            continue;
        }
        let field = s
            .fields
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not an ECS 9.4 field"));
        let values: Vec<&Value> = match value {
            Value::Array(items) => {
                assert!(!items.is_empty(), "{name} is an empty array");
                items.iter().collect()
            }
            v => {
                assert!(!field.array, "{name} must be an array");
                vec![v]
            }
        };
        for v in values {
            check_scalar(name, &field.kind, v);
            if let Some(allowed) = &field.allowed {
                let text = v.as_str().unwrap();
                assert!(
                    allowed.iter().any(|a| a == text),
                    "{name} = {text} is not an allowed value"
                );
            }
        }
    }
    let categories = doc["event"]["category"].as_array().expect("event.category");
    for t in doc["event"]["type"].as_array().expect("event.type") {
        for c in categories {
            let expected = &s.expected_types[c.as_str().unwrap()];
            assert!(
                expected.iter().any(|e| Some(e.as_str()) == t.as_str()),
                "event.type {t} is not expected for category {c}"
            );
        }
    }
}

#[test]
fn validator_rejects_what_ecs_does_not_allow() {
    let good = serde_json::json!({"@timestamp": "2024-05-06T19:07:59Z", "event": {"kind": "event", "category": ["session"], "type": ["start"]}});
    validate(&good);
    let bad_cases = [
        serde_json::json!({"event": {"kind": "event", "category": ["session"], "type": ["creation"]}}),
        serde_json::json!({"event": {"kind": "evnt", "category": ["session"], "type": ["start"]}}),
        serde_json::json!({"event": {"kind": "event", "category": ["session"], "type": ["start"]}, "destination": {"port": "22"}}),
        serde_json::json!({"event": {"kind": "event", "category": ["session"], "type": ["start"]}, "source": {"ip": "host"}}),
        serde_json::json!({"event": {"kind": "event", "category": ["session"], "type": ["start"]}, "foo": {"bar": 1}}),
        serde_json::json!({"event": {"kind": "event", "category": "session", "type": ["start"]}}),
    ];
    for bad in bad_cases {
        assert!(std::panic::catch_unwind(|| validate(&bad)).is_err(), "accepted {bad}");
    }
}
