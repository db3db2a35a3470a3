//! Crashes in the middle of the work ("keys are never lost except by a rule that
//! asked for it"). The master is SIGKILLed while a large sweep or a large queue clean runs,
//! with its AOF written on every command, and restarted from that AOF: every key is either
//! untouched or changed exactly as its rule says, no job is half removed, and the work
//! resumes and finishes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use redis::{Connection, Value};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn aof_opts(policy: &Path) -> ServerOpts {
    ServerOpts::default().paused().policy(policy).aof()
}

/// Runs `args` on a connection of its own in a thread; its result once the server answers
/// or the connection breaks.
fn in_background(
    server: &Server,
    args: &[&str],
) -> std::thread::JoinHandle<redis::RedisResult<Value>> {
    let mut c = server.conn();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        try_call(&mut c, &words)
    })
}

const SWEEP_POLICY: &str = r#"{"rules":[
  {"name":"keep","match":"keep:*","keep":true},
  {"name":"ttl","match":"t:*","ttl":"1d"},
  {"name":"cap","match":"c:*","ttl":"1h","cap":true}
]}"#;

const TTL_KEYS: usize = 240_000;
const CAP_KEYS: usize = 30_000;
const KEEP_KEYS: usize = 15_000;
const OTHER_KEYS: usize = 15_000;

/// Counts of keys found untouched and changed, per class; panics on a key that is neither.
#[derive(Debug, Default)]
struct Outcome {
    untouched: usize,
    changed: usize,
}

/// Every `<prefix><i>` must have no TTL / `long_at` (untouched) or an expire time in
/// `[lo, hi]` (changed by its rule).
fn classify(
    c: &mut Connection,
    prefix: &str,
    n: usize,
    untouched_at: i64,
    changed: Option<(i64, i64)>,
) -> Outcome {
    let mut out = Outcome::default();
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for chunk in names.chunks(10_000) {
        for (name, at) in chunk.iter().zip(expire_times(c, chunk)) {
            if at == untouched_at {
                out.untouched += 1;
            } else if changed.is_some_and(|(lo, hi)| at >= lo && at <= hi) {
                out.changed += 1;
            } else {
                panic!("{name}: expire time {at} is neither untouched ({untouched_at}) nor the rule's {changed:?}");
            }
        }
    }
    out
}

