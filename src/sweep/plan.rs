//! Pure decisions: given a key's facts and a rule, what should change. No server calls;
//! `now_ms` is passed in so tests pin the clock.

use crate::policy::TtlAction;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlPlan {
    /// The key complies (or expires sooner): leave it.
    Leave,
    /// The key has no TTL: give it one at this absolute time.
    Set(i64),
    /// `cap`: the key's TTL is longer than the rule allows: lower it to this time.
    Lower(i64),
}

/// Gives a TTL only to keys without one; with `cap` also lowers a longer one.
/// Never lengthens a TTL and never touches a key that expires sooner.
pub fn plan_ttl(
    action: &TtlAction,
    ttl_ms: i64,
    current_expire_at_ms: Option<i64>,
    now_ms: i64,
) -> TtlPlan {
    let target = now_ms.saturating_add(ttl_ms);
    match current_expire_at_ms {
        None => TtlPlan::Set(target),
        Some(at) if action.cap && at > target => TtlPlan::Lower(target),
        Some(_) => TtlPlan::Leave,
    }
}

/// The TTL plan while memory is under pressure and the rule has a shorter `pressure.ttl`: a
/// key without a TTL gets the pressure TTL, and so does one whose TTL lies within the rule's
/// own horizon (one the rule gave earlier, or a shorter one): the rule then allows no more
/// than the pressure TTL. A TTL beyond the rule's own horizon was chosen by the application
/// and is lowered only with `cap`, as outside pressure.
pub fn plan_pressure_ttl(
    action: &TtlAction,
    pressure_ttl_ms: i64,
    current_expire_at_ms: Option<i64>,
    now_ms: i64,
) -> TtlPlan {
    let target = now_ms.saturating_add(pressure_ttl_ms);
    let horizon = now_ms.saturating_add(action.ttl_ms);
    match current_expire_at_ms {
        None => TtlPlan::Set(target),
        Some(at) if at > target && (action.cap || at <= horizon) => TtlPlan::Lower(target),
        Some(_) => TtlPlan::Leave,
    }
}

/// `min_idle`: act only on keys idle at least that long. Without idle data (LFU eviction
/// policy) the key is left alone: in doubt, leave the key.
pub fn idle_allows(min_idle_ms: Option<i64>, idle_ms: Option<i64>) -> bool {
    match min_idle_ms {
        None => true,
        Some(min) => idle_ms.is_some_and(|idle| idle >= min),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn ttl(cap: bool) -> TtlAction {
        TtlAction { ttl_ms: HOUR, cap }
    }

    #[test]
    fn keys_without_ttl_get_one() {
        assert_eq!(
            plan_ttl(&ttl(false), HOUR, None, NOW),
            TtlPlan::Set(NOW + HOUR)
        );
    }

    #[test]
    fn existing_ttls_are_never_lengthened() {
        for at in [NOW - 5, NOW + 1, NOW + HOUR, NOW + 2 * HOUR, i64::MAX] {
            assert_eq!(
                plan_ttl(&ttl(false), HOUR, Some(at), NOW),
                TtlPlan::Leave,
                "{at}"
            );
        }
        for at in [NOW - 5, NOW + 1, NOW + HOUR] {
            assert_eq!(
                plan_ttl(&ttl(true), HOUR, Some(at), NOW),
                TtlPlan::Leave,
                "{at}"
            );
        }
    }

    #[test]
    fn cap_lowers_only_longer_ttls() {
        assert_eq!(
            plan_ttl(&ttl(true), HOUR, Some(NOW + 2 * HOUR), NOW),
            TtlPlan::Lower(NOW + HOUR)
        );
    }

    #[test]
    fn overrides_use_the_given_ttl() {
        assert_eq!(
            plan_ttl(&ttl(false), 60_000, None, NOW),
            TtlPlan::Set(NOW + 60_000)
        );
    }

    #[test]
    fn pressure_lowers_ttls_the_rule_gave_but_not_longer_ones_without_cap() {
        let quarter = HOUR / 4;
        // No TTL: the pressure TTL.
        assert_eq!(
            plan_pressure_ttl(&ttl(false), quarter, None, NOW),
            TtlPlan::Set(NOW + quarter)
        );
        // The rule's own TTL, given before the pressure began, is lowered.
        assert_eq!(
            plan_pressure_ttl(&ttl(false), quarter, Some(NOW + HOUR - 5), NOW),
            TtlPlan::Lower(NOW + quarter)
        );
        // Already sooner than the pressure TTL: left alone.
        assert_eq!(
            plan_pressure_ttl(&ttl(false), quarter, Some(NOW + quarter - 1), NOW),
            TtlPlan::Leave
        );
        // An application's TTL beyond the rule's horizon: only with cap.
        assert_eq!(
            plan_pressure_ttl(&ttl(false), quarter, Some(NOW + 2 * HOUR), NOW),
            TtlPlan::Leave
        );
        assert_eq!(
            plan_pressure_ttl(&ttl(true), quarter, Some(NOW + 2 * HOUR), NOW),
            TtlPlan::Lower(NOW + quarter)
        );
    }

    #[test]
    fn idle_filter_leaves_keys_when_unsure() {
        assert!(idle_allows(None, None));
        assert!(idle_allows(Some(10), Some(10)));
        assert!(!idle_allows(Some(10), Some(9)));
        assert!(!idle_allows(Some(10), None));
    }
}
