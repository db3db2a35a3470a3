//! `RETENTION.SWEEP` / `RETENTION.STATUS`: argument parsing and replies.

use std::collections::BTreeMap;

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, RedisString, RedisValue};

use super::pass::{Pass, PassKind, PassOptions, PassReport};
use crate::args::{shown, Args, OptionSet};
use crate::config::{MAX_SWEEP_BUDGET_US, MIN_SWEEP_BUDGET_US};
use crate::error::{Error, Result};
use crate::keyspace;
use crate::policy::Glob;
use crate::stats::{self, count, flag, key};
use crate::time::now_ms;

/// `RETENTION.SWEEP [DRYRUN] [RULE <name>] [MATCH <glob>] [BUDGET <us>]`
pub fn cmd_sweep(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    let opts = parse_sweep_args(args, keyspace::selected_db(ctx))?;
    crate::acl::require_admin(ctx, "RETENTION.SWEEP")?;
    super::start_command_pass(ctx, opts)
}

fn parse_sweep_args(args: Vec<RedisString>, db: i32) -> Result<PassOptions> {
    let mut args = Args::new(args, "RETENTION.SWEEP")?;
    let mut seen = OptionSet::default();
    let mut opts = PassOptions {
        db,
        dry_run: crate::config::dry_run(),
        ..PassOptions::default()
    };
    let policy = crate::state::policy();
    while let Some(option) =
        args.next_option(&mut seen, &["DRYRUN", "RULE", "MATCH", "BUDGET", "NOOP"])?
    {
        match option {
            "DRYRUN" => opts.dry_run = true,
            "NOOP" => opts.noop = true,
            "RULE" => {
                let name = args.next_str("RULE <name>")?;
                let index = policy.rule_index(&name).ok_or_else(|| {
                    Error::arg(format!(
                        "no rule named '{}' in the policy (see RETENTION.POLICY)",
                        shown(name.as_bytes())
                    ))
                })?;
                opts.only_rule = Some(index);
            }
            "MATCH" => {
                let pattern = args.next_bytes("MATCH <glob>")?;
                opts.only_match = Some(
                    Glob::new(&pattern).map_err(|e| Error::arg(format!("MATCH: bad glob: {e}")))?,
                );
            }
            "BUDGET" => {
                let us = args.next_i64("BUDGET <microseconds>")?;
                if !(MIN_SWEEP_BUDGET_US..=MAX_SWEEP_BUDGET_US).contains(&us) {
                    return Err(Error::arg(format!(
                        "BUDGET must be between {MIN_SWEEP_BUDGET_US} and {MAX_SWEEP_BUDGET_US} microseconds (got {us})"
                    )));
                }
                opts.budget_us = Some(us as u64);
            }
            _ => unreachable!("next_option returns only listed options"),
        }
    }
    Ok(opts)
}

/// A pass report as a map: the counters, timing, how it ended, and per-rule counters.
/// `aborted` and `finished_early` are 0/1; `reason` says why in words ("" when neither).
pub fn report_reply(report: &PassReport) -> RedisValue {
    let mut m = stats::tally_reply(&report.tally);
    m.insert(
        key("kind"),
        RedisValue::SimpleString(report.kind.name().into()),
    );
    m.insert(key("dry_run"), flag(report.dry_run));
    m.insert(key("started_at_ms"), RedisValue::Integer(report.started_ms));
    m.insert(key("duration_ms"), count(report.duration_ms));
    m.insert(key("slices"), count(report.slices));
    m.insert(key("max_slice_us"), count(report.max_slice_us));
    m.insert(key("budget_us"), count(report.budget_us));
    m.insert(key("aborted"), flag(report.aborted.is_some()));
    m.insert(key("finished_early"), flag(report.finished_early.is_some()));
    let reason = report
        .aborted
        .clone()
        .or(report.finished_early.map(String::from))
        .unwrap_or_default();
    m.insert(key("reason"), RedisValue::BulkString(reason));
    let per_rule = report.per_rule.iter().cloned().collect();
    m.insert(key("rules"), stats::rules_reply(&per_rule));
    RedisValue::OrderedMap(m)
}

/// `RETENTION.STATUS`
pub fn cmd_status(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    Args::new(args, "RETENTION.STATUS")?.done()?;
    Ok(super::status_reply(ctx))
}

/// The databases a pass covers, `current` among them. A background pass takes every
/// database that had keys when it started, in ascending order: those already done are the
/// ones below `current` (`with_keys`: the databases that have keys now). A command pass
/// covers the caller's database only.
fn covered_dbs(kind: PassKind, current: i32, more: &[i32], with_keys: &[i32]) -> Vec<i32> {
    let done = match kind {
        PassKind::Background => with_keys
            .iter()
            .copied()
            .filter(|&db| db < current)
            .collect(),
        PassKind::Command => Vec::new(),
    };
    [done, vec![current], more.to_vec()].concat()
}

