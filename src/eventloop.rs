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
}

/// Called by the event loop while the pipe is readable; the byte stays so the loop keeps
/// spinning until `disarm`.
extern "C" fn on_wake_readable(_fd: c_int, _data: *mut c_void, _mask: c_int) {}

/// Creates the wake pipe and subscribes `before_sleep` to the event-loop hook.
pub fn init(ctx: &Context, before_sleep: raw::RedisModuleEventCallback) -> Result<(), String> {
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
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_EVENTLOOP,
        dataver: 1,
    };
    // SAFETY: module context during load; the callback is a plain extern fn.
    let subscribed =
        unsafe { raw::RedisModule_SubscribeToServerEvent.unwrap()(ctx.ctx, event, before_sleep) };
    if subscribed != raw::REDISMODULE_OK as c_int {
        return Err("cannot subscribe to the event-loop hook".into());
    }
    WAKE_PIPE.with(|p| p.set(Some((fds[0], fds[1]))));
    Ok(())
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

/// Called for both event-loop hooks: remembers when the loop woke up. True for the
/// before-sleep hook, the one that does work.
pub fn note_hook(subevent: u64) -> bool {
    if subevent == raw::REDISMODULE_SUBEVENT_EVENTLOOP_AFTER_SLEEP {
        AWAKE_SINCE.with(|a| a.set(Some(Instant::now())));
    }
    subevent == raw::REDISMODULE_SUBEVENT_EVENTLOOP_BEFORE_SLEEP
}

/// How long the server has been busy in this event-loop iteration: the clients' commands
/// and timers (the server cron included) since the loop woke up.
pub fn busy_this_iteration() -> Duration {
    AWAKE_SINCE
        .with(Cell::get)
        .map(|since| since.elapsed())
        .unwrap_or_default()
}
