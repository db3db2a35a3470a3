//! The sweep on real servers: loading, configs, TTL sweeps (command and background), DRYRUN,
//! replication and AOF, and PING latency during a big sweep.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use redis::{Commands, Connection, Value};

const HOUR_MS: i64 = 3_600_000;

const POLICY: &str = r#"{"rules":[
  {"name":"protect","match":["bull:*:id","bull:*:meta"],"keep":true},
  {"name":"celery","match":"celery-task-meta-*","type":"string","ttl":"1d"},
  {"name":"metrics","match":"metrics:*","type":"hash","ttl":"48h"},
  {"name":"capped","match":"session:*","ttl":"1h","cap":true},
  {"name":"bull-rest","match":"bull:*","ttl":"7d"}
]}"#;

fn rule_counter(report: &Value, rule: &str, field: &str) -> i64 {
    let rules = flat_map(report)
        .into_iter()
        .find(|(k, _)| k == "rules")
        .expect("rules in report")
        .1;
    let per_rule = flat_map(&rules)
        .into_iter()
        .find(|(k, _)| k == rule)
        .unwrap_or_else(|| panic!("rule {rule} in report"))
        .1;
    map_int(&per_rule, field)
}

/// What the policy above must do to a key: Some(ttl in ms) to get, None = untouched.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Untouched,
    TtlAbout(i64),
}

/// Builds a mixed keyspace of about `n` keys and returns what each key must end up as.
fn populate_mixed(c: &mut Connection, n: usize) -> HashMap<String, Expect> {
    let mut expect = HashMap::new();
    let mut pipe = redis::pipe();
    for i in 0..n {
        let (name, e) = match i % 10 {
            0 => (
                format!("celery-task-meta-{i}"),
                Expect::TtlAbout(24 * HOUR_MS),
            ),
            1 => (format!("metrics:{i}"), Expect::TtlAbout(48 * HOUR_MS)),
            // A string under metrics:* does not fit the hash-only rule and no later rule matches.
            2 => (format!("metrics:s{i}"), Expect::Untouched),
            3 => (format!("bull:q{}:id", i % 97), Expect::Untouched),
            4 => (
                format!("bull:q{}:{i}", i % 97),
                Expect::TtlAbout(7 * 24 * HOUR_MS),
            ),
            5 => (format!("session:{i}"), Expect::TtlAbout(HOUR_MS)),
            6 => (format!("unrelated:{i}"), Expect::Untouched),
            // Already expires sooner than the rule: left alone.
            7 => (
                format!("celery-task-meta-short-{i}"),
                Expect::TtlAbout(60_000),
            ),
            // Longer TTL without cap: never lowered (and never lengthened).
            8 => (
                format!("bull:q:long{i}"),
                Expect::TtlAbout(30 * 24 * HOUR_MS),
            ),
            // Longer TTL with cap: lowered to the rule's hour.
            _ => (format!("session:long{i}"), Expect::TtlAbout(HOUR_MS)),
        };
        match i % 10 {
            1 => {
                pipe.hset(&name, "f", "v").ignore();
            }
            4 => {
                pipe.hset(&name, "data", "{}").ignore();
            }
            7 => {
                pipe.set_ex(&name, "v", 60).ignore();
            }
            8 => {
                pipe.set_ex(&name, "v", 30 * 24 * 3600).ignore();
            }
            9 => {
                pipe.set_ex(&name, "v", 10 * 3600).ignore();
            }
            _ => {
                pipe.set(&name, "v").ignore();
            }
        }
        if expect.insert(name, e).is_some() {
            // bull:q<n>:id repeats: the same key, same expectation.
        }
        if i % 5000 == 4999 {
            let _: () = pipe.query(c).expect("populate");
            pipe = redis::pipe();
        }
    }
    let _: () = pipe.query(c).expect("populate");
    expect
}

