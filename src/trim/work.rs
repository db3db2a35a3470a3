//! Runs a trim against the server in bounded calls, resumable across slices.
//!
//! Every change goes through the write gateway as a deterministic command: `LTRIM` with explicit
//! non-negative indexes, `ZREMRANGEBYRANK` from rank 0, `XTRIM` with an explicit id or count
//! (the server itself rewrites `~` trims to their exact outcome before propagating them).
//! Each call removes a bounded number of entries, and the deadline is checked between calls.

use std::time::Instant;

use redis_module::{CallOptionsBuilder, CallReply, CallResult, Context};

use super::memory;
use super::plan::{
    entries_to_remove, exclusive_score_bound, list_trim_range, stream_cutoff_ms,
    stream_step_repeats, stream_steps, xtrim_args, zset_cutoff_score, zset_step_stop_rank, Chunk,
    StreamStep,
};
use crate::history;
use crate::policy::{KeyType, ListEnd, TrimAction};
use crate::stats::Tally;
use crate::sweep::work::{Progress, Work, WorkEnv};
use crate::write::Writer;

/// The collection types a trim applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Stream,
    List,
    ZSet,
}

impl Shape {
    pub fn of(key_type: KeyType) -> Option<Shape> {
        match key_type {
            KeyType::Stream => Some(Shape::Stream),
            KeyType::List => Some(Shape::List),
            KeyType::ZSet => Some(Shape::ZSet),
            _ => None,
        }
    }
}

/// Why a trim stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The key changed type since it was planned.
    WrongType,
    /// The server refused a call; the text is its error.
    Server(String),
}

/// Progress of a dry-run count of stream entries older than the cutoff (XRANGE pages).
#[derive(Debug, Default)]
struct OlderCount {
    counted: u64,
    /// Id of the last entry counted: the next page starts after it.
    after: Option<Vec<u8>>,
    finished: bool,
}

/// The walk that turns a `max_memory` budget into a count of newest entries to keep: pages
/// of entries from the newest, each entry's memory added until the next would not fit.
#[derive(Debug)]
struct MemoryWalk {
    budget_bytes: u64,
    kept_bytes: u64,
    kept_entries: u64,
    /// Streams: the id of the last entry walked (the next page starts below it).
    before_id: Option<Vec<u8>>,
    done: bool,
}

/// Trimming one key: created by `trim::plan` (sweep) or `RETENTION.TRIM`.
pub struct TrimWork {
    name: Vec<u8>,
    shape: Shape,
    trim: TrimAction,
    /// Pinned at the first step, so a trim spanning slices uses one cutoff throughout.
    now_ms: Option<i64>,
    chunk: Chunk,
    removed: u64,
    stream_steps: Vec<StreamStep>,
    stream_at: usize,
    older: OlderCount,
    memory: Option<MemoryWalk>,
    failure: Option<Failure>,
}

impl TrimWork {
    pub fn new(name: Vec<u8>, shape: Shape, trim: TrimAction) -> TrimWork {
        TrimWork {
            name,
            shape,
            trim,
            now_ms: None,
            chunk: Chunk::new(),
            removed: 0,
            stream_steps: Vec::new(),
            stream_at: 0,
            older: OlderCount::default(),
            memory: trim.max_memory_bytes.map(|budget_bytes| MemoryWalk {
                budget_bytes,
                kept_bytes: 0,
                kept_entries: 0,
                before_id: None,
                done: false,
            }),
            failure: None,
        }
    }

