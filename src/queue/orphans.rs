//! Orphans: finished job hashes that no state set refers to, and job sub-keys whose job
//! hash is gone. They are removed once older than the rule's `orphan_age`.
//!
//! The check rides on the sweep: every hash under the prefix (a possible job) and every key
//! named like a job sub-key gets one bounded check when a pass visits it. Nothing is decided
//! from the name alone:
//! - the queue is the unique `<prefix>:<queue>:` in front of the key whose `id`/`meta` key
//!   exists (every split is tried; two candidates = doubt = leave);
//! - a job is a hash with `timestamp` and `finishedOn` (structure hashes have neither);
//! - it is an orphan only if no state zset/list/set holds its id, no parent waits for it, it
//!   has no lock, and (Bull) the rate limiter's index does not list it. A read error or a
//!   list too long to search is doubt: the key stays.
//!
//! Age: a job hash's own `finishedOn` says how old it is. Sub-keys carry no time, and a
//! `finishedOn` in the future proves nothing, so for those the clock is the module's own
//! observation: first seen orphaned at server time T, removed when still orphaned at a pass
//! after T + `orphan_age`. Observations live in memory (bounded), never as keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use redis_module::Context;

use super::calls::{key, Calls};
use super::counters;
use super::detect::{flavor_evidence, Evidence};
use super::jobs::{self, Batch, QueueCtx};
use super::layout::{
    base_candidates, is_structure_id, parse_ms, state_zsets, STATE_LISTS, STATE_SETS,
};
use crate::policy::QueueFlavor;
use crate::stats::Tally;
use crate::sweep::work::{Progress, Work, WorkEnv};

/// Splits of a key name tried when looking for its queue (ids with many colons are rare).
const MAX_BASE_CANDIDATES: usize = 8;
/// Longest state list searched with LPOS for one candidate; a longer one is doubt.
const MAX_LIST_SEARCH: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A hash that may be a job.
    Hash,
    /// `<jobKey>:<suffix>`; `job_key_len` bytes of the name are the job key. Hash-typed
    /// sub-keys (`:processed`, `:failed`) may also be jobs whose id ends alike.
    SubKey { job_key_len: usize, is_hash: bool },
}

pub struct OrphanCheck {
    flavor: QueueFlavor,
    prefix_len: usize,
    name: Vec<u8>,
    candidate: Candidate,
    orphan_age_ms: i64,
}

impl OrphanCheck {
    pub fn new(
        flavor: QueueFlavor,
        prefix_len: usize,
        name: &[u8],
        candidate: Candidate,
        orphan_age_ms: i64,
    ) -> OrphanCheck {
        OrphanCheck {
            flavor,
            prefix_len,
            name: name.to_vec(),
            candidate,
            orphan_age_ms,
        }
    }
}

/// The unique existing queue whose base prefixes `job_key`; its length.
fn resolve_base(calls: &Calls, prefix_len: usize, job_key: &[u8]) -> Option<usize> {
    let mut found = None;
    for (n, base_len) in base_candidates(prefix_len, job_key).enumerate() {
        if n >= MAX_BASE_CANDIDATES {
            return None;
        }
        let base = &job_key[..base_len];
        if calls.exists(&[&key(&[base, b"id"]), &key(&[base, b"meta"])]) {
            if found.is_some() {
                return None;
            }
            found = Some(base_len);
        }
    }
    found
}

/// Whether the queue at `base` looks like the rule's flavor (a rule for one library never
/// judges the other's keys: their job sub-keys differ).
fn flavor_matches(calls: &Calls, flavor: QueueFlavor, base: &[u8]) -> bool {
    let is_bullmq = flavor_evidence(calls, base) == Evidence::BullMq;
    is_bullmq == (flavor == QueueFlavor::BullMq)
}

/// Whether anything of the queue still refers to job `id` (None = could not tell).
fn is_referenced(
    calls: &Calls,
    flavor: QueueFlavor,
    base: &[u8],
    id: &[u8],
    parent_key: Option<&[u8]>,
) -> Option<bool> {
    let job_key = key(&[base, id]);
    if jobs::is_locked(calls, &job_key) {
        return Some(true);
    }
    for z in state_zsets(flavor) {
        if calls.zscore_present(&key(&[base, z.as_bytes()]), id).ok()? {
            return Some(true);
        }
    }
    for s in STATE_SETS {
        if calls.sismember(&key(&[base, s.as_bytes()]), id).ok()? {
            return Some(true);
        }
    }
    for l in STATE_LISTS {
        let list = key(&[base, l.as_bytes()]);
        if calls.llen(&list).ok()? > MAX_LIST_SEARCH {
            return None;
        }
        if calls.lpos_present(&list, id).ok()? {
            return Some(true);
        }
    }
    if flavor == QueueFlavor::Bull && calls.hexists(&key(&[base, b"limiter:index"]), id).ok()? {
        return Some(true);
    }
    Some(jobs::parent_waits_for(calls, &job_key, parent_key))
}

