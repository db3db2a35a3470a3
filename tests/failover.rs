//! Role changes in the middle of the work. A master that becomes a replica (`REPLICAOF`
//! sent while a `RETENTION.SWEEP`, a `RETENTION.JOBS ... CLEAN` or a `RETENTION.TRIM` runs,
//! with new keys just noted by the tracking path) must stop at once: the waiting client gets
//! an error or is disconnected, the old master writes nothing of its own (after the sync its
//! data and replication offset are its new master's), and it goes idle. `FAILOVER` must
//! complete while a background backlog pass runs.

mod common;

use std::time::Duration;

use common::*;
use redis::{Connection, Value};

const POLICY: &str = r#"{"rules":[
  {"name":"ttl","match":"t:*","ttl":"1d"},
  {"name":"jobs","match":"bull:*","queue":{"flavor":"bullmq","completed":{"max_age":"30d"}}}
]}"#;

/// An idle server uses a few ms of CPU a second; one spinning its event loop uses a core.
const IDLE_CORES_MAX: f64 = 0.3;

struct Pair {
    /// The master that gets demoted.
    old: Server,
    /// Its replica, promoted just before; the module is paused there, so it writes nothing
    /// on its own and the old master must end with exactly its data.
    new: Server,
}

/// A master with the module active (new-key tracking off while the test populates; no
/// background pass but the startup one) and a paused replica of it.
fn pair(extra: &[(&str, &str)]) -> Pair {
    let dir = scratch_dir("failover");
    let policy = write_policy(&dir, POLICY);
    let mut opts = ServerOpts::default()
        .policy(&policy)
        .module_arg("pass-interval-s", "3600")
        .module_arg("track-new-keys", "no")
        .config("repl-diskless-sync-delay", "0")
        .config("repl-diskless-load", "disabled");
    for (k, v) in extra {
        opts = opts.module_arg(k, v);
    }
    let old = Server::start_in(dir, opts).expect("master");
    let startup_pass = wait_until(Duration::from_secs(10), || {
        stat(&mut old.conn(), "passes") == 1
    });
    assert!(startup_pass, "the startup pass did not run");
    let port = old.port.to_string();
    let new = Server::start(
        ServerOpts::default()
            .paused()
            .policy(&policy)
            .config("repl-diskless-sync-delay", "0")
            .directive(&["replicaof", "127.0.0.1", &port]),
    )
    .expect("replica");
    attach_replica(&old, &new);
    Pair { old, new }
}

/// Runs `args` on a connection of its own in a thread (reply or error once it comes).
fn in_background(
    server: &Server,
    args: &[&str],
) -> std::thread::JoinHandle<redis::RedisResult<Value>> {
    let mut c = server.conn();
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        try_call(&mut c, &words)
    })
}

fn mset(c: &mut Connection, prefix: &str, n: usize) {
    for start in (0..n).step_by(1000) {
        let pairs: Vec<(String, &str)> = (start..(start + 1000).min(n))
            .map(|i| (format!("{prefix}{i}"), "v"))
            .collect();
        let _: () = redis::cmd("MSET").arg(&pairs).query(c).expect("MSET");
    }
}

/// Turns new-key tracking on (the cron tick picks it up) and writes `n` new keys a rule
/// governs, so that noted keys wait in the module's queue at the moment of the demotion.
fn enable_tracking(c: &mut Connection) {
    config_set(c, "retention.track-new-keys", "yes");
    std::thread::sleep(Duration::from_millis(300));
}

fn burst_of_new_keys(c: &mut Connection, n: usize) {
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("SET").arg(format!("t:new:{i}")).arg("v").ignore();
    }
    let _: () = p.query(c).expect("burst");
}

