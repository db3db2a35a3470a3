//! `RETENTION.REPORT [GROUPS <n>] [TOP <n>] [MATCH <glob>] [FORMAT map|text]`: where the
//! memory went. Walks every database that has keys, groups the keys by pattern (`group`),
//! and replies with the groups, the server's memory facts and warnings (`render`): a map by
//! default, aligned text for people with `FORMAT text`.
//!
//! The walk blocks only the caller: it advances in slices from the before-sleep hook like a
//! `RETENTION.JOBS CLEAN` (`sweep::blocked`), so other clients are served between slices. It
//! only reads (keys are opened NOTOUCH, memory is `MEMORY USAGE`, which does not touch them
//! either), so it also runs on a read-only replica. A change of the server's role stops it
//! with an error reply (a demoted master's work is stopped with all other work; a replica
//! promoted meanwhile stops it at its next slice). Keys that vanish under it (FLUSHALL,
//! SWAPDB, expiry) are simply not counted.

pub mod group;
pub mod render;

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis_module::{
    CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags, RedisString,
    RedisValue,
};

use crate::acl::{self, KeyAccess};
use crate::args::{Args, OptionSet};
use crate::error::{Error, Result};
use crate::keyspace::{self, OpenKey, OwnedName, ScanCursor};
use crate::policy::{Glob, KeyType, Policy};
use crate::stats;
use crate::sweep::blocked::{self, SlicedCommand};
use group::{Grouper, KeyFacts};
use render::{Report, ServerFacts, WalkFacts};

const COMMAND: &str = "RETENTION.REPORT";
pub const DEFAULT_GROUPS: usize = 20;
pub const MAX_GROUPS_SHOWN: usize = 1000;
pub const DEFAULT_TOP: usize = 3;
/// Biggest keys kept per group, at most: every group keeps them until the walk ends, so this
/// bounds the table (`group::MAX_GROUPS` × this many names of at most `MAX_NAME_BYTES`).
pub const MAX_TOP: usize = 10;
/// The clock is read once per this many scan steps (about one key each).
const STEPS_PER_CLOCK_CHECK: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Map,
    Text,
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub groups: usize,
    pub top: usize,
    pub match_glob: Option<Glob>,
    pub format: Format,
}

pub fn cmd_report(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    let opts = parse_args(Args::new(args, COMMAND)?)?;
    check_sliced_walk(ctx, COMMAND, opts.match_glob.as_ref())?;
    let run = ReportRun::new(ctx, opts);
    Ok(blocked::block(ctx, Box::new(run)))
}

/// What a command that walks the keyspace in slices checks first. Its reply names keys: the
/// caller must be allowed to read every key it may name. It cannot run inside MULTI or a
/// script: it walks between other clients' commands.
pub fn check_sliced_walk(ctx: &Context, command: &str, match_glob: Option<&Glob>) -> Result<()> {
    let prefix = match_glob
        .map(|g| g.literal_prefix().to_vec())
        .unwrap_or_default();
    acl::require_keys_under(ctx, &prefix, KeyAccess::Read)?;
    if ctx
        .get_flags()
        .intersects(ContextFlags::DENY_BLOCKING | ContextFlags::MULTI | ContextFlags::LUA)
    {
        return Err(Error::arg(format!(
            "{command} cannot run inside MULTI or a script: it walks the keyspace in slices between other clients' commands; call it directly"
        )));
    }
    Ok(())
}

/// `FORMAT <name>`'s value: one of `formats` (lower-case names), in any case.
pub fn format_arg<F: Copy>(args: &mut Args, formats: &[(&str, F)]) -> Result<F> {
    let names: Vec<&str> = formats.iter().map(|(n, _)| *n).collect();
    let text = args.next_str(&format!("FORMAT <{}>", names.join("|")))?;
    let lower = text.to_ascii_lowercase();
    formats
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            Error::arg(format!(
                "FORMAT must be {} (got '{}')",
                names.join(" or "),
                crate::args::shown(text.as_bytes())
            ))
        })
}

/// `MATCH <glob>`'s value.
pub fn match_arg(args: &mut Args) -> Result<Glob> {
    let pattern = args.next_bytes("MATCH <glob>")?;
    Glob::new(&pattern).map_err(|e| Error::arg(format!("MATCH: bad glob: {e}")))
}

