//! The server side of a run set: reading `<base>:index` / `<base>:data` through the key API
//! (cheap, no command dispatch) and changing them through the write gateway, so every change
//! reaches replicas and the AOF as an explicit `ZADD`/`ZREM`/`HSET`/`HDEL` with the ids and
//! scores chosen here, and fires the usual keyspace events.
//!
//! Read handles never outlive the function that opens them: a write through `RM_Call`
//! while a handle is open could leave it pointing at a freed value.

use std::os::raw::{c_int, c_void};
use std::ptr::NonNull;

use redis_module::{
    raw, CallOptionResp, CallOptions, CallOptionsBuilder, CallReply, CallResult, Context,
    RedisString,
};

use super::names::{shown, RunSetNames};
use crate::acl::{require_keys, KeyAccess};
use crate::error::{Error, Result};
use crate::policy::KeyType;
use crate::write::{Asker, Writer};

/// Ids per replicated write command: big enough to amortise the command, small enough
/// that no single command in the replication stream is huge.
pub const WRITE_CHUNK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (ZRANGE order: score, then id bytes).
    Asc,
    /// Newest first (ZREVRANGE order).
    Desc,
}

/// A score bound for `ZRANGE ... BYSCORE`.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    Inclusive(f64),
    Exclusive(f64),
}

impl Bound {
    fn arg(self) -> String {
        match self {
            Bound::Inclusive(s) => score_arg(s),
            Bound::Exclusive(s) => format!("({}", score_arg(s)),
        }
    }
}

/// A score as Redis parses it back exactly: integers without a fraction, `+inf`/`-inf`.
pub fn score_arg(score: f64) -> String {
    if score == f64::INFINITY {
        "+inf".into()
    } else if score == f64::NEG_INFINITY {
        "-inf".into()
    } else if score.fract() == 0.0 && score.abs() < 9.0e15 {
        format!("{}", score as i64)
    } else {
        // Rust prints the shortest string that round-trips, which strtod reads back exactly.
        format!("{score}")
    }
}

/// A key opened for reading; closed on drop. Absent keys are `None`, never a NULL handle.
struct ReadKey {
    key: NonNull<raw::RedisModuleKey>,
}

impl ReadKey {
    fn open(ctx: &Context, name: &RedisString) -> Option<ReadKey> {
        // SAFETY: valid ctx and name for the duration of the call; closed in Drop.
        let ptr = unsafe {
            raw::RedisModule_OpenKey.unwrap()(ctx.ctx, name.inner, raw::REDISMODULE_READ as c_int)
        };
        NonNull::new(ptr.cast::<raw::RedisModuleKey>()).map(|key| ReadKey { key })
    }

    fn key_type(&self) -> Option<KeyType> {
        // SAFETY: live handle.
        let code = unsafe { raw::RedisModule_KeyType.unwrap()(self.key.as_ptr()) };
        crate::keyspace::key_type_of(code)
    }

    fn len(&self) -> u64 {
        // SAFETY: live handle.
        unsafe { raw::RedisModule_ValueLength.unwrap()(self.key.as_ptr()) as u64 }
    }

    fn abs_expire_ms(&self) -> Option<i64> {
        // SAFETY: live, non-null handle.
        let at = unsafe { raw::RedisModule_GetAbsExpire.unwrap()(self.key.as_ptr()) };
        (at != raw::REDISMODULE_NO_EXPIRE as i64).then_some(at)
    }

    /// ZSCORE (the key must be a zset).
    fn zset_score(&self, member: &RedisString) -> Option<f64> {
        let mut score = 0.0f64;
        // SAFETY: live zset handle, valid member string and out-pointer.
        let rc = unsafe {
            raw::RedisModule_ZsetScore.unwrap()(self.key.as_ptr(), member.inner, &mut score)
        };
        (rc == raw::REDISMODULE_OK as c_int).then_some(score)
    }

    /// HGET (the key must be a hash); the value is a new string owned by `ctx`.
    fn hash_get(&self, ctx: &Context, field: &RedisString) -> Option<RedisString> {
        let mut value: *mut raw::RedisModuleString = std::ptr::null_mut();
        // SAFETY: live hash handle; the variadic list is (field, out-pointer, NULL).
        unsafe {
            raw::RedisModule_HashGet.unwrap()(
                self.key.as_ptr(),
                raw::REDISMODULE_HASH_NONE as c_int,
                field.inner,
                &mut value as *mut *mut raw::RedisModuleString,
                std::ptr::null_mut::<c_void>(),
            )
        };
        (!value.is_null()).then(|| RedisString::from_redis_module_string(ctx.ctx, value))
    }

