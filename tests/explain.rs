//! `RETENTION.EXPLAIN <key>`: the rule and the reason for a key of each kind in the example
//! policy (`examples/policy.json`), what the module would do now, and what it did last —
//! also for a key it removed.

mod common;

use common::*;
use redis::{Connection, Value};

fn example_policy() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.json"))
        .expect("examples/policy.json")
}

fn explain(c: &mut Connection, key: &str) -> Value {
    call(c, &["RETENTION.EXPLAIN", key])
}

/// A string field that may be nil (no rule, no pattern).
fn opt_str(v: &Value, field: &str) -> Option<String> {
    match flat_map(v).into_iter().find(|(k, _)| k == field) {
        Some((_, Value::Nil)) | None => None,
        Some((_, value)) => Some(redis::from_redis_value(&value).expect("a string")),
    }
}

fn text(v: &Value, field: &str) -> String {
    map_str(v, field).unwrap_or_else(|| panic!("no {field} in {v:?}"))
}

/// The map `field` (`now`, `last`) of an EXPLAIN reply.
fn part(v: &Value, field: &str) -> Value {
    map_field(v, field).unwrap_or_else(|| panic!("no {field} in {v:?}"))
}

/// `(action, reason)` of `now` or `last`.
fn said(v: &Value, field: &str) -> (String, String) {
    let m = part(v, field);
    (text(&m, "action"), text(&m, "reason"))
}

/// A BullMQ queue with a completed job older than the example's 24h.
fn bullmq_queue_with_old_job(c: &mut Connection) {
    let old = (now_ms() - 2 * 86_400_000).to_string();
    call(c, &["HSET", "bull:mail:meta", "version", "bullmq:5.81.5"]);
    call(c, &["SET", "bull:mail:id", "2"]);
    call(
        c,
        &[
            "HSET",
            "bull:mail:1",
            "name",
            "n",
            "data",
            "{}",
            "timestamp",
            &old,
            "finishedOn",
            &old,
        ],
    );
    call(c, &["RPUSH", "bull:mail:1:logs", "line"]);
    call(c, &["ZADD", "bull:mail:completed", &old, "1"]);
    call(c, &["HSET", "bull:mail:2", "name", "n", "data", "{}"]);
    call(c, &["LPUSH", "bull:mail:wait", "2"]);
}

