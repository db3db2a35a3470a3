//! Collection trimming on real servers: `trim` rules driven by `RETENTION.SWEEP`,
//! the `RETENTION.TRIM` command, replicas, AOF restarts, and bad rules at reload.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{attach_replica, map_int, now_ms, sweep, write_policy, zmembers, Server, ServerOpts};
use redis::Value;

const DAY_MS: i64 = 86_400_000;
/// No entry is created this close to the age boundary, so the few seconds between the test's
/// clock reading and the sweep's cannot change which entries are "older than 7 days".
const BOUNDARY_GAP_MS: i64 = 10 * 60_000;

/// Timestamps spanning `span_ms` up to now, `n` of them, minus those within the gap around
/// `boundary_ms`. The same formula is used by the Lua populators below.
fn timestamps(base_ms: i64, step_ms: i64, n: i64, boundary_ms: i64) -> Vec<i64> {
    (0..n)
        .map(|i| base_ms + i * step_ms)
        .filter(|t| (t - boundary_ms).abs() > BOUNDARY_GAP_MS)
        .collect()
}

const ADD_STREAM_LUA: &str = r#"
local base, step, n, b, gap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local added = 0
for i = 0, n - 1 do
  local t = base + i * step
  if math.abs(t - b) > gap then
    redis.call('XADD', KEYS[1], string.format('%.0f-0', t), 'n', i)
    added = added + 1
  end
end
return added
"#;

/// ZADD with scores = timestamps (divided by `ARGV[6]`: 1 for ms, 1000 for seconds).
const ADD_ZSET_LUA: &str = r#"
local base, step, n, b, gap, div = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local added = 0
for i = 0, n - 1 do
  local t = base + i * step
  if math.abs(t - b) > gap then
    redis.call('ZADD', KEYS[1], string.format('%.3f', t / div), 'm' .. i)
    added = added + 1
  end
end
return added
"#;

const RPUSH_LUA: &str = r#"
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('RPUSH', KEYS[1], i) end
return redis.call('LLEN', KEYS[1])
"#;

fn add_stream(c: &mut redis::Connection, key: &str, base: i64, step: i64, n: i64, boundary: i64) {
    let expected = timestamps(base, step, n, boundary).len() as i64;
    let added: i64 = redis::cmd("EVAL")
        .arg(ADD_STREAM_LUA)
        .arg(1)
        .arg(key)
        .arg(base)
        .arg(step)
        .arg(n)
        .arg(boundary)
        .arg(BOUNDARY_GAP_MS)
        .query(c)
        .expect("populate stream");
    assert_eq!(added, expected, "populating {key}");
}

/// A plain stream with ids `1-0 ..= n-0`, in Lua batches.
fn add_plain_stream(c: &mut redis::Connection, key: &str, n: i64) {
    const LUA: &str = "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('XADD', KEYS[1], i .. '-0', 'f', 'v') end return redis.call('XLEN', KEYS[1])";
    let batch = 250_000;
    let mut from = 1;
    while from <= n {
        let to = (from + batch - 1).min(n);
        let _: i64 = redis::cmd("EVAL")
            .arg(LUA)
            .arg(1)
            .arg(key)
            .arg(from)
            .arg(to)
            .query(c)
            .expect("populate stream");
        from = to + 1;
    }
}

fn rpush_range(c: &mut redis::Connection, key: &[u8], from: i64, to: i64) {
    let _: i64 = redis::cmd("EVAL")
        .arg(RPUSH_LUA)
        .arg(1)
        .arg(key)
        .arg(from)
        .arg(to)
        .query(c)
        .expect("populate list");
}

fn xlen(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("XLEN").arg(key).query(c).expect("XLEN")
}

/// Ids of the first and last entries of a stream.
fn stream_edges(c: &mut redis::Connection, key: &str) -> (String, String) {
    let first: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(c)
        .expect("XRANGE");
    let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(c)
        .expect("XREVRANGE");
    (first[0].0.clone(), last[0].0.clone())
}

fn int_list(c: &mut redis::Connection, key: &[u8]) -> Vec<i64> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(c)
        .expect("LRANGE")
}

fn master_opts(dir: &std::path::Path, policy_json: &str) -> ServerOpts {
    let path = write_policy(dir, policy_json);
    ServerOpts::default().paused().policy(&path).aof()
}

