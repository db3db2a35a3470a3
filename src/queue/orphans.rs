//! Orphans: finished job hashes that no state set refers to, and job sub-keys whose job
//! hash is gone. They are removed once the module has seen them unreferenced for the rule's
//! `orphan_age` (see `crate::observe`).
//!
//! The check rides on the sweep: every hash under the prefix (a possible job) and every key
//! named like a job sub-key gets one bounded check when a pass visits it. Nothing is decided
//! from the name alone:
//! - the queue is the unique `<prefix>:<queue>:` in front of the key whose `id`/`meta` key
//!   exists (every split is tried; two candidates = doubt = leave);
//! - a job is a hash with `timestamp` and `finishedOn` (structure hashes have neither);
//! - it is an orphan only if no state zset/list/set holds its id, no parent waits for it, it
//!   has no lock, and (Bull) the rate limiter's index does not list it. A read error, or
//!   state lists longer than the step may search (`searchable_elements`), is doubt: the key
//!   stays and its observation is neither renewed nor reset.
//!
//! Age: a job's `finishedOn` says when it ended, not since when nothing refers to it (an
//! import or a replication tool may write the hash long before its state set), and sub-keys
//! carry no time at all. So every orphan is judged on the module's own observation: first
//! seen unreferenced at T, removed when still unreferenced at a later look after
//! T + `orphan_age`. `finishedOn` only spares work: a job that ended less than `orphan_age`
//! ago is not checked (nor observed) yet. Observations are per database and name.
//!
//! Each check is one atomic step: the reads that decide and the removal happen together.

use std::time::Instant;

use redis_module::Context;

use super::calls::{key, Calls};
use super::counters;
use super::detect::{flavor_evidence, flavor_of, Evidence};
use super::finished::FlavorCheck;
use super::jobs::{self, Batch, QueueCtx};
use super::layout::{
    base_candidates, is_structure_id, parse_ms, state_zsets, STATE_LISTS, STATE_SETS,
};
use crate::observe::{self, Kind, ObsKey};
use crate::policy::QueueFlavor;
use crate::stats::Tally;
use crate::sweep::work::{Progress, Work, WorkEnv};

/// Splits of a key name tried when looking for its queue (ids with many colons are rare).
const MAX_BASE_CANDIDATES: usize = 8;
/// State-list elements LPOS compares per microsecond, conservatively: measured ~70 on a
/// loaded 2-core VM (a miss over 1M short ids took 35 ms).
const LIST_ELEMENTS_PER_US: u64 = 40;

/// How many state-list elements one check may search: what fits before its deadline, at
/// least a quarter of the budget's worth (a check that starts just before the deadline
/// overruns it by at most that, the slack every work item has) and at most a budget's
/// worth. Longer lists are doubt: the check leaves the key rather than stall the server.
pub fn searchable_elements(left_us: u64, budget_us: u64) -> u64 {
    left_us.max(budget_us / 4).min(budget_us) * LIST_ELEMENTS_PER_US
}

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
    check: FlavorCheck,
    prefix_len: usize,
    name: Vec<u8>,
    candidate: Candidate,
    orphan_age_ms: i64,
}

impl OrphanCheck {
    pub fn new(
        flavor: QueueFlavor,
        check: FlavorCheck,
        prefix_len: usize,
        name: &[u8],
        candidate: Candidate,
        orphan_age_ms: i64,
    ) -> OrphanCheck {
        OrphanCheck {
            flavor,
            check,
            prefix_len,
            name: name.to_vec(),
            candidate,
            orphan_age_ms,
        }
    }
}

