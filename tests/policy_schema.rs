//! `docs/policy.schema.json` against the module's own policy parser (no server): every
//! policy the module accepts validates; every policy it refuses is refused by the schema too,
//! at the JSON path the module's error names, unless the rule is one a schema cannot state
//! (a duplicate name, a glob Redis would read oddly, a duration past 100 years, ...).

mod policy_gen;

use std::path::Path;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use policy_gen::*;
use redis_retention::policy::{clipped, parse_policy};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_json() -> Value {
    let text = std::fs::read_to_string(root().join("docs/policy.schema.json"))
        .expect("docs/policy.schema.json");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(&schema_json()).expect("the schema compiles (draft 2020-12)")
    })
}

/// Escapes one JSON-pointer segment (RFC 6901).
fn segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointers the schema's errors name: where each error is, and for a missing or an
/// unexpected property, that property's own path (where the module's message points).
fn schema_pointers(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for error in validator().iter_errors(doc) {
        let at = error.instance_path().as_str().to_string();
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                out.push(format!("{at}/{}", segment(name)));
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                out.extend(unexpected.iter().map(|p| format!("{at}/{}", segment(p))));
            }
            _ => {}
        }
        out.push(at);
    }
    out
}

/// The module's path text (`queue.completed.max_len`, `match[1]`) as a JSON pointer below
/// `base`.
fn path_text_to_pointer(base: &str, text: &str) -> String {
    let mut pointer = base.to_string();
    for part in text.split('.') {
        let (field, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(f, rest)| (f, rest));
        pointer.push('/');
        pointer.push_str(&segment(field));
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            pointer.push('/');
            pointer.push_str(index.trim_end_matches(']'));
        }
    }
    pointer
}

/// Where the module's error says the mistake is, as a JSON pointer into `doc`: the error
/// starts with `rules[k] ("name"): <path>: ` (or `rule ...` for the rule as a whole), or a
/// top-level field. None for an error about the text itself (JSON syntax, a key given twice).
fn module_pointer(doc: &Value, message: &str) -> Option<String> {
    if message.starts_with("line ") {
        return None;
    }
    if let Some(after) = message.strip_prefix("rules[") {
        let k: usize = after.split(']').next()?.parse().ok()?;
        let rest = message.strip_prefix(&rule_prefix(k, &doc["rules"][k]))?;
        let base = format!("/rules/{k}");
        if rest.starts_with("rule has ") || rest.starts_with("rule: ") {
            return Some(base);
        }
        return Some(pointer_in(doc, &base, rest));
    }
    if message.starts_with("missing \"rules\"") || message.starts_with("\"rules\" must be") {
        return Some("/rules".into());
    }
    if message.starts_with("(top level): ") {
        return Some(String::new());
    }
    Some(pointer_in(doc, "", message))
}

/// The pointer of the path that `rest` (an error about the value at `base`) starts with. An
/// unknown field's name may hold '.', '[' or ": ": it is found among the keys of its object.
fn pointer_in(doc: &Value, base: &str, rest: &str) -> String {
    if let Some((path, _)) = rest.rsplit_once(": unknown field (allowed here: ") {
        let parents = std::iter::once("").chain(path.match_indices('.').map(|(i, _)| &path[..i]));
        for parent in parents {
            let (object, name) = match parent {
                "" => (base.to_string(), path),
                _ => (
                    path_text_to_pointer(base, parent),
                    &path[parent.len() + 1..],
                ),
            };
            let found = doc
                .pointer(&object)
                .and_then(Value::as_object)
                .and_then(|o| o.keys().find(|k| clipped(k) == name));
            if let Some(key) = found {
                return format!("{object}/{}", segment(key));
            }
        }
    }
    path_text_to_pointer(base, rest.split(": ").next().unwrap_or(rest))
}

/// Refusals a JSON Schema cannot state: the schema may accept these documents.
fn beyond_the_schema(doc: &Value, message: &str) -> bool {
    const REASONS: [&str; 6] = [
        "duplicate rule name",
        "must be shorter than the rule's ttl",
        "bad glob",
        "longer than 100 years",
        "number too large",
        "invalid JSON",
    ];
    if REASONS.iter().any(|r| message.contains(r)) {
        return true;
    }
    // 5.0 is an integer to JSON Schema, not to the module (it wants 5).
    module_pointer(doc, message)
        .and_then(|p| doc.pointer(&p))
        .is_some_and(|v| v.as_f64().is_some_and(|f| f.fract() == 0.0) && v.as_u64().is_none())
}

/// The verdicts of the module and the schema on one document agree: both accept, or both
/// refuse at the same place, or the module refuses for a reason beyond the schema.
fn assert_same_verdict(doc: &Value, what: &str) {
    let module = parse_policy(&doc.to_string());
    let pointers = schema_pointers(doc);
    match module {
        Ok(_) => assert!(
            pointers.is_empty(),
            "{what}: the module accepts it, the schema refuses it at {pointers:?}\n{doc}"
        ),
        Err(e) if pointers.is_empty() => assert!(
            beyond_the_schema(doc, &e.message),
            "{what}: the module refuses it ({}), the schema accepts it\n{doc}",
            e.message
        ),
        Err(e) => {
            if beyond_the_schema(doc, &e.message) {
                return;
            }
            let at = module_pointer(doc, &e.message)
                .unwrap_or_else(|| panic!("{what}: no path in {:?}", e.message));
            assert!(
                pointers.contains(&at),
                "{what}: the module refuses it at {at} ({}), the schema at {pointers:?}\n{doc}",
                e.message
            );
        }
    }
}

