//! Correctness of effects: every mutating path of the module, driven the three
//! ways it runs (background sweeper, new-key tracking, commands), on a master with a replica
//! and an AOF (`appendfsync always`), in two databases at once with the same key names.
//! Afterwards each database must hold exactly what the rules say (the effect happened, and
//! nothing else did), be equal on the replica (`dataset_digest`: DEBUG DIGEST plus every
//! key's expire time), and come back identical when the master restarts from its AOF and
//! from an RDB.
//!
//! The matrix is one policy with a rule per path and a dozen keys per rule in each
//! database, so each driving mode needs one master + replica pair.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use redis::{Connection, Value};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// Two databases, same key names in both.
const DBS: [i64; 2] = [0, 3];
/// Keys per key class per database.
const N: usize = 12;
/// BullMQ and Bull queues per database.
const QUEUES: usize = 3;

/// One rule per mutating path. `ar:*` (ACTIVERUNS commands), `xt:*` (RETENTION.TRIM) and
/// `jq:*` (RETENTION.JOBS) are governed by no rule: only their commands change them.
/// `s:mem:*` and `mqm:*` are trimmed and cleaned by memory (`max_memory`).
const POLICY: &str = r#"{"rules":[
  {"name":"keep","match":"keep:*","keep":true},
  {"name":"ttl","match":"ttl:*","ttl":"1d"},
  {"name":"cap","match":"cap:*","ttl":"1h","cap":true},
  {"name":"press","match":"press:*","ttl":"1d","pressure":{"ttl":"10m"}},
  {"name":"s-len","match":"s:len:*","type":"stream","trim":{"max_len":10}},
  {"name":"s-age","match":"s:age:*","type":"stream","trim":{"max_age":"1h"}},
  {"name":"l-head","match":"l:head:*","type":"list","trim":{"max_len":5}},
  {"name":"l-tail","match":"l:tail:*","type":"list","trim":{"max_len":5,"newest":"tail"}},
  {"name":"z-len","match":"z:len:*","type":"zset","trim":{"max_len":5}},
  {"name":"z-age","match":"z:age:*","type":"zset","trim":{"max_age":"1h"}},
  {"name":"mq","match":"bull:*","queue":{"flavor":"bullmq",
      "completed":{"max_age":"1h","max_len":3},"failed":{"max_age":"1d"},
      "events":{"max_len":100},"orphan_age":"1h"}},
  {"name":"b3","match":"b3:*","queue":{"flavor":"bull","completed":{"max_age":"1h","max_len":2}}},
  {"name":"runs","match":"runs:*","runs":{"max_age":"1h"}},
  {"name":"s-mem","match":"s:mem:*","type":"stream","trim":{"max_memory":"64kb"}},
  {"name":"mq-mem","match":"mqm:*","queue":{"flavor":"bullmq","completed":{"max_memory":"24kb"}}}
]}"#;

/// The clock the data was built against: entries "old" and "new" are hours away from
/// every cutoff, so the seconds a test takes never change which side they are on.
struct Matrix {
    t0: i64,
    /// The expire time of keys that already expire and must keep exactly that time.
    long_at: i64,
    /// An expire time sooner than every rule's TTL, the pressure TTL included.
    soon_at: i64,
}

impl Matrix {
    fn new() -> Matrix {
        let t0 = now_ms();
        Matrix {
            t0,
            long_at: t0 + 30 * DAY,
            soon_at: t0 + 5 * MIN,
        }
    }
}

fn q(c: &mut Connection, args: &[&str]) -> Value {
    call(c, args)
}

fn atomic(c: &mut Connection, pipe: &mut redis::Pipeline) {
    let _: Value = pipe.atomic().query(c).expect("MULTI/EXEC");
}

/// The keyspace every mode starts from (or, for tracking, creates while it runs): each
/// collection is written in one transaction, so the new-key path sees it whole.
fn populate(c: &mut Connection, db: i64, m: &Matrix) {
    select(c, db);
    let v = format!("db{db}");
    let mut p = redis::pipe();
    for i in 0..N {
        p.cmd("SET").arg(format!("ttl:{i}")).arg(&v).ignore();
        p.cmd("HSET")
            .arg(format!("ttl:h:{i}"))
            .arg("f")
            .arg(&v)
            .ignore();
        p.cmd("SET")
            .arg(format!("ttl:long:{i}"))
            .arg(&v)
            .arg("PXAT")
            .arg(m.long_at)
            .ignore();
        p.cmd("SET")
            .arg(format!("cap:{i}"))
            .arg(&v)
            .arg("PXAT")
            .arg(m.long_at)
            .ignore();
        p.cmd("SET").arg(format!("cap:none:{i}")).arg(&v).ignore();
        p.cmd("SET").arg(format!("press:{i}")).arg(&v).ignore();
        // Existing TTLs: sooner than every rule's (never lengthened), within the pressure
        // rule's own horizon (lowered to the pressure TTL), beyond it (the application's).
        for (name, at) in [
            (format!("ttl:soon:{i}"), m.soon_at),
            (format!("cap:soon:{i}"), m.soon_at),
            (format!("press:soon:{i}"), m.soon_at),
            (format!("press:low:{i}"), m.t0 + 20 * HOUR),
            (format!("press:far:{i}"), m.long_at),
        ] {
            p.cmd("SET").arg(name).arg(&v).arg("PXAT").arg(at).ignore();
        }
        p.cmd("SET").arg(format!("keep:{i}")).arg(&v).ignore();
        p.cmd("SET").arg(format!("other:{i}")).arg(&v).ignore();
    }
    let _: () = p.query(c).expect("strings");

    for i in 0..N {
        let mut p = redis::pipe();
        for k in 0..30 {
            p.cmd("XADD")
                .arg(format!("s:len:{i}"))
                .arg("*")
                .arg("n")
                .arg(format!("{db}-{k}"))
                .ignore();
        }
        for k in 0..20i64 {
            let t = match k < 10 {
                true => m.t0 - 3 * HOUR + k * 1000,
                false => m.t0 - 30 * MIN + k * 1000,
            };
            p.cmd("XADD")
                .arg(format!("s:age:{i}"))
                .arg(format!("{t}-1"))
                .arg("n")
                .arg(format!("{db}-{k}"))
                .ignore();
        }
        let items: Vec<String> = (0..20).map(|k| format!("{db}-{k}")).collect();
        p.cmd("RPUSH")
            .arg(format!("l:head:{i}"))
            .arg(&items)
            .ignore();
        p.cmd("RPUSH")
            .arg(format!("l:tail:{i}"))
            .arg(&items)
            .ignore();
        let by_rank: Vec<(i64, String)> = (1..=20).map(|k| (k, format!("{db}-{k}"))).collect();
        p.cmd("ZADD")
            .arg(format!("z:len:{i}"))
            .arg(&by_rank)
            .ignore();
        let by_age: Vec<(i64, String)> = (0..20i64)
            .map(|k| {
                let t = match k < 10 {
                    true => m.t0 - 3 * HOUR + k,
                    false => m.t0 - 30 * MIN + k,
                };
                (t, format!("{db}-{k}"))
            })
            .collect();
        p.cmd("ZADD")
            .arg(format!("z:age:{i}"))
            .arg(&by_age)
            .ignore();
        atomic(c, &mut p);
    }

    for i in 0..QUEUES {
        bullmq_queue(c, &format!("bull:q{i}:"), m);
        bull_queue(c, &format!("b3:q{i}:"), m);
        runs_set(c, &format!("runs:{{w{i}}}"), m);
    }
    for i in 0..N {
        memory_stream(
            c,
            &format!("s:mem:{i}"),
            db,
            (i % 2 == 0).then_some(m.long_at),
        );
    }
    for i in 0..QUEUES {
        memory_queue(c, &format!("mqm:q{i}:"), m);
    }
}

