//! `scripts/bench`: redis-retention against the ways people clean a keyspace today, side by
//! side in one run, on the same freshly populated keyspace.
//!
//! Usage: cargo run --release --example bench -- [--keys N] [--smoke] [--only a,b,...] [--rounds N]
//! `--smoke` checks that every approach reached the right end state (no timing checks).
//! `--rounds N` (default 3, 1 with --smoke) repeats the server-side approaches on freshly
//! populated servers and shows the median: one VM's runs differ by up to ±20%.
//! `--only` runs some approaches: idle, cron, pipelined, lua, module, background, queue, runs,
//! ties, steady. `runs` and `ties` are latency checks against the idle control: a dry run of a
//! `runs` rule over many expired runs, and ACTIVERUNS.AFTER past a deleted marker among many
//! runs of one score.
//! `--rtt 0.5ms` runs the client-side approaches (cron, pipelined, lua, module) with their
//! client behind a latency proxy on loopback that adds that round trip (see
//! `bench/runs/src/proxy.rs`); the PING watcher stays direct: it measures the server.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../bench/runs/src/proxy.rs"]
mod proxy;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use redis::{Connection, Value};

const PREFIX: &str = "celery-task-meta-";
const TTL_S: i64 = 86_400;
const POLICY: &str = r#"{"rules":[{"name":"celery","match":"celery-task-meta-*","ttl":"1d"},
                                  {"name":"bench","match":"key:*","ttl":"1h"}]}"#;
/// The sequential cron loop manages a few thousand keys/s: measure it on a sample.
const CRON_SAMPLE_KEYS: u64 = 30_000;
/// Over a network round trip it manages a few hundred keys/s.
const CRON_SAMPLE_KEYS_RTT: u64 = 3_000;
/// The approaches whose client talks to the server while they run (the others run in the
/// server): what `--rtt` measures unless `--only` says otherwise.
const CLIENT_APPROACHES: [&str; 4] = ["cron", "pipelined", "lua", "module"];
/// The Node cron loop (ioredis, as operators' scripts use it); its packages come from the
/// Node workspace under tests/compat (`npm ci`, done by scripts/bench).
const CRON_LOOP_JS: &str = "tests/compat/bench/cron-loop.js";
const APPROACHES: [&str; 10] = [
    "idle",
    "cron",
    "pipelined",
    "lua",
    "module",
    "background",
    "queue",
    "runs",
    "ties",
    "steady",
];
/// Rows that count jobs, runs or calls, not keys: no ratio to the key sweep.
const NOT_KEY_ROWS: [&str; 3] = [
    "background sweeper cleaning a Bull queue",
    "SWEEP DRYRUN of a runs rule",
    "ACTIVERUNS.AFTER past",
];
/// Expired runs in one run set for the `runs` dry run, per key of `--keys` (500k at 1M).
const EXPIRED_RUNS_PER_KEY: f64 = 0.5;
/// Equal-score runs for the `ties` AFTER walk, per key of `--keys` (300k at 1M).
const TIED_RUNS_PER_KEY: f64 = 0.3;
/// AFTER calls the `ties` approach makes past a deleted marker.
const TIED_AFTER_CALLS: u64 = 2_000;
/// Finished jobs of the Bull queue the background sweeper cleans, per key of `--keys`
/// (350k at the default 1M: a size at which PING stalls were once measured).
const QUEUE_JOBS_PER_KEY: f64 = 0.35;
/// PINGs slower than this are counted (a slice may make a client wait one budget, 1 ms).
const SLOW_PING_MS: f64 = 3.0;
/// How long the pinger watches an idle server: the machine's own latency noise.
const IDLE_WATCH: Duration = Duration::from_secs(3);
const IDLE_WATCH_SMOKE: Duration = Duration::from_millis(300);

struct Args {
    keys: u64,
    smoke: bool,
    only: Vec<String>,
    rounds: Option<usize>,
    rtt: Option<Duration>,
}

impl Args {
    fn runs(&self, approach: &str) -> bool {
        match self.only.is_empty() {
            true if self.rtt.is_some() => CLIENT_APPROACHES.contains(&approach),
            true => true,
            false => self.only.iter().any(|a| a == approach),
        }
    }

    fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.smoke { 1 } else { 3 })
    }
}

