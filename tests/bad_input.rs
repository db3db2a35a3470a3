//! Bad input never changes anything and never takes the server down: every command with
//! wrong arity, unknown/duplicate options, bad numbers; broken policy files at startup,
//! at RELOAD and at CONFIG SET.

mod common;

use common::*;
use redis::{Connection, RedisResult, Value};

const POLICY: &str = r#"{"rules":[{"name":"all","match":"k:*","ttl":"1h"}]}"#;

fn run(c: &mut Connection, args: &[&[u8]]) -> RedisResult<Value> {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn error_of(c: &mut Connection, args: &[&[u8]]) -> String {
    match run(c, args) {
        Ok(v) => panic!(
            "{:?} succeeded: {v:?}",
            String::from_utf8_lossy(&args.concat())
        ),
        Err(e) => e.to_string(),
    }
}

/// Each command errs with its expected text, and together they leave the dataset as `before`.
fn assert_each_refused(
    server: &Server,
    c: &mut Connection,
    cases: &[(&[&[u8]], &str)],
    before: &str,
) {
    for (args, expected) in cases {
        let err = error_of(c, args);
        assert!(
            err.contains(expected),
            "{:?}: got {err}, want {expected}",
            args
        );
    }
    assert_eq!(
        server.digest(),
        before,
        "a rejected command changed the dataset"
    );
}

#[test]
fn every_bad_command_is_an_error_and_changes_nothing() {
    let mut server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1000)
        .arg("k")
        .query(&mut c)
        .unwrap();
    let before = server.digest();
    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"RETENTION.SWEEP", b"NOPE"], "unknown option 'NOPE'"),
        (&[b"RETENTION.SWEEP", b"RULE"], "needs RULE <name>"),
        (
            &[b"RETENTION.SWEEP", b"RULE", b"missing"],
            "no rule named 'missing'",
        ),
        (&[b"RETENTION.SWEEP", b"MATCH"], "needs MATCH <glob>"),
        (&[b"RETENTION.SWEEP", b"BUDGET"], "needs BUDGET"),
        (&[b"RETENTION.SWEEP", b"BUDGET", b"abc"], "not an integer"),
        (
            &[b"RETENTION.SWEEP", b"BUDGET", b"-5"],
            "BUDGET must be between",
        ),
        (
            &[b"RETENTION.SWEEP", b"BUDGET", b"0"],
            "BUDGET must be between",
        ),
        (
            &[b"RETENTION.SWEEP", b"BUDGET", b"99999999999999999999"],
            "not an integer",
        ),
        (&[b"RETENTION.SWEEP", b"BUDGET", b"1e3"], "not an integer"),
        (
            &[b"RETENTION.SWEEP", b"BUDGET", b"100000000"],
            "BUDGET must be between",
        ),
        (&[b"RETENTION.SWEEP", b"DRYRUN", b"dryrun"], "given twice"),
        (
            &[b"RETENTION.SWEEP", b"\xff\x00"],
            "unknown option '\\xff\\x00'",
        ),
        // The server checks arity and subcommands from the declared command info.
        (
            &[b"RETENTION.STATUS", b"extra"],
            "wrong number of arguments",
        ),
        (
            &[b"RETENTION.POLICY", b"extra"],
            "wrong number of arguments",
        ),
        (
            &[b"RETENTION.RELOAD", b"extra"],
            "wrong number of arguments",
        ),
        (&[b"RETENTION.STATS"], "wrong number of arguments"),
        (
            &[b"RETENTION.STATS", b"CLEAR"],
            "unknown subcommand 'CLEAR'",
        ),
        (
            &[b"RETENTION.STATS", b"RESET", b"now"],
            "wrong number of arguments",
        ),
    ];
    assert_each_refused(&server, &mut c, cases, &before);
    let stats: Value = redis::cmd("RETENTION.STATS")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(map_int(&stats, "passes"), 0, "a rejected SWEEP ran a pass");
    assert!(server.alive());
}

