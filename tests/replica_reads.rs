//! Read paths are served where users read: `ACTIVERUNS.PAGE/AFTER/GET/COUNT` and
//! `RETENTION.JOBS COUNTS` answer on a read-only replica, while writes are paused, and from
//! a read-only script. They leave holes (index entries without a document) out of the reply
//! and never write, anywhere. `RETENTION.JOBS CLEAN`, a write subcommand, gets a replica with the server's own
//! READONLY error there and waits out a pause, as the server's own writes do.

mod common;

use std::time::Duration;

use common::*;
use redis::{Connection, Value};

const BASE: &str = "runs:active:{ws}:proj";

/// Ten runs, of which r3 and r7 have lost their document (a hole in the index).
fn runs_with_two_holes(c: &mut Connection) {
    let now = now_ms();
    for i in 0..10 {
        let score = (now - i * 1000).to_string();
        call(
            c,
            &[
                "ACTIVERUNS.ADD",
                BASE,
                &format!("r{i}"),
                &format!("{{\"n\":{i}}}"),
                "SCORE",
                &score,
            ],
        );
    }
    call(c, &["HDEL", &format!("{BASE}:data"), "r3", "r7"]);
}

/// A BullMQ-shaped queue with three completed jobs and one waiting.
fn queue_with_jobs(c: &mut Connection) {
    let old = now_ms() - 86_400_000;
    call(c, &["HSET", "bull:mail:meta", "version", "bullmq:5.81.5"]);
    call(c, &["SET", "bull:mail:id", "4"]);
    for id in ["1", "2", "3"] {
        let t = old.to_string();
        call(
            c,
            &[
                "HSET",
                &format!("bull:mail:{id}"),
                "name",
                "n",
                "data",
                "{}",
                "timestamp",
                &t,
                "finishedOn",
                &t,
            ],
        );
        call(c, &["ZADD", "bull:mail:completed", &t, id]);
    }
    call(c, &["HSET", "bull:mail:4", "name", "n", "data", "{}"]);
    call(c, &["LPUSH", "bull:mail:wait", "4"]);
}

fn index_members(c: &mut Connection) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("{BASE}:index"))
        .query(c)
        .expect("ZCARD")
}

const NO_HOLES: [&str; 8] = ["r0", "r1", "r2", "r4", "r5", "r6", "r8", "r9"];

#[test]
fn a_read_only_replica_serves_pages_and_counts_without_repairing() {
    let master = Server::start(ServerOpts::default().paused()).expect("master");
    let replica = Server::start(ServerOpts::default().paused()).expect("replica");
    let mut m = master.conn();
    runs_with_two_holes(&mut m);
    queue_with_jobs(&mut m);
    attach_replica(&master, &replica);
    wait_replica_caught_up(&master, &replica);
    let mut r = replica.conn();
    let before = replica.digest();

    let page = call(&mut r, &["ACTIVERUNS.PAGE", BASE, "1", "50"]);
    assert_eq!(
        page_ids(&page, 2),
        (10, NO_HOLES.map(String::from).to_vec())
    );
    let after = call(&mut r, &["ACTIVERUNS.AFTER", BASE, "+inf", "x", "50"]);
    assert_eq!(page_ids(&after, 3).1, NO_HOLES.map(String::from).to_vec());
    assert_eq!(call(&mut r, &["ACTIVERUNS.COUNT", BASE]), Value::Int(10));
    let doc: String = redis::cmd("ACTIVERUNS.GET")
        .arg(BASE)
        .arg("r1")
        .query(&mut r)
        .expect("GET");
    assert_eq!(doc, r#"{"n":1}"#);
    let counts = call(&mut r, &["RETENTION.JOBS", "COUNTS", "bull", "mail"]);
    assert_eq!(map_int(&counts, "completed"), 3);
    assert_eq!(map_int(&counts, "waiting"), 1);

    // The replica changed nothing: the holes are still in its index.
    assert_eq!(replica.digest(), before);
    assert_eq!(index_members(&mut r), 10);

    // CLEAN is a write: the server's own READONLY error, and nothing changed.
    let err = try_call(
        &mut r,
        &[
            "RETENTION.JOBS",
            "CLEAN",
            "bull",
            "mail",
            "completed",
            "MAXAGE",
            "1h",
        ],
    )
    .expect_err("CLEAN on a replica");
    assert_eq!(err.code(), Some("READONLY"), "{err}");
    assert_eq!(replica.digest(), before);

    // On the master the same page leaves the holes out too, and writes nothing.
    let on_master = master.digest();
    let page = call(&mut m, &["ACTIVERUNS.PAGE", BASE, "1", "50"]);
    assert_eq!(
        page_ids(&page, 2),
        (10, NO_HOLES.map(String::from).to_vec())
    );
    assert_eq!(master.digest(), on_master, "a read changed the master");
    wait_replica_caught_up(&master, &replica);
    assert_eq!(index_members(&mut r), 10);
    assert_eq!(replica.digest(), master.digest());
}

#[test]
fn while_writes_are_paused_reads_are_served_and_clean_waits() {
    let server = Server::start(ServerOpts::default().paused()).expect("server");
    let mut c = server.conn();
    runs_with_two_holes(&mut c);
    queue_with_jobs(&mut c);
    call(&mut c, &["CLIENT", "PAUSE", "60000", "WRITE"]);
    let paused = server.digest();

    // Reads answer at once, leaving the holes for later.
    let page = call(&mut c, &["ACTIVERUNS.PAGE", BASE, "1", "50"]);
    assert_eq!(
        page_ids(&page, 2),
        (10, NO_HOLES.map(String::from).to_vec())
    );
    let counts = call(&mut c, &["RETENTION.JOBS", "COUNTS", "bull", "mail"]);
    assert_eq!(map_int(&counts, "completed"), 3);

    // A plain CLEAN waits for the pause to end, then cleans.
    let port = server.port;
    let cleaner = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|client| client.get_connection())
            .expect("connect");
        call(
            &mut c,
            &[
                "RETENTION.JOBS",
                "CLEAN",
                "bull",
                "mail",
                "completed",
                "MAXAGE",
                "1h",
            ],
        )
    });
    let blocked = wait_until(Duration::from_secs(10), || {
        info(&mut c, "clients").contains("blocked_clients:1")
    });
    assert!(blocked, "CLEAN did not wait for the pause");
    assert_eq!(server.digest(), paused, "CLEAN wrote during the pause");
    assert_eq!(index_members(&mut c), 10, "PAGE wrote during the pause");

    call(&mut c, &["CLIENT", "UNPAUSE"]);
    let cleaned = cleaner.join().expect("cleaner");
    assert_eq!(map_int(&cleaned, "jobs_removed"), 3, "{cleaned:?}");
    assert!(!exists(&mut c, "bull:mail:1"));
    assert!(exists(&mut c, "bull:mail:4"), "the waiting job stays");
    let page = call(&mut c, &["ACTIVERUNS.PAGE", BASE, "1", "50"]);
    assert_eq!(
        page_ids(&page, 2),
        (10, NO_HOLES.map(String::from).to_vec()),
        "a read leaves the holes in the index once writes are allowed too"
    );
}

