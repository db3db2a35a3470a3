//! Pure trim planning: how many entries go, which stream id or score is the age cutoff,
//! which index range a bounded step removes, and the order of stream trim calls. No server
//! calls; `now_ms` is passed in so tests pin the clock.

use crate::policy::{ListEnd, ScoreUnit, TrimAction};

/// Stream entries whose id time is below this (Unix ms) are older than `max_age`. Clamped at
/// 0 because stream ids cannot be negative (`MINID 0-0` removes nothing).
pub fn stream_cutoff_ms(now_ms: i64, max_age_ms: i64) -> u64 {
    now_ms.saturating_sub(max_age_ms).max(0) as u64
}

/// Sorted-set members scored below this are older than `max_age` (scores in `unit`).
pub fn zset_cutoff_score(now_ms: i64, max_age_ms: i64, unit: ScoreUnit) -> f64 {
    let cutoff_ms = now_ms.saturating_sub(max_age_ms) as f64;
    match unit {
        ScoreUnit::Milliseconds => cutoff_ms,
        ScoreUnit::Seconds => cutoff_ms / 1000.0,
    }
}

/// An exclusive score bound as Redis parses it: `(` and the shortest text that reads back as
/// the same double, so the server compares against exactly `score`.
pub fn exclusive_score_bound(score: f64) -> String {
    format!("({score}")
}

/// How many of the oldest entries must go. `max_len` and `max_age` each remove a prefix of
/// the collection in age order, so the stricter limit is simply the longer prefix.
pub fn entries_to_remove(len: u64, max_len: Option<u64>, older_than_cutoff: u64) -> u64 {
    let over_len = max_len.map_or(0, |max| len.saturating_sub(max));
    over_len.max(older_than_cutoff.min(len))
}

/// The `LTRIM <start> <stop>` indexes (never negative, so the command reads the same on any
/// replica) that remove `remove` entries from the end opposite to `newest`.
pub fn list_trim_range(len: u64, remove: u64, newest: ListEnd) -> (u64, u64) {
    let remove = remove.min(len);
    let kept = len - remove;
    match newest {
        // `0 -1` would mean "everything": an empty result needs start > stop.
        ListEnd::Head if kept == 0 => (1, 0),
        ListEnd::Head => (0, kept - 1),
        // When everything goes, start (= len) > stop, which LTRIM also reads as "empty".
        ListEnd::Tail => (remove, len.saturating_sub(1)),
    }
}

/// The rank range (`ZREMRANGEBYRANK 0 <stop>`) of one bounded step: the lowest scores go first.
pub fn zset_step_stop_rank(remove: u64, chunk: u64) -> Option<u64> {
    match remove.min(chunk) {
        0 => None,
        n => Some(n - 1),
    }
}

/// A limit a stream is trimmed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamLimit {
    /// Remove entries whose id is below `<ms>-0`.
    MinIdMs(u64),
    MaxLen(u64),
}

/// One kind of `XTRIM` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStep {
    /// `XTRIM ~`: whole radix-tree nodes only. Redis itself bounds each such call to 100
    /// nodes (its default LIMIT), so it is repeated until it removes nothing.
    WholeNodes(StreamLimit),
    /// `XTRIM =`, once, after the whole-node calls: by then at most one node straddles the
    /// limit, so this call removes less than one node's entries.
    Exact(StreamLimit),
}

/// The `XTRIM` calls that apply `trim` to a stream, in order. Exact trimming is split into
/// bounded whole-node calls plus one small exact call, so no call removes millions at once.
pub fn stream_steps(trim: &TrimAction, now_ms: i64) -> Vec<StreamStep> {
    let limits = [
        trim.max_age_ms
            .map(|age| StreamLimit::MinIdMs(stream_cutoff_ms(now_ms, age))),
        trim.max_len.map(StreamLimit::MaxLen),
    ];
    let mut steps = Vec::new();
    for limit in limits.into_iter().flatten() {
        steps.push(StreamStep::WholeNodes(limit));
        if !trim.approx {
            steps.push(StreamStep::Exact(limit));
        }
    }
    steps
}

