//! `RETENTION.CLIENTS IDLE <duration> [KILL] [NAME <glob>]` and the background reaper
//! (`retention.clients-idle-kill-s`): normal clients idle longer than a limit, listed or closed.
//!
//! Never touched: blocked clients (queue workers waiting in BRPOPLPUSH, BZPOPMIN, BLMOVE,
//! XREAD BLOCK, clients blocked by a module), pub/sub clients (RESP3 ones included),
//! replicas, MONITOR, the master link of a replica, clients with a flag this module does not
//! know (a newer server's special links: in doubt, leave), and the caller.
//!
//! The clients come from `CLIENT LIST`, run through `RM_Call`: the module API has no way to
//! enumerate clients, and `RM_GetClientInfoById` has no idle time and does not say replica,
//! master or MONITOR. A server that renamed `CLIENT` away gets an error naming the cause.
//! They are closed with `RM_DeauthenticateAndCloseClient`, which finds a client by id and
//! frees it before the event loop sleeps, where `CLIENT KILL ID` scans every client for each
//! one it closes. Closing 5,000 idle of 5,000 clients held the server 159 ms on Redis 7.0 and
//! 109 ms on Valkey 9.1 (mostly closing the sockets); with `CLIENT KILL ID`, 275 and 442 ms.
//! A client is looked at and closed in one command (or one cron callback), so it cannot
//! change state in between.
//!
//! The background reaper lists every client at most once per `reap_interval`, then works
//! through the idle ones it found a bounded number per tick, looking at each again right
//! before closing it (`CLIENT LIST ID`, which looks clients up by id): a tick that does not
//! list costs the same with 100 or 100,000 clients.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::os::raw::c_int;
use std::time::{Duration, Instant};

use redis_module::{raw, Context, RedisString, RedisValue};
use redis_module::{CallOptionResp, CallOptions, CallOptionsBuilder, CallReply, CallResult};

use crate::acl;
use crate::args::{shown, Args, OptionSet};
use crate::config;
use crate::error::{run_callback, Error, Result};
use crate::policy::glob::Glob;
use crate::stats::{self, key};

const COMMAND: &str = "RETENTION.CLIENTS";

/// The largest idle limit accepted, as for the server's own `timeout` (an `int` of seconds).
pub const MAX_IDLE_S: i64 = i32::MAX as i64;

/// The background reaper looks at (and closes) at most this many clients per cron tick; the
/// rest wait for the next tick, so a server with thousands of idle clients is not stalled by
/// one callback.
pub const MAX_KILLS_PER_TICK: usize = 100;

/// How often the background reaper lists clients, at most: a tenth of the limit, from 1 s
/// (the resolution of idle times) to 60 s. `CLIENT LIST` costs about 1 µs per client (5 ms
/// with 5000 clients); a client idle past the limit is closed within a tenth of the limit (at
/// least 1 s) after, plus a tick per `MAX_KILLS_PER_TICK` clients found before it.
fn reap_interval(limit_s: u64) -> Duration {
    Duration::from_secs((limit_s / 10).clamp(1, 60))
}

/// The background reaper's schedule: when it last listed every client, and the idle ones
/// that listing found, not yet looked at again.
#[derive(Debug, Default)]
pub struct ReapPlan {
    /// Client ids, longest idle first.
    waiting: VecDeque<u64>,
    listed_at: Option<Instant>,
}

impl ReapPlan {
    /// Whether this tick lists every client: only once the last listing's clients have all
    /// been looked at again, and at most once per `interval`.
    pub fn list_due(&self, now: Instant, interval: Duration) -> bool {
        self.waiting.is_empty()
            && self
                .listed_at
                .is_none_or(|at| now.saturating_duration_since(at) >= interval)
    }

    /// Records a listing (at `now`, whether or not it worked) and the idle clients it found.
    pub fn listed(&mut self, now: Instant, idle: impl IntoIterator<Item = u64>) {
        self.listed_at = Some(now);
        self.waiting.extend(idle);
    }

    /// The clients to look at again and close this tick: at most `MAX_KILLS_PER_TICK`.
    pub fn next_batch(&mut self) -> Vec<u64> {
        let n = self.waiting.len().min(MAX_KILLS_PER_TICK);
        self.waiting.drain(..n).collect()
    }

    /// Forgets the clients found (the reaper was turned off: they are not closed later).
    pub fn forget(&mut self) {
        self.waiting.clear();
    }

    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

/// The flags of a client that may be closed for being idle: `N` (none), `x` (in MULTI),
/// `d` (watched key touched), `t`/`R`/`B` (client-side caching, as for the server's own
/// `timeout`), `c`/`A` (being closed anyway), `U` (unix socket), `r` (cluster READONLY), `e`
/// (no-evict), `T` (no-touch). Any other letter spares the client; `u` (just unblocked, its
/// reply not yet written) among them.
const NORMAL_FLAGS: &[u8] = b"NxdtRBcAUreT";

/// One line of `CLIENT LIST`, the fields this module uses (borrowed from the reply: a
/// server with thousands of clients answers megabytes, read without copying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    pub id: u64,
    pub addr: &'a [u8],
    pub name: &'a [u8],
    pub user: &'a [u8],
    pub idle_s: u64,
    pub flags: &'a [u8],
    /// Channel, pattern and shard-channel subscriptions (`sub` + `psub` + `ssub`).
    pub subscriptions: u64,
    pub cmd: &'a [u8],
}

/// Why a client is never closed for being idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spared {
    Blocked,
    /// Just unblocked (`u`): a client served by a push earlier in this event-loop iteration,
    /// its reply not yet written, still shows the idle time of its blocking command, and
    /// closing it would drop the element it popped. (Pending output alone does not spare a
    /// client: one that stopped reading keeps it for ever, and the server's `timeout` closes
    /// it too.)
    Replying,
    PubSub,
    Replica,
    Master,
    Monitor,
    UnknownFlag,
}