fn check_end_state(c: &mut Connection, expect: &HashMap<String, Expect>) {
    let names: Vec<&String> = expect.keys().collect();
    for chunk in names.chunks(5000) {
        let mut pipe = redis::pipe();
        for name in chunk {
            pipe.pttl(*name);
        }
        let ttls: Vec<i64> = pipe.query(c).expect("PTTL");
        for (name, ttl) in chunk.iter().zip(ttls) {
            match expect[*name] {
                Expect::Untouched => assert_eq!(ttl, -1, "{name} must have no TTL"),
                Expect::TtlAbout(want) => {
                    // Tolerance: the test's own runtime plus a margin.
                    let tolerance = 120_000;
                    assert!(
                        ttl <= want && ttl > want - tolerance,
                        "{name}: PTTL {ttl}, expected about {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn module_loads_with_and_without_policy_and_budget_config_applies() {
    let bare = Server::start(ServerOpts::default()).expect("start without policy");
    let mut c = bare.conn();
    let policy: Value = redis::cmd("RETENTION.POLICY").query(&mut c).unwrap();
    assert_eq!(map_int(&policy, "rule_count"), 0);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.sweep-budget-us")
        .arg(500)
        .query(&mut c)
        .unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("retention.sweep-budget-us")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, vec!["retention.sweep-budget-us", "500"]);
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(20_000)
        .query(&mut c)
        .unwrap();
    let report = sweep(&mut c, &[]);
    assert_eq!(
        map_int(&report, "budget_us"),
        500,
        "the pass uses the new budget"
    );
    assert_eq!(map_int(&report, "keys_scanned"), 20_000);

    let with_policy = Server::start_paused(Some(POLICY));
    let mut c = with_policy.conn();
    let policy: Value = redis::cmd("RETENTION.POLICY").query(&mut c).unwrap();
    assert_eq!(map_int(&policy, "rule_count"), 5);
    let all: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("retention.*")
        .query(&mut c)
        .unwrap();
    for name in [
        "retention.enabled",
        "retention.policy-file",
        "retention.sweep-budget-us",
        "retention.pass-interval-s",
        "retention.dry-run",
    ] {
        assert!(
            all.iter().any(|n| n == name),
            "{name} missing from CONFIG GET retention.*"
        );
    }
}

#[test]
fn module_load_command_works_at_runtime() {
    let server = Server::start(ServerOpts {
        no_module: true,
        ..ServerOpts::default()
    })
    .expect("plain server");
    let mut c = server.conn();
    let path = module_path();
    let _: () = redis::cmd("MODULE")
        .arg("LOAD")
        .arg(path.to_str().unwrap())
        .query(&mut c)
        .expect("MODULE LOAD without policy");
    let policy_path = write_policy(&server.dir, POLICY);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.policy-file")
        .arg(policy_path.to_str().unwrap())
        .query(&mut c)
        .expect("policy via CONFIG SET");
    let policy: Value = redis::cmd("RETENTION.POLICY").query(&mut c).unwrap();
    assert_eq!(map_int(&policy, "rule_count"), 5);
}

#[test]
fn one_sweep_applies_exactly_the_rules_and_dryrun_changes_nothing() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    let expect = populate_mixed(&mut c, 100_000);
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();

    let before = server.digest();
    let dry = sweep(&mut c, &["DRYRUN"]);
    assert_eq!(server.digest(), before, "DRYRUN changed the dataset");
    assert_eq!(map_int(&dry, "dry_run"), 1);

    let real = sweep(&mut c, &[]);
    for field in ["keys_scanned", "keys_matched", "ttl_set", "ttl_lowered"] {
        assert_eq!(
            map_int(&dry, field),
            map_int(&real, field),
            "{field}: DRYRUN differs"
        );
    }
    assert_eq!(map_int(&real, "keys_scanned"), dbsize);
    assert_eq!(
        map_int(&real, "ttl_set"),
        40_000,
        "keys of classes 0, 1, 4, 5 (3 is kept)"
    );
    assert_eq!(
        map_int(&real, "ttl_lowered"),
        10_000,
        "only capped session:long* keys"
    );
    assert_eq!(rule_counter(&real, "capped", "ttl_lowered"), 10_000);
    assert_eq!(rule_counter(&real, "protect", "ttl_set"), 0);
    assert_eq!(map_int(&real, "errors"), 0);
    check_end_state(&mut c, &expect);

    // A second pass finds nothing left to do.
    let again = sweep(&mut c, &[]);
    assert_eq!(
        map_int(&again, "ttl_set") + map_int(&again, "ttl_lowered"),
        0
    );
    pass_reports_and_status_speak_one_vocabulary(&mut c, &real);
}

/// A pass's report and RETENTION.STATUS/STATS: when it started (`started_at_ms`), how long it
/// took (`duration_ms`, STATS' `last_pass_duration_ms`), how it ended (0/1 flags beside a
/// `reason`), and when the next background pass is due (`next_pass_at_ms`).
fn pass_reports_and_status_speak_one_vocabulary(c: &mut Connection, real: &Value) {
    let started = map_int(real, "started_at_ms");
    assert!(
        (now_ms() - 600_000..=now_ms()).contains(&started),
        "{real:?}"
    );
    assert!(map_int(real, "duration_ms") >= 0);
    assert_eq!(map_int(real, "dry_run"), 0);
    assert_eq!(map_int(real, "aborted"), 0);
    assert_eq!(map_int(real, "finished_early"), 0);
    assert_eq!(map_str(real, "reason").as_deref(), Some(""));
    assert!(map_int(real, "budget_us") > 0 && map_int(real, "slices") > 0);

    let status: Value = redis::cmd("RETENTION.STATUS").query(c).unwrap();
    assert_eq!(map_int(&status, "running"), 0);
    assert_eq!(map_field(&status, "pass"), None, "{status:?}");
    assert!(map_int(&status, "next_pass_at_ms") >= now_ms() - 1_000);
    assert_eq!(
        map_str(&status, "version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let last = map_field(&status, "last_pass").expect("last_pass");
    assert!(map_int(&last, "started_at_ms") > started, "{last:?}");
    assert_eq!(map_str(&last, "kind").as_deref(), Some("command"));
    assert_eq!(
        map_int(&stats(c), "last_pass_duration_ms"),
        map_int(&last, "duration_ms")
    );
    let policy: Value = redis::cmd("RETENTION.POLICY").query(c).unwrap();
    assert_eq!(map_int(&policy, "rule_count"), 5);
}

#[test]
fn rule_and_match_options_restrict_the_pass() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    populate_mixed(&mut c, 10_000);
    let only_celery = sweep(&mut c, &["RULE", "celery"]);
    assert_eq!(map_int(&only_celery, "ttl_set"), 1_000);
    let ttl: i64 = c.ttl("bull:q4:4").unwrap();
    assert_eq!(ttl, -1, "RULE celery touched a bull key");
    let only_bull = sweep(&mut c, &["MATCH", "bull:q4:*"]);
    assert!(map_int(&only_bull, "ttl_set") > 0);
    let ttl: i64 = c.ttl("metrics:1").unwrap();
    assert_eq!(ttl, -1, "MATCH bull:q4:* touched metrics:1");
}

/// A TTL set by the sweep is a write like `PEXPIREAT`: a transaction that WATCHed the key
/// fails, and a keyspace-event subscriber hears `expire`.
#[test]
fn ttls_set_by_a_sweep_break_watch_and_are_notified() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    let _: () = c.set("celery-task-meta-watched", "v").unwrap();
    let _: () = c.set("unrelated:watched", "v").unwrap();
    let mut sub = server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "Kg"])
        .query(&mut sub)
        .unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.psubscribe("__keyspace@0__:*").unwrap();
    let mut watcher = server.conn();
    let mut bystander = server.conn();
    let _: () = redis::cmd("WATCH")
        .arg("celery-task-meta-watched")
        .query(&mut watcher)
        .unwrap();
    let _: () = redis::cmd("WATCH")
        .arg("unrelated:watched")
        .query(&mut bystander)
        .unwrap();
    assert_eq!(map_int(&sweep(&mut c, &[]), "ttl_set"), 1);

    let exec = |conn: &mut Connection| -> Value {
        redis::pipe()
            .atomic()
            .cmd("PING")
            .query(conn)
            .expect("MULTI/EXEC")
    };
    assert_eq!(
        exec(&mut watcher),
        Value::Nil,
        "WATCH did not see the new TTL"
    );
    assert_ne!(
        exec(&mut bystander),
        Value::Nil,
        "an untouched key broke WATCH"
    );
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let msg = pubsub.get_message().expect("keyspace event");
    assert_eq!(
        msg.get_channel_name(),
        "__keyspace@0__:celery-task-meta-watched"
    );
    assert_eq!(msg.get_payload::<String>().unwrap(), "expire");
}

/// A pass whose rules only give TTLs to keys without one ends at once when the server
/// counts no such key in its database; a key no rule governs, a `cap` rule in scope, NOOP
/// or another database with work make it visit every key as before.
#[test]
fn a_pass_ends_early_when_every_key_has_a_ttl() {
    const TTL_ONLY: &str = r#"{"rules":[
      {"name":"protect","match":"bull:*:id","keep":true},
      {"name":"celery","match":"celery-task-meta-*","ttl":"1d"},
      {"name":"capped","match":"session:*","ttl":"1h","cap":true}
    ]}"#;
    let server = Server::start_paused(Some(TTL_ONLY));
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..5_000 {
        pipe.set(format!("celery-task-meta-{i}"), "v").ignore();
    }
    for i in 0..100 {
        pipe.set_ex(format!("session:{i}"), "v", 10 * 3600).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    // Why the pass ended before its scan did, None when it did not.
    let finished_early = |r: &Value| {
        (map_int(r, "finished_early") == 1).then(|| map_str(r, "reason").unwrap_or_default())
    };

    let first = sweep(&mut c, &["RULE", "celery"]);
    assert_eq!(map_int(&first, "ttl_set"), 5_000);
    assert!(map_int(&first, "keys_scanned") > 0);

    let again = sweep(&mut c, &["RULE", "celery"]);
    assert_eq!(map_int(&again, "keys_scanned"), 0, "{again:?}");
    assert_eq!(
        finished_early(&again).as_deref(),
        Some("every key in the database has a TTL")
    );

    let capped = sweep(&mut c, &[]);
    assert_eq!(finished_early(&capped), None, "a cap rule needs every key");
    assert_eq!(map_int(&capped, "keys_scanned"), 5_100);
    assert_eq!(map_int(&capped, "ttl_lowered"), 100);

    let noop = sweep(&mut c, &["NOOP"]);
    assert_eq!(
        map_int(&noop, "keys_scanned"),
        5_100,
        "NOOP visits every key"
    );

    let _: () = c.set("config:permanent", "v").unwrap();
    let kept = sweep(&mut c, &["RULE", "celery"]);
    assert_eq!(finished_early(&kept), None);
    assert_eq!(map_int(&kept, "keys_scanned"), 5_101);
    assert_eq!(map_int(&kept, "ttl_set"), 0);

    // Every key of db 0 has a TTL again; db 1's keys still need theirs.
    let _: () = c.del("config:permanent").unwrap();
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = c.set("celery-task-meta-db1", "v").unwrap();
    let db1 = sweep(&mut c, &[]);
    assert_eq!(map_int(&db1, "ttl_set"), 1);
    let ttl: i64 = c.ttl("celery-task-meta-db1").unwrap();
    assert!(ttl > 0, "db 1's key got no TTL: {ttl}");
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let db0 = sweep(&mut c, &["RULE", "celery"]);
    assert_eq!(map_int(&db0, "keys_scanned"), 0);
}

