//! ACTIVERUNS.* on a 3-node Redis Cluster (loopback), driven by a cluster client that
//! routes each command by the slot of its first key (the run-set base).
//!
//! Needs the `cluster` feature of the `redis` dev-dependency.

mod common;

use common::cluster::{key_slot, Cluster};
use common::{jobs_removed, map_int, now_ms, ServerOpts};
use redis::cluster::ClusterConnection;
use redis::{Connection, Value};

/// Three masters with the module loaded (background sweeper paused), slots spread by
/// `redis-cli --cluster create`.
fn start(policy_json: &str) -> Cluster {
    Cluster::start(policy_json, 3, 0, ServerOpts::default().paused())
}

/// The node that serves `key`'s slot.
fn owner(cluster: &Cluster, key: &str) -> Connection {
    let slot = key_slot(&mut cluster.nodes[0].conn(), key);
    cluster.slot_owner(slot).conn()
}

fn total_keys(cluster: &Cluster) -> i64 {
    cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<i64>(&mut n.conn()).unwrap())
        .sum()
}

fn q<T: redis::FromRedisValue>(c: &mut ClusterConnection, args: &[&str]) -> redis::RedisResult<T> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

const POLICY: &str = r#"{"rules":[{"name":"r","match":"runs:*","runs":{"max_age":"1h"}}]}"#;

