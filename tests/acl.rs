//! Access control: admin commands need the rights of CONFIG SET, key
//! patterns bound what a user's commands may touch, read-only users read. On Redis 7.0 the
//! module checks the caller itself; on Redis 7.2+ and Valkey the commands also carry ACL categories.

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
    &[
        "RETENTION.JOBS",
        "CLEAN",
        "bull",
        "q1",
        "completed",
        "MAXAGE",
        "1h",
    ],
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
        .arg("GET")
        .query(&mut app)
        .expect("STATS");
    assert!(map_int(&stats, "passes") >= 0);
    // The admin runs all of them.
    sweep(&mut admin, &[]);
    call(&mut admin, &["RETENTION.RELOAD"]);
    call(&mut admin, &["RETENTION.STATS", "RESET"]);
    let removed = call(
        &mut admin,
        &[
            "RETENTION.JOBS",
            "CLEAN",
            "bull",
            "q1",
            "completed",
            "MAXAGE",
            "1h",
        ],
    );
    assert_eq!(jobs_removed(&removed), 1);
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
        &["RETENTION.STATS", "GET"],
        &["RETENTION.POLICY"],
    ] {
        try_call(&mut ro, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    let counts = call(&mut ro, &["RETENTION.JOBS", "COUNTS", "bull", "q1"]);
    assert_eq!(map_int(&counts, "completed"), 1);
    for args in [
        &["RETENTION.STATS", "RESET"][..],
        &[
            "RETENTION.JOBS",
            "CLEAN",
            "bull",
            "q1",
            "completed",
            "MAXAGE",
            "1h",
        ],
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
    let counts = call(&mut one, &["RETENTION.JOBS", "COUNTS", "bull", "q1"]);
    assert_eq!(map_int(&counts, "completed"), 1);
    for args in [
        &["RETENTION.JOBS", "COUNTS", "bull", "q2"][..],
        &[
            "RETENTION.JOBS",
            "CLEAN",
            "bull",
            "q2",
            "completed",
            "MAXAGE",
            "1h",
        ],
        // A prefix that only begins like the allowed one.
        &["RETENTION.JOBS", "COUNTS", "bull", "q"],
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
        &[
            "RETENTION.JOBS",
            "CLEAN",
            "bull",
            "q1",
            "completed",
            "MAXAGE",
            "1h",
        ],
    );
    assert_eq!(jobs_removed(&removed), 1);
    let added = call(
        &mut one,
        &["ACTIVERUNS.ADD", "runs:active:{a}:p", "r1", "{}"],
    );
    assert_eq!(added, Value::Int(1));
}

/// A user whose key rights are read-only (`%R~`) runs the read commands: their keys are
/// declared read-only (a legacy key range counts as read-write). Writes stay refused.
#[test]
fn a_user_with_read_only_key_rights_runs_the_read_commands() {
    let server = Server::start_paused(Some(POLICY));
    let mut admin = server.conn();
    call(&mut admin, &["ACTIVERUNS.ADD", "runs:{a}", "r1", "{}"]);
    call(&mut admin, &["SET", "t:1", "v"]);
    acl_setuser(&mut admin, &["reader", "on", ">pw", "%R~*", "+@all"]);
    let before = server.digest();
    let mut reader = login(&server, "reader");
    for args in [
        &["ACTIVERUNS.GET", "runs:{a}", "r1"][..],
        &["ACTIVERUNS.PAGE", "runs:{a}", "1", "10"],
        &["ACTIVERUNS.AFTER", "runs:{a}", "+inf", "", "10"],
        &["ACTIVERUNS.COUNT", "runs:{a}"],
        &["RETENTION.EXPLAIN", "t:1"],
    ] {
        try_call(&mut reader, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    for args in [
        &["ACTIVERUNS.ADD", "runs:{a}", "r2", "{}"][..],
        &["ACTIVERUNS.DEL", "runs:{a}", "r1"],
        &["ACTIVERUNS.EXPIRE", "runs:{a}", "1s"],
        &["ACTIVERUNS.MIGRATE", "legacy", "runs:{a}"],
        &["RETENTION.TRIM", "t:1", "MAXLEN", "1"],
    ] {
        let err = error_of(&mut reader, args);
        assert!(err.contains("NOPERM"), "{args:?}: {err}");
    }
    assert_eq!(
        server.digest(),
        before,
        "a read or a denied write changed data"
    );
}

/// A command line and the `(key, flags)` pairs `COMMAND GETKEYSANDFLAGS` must give for it.
type KeysAndFlags<'a> = (&'a [&'a str], &'a [(&'a str, &'a [&'a str])]);

/// `COMMAND GETKEYSANDFLAGS` names every keyed command's keys with the access it needs.
#[test]
fn every_keyed_command_declares_its_keys_with_their_access() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    let cases: [KeysAndFlags; 10] = [
        (
            &["RETENTION.TRIM", "s", "MAXLEN", "1"],
            &[("s", &["RW", "delete"])],
        ),
        (&["RETENTION.EXPLAIN", "k"], &[("k", &["RO"])]),
        (
            &["ACTIVERUNS.ADD", "b", "i", "{}"],
            &[("b", &["RW", "update"])],
        ),
        (&["ACTIVERUNS.DEL", "b", "i"], &[("b", &["RW", "delete"])]),
        (&["ACTIVERUNS.GET", "b", "i"], &[("b", &["RO", "access"])]),
        (
            &["ACTIVERUNS.PAGE", "b", "1", "10"],
            &[("b", &["RO", "access"])],
        ),
        (
            &["ACTIVERUNS.AFTER", "b", "+inf", "", "10"],
            &[("b", &["RO", "access"])],
        ),
        (&["ACTIVERUNS.COUNT", "b"], &[("b", &["RO", "access"])]),
        (
            &["ACTIVERUNS.EXPIRE", "b", "1h"],
            &[("b", &["RW", "delete"])],
        ),
        (
            &["ACTIVERUNS.MIGRATE", "old", "b"],
            &[
                ("old", &["RW", "access", "delete"]),
                ("b", &["RW", "update"]),
            ],
        ),
    ];
    for (args, want) in cases {
        let got: Vec<(String, Vec<String>)> = redis::cmd("COMMAND")
            .arg("GETKEYSANDFLAGS")
            .arg(args)
            .query(&mut c)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let want: Vec<(String, Vec<String>)> = want
            .iter()
            .map(|(k, f)| (k.to_string(), f.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(got, want, "{args:?}");
    }
}

/// Where the server takes module ACL categories (Redis 7.2+, Valkey) a category grants the
/// module's commands in it: `+@read` lets a user run RETENTION.STATUS and ACTIVERUNS.COUNT,
/// but not RETENTION.SWEEP (`@admin`). Redis 7.0 puts module commands in no category, so
/// there the same user may run none of them.
#[test]
fn a_category_grants_the_module_commands_in_it_where_the_server_takes_categories() {
    let server = Server::start_paused(Some(POLICY));
    let mut admin = server.conn();
    let kind = ServerKind::of(&mut admin);
    acl_setuser(
        &mut admin,
        &["reader", "on", ">pw", "~*", "+@read", "+@connection"],
    );
    let mut reader = login(&server, "reader");
    for args in [&["RETENTION.STATUS"][..], &["ACTIVERUNS.COUNT", "runs"]] {
        let reply = try_call(&mut reader, args);
        match kind.takes_module_acl_categories() {
            true => assert!(reply.is_ok(), "{args:?} on {kind:?}: {reply:?}"),
            false => {
                let err = format!("{:?}", reply.expect_err("no category on Redis 7.0"));
                assert!(err.contains("NOPERM"), "{args:?} on {kind:?}: {err}");
            }
        }
    }
    let err = error_of(&mut reader, &["RETENTION.SWEEP"]);
    assert!(err.contains("NOPERM"), "{err}");
}
