//! Cleaning one finished set (`<base>completed` or `<base>failed`) by age and count, in
//! bounded batches so that a queue with millions of finished jobs spans many slices.
//!
//! Each batch reads the oldest members by rank (`ZRANGE <offset> <offset+n> WITHSCORES`),
//! decides which may go, and deletes them in the same atomic step (see `jobs`). Members
//! that stay (locked, waited for by a parent, or every member in a dry run) are stepped over
//! with `offset`; everything else that goes shrinks the set, so the next batch starts at the
//! same offset. The first member that is neither too old nor beyond the newest `max_len`
//! ends the work: both criteria select a prefix of the set's ascending order.
//!
//! A `max_memory` budget becomes a count first (`MemoryWalk`): from the newest job down, each
//! job's memory is added until the next would exceed the budget; the jobs within it are the
//! newest to keep, and the rest goes exactly as if `max_len` had been that count.

use std::time::Instant;

use redis_module::Context;

use super::calls::{key, Calls};
use super::counters;
use super::detect::{flavor_evidence, flavor_of, Evidence};
use super::jobs::{job_keys, Batch, QueueCtx};
use super::layout::{parse_score, FinishedSet, Reason, Window};
use crate::history;
use crate::policy::{FinishedRetention, QueueFlavor};
use crate::stats::Tally;
use crate::sweep::work::{Progress, Work, WorkEnv};

/// Members read per batch: small enough that one batch stays well under a 1 ms budget.
const BATCH: u64 = 64;
/// The library's clean emits one `cleaned` event per call of at most this many jobs.
pub const EVENT_EVERY: u64 = 10_000;
/// Ids kept for a DRYRUN reply.
pub const DRYRUN_IDS_MAX: usize = 100_000;

/// When to append the library's `cleaned` event to a BullMQ queue's events stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    /// Like `queue.clean()`: at the end even when nothing was removed.
    Always,
    /// Background retention: only when jobs were removed (no stream growth on idle queues).
    WhenRemoved,
}

/// How work on one queue makes sure it has the queue's library right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlavorCheck {
    /// The caller named it (`RETENTION.JOBS … FLAVOR`, or detected it already).
    Trust,
    /// A rule for one library: a queue that looks like the other is skipped.
    Verify,
    /// An `auto` rule: whichever the queue's keys show.
    Detect,
}

/// Turns a `max_memory` budget into the number of newest jobs to keep. Only the kept jobs
/// are measured: the walk also stops where `max_len` or the age cutoff ends the keeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryWalk {
    budget_bytes: u64,
    /// The set's size when the walk began: ranks count down from its top.
    card: u64,
    /// At most this many jobs are kept anyway (`max_len`).
    keep_max: u64,
    pub kept_jobs: u64,
    pub kept_bytes: u64,
    pub done: bool,
}

impl MemoryWalk {
    fn new(budget_bytes: u64, card: u64, max_len: Option<u64>) -> MemoryWalk {
        let keep_max = max_len.map_or(card, |n| n.min(card));
        MemoryWalk {
            budget_bytes,
            card,
            keep_max,
            kept_jobs: 0,
            kept_bytes: 0,
            done: keep_max == 0,
        }
    }

    /// Takes one more job of `bytes` if it fits; false ends the walk.
    fn take(&mut self, bytes: u64) -> bool {
        let total = self.kept_bytes.saturating_add(bytes);
        if self.kept_jobs >= self.keep_max || total > self.budget_bytes {
            self.done = true;
            return false;
        }
        self.kept_bytes = total;
        self.kept_jobs += 1;
        if self.kept_jobs >= self.keep_max {
            self.done = true;
        }
        true
    }

    /// The ranks of the next batch (ascending), just below those already walked.
    fn next_ranks(&self) -> Option<(u64, u64)> {
        let top = self.card.checked_sub(self.kept_jobs + 1)?;
        Some((top.saturating_sub(BATCH - 1), top))
    }
}

/// The memory of one job as the server counts it: its hash and every sub-key the library
/// deletes with it (`MEMORY USAGE <key> SAMPLES 0` each).
fn job_memory(calls: &Calls, flavor: QueueFlavor, job_key: &[u8]) -> Result<u64, ()> {
    job_keys(flavor, job_key).iter().try_fold(0u64, |sum, k| {
        Ok(sum.saturating_add(calls.memory_usage(k)?))
    })
}