    /// HEXISTS (the key must be a hash).
    fn hash_exists(&self, field: &RedisString) -> bool {
        let mut exists: c_int = 0;
        // SAFETY: live hash handle; with HASH_EXISTS the out-pointer is an int*.
        unsafe {
            raw::RedisModule_HashGet.unwrap()(
                self.key.as_ptr(),
                raw::REDISMODULE_HASH_EXISTS as c_int,
                field.inner,
                &mut exists as *mut c_int,
                std::ptr::null_mut::<c_void>(),
            )
        };
        exists != 0
    }
}

impl Drop for ReadKey {
    fn drop(&mut self) {
        // SAFETY: opened by us, closed once.
        unsafe { raw::RedisModule_CloseKey.unwrap()(self.key.as_ptr()) };
    }
}

/// A key's type and TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFacts {
    pub key_type: Option<KeyType>,
    pub len: u64,
    pub abs_expire_ms: Option<i64>,
}

/// Facts about any key (None when it does not exist).
pub fn key_facts(ctx: &Context, name: &[u8]) -> Option<KeyFacts> {
    let name = RedisString::create_from_slice(ctx.ctx, name);
    let key = ReadKey::open(ctx, &name)?;
    Some(KeyFacts {
        key_type: key.key_type(),
        len: key.len(),
        abs_expire_ms: key.abs_expire_ms(),
    })
}

/// An index entry as the key API gives it (the id is a server string, no copy).
pub struct Item {
    pub id: RedisString,
    pub score: f64,
}

/// The index opened for reading, for the fast paths of PAGE and AFTER. Must be dropped
/// before anything is written (see the module comment).
pub struct View<'c> {
    ctx: &'c Context,
    index: Option<ReadKey>,
}

impl View<'_> {
    pub fn score(&self, id: &RedisString) -> Option<f64> {
        self.index.as_ref()?.zset_score(id)
    }

    /// Entries `skip..skip + size` counted from the newest (DESC) or oldest (ASC) end.
    /// Skipping only moves the iterator, so this is cheap for small `skip`.
    pub fn items_from_end(&self, skip: u64, size: u64, order: Order) -> Vec<Item> {
        let Some(index) = &self.index else {
            return Vec::new();
        };
        let mut it = ZsetIter::new(self.ctx, index, f64::NEG_INFINITY, f64::INFINITY, order);
        for _ in 0..skip {
            if !it.advance() {
                return Vec::new();
            }
        }
        it.take(size)
    }

    /// Up to `size` entries strictly after (score, marker) in `order`. None when more than
    /// `max_ties` entries share `score` and sort before the marker: walking past them one
    /// by one would cost more than finding the marker's rank.
    pub fn items_after(
        &self,
        score: f64,
        marker: &[u8],
        size: u64,
        order: Order,
        max_ties: u64,
    ) -> Option<Vec<Item>> {
        let Some(index) = &self.index else {
            return Some(Vec::new());
        };
        // The walk starts at the first entry whose score is not past `score` in `order`
        // and skips the equal-score entries up to and including the marker.
        let (min, max) = match order {
            Order::Asc => (score, f64::INFINITY),
            Order::Desc => (f64::NEG_INFINITY, score),
        };
        let mut it = ZsetIter::new(self.ctx, index, min, max, order);
        let mut skipped = 0;
        loop {
            let Some((id, s)) = it.peek() else {
                return Some(Vec::new());
            };
            // An empty id (never a run id) positions before every run of that score.
            let before_or_at_marker = s == score
                && !marker.is_empty()
                && match order {
                    Order::Asc => id.as_slice() <= marker,
                    Order::Desc => id.as_slice() >= marker,
                };
            if !before_or_at_marker {
                break;
            }
            skipped += 1;
            if skipped > max_ties {
                return None;
            }
            if !it.advance() {
                return Some(Vec::new());
            }
        }
        Some(it.take(size))
    }
}

