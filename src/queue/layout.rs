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

/// Queue structure keys named exactly: `(name after the queue's base, the type the libraries
/// give it)`; `None` for names whose type nothing relies on (legacy keys, family heads, and
/// Bull's pub/sub channel names, which are not keys). Sources: BullMQ `queue-keys.js`
/// `getKeys()` and its Lua scripts, Bull `lib/queue.js` `keys` (reference/bullmq-and-bull-keys.md).
/// The type matters where a job sub-key has the same last segment: `<base><id>:failed` is a
/// job's hash, `<base>failed` the queue's sorted set.
const STRUCTURE_KEYS: [(&str, Option<KeyType>); 30] = [
    ("", None),
    ("active", Some(KeyType::List)),
    ("wait", Some(KeyType::List)),
    ("paused", Some(KeyType::List)),
    ("waiting-children", Some(KeyType::ZSet)),
    ("delayed", Some(KeyType::ZSet)),
    ("prioritized", Some(KeyType::ZSet)),
    ("completed", Some(KeyType::ZSet)),
    ("failed", Some(KeyType::ZSet)),
    ("marker", Some(KeyType::ZSet)),
    ("repeat", Some(KeyType::ZSet)),
    ("priority", Some(KeyType::ZSet)),
    ("stalled", Some(KeyType::Set)),
    ("id", Some(KeyType::String)),
    ("stalled-check", Some(KeyType::String)),
    ("limiter", Some(KeyType::String)),
    ("pc", Some(KeyType::String)),
    ("meta-paused", Some(KeyType::String)),
    ("meta", Some(KeyType::Hash)),
    ("events", Some(KeyType::Stream)),
    // BullMQ: legacy `delay` (obliterate still deletes it); family heads.
    ("delay", None),
    ("de", None),
    ("dn", None),
    ("metrics", None),
    // Bull's pub/sub channels (never keys; a "job" of that name is doubt).
    ("waiting", None),
    ("resumed", None),
    ("drained", None),
    ("progress", None),
    ("duplicated", None),
    ("debounced", None),
];

/// Structure families: every key `<head>:<anything>` is structure, whatever its type.
/// `de:<dedupId>` (BullMQ dedup, Bull debounce: string), `dn:<dedupId>` (BullMQ dedup-next
/// proto job: hash), `metrics:<completed|failed>` (hash) and `metrics:<..>:data` (list),
/// Bull's `limiter:index` (hash), `limiter:limited` / `limiter:<group>:limited` (set) and
/// `limiter:<group>` (string). Their ids are chosen by users and may contain ':' and end like
/// a job sub-key (`dn:x:failed`), so no job shape is ever read into them.
const STRUCTURE_FAMILIES: [&str; 4] = ["de:", "dn:", "metrics:", "limiter:"];

/// `repeat:` holds both structure and jobs, all hashes (BullMQ): a job scheduler or legacy
/// repeatable `repeat:<schedulerId>` and its iterations, jobs `repeat:<schedulerId>:<millis>`
/// (Bull: iterations only). Scheduler ids are user-chosen with any number of ':' (BullMQ
/// validates none), so `repeat:nightly:failed` is a scheduler, not the `:failed` hash of a
/// job `repeat:nightly`. An iteration's id always ends in `:<millis>`; any other hash under
/// `repeat:` is structure. (A scheduler whose own id ends in `:<digits>` still looks like an
/// iteration by name: it is a hash without `timestamp`/`finishedOn`, which no finished job
/// lacks, so the orphan check leaves it.)
const REPEAT_FAMILY: &str = "repeat:";