fn plain_replica() -> Server {
    Server::start(ServerOpts {
        no_module: true,
        ..Default::default()
    })
    .expect("replica")
}

fn info_field(server: &Server, field: &str) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut server.conn())
        .expect("INFO replication");
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// Waits until the replica has applied everything the master has propagated so far.
/// (`common::wait_replica_caught_up` runs WAIT on a fresh connection, whose own write offset
/// is 0, so it returns at once; and the sweep's writes come from timers, not from a client.)
fn wait_replica_synced(master: &Server, replica: &Server) {
    let target = info_field(master, "master_repl_offset");
    let synced = common::wait_until(Duration::from_secs(60), || {
        info_field(replica, "slave_repl_offset") >= target
    });
    assert!(synced, "replica did not reach offset {target}");
}

/// Every key's name and `DEBUG DIGEST-VALUE`, to say which keys differ.
fn key_digests(server: &Server) -> Vec<(Vec<u8>, String)> {
    let mut c = server.conn();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
    keys.into_iter()
        .map(|k| {
            let d: Vec<String> = redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(&k)
                .query(&mut c)
                .expect("DIGEST-VALUE");
            (k, d.concat())
        })
        .collect()
}

/// The replica ends up byte-identical, and so does the master after an AOF reload.
fn assert_replica_and_aof_agree(master: &mut Server, replica: &Server, opts: &ServerOpts) {
    wait_replica_synced(master, replica);
    let digest = master.digest();
    if replica.digest() != digest {
        let (ours, theirs) = (key_digests(master), key_digests(replica));
        let only_master: Vec<_> = ours.iter().filter(|k| !theirs.contains(k)).collect();
        let only_replica: Vec<_> = theirs.iter().filter(|k| !ours.contains(k)).collect();
        panic!(
            "replica differs from the master; (key, digest) only on the master: {only_master:?}, only on the replica: {only_replica:?}"
        );
    }
    master.kill();
    let restarted = Server::start_in(master.dir.clone(), opts.clone()).expect("restart from AOF");
    assert_eq!(
        restarted.digest(),
        digest,
        "the AOF reload differs from the master"
    );
}

#[test]
fn stream_rules_trim_by_age_and_length() {
    let dir = common::scratch_dir("trim-streams");
    let policy = r#"{"rules":[
        {"name":"age","match":"s:age","type":"stream","trim":{"max_age":"7d"}},
        {"name":"len","match":"s:len","type":"stream","trim":{"max_len":12345}},
        {"name":"approx","match":"s:approx","type":"stream","trim":{"max_len":12345,"approx":true}},
        {"name":"len-wins","match":"s:len-wins","type":"stream","trim":{"max_len":5000,"max_age":"7d"}},
        {"name":"age-wins","match":"s:age-wins","type":"stream","trim":{"max_len":19000,"max_age":"7d"}},
        {"name":"age-approx","match":"s:age-approx","type":"stream","trim":{"max_age":"7d","approx":true}},
        {"name":"not-a-stream","match":"s:list","type":"stream","trim":{"max_len":1}}]}"#;
    let opts = master_opts(&dir, policy);
    let mut master = Server::start_in(dir, opts.clone()).expect("master");
    let replica = plain_replica();
    attach_replica(&master, &replica);
    let mut c = master.conn();

    let now = now_ms();
    let boundary = now - 7 * DAY_MS;
    let base = now - 10 * DAY_MS;
    // 200k entries over 10 days; smaller streams where the size does not matter.
    let big = 200_000;
    let step = 10 * DAY_MS / big;
    let small = 20_000;
    let small_step = 10 * DAY_MS / small;
    for key in ["s:age", "s:len", "s:approx", "s:age-approx"] {
        add_stream(&mut c, key, base, step, big, boundary);
    }
    for key in ["s:len-wins", "s:age-wins"] {
        add_stream(&mut c, key, base, small_step, small, boundary);
    }
    rpush_range(&mut c, b"s:list", 1, 100);
    let all = timestamps(base, step, big, boundary);
    let newer = all.iter().filter(|t| **t > boundary).count() as i64;
    let small_all = timestamps(base, small_step, small, boundary);
    let small_newer = small_all.iter().filter(|t| **t > boundary).count() as i64;
    assert!(small_newer < 19_000 && small_newer > 5_000);

    let report = sweep(&mut c, &[]);
    let trimmed = map_int(&report, "entries_trimmed");
    println!(
        "stream sweep: {trimmed} entries trimmed in {} slices, max slice {} us",
        map_int(&report, "slices"),
        map_int(&report, "max_slice_us")
    );

    // max_age: exactly the entries newer than 7 days, the oldest one first.
    assert_eq!(xlen(&mut c, "s:age"), newer);
    let first_newer = all.iter().find(|t| **t > boundary).copied().unwrap_or(0);
    assert_eq!(stream_edges(&mut c, "s:age").0, format!("{first_newer}-0"));
    // max_len exact: exactly N, the newest.
    assert_eq!(xlen(&mut c, "s:len"), 12345);
    let nth_newest = all[all.len() - 12345];
    assert_eq!(stream_edges(&mut c, "s:len").0, format!("{nth_newest}-0"));
    // approx: whole nodes only: at least N, at most one node (100 entries) more.
    let approx_len = xlen(&mut c, "s:approx");
    assert!(
        (12345..=12345 + 100).contains(&approx_len),
        "approx left {approx_len}"
    );
    let age_approx_len = xlen(&mut c, "s:age-approx");
    assert!(
        (newer..=newer + 100).contains(&age_approx_len),
        "approx age trim left {age_approx_len}, newer {newer}"
    );
    // Both limits: the stricter wins.
    assert_eq!(xlen(&mut c, "s:len-wins"), 5000);
    assert_eq!(xlen(&mut c, "s:age-wins"), small_newer);
    // The last entry always stays.
    let last = format!("{}-0", all[all.len() - 1]);
    for key in ["s:age", "s:len", "s:approx", "s:age-approx"] {
        assert_eq!(stream_edges(&mut c, key).1, last, "{key}");
    }
    // A key of another type than the rule's is left alone.
    let list_len: i64 = redis::cmd("LLEN")
        .arg("s:list")
        .query(&mut c)
        .expect("LLEN");
    assert_eq!(list_len, 100);

    let removed = 4 * all.len() as i64 + 2 * small_all.len() as i64
        - (newer + 12345 + approx_len + age_approx_len + 5000 + small_newer);
    assert_eq!(
        trimmed, removed,
        "entries_trimmed counts every removed entry"
    );
    assert_replica_and_aof_agree(&mut master, &replica, &opts);
}

