//! The new-key fast path: keys created without a TTL get their
//! policy TTL within a couple of cron ticks, without any full pass.

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis::{Connection, Value};

const POLICY: &str = r#"{"rules":[
  {"name":"keep","match":"celery-task-meta-keep*","keep":true},
  {"name":"celery","match":"celery-task-meta-*","ttl":"1d"}
]}"#;

fn passes(c: &mut Connection) -> i64 {
    let stats: Value = redis::cmd("RETENTION.STATS").arg("GET").query(c).unwrap();
    map_int(&stats, "passes")
}

fn start() -> Server {
    start_with(POLICY).0
}

/// A server with `policy_json` in a policy file (returned, to be rewritten), new-key
/// tracking on and no full pass after the first.
fn start_with(policy_json: &str) -> (Server, std::path::PathBuf) {
    let dir = scratch_dir("track");
    let policy = write_policy(&dir, policy_json);
    let server = Server::start_in(
        dir.clone(),
        ServerOpts::default()
            .policy(&policy)
            .module_arg("pass-interval-s", "3600")
            .config("hz", "10"),
    )
    .expect("start");
    let mut c = server.conn();
    // The first background pass runs on the empty keyspace at startup; none after it.
    assert!(wait_until(Duration::from_secs(5), || passes(&mut c) == 1));
    (server, dir)
}

#[test]
fn new_keys_get_their_ttl_within_two_ticks_without_a_full_pass() {
    let server = start();
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.set(format!("celery-task-meta-{i}"), "r").ignore();
        pipe.set(format!("celery-task-meta-keep{i}"), "r").ignore();
        pipe.set(format!("other:{i}"), "r").ignore();
    }
    let written = Instant::now();
    let _: () = pipe.query(&mut c).unwrap();
    // hz 10: two ticks are 200 ms; the fast path usually acts on the next loop iteration.
    let all_set = wait_until(Duration::from_secs(5), || {
        let ttl: i64 = redis::cmd("TTL")
            .arg("celery-task-meta-4999")
            .query(&mut c)
            .unwrap();
        ttl > 0
    });
    let waited = written.elapsed();
    assert!(all_set, "no TTL after 5 s");
    println!("new keys got their TTL {waited:?} after the write");
    for i in (0..5000).step_by(97) {
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("celery-task-meta-{i}"))
            .query(&mut c)
            .unwrap();
        assert!(ttl > 86_000 && ttl <= 86_400, "celery-task-meta-{i}: {ttl}");
        let kept: i64 = redis::cmd("TTL")
            .arg(format!("celery-task-meta-keep{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(kept, -1);
        let other: i64 = redis::cmd("TTL")
            .arg(format!("other:{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(other, -1);
    }
    assert_eq!(
        passes(&mut c),
        1,
        "a full pass ran: the fast path was not what acted"
    );
    let stats: Value = redis::cmd("RETENTION.STATS")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    // other:* keys match no rule: dropped in the notification, never opened.
    assert_eq!(map_int(&stats, "tracked_keys"), 10_000);
}

#[test]
fn tracking_stops_when_disabled_and_on_replicas() {
    let server = start();
    let replica = Server::start(ServerOpts::default().policy(&server.dir.join("policy.json")))
        .expect("replica");
    attach_replica(&server, &replica);
    let mut c = server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.track-new-keys")
        .arg("no")
        .query(&mut c)
        .unwrap();
    // Let one cron tick see the new setting.
    std::thread::sleep(Duration::from_millis(300));
    let _: () = redis::cmd("SET")
        .arg("celery-task-meta-x")
        .arg("r")
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ttl: i64 = redis::cmd("TTL")
        .arg("celery-task-meta-x")
        .query(&mut c)
        .unwrap();
    assert_eq!(ttl, -1, "tracking acted while disabled");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.track-new-keys")
        .arg("yes")
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _: () = redis::cmd("SET")
        .arg("celery-task-meta-y")
        .arg("r")
        .query(&mut c)
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        let ttl: i64 = redis::cmd("TTL")
            .arg("celery-task-meta-y")
            .query(&mut c)
            .unwrap();
        ttl > 0
    }));
    wait_replica_caught_up(&server, &replica);
    assert_eq!(
        server.digest(),
        replica.digest(),
        "replica differs after fast-path TTLs"
    );
    let mut r = replica.conn();
    let stats: Value = redis::cmd("RETENTION.STATS")
        .arg("GET")
        .query(&mut r)
        .unwrap();
    assert_eq!(
        map_int(&stats, "tracked_keys"),
        0,
        "the replica acted on its own"
    );
}

/// Work queued for a noted key carries its rule's limits. A policy that replaces that rule
/// governs the work from the moment it is in force: a cleaning under way stops.
#[test]
fn a_reloaded_policy_stops_work_planned_under_the_old_one() {
    let cleaning = r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bull",
      "completed":{"max_len":10}}}]}"#;
    let (server, dir) = start_with(cleaning);
    let mut c = server.conn();
    // A Bull queue whose 200,001 completed jobs arrive in one script: the ZADDs note the
    // state set once, and the cleaning it queues runs over many loop iterations.
    let jobs = 200_001;
    let finished = now_ms() - 60_000;
    let _: () = redis::cmd("SET")
        .arg("bull:q:id")
        .arg(jobs)
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("EVAL")
        .arg(
            "for i = 1, tonumber(ARGV[1]) do \
               redis.call('HSET', 'bull:q:' .. i, 'name', 'n', 'data', '{}', 'opts', '{}', \
                 'timestamp', ARGV[2], 'processedOn', ARGV[2], 'finishedOn', ARGV[2]) \
               redis.call('ZADD', 'bull:q:completed', ARGV[2], i) \
             end return 0",
        )
        .arg(0)
        .arg(jobs)
        .arg(finished)
        .query(&mut c)
        .expect("fill the queue");
    let zcard = |c: &mut Connection| -> i64 {
        redis::cmd("ZCARD")
            .arg("bull:q:completed")
            .query(c)
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(20), || zcard(&mut c) < jobs - 100),
        "the cleaning of the noted queue did not start"
    );
    write_policy(
        &dir,
        r#"{"rules":[{"name":"all","match":"*","keep":true}]}"#,
    );
    let _: () = redis::cmd("RETENTION.RELOAD")
        .query(&mut c)
        .expect("RELOAD");
    let at_reload = zcard(&mut c);
    assert!(
        at_reload > 10_000,
        "the cleaning ended before the reload ({at_reload} left)"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        zcard(&mut c),
        at_reload,
        "jobs were removed under a policy no longer in force"
    );
    let hashes = scan_match(&mut c, b"bull:q:[0-9]*").len() as i64;
    assert_eq!(hashes, at_reload, "every kept entry kept its job hash");
    assert!(stat(&mut c, "tracked_work_replanned") >= 1);
}