impl ClientInfo<'_> {
    /// None for a normal client, else why it is spared.
    pub fn spared(&self) -> Option<Spared> {
        let has = |flag: u8| self.flags.contains(&flag);
        if has(b'b') {
            Some(Spared::Blocked)
        } else if has(b'u') {
            Some(Spared::Replying)
        } else if has(b'P') || self.subscriptions > 0 {
            Some(Spared::PubSub)
        } else if has(b'S') {
            Some(Spared::Replica)
        } else if has(b'M') {
            Some(Spared::Master)
        } else if has(b'O') {
            Some(Spared::Monitor)
        } else if self.flags.is_empty() || self.flags.iter().any(|f| !NORMAL_FLAGS.contains(f)) {
            Some(Spared::UnknownFlag)
        } else {
            None
        }
    }
}

/// The fields read, in the order of `ClientInfo`'s slots.
const FIELDS: [&[u8]; 10] = [
    b"id", b"addr", b"name", b"user", b"idle", b"flags", b"sub", b"psub", b"ssub", b"cmd",
];
const ID: usize = 0;
const ADDR: usize = 1;
const NAME: usize = 2;
const USER: usize = 3;
const IDLE: usize = 4;
const FLAGS: usize = 5;
const SUB: usize = 6;
const PSUB: usize = 7;
const SSUB: usize = 8;
const CMD: usize = 9;

/// `CLIENT LIST`'s fields are `key=value` separated by spaces. A value may itself hold a
/// space (a unix socket path such as `/tmp/my dir/redis.sock`): a word that does not start
/// with `key=` continues the value before it. A line that cannot be read for sure (a field
/// read twice, a required field missing or not a number, a line not starting with a field)
/// gives None: its client is left alone.
pub fn parse_line(line: &[u8]) -> Option<ClientInfo<'_>> {
    // (start, end) of each read field's value in `line`.
    let mut slots: [Option<(usize, usize)>; FIELDS.len()] = [None; FIELDS.len()];
    // The slot the last field fills (None: a field not read).
    let mut current: Option<usize> = None;
    let mut started = false;
    let mut at = 0;
    for word in line.split(|&b| b == b' ') {
        let start = at;
        at += word.len() + 1;
        if word.is_empty() {
            continue;
        }
        if let Some(key) = field_key(word) {
            started = true;
            current = FIELDS.iter().position(|f| *f == key);
            if let Some(slot) = current {
                if slots[slot].is_some() {
                    return None;
                }
                slots[slot] = Some((start + key.len() + 1, start + word.len()));
            }
        } else if !started {
            return None;
        } else if let Some((_, end)) = current.and_then(|slot| slots[slot].as_mut()) {
            *end = start + word.len();
        }
    }
    let get = |slot: usize| slots[slot].map(|(from, to)| &line[from..to]);
    let number =
        |slot: usize| -> Option<u64> { std::str::from_utf8(get(slot)?).ok()?.parse().ok() };
    // Counts a server does not report are 0 (`ssub` is new in Redis 7.0.3); reported ones
    // must be numbers.
    let count = |slot: usize| match get(slot) {
        None => Some(0),
        Some(_) => number(slot),
    };
    Some(ClientInfo {
        id: number(ID)?,
        addr: get(ADDR)?,
        name: get(NAME).unwrap_or_default(),
        user: get(USER).unwrap_or_default(),
        idle_s: number(IDLE)?,
        flags: get(FLAGS)?,
        subscriptions: count(SUB)? + count(PSUB)? + count(SSUB)?,
        cmd: get(CMD).unwrap_or_default(),
    })
}

/// The `key` of a `key=value` word: lowercase letters, digits, `-` and `_`.
fn field_key(word: &[u8]) -> Option<&[u8]> {
    let eq = word.iter().position(|&b| b == b'=')?;
    let k = &word[..eq];
    let valid = !k.is_empty()
        && k[0].is_ascii_lowercase()
        && k.iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    valid.then_some(k)
}

/// Every readable line of a `CLIENT LIST` reply, and how many lines could not be read.
pub fn parse_list(text: &[u8]) -> (Vec<ClientInfo<'_>>, usize) {
    let mut clients = Vec::new();
    let mut unreadable = 0;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match parse_line(line) {
            Some(c) => clients.push(c),
            None => unreadable += 1,
        }
    }
    (clients, unreadable)
}

/// Which clients to list or close.
pub struct Selection<'a> {
    /// Idle strictly longer than this.
    pub idle_s: u64,
    pub name: Option<&'a Glob>,
    /// The client running the command (None from the cron).
    pub caller: Option<u64>,
}

/// The normal clients idle longer than the limit (and named to match), longest idle first.
pub fn select<'c, 'a>(clients: &'c [ClientInfo<'a>], sel: &Selection) -> Vec<&'c ClientInfo<'a>> {
    let mut chosen: Vec<&ClientInfo> = clients
        .iter()
        .filter(|c| Some(c.id) != sel.caller)
        .filter(|c| c.spared().is_none())
        .filter(|c| c.idle_s > sel.idle_s)
        .filter(|c| sel.name.is_none_or(|g| g.matches(c.name)))
        .collect();
    chosen.sort_by(|a, b| b.idle_s.cmp(&a.idle_s).then(a.id.cmp(&b.id)));
    chosen
}

/// A parsed `RETENTION.CLIENTS` request.
struct Request {
    idle_s: u64,
    kill: bool,
    name: Option<Glob>,
}