#[test]
fn sigkill_in_a_large_sweep_leaves_each_key_untouched_or_done_and_the_sweeper_finishes() {
    let dir = scratch_dir("fault-sweep");
    let policy = write_policy(&dir, SWEEP_POLICY);
    let mut server = Server::start_in(dir.clone(), aof_opts(&policy)).expect("server");
    let mut c = server.conn();
    let long_at = now_ms() + 30 * DAY;
    // Written as commands (not DEBUG POPULATE), so that the AOF holds them.
    for (prefix, n) in [("t:", TTL_KEYS), ("keep:", KEEP_KEYS), ("o:", OTHER_KEYS)] {
        for start in (0..n).step_by(1000) {
            let pairs: Vec<(String, &str)> = (start..(start + 1000).min(n))
                .map(|i| (format!("{prefix}{i}"), "v"))
                .collect();
            let _: () = redis::cmd("MSET").arg(&pairs).query(&mut c).expect("MSET");
        }
    }
    let mut p = redis::pipe();
    for i in 0..CAP_KEYS {
        p.cmd("SET")
            .arg(format!("c:{i}"))
            .arg("v")
            .arg("PXAT")
            .arg(long_at)
            .ignore();
    }
    let _: () = p.query(&mut c).expect("SET PXAT");
    let total = (TTL_KEYS + CAP_KEYS + KEEP_KEYS + OTHER_KEYS) as i64;
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, total);

    let t_start = now_ms();
    let sweeper = in_background(&server, &["RETENTION.SWEEP", "BUDGET", "100"]);
    let mid_way = wait_until(Duration::from_secs(60), || {
        running_pass(&mut c).is_some_and(|(_, visited)| visited >= 30_000)
    });
    assert!(mid_way, "the sweep never got 30k keys into its pass");
    server.kill();
    let t_kill = now_ms();
    let reply = sweeper.join().expect("sweep thread");
    assert!(
        reply.is_err(),
        "the sweep finished before the kill (make the keyspace larger): {reply:?}"
    );

    let restarted = Server::start_in(dir, aof_opts(&policy)).expect("restart from AOF");
    let mut c = restarted.conn();
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, total, "keys were lost");
    let ttl = classify(
        &mut c,
        "t:",
        TTL_KEYS,
        -1,
        Some((t_start + DAY, t_kill + DAY)),
    );
    let cap = classify(
        &mut c,
        "c:",
        CAP_KEYS,
        long_at,
        Some((t_start + HOUR, t_kill + HOUR)),
    );
    let keep = classify(&mut c, "keep:", KEEP_KEYS, -1, None);
    let other = classify(&mut c, "o:", OTHER_KEYS, -1, None);
    println!("after the kill: t: {ttl:?}, c: {cap:?}, keep: {keep:?}, o: {other:?}");
    assert!(
        ttl.changed + cap.changed > 0,
        "nothing the sweep did before the kill reached the AOF"
    );
    assert!(
        ttl.untouched + cap.untouched > 0,
        "the kill was not in the middle of the sweep"
    );

    // The sweeper resumes (a new background pass) and finishes.
    config_set(&mut c, "retention.enabled", "yes");
    let finished = wait_until(Duration::from_secs(120), || stat(&mut c, "passes") >= 1);
    assert!(finished, "the background pass did not finish in 120 s");
    let status: Value = redis::cmd("RETENTION.STATUS").query(&mut c).unwrap();
    let last = flat_map(&status)
        .into_iter()
        .find(|(k, _)| k == "last_pass")
        .map(|(_, v)| v)
        .expect("STATUS last_pass");
    assert_eq!(map_int(&last, "errors"), 0, "{last:?}");
    let now = now_ms();
    let ttl = classify(
        &mut c,
        "t:",
        TTL_KEYS,
        i64::MIN,
        Some((t_start + DAY, now + DAY)),
    );
    assert_eq!(ttl.changed, TTL_KEYS, "keys left without their TTL");
    let cap = classify(
        &mut c,
        "c:",
        CAP_KEYS,
        i64::MIN,
        Some((t_start + HOUR, now + HOUR)),
    );
    assert_eq!(cap.changed, CAP_KEYS, "keys left with a TTL above the cap");
    classify(&mut c, "keep:", KEEP_KEYS, -1, None);
    classify(&mut c, "o:", OTHER_KEYS, -1, None);
    assert_eq!(stat(&mut c, "errors"), 0);
}

const QUEUE_POLICY: &str = r#"{"rules":[
  {"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq",
    "completed":{"max_age":"30d","max_len":100}}}
]}"#;

const JOBS: usize = 40_000;

/// For each job id of `bull:big:`: whether its hash, its `:logs` and its entry in
/// `completed` exist. A job must have all three or none.
fn job_states(c: &mut Connection) -> (usize, usize) {
    let (mut whole, mut gone) = (0, 0);
    let ids: Vec<String> = (1..=JOBS).map(|i| i.to_string()).collect();
    for chunk in ids.chunks(5_000) {
        let mut p = redis::pipe();
        for id in chunk {
            p.cmd("EXISTS").arg(format!("bull:big:{id}"));
            p.cmd("EXISTS").arg(format!("bull:big:{id}:logs"));
            p.cmd("ZSCORE").arg("bull:big:completed").arg(id);
        }
        let replies: Vec<Value> = p.query(c).expect("job states");
        for (id, r) in chunk.iter().zip(replies.chunks(3)) {
            let hash = r[0] == Value::Int(1);
            let logs = r[1] == Value::Int(1);
            let listed = r[2] != Value::Nil;
            match (hash, logs, listed) {
                (true, true, true) => whole += 1,
                (false, false, false) => gone += 1,
                _ => {
                    panic!("job {id} half removed: hash {hash}, logs {logs}, in completed {listed}")
                }
            }
        }
    }
    (whole, gone)
}

