//! Test harness: real `redis-server` processes on free loopback ports, with the module built
//! by `scripts/test` (release) loaded. Each server is killed when its guard drops, even when a
//! test panics. The binary comes from `RETENTION_SERVER_BIN` (default `redis-server`) so the
//! same suite runs on Valkey.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn server_bin() -> String {
    std::env::var("RETENTION_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_string())
}

/// The module under test: `RETENTION_MODULE`, else the release build, else the debug build.
pub fn module_path() -> PathBuf {
    if let Ok(p) = std::env::var("RETENTION_MODULE") {
        // The server changes to its --dir before loading modules: pass an absolute path.
        let path = PathBuf::from(p);
        return path.canonicalize().unwrap_or(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for profile in ["release", "debug"] {
        let p = root
            .join("target")
            .join(profile)
            .join("libredis_retention.so");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "module not built: run `cargo build --release` (scripts/test does) or set RETENTION_MODULE"
    );
}

pub fn free_port() -> u16 {
    // Bind port 0 and let the kernel choose; the tiny race with another process is acceptable
    // in tests, and the server start is retried on a new port if it loses it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "retention-test-{}-{}-{}",
        std::process::id(),
        tag,
        n
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes `policy_json` to a file in `dir` and returns its path.
pub fn write_policy(dir: &Path, policy_json: &str) -> PathBuf {
    let path = dir.join("policy.json");
    let mut f = std::fs::File::create(&path).expect("create policy file");
    f.write_all(policy_json.as_bytes()).expect("write policy");
    path
}

/// Options for one server.
#[derive(Clone, Default)]
pub struct ServerOpts {
    /// Load the module (default true through `Server::start`).
    pub no_module: bool,
    /// Module arguments (`loadmodule path <args>`), e.g. `["policy-file", "/x.json"]`.
    pub module_args: Vec<String>,
    /// Extra `--name value` config pairs.
    pub config: Vec<(String, String)>,
    /// Extra config directives of several words, e.g. `["rename-command", "EVAL", ""]`.
    pub directives: Vec<Vec<String>>,
    /// Start from this config file; its persistence settings then stand (the harness
    /// still sets port, bind, dir and logfile).
    pub conf_file: Option<PathBuf>,
}

impl ServerOpts {
    pub fn policy(mut self, path: &Path) -> Self {
        self.module_args
            .extend(["policy-file".to_string(), path.display().to_string()]);
        self
    }
    pub fn module_arg(mut self, name: &str, value: &str) -> Self {
        self.module_args
            .extend([name.to_string(), value.to_string()]);
        self
    }
    pub fn config(mut self, name: &str, value: &str) -> Self {
        self.config.push((name.to_string(), value.to_string()));
        self
    }
    /// A directive of several words (`--rename-command EVAL ""`); an empty word is passed
    /// as an empty argument, which the server reads as `""`.
    pub fn directive(mut self, words: &[&str]) -> Self {
        self.directives
            .push(words.iter().map(|w| w.to_string()).collect());
        self
    }
    pub fn conf_file(mut self, path: &Path) -> Self {
        self.conf_file = Some(path.to_path_buf());
        self
    }
    /// Every write in the AOF before the command returns, so a restart reloads all of it.
    pub fn aof(self) -> Self {
        self.config("appendonly", "yes")
            .config("appendfsync", "always")
    }
    /// Pause the background sweeper so a test drives passes itself.
    pub fn paused(self) -> Self {
        self.module_arg("enabled", "no")
    }
}

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Server {
    /// A server with the module loaded and the background sweeper paused.
    pub fn start_paused(policy_json: Option<&str>) -> Server {
        let dir = scratch_dir("srv");
        let mut opts = ServerOpts::default().paused();
        if let Some(json) = policy_json {
            let path = write_policy(&dir, json);
            opts = opts.policy(&path);
        }
        Server::start_in(dir, opts).expect("server start")
    }

    pub fn start(opts: ServerOpts) -> Result<Server, String> {
        Server::start_in(scratch_dir("srv"), opts)
    }

    /// Starts a server in `dir`; Err carries the server log when it did not come up
    /// (e.g. the module refused to load).
    pub fn start_in(dir: PathBuf, opts: ServerOpts) -> Result<Server, String> {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let log = dir.join(format!("server-{port}.log"));
            let mut cmd = Command::new(server_bin());
            if let Some(conf) = &opts.conf_file {
                cmd.arg(conf);
            }
            cmd.arg("--port")
                .arg(port.to_string())
                .arg("--bind")
                .arg("127.0.0.1")
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(&log);
            if opts.conf_file.is_none() {
                cmd.arg("--save").arg("").arg("--appendonly").arg("no");
            }
            cmd.arg("--enable-debug-command")
                .arg("yes")
                .arg("--enable-module-command")
                .arg("yes")
                .arg("--daemonize")
                .arg("no");
            if !opts.no_module {
                cmd.arg("--loadmodule").arg(module_path());
                for a in &opts.module_args {
                    cmd.arg(a);
                }
            }
            for (k, v) in &opts.config {
                cmd.arg(format!("--{k}")).arg(v);
            }
            for words in &opts.directives {
                cmd.arg(format!("--{}", words[0])).args(&words[1..]);
            }
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", server_bin()))?;
            let mut server = Server {
                port,
                dir: dir.clone(),
                child,
            };
            match server.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    last_err = format!("{e}\n--- server log ---\n{log_text}");
                    // `server` drops here and is killed.
                    if log_text.contains("Address already in use") {
                        continue;
                    }
                    return Err(last_err);
                }
            }
        }
        Err(last_err)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("server exited early: {status}"));
            }
            if let Ok(mut c) = self.try_conn() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("server did not answer PING in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        client.get_connection_with_timeout(Duration::from_secs(5))
    }

    pub fn conn(&self) -> redis::Connection {
        let c = self.try_conn().expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("set timeout");
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("server-{}.log", self.port)))
            .unwrap_or_default()
    }

    /// Whether the server process is still alive (a panic must never abort it).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn digest(&self) -> String {
        dataset_digest(&mut self.conn())
    }

    /// Restarts the server process with the same dir (for AOF reloads) and options.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns true or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Attaches `replica` to `master` and waits until the initial sync is done.