/// Runs an approach `rounds` times (each on a fresh server) and keeps, for each of its rows,
/// the round with the median time.
fn median_rounds(rounds: usize, mut run: impl FnMut() -> Vec<Row>) -> Vec<Row> {
    let mut runs: Vec<Vec<Row>> = (0..rounds).map(|_| run()).collect();
    let width = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..width)
        .map(|_| {
            let mut column: Vec<Row> = runs.iter_mut().map(|r| r.remove(0)).collect();
            column.sort_by(|a, b| a.secs.total_cmp(&b.secs));
            let times = column
                .iter()
                .map(|r| format!("{:.2}", r.secs))
                .collect::<Vec<_>>()
                .join(", ");
            let mut median = column.swap_remove(column.len() / 2);
            if rounds > 1 {
                let sep = if median.note.is_empty() { "" } else { "; " };
                median.note = format!("{}{sep}median of {rounds} rounds: {times} s", median.note);
            }
            median
        })
        .collect()
}

fn parse_args() -> Args {
    let mut args = Args {
        keys: 1_000_000,
        smoke: false,
        only: Vec::new(),
        rounds: None,
        rtt: None,
    };
    let mut it = std::env::args().skip(1).peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--keys" => {
                args.keys = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--keys needs a number")
            }
            "--smoke" => args.smoke = true,
            "--rounds" => {
                args.rounds = it.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0);
                assert!(args.rounds.is_some(), "--rounds needs a number above 0");
            }
            "--only" => {
                let list = it.next().expect("--only needs a list such as module,lua");
                args.only = list.split(',').map(str::to_string).collect();
                if let Some(bad) = args.only.iter().find(|a| !APPROACHES.contains(&a.as_str())) {
                    panic!("unknown approach {bad} (one of {})", APPROACHES.join(", "));
                }
            }
            "--rtt" => {
                let v = match it.peek() {
                    Some(v) if !v.starts_with("--") => it.next().unwrap_or_default(),
                    _ => "0.5ms".into(),
                };
                args.rtt = Some(
                    proxy::parse_duration(&v)
                        .unwrap_or_else(|| panic!("--rtt needs a duration such as 0.5ms (got {v})")),
                );
            }
            other => panic!(
                "unknown argument {other} (use --keys N, --smoke, --only a,b, --rounds N, --rtt 0.5ms)"
            ),
        }
    }
    args
}

struct Row {
    approach: &'static str,
    keys: u64,
    secs: f64,
    ping: PingStats,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.keys as f64 / self.secs.max(1e-9)
    }
}

#[derive(Default, Clone, Copy)]
struct PingStats {
    max_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    samples: usize,
    /// PINGs slower than `SLOW_PING_MS`.
    slow: usize,
}

/// A client that sends PING every millisecond and records how long each took.
struct Pinger {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<f64>>,
}

impl Pinger {
    fn start(server: &Server) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut c = server.conn();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                // A server stuck in a long script answers BUSY: it is not serving us either,
                // so the wait counts until a real PONG.
                while redis::cmd("PING").query::<String>(&mut c).is_err() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
                std::thread::sleep(Duration::from_millis(1));
            }
            samples
        });
        Pinger { stop, handle }
    }

    fn finish(self) -> PingStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut s = self.handle.join().expect("pinger");
        s.sort_by(|a, b| a.total_cmp(b));
        let pick = |q: f64| {
            s.get(((s.len() as f64 * q) as usize).min(s.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        PingStats {
            max_ms: s.last().copied().unwrap_or(0.0),
            p99_ms: pick(0.99),
            p999_ms: pick(0.999),
            samples: s.len(),
            slow: s.iter().filter(|&&ms| ms > SLOW_PING_MS).count(),
        }
    }
}

fn plain_server() -> Server {
    Server::start(ServerOpts {
        no_module: true,
        ..ServerOpts::default()
    })
    .expect("plain server")
}

/// A server with the module and `policy_json`, doing nothing on its own (no background
/// sweeper, no new-key tracking) until the approach turns it on or sends a command.
fn idle_server_with(tag: &str, policy_json: &str) -> Server {
    let dir = scratch_dir(tag);
    let policy = write_policy(&dir, policy_json);
    let opts = ServerOpts::default()
        .policy(&policy)
        .module_arg("enabled", "no")
        .module_arg("track-new-keys", "no");
    Server::start_in(dir, opts).expect("module server")
}

fn module_server(enabled: bool) -> Server {
    let dir = scratch_dir("bench");
    let policy = write_policy(&dir, POLICY);
    let opts = ServerOpts::default()
        .policy(&policy)
        .module_arg("enabled", if enabled { "yes" } else { "no" })
        .module_arg("track-new-keys", "no");
    Server::start_in(dir, opts).expect("module server")
}

/// `--rtt`: the round trip added between the timed clients and their server.
struct Net {
    rtt: Duration,
    /// The hold per direction that makes PING through a proxy measure `rtt` here.
    hold: Duration,
    /// The proxy's own check, printed with the results.
    check: String,
}

impl Net {
    fn calibrate(rtt: Duration) -> Net {
        let server = plain_server();
        let front = proxy::LatencyProxy::start(server.port, rtt).expect("latency proxy");
        let cal = front
            .calibrate(server.port, rtt)
            .expect("PING through the latency proxy");
        Net {
            rtt,
            hold: cal.hold,
            check: cal.describe(),
        }
    }

    /// A latency proxy in front of `server`.
    fn front(&self, server: &Server) -> proxy::LatencyProxy {
        let front = proxy::LatencyProxy::start(server.port, self.rtt).expect("latency proxy");
        front.set_hold(self.hold);
        front
    }
}

/// The timed client's connection: direct, or through a latency proxy (returned, to be kept
/// alive as long as the connection is used).
fn client_side(server: &Server, net: Option<&Net>) -> (Connection, Option<proxy::LatencyProxy>) {
    let Some(net) = net else {
        return (server.conn(), None);
    };
    let front = net.front(server);
    let c = redis::Client::open(format!("redis://127.0.0.1:{}/", front.port))
        .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(5)))
        .expect("connect through the latency proxy");
    c.set_read_timeout(Some(Duration::from_secs(600)))
        .expect("set timeout");
    (c, Some(front))
}