/// `(keys_scanned, progress_pct)` of the running background pass, None while none runs.
fn background_progress(c: &mut Connection) -> Option<(i64, i64)> {
    let status: Value = redis::cmd("RETENTION.STATUS").query(c).expect("STATUS");
    let pass = map_field(&status, "pass")?;
    (map_str(&pass, "kind").as_deref() == Some("background")).then(|| {
        (
            map_int(&pass, "keys_scanned"),
            map_int(&pass, "progress_pct"),
        )
    })
}

#[test]
fn progress_counts_the_keys_of_every_database_the_pass_covers() {
    // A rule no key matches: the pass visits every key and changes none, so it advances
    // only from the cron, one budget per tick (a few seconds for 100,000 keys), and is seen
    // on its way.
    let server = Server::start_paused(Some(
        r#"{"rules":[{"name":"none","match":"nothing:*","ttl":"1h"}]}"#,
    ));
    let (small, big) = (5, 100_000);
    let mut c = server.conn();
    for i in 0..small {
        let _: () = c.set(format!("db0:{i}"), "v").unwrap();
    }
    let mut db5 = server.conn_db(5);
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(big)
        .query(&mut db5)
        .unwrap();
    config_set(&mut c, "retention.enabled", "yes");

    // From db 0 (5 keys) while the pass is in db 5: about visited / 100,005, not / 5.
    let total = small + big;
    let mut samples = Vec::new();
    let seen = wait_until(Duration::from_secs(120), || {
        if let Some((visited, pct)) = background_progress(&mut c) {
            if visited > small && samples.last().is_none_or(|&(v, _)| v < visited) {
                samples.push((visited, pct));
            }
        }
        // Until the percentage has moved off 0, so the samples say more than "small".
        samples.len() >= 5 && samples.last().is_some_and(|&(_, pct)| pct >= 2)
    });
    assert!(seen, "no background pass seen in db 5: {samples:?}");
    for &(visited, pct) in &samples {
        let expected = visited * 100 / total;
        assert!(
            (0..=99).contains(&pct) && (pct - expected).abs() <= 1,
            "{pct}% after {visited} of {total} keys (expected {expected}%): {samples:?}"
        );
    }
    let status: Value = redis::cmd("RETENTION.STATUS").query(&mut c).unwrap();
    assert_eq!(map_int(&status, "dbsize"), small, "dbsize is the caller's");
}