pub fn attach_replica(master: &Server, replica: &Server) {
    let mut r = replica.conn();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port)
        .query(&mut r)
        .expect("REPLICAOF");
    let synced = wait_until(Duration::from_secs(30), || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut r)
            .unwrap_or_default();
        info.contains("master_link_status:up")
    });
    assert!(synced, "replica did not sync");
}

fn repl_offset(server: &Server) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut server.conn())
        .expect("INFO replication");
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// Waits until the replica has processed everything the master sent so far.
pub fn wait_replica_caught_up(master: &Server, replica: &Server) {
    let target = repl_offset(master);
    let caught_up = wait_until(Duration::from_secs(30), || repl_offset(replica) >= target);
    assert!(caught_up, "replica did not reach master offset {target}");
}

/// Parses a flat `[field, value, ...]` reply (a RESP2 map) into pairs.
pub fn flat_map(v: &redis::Value) -> Vec<(String, redis::Value)> {
    let items = match v {
        redis::Value::Array(items) => items.clone(),
        redis::Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        other => panic!("expected a map reply, got {other:?}"),
    };
    items
        .chunks(2)
        .map(|kv| {
            let key: String = redis::from_redis_value(&kv[0]).expect("map key");
            (key, kv[1].clone())
        })
        .collect()
}

/// The integer field `name` of a map reply.
pub fn map_int(v: &redis::Value, name: &str) -> i64 {
    let pairs = flat_map(v);
    let (_, value) = pairs
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("field {name} missing in {v:?}"));
    redis::from_redis_value(value).unwrap_or_else(|_| panic!("field {name} not an integer"))
}

/// The string field `name` of a map reply, None when the reply has no such field.
pub fn map_str(v: &redis::Value, name: &str) -> Option<String> {
    let pairs = flat_map(v);
    let (_, value) = pairs.iter().find(|(k, _)| k == name)?;
    Some(redis::from_redis_value(value).unwrap_or_else(|_| panic!("field {name} not a string")))
}

/// Whether client `id` is blocked in `command` (a sliced command waiting for its reply), as
/// `CLIENT LIST` shows it.
pub fn blocked_in(c: &mut redis::Connection, id: i64, command: &str) -> bool {
    let line: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(id)
        .query(c)
        .expect("CLIENT LIST");
    line.contains(&format!("cmd={}", command.to_lowercase())) && line.contains("flags=b")
}

