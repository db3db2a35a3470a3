//! The queue cleaner's access to the keyspace: `RM_Call` with explicit arguments.
//!
//! Reads run without propagation. Every write goes through `write`, which runs the command
//! with the `!` flag so the server propagates it to replicas and the AOF exactly as run
//! (explicit keys and ids; for XADD `*` and XTRIM `~` the server itself rewrites the
//! arguments into the generated id / exact threshold before propagating). Errors come back
//! as replies (`E`), never as panics; a read that fails is "in doubt" to the callers.

use redis_module::{CallOptions, CallOptionsBuilder, CallReply, CallResult, Context};

/// `(member, score text)` pairs of a sorted-set range.
pub type ScoredMembers = Vec<(Vec<u8>, Vec<u8>)>;

pub struct Calls<'c> {
    ctx: &'c Context,
    read: CallOptions,
    write: CallOptions,
}

/// A key name built from parts (`<base><id>:logs`, ...).
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl<'c> Calls<'c> {
    pub fn new(ctx: &'c Context) -> Calls<'c> {
        Calls {
            ctx,
            read: CallOptionsBuilder::new().errors_as_replies().build(),
            write: CallOptionsBuilder::new()
                .errors_as_replies()
                .replicate()
                .build(),
        }
    }

    fn call(&self, cmd: &str, args: &[&[u8]]) -> CallResult<'static> {
        self.ctx.call_ext::<_, CallResult>(cmd, &self.read, args)
    }

    /// Runs a write and propagates it verbatim. Returns its integer reply, if any.
    pub fn write(&self, cmd: &str, args: &[&[u8]]) -> Option<i64> {
        match self.ctx.call_ext::<_, CallResult>(cmd, &self.write, args) {
            Ok(CallReply::I64(n)) => Some(n.to_i64()),
            Ok(_) => Some(0),
            Err(e) => {
                self.ctx.log_warning(&format!(
                    "retention: queue cleaner: {cmd} failed: {}",
                    e.to_utf8_string().unwrap_or_default()
                ));
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

    /// Number of the given keys that exist.
    pub fn exists(&self, keys: &[&[u8]]) -> bool {
        self.int("EXISTS", keys).is_some_and(|n| n > 0)
    }

    pub fn key_type(&self, name: &[u8]) -> Option<String> {
        match self.call("TYPE", &[name]) {
            Ok(CallReply::String(s)) => s.to_string(),
            _ => None,
        }
    }

    pub fn get(&self, name: &[u8]) -> Option<Vec<u8>> {
        self.bulk("GET", &[name]).ok().flatten()
    }

    pub fn hget(&self, name: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        self.bulk("HGET", &[name, field])
    }

    /// HMGET: one value per field (None = not set). Err on a non-hash key.
    pub fn hmget(&self, name: &[u8], fields: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, ()> {
        let mut args: Vec<&[u8]> = Vec::with_capacity(fields.len() + 1);
        args.push(name);
        args.extend_from_slice(fields);
        match self.call("HMGET", &args) {
            Ok(CallReply::Array(items)) => Ok(items
                .iter()
                .map(|item| match item {
                    Ok(CallReply::String(s)) => Some(s.as_bytes().to_vec()),
                    _ => None,
                })
                .collect()),
            _ => Err(()),
        }
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

    pub fn hexists(&self, hash: &[u8], field: &[u8]) -> Result<bool, ()> {
        self.int("HEXISTS", &[hash, field])
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

    pub fn xlen(&self, stream: &[u8]) -> Option<i64> {
        self.int("XLEN", &[stream])
    }
}
