//! Queue-aware retention (`queue` rules, `RETENTION.JOBS`) against real servers, with
//! BullMQ 5 / Bull 4 key layouts written by hand exactly as the libraries write them.
//! The compatibility tests with the real libraries live in tests/compat (Node).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    attach_replica, call, exists, jobs_removed, map_field, map_int, now_ms, sweep, write_policy,
    zmembers, Server, ServerKind, ServerOpts,
};
use redis::{Connection, Value};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn keys(c: &mut Connection, pattern: &str) -> BTreeSet<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query::<Vec<String>>(c)
        .expect("KEYS")
        .into_iter()
        .collect()
}

fn jobs(c: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd("RETENTION.JOBS").arg(args).query(c)
}

/// The jobs a CLEAN removed.
fn jobs_int(c: &mut Connection, args: &[&str]) -> i64 {
    let reply: Value = redis::cmd("RETENTION.JOBS")
        .arg(args)
        .query(c)
        .unwrap_or_else(|e| panic!("RETENTION.JOBS {args:?}: {e}"));
    jobs_removed(&reply)
}

/// A BullMQ 5 queue: `meta` with a version, the id counter and an events stream.
fn bullmq_queue(c: &mut Connection, base: &str) {
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(format!("{base}meta"))
        .arg("opts.maxLenEvents")
        .arg(10000)
        .arg("version")
        .arg("bullmq:5.81.5")
        .ignore()
        .cmd("SET")
        .arg(format!("{base}id"))
        .arg(1000)
        .ignore()
        .cmd("XADD")
        .arg(format!("{base}events"))
        .arg("*")
        .arg("event")
        .arg("added")
        .ignore()
        .query(c)
        .expect("queue");
}

/// A Bull 4 queue: only the id counter (no meta version, no events stream).
fn bull_queue(c: &mut Connection, base: &str) {
    let _: () = redis::cmd("SET")
        .arg(format!("{base}id"))
        .arg(1000)
        .query(c)
        .expect("queue");
}

/// A finished job as moveToFinished leaves it: the hash and its score in the set.
fn finished_job(c: &mut Connection, base: &str, set: &str, id: &str, finished_on: i64) {
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(format!("{base}{id}"))
        .arg(&[
            ("name", "n".to_string()),
            ("data", "{}".to_string()),
            ("opts", "{}".to_string()),
            ("timestamp", (finished_on - 10).to_string()),
            ("processedOn", (finished_on - 5).to_string()),
            ("finishedOn", finished_on.to_string()),
        ])
        .ignore()
        .cmd("ZADD")
        .arg(format!("{base}{set}"))
        .arg(finished_on)
        .arg(id)
        .ignore()
        .query(c)
        .expect("job");
}

/// A job that is not finished, listed in a state key.
fn live_job(c: &mut Connection, base: &str, id: &str, timestamp: i64) {
    let _: () = redis::cmd("HSET")
        .arg(format!("{base}{id}"))
        .arg(&[
            ("name", "n".to_string()),
            ("data", "{}".to_string()),
            ("opts", "{}".to_string()),
            ("timestamp", timestamp.to_string()),
        ])
        .query(c)
        .expect("job");
}

fn cmd(c: &mut Connection, args: &[&str]) {
    call(c, args);
}

