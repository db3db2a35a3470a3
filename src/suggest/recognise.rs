//! Recognising owners from key shapes and contents (pure: the facts come in as values, so
//! every decision is unit-tested without a server).

use super::limits::{
    age_words, duration_text, round_up_duration_ms, HOUR_MS, STREAM_MAX_AGE_MS,
    STREAM_MAX_SPARING_AGE_MS,
};

/// Separators inside a name segment (as the grouping cuts them).
const WORD_SEPARATORS: &[u8] = b":-_./|@=,#+ \t{}";

/// Words that name a lock, a counter, a limiter or a sequence: such keys are never given a
/// TTL (a lock that expires early lets two workers in; a counter that expires restarts).
const LOCK_OR_COUNTER_WORDS: &[&str] = &[
    "lock",
    "locks",
    "locked",
    "mutex",
    "lease",
    "leases",
    "semaphore",
    "sem",
    "counter",
    "counters",
    "count",
    "counts",
    "seq",
    "sequence",
    "incr",
    "nonce",
    "ratelimit",
    "rate",
    "limit",
    "limits",
    "limiter",
    "throttle",
    "quota",
    "id",
    "ids",
    "stat",
    "stats",
    "metric",
    "metrics",
    "hits",
    "views",
];

const SESSION_WORDS: &[&str] = &["session", "sessions", "sess", "usersession"];
const CACHE_WORDS: &[&str] = &["cache", "caches", "cached", "memo", "memoize"];

/// What a group of strings or hashes holds, by the words of its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Session,
    Cache,
}

impl Shape {
    pub fn owner(self) -> &'static str {
        match self {
            Shape::Session => "session",
            Shape::Cache => "cache",
        }
    }
}

