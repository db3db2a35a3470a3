//! Trimming a BullMQ queue's `events` stream to `max_len` and/or `max_age`.
//!
//! Like the library's own `trimEvents.lua` it trims with `~` (whole stream nodes only, which
//! is cheap and leaves at most one node's worth above the limit), and with `LIMIT` so each
//! call evicts a bounded number of entries: a huge backlog spans several slices. The server
//! rewrites `~` into the exact threshold it reached before propagating, so replicas and the
//! AOF trim to the same entry. The stream is never deleted: QueueEvents readers keep their
//! last id and simply continue after the trimmed part.

use std::time::Instant;

use redis_module::Context;

use super::calls::Calls;
use super::counters;
use super::layout::events_min_id;
use crate::policy::EventsRetention;
use crate::stats::Tally;
use crate::sweep::work::{Progress, Work, WorkEnv};

/// Entries one XTRIM call may evict (must exceed `stream-node-max-entries`, default 100,
/// or `~` trimming can never drop a whole node).
const EVICT_PER_CALL: &str = "10000";

pub struct TrimEvents {
    key: Vec<u8>,
    base_len: usize,
    retention: EventsRetention,
    by_len_done: bool,
    min_id: Option<Option<String>>,
}

impl TrimEvents {
    pub fn new(key: Vec<u8>, base_len: usize, retention: EventsRetention) -> TrimEvents {
        TrimEvents {
            key,
            base_len,
            retention,
            by_len_done: false,
            min_id: None,
        }
    }

    /// One XTRIM call; the number of entries it evicted (None on error).
    fn trim_once(&self, calls: &Calls, strategy: &str, threshold: &str) -> Option<i64> {
        calls.write(
            "XTRIM",
            &[
                &self.key,
                strategy.as_bytes(),
                b"~",
                threshold.as_bytes(),
                b"LIMIT",
                EVICT_PER_CALL.as_bytes(),
            ],
        )
    }

    fn count(&self, n: u64, tally: &mut Tally, dry_run: bool) {
        tally.entries_trimmed += n;
        if !dry_run && n > 0 {
            counters::record_events_trimmed(&self.key[..self.base_len], n);
        }
    }
}

impl Work for TrimEvents {
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Progress {
        let calls = Calls::for_work(ctx, env);
        if env.dry_run {
            // What MAXLEN would evict; the age criterion is not estimated in a dry run.
            if let (Some(max_len), Some(len)) = (self.retention.max_len, calls.xlen(&self.key)) {
                self.count((len.max(0) as u64).saturating_sub(max_len), tally, true);
            }
            return Progress::Done;
        }
        if let (false, Some(max_len)) = (self.by_len_done, self.retention.max_len) {
            let threshold = max_len.to_string();
            loop {
                match self.trim_once(&calls, "MAXLEN", &threshold) {
                    Some(n) if n > 0 => self.count(n as u64, tally, false),
                    Some(_) => break,
                    None => {
                        tally.errors += 1;
                        return Progress::Done;
                    }
                }
                if Instant::now() >= deadline {
                    return Progress::More;
                }
            }
        }
        self.by_len_done = true;
        let min_id = self.min_id.get_or_insert_with(|| {
            self.retention
                .max_age_ms
                .and_then(|age| events_min_id(env.now_ms, age))
        });
        let Some(min_id) = min_id.clone() else {
            return Progress::Done;
        };
        loop {
            match self.trim_once(&calls, "MINID", &min_id) {
                Some(n) if n > 0 => self.count(n as u64, tally, false),
                Some(_) => return Progress::Done,
                None => {
                    tally.errors += 1;
                    return Progress::Done;
                }
            }
            if Instant::now() >= deadline {
                return Progress::More;
            }
        }
    }
}
