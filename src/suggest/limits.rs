//! The limits SUGGEST proposes, each with the reason it is chosen, and the words and numbers
//! its comments are written in (pure: no server calls).

use crate::policy::duration::format_duration_ms;

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// BullMQ's docs advise bounding finished jobs by age and count (`removeOnComplete`/
/// `removeOnFail` `{age, count}`); a day of completed jobs is what dashboards show.
pub const QUEUE_COMPLETED_MAX_AGE: &str = "24h";
/// Failed jobs are kept longer than completed ones: someone has to look at them.
pub const QUEUE_FAILED_MAX_AGE: &str = "7d";
/// At most this many finished jobs per set, as the libraries' examples bound them by count.
pub const QUEUE_MAX_LEN: u64 = 1_000;
pub const QUEUE_REASON: &str = "BullMQ's docs advise bounding finished jobs by age and count (removeOnComplete/removeOnFail {age, count}): completed jobs kept 24h and at most 1,000, failed jobs 7d and at most 1,000 (kept longer for inspection); waiting, active, delayed, prioritized and paused jobs, locks and the queue's structure keys are never touched";

/// Celery's default `result_expires` is one day.
pub const CELERY_TTL: &str = "1d";
pub const CELERY_REASON: &str = "Celery's default result_expires is 1 day";

/// Sidekiq's own limits for its dead set: `dead_max_jobs` 10,000 and `dead_timeout_in_seconds`
/// 6 months (180 days); the scores are epoch seconds.
pub const SIDEKIQ_DEAD_MAX_LEN: u64 = 10_000;
pub const SIDEKIQ_DEAD_MAX_AGE: &str = "180d";
pub const SIDEKIQ_DEAD_REASON: &str = "Sidekiq's own limits for the dead set: dead_max_jobs 10,000 and dead_timeout 6 months (scores are epoch seconds)";

/// The module's default for runs rules: a run older than that is taken as abandoned.
pub const RUNS_MAX_AGE: &str = "3h";

/// Sessions without a TTL anywhere in their group: 14 days, the longest common framework
/// default (Django's SESSION_COOKIE_AGE is 2 weeks; Rails and Express default shorter).
pub const SESSION_DEFAULT_TTL_MS: i64 = 14 * DAY_MS;
/// Caches without a TTL anywhere in their group: one day, a conservative default for data
/// that can be recomputed.
pub const CACHE_DEFAULT_TTL_MS: i64 = DAY_MS;

/// Streams that only grow keep a week of entries when older ones exist.
pub const STREAM_MAX_AGE_MS: i64 = 7 * DAY_MS;
/// The longest `max_age` suggested to spare what a consumer group has not read: a group that
/// has not read for longer is no reader to plan around (a trim kept beyond it would be no
/// bound), so the stream gets no rule and the reason says so.
pub const STREAM_MAX_SPARING_AGE_MS: i64 = 90 * DAY_MS;

/// Finished jobs whose mean memory is over this are big: their sets also get `max_memory`
/// (a count limit alone lets 1,000 of them take 64 MB and more).
pub const BIG_JOB_BYTES: u64 = 64 * 1024;
/// A stream group over this much memory also gets `max_memory`.
pub const BIG_STREAM_BYTES: u64 = 64 * MB;
/// Without `maxmemory`, each big collection is bounded to this much.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 * MB;
/// The share of `maxmemory` that the big collections of one rule may take together.
const MAXMEMORY_SHARE_DIVISOR: u64 = 10;
const MB: u64 = 1024 * 1024;

/// A `max_memory` for each of `holders` big collections of one rule, and the reason in words:
/// a tenth of `maxmemory` shared among them, or 64mb each when no `maxmemory` is set; whole
/// megabytes (2^20), at least 1mb.
pub fn memory_budget(maxmemory: u64, holders: u64) -> (u64, String) {
    let holders = holders.max(1);
    let (budget, why) = match maxmemory {
        0 => (
            DEFAULT_MEMORY_BUDGET,
            "no maxmemory is set: 64mb each".to_string(),
        ),
        m => (
            m / MAXMEMORY_SHARE_DIVISOR / holders,
            format!(
                "a tenth of maxmemory ({}) shared among {}",
                bytes(m),
                plural(holders, "of them", "of them")
            ),
        ),
    };
    ((budget / MB).max(1) * MB, why)
}

/// A size as the policy file takes it, in whole megabytes: `"64mb"`.
pub fn size_text(bytes: u64) -> String {
    format!("{}mb", (bytes / MB).max(1))
}

