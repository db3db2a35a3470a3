//! `RETENTION.SUGGEST [MATCH <glob>] [FORMAT map|policy]`: a complete policy for this
//! keyspace, from the owners its keys prove (BullMQ/Bull, Celery, Sidekiq, RQ, sessions,
//! caches, streams that only grow, active-run sets), each rule with its evidence and what a
//! dry run of it would change now; groups without a provable owner are listed, not ruled.
//!
//! Like `RETENTION.REPORT` it walks every database in slices from the before-sleep hook (only
//! the caller waits) and only reads, so it runs on replicas too; a change of role stops it.
//! Phases, each advancing in slices: a survey walk groups the keys (`report::group`) and
//! notes what owners need (`Survey`); `analyse` proves owners and writes the candidate rules,
//! a queue or a group at a time; the candidate policy is parsed a few rules at a time; a
//! dry-run walk applies it to every key as the sweep would (`plan_ttl`) and finds keys a
//! rule's glob would reach beyond the groups it was suggested for (they get a keep rule, and
//! the dry run is repeated); `effect` then runs the cleaner's and the trims' dry runs; last,
//! the policy with its comments is written and parsed with the module's own parser, and the
//! reply's rule maps built, a few rules at a time.

mod analyse;
pub mod effect;
pub mod limits;
mod reads;
pub mod recognise;
mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use redis_module::{CallOptions, Context, RedisString, RedisValue};

use crate::args::{Args, OptionSet};
use crate::error::{Error, Result};
use crate::policy::{parse_policy, Action, Glob, KeyType, Policy, Rule};
use crate::queue::layout::FinishedSet;
use crate::report::group::{collapse, is_queue, Grouper, KeyFacts};
use crate::report::json_reply;
use crate::report::{
    check_sliced_walk, format_arg, is_master, key_type_of, match_arg, memory_usage, read_options,
    walk_slice, KeyspaceWalk, WalkedKey,
};
use crate::sweep::blocked::{self, SlicedCommand};
use crate::sweep::plan::{plan_ttl, TtlPlan};
use crate::trim::work::Shape;
use crate::{keyspace, stats};
use effect::{Effect, EffectItem};

const COMMAND: &str = "RETENTION.SUGGEST";
/// Keys remembered per group for content checks.
const SAMPLES_PER_GROUP: usize = 8;
/// Streams of one group checked (XINFO) at most: a group with more is not ruled.
pub const MAX_STREAMS_CHECKED: usize = 100;
/// Key names kept in keep rules for keys a rule's glob reaches beyond its groups; with more,
/// the rule is dropped instead.
const MAX_PROTECTED_NAMES: usize = 1_000;
/// Dry-run walks at most (each one after keep rules were added for stray keys).
const MAX_DRY_RUNS: u32 = 3;
/// Groups listed as unknown at most (biggest first).
const MAX_UNKNOWN: usize = 1_000;
/// Longest key name sampled.
const MAX_SAMPLE_NAME: usize = 1_024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Map,
    Policy,
}

#[derive(Debug, Clone)]
pub struct SuggestOptions {
    pub match_glob: Option<Glob>,
    pub format: Format,
}

pub fn cmd_suggest(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    let opts = parse_args(Args::new(args, COMMAND)?)?;
    check_sliced_walk(ctx, COMMAND, opts.match_glob.as_ref())?;
    let run = SuggestRun::new(ctx, opts);
    Ok(blocked::block(ctx, Box::new(run)))
}

fn parse_args(mut args: Args) -> Result<SuggestOptions> {
    let mut opts = SuggestOptions {
        match_glob: None,
        format: Format::Map,
    };
    let mut seen = OptionSet::default();
    while let Some(option) = args.next_option(&mut seen, &["MATCH", "FORMAT"])? {
        match option {
            "MATCH" => opts.match_glob = Some(match_arg(&mut args)?),
            "FORMAT" => {
                opts.format = format_arg(
                    &mut args,
                    &[("map", Format::Map), ("policy", Format::Policy)],
                )?
            }
            _ => unreachable!("next_option returns only listed options"),
        }
    }
    Ok(opts)
}