/// A key-API range iterator over a zset, walking towards higher (ASC) or lower (DESC)
/// scores; stopped on drop.
struct ZsetIter<'k> {
    ctx: &'k Context,
    key: &'k ReadKey,
    order: Order,
    ended: bool,
}

impl<'k> ZsetIter<'k> {
    fn new(ctx: &'k Context, key: &'k ReadKey, min: f64, max: f64, order: Order) -> Self {
        let k = key.key.as_ptr();
        // SAFETY: live zset handle; the iterator state lives in the handle until Stop.
        let rc = unsafe {
            match order {
                Order::Asc => raw::RedisModule_ZsetFirstInScoreRange.unwrap()(k, min, max, 0, 0),
                Order::Desc => raw::RedisModule_ZsetLastInScoreRange.unwrap()(k, min, max, 0, 0),
            }
        };
        // SAFETY: as above.
        let ended = rc != raw::REDISMODULE_OK as c_int
            || unsafe { raw::RedisModule_ZsetRangeEndReached.unwrap()(k) } != 0;
        ZsetIter {
            ctx,
            key,
            order,
            ended,
        }
    }

    /// The current entry (a new string owned by `ctx`).
    fn peek(&self) -> Option<(RedisString, f64)> {
        if self.ended {
            return None;
        }
        let mut score = 0.0f64;
        // SAFETY: live handle with an active range.
        let ele = unsafe {
            raw::RedisModule_ZsetRangeCurrentElement.unwrap()(self.key.key.as_ptr(), &mut score)
        };
        (!ele.is_null()).then(|| {
            (
                RedisString::from_redis_module_string(self.ctx.ctx, ele),
                score,
            )
        })
    }

    /// Moves on; false at the end of the range.
    fn advance(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let k = self.key.key.as_ptr();
        // SAFETY: live handle with an active range.
        let moved = unsafe {
            match self.order {
                Order::Asc => raw::RedisModule_ZsetRangeNext.unwrap()(k),
                Order::Desc => raw::RedisModule_ZsetRangePrev.unwrap()(k),
            }
        };
        self.ended = moved == 0;
        !self.ended
    }

    fn take(mut self, n: u64) -> Vec<Item> {
        let mut out = Vec::with_capacity(n.min(1024) as usize);
        while (out.len() as u64) < n {
            let Some((id, score)) = self.peek() else {
                break;
            };
            out.push(Item { id, score });
            if !self.advance() {
                break;
            }
        }
        out
    }
}

impl Drop for ZsetIter<'_> {
    fn drop(&mut self) {
        // SAFETY: live handle; stopping an inactive range is a no-op.
        unsafe { raw::RedisModule_ZsetRangeStop.unwrap()(self.key.key.as_ptr()) };
    }
}

/// A run as a page shows it: an index entry and its document.
pub struct Row {
    pub item: Item,
    pub doc: RedisString,
}

/// Writes `[total, [id, json, (score,) ...]]` to the client. Infallible by construction:
/// nothing may fail once a reply has begun.
pub fn reply_page(ctx: &Context, total: u64, rows: &[Row], scores: bool) {
    let per_row = if scores { 3 } else { 2 };
    let c = ctx.ctx;
    // SAFETY: command context; every element replied is live (rows are borrowed).
    unsafe {
        raw::RedisModule_ReplyWithArray.unwrap()(c, 2);
        raw::RedisModule_ReplyWithLongLong.unwrap()(c, total as i64);
        raw::RedisModule_ReplyWithArray.unwrap()(c, (rows.len() * per_row) as _);
        for row in rows {
            raw::RedisModule_ReplyWithString.unwrap()(c, row.item.id.inner);
            raw::RedisModule_ReplyWithString.unwrap()(c, row.doc.inner);
            if scores {
                reply_score(c, row.item.score);
            }
        }
    }
}

/// Scores written by this module are integer ms, replied as integers. A score another writer
/// left (1.5, inf) is replied exactly, as a string ("1.5", "inf"): it is the next AFTER
/// position, and a rounded one would repeat or skip runs.
///
/// # Safety
/// `c` is the context of the command being answered.
unsafe fn reply_score(c: *mut raw::RedisModuleCtx, score: f64) {
    match exact_integer(score) {
        Some(ms) => {
            raw::RedisModule_ReplyWithLongLong.unwrap()(c, ms);
        }
        None => {
            let text = score_text(score);
            raw::RedisModule_ReplyWithStringBuffer.unwrap()(c, text.as_ptr().cast(), text.len());
        }
    }
}

