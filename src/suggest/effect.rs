//! What a dry run of each suggested rule would change now, computed with the planning code
//! the sweep and the cleaner use (`plan_ttl`, the cleaner's own dry run, `trim::plan`), by
//! reads only: it runs inside SUGGEST's slices, on a replica too.
//!
//! `freed_bytes` must never exceed what applying the policy frees at once, and should come
//! close to it:
//! - a queue rule: the memory (`MEMORY USAGE … SAMPLES 0`) of each job the cleaner's dry run
//!   would remove, its hash and the sub-keys the library deletes with it (the first
//!   `MAX_MEASURED`; each further one counted as the smallest measured), less what applying
//!   adds: a BullMQ `cleaned` event per 10,000 jobs of a set, each at most a new stream node;
//! - a stream trim: only the whole nodes the removed entries fill (a partly trimmed node's
//!   entries are flagged deleted, not freed);
//! - a sorted-set trim: its share of the set, less a quarter.
//!
//! A TTL given is not memory freed: that memory is `expiring_bytes`.

use std::time::Instant;

use redis_module::{CallOptions, CallReply, CallResult, Context};

use super::reads;
use crate::policy::{FinishedRetention, QueueFlavor, TrimAction};
use crate::queue::calls::Calls;
use crate::queue::finished::{CleanFinished, EventMode, FlavorCheck};
use crate::queue::jobs;
use crate::queue::layout::FinishedSet;
use crate::report::memory_usage;
use crate::stats::Tally;
use crate::sweep::work::{Progress, Work, WorkEnv};
use crate::trim::work::{Shape, TrimWork};
use crate::write::Asker;

/// What applying one rule would change now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effect {
    pub keys: u64,
    pub jobs: u64,
    pub entries: u64,
    pub freed_bytes: u64,
    pub expiring_bytes: u64,
}

/// `stream-node-max-bytes` unless the server says otherwise.
const DEFAULT_NODE_BYTES: u64 = 4_096;
/// The most `MEMORY USAGE` counts per stream node for its radix tree (Redis assumes about
/// 504 bytes; Valkey counts what it allocates, less).
const STREAM_TREE_PER_NODE: u64 = 512;
/// A stream's own allocations beside its nodes, as `MEMORY USAGE` counts them (object,
/// stream and radix-tree headers), rounded up.
const STREAM_HEADER: u64 = 256;

/// One piece of dry-run work, in its database.
pub enum EffectItem {
    /// A queue's finished set, cleaned by the cleaner's own dry run, which lists the jobs
    /// that would go; then those jobs are measured (hash and sub-keys).
    Queue(Box<QueueEffect>),
    /// A stream or sorted set trimmed: the trim's own dry run (the work the sweep plans for
    /// the key) counts the entries that go, by age, length and memory.
    Trim {
        name: Vec<u8>,
        shape: Shape,
        work: Box<TrimWork>,
    },
    /// An active-run set: runs older than `max_age`.
    Runs { index: Vec<u8>, max_age_ms: i64 },
}

/// The dry run of one finished set and the measuring of the jobs it would remove.
pub struct QueueEffect {
    flavor: QueueFlavor,
    base: Vec<u8>,
    /// The finished set the dry run reads.
    set_key: Vec<u8>,
    clean: CleanFinished,
    cleaned: bool,
    /// Memory of each job measured so far (hash and sub-keys), in the dry run's order.
    sizes: Vec<u64>,
}

impl EffectItem {
    /// The dry run of the finished set `set` of the queue at `base` (its library known).
    pub fn queue(
        flavor: QueueFlavor,
        base: Vec<u8>,
        set: FinishedSet,
        retention: FinishedRetention,
    ) -> EffectItem {
        let clean = CleanFinished::new(
            flavor,
            base.clone(),
            set,
            retention,
            FlavorCheck::Trust,
            EventMode::WhenRemoved,
        );
        EffectItem::Queue(Box::new(QueueEffect {
            flavor,
            set_key: [base.as_slice(), set.name().as_bytes()].concat(),
            base,
            clean,
            cleaned: false,
            sizes: Vec::new(),
        }))
    }

