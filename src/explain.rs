//! `RETENTION.EXPLAIN <key>`: which rule governs a key and why, what the module would do to
//! it now, and what it did last. The first question about a key that expired or vanished.
//!
//! `explain` is pure (the key's facts and the clock are passed in) so unit tests reach every
//! decision; `cmd_explain` gathers the facts and replies.

use std::collections::BTreeMap;

use redis_module::{Context, RedisString, RedisValue};

use crate::args::{shown, Args};
use crate::error::{Error, Result};
use crate::history::{self, Action as Did};
use crate::keyspace::{self, OpenKey, OwnedName};
use crate::policy::duration::format_duration_ms;
use crate::policy::{Action, KeyType, Policy, QueueFlavor, Rule, RuleFlavor, Selector};
use crate::queue::layout::{classify, KeyRole};
use crate::stats::key;
use crate::sweep::plan::{idle_allows, plan_pressure_ttl, plan_ttl, TtlPlan};

/// Earlier rules listed as passed over, at most (their total is always given).
const MAX_PASSED_OVER: usize = 10;

/// What the module knows about a key at the moment it is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFacts {
    pub key_type: KeyType,
    pub expire_at_ms: Option<i64>,
    pub idle_ms: Option<i64>,
}

/// The policy's view of one key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The governing rule: its index and name.
    pub rule: Option<(usize, String)>,
    /// The pattern of that rule the name matched.
    pub matched: Option<String>,
    /// Earlier rules whose pattern matches the name but whose type filter does not.
    pub passed_over: Vec<String>,
    pub passed_over_total: usize,
    /// What the module would do to the key now.
    pub now: String,
}

pub struct Clock {
    pub now_ms: i64,
    pub under_pressure: bool,
    pub dry_run: bool,
}

pub fn explain(policy: &Policy, name: &[u8], facts: &KeyFacts, clock: &Clock) -> Explanation {
    let governing = policy.rule_for(name, facts.key_type);
    let earlier = governing.unwrap_or(policy.rules.len());
    let passed: Vec<String> = policy.rules[..earlier]
        .iter()
        .filter(|r| r.selector.matching_pattern(name).is_some())
        .filter_map(|r| {
            r.key_type.map(|wanted| {
                format!(
                    "rule '{}' matches the name but only takes {} keys",
                    r.name,
                    wanted.name()
                )
            })
        })
        .collect();
    let Some(index) = governing else {
        return Explanation {
            rule: None,
            matched: None,
            passed_over_total: passed.len(),
            passed_over: passed.into_iter().take(MAX_PASSED_OVER).collect(),
            now: "nothing: no rule governs this key (it keeps whatever TTL it has)".into(),
        };
    };
    let rule = &policy.rules[index];
    let mut now = decide(rule, name, facts, clock);
    if clock.dry_run {
        now = format!("nothing (retention.dry-run is on); otherwise: {now}");
    }
    Explanation {
        rule: Some((index, rule.name.clone())),
        matched: rule
            .selector
            .matching_pattern(name)
            .map(|p| String::from_utf8_lossy(&p).into_owned()),
        passed_over_total: passed.len(),
        passed_over: passed.into_iter().take(MAX_PASSED_OVER).collect(),
        now,
    }
}

