//! JSON policy → typed `Policy`, with errors that name the rule and the JSON path.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use super::clipped;
use super::duration::parse_duration_ms;
use super::size::parse_size_bytes;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

type Parsed<T> = Result<T, String>;

/// Parses and validates a policy document.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    // Editors on Windows save UTF-8 with a byte-order mark; JSON parsers refuse it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json_error = |e: serde_json::Error| PolicyError {
        message: format!(
            "line {}, column {}: invalid JSON: {}",
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        ),
    };
    // serde_json keeps the last of two equal keys: `{"ttl":"1d", ..., "ttl":"1h"}` would
    // silently mean 1h. Refused, with the position of the second.
    serde_json::from_str::<NoDuplicateKeys>(text).map_err(json_error)?;
    let doc: Value = serde_json::from_str(text).map_err(json_error)?;
    parse_document(&doc).map_err(|message| PolicyError { message })
}

/// A walk of a JSON document that fails on an object with a key given twice.
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "\"{}\" given twice in one object",
                    clipped(&key)
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}

/// serde_json appends " at line L column C"; the position is already given up front.
fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

fn parse_document(doc: &Value) -> Parsed<Policy> {
    let top = object(doc, "(top level)")?;
    // `$schema` tells editors where docs/policy.schema.json is; the module has no use for it.
    reject_unknown(top, &["rules", "$schema"], "")?;
    let rules_value = top
        .get("rules")
        .ok_or("missing \"rules\": the policy is {\"rules\": [ ... ]}")?;
    let rules_json = rules_value
        .as_array()
        .ok_or("\"rules\" must be an array of rule objects")?;
    let mut rules: Vec<Rule> = Vec::with_capacity(rules_json.len());
    // Name → index of its rule: a linear scan per rule made a 100k-rule file take ~20 s
    // (5·10⁹ name comparisons) while the server waited on RELOAD or CONFIG SET.
    let mut first_use: HashMap<String, usize> = HashMap::with_capacity(rules_json.len());
    for (i, rule_json) in rules_json.iter().enumerate() {
        let rule = parse_rule(rule_json, i).map_err(|e| {
            let name = rule_json.get("name").and_then(Value::as_str);
            match name {
                Some(n) => format!("rules[{i}] (\"{}\"): {e}", clipped(n)),
                None => format!("rules[{i}]: {e}"),
            }
        })?;
        if let Some(first) = first_use.insert(rule.name.clone(), i) {
            return Err(format!(
                "rules[{i}] (\"{}\"): name: duplicate rule name (also rules[{first}])",
                clipped(&rule.name)
            ));
        }
        rules.push(rule);
    }
    Ok(Policy::new(rules))
}

const RULE_FIELDS: [&str; 12] = [
    "name", "match", "type", "keep", "ttl", "cap", "trim", "queue", "runs", "min_idle", "pressure",
    "comment",
];
const ACTIONS: [&str; 5] = ["keep", "ttl", "trim", "queue", "runs"];

