//! What a dry run of each suggested rule would change now, computed with the planning code
//! the sweep and the cleaner use (`plan_ttl`, the cleaner's own dry run, `trim::plan`), by
//! reads only: it runs inside SUGGEST's slices, on a replica too.
//!
//! `freed_bytes` must never exceed what applying the policy frees: half the memory of the
//! removed job hashes (`MEMORY USAGE`; their sub-keys and set entries are not counted), and
//! half a trim's share of its collection, for a stream less one node (entries of a node that
//! is only partly trimmed are flagged, not freed). Half, because applying also adds: the
//! library's `cleaned` event, and on Redis 8 each TTL given is stored in its key.

use std::time::Instant;

use redis_module::{CallOptions, CallReply, CallResult, Context};

use crate::policy::{FinishedRetention, KeyType, QueueAction, TrimAction};
use crate::queue::layout::Window;
use crate::report::memory_usage;
use crate::stats::Tally;
use crate::sweep::work::{Planned, Progress, Work, WorkEnv};
use crate::trim::plan::{
    entries_to_remove, exclusive_score_bound, stream_cutoff_ms, zset_cutoff_score,
};
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

/// Stream entries per radix-tree node unless the server says otherwise.
const DEFAULT_NODE_ENTRIES: u64 = 100;
/// Stream entries read per XRANGE call when counting old entries.
const XRANGE_PAGE: usize = 1_000;

/// One piece of dry-run work, in its database.
pub enum EffectItem {
    /// A queue's finished set, cleaned by the cleaner's own dry run (the work the sweep
    /// plans for the set), which counts the jobs that go; then the jobs the set's window
    /// selects are measured, and the smallest that many of them count as freed (the cleaner
    /// keeps some the window selects: locked ones, ones a parent waits for).
    Queue {
        base: Vec<u8>,
        set_key: Vec<u8>,
        work: Option<Box<dyn Work>>,
        window: Window,
        removed: Option<u64>,
        /// Memory of the job hashes the window selects (at most `MAX_MEASURED`).
        sizes: Vec<u64>,
        /// Selected jobs beyond `MAX_MEASURED`.
        unmeasured: u64,
        offset: u64,
        scanned: bool,
    },
    /// A stream trimmed by age and/or length: entries below the age cutoff are counted.
    Stream {
        name: Vec<u8>,
        trim: TrimAction,
        /// XRANGE's next start (`-` or an exclusive id).
        from: Vec<u8>,
        older: u64,
    },
    /// A sorted set trimmed by score age and/or length.
    ZSet { name: Vec<u8>, trim: TrimAction },
    /// An active-run set: runs older than `max_age`.
    Runs { index: Vec<u8>, max_age_ms: i64 },
}

impl EffectItem {
    /// The dry run of queue rule `queue` on the finished set `set_key` of the queue at `base`.
    pub fn queue(
        queue: &QueueAction,
        base: Vec<u8>,
        set_key: Vec<u8>,
        retention: FinishedRetention,
        now_ms: i64,
    ) -> EffectItem {
        let work = match crate::queue::plan(queue, &set_key, KeyType::ZSet) {
            Planned::Work(work) => Some(work),
            Planned::Nothing | Planned::WrongType => None,
        };
        EffectItem::Queue {
            base,
            set_key,
            work,
            window: Window::new(&retention, now_ms),
            removed: None,
            sizes: Vec::new(),
            unmeasured: 0,
            offset: 0,
            scanned: false,
        }
    }