fn populate(c: &mut Connection, keys: u64) {
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(keys)
        .arg(PREFIX)
        .query(c)
        .expect("DEBUG POPULATE");
}

/// Keys still without a TTL (a server-side count; fine for a check).
fn keys_without_ttl(c: &mut Connection) -> i64 {
    redis::cmd("EVAL")
        .arg("local n,cur=0,'0' repeat local r=redis.call('SCAN',cur,'COUNT',1000) cur=r[1] for _,k in ipairs(r[2]) do if redis.call('PTTL',k)==-1 then n=n+1 end end until cur=='0' return n")
        .arg(0)
        .query(c)
        .expect("count keys without TTL")
}

fn timed<T>(server: &Server, f: impl FnOnce() -> T) -> (T, f64, PingStats) {
    let pinger = Pinger::start(server);
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    let out = f();
    let secs = t.elapsed().as_secs_f64();
    (out, secs, pinger.finish())
}

/// Approach 1: What cron scripts do: SCAN COUNT 100, then TTL and EXPIRE per key, one
/// round trip each, from Node with ioredis (the client most such scripts use).
fn cron_loop(keys: u64, smoke: bool, net: Option<&Net>) -> Row {
    let server = plain_server();
    let mut c = server.conn();
    populate(&mut c, keys);
    let sample = keys.min(match net {
        Some(_) => CRON_SAMPLE_KEYS_RTT,
        None => CRON_SAMPLE_KEYS,
    });
    let front = net.map(|n| n.front(&server));
    let port = front.as_ref().map_or(server.port, |f| f.port);
    let (out, _, ping) = timed(&server, || {
        Command::new("node")
            .arg(CRON_LOOP_JS)
            .arg(port.to_string())
            .arg(format!("{PREFIX}*"))
            .arg(TTL_S.to_string())
            .arg(sample.to_string())
            .output()
            .expect("node (the cron loop runs on Node; scripts/bench installs it)")
    });
    assert!(
        out.status.success(),
        "{CRON_LOOP_JS} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cron-loop.js prints one JSON line");
    let done = result["keys"].as_u64().unwrap_or(0);
    let secs = result["secs"].as_f64().unwrap_or(0.0);
    if smoke {
        assert_eq!(
            result["expired"].as_u64(),
            Some(done),
            "the cron loop left keys without TTL"
        );
    }
    Row {
        approach: "cron script (Node/ioredis): SCAN 100 + TTL + EXPIRE per key",
        keys: done,
        secs,
        ping,
        note: format!("measured on the first {done} keys"),
    }
}

