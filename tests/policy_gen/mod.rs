//! Policy documents for the pure property tests (`fuzz_pure.rs`, `policy_schema.rs`): the
//! recorded corpus, a generator of valid policies, and mutations of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use redis_retention::policy::clipped;
use redis_retention::policy::duration::{format_duration_ms, MAX_DURATION_MS};
use serde_json::{json, Map, Value};

/// Bounded runs: enough cases to find the usual mistakes in every `cargo test`, few enough
/// that the file stays at a few seconds. `FUZZ_SCALE=<n>` multiplies every count for a longer
/// search (`FUZZ_SCALE=100 cargo test --release --test fuzz_pure`). No failure files are
/// written into the tree: a failure's input is added to the corpus by hand, with its
/// regression test.
pub fn config(cases: u32) -> ProptestConfig {
    let scale: u32 = std::env::var("FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale.max(1)),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The `rules[k] ("name"): ` or `rules[k]: ` an error about rule `k` starts with.
pub fn rule_prefix(k: usize, rule: &Value) -> String {
    match rule.get("name").and_then(Value::as_str) {
        Some(n) => format!("rules[{k}] (\"{}\"): ", clipped(n)),
        None => format!("rules[{k}]: "),
    }
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// `tests/corpus/policies/<name>.json` with `<name>.expect`: `ok [<rules>]` or
/// `error <substring of the message>`.
pub fn policy_corpus() -> Vec<(String, String, String)> {
    let dir = corpus_dir().join("policies");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/corpus/policies") {
        let path = entry.expect("corpus entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("corpus policy");
        let expect = std::fs::read_to_string(path.with_extension("expect"))
            .unwrap_or_else(|_| panic!("{} has no .expect file", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, text, expect.trim_end_matches('\n').to_string()));
    }
    out.sort();
    out
}

pub const UNITS: [&str; 7] = ["ms", "s", "m", "h", "d", "w", ""];

/// A duration as a policy writes it, and its value in ms.
pub fn duration() -> impl Strategy<Value = (Value, i64)> {
    prop_oneof![
        (1i64..=5000, 0usize..UNITS.len()).prop_map(|(n, u)| {
            let unit_ms = [1, 1000, 60_000, 3_600_000, 86_400_000, 604_800_000, 1000][u];
            (json!(format!("{n}{}", UNITS[u])), n * unit_ms)
        }),
        (1u64..=1_000_000).prop_map(|s| (json!(s), s as i64 * 1000)),
        (1i64..=MAX_DURATION_MS).prop_map(|ms| (json!(format_duration_ms(ms)), ms)),
    ]
}

pub fn glob_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a",
        "b:",
        "*",
        "?",
        "[abc]",
        "[^x]",
        "[a-z]",
        "[z-a]",
        "\\*",
        "\\[",
        "\\\\",
        "é",
        "{w}",
        ":",
        "-",
        "]",
        "\u{0}",
        "runs:active:",
    ]);
    prop::collection::vec(pieces, 1..5).prop_map(|v| v.concat())
}

pub fn match_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => glob_text().prop_map(Value::String),
        1 => prop::collection::vec(glob_text().prop_map(Value::String), 1..4).prop_map(Value::Array),
    ]
}

pub fn key_type_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "string", "list", "set", "zset", "hash", "stream", "module",
    ])
}

pub fn put(obj: &mut Map<String, Value>, field: &str, value: Option<Value>) {
    if let Some(v) = value {
        obj.insert(field.to_string(), v);
    }
}

pub fn keep_rule() -> impl Strategy<Value = Map<String, Value>> {
    (
        match_value(),
        prop::option::of(key_type_name()),
        prop::option::of(duration()),
    )
        .prop_map(|(m, t, idle)| {
            let mut o = Map::new();
            o.insert("match".into(), m);
            o.insert("keep".into(), json!(true));
            put(&mut o, "type", t.map(|t| json!(t)));
            put(&mut o, "min_idle", idle.map(|d| d.0));
            o
        })
}