#[test]
fn list_and_zset_rules_leave_exactly_the_expected_members() {
    let dir = common::scratch_dir("trim-coll");
    let policy = r#"{"rules":[
        {"name":"head","match":"l:head","type":"list","trim":{"max_len":100}},
        {"name":"tail","match":"l:tail","type":"list","trim":{"max_len":100,"newest":"tail"}},
        {"name":"empty","match":"l:zero","type":"list","trim":{"max_len":0}},
        {"name":"top","match":"z:len","type":"zset","trim":{"max_len":100}},
        {"name":"ms","match":"z:ms","type":"zset","trim":{"max_age":"7d"}},
        {"name":"s","match":"z:s","type":"zset","trim":{"max_age":"7d","score_unit":"s"}},
        {"name":"both","match":"z:both","type":"zset","trim":{"max_age":"7d","max_len":50}}]}"#;
    let opts = master_opts(&dir, policy);
    let mut master = Server::start_in(dir, opts.clone()).expect("master");
    let replica = plain_replica();
    attach_replica(&master, &replica);
    let mut c = master.conn();

    let n = 50_000;
    rpush_range(&mut c, b"l:head", 0, n - 1);
    rpush_range(&mut c, b"l:tail", 0, n - 1);
    rpush_range(&mut c, b"l:zero", 0, 999);
    let _: i64 = redis::cmd("EVAL")
        .arg("for i = 0, tonumber(ARGV[1]) - 1 do redis.call('ZADD', KEYS[1], i, 'm' .. i) end return 1")
        .arg(1)
        .arg("z:len")
        .arg(n)
        .query(&mut c)
        .expect("populate z:len");
    let now = now_ms();
    let boundary = now - 7 * DAY_MS;
    let base = now - 10 * DAY_MS;
    let step = 10 * DAY_MS / n;
    for (key, div) in [("z:ms", 1), ("z:s", 1000), ("z:both", 1)] {
        let added: i64 = redis::cmd("EVAL")
            .arg(ADD_ZSET_LUA)
            .arg(1)
            .arg(key)
            .arg(base)
            .arg(step)
            .arg(n)
            .arg(boundary)
            .arg(BOUNDARY_GAP_MS)
            .arg(div)
            .query(&mut c)
            .expect("populate zset");
        assert_eq!(added as usize, timestamps(base, step, n, boundary).len());
    }
    let newer: Vec<String> = (0..n)
        .filter(|i| {
            let t = base + i * step;
            (t - boundary).abs() > BOUNDARY_GAP_MS && t > boundary
        })
        .map(|i| format!("m{i}"))
        .collect();

    let report = sweep(&mut c, &[]);
    println!(
        "list/zset sweep: {} entries trimmed in {} slices, max slice {} us",
        map_int(&report, "entries_trimmed"),
        map_int(&report, "slices"),
        map_int(&report, "max_slice_us")
    );

    assert_eq!(int_list(&mut c, b"l:head"), (0..100).collect::<Vec<_>>());
    assert_eq!(
        int_list(&mut c, b"l:tail"),
        (n - 100..n).collect::<Vec<_>>()
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg("l:zero")
        .query(&mut c)
        .expect("EXISTS");
    assert_eq!(exists, 0, "max_len 0 empties (and so deletes) the list");
    let top: Vec<String> = (n - 100..n).map(|i| format!("m{i}")).collect();
    assert_eq!(zmembers(&mut c, "z:len"), top);
    // ZRANGE orders by score, which follows the member index here.
    assert_eq!(zmembers(&mut c, "z:ms"), newer);
    assert_eq!(zmembers(&mut c, "z:s"), newer);
    assert_eq!(
        zmembers(&mut c, "z:both"),
        newer[newer.len() - 50..].to_vec()
    );
    assert_replica_and_aof_agree(&mut master, &replica, &opts);
}