#[test]
fn background_sweeper_reaches_the_same_end_state() {
    let dir = scratch_dir("bg");
    let policy = write_policy(&dir, POLICY);
    let server = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .module_arg("enabled", "no")
            .config("hz", "50"),
    )
    .expect("start");
    let mut c = server.conn();
    let expect = populate_mixed(&mut c, 20_000);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.sweep-budget-us")
        .arg(5000)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.enabled")
        .arg("yes")
        .query(&mut c)
        .unwrap();
    let done = wait_until(Duration::from_secs(60), || {
        let stats: Value = redis::cmd("RETENTION.STATS")
            .arg("GET")
            .query(&mut c)
            .unwrap();
        map_int(&stats, "passes") >= 1
    });
    assert!(done, "no background pass finished in 60 s");
    check_end_state(&mut c, &expect);
    let info: String = redis::cmd("INFO").arg("retention").query(&mut c).unwrap();
    assert!(
        info.contains("retention_ttl_set:"),
        "INFO retention: {info}"
    );
    assert!(
        info.contains("retention_rule_celery:"),
        "INFO retention: {info}"
    );
}

#[test]
fn other_clients_keep_being_served_during_a_1m_key_sweep() {
    let server = Server::start_paused(Some(
        r#"{"rules":[{"name":"all","match":"key:*","ttl":"1h"}]}"#,
    ));
    let mut c = server.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1_000_000)
        .query(&mut c)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let stop = stop.clone();
        let mut p = server.conn();
        std::thread::spawn(move || {
            let mut max = Duration::ZERO;
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _: String = redis::cmd("PING").query(&mut p).expect("PING");
                max = max.max(t.elapsed());
                count += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (max, count)
        })
    };
    let started = Instant::now();
    let report = sweep(&mut c, &[]);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (max_ping, pings) = pinger.join().expect("pinger");
    assert_eq!(map_int(&report, "ttl_set"), 1_000_000);
    assert!(
        pings > 10,
        "the other client was not served during the sweep ({pings} PINGs)"
    );
    println!(
        "1M-key sweep: {:?} ({} slices, max slice {} us); other client: {} PINGs, max latency {:?}",
        took,
        map_int(&report, "slices"),
        map_int(&report, "max_slice_us"),
        pings,
        max_ping
    );
}