#[test]
fn a_read_only_script_may_page_but_never_writes() {
    let server = Server::start(ServerOpts::default().paused()).expect("server");
    let mut c = server.conn();
    runs_with_two_holes(&mut c);
    let before = server.digest();
    let script = format!("return redis.call('ACTIVERUNS.PAGE', '{BASE}', 1, 50)");
    let page: Value = redis::cmd("EVAL_RO")
        .arg(&script)
        .arg(1)
        .arg(format!("{BASE}:index"))
        .query(&mut c)
        .expect("EVAL_RO");
    assert_eq!(
        page_ids(&page, 2),
        (10, NO_HOLES.map(String::from).to_vec())
    );
    let counts: Value = redis::cmd("EVAL_RO")
        .arg("return redis.call('ACTIVERUNS.COUNT', KEYS[1])")
        .arg(1)
        .arg(BASE)
        .query(&mut c)
        .expect("EVAL_RO COUNT");
    assert_eq!(counts, Value::Int(10));
    assert_eq!(server.digest(), before, "a read-only script wrote");
}

/// The commands users read with are registered readonly: a replica in a cluster, a
/// `+@read` ACL user and `CLIENT PAUSE WRITE` all rely on the command table saying so.
#[test]
fn read_commands_are_registered_readonly() {
    let server = Server::start(ServerOpts::default().paused()).expect("server");
    let mut c = server.conn();
    for name in [
        "activeruns.page",
        "activeruns.after",
        "activeruns.get",
        "activeruns.count",
        "retention.jobs|counts",
        "retention.status",
        "retention.stats|get",
        "retention.policy",
    ] {
        let info = call(&mut c, &["COMMAND", "INFO", name]);
        let text = format!("{info:?}");
        assert!(text.contains("readonly"), "{name}: {text}");
        assert!(!text.contains("\"write\""), "{name}: {text}");
    }
    // The modes that change things are write (or admin) subcommands: replicas refuse them
    // and CLIENT PAUSE WRITE holds them, as for the server's own writes.
    for (name, flag) in [
        ("retention.jobs|clean", "write"),
        ("retention.stats|reset", "admin"),
    ] {
        let text = format!("{:?}", call(&mut c, &["COMMAND", "INFO", name]));
        assert!(text.contains(flag), "{name}: {text}");
        assert!(!text.contains("readonly"), "{name}: {text}");
    }
}
