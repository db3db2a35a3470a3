//! `RETENTION.EXPLAIN <key>`: which rule governs a key and why, what the module would do to
//! it now, and what it did last. The first question about a key that expired or vanished.
//!
//! `explain` is pure (the key's facts and the clock are passed in) so unit tests reach every
//! decision; `cmd_explain` gathers the facts and replies.
//!
//! `now` and `last` are maps of one vocabulary: `action` (what the module would do / did:
//! `none`, `keep`, `set_ttl`, `lower_ttl`, `trim`, `clean`, `remove`, `expire_runs`; `last`
//! also `unknown`), the machine values of that action (`ttl_ms`, `expire_at_ms`, ...), and
//! `reason`, the same in words.

use std::collections::BTreeMap;

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, RedisString, RedisValue};

use crate::args::{shown, Args};
use crate::error::{Error, Result};
use crate::history::{self, Action as Did};
use crate::keyspace::{self, OpenKey, OwnedName};
use crate::policy::duration::format_duration_ms;
use crate::policy::{Action, KeyType, Policy, QueueFlavor, Rule, RuleFlavor, Selector};
use crate::queue::layout::{classify, KeyRole};
use crate::stats::{flag, key};
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

/// What the module would do to a key, or did: an action, its machine values, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub action: &'static str,
    /// The action's values: `ttl_ms`, `expire_at_ms`, `max_len`, ... (integers).
    pub values: Vec<(&'static str, i64)>,
    pub reason: String,
}

impl Verdict {
    pub fn new(action: &'static str, reason: impl Into<String>) -> Verdict {
        Verdict {
            action,
            values: Vec::new(),
            reason: reason.into(),
        }
    }

    /// Nothing is done, for `reason`.
    pub fn none(reason: impl Into<String>) -> Verdict {
        Verdict::new("none", reason)
    }

    pub fn with(mut self, name: &'static str, value: i64) -> Verdict {
        self.values.push((name, value));
        self
    }

    /// The value `name`, if the action has one.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.values.iter().find(|(n, _)| *n == name).map(|v| v.1)
    }

    /// The map of a reply: `action`, the values, `reason`.
    fn reply(&self) -> BTreeMap<RedisValueKey, RedisValue> {
        let mut m = BTreeMap::new();
        m.insert(key("action"), RedisValue::SimpleString(self.action.into()));
        for (name, value) in &self.values {
            m.insert(key(name), RedisValue::Integer(*value));
        }
        m.insert(key("reason"), RedisValue::BulkString(self.reason.clone()));
        m
    }
}

/// An earlier rule whose pattern matches the name but whose type filter does not: its name
/// and the key type it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedOver {
    pub rule: String,
    pub key_type: KeyType,
}

/// The policy's view of one key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The governing rule: its index and name.
    pub rule: Option<(usize, String)>,
    /// The pattern of that rule the name matched.
    pub matched: Option<String>,
    /// Earlier rules whose pattern matches the name but whose type filter does not.
    pub passed_over: Vec<PassedOver>,
    pub passed_over_total: usize,
    /// What the module would do to the key now (were retention.dry-run off).
    pub now: Verdict,
}

pub struct Clock {
    pub now_ms: i64,
    pub under_pressure: bool,
    pub dry_run: bool,
}