/// A RESP3 reply as JSON, to read a nested map reply (REPORT's, SUGGEST's) by path. Booleans
/// fail: the module's flags are 0/1.
pub fn reply_json(v: &redis::Value) -> serde_json::Value {
    use redis::Value as R;
    use serde_json::Value;
    match v {
        R::Nil => Value::Null,
        R::Int(n) => Value::from(*n),
        R::Double(x) => Value::from(*x),
        R::Boolean(b) => panic!("booleans are 0/1 in replies, got {b}"),
        R::BulkString(bytes) => Value::from(String::from_utf8_lossy(bytes).into_owned()),
        R::SimpleString(text) => Value::from(text.clone()),
        R::Array(items) => Value::Array(items.iter().map(reply_json).collect()),
        R::Map(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let name: String = redis::from_redis_value(k).expect("field name");
                    (name, reply_json(v))
                })
                .collect(),
        ),
        other => panic!("unexpected in a reply: {other:?}"),
    }
}

/// The field `name` of a map reply, None when it is missing or nil (a nested map that is
/// absent, such as STATUS's `pass` while no pass runs).
pub fn map_field(v: &redis::Value, name: &str) -> Option<redis::Value> {
    flat_map(v)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, value)| value)
        .filter(|value| *value != redis::Value::Nil)
}

/// `jobs_removed` of a `RETENTION.JOBS ... CLEAN` reply (a map with `dry_run` and
/// `job_ids` beside it).
pub fn jobs_removed(v: &redis::Value) -> i64 {
    assert!(
        matches!(map_field(v, "job_ids"), Some(redis::Value::Array(_))),
        "CLEAN reply without job_ids: {v:?}"
    );
    assert!((0..=1).contains(&map_int(v, "dry_run")), "{v:?}");
    map_int(v, "jobs_removed")
}

/// The wall clock in Unix milliseconds, as the module and Redis see it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// `RETENTION.SWEEP <args>`, waiting for its report.
pub fn sweep(c: &mut redis::Connection, args: &[&str]) -> redis::Value {
    redis::cmd("RETENTION.SWEEP")
        .arg(args)
        .query(c)
        .expect("RETENTION.SWEEP")
}

/// All members of a sorted set, lowest score first.
pub fn zmembers(c: &mut redis::Connection, key: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(c)
        .expect("ZRANGE")
}

/// splitmix64: a tiny seeded generator for randomized tests, so a failure replays exactly
/// and no dependency is needed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick(&mut self, from: &[u8]) -> u8 {
        from[self.below(from.len())]
    }

    pub fn string(&mut self, alphabet: &[u8], min_len: usize, max_len: usize) -> Vec<u8> {
        let len = min_len + self.below(max_len - min_len + 1);
        (0..len).map(|_| self.pick(alphabet)).collect()
    }
}

/// `PEXPIRETIME` of each key (-1: no TTL, -2: no key), in one pipeline.
pub fn expire_times<K: redis::ToRedisArgs>(c: &mut redis::Connection, keys: &[K]) -> Vec<i64> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("PEXPIRETIME").arg(key);
    }
    pipe.query(c).expect("PEXPIRETIME")
}

/// `DEBUG DIGEST` plus the absolute expire time of every key in the connection's database.
/// The server's digest mixes in only *whether* a key has a TTL, not when it expires, and
/// replicas and AOF reloads must carry the master's exact times.
pub fn dataset_digest(c: &mut redis::Connection) -> String {
    use std::hash::{Hash, Hasher};
    let digest: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(c)
        .expect("DEBUG DIGEST");
    let mut keys: Vec<Vec<u8>> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(c)
        .expect("SCAN")
        .collect();
    keys.sort();
    keys.dedup();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for chunk in keys.chunks(1000) {
        let times = expire_times(c, chunk);
        chunk.iter().zip(times).for_each(|kt| kt.hash(&mut hasher));
    }
    format!("{digest}/{:016x}", hasher.finish())
}

// ---------------------------------------------------------------------------------------
// Helpers of the consistency, fault, failover, cluster and soak suites.

pub mod cluster;

impl Server {
    /// A connection with database `db` selected; on a cluster replica also READONLY, so
    /// that it answers reads of its own keys instead of redirecting them.
    pub fn conn_db(&self, db: i64) -> redis::Connection {
        let mut c = self.conn();
        if db == 0 {
            // Refused outside cluster mode, where it is not needed.
            let _ = try_call(&mut c, &["READONLY"]);
        } else {
            select(&mut c, db);
        }
        c
    }