/// Approach 2: A pipelined client: SCAN COUNT 1000, pipelined TTLs, pipelined EXPIREs.
fn pipelined(keys: u64, smoke: bool, net: Option<&Net>) -> Row {
    let server = plain_server();
    let mut c = server.conn();
    populate(&mut c, keys);
    let (mut client, _front) = client_side(&server, net);
    let (_, secs, ping) = timed(&server, || {
        let c = &mut client;
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{PREFIX}*"))
                .arg("COUNT")
                .arg(1000)
                .query(c)
                .unwrap();
            let mut ttls = redis::pipe();
            for k in &batch {
                ttls.cmd("TTL").arg(k);
            }
            let ttls: Vec<i64> = ttls.query(c).unwrap();
            let mut expires = redis::pipe();
            for (k, ttl) in batch.iter().zip(ttls) {
                if ttl == -1 {
                    expires.cmd("EXPIRE").arg(k).arg(TTL_S).ignore();
                }
            }
            let _: () = expires.query(c).unwrap();
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    });
    if smoke {
        assert_eq!(keys_without_ttl(&mut c), 0, "pipelined client left keys");
    }
    Row {
        approach: "pipelined client: SCAN 1000 + pipelined TTL/EXPIRE",
        keys,
        secs,
        ping,
        note: String::new(),
    }
}

/// Approach 3: A Lua EVAL loop: fast, but the server answers nobody until it ends.
fn lua_loop(keys: u64, smoke: bool, net: Option<&Net>) -> Row {
    let server = plain_server();
    let mut c = server.conn();
    populate(&mut c, keys);
    let (mut client, _front) = client_side(&server, net);
    let script = format!(
        "local cur='0' repeat local r=redis.call('SCAN',cur,'MATCH','{PREFIX}*','COUNT',1000) cur=r[1] \
         for _,k in ipairs(r[2]) do if redis.call('TTL',k)==-1 then redis.call('EXPIRE',k,{TTL_S}) end end until cur=='0' return 1"
    );
    let (_, secs, ping) = timed(&server, || {
        let _: i64 = redis::cmd("EVAL")
            .arg(&script)
            .arg(0)
            .query(&mut client)
            .unwrap();
    });
    if smoke {
        assert_eq!(keys_without_ttl(&mut c), 0, "Lua loop left keys");
    }
    Row {
        approach: "Lua EVAL loop: SCAN + TTL + EXPIRE server-side",
        keys,
        secs,
        ping,
        note: "one EVAL: blocks every client".into(),
    }
}

/// Approaches 4 and 5: RETENTION.SWEEP assigning TTLs, then again on the compliant keyspace, next to
/// a no-op module scan of the same keyspace.
fn module_sweeps(keys: u64, smoke: bool, net: Option<&Net>) -> Vec<Row> {
    let server = module_server(false);
    let mut c = server.conn();
    populate(&mut c, keys);
    let (mut client, _front) = client_side(&server, net);
    let (report, secs, ping) = timed(&server, || sweep(&mut client, &[]));
    assert_eq!(
        map_int(&report, "ttl_set") as u64,
        keys,
        "SWEEP did not set every TTL"
    );
    if smoke {
        assert_eq!(keys_without_ttl(&mut c), 0);
    }
    let mut rows = vec![Row {
        approach: "RETENTION.SWEEP (assigning TTLs)",
        keys,
        secs,
        ping,
        note: format!(
            "{} slices, max slice {} us",
            map_int(&report, "slices"),
            map_int(&report, "max_slice_us")
        ),
    }];
    // Every key has a TTL now: the server's counts say so and the pass ends at once.
    let (report, secs, ping) = timed(&server, || sweep(&mut client, &[]));
    assert_eq!(map_int(&report, "keys_scanned"), 0, "{report:?}");
    rows.push(Row {
        approach: "RETENTION.SWEEP (every key has a TTL)",
        keys: 0,
        secs,
        ping,
        note: format!(
            "ends at once ({:.2} ms): INFO keyspace counts no key without TTL",
            secs * 1000.0
        ),
    });
    // One key no rule governs stays without TTL, as real keyspaces have: every key is visited.
    let _: () = redis::cmd("SET")
        .arg(&["config:permanent", "v"])
        .query(&mut c)
        .unwrap();
    let (report, secs, ping) = timed(&server, || sweep(&mut client, &[]));
    assert_eq!(
        map_int(&report, "ttl_set"),
        0,
        "a compliant keyspace needed changes"
    );
    assert_eq!(map_int(&report, "keys_scanned") as u64, keys + 1);
    rows.push(Row {
        approach: "RETENTION.SWEEP (compliant, visiting every key)",
        keys: keys + 1,
        secs,
        ping,
        note: "one key without TTL that no rule governs".into(),
    });
    let (report, secs, ping) = timed(&server, || sweep(&mut client, &["NOOP"]));
    assert_eq!(map_int(&report, "keys_scanned") as u64, keys + 1);
    rows.push(Row {
        approach: "no-op module scan (iteration floor)",
        keys: keys + 1,
        secs,
        ping,
        note: "RETENTION.SWEEP NOOP".into(),
    });
    rows
}