pub fn explain(policy: &Policy, name: &[u8], facts: &KeyFacts, clock: &Clock) -> Explanation {
    let governing = policy.rule_for(name, facts.key_type);
    let earlier = governing.unwrap_or(policy.rules.len());
    let passed: Vec<PassedOver> = policy.rules[..earlier]
        .iter()
        .filter(|r| r.selector.matching_pattern(name).is_some())
        .filter_map(|r| {
            r.key_type.map(|key_type| PassedOver {
                rule: r.name.clone(),
                key_type,
            })
        })
        .collect();
    let Some(index) = governing else {
        return Explanation {
            rule: None,
            matched: None,
            passed_over_total: passed.len(),
            passed_over: passed.into_iter().take(MAX_PASSED_OVER).collect(),
            now: Verdict::none("no rule governs this key (it keeps whatever TTL it has)"),
        };
    };
    let rule = &policy.rules[index];
    let now = decide(rule, name, facts, clock);
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

fn decide(rule: &Rule, name: &[u8], facts: &KeyFacts, clock: &Clock) -> Verdict {
    if !idle_allows(rule.min_idle_ms, rule.min_idle_ms.and(facts.idle_ms)) {
        let min_ms = rule.min_idle_ms.unwrap_or(0);
        let min = format_duration_ms(min_ms);
        let verdict = match facts.idle_ms {
            Some(idle) => Verdict::none(format!(
                "not yet: idle {} of the {min} min_idle the rule asks",
                format_duration_ms(idle)
            ))
            .with("idle_ms", idle),
            None => Verdict::none(format!(
                "min_idle {min} needs idle times, which an LFU maxmemory-policy does not keep"
            )),
        };
        return verdict.with("min_idle_ms", min_ms);
    }
    match &rule.action {
        Action::Keep => Verdict::new("keep", "a keep rule protects it from every later rule"),
        Action::Ttl(ttl) => {
            let pressure_ttl = rule.pressure.and_then(|p| p.ttl_ms);
            let (plan, ttl_ms, which) = match (clock.under_pressure, pressure_ttl) {
                (true, Some(ms)) => (
                    plan_pressure_ttl(ttl, ms, facts.expire_at_ms, clock.now_ms),
                    ms,
                    format!("{} (the pressure TTL)", format_duration_ms(ms)),
                ),
                _ => (
                    plan_ttl(ttl, ttl.ttl_ms, facts.expire_at_ms, clock.now_ms),
                    ttl.ttl_ms,
                    format_duration_ms(ttl.ttl_ms),
                ),
            };
            match plan {
                TtlPlan::Set(at) => Verdict::new("set_ttl", format!("give it a TTL of {which}"))
                    .with("ttl_ms", ttl_ms)
                    .with("expire_at_ms", at),
                TtlPlan::Lower(at) => {
                    Verdict::new("lower_ttl", format!("lower its TTL to {which}"))
                        .with("ttl_ms", ttl_ms)
                        .with("expire_at_ms", at)
                }
                TtlPlan::Leave if ttl.cap => {
                    Verdict::none("its TTL already ends within the rule's").with("ttl_ms", ttl_ms)
                }
                TtlPlan::Leave => Verdict::none(
                    "it has a TTL, and the rule only gives one to keys without (add \"cap\": true to lower longer ones)",
                )
                .with("ttl_ms", ttl_ms),
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
                    let mut verdict = Verdict::new(
                        "trim",
                        format!("trim it at each pass to {}", limits.join(" and ")),
                    );
                    if let Some(n) = trim.max_len {
                        verdict = verdict.with("max_len", i64::try_from(n).unwrap_or(i64::MAX));
                    }
                    if let Some(ms) = trim.max_age_ms {
                        verdict = verdict.with("max_age_ms", ms);
                    }
                    verdict
                }
                other => Verdict::none(format!(
                    "trim rules apply to lists, streams and sorted sets (this is a {})",
                    other.name()
                )),
            }
        }
        Action::Queue(queue) => explain_queue_key(queue.flavor, &rule.selector, name, facts),
        Action::Runs(runs) => Verdict::new(
            "expire_runs",
            format!(
                "keep its run set's index and data in agreement and remove runs older than {}",
                format_duration_ms(runs.max_age_ms)
            ),
        )
        .with("max_age_ms", runs.max_age_ms),
    }
}