#[test]
fn dry_run_sweep_counts_without_changing() {
    let policy = r#"{"rules":[
        {"name":"s","match":"s","type":"stream","trim":{"max_age":"7d","max_len":100}},
        {"name":"l","match":"l","type":"list","trim":{"max_len":10}},
        {"name":"z","match":"z","type":"zset","trim":{"max_age":"1d"}}]}"#;
    let server = Server::start_paused(Some(policy));
    let mut c = server.conn();
    let now = now_ms();
    let boundary = now - 7 * DAY_MS;
    // Small pages: the dry-run count of old stream entries spans many XRANGE pages.
    add_stream(
        &mut c,
        "s",
        now - 10 * DAY_MS,
        10 * DAY_MS / 30_000,
        30_000,
        boundary,
    );
    rpush_range(&mut c, b"l", 1, 25);
    let _: i64 = redis::cmd("ZADD")
        .arg("z")
        .arg(now - 2 * DAY_MS)
        .arg("old")
        .arg(now)
        .arg("new")
        .query(&mut c)
        .expect("ZADD");
    let stream_len = xlen(&mut c, "s");
    let older = timestamps(now - 10 * DAY_MS, 10 * DAY_MS / 30_000, 30_000, boundary)
        .iter()
        .filter(|t| **t < boundary)
        .count() as i64;
    let digest = server.digest();

    let report = sweep(&mut c, &["DRYRUN"]);
    assert_eq!(map_int(&report, "dry_run"), 1);
    assert_eq!(
        map_int(&report, "entries_trimmed"),
        (stream_len - 100).max(older) + 15 + 1
    );
    assert_eq!(server.digest(), digest, "a dry run changes nothing");

    // The same keys through RETENTION.TRIM ... DRYRUN.
    let would: i64 = redis::cmd("RETENTION.TRIM")
        .arg("s")
        .arg("MAXAGE")
        .arg("7d")
        .arg("DRYRUN")
        .query(&mut c)
        .expect("dry trim");
    assert_eq!(would, older);
    let would: i64 = redis::cmd("RETENTION.TRIM")
        .arg("l")
        .arg("MAXLEN")
        .arg(3)
        .arg("DRYRUN")
        .query(&mut c)
        .expect("dry trim");
    assert_eq!(would, 22);
    assert_eq!(server.digest(), digest, "a dry run changes nothing");
}

/// Max PING round trip seen by a second client while `f` runs on the first.
fn max_ping_latency_during(server: &Server, f: impl FnOnce()) -> (Duration, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut pinger = server.conn();
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut pings = 0u64;
        while !flag.load(Ordering::Relaxed) {
            let t = Instant::now();
            let pong: String = redis::cmd("PING").query(&mut pinger).expect("PING");
            assert_eq!(pong, "PONG");
            worst = worst.max(t.elapsed());
            pings += 1;
        }
        (worst, pings)
    });
    f();
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("pinger thread")
}

