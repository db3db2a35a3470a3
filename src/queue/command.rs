//! `RETENTION.JOBS <prefix> <queue> COUNTS [FLAVOR bullmq|bull]`
//! `RETENTION.JOBS <prefix> <queue> CLEAN <completed|failed> <max_age> [<max_count>] [DRYRUN] [FLAVOR bullmq|bull]`
//!
//! CLEAN runs a first slice inside the command; a set too big for one slice continues in
//! slices from the event loop while the caller is blocked (other clients are served between
//! slices), like `RETENTION.SWEEP` (see `sweep::blocked`). Inside MULTI or a script a client cannot block, so there
//! CLEAN runs in one go but refuses sets larger than `INLINE_MAX_JOBS`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, ContextFlags, RedisString, RedisValue};

use super::calls::{key, Calls};
use super::detect::{detect_flavor, flavor_evidence, queue_exists, Evidence};
use super::finished::{CleanFinished, EventMode, FlavorCheck};
use super::layout::FinishedSet;
use crate::acl::{self, KeyAccess};
use crate::args::{parse_i64, shown, Args, OptionSet};
use crate::cluster::{self, Access};
use crate::error::{Error, Result};
use crate::policy::duration::parse_duration_ms;
use crate::policy::{FinishedRetention, QueueFlavor};
use crate::stats::{self, Tally};
use crate::sweep::blocked::{self, SlicedCommand};
use crate::sweep::work::{Progress, Work, WorkEnv};
use crate::time::now_ms;
use crate::write::{Asker, Writer};
use crate::{config, keyspace};

const COMMAND: &str = "RETENTION.JOBS";
/// Largest set CLEAN handles inside MULTI or a script, where it cannot yield.
const INLINE_MAX_JOBS: u64 = 10_000;

pub fn cmd_jobs(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    if args.len() < 4 {
        return Err(Error::WrongArity);
    }
    let mut args = Args::new(args, COMMAND)?;
    let prefix = args.next_bytes("<prefix>")?;
    let queue = args.next_bytes("<queue>")?;
    if prefix.is_empty() || queue.is_empty() {
        return Err(Error::arg("<prefix> and <queue> must not be empty"));
    }
    let base = key(&[&prefix, b":", &queue, b":"]);
    let sub = args.next_str("COUNTS or CLEAN")?;
    match sub.to_ascii_uppercase().as_str() {
        "COUNTS" => {
            cluster::require_keys_here(ctx, &base, COMMAND, Access::Read)?;
            let flavor = parse_flavor_only(args)?;
            acl::require_keys_under(ctx, &base, KeyAccess::Read)?;
            counts(ctx, &base, flavor)
        }
        "CLEAN" => {
            cluster::require_keys_here(ctx, &base, COMMAND, Access::Write)?;
            let req = parse_clean(args)?;
            acl::require_admin(ctx, "RETENTION.JOBS CLEAN")?;
            acl::require_keys_under(ctx, &base, KeyAccess::Write)?;
            clean(ctx, base, req)
        }
        other => Err(Error::arg(format!(
            "unknown subcommand '{}' for {COMMAND} (expected COUNTS or CLEAN)",
            shown(other.as_bytes())
        ))),
    }
}

fn parse_flavor(text: &str) -> Result<QueueFlavor> {
    match text.to_ascii_lowercase().as_str() {
        "bullmq" => Ok(QueueFlavor::BullMq),
        "bull" => Ok(QueueFlavor::Bull),
        _ => Err(Error::arg(format!(
            "FLAVOR must be bullmq or bull (got '{text}')"
        ))),
    }
}

fn parse_flavor_only(mut args: Args) -> Result<Option<QueueFlavor>> {
    let mut seen = OptionSet::default();
    let mut flavor = None;
    while let Some(option) = args.next_option(&mut seen, &["FLAVOR"])? {
        if option == "FLAVOR" {
            flavor = Some(parse_flavor(&args.next_str("FLAVOR <bullmq|bull>")?)?);
        }
    }
    Ok(flavor)
}

#[derive(Debug)]
struct CleanRequest {
    set: FinishedSet,
    retention: FinishedRetention,
    dry_run: bool,
    flavor: Option<QueueFlavor>,
}

