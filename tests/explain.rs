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

    // (key, rule, matched pattern, words of the reason)
    // A Bull queue beside the BullMQ one: the example's rule (flavor auto) cleans it too.
    call(&mut c, &["SET", "bull:legacy:id", "1"]);
    call(
        &mut c,
        &["HSET", "bull:legacy:1", "name", "n", "finishedOn", "1"],
    );
    call(&mut c, &["ZADD", "bull:legacy:completed", "1", "1"]);

    let cases: [(&str, Option<&str>, Option<&str>, &str); 13] = [
        (
            "bull:mail:id",
            Some("queue-structure"),
            Some("bull:*:id"),
            "keep rule",
        ),
        (
            "bull:mail:meta",
            Some("queue-structure"),
            Some("bull:*:meta"),
            "keep rule",
        ),
        (
            "bull:mail:1",
            Some("bull-jobs"),
            Some("bull:*"),
            "remove it with its keys at the next pass: completed 2d ago, older than the rule allows (max_age 1d, max_len 500)",
        ),
        (
            "bull:mail:2",
            Some("bull-jobs"),
            Some("bull:*"),
            "nothing: a live BullMQ job (wait in bull:mail:*); live jobs are never touched",
        ),
        (
            "bull:legacy:1",
            Some("bull-jobs"),
            Some("bull:*"),
            "remove it with its keys at the next pass: completed",
        ),
        (
            "bull:mail:1:logs",
            Some("bull-jobs"),
            Some("bull:*"),
            "sub-key",
        ),
        (
            "bull:mail:completed",
            Some("bull-jobs"),
            Some("bull:*"),
            "completed set",
        ),
        (
            "bull:mail:wait",
            Some("bull-jobs"),
            Some("bull:*"),
            "structure, never touched",
        ),
        (
            "celery-task-meta-abc",
            Some("celery-results"),
            Some("celery-task-meta-*"),
            "give it a TTL of 1d",
        ),
        (
            "channel:1",
            Some("channels"),
            Some("channel:*"),
            "it has a TTL",
        ),
        (
            "audit:log",
            Some("audit-stream"),
            Some("audit:*"),
            "trim it at each pass",
        ),
        (
            "runs:active:{w}:p:index",
            Some("active-runs"),
            Some("runs:active:*:index|:data"),
            "older than 3h",
        ),
        ("unrelated", None, None, "no rule governs"),
    ];
    for (key, rule, matched, reason) in cases {
        let e = explain(&mut c, key);
        assert_eq!(map_int(&e, "exists"), 1, "{key}");
        assert_eq!(opt_str(&e, "rule").as_deref(), rule, "{key}: {e:?}");
        assert_eq!(opt_str(&e, "matched").as_deref(), matched, "{key}: {e:?}");
        let now = text(&e, "now");
        assert!(now.contains(reason), "{key}: {now:?} lacks {reason:?}");
    }
    // A hash under the string-only celery rule: passed over, and said why.
    let e = explain(&mut c, "celery-task-meta-h");
    assert_eq!(opt_str(&e, "rule"), None);
    let passed = format!("{e:?}");
    assert!(
        passed.contains("celery-results") && passed.contains("string"),
        "{passed}"
    );

    // After a sweep: what the module did, also to keys that are gone.
    let before_ttl = now_ms();
    sweep(&mut c, &[]);
    let e = explain(&mut c, "celery-task-meta-abc");
    let last = text(&e, "last");
    assert!(
        last.contains("gave it a TTL") && last.contains("celery-results"),
        "{last}"
    );
    let expire_at = map_int(&e, "expire_at_ms");
    assert!(expire_at >= before_ttl + 86_400_000, "{e:?}");
    assert!(
        last.contains(&expire_at.to_string()),
        "{last} vs {expire_at}"
    );
    for gone in ["bull:mail:1", "bull:mail:1:logs"] {
        let e = explain(&mut c, gone);
        assert_eq!(map_int(&e, "exists"), 0, "{gone}");
        let last = text(&e, "last");
        assert!(last.contains("finished job"), "{gone}: {last}");
    }
    let live = explain(&mut c, "bull:mail:2");
    assert_eq!(map_int(&live, "exists"), 1);
    assert!(text(&live, "last").contains("nothing remembered"));

    // A flush forgets: the names may mean other keys now.
    call(&mut c, &["FLUSHALL"]);
    let e = explain(&mut c, "bull:mail:1");
    assert!(text(&e, "last").contains("nothing remembered"), "{e:?}");
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
    let last = text(&explain(&mut c, "list:a"), "last");
    assert!(
        last.contains("trimmed 3 entries") && last.contains("cap-list"),
        "{last}"
    );

    // A Bull queue under a BullMQ rule's prefix: skipped, and EXPLAIN says why.
    call(&mut c, &["SET", "q:old:id", "1"]);
    call(&mut c, &["HSET", "q:old:1", "name", "n", "finishedOn", "1"]);
    call(&mut c, &["ZADD", "q:old:completed", "1", "1"]);
    let now = text(&explain(&mut c, "q:old:1"), "now");
    assert!(
        now.contains("is a Bull queue and this rule is for BullMQ queues") && now.contains("auto"),
        "{now}"
    );

    config_set(&mut c, "retention.dry-run", "yes");
    call(&mut c, &["SET", "t:1", "v"]);
    let e = explain(&mut c, "t:1");
    assert!(
        text(&e, "now").starts_with("nothing (retention.dry-run is on)"),
        "{e:?}"
    );
    sweep(&mut c, &[]);
    assert!(text(&explain(&mut c, "t:1"), "last").contains("nothing remembered"));

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
    let last = text(&explain(&mut c, "t:1"), "last");
    assert!(
        last.contains("gave it a TTL") && last.contains("rule 't'"),
        "{last}"
    );

    // Off: the 3 MB table is freed and nothing more is recorded.
    let with_table = used(&mut c);
    config_set(&mut c, "retention.explain-history", "no");
    let freed = with_table - used(&mut c);
    assert!(freed >= 2_500_000, "turning it off freed {freed} bytes");
    call(&mut c, &["SET", "t:2", "v"]);
    sweep(&mut c, &[]);
    for key in ["t:1", "t:2"] {
        assert_eq!(
            text(&explain(&mut c, key), "last"),
            "not recorded (retention.explain-history is no)"
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
    assert!(text(&explain(&mut c, "t:3"), "last").contains("gave it a TTL"));
    assert!(text(&explain(&mut c, "t:2"), "last").contains("nothing remembered"));
}