#[test]
fn each_kind_of_key_in_the_example_policy_gets_its_rule_and_reason() {
    let server = Server::start_paused(Some(&example_policy()));
    let mut c = server.conn();
    bullmq_queue_with_old_job(&mut c);
    call(&mut c, &["SET", "celery-task-meta-abc", "{}"]);
    call(&mut c, &["HSET", "celery-task-meta-h", "f", "v"]);
    call(&mut c, &["SET", "channel:1", "x", "EX", "60"]);
    call(&mut c, &["XADD", "audit:log", "*", "f", "v"]);
    call(&mut c, &["ACTIVERUNS.ADD", "runs:active:{w}:p", "r1", "{}"]);
    call(&mut c, &["SET", "unrelated", "v"]);

    // (key, rule, matched pattern, action, words of the reason)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, &'a str);
    // A Bull queue beside the BullMQ one: the example's rule (flavor auto) cleans it too.
    call(&mut c, &["SET", "bull:legacy:id", "1"]);
    call(
        &mut c,
        &["HSET", "bull:legacy:1", "name", "n", "finishedOn", "1"],
    );
    call(&mut c, &["ZADD", "bull:legacy:completed", "1", "1"]);

    let cases: [Case; 13] = [
        (
            "bull:mail:id",
            Some("queue-structure"),
            Some("bull:*:id"),
            "keep",
            "keep rule",
        ),
        (
            "bull:mail:meta",
            Some("queue-structure"),
            Some("bull:*:meta"),
            "keep",
            "keep rule",
        ),
        (
            "bull:mail:1",
            Some("bull-jobs"),
            Some("bull:*"),
            "remove",
            "remove it with its keys at the next pass: completed 2d ago, older than the rule allows (max_age 1d, max_len 500)",
        ),
        (
            "bull:mail:2",
            Some("bull-jobs"),
            Some("bull:*"),
            "none",
            "a live BullMQ job (wait in bull:mail:*); live jobs are never touched",
        ),
        (
            "bull:legacy:1",
            Some("bull-jobs"),
            Some("bull:*"),
            "remove",
            "remove it with its keys at the next pass: completed",
        ),
        (
            "bull:mail:1:logs",
            Some("bull-jobs"),
            Some("bull:*"),
            "none",
            "sub-key",
        ),
        (
            "bull:mail:completed",
            Some("bull-jobs"),
            Some("bull:*"),
            "clean",
            "completed set",
        ),
        (
            "bull:mail:wait",
            Some("bull-jobs"),
            Some("bull:*"),
            "none",
            "structure, never touched",
        ),
        (
            "celery-task-meta-abc",
            Some("celery-results"),
            Some("celery-task-meta-*"),
            "set_ttl",
            "give it a TTL of 1d",
        ),
        (
            "channel:1",
            Some("channels"),
            Some("channel:*"),
            "none",
            "it has a TTL",
        ),
        (
            "audit:log",
            Some("audit-stream"),
            Some("audit:*"),
            "trim",
            "trim it at each pass",
        ),
        (
            "runs:active:{w}:p:index",
            Some("active-runs"),
            Some("runs:active:*:index|:data"),
            "expire_runs",
            "older than 3h",
        ),
        ("unrelated", None, None, "none", "no rule governs"),
    ];
    for (key, rule, matched, action, reason) in cases {
        let e = explain(&mut c, key);
        assert_eq!(map_int(&e, "exists"), 1, "{key}");
        assert_eq!(opt_str(&e, "rule").as_deref(), rule, "{key}: {e:?}");
        assert_eq!(opt_str(&e, "matched").as_deref(), matched, "{key}: {e:?}");
        let (did, why) = said(&e, "now");
        assert_eq!(did, action, "{key}: {why}");
        assert!(why.contains(reason), "{key}: {why:?} lacks {reason:?}");
        assert_eq!(map_int(&part(&e, "now"), "dry_run"), 0, "{key}");
    }
    // The machine values beside the words: the TTL it would give and when the key would
    // expire; when the finished job finished.
    let now = part(&explain(&mut c, "celery-task-meta-abc"), "now");
    assert_eq!(map_int(&now, "ttl_ms"), 86_400_000);
    let expire_at = map_int(&now, "expire_at_ms");
    assert!((now_ms() + 86_390_000..=now_ms() + 86_400_000).contains(&expire_at));
    let job = part(&explain(&mut c, "bull:mail:1"), "now");
    let finished_at = map_int(&job, "finished_at_ms");
    assert!(finished_at < now_ms() - 86_400_000, "{job:?}");
    // A hash under the string-only celery rule: passed over, with the type the rule takes.
    let e = explain(&mut c, "celery-task-meta-h");
    assert_eq!(opt_str(&e, "rule"), None);
    let passed = match part(&e, "passed_over") {
        Value::Array(items) => items,
        other => panic!("passed_over: {other:?}"),
    };
    assert_eq!(passed.len(), 1, "{passed:?}");
    assert_eq!(
        map_str(&passed[0], "rule").as_deref(),
        Some("celery-results")
    );
    assert_eq!(map_str(&passed[0], "type").as_deref(), Some("string"));
    assert_eq!(map_int(&e, "passed_over_total"), 1);

    // After a sweep: what the module did, also to keys that are gone.
    let before_ttl = now_ms();
    sweep(&mut c, &[]);
    let e = explain(&mut c, "celery-task-meta-abc");
    let last = part(&e, "last");
    assert_eq!(text(&last, "action"), "set_ttl", "{last:?}");
    assert_eq!(text(&last, "rule"), "celery-results", "{last:?}");
    assert!(text(&last, "reason").contains("gave it a TTL"), "{last:?}");
    let expire_at = map_int(&e, "expire_at_ms");
    assert!(expire_at >= before_ttl + 86_400_000, "{e:?}");
    assert_eq!(map_int(&last, "expire_at_ms"), expire_at, "{last:?}");
    let at = map_int(&last, "at_ms");
    assert!((before_ttl..=now_ms()).contains(&at), "{last:?}");
    for gone in ["bull:mail:1", "bull:mail:1:logs"] {
        let e = explain(&mut c, gone);
        assert_eq!(map_int(&e, "exists"), 0, "{gone}");
        let last = part(&e, "last");
        assert_eq!(text(&last, "action"), "remove", "{gone}: {last:?}");
        // The queue rule that removed the job is named, as for every other action.
        assert_eq!(text(&last, "rule"), "bull-jobs", "{gone}: {last:?}");
        assert_eq!(map_int(&last, "orphan"), 0, "{gone}: {last:?}");
        assert!(
            text(&last, "reason").contains("finished job"),
            "{gone}: {last:?}"
        );
    }
    let live = explain(&mut c, "bull:mail:2");
    assert_eq!(map_int(&live, "exists"), 1);
    let (did, why) = said(&live, "last");
    assert_eq!(did, "unknown");
    assert!(why.contains("nothing remembered"), "{why}");

    // A flush forgets: the names may mean other keys now.
    call(&mut c, &["FLUSHALL"]);
    let e = explain(&mut c, "bull:mail:1");
    assert!(said(&e, "last").1.contains("nothing remembered"), "{e:?}");
}

