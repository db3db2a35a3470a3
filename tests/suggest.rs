//! `RETENTION.SUGGEST` on real servers: a keyspace of BullMQ queues, Celery results, Sidekiq,
//! RQ, sessions, caches, a growing stream, a list, active-run sets and unknown keys in two
//! databases. The suggested policy reloads as is; applying it (RELOAD + SWEEP) leaves live
//! work, locks, counters, keys with a TTL and unknown keys exactly as they were, frees at
//! least the `freed_bytes` it announced and gives at least `keys` TTLs. A replica suggests the
//! same policy; MATCH restricts; bad input is refused; an empty keyspace gets an empty policy.

mod common;

use common::*;
use redis::Connection;
use serde_json::Value;

const DAY_MS: i64 = 86_400_000;

/// `RETENTION.SUGGEST <args>` read under RESP3.
fn suggest(c: &mut Connection, args: &[&str]) -> Value {
    let _: redis::Value = redis::cmd("HELLO").arg(3).query(c).expect("HELLO 3");
    let reply: redis::RedisResult<redis::Value> =
        redis::cmd("RETENTION.SUGGEST").arg(args).query(c);
    let _: redis::Value = redis::cmd("HELLO").arg(2).query(c).expect("HELLO 2");
    reply_json(&reply.expect("RETENTION.SUGGEST"))
}

fn suggest_policy(c: &mut Connection, args: &[&str]) -> String {
    redis::cmd("RETENTION.SUGGEST")
        .arg(args)
        .arg(&["FORMAT", "policy"])
        .query(c)
        .expect("RETENTION.SUGGEST FORMAT policy")
}

/// A BullMQ queue at `base`: `finished` completed jobs finished `age_ms` ago, one waiting, one
/// active job holding its lock.
fn bullmq_queue(c: &mut Connection, base: &str, finished: usize, age_ms: i64) {
    let now = now_ms();
    call(
        c,
        &["SET", &format!("{base}id"), &(finished + 2).to_string()],
    );
    call(
        c,
        &["HSET", &format!("{base}meta"), "version", "bullmq:5.1.0"],
    );
    call(
        c,
        &["XADD", &format!("{base}events"), "*", "event", "added"],
    );
    for i in 1..=finished {
        let job = format!("{base}{i}");
        call(c, &["HSET", &job, "name", "send", "data", &"x".repeat(200)]);
        call(
            c,
            &["HSET", &job, "finishedOn", &(now - age_ms).to_string()],
        );
        let score = (now - age_ms + i as i64).to_string();
        call(
            c,
            &["ZADD", &format!("{base}completed"), &score, &i.to_string()],
        );
    }
    let (waiting, active) = (finished + 1, finished + 2);
    call(
        c,
        &[
            "HSET",
            &format!("{base}{waiting}"),
            "name",
            "send",
            "data",
            "{}",
        ],
    );
    call(c, &["RPUSH", &format!("{base}wait"), &waiting.to_string()]);
    call(
        c,
        &[
            "HSET",
            &format!("{base}{active}"),
            "name",
            "send",
            "data",
            "{}",
        ],
    );
    call(c, &["RPUSH", &format!("{base}active"), &active.to_string()]);
    call(c, &["SET", &format!("{base}{active}:lock"), "token"]);
}

fn uuid(i: usize) -> String {
    format!("8f14e45f-ceea-467f-a0e6-{:012x}", 0xabc000 + i)
}