/// The unique existing queue whose base prefixes `job_key`; its length.
pub(super) fn resolve_base(calls: &Calls, prefix_len: usize, job_key: &[u8]) -> Option<usize> {
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

impl OrphanCheck {
    /// The library to judge the queue at `base` by, None when this check is not for it.
    fn flavor_for(&self, calls: &Calls, base: &[u8]) -> Option<QueueFlavor> {
        match self.check {
            FlavorCheck::Trust => Some(self.flavor),
            FlavorCheck::Detect => Some(flavor_of(calls, base)),
            FlavorCheck::Verify => flavor_matches(calls, self.flavor, base).then_some(self.flavor),
        }
    }
}

/// What a look found about a job id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refs {
    Referenced,
    Unreferenced,
    /// A read failed, or the state lists are too long to search in this step.
    Doubt,
}

/// Whether anything of the queue still refers to job `id`, searching at most
/// `list_elements` state-list elements. The O(1) lookups come first, so a referenced
/// job is usually found before any list is searched.
fn references(
    calls: &Calls,
    flavor: QueueFlavor,
    base: &[u8],
    id: &[u8],
    parent_key: Option<&[u8]>,
    list_elements: u64,
) -> Refs {
    let found = |hit: Result<bool, ()>| match hit {
        Ok(true) => Some(Refs::Referenced),
        Ok(false) => None,
        Err(()) => Some(Refs::Doubt),
    };
    let job_key = key(&[base, id]);
    if jobs::is_locked(calls, &job_key) {
        return Refs::Referenced;
    }
    for z in state_zsets(flavor) {
        if let Some(r) = found(calls.zscore_present(&key(&[base, z.as_bytes()]), id)) {
            return r;
        }
    }
    for s in STATE_SETS {
        if let Some(r) = found(calls.sismember(&key(&[base, s.as_bytes()]), id)) {
            return r;
        }
    }
    if flavor == QueueFlavor::Bull {
        if let Some(r) = found(calls.hexists(&key(&[base, b"limiter:index"]), id)) {
            return r;
        }
    }
    if jobs::parent_waits_for(calls, &job_key, parent_key) {
        return Refs::Referenced;
    }
    let lists: Vec<Vec<u8>> = STATE_LISTS
        .iter()
        .map(|l| key(&[base, l.as_bytes()]))
        .collect();
    let mut total: u64 = 0;
    for list in &lists {
        match calls.llen(list) {
            Ok(n) => total = total.saturating_add(n.max(0) as u64),
            Err(()) => return Refs::Doubt,
        }
    }
    if total > list_elements {
        return Refs::Doubt;
    }
    for list in &lists {
        if let Some(r) = found(calls.lpos_present(list, id)) {
            return r;
        }
    }
    Refs::Unreferenced
}

impl OrphanCheck {
    fn list_budget(deadline: Instant) -> u64 {
        let left_us = deadline
            .saturating_duration_since(Instant::now())
            .as_micros();
        searchable_elements(
            u64::try_from(left_us).unwrap_or(u64::MAX),
            crate::config::sweep_budget_us(),
        )
    }

    /// A possible job hash.
    fn check_job(&self, calls: &Calls, env: &WorkEnv, deadline: Instant, tally: &mut Tally) {
        let name = &self.name;
        let obs_key = || ObsKey::key(Kind::QueueJob, env.db, name);
        let Ok(fields) = calls.hmget(name, &[b"timestamp", b"finishedOn", b"parentKey"]) else {
            return;
        };
        let (Some(_), Some(finished_on)) = (&fields[0], &fields[1]) else {
            return; // Not a job, or not finished.
        };
        let Some(finished_on) = parse_ms(finished_on) else {
            return;
        };
        // Cheap exit first: most finished jobs are younger than orphan_age. One that ended
        // since an earlier look was run again meanwhile: that look's clock is void.
        if finished_on <= env.now_ms && env.now_ms.saturating_sub(finished_on) < self.orphan_age_ms
        {
            observe::forget_with(obs_key);
            return;
        }
        let Some(base_len) = resolve_base(calls, self.prefix_len, name) else {
            return;
        };
        let (base, id) = name.split_at(base_len);
        if is_structure_id(id) {
            return;
        }
        let Some(flavor) = self.flavor_for(calls, base) else {
            return;
        };
        let parent_key = fields[2].as_deref();
        match references(
            calls,
            flavor,
            base,
            id,
            parent_key,
            Self::list_budget(deadline),
        ) {
            Refs::Referenced => return observe::forget_with(obs_key),
            Refs::Doubt => return,
            Refs::Unreferenced => {}
        }
        if !observe::observe(obs_key(), self.orphan_age_ms) {
            return;
        }
        tally.jobs_removed += 1;
        if env.dry_run {
            return;
        }
        let queue = QueueCtx::new(calls, flavor, base);
        let mut batch = Batch::default();
        if queue.add(calls, &mut batch, id, None) && queue.commit(calls, &batch, None) {
            observe::forget(obs_key());
            counters::record_orphan_job(base);
        }
    }