fn parse_rule(v: &Value, index: usize) -> Parsed<Rule> {
    let obj = object(v, "rule")?;
    reject_unknown(obj, &RULE_FIELDS, "")?;
    let name = match obj.get("name") {
        None => format!("rule-{index}"),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("name: must be a non-empty string".into()),
    };
    let present: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| obj.contains_key(*a))
        .collect();
    let action_name =
        match present.as_slice() {
            [one] => *one,
            [] => return Err(
                "rule has no action: give one of \"keep\", \"ttl\", \"trim\", \"queue\", \"runs\""
                    .into(),
            ),
            many => {
                return Err(format!(
                    "rule has several actions ({}): give exactly one",
                    many.join(", ")
                ))
            }
        };
    if obj.contains_key("cap") && action_name != "ttl" {
        return Err("cap: only applies to a \"ttl\" rule".into());
    }
    let key_type = obj
        .get("type")
        .map(|t| parse_key_type(t).map_err(|e| format!("type: {e}")))
        .transpose()?;
    let min_idle_ms = optional_duration(obj, "min_idle", "min_idle")?;
    let (selector, action) = match action_name {
        "keep" => {
            if obj.get("keep") != Some(&Value::Bool(true)) {
                return Err("keep: must be true (remove the rule to stop protecting keys)".into());
            }
            (globs_selector(obj)?, Action::Keep)
        }
        "ttl" => {
            let ttl_ms = duration(&obj["ttl"], "ttl")?;
            let cap = optional_bool(obj, "cap", "cap")?.unwrap_or(false);
            (globs_selector(obj)?, Action::Ttl(TtlAction { ttl_ms, cap }))
        }
        "trim" => {
            let key_type = key_type.ok_or(
                "type: missing: a trim rule needs \"type\": \"stream\", \"list\" or \"zset\" (trimming depends on the type)",
            )?;
            (
                globs_selector(obj)?,
                Action::Trim(parse_trim(&obj["trim"], key_type)?),
            )
        }
        "queue" => {
            forbid(
                obj,
                "type",
                "a queue rule governs keys of every type under its prefix",
            )?;
            let prefix = queue_prefix(obj)?;
            let queue = parse_queue(&obj["queue"], prefix)?;
            let mut selected = queue.prefix.clone().into_bytes();
            selected.push(b':');
            (Selector::Prefix(selected), Action::Queue(queue))
        }
        "runs" => {
            forbid(
                obj,
                "type",
                "a runs rule governs the :index zset and :data hash of each base",
            )?;
            let bases = obj.get("match").ok_or(
                "match: missing: give a glob of run-set base names such as \"runs:active:*\"",
            )?;
            let bases = parse_globs(bases, "match")?;
            (
                Selector::RunBases(bases),
                Action::Runs(parse_runs(&obj["runs"])?),
            )
        }
        _ => unreachable!("action names come from ACTIONS"),
    };
    let pressure = obj
        .get("pressure")
        .map(|p| parse_pressure(p, &action))
        .transpose()?;
    Ok(Rule {
        name,
        selector,
        key_type,
        min_idle_ms,
        action,
        pressure,
    })
}

fn forbid(obj: &Map<String, Value>, field: &str, why: &str) -> Parsed<()> {
    match obj.contains_key(field) {
        true => Err(format!("{field}: not allowed here: {why}")),
        false => Ok(()),
    }
}

fn parse_key_type(v: &Value) -> Parsed<KeyType> {
    let name = v.as_str().ok_or("must be a string")?;
    KeyType::from_name(name).ok_or_else(|| {
        format!(
            "unknown type '{}' (use string|list|set|zset|hash|stream|module)",
            clipped(name)
        )
    })
}

fn globs_selector(obj: &Map<String, Value>) -> Parsed<Selector> {
    let v = obj
        .get("match")
        .ok_or("match: missing: give a glob such as \"celery-task-meta-*\" or a list of them")?;
    Ok(Selector::Globs(parse_globs(v, "match")?))
}

fn parse_globs(v: &Value, path: &str) -> Parsed<Vec<Glob>> {
    let patterns: Vec<(String, &Value)> = match v {
        Value::String(_) => vec![(path.to_string(), v)],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{path}[{i}]"), item))
            .collect(),
        Value::Array(_) => return Err(format!("{path}: empty list of globs")),
        _ => return Err(format!("{path}: must be a glob string or a list of them")),
    };
    patterns
        .into_iter()
        .map(|(p, item)| {
            let text = item
                .as_str()
                .ok_or_else(|| format!("{p}: must be a string"))?;
            Glob::new(text.as_bytes())
                .map_err(|e| format!("{p}: bad glob '{}': {e}", clipped(text)))
        })
        .collect()
}

