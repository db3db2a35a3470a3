//! `RETENTION.REPORT` on real servers: its group counts against an exact SCAN of a 200k-key
//! fixture, its memory estimates against `MEMORY USAGE`, its warnings, its arguments, and
//! that it reads only, serves others meanwhile, runs on a replica and stops on a role change.

mod common;

use std::collections::BTreeMap;

use common::*;
use redis::Connection;
use serde_json::Value;

/// `RETENTION.REPORT <args>` read under RESP3 (RESP2 flattens maps into arrays that cannot be
/// told from the report's own arrays); the connection is back on RESP2 after.
fn report_map(c: &mut Connection, args: &[&str]) -> Value {
    let _: redis::Value = redis::cmd("HELLO").arg(3).query(c).expect("HELLO 3");
    let reply: redis::RedisResult<redis::Value> = redis::cmd("RETENTION.REPORT").arg(args).query(c);
    let _: redis::Value = redis::cmd("HELLO").arg(2).query(c).expect("HELLO 2");
    reply_json(&reply.expect("RETENTION.REPORT"))
}

fn groups(report: &Value) -> BTreeMap<String, Value> {
    report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["pattern"].as_str().expect("pattern").to_string(),
                g.clone(),
            )
        })
        .collect()
}

fn warning_kinds(report: &Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w["kind"].as_str().expect("kind").to_string())
        .collect()
}

fn uuid(rng: &mut Rng) -> String {
    let hex = |rng: &mut Rng, n: usize| {
        String::from_utf8(rng.string(b"0123456789abcdef", n, n)).expect("hex")
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 12)
    )
}

/// Runs `fill` on a pipeline in chunks of `chunk` items.
fn piped(
    c: &mut Connection,
    n: usize,
    chunk: usize,
    mut fill: impl FnMut(&mut redis::Pipeline, usize),
) {
    let mut start = 0;
    while start < n {
        let mut p = redis::pipe();
        for i in start..(start + chunk).min(n) {
            fill(&mut p, i);
        }
        let _: () = p.query(c).expect("pipeline");
        start += chunk;
    }
}

/// A BullMQ-shaped queue at `base`: structure keys, `jobs` job hashes named by `job_id`,
/// `logs` of them with a `:logs` list, `finished` ids in `completed`.
fn queue(
    c: &mut Connection,
    base: &str,
    jobs: usize,
    logs: usize,
    finished: usize,
    job_id: impl Fn(usize) -> String,
) {
    call(c, &["SET", &format!("{base}id"), &jobs.to_string()]);
    call(
        c,
        &[
            "HSET",
            &format!("{base}meta"),
            "version",
            "bullmq:5.1.0",
            "opts.maxLenEvents",
            "10000",
        ],
    );
    call(
        c,
        &[
            "XADD",
            &format!("{base}events"),
            "*",
            "event",
            "added",
            "jobId",
            "1",
        ],
    );
    call(c, &["RPUSH", &format!("{base}wait"), &job_id(0)]);
    piped(c, jobs, 2000, |p, i| {
        let id = job_id(i);
        p.cmd("HSET")
            .arg(format!("{base}{id}"))
            .arg(&[
                "name",
                "send",
                "data",
                &format!("{{\"to\":\"user{i}@example.com\"}}"),
                "opts",
                "{}",
            ])
            .arg("timestamp")
            .arg(1_700_000_000_000u64 + i as u64)
            .ignore();
        if i < logs {
            p.cmd("RPUSH")
                .arg(format!("{base}{id}:logs"))
                .arg("started")
                .arg("done")
                .ignore();
        }
        if i < finished {
            p.cmd("ZADD")
                .arg(format!("{base}completed"))
                .arg(i)
                .arg(&id)
                .ignore();
        }
    });
}

