//! The retention policy: rules, what each one selects, and which rule governs a key.
//!
//! Pure Rust with no server calls, so every decision is unit-tested with plain values.

pub mod duration;
pub mod glob;
mod index;
mod parse;
mod render;
pub mod size;

pub use glob::Glob;
pub use parse::{parse_policy, PolicyError};

/// Text from a policy file or an argument, quoted in an error: at most `MAX_QUOTED_CHARS`
/// characters. The text may be megabytes long, and `CONFIG SET` cuts a module's error at 255
/// bytes, so a long quote would push the reason out of the message.
pub fn clipped(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}...", &text[..end])),
    }
}

pub const MAX_QUOTED_CHARS: usize = 40;

/// The Redis types a rule can be restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    String,
    List,
    Set,
    ZSet,
    Hash,
    Stream,
    Module,
}

impl KeyType {
    pub const ALL: [(&'static str, KeyType); 7] = [
        ("string", KeyType::String),
        ("list", KeyType::List),
        ("set", KeyType::Set),
        ("zset", KeyType::ZSet),
        ("hash", KeyType::Hash),
        ("stream", KeyType::Stream),
        ("module", KeyType::Module),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("unknown")
    }

    pub fn from_name(name: &str) -> Option<KeyType> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// In first-match order. Read-only: the index below is built from them.
    pub rules: Vec<Rule>,
    index: index::RuleIndex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub selector: Selector,
    pub key_type: Option<KeyType>,
    /// Act only on keys idle at least this long (needs an LRU eviction policy).
    pub min_idle_ms: Option<i64>,
    pub action: Action,
    /// Overrides that apply while memory is under pressure (used memory at or above
    /// `retention.pressure-ratio` of `maxmemory`).
    pub pressure: Option<PressureOverride>,
}

/// Which key names a rule claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Any of these globs.
    Globs(Vec<Glob>),
    /// Every key under `<prefix>:` (a queue rule's `"match": "<prefix>:*"` claims it whole).
    Prefix(Vec<u8>),
    /// `<base>:index` and `<base>:data` for every base matching one of the globs.
    RunBases(Vec<Glob>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Keep,
    Ttl(TtlAction),
    Trim(TrimAction),
    Queue(QueueAction),
    Runs(RunsAction),
}

/// The kinds of action, without their settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Keep,
    Ttl,
    Trim,
    Queue,
    Runs,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Keep => ActionKind::Keep,
            Action::Ttl(_) => ActionKind::Ttl,
            Action::Trim(_) => ActionKind::Trim,
            Action::Queue(_) => ActionKind::Queue,
            Action::Runs(_) => ActionKind::Runs,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlAction {
    pub ttl_ms: i64,
    /// Also lower an existing TTL that is longer than `ttl_ms`.
    pub cap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListEnd {
    /// The newest entries are at the head (an LPUSH producer); the tail is trimmed.
    Head,
    /// The newest entries are at the tail (an RPUSH producer); the head is trimmed.
    Tail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreUnit {
    Milliseconds,
    Seconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimAction {
    pub max_len: Option<u64>,
    pub max_age_ms: Option<i64>,
    /// Streams only: `XTRIM ~` semantics (whole nodes only; much cheaper).
    pub approx: bool,
    /// Lists only: which end holds the newest entries (the ones kept).
    pub newest: ListEnd,
    /// Sorted sets only: unit of the timestamp scores used by `max_age`.
    pub score_unit: ScoreUnit,
    /// Keep the newest entries whose memory (as `MEMORY USAGE` counts it) fits this budget.
    pub max_memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFlavor {
    BullMq,
    Bull,
}

impl QueueFlavor {
    pub fn name(self) -> &'static str {
        match self {
            QueueFlavor::BullMq => "bullmq",
            QueueFlavor::Bull => "bull",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishedRetention {
    pub max_age_ms: Option<i64>,
    /// Keep at most the newest this many.
    pub max_len: Option<u64>,
    /// Keep the newest jobs whose memory (hash and sub-keys) fits this budget.
    pub max_memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsRetention {
    pub max_len: Option<u64>,
    pub max_age_ms: Option<i64>,
}

/// A queue rule's library: one, or (`auto`) whichever each queue under the prefix is. Both
/// libraries default to the prefix `bull`, so one prefix often holds queues of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleFlavor {
    One(QueueFlavor),
    Auto,
}

impl RuleFlavor {
    pub fn name(self) -> &'static str {
        match self {
            RuleFlavor::One(flavor) => flavor.name(),
            RuleFlavor::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAction {
    pub flavor: RuleFlavor,
    pub prefix: String,
    pub completed: Option<FinishedRetention>,
    pub failed: Option<FinishedRetention>,
    pub events: Option<EventsRetention>,
    pub orphan_age_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunsAction {
    pub max_age_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PressureOverride {
    /// A shorter TTL used instead of the rule's own while under pressure.
    pub ttl_ms: Option<i64>,
}

impl Selector {
    fn matches(&self, name: &[u8]) -> bool {
        match self {
            Selector::Globs(globs) => globs.iter().any(|g| g.matches(name)),
            Selector::Prefix(prefix) => name.starts_with(prefix),
            Selector::RunBases(globs) => run_base_of(name)
                .map(|base| globs.iter().any(|g| g.matches(base)))
                .unwrap_or(false),
        }
    }
}

impl Selector {
    /// The pattern of this selector that `name` matches, as the policy file writes it (a
    /// queue rule's prefix as `<prefix>*`, a runs rule's base glob with its two suffixes).
    pub fn matching_pattern(&self, name: &[u8]) -> Option<Vec<u8>> {
        match self {
            Selector::Globs(globs) => globs
                .iter()
                .find(|g| g.matches(name))
                .map(|g| g.pattern().to_vec()),
            Selector::Prefix(prefix) => name
                .starts_with(prefix)
                .then(|| [prefix.as_slice(), b"*"].concat()),
            Selector::RunBases(globs) => {
                let base = run_base_of(name)?;
                let glob = globs.iter().find(|g| g.matches(base))?;
                Some([glob.pattern(), b":index|:data"].concat())
            }
        }
    }
}

/// `runs:active:{w}:{p}:index` → `runs:active:{w}:{p}` (also for `:data`).
pub fn run_base_of(name: &[u8]) -> Option<&[u8]> {
    name.strip_suffix(b":index")
        .or_else(|| name.strip_suffix(b":data"))
}

impl Rule {
    pub fn selects(&self, name: &[u8], key_type: KeyType) -> bool {
        self.key_type.is_none_or(|t| t == key_type) && self.selector.matches(name)
    }

    /// Queue and runs rules claim their keys whatever the type: a later rule must not
    /// touch a queue's keys just because a type filter made this rule skip them.
    fn claims(&self, name: &[u8]) -> bool {
        matches!(self.selector, Selector::Prefix(_) | Selector::RunBases(_))
            && self.selector.matches(name)
    }
}

impl Policy {
    pub fn new(rules: Vec<Rule>) -> Policy {
        let index = match rules.len() > index::LINEAR_MAX {
            true => index::RuleIndex::new(&rules),
            false => index::RuleIndex::default(),
        };
        Policy { rules, index }
    }

    pub fn empty() -> Policy {
        Policy::new(Vec::new())
    }

    /// The first rule, in order, for which `pred` holds among those that may match `name`:
    /// every rule of a small policy, else those whose patterns' literal prefixes `name`
    /// starts with (`pred` must imply that the rule's selector matches `name`).
    fn first_rule(&self, name: &[u8], pred: impl Fn(&Rule) -> bool) -> Option<usize> {
        if self.rules.len() <= index::LINEAR_MAX {
            return self.rules.iter().position(pred);
        }
        self.index
            .candidates(name)
            .into_iter()
            .find(|&i| self.rules.get(i).is_some_and(&pred))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The index of the first rule that governs this key, if any.
    pub fn rule_for(&self, name: &[u8], key_type: KeyType) -> Option<usize> {
        self.first_rule(name, |r| r.selects(name, key_type) || r.claims(name))
    }

    /// Whether some rule could govern a key of this name, whatever its type: lets the new-key
    /// path drop names no rule is about without opening the key.
    pub fn may_govern(&self, name: &[u8]) -> bool {
        self.first_rule(name, |r| r.selector.matches(name))
            .is_some()
    }

    /// Whether the rules in scope (all, or only rule `only`) can act only on keys without a
    /// TTL: `keep` and `ttl` without `cap` (nor, under memory pressure, a `pressure.ttl`,
    /// which lowers TTLs). On a database where every key has a TTL they have nothing to do,
    /// so a pass over it can end at once.
    pub fn acts_only_on_keys_without_ttl(&self, only: Option<usize>, under_pressure: bool) -> bool {
        self.rules
            .iter()
            .enumerate()
            .filter(|(i, _)| only.is_none_or(|o| o == *i))
            .all(|(_, r)| match &r.action {
                Action::Keep => true,
                Action::Ttl(ttl) => {
                    let lowers = ttl.cap || (under_pressure && r.pressure.is_some());
                    !lowers
                }
                Action::Trim(_) | Action::Queue(_) | Action::Runs(_) => false,
            })
    }

    pub fn rule_index(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.name == name)
    }

    /// The policy as normalized JSON (durations in their shortest exact unit).
    pub fn to_json(&self) -> serde_json::Value {
        render::policy_to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Policy {
        parse_policy(json).expect("valid policy")
    }

    #[test]
    fn only_keep_and_uncapped_ttl_rules_act_only_on_keys_without_ttl() {
        let p = policy(
            r#"{"rules":[
                {"name":"protect","match":"bull:*:id","keep":true},
                {"name":"celery","match":"celery-task-meta-*","ttl":"1d"},
                {"name":"capped","match":"session:*","ttl":"1h","cap":true},
                {"name":"events","match":"events:*","type":"stream","trim":{"max_len":1000}}
            ]}"#,
        );
        assert!(!p.acts_only_on_keys_without_ttl(None, false));
        assert!(p.acts_only_on_keys_without_ttl(Some(0), false));
        assert!(p.acts_only_on_keys_without_ttl(Some(1), false));
        assert!(
            !p.acts_only_on_keys_without_ttl(Some(2), false),
            "cap lowers TTLs"
        );
        assert!(
            !p.acts_only_on_keys_without_ttl(Some(3), false),
            "trims need visits"
        );
        let ttl_only = policy(
            r#"{"rules":[{"name":"k","match":"a:*","keep":true},{"name":"t","match":"*","ttl":"1h"}]}"#,
        );
        assert!(ttl_only.acts_only_on_keys_without_ttl(None, false));
        assert!(Policy::empty().acts_only_on_keys_without_ttl(None, false));
        let pressured =
            policy(r#"{"rules":[{"name":"t","match":"*","ttl":"1h","pressure":{"ttl":"1m"}}]}"#);
        assert!(pressured.acts_only_on_keys_without_ttl(None, false));
        assert!(
            !pressured.acts_only_on_keys_without_ttl(None, true),
            "pressure lowers TTLs"
        );
    }

    #[test]
    fn first_matching_rule_wins_and_keep_protects() {
        let p = policy(
            r#"{"rules":[
                {"name":"protect","match":"bull:*:id","keep":true},
                {"name":"all-bull","match":"bull:*","ttl":"7d"},
                {"name":"rest","match":"*","ttl":"1h"}]}"#,
        );
        assert_eq!(p.rule_for(b"bull:q:id", KeyType::String), Some(0));
        assert_eq!(p.rule_for(b"bull:q:1", KeyType::Hash), Some(1));
        assert_eq!(p.rule_for(b"other", KeyType::Set), Some(2));
    }

    #[test]
    fn may_govern_ignores_types_but_not_names() {
        let p = policy(r#"{"rules":[{"name":"m","match":"metrics:*","type":"hash","ttl":"48h"}]}"#);
        assert!(p.may_govern(b"metrics:a"));
        assert!(!p.may_govern(b"other"));
    }

    #[test]
    fn type_filter_skips_to_the_next_rule() {
        let p = policy(
            r#"{"rules":[
                {"name":"m","match":"metrics:*","type":"hash","ttl":"48h"},
                {"name":"rest","match":"metrics:*","ttl":"1h"}]}"#,
        );
        assert_eq!(p.rule_for(b"metrics:a", KeyType::Hash), Some(0));
        assert_eq!(p.rule_for(b"metrics:a", KeyType::String), Some(1));
        assert_eq!(p.rule_for(b"nometrics", KeyType::String), None);
    }

    #[test]
    fn queue_rule_claims_its_prefix_from_later_rules() {
        let p = policy(
            r#"{"rules":[
                {"name":"q","match":"bull:*","queue":{"flavor":"bullmq"}},
                {"name":"all","match":"*","ttl":"1d"}]}"#,
        );
        assert_eq!(p.rule_for(b"bull:q:id", KeyType::String), Some(0));
        assert_eq!(p.rule_for(b"bull:q:events", KeyType::Stream), Some(0));
        assert_eq!(p.rule_for(b"bullish", KeyType::String), Some(1));
    }

    #[test]
    fn runs_rule_claims_index_and_data_of_matching_bases() {
        let p = policy(
            r#"{"rules":[
                {"name":"runs","match":"runs:active:*","runs":{"max_age":"3h"}},
                {"name":"all","match":"*","ttl":"1d"}]}"#,
        );
        assert_eq!(
            p.rule_for(b"runs:active:{w}:p:index", KeyType::ZSet),
            Some(0)
        );
        assert_eq!(
            p.rule_for(b"runs:active:{w}:p:data", KeyType::Hash),
            Some(0)
        );
        assert_eq!(p.rule_for(b"runs:active:{w}:p", KeyType::Hash), Some(1));
    }

    #[test]
    fn normalized_json_round_trips() {
        let p = policy(
            r#"{"rules":[
                {"name":"a","match":["x:*","y:*"],"type":"hash","ttl":"86400","cap":true,"min_idle":"30d"},
                {"name":"b","match":"s:*","type":"stream","trim":{"max_len":10,"approx":true,"max_age":"7d","max_memory":"200mb"}},
                {"name":"c","match":"jobs:*","queue":{"flavor":"bull","completed":{"max_age":"24h","max_len":500},"failed":{"max_memory":1500}}},
                {"name":"d","match":["runs:*","other:runs:*"],"runs":{}},
                {"name":"e","match":"l:*","type":"list","trim":{"max_len":3,"newest":"tail"}},
                {"name":"f","match":["one:*"],"queue":{"flavor":"auto","events":{"max_len":100},"failed":{"max_len":0}}}]}"#,
        );
        let rendered = p.to_json();
        let again = parse_policy(&rendered.to_string()).expect("normalized parses");
        assert_eq!(again, p);
        // The selector of every kind of rule is the top-level "match".
        assert_eq!(rendered["rules"][2]["match"], "jobs:*");
        assert_eq!(rendered["rules"][2]["queue"].get("prefix"), None);
        assert_eq!(rendered["rules"][3]["match"][1], "other:runs:*");
        assert_eq!(rendered["rules"][3]["runs"].get("match"), None);
        assert_eq!(rendered["rules"][4]["trim"]["newest"], "tail");
        assert_eq!(rendered["rules"][5]["match"], "one:*");
    }
}
