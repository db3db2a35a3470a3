//! Production conditions: several databases in use at once, hardened servers
//! (`rename-command`), WATCH on keys the module only looks at, memory pressure on the new-key
//! path, and a master demoted in the middle of its work.

mod common;

use std::time::Duration;

use common::*;
use redis::{Commands, Connection, Value};

/// Expire times of `keys` in database `db`.
fn expire_times_in(c: &mut Connection, db: i64, keys: &[String]) -> Vec<i64> {
    select(c, db);
    let times = expire_times(c, keys);
    select(c, 0);
    times
}

/// A master with AOF and the module's background sweeper and new-key tracking on (no full
/// pass after the first, on the empty keyspace), and a replica.
fn master_and_replica(policy_json: &str, master_extra: ServerOpts) -> (Server, Server, ServerOpts) {
    let dir = scratch_dir("prod");
    let policy = write_policy(&dir, policy_json);
    let mut opts = master_extra
        .policy(&policy)
        .module_arg("pass-interval-s", "3600")
        .aof();
    opts.config.push(("hz".into(), "10".into()));
    let master = Server::start_in(dir, opts.clone()).expect("master");
    let replica = Server::start(ServerOpts::default().policy(&policy)).expect("replica");
    attach_replica(&master, &replica);
    let mut c = master.conn();
    assert!(
        wait_until(Duration::from_secs(5), || stat(&mut c, "passes") >= 1),
        "the first background pass did not end"
    );
    (master, replica, opts)
}

const TTL_POLICY: &str = r#"{"rules":[
  {"name":"keep","match":"k:*","keep":true},
  {"name":"t","match":"t:*","ttl":"1d"},
  {"name":"s","match":"s:*","type":"stream","trim":{"max_len":10}}
]}"#;

#[test]
fn new_keys_in_two_databases_replicate_each_ttl_in_its_own_database() {
    let (mut master, replica, opts) = master_and_replica(TTL_POLICY, ServerOpts::default());
    let mut c = master.conn();
    // One pipeline: the keys of both databases are noted in the same loop iteration, the
    // same names in both, and db 3's last.
    let names: Vec<String> = (0..300).map(|i| format!("t:{i}")).collect();
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.cmd("SELECT").arg(0).ignore();
        pipe.cmd("SET").arg(name).arg("zero").ignore();
        pipe.cmd("SELECT").arg(3).ignore();
        pipe.cmd("SET").arg(name).arg("three").ignore();
    }
    pipe.cmd("SELECT").arg(0).ignore();
    let _: () = pipe.query(&mut c).expect("pipeline");
    let last = names.last().expect("names").clone();
    let all_set = wait_until(Duration::from_secs(10), || {
        expire_times_in(&mut c, 0, std::slice::from_ref(&last))[0] > 0
            && expire_times_in(&mut c, 3, std::slice::from_ref(&last))[0] > 0
    });
    assert!(all_set, "tracking gave no TTL");
    wait_replica_caught_up(&master, &replica);
    let mut r = replica.conn();
    for db in [0, 3] {
        let on_master = expire_times_in(&mut c, db, &names);
        assert!(on_master.iter().all(|&t| t > 0), "db {db}: {on_master:?}");
        let on_replica = expire_times_in(&mut r, db, &names);
        assert_eq!(
            on_master, on_replica,
            "db {db}: replica's expire times differ"
        );
    }
    // The AOF holds each database's own PEXPIREATs.
    let before: Vec<Vec<i64>> = [0, 3]
        .iter()
        .map(|&db| expire_times_in(&mut c, db, &names))
        .collect();
    drop(c);
    master.kill();
    let restarted = Server::start_in(master.dir.clone(), opts).expect("restart from AOF");
    let mut c = restarted.conn();
    for (i, db) in [0, 3].into_iter().enumerate() {
        assert_eq!(
            expire_times_in(&mut c, db, &names),
            before[i],
            "db {db}: AOF reload differs"
        );
    }
}

