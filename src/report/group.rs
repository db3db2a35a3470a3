//! Grouping key names by pattern, and what each group holds (pure: no server calls; the two
//! things that need the server, a key's type by name and a key's memory, come in as closures).
//!
//! A key's pattern is its name with id-like parts collapsed to `*`: each `:`-separated
//! segment is cut into tokens at `-_./|@=,#+` and whitespace; numbers, UUIDs, hex ids of 8+
//! characters, timestamp pieces (`2024`, `15T10`, `00Z`) and long random tokens become `*`,
//! a segment made only of such tokens becomes one `*`, and runs of 4+ digits inside a word
//! (`job1234`) become `*` too. `session:8f14e45f-ceea-467f-a0e6-0d4f2f5c1e4b` and
//! `session:17` both fall in `session:*`.
//!
//! BullMQ/Bull keys are grouped per queue: once a base `<prefix>:<queue>:` is known to hold a
//! queue (its `id` counter or `meta` hash and one of its state keys exist, see `is_queue`),
//! the queue's structure keys (as `queue::layout` defines them) fall in
//! `<base><structures>` and everything else under the base (job hashes whatever their ids,
//! their `:logs`, `:lock`, `:dependencies`, ...) in `<base>*`. A base is checked when one of
//! its keys would open a new group, so a queue is found by its first key.
//!
//! The table is bounded: at most `MAX_GROUPS` groups; keys of further patterns are counted in
//! the overflow group ("other"). Memory is measured (`MEMORY USAGE`) for every key of a group
//! until `EXACT_KEYS_PER_GROUP` are measured, then for one key in `SAMPLE_STRIDE` and for any
//! key longer than every key measured so far (so the biggest keys are found); the others are
//! counted at the group's sampled mean.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::policy::{KeyType, QueueFlavor};
use crate::queue::layout::{is_structure_key, state_zsets, STATE_LISTS};

/// Distinct groups kept; keys of further patterns are counted in "other".
pub const MAX_GROUPS: usize = 10_000;
/// Longest pattern kept (longer ones are cut and end in `*`).
pub const MAX_PATTERN_BYTES: usize = 200;
/// Longest key name kept in a group's biggest keys (longer ones are cut and end in `...`).
pub const MAX_NAME_BYTES: usize = 200;
/// Queue bases checked, and queues whose finished jobs are counted, at most.
pub const MAX_QUEUES: usize = 10_000;
/// A queue base has at most this many `:` (`<prefix>:<queue>:`, prefixes and Bull queue
/// names may hold more).
const MAX_BASE_COLONS: usize = 6;
/// Every key of a group is measured until this many were.
pub const EXACT_KEYS_PER_GROUP: u64 = 1_000;
/// Past that, one key in this many is measured (and every key longer than any measured).
pub const SAMPLE_STRIDE: u64 = 10;
/// Separators inside a segment; kept in the pattern.
const TOKEN_SEPARATORS: &[u8] = b"-_./|@=,#+ \t";

/// Name for a group of a queue's structure keys: `<base><structures>`.
pub const STRUCTURES: &str = "<structures>";

const TYPE_ORDER: [KeyType; 7] = [
    KeyType::String,
    KeyType::Hash,
    KeyType::List,
    KeyType::Set,
    KeyType::ZSet,
    KeyType::Stream,
    KeyType::Module,
];

fn type_slot(t: KeyType) -> usize {
    TYPE_ORDER.iter().position(|x| *x == t).unwrap_or(6)
}

/// What the walk saw of one key.
#[derive(Debug, Clone, Copy)]
pub struct KeyFacts<'a> {
    pub name: &'a [u8],
    pub db: i32,
    pub key_type: KeyType,
    pub has_ttl: bool,
    /// `RM_ValueLength`: a string's bytes, a collection's elements.
    pub len: u64,
    /// The policy rule that governs the key (index), if any.
    pub rule: Option<usize>,
}

/// Whether a group is a queue's, and which part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePart {
    Jobs,
    Structure,
}

/// One of the biggest keys of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopKey {
    pub bytes: u64,
    pub db: i32,
    /// Cut to `MAX_NAME_BYTES` (then ending in `...`).
    pub name: Vec<u8>,
    pub key_type: KeyType,
}