/// The mixed keyspace; returns the keys that applying any suggestion must leave as they are.
fn fixture(c: &mut Connection) -> Vec<(i64, String)> {
    let now = now_ms();
    let mut protected: Vec<(i64, String)> = Vec::new();
    let mut keep = |db: i64, k: &str| protected.push((db, k.to_string()));
    bullmq_queue(c, "bull:emails:", 40, 3 * DAY_MS);
    for k in ["id", "meta", "wait", "active", "41", "42", "42:lock"] {
        keep(0, &format!("bull:emails:{k}"));
    }
    for i in 0..30 {
        let v = format!(
            r#"{{"status": "SUCCESS", "result": {i}, "traceback": null, "children": [], "date_done": "2024-01-01T00:00:00", "task_id": "{}"}}"#,
            uuid(i)
        );
        call(c, &["SET", &format!("celery-task-meta-{}", uuid(i)), &v]);
    }
    // Sidekiq: live queues, retries and counters; a dead set with 3 jobs older than 6 months.
    let job = |jid: usize| {
        format!(
            r#"{{"class":"HardWorker","args":[{jid}],"jid":"b4a577edbccf1d8057{jid:06}","queue":"default"}}"#
        )
    };
    call(c, &["SADD", "queues", "default"]);
    call(c, &["LPUSH", "queue:default", &job(1)]);
    call(c, &["SET", "stat:processed", "1234"]);
    call(
        c,
        &["ZADD", "retry", &(now / 1000 + 60).to_string(), &job(2)],
    );
    for (i, age_days) in [(3, 400), (4, 300), (5, 200), (6, 10), (7, 1)] {
        let score = (now / 1000 - age_days * 86_400).to_string();
        call(c, &["ZADD", "dead", &score, &job(i)]);
    }
    for k in ["queues", "queue:default", "stat:processed", "retry"] {
        keep(0, k);
    }
    // RQ: a queued job.
    call(c, &["SADD", "rq:queues", "rq:queue:default"]);
    call(
        c,
        &[
            "HSET",
            "rq:job:abc",
            "status",
            "queued",
            "created_at",
            "2024-01-01T00:00:00Z",
            "origin",
            "default",
        ],
    );
    call(c, &["RPUSH", "rq:queue:default", "abc"]);
    for k in ["rq:queues", "rq:job:abc", "rq:queue:default"] {
        keep(0, k);
    }
    // Sessions: some with the application's TTL; caches without any.
    for i in 0..12 {
        let k = format!("session:{}", uuid(i));
        call(c, &["SET", &k, &"s".repeat(100)]);
        if i < 3 {
            call(c, &["PEXPIRE", &k, &(2 * 3_600_000).to_string()]);
            keep(0, &k);
        }
    }
    for i in 0..8 {
        call(c, &["SET", &format!("cache:page:{i}"), &"c".repeat(300)]);
    }
    call(c, &["SET", "session:lock", "owner"]);
    call(c, &["SET", "cache:hits", "77"]);
    keep(0, "session:lock");
    keep(0, "cache:hits");
    // A stream that only grows: 20 entries 10 days old, 5 recent; its group read them all.
    for i in 0..20 {
        let id = format!("{}-{i}", now - 10 * DAY_MS);
        call(c, &["XADD", "audit:log", &id, "n", &i.to_string()]);
    }
    for i in 0..5 {
        call(
            c,
            &[
                "XADD",
                "audit:log",
                &format!("{}-{i}", now - 1000),
                "n",
                "new",
            ],
        );
    }
    call(c, &["XGROUP", "CREATE", "audit:log", "readers", "0"]);
    call(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "readers",
            "r1",
            "COUNT",
            "100",
            "STREAMS",
            "audit:log",
            ">",
        ],
    );
    let ids: Vec<String> = redis::cmd("XRANGE")
        .arg("audit:log")
        .arg("-")
        .arg("+")
        .query::<Vec<(String, Vec<String>)>>(c)
        .expect("XRANGE")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut ack = vec!["XACK", "audit:log", "readers"];
    ack.extend(ids.iter().map(|s| s.as_str()));
    call(c, &ack);
    // A list, an active-run set, unknown keys, a key with a TTL.
    call(c, &["RPUSH", "feed:1", "a", "b"]);
    keep(0, "feed:1");
    call(
        c,
        &[
            "ZADD",
            "runs:active:web:index",
            &(now - 5 * 3_600_000).to_string(),
            "old",
            &now.to_string(),
            "new",
        ],
    );
    call(
        c,
        &["HSET", "runs:active:web:data", "old", "{}", "new", "{}"],
    );
    for i in 0..10 {
        call(c, &["SET", &format!("user:{i}"), "u"]);
        keep(0, &format!("user:{i}"));
    }
    call(c, &["SET", "ttl:only", "x", "EX", "5000"]);
    keep(0, "ttl:only");
    // Database 1: Celery results and unknown keys.
    select(c, 1);
    for i in 100..110 {
        let v = format!(
            r#"{{"status": "FAILURE", "result": null, "task_id": "{}"}}"#,
            uuid(i)
        );
        call(c, &["SET", &format!("celery-task-meta-{}", uuid(i)), &v]);
    }
    call(c, &["SET", "config:x", "1"]);
    keep(1, "config:x");
    select(c, 0);
    protected
}

/// DUMP and absolute expire time of each key.
fn snapshot(c: &mut Connection, keys: &[(i64, String)]) -> Vec<(String, Option<Vec<u8>>, i64)> {
    keys.iter()
        .map(|(db, k)| {
            select(c, *db);
            let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(k).query(c).expect("DUMP");
            let at: i64 = redis::cmd("PEXPIRETIME")
                .arg(k)
                .query(c)
                .expect("PEXPIRETIME");
            select(c, 0);
            (k.clone(), dump, at)
        })
        .collect()
}

