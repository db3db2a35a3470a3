//! The sweep engine: one background pass driven by the server cron, and at most one
//! command pass (`RETENTION.SWEEP`) driven by the event loop's before-sleep hook, each
//! advancing in bounded slices so other clients are served between slices.

pub mod blocked;
pub mod command;
pub mod pass;
pub mod plan;
pub mod share;
pub mod track;
pub mod work;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis_module::{BlockedClient, Context, ContextFlags, RedisValue, ThreadSafeContext};

use crate::config;
use crate::error::run_callback;
use crate::eventloop;
use crate::keyspace;
use crate::policy::Policy;
use crate::stats;
use crate::time::now_ms;
use pass::{Pass, PassKind, PassOptions, PassReport};
pub use share::share_of_iteration;
use share::{IterationShare, HOLDS_PER_WAIT};

/// A `RETENTION.SWEEP` in progress and the client waiting for its report.
struct CommandPass {
    pass: Pass,
    client: BlockedClient,
    client_id: u64,
}

#[derive(Default)]
struct Engine {
    command: Option<CommandPass>,
    background: Option<Pass>,
    /// Unix ms before which no new background pass starts (`pass-interval-s`).
    next_background_ms: i64,
    last_report: Option<PassReport>,
    /// A backlog timer is scheduled.
    backlog_timer: bool,
    /// The policy the background sweeper last started a pass with.
    policy: Option<Rc<Policy>>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
    static BEFORE_SLEEP_SHARE: IterationShare = const { IterationShare::new() };
    static BACKGROUND_SHARE: IterationShare = const { IterationShare::new() };
}

fn with_engine<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

/// Under memory pressure the sweeper may work harder: up to this many times its budget.
const PRESSURE_BUDGET_FACTOR: u64 = 4;
/// While a background pass finds work (a backlog of keys without TTL), it also runs
/// between cron ticks, resting this many budgets after each slice: at most 1/(1+N) of a
/// core. On a compliant keyspace it runs only from the cron (budget × hz, ~1% of a core).
const BACKLOG_REST_FACTOR: u32 = 4;

pub fn under_pressure() -> bool {
    let ratio = keyspace::used_memory_ratio();
    ratio > 0.0 && ratio >= config::PRESSURE_RATIO.ratio()
}

/// Whether this server changes keys on its own: a master that is not loading. A replica
/// receives its master's effects and never decides anything itself.
fn acting(ctx: &Context) -> bool {
    let flags = ctx.get_flags();
    flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING)
}

/// Whether the server asked modules to hold writes for now (CLIENT PAUSE WRITE, FAILOVER, a
/// cluster manual failover), as its own active expire does: every write would move the
/// replication offset the replicas must reach.
fn holding_for_failover() -> bool {
    if keyspace::avoid_replica_traffic() {
        stats::with_stats(|s| s.held_for_failover += 1);
        return true;
    }
    false
}

/// The server cron hook: continue (or start) the background pass for one budget.
pub fn on_cron_tick(ctx: &Context) {
    run_callback(ctx, "cron tick", || {
        let acting = acting(ctx);
        track::set_noting(acting);
        if !acting {
            // Normally done at once by the role-change event; this covers a missed one.
            stop_all_work(ctx, DEMOTED);
            return;
        }
        if !config::enabled() || holding_for_failover() {
            return;
        }
        background_slice(ctx);
    });
}

const DEMOTED: &str = "this server became a replica (REPLICAOF or a failover); it now only applies its master's changes, and what the work had changed before was replicated";

/// The role-change event: a master that becomes a replica stops all its work at once.
pub fn on_role_changed(ctx: &Context, now_replica: bool) {
    if now_replica {
        track::set_noting(false);
        stop_all_work(ctx, DEMOTED);
    }
}

/// Stops every pass, sliced command and noted key, answering waiting clients with `why`.
/// Nothing half-done is left unreplicated: each slice replicates its own changes.
fn stop_all_work(ctx: &Context, why: &str) {
    let (command, background) = with_engine(|e| (e.command.take(), e.background.take()));
    let mut stopped = u64::from(background.is_some()) + blocked::stop_all(why);
    if let Some(c) = command {
        stopped += 1;
        let msg = format!(
            "RETENTION.SWEEP stopped after {} keys: {why}",
            c.pass.keys_visited()
        );
        let reply = Err(crate::error::Error::Aborted(msg).into());
        ThreadSafeContext::with_blocked_client(c.client).reply(reply);
    }
    track::drop_all();
    // Read-only commands started on a replica may go on (`blocked::stop_all`).
    if !blocked::pending() {
        eventloop::disarm();
    }
    if stopped > 0 {
        ctx.log_notice(&format!(
            "retention: {stopped} running task(s) stopped: {why}"
        ));
        stats::with_stats(|s| s.stopped_by_demotion += stopped);
    }
}

