//! The sweep engine: one background pass driven by the server cron, and at most one
//! command pass (`RETENTION.SWEEP`) driven by the event loop's before-sleep hook, each
//! advancing in bounded slices so other clients are served between slices.

pub mod command;
pub mod pass;
pub mod plan;
pub mod track;
pub mod work;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use redis_module::{BlockedClient, Context, ContextFlags, RedisValue, ThreadSafeContext};

use crate::config;
use crate::error::run_callback;
use crate::eventloop;
use crate::keyspace;
use crate::stats;
use crate::time::now_ms;
use pass::{Pass, PassKind, PassOptions, PassReport};

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
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
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

fn under_pressure() -> bool {
    let ratio = keyspace::used_memory_ratio();
    ratio > 0.0 && ratio >= config::PRESSURE_RATIO.ratio()
}

/// The server cron hook: continue (or start) the background pass for one budget.
pub fn on_cron_tick(ctx: &Context) {
    run_callback(ctx, "cron tick", || {
        let flags = ctx.get_flags();
        let acting = flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING);
        track::set_noting(acting);
        if !acting {
            // A replica receives the master's effects; it never decides on its own.
            return;
        }
        if !config::enabled() {
            return;
        }
        background_slice(ctx);
    });
}

fn background_slice(ctx: &Context) {
    let Some(mut pass) = take_background_pass() else {
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
        let flags = ctx.get_flags();
        let acting = flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING);
        if acting && config::enabled() {
            background_slice(ctx);
        }
    });
}

/// The background pass to advance now: the current one, or a new one when the pause
/// after the last pass is over. None while a command pass runs (one scan at a time).
fn take_background_pass() -> Option<Pass> {
    with_engine(|e| {
        if e.command.is_some() {
            return None;
        }
        if let Some(pass) = e.background.take() {
            return Some(pass);
        }
        if now_ms() < e.next_background_ms {
            return None;
        }
        Some(Pass::new(
            PassKind::Background,
            PassOptions {
                dry_run: config::dry_run(),
                ..PassOptions::default()
            },
            crate::state::policy(),
        ))
    })
}

fn record_finished(e: &mut Engine, pass: &Pass) {
    let report = pass.report();
    stats::with_stats(|s| {
        s.passes += 1;
        s.last_pass_ms = report.duration_ms;
    });
    e.last_report = Some(report);
}