/// The fields of the newest `n` entries of a stream, newest first.
fn last_events(c: &mut Connection, stream: &str, n: usize) -> Vec<Vec<String>> {
    let v: Value = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(n)
        .query(c)
        .expect("XREVRANGE");
    let Value::Array(entries) = v else {
        panic!("{v:?}")
    };
    entries
        .iter()
        .map(|e| match e {
            Value::Array(entry) => redis::from_redis_value(&entry[1]).expect("fields"),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn last_event(c: &mut Connection, stream: &str) -> Vec<String> {
    last_events(c, stream, 1).remove(0)
}

fn cleaned(count: u64) -> Vec<String> {
    ["event", "cleaned", "count", &count.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn bullmq_clean_removes_a_job_with_everything_the_library_removes() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let base = "bull:q:";
    bullmq_queue(&mut c, base);
    let old = now_ms() - 2 * DAY_MS;
    for id in ["1", "2", "a:b:c", "repeat:sched:1700000000000", "parent"] {
        finished_job(&mut c, base, "completed", id, old);
    }
    // Sub-keys of finished jobs, and a de-duplication key owned by job 1.
    cmd(&mut c, &["RPUSH", "bull:q:1:logs", "line"]);
    cmd(
        &mut c,
        &["HSET", "bull:q:parent:processed", "bull:q:2", "\"ok\""],
    );
    cmd(
        &mut c,
        &["SADD", "bull:q:parent:dependencies", "bull:other:9"],
    );
    cmd(
        &mut c,
        &["HSET", "bull:q:parent:failed", "bull:x:1", "boom"],
    );
    cmd(
        &mut c,
        &["ZADD", "bull:q:parent:unsuccessful", "1", "bull:x:2"],
    );
    cmd(&mut c, &["HSET", "bull:q:1", "deid", "d1"]);
    cmd(&mut c, &["SET", "bull:q:de:d1", "1"]);
    cmd(&mut c, &["HSET", "bull:q:dn:d1", "name", "next"]);
    // Job 2's dedup key belongs to another job: it stays.
    cmd(&mut c, &["HSET", "bull:q:2", "deid", "d2"]);
    cmd(&mut c, &["SET", "bull:q:de:d2", "77"]);
    // A young job stays.
    finished_job(&mut c, base, "completed", "young", now_ms());

    let removed = jobs_int(&mut c, &["CLEAN", "bull", "q", "completed", "MAXAGE", "1d"]);
    assert_eq!(removed, 5);
    assert_eq!(zmembers(&mut c, "bull:q:completed"), vec!["young"]);
    let left = keys(&mut c, "bull:q:*");
    let expected: BTreeSet<String> = [
        "bull:q:meta",
        "bull:q:id",
        "bull:q:events",
        "bull:q:completed",
        "bull:q:young",
        "bull:q:de:d2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(left, expected);
    assert_eq!(last_event(&mut c, "bull:q:events"), cleaned(5));
}

/// `OBJECT ENCODING` and `OBJECT IDLETIME` of a key: both look the key up without touching it.
fn encoding_and_idle_s(c: &mut Connection, key: &str) -> (String, i64) {
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query(c)
        .expect("OBJECT ENCODING");
    let idle: i64 = redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg(key)
        .query(c)
        .expect("OBJECT IDLETIME");
    (encoding, idle)
}

/// A key idle for 2 s that the module read: its idle time put back where the server can
/// (Redis), and never made longer than it was (Valkey, which can only set whole 1,000 s: an
/// earlier build set it a million times too long there, the key's first in line for eviction).
fn assert_idle_put_back(kind: ServerKind, key: &str, idle_s: i64) {
    match kind.restores_short_idle_times() {
        true => assert!(
            idle_s >= 2,
            "{key}: the read reset its idle time ({idle_s} s)"
        ),
        false => assert!(idle_s < 60, "{key}: its idle time was made {idle_s} s"),
    }
}

#[test]
fn reading_a_deduplication_key_changes_neither_its_encoding_nor_its_idle_time() {
    // LRU eviction reads the idle time the cleaner must not reset. Ids from 10000 up are
    // not the server's shared integers, so each int-encoded key is its own object.
    let server = Server::start(
        ServerOpts::default()
            .paused()
            .config("maxmemory-policy", "allkeys-lru"),
    )
    .expect("server");
    let mut c = server.conn();
    let kind = ServerKind::of(&mut c);
    let base = "bull:q:";
    bullmq_queue(&mut c, base);
    let old = now_ms() - 2 * DAY_MS;
    // Finished jobs whose de-duplication keys now name newer jobs: read, then left alone.
    let others = [("1", "d1", "123456"), ("2", "d2", "job-b")];
    for (id, deid, owner) in others {
        finished_job(&mut c, base, "completed", id, old);
        cmd(&mut c, &["HSET", &format!("{base}{id}"), "deid", deid]);
        cmd(&mut c, &["SET", &format!("{base}de:{deid}"), owner]);
    }
    // One whose key still names it (an int-encoded id): read right, so removed with it.
    finished_job(&mut c, base, "completed", "123457", old);
    cmd(&mut c, &["HSET", "bull:q:123457", "deid", "d3"]);
    cmd(&mut c, &["SET", "bull:q:de:d3", "123457"]);
    let dedup = ["bull:q:de:d1", "bull:q:de:d2"];
    let before: Vec<(String, i64)> = dedup
        .iter()
        .map(|k| encoding_and_idle_s(&mut c, k))
        .collect();
    assert_eq!(before[0].0, "int");
    assert_eq!(before[1].0, "embstr");
    let idled = common::wait_until(Duration::from_secs(30), || {
        dedup.iter().all(|k| encoding_and_idle_s(&mut c, k).1 >= 2)
    });
    assert!(idled, "the keys never went idle");

    let removed = jobs_int(&mut c, &["CLEAN", "bull", "q", "completed", "MAXAGE", "1d"]);
    assert_eq!(removed, 3);
    assert!(!exists(&mut c, "bull:q:de:d3"), "its own job's key goes");
    for (key, (encoding, _)) in dedup.iter().zip(&before) {
        let (after, idle_s) = encoding_and_idle_s(&mut c, key);
        assert_idle_put_back(kind, key, idle_s);
        assert_eq!(&after, encoding, "{key}: the read re-encoded it");
    }
    let values: Vec<String> = dedup
        .iter()
        .map(|k| redis::cmd("GET").arg(k).query(&mut c).expect("GET"))
        .collect();
    assert_eq!(values, ["123456", "job-b"]);
}

#[test]
fn bullmq_clean_keeps_locked_jobs_and_children_a_parent_waits_for() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let base = "bull:q:";
    bullmq_queue(&mut c, base);
    let old = now_ms() - DAY_MS;
    finished_job(&mut c, base, "failed", "locked", old);
    cmd(
        &mut c,
        &["SET", "bull:q:locked:lock", "token", "PX", "60000"],
    );
    // A failed child its parent (in waiting-children) still waits for.
    finished_job(&mut c, base, "failed", "child", old);
    cmd(
        &mut c,
        &["HSET", "bull:q:child", "parentKey", "bull:q:parent"],
    );
    live_job(&mut c, base, "parent", old);
    cmd(
        &mut c,
        &[
            "ZADD",
            "bull:q:waiting-children",
            &old.to_string(),
            "parent",
        ],
    );
    cmd(
        &mut c,
        &["SADD", "bull:q:parent:dependencies", "bull:q:child"],
    );
    // A failed child whose parent no longer waits for it goes.
    finished_job(&mut c, base, "failed", "done-child", old);
    cmd(
        &mut c,
        &["HSET", "bull:q:done-child", "parentKey", "bull:q:parent"],
    );
    finished_job(&mut c, base, "failed", "plain", old);

    let removed = jobs_int(&mut c, &["CLEAN", "bull", "q", "failed", "MAXAGE", "1h"]);
    assert_eq!(removed, 2);
    assert_eq!(zmembers(&mut c, "bull:q:failed"), vec!["child", "locked"]);
    for k in [
        "bull:q:locked",
        "bull:q:locked:lock",
        "bull:q:child",
        "bull:q:parent",
        "bull:q:parent:dependencies",
    ] {
        assert!(exists(&mut c, k), "{k} must stay");
    }
    assert_eq!(zmembers(&mut c, "bull:q:waiting-children"), vec!["parent"]);
}

/// `LIMIT n` removes at most n jobs per call, the oldest first, as the library's
/// `clean(grace, limit)`; the next call goes on from there, and `LIMIT 0` means no limit, as
/// there (and in `XTRIM … LIMIT 0`).
#[test]
fn clean_with_limit_removes_at_most_that_many_oldest_first() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let base = "bull:q:";
    bullmq_queue(&mut c, base);
    let now = now_ms();
    for i in 0..10i64 {
        finished_job(
            &mut c,
            base,
            "completed",
            &(i + 1).to_string(),
            now - 1000 * (10 - i),
        );
    }
    let clean = |c: &mut Connection, limit: &str| {
        let reply: Value = jobs(
            c,
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "0",
                "LIMIT",
                limit,
            ],
        )
        .expect("CLEAN LIMIT");
        jobs_removed(&reply)
    };
    assert_eq!(clean(&mut c, "4"), 4);
    let left: Vec<String> = (5..=10).map(|i| i.to_string()).collect();
    assert_eq!(zmembers(&mut c, "bull:q:completed"), left);
    assert!(!exists(&mut c, "bull:q:4"));
    assert!(exists(&mut c, "bull:q:5"));
    assert_eq!(clean(&mut c, "2"), 2);
    assert!(!exists(&mut c, "bull:q:6"));
    assert_eq!(clean(&mut c, "0"), 4);
    assert!(zmembers(&mut c, "bull:q:completed").is_empty());
}

#[test]
fn clean_by_count_keeps_the_newest_and_dry_run_changes_nothing() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let base = "bull:q:";
    bullmq_queue(&mut c, base);
    let now = now_ms();
    for i in 0..10i64 {
        finished_job(
            &mut c,
            base,
            "completed",
            &format!("{}", i + 1),
            now - 1000 * (10 - i),
        );
    }
    let digest = server.digest();
    let dry: Value = jobs(
        &mut c,
        &[
            "CLEAN",
            "bull",
            "q",
            "completed",
            "MAXAGE",
            "30d",
            "MAXLEN",
            "3",
            "DRYRUN",
        ],
    )
    .expect("dry run");
    assert_eq!(jobs_removed(&dry), 7);
    assert_eq!(map_int(&dry, "dry_run"), 1);
    let ids: Vec<String> =
        redis::from_redis_value(&map_field(&dry, "job_ids").expect("job_ids")).expect("ids");
    assert_eq!(ids, (1..=7).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(server.digest(), digest, "DRYRUN changed something");

    assert_eq!(
        jobs_int(
            &mut c,
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "30d",
                "MAXLEN",
                "3"
            ]
        ),
        7
    );
    assert_eq!(zmembers(&mut c, "bull:q:completed"), vec!["8", "9", "10"]);
    assert!(!exists(&mut c, "bull:q:7"));
    assert!(exists(&mut c, "bull:q:8"));
    // Count 0 removes every finished job, like removeOnComplete: true.
    assert_eq!(
        jobs_int(
            &mut c,
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "30d",
                "MAXLEN",
                "0"
            ]
        ),
        3
    );
    assert!(!exists(&mut c, "bull:q:completed"));
}