/// The fixture: about 200k keys of mixed groups in databases 0, 1 and 3.
fn build_fixture(c: &mut Connection) -> usize {
    let mut rng = Rng(19);
    select(c, 0);
    call(c, &["DEBUG", "POPULATE", "110000", "key", "10"]);
    piped(c, 15_000, 5000, |p, _| {
        p.cmd("SET")
            .arg(format!("session:{}", uuid(&mut rng)))
            .arg("s")
            .arg("EX")
            .arg(3600)
            .ignore();
    });
    piped(c, 15_000, 5000, |p, i| {
        let fields = 1 + i % 8;
        let mut cmd = redis::cmd("HSET");
        cmd.arg(format!("user:{i}:profile"));
        for f in 0..fields {
            cmd.arg(format!("f{f}")).arg("value".repeat(1 + f));
        }
        p.add_command(cmd).ignore();
    });
    piped(c, 4000, 2000, |p, i| {
        let items: Vec<String> = (0..1 + i % 30).map(|j| format!("item{j}")).collect();
        p.cmd("RPUSH").arg(format!("feed:{i}")).arg(items).ignore();
    });
    piped(c, 1000, 500, |p, i| {
        for j in 0..1 + i % 20 {
            p.cmd("XADD")
                .arg(format!("events:{i}"))
                .arg("*")
                .arg("n")
                .arg(j)
                .ignore();
        }
    });
    piped(c, 3000, 1000, |p, i| {
        let key = format!("leaderboard:{i}");
        for j in 0..1 + i % 10 {
            p.cmd("ZADD")
                .arg(&key)
                .arg(j)
                .arg(format!("player{j}"))
                .ignore();
        }
        if i % 2 == 0 {
            p.cmd("EXPIRE").arg(&key).arg(86_400).ignore();
        }
    });
    // 12000 completed jobs: more than the 10000 a queue should hold.
    queue(c, "bull:emails:", 13_000, 2_000, 12_000, |i| {
        (i + 1).to_string()
    });
    for i in 1..=10 {
        call(
            c,
            &[
                "SET",
                &format!("bull:emails:{i}:lock"),
                "token",
                "PX",
                "600000",
            ],
        );
    }
    select(c, 1);
    call(c, &["DEBUG", "POPULATE", "30000", "cache", "10"]);
    piped(c, 5000, 5000, |p, i| {
        p.cmd("SET")
            .arg(format!("tmp:{i}"))
            .arg("t")
            .arg("EX")
            .arg(600)
            .ignore();
    });
    // Job ids chosen by the application (no digits): found as a queue by its keys.
    let word = |mut i: usize| {
        let mut s = String::from("order-");
        loop {
            s.push(char::from(b'a' + (i % 26) as u8));
            i /= 26;
            if i == 0 {
                return s;
            }
        }
    };
    queue(c, "bull:reports:", 500, 0, 500, word);
    select(c, 3);
    piped(c, 2000, 2000, |p, _| {
        p.cmd("SET")
            .arg(format!("celery-task-meta-{}", uuid(&mut rng)))
            .arg("{}")
            .ignore();
    });
    select(c, 0);
    let mut total = 0;
    for db in [0, 1, 3] {
        select(c, db);
        total += redis::cmd("DBSIZE").query::<usize>(c).expect("DBSIZE");
    }
    select(c, 0);
    total
}

/// The group each fixture key belongs in, by what the fixture wrote (not by the module's rules).
fn expected_group(name: &str) -> String {
    for base in ["bull:emails:", "bull:reports:"] {
        if let Some(rest) = name.strip_prefix(base) {
            let structure = ["id", "meta", "events", "wait", "completed"].contains(&rest);
            return match structure {
                true => format!("{base}<structures>"),
                false => format!("{base}*"),
            };
        }
    }
    for (prefix, group) in [
        ("key:", "key:*"),
        ("session:", "session:*"),
        ("user:", "user:*:profile"),
        ("feed:", "feed:*"),
        ("events:", "events:*"),
        ("leaderboard:", "leaderboard:*"),
        ("cache:", "cache:*"),
        ("tmp:", "tmp:*"),
        ("celery-task-meta-", "celery-task-meta-*"),
    ] {
        if name.starts_with(prefix) {
            return group.to_string();
        }
    }
    panic!("a key the fixture did not write: {name}")
}

#[derive(Default, Debug)]
struct Exact {
    keys: u64,
    no_ttl: u64,
    memory: u64,
    types: BTreeMap<String, u64>,
}