#[test]
fn queued_work_of_a_noted_key_runs_in_the_key_s_database() {
    let (master, replica, _) = master_and_replica(TTL_POLICY, ServerOpts::default());
    let mut c = master.conn();
    let mut pipe = redis::pipe();
    pipe.cmd("SELECT").arg(2).ignore();
    for i in 0..50 {
        pipe.cmd("XADD")
            .arg("s:events")
            .arg("*")
            .arg("i")
            .arg(i)
            .ignore();
    }
    // The trim is queued while db 2 is selected; db 0 is selected when it runs.
    pipe.cmd("SELECT").arg(0).ignore();
    pipe.cmd("SET").arg("t:after").arg("v").ignore();
    let _: () = pipe.query(&mut c).expect("pipeline");
    let trimmed = wait_until(Duration::from_secs(10), || {
        select(&mut c, 2);
        let len: i64 = c.xlen("s:events").expect("XLEN");
        select(&mut c, 0);
        len == 10
    });
    assert!(trimmed, "the stream in db 2 was not trimmed");
    let exists_in_0: i64 = c.exists("s:events").expect("EXISTS");
    assert_eq!(exists_in_0, 0, "nothing was created in db 0");
    wait_replica_caught_up(&master, &replica);
    let mut r = replica.conn();
    select(&mut r, 2);
    let len: i64 = r.xlen("s:events").expect("XLEN replica");
    assert_eq!(len, 10, "replica's stream differs");
}

#[test]
fn background_passes_cover_every_database_that_has_keys() {
    let dir = scratch_dir("alldb");
    let policy = write_policy(&dir, TTL_POLICY);
    let server = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .module_arg("pass-interval-s", "0")
            .module_arg("track-new-keys", "no"),
    )
    .expect("server");
    let mut c = server.conn();
    for db in [0, 5, 9] {
        select(&mut c, db);
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(2000)
            .arg("t")
            .query(&mut c)
            .expect("POPULATE");
    }
    let keys: Vec<String> = (0..2000).step_by(37).map(|i| format!("t:{i}")).collect();
    for db in [0, 5, 9] {
        let done = wait_until(Duration::from_secs(20), || {
            expire_times_in(&mut c, db, &keys).iter().all(|&t| t > 0)
        });
        assert!(done, "db {db}: the background sweeper gave no TTLs");
    }
}

/// Every file of the server's append-only log, concatenated (Redis 7 keeps a base file and
/// increments under `appendonlydir/`).
fn aof_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("appendonlydir"))
        .expect("appendonlydir")
        .map(|e| e.expect("AOF entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).expect("AOF file"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Writes `n` keys `t:<i>` through the replication stream (DEBUG POPULATE is not replicated).
fn set_keys(c: &mut Connection, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("t:{i}")).collect();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("SET").arg(key).arg("v").ignore();
    }
    let _: () = pipe.query(c).expect("SET");
    keys
}

fn assert_same_expire_times(master: &Server, other: &Server, keys: &[String], what: &str) {
    let on_master = expire_times(&mut master.conn(), keys);
    assert!(on_master.iter().all(|&t| t > 0), "the master set every TTL");
    let on_other = expire_times(&mut other.conn(), keys);
    let differing = on_master
        .iter()
        .zip(&on_other)
        .filter(|(m, r)| m != r)
        .count();
    assert_eq!(differing, 0, "{what}: expire times differ");
    assert_eq!(
        master.digest(),
        other.digest(),
        "{what}: DEBUG DIGEST differs"
    );
}

/// Operators harden replicas first: a replica with EVAL renamed away applies every expire
/// time its master's module set, because the stream holds only `PEXPIREAT`s.
#[test]
fn a_replica_with_eval_renamed_receives_every_expire_time() {
    let dir = scratch_dir("evalreplica");
    let policy = write_policy(&dir, TTL_POLICY);
    let master = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .module_arg("pass-interval-s", "3600"),
    )
    .expect("master");
    let replica = Server::start(ServerOpts::default().policy(&policy).directive(&[
        "rename-command",
        "EVAL",
        "",
    ]))
    .expect("replica");
    attach_replica(&master, &replica);
    let mut c = master.conn();
    // The new-key path and a sweep share the work: both replicate.
    let keys = set_keys(&mut c, 20_000);
    sweep(&mut c, &[]);
    wait_replica_caught_up(&master, &replica);
    assert_same_expire_times(&master, &replica, &keys, "replica without EVAL");
    assert_eq!(stat(&mut c, "replication_errors"), 0);
    let replica_log = replica.log();
    assert!(
        !replica_log.contains("Unknown command"),
        "the replica refused part of the stream: {replica_log}"
    );
}