#[test]
fn bull_clean_follows_bulls_own_clean() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let base = "bull:b:colon:";
    bull_queue(&mut c, base);
    let old = now_ms() - DAY_MS;
    finished_job(&mut c, base, "completed", "1", old);
    cmd(&mut c, &["RPUSH", "bull:b:colon:1:logs", "x"]);
    finished_job(&mut c, base, "completed", "x:y", old);
    // Locked: live, stays.
    finished_job(&mut c, base, "completed", "2", old);
    cmd(&mut c, &["SET", "bull:b:colon:2:lock", "t", "PX", "60000"]);
    // The hash says it finished just now (score disagrees): Bull's clean keeps it.
    finished_job(&mut c, base, "completed", "3", old);
    cmd(
        &mut c,
        &[
            "HSET",
            "bull:b:colon:3",
            "finishedOn",
            &now_ms().to_string(),
        ],
    );
    // Rate limiter index entry and priority entry of a removed job go with it.
    finished_job(&mut c, base, "completed", "4", old);
    cmd(
        &mut c,
        &[
            "HSET",
            "bull:b:colon:limiter:index",
            "4",
            "bull:b:colon:limiter:limited",
        ],
    );
    cmd(
        &mut c,
        &["SADD", "bull:b:colon:limiter:limited", "4", "other"],
    );
    cmd(
        &mut c,
        &["ZADD", "bull:b:colon:priority", "1", "4", "2", "other"],
    );

    assert_eq!(
        jobs_int(
            &mut c,
            &["CLEAN", "bull", "b:colon", "completed", "MAXAGE", "1h"]
        ),
        3
    );
    assert_eq!(zmembers(&mut c, "bull:b:colon:completed"), vec!["2", "3"]);
    for gone in [
        "bull:b:colon:1",
        "bull:b:colon:1:logs",
        "bull:b:colon:x:y",
        "bull:b:colon:4",
    ] {
        assert!(!exists(&mut c, gone), "{gone}");
    }
    assert_eq!(zmembers(&mut c, "bull:b:colon:priority"), vec!["other"]);
    let limited: Vec<String> = redis::cmd("SMEMBERS")
        .arg("bull:b:colon:limiter:limited")
        .query(&mut c)
        .expect("SMEMBERS");
    assert_eq!(limited, vec!["other"]);
    assert!(!exists(&mut c, "bull:b:colon:limiter:index"));
    // Bull has no events stream: none is created.
    assert!(!exists(&mut c, "bull:b:colon:events"));
}