#[derive(Debug, Clone, Default)]
pub struct Group {
    pub pattern: Vec<u8>,
    pub queue: Option<QueuePart>,
    pub keys: u64,
    pub no_ttl: u64,
    /// Keys without a TTL that no rule governs.
    pub uncovered_no_ttl: u64,
    types: [u64; 7],
    /// Measured because they were sampled: their mean stands for the unmeasured keys.
    sample_keys: u64,
    sample_bytes: u64,
    /// Measured because they were longer than any key measured before.
    outlier_keys: u64,
    outlier_bytes: u64,
    max_len_measured: u64,
    top: Vec<TopKey>,
    /// Keys per governing rule (None: no rule), in order of first sight.
    rules: Vec<(Option<usize>, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Sample,
    Outlier,
    Skip,
}

impl Group {
    fn new(pattern: Vec<u8>, queue: Option<QueuePart>) -> Group {
        Group {
            pattern,
            queue,
            ..Group::default()
        }
    }

    fn count(&mut self, key: &KeyFacts) {
        self.keys += 1;
        self.types[type_slot(key.key_type)] += 1;
        if !key.has_ttl {
            self.no_ttl += 1;
            if key.rule.is_none() {
                self.uncovered_no_ttl += 1;
            }
        }
        match self.rules.iter_mut().find(|(r, _)| *r == key.rule) {
            Some((_, n)) => *n += 1,
            None => self.rules.push((key.rule, 1)),
        }
    }

    /// Whether to measure the key just counted.
    fn decide(&self, len: u64) -> Measure {
        if self.sample_keys < EXACT_KEYS_PER_GROUP || (self.keys - 1).is_multiple_of(SAMPLE_STRIDE)
        {
            Measure::Sample
        } else if len > self.max_len_measured {
            Measure::Outlier
        } else {
            Measure::Skip
        }
    }

    fn record(&mut self, key: &KeyFacts, how: Measure, bytes: u64, top_n: usize) {
        match how {
            Measure::Sample => {
                self.sample_keys += 1;
                self.sample_bytes += bytes;
            }
            Measure::Outlier => {
                self.outlier_keys += 1;
                self.outlier_bytes += bytes;
            }
            Measure::Skip => return,
        }
        self.max_len_measured = self.max_len_measured.max(key.len);
        let fits = self.top.len() < top_n || self.top.last().is_some_and(|t| bytes > t.bytes);
        if top_n > 0 && fits {
            let at = self.top.partition_point(|t| t.bytes >= bytes);
            self.top.insert(
                at,
                TopKey {
                    bytes,
                    db: key.db,
                    name: cut(key.name, MAX_NAME_BYTES),
                    key_type: key.key_type,
                },
            );
            self.top.truncate(top_n);
        }
    }

    /// Measured bytes plus the unmeasured keys at the sampled mean.
    pub fn memory(&self) -> u64 {
        let measured = self.sample_keys + self.outlier_keys;
        let unmeasured = self.keys.saturating_sub(measured);
        let estimate = match self.sample_keys {
            0 => 0,
            n => (self.sample_bytes as u128 * unmeasured as u128 / n as u128) as u64,
        };
        self.sample_bytes + self.outlier_bytes + estimate
    }

    pub fn measured_keys(&self) -> u64 {
        self.sample_keys + self.outlier_keys
    }

    /// `(type, keys)` of each type present, in a fixed order.
    pub fn types(&self) -> Vec<(KeyType, u64)> {
        TYPE_ORDER
            .iter()
            .zip(self.types)
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| (*t, n))
            .collect()
    }

    pub fn top(&self) -> &[TopKey] {
        &self.top
    }

    /// Keys per governing rule (None: no rule), most keys first.
    pub fn rules(&self) -> Vec<(Option<usize>, u64)> {
        let mut rules = self.rules.clone();
        rules.sort_by_key(|r| std::cmp::Reverse(r.1));
        rules
    }
}

/// The finished jobs of one queue (the lengths of its `completed` and `failed` sets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finished {
    pub completed: u64,
    pub failed: u64,
    /// The rule that governs the finished sets (the queue rule cleaning them), if any.
    pub rule: Option<usize>,
}

impl Finished {
    pub fn total(&self) -> u64 {
        self.completed + self.failed
    }
}

