//! `RETENTION.CLIENTS IDLE <duration> [KILL] [NAME <glob>]` and `retention.clients-idle-kill-s`
//! only idle normal clients are listed and closed; queue workers blocked in their
//! pops, subscribers (RESP2 and RESP3), replicas, the master link, MONITOR and the caller stay.
//!
//! The clients under test are raw TCP connections that send their commands and never read
//! the replies (a blocked pop has none yet), so each is exactly what it looks like to the
//! server. The test connection polls only with admin commands (`CLIENT LIST`, the module's
//! own), which the server does not feed to MONITOR: MONITOR goes idle like the others.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use redis::{Connection, Value};
use redis_retention::clients::parse_list;

/// A connection that sends commands and reads nothing unless asked.
struct RawClient {
    stream: TcpStream,
    id: u64,
}

fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
    }
    out
}

impl RawClient {
    /// Connects, learns its id (`CLIENT ID`), then sends `commands` without reading replies.
    fn open(server: &Server, commands: &[&[&str]]) -> RawClient {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        stream.write_all(&resp(&["CLIENT", "ID"])).expect("send");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).expect("CLIENT ID reply");
            line.push(byte[0]);
        }
        let id = std::str::from_utf8(&line[1..line.len() - 2])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("CLIENT ID: {line:?}"));
        for words in commands {
            stream.write_all(&resp(words)).expect("send");
        }
        RawClient { stream, id }
    }

    /// Reads until `needle` arrives; false when the connection closes first.
    fn receives(&mut self, needle: &str) -> bool {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if seen.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return true;
            }
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// One client of `CLIENT LIST`, as the module reads it.
#[derive(Debug)]
struct Listed {
    id: u64,
    idle_s: u64,
    flags: String,
    cmd: String,
}

fn client_list(c: &mut Connection) -> Vec<Listed> {
    let text: Vec<u8> = redis::cmd("CLIENT")
        .arg("LIST")
        .query(c)
        .expect("CLIENT LIST");
    let (clients, unreadable) = parse_list(&text);
    assert_eq!(unreadable, 0, "{}", String::from_utf8_lossy(&text));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    clients
        .iter()
        .map(|k| Listed {
            id: k.id,
            idle_s: k.idle_s,
            flags: text(k.flags),
            cmd: text(k.cmd),
        })
        .collect()
}

/// Waits until every client of `ids` is listed and `ready` holds for it.
fn wait_clients(c: &mut Connection, ids: &[u64], what: &str, ready: impl Fn(&Listed) -> bool) {
    let ok = wait_until(Duration::from_secs(60), || {
        let clients = client_list(c);
        ids.iter()
            .all(|id| clients.iter().any(|k| k.id == *id && ready(k)))
    });
    assert!(ok, "{what}: {:?}", client_list(c));
}

fn live_ids(c: &mut Connection) -> Vec<u64> {
    client_list(c).iter().map(|k| k.id).collect()
}

/// `(id, name, killed)` of each client in a `RETENTION.CLIENTS` reply (whose
/// `clients_killed` must count those killed).
fn listed(reply: &Value) -> Vec<(u64, String, bool)> {
    let Some(Value::Array(items)) = map_field(reply, "clients") else {
        panic!("expected a map with a clients array, got {reply:?}");
    };
    let clients: Vec<(u64, String, bool)> = items
        .iter()
        .map(|m| {
            (
                map_int(m, "id") as u64,
                map_str(m, "name").unwrap_or_default(),
                map_int(m, "killed") == 1,
            )
        })
        .collect();
    let killed = clients.iter().filter(|c| c.2).count() as i64;
    assert_eq!(map_int(reply, "clients_killed"), killed, "{reply:?}");
    clients
}