/// One slice of a walking command, given its deadline, unless the server's role changed
/// since the command started (then the error that stops it; `stopped` says what stopped and
/// where). The slice statistics count it; when it overran, the latency monitor gets a
/// sample named `event`.
pub fn walk_slice<T>(
    ctx: &Context,
    started_as_master: bool,
    stopped: impl FnOnce() -> String,
    (budget_us, event): (u64, &str),
    slice: impl FnOnce(Instant) -> Result<T>,
) -> Result<T> {
    let master = is_master(ctx);
    if master != started_as_master {
        return Err(Error::Server(format!(
            "{}: this server became a {} while it ran; run it again",
            stopped(),
            if master { "master" } else { "replica" }
        )));
    }
    let started = Instant::now();
    let outcome = slice(started + Duration::from_micros(budget_us));
    let elapsed_us = started.elapsed().as_micros() as u64;
    if stats::record_slice(elapsed_us, budget_us) {
        keyspace::latency_sample(event, (elapsed_us / 1000) as i64);
    }
    outcome
}

fn parse_args(mut args: Args) -> Result<ReportOptions> {
    let mut opts = ReportOptions {
        groups: DEFAULT_GROUPS,
        top: DEFAULT_TOP,
        match_glob: None,
        format: Format::Map,
    };
    let mut seen = OptionSet::default();
    while let Some(option) = args.next_option(&mut seen, &["GROUPS", "TOP", "MATCH", "FORMAT"])? {
        match option {
            "GROUPS" => {
                let n = args.next_i64("GROUPS <n>")?;
                if !(1..=MAX_GROUPS_SHOWN as i64).contains(&n) {
                    return Err(Error::arg(format!(
                        "GROUPS must be between 1 and {MAX_GROUPS_SHOWN} (got {n})"
                    )));
                }
                opts.groups = n as usize;
            }
            "TOP" => {
                let n = args.next_i64("TOP <n>")?;
                if !(0..=MAX_TOP as i64).contains(&n) {
                    return Err(Error::arg(format!(
                        "TOP must be between 0 and {MAX_TOP} (got {n})"
                    )));
                }
                opts.top = n as usize;
            }
            "MATCH" => opts.match_glob = Some(match_arg(&mut args)?),
            "FORMAT" => {
                opts.format =
                    format_arg(&mut args, &[("map", Format::Map), ("text", Format::Text)])?
            }
            _ => unreachable!("next_option returns only listed options"),
        }
    }
    Ok(opts)
}

/// The keys one scan step visited (names in one buffer), handled once the step returned:
/// nothing but reading happens inside an `RM_Scan` callback.
#[derive(Default)]
struct Batch {
    names: Vec<u8>,
    keys: Vec<(usize, usize, KeyType, Option<i64>, u64)>,
}

/// One key the walk visited.
#[derive(Debug, Clone, Copy)]
pub struct WalkedKey<'a> {
    pub name: &'a [u8],
    pub db: i32,
    pub key_type: KeyType,
    /// Absolute expire time in Unix ms; None without a TTL.
    pub expire_at_ms: Option<i64>,
    /// `RM_ValueLength`: a string's bytes, a collection's elements.
    pub len: u64,
}

/// What a sliced walk does with each key it visited (called outside the scan callback, with
/// the key's database selected, so it may read other keys).
pub type KeyVisit<'a> = dyn FnMut(&Context, &WalkedKey) + 'a;

/// A read-only walk over every database that has keys, in slices: REPORT and SUGGEST share
/// it. Keys are opened NOTOUCH; keys that vanish under it are simply not visited.
pub struct KeyspaceWalk {
    match_glob: Option<Glob>,
    /// The database being walked; None once every database is done.
    db: Option<i32>,
    more_dbs: VecDeque<i32>,
    walked: Vec<i32>,
    cursor: ScanCursor,
    batch: Batch,
    keys: u64,
    command: &'static str,
}

impl KeyspaceWalk {
    pub fn new(ctx: &Context, match_glob: Option<Glob>, command: &'static str) -> KeyspaceWalk {
        let mut dbs: VecDeque<i32> = keyspace::databases_with_keys(ctx).into();
        let db = dbs.pop_front();
        KeyspaceWalk {
            match_glob,
            walked: db.into_iter().collect(),
            db,
            more_dbs: dbs,
            cursor: ScanCursor::new(),
            batch: Batch::default(),
            keys: 0,
            command,
        }
    }

    /// The databases walked so far, in order.
    pub fn databases(&self) -> &[i32] {
        &self.walked
    }

    /// Keys visited so far.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// The database being walked (0 once done).
    pub fn current_db(&self) -> i32 {
        self.db.unwrap_or(0)
    }