fn decide(rule: &Rule, name: &[u8], facts: &KeyFacts, clock: &Clock) -> String {
    if !idle_allows(rule.min_idle_ms, rule.min_idle_ms.and(facts.idle_ms)) {
        let min = format_duration_ms(rule.min_idle_ms.unwrap_or(0));
        return match facts.idle_ms {
            Some(idle) => format!(
                "nothing yet: idle {} of the {min} min_idle the rule asks",
                format_duration_ms(idle)
            ),
            None => format!(
                "nothing: min_idle {min} needs idle times, which an LFU maxmemory-policy does not keep"
            ),
        };
    }
    match &rule.action {
        Action::Keep => "nothing: a keep rule protects it from every later rule".into(),
        Action::Ttl(ttl) => {
            let pressure_ttl = rule.pressure.and_then(|p| p.ttl_ms);
            let (plan, which) = match (clock.under_pressure, pressure_ttl) {
                (true, Some(ms)) => (
                    plan_pressure_ttl(ttl, ms, facts.expire_at_ms, clock.now_ms),
                    format!("{} (the pressure TTL)", format_duration_ms(ms)),
                ),
                _ => (
                    plan_ttl(ttl, ttl.ttl_ms, facts.expire_at_ms, clock.now_ms),
                    format_duration_ms(ttl.ttl_ms),
                ),
            };
            match plan {
                TtlPlan::Set(at) => format!("give it a TTL of {which} (expires at {at} ms)"),
                TtlPlan::Lower(at) => format!("lower its TTL to {which} (expires at {at} ms)"),
                TtlPlan::Leave if ttl.cap => {
                    "nothing: its TTL already ends within the rule's".into()
                }
                TtlPlan::Leave => {
                    "nothing: it has a TTL, and the rule only gives one to keys without (add \"cap\": true to lower longer ones)".into()
                }
            }
        }
        Action::Trim(trim) => {
            let mut limits = Vec::new();
            if let Some(n) = trim.max_len {
                limits.push(format!("the newest {n} entries"));
            }
            if let Some(ms) = trim.max_age_ms {
                limits.push(format!("entries younger than {}", format_duration_ms(ms)));
            }
            match facts.key_type {
                KeyType::List | KeyType::Stream | KeyType::ZSet => {
                    format!("trim it at each pass to {}", limits.join(" and "))
                }
                other => format!(
                    "nothing: trim rules apply to lists, streams and sorted sets (this is a {})",
                    other.name()
                ),
            }
        }
        Action::Queue(queue) => explain_queue_key(queue.flavor, &rule.selector, name, facts),
        Action::Runs(runs) => format!(
            "keep its run set's index and data in agreement and remove runs older than {}",
            format_duration_ms(runs.max_age_ms)
        ),
    }
}

fn explain_queue_key(
    flavor: RuleFlavor,
    selector: &Selector,
    name: &[u8],
    facts: &KeyFacts,
) -> String {
    let prefix_len = match selector {
        Selector::Prefix(prefix) => prefix.len(),
        _ => 0,
    };
    let (classified_as, library) = match flavor {
        RuleFlavor::One(QueueFlavor::BullMq) => (QueueFlavor::BullMq, "BullMQ"),
        RuleFlavor::One(QueueFlavor::Bull) => (QueueFlavor::Bull, "Bull"),
        RuleFlavor::Auto => (QueueFlavor::BullMq, "BullMQ or Bull"),
    };
    match classify(classified_as, prefix_len, name, facts.key_type) {
        KeyRole::Finished { set, .. } => format!(
            "the queue's {} set: jobs finished longer ago than the rule allows (or beyond its count) are removed with their keys, as {library}'s own clean does",
            set.name()
        ),
        KeyRole::Events => "the queue's events stream: trimmed as the rule's events limits say".into(),
        KeyRole::JobCandidate => format!(
            "a {library} job hash: removed only when the job is finished and old enough, or when nothing refers to it for the rule's orphan_age (seen by the module itself); a waiting, active, delayed or locked job is never touched"
        ),
        KeyRole::SubKeyCandidate { .. } => {
            "a job's sub-key (logs, dependencies, ...): removed with its job, or when its job hash is gone for the rule's orphan_age".into()
        }
        KeyRole::Other => format!("nothing: {library} queue structure, never touched"),
    }
}

/// For a job hash under a queue rule: where the job is and what the rule's limits make of
/// it, read from its queue (`queue::describe_job`).
fn job_now(
    ctx: &Context,
    rule: &Rule,
    name: &[u8],
    facts: &KeyFacts,
    clock: &Clock,
) -> Option<String> {
    let Action::Queue(queue) = &rule.action else {
        return None;
    };
    let prefix_len = queue.prefix.len() + 1;
    if classify(QueueFlavor::BullMq, prefix_len, name, facts.key_type) != KeyRole::JobCandidate {
        return None;
    }
    let text = crate::queue::describe_job(ctx, queue, name, clock.now_ms)?;
    Some(match clock.dry_run {
        true => format!("nothing (retention.dry-run is on); otherwise: {text}"),
        false => text,
    })
}

