//! Hashes whose fields carry their own TTLs (`HEXPIRE`, Redis 7.4+ and Valkey 9+) but whose
//! key has none. A ttl rule gives the key a TTL and leaves every field's TTL as it was;
//! RETENTION.REPORT counts the key as without TTL until then (field TTLs are not a key TTL)
//! and RETENTION.EXPLAIN plans `set_ttl`; replicas and an AOF reload keep each field's
//! expire time exactly. On a server without HEXPIRE (Redis 7.0) the test says so and stops.

mod common;

use std::path::Path;

use common::*;
use redis::{Connection, Value};

const POLICY: &str = r#"{"rules":[{"name":"h","match":"h:*","ttl":"1d"}]}"#;
const FIELDS: [&str; 3] = ["a", "b", "c"];

fn has_command(c: &mut Connection, name: &str) -> bool {
    let info = call(c, &["COMMAND", "INFO", name]);
    matches!(info, Value::Array(ref entries) if matches!(entries.first(), Some(Value::Array(_))))
}

/// Each field's absolute expire time in ms (-1: none), `HPEXPIRETIME key FIELDS 3 a b c`.
fn field_expire_times(c: &mut Connection, key: &str) -> Vec<i64> {
    let mut args = vec!["HPEXPIRETIME", key, "FIELDS", "3"];
    args.extend(FIELDS);
    redis::from_redis_value(&call(c, &args)).expect("HPEXPIRETIME reply")
}

/// Each field's remaining TTL in seconds (-1: none), `HTTL key FIELDS 3 a b c`.
fn field_ttls(c: &mut Connection, key: &str) -> Vec<i64> {
    let mut args = vec!["HTTL", key, "FIELDS", "3"];
    args.extend(FIELDS);
    redis::from_redis_value(&call(c, &args)).expect("HTTL reply")
}

fn key_expire_time(c: &mut Connection, key: &str) -> i64 {
    redis::from_redis_value(&call(c, &["PEXPIRETIME", key])).expect("PEXPIRETIME")
}

fn keys_without_ttl(c: &mut Connection) -> i64 {
    let report = call(c, &["RETENTION.REPORT"]);
    let total = map_field(&report, "total").expect("REPORT total");
    map_int(&total, "keys_without_ttl")
}

/// EXPLAIN's key expire time (None: the key has no TTL) and its planned action.
fn explain(c: &mut Connection, key: &str) -> (Option<i64>, String) {
    let reply = call(c, &["RETENTION.EXPLAIN", key]);
    let expire_at = match map_field(&reply, "expire_at_ms") {
        Some(Value::Int(ms)) => Some(ms),
        _ => None,
    };
    let now = map_field(&reply, "now").expect("EXPLAIN now");
    let action = map_str(&now, "action").expect("EXPLAIN now.action");
    (expire_at, action)
}

fn aof_opts(policy: &Path) -> ServerOpts {
    ServerOpts::default()
        .paused()
        .policy(policy)
        .aof()
        .config("repl-diskless-sync-delay", "0")
}

#[test]
fn a_ttl_rule_gives_a_hash_a_key_ttl_and_leaves_its_field_ttls() {
    let dir = scratch_dir("hfe");
    let policy = write_policy(&dir, POLICY);
    let master = Server::start_in(dir.clone(), aof_opts(&policy)).expect("master");
    let mut c = master.conn();
    if !has_command(&mut c, "HEXPIRE") {
        eprintln!(
            "skipped: this server ({:?}) has no HEXPIRE (hash-field TTLs need Redis 7.4+ or Valkey 9+)",
            ServerKind::of(&mut c)
        );
        return;
    }
    let replica = Server::start(ServerOpts::default().paused().policy(&policy)).expect("replica");
    attach_replica(&master, &replica);

    call(&mut c, &["HSET", "h:1", "a", "1", "b", "2", "c", "3"]);
    call(
        &mut c,
        &["HPEXPIRE", "h:1", "3600000", "FIELDS", "2", "a", "b"],
    );
    call(&mut c, &["HPEXPIRE", "h:1", "7200000", "FIELDS", "1", "b"]);
    call(&mut c, &["HSET", "h:2", "x", "1"]);
    let fields_before = field_expire_times(&mut c, "h:1");
    assert!(
        fields_before[0] > 0 && fields_before[1] > fields_before[0] && fields_before[2] == -1,
        "{fields_before:?}"
    );

    // Field TTLs are not a key TTL: both hashes are without one, and EXPLAIN plans to set it.
    assert_eq!(key_expire_time(&mut c, "h:1"), -1);
    assert_eq!(keys_without_ttl(&mut c), 2);
    assert_eq!(explain(&mut c, "h:1"), (None, "set_ttl".to_string()));

    let sweep = call(&mut c, &["RETENTION.SWEEP"]);
    assert_eq!(map_int(&sweep, "ttl_set"), 2, "{sweep:?}");

    let key_expire = key_expire_time(&mut c, "h:1");
    let day_ms = 86_400_000;
    assert!(
        (fields_before[1]..fields_before[1] + day_ms).contains(&key_expire),
        "key TTL of 1d: {key_expire}"
    );
    assert_eq!(
        field_expire_times(&mut c, "h:1"),
        fields_before,
        "field TTLs unchanged"
    );
    let ttls = field_ttls(&mut c, "h:1");
    assert!(
        (3590..=3600).contains(&ttls[0]) && (7190..=7200).contains(&ttls[1]) && ttls[2] == -1,
        "HTTL after the sweep: {ttls:?}"
    );
    assert_eq!(keys_without_ttl(&mut c), 0);
    let (explained_expire, action) = explain(&mut c, "h:1");
    assert_eq!(explained_expire, Some(key_expire));
    assert_eq!(action, "none");

    wait_replica_caught_up(&master, &replica);
    let mut r = replica.conn();
    assert_eq!(
        key_expire_time(&mut r, "h:1"),
        key_expire,
        "replica key TTL"
    );
    assert_eq!(
        field_expire_times(&mut r, "h:1"),
        fields_before,
        "replica field TTLs"
    );
    assert_eq!(field_ttls(&mut r, "h:1")[2], -1);
    drop(replica);

    let mut master = master;
    master.kill();
    let reloaded = Server::start_in(dir, aof_opts(&policy)).expect("restart from the AOF");
    let mut c = reloaded.conn();
    assert_eq!(key_expire_time(&mut c, "h:1"), key_expire, "AOF key TTL");
    assert_eq!(
        field_expire_times(&mut c, "h:1"),
        fields_before,
        "AOF field TTLs"
    );
    let ttls = field_ttls(&mut c, "h:1");
    assert!(
        ttls[0] > 0 && ttls[1] > ttls[0] && ttls[2] == -1,
        "{ttls:?}"
    );
}