fn background_slice(ctx: &Context) {
    let Some(mut pass) = take_background_pass(ctx) else {
        return;
    };
    let pressure = under_pressure();
    let hold_us = match pressure {
        true => pass.budget_us() * PRESSURE_BUDGET_FACTOR,
        false => pass.budget_us(),
    };
    let Some(budget) = BACKGROUND_SHARE.with(|s| s.take(hold_us)) else {
        // The server is busy with its own work (e.g. the cron's rehashing): next time.
        with_engine(|e| e.background = Some(pass));
        schedule_backlog_slice(ctx);
        return;
    };
    if pressure {
        stats::with_stats(|s| s.pressure_ticks += 1);
    }
    let started = Instant::now();
    let finished = pass.run_slice(ctx, budget, pressure);
    let busy_us = started.elapsed().as_micros() as u64;
    stats::with_stats(|s| s.cron_busy_us += busy_us);
    with_engine(|e| match finished {
        true => {
            record_finished(e, &pass);
            e.next_background_ms = now_ms() + config::pass_interval_ms();
        }
        false => e.background = Some(pass),
    });
    schedule_backlog_slice(ctx);
}

/// While the background pass finds work, it also runs from a timer between cron ticks.
fn schedule_backlog_slice(ctx: &Context) {
    let due = with_engine(|e| {
        let backlog = e.command.is_none()
            && !e.backlog_timer
            && e.background.as_ref().is_some_and(Pass::found_backlog);
        if backlog {
            e.backlog_timer = true;
        }
        backlog.then(|| e.background.as_ref().map(Pass::budget_us))
    });
    if let Some(Some(budget_us)) = due {
        let rest = Duration::from_micros(budget_us) * BACKLOG_REST_FACTOR;
        ctx.create_timer(rest.max(Duration::from_millis(1)), backlog_tick, ());
    }
}

fn backlog_tick(ctx: &Context, _: ()) {
    with_engine(|e| e.backlog_timer = false);
    run_callback(ctx, "background backlog slice", || {
        if acting(ctx) && config::enabled() && !holding_for_failover() {
            background_slice(ctx);
        }
    });
}

/// The background pass to advance now: the current one, or a new one over every database
/// that has keys when the pause after the last pass is over. None while a command pass runs
/// (one scan at a time).
fn take_background_pass(ctx: &Context) -> Option<Pass> {
    let policy = crate::state::policy();
    with_engine(|e| {
        if e.command.is_some() {
            return None;
        }
        if !e.policy.as_ref().is_some_and(|p| Rc::ptr_eq(p, &policy)) {
            // A new policy applies from now on: the background pass restarts with it at once.
            e.background = None;
            e.next_background_ms = 0;
            e.policy = Some(policy.clone());
        }
        if let Some(pass) = e.background.take() {
            return Some(pass);
        }
        if now_ms() < e.next_background_ms {
            return None;
        }
        let mut dbs: std::collections::VecDeque<i32> = keyspace::databases_with_keys(ctx).into();
        Some(Pass::new(
            PassKind::Background,
            PassOptions {
                dry_run: config::dry_run(),
                db: dbs.pop_front().unwrap_or(0),
                more_dbs: dbs,
                ..PassOptions::default()
            },
            policy,
        ))
    })
}

fn record_finished(e: &mut Engine, pass: &Pass) {
    let report = pass.report();
    stats::with_stats(|s| {
        s.passes += 1;
        s.last_pass_duration_ms = report.duration_ms;
    });
    e.last_report = Some(report);
}

/// Why a command pass cannot start now, if it cannot.
fn command_pass_busy() -> Option<String> {
    with_engine(|e| {
        e.command.as_ref().map(|c| {
            format!(
                "a RETENTION.SWEEP pass is already running (client id {}, started {} ms ago, {} keys visited); wait for its reply or watch RETENTION.STATUS",
                c.client_id,
                c.pass.elapsed_ms(),
                c.pass.keys_visited()
            )
        })
    })
}

/// Starts a command pass: blocks the caller and schedules the first slice.
pub fn start_command_pass(ctx: &Context, opts: PassOptions) -> crate::error::Result<RedisValue> {
    if let Some(busy) = command_pass_busy() {
        return Err(crate::error::Error::InProgress(busy));
    }
    let flags = ctx.get_flags();
    if flags.intersects(ContextFlags::DENY_BLOCKING | ContextFlags::MULTI | ContextFlags::LUA) {
        return Err(crate::error::Error::arg(
            "RETENTION.SWEEP cannot run inside MULTI or a script: it runs in slices between other clients' commands; call it directly",
        ));
    }
    let pass = Pass::new(PassKind::Command, opts, crate::state::policy());
    let client_id = keyspace::client_id(ctx);
    let client = ctx.block_client();
    with_engine(|e| {
        e.command = Some(CommandPass {
            pass,
            client,
            client_id,
        })
    });
    // The first slice runs in this same event-loop iteration, before the server sleeps.
    eventloop::arm();
    Ok(RedisValue::NoReply)
}