    pub fn match_glob(&self) -> Option<&Glob> {
        self.match_glob.as_ref()
    }

    /// Walks until `deadline`, calling `visit` for each key; true once every database is done.
    pub fn advance(
        &mut self,
        ctx: &Context,
        deadline: Instant,
        visit: &mut KeyVisit,
    ) -> Result<bool> {
        while let Some(db) = self.db {
            keyspace::select_db(ctx, db);
            for _ in 0..STEPS_PER_CLOCK_CHECK {
                let more = self.step(ctx)?;
                self.visit_batch(ctx, db, visit);
                if !more {
                    self.db = self.more_dbs.pop_front();
                    self.walked.extend(self.db);
                    self.cursor = ScanCursor::new();
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Ok(self.db.is_none());
            }
        }
        Ok(true)
    }

    /// One scan step into the batch; Ok(false) when the database is done.
    fn step(&mut self, ctx: &Context) -> Result<bool> {
        let batch = &mut self.batch;
        batch.names.clear();
        batch.keys.clear();
        let only = self.match_glob.as_ref();
        let step = self.cursor.step(ctx, &mut |_, name, key| {
            let bytes = name.bytes();
            if only.is_some_and(|g| !g.matches(bytes)) {
                return;
            }
            let Some(key_type) = key.key_type() else {
                return;
            };
            let start = batch.names.len();
            batch.names.extend_from_slice(bytes);
            batch.keys.push((
                start,
                batch.names.len(),
                key_type,
                key.abs_expire_ms(),
                key.value_length(),
            ));
        });
        let command = self.command;
        step.map_err(|_| {
            ctx.log_warning(&format!(
                "retention: a key visit panicked; {command} was stopped"
            ));
            Error::Server(format!(
                "{command} stopped by an internal error while visiting a key (see the server log)"
            ))
        })
    }

    fn visit_batch(&mut self, ctx: &Context, db: i32, visit: &mut KeyVisit) {
        let batch = std::mem::take(&mut self.batch);
        for &(start, end, key_type, expire_at_ms, len) in &batch.keys {
            let key = WalkedKey {
                name: &batch.names[start..end],
                db,
                key_type,
                expire_at_ms,
                len,
            };
            visit(ctx, &key);
            self.keys += 1;
        }
        self.batch = batch;
    }
}

struct ReportRun {
    opts: ReportOptions,
    policy: Rc<Policy>,
    rule_names: Vec<String>,
    grouper: Grouper,
    walk: KeyspaceWalk,
    slices: u64,
    started: Instant,
    started_as_master: bool,
    read: CallOptions,
}

impl ReportRun {
    fn new(ctx: &Context, opts: ReportOptions) -> ReportRun {
        let policy = crate::state::policy();
        let rule_names = policy.rules.iter().map(|r| r.name.clone()).collect();
        ReportRun {
            grouper: Grouper::new(opts.top),
            walk: KeyspaceWalk::new(ctx, opts.match_glob.clone(), COMMAND),
            opts,
            policy,
            rule_names,
            slices: 0,
            started: Instant::now(),
            started_as_master: is_master(ctx),
            read: read_options(),
        }
    }

    /// Walks until `deadline`; true once every database is done.
    fn walk(&mut self, ctx: &Context, deadline: Instant) -> Result<bool> {
        let (grouper, policy, read) = (&mut self.grouper, &self.policy, &self.read);
        self.walk.advance(ctx, deadline, &mut |ctx, key| {
            let facts = KeyFacts {
                name: key.name,
                db: key.db,
                key_type: key.key_type,
                has_ttl: key.expire_at_ms.is_some(),
                len: key.len,
                rule: policy.rule_for(key.name, key.key_type),
            };
            grouper.add(&facts, &mut |other| key_type_of(ctx, other), &mut || {
                memory_usage(ctx, read, key.name, key.len)
            });
        })
    }

