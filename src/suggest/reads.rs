//! Reads of key contents that leave the keys as they were: a read through `RM_Call` counts
//! as an access (LRU/LFU), which is put back after, as the queue cleaner's reads do.

use std::os::raw::c_int;
use std::ptr::NonNull;

use redis_module::{raw, CallOptions, CallReply, CallResult, Context, RedisString};

use crate::keyspace::{self, Access};
use crate::queue::calls::Calls;

/// A simple value of a call's reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Val>),
    Nil,
}

fn to_val(reply: &CallReply) -> Val {
    match reply {
        CallReply::I64(n) => Val::Int(n.to_i64()),
        CallReply::String(s) => Val::Bytes(s.as_bytes().to_vec()),
        CallReply::Double(d) => Val::Bytes(d.to_double().to_string().into_bytes()),
        CallReply::Array(items) => Val::Array(
            items
                .iter()
                .map(|i| i.as_ref().map(to_val).unwrap_or(Val::Nil))
                .collect(),
        ),
        _ => Val::Nil,
    }
}

struct Handle(NonNull<raw::RedisModuleKey>);

impl Handle {
    fn open(ctx: &Context, name: &[u8]) -> Option<Handle> {
        let name = RedisString::create_from_slice(ctx.ctx, name);
        let mode = raw::REDISMODULE_READ | raw::REDISMODULE_OPEN_KEY_NOTOUCH;
        // SAFETY: valid ctx and name; the handle is closed in Drop.
        let ptr = unsafe { raw::RedisModule_OpenKey.unwrap()(ctx.ctx, name.inner, mode as c_int) };
        NonNull::new(ptr.cast::<raw::RedisModuleKey>()).map(Handle)
    }

    fn access(&self) -> Option<Access> {
        // SAFETY: live handle.
        unsafe { keyspace::key_access(self.0.as_ptr()) }
    }