#[test]
fn the_schema_is_a_draft_2020_12_schema() {
    let schema = schema_json();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::meta::validate(&schema).expect("valid against the 2020-12 meta-schema");
    // Editors show descriptions: every field of a rule has one.
    let rule = &schema["$defs"]["rule"]["properties"];
    for (field, def) in rule.as_object().expect("rule properties") {
        let described = def.get("description").is_some()
            || def
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| schema.pointer(r.trim_start_matches('#')))
                .is_some_and(|target| target.get("description").is_some());
        assert!(described, "rule field {field} has no description");
    }
}

#[test]
fn the_example_policy_validates() {
    let text = std::fs::read_to_string(root().join("examples/policy.json")).expect("example");
    let doc: Value = serde_json::from_str(&text).expect("example is JSON");
    parse_policy(&text).expect("the module accepts the example");
    assert_eq!(schema_pointers(&doc), Vec::<String>::new());
}

/// The ```json blocks of a Markdown file that are whole policies, or rules (one or several,
/// comma-separated) shown as a policy's `rules` would hold them, as policies, with their line
/// numbers.
fn policy_blocks(text: &str) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```json") => open = Some((i + 2, String::new())),
            Some(_) if fence.starts_with("```") => {
                let (at, block) = open.take().expect("open block");
                if let Some(policy) = as_policy(&block) {
                    out.push((at, policy));
                }
            }
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

fn as_policy(block: &str) -> Option<Value> {
    if let Ok(whole) = serde_json::from_str::<Value>(block) {
        if whole.get("rules").is_some() {
            return Some(whole);
        }
    }
    let rules: Vec<Value> = serde_json::from_str(&format!("[{block}]")).ok()?;
    let is_rule = |r: &Value| {
        ["keep", "ttl", "trim", "queue", "runs"]
            .iter()
            .any(|action| r.get(action).is_some())
    };
    rules.iter().all(is_rule).then(|| json!({ "rules": rules }))
}

#[test]
fn policies_shown_in_the_readme_and_docs_validate() {
    let mut files = vec![root().join("README.md")];
    let docs = std::fs::read_dir(root().join("docs")).expect("docs/");
    files.extend(
        docs.filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    files.sort();
    let mut wrong = Vec::new();
    let mut seen = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("markdown file");
        let shown = file.strip_prefix(root()).unwrap_or(file).display();
        for (line, doc) in policy_blocks(&text) {
            seen += 1;
            let module = parse_policy(&doc.to_string()).err().map(|e| e.message);
            let schema = schema_pointers(&doc);
            if module.is_some() || !schema.is_empty() {
                wrong.push(format!(
                    "{shown}:{line}: module: {}; schema errors at: {schema:?}",
                    module.as_deref().unwrap_or("accepted")
                ));
            }
        }
    }
    assert!(
        seen > 0,
        "no ```json policy or rule block in README.md or docs/"
    );
    assert!(
        wrong.is_empty(),
        "policies in the docs that do not load or do not validate:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn every_corpus_policy_gets_the_same_verdict_from_the_schema() {
    let corpus = policy_corpus();
    let mut compared = 0;
    for (name, text, expect) in corpus {
        // The schema sees the JSON value; a byte-order mark belongs to the file's encoding.
        let Ok(doc) = serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')) else {
            assert!(expect.starts_with("error"), "{name}: not JSON but {expect}");
            continue;
        };
        assert_same_verdict(&doc, &name);
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} corpus policies compared");
}