fn explain_queue_key(
    flavor: RuleFlavor,
    selector: &Selector,
    name: &[u8],
    facts: &KeyFacts,
) -> Verdict {
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
        KeyRole::Finished { set, .. } => Verdict::new("clean", format!(
            "the queue's {} set: jobs finished longer ago than the rule allows (or beyond its count) are removed with their keys, as {library}'s own clean does",
            set.name()
        )),
        KeyRole::Events => Verdict::new("trim", "the queue's events stream: trimmed as the rule's events limits say"),
        KeyRole::JobCandidate => Verdict::none(format!(
            "a {library} job hash: removed only when the job is finished and old enough, or when nothing refers to it for the rule's orphan_age (seen by the module itself); a waiting, active, delayed or locked job is never touched"
        )),
        KeyRole::SubKeyCandidate { .. } => Verdict::none(
            "a job's sub-key (logs, dependencies, ...): removed with its job, or when its job hash is gone for the rule's orphan_age",
        ),
        KeyRole::Other => Verdict::none(format!("{library} queue structure, never touched")),
    }
}

/// For a job hash under a queue rule: where the job is and what the rule's limits make of
/// it, read from its queue (`queue::describe_job`).
fn job_now(
    ctx: &Context,
    rule: &Rule,
    name: &[u8],
    facts: &KeyFacts,
    now_ms: i64,
) -> Option<Verdict> {
    let Action::Queue(queue) = &rule.action else {
        return None;
    };
    let prefix_len = queue.prefix.len() + 1;
    if classify(QueueFlavor::BullMq, prefix_len, name, facts.key_type) != KeyRole::JobCandidate {
        return None;
    }
    crate::queue::describe_job(ctx, queue, name, now_ms)
}

/// The latest remembered action: what was done, when, by which rule.
pub fn last_verdict(entry: &history::Entry) -> Verdict {
    let verdict = match entry.action {
        Did::TtlSet { expire_at_ms } => {
            Verdict::new("set_ttl", "gave it a TTL").with("expire_at_ms", expire_at_ms)
        }
        Did::TtlLowered { expire_at_ms } => {
            Verdict::new("lower_ttl", "lowered its TTL").with("expire_at_ms", expire_at_ms)
        }
        Did::Trimmed { entries } => {
            Verdict::new("trim", format!("trimmed {entries} entries"))
                .with("entries_trimmed", i64::try_from(entries).unwrap_or(i64::MAX))
        }
        Did::JobRemoved { orphan: false } => Verdict::new(
            "remove",
            "removed it with its finished job (cleaned from the completed/failed set)",
        )
        .with("orphan", 0),
        Did::JobRemoved { orphan: true } => Verdict::new(
            "remove",
            "removed it as an orphan: nothing in its queue referred to it for the rule's orphan_age",
        )
        .with("orphan", 1),
    };
    verdict.with("at_ms", entry.at_ms)
}

/// `last`: the latest remembered action with the name of the rule that did it, or `unknown`.
fn last_reply(db: i32, name: &[u8], policy: &Policy) -> RedisValue {
    let Some(entry) = history::last(db, name) else {
        let reason = match crate::config::explain_history() {
            false => "not recorded (retention.explain-history is no)".to_string(),
            true => format!(
                "nothing remembered (the module remembers about its last {} actions since load)",
                history::SLOTS
            ),
        };
        return RedisValue::OrderedMap(Verdict::new("unknown", reason).reply());
    };
    let mut m = last_verdict(&entry).reply();
    let rule = entry
        .rule
        .and_then(|r| policy.rules.get(r as usize))
        .map_or(RedisValue::Null, |r| RedisValue::BulkString(r.name.clone()));
    m.insert(key("rule"), rule);
    RedisValue::OrderedMap(m)
}

/// `now`: the action's map, with `dry_run` 1 when retention.dry-run keeps it from happening.
fn now_reply(now: &Verdict, dry_run: bool) -> RedisValue {
    let mut m = now.reply();
    m.insert(key("dry_run"), flag(dry_run));
    if dry_run && now.action != "none" {
        let reason = format!(
            "retention.dry-run is on: nothing is changed; otherwise: {}",
            now.reason
        );
        m.insert(key("reason"), RedisValue::BulkString(reason));
    }
    RedisValue::OrderedMap(m)
}

