//! Access control. On Redis 7.0 a module command cannot join ACL categories, so
//! `-@admin` does not reach it: the module checks the caller itself. Admin work (a sweep, a
//! policy reload, a stats reset, cleaning a queue) needs the rights of `CONFIG SET`; a
//! command's queue keys need the caller's key permissions. A denial answers the server's own
//! `NOPERM` form and is written to `ACL LOG`, as the server does for its own commands.
//! Where the server lets modules declare categories (Redis 7.2+, Valkey), every command also
//! carries them, so `-@admin` and `+@read` work natively there.

use std::os::raw::c_int;
use std::ptr::NonNull;

use redis_module::{raw, Context};

use crate::error::{Error, Result};
use crate::keyspace::OwnedName;

/// The command whose rights admin work requires.
const ADMIN_EQUIVALENT: [&[u8]; 3] = [b"CONFIG", b"SET", b"retention.policy-file"];

/// What a command does to a key, for the key-permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    Read,
    Write,
    /// Adds or changes values without returning them (ZADD, HSET, PEXPIREAT).
    Update,
    /// Removes values without returning them (ZREM, HDEL, UNLINK).
    Delete,
}

impl KeyAccess {
    fn flags(self) -> c_int {
        let flags = match self {
            KeyAccess::Read => raw::REDISMODULE_CMD_KEY_ACCESS,
            KeyAccess::Write => {
                raw::REDISMODULE_CMD_KEY_ACCESS
                    | raw::REDISMODULE_CMD_KEY_UPDATE
                    | raw::REDISMODULE_CMD_KEY_DELETE
            }
            KeyAccess::Update => raw::REDISMODULE_CMD_KEY_UPDATE | raw::REDISMODULE_CMD_KEY_INSERT,
            KeyAccess::Delete => raw::REDISMODULE_CMD_KEY_DELETE,
        };
        flags as c_int
    }
}

/// The calling client's user, released on drop. None when the call has no user to check
/// (the server's own fake clients, e.g. while loading the AOF).
struct Caller {
    name: OwnedName,
    user: NonNull<raw::RedisModuleUser>,
}

impl Caller {
    fn of(ctx: &Context) -> Option<Caller> {
        // SAFETY: command context; both APIs exist since Redis 7.0 (checked at load).
        let name_ptr = unsafe { raw::RedisModule_GetCurrentUserName?(ctx.ctx) };
        let name = NonNull::new(name_ptr)?;
        // SAFETY: a string the server created for us; read, then freed below.
        let bytes = unsafe { string_bytes(name.as_ptr()) };
        let owned = OwnedName::new(&bytes);
        // SAFETY: ctx owns the returned string; freeing it once is allowed.
        unsafe { raw::RedisModule_FreeString.unwrap()(ctx.ctx, name.as_ptr()) };
        let name = owned?;
        // SAFETY: a live string; the user is freed in Drop.
        let user = unsafe { raw::RedisModule_GetModuleUserFromUserName?(name.as_ptr()) };
        Some(Caller {
            name,
            user: NonNull::new(user)?,
        })
    }

    fn name(&self) -> String {
        String::from_utf8_lossy(self.name.name().bytes()).into_owned()
    }

    fn may_run(&self, argv: &[&[u8]]) -> bool {
        let owned: Vec<OwnedName> = argv.iter().filter_map(|a| OwnedName::new(a)).collect();
        if owned.len() != argv.len() {
            return false;
        }
        let mut ptrs: Vec<*mut raw::RedisModuleString> =
            owned.iter().map(OwnedName::as_ptr).collect();
        // SAFETY: a live user and `argc` live strings.
        let rc = unsafe {
            raw::RedisModule_ACLCheckCommandPermissions
                .map(|check| check(self.user.as_ptr(), ptrs.as_mut_ptr(), ptrs.len() as c_int))
        };
        // Without the API (older than 7.0) nothing can be checked: the server's own rules apply.
        rc.is_none_or(|rc| rc == raw::REDISMODULE_OK as c_int)
    }

