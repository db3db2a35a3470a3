//! One pass over the keyspace: a resumable cursor, the rules it applies, what it changed,
//! and the time-sliced loop that advances it.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis_module::Context;

use super::plan::{idle_allows, plan_pressure_ttl, plan_ttl, TtlPlan};
use super::work::{plan_work, run_queue, Planned, Queued, WorkEnv, WorkQueue};
use crate::history;
use crate::keyspace::{self, KeyName, KeyView, ScanCursor};
use crate::policy::{Action, Glob, Policy};
use crate::stats::{self, RuleTallies, Tally};
use crate::time::now_ms;
use crate::write::{Asker, ExpireBatch, Writer};

/// On keys that need nothing the clock is read once per this many scan steps (about one
/// key each), as expire.c does: reading it per key would cost more than the work. After a
/// step that set a TTL it is read at once: such a key can cost tens of microseconds (see
/// `scan_some`), and slices must end on time.
const STEPS_PER_CLOCK_CHECK: u32 = 16;
/// A pass whose rules act only on keys without a TTL asks the server every this many slices
/// whether any key still lacks one (`INFO keyspace`, a few microseconds), and ends when none
/// does: on such a database the rest of the scan could not change anything.
const SLICES_PER_KEYSPACE_CHECK: u64 = 16;
/// Queued work items (trims, queue cleanings) before the scan waits for them to drain;
/// bounds the pass's memory to O(one batch).
const MAX_PENDING_WORK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    Background,
    Command,
}

impl PassKind {
    /// A command's pass changes keys for its caller; a background pass for the module.
    pub fn asker(self) -> Asker {
        match self {
            PassKind::Background => Asker::Module,
            PassKind::Command => Asker::Caller,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PassKind::Background => "background",
            PassKind::Command => "command",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    pub dry_run: bool,
    /// Apply only this rule (index into the policy).
    pub only_rule: Option<usize>,
    /// Visit only keys matching this glob.
    pub only_match: Option<Glob>,
    /// Per-slice budget; None = the `retention.sweep-budget-us` in force at each slice.
    pub budget_us: Option<u64>,
    /// Visit every key and do nothing else: the module API's iteration floor, for
    /// benchmarks (`RETENTION.SWEEP NOOP`).
    pub noop: bool,
    /// The database to sweep (the one being swept, once the pass runs).
    pub db: i32,
    /// Databases to sweep after `db`, in order (background passes cover every database
    /// that has keys).
    pub more_dbs: VecDeque<i32>,
}

/// What a finished (or running) pass did.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub kind: PassKind,
    pub dry_run: bool,
    pub tally: Tally,
    pub per_rule: Vec<(String, Tally)>,
    pub started_ms: i64,
    pub duration_ms: u64,
    pub slices: u64,
    pub max_slice_us: u64,
    /// The per-slice budget in force when the report was made.
    pub budget_us: u64,
    /// Set when the pass stopped early (e.g. an internal error); the text says why.
    pub aborted: Option<String>,
    /// Set when the pass ended before the scan did because nothing was left to do.
    pub finished_early: Option<&'static str>,
}

/// The fixed inputs for applying the policy to one key.
pub struct KeyRules<'a> {
    pub policy: &'a Policy,
    pub only_rule: Option<usize>,
    pub only_match: Option<&'a Glob>,
    pub env: WorkEnv,
    pub under_pressure: bool,
}

/// Where the outcome of visiting keys goes.
pub struct KeySink<'a> {
    pub tally: &'a mut Tally,
    pub per_rule: &'a mut RuleTallies,
    pub pending: &'a mut WorkQueue,
    /// Expire times set but not yet replicated.
    pub expires: &'a mut ExpireBatch,
}

/// Applies the governing rule to one key: TTL rules act at once; trim/queue/runs rules
/// queue a work item. Shared by full passes and the new-key fast path.
pub fn apply_policy_to_key(
    ctx: &Context,
    name: KeyName,
    key: &KeyView,
    rules: &KeyRules,
    sink: &mut KeySink,
) {
    let name_bytes = name.bytes();
    if rules.only_match.is_some_and(|g| !g.matches(name_bytes)) {
        return;
    }
    let Some(key_type) = key.key_type() else {
        return;
    };
    let Some(index) = rules.policy.rule_for(name_bytes, key_type) else {
        return;
    };
    if rules.only_rule.is_some_and(|only| only != index) {
        return;
    }
    let rule = &rules.policy.rules[index];
    let mut delta = Tally {
        keys_matched: 1,
        ..Tally::default()
    };
    if idle_allows(
        rule.min_idle_ms,
        rule.min_idle_ms.and_then(|_| key.idle_ms()),
    ) {
        match &rule.action {
            Action::Ttl(action) => {
                let pressure_ttl = rule.pressure.as_ref().and_then(|p| p.ttl_ms);
                let current = key.abs_expire_ms();
                let plan = match (rules.under_pressure, pressure_ttl) {
                    (true, Some(ttl_ms)) => {
                        plan_pressure_ttl(action, ttl_ms, current, rules.env.now_ms)
                    }
                    _ => plan_ttl(action, action.ttl_ms, current, rules.env.now_ms),
                };
                let env = &rules.env;
                apply_ttl_plan(ctx, name, plan, env, index, sink.expires, &mut delta);
            }
            _ => match plan_work(rule, name_bytes, key_type) {
                Planned::Nothing => {}
                Planned::WrongType => delta.skipped_wrong_type += 1,
                Planned::Work(work) => sink.pending.push_back(Queued {
                    rule: index,
                    db: rules.env.db,
                    key: name_bytes.to_vec(),
                    work,
                }),
            },
        }
    }
    sink.tally.add(&delta);
    sink.per_rule.add(index, &delta);
}