pub fn ttl_rule() -> impl Strategy<Value = Map<String, Value>> {
    (
        match_value(),
        prop::option::of(key_type_name()),
        duration(),
        prop::option::of(any::<bool>()),
        prop::option::of(0.0f64..1.0),
        prop::option::of("[ -~]{0,12}"),
    )
        .prop_map(|(m, t, (ttl, ttl_ms), cap, pressure, comment)| {
            let mut o = Map::new();
            o.insert("match".into(), m);
            o.insert("ttl".into(), ttl);
            put(&mut o, "type", t.map(|t| json!(t)));
            put(&mut o, "cap", cap.map(Value::Bool));
            put(&mut o, "comment", comment.map(Value::String));
            if let Some(f) = pressure.filter(|_| ttl_ms > 1) {
                let p_ms = 1 + ((ttl_ms - 1) as f64 * f) as i64;
                let p_ms = p_ms.clamp(1, ttl_ms - 1);
                o.insert(
                    "pressure".into(),
                    json!({ "ttl": format_duration_ms(p_ms) }),
                );
            }
            o
        })
}

pub const SIZE_UNITS: [&str; 11] = ["b", "k", "kb", "m", "mb", "g", "gb", "KB", "Mb", "G", ""];

/// A memory size as a policy writes it (any unit, any case, or a number of bytes).
pub fn size() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1u64..=5000, 0usize..SIZE_UNITS.len())
            .prop_map(|(n, u)| json!(format!("{n}{}", SIZE_UNITS[u]))),
        (1u64..=i64::MAX as u64).prop_map(|b| json!(b)),
        (1u64..=i64::MAX as u64).prop_map(|b| json!(b.to_string())),
    ]
}

pub fn count() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..10_000).prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n))
    ]
}

pub fn trim_rule() -> impl Strategy<Value = Map<String, Value>> {
    (
        match_value(),
        0usize..3,
        prop::option::of(count()),
        prop::option::of(duration()),
        any::<Option<bool>>(),
        any::<Option<bool>>(),
        prop::option::of(size()),
    )
        .prop_map(|(m, kind, max_len, max_age, flag, other, max_memory)| {
            let mut o = Map::new();
            o.insert("match".into(), m);
            let mut trim = Map::new();
            let key_type = ["stream", "list", "zset"][kind];
            o.insert("type".into(), json!(key_type));
            let max_len = match (&max_len, &max_age, &max_memory, key_type) {
                (None, None, None, _) | (None, Some(_), None, "list") => Some(json!(100)),
                _ => max_len,
            };
            put(&mut trim, "max_len", max_len);
            put(&mut trim, "max_memory", max_memory);
            if key_type != "list" {
                put(&mut trim, "max_age", max_age.map(|d| d.0));
            }
            match key_type {
                "stream" => put(&mut trim, "approx", flag.map(Value::Bool)),
                "list" => put(
                    &mut trim,
                    "newest",
                    flag.map(|head| json!(if head { "head" } else { "tail" })),
                ),
                _ => put(
                    &mut trim,
                    "score_unit",
                    other.map(|s| json!(if s { "s" } else { "ms" })),
                ),
            }
            o.insert("trim".into(), Value::Object(trim));
            o
        })
}

pub fn finished() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(
        (
            prop::option::of(duration()),
            prop::option::of(count()),
            prop::option::of(size()),
        )
            .prop_map(|(age, n, memory)| {
                let mut o = Map::new();
                match (age, n, memory) {
                    (None, None, None) => {
                        o.insert("max_len".into(), json!(500));
                    }
                    (age, n, memory) => {
                        put(&mut o, "max_age", age.map(|d| d.0));
                        put(&mut o, "max_len", n);
                        put(&mut o, "max_memory", memory);
                    }
                }
                Value::Object(o)
            }),
    )
}