    pub fn stream(name: Vec<u8>, trim: TrimAction) -> EffectItem {
        EffectItem::Stream {
            name,
            trim,
            from: b"-".to_vec(),
            older: 0,
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
            EffectItem::Queue {
                base,
                set_key,
                work,
                window,
                removed,
                sizes,
                unmeasured,
                offset,
                scanned,
            } => {
                if removed.is_none() {
                    let mut tally = Tally::default();
                    if let Some(work) = work.as_mut() {
                        if work.step(ctx, env, deadline, &mut tally) == Progress::More {
                            return false;
                        }
                    }
                    *removed = Some(tally.jobs_removed);
                    *work = None;
                }
                while !*scanned {
                    let card =
                        super::reads::int(super::reads::on(ctx, read, "ZCARD", set_key, &[]))
                            .unwrap_or(0);
                    let page =
                        super::reads::zrange_scores(ctx, read, set_key, *offset, *offset + 255);
                    for (i, (id, score)) in page.iter().enumerate() {
                        if window.reason(card, *offset + i as u64, *score).is_none() {
                            *scanned = true;
                            break;
                        }
                        match sizes.len() < MAX_MEASURED {
                            true => {
                                let job = [base.as_slice(), id].concat();
                                sizes.push(memory_usage(ctx, read, &job, 0).unwrap_or(0));
                            }
                            false => *unmeasured += 1,
                        }
                    }
                    *offset += page.len() as u64;
                    *scanned |= page.len() < 256;
                    if !*scanned && Instant::now() >= deadline {
                        return false;
                    }
                }
                let removed = removed.unwrap_or(0);
                effect.jobs += removed;
                // Half: applying the policy also adds (the library's `cleaned` event, and on
                // Redis 8 every TTL given is stored in its key), and the total must still
                // free at least the sum announced.
                effect.freed_bytes += smallest_sum(sizes, removed.saturating_sub(*unmeasured)) / 2;
                true
            }
            EffectItem::Stream {
                name,
                trim,
                from,
                older,
            } => {
                let Some(len) = int(ctx, read, "XLEN", &[name]) else {
                    return true;
                };
                if let Some(age) = trim.max_age_ms {
                    let below = format!("({}-0", stream_cutoff_ms(env.now_ms, age));
                    loop {
                        let page = XRANGE_PAGE.to_string();
                        let args: [&[u8]; 5] =
                            [name, from, below.as_bytes(), b"COUNT", page.as_bytes()];
                        let ids = stream_ids(ctx, read, &args);
                        *older += ids.len() as u64;
                        match ids.last() {
                            Some(last) if ids.len() == XRANGE_PAGE => {
                                *from = [b"(".as_slice(), last].concat();
                            }
                            _ => break,
                        }
                        if Instant::now() >= deadline {
                            return false;
                        }
                    }
                }
                let removed = entries_to_remove(len, trim.max_len, *older);
                effect.entries += removed;
                let whole_nodes = removed.saturating_sub(node_entries(ctx, read));
                effect.freed_bytes += share(ctx, read, name, len, whole_nodes);
                true
            }
            EffectItem::ZSet { name, trim } => {
                let Some(len) = int(ctx, read, "ZCARD", &[name]) else {
                    return true;
                };
                let older = match trim.max_age_ms {
                    Some(age) => {
                        let cutoff = zset_cutoff_score(env.now_ms, age, trim.score_unit);
                        let below = exclusive_score_bound(cutoff);
                        int(ctx, read, "ZCOUNT", &[name, b"-inf", below.as_bytes()]).unwrap_or(0)
                    }
                    None => 0,
                };
                let removed = entries_to_remove(len, trim.max_len, older);
                effect.entries += removed;
                effect.freed_bytes += share(ctx, read, name, len, removed);
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

/// Job hashes measured per finished set at most.
const MAX_MEASURED: usize = 200_000;

/// The sum of the `n` smallest sizes: the jobs that go are `n` of those measured (or more of
/// them, when some were not measured), whichever they are.
pub fn smallest_sum(sizes: &mut [u64], n: u64) -> u64 {
    sizes.sort_unstable();
    sizes.iter().take(n as usize).sum()
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

/// Half of `removed / len` of the key's memory: a trim frees about its share, and halving
/// keeps the figure below what the allocator really returns.
fn share(ctx: &Context, read: &CallOptions, name: &[u8], len: u64, removed: u64) -> u64 {
    if removed == 0 || len == 0 {
        return 0;
    }
    let memory = memory_usage(ctx, read, name, len).unwrap_or(0);
    (memory as u128 * removed.min(len) as u128 / len as u128 / 2) as u64
}

fn node_entries(ctx: &Context, read: &CallOptions) -> u64 {
    let args: [&[u8]; 2] = [b"GET", b"stream-node-max-entries"];
    match ctx.call_ext::<_, CallResult>("CONFIG", read, &args[..]) {
        Ok(CallReply::Array(items)) => items
            .iter()
            .nth(1)
            .and_then(|v| match v {
                Ok(CallReply::String(s)) => s.to_string().and_then(|t| t.parse().ok()),
                _ => None,
            })
            .filter(|n: &u64| *n > 0)
            .unwrap_or(DEFAULT_NODE_ENTRIES),
        _ => DEFAULT_NODE_ENTRIES,
    }
}

/// An integer reply (counts are never negative), None on an error.
pub fn int(ctx: &Context, read: &CallOptions, cmd: &str, args: &[&[u8]]) -> Option<u64> {
    match ctx.call_ext::<_, CallResult>(cmd, read, args) {
        Ok(CallReply::I64(n)) => Some(n.to_i64().max(0) as u64),
        _ => None,
    }
}

/// The ids of an `XRANGE` reply.
fn stream_ids(ctx: &Context, read: &CallOptions, args: &[&[u8]]) -> Vec<Vec<u8>> {
    let Ok(CallReply::Array(entries)) = ctx.call_ext::<_, CallResult>("XRANGE", read, args) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| match entry {
            Ok(CallReply::Array(pair)) => match pair.iter().next() {
                Some(Ok(CallReply::String(id))) => Some(id.as_bytes().to_vec()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