/// Promotes the replica and makes the old master its replica, while `waiting` (the client
/// of the long command) has not been answered yet. A write pause on the old master holds the
/// command's slices meanwhile (as `FAILOVER` itself does), so it cannot finish in between
/// however fast this machine is; the pause ends once the old master is a replica.
fn demote(pair: &Pair, waiting: &std::thread::JoinHandle<redis::RedisResult<Value>>) {
    let mut old = pair.old.conn();
    call(&mut old, &["CLIENT", "PAUSE", "30000", "WRITE"]);
    assert!(
        !waiting.is_finished(),
        "the command finished before the demotion (the workload is too small for this machine)"
    );
    call(&mut pair.new.conn(), &["REPLICAOF", "NO", "ONE"]);
    call(
        &mut old,
        &["REPLICAOF", "127.0.0.1", &pair.new.port.to_string()],
    );
    call(&mut old, &["CLIENT", "UNPAUSE"]);
}

/// The waiting client was told of the demotion: by the server, which unblocks every blocked
/// client with `UNBLOCKED` when it becomes a replica, or by the module (`stopped: this server
/// became a replica`). It was not left waiting, and no report of success came after.
fn assert_client_released(what: &str, waiting: std::thread::JoinHandle<redis::RedisResult<Value>>) {
    match waiting.join().expect("client thread") {
        Ok(v) => panic!("{what}: the waiting client got a normal reply after the demotion: {v:?}"),
        Err(e) if e.is_timeout() => {
            panic!("{what}: the waiting client got no reply within 30 s of the demotion")
        }
        Err(e) => {
            let told = e.to_string();
            assert!(
                told.contains("UNBLOCKED")
                    || told.contains("stopped: this server became a replica"),
                "{what}: the waiting client got: {told}"
            );
        }
    }
}

/// After the sync the old master holds exactly the new master's data and offset, its
/// module changes nothing more, and it does not spin.
fn assert_quiet_replica(pair: &Pair, what: &str) {
    let mut old = pair.old.conn();
    let synced = wait_until(Duration::from_secs(60), || {
        info(&mut old, "replication").contains("master_link_status:up")
    });
    assert!(
        synced,
        "{what}: the old master did not sync with the new one"
    );
    let counters = |c: &mut Connection| -> Vec<i64> {
        let s = stats(c);
        [
            "ttl_set",
            "ttl_lowered",
            "keys_deleted",
            "entries_trimmed",
            "jobs_removed",
            "tracked_keys",
        ]
        .iter()
        .map(|f| map_int(&s, f))
        .collect()
    };
    let before = counters(&mut old);
    let cores = cpu_cores_used(&mut old, Duration::from_secs(2));
    println!("{what}: the demoted master used {cores:.3} cores");
    let mut new = pair.new.conn();
    let same_offset = wait_until(Duration::from_secs(20), || {
        master_repl_offset(&mut new) == master_repl_offset(&mut old)
    });
    assert!(
        same_offset,
        "{what}: replication offsets differ: new master {}, old master {}",
        master_repl_offset(&mut new),
        master_repl_offset(&mut old)
    );
    assert_same_data(&pair.new, &pair.old, &[0], what);
    assert_eq!(
        counters(&mut old),
        before,
        "{what}: the demoted master's module kept changing keys"
    );
    assert_eq!(role(&mut old), "slave");
    assert!(
        cores < IDLE_CORES_MAX,
        "{what}: the demoted master keeps {cores:.2} cores busy"
    );
}

#[test]
fn replicaof_during_a_sweep_stops_it_and_the_old_master_goes_quiet() {
    let pair = pair(&[]);
    let mut c = pair.old.conn();
    mset(&mut c, "t:", 400_000);
    wait_replica_caught_up(&pair.old, &pair.new);
    enable_tracking(&mut c);
    let sweep = in_background(&pair.old, &["RETENTION.SWEEP", "BUDGET", "50"]);
    let mid_way = wait_until(Duration::from_secs(60), || {
        running_pass(&mut c).is_some_and(|(_, visited)| visited >= 20_000)
    });
    assert!(mid_way, "the sweep did not get going");
    burst_of_new_keys(&mut c, 50_000);
    demote(&pair, &sweep);
    assert_client_released("SWEEP", sweep);
    assert_quiet_replica(&pair, "SWEEP");
}

