//! `max_memory` limits against real servers: after a pass, the kept entries' memory as the
//! server counts it (`MEMORY USAGE <key> SAMPLES 0`, minus what the key costs with no entries)
//! is within 5% under the budget, the kept entries are the newest, the tightest of several
//! limits wins, and replicas and AOF reloads hold the same data.

mod common;

use common::{
    attach_replica, call, map_int, now_ms, sweep, try_call, wait_replica_caught_up, write_policy,
    zmembers, Rng, Server, ServerOpts,
};
use redis::{Connection, Value};

const BUDGET: u64 = 8 << 20;

/// An XRANGE entry: id and field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

fn memory_usage(c: &mut Connection, key: &str) -> u64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query::<Option<u64>>(c)
        .expect("MEMORY USAGE")
        .unwrap_or(0)
}

/// What a stream costs with no entries: one emptied by XTRIM (lists and sorted sets cannot be
/// empty; their fixed part is a few hundred bytes, well inside the tolerance).
fn empty_stream_overhead(c: &mut Connection) -> u64 {
    call(c, &["XADD", "probe:empty", "*", "f", "v"]);
    call(c, &["XTRIM", "probe:empty", "MAXLEN", "0"]);
    let bytes = memory_usage(c, "probe:empty");
    call(c, &["DEL", "probe:empty"]);
    bytes
}

/// Payload sizes of mixed magnitude: a few KB to a few hundred KB.
fn sizes(rng: &mut Rng, n: usize, small: usize, big: usize) -> Vec<usize> {
    (0..n)
        .map(|_| match rng.below(10) {
            0..=5 => small + rng.below(small * 4),
            6..=8 => big / 4 + rng.below(big / 4),
            _ => big / 2 + rng.below(big / 2),
        })
        .collect()
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{i}:").into_bytes();
    v.resize(len, b'a' + (i % 26) as u8);
    v
}

fn assert_within_budget(kept: u64, budget: u64, what: &str) {
    eprintln!("{what}: kept {kept} of {budget} bytes");
    assert!(
        kept <= budget,
        "{what}: kept {kept} bytes, over the budget {budget}"
    );
    assert!(
        kept as f64 >= budget as f64 * 0.95,
        "{what}: kept {kept} bytes, more than 5% under the budget {budget}"
    );
}

fn start(policy: &str) -> Server {
    let dir = common::scratch_dir("memory");
    let path = write_policy(&dir, policy);
    Server::start_in(dir, ServerOpts::default().paused().policy(&path)).expect("server")
}

const TRIM_POLICY: &str = r#"{"rules":[
    {"name":"streams","match":"s:*","type":"stream","trim":{"max_memory":"8mb"}},
    {"name":"lists","match":"l:*","type":"list","trim":{"max_memory":"8mb"}},
    {"name":"tails","match":"t:*","type":"list","trim":{"max_memory":"8mb","newest":"tail"}},
    {"name":"zsets","match":"z:*","type":"zset","trim":{"max_memory":"4mb"}}]}"#;

/// Fills the keys, each with about three budgets of entries; returns the payload sizes.
fn fill_collections(c: &mut Connection, seed: u64) -> Vec<usize> {
    let mut rng = Rng(seed);
    let lens = sizes(&mut rng, 220, 2_000, 400_000);
    for (i, len) in lens.iter().enumerate() {
        let value = payload(i, *len);
        let mut p = redis::pipe();
        p.cmd("XADD")
            .arg("s:big")
            .arg(format!("{}-1", 1000 + i))
            .arg("payload")
            .arg(&value)
            .arg("n")
            .arg(i)
            .ignore();
        p.cmd("LPUSH").arg("l:big").arg(&value).ignore();
        p.cmd("RPUSH").arg("t:big").arg(&value).ignore();
        p.cmd("ZADD")
            .arg("z:big")
            .arg(i)
            .arg(&value[..value.len().min(60_000)])
            .ignore();
        let _: () = p.query(c).expect("fill");
    }
    lens
}

