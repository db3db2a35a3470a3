//! Queue-aware retention for BullMQ 5 and Bull 3/4 (SPEC 5.4): finished jobs are removed
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

mod calls;
mod command;
pub mod counters;
mod detect;
mod events;
mod finished;
mod jobs;
pub mod layout;
pub mod orphans;

use crate::policy::{Action, KeyType, QueueAction, QueueFlavor, Rule};
use crate::sweep::work::Planned;
use layout::{classify, FinishedSet, KeyRole};

pub use command::cmd_jobs;

/// The planner of queue rules (registered with the sweep at load).
pub fn plan_rule(rule: &Rule, name: &[u8], key_type: KeyType) -> Planned {
    match &rule.action {
        Action::Queue(queue) => plan(queue, name, key_type),
        _ => Planned::Nothing,
    }
}

pub fn plan(queue: &QueueAction, name: &[u8], key_type: KeyType) -> Planned {
    let prefix_len = queue.prefix.len() + 1;
    match classify(queue.flavor, prefix_len, name, key_type) {
        KeyRole::Finished { base_len, set } => {
            let retention = match set {
                FinishedSet::Completed => queue.completed,
                FinishedSet::Failed => queue.failed,
            };
            match retention {
                Some(r) => Planned::Work(Box::new(finished::CleanFinished::new(
                    queue.flavor,
                    name[..base_len].to_vec(),
                    set,
                    r,
                    true,
                    finished::EventMode::WhenRemoved,
                ))),
                None => Planned::Nothing,
            }
        }
        KeyRole::Events => match (queue.flavor, queue.events) {
            (QueueFlavor::BullMq, Some(events)) => Planned::Work(Box::new(
                events::TrimEvents::new(name.to_vec(), name.len() - "events".len(), events),
            )),
            _ => Planned::Nothing,
        },
        KeyRole::JobCandidate => Planned::Work(Box::new(orphans::OrphanCheck::new(
            queue.flavor,
            prefix_len,
            name,
            orphans::Candidate::Hash,
            queue.orphan_age_ms,
        ))),
        KeyRole::SubKeyCandidate { job_key_len } => {
            Planned::Work(Box::new(orphans::OrphanCheck::new(
                queue.flavor,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{EventsRetention, FinishedRetention};

    fn rule(flavor: QueueFlavor) -> QueueAction {
        QueueAction {
            flavor,
            prefix: "bull".into(),
            completed: Some(FinishedRetention {
                max_age_ms: Some(1000),
                max_count: None,
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
        let mq = rule(QueueFlavor::BullMq);
        assert!(is_work(plan(&mq, b"bull:q:completed", KeyType::ZSet)));
        // No failed retention configured.
        assert!(!is_work(plan(&mq, b"bull:q:failed", KeyType::ZSet)));
        assert!(is_work(plan(&mq, b"bull:q:events", KeyType::Stream)));
        assert!(is_work(plan(&mq, b"bull:q:1", KeyType::Hash)));
        assert!(is_work(plan(&mq, b"bull:q:1:logs", KeyType::List)));
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
        let bull = rule(QueueFlavor::Bull);
        assert!(!is_work(plan(&bull, b"bull:q:events", KeyType::Stream)));
    }
}