#[test]
fn counts_match_the_libraries_get_job_counts() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:mq:");
    cmd(
        &mut c,
        &["RPUSH", "bull:mq:wait", "1", "2", "0:legacy-marker"],
    );
    cmd(&mut c, &["RPUSH", "bull:mq:active", "3"]);
    cmd(&mut c, &["ZADD", "bull:mq:delayed", "1", "4", "2", "5"]);
    cmd(&mut c, &["ZADD", "bull:mq:prioritized", "1", "6"]);
    cmd(&mut c, &["ZADD", "bull:mq:waiting-children", "1", "7"]);
    cmd(
        &mut c,
        &["ZADD", "bull:mq:completed", "1", "8", "2", "9", "3", "10"],
    );
    cmd(&mut c, &["ZADD", "bull:mq:failed", "1", "11"]);
    let v = jobs(&mut c, &["COUNTS", "bull", "mq"]).expect("COUNTS");
    for (state, n) in [
        ("waiting", 2),
        ("paused", 0),
        ("active", 1),
        ("delayed", 2),
        ("prioritized", 1),
        ("waiting-children", 1),
        ("completed", 3),
        ("failed", 1),
    ] {
        assert_eq!(map_int(&v, state), n, "{state}");
    }
    assert_eq!(common::flat_map(&v).len(), 8);

    bull_queue(&mut c, "bull:b:");
    cmd(&mut c, &["RPUSH", "bull:b:paused", "1", "2"]);
    cmd(&mut c, &["ZADD", "bull:b:priority", "1", "1"]);
    let v = jobs(&mut c, &["COUNTS", "bull", "b"]).expect("COUNTS");
    assert_eq!(map_int(&v, "paused"), 2);
    assert_eq!(map_int(&v, "waiting"), 0);
    assert_eq!(common::flat_map(&v).len(), 6, "Bull has 6 states");
    // An empty queue with an explicit flavor counts zeros.
    let v = jobs(&mut c, &["COUNTS", "bull", "nothing", "FLAVOR", "bullmq"]).expect("COUNTS");
    assert_eq!(map_int(&v, "completed"), 0);
}

#[test]
fn bad_arguments_are_rejected_and_change_nothing() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:q:");
    finished_job(&mut c, "bull:q:", "completed", "1", 1000);
    cmd(&mut c, &["SET", "bull:w:completed", "not a zset"]);
    cmd(&mut c, &["SET", "bull:w:id", "1"]);
    let digest = server.digest();
    let cases: &[(&[&str], &str)] = &[
        (&["bull", "q"], "unknown subcommand"),
        (&["NOPE", "bull", "q"], "unknown subcommand"),
        (&["CLEAN", "bull", "q"], "wrong number"),
        (&["CLEAN", "bull", "q", "completed"], "needs MAXAGE"),
        (
            &["CLEAN", "bull", "q", "completed", "MAXAGE"],
            "needs MAXAGE",
        ),
        (&["CLEAN", "bull", "q", "completed", "LIMIT", "-1"], "LIMIT"),
        (
            &["CLEAN", "bull", "q", "wait", "MAXAGE", "1h"],
            "completed' or 'failed",
        ),
        (
            &["CLEAN", "bull", "q", "completed", "MAXAGE", "soon"],
            "MAXAGE",
        ),
        (
            &["CLEAN", "bull", "q", "completed", "MAXAGE", "-1"],
            "MAXAGE",
        ),
        (
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "1h",
                "MAXLEN",
                "-3",
            ],
            "MAXLEN",
        ),
        (
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "1h",
                "MAXLEN",
                "99999999999999999999999",
            ],
            "MAXLEN",
        ),
        (
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "1h",
                "DRYRUN",
                "DRYRUN",
            ],
            "twice",
        ),
        (
            &["CLEAN", "bull", "q", "completed", "MAXAGE", "1h", "EXTRA"],
            "unknown option",
        ),
        (
            &["CLEAN", "bull", "q", "completed", "MAXAGE", "1h", "FLAVOR"],
            "FLAVOR",
        ),
        (
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "1h",
                "FLAVOR",
                "celery",
            ],
            "FLAVOR",
        ),
        (
            &[
                "CLEAN",
                "bull",
                "q",
                "completed",
                "MAXAGE",
                "1h",
                "FLAVOR",
                "bull",
            ],
            "BullMQ queue",
        ),
        (&["COUNTS", "bull", "q", "EXTRA"], "unknown option"),
        (&["COUNTS", "bull", "none"], "no queue"),
        (&["COUNTS", "", "q"], "must not be empty"),
        (
            &["CLEAN", "bull", "w", "completed", "MAXAGE", "1h"],
            "WRONGTYPE",
        ),
        (&["COUNTS", "bull", "w"], "not a sorted set"),
    ];
    for (args, expected) in cases {
        let err = jobs(&mut c, args).expect_err(&format!("{args:?} must fail"));
        let text = format!("{err}");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
    // A missing queue has nothing to clean.
    assert_eq!(
        jobs_int(&mut c, &["CLEAN", "bull", "none", "failed", "MAXAGE", "1h"]),
        0
    );
    // Binary names are fine.
    assert_eq!(
        jobs_int(
            &mut c,
            &["CLEAN", "bu\u{0}ll", "q\u{ff}", "failed", "MAXAGE", "1h"]
        ),
        0
    );
    assert_eq!(server.digest(), digest);
}