/// Whether `id` (a name after a queue's base) is shaped like a scheduler or repeatable
/// iteration, `repeat:<something>:<millis>`.
fn is_repeat_iteration(id: &[u8]) -> bool {
    let Some(rest) = id.strip_prefix(REPEAT_FAMILY.as_bytes()) else {
        return false;
    };
    match rest.iter().rposition(|b| *b == b':') {
        Some(colon) => {
            let millis = &rest[colon + 1..];
            colon > 0 && !millis.is_empty() && millis.iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

/// Whether `rest` is a member of a structure family, for a key of `key_type` (None: any).
/// Under `repeat:` only hashes are structure (schedulers): the logs list of an iteration
/// `repeat:<id>:<millis>:logs` is a job's, whatever its id looks like.
fn in_structure_family(rest: &[u8], key_type: Option<KeyType>) -> bool {
    STRUCTURE_FAMILIES
        .iter()
        .any(|f| rest.starts_with(f.as_bytes()))
        || (rest.starts_with(REPEAT_FAMILY.as_bytes())
            && key_type.is_none_or(|t| t == KeyType::Hash)
            && !is_repeat_iteration(rest))
}

/// Whether a "job id" (the part of a key name after its queue's base) names queue structure
/// instead: any structure name of any type, any member of a structure family, anything under
/// `repeat:` that is not an iteration. A key whose id this accepts is never judged as a job
/// or a job's sub-key.
pub fn is_structure_id(id: &[u8]) -> bool {
    STRUCTURE_KEYS.iter().any(|(n, _)| n.as_bytes() == id) || in_structure_family(id, None)
}

/// Whether `rest` (the part of a key name after some queue base) is a structure key of type
/// `key_type`: a structure name of that type, or a member of a structure family.
pub fn is_structure_key(rest: &[u8], key_type: KeyType) -> bool {
    STRUCTURE_KEYS
        .iter()
        .any(|(n, t)| n.as_bytes() == rest && t.is_none_or(|t| t == key_type))
        || in_structure_family(rest, Some(key_type))
}

/// Every `<rest>` of `queue_part` = `<queue>:<rest>` with a non-empty queue: the queue may
/// itself contain ':' (Bull), and the rule's prefix may stop short of the library's, so every
/// split is a possible queue base.
fn rests(queue_part: &[u8]) -> impl Iterator<Item = &[u8]> {
    queue_part
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b':' && *i > 0)
        .map(move |(i, _)| &queue_part[i + 1..])
}

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
/// Finished sets and events streams are recognised by suffix and type; then any name that
/// some queue base makes a structure key is `Other`; only then are job shapes considered:
/// a job sub-key by suffix and type, a job by being a hash (its content decides later).
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
    // Everything below reads a job shape into the name. Structure names win over job
    // shapes: under any split that makes the key structure, it is not a job's.
    if rests(queue_part).any(|rest| is_structure_key(rest, key_type)) {
        return KeyRole::Other;
    }
    for suffix in job_sub_suffixes(flavor) {
        if sub_key_type(flavor, suffix) != Some(key_type) {
            continue;
        }
        let Some(stem_len) = base_len_before(queue_part, suffix) else {
            continue;
        };
        // `<jobKey>:<suffix>`: the job key is the stem minus its trailing ':', and it must
        // itself be `<queue>:<id>`. A job whose id would be structure (`metrics`, `dn:x`)
        // does not exist.
        let job_part = &queue_part[..stem_len - 1];
        let mut ids = rests(job_part).filter(|id| !id.is_empty()).peekable();
        if ids.peek().is_none() {
            continue;
        }
        if ids.any(is_structure_id) {
            return KeyRole::Other;
        }
        return KeyRole::SubKeyCandidate {
            job_key_len: prefix_len + stem_len - 1,
        };
    }
    match key_type {
        KeyType::Hash => KeyRole::JobCandidate,
        _ => KeyRole::Other,
    }
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
    /// Beyond the newest `max_len`.
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
            keep_newest: r.max_len,
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

    /// Every structure key BullMQ 5 and Bull 4 write, as they write it (name after the
    /// queue's base, type). Ids inside families are the kinds users choose, colons included,
    /// and some end like a job sub-key on purpose.
    const LIBRARY_STRUCTURE: &[(&str, KeyType)] = &[
        // BullMQ 5 `getKeys()` and the Lua scripts.
        ("active", KeyType::List),
        ("wait", KeyType::List),
        ("paused", KeyType::List),
        ("waiting-children", KeyType::ZSet),
        ("delayed", KeyType::ZSet),
        ("prioritized", KeyType::ZSet),
        ("marker", KeyType::ZSet),
        ("repeat", KeyType::ZSet),
        ("stalled", KeyType::Set),
        ("id", KeyType::String),
        ("stalled-check", KeyType::String),
        ("limiter", KeyType::String),
        ("pc", KeyType::String),
        ("meta", KeyType::Hash),
        // Metrics (BullMQ, and Bull >= 4.7).
        ("metrics:completed", KeyType::Hash),
        ("metrics:failed", KeyType::Hash),
        ("metrics:completed:data", KeyType::List),
        ("metrics:failed:data", KeyType::List),
        // Job schedulers (any id, colons allowed) and legacy repeatables (md5 or custom key).
        ("repeat:every-hour", KeyType::Hash),
        ("repeat:nightly:failed", KeyType::Hash),
        ("repeat:x:processed", KeyType::Hash),
        ("repeat:a:b:unsuccessful", KeyType::Hash),
        ("repeat:s:logs", KeyType::Hash),
        ("repeat:a:dependencies", KeyType::Hash),
        ("repeat:5d41402abc4b2a76b9719d911017c592", KeyType::Hash),
        // Deduplication / debounce and dedup-next.
        ("de:simple", KeyType::String),
        ("de:with:ttl", KeyType::String),
        ("de:x:logs", KeyType::String),
        ("dn:klia", KeyType::Hash),
        ("dn:klia:failed", KeyType::Hash),
        ("dn:x:processed", KeyType::Hash),
        // Legacy BullMQ and Bull.
        ("priority", KeyType::ZSet),
        ("delay", KeyType::ZSet),
        ("meta-paused", KeyType::String),
        ("limiter:index", KeyType::Hash),
        ("limiter:limited", KeyType::Set),
        ("limiter:acme", KeyType::String),
        ("limiter:acme:limited", KeyType::Set),
        ("limiter:logs", KeyType::String),
        ("limiter:logs:limited", KeyType::Set),
    ];

    const ALL_TYPES: [KeyType; 7] = [
        KeyType::String,
        KeyType::List,
        KeyType::Set,
        KeyType::ZSet,
        KeyType::Hash,
        KeyType::Stream,
        KeyType::Module,
    ];

    /// Queue bases: `(rule prefix length, base)`, both flavors, a Bull queue name with colons,
    /// and a rule whose prefix stops short of the library's (ioredis keyPrefix + prefix).
    const BASES: [(usize, &str); 4] = [
        (P, "bull:q:"),
        (P, "bull:b:colon:"),
        (P, "bull:a:b:c:"),
        ("myapp:".len(), "myapp:bull:q:"),
    ];

    #[test]
    fn library_structure_keys_are_never_jobs_or_sub_keys() {
        for flavor in [QueueFlavor::BullMq, QueueFlavor::Bull] {
            for (prefix_len, base) in BASES {
                for (rest, key_type) in LIBRARY_STRUCTURE {
                    let name = format!("{base}{rest}");
                    assert_eq!(
                        classify(flavor, prefix_len, name.as_bytes(), *key_type),
                        KeyRole::Other,
                        "{flavor:?} {name} ({key_type:?})"
                    );
                    assert!(is_structure_id(rest.as_bytes()), "{rest}");
                }
            }
        }
    }

    #[test]
    fn structure_names_of_any_type_are_never_sub_keys_and_never_judged_as_jobs() {
        // Whatever type a library version gives a structure name, the cleaner never reads a
        // job's sub-key into it; a hash it may look at as a job has a structure id, which
        // the orphan check refuses. Families hold under every base; an exact name of an
        // unexpected type under a base with more colons may rightly be a job's sub-key
        // (`bull:a:b:failed`, a hash: job `b`'s `:failed` in queue `a`).
        let families = LIBRARY_STRUCTURE
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| n.contains(':'))
            .flat_map(|n| BASES.iter().map(move |b| (n, *b)));
        let names = LIBRARY_STRUCTURE
            .iter()
            .map(|(n, _)| *n)
            .chain(STRUCTURE_KEYS.iter().map(|(n, _)| *n))
            .map(|n| (n, BASES[0]));
        for (rest, (prefix_len, base)) in families.chain(names) {
            let name = format!("{base}{rest}");
            for flavor in [QueueFlavor::BullMq, QueueFlavor::Bull] {
                for key_type in ALL_TYPES {
                    let role = classify(flavor, prefix_len, name.as_bytes(), key_type);
                    let ok = match role {
                        KeyRole::Other | KeyRole::Finished { .. } | KeyRole::Events => true,
                        KeyRole::JobCandidate => is_structure_id(rest.as_bytes()),
                        KeyRole::SubKeyCandidate { .. } => false,
                    };
                    assert!(ok, "{flavor:?} {name} ({key_type:?}): {role:?}");
                }
            }
        }
    }

    #[test]
    fn the_cleaners_own_structure_keys_keep_their_roles() {
        for (prefix_len, base) in BASES {
            let completed = format!("{base}completed");
            assert_eq!(
                classify(
                    QueueFlavor::Bull,
                    prefix_len,
                    completed.as_bytes(),
                    KeyType::ZSet
                ),
                KeyRole::Finished {
                    base_len: base.len(),
                    set: FinishedSet::Completed
                }
            );
            let events = format!("{base}events");
            assert_eq!(
                classify(
                    QueueFlavor::BullMq,
                    prefix_len,
                    events.as_bytes(),
                    KeyType::Stream
                ),
                KeyRole::Events
            );
        }
    }

    #[test]
    fn job_keys_are_still_jobs_and_sub_keys() {
        let mq = QueueFlavor::BullMq;
        let sub = |job_key: &str| KeyRole::SubKeyCandidate {
            job_key_len: job_key.len(),
        };
        let uuid = "bull:q:0b6a2b5e-9d8c-4f1a-8a53-2f4f8c7e9b10";
        for (flavor, name, key_type, role) in [
            (
                mq,
                "bull:q:17".to_string(),
                KeyType::Hash,
                KeyRole::JobCandidate,
            ),
            (mq, "bull:q:17:logs".into(), KeyType::List, sub("bull:q:17")),
            (mq, format!("{uuid}:dependencies"), KeyType::Set, sub(uuid)),
            (mq, format!("{uuid}:processed"), KeyType::Hash, sub(uuid)),
            (mq, format!("{uuid}:failed"), KeyType::Hash, sub(uuid)),
            (mq, format!("{uuid}:unsuccessful"), KeyType::ZSet, sub(uuid)),
            (
                mq,
                "bull:q:a:b:c".into(),
                KeyType::Hash,
                KeyRole::JobCandidate,
            ),
            (
                mq,
                "bull:q:a:b:c:logs".into(),
                KeyType::List,
                sub("bull:q:a:b:c"),
            ),
            // Ids that start like a structure family but are not in it.
            (
                mq,
                "bull:q:metricsx:failed".into(),
                KeyType::Hash,
                sub("bull:q:metricsx"),
            ),
            (
                mq,
                "bull:q:repeaters:processed".into(),
                KeyType::Hash,
                sub("bull:q:repeaters"),
            ),
            // Scheduler and repeatable iterations are jobs; so are their lists of logs.
            (
                mq,
                "bull:q:repeat:sched:1700000000000".into(),
                KeyType::Hash,
                KeyRole::JobCandidate,
            ),
            (
                mq,
                "bull:q:repeat:a:b:1700000000000:logs".into(),
                KeyType::List,
                sub("bull:q:repeat:a:b:1700000000000"),
            ),
            (
                QueueFlavor::Bull,
                "bull:b:colon:repeat:5d41402abc4b2a76b9719d911017c592:1796094000000".into(),
                KeyType::Hash,
                KeyRole::JobCandidate,
            ),
            // Bull: colons in queue names and ids (grouped rate limiter ids `<uuid>:<group>`).
            (
                QueueFlavor::Bull,
                "bull:b:colon:x:y".into(),
                KeyType::Hash,
                KeyRole::JobCandidate,
            ),
            (
                QueueFlavor::Bull,
                "bull:b:colon:x:y:logs".into(),
                KeyType::List,
                sub("bull:b:colon:x:y"),
            ),
            (
                QueueFlavor::Bull,
                "bull:b:limited:0b6a2b5e:acme".into(),
                KeyType::Hash,
                KeyRole::JobCandidate,
            ),
            // A rule prefix shorter than the library's.
            (
                mq,
                "myapp:bull:q:17:logs".into(),
                KeyType::List,
                sub("myapp:bull:q:17"),
            ),
            // Locks are never sub-key candidates (a lock means a live job).
            (mq, "bull:q:17:lock".into(), KeyType::String, KeyRole::Other),
        ] {
            let prefix_len = if name.starts_with("myapp:") {
                "myapp:".len()
            } else {
                P
            };
            assert_eq!(
                classify(flavor, prefix_len, name.as_bytes(), key_type),
                role,
                "{name} ({key_type:?})"
            );
        }
    }

    #[test]
    fn a_sub_key_needs_a_queue_and_an_id_in_front() {
        // `bull:q:failed` as a hash would be the `:failed` of "job" `bull:q`, which has no
        // queue: it is looked at as a hash whose id (`failed`) is structure.
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q:failed", KeyType::Hash),
            KeyRole::JobCandidate
        );
        assert!(is_structure_id(b"failed"));
        assert_eq!(
            classify(QueueFlavor::BullMq, P, b"bull:q::logs", KeyType::List),
            KeyRole::Other
        );
    }

    #[test]
    fn structure_ids_cover_every_family() {
        for id in [
            "",
            "id",
            "meta",
            "events",
            "failed",
            "metrics",
            "metrics:failed",
            "metrics:completed:data",
            "de",
            "de:x",
            "de:a:b",
            "dn",
            "dn:y",
            "dn:x:failed",
            "limiter",
            "limiter:index",
            "limiter:acme:limited",
            "repeat",
            "repeat:every-hour",
            "repeat:nightly:failed",
            "repeat:x",
            "repeat:a:",
            "repeat::1700000000000",
            "repeat:5d41402abc4b2a76b9719d911017c592",
            "meta-paused",
            "priority",
            "delay",
        ] {
            assert!(is_structure_id(id.as_bytes()), "{id}");
        }
        for id in [
            "1",
            "a:b:c",
            "custom",
            "metricsx",
            "x:acme",
            "repeat:s:1700000000000",
            "repeat:a:b:1700000000000",
            "repeat:5d41402abc4b2a76b9719d911017c592:1796094000000",
        ] {
            assert!(!is_structure_id(id.as_bytes()), "{id}");
        }
    }

    #[test]
    fn structure_keys_are_typed_where_a_job_sub_key_shares_the_name() {
        assert!(is_structure_key(b"failed", KeyType::ZSet));
        assert!(!is_structure_key(b"failed", KeyType::Hash));
        assert!(is_structure_key(b"metrics:failed", KeyType::Hash));
        assert!(is_structure_key(b"delay", KeyType::Hash));
        assert!(!is_structure_key(b"repeat:s:1700000000000", KeyType::Hash));
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
            max_len: None,
            max_memory_bytes: None,
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