/// The control row: the same pinger against a populated server that does nothing, so the
/// PING figures of the other rows can be told from this machine's own scheduling noise.
fn idle(keys: u64, smoke: bool) -> Row {
    let server = module_server(false);
    let mut c = server.conn();
    populate(&mut c, keys);
    let watch = if smoke { IDLE_WATCH_SMOKE } else { IDLE_WATCH };
    let (_, secs, ping) = timed(&server, || std::thread::sleep(watch));
    assert!(
        ping.p99_ms > 0.0,
        "the pinger got no PONG from an idle server"
    );
    Row {
        approach: "idle server (control: the same pinger, nothing runs)",
        keys: 0,
        secs,
        ping,
        note: "nothing runs; the server cron only".into(),
    }
}

/// Approach 6: The background sweeper from the server cron: time until every key has its TTL.
fn background(keys: u64, smoke: bool) -> Row {
    let server = module_server(false);
    let mut c = server.conn();
    populate(&mut c, keys);
    let (_, secs, ping) = timed(&server, || {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("retention.enabled")
            .arg("yes")
            .query(&mut c)
            .unwrap();
        let done = wait_until(Duration::from_secs(600), || {
            let stats: Value = redis::cmd("RETENTION.STATS")
                .arg("GET")
                .query(&mut c)
                .unwrap();
            map_int(&stats, "ttl_set") as u64 >= keys
        });
        assert!(
            done,
            "the background sweeper did not converge in 10 minutes"
        );
    });
    if smoke {
        assert_eq!(keys_without_ttl(&mut c), 0);
    }
    Row {
        approach: "background sweeper (cron, default budget)",
        keys,
        secs,
        ping,
        note: "time to reach the end state".into(),
    }
}

/// Approach 7: the background sweeper cleaning a Bull queue's finished jobs (each job: its
/// hash and its entry in `completed`, the library's way), as other clients are served.
fn queue_clean(jobs: u64, smoke: bool) -> Row {
    let server = idle_server_with(
        "bench-queue",
        r#"{"rules":[{"name":"jobs","match":"bull:*","queue":{"flavor":"bull",
            "completed":{"max_age":"1h"},"orphan_age":"7d"}}]}"#,
    );
    let mut c = server.conn();
    let old = now_ms() - 86_400_000;
    let _: () = redis::cmd("SET")
        .arg("bull:big:id")
        .arg(jobs)
        .query(&mut c)
        .unwrap();
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(10_000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("HSET")
                .arg(format!("bull:big:{i}"))
                .arg(&[("name", "n"), ("data", "{}"), ("opts", "{}")])
                .arg("timestamp")
                .arg(old - 10)
                .arg("finishedOn")
                .arg(old)
                .ignore();
            p.cmd("ZADD")
                .arg("bull:big:completed")
                .arg(old)
                .arg(i)
                .ignore();
        }
        let _: () = p.query(&mut c).expect("fill the queue");
    }
    let (_, secs, ping) = timed(&server, || {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("retention.enabled")
            .arg("yes")
            .query(&mut c)
            .unwrap();
        let done = wait_until(Duration::from_secs(600), || {
            redis::cmd("ZCARD")
                .arg("bull:big:completed")
                .query::<i64>(&mut c)
                .unwrap_or(-1)
                == 0
        });
        assert!(
            done,
            "the background sweeper did not clean the queue in 10 minutes"
        );
    });
    if smoke {
        let left: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(left, 1, "only the id counter remains");
    }
    Row {
        approach: "background sweeper cleaning a Bull queue (jobs)",
        keys: jobs,
        secs,
        ping,
        note: "time until `completed` is empty".into(),
    }
}

