//! The background sweeper in a Redis Cluster: 3 masters with a replica each on loopback.
//! Each master sweeps only the keys it holds, every node ends compliant (every key a ttl
//! rule matches has its TTL) and equal to its replica, and moving a slot with keys to
//! another master in the middle of the passes loses nothing.

mod common;

use std::time::Duration;

use common::cluster::{key_slot, Cluster};
use common::*;
use redis::Connection;

/// One six-node cluster at a time: two forming at once on a 2-core machine made Valkey's
/// take 80-100 s instead of 6-7 s each (cluster bus ports are the client ports + 10000, which
/// the harness does not reserve, and both clusters gossip at once).
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const POLICY: &str = r#"{"rules":[
  {"name":"keep","match":"keep:*","keep":true},
  {"name":"ttl","match":"t:*","ttl":"1d"}
]}"#;

/// Background passes every second, new-key tracking off (the keys must be the passes'
/// work), small slices so that a pass over a backlog takes a while.
fn cluster_opts() -> ServerOpts {
    ServerOpts::default()
        .module_arg("pass-interval-s", "1")
        .module_arg("track-new-keys", "no")
        .module_arg("sweep-budget-us", "50")
        .config("repl-diskless-sync-delay", "0")
}

fn populate(cluster: &Cluster, prefix: &str, n: usize) {
    let mut c = cluster.client();
    for start in (0..n).step_by(5_000) {
        let mut p = redis::cluster::cluster_pipe();
        for i in start..(start + 5_000).min(n) {
            p.cmd("SET").arg(format!("{prefix}{i}")).arg("v").ignore();
        }
        let _: () = p.query(&mut c).expect("populate");
    }
}

fn dbsize(c: &mut Connection) -> i64 {
    redis::cmd("DBSIZE").query(c).expect("DBSIZE")
}

/// Every key of the node: (name, expire time).
fn all_keys(c: &mut Connection) -> Vec<(String, i64)> {
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(c)
        .expect("SCAN")
        .collect();
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(5_000) {
        out.extend(chunk.iter().cloned().zip(expire_times(c, chunk)));
    }
    out
}

/// Keys of the node that are not as the policy says (t:* with a TTL, others without).
fn non_compliant(c: &mut Connection) -> Vec<String> {
    all_keys(c)
        .into_iter()
        .filter(|(k, at)| match k.starts_with("t:") {
            true => *at <= 0,
            false => *at != -1,
        })
        .map(|(k, at)| format!("{k}: {at}"))
        .collect()
}

/// Keys without a TTL on a node, by `INFO keyspace`.
fn keys_without_ttl(c: &mut Connection) -> i64 {
    let text = info(c, "keyspace");
    let Some(db0) = info_field(&text, "db0") else {
        return 0;
    };
    let field = |name: &str| -> i64 {
        db0.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("INFO keyspace db0: {db0}"))
    };
    field("keys") - field("expires")
}

/// Waits until every master is compliant; panics naming the first offenders. `untracked`
/// keys (no rule gives them a TTL) are expected to stay without one.
fn wait_compliant(cluster: &Cluster, untracked: i64, what: &str) {
    // Cheap polling first (INFO keyspace), then one full check of every key.
    wait_until(Duration::from_secs(120), || {
        cluster
            .current_masters()
            .iter()
            .map(|m| keys_without_ttl(&mut m.conn()))
            .sum::<i64>()
            <= untracked
    });
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        last = cluster
            .current_masters()
            .iter()
            .flat_map(|m| {
                let port = m.port;
                non_compliant(&mut m.conn())
                    .into_iter()
                    .map(move |k| format!("{port}: {k}"))
            })
            .collect();
        last.is_empty()
    });
    assert!(
        ok,
        "{what}: {} keys not compliant after 120 s, e.g. {:?}",
        last.len(),
        &last[..last.len().min(10)]
    );
}

/// Every master equals its replica (each master has exactly one).
fn assert_replicas_equal(cluster: &Cluster, what: &str) {
    for m in cluster.current_masters() {
        let replicas = cluster.replicas_of(m);
        assert_eq!(replicas.len(), 1, "{what}: master {} replicas", m.port);
        assert_same_data(m, replicas[0], &[0], what);
    }
}