/// One suggested rule: what the policy file gets, and what the reply says of it.
#[derive(Debug, Clone)]
pub struct Suggestion {
    pub name: String,
    /// keep|ttl|trim|queue|runs: the action's field in the policy file.
    pub action: &'static str,
    pub owner: &'static str,
    /// The policy's `match`: a glob, or a list of them.
    pub globs: Vec<String>,
    pub key_type: Option<KeyType>,
    /// The action's value in the policy file (`true`, `"1d"`, `{...}`).
    pub value: serde_json::Value,
    /// What the keyspace shows (numbers), then why these limits.
    pub evidence: String,
    pub reason: String,
    /// ttl/trim rules: the group patterns the rule was suggested for; a key its glob reaches
    /// outside them is protected (or the rule dropped).
    pub sources: Option<HashSet<Vec<u8>>>,
    /// queue rules: the queues under the prefix, in their databases.
    pub queues: Vec<(i32, Vec<u8>, crate::policy::QueueFlavor)>,
    pub effect: Effect,
}

/// What the survey walk remembers of one group besides `report::group`'s counts.
#[derive(Debug, Clone, Default)]
pub struct GroupExtra {
    /// The latest absolute expire time among the group's keys with a TTL.
    pub max_expire_at_ms: Option<i64>,
    pub samples: Vec<(i32, Vec<u8>)>,
    /// Its streams (up to `MAX_STREAMS_CHECKED + 1`).
    pub streams: Vec<(i32, Vec<u8>)>,
}

/// What the survey walk found.
pub struct Survey {
    pub grouper: Grouper,
    pub extras: Vec<GroupExtra>,
    /// BullMQ/Bull queue bases (`<prefix>:<queue>:`) per database.
    pub queues: BTreeSet<(i32, Vec<u8>)>,
    /// Sidekiq namespaces (`""`, `"app:"`) whose `queues` set exists, per database.
    pub sidekiq: BTreeSet<(i32, Vec<u8>)>,
    /// Databases with `rq:` keys.
    pub rq_dbs: BTreeSet<i32>,
    /// Active-run bases (an `:index` zset with its `:data` hash), per database.
    pub runs: BTreeSet<(i32, Vec<u8>)>,
}

impl Survey {
    fn new() -> Survey {
        Survey {
            grouper: Grouper::new(0),
            extras: Vec::new(),
            queues: BTreeSet::new(),
            sidekiq: BTreeSet::new(),
            rq_dbs: BTreeSet::new(),
            runs: BTreeSet::new(),
        }
    }

    fn add(&mut self, ctx: &Context, read: &CallOptions, key: &WalkedKey) {
        let facts = KeyFacts {
            name: key.name,
            db: key.db,
            key_type: key.key_type,
            has_ttl: key.expire_at_ms.is_some(),
            len: key.len,
            rule: None,
        };
        let slot =
            self.grouper
                .add_placed(&facts, &mut |other| key_type_of(ctx, other), &mut || {
                    memory_usage(ctx, read, key.name, key.len)
                });
        if let Some(i) = slot {
            if self.extras.len() <= i {
                self.extras.resize_with(i + 1, GroupExtra::default);
            }
            let extra = &mut self.extras[i];
            extra.max_expire_at_ms = extra.max_expire_at_ms.max(key.expire_at_ms);
            if extra.samples.len() < SAMPLES_PER_GROUP && key.name.len() <= MAX_SAMPLE_NAME {
                extra.samples.push((key.db, key.name.to_vec()));
            }
            if key.key_type == KeyType::Stream && extra.streams.len() <= MAX_STREAMS_CHECKED {
                extra.streams.push((key.db, key.name.to_vec()));
            }
        }
        self.note_owner_keys(ctx, key);
    }