/// An idle limit from a command argument or the config: 0 ..= `MAX_IDLE_S` seconds.
pub fn check_idle_s(seconds: i64) -> std::result::Result<u64, String> {
    match u64::try_from(seconds) {
        Ok(s) if seconds <= MAX_IDLE_S => Ok(s),
        _ => Err(format!(
            "IDLE must be 0 to {MAX_IDLE_S} seconds (got {seconds})"
        )),
    }
}

fn parse(args: Vec<RedisString>) -> Result<Request> {
    const USAGE: &str = "usage: RETENTION.CLIENTS IDLE <duration> [KILL] [NAME <glob>]";
    let mut args = Args::new(args, COMMAND)?;
    let (mut idle_s, mut kill, mut name) = (None, false, None);
    let mut seen = OptionSet::default();
    while let Some(option) = args.next_option(&mut seen, &["IDLE", "KILL", "NAME"])? {
        match option {
            "IDLE" => {
                // CLIENT LIST counts idle time in whole seconds: round a finer duration up.
                let ms = args.next_duration_ms("IDLE", true)?;
                idle_s = Some(check_idle_s((ms + 999) / 1000).map_err(Error::Arg)?);
            }
            "KILL" => kill = true,
            _ => {
                let pattern = args.next_bytes("NAME <glob>")?;
                let glob = Glob::new(&pattern)
                    .map_err(|e| Error::arg(format!("NAME '{}': {e}", shown(&pattern))))?;
                name = Some(glob);
            }
        }
    }
    let idle_s = idle_s.ok_or_else(|| Error::arg(format!("{COMMAND} needs IDLE ({USAGE})")))?;
    Ok(Request { idle_s, kill, name })
}

/// `RETENTION.CLIENTS IDLE <duration> [KILL] [NAME <glob>]`: a map of `clients`, the idle
/// normal clients, one map each (`id`, `addr`, `name`, `user`, `idle_ms`, `cmd`, `killed`),
/// longest idle first, and `clients_killed`, how many of them were closed.
/// Admin work even without KILL: client addresses are what `CLIENT LIST` (`@admin`) shows.
pub fn cmd_clients(ctx: &Context, args: Vec<RedisString>) -> Result<RedisValue> {
    let req = parse(args)?;
    acl::require_admin(ctx, COMMAND)?;
    let sel = Selection {
        idle_s: req.idle_s,
        name: req.name.as_ref(),
        caller: Some(crate::keyspace::client_id(ctx)),
    };
    let (reply, killed_total) = with_clients(ctx, |clients| {
        let chosen = select(clients, &sel);
        let mut killed_total = 0;
        let mut reply = Vec::with_capacity(chosen.len());
        for client in chosen {
            let killed = req.kill && kill_client(ctx, client.id);
            killed_total += u64::from(killed);
            reply.push(client_reply(client, killed));
        }
        (reply, killed_total)
    })?;
    stats::with_stats(|s| s.clients_killed += killed_total);
    let mut m = BTreeMap::new();
    m.insert(key("clients"), RedisValue::Array(reply));
    m.insert(key("clients_killed"), stats::count(killed_total));
    Ok(RedisValue::OrderedMap(m))
}

fn client_reply(c: &ClientInfo, killed: bool) -> RedisValue {
    let bytes = |b: &[u8]| RedisValue::StringBuffer(b.to_vec());
    let mut m = BTreeMap::new();
    m.insert(
        key("id"),
        RedisValue::Integer(c.id.min(i64::MAX as u64) as i64),
    );
    m.insert(key("addr"), bytes(c.addr));
    m.insert(key("name"), bytes(c.name));
    m.insert(key("user"), bytes(c.user));
    // CLIENT LIST gives whole seconds.
    m.insert(key("idle_ms"), stats::count(c.idle_s.saturating_mul(1000)));
    m.insert(key("cmd"), bytes(c.cmd));
    m.insert(key("killed"), stats::flag(killed));
    RedisValue::OrderedMap(m)
}

thread_local! {
    static CALL_OPTS: CallOptions = CallOptionsBuilder::new()
        .errors_as_replies()
        .no_writes()
        .resp(CallOptionResp::Resp2)
        .build();
}

fn call_client(ctx: &Context, args: &[&[u8]]) -> Result<CallReply<'static>> {
    let result: CallResult<'static> =
        CALL_OPTS.with(|opts| ctx.call_ext::<_, CallResult>("CLIENT", opts, args));
    match result {
        Ok(CallReply::Unknown) => Err(Error::Server(
            "CLIENT was refused by the server (see the server log)".into(),
        )),
        Ok(reply) => Ok(reply),
        Err(e) => {
            let msg = e.to_utf8_string().unwrap_or_default();
            if msg.to_ascii_lowercase().contains("unknown command") {
                return Err(Error::Server(
                    "idle clients are listed and closed with the CLIENT command, which this server has renamed or disabled (rename-command CLIENT): keep CLIENT and restrict it with an ACL instead".into(),
                ));
            }
            Err(Error::Server(format!(
                "CLIENT {} failed: {}",
                String::from_utf8_lossy(args.first().copied().unwrap_or_default()),
                shown(msg.as_bytes()).trim_start_matches("ERR ").trim()
            )))
        }
    }
}

/// The text of a `CLIENT LIST` reply (RESP2 bulk string; verbatim under RESP3).
fn list_text<'r>(reply: &'r CallReply) -> Result<std::borrow::Cow<'r, [u8]>> {
    let unexpected = || Error::Server("unexpected reply to CLIENT LIST".into());
    match reply {
        CallReply::String(s) => Ok(std::borrow::Cow::Borrowed(s.as_bytes())),
        CallReply::VerbatimString(v) => Ok(v.to_parts().ok_or_else(unexpected)?.1.into()),
        _ => Err(unexpected()),
    }
}