/// Every key of databases 0, 1 and 3 by SCAN, with TYPE, PTTL and exact MEMORY USAGE
/// (`SAMPLES 0`), per group.
fn exact_count(c: &mut Connection) -> BTreeMap<String, Exact> {
    let mut out: BTreeMap<String, Exact> = BTreeMap::new();
    for db in [0, 1, 3] {
        select(c, db);
        let keys: Vec<String> = scan_match(c, b"*")
            .into_iter()
            .map(|k| String::from_utf8(k).expect("utf8"))
            .collect();
        for chunk in keys.chunks(2000) {
            let mut p = redis::pipe();
            for k in chunk {
                p.cmd("TYPE")
                    .arg(k)
                    .cmd("PTTL")
                    .arg(k)
                    .cmd("MEMORY")
                    .arg("USAGE")
                    .arg(k)
                    .arg("SAMPLES")
                    .arg(0);
            }
            let facts: Vec<redis::Value> = p.query(c).expect("facts");
            for (k, f) in chunk.iter().zip(facts.chunks(3)) {
                let e = out.entry(expected_group(k)).or_default();
                e.keys += 1;
                let t: String = redis::from_redis_value(&f[0]).expect("TYPE");
                *e.types.entry(t).or_default() += 1;
                let pttl: i64 = redis::from_redis_value(&f[1]).expect("PTTL");
                if pttl == -1 {
                    e.no_ttl += 1;
                }
                let bytes: u64 = redis::from_redis_value(&f[2]).expect("MEMORY USAGE");
                e.memory += bytes;
            }
        }
    }
    select(c, 0);
    out
}

/// Starts `RETENTION.REPORT <args>` on its own RESP3 connection; returns its client id and
/// the thread that waits for the reply.
fn start_report(
    server: &Server,
    args: &[&str],
) -> (
    i64,
    std::thread::JoinHandle<redis::RedisResult<redis::Value>>,
) {
    let mut conn = server.conn();
    let _: redis::Value = redis::cmd("HELLO")
        .arg(3)
        .query(&mut conn)
        .expect("HELLO 3");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut conn)
        .expect("CLIENT ID");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let handle = std::thread::spawn(move || {
        redis::cmd("RETENTION.REPORT")
            .arg(args)
            .query::<redis::Value>(&mut conn)
    });
    (id, handle)
}