#[test]
fn trims_keep_the_newest_entries_within_the_budget() {
    let server = start(TRIM_POLICY);
    let mut c = server.conn();
    let n = fill_collections(&mut c, 7).len();
    let stream_empty = empty_stream_overhead(&mut c);
    for key in ["s:big", "l:big", "t:big", "z:big"] {
        eprintln!("{key}: {} bytes before", memory_usage(&mut c, key));
    }
    let report = sweep(&mut c, &[]);
    assert_eq!(map_int(&report, "errors"), 0, "{report:?}");
    assert!(map_int(&report, "entries_trimmed") > 0, "{report:?}");

    let kept = memory_usage(&mut c, "s:big") - stream_empty;
    for key in ["l:big", "t:big", "z:big"] {
        eprintln!("{key}: {} bytes after", memory_usage(&mut c, key));
    }
    assert_within_budget(kept, BUDGET, "stream");
    let ids: Vec<StreamEntry> = redis::cmd("XRANGE")
        .arg("s:big")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .expect("XRANGE");
    let first = 1000 + n - ids.len();
    let want: Vec<String> = (first..1000 + n).map(|ms| format!("{ms}-1")).collect();
    let got: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, want, "the stream keeps its newest entries");

    for (key, newest_at_head) in [("l:big", true), ("t:big", false)] {
        assert_within_budget(memory_usage(&mut c, key), BUDGET, key);
        let list: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(&mut c)
            .expect("LRANGE");
        let mut kept_ids: Vec<usize> = list
            .iter()
            .map(|v| {
                let text = String::from_utf8_lossy(v);
                text.split(':').next().unwrap().parse().unwrap()
            })
            .collect();
        if newest_at_head {
            kept_ids.reverse();
        }
        let want: Vec<usize> = (n - kept_ids.len()..n).collect();
        assert_eq!(kept_ids, want, "{key} keeps its newest elements");
    }

    assert_within_budget(memory_usage(&mut c, "z:big"), 4 << 20, "zset");
    let scores: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg("z:big")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .expect("ZRANGE");
    let want: Vec<f64> = (n - scores.len()..n).map(|s| s as f64).collect();
    let got: Vec<f64> = scores.iter().map(|(_, s)| *s).collect();
    assert_eq!(got, want, "the zset keeps its highest scores");

    // A second pass finds everything within budget and removes nothing.
    let again = sweep(&mut c, &[]);
    assert_eq!(map_int(&again, "entries_trimmed"), 0, "{again:?}");
}

#[test]
fn the_tightest_limit_wins() {
    let now = now_ms();
    let server = start(
        r#"{"rules":[
        {"name":"len","match":"len:*","type":"stream","trim":{"max_memory":"4mb","max_len":5}},
        {"name":"mem","match":"mem:*","type":"stream","trim":{"max_memory":"1mb","max_len":500}},
        {"name":"age","match":"age:*","type":"stream","trim":{"max_memory":"4mb","max_age":"1h"}},
        {"name":"zage","match":"zage:*","type":"zset","trim":{"max_memory":"4mb","max_age":"1h"}}]}"#,
    );
    let mut c = server.conn();
    let value = vec![b'x'; 100_000];
    for i in 0..40i64 {
        // Ten of them within the last hour, thirty older.
        let at = now - (40 - i) * 600_000;
        for key in ["len:s", "mem:s", "age:s"] {
            call(
                &mut c,
                &[
                    "XADD",
                    key,
                    &format!("{at}-0"),
                    "payload",
                    std::str::from_utf8(&value).unwrap(),
                ],
            );
        }
        call(
            &mut c,
            &[
                "ZADD",
                "zage:z",
                &at.to_string(),
                &format!("{i}:{}", "y".repeat(50_000)),
            ],
        );
    }
    sweep(&mut c, &[]);
    let xlen = |c: &mut Connection, key: &str| -> i64 {
        redis::cmd("XLEN").arg(key).query(c).expect("XLEN")
    };
    assert_eq!(xlen(&mut c, "len:s"), 5, "max_len is tighter than 4mb");
    // 1 MB holds 10 entries of ~100 KB (each in a 100 KB allocation and a node).
    let by_memory = xlen(&mut c, "mem:s");
    assert!((8..=10).contains(&by_memory), "1mb keeps {by_memory}");
    let in_the_hour = xlen(&mut c, "age:s");
    assert!(
        (5..=6).contains(&in_the_hour),
        "max_age is tighter than 4mb: {in_the_hour}"
    );
    let zage = zmembers(&mut c, "zage:z").len();
    assert!((5..=6).contains(&zage), "zset max_age wins: {zage}");
}

