//! Running work between other clients' commands without idling in between.
//!
//! A `RETENTION.SWEEP` advances from the server's before-sleep hook: once per event-loop
//! iteration, after the clients that had input were served. Module timers cannot do this:
//! they have millisecond resolution, so a "zero-delay" timer idles ~1 ms between slices.
//! While a pass is active, a byte left in a pipe registered with the event loop keeps the
//! loop from sleeping, so slices follow each other as fast as other clients allow.

use std::cell::Cell;
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

use redis_module::{raw, Context};

thread_local! {
    static WAKE_PIPE: Cell<Option<(c_int, c_int)>> = const { Cell::new(None) };
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// When the event loop last woke up (its after-sleep hook).
    static AWAKE_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// When the module's before-sleep work last ended.
    static WORK_ENDED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// How long the previous iteration kept the loop busy, from waking up to the end of the
    /// module's before-sleep work (its sleep excluded).
    static PREVIOUS_ITERATION: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// When the server cron will next run, as the event loop schedules it, and its period.
    static NEXT_CRON: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// Called by the event loop while the pipe is readable; the byte stays so the loop keeps
/// spinning until `disarm`.
extern "C" fn on_wake_readable(_fd: c_int, _data: *mut c_void, _mask: c_int) {}

/// Creates the wake pipe and subscribes `before_sleep` to the event-loop hook and `cron` to
/// the server cron.
pub fn init(
    ctx: &Context,
    before_sleep: raw::RedisModuleEventCallback,
    cron: raw::RedisModuleEventCallback,
) -> Result<(), String> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2 failed: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: valid fd and callback; the callback ignores its user data.
    let added = unsafe {
        raw::RedisModule_EventLoopAdd.unwrap()(
            fds[0],
            raw::REDISMODULE_EVENTLOOP_READABLE as c_int,
            Some(on_wake_readable),
            std::ptr::null_mut(),
        )
    };
    if added != raw::REDISMODULE_OK as c_int {
        return Err("RedisModule_EventLoopAdd failed".into());
    }
    subscribe(
        ctx,
        raw::REDISMODULE_EVENT_EVENTLOOP,
        before_sleep,
        "event-loop hook",
    )?;
    subscribe(ctx, raw::REDISMODULE_EVENT_CRON_LOOP, cron, "server cron")?;
    WAKE_PIPE.with(|p| p.set(Some((fds[0], fds[1]))));
    Ok(())
}

/// Subscribes `callback` to the server event `id` (a `REDISMODULE_EVENT_*`).
pub fn subscribe(
    ctx: &Context,
    id: u64,
    callback: raw::RedisModuleEventCallback,
    what: &str,
) -> Result<(), String> {
    let event = raw::RedisModuleEvent { id, dataver: 1 };
    // SAFETY: module context during load; the callback is a plain extern fn.
    let subscribed =
        unsafe { raw::RedisModule_SubscribeToServerEvent.unwrap()(ctx.ctx, event, callback) };
    match subscribed == raw::REDISMODULE_OK as c_int {
        true => Ok(()),
        false => Err(format!("cannot subscribe to the {what}")),
    }
}

/// Keeps the event loop from sleeping until `disarm`.
pub fn arm() {
    if ARMED.with(|a| a.replace(true)) {
        return;
    }
    if let Some((_, write_fd)) = WAKE_PIPE.with(Cell::get) {
        // SAFETY: our own non-blocking pipe; a failed write only costs an idle wait.
        unsafe { libc::write(write_fd, b"w".as_ptr().cast(), 1) };
    }
}

pub fn disarm() {
    if !ARMED.with(|a| a.replace(false)) {
        return;
    }
    if let Some((read_fd, _)) = WAKE_PIPE.with(Cell::get) {
        let mut buf = [0u8; 16];
        // SAFETY: our own non-blocking pipe, drained into a local buffer.
        unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
    }
}

/// Called for both event-loop hooks: remembers when the loop woke up and how long the
/// iteration before kept it busy. True for the before-sleep hook, the one that does work.
pub fn note_hook(subevent: u64) -> bool {
    if subevent == raw::REDISMODULE_SUBEVENT_EVENTLOOP_AFTER_SLEEP {
        let now = Instant::now();
        let previous = match (AWAKE_SINCE.with(Cell::get), WORK_ENDED.with(Cell::get)) {
            (Some(woke), Some(ended)) => ended.saturating_duration_since(woke),
            _ => Duration::ZERO,
        };
        PREVIOUS_ITERATION.with(|p| p.set(previous));
        AWAKE_SINCE.with(|a| a.set(Some(now)));
    }
    subevent == raw::REDISMODULE_SUBEVENT_EVENTLOOP_BEFORE_SLEEP
}

/// Marks the end of the module's before-sleep work: what follows until the loop sleeps is
/// writing replies.
pub fn note_work_done() {
    WORK_ENDED.with(|e| e.set(Some(Instant::now())));
}

/// How long the previous event-loop iteration kept the server busy.
pub fn previous_iteration() -> Duration {
    PREVIOUS_ITERATION.with(Cell::get)
}

/// How long the server has been busy in this event-loop iteration: the clients' commands
/// and timers (the server cron included) since the loop woke up.
pub fn busy_this_iteration() -> Duration {
    AWAKE_SINCE
        .with(Cell::get)
        .map(|since| since.elapsed())
        .unwrap_or_default()
}

/// Called at the end of each server cron run (the cron-loop event): the event loop runs
/// the cron again 1000/hz ms after this run ends.
pub fn note_cron(hz: i32) {
    let period = Duration::from_millis(1000 / u64::try_from(hz.max(1)).unwrap_or(1));
    NEXT_CRON.with(|n| n.set(Some((Instant::now() + period, period))));
}

/// Whether the server cron is due within `soon`. Its own work (rehashing, expiring) can take
/// a millisecond or two; a slice just before it would add to the same client's wait.
pub fn cron_due_within(soon: Duration) -> bool {
    NEXT_CRON
        .with(Cell::get)
        .is_some_and(|(next, period)| due_within(next, period, Instant::now(), soon))
}

/// Never true for a `soon` above an eighth of the cron period: a job that waited that long
/// for every cron would lose a good part of its time (a high `hz`, or a large budget).
fn due_within(next: Instant, period: Duration, now: Instant, soon: Duration) -> bool {
    soon * 8 <= period && next <= now + soon
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cron_is_due_only_within_a_short_guard() {
        let now = Instant::now();
        let period = Duration::from_millis(100);
        let ms = Duration::from_millis;
        assert!(due_within(now + ms(1), period, now, ms(2)));
        assert!(due_within(now, period, now, ms(2)));
        assert!(!due_within(now + ms(50), period, now, ms(2)));
        // A guard of a quarter period would idle the job a quarter of the time.
        assert!(!due_within(now + ms(1), period, now, ms(25)));
    }
}