    /// Keys that prove an owner by their name and type: a queue's id counter or meta hash, a
    /// Sidekiq `queues` set, any `rq:` key, an active-run index.
    fn note_owner_keys(&mut self, ctx: &Context, key: &WalkedKey) {
        let name = key.name;
        let queue_base = match key.key_type {
            KeyType::String => name.strip_suffix(b"id"),
            KeyType::Hash => name.strip_suffix(b"meta"),
            _ => None,
        };
        if let Some(base) = queue_base.filter(|b| b.ends_with(b":")) {
            let known = self.queues.contains(&(key.db, base.to_vec()));
            if !known && is_queue(base, &mut |other| key_type_of(ctx, other)) {
                self.queues.insert((key.db, base.to_vec()));
            }
        }
        if key.key_type == KeyType::Set {
            if let Some(ns) = recognise::sidekiq_namespace(name) {
                self.sidekiq.insert((key.db, ns.to_vec()));
            }
        }
        if name.starts_with(b"rq:") {
            self.rq_dbs.insert(key.db);
        }
        if key.key_type == KeyType::ZSet {
            if let Some(base) = name.strip_suffix(b":index") {
                let data = [base, b":data"].concat();
                if key_type_of(ctx, &data) == Some(KeyType::Hash) {
                    self.runs.insert((key.db, base.to_vec()));
                }
            }
        }
    }
}

/// Keys of no suggested rule, per pattern.
#[derive(Debug, Clone, Default)]
pub struct Unknown {
    pub keys: u64,
    pub keys_without_ttl: u64,
    pub memory_bytes: u64,
    pub types: BTreeMap<&'static str, u64>,
}

/// One dry-run walk of the candidate policy.
struct DryRun {
    walk: KeyspaceWalk,
    state: DryState,
}

/// What a dry-run walk found so far. The policy's rules are the suggestions, in order.
struct DryState {
    policy: Policy,
    effects: Vec<Effect>,
    /// Keys a rule would change outside the groups it was suggested for: (rule, name).
    strays: Vec<(usize, Vec<u8>)>,
    unknown: HashMap<Vec<u8>, Unknown>,
    items: VecDeque<(usize, i32, EffectItem)>,
}

enum Phase {
    Survey,
    Analyse(Box<analyse::Analysis>),
    DryRun(Box<DryRun>),
    /// The candidate rules parsed, a few at a time.
    Plan(Box<PolicyBuild>),
    Effects(Box<DryRun>),
    /// The policy with comments and the reply's rule maps, a few rules at a time.
    Render(Box<PolicyBuild>, Box<DryRun>),
}

struct SuggestRun {
    opts: SuggestOptions,
    read: CallOptions,
    started: Instant,
    started_as_master: bool,
    slices: u64,
    now_ms: i64,
    walk: KeyspaceWalk,
    survey: Survey,
    suggestions: Vec<Suggestion>,
    /// Why a group got no rule, by pattern.
    reasons: HashMap<Vec<u8>, String>,
    dry_runs: u32,
    phase: Option<Phase>,
}

impl SuggestRun {
    fn new(ctx: &Context, opts: SuggestOptions) -> SuggestRun {
        SuggestRun {
            walk: KeyspaceWalk::new(ctx, opts.match_glob.clone(), COMMAND),
            opts,
            read: read_options(),
            started: Instant::now(),
            started_as_master: is_master(ctx),
            slices: 0,
            now_ms: crate::time::now_ms(),
            survey: Survey::new(),
            suggestions: Vec::new(),
            reasons: HashMap::new(),
            dry_runs: 0,
            phase: Some(Phase::Survey),
        }
    }