/// The keys now in the databases `pass` covers: what it visits, about once each.
pub fn keys_in_scope(ctx: &Context, pass: &Pass) -> u64 {
    let more: Vec<i32> = pass.opts.more_dbs.iter().copied().collect();
    let with_keys = match pass.kind {
        PassKind::Background => keyspace::databases_with_keys(ctx),
        PassKind::Command => Vec::new(),
    };
    covered_dbs(pass.kind, pass.opts.db, &more, &with_keys)
        .into_iter()
        .map(|db| keyspace::in_db(ctx, db, || keyspace::db_size(ctx)))
        .sum()
}

/// How far a running pass is, from the keys it visited and those in its scope. At most 99:
/// the pass is not done until its last slice, and keys deleted behind it (or visited twice
/// by a scan over a resizing table) can make `visited` pass the keys left.
fn progress_pct(visited: u64, in_scope: u64) -> u64 {
    match in_scope {
        0 => 100,
        n => (visited.saturating_mul(100) / n).min(99),
    }
}

/// `keys_in_scope`: the keys of every database the running pass covers (0 when none runs);
/// `dbsize`: those of the caller's database. `pass` (the running pass) and `last_pass` are
/// null when there is none.
pub fn status_reply(
    running: Option<&Pass>,
    last: Option<&PassReport>,
    next_background_ms: i64,
    dbsize: u64,
    keys_in_scope: u64,
) -> RedisValue {
    let mut m: BTreeMap<RedisValueKey, RedisValue> = BTreeMap::new();
    m.insert(
        key("version"),
        RedisValue::SimpleStringStatic(crate::commands::VERSION),
    );
    m.insert(key("running"), flag(running.is_some()));
    m.insert(key("enabled"), flag(crate::config::enabled()));
    m.insert(key("dbsize"), count(dbsize));
    m.insert(
        key("pass"),
        running.map_or(RedisValue::Null, |pass| running_reply(pass, keys_in_scope)),
    );
    // Never in the past: a pass that is due starts at the next cron tick.
    let next_at = next_background_ms.max(now_ms());
    m.insert(key("next_pass_at_ms"), RedisValue::Integer(next_at));
    m.insert(
        key("last_pass"),
        last.map(report_reply).unwrap_or(RedisValue::Null),
    );
    RedisValue::OrderedMap(m)
}

/// The running pass: the fields of a pass report it already has, and how far it is.
fn running_reply(pass: &Pass, keys_in_scope: u64) -> RedisValue {
    let report = pass.report();
    let mut p = BTreeMap::new();
    p.insert(
        key("kind"),
        RedisValue::SimpleString(pass.kind.name().into()),
    );
    p.insert(key("dry_run"), flag(pass.opts.dry_run));
    p.insert(key("started_at_ms"), RedisValue::Integer(report.started_ms));
    p.insert(key("keys_scanned"), count(pass.keys_visited()));
    p.insert(key("duration_ms"), count(pass.elapsed_ms()));
    p.insert(key("slices"), count(report.slices));
    p.insert(key("keys_in_scope"), count(keys_in_scope));
    let pct = progress_pct(pass.keys_visited(), keys_in_scope);
    p.insert(key("progress_pct"), count(pct));
    RedisValue::OrderedMap(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_pass_covers_the_databases_done_and_those_to_come() {
        let with_keys = [0, 3, 5, 9];
        let covered = covered_dbs(PassKind::Background, 5, &[9], &with_keys);
        assert_eq!(covered, [0, 3, 5, 9]);
        // The first database: none done yet.
        assert_eq!(
            covered_dbs(PassKind::Background, 0, &[3, 5, 9], &with_keys),
            [0, 3, 5, 9]
        );
        // The current database emptied meanwhile: still the one being swept.
        assert_eq!(
            covered_dbs(PassKind::Background, 4, &[9], &with_keys),
            [0, 3, 4, 9]
        );
    }

    #[test]
    fn a_command_pass_covers_the_callers_database_only() {
        assert_eq!(covered_dbs(PassKind::Command, 5, &[], &[0, 5, 9]), [5]);
    }

    #[test]
    fn progress_is_visited_over_keys_in_scope_below_100() {
        assert_eq!(progress_pct(0, 100_005), 0);
        assert_eq!(progress_pct(5, 100_005), 0);
        assert_eq!(progress_pct(50_003, 100_005), 50);
        // Keys deleted behind the pass, or visited twice: not past 99 while it runs.
        assert_eq!(progress_pct(100_005, 100_005), 99);
        assert_eq!(progress_pct(200_000, 100_005), 99);
        assert_eq!(progress_pct(u64::MAX, 3), 99);
        assert_eq!(progress_pct(7, 0), 100);
    }
}