/// The lower-cased words of a pattern (its segments cut at separators; `*` dropped).
pub fn words(pattern: &[u8]) -> Vec<String> {
    pattern
        .split(|b| WORD_SEPARATORS.contains(b))
        .map(|w| {
            String::from_utf8_lossy(w)
                .replace('*', "")
                .to_ascii_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Whether a pattern names locks or counters (never given a TTL).
pub fn looks_like_lock_or_counter(pattern: &[u8]) -> bool {
    words(pattern)
        .iter()
        .any(|w| LOCK_OR_COUNTER_WORDS.contains(&w.as_str()))
}

/// Session or cache keys by the words of their pattern; None for anything else, and for
/// names that also look like locks or counters.
pub fn shape_of(pattern: &[u8]) -> Option<Shape> {
    if looks_like_lock_or_counter(pattern) {
        return None;
    }
    let words = words(pattern);
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    if has(SESSION_WORDS) {
        Some(Shape::Session)
    } else if has(CACHE_WORDS) {
        Some(Shape::Cache)
    } else {
        None
    }
}

/// Celery's result keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeleryKind {
    /// `celery-task-meta-<task id>`: one task's state and result.
    Task,
    /// `celery-taskset-meta-<group id>`: a group's results.
    Taskset,
}

pub fn celery_kind(pattern: &[u8]) -> Option<CeleryKind> {
    if pattern.starts_with(b"celery-task-meta-") {
        Some(CeleryKind::Task)
    } else if pattern.starts_with(b"celery-taskset-meta-") {
        Some(CeleryKind::Taskset)
    } else {
        None
    }
}

/// Celery's JSON result: `{"status": ..., "result": ..., "task_id": ...}`.
pub fn is_celery_result(value: &[u8]) -> bool {
    contains(value, b"\"task_id\"") && contains(value, b"\"status\"")
}

/// A Sidekiq job payload: JSON with its job id `jid` and worker `class`.
pub fn is_sidekiq_job(member: &[u8]) -> bool {
    member.starts_with(b"{") && contains(member, b"\"jid\"") && contains(member, b"\"class\"")
}

/// An RQ job hash: `status` and `created_at` are written by every RQ version.
pub fn is_rq_job(status: Option<&[u8]>, created_at: Option<&[u8]>) -> bool {
    status.is_some() && created_at.is_some()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The Sidekiq namespace of a `queues` set's name (`queues` → "", `myapp:queues` → "myapp:").
pub fn sidekiq_namespace(name: &[u8]) -> Option<&[u8]> {
    let ns = name.strip_suffix(b"queues")?;
    (ns.is_empty() || ns.ends_with(b":")).then_some(ns)
}

/// A queue prefix of a BullMQ/Bull base `<prefix>:<queue>:` (the last segment is the queue).
pub fn queue_prefix_of(base: &[u8]) -> Option<&[u8]> {
    let inner = base.strip_suffix(b":")?;
    let cut = inner.iter().rposition(|b| *b == b':')?;
    (cut > 0).then_some(&inner[..cut])
}

/// A group pattern as a glob matching the same names: `?`, `[`, `]` and `\` are escaped; the
/// pattern's `*` stay wildcards.
pub fn glob_of_pattern(pattern: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pattern.len());
    for &b in pattern {
        if matches!(b, b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// A literal name as a glob matching only it.
pub fn glob_of_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        if matches!(b, b'?' | b'[' | b']' | b'\\' | b'*') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// A rule name from a pattern: letters and digits, other runs as one `-`, at most 48 bytes.
pub fn rule_name(prefix: &str, pattern: &[u8]) -> String {
    let mut name = String::from(prefix);
    let mut dash = !name.is_empty();
    for &b in pattern {
        if b.is_ascii_alphanumeric() {
            if dash && !name.is_empty() {
                name.push('-');
            }
            dash = false;
            name.push(b.to_ascii_lowercase() as char);
        } else {
            dash = true;
        }
        if name.len() >= 48 {
            break;
        }
    }
    if name.is_empty() {
        name.push_str("keys");
    }
    name
}

/// The time part of a stream id (`1700000000000-3` → 1700000000000).
pub fn stream_id_ms(id: &[u8]) -> Option<i64> {
    let ms = id.split(|b| *b == b'-').next()?;
    std::str::from_utf8(ms).ok()?.parse().ok()
}

/// The `max_age` for a stream that only grows: a week, or, when a consumer group has not yet
/// read or still has pending an entry older than that, a readable duration beyond that entry
/// (an hour of margin, rounded up). The second value says whether consumers decided it.
pub fn stream_max_age_ms(now_ms: i64, oldest_unconsumed_ms: Option<i64>) -> (i64, bool) {
    match oldest_unconsumed_ms {
        Some(at) if now_ms.saturating_sub(at) >= STREAM_MAX_AGE_MS => (
            round_up_duration_ms(now_ms.saturating_sub(at).saturating_add(HOUR_MS)),
            true,
        ),
        _ => (STREAM_MAX_AGE_MS, false),
    }
}

/// Why a stream gets no trim: the age that spares what its consumer groups still need would
/// remove nothing (the oldest entry is younger than it), or is beyond
/// `STREAM_MAX_SPARING_AGE_MS`. None when a trim is worth suggesting.
pub fn stream_trim_refused(
    now_ms: i64,
    oldest_entry_ms: Option<i64>,
    oldest_unconsumed_ms: Option<i64>,
) -> Option<String> {
    let (max_age_ms, by_consumers) = stream_max_age_ms(now_ms, oldest_unconsumed_ms);
    if !by_consumers {
        return None;
    }
    let unread = age_words(now_ms.saturating_sub(oldest_unconsumed_ms.unwrap_or(now_ms)));
    let removes_nothing = oldest_entry_ms.is_none_or(|at| now_ms.saturating_sub(at) < max_age_ms);
    if removes_nothing {
        return Some(format!(
            "a consumer group has not read, or still has pending, entries {unread} old: a trim that spares them would remove nothing; no rule suggested"
        ));
    }
    (max_age_ms > STREAM_MAX_SPARING_AGE_MS).then(|| {
        format!(
            "a consumer group has not read, or still has pending, entries {unread} old: a trim that spares them needs a limit beyond {}; no rule suggested (read or delete the consumer group, then run SUGGEST again)",
            duration_text(STREAM_MAX_SPARING_AGE_MS)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::limits::DAY_MS;
    use super::*;

    #[test]
    fn sessions_and_caches_by_shape_but_never_locks_or_counters() {
        for (pattern, shape) in [
            ("session:*", Some(Shape::Session)),
            ("myapp:sessions:*", Some(Shape::Session)),
            ("sess:*", Some(Shape::Session)),
            ("django.contrib.sessions.cache*", Some(Shape::Session)),
            ("cache:user:*", Some(Shape::Cache)),
            ("page_cache:*", Some(Shape::Cache)),
            ("session:*:lock", None),
            ("cache:lock:*", None),
            ("session-counter", None),
            ("cache:hits", None),
            ("rate_limit:session:*", None),
            ("user:*", None),
            ("sessionizer:*", None),
        ] {
            assert_eq!(shape_of(pattern.as_bytes()), shape, "{pattern}");
        }
    }

    #[test]
    fn owners_by_content() {
        assert!(is_celery_result(
            br#"{"status": "SUCCESS", "result": 4, "traceback": null, "children": [], "date_done": "2024-01-01T00:00:00", "task_id": "x"}"#
        ));
        assert!(!is_celery_result(b"hello"));
        assert_eq!(celery_kind(b"celery-task-meta-*"), Some(CeleryKind::Task));
        assert_eq!(
            celery_kind(b"celery-taskset-meta-*"),
            Some(CeleryKind::Taskset)
        );
        assert_eq!(celery_kind(b"celery:*"), None);
        assert!(is_sidekiq_job(
            br#"{"retry":true,"queue":"default","class":"HardWorker","args":[1],"jid":"b4a577edbccf1d805744efa9","created_at":1700000000.1}"#
        ));
        assert!(!is_sidekiq_job(br#"{"class":"X"}"#));
        assert!(is_rq_job(
            Some(b"finished"),
            Some(b"2024-01-01T00:00:00.000000Z")
        ));
        assert!(!is_rq_job(Some(b"finished"), None));
    }

    #[test]
    fn names_globs_and_prefixes() {
        assert_eq!(sidekiq_namespace(b"queues"), Some(&b""[..]));
        assert_eq!(sidekiq_namespace(b"app:queues"), Some(&b"app:"[..]));
        assert_eq!(sidekiq_namespace(b"myqueues"), None);
        assert_eq!(queue_prefix_of(b"bull:emails:"), Some(&b"bull"[..]));
        assert_eq!(queue_prefix_of(b"app:bull:emails:"), Some(&b"app:bull"[..]));
        assert_eq!(queue_prefix_of(b"emails:"), None);
        assert_eq!(glob_of_pattern(b"a?[b]\\*"), b"a\\?\\[b\\]\\\\*".to_vec());
        assert_eq!(glob_of_name(b"a*b"), b"a\\*b".to_vec());
        assert_eq!(rule_name("", b"celery-task-meta-*"), "celery-task-meta");
        assert_eq!(rule_name("ttl", b"session:*"), "ttl-session");
        assert_eq!(rule_name("", b"**"), "keys");
        assert_eq!(stream_id_ms(b"1700000000000-3"), Some(1_700_000_000_000));
        assert_eq!(stream_id_ms(b"x-3"), None);
    }

    #[test]
    fn stream_ages_leave_unconsumed_entries() {
        let now = 1_700_000_000_000;
        assert_eq!(stream_max_age_ms(now, None), (7 * DAY_MS, false));
        assert_eq!(
            stream_max_age_ms(now, Some(now - DAY_MS)),
            (7 * DAY_MS, false)
        );
        let (age, by_consumers) = stream_max_age_ms(now, Some(now - 10 * DAY_MS));
        assert!(by_consumers && age > 10 * DAY_MS, "{age}");
        assert_eq!(age, 14 * DAY_MS);
    }

    #[test]
    fn a_trim_that_would_spare_everything_or_need_years_is_not_suggested() {
        let now = 1_700_000_000_000;
        // Nothing unread: a week.
        assert_eq!(
            stream_trim_refused(now, Some(now - 30 * DAY_MS), None),
            None
        );
        // Unread for 10 days, entries 30 days old: a trim of 14d removes some.
        assert_eq!(
            stream_trim_refused(now, Some(now - 30 * DAY_MS), Some(now - 10 * DAY_MS)),
            None
        );
        // A group that read nothing of a stream whose entries go back to the epoch.
        let why = stream_trim_refused(now, Some(1_000), Some(1_000)).expect("refused");
        assert!(why.contains("would remove nothing"), "{why}");
        // Unread for 200 days, entries 400 days old: beyond the bound.
        let why = stream_trim_refused(now, Some(now - 400 * DAY_MS), Some(now - 200 * DAY_MS))
            .expect("refused");
        assert!(why.contains("beyond 90d"), "{why}");
    }
}