#[test]
fn background_passes_are_node_local_and_every_node_ends_compliant_and_equal_to_its_replica() {
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(POLICY, 3, 1, cluster_opts());
    populate(&cluster, "t:", 30_000);
    populate(&cluster, "keep:", 3_000);
    populate(&cluster, "o:", 3_000);
    wait_compliant(&cluster, 6_000, "background passes");

    let masters = cluster.current_masters();
    assert_eq!(masters.len(), 3);
    let mut ttl_set_total = 0;
    for m in &masters {
        let mut c = m.conn();
        let own_ttl_keys = all_keys(&mut c)
            .iter()
            .filter(|(k, _)| k.starts_with("t:"))
            .count() as i64;
        assert!(own_ttl_keys > 0, "master {} holds no t:* key", m.port);
        let ttl_set = stat(&mut c, "ttl_set");
        assert_eq!(
            ttl_set, own_ttl_keys,
            "master {}: TTLs set ≠ the t:* keys it holds",
            m.port
        );
        ttl_set_total += ttl_set;
        // The last pass visited this node's keys only.
        let status: redis::Value = redis::cmd("RETENTION.STATUS").query(&mut c).unwrap();
        let last = flat_map(&status)
            .into_iter()
            .find(|(k, _)| k == "last_pass")
            .map(|(_, v)| v)
            .expect("last_pass");
        assert!(
            map_int(&last, "keys_scanned") <= dbsize(&mut c),
            "master {}: a pass scanned more keys than the node holds: {last:?}",
            m.port
        );
        for r in cluster.replicas_of(m) {
            let mut rc = r.conn();
            // (Its passes before `--cluster create` made it a replica saw an empty node.)
            assert_eq!(stat(&mut rc, "ttl_set"), 0, "replica {} acted", r.port);
        }
    }
    assert_eq!(ttl_set_total, 30_000);
    assert_replicas_equal(&cluster, "after the passes");
}

#[test]
fn moving_a_slot_with_keys_in_the_middle_of_passes_loses_nothing() {
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(POLICY, 3, 1, cluster_opts());
    populate(&cluster, "t:", 20_000);
    // A backlog in one slot: 100k keys without TTL under one hash tag.
    const MOVED: usize = 100_000;
    let tag = "t:{mv}:";
    let slot = key_slot(&mut cluster.nodes[0].conn(), &format!("{tag}0"));
    let src = cluster.slot_owner(slot);
    {
        let mut c = src.conn();
        for start in (0..MOVED).step_by(1000) {
            let pairs: Vec<(String, &str)> = (start..(start + 1000).min(MOVED))
                .map(|i| (format!("{tag}{i}"), "v"))
                .collect();
            let _: () = redis::cmd("MSET").arg(&pairs).query(&mut c).expect("MSET");
        }
    }
    let masters = cluster.current_masters();
    let dst = *masters
        .iter()
        .find(|m| m.port != src.port)
        .expect("another master");
    let total_before: i64 = masters.iter().map(|m| dbsize(&mut m.conn())).sum();
    assert_eq!(total_before, (20_000 + MOVED) as i64);

    // The source is in the middle of a pass over its backlog.
    let mut sc = src.conn();
    let mid_pass = wait_until(Duration::from_secs(30), || {
        running_pass(&mut sc).is_some_and(|(_, visited)| visited > 0)
    });
    assert!(mid_pass, "no pass running on the source master");

    let in_slot: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut sc)
        .unwrap();
    assert!(in_slot >= MOVED as i64);
    let (src_id, dst_id) = (Cluster::node_id(src), Cluster::node_id(dst));
    let mut dc = dst.conn();
    call(
        &mut dc,
        &[
            "CLUSTER",
            "SETSLOT",
            &slot.to_string(),
            "IMPORTING",
            &src_id,
        ],
    );
    call(
        &mut sc,
        &[
            "CLUSTER",
            "SETSLOT",
            &slot.to_string(),
            "MIGRATING",
            &dst_id,
        ],
    );
    let started = std::time::Instant::now();
    let mut batches = 0;
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(500)
            .query(&mut sc)
            .expect("GETKEYSINSLOT");
        if keys.is_empty() {
            break;
        }
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(dst.port)
            .arg("")
            .arg(0)
            .arg(10_000)
            .arg("KEYS")
            .arg(&keys)
            .query(&mut sc)
            .expect("MIGRATE");
        batches += 1;
        if batches == 1 {
            assert!(
                running_pass(&mut sc).is_some(),
                "the source's pass was over before the migration began"
            );
        }
    }
    println!(
        "moved {in_slot} keys in {batches} batches, {:?}",
        started.elapsed()
    );
    for m in &masters {
        call(
            &mut m.conn(),
            &["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &dst_id],
        );
    }
    let total_after: i64 = masters.iter().map(|m| dbsize(&mut m.conn())).sum();
    assert_eq!(total_after, total_before, "keys were lost in the move");
    let on_dst: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut dc)
        .unwrap();
    assert_eq!(on_dst, in_slot, "the slot's keys on the new owner");
    let moved_at = std::time::Instant::now();
    wait_compliant(&cluster, 0, "after the move");
    println!("compliant {:?} after the move", moved_at.elapsed());
    let total_end: i64 = masters.iter().map(|m| dbsize(&mut m.conn())).sum();
    assert_eq!(total_end, total_before, "keys were lost after the move");
    assert_replicas_equal(&cluster, "after the move");
    for m in &masters {
        assert_eq!(stat(&mut m.conn(), "errors"), 0, "master {} errors", m.port);
    }
}
