//! `Policy` → normalized JSON, as shown by `RETENTION.POLICY` (and parseable again).

use serde_json::{json, Map, Value};

use super::duration::format_duration_ms;
use super::size::format_size_bytes;
use super::*;

pub fn policy_to_json(policy: &Policy) -> Value {
    json!({ "rules": policy.rules.iter().map(rule_to_json).collect::<Vec<_>>() })
}

fn globs_json(globs: &[Glob]) -> Value {
    let patterns: Vec<Value> = globs
        .iter()
        .map(|g| Value::String(String::from_utf8_lossy(g.pattern()).into_owned()))
        .collect();
    match patterns.as_slice() {
        [one] => one.clone(),
        _ => Value::Array(patterns),
    }
}

/// Every kind of rule selects with the top-level `match`; a queue rule's is `<prefix>:*`.
fn selector_json(selector: &Selector) -> Value {
    match selector {
        Selector::Globs(globs) | Selector::RunBases(globs) => globs_json(globs),
        Selector::Prefix(prefix) => Value::String(format!("{}*", String::from_utf8_lossy(prefix))),
    }
}

fn dur(ms: i64) -> Value {
    Value::String(format_duration_ms(ms))
}

fn size(bytes: u64) -> Value {
    Value::String(format_size_bytes(bytes))
}

/// Inserts `field` only when the value is present.
fn put<T>(obj: &mut Map<String, Value>, field: &str, value: Option<T>, f: impl Fn(T) -> Value) {
    if let Some(v) = value {
        obj.insert(field.to_string(), f(v));
    }
}

fn rule_to_json(rule: &Rule) -> Value {
    let mut obj = Map::new();
    obj.insert("name".into(), Value::String(rule.name.clone()));
    obj.insert("match".into(), selector_json(&rule.selector));
    put(&mut obj, "type", rule.key_type, |t| json!(t.name()));
    match &rule.action {
        Action::Keep => {
            obj.insert("keep".into(), Value::Bool(true));
        }
        Action::Ttl(t) => {
            obj.insert("ttl".into(), dur(t.ttl_ms));
            if t.cap {
                obj.insert("cap".into(), Value::Bool(true));
            }
        }
        Action::Trim(t) => {
            obj.insert("trim".into(), trim_json(t, rule.key_type));
        }
        Action::Queue(q) => {
            obj.insert("queue".into(), queue_json(q));
        }
        Action::Runs(r) => {
            obj.insert("runs".into(), json!({ "max_age": dur(r.max_age_ms) }));
        }
    }
    put(&mut obj, "min_idle", rule.min_idle_ms, dur);
    if let Some(p) = &rule.pressure {
        let mut po = Map::new();
        put(&mut po, "ttl", p.ttl_ms, dur);
        obj.insert("pressure".into(), Value::Object(po));
    }
    Value::Object(obj)
}

fn trim_json(t: &TrimAction, key_type: Option<KeyType>) -> Value {
    let mut obj = Map::new();
    put(&mut obj, "max_len", t.max_len, |n| json!(n));
    put(&mut obj, "max_age", t.max_age_ms, dur);
    put(&mut obj, "max_memory", t.max_memory_bytes, size);
    match key_type {
        Some(KeyType::Stream) => {
            obj.insert("approx".into(), Value::Bool(t.approx));
        }
        Some(KeyType::List) => {
            let newest = match t.newest {
                ListEnd::Head => "head",
                ListEnd::Tail => "tail",
            };
            obj.insert("newest".into(), json!(newest));
        }
        Some(KeyType::ZSet) => {
            let unit = if t.score_unit == ScoreUnit::Seconds {
                "s"
            } else {
                "ms"
            };
            obj.insert("score_unit".into(), json!(unit));
        }
        _ => {}
    }
    Value::Object(obj)
}

fn finished_json(r: &FinishedRetention) -> Value {
    let mut obj = Map::new();
    put(&mut obj, "max_age", r.max_age_ms, dur);
    put(&mut obj, "max_len", r.max_len, |n| json!(n));
    put(&mut obj, "max_memory", r.max_memory_bytes, size);
    Value::Object(obj)
}

fn queue_json(q: &QueueAction) -> Value {
    let mut obj = Map::new();
    obj.insert("flavor".into(), json!(q.flavor.name()));
    put(&mut obj, "completed", q.completed.as_ref(), finished_json);
    put(&mut obj, "failed", q.failed.as_ref(), finished_json);
    put(&mut obj, "events", q.events.as_ref(), |e| {
        let mut eo = Map::new();
        put(&mut eo, "max_len", e.max_len, |n| json!(n));
        put(&mut eo, "max_age", e.max_age_ms, dur);
        Value::Object(eo)
    });
    obj.insert("orphan_age".into(), dur(q.orphan_age_ms));
    Value::Object(obj)
}