/// The AOF holds the server's own commands (`PEXPIREAT`, in `MULTI`/`EXEC`), never a
/// script; a master restarted with EVAL renamed away loads it and has every expire time.
#[test]
fn the_aof_holds_no_script_and_loads_with_eval_renamed() {
    let (mut master, replica, _) = master_and_replica(TTL_POLICY, ServerOpts::default());
    let mut c = master.conn();
    let keys = set_keys(&mut c, 20_000);
    sweep(&mut c, &[]);
    wait_replica_caught_up(&master, &replica);
    assert_same_expire_times(&master, &replica, &keys, "replica");
    let aof = aof_bytes(&master.dir);
    assert!(!contains(&aof, b"EVAL"), "the AOF holds a script call");
    assert!(
        contains(&aof, b"PEXPIREAT"),
        "the AOF holds the expire times"
    );
    master.kill();
    let dir = master.dir.clone();
    let restarted = Server::start_in(
        dir,
        ServerOpts::default()
            .paused()
            .config("appendonly", "yes")
            .directive(&["rename-command", "EVAL", ""]),
    )
    .expect("a restart with EVAL renamed loads the AOF");
    assert_same_expire_times(&restarted, &replica, &keys, "restart from the AOF");
}

#[test]
fn renamed_pexpireat_refuses_to_load_with_a_clear_log_line() {
    let dir = scratch_dir("nopexpireat");
    let policy = write_policy(&dir, TTL_POLICY);
    let started = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .directive(&["rename-command", "PEXPIREAT", ""]),
    );
    let log = match started {
        Ok(_) => panic!("the module loaded without PEXPIREAT"),
        Err(log) => log,
    };
    assert!(
        log.contains("PEXPIREAT command is renamed or disabled"),
        "{log}"
    );
}

#[test]
fn a_kept_key_the_module_looked_at_does_not_break_watch() {
    let (master, _replica, _) = master_and_replica(TTL_POLICY, ServerOpts::default());
    let mut c = master.conn();
    // The key is created and watched in one loop iteration; the module looks at it before
    // the next one (the keep rule governs it, so it is noted).
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("k:watched")
        .arg("v")
        .ignore()
        .cmd("WATCH")
        .arg("k:watched")
        .ignore()
        .query(&mut c)
        .expect("SET + WATCH");
    // Noted keys are handled in order: once a later key has its TTL, k:watched was seen.
    let mut other = master.conn();
    let _: () = other.set("t:probe", "v").expect("SET probe");
    assert!(wait_until(Duration::from_secs(5), || {
        other.ttl::<_, i64>("t:probe").unwrap_or(-1) > 0
    }));
    assert!(stat(&mut other, "tracked_keys") >= 2);
    let exec: Value = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("k:watched")
        .arg("w")
        .query(&mut c)
        .expect("EXEC");
    assert_ne!(exec, Value::Nil, "the transaction was aborted");
    let value: String = c.get("k:watched").expect("GET");
    assert_eq!(value, "w");
}

