//! ACTIVERUNS.* against a real server: replies, ordering, keyset paging, holes, MIGRATE,
//! EXPIRE and `runs` rules leaving no orphans, bad input, and replica/AOF equality.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    attach_replica, civil, dataset_digest, map_int, now_ms, wait_replica_caught_up, Rng, Server,
    ServerOpts,
};
use redis::{Connection, Value};

fn cmd(con: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
}

fn ok(con: &mut Connection, args: &[&str]) -> Value {
    cmd(con, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn int(con: &mut Connection, args: &[&str]) -> i64 {
    redis::from_redis_value(&ok(con, args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn err(con: &mut Connection, args: &[&str]) -> String {
    match cmd(con, args) {
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn add(con: &mut Connection, base: &str, id: &str, doc: &str, score: i64) -> i64 {
    int(
        con,
        &["ACTIVERUNS.ADD", base, id, doc, "SCORE", &score.to_string()],
    )
}

/// One run in a reply: id, document, score (when asked for).
type Row = (String, String, Option<i64>);

/// Parses `[total, [id, json, (score,) ...]]`.
fn rows_of(v: &Value, with_scores: bool) -> (i64, Vec<Row>) {
    let Value::Array(parts) = v else {
        panic!("expected [total, rows], got {v:?}")
    };
    assert_eq!(parts.len(), 2, "{v:?}");
    let total: i64 = redis::from_redis_value(&parts[0]).expect("total");
    let Value::Array(items) = &parts[1] else {
        panic!("rows: {v:?}")
    };
    let per = if with_scores { 3 } else { 2 };
    assert_eq!(items.len() % per, 0, "{v:?}");
    let rows = items
        .chunks(per)
        .map(|c| {
            let id: String = redis::from_redis_value(&c[0]).expect("id");
            let doc: String = redis::from_redis_value(&c[1]).expect("doc");
            let score = with_scores.then(|| redis::from_redis_value::<i64>(&c[2]).expect("score"));
            (id, doc, score)
        })
        .collect();
    (total, rows)
}

fn page(con: &mut Connection, base: &str, page: u64, size: u64, extra: &[&str]) -> (i64, Vec<Row>) {
    let (p, s) = (page.to_string(), size.to_string());
    let mut args = vec!["ACTIVERUNS.PAGE", base, &p, &s];
    args.extend_from_slice(extra);
    let with_scores = extra.iter().any(|e| e.eq_ignore_ascii_case("WITHSCORES"));
    rows_of(&ok(con, &args), with_scores)
}

fn after(
    con: &mut Connection,
    base: &str,
    score: &str,
    id: &str,
    size: u64,
    order: &str,
) -> (i64, Vec<Row>) {
    let s = size.to_string();
    rows_of(
        &ok(con, &["ACTIVERUNS.AFTER", base, score, id, &s, order]),
        true,
    )
}

fn ids(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|r| r.0.clone()).collect()
}

fn index_ids(con: &mut Connection, base: &str) -> BTreeSet<String> {
    redis::cmd("ZRANGE")
        .arg(format!("{base}:index"))
        .arg(0)
        .arg(-1)
        .query::<Vec<String>>(con)
        .expect("ZRANGE")
        .into_iter()
        .collect()
}

fn data_ids(con: &mut Connection, base: &str) -> BTreeSet<String> {
    redis::cmd("HKEYS")
        .arg(format!("{base}:data"))
        .query::<Vec<String>>(con)
        .expect("HKEYS")
        .into_iter()
        .collect()
}

/// The two keys agree: every indexed run has a document and no document is orphaned.
fn assert_consistent(con: &mut Connection, base: &str) {
    assert_eq!(
        index_ids(con, base),
        data_ids(con, base),
        "{base}: index and data disagree"
    );
}

fn server() -> Server {
    Server::start_paused(None)
}

#[test]
fn add_get_count_del() {
    let s = server();
    let mut c = s.conn();
    let b = "runs:active:{w1}:p1";
    assert_eq!(add(&mut c, b, "r1", r#"{"n":1}"#, 1000), 1);
    assert_eq!(add(&mut c, b, "r2", r#"{"n":2}"#, 2000), 1);
    // Replacing keeps one run and takes the new score and document.
    assert_eq!(add(&mut c, b, "r1", r#"{"n":11}"#, 3000), 0);
    assert_eq!(int(&mut c, &["ACTIVERUNS.COUNT", b]), 2);
    let doc: String = redis::from_redis_value(&ok(&mut c, &["ACTIVERUNS.GET", b, "r1"])).unwrap();
    assert_eq!(doc, r#"{"n":11}"#);
    assert_eq!(ok(&mut c, &["ACTIVERUNS.GET", b, "nope"]), Value::Nil);
    assert_eq!(
        redis::cmd("ZSCORE")
            .arg(format!("{b}:index"))
            .arg("r1")
            .query::<i64>(&mut c)
            .unwrap(),
        3000
    );
    // Without SCORE the start time is the server's clock.
    let before = now_ms();
    assert_eq!(int(&mut c, &["ACTIVERUNS.ADD", b, "r3", "{}"]), 1);
    let score: i64 = redis::cmd("ZSCORE")
        .arg(format!("{b}:index"))
        .arg("r3")
        .query(&mut c)
        .unwrap();
    assert!(
        score >= before - 1000 && score <= now_ms() + 1000,
        "{score}"
    );
    // DEL counts runs removed; duplicates and unknown ids count once / not at all.
    assert_eq!(int(&mut c, &["ACTIVERUNS.DEL", b, "r1", "r1", "ghost"]), 1);
    assert_eq!(int(&mut c, &["ACTIVERUNS.DEL", b, "r2", "r3"]), 2);
    assert_eq!(int(&mut c, &["ACTIVERUNS.COUNT", b]), 0);
    assert_eq!(
        int(
            &mut c,
            &["EXISTS", &format!("{b}:index"), &format!("{b}:data")]
        ),
        0
    );
    assert_eq!(int(&mut c, &["ACTIVERUNS.COUNT", "never:seen"]), 0);
    assert_eq!(int(&mut c, &["ACTIVERUNS.DEL", "never:seen", "x"]), 0);
}

#[test]
fn page_orders_by_score_then_id() {
    let s = server();
    let mut c = s.conn();
    let b = "runs:{o}";
    // Equal scores sort by id bytes, as ZRANGE does; DESC is the exact reverse.
    for (id, score) in [
        ("a", 10),
        ("c", 20),
        ("b", 20),
        ("d", 20),
        ("e", 30),
        ("f", 5),
    ] {
        add(&mut c, b, id, &format!(r#"{{"id":"{id}"}}"#), score);
    }
    let (total, rows) = page(&mut c, b, 1, 10, &[]);
    assert_eq!(total, 6);
    assert_eq!(ids(&rows), ["e", "d", "c", "b", "a", "f"]);
    assert_eq!(rows[0].1, r#"{"id":"e"}"#);
    assert_eq!(rows[0].2, None);
    let (_, rows) = page(&mut c, b, 1, 10, &["ASC", "WITHSCORES"]);
    assert_eq!(ids(&rows), ["f", "a", "b", "c", "d", "e"]);
    assert_eq!(
        rows.iter().map(|r| r.2.unwrap()).collect::<Vec<_>>(),
        [5, 10, 20, 20, 20, 30]
    );
    let (_, rows) = page(&mut c, b, 2, 4, &["desc"]);
    assert_eq!(ids(&rows), ["a", "f"]);
    let (total, rows) = page(&mut c, b, 3, 4, &[]);
    assert_eq!((total, rows.len()), (6, 0));
    let (total, rows) = page(&mut c, b, 9_000_000_000_000_000_000, 1000, &[]);
    assert_eq!((total, rows.len()), (6, 0));
    let (total, rows) = page(&mut c, "runs:{o}:none", 1, 10, &[]);
    assert_eq!((total, rows.len()), (0, 0));
}

#[test]
fn after_walks_stably_while_runs_come_and_go() {
    let s = server();
    let mut c = s.conn();
    let b = "runs:{k}";
    for i in 0..30 {
        // Pairs of equal scores exercise the id tie-break.
        add(&mut c, b, &format!("r{i:02}"), "{}", 1000 + (i / 2) * 10);
    }
    let expected: Vec<String> = {
        let (_, rows) = page(&mut c, b, 1, 100, &[]);
        ids(&rows)
    };
    // Walk newest → oldest 7 at a time; meanwhile add newer runs and delete the marker.
    let mut seen = Vec::new();
    let (mut score, mut id) = ("+inf".to_string(), String::new());
    let mut round = 0;
    loop {
        let (_, rows) = after(&mut c, b, &score, &id, 7, "DESC");
        if rows.is_empty() {
            break;
        }
        let last = rows.last().unwrap().clone();
        seen.extend(ids(&rows));
        (score, id) = (last.2.unwrap().to_string(), last.0.clone());
        add(&mut c, b, &format!("new{round}"), "{}", 9_999_999);
        if round % 2 == 0 {
            // The marker itself disappears: the walk continues by value.
            assert_eq!(int(&mut c, &["ACTIVERUNS.DEL", b, &id]), 1);
        }
        round += 1;
    }
    assert_eq!(seen, expected, "no run skipped or repeated");
    // The same in ascending order, from the other end.
    let (_, all_asc) = page(&mut c, b, 1, 1000, &["ASC", "WITHSCORES"]);
    let mut seen = Vec::new();
    let (mut score, mut id) = ("-inf".to_string(), String::new());
    loop {
        let (_, rows) = after(&mut c, b, &score, &id, 4, "ASC");
        let Some(last) = rows.last().cloned() else {
            break;
        };
        seen.extend(rows);
        (score, id) = (last.2.unwrap().to_string(), last.0);
    }
    assert_eq!(seen, all_asc);
    // Positions that are not runs: ties at the position's score sort by id around it.
    let t = "runs:{k2}";
    for (id, score) in [("a", 10), ("b", 20), ("d", 20), ("f", 20), ("g", 30)] {
        add(&mut c, t, id, "{}", score);
    }
    let (_, rows) = after(&mut c, t, "20", "c", 3, "ASC");
    assert_eq!(ids(&rows), ["d", "f", "g"]);
    let (_, rows) = after(&mut c, t, "20", "c", 3, "DESC");
    assert_eq!(ids(&rows), ["b", "a"]);
    let (_, rows) = after(&mut c, t, "25", "", 10, "DESC");
    assert_eq!(ids(&rows), ["f", "d", "b", "a"]);
    let (_, rows) = after(&mut c, t, "-inf", "", 2, "DESC");
    assert!(rows.is_empty());
}

#[test]
fn deep_pages_and_many_equal_scores_follow_zrange_order() {
    let s = server();
    let mut c = s.conn();
    // Deep pages (past the iterator's skip limit) use ZRANGE's rank lookup.
    let b = "runs:{deep}";
    let mut p = redis::pipe();
    for i in 0..3000 {
        p.cmd("ACTIVERUNS.ADD")
            .arg(b)
            .arg(format!("r{i:05}"))
            .arg("{}")
            .arg("SCORE")
            .arg(i / 3)
            .ignore();
    }
    let _: () = p.query(&mut c).unwrap();
    let rev: Vec<String> = redis::cmd("ZREVRANGE")
        .arg(format!("{b}:index"))
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    let fwd: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{b}:index"))
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    for (page_no, size) in [(1, 7), (20, 50), (21, 50), (59, 51), (60, 50), (3, 1000)] {
        let start = (page_no as usize - 1) * size as usize;
        let (total, rows) = page(&mut c, b, page_no, size, &["WITHSCORES"]);
        assert_eq!(total, 3000);
        let want: Vec<String> = rev
            .iter()
            .skip(start)
            .take(size as usize)
            .cloned()
            .collect();
        assert_eq!(ids(&rows), want, "DESC page {page_no} size {size}");
        for r in &rows {
            let i: i64 = r.0[1..].parse().unwrap();
            assert_eq!(r.2, Some(i / 3));
        }
        let (_, rows) = page(&mut c, b, page_no, size, &["ASC"]);
        let want: Vec<String> = fwd
            .iter()
            .skip(start)
            .take(size as usize)
            .cloned()
            .collect();
        assert_eq!(ids(&rows), want, "ASC page {page_no} size {size}");
    }
    // Many runs with one score (a migration without start times): AFTER past a marker
    // that exists (rank lookup), that is gone (walk), near either end.
    let t = "runs:{ties}";
    let mut p = redis::pipe();
    for i in 0..300 {
        p.cmd("ACTIVERUNS.ADD")
            .arg(t)
            .arg(format!("t{i:03}"))
            .arg("{}")
            .arg("SCORE")
            .arg(5000)
            .ignore();
    }
    p.cmd("ACTIVERUNS.ADD")
        .arg(t)
        .arg("older")
        .arg("{}")
        .arg("SCORE")
        .arg(10)
        .ignore();
    p.cmd("ACTIVERUNS.ADD")
        .arg(t)
        .arg("newer")
        .arg("{}")
        .arg("SCORE")
        .arg(9000)
        .ignore();
    let _: () = p.query(&mut c).unwrap();
    let (_, rows) = after(&mut c, t, "5000", "t150", 3, "DESC");
    assert_eq!(ids(&rows), ["t149", "t148", "t147"]);
    let (_, rows) = after(&mut c, t, "5000", "t150", 3, "ASC");
    assert_eq!(ids(&rows), ["t151", "t152", "t153"]);
    let (_, rows) = after(&mut c, t, "5000", "t002", 4, "DESC");
    assert_eq!(ids(&rows), ["t001", "t000", "older"]);
    let (_, rows) = after(&mut c, t, "5000", "t298", 4, "ASC");
    assert_eq!(ids(&rows), ["t299", "newer"]);
    assert_eq!(int(&mut c, &["ACTIVERUNS.DEL", t, "t150"]), 1);
    let (_, rows) = after(&mut c, t, "5000", "t150", 2, "DESC");
    assert_eq!(ids(&rows), ["t149", "t148"]);
    let (_, rows) = after(&mut c, t, "5000", "t150", 2, "ASC");
    assert_eq!(ids(&rows), ["t151", "t152"]);
    let (_, rows) = after(&mut c, t, "5000", "t1505", 2, "ASC");
    assert_eq!(ids(&rows), ["t151", "t152"]);
    // Walking all of it by keyset visits every run once.
    let mut seen = Vec::new();
    let (mut score, mut id) = ("+inf".to_string(), String::new());
    loop {
        let (_, rows) = after(&mut c, t, &score, &id, 37, "DESC");
        let Some(last) = rows.last().cloned() else {
            break;
        };
        seen.extend(ids(&rows));
        (score, id) = (last.2.unwrap().to_string(), last.0);
    }
    let (_, all) = page(&mut c, t, 1, 1000, &[]);
    assert_eq!(seen, ids(&all));
    assert_eq!(seen.len(), 301);
}

#[test]
fn pages_leave_holes_out_and_change_nothing() {
    let m = server();
    let r = server();
    attach_replica(&m, &r);
    let mut c = m.conn();
    let b = "runs:{h}";
    for i in 0..20 {
        add(
            &mut c,
            b,
            &format!("r{i:02}"),
            &format!(r#"{{"i":{i}}}"#),
            1000 + i,
        );
    }
    // Another writer removed documents without touching the index.
    ok(
        &mut c,
        &["HDEL", &format!("{b}:data"), "r19", "r17", "r16", "r02"],
    );
    let before = dataset_digest(&mut c);
    let (total, rows) = page(&mut c, b, 1, 5, &["WITHSCORES"]);
    assert_eq!(
        ids(&rows),
        ["r18", "r15", "r14", "r13", "r12"],
        "a full page, no holes"
    );
    assert_eq!(
        total, 20,
        "the index keeps its holes: a read removes nothing"
    );
    let (total, rows) = page(&mut c, b, 1, 100, &["ASC"]);
    assert_eq!((total, rows.len()), (20, 16));
    ok(&mut c, &["HDEL", &format!("{b}:data"), "r10"]);
    let before_after = dataset_digest(&mut c);
    let (total, rows) = after(&mut c, b, "1011", "r11", 2, "DESC");
    assert_eq!(
        (total, ids(&rows)),
        (20, vec!["r09".to_string(), "r08".to_string()])
    );
    assert_eq!(dataset_digest(&mut c), before_after, "AFTER changed data");
    assert_ne!(before, before_after);
    // A data hash deleted wholesale: no runs to show, and the index stays.
    let b2 = "runs:{h2}";
    for i in 0..300 {
        add(&mut c, b2, &format!("x{i}"), "{}", i);
    }
    ok(&mut c, &["DEL", &format!("{b2}:data")]);
    let (total, rows) = page(&mut c, b2, 1, 10, &[]);
    assert_eq!((total, rows.len()), (300, 0));
    assert_eq!(int(&mut c, &["EXISTS", &format!("{b2}:index")]), 1);
    // EXPIRE is the writer that repairs.
    assert_eq!(int(&mut c, &["ACTIVERUNS.EXPIRE", b, "1ms"]), 20);
    int(&mut c, &["ACTIVERUNS.ADD", b, "fresh", "{}"]);
    int(&mut c, &["ACTIVERUNS.EXPIRE", b, "1h"]);
    assert_consistent(&mut c, b);
    wait_replica_caught_up(&m, &r);
    assert_eq!(dataset_digest(&mut c), dataset_digest(&mut r.conn()));
}

#[test]
fn expire_removes_old_runs_from_both_keys_and_leaves_no_orphans() {
    let s = server();
    let mut c = s.conn();
    let b = "runs:active:{e}:p";
    let now = now_ms();
    for i in 0..50 {
        // 0..25 are two hours old, 25..50 are fresh.
        let age = if i < 25 { 2 * 3_600_000 } else { 60_000 };
        add(&mut c, b, &format!("r{i}"), "{}", now - age);
    }
    // Leftovers of a client-side cleanup: JSON whose index entries were removed, and an
    // index entry without JSON.
    for i in 0..10 {
        ok(
            &mut c,
            &["HSET", &format!("{b}:data"), &format!("orphan{i}"), "{}"],
        );
    }
    ok(
        &mut c,
        &[
            "ZADD",
            &format!("{b}:index"),
            &(now - 1000).to_string(),
            "hole",
        ],
    );
    assert_eq!(int(&mut c, &["ACTIVERUNS.EXPIRE", b, "1h"]), 25);
    assert_consistent(&mut c, b);
    assert_eq!(int(&mut c, &["ACTIVERUNS.COUNT", b]), 25);
    assert_eq!(int(&mut c, &["ACTIVERUNS.EXPIRE", b, "1h"]), 0);
    assert_eq!(int(&mut c, &["ACTIVERUNS.EXPIRE", b, "1ms"]), 25);
    assert_eq!(
        int(
            &mut c,
            &["EXISTS", &format!("{b}:index"), &format!("{b}:data")]
        ),
        0
    );
    assert!(err(&mut c, &["ACTIVERUNS.EXPIRE", b, "soon"]).contains("max_age"));
    assert!(err(&mut c, &["ACTIVERUNS.EXPIRE", b, "-1h"]).contains("max_age"));
}

#[test]
fn runs_rule_sweep_expires_old_runs_and_leaves_leftovers_it_has_not_watched_for_max_age() {
    let policy = r#"{"rules":[{"name":"r","match":"runs:*","runs":{"max_age":"1h"}}]}"#;
    let s = Server::start_paused(Some(policy));
    let mut c = s.conn();
    let now = now_ms();
    let a = "runs:{a}";
    for i in 0..600 {
        let age = if i % 3 == 0 { 2 * 3_600_000 } else { 1000 };
        add(&mut c, a, &format!("r{i}"), r#"{"x":1}"#, now - age - i);
    }
    for i in 0..300 {
        ok(
            &mut c,
            &["HSET", &format!("{a}:data"), &format!("orphan{i}"), "{}"],
        );
    }
    for i in 0..5 {
        ok(
            &mut c,
            &[
                "ZADD",
                &format!("{a}:index"),
                &now.to_string(),
                &format!("hole{i}"),
            ],
        );
    }
    // Only JSON left of a set whose index the old cleanup emptied.
    let b = "runs:{b}";
    for i in 0..50 {
        ok(
            &mut c,
            &["HSET", &format!("{b}:data"), &format!("o{i}"), "{}"],
        );
    }
    // Everything old: both keys go.
    let d = "runs:{d}";
    for i in 0..20 {
        add(&mut c, d, &format!("r{i}"), "{}", now - 3 * 3_600_000);
    }
    // Not governed by the rule (no match): untouched.
    let other = "jobs:{a}";
    add(&mut c, other, "old", "{}", 1);

    let before = dataset_digest(&mut c);
    let dry = ok(&mut c, &["RETENTION.SWEEP", "DRYRUN"]);
    assert_eq!(map_int(&dry, "runs_expired"), 200 + 20);
    // Leftovers go only once seen without their other half for max_age (tests/runs_sweep.rs).
    assert_eq!(map_int(&dry, "entries_trimmed"), 0);
    assert_eq!(dataset_digest(&mut c), before, "a dry run changes nothing");

    let report = ok(&mut c, &["RETENTION.SWEEP"]);
    assert_eq!(map_int(&report, "runs_expired"), 220);
    assert_eq!(map_int(&report, "entries_trimmed"), 0);
    // Old runs left both keys; the leftovers are all still there.
    let (index, data) = (index_ids(&mut c, a), data_ids(&mut c, a));
    assert_eq!((index.len(), data.len()), (400 + 5, 400 + 300));
    let runs: BTreeSet<&String> = index.iter().filter(|id| id.starts_with('r')).collect();
    assert_eq!(runs.len(), 400);
    assert!(runs.iter().all(|id| data.contains(*id)));
    assert_eq!(int(&mut c, &["HLEN", &format!("{b}:data")]), 50);
    assert_eq!(
        int(
            &mut c,
            &["EXISTS", &format!("{d}:index"), &format!("{d}:data")]
        ),
        0
    );
    assert_eq!(int(&mut c, &["ACTIVERUNS.COUNT", other]), 1);
    // Nothing left to expire, nothing watched long enough.
    let again = ok(&mut c, &["RETENTION.SWEEP"]);
    assert_eq!(map_int(&again, "runs_expired"), 0);
    assert_eq!(map_int(&again, "entries_trimmed"), 0);
    // A key of the wrong type under a run base is skipped, not touched.
    ok(&mut c, &["SET", "runs:{z}:index", "x"]);
    let report = ok(&mut c, &["RETENTION.SWEEP"]);
    assert_eq!(map_int(&report, "skipped_wrong_type"), 1);
    assert_eq!(int(&mut c, &["EXISTS", "runs:{z}:index"]), 1);
}

#[test]
fn migrate_legacy_hash_into_itself() {
    let s = server();
    let mut c = s.conn();
    let b = "runs:active:{w}:p";
    let t0 = 1_714_566_600_250i64;
    ok(
        &mut c,
        &[
            "HSET",
            b,
            "ms",
            &format!(r#"{{"startedAt":{t0}}}"#),
            "iso",
            r#"{"startedAt":"2024-05-01T12:30:01.250Z"}"#,
            "digits",
            r#"{"startedAt":"1714566599000"}"#,
            "none",
            r#"{"other":1}"#,
            "junk",
            r#"{"startedAt":"yesterday"}"#,
        ],
    );
    ok(
        &mut c,
        &["PEXPIREAT", b, &(now_ms() + 3_600_000).to_string()],
    );
    let legacy_at: i64 = int(&mut c, &["PEXPIRETIME", b]);
    let before = now_ms();
    let reply = ok(
        &mut c,
        &["ACTIVERUNS.MIGRATE", b, b, "SCOREFIELD", "startedAt"],
    );
    assert_eq!(map_int(&reply, "migrated"), 5);
    assert_eq!(map_int(&reply, "kept_existing"), 0);
    assert_eq!(map_int(&reply, "score_from_field"), 3);
    assert_eq!(map_int(&reply, "score_now"), 2);
    assert_eq!(map_int(&reply, "expire_at_ms"), legacy_at);
    assert_eq!(int(&mut c, &["EXISTS", b]), 0, "the legacy hash is gone");
    let (_, rows) = page(&mut c, b, 1, 10, &["ASC", "WITHSCORES"]);
    assert_eq!(ids(&rows)[..3], ["digits", "ms", "iso"]);
    assert_eq!(rows[0].2, Some(1_714_566_599_000));
    assert_eq!(rows[1].2, Some(t0));
    assert_eq!(rows[2].2, Some(t0 + 1000));
    for r in &rows[3..] {
        assert!(
            r.2.unwrap() >= before,
            "no usable field: scored with the migration time"
        );
    }
    assert_eq!(rows[1].1, format!(r#"{{"startedAt":{t0}}}"#));
    // The legacy TTL now applies to both keys.
    assert_eq!(
        int(&mut c, &["PEXPIRETIME", &format!("{b}:index")]),
        legacy_at
    );
    assert_eq!(
        int(&mut c, &["PEXPIRETIME", &format!("{b}:data")]),
        legacy_at
    );
    // Idempotent.
    let digest_after = dataset_digest(&mut c);
    let again = ok(
        &mut c,
        &["ACTIVERUNS.MIGRATE", b, b, "SCOREFIELD", "startedAt"],
    );
    assert_eq!(map_int(&again, "migrated"), 0);
    assert_eq!(dataset_digest(&mut c), digest_after);
    assert_consistent(&mut c, b);
}

#[test]
fn migrate_merges_into_an_existing_run_set() {
    let s = server();
    let mut c = s.conn();
    let b = "runs:{m}";
    add(&mut c, b, "kept", r#"{"new":true}"#, 5000);
    ok(
        &mut c,
        &[
            "HSET",
            "legacy:{m}",
            "kept",
            r#"{"new":false,"t":1}"#,
            "moved",
            r#"{"t":2000}"#,
        ],
    );
    // An orphan document of the run set is replaced by the legacy one.
    ok(&mut c, &["HSET", &format!("{b}:data"), "moved", "stale"]);
    let reply = ok(
        &mut c,
        &["ACTIVERUNS.MIGRATE", "legacy:{m}", b, "SCOREFIELD", "t"],
    );
    assert_eq!(map_int(&reply, "migrated"), 1);
    assert_eq!(map_int(&reply, "kept_existing"), 1);
    // Present, and nil: the run set has no TTL.
    let expire_at = common::flat_map(&reply)
        .into_iter()
        .find(|(k, _)| k == "expire_at_ms");
    assert_eq!(expire_at.map(|(_, v)| v), Some(Value::Nil));
    let (_, rows) = page(&mut c, b, 1, 10, &["WITHSCORES"]);
    assert_eq!(
        rows,
        vec![
            (
                "kept".to_string(),
                r#"{"new":true}"#.to_string(),
                Some(5000)
            ),
            ("moved".to_string(), r#"{"t":2000}"#.to_string(), Some(2000)),
        ]
    );
    assert_eq!(int(&mut c, &["EXISTS", "legacy:{m}"]), 0);
    assert_eq!(int(&mut c, &["TTL", &format!("{b}:index")]), -1);
    assert_eq!(int(&mut c, &["TTL", &format!("{b}:data")]), -1);
    // Nothing to migrate.
    let reply = ok(&mut c, &["ACTIVERUNS.MIGRATE", "legacy:{m}", b]);
    assert_eq!(map_int(&reply, "migrated"), 0);
}

#[test]
fn migrate_refuses_bad_entries_and_writes_nothing() {
    let s = server();
    let mut c = s.conn();
    let legacy = "runs:{bad}";
    ok(
        &mut c,
        &["HSET", legacy, "good", "{}", "broken", "{not json"],
    );
    let before = dataset_digest(&mut c);
    let e = err(&mut c, &["ACTIVERUNS.MIGRATE", legacy, legacy]);
    assert!(
        e.contains("broken") && e.contains("nothing was migrated"),
        "{e}"
    );
    assert_eq!(dataset_digest(&mut c), before);
    ok(&mut c, &["HDEL", legacy, "broken"]);
    redis::cmd("HSET")
        .arg(legacy)
        .arg(&b"bin\xff"[..])
        .arg("{}")
        .query::<i64>(&mut c)
        .unwrap();
    let e = err(&mut c, &["ACTIVERUNS.MIGRATE", legacy, legacy]);
    assert!(e.contains("UTF-8"), "{e}");
    assert_eq!(int(&mut c, &["EXISTS", &format!("{legacy}:index")]), 0);
    ok(&mut c, &["SET", "str:{bad}", "x"]);
    assert!(err(&mut c, &["ACTIVERUNS.MIGRATE", "str:{bad}", legacy]).starts_with("WRONGTYPE"));
    let e = err(
        &mut c,
        &["ACTIVERUNS.MIGRATE", &format!("{legacy}:data"), legacy],
    );
    assert!(e.contains("own keys"), "{e}");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let s = server();
    let mut c = s.conn();
    let b = "runs:{in}";
    add(&mut c, b, "r1", "{}", 1000);
    ok(&mut c, &["SET", "runs:{str}:index", "x"]);
    ok(&mut c, &["SET", "runs:{str2}:data", "x"]);
    let before = dataset_digest(&mut c);
    let arity = [
        vec!["ACTIVERUNS.ADD", b, "r"],
        vec!["ACTIVERUNS.ADD", b, "r", "{}", "SCORE"],
        vec!["ACTIVERUNS.DEL", b],
        vec!["ACTIVERUNS.GET", b],
        vec!["ACTIVERUNS.GET", b, "a", "b"],
        vec!["ACTIVERUNS.PAGE", b, "1"],
        vec!["ACTIVERUNS.AFTER", b, "1", "x"],
        vec!["ACTIVERUNS.COUNT"],
        vec!["ACTIVERUNS.COUNT", b, "x"],
        vec!["ACTIVERUNS.EXPIRE", b],
        vec!["ACTIVERUNS.MIGRATE", b],
        vec!["ACTIVERUNS.MIGRATE", "l", b, "SCOREFIELD"],
    ];
    for args in &arity {
        let e = err(&mut c, args);
        assert!(e.contains("wrong number of arguments"), "{args:?}: {e}");
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["ACTIVERUNS.ADD", b, "r", "{bad"], "invalid JSON"),
        (vec!["ACTIVERUNS.ADD", b, "r", ""], "invalid JSON"),
        (vec!["ACTIVERUNS.ADD", b, "", "{}"], "must not be empty"),
        (
            vec!["ACTIVERUNS.ADD", b, "a\nb", "{}"],
            "control characters",
        ),
        (
            vec!["ACTIVERUNS.ADD", b, "r", "{}", "SCORE", "soon"],
            "SCORE",
        ),
        (vec!["ACTIVERUNS.ADD", b, "r", "{}", "SCORE", "-1"], "SCORE"),
        (
            vec!["ACTIVERUNS.ADD", b, "r", "{}", "SCORE", "1e3"],
            "SCORE",
        ),
        (
            vec![
                "ACTIVERUNS.ADD",
                b,
                "r",
                "{}",
                "SCORE",
                "99999999999999999999",
            ],
            "SCORE",
        ),
        (
            vec!["ACTIVERUNS.ADD", b, "r", "{}", "SCORE", "253402300800000"],
            "SCORE",
        ),
        (
            vec!["ACTIVERUNS.ADD", b, "r", "{}", "SCOREX", "1"],
            "unknown option",
        ),
        (vec!["ACTIVERUNS.ADD", "", "r", "{}"], "must not be empty"),
        (vec!["ACTIVERUNS.PAGE", b, "0", "10"], "page"),
        (vec!["ACTIVERUNS.PAGE", b, "-1", "10"], "page"),
        (vec!["ACTIVERUNS.PAGE", b, "x", "10"], "page"),
        (vec!["ACTIVERUNS.PAGE", b, "1", "0"], "size"),
        (vec!["ACTIVERUNS.PAGE", b, "1", "1001"], "size"),
        (vec!["ACTIVERUNS.PAGE", b, "1", "ten"], "size"),
        (
            vec!["ACTIVERUNS.PAGE", b, "1", "10", "SIDEWAYS"],
            "unknown option",
        ),
        (
            vec!["ACTIVERUNS.PAGE", b, "1", "10", "ASC", "DESC"],
            "only one of ASC and DESC",
        ),
        (
            vec!["ACTIVERUNS.PAGE", b, "1", "10", "WITHSCORES", "WITHSCORES"],
            "twice",
        ),
        (vec!["ACTIVERUNS.AFTER", b, "1,5", "x", "10"], "score"),
        (vec!["ACTIVERUNS.AFTER", b, "nan", "x", "10"], "score"),
        (vec!["ACTIVERUNS.AFTER", b, "1", "x", "0"], "size"),
        (
            vec!["ACTIVERUNS.AFTER", b, "1", "x", "10", "UP"],
            "unknown option",
        ),
        (vec!["ACTIVERUNS.EXPIRE", b, "0"], "max_age"),
        (vec!["ACTIVERUNS.EXPIRE", b, "10y"], "max_age"),
    ];
    for (args, needle) in &cases {
        let e = err(&mut c, args);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    for base in ["runs:{str}", "runs:{str2}"] {
        for args in [
            vec!["ACTIVERUNS.ADD", base, "r", "{}"],
            vec!["ACTIVERUNS.DEL", base, "r"],
            vec!["ACTIVERUNS.GET", base, "r"],
            vec!["ACTIVERUNS.PAGE", base, "1", "10"],
            vec!["ACTIVERUNS.AFTER", base, "+inf", "", "10"],
            vec!["ACTIVERUNS.COUNT", base],
            vec!["ACTIVERUNS.EXPIRE", base, "1h"],
        ] {
            let e = err(&mut c, &args);
            assert!(e.starts_with("WRONGTYPE"), "{args:?}: {e}");
        }
    }
    // Binary ids are refused by ADD; binary base names are fine (key names are binary-safe).
    let e = redis::cmd("ACTIVERUNS.ADD")
        .arg(b)
        .arg(&b"\xff\x00"[..])
        .arg("{}")
        .query::<i64>(&mut c);
    assert!(e.unwrap_err().to_string().contains("UTF-8"));
    assert_eq!(
        dataset_digest(&mut c),
        before,
        "no failed command wrote anything"
    );
    let bin_base: &[u8] = b"runs:{\xff\x00}";
    let n: i64 = redis::cmd("ACTIVERUNS.ADD")
        .arg(bin_base)
        .arg("r")
        .arg("{}")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("ACTIVERUNS.COUNT")
        .arg(bin_base)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let mut key = bin_base.to_vec();
    key.extend_from_slice(b":data");
    let n: i64 = redis::cmd("HLEN").arg(key).query(&mut c).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn acl_key_patterns_govern_run_sets_by_their_base() {
    let s = server();
    let mut admin = s.conn();
    ok(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "runs",
            "on",
            ">pw",
            "~runs:active:*",
            "+@all",
        ],
    );
    ok(
        &mut admin,
        &["ACL", "SETUSER", "other", "on", ">pw", "~jobs:*", "+@all"],
    );
    let client = |user: &str| {
        let url = format!("redis://{user}:pw@127.0.0.1:{}/", s.port);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    };
    let mut runs = client("runs");
    let b = "runs:active:{acl}:p";
    assert_eq!(add(&mut runs, b, "r1", "{}", 1000), 1);
    let (total, _) = page(&mut runs, b, 1, 10, &[]);
    assert_eq!(total, 1);
    let mut other = client("other");
    for args in [
        vec!["ACTIVERUNS.ADD", b, "r2", "{}"],
        vec!["ACTIVERUNS.PAGE", b, "1", "10"],
        vec!["ACTIVERUNS.GET", b, "r1"],
        vec!["ACTIVERUNS.DEL", b, "r1"],
        vec!["ACTIVERUNS.MIGRATE", "jobs:legacy", b],
    ] {
        let e = err(&mut other, &args);
        assert!(
            e.contains("NOPERM") || e.contains("permission"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(int(&mut admin, &["ACTIVERUNS.COUNT", b]), 1);
}

#[test]
fn command_getkeys_names_the_base() {
    let s = server();
    let mut c = s.conn();
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("ACTIVERUNS.PAGE")
        .arg("runs:{a}")
        .arg("1")
        .arg("10")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["runs:{a}"]);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("ACTIVERUNS.MIGRATE")
        .arg("legacy")
        .arg("runs:{a}")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["legacy", "runs:{a}"]);
}

// ---------------------------------------------------------------------------------------
// Randomized model test.

/// id → (score, document).
type Model = BTreeMap<String, (i64, String)>;

fn model_sorted(m: &Model, desc: bool) -> Vec<(String, String, i64)> {
    let mut v: Vec<_> = m
        .iter()
        .map(|(id, (s, d))| (id.clone(), d.clone(), *s))
        .collect();
    v.sort_by(|a, b| (a.2, a.0.as_bytes()).cmp(&(b.2, b.0.as_bytes())));
    if desc {
        v.reverse();
    }
    v
}

/// Unix ms → `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn iso(ms: i64) -> String {
    let (y, m, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

const GRID_MS: i64 = 60_000;

#[test]
fn randomized_operations_match_an_in_memory_model() {
    let seed = std::env::var("RUNS_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026u64);
    let m = server();
    let r = server();
    attach_replica(&m, &r);
    let mut c = m.conn();
    let mut rng = Rng(seed);
    let b = "runs:active:{model}:p";
    let mut model = Model::new();
    // Scores on a one-minute grid below `t0`; EXPIRE cutoffs fall half-way between grid
    // points, so the server's clock moving on during the test cannot change the outcome
    // (as long as the test takes under 30 s).
    let t0 = now_ms();
    let pool: Vec<String> = (0..70)
        .map(|i| match i % 7 {
            0 => format!("run ü{i}"),
            1 => format!("{i:x}:{i}"),
            _ => format!("run-{i:03}"),
        })
        .collect();
    let mut doc_seq = 0u64;
    for step in 0..4000u64 {
        let op = rng.below(100);
        if op < 55 {
            let id = &pool[rng.below(pool.len())];
            let score = t0 - rng.below(40) as i64 * GRID_MS;
            doc_seq += 1;
            let doc = format!(r#"{{"seq":{doc_seq},"id":"{id}"}}"#);
            let expect = i64::from(!model.contains_key(id));
            assert_eq!(add(&mut c, b, id, &doc, score), expect, "step {step}: ADD");
            model.insert(id.clone(), (score, doc));
        } else if op < 75 {
            let n = 1 + rng.below(3);
            let del: Vec<String> = (0..n)
                .map(|_| pool[rng.below(pool.len())].clone())
                .collect();
            let unique: BTreeSet<&String> = del.iter().collect();
            let expect = unique.iter().filter(|id| model.contains_key(**id)).count() as i64;
            let mut args = vec!["ACTIVERUNS.DEL", b];
            args.extend(del.iter().map(String::as_str));
            assert_eq!(int(&mut c, &args), expect, "step {step}: DEL");
            for id in &del {
                model.remove(id);
            }
        } else if op < 80 {
            let j = 20 + rng.below(25) as i64;
            let max_age = format!("{}ms", j * GRID_MS + GRID_MS / 2);
            let cutoff = t0 - j * GRID_MS - GRID_MS / 2;
            let old: Vec<String> = model
                .iter()
                .filter(|(_, (s, _))| *s < cutoff)
                .map(|(id, _)| id.clone())
                .collect();
            assert_eq!(
                int(&mut c, &["ACTIVERUNS.EXPIRE", b, &max_age]),
                old.len() as i64,
                "step {step}: EXPIRE"
            );
            for id in old {
                model.remove(&id);
            }
        } else if op < 84 {
            // A legacy hash, sometimes named like the base itself.
            let legacy = if rng.chance(50) {
                b.to_string()
            } else {
                format!("legacy:{{model}}:{step}")
            };
            let n = 1 + rng.below(6);
            let mut entries = BTreeMap::new();
            for _ in 0..n {
                let id = pool[rng.below(pool.len())].clone();
                let score = t0 - rng.below(40) as i64 * GRID_MS;
                let when = if rng.chance(50) {
                    score.to_string()
                } else {
                    format!("\"{}\"", iso(score))
                };
                doc_seq += 1;
                entries.insert(
                    id,
                    (score, format!(r#"{{"startedAt":{when},"seq":{doc_seq}}}"#)),
                );
            }
            for (id, (_, doc)) in &entries {
                ok(&mut c, &["HSET", &legacy, id, doc]);
            }
            let reply = ok(
                &mut c,
                &["ACTIVERUNS.MIGRATE", &legacy, b, "SCOREFIELD", "startedAt"],
            );
            let fresh: Vec<_> = entries
                .iter()
                .filter(|(id, _)| !model.contains_key(*id))
                .collect();
            assert_eq!(
                map_int(&reply, "migrated"),
                fresh.len() as i64,
                "step {step}: MIGRATE"
            );
            assert_eq!(map_int(&reply, "score_from_field"), entries.len() as i64);
            for (id, v) in fresh {
                model.insert(id.clone(), v.clone());
            }
            assert_eq!(int(&mut c, &["EXISTS", &legacy]), 0);
        } else {
            // A read-only step: a random page.
        }
        check_against_model(&mut c, b, &model, &mut rng, step);
        if step % 250 == 0 {
            assert_consistent(&mut c, b);
        }
    }
    assert_consistent(&mut c, b);
    wait_replica_caught_up(&m, &r);
    assert_eq!(
        dataset_digest(&mut c),
        dataset_digest(&mut r.conn()),
        "replica equals master"
    );
}

fn check_against_model(c: &mut Connection, b: &str, model: &Model, rng: &mut Rng, step: u64) {
    assert_eq!(
        int(c, &["ACTIVERUNS.COUNT", b]),
        model.len() as i64,
        "step {step}: COUNT"
    );
    // PAGE
    let desc = rng.chance(50);
    let size = 1 + rng.below(15) as u64;
    let pages = model.len() as u64 / size + 2;
    let p = 1 + rng.below(pages as usize) as u64;
    let with_scores = rng.chance(50);
    let mut extra = vec![if desc { "DESC" } else { "ASC" }];
    if with_scores {
        extra.push("WITHSCORES");
    }
    let (total, rows) = page(c, b, p, size, &extra);
    let sorted = model_sorted(model, desc);
    let expect: Vec<Row> = sorted
        .iter()
        .skip(((p - 1) * size) as usize)
        .take(size as usize)
        .map(|(id, d, s)| (id.clone(), d.clone(), with_scores.then_some(*s)))
        .collect();
    assert_eq!(total, model.len() as i64, "step {step}: PAGE total");
    assert_eq!(rows, expect, "step {step}: PAGE {p} {size} {extra:?}");
    // AFTER: from an existing run or from an arbitrary position.
    let (score, marker) = if !sorted.is_empty() && rng.chance(60) {
        let (id, _, s) = &sorted[rng.below(sorted.len())];
        (*s, id.clone())
    } else {
        let t0_grid = sorted.first().map_or(0, |r| r.2);
        (
            t0_grid - rng.below(40) as i64 * GRID_MS,
            format!("run-{:03}", rng.below(80)),
        )
    };
    let size = 1 + rng.below(12) as u64;
    let expect: Vec<Row> = sorted
        .iter()
        .filter(|(id, _, s)| {
            let key = (*s, id.as_bytes());
            if desc {
                key < (score, marker.as_bytes())
            } else {
                key > (score, marker.as_bytes())
            }
        })
        .take(size as usize)
        .map(|(id, d, s)| (id.clone(), d.clone(), Some(*s)))
        .collect();
    let (total, rows) = after(
        c,
        b,
        &score.to_string(),
        &marker,
        size,
        if desc { "DESC" } else { "ASC" },
    );
    assert_eq!(total, model.len() as i64);
    assert_eq!(
        rows, expect,
        "step {step}: AFTER {score} {marker} {size} desc={desc}"
    );
}

// ---------------------------------------------------------------------------------------
// Replication and AOF.

/// Every mutation path once: ADD, DEL, EXPIRE, MIGRATE (rename and merge), EXPIRE's
/// reconciliation and the runs rule; PAGE/AFTER over holes, which must change nothing.
fn exercise_everything(c: &mut Connection) {
    let now = now_ms();
    let a = "runs:active:{r}:a";
    for i in 0..200 {
        add(
            c,
            a,
            &format!("r{i}"),
            &format!(r#"{{"i":{i}}}"#),
            now - i * 60_000,
        );
    }
    int(c, &["ACTIVERUNS.ADD", a, "now", "{}"]);
    int(c, &["ACTIVERUNS.DEL", a, "r1", "r2", "r3"]);
    int(c, &["ACTIVERUNS.EXPIRE", a, "2h"]);
    ok(c, &["HDEL", &format!("{a}:data"), "r5", "r6"]);
    page(c, a, 1, 10, &[]);
    ok(c, &["HDEL", &format!("{a}:data"), "r50"]);
    after(c, a, &(now - 49 * 60_000).to_string(), "r49", 3, "DESC");
    ok(c, &["HSET", &format!("{a}:data"), "orphan", "{}"]);
    int(c, &["ACTIVERUNS.EXPIRE", a, "100m"]);
    let legacy = "runs:active:{r}:legacy";
    for i in 0..50 {
        ok(
            c,
            &[
                "HSET",
                legacy,
                &format!("l{i}"),
                &format!(r#"{{"startedAt":"{}"}}"#, iso(now - i * 1000)),
            ],
        );
    }
    ok(c, &["PEXPIRE", legacy, "3600000"]);
    ok(
        c,
        &[
            "ACTIVERUNS.MIGRATE",
            legacy,
            legacy,
            "SCOREFIELD",
            "startedAt",
        ],
    );
    ok(c, &["HSET", "runs:active:{r}:old", "x", "{}", "r10", "{}"]);
    // No SCOREFIELD: scored with the master's clock, which the replica must not re-read.
    ok(c, &["ACTIVERUNS.MIGRATE", "runs:active:{r}:old", a]);
    let _ = ok(c, &["RETENTION.SWEEP"]);
}

#[test]
fn replica_matches_master_after_every_command() {
    let policy = r#"{"rules":[{"name":"r","match":"runs:*","runs":{"max_age":"1h"}}]}"#;
    let m = Server::start_paused(Some(policy));
    let r = server();
    attach_replica(&m, &r);
    let mut c = m.conn();
    exercise_everything(&mut c);
    wait_replica_caught_up(&m, &r);
    let (dm, dr) = (dataset_digest(&mut c), dataset_digest(&mut r.conn()));
    assert_ne!(dm, "0".repeat(40), "something was written");
    assert_eq!(dm, dr);
}

#[test]
fn aof_restart_restores_the_same_data() {
    let dir = common::scratch_dir("aof");
    let policy = common::write_policy(
        &dir,
        r#"{"rules":[{"name":"r","match":"runs:*","runs":{"max_age":"1h"}}]}"#,
    );
    let opts = ServerOpts::default().paused().policy(&policy).aof();
    let mut s = Server::start_in(dir.clone(), opts.clone()).expect("start");
    let mut c = s.conn();
    exercise_everything(&mut c);
    let before = dataset_digest(&mut c);
    drop(c);
    s.kill();
    let s2 = Server::start_in(dir, opts).expect("restart");
    assert_eq!(dataset_digest(&mut s2.conn()), before);
}
