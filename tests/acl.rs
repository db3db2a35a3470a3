//! Access control (SPEC 5.8, issue 18): admin commands need the rights of CONFIG SET, key
//! patterns bound what a user's commands may touch, read-only users read. On Redis 7.0 the
//! module checks the caller itself; on Valkey 9 the commands also carry ACL categories.

mod common;

use common::*;
use redis::{Connection, Value};

const POLICY: &str = r#"{"rules":[{"name":"t","match":"t:*","ttl":"1d"}]}"#;

fn acl_setuser(c: &mut Connection, rules: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(rules)
        .query(c)
        .expect("ACL SETUSER");
}

fn error_of(c: &mut Connection, args: &[&str]) -> String {
    match try_call(c, args) {
        Ok(v) => panic!("{args:?} succeeded: {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// `(username, object)` of every `ACL LOG` entry.
fn acl_log(c: &mut Connection) -> Vec<(String, String)> {
    let entries: Vec<Value> = redis::cmd("ACL")
        .arg("LOG")
        .arg(100)
        .query(c)
        .expect("ACL LOG");
    entries
        .iter()
        .map(|e| {
            let field = |name: &str| map_str(e, name).unwrap_or_default();
            (field("username"), field("object"))
        })
        .collect()
}

/// A queue with one old completed job, enough for COUNTS and CLEAN to have work.
fn queue(c: &mut Connection, base: &str) {
    let old = now_ms() - 86_400_000;
    call(c, &["SET", &format!("{base}id"), "1"]);
    call(
        c,
        &[
            "HSET",
            &format!("{base}1"),
            "timestamp",
            &old.to_string(),
            "finishedOn",
            &old.to_string(),
        ],
    );
    call(
        c,
        &["ZADD", &format!("{base}completed"), &old.to_string(), "1"],
    );
}

const ADMIN_COMMANDS: [&[&str]; 4] = [
    &["RETENTION.SWEEP"],
    &["RETENTION.RELOAD"],
    &["RETENTION.STATS", "RESET"],
    &["RETENTION.JOBS", "bull", "q1", "CLEAN", "completed", "1h"],
];

#[test]
fn an_application_user_without_admin_rights_gets_noperm_and_an_acl_log_entry() {
    let server = Server::start_paused(Some(POLICY));
    let mut admin = server.conn();
    queue(&mut admin, "bull:q1:");
    call(&mut admin, &["SET", "t:1", "v"]);
    acl_setuser(
        &mut admin,
        &["app", "on", ">pw", "~*", "+@all", "-@admin", "-@dangerous"],
    );
    let before = server.digest();
    let mut app = login(&server, "app");
    for args in ADMIN_COMMANDS {
        let err = error_of(&mut app, args);
        assert!(err.contains("NOPERM"), "{args:?}: {err}");
    }
    assert_eq!(server.digest(), before, "a denied command changed data");
    let log = acl_log(&mut admin);
    for (args, object) in ADMIN_COMMANDS.iter().zip([
        "retention.sweep",
        "retention.reload",
        "retention.stats",
        "retention.jobs",
    ]) {
        assert!(
            log.iter()
                .any(|(user, o)| user == "app" && o.starts_with(object)),
            "{args:?}: no ACL LOG entry in {log:?}"
        );
    }
    // Reading is an application's right.
    let stats: Value = redis::cmd("RETENTION.STATS")
        .query(&mut app)
        .expect("STATS");
    assert!(map_int(&stats, "passes") >= 0);
    // The admin runs all of them.
    sweep(&mut admin, &[]);
    call(&mut admin, &["RETENTION.RELOAD"]);
    call(&mut admin, &["RETENTION.STATS", "RESET"]);
    let removed = call(
        &mut admin,
        &["RETENTION.JOBS", "bull", "q1", "CLEAN", "completed", "1h"],
    );
    assert_eq!(removed, Value::Int(1));
}

#[test]
fn a_read_only_user_reads_status_stats_policy_and_counts() {
    let server = Server::start_paused(Some(POLICY));
    let mut admin = server.conn();
    queue(&mut admin, "bull:q1:");
    // Redis 7.0 puts module commands in no category: they are granted by name there.
    acl_setuser(
        &mut admin,
        &[
            "ro",
            "on",
            ">pw",
            "~*",
            "+@read",
            "+@connection",
            "+retention.status",
            "+retention.stats",
            "+retention.policy",
            "+retention.jobs",
        ],
    );
    let mut ro = login(&server, "ro");
    for args in [
        &["RETENTION.STATUS"][..],
        &["RETENTION.STATS"],
        &["RETENTION.POLICY"],
    ] {
        try_call(&mut ro, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    let counts = call(&mut ro, &["RETENTION.JOBS", "bull", "q1", "COUNTS"]);
    assert_eq!(map_int(&counts, "completed"), 1);
    for args in [
        &["RETENTION.STATS", "RESET"][..],
        &["RETENTION.JOBS", "bull", "q1", "CLEAN", "completed", "1h"],
        &["RETENTION.SWEEP"],
    ] {
        let err = error_of(&mut ro, args);
        assert!(err.contains("NOPERM"), "{args:?}: {err}");
    }
}

#[test]
fn key_patterns_bound_queues_and_run_sets() {
    let server = Server::start_paused(Some(POLICY));
    let mut admin = server.conn();
    queue(&mut admin, "bull:q1:");
    queue(&mut admin, "bull:q2:");
    acl_setuser(
        &mut admin,
        &[
            "one",
            "on",
            ">pw",
            "~bull:q1:*",
            "~runs:active:{a}*",
            "+@all",
        ],
    );
    let before = server.digest();
    let mut one = login(&server, "one");
    let counts = call(&mut one, &["RETENTION.JOBS", "bull", "q1", "COUNTS"]);
    assert_eq!(map_int(&counts, "completed"), 1);
    for args in [
        &["RETENTION.JOBS", "bull", "q2", "COUNTS"][..],
        &["RETENTION.JOBS", "bull", "q2", "CLEAN", "completed", "1h"],
        // A prefix that only begins like the allowed one.
        &["RETENTION.JOBS", "bull", "q", "COUNTS"],
        &["ACTIVERUNS.ADD", "runs:active:{b}:p", "r1", "{}"],
        &["ACTIVERUNS.PAGE", "runs:active:{b}:p", "1", "10"],
        &[
            "ACTIVERUNS.MIGRATE",
            "runs:active:{b}:p",
            "runs:active:{a}:p",
        ],
    ] {
        let err = error_of(&mut one, args);
        assert!(err.contains("NOPERM"), "{args:?}: {err}");
    }
    assert_eq!(server.digest(), before, "a denied command changed data");
    let log = acl_log(&mut admin);
    assert!(
        log.iter().any(|(u, o)| u == "one" && o == "bull:q2:"),
        "{log:?}"
    );
    // Within its patterns the user works normally.
    let removed = call(
        &mut one,
        &["RETENTION.JOBS", "bull", "q1", "CLEAN", "completed", "1h"],
    );
    assert_eq!(removed, Value::Int(1));
    let added = call(
        &mut one,
        &["ACTIVERUNS.ADD", "runs:active:{a}:p", "r1", "{}"],
    );
    assert_eq!(added, Value::Int(1));
}