/// A BullMQ-like queue written by hand: jobs with payloads of mixed size, some with logs.
fn finished_jobs(c: &mut Connection, base: &str, n: usize, seed: u64) {
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(format!("{base}meta"))
        .arg("version")
        .arg("bullmq:5.81.5")
        .ignore()
        .cmd("SET")
        .arg(format!("{base}id"))
        .arg(n)
        .ignore()
        .query(c)
        .expect("queue");
    let mut rng = Rng(seed);
    let lens = sizes(&mut rng, n, 2_000, 300_000);
    let now = now_ms();
    for (i, len) in lens.iter().enumerate() {
        let id = (i + 1).to_string();
        let finished = now - (n - i) as i64 * 1000;
        let mut p = redis::pipe();
        p.cmd("HSET")
            .arg(format!("{base}{id}"))
            .arg("name")
            .arg("n")
            .arg("data")
            .arg(payload(i, *len))
            .arg("finishedOn")
            .arg(finished)
            .ignore();
        if i % 3 == 0 {
            for line in 0..20 {
                p.cmd("RPUSH")
                    .arg(format!("{base}{id}:logs"))
                    .arg(format!("log line {line} {}", "l".repeat(200)))
                    .ignore();
            }
        }
        p.cmd("ZADD")
            .arg(format!("{base}completed"))
            .arg(finished)
            .arg(&id)
            .ignore();
        let _: () = p.query(c).expect("job");
    }
}

fn job_memory(c: &mut Connection, base: &str, id: &str) -> u64 {
    [
        "",
        ":logs",
        ":dependencies",
        ":processed",
        ":failed",
        ":unsuccessful",
    ]
    .iter()
    .map(|s| memory_usage(c, &format!("{base}{id}{s}")))
    .sum()
}

#[test]
fn finished_jobs_keep_the_newest_within_the_budget() {
    let server = start(
        r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq",
            "completed":{"max_memory":"8mb"}}}]}"#,
    );
    let mut c = server.conn();
    let n = 150;
    finished_jobs(&mut c, "bull:q:", n, 11);
    let report = sweep(&mut c, &[]);
    assert!(map_int(&report, "jobs_removed") > 0, "{report:?}");
    let kept = zmembers(&mut c, "bull:q:completed");
    let kept_bytes: u64 = kept
        .iter()
        .map(|id| job_memory(&mut c, "bull:q:", id))
        .sum();
    assert_within_budget(kept_bytes, BUDGET, "finished jobs");
    let want: Vec<String> = (n - kept.len() + 1..=n).map(|i| i.to_string()).collect();
    assert_eq!(kept, want, "the newest jobs are kept");
    // The removed jobs went with their sub-keys.
    let oldest_kept: usize = kept[0].parse().unwrap();
    for id in 1..oldest_kept {
        assert_eq!(
            job_memory(&mut c, "bull:q:", &id.to_string()),
            0,
            "job {id}"
        );
    }
    // EXPLAIN shows the measurement.
    let explain: Value = redis::cmd("RETENTION.EXPLAIN")
        .arg("bull:q:completed")
        .query(&mut c)
        .expect("EXPLAIN");
    let text = format!("{explain:?}");
    assert!(text.contains("max_memory_bytes"), "{text}");
    assert!(text.contains("kept_memory_bytes"), "{text}");
    // REPORT shows the last measurement for the queue and the rule.
    let report: Value = call(&mut c, &["RETENTION.REPORT"]);
    let text = format!("{report:?}");
    assert!(text.matches("kept_memory_bytes").count() >= 2, "{text}");
}