/// Runs `f` on the server's normal clients: `CLIENT LIST TYPE normal` leaves out replicas,
/// masters and pub/sub clients, and the flags of each line decide the rest.
fn with_clients<R>(ctx: &Context, f: impl FnOnce(&[ClientInfo]) -> R) -> Result<R> {
    with_listed(ctx, &[b"LIST", b"TYPE", b"normal"], f)
}

/// Runs `f` on the clients of `ids` still connected, whatever their type (`CLIENT LIST ID`
/// cannot be combined with TYPE on Redis 7.0): the flags of each line decide.
fn with_clients_by_id<R>(
    ctx: &Context,
    ids: &[u64],
    f: impl FnOnce(&[ClientInfo]) -> R,
) -> Result<R> {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let mut args: Vec<&[u8]> = vec![b"LIST", b"ID"];
    args.extend(ids.iter().map(|id| id.as_bytes()));
    with_listed(ctx, &args, f)
}

/// Runs `f` on the clients of a `CLIENT <args>` listing.
fn with_listed<R>(ctx: &Context, args: &[&[u8]], f: impl FnOnce(&[ClientInfo]) -> R) -> Result<R> {
    let reply = call_client(ctx, args)?;
    let text = list_text(&reply)?;
    let (clients, unreadable) = parse_list(&text);
    if unreadable > 0 && !UNREADABLE_WARNED.with(|w| w.replace(true)) {
        ctx.log_warning(&format!(
            "retention: {unreadable} line(s) of CLIENT LIST could not be read; their clients are left alone (reported once)"
        ));
    }
    Ok(f(&clients))
}

/// Closes one client (it is freed before the event loop sleeps); false when there is no
/// such client.
fn kill_client(ctx: &Context, id: u64) -> bool {
    // SAFETY: reading the API table, filled once at load.
    match unsafe { raw::RedisModule_DeauthenticateAndCloseClient } {
        Some(close) => {
            // SAFETY: a valid context; an unknown id is answered with an error, nothing else.
            let rc = unsafe { close(ctx.ctx, id) };
            rc == raw::REDISMODULE_OK as c_int
        }
        // Servers older than 6.0 (the module needs 7.0; kept for completeness).
        None => {
            let id = id.to_string();
            matches!(
                call_client(ctx, &[b"KILL", b"ID", id.as_bytes()]),
                Ok(CallReply::I64(n)) if n.to_i64() > 0
            )
        }
    }
}

thread_local! {
    static REAP: RefCell<ReapPlan> = RefCell::new(ReapPlan::default());
    /// The reaper failed and said so in the log: say it again only after it worked.
    static WARNED: Cell<bool> = const { Cell::new(false) };
    /// Lines of `CLIENT LIST` could not be read (a server with a new format): said once.
    static UNREADABLE_WARNED: Cell<bool> = const { Cell::new(false) };
}

/// The server cron: with `retention.clients-idle-kill-s` set (and `retention.enabled`), closes
/// the normal clients idle longer than it, by the same rules as the command, looking at most
/// `MAX_KILLS_PER_TICK` per tick.
pub fn on_cron_tick(ctx: &Context) {
    let limit_s = config::clients_idle_kill_s();
    // Dry run: "count what would change, change nothing": nothing is closed (RETENTION.CLIENTS
    // IDLE <s> lists what would be).
    if limit_s == 0 || !config::enabled() || config::dry_run() {
        REAP.with(|r| r.borrow_mut().forget());
        return;
    }
    let now = Instant::now();
    let (list, waiting) = REAP.with(|r| {
        let plan = r.borrow();
        (
            plan.list_due(now, reap_interval(limit_s)),
            plan.has_waiting(),
        )
    });
    if list || waiting {
        run_callback(ctx, "idle-client reaper", || reap(ctx, limit_s, list, now));
    }
}

fn reap(ctx: &Context, limit_s: u64, list: bool, now: Instant) {
    let listed = match list {
        true => list_idle(ctx, limit_s, now),
        false => Ok(()),
    };
    let outcome = listed.and_then(|()| {
        let batch = REAP.with(|r| r.borrow_mut().next_batch());
        close_if_idle(ctx, limit_s, &batch)
    });
    let killed = match outcome {
        Ok(killed) => {
            WARNED.with(|w| w.set(false));
            killed
        }
        Err(e) => {
            if !WARNED.with(|w| w.replace(true)) {
                let why = e.to_string();
                ctx.log_warning(&format!(
                    "retention: retention.clients-idle-kill-s: no client is closed: {}",
                    why.trim_start_matches("ERR ")
                ));
            }
            0
        }
    };
    if killed > 0 {
        stats::with_stats(|s| s.clients_killed += killed);
        ctx.log_notice(&format!(
            "retention: closed {killed} client(s) idle longer than {limit_s} s (retention.clients-idle-kill-s)"
        ));
    }
}

fn reap_selection(limit_s: u64) -> Selection<'static> {
    Selection {
        idle_s: limit_s,
        name: None,
        caller: None,
    }
}

/// Lists every client and plans to look again at the idle ones.
fn list_idle(ctx: &Context, limit_s: u64, now: Instant) -> Result<()> {
    let found = with_clients(ctx, |clients| {
        let idle = select(clients, &reap_selection(limit_s));
        idle.iter().map(|c| c.id).collect::<Vec<u64>>()
    });
    // A failed listing also waits for the interval, not for the next tick.
    let ids = match &found {
        Ok(ids) => ids.as_slice(),
        Err(_) => &[],
    };
    REAP.with(|r| r.borrow_mut().listed(now, ids.iter().copied()));
    found.map(drop)
}