    /// The dry run of `trim` on the stream or sorted set `name`.
    pub fn trim(name: Vec<u8>, shape: Shape, trim: TrimAction) -> EffectItem {
        EffectItem::Trim {
            work: Box::new(TrimWork::new(name.clone(), shape, trim)),
            name,
            shape,
        }
    }

    /// Works until `deadline`; true when done (its effect added to `effect`).
    pub fn step(
        &mut self,
        ctx: &Context,
        read: &CallOptions,
        env: &WorkEnv,
        deadline: Instant,
        effect: &mut Effect,
    ) -> bool {
        match self {
            EffectItem::Queue(q) => q.step(ctx, env, deadline, effect),
            EffectItem::Trim { name, shape, work } => {
                let mut tally = Tally::default();
                // The trim's dry run reads the key through the server (an access): put it back.
                let progress =
                    reads::untouched(ctx, name, || work.step(ctx, env, deadline, &mut tally));
                if progress == Progress::More {
                    return false;
                }
                let removed = work.removed();
                effect.entries += removed;
                effect.freed_bytes += match shape {
                    Shape::Stream => {
                        let len = int(ctx, read, "XLEN", &[name]).unwrap_or(0);
                        stream_freed(ctx, read, name, len, removed)
                    }
                    _ => {
                        let len = int(ctx, read, "ZCARD", &[name]).unwrap_or(0);
                        zset_freed(ctx, read, name, len, removed)
                    }
                };
                true
            }
            EffectItem::Runs { index, max_age_ms } => {
                let below = format!("({}", env.now_ms.saturating_sub(*max_age_ms));
                effect.entries +=
                    int(ctx, read, "ZCOUNT", &[index, b"-inf", below.as_bytes()]).unwrap_or(0);
                true
            }
        }
    }
}

impl QueueEffect {
    /// The cleaner's dry run, then the measuring of the jobs it lists; true when done.
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        effect: &mut Effect,
    ) -> bool {
        if !self.cleaned {
            let mut tally = Tally::default();
            // The cleaner reads its set through the server (an access): SUGGEST only looks.
            let (clean, set_key) = (&mut self.clean, &self.set_key);
            let progress =
                reads::untouched(ctx, set_key, || clean.step(ctx, env, deadline, &mut tally));
            if progress == Progress::More {
                return false;
            }
            self.cleaned = true;
        }
        let calls = Calls::new(ctx);
        let listed = self.clean.ids.len().min(MAX_MEASURED);
        while self.sizes.len() < listed {
            let id = &self.clean.ids[self.sizes.len()];
            let job = [self.base.as_slice(), id].concat();
            let size = jobs::job_keys(self.flavor, &job)
                .iter()
                .map(|k| calls.memory_usage(k).unwrap_or(0))
                .sum();
            self.sizes.push(size);
            if self.sizes.len().is_multiple_of(64) && Instant::now() >= deadline {
                return false;
            }
        }
        let removed = self.clean.removed;
        effect.jobs += removed;
        let freed = extrapolated_sum(&mut self.sizes, removed);
        let added = match (self.flavor, removed) {
            (QueueFlavor::BullMq, 1..) => cleaned_events(removed) * event_allowance(ctx),
            _ => 0,
        };
        effect.freed_bytes += freed.saturating_sub(added);
        true
    }
}

/// Jobs measured per finished set at most; the rest are extrapolated.
const MAX_MEASURED: usize = 20_000;

/// The memory of `removed` jobs of which `sizes` were measured: the measured ones as they
/// are, each one not measured as the smallest measured (a lower bound, not a mean).
pub fn extrapolated_sum(sizes: &mut [u64], removed: u64) -> u64 {
    let measured = (sizes.len() as u64).min(removed);
    let smallest = sizes.iter().copied().min().unwrap_or(0);
    let known: u64 = sizes.iter().take(measured as usize).sum();
    known + (removed - measured) * smallest
}

/// The `cleaned` events applying appends for `removed` jobs of one set: one per call of the
/// library's clean (at most 10,000 jobs each, as the cleaner batches them).
pub fn cleaned_events(removed: u64) -> u64 {
    removed.div_ceil(crate::queue::finished::EVENT_EVERY)
}