#[test]
fn trimming_two_million_entries_does_not_stall_other_clients() {
    let policy = r#"{"rules":[
        {"name":"big","match":"big","type":"stream","trim":{"max_len":1000}}]}"#;
    let server = Server::start_paused(Some(policy));
    let mut c = server.conn();
    let n = 2_000_000;
    let started = Instant::now();
    add_plain_stream(&mut c, "big", n);
    println!("populated {n} stream entries in {:?}", started.elapsed());

    let (idle_worst, idle_pings) =
        max_ping_latency_during(&server, || std::thread::sleep(Duration::from_millis(200)));
    println!("baseline: {idle_pings} PINGs in 200 ms while idle, max latency {idle_worst:?}");
    let mut report = Value::Nil;
    let (worst, pings) = max_ping_latency_during(&server, || {
        report = sweep(&mut c, &[]);
    });
    println!(
        "sweep trimmed {} entries in {} ms, {} slices, max slice {} us; other client: {pings} PINGs, max latency {:?}",
        map_int(&report, "entries_trimmed"),
        map_int(&report, "duration_ms"),
        map_int(&report, "slices"),
        map_int(&report, "max_slice_us"),
        worst
    );
    assert_eq!(map_int(&report, "entries_trimmed"), n - 1000);
    assert_eq!(xlen(&mut c, "big"), 1000);
    assert_eq!(stream_edges(&mut c, "big").0, format!("{}-0", n - 999));

    // The direct command on a big key blocks only its caller.
    add_plain_stream(&mut c, "big2", 1_000_000);
    let _: () = redis::cmd("RETENTION.STATS")
        .arg("RESET")
        .query(&mut c)
        .expect("STATS RESET");
    let (idle_worst, idle_pings) =
        max_ping_latency_during(&server, || std::thread::sleep(Duration::from_millis(200)));
    println!("baseline: {idle_pings} PINGs in 200 ms while idle, max latency {idle_worst:?}");
    let mut removed = 0;
    let (worst, pings) = max_ping_latency_during(&server, || {
        removed = redis::cmd("RETENTION.TRIM")
            .arg("big2")
            .arg("MAXLEN")
            .arg(10)
            .query(&mut c)
            .expect("RETENTION.TRIM");
    });
    let stats: Value = redis::cmd("RETENTION.STATS")
        .arg("GET")
        .query(&mut c)
        .expect("STATS");
    println!(
        "RETENTION.TRIM removed {removed}; max slice {} us; other client: {pings} PINGs, max latency {worst:?}",
        map_int(&stats, "max_slice_us")
    );
    assert_eq!(removed, 1_000_000 - 10);
    assert_eq!(xlen(&mut c, "big2"), 10);
}