    /// Entries removed so far (in a dry run: that would be removed).
    pub fn removed(&self) -> u64 {
        self.removed
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// One bounded server call (plus cheap reads). Ok(true) while there is more to do. A
    /// dry run has no writer: it only reads.
    fn call_once(
        &mut self,
        ctx: &Context,
        writer: Option<&Writer>,
        now_ms: i64,
    ) -> Result<bool, Failure> {
        match (self.shape, writer) {
            (Shape::List, _) => self.list_once(ctx, writer),
            (Shape::ZSet, _) => self.zset_once(ctx, writer, now_ms),
            (Shape::Stream, Some(writer)) => self.stream_once(writer),
            (Shape::Stream, None) => self.stream_count_once(ctx, now_ms),
        }
    }

    /// One page of the memory walk: Ok(true) while there is more to walk.
    fn walk_memory_once(&mut self, ctx: &Context) -> Result<bool, Failure> {
        let Some(walk) = self.memory.as_mut().filter(|w| !w.done) else {
            return Ok(false);
        };
        let page = self.chunk.size().min(MEMORY_PAGE_MAX);
        // Entries beyond max_len go anyway: no need to measure them.
        let wanted = self
            .trim
            .max_len
            .map_or(page, |n| n.saturating_sub(walk.kept_entries).min(page));
        if wanted == 0 {
            walk.done = true;
            return Ok(false);
        }
        let started = Instant::now();
        let acc = accounting(ctx);
        let costs = page_costs(
            ctx,
            &self.name,
            self.shape,
            self.trim.newest,
            walk,
            wanted,
            &acc,
        )?;
        self.chunk
            .observe(costs.len() as u64, started.elapsed().as_micros() as u64);
        for (cost, id) in &costs {
            let total = walk.kept_bytes.saturating_add(*cost);
            if total > walk.budget_bytes {
                walk.done = true;
                return Ok(false);
            }
            walk.kept_bytes = total;
            walk.kept_entries += 1;
            if id.is_some() {
                walk.before_id.clone_from(id);
            }
        }
        walk.done = (costs.len() as u64) < wanted;
        Ok(!walk.done)
    }

    /// The walk is done: the budget becomes the number of newest entries to keep.
    fn apply_memory_walk(&mut self, ctx: &Context, env: &WorkEnv, now_ms: i64) {
        let Some(walk) = &self.memory else {
            return;
        };
        let keep = self
            .trim
            .max_len
            .map_or(walk.kept_entries, |n| n.min(walk.kept_entries));
        self.trim.max_len = Some(keep);
        self.stream_steps = stream_steps(&self.trim, now_ms);
        // A dry run (or a candidate policy's) removes nothing: EXPLAIN keeps what is real.
        if env.dry_run {
            return;
        }
        let measured = history::Measured {
            at_ms: now_ms,
            rule: history::rule_name(env.rule),
            kept_memory_bytes: walk.kept_bytes,
            max_memory_bytes: walk.budget_bytes,
            kept_within_budget: walk.kept_entries,
        };
        history::record_measured(crate::keyspace::selected_db(ctx), &self.name, measured);
    }

    fn list_once(&mut self, ctx: &Context, writer: Option<&Writer>) -> Result<bool, Failure> {
        let len = read_count(ctx, "LLEN", &[&self.name])?;
        let remove = entries_to_remove(len, self.trim.max_len, 0);
        let Some(writer) = writer.filter(|_| remove > 0) else {
            self.removed += remove;
            return Ok(false);
        };
        let now_removing = remove.min(self.chunk.size());
        let (start, stop) = list_trim_range(len, now_removing, self.trim.newest);
        let (start, stop) = (start.to_string(), stop.to_string());
        let started = Instant::now();
        write(
            writer,
            "LTRIM",
            &[&self.name, start.as_bytes(), stop.as_bytes()],
        )?;
        self.chunk
            .observe(now_removing, started.elapsed().as_micros() as u64);
        self.removed += now_removing;
        Ok(now_removing < remove)
    }

    fn zset_once(
        &mut self,
        ctx: &Context,
        writer: Option<&Writer>,
        now_ms: i64,
    ) -> Result<bool, Failure> {
        let len = read_count(ctx, "ZCARD", &[&self.name])?;
        let older = match self.trim.max_age_ms {
            Some(age) => {
                let cutoff = zset_cutoff_score(now_ms, age, self.trim.score_unit);
                let below = exclusive_score_bound(cutoff);
                read_count(ctx, "ZCOUNT", &[&self.name, b"-inf", below.as_bytes()])?
            }
            None => 0,
        };
        let remove = entries_to_remove(len, self.trim.max_len, older);
        let Some(writer) = writer else {
            self.removed += remove;
            return Ok(false);
        };
        let Some(stop) = zset_step_stop_rank(remove, self.chunk.size()) else {
            return Ok(false);
        };
        let stop = stop.to_string();
        let started = Instant::now();
        let n = count_of(
            "ZREMRANGEBYRANK",
            write(
                writer,
                "ZREMRANGEBYRANK",
                &[&self.name, b"0", stop.as_bytes()],
            )?,
        )?;
        self.chunk.observe(n, started.elapsed().as_micros() as u64);
        self.removed += n;
        Ok(n > 0 && n < remove)
    }

    fn stream_once(&mut self, writer: &Writer) -> Result<bool, Failure> {
        let Some(step) = self.stream_steps.get(self.stream_at).copied() else {
            return Ok(false);
        };
        let [a, b, c] = xtrim_args(step);
        let args: [&[u8]; 4] = [&self.name, a.as_bytes(), b.as_bytes(), c.as_bytes()];
        let n = count_of("XTRIM", write(writer, "XTRIM", &args)?)?;
        self.removed += n;
        if !stream_step_repeats(step, n) {
            self.stream_at += 1;
        }
        Ok(self.stream_at < self.stream_steps.len())
    }

    /// Dry run: counts the entries older than the cutoff one XRANGE page per call, then
    /// reports what an exact trim would remove (an approximate one removes at most that).
    fn stream_count_once(&mut self, ctx: &Context, now_ms: i64) -> Result<bool, Failure> {
        let cutoff_ms = match self.trim.max_age_ms {
            Some(age) if !self.older.finished => stream_cutoff_ms(now_ms, age),
            _ => 0,
        };
        if cutoff_ms > 0 {
            self.count_older_page(ctx, cutoff_ms)?;
            if !self.older.finished {
                return Ok(true);
            }
        }
        let len = read_count(ctx, "XLEN", &[&self.name])?;
        self.removed = entries_to_remove(len, self.trim.max_len, self.older.counted);
        Ok(false)
    }

    fn count_older_page(&mut self, ctx: &Context, cutoff_ms: u64) -> Result<(), Failure> {
        let start = match &self.older.after {
            Some(id) => [b"(".as_slice(), id].concat(),
            None => b"-".to_vec(),
        };
        let end = format!("({cutoff_ms}-0");
        let page = self.chunk.size();
        let count = page.to_string();
        let started = Instant::now();
        let reply = read(
            ctx,
            "XRANGE",
            &[
                &self.name,
                &start,
                end.as_bytes(),
                b"COUNT",
                count.as_bytes(),
            ],
        )?;
        let CallReply::Array(entries) = &reply else {
            return Err(Failure::Server("XRANGE: unexpected reply".into()));
        };
        let got = entries.len() as u64;
        self.older.counted += got;
        self.older.after = entries
            .len()
            .checked_sub(1)
            .and_then(|last| entries.get(last))
            .and_then(entry_id);
        self.older.finished = got < page || self.older.after.is_none();
        self.chunk
            .observe(got, started.elapsed().as_micros() as u64);
        Ok(())
    }
}

impl Work for TrimWork {
    fn step(
        &mut self,
        ctx: &Context,
        env: &WorkEnv,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Progress {
        let now_ms = match self.now_ms {
            Some(t) => t,
            None => {
                self.now_ms = Some(env.now_ms);
                self.stream_steps = stream_steps(&self.trim, env.now_ms);
                env.now_ms
            }
        };
        if self.memory.as_ref().is_some_and(|w| !w.done) {
            loop {
                match self.walk_memory_once(ctx) {
                    Ok(true) if Instant::now() < deadline => {}
                    Ok(true) => return Progress::More,
                    Ok(false) => break,
                    Err(failure) => {
                        self.note_failure(ctx, failure, tally);
                        return Progress::Done;
                    }
                }
            }
            self.apply_memory_walk(ctx, env, now_ms);
        }
        let before = self.removed;
        let writer = match env.dry_run {
            true => None,
            false => match Writer::new(ctx, env.asker, "a trim") {
                Ok(writer) => Some(writer),
                Err(refused) => {
                    self.note_failure(ctx, Failure::Server(refused.to_string()), tally);
                    return Progress::Done;
                }
            },
        };
        // At least one call per step, so a late start still makes progress.
        let progress = loop {
            match self.call_once(ctx, writer.as_ref(), now_ms) {
                Ok(true) if Instant::now() < deadline => {}
                Ok(true) => break Progress::More,
                Ok(false) => break Progress::Done,
                Err(failure) => {
                    self.note_failure(ctx, failure, tally);
                    break Progress::Done;
                }
            }
        };
        tally.entries_trimmed += self.removed - before;
        progress
    }

    fn key(&self) -> Option<&[u8]> {
        Some(&self.name)
    }
}

impl TrimWork {
    fn note_failure(&mut self, ctx: &Context, failure: Failure, tally: &mut Tally) {
        match &failure {
            Failure::WrongType => tally.skipped_wrong_type += 1,
            Failure::Server(msg) => {
                tally.errors += 1;
                ctx.log_warning(&format!(
                    "retention: trimming key '{}' failed: {msg}",
                    String::from_utf8_lossy(&self.name)
                ));
            }
        }
        self.failure = Some(failure);
    }
}

thread_local! {
    static ACCOUNTING: std::cell::Cell<Option<memory::Accounting>> = const { std::cell::Cell::new(None) };
}

/// How this server counts memory, read once (neither its allocator nor its kind changes).
fn accounting(ctx: &Context) -> memory::Accounting {
    if let Some(acc) = ACCOUNTING.with(|a| a.get()) {
        return acc;
    }
    let info = |section: &str| match read(ctx, "INFO", &[section.as_bytes()]) {
        Ok(CallReply::String(s)) => s.to_string().unwrap_or_default(),
        Ok(CallReply::VerbatimString(v)) => format!("{v:?}"),
        _ => String::new(),
    };
    let acc = memory::Accounting::from_info(&(info("server") + &info("memory")));
    ACCOUNTING.with(|a| a.set(Some(acc)));
    acc
}

/// Entries read per memory-walk page at most (a page of big entries is copied whole).
const MEMORY_PAGE_MAX: u64 = 1024;

/// One entry's memory, and for a stream entry its id.
type EntryCost = (u64, Option<Vec<u8>>);

/// The memory of up to `count` entries just older than those walked, newest first, with each
/// stream entry's id.
fn page_costs(
    ctx: &Context,
    name: &[u8],
    shape: Shape,
    newest: ListEnd,
    walk: &MemoryWalk,
    count: u64,
    acc: &memory::Accounting,
) -> Result<Vec<EntryCost>, Failure> {
    let from = walk.kept_entries;
    let last = from + count - 1;
    let strings = |reply: &CallReply<'static>| -> Vec<Vec<u8>> {
        match reply {
            CallReply::Array(items) => items
                .iter()
                .map(|item| match item {
                    Ok(CallReply::String(s)) => s.as_bytes().to_vec(),
                    _ => Vec::new(),
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    match shape {
        Shape::Stream => {
            let end = match &walk.before_id {
                Some(id) => [b"(".as_slice(), id].concat(),
                None => b"+".to_vec(),
            };
            let n = count.to_string();
            let reply = read(
                ctx,
                "XREVRANGE",
                &[name, &end, b"-", b"COUNT", n.as_bytes()],
            )?;
            let CallReply::Array(entries) = &reply else {
                return Err(Failure::Server("XREVRANGE: unexpected reply".into()));
            };
            Ok(entries
                .iter()
                .map(|entry| {
                    let id = entry_id_ref(&entry);
                    let fields = entry_fields(&entry);
                    let pairs: Vec<(&[u8], &[u8])> = fields
                        .chunks_exact(2)
                        .map(|p| (p[0].as_slice(), p[1].as_slice()))
                        .collect();
                    (memory::stream_entry(&pairs, acc), id)
                })
                .collect())
        }
        Shape::List => {
            let (start, stop) = match newest {
                ListEnd::Head => (from as i64, last as i64),
                ListEnd::Tail => (-(last as i64) - 1, -(from as i64) - 1),
            };
            let (start, stop) = (start.to_string(), stop.to_string());
            let reply = read(ctx, "LRANGE", &[name, start.as_bytes(), stop.as_bytes()])?;
            let mut elements = strings(&reply);
            if newest == ListEnd::Tail {
                elements.reverse();
            }
            Ok(elements
                .iter()
                .map(|e| (memory::list_element(e, acc), None))
                .collect())
        }
        Shape::ZSet => {
            let (start, stop) = (from.to_string(), last.to_string());
            let reply = read(ctx, "ZREVRANGE", &[name, start.as_bytes(), stop.as_bytes()])?;
            Ok(strings(&reply)
                .iter()
                .map(|m| (memory::zset_member(m, acc), None))
                .collect())
        }
    }
}

fn entry_id_ref(entry: &CallResult<'_>) -> Option<Vec<u8>> {
    match entry {
        Ok(CallReply::Array(entry)) => match entry.get(0)? {
            Ok(CallReply::String(id)) => Some(id.as_bytes().to_vec()),
            _ => None,
        },
        _ => None,
    }
}

/// The field/value strings of one XRANGE entry.
fn entry_fields(entry: &CallResult<'_>) -> Vec<Vec<u8>> {
    let Ok(CallReply::Array(entry)) = entry else {
        return Vec::new();
    };
    match entry.get(1) {
        Some(Ok(CallReply::Array(fields))) => fields
            .iter()
            .map(|f| match f {
                Ok(CallReply::String(s)) => s.as_bytes().to_vec(),
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A read: runs without propagation.
fn read(ctx: &Context, command: &str, args: &[&[u8]]) -> Result<CallReply<'static>, Failure> {
    let options = CallOptionsBuilder::new()
        .errors_as_replies()
        .no_writes()
        .build();
    let reply: CallResult<'static> = ctx.call_ext(command, &options, args);
    reply.map_err(|e| failure(command, e.to_string()))
}

/// A change, through the write gateway (which replicates it as run).
fn write(writer: &Writer, command: &str, args: &[&[u8]]) -> Result<CallReply<'static>, Failure> {
    writer
        .call(command, args)
        .map_err(|text| failure(command, text))
}

fn failure(command: &str, text: String) -> Failure {
    match text.starts_with("WRONGTYPE") {
        true => Failure::WrongType,
        false => Failure::Server(format!("{command}: {text}")),
    }
}

fn read_count(ctx: &Context, command: &str, args: &[&[u8]]) -> Result<u64, Failure> {
    count_of(command, read(ctx, command, args)?)
}

fn count_of(command: &str, reply: CallReply<'static>) -> Result<u64, Failure> {
    match reply {
        CallReply::I64(n) => Ok(n.to_i64().max(0) as u64),
        other => Err(Failure::Server(format!(
            "{command}: expected an integer reply, got {other:?}"
        ))),
    }
}

/// The id of one XRANGE entry (`[id, [field, value, ...]]`).
fn entry_id(entry: CallResult<'_>) -> Option<Vec<u8>> {
    let Ok(CallReply::Array(entry)) = entry else {
        return None;
    };
    let id = match entry.get(0)? {
        Ok(CallReply::String(id)) => Some(id.as_bytes().to_vec()),
        _ => None,
    };
    id
}