/// Keys of `populate_mixed` whose expire times must survive replication and AOF reload.
const TTL_SAMPLE_KEYS: [&str; 4] = [
    "celery-task-meta-0",
    "metrics:1",
    "session:5",
    "session:long9",
];

#[test]
fn replica_and_aof_end_byte_identical() {
    let dir = scratch_dir("aof");
    let policy = write_policy(&dir, POLICY);
    let opts = ServerOpts::default().policy(&policy).paused().aof();
    let master = Server::start_in(dir.clone(), opts.clone()).expect("master");
    let replica = Server::start(ServerOpts::default().policy(&policy)).expect("replica");
    attach_replica(&master, &replica);
    let mut c = master.conn();
    populate_mixed(&mut c, 20_000);
    sweep(&mut c, &[]);
    wait_replica_caught_up(&master, &replica);
    let digest = master.digest();
    assert_eq!(digest, replica.digest(), "replica differs from master");

    let ttls_before = expire_times(&mut c, &TTL_SAMPLE_KEYS);
    drop(c);
    let mut master = master;
    master.kill();
    let restarted = Server::start_in(dir, opts).expect("restart from AOF");
    assert_eq!(restarted.digest(), digest, "AOF reload differs");
    let mut c = restarted.conn();
    let ttls_after = expire_times(&mut c, &TTL_SAMPLE_KEYS);
    assert_eq!(
        ttls_before, ttls_after,
        "absolute expire times differ after AOF reload"
    );
}