#[test]
fn trim_command_works_on_every_type_and_replicates() {
    let dir = common::scratch_dir("trim-cmd");
    let opts = master_opts(&dir, r#"{"rules":[]}"#);
    let mut master = Server::start_in(dir, opts.clone()).expect("master");
    let replica = plain_replica();
    attach_replica(&master, &replica);
    let mut c = master.conn();
    // A tiny budget forces the blocked, timer-sliced path even for these modest keys.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.sweep-budget-us")
        .arg(50)
        .query(&mut c)
        .expect("CONFIG SET");
    let trim = |c: &mut redis::Connection, key: &[u8], words: &[&str]| -> i64 {
        redis::cmd("RETENTION.TRIM")
            .arg(key)
            .arg(words)
            .query(c)
            .expect("RETENTION.TRIM")
    };

    let binary_list: &[u8] = b"list:\x00\xff";
    rpush_range(&mut c, binary_list, 0, 199_999);
    assert_eq!(trim(&mut c, binary_list, &["MAXLEN", "10"]), 199_990);
    assert_eq!(int_list(&mut c, binary_list), (0..10).collect::<Vec<_>>());
    rpush_range(&mut c, b"tail", 0, 99);
    assert_eq!(
        trim(&mut c, b"tail", &["MAXLEN", "3", "NEWEST", "TAIL"]),
        97
    );
    assert_eq!(int_list(&mut c, b"tail"), vec![97, 98, 99]);

    let now = now_ms();
    let boundary = now - DAY_MS;
    add_stream(
        &mut c,
        "st",
        now - 2 * DAY_MS,
        2 * DAY_MS / 100_000,
        100_000,
        boundary,
    );
    let all = timestamps(now - 2 * DAY_MS, 2 * DAY_MS / 100_000, 100_000, boundary);
    let newer = all.iter().filter(|t| **t > boundary).count() as i64;
    assert_eq!(
        trim(&mut c, b"st", &["MAXAGE", "1d"]),
        all.len() as i64 - newer
    );
    assert_eq!(xlen(&mut c, "st"), newer);
    let approx_removed = trim(&mut c, b"st", &["MAXLEN", "777", "APPROX"]);
    let left = xlen(&mut c, "st");
    assert!((777..=877).contains(&left), "approx left {left}");
    assert_eq!(approx_removed, newer - left);

    let _: i64 = redis::cmd("EVAL")
        .arg("for i = 0, 99999 do redis.call('ZADD', KEYS[1], i, 'm' .. i) end return 1")
        .arg(1)
        .arg("zs")
        .query(&mut c)
        .expect("populate zset");
    assert_eq!(trim(&mut c, b"zs", &["MAXLEN", "5"]), 99_995);
    assert_eq!(
        zmembers(&mut c, "zs"),
        vec!["m99995", "m99996", "m99997", "m99998", "m99999"]
    );
    let _: i64 = redis::cmd("ZADD")
        .arg("secs")
        .arg(now / 1000 - 7200)
        .arg("old")
        .arg(now / 1000)
        .arg("new")
        .query(&mut c)
        .expect("ZADD");
    assert_eq!(
        trim(&mut c, b"secs", &["MAXAGE", "1h", "SCOREUNIT", "S"]),
        1
    );
    assert_eq!(zmembers(&mut c, "secs"), vec!["new"]);

    // Inside MULTI the client cannot block: the trim runs to completion in the transaction.
    rpush_range(&mut c, b"inmulti", 0, 99_999);
    let (n,): (i64,) = redis::pipe()
        .atomic()
        .cmd("RETENTION.TRIM")
        .arg("inmulti")
        .arg("MAXLEN")
        .arg(1)
        .query(&mut c)
        .expect("MULTI");
    assert_eq!(n, 99_999);
    // Likewise from a script.
    rpush_range(&mut c, b"inlua", 0, 99_999);
    let n: i64 = redis::cmd("EVAL")
        .arg("return redis.call('RETENTION.TRIM', KEYS[1], 'MAXLEN', '2', 'NEWEST', 'TAIL')")
        .arg(1)
        .arg("inlua")
        .query(&mut c)
        .expect("EVAL");
    assert_eq!(n, 99_998);
    assert_eq!(int_list(&mut c, b"inlua"), vec![99_998, 99_999]);
    let stats: Value = redis::cmd("RETENTION.STATS")
        .arg("GET")
        .query(&mut c)
        .expect("STATS");
    assert!(map_int(&stats, "entries_trimmed") >= 199_990 + 97 + 99_995 + 99_999);
    assert_replica_and_aof_agree(&mut master, &replica, &opts);
}

#[test]
fn trim_command_rejects_bad_input_and_changes_nothing() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    rpush_range(&mut c, b"l", 1, 10);
    let _: () = redis::cmd("SET")
        .arg("str")
        .arg("x")
        .query(&mut c)
        .expect("SET");
    let _: i64 = redis::cmd("ZADD")
        .arg("z")
        .arg(1)
        .arg("a")
        .query(&mut c)
        .expect("ZADD");
    let digest = server.digest();
    let cases: &[(&[&str], &str)] = &[
        (&[], "wrong number of arguments"),
        // The server checks the arity it was told (a key and at least one option with its
        // value); the module's own checks follow.
        (&["l"], "wrong number of arguments"),
        (&["l", "MAXLEN"], "wrong number of arguments"),
        (&["l", "DRYRUN", "APPROX"], "needs MAXLEN"),
        (&["l", "DRYRUN", "MAXLEN"], "MAXLEN needs a count"),
        (&["l", "MAXLEN", "-5"], "whole number >= 0"),
        (&["l", "MAXLEN", "abc"], "whole number >= 0"),
        (
            &["l", "MAXLEN", "99999999999999999999999"],
            "whole number >= 0",
        ),
        (&["l", "MAXAGE", "1d"], "MAXAGE does not apply to a list"),
        (&["l", "MAXAGE", "-1d"], "bad duration"),
        (
            &["l", "MAXLEN", "1", "APPROX"],
            "APPROX only applies to a stream",
        ),
        (
            &["z", "MAXLEN", "1", "NEWEST", "TAIL"],
            "NEWEST only applies to a list",
        ),
        (
            &["l", "MAXLEN", "1", "SCOREUNIT", "S"],
            "SCOREUNIT only applies to a zset",
        ),
        (&["l", "MAXLEN", "1", "NEWEST", "SIDE"], "HEAD or TAIL"),
        (&["l", "MAXLEN", "1", "MAXLEN", "2"], "given twice"),
        (&["l", "MAXLEN", "1", "NOW"], "unknown option 'NOW'"),
        (&["str", "MAXLEN", "1"], "WRONGTYPE"),
    ];
    for (args, want) in cases {
        let err = redis::cmd("RETENTION.TRIM")
            .arg(*args)
            .query::<Value>(&mut c)
            .expect_err(&format!("{args:?} should fail"));
        let text = format!("{err}");
        assert!(text.contains(want), "{args:?}: {text}");
    }
    let missing: i64 = redis::cmd("RETENTION.TRIM")
        .arg("nokey")
        .arg("MAXLEN")
        .arg(0)
        .query(&mut c)
        .expect("missing key");
    assert_eq!(missing, 0);
    assert_eq!(server.digest(), digest, "failed calls change nothing");
}