#[test]
fn sigkill_in_a_large_queue_clean_leaves_no_half_removed_job_and_cleaning_finishes() {
    let dir = scratch_dir("fault-clean");
    let policy = write_policy(&dir, QUEUE_POLICY);
    let mut server = Server::start_in(dir.clone(), aof_opts(&policy)).expect("server");
    let mut c = server.conn();
    call(
        &mut c,
        &[
            "HSET",
            "bull:big:meta",
            "opts.maxLenEvents",
            "10000",
            "version",
            "bullmq:5.81.5",
        ],
    );
    call(&mut c, &["SET", "bull:big:id", &JOBS.to_string()]);
    call(&mut c, &["XADD", "bull:big:events", "*", "event", "added"]);
    call(&mut c, &["RPUSH", "bull:big:wait", "live"]);
    call(
        &mut c,
        &[
            "HSET",
            "bull:big:live",
            "name",
            "n",
            "data",
            "{}",
            "timestamp",
            "1",
        ],
    );
    let t0 = now_ms() - DAY;
    for start in (1..=JOBS).step_by(2_000) {
        let mut p = redis::pipe();
        for i in start..(start + 2_000).min(JOBS + 1) {
            let finished = t0 + i as i64;
            p.cmd("HSET")
                .arg(format!("bull:big:{i}"))
                .arg(&[
                    ("name", "n".to_string()),
                    ("data", "{}".to_string()),
                    ("opts", "{}".to_string()),
                    ("timestamp", (finished - 10).to_string()),
                    ("processedOn", (finished - 5).to_string()),
                    ("finishedOn", finished.to_string()),
                ])
                .ignore();
            p.cmd("RPUSH")
                .arg(format!("bull:big:{i}:logs"))
                .arg("line")
                .ignore();
            p.cmd("ZADD")
                .arg("bull:big:completed")
                .arg(finished)
                .arg(i)
                .ignore();
        }
        let _: () = p.query(&mut c).expect("jobs");
    }
    config_set(&mut c, "retention.sweep-budget-us", "100");
    let cleaner = in_background(
        &server,
        &[
            "RETENTION.JOBS",
            "CLEAN",
            "bull",
            "big",
            "completed",
            "MAXAGE",
            "0",
        ],
    );
    let mid_way = wait_until(Duration::from_secs(60), || {
        let left: i64 = redis::cmd("ZCARD")
            .arg("bull:big:completed")
            .query(&mut c)
            .unwrap();
        left <= (JOBS - 3_000) as i64
    });
    assert!(mid_way, "the clean never removed 3000 jobs");
    server.kill();
    let reply = cleaner.join().expect("clean thread");
    assert!(
        reply.is_err(),
        "the clean finished before the kill (make the queue larger): {reply:?}"
    );

    let restarted = Server::start_in(dir, aof_opts(&policy)).expect("restart from AOF");
    let mut c = restarted.conn();
    let (whole, gone) = job_states(&mut c);
    println!("after the kill: {whole} jobs whole, {gone} removed");
    assert!(gone > 0, "nothing the clean did reached the AOF");
    assert!(whole > 0, "the kill was not in the middle of the clean");
    for key in [
        "bull:big:meta",
        "bull:big:id",
        "bull:big:live",
        "bull:big:wait",
    ] {
        assert_eq!(
            call(&mut c, &["EXISTS", key]),
            Value::Int(1),
            "{key} must stay"
        );
    }

    // The background sweeper resumes the cleaning and finishes it (max_len 100).
    config_set(&mut c, "retention.enabled", "yes");
    let finished = wait_until(Duration::from_secs(120), || stat(&mut c, "passes") >= 1);
    assert!(finished, "the background pass did not finish in 120 s");
    let (whole, gone) = job_states(&mut c);
    assert_eq!(
        (whole, gone),
        (100, JOBS - 100),
        "after the resumed cleaning"
    );
    let newest: Vec<String> = zmembers(&mut c, "bull:big:completed");
    let want: Vec<String> = ((JOBS - 99)..=JOBS).map(|i| i.to_string()).collect();
    assert_eq!(newest, want, "the newest 100 jobs stay");
    assert_eq!(stat(&mut c, "errors"), 0);
    assert!(stat(&mut c, "jobs_removed") > 0);
}

const SHIFT_POLICY: &str = r#"{"rules":[
  {"name":"ttl","match":"t:*","ttl":"1d"},
  {"name":"z","match":"z:*","type":"zset","trim":{"max_len":10}}
]}"#;

/// A paused master with a replica from its first moment.
fn master_and_replica(policy_json: &str) -> (Server, Server) {
    let dir = scratch_dir("fault-shift");
    let policy = write_policy(&dir, policy_json);
    let master =
        Server::start_in(dir, ServerOpts::default().paused().policy(&policy)).expect("master");
    let port = master.port.to_string();
    let replica = Server::start(ServerOpts::default().paused().policy(&policy).directive(&[
        "replicaof",
        "127.0.0.1",
        &port,
    ]))
    .expect("replica");
    attach_replica(&master, &replica);
    (master, replica)
}

fn mset_in(c: &mut Connection, db: i64, prefix: &str, n: usize) {
    select(c, db);
    for start in (0..n).step_by(1000) {
        let pairs: Vec<(String, &str)> = (start..(start + 1000).min(n))
            .map(|i| (format!("{prefix}{i}"), "v"))
            .collect();
        let _: () = redis::cmd("MSET").arg(&pairs).query(c).expect("MSET");
    }
    select(c, 0);
}

