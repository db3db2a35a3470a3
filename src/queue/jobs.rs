//! Removing one job the way the library's own removal does, and never removing a live one.
//!
//! BullMQ (`cleanJobsInSet-3.lua` → `removeJob.lua`, hard = true, dedup = true):
//! `DEL <job> <job>:logs :dependencies :processed :failed :unsuccessful`, the de-duplication
//! key `de:<deid>` (and `dn:<deid>`) when it still names this job, and the id from the set.
//! Bull (`cleanJobsInSet-3.lua`): `DEL <job> <job>:logs`, the id from the set and from
//! `priority`, and the job's entry in the rate limiter's index.
//!
//! Deliberate differences, both in the "leave it" direction:
//! - A job that has a `:lock` is live (a worker holds it): kept. Bull's clean does the same.
//! - A BullMQ job still listed in its parent's `:dependencies` (a failed child of a parent
//!   in `waiting-children`) is kept. BullMQ's clean would delete that waiting parent (same
//!   queue) or push it to `wait` (other queue); a retention sweep must never touch a waiting
//!   job. Once the parent no longer waits for it, the child is cleaned like any other.

use super::calls::{key, Calls};
use super::layout::job_sub_suffixes;
use crate::history;
use crate::policy::QueueFlavor;

/// What a batch of removals deletes; committed in one go so that the reads that decided it
/// and the writes happen in the same atomic step.
#[derive(Default)]
pub struct Batch {
    pub ids: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
    /// Bull: `(limited set, job id)` entries of the rate limiter's index.
    limited: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The job hash and every sub-key the library deletes with it.
pub fn job_keys(flavor: QueueFlavor, job_key: &[u8]) -> Vec<Vec<u8>> {
    let mut keys = Vec::with_capacity(6);
    keys.push(job_key.to_vec());
    for suffix in job_sub_suffixes(flavor) {
        keys.push(key(&[job_key, b":", suffix.as_bytes()]));
    }
    keys
}

pub fn is_locked(calls: &Calls, job_key: &[u8]) -> bool {
    calls.exists(&[&key(&[job_key, b":lock"])])
}

/// Whether the job's parent still waits for it (BullMQ `parentKey` + `:dependencies`).
/// In doubt (a read error) the answer is yes.
pub fn parent_waits_for(calls: &Calls, job_key: &[u8], parent_key: Option<&[u8]>) -> bool {
    let Some(parent) = parent_key.filter(|p| !p.is_empty()) else {
        return false;
    };
    calls
        .sismember(&key(&[parent, b":dependencies"]), job_key)
        .unwrap_or(true)
}

/// Queues for deletion those of `keys` that exist. Most jobs have no sub-keys; a lookup is
/// several times cheaper than deleting a missing key, and the replicated UNLINK then names
/// only keys that are really deleted.
fn add_existing(calls: &Calls, batch: &mut Batch, keys: Vec<Vec<u8>>) {
    batch
        .keys
        .extend(keys.into_iter().filter(|k| calls.exists(&[k])));
}

/// Adds a BullMQ job to the batch if it may go. `fields` = HMGET parentKey deid.
fn add_bullmq(calls: &Calls, batch: &mut Batch, base: &[u8], id: &[u8]) -> bool {
    let job_key = key(&[base, id]);
    let Ok(fields) = calls.hmget(&job_key, &[b"parentKey", b"deid"]) else {
        return false;
    };
    if is_locked(calls, &job_key) || parent_waits_for(calls, &job_key, fields[0].as_deref()) {
        return false;
    }
    if let Some(deid) = fields.get(1).and_then(|d| d.as_deref()) {
        // removeDeduplicationKeyIfNeededOnRemoval.lua: only when the key still names this job.
        let de = key(&[base, b"de:", deid]);
        if calls.get(&de).as_deref() == Some(id) {
            batch.keys.push(de);
            add_existing(calls, batch, vec![key(&[base, b"dn:", deid])]);
        }
    }
    add_existing(calls, batch, job_keys(QueueFlavor::BullMq, &job_key));
    batch.ids.push(id.to_vec());
    true
}

/// Adds a Bull job to the batch if it may go. With `age_cutoff_ms` the job hash's own
/// time must agree that it is old (see `layout::bull_hash_allows`).
fn add_bull(
    calls: &Calls,
    batch: &mut Batch,
    base: &[u8],
    id: &[u8],
    age_cutoff_ms: Option<i64>,
    limiter_index: Option<&[u8]>,
) -> bool {
    let job_key = key(&[base, id]);
    if is_locked(calls, &job_key) {
        return false;
    }
    if let Some(cutoff) = age_cutoff_ms {
        let Ok(ts) = calls.hmget(&job_key, &[b"finishedOn", b"processedOn", b"timestamp"]) else {
            return false;
        };
        if !super::layout::bull_hash_allows(&ts, cutoff) {
            return false;
        }
    }
    if let Some(index) = limiter_index {
        match calls.hget(index, id) {
            Ok(Some(limited)) => batch.limited.push((limited, id.to_vec())),
            Ok(None) => {}
            Err(()) => return false,
        }
    }
    add_existing(calls, batch, job_keys(QueueFlavor::Bull, &job_key));
    batch.ids.push(id.to_vec());
    true
}

/// Per-batch facts shared by the jobs of one queue.
pub struct QueueCtx<'a> {
    pub flavor: QueueFlavor,
    pub base: &'a [u8],
    /// Bull: `<base>limiter:index` when it exists.
    pub limiter_index: Option<Vec<u8>>,
}

