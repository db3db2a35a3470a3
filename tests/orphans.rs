//! Queue orphans are removed only after the module has seen them unreferenced for the
//! rule's `orphan_age`, on its own clock, in their own database; a check never searches a
//! state list longer than its step allows (doubt = the key stays).

mod common;

use std::time::Duration;

use common::{call, exists, map_int, now_ms, sweep, Server};
use redis::Connection;

const AGE_MS: u64 = 400;
const POLICY: &str = r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq","orphan_age":"400ms"}}]}"#;
const DAY_MS: i64 = 86_400_000;

/// A BullMQ 5 queue's structure keys.
fn bullmq_queue(c: &mut Connection, base: &str) {
    call(
        c,
        &["HSET", &format!("{base}meta"), "version", "bullmq:5.81.5"],
    );
    call(c, &["SET", &format!("{base}id"), "1000"]);
}

fn finished_job_fields(finished_on: i64) -> Vec<String> {
    [
        ("name", "n".to_string()),
        ("data", "{}".to_string()),
        ("opts", "{}".to_string()),
        ("timestamp", (finished_on - 10).to_string()),
        ("processedOn", (finished_on - 5).to_string()),
        ("finishedOn", finished_on.to_string()),
    ]
    .into_iter()
    .flat_map(|(f, v)| [f.to_string(), v])
    .collect()
}

/// Writes `key` the way an import tool does: RESTORE of a DUMP taken elsewhere.
fn restore(c: &mut Connection, key: &str, build: &[&str]) {
    let scratch = "scratch:dump";
    call(c, &["DEL", scratch]);
    let mut args = vec![build[0], scratch];
    args.extend_from_slice(&build[1..]);
    call(c, &args);
    let payload: Vec<u8> = redis::cmd("DUMP").arg(scratch).query(c).expect("DUMP");
    call(c, &["DEL", scratch]);
    let _: () = redis::cmd("RESTORE")
        .arg(key)
        .arg(0)
        .arg(payload)
        .query(c)
        .expect("RESTORE");
}

fn restore_finished_job(c: &mut Connection, key: &str, finished_on: i64) {
    let fields = finished_job_fields(finished_on);
    let mut build = vec!["HSET"];
    build.extend(fields.iter().map(String::as_str));
    restore(c, key, &build);
}

fn pause_past_orphan_age() {
    std::thread::sleep(Duration::from_millis(AGE_MS + 100));
}

#[test]
fn a_restored_finished_job_waits_for_its_set_and_then_stays() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:q:");
    // Finished a day ago, imported key by key: the hash arrives before its state set.
    let finished_on = now_ms() - DAY_MS;
    restore_finished_job(&mut c, "bull:q:7", finished_on);
    let report = sweep(&mut c, &[]);
    assert_eq!(map_int(&report, "jobs_removed"), 0, "{report:?}");
    assert!(exists(&mut c, "bull:q:7"), "removed on a single look");
    let score = finished_on.to_string();
    restore(&mut c, "bull:q:completed", &["ZADD", &score, "7"]);
    for _ in 0..2 {
        pause_past_orphan_age();
        let report = sweep(&mut c, &[]);
        assert_eq!(map_int(&report, "jobs_removed"), 0, "{report:?}");
    }
    assert!(exists(&mut c, "bull:q:7"), "a referenced job was removed");
}

#[test]
fn a_true_orphan_goes_after_two_looks_separated_by_orphan_age() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    bullmq_queue(&mut c, "bull:q:");
    restore_finished_job(&mut c, "bull:q:9", now_ms() - DAY_MS);
    call(&mut c, &["RPUSH", "bull:q:9:logs", "line"]);
    // Already older than orphan_age by its own finishedOn, and unseen so far.
    pause_past_orphan_age();
    let first = sweep(&mut c, &[]);
    assert_eq!(map_int(&first, "jobs_removed"), 0, "{first:?}");
    assert!(exists(&mut c, "bull:q:9"));
    pause_past_orphan_age();
    let second = sweep(&mut c, &[]);
    assert_eq!(map_int(&second, "jobs_removed"), 1, "{second:?}");
    assert!(!exists(&mut c, "bull:q:9"));
    assert!(!exists(&mut c, "bull:q:9:logs"));
}

#[test]
fn observations_belong_to_their_database() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    for db in ["0", "1"] {
        call(&mut c, &["SELECT", db]);
        bullmq_queue(&mut c, "bull:q:");
    }
    // A sub-key whose job is gone, first in db 0 only: seen there now.
    call(&mut c, &["SELECT", "0"]);
    call(&mut c, &["RPUSH", "bull:q:gone:logs", "x"]);
    sweep(&mut c, &[]);
    pause_past_orphan_age();
    // The same name appears in db 1 later: its first look there must not inherit db 0's.
    call(&mut c, &["SELECT", "1"]);
    call(&mut c, &["RPUSH", "bull:q:gone:logs", "x"]);
    let report = sweep(&mut c, &[]);
    assert_eq!(map_int(&report, "keys_deleted"), 0, "{report:?}");
    assert!(
        exists(&mut c, "bull:q:gone:logs"),
        "db 1 inherited db 0's sighting"
    );
    // db 0's own observation has matured.
    call(&mut c, &["SELECT", "0"]);
    let report = sweep(&mut c, &[]);
    assert_eq!(map_int(&report, "keys_deleted"), 1, "{report:?}");
    assert!(!exists(&mut c, "bull:q:gone:logs"));
    call(&mut c, &["SELECT", "1"]);
    pause_past_orphan_age();
    sweep(&mut c, &[]);
    assert!(!exists(&mut c, "bull:q:gone:logs"));
}

#[test]
fn a_wait_list_too_long_to_search_in_one_step_is_doubt() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    for base in ["bull:long:", "bull:short:"] {
        bullmq_queue(&mut c, base);
        restore_finished_job(&mut c, &format!("{base}5"), now_ms() - DAY_MS);
    }
    // 300k waiting jobs: searching them for one id takes several milliseconds, more than
    // any step of the default budget may hold the server.
    let _: () = redis::cmd("EVAL")
        .arg(
            "for i = 1, 300000, 1000 do local t = {} \
             for j = i, i + 999 do t[#t + 1] = 'w' .. j end \
             redis.call('RPUSH', KEYS[1], unpack(t)) end",
        )
        .arg(1)
        .arg("bull:long:wait")
        .query(&mut c)
        .expect("EVAL");
    call(&mut c, &["RPUSH", "bull:short:wait", "w1"]);
    for _ in 0..2 {
        sweep(&mut c, &[]);
        pause_past_orphan_age();
    }
    sweep(&mut c, &[]);
    assert!(
        exists(&mut c, "bull:long:5"),
        "the check searched a 300k-element wait list in one step"
    );
    assert!(!exists(&mut c, "bull:short:5"));
}