/// Each key's MEMORY USAGE and PTTL over databases 0 and 1.
fn memory_and_ttls(c: &mut Connection) -> std::collections::BTreeMap<(i64, String), (u64, i64)> {
    let mut keys_seen = std::collections::BTreeMap::new();
    for db in [0, 1] {
        select(c, db);
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).expect("KEYS");
        for k in keys {
            let m: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&k)
                .arg("SAMPLES")
                .arg(0)
                .query(c)
                .expect("MEMORY");
            let ttl: i64 = redis::cmd("PTTL").arg(&k).query(c).expect("PTTL");
            keys_seen.insert((db, k), (m.unwrap_or(0), ttl));
        }
    }
    select(c, 0);
    keys_seen
}

type KeyFacts = std::collections::BTreeMap<(i64, String), (u64, i64)>;

/// Memory freed over the keys not given a TTL (a TTL given is not memory freed, and on some
/// servers it is stored in the key), and the number of keys given one.
fn freed_and_ttls_given(before: &KeyFacts, after: &KeyFacts) -> (i64, u64) {
    let given = |k: &(i64, String)| {
        before.get(k).is_some_and(|b| b.1 == -1) && after.get(k).is_some_and(|a| a.1 > 0)
    };
    let sum = |facts: &KeyFacts| -> i64 {
        facts
            .iter()
            .filter(|(k, _)| !given(k))
            .map(|(_, (m, _))| *m as i64)
            .sum()
    };
    let ttls = before.keys().filter(|k| given(k)).count() as u64;
    (sum(before) - sum(after), ttls)
}

/// Applies the suggested policy (RELOAD, one pass on database 0); the memory it freed.
fn apply_in_db0(server: &Server, c: &mut Connection, s: &Value) -> i64 {
    write_policy(&server.dir, s["policy"].as_str().expect("policy"));
    call(c, &["RETENTION.RELOAD"]);
    let before = memory_and_ttls(c);
    sweep(c, &[]);
    freed_and_ttls_given(&before, &memory_and_ttls(c)).0
}

/// A master with the fixture and its replica, caught up.
fn fixture_on_master_and_replica() -> (Server, Server) {
    let master = Server::start_paused(None);
    let replica = Server::start_paused(None);
    fixture(&mut master.conn());
    attach_replica(&master, &replica);
    wait_replica_caught_up(&master, &replica);
    (master, replica)
}

fn sum_effect(v: &Value, field: &str) -> u64 {
    v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["effect"][field].as_u64().expect("effect field"))
        .sum()
}

fn rule<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {v:#}"))
}