/// Looks again at the clients of `ids` and closes those still idle past the limit and not
/// spared; returns how many were closed.
fn close_if_idle(ctx: &Context, limit_s: u64, ids: &[u64]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    with_clients_by_id(ctx, ids, |clients| {
        select(clients, &reap_selection(limit_s))
            .iter()
            .filter(|c| kill_client(ctx, c.id))
            .count() as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real lines, Redis 7.0.15: MONITOR, RESP2 and RESP3 subscribers, a shard-channel
    /// subscriber, BLPOP over TCP and over a unix socket, XREAD BLOCK, a replica, MULTI,
    /// RESP3 tracking, a RESP3 client that subscribed then unsubscribed, an IPv6 client, the
    /// caller (CLIENT LIST itself).
    const REDIS_7_0: &str = "\
id=8 addr=127.0.0.1:36608 laddr=127.0.0.1:17801 fd=13 name= age=14 idle=0 flags=O db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=537 obl=0 oll=0 omem=0 tot-mem=1800 events=r cmd=monitor user=default redir=-1 resp=2
id=6 addr=127.0.0.1:36594 laddr=127.0.0.1:17801 fd=11 name= age=14 idle=14 flags=P db=0 sub=1 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1856 events=r cmd=subscribe user=default redir=-1 resp=2
id=9 addr=127.0.0.1:36612 laddr=127.0.0.1:17801 fd=14 name= age=14 idle=14 flags=P db=0 sub=1 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1856 events=r cmd=subscribe user=default redir=-1 resp=3
id=21 addr=127.0.0.1:50500 laddr=127.0.0.1:17801 fd=21 name= age=0 idle=0 flags=P db=0 sub=0 psub=0 ssub=1 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22328 events=r cmd=ssubscribe user=default redir=-1 resp=2
id=5 addr=127.0.0.1:36588 laddr=127.0.0.1:17801 fd=9 name= age=14 idle=14 flags=b db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=7 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1831 events=r cmd=blpop user=default redir=-1 resp=2
id=10 addr=/tmp/cl-r/r.sock:0 laddr=/tmp/cl-r/r.sock:0 fd=12 name= age=14 idle=14 flags=bU db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=7 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1831 events=r cmd=blpop user=default redir=-1 resp=2
id=20 addr=127.0.0.1:50492 laddr=127.0.0.1:17801 fd=20 name=worker:1 age=0 idle=0 flags=b db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=20 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22340 events=r cmd=xread user=default redir=-1 resp=2
id=13 addr=127.0.0.1:36628 laddr=127.0.0.1:17801 fd=16 name= age=10 idle=1 flags=S db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22272 events=r cmd=replconf user=default redir=-1 resp=2
id=17 addr=127.0.0.1:50456 laddr=127.0.0.1:17801 fd=17 name= age=0 idle=0 flags=x db=0 sub=0 psub=0 ssub=0 multi=1 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=29 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22349 events=r cmd=set user=default redir=-1 resp=2
id=18 addr=127.0.0.1:50468 laddr=127.0.0.1:17801 fd=18 name= age=0 idle=0 flags=t db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22272 events=r cmd=client|tracking user=default redir=0 resp=3
id=19 addr=127.0.0.1:50482 laddr=127.0.0.1:17801 fd=19 name= age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22304 events=r cmd=unsubscribe user=default redir=-1 resp=3
id=11 addr=[::1]:57358 laddr=[::1]:17801 fd=15 name=idle6 age=14 idle=14 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1800 events=r cmd=client|setname user=default redir=-1 resp=2
id=22 addr=127.0.0.1:50516 laddr=127.0.0.1:17801 fd=22 name= age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=16384 rbp=16384 obl=0 oll=0 omem=0 tot-mem=37658 events=r cmd=client|list user=default redir=-1 resp=2
";

    /// Redis 7.0.15, a replica: its master link, and a client on a unix socket whose path
    /// has a space.
    const REDIS_7_0_REPLICA: &str = "\
id=5 addr=127.0.0.1:17801 laddr=127.0.0.1:36628 fd=8 name= age=5 idle=5 flags=M db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=4 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1800 events=r cmd=NULL user=(superuser) redir=-1 resp=2
id=8 addr=/tmp/cl-r2/sp ace/r.sock:0 laddr=/tmp/cl-r2/sp ace/r.sock:0 fd=9 name=u1 age=0 idle=0 flags=U db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22272 events=r cmd=client|setname user=default redir=-1 resp=2
";

    /// Real lines, Valkey 9.1.2 (more fields: `capa`, `watch`, `lib-name`, `tot-net-in`...;
    /// a unix socket address in brackets).
    const VALKEY_9_1: &str = "\
id=10 addr=[/tmp/cl-v/v.sock:0]:0 laddr=[/tmp/cl-v/v.sock:0]:0 fd=16 name= age=14 idle=14 flags=bU capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=7 multi-mem=0 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=1647 events=r cmd=blpop user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=29 tot-net-out=0 tot-cmds=0
id=17 addr=127.0.0.1:52996 laddr=127.0.0.1:17802 fd=19 name= age=0 idle=0 flags=x capa= db=0 sub=0 psub=0 ssub=0 multi=1 watch=0 qbuf=0 qbuf-free=16386 argv-mem=0 multi-mem=29 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=18101 events=r cmd=set user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=16 tot-net-out=14 tot-cmds=1
id=18 addr=127.0.0.1:52998 laddr=127.0.0.1:17802 fd=20 name= age=0 idle=0 flags=t capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=16386 argv-mem=0 multi-mem=0 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=18248 events=r cmd=client|tracking user=default redir=0 resp=3 lib-name= lib-ver= tot-net-in=29 tot-net-out=220 tot-cmds=2
id=20 addr=127.0.0.1:53018 laddr=127.0.0.1:17802 fd=22 name=worker:1 age=0 idle=0 flags=b capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=16386 argv-mem=22 multi-mem=0 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=18078 events=r cmd=xread user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=52 tot-net-out=5 tot-cmds=1
id=21 addr=127.0.0.1:53032 laddr=127.0.0.1:17802 fd=23 name= age=0 idle=0 flags=P capa= db=0 sub=0 psub=0 ssub=1 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=1920 events=r cmd=ssubscribe user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=15 tot-net-out=33 tot-cmds=1
id=11 addr=[::1]:38270 laddr=[::1]:17802 fd=17 name=idle6 age=14 idle=14 flags=N capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=1616 events=r cmd=client|setname user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=22 tot-net-out=5 tot-cmds=1
id=6 addr=127.0.0.1:56886 laddr=127.0.0.1:17802 fd=13 name= age=14 idle=14 flags=P capa= db=0 sub=1 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=1920 events=r cmd=subscribe user=default redir=-1 resp=3 lib-name= lib-ver= tot-net-in=50 tot-net-out=246 tot-cmds=2
id=9 addr=127.0.0.1:56904 laddr=127.0.0.1:17802 fd=15 name= age=14 idle=0 flags=O capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1032 rbp=489 obl=0 oll=0 omem=0 tot-mem=1616 events=r cmd=monitor user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=17 tot-net-out=879 tot-cmds=1
id=13 addr=127.0.0.1:56912 laddr=127.0.0.1:17802 fd=18 name= age=10 idle=1 flags=S capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1032 rbp=0 obl=0 oll=0 omem=0 tot-mem=1616 events=r cmd=replconf user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=370 tot-net-out=22 tot-cmds=10
";

    /// Valkey 9.1.2, a replica: its primary link.
    const VALKEY_9_1_REPLICA: &str = "\
id=6 addr=127.0.0.1:17802 laddr=127.0.0.1:56912 fd=9 name= age=2 idle=2 flags=M capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=20 argv-mem=0 multi-mem=0 rbs=1032 rbp=35 obl=0 oll=0 omem=0 tot-mem=1640 events=r cmd=NULL user=(superuser) redir=-1 resp=2 lib-name= lib-ver= tot-net-in=0 tot-net-out=70 tot-cmds=0
";

    /// Real lines, Redis 8.2.3 (new field `io-thread`; a replica holds two links while it
    /// syncs, the second, its RDB channel, flagged `SC`).
    const REDIS_8_2: &str = "\
id=4 addr=127.0.0.1:54132 laddr=127.0.0.1:17803 fd=14 name= age=1 idle=1 flags=S db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1920 events=r cmd=psync user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=186 tot-net-out=17 tot-cmds=4
id=5 addr=127.0.0.1:54144 laddr=127.0.0.1:17803 fd=15 name= age=1 idle=1 flags=SC db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1920 events=r cmd=psync user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=177 tot-net-out=5 tot-cmds=2
id=6 addr=127.0.0.1:54158 laddr=127.0.0.1:17803 fd=16 name= age=0 idle=0 flags=O db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=78 obl=0 oll=0 omem=0 tot-mem=1920 events=r cmd=monitor user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=17 tot-net-out=604 tot-cmds=1
id=12 addr=127.0.0.1:54204 laddr=127.0.0.1:17803 fd=22 name= age=0 idle=0 flags=x db=0 sub=0 psub=0 ssub=0 multi=1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=29 rbs=16384 rbp=0 obl=0 oll=0 omem=0 tot-mem=17357 events=r cmd=set user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=42 tot-net-out=14 tot-cmds=1
id=7 addr=127.0.0.1:54168 laddr=127.0.0.1:17803 fd=17 name= age=0 idle=0 flags=P db=0 sub=1 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1976 events=r cmd=subscribe user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=27 tot-net-out=31 tot-cmds=1
id=8 addr=127.0.0.1:54178 laddr=127.0.0.1:17803 fd=18 name= age=0 idle=0 flags=P db=0 sub=1 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1976 events=r cmd=subscribe user=default redir=-1 resp=3 lib-name= lib-ver= io-thread=0 tot-net-in=49 tot-net-out=247 tot-cmds=2
id=11 addr=127.0.0.1:54198 laddr=127.0.0.1:17803 fd=21 name=worker:1 age=0 idle=0 flags=b db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=22 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1990 events=r cmd=xread user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=120 tot-net-out=65 tot-cmds=1
id=9 addr=127.0.0.1:54194 laddr=127.0.0.1:17803 fd=19 name= age=0 idle=0 flags=P db=0 sub=0 psub=0 ssub=1 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1976 events=r cmd=ssubscribe user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=30 tot-net-out=34 tot-cmds=1
id=10 addr=/tmp/cl8/r.sock:0 laddr=/tmp/cl8/r.sock:0 fd=20 name= age=0 idle=0 flags=bU db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=7 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1951 events=r cmd=blpop user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=29 tot-net-out=0 tot-cmds=0
id=13 addr=127.0.0.1:54218 laddr=127.0.0.1:17803 fd=23 name= age=0 idle=0 flags=t db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 tot-mem=17280 events=r cmd=client|tracking user=default redir=0 resp=3 lib-name= lib-ver= io-thread=0 tot-net-in=60 tot-net-out=222 tot-cmds=2
id=15 addr=127.0.0.1:54236 laddr=127.0.0.1:17803 fd=25 name= age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=16384 rbp=16384 obl=0 oll=0 omem=0 tot-mem=37786 events=r cmd=client|list user=default redir=-1 resp=2 lib-name= lib-ver= io-thread=0 tot-net-in=26 tot-net-out=0 tot-cmds=0
";

    fn by_id<'c, 'a>(clients: &'c [ClientInfo<'a>], id: u64) -> &'c ClientInfo<'a> {
        clients.iter().find(|c| c.id == id).expect("client")
    }

    #[test]
    fn every_real_line_is_read() {
        for (text, lines) in [
            (REDIS_7_0, 13),
            (REDIS_7_0_REPLICA, 2),
            (VALKEY_9_1, 9),
            (VALKEY_9_1_REPLICA, 1),
            (REDIS_8_2, 11),
        ] {
            let (clients, unreadable) = parse_list(text.as_bytes());
            assert_eq!((clients.len(), unreadable), (lines, 0));
        }
    }

    #[test]
    fn fields_are_read_from_redis_lines() {
        let (clients, _) = parse_list(REDIS_7_0.as_bytes());
        let ipv6 = by_id(&clients, 11);
        assert_eq!(ipv6.addr, b"[::1]:57358");
        assert_eq!(ipv6.name, b"idle6");
        assert_eq!(ipv6.user, b"default");
        assert_eq!(ipv6.idle_s, 14);
        assert_eq!(ipv6.flags, b"N");
        assert_eq!(ipv6.cmd, b"client|setname");
        assert_eq!(by_id(&clients, 10).addr, b"/tmp/cl-r/r.sock:0");
        assert_eq!(by_id(&clients, 21).subscriptions, 1);
        assert_eq!(by_id(&clients, 20).name, b"worker:1");
    }

    #[test]
    fn a_unix_socket_path_with_a_space_stays_one_value() {
        let (clients, _) = parse_list(REDIS_7_0_REPLICA.as_bytes());
        let unix = by_id(&clients, 8);
        assert_eq!(unix.addr, b"/tmp/cl-r2/sp ace/r.sock:0");
        assert_eq!(unix.name, b"u1");
        assert_eq!(unix.spared(), None);
    }

    #[test]
    fn valkey_lines_with_extra_fields_are_read() {
        let (clients, _) = parse_list(VALKEY_9_1.as_bytes());
        let unix = by_id(&clients, 10);
        assert_eq!(unix.addr, b"[/tmp/cl-v/v.sock:0]:0");
        assert_eq!(unix.flags, b"bU");
        assert_eq!(unix.cmd, b"blpop");
        assert_eq!(by_id(&clients, 11).idle_s, 14);
    }

    #[test]
    fn only_normal_clients_are_candidates() {
        let (clients, _) = parse_list(REDIS_7_0.as_bytes());
        let spared = |id| by_id(&clients, id).spared();
        assert_eq!(spared(8), Some(Spared::Monitor));
        assert_eq!(spared(6), Some(Spared::PubSub));
        assert_eq!(spared(9), Some(Spared::PubSub), "RESP3 subscriber");
        assert_eq!(spared(21), Some(Spared::PubSub), "shard-channel subscriber");
        assert_eq!(spared(5), Some(Spared::Blocked));
        assert_eq!(spared(10), Some(Spared::Blocked), "BLPOP on a unix socket");
        assert_eq!(spared(20), Some(Spared::Blocked), "XREAD BLOCK");
        assert_eq!(spared(13), Some(Spared::Replica));
        for normal in [17, 18, 19, 11, 22] {
            assert_eq!(spared(normal), None, "client {normal}");
        }
        let (replica_side, _) = parse_list(REDIS_7_0_REPLICA.as_bytes());
        assert_eq!(by_id(&replica_side, 5).spared(), Some(Spared::Master));
    }

    #[test]
    fn redis_8_2_clients_are_classified_alike() {
        let (clients, _) = parse_list(REDIS_8_2.as_bytes());
        let spared = |id| by_id(&clients, id).spared();
        assert_eq!(spared(4), Some(Spared::Replica));
        assert_eq!(
            spared(5),
            Some(Spared::Replica),
            "the RDB channel of a syncing replica"
        );
        assert_eq!(spared(6), Some(Spared::Monitor));
        for pubsub in [7, 8, 9] {
            assert_eq!(spared(pubsub), Some(Spared::PubSub), "client {pubsub}");
        }
        assert_eq!(spared(10), Some(Spared::Blocked), "BLPOP on a unix socket");
        assert_eq!(spared(11), Some(Spared::Blocked), "XREAD BLOCK");
        for normal in [12, 13, 15] {
            assert_eq!(spared(normal), None, "client {normal}");
        }
        assert_eq!(by_id(&clients, 10).addr, b"/tmp/cl8/r.sock:0");
        assert_eq!(by_id(&clients, 11).name, b"worker:1");
    }

    #[test]
    fn valkey_clients_are_classified_alike() {
        let (clients, _) = parse_list(VALKEY_9_1.as_bytes());
        let kinds: Vec<(u64, Option<Spared>)> =
            clients.iter().map(|c| (c.id, c.spared())).collect();
        assert_eq!(
            kinds,
            [
                (10, Some(Spared::Blocked)),
                (17, None),
                (18, None),
                (20, Some(Spared::Blocked)),
                (21, Some(Spared::PubSub)),
                (11, None),
                (6, Some(Spared::PubSub)),
                (9, Some(Spared::Monitor)),
                (13, Some(Spared::Replica)),
            ]
        );
        let (replica_side, _) = parse_list(VALKEY_9_1_REPLICA.as_bytes());
        assert_eq!(replica_side[0].spared(), Some(Spared::Master));
    }

    #[test]
    fn subscriptions_spare_a_client_even_without_the_pubsub_flag() {
        let line = b"id=3 addr=1.2.3.4:5 name= idle=99 flags=N sub=0 psub=2 cmd=psubscribe";
        let c = parse_line(line).expect("line");
        assert_eq!(c.spared(), Some(Spared::PubSub));
    }

    #[test]
    fn a_flag_this_module_does_not_know_spares_the_client() {
        let c = parse_line(b"id=3 addr=a:1 idle=99 flags=NZ").expect("line");
        assert_eq!(c.spared(), Some(Spared::UnknownFlag));
        let c = parse_line(b"id=3 addr=a:1 idle=99 flags=").expect("line");
        assert_eq!(c.spared(), Some(Spared::UnknownFlag));
    }

    #[test]
    fn a_client_just_served_is_not_idle() {
        // A BLPOP client served by a push earlier in this event-loop iteration: unblocked, its
        // reply in the output buffer, its idle time still that of the BLPOP.
        let served = b"id=5 addr=a:1 idle=40 flags=u obl=27 oll=0 cmd=blpop";
        // One that stopped reading: its output stays, its idle time grows; closed as the
        // server's own `timeout` would.
        let stuck = b"id=6 addr=a:1 idle=40 flags=N obl=0 oll=3 cmd=get";
        let spared = |line: &[u8]| parse_line(line).expect("line").spared();
        assert_eq!(spared(served), Some(Spared::Replying));
        assert_eq!(spared(stuck), None);
    }

    #[test]
    fn doubtful_lines_are_not_read() {
        for bad in [
            &b"addr=a:1 idle=3 flags=N"[..],
            b"id=x addr=a:1 idle=3 flags=N",
            b"id=1 addr=a:1 idle=-3 flags=N",
            b"id=1 addr=a:1 flags=N",
            b"id=1 addr=a:1 idle=3",
            b"id=1 idle=3 flags=N",
            b"id=1 addr=a:1 idle=3 flags=N sub=many",
            // A field twice: which one is true cannot be known.
            b"id=1 addr=a:1 idle=3 flags=N idle=0",
            b"stray id=1 addr=a:1 idle=3 flags=N",
        ] {
            assert_eq!(parse_line(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let (clients, unreadable) = parse_list(b"id=1 addr=a:1 idle=3 flags=N\r\n\ngarbage\n");
        assert_eq!((clients.len(), unreadable), (1, 1));
    }

    #[test]
    fn a_name_with_spaces_would_stay_one_value() {
        // Servers refuse such names; were one set anyway, it must not shift other fields.
        let c = parse_line(b"id=4 addr=a:1 name=my worker age=1 idle=7 flags=N").expect("line");
        assert_eq!(c.name, b"my worker");
        assert_eq!(c.idle_s, 7);
    }

    #[test]
    fn selection_takes_idle_normal_clients_longest_idle_first() {
        let (mut clients, _) = parse_list(REDIS_7_0.as_bytes());
        let sel = |idle_s, name, caller| Selection {
            idle_s,
            name,
            caller,
        };
        let ids = |chosen: Vec<&ClientInfo>| chosen.iter().map(|c| c.id).collect::<Vec<u64>>();
        // Only the IPv6 client is both normal and idle: every other idle one is spared.
        assert_eq!(ids(select(&clients, &sel(5, None, Some(22)))), [11]);
        assert_eq!(
            ids(select(&clients, &sel(14, None, Some(22)))),
            [] as [u64; 0]
        );
        // Idle 0 still means "idle longer than 0": clients active this second stay.
        assert_eq!(ids(select(&clients, &sel(0, None, Some(22)))), [11]);
        // The caller is never chosen, however idle.
        clients.iter_mut().for_each(|c| c.idle_s += 100);
        assert_eq!(
            ids(select(&clients, &sel(5, None, Some(22)))),
            [11, 17, 18, 19]
        );
        assert!(ids(select(&clients, &sel(5, None, None))).contains(&22));
        let glob = Glob::new(b"idle*").expect("glob");
        assert_eq!(ids(select(&clients, &sel(5, Some(&glob), Some(22)))), [11]);
        // Unnamed clients do not match a pattern other than `*`.
        let any = Glob::new(b"*").expect("glob");
        assert_eq!(
            ids(select(&clients, &sel(5, Some(&any), Some(22)))).len(),
            4
        );
        let other = Glob::new(b"?").expect("glob");
        assert!(select(&clients, &sel(5, Some(&other), Some(22))).is_empty());
    }

    #[test]
    fn the_reaper_lists_once_then_works_through_what_it_found() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut plan = ReapPlan::default();
        assert!(plan.list_due(start, second), "the first tick lists");
        plan.listed(start, 1..=250);
        // While clients found wait, no tick lists again, however long they take.
        let later = start + Duration::from_secs(5);
        let mut batches = Vec::new();
        while plan.has_waiting() {
            assert!(!plan.list_due(later, second));
            batches.push(plan.next_batch());
        }
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(
            batches.concat(),
            (1..=250).collect::<Vec<u64>>(),
            "in order"
        );
        assert!(plan.next_batch().is_empty());
        assert!(plan.list_due(later, second));
        // Nothing found: the next listing waits for the interval.
        plan.listed(later, []);
        assert!(!plan.list_due(later + second / 2, second));
        assert!(plan.list_due(later + second, second));
        // Turned off: the clients found are forgotten, not closed later.
        plan.listed(later + second, [7, 8]);
        plan.forget();
        assert!(!plan.has_waiting());
        assert!(plan.next_batch().is_empty());
    }

    #[test]
    fn the_reaper_lists_clients_every_tenth_of_the_limit() {
        assert_eq!(reap_interval(1), Duration::from_secs(1));
        assert_eq!(reap_interval(30), Duration::from_secs(3));
        assert_eq!(reap_interval(3600), Duration::from_secs(60));
    }

    #[test]
    fn idle_limits_are_bounded() {
        assert_eq!(check_idle_s(0), Ok(0));
        assert_eq!(check_idle_s(MAX_IDLE_S), Ok(MAX_IDLE_S as u64));
        for bad in [-1, MAX_IDLE_S + 1, i64::MIN, i64::MAX] {
            assert!(check_idle_s(bad).is_err(), "{bad}");
        }
    }
}