/// What one appended stream entry may add at most: a new node (its listpack is first
/// allocated at `stream-node-max-bytes`) and its radix-tree share as `MEMORY USAGE` counts it.
fn event_allowance(ctx: &Context) -> u64 {
    config_u64(ctx, "stream-node-max-bytes")
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_NODE_BYTES)
        + STREAM_TREE_PER_NODE
}

/// The environment of the cleaner's dry run: nothing is written (its writer refuses).
pub fn dry_env(now_ms: i64, db: i32) -> WorkEnv {
    WorkEnv {
        now_ms,
        dry_run: true,
        db,
        asker: Asker::Caller,
        rule: None,
    }
}

/// A trim of a sorted set frees its share of the set's memory, less a quarter: the removed
/// members may be smaller than the mean, and an allocation shrinks by size classes a
/// quarter apart (jemalloc).
fn zset_freed(ctx: &Context, read: &CallOptions, name: &[u8], len: u64, removed: u64) -> u64 {
    if removed == 0 || len == 0 {
        return 0;
    }
    let memory = memory_usage(ctx, read, name, len).unwrap_or(0);
    (memory as u128 * removed.min(len) as u128 / len as u128 * 3 / 4) as u64
}

/// A stream frees memory per node only: entries of a node that is partly trimmed are flagged
/// deleted, not freed. The `removed` oldest entries free `whole_nodes` of its nodes, each the
/// smaller of an even share of all nodes' memory and of the closed ones' (the stream's less
/// its header and its open last node, allocated at `stream-node-max-bytes` at least), less
/// the part of its tree share that may stay.
fn stream_freed(ctx: &Context, read: &CallOptions, name: &[u8], len: u64, removed: u64) -> u64 {
    if removed == 0 || len == 0 {
        return 0;
    }
    let Some(info) = reads::read(ctx, read, name, "XINFO", &[b"STREAM", name]) else {
        return 0;
    };
    let Some(nodes) = reads::int_field(&info, "radix-tree-keys").filter(|n| *n > 0) else {
        return 0;
    };
    let nodes = nodes as u64;
    let max_entries = config_u64(ctx, "stream-node-max-entries").unwrap_or(0);
    let freed_nodes = whole_nodes(len, nodes, max_entries, removed);
    if freed_nodes == 0 {
        return 0;
    }
    if reads::int_field(&info, "groups").is_some_and(|g| g > 0) {
        // MEMORY USAGE also counts the groups' pending lists and consumers, which a trim
        // leaves: only what the entries of the freed nodes hold for certain counts.
        let in_nodes = freed_nodes * (len - 1) / (nodes - 1);
        return entries_lower_bound(ctx, read, name, in_nodes.min(removed));
    }
    let memory = memory_usage(ctx, read, name, len).unwrap_or(0);
    let nodes_memory = memory.saturating_sub(STREAM_HEADER);
    let closed = nodes_memory.saturating_sub(event_allowance(ctx)) / (nodes - 1);
    let per_node = closed.min(nodes_memory / nodes);
    per_node.saturating_sub(STREAM_TREE_KEPT) * freed_nodes
}

/// Entries read to bound what the oldest ones hold; further ones count as the smallest read.
const MAX_ENTRIES_READ: u64 = 10_000;

/// A lower bound of what the `count` oldest entries of stream `name` occupy: one byte per
/// value the listpack may store as an integer, the length of every other value (field names
/// may be shared with the node's master entry, so they count nothing).
fn entries_lower_bound(ctx: &Context, read: &CallOptions, name: &[u8], count: u64) -> u64 {
    let page = count.min(MAX_ENTRIES_READ).to_string();
    let args: [&[u8]; 5] = [name, b"-", b"+", b"COUNT", page.as_bytes()];
    let Some(reads::Val::Array(entries)) = reads::read(ctx, read, name, "XRANGE", &args) else {
        return 0;
    };
    let mut sizes: Vec<u64> = entries.iter().map(entry_values_lower_bound).collect();
    extrapolated_sum(&mut sizes, count)
}

/// Whether a listpack stores `value` as an integer: the canonical text of an i64, as the
/// server's `string2ll` accepts it (no sign before 0, no leading zeros, no spaces).
fn stored_as_integer(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|n| n.to_string().as_bytes() == value)
}