/// First-seen times of keys found orphaned, for keys that carry no time of their own.
pub struct Observations {
    seen: HashMap<Vec<u8>, (i64, i64)>,
    max_entries: usize,
}

/// Observations not renewed for this long start over (the key went away and came back).
const MIN_CONTINUITY_MS: i64 = 3_600_000;
const MAX_OBSERVATIONS: usize = 100_000;

impl Observations {
    pub fn new(max_entries: usize) -> Observations {
        Observations {
            seen: HashMap::new(),
            max_entries,
        }
    }

    fn continuity_ms(orphan_age_ms: i64) -> i64 {
        orphan_age_ms.max(MIN_CONTINUITY_MS)
    }

    /// Records that `name` is orphaned now; true once it has been for `orphan_age_ms`.
    pub fn observe(&mut self, name: &[u8], now_ms: i64, orphan_age_ms: i64) -> bool {
        let continuity = Self::continuity_ms(orphan_age_ms);
        if let Some((first, last)) = self.seen.get_mut(name) {
            if now_ms.saturating_sub(*last) > continuity || now_ms < *last {
                *first = now_ms;
            }
            *last = now_ms;
            return now_ms.saturating_sub(*first) >= orphan_age_ms;
        }
        if self.seen.len() >= self.max_entries {
            self.seen
                .retain(|_, (_, last)| now_ms.saturating_sub(*last) <= continuity);
            if self.seen.len() >= self.max_entries {
                return false; // Full: the key waits for a later pass.
            }
        }
        self.seen.insert(name.to_vec(), (now_ms, now_ms));
        orphan_age_ms <= 0
    }

    pub fn forget(&mut self, name: &[u8]) {
        self.seen.remove(name);
    }

