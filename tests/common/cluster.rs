//! A Redis Cluster on loopback: masters (each with the module and a policy) and optional
//! replicas, created with `redis-cli --cluster create`. Every node is a `Server`, killed
//! when the cluster drops.

use std::process::Command;
use std::time::Duration;

use super::{info, info_field, scratch_dir, wait_until, write_policy, Server, ServerOpts};

pub fn cli_bin() -> String {
    std::env::var("RETENTION_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_string())
}

pub struct Cluster {
    /// Masters first, then replicas, in the order `--cluster create` was given them.
    pub nodes: Vec<Server>,
    pub masters: usize,
}

impl Cluster {
    /// `masters` masters with `replicas_each` replicas each; every node loads the module
    /// with `policy_json` and `opts` (plus the cluster configs).
    pub fn start(
        policy_json: &str,
        masters: usize,
        replicas_each: usize,
        opts: ServerOpts,
    ) -> Cluster {
        let total = masters * (1 + replicas_each);
        let nodes: Vec<Server> = (0..total)
            .map(|_| {
                let dir = scratch_dir("cluster");
                let policy = write_policy(&dir, policy_json);
                let node_opts = opts
                    .clone()
                    .policy(&policy)
                    .config("cluster-enabled", "yes")
                    .config("cluster-config-file", "nodes.conf")
                    .config("cluster-node-timeout", "5000");
                Server::start_in(dir, node_opts).expect("cluster node start")
            })
            .collect();
        let mut create = Command::new(cli_bin());
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args([
                "--cluster-replicas",
                &replicas_each.to_string(),
                "--cluster-yes",
            ])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes, masters };
        let ready = wait_until(Duration::from_secs(60), || {
            cluster.nodes.iter().all(|n| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut n.conn())
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{total}"))
            })
        });
        assert!(ready, "cluster did not become ready");
        // Replicas: wait until each has synced with its master.
        let synced = wait_until(Duration::from_secs(60), || {
            cluster.nodes.iter().all(|n| {
                let text = info(&mut n.conn(), "replication");
                match info_field(&text, "role").as_deref() {
                    Some("slave") => text.contains("master_link_status:up"),
                    _ => true,
                }
            })
        });
        assert!(synced, "cluster replicas did not sync");
        cluster
    }

    pub fn client(&self) -> redis::cluster::ClusterConnection {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect();
        redis::cluster::ClusterClient::new(urls)
            .expect("cluster client")
            .get_connection()
            .expect("cluster connection")
    }

    /// `CLUSTER MYID` of a node.
    pub fn node_id(node: &Server) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut node.conn())
            .expect("CLUSTER MYID")
    }

    /// The nodes that are masters now, by `INFO replication`.
    pub fn current_masters(&self) -> Vec<&Server> {
        self.nodes
            .iter()
            .filter(|n| super::role(&mut n.conn()) == "master")
            .collect()
    }

    /// The replicas of `master` now (by their `master_port`).
    pub fn replicas_of(&self, master: &Server) -> Vec<&Server> {
        self.nodes
            .iter()
            .filter(|n| {
                let text = info(&mut n.conn(), "replication");
                info_field(&text, "role").as_deref() == Some("slave")
                    && info_field(&text, "master_port").as_deref()
                        == Some(master.port.to_string().as_str())
            })
            .collect()
    }

    /// The master serving `slot`, by `CLUSTER SLOTS` as node 0 sees it.
    pub fn slot_owner(&self, slot: u16) -> &Server {
        let slots: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.nodes[0].conn())
            .expect("CLUSTER SLOTS");
        let redis::Value::Array(ranges) = slots else {
            panic!("CLUSTER SLOTS: {slots:?}")
        };
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let lo: i64 = redis::from_redis_value(&parts[0]).expect("slot");
            let hi: i64 = redis::from_redis_value(&parts[1]).expect("slot");
            if (lo..=hi).contains(&i64::from(slot)) {
                let redis::Value::Array(node) = &parts[2] else {
                    panic!("CLUSTER SLOTS node")
                };
                let port: u16 = redis::from_redis_value(&node[1]).expect("port");
                return self
                    .nodes
                    .iter()
                    .find(|n| n.port == port)
                    .expect("owner is one of ours");
            }
        }
        panic!("slot {slot} is not served")
    }
}

/// `CLUSTER KEYSLOT key` as the server computes it.
pub fn key_slot(c: &mut redis::Connection, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(c)
        .expect("CLUSTER KEYSLOT")
}
