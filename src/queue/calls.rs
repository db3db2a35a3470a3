//! The queue cleaner's access to the keyspace: `RM_Call` with explicit arguments.
//!
//! Reads run without propagation. Every write goes through `write`, which hands it to the
//! write gateway (`crate::write`) on behalf of the work's asker: the server propagates it to
//! replicas and the AOF exactly as run (explicit keys and ids; for XADD `*` and XTRIM `~` the
//! server itself rewrites the arguments into the generated id / exact threshold before
//! propagating). Errors come back as values, never as panics; a read that fails is "in
//! doubt" to the callers.
//!
//! The reads done once per job (does a key exist, a few hash fields) use the key API instead
//! of RM_Call: several times cheaper, which is what makes a queue with millions of finished
//! jobs cleanable at a few microseconds per job. Keys are opened NOTOUCH so the cleaner's
//! reads do not refresh the keys' LRU/LFU data. A string is the exception (see `Calls::get`).

use std::os::raw::c_int;
use std::ptr::NonNull;

use redis_module::{
    raw, CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, RedisString,
};

use crate::keyspace::{self, Access};
use crate::sweep::work::WorkEnv;
use crate::write::Writer;

/// A key opened for reading through the key API; closed on drop.
struct ReadKey {
    key: NonNull<raw::RedisModuleKey>,
}

impl ReadKey {
    /// None when the key does not exist (or has logically expired).
    fn open(ctx: &Context, name: &[u8]) -> Option<ReadKey> {
        let name = RedisString::create_from_slice(ctx.ctx, name);
        let mode = raw::REDISMODULE_READ | raw::REDISMODULE_OPEN_KEY_NOTOUCH;
        // SAFETY: valid ctx and name; the handle is closed in Drop.
        let ptr = unsafe { raw::RedisModule_OpenKey.unwrap()(ctx.ctx, name.inner, mode as c_int) };
        let key = NonNull::new(ptr.cast::<raw::RedisModuleKey>())?;
        let open = ReadKey { key };
        (open.key_type() != raw::REDISMODULE_KEYTYPE_EMPTY as c_int).then_some(open)
    }

    fn key_type(&self) -> c_int {
        // SAFETY: live handle.
        unsafe { raw::RedisModule_KeyType.unwrap()(self.key.as_ptr()) }
    }

    fn is(&self, key_type: isize) -> bool {
        self.key_type() as isize == key_type
    }

    /// What the eviction policy keeps of the key's use: its LRU idle time or LFU counter.
    fn access(&self) -> Option<Access> {
        // SAFETY: live handle.
        unsafe { keyspace::key_access(self.key.as_ptr()) }
    }

    /// Puts back the use data `before` a read refreshed it.
    fn put_back(&self, before: Access) {
        // SAFETY: live handle.
        unsafe { keyspace::put_back_access(self.key.as_ptr(), before) }
    }
}

impl Drop for ReadKey {
    fn drop(&mut self) {
        // SAFETY: opened by us, closed once.
        unsafe { raw::RedisModule_CloseKey.unwrap()(self.key.as_ptr()) };
    }
}

/// `(member, score text)` pairs of a sorted-set range.
pub type ScoredMembers = Vec<(Vec<u8>, Vec<u8>)>;

pub struct Calls<'c> {
    ctx: &'c Context,
    read: CallOptions,
    /// Changes go through the write gateway; Err says why this use may not write (a read-only
    /// use, a dry run, or the server refused when the step began).
    writer: std::result::Result<Writer<'c>, String>,
    /// The rule the work is for (None for a command), as EXPLAIN remembers it.
    rule: Option<usize>,
}