/// The group table of one walk.
pub struct Grouper {
    top_n: usize,
    groups: Vec<Group>,
    index: HashMap<Vec<u8>, usize>,
    overflow: Group,
    /// Collapsed bases known to hold a queue.
    queue_bases: HashSet<Vec<u8>>,
    /// Raw bases already checked.
    probed: HashSet<Vec<u8>>,
    /// Finished jobs per queue (raw base, e.g. `bull:emails:`).
    finished: BTreeMap<Vec<u8>, Finished>,
    pattern: Vec<u8>,
    pattern_colons: Vec<usize>,
    raw_colons: Vec<usize>,
}

/// A key's type by name (None: no such key), for checking queue bases.
pub type Probe<'a> = dyn FnMut(&[u8]) -> Option<KeyType> + 'a;
/// A key's memory in bytes (`MEMORY USAGE`), None when it could not be measured.
pub type Measurer<'a> = dyn FnMut() -> Option<u64> + 'a;

impl Grouper {
    pub fn new(top_n: usize) -> Grouper {
        Grouper {
            top_n,
            groups: Vec::new(),
            index: HashMap::new(),
            overflow: Group::new(b"other".to_vec(), None),
            queue_bases: HashSet::new(),
            probed: HashSet::new(),
            finished: BTreeMap::new(),
            pattern: Vec::new(),
            pattern_colons: Vec::new(),
            raw_colons: Vec::new(),
        }
    }

    /// Counts one key in its group, measuring it when the group's sampling asks for it.
    pub fn add(&mut self, key: &KeyFacts, probe: &mut Probe, measure: &mut Measurer) {
        self.add_placed(key, probe, measure);
    }

    /// `add`, telling which group took the key (its index in `groups`; None: "other").
    pub fn add_placed(
        &mut self,
        key: &KeyFacts,
        probe: &mut Probe,
        measure: &mut Measurer,
    ) -> Option<usize> {
        let slot = self.place(key, probe);
        let top_n = self.top_n;
        let group = match slot {
            Some(i) => &mut self.groups[i],
            None => &mut self.overflow,
        };
        group.count(key);
        let how = group.decide(key.len);
        if how != Measure::Skip {
            // A key that cannot be measured (gone meanwhile) stays counted, at the mean.
            if let Some(bytes) = measure() {
                group.record(key, how, bytes, top_n);
            }
        }
        slot
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Keys of patterns beyond `MAX_GROUPS`.
    pub fn overflow(&self) -> &Group {
        &self.overflow
    }

    pub fn holds_queues(&self) -> bool {
        !self.queue_bases.is_empty()
    }

    /// Finished jobs per queue base.
    pub fn finished(&self) -> &BTreeMap<Vec<u8>, Finished> {
        &self.finished
    }

    /// The group of a key: a queue's (known base or newly found one), else its pattern's.
    /// None: the table is full and the pattern is new.
    fn place(&mut self, key: &KeyFacts, probe: &mut Probe) -> Option<usize> {
        collapse_into(key.name, &mut self.pattern, &mut self.pattern_colons);
        self.raw_colons.clear();
        self.raw_colons.extend(
            key.name
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b':')
                .map(|(i, _)| i)
                .take(MAX_BASE_COLONS),
        );
        // Bases end at the second `:` or later, and leave a non-empty rest.
        let bases = self
            .pattern_colons
            .len()
            .min(self.raw_colons.len())
            .min(MAX_BASE_COLONS);
        for j in 1..bases {
            if self
                .queue_bases
                .contains(&self.pattern[..=self.pattern_colons[j]])
                && self.raw_colons[j] + 1 < key.name.len()
            {
                return self.queue_slot(j, key);
            }
        }
        if let Some(&i) = self.index.get(self.pattern.as_slice()) {
            return Some(i);
        }
        for j in 1..bases {
            let raw_end = self.raw_colons[j] + 1;
            if raw_end >= key.name.len() {
                continue;
            }
            let raw_base = &key.name[..raw_end];
            if self.probed.contains(raw_base) || self.probed.len() >= MAX_QUEUES {
                continue;
            }
            self.probed.insert(raw_base.to_vec());
            if is_queue(raw_base, probe) {
                let base = self.pattern[..=self.pattern_colons[j]].to_vec();
                self.queue_bases.insert(base);
                return self.queue_slot(j, key);
            }
        }
        let pattern = std::mem::take(&mut self.pattern);
        let slot = self.slot_for(&pattern, None);
        self.pattern = pattern;
        slot
    }