#[test]
fn memory_pressure_applies_the_pressure_ttl_and_works_under_noeviction() {
    let server = Server::start_paused(Some(
        r#"{"rules":[{"name":"c","match":"c:*","ttl":"1d","pressure":{"ttl":"1h"}}]}"#,
    ));
    let mut c = server.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(50_000)
        .arg("c")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("c:calm")
        .arg("v")
        .query(&mut c)
        .unwrap();
    // Without pressure: the normal TTL.
    let _: Value = redis::cmd("RETENTION.SWEEP")
        .arg("MATCH")
        .arg("c:calm")
        .query(&mut c)
        .unwrap();
    let calm: i64 = c.ttl("c:calm").unwrap();
    assert!(calm > 86_000, "no pressure yet: {calm}");

    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    for (k, v) in [
        ("maxmemory", (used + used / 20).to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        ("retention.pressure-ratio", "0.5".to_string()),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(&mut c)
            .unwrap();
    }
    let report: Value = redis::cmd("RETENTION.SWEEP").query(&mut c).unwrap();
    assert_eq!(
        map_int(&report, "ttl_set"),
        50_000,
        "the sweep must run under noeviction"
    );
    let ttl: i64 = c.ttl("c:1").unwrap();
    assert!(
        ttl > 3_000 && ttl <= 3_600,
        "pressure TTL expected, got {ttl}"
    );
    // c:calm got the rule's normal TTL before the pressure: the pressure TTL replaces it.
    let lowered: i64 = c.ttl("c:calm").unwrap();
    assert!(
        lowered > 3_000 && lowered <= 3_600,
        "the rule's earlier TTL is lowered under pressure: {lowered}"
    );
}

/// A SWEEP started under one policy stops when another is loaded: nothing acts under a
/// policy no longer in force. The caller gets the report with the reason.
#[test]
fn a_sweep_stops_when_a_new_policy_is_loaded() {
    let dir = scratch_dir("sweep-reload");
    let policy = write_policy(
        &dir,
        r#"{"rules":[{"name":"all","match":"key:*","ttl":"1h"}]}"#,
    );
    let server = Server::start_in(dir.clone(), ServerOpts::default().paused().policy(&policy))
        .expect("start");
    let mut c = server.conn();
    let keys = 300_000;
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(keys)
        .query(&mut c)
        .unwrap();
    let port = server.port;
    let sweeper = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
        let mut conn = client.get_connection().expect("conn");
        // A small budget: the pass takes many slices, so the reload lands in the middle.
        sweep(&mut conn, &["BUDGET", "100"])
    });
    assert!(
        wait_until(Duration::from_secs(20), || keys_with_ttl_db0(&mut c) > 1000),
        "the sweep did not start"
    );
    write_policy(
        &dir,
        r#"{"rules":[{"name":"keep","match":"*","keep":true}]}"#,
    );
    let _: () = redis::cmd("RETENTION.RELOAD")
        .query(&mut c)
        .expect("RELOAD");
    let at_reload = keys_with_ttl_db0(&mut c);
    let report = sweeper.join().expect("sweeper");
    assert_eq!(map_int(&report, "aborted"), 1, "{report:?}");
    let reason = map_str(&report, "reason").unwrap_or_default();
    assert!(reason.contains("new policy"), "{report:?}");
    assert!(at_reload < keys, "the sweep ended before the reload");
    assert_eq!(
        keys_with_ttl_db0(&mut c),
        at_reload,
        "TTLs were set under a policy no longer in force"
    );
}