fn apply_ttl_plan(
    ctx: &Context,
    name: KeyName,
    plan: TtlPlan,
    env: &WorkEnv,
    rule: usize,
    expires: &mut ExpireBatch,
    delta: &mut Tally,
) {
    let (at, counter, action) = match plan {
        TtlPlan::Leave => return,
        TtlPlan::Set(at) => (
            at,
            &mut delta.ttl_set,
            history::Action::TtlSet { expire_at_ms: at },
        ),
        TtlPlan::Lower(at) => (
            at,
            &mut delta.ttl_lowered,
            history::Action::TtlLowered { expire_at_ms: at },
        ),
    };
    *counter += 1;
    if !env.dry_run {
        // Set once the visit has returned, and recorded for EXPLAIN once set.
        expires.stage(ctx, name, at, rule, action);
    }
}

/// Why a pass stopped when the policy it started with was replaced.
pub const POLICY_REPLACED: &str =
    "a new policy was loaded: the pass stopped there; run RETENTION.SWEEP again to apply it";

pub struct Pass {
    pub kind: PassKind,
    pub opts: PassOptions,
    policy: Rc<Policy>,
    cursor: ScanCursor,
    tally: Tally,
    per_rule: RuleTallies,
    pending: WorkQueue,
    expires: ExpireBatch,
    scan_done: bool,
    started_ms: i64,
    started: Instant,
    slices: u64,
    max_slice_us: u64,
    aborted: Option<String>,
    finished_early: Option<&'static str>,
    last_slice_changed: bool,
}

impl Pass {
    pub fn new(kind: PassKind, opts: PassOptions, policy: Rc<Policy>) -> Pass {
        Pass {
            kind,
            opts,
            policy,
            cursor: ScanCursor::new(),
            tally: Tally::default(),
            per_rule: RuleTallies::default(),
            pending: VecDeque::new(),
            expires: ExpireBatch::new(),
            scan_done: false,
            started_ms: now_ms(),
            started: Instant::now(),
            slices: 0,
            max_slice_us: 0,
            aborted: None,
            finished_early: None,
            last_slice_changed: false,
        }
    }

    /// Whether the pass is finding work to do (TTLs set, entries trimmed, ...): the
    /// background sweeper then works harder, as expire.c's fast cycle does.
    pub fn found_backlog(&self) -> bool {
        self.last_slice_changed
    }

    pub fn is_finished(&self) -> bool {
        self.aborted.is_some() || (self.scan_done && self.pending.is_empty())
    }