fn passed_over_reply(passed: &[PassedOver]) -> RedisValue {
    let entry = |p: &PassedOver| {
        let mut m = BTreeMap::new();
        m.insert(key("rule"), RedisValue::BulkString(p.rule.clone()));
        m.insert(
            key("type"),
            RedisValue::SimpleString(p.key_type.name().into()),
        );
        RedisValue::OrderedMap(m)
    };
    RedisValue::Array(passed.iter().map(entry).collect())
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
        if let Some(job) = governing.and_then(|r| job_now(ctx, r, &name, facts, clock.now_ms)) {
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
        m.insert(
            key("passed_over"),
            passed_over_reply(&explanation.passed_over),
        );
        m.insert(
            key("passed_over_total"),
            RedisValue::Integer(explanation.passed_over_total as i64),
        );
        m.insert(key("now"), now_reply(&explanation.now, clock.dry_run));
    }
    m.insert(key("last"), last_reply(db, &name, &policy));
    m.insert(key("memory"), memory_reply(db, &name));
    Ok(RedisValue::OrderedMap(m))
}

/// `memory`: what the last walk under a `max_memory` limit found in the key (a finished set,
/// stream, list or sorted set), or nil when none measured it.
fn memory_reply(db: i32, name: &[u8]) -> RedisValue {
    let Some(measured) = history::measured(db, name) else {
        return RedisValue::Null;
    };
    let mut m = BTreeMap::new();
    let int = |n: u64| RedisValue::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    m.insert(key("kept_memory_bytes"), int(measured.kept_memory_bytes));
    m.insert(key("max_memory_bytes"), int(measured.max_memory_bytes));
    m.insert(key("kept_count"), int(measured.kept_within_budget));
    m.insert(key("at_ms"), RedisValue::Integer(measured.at_ms));
    let rule = measured
        .rule
        .clone()
        .map_or(RedisValue::Null, RedisValue::BulkString);
    m.insert(key("rule"), rule);
    m.insert(
        key("reason"),
        RedisValue::BulkString(memory_reason(&measured)),
    );
    RedisValue::OrderedMap(m)
}

