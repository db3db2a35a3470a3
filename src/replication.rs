//! Which commands the module replicates its key-API changes as. Every expire time the module
//! sets goes to replicas and the AOF as the `PEXPIREAT` the server would write for it.
//! Hardened servers rename or remove commands (`rename-command`): without `PEXPIREAT` the
//! module refuses to load rather than set TTLs that replicas and the AOF would never see.

use redis_module::{CallOptionsBuilder, CallResult, Context};

/// Whether the server has a command named `name`, found without running it: a call with no
/// arguments fails the arity check of a command that exists, and the lookup of one that
/// does not. None when the answer is neither.
fn command_exists(ctx: &Context, name: &str) -> Option<bool> {
    let opts = CallOptionsBuilder::new()
        .errors_as_replies()
        .no_writes()
        .build();
    let no_args: [&[u8]; 0] = [];
    match ctx.call_ext::<_, CallResult>(name, &opts, &no_args) {
        Ok(_) => Some(true),
        Err(e) => {
            let msg = e.to_utf8_string().unwrap_or_default().to_ascii_lowercase();
            match (msg.contains("unknown"), msg.contains("wrong number")) {
                (true, _) => Some(false),
                (false, true) => Some(true),
                _ => None,
            }
        }
    }
}

/// Called once at load. Err (the module must not load) when expire times could not be
/// replicated at all.
pub fn check_commands(ctx: &Context) -> Result<(), String> {
    if command_exists(ctx, "PEXPIREAT") == Some(false) {
        return Err("the PEXPIREAT command is renamed or disabled (rename-command): the module replicates every expire time it sets as PEXPIREAT, and replicas and the AOF would miss them; keep PEXPIREAT, or restrict it with an ACL instead".into());
    }
    Ok(())
}

/// Valkey's module option (valkeymodule.h, 9.0+) saying the module copes with atomic slot
/// migration (`CLUSTER MIGRATESLOTS`); without it Valkey refuses such migrations while the
/// module is loaded. The module keeps no state tied to slot ownership, and whatever it does
/// to keys a target imports before it owns them is replicated like any other change (and
/// dropped with them if the import is cancelled). Not set elsewhere: Redis gives the bit no
/// such meaning.
const VALKEY_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION: i32 = 1 << 5;

/// Declares the module options the running server understands.
pub fn declare_module_options(ctx: &Context) {
    let info = ctx.server_info("server");
    let name = info
        .field("server_name")
        .and_then(|v| v.try_as_str().ok().map(str::to_string));
    let major = info.field("valkey_version").and_then(|v| {
        v.try_as_str()
            .ok()
            .and_then(|s| s.split('.').next()?.parse::<u32>().ok())
    });
    let is_valkey_9 = name.as_deref() == Some("valkey") && major.is_some_and(|m| m >= 9);
    if !is_valkey_9 {
        return;
    }
    // SAFETY: reading the API table, filled once at load.
    if let Some(set_options) = unsafe { redis_module::raw::RedisModule_SetModuleOptions } {
        // SAFETY: called once at load with the module's context.
        unsafe { set_options(ctx.ctx, VALKEY_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION) };
    }
}