/// The score as an integer when it is one that a double holds exactly.
pub fn exact_integer(score: f64) -> Option<i64> {
    (score.fract() == 0.0 && score.abs() < (1u64 << 53) as f64).then_some(score as i64)
}

/// A score as ZSCORE writes it, and as `position_score` reads it back exactly.
pub fn score_text(score: f64) -> String {
    match score {
        f64::INFINITY => "inf".to_string(),
        f64::NEG_INFINITY => "-inf".to_string(),
        // Shortest text that reads back as the same double; exponent form for huge ones.
        s if s.abs() < 1e17 => format!("{s}"),
        s => format!("{s:e}"),
    }
}

pub use crate::cluster::in_cluster;

/// The keys of one run set, opened on demand.
pub struct RunSet<'c> {
    ctx: &'c Context,
    pub names: RunSetNames,
    index: RedisString,
    data: RedisString,
    /// Who its changes are for (the write gateway checks this server may write for them).
    asker: Asker,
}

impl<'c> RunSet<'c> {
    /// Names the run set, checks the cluster slots, that the caller may `access` both keys
    /// and that both have the right type (or do not exist): every command fails here
    /// before it reads or changes anything.
    pub fn open(ctx: &'c Context, base: &[u8], access: KeyAccess) -> Result<RunSet<'c>> {
        let names = RunSetNames::new(base)?;
        if in_cluster(ctx) {
            names.check_cluster_slots()?;
        }
        // The server checked only the base the command names; these are the keys it uses.
        require_keys(ctx, &[&names.index, &names.data], access)?;
        let set = RunSet::unchecked(ctx, names, Asker::Caller);
        set.check_types()?;
        Ok(set)
    }

    /// For the sweep: names already known to be fine; types are checked per step.
    pub fn unchecked(ctx: &'c Context, names: RunSetNames, asker: Asker) -> RunSet<'c> {
        let index = RedisString::create_from_slice(ctx.ctx, &names.index);
        let data = RedisString::create_from_slice(ctx.ctx, &names.data);
        RunSet {
            ctx,
            names,
            index,
            data,
            asker,
        }
    }

    /// A change to this set, through the write gateway.
    fn write(&self, cmd: &str, args: &[&[u8]]) -> Result<CallReply<'static>> {
        write_call(self.ctx, self.asker, cmd, args)
    }

    pub fn check_types(&self) -> Result<()> {
        let index_ok = self.open_index().is_ok();
        let data_ok = self.open_data().is_ok();
        if index_ok && data_ok {
            Ok(())
        } else {
            Err(Error::WrongType)
        }
    }

    fn open_index(&self) -> Result<Option<ReadKey>> {
        open_typed(self.ctx, &self.index, KeyType::ZSet)
    }

    fn open_data(&self) -> Result<Option<ReadKey>> {
        open_typed(self.ctx, &self.data, KeyType::Hash)
    }

    pub fn ctx_ptr(&self) -> *mut raw::RedisModuleCtx {
        self.ctx.ctx
    }

    /// The index opened for reading.
    pub fn view(&self) -> Result<View<'c>> {
        Ok(View {
            ctx: self.ctx,
            index: self.open_index()?,
        })
    }

    /// ZCARD of the index.
    pub fn count(&self) -> Result<u64> {
        Ok(self.open_index()?.map_or(0, |k| k.len()))
    }

    /// HLEN of the data hash.
    pub fn data_len(&self) -> Result<u64> {
        Ok(self.open_data()?.map_or(0, |k| k.len()))
    }

    pub fn data_exists(&self) -> Result<bool> {
        Ok(self.open_data()?.is_some())
    }

    pub fn index_exists(&self) -> Result<bool> {
        Ok(self.open_index()?.is_some())
    }

    pub fn index_expire_ms(&self) -> Result<Option<i64>> {
        Ok(self.open_index()?.and_then(|k| k.abs_expire_ms()))
    }

    pub fn data_expire_ms(&self) -> Result<Option<i64>> {
        Ok(self.open_data()?.and_then(|k| k.abs_expire_ms()))
    }