/// A queue rule's `match`: `<prefix>:*`, sometimes as a one-item list.
fn queue_match() -> impl Strategy<Value = Value> {
    let prefix = prop::sample::select(vec!["bull", "jobs", "my:app", "b{x}", "é", "a]b"]);
    (prefix, any::<bool>()).prop_map(|(p, listed)| {
        let glob = json!(format!("{p}:*"));
        match listed {
            true => json!([glob]),
            false => glob,
        }
    })
}

pub fn queue_rule() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::sample::select(vec!["bullmq", "bull", "auto"]),
        queue_match(),
        finished(),
        finished(),
        prop::option::of((prop::option::of(count()), prop::option::of(duration()))),
        prop::option::of(duration()),
    )
        .prop_map(|(mq, selector, completed, failed, events, orphan)| {
            let mut q = Map::new();
            q.insert("flavor".into(), json!(mq));
            put(&mut q, "completed", completed);
            put(&mut q, "failed", failed);
            if let Some((len, age)) = events {
                let mut e = Map::new();
                let len = if len.is_none() && age.is_none() {
                    Some(json!(1000))
                } else {
                    len
                };
                put(&mut e, "max_len", len);
                put(&mut e, "max_age", age.map(|d| d.0));
                q.insert("events".into(), Value::Object(e));
            }
            put(&mut q, "orphan_age", orphan.map(|d| d.0));
            let mut o = Map::new();
            o.insert("match".into(), selector);
            o.insert("queue".into(), Value::Object(q));
            o
        })
}

pub fn runs_rule() -> impl Strategy<Value = Map<String, Value>> {
    (match_value(), prop::option::of(duration())).prop_map(|(m, age)| {
        let mut r = Map::new();
        put(&mut r, "max_age", age.map(|d| d.0));
        let mut o = Map::new();
        o.insert("match".into(), m);
        o.insert("runs".into(), Value::Object(r));
        o
    })
}

pub fn valid_rule() -> impl Strategy<Value = Map<String, Value>> {
    prop_oneof![
        keep_rule(),
        ttl_rule(),
        trim_rule(),
        queue_rule(),
        runs_rule()
    ]
}

/// Rule names start with `n<index>` (unique; never `rule-<n>`, the default names), with a
/// tail that tries quoting and non-ASCII; a rule without a name gets its default.
pub fn valid_policy() -> impl Strategy<Value = Value> {
    let tail = prop::sample::select(vec!["", "é", "\"q\"", " sp", "\\", "\n", ":x"]);
    prop::collection::vec((valid_rule(), prop::option::of(tail)), 0..6).prop_map(|rules| {
        let rules: Vec<Value> = rules
            .into_iter()
            .enumerate()
            .map(|(i, (mut rule, name))| {
                if let Some(tail) = name {
                    rule.insert("name".into(), json!(format!("n{i}{tail}")));
                }
                Value::Object(rule)
            })
            .collect();
        json!({ "rules": rules })
    })
}

/// Values a mutation puts somewhere: wrong types, edge numbers, odd strings. None of them
/// is a generated rule name (`n<index>…`) or a default one (`rule-<index>`).
pub fn nasty_value() -> impl Strategy<Value = Value> {
    let fixed = prop::sample::select(vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1),
        json!(1.5),
        json!(-0.0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e300),
        json!(""),
        json!("0"),
        json!("1h"),
        json!("-1h"),
        json!("0s"),
        json!("1y"),
        json!(" 5 m"),
        json!("99999999999999999999w"),
        json!("5200w"),
        json!("200mb"),
        json!("1GB"),
        json!("0kb"),
        json!("1.5mb"),
        json!("5tb"),
        json!("99999999999gb"),
        json!(" 5 mb"),
        json!("*"),
        json!("["),
        json!("[a-"),
        json!("[]"),
        json!("\\"),
        json!("head"),
        json!("tail"),
        json!("ms"),
        json!("s"),
        json!("bull"),
        json!("bullmq"),
        json!("b*"),
        json!("bull:*"),
        json!("b*:*"),
        json!("stream"),
        json!("list"),
        json!("zset"),
        json!("hash"),
        json!("string"),
        json!("\u{0}"),
        json!("\u{feff}"),
        json!([]),
        json!([""]),
        json!(["*", 1]),
        json!({}),
        json!({"max_len": 1}),
        json!({"max_age": "1d"}),
        json!({"max_memory": "1mb"}),
        json!({"ttl": "1h"}),
        json!({"match": "x", "max_age": "1h"}),
        json!({"flavor": "bull"}),
    ]);
    prop_oneof![4 => fixed, 1 => arbitrary_json()]
}