fn parse_clean(mut args: Args) -> Result<CleanRequest> {
    let set_name = args.next_str("<completed|failed>")?;
    let set = FinishedSet::from_name(&set_name).ok_or_else(|| {
        Error::arg(format!(
            "CLEAN cleans 'completed' or 'failed' (got '{set_name}'); waiting, delayed and active jobs are never cleaned"
        ))
    })?;
    let age_text = args.next_str("<max_age>")?;
    let max_age_ms = parse_max_age_ms(&age_text)?;
    let mut req = CleanRequest {
        set,
        retention: FinishedRetention {
            max_age_ms: Some(max_age_ms),
            max_len: None,
        },
        dry_run: false,
        flavor: None,
    };
    let rest: Vec<String> = (0..args.remaining())
        .map(|_| args.next_raw("").map(|a| a.to_string_lossy()))
        .collect::<Result<_>>()?;
    let mut words = rest.iter().peekable();
    // An optional <max_count> may follow <max_age> directly.
    if let Some(text) = words.next_if(|w| w.starts_with(|c: char| c.is_ascii_digit() || c == '-')) {
        match parse_i64(text) {
            Some(n) if n >= 0 => req.retention.max_len = Some(n as u64),
            _ => {
                return Err(Error::arg(format!(
                    "<max_count>: '{text}' is not a whole number >= 0"
                )))
            }
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    while let Some(word) = words.next() {
        let option = word.to_ascii_uppercase();
        if seen.contains(&option.as_str()) {
            return Err(Error::arg(format!("option {option} given twice")));
        }
        match option.as_str() {
            "DRYRUN" => {
                req.dry_run = true;
                seen.push("DRYRUN");
            }
            "FLAVOR" => {
                let value = words
                    .next()
                    .ok_or_else(|| Error::arg("FLAVOR needs bullmq or bull"))?;
                req.flavor = Some(parse_flavor(value)?);
                seen.push("FLAVOR");
            }
            _ => {
                return Err(Error::arg(format!(
                    "unknown option '{}' for {COMMAND} CLEAN (expected [<max_count>] [DRYRUN] [FLAVOR bullmq|bull])",
                    shown(word.as_bytes())
                )))
            }
        }
    }
    Ok(req)
}

/// A duration as in the policy (`90s`, `24h`, `7d`, bare seconds), or zero: like the
/// library's `clean(0)`, `0` cleans every job finished up to now.
fn parse_max_age_ms(text: &str) -> Result<i64> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let parsed = match !number.is_empty() && number.bytes().all(|b| b == b'0') {
        // Zero in any unit; the unit is checked like any other duration's.
        true => parse_duration_ms(&format!("1{unit}")).map(|_| 0),
        false => parse_duration_ms(text),
    };
    parsed.map_err(|e| Error::arg(format!("<max_age>: {e}")))
}

/// The queue's flavor: as given (checked against the evidence), else detected.
fn resolve_flavor(calls: &Calls, base: &[u8], given: Option<QueueFlavor>) -> Result<QueueFlavor> {
    let base_shown = shown(base);
    match given {
        Some(QueueFlavor::Bull) if flavor_evidence(calls, base) == Evidence::BullMq => {
            Err(Error::arg(format!(
                "FLAVOR bull given, but {base_shown}meta/events say this is a BullMQ queue"
            )))
        }
        Some(flavor) => Ok(flavor),
        None => detect_flavor(calls, base).ok_or_else(|| {
            Error::arg(format!(
                "no queue at {base_shown}* (no id, meta or state keys); give FLAVOR bullmq|bull to use it anyway"
            ))
        }),
    }
}

/// The library's `getJobCounts()` names for each flavor, and the key each one counts.
fn count_states(flavor: QueueFlavor) -> &'static [(&'static str, &'static str)] {
    match flavor {
        QueueFlavor::BullMq => &[
            ("active", "active"),
            ("completed", "completed"),
            ("delayed", "delayed"),
            ("failed", "failed"),
            ("paused", "paused"),
            ("prioritized", "prioritized"),
            ("waiting", "wait"),
            ("waiting-children", "waiting-children"),
        ],
        QueueFlavor::Bull => &[
            ("active", "active"),
            ("completed", "completed"),
            ("delayed", "delayed"),
            ("failed", "failed"),
            ("paused", "paused"),
            ("waiting", "wait"),
        ],
    }
}

fn counts(ctx: &Context, base: &[u8], given: Option<QueueFlavor>) -> Result<RedisValue> {
    let calls = Calls::new(ctx);
    let flavor = resolve_flavor(&calls, base, given)?;
    let mut map = BTreeMap::new();
    for (state, suffix) in count_states(flavor) {
        let name = key(&[base, suffix.as_bytes()]);
        let n = match calls.key_type(&name).as_deref() {
            Some("none") => 0,
            Some("list") => list_count(&calls, flavor, &name)?,
            Some("zset") => calls.zcard(&name).map_err(|_| Error::WrongType)? as i64,
            _ => {
                return Err(Error::arg(format!(
                    "{} is not a {}",
                    String::from_utf8_lossy(&name),
                    if *suffix == "wait" || *suffix == "paused" || *suffix == "active" {
                        "list"
                    } else {
                        "sorted set"
                    }
                )))
            }
        };
        map.insert(
            RedisValueKey::String(state.to_string()),
            RedisValue::Integer(n),
        );
    }
    Ok(RedisValue::OrderedMap(map))
}