/// Every `t:*` key of `db` has no TTL or the rule's (set between `lo` and now).
fn assert_ttls_are_the_rules(server: &Server, db: i64, lo: i64) {
    let mut c = server.conn_db(db);
    let hi = now_ms() + DAY;
    let keys: Vec<String> = redis::cmd("KEYS").arg("t:*").query(&mut c).expect("KEYS");
    for chunk in keys.chunks(10_000) {
        for (k, at) in chunk.iter().zip(expire_times(&mut c, chunk)) {
            assert!(
                at == -1 || (at >= lo + DAY && at <= hi),
                "db {db}: {k} has expire time {at}, not the rule's"
            );
        }
    }
}

/// The data moves under a running pass or trim: SWAPDB, FLUSHALL, the trimmed key
/// deleted and recreated as another type. The server survives, every TTL is the rule's,
/// the recreated key is left alone, and the replica holds the master's data.
#[test]
fn swapdb_flushall_and_a_replaced_key_under_running_work_keep_the_replica_equal() {
    let (master, mut replica) = master_and_replica(SHIFT_POLICY);
    let mut c = master.conn();
    mset_in(&mut c, 0, "t:a:", 200_000);
    mset_in(&mut c, 3, "t:b:", 100_000);
    let t_start = now_ms();

    // SWAPDB in the middle of a SWEEP of db 0.
    let sweep = in_background(&master, &["RETENTION.SWEEP", "BUDGET", "50"]);
    let mid_way = wait_until(Duration::from_secs(60), || {
        running_pass(&mut c).is_some_and(|(_, visited)| visited >= 20_000)
    });
    assert!(mid_way, "the sweep did not get going");
    call(&mut c, &["SWAPDB", "0", "3"]);
    let reply = sweep.join().expect("sweep thread");
    println!("SWEEP across SWAPDB: {reply:?}");
    let mut master = master;
    assert!(master.alive(), "the server died");
    for db in [0, 3] {
        assert_ttls_are_the_rules(&master, db, t_start);
    }
    assert_same_data(&master, &replica, &[0, 3], "after SWAPDB under a sweep");

    // The trimmed key deleted and recreated as a string in the middle of its trim.
    let _: Value = redis::cmd("EVAL")
        .arg("for i = 1, tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], i, i) end return 1")
        .arg(1)
        .arg("z:big")
        .arg(1_000_000)
        .query(&mut c)
        .expect("populate");
    let trim = in_background(&master, &["RETENTION.TRIM", "z:big", "MAXLEN", "0"]);
    let mid_way = wait_until(Duration::from_secs(60), || {
        let n: i64 = redis::cmd("ZCARD").arg("z:big").query(&mut c).unwrap_or(0);
        n < 1_000_000
    });
    assert!(mid_way, "the trim did not get going");
    let _: Value = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg("z:big")
        .cmd("SET")
        .arg("z:big")
        .arg("now a string")
        .query(&mut c)
        .expect("replace");
    let reply = trim.join().expect("trim thread");
    println!("TRIM of a replaced key: {reply:?}");
    assert!(master.alive(), "the server died");
    let value: String = redis::cmd("GET").arg("z:big").query(&mut c).expect("GET");
    assert_eq!(value, "now a string", "the recreated key was touched");
    assert_same_data(
        &master,
        &replica,
        &[0, 3],
        "after a key replaced under a trim",
    );

    // FLUSHALL ASYNC in the middle of a SWEEP.
    mset_in(&mut c, 0, "t:c:", 200_000);
    let sweep = in_background(&master, &["RETENTION.SWEEP", "BUDGET", "50"]);
    let mid_way = wait_until(Duration::from_secs(60), || {
        running_pass(&mut c).is_some_and(|(_, visited)| visited >= 20_000)
    });
    assert!(mid_way, "the sweep did not get going");
    call(&mut c, &["FLUSHALL", "ASYNC"]);
    mset_in(&mut c, 0, "t:d:", 1_000);
    let reply = sweep.join().expect("sweep thread");
    println!("SWEEP across FLUSHALL: {reply:?}");
    assert!(master.alive() && replica.alive(), "a server died");
    assert_ttls_are_the_rules(&master, 0, t_start);
    assert_same_data(&master, &replica, &[0, 3], "after FLUSHALL under a sweep");
}