    fn put_back(&self, before: Access) {
        // SAFETY: live handle.
        unsafe { keyspace::put_back_access(self.0.as_ptr(), before) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: opened by us, closed once.
        unsafe { raw::RedisModule_CloseKey.unwrap()(self.0.as_ptr()) };
    }
}

/// Runs `read_key`, which reads the key `name`, and puts back the key's use data (LRU/LFU)
/// the read refreshed.
pub fn untouched<T>(ctx: &Context, name: &[u8], read_key: impl FnOnce() -> T) -> T {
    let before = Handle::open(ctx, name).and_then(|h| h.access());
    let value = read_key();
    if let (Some(before), Some(key)) = (before, Handle::open(ctx, name)) {
        key.put_back(before);
    }
    value
}

/// `cmd args...` reading the key `name` (args[0] is usually it), its use data put back.
pub fn read(
    ctx: &Context,
    opts: &CallOptions,
    name: &[u8],
    cmd: &str,
    args: &[&[u8]],
) -> Option<Val> {
    untouched(ctx, name, || {
        ctx.call_ext::<_, CallResult>(cmd, opts, args)
            .ok()
            .map(|reply| to_val(&reply))
    })
}

/// A command on one key: `cmd name rest...`.
pub fn on(
    ctx: &Context,
    opts: &CallOptions,
    cmd: &str,
    name: &[u8],
    rest: &[&[u8]],
) -> Option<Val> {
    let mut args: Vec<&[u8]> = Vec::with_capacity(rest.len() + 1);
    args.push(name);
    args.extend_from_slice(rest);
    read(ctx, opts, name, cmd, &args)
}

pub fn int(v: Option<Val>) -> Option<u64> {
    match v? {
        Val::Int(n) => Some(n.max(0) as u64),
        _ => None,
    }
}

pub fn bytes(v: Option<Val>) -> Option<Vec<u8>> {
    match v? {
        Val::Bytes(b) => Some(b),
        _ => None,
    }
}

/// An array of bulk strings.
pub fn strings(v: Option<Val>) -> Vec<Vec<u8>> {
    match v {
        Some(Val::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Val::Bytes(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `ZRANGE name start stop WITHSCORES` as (member, score) pairs.
pub fn zrange_scores(
    ctx: &Context,
    opts: &CallOptions,
    name: &[u8],
    start: u64,
    stop: u64,
) -> Vec<(Vec<u8>, f64)> {
    let (start, stop) = (start.to_string(), stop.to_string());
    let flat = strings(on(
        ctx,
        opts,
        "ZRANGE",
        name,
        &[start.as_bytes(), stop.as_bytes(), b"WITHSCORES"],
    ));
    flat.chunks_exact(2)
        .filter_map(|pair| {
            let score = crate::queue::layout::parse_score(&pair[1])?;
            Some((pair[0].clone(), score))
        })
        .collect()
}

/// Reads used to prove owners, in the selected database: the queue module's reads where
/// they leave a key untouched (hash fields and types through the key API, NOTOUCH), the
/// reads above for the rest.
pub struct Reader<'c> {
    ctx: &'c Context,
    opts: CallOptions,
    calls: Calls<'c>,
}

impl<'c> Reader<'c> {
    pub fn new(ctx: &'c Context) -> Reader<'c> {
        Reader {
            ctx,
            opts: crate::report::read_options(),
            calls: Calls::new(ctx),
        }
    }

    pub fn zcard(&self, name: &[u8]) -> u64 {
        int(on(self.ctx, &self.opts, "ZCARD", name, &[])).unwrap_or(0)
    }

    pub fn llen(&self, name: &[u8]) -> u64 {
        int(on(self.ctx, &self.opts, "LLEN", name, &[])).unwrap_or(0)
    }

    /// The lowest-scored member and its score.
    pub fn zfirst(&self, name: &[u8]) -> Option<(Vec<u8>, f64)> {
        zrange_scores(self.ctx, &self.opts, name, 0, 0)
            .into_iter()
            .next()
    }

    /// The members of ranks `start..stop` (lowest score first).
    pub fn zrange(&self, name: &[u8], start: u64, stop: u64) -> Vec<Vec<u8>> {
        if stop <= start {
            return Vec::new();
        }
        zrange_scores(self.ctx, &self.opts, name, start, stop - 1)
            .into_iter()
            .map(|(member, _)| member)
            .collect()
    }

    pub fn lfirst(&self, name: &[u8]) -> Option<Vec<u8>> {
        bytes(on(self.ctx, &self.opts, "LINDEX", name, &[b"0"]))
    }

    /// `TYPE name`: "string", ... "none".
    pub fn key_type(&self, name: &[u8]) -> String {
        self.calls.key_type(name).unwrap_or_default()
    }

    /// A string's first KB (enough to recognise its shape).
    pub fn get_head(&self, name: &[u8]) -> Option<Vec<u8>> {
        bytes(on(self.ctx, &self.opts, "GETRANGE", name, &[b"0", b"1023"]))
    }

    pub fn hget(&self, name: &[u8], field: &[u8]) -> Option<Vec<u8>> {
        self.calls.hget(name, field).ok().flatten()
    }

    pub fn smembers(&self, name: &[u8]) -> Vec<Vec<u8>> {
        strings(on(self.ctx, &self.opts, "SMEMBERS", name, &[]))
    }

    /// PTTL: -1 without a TTL, -2 without the key.
    pub fn pttl(&self, name: &[u8]) -> i64 {
        match self
            .ctx
            .call_ext::<_, CallResult>("PTTL", &self.opts, &[name][..])
        {
            Ok(CallReply::I64(n)) => n.to_i64(),
            _ => -2,
        }
    }
}

/// A field's value in a flat field/value array (XINFO's replies).
pub fn field<'a>(v: &'a Val, name: &str) -> Option<&'a Val> {
    let Val::Array(items) = v else { return None };
    items.chunks_exact(2).find_map(|pair| match &pair[0] {
        Val::Bytes(b) if b == name.as_bytes() => Some(&pair[1]),
        _ => None,
    })
}

/// An integer, given as one or as its digits.
pub fn int_of(v: Option<&Val>) -> Option<i64> {
    match v? {
        Val::Int(n) => Some(*n),
        Val::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// An integer field of a flat field/value array.
pub fn int_field(v: &Val, name: &str) -> Option<i64> {
    int_of(field(v, name))
}