fn clients_cmd(c: &mut Connection, args: &[&str]) -> Value {
    let mut words = vec!["RETENTION.CLIENTS"];
    words.extend_from_slice(args);
    call(c, &words)
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

#[test]
fn kill_closes_exactly_the_idle_normal_clients() {
    let master = Server::start(
        ServerOpts::default()
            .paused()
            // The replica's link on the replica side goes idle between pings.
            .config("repl-ping-replica-period", "60"),
    )
    .expect("master");
    let replica = Server::start(ServerOpts::default().paused()).expect("replica");
    attach_replica(&master, &replica);
    let mut c = master.conn();

    // Queue workers waiting in their pops, and a client waiting for replicas.
    let mut worker = RawClient::open(&master, &[&["BRPOPLPUSH", "jobs:wait", "jobs:active", "0"]]);
    let others = [
        RawClient::open(&master, &[&["BZPOPMIN", "jobs:prio", "0"]]),
        RawClient::open(&master, &[&["XREAD", "BLOCK", "0", "STREAMS", "ev", "$"]]),
        RawClient::open(&master, &[&["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"]]),
        RawClient::open(&master, &[&["WAIT", "5", "0"]]),
    ];
    let blocked: Vec<u64> = [worker.id]
        .into_iter()
        .chain(others.iter().map(|k| k.id))
        .collect();
    let mut sub2 = RawClient::open(&master, &[&["SUBSCRIBE", "news"]]);
    let mut sub3 = RawClient::open(&master, &[&["HELLO", "3"], &["SUBSCRIBE", "news3"]]);
    let psub = RawClient::open(&master, &[&["PSUBSCRIBE", "ev:*"]]);
    let monitor = RawClient::open(&master, &[&["MONITOR"]]);
    // Normal clients: named, unnamed, in MULTI, RESP3 tracking, RESP3 that unsubscribed.
    let normal = [
        RawClient::open(&master, &[&["CLIENT", "SETNAME", "idle-a"]]),
        RawClient::open(&master, &[]),
        RawClient::open(&master, &[&["MULTI"], &["SET", "k", "v"]]),
        RawClient::open(&master, &[&["HELLO", "3"], &["CLIENT", "TRACKING", "on"]]),
        RawClient::open(
            &master,
            &[&["HELLO", "3"], &["SUBSCRIBE", "x"], &["UNSUBSCRIBE", "x"]],
        ),
    ];
    let normal_ids: Vec<u64> = normal.iter().map(|k| k.id).collect();
    let spared = [
        blocked.to_vec(),
        vec![sub2.id, sub3.id, psub.id, monitor.id],
    ]
    .concat();

    wait_clients(&mut c, &blocked, "blocked", |k| k.flags.contains('b'));
    wait_clients(&mut c, &[sub2.id, sub3.id, psub.id], "subscribed", |k| {
        k.flags.contains('P')
    });
    wait_clients(&mut c, &[monitor.id], "monitor", |k| k.flags.contains('O'));
    wait_clients(&mut c, &normal_ids[2..3], "multi", |k| {
        k.flags.contains('x')
    });
    wait_clients(&mut c, &normal_ids[3..4], "tracking", |k| {
        k.flags.contains('t')
    });
    wait_clients(&mut c, &normal_ids[4..5], "unsubscribed", |k| {
        k.cmd == "unsubscribe"
    });
    let all: Vec<u64> = [normal_ids.clone(), spared.clone()].concat();
    wait_clients(&mut c, &all, "idle", |k| k.idle_s >= 2);

    // Listing closes nothing.
    let before = live_ids(&mut c);
    let reply = clients_cmd(&mut c, &["IDLE", "1"]);
    let seen = listed(&reply);
    assert_eq!(
        sorted(seen.iter().map(|(id, ..)| *id).collect()),
        sorted(normal_ids.clone())
    );
    assert!(seen.iter().all(|(.., killed)| !killed));
    assert!(seen
        .iter()
        .any(|(id, name, _)| *id == normal_ids[0] && name == "idle-a"));
    assert_eq!(sorted(live_ids(&mut c)), sorted(before));

    let reply = clients_cmd(&mut c, &["IDLE", "0", "KILL"]);
    let killed = listed(&reply);
    assert!(killed.iter().all(|(.., k)| *k), "{killed:?}");
    assert_eq!(
        sorted(killed.iter().map(|(id, ..)| *id).collect()),
        sorted(normal_ids.clone())
    );
    let gone = wait_until(Duration::from_secs(10), || {
        let live = live_ids(&mut c);
        normal_ids.iter().all(|id| !live.contains(id))
    });
    assert!(gone, "killed clients still listed");
    let live = live_ids(&mut c);
    for id in &spared {
        assert!(live.contains(id), "client {id} was closed");
    }
    assert_eq!(stat(&mut c, "clients_killed"), normal_ids.len() as i64);
    assert_eq!(
        info_i64(&mut c, "retention", "retention_clients_killed"),
        normal_ids.len() as i64
    );

    // The worker still takes a job, the subscribers still hear, the replica still follows.
    call(&mut c, &["LPUSH", "jobs:wait", "job-1"]);
    assert!(
        worker.receives("job-1"),
        "the blocked worker lost its connection"
    );
    assert_eq!(
        call(&mut c, &["LRANGE", "jobs:active", "0", "-1"]),
        Value::Array(vec![Value::BulkString(b"job-1".to_vec())])
    );
    assert_eq!(call(&mut c, &["PUBLISH", "news", "hello"]), Value::Int(1));
    assert_eq!(call(&mut c, &["PUBLISH", "news3", "hello3"]), Value::Int(1));
    assert!(sub2.receives("hello") && sub3.receives("hello3"));
    assert_eq!(info_i64(&mut c, "replication", "connected_slaves"), 1);
    wait_replica_caught_up(&master, &replica);
    assert_eq!(
        call(&mut replica.conn(), &["LRANGE", "jobs:active", "0", "-1"]),
        Value::Array(vec![Value::BulkString(b"job-1".to_vec())])
    );

    // On the replica, its master link is never a candidate, however idle.
    let mut r = replica.conn();
    let link: Vec<u64> = client_list(&mut r)
        .iter()
        .filter(|k| k.flags.contains('M'))
        .map(|k| k.id)
        .collect();
    assert_eq!(link.len(), 1, "{:?}", client_list(&mut r));
    wait_clients(&mut r, &link, "master link idle", |k| k.idle_s >= 2);
    let reply = clients_cmd(&mut r, &["IDLE", "0", "KILL"]);
    assert!(listed(&reply).iter().all(|(id, ..)| *id != link[0]));
    assert!(live_ids(&mut r).contains(&link[0]));
    assert_eq!(
        info_field(&info(&mut r, "replication"), "master_link_status").as_deref(),
        Some("up")
    );
}

#[test]
fn name_glob_filters_and_the_caller_stays() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let a = RawClient::open(&server, &[&["CLIENT", "SETNAME", "web-1"]]);
    let b = RawClient::open(&server, &[&["CLIENT", "SETNAME", "web-2"]]);
    let other = RawClient::open(&server, &[&["CLIENT", "SETNAME", "batch-1"]]);
    let unnamed = RawClient::open(&server, &[]);
    let ids = [a.id, b.id, other.id, unnamed.id];
    wait_clients(&mut c, &ids, "idle", |k| k.idle_s >= 2);
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).expect("id");

    let reply = clients_cmd(&mut c, &["IDLE", "1", "NAME", "web-*", "KILL"]);
    assert_eq!(
        sorted(listed(&reply).iter().map(|(id, ..)| *id).collect()),
        sorted(vec![a.id, b.id])
    );
    let closed = wait_until(Duration::from_secs(10), || {
        let live = live_ids(&mut c);
        !live.contains(&a.id) && !live.contains(&b.id)
    });
    assert!(closed);
    let live = live_ids(&mut c);
    assert!(live.contains(&other.id) && live.contains(&unnamed.id));

    // `?` matches one byte: no unnamed client matches, and the name must be one byte long.
    assert_eq!(
        listed(&clients_cmd(&mut c, &["IDLE", "0", "NAME", "?"])),
        []
    );
    // Everything idle but the caller, which is never listed.
    let reply = clients_cmd(&mut c, &["IDLE", "0", "KILL"]);
    let killed = listed(&reply);
    assert_eq!(
        sorted(killed.iter().map(|(id, ..)| *id).collect()),
        sorted(vec![other.id, unnamed.id])
    );
    assert!(killed.iter().all(|(id, ..)| *id as i64 != me));
    assert_eq!(call(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
    assert_eq!(stat(&mut c, "clients_killed"), 4);
}

#[test]
fn a_worker_served_by_a_push_in_the_same_iteration_keeps_its_element() {
    // A worker blocked in BLPOP long enough to look idle the moment it is served. The push and
    // the KILL arrive in one write, so the server runs both before it writes the worker's
    // reply: the worker is then unblocked (`u`) with its reply pending. Closing it would drop
    // the popped element with the connection.
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let mut worker = RawClient::open(&server, &[&["BLPOP", "jobs", "0"]]);
    let idle = RawClient::open(&server, &[]);
    wait_clients(&mut c, &[worker.id, idle.id], "idle", |k| k.idle_s >= 2);
    let mut both = redis::pipe();
    both.cmd("LPUSH").arg("jobs").arg("job-1");
    both.cmd("RETENTION.CLIENTS").arg("IDLE").arg(1).arg("KILL");
    let (pushed, reply): (i64, Value) = both.query(&mut c).expect("LPUSH + CLIENTS");
    assert_eq!(pushed, 1);
    assert_eq!(
        listed(&reply)
            .iter()
            .map(|(id, ..)| *id)
            .collect::<Vec<_>>(),
        [idle.id],
        "only the idle client is closed"
    );
    assert!(worker.receives("job-1"), "the worker lost its element");
    assert!(live_ids(&mut c).contains(&worker.id));
    assert_eq!(call(&mut c, &["LLEN", "jobs"]), Value::Int(0));
}

#[test]
fn the_reply_is_a_map_per_client_under_resp3_too() {
    let server = Server::start_paused(None);
    let idle = RawClient::open(&server, &[&["CLIENT", "SETNAME", "idle-3"]]);
    let mut c = server.conn();
    wait_clients(&mut c, &[idle.id], "idle", |k| k.idle_s >= 2);
    let _: Value = redis::cmd("HELLO").arg(3).query(&mut c).expect("HELLO 3");
    let reply = clients_cmd(&mut c, &["IDLE", "1"]);
    assert!(matches!(reply, Value::Map(_)), "{reply:?}");
    assert_eq!(map_int(&reply, "clients_killed"), 0);
    let Some(Value::Array(items)) = map_field(&reply, "clients") else {
        panic!("{reply:?}");
    };
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Value::Map(_)), "{reply:?}");
    assert_eq!(map_int(&items[0], "id") as u64, idle.id);
    assert_eq!(map_str(&items[0], "name").as_deref(), Some("idle-3"));
    assert_eq!(map_str(&items[0], "user").as_deref(), Some("default"));
    assert_eq!(map_str(&items[0], "cmd").as_deref(), Some("client|setname"));
    assert!(map_int(&items[0], "idle_ms") >= 2000);
    assert_eq!(map_int(&items[0], "killed"), 0);
    assert!(map_str(&items[0], "addr").is_some_and(|a| a.starts_with("127.0.0.1:")));
}