#[test]
fn group_counts_equal_an_exact_scan_and_memory_is_within_ten_percent() {
    let server = Server::start_paused(Some(
        r#"{"rules":[
            {"name":"sessions","match":"session:*","ttl":"1h"},
            {"name":"queues","match":"bull:*","queue":{"flavor":"bullmq","completed":{"max_age":"7d"}}}
        ]}"#,
    ));
    let mut c = server.conn();
    let total = build_fixture(&mut c);
    assert!(total >= 200_000, "fixture of {total} keys");
    let exact = exact_count(&mut c);
    let digest = server.digest();

    // Other clients are served while the report runs: a PING answered while the reporter is
    // still blocked in it.
    let (id, reporter) = start_report(&server, &["GROUPS", "1000"]);
    let mut pinger = server.conn();
    let mut served_during = false;
    while !reporter.is_finished() {
        let pong: String = redis::cmd("PING").query(&mut pinger).expect("PING");
        assert_eq!(pong, "PONG");
        if blocked_in(&mut pinger, id, "RETENTION.REPORT") {
            served_during = true;
            break;
        }
    }
    let reply = reporter.join().expect("reporter").expect("REPORT");
    assert!(served_during, "no PING was answered while the report ran");
    let report = reply_json(&reply);
    assert_eq!(server.digest(), digest, "REPORT changed the dataset");

    assert_eq!(report["databases"], serde_json::json!([0, 1, 3]));
    assert_eq!(report["keys"], total as u64);
    assert_eq!(report["other"]["keys"], 0);
    assert_eq!(report["other"]["group_count"], 0);
    assert_eq!(report["total"]["group_count"], exact.len());
    assert!(
        report["duration_ms"].as_u64().is_some(),
        "{}",
        report["duration_ms"]
    );
    let got = groups(&report);
    let names: Vec<&String> = got.keys().collect();
    assert_eq!(names, exact.keys().collect::<Vec<_>>(), "the groups");
    for (pattern, want) in &exact {
        let g = &got[pattern];
        assert_eq!(g["keys"], want.keys, "{pattern}: keys");
        assert_eq!(
            g["keys_without_ttl"], want.no_ttl,
            "{pattern}: keys without TTL"
        );
        let types: BTreeMap<String, u64> = g["types"]
            .as_object()
            .expect("types")
            .iter()
            .map(|(t, n)| (t.clone(), n.as_u64().expect("count")))
            .collect();
        assert_eq!(types, want.types, "{pattern}: types");
        let estimate = g["memory_bytes"].as_u64().expect("memory") as f64;
        let off = (estimate - want.memory as f64).abs() / want.memory as f64;
        println!(
            "{pattern}: {} keys, memory estimate {estimate} vs MEMORY USAGE {} ({:.2}% off, {} keys measured)",
            want.keys,
            want.memory,
            off * 100.0,
            g["keys_measured"]
        );
        assert!(
            off < 0.10,
            "{pattern}: estimate {estimate} vs {}",
            want.memory
        );
    }
    // Rules: the sessions rule and the queue rule govern their groups; nothing else is covered.
    assert_eq!(got["session:*"]["rule"], "sessions");
    assert_eq!(got["bull:emails:*"]["rule"], "queues");
    assert_eq!(got["bull:emails:*"]["queue"], "jobs");
    assert_eq!(got["bull:emails:<structures>"]["queue"], "structure");
    assert_eq!(got["key:*"]["rule"], Value::Null);
    assert_eq!(got["key:*"]["rules"], serde_json::json!({}));
    assert_eq!(got["key:*"]["keys_without_rule"], exact["key:*"].keys);
    assert_eq!(
        got["session:*"]["rules"],
        serde_json::json!({"sessions": {"keys": exact["session:*"].keys}})
    );
    assert_eq!(got["session:*"]["keys_without_rule"], 0);
    // The queue's finished jobs, under its name.
    assert_eq!(report["queues"]["bull:emails"]["completed"], 12_000);
    assert_eq!(report["queues"]["bull:emails"]["rule"], "queues");
    // The biggest keys are the biggest: the longest feed list is among the feed group's top.
    let top = got["feed:*"]["top"].as_array().expect("top").clone();
    assert_eq!(top.len(), 3);
    let mut biggest: Vec<(u64, String)> = Vec::new();
    for k in top.iter() {
        biggest.push((
            k["memory_bytes"].as_u64().expect("memory_bytes"),
            k["key"].as_str().expect("key").into(),
        ));
    }
    assert!(biggest.windows(2).all(|w| w[0].0 >= w[1].0), "{biggest:?}");
    let used: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&biggest[0].1)
        .query(&mut c)
        .expect("MEMORY USAGE");
    assert_eq!(used as u64, biggest[0].0);
    let kinds = warning_kinds(&report);
    assert!(kinds.contains(&"no_ttl_uncovered".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"memory".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"eviction_policy".to_string()), "{kinds:?}");
    let finished: Vec<&Value> = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter(|w| w["kind"] == "finished_jobs")
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    let message = finished[0]["message"].as_str().expect("message");
    assert!(
        message.contains("queue bull:emails: 12000 finished jobs")
            && message.contains("rule 'queues' cleans them"),
        "{message}"
    );

    // The text form shows the same groups, aligned, and its warnings.
    let text: String = redis::cmd("RETENTION.REPORT")
        .arg(&["GROUPS", "8", "TOP", "2", "FORMAT", "text"])
        .query(&mut c)
        .expect("REPORT text");
    println!("{text}");
    let rows: Vec<&str> = text.lines().collect();
    let header = rows
        .iter()
        .position(|l| l.starts_with("GROUP"))
        .expect("header");
    assert!(rows[header + 1].starts_with("key:*"), "{text}");
    let other = format!("other ({} groups)", exact.len() - 8);
    assert!(rows.iter().any(|l| l.starts_with(&other)), "{text}");
    assert!(
        text.contains("! queue bull:emails: 12000 finished jobs"),
        "{text}"
    );
    assert_eq!(server.digest(), digest, "REPORT changed the dataset");
}

/// A small keyspace with a BullMQ queue.
fn small_fixture(c: &mut Connection) {
    call(c, &["DEBUG", "POPULATE", "2000", "key", "100"]);
    queue(c, "bull:q:", 100, 10, 50, |i| (i + 1).to_string());
}