/// LLEN, minus BullMQ's deprecated "0:" marker at the tail as its getCounts does.
fn list_count(calls: &Calls, flavor: QueueFlavor, list: &[u8]) -> Result<i64> {
    let len = calls.llen(list).map_err(|_| Error::WrongType)?;
    let may_hold_marker = list.ends_with(b"wait") || list.ends_with(b"paused");
    if flavor == QueueFlavor::BullMq && may_hold_marker {
        if let Some(last) = calls.lindex(list, -1) {
            if last.starts_with(b"0:") {
                return Ok((len - 1).max(0));
            }
        }
    }
    Ok(len)
}

/// A CLEAN that continues in slices between other clients' commands.
struct CleanRun {
    work: CleanFinished,
    env: WorkEnv,
}

impl SlicedCommand for CleanRun {
    fn slice(&mut self, ctx: &Context, budget_us: u64) -> Option<Result<RedisValue>> {
        let budget = Duration::from_micros(budget_us);
        match run_slice(ctx, &mut self.work, &self.env, budget) {
            Progress::More => None,
            Progress::Done => Some(Ok(clean_reply(&self.work, self.env.dry_run))),
        }
    }

    fn name(&self) -> &'static str {
        "RETENTION.JOBS CLEAN"
    }

    fn db(&self) -> i32 {
        self.env.db
    }
}

fn clean(ctx: &Context, base: Vec<u8>, req: CleanRequest) -> Result<RedisValue> {
    let calls = Calls::new(ctx);
    let flavor = match (req.flavor, queue_exists(&calls, &base)) {
        (None, false) => return Ok(empty_clean_reply(req.dry_run)),
        _ => resolve_flavor(&calls, &base, req.flavor)?,
    };
    let set_key = key(&[&base, req.set.name().as_bytes()]);
    let card = calls.zcard(&set_key).map_err(|_| Error::WrongType)?;
    let cannot_block = ctx
        .get_flags()
        .intersects(ContextFlags::DENY_BLOCKING | ContextFlags::MULTI | ContextFlags::LUA);
    // JOBS is registered readonly (COUNTS is served on replicas and during pauses), so the
    // server does not hold CLEAN as it holds write commands: the module does. While writes
    // are held, a client that can wait waits (the slices hold too); one in MULTI is refused.
    let held = match Writer::new(ctx, Asker::Caller, "RETENTION.JOBS CLEAN") {
        Err(Error::WritesPaused(_)) if !cannot_block => true,
        Err(refused) => return Err(refused),
        Ok(_) => false,
    };
    if cannot_block && card > INLINE_MAX_JOBS {
        return Err(Error::arg(format!(
            "{} holds {card} jobs: too many to clean inside MULTI or a script (limit {INLINE_MAX_JOBS}); call RETENTION.JOBS directly, it runs in slices",
            String::from_utf8_lossy(&set_key)
        )));
    }
    let mut work = CleanFinished::new(
        flavor,
        base,
        req.set,
        req.retention,
        FlavorCheck::Trust,
        EventMode::Always,
    );
    let env = WorkEnv {
        now_ms: now_ms(),
        dry_run: req.dry_run,
        db: keyspace::selected_db(ctx),
        asker: Asker::Caller,
    };
    let budget = match cannot_block {
        true => Duration::from_secs(3600),
        false => Duration::from_micros(config::sweep_budget_us()),
    };
    if !held && run_slice(ctx, &mut work, &env, budget) == Progress::Done {
        return Ok(clean_reply(&work, req.dry_run));
    }
    Ok(blocked::block(ctx, Box::new(CleanRun { work, env })))
}

fn run_slice(ctx: &Context, work: &mut CleanFinished, env: &WorkEnv, budget: Duration) -> Progress {
    let mut tally = Tally::default();
    let progress = work.step(ctx, env, Instant::now() + budget, &mut tally);
    stats::with_stats(|s| s.total.add(&tally));
    progress
}

fn empty_clean_reply(dry_run: bool) -> RedisValue {
    match dry_run {
        true => RedisValue::Array(vec![RedisValue::Integer(0), RedisValue::Array(vec![])]),
        false => RedisValue::Integer(0),
    }
}

/// The number of removed jobs; in a dry run `[count, [ids...]]` (ids capped).
fn clean_reply(work: &CleanFinished, dry_run: bool) -> RedisValue {
    let count = RedisValue::Integer(work.removed.min(i64::MAX as u64) as i64);
    match dry_run {
        false => count,
        true => RedisValue::Array(vec![
            count,
            RedisValue::Array(
                work.ids
                    .iter()
                    .map(|id| RedisValue::StringBuffer(id.clone()))
                    .collect(),
            ),
        ]),
    }
}