/// Entries in a `max_memory` stream: each of ~8 KB, in a node of its own.
const MEM_ENTRIES: i64 = 20;
const MEM_ENTRY_BYTES: usize = 8_000;
/// Completed jobs of a `max_memory` queue, each with ~6 KB of data.
const MEM_JOBS: i64 = 10;

/// 20 entries of ~8 KB (a 64 KB budget keeps 5 to 8 of them: glibc malloc's allocations are
/// closer to the size asked than jemalloc's, so Valkey keeps one more), with `expire_at` if given.
fn memory_stream(c: &mut Connection, key: &str, db: i64, expire_at: Option<i64>) {
    let mut p = redis::pipe();
    for k in 0..MEM_ENTRIES {
        p.cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("n")
            .arg(format!("{db}-{k}"))
            .arg("p")
            .arg("x".repeat(MEM_ENTRY_BYTES))
            .ignore();
    }
    if let Some(at) = expire_at {
        p.cmd("PEXPIREAT").arg(key).arg(at).ignore();
    }
    atomic(c, &mut p);
}

/// A BullMQ queue of 10 completed jobs `m0`..`m9` (newest last) of ~6 KB each, every one
/// written whole in one transaction (a 24 KB budget keeps 2 to 4), and a waiting job.
fn memory_queue(c: &mut Connection, base: &str, m: &Matrix) {
    q(
        c,
        &["HSET", &format!("{base}meta"), "version", "bullmq:5.81.5"],
    );
    q(c, &["SET", &format!("{base}id"), "100"]);
    q(c, &["RPUSH", &format!("{base}wait"), "w1"]);
    for k in 0..MEM_JOBS {
        let finished_on = m.t0 - (MEM_JOBS - k) * MIN;
        let id = format!("m{k}");
        let mut p = redis::pipe();
        p.cmd("HSET")
            .arg(format!("{base}{id}"))
            .arg(&[
                ("name", "n".to_string()),
                ("data", format!("{{\"p\":\"{}\"}}", "d".repeat(6_000))),
                ("finishedOn", finished_on.to_string()),
            ])
            .ignore();
        p.cmd("RPUSH")
            .arg(format!("{base}{id}:logs"))
            .arg("line")
            .ignore();
        p.cmd("ZADD")
            .arg(format!("{base}completed"))
            .arg(finished_on)
            .arg(&id)
            .ignore();
        atomic(c, &mut p);
    }
}

/// What the memory limits left of the `N` streams `<streams><i>` (those whose `i % 2` is
/// `with_ttl` keep the matrix's long expire time) and the `QUEUES` queues `<queues><i>:`.
fn memory_mismatches(
    c: &mut Connection,
    db: i64,
    m: &Matrix,
    (streams, with_ttl): (&str, usize),
    queues: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..N {
        let at = match i % 2 == with_ttl {
            true => m.long_at,
            false => -1,
        };
        out.extend(memory_stream_mismatch(c, &format!("{streams}{i}"), db, at));
    }
    for i in 0..QUEUES {
        out.extend(memory_queue_mismatches(c, &format!("{queues}{i}:")));
    }
    out
}

/// What a 64 KB budget leaves of a `memory_stream`: its newest 5 to 8 entries, and its
/// expire time as it was.
fn memory_stream_mismatch(
    c: &mut Connection,
    key: &str,
    db: i64,
    expire_at: i64,
) -> Option<String> {
    let got = stream_values(c, key);
    let kept = got.len() as i64;
    let newest = values(db, MEM_ENTRIES - kept..MEM_ENTRIES);
    let at = expire_time(c, key);
    match (5..=8).contains(&kept) && got == newest && at == expire_at {
        true => None,
        false => Some(format!(
            "{key}: {got:?} (expire time {at}, want {expire_at}): want the newest 5 to 8"
        )),
    }
}

/// What a 24 KB budget leaves of a `memory_queue`: its newest 2 to 4 jobs, the others gone
/// with their logs, the waiting job untouched.
fn memory_queue_mismatches(c: &mut Connection, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    let kept = zmembers(c, &format!("{base}completed"));
    let n = kept.len() as i64;
    let newest: Vec<String> = (MEM_JOBS - n..MEM_JOBS).map(|k| format!("m{k}")).collect();
    if !(2..=4).contains(&n) || set_of(&kept) != set_of(&newest) {
        out.push(format!("{base}completed: {kept:?}, want the newest 2 to 4"));
    }
    for k in 0..MEM_JOBS {
        let id = format!("m{k}");
        let want = newest.contains(&id);
        for key in [format!("{base}{id}"), format!("{base}{id}:logs")] {
            if exists(c, &key) != want {
                out.push(format!("{key}: exists {}, want {want}", !want));
            }
        }
    }
    if lrange(c, &format!("{base}wait")) != ["w1"] {
        out.push(format!("{base}wait changed"));
    }
    out
}