#[test]
fn replica_and_aof_reload_hold_the_same_data() {
    let dir = common::scratch_dir("memory-repl");
    let path = write_policy(&dir, TRIM_POLICY);
    let master = Server::start_in(
        dir.clone(),
        ServerOpts::default().paused().policy(&path).aof(),
    )
    .expect("master");
    let replica = Server::start(ServerOpts::default().paused().policy(&path)).expect("replica");
    attach_replica(&master, &replica);
    let mut c = master.conn();
    fill_collections(&mut c, 3);
    finished_jobs(&mut c, "bull:q:", 60, 5);
    call(&mut c, &["EXPIRE", "l:big", "100000"]);
    call(
        &mut c,
        &["PEXPIREAT", "z:big", &(now_ms() + 5_000_000).to_string()],
    );
    let before = master.digest();
    let report = sweep(&mut c, &[]);
    assert!(map_int(&report, "entries_trimmed") > 0, "{report:?}");
    let after = master.digest();
    assert_ne!(before, after, "the pass changed nothing");
    wait_replica_caught_up(&master, &replica);
    assert_eq!(replica.digest(), after, "the replica differs");
    let mut master = master;
    master.kill();
    let reloaded = Server::start_in(
        dir,
        ServerOpts::default()
            .paused()
            .policy(&path)
            .config("appendonly", "yes"),
    )
    .expect("restart");
    assert_eq!(reloaded.digest(), after, "the AOF reload differs");
}