impl<'a> QueueCtx<'a> {
    pub fn new(calls: &Calls, flavor: QueueFlavor, base: &'a [u8]) -> QueueCtx<'a> {
        let limiter_index = match flavor {
            QueueFlavor::Bull => {
                let index = key(&[base, b"limiter:index"]);
                calls.exists(&[&index]).then_some(index)
            }
            QueueFlavor::BullMq => None,
        };
        QueueCtx {
            flavor,
            base,
            limiter_index,
        }
    }

    /// Adds job `id` to the batch if it may go; false = it stays.
    pub fn add(
        &self,
        calls: &Calls,
        batch: &mut Batch,
        id: &[u8],
        bull_age_cutoff_ms: Option<i64>,
    ) -> bool {
        // A member that names queue structure (`meta`, `id`, `de:x`, ...) is a corrupt entry:
        // `<base><id>` is the queue's own key, never a job's. It stays, and so does the key.
        if super::layout::is_structure_id(id) {
            return false;
        }
        match self.flavor {
            QueueFlavor::BullMq => add_bullmq(calls, batch, self.base, id),
            QueueFlavor::Bull => add_bull(
                calls,
                batch,
                self.base,
                id,
                bull_age_cutoff_ms,
                self.limiter_index.as_deref(),
            ),
        }
    }

    /// Deletes what the batch collected and removes its ids from `set` (if any), each as
    /// one replicated command with explicit arguments.
    pub fn commit(&self, calls: &Calls, batch: &Batch, set: Option<&[u8]>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut ok = true;
        for chunk in batch.keys.chunks(ARGS_PER_COMMAND) {
            let args: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            ok &= calls.write("UNLINK", &args).is_some();
        }
        let db = calls.db();
        let removed = history::Action::JobRemoved {
            orphan: set.is_none(),
        };
        for key in &batch.keys {
            history::record(db, key, calls.rule(), removed);
        }
        let mut sets: Vec<Vec<u8>> = set.map(|s| vec![s.to_vec()]).unwrap_or_default();
        let priority = key(&[self.base, b"priority"]);
        if self.flavor == QueueFlavor::Bull && calls.exists(&[&priority]) {
            sets.push(priority);
        }
        for set in &sets {
            for chunk in batch.ids.chunks(ARGS_PER_COMMAND) {
                let mut args: Vec<&[u8]> = vec![set];
                args.extend(chunk.iter().map(Vec::as_slice));
                ok &= calls.write("ZREM", &args).is_some();
            }
        }
        if let Some(index) = &self.limiter_index {
            for (limited, id) in &batch.limited {
                ok &= calls.write("SREM", &[limited, id]).is_some();
                ok &= calls.write("HDEL", &[index, id]).is_some();
            }
        }
        ok
    }
}

/// Arguments per replicated command: keeps each command (and its replication record) small.
const ARGS_PER_COMMAND: usize = 1000;
