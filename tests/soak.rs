//! A bounded soak: writers create keys in two databases, collections grow, BullMQ-shaped
//! queues are produced and worked (in both databases), ACTIVERUNS traffic comes and goes,
//! RETENTION.TRIM and RETENTION.SWEEP are called now and then, and the background sweeper
//! passes every second, on a master with a replica. Runs `RETENTION_SOAK_SECS` seconds
//! (default 12; `scripts/soak <secs>` for longer).
//!
//! Afterwards: the servers are alive, the module counted no error, memory stayed flat once
//! the policy had bounded the data (TTLs of seconds, trims, cleaning), no unfinished job was
//! lost (every job produced and not finished is still waiting or active, with its hash),
//! no finished job is half removed, and the replica holds the master's data.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use redis::{Connection, Value};

const DBS: [i64; 2] = [0, 3];

const POLICY: &str = r#"{"rules":[
  {"name":"sessions","match":"sess:*","ttl":"3s"},
  {"name":"log","match":"log:*","type":"stream","trim":{"max_len":100}},
  {"name":"feed","match":"feed:*","type":"list","trim":{"max_len":50}},
  {"name":"rank","match":"rank:*","type":"zset","trim":{"max_len":50}},
  {"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq",
    "completed":{"max_age":"1h","max_len":200},"failed":{"max_age":"5s","max_len":50},
    "events":{"max_len":500}}},
  {"name":"runs","match":"runs:*","runs":{"max_age":"5s"}}
]}"#;

fn soak_duration() -> Duration {
    let secs = std::env::var("RETENTION_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12u64);
    Duration::from_secs(secs.max(5))
}

/// Stops and pauses the writer threads.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    pause: AtomicBool,
    /// Writers that saw `pause` and are idle.
    idle: AtomicUsize,
}

impl Control {
    /// Pauses every writer (`writers` of them) and returns once all are idle.
    fn pause(&self, writers: usize) {
        self.pause.store(true, Ordering::SeqCst);
        let idle = wait_until(Duration::from_secs(60), || {
            self.idle.load(Ordering::SeqCst) == writers
        });
        assert!(idle, "writers did not pause");
    }

    fn resume(&self) {
        self.pause.store(false, Ordering::SeqCst);
    }
}

/// A writer thread: runs `step` until `stop` (idling while paused), then returns what
/// `finish` makes of its state.
fn spawn<S: Send + 'static, R: Send + 'static>(
    ctl: &Arc<Control>,
    mut state: S,
    mut step: impl FnMut(&mut S, u64) + Send + 'static,
    finish: impl FnOnce(S) -> R + Send + 'static,
) -> JoinHandle<R> {
    let ctl = ctl.clone();
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !ctl.stop.load(Ordering::SeqCst) {
            if ctl.pause.load(Ordering::SeqCst) {
                ctl.idle.fetch_add(1, Ordering::SeqCst);
                while ctl.pause.load(Ordering::SeqCst) && !ctl.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                ctl.idle.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            step(&mut state, n);
            n += 1;
        }
        finish(state)
    })
}

fn used_memory(c: &mut Connection) -> i64 {
    info_i64(c, "memory", "used_memory")
}

/// What a queue worker pair reports: ids produced and ids it finished.
struct QueueLog {
    db: i64,
    produced: Vec<u64>,
    finished: BTreeSet<u64>,
}

