//! `redis.conf.example`: a server started from it, as scripts/run starts it (the
//! module and examples/policy.json on the command line), runs the example policy with the
//! conf's module settings, persists (AOF + RDB) with `noeviction`, and its ACL users can do
//! what the README's "Access control" says, and no more.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use redis::Connection;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn conf_path() -> PathBuf {
    root().join("redis.conf.example")
}

fn conf_text() -> String {
    std::fs::read_to_string(conf_path()).expect("read redis.conf.example")
}

/// `(name, value)` of every active `retention.*` line of the conf.
fn conf_module_settings() -> Vec<(String, String)> {
    conf_text()
        .lines()
        .filter(|l| l.starts_with("retention."))
        .map(|l| {
            let (name, value) = l.split_once(' ').expect("retention.<name> <value>");
            (name.to_string(), value.trim().to_string())
        })
        .collect()
}

/// The password of `user <name> on >password ...` in the conf.
fn password(user: &str) -> String {
    conf_text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("user {user} on ")))
        .and_then(|rest| rest.split_whitespace().find_map(|w| w.strip_prefix('>')))
        .unwrap_or_else(|| panic!("no password for user {user} in redis.conf.example"))
        .to_string()
}

/// As scripts/run starts it: the conf, then the module with the example policy.
fn opts() -> ServerOpts {
    ServerOpts::default()
        .conf_file(&conf_path())
        .policy(&root().join("examples/policy.json"))
}

fn start_in(dir: PathBuf) -> Server {
    Server::start_in(dir, opts()).expect("server from redis.conf.example")
}

fn login(server: &Server, user: &str) -> Connection {
    let mut c = server.conn();
    let _: () = redis::cmd("AUTH")
        .arg(user)
        .arg(password(user))
        .query(&mut c)
        .unwrap_or_else(|e| panic!("AUTH {user}: {e}"));
    c
}

fn config_get(c: &mut Connection, name: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(c)
        .unwrap_or_else(|e| panic!("CONFIG GET {name}: {e}"));
    pair.get(1)
        .cloned()
        .unwrap_or_else(|| panic!("CONFIG GET {name}: no value"))
}