#[test]
fn the_suggested_policy_reloads_and_applying_it_changes_only_what_it_announced() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    let protected = fixture(&mut c);
    let s = suggest(&mut c, &[]);
    let policy = s["policy"].as_str().expect("policy").to_string();

    // Rules: order and names as in the policy; comments with numbers; the owners found.
    let parsed: Value = serde_json::from_str(&policy).expect("policy JSON");
    let names: Vec<&str> = parsed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    let reply_names: Vec<&str> = s["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, reply_names);
    for r in s["rules"].as_array().expect("rules") {
        let comment = r["comment"].as_str().expect("comment");
        assert!(comment.chars().any(|ch| ch.is_ascii_digit()), "{comment}");
    }
    let first_acting = s["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .position(|r| r["action"] != "keep")
        .expect("acting rules");
    assert!(
        s["rules"].as_array().expect("rules")[first_acting..]
            .iter()
            .all(|r| r["action"] != "keep"),
        "keep rules come first"
    );
    let queue = rule(&s, "queues-bull");
    assert_eq!(
        (
            queue["action"].as_str(),
            queue["owner"].as_str(),
            queue["match"].as_str()
        ),
        (Some("queue"), Some("bullmq"), Some("bull:*"))
    );
    assert_eq!(queue["effect"]["jobs"], 40);
    assert!(queue["effect"]["freed_bytes"].as_u64().expect("freed") > 40 * 100);
    let celery = rule(&s, "celery-results");
    assert_eq!(celery["effect"]["keys"], 40, "both databases");
    assert_eq!(rule(&s, "sidekiq")["action"], "keep");
    let dead = rule(&s, "sidekiq-dead");
    assert_eq!(
        (dead["action"].as_str(), dead["effect"]["entries"].as_u64()),
        (Some("trim"), Some(3))
    );
    assert_eq!(rule(&s, "rq")["match"], "rq:*");
    let session = rule(&s, "session");
    assert_eq!(session["effect"]["keys"], 9);
    assert!(
        policy.contains("\"ttl\": \"2h\""),
        "the sessions' own TTL rounded up: {policy}"
    );
    assert_eq!(rule(&s, "cache-page")["effect"]["keys"], 8);
    let stream = rule(&s, "stream-audit-log");
    assert_eq!(stream["effect"]["entries"], 20);
    assert_eq!(rule(&s, "runs-active-web")["effect"]["entries"], 1);
    let unknown: Vec<(String, String)> = s["unknown"]
        .as_array()
        .expect("unknown")
        .iter()
        .map(|u| {
            (
                u["pattern"].as_str().expect("pattern").to_string(),
                u["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    for pattern in ["user:*", "feed:*", "config:x"] {
        assert!(
            unknown.iter().any(|(p, _)| p == pattern),
            "{pattern} in {unknown:?}"
        );
    }
    assert!(
        unknown
            .iter()
            .any(|(p, r)| p == "feed:*" && r.contains("work queue")),
        "{unknown:?}"
    );
    assert_eq!(s["walk"]["databases"], serde_json::json!([0, 1]));
    assert!(s["walk"]["match"].is_null());

    // Apply it: reload the file, one pass per database.
    write_policy(&server.dir, &policy);
    call(&mut c, &["RETENTION.RELOAD"]);
    let before = snapshot(&mut c, &protected);
    let facts_before = memory_and_ttls(&mut c);
    for db in [0, 1] {
        select(&mut c, db);
        sweep(&mut c, &[]);
    }
    select(&mut c, 0);
    let facts_after = memory_and_ttls(&mut c);
    assert_eq!(
        snapshot(&mut c, &protected),
        before,
        "live work, locks, counters, TTLs and unknown keys unchanged"
    );
    let (freed, ttls_given) = freed_and_ttls_given(&facts_before, &facts_after);
    let said = sum_effect(&s, "freed_bytes") as i64;
    eprintln!("freed {freed} bytes, said {said}");
    assert!(freed >= said, "freed {freed} < announced {said}");
    assert!(
        said * 2 > freed,
        "announced {said} is far below freed {freed}"
    );
    assert!(
        ttls_given >= sum_effect(&s, "keys"),
        "{ttls_given} TTLs given"
    );
    assert_eq!(
        call(&mut c, &["ZCARD", "bull:emails:completed"]),
        redis::Value::Int(0)
    );
    assert_eq!(call(&mut c, &["ZCARD", "dead"]), redis::Value::Int(2));
    assert_eq!(call(&mut c, &["XLEN", "audit:log"]), redis::Value::Int(5));
}

#[test]
fn a_replica_suggests_the_same_policy_and_match_restricts() {
    let (master, replica) = fixture_on_master_and_replica();
    let (mut m, mut r) = (master.conn(), replica.conn());
    // The same rules in the same order; only the comments' memory figures may differ (a
    // replica's copy of a value can take other allocations than the master's).
    let rules = |text: String| -> Value {
        let mut v: Value = serde_json::from_str(&text).expect("policy JSON");
        for r in v["rules"].as_array_mut().expect("rules") {
            r.as_object_mut().expect("rule").remove("comment");
        }
        v
    };
    let on_master = rules(suggest_policy(&mut m, &[]));
    assert!(
        on_master["rules"].as_array().expect("rules").len() >= 10,
        "{on_master:#}"
    );
    assert_eq!(rules(suggest_policy(&mut r, &[])), on_master);

    let only = suggest(&mut m, &["MATCH", "celery-*"]);
    let names: Vec<&str> = only["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|x| x["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["celery-results"]);
    assert_eq!(only["walk"]["keys"], 40);
    assert_eq!(only["walk"]["match"], "celery-*");
    assert_eq!(only["unknown"], serde_json::json!([]));
}

#[test]
fn bad_input_is_refused_and_an_empty_keyspace_gets_an_empty_policy() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    let digest = dataset_digest(&mut c);
    for (args, expect) in [
        (vec!["FORMAT"], "FORMAT"),
        (vec!["FORMAT", "yaml"], "FORMAT must be map or policy"),
        (vec!["MATCH", "[abc"], "MATCH: bad glob"),
        (vec!["NOPE"], "NOPE"),
        (vec!["MATCH", "a", "MATCH", "b"], "MATCH"),
    ] {
        let err = redis::cmd("RETENTION.SUGGEST")
            .arg(&args)
            .query::<redis::Value>(&mut c)
            .expect_err("refused")
            .to_string();
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(dataset_digest(&mut c), digest);

    let empty = suggest(&mut c, &[]);
    assert_eq!(empty["rules"], serde_json::json!([]));
    assert_eq!(empty["unknown"], serde_json::json!([]));
    let policy = empty["policy"].as_str().expect("policy");
    write_policy(&server.dir, policy);
    call(&mut c, &["RETENTION.RELOAD"]);
    let text = suggest_policy(&mut c, &[]);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        serde_json::json!({"rules": []})
    );
}

#[test]
fn a_stream_trim_announces_the_whole_nodes_it_frees() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    let now = now_ms();
    // 950 entries 10 days old and 50 new ones: nodes of 100 entries (the default).
    for i in 0..1000i64 {
        let at = match i < 950 {
            true => now - 10 * DAY_MS,
            false => now - 1000,
        };
        let id = format!("{at}-{i}");
        call(
            &mut c,
            &["XADD", "clicks:log", &id, "page", &format!("/p/{i}")],
        );
    }
    let s = suggest(&mut c, &["MATCH", "clicks:*"]);
    let stream = rule(&s, "stream-clicks-log");
    assert_eq!(stream["effect"]["entries"], 950);
    let said = stream["effect"]["freed_bytes"]
        .as_i64()
        .expect("freed_bytes");
    let freed = apply_in_db0(&server, &mut c, &s);
    eprintln!("stream: freed {freed} bytes, said {said}");
    assert_eq!(call(&mut c, &["XLEN", "clicks:log"]), redis::Value::Int(50));
    assert!(
        said > 0 && freed >= said,
        "freed {freed} < announced {said}"
    );
    assert!(
        said * 2 > freed,
        "announced {said} is far below freed {freed}"
    );
}

#[test]
fn suggest_leaves_the_use_data_of_what_its_dry_runs_read() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:mail:", 50, 10 * DAY_MS);
    let old = now_ms() - 10 * DAY_MS;
    for i in 0..300i64 {
        let id = format!("{}-{i}", old + i);
        call(&mut c, &["XADD", "clicks:log", &id, "page", "/p"]);
    }
    call(&mut c, &["XADD", "clicks:log", "*", "page", "/new"]);
    let read_keys = ["bull:mail:completed", "clicks:log"];
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let s = suggest(&mut c, &[]);
    // Both rules' dry runs read their key: the cleaner's ZRANGE, the trim's XRANGE.
    assert!(
        rule(&s, "queues-bull")["effect"]["jobs"].as_i64() > Some(0),
        "{s:#}"
    );
    assert!(
        rule(&s, "stream-clicks-log")["effect"]["entries"].as_i64() > Some(0),
        "{s:#}"
    );
    // Redis sets an idle time to the second; Valkey 9 only to whole 1,000 s (see ServerKind).
    let exact = ServerKind::of(&mut c).restores_short_idle_times();
    for key in read_keys {
        let idle = match call(&mut c, &["OBJECT", "IDLETIME", key]) {
            redis::Value::Int(n) => n,
            other => panic!("OBJECT IDLETIME {key}: {other:?}"),
        };
        match exact {
            true => assert!(idle >= 2, "{key}: idle {idle} s after SUGGEST, it was 2 s"),
            false => assert!(idle < 60, "{key}: idle {idle} s after SUGGEST, it was 2 s"),
        }
    }
}

/// A name segment of letters that no grouping reads as an id: `i` in base 20 over g..z.
fn word(mut i: usize) -> String {
    let mut w = String::new();
    for _ in 0..4 {
        w.push((b'g' + (i % 20) as u8) as char);
        i /= 20;
    }
    w
}

#[test]
fn thousands_of_groups_are_proven_and_ruled_in_short_slices() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    // 5,000 streams of their own pattern, each only grown, its entries 10 days old: 5,000
    // owners to prove (XINFO each) and 5,000 trim rules.
    let old = now_ms() - 10 * DAY_MS;
    let mut pipe = redis::pipe();
    for i in 0..5_000 {
        let name = format!("log-{}", word(i));
        for n in 0..2 {
            pipe.cmd("XADD")
                .arg(&name)
                .arg(format!("{old}-{n}"))
                .arg("n")
                .arg(n)
                .ignore();
        }
    }
    let _: () = pipe.query(&mut c).expect("streams");
    // The longest slice of two runs, the shorter of the two: a machine busy with other work
    // can stall any one slice, a slice that does too much is long in both runs.
    let mut longest = Vec::new();
    for _ in 0..2 {
        call(&mut c, &["RETENTION.STATS", "RESET"]);
        let s = suggest(&mut c, &[]);
        let rules = s["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 5_000, "one trim per stream group");
        assert!(rules.iter().all(|r| r["action"] == "trim"));
        assert_eq!(sum_effect(&s, "entries"), 10_000);
        let stats = stats(&mut c);
        let max_slice_us = map_int(&stats, "max_slice_us");
        eprintln!(
            "5,000 groups: {} slices, max slice {max_slice_us} us, {} over budget",
            s["walk"]["slices"],
            map_int(&stats, "slices_over_budget")
        );
        longest.push(max_slice_us);
    }
    let shorter = longest.iter().copied().min().unwrap_or(0);
    assert!(
        shorter < 20_000,
        "slices took up to {longest:?} us (budget 1 ms)"
    );
}

#[test]
fn a_stream_whose_consumer_group_read_nothing_gets_no_trim() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    // Entries near epoch 0 and a group created before them that has read nothing: the age
    // that spares them is over 20,000 days.
    for i in 1..=5 {
        call(
            &mut c,
            &["XADD", "orders:stream", &format!("{i}000-0"), "n", "1"],
        );
    }
    call(
        &mut c,
        &["XGROUP", "CREATE", "orders:stream", "billing", "0"],
    );
    let s = suggest(&mut c, &[]);
    assert_eq!(s["rules"], serde_json::json!([]), "{s:#}");
    let unknown = s["unknown"].as_array().expect("unknown");
    let listed = unknown
        .iter()
        .find(|u| u["pattern"] == "orders:stream")
        .unwrap_or_else(|| panic!("orders:stream in {unknown:?}"));
    let reason = listed["reason"].as_str().expect("reason");
    assert!(
        reason.contains("consumer group") && reason.contains("would remove nothing"),
        "{reason}"
    );
}