/// Whether the stream trim stays on `step` after it removed `removed` entries: whole-node
/// calls repeat until one removes nothing; an exact call runs once.
pub fn stream_step_repeats(step: StreamStep, removed: u64) -> bool {
    matches!(step, StreamStep::WholeNodes(_)) && removed > 0
}

/// The `XTRIM <key> ...` arguments after the key. Explicit ids and counts only: the server
/// rewrites `~` calls to the exact outcome before propagating them, so replicas and the AOF
/// remove the same entries.
pub fn xtrim_args(step: StreamStep) -> [String; 3] {
    let (limit, approx) = match step {
        StreamStep::WholeNodes(limit) => (limit, "~"),
        StreamStep::Exact(limit) => (limit, "="),
    };
    match limit {
        StreamLimit::MinIdMs(ms) => ["MINID".into(), approx.into(), format!("{ms}-0")],
        // Redis parses a signed 64-bit count; anything larger keeps every stream anyway.
        StreamLimit::MaxLen(n) => [
            "MAXLEN".into(),
            approx.into(),
            n.min(i64::MAX as u64).to_string(),
        ],
    }
}

/// Per-call work size for lists and sorted sets: grows while calls are cheap and shrinks when
/// one takes long, so each call stays near `TARGET_CALL_US` whatever the entry sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    size: u64,
}

impl Chunk {
    const START: u64 = 256;
    const MIN: u64 = 16;
    const MAX: u64 = 1 << 16;
    /// A tenth of the default sweep budget: several calls fit in one slice, and the deadline
    /// is checked between calls.
    pub const TARGET_CALL_US: u64 = 100;

