//! Queue-aware retention for BullMQ 5 and Bull 3/4: finished jobs are removed
//! exactly the way the library's own `clean` removes them, queue structure is never touched.
//!
//! `plan` is called for every key under a queue rule's `<prefix>:` (full passes and the
//! new-key fast path) and decides from the name and type alone, without server calls:
//! - `<base>completed` / `<base>failed` sorted set → clean that set by age and count;
//! - `<base>events` stream (BullMQ) → trim it;
//! - any key that is queue structure under some split of its name (id counter, meta,
//!   wait/active/paused lists, delayed, prioritized, waiting-children, marker, stalled,
//!   limiter and Bull's `limiter:*`, `repeat` and scheduler hashes, `de:*`/`dn:*`,
//!   `metrics:*`) → nothing, even where its name ends like a job sub-key
//!   (`metrics:failed`, scheduler `repeat:nightly:failed`);
//! - a hash, or a key named and typed like a job sub-key → one orphan check;
//! - anything else (locks, ...) → nothing.
//!
//! Modules: `layout` (pure key facts and decisions), `calls` (RM_Call reads and replicated
//! writes), `jobs` (removing one job like the library), `finished`, `events`, `orphans`
//! (the work items), `detect` (BullMQ or Bull), `command` (RETENTION.JOBS), `counters`.

pub(crate) mod calls;
mod command;
pub mod counters;
mod describe;
pub(crate) mod detect;
mod events;
pub(crate) mod finished;
pub(crate) mod jobs;
pub mod layout;
pub mod orphans;

use std::time::Instant;

use redis_module::Context;

use crate::policy::{Action, KeyType, QueueAction, QueueFlavor, Rule, RuleFlavor};
use crate::stats::Tally;
use crate::sweep::work::{Planned, Progress, Work, WorkEnv};
use finished::FlavorCheck;
use layout::{classify, FinishedSet, KeyRole};

pub use command::{cmd_jobs_clean, cmd_jobs_counts};
pub use describe::describe_job;

/// The planner of queue rules (registered with the sweep at load).
pub fn plan_rule(rule: &Rule, name: &[u8], key_type: KeyType) -> Planned {
    match &rule.action {
        Action::Queue(queue) => plan(queue, name, key_type),
        _ => Planned::Nothing,
    }
}

pub fn plan(queue: &QueueAction, name: &[u8], key_type: KeyType) -> Planned {
    let prefix_len = queue.prefix.len() + 1;
    match queue.flavor {
        RuleFlavor::One(flavor) => {
            let role = classify(flavor, prefix_len, name, key_type);
            plan_role(queue, flavor, FlavorCheck::Verify, role, name, key_type)
        }
        RuleFlavor::Auto => {
            let mq = classify(QueueFlavor::BullMq, prefix_len, name, key_type);
            let bull = classify(QueueFlavor::Bull, prefix_len, name, key_type);
            if mq == bull {
                // Work that reads the queue's keys to learn its library (BullMQ as a
                // placeholder until then).
                return plan_role(
                    queue,
                    QueueFlavor::BullMq,
                    FlavorCheck::Detect,
                    mq,
                    name,
                    key_type,
                );
            }
            // The libraries read the name differently (a sub-key of one, a job of the
            // other): one check each, and each applies only to a queue of its library.
            let verify =
                |flavor, role| plan_role(queue, flavor, FlavorCheck::Verify, role, name, key_type);
            either(
                verify(QueueFlavor::BullMq, mq),
                verify(QueueFlavor::Bull, bull),
            )
        }
    }
}

fn plan_role(
    queue: &QueueAction,
    flavor: QueueFlavor,
    check: FlavorCheck,
    role: KeyRole,
    name: &[u8],
    key_type: KeyType,
) -> Planned {
    let prefix_len = queue.prefix.len() + 1;
    match role {
        KeyRole::Finished { base_len, set } => {
            let retention = match set {
                FinishedSet::Completed => queue.completed,
                FinishedSet::Failed => queue.failed,
            };
            match retention {
                Some(r) => Planned::Work(Box::new(finished::CleanFinished::new(
                    flavor,
                    name[..base_len].to_vec(),
                    set,
                    r,
                    check,
                    finished::EventMode::WhenRemoved,
                ))),
                None => Planned::Nothing,
            }
        }
        // Only BullMQ keeps an events stream.
        KeyRole::Events => match (flavor, queue.events) {
            (QueueFlavor::BullMq, Some(events)) => Planned::Work(Box::new(
                events::TrimEvents::new(name.to_vec(), name.len() - "events".len(), events),
            )),
            _ => Planned::Nothing,
        },
        KeyRole::JobCandidate => Planned::Work(Box::new(orphans::OrphanCheck::new(
            flavor,
            check,
            prefix_len,
            name,
            orphans::Candidate::Hash,
            queue.orphan_age_ms,
        ))),
        KeyRole::SubKeyCandidate { job_key_len } => {
            Planned::Work(Box::new(orphans::OrphanCheck::new(
                flavor,
                check,
                prefix_len,
                name,
                orphans::Candidate::SubKey {
                    job_key_len,
                    is_hash: key_type == KeyType::Hash,
                },
                queue.orphan_age_ms,
            )))
        }
        KeyRole::Other => Planned::Nothing,
    }
}