#[test]
fn clean_inside_multi_runs_at_once() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:q:");
    finished_job(&mut c, "bull:q:", "completed", "1", 1000);
    let (n,): (Value,) = redis::pipe()
        .atomic()
        .cmd("RETENTION.JOBS")
        .arg(&["CLEAN", "bull", "q", "completed", "MAXAGE", "0"])
        .query(&mut c)
        .expect("MULTI");
    assert_eq!(jobs_removed(&n), 1);
    assert_eq!(map_int(&n, "dry_run"), 0);
    let from_lua: Value = redis::cmd("EVAL")
        .arg(
            "return redis.call('RETENTION.JOBS', 'CLEAN', 'bull', 'q', 'completed', 'MAXAGE', '0')",
        )
        .arg(0)
        .query(&mut c)
        .expect("EVAL");
    assert_eq!(jobs_removed(&from_lua), 0);
}

const STRUCTURE: &[(&str, &str)] = &[
    ("bull:q:id", "string"),
    ("bull:q:meta", "hash"),
    ("bull:q:events", "stream"),
    ("bull:q:wait", "list"),
    ("bull:q:paused", "list"),
    ("bull:q:active", "list"),
    ("bull:q:prioritized", "zset"),
    ("bull:q:delayed", "zset"),
    ("bull:q:waiting-children", "zset"),
    ("bull:q:marker", "zset"),
    ("bull:q:pc", "string"),
    ("bull:q:stalled", "set"),
    ("bull:q:stalled-check", "string"),
    ("bull:q:limiter", "string"),
    ("bull:q:repeat", "zset"),
    ("bull:q:repeat:sched", "hash"),
    ("bull:q:de:dd", "string"),
    ("bull:q:dn:dd", "hash"),
    ("bull:q:metrics:completed", "hash"),
    ("bull:q:metrics:completed:data", "list"),
    ("bull:q:metrics:failed", "hash"),
    ("bull:q:metrics:failed:data", "list"),
    // Scheduler and dedup-next ids are the user's: these end like a job's `:failed` /
    // `:processed` hash, and no job `metrics`, `repeat:nightly` or `dn:klia` exists.
    ("bull:q:repeat:nightly:failed", "hash"),
    ("bull:q:repeat:x:processed", "hash"),
    ("bull:q:de:klia:failed", "string"),
    ("bull:q:dn:klia:failed", "hash"),
];

/// A BullMQ queue with every structure key, live jobs in every state, all decades old.
fn full_bullmq_queue(c: &mut Connection) {
    bullmq_queue(c, "bull:q:");
    let ancient = 1_000i64;
    for (id, list) in [("w1", "wait"), ("p1", "paused"), ("a1", "active")] {
        live_job(c, "bull:q:", id, ancient);
        cmd(c, &["HSET", &format!("bull:q:{id}"), "finishedOn", "1000"]);
        cmd(c, &["RPUSH", &format!("bull:q:{list}"), id]);
    }
    cmd(c, &["SET", "bull:q:a1:lock", "token"]);
    cmd(c, &["RPUSH", "bull:q:w1:logs", "queued"]);
    for (id, zset) in [
        ("d1", "delayed"),
        ("pr1", "prioritized"),
        ("wc1", "waiting-children"),
        ("repeat:sched:1800000000000", "delayed"),
    ] {
        live_job(c, "bull:q:", id, ancient);
        cmd(c, &["HSET", &format!("bull:q:{id}"), "finishedOn", "1000"]);
        cmd(c, &["ZADD", &format!("bull:q:{zset}"), "1", id]);
    }
    cmd(c, &["SADD", "bull:q:wc1:dependencies", "bull:q:child"]);
    cmd(c, &["ZADD", "bull:q:marker", "0", "0"]);
    cmd(c, &["SET", "bull:q:pc", "3"]);
    cmd(c, &["SADD", "bull:q:stalled", "a1"]);
    cmd(c, &["SET", "bull:q:stalled-check", "1", "PX", "600000"]);
    cmd(c, &["SET", "bull:q:limiter", "1", "PX", "600000"]);
    cmd(c, &["ZADD", "bull:q:repeat", "1800000000000", "sched"]);
    cmd(
        c,
        &[
            "HSET",
            "bull:q:repeat:sched",
            "name",
            "s",
            "every",
            "1000",
            "ic",
            "1",
        ],
    );
    cmd(c, &["SET", "bull:q:de:dd", "d1"]);
    cmd(
        c,
        &[
            "HSET",
            "bull:q:dn:dd",
            "name",
            "n",
            "data",
            "{}",
            "jid",
            "x",
        ],
    );
    cmd(
        c,
        &[
            "HSET",
            "bull:q:metrics:completed",
            "count",
            "5",
            "prevTS",
            "1",
        ],
    );
    cmd(c, &["RPUSH", "bull:q:metrics:completed:data", "1"]);
    cmd(
        c,
        &[
            "HSET",
            "bull:q:metrics:failed",
            "count",
            "2",
            "prevTS",
            "1",
            "prevCount",
            "0",
        ],
    );
    cmd(c, &["LPUSH", "bull:q:metrics:failed:data", "2", "0", "0"]);
    for sched in ["nightly:failed", "x:processed"] {
        cmd(c, &["ZADD", "bull:q:repeat", "1800000000000", sched]);
        cmd(
            c,
            &[
                "HSET",
                &format!("bull:q:repeat:{sched}"),
                "name",
                "s",
                "pattern",
                "0 3 * * *",
                "ic",
                "1",
            ],
        );
    }
    cmd(c, &["SET", "bull:q:de:klia:failed", "a1"]);
    cmd(
        c,
        &[
            "HSET",
            "bull:q:dn:klia:failed",
            "name",
            "n",
            "data",
            "{}",
            "jid",
            "y",
        ],
    );
}