/// A job hash as the library leaves a finished job, its `:logs`, and its entry in `set`
/// (none for an orphan), in one transaction like the library's Lua script.
fn finished_job(c: &mut Connection, base: &str, set: Option<&str>, id: &str, finished_on: i64) {
    let mut p = redis::pipe();
    p.cmd("HSET")
        .arg(format!("{base}{id}"))
        .arg(&[
            ("name", "n".to_string()),
            ("data", "{}".to_string()),
            ("opts", "{}".to_string()),
            ("timestamp", (finished_on - 10).to_string()),
            ("processedOn", (finished_on - 5).to_string()),
            ("finishedOn", finished_on.to_string()),
        ])
        .ignore();
    p.cmd("RPUSH")
        .arg(format!("{base}{id}:logs"))
        .arg("line")
        .ignore();
    if let Some(set) = set {
        p.cmd("ZADD")
            .arg(format!("{base}{set}"))
            .arg(finished_on)
            .arg(id)
            .ignore();
    }
    atomic(c, &mut p);
}

/// A BullMQ 5 queue: meta, id, a 1000-entry events stream, a waiting job, 8 completed
/// jobs (2 older than 1h, 6 within minutes), 2 failed (older and younger than 1d), and an
/// orphan (finished 2 days ago, in no set).
fn bullmq_queue(c: &mut Connection, base: &str, m: &Matrix) {
    q(
        c,
        &[
            "HSET",
            &format!("{base}meta"),
            "opts.maxLenEvents",
            "10000",
            "version",
            "bullmq:5.81.5",
        ],
    );
    q(c, &["SET", &format!("{base}id"), "100"]);
    let mut p = redis::pipe();
    for k in 0..1000 {
        p.cmd("XADD")
            .arg(format!("{base}events"))
            .arg("*")
            .arg("event")
            .arg("added")
            .arg("jobId")
            .arg(k)
            .ignore();
    }
    atomic(c, &mut p);
    let mut p = redis::pipe();
    p.cmd("HSET")
        .arg(format!("{base}w1"))
        .arg(&[("name", "n"), ("data", "{}"), ("opts", "{}")])
        .arg("timestamp")
        .arg(m.t0 - DAY)
        .ignore();
    p.cmd("RPUSH").arg(format!("{base}wait")).arg("w1").ignore();
    atomic(c, &mut p);
    for id in ["c-old1", "c-old2"] {
        finished_job(c, base, Some("completed"), id, m.t0 - 2 * HOUR);
    }
    for k in 1..=6 {
        let id = format!("c{k}");
        finished_job(c, base, Some("completed"), &id, m.t0 - (7 - k) * MIN);
    }
    finished_job(c, base, Some("failed"), "f-old", m.t0 - 2 * DAY);
    finished_job(c, base, Some("failed"), "f-new", m.t0 - 2 * HOUR);
    finished_job(c, base, None, "o1", m.t0 - 2 * DAY);
}

/// A Bull 4 queue (no meta version, no events): 2 completed jobs older than 1h, 4 recent.
fn bull_queue(c: &mut Connection, base: &str, m: &Matrix) {
    q(c, &["SET", &format!("{base}id"), "100"]);
    for id in ["old1", "old2"] {
        finished_job(c, base, Some("completed"), id, m.t0 - 2 * HOUR);
    }
    for k in 1..=4 {
        let id = format!("r{k}");
        finished_job(c, base, Some("completed"), &id, m.t0 - (5 - k) * MIN);
    }
}