    pub fn keys_visited(&self) -> u64 {
        self.tally.keys_scanned
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn budget_us(&self) -> u64 {
        self.opts
            .budget_us
            .unwrap_or_else(crate::config::sweep_budget_us)
    }

    /// Advances the pass for at most `budget_us` (plus one key's work); returns true when
    /// the pass has finished.
    pub fn run_slice(&mut self, ctx: &Context, budget_us: u64, under_pressure: bool) -> bool {
        let start = Instant::now();
        let deadline = start + Duration::from_micros(budget_us);
        keyspace::select_db(ctx, self.opts.db);
        let env = WorkEnv {
            now_ms: now_ms(),
            dry_run: self.opts.dry_run,
            db: self.opts.db,
            asker: self.kind.asker(),
            rule: None,
        };
        if !Rc::ptr_eq(&self.policy, &crate::state::policy()) {
            // From the moment a policy is in force nothing acts under another one: the
            // pass (and the work it queued) stops where it is.
            self.aborted = Some(POLICY_REPLACED.into());
            return true;
        }
        let writer = match Writer::new(ctx, env.asker, "the sweep") {
            Ok(writer) => writer,
            Err(refused) => {
                self.aborted = Some(refused.to_string());
                return true;
            }
        };
        if self.slices.is_multiple_of(SLICES_PER_KEYSPACE_CHECK)
            && self.nothing_left(ctx, under_pressure)
        {
            self.scan_done = true;
            self.finished_early = Some("every key in the database has a TTL");
        }
        let mut slice = Tally::default();
        let mut rule_delta = RuleTallies::default();
        loop {
            let pending = &mut self.pending;
            if !run_queue(ctx, &env, deadline, pending, &mut slice, &mut rule_delta) {
                break;
            }
            if self.scan_done || self.aborted.is_some() {
                break;
            }
            self.scan_some(&writer, env, under_pressure, &mut slice, &mut rule_delta);
            if Instant::now() >= deadline {
                break;
            }
        }
        // Replicate before returning to the server: effects and their propagation must
        // belong to the same callback.
        self.expires.apply_staged(&writer);
        crate::alloc::settle();
        self.next_database_if_done();
        let elapsed_us = start.elapsed().as_micros() as u64;
        self.finish_slice(&slice, &rule_delta, elapsed_us, budget_us);
        self.is_finished()
    }

    /// Moves on to the next database once this one is done: a fresh cursor there.
    fn next_database_if_done(&mut self) {
        let done_here = self.aborted.is_none() && self.scan_done && self.pending.is_empty();
        if !done_here {
            return;
        }
        if let Some(db) = self.opts.more_dbs.pop_front() {
            self.opts.db = db;
            self.cursor = ScanCursor::new();
            self.scan_done = false;
            self.finished_early = None;
        }
    }

    /// True when the rest of the scan cannot change anything: the rules in scope only give
    /// TTLs to keys without one, and the server counts no such key in the pass's database
    /// (selected by `run_slice`). Keys created later are the new-key path's, or the next pass's.
    fn nothing_left(&self, ctx: &Context, under_pressure: bool) -> bool {
        !self.scan_done
            && !self.opts.noop
            && self.pending.is_empty()
            && self
                .policy
                .acts_only_on_keys_without_ttl(self.opts.only_rule, under_pressure)
            && keyspace::keys_without_ttl(ctx) == Some(0)
    }

    fn scan_some(
        &mut self,
        writer: &Writer,
        env: WorkEnv,
        under_pressure: bool,
        slice: &mut Tally,
        rule_delta: &mut RuleTallies,
    ) {
        let ctx = writer.ctx();
        // Queued work may have selected another database.
        keyspace::select_db(ctx, self.opts.db);
        let rules = KeyRules {
            policy: &self.policy,
            only_rule: self.opts.only_rule,
            only_match: self.opts.only_match.as_ref(),
            env,
            under_pressure,
        };
        let mut sink = KeySink {
            tally: slice,
            per_rule: rule_delta,
            pending: &mut self.pending,
            expires: &mut self.expires,
        };
        let noop = self.opts.noop;
        for _ in 0..STEPS_PER_CLOCK_CHECK {
            let step = self.cursor.step(ctx, &mut |ctx, name, key| {
                sink.tally.keys_scanned += 1;
                if !noop {
                    apply_policy_to_key(ctx, name, key, &rules, &mut sink);
                }
            });
            // Keys change only once RM_Scan has returned (see `ExpireBatch::stage`).
            let decided = sink.expires.len() as u64;
            let failed = sink.expires.apply_staged(writer);
            sink.tally.errors += failed;
            match step {
                Ok(true) => {}
                Ok(false) => {
                    self.scan_done = true;
                    break;
                }
                Err(_) => {
                    sink.tally.errors += 1;
                    self.aborted =
                        Some("internal error while visiting a key (see the server log)".into());
                    ctx.log_warning("retention: a key visit panicked; the pass was stopped");
                    break;
                }
            }
            // Setting TTLs in scan order is the server's worst case: the keys of adjacent
            // buckets share their low hash bits, so while the expires table is small they
            // pile into few of its chains and each lookup there walks them.
            let set_ttl = decided > failed;
            if set_ttl || sink.pending.len() >= MAX_PENDING_WORK {
                break;
            }
        }
    }

    fn finish_slice(
        &mut self,
        slice: &Tally,
        rule_delta: &RuleTallies,
        elapsed_us: u64,
        budget_us: u64,
    ) {
        self.slices += 1;
        self.last_slice_changed = slice.ttl_set
            + slice.ttl_lowered
            + slice.keys_deleted
            + slice.entries_trimmed
            + slice.jobs_removed
            + slice.runs_expired
            > 0;
        self.max_slice_us = self.max_slice_us.max(elapsed_us);
        self.tally.add(slice);
        self.per_rule.add_all(rule_delta);
        stats::record_work(&self.policy, slice, rule_delta);
        if stats::record_slice(elapsed_us, budget_us) {
            keyspace::latency_sample("retention-sweep", (elapsed_us / 1000) as i64);
        }
    }

    pub fn report(&self) -> PassReport {
        PassReport {
            kind: self.kind,
            dry_run: self.opts.dry_run,
            tally: self.tally,
            per_rule: self
                .policy
                .rules
                .iter()
                .enumerate()
                .filter(|(i, _)| self.opts.only_rule.is_none_or(|only| only == *i))
                .map(|(i, r)| (r.name.clone(), self.per_rule.of(i)))
                .collect(),
            started_ms: self.started_ms,
            duration_ms: self.elapsed_ms(),
            slices: self.slices,
            max_slice_us: self.max_slice_us,
            budget_us: self.budget_us(),
            aborted: self.aborted.clone(),
            finished_early: self.finished_early,
        }
    }
}
