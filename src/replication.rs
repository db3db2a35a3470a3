//! Which commands the module can replicate its key-API changes as (SPEC 5.3). Every expire
//! time the module sets is replicated as `PEXPIREAT` (many at once as one `EVAL` of
//! `PEXPIREAT`s). Hardened servers rename or remove commands (`rename-command EVAL ""`):
//! without `EVAL` expire times go out one `PEXPIREAT` each; without `PEXPIREAT` the module
//! refuses to load rather than set TTLs that replicas and the AOF would never see.

use std::cell::Cell;

use redis_module::{CallOptionsBuilder, CallResult, Context};

thread_local! {
    static EVAL_AVAILABLE: Cell<bool> = const { Cell::new(true) };
}

/// Whether the server has a command named `name`, found without running it: a call with no
/// arguments fails the arity check of a command that exists, and the lookup of one that
/// does not. None when the answer is neither.
fn command_exists(ctx: &Context, name: &str) -> Option<bool> {
    let opts = CallOptionsBuilder::new().errors_as_replies().build();
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
    let eval = command_exists(ctx, "EVAL") != Some(false);
    EVAL_AVAILABLE.with(|a| a.set(eval));
    if !eval {
        ctx.log_notice("retention: EVAL is renamed or disabled: expire times are replicated one PEXPIREAT per key (a larger replication stream and AOF)");
    }
    Ok(())
}

pub fn eval_available() -> bool {
    EVAL_AVAILABLE.with(Cell::get)
}

/// `RM_Replicate` refused `EVAL`: from now on expire times go out key by key.
pub fn eval_refused(ctx: &Context) {
    if EVAL_AVAILABLE.with(|a| a.replace(false)) {
        ctx.log_warning("retention: EVAL could not be replicated; expire times are replicated one PEXPIREAT per key from now on");
    }
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