#[test]
fn under_memory_pressure_new_keys_get_the_pressure_ttl_and_earlier_ones_are_lowered() {
    let policy = r#"{"rules":[{"name":"p","match":"p:*","ttl":"1d","pressure":{"ttl":"1h"}}]}"#;
    let (master, replica, _) = master_and_replica(policy, ServerOpts::default());
    let mut c = master.conn();
    let _: () = c.set("p:before", "v").expect("SET");
    let _: () = c.set_ex("p:app", "v", 3 * 86_400).expect("SETEX");
    assert!(wait_until(Duration::from_secs(5), || {
        c.ttl::<_, i64>("p:before").unwrap_or(-1) > 86_000
    }));
    let used = info_i64(&mut c, "memory", "used_memory");
    for (k, v) in [
        ("maxmemory", (used * 2).to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        ("retention.pressure-ratio", "0.1".to_string()),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(&mut c)
            .expect("CONFIG SET");
    }
    let _: () = c.set("p:new", "v").expect("SET");
    assert!(
        wait_until(Duration::from_secs(5), || c
            .ttl::<_, i64>("p:new")
            .unwrap_or(-1)
            > 0),
        "the new key got no TTL"
    );
    let ttl: i64 = c.ttl("p:new").expect("TTL");
    assert!(ttl > 3_000 && ttl <= 3_600, "pressure TTL expected: {ttl}");
    sweep(&mut c, &[]);
    let lowered: i64 = c.ttl("p:before").expect("TTL");
    assert!(
        lowered <= 3_600,
        "the rule's earlier TTL is lowered: {lowered}"
    );
    let app: i64 = c.ttl("p:app").expect("TTL");
    assert!(
        app > 2 * 86_400,
        "an application's longer TTL is kept: {app}"
    );
    wait_replica_caught_up(&master, &replica);
    assert_eq!(master.digest(), replica.digest());
}

#[test]
fn a_master_demoted_mid_sweep_stops_writing_answers_its_client_and_goes_idle() {
    // The new master holds keys the rule governs, without TTLs, and no module that would
    // give them any. The old master's pass is long enough to outlive the sync (a small
    // snapshot, loaded in a moment) and would go on over the new dataset.
    let dir = scratch_dir("demote");
    let policy = write_policy(&dir, TTL_POLICY);
    let old = Server::start_in(dir, ServerOpts::default().policy(&policy).paused()).expect("old");
    let new = Server::start(
        ServerOpts::default()
            .policy(&policy)
            .paused()
            .config("repl-diskless-sync-delay", "0"),
    )
    .expect("new");
    populate(&old, 1_000_000);
    populate(&new, 20_000);
    let sweeper_port = old.port;
    let sweeper = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{sweeper_port}/"))?;
        let mut c = client.get_connection()?;
        redis::cmd("RETENTION.SWEEP")
            .arg("BUDGET")
            .arg(200)
            .query::<Value>(&mut c)
    });
    let mut c = old.conn();
    assert!(
        wait_until(Duration::from_secs(10), || stat(&mut c, "ttl_set") > 1000),
        "the sweep did not start"
    );
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new.port)
        .query(&mut c)
        .expect("REPLICAOF");
    let answer = sweeper.join().expect("sweeper thread");
    assert!(answer.is_err(), "the SWEEP client got a report: {answer:?}");
    let synced = wait_until(Duration::from_secs(30), || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut c)
            .unwrap_or_default();
        info.contains("master_link_status:up")
    });
    assert!(synced, "the demoted master did not sync");
    wait_replica_caught_up(&new, &old);
    // Time for a sweep that kept going to write into the synced dataset.
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_seconds(&mut c);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds(&mut c) - before;
    assert!(
        used < 0.5,
        "the demoted node is busy: {used:.2} CPU s in 1 s"
    );
    assert_eq!(
        old.digest(),
        new.digest(),
        "the demoted node wrote on its own"
    );
    let keys: Vec<String> = (0..20_000).step_by(7).map(|i| format!("t:{i}")).collect();
    assert!(expire_times(&mut c, &keys).iter().all(|&t| t == -1));
    assert!(stat(&mut c, "stopped_by_demotion") >= 1);
}

fn is_valkey(c: &mut Connection) -> bool {
    let info: String = redis::cmd("INFO").arg("server").query(c).expect("INFO");
    info.contains("server_name:valkey")
}

/// A slot of `{b}` keys (3300) migrates between two cluster nodes.
const SLOT_TAG: &str = "{b}";
const SLOT: i64 = 3300;