#[test]
fn big_finished_jobs_get_a_memory_limit_from_maxmemory_and_its_effect() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    config_set(&mut c, "maxmemory", "104857600");
    // 100 completed jobs of 70 KB each, finished a minute ago: only a memory limit removes any.
    bullmq_queue(&mut c, "bull:media:", 0, 0);
    let now = now_ms();
    let payload = "p".repeat(70_000);
    for i in 3..103 {
        let job = format!("bull:media:{i}");
        call(&mut c, &["HSET", &job, "name", "render", "data", &payload]);
        call(
            &mut c,
            &[
                "ZADD",
                "bull:media:completed",
                &(now - 60_000 + i).to_string(),
                &i.to_string(),
            ],
        );
    }
    let s = suggest(&mut c, &["MATCH", "bull:*"]);
    let queue = rule(&s, "queues-bull");
    let policy: Value = serde_json::from_str(s["policy"].as_str().expect("policy")).expect("json");
    let value = &policy["rules"][0]["queue"];
    // A tenth of maxmemory (100 MB) shared by the queue's two finished sets.
    assert_eq!(value["completed"]["max_memory"], "5mb", "{value}");
    assert_eq!(value["failed"]["max_memory"], "5mb", "{value}");
    let comment = queue["comment"].as_str().expect("comment");
    assert!(
        comment.contains("max_memory 5mb") && comment.contains("maxmemory"),
        "{comment}"
    );
    let jobs = queue["effect"]["jobs"].as_i64().expect("jobs");
    assert!(
        (20..40).contains(&jobs),
        "about 100 - 5 MB / 70 KB jobs go: {jobs}"
    );
    let said = queue["effect"]["freed_bytes"]
        .as_i64()
        .expect("freed_bytes");

    let freed = apply_in_db0(&server, &mut c, &s);
    eprintln!("max_memory: {jobs} jobs, freed {freed} bytes, said {said}");
    assert_eq!(
        call(&mut c, &["ZCARD", "bull:media:completed"]),
        redis::Value::Int(100 - jobs)
    );
    assert!(freed >= said, "freed {freed} < announced {said}");
    assert!(
        said * 2 > freed,
        "announced {said} is far below freed {freed}"
    );
}