#[test]
fn warnings_name_low_memory_and_an_eviction_policy_that_breaks_queues() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    small_fixture(&mut c);
    let kinds = warning_kinds(&report_map(&mut c, &[]));
    assert!(
        !kinds.contains(&"memory".into()) && !kinds.contains(&"eviction_policy".into()),
        "{kinds:?}"
    );

    // maxmemory just above used memory (noeviction: nothing is evicted).
    let used = info_i64(&mut c, "memory", "used_memory");
    config_set(&mut c, "maxmemory", &(used + used / 20).to_string());
    let report = report_map(&mut c, &[]);
    let kinds = warning_kinds(&report);
    assert!(kinds.contains(&"memory".into()), "{kinds:?}");
    assert!(!kinds.contains(&"eviction_policy".into()), "{kinds:?}");
    assert!(
        report["server"]["used_memory_ratio"]
            .as_f64()
            .expect("ratio")
            >= 0.8
    );
    config_set(&mut c, "maxmemory", "0");
    assert!(!warning_kinds(&report_map(&mut c, &[])).contains(&"memory".into()));

    // An eviction policy with a queue present: warned; the same without a queue: not.
    config_set(&mut c, "maxmemory-policy", "allkeys-lru");
    let report = report_map(&mut c, &[]);
    assert_eq!(report["server"]["maxmemory_policy"], "allkeys-lru");
    let warning = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .find(|w| w["kind"] == "eviction_policy")
        .unwrap_or_else(|| panic!("no eviction warning: {report}"))
        .clone();
    assert!(
        warning["message"]
            .as_str()
            .expect("message")
            .contains("bull:q:*"),
        "{warning}"
    );
    let queue_keys: Vec<Vec<u8>> = scan_match(&mut c, b"bull:*").into_iter().collect();
    for chunk in queue_keys.chunks(500) {
        let _: i64 = redis::cmd("DEL").arg(chunk).query(&mut c).expect("DEL");
    }
    let kinds = warning_kinds(&report_map(&mut c, &[]));
    assert!(!kinds.contains(&"eviction_policy".into()), "{kinds:?}");
}

#[test]
fn wrong_arguments_get_clear_errors_and_change_nothing() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    small_fixture(&mut c);
    let digest = server.digest();
    for (args, want) in [
        (&["GROUPS"][..], "needs GROUPS <n>"),
        (&["GROUPS", "0"], "GROUPS must be between 1 and 1000"),
        (&["GROUPS", "x"], "not an integer"),
        (&["TOP", "11"], "TOP must be between 0 and 10"),
        (&["TOP", "-1"], "TOP must be between 0 and 10"),
        (&["FORMAT", "xml"], "FORMAT must be map or text"),
        (&["FORMAT", "json"], "FORMAT must be map or text"),
        (&["MATCH", ""], "MATCH: bad glob"),
        (&["LIMIT", "5"], "unknown option 'LIMIT'"),
        (&["TOP", "1", "TOP", "2"], "given twice"),
    ] {
        let mut full = vec!["RETENTION.REPORT"];
        full.extend_from_slice(args);
        let err = try_call(&mut c, &full)
            .expect_err("should fail")
            .to_string();
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Inside MULTI the client cannot wait for the walk.
    call(&mut c, &["MULTI"]);
    call(&mut c, &["RETENTION.REPORT"]);
    let exec = try_call(&mut c, &["EXEC"]);
    let text = format!("{exec:?}");
    assert!(text.contains("cannot run inside MULTI"), "{text}");
    assert_eq!(server.digest(), digest);
    // MATCH narrows the walk.
    let report = report_map(&mut c, &["MATCH", "bull:*", "TOP", "0"]);
    // The queue: id, meta, events, wait, completed, 100 jobs, 10 lists of logs.
    assert_eq!(report["keys"], 115);
    assert!(groups(&report).keys().all(|p| p.starts_with("bull:q:")));
    // Under RESP2 the same map is flat field/value pairs; FORMAT map names the default.
    let flat = call(
        &mut c,
        &["RETENTION.REPORT", "MATCH", "bull:*", "FORMAT", "map"],
    );
    assert_eq!(map_int(&flat, "keys"), 115);
    assert!(
        map_str(&flat, "match").is_some_and(|m| m == "bull:*"),
        "{flat:?}"
    );
}