/// Both plans' work, one after the other.
fn either(first: Planned, second: Planned) -> Planned {
    match (first, second) {
        (Planned::Work(a), Planned::Work(b)) => Planned::Work(Box::new(Both(Some(a), b))),
        (Planned::Work(w), _) | (_, Planned::Work(w)) => Planned::Work(w),
        (Planned::WrongType, _) | (_, Planned::WrongType) => Planned::WrongType,
        (Planned::Nothing, Planned::Nothing) => Planned::Nothing,
    }
}

/// Two work items on the same key, run in turn.
struct Both(Option<Box<dyn Work>>, Box<dyn Work>);

impl Work for Both {
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Progress {
        if let Some(first) = &mut self.0 {
            if first.step(ctx, env, deadline, tally) == Progress::More {
                return Progress::More;
            }
            self.0 = None;
        }
        self.1.step(ctx, env, deadline, tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{EventsRetention, FinishedRetention};

    fn rule(flavor: RuleFlavor) -> QueueAction {
        QueueAction {
            flavor,
            prefix: "bull".into(),
            completed: Some(FinishedRetention {
                max_age_ms: Some(1000),
                max_len: None,
                max_memory_bytes: None,
            }),
            failed: None,
            events: Some(EventsRetention {
                max_len: Some(10),
                max_age_ms: None,
            }),
            orphan_age_ms: 1000,
        }
    }

    fn is_work(p: Planned) -> bool {
        matches!(p, Planned::Work(_))
    }

    #[test]
    fn plan_returns_work_only_for_what_the_rule_asks() {
        let mq = rule(RuleFlavor::One(QueueFlavor::BullMq));
        assert!(is_work(plan(&mq, b"bull:q:completed", KeyType::ZSet)));
        // No failed retention configured.
        assert!(!is_work(plan(&mq, b"bull:q:failed", KeyType::ZSet)));
        assert!(is_work(plan(&mq, b"bull:q:events", KeyType::Stream)));
        assert!(is_work(plan(&mq, b"bull:q:1", KeyType::Hash)));
        assert!(is_work(plan(&mq, b"bull:q:1:logs", KeyType::List)));
        let auto = rule(RuleFlavor::Auto);
        for (name, t) in [
            ("bull:q:id", KeyType::String),
            ("bull:q:meta", KeyType::Hash),
            ("bull:q:wait", KeyType::List),
            ("bull:q:delayed", KeyType::ZSet),
            ("bull:q:marker", KeyType::ZSet),
            ("bull:q:1:lock", KeyType::String),
            ("bull:q:stalled-check", KeyType::String),
            ("bull:q:limiter", KeyType::String),
            ("bull:q:repeat", KeyType::ZSet),
            // Structure whose names end like a job's `:failed`/`:processed` hash.
            ("bull:q:metrics:failed", KeyType::Hash),
            ("bull:q:metrics:completed", KeyType::Hash),
            ("bull:q:metrics:failed:data", KeyType::List),
            ("bull:q:repeat:nightly:failed", KeyType::Hash),
            ("bull:q:repeat:x:processed", KeyType::Hash),
            ("bull:q:dn:klia:failed", KeyType::Hash),
        ] {
            assert!(!is_work(plan(&mq, name.as_bytes(), t)), "{name}");
            assert!(!is_work(plan(&auto, name.as_bytes(), t)), "auto: {name}");
        }
        // `auto` plans what either library's rule would.
        for (name, t) in [
            ("bull:q:completed", KeyType::ZSet),
            ("bull:q:events", KeyType::Stream),
            ("bull:q:1", KeyType::Hash),
            ("bull:q:1:logs", KeyType::List),
        ] {
            assert!(is_work(plan(&auto, name.as_bytes(), t)), "auto: {name}");
        }
        // A finished scheduler iteration and its logs are still checked as possible orphans.
        assert!(is_work(plan(
            &mq,
            b"bull:q:repeat:nightly:failed:1700000000000",
            KeyType::Hash
        )));
        assert!(is_work(plan(
            &mq,
            b"bull:q:repeat:s:1700000000000:logs",
            KeyType::List
        )));
        // Bull has no events stream.
        let bull = rule(RuleFlavor::One(QueueFlavor::Bull));
        assert!(!is_work(plan(&bull, b"bull:q:events", KeyType::Stream)));
    }
}