fn structure_snapshot(c: &mut Connection) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (k, t) in STRUCTURE {
        let actual: String = redis::cmd("TYPE").arg(*k).query(c).expect("TYPE");
        assert_eq!(&actual, t, "{k}");
        let dump: Vec<u8> = redis::cmd("DUMP").arg(*k).query(c).expect("DUMP");
        out.push((k.to_string(), actual, dump));
    }
    out
}

#[test]
fn a_sweep_never_touches_queue_structure_or_live_jobs() {
    let dir = common::scratch_dir("queue-structure");
    let policy = write_policy(
        &dir,
        r#"{"rules":[
            {"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq",
              "completed":{"max_age":"1s","max_len":0},"failed":{"max_age":"1s","max_len":0},
              "orphan_age":"1ms"}},
            {"name":"everything-else","match":"*","ttl":"1h"}]}"#,
    );
    let server =
        Server::start_in(dir, ServerOpts::default().paused().policy(&policy)).expect("server");
    let mut c = server.conn();
    full_bullmq_queue(&mut c);
    let jobs_before = keys(&mut c, "bull:q:*");
    let snapshot = structure_snapshot(&mut c);
    // Orphaned sub-keys go once seen orphaned for orphan_age (1 ms) by the module's clock:
    // a key misread as one would be gone after the second pass.
    for _ in 0..4 {
        sweep(&mut c, &[]);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(structure_snapshot(&mut c), snapshot);
    assert_eq!(keys(&mut c, "bull:q:*"), jobs_before);
    // The catch-all rule after the queue rule gave no TTL to queue keys.
    for k in &jobs_before {
        let ttl: i64 = redis::cmd("PTTL").arg(k).query(&mut c).expect("PTTL");
        let expected_ttl = matches!(k.as_str(), "bull:q:stalled-check" | "bull:q:limiter");
        assert_eq!(ttl > 0, expected_ttl, "{k}");
    }
}