#[test]
fn bad_input_gets_a_clear_error_and_kills_nothing() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let idle = RawClient::open(&server, &[&["CLIENT", "SETNAME", "idle-x"]]);
    wait_clients(&mut c, &[idle.id], "idle", |k| k.idle_s >= 2);
    for (args, expected) in [
        (&[][..], "wrong number of arguments"),
        (&["KILL"], "wrong number of arguments"),
        (&["NAME", "idle-*", "KILL"], "needs IDLE"),
        (&["IDLE"], "wrong number of arguments"),
        (&["IDLE", "-1", "KILL"], "IDLE: bad duration '-1'"),
        (
            &["IDLE", "2147483648", "KILL"],
            "IDLE must be 0 to 2147483647 seconds (got 2147483648)",
        ),
        (
            &["IDLE", "99999999999999999999", "KILL"],
            "number too large",
        ),
        (&["IDLE", "ten", "KILL"], "IDLE: bad duration 'ten'"),
        (&["IDLE", "1.5", "KILL"], "a duration is a whole number"),
        (&["IDLE", "1", "KILL", "NOW"], "unknown option 'NOW'"),
        (&["IDLE", "1", "KILL", "KILL"], "KILL given twice"),
        (&["IDLE", "1", "IDLE", "2", "KILL"], "IDLE given twice"),
        (&["IDLE", "1", "KILL", "NAME"], "needs NAME <glob>"),
        (&["IDLE", "1", "KILL", "NAME", ""], "empty glob"),
        (&["IDLE", "1", "KILL", "NAME", "idle-[x"], "unterminated"),
    ] {
        let mut words = vec!["RETENTION.CLIENTS"];
        words.extend_from_slice(args);
        let err = match try_call(&mut c, &words) {
            Ok(v) => panic!("{args:?} succeeded: {v:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // Not from scripts (as CLIENT itself).
    let err = try_call(
        &mut c,
        &[
            "EVAL",
            "return redis.call('RETENTION.CLIENTS', 'IDLE', '0', 'KILL')",
            "0",
        ],
    )
    .expect_err("refused in a script")
    .to_string();
    assert!(err.contains("not allowed from script"), "{err}");
    assert!(
        live_ids(&mut c).contains(&idle.id),
        "bad input closed a client"
    );
    assert_eq!(stat(&mut c, "clients_killed"), 0);
}

#[test]
fn users_without_admin_rights_get_noperm() {
    let server = Server::start_paused(None);
    let mut admin = server.conn();
    for user in [
        // The ready-made application user of the README.
        &["app", "on", ">pw", "~*", "+@all", "-@admin", "-@dangerous"][..],
        // Granted the command by name, but without the rights of CONFIG SET.
        &[
            "named",
            "on",
            ">pw",
            "~*",
            "+@read",
            "+@connection",
            "+retention.clients",
        ],
    ] {
        let mut rules = vec!["SETUSER"];
        rules.extend_from_slice(user);
        let _: () = redis::cmd("ACL")
            .arg(&rules)
            .query(&mut admin)
            .expect("ACL SETUSER");
    }
    let idle = RawClient::open(&server, &[&["CLIENT", "SETNAME", "idle-p"]]);
    wait_clients(&mut admin, &[idle.id], "idle", |k| k.idle_s >= 2);
    for user in ["app", "named"] {
        let mut c = login(&server, user);
        for args in [&["IDLE", "0"][..], &["IDLE", "0", "KILL"]] {
            let mut words = vec!["RETENTION.CLIENTS"];
            words.extend_from_slice(args);
            let err = try_call(&mut c, &words).expect_err("denied").to_string();
            assert!(err.contains("NOPERM"), "{user} {args:?}: {err}");
            assert!(err.contains("retention.clients"), "{err}");
        }
    }
    assert!(live_ids(&mut admin).contains(&idle.id));
    assert_eq!(stat(&mut admin, "clients_killed"), 0);
    let log: Vec<Value> = redis::cmd("ACL")
        .arg("LOG")
        .query(&mut admin)
        .expect("ACL LOG");
    for user in ["app", "named"] {
        assert!(
            log.iter()
                .any(|e| map_str(e, "username").as_deref() == Some(user)
                    && map_str(e, "object").as_deref() == Some("retention.clients")),
            "no ACL LOG entry for {user}: {log:?}"
        );
    }
}

#[test]
fn a_renamed_client_command_gets_a_clear_error() {
    let server =
        Server::start(
            ServerOpts::default()
                .paused()
                .directive(&["rename-command", "CLIENT", ""]),
        )
        .expect("server");
    let err = try_call(
        &mut server.conn(),
        &["RETENTION.CLIENTS", "IDLE", "0", "KILL"],
    )
    .expect_err("no CLIENT command")
    .to_string();
    assert!(
        err.contains("renamed or disabled") && err.contains("rename-command CLIENT"),
        "{err}"
    );
}

#[test]
fn the_background_reaper_closes_idle_normal_clients_only() {
    // No policy: the background sweeper has nothing to do; the reaper runs from the cron.
    let server = Server::start(ServerOpts::default()).expect("server");
    let mut c = server.conn();
    let mut worker = RawClient::open(&server, &[&["BZPOPMIN", "jobs:prio", "0"]]);
    let sub = RawClient::open(&server, &[&["HELLO", "3"], &["SUBSCRIBE", "news"]]);
    let idle = RawClient::open(&server, &[&["CLIENT", "SETNAME", "idle-bg"]]);
    wait_clients(&mut c, &[worker.id], "blocked", |k| k.flags.contains('b'));
    wait_clients(&mut c, &[sub.id], "subscribed", |k| k.flags.contains('P'));
    // Under retention.dry-run nothing is closed, however long the client idles.
    config_set(&mut c, "retention.dry-run", "yes");
    config_set(&mut c, "retention.clients-idle-kill-s", "1");
    let idled = wait_until(Duration::from_secs(30), || {
        client_list(&mut c)
            .iter()
            .any(|k| k.id == idle.id && k.idle_s >= 3)
    });
    assert!(
        idled,
        "the idle client vanished under dry-run: {:?}",
        client_list(&mut c)
    );
    assert_eq!(stat(&mut c, "clients_killed"), 0);
    config_set(&mut c, "retention.dry-run", "no");
    // The test's own connection stays busy, so it is never idle long enough.
    let closed = wait_until(Duration::from_secs(60), || {
        !live_ids(&mut c).contains(&idle.id)
    });
    config_set(&mut c, "retention.clients-idle-kill-s", "0");
    assert!(
        closed,
        "the idle client was not closed: {:?}",
        client_list(&mut c)
    );
    let live = live_ids(&mut c);
    assert!(live.contains(&worker.id) && live.contains(&sub.id));
    assert!(stat(&mut c, "clients_killed") >= 1);
    call(&mut c, &["ZADD", "jobs:prio", "1", "job-9"]);
    assert!(worker.receives("job-9"));
    assert!(server.log().contains("idle longer than 1 s"));
}

/// The module's own `CLIENT LIST` calls, as the slow log records them (with
/// `slowlog-log-slower-than 0` it records every command, those run through `RM_Call`
/// included): `(unix time s, arguments after LIST)`. The test itself never sends
/// `CLIENT LIST TYPE` or `CLIENT LIST ID`. The slow log keeps 32 arguments of a command;
/// the last then says how many more there were.
fn module_listings(c: &mut Connection) -> Vec<(i64, Vec<String>)> {
    let entries: Vec<Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query(c)
        .expect("SLOWLOG GET");
    let mut found: Vec<(i64, i64, Vec<String>)> = entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(fields) = entry else {
                return None;
            };
            let id: i64 = redis::from_redis_value(fields.first()?).ok()?;
            let at: i64 = redis::from_redis_value(fields.get(1)?).ok()?;
            let args: Vec<String> = redis::from_redis_value(fields.get(3)?).ok()?;
            let upper: Vec<String> = args.iter().map(|a| a.to_ascii_uppercase()).collect();
            let ours = upper.len() > 2
                && upper[..2] == ["CLIENT", "LIST"]
                && (upper[2] == "TYPE" || upper[2] == "ID");
            ours.then(|| (id, at, upper[2..].to_vec()))
        })
        .collect();
    found.sort_by_key(|(id, ..)| *id);
    found.into_iter().map(|(_, at, args)| (at, args)).collect()
}