fn parse_trim(v: &Value, key_type: KeyType) -> Parsed<TrimAction> {
    if !matches!(key_type, KeyType::Stream | KeyType::List | KeyType::ZSet) {
        return Err(format!(
            "type: \"{}\" cannot be trimmed (a trim rule is for stream, list or zset)",
            key_type.name()
        ));
    }
    let obj = object(v, "trim")?;
    reject_unknown(
        obj,
        &[
            "max_len",
            "max_age",
            "max_memory",
            "approx",
            "newest",
            "score_unit",
        ],
        "trim.",
    )?;
    let max_len = optional_count(obj, "max_len", "trim.max_len")?;
    let max_age_ms = optional_duration(obj, "max_age", "trim.max_age")?;
    let max_memory_bytes = optional_size(obj, "max_memory", "trim.max_memory")?;
    if max_len.is_none() && max_age_ms.is_none() && max_memory_bytes.is_none() {
        return Err("trim: give \"max_len\", \"max_age\" and/or \"max_memory\"".into());
    }
    let only_for = |field: &str, allowed: KeyType| -> Parsed<()> {
        match obj.contains_key(field) && key_type != allowed {
            true => Err(format!(
                "trim.{field}: only applies to type \"{}\" (this rule is \"{}\")",
                allowed.name(),
                key_type.name()
            )),
            false => Ok(()),
        }
    };
    only_for("approx", KeyType::Stream)?;
    only_for("newest", KeyType::List)?;
    only_for("score_unit", KeyType::ZSet)?;
    if key_type == KeyType::List && max_age_ms.is_some() {
        return Err("trim.max_age: a list has no timestamps; use max_len".into());
    }
    let newest = match obj.get("newest").map(|k| k.as_str()) {
        None | Some(Some("head")) => ListEnd::Head,
        Some(Some("tail")) => ListEnd::Tail,
        Some(_) => {
            return Err(
                "trim.newest: must be \"head\" (LPUSH producers) or \"tail\" (RPUSH producers)"
                    .into(),
            )
        }
    };
    let score_unit = match obj.get("score_unit").map(|u| u.as_str()) {
        None | Some(Some("ms")) => ScoreUnit::Milliseconds,
        Some(Some("s")) => ScoreUnit::Seconds,
        Some(_) => return Err("trim.score_unit: must be \"ms\" or \"s\"".into()),
    };
    Ok(TrimAction {
        max_len,
        max_age_ms,
        approx: optional_bool(obj, "approx", "trim.approx")?.unwrap_or(false),
        newest,
        score_unit,
        max_memory_bytes,
    })
}

/// What a queue rule's `match` may say: the queues under one literal prefix.
const QUEUE_MATCH_HINT: &str =
    "a queue rule matches the queues under one prefix: write \"<prefix>:*\", e.g. \"bull:*\"";

/// The literal prefix of a queue rule's `"match": "<prefix>:*"` (a one-item list is the same).
fn queue_prefix(obj: &Map<String, Value>) -> Parsed<String> {
    let (path, glob) = match obj.get("match") {
        None => return Err(format!("match: missing: {QUEUE_MATCH_HINT}")),
        Some(Value::Array(items)) if items.len() > 1 => {
            return Err(format!(
                "match: {} globs in a queue rule: {QUEUE_MATCH_HINT} (one rule per prefix)",
                items.len()
            ))
        }
        Some(Value::Array(items)) if items.len() == 1 => ("match[0]", &items[0]),
        Some(other) => ("match", other),
    };
    let text = glob
        .as_str()
        .ok_or_else(|| format!("{path}: must be a string: {QUEUE_MATCH_HINT}"))?;
    // Glob characters before `:*` would make the prefix a pattern, which the queue cleaner
    // cannot split into prefix and queue name.
    match text.strip_suffix(":*") {
        Some(prefix) if !prefix.is_empty() && !prefix.contains(['*', '?', '[', '\\']) => {
            Ok(prefix.to_string())
        }
        _ => Err(format!(
            "{path}: '{}' is not a literal prefix followed by :*: {QUEUE_MATCH_HINT}",
            clipped(text)
        )),
    }
}

fn parse_queue(v: &Value, prefix: String) -> Parsed<QueueAction> {
    let obj = object(v, "queue")?;
    reject_unknown(
        obj,
        &["flavor", "completed", "failed", "events", "orphan_age"],
        "queue.",
    )?;
    let flavor = match obj.get("flavor").map(|f| f.as_str()) {
        Some(Some("bullmq")) => RuleFlavor::One(QueueFlavor::BullMq),
        Some(Some("bull")) => RuleFlavor::One(QueueFlavor::Bull),
        Some(Some("auto")) => RuleFlavor::Auto,
        None => return Err("queue.flavor: missing: \"bullmq\", \"bull\" or \"auto\"".into()),
        Some(_) => return Err("queue.flavor: must be \"bullmq\", \"bull\" or \"auto\"".into()),
    };
    let completed = parse_finished(obj, "completed")?;
    let failed = parse_finished(obj, "failed")?;
    let events = match obj.get("events") {
        None => None,
        Some(ev) => {
            let e = object(ev, "queue.events")?;
            reject_unknown(e, &["max_len", "max_age"], "queue.events.")?;
            let r = EventsRetention {
                max_len: optional_count(e, "max_len", "queue.events.max_len")?,
                max_age_ms: optional_duration(e, "max_age", "queue.events.max_age")?,
            };
            if r.max_len.is_none() && r.max_age_ms.is_none() {
                return Err("queue.events: give \"max_len\" and/or \"max_age\"".into());
            }
            Some(r)
        }
    };
    let default_orphan_age = [completed, failed]
        .iter()
        .flatten()
        .filter_map(|r| r.max_age_ms)
        .max()
        .unwrap_or(7 * 86_400_000);
    let orphan_age_ms =
        optional_duration(obj, "orphan_age", "queue.orphan_age")?.unwrap_or(default_orphan_age);
    Ok(QueueAction {
        flavor,
        prefix,
        completed,
        failed,
        events,
        orphan_age_ms,
    })
}

