//! Counters since load (`RETENTION.STATS GET`, `INFO retention`) and the tally a pass reports.

use std::cell::RefCell;
use std::collections::BTreeMap;

use redis_module::redisvalue::RedisValueKey;
use redis_module::{InfoContext, RedisResult, RedisValue};

use crate::policy::Policy;

/// What work did: kept per pass, per rule, and since load.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub keys_scanned: u64,
    pub keys_matched: u64,
    pub ttl_set: u64,
    pub ttl_lowered: u64,
    pub keys_deleted: u64,
    pub entries_trimmed: u64,
    pub jobs_removed: u64,
    pub runs_expired: u64,
    /// Keys a rule selected but that were of a type its action cannot handle.
    pub skipped_wrong_type: u64,
    pub errors: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.keys_scanned += other.keys_scanned;
        self.keys_matched += other.keys_matched;
        self.ttl_set += other.ttl_set;
        self.ttl_lowered += other.ttl_lowered;
        self.keys_deleted += other.keys_deleted;
        self.entries_trimmed += other.entries_trimmed;
        self.jobs_removed += other.jobs_removed;
        self.runs_expired += other.runs_expired;
        self.skipped_wrong_type += other.skipped_wrong_type;
        self.errors += other.errors;
    }

    pub fn fields(&self) -> [(&'static str, u64); 10] {
        [
            ("keys_scanned", self.keys_scanned),
            ("keys_matched", self.keys_matched),
            ("ttl_set", self.ttl_set),
            ("ttl_lowered", self.ttl_lowered),
            ("keys_deleted", self.keys_deleted),
            ("entries_trimmed", self.entries_trimmed),
            ("jobs_removed", self.jobs_removed),
            ("runs_expired", self.runs_expired),
            ("skipped_wrong_type", self.skipped_wrong_type),
            ("errors", self.errors),
        ]
    }

    /// Only the per-rule fields that say what the rule did.
    fn rule_fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
        self.fields()
            .into_iter()
            .filter(|(name, _)| *name != "keys_scanned")
    }
}

/// Per-rule counters of a slice or a pass, kept only for the rules that did something: a
/// policy may hold 100k rules, and a slice that zeroed and summed one counter per rule
/// spent its whole budget on that before its first key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuleTallies(BTreeMap<usize, Tally>);

impl RuleTallies {
    /// Adds to the counters of rule number `rule` (its index in the policy).
    pub fn add(&mut self, rule: usize, delta: &Tally) {
        if *delta != Tally::default() {
            self.0.entry(rule).or_default().add(delta);
        }
    }

    pub fn add_all(&mut self, other: &RuleTallies) {
        for (rule, delta) in other.iter() {
            self.add(rule, delta);
        }
    }

    /// The counters of rule number `rule` (zero when it did nothing).
    pub fn of(&self, rule: usize) -> Tally {
        self.0.get(&rule).copied().unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &Tally)> {
        self.0.iter().map(|(rule, t)| (*rule, t))
    }
}

/// Counters of the whole module since load (or the last `RETENTION.STATS RESET`).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub total: Tally,
    pub per_rule: BTreeMap<String, Tally>,
    pub passes: u64,
    pub last_pass_duration_ms: u64,
    pub max_slice_us: u64,
    /// Slices that ran over twice the budget (reported to the latency monitor).
    pub slices_over_budget: u64,
    pub cron_busy_us: u64,
    pub tracked_keys: u64,
    pub tracked_dropped: u64,
    /// Work items (trims, cleanings) of noted keys left to the next full pass because the
    /// tracking work queue was full.
    pub tracked_work_dropped: u64,
    /// Work items of noted keys planned under a policy that was replaced before they ran:
    /// dropped, and their keys planned again under the new one.
    pub tracked_work_replanned: u64,
    pub pressure_ticks: u64,
    /// Expire times that could not be replicated (the server lost PEXPIREAT): must stay 0.
    pub replication_errors: u64,
    /// Writing commands the server refused (the keys changed type or went away, out of
    /// memory): the work that asked stops or counts an error.
    pub write_errors: u64,
    /// Running passes, trims and cleanings stopped because the server became a replica.
    pub stopped_by_demotion: u64,
    /// SWEEPs, trims, cleanings and reports stopped because their client went away.
    pub stopped_client_gone: u64,
    /// Slices not run because the server asked modules to avoid replica traffic
    /// (CLIENT PAUSE WRITE, FAILOVER, a cluster manual failover).
    pub held_for_failover: u64,
    /// Idle clients closed by `RETENTION.CLIENTS ... KILL` and `retention.clients-idle-kill-s`.
    pub clients_killed: u64,
    /// Looks at possible orphans not recorded, or observations dropped for another kind's
    /// share, because the table of watched orphans was full: their removal waits.
    pub orphans_watch_dropped: u64,
}