/// The latest remembered action, in words.
pub fn describe_last(entry: &history::Entry, policy: &Policy) -> String {
    let by = entry
        .rule
        .and_then(|r| policy.rules.get(r as usize))
        .map(|r| format!(" (rule '{}')", r.name))
        .unwrap_or_default();
    let what = match entry.action {
        Did::TtlSet { expire_at_ms } => format!("gave it a TTL, to expire at {expire_at_ms} ms"),
        Did::TtlLowered { expire_at_ms } => {
            format!("lowered its TTL, to expire at {expire_at_ms} ms")
        }
        Did::Trimmed { entries } => format!("trimmed {entries} entries"),
        Did::JobRemoved { orphan: false } => {
            "removed it with its finished job (cleaned from the completed/failed set)".into()
        }
        Did::JobRemoved { orphan: true } => {
            "removed it as an orphan: nothing in its queue referred to it for the rule's orphan_age"
                .into()
        }
    };
    format!("at {} ms: {what}{by}", entry.at_ms)
}

/// `RETENTION.EXPLAIN <key>`
pub fn cmd_explain(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() != 2 {
        return Err(Error::WrongArity);
    }
    let mut args = Args::new(args, "RETENTION.EXPLAIN")?;
    let name = args.next_bytes("<key>")?;
    args.done()?;
    let db = keyspace::selected_db(ctx);
    let facts = OwnedName::new(&name).and_then(|owned| {
        let key = OpenKey::readable(ctx, owned.name())?;
        let view = key.view();
        Some(KeyFacts {
            key_type: view.key_type()?,
            expire_at_ms: view.abs_expire_ms(),
            idle_ms: view.idle_ms(),
        })
    });
    let clock = Clock {
        now_ms: crate::time::now_ms(),
        under_pressure: crate::sweep::under_pressure(),
        dry_run: crate::config::dry_run(),
    };
    let policy = crate::state::with_policy(|p| p.policy.clone());
    let mut m = BTreeMap::new();
    m.insert(key("key"), RedisValue::BulkString(shown(&name)));
    m.insert(key("db"), RedisValue::Integer(i64::from(db)));
    m.insert(
        key("exists"),
        RedisValue::Integer(i64::from(facts.is_some())),
    );
    if let Some(facts) = &facts {
        m.insert(
            key("type"),
            RedisValue::BulkString(facts.key_type.name().into()),
        );
        let expire = facts
            .expire_at_ms
            .map_or(RedisValue::Null, RedisValue::Integer);
        m.insert(key("expire_at_ms"), expire);
        let mut explanation = explain(&policy, &name, facts, &clock);
        let governing = explanation
            .rule
            .as_ref()
            .and_then(|(i, _)| policy.rules.get(*i));
        if let Some(job) = governing.and_then(|r| job_now(ctx, r, &name, facts, &clock)) {
            explanation.now = job;
        }
        let rule = explanation.rule.as_ref();
        m.insert(
            key("rule"),
            rule.map_or(RedisValue::Null, |(_, n)| RedisValue::BulkString(n.clone())),
        );
        m.insert(
            key("rule_index"),
            rule.map_or(RedisValue::Null, |(i, _)| RedisValue::Integer(*i as i64)),
        );
        m.insert(
            key("matched"),
            explanation
                .matched
                .map_or(RedisValue::Null, RedisValue::BulkString),
        );
        let passed = explanation
            .passed_over
            .into_iter()
            .map(RedisValue::BulkString);
        m.insert(key("passed_over"), RedisValue::Array(passed.collect()));
        m.insert(
            key("passed_over_total"),
            RedisValue::Integer(explanation.passed_over_total as i64),
        );
        m.insert(key("now"), RedisValue::BulkString(explanation.now));
    }
    let last = match history::last(db, &name) {
        Some(entry) => describe_last(&entry, &policy),
        None if !crate::config::explain_history() => {
            "not recorded (retention.explain-history is no)".to_string()
        }
        None => format!(
            "nothing remembered (the module remembers about its last {} actions since load)",
            history::SLOTS
        ),
    };
    m.insert(key("last"), RedisValue::BulkString(last));
    Ok(RedisValue::OrderedMap(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    const POLICY: &str = r#"{"rules":[
        {"name":"protect","match":"bull:*:id","keep":true},
        {"name":"hashes-only","match":"cache:*","type":"hash","ttl":"1h"},
        {"name":"cache","match":"cache:*","ttl":"1d"},
        {"name":"capped","match":"session:*","ttl":"1h","cap":true,"pressure":{"ttl":"5m"}},
        {"name":"idle","match":"idle:*","ttl":"1h","min_idle":"1d"},
        {"name":"events","match":"events:*","type":"stream","trim":{"max_len":1000}},
        {"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq"}},
        {"name":"runs","match":"runs:active:*","runs":{"max_age":"3h"}}
    ]}"#;

    const NOW: i64 = 1_700_000_000_000;

    fn facts(key_type: KeyType, expire_at_ms: Option<i64>) -> KeyFacts {
        KeyFacts {
            key_type,
            expire_at_ms,
            idle_ms: Some(0),
        }
    }

    fn why(name: &str, f: KeyFacts, under_pressure: bool) -> Explanation {
        let policy = parse_policy(POLICY).expect("policy");
        let clock = Clock {
            now_ms: NOW,
            under_pressure,
            dry_run: false,
        };
        explain(&policy, name.as_bytes(), &f, &clock)
    }

    fn rule_name(e: &Explanation) -> Option<&str> {
        e.rule.as_ref().map(|(_, n)| n.as_str())
    }

    #[test]
    fn a_type_filter_passes_a_key_on_to_the_next_rule_and_says_so() {
        let e = why("cache:1", facts(KeyType::String, None), false);
        assert_eq!(rule_name(&e), Some("cache"));
        assert_eq!(e.matched.as_deref(), Some("cache:*"));
        assert_eq!(e.passed_over_total, 1);
        assert!(e.passed_over[0].contains("'hashes-only'") && e.passed_over[0].contains("hash"));
        assert!(e.now.contains("1d") && e.now.contains(&(NOW + 86_400_000).to_string()));
    }

    #[test]
    fn ttl_decisions_name_their_reason() {
        let has_ttl = why("cache:1", facts(KeyType::String, Some(NOW + 5)), false);
        assert!(has_ttl.now.contains("cap"), "{}", has_ttl.now);
        let longer = why(
            "session:1",
            facts(KeyType::String, Some(NOW + 86_400_000)),
            false,
        );
        assert!(
            longer.now.starts_with("lower its TTL to 1h"),
            "{}",
            longer.now
        );
        let pressure = why("session:1", facts(KeyType::String, None), true);
        assert!(
            pressure.now.contains("5m (the pressure TTL)"),
            "{}",
            pressure.now
        );
        let idle = why("idle:1", facts(KeyType::String, None), false);
        assert!(idle.now.starts_with("nothing yet: idle"), "{}", idle.now);
    }

    #[test]
    fn every_kind_of_rule_is_explained() {
        let kept = why("bull:q:id", facts(KeyType::String, None), false);
        assert_eq!(rule_name(&kept), Some("protect"));
        assert!(kept.now.contains("keep rule"));
        let stream = why("events:x", facts(KeyType::Stream, None), false);
        assert!(stream.now.contains("newest 1000 entries"), "{}", stream.now);
        let job = why("bull:q:42", facts(KeyType::Hash, None), false);
        assert_eq!(rule_name(&job), Some("jobs"));
        assert_eq!(job.matched.as_deref(), Some("bull:*"));
        assert!(job.now.contains("BullMQ job hash"), "{}", job.now);
        let finished = why("bull:q:completed", facts(KeyType::ZSet, None), false);
        assert!(finished.now.contains("completed set"), "{}", finished.now);
        let meta = why("bull:q:meta", facts(KeyType::Hash, None), false);
        assert!(meta.now.contains("structure"), "{}", meta.now);
        let runs = why("runs:active:{w}:p:index", facts(KeyType::ZSet, None), false);
        assert_eq!(rule_name(&runs), Some("runs"));
        assert!(runs.now.contains("3h"), "{}", runs.now);
        let none = why("other", facts(KeyType::String, None), false);
        assert_eq!(none.rule, None);
        assert!(none.now.starts_with("nothing: no rule"));
    }
}