fn parse_finished(queue: &Map<String, Value>, state: &str) -> Parsed<Option<FinishedRetention>> {
    let Some(v) = queue.get(state) else {
        return Ok(None);
    };
    let path = format!("queue.{state}");
    let obj = object(v, &path)?;
    reject_unknown(
        obj,
        &["max_age", "max_len", "max_memory"],
        &format!("{path}."),
    )?;
    let r = FinishedRetention {
        max_age_ms: optional_duration(obj, "max_age", &format!("{path}.max_age"))?,
        max_len: optional_count(obj, "max_len", &format!("{path}.max_len"))?,
        max_memory_bytes: optional_size(obj, "max_memory", &format!("{path}.max_memory"))?,
    };
    if r.max_age_ms.is_none() && r.max_len.is_none() && r.max_memory_bytes.is_none() {
        return Err(format!(
            "{path}: give \"max_age\", \"max_len\" and/or \"max_memory\""
        ));
    }
    Ok(Some(r))
}

/// The usual ACTIVE_RUN_CACHE_TTL of applications keeping active runs.
const DEFAULT_RUNS_MAX_AGE_MS: i64 = 3 * 3_600_000;

fn parse_runs(v: &Value) -> Parsed<RunsAction> {
    let obj = object(v, "runs")?;
    reject_unknown(obj, &["max_age"], "runs.")?;
    let max_age_ms =
        optional_duration(obj, "max_age", "runs.max_age")?.unwrap_or(DEFAULT_RUNS_MAX_AGE_MS);
    Ok(RunsAction { max_age_ms })
}

fn parse_pressure(v: &Value, action: &Action) -> Parsed<PressureOverride> {
    let obj = object(v, "pressure")?;
    reject_unknown(obj, &["ttl"], "pressure.")?;
    let ttl_ms = optional_duration(obj, "ttl", "pressure.ttl")?;
    match (ttl_ms, action) {
        (None, _) => Err("pressure: give an override such as {\"ttl\": \"1h\"}".into()),
        (Some(p), Action::Ttl(t)) if p >= t.ttl_ms => {
            Err("pressure.ttl: must be shorter than the rule's ttl".into())
        }
        (Some(_), Action::Ttl(_)) => Ok(PressureOverride { ttl_ms }),
        (Some(_), _) => Err("pressure.ttl: only applies to a \"ttl\" rule".into()),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Parsed<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| format!("{what}: must be a JSON object"))
}

fn reject_unknown(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Parsed<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{path}{}: unknown field (allowed here: {})",
            clipped(k),
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn duration(v: &Value, path: &str) -> Parsed<i64> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        Value::Number(n) => {
            return Err(format!(
                "{path}: bad duration {n}: must be a positive whole number of seconds or a string like \"24h\""
            ))
        }
        _ => return Err(format!("{path}: must be a duration such as \"24h\" or a number of seconds")),
    };
    parse_duration_ms(&text).map_err(|e| format!("{path}: {e}"))
}

fn optional_duration(obj: &Map<String, Value>, field: &str, path: &str) -> Parsed<Option<i64>> {
    obj.get(field).map(|v| duration(v, path)).transpose()
}

/// A memory size: `"200mb"` (redis.conf's units) or a whole number of bytes.
fn size(v: &Value, path: &str) -> Parsed<u64> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        Value::Number(n) => {
            return Err(format!(
                "{path}: bad size {n}: must be a positive whole number of bytes or a string like \"200mb\""
            ))
        }
        _ => return Err(format!("{path}: must be a size such as \"200mb\" or a number of bytes")),
    };
    parse_size_bytes(&text).map_err(|e| format!("{path}: {e}"))
}

fn optional_size(obj: &Map<String, Value>, field: &str, path: &str) -> Parsed<Option<u64>> {
    obj.get(field).map(|v| size(v, path)).transpose()
}

fn optional_count(obj: &Map<String, Value>, field: &str, path: &str) -> Parsed<Option<u64>> {
    obj.get(field)
        .map(|v| match v.as_u64() {
            Some(n) => Ok(n),
            None => Err(format!("{path}: must be a whole number >= 0 (got {v})")),
        })
        .transpose()
}

