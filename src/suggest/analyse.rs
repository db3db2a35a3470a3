//! Proving owners from the survey: the key shapes the walk noted, checked against contents
//! (a job's JSON, a result's fields, a stream's consumer groups), and the candidate rules
//! with their evidence. Reads only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use redis_module::{CallOptions, Context};
use serde_json::json;

use super::limits::*;
use super::reads::{self, field, int_of, Reader, Val};
use super::recognise::{self, CeleryKind, Shape};
use super::render::{things, LIST_REASON};
use super::{Suggestion, Survey, MAX_STREAMS_CHECKED};
use crate::keyspace;
use crate::policy::{parse_policy, KeyType, Policy};
use crate::queue::calls::Calls;
use crate::queue::{detect, jobs};
use crate::report::group::{collapse, Group};

pub struct Found {
    pub suggestions: Vec<Suggestion>,
    /// Why a group got no rule, by pattern (groups without one get a default reason).
    pub reasons: HashMap<Vec<u8>, String>,
}

/// Owners proven step by step, so that a keyspace of thousands of groups and queues is
/// analysed across slices: each step (a queue, a group, the other owners at once) is a few
/// reads.
pub struct Analysis {
    found: Found,
    step: Step,
    /// Queue bases by prefix (a prefix inside another's moved to the outer one).
    prefixes: Vec<(Vec<u8>, QueueBases)>,
    queue: Option<QueueTally>,
    /// The rules found before the groups are looked at: a group they govern gets none.
    claimed: Option<Policy>,
    cursor: usize,
    /// The server's `maxmemory` (0: none): memory limits are a share of it.
    maxmemory: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Owners,
    Queues,
    Runs,
    Groups,
    Done,
}

impl Analysis {
    pub fn new(survey: &Survey) -> Analysis {
        Analysis {
            found: Found {
                suggestions: Vec::new(),
                reasons: HashMap::new(),
            },
            step: Step::Owners,
            prefixes: queue_prefixes(survey),
            queue: None,
            claimed: None,
            cursor: 0,
            maxmemory: 0,
        }
    }

