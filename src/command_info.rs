//! What the server learns of each keyed command beyond its name and flags: key specs with
//! the access the command really needs. The server checks a user's key rights against them
//! (a user whose keys are read-only, `%R~…`, may run a command whose keys are `RO`; the
//! legacy first/last/step range of `RM_CreateCommand` counts as read-write), and
//! `COMMAND GETKEYSANDFLAGS`, proxies and cluster clients read them.
//!
//! A run-set command names a base (`<base>`) and works on `<base>:index` and `<base>:data`:
//! the spec describes the argument; the module checks the derived keys itself.

use std::os::raw::c_int;

use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context};

/// How a command uses the key at one argument position, as Redis' own commands declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Reads and returns data (`GET`, `ZRANGE`).
    ReadData,
    /// Reads metadata only, never returns the value (`TYPE`, `OBJECT`, `ZCARD`).
    ReadMeta,
    /// Adds or changes elements (`ZADD`, `HSET`).
    Update,
    /// Removes elements or the key (`ZREM`, `XTRIM`, `DEL`).
    Delete,
    /// Reads the value and deletes the key (`GETDEL`, a migration's source).
    ReadAndDelete,
}

impl KeyUse {
    pub fn flags(self) -> KeySpecFlags {
        match self {
            KeyUse::ReadData => KeySpecFlags::READ_ONLY | KeySpecFlags::ACCESS,
            KeyUse::ReadMeta => KeySpecFlags::READ_ONLY,
            KeyUse::Update => KeySpecFlags::READ_WRITE | KeySpecFlags::UPDATE,
            KeyUse::Delete => KeySpecFlags::READ_WRITE | KeySpecFlags::DELETE,
            KeyUse::ReadAndDelete => {
                KeySpecFlags::READ_WRITE | KeySpecFlags::ACCESS | KeySpecFlags::DELETE
            }
        }
    }
}

/// Each keyed command and its keys: (argument position, use). Every other command names no
/// key.
pub const KEYED_COMMANDS: [(&str, &[(i32, KeyUse)]); 10] = [
    ("retention.trim", &[(1, KeyUse::Delete)]),
    ("retention.explain", &[(1, KeyUse::ReadMeta)]),
    ("activeruns.add", &[(1, KeyUse::Update)]),
    ("activeruns.del", &[(1, KeyUse::Delete)]),
    ("activeruns.get", &[(1, KeyUse::ReadData)]),
    ("activeruns.page", &[(1, KeyUse::ReadData)]),
    ("activeruns.after", &[(1, KeyUse::ReadData)]),
    // The module reads `<base>:index` for it with read rights (`acl::require_keys`), so the
    // base is declared the same way.
    ("activeruns.count", &[(1, KeyUse::ReadData)]),
    ("activeruns.expire", &[(1, KeyUse::Delete)]),
    (
        "activeruns.migrate",
        &[(1, KeyUse::ReadAndDelete), (2, KeyUse::Update)],
    ),
];

/// One key at `position`, no notes (so nothing is allocated that the server must copy).
fn key_spec(position: i32, key_use: KeyUse) -> KeySpec {
    KeySpec::new(
        None,
        key_use.flags(),
        BeginSearch::new_index(position),
        FindKeys::new_range(0, 1, 0),
    )
}

/// Declares the key specs of `KEYED_COMMANDS` (once, at load, after the commands are
/// created). Err names the command the server refused.
pub fn declare(ctx: &Context) -> Result<(), String> {
    // SAFETY: reading the API table, filled once at load.
    let (Some(get), Some(set_info)) = (unsafe { raw::RedisModule_GetCommand }, unsafe {
        raw::RedisModule_SetCommandInfo
    }) else {
        return Err("the server cannot take command info (RedisModule_SetCommandInfo)".into());
    };
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    for (name, keys) in KEYED_COMMANDS {
        let specs = keys.iter().map(|&(pos, key_use)| key_spec(pos, key_use));
        // Terminated by a zeroed spec, as the server expects.
        let mut specs = get_redis_key_spec(specs.collect());
        let info = raw::RedisModuleCommandInfo {
            version: &version,
            summary: std::ptr::null(),
            complexity: std::ptr::null(),
            since: std::ptr::null(),
            history: std::ptr::null_mut(),
            tips: std::ptr::null(),
            // 0: the command checks its own arity (several forms per command).
            arity: 0,
            key_specs: specs.as_mut_ptr(),
            args: std::ptr::null_mut(),
        };
        let name_c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: load-time context; `info` and `specs` outlive the call (the server copies).
        let done = unsafe {
            let command = get(ctx.ctx, name_c.as_ptr());
            !command.is_null() && set_info(command, &info) == raw::REDISMODULE_OK as c_int
        };
        if !done {
            return Err(format!("the server refused the key specs of {name}"));
        }
    }
    Ok(())
}
