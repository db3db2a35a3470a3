//! Commands whose caller waits while their work proceeds in slices (`RETENTION.TRIM`,
//! `RETENTION.JOBS ... CLEAN`). They advance from the same before-sleep hook as a
//! `RETENTION.SWEEP` pass and take the same share of each event-loop iteration, sitting out
//! the iterations the server's own work made long; a module timer could not (its slices run
//! whenever it fires, and a "zero-delay" timer idles a millisecond between them).
//!
//! A command whose client goes away (closed its connection, Ctrl-C in redis-cli, CLIENT KILL)
//! stops at its next slice (a closed socket is freed, and noticed, one slice later), as the
//! server's own blocking commands do: what it changed so far was replicated slice by slice,
//! and nobody is left to read its reply.

use std::cell::RefCell;
use std::collections::VecDeque;

use redis_module::{BlockedClient, Context, RedisValue, ThreadSafeContext};

use crate::error::{run_callback, Error, Result};
use crate::{eventloop, keyspace, stats};

/// Work done for one blocked client.
pub trait SlicedCommand {
    /// Works for about `budget_us`; the reply once finished.
    fn slice(&mut self, ctx: &Context, budget_us: u64) -> Option<Result<RedisValue>>;
    /// The command's name, for messages.
    fn name(&self) -> &'static str;
    /// The database the command was called in.
    fn db(&self) -> i32;
    /// A read-only command started on a replica goes on while the server stays a replica
    /// (`RETENTION.REPORT`); everything else stops when the server is not an acting master.
    fn started_on_replica(&self) -> bool {
        false
    }
}

struct Waiting {
    client: BlockedClient,
    client_id: u64,
    command: Box<dyn SlicedCommand>,
}

thread_local! {
    static WAITING: RefCell<VecDeque<Waiting>> = const { RefCell::new(VecDeque::new()) };
}

/// Blocks the calling client until `command` has finished in slices.
pub fn block(ctx: &Context, command: Box<dyn SlicedCommand>) -> RedisValue {
    let client_id = keyspace::client_id(ctx);
    let client = ctx.block_client();
    let waiting = Waiting {
        client,
        client_id,
        command,
    };
    WAITING.with(|w| w.borrow_mut().push_back(waiting));
    // The first slice runs in this same event-loop iteration, before the server sleeps.
    eventloop::arm();
    RedisValue::NoReply
}

pub fn pending() -> bool {
    WAITING.with(|w| !w.borrow().is_empty())
}

/// One slice of the command at the front; it then waits at the back (several waiting
/// clients share the iterations in turn).
pub fn run_next(ctx: &Context, budget_us: u64) {
    let Some(mut waiting) = WAITING.with(|w| w.borrow_mut().pop_front()) else {
        return;
    };
    let name = waiting.command.name();
    if !keyspace::client_connected(waiting.client_id) {
        note_client_gone(ctx, name);
        return; // dropping the blocked client releases it
    }
    keyspace::select_db(ctx, waiting.command.db());
    let outcome = run_callback(ctx, name, || waiting.command.slice(ctx, budget_us));
    crate::alloc::settle();
    let reply = match outcome {
        Some(None) => {
            WAITING.with(|w| w.borrow_mut().push_back(waiting));
            return;
        }
        Some(Some(reply)) => reply,
        None => Err(Error::Server(format!(
            "{name} stopped by an internal error (see the server log)"
        ))),
    };
    answer(waiting.client, reply);
}

/// Stops every waiting command but those started on a replica (see
/// `SlicedCommand::started_on_replica`), answering its client with `why`; returns how many.
pub fn stop_all(why: &str) -> u64 {
    let stopped: Vec<Waiting> = WAITING.with(|w| {
        let mut w = w.borrow_mut();
        let (keep, stop): (VecDeque<Waiting>, VecDeque<Waiting>) =
            w.drain(..).partition(|x| x.command.started_on_replica());
        *w = keep;
        stop.into()
    });
    let count = stopped.len() as u64;
    for waiting in stopped {
        let name = waiting.command.name();
        answer(
            waiting.client,
            Err(Error::Aborted(format!("{name} stopped: {why}"))),
        );
    }
    count
}

/// Logs and counts a command stopped because its client went away.
pub fn note_client_gone(ctx: &Context, name: &str) {
    ctx.log_notice(&format!(
        "retention: {name} stopped: its client disconnected"
    ));
    stats::with_stats(|s| s.stopped_client_gone += 1);
}

fn answer(client: BlockedClient, reply: Result<RedisValue>) {
    ThreadSafeContext::with_blocked_client(client).reply(reply.map_err(Into::into));
}
