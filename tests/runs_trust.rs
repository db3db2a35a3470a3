//! What a run-set command may be trusted with: reads change nothing, every key a command
//! touches is checked against the caller's key rights (not only the base it names), a
//! keyset walk past a deleted marker inside a long run of equal scores lands exactly, a dry
//! run of a `runs` rule counts exactly and changes nothing, and healthy run sets do not fill
//! the table of watched orphans.

mod common;

use redis::{Connection, Value};

use common::*;

fn page(c: &mut Connection, base: &str, page: u64, size: u64, order: &str) -> (i64, Vec<String>) {
    let (p, s) = (page.to_string(), size.to_string());
    page_ids(&call(c, &["ACTIVERUNS.PAGE", base, &p, &s, order]), 2)
}

fn after(
    c: &mut Connection,
    base: &str,
    score: &str,
    id: &str,
    size: u64,
    order: &str,
) -> Vec<String> {
    let s = size.to_string();
    page_ids(
        &call(c, &["ACTIVERUNS.AFTER", base, score, id, &s, order]),
        3,
    )
    .1
}

fn acl_setuser(c: &mut Connection, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER"];
    args.extend_from_slice(rules);
    call(c, &args);
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn error_of(c: &mut Connection, args: &[&str]) -> String {
    match try_call(c, args) {
        Ok(v) => panic!("{args:?} should be refused, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Reads never write.

#[test]
fn a_reader_paging_a_name_that_is_not_a_run_set_changes_nothing() {
    let server = Server::start_paused(None);
    let mut admin = server.conn();
    // An application's own sorted set that happens to be named like a run set's index.
    call(
        &mut admin,
        &["ZADD", "search:index", "1", "a", "2", "b", "3", "c"],
    );
    // Redis 7.0 cannot put module commands in ACL categories: granted by name.
    acl_setuser(
        &mut admin,
        &[
            "dash",
            "on",
            "nopass",
            "~*",
            "+activeruns.page",
            "+activeruns.after",
        ],
    );
    let before = server.digest();
    let mut dash = login(&server, "dash");
    let paged = page(&mut dash, "search", 1, 10, "DESC");
    let walked = [
        after(&mut dash, "search", "+inf", "", 10, "DESC"),
        after(&mut dash, "search", "-inf", "", 10, "ASC"),
    ];
    assert_eq!(zmembers(&mut admin, "search:index"), ["a", "b", "c"]);
    assert_eq!(server.digest(), before, "a read changed the dataset");
    assert_eq!(paged, (3, vec![]), "no document, so no run to show");
    assert_eq!(walked, [Vec::<String>::new(), Vec::new()]);
}

/// 20 runs r00..r19 scored 1000..1019, four of which lost their document to another writer.
fn runs_with_holes(c: &mut Connection, base: &str) {
    for i in 0..20 {
        let (id, score) = (format!("r{i:02}"), (1000 + i).to_string());
        call(c, &["ACTIVERUNS.ADD", base, &id, "{}", "SCORE", &score]);
    }
    call(
        c,
        &["HDEL", &format!("{base}:data"), "r19", "r17", "r16", "r02"],
    );
}

#[test]
fn a_page_over_holes_skips_them_fills_up_and_changes_nothing() {
    let master = Server::start_paused(None);
    let replica = Server::start_paused(None);
    attach_replica(&master, &replica);
    let mut c = master.conn();
    let b = "runs:{h}";
    runs_with_holes(&mut c, b);
    wait_replica_caught_up(&master, &replica);
    let before = master.digest();
    // Three holes in the first window of five: the page reads on and is still full.
    let (total, ids) = page(&mut c, b, 1, 5, "DESC");
    assert_eq!(ids, ["r18", "r15", "r14", "r13", "r12"]);
    assert_eq!(
        total, 20,
        "the holes stay in the index until a write removes them"
    );
    let (_, ids) = page(&mut c, b, 1, 100, "ASC");
    assert_eq!(ids.len(), 16);
    assert!(!ids.contains(&"r02".to_string()));
    assert_eq!(after(&mut c, b, "1020", "x", 2, "DESC"), ["r18", "r15"]);
    assert_eq!(after(&mut c, b, "1001", "r01", 2, "ASC"), ["r03", "r04"]);
    // A long streak of holes (no document at all past r00 but three).
    let s = "runs:{streak}";
    for i in 0..400 {
        let (id, score) = (format!("s{i:03}"), (5000 + i).to_string());
        call(&mut c, &["ACTIVERUNS.ADD", s, &id, "{}", "SCORE", &score]);
    }
    let mut holes: Vec<String> = (1..397).map(|i| format!("s{i:03}")).collect();
    holes.insert(0, format!("{s}:data"));
    holes.insert(0, "HDEL".to_string());
    let holes: Vec<&str> = holes.iter().map(String::as_str).collect();
    call(&mut c, &holes);
    wait_replica_caught_up(&master, &replica);
    let before_streak = master.digest();
    assert_eq!(page(&mut c, s, 1, 3, "DESC").1, ["s399", "s398", "s397"]);
    assert_eq!(page(&mut c, s, 1, 2, "ASC").1, ["s000", "s397"]);
    assert_eq!(after(&mut c, s, "5000", "s000", 1, "ASC"), ["s397"]);
    assert_eq!(after(&mut c, s, "5397", "s397", 1, "DESC"), ["s000"]);
    assert_eq!(master.digest(), before_streak, "a read changed the dataset");
    assert_ne!(before, before_streak);
    // Nothing was replicated either: the replica still equals the master.
    assert_same_data(&master, &replica, &[0], "after reads over holes");
}

// ---------------------------------------------------------------------------------------
// Every key a command touches is checked against the caller's key rights.

const EVERY_COMMAND: [&str; 8] = [
    "+activeruns.add",
    "+activeruns.del",
    "+activeruns.get",
    "+activeruns.page",
    "+activeruns.after",
    "+activeruns.count",
    "+activeruns.expire",
    "+activeruns.migrate",
];

/// A user with `patterns` who may run every ACTIVERUNS command (granted by name: Redis 7.0
/// cannot put module commands in ACL categories).
fn runs_user(c: &mut Connection, name: &str, patterns: &[&str]) {
    let mut rules = vec![name, "on", ">pw"];
    rules.extend_from_slice(patterns);
    rules.extend_from_slice(&EVERY_COMMAND);
    acl_setuser(c, &rules);
}

/// Each ACTIVERUNS command on `base` (MIGRATE from `legacy`), the readers first.
fn reads_of(base: &str) -> Vec<Vec<String>> {
    [
        vec!["ACTIVERUNS.PAGE", base, "1", "10"],
        vec!["ACTIVERUNS.AFTER", base, "+inf", "", "10"],
        vec!["ACTIVERUNS.GET", base, "r1"],
        vec!["ACTIVERUNS.COUNT", base],
    ]
    .iter()
    .map(|args| args.iter().map(|a| a.to_string()).collect())
    .collect()
}

fn writes_of(base: &str, legacy: &str) -> Vec<Vec<String>> {
    [
        vec!["ACTIVERUNS.ADD", base, "r2", "{}"],
        vec!["ACTIVERUNS.DEL", base, "r1"],
        vec!["ACTIVERUNS.EXPIRE", base, "1ms"],
        vec!["ACTIVERUNS.MIGRATE", legacy, base],
    ]
    .iter()
    .map(|args| args.iter().map(|a| a.to_string()).collect())
    .collect()
}

fn words(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A run set `base` with one old run `r1`, and a legacy hash `legacy` to migrate.
fn run_set_and_legacy(c: &mut Connection, base: &str, legacy: &str) {
    call(
        c,
        &["ACTIVERUNS.ADD", base, "r1", r#"{"n":1}"#, "SCORE", "1000"],
    );
    call(c, &["HSET", legacy, "l1", "{}"]);
}

#[test]
fn a_user_allowed_only_the_base_key_may_not_touch_the_run_set_behind_it() {
    let server = Server::start_paused(None);
    let mut admin = server.conn();
    run_set_and_legacy(&mut admin, "search", "legacy");
    // Exactly the names the commands declare, nothing under them.
    runs_user(&mut admin, "exact", &["~search", "~legacy"]);
    call(&mut admin, &["ACL", "LOG", "RESET"]);
    let mut exact = login(&server, "exact");
    let commands = reads_of("search")
        .into_iter()
        .chain(writes_of("search", "legacy"));
    assert_refused_naming(
        &server,
        &mut admin,
        &mut exact,
        "exact",
        commands,
        "search:index",
    );
}

#[test]
fn a_user_reading_the_run_set_keys_may_read_but_not_write() {
    let server = Server::start_paused(None);
    let mut admin = server.conn();
    run_set_and_legacy(&mut admin, "runs:x", "runs:legacy");
    // The declared keys in full; the keys behind the base for reading only.
    runs_user(
        &mut admin,
        "reader",
        &["~runs:x", "~runs:legacy", "%R~runs:x:*"],
    );
    call(&mut admin, &["ACL", "LOG", "RESET"]);
    let before = server.digest();
    let mut reader = login(&server, "reader");
    let replies: Vec<Value> = reads_of("runs:x")
        .iter()
        .map(|args| call(&mut reader, &words(args)))
        .collect();
    assert_eq!(page_ids(&replies[0], 2), (1, strings(&["r1"])));
    assert_eq!(page_ids(&replies[1], 3), (1, strings(&["r1"])));
    assert_eq!(replies[2], Value::BulkString(br#"{"n":1}"#.to_vec()));
    assert_eq!(replies[3], Value::Int(1));
    assert_eq!(server.digest(), before, "a read changed data");
    let writes = writes_of("runs:x", "runs:legacy");
    assert_refused_naming(
        &server,
        &mut admin,
        &mut reader,
        "reader",
        writes,
        "runs:x:index",
    );
    // A legacy hash the user may read but not delete stays where it is (the server may
    // refuse first: MIGRATE declares the legacy hash as one of its keys).
    runs_user(
        &mut admin,
        "keeper",
        &["~runs:y", "~runs:y:*", "%R~runs:legacy"],
    );
    let mut keeper = login(&server, "keeper");
    let e = error_of(
        &mut keeper,
        &["ACTIVERUNS.MIGRATE", "runs:legacy", "runs:y"],
    );
    assert!(e.contains("NOPERM"), "{e}");
    assert_eq!(server.digest(), before);
    // Writing needs no read right: a write-only user adds runs, and cannot page them.
    runs_user(&mut admin, "writer", &["~runs:x", "%W~runs:x:*"]);
    let mut writer = login(&server, "writer");
    let added = call(&mut writer, &["ACTIVERUNS.ADD", "runs:x", "r2", "{}"]);
    assert_eq!(added, Value::Int(1));
    let e = error_of(&mut writer, &["ACTIVERUNS.PAGE", "runs:x", "1", "10"]);
    assert!(e.contains("NOPERM") && e.contains("runs:x:index"), "{e}");
}

#[test]
fn a_read_only_user_of_every_run_key_may_page_but_not_add() {
    let server = Server::start_paused(None);
    let mut admin = server.conn();
    run_set_and_legacy(&mut admin, "runs:x", "runs:legacy");
    runs_user(&mut admin, "viewer", &["%R~runs:*"]);
    let before = server.digest();
    let mut viewer = login(&server, "viewer");
    // needs read-only key specs: the server itself checks the base against the spec's
    // flags, and a spec declared read-write refuses a read-only user before the module runs.
    let replies: Vec<Value> = reads_of("runs:x")
        .iter()
        .map(|args| call(&mut viewer, &words(args)))
        .collect();
    assert_eq!(page_ids(&replies[0], 2), (1, strings(&["r1"])));
    assert_eq!(replies[3], Value::Int(1));
    let e = error_of(&mut viewer, &["ACTIVERUNS.ADD", "runs:x", "r2", "{}"]);
    assert!(e.contains("NOPERM"), "{e}");
    assert_eq!(server.digest(), before);
}

// ---------------------------------------------------------------------------------------
// AFTER past a deleted marker among many equal scores.

/// `n` runs sharing one score, the way MIGRATE without SCOREFIELD writes them (scored with
/// the migration time), plus one older and one newer run. Returns the shared score.
fn migrated_ties(c: &mut Connection, base: &str, n: u64) -> String {
    let legacy = format!("{base}:legacy");
    // Ids of different lengths (t1, t10, t100, ...): their byte order is not numeric order.
    let _: () = redis::cmd("EVAL")
        .arg(
            "for i = 0, tonumber(ARGV[1]) - 1, 1000 do local t = {} \
             for j = i, math.min(i + 999, tonumber(ARGV[1]) - 1) do \
             t[#t + 1] = 't' .. j; t[#t + 1] = '{}' end \
             redis.call('HSET', KEYS[1], unpack(t)) end",
        )
        .arg(1)
        .arg(&legacy)
        .arg(n)
        .query(c)
        .expect("EVAL");
    let reply = call(c, &["ACTIVERUNS.MIGRATE", &legacy, base]);
    assert_eq!(map_int(&reply, "score_now"), n as i64);
    call(c, &["ACTIVERUNS.ADD", base, "older", "{}", "SCORE", "10"]);
    let newer = (now_ms() + 3_600_000).to_string();
    call(c, &["ACTIVERUNS.ADD", base, "newer", "{}", "SCORE", &newer]);
    redis::cmd("ZSCORE")
        .arg(format!("{base}:index"))
        .arg("t0")
        .query(c)
        .expect("ZSCORE")
}

/// The whole index as (score, id), in ZRANGE order.
fn index_entries(c: &mut Connection, base: &str) -> Vec<(i64, Vec<u8>)> {
    let flat: Vec<(Vec<u8>, i64)> = redis::cmd("ZRANGE")
        .arg(format!("{base}:index"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(c)
        .expect("ZRANGE");
    flat.into_iter().map(|(id, score)| (score, id)).collect()
}

/// What AFTER must answer, computed here: the `size` entries past (score, marker).
fn expected_after(
    all: &[(i64, Vec<u8>)],
    score: i64,
    marker: &str,
    size: usize,
    asc: bool,
) -> Vec<String> {
    let position = (score, marker.as_bytes().to_vec());
    let past = |e: &&(i64, Vec<u8>)| match asc {
        true => **e > position,
        false => **e < position,
    };
    let ids = |e: &(i64, Vec<u8>)| String::from_utf8(e.1.clone()).expect("id");
    match asc {
        true => all.iter().filter(past).take(size).map(ids).collect(),
        false => all.iter().rev().filter(past).take(size).map(ids).collect(),
    }
}

#[test]
fn after_a_deleted_marker_among_many_ties_lands_exactly() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let b = "runs:{ties}";
    let score = migrated_ties(&mut c, b, 100_000);
    // Markers that left: in the middle, next to a neighbour that left too, at both ends.
    call(
        &mut c,
        &["ACTIVERUNS.DEL", b, "t50000", "t50001", "t0", "t99999"],
    );
    let all = index_entries(&mut c, b);
    assert_eq!(all.len(), 100_000 - 4 + 2);
    let tie: i64 = score.parse().expect("score");
    for marker in [
        "t50000", "t50001", "t0", "t99999", "t5", "t49999x", "a", "u", "t",
    ] {
        for (order, asc) in [("ASC", true), ("DESC", false)] {
            for size in [1, 7, 50] {
                let want = expected_after(&all, tie, marker, size, asc);
                let got = after(&mut c, b, &score, marker, size as u64, order);
                assert_eq!(got, want, "AFTER {score} {marker} {size} {order}");
            }
        }
    }
    // A marker that is still there answers the same way.
    let want = expected_after(&all, tie, "t70000", 5, false);
    assert_eq!(after(&mut c, b, &score, "t70000", 5, "DESC"), want);
    assert_eq!(want.len(), 5);
}

// ---------------------------------------------------------------------------------------
// A dry run of a `runs` rule.

const RUNS_1H: &str = r#"{"rules":[{"name":"runs","match":"runs:*","runs":{"max_age":"1h"}}]}"#;

/// `old` runs two days old (ten to a score), and `fresh` runs a minute old, in `base`.
fn old_and_fresh_runs(c: &mut Connection, base: &str, old: u64, fresh: u64) {
    let _: () = redis::cmd("EVAL")
        .arg(
            "local function put(n, first, tag, score_of) \
               for i = 0, n - 1, 500 do local z, h = {}, {} \
                 for j = i, math.min(i + 499, n - 1) do \
                   z[#z + 1] = score_of(j); z[#z + 1] = tag .. j \
                   h[#h + 1] = tag .. j; h[#h + 1] = '{}' end \
                 redis.call('ZADD', KEYS[1], unpack(z)) \
                 redis.call('HSET', KEYS[2], unpack(h)) end end \
             local now = tonumber(ARGV[3]) \
             put(tonumber(ARGV[1]), 0, 'old', function(j) return now - 172800000 + math.floor(j / 10) end) \
             put(tonumber(ARGV[2]), 0, 'fresh', function(j) return now - 60000 end)",
        )
        .arg(2)
        .arg(format!("{base}:index"))
        .arg(format!("{base}:data"))
        .arg(old)
        .arg(fresh)
        .arg(now_ms())
        .query(c)
        .expect("EVAL");
}

#[test]
fn a_dry_run_counts_every_expired_run_and_changes_nothing() {
    let server = Server::start_paused(Some(RUNS_1H));
    let mut c = server.conn();
    old_and_fresh_runs(&mut c, "runs:{big}", 20_000, 300);
    old_and_fresh_runs(&mut c, "runs:{small}", 7, 3);
    let before = server.digest();
    let dry = sweep(&mut c, &["DRYRUN"]);
    assert_eq!(map_int(&dry, "runs_expired"), 20_000 + 7, "{dry:?}");
    assert_eq!(server.digest(), before, "a dry run changed data");
    let real = sweep(&mut c, &[]);
    assert_eq!(map_int(&real, "runs_expired"), 20_000 + 7, "{real:?}");
    let count = call(&mut c, &["ACTIVERUNS.COUNT", "runs:{big}"]);
    assert_eq!(count, Value::Int(300));
    assert_eq!(call(&mut c, &["HLEN", "runs:{big}:data"]), Value::Int(300));
}

// ---------------------------------------------------------------------------------------
// Healthy run sets do not fill the table of watched orphans.

const RUNS_AND_JOBS: &str = r#"{"rules":[
  {"name":"runs","match":"runs:*","runs":{"max_age":"1h"}},
  {"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq","orphan_age":"400ms"}}]}"#;

/// `n` run sets `runs:{i}` of one fresh run each, whose two keys agree.
fn healthy_run_sets(c: &mut Connection, n: u64) {
    let _: () = redis::cmd("EVAL")
        .arg(
            "local now = tonumber(ARGV[2]) \
             for i = 1, tonumber(ARGV[1]) do local b = 'runs:{' .. i .. '}' \
               redis.call('ZADD', b .. ':index', now, 'r') \
               redis.call('HSET', b .. ':data', 'r', '{}') end",
        )
        .arg(0)
        .arg(n)
        .arg(now_ms())
        .query(c)
        .expect("EVAL");
}

/// A finished BullMQ job hash no state set refers to, in a queue `bull:q`.
fn orphan_job(c: &mut Connection, key: &str) {
    call(c, &["HSET", "bull:q:meta", "version", "bullmq:5.81.5"]);
    call(c, &["SET", "bull:q:id", "1000"]);
    let finished = (now_ms() - 86_400_000).to_string();
    let fields = [
        "name",
        "n",
        "data",
        "{}",
        "opts",
        "{}",
        "timestamp",
        &finished,
        "processedOn",
        &finished,
        "finishedOn",
        &finished,
    ];
    let mut args = vec!["HSET", key];
    args.extend_from_slice(&fields);
    call(c, &args);
}

#[test]
fn healthy_run_sets_leave_room_to_watch_orphans() {
    let server = Server::start_paused(Some(RUNS_AND_JOBS));
    let mut c = server.conn();
    // More sets than the table holds (100,000 observations).
    healthy_run_sets(&mut c, 150_000);
    let first = sweep(&mut c, &[]);
    assert_eq!(map_int(&first, "entries_trimmed"), 0, "{first:?}");
    let watched_after_healthy_pass = stat(&mut c, "orphans_watched");
    // An orphan that appears afterwards goes after two looks orphan_age apart.
    orphan_job(&mut c, "bull:q:9");
    assert_removed_at_the_second_look(&mut c, "bull:q:9");
    assert_eq!(
        watched_after_healthy_pass, 0,
        "healthy run sets were watched"
    );
    assert_eq!(stat(&mut c, "orphans_watched"), 0);
    assert_eq!(stat(&mut c, "orphans_watch_dropped"), 0);
    assert_eq!(
        info_i64(&mut c, "retention", "retention_orphans_watch_dropped"),
        0
    );
    assert_eq!(
        call(&mut c, &["ACTIVERUNS.COUNT", "runs:{77}"]),
        Value::Int(1),
        "a healthy set was touched"
    );
}

#[test]
fn a_hole_seen_whole_again_starts_its_clock_over_and_a_clean_set_is_forgotten() {
    let policy = r#"{"rules":[{"name":"runs","match":"runs:*","runs":{"max_age":"1s"}}]}"#;
    let server = Server::start_paused(Some(policy));
    let mut c = server.conn();
    let (b, data) = ("runs:{s}", "runs:{s}:data");
    // Not expired while the test runs; "a-back" sorts before "z-gone" (equal scores).
    let future = (now_ms() + 3_600_000).to_string();
    for id in ["a-back", "r1", "z-gone"] {
        call(&mut c, &["ACTIVERUNS.ADD", b, id, "{}", "SCORE", &future]);
    }
    call(&mut c, &["HDEL", data, "a-back", "z-gone"]);
    let first = sweep(&mut c, &[]);
    assert_eq!(map_int(&first, "entries_trimmed"), 0, "{first:?}");
    // Its document comes back: the next walk sees it whole before it finds z-gone.
    call(&mut c, &["HSET", data, "a-back", "{}"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = sweep(&mut c, &[]);
    assert_eq!(map_int(&second, "entries_trimmed"), 1, "{second:?}");
    assert_eq!(zmembers(&mut c, &format!("{b}:index")), ["a-back", "r1"]);
    // Gone again: this look starts its clock, whatever the first look saw.
    call(&mut c, &["HDEL", data, "a-back"]);
    let third = sweep(&mut c, &[]);
    assert_eq!(map_int(&third, "entries_trimmed"), 0, "{third:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let fourth = sweep(&mut c, &[]);
    assert_eq!(map_int(&fourth, "entries_trimmed"), 1, "{fourth:?}");
    assert_eq!(zmembers(&mut c, &format!("{b}:index")), ["r1"]);
    // Whole again: nothing about the set is kept.
    sweep(&mut c, &[]);
    assert_eq!(stat(&mut c, "orphans_watched"), 0);
}

#[test]
fn a_flood_of_one_kind_does_not_starve_another() {
    let server = Server::start_paused(Some(RUNS_AND_JOBS));
    let mut c = server.conn();
    // One broken run set: 150,000 documents its index does not list (more than the table
    // holds), watched for the rule's hour before they may go.
    call(&mut c, &["ACTIVERUNS.ADD", "runs:{broken}", "r", "{}"]);
    let _: () = redis::cmd("EVAL")
        .arg(
            "for i = 0, 149999, 1000 do local t = {} \
             for j = i, i + 999 do t[#t + 1] = 's' .. j; t[#t + 1] = '{}' end \
             redis.call('HSET', KEYS[1], unpack(t)) end",
        )
        .arg(1)
        .arg("runs:{broken}:data")
        .query(&mut c)
        .expect("EVAL");
    sweep(&mut c, &[]);
    assert_eq!(
        stat(&mut c, "orphans_watched"),
        100_000,
        "the table is full"
    );
    // A queue orphan still gets its share: watched, and removed at its second look.
    orphan_job(&mut c, "bull:q:9");
    assert_removed_at_the_second_look(&mut c, "bull:q:9");
    // Every pass dropped the strays that found no place, and said so.
    let dropped = stat(&mut c, "orphans_watch_dropped");
    assert!(dropped >= 3 * 50_000, "{dropped}");
    assert_eq!(
        info_i64(&mut c, "retention", "retention_orphans_watch_dropped"),
        dropped
    );
    assert_eq!(
        call(&mut c, &["HLEN", "runs:{broken}:data"]),
        Value::Int(150_001)
    );
}

/// Sweeps (orphan_age apart) until `key` is gone, at most 3 times: it must go at the second
/// look, as an orphan does (the first look only starts its clock).
fn assert_removed_at_the_second_look(c: &mut Connection, key: &str) {
    let mut passes = 0;
    while exists(c, key) && passes < 3 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        sweep(c, &[]);
        passes += 1;
    }
    assert!(!exists(c, key), "the orphan outlived {passes} passes");
    assert_eq!(passes, 2, "removed at the second look");
}

/// Every one of `commands` run by `user` is refused with NOPERM naming `key`, nothing
/// changes, and ACL LOG has the denial.
fn assert_refused_naming(
    server: &Server,
    admin: &mut Connection,
    conn: &mut Connection,
    user: &str,
    commands: impl IntoIterator<Item = Vec<String>>,
    key: &str,
) {
    let before = server.digest();
    for args in commands {
        let e = error_of(conn, &words(&args));
        assert!(e.contains("NOPERM") && e.contains(key), "{args:?}: {e}");
    }
    assert_eq!(server.digest(), before, "a refused command changed data");
    let log = acl_log(admin);
    assert!(
        log.contains(&(user.to_string(), key.to_string())),
        "{log:?}"
    );
}