/// A Bull queue at `base`: `finished` completed jobs finished `age_ms` ago (Bull's hash
/// fields, no meta version, no events stream) and one waiting job.
fn bull_queue(c: &mut Connection, base: &str, finished: usize, age_ms: i64) {
    let done_at = now_ms() - age_ms;
    call(
        c,
        &["SET", &format!("{base}id"), &(finished + 1).to_string()],
    );
    for i in 1..=finished {
        let job = format!("{base}{i}");
        call(
            c,
            &[
                "HSET",
                &job,
                "name",
                "__default__",
                "data",
                &"x".repeat(300),
                "opts",
                "{}",
                "timestamp",
                &(done_at - 1000).to_string(),
                "processedOn",
                &(done_at - 500).to_string(),
                "finishedOn",
                &done_at.to_string(),
            ],
        );
        let score = (done_at + i as i64).to_string();
        call(
            c,
            &["ZADD", &format!("{base}completed"), &score, &i.to_string()],
        );
    }
    let waiting = (finished + 1).to_string();
    call(
        c,
        &[
            "HSET",
            &format!("{base}{waiting}"),
            "name",
            "__default__",
            "data",
            "{}",
        ],
    );
    call(c, &["LPUSH", &format!("{base}wait"), &waiting]);
}

#[test]
fn bull_queues_a_prefix_of_both_libraries_and_several_databases() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    // Database 0: a Bull and a BullMQ queue under one prefix (auto); database 2: Bull alone.
    bull_queue(&mut c, "bull:pdf:", 10, 3 * DAY_MS);
    bullmq_queue(&mut c, "bull:mail:", 10, 3 * DAY_MS);
    select(&mut c, 2);
    bull_queue(&mut c, "jobs:resize:", 12, 3 * DAY_MS);
    select(&mut c, 0);
    let s = suggest(&mut c, &[]);
    assert_eq!(s["walk"]["databases"], serde_json::json!([0, 2]));
    let policy: Value = serde_json::from_str(s["policy"].as_str().expect("policy")).expect("json");
    let flavor_of = |name: &str| -> Value {
        policy["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["queue"]["flavor"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(flavor_of("queues-bull"), "auto", "{policy:#}");
    assert_eq!(flavor_of("queues-jobs"), "bull", "{policy:#}");
    let both = rule(&s, "queues-bull");
    assert_eq!(both["effect"]["jobs"], 20);
    assert!(
        both["comment"]
            .as_str()
            .is_some_and(|t| t.contains("BullMQ and Bull")),
        "{both}"
    );
    let bull = rule(&s, "queues-jobs");
    assert_eq!(
        (bull["owner"].as_str(), bull["effect"]["jobs"].as_i64()),
        (Some("bull"), Some(12))
    );

    write_policy(&server.dir, s["policy"].as_str().expect("policy"));
    call(&mut c, &["RETENTION.RELOAD"]);
    let live: Vec<(i64, String)> = [
        (0, "bull:pdf:11"),
        (0, "bull:pdf:wait"),
        (0, "bull:mail:wait"),
        (2, "jobs:resize:13"),
        (2, "jobs:resize:wait"),
    ]
    .iter()
    .map(|(db, k)| (*db, k.to_string()))
    .collect();
    let waiting = snapshot(&mut c, &live);
    let before = memory_and_ttls(&mut c);
    for db in [0, 2] {
        select(&mut c, db);
        sweep(&mut c, &[]);
    }
    select(&mut c, 0);
    assert_eq!(
        call(&mut c, &["ZCARD", "bull:pdf:completed"]),
        redis::Value::Int(0)
    );
    assert_eq!(
        call(&mut c, &["ZCARD", "bull:mail:completed"]),
        redis::Value::Int(0)
    );
    select(&mut c, 2);
    assert_eq!(
        call(&mut c, &["EXISTS", "jobs:resize:1"]),
        redis::Value::Int(0)
    );
    select(&mut c, 0);
    assert_eq!(snapshot(&mut c, &live), waiting, "waiting jobs untouched");
    // Database 2 is not in memory_and_ttls' databases: compare database 0's.
    let (freed, _) = freed_and_ttls_given(&before, &memory_and_ttls(&mut c));
    assert!(freed > 0);
}

#[test]
fn multi_and_scripts_are_refused_and_acl_read_rights_are_required() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:emails:", 5, 3 * DAY_MS);
    let digest = dataset_digest(&mut c);
    call(&mut c, &["MULTI"]);
    call(&mut c, &["RETENTION.SUGGEST"]);
    let exec = format!("{:?}", try_call(&mut c, &["EXEC"]));
    assert!(exec.contains("cannot run inside MULTI"), "{exec}");
    let eval = try_call(
        &mut c,
        &["EVAL", "return redis.call('RETENTION.SUGGEST')", "0"],
    )
    .expect_err("refused in a script")
    .to_string();
    assert!(
        eval.contains("cannot run inside MULTI or a script") || eval.contains("not allowed"),
        "{eval}"
    );
    assert_eq!(dataset_digest(&mut c), digest);

    // Only the command and read rights on every key: it runs.
    call(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "advisor",
            "on",
            ">pw",
            "-@all",
            "+retention.suggest",
            "%R~*",
        ],
    );
    let mut advisor = server.conn();
    call(&mut advisor, &["AUTH", "advisor", "pw"]);
    let policy = suggest_policy(&mut advisor, &[]);
    assert!(policy.contains("queues-bull"), "{policy}");
    // The command without read rights on the keys it would see: refused.
    call(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "blind",
            "on",
            ">pw",
            "-@all",
            "+retention.suggest",
            "resetkeys",
        ],
    );
    let mut blind = server.conn();
    call(&mut blind, &["AUTH", "blind", "pw"]);
    let err = try_call(&mut blind, &["RETENTION.SUGGEST"])
        .expect_err("NOPERM")
        .to_string();
    assert!(err.contains("NOPERM"), "{err}");
    assert_eq!(dataset_digest(&mut c), digest);
}