fn optional_bool(obj: &Map<String, Value>, field: &str, path: &str) -> Parsed<Option<bool>> {
    obj.get(field)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| format!("{path}: must be true or false"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        parse_policy(json).expect_err(json).message
    }

    #[test]
    fn example_from_the_spec_parses() {
        let p = parse_policy(include_str!("../../examples/policy.json")).expect("example policy");
        assert!(p.rules.len() >= 5);
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = err("{\n  \"rules\": [\n    {\"name\": \"a\",, }\n  ]\n}");
        assert!(e.starts_with("line 3, column "), "{e}");
        assert!(!e.contains(" at line "), "position given twice: {e}");
    }

    #[test]
    fn every_mistake_names_rule_and_path() {
        let cases: &[(&str, &str)] = &[
            (r#"{}"#, "missing \"rules\""),
            (r#"{"rules":{}}"#, "must be an array"),
            (r#"{"rules":[], "x":1}"#, "x: unknown field"),
            (
                r#"{"rules":[{"name":"a","match":"*"}]}"#,
                "rules[0] (\"a\"): rule has no action",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"1h","keep":true}]}"#,
                "several actions",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"1x"}]}"#,
                "rules[0] (\"a\"): ttl: bad duration",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":-5}]}"#,
                "ttl: bad duration -5",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":1.5}]}"#,
                "ttl: bad duration 1.5",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"0s"}]}"#,
                "greater than zero",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"1h","colour":1}]}"#,
                "colour: unknown field",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"1h","type":"blob"}]}"#,
                "type: unknown type 'blob'",
            ),
            (
                r#"{"rules":[{"name":"a","match":[],"ttl":"1h"}]}"#,
                "match: empty list",
            ),
            (
                r#"{"rules":[{"name":"a","match":["ok",3],"ttl":"1h"}]}"#,
                "match[1]: must be a string",
            ),
            (r#"{"rules":[{"name":"a","ttl":"1h"}]}"#, "match: missing"),
            (
                r#"{"rules":[{"name":"a","match":"*","keep":false}]}"#,
                "keep: must be true",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","keep":true,"cap":true}]}"#,
                "cap: only applies",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"1h"},{"name":"a","match":"*","ttl":"2h"}]}"#,
                "rules[1] (\"a\"): name: duplicate",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","trim":{"max_len":5}}]}"#,
                "rules[0] (\"t\"): type: missing: a trim rule needs \"type\"",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"list","trim":{"max_len":-1}}]}"#,
                "trim.max_len: must be a whole number",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"list","trim":{"max_age":"1d"}}]}"#,
                "trim.max_age: a list has no timestamps",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"list","trim":{"max_len":1,"newest":"middle"}}]}"#,
                "trim.newest: must be",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"stream","trim":{"max_len":1,"newest":"head"}}]}"#,
                "trim.newest: only applies to type \"list\"",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"list","trim":{"max_len":1,"keep":"head"}}]}"#,
                "trim.keep: unknown field",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"hash","trim":{"max_len":1}}]}"#,
                "rules[0] (\"t\"): type: \"hash\" cannot be trimmed",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"zset","trim":{}}]}"#,
                "give \"max_len\", \"max_age\" and/or \"max_memory\"",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"stream","trim":{"max_memory":"0mb"}}]}"#,
                "rules[0] (\"t\"): trim.max_memory: bad size '0mb': must be greater than zero",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"list","trim":{"max_memory":-5}}]}"#,
                "trim.max_memory: bad size -5: must be a positive whole number of bytes",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"zset","trim":{"max_memory":1.5}}]}"#,
                "trim.max_memory: bad size 1.5",
            ),
            (
                r#"{"rules":[{"name":"t","match":"*","type":"zset","trim":{"max_memory":"2tb"}}]}"#,
                "trim.max_memory: bad size '2tb': unknown unit 'tb' (use b|k|kb|m|mb|g|gb)",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","completed":{"max_memory":"99999999999gb"}}}]}"#,
                "queue.completed.max_memory: bad size '99999999999gb': number too large",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","failed":{"max_memory":true}}}]}"#,
                "queue.failed.max_memory: must be a size",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","events":{"max_memory":"1mb"}}}]}"#,
                "queue.events.max_memory: unknown field",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{}}]}"#,
                "queue.flavor: missing",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"celery"}}]}"#,
                "queue.flavor: must be",
            ),
            (
                r#"{"rules":[{"name":"q","match":"b*:*","queue":{"flavor":"bull"}}]}"#,
                "match: 'b*:*' is not a literal prefix followed by :*: a queue rule matches the queues under one prefix: write \"<prefix>:*\"",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull","queue":{"flavor":"bull"}}]}"#,
                "match: 'bull' is not a literal prefix",
            ),
            (
                r#"{"rules":[{"name":"q","match":":*","queue":{"flavor":"bull"}}]}"#,
                "match: ':*' is not a literal prefix",
            ),
            (
                r#"{"rules":[{"name":"q","match":["a:*","b:*"],"queue":{"flavor":"bull"}}]}"#,
                "match: 2 globs in a queue rule",
            ),
            (
                r#"{"rules":[{"name":"q","match":["a*:*"],"queue":{"flavor":"bull"}}]}"#,
                "match[0]: 'a*:*' is not a literal prefix",
            ),
            (
                r#"{"rules":[{"name":"q","match":[],"queue":{"flavor":"bull"}}]}"#,
                "match: must be a string",
            ),
            (
                r#"{"rules":[{"name":"q","queue":{"flavor":"bull"}}]}"#,
                "match: missing: a queue rule matches",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","prefix":"bull"}}]}"#,
                "queue.prefix: unknown field",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","type":"hash","queue":{"flavor":"bull"}}]}"#,
                "type: not allowed here",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","completed":{"max_len":-3}}}]}"#,
                "rules[0] (\"q\"): queue.completed.max_len: must be a whole number",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","completed":{"max_count":3}}}]}"#,
                "queue.completed.max_count: unknown field",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","failed":{}}}]}"#,
                "queue.failed: give \"max_age\", \"max_len\" and/or \"max_memory\"",
            ),
            (
                r#"{"rules":[{"name":"q","match":"bull:*","queue":{"flavor":"bull","events":{"max_len":"x"}}}]}"#,
                "queue.events.max_len",
            ),
            (
                r#"{"rules":[{"name":"r","runs":{}}]}"#,
                "match: missing: give a glob of run-set base names",
            ),
            (
                r#"{"rules":[{"name":"r","match":"r:*","runs":{"match":"r:*"}}]}"#,
                "runs.match: unknown field",
            ),
            (
                r#"{"rules":[{"name":"r","match":[],"runs":{}}]}"#,
                "match: empty list of globs",
            ),
            (
                r#"{"rules":[{"name":"r","match":"r:*","type":"zset","runs":{}}]}"#,
                "type: not allowed here",
            ),
            (
                r#"{"rules":[{"name":"r","match":"r:*","runs":{"max_age":"-1h"}}]}"#,
                "runs.max_age: bad duration",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"1h","pressure":{"ttl":"2h"}}]}"#,
                "pressure.ttl: must be shorter",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","keep":true,"pressure":{"ttl":"2h"}}]}"#,
                "pressure.ttl: only applies",
            ),
            (
                r#"{"rules":[{"name":"a","match":"*","ttl":"1h","min_idle":"soon"}]}"#,
                "min_idle: bad duration",
            ),
            (
                r#"{"rules":[{"name":"","match":"*","ttl":"1h"}]}"#,
                "name: must be a non-empty string",
            ),
            (r#"{"rules":[5]}"#, "rules[0]: rule: must be a JSON object"),
        ];
        for (json, expected) in cases {
            let e = err(json);
            assert!(
                e.contains(expected),
                "for {json}\n  got: {e}\n  want: {expected}"
            );
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let p = parse_policy(
            r#"{"rules":[
              {"name":"q","match":"bull:*","queue":{"flavor":"bullmq","completed":{"max_age":"1d"},"failed":{"max_age":"7d"}}},
              {"name":"r","match":"runs:*","runs":{}},
              {"match":"x","ttl":60}]}"#,
        )
        .expect("valid");
        let Action::Queue(q) = &p.rules[0].action else {
            panic!("queue")
        };
        assert_eq!(q.prefix, "bull");
        assert_eq!(p.rules[0].selector, Selector::Prefix(b"bull:".to_vec()));
        assert_eq!(q.orphan_age_ms, 7 * 86_400_000);
        assert_eq!(
            p.rules[1].action,
            Action::Runs(RunsAction {
                max_age_ms: 3 * 3_600_000
            })
        );
        assert_eq!(p.rules[2].name, "rule-2");
        assert_eq!(
            p.rules[2].action,
            Action::Ttl(TtlAction {
                ttl_ms: 60_000,
                cap: false
            })
        );
    }
}