/// One XRANGE entry (`[id, [field, value, ...]]`): its values' bytes, at least.
fn entry_values_lower_bound(entry: &reads::Val) -> u64 {
    let reads::Val::Array(parts) = entry else {
        return 0;
    };
    let Some(reads::Val::Array(pairs)) = parts.get(1) else {
        return 0;
    };
    pairs
        .iter()
        .skip(1)
        .step_by(2)
        .map(|v| match v {
            reads::Val::Bytes(b) if stored_as_integer(b) => 1,
            reads::Val::Bytes(b) => b.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Of a removed node's radix-tree share as `MEMORY USAGE` counts it, what may stay: tree
/// nodes that other ids still share.
const STREAM_TREE_KEPT: u64 = 128;

/// Nodes wholly inside the `removed` oldest of `len` entries in `nodes` nodes, for a stream
/// that was only appended to: every node but the last is full, so a node holds at most
/// `(len - 1) / (nodes - 1)` entries, and never more than `stream-node-max-entries` (0: no
/// such limit). The last node is never counted (the stream keeps it).
pub fn whole_nodes(len: u64, nodes: u64, max_entries: u64, removed: u64) -> u64 {
    if nodes < 2 || removed == 0 {
        return 0;
    }
    let by_fill = (removed as u128 * (nodes - 1) as u128 / (len.max(2) - 1) as u128) as u64;
    let by_limit = match max_entries {
        0 => 0,
        n => removed / n,
    };
    by_fill.max(by_limit).min(nodes - 1)
}

/// A numeric server setting.
pub fn config_u64(ctx: &Context, name: &str) -> Option<u64> {
    let args: [&[u8]; 2] = [b"GET", name.as_bytes()];
    let read = crate::report::read_options();
    match ctx.call_ext::<_, CallResult>("CONFIG", &read, &args[..]) {
        Ok(CallReply::Array(items)) => items.iter().nth(1).and_then(|v| match v {
            Ok(CallReply::String(s)) => s.to_string().and_then(|t| t.parse().ok()),
            _ => None,
        }),
        _ => None,
    }
}

/// An integer reply on the key `args[0]` (counts are never negative), None on an error; the
/// key's use data left as it was.
fn int(ctx: &Context, read: &CallOptions, cmd: &str, args: &[&[u8]]) -> Option<u64> {
    reads::int(reads::read(ctx, read, args.first()?, cmd, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_not_measured_count_as_the_smallest_measured() {
        assert_eq!(extrapolated_sum(&mut [300, 100, 200], 3), 600);
        assert_eq!(extrapolated_sum(&mut [300, 100, 200], 5), 800);
        assert_eq!(extrapolated_sum(&mut [], 5), 0);
        assert_eq!(cleaned_events(0), 0);
        assert_eq!(cleaned_events(1), 1);
        assert_eq!(cleaned_events(10_001), 2);
    }

    #[test]
    fn an_entry_counts_its_values_at_least() {
        let bytes = |b: &[u8]| reads::Val::Bytes(b.to_vec());
        let entry = reads::Val::Array(vec![
            bytes(b"1-0"),
            reads::Val::Array(vec![
                bytes(b"payload"),
                bytes(b"0123456789"),
                bytes(b"n"),
                bytes(b"12345"),
            ]),
        ]);
        // The field names may be the master entry's: only the values count, an integer as 1.
        assert_eq!(entry_values_lower_bound(&entry), 11);
        assert_eq!(entry_values_lower_bound(&reads::Val::Nil), 0);
    }

    #[test]
    fn only_whole_nodes_of_the_oldest_entries_are_freed() {
        // 10 nodes of 100: 950 removed free 9 (the tenth is partly trimmed).
        assert_eq!(whole_nodes(1_000, 10, 100, 950), 9);
        assert_eq!(whole_nodes(1_000, 10, 100, 99), 0);
        // One node: never freed (the stream keeps its last node).
        assert_eq!(whole_nodes(25, 1, 100, 20), 0);
        // Nodes closed by size (40 entries each): the fill counts them.
        assert_eq!(whole_nodes(1_000, 25, 100, 400), 9);
        // All removed: every node but the last.
        assert_eq!(whole_nodes(1_000, 10, 100, 1_000), 9);
    }
}