/// Any JSON value, a few levels deep.
pub fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "\\PC{0,8}".prop_map(Value::String),
        prop::sample::select(vec!["1h", "*", "ttl", "keep", "stream", "bull"])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(FIELD_NAMES.to_vec()).prop_map(str::to_string),
            "\\PC{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Every field name the policy format knows, and a few it does not (among them the
/// `prefix` and `max_count` of older formats).
pub const FIELD_NAMES: [&str; 29] = [
    "rules",
    "name",
    "match",
    "type",
    "keep",
    "ttl",
    "cap",
    "trim",
    "queue",
    "runs",
    "min_idle",
    "pressure",
    "comment",
    "max_len",
    "max_age",
    "max_memory",
    "approx",
    "newest",
    "score_unit",
    "flavor",
    "prefix",
    "completed",
    "failed",
    "events",
    "orphan_age",
    "max_len",
    "colour",
    "extra",
    "Ttl",
];

/// A step into a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    At(usize),
}

pub fn all_paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(Step::Key(k.clone()));
                all_paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Step::At(i));
                all_paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

pub fn at_path<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::At(i) => &mut v[*i],
    })
}

#[derive(Debug, Clone)]
pub enum Mutation {
    Replace(Value),
    Remove,
    AddField(&'static str, Value),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => nasty_value().prop_map(Mutation::Replace),
        1 => Just(Mutation::Remove),
        2 => (prop::sample::select(FIELD_NAMES.to_vec()), nasty_value())
            .prop_map(|(k, v)| Mutation::AddField(k, v)),
    ]
}

/// Applies `m` at `path`; returns false when it does not apply there (nothing changed).
pub fn apply(doc: &mut Value, path: &[Step], m: &Mutation) -> bool {
    match m {
        Mutation::Replace(v) => {
            *at_path(doc, path) = v.clone();
            true
        }
        Mutation::Remove => match path.split_last() {
            None => false,
            Some((last, parent)) => match (at_path(doc, parent), last) {
                (Value::Object(o), Step::Key(k)) => o.remove(k).is_some(),
                (Value::Array(a), Step::At(i)) => {
                    a.remove(*i);
                    true
                }
                _ => false,
            },
        },
        Mutation::AddField(k, v) => match at_path(doc, path) {
            Value::Object(o) => {
                o.insert(k.to_string(), v.clone());
                true
            }
            _ => false,
        },
    }
}

/// `doc` with `m` applied at the path `at` picks; a mutation that does not apply there
/// (removing the root, adding a field to a string) becomes a replacement by null. Returns
/// the mutated document, the path and the mutation that was applied.
pub fn mutate(
    doc: &Value,
    at: &proptest::sample::Index,
    m: Mutation,
) -> (Value, Vec<Step>, Mutation) {
    let mut paths = Vec::new();
    all_paths(doc, &mut Vec::new(), &mut paths);
    let path = at.get(&paths).clone();
    let mut mutated = doc.clone();
    if apply(&mut mutated, &path, &m) {
        return (mutated, path, m);
    }
    let null = Mutation::Replace(Value::Null);
    apply(&mut mutated, &path, &null);
    (mutated, path, null)
}