#[test]
fn commands_route_by_the_base_and_keep_both_keys_in_its_slot() {
    let cluster = start(POLICY);
    let mut c = cluster.client();
    let now = now_ms();
    // Twenty run sets, hash-tagged by workspace: they spread over the three nodes.
    let bases: Vec<String> = (0..20)
        .map(|w| format!("runs:active:{{ws{w}}}:proj"))
        .collect();
    for (w, base) in bases.iter().enumerate() {
        for i in 0..5 {
            let score = (now - i * 60_000).to_string();
            let added: i64 = q(
                &mut c,
                &[
                    "ACTIVERUNS.ADD",
                    base,
                    &format!("r{i}"),
                    &format!(r#"{{"w":{w},"i":{i}}}"#),
                    "SCORE",
                    &score,
                ],
            )
            .unwrap();
            assert_eq!(added, 1);
        }
    }
    let mut owners = std::collections::BTreeSet::new();
    for base in &bases {
        let mut node = owner(&cluster, base);
        let here: i64 = redis::cmd("EXISTS")
            .arg(format!("{base}:index"))
            .arg(format!("{base}:data"))
            .query(&mut node)
            .unwrap();
        assert_eq!(
            here, 2,
            "{base}: both keys live on the node of the base's slot"
        );
        owners.insert(
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query::<String>(&mut node)
                .unwrap(),
        );
        assert_eq!(q::<i64>(&mut c, &["ACTIVERUNS.COUNT", base]).unwrap(), 5);
        let page: Value = q(&mut c, &["ACTIVERUNS.PAGE", base, "1", "2", "WITHSCORES"]).unwrap();
        let Value::Array(parts) = page else {
            panic!("{page:?}")
        };
        assert_eq!(parts[0], Value::Int(5));
        let Value::Array(rows) = &parts[1] else {
            panic!()
        };
        assert_eq!(redis::from_redis_value::<String>(&rows[0]).unwrap(), "r0");
        let after: Value = q(
            &mut c,
            &["ACTIVERUNS.AFTER", base, &now.to_string(), "r0", "10"],
        )
        .unwrap();
        let Value::Array(parts) = after else { panic!() };
        let Value::Array(rows) = &parts[1] else {
            panic!()
        };
        assert_eq!(rows.len(), 4 * 3);
        let doc: String = q(&mut c, &["ACTIVERUNS.GET", base, "r1"]).unwrap();
        assert!(doc.contains(r#""i":1"#));
    }
    assert_eq!(
        owners.len(),
        3,
        "the run sets are spread over all three nodes"
    );
    // DEL and EXPIRE through the cluster client.
    assert_eq!(
        q::<i64>(&mut c, &["ACTIVERUNS.DEL", &bases[0], "r0", "r1"]).unwrap(),
        2
    );
    assert_eq!(
        q::<i64>(&mut c, &["ACTIVERUNS.EXPIRE", &bases[1], "150s"]).unwrap(),
        2
    );
    // MIGRATE a legacy hash into itself.
    let legacy = "runs:active:{legacy}:p";
    let _: i64 = q(
        &mut c,
        &[
            "HSET",
            legacy,
            "a",
            r#"{"t":1714566600000}"#,
            "b",
            r#"{"t":"2024-05-01T12:30:01Z"}"#,
        ],
    )
    .unwrap();
    let reply: Value = q(
        &mut c,
        &["ACTIVERUNS.MIGRATE", legacy, legacy, "SCOREFIELD", "t"],
    )
    .unwrap();
    assert_eq!(map_int(&reply, "migrated"), 2);
    assert_eq!(q::<i64>(&mut c, &["ACTIVERUNS.COUNT", legacy]).unwrap(), 2);
}

#[test]
fn a_base_without_a_hash_tag_is_refused_clearly() {
    let cluster = start(POLICY);
    let mut c = cluster.client();
    let before = total_keys(&cluster);
    let base = "runs:active:ws:proj";
    for args in [
        vec!["ACTIVERUNS.ADD", base, "r1", "{}"],
        vec!["ACTIVERUNS.PAGE", base, "1", "10"],
        vec!["ACTIVERUNS.COUNT", base],
        vec!["ACTIVERUNS.EXPIRE", base, "1h"],
        vec!["ACTIVERUNS.MIGRATE", base, base],
    ] {
        let err = q::<Value>(&mut c, &args).unwrap_err().to_string();
        assert!(
            err.contains("hash tag") && err.contains("{ws}"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(total_keys(&cluster), before, "nothing was written");
    // Legacy hash and base in different slots: the server's own CROSSSLOT check.
    let err = q::<Value>(&mut c, &["ACTIVERUNS.MIGRATE", "legacy:{a}", "runs:{b}"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CROSSSLOT") || err.to_lowercase().contains("slot"),
        "{err}"
    );
}

#[test]
fn slots_computed_by_the_module_match_the_server() {
    let cluster = start(POLICY);
    let mut node = cluster.nodes[0].conn();
    for key in [
        "foo",
        "runs:active:{ws}:proj",
        "runs:active:{ws}:proj:index",
        "runs:active:ws:proj:data",
        "{user1000}.following",
        "a{}b",
        "a{b",
        "{}",
        "ü{ñ}x",
    ] {
        let server: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut node)
            .unwrap();
        assert_eq!(
            redis_retention::cluster::key_hash_slot(key.as_bytes()),
            server,
            "{key}"
        );
    }
}

#[test]
fn runs_rule_sweeps_each_node_and_skips_untagged_bases() {
    let cluster = start(POLICY);
    let mut c = cluster.client();
    let old = (now_ms() - 2 * 3_600_000).to_string();
    let fresh = now_ms().to_string();
    let bases: Vec<String> = (0..12).map(|w| format!("runs:{{s{w}}}")).collect();
    for base in &bases {
        let _: i64 = q(
            &mut c,
            &["ACTIVERUNS.ADD", base, "old", "{}", "SCORE", &old],
        )
        .unwrap();
        let _: i64 = q(
            &mut c,
            &["ACTIVERUNS.ADD", base, "new", "{}", "SCORE", &fresh],
        )
        .unwrap();
        let _: i64 = q(&mut c, &["HSET", &format!("{base}:data"), "orphan", "{}"]).unwrap();
    }
    // Written by another tool, without a hash tag: the two keys may live on two nodes.
    let _: i64 = q(&mut c, &["ZADD", "runs:untagged:index", &old, "x"]).unwrap();
    let _: i64 = q(&mut c, &["HSET", "runs:untagged:data", "x", "{}"]).unwrap();
    let mut expired = 0;
    for n in &cluster.nodes {
        let report: Value = redis::cmd("RETENTION.SWEEP").query(&mut n.conn()).unwrap();
        expired += map_int(&report, "runs_expired");
    }
    assert_eq!(expired, 12);
    for base in &bases {
        let mut ids: Vec<String> = q(&mut c, &["HKEYS", &format!("{base}:data")]).unwrap();
        ids.sort();
        assert_eq!(
            ids,
            ["new", "orphan"],
            "{base}: expired run gone; the stray document is only being watched"
        );
        assert_eq!(q::<i64>(&mut c, &["ACTIVERUNS.COUNT", base]).unwrap(), 1);
    }
    assert_eq!(
        q::<i64>(&mut c, &["ZCARD", "runs:untagged:index"]).unwrap(),
        1
    );
    assert_eq!(
        q::<i64>(&mut c, &["HLEN", "runs:untagged:data"]).unwrap(),
        1
    );
}

/// `RETENTION.JOBS` builds its keys from `<prefix>:<queue>:`: the wrong master answers MOVED
/// (as for declared keys) and a cluster client follows it; a queue spread over slots is
/// refused. `RETENTION.TRIM` declares its key: the server itself redirects. The owner's
/// replica serves the reads (COUNTS, PAGE) after READONLY and sends CLEAN to its master.
#[test]
fn retention_jobs_and_trim_answer_moved_on_the_wrong_node_and_cluster_clients_route_them() {
    let cluster = Cluster::start(POLICY, 3, 1, ServerOpts::default().paused());
    let mut c = cluster.client();
    let base = "bull:{orders}:";
    let old = (now_ms() - 86_400_000).to_string();
    let _: () = q(&mut c, &["SET", &format!("{base}id"), "1"]).unwrap();
    for id in ["1", "2"] {
        let job = format!("{base}{id}");
        let _: i64 = q(
            &mut c,
            &["HSET", &job, "timestamp", &old, "finishedOn", &old],
        )
        .unwrap();
        let _: i64 = q(&mut c, &["ZADD", &format!("{base}completed"), &old, id]).unwrap();
    }
    let _: i64 = q(&mut c, &["RPUSH", "trim:{orders}", "a", "b", "c"]).unwrap();
    let runs = "runs:active:{orders}:web";
    let _: i64 = q(&mut c, &["ACTIVERUNS.ADD", runs, "r1", "{}"]).unwrap();
    let slot = key_slot(&mut cluster.nodes[0].conn(), &format!("{base}id"));
    let owner = cluster.slot_owner(slot);
    let owner_port = owner.port;
    for node in cluster
        .current_masters()
        .into_iter()
        .filter(|n| n.port != owner_port)
    {
        let mut wrong = node.conn();
        for args in [
            &["RETENTION.JOBS", "COUNTS", "bull", "{orders}"][..],
            CLEAN_ORDERS,
            &["RETENTION.TRIM", "trim:{orders}", "MAXLEN", "1"],
            &["ACTIVERUNS.PAGE", runs, "1", "10"],
        ] {
            assert_moved_to(&mut wrong, args, owner_port, "the wrong node answered");
        }
    }

    // The owner's replica: a client that did not send READONLY is sent to the master, as
    // the server does for reads of declared keys; in READONLY mode (as cluster clients read
    // from replicas) it is served.
    let replica = cluster.replicas_of(owner)[0];
    let mut r = replica.conn();
    for args in [
        &["RETENTION.JOBS", "COUNTS", "bull", "{orders}"][..],
        &["ACTIVERUNS.PAGE", runs, "1", "10"],
    ] {
        let served = "a replica served a client not in READONLY mode";
        assert_moved_to(&mut r, args, owner_port, served);
    }
    let _: () = redis::cmd("READONLY").query(&mut r).expect("READONLY");
    let _: () = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut owner.conn())
        .map(|_: i64| ())
        .expect("WAIT");
    let counts: Value = redis::cmd("RETENTION.JOBS")
        .arg(&["COUNTS", "bull", "{orders}"])
        .query(&mut r)
        .expect("COUNTS on the replica");
    assert_eq!(map_int(&counts, "completed"), 2);
    // From a read-only script too: the server carries READONLY over to the script's calls.
    let counts: Value = redis::cmd("EVAL_RO")
        .arg("return redis.call('RETENTION.JOBS', 'COUNTS', 'bull', '{orders}')")
        .arg(0)
        .query(&mut r)
        .expect("COUNTS from EVAL_RO on the replica");
    assert_eq!(map_int(&counts, "completed"), 2);
    let page: Value = redis::cmd("ACTIVERUNS.PAGE")
        .arg(&[runs, "1", "10"])
        .query(&mut r)
        .expect("PAGE on the replica");
    assert!(
        matches!(&page, Value::Array(p) if p[0] == Value::Int(1)),
        "{page:?}"
    );
    // CLEAN is a write subcommand with no declared key: a replica answers READONLY before
    // the module runs, as it does for the server's own keyless writes.
    let refused = redis::cmd("RETENTION.JOBS")
        .arg(&["CLEAN", "bull", "{orders}", "completed", "MAXAGE", "1h"])
        .query::<Value>(&mut r)
        .expect_err("CLEAN on a replica");
    assert_eq!(refused.code(), Some("READONLY"), "{refused}");

    // A client that follows MOVED to the node it names, as redis-cli -c does.
    let mut any = cluster.nodes[0].conn();
    let counts = follow_moved(&mut any, &["RETENTION.JOBS", "COUNTS", "bull", "{orders}"]);
    assert_eq!(map_int(&counts, "completed"), 2);
    let clean = [
        "RETENTION.JOBS",
        "CLEAN",
        "bull",
        "{orders}",
        "completed",
        "MAXAGE",
        "30d",
        "MAXLEN",
        "1",
    ];
    assert_eq!(jobs_removed(&follow_moved(&mut any, &clean)), 1);
    // The cluster client: it routes by the first argument, then follows the MOVED.
    let counts: Value = q(&mut c, &["RETENTION.JOBS", "COUNTS", "bull", "{orders}"]).unwrap();
    assert_eq!(map_int(&counts, "completed"), 1);
    let cleaned: Value = q(&mut c, CLEAN_ORDERS).unwrap();
    assert_eq!(jobs_removed(&cleaned), 1);
    let trimmed: i64 = q(&mut c, &["RETENTION.TRIM", "trim:{orders}", "MAXLEN", "1"]).unwrap();
    assert_eq!(trimmed, 2);
    let spread = redis::cmd("RETENTION.JOBS")
        .arg(&["COUNTS", "bull", "orders"])
        .query::<Value>(&mut any)
        .expect_err("a queue without a hash tag");
    assert!(spread.to_string().contains("hash tag"), "{spread}");
}

const CLEAN_ORDERS: &[&str] = &[
    "RETENTION.JOBS",
    "CLEAN",
    "bull",
    "{orders}",
    "completed",
    "MAXAGE",
    "1h",
];

/// Sends `args` to `c`, which must answer `MOVED` to the node on `owner_port` (`served`: the
/// message when it answers instead).
fn assert_moved_to(c: &mut Connection, args: &[&str], owner_port: u16, served: &str) {
    let err = redis::cmd(args[0])
        .arg(&args[1..])
        .query::<Value>(c)
        .expect_err(served);
    assert_eq!(err.code(), Some("MOVED"), "{args:?}: {err}");
    assert!(
        err.to_string().contains(&owner_port.to_string()),
        "{args:?} must name the owner {owner_port}: {err}"
    );
}

/// Sends `args` to `c`; on MOVED, once more to the node the error names.
fn follow_moved(c: &mut Connection, args: &[&str]) -> Value {
    match redis::cmd(args[0]).arg(&args[1..]).query::<Value>(c) {
        Ok(v) => v,
        Err(e) if e.code() == Some("MOVED") => {
            let (addr, _slot) = e.redirect_node().expect("MOVED names a node");
            let mut owner = redis::Client::open(format!("redis://{addr}/"))
                .and_then(|client| client.get_connection())
                .expect("connect to the owner");
            redis::cmd(args[0])
                .arg(&args[1..])
                .query(&mut owner)
                .unwrap_or_else(|e| panic!("{args:?} on {addr}: {e}"))
        }
        Err(e) => panic!("{args:?}: {e}"),
    }
}