    /// The score of each id in the index (None = not indexed).
    pub fn scores(&self, ids: &[&[u8]]) -> Result<Vec<Option<f64>>> {
        let Some(index) = self.open_index()? else {
            return Ok(vec![None; ids.len()]);
        };
        Ok(ids
            .iter()
            .map(|id| index.zset_score(&RedisString::create_from_slice(self.ctx.ctx, id)))
            .collect())
    }

    pub fn score(&self, id: &[u8]) -> Result<Option<f64>> {
        Ok(self.scores(&[id])?.pop().flatten())
    }

    /// The JSON document of each id (None = no data entry).
    pub fn documents(&self, ids: &[&[u8]]) -> Result<Vec<Option<RedisString>>> {
        let Some(data) = self.open_data()? else {
            return Ok(ids.iter().map(|_| None).collect());
        };
        Ok(ids
            .iter()
            .map(|id| data.hash_get(self.ctx, &RedisString::create_from_slice(self.ctx.ctx, id)))
            .collect())
    }

    /// The items that have a document, with it, in order; holes (ids without a document)
    /// are left out. HGET through the key API, reusing the index's own id strings:
    /// measured as cheap as an HMGET through RM_Call, without its extra copies.
    pub fn rows_of(&self, items: Vec<Item>) -> Result<Vec<Row>> {
        let Some(data) = self.open_data()? else {
            return Ok(Vec::new());
        };
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let doc = data.hash_get(self.ctx, &item.id)?;
                Some(Row { item, doc })
            })
            .collect())
    }

    /// Which ids have a data entry.
    pub fn have_documents(&self, ids: &[&[u8]]) -> Result<Vec<bool>> {
        let Some(data) = self.open_data()? else {
            return Ok(vec![false; ids.len()]);
        };
        Ok(ids
            .iter()
            .map(|id| data.hash_exists(&RedisString::create_from_slice(self.ctx.ctx, id)))
            .collect())
    }

    // ---- reads through RM_Call (rank and range queries have no key-API equivalent) ----

    /// Ids at ranks `start..=stop` in `order` (ZRANGE ... [REV], no scores: Redis 7.0
    /// formats RESP2 doubles with printf, which would cost more than the whole lookup).
    pub fn ids_by_rank(&self, start: u64, stop: u64, order: Order) -> Result<Vec<Vec<u8>>> {
        let (start, stop) = (start.to_string(), stop.to_string());
        let mut args: Vec<&[u8]> = vec![&self.names.index, start.as_bytes(), stop.as_bytes()];
        if order == Order::Desc {
            args.push(b"REV");
        }
        ids_of(read_call(self.ctx, "ZRANGE", &args)?)
    }

    /// Ids with scores between the bounds, walking in `order` from `from` towards `to`,
    /// skipping `skip` and returning at most `limit` (ZRANGE ... BYSCORE [REV] LIMIT).
    pub fn ids_by_score(
        &self,
        from: Bound,
        to: Bound,
        order: Order,
        skip: u64,
        limit: Option<u64>,
    ) -> Result<Vec<Vec<u8>>> {
        let (from, to) = (from.arg(), to.arg());
        let skip = skip.to_string();
        // LIMIT with a negative count means "all the rest".
        let limit = limit.map_or_else(|| "-1".to_string(), |n| n.to_string());
        let mut args: Vec<&[u8]> = vec![&self.names.index, from.as_bytes(), to.as_bytes()];
        args.push(b"BYSCORE");
        if order == Order::Desc {
            args.push(b"REV");
        }
        args.extend([&b"LIMIT"[..], skip.as_bytes(), limit.as_bytes()]);
        ids_of(read_call(self.ctx, "ZRANGE", &args)?)
    }

    /// The id at ASC rank `rank` (ZRANGE index rank rank: O(log N)).
    pub fn id_at_rank(&self, rank: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.ids_by_rank(rank, rank, Order::Asc)?.pop())
    }

    /// How many entries have a score between the bounds (ZCOUNT: O(log N)).
    pub fn count_between(&self, from: Bound, to: Bound) -> Result<u64> {
        let (from, to) = (from.arg(), to.arg());
        let reply = read_call(
            self.ctx,
            "ZCOUNT",
            &[&self.names.index, from.as_bytes(), to.as_bytes()],
        )?;
        int_reply(reply, "ZCOUNT")
    }

    /// ZRANK / ZREVRANK.
    pub fn rank(&self, id: &[u8], order: Order) -> Result<Option<u64>> {
        let cmd = match order {
            Order::Asc => "ZRANK",
            Order::Desc => "ZREVRANK",
        };
        match read_call(self.ctx, cmd, &[&self.names.index, id])? {
            CallReply::I64(n) => Ok(u64::try_from(n.to_i64()).ok()),
            _ => Ok(None),
        }
    }

    /// HSCAN of the data hash: the next cursor and the field names of this step.
    pub fn scan_data_ids(&self, cursor: u64, count: u64) -> Result<(u64, Vec<Vec<u8>>)> {
        let (cursor, count) = (cursor.to_string(), count.to_string());
        let reply = read_call(
            self.ctx,
            "HSCAN",
            &[
                &self.names.data,
                cursor.as_bytes(),
                b"COUNT",
                count.as_bytes(),
            ],
        )?;
        let CallReply::Array(parts) = reply else {
            return Err(unexpected("HSCAN"));
        };
        let next = match parts.get(0) {
            Some(Ok(CallReply::String(s))) => std::str::from_utf8(s.as_bytes())
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| unexpected("HSCAN cursor"))?,
            _ => return Err(unexpected("HSCAN cursor")),
        };
        let Some(Ok(CallReply::Array(pairs))) = parts.get(1) else {
            return Err(unexpected("HSCAN fields"));
        };
        let fields = pairs
            .iter()
            .step_by(2)
            .map(|f| match f {
                Ok(CallReply::String(s)) => Ok(s.as_bytes().to_vec()),
                _ => Err(unexpected("HSCAN field")),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((next, fields))
    }

    // ---- writes: replicated as the exact command run here ----

    /// ZADD [NX] of (score, id) pairs; returns how many ids were new to the index.
    pub fn index_add(&self, entries: &[(f64, &[u8])], only_new: bool) -> Result<u64> {
        let mut added = 0;
        for chunk in entries.chunks(WRITE_CHUNK) {
            let scores: Vec<String> = chunk.iter().map(|(s, _)| score_arg(*s)).collect();
            let mut args: Vec<&[u8]> = Vec::with_capacity(2 + chunk.len() * 2);
            args.push(&self.names.index);
            if only_new {
                args.push(b"NX");
            }
            for ((_, id), score) in chunk.iter().zip(&scores) {
                args.push(score.as_bytes());
                args.push(id);
            }
            added += int_reply(self.write("ZADD", &args)?, "ZADD")?;
        }
        Ok(added)
    }

    /// HSET of (id, document) pairs.
    pub fn data_set(&self, docs: &[(&[u8], &[u8])]) -> Result<()> {
        for chunk in docs.chunks(WRITE_CHUNK) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(1 + chunk.len() * 2);
            args.push(&self.names.data);
            for (id, doc) in chunk {
                args.push(id);
                args.push(doc);
            }
            self.write("HSET", &args)?;
        }
        Ok(())
    }

    /// ZREM; returns how many were removed.
    pub fn index_remove(&self, ids: &[&[u8]]) -> Result<u64> {
        self.remove_members("ZREM", &self.names.index, ids)
    }

    /// HDEL; returns how many were removed.
    pub fn data_remove(&self, ids: &[&[u8]]) -> Result<u64> {
        self.remove_members("HDEL", &self.names.data, ids)
    }

    fn remove_members(&self, cmd: &str, key: &[u8], ids: &[&[u8]]) -> Result<u64> {
        let mut removed = 0;
        for chunk in ids.chunks(WRITE_CHUNK) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(1 + chunk.len());
            args.push(key);
            args.extend_from_slice(chunk);
            removed += int_reply(self.write(cmd, &args)?, cmd)?;
        }
        Ok(removed)
    }

    /// ZREMRANGEBYSCORE index -inf (<cutoff: an explicit bound, never "now".
    pub fn index_remove_older_than(&self, cutoff_ms: i64) -> Result<u64> {
        let bound = Bound::Exclusive(cutoff_ms as f64).arg();
        let reply = self.write(
            "ZREMRANGEBYSCORE",
            &[&self.names.index, b"-inf", bound.as_bytes()],
        )?;
        int_reply(reply, "ZREMRANGEBYSCORE")
    }

    /// Drops the whole index (lazily freed when big).
    pub fn unlink_index(&self) -> Result<()> {
        self.write("UNLINK", &[&self.names.index]).map(|_| ())
    }

    pub fn unlink_data(&self) -> Result<()> {
        self.write("UNLINK", &[&self.names.data]).map(|_| ())
    }

    /// Makes the key expire at `at_ms`, or never (None).
    pub fn set_expire(&self, data_key: bool, at_ms: Option<i64>) -> Result<()> {
        let key: &[u8] = if data_key {
            &self.names.data
        } else {
            &self.names.index
        };
        match at_ms {
            Some(at) => self.write("PEXPIREAT", &[key, at.to_string().as_bytes()]),
            None => self.write("PERSIST", &[key]),
        }
        .map(|_| ())
    }
}