fn error_of(c: &mut Connection, args: &[&str]) -> String {
    match try_call(c, args) {
        Ok(v) => panic!("{args:?} succeeded: {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn pttl(c: &mut Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(c).expect("PTTL")
}

const CLEAN_EMAILS: &[&str] = &[
    "RETENTION.JOBS",
    "CLEAN",
    "bull",
    "emails",
    "completed",
    "MAXAGE",
    "0",
];
#[test]
fn the_example_conf_runs_the_example_policy_with_persistence_and_noeviction() {
    let mut server = start_in(scratch_dir("prodconf"));
    let mut c = server.conn();

    // The example policy is in force, with the conf's module settings.
    let policy: String = redis::cmd("RETENTION.POLICY")
        .query::<redis::Value>(&mut c)
        .map(|v| format!("{v:?}"))
        .expect("RETENTION.POLICY");
    for rule in [
        "queue-structure",
        "bull-jobs",
        "celery-results",
        "active-runs",
    ] {
        assert!(policy.contains(rule), "rule {rule} not in force: {policy}");
    }
    let settings = conf_module_settings();
    assert!(
        settings.len() >= 7,
        "the conf's module block is missing: {settings:?}"
    );
    for (name, value) in &settings {
        assert_eq!(&config_get(&mut c, name), value, "{name}");
    }

    // Memory and persistence.
    assert_eq!(config_get(&mut c, "maxmemory-policy"), "noeviction");
    let maxmemory: u64 = config_get(&mut c, "maxmemory").parse().expect("maxmemory");
    assert!(maxmemory > 0, "maxmemory must be set, got {maxmemory}");
    assert_eq!(config_get(&mut c, "appendonly"), "yes");
    assert_eq!(config_get(&mut c, "appendfsync"), "everysec");
    assert_ne!(config_get(&mut c, "save"), "", "RDB snapshots must be on");
    assert!(
        conf_text()
            .lines()
            .all(|l| !l.trim_start().starts_with("rename-command")),
        "use ACL users, not rename-command"
    );

    // The policy acts: a Celery result written without TTL gets one (new-key tracking).
    call(&mut c, &["SET", "celery-task-meta-1", "{}"]);
    assert!(
        wait_until(Duration::from_secs(10), || pttl(
            &mut c,
            "celery-task-meta-1"
        ) > 0),
        "celery-task-meta-1 got no TTL"
    );
    let expire_at = expire_times(&mut c, &["celery-task-meta-1"])[0];
    call(&mut c, &["SET", "plain", "v"]);

    // A clean shutdown and a restart from the AOF keep both, with the same expire time.
    let dir = server.dir.clone();
    let _ = try_call(&mut c, &["SHUTDOWN"]);
    server.kill();
    drop(server);
    let restarted = start_in(dir);
    let mut c = restarted.conn();
    assert!(
        info(&mut c, "persistence").contains("aof_enabled:1"),
        "AOF not enabled after restart"
    );
    assert_eq!(
        expire_times(&mut c, &["celery-task-meta-1", "plain"]),
        vec![expire_at, -1],
        "keys or expire times lost across a restart from the AOF"
    );
}

#[test]
fn the_example_acl_users_get_what_the_readme_says() {
    let server = start_in(scratch_dir("prodacl"));

    // The application: writes keys, runs scripts, reads INFO and queue counts; no admin work.
    let mut app = login(&server, "app");
    call(&mut app, &["SET", "app:key", "v"]);
    call(
        &mut app,
        &["HSET", "bull:emails:meta", "version", "bullmq:5.12.0"],
    );
    call(&mut app, &["LPUSH", "bull:emails:wait", "1", "2"]);
    assert_eq!(
        map_int(
            &call(&mut app, &["RETENTION.JOBS", "COUNTS", "bull", "emails"]),
            "waiting"
        ),
        2
    );
    let _: i64 = redis::cmd("EVAL")
        .arg("return redis.call('INCR', KEYS[1])")
        .arg(1)
        .arg("app:counter")
        .query(&mut app)
        .expect("app runs scripts");
    assert!(info(&mut app, "server").contains("redis_version"));
    for admin in [
        &["RETENTION.SWEEP"][..],
        &["RETENTION.RELOAD"],
        &["RETENTION.STATS", "RESET"],
        CLEAN_EMAILS,
        &["CONFIG", "SET", "retention.dry-run", "yes"],
    ] {
        let err = error_of(&mut app, admin);
        assert!(err.contains("NOPERM"), "app ran {admin:?}: {err}");
    }
    assert_eq!(config_get(&mut server.conn(), "retention.dry-run"), "no");

    // The operator: admin work.
    let mut ops = login(&server, "ops");
    let report = sweep(&mut ops, &[]);
    assert!(map_int(&report, "keys_scanned") >= 3, "{report:?}");
    config_set(&mut ops, "retention.pass-interval-s", "30");

    // The exporter: reads, runs the exporter script, writes nothing.
    let mut monitor = login(&server, "monitor");
    let script = std::fs::read_to_string(root().join("contrib/redis_exporter.lua"))
        .expect("read contrib/redis_exporter.lua");
    // As redis_exporter calls it: EVAL <script> 0 0.
    let pairs: Vec<String> = redis::cmd("EVAL")
        .arg(&script)
        .arg(0)
        .arg(0)
        .query(&mut monitor)
        .expect("monitor runs the exporter script");
    let metrics: std::collections::HashMap<&str, &str> = pairs
        .chunks(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    assert_eq!(metrics.get("retention_up"), Some(&"1"), "{metrics:?}");
    assert_eq!(
        metrics.get("retention_jobs:waiting:bull:emails"),
        Some(&"2"),
        "{metrics:?}"
    );
    assert_eq!(metrics.get("retention_exporter_queue_errors"), Some(&"0"));
    for denied in [
        &["SET", "app:key", "changed"][..],
        &["DEL", "app:key"],
        &["RETENTION.SWEEP"],
        CLEAN_EMAILS,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    ] {
        let err = error_of(&mut monitor, denied);
        assert!(err.contains("NOPERM"), "monitor ran {denied:?}: {err}");
    }
    let mut c = server.conn();
    assert_eq!(
        call(&mut c, &["GET", "app:key"]),
        redis::Value::BulkString(b"v".to_vec())
    );
    assert_eq!(config_get(&mut c, "maxmemory-policy"), "noeviction");
}