/// A producer and a worker of the BullMQ-shaped queue `bull:soak:` in `db`, in one thread:
/// each step adds a job (id from INCR, hash + LPUSH wait + XADD, atomically like addJob) and
/// works at most two (RPOPLPUSH wait active, then moveToFinished atomically: LREM active,
/// ZADD completed/failed, HSET finishedOn, XADD).
fn queue_step(c: &mut Connection, log: &mut QueueLog, n: u64) {
    let now = now_ms();
    let id: u64 = redis::cmd("INCR")
        .arg("bull:soak:id")
        .query(c)
        .expect("INCR");
    let _: Value = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(format!("bull:soak:{id}"))
        .arg(&[("name", "job"), ("opts", "{}")])
        .arg("data")
        .arg(format!(r#"{{"n":{n}}}"#))
        .arg("timestamp")
        .arg(now)
        .ignore()
        .cmd("LPUSH")
        .arg("bull:soak:wait")
        .arg(id)
        .ignore()
        .cmd("XADD")
        .arg("bull:soak:events")
        .arg("*")
        .arg("event")
        .arg("added")
        .arg("jobId")
        .arg(id)
        .ignore()
        .query(c)
        .expect("add job");
    log.produced.push(id);
    for _ in 0..2 {
        let taken: Option<u64> = redis::cmd("RPOPLPUSH")
            .arg("bull:soak:wait")
            .arg("bull:soak:active")
            .query(c)
            .expect("RPOPLPUSH");
        let Some(job) = taken else { break };
        let (set, field) = match job % 10 {
            0 => ("failed", "failedReason"),
            _ => ("completed", "returnvalue"),
        };
        let done = now_ms();
        let _: Value = redis::pipe()
            .atomic()
            .cmd("LREM")
            .arg("bull:soak:active")
            .arg(1)
            .arg(job)
            .ignore()
            .cmd("ZADD")
            .arg(format!("bull:soak:{set}"))
            .arg(done)
            .arg(job)
            .ignore()
            .cmd("HSET")
            .arg(format!("bull:soak:{job}"))
            .arg("finishedOn")
            .arg(done)
            .arg("processedOn")
            .arg(done)
            .arg(field)
            .arg("x")
            .ignore()
            .cmd("XADD")
            .arg("bull:soak:events")
            .arg("*")
            .arg("event")
            .arg(set)
            .arg("jobId")
            .arg(job)
            .ignore()
            .query(c)
            .expect("finish job");
        log.finished.insert(job);
    }
    std::thread::sleep(Duration::from_millis(1));
}

/// Every job produced and not finished is still waiting or active with its hash; every job
/// still listed as finished has its hash.
fn check_queue(c: &mut Connection, log: &QueueLog) -> Vec<String> {
    select(c, log.db);
    let mut problems = Vec::new();
    let mut listed: BTreeSet<u64> = BTreeSet::new();
    for list in ["bull:soak:wait", "bull:soak:active"] {
        let ids: Vec<u64> = redis::cmd("LRANGE")
            .arg(list)
            .arg(0)
            .arg(-1)
            .query(c)
            .expect("LRANGE");
        listed.extend(ids);
    }
    let unfinished: Vec<u64> = log
        .produced
        .iter()
        .copied()
        .filter(|id| !log.finished.contains(id))
        .collect();
    for id in &unfinished {
        if !listed.contains(id) {
            problems.push(format!("db {}: job {id} not waiting nor active", log.db));
        }
    }
    let mut finished_listed: Vec<u64> = Vec::new();
    for set in ["bull:soak:completed", "bull:soak:failed"] {
        let ids: Vec<u64> = redis::cmd("ZRANGE")
            .arg(set)
            .arg(0)
            .arg(-1)
            .query(c)
            .expect("ZRANGE");
        finished_listed.extend(ids);
    }
    for ids in [&unfinished, &finished_listed] {
        for chunk in ids.chunks(1000) {
            let mut p = redis::pipe();
            for id in chunk {
                p.cmd("HEXISTS").arg(format!("bull:soak:{id}")).arg("data");
            }
            let present: Vec<bool> = p.query(c).expect("HEXISTS");
            for (id, ok) in chunk.iter().zip(present) {
                if !ok {
                    problems.push(format!("db {}: job {id} has no hash", log.db));
                }
            }
        }
    }
    select(c, 0);
    problems
}

#[test]
fn soak_keeps_the_keyspace_bounded_without_errors_leaks_or_lost_jobs() {
    let duration = soak_duration();
    let dir = scratch_dir("soak");
    let policy = write_policy(&dir, POLICY);
    let master = Server::start_in(
        dir,
        ServerOpts::default()
            .policy(&policy)
            .module_arg("pass-interval-s", "1")
            .config("hz", "20")
            .config("repl-diskless-sync-delay", "0"),
    )
    .expect("master");
    let port = master.port.to_string();
    let replica = Server::start(ServerOpts::default().policy(&policy).directive(&[
        "replicaof",
        "127.0.0.1",
        &port,
    ]))
    .expect("replica");
    attach_replica(&master, &replica);
    for db in DBS {
        let mut c = master.conn_db(db);
        call(
            &mut c,
            &[
                "HSET",
                "bull:soak:meta",
                "opts.maxLenEvents",
                "10000",
                "version",
                "bullmq:5.81.5",
            ],
        );
    }

    let ctl = Arc::new(Control::default());
    let mut writers: Vec<JoinHandle<()>> = Vec::new();
    // Keys without TTL that the policy gives 3 s, in both databases.
    writers.push(spawn(
        &ctl,
        master.conn(),
        |c, n| {
            select(c, DBS[(n % 2) as usize]);
            let mut p = redis::pipe();
            for i in 0..200 {
                p.cmd("SET")
                    .arg(format!("sess:{n}:{i}"))
                    .arg("payload-payload-payload")
                    .ignore();
            }
            p.cmd("HSET")
                .arg(format!("sess:h:{n}"))
                .arg("f")
                .arg("v")
                .ignore();
            let _: () = p.query(c).expect("sessions");
            std::thread::sleep(Duration::from_millis(5));
        },
        |_| (),
    ));
    // Growing collections the trim rules bound.
    writers.push(spawn(
        &ctl,
        master.conn(),
        |c, n| {
            select(c, DBS[(n % 2) as usize]);
            let k = n % 10;
            let mut p = redis::pipe();
            for i in 0..20 {
                p.cmd("XADD")
                    .arg(format!("log:{k}"))
                    .arg("*")
                    .arg("i")
                    .arg(i)
                    .ignore();
                p.cmd("LPUSH").arg(format!("feed:{k}")).arg(i).ignore();
                p.cmd("ZADD")
                    .arg(format!("rank:{k}"))
                    .arg(n * 20 + i)
                    .arg(format!("m{n}:{i}"))
                    .ignore();
            }
            let _: () = p.query(c).expect("collections");
            std::thread::sleep(Duration::from_millis(2));
        },
        |_| (),
    ));
    // ACTIVERUNS traffic: runs added now and expired by the rule after 5 s, some deleted,
    // pages read (which change nothing), EXPIRE now and then.
    writers.push(spawn(
        &ctl,
        master.conn(),
        |c, n| {
            select(c, DBS[(n % 2) as usize]);
            let base = format!("runs:{{w{}}}", n % 5);
            let id = format!("r{n}");
            call(
                c,
                &["ACTIVERUNS.ADD", &base, &id, r#"{"status":"running"}"#],
            );
            if n % 3 == 0 {
                call(c, &["ACTIVERUNS.DEL", &base, &format!("r{}", n / 2)]);
            }
            call(c, &["ACTIVERUNS.PAGE", &base, "1", "20"]);
            if n % 50 == 0 {
                call(c, &["ACTIVERUNS.EXPIRE", &base, "4s"]);
            }
            std::thread::sleep(Duration::from_millis(2));
        },
        |_| (),
    ));
    // On-demand work now and then: a trim of a stream no rule covers, a full sweep.
    writers.push(spawn(
        &ctl,
        master.conn(),
        |c, n| {
            select(c, DBS[(n % 2) as usize]);
            for i in 0..50 {
                call(c, &["XADD", "xt:audit", "*", "i", &i.to_string()]);
            }
            call(c, &["RETENTION.TRIM", "xt:audit", "MAXLEN", "20"]);
            if n % 10 == 0 {
                // INPROGRESS while another pass holds the scan is fine; anything else is not.
                if let Err(e) = try_call(c, &["RETENTION.SWEEP"]) {
                    assert!(e.to_string().contains("INPROGRESS"), "RETENTION.SWEEP: {e}");
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        },
        |_| (),
    ));
    let queues: Vec<JoinHandle<QueueLog>> = DBS
        .iter()
        .map(|&db| {
            let log = QueueLog {
                db,
                produced: Vec::new(),
                finished: BTreeSet::new(),
            };
            spawn(
                &ctl,
                (master.conn_db(db), log),
                |(c, log), n| queue_step(c, log, n),
                |(_, log)| log,
            )
        })
        .collect();

    let writer_count = writers.len() + queues.len();
    // Phase 1 warms up; each phase ends quiescent (writers paused, the 3 s keys expired,
    // runs and failed jobs aged out, two more passes): then the data is what the policy
    // bounds it to, the same after each phase, and memory must be the same too.
    let mut c = master.conn();
    let mut quiesce = |phase: u32| -> (i64, i64) {
        ctl.pause(writer_count);
        let paused_at = Instant::now();
        let expired = wait_until(Duration::from_secs(60), || {
            let text = info(&mut c, "keyspace");
            DBS.iter().all(|db| {
                info_field(&text, &format!("db{db}")).is_none_or(|v| v.contains(",expires=0,"))
            })
        });
        assert!(
            expired,
            "keys with a TTL remain: {}",
            info(&mut c, "keyspace")
        );
        let passes = stat(&mut c, "passes");
        let aged = wait_until(Duration::from_secs(60), || {
            paused_at.elapsed() > Duration::from_secs(7) && stat(&mut c, "passes") >= passes + 2
        });
        assert!(aged, "the background sweeper stopped passing");
        let memory = used_memory(&mut c);
        let keys: i64 = DBS
            .iter()
            .map(|&db| {
                redis::cmd("DBSIZE")
                    .query::<i64>(&mut master.conn_db(db))
                    .unwrap()
            })
            .sum();
        let m = info(&mut c, "memory");
        println!(
            "quiescent after phase {phase}: used_memory {memory}, dataset {}, overhead {}, keys {keys}",
            info_field(&m, "used_memory_dataset").unwrap_or_default(),
            info_field(&m, "used_memory_overhead").unwrap_or_default(),
        );
        (memory, keys)
    };
    let mut peak = 0;
    let mut run_phase = |c: &mut Connection| {
        let started = Instant::now();
        while started.elapsed() < duration / 2 {
            std::thread::sleep(Duration::from_millis(500));
            peak = peak.max(used_memory(c));
        }
    };
    run_phase(&mut master.conn());
    let (mid_memory, mid_keys) = quiesce(1);
    ctl.resume();
    run_phase(&mut master.conn());
    let (end_memory, end_keys) = quiesce(2);
    ctl.stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let logs: Vec<QueueLog> = queues
        .into_iter()
        .map(|q| q.join().expect("queue"))
        .collect();
    let mut c = master.conn();

    let s = stats(&mut c);
    println!(
        "soak {duration:?}: quiescent keys {mid_keys} -> {end_keys}, used_memory {mid_memory} -> {end_memory} (peak under load {peak}); \
         passes {}, ttl_set {}, entries_trimmed {}, jobs_removed {}, runs_expired {}, tracked_keys {}, tracked_dropped {}, jobs produced {}",
        map_int(&s, "passes"),
        map_int(&s, "ttl_set"),
        map_int(&s, "entries_trimmed"),
        map_int(&s, "jobs_removed"),
        map_int(&s, "runs_expired"),
        map_int(&s, "tracked_keys"),
        map_int(&s, "tracked_dropped"),
        logs.iter().map(|l| l.produced.len()).sum::<usize>(),
    );
    let mut master = master;
    let mut replica = replica;
    assert!(master.alive() && replica.alive(), "a server died");
    assert_eq!(map_int(&s, "errors"), 0, "the module counted errors: {s:?}");
    assert!(
        map_int(&s, "passes") >= 2,
        "the background sweeper did not pass"
    );
    for field in ["ttl_set", "entries_trimmed", "jobs_removed", "runs_expired"] {
        assert!(
            map_int(&s, field) > 0,
            "{field}: the soak exercised nothing"
        );
    }
    // Flat: the same bounded data after each phase takes the same memory (measured: within
    // 50 kB). The slack covers a main or expires table not yet shrunk (1 MB at 100k keys).
    assert!(
        end_memory <= mid_memory + 1024 * 1024,
        "memory grew from {mid_memory} to {end_memory} bytes between quiescent points (keys {mid_keys} -> {end_keys})"
    );
    let lost: Vec<String> = logs.iter().flat_map(|l| check_queue(&mut c, l)).collect();
    assert!(
        lost.is_empty(),
        "jobs lost: {:?}",
        &lost[..lost.len().min(20)]
    );

    // Quiet (the data is quiescent already), then equal on the replica.
    config_set(&mut c, "retention.enabled", "no");
    std::thread::sleep(Duration::from_millis(200));
    assert_same_data(&master, &replica, &DBS, "after the soak");
    assert_eq!(stat(&mut c, "errors"), 0);
}