fn open_typed(ctx: &Context, name: &RedisString, want: KeyType) -> Result<Option<ReadKey>> {
    match ReadKey::open(ctx, name) {
        None => Ok(None),
        Some(key) if key.key_type() == Some(want) => Ok(Some(key)),
        // An empty handle of an unknown type means the key vanished (expired) meanwhile.
        Some(key) if key.key_type().is_none() => {
            drop(key);
            Ok(None)
        }
        Some(_) => Err(Error::WrongType),
    }
}

thread_local! {
    /// RESP2 replies, errors as reply objects (never raised into the caller's client);
    /// a writing command is refused (writes go through the write gateway).
    static READ_OPTS: CallOptions = CallOptionsBuilder::new()
        .errors_as_replies()
        .no_writes()
        .resp(CallOptionResp::Resp2)
        .build();
}

pub fn read_call(ctx: &Context, cmd: &str, args: &[&[u8]]) -> Result<CallReply<'static>> {
    READ_OPTS.with(|opts| checked(cmd, ctx.call_ext::<_, CallResult>(cmd, opts, args)))
}

/// A change through the write gateway, which replicates it as run, on behalf of `asker`.
pub fn write_call(
    ctx: &Context,
    asker: Asker,
    cmd: &str,
    args: &[&[u8]],
) -> Result<CallReply<'static>> {
    let writer = Writer::new(ctx, asker, "active runs")?;
    match writer.call(cmd, args) {
        Ok(CallReply::Unknown) => Err(Error::Server(format!(
            "{cmd} was refused by the server (see the server log)"
        ))),
        Ok(reply) => Ok(reply),
        Err(text) => Err(Error::Server(format!(
            "{cmd} failed: {}",
            shown(text.as_bytes()).trim_start_matches("ERR ").trim()
        ))),
    }
}