#[test]
fn a_read_only_replica_reports_and_a_role_change_stops_the_report() {
    let master = Server::start_paused(None);
    let replica = Server::start_paused(None);
    let mut m = master.conn();
    small_fixture(&mut m);
    attach_replica(&master, &replica);
    wait_replica_caught_up(&master, &replica);
    let mut r = replica.conn();
    let on_master = report_map(&mut m, &["GROUPS", "100"]);
    let on_replica = report_map(&mut r, &["GROUPS", "100"]);
    assert_eq!(on_replica["keys"], on_master["keys"]);
    let counts = |v: &Value| -> Vec<(String, Value)> {
        groups(v)
            .into_iter()
            .map(|(p, g)| (p, g["keys"].clone()))
            .collect()
    };
    assert_eq!(counts(&on_replica), counts(&on_master));

    // A bigger keyspace on each (DEBUG POPULATE is not replicated), walked in small slices
    // so that the report is still running.
    for c in [&mut m, &mut r] {
        call(c, &["DEBUG", "POPULATE", "200000", "big", "10"]);
        config_set(c, "retention.sweep-budget-us", "50");
    }
    // Promoted: the report begun on the replica stops.
    let (id, reporter) = start_report(&replica, &[]);
    if !wait_until(std::time::Duration::from_secs(30), || {
        blocked_in(&mut r, id, "RETENTION.REPORT")
    }) {
        panic!("not running: {:?}", reporter.join());
    }
    call(&mut r, &["REPLICAOF", "NO", "ONE"]);
    let err = reporter
        .join()
        .expect("reporter")
        .expect_err("stopped")
        .to_string();
    assert!(
        err.contains("RETENTION.REPORT stopped") && err.contains("became a master"),
        "{err}"
    );
    // Demoted: the report begun on the master stops with the master's other work (the server
    // itself may answer first: Redis unblocks blocked clients when a master becomes a replica).
    let other = Server::start_paused(None);
    let (id, reporter) = start_report(&master, &[]);
    if !wait_until(std::time::Duration::from_secs(30), || {
        blocked_in(&mut m, id, "RETENTION.REPORT")
    }) {
        panic!("not running: {:?}", reporter.join());
    }
    call(&mut m, &["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    let err = reporter
        .join()
        .expect("reporter")
        .expect_err("stopped")
        .to_string();
    assert!(
        (err.contains("RETENTION.REPORT stopped") && err.contains("became a replica"))
            || err.contains("UNBLOCKED"),
        "{err}"
    );
    assert!(!blocked_in(&mut m, id, "RETENTION.REPORT"));
    assert_eq!(
        call(&mut m, &["PING"]),
        redis::Value::SimpleString("PONG".into())
    );
}

#[test]
fn keys_vanishing_mid_walk_end_the_report_normally() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    config_set(&mut c, "retention.sweep-budget-us", "50");
    for (flush, args) in [
        ("FLUSHALL", &["FLUSHALL"][..]),
        ("SWAPDB", &["SWAPDB", "0", "1"]),
    ] {
        call(&mut c, &["DEBUG", "POPULATE", "200000", "k", "10"]);
        let (id, reporter) = start_report(&server, &[]);
        assert!(wait_until(std::time::Duration::from_secs(30), || {
            blocked_in(&mut c, id, "RETENTION.REPORT")
        }));
        call(&mut c, args);
        let reply = reporter
            .join()
            .expect("reporter")
            .unwrap_or_else(|e| panic!("{flush}: {e}"));
        let report = reply_json(&reply);
        let keys = report["keys"].as_u64().expect("keys");
        assert!(keys < 200_000, "{flush}: {keys} keys");
        call(&mut c, &["FLUSHALL"]);
    }
}

#[test]
fn the_caller_must_be_allowed_to_read_the_keys_it_would_see() {
    let server = Server::start_paused(None);
    let mut admin = server.conn();
    call(&mut admin, &["SET", "app:1", "a"]);
    call(&mut admin, &["SET", "secret:1", "s"]);
    call(
        &mut admin,
        &["ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all"],
    );
    let mut app = server.conn();
    call(&mut app, &["AUTH", "app", "pw"]);
    let err = try_call(&mut app, &["RETENTION.REPORT"])
        .expect_err("NOPERM")
        .to_string();
    assert!(err.contains("NOPERM"), "{err}");
    let report = report_map(&mut app, &["MATCH", "app:*"]);
    assert_eq!(report["keys"], 1);
    assert_eq!(groups(&report).keys().collect::<Vec<_>>(), vec!["app:*"]);
}
