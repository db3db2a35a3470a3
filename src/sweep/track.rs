//! The event-driven fast path: keys created without a TTL, and writes to queue
//! state sets, are noted from keyspace notifications and handled on the next event-loop
//! iteration, so steady-state cost follows new keys, not keyspace size. Writes are not
//! allowed inside a notification callback (Redis 7.0), hence the queue in between.
//!
//! Only "new" events are heard, not every string write: each notification costs the server
//! a module context (~1k instructions on 7.0), and a plain SET over an existing key (which
//! drops its TTL) is rare enough to leave to the next full pass.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis_module::{Context, NotifyEvent};

use super::pass::{apply_policy_to_key, KeyRules, KeySink};
use super::work::{run_queue, WorkEnv, WorkQueue};
use crate::config;
use crate::keyspace::{self, OpenKey, OwnedName};
use crate::policy::{Action, Policy, Selector};
use crate::stats::{self, RuleTallies, Tally};
use crate::time::now_ms;
use crate::write::{Asker, ExpireBatch, Writer};

/// A key noted by a notification, waiting to be looked at.
struct Noted {
    db: i32,
    name: Vec<u8>,
}

#[derive(Default)]
struct Tracker {
    keys: VecDeque<Noted>,
    /// Queue state sets already noted: one `ZADD completed` per finished job must not
    /// queue the same cleaning thousands of times.
    queue_sets: HashSet<(i32, Vec<u8>)>,
    work: WorkQueue,
    /// Empty between calls of `process`; kept so its buffers are not regrown on every
    /// loop iteration that has new keys.
    expires: ExpireBatch,
    /// The policy `work` was planned under.
    planned_under: Option<Rc<Policy>>,
}

thread_local! {
    static TRACKER: RefCell<Tracker> = RefCell::new(Tracker::default());
    /// Refreshed on every cron tick: notifications must be cheap, and a replica or a
    /// loading server must not note anything (it only applies the master's effects).
    static NOTING: Cell<bool> = const { Cell::new(false) };
}

/// Noted keys' work items (trims, cleanings, orphan checks) waiting at most: beyond it a
/// key's work is left to the next full pass, which visits every key anyway (a queue adding
/// thousands of jobs a second must not grow the module's memory without bound).
const MAX_TRACKED_WORK: usize = 10_000;

/// Called from the cron tick with the server's current role. `retention.enabled no`
/// stops all background work, this included.
pub fn set_noting(acting: bool) {
    let noting = acting && config::enabled() && config::track_new_keys();
    NOTING.with(|n| n.set(noting));
    if !noting {
        drop_all();
    }
}

/// Forgets every noted key and queued work item (a replica must not act on them, and work
/// left queued would keep the event loop spinning).
pub fn drop_all() {
    TRACKER.with(|t| {
        let mut t = t.borrow_mut();
        t.keys.clear();
        t.queue_sets.clear();
        t.work.clear();
    });
}

pub fn pending() -> bool {
    TRACKER.with(|t| {
        let t = t.borrow();
        !t.keys.is_empty() || !t.work.is_empty()
    })
}

/// Whether a queue rule wants to hear about writes to this state set.
fn is_queue_state_set(policy: &Policy, name: &[u8]) -> bool {
    (name.ends_with(b":completed") || name.ends_with(b":failed"))
        && policy.rules.iter().any(|r| {
            matches!(r.action, Action::Queue(_))
                && matches!(&r.selector, Selector::Prefix(p) if name.starts_with(p))
        })
}

/// The keyspace-notification callback: note the key, nothing else.
pub fn on_key_event(ctx: &Context, event: NotifyEvent, event_name: &str, name: &[u8]) {
    if !NOTING.with(Cell::get) {
        return;
    }
    let policy = crate::state::policy();
    if !policy.may_govern(name) {
        return;
    }
    let db = keyspace::selected_db(ctx);
    let is_new = event.contains(NotifyEvent::NEW);
    TRACKER.with(|t| {
        let mut t = t.borrow_mut();
        if t.keys.len() >= config::track_queue_max() {
            // Left for the next full pass, which visits every key anyway.
            stats::with_stats(|s| s.tracked_dropped += 1);
            return;
        }
        let wanted = is_new
            // Finished jobs arrive by ZADD; our own cleaning ZREMs must not re-queue the set.
            || (event_name == "zadd"
                && is_queue_state_set(&policy, name)
                && t.queue_sets.insert((db, name.to_vec())));
        if wanted {
            t.keys.push_back(Noted {
                db,
                name: name.to_vec(),
            });
        }
    });
}