    /// Works until `deadline`; true when every owner was looked at.
    pub fn advance(
        &mut self,
        ctx: &Context,
        read: &CallOptions,
        survey: &Survey,
        now_ms: i64,
        deadline: Instant,
    ) -> bool {
        while self.step != Step::Done {
            match self.step {
                Step::Owners => {
                    self.maxmemory = super::effect::config_u64(ctx, "maxmemory").unwrap_or(0);
                    sidekiq(ctx, survey, &mut self.found);
                    rq(ctx, survey, &mut self.found);
                    self.step = Step::Queues;
                }
                Step::Queues => self.queue_step(ctx, survey, now_ms),
                Step::Runs => {
                    runs(ctx, survey, now_ms, &mut self.found);
                    let text = super::render::policy_text(&self.found.suggestions, false);
                    self.claimed = parse_policy(&text).ok();
                    self.step = Step::Groups;
                }
                Step::Groups => match survey.grouper.groups().get(self.cursor) {
                    Some(group) => {
                        let claimed = self.claimed.as_ref();
                        let i = self.cursor;
                        self.cursor += 1;
                        one_group(
                            ctx,
                            read,
                            survey,
                            i,
                            group,
                            claimed,
                            (now_ms, self.maxmemory),
                            &mut self.found,
                        );
                    }
                    None => self.step = Step::Done,
                },
                Step::Done => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        self.step == Step::Done
    }

    /// One queue of the current prefix; the prefix's rule once its last queue was read.
    fn queue_step(&mut self, ctx: &Context, survey: &Survey, now_ms: i64) {
        let Some((prefix, bases)) = self.prefixes.get(self.cursor) else {
            self.step = Step::Runs;
            self.cursor = 0;
            return;
        };
        if std::str::from_utf8(prefix).is_err() || has_glob_specials(prefix) {
            self.cursor += 1;
            return;
        }
        let tally = self.queue.get_or_insert_with(|| QueueTally::new(prefix));
        let (db, base) = &bases[tally.read];
        tally.add(ctx, survey, prefix, *db, base);
        if tally.read == bases.len() {
            if let Some(tally) = self.queue.take() {
                let memory = prefix_memory(survey, prefix);
                self.found.suggestions.push(tally.into_rule(
                    prefix,
                    now_ms,
                    memory,
                    self.maxmemory,
                ));
            }
            self.cursor += 1;
        }
    }

    /// The rules, protection first, and why groups got none.
    pub fn finish(mut self) -> Found {
        // Protection first, then the acting rules, by name: the walk's order differs between
        // a master and its replica, the suggestion must not.
        self.found
            .suggestions
            .sort_by(|a, b| (a.action != "keep", &a.name).cmp(&(b.action != "keep", &b.name)));
        dedupe_names(&mut self.found.suggestions);
        self.found
    }
}

fn dedupe_names(suggestions: &mut [Suggestion]) {
    let mut seen = HashSet::new();
    for s in suggestions.iter_mut() {
        let base = s.name.clone();
        let mut n = 2;
        while !seen.insert(s.name.clone()) {
            s.name = format!("{base}-{n}");
            n += 1;
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn suggestion(name: String, action: &'static str, owner: &'static str) -> Suggestion {
    Suggestion {
        name,
        action,
        owner,
        globs: Vec::new(),
        key_type: None,
        value: json!(true),
        evidence: String::new(),
        reason: String::new(),
        sources: None,
        queues: Vec::new(),
        effect: Default::default(),
    }
}

fn has_glob_specials(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b']' | b'\\'))
}

/// ", the oldest <done> <age> ago" for the oldest score (epoch ms), or nothing.
fn oldest_ago(done: &str, now_ms: i64, oldest_ms: Option<f64>) -> String {
    match oldest_ms {
        Some(ms) => format!(
            ", the oldest {done} {} ago",
            age_words(now_ms.saturating_sub(ms as i64))
        ),
        None => String::new(),
    }
}

/// Names of at most five things, then how many more.
fn some_names(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
    match names.len() > 5 {
        true => format!("{} and {} more", shown.join(", "), names.len() - 5),
        false => shown.join(", "),
    }
}

/// Queue bases (`<prefix>:<queue>:`) with their databases.
type QueueBases = Vec<(i32, Vec<u8>)>;

/// BullMQ/Bull queue bases by prefix: one queue rule per prefix.
fn queue_prefixes(survey: &Survey) -> Vec<(Vec<u8>, QueueBases)> {
    let mut by_prefix: BTreeMap<Vec<u8>, Vec<(i32, Vec<u8>)>> = BTreeMap::new();
    for (db, base) in &survey.queues {
        if let Some(prefix) = recognise::queue_prefix_of(base) {
            by_prefix
                .entry(prefix.to_vec())
                .or_default()
                .push((*db, base.clone()));
        }
    }
    // A prefix inside another's (`bull` and `bull:a`, Bull names may hold `:`) is governed
    // by the outer one's rule.
    let prefixes: Vec<Vec<u8>> = by_prefix.keys().cloned().collect();
    for p in &prefixes {
        let outer = prefixes
            .iter()
            .find(|q| q.len() < p.len() && p.starts_with(q) && p[q.len()] == b':');
        if let Some(outer) = outer {
            let moved = by_prefix.remove(p).unwrap_or_default();
            by_prefix.entry(outer.clone()).or_default().extend(moved);
        }
    }
    by_prefix.into_iter().collect()
}

/// The memory of the queues' keys under `prefix`.
fn prefix_memory(survey: &Survey, prefix: &[u8]) -> u64 {
    let collapsed = [collapse(prefix), b":".to_vec()].concat();
    survey
        .grouper
        .groups()
        .iter()
        .filter(|g| g.queue.is_some() && g.pattern.starts_with(&collapsed))
        .map(Group::memory)
        .sum()
}

/// What the queues of one prefix read so far show.
struct QueueTally {
    rule: Suggestion,
    read: usize,
    completed: u64,
    failed: u64,
    oldest: Option<f64>,
    flavors: BTreeSet<&'static str>,
    names: Vec<String>,
    /// Finished jobs measured (the newest of each set) and their memory.
    sampled_jobs: u64,
    sampled_bytes: u64,
}

impl QueueTally {
    fn new(prefix: &[u8]) -> QueueTally {
        QueueTally {
            rule: suggestion(
                format!("queues-{}", recognise::rule_name("", prefix)),
                "queue",
                "bullmq",
            ),
            read: 0,
            completed: 0,
            failed: 0,
            oldest: None,
            flavors: BTreeSet::new(),
            names: Vec::new(),
            sampled_jobs: 0,
            sampled_bytes: 0,
        }
    }

    /// Reads the queue at `base`: its library, its finished sets.
    fn add(&mut self, ctx: &Context, survey: &Survey, prefix: &[u8], db: i32, base: &[u8]) {
        keyspace::select_db(ctx, db);
        let calls = Reader::new(ctx);
        let flavor = detect::flavor_of(&Calls::new(ctx), base);
        self.flavors.insert(flavor.name());
        for (set, n) in [
            ("completed", &mut self.completed),
            ("failed", &mut self.failed),
        ] {
            let set_key = [base, set.as_bytes()].concat();
            let card = calls.zcard(&set_key);
            *n += card;
            if let Some((_, score)) = calls.zfirst(&set_key) {
                self.oldest = Some(self.oldest.map_or(score, |o| o.min(score)));
            }
            let newest = calls.zrange(&set_key, card.saturating_sub(JOBS_SAMPLED), card);
            for id in newest {
                let job = [base, id.as_slice()].concat();
                self.sampled_bytes += job_memory(ctx, flavor, &job);
                self.sampled_jobs += 1;
            }
        }
        let queue = &base[prefix.len() + 1..base.len() - 1];
        let shown = match survey.queues.iter().filter(|(_, b)| b == base).count() > 1 {
            true => format!("{} (db {db})", text(queue)),
            false => text(queue),
        };
        self.names.push(shown);
        self.rule.queues.push((db, base.to_vec(), flavor));
        self.read += 1;
    }

    /// The prefix's queue rule.
    fn into_rule(self, prefix: &[u8], now_ms: i64, memory: u64, maxmemory: u64) -> Suggestion {
        let mut s = self.rule;
        let flavor = match (self.flavors.len(), self.flavors.iter().next()) {
            (1, Some(one)) => *one,
            _ => "auto",
        };
        s.owner = match flavor {
            "bull" => "bull",
            _ => "bullmq",
        };
        let library = match flavor {
            "bullmq" => "BullMQ",
            "bull" => "Bull",
            _ => "BullMQ and Bull",
        };
        let queues = s.queues.len();
        s.evidence = format!(
            "{queues} {library} {} under {}: ({}): {} completed and {} failed jobs{}, {} in all",
            match queues {
                1 => "queue",
                _ => "queues",
            },
            text(prefix),
            some_names(&self.names),
            count(self.completed),
            count(self.failed),
            oldest_ago("finished", now_ms, self.oldest),
            bytes(memory)
        );
        s.reason = QUEUE_REASON.into();
        s.globs = vec![format!("{}:*", text(prefix))];
        let mut completed = json!({"max_age": QUEUE_COMPLETED_MAX_AGE, "max_len": QUEUE_MAX_LEN});
        let mut failed = json!({"max_age": QUEUE_FAILED_MAX_AGE, "max_len": QUEUE_MAX_LEN});
        let mean = self.sampled_bytes / self.sampled_jobs.max(1);
        if mean > BIG_JOB_BYTES {
            let (budget, why) = memory_budget(maxmemory, 2 * queues as u64);
            completed["max_memory"] = json!(size_text(budget));
            failed["max_memory"] = json!(size_text(budget));
            s.reason = format!(
                "{}; the newest finished jobs take {} each on average (over 64 KB: 1,000 of them would take {}), so each finished set is also kept within max_memory {} ({why})",
                s.reason,
                bytes(mean),
                bytes(mean * QUEUE_MAX_LEN),
                size_text(budget)
            );
        }
        s.value = json!({"flavor": flavor, "completed": completed, "failed": failed});
        s
    }
}

/// Finished jobs measured per set (its newest: those a memory limit keeps).
const JOBS_SAMPLED: u64 = 4;

/// A job's memory: its hash and the sub-keys the library deletes with it.
fn job_memory(ctx: &Context, flavor: crate::policy::QueueFlavor, job: &[u8]) -> u64 {
    let calls = Calls::new(ctx);
    jobs::job_keys(flavor, job)
        .iter()
        .map(|k| calls.memory_usage(k).unwrap_or(0))
        .sum()
}

/// Sidekiq: its structures kept, its dead set trimmed to Sidekiq's own limits.
fn sidekiq(ctx: &Context, survey: &Survey, found: &mut Found) {
    // Per namespace: (proven, queues, queued jobs, retry, schedule, dead, dead has a TTL).
    let mut by_ns: BTreeMap<Vec<u8>, [u64; 6]> = BTreeMap::new();
    for (db, ns) in &survey.sidekiq {
        keyspace::select_db(ctx, *db);
        let calls = Reader::new(ctx);
        let k = |suffix: &str| [ns.as_slice(), suffix.as_bytes()].concat();
        let job_in = |zset: &[u8]| {
            calls
                .zfirst(zset)
                .is_some_and(|(m, _)| recognise::is_sidekiq_job(&m))
        };
        let queue_names = calls.smembers(&k("queues"));
        let queued: u64 = queue_names
            .iter()
            .take(100)
            .map(|q| calls.llen(&[k("queue:").as_slice(), q].concat()))
            .sum();
        let queued_job = queue_names.iter().take(100).any(|q| {
            calls
                .lfirst(&[k("queue:").as_slice(), q].concat())
                .is_some_and(|m| recognise::is_sidekiq_job(&m))
        });
        let proven = calls.key_type(&k("stat:processed")) == "string"
            || ["retry", "schedule", "dead"].iter().any(|z| job_in(&k(z)))
            || queued_job;
        if !proven {
            continue;
        }
        let dead_ttl = calls.pttl(&k("dead")) > 0;
        let e = by_ns.entry(ns.clone()).or_default();
        e[0] += queue_names.len() as u64;
        e[1] += queued;
        e[2] += calls.zcard(&k("retry"));
        e[3] += calls.zcard(&k("schedule"));
        e[4] += calls.zcard(&k("dead"));
        e[5] += dead_ttl as u64;
    }
    for (ns, [queues, queued, retry, schedule, dead, dead_ttl]) in by_ns {
        let Ok(ns_text) = std::str::from_utf8(&ns) else {
            continue;
        };
        let ns_glob = text(&recognise::glob_of_name(&ns));
        let mut keep = suggestion(
            format!(
                "sidekiq{}",
                match ns.is_empty() {
                    true => String::new(),
                    false => format!("-{}", recognise::rule_name("", &ns)),
                }
            ),
            "keep",
            "sidekiq",
        );
        keep.globs = [
            "queues",
            "queue:*",
            "retry",
            "schedule",
            "processes",
            "stat:*",
        ]
        .iter()
        .map(|s| format!("{ns_glob}{s}"))
        .collect();
        keep.evidence = format!(
            "Sidekiq{}: {} ({} queued), {} retrying, {} scheduled, {} dead",
            match ns_text.is_empty() {
                true => String::new(),
                false => format!(" under {ns_text}"),
            },
            plural(queues, "queue", "queues"),
            count(queued),
            count(retry),
            count(schedule),
            count(dead)
        );
        keep.reason = "its queue lists, queues, retry, schedule, processes and stat:* keys are live work and counters: protected".into();
        found.suggestions.push(keep);
        if dead > 0 && dead_ttl == 0 {
            let mut trim = suggestion(
                format!(
                    "sidekiq-dead{}",
                    match ns.is_empty() {
                        true => String::new(),
                        false => format!("-{}", recognise::rule_name("", &ns)),
                    }
                ),
                "trim",
                "sidekiq",
            );
            trim.globs = vec![format!("{ns_glob}dead")];
            trim.key_type = Some(KeyType::ZSet);
            trim.value = json!({"max_len": SIDEKIQ_DEAD_MAX_LEN, "max_age": SIDEKIQ_DEAD_MAX_AGE, "score_unit": "s"});
            trim.evidence = format!("{} dead jobs in {ns_text}dead", count(dead));
            trim.reason = SIDEKIQ_DEAD_REASON.into();
            trim.sources = Some([collapse(&[ns.as_slice(), b"dead"].concat())].into());
            found.suggestions.push(trim);
        }
    }
}

/// The keys remembered of group `i` for content checks.
fn samples(survey: &Survey, i: usize) -> &[(i32, Vec<u8>)] {
    survey
        .extras
        .get(i)
        .map(|e| e.samples.as_slice())
        .unwrap_or(&[])
}

/// RQ: its keys kept (RQ expires finished and failed jobs itself).
fn rq(ctx: &Context, survey: &Survey, found: &mut Found) {
    let groups = survey.grouper.groups();
    let rq_groups: Vec<usize> = (0..groups.len())
        .filter(|&i| groups[i].pattern.starts_with(b"rq:"))
        .collect();
    let mut proven = false;
    for db in &survey.rq_dbs {
        keyspace::select_db(ctx, *db);
        let calls = Reader::new(ctx);
        if calls.key_type(b"rq:queues") == "set" {
            proven = true;
        }
        for &i in &rq_groups {
            if !groups[i].pattern.starts_with(b"rq:job:") {
                continue;
            }
            for (sdb, name) in samples(survey, i) {
                if sdb != db {
                    continue;
                }
                let status = calls.hget(name, b"status");
                let created = calls.hget(name, b"created_at");
                proven |= recognise::is_rq_job(status.as_deref(), created.as_deref());
            }
        }
    }
    if !proven {
        return;
    }
    let sum = |prefixes: &[&[u8]]| -> u64 {
        rq_groups
            .iter()
            .filter(|&&i| prefixes.iter().any(|p| groups[i].pattern.starts_with(p)))
            .map(|&i| groups[i].keys)
            .sum()
    };
    let jobs = sum(&[b"rq:job:"]);
    let mut by_registry: Vec<String> = Vec::new();
    for (what, prefix) in [
        ("queued", &b"rq:queue:"[..]),
        ("started", b"rq:wip:"),
        ("started", b"rq:started:"),
        ("finished", b"rq:finished:"),
        ("failed", b"rq:failed:"),
        ("deferred", b"rq:deferred:"),
        ("scheduled", b"rq:scheduled:"),
    ] {
        let mut n = 0u64;
        for &i in &rq_groups {
            if !groups[i].pattern.starts_with(prefix) {
                continue;
            }
            for (db, name) in samples(survey, i) {
                keyspace::select_db(ctx, *db);
                let calls = Reader::new(ctx);
                n += match what {
                    "queued" => calls.llen(name),
                    _ => calls.zcard(name),
                };
            }
        }
        if n > 0 {
            by_registry.push(format!("{} {what}", count(n)));
        }
    }
    let mut keep = suggestion("rq".into(), "keep", "rq");
    keep.globs = vec!["rq:*".into()];
    keep.evidence = format!(
        "RQ: {}{}",
        plural(jobs, "job hash", "job hashes"),
        match by_registry.is_empty() {
            true => String::new(),
            false => format!(" ({})", by_registry.join(", ")),
        }
    );
    keep.reason = "RQ expires finished jobs itself (result_ttl, default 500 s) and failed ones (failure_ttl, one year); a job hash without a TTL is queued or started (live) or kept on purpose (result_ttl=-1): protected".into();
    for &i in &rq_groups {
        found
            .reasons
            .insert(groups[i].pattern.clone(), "RQ's keys: protected".into());
    }
    found.suggestions.push(keep);
}

/// Active-run sets: one runs rule per base pattern.
fn runs(ctx: &Context, survey: &Survey, now_ms: i64, found: &mut Found) {
    let mut by_pattern: BTreeMap<Vec<u8>, (u64, u64, Option<f64>)> = BTreeMap::new();
    for (db, base) in &survey.runs {
        keyspace::select_db(ctx, *db);
        let calls = Reader::new(ctx);
        let index = [base.as_slice(), b":index"].concat();
        let e = by_pattern.entry(collapse(base)).or_default();
        e.0 += 1;
        e.1 += calls.zcard(&index);
        if let Some((_, score)) = calls.zfirst(&index) {
            e.2 = Some(e.2.map_or(score, |o| o.min(score)));
        }
    }
    for (pattern, (sets, runs, oldest)) in by_pattern {
        if std::str::from_utf8(&pattern).is_err() {
            continue;
        }
        let glob = text(&recognise::glob_of_pattern(&pattern));
        let mut s = suggestion(
            match recognise::rule_name("", &pattern) {
                // `runs:active:{*}:web` is named `runs-active-web`, not `runs-runs-active-web`.
                name if name == "runs" || name.starts_with("runs-") => name,
                name => format!("runs-{name}"),
            },
            "runs",
            "runs",
        );
        s.globs = vec![glob.clone()];
        s.value = json!({"max_age": RUNS_MAX_AGE});
        s.evidence = format!(
            "{} matching {glob} (a sorted-set index and its data hash each), {} runs{}",
            plural(sets, "active-run set", "active-run sets"),
            count(runs),
            oldest_ago("started", now_ms, oldest)
        );
        s.reason = "the module's default for runs rules is 3h: a run still listed after that is taken as abandoned by its owner; both halves are removed together".into();
        found.suggestions.push(s);
    }
}

/// Celery results, sessions, caches and streams: group `i`'s rule, or why it gets none.
#[allow(clippy::too_many_arguments)]
fn one_group(
    ctx: &Context,
    read: &CallOptions,
    survey: &Survey,
    i: usize,
    group: &Group,
    claimed: Option<&Policy>,
    (now_ms, maxmemory): (i64, u64),
    found: &mut Found,
) {
    let Some(extra) = survey.extras.get(i) else {
        return;
    };
    if group.queue.is_some() || group.no_ttl == 0 && !is_stream_group(group) {
        return;
    }
    let types = group.types();
    let first = extra.samples.first();
    let governed = first.is_some_and(|(_, name)| {
        let t = types.first().map(|t| t.0).unwrap_or(KeyType::String);
        claimed.is_some_and(|p| p.rule_for(name, t).is_some())
    });
    if governed {
        return;
    }
    let pattern = &group.pattern;
    let reason = |why: &str| (pattern.clone(), why.to_string());
    if std::str::from_utf8(pattern).is_err() {
        found.reasons.insert(
            pattern.clone(),
            "names are not UTF-8: a policy file cannot name them; no rule suggested".into(),
        );
        return;
    }
    let only = |t: KeyType| types.iter().all(|(x, _)| *x == t);
    // A stream is neither a lock nor a counter, whatever its name (`metrics:cpu` is a log).
    if !only(KeyType::Stream) && recognise::looks_like_lock_or_counter(pattern) {
        let (p, r) =
            reason("the names look like locks or counters: never given a TTL; no rule suggested");
        found.reasons.insert(p, r);
        return;
    }
    if only(KeyType::List) {
        let (p, r) = reason(LIST_REASON);
        found.reasons.insert(p, r);
        return;
    }
    let glob = text(&recognise::glob_of_pattern(pattern));
    let memory = group.memory();
    if let Some(kind) = recognise::celery_kind(pattern).filter(|_| only(KeyType::String)) {
        let proven = kind == CeleryKind::Taskset
            || extra.samples.iter().any(|(db, name)| {
                keyspace::select_db(ctx, *db);
                Reader::new(ctx)
                    .get_head(name)
                    .is_some_and(|v| recognise::is_celery_result(&v))
            });
        if proven {
            let name = match kind {
                CeleryKind::Task => "celery-results",
                CeleryKind::Taskset => "celery-group-results",
            };
            let mut s = suggestion(name.into(), "ttl", "celery");
            s.globs = vec![glob.clone()];
            s.key_type = Some(KeyType::String);
            s.value = json!(CELERY_TTL);
            s.evidence = format!(
                "{} without TTL matching {glob} (of {}), {}",
                things(group.no_ttl, &types),
                count(group.keys),
                bytes(memory)
            );
            s.reason = CELERY_REASON.into();
            s.sources = Some([pattern.clone()].into());
            found.suggestions.push(s);
            return;
        }
    }
    let strings_or_hashes = types
        .iter()
        .all(|(t, _)| matches!(t, KeyType::String | KeyType::Hash));
    if let Some(shape) = recognise::shape_of(pattern).filter(|_| strings_or_hashes) {
        let with_ttl = group.keys - group.no_ttl;
        let longest = extra
            .max_expire_at_ms
            .map(|at| at.saturating_sub(now_ms))
            .filter(|ms| *ms > 0);
        let (ttl_ms, why) = match (longest, shape) {
            (Some(ms), _) => {
                let ttl = round_up_duration_ms(ms);
                (ttl, format!(
                    "{} with a TTL, the longest {} left: the application's own lifetime, rounded up to {}",
                    plural(with_ttl, "key of this group", "keys of this group"),
                    age_words(ms),
                    duration_text(ttl)
                ))
            }
            (None, Shape::Session) => (SESSION_DEFAULT_TTL_MS, "no key of this group has a TTL to learn from: 14d, the longest common framework default for sessions (Django's is 2 weeks)".to_string()),
            (None, Shape::Cache) => (CACHE_DEFAULT_TTL_MS, "no key of this group has a TTL to learn from: 1d, a conservative default for cached data that can be recomputed".to_string()),
        };
        let mut s = suggestion(recognise::rule_name("", pattern), "ttl", shape.owner());
        s.globs = vec![glob.clone()];
        s.key_type = match types.as_slice() {
            [(t, _)] => Some(*t),
            _ => None,
        };
        s.value = json!(duration_text(ttl_ms));
        s.evidence = format!(
            "{} without TTL matching {glob} (of {}), {}",
            things(group.no_ttl, &types),
            count(group.keys),
            bytes(memory)
        );
        s.reason = why;
        s.sources = Some([pattern.clone()].into());
        found.suggestions.push(s);
        return;
    }
    if only(KeyType::Stream) {
        match growing_stream(ctx, read, group, &extra.streams, (now_ms, maxmemory)) {
            Ok(s) => found.suggestions.push(Suggestion {
                globs: vec![glob.clone()],
                sources: Some([pattern.clone()].into()),
                ..s
            }),
            Err(why) => {
                found.reasons.insert(pattern.clone(), why);
            }
        }
    }
}

fn is_stream_group(group: &Group) -> bool {
    group.types().iter().all(|(t, _)| *t == KeyType::Stream)
}

/// What XINFO says of one stream.
struct StreamFacts {
    length: u64,
    entries_added: Option<u64>,
    first_ms: Option<i64>,
    /// The oldest entry a consumer group has not read or has pending (its id time).
    oldest_unconsumed_ms: Option<i64>,
    groups: u64,
}

/// A stream group that only grows: a trim by age that spares unconsumed entries.
fn growing_stream(
    ctx: &Context,
    read: &CallOptions,
    group: &Group,
    streams: &[(i32, Vec<u8>)],
    (now_ms, maxmemory): (i64, u64),
) -> Result<Suggestion, String> {
    if group.no_ttl < group.keys {
        return Err(
            "some streams of this group have a TTL: their owner bounds them; no rule suggested"
                .into(),
        );
    }
    if streams.len() > MAX_STREAMS_CHECKED || (streams.len() as u64) < group.keys {
        return Err(format!(
            "more than {MAX_STREAMS_CHECKED} streams: not every one was checked; no rule suggested"
        ));
    }
    let (mut entries, mut oldest, mut unconsumed, mut consumer_groups) = (0u64, None, None, 0u64);
    for (db, name) in streams {
        keyspace::select_db(ctx, *db);
        let facts =
            stream_facts(ctx, read, name).ok_or("a stream could not be read; no rule suggested")?;
        match facts.entries_added {
            Some(added) if added == facts.length => {}
            Some(_) => return Err("entries were removed from these streams (entries added > length): their owner trims them; no rule suggested".into()),
            None => return Err("this server does not say how many entries were ever added (XINFO entries-added): no rule suggested".into()),
        }
        entries += facts.length;
        oldest = min_opt(oldest, facts.first_ms);
        unconsumed = min_opt(unconsumed, facts.oldest_unconsumed_ms);
        consumer_groups += facts.groups;
    }
    if let Some(why) = recognise::stream_trim_refused(now_ms, oldest, unconsumed) {
        return Err(why);
    }
    let (max_age_ms, by_consumers) = recognise::stream_max_age_ms(now_ms, unconsumed);
    let mut s = suggestion(
        format!("stream-{}", recognise::rule_name("", &group.pattern)),
        "trim",
        "stream",
    );
    s.key_type = Some(KeyType::Stream);
    s.value = json!({"max_age": duration_text(max_age_ms)});
    s.evidence = format!(
        "{} that only {} (entries added = length: nothing ever removed), {} entries{}, {}{}",
        things(group.keys, &group.types()),
        if group.keys == 1 { "grows" } else { "grow" },
        count(entries),
        match oldest {
            Some(ms) => format!(", the oldest {} old", age_words(now_ms.saturating_sub(ms))),
            None => String::new(),
        },
        bytes(group.memory()),
        match consumer_groups {
            0 => String::new(),
            n => format!(", {}", plural(n, "consumer group", "consumer groups")),
        }
    );
    s.reason = match by_consumers {
        true => format!(
            "a consumer group has not read, or still has pending, an entry {} old: max_age {} keeps it (entries older than a week are otherwise not needed by a log)",
            age_words(now_ms.saturating_sub(unconsumed.unwrap_or(now_ms))),
            duration_text(max_age_ms)
        ),
        false => "a week of entries is kept; no consumer group has an unread or pending entry older than that".into(),
    };
    // A memory limit could drop what a consumer group has not read: only for a log.
    if consumer_groups == 0 && group.memory() > BIG_STREAM_BYTES {
        let (budget, why) = memory_budget(maxmemory, group.keys);
        s.value["max_memory"] = json!(size_text(budget));
        s.reason = format!(
            "{}; over 64 MB and read by no consumer group, so each stream is also kept within max_memory {} ({why})",
            s.reason,
            size_text(budget)
        );
    }
    Ok(s)
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn id_ms(v: Option<&Val>) -> Option<i64> {
    match v? {
        Val::Bytes(b) => recognise::stream_id_ms(b),
        _ => None,
    }
}

fn stream_facts(ctx: &Context, read: &CallOptions, name: &[u8]) -> Option<StreamFacts> {
    let info = reads::read(ctx, read, name, "XINFO", &[b"STREAM", name])?;
    let length = int_of(field(&info, "length"))?.max(0) as u64;
    let entries_added = int_of(field(&info, "entries-added")).map(|n| n.max(0) as u64);
    let first_ms = match field(&info, "first-entry") {
        Some(Val::Array(entry)) => id_ms(entry.first()),
        _ => None,
    };
    let groups = reads::read(ctx, read, name, "XINFO", &[b"GROUPS", name])?;
    let Val::Array(groups) = groups else {
        return None;
    };
    let mut oldest = None;
    for g in &groups {
        let group_name = match field(g, "name") {
            Some(Val::Bytes(b)) => b.clone(),
            _ => continue,
        };
        // Unread entries come after the last delivered id; all of them when nothing was read.
        let lag = int_of(field(g, "lag"));
        let unread_from = match (lag, id_ms(field(g, "last-delivered-id"))) {
            (Some(0), _) => None,
            (_, Some(ms)) => Some(ms.max(first_ms.unwrap_or(0))),
            (_, None) => first_ms,
        };
        let pending_from = match reads::read(ctx, read, name, "XPENDING", &[name, &group_name]) {
            Some(Val::Array(summary)) if int_of(summary.first()).unwrap_or(0) > 0 => {
                id_ms(summary.get(1))
            }
            _ => None,
        };
        oldest = min_opt(oldest, min_opt(unread_from, pending_from));
    }
    Some(StreamFacts {
        length,
        entries_added,
        first_ms,
        oldest_unconsumed_ms: oldest,
        groups: groups.len() as u64,
    })
}