/// The event loop's before-sleep hook: handle noted new keys, then one slice of the
/// command pass or of a waiting sliced command, together for at most half the budget.
pub fn on_before_sleep(ctx: &Context) {
    if !work_waiting() {
        eventloop::disarm();
        eventloop::note_work_done();
        return;
    }
    let acting = acting(ctx);
    if !acting {
        // What needs a master stops; read-only commands started on this replica go on.
        stop_all_work(ctx, DEMOTED);
    }
    if acting && holding_for_failover() {
        // The loop sleeps until the next event: the pause is polled at the cron's pace,
        // not spun on.
        eventloop::disarm();
    } else if work_waiting() {
        let command_budget = with_engine(|e| e.command.as_ref().map(|c| c.pass.budget_us()));
        let budget_us = command_budget.unwrap_or_else(config::sweep_budget_us);
        if let Some(hold_us) = BEFORE_SLEEP_SHARE.with(|s| s.take(budget_us / HOLDS_PER_WAIT)) {
            before_sleep_work(ctx, hold_us);
        }
        // Keep the loop spinning while work is left (also through an iteration sat out);
        // otherwise it would sleep until the next timer or client event (up to a cron period).
        match work_waiting() {
            true => eventloop::arm(),
            false => eventloop::disarm(),
        }
    }
    eventloop::note_work_done();
}

/// Noted keys, a SWEEP pass or a sliced command wait for the before-sleep hook.
fn work_waiting() -> bool {
    track::pending() || blocked::pending() || command_running()
}

fn command_running() -> bool {
    with_engine(|e| e.command.is_some())
}

thread_local! {
    /// Whose turn it is when a SWEEP pass and sliced commands both wait.
    static SWEEP_TURN: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Noted new keys first (leaving at least half of the hold when something else waits), then
/// one slice of the SWEEP pass or of the next sliced command, in turn.
fn before_sleep_work(ctx: &Context, hold_us: u64) {
    let started = Instant::now();
    let others = command_running() || blocked::pending();
    if track::pending() {
        let track_us = match others {
            true => hold_us / 2,
            false => hold_us,
        };
        run_callback(ctx, "new-key tracking", || {
            track::process(ctx, track_us, under_pressure())
        });
    }
    if !others {
        return;
    }
    let spent_us = started.elapsed().as_micros() as u64;
    let slice_us = hold_us.saturating_sub(spent_us).max(hold_us / 2);
    let sweep_turn = match (command_running(), blocked::pending()) {
        (true, true) => SWEEP_TURN.with(|t| t.replace(!t.get())),
        (running, _) => running,
    };
    match sweep_turn {
        true => command_pass_slice(ctx, slice_us),
        false => blocked::run_next(ctx, slice_us),
    }
}

fn command_pass_slice(ctx: &Context, slice_us: u64) {
    let Some(mut current) = with_engine(|e| e.command.take()) else {
        return;
    };
    if !keyspace::client_connected(current.client_id) {
        blocked::note_client_gone(ctx, "RETENTION.SWEEP");
        return; // dropping the blocked client releases it
    }
    let finished = run_callback(ctx, "RETENTION.SWEEP slice", || {
        current.pass.run_slice(ctx, slice_us, under_pressure())
    });
    match finished {
        Some(false) => with_engine(|e| e.command = Some(current)),
        Some(true) | None => {
            let report = current.pass.report();
            with_engine(|e| record_finished(e, &current.pass));
            let reply = command::report_reply(&report);
            let tsc = ThreadSafeContext::with_blocked_client(current.client);
            tsc.reply(Ok(reply));
        }
    }
}

/// The reply of `RETENTION.STATUS`.
pub fn status_reply(ctx: &Context) -> RedisValue {
    let dbsize = keyspace::db_size(ctx);
    with_engine(|e| {
        let running = e
            .command
            .as_ref()
            .map(|c| &c.pass)
            .or(e.background.as_ref());
        let keys_in_scope = running.map_or(0, |pass| command::keys_in_scope(ctx, pass));
        command::status_reply(
            running,
            e.last_report.as_ref(),
            e.next_background_ms,
            dbsize,
            keys_in_scope,
        )
    })
}