/// From the moment a policy is in force nothing acts under another one: work planned under
/// an older policy (a trim to its limits, a cleaning to its counts) is dropped, and the key
/// that planned it is noted again, to be planned under the policy in force now. Returns how
/// many work items were dropped.
fn replan_if_policy_changed(t: &mut Tracker, policy: &Rc<Policy>) -> u64 {
    let current = t
        .planned_under
        .as_ref()
        .is_some_and(|p| Rc::ptr_eq(p, policy));
    t.planned_under = Some(policy.clone());
    if current || t.work.is_empty() {
        return 0;
    }
    let dropped = t.work.len() as u64;
    // Each key once (several items may come from one key), in their queued order, ahead of
    // keys noted since; beyond the tracking queue's bound a key waits for the next full pass.
    let mut seen = HashSet::new();
    let keys: Vec<Noted> = t
        .work
        .drain(..)
        .filter(|item| seen.insert((item.db, item.key.clone())))
        .map(|item| Noted {
            db: item.db,
            name: item.key,
        })
        .collect();
    let room = config::track_queue_max().saturating_sub(t.keys.len());
    let overflow = keys.len().saturating_sub(room) as u64;
    for noted in keys.into_iter().take(room).rev() {
        t.keys.push_front(noted);
    }
    if overflow > 0 {
        stats::with_stats(|s| s.tracked_dropped += overflow);
    }
    // A state set noted under the old policy may be noted again.
    t.queue_sets.clear();
    dropped
}

/// Applies the policy to noted keys until done or `budget_us` has passed. Keys are looked at
/// through read-only handles: only a key that gets a TTL is reopened writable, so WATCH and
/// client-side caches see a change only where there is one.
pub fn process(ctx: &Context, budget_us: u64, under_pressure: bool) {
    // Called only where the module acts (a master, writes not held): a refusal here means
    // the server changed under us, and the next call looks again.
    let Ok(writer) = Writer::new(ctx, Asker::Module, "new-key tracking") else {
        return;
    };
    let deadline = Instant::now() + Duration::from_micros(budget_us);
    let policy = crate::state::policy();
    let now_ms = now_ms();
    let dry_run = config::dry_run();
    let mut tally = Tally::default();
    let mut per_rule = RuleTallies::default();
    let (mut work, mut expires, replanned) = TRACKER.with(|t| {
        let mut t = t.borrow_mut();
        let replanned = replan_if_policy_changed(&mut t, &policy);
        (
            std::mem::take(&mut t.work),
            std::mem::take(&mut t.expires),
            replanned,
        )
    });
    let mut visited = 0u64;
    let mut work_dropped = 0u64;
    // Once work is queued, noted keys leave it half of the budget: a steady stream of new
    // keys must not starve the work they create.
    let keys_deadline = Instant::now() + Duration::from_micros(budget_us / 2);
    while Instant::now()
        < if work.is_empty() {
            deadline
        } else {
            keys_deadline
        }
    {
        let Some(noted) = next_key() else { break };
        visited += 1;
        if !keyspace::select_db(ctx, noted.db) {
            continue;
        }
        let Some(name) = OwnedName::new(&noted.name) else {
            continue;
        };
        let Some(key) = OpenKey::readable(ctx, name.name()) else {
            continue;
        };
        let rules = KeyRules {
            policy: &policy,
            only_rule: None,
            only_match: None,
            env: WorkEnv {
                now_ms,
                dry_run,
                db: noted.db,
                asker: Asker::Module,
                rule: None,
            },
            under_pressure,
        };
        let queued = work.len();
        let mut sink = KeySink {
            tally: &mut tally,
            per_rule: &mut per_rule,
            pending: &mut work,
            expires: &mut expires,
        };
        apply_policy_to_key(ctx, name.name(), key.view(), &rules, &mut sink);
        drop(key);
        if work.len() > queued && work.len() > MAX_TRACKED_WORK {
            work.truncate(queued);
            work_dropped += 1;
        }
        tally.errors += expires.apply_staged(&writer);
    }
    expires.apply_staged(&writer);
    let env = WorkEnv {
        now_ms,
        dry_run,
        db: 0,
        asker: Asker::Module,
        rule: None,
    };
    run_queue(ctx, &env, deadline, &mut work, &mut tally, &mut per_rule);
    crate::alloc::settle();
    TRACKER.with(|t| {
        let mut t = t.borrow_mut();
        t.work = work;
        t.expires = expires;
    });
    stats::with_stats(|s| {
        s.tracked_keys += visited;
        s.tracked_work_dropped += work_dropped;
        s.tracked_work_replanned += replanned;
    });
    stats::record_work(&policy, &tally, &per_rule);
}

fn next_key() -> Option<Noted> {
    TRACKER.with(|t| {
        let mut t = t.borrow_mut();
        let noted = t.keys.pop_front()?;
        if !t.queue_sets.is_empty() {
            t.queue_sets.remove(&(noted.db, noted.name.clone()));
        }
        Some(noted)
    })
}