#[test]
fn sweep_refuses_to_run_inside_multi_and_scripts() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    let _: () = redis::cmd("SET").arg("k:1").arg("v").query(&mut c).unwrap();
    let script = redis::cmd("EVAL")
        .arg("return redis.call('RETENTION.SWEEP')")
        .arg(0)
        .query::<Value>(&mut c);
    let err = script.expect_err("SWEEP inside EVAL").to_string();
    assert!(err.contains("cannot run inside MULTI or a script"), "{err}");
    let multi: RedisResult<Vec<Value>> =
        redis::pipe().atomic().cmd("RETENTION.SWEEP").query(&mut c);
    let err = multi.expect_err("SWEEP inside MULTI").to_string();
    assert!(err.contains("cannot run inside MULTI or a script"), "{err}");
    let ttl: i64 = redis::cmd("TTL").arg("k:1").query(&mut c).unwrap();
    assert_eq!(ttl, -1);
}

#[test]
fn a_second_sweep_while_one_runs_is_refused_naming_the_first() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(300_000)
        .arg("k")
        .query(&mut c)
        .unwrap();
    let mut first = server.conn();
    let handle = std::thread::spawn(move || {
        redis::cmd("RETENTION.SWEEP")
            .arg("BUDGET")
            .arg(100)
            .query::<Value>(&mut first)
            .expect("first sweep")
    });
    let running = wait_until(std::time::Duration::from_secs(10), || {
        let status: Value = redis::cmd("RETENTION.STATUS").query(&mut c).unwrap();
        map_int(&status, "running") == 1
    });
    assert!(running, "the first pass never showed in STATUS");
    let err = error_of(&mut c, &[b"RETENTION.SWEEP"]);
    assert!(
        err.starts_with("INPROGRESS") && err.contains("already running (client id"),
        "{err}"
    );
    let report = handle.join().expect("first sweep thread");
    assert_eq!(map_int(&report, "ttl_set"), 300_000);
}

#[test]
fn a_broken_policy_file_fails_module_load_with_one_clear_line() {
    let cases = [
        (
            "{\n  \"rules\": [\n    {\"name\": \"a\",, }\n  ]\n}",
            "line 3, column",
        ),
        (
            r#"{"rules":[{"name":"celery","match":"x*","ttl":"1y"}]}"#,
            "rules[0] (\"celery\"): ttl: bad duration '1y'",
        ),
        (
            r#"{"rules":[{"name":"a","match":"x*","ttl":"1h","extra":1}]}"#,
            "extra: unknown field",
        ),
    ];
    for (json, expected) in cases {
        let dir = scratch_dir("badload");
        let path = write_policy(&dir, json);
        let err = match Server::start_in(dir, ServerOpts::default().policy(&path)) {
            Ok(_) => panic!("server started with a broken policy: {json}"),
            Err(e) => e,
        };
        let line = err
            .lines()
            .find(|l| l.contains("retention: module not loaded"))
            .unwrap_or_else(|| panic!("no module log line in:\n{err}"));
        assert!(
            line.contains(path.to_str().unwrap()),
            "file not named: {line}"
        );
        assert!(line.contains(expected), "{line}\n  want: {expected}");
    }
    let missing = scratch_dir("missing").join("nope.json");
    let err = Server::start(ServerOpts::default().policy(&missing))
        .err()
        .expect("server started with a missing policy file");
    assert!(err.contains("cannot read policy file"), "{err}");
}

#[test]
fn reload_and_config_set_keep_the_old_policy_on_error() {
    let server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    let policy_path = server.dir.join("policy.json");
    let old: Value = redis::cmd("RETENTION.POLICY").query(&mut c).unwrap();

    std::fs::write(
        &policy_path,
        r#"{"rules":[{"name":"x","match":"*","type":"list","trim":{"max_len":-1}}]}"#,
    )
    .unwrap();
    let err = error_of(&mut c, &[b"RETENTION.RELOAD"]);
    assert!(err.contains("trim.max_len"), "{err}");
    let now: Value = redis::cmd("RETENTION.POLICY").query(&mut c).unwrap();
    assert_eq!(now, old, "the old policy must stay in force");

    let bad = server.dir.join("missing.json");
    let err = error_of(
        &mut c,
        &[
            b"CONFIG",
            b"SET",
            b"retention.policy-file",
            bad.to_str().unwrap().as_bytes(),
        ],
    );
    assert!(err.contains("cannot read policy file"), "{err}");
    let path: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("retention.policy-file")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        path[1],
        policy_path.to_str().unwrap(),
        "the path in force changed"
    );

    let err = error_of(
        &mut c,
        &[b"CONFIG", b"SET", b"retention.sweep-budget-us", b"5"],
    );
    assert!(err.contains("between"), "{err}");
    let err = error_of(
        &mut c,
        &[b"CONFIG", b"SET", b"retention.pressure-ratio", b"1.5"],
    );
    assert!(err.contains("pressure-ratio"), "{err}");

    std::fs::write(
        &policy_path,
        r#"{"rules":[{"name":"new","match":"n:*","ttl":"2h"}]}"#,
    )
    .unwrap();
    let _: () = redis::cmd("RETENTION.RELOAD").query(&mut c).unwrap();
    let reloaded: Value = redis::cmd("RETENTION.POLICY").query(&mut c).unwrap();
    let text = format!("{reloaded:?}");
    assert!(
        text.contains("new"),
        "reload did not install the fixed file: {text}"
    );
}