#[test]
fn bad_trim_rules_are_rejected_and_the_old_policy_stays() {
    let good = r#"{"rules":[{"name":"t","match":"s:*","type":"stream","trim":{"max_len":10}}]}"#;
    let server = Server::start_paused(Some(good));
    let mut c = server.conn();
    let policy_of = |c: &mut redis::Connection| -> String {
        let v: Value = redis::cmd("RETENTION.POLICY").query(c).expect("POLICY");
        common::flat_map(&v)
            .into_iter()
            .find(|(k, _)| k == "policy")
            .map(|(_, v)| redis::from_redis_value::<String>(&v).expect("policy text"))
            .expect("policy field")
    };
    let before = policy_of(&mut c);
    let path = server.dir.join("policy.json");
    let bad_rules = [
        (
            r#"{"rules":[{"name":"t","match":"s:*","type":"stream","trim":{"max_len":-1}}]}"#,
            "trim.max_len: must be a whole number",
        ),
        (
            r#"{"rules":[{"name":"t","match":"l:*","type":"list","trim":{"max_len":5,"newest":"middle"}}]}"#,
            "trim.newest: must be",
        ),
        (
            r#"{"rules":[{"name":"t","match":"l:*","type":"list","trim":{"max_age":"1d"}}]}"#,
            "a list has no timestamps",
        ),
        (
            r#"{"rules":[{"name":"t","match":"z:*","type":"zset","trim":{"max_age":"1d","score_unit":"us"}}]}"#,
            "trim.score_unit: must be",
        ),
        (
            r#"{"rules":[{"name":"t","match":"s:[abc","type":"stream","trim":{"max_len":1}}]}"#,
            "unterminated '['",
        ),
    ];
    for (i, (json, want)) in bad_rules.iter().enumerate() {
        std::fs::write(&path, json).expect("write bad policy");
        let err = redis::cmd("RETENTION.RELOAD")
            .query::<Value>(&mut c)
            .expect_err("reload of a bad policy must fail");
        assert!(format!("{err}").contains(want), "reload: {err}");
        let other = server.dir.join(format!("bad-{i}.json"));
        std::fs::write(&other, json).expect("write bad policy");
        let err = redis::cmd("CONFIG")
            .arg("SET")
            .arg("retention.policy-file")
            .arg(other.display().to_string())
            .query::<Value>(&mut c)
            .expect_err("CONFIG SET of a bad policy must fail");
        assert!(format!("{err}").contains(want), "config set: {err}");
        assert_eq!(policy_of(&mut c), before, "the old policy stays in force");
    }
    let file: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("retention.policy-file")
        .query(&mut c)
        .expect("CONFIG GET");
    assert_eq!(file[1], path.display().to_string());

    // And the old rule still works.
    add_plain_stream(&mut c, "s:x", 50);
    sweep(&mut c, &[]);
    assert_eq!(xlen(&mut c, "s:x"), 10);
}