    fn may_access(&self, key: &[u8], access: KeyAccess) -> bool {
        let Some(key) = OwnedName::new(key) else {
            return false;
        };
        // SAFETY: a live user and key string.
        let rc = unsafe {
            raw::RedisModule_ACLCheckKeyPermissions
                .map(|check| check(self.user.as_ptr(), key.as_ptr(), access.flags()))
        };
        rc.is_none_or(|rc| rc == raw::REDISMODULE_OK as c_int)
    }

    /// Writes a denial to `ACL LOG`, as the server does for its own commands.
    fn log_denial(&self, ctx: &Context, object: &[u8], reason: raw::RedisModuleACLLogEntryReason) {
        let (Some(add), Some(object)) = (
            // SAFETY: reading the API table, filled once at load.
            unsafe { raw::RedisModule_ACLAddLogEntry },
            OwnedName::new(object),
        ) else {
            return;
        };
        // SAFETY: command context, a live user and string.
        unsafe { add(ctx.ctx, self.user.as_ptr(), object.as_ptr(), reason) };
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        // SAFETY: reading the API table, filled once at load.
        if let Some(free) = unsafe { raw::RedisModule_FreeModuleUser } {
            // SAFETY: obtained from GetModuleUserFromUserName, freed once.
            unsafe { free(self.user.as_ptr()) };
        }
    }
}

/// # Safety
/// `s` must be a live module string.
unsafe fn string_bytes(s: *mut raw::RedisModuleString) -> Vec<u8> {
    let mut len = 0usize;
    let data = raw::RedisModule_StringPtrLen.unwrap()(s, &mut len);
    match data.is_null() {
        true => Vec::new(),
        false => std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec(),
    }
}

/// Admin work (`command` names it in messages) needs the rights of `CONFIG SET`.
pub fn require_admin(ctx: &Context, command: &str) -> Result<()> {
    let Some(caller) = Caller::of(ctx) else {
        return Ok(());
    };
    if caller.may_run(&ADMIN_EQUIVALENT) {
        return Ok(());
    }
    caller.log_denial(
        ctx,
        command.to_ascii_lowercase().as_bytes(),
        raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_CMD,
    );
    Err(Error::NoPerm(format!(
        "User {} has no permissions to run the '{}' command (it needs the rights of CONFIG SET)",
        caller.name(),
        command.to_ascii_lowercase()
    )))
}

/// The caller may `access` every key under `prefix` (a queue's keys: `<prefix:queue:>...`).
/// Checked on a name no real key has, so that only a pattern covering the whole prefix
/// (`~bull:orders:*`) grants it.
pub fn require_keys_under(ctx: &Context, prefix: &[u8], access: KeyAccess) -> Result<()> {
    let Some(caller) = Caller::of(ctx) else {
        return Ok(());
    };
    let probe = [prefix, b"\x00retention:any-key"].concat();
    if caller.may_access(&probe, access) {
        return Ok(());
    }
    caller.log_denial(
        ctx,
        prefix,
        raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
    );
    Err(Error::NoPerm(format!(
        "No permissions to access the keys of '{}*' (the user's key patterns must cover them all)",
        crate::args::shown(prefix)
    )))
}

/// The caller may `access` each of `keys`, keys a command touches without naming them (a
/// run set's `<base>:index` and `<base>:data`): the server checks only the keys a command
/// declares, so the module checks the others itself (the caller's user is looked up once).
pub fn require_keys(ctx: &Context, keys: &[&[u8]], access: KeyAccess) -> Result<()> {
    let Some(caller) = Caller::of(ctx) else {
        return Ok(());
    };
    let Some(denied) = keys.iter().find(|key| !caller.may_access(key, access)) else {
        return Ok(());
    };
    caller.log_denial(
        ctx,
        denied,
        raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
    );
    let verb = match access {
        KeyAccess::Read => "read",
        KeyAccess::Write | KeyAccess::Update => "write",
        KeyAccess::Delete => "delete from",
    };
    Err(Error::NoPerm(format!(
        "No permissions to {verb} the key '{}' (the user's key patterns must cover it)",
        crate::args::shown(denied)
    )))
}
