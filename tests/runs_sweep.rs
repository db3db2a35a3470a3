//! `runs` rules and half-seen data: a `:data` without its `:index`, an `:index` without its
//! `:data`, and entries only one of the two keys holds are removed only after the module has
//! seen them unreferenced for the rule's `max_age`, on its own clock, across passes.

mod common;

use std::time::{Duration, Instant};

use common::{
    call, dataset_digest, exists, map_int, now_ms, sweep, wait_until, write_policy, Server,
    ServerOpts,
};
use redis::{Connection, Value};

fn zscore_present(c: &mut Connection, key: &str, member: &str) -> bool {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query::<Option<String>>(c)
        .expect("ZSCORE")
        .is_some()
}

fn hexists(c: &mut Connection, key: &str, field: &str) -> bool {
    redis::cmd("HEXISTS")
        .arg(key)
        .arg(field)
        .query::<i64>(c)
        .expect("HEXISTS")
        == 1
}

/// Every shape of half-written run set, under bases a broad `"*"` rule governs. Scores lie
/// an hour ahead so no run is *expired* (by score) while a test runs: only orphan handling
/// could remove anything.
fn half_written(c: &mut Connection) {
    let future = (now_ms() + 3_600_000).to_string();
    // Data first (the index comes in the writer's next command), and an unrelated hash
    // whose name happens to end in `:data`.
    call(c, &["HSET", "app:{a}:data", "r1", "{}"]);
    call(c, &["HSET", "session:42:data", "user", "ann"]);
    // Index first.
    call(c, &["ZADD", "app:{b}:index", &future, "r1"]);
    // An indexed id whose document is not written yet.
    call(c, &["ZADD", "app:{c}:index", &future, "r1", &future, "r2"]);
    call(c, &["HSET", "app:{c}:data", "r1", "{}"]);
    // A document whose index entry is not written yet.
    call(c, &["ZADD", "app:{d}:index", &future, "r1"]);
    call(c, &["HSET", "app:{d}:data", "r1", "{}", "r2", "{}"]);
}

/// The four leftovers of `half_written`, each present or not.
fn leftovers(c: &mut Connection) -> [bool; 5] {
    [
        exists(c, "app:{a}:data"),
        exists(c, "session:42:data"),
        exists(c, "app:{b}:index"),
        zscore_present(c, "app:{c}:index", "r2"),
        hexists(c, "app:{d}:data", "r2"),
    ]
}

fn policy(max_age: &str) -> String {
    format!(r#"{{"rules":[{{"name":"runs","match":"*","runs":{{"max_age":"{max_age}"}}}}]}}"#)
}

#[test]
fn half_written_run_sets_survive_sweeps() {
    let server = Server::start_paused(Some(&policy("1h")));
    let mut c = server.conn();
    half_written(&mut c);
    let before = dataset_digest(&mut c);
    for _ in 0..3 {
        let report = sweep(&mut c, &[]);
        assert_eq!(map_int(&report, "entries_trimmed"), 0, "{report:?}");
        assert_eq!(map_int(&report, "keys_deleted"), 0, "{report:?}");
    }
    assert_eq!(leftovers(&mut c), [true; 5]);
    assert_eq!(
        dataset_digest(&mut c),
        before,
        "a sweep changed half-seen data"
    );
}

#[test]
fn half_written_run_sets_survive_the_background_sweeper_and_the_new_key_path() {
    let dir = common::scratch_dir("runs-bg");
    let path = write_policy(&dir, &policy("1h"));
    let server = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&path)
            .module_arg("pass-interval-s", "0")
            .config("hz", "50"),
    )
    .expect("server");
    let mut c = server.conn();
    let passes = |c: &mut Connection| {
        let stats: Value = redis::cmd("RETENTION.STATS")
            .arg("GET")
            .query(c)
            .expect("STATS");
        map_int(&stats, "passes")
    };
    // Written one command at a time: the new-key path sees each key on the next loop
    // iteration, before its other half exists.
    half_written(&mut c);
    let before = dataset_digest(&mut c);
    let start = passes(&mut c);
    assert!(
        wait_until(Duration::from_secs(15), || passes(&mut c) >= start + 3),
        "no background passes"
    );
    assert_eq!(leftovers(&mut c), [true; 5]);
    assert_eq!(
        dataset_digest(&mut c),
        before,
        "the sweeper changed half-seen data"
    );
}