    fn check_sub_key(
        &self,
        calls: &Calls,
        env: &WorkEnv,
        deadline: Instant,
        job_key_len: usize,
        tally: &mut Tally,
    ) {
        let name = &self.name;
        let obs_key = || ObsKey::key(Kind::QueueSubKey, env.db, name);
        let job_key = &name[..job_key_len];
        // Gone since the visit (removed with its job), or its job exists: no orphan.
        if !calls.exists(&[name]) || calls.exists(&[job_key]) {
            return observe::forget_with(obs_key);
        }
        let Some(base_len) = resolve_base(calls, self.prefix_len, job_key) else {
            return;
        };
        let (base, id) = job_key.split_at(base_len);
        if is_structure_id(id) {
            return;
        }
        let Some(flavor) = self.flavor_for(calls, base) else {
            return;
        };
        // A state set that still lists the id (its hash missing) is the library's business.
        match references(calls, flavor, base, id, None, Self::list_budget(deadline)) {
            Refs::Referenced => return observe::forget_with(obs_key),
            Refs::Doubt => return,
            Refs::Unreferenced => {}
        }
        if !observe::observe(obs_key(), self.orphan_age_ms) {
            return;
        }
        tally.keys_deleted += 1;
        if env.dry_run {
            return;
        }
        if calls.write("UNLINK", &[name]).is_some() {
            observe::forget(obs_key());
            counters::record_orphan_key(base);
        }
    }
}

impl Work for OrphanCheck {
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Progress {
        let calls = Calls::for_work(ctx, env);
        match self.candidate {
            Candidate::Hash => self.check_job(&calls, env, deadline, tally),
            Candidate::SubKey {
                job_key_len,
                is_hash,
            } => {
                // A hash named like `:processed`/`:failed` with a `timestamp` is a job itself.
                let is_job = is_hash && calls.hexists(&self.name, b"timestamp").unwrap_or(true);
                match is_job {
                    true => self.check_job(&calls, env, deadline, tally),
                    false => self.check_sub_key(&calls, env, deadline, job_key_len, tally),
                }
            }
        }
        Progress::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_search_fits_the_time_left_within_a_quarter_and_a_whole_budget() {
        let per_us = LIST_ELEMENTS_PER_US;
        // A fresh step of the default budget: a budget's worth.
        assert_eq!(searchable_elements(1000, 1000), 1000 * per_us);
        // Some time left: what fits in it.
        assert_eq!(searchable_elements(600, 1000), 600 * per_us);
        // At or past the deadline: a quarter budget's slack, never nothing, never more.
        assert_eq!(searchable_elements(0, 1000), 250 * per_us);
        assert_eq!(searchable_elements(100, 1000), 250 * per_us);
        // A deadline further out than a budget (the fast path's slack) does not raise it.
        assert_eq!(searchable_elements(50_000, 1000), 1000 * per_us);
        // The old limit, a million elements per LPOS (35 ms here), is far beyond any
        // default-budget step.
        assert!(searchable_elements(u64::MAX, 1000) < 1_000_000);
    }
}