    pub fn clear(&mut self) {
        self.seen.clear();
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

thread_local! {
    static OBSERVED: RefCell<Observations> = RefCell::new(Observations::new(MAX_OBSERVATIONS));
}

fn observe(name: &[u8], now_ms: i64, orphan_age_ms: i64) -> bool {
    OBSERVED.with(|o| o.borrow_mut().observe(name, now_ms, orphan_age_ms))
}

fn forget(name: &[u8]) {
    OBSERVED.with(|o| o.borrow_mut().forget(name));
}

/// Drops every observation (call on FLUSHDB/FLUSHALL: the keys they were about are gone).
pub fn on_flush() {
    OBSERVED.with(|o| o.borrow_mut().clear());
}

/// The number of keys currently being watched as possible orphans.
pub fn observed_count() -> usize {
    OBSERVED.with(|o| o.borrow().len())
}

/// Whether a finished job is old enough to go: its own `finishedOn` when that lies in the
/// past, else (future times prove nothing) the module's observation.
pub fn job_is_due(
    name: &[u8],
    finished_on_ms: i64,
    now_ms: i64,
    orphan_age_ms: i64,
    observe_fn: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    match finished_on_ms <= now_ms {
        true => now_ms.saturating_sub(finished_on_ms) >= orphan_age_ms,
        false => observe_fn(name),
    }
}

impl OrphanCheck {
    /// A possible job hash. Returns what was removed, if anything.
    fn check_job(&self, calls: &Calls, env: &WorkEnv, tally: &mut Tally) {
        let name = &self.name;
        let Ok(fields) = calls.hmget(name, &[b"timestamp", b"finishedOn", b"parentKey"]) else {
            return;
        };
        let (Some(_), Some(finished_on)) = (&fields[0], &fields[1]) else {
            return; // Not a job, or not finished.
        };
        let Some(finished_on) = parse_ms(finished_on) else {
            return;
        };
        // Cheap exit first: most finished jobs are younger than orphan_age.
        if finished_on <= env.now_ms && env.now_ms.saturating_sub(finished_on) < self.orphan_age_ms
        {
            return;
        }
        let Some(base_len) = resolve_base(calls, self.prefix_len, name) else {
            return;
        };
        let (base, id) = name.split_at(base_len);
        if is_structure_id(id) || !flavor_matches(calls, self.flavor, base) {
            return;
        }
        if is_referenced(calls, self.flavor, base, id, fields[2].as_deref()) != Some(false) {
            forget(name);
            return;
        }
        let due = job_is_due(
            name,
            finished_on,
            env.now_ms,
            self.orphan_age_ms,
            &mut |n| observe(n, env.now_ms, self.orphan_age_ms),
        );
        if !due {
            return;
        }
        tally.jobs_removed += 1;
        if env.dry_run {
            return;
        }
        let queue = QueueCtx::new(calls, self.flavor, base);
        let mut batch = Batch::default();
        if queue.add(calls, &mut batch, id, None) && queue.commit(calls, &batch, None) {
            forget(name);
            counters::record_orphan_job(base);
        }
    }

    fn check_sub_key(&self, calls: &Calls, env: &WorkEnv, job_key_len: usize, tally: &mut Tally) {
        let name = &self.name;
        let job_key = &name[..job_key_len];
        if calls.exists(&[job_key]) {
            forget(name);
            return;
        }
        let Some(base_len) = resolve_base(calls, self.prefix_len, job_key) else {
            return;
        };
        let (base, id) = job_key.split_at(base_len);
        if is_structure_id(id) || !flavor_matches(calls, self.flavor, base) {
            return;
        }
        // A state set that still lists the id (its hash missing) is the library's business.
        if is_referenced(calls, self.flavor, base, id, None) != Some(false) {
            forget(name);
            return;
        }
        if !observe(name, env.now_ms, self.orphan_age_ms) {
            return;
        }
        tally.keys_deleted += 1;
        if env.dry_run {
            return;
        }
        if calls.write("UNLINK", &[name]).is_some() {
            forget(name);
            counters::record_orphan_key(base);
        }
    }
}

impl Work for OrphanCheck {
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        _deadline: Instant,
        tally: &mut Tally,
    ) -> Progress {
        let calls = Calls::new(ctx);
        match self.candidate {
            Candidate::Hash => self.check_job(&calls, env, tally),
            Candidate::SubKey {
                job_key_len,
                is_hash,
            } => {
                // A hash named like `:processed`/`:failed` with a `timestamp` is a job itself.
                let is_job = is_hash && calls.hexists(&self.name, b"timestamp").unwrap_or(true);
                match is_job {
                    true => self.check_job(&calls, env, tally),
                    false => self.check_sub_key(&calls, env, job_key_len, tally),
                }
            }
        }
        Progress::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn observation_needs_continuous_sightings() {
        let mut o = Observations::new(10);
        assert!(!o.observe(b"k", 0, HOUR));
        assert!(!o.observe(b"k", HOUR - 1, HOUR));
        assert!(o.observe(b"k", HOUR, HOUR));
        o.forget(b"k");
        assert!(!o.observe(b"k", 2 * HOUR, HOUR));
    }

    #[test]
    fn a_long_gap_restarts_the_clock() {
        let mut o = Observations::new(10);
        assert!(!o.observe(b"k", 0, 1000));
        // Unseen for more than the continuity window (1 h minimum): starts over.
        assert!(!o.observe(b"k", HOUR + 1001, 1000));
        assert!(o.observe(b"k", HOUR + 2001, 1000));
    }

    #[test]
    fn a_clock_going_back_restarts_the_clock() {
        let mut o = Observations::new(10);
        assert!(!o.observe(b"k", 10_000, 1000));
        assert!(!o.observe(b"k", 5_000, 1000));
        assert!(o.observe(b"k", 6_000, 1000));
    }

    #[test]
    fn observations_are_bounded() {
        let mut o = Observations::new(2);
        o.observe(b"a", 0, HOUR);
        o.observe(b"b", 0, HOUR);
        assert!(!o.observe(b"c", 1, HOUR));
        assert_eq!(o.len(), 2);
        // Stale entries make room.
        assert!(!o.observe(b"c", 10 * HOUR, HOUR));
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn job_age_comes_from_finished_on_unless_it_is_in_the_future() {
        let mut never = |_: &[u8]| false;
        assert!(job_is_due(b"j", 0, HOUR, HOUR, &mut never));
        assert!(!job_is_due(b"j", 1, HOUR, HOUR, &mut never));
        let mut always = |_: &[u8]| true;
        assert!(job_is_due(b"j", 2 * HOUR, HOUR, HOUR, &mut always));
        assert!(!job_is_due(b"j", 2 * HOUR, HOUR, HOUR, &mut never));
    }
}