#[test]
fn leftovers_go_only_after_being_seen_unreferenced_for_max_age() {
    const AGE_MS: u64 = 400;
    let server = Server::start_paused(Some(&policy("400ms")));
    let mut c = server.conn();
    half_written(&mut c);
    // Older than max_age already, but never seen: the first look only starts the clock.
    std::thread::sleep(Duration::from_millis(AGE_MS + 100));
    let first_look = Instant::now();
    let report = sweep(&mut c, &[]);
    assert_eq!(map_int(&report, "entries_trimmed"), 0, "{report:?}");
    assert_eq!(leftovers(&mut c), [true; 5]);
    // A second look before max_age has passed since the first changes nothing either.
    sweep(&mut c, &[]);
    if first_look.elapsed() < Duration::from_millis(AGE_MS) {
        assert_eq!(leftovers(&mut c), [true; 5]);
    }
    // A sighting of the missing half resets the clock of `app:{a}:data`.
    call(&mut c, &["ZADD", "app:{a}:index", "+inf", "r1"]);
    sweep(&mut c, &[]);
    call(&mut c, &["DEL", "app:{a}:index"]);
    std::thread::sleep(Duration::from_millis(AGE_MS + 100));
    let report = sweep(&mut c, &[]);
    // Seen unreferenced across max_age: gone. `app:{a}:data` was seen referenced since.
    assert_eq!(leftovers(&mut c), [true, false, false, false, false]);
    assert_eq!(
        map_int(&report, "entries_trimmed"),
        1 + 1 + 1 + 1,
        "{report:?}"
    );
    // The other halves are untouched.
    assert!(hexists(&mut c, "app:{c}:data", "r1"));
    assert!(zscore_present(&mut c, "app:{d}:index", "r1"));
    std::thread::sleep(Duration::from_millis(AGE_MS + 100));
    sweep(&mut c, &[]);
    assert!(!exists(&mut c, "app:{a}:data"));
}

#[test]
fn many_leftovers_of_one_set_go_together_once_watched_for_max_age() {
    const AGE_MS: u64 = 400;
    let server = Server::start_paused(Some(&policy("400ms")));
    let mut c = server.conn();
    let future = now_ms() + 3_600_000;
    let a = "runs:{a}";
    let mut p = redis::pipe();
    for i in 0..600 {
        p.cmd("ACTIVERUNS.ADD")
            .arg(a)
            .arg(format!("r{i}"))
            .arg("{}")
            .arg("SCORE")
            .arg(future - i)
            .ignore();
    }
    // More strays than one reconcile step looks at, holes, and a data hash alone.
    for i in 0..300 {
        p.hset(format!("{a}:data"), format!("stray{i}"), "{}")
            .ignore();
    }
    for i in 0..5 {
        p.zadd(format!("{a}:index"), format!("hole{i}"), future)
            .ignore();
    }
    for i in 0..50 {
        p.hset("runs:{b}:data", format!("o{i}"), "{}").ignore();
    }
    let _: () = p.query(&mut c).expect("populate");
    let before = dataset_digest(&mut c);
    let first = sweep(&mut c, &["DRYRUN"]);
    assert_eq!(map_int(&first, "entries_trimmed"), 0, "{first:?}");
    std::thread::sleep(Duration::from_millis(AGE_MS + 100));
    // A dry run's looks count: the second one finds everything watched long enough.
    let dry = sweep(&mut c, &["DRYRUN"]);
    assert_eq!(map_int(&dry, "entries_trimmed"), 300 + 5 + 50, "{dry:?}");
    assert_eq!(dataset_digest(&mut c), before, "a dry run changes nothing");
    let report = sweep(&mut c, &[]);
    assert_eq!(
        map_int(&report, "entries_trimmed"),
        300 + 5 + 50,
        "{report:?}"
    );
    assert_eq!(map_int(&report, "runs_expired"), 0, "{report:?}");
    let count: i64 = redis::cmd("ACTIVERUNS.COUNT")
        .arg(a)
        .query(&mut c)
        .expect("COUNT");
    let hlen: i64 = redis::cmd("HLEN")
        .arg(format!("{a}:data"))
        .query(&mut c)
        .expect("HLEN");
    assert_eq!((count, hlen), (600, 600));
    assert!(!exists(&mut c, "runs:{b}:data"));
}
