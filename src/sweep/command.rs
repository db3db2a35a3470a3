//! `RETENTION.SWEEP` / `RETENTION.STATUS`: argument parsing and replies.

use std::collections::BTreeMap;

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, RedisString, RedisValue};

use super::pass::{Pass, PassOptions, PassReport};
use crate::args::{shown, Args, OptionSet};
use crate::config::{MAX_SWEEP_BUDGET_US, MIN_SWEEP_BUDGET_US};
use crate::error::{Error, Result};
use crate::keyspace;
use crate::policy::Glob;
use crate::stats::{self, key};
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

fn int(v: u64) -> RedisValue {
    RedisValue::Integer(v.min(i64::MAX as u64) as i64)
}

/// A pass report as a map: the counters, timing, and per-rule counters.
pub fn report_reply(report: &PassReport) -> RedisValue {
    let mut m = stats::tally_reply(&report.tally);
    m.insert(
        key("kind"),
        RedisValue::SimpleString(report.kind.name().into()),
    );
    m.insert(key("dry_run"), RedisValue::Integer(report.dry_run as i64));
    m.insert(key("started_ms"), RedisValue::Integer(report.started_ms));
    m.insert(key("duration_ms"), int(report.duration_ms));
    m.insert(key("slices"), int(report.slices));
    m.insert(key("max_slice_us"), int(report.max_slice_us));
    m.insert(key("budget_us"), int(report.budget_us));
    if let Some(why) = &report.aborted {
        m.insert(key("aborted"), RedisValue::BulkString(why.clone()));
    }
    if let Some(why) = report.finished_early {
        m.insert(key("finished_early"), RedisValue::BulkString(why.into()));
    }
    let per_rule = report.per_rule.iter().cloned().collect();
    m.insert(key("rules"), stats::rules_reply(&per_rule));
    RedisValue::OrderedMap(m)
}

/// `RETENTION.STATUS`
pub fn cmd_status(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    Args::new(args, "RETENTION.STATUS")?.done()?;
    Ok(super::status_reply(ctx))
}

pub fn status_reply(
    running: Option<&Pass>,
    last: Option<&PassReport>,
    next_background_ms: i64,
    dbsize: u64,
) -> RedisValue {
    let mut m: BTreeMap<RedisValueKey, RedisValue> = BTreeMap::new();
    m.insert(
        key("running"),
        RedisValue::Integer(running.is_some() as i64),
    );
    m.insert(
        key("enabled"),
        RedisValue::Integer(crate::config::enabled() as i64),
    );
    m.insert(key("dbsize"), int(dbsize));
    if let Some(pass) = running {
        let report = pass.report();
        let mut p = BTreeMap::new();
        p.insert(
            key("kind"),
            RedisValue::SimpleString(pass.kind.name().into()),
        );
        p.insert(
            key("dry_run"),
            RedisValue::Integer(pass.opts.dry_run as i64),
        );
        p.insert(key("keys_visited"), int(pass.keys_visited()));
        p.insert(key("elapsed_ms"), int(pass.elapsed_ms()));
        p.insert(key("slices"), int(report.slices));
        // Keys are visited about once each, so visited/dbsize is the fraction done.
        let pct = match dbsize {
            0 => 100,
            n => (pass.keys_visited() * 100 / n).min(99),
        };
        p.insert(key("progress_pct"), int(pct));
        m.insert(key("pass"), RedisValue::OrderedMap(p));
    }
    let next_in = (next_background_ms - now_ms()).max(0) as u64;
    m.insert(key("next_background_pass_in_ms"), int(next_in));
    m.insert(
        key("last_pass"),
        last.map(report_reply).unwrap_or(RedisValue::Null),
    );
    RedisValue::OrderedMap(m)
}