#[test]
fn a_role_change_stops_suggest_with_an_error_and_changes_nothing() {
    let (_master, replica) = fixture_on_master_and_replica();
    let mut r = replica.conn();
    // A bigger keyspace (DEBUG POPULATE is not replicated), walked in small slices.
    call(&mut r, &["DEBUG", "POPULATE", "200000", "big", "10"]);
    config_set(&mut r, "retention.sweep-budget-us", "50");
    let digest = dataset_digest(&mut r);
    let mut conn = replica.conn();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut conn)
        .expect("CLIENT ID");
    let suggester = std::thread::spawn(move || {
        redis::cmd("RETENTION.SUGGEST").query::<redis::Value>(&mut conn)
    });
    if !wait_until(std::time::Duration::from_secs(30), || {
        blocked_in(&mut r, id, "RETENTION.SUGGEST")
    }) {
        panic!("not running: {:?}", suggester.join());
    }
    call(&mut r, &["REPLICAOF", "NO", "ONE"]);
    let err = suggester
        .join()
        .expect("suggester")
        .expect_err("stopped")
        .to_string();
    assert!(
        err.contains("RETENTION.SUGGEST stopped") && err.contains("became a master"),
        "{err}"
    );
    assert_eq!(dataset_digest(&mut r), digest, "nothing changed");
    assert_eq!(
        call(&mut r, &["PING"]),
        redis::Value::SimpleString("PONG".into())
    );
}

