//! The write gateway: the one layer that changes keys. Everything above it asks; nothing
//! else opens a key writable or runs a writing command. It knows
//! - **who asked** (`Asker`): a command's caller, whose key rights the server checked
//!   against the command's key specs and the module checked for the keys it derives, before
//!   any work started; or the module itself (passes, new-key tracking, queued work). A
//!   refusal says whose work it stopped, and the module's own refused writes are logged (a
//!   caller gets them in its reply);
//! - **whether this server may write now** (`Writer::new`): a master, not loading, not asked
//!   to hold writes (`CLIENT PAUSE WRITE`, a failover), not a read-only replica;
//! - **how the server would replicate the change**: a writing command runs through
//!   `RM_Call` with `!`, so the server propagates it as it ran it (it rewrites `XTRIM ~` and
//!   `XADD *` to their outcome itself); an expire time set through the key API goes out as
//!   the `PEXPIREAT` the server would write. The server wraps a callback's effects in
//!   `MULTI`/`EXEC`, as for any module. Never a script: replicas and restarts with `EVAL`
//!   renamed away, and tools that read the stream or the AOF, see the server's own commands;
//! - **what it did**: expire times are recorded for `RETENTION.EXPLAIN` once set (not when
//!   decided), and every write the server refuses is counted (`write_errors`).

use std::cell::RefCell;
use std::os::raw::c_int;
use std::ptr::NonNull;

use redis_module::{
    raw, CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags,
};

use crate::error::Error;
use crate::history;
use crate::keyspace::{self, select_db, selected_db, KeyName, OpenKey, OwnedName};
use crate::stats;

/// Who a write is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// The module's own work: background passes, new-key tracking, their queued work.
    Module,
    /// A command's caller (its rights were checked when the command started).
    Caller,
}

/// Permission to write in one server callback. The server's role cannot change inside a
/// callback, so the check made when it is created holds for its lifetime; it cannot be
/// kept past the callback (it borrows the callback's context).
pub struct Writer<'c> {
    ctx: &'c Context,
    asker: Asker,
    /// The last expire time replicated, as the string the stream carries: a slice's keys
    /// share one time per rule, so each `PEXPIREAT` reuses it instead of formatting and
    /// allocating its own (the server only takes a reference).
    time_text: RefCell<Option<(i64, OwnedName)>>,
}

thread_local! {
    static REPLICATED: CallOptions = CallOptionsBuilder::new()
        .errors_as_replies()
        .replicate()
        .build();
}

impl<'c> Writer<'c> {
    /// Ok when this server may write now; `what` names the work in the refusal. A replica
    /// answers the server's own `READONLY` error; a server holding writes says so.
    pub fn new(ctx: &'c Context, asker: Asker, what: &str) -> Result<Writer<'c>, Error> {
        let flags = ctx.get_flags();
        if !flags.contains(ContextFlags::MASTER) || flags.contains(ContextFlags::READONLY) {
            return Err(Error::ReadOnlyReplica);
        }
        if flags.contains(ContextFlags::LOADING) {
            let whose = match asker {
                Asker::Module => "the module's own work",
                Asker::Caller => "this command",
            };
            return Err(Error::Server(format!(
                "{what} ({whose}): the server is loading its dataset; try again when it is done"
            )));
        }
        if keyspace::avoid_replica_traffic() {
            return Err(Error::WritesPaused(what.to_string()));
        }
        Ok(Writer {
            ctx,
            asker,
            time_text: RefCell::new(None),
        })
    }

    pub fn ctx(&self) -> &'c Context {
        self.ctx
    }

