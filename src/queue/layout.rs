//! Pure facts about the BullMQ 5 and Bull 3/4 key layouts, and the pure decisions the
//! cleaner makes from them. No server calls: everything here is unit-tested with plain values.
//!
//! Every queue key is `<base><suffix>` where `<base>` = `<prefix>:<queue>:` (the library's
//! `toKey('')`), and a job's keys are `<base><jobId>` plus fixed sub-suffixes. The cleaner never
//! parses a job id out of a key name to decide what is a job: finished-set work takes ids from
//! the set's members; orphan checks verify a candidate's content and its queue's keys.
//!
//! Splitting `<prefix>:<queue>:<rest>`: BullMQ rejects `:` in queue names (`Queue name cannot
//! contain :`), Bull accepts anything, and an ioredis `keyPrefix` can put more colons in front.
//! So a state set's base is its own name minus the suffix (exactly what the library builds),
//! and for a job key every `:` after the rule's prefix is tried as the end of the base; the
//! candidate is taken only if exactly one of them is an existing queue (`id` or `meta` key).

use crate::policy::{FinishedRetention, KeyType, QueueFlavor};

/// The two sets of finished jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FinishedSet {
    Completed,
    Failed,
}

impl FinishedSet {
    pub fn name(self) -> &'static str {
        match self {
            FinishedSet::Completed => "completed",
            FinishedSet::Failed => "failed",
        }
    }

    pub fn from_name(name: &str) -> Option<FinishedSet> {
        match name.to_ascii_lowercase().as_str() {
            "completed" => Some(FinishedSet::Completed),
            "failed" => Some(FinishedSet::Failed),
            _ => None,
        }
    }
}

/// Per-job keys that the library's own removal deletes together with the job hash
/// (BullMQ `removeJobKeys.lua`; Bull `removeJob`/`cleanJobsInSet`: only `:logs`).
/// `:lock` is deliberately absent: a job with a lock is live and is never removed.
pub fn job_sub_suffixes(flavor: QueueFlavor) -> &'static [&'static str] {
    match flavor {
        QueueFlavor::BullMq => &[
            "logs",
            "dependencies",
            "processed",
            "failed",
            "unsuccessful",
        ],
        QueueFlavor::Bull => &["logs"],
    }
}

/// The type each job sub-key has (used to tell a sub-key from a job whose id ends alike).
fn sub_key_type(flavor: QueueFlavor, suffix: &str) -> Option<KeyType> {
    let t = match suffix {
        "logs" => KeyType::List,
        "dependencies" => KeyType::Set,
        "processed" | "failed" => KeyType::Hash,
        "unsuccessful" => KeyType::ZSet,
        _ => return None,
    };
    job_sub_suffixes(flavor).contains(&suffix).then_some(t)
}

/// Sorted sets whose members are job ids (a job listed in one is never an orphan).
pub fn state_zsets(flavor: QueueFlavor) -> &'static [&'static str] {
    match flavor {
        QueueFlavor::BullMq => &[
            "completed",
            "failed",
            "delayed",
            "prioritized",
            "waiting-children",
        ],
        QueueFlavor::Bull => &["completed", "failed", "delayed", "priority"],
    }
}

/// Lists whose elements are job ids.
pub const STATE_LISTS: [&str; 3] = ["wait", "paused", "active"];
/// Sets whose members are job ids.
pub const STATE_SETS: [&str; 1] = ["stalled"];

/// Queue structure suffixes: a "job id" equal to one of these is never treated as a job.
const STRUCTURE_SUFFIXES: [&str; 32] = [
    "",
    "active",
    "wait",
    "waiting",
    "waiting-children",
    "paused",
    "resumed",
    "meta-paused",
    "id",
    "delayed",
    "delay",
    "prioritized",
    "priority",
    "stalled-check",
    "completed",
    "failed",
    "stalled",
    "repeat",
    "limiter",
    "limiter:index",
    "limiter:limited",
    "meta",
    "events",
    "pc",
    "marker",
    "de",
    "drained",
    "progress",
    "metrics:completed",
    "metrics:completed:data",
    "metrics:failed",
    "metrics:failed:data",
];

