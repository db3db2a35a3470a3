//! Collection trimming: keep streams, lists and sorted sets small instead of expiring them.
//!
//! - streams: `max_len` (exact, or `approx` whole nodes only) and `max_age` (`XTRIM MINID`
//!   with an explicit id computed from now − age); both given: the stricter wins;
//! - lists: keep the newest `max_len` at the `newest` end (`head` for LPUSH producers);
//! - sorted sets: `max_len` keeps the highest scores, `max_age` removes scores (ms or s
//!   timestamps) older than now − age.
//!
//! - every type: `max_memory` keeps the newest entries whose memory fits the budget (see
//!   `memory`); it becomes a `max_len` of that many, so the tightest limit wins.
//!
//! `plan` only builds a work item (no server calls); `work::TrimWork` removes entries in
//! bounded, replicated calls across as many sweep slices as it needs. `RETENTION.TRIM`
//! runs the same work for one key.

mod command;
pub mod memory;
pub mod plan;
pub mod work;

pub use command::cmd_trim;

use crate::policy::{Action, KeyType, Rule, TrimAction};
use crate::sweep::work::Planned;
use work::{Shape, TrimWork};

/// The work for one key governed by a trim rule. A key of another type than the rule's (or
/// of a type that cannot be trimmed) is skipped and counted, not an error.
/// The planner of trim rules (registered with the sweep at load).
pub fn plan_rule(rule: &Rule, name: &[u8], key_type: KeyType) -> Planned {
    match &rule.action {
        Action::Trim(trim) => plan(trim, rule.key_type, name, key_type),
        _ => Planned::Nothing,
    }
}

pub fn plan(
    trim: &TrimAction,
    rule_type: Option<KeyType>,
    name: &[u8],
    key_type: KeyType,
) -> Planned {
    if rule_type.is_some_and(|t| t != key_type) {
        return Planned::WrongType;
    }
    match Shape::of(key_type) {
        Some(shape) => Planned::Work(Box::new(TrimWork::new(name.to_vec(), shape, *trim))),
        None => Planned::WrongType,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ListEnd, ScoreUnit};

    fn trim() -> TrimAction {
        TrimAction {
            max_len: Some(10),
            max_age_ms: None,
            approx: false,
            newest: ListEnd::Head,
            score_unit: ScoreUnit::Milliseconds,
            max_memory_bytes: None,
        }
    }

    fn kind(p: Planned) -> &'static str {
        match p {
            Planned::Nothing => "nothing",
            Planned::WrongType => "wrong type",
            Planned::Work(_) => "work",
        }
    }

    #[test]
    fn keys_of_the_rule_type_get_work_and_others_are_skipped() {
        let t = trim();
        for ty in [KeyType::Stream, KeyType::List, KeyType::ZSet] {
            assert_eq!(kind(plan(&t, Some(ty), b"k", ty)), "work", "{ty:?}");
        }
        assert_eq!(
            kind(plan(&t, Some(KeyType::Stream), b"k", KeyType::List)),
            "wrong type"
        );
        assert_eq!(kind(plan(&t, None, b"k", KeyType::Hash)), "wrong type");
        assert_eq!(kind(plan(&t, None, b"\x00\xff", KeyType::ZSet)), "work");
    }
}