    /// The group of a key under the queue base that ends at its `j`-th `:`.
    fn queue_slot(&mut self, j: usize, key: &KeyFacts) -> Option<usize> {
        let raw_end = self.raw_colons[j] + 1;
        let rest = &key.name[raw_end..];
        let part = match is_structure_key(rest, key.key_type) {
            true => QueuePart::Structure,
            false => QueuePart::Jobs,
        };
        if part == QueuePart::Structure && key.key_type == KeyType::ZSet {
            let raw_base = &key.name[..raw_end];
            let known = self.finished.contains_key(raw_base);
            if known || self.finished.len() < MAX_QUEUES {
                let f = self.finished.entry(raw_base.to_vec()).or_default();
                let count = match rest {
                    b"completed" => Some(&mut f.completed),
                    b"failed" => Some(&mut f.failed),
                    _ => None,
                };
                if let Some(count) = count {
                    *count += key.len;
                    f.rule = f.rule.or(key.rule);
                }
            }
        }
        let mut pattern = self.pattern[..=self.pattern_colons[j]].to_vec();
        match part {
            QueuePart::Jobs => pattern.push(b'*'),
            QueuePart::Structure => pattern.extend_from_slice(STRUCTURES.as_bytes()),
        }
        self.slot_for(&pattern, Some(part))
    }

    fn slot_for(&mut self, pattern: &[u8], queue: Option<QueuePart>) -> Option<usize> {
        if let Some(&i) = self.index.get(pattern) {
            if queue.is_some() {
                self.groups[i].queue = queue;
            }
            return Some(i);
        }
        if self.groups.len() >= MAX_GROUPS {
            return None;
        }
        self.groups.push(Group::new(pattern.to_vec(), queue));
        self.index.insert(pattern.to_vec(), self.groups.len() - 1);
        Some(self.groups.len() - 1)
    }
}

/// Whether a queue lives at `base`: its id counter (string) or meta (hash) exists, and so
/// does one of its state keys (a list of waiting/active/paused jobs, a sorted set of
/// finished/delayed/... jobs, the events stream), each of the type the libraries give it.
pub fn is_queue(base: &[u8], probe: &mut Probe) -> bool {
    let mut is = |suffix: &str, t: KeyType| {
        let name = [base, suffix.as_bytes()].concat();
        probe(&name) == Some(t)
    };
    let counter = is("id", KeyType::String) || is("meta", KeyType::Hash);
    if !counter {
        return false;
    }
    let zsets = state_zsets(QueueFlavor::BullMq)
        .iter()
        .chain(state_zsets(QueueFlavor::Bull));
    STATE_LISTS.iter().any(|s| is(s, KeyType::List))
        || zsets.into_iter().any(|s| is(s, KeyType::ZSet))
        || is("events", KeyType::Stream)
}

/// `name` cut to `max` bytes, ending in `...` when cut.
pub fn cut(name: &[u8], max: usize) -> Vec<u8> {
    match name.len() > max {
        true => [&name[..max], b"..."].concat(),
        false => name.to_vec(),
    }
}

/// The pattern of a key name (see the module doc).
pub fn collapse(name: &[u8]) -> Vec<u8> {
    let (mut out, mut colons) = (Vec::new(), Vec::new());
    collapse_into(name, &mut out, &mut colons);
    out
}