#[test]
fn orphans_are_removed_and_referenced_jobs_are_not() {
    let dir = common::scratch_dir("queue-orphans");
    let policy = write_policy(
        &dir,
        r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq","orphan_age":"1s"}}]}"#,
    );
    let server =
        Server::start_in(dir, ServerOpts::default().paused().policy(&policy)).expect("server");
    let mut c = server.conn();
    full_bullmq_queue(&mut c);
    let old = now_ms() - DAY_MS;
    // Orphans: finished hashes in no set, one with every sub-key and a dedup key it owns.
    finished_job(&mut c, "bull:q:", "completed", "o1", old);
    cmd(&mut c, &["ZREM", "bull:q:completed", "o1"]);
    cmd(&mut c, &["RPUSH", "bull:q:o1:logs", "x"]);
    cmd(&mut c, &["HSET", "bull:q:o1", "deid", "od"]);
    cmd(&mut c, &["SET", "bull:q:de:od", "o1"]);
    live_job(&mut c, "bull:q:", "o:2:x", 1);
    cmd(&mut c, &["HSET", "bull:q:o:2:x", "finishedOn", "5"]);
    // Sub-keys whose job is gone.
    cmd(&mut c, &["RPUSH", "bull:q:gone:logs", "x"]);
    cmd(&mut c, &["HSET", "bull:q:gone2:processed", "bull:q:c", "1"]);
    // Kept: a finished job still in completed (no completed rule here), a young orphan,
    // a finished child a waiting parent still lists, a locked one, a job of an ambiguous
    // queue, a sub-key whose id a state set still lists.
    finished_job(&mut c, "bull:q:", "completed", "k1", old);
    finished_job(&mut c, "bull:q:", "completed", "young", now_ms() + 60_000);
    cmd(&mut c, &["ZREM", "bull:q:completed", "young"]);
    finished_job(&mut c, "bull:q:", "failed", "child", old);
    cmd(&mut c, &["ZREM", "bull:q:failed", "child"]);
    cmd(&mut c, &["HSET", "bull:q:child", "parentKey", "bull:q:wc1"]);
    cmd(&mut c, &["SADD", "bull:q:wc1:dependencies", "bull:q:child"]);
    finished_job(&mut c, "bull:q:", "failed", "lk", old);
    cmd(&mut c, &["ZREM", "bull:q:failed", "lk"]);
    cmd(&mut c, &["SET", "bull:q:lk:lock", "t"]);
    bullmq_queue(&mut c, "bull:q:amb:");
    finished_job(&mut c, "bull:q:", "completed", "amb:1", old);
    cmd(&mut c, &["ZREM", "bull:q:completed", "amb:1"]);
    cmd(&mut c, &["RPUSH", "bull:q:dangling:logs", "x"]);
    cmd(&mut c, &["RPUSH", "bull:q:wait", "dangling"]);
    // A Bull queue under the prefix of a bullmq rule: its keys are not judged by it.
    bull_queue(&mut c, "bull:bq:");
    finished_job(&mut c, "bull:bq:", "completed", "x", old);
    cmd(&mut c, &["ZREM", "bull:bq:completed", "x"]);

    // Every orphan must be seen unreferenced for orphan_age first, however old its
    // finishedOn: the first look removes nothing.
    let first = sweep(&mut c, &[]);
    assert_eq!(map_int(&first, "jobs_removed"), 0, "{first:?}");
    assert_eq!(map_int(&first, "keys_deleted"), 0, "{first:?}");
    let orphans = [
        "bull:q:o1",
        "bull:q:o1:logs",
        "bull:q:de:od",
        "bull:q:o:2:x",
        "bull:q:gone:logs",
        "bull:q:gone2:processed",
        "bull:q:young",
    ];
    for orphan in orphans {
        assert!(exists(&mut c, orphan), "{orphan}");
    }
    std::thread::sleep(Duration::from_millis(1100));
    let second = sweep(&mut c, &[]);
    assert_eq!(map_int(&second, "keys_deleted"), 2, "{second:?}");
    assert_eq!(map_int(&second, "jobs_removed"), 3, "{second:?}");
    for gone in orphans {
        assert!(!exists(&mut c, gone), "{gone}");
    }
    for kept in [
        "bull:bq:x",
        "bull:q:k1",
        "bull:q:child",
        "bull:q:lk",
        "bull:q:amb:1",
        "bull:q:dangling:logs",
        "bull:q:w1",
        "bull:q:w1:logs",
        "bull:q:d1",
        "bull:q:a1",
        "bull:q:repeat:sched:1800000000000",
    ] {
        assert!(exists(&mut c, kept), "{kept} must stay");
    }
    let stats: Value = redis::cmd("RETENTION.STATS")
        .arg("GET")
        .query(&mut c)
        .expect("STATS");
    assert_eq!(map_int(&stats, "jobs_removed"), 3);
}

#[test]
fn queue_rule_cleans_by_age_and_count_and_trims_events() {
    let dir = common::scratch_dir("queue-rule");
    let policy = write_policy(
        &dir,
        r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq",
            "completed":{"max_age":"1h","max_len":3},"failed":{"max_age":"7d"},
            "events":{"max_len":100}}}]}"#,
    );
    let server =
        Server::start_in(dir, ServerOpts::default().paused().policy(&policy)).expect("server");
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:q:");
    let now = now_ms();
    for i in 0..6i64 {
        finished_job(
            &mut c,
            "bull:q:",
            "completed",
            &format!("c{i}"),
            now - 60_000 * (6 - i),
        );
    }
    finished_job(&mut c, "bull:q:", "completed", "c-old", now - 2 * HOUR_MS);
    finished_job(&mut c, "bull:q:", "failed", "f-old", now - 8 * DAY_MS);
    finished_job(&mut c, "bull:q:", "failed", "f-new", now - DAY_MS);
    let mut p = redis::pipe();
    for _ in 0..1000 {
        p.cmd("XADD")
            .arg("bull:q:events")
            .arg("*")
            .arg("event")
            .arg("x")
            .ignore();
    }
    let _: () = p.query(&mut c).expect("events");
    // A Bull queue under the same prefix is not touched by a bullmq rule.
    bull_queue(&mut c, "bull:b:");
    finished_job(&mut c, "bull:b:", "completed", "1", now - 2 * HOUR_MS);

    let report = sweep(&mut c, &[]);
    assert_eq!(map_int(&report, "jobs_removed"), 5, "{report:?}");
    assert_eq!(zmembers(&mut c, "bull:q:completed"), vec!["c3", "c4", "c5"]);
    assert_eq!(zmembers(&mut c, "bull:q:failed"), vec!["f-new"]);
    assert_eq!(zmembers(&mut c, "bull:b:completed"), vec!["1"]);
    let len: i64 = redis::cmd("XLEN")
        .arg("bull:q:events")
        .query(&mut c)
        .expect("XLEN");
    assert!((100..=202).contains(&len), "events length {len}");
    assert!(map_int(&report, "entries_trimmed") >= 800);
    // One library `cleaned` event per cleaned set (in the order the pass met them).
    let mut events = last_events(&mut c, "bull:q:events", 2);
    events.sort();
    assert_eq!(events, vec![cleaned(1), cleaned(4)]);
    // A second pass finds nothing and adds no event.
    let again = sweep(&mut c, &[]);
    assert_eq!(map_int(&again, "jobs_removed"), 0);
    let mut unchanged = last_events(&mut c, "bull:q:events", 2);
    unchanged.sort();
    assert_eq!(unchanged, events);
}

