//! redis-retention: keeps a Redis keyspace bounded from inside the server.
//!
//! This file only registers things with the server; each concern lives in its own module.

pub mod acl;
pub mod admin;
pub mod alloc;
pub mod args;
pub mod clients;
pub mod cluster;
pub mod command_info;
pub mod commands;
pub mod config;
pub mod error;
pub mod eventloop;
pub mod explain;
pub mod history;
pub mod keyspace;
pub mod observe;
pub mod policy;
pub mod queue;
pub mod replication;
pub mod report;
pub mod runs;
pub mod server_version;
pub mod state;
pub mod stats;
pub mod suggest;
pub mod sweep;
pub mod time;
pub mod trim;
pub mod write;

mod registration {
    use redis_module::server_events::{FlushSubevent, ServerRole};
    use redis_module::{
        raw, redis_module, Context, InfoContext, NotifyEvent, RedisResult, RedisString, Status,
    };

    use crate::error::run_callback;
    use crate::{clients, eventloop, observe, queue, runs, state, stats, sweep, trim};

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        // Before anything else: on a server older than 7.0 the APIs below are missing.
        if let Err(err) =
            crate::server_version::check().and_then(|()| crate::config::register(ctx, args))
        {
            ctx.log_warning(&format!("retention: module not loaded: {err}"));
            return Status::Err;
        }
        if let Some(err) = state::take_startup_error() {
            ctx.log_warning(&format!("retention: module not loaded: {err}"));
            return Status::Err;
        }
        if let Err(err) = crate::replication::check_commands(ctx) {
            ctx.log_warning(&format!("retention: module not loaded: {err}"));
            return Status::Err;
        }
        crate::replication::declare_module_options(ctx);
        if let Err(err) = crate::command_info::register(ctx) {
            ctx.log_warning(&format!("retention: module not loaded: {err}"));
            return Status::Err;
        }
        register_planners();
        if let Err(err) =
            eventloop::init(ctx, Some(on_event_loop), Some(on_cron_loop)).and_then(|()| {
                eventloop::subscribe(
                    ctx,
                    raw::REDISMODULE_EVENT_SWAPDB,
                    Some(on_swapdb),
                    "SWAPDB event",
                )
            })
        {
            ctx.log_warning(&format!("retention: module not loaded: {err}"));
            return Status::Err;
        }
        Status::Ok
    }

    /// `MODULE UNLOAD` is refused: the server does not remove a module's event-loop file
    /// descriptor on unload (it would call into the unmapped library on its next readiness),
    /// and blocked commands, queued work and the module's thread-local state have no safe
    /// point to be torn down from. The log line says so; `MODULE UNLOAD` answers the
    /// server's own error and the module keeps working.
    fn deinit(ctx: &Context) -> Status {
        ctx.log_warning("retention: MODULE UNLOAD refused: the module stays loaded until the server restarts (the server would keep calling its event-loop hook after unload); to stop its work: CONFIG SET retention.enabled no");
        Status::Err
    }

    /// Each action that needs more than one visit per key plans its own work.
    fn register_planners() {
        use crate::policy::ActionKind;
        use crate::sweep::work::register_planner;
        register_planner(ActionKind::Trim, trim::plan_rule);
        register_planner(ActionKind::Queue, queue::plan_rule);
        register_planner(ActionKind::Runs, runs::plan_rule);
    }

    extern "C" fn on_event_loop(
        ctx: *mut raw::RedisModuleCtx,
        _event: raw::RedisModuleEvent,
        subevent: u64,
        _data: *mut std::os::raw::c_void,
    ) {
        if eventloop::note_hook(subevent) {
            sweep::on_before_sleep(&Context::new(ctx));
        }
    }

    fn on_key_event(ctx: &Context, event: NotifyEvent, name: &str, key: &[u8]) {
        run_callback(ctx, "keyspace notification", || {
            sweep::track::on_key_event(ctx, event, name, key)
        });
    }

    #[redis_module_macros::role_changed_event_handler]
    fn on_role_changed(ctx: &Context, role: ServerRole) {
        run_callback(ctx, "role change", || {
            sweep::on_role_changed(ctx, role == ServerRole::Replica)
        });
    }

    /// Orphan observations and remembered actions are about keys of one database: after a
    /// flush or a swap they would be about other keys, so every clock starts over (in doubt,
    /// leave) and EXPLAIN forgets what it did.
    fn forget_keys() {
        observe::clear();
        crate::history::clear();
    }

    #[redis_module_macros::flush_event_handler]
    fn on_flush(ctx: &Context, event: FlushSubevent) {
        if event == FlushSubevent::Ended {
            run_callback(ctx, "flush", forget_keys);
        }
    }

    extern "C" fn on_swapdb(
        ctx: *mut raw::RedisModuleCtx,
        _event: raw::RedisModuleEvent,
        _subevent: u64,
        _data: *mut std::os::raw::c_void,
    ) {
        run_callback(&Context::new(ctx), "SWAPDB", forget_keys);
    }

    extern "C" fn on_cron_loop(
        ctx: *mut raw::RedisModuleCtx,
        _event: raw::RedisModuleEvent,
        _subevent: u64,
        data: *mut std::os::raw::c_void,
    ) {
        // SAFETY: the cron-loop event's data is a RedisModuleCronLoopV1 (the crate's own
        // handler reads it as another struct, hence this one).
        let hz = unsafe { data.cast::<raw::RedisModuleCronLoopV1>().as_ref() }.map(|d| d.hz);
        eventloop::note_cron(hz.unwrap_or(10));
        let ctx = Context::new(ctx);
        sweep::on_cron_tick(&ctx);
        clients::on_cron_tick(&ctx);
    }

    #[redis_module_macros::info_command_handler]
    fn on_info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
        stats::add_info(ctx)
    }

    redis_module! {
        name: "retention",
        version: crate::commands::MODULE_VERSION,
        allocator: (crate::alloc::ModuleAlloc, crate::alloc::ModuleAlloc),
        data_types: [],
        init: init,
        deinit: deinit,
        event_handlers: [
            [@NEW @ZSET: on_key_event],
        ],
    }
}
