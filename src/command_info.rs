//! Registers the commands of `commands::COMMANDS` with the server and tells it what each one
//! is: arity, key specs with the access the command really needs, arguments, summary,
//! complexity and tips (`RM_SetCommandInfo`), and ACL categories where the server takes
//! them (Redis 7.2+, Valkey). The server then checks arity and key rights before the module
//! runs (a user whose keys are read-only, `%R~…`, may run a command whose keys are `RO`),
//! and `COMMAND DOCS`/`INFO`/`GETKEYSANDFLAGS`, redis-cli's hints, proxies and cluster
//! clients all read the same facts.
//!
//! A run-set command names a base (`<base>`) and works on `<base>:index` and `<base>:data`:
//! the spec describes the argument; the module checks the derived keys itself.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};

use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context, RedisError};

use crate::commands::{Arg, ArgKind, CommandDef, COMMANDS};
use crate::error::run_command;

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

type CmdFunc = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

/// The server calls a plain C function per command; this one runs the handler at `I` in
/// `COMMANDS` behind `run_command`'s guard (errors and panics become replies).
extern "C" fn invoke<const I: usize>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let args = redis_module::decode_args(ctx, argv, argc);
    let reply = match COMMANDS.get(I).and_then(|def| def.handler) {
        Some(handler) => run_command(&context, args, handler),
        None => Err(RedisError::Str(
            "ERR this command is a container: give a subcommand",
        )),
    };
    context.reply(reply) as c_int
}

macro_rules! entry_points {
    ($($i:literal)*) => { [$(invoke::<$i> as CmdFunc),*] };
}

/// One entry point per table row; `register` refuses a table longer than this.
static ENTRY_POINTS: [CmdFunc; 32] = entry_points!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
);

/// Creates every command of the table, then declares what each one is. Err names what the
/// server refused (the module then does not load).
pub fn register(ctx: &Context) -> Result<(), String> {
    if COMMANDS.len() > ENTRY_POINTS.len() {
        return Err("more commands than entry points (command_info::ENTRY_POINTS)".into());
    }
    for (i, def) in COMMANDS.iter().enumerate() {
        let entry = def.handler.map(|_| ENTRY_POINTS[i]);
        create(ctx, def, entry)?;
    }
    for def in COMMANDS {
        let command = get_command(ctx, def.name)?;
        set_info(command, def)?;
        declare_acl_categories(ctx, command, def);
    }
    Ok(())
}

fn c_string(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("'{text}' holds a NUL byte"))
}

fn get_command(ctx: &Context, name: &str) -> Result<*mut raw::RedisModuleCommand, String> {
    // SAFETY: reading the API table, filled once at load.
    let get = unsafe { raw::RedisModule_GetCommand }
        .ok_or("the server cannot look up commands (RedisModule_GetCommand)")?;
    let name_c = c_string(name)?;
    // SAFETY: load-time context and a NUL-terminated name.
    let command = unsafe { get(ctx.ctx, name_c.as_ptr()) };
    match command.is_null() {
        true => Err(format!("the server does not know {name}")),
        false => Ok(command),
    }
}

fn create(ctx: &Context, def: &CommandDef, entry: Option<CmdFunc>) -> Result<(), String> {
    let flags = c_string(def.flags)?;
    // The legacy key range, for servers and tools that read only that.
    let first = def.keys.iter().map(|k| k.0).min().unwrap_or(0);
    let last = def.keys.iter().map(|k| k.0).max().unwrap_or(0);
    let step = i32::from(!def.keys.is_empty());
    let done = match def.name.split_once('|') {
        None => {
            let name = c_string(def.name)?;
            // SAFETY: reading the API table; load-time context, NUL-terminated strings.
            let create = unsafe { raw::RedisModule_CreateCommand }
                .ok_or("the server cannot create commands")?;
            unsafe {
                create(
                    ctx.ctx,
                    name.as_ptr(),
                    entry,
                    flags.as_ptr(),
                    first,
                    last,
                    step,
                )
            }
        }
        Some((parent, sub)) => {
            let parent = get_command(ctx, parent)?;
            let sub = c_string(sub)?;
            // SAFETY: as above; `parent` is this module's container, created just before.
            let create = unsafe { raw::RedisModule_CreateSubcommand }
                .ok_or("the server cannot create subcommands")?;
            unsafe {
                create(
                    parent,
                    sub.as_ptr(),
                    entry,
                    flags.as_ptr(),
                    first,
                    last,
                    step,
                )
            }
        }
    };
    match done == raw::REDISMODULE_OK as c_int {
        true => Ok(()),
        false => Err(format!("the server refused to create {}", def.name)),
    }
}

/// One key at `position`, no notes (so nothing is allocated that the server must copy).
fn key_spec(position: i32, key_use: KeyUse) -> KeySpec {
    KeySpec::new(
        None,
        key_use.flags(),
        BeginSearch::new_index(position),
        FindKeys::new_range(0, 1, 0),
    )
}