pub struct CleanFinished {
    flavor: QueueFlavor,
    base: Vec<u8>,
    set: FinishedSet,
    retention: FinishedRetention,
    check: FlavorCheck,
    events: EventMode,
    window: Option<Window>,
    memory: Option<MemoryWalk>,
    offset: u64,
    unreported: u64,
    pub removed: u64,
    /// At most this many removed in all (`RETENTION.JOBS CLEAN … LIMIT`).
    limit: Option<u64>,
    /// Filled in dry runs (up to DRYRUN_IDS_MAX).
    pub ids: Vec<Vec<u8>>,
    done: bool,
}

impl CleanFinished {
    pub fn new(
        flavor: QueueFlavor,
        base: Vec<u8>,
        set: FinishedSet,
        retention: FinishedRetention,
        check: FlavorCheck,
        events: EventMode,
    ) -> CleanFinished {
        CleanFinished {
            flavor,
            base,
            set,
            retention,
            check,
            events,
            window: None,
            memory: None,
            offset: 0,
            unreported: 0,
            removed: 0,
            limit: None,
            ids: Vec::new(),
            done: false,
        }
    }

    /// Stops after `limit` jobs are removed, as the library's `clean(grace, limit)` does.
    pub fn with_limit(mut self, limit: Option<u64>) -> CleanFinished {
        self.limit = limit;
        self
    }

    fn set_key(&self) -> Vec<u8> {
        key(&[&self.base, self.set.name().as_bytes()])
    }

    /// One batch: Ok(true) when the set has nothing more to clean.
    fn batch(&mut self, calls: &Calls, window: &Window, dry_run: bool) -> Result<bool, ()> {
        let set_key = self.set_key();
        let card = calls.zcard(&set_key)?;
        let room = self
            .limit
            .map_or(u64::MAX, |l| l.saturating_sub(self.removed));
        if self.offset >= card || room == 0 {
            return Ok(true);
        }
        // Batches end on the library's event boundaries so each `cleaned` event counts
        // exactly EVENT_EVERY jobs, as one call of its clean does.
        let size = match dry_run {
            true => BATCH,
            false => BATCH.min(EVENT_EVERY - self.unreported % EVENT_EVERY),
        };
        let members = calls.zrange_with_scores(&set_key, self.offset, self.offset + size - 1)?;
        let queue = QueueCtx::new(calls, self.flavor, &self.base);
        let mut batch = Batch::default();
        let mut kept = 0u64;
        let mut ended = (members.len() as u64) < size;
        for (i, (id, score)) in members.iter().enumerate() {
            if batch.ids.len() as u64 >= room {
                ended = true;
                break;
            }
            let rank = self.offset + i as u64;
            let Some(score) = parse_score(score) else {
                return Err(());
            };
            let Some(reason) = window.reason(card, rank, score) else {
                ended = true;
                break;
            };
            // Bull's clean checks the hash's own time for the age criterion.
            let bull_cutoff = match reason {
                Reason::Age => window.cutoff_ms,
                Reason::Count => None,
            };
            if !queue.add(calls, &mut batch, id, bull_cutoff) {
                kept += 1;
            }
        }
        let n = batch.ids.len() as u64;
        if dry_run {
            self.offset += kept + n;
            let room = DRYRUN_IDS_MAX.saturating_sub(self.ids.len());
            self.ids.extend(batch.ids.into_iter().take(room));
        } else {
            self.offset += kept;
            if !queue.commit(calls, &batch, Some(&set_key)) {
                return Err(());
            }
            self.unreported += n;
        }
        self.removed += n;
        Ok(ended)
    }

    /// One batch of the memory walk, newest first: Ok(true) when it is done.
    fn walk_memory(&mut self, calls: &Calls, window: &Window) -> Result<bool, ()> {
        let set_key = self.set_key();
        let walk = match self.memory.as_mut() {
            Some(walk) => walk,
            None => {
                let Some(budget) = self.retention.max_memory_bytes else {
                    return Ok(true);
                };
                let card = calls.zcard(&set_key)?;
                self.memory
                    .insert(MemoryWalk::new(budget, card, window.keep_newest))
            }
        };
        let Some((start, stop)) = walk.next_ranks().filter(|_| !walk.done) else {
            walk.done = true;
            return Ok(true);
        };
        let members = calls.zrange_with_scores(&set_key, start, stop)?;
        for (id, score) in members.iter().rev() {
            let Some(score) = parse_score(score) else {
                return Err(());
            };
            // Older jobs go by age whatever their size.
            if window
                .cutoff_ms
                .is_some_and(|cutoff| score <= cutoff as f64)
            {
                walk.done = true;
                break;
            }
            let bytes = job_memory(calls, self.flavor, &key(&[&self.base, id]))?;
            if !walk.take(bytes) {
                break;
            }
        }
        // The set shrank under the walk (another client cleaned it): nothing more to read.
        if (members.len() as u64) < stop - start + 1 {
            walk.done = true;
        }
        Ok(walk.done)
    }

