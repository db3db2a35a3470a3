//! Per-queue counters since load: what the cleaner removed from each queue. Kept in memory
//! (never as keys under a queue's prefix), bounded to `MAX_QUEUES` queues; further queues
//! are counted under one overflow entry.

use std::cell::RefCell;
use std::collections::BTreeMap;

use redis_module::redisvalue::RedisValueKey;
use redis_module::RedisValue;

use super::layout::FinishedSet;

const MAX_QUEUES: usize = 10_000;
/// The entry that counts queues beyond `MAX_QUEUES`.
pub const OVERFLOW: &str = "(other queues)";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    pub completed_removed: u64,
    pub failed_removed: u64,
    /// Finished job hashes that no state set referenced.
    pub orphan_jobs_removed: u64,
    /// Job sub-keys (`:logs`, ...) whose job hash was gone.
    pub orphan_keys_removed: u64,
    pub events_trimmed: u64,
}

impl QueueCounters {
    pub fn fields(&self) -> [(&'static str, u64); 5] {
        [
            ("completed_removed", self.completed_removed),
            ("failed_removed", self.failed_removed),
            ("orphan_jobs_removed", self.orphan_jobs_removed),
            ("orphan_keys_removed", self.orphan_keys_removed),
            ("events_trimmed", self.events_trimmed),
        ]
    }
}

thread_local! {
    static QUEUES: RefCell<BTreeMap<String, QueueCounters>> = const { RefCell::new(BTreeMap::new()) };
}

/// `<prefix>:<queue>:` → `<prefix>:<queue>` (lossy UTF-8 for display).
fn queue_name(base: &[u8]) -> String {
    String::from_utf8_lossy(base.strip_suffix(b":").unwrap_or(base)).into_owned()
}

fn record(base: &[u8], f: impl FnOnce(&mut QueueCounters)) {
    QUEUES.with(|q| {
        let mut q = q.borrow_mut();
        let name = queue_name(base);
        let name = match q.contains_key(&name) || q.len() < MAX_QUEUES {
            true => name,
            false => OVERFLOW.to_string(),
        };
        f(q.entry(name).or_default());
    });
}

pub fn record_finished(base: &[u8], set: FinishedSet, n: u64) {
    record(base, |c| match set {
        FinishedSet::Completed => c.completed_removed += n,
        FinishedSet::Failed => c.failed_removed += n,
    });
}

pub fn record_orphan_job(base: &[u8]) {
    record(base, |c| c.orphan_jobs_removed += 1);
}

pub fn record_orphan_key(base: &[u8]) {
    record(base, |c| c.orphan_keys_removed += 1);
}

pub fn record_events_trimmed(base: &[u8], n: u64) {
    record(base, |c| c.events_trimmed += n);
}

/// `(queue "<prefix>:<queue>", counters)` for every queue the cleaner changed.
pub fn snapshot() -> Vec<(String, QueueCounters)> {
    QUEUES.with(|q| q.borrow().iter().map(|(k, v)| (k.clone(), *v)).collect())
}

pub fn reset() {
    QUEUES.with(|q| q.borrow_mut().clear());
}

/// A map `queue → {counter → value}` for `RETENTION.STATS GET`.
pub fn stats_reply() -> RedisValue {
    let map = snapshot()
        .into_iter()
        .map(|(name, c)| {
            let fields = c
                .fields()
                .iter()
                .map(|(n, v)| {
                    (
                        RedisValueKey::String(n.to_string()),
                        RedisValue::Integer((*v).min(i64::MAX as u64) as i64),
                    )
                })
                .collect();
            (RedisValueKey::String(name), RedisValue::OrderedMap(fields))
        })
        .collect();
    RedisValue::OrderedMap(map)
}

/// One `INFO` line per queue: `(field name, "completed_removed=1,failed_removed=0,...")`.
/// Field names keep `[A-Za-z0-9_]` only, as INFO requires.
pub fn info_fields() -> Vec<(String, String)> {
    snapshot()
        .into_iter()
        .map(|(name, c)| {
            let safe: String = name
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                .collect();
            let value = c
                .fields()
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            (format!("queue_{safe}"), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_queue_and_reset() {
        reset();
        record_finished(b"bull:a:", FinishedSet::Completed, 3);
        record_finished(b"bull:a:", FinishedSet::Failed, 1);
        record_orphan_job(b"bull:b:");
        let snap = snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].0, "bull:a");
        assert_eq!(snap[0].1.completed_removed, 3);
        assert_eq!(snap[0].1.failed_removed, 1);
        assert_eq!(snap[1].1.orphan_jobs_removed, 1);
        let info = info_fields();
        assert_eq!(info[0].0, "queue_bull_a");
        assert!(info[0]
            .1
            .starts_with("completed_removed=3,failed_removed=1"));
        reset();
        assert!(snapshot().is_empty());
    }
}