/// `collapse` into reused buffers; `colons` gets the position of each `:` in `out`.
fn collapse_into(name: &[u8], out: &mut Vec<u8>, colons: &mut Vec<usize>) {
    out.clear();
    colons.clear();
    for (i, segment) in name.split(|b| *b == b':').enumerate() {
        if i > 0 {
            colons.push(out.len());
            out.push(b':');
        }
        collapse_segment(segment, out);
        if out.len() > MAX_PATTERN_BYTES {
            out.truncate(MAX_PATTERN_BYTES);
            out.push(b'*');
            colons.retain(|c| *c < MAX_PATTERN_BYTES);
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Id,
    Sep(u8),
    Word(&'a [u8]),
}

fn collapse_segment(segment: &[u8], out: &mut Vec<u8>) {
    // A whole-segment hash tag (`{acme}`) names a tenant or shard for Redis Cluster: one
    // group for all of them, as for ids.
    if segment.len() > 2 && segment.starts_with(b"{") && segment.ends_with(b"}") {
        out.extend_from_slice(b"{*}");
        return;
    }
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut word_start = 0;
    while i < segment.len() {
        if is_uuid_at(segment, i) {
            push_word(&mut tokens, &segment[word_start..i]);
            tokens.push(Token::Id);
            i += 36;
            word_start = i;
        } else if TOKEN_SEPARATORS.contains(&segment[i]) {
            push_word(&mut tokens, &segment[word_start..i]);
            tokens.push(Token::Sep(segment[i]));
            i += 1;
            word_start = i;
        } else {
            i += 1;
        }
    }
    push_word(&mut tokens, &segment[word_start..]);
    let all_ids =
        tokens.iter().all(|t| !matches!(t, Token::Word(_))) && tokens.contains(&Token::Id);
    if all_ids {
        out.push(b'*');
        return;
    }
    for t in tokens {
        match t {
            Token::Id => out.push(b'*'),
            Token::Sep(b) => out.push(b),
            Token::Word(w) => collapse_digit_runs(w, out),
        }
    }
}

fn push_word<'a>(tokens: &mut Vec<Token<'a>>, word: &'a [u8]) {
    if word.is_empty() {
        return;
    }
    tokens.push(match id_like(word) {
        true => Token::Id,
        false => Token::Word(word),
    });
}

/// Runs of 4+ digits inside a word become `*` (`job1234` → `job*`).
fn collapse_digit_runs(word: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < word.len() {
        let run = word[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if run >= 4 {
            out.push(b'*');
            i += run;
        } else if run > 0 {
            out.extend_from_slice(&word[i..i + run]);
            i += run;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
}

/// A token that is an id: a number, a hex id of 8+ characters, a timestamp piece, a long
/// random token (16+ letters and digits, both present).
fn id_like(token: &[u8]) -> bool {
    let digits = token.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let all = |f: fn(&u8) -> bool| token.iter().all(f);
    all(u8::is_ascii_digit)
        || (token.len() >= 8 && all(u8::is_ascii_hexdigit))
        || (digits >= 2
            && token[0].is_ascii_digit()
            && all(|b| b.is_ascii_digit() || *b == b'T' || *b == b'Z'))
        || (token.len() >= 16 && all(u8::is_ascii_alphanumeric) && digits < token.len())
}

/// A UUID (`8-4-4-4-12` hex digits) starts at `at`.
fn is_uuid_at(s: &[u8], at: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let Some(candidate) = s.get(at..at + 36) else {
        return false;
    };
    let mut pos = 0;
    for (i, len) in GROUPS.iter().enumerate() {
        if i > 0 {
            if candidate[pos] != b'-' {
                return false;
            }
            pos += 1;
        }
        if !candidate[pos..pos + len].iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        pos += len;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> String {
        String::from_utf8(collapse(name.as_bytes())).expect("utf8")
    }

    #[test]
    fn ids_collapse_and_words_stay() {
        for (name, pattern) in [
            ("user:42", "user:*"),
            ("user:42:profile", "user:*:profile"),
            ("runs:active:{acme}:web:data", "runs:active:{*}:web:data"),
            ("{}:x", "{}:x"),
            ("session:8f14e45f-ceea-467f-a0e6-0d4f2f5c1e4b", "session:*"),
            (
                "celery-task-meta-8f14e45f-ceea-467f-a0e6-0d4f2f5c1e4b",
                "celery-task-meta-*",
            ),
            ("cache:5d41402abc4b2a76b9719d911017c592", "cache:*"),
            ("obj:507f1f77bcf86cd799439011", "obj:*"),
            ("log:2024-01-15", "log:*"),
            ("log:2024-01-15T10:00:00Z", "log:*:*:*"),
            ("ts:1700000000.123", "ts:*"),
            ("job1234", "job*"),
            ("v2:config", "v2:config"),
            ("tok:aZ3kL9mQ2xP7rT4w", "tok:*"),
            ("rate_limit_17", "rate_limit_*"),
            ("events", "events"),
            ("cafe:babe", "cafe:babe"),
            ("deadbeefcafe:x", "deadbeefcafe:x"),
            ("a::b", "a::b"),
            ("", ""),
            ("user:42-eu", "user:*-eu"),
        ] {
            assert_eq!(c(name), pattern, "{name}");
        }
    }

    #[test]
    fn long_patterns_are_cut() {
        let name = format!("k:{}", "x".repeat(500));
        let p = collapse(name.as_bytes());
        assert_eq!(p.len(), MAX_PATTERN_BYTES + 1);
        assert!(p.ends_with(b"*"));
        assert_eq!(cut(&[b'a'; 300], 10), b"aaaaaaaaaa...".to_vec());
        assert_eq!(cut(b"short", 10), b"short".to_vec());
    }

    fn fact(name: &str, key_type: KeyType) -> KeyFacts<'_> {
        KeyFacts {
            name: name.as_bytes(),
            db: 0,
            key_type,
            has_ttl: false,
            len: 1,
            rule: None,
        }
    }

    /// A keyspace for probes: name → type.
    fn probe_of(keys: &[(&str, KeyType)]) -> impl FnMut(&[u8]) -> Option<KeyType> {
        let map: HashMap<Vec<u8>, KeyType> = keys
            .iter()
            .map(|(n, t)| (n.as_bytes().to_vec(), *t))
            .collect();
        move |name: &[u8]| map.get(name).copied()
    }

    fn pattern_of(g: &Grouper, name: &str) -> Vec<(String, u64, Option<QueuePart>)> {
        g.groups()
            .iter()
            .filter(|x| x.pattern == name.as_bytes())
            .map(|x| {
                (
                    String::from_utf8_lossy(&x.pattern).into_owned(),
                    x.keys,
                    x.queue,
                )
            })
            .collect()
    }

    #[test]
    fn queue_keys_group_per_queue_whatever_the_job_ids() {
        let queue = [
            ("bull:emails:id", KeyType::String),
            ("bull:emails:meta", KeyType::Hash),
            ("bull:emails:completed", KeyType::ZSet),
            ("bull:emails:events", KeyType::Stream),
            ("bull:emails:wait", KeyType::List),
        ];
        let mut probe = probe_of(&queue);
        let mut g = Grouper::new(3);
        let mut measure = || Some(100);
        let keys = [
            ("bull:emails:17", KeyType::Hash),
            ("bull:emails:order-abc", KeyType::Hash),
            ("bull:emails:17:logs", KeyType::List),
            ("bull:emails:order-abc:lock", KeyType::String),
            ("bull:emails:17:dependencies", KeyType::Set),
            ("bull:emails:id", KeyType::String),
            ("bull:emails:meta", KeyType::Hash),
            ("bull:emails:completed", KeyType::ZSet),
            ("bull:emails:events", KeyType::Stream),
            ("bull:emails:wait", KeyType::List),
            ("bull:emails:metrics:failed", KeyType::Hash),
            ("bull:emails:repeat:nightly", KeyType::Hash),
            ("bull:emails:repeat:nightly:1700000000000", KeyType::Hash),
            ("user:1", KeyType::String),
            ("user:2", KeyType::String),
        ];
        for (name, t) in keys {
            g.add(&fact(name, t), &mut probe, &mut measure);
        }
        assert_eq!(
            pattern_of(&g, "bull:emails:*"),
            vec![("bull:emails:*".into(), 6, Some(QueuePart::Jobs))]
        );
        assert_eq!(
            pattern_of(&g, "bull:emails:<structures>"),
            vec![(
                "bull:emails:<structures>".into(),
                7,
                Some(QueuePart::Structure)
            )]
        );
        assert_eq!(pattern_of(&g, "user:*"), vec![("user:*".into(), 2, None)]);
        assert_eq!(g.groups().len(), 3);
        assert!(g.holds_queues());
    }

    #[test]
    fn a_base_without_queue_evidence_is_not_a_queue() {
        // An id counter alone, or state-like names of the wrong type, make no queue.
        let mut probe = probe_of(&[
            ("user:42:id", KeyType::String),
            ("user:42:wait", KeyType::String),
            ("app:x:meta", KeyType::Hash),
        ]);
        let mut g = Grouper::new(0);
        for name in ["user:42:id", "user:42:wait", "user:42:name", "app:x:meta"] {
            g.add(&fact(name, KeyType::String), &mut probe, &mut || Some(1));
        }
        assert!(!g.holds_queues());
        assert!(g.groups().iter().all(|x| x.queue.is_none()));
        assert_eq!(pattern_of(&g, "user:*:name").len(), 1);
    }

    #[test]
    fn finished_jobs_are_counted_per_queue() {
        let mut probe = probe_of(&[
            ("bull:a:id", KeyType::String),
            ("bull:a:completed", KeyType::ZSet),
            ("bull:b:meta", KeyType::Hash),
            ("bull:b:failed", KeyType::ZSet),
        ]);
        let mut g = Grouper::new(0);
        for (name, len) in [
            ("bull:a:completed", 12_000),
            ("bull:b:failed", 5),
            ("bull:a:failed", 7),
        ] {
            let mut f = fact(name, KeyType::ZSet);
            f.len = len;
            g.add(&f, &mut probe, &mut || Some(1));
        }
        let got: Vec<(String, u64, u64)> = g
            .finished()
            .iter()
            .map(|(b, f)| (String::from_utf8_lossy(b).into(), f.completed, f.failed))
            .collect();
        assert_eq!(
            got,
            vec![("bull:a:".into(), 12_000, 7), ("bull:b:".into(), 0, 5)]
        );
    }

    #[test]
    fn the_table_is_bounded_and_the_rest_is_other() {
        let mut g = Grouper::new(1);
        let mut probe = |_: &[u8]| None;
        for i in 0..MAX_GROUPS + 50 {
            let name = format!("{}:k", word(i));
            g.add(&fact(&name, KeyType::String), &mut probe, &mut || Some(10));
        }
        assert_eq!(g.groups().len(), MAX_GROUPS);
        assert_eq!(g.overflow().keys, 50);
        assert_eq!(g.overflow().memory(), 500);
    }

    /// A distinct word without digits for `i`.
    fn word(mut i: usize) -> String {
        let mut s = String::new();
        loop {
            s.push(char::from(b'a' + (i % 26) as u8));
            i /= 26;
            if i == 0 {
                return s;
            }
        }
    }

    #[test]
    fn memory_is_exact_then_sampled_with_outliers_and_top_keys() {
        let mut g = Grouper::new(2);
        let mut probe = |_: &[u8]| None;
        let mut measured = 0u64;
        let total = EXACT_KEYS_PER_GROUP + 10_000;
        let mut exact_sum = 0u64;
        for i in 0..total {
            let name = format!("k:{i}");
            let mut f = fact(&name, KeyType::String);
            // One huge key late in the walk: found although it is not sampled.
            let bytes = match i {
                7_777 => 1_000_000,
                _ => 50 + i % 3,
            };
            f.len = bytes;
            exact_sum += bytes;
            g.add(&f, &mut probe, &mut || {
                measured += 1;
                Some(bytes)
            });
        }
        let group = &g.groups()[0];
        assert_eq!(group.keys, total);
        assert_eq!(group.measured_keys(), measured);
        assert!(measured < EXACT_KEYS_PER_GROUP + 10_000 / SAMPLE_STRIDE + 10);
        let estimate = group.memory() as f64;
        assert!(
            (estimate - exact_sum as f64).abs() / (exact_sum as f64) < 0.01,
            "{estimate} vs {exact_sum}"
        );
        assert_eq!(group.top()[0].bytes, 1_000_000);
        assert_eq!(group.top()[0].name, b"k:7777".to_vec());
        assert_eq!(group.top().len(), 2);
    }

    #[test]
    fn ttl_rules_and_types_are_counted() {
        let mut g = Grouper::new(0);
        let mut probe = |_: &[u8]| None;
        for (i, (t, ttl, rule)) in [
            (KeyType::Hash, false, None),
            (KeyType::Hash, true, None),
            (KeyType::List, false, Some(1)),
            (KeyType::List, false, Some(1)),
        ]
        .into_iter()
        .enumerate()
        {
            let name = format!("x:{i}");
            let f = KeyFacts {
                name: name.as_bytes(),
                db: 0,
                key_type: t,
                has_ttl: ttl,
                len: 1,
                rule,
            };
            g.add(&f, &mut probe, &mut || Some(1));
        }
        let group = &g.groups()[0];
        assert_eq!(
            (group.keys, group.no_ttl, group.uncovered_no_ttl),
            (4, 3, 1)
        );
        assert_eq!(group.types(), vec![(KeyType::Hash, 2), (KeyType::List, 2)]);
        assert_eq!(group.rules(), vec![(None, 2), (Some(1), 2)]);
    }
}