    /// Works until `deadline`; the reply once done.
    fn advance(&mut self, ctx: &Context, deadline: Instant) -> Result<Option<RedisValue>> {
        loop {
            let phase = self.phase.take().unwrap_or(Phase::Survey);
            let next = match phase {
                Phase::Survey => {
                    let (survey, read) = (&mut self.survey, &self.read);
                    let done = self
                        .walk
                        .advance(ctx, deadline, &mut |ctx, key| survey.add(ctx, read, key))?;
                    if !done {
                        self.phase = Some(Phase::Survey);
                        return Ok(None);
                    }
                    self.now_ms = crate::time::now_ms();
                    Phase::Analyse(Box::new(analyse::Analysis::new(&self.survey)))
                }
                Phase::Analyse(mut analysis) => {
                    let (read, survey) = (&self.read, &self.survey);
                    if !analysis.advance(ctx, read, survey, self.now_ms, deadline) {
                        self.phase = Some(Phase::Analyse(analysis));
                        return Ok(None);
                    }
                    let found = analysis.finish();
                    self.suggestions = found.suggestions;
                    self.reasons = found.reasons;
                    Phase::Plan(Box::new(PolicyBuild::new(false)))
                }
                Phase::Plan(mut plan) => {
                    if !plan.advance(&self.suggestions, deadline)? {
                        self.phase = Some(Phase::Plan(plan));
                        return Ok(None);
                    }
                    Phase::DryRun(Box::new(self.dry_run(ctx, plan.policy())))
                }
                Phase::DryRun(mut dry) => {
                    let now_ms = self.now_ms;
                    let (suggestions, read) = (&self.suggestions, &self.read);
                    let DryRun { walk, state } = &mut *dry;
                    let done = walk.advance(ctx, deadline, &mut |ctx, key| {
                        dry_run_key(ctx, read, now_ms, suggestions, state, key)
                    })?;
                    if !done {
                        self.phase = Some(Phase::DryRun(dry));
                        return Ok(None);
                    }
                    if dry.state.strays.is_empty() {
                        Phase::Effects(dry)
                    } else {
                        self.protect_strays(&dry.state.strays);
                        Phase::Plan(Box::new(PolicyBuild::new(false)))
                    }
                }
                Phase::Effects(mut dry) => {
                    if self.run_effects(ctx, &mut dry, deadline) {
                        for (s, e) in self.suggestions.iter_mut().zip(&dry.state.effects) {
                            s.effect = *e;
                        }
                        Phase::Render(Box::new(PolicyBuild::new(true)), dry)
                    } else {
                        self.phase = Some(Phase::Effects(dry));
                        return Ok(None);
                    }
                }
                Phase::Render(mut text, dry) => {
                    if !text.advance(&self.suggestions, deadline)? {
                        self.phase = Some(Phase::Render(text, dry));
                        return Ok(None);
                    }
                    return Ok(Some(self.reply(&dry, *text)));
                }
            };
            self.phase = Some(next);
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// A new dry-run walk of the current suggestions (`policy`, parsed from them).
    fn dry_run(&mut self, ctx: &Context, policy: Policy) -> DryRun {
        self.dry_runs += 1;
        DryRun {
            walk: KeyspaceWalk::new(ctx, self.opts.match_glob.clone(), COMMAND),
            state: DryState {
                effects: vec![Effect::default(); self.suggestions.len()],
                policy,
                strays: Vec::new(),
                unknown: HashMap::new(),
                items: VecDeque::new(),
            },
        }
    }

    /// Keys a rule would change outside its groups get a keep rule by name (first); with too
    /// many, or on the last dry run, the rules that reach them are dropped instead.
    fn protect_strays(&mut self, strays: &[(usize, Vec<u8>)]) {
        let rules: BTreeSet<usize> = strays.iter().map(|(r, _)| *r).collect();
        let utf8 = strays.iter().all(|(_, n)| std::str::from_utf8(n).is_ok());
        let keep_ok = utf8 && strays.len() <= MAX_PROTECTED_NAMES && self.dry_runs < MAX_DRY_RUNS;
        if keep_ok {
            let names: BTreeSet<String> = strays
                .iter()
                .map(|(_, n)| String::from_utf8_lossy(&recognise::glob_of_name(n)).into_owned())
                .collect();
            let rule_names: Vec<&str> = rules
                .iter()
                .filter_map(|r| self.suggestions.get(*r).map(|s| s.name.as_str()))
                .collect();
            let keep = render::protect_strays(names, &rule_names, &self.suggestions);
            self.suggestions.insert(0, keep);
            return;
        }
        for &r in rules.iter().rev() {
            if r < self.suggestions.len() {
                let dropped = self.suggestions.remove(r);
                for pattern in dropped.sources.iter().flatten() {
                    self.reasons.insert(
                        pattern.clone(),
                        format!(
                            "a rule for this group ({}) would also reach other keys its glob matches: no rule suggested",
                            dropped.name
                        ),
                    );
                }
            }
        }
    }

    /// Runs the dry-run work items until `deadline`; true when all are done.
    fn run_effects(&mut self, ctx: &Context, dry: &mut DryRun, deadline: Instant) -> bool {
        let dry = &mut dry.state;
        while let Some((rule, db, item)) = dry.items.front_mut() {
            keyspace::select_db(ctx, *db);
            let env = effect::dry_env(self.now_ms, *db);
            let effect = &mut dry.effects[*rule];
            if !item.step(ctx, &self.read, &env, deadline, effect) {
                return false;
            }
            dry.items.pop_front();
            if Instant::now() >= deadline {
                return dry.items.is_empty();
            }
        }
        true
    }

    fn reply(&mut self, dry: &DryRun, mut built: PolicyBuild) -> RedisValue {
        let maps = std::mem::take(&mut built.maps);
        let text = built.text();
        if self.opts.format == Format::Policy {
            return RedisValue::BulkString(text);
        }
        let unknown = render::unknown(&dry.state.unknown, &self.reasons, MAX_UNKNOWN);
        let walk = serde_json::json!({
            "databases": self.walk.databases(),
            "keys": self.walk.keys(),
            "duration_ms": self.started.elapsed().as_millis() as u64,
            "slices": self.slices,
            "match": self.opts.match_glob.as_ref().map(|g| String::from_utf8_lossy(g.pattern()).into_owned()),
        });
        RedisValue::OrderedMap(
            [
                (stats::key("policy"), RedisValue::BulkString(text)),
                (stats::key("rules"), RedisValue::Array(maps)),
                (stats::key("unknown"), json_reply(&unknown)),
                (stats::key("walk"), json_reply(&walk)),
            ]
            .into_iter()
            .collect(),
        )
    }
}

/// Rules rendered and parsed per step: a few milliseconds of work at most.
const RULES_PER_STEP: usize = 32;

/// The suggested policy rendered and parsed with the module's own parser a few rules at a
/// time, so that thousands of rules fit in short slices.
struct PolicyBuild {
    with_comments: bool,
    next: usize,
    rules: Vec<Rule>,
    names: HashSet<String>,
    /// The policy's text so far (with comments only): its head and the rules done.
    text: String,
    /// The reply's map of each rule (with comments only).
    maps: Vec<RedisValue>,
}

impl PolicyBuild {
    fn new(with_comments: bool) -> PolicyBuild {
        PolicyBuild {
            with_comments,
            next: 0,
            rules: Vec::new(),
            names: HashSet::new(),
            text: String::new(),
            maps: Vec::new(),
        }
    }

    /// Works until `deadline`; true when every rule is done.
    fn advance(&mut self, suggestions: &[Suggestion], deadline: Instant) -> Result<bool> {
        while self.next < suggestions.len() {
            let end = (self.next + RULES_PER_STEP).min(suggestions.len());
            let chunk = &suggestions[self.next..end];
            let texts: Vec<String> = chunk
                .iter()
                .map(|s| render::rule_text(s, self.with_comments))
                .collect();
            let mut parsed = parse_policy(&render::document(&texts))
                .map_err(|e| internal(&format!("a suggested rule does not parse: {e}")))?;
            for rule in &parsed.rules {
                if !self.names.insert(rule.name.clone()) {
                    return Err(internal(&format!("two rules are named {}", rule.name)));
                }
            }
            self.rules.append(&mut parsed.rules);
            if self.with_comments {
                for rule in texts {
                    self.text.push_str(match self.text.is_empty() {
                        true => render::DOCUMENT_HEAD,
                        false => render::RULE_SEPARATOR,
                    });
                    self.text.push_str(&rule);
                }
                let maps = chunk.iter().map(|s| json_reply(&render::rule_map(s)));
                self.maps.extend(maps);
            }
            self.next = end;
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(self.next >= suggestions.len())
    }

    /// The policy's text, once every rule is done.
    fn text(self) -> String {
        match self.text.is_empty() {
            true => render::document(&[]),
            false => self.text + render::DOCUMENT_TAIL,
        }
    }

    fn policy(self) -> Policy {
        Policy::new(self.rules)
    }
}

/// What the candidate policy would do to one key now, as the sweep decides it.
fn dry_run_key(
    ctx: &Context,
    read: &CallOptions,
    now_ms: i64,
    suggestions: &[Suggestion],
    d: &mut DryState,
    key: &WalkedKey,
) {
    let Some(rule) = d.policy.rule_for(key.name, key.key_type) else {
        count_unknown(ctx, read, d, key);
        return;
    };
    let Some(action) = d.policy.rules.get(rule).map(|r| r.action.clone()) else {
        return;
    };
    let in_sources = |s: &Suggestion| {
        s.sources
            .as_ref()
            .is_none_or(|p| p.contains(&collapse(key.name)))
    };
    let suggestion = &suggestions[rule];
    match action {
        Action::Ttl(ttl) => {
            let plan = plan_ttl(&ttl, ttl.ttl_ms, key.expire_at_ms, now_ms);
            if !matches!(plan, TtlPlan::Set(_)) {
                return;
            }
            if !in_sources(suggestion) {
                d.strays.push((rule, key.name.to_vec()));
                return;
            }
            let e = &mut d.effects[rule];
            e.keys += 1;
            e.expiring_bytes += memory_usage(ctx, read, key.name, key.len).unwrap_or(0);
        }
        Action::Trim(trim) => {
            if key.expire_at_ms.is_some() {
                // Never suggested for keys with a TTL: protect it like a stray.
                d.strays.push((rule, key.name.to_vec()));
                return;
            }
            if !in_sources(suggestion) {
                d.strays.push((rule, key.name.to_vec()));
                return;
            }
            if let Some(shape) = Shape::of(key.key_type) {
                let item = EffectItem::trim(key.name.to_vec(), shape, trim);
                d.items.push_back((rule, key.db, item));
            }
        }
        Action::Runs(runs) => {
            if key.key_type == KeyType::ZSet {
                if let Some(base) = key.name.strip_suffix(b":index") {
                    let item = EffectItem::Runs {
                        index: [base, b":index"].concat(),
                        max_age_ms: runs.max_age_ms,
                    };
                    d.items.push_back((rule, key.db, item));
                }
            }
        }
        Action::Queue(q) => {
            // Once per queue: at its `completed`/`failed` set.
            if key.key_type != KeyType::ZSet {
                return;
            }
            for (db, base, flavor) in &suggestion.queues {
                if *db != key.db {
                    continue;
                }
                for (set, retention) in [
                    (FinishedSet::Completed, q.completed),
                    (FinishedSet::Failed, q.failed),
                ] {
                    let set_key = [base.as_slice(), set.name().as_bytes()].concat();
                    if let (true, Some(retention)) = (set_key == key.name, retention) {
                        let item = EffectItem::queue(*flavor, base.clone(), set, retention);
                        d.items.push_back((rule, key.db, item));
                    }
                }
            }
        }
        Action::Keep => {}
    }
}

fn count_unknown(ctx: &Context, read: &CallOptions, d: &mut DryState, key: &WalkedKey) {
    let pattern = collapse(key.name);
    let full = d.unknown.len() >= crate::report::group::MAX_GROUPS;
    let pattern = match (full, d.unknown.contains_key(&pattern)) {
        (true, false) => b"other".to_vec(),
        _ => pattern,
    };
    let u = d.unknown.entry(pattern).or_default();
    u.keys += 1;
    if key.expire_at_ms.is_none() {
        u.keys_without_ttl += 1;
    }
    u.memory_bytes += memory_usage(ctx, read, key.name, key.len).unwrap_or(0);
    *u.types.entry(key.key_type.name()).or_default() += 1;
}

fn internal(what: &str) -> Error {
    Error::Server(format!("RETENTION.SUGGEST internal error: {what}"))
}

impl SlicedCommand for SuggestRun {
    fn slice(&mut self, ctx: &Context, budget_us: u64) -> Option<Result<RedisValue>> {
        let stopped = || format!("{COMMAND} stopped");
        let budget = (budget_us, "retention-suggest");
        let outcome = walk_slice(ctx, self.started_as_master, stopped, budget, |deadline| {
            self.slices += 1;
            self.advance(ctx, deadline)
        });
        outcome.transpose()
    }

    fn name(&self) -> &'static str {
        COMMAND
    }

    fn db(&self) -> i32 {
        self.walk.current_db()
    }

    fn started_on_replica(&self) -> bool {
        !self.started_as_master
    }
}