/// Valkey 9 refuses `CLUSTER MIGRATESLOTS` while a module that did not opt in is loaded.
/// The module opts in; a migration in the middle of background passes moves every key with
/// its expire time. (Redis has no atomic slot migration: the test runs under Valkey, in
/// scripts/test-valkey.)
#[test]
fn valkey_atomic_slot_migration_is_allowed_and_moves_keys_with_their_ttls() {
    let dir = scratch_dir("asm");
    let policy = write_policy(&dir, TTL_POLICY);
    let node = |dir| {
        let opts = ServerOpts::default()
            .policy(&policy)
            .module_arg("pass-interval-s", "0")
            .config("cluster-enabled", "yes")
            .config("cluster-config-file", "nodes.conf");
        Server::start_in(dir, opts).expect("cluster node")
    };
    let source = node(dir);
    let target = node(scratch_dir("asm"));
    let (mut s, mut t) = (source.conn(), target.conn());
    if !is_valkey(&mut s) {
        eprintln!("skipped: atomic slot migration needs Valkey 9 (RETENTION_SERVER_BIN)");
        return;
    }
    let slots = |c: &mut Connection, from: i64, to: i64| {
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(from)
            .arg(to)
            .query(c)
            .expect("ADDSLOTSRANGE");
    };
    slots(&mut s, 0, 8191);
    slots(&mut t, 8192, 16383);
    let _: () = redis::cmd("CLUSTER")
        .arg("MEET")
        .arg("127.0.0.1")
        .arg(target.port)
        .query(&mut s)
        .expect("MEET");
    assert!(wait_until(Duration::from_secs(30), || {
        [&mut s, &mut t].into_iter().all(|c| {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(c)
                .unwrap_or_default();
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:2")
        })
    }));
    let keyslot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(format!("t:{SLOT_TAG}:0"))
        .query(&mut s)
        .expect("KEYSLOT");
    assert_eq!(keyslot, SLOT);
    let names: Vec<String> = (0..5000).map(|i| format!("t:{SLOT_TAG}:{i}")).collect();
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.cmd("SET").arg(name).arg("v").ignore();
    }
    let _: () = pipe.query(&mut s).expect("SET");
    assert!(
        wait_until(Duration::from_secs(10), || {
            expire_times(&mut s, &names).iter().all(|&t| t > 0)
        }),
        "the keys got no TTL on the source"
    );
    let before = expire_times(&mut s, &names);
    let target_id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut t)
        .expect("MYID");
    let migrate: redis::RedisResult<()> = redis::cmd("CLUSTER")
        .arg("MIGRATESLOTS")
        .arg("SLOTSRANGE")
        .arg(SLOT)
        .arg(SLOT)
        .arg("NODE")
        .arg(&target_id)
        .query(&mut s);
    assert!(migrate.is_ok(), "MIGRATESLOTS refused: {migrate:?}");
    // Done when the keys are there and the target owns the slot (it answers for the keys
    // instead of redirecting: the keys arrive before the ownership changes).
    let moved = wait_until(Duration::from_secs(30), || {
        let arrived = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(SLOT)
            .query::<i64>(&mut t)
            .unwrap_or(0)
            == names.len() as i64;
        arrived && redis::cmd("EXISTS").arg(&names[0]).query::<i64>(&mut t) == Ok(1)
    });
    assert!(
        moved,
        "the slot's keys did not arrive, or the target does not own the slot"
    );
    assert_eq!(expire_times(&mut t, &names), before, "expire times changed");
}

/// CLIENT PAUSE WRITE (what FAILOVER and a cluster manual failover do) asks modules to
/// avoid replica traffic: the background sweeper holds its writes until the pause ends.
#[test]
fn background_work_holds_while_clients_are_paused_for_writes() {
    let dir = scratch_dir("pause");
    let policy = write_policy(&dir, TTL_POLICY);
    let server = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .paused()
            .module_arg("pass-interval-s", "0"),
    )
    .expect("server");
    let mut c = server.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(200_000)
        .arg("t")
        .query(&mut c)
        .expect("POPULATE");
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("WRITE")
        .query(&mut c)
        .expect("CLIENT PAUSE");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.enabled")
        .arg("yes")
        .query(&mut c)
        .expect("CONFIG SET");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        keys_with_ttl_db0(&mut c),
        0,
        "the sweeper wrote during the pause"
    );
    assert!(stat(&mut c, "held_for_failover") > 0);
    let resumed = wait_until(Duration::from_secs(30), || {
        keys_with_ttl_db0(&mut c) == 200_000
    });
    assert!(resumed, "the sweeper did not resume after the pause");
}