/// Fills the run set `base` with `n` runs (ids `r<i>`, a small document each) scored by
/// `score(i)`, in one script per 50k runs.
fn fill_runs(c: &mut Connection, base: &str, n: u64, score: &str) {
    let script = format!(
        "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do \
           redis.call('ZADD', KEYS[1], {score}, 'r' .. i) \
           redis.call('HSET', KEYS[2], 'r' .. i, '{{}}') \
         end return 0"
    );
    let (index, data) = (format!("{base}:index"), format!("{base}:data"));
    for start in (0..n).step_by(50_000) {
        let stop = (start + 50_000).min(n) - 1;
        let _: i64 = redis::cmd("EVAL")
            .arg(&script)
            .arg(2)
            .arg(&index)
            .arg(&data)
            .arg(start)
            .arg(stop)
            .query(c)
            .expect("fill the run set");
    }
}

/// Approach 8: `RETENTION.SWEEP DRYRUN` of a `runs` rule over a set whose runs all expired:
/// it pages the expired entries; other clients must not wait on that walk.
fn runs_dry_run(runs: u64, smoke: bool) -> Row {
    let server = idle_server_with(
        "bench-runs",
        r#"{"rules":[{"name":"runs","match":"runs:*","runs":{"max_age":"1h"}}]}"#,
    );
    let mut c = server.conn();
    fill_runs(&mut c, "runs:{bench}", runs, "1000 + i");
    let (report, secs, ping) = timed(&server, || sweep(&mut c, &["DRYRUN"]));
    assert_eq!(
        map_int(&report, "runs_expired") as u64,
        runs,
        "the dry run must count every expired run"
    );
    if smoke {
        let left: u64 = redis::cmd("ZCARD")
            .arg("runs:{bench}:index")
            .query(&mut c)
            .unwrap();
        assert_eq!(left, runs, "a dry run changed the set");
    }
    Row {
        approach: "SWEEP DRYRUN of a runs rule (expired runs)",
        keys: runs,
        secs,
        ping,
        note: "one run set, every run expired".into(),
    }
}

/// Approach 9: `ACTIVERUNS.AFTER` from a marker that was deleted, inside a run of equal
/// scores (what `ACTIVERUNS.MIGRATE` without `SCOREFIELD` leaves): each call must find its
/// place without walking the ties.
fn after_among_ties(runs: u64, smoke: bool) -> Row {
    let server = module_server(false);
    let mut c = server.conn();
    fill_runs(&mut c, "runs:{ties}", runs, "0");
    let marker = format!("r{}", runs / 2);
    let _: i64 = redis::cmd("ACTIVERUNS.DEL")
        .arg("runs:{ties}")
        .arg(&marker)
        .query(&mut c)
        .expect("DEL the marker");
    let calls = if smoke { 20 } else { TIED_AFTER_CALLS };
    // Equal scores sort by id bytes: the 10 ids that follow the marker's place.
    let mut ids: Vec<String> = (0..runs).map(|i| format!("r{i}")).collect();
    ids.sort();
    let expected: Vec<String> = ids.into_iter().filter(|id| *id > marker).take(10).collect();
    let (_, secs, ping) = timed(&server, || {
        for _ in 0..calls {
            let page: Value = redis::cmd("ACTIVERUNS.AFTER")
                .arg(&["runs:{ties}", "0", &marker, "10", "ASC"])
                .query(&mut c)
                .expect("AFTER");
            if smoke {
                assert_eq!(page_ids(&page, 3).1, expected, "AFTER past {marker}");
            }
        }
    });
    Row {
        approach: "ACTIVERUNS.AFTER past a deleted marker among ties (calls)",
        keys: calls,
        secs,
        ping,
        note: format!(
            "{runs} runs of one score; {:.0} us per call",
            secs * 1e6 / calls as f64
        ),
    }
}

fn redis_benchmark_rps(port: u16, requests: u64) -> f64 {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "set",
            "-r",
            // keyspacelen is a C int: 1e8, not more (larger values wrap to one key).
            "100000000",
            "-n",
            &requests.to_string(),
            "-q",
            "--csv",
        ])
        .output()
        .expect("redis-benchmark (package redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.split(',').nth(1))
        .filter_map(|v| v.trim_matches('"').parse::<f64>().ok())
        .next()
        .unwrap_or_else(|| panic!("cannot read redis-benchmark output: {text}"))
}