    /// Runs a writing command in the context's selected database; the server propagates it
    /// as run. Err carries the server's error text (e.g. `WRONGTYPE …`); every refusal is
    /// counted (`write_errors`), and logged when the module itself asked.
    pub fn call(&self, cmd: &str, args: &[&[u8]]) -> Result<CallReply<'static>, String> {
        let reply = REPLICATED.with(|opts| self.ctx.call_ext::<_, CallResult>(cmd, opts, args));
        reply.map_err(|e| {
            stats::with_stats(|s| s.write_errors += 1);
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            if self.asker == Asker::Module {
                self.ctx
                    .log_warning(&format!("retention: {cmd} refused by the server: {text}"));
            }
            text
        })
    }

    /// Gives the key `name` (context's database) the absolute expire time `at_ms` through
    /// the key API, signals it as `PEXPIREAT` does (the `expire` keyspace event; closing the
    /// writable handle signals the key modified to WATCH and client tracking), and
    /// replicates it as `PEXPIREAT`. False when the key is gone.
    pub fn set_expire(&self, name: KeyName, at_ms: i64) -> bool {
        let mode =
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE | raw::REDISMODULE_OPEN_KEY_NOTOUCH;
        let done = OpenKey::open(self.ctx, name, mode).is_some_and(|key| {
            // SAFETY: a live handle opened writable just above.
            let rc = unsafe { raw::RedisModule_SetAbsExpire.unwrap()(key.view().raw(), at_ms) };
            rc == raw::REDISMODULE_OK as c_int
        });
        if !done {
            return false;
        }
        // SAFETY: valid ctx and name for the duration of the call.
        unsafe {
            raw::RedisModule_NotifyKeyspaceEvent.unwrap()(
                self.ctx.ctx,
                raw::NotifyEvent::GENERIC.bits(),
                c"expire".as_ptr(),
                name.as_ptr(),
            );
        }
        self.replicate_pexpireat(name, at_ms);
        true
    }

    fn replicate_pexpireat(&self, name: KeyName, at_ms: i64) {
        let mut cached = self.time_text.borrow_mut();
        if cached.as_ref().is_none_or(|(at, _)| *at != at_ms) {
            *cached = OwnedName::new(itoa::Buffer::new().format(at_ms).as_bytes())
                .map(|text| (at_ms, text));
        }
        let rc = match cached.as_ref() {
            // SAFETY: valid ctx, name and time string; "ss" = two RedisModuleStrings.
            Some((_, text)) => unsafe {
                raw::RedisModule_Replicate.unwrap()(
                    self.ctx.ctx,
                    c"PEXPIREAT".as_ptr(),
                    c"ss".as_ptr(),
                    name.as_ptr(),
                    text.as_ptr(),
                )
            },
            // SAFETY: as above; "sl" = one RedisModuleString and one long long.
            None => unsafe {
                raw::RedisModule_Replicate.unwrap()(
                    self.ctx.ctx,
                    c"PEXPIREAT".as_ptr(),
                    c"sl".as_ptr(),
                    name.as_ptr(),
                    at_ms as std::os::raw::c_longlong,
                )
            },
        };
        if rc != raw::REDISMODULE_OK as c_int {
            // The module refuses to load without PEXPIREAT; only a server that lost the
            // command afterwards gets here. Loud: replicas now miss this expire time.
            self.ctx.log_warning("retention: PEXPIREAT could not be replicated; a replica or the AOF misses an expire time");
            stats::with_stats(|s| s.replication_errors += 1);
        }
    }
}

/// One expire time decided and not yet set, with what EXPLAIN records once it is.
struct Staged {
    name: NonNull<raw::RedisModuleString>,
    db: i32,
    at_ms: i64,
    rule: usize,
    action: history::Action,
}

/// Expire times a walk decided inside an `RM_Scan` callback, set once the callback has
/// returned: a key is never modified inside it (Valkey 9 moves a key's object when it gains
/// an expire, and the scan would then read a freed handle). Whatever a callback set, the
/// server propagates together, in one `MULTI`/`EXEC`, when the callback returns.
#[derive(Default)]
pub struct ExpireBatch {
    staged: Vec<Staged>,
}

impl ExpireBatch {
    pub fn new() -> ExpireBatch {
        ExpireBatch::default()
    }

    /// Expire times decided and not yet set.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Records that `name` (in the context's selected database) gets `at_ms` under `rule`;
    /// nothing changes until `apply_staged`.
    pub fn stage(
        &mut self,
        ctx: &Context,
        name: KeyName,
        at_ms: i64,
        rule: usize,
        action: history::Action,
    ) {
        let Some(ptr) = NonNull::new(name.as_ptr()) else {
            return;
        };
        // SAFETY: keeps the name alive past the scan callback; released in `apply_staged`.
        unsafe { raw::RedisModule_RetainString.unwrap()(std::ptr::null_mut(), ptr.as_ptr()) };
        self.staged.push(Staged {
            name: ptr,
            db: selected_db(ctx),
            at_ms,
            rule,
            action,
        });
    }

    /// Sets (and replicates) every staged expire time, each in its key's database; returns
    /// how many could not be set (the key went away in between: nothing to replicate for
    /// those). Call outside scan callbacks, in the callback that decided them.
    pub fn apply_staged(&mut self, writer: &Writer) -> u64 {
        if self.staged.is_empty() {
            return 0;
        }
        let staged = std::mem::take(&mut self.staged);
        let ctx = writer.ctx;
        let selected = selected_db(ctx);
        let mut db = selected;
        let mut failed = 0;
        for s in staged {
            if s.db != db && select_db(ctx, s.db) {
                db = s.db;
            }
            // SAFETY: retained in `stage`, alive until freed below.
            let name = unsafe { KeyName::from_raw(s.name) };
            if s.db == db && writer.set_expire(name, s.at_ms) {
                history::record(db, name.bytes(), Some(s.rule), s.action);
            } else {
                failed += 1;
            }
            // SAFETY: retained in `stage`, released once.
            unsafe { raw::RedisModule_FreeString.unwrap()(std::ptr::null_mut(), s.name.as_ptr()) };
        }
        select_db(ctx, selected);
        failed
    }
}

impl Drop for ExpireBatch {
    fn drop(&mut self) {
        for s in self.staged.drain(..) {
            // SAFETY: retained in `stage` and not yet released.
            unsafe { raw::RedisModule_FreeString.unwrap()(std::ptr::null_mut(), s.name.as_ptr()) };
        }
    }
}