/// A key name built from parts (`<base><id>:logs`, ...).
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl<'c> Calls<'c> {
    /// The database the calls go to.
    pub fn rule(&self) -> Option<usize> {
        self.rule
    }

    pub fn db(&self) -> i32 {
        crate::keyspace::selected_db(self.ctx)
    }

    /// Reads only (counts, EXPLAIN, checks before work starts).
    pub fn new(ctx: &'c Context) -> Calls<'c> {
        Calls {
            ctx,
            read: CallOptionsBuilder::new()
                .errors_as_replies()
                .no_writes()
                .build(),
            writer: Err("a read-only use of the queue asked for a write".into()),
            rule: None,
        }
    }

    /// Reads, and writes for `env`'s asker (none in a dry run). The gateway's check is made
    /// once here: a step is one server callback, in which the server's role cannot change.
    pub fn for_work(ctx: &'c Context, env: &WorkEnv) -> Calls<'c> {
        let writer = match env.dry_run {
            true => Err("a dry run asked for a write".into()),
            false => Writer::new(ctx, env.asker, "the queue cleaner").map_err(|e| e.to_string()),
        };
        Calls {
            writer,
            rule: env.rule,
            ..Calls::new(ctx)
        }
    }

    fn call(&self, cmd: &str, args: &[&[u8]]) -> CallResult<'static> {
        self.ctx.call_ext::<_, CallResult>(cmd, &self.read, args)
    }

    /// Runs a write through the write gateway (which replicates it as run). Returns its
    /// integer reply, if any; None when it was refused (callers treat that as doubt).
    pub fn write(&self, cmd: &str, args: &[&[u8]]) -> Option<i64> {
        let refused = |why: String| {
            self.ctx
                .log_warning(&format!("retention: queue cleaner: {cmd} failed: {why}"));
        };
        let writer = match &self.writer {
            Ok(writer) => writer,
            Err(why) => {
                refused(why.clone());
                return None;
            }
        };
        match writer.call(cmd, args) {
            Ok(CallReply::I64(n)) => Some(n.to_i64()),
            Ok(_) => Some(0),
            Err(why) => {
                refused(why);
                None
            }
        }
    }

    fn int(&self, cmd: &str, args: &[&[u8]]) -> Option<i64> {
        match self.call(cmd, args) {
            Ok(CallReply::I64(n)) => Some(n.to_i64()),
            _ => None,
        }
    }

    /// Bulk-string reply; Ok(None) for a nil reply, Err for an error (e.g. WRONGTYPE).
    fn bulk(&self, cmd: &str, args: &[&[u8]]) -> Result<Option<Vec<u8>>, ()> {
        match self.call(cmd, args) {
            Ok(CallReply::String(s)) => Ok(Some(s.as_bytes().to_vec())),
            Ok(CallReply::Null(_)) => Ok(None),
            Ok(CallReply::I64(n)) => Ok(Some(n.to_i64().to_string().into_bytes())),
            _ => Err(()),
        }
    }

    /// Whether any of the given keys exists.
    pub fn exists(&self, keys: &[&[u8]]) -> bool {
        keys.iter().any(|k| ReadKey::open(self.ctx, k).is_some())
    }

    pub fn key_type(&self, name: &[u8]) -> Option<String> {
        match self.call("TYPE", &[name]) {
            Ok(CallReply::String(s)) => s.to_string(),
            _ => None,
        }
    }

    /// The value of a string key (None when missing or not a string), the key left exactly
    /// as it was. Not `RM_StringDMA`: for a key encoded as an integer or an embedded string
    /// it replaces the value with a new raw string (another encoding, a fresh LRU/LFU). GET
    /// changes no object but counts as an access, which is put back after.
    pub fn get(&self, name: &[u8]) -> Option<Vec<u8>> {
        let before = {
            let key = ReadKey::open(self.ctx, name)?;
            if !key.is(raw::REDISMODULE_KEYTYPE_STRING) {
                return None;
            }
            key.access()
        };
        // The handle is closed across the call: GET may find the key expired and delete it.
        let value = self.bulk("GET", &[name]).ok().flatten();
        if let (Some(before), Some(key)) = (before, ReadKey::open(self.ctx, name)) {
            key.put_back(before);
        }
        value
    }

    pub fn hget(&self, name: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        self.hmget(name, &[field]).map(|mut v| v.pop().flatten())
    }

    /// HMGET: one value per field (None = not set; all None for a missing key). Err on a
    /// key of another type.
    pub fn hmget(&self, name: &[u8], fields: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, ()> {
        let Some(key) = ReadKey::open(self.ctx, name) else {
            return Ok(vec![None; fields.len()]);
        };
        if !key.is(raw::REDISMODULE_KEYTYPE_HASH) {
            return Err(());
        }
        let mut values = vec![std::ptr::null_mut(); fields.len()];
        let fields: Vec<Vec<u8>> = fields.iter().map(|f| f.to_vec()).collect();
        // Field names are ours (no NUL bytes); an error here is doubt, not a panic.
        raw::hash_get_multi(key.key.as_ptr(), &fields, &mut values).map_err(|_| ())?;
        Ok(values
            .into_iter()
            .map(|ptr| {
                (!ptr.is_null()).then(|| {
                    // Takes ownership: freed when `value` drops.
                    let value = RedisString::from_redis_module_string(self.ctx.ctx, ptr);
                    value.as_slice().to_vec()
                })
            })
            .collect())
    }

    pub fn hexists(&self, hash: &[u8], field: &[u8]) -> Result<bool, ()> {
        self.hget(hash, field).map(|v| v.is_some())
    }

    /// The member's score, None when it is not in the set; Err when the key is not a zset.
    pub fn zscore(&self, zset: &[u8], member: &[u8]) -> Result<Option<f64>, ()> {
        self.bulk("ZSCORE", &[zset, member])
            .map(|v| v.and_then(|text| super::layout::parse_score(&text)))
    }

    /// The member's rank from the lowest score, None when it is not in the set.
    pub fn zrank(&self, zset: &[u8], member: &[u8]) -> Option<u64> {
        self.int("ZRANK", &[zset, member]).map(|n| n.max(0) as u64)
    }

    /// Is `member` in the sorted set? Err when the key is not a sorted set.
    pub fn zscore_present(&self, zset: &[u8], member: &[u8]) -> Result<bool, ()> {
        self.bulk("ZSCORE", &[zset, member]).map(|v| v.is_some())
    }

    pub fn sismember(&self, set: &[u8], member: &[u8]) -> Result<bool, ()> {
        self.int("SISMEMBER", &[set, member])
            .map(|n| n == 1)
            .ok_or(())
    }

    pub fn llen(&self, list: &[u8]) -> Result<i64, ()> {
        self.int("LLEN", &[list]).ok_or(())
    }

    pub fn lindex(&self, list: &[u8], index: i64) -> Option<Vec<u8>> {
        self.bulk("LINDEX", &[list, index.to_string().as_bytes()])
            .ok()
            .flatten()
    }

    /// Is `element` in the list? Err when the key is not a list.
    pub fn lpos_present(&self, list: &[u8], element: &[u8]) -> Result<bool, ()> {
        match self.call("LPOS", &[list, element]) {
            Ok(CallReply::I64(_)) => Ok(true),
            Ok(CallReply::Null(_)) => Ok(false),
            _ => Err(()),
        }
    }

    /// Cardinality of a sorted set (0 when missing); Err on another type.
    pub fn zcard(&self, zset: &[u8]) -> Result<u64, ()> {
        self.int("ZCARD", &[zset])
            .map(|n| n.max(0) as u64)
            .ok_or(())
    }

    /// Members of ranks `start..=stop` with their scores as the server prints them.
    pub fn zrange_with_scores(
        &self,
        zset: &[u8],
        start: u64,
        stop: u64,
    ) -> Result<ScoredMembers, ()> {
        let (start, stop) = (start.to_string(), stop.to_string());
        let args: [&[u8]; 4] = [zset, start.as_bytes(), stop.as_bytes(), b"WITHSCORES"];
        let Ok(CallReply::Array(items)) = self.call("ZRANGE", &args) else {
            return Err(());
        };
        let flat: Vec<Vec<u8>> = items
            .iter()
            .map(|item| match item {
                Ok(CallReply::String(s)) => s.as_bytes().to_vec(),
                Ok(CallReply::Double(d)) => d.to_double().to_string().into_bytes(),
                _ => Vec::new(),
            })
            .collect();
        Ok(flat
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect())
    }

    /// `MEMORY USAGE <key> SAMPLES 0`: the key's whole memory as the server counts it; 0 for
    /// a missing key (looked up with the key API first: most jobs lack most sub-keys).
    pub fn memory_usage(&self, name: &[u8]) -> Result<u64, ()> {
        if ReadKey::open(self.ctx, name).is_none() {
            return Ok(0);
        }
        match self.call("MEMORY", &[b"USAGE", name, b"SAMPLES", b"0"]) {
            Ok(CallReply::I64(n)) => Ok(n.to_i64().max(0) as u64),
            Ok(CallReply::Null(_)) => Ok(0),
            _ => Err(()),
        }
    }

    pub fn xlen(&self, stream: &[u8]) -> Option<i64> {
        self.int("XLEN", &[stream])
    }
}