/// The server's own CPU time so far (user + system, seconds) from `INFO cpu`.
fn server_cpu_s(c: &mut Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(c).unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// One redis-benchmark round: (requests/s, server CPU µs per request). CPU per request is
/// what the module adds to each SET; it is steadier than throughput on a shared VM, where
/// the benchmark client's own scheduling moves req/s by ±30% between rounds.
fn set_round(server: &Server, c: &mut Connection, requests: u64) -> (f64, f64) {
    let cpu_before = server_cpu_s(c);
    let rps = redis_benchmark_rps(server.port, requests);
    let cpu_us = (server_cpu_s(c) - cpu_before) * 1e6 / requests as f64;
    (rps, cpu_us)
}

/// Approach 7: Steady state: SET throughput with and without the module (new keys tracked),
/// and how long a new key waits for its policy TTL. Two clients on a 2-core VM vary by up to
/// ±30% from round to round, so the two servers are measured in alternating rounds and the
/// medians compared.
fn steady_state(requests: u64, rounds: usize, smoke: bool) -> String {
    let plain = plain_server();
    let dir = scratch_dir("steady");
    let policy = write_policy(&dir, POLICY);
    let server = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .module_arg("pass-interval-s", "3600"),
    )
    .expect("module server");
    // Let the first (empty) background pass finish so only the fast path acts below.
    std::thread::sleep(Duration::from_millis(300));
    let mut c = server.conn();
    let mut plain_c = plain.conn();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut without_cpu, mut with_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round > 0 {
            let _: () = redis::cmd("FLUSHALL").query(&mut plain_c).unwrap();
            let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
        }
        let (rps, cpu_us) = set_round(&plain, &mut plain_c, requests);
        without.push(rps);
        without_cpu.push(cpu_us);
        let (rps, cpu_us) = set_round(&server, &mut c, requests);
        with.push(rps);
        with_cpu.push(cpu_us);
    }
    let (without_rps, with_rps) = (median(&mut without), median(&mut with));
    let (without_cpu_us, with_cpu_us) = (median(&mut without_cpu), median(&mut with_cpu));
    // A random key can repeat; a SET over an existing key drops its TTL without a "new"
    // event and is left to the next full pass. So at most (requests - distinct keys) keys may
    // lack a TTL; the last keys written are handled on the next loop iteration: poll.
    let distinct: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    let overwrites = requests.saturating_sub(distinct) as i64;
    let mut left = keys_without_ttl(&mut c);
    let settled = wait_until(Duration::from_secs(5), || {
        left = keys_without_ttl(&mut c);
        left <= overwrites
    });
    if smoke {
        assert!(
            settled,
            "{left} keys written by redis-benchmark kept no TTL ({overwrites} were overwritten)"
        );
    }
    let mut waits = Vec::new();
    for i in 0..200 {
        let key = format!("key:wait{i}");
        let t = Instant::now();
        let _: () = redis::cmd("SET").arg(&key).arg("v").query(&mut c).unwrap();
        while redis::cmd("PTTL").arg(&key).query::<i64>(&mut c).unwrap() < 0 {
            assert!(t.elapsed() < Duration::from_secs(5), "{key} got no TTL");
        }
        waits.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    waits.sort_by(|a, b| a.total_cmp(b));
    let show = |v: &[f64], digits: usize| {
        v.iter()
            .map(|r| format!("{r:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "| SET throughput (redis-benchmark -t set -r 1e8, {requests} requests, median of {rounds} alternating rounds) | {without_rps:.0} req/s without the module ({}) | {with_rps:.0} req/s with it ({}) | ratio {:.3} (cost {:.1}%) |\n\
         | server CPU per SET (INFO cpu, median of the same rounds) | {without_cpu_us:.2} µs without the module ({}) | {with_cpu_us:.2} µs with it ({}) | ratio {:.3} (cost {:.1}%) |\n\
         | new key without TTL → policy TTL (SET, then PTTL until set; 200 keys) | max {:.2} ms | p99 {:.2} ms | {} keys without TTL after the benchmark, all overwritten by a later SET ({} overwrites) |",
        show(&without, 0),
        show(&with, 0),
        with_rps / without_rps,
        (1.0 - with_rps / without_rps) * 100.0,
        show(&without_cpu, 2),
        show(&with_cpu, 2),
        with_cpu_us / without_cpu_us,
        (with_cpu_us / without_cpu_us - 1.0) * 100.0,
        waits.last().copied().unwrap_or(0.0),
        waits[(waits.len() * 99 / 100).min(waits.len() - 1)],
        left,
        overwrites
    )
}

/// The median of the samples (sorts them).
fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let args = parse_args();
    let keys = args.keys;
    eprintln!(
        "populating {keys} keys per approach ({} run)",
        if args.smoke { "smoke" } else { "full" }
    );
    let net = args.rtt.map(Net::calibrate);
    let net = net.as_ref();
    if let Some(net) = net {
        eprintln!("{}", net.check);
    }
    let mut rows = Vec::new();
    if args.runs("idle") {
        rows.push(idle(keys, args.smoke));
    }
    if args.runs("cron") {
        rows.push(cron_loop(keys, args.smoke, net));
    }
    let rounds = args.rounds();
    if args.runs("pipelined") {
        rows.extend(median_rounds(rounds, || {
            vec![pipelined(keys, args.smoke, net)]
        }));
    }
    if args.runs("lua") {
        rows.extend(median_rounds(rounds, || {
            vec![lua_loop(keys, args.smoke, net)]
        }));
    }
    if args.runs("module") {
        rows.extend(median_rounds(rounds, || {
            module_sweeps(keys, args.smoke, net)
        }));
    }
    if args.runs("background") {
        rows.push(background(keys, args.smoke));
    }
    if args.runs("queue") {
        let jobs = ((keys as f64 * QUEUE_JOBS_PER_KEY) as u64).max(1);
        rows.push(queue_clean(jobs, args.smoke));
    }
    if args.runs("runs") {
        let runs = ((keys as f64 * EXPIRED_RUNS_PER_KEY) as u64).max(100);
        rows.push(runs_dry_run(runs, args.smoke));
    }
    if args.runs("ties") {
        let runs = ((keys as f64 * TIED_RUNS_PER_KEY) as u64).max(100);
        rows.push(after_among_ties(runs, args.smoke));
    }
    let steady = args.runs("steady").then(|| match args.smoke {
        true => steady_state(20_000, 1, true),
        false => steady_state(300_000, 5, false),
    });

    let rate_of = |approach: &str| {
        rows.iter()
            .find(|r| r.approach.starts_with(approach))
            .map(Row::rate)
    };
    let module_rate = rate_of("RETENTION.SWEEP (assigning").unwrap_or(f64::NAN);
    println!("\nredis-retention benchmark: {keys} keys `{PREFIX}<n>` without TTL, rule ttl 1d; server {}", server_bin());
    match net {
        Some(net) => println!(
            "clients through a latency proxy adding a {:.2} ms round trip (PING watcher direct)\n{}",
            net.rtt.as_secs_f64() * 1000.0,
            net.check
        ),
        None => println!("clients on loopback"),
    }
    println!("\n| approach | keys | seconds | keys/s | module sweep is × faster | PING max ms | PING p99 ms | PING p99.9 ms | PINGs > {SLOW_PING_MS} ms | notes |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        // The control row moves no keys: no rate, no ratio.
        let (keys, rate, ratio) = match r.keys {
            0 => ("–".to_string(), "–".to_string(), "–".to_string()),
            n if NOT_KEY_ROWS.iter().any(|a| r.approach.starts_with(a)) => {
                (n.to_string(), format!("{:.0}", r.rate()), "–".to_string())
            }
            n => (
                n.to_string(),
                format!("{:.0}", r.rate()),
                format!("{:.1}", module_rate / r.rate()),
            ),
        };
        println!(
            "| {} | {keys} | {:.3} | {rate} | {ratio} | {:.2} | {:.2} | {:.2} | {} of {} | {} |",
            r.approach,
            r.secs,
            r.ping.max_ms,
            r.ping.p99_ms,
            r.ping.p999_ms,
            r.ping.slow,
            r.ping.samples,
            r.note
        );
    }
    if let (Some(compliant), Some(noop)) = (
        rate_of("RETENTION.SWEEP (compliant"),
        rate_of("no-op module scan"),
    ) {
        println!(
            "\ncompliant pass / no-op module scan throughput: {:.2} (target >= 0.8)",
            compliant / noop
        );
    }
    if let Some(lua) = rate_of("Lua") {
        println!(
            "module sweep vs Lua: {:.1}x (target >= 5)",
            module_rate / lua
        );
    }
    if let Some(cron) = rate_of("cron script") {
        println!(
            "module sweep vs cron script: {:.0}x (target >= 100)",
            module_rate / cron
        );
    }
    if let Some(steady) = steady {
        println!("\n| steady state | | | |\n|---|---|---|---|\n{steady}");
    }
}