/// Structure keys that are families (`de:<dedupId>`, `dn:<dedupId>`).
const STRUCTURE_PREFIXES: [&str; 2] = ["de:", "dn:"];

pub fn is_structure_id(id: &[u8]) -> bool {
    STRUCTURE_SUFFIXES.iter().any(|s| s.as_bytes() == id)
        || STRUCTURE_PREFIXES
            .iter()
            .any(|p| id.starts_with(p.as_bytes()))
}

/// Hashes that are queue structure, skipped without a look at their content.
const STRUCTURE_HASH_SUFFIXES: [&str; 4] = [
    ":meta",
    ":metrics:completed",
    ":metrics:failed",
    ":limiter:index",
];

/// What a key under a queue rule's prefix is to the cleaner, from its name and type alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRole {
    /// `<base>completed` / `<base>failed` sorted set.
    Finished {
        base_len: usize,
        set: FinishedSet,
    },
    /// `<base>events` stream (BullMQ).
    Events,
    /// A hash that may be a job (its content decides).
    JobCandidate,
    /// A key named like a job sub-key: `<jobKey>:<suffix>` of the right type.
    SubKeyCandidate {
        job_key_len: usize,
    },
    Other,
}

/// Classifies `name` (which starts with the rule's `<prefix>:`, `prefix_len` bytes).
pub fn classify(flavor: QueueFlavor, prefix_len: usize, name: &[u8], key_type: KeyType) -> KeyRole {
    if name.len() <= prefix_len {
        return KeyRole::Other;
    }
    let queue_part = &name[prefix_len..];
    if key_type == KeyType::ZSet {
        for set in [FinishedSet::Completed, FinishedSet::Failed] {
            if let Some(base_len) = base_len_before(queue_part, set.name()) {
                return KeyRole::Finished {
                    base_len: prefix_len + base_len,
                    set,
                };
            }
        }
    }
    if key_type == KeyType::Stream && base_len_before(queue_part, "events").is_some() {
        return KeyRole::Events;
    }
    for suffix in job_sub_suffixes(flavor) {
        if sub_key_type(flavor, suffix) != Some(key_type) {
            continue;
        }
        if let Some(job_key_len) = base_len_before(queue_part, suffix) {
            // `<jobKey>:<suffix>`: the job key is the base minus its trailing ':'.
            if job_key_len > 1 {
                return KeyRole::SubKeyCandidate {
                    job_key_len: prefix_len + job_key_len - 1,
                };
            }
        }
    }
    if key_type == KeyType::Hash
        && !STRUCTURE_HASH_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s.as_bytes()))
    {
        return KeyRole::JobCandidate;
    }
    KeyRole::Other
}

/// For `rest` = `<something>:<suffix>` with a non-empty `<something>`, the length of
/// `<something>:`.
fn base_len_before(rest: &[u8], suffix: &str) -> Option<usize> {
    let stem = rest.strip_suffix(suffix.as_bytes())?;
    (stem.len() >= 2 && stem.ends_with(b":")).then_some(stem.len())
}

/// The lengths of every `<prefix>:<queue>:` that could be the base of `job_key`: each `:`
/// after the prefix that leaves a non-empty queue name and a non-empty job id.
pub fn base_candidates(prefix_len: usize, job_key: &[u8]) -> impl Iterator<Item = usize> + '_ {
    job_key
        .iter()
        .enumerate()
        .skip(prefix_len + 1)
        .filter(move |(i, b)| **b == b':' && i + 1 < job_key.len())
        .map(|(i, _)| i + 1)
}

/// Why a member of a finished set may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Beyond the newest `max_count`.
    Count,
    /// Finished at or before the cutoff.
    Age,
}