#[test]
fn replicaof_during_a_queue_clean_stops_it_and_the_old_master_goes_quiet() {
    let pair = pair(&[("sweep-budget-us", "50")]);
    let mut c = pair.old.conn();
    call(&mut c, &["HSET", "bull:q:meta", "version", "bullmq:5.81.5"]);
    call(&mut c, &["SET", "bull:q:id", "1"]);
    let t0 = now_ms() - 86_400_000;
    const JOBS: usize = 100_000;
    for start in (0..JOBS).step_by(2_000) {
        let mut p = redis::pipe();
        for i in start..(start + 2_000).min(JOBS) {
            p.cmd("HSET")
                .arg(format!("bull:q:{i}"))
                .arg("timestamp")
                .arg(t0)
                .arg("finishedOn")
                .arg(t0 + i as i64)
                .ignore();
            p.cmd("ZADD")
                .arg("bull:q:completed")
                .arg(t0 + i as i64)
                .arg(i)
                .ignore();
        }
        let _: () = p.query(&mut c).expect("jobs");
    }
    wait_replica_caught_up(&pair.old, &pair.new);
    enable_tracking(&mut c);
    let clean = in_background(&pair.old, &CLEAN_QUEUE_Q);
    let mid_way = wait_until(Duration::from_secs(60), || {
        let left: i64 = redis::cmd("ZCARD")
            .arg("bull:q:completed")
            .query(&mut c)
            .unwrap();
        left < (JOBS - 1_000) as i64
    });
    assert!(mid_way, "the clean did not get going");
    burst_of_new_keys(&mut c, 50_000);
    demote(&pair, &clean);
    assert_client_released("JOBS CLEAN", clean);
    assert_quiet_replica(&pair, "JOBS CLEAN");
}

#[test]
fn replicaof_during_a_trim_stops_it_and_the_old_master_goes_quiet() {
    let pair = pair(&[("sweep-budget-us", "50")]);
    let mut c = pair.old.conn();
    const MEMBERS: i64 = 2_000_000;
    let _: Value = redis::cmd("EVAL")
        .arg("for i = 1, tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], i, i) end return 1")
        .arg(1)
        .arg("big")
        .arg(MEMBERS)
        .query(&mut c)
        .expect("populate");
    wait_replica_caught_up(&pair.old, &pair.new);
    enable_tracking(&mut c);
    let trim = in_background(&pair.old, &["RETENTION.TRIM", "big", "MAXLEN", "0"]);
    let mid_way = wait_until(Duration::from_secs(60), || {
        let left: i64 = redis::cmd("ZCARD").arg("big").query(&mut c).unwrap();
        left < MEMBERS
    });
    assert!(mid_way, "the trim did not get going");
    burst_of_new_keys(&mut c, 20_000);
    demote(&pair, &trim);
    assert_client_released("TRIM", trim);
    assert_quiet_replica(&pair, "TRIM");
}

/// A demoted master with nothing running but a backlog of noted new keys: it must drop it
/// and go idle (the queue kept the event loop armed, spinning a core on a replica).
#[test]
fn replicaof_with_noted_new_keys_pending_leaves_the_old_master_idle() {
    let pair = pair(&[("sweep-budget-us", "50")]);
    let mut c = pair.old.conn();
    enable_tracking(&mut c);
    burst_of_new_keys(&mut c, 200_000);
    call(&mut pair.new.conn(), &["REPLICAOF", "NO", "ONE"]);
    call(
        &mut pair.old.conn(),
        &["REPLICAOF", "127.0.0.1", &pair.new.port.to_string()],
    );
    assert_quiet_replica(&pair, "noted keys");
}