/// "kept 187.0 MB of 200.0 MB budget (the newest 1204)".
pub fn memory_reason(measured: &history::Measured) -> String {
    use crate::policy::size::human_size;
    format!(
        "kept {} of {} budget (the newest {}; memory as MEMORY USAGE counts it, measured by the last pass)",
        human_size(measured.kept_memory_bytes),
        human_size(measured.max_memory_bytes),
        measured.kept_within_budget
    )
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
        assert_eq!(
            e.passed_over,
            [PassedOver {
                rule: "hashes-only".into(),
                key_type: KeyType::Hash
            }]
        );
        assert_eq!(e.now.action, "set_ttl");
        assert_eq!(e.now.value("ttl_ms"), Some(86_400_000));
        assert_eq!(e.now.value("expire_at_ms"), Some(NOW + 86_400_000));
        assert!(e.now.reason.contains("1d"), "{:?}", e.now);
    }

    #[test]
    fn ttl_decisions_name_their_reason() {
        let has_ttl = why("cache:1", facts(KeyType::String, Some(NOW + 5)), false);
        assert_eq!(has_ttl.now.action, "none");
        assert!(has_ttl.now.reason.contains("cap"), "{:?}", has_ttl.now);
        let longer = why(
            "session:1",
            facts(KeyType::String, Some(NOW + 86_400_000)),
            false,
        );
        assert_eq!(longer.now.action, "lower_ttl");
        assert_eq!(longer.now.value("expire_at_ms"), Some(NOW + 3_600_000));
        assert!(
            longer.now.reason.starts_with("lower its TTL to 1h"),
            "{:?}",
            longer.now
        );
        let pressure = why("session:1", facts(KeyType::String, None), true);
        assert_eq!(pressure.now.value("ttl_ms"), Some(300_000));
        assert!(
            pressure.now.reason.contains("5m (the pressure TTL)"),
            "{:?}",
            pressure.now
        );
        let idle = why("idle:1", facts(KeyType::String, None), false);
        assert_eq!(idle.now.action, "none");
        assert_eq!(idle.now.value("idle_ms"), Some(0));
        assert_eq!(idle.now.value("min_idle_ms"), Some(86_400_000));
        assert!(
            idle.now.reason.starts_with("not yet: idle"),
            "{:?}",
            idle.now
        );
    }

    #[test]
    fn every_kind_of_rule_is_explained() {
        let kept = why("bull:q:id", facts(KeyType::String, None), false);
        assert_eq!(rule_name(&kept), Some("protect"));
        assert_eq!(kept.now.action, "keep");
        let stream = why("events:x", facts(KeyType::Stream, None), false);
        assert_eq!(stream.now.action, "trim");
        assert_eq!(stream.now.value("max_len"), Some(1000));
        assert!(
            stream.now.reason.contains("newest 1000 entries"),
            "{:?}",
            stream.now
        );
        let job = why("bull:q:42", facts(KeyType::Hash, None), false);
        assert_eq!(rule_name(&job), Some("jobs"));
        assert_eq!(job.matched.as_deref(), Some("bull:*"));
        assert!(job.now.reason.contains("BullMQ job hash"), "{:?}", job.now);
        let finished = why("bull:q:completed", facts(KeyType::ZSet, None), false);
        assert_eq!(finished.now.action, "clean");
        assert!(
            finished.now.reason.contains("completed set"),
            "{:?}",
            finished.now
        );
        let meta = why("bull:q:meta", facts(KeyType::Hash, None), false);
        assert_eq!(meta.now.action, "none");
        assert!(meta.now.reason.contains("structure"), "{:?}", meta.now);
        let runs = why("runs:active:{w}:p:index", facts(KeyType::ZSet, None), false);
        assert_eq!(rule_name(&runs), Some("runs"));
        assert_eq!(runs.now.action, "expire_runs");
        assert_eq!(runs.now.value("max_age_ms"), Some(3 * 3_600_000));
        let none = why("other", facts(KeyType::String, None), false);
        assert_eq!(none.rule, None);
        assert_eq!(none.now.action, "none");
        assert!(none.now.reason.starts_with("no rule"));
    }

    #[test]
    fn a_memory_measurement_reads_as_kept_of_budget() {
        let measured = history::Measured {
            at_ms: NOW,
            rule: Some("jobs".into()),
            kept_memory_bytes: 187 << 20,
            max_memory_bytes: 200 << 20,
            kept_within_budget: 1204,
        };
        assert!(memory_reason(&measured)
            .starts_with("kept 187.0 MB of 200.0 MB budget (the newest 1204"));
    }

    #[test]
    fn a_remembered_action_carries_its_values() {
        let entry = |action| history::Entry {
            at_ms: NOW,
            rule: Some(2),
            action,
        };
        let ttl = last_verdict(&entry(Did::TtlSet {
            expire_at_ms: NOW + 5,
        }));
        assert_eq!(ttl.action, "set_ttl");
        assert_eq!(ttl.value("expire_at_ms"), Some(NOW + 5));
        assert_eq!(ttl.value("at_ms"), Some(NOW));
        let trim = last_verdict(&entry(Did::Trimmed { entries: 3 }));
        assert_eq!(
            (trim.action, trim.value("entries_trimmed")),
            ("trim", Some(3))
        );
        let orphan = last_verdict(&entry(Did::JobRemoved { orphan: true }));
        assert_eq!((orphan.action, orphan.value("orphan")), ("remove", Some(1)));
    }
}