fn checked(cmd: &str, result: CallResult<'static>) -> Result<CallReply<'static>> {
    match result {
        Ok(CallReply::Unknown) => Err(Error::Server(format!(
            "{cmd} was refused by the server (see the server log)"
        ))),
        Ok(reply) => Ok(reply),
        Err(e) => Err(Error::Server(format!(
            "{cmd} failed: {}",
            shown(e.as_bytes()).trim_start_matches("ERR ").trim()
        ))),
    }
}

fn unexpected(what: &str) -> Error {
    Error::Server(format!("unexpected reply to {what}"))
}

fn int_reply(reply: CallReply, cmd: &str) -> Result<u64> {
    match reply {
        CallReply::I64(n) => Ok(n.to_i64().max(0) as u64),
        _ => Err(unexpected(cmd)),
    }
}

/// A ZRANGE reply (no scores) into ids.
fn ids_of(reply: CallReply) -> Result<Vec<Vec<u8>>> {
    let CallReply::Array(items) = reply else {
        return Err(unexpected("ZRANGE"));
    };
    items
        .iter()
        .map(|id| match id {
            Ok(CallReply::String(s)) => Ok(s.as_bytes().to_vec()),
            _ => Err(unexpected("ZRANGE")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_args_round_trip_through_redis_syntax() {
        assert_eq!(score_arg(1_714_566_600_250.0), "1714566600250");
        assert_eq!(score_arg(0.0), "0");
        assert_eq!(score_arg(-3.0), "-3");
        assert_eq!(score_arg(1.5), "1.5");
        assert_eq!(score_arg(f64::INFINITY), "+inf");
        assert_eq!(score_arg(f64::NEG_INFINITY), "-inf");
        assert_eq!(Bound::Exclusive(5.0).arg(), "(5");
        assert_eq!(Bound::Inclusive(f64::INFINITY).arg(), "+inf");
    }
}