    pub fn new() -> Chunk {
        Chunk { size: Self::START }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adjusts the size after a call that handled `done` entries in `elapsed_us`.
    pub fn observe(&mut self, done: u64, elapsed_us: u64) {
        if elapsed_us > Self::TARGET_CALL_US {
            self.size = (self.size / 2).max(Self::MIN);
        } else if elapsed_us * 4 < Self::TARGET_CALL_US && done >= self.size {
            self.size = (self.size * 2).min(Self::MAX);
        }
    }
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const DAY: i64 = 86_400_000;

    fn trim(max_len: Option<u64>, max_age_ms: Option<i64>, approx: bool) -> TrimAction {
        TrimAction {
            max_len,
            max_age_ms,
            approx,
            newest: ListEnd::Head,
            score_unit: ScoreUnit::Milliseconds,
            max_memory_bytes: None,
        }
    }

    #[test]
    fn cutoffs_follow_the_clock_and_unit() {
        assert_eq!(stream_cutoff_ms(NOW, 7 * DAY), (NOW - 7 * DAY) as u64);
        assert_eq!(stream_cutoff_ms(1000, 7 * DAY), 0, "never a negative id");
        assert_eq!(
            zset_cutoff_score(NOW, DAY, ScoreUnit::Milliseconds),
            (NOW - DAY) as f64
        );
        assert_eq!(
            zset_cutoff_score(NOW + 500, DAY, ScoreUnit::Seconds),
            (NOW - DAY) as f64 / 1000.0 + 0.5
        );
    }

    #[test]
    fn score_bounds_read_back_exactly() {
        for score in [1_699_913_600_000.0, 1_699_913_600.5, -3.25, 0.1 + 0.2] {
            let bound = exclusive_score_bound(score);
            assert!(bound.starts_with('('));
            assert_eq!(bound[1..].parse::<f64>(), Ok(score));
        }
    }

    #[test]
    fn the_stricter_limit_wins() {
        let cases = [
            // (len, max_len, older, remove)
            (10, Some(4), 0, 6),
            (10, Some(4), 8, 8),
            (10, Some(20), 3, 3),
            (10, None, 3, 3),
            (10, None, 0, 0),
            (3, Some(5), 0, 0),
            (10, Some(0), 0, 10),
            (5, None, 9, 5),
            (0, Some(0), 0, 0),
        ];
        for (len, max_len, older, want) in cases {
            assert_eq!(
                entries_to_remove(len, max_len, older),
                want,
                "{len} {max_len:?} {older}"
            );
        }
    }

    /// Applies an LTRIM range the way Redis does, to check the plan by its effect.
    fn ltrim(list: &[u64], start: u64, stop: u64) -> Vec<u64> {
        if start > stop || start as usize >= list.len() {
            return Vec::new();
        }
        let stop = (stop as usize).min(list.len() - 1);
        list[start as usize..=stop].to_vec()
    }

    #[test]
    fn list_ranges_keep_the_chosen_end() {
        let list: Vec<u64> = (0..10).collect();
        for remove in 0..=10 {
            let (s, e) = list_trim_range(10, remove, ListEnd::Head);
            assert_eq!(
                ltrim(&list, s, e),
                list[..(10 - remove) as usize].to_vec(),
                "head, remove {remove}"
            );
            let (s, e) = list_trim_range(10, remove, ListEnd::Tail);
            assert_eq!(
                ltrim(&list, s, e),
                list[remove as usize..].to_vec(),
                "tail, remove {remove}"
            );
        }
        assert_eq!(list_trim_range(10, 99, ListEnd::Head), (1, 0));
    }

    #[test]
    fn zset_steps_are_bounded_by_the_chunk() {
        assert_eq!(zset_step_stop_rank(0, 100), None);
        assert_eq!(zset_step_stop_rank(5, 100), Some(4));
        assert_eq!(zset_step_stop_rank(5000, 100), Some(99));
    }

    #[test]
    fn stream_steps_do_whole_nodes_first_and_exact_last() {
        let age = 7 * DAY;
        let cutoff = stream_cutoff_ms(NOW, age);
        assert_eq!(
            stream_steps(&trim(Some(100), Some(age), false), NOW),
            vec![
                StreamStep::WholeNodes(StreamLimit::MinIdMs(cutoff)),
                StreamStep::Exact(StreamLimit::MinIdMs(cutoff)),
                StreamStep::WholeNodes(StreamLimit::MaxLen(100)),
                StreamStep::Exact(StreamLimit::MaxLen(100)),
            ]
        );
        assert_eq!(
            stream_steps(&trim(Some(100), None, true), NOW),
            vec![StreamStep::WholeNodes(StreamLimit::MaxLen(100))]
        );
        assert!(stream_step_repeats(
            StreamStep::WholeNodes(StreamLimit::MaxLen(1)),
            100
        ));
        assert!(!stream_step_repeats(
            StreamStep::WholeNodes(StreamLimit::MaxLen(1)),
            0
        ));
        assert!(!stream_step_repeats(
            StreamStep::Exact(StreamLimit::MaxLen(1)),
            7
        ));
    }

    #[test]
    fn xtrim_arguments_are_explicit() {
        assert_eq!(
            xtrim_args(StreamStep::WholeNodes(StreamLimit::MinIdMs(1234))),
            ["MINID", "~", "1234-0"]
        );
        assert_eq!(
            xtrim_args(StreamStep::Exact(StreamLimit::MaxLen(5))),
            ["MAXLEN", "=", "5"]
        );
        assert_eq!(
            xtrim_args(StreamStep::Exact(StreamLimit::MaxLen(u64::MAX))),
            ["MAXLEN", "=", "9223372036854775807"]
        );
    }

    #[test]
    fn chunks_adapt_to_call_cost() {
        let mut c = Chunk::new();
        let start = c.size();
        c.observe(start, 10);
        assert_eq!(c.size(), start * 2, "cheap full calls grow the chunk");
        c.observe(3, 10);
        assert_eq!(
            c.size(),
            start * 2,
            "a short call (collection ran out) says nothing"
        );
        c.observe(c.size(), 500);
        assert_eq!(c.size(), start, "slow calls shrink it");
        for _ in 0..100 {
            c.observe(c.size(), 10_000);
        }
        assert_eq!(c.size(), Chunk::MIN);
        for _ in 0..100 {
            c.observe(c.size(), 1);
        }
        assert_eq!(c.size(), Chunk::MAX);
    }
}
