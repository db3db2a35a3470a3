//! Work that does not fit in one key visit: trimming a big collection, cleaning a queue,
//! expiring a run set. The sweep queues such work and runs it step by step within the same
//! time budget as the scan, so no single key can stall the server.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use redis_module::Context;

use crate::history;
use crate::keyspace;
use crate::policy::{ActionKind, KeyType, Rule};
use crate::stats::{RuleTallies, Tally};
use crate::write::Asker;

/// What a work item needs to know about the pass it runs in.
#[derive(Debug, Clone, Copy)]
pub struct WorkEnv {
    pub now_ms: i64,
    pub dry_run: bool,
    /// The database the work belongs to; `run_queue` selects it before every step.
    pub db: i32,
    /// Who the work is for: what it changes goes through the write gateway on their behalf.
    pub asker: Asker,
    /// The rule the work carries out (None for a command's own work): EXPLAIN names it.
    pub rule: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Stopped at the deadline; call again.
    More,
    Done,
}

pub trait Work {
    /// Does as much as fits before `deadline`, counting what it changed into `tally`.
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Progress;

    /// The one key this work changes, when there is one: what it did is remembered for
    /// `RETENTION.EXPLAIN` (`history`).
    fn key(&self) -> Option<&[u8]> {
        None
    }
}

/// A work item waiting to run: the rule that queued it, and the key (and its database)
/// whose visit planned it, from which it is planned again under a new policy.
pub struct Queued {
    pub rule: usize,
    pub db: i32,
    pub key: Vec<u8>,
    pub work: Box<dyn Work>,
}

pub type WorkQueue = VecDeque<Queued>;

/// Steps queued work in order until it is all done or the deadline passes, counting into
/// `tally` and the queuing rule's counters. True when the queue is empty with time left.
/// Each item runs in its own database (the caller's selection is changed). An item that
/// panics is dropped and counted as an error; the rest of the queue still runs, so the
/// caller's replication of what it already changed is never skipped.
pub fn run_queue(
    ctx: &Context,
    env: &WorkEnv,
    deadline: Instant,
    queue: &mut WorkQueue,
    tally: &mut Tally,
    per_rule: &mut RuleTallies,
) -> bool {
    while let Some(item) = queue.front_mut() {
        if Instant::now() >= deadline {
            return false;
        }
        keyspace::select_db(ctx, item.db);
        let env = WorkEnv {
            db: item.db,
            rule: Some(item.rule),
            ..*env
        };
        let mut t = Tally::default();
        let (progress, panicked) = step_caught(&mut t, |t| item.work.step(ctx, &env, deadline, t));
        if panicked {
            ctx.log_warning("retention: a work item panicked; it was dropped");
        }
        tally.add(&t);
        per_rule.add(item.rule, &t);
        if let (Some(name), false) = (item.work.key(), env.dry_run || t.entries_trimmed == 0) {
            let trimmed = history::Action::Trimmed {
                entries: t.entries_trimmed,
            };
            history::record(item.db, name, Some(item.rule), trimmed);
        }
        if progress == Progress::Done {
            queue.pop_front();
        }
    }
    Instant::now() < deadline
}

/// Runs one step; a panic becomes `Done` with an error counted (and true).
fn step_caught(tally: &mut Tally, step: impl FnOnce(&mut Tally) -> Progress) -> (Progress, bool) {
    match catch_unwind(AssertUnwindSafe(|| step(tally))) {
        Ok(progress) => (progress, false),
        Err(_) => {
            tally.errors += 1;
            (Progress::Done, true)
        }
    }
}

/// What a rule's action makes of one key it governs: nothing more to do (the visit handled
/// it or there is nothing to do), or a work item to run after the visit.
pub enum Planned {
    Nothing,
    WrongType,
    Work(Box<dyn Work>),
}

/// How one kind of action turns a key it governs into work. Each action module (trim,
/// queue, runs) has its own, registered at load: this generic queue names none of them.
pub type Planner = fn(&Rule, &[u8], KeyType) -> Planned;

thread_local! {
    static PLANNERS: RefCell<Vec<(ActionKind, Planner)>> = const { RefCell::new(Vec::new()) };
}

/// Makes `planner` the one for rules of `kind` (a later registration replaces it).
pub fn register_planner(kind: ActionKind, planner: Planner) {
    PLANNERS.with(|p| {
        let mut p = p.borrow_mut();
        p.retain(|(k, _)| *k != kind);
        p.push((kind, planner));
    });
}

/// The work item for a key governed by a rule whose action needs more than one visit;
/// nothing for actions without a planner (`keep`, `ttl`: the visit does them).
pub fn plan_work(rule: &Rule, name: &[u8], key_type: KeyType) -> Planned {
    let kind = rule.action.kind();
    let planner = PLANNERS.with(|p| p.borrow().iter().find(|(k, _)| *k == kind).map(|e| e.1));
    planner.map_or(Planned::Nothing, |plan| plan(rule, name, key_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl Work for Nothing {
        fn step(&mut self, _: &Context, _: &WorkEnv, _: Instant, _: &mut Tally) -> Progress {
            Progress::Done
        }
    }

    fn rule(json: &str) -> Rule {
        let policy = crate::policy::parse_policy(&format!(r#"{{"rules":[{json}]}}"#));
        policy.expect("valid rule").rules.remove(0)
    }

    #[test]
    fn work_is_planned_by_the_planner_registered_for_the_rule_s_kind() {
        let trim = rule(r#"{"name":"t","match":"s:*","type":"stream","trim":{"max_len":5}}"#);
        assert!(matches!(
            plan_work(&trim, b"s:1", KeyType::Stream),
            Planned::Nothing
        ));
        register_planner(ActionKind::Trim, |_, _, _| Planned::Work(Box::new(Nothing)));
        assert!(matches!(
            plan_work(&trim, b"s:1", KeyType::Stream),
            Planned::Work(_)
        ));
        register_planner(ActionKind::Trim, |_, _, _| Planned::WrongType);
        assert!(matches!(
            plan_work(&trim, b"s:1", KeyType::Stream),
            Planned::WrongType
        ));
        let ttl = rule(r#"{"name":"c","match":"c:*","ttl":"1h"}"#);
        assert!(matches!(
            plan_work(&ttl, b"c:1", KeyType::String),
            Planned::Nothing
        ));
    }

    #[test]
    fn a_panicking_step_is_done_with_an_error_and_keeps_what_it_counted() {
        let mut tally = Tally::default();
        let (progress, panicked) = step_caught(&mut tally, |t| {
            t.ttl_set += 3;
            panic!("a bug in a work item");
        });
        assert_eq!((progress, panicked), (Progress::Done, true));
        assert_eq!((tally.ttl_set, tally.errors), (3, 1));
        let (progress, panicked) = step_caught(&mut tally, |_| Progress::More);
        assert_eq!((progress, panicked), (Progress::More, false));
    }
}