#[test]
fn bad_maxmemory_sizes_are_errors_and_change_nothing() {
    let mut server = Server::start_paused(Some(POLICY));
    let mut c = server.conn();
    for i in 0..50 {
        let _: String = redis::cmd("XADD")
            .arg("s:1")
            .arg("*")
            .arg("f")
            .arg(i)
            .query(&mut c)
            .unwrap();
        let _: i64 = redis::cmd("ZADD")
            .arg("bull:q:completed")
            .arg(i)
            .arg(i)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(format!("bull:q:{i}"))
            .arg("finishedOn")
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("bull:q:id")
        .arg(50)
        .query(&mut c)
        .unwrap();
    let before = server.digest();
    let sizes: &[(&[u8], &str)] = &[
        (b"0", "must be greater than zero"),
        (b"0mb", "must be greater than zero"),
        (b"-5", "bad size '-5'"),
        (b"1.5mb", "a size is a whole number; use a smaller unit"),
        (b"1tb", "unknown unit 'tb' (use b|k|kb|m|mb|g|gb)"),
        (b"1mib", "unknown unit 'mib'"),
        (b"mb", "bad size 'mb'"),
        (b"99999999999gb", "number too large"),
        (b"99999999999999999999", "number too large"),
        // Not UTF-8: refused (TRIM shows it as a bad size, CLEAN as not a size).
        (b"\xff", "MAXMEMORY: "),
    ];
    for (size, expected) in sizes {
        let trim: &[&[u8]] = &[b"RETENTION.TRIM", b"s:1", b"MAXMEMORY", size];
        let clean: &[&[u8]] = &[
            b"RETENTION.JOBS",
            b"CLEAN",
            b"bull",
            b"q",
            b"completed",
            b"MAXMEMORY",
            size,
        ];
        for args in [trim, clean] {
            let err = error_of(&mut c, args);
            assert!(
                err.contains(expected) && err.contains("MAXMEMORY"),
                "{}: got {err}, want {expected}",
                String::from_utf8_lossy(&args.join(&b' '))
            );
        }
    }
    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"RETENTION.TRIM", b"s:1", b"DRYRUN", b"MAXMEMORY"],
            "MAXMEMORY needs a size",
        ),
        (
            &[
                b"RETENTION.TRIM",
                b"s:1",
                b"MAXMEMORY",
                b"1mb",
                b"maxmemory",
                b"2mb",
            ],
            "given twice",
        ),
        (
            &[b"RETENTION.TRIM", b"s:1", b"DRYRUN", b"APPROX"],
            "needs MAXLEN <n>, MAXAGE <duration> and/or MAXMEMORY <size>",
        ),
        (
            &[
                b"RETENTION.JOBS",
                b"CLEAN",
                b"bull",
                b"q",
                b"completed",
                b"MAXMEMORY",
            ],
            "MAXMEMORY",
        ),
        (
            &[
                b"RETENTION.JOBS",
                b"CLEAN",
                b"bull",
                b"q",
                b"completed",
                b"MAXMEMORY",
                b"1mb",
                b"MAXMEMORY",
                b"1mb",
            ],
            "given twice",
        ),
        (
            &[
                b"RETENTION.JOBS",
                b"CLEAN",
                b"bull",
                b"q",
                b"completed",
                b"LIMIT",
                b"5",
            ],
            "needs MAXAGE <duration>, MAXLEN <n> and/or MAXMEMORY <size>",
        ),
    ];
    assert_each_refused(&server, &mut c, cases, &before);
    assert!(server.alive());
}