/// A retention rule for one finished set, with its age limit fixed to an absolute cutoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Jobs whose finish time (the set's score) is <= this may go.
    pub cutoff_ms: Option<i64>,
    /// Keep at least the newest this many.
    pub keep_newest: Option<u64>,
}

impl Window {
    pub fn new(r: &FinishedRetention, now_ms: i64) -> Window {
        Window {
            cutoff_ms: r.max_age_ms.map(|age| now_ms.saturating_sub(age)),
            keep_newest: r.max_count,
        }
    }

    /// Whether the member at `rank` (0 = oldest) of a set of `card`, finished at `score`, may
    /// go. Both criteria select a prefix of the ascending order, so the first member that
    /// fails both ends the work on the set.
    pub fn reason(&self, card: u64, rank: u64, score: f64) -> Option<Reason> {
        if self
            .keep_newest
            .is_some_and(|keep| rank.saturating_add(keep) < card)
        {
            return Some(Reason::Count);
        }
        match self.cutoff_ms {
            Some(cutoff) if score <= cutoff as f64 => Some(Reason::Age),
            _ => None,
        }
    }
}

/// Parses a sorted-set score as the server prints it (`123`, `1.5`, `inf`, `-inf`).
pub fn parse_score(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

/// Parses a millisecond timestamp field (`finishedOn`, `timestamp`, ...).
pub fn parse_ms(text: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(text).ok()?;
    crate::args::parse_i64(s)
}

/// Bull's clean keeps a job unless the first of `finishedOn`, `processedOn`, `timestamp`
/// that is set is older than the cutoff (strictly, as `cleanJobsInSet-3.lua` compares).
/// A hash without any of them (or without the hash) goes, as in the library. A value that
/// is not a number is doubt: the job stays.
pub fn bull_hash_allows(fields: &[Option<Vec<u8>>], cutoff_ms: i64) -> bool {
    match fields.iter().flatten().next() {
        None => true,
        Some(ts) => parse_ms(ts).is_some_and(|ts| ts < cutoff_ms),
    }
}

/// The id of the first stream entry to keep when trimming by age (`XTRIM MINID`).
pub fn events_min_id(now_ms: i64, max_age_ms: i64) -> Option<String> {
    let cutoff = now_ms.saturating_sub(max_age_ms);
    (cutoff > 0).then(|| format!("{cutoff}-0"))
}

/// The `version` field of a BullMQ queue's `meta` hash (`bullmq:5.x`).
pub fn is_bullmq_version(version: &[u8]) -> bool {
    version.starts_with(b"bullmq")
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: usize = "bull:".len();

    #[test]
    fn finished_sets_and_events_are_recognised_by_suffix_and_type() {
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q:completed", KeyType::ZSet),
            KeyRole::Finished {
                base_len: "bull:q:".len(),
                set: FinishedSet::Completed
            }
        );
        assert_eq!(
            classify(QueueFlavor::Bull, P, b"bull:b:colon:failed", KeyType::ZSet),
            KeyRole::Finished {
                base_len: "bull:b:colon:".len(),
                set: FinishedSet::Failed
            }
        );
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q:events", KeyType::Stream),
            KeyRole::Events
        );
        // Wrong type or no queue name: not a state set.
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q:completed", KeyType::Hash),
            KeyRole::JobCandidate
        );
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull::completed", KeyType::ZSet),
            KeyRole::Other
        );
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:completed", KeyType::ZSet),
            KeyRole::Other
        );
    }

    #[test]
    fn sub_keys_need_the_flavor_and_the_type() {
        let name = b"bull:q:17:logs";
        assert_eq!(
            classify(QueueFlavor::Bull, P, name, KeyType::List),
            KeyRole::SubKeyCandidate {
                job_key_len: "bull:q:17".len()
            }
        );
        // A BullMQ job's `:failed` is a hash; the queue's `failed` is a zset.
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q:17:failed", KeyType::Hash),
            KeyRole::SubKeyCandidate {
                job_key_len: "bull:q:17".len()
            }
        );
        // Bull has no `:processed` sub-key: such a hash is a job candidate.
        assert_eq!(
            classify(QueueFlavor::Bull, P, b"bull:q:17:processed", KeyType::Hash),
            KeyRole::JobCandidate
        );
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q:17:lock", KeyType::String),
            KeyRole::Other
        );
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q:meta", KeyType::Hash),
            KeyRole::Other
        );
    }

    #[test]
    fn base_candidates_try_every_colon_after_the_prefix() {
        let key = b"bull:a:b:c";
        let bases: Vec<&[u8]> = base_candidates(P, key).map(|n| &key[..n]).collect();
        assert_eq!(bases, vec![&b"bull:a:"[..], &b"bull:a:b:"[..]]);
        assert_eq!(base_candidates(P, b"bull:q:").count(), 0);
        assert_eq!(base_candidates(P, b"bull::x").count(), 0);
    }

    #[test]
    fn structure_ids_are_never_jobs() {
        for id in [
            "id",
            "meta",
            "events",
            "de:x",
            "dn:y",
            "metrics:failed:data",
            "",
        ] {
            assert!(is_structure_id(id.as_bytes()), "{id}");
        }
        for id in ["1", "a:b:c", "repeat:s:1700000000000", "custom"] {
            assert!(!is_structure_id(id.as_bytes()), "{id}");
        }
    }

    #[test]
    fn window_selects_a_prefix_by_count_or_age() {
        let w = Window {
            cutoff_ms: Some(1000),
            keep_newest: Some(2),
        };
        // card 5: ranks 0..3 go by count; rank 3 only if old enough.
        assert_eq!(w.reason(5, 0, 5000.0), Some(Reason::Count));
        assert_eq!(w.reason(5, 2, 5000.0), Some(Reason::Count));
        assert_eq!(w.reason(5, 3, 1000.0), Some(Reason::Age));
        assert_eq!(w.reason(5, 3, 1001.0), None);
        let age_only = Window {
            cutoff_ms: Some(1000),
            keep_newest: None,
        };
        assert_eq!(
            age_only.reason(u64::MAX, 0, f64::NEG_INFINITY),
            Some(Reason::Age)
        );
        let count_only = Window {
            cutoff_ms: None,
            keep_newest: Some(u64::MAX),
        };
        assert_eq!(count_only.reason(10, 0, 0.0), None);
    }

    #[test]
    fn window_from_retention_saturates() {
        let r = FinishedRetention {
            max_age_ms: Some(i64::MAX),
            max_count: None,
        };
        assert_eq!(Window::new(&r, -5).cutoff_ms, Some(i64::MIN));
    }

    #[test]
    fn scores_and_timestamps_parse_strictly() {
        assert_eq!(parse_score(b"1700000000000"), Some(1.7e12));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"nan"), None);
        assert_eq!(parse_score(b"x"), None);
        assert_eq!(parse_ms(b"17"), Some(17));
        assert_eq!(parse_ms(b" 17"), None);
    }

    #[test]
    fn bull_hash_check_follows_the_library() {
        let f = |v: &str| Some(v.as_bytes().to_vec());
        assert!(bull_hash_allows(&[f("999"), None, f("5000")], 1000));
        assert!(!bull_hash_allows(&[f("1000")], 1000));
        assert!(!bull_hash_allows(&[None, f("2000"), f("1")], 1000));
        assert!(bull_hash_allows(&[None, None, None], 1000));
        assert!(!bull_hash_allows(&[f("soon")], 1000));
    }

    #[test]
    fn events_min_id_is_explicit() {
        assert_eq!(events_min_id(10_000, 1_000).as_deref(), Some("9000-0"));
        assert_eq!(events_min_id(10, 1_000), None);
    }
}