/// `t:0` ... `t:<n-1>` (`DEBUG POPULATE`: fast, and not replicated).
fn populate(server: &Server, n: i64) {
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(n)
        .arg("t")
        .query(&mut server.conn())
        .expect("POPULATE");
}

/// Runs `args` on a connection of its own and waits until the server shows that client
/// blocked in the command; returns its client id and the thread waiting for the reply.
fn start_blocked(
    server: &Server,
    args: &[&str],
) -> (i64, std::thread::JoinHandle<redis::RedisResult<Value>>) {
    let mut conn = server.conn();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut conn)
        .expect("CLIENT ID");
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let waiter =
        std::thread::spawn(move || redis::cmd(&owned[0]).arg(&owned[1..]).query(&mut conn));
    let mut c = server.conn();
    let blocked = wait_until(Duration::from_secs(10), || blocked_in(&mut c, id, args[0]));
    assert!(blocked, "{} never showed as blocked", args[0]);
    (id, waiter)
}

/// Closes the client `id` (as Ctrl-C in redis-cli would) and waits for the module to count
/// the command it waited in as stopped, the `n`th such.
fn close_and_see_stopped(
    c: &mut Connection,
    id: i64,
    waiter: std::thread::JoinHandle<redis::RedisResult<Value>>,
    n: i64,
) {
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(c)
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);
    let reply = waiter.join().expect("waiting thread");
    assert!(reply.is_err(), "a closed client got a reply: {reply:?}");
    assert!(
        wait_until(Duration::from_secs(10), || stat(c, "stopped_client_gone")
            == n),
        "stopped_client_gone did not reach {n}"
    );
}

/// What `f` reads now and again 300 ms later (both must be equal when nothing runs).
fn settled<T: PartialEq + std::fmt::Debug>(mut f: impl FnMut() -> T, what: &str) -> T {
    let first = f();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        f(),
        first,
        "{what} still changes after its client went away"
    );
    first
}