/// How many ids a `CLIENT LIST ID ...` names, from its slow-log arguments (after LIST).
fn ids_named(args: &[String]) -> usize {
    let more = args
        .last()
        .and_then(|a| a.strip_prefix("... ("))
        .and_then(|a| a.strip_suffix(" MORE ARGUMENTS)"))
        .and_then(|n| n.parse::<usize>().ok());
    match more {
        Some(n) => args.len() - 2 + n,
        None => args.len() - 1,
    }
}

#[test]
fn the_background_reaper_lists_clients_once_however_many_are_idle() {
    let server = Server::start(
        ServerOpts::default()
            .config("slowlog-log-slower-than", "0")
            .config("slowlog-max-len", "100000"),
    )
    .expect("server");
    let mut c = server.conn();
    let mut worker = RawClient::open(&server, &[&["BLPOP", "jobs", "0"]]);
    let mut sub = RawClient::open(&server, &[&["SUBSCRIBE", "news"]]);
    let idle: Vec<RawClient> = (0..300).map(|_| RawClient::open(&server, &[])).collect();
    let idle_ids: Vec<u64> = idle.iter().map(|k| k.id).collect();
    wait_clients(&mut c, &[worker.id], "blocked", |k| k.flags.contains('b'));
    wait_clients(&mut c, &[sub.id], "subscribed", |k| k.flags.contains('P'));
    let all: Vec<u64> = [idle_ids.clone(), vec![worker.id, sub.id]].concat();
    wait_clients(&mut c, &all, "idle", |k| k.idle_s >= 2);

    call(&mut c, &["SLOWLOG", "RESET"]);
    config_set(&mut c, "retention.clients-idle-kill-s", "1");
    let closed = wait_until(Duration::from_secs(60), || {
        let live = live_ids(&mut c);
        idle_ids.iter().all(|id| !live.contains(id))
    });
    config_set(&mut c, "retention.clients-idle-kill-s", "0");
    assert!(closed, "idle clients left: {:?}", client_list(&mut c).len());
    assert_eq!(stat(&mut c, "clients_killed"), idle_ids.len() as i64);
    let live = live_ids(&mut c);
    assert!(live.contains(&worker.id) && live.contains(&sub.id));
    call(&mut c, &["LPUSH", "jobs", "job-1"]);
    assert!(
        worker.receives("job-1"),
        "the blocked worker lost its connection"
    );
    assert_eq!(call(&mut c, &["PUBLISH", "news", "hello"]), Value::Int(1));
    assert!(sub.receives("hello"), "the subscriber lost its connection");

    // Every client is listed at most once a second (the reaper's interval for a 1 s limit);
    // in between, each tick looks again at no more than 100 named clients.
    let calls = module_listings(&mut c);
    let listings: Vec<i64> = calls
        .iter()
        .filter(|(_, args)| args[0] == "TYPE")
        .map(|(at, _)| *at)
        .collect();
    assert!(!listings.is_empty(), "no listing recorded: {calls:?}");
    let mut seconds = listings.clone();
    seconds.dedup();
    assert_eq!(seconds, listings, "listed twice within a second: {calls:?}");
    let looks: Vec<usize> = calls
        .iter()
        .filter(|(_, args)| args[0] == "ID")
        .map(|(_, args)| ids_named(args))
        .collect();
    assert!(
        looks.iter().all(|&n| (1..=100).contains(&n)) && looks.iter().sum::<usize>() >= 300,
        "ids looked at per tick: {looks:?}"
    );
}