/// A run set written by another tool in one transaction: two runs older than 1h, two
/// fresh ones, an index entry without JSON and two JSON documents without an index entry.
fn runs_set(c: &mut Connection, base: &str, m: &Matrix) {
    let mut p = redis::pipe();
    p.cmd("ZADD")
        .arg(format!("{base}:index"))
        .arg(&[
            (m.t0 - 2 * HOUR, "old1"),
            (m.t0 - 3 * HOUR, "old2"),
            (m.t0 - 10 * MIN, "new1"),
            (m.t0 - 5 * MIN, "new2"),
            (m.t0 - MIN, "nojson"),
        ])
        .ignore();
    p.cmd("HSET")
        .arg(format!("{base}:data"))
        .arg(&[
            ("old1", r#"{"s":"old"}"#),
            ("old2", r#"{"s":"old"}"#),
            ("new1", r#"{"s":"new"}"#),
            ("new2", r#"{"s":"new"}"#),
            ("orphan", r#"{"s":"orphan"}"#),
            ("orphan2", r#"{"s":"orphan"}"#),
        ])
        .ignore();
    atomic(c, &mut p);
}

/// Keys only the commands of `run_commands` change.
fn populate_command_keys(c: &mut Connection, db: i64, m: &Matrix) {
    select(c, db);
    for i in 0..N {
        memory_stream(
            c,
            &format!("xt:mem:{i}"),
            db,
            (i % 2 == 1).then_some(m.long_at),
        );
    }
    for i in 0..QUEUES {
        memory_queue(c, &format!("jq:mm{i}:"), m);
    }
    for i in 0..N {
        let mut p = redis::pipe();
        for k in 0..30 {
            p.cmd("XADD")
                .arg(format!("xt:s:{i}"))
                .arg("*")
                .arg("n")
                .arg(format!("{db}-{k}"))
                .ignore();
        }
        let items: Vec<String> = (0..20).map(|k| format!("{db}-{k}")).collect();
        p.cmd("RPUSH").arg(format!("xt:l:{i}")).arg(&items).ignore();
        let by_age: Vec<(i64, String)> = (0..20i64)
            .map(|k| {
                let t = match k < 10 {
                    true => m.t0 - 3 * HOUR + k,
                    false => m.t0 - 30 * MIN + k,
                };
                (t, format!("{db}-{k}"))
            })
            .collect();
        p.cmd("ZADD").arg(format!("xt:z:{i}")).arg(&by_age).ignore();
        atomic(c, &mut p);
    }
    for i in 0..QUEUES {
        let mq = format!("jq:m{i}:");
        q(
            c,
            &[
                "HSET",
                &format!("{mq}meta"),
                "opts.maxLenEvents",
                "10000",
                "version",
                "bullmq:5.81.5",
            ],
        );
        q(c, &["SET", &format!("{mq}id"), "9"]);
        q(c, &["XADD", &format!("{mq}events"), "*", "event", "added"]);
        for k in 0..5 {
            finished_job(c, &mq, Some("completed"), &format!("old{k}"), m.t0 - DAY);
        }
        for k in 0..2 {
            finished_job(c, &mq, Some("completed"), &format!("new{k}"), m.t0 - MIN);
        }
        let b = format!("jq:b{i}:");
        q(c, &["SET", &format!("{b}id"), "9"]);
        for k in 0..3 {
            finished_job(c, &b, Some("failed"), &format!("f{k}"), m.t0 - MIN);
        }
    }
    // For the commands run inside MULTI and a script.
    let items: Vec<String> = (0..20).map(|k| format!("{db}-{k}")).collect();
    for k in 0..2 {
        q(c, &["DEL", &format!("xt:m:{k}")]);
        let _: i64 = redis::cmd("RPUSH")
            .arg(format!("xt:m:{k}"))
            .arg(&items)
            .query(c)
            .expect("RPUSH");
    }
    q(c, &["SET", "jq:mx:id", "9"]);
    for k in 0..4 {
        finished_job(c, "jq:mx:", Some("completed"), &format!("j{k}"), m.t0 - MIN);
    }
    // ACTIVERUNS: a legacy hash to migrate into itself; its TTL must carry over.
    let legacy = "ar:{m}";
    q(
        c,
        &[
            "HSET",
            legacy,
            "l1",
            &format!(r#"{{"startedAt":{}}}"#, m.t0 - 5 * MIN),
            "l2",
            r#"{"startedAt":"2024-05-01T12:30:00Z"}"#,
            "l3",
            r#"{"other":1}"#,
        ],
    );
    q(c, &["PEXPIREAT", legacy, &m.long_at.to_string()]);
}

/// Every on-demand write path: RETENTION.TRIM of each kind, RETENTION.JOBS CLEAN of each
/// flavor, and every ACTIVERUNS write (ADD with and without SCORE, DEL, EXPIRE, MIGRATE), and
/// PAGE and AFTER over holes, which must change nothing.
fn run_commands(c: &mut Connection, db: i64, m: &Matrix) {
    select(c, db);
    for i in 0..N {
        q(c, &["RETENTION.TRIM", &format!("xt:s:{i}"), "MAXLEN", "10"]);
        q(
            c,
            &[
                "RETENTION.TRIM",
                &format!("xt:l:{i}"),
                "MAXLEN",
                "5",
                "NEWEST",
                "TAIL",
            ],
        );
        q(c, &["RETENTION.TRIM", &format!("xt:z:{i}"), "MAXAGE", "1h"]);
        q(
            c,
            &[
                "RETENTION.TRIM",
                &format!("xt:mem:{i}"),
                "MAXMEMORY",
                "64kb",
            ],
        );
    }
    for i in 0..QUEUES {
        let args = [
            "CLEAN",
            "jq",
            &format!("mm{i}"),
            "completed",
            "MAXMEMORY",
            "24kb",
        ];
        let removed = q(c, &[&["RETENTION.JOBS"][..], &args[..]].concat());
        assert!(jobs_removed(&removed) >= 6, "db {db}: CLEAN of jq:mm{i}");
    }
    for i in 0..QUEUES {
        let removed = q(
            c,
            &[
                "RETENTION.JOBS",
                "CLEAN",
                "jq",
                &format!("m{i}"),
                "completed",
                "MAXAGE",
                "1h",
            ],
        );
        assert_eq!(jobs_removed(&removed), 5, "db {db}: CLEAN of jq:m{i}");
        let removed = q(
            c,
            &[
                "RETENTION.JOBS",
                "CLEAN",
                "jq",
                &format!("b{i}"),
                "failed",
                "MAXAGE",
                "0",
            ],
        );
        assert_eq!(jobs_removed(&removed), 3, "db {db}: CLEAN of jq:b{i}");
    }
    let score = |t: i64| t.to_string();
    for k in 0..5i64 {
        let json = format!(r#"{{"db":{db},"k":{k}}}"#);
        q(
            c,
            &[
                "ACTIVERUNS.ADD",
                "ar:{a}",
                &format!("r{k}"),
                &json,
                "SCORE",
                &score(m.t0 - k * MIN),
            ],
        );
    }
    // The server's clock picks this score: the replica must receive it, not re-read it.
    q(c, &["ACTIVERUNS.ADD", "ar:{a}", "now", r#"{"now":1}"#]);
    // Replacing a run keeps one entry with the new document and score.
    q(
        c,
        &[
            "ACTIVERUNS.ADD",
            "ar:{a}",
            "r0",
            r#"{"replaced":1}"#,
            "SCORE",
            &score(m.t0 + MIN),
        ],
    );
    assert_eq!(
        q(c, &["ACTIVERUNS.DEL", "ar:{a}", "r1", "r2", "missing"]),
        Value::Int(2)
    );
    for k in 0..6i64 {
        let t = match k < 4 {
            true => m.t0 - 2 * HOUR - k,
            false => m.t0 - MIN - k,
        };
        q(
            c,
            &[
                "ACTIVERUNS.ADD",
                "ar:{e}",
                &format!("e{k}"),
                "{}",
                "SCORE",
                &score(t),
            ],
        );
    }
    assert_eq!(q(c, &["ACTIVERUNS.EXPIRE", "ar:{e}", "1h"]), Value::Int(4));
    q(
        c,
        &[
            "ACTIVERUNS.MIGRATE",
            "ar:{m}",
            "ar:{m}",
            "SCOREFIELD",
            "startedAt",
        ],
    );
    for (base, hole) in [("ar:{p}", "r2"), ("ar:{af}", "r3")] {
        for k in 0..5i64 {
            q(
                c,
                &[
                    "ACTIVERUNS.ADD",
                    base,
                    &format!("r{k}"),
                    "{}",
                    "SCORE",
                    &score(m.t0 - k * MIN),
                ],
            );
        }
        q(c, &["HDEL", &format!("{base}:data"), hole]);
    }
    q(c, &["ACTIVERUNS.PAGE", "ar:{p}", "1", "10"]);
    q(c, &["ACTIVERUNS.AFTER", "ar:{af}", "+inf", "", "10"]);
    // Inside MULTI and a script the commands run in place; what they replicate must still
    // be their exact effects (the ADDs take the server's clock).
    let _: Value = redis::pipe()
        .atomic()
        .cmd("RETENTION.TRIM")
        .arg("xt:m:0")
        .arg("MAXLEN")
        .arg(5)
        .cmd("ACTIVERUNS.ADD")
        .arg("ar:{x}")
        .arg("multi")
        .arg("{}")
        .cmd("RETENTION.JOBS")
        .arg(&["CLEAN", "jq", "mx", "completed", "MAXAGE", "0"])
        .query(c)
        .expect("MULTI");
    let _: Value = redis::cmd("EVAL")
        .arg(
            "redis.call('ACTIVERUNS.ADD', KEYS[1], 'lua', '{}') \
             redis.call('RETENTION.TRIM', KEYS[2], 'MAXLEN', '3', 'NEWEST', 'TAIL') \
             return redis.call('ACTIVERUNS.EXPIRE', KEYS[1], '1h')",
        )
        .arg(2)
        .arg("ar:{x}")
        .arg("xt:m:1")
        .query(c)
        .expect("EVAL");
}

// ---------------------------------------------------------------------------------------
// What the data must be afterwards.

fn set_of<I: IntoIterator<Item = S>, S: ToString>(items: I) -> BTreeSet<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

fn zset(c: &mut Connection, key: &str) -> BTreeSet<String> {
    set_of(zmembers(c, key))
}

fn hkeys(c: &mut Connection, key: &str) -> BTreeSet<String> {
    let keys: Vec<String> = redis::cmd("HKEYS").arg(key).query(c).expect("HKEYS");
    set_of(keys)
}

fn lrange(c: &mut Connection, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(c)
        .expect("LRANGE")
}

/// The `n` field of every stream entry, oldest first.
fn stream_values(c: &mut Connection, key: &str) -> Vec<String> {
    let v: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(c)
        .expect("XRANGE");
    let Value::Array(entries) = v else {
        panic!("XRANGE {key}: {v:?}")
    };
    entries
        .iter()
        .map(|e| {
            let Value::Array(parts) = e else {
                panic!("{e:?}")
            };
            let fields: Vec<String> = redis::from_redis_value(&parts[1]).expect("fields");
            fields.get(1).cloned().unwrap_or_default()
        })
        .collect()
}

fn expire_time(c: &mut Connection, key: &str) -> i64 {
    expire_times(c, &[key])[0]
}

fn values(db: i64, ks: impl Iterator<Item = i64>) -> Vec<String> {
    ks.map(|k| format!("{db}-{k}")).collect()
}

/// Every way database `db` differs from what the rules (and, with `commands`, the
/// commands of `run_commands`) must have made of it; empty when it is right.
fn mismatches(c: &mut Connection, db: i64, m: &Matrix, commands: bool) -> Vec<String> {
    select(c, db);
    let t1 = now_ms();
    let mut out = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            out.push(what);
        }
    };
    // TTL paths: a new TTL lies between the rule's TTL from before the data was written and
    // from now.
    let within = |at: i64, ttl: i64| at >= m.t0 + ttl && at <= t1 + ttl;
    for i in 0..N {
        for (key, ttl) in [
            (format!("ttl:{i}"), DAY),
            (format!("ttl:h:{i}"), DAY),
            (format!("cap:{i}"), HOUR),
            (format!("cap:none:{i}"), HOUR),
            (format!("press:{i}"), 10 * MIN),
            (format!("press:low:{i}"), 10 * MIN),
        ] {
            let at = expire_time(c, &key);
            expect(
                within(at, ttl),
                format!("{key}: expire time {at}, want now + {ttl} ms"),
            );
        }
        for (key, kept) in [
            (format!("ttl:long:{i}"), m.long_at),
            (format!("press:far:{i}"), m.long_at),
            (format!("ttl:soon:{i}"), m.soon_at),
            (format!("cap:soon:{i}"), m.soon_at),
            (format!("press:soon:{i}"), m.soon_at),
        ] {
            let at = expire_time(c, &key);
            expect(
                at == kept,
                format!("{key}: expire time {at} changed from {kept}"),
            );
        }
        for key in [format!("keep:{i}"), format!("other:{i}")] {
            let at = expire_time(c, &key);
            expect(at == -1, format!("{key}: expire time {at}, want none"));
        }
        for (key, want) in [
            (format!("s:len:{i}"), values(db, 20..30)),
            (format!("s:age:{i}"), values(db, 10..20)),
        ] {
            let got = stream_values(c, &key);
            expect(got == want, format!("{key}: {got:?}, want {want:?}"));
        }
        for (key, want) in [
            (format!("l:head:{i}"), values(db, 0..5)),
            (format!("l:tail:{i}"), values(db, 15..20)),
        ] {
            let got = lrange(c, &key);
            expect(got == want, format!("{key}: {got:?}, want {want:?}"));
        }
        for (key, want) in [
            (format!("z:len:{i}"), set_of(values(db, 16..21))),
            (format!("z:age:{i}"), set_of(values(db, 10..20))),
        ] {
            let got = zset(c, &key);
            expect(got == want, format!("{key}: {got:?}, want {want:?}"));
        }
    }
    for i in 0..QUEUES {
        let b = format!("bull:q{i}:");
        let got = zset(c, &format!("{b}completed"));
        expect(
            got == set_of(["c4", "c5", "c6"]),
            format!("{b}completed: {got:?}"),
        );
        let got = zset(c, &format!("{b}failed"));
        expect(got == set_of(["f-new"]), format!("{b}failed: {got:?}"));
        for id in ["c-old1", "c-old2", "c1", "c2", "c3", "f-old"] {
            for key in [format!("{b}{id}"), format!("{b}{id}:logs")] {
                expect(!exists(c, &key), format!("{key} must be gone"));
            }
        }
        // An orphan goes only once the module has seen it unreferenced for orphan_age (1h):
        // in these passes it is only being watched.
        for id in ["c4", "c5", "c6", "f-new", "o1"] {
            for key in [format!("{b}{id}"), format!("{b}{id}:logs")] {
                expect(exists(c, &key), format!("{key} must stay"));
            }
        }
        for key in ["meta", "id", "w1"] {
            let key = format!("{b}{key}");
            expect(exists(c, &key), format!("{key} must stay"));
        }
        let wait = lrange(c, &format!("{b}wait"));
        expect(wait == ["w1"], format!("{b}wait: {wait:?}"));
        let len: i64 = redis::cmd("XLEN")
            .arg(format!("{b}events"))
            .query(c)
            .expect("XLEN");
        // XTRIM ~ 100 keeps whole nodes (up to 100 entries more), then `cleaned` events.
        expect(
            (100..=260).contains(&len),
            format!("{b}events: {len} entries"),
        );

        let b = format!("b3:q{i}:");
        let got = zset(c, &format!("{b}completed"));
        expect(
            got == set_of(["r3", "r4"]),
            format!("{b}completed: {got:?}"),
        );
        for id in ["old1", "old2", "r1", "r2"] {
            for key in [format!("{b}{id}"), format!("{b}{id}:logs")] {
                expect(!exists(c, &key), format!("{key} must be gone"));
            }
        }
        for id in ["r3", "r4"] {
            expect(exists(c, &format!("{b}{id}")), format!("{b}{id} must stay"));
        }
        expect(exists(c, &format!("{b}id")), format!("{b}id must stay"));

        // Expired runs go from both keys; the hole and the stray documents are only being
        // watched (they go once seen so for max_age, 1h).
        let base = format!("runs:{{w{i}}}");
        let index = zset(c, &format!("{base}:index"));
        let data = hkeys(c, &format!("{base}:data"));
        expect(
            index == set_of(["new1", "new2", "nojson"])
                && data == set_of(["new1", "new2", "orphan", "orphan2"]),
            format!("{base}: index {index:?}, data {data:?}"),
        );
    }
    for what in memory_mismatches(c, db, m, ("s:mem:", 0), "mqm:q") {
        expect(false, what);
    }
    if commands {
        for what in memory_mismatches(c, db, m, ("xt:mem:", 1), "jq:mm") {
            expect(false, what);
        }
        for i in 0..N {
            for (key, want) in [
                (format!("xt:s:{i}"), values(db, 20..30)),
                (format!("xt:l:{i}"), values(db, 15..20)),
            ] {
                let got = match key.starts_with("xt:s") {
                    true => stream_values(c, &key),
                    false => lrange(c, &key),
                };
                expect(got == want, format!("{key}: {got:?}, want {want:?}"));
            }
            let key = format!("xt:z:{i}");
            let got = zset(c, &key);
            let want = set_of(values(db, 10..20));
            expect(got == want, format!("{key}: {got:?}, want {want:?}"));
        }
        for i in 0..QUEUES {
            let b = format!("jq:m{i}:");
            let got = zset(c, &format!("{b}completed"));
            expect(
                got == set_of(["new0", "new1"]),
                format!("{b}completed: {got:?}"),
            );
            for k in 0..5 {
                let key = format!("{b}old{k}");
                expect(!exists(c, &key), format!("{key} must be gone"));
            }
            let b = format!("jq:b{i}:");
            expect(
                !exists(c, &format!("{b}failed")),
                format!("{b}failed must be empty"),
            );
            for k in 0..3 {
                let key = format!("{b}f{k}");
                expect(!exists(c, &key), format!("{key} must be gone"));
            }
        }
        for (key, want) in [("xt:m:0", values(db, 0..5)), ("xt:m:1", values(db, 17..20))] {
            let got = lrange(c, key);
            expect(got == want, format!("{key}: {got:?}, want {want:?}"));
        }
        expect(
            !exists(c, "jq:mx:completed") && !exists(c, "jq:mx:j0"),
            "jq:mx: CLEAN inside MULTI removed nothing".into(),
        );
        for (base, want) in [
            ("ar:{x}", set_of(["multi", "lua"])),
            ("ar:{a}", set_of(["r0", "r3", "r4", "now"])),
            ("ar:{e}", set_of(["e4", "e5"])),
            ("ar:{m}", set_of(["l1", "l2", "l3"])),
        ] {
            let index = zset(c, &format!("{base}:index"));
            let data = hkeys(c, &format!("{base}:data"));
            expect(
                index == want && data == want,
                format!("{base}: index {index:?}, data {data:?}, want {want:?}"),
            );
        }
        // Pages over holes are reads: the holes stay in the index.
        for (base, hole) in [("ar:{p}", "r2"), ("ar:{af}", "r3")] {
            let all = set_of(["r0", "r1", "r2", "r3", "r4"]);
            let mut documented = all.clone();
            documented.remove(hole);
            let index = zset(c, &format!("{base}:index"));
            let data = hkeys(c, &format!("{base}:data"));
            expect(
                index == all && data == documented,
                format!("{base}: index {index:?}, data {data:?} after a page over a hole"),
            );
        }
        let doc: Option<String> = redis::cmd("ACTIVERUNS.GET")
            .arg("ar:{a}")
            .arg("r0")
            .query(c)
            .expect("GET");
        expect(
            doc.as_deref() == Some(r#"{"replaced":1}"#),
            format!("ar:{{a}} r0: {doc:?}"),
        );
        let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg("ar:{m}:index")
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(c)
            .expect("ZRANGE");
        let score = |id: &str| scores.iter().find(|(m, _)| m == id).map(|(_, s)| *s as i64);
        expect(
            score("l1") == Some(m.t0 - 5 * MIN)
                && score("l2") == Some(1_714_566_600_000)
                && score("l3").is_some_and(|s| s >= m.t0 && s <= t1),
            format!("ar:{{m}} scores {scores:?}"),
        );
        expect(
            !exists(c, "ar:{m}"),
            "the legacy hash ar:{m} must be gone".into(),
        );
        for key in ["ar:{m}:index", "ar:{m}:data"] {
            let at = expire_time(c, key);
            expect(
                at == m.long_at,
                format!("{key}: expire time {at}, want the legacy key's"),
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Servers.

fn policy_dir() -> (PathBuf, PathBuf) {
    let dir = scratch_dir("consistency");
    let policy = write_policy(&dir, POLICY);
    (dir, policy)
}

/// A master with an AOF written on every command and a replica attached. The replica loads
/// the module with the same policy and the sweeper enabled: it must still never act.
fn pair(dir: PathBuf, policy: &std::path::Path, master_args: &[(&str, &str)]) -> (Server, Server) {
    let mut opts = ServerOpts::default()
        .policy(policy)
        .aof()
        .config("repl-diskless-sync-delay", "0")
        .config("hz", "50");
    for (k, v) in master_args {
        opts = opts.module_arg(k, v);
    }
    let master = Server::start_in(dir, opts).expect("master");
    // A replica from its first moment: not even a startup pass of its own.
    let port = master.port.to_string();
    let replica = Server::start(
        ServerOpts::default()
            .policy(policy)
            .module_arg("pass-interval-s", "1")
            .directive(&["replicaof", "127.0.0.1", &port]),
    )
    .expect("replica");
    attach_replica(&master, &replica);
    (master, replica)
}

/// Memory pressure from now on: maxmemory at 20× what is used (so the data still fits
/// under `noeviction`) and a pressure ratio below 1/20.
fn enter_pressure(c: &mut Connection) {
    let used = info_i64(c, "memory", "used_memory");
    config_set(c, "maxmemory-policy", "noeviction");
    config_set(c, "maxmemory", &(used * 20).to_string());
    config_set(c, "retention.pressure-ratio", "0.02");
}

fn wait_for_effects(c: &mut Connection, m: &Matrix, commands: bool, what: &str) {
    let mut last = Vec::new();
    let done = wait_until(Duration::from_secs(30), || {
        last = DBS
            .iter()
            .flat_map(|&db| {
                mismatches(c, db, m, commands)
                    .into_iter()
                    .map(move |s| format!("db {db}: {s}"))
            })
            .collect();
        last.is_empty()
    });
    assert!(
        done,
        "{what}: {} mismatches, first: {:#?}",
        last.len(),
        &last[..last.len().min(15)]
    );
}

/// The replica never acted on its own: every change it holds came from the master.
fn assert_replica_did_nothing(replica: &Server) {
    let mut r = replica.conn();
    let s = stats(&mut r);
    for field in [
        "ttl_set",
        "ttl_lowered",
        "keys_deleted",
        "entries_trimmed",
        "jobs_removed",
        "runs_expired",
        "passes",
        "tracked_keys",
    ] {
        assert_eq!(map_int(&s, field), 0, "the replica acted: {field} in {s:?}");
    }
}

/// Equal on the replica; then equal after the master restarts from its AOF, and from an
/// RDB `SAVE`d by that restarted server. Restarts are paused so nothing acts again.
fn assert_replicated_and_durable(master: Server, replica: &Server, policy: &std::path::Path) {
    assert_eq!(
        stat(&mut master.conn(), "errors"),
        0,
        "the module counted errors"
    );
    assert_same_data(&master, replica, &DBS, "replica after the work");
    assert_replica_did_nothing(replica);
    let digests: Vec<String> = DBS.iter().map(|&db| master.digest_db(db)).collect();
    let dir = master.dir.clone();
    let mut master = master;
    master.kill();
    let restart = |appendonly: &str| {
        let opts = ServerOpts::default()
            .paused()
            .policy(policy)
            .config("appendonly", appendonly);
        Server::start_in(dir.clone(), opts).expect("restart")
    };
    let from_aof = restart("yes");
    for (db, want) in DBS.iter().zip(&digests) {
        assert_eq!(
            &from_aof.digest_db(*db),
            want,
            "db {db} differs after restarting from the AOF"
        );
    }
    let _: () = redis::cmd("SAVE")
        .query(&mut from_aof.conn())
        .expect("SAVE");
    let mut from_aof = from_aof;
    from_aof.kill();
    let from_rdb = restart("no");
    for (db, want) in DBS.iter().zip(&digests) {
        assert_eq!(
            &from_rdb.digest_db(*db),
            want,
            "db {db} differs after restarting from the RDB"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The three ways the module runs.

/// Commands: RETENTION.SWEEP in each database (every rule), RETENTION.TRIM,
/// RETENTION.JOBS CLEAN and the ACTIVERUNS writes.
#[test]
fn on_demand_paths_replicate_and_reload_identically_in_two_databases() {
    let (dir, policy) = policy_dir();
    let (master, replica) = pair(dir, &policy, &[("enabled", "no")]);
    let mut c = master.conn();
    let m = Matrix::new();
    for db in DBS {
        populate(&mut c, db, &m);
        populate_command_keys(&mut c, db, &m);
    }
    enter_pressure(&mut c);
    for db in DBS {
        select(&mut c, db);
        let report = sweep(&mut c, &[]);
        assert_eq!(map_int(&report, "errors"), 0, "db {db}: {report:?}");
        run_commands(&mut c, db, &m);
    }
    wait_for_effects(&mut c, &m, true, "commands");
    assert_replicated_and_durable(master, &replica, &policy);
}

/// The background sweeper alone: the data exists before it is enabled, new-key tracking is
/// off, one pass must cover both databases. A later pass changes nothing.
#[test]
fn background_sweeper_paths_replicate_and_reload_identically_in_two_databases() {
    let (dir, policy) = policy_dir();
    let (master, replica) = pair(
        dir,
        &policy,
        &[
            ("enabled", "no"),
            ("track-new-keys", "no"),
            ("pass-interval-s", "1"),
        ],
    );
    let mut c = master.conn();
    let m = Matrix::new();
    for db in DBS {
        populate(&mut c, db, &m);
    }
    enter_pressure(&mut c);
    config_set(&mut c, "retention.enabled", "yes");
    let passed = wait_until(Duration::from_secs(60), || stat(&mut c, "passes") >= 1);
    assert!(passed, "no background pass finished within 60 s");
    // A finished pass has done all its work, in every database.
    let wrong: Vec<String> = DBS
        .iter()
        .flat_map(|&db| mismatches(&mut c, db, &m, false))
        .collect();
    assert!(
        wrong.is_empty(),
        "after the first background pass: {wrong:#?}"
    );
    let digests: Vec<String> = DBS.iter().map(|&db| master.digest_db(db)).collect();
    let passes = stat(&mut c, "passes");
    let again = wait_until(Duration::from_secs(30), || {
        stat(&mut c, "passes") >= passes + 2
    });
    assert!(again, "the background sweeper stopped passing");
    config_set(&mut c, "retention.enabled", "no");
    let later: Vec<String> = DBS.iter().map(|&db| master.digest_db(db)).collect();
    assert_eq!(
        digests, later,
        "a pass over a compliant keyspace changed it"
    );
    assert!(
        stat(&mut c, "pressure_ticks") > 0,
        "the background sweeper never saw the memory pressure"
    );
    assert_replicated_and_durable(master, &replica, &policy);
}

/// New-key tracking alone: the keys are created after startup, while no full pass runs
/// (the only one ran at startup over the empty keyspace).
#[test]
fn new_key_tracking_paths_replicate_and_reload_identically_in_two_databases() {
    let (dir, policy) = policy_dir();
    let (master, replica) = pair(dir, &policy, &[("pass-interval-s", "3600")]);
    let mut c = master.conn();
    let started = wait_until(Duration::from_secs(10), || stat(&mut c, "passes") == 1);
    assert!(started, "the startup pass did not run");
    enter_pressure(&mut c);
    let m = Matrix::new();
    for db in DBS {
        populate(&mut c, db, &m);
    }
    wait_for_effects(&mut c, &m, false, "new-key tracking");
    assert_eq!(
        stat(&mut c, "passes"),
        1,
        "a full pass ran: tracking was not what acted"
    );
    assert!(stat(&mut c, "tracked_keys") > 0);
    config_set(&mut c, "retention.enabled", "no");
    assert_replicated_and_durable(master, &replica, &policy);
}

/// The runs rule brings a run set's keys back into agreement (README "`runs`
/// policy rules"): an index entry without JSON and JSON without an index entry both go once
/// seen so for max_age, also when there are as many of one as of the other (equal sizes
/// prove nothing). A single look removes nothing.
#[test]
fn runs_rule_repairs_holes_and_orphans_of_equal_number() {
    const MAX_AGE_MS: u64 = 300;
    let policy = r#"{"rules":[{"name":"runs","match":"runs:*","runs":{"max_age":"300ms"}}]}"#;
    let server = Server::start_paused(Some(policy));
    let replica = Server::start_paused(Some(policy));
    attach_replica(&server, &replica);
    let mut c = server.conn();
    // Scored in the future: expiry by score never takes them.
    let future = now_ms() + 3_600_000;
    let sets = [
        ("runs:{one-each}", 1, 1),
        ("runs:{two-each}", 2, 2),
        ("runs:{more-orphans}", 1, 2),
    ];
    for (base, holes, orphans) in sets {
        let mut p = redis::pipe();
        p.cmd("ZADD")
            .arg(format!("{base}:index"))
            .arg(future)
            .arg("kept");
        p.cmd("HSET")
            .arg(format!("{base}:data"))
            .arg("kept")
            .arg("{}");
        for h in 0..holes {
            p.cmd("ZADD")
                .arg(format!("{base}:index"))
                .arg(future)
                .arg(format!("hole{h}"));
        }
        for o in 0..orphans {
            p.cmd("HSET")
                .arg(format!("{base}:data"))
                .arg(format!("orphan{o}"))
                .arg("{}");
        }
        atomic(&mut c, &mut p);
    }
    let first = sweep(&mut c, &[]);
    assert_eq!(
        map_int(&first, "entries_trimmed"),
        0,
        "one look removed leftovers"
    );
    std::thread::sleep(Duration::from_millis(MAX_AGE_MS + 100));
    let report = sweep(&mut c, &[]);
    let mut wrong = Vec::new();
    for (base, _, _) in sets {
        let index = zset(&mut c, &format!("{base}:index"));
        let data = hkeys(&mut c, &format!("{base}:data"));
        if index != set_of(["kept"]) || data != set_of(["kept"]) {
            wrong.push(format!("{base}: index {index:?}, data {data:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "leftovers the sweep kept: {wrong:#?}\nreport: entries_trimmed {}",
        map_int(&report, "entries_trimmed")
    );
    wait_replica_caught_up(&server, &replica);
    assert_eq!(server.digest(), replica.digest(), "the replica differs");
}

/// A replica only applies its master's changes: every mutating command sent to it directly
/// (by a client that connected to the wrong node) is refused or changes nothing there.
#[test]
fn mutating_commands_sent_to_a_replica_change_nothing_there() {
    let (dir, policy) = policy_dir();
    let (master, replica) = pair(dir, &policy, &[("enabled", "no")]);
    let mut c = master.conn();
    let m = Matrix::new();
    for db in DBS {
        populate(&mut c, db, &m);
        populate_command_keys(&mut c, db, &m);
        select(&mut c, db);
        for k in 0..3i64 {
            q(
                &mut c,
                &[
                    "ACTIVERUNS.ADD",
                    "ar:{r}",
                    &format!("r{k}"),
                    "{}",
                    "SCORE",
                    &(m.t0 - k * HOUR).to_string(),
                ],
            );
        }
        q(&mut c, &["HDEL", "ar:{r}:data", "r0"]);
    }
    assert_same_data(&master, &replica, &DBS, "before");
    for db in DBS {
        let mut r = replica.conn_db(db);
        let mut answers = Vec::new();
        for args in [
            vec!["RETENTION.SWEEP"],
            vec!["RETENTION.TRIM", "xt:s:0", "MAXLEN", "1"],
            vec![
                "RETENTION.JOBS",
                "CLEAN",
                "jq",
                "m0",
                "completed",
                "MAXAGE",
                "0",
            ],
            vec!["ACTIVERUNS.ADD", "ar:{r}", "new", "{}"],
            vec!["ACTIVERUNS.DEL", "ar:{r}", "r1"],
            vec!["ACTIVERUNS.EXPIRE", "ar:{r}", "1m"],
            vec!["ACTIVERUNS.MIGRATE", "ar:{m}", "ar:{m}"],
            vec!["ACTIVERUNS.PAGE", "ar:{r}", "1", "10"],
            vec!["ACTIVERUNS.AFTER", "ar:{r}", "+inf", "", "10"],
        ] {
            let reply = try_call(&mut r, &args);
            answers.push(format!("{args:?}: {reply:?}"));
        }
        println!("db {db}, the replica answered: {answers:#?}");
        let mismatch: Vec<String> = DBS
            .iter()
            .filter(|&&d| master.digest_db(d) != replica.digest_db(d))
            .map(|d| {
                let diff = differing_keys(&mut master.conn_db(*d), &mut replica.conn_db(*d), 10);
                format!("db {d}: {diff:?}")
            })
            .collect();
        assert!(
            mismatch.is_empty(),
            "commands sent to the replica (db {db}) changed its data: {mismatch:#?}\nreplies: {answers:#?}"
        );
    }
}

/// A background pass covers every database with keys: one whose keys all have a TTL (the
/// pass may end there at once) does not stop it before the next database's keys.
#[test]
fn a_background_pass_reaches_a_later_database_after_a_compliant_one() {
    let (dir, policy) = policy_dir();
    let server = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .module_arg("enabled", "no")
            .module_arg("track-new-keys", "no"),
    )
    .expect("server");
    let mut c = server.conn();
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("SET")
            .arg(format!("ttl:{i}"))
            .arg("v")
            .arg("EX")
            .arg(600)
            .ignore();
    }
    let _: () = p.query(&mut c).expect("db 0");
    for db in [3, 7] {
        select(&mut c, db);
        let mut p = redis::pipe();
        for i in 0..1000 {
            p.cmd("SET").arg(format!("ttl:{i}")).arg("v").ignore();
        }
        let _: () = p.query(&mut c).expect("later db");
    }
    select(&mut c, 0);
    config_set(&mut c, "retention.enabled", "yes");
    let passed = wait_until(Duration::from_secs(30), || stat(&mut c, "passes") >= 1);
    assert!(passed, "no background pass finished");
    assert_eq!(stat(&mut c, "ttl_set"), 2000, "{:?}", stats(&mut c));
    let keyspace = info(&mut c, "keyspace");
    for db in [3, 7] {
        let line = info_field(&keyspace, &format!("db{db}")).unwrap_or_default();
        assert!(
            line.starts_with("keys=1000,expires=1000,"),
            "db {db}: {line}"
        );
    }
}