#[test]
fn trims_and_dry_runs_are_told_and_bad_input_is_refused() {
    let policy = r#"{"rules":[{"name":"cap-list","match":"list:*","type":"list","trim":{"max_len":2}},
        {"name":"t","match":"t:*","ttl":"1h"},
        {"name":"mq","match":"q:*","queue":{"flavor":"bullmq"}}]}"#;
    let server = Server::start_paused(Some(policy));
    let mut c = server.conn();
    call(&mut c, &["RPUSH", "list:a", "1", "2", "3", "4", "5"]);
    sweep(&mut c, &[]);
    let last = part(&explain(&mut c, "list:a"), "last");
    assert_eq!(text(&last, "action"), "trim", "{last:?}");
    assert_eq!(map_int(&last, "entries_trimmed"), 3, "{last:?}");
    assert_eq!(text(&last, "rule"), "cap-list", "{last:?}");
    let now = part(&explain(&mut c, "list:a"), "now");
    assert_eq!(
        (text(&now, "action"), map_int(&now, "max_len")),
        ("trim".to_string(), 2)
    );

    // A Bull queue under a BullMQ rule's prefix: skipped, and EXPLAIN says why.
    call(&mut c, &["SET", "q:old:id", "1"]);
    call(&mut c, &["HSET", "q:old:1", "name", "n", "finishedOn", "1"]);
    call(&mut c, &["ZADD", "q:old:completed", "1", "1"]);
    let (did, now) = said(&explain(&mut c, "q:old:1"), "now");
    assert_eq!(did, "none");
    assert!(
        now.contains("is a Bull queue and this rule is for BullMQ queues") && now.contains("auto"),
        "{now}"
    );

    config_set(&mut c, "retention.dry-run", "yes");
    call(&mut c, &["SET", "t:1", "v"]);
    let e = explain(&mut c, "t:1");
    let now = part(&e, "now");
    assert_eq!(map_int(&now, "dry_run"), 1, "{e:?}");
    assert_eq!(text(&now, "action"), "set_ttl", "{e:?}");
    assert!(
        text(&now, "reason").starts_with("retention.dry-run is on: nothing is changed"),
        "{e:?}"
    );
    sweep(&mut c, &[]);
    assert!(said(&explain(&mut c, "t:1"), "last")
        .1
        .contains("nothing remembered"));

    // A binary name in another database.
    select(&mut c, 2);
    let name = b"t:\x00\xff".to_vec();
    let _: () = redis::cmd("SET")
        .arg(&name)
        .arg("v")
        .query(&mut c)
        .expect("SET");
    let e: Value = redis::cmd("RETENTION.EXPLAIN")
        .arg(&name)
        .query(&mut c)
        .expect("EXPLAIN");
    assert_eq!(map_int(&e, "db"), 2);
    assert_eq!(map_str(&e, "rule").as_deref(), Some("t"));

    let digest = server.digest();
    for args in [&["RETENTION.EXPLAIN"][..], &["RETENTION.EXPLAIN", "a", "b"]] {
        let err = try_call(&mut c, args).expect_err("bad arity");
        assert!(err.to_string().contains("wrong number"), "{err}");
    }
    let missing = explain(&mut c, "no-such-key");
    assert_eq!(map_int(&missing, "exists"), 0);
    assert_eq!(server.digest(), digest, "EXPLAIN changed data");

    // The key is declared: a user limited to other keys is refused.
    call(
        &mut c,
        &["ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all"],
    );
    let mut app = server.conn();
    call(&mut app, &["AUTH", "app", "pw"]);
    let err = try_call(&mut app, &["RETENTION.EXPLAIN", "t:1"]).expect_err("key ACL");
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
    explain(&mut app, "app:1");
}

#[test]
fn explain_history_off_records_nothing_and_frees_its_table() {
    let server = Server::start_paused(Some(r#"{"rules":[{"name":"t","match":"t:*","ttl":"1h"}]}"#));
    let mut c = server.conn();
    let used = |c: &mut Connection| info_i64(c, "memory", "used_memory");
    call(&mut c, &["SET", "t:1", "v"]);
    sweep(&mut c, &[]);
    let last = part(&explain(&mut c, "t:1"), "last");
    assert_eq!(text(&last, "action"), "set_ttl", "{last:?}");
    assert_eq!(text(&last, "rule"), "t", "{last:?}");

    // Off: the 3 MB table is freed and nothing more is recorded.
    let with_table = used(&mut c);
    config_set(&mut c, "retention.explain-history", "no");
    let freed = with_table - used(&mut c);
    assert!(freed >= 2_500_000, "turning it off freed {freed} bytes");
    call(&mut c, &["SET", "t:2", "v"]);
    sweep(&mut c, &[]);
    for key in ["t:1", "t:2"] {
        assert_eq!(
            said(&explain(&mut c, key), "last"),
            (
                "unknown".to_string(),
                "not recorded (retention.explain-history is no)".to_string()
            )
        );
    }
    assert!(used(&mut c) < with_table - 2_500_000, "the table came back");
    let ttl: i64 = redis::cmd("TTL").arg("t:2").query(&mut c).expect("TTL");
    assert!(
        (3590..=3600).contains(&ttl),
        "the rule still acts: TTL {ttl}"
    );

    // On again: it starts empty and records again.
    config_set(&mut c, "retention.explain-history", "yes");
    call(&mut c, &["SET", "t:3", "v"]);
    sweep(&mut c, &[]);
    assert_eq!(said(&explain(&mut c, "t:3"), "last").0, "set_ttl");
    assert!(said(&explain(&mut c, "t:2"), "last")
        .1
        .contains("nothing remembered"));
}