    /// The walk is done: the budget becomes the count of newest jobs to keep. What was kept is
    /// remembered for EXPLAIN and REPORT, unless nothing is removed (a dry run's window, or a
    /// policy that is only a candidate, is not what the keyspace holds).
    fn apply_memory_walk(&mut self, calls: &Calls, window: &mut Window, env: &WorkEnv) {
        let Some(walk) = self.memory else {
            return;
        };
        let keep = window
            .keep_newest
            .map_or(walk.kept_jobs, |n| n.min(walk.kept_jobs));
        window.keep_newest = Some(keep);
        self.window = Some(*window);
        if env.dry_run {
            return;
        }
        let measured = history::Measured {
            at_ms: env.now_ms,
            rule: history::rule_name(calls.rule()),
            kept_memory_bytes: walk.kept_bytes,
            max_memory_bytes: walk.budget_bytes,
            kept_within_budget: walk.kept_jobs,
        };
        history::record_measured(calls.db(), &self.set_key(), measured);
    }

    /// `XADD <base>events * event cleaned count <n>`, as `cleanJobsInSet-3.lua` does.
    fn emit_cleaned(&mut self, calls: &Calls, at_end: bool) {
        if self.flavor != QueueFlavor::BullMq {
            return; // Bull's clean emits its `cleaned` event in the client only.
        }
        let due = match (at_end, self.events) {
            (false, _) => self.unreported >= EVENT_EVERY,
            (true, EventMode::Always) => true,
            (true, EventMode::WhenRemoved) => self.unreported > 0,
        };
        if !due {
            return;
        }
        let count = self.unreported.to_string();
        let events = key(&[&self.base, b"events"]);
        calls.write(
            "XADD",
            &[
                &events,
                b"*",
                b"event",
                b"cleaned",
                b"count",
                count.as_bytes(),
            ],
        );
        self.unreported = 0;
    }

    fn queue_matches_flavor(&self, calls: &Calls) -> bool {
        match flavor_evidence(calls, &self.base) {
            Evidence::BullMq => self.flavor == QueueFlavor::BullMq,
            Evidence::NotBullMq => self.flavor == QueueFlavor::Bull,
        }
    }

    fn finish(&mut self, calls: &Calls, dry_run: bool) -> Progress {
        if !dry_run {
            self.emit_cleaned(calls, true);
        }
        self.done = true;
        Progress::Done
    }
}

impl Work for CleanFinished {
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Progress {
        if self.done {
            return Progress::Done;
        }
        let calls = Calls::for_work(ctx, env);
        let mut window = match self.window {
            Some(w) => w,
            None => {
                match self.check {
                    FlavorCheck::Trust => {}
                    FlavorCheck::Detect => self.flavor = flavor_of(&calls, &self.base),
                    FlavorCheck::Verify if self.queue_matches_flavor(&calls) => {}
                    FlavorCheck::Verify => {
                        tally.skipped_wrong_type += 1;
                        self.done = true;
                        return Progress::Done;
                    }
                }
                // The age cutoff is fixed once, as the library's clean fixes its timestamp.
                let w = Window::new(&self.retention, env.now_ms);
                self.window = Some(w);
                w
            }
        };
        if self.retention.max_memory_bytes.is_some() && !self.memory.is_some_and(|m| m.done) {
            loop {
                match self.walk_memory(&calls, &window) {
                    Ok(true) => break,
                    Ok(false) if Instant::now() < deadline => {}
                    Ok(false) => return Progress::More,
                    Err(()) => {
                        tally.errors += 1;
                        return self.finish(&calls, env.dry_run);
                    }
                }
            }
            self.apply_memory_walk(&calls, &mut window, env);
        }
        loop {
            let before = self.removed;
            let outcome = self.batch(&calls, &window, env.dry_run);
            let n = self.removed - before;
            tally.jobs_removed += n;
            if !env.dry_run && n > 0 {
                counters::record_finished(&self.base, self.set, n);
            }
            match outcome {
                Ok(false) => {}
                Ok(true) => return self.finish(&calls, env.dry_run),
                Err(()) => {
                    // The set changed type or a write failed: stop; the next pass retries.
                    tally.errors += 1;
                    return self.finish(&calls, env.dry_run);
                }
            }
            if !env.dry_run {
                self.emit_cleaned(&calls, false);
            }
            if Instant::now() >= deadline {
                return Progress::More;
            }
        }
    }
}