/// `FAILOVER` (Redis 7) while the background sweeper works through a backlog: the master
/// must hold its writes so the replica can catch up, the roles flip, the new master
/// finishes the work, and the old one only follows.
#[test]
fn failover_completes_during_a_background_backlog_pass() {
    let dir = scratch_dir("failover-cmd");
    let policy = write_policy(&dir, POLICY);
    let opts = ServerOpts::default()
        .policy(&policy)
        .module_arg("pass-interval-s", "3600")
        .config("repl-diskless-sync-delay", "0");
    let old = Server::start_in(dir, opts.clone().module_arg("enabled", "no")).expect("master");
    let port = old.port.to_string();
    let new = Server::start(opts.directive(&["replicaof", "127.0.0.1", &port])).expect("replica");
    attach_replica(&old, &new);
    let mut c = old.conn();
    mset(&mut c, "t:", 300_000);
    wait_replica_caught_up(&old, &new);
    config_set(&mut c, "retention.enabled", "yes");
    let running = wait_until(Duration::from_secs(30), || {
        running_pass(&mut c).is_some_and(|(kind, visited)| kind == "background" && visited > 0)
    });
    assert!(running, "no background pass started");

    call(&mut c, &["FAILOVER"]);
    let flipped = wait_until(Duration::from_secs(60), || {
        role(&mut old.conn()) == "slave" && role(&mut new.conn()) == "master"
    });
    if !flipped {
        let state = info(&mut old.conn(), "replication");
        let _ = try_call(&mut old.conn(), &["FAILOVER", "ABORT"]);
        panic!(
            "FAILOVER did not complete in 60 s; old master: {:?}, {:?}",
            info_field(&state, "master_failover_state"),
            info_field(&state, "role")
        );
    }
    // The new master's own background pass finishes the work.
    let mut n = new.conn();
    let done = wait_until(Duration::from_secs(120), || {
        let ks = info(&mut n, "keyspace");
        let db0 = info_field(&ks, "db0").unwrap_or_default();
        db0.starts_with("keys=300000,expires=300000,")
    });
    assert!(
        done,
        "the new master did not give every key its TTL: {}",
        info(&mut n, "keyspace")
    );
    let pair = Pair { old, new };
    assert_quiet_replica(&pair, "FAILOVER");
}

/// `CLIENT PAUSE WRITE` (what FAILOVER and a cluster manual failover do) in the middle of a
/// SWEEP: the module writes nothing while the pause lasts (the replication offset the
/// replicas must reach stands still), and the pass continues and completes afterwards.
#[test]
fn client_pause_write_holds_a_sweep_which_completes_after_it() {
    let pair = pair(&[]);
    let mut c = pair.old.conn();
    const KEYS: usize = 300_000;
    mset(&mut c, "t:", KEYS);
    wait_replica_caught_up(&pair.old, &pair.new);
    let sweep = in_background(&pair.old, &["RETENTION.SWEEP", "BUDGET", "50"]);
    let mid_way = wait_until(Duration::from_secs(60), || {
        running_pass(&mut c).is_some_and(|(_, visited)| visited >= 20_000)
    });
    assert!(mid_way, "the sweep did not get going");
    assert!(!sweep.is_finished(), "the sweep finished before the pause");
    call(&mut c, &["CLIENT", "PAUSE", "1500", "WRITE"]);
    let at_pause = master_repl_offset(&mut c);
    let visited_at_pause = running_pass(&mut c).map(|(_, v)| v);
    std::thread::sleep(Duration::from_millis(700));
    let later = master_repl_offset(&mut c);
    let visited_later = running_pass(&mut c).map(|(_, v)| v);
    assert_eq!(
        at_pause, later,
        "the module wrote while clients were paused for writes"
    );
    assert!(
        visited_at_pause.is_some() && visited_at_pause == visited_later,
        "the pass moved while paused: {visited_at_pause:?} -> {visited_later:?}"
    );
    let report = sweep
        .join()
        .expect("sweep thread")
        .expect("SWEEP after the pause");
    assert_eq!(map_int(&report, "ttl_set"), KEYS as i64, "{report:?}");
    assert_same_data(&pair.old, &pair.new, &[0], "after the paused sweep");
}