#[test]
fn a_client_that_goes_away_stops_its_sliced_command_and_the_replica_stays_equal() {
    let (master, replica, _) = master_and_replica(TTL_POLICY, ServerOpts::default());
    let mut c = master.conn();
    let keys = 1_000_000;
    // DEBUG POPULATE is not replicated: the same keys are made on both, on the replica first
    // (the TTLs new-key tracking gives the master's keys must find them there).
    populate(&replica, keys);
    populate(&master, keys);
    // New-key tracking gives the first populated keys their TTL: let it finish first, so that
    // what changes later is the commands' work only.
    let mut seen = -1;
    let tracked = wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(200));
        let now = stat(&mut c, "ttl_set");
        std::mem::replace(&mut seen, now) == now
    });
    assert!(tracked, "new-key tracking did not settle");
    // A sorted set of 1M members for RETENTION.TRIM, trimmed in slices.
    for chunk in 0..1_000 {
        let mut add = redis::cmd("ZADD");
        add.arg("z:big");
        for i in chunk * 1_000..(chunk + 1) * 1_000 {
            add.arg(i).arg(i);
        }
        let _: i64 = add.query(&mut c).expect("ZADD");
    }
    // A BullMQ queue of 100k completed jobs for RETENTION.JOBS ... CLEAN.
    const JOBS: i64 = 100_000;
    call(&mut c, &["HSET", "bull:q:meta", "version", "bullmq:5.81.5"]);
    let _: i64 = redis::cmd("EVAL")
        .arg(
            "for i = 1, tonumber(ARGV[1]) do \
               redis.call('HSET', 'bull:q:' .. i, 'timestamp', 1, 'finishedOn', i) \
               redis.call('ZADD', 'bull:q:completed', i, i) \
             end return 1",
        )
        .arg(0)
        .arg(JOBS)
        .query(&mut c)
        .expect("jobs");

    // A report (read-only, sliced like TRIM and CLEAN).
    let (id, waiter) = start_blocked(&master, &["RETENTION.REPORT"]);
    close_and_see_stopped(&mut c, id, waiter, 1);
    assert!(master
        .log()
        .contains("RETENTION.REPORT stopped: its client disconnected"));

    // A trim: what it removed before the client went is replicated, and then it stops.
    let (id, waiter) = start_blocked(&master, &["RETENTION.TRIM", "z:big", "MAXLEN", "10"]);
    close_and_see_stopped(&mut c, id, waiter, 2);
    let left: i64 = settled(|| c.zcard("z:big").expect("ZCARD"), "the trim");
    assert!(left > 10 && left < 1_000_000, "{left} members left");

    // A queue clean: the same, whole jobs only (each job's hash goes with its entry).
    let clean = CLEAN_QUEUE_Q;
    let (id, waiter) = start_blocked(&master, &clean);
    close_and_see_stopped(&mut c, id, waiter, 3);
    let jobs_left: i64 = settled(|| c.zcard("bull:q:completed").expect("ZCARD"), "the clean");
    assert!(jobs_left > 0 && jobs_left < JOBS, "{jobs_left} jobs left");
    let hashes_left = scan_match(&mut c, b"bull:q:[0-9]*").len() as i64;
    assert_eq!(
        hashes_left, jobs_left,
        "a job's hash and its entry went apart"
    );

    // A sweep pass: the same, and no pass is left running.
    let gave = |c: &mut Connection| stat(c, "ttl_set");
    let before = gave(&mut c);
    let (id, waiter) = start_blocked(&master, &["RETENTION.SWEEP", "BUDGET", "200"]);
    assert!(wait_until(Duration::from_secs(10), || gave(&mut c) > before + 1_000));
    close_and_see_stopped(&mut c, id, waiter, 4);
    let given = settled(|| gave(&mut c), "the sweep");
    assert!(
        given < keys,
        "the sweep finished before its client went: {given}"
    );
    assert_eq!(running_pass(&mut c), None);

    assert_same_data(&master, &replica, &[0], "after the stopped commands");
    let sample: Vec<String> = (0..keys).step_by(97).map(|i| format!("t:{i}")).collect();
    let at_master = expire_times(&mut c, &sample);
    assert!(at_master.contains(&-1) && at_master.iter().any(|&t| t > 0));
    assert_eq!(at_master, expire_times(&mut replica.conn(), &sample));
    // The server is free for the next command of each kind.
    let trimmed: i64 = redis::cmd("RETENTION.TRIM")
        .arg("z:big")
        .arg("MAXLEN")
        .arg(10)
        .query(&mut c)
        .expect("TRIM");
    assert_eq!(trimmed, left - 10);
    let cleaned: Value = redis::cmd(clean[0])
        .arg(&clean[1..])
        .query(&mut c)
        .expect("CLEAN");
    assert_eq!(jobs_removed(&cleaned), jobs_left);
}

/// `MODULE UNLOAD` is refused with the server's error and a log line saying why; the module
/// keeps working (the server would otherwise keep calling its event-loop hook).
#[test]
fn module_unload_is_refused_and_the_module_keeps_working() {
    let (mut master, _replica, _) = master_and_replica(TTL_POLICY, ServerOpts::default());
    let mut c = master.conn();
    let unload: redis::RedisResult<Value> = redis::cmd("MODULE")
        .arg(&["UNLOAD", "retention"])
        .query(&mut c);
    let err = unload.expect_err("MODULE UNLOAD succeeded").to_string();
    assert!(err.contains("Error unloading module"), "{err}");
    assert!(
        master.log().contains("MODULE UNLOAD refused"),
        "the reason is logged"
    );
    let modules: Value = redis::cmd("MODULE")
        .arg("LIST")
        .query(&mut c)
        .expect("LIST");
    assert!(format!("{modules:?}").contains("retention"), "{modules:?}");
    // Still at work: a new key gets its TTL, and the server is alive.
    let _: () = c.set("t:after-unload", "v").expect("SET");
    assert!(wait_until(Duration::from_secs(5), || {
        c.ttl::<_, i64>("t:after-unload").unwrap_or(-1) > 0
    }));
    std::thread::sleep(Duration::from_millis(300));
    assert!(master.alive(), "the server died");
}