#[test]
fn replica_and_aof_match_the_master_after_cleaning() {
    let dir = common::scratch_dir("queue-repl");
    let policy = write_policy(
        &dir,
        r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq",
            "completed":{"max_age":"1h","max_len":10},"failed":{"max_age":"1h"},
            "events":{"max_len":100,"max_age":"1h"},"orphan_age":"200ms"}},
            {"name":"bull","match":"b:*","queue":{"flavor":"bull",
            "completed":{"max_age":"1h"}}}]}"#,
    );
    let opts = ServerOpts::default()
        .paused()
        .policy(&policy)
        .config("appendonly", "yes")
        .config("repl-diskless-sync-delay", "0");
    let master = Server::start_in(dir, opts.clone()).expect("master");
    let replica = Server::start(opts).expect("replica");
    attach_replica(&master, &replica);
    let mut c = master.conn();
    bullmq_queue(&mut c, "bull:q:");
    let now = now_ms();
    for i in 0..300i64 {
        let set = if i % 3 == 0 { "failed" } else { "completed" };
        finished_job(
            &mut c,
            "bull:q:",
            set,
            &i.to_string(),
            now - 1000 * (300 - i) - HOUR_MS / 2 * (i % 5),
        );
        if i % 7 == 0 {
            cmd(&mut c, &["RPUSH", &format!("bull:q:{i}:logs"), "l"]);
            cmd(
                &mut c,
                &["HSET", &format!("bull:q:{i}"), "deid", &format!("d{i}")],
            );
            cmd(&mut c, &["SET", &format!("bull:q:de:d{i}"), &i.to_string()]);
        }
    }
    finished_job(&mut c, "bull:q:", "completed", "orphan", now - DAY_MS);
    cmd(&mut c, &["ZREM", "bull:q:completed", "orphan"]);
    let mut p = redis::pipe();
    for _ in 0..2000 {
        p.cmd("XADD")
            .arg("bull:q:events")
            .arg("*")
            .arg("event")
            .arg("x")
            .ignore();
    }
    let _: () = p.query(&mut c).expect("events");
    bull_queue(&mut c, "b:q:");
    for i in 0..50i64 {
        finished_job(
            &mut c,
            "b:q:",
            "completed",
            &i.to_string(),
            now - 2 * HOUR_MS + i * 60_000,
        );
    }
    sweep(&mut c, &[]);
    // Orphans go at a second look, orphan_age after the first.
    std::thread::sleep(Duration::from_millis(300));
    sweep(&mut c, &[]);
    assert!(jobs_int(&mut c, &["CLEAN", "bull", "q", "failed", "MAXAGE", "0"]) > 0);
    // WAIT on the connection that wrote last: a fresh connection's WAIT returns at once
    // (its own write offset is 0), which is what common::wait_replica_caught_up does.
    cmd(&mut c, &["SET", "test:barrier", "1"]);
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut c)
        .expect("WAIT");
    assert_eq!(acked, 1);
    let digest = master.digest();
    assert_eq!(
        replica.digest(),
        digest,
        "replica differs: {:?}",
        differing_keys(&master, &replica)
    );
    assert!(!exists(&mut c, "bull:q:orphan"));
    // The AOF replays to the same data.
    let _: () = redis::cmd("DEBUG")
        .arg("LOADAOF")
        .query(&mut c)
        .expect("LOADAOF");
    assert_eq!(master.digest(), digest, "AOF reload differs");
}

/// Keys whose value digest differs between two servers (for failure messages).
fn differing_keys(a: &Server, b: &Server) -> Vec<String> {
    let (mut ca, mut cb) = (a.conn(), b.conn());
    let all: BTreeSet<String> = keys(&mut ca, "*")
        .union(&keys(&mut cb, "*"))
        .cloned()
        .collect();
    all.into_iter()
        .filter(|k| {
            let da: Vec<String> = redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(k)
                .query(&mut ca)
                .unwrap_or_default();
            let db: Vec<String> = redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(k)
                .query(&mut cb)
                .unwrap_or_default();
            da != db
        })
        .collect()
}

#[test]
fn a_large_queue_is_cleaned_in_slices_while_others_are_served() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:big:");
    let total = 100_000;
    let old = now_ms() - DAY_MS;
    for chunk in (0..total).collect::<Vec<_>>().chunks(5000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("HSET")
                .arg(format!("bull:big:{i}"))
                .arg("timestamp")
                .arg(old)
                .arg("finishedOn")
                .arg(old)
                .ignore();
            p.cmd("ZADD")
                .arg("bull:big:completed")
                .arg(old)
                .arg(i)
                .ignore();
        }
        let _: () = p.query(&mut c).expect("fill");
    }
    let port = server.port;
    let cleaner = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
        let mut conn = client.get_connection().expect("conn");
        redis::cmd("RETENTION.JOBS")
            .arg(&["CLEAN", "bull", "big", "completed", "MAXAGE", "1h"])
            .query::<Value>(&mut conn)
            .map(|reply| jobs_removed(&reply))
            .expect("CLEAN")
    });
    let mut pings_during_clean = 0;
    while !cleaner.is_finished() {
        let _: String = redis::cmd("PING").query(&mut c).expect("PING");
        pings_during_clean += 1;
    }
    assert_eq!(cleaner.join().expect("cleaner"), total);
    assert!(pings_during_clean > 1, "the server was not serving others");
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(dbsize, 3, "meta, id and events remain");
    assert_eq!(
        last_event(&mut c, "bull:big:events"),
        cleaned(0),
        "one cleaned event per 10000 jobs, then the remainder, like queue.clean()"
    );
    let counts: i64 = redis::cmd("XLEN")
        .arg("bull:big:events")
        .query(&mut c)
        .expect("XLEN");
    assert_eq!(counts, 1 + 11);
}