thread_local! {
    static STATS: RefCell<Stats> = RefCell::new(Stats::default());
}

pub fn with_stats<R>(f: impl FnOnce(&mut Stats) -> R) -> R {
    STATS.with(|s| f(&mut s.borrow_mut()))
}

pub fn snapshot() -> Stats {
    STATS.with(|s| s.borrow().clone())
}

pub fn reset() {
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        let rules: Vec<String> = s.per_rule.keys().cloned().collect();
        *s = Stats::default();
        for name in rules {
            s.per_rule.insert(name, Tally::default());
        }
    });
    crate::queue::counters::reset();
}

/// Makes every rule of a newly installed policy show up (with zeros) in STATS and INFO, and
/// drops the counters of rules it no longer has: reloading policies with new names must not
/// grow the module's memory.
pub fn note_policy_rules(policy: &Policy) {
    let names: std::collections::HashSet<&str> =
        policy.rules.iter().map(|r| r.name.as_str()).collect();
    with_stats(|s| {
        s.per_rule.retain(|name, _| names.contains(name.as_str()));
        for rule in &policy.rules {
            s.per_rule.entry(rule.name.clone()).or_default();
        }
    });
}

/// Adds work done to the totals and to the counters of the rules that did it.
pub fn record_work(policy: &Policy, total: &Tally, per_rule: &RuleTallies) {
    with_stats(|s| {
        s.total.add(total);
        for (index, delta) in per_rule.iter() {
            if let Some(rule) = policy.rules.get(index) {
                s.per_rule.entry(rule.name.clone()).or_default().add(delta);
            }
        }
    });
}

pub fn record_slice(elapsed_us: u64, budget_us: u64) -> bool {
    with_stats(|s| {
        s.max_slice_us = s.max_slice_us.max(elapsed_us);
        let over = elapsed_us > budget_us * 2;
        if over {
            s.slices_over_budget += 1;
        }
        over
    })
}

/// A map key for a reply field.
pub fn key(name: &str) -> RedisValueKey {
    RedisValueKey::String(name.to_string())
}

/// A yes/no reply field: 0 or 1, as the server's own replies give booleans.
pub fn flag(yes: bool) -> RedisValue {
    RedisValue::Integer(i64::from(yes))
}