/// Typical mistakes, each refused by both at the path the module names.
#[test]
fn typical_mistakes_are_refused_by_both_at_the_same_path() {
    let ok = json!({"rules": [
        {"name": "t", "match": "s:*", "ttl": "1h"},
        {"name": "s", "match": "s:*", "type": "stream", "trim": {"max_len": 10, "approx": true}},
        {"name": "q", "match": "bull:*", "queue": {"flavor": "bullmq", "completed": {"max_len": 5}}},
        {"name": "r", "match": "runs:*", "runs": {"max_age": "3h"}}
    ]});
    assert_same_verdict(&ok, "the base policy");
    let mistakes: &[(&str, &str, Value)] = &[
        ("unknown field", "/rules/0/colour", json!(1)),
        ("unknown trim field", "/rules/1/trim/keep", json!("tail")),
        ("old queue prefix", "/rules/2/queue/prefix", json!("bull")),
        (
            "old finished count",
            "/rules/2/queue/completed/max_count",
            json!(5),
        ),
        ("old runs match", "/rules/3/runs/match", json!("runs:*")),
        ("wrong type of ttl", "/rules/0/ttl", json!(true)),
        ("negative count", "/rules/1/trim/max_len", json!(-1)),
        ("fractional duration", "/rules/0/ttl", json!(1.5)),
        ("zero duration", "/rules/0/ttl", json!("0h")),
        ("second action", "/rules/0/keep", json!(true)),
        ("bad enum flavor", "/rules/2/queue/flavor", json!("celery")),
        ("bad enum type", "/rules/0/type", json!("blob")),
        ("bad enum newest", "/rules/1/trim/newest", json!("middle")),
        (
            "queue match not a prefix",
            "/rules/2/match",
            json!("bull:*:x"),
        ),
        ("queue match glob prefix", "/rules/2/match", json!("b?ll:*")),
        (
            "queue match two prefixes",
            "/rules/2/match",
            json!(["a:*", "b:*"]),
        ),
        ("type on a queue rule", "/rules/2/type", json!("hash")),
        ("type on a runs rule", "/rules/3/type", json!("zset")),
        ("trim of a hash", "/rules/1/type", json!("hash")),
        ("cap on a trim rule", "/rules/1/cap", json!(true)),
        (
            "pressure on a queue rule",
            "/rules/2/pressure",
            json!({"ttl": "1m"}),
        ),
        ("keep false", "/rules/0/keep", json!(false)),
        ("empty match list", "/rules/0/match", json!([])),
        ("empty name", "/rules/0/name", json!("")),
        ("zero size", "/rules/1/trim/max_memory", json!("0mb")),
        ("negative size", "/rules/1/trim/max_memory", json!(-1)),
        ("fractional size", "/rules/1/trim/max_memory", json!(1.5)),
        (
            "fraction in a size",
            "/rules/1/trim/max_memory",
            json!("1.5mb"),
        ),
        (
            "unknown size unit",
            "/rules/1/trim/max_memory",
            json!("5tb"),
        ),
        (
            "size of the wrong type",
            "/rules/1/trim/max_memory",
            json!(true),
        ),
        (
            "zero finished size",
            "/rules/2/queue/completed/max_memory",
            json!(0),
        ),
        (
            "memory of events",
            "/rules/2/queue/events",
            json!({"max_memory": "1mb"}),
        ),
    ];
    for (what, at, value) in mistakes {
        let mut doc = ok.clone();
        let (parent, field) = at.rsplit_once('/').expect("pointer");
        doc.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("parent object")
            .insert(field.to_string(), value.clone());
        assert!(parse_policy(&doc.to_string()).is_err(), "{what}: accepted");
        assert!(!schema_pointers(&doc).is_empty(), "{what}: schema accepts");
        assert_same_verdict(&doc, what);
    }
    for (what, at) in [
        ("no action", "/rules/0/ttl"),
        ("no match", "/rules/0/match"),
        ("no trim type", "/rules/1/type"),
        ("no trim limit", "/rules/1/trim/max_len"),
        ("no flavor", "/rules/2/queue/flavor"),
        ("no queue match", "/rules/2/match"),
        ("no runs match", "/rules/3/match"),
    ] {
        let mut doc = ok.clone();
        let (parent, field) = at.rsplit_once('/').expect("pointer");
        doc.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("parent object")
            .remove(field);
        assert!(parse_policy(&doc.to_string()).is_err(), "{what}: accepted");
        assert!(!schema_pointers(&doc).is_empty(), "{what}: schema accepts");
        assert_same_verdict(&doc, what);
    }
}

#[test]
fn the_module_path_maps_to_a_json_pointer() {
    let doc = json!({"rules": [{"name": "a/b", "trim": {"k.a: b": 1}}, {}], "x.y": 1});
    let cases = [
        (
            "rules[0] (\"a/b\"): queue.completed.max_len: must be",
            "/rules/0/queue/completed/max_len",
        ),
        ("rules[1]: match[2]: must be a string", "/rules/1/match/2"),
        ("rules[1]: rule has no action: give one", "/rules/1"),
        (
            "rules[0] (\"a/b\"): trim.k.a: b: unknown field (allowed here: max_len)",
            "/rules/0/trim/k.a: b",
        ),
        ("missing \"rules\": the policy is", "/rules"),
        ("x: unknown field (allowed here: rules)", "/x"),
        ("x.y: unknown field (allowed here: rules)", "/x.y"),
    ];
    for (message, pointer) in cases {
        assert_eq!(
            module_pointer(&doc, message).as_deref(),
            Some(pointer),
            "{message}"
        );
    }
    assert_eq!(module_pointer(&doc, "line 1, column 2: invalid JSON"), None);
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn generated_policies_validate(doc in valid_policy()) {
        parse_policy(&doc.to_string()).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        let pointers = schema_pointers(&doc);
        prop_assert!(pointers.is_empty(), "schema refuses at {:?}\n{}", pointers, doc);
    }

    #[test]
    fn mutated_policies_get_the_same_verdict(
        doc in valid_policy(),
        at in any::<Index>(),
        m in mutation(),
    ) {
        let (mutated, _, _) = mutate(&doc, &at, m);
        assert_same_verdict(&mutated, "mutated policy");
    }
}
