//! `RETENTION.JOBS COUNTS <prefix> <queue> [FLAVOR bullmq|bull]`
//! `RETENTION.JOBS CLEAN <prefix> <queue> <completed|failed> [MAXAGE <duration>] [MAXLEN <n>]
//! [MAXMEMORY <size>] [LIMIT <n>] [DRYRUN] [FLAVOR bullmq|bull]`: MAXAGE is the library's
//! `clean(grace)` (older than; 0 = every finished job), MAXLEN keeps the newest n
//! (`removeOnComplete: {count}`), MAXMEMORY keeps the newest whose memory fits the size (a
//! rule's `max_memory`), LIMIT removes at most n in this call (`clean(grace, limit)`; 0: no
//! limit).
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
use crate::args::{shown, subcommand_args, Args, OptionSet};
use crate::cluster::{self, Access};
use crate::error::{Error, Result};
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

/// `RETENTION.JOBS COUNTS <prefix> <queue> [FLAVOR bullmq|bull]`
pub fn cmd_jobs_counts(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    let mut args = subcommand_args(args, "RETENTION.JOBS COUNTS")?;
    let base = queue_base(&mut args)?;
    cluster::require_keys_here(ctx, &base, COMMAND, Access::Read)?;
    let (mut flavor, mut seen) = (None, OptionSet::default());
    while let Some(option) = args.next_option(&mut seen, &["FLAVOR"])? {
        if option == "FLAVOR" {
            flavor = Some(parse_flavor(&args.next_str("FLAVOR <bullmq|bull>")?)?);
        }
    }
    acl::require_keys_under(ctx, &base, KeyAccess::Read)?;
    counts(ctx, &base, flavor)
}

/// `RETENTION.JOBS CLEAN <prefix> <queue> <completed|failed> [MAXAGE <duration>]
/// [MAXLEN <n>] [MAXMEMORY <size>] [LIMIT <n>] [DRYRUN] [FLAVOR bullmq|bull]`
pub fn cmd_jobs_clean(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    let mut args = subcommand_args(args, "RETENTION.JOBS CLEAN")?;
    let base = queue_base(&mut args)?;
    cluster::require_keys_here(ctx, &base, COMMAND, Access::Write)?;
    let req = parse_clean(args)?;
    // Redis 7.0 cannot put a module command in @admin: the module checks it.
    acl::require_admin(ctx, "RETENTION.JOBS CLEAN")?;
    acl::require_keys_under(ctx, &base, KeyAccess::Write)?;
    clean(ctx, base, req)
}

/// `<prefix> <queue>` → the queue's key prefix `<prefix>:<queue>:`.
fn queue_base(args: &mut Args) -> Result<Vec<u8>> {
    let prefix = args.next_bytes("<prefix>")?;
    let queue = args.next_bytes("<queue>")?;
    if prefix.is_empty() || queue.is_empty() {
        return Err(Error::arg("<prefix> and <queue> must not be empty"));
    }
    Ok(key(&[&prefix, b":", &queue, b":"]))
}

fn parse_flavor(text: &str) -> Result<QueueFlavor> {
    match text.to_ascii_lowercase().as_str() {
        "bullmq" => Ok(QueueFlavor::BullMq),
        "bull" => Ok(QueueFlavor::Bull),
        _ => Err(Error::arg(format!(
            "FLAVOR must be bullmq or bull (got '{}')",
            shown(text.as_bytes())
        ))),
    }
}

#[derive(Debug)]
struct CleanRequest {
    set: FinishedSet,
    retention: FinishedRetention,
    limit: Option<u64>,
    dry_run: bool,
    flavor: Option<QueueFlavor>,
}

const CLEAN_OPTIONS: [&str; 6] = ["MAXAGE", "MAXLEN", "MAXMEMORY", "LIMIT", "DRYRUN", "FLAVOR"];

fn parse_clean(mut args: Args) -> Result<CleanRequest> {
    let set_name = args.next_str("<completed|failed>")?;
    let set = FinishedSet::from_name(&set_name.to_ascii_lowercase()).ok_or_else(|| {
        Error::arg(format!(
            "CLEAN cleans 'completed' or 'failed' (got '{}'); waiting, delayed and active jobs are never cleaned",
            shown(set_name.as_bytes())
        ))
    })?;
    let mut req = CleanRequest {
        set,
        retention: FinishedRetention {
            max_age_ms: None,
            max_len: None,
            max_memory_bytes: None,
        },
        limit: None,
        dry_run: false,
        flavor: None,
    };
    let mut seen = OptionSet::default();
    while let Some(option) = args.next_option(&mut seen, &CLEAN_OPTIONS)? {
        match option {
            "MAXAGE" => {
                req.retention.max_age_ms = Some(args.next_duration_ms("MAXAGE", true)?);
            }
            "MAXLEN" => req.retention.max_len = Some(args.next_count("MAXLEN")?),
            "MAXMEMORY" => {
                req.retention.max_memory_bytes = Some(args.next_size_bytes("MAXMEMORY")?);
            }
            // 0 is no limit, as in the library's clean and in XTRIM … LIMIT 0.
            "LIMIT" => req.limit = Some(args.next_count("LIMIT")?).filter(|&n| n > 0),
            "DRYRUN" => req.dry_run = true,
            _ => req.flavor = Some(parse_flavor(&args.next_str("FLAVOR <bullmq|bull>")?)?),
        }
    }
    let r = &req.retention;
    if r.max_age_ms.is_none() && r.max_len.is_none() && r.max_memory_bytes.is_none() {
        return Err(Error::arg(
            "RETENTION.JOBS CLEAN needs MAXAGE <duration>, MAXLEN <n> and/or MAXMEMORY <size> (MAXAGE 0 cleans every finished job)",
        ));
    }
    Ok(req)
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
    // The server holds CLEAN as any write while writes are paused; the module also holds
    // while it must not add replica traffic (a failover): a client that can wait waits (the
    // slices hold too); one in MULTI is refused.
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
    )
    .with_limit(req.limit);
    let env = WorkEnv {
        now_ms: now_ms(),
        dry_run: req.dry_run,
        db: keyspace::selected_db(ctx),
        asker: Asker::Caller,
        rule: None,
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
    clean_map(0, &[], dry_run)
}

/// `jobs_removed` (in a dry run: those that would be), `dry_run`, and in a dry run the ids of
/// those jobs in `job_ids` (the first `DRYRUN_IDS_MAX`; empty otherwise).
fn clean_reply(work: &CleanFinished, dry_run: bool) -> RedisValue {
    clean_map(work.removed, &work.ids, dry_run)
}

fn clean_map(removed: u64, ids: &[Vec<u8>], dry_run: bool) -> RedisValue {
    let ids = ids
        .iter()
        .map(|id| RedisValue::StringBuffer(id.clone()))
        .collect();
    let mut m = BTreeMap::new();
    m.insert(stats::key("jobs_removed"), stats::count(removed));
    m.insert(stats::key("dry_run"), stats::flag(dry_run));
    m.insert(stats::key("job_ids"), RedisValue::Array(ids));
    RedisValue::OrderedMap(m)
}