    /// `dataset_digest` of database `db` (DEBUG DIGEST covers every database; the expire
    /// times are those of `db`).
    pub fn digest_db(&self, db: i64) -> String {
        dataset_digest(&mut self.conn_db(db))
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub fn select(c: &mut redis::Connection, db: i64) {
    let _: () = redis::cmd("SELECT").arg(db).query(c).expect("SELECT");
}

/// Runs a command given as words; panics with the command on error.
pub fn call(c: &mut redis::Connection, args: &[&str]) -> redis::Value {
    try_call(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn try_call(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c)
}

/// Every key `SCAN MATCH pattern` returns (the server's own glob matcher), each once.
pub fn scan_match(
    c: &mut redis::Connection,
    pattern: &[u8],
) -> std::collections::BTreeSet<Vec<u8>> {
    let mut found = std::collections::BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(100_000)
            .query(c)
            .expect("SCAN");
        found.extend(keys);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Whether `key` exists in the selected database.
pub fn exists(c: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(c)
        .expect("EXISTS")
        == 1
}

/// `CONFIG SET name value`.
pub fn config_set(c: &mut redis::Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(c)
        .unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"));
}

/// The value of `field` in an `INFO` text.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// `INFO <section>`.
pub fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query(c)
        .unwrap_or_else(|e| panic!("INFO {section}: {e}"))
}

/// Which server a test talks to, from `INFO server`: Valkey by its own version (it also
/// reports `redis_version:7.2.4`), Redis by `redis_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKind {
    pub valkey: bool,
    pub major: u32,
    pub minor: u32,
}

impl ServerKind {
    pub fn of(c: &mut redis::Connection) -> Self {
        let text = info(c, "server");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_string())
        };
        let valkey = field("valkey_version");
        let version = valkey
            .clone()
            .or_else(|| field("redis_version"))
            .unwrap_or_else(|| panic!("no version in INFO server: {text}"));
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        ServerKind {
            valkey: valkey.is_some(),
            major: parts.next().unwrap_or(0),
            minor: parts.next().unwrap_or(0),
        }
    }

    /// Redis at least `major.minor` (Valkey answers for itself: see the callers).
    pub fn is_redis_at_least(self, major: u32, minor: u32) -> bool {
        !self.valkey && (self.major, self.minor) >= (major, minor)
    }

    /// `RM_SetLRU` sets an idle time to the second (Redis). Valkey 9 takes its argument in
    /// units of 1,000 s, so the module puts back only idle times of 500 s or more there; a
    /// key it read sooner looks just read.
    pub fn restores_short_idle_times(self) -> bool {
        !self.valkey
    }

    /// Module commands carry ACL categories (`RM_SetCommandACLCategories`): Redis 7.2+,
    /// every Valkey.
    pub fn takes_module_acl_categories(self) -> bool {
        self.valkey || self.is_redis_at_least(7, 2)
    }
}