#[test]
fn bad_sizes_are_refused_and_the_old_policy_stays() {
    let dir = common::scratch_dir("memory-bad");
    let path = write_policy(&dir, TRIM_POLICY);
    let server =
        Server::start_in(dir.clone(), ServerOpts::default().paused().policy(&path)).expect("up");
    let mut c = server.conn();
    let before: Value = call(&mut c, &["RETENTION.POLICY"]);
    let cases = [
        (r#""0mb""#, "bad size '0mb': must be greater than zero"),
        (
            "-5",
            "bad size -5: must be a positive whole number of bytes",
        ),
        ("1.5", "bad size 1.5"),
        (r#""1.5mb""#, "a size is a whole number"),
        (r#""5tb""#, "unknown unit 'tb' (use b|k|kb|m|mb|g|gb)"),
        (r#""99999999999gb""#, "number too large"),
        ("true", "must be a size such as \"200mb\""),
    ];
    for (value, want) in cases {
        let text = format!(
            r#"{{"rules":[{{"name":"s","match":"s:*","type":"stream","trim":{{"max_memory":{value}}}}}]}}"#
        );
        std::fs::write(&path, text).expect("write");
        let err = try_call(&mut c, &["RETENTION.RELOAD"]).expect_err(value);
        let msg = err.to_string();
        assert!(
            msg.contains("rules[0] (\"s\"): trim.max_memory: ") && msg.contains(want),
            "{value}: {msg}"
        );
    }
    let after: Value = call(&mut c, &["RETENTION.POLICY"]);
    assert_eq!(
        format!("{before:?}").split("loaded_at").next(),
        format!("{after:?}").split("loaded_at").next(),
        "the old policy stays"
    );
}

/// The value under `name` anywhere in a reply (maps, or RESP2 flat pairs), depth first.
fn find_field(v: &Value, name: &str) -> Option<Value> {
    let items: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs.clone(),
        Value::Array(items) => items
            .chunks(2)
            .filter(|p| p.len() == 2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        _ => return None,
    };
    let is_name = |k: &Value| matches!(k, Value::BulkString(b) if b == name.as_bytes());
    if let Some((_, found)) = items.iter().find(|(k, _)| is_name(k)) {
        return Some(found.clone());
    }
    let nested: Vec<&Value> = match v {
        Value::Array(all) => all.iter().collect(),
        _ => items.iter().map(|(_, value)| value).collect(),
    };
    nested.into_iter().find_map(|n| find_field(n, name))
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[test]
fn a_measurement_keeps_its_rule_name_when_a_reload_reorders_the_rules() {
    let rules = |first: &str, second: &str| format!(r#"{{"rules":[{first},{second}]}}"#);
    let a = r#"{"name":"streams-a","match":"a:*","type":"stream","trim":{"max_memory":"1mb"}}"#;
    let b = r#"{"name":"streams-b","match":"b:*","type":"stream","trim":{"max_memory":"2mb"}}"#;
    let dir = common::scratch_dir("memory-reorder");
    let path = write_policy(&dir, &rules(a, b));
    let server = Server::start_in(dir, ServerOpts::default().paused().policy(&path)).expect("up");
    let mut c = server.conn();
    for i in 0..60 {
        let value = payload(i, 40_000);
        let _: () = redis::cmd("XADD")
            .arg("a:s")
            .arg("*")
            .arg("payload")
            .arg(value)
            .query(&mut c)
            .expect("XADD");
    }
    let report = sweep(&mut c, &[]);
    assert!(map_int(&report, "entries_trimmed") > 0, "{report:?}");
    let measured_rule = |c: &mut Connection| {
        let explain = call(c, &["RETENTION.EXPLAIN", "a:s"]);
        let memory = find_field(&explain, "memory").expect("EXPLAIN memory");
        find_field(&memory, "rule").and_then(|r| as_text(&r))
    };
    let report_rule_memory = |c: &mut Connection, rule: &str| {
        let report = call(c, &["RETENTION.REPORT", "MATCH", "a:*"]);
        let entry = find_field(&report, rule)?;
        find_field(&entry, "kept_memory_bytes")
    };
    let last_rule = |c: &mut Connection| {
        let explain = call(c, &["RETENTION.EXPLAIN", "a:s"]);
        let last = find_field(&explain, "last").expect("EXPLAIN last");
        find_field(&last, "rule")
    };
    assert_eq!(measured_rule(&mut c).as_deref(), Some("streams-a"));
    assert_eq!(
        last_rule(&mut c).and_then(|r| as_text(&r)).as_deref(),
        Some("streams-a")
    );
    let kept_before = report_rule_memory(&mut c, "streams-a").expect("REPORT streams-a memory");

    // The same rules reloaded: the last action keeps its rule.
    call(&mut c, &["RETENTION.RELOAD"]);
    assert_eq!(
        last_rule(&mut c).and_then(|r| as_text(&r)).as_deref(),
        Some("streams-a")
    );

    // Rule b now comes first: the measurement must stay with rule a, not move to b.
    std::fs::write(&path, rules(b, a)).expect("write");
    call(&mut c, &["RETENTION.RELOAD"]);
    assert_eq!(measured_rule(&mut c).as_deref(), Some("streams-a"));
    assert_eq!(
        report_rule_memory(&mut c, "streams-a"),
        Some(kept_before),
        "REPORT shows rule a's measurement under rule a"
    );
    // The last action's rule is remembered by its place in the policy: after the reload it
    // is not named at all rather than named wrongly.
    assert_eq!(last_rule(&mut c), Some(Value::Nil));
}

fn stream_ids(c: &mut Connection, key: &str) -> Vec<String> {
    let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(c)
        .expect("XRANGE");
    entries.into_iter().map(|(id, _)| id).collect()
}

fn int_reply(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn trim_maxmemory_keeps_what_a_max_memory_rule_keeps() {
    // s:big is trimmed by the rule, s:twin (the same entries) by RETENTION.TRIM MAXMEMORY.
    let server = start(TRIM_POLICY);
    let mut c = server.conn();
    let n = fill_collections(&mut c, 13).len();
    call(&mut c, &["COPY", "s:big", "s:twin"]);
    call(&mut c, &["COPY", "t:big", "list:twin"]);
    let stream_empty = empty_stream_overhead(&mut c);
    let before = server.digest();

    let dry = call(
        &mut c,
        &["RETENTION.TRIM", "s:twin", "MAXMEMORY", "8mb", "DRYRUN"],
    );
    assert_eq!(server.digest(), before, "DRYRUN changed nothing");
    let explain = call(&mut c, &["RETENTION.EXPLAIN", "s:twin"]);
    assert_eq!(
        find_field(&explain, "memory"),
        Some(Value::Nil),
        "a dry run's measurement is not what the key holds: EXPLAIN has none"
    );
    let removed = call(&mut c, &["RETENTION.TRIM", "s:twin", "maxmemory", "8MB"]);
    assert_eq!(
        int_reply(&removed),
        int_reply(&dry),
        "DRYRUN counts the same"
    );
    assert!(int_reply(&removed) > 0);
    let kept = memory_usage(&mut c, "s:twin") - stream_empty;
    assert_within_budget(kept, BUDGET, "RETENTION.TRIM MAXMEMORY stream");
    assert_eq!(
        stream_ids(&mut c, "s:twin").len() as i64,
        n as i64 - int_reply(&removed)
    );
    let list_removed = call(
        &mut c,
        &[
            "RETENTION.TRIM",
            "list:twin",
            "MAXMEMORY",
            "8388608",
            "NEWEST",
            "TAIL",
        ],
    );
    assert!(int_reply(&list_removed) > 0);

    sweep(&mut c, &["MATCH", "[st]:big"]);
    assert_eq!(
        stream_ids(&mut c, "s:twin"),
        stream_ids(&mut c, "s:big"),
        "the command keeps what the rule keeps"
    );
    let list = |c: &mut Connection, key: &str| -> Vec<Vec<u8>> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(c)
            .expect("LRANGE")
    };
    assert_eq!(list(&mut c, "list:twin"), list(&mut c, "t:big"));
    // With MAXLEN tighter, MAXLEN decides.
    let again = call(
        &mut c,
        &[
            "RETENTION.TRIM",
            "s:twin",
            "MAXMEMORY",
            "8mb",
            "MAXLEN",
            "3",
        ],
    );
    assert!(int_reply(&again) > 0);
    assert_eq!(stream_ids(&mut c, "s:twin").len(), 3);
    // EXPLAIN shows what the command measured (no rule did).
    let explain = call(&mut c, &["RETENTION.EXPLAIN", "s:twin"]);
    let memory = find_field(&explain, "memory").expect("EXPLAIN memory");
    assert_eq!(
        find_field(&memory, "max_memory_bytes"),
        Some(Value::Int(8 << 20))
    );
    assert_eq!(find_field(&memory, "rule"), Some(Value::Nil));
}

#[test]
fn jobs_clean_maxmemory_keeps_what_a_max_memory_rule_keeps() {
    // bull:q: is cleaned by the rule (8mb), twin:q: (the same jobs) by RETENTION.JOBS CLEAN.
    let server = start(
        r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq",
            "completed":{"max_memory":"8mb"}}}]}"#,
    );
    let mut c = server.conn();
    finished_jobs(&mut c, "bull:q:", 150, 21);
    finished_jobs(&mut c, "twin:q:", 150, 21);
    let before = server.digest();
    let clean = |c: &mut Connection, extra: &[&str]| {
        let mut args = vec!["RETENTION.JOBS", "CLEAN", "twin", "q", "completed"];
        args.extend_from_slice(extra);
        map_int(&call(c, &args), "jobs_removed")
    };
    let would = clean(&mut c, &["MAXMEMORY", "8mb", "DRYRUN"]);
    assert_eq!(server.digest(), before, "DRYRUN changed nothing");
    let explain = call(&mut c, &["RETENTION.EXPLAIN", "twin:q:completed"]);
    assert_eq!(
        find_field(&explain, "memory"),
        Some(Value::Nil),
        "a dry run's measurement is not what the set holds: EXPLAIN has none"
    );
    let removed = clean(&mut c, &["MAXMEMORY", "8mb"]);
    assert_eq!(removed, would, "DRYRUN counts the same");
    assert!(removed > 0);
    let kept = zmembers(&mut c, "twin:q:completed");
    let kept_bytes: u64 = kept
        .iter()
        .map(|id| job_memory(&mut c, "twin:q:", id))
        .sum();
    assert_within_budget(kept_bytes, BUDGET, "RETENTION.JOBS CLEAN MAXMEMORY");
    let report = sweep(&mut c, &[]);
    assert_eq!(map_int(&report, "jobs_removed"), removed);
    assert_eq!(
        kept,
        zmembers(&mut c, "bull:q:completed"),
        "the command keeps what the rule keeps"
    );
    // Every removed job went with its sub-keys.
    let oldest_kept: usize = kept[0].parse().expect("id");
    for id in 1..oldest_kept {
        assert_eq!(
            job_memory(&mut c, "twin:q:", &id.to_string()),
            0,
            "job {id}"
        );
    }
    // With MAXLEN tighter, MAXLEN decides; LIMIT still bounds one call.
    assert_eq!(
        clean(&mut c, &["MAXMEMORY", "1gb", "MAXLEN", "10", "LIMIT", "5"]),
        5
    );
    assert_eq!(zmembers(&mut c, "twin:q:completed").len(), kept.len() - 5);
}