/// Durations people write, in order: a TTL seen in the data is rounded up to the next one.
const READABLE_MS: [i64; 22] = [
    MINUTE_MS,
    5 * MINUTE_MS,
    10 * MINUTE_MS,
    15 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
    2 * HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    12 * HOUR_MS,
    DAY_MS,
    2 * DAY_MS,
    3 * DAY_MS,
    7 * DAY_MS,
    14 * DAY_MS,
    30 * DAY_MS,
    60 * DAY_MS,
    90 * DAY_MS,
    180 * DAY_MS,
    365 * DAY_MS,
    2 * 365 * DAY_MS,
    5 * 365 * DAY_MS,
];

/// `ms` rounded up to a readable duration (1m, 5m, ... 1d, 2d, 3d, 7d, 14d, 30d, ...); beyond
/// the table, whole years.
pub fn round_up_duration_ms(ms: i64) -> i64 {
    let ms = ms.max(1);
    READABLE_MS
        .iter()
        .copied()
        .find(|d| *d >= ms)
        .unwrap_or_else(|| ((ms + 365 * DAY_MS - 1) / (365 * DAY_MS)) * 365 * DAY_MS)
}

/// A duration as the policy file takes it (`"14d"`, `"1h"`).
pub fn duration_text(ms: i64) -> String {
    format_duration_ms(ms)
}

/// A duration in words, to two units at most: "3 days", "5 hours", "9 days 4 hours".
pub fn age_words(ms: i64) -> String {
    let ms = ms.max(0);
    let units = [
        (DAY_MS, "day"),
        (HOUR_MS, "hour"),
        (MINUTE_MS, "minute"),
        (SECOND_MS, "second"),
    ];
    let plural = |n: i64, unit: &str| match n {
        1 => format!("1 {unit}"),
        _ => format!("{n} {unit}s"),
    };
    for (i, (unit_ms, unit)) in units.iter().enumerate() {
        if ms >= *unit_ms {
            let n = ms / unit_ms;
            let first = plural(n, unit);
            if let Some((next_ms, next)) = units.get(i + 1) {
                let rest = (ms % unit_ms) / next_ms;
                if rest > 0 && n < 10 {
                    return format!("{first} {}", plural(rest, next));
                }
            }
            return first;
        }
    }
    "0 seconds".into()
}

/// A count with thousands separators: 200000 → "200,000".
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes to two significant digits: 1234567 → "1.2 MB", 512 → "512 B".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    match (unit, value < 10.0) {
        (0, _) => format!("{n} B"),
        (_, true) => format!("{value:.1} {}", UNITS[unit]),
        (_, false) => format!("{value:.0} {}", UNITS[unit]),
    }
}

/// "1 key" / "3 keys".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        _ => format!("{} {many}", count(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::duration::parse_duration_ms;

    #[test]
    fn durations_round_up_to_readable_ones() {
        for (ms, text) in [
            (1, "1m"),
            (59 * SECOND_MS, "1m"),
            (61 * SECOND_MS, "5m"),
            (HOUR_MS, "1h"),
            (HOUR_MS + 1, "2h"),
            (3 * HOUR_MS - 5, "3h"),
            (23 * HOUR_MS, "1d"),
            (13 * DAY_MS + 23 * HOUR_MS, "2w"),
            (14 * DAY_MS + 1, "30d"),
            (200 * DAY_MS, "365d"),
            (6 * 365 * DAY_MS, "2190d"),
        ] {
            let got = duration_text(round_up_duration_ms(ms));
            assert_eq!(got, text, "{ms}");
            assert!(parse_duration_ms(&got).is_ok_and(|back| back >= ms));
        }
    }

    #[test]
    fn numbers_and_ages_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(200_000), "200,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_234_567), "1.2 MB");
        assert_eq!(bytes(45_000), "45 KB");
        assert_eq!(age_words(9 * DAY_MS + 4 * HOUR_MS), "9 days 4 hours");
        assert_eq!(age_words(12 * DAY_MS + 4 * HOUR_MS), "12 days");
        assert_eq!(age_words(HOUR_MS), "1 hour");
        assert_eq!(age_words(0), "0 seconds");
        assert_eq!(plural(1, "key", "keys"), "1 key");
        assert_eq!(plural(2_000, "key", "keys"), "2,000 keys");
    }

    #[test]
    fn memory_budgets_share_maxmemory_in_whole_megabytes() {
        assert_eq!(memory_budget(0, 4).0, 64 * MB);
        assert_eq!(memory_budget(1000 * MB, 2).0, 50 * MB);
        assert_eq!(memory_budget(10 * MB, 40).0, MB, "at least 1mb");
        assert_eq!(size_text(memory_budget(100 * MB, 2).0), "5mb");
        assert!(memory_budget(100 * MB, 2)
            .1
            .contains("a tenth of maxmemory"));
    }
}