/// An integer field of `INFO <section>`; panics when it is missing.
pub fn info_i64(c: &mut redis::Connection, section: &str, field: &str) -> i64 {
    let text = info(c, section);
    info_field(&text, field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO {section}: no integer {field} in\n{text}"))
}

/// `role:master` or `role:slave` of `INFO replication`.
pub fn role(c: &mut redis::Connection) -> String {
    info_field(&info(c, "replication"), "role").unwrap_or_default()
}

/// `master_repl_offset` of `INFO replication`.
pub fn master_repl_offset(c: &mut redis::Connection) -> i64 {
    info_i64(c, "replication", "master_repl_offset")
}

/// CPU seconds the server process used so far (`used_cpu_sys` + `used_cpu_user`).
pub fn cpu_seconds(c: &mut redis::Connection) -> f64 {
    let text = info(c, "cpu");
    let field = |name: &str| -> f64 {
        info_field(&text, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("INFO cpu: no {name} in\n{text}"))
    };
    field("used_cpu_sys") + field("used_cpu_user")
}

/// CPU seconds per second the server used over about `window`.
pub fn cpu_cores_used(c: &mut redis::Connection, window: Duration) -> f64 {
    let (cpu0, t0) = (cpu_seconds(c), Instant::now());
    std::thread::sleep(window);
    let (cpu1, elapsed) = (cpu_seconds(c), t0.elapsed());
    (cpu1 - cpu0) / elapsed.as_secs_f64()
}

/// `RETENTION.STATS GET`.
pub fn stats(c: &mut redis::Connection) -> redis::Value {
    redis::cmd("RETENTION.STATS")
        .arg("GET")
        .query(c)
        .expect("RETENTION.STATS")
}

/// One integer counter of `RETENTION.STATS`.
pub fn stat(c: &mut redis::Connection, name: &str) -> i64 {
    map_int(&stats(c), name)
}

/// Keys (of the selected databases) whose value or expire time differs between two
/// connections, for failure messages; at most `limit` of them.
pub fn differing_keys(
    a: &mut redis::Connection,
    b: &mut redis::Connection,
    limit: usize,
) -> Vec<String> {
    let all_keys = |c: &mut redis::Connection| -> std::collections::BTreeSet<Vec<u8>> {
        redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(c)
            .expect("SCAN")
            .collect()
    };
    let keys: Vec<Vec<u8>> = all_keys(a).union(&all_keys(b)).cloned().collect();
    let mut out = Vec::new();
    for chunk in keys.chunks(500) {
        let facts = |c: &mut redis::Connection| -> Vec<(Vec<String>, i64)> {
            let mut digests = redis::pipe();
            for k in chunk {
                digests.cmd("DEBUG").arg("DIGEST-VALUE").arg(k);
            }
            let d: Vec<Vec<String>> = digests.query(c).expect("DIGEST-VALUE");
            d.into_iter().zip(expire_times(c, chunk)).collect()
        };
        for ((k, fa), fb) in chunk.iter().zip(facts(a)).zip(facts(b)) {
            if fa != fb {
                out.push(format!("{} ({fa:?} vs {fb:?})", String::from_utf8_lossy(k)));
                if out.len() >= limit {
                    return out;
                }
            }
        }
    }
    out
}

/// Asserts that `replica` holds exactly `master`'s data in each of `dbs` (after waiting
/// for it to process everything the master sent), naming the first differing keys.
pub fn assert_same_data(master: &Server, replica: &Server, dbs: &[i64], what: &str) {
    wait_replica_caught_up(master, replica);
    for &db in dbs {
        let (dm, dr) = (master.digest_db(db), replica.digest_db(db));
        if dm != dr {
            let diff = differing_keys(&mut master.conn_db(db), &mut replica.conn_db(db), 10);
            panic!(
                "{what}: db {db} differs between {} and {}: {diff:?}",
                master.port, replica.port
            );
        }
    }
}

/// The running pass of `RETENTION.STATUS` as (kind, keys scanned), None when none runs.
pub fn running_pass(c: &mut redis::Connection) -> Option<(String, i64)> {
    let status: redis::Value = redis::cmd("RETENTION.STATUS")
        .query(c)
        .expect("RETENTION.STATUS");
    if map_int(&status, "running") == 0 {
        return None;
    }
    let pass = map_field(&status, "pass").expect("STATUS: running without pass");
    let kind = map_str(&pass, "kind").unwrap_or_default();
    Some((kind, map_int(&pass, "keys_scanned")))
}

/// Unix ms → (year, month, day, hour, minute, second, ms) (H. Hinnant's `civil_from_days`),
/// an independent inverse of the parser's day count.
pub fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    )
}

/// A connection authenticated as `user` with the password `pw` (the tests' ACL users).
pub fn login(server: &Server, user: &str) -> redis::Connection {
    let mut c = server.conn();
    let _: () = redis::cmd("AUTH")
        .arg(user)
        .arg("pw")
        .query(&mut c)
        .expect("AUTH");
    c
}

/// `[total, [id, json, (score,) ...]]` → (total, ids).
pub fn page_ids(reply: &redis::Value, stride: usize) -> (i64, Vec<String>) {
    let redis::Value::Array(parts) = reply else {
        panic!("not a page: {reply:?}")
    };
    let total = match &parts[0] {
        redis::Value::Int(n) => *n,
        other => panic!("total: {other:?}"),
    };
    let redis::Value::Array(rows) = &parts[1] else {
        panic!("rows: {:?}", parts[1])
    };
    assert_eq!(rows.len() % stride, 0, "{reply:?}");
    let ids = rows
        .chunks(stride)
        .map(|row| redis::from_redis_value::<String>(&row[0]).expect("id"))
        .collect();
    (total, ids)
}

/// (username, object) of each `ACL LOG` entry, newest first.
pub fn acl_log(c: &mut redis::Connection) -> Vec<(String, String)> {
    let entries: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .arg(100)
        .query(c)
        .expect("ACL LOG");
    entries
        .iter()
        .map(|e| {
            let field = |name: &str| map_str(e, name).unwrap_or_default();
            (field("username"), field("object"))
        })
        .collect()
}

/// `expires=` of `INFO keyspace` for db 0: how many keys there have a TTL.
pub fn keys_with_ttl_db0(c: &mut redis::Connection) -> u64 {
    info_field(&info(c, "keyspace"), "db0")
        .and_then(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix("expires="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Cleans every completed job of the queue `bull:q:` (the queue most tests build).
pub const CLEAN_QUEUE_Q: [&str; 7] = [
    "RETENTION.JOBS",
    "CLEAN",
    "bull",
    "q",
    "completed",
    "MAXAGE",
    "0",
];