#[test]
fn a_big_log_stream_gets_a_memory_limit_and_its_effect() {
    let server = Server::start_paused(Some(r#"{"rules": []}"#));
    let mut c = server.conn();
    // 1,100 recent entries of 64 KB (about 70 MB), no consumer group: only memory bounds it.
    let now = now_ms();
    let payload = "e".repeat(64 * 1024);
    for chunk in 0..11 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            let n = chunk * 100 + i;
            pipe.cmd("XADD")
                .arg("uploads:log")
                .arg(format!("{}-{n}", now - 60_000))
                .arg("body")
                .arg(&payload)
                .ignore();
        }
        let _: () = pipe.query(&mut c).expect("XADD");
    }
    let s = suggest(&mut c, &["MATCH", "uploads:*"]);
    let stream = rule(&s, "stream-uploads-log");
    let policy: Value = serde_json::from_str(s["policy"].as_str().expect("policy")).expect("json");
    assert_eq!(
        policy["rules"][0]["trim"]["max_memory"], "64mb",
        "{policy:#}"
    );
    let comment = stream["comment"].as_str().expect("comment");
    assert!(
        comment.contains("max_memory 64mb") && comment.contains("no maxmemory"),
        "{comment}"
    );
    let entries = stream["effect"]["entries"].as_i64().expect("entries");
    assert!(
        (50..400).contains(&entries),
        "an entry counts 64 to 80 KB as the server counts it (bytes or allocation): 1,100 - 64 MB / that go: {entries}"
    );
    let said = stream["effect"]["freed_bytes"]
        .as_i64()
        .expect("freed_bytes");
    let freed = apply_in_db0(&server, &mut c, &s);
    eprintln!("stream max_memory: {entries} entries, freed {freed} bytes, said {said}");
    assert_eq!(
        call(&mut c, &["XLEN", "uploads:log"]),
        redis::Value::Int(1_100 - entries)
    );
    assert!(
        said > 0 && freed >= said,
        "freed {freed} < announced {said}"
    );
    assert!(
        said * 2 > freed,
        "announced {said} is far below freed {freed}"
    );
}