/// A count or duration reply field (saturating at the largest integer a reply carries).
pub fn count(n: u64) -> RedisValue {
    RedisValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

pub fn tally_reply(t: &Tally) -> BTreeMap<RedisValueKey, RedisValue> {
    t.fields()
        .iter()
        .map(|(name, v)| (key(name), RedisValue::Integer(*v as i64)))
        .collect()
}

pub fn rules_reply(per_rule: &BTreeMap<String, Tally>) -> RedisValue {
    RedisValue::OrderedMap(
        per_rule
            .iter()
            .map(|(name, t)| {
                let fields = t
                    .rule_fields()
                    .map(|(n, v)| (key(n), RedisValue::Integer(v as i64)))
                    .collect();
                (key(name), RedisValue::OrderedMap(fields))
            })
            .collect(),
    )
}

/// The reply of `RETENTION.STATS GET`: counters and a `rules` map.
pub fn stats_reply(s: &Stats) -> RedisValue {
    let mut m = tally_reply(&s.total);
    for (name, v) in scalar_fields(s) {
        m.insert(key(name), RedisValue::Integer(v as i64));
    }
    m.insert(key("rules"), rules_reply(&s.per_rule));
    m.insert(key("queues"), crate::queue::counters::stats_reply());
    RedisValue::OrderedMap(m)
}

fn scalar_fields(s: &Stats) -> [(&'static str, u64); 18] {
    [
        ("passes", s.passes),
        ("last_pass_duration_ms", s.last_pass_duration_ms),
        ("max_slice_us", s.max_slice_us),
        ("slices_over_budget", s.slices_over_budget),
        ("cron_busy_us", s.cron_busy_us),
        ("tracked_keys", s.tracked_keys),
        ("tracked_dropped", s.tracked_dropped),
        ("tracked_work_dropped", s.tracked_work_dropped),
        ("tracked_work_replanned", s.tracked_work_replanned),
        ("pressure_ticks", s.pressure_ticks),
        ("replication_errors", s.replication_errors),
        ("write_errors", s.write_errors),
        ("stopped_by_demotion", s.stopped_by_demotion),
        ("stopped_client_gone", s.stopped_client_gone),
        ("held_for_failover", s.held_for_failover),
        ("clients_killed", s.clients_killed),
        // Possible orphans being watched (keys, run-set entries): bounded, in memory only.
        ("orphans_watched", crate::observe::len() as u64),
        ("orphans_watch_dropped", s.orphans_watch_dropped),
    ]
}

/// INFO field names allow `[A-Za-z0-9_]`: anything else in a rule name becomes `_`.
fn info_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Names that differ only in characters INFO does not allow sanitize alike; the server's INFO
/// builder refuses a field seen twice (and drops the whole section), so later ones get `_2`, ...
fn unique_field(name: String, used: &mut std::collections::HashSet<String>) -> String {
    let mut field = name.clone();
    let mut n = 1;
    while !used.insert(field.clone()) {
        n += 1;
        field = format!("{name}_{n}");
    }
    field
}

/// The `INFO retention` sections: `retention_stats`, `retention_rules`, `retention_queues`.
pub fn add_info(ctx: &InfoContext) -> RedisResult<()> {
    let s = snapshot();
    let mut section = ctx.builder().add_section("stats");
    for (name, v) in s.total.fields().into_iter().chain(scalar_fields(&s)) {
        section = section.field(name, v.min(i64::MAX as u64) as i64)?;
    }
    let mut used = std::collections::HashSet::new();
    let mut rules = section.build_section()?.add_section("rules");
    for (name, t) in &s.per_rule {
        let value = t
            .rule_fields()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let field = unique_field(format!("rule_{}", info_safe(name)), &mut used);
        rules = rules.field(&field, value)?;
    }
    let mut queues = rules.build_section()?.add_section("queues");
    for (name, value) in crate::queue::counters::info_fields() {
        queues = queues.field(&unique_field(info_safe(&name), &mut used), value)?;
    }
    queues.build_section()?.build_info()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_field_by_field() {
        let mut a = Tally {
            keys_scanned: 3,
            ttl_set: 1,
            ..Tally::default()
        };
        a.add(&Tally {
            keys_scanned: 2,
            errors: 4,
            ..Tally::default()
        });
        assert_eq!(a.keys_scanned, 5);
        assert_eq!(a.ttl_set, 1);
        assert_eq!(a.errors, 4);
    }

    #[test]
    fn names_that_sanitize_alike_get_distinct_fields() {
        let mut used = std::collections::HashSet::new();
        let a = unique_field(format!("rule_{}", info_safe("celery-results")), &mut used);
        let b = unique_field(format!("rule_{}", info_safe("celery_results")), &mut used);
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("rule_celery_results", "rule_celery_results_2")
        );
    }

    #[test]
    fn info_names_are_sanitized() {
        assert_eq!(info_safe("bull-jobs:x y"), "bull_jobs_x_y");
    }
}