    fn reply(&self, ctx: &Context) -> RedisValue {
        let report = Report {
            server: server_facts(ctx),
            walk: WalkFacts {
                databases: self.walk.databases().to_vec(),
                keys: self.walk.keys(),
                duration_ms: self.started.elapsed().as_millis() as u64,
                slices: self.slices,
                match_glob: self.opts.match_glob.as_ref().map(|g| g.pattern().to_vec()),
            },
            grouper: &self.grouper,
            rule_names: &self.rule_names,
            groups_shown: self.opts.groups,
        };
        match self.opts.format {
            Format::Text => {
                let format = "txt".try_into().unwrap_or_default();
                RedisValue::VerbatimString((format, report.text().into_bytes()))
            }
            Format::Map => json_reply(&report.value()),
        }
    }
}

/// Options for reads through `call_ext`: errors as replies, and never a write.
pub fn read_options() -> CallOptions {
    CallOptionsBuilder::new()
        .errors_as_replies()
        .no_writes()
        .build()
}

/// A JSON value as a native reply: objects become maps (flat field/value pairs under RESP2),
/// booleans 0/1 as the server's own replies give them.
pub fn json_reply(value: &serde_json::Value) -> RedisValue {
    use serde_json::Value;
    match value {
        Value::Null => RedisValue::Null,
        Value::Bool(yes) => stats::flag(*yes),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RedisValue::Integer(i),
            None => match n.as_u64() {
                Some(u) => stats::count(u),
                None => RedisValue::Float(n.as_f64().unwrap_or(0.0)),
            },
        },
        Value::String(text) => RedisValue::BulkString(text.clone()),
        Value::Array(items) => RedisValue::Array(items.iter().map(json_reply).collect()),
        Value::Object(fields) => RedisValue::OrderedMap(
            fields
                .iter()
                .map(|(name, v)| (stats::key(name), json_reply(v)))
                .collect(),
        ),
    }
}

impl SlicedCommand for ReportRun {
    fn slice(&mut self, ctx: &Context, budget_us: u64) -> Option<Result<RedisValue>> {
        let keys = self.walk.keys();
        let stopped = || format!("{COMMAND} stopped after {keys} keys");
        let budget = (budget_us, "retention-report");
        let walked = walk_slice(ctx, self.started_as_master, stopped, budget, |deadline| {
            self.slices += 1;
            self.walk(ctx, deadline)
        });
        match walked {
            Ok(false) => None,
            Ok(true) => Some(Ok(self.reply(ctx))),
            Err(e) => Some(Err(e)),
        }
    }

    fn name(&self) -> &'static str {
        COMMAND
    }

    fn db(&self) -> i32 {
        self.walk.current_db()
    }

    fn started_on_replica(&self) -> bool {
        !self.started_as_master
    }
}

pub fn is_master(ctx: &Context) -> bool {
    ctx.get_flags().contains(ContextFlags::MASTER)
}

/// The type of the key `name` in the selected database (read NOTOUCH), None if none.
pub fn key_type_of(ctx: &Context, name: &[u8]) -> Option<KeyType> {
    let owned = OwnedName::new(name)?;
    let key = OpenKey::readable(ctx, owned.name())?;
    key.view().key_type()
}

/// Collections up to this many elements are measured exactly (`SAMPLES 0`): cheap, and the
/// default 5-element sample misjudges a job hash (a few big fields among small ones) by ±30%
/// and a 500-job sorted set by ±11%.
const EXACT_UP_TO_ELEMENTS: u64 = 1024;

/// Larger collections are sampled this many elements deep: bounded work per key, and within a
/// few percent where the server's default of 5 was not.
const SAMPLES_OF_LARGER: &[u8] = b"128";

/// `MEMORY USAGE <key>`: exact for small collections, sampled for larger ones; None when the
/// key is gone.
pub fn memory_usage(ctx: &Context, read: &CallOptions, name: &[u8], elements: u64) -> Option<u64> {
    let samples: &[u8] = match elements <= EXACT_UP_TO_ELEMENTS {
        true => b"0",
        false => SAMPLES_OF_LARGER,
    };
    let args: [&[u8]; 4] = [b"USAGE", name, b"SAMPLES", samples];
    match ctx.call_ext::<_, CallResult>("MEMORY", read, &args[..]) {
        Ok(CallReply::I64(n)) => u64::try_from(n.to_i64()).ok(),
        _ => None,
    }
}

/// An `INFO` field's text (trimmed), None when the server does not have it.
fn info_text(value: Option<RedisString>) -> Option<String> {
    value.and_then(|v| v.try_as_str().ok().map(|s| s.trim().to_string()))
}

fn info_u64(value: Option<RedisString>) -> u64 {
    info_text(value).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn server_facts(ctx: &Context) -> ServerFacts {
    let memory = ctx.server_info("memory");
    let stats = ctx.server_info("stats");
    ServerFacts {
        used_memory: info_u64(memory.field("used_memory")),
        maxmemory: info_u64(memory.field("maxmemory")),
        evicted_keys: info_u64(stats.field("evicted_keys")),
        maxmemory_policy: info_text(memory.field("maxmemory_policy")).unwrap_or_default(),
    }
}
