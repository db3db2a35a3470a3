//! What a queue rule would do to one job, for `RETENTION.EXPLAIN`: where the job is, read the
//! way the cleaner reads it (finished and how long ago against the rule's limits, or live and
//! where), so "why is this job still here?" and "why did it go?" have an answer.

use redis_module::Context;

use super::calls::{key, Calls};
use super::detect::flavor_of;
use super::layout::{state_zsets, FinishedSet, Reason, Window, STATE_LISTS, STATE_SETS};
use super::orphans::resolve_base;
use crate::explain::Verdict;
use crate::policy::duration::format_duration_ms;
use crate::policy::{QueueAction, QueueFlavor, RuleFlavor};

/// State lists longer than this are not searched for a job id.
const LIST_SEARCH_MAX: i64 = 100_000;

/// The job hash `name` under `queue`'s prefix, described; None when no queue holds it.
pub fn describe_job(
    ctx: &Context,
    queue: &QueueAction,
    name: &[u8],
    now_ms: i64,
) -> Option<Verdict> {
    let calls = Calls::new(ctx);
    let base_len = resolve_base(&calls, queue.prefix.len() + 1, name)?;
    let (base, id) = name.split_at(base_len);
    let base_text = String::from_utf8_lossy(base);
    let found = flavor_of(&calls, base);
    if let RuleFlavor::One(wanted) = queue.flavor {
        if wanted != found {
            return Some(Verdict::none(format!(
                "{base_text}* is a {} queue and this rule is for {} queues (give the rule \"flavor\": \"auto\")",
                library(found),
                library(wanted)
            )));
        }
    }
    if let Some(verdict) = finished(&calls, queue, base, id, now_ms) {
        return Some(verdict);
    }
    if let Some(state) = live_state(&calls, found, base, id) {
        return Some(Verdict::none(format!(
            "a live {} job ({state} in {base_text}*); live jobs are never touched",
            library(found)
        )));
    }
    Some(Verdict::none(format!(
        "not now: no state of {base_text}* lists job {}; if nothing refers to it for the rule's orphan_age ({}) at the module's looks, it is removed as an orphan",
        String::from_utf8_lossy(id),
        format_duration_ms(queue.orphan_age_ms)
    )).with("orphan_age_ms", queue.orphan_age_ms))
}

fn library(flavor: QueueFlavor) -> &'static str {
    match flavor {
        QueueFlavor::BullMq => "BullMQ",
        QueueFlavor::Bull => "Bull",
    }
}

/// The job's place in `completed` or `failed`, and what the rule's limits make of it
/// (`finished_at_ms`: the set's score, when the job finished).
fn finished(
    calls: &Calls,
    queue: &QueueAction,
    base: &[u8],
    id: &[u8],
    now_ms: i64,
) -> Option<Verdict> {
    for set in [FinishedSet::Completed, FinishedSet::Failed] {
        let set_key = key(&[base, set.name().as_bytes()]);
        let Ok(Some(score)) = calls.zscore(&set_key, id) else {
            continue;
        };
        let ago = roughly((now_ms - score as i64).max(0));
        let retention = match set {
            FinishedSet::Completed => queue.completed,
            FinishedSet::Failed => queue.failed,
        };
        let finished_at_ms = score as i64;
        let Some(retention) = retention else {
            return Some(
                Verdict::none(format!(
                    "{} {ago} ago; the rule sets no limit for {} jobs",
                    set.name(),
                    set.name()
                ))
                .with("finished_at_ms", finished_at_ms),
            );
        };
        let card = calls.zcard(&set_key).unwrap_or(0);
        let rank = calls.zrank(&set_key, id).unwrap_or(card);
        let limits = describe_limits(retention.max_age_ms, retention.max_len);
        let verdict = match Window::new(&retention, now_ms).reason(card, rank, score) {
            Some(Reason::Age) => Verdict::new("remove", format!(
                "remove it with its keys at the next pass: {} {ago} ago, older than the rule allows ({limits})",
                set.name()
            )),
            Some(Reason::Count) => Verdict::new("remove", format!(
                "remove it with its keys at the next pass: {} {ago} ago, beyond the newest the rule keeps ({limits})",
                set.name()
            )),
            None => Verdict::none(format!(
                "not yet: {} {ago} ago, within the rule's limits ({limits})",
                set.name()
            )),
        };
        return Some(verdict.with("finished_at_ms", finished_at_ms));
    }
    None
}

/// A span in its largest whole unit, rounded down ("2d", "5h", "40s"): how long ago.
fn roughly(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    UNITS.iter().find(|(unit, _)| ms >= *unit).map_or_else(
        || format!("{ms}ms"),
        |(unit, name)| format!("{}{name}", ms / unit),
    )
}

fn describe_limits(max_age_ms: Option<i64>, max_len: Option<u64>) -> String {
    let mut parts = Vec::new();
    if let Some(ms) = max_age_ms {
        parts.push(format!("max_age {}", format_duration_ms(ms)));
    }
    if let Some(n) = max_len {
        parts.push(format!("max_len {n}"));
    }
    parts.join(", ")
}

/// Where a live job is: a state sorted set, list or set of its queue, or its lock.
fn live_state(calls: &Calls, flavor: QueueFlavor, base: &[u8], id: &[u8]) -> Option<String> {
    if calls.exists(&[&key(&[base, id, b":lock"])]) {
        return Some("active, locked by a worker".into());
    }
    for z in state_zsets(flavor) {
        if calls.zscore_present(&key(&[base, z.as_bytes()]), id) == Ok(true) {
            return Some((*z).to_string());
        }
    }
    for l in STATE_LISTS {
        let list = key(&[base, l.as_bytes()]);
        // LPOS walks the list: a backlog of millions would hold the server for this answer.
        if calls.llen(&list).unwrap_or(0) > LIST_SEARCH_MAX {
            return Some(format!(
                "perhaps {l}: that list holds more than {LIST_SEARCH_MAX} ids, not searched"
            ));
        }
        if calls.lpos_present(&list, id) == Ok(true) {
            return Some(l.to_string());
        }
    }
    for s in STATE_SETS {
        if calls.sismember(&key(&[base, s.as_bytes()]), id) == Ok(true) {
            return Some(s.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_their_largest_unit() {
        assert_eq!(roughly(2 * 86_400_000 + 5), "2d");
        assert_eq!(roughly(3_600_000 * 5 + 59_000), "5h");
        assert_eq!(roughly(40_500), "40s");
        assert_eq!(roughly(12), "12ms");
    }
}
