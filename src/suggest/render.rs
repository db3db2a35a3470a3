//! The suggested policy as the policy file takes it (fields in the order people read them:
//! name, match, type, action, comment), each rule's comment in words, and the reply's maps.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::limits::{bytes, count, plural};
use super::{Suggestion, Unknown};

/// The policy JSON, pretty-printed; comments only when `with_comments`.
pub fn policy_text(suggestions: &[Suggestion], with_comments: bool) -> String {
    let rules: Vec<String> = suggestions
        .iter()
        .map(|s| rule_text(s, with_comments))
        .collect();
    document(&rules)
}

/// The policy document of rules already rendered (`rule_text`).
pub fn document(rules: &[String]) -> String {
    if rules.is_empty() {
        return "{\n  \"rules\": []\n}\n".into();
    }
    [DOCUMENT_HEAD, &rules.join(RULE_SEPARATOR), DOCUMENT_TAIL].concat()
}

/// What comes before the first rule, between two, and after the last.
pub const DOCUMENT_HEAD: &str = "{\n  \"rules\": [\n";
pub const RULE_SEPARATOR: &str = ",\n";
pub const DOCUMENT_TAIL: &str = "\n  ]\n}\n";

/// One rule as the policy file takes it, indented for `document`.
pub fn rule_text(s: &Suggestion, with_comment: bool) -> String {
    let quote = |v: &Value| serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut fields = vec![
        format!("\"name\": {}", quote(&json!(s.name))),
        format!("\"match\": {}", quote(&match_value(s))),
    ];
    if let Some(t) = s.key_type {
        fields.push(format!("\"type\": {}", quote(&json!(t.name()))));
    }
    fields.push(format!("\"{}\": {}", s.action, quote(&s.value)));
    if with_comment {
        fields.push(format!("\"comment\": {}", quote(&json!(comment(s)))));
    }
    format!("    {{\n      {}\n    }}", fields.join(",\n      "))
}

fn match_value(s: &Suggestion) -> Value {
    match s.globs.as_slice() {
        [one] => json!(one),
        many => json!(many),
    }
}

/// Evidence, reason, and what a dry run says would change now.
pub fn comment(s: &Suggestion) -> String {
    let e = &s.effect;
    let now = match s.action {
        "keep" => "nothing is ever done to these keys".to_string(),
        "ttl" => format!(
            "{} would get a TTL ({} freed when it runs out)",
            plural(e.keys, "key", "keys"),
            bytes(e.expiring_bytes)
        ),
        "trim" => format!(
            "{} would be trimmed (at least {} freed)",
            plural(e.entries, "entry", "entries"),
            bytes(e.freed_bytes)
        ),
        "queue" => format!(
            "{} would be removed (at least {} freed)",
            plural(e.jobs, "finished job", "finished jobs"),
            bytes(e.freed_bytes)
        ),
        _ => format!(
            "{} older than the limit would be expired",
            plural(e.entries, "run", "runs")
        ),
    };
    format!("{}; {}. Now: {}", s.evidence, s.reason, now)
}

/// The keep rule for keys suggested rules' globs reach outside the groups they were
/// suggested for.
pub fn protect_strays(
    names: BTreeSet<String>,
    rule_names: &[&str],
    taken: &[Suggestion],
) -> Suggestion {
    let mut name = "protect-unrelated".to_string();
    let mut n = 2;
    while taken.iter().any(|s| s.name == name) {
        name = format!("protect-unrelated-{n}");
        n += 1;
    }
    Suggestion {
        name,
        action: "keep",
        owner: "unrelated",
        evidence: format!(
            "{} whose names match the glob of {} but have another shape than the keys it was suggested for",
            plural(names.len() as u64, "key", "keys"),
            rule_names.join(", ")
        ),
        reason: "their owner is not known, so they are protected by name".into(),
        globs: names.into_iter().collect(),
        key_type: None,
        value: json!(true),
        sources: None,
        queues: Vec::new(),
        effect: Default::default(),
    }
}

/// The reply's map of one rule (`rules`, in the policy's order).
pub fn rule_map(s: &Suggestion) -> Value {
    json!({
        "name": s.name,
        "action": s.action,
        "match": match_value(s),
        "owner": s.owner,
        "comment": comment(s),
        "effect": {
            "keys": s.effect.keys,
            "jobs": s.effect.jobs,
            "entries": s.effect.entries,
            "freed_bytes": s.effect.freed_bytes,
            "expiring_bytes": s.effect.expiring_bytes,
        },
    })
}

pub const NO_OWNER: &str = "no owner recognised: no rule suggested";
pub const LIST_REASON: &str =
    "a list may be a work queue: a trim would drop queued work; no rule suggested";

/// The reply's `unknown`: groups with keys without a TTL that no rule covers, biggest first.
pub fn unknown(
    groups: &HashMap<Vec<u8>, Unknown>,
    reasons: &HashMap<Vec<u8>, String>,
    max: usize,
) -> Value {
    let mut listed: Vec<(&Vec<u8>, &Unknown)> = groups
        .iter()
        .filter(|(_, u)| u.keys_without_ttl > 0)
        .collect();
    listed.sort_by(|a, b| b.1.memory_bytes.cmp(&a.1.memory_bytes).then(a.0.cmp(b.0)));
    Value::Array(
        listed
            .into_iter()
            .take(max)
            .map(|(pattern, u)| {
                let reason = reasons.get(pattern).cloned().unwrap_or_else(|| {
                    match u.types.len() == 1 && u.types.contains_key("list") {
                        true => LIST_REASON.to_string(),
                        false => NO_OWNER.to_string(),
                    }
                });
                json!({
                    "pattern": String::from_utf8_lossy(pattern),
                    "keys": u.keys,
                    "keys_without_ttl": u.keys_without_ttl,
                    "memory_bytes": u.memory_bytes,
                    "types": u.types,
                    "reason": reason,
                })
            })
            .collect(),
    )
}

/// "3 strings" / "1 hash" / "2 keys" for a group's types.
pub fn things(n: u64, types: &[(crate::policy::KeyType, u64)]) -> String {
    use crate::policy::KeyType;
    let (one, many) = match types {
        [(KeyType::String, _)] => ("string", "strings"),
        [(KeyType::Hash, _)] => ("hash", "hashes"),
        [(KeyType::Stream, _)] => ("stream", "streams"),
        [(KeyType::ZSet, _)] => ("sorted set", "sorted sets"),
        _ => ("key", "keys"),
    };
    match n {
        1 => format!("1 {one}"),
        _ => format!("{} {many}", count(n)),
    }
}