/// A new policy applies from now on: the background pass restarts with it at once.
pub fn on_policy_changed() {
    with_engine(|e| {
        e.background = None;
        e.next_background_ms = 0;
    });
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
        return Err(crate::error::Error::Busy(busy));
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

/// A reply computed in an event-loop iteration is written only after the before-sleep hook,
/// and a request that arrives while the hook runs is read in the next iteration and answered
/// after the hook has run once more: a client can wait through two holds. Holding the loop
/// for half the budget per iteration keeps every client's wait within one budget.
const HOLDS_PER_WAIT: u64 = 2;
/// A share below this fraction of its hold is not worth a slice; when a job has sat out
/// `MAX_SKIPS_IN_A_ROW` iterations it gets this much anyway, so it progresses however busy
/// the server is.
const MIN_SHARE_DIVISOR: u64 = 4;
/// Iterations in a row a sliced job may sit out while the server is busy with its own work.
const MAX_SKIPS_IN_A_ROW: u32 = 2;

/// What is left of `hold_us` for the module in this event-loop iteration once the server's
/// own work is counted (clients' commands, the cron's rehashing and expiring): the module
/// fills the hold, it never stacks a whole hold on top of the server's work. A client's
/// wait can span this iteration and the one before it, so what the previous one took beyond
/// a hold is left out too. `None`: too little is left; sit this iteration out.
fn share_left(hold_us: u64, busy_us: u64, previous_us: u64, skipped: u32) -> Option<u64> {
    let left = left_of_hold(hold_us, busy_us, previous_us);
    match left >= floor_of(hold_us) {
        true => Some(left),
        false if skipped >= MAX_SKIPS_IN_A_ROW => Some(floor_of(hold_us)),
        false => None,
    }
}

fn left_of_hold(hold_us: u64, busy_us: u64, previous_us: u64) -> u64 {
    let overrun_before = previous_us.saturating_sub(hold_us);
    hold_us
        .saturating_sub(busy_us)
        .saturating_sub(overrun_before)
}

fn floor_of(hold_us: u64) -> u64 {
    (hold_us / MIN_SHARE_DIVISOR).max(1)
}

fn iteration_load_us() -> (u64, u64) {
    (
        eventloop::busy_this_iteration().as_micros() as u64,
        eventloop::previous_iteration().as_micros() as u64,
    )
}

/// One sliced job's claim on event-loop iterations: remembers how many it sat out.
struct IterationShare {
    skipped: Cell<u32>,
}

impl IterationShare {
    const fn new() -> IterationShare {
        IterationShare {
            skipped: Cell::new(0),
        }
    }

    /// This iteration's share of `hold_us` for the job, or None to sit it out.
    fn take(&self, hold_us: u64) -> Option<u64> {
        // The server cron's own work (rehashing, expiring) can take a millisecond or two:
        // a slice right before it would add to the same client's wait. Sitting out until
        // then is bounded by the cron's schedule, so it needs no count.
        if eventloop::cron_due_within(Duration::from_micros(hold_us * HOLDS_PER_WAIT)) {
            return None;
        }
        let (busy_us, previous_us) = iteration_load_us();
        let share = share_left(hold_us, busy_us, previous_us, self.skipped.get());
        self.skipped.set(match share {
            Some(_) => 0,
            None => self.skipped.get() + 1,
        });
        share
    }
}

/// The share of a job that runs from a module timer and cannot sit out (it would idle at
/// least a millisecond): never below the floor. `RETENTION.TRIM`, `RETENTION.JOBS CLEAN`.
pub fn share_of_iteration(hold_us: u64) -> u64 {
    let (busy_us, previous_us) = iteration_load_us();
    left_of_hold(hold_us, busy_us, previous_us).max(floor_of(hold_us))
}

thread_local! {
    static BEFORE_SLEEP_SHARE: IterationShare = const { IterationShare::new() };
    static BACKGROUND_SHARE: IterationShare = const { IterationShare::new() };
}

/// The event loop's before-sleep hook: handle noted new keys, then one slice of the
/// command pass if one runs, together for at most half the budget.
pub fn on_before_sleep(ctx: &Context) {
    let command_budget = with_engine(|e| e.command.as_ref().map(|c| c.pass.budget_us()));
    let budget_us = command_budget.unwrap_or_else(config::sweep_budget_us);
    if let Some(hold_us) = BEFORE_SLEEP_SHARE.with(|s| s.take(budget_us / HOLDS_PER_WAIT)) {
        before_sleep_work(ctx, hold_us, command_budget.is_some());
    }
    // Keep the loop spinning while work is left (also through an iteration sat out);
    // otherwise it would sleep until the next timer or client event (up to a cron period).
    let busy = track::pending() || with_engine(|e| e.command.is_some());
    match busy {
        true => eventloop::arm(),
        false => eventloop::disarm(),
    }
    eventloop::note_work_done();
}

/// Noted new keys first, then one slice of the command pass, together for `hold_us`.
fn before_sleep_work(ctx: &Context, hold_us: u64, command_running: bool) {
    let started = Instant::now();
    if track::pending() {
        // New keys first, leaving a running SWEEP at least half of the hold.
        let track_us = match command_running {
            true => hold_us / 2,
            false => hold_us,
        };
        run_callback(ctx, "new-key tracking", || {
            let flags = ctx.get_flags();
            if flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING) {
                track::process(ctx, track_us);
            }
        });
    }
    let spent_us = started.elapsed().as_micros() as u64;
    command_pass_slice(ctx, hold_us.saturating_sub(spent_us).max(hold_us / 2));
}

fn command_pass_slice(ctx: &Context, slice_us: u64) {
    let Some(mut current) = with_engine(|e| e.command.take()) else {
        return;
    };
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
        command::status_reply(
            running,
            e.last_report.as_ref(),
            e.next_background_ms,
            dbsize,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_fills_what_the_server_left_of_its_hold() {
        assert_eq!(share_left(500, 0, 0, 0), Some(500));
        assert_eq!(share_left(500, 120, 0, 0), Some(380));
        assert_eq!(share_left(4_000, 1_000, 0, 0), Some(3_000));
        // A previous iteration within its hold leaves this one alone.
        assert_eq!(share_left(500, 0, 500, 0), Some(500));
    }

    #[test]
    fn a_long_previous_iteration_shortens_this_one() {
        // A client that arrived during the previous iteration waits through this one too.
        assert_eq!(share_left(500, 50, 700, 0), Some(250));
        // The cron's rehashing took 2 ms: nothing is left of this iteration's hold.
        assert_eq!(share_left(500, 0, 2_000, 0), None);
    }

    #[test]
    fn a_job_sits_out_at_most_two_busy_iterations_in_a_row() {
        assert_eq!(share_left(500, 2_000, 0, 0), None);
        assert_eq!(share_left(500, 2_000, 0, 1), None);
        // Then it takes a quarter of its hold so it progresses however busy the server is.
        assert_eq!(share_left(500, 2_000, 0, 2), Some(125));
        // Slivers are not worth a slice.
        assert_eq!(share_left(500, 400, 0, 0), None);
        assert_eq!(share_left(1, 5, 0, 2), Some(1));
    }

    #[test]
    fn sitting_out_is_counted_per_job_and_reset_by_a_slice() {
        let share = IterationShare::new();
        share.skipped.set(1);
        // Outside a server the loop has no recorded work: the whole hold is left.
        assert_eq!(share.take(500), Some(500));
        assert_eq!(share.skipped.get(), 0);
    }
}