/// Owns the C strings and argument arrays handed to the server until it has copied them.
#[derive(Default)]
struct Arena {
    strings: Vec<CString>,
    arrays: Vec<Vec<raw::RedisModuleCommandArg>>,
}

impl Arena {
    fn text(&mut self, text: &str) -> Result<*const c_char, String> {
        let c = c_string(text)?;
        let ptr = c.as_ptr();
        self.strings.push(c);
        Ok(ptr)
    }

    fn optional_text(&mut self, text: &str) -> Result<*const c_char, String> {
        match text.is_empty() {
            true => Ok(std::ptr::null()),
            false => self.text(text),
        }
    }

    /// A zero-terminated array of the server's argument structs; null for no arguments.
    fn args(&mut self, args: &[Arg]) -> Result<*mut raw::RedisModuleCommandArg, String> {
        if args.is_empty() {
            return Ok(std::ptr::null_mut());
        }
        let mut out = Vec::with_capacity(args.len() + 1);
        for arg in args {
            out.push(self.arg(arg)?);
        }
        // SAFETY: an all-zero struct (null pointers, zero numbers) is the terminator.
        out.push(unsafe { std::mem::zeroed() });
        let ptr = out.as_mut_ptr();
        self.arrays.push(out);
        Ok(ptr)
    }

    fn arg(&mut self, arg: &Arg) -> Result<raw::RedisModuleCommandArg, String> {
        let arg_type = match arg.kind {
            ArgKind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
            ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
            ArgKind::Double => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
            ArgKind::Key(_) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
            ArgKind::Pattern => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PATTERN,
            ArgKind::PureToken => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
            ArgKind::OneOf(_) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
            ArgKind::Block(_) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
        };
        let key_spec_index = match arg.kind {
            ArgKind::Key(i) => i as c_int,
            _ => -1,
        };
        let subargs = match arg.kind {
            ArgKind::OneOf(parts) | ArgKind::Block(parts) => parts,
            _ => &[],
        };
        let mut flags = 0;
        if arg.optional {
            flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int;
        }
        if arg.multiple {
            flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int;
        }
        Ok(raw::RedisModuleCommandArg {
            name: self.text(arg.name)?,
            type_: arg_type,
            key_spec_index,
            token: match arg.token {
                Some(token) => self.text(token)?,
                None => std::ptr::null(),
            },
            summary: std::ptr::null(),
            since: std::ptr::null(),
            flags,
            deprecated_since: std::ptr::null(),
            subargs: self.args(subargs)?,
            display_text: std::ptr::null(),
        })
    }
}

fn set_info(command: *mut raw::RedisModuleCommand, def: &CommandDef) -> Result<(), String> {
    // SAFETY: reading the API table, filled once at load.
    let set_info = unsafe { raw::RedisModule_SetCommandInfo }
        .ok_or("the server cannot take command info (RedisModule_SetCommandInfo)")?;
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let mut arena = Arena::default();
    let specs = def
        .keys
        .iter()
        .map(|&(pos, key_use)| key_spec(pos, key_use));
    // Terminated by a zeroed spec, as the server expects.
    let mut specs = get_redis_key_spec(specs.collect());
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: arena.text(def.summary)?,
        complexity: arena.text(def.complexity)?,
        since: arena.text(def.since)?,
        history: std::ptr::null_mut(),
        tips: arena.optional_text(def.tips)?,
        arity: def.arity,
        key_specs: match def.keys.is_empty() {
            true => std::ptr::null_mut(),
            false => specs.as_mut_ptr(),
        },
        args: arena.args(def.args)?,
    };
    // SAFETY: load-time context; `info`, `specs` and `arena` outlive the call (the server
    // copies everything).
    let done = unsafe { set_info(command, &info) } == raw::REDISMODULE_OK as c_int;
    match done {
        true => Ok(()),
        false => Err(format!(
            "the server refused the command info of {} (its log says why)",
            def.name
        )),
    }
}

/// ACL categories need Redis 7.2+ or Valkey; on 7.0 the module checks admin work itself
/// (`acl::require_admin`). A refusal is logged, not fatal: the command still works.
fn declare_acl_categories(ctx: &Context, command: *mut raw::RedisModuleCommand, def: &CommandDef) {
    // SAFETY: reading the API table, filled once at load.
    let Some(set) = (unsafe { raw::RedisModule_SetCommandACLCategories }) else {
        return;
    };
    if def.acl.is_empty() {
        return;
    }
    let Ok(categories) = c_string(def.acl) else {
        return;
    };
    // SAFETY: a command of this module, during load.
    if unsafe { set(command, categories.as_ptr()) } != raw::REDISMODULE_OK as c_int {
        ctx.log_warning(&format!(
            "retention: cannot put {} in ACL categories '{}'",
            def.name, def.acl
        ));
    }
}
