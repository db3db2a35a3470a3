//! Hostile input against a live server: every command with the nasty arguments of
//! `tests/corpus/commands/` (empty, binary, 1 MB, huge/negative/NaN/inf numbers, wrong
//! types, deep JSON), keys that vanish while a SWEEP, TRIM or JOBS CLEAN runs in slices,
//! and policy files of 100k rules, 100 MB, binary or not files at all. Each case gets a
//! clear error or a correct result, the server keeps answering, the dataset does not change
//! where nothing should, no panic is logged, and failing calls leave no memory behind.
//!
//! Runs on Redis 7.0 by default and on Valkey with `RETENTION_SERVER_BIN`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use redis::{Connection, Value};
use redis_retention::policy::Glob;

/// Replies to failing calls must stay readable: a bounded prefix of a megabyte argument.
const MAX_ERROR_BYTES: usize = 4096;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

// ---------------------------------------------------------------------------------------
// The command corpus (format: tests/corpus/commands/README.md).

/// Generated words, built once.
fn generated(word: &str) -> Option<&'static [u8]> {
    static WORDS: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    let words = WORDS.get_or_init(|| {
        const MB: usize = 1 << 20;
        const DEPTH: usize = 100_000;
        let nested = |open: &str, close: &str, depth: usize| {
            [open.repeat(depth), close.repeat(depth)]
                .concat()
                .into_bytes()
        };
        vec![
            ("$MB", vec![b'x'; MB]),
            ("$MBBIN", (0..MB).map(|i| i as u8).collect()),
            ("$STARS", b"*a".repeat(500_000)),
            ("$DEEP", nested("[", "]", DEPTH)),
            ("$DEEPOPEN", b"[".repeat(DEPTH)),
            (
                "$DEEPSCORE",
                [&b"{\"t\":"[..], &nested("[", "]", 200), b"}"].concat(),
            ),
            (
                "$BIGDOC",
                format!("{{\"x\":\"{}\"}}", "x".repeat(MB)).into_bytes(),
            ),
        ]
    });
    words
        .iter()
        .find(|(name, _)| *name == word)
        .map(|(_, bytes)| bytes.as_slice())
}

fn unescape_word(word: &str) -> Vec<u8> {
    if word == "\"\"" {
        return Vec::new();
    }
    if let Some(bytes) = generated(word) {
        return bytes.to_vec();
    }
    let b = word.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, len) = match b[i + 1] {
            b'x' => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("\\xNN");
                (u8::from_str_radix(hex, 16).expect("\\xNN"), 4)
            }
            b's' => (b' ', 2),
            b't' => (b'\t', 2),
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            other => panic!("unknown escape \\{} in {word:?}", other as char),
        };
        out.push(byte);
        i += len;
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Err(String),
    WrongType,
    Arity,
    Int(i64),
    Nil,
    Ok,
}

#[derive(Debug, Clone)]
struct Case {
    /// `file:line` for messages.
    at: String,
    text: String,
    words: Vec<Vec<u8>>,
    expect: Expect,
    writes: bool,
}

fn command_corpus() -> Vec<Case> {
    let dir = corpus_dir().join("commands");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/corpus/commands")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("corpus file");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name}:{}", n + 1);
            let (command, expectation) = line
                .split_once(" => ")
                .unwrap_or_else(|| panic!("{at}: no ' => ' in {line:?}"));
            let mut expectation = expectation.trim().to_string();
            let mut flag = |f: &str| match expectation.strip_suffix(f) {
                Some(rest) => {
                    expectation = rest.trim_end().to_string();
                    true
                }
                None => false,
            };
            let writes = flag("+writes");
            let expect = match expectation.split_once(' ') {
                _ if expectation == "ok" => Expect::Ok,
                _ if expectation == "WRONGTYPE" => Expect::WrongType,
                _ if expectation == "ARITY" => Expect::Arity,
                Some(("ERR", text)) => Expect::Err(text.to_string()),
                Some(("=", "nil")) => Expect::Nil,
                Some(("=", n)) => Expect::Int(n.parse().expect("= <integer>")),
                _ => panic!("{at}: bad expectation {expectation:?}"),
            };
            cases.push(Case {
                at,
                text: command.to_string(),
                words: command.split(' ').map(unescape_word).collect(),
                expect,
                writes,
            });
        }
    }
    cases
}

fn run_words(c: &mut Connection, words: &[Vec<u8>]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(std::str::from_utf8(&words[0]).expect("command name"));
    for w in &words[1..] {
        cmd.arg(w.as_slice());
    }
    cmd.query(c)
}

fn call_words(c: &mut Connection, words: &[&[u8]]) -> Value {
    let owned: Vec<Vec<u8>> = words.iter().map(|w| w.to_vec()).collect();
    run_words(c, &owned).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(words[0])))
}

/// Checks one reply against its case; returns a description of what is wrong.
fn check_reply(case: &Case, reply: &redis::RedisResult<Value>) -> Option<String> {
    let error = match reply {
        Ok(v) => {
            return match (&case.expect, v) {
                (Expect::Ok, _) => None,
                (Expect::Int(n), Value::Int(got)) if got == n => None,
                (Expect::Nil, Value::Nil) => None,
                (want, got) => Some(format!("want {want:?}, got {}", short(got))),
            };
        }
        Err(e) => e,
    };
    if error.kind() == redis::ErrorKind::IoError {
        return Some(format!("connection failed (server down?): {error}"));
    }
    let code = error.code().unwrap_or("?");
    let detail = error.detail().unwrap_or("");
    if detail.len() > MAX_ERROR_BYTES {
        return Some(format!(
            "error of {} bytes echoes the input: {}...",
            detail.len(),
            &detail[..80]
        ));
    }
    if detail.contains("internal error") {
        return Some(format!("panicked: {detail}"));
    }
    match &case.expect {
        Expect::Err(text) if code == "ERR" && detail.contains(text.as_str()) => None,
        Expect::WrongType if code == "WRONGTYPE" => None,
        Expect::Arity if code == "ERR" && detail.contains("wrong number of arguments") => None,
        want => Some(format!(
            "want {want:?}, got {code} {}",
            detail.chars().take(300).collect::<String>()
        )),
    }
}

fn short(v: &Value) -> String {
    let text = format!("{v:?}");
    text.chars().take(300).collect()
}

const CORPUS_POLICY: &str = r#"{"rules":[{"name":"all","match":"k:*","ttl":"1h"}]}"#;

/// The keys the corpus lines refer to.
fn fixture(c: &mut Connection) {
    let run = |c: &mut Connection, words: &[&str]| {
        call(c, words);
    };
    run(c, &["SET", "str", "v"]);
    run(c, &["RPUSH", "list", "a", "b", "c"]);
    run(c, &["HSET", "hash", "f", "v"]);
    run(c, &["SADD", "set", "m"]);
    run(c, &["ZADD", "zset", "1", "a", "2", "b", "3", "c"]);
    for id in ["1-1", "2-1", "3-1"] {
        run(c, &["XADD", "stream", id, "f", "v"]);
    }
    run(
        c,
        &[
            "ACTIVERUNS.ADD",
            "runs:{a}",
            "r1",
            r#"{"id":"r1"}"#,
            "SCORE",
            "1000",
        ],
    );
    run(
        c,
        &[
            "ACTIVERUNS.ADD",
            "runs:{a}",
            "r2",
            r#"{"id":"r2"}"#,
            "SCORE",
            "2000",
        ],
    );
    run(c, &["SET", "wt:{a}:index", "not a zset"]);
    call_words(c, &[b"HSET", b"legacy:{bad}", b"\xff", b"{}"]);
    run(c, &["HSET", "legacy:{json}", "r1", "not json"]);
    let deep = generated("$DEEPSCORE").expect("generated");
    call_words(c, &[b"HSET", b"legacy:{deep}", b"r1", deep]);
    run(c, &["HSET", "bull:q:meta", "version", "bullmq:5.0.0"]);
    run(c, &["SET", "bull:q:id", "3"]);
    for (i, id) in ["1", "2", "3"].iter().enumerate() {
        let key = format!("bull:q:{id}");
        let finished = (1_000 + i).to_string();
        run(
            c,
            &[
                "HSET",
                &key,
                "name",
                "job",
                "data",
                "{}",
                "finishedOn",
                &finished,
            ],
        );
        run(c, &["ZADD", "bull:q:completed", &finished, id]);
    }
    run(c, &["SET", "bull:wt:id", "1"]);
    run(c, &["SET", "bull:wt:completed", "not a zset"]);
    call_words(c, &[b"SET", b"bin\x00\xff", b"v"]);
}

/// `used_memory` once every client but the caller is gone (their buffers would count).
fn used_memory_alone(c: &mut Connection) -> i64 {
    let alone = wait_until(Duration::from_secs(10), || {
        info_i64(c, "clients", "connected_clients") == 1
    });
    assert!(alone, "other clients did not go away");
    info_i64(c, "memory", "used_memory")
}

#[test]
fn every_command_gives_a_clear_answer_to_the_nasty_corpus() {
    let mut server = Server::start_paused(Some(CORPUS_POLICY));
    let mut c = server.conn();
    fixture(&mut c);
    let cases = command_corpus();
    assert!(cases.len() >= 200, "corpus too small: {}", cases.len());
    let commands: BTreeSet<String> = cases
        .iter()
        .map(|k| String::from_utf8_lossy(&k.words[0]).to_ascii_uppercase())
        .collect();
    for name in [
        "RETENTION.SWEEP",
        "RETENTION.STATUS",
        "RETENTION.POLICY",
        "RETENTION.RELOAD",
        "RETENTION.STATS",
        "RETENTION.TRIM",
        "RETENTION.JOBS",
        "RETENTION.SUGGEST",
        "ACTIVERUNS.ADD",
        "ACTIVERUNS.DEL",
        "ACTIVERUNS.GET",
        "ACTIVERUNS.PAGE",
        "ACTIVERUNS.AFTER",
        "ACTIVERUNS.COUNT",
        "ACTIVERUNS.EXPIRE",
        "ACTIVERUNS.MIGRATE",
    ] {
        assert!(commands.contains(name), "the corpus has no case for {name}");
    }

    let mut failures = Vec::new();
    let mut digest = dataset_digest(&mut c);
    for case in &cases {
        let reply = run_words(&mut c, &case.words);
        if let Some(why) = check_reply(case, &reply) {
            failures.push(format!("{} {}: {why}", case.at, case.text));
        }
        let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut c);
        assert_eq!(
            pong.as_deref(),
            Ok("PONG"),
            "{} {}: server gone",
            case.at,
            case.text
        );
        let now = dataset_digest(&mut c);
        if now != digest && !case.writes {
            failures.push(format!("{} {}: changed the dataset", case.at, case.text));
        }
        digest = now;
    }
    // The same lines under RESP3 (maps, nulls and doubles of their own): the same answers.
    let mut c3 = server.conn();
    let _: Value = redis::cmd("HELLO").arg(3).query(&mut c3).expect("HELLO 3");
    for case in cases.iter().filter(|k| !k.writes) {
        let reply = run_words(&mut c3, &case.words);
        if let Some(why) = check_reply(case, &reply) {
            failures.push(format!("{} {} (RESP3): {why}", case.at, case.text));
        }
    }
    assert_eq!(
        dataset_digest(&mut c),
        digest,
        "a RESP3 line changed the dataset"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    drop(c3);
    assert!(server.alive());
    let log = server.log();
    assert!(
        !log.contains("internal error"),
        "a panic was logged:\n{log}"
    );

    // Memory: the failing calls again, many times, on a connection that then goes away;
    // the module must keep nothing of them. The first round above warmed up whatever is
    // allocated once.
    let failing: Vec<&Case> = cases
        .iter()
        .filter(|k| matches!(k.expect, Expect::Err(_) | Expect::WrongType | Expect::Arity))
        .collect();
    drop(c);
    let mut probe = server.conn();
    // The server's own logs of slow and large commands (Valkey's COMMANDLOG keeps requests
    // over 1 MB) fill up with these calls: switched off, they keep nothing.
    for (name, value) in [
        ("slowlog-max-len", "0"),
        ("commandlog-slow-execution-max-len", "0"),
        ("commandlog-large-request-max-len", "0"),
        ("commandlog-large-reply-max-len", "0"),
    ] {
        let _ = try_call(&mut probe, &["CONFIG", "SET", name, value]);
    }
    let _ = try_call(&mut probe, &["SLOWLOG", "RESET"]);
    for kind in ["slow", "large-request", "large-reply"] {
        let _ = try_call(&mut probe, &["COMMANDLOG", "RESET", kind]);
    }
    let before = used_memory_alone(&mut probe);
    {
        let mut c = server.conn();
        for _ in 0..5 {
            for case in &failing {
                let _ = run_words(&mut c, &case.words);
            }
        }
    }
    let after = used_memory_alone(&mut probe);
    let calls = failing.len() as i64 * 5;
    eprintln!("{calls} failing calls: used_memory {before} -> {after}");
    assert!(
        after - before < 64 * 1024,
        "{calls} failing calls left {} bytes behind ({before} -> {after})",
        after - before
    );
    assert_eq!(dataset_digest(&mut probe), digest);
}

// ---------------------------------------------------------------------------------------
// Globs: the corpus cases against SCAN MATCH, and the module's own matching (through
// RETENTION.SWEEP DRYRUN MATCH) against SCAN MATCH.

fn glob_corpus() -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let text = std::fs::read_to_string(corpus_dir().join("globs.txt")).expect("globs.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let unescape = |s: &str| {
                if s.is_empty() {
                    Vec::new()
                } else {
                    unescape_word(s)
                }
            };
            (unescape(cols[0]), unescape(cols[1]), cols[2].trim() == "1")
        })
        .collect()
}

#[test]
fn glob_corpus_and_star_limit_agree_with_scan_match() {
    let policy = r#"{"rules":[{"name":"every","match":"*","ttl":"1h"}]}"#;
    let server = Server::start_paused(Some(policy));
    let mut c = server.conn();
    let cases = glob_corpus();
    let names: BTreeSet<Vec<u8>> = cases.iter().map(|(_, n, _)| n.clone()).collect();
    for name in &names {
        call_words(&mut c, &[b"SET", name, b"v"]);
    }
    for (pattern, name, want) in &cases {
        let found = scan_match(&mut c, pattern);
        assert_eq!(
            found.contains(name),
            *want,
            "SCAN MATCH {:?} and {:?}",
            String::from_utf8_lossy(pattern),
            String::from_utf8_lossy(name)
        );
        // The module's own matcher picks the same keys (patterns it accepts).
        if Glob::new(pattern).is_ok() {
            let report = call_words(&mut c, &[b"RETENTION.SWEEP", b"DRYRUN", b"MATCH", pattern]);
            assert_eq!(
                map_int(&report, "ttl_set") as usize,
                found.len(),
                "module and SCAN MATCH disagree on {:?}",
                String::from_utf8_lossy(pattern)
            );
        }
    }

    // The nesting guard of CVE-2024-31228 (in Debian's 7.0.15 and Valkey 9.1; not in
    // upstream 7.0.15): 1000 runs of `*` match, 1001 never do. The module matches the first
    // and refuses the second.
    call_words(&mut c, &[b"FLUSHALL"]);
    let name = vec![b'a'; 1001];
    call_words(&mut c, &[b"SET", &name, b"v"]);
    let at_limit = b"*a".repeat(1000);
    assert!(scan_match(&mut c, &at_limit).contains(&name));
    let report = call_words(
        &mut c,
        &[b"RETENTION.SWEEP", b"DRYRUN", b"MATCH", &at_limit],
    );
    assert_eq!(map_int(&report, "ttl_set"), 1);
    let over = b"*a".repeat(1001);
    assert!(
        !scan_match(&mut c, &over).contains(&name),
        "this server lacks the CVE-2024-31228 guard"
    );
    let err = run_words(
        &mut c,
        &[b"RETENTION.SWEEP".to_vec(), b"MATCH".to_vec(), over.clone()],
    )
    .expect_err("refused");
    assert!(err.to_string().contains("more than 1000"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Keys that vanish, or change type, while sliced work is under way.

/// Fills `key` with `n` entries of `kind` (list, zset or stream) in one script.
fn fill(c: &mut Connection, kind: &str, key: &str, n: usize) {
    let body = match kind {
        "list" => "redis.call('RPUSH', KEYS[1], i)",
        "zset" => "redis.call('ZADD', KEYS[1], i, i)",
        "stream" => "redis.call('XADD', KEYS[1], i .. '-1', 'f', i)",
        _ => unreachable!(),
    };
    let script = format!("for i = 1, tonumber(ARGV[1]) do {body} end return 1");
    let _: i64 = redis::cmd("EVAL")
        .arg(script)
        .arg(1)
        .arg(key)
        .arg(n)
        .query(c)
        .expect("fill");
}

/// 200,000 keys `v:<n>` under a TTL rule, and a 50 µs budget: passes of many slices.
fn server_with_200k_keys() -> (Server, Connection) {
    let policy = r#"{"rules":[{"name":"v","match":"v:*","ttl":"1h"}]}"#;
    let server = Server::start_paused(Some(policy));
    let mut c = server.conn();
    config_set(&mut c, "retention.sweep-budget-us", "50");
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(200_000)
        .arg("v")
        .query(&mut c)
        .expect("populate");
    (server, c)
}

#[test]
fn keys_vanishing_or_changing_type_mid_work_get_a_clear_answer() {
    let (mut server, mut c) = server_with_200k_keys();

    // A sweep while another client deletes, re-types and flushes keys under it.
    let mut sweeper = server.conn();
    let sweep =
        std::thread::spawn(move || redis::cmd("RETENTION.SWEEP").query::<Value>(&mut sweeper));
    let mut pipe = redis::pipe();
    for i in (0..200_000).step_by(3) {
        pipe.cmd("UNLINK").arg(format!("v:{i}")).ignore();
    }
    for i in (1..200_000).step_by(30) {
        pipe.cmd("DEL").arg(format!("v:{i}")).ignore();
        pipe.cmd("RPUSH").arg(format!("v:{i}")).arg("x").ignore();
    }
    pipe.query::<()>(&mut c).expect("deletes");
    let report = sweep.join().expect("sweep thread").expect("sweep reply");
    assert!(map_int(&report, "ttl_set") <= 200_000);
    // Keys nobody touched were there for the whole pass: each got its TTL.
    let untouched: Vec<String> = (0..200_000)
        .filter(|i| i % 3 == 2 && i % 30 != 1)
        .step_by(97)
        .map(|i| format!("v:{i}"))
        .collect();
    assert!(expire_times(&mut c, &untouched).iter().all(|t| *t > 0));

    // A sweep while the database is flushed under it.
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(200_000)
        .arg("w")
        .query(&mut c)
        .expect("populate");
    let mut sweeper = server.conn();
    let sweep =
        std::thread::spawn(move || redis::cmd("RETENTION.SWEEP").query::<Value>(&mut sweeper));
    std::thread::sleep(Duration::from_millis(5));
    call(&mut c, &["FLUSHDB"]);
    let report = sweep.join().expect("sweep thread").expect("sweep reply");
    assert!(map_int(&report, "keys_scanned") <= 200_000);
    let left: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(left, 0, "flushed");

    // TRIM and JOBS CLEAN while their key is deleted, replaced by another type, or replaced
    // by a fresh collection of the same type.
    for kind in ["list", "zset", "stream"] {
        for what in ["deleted", "retyped", "replaced"] {
            fill(&mut c, kind, "t", 300_000);
            let mut trimmer = server.conn();
            let trim = std::thread::spawn(move || {
                redis::cmd("RETENTION.TRIM")
                    .arg("t")
                    .arg("MAXLEN")
                    .arg(10)
                    .query::<Value>(&mut trimmer)
            });
            call(&mut c, &["DEL", "t"]);
            match what {
                "retyped" => {
                    call(&mut c, &["SET", "t", "a string now"]);
                }
                "replaced" => fill(&mut c, kind, "t", 1000),
                _ => {}
            }
            let reply = trim.join().expect("trim thread");
            let case = format!("TRIM of a {kind} {what} mid-trim");
            match reply {
                Ok(Value::Int(n)) => assert!((0..=300_000).contains(&n), "{case}: {n}"),
                Err(e) if e.code() == Some("WRONGTYPE") && what == "retyped" => {}
                other => panic!("{case}: {other:?}"),
            }
            if what == "retyped" {
                call(&mut c, &["DEL", "t"]);
                continue;
            }
            let len: i64 = match (kind, what) {
                (_, "deleted") => 0,
                ("list", _) => redis::cmd("LLEN").arg("t").query(&mut c).expect("LLEN"),
                ("zset", _) => redis::cmd("ZCARD").arg("t").query(&mut c).expect("ZCARD"),
                _ => redis::cmd("XLEN").arg("t").query(&mut c).expect("XLEN"),
            };
            assert!(len <= 1000, "{case}: {len} entries left");
            call(&mut c, &["DEL", "t"]);
        }
    }

    // A BullMQ queue whose finished set or jobs vanish while CLEAN runs.
    for what in [
        "set deleted",
        "set retyped",
        "jobs deleted",
        "queue flushed",
    ] {
        let n = 30_000;
        call(&mut c, &["HSET", "bull:q:meta", "version", "bullmq:5.0.0"]);
        call(&mut c, &["SET", "bull:q:id", &n.to_string()]);
        let _: i64 = redis::cmd("EVAL")
            .arg(
                "for i = 1, tonumber(ARGV[1]) do \
                   redis.call('HSET', 'bull:q:' .. i, 'name', 'j', 'finishedOn', i) \
                   redis.call('ZADD', 'bull:q:completed', i, i) \
                 end return 1",
            )
            .arg(0)
            .arg(n)
            .query(&mut c)
            .expect("jobs");
        let mut cleaner = server.conn();
        let clean = std::thread::spawn(move || {
            redis::cmd("RETENTION.JOBS")
                .arg(&["CLEAN", "bull", "q", "completed", "MAXAGE", "0"][..])
                .query::<Value>(&mut cleaner)
        });
        match what {
            "set deleted" => {
                call(&mut c, &["DEL", "bull:q:completed"]);
            }
            "set retyped" => {
                call(&mut c, &["DEL", "bull:q:completed"]);
                call(&mut c, &["SET", "bull:q:completed", "x"]);
            }
            "jobs deleted" => {
                let mut pipe = redis::pipe();
                for i in (1..=n).rev() {
                    pipe.cmd("UNLINK").arg(format!("bull:q:{i}")).ignore();
                }
                pipe.query::<()>(&mut c).expect("unlink jobs");
            }
            _ => {
                call(&mut c, &["FLUSHDB"]);
            }
        }
        let reply = clean.join().expect("clean thread");
        match reply {
            Ok(reply) => assert!((0..=n as i64).contains(&jobs_removed(&reply)), "{what}"),
            Err(e) if e.code() == Some("WRONGTYPE") && what == "set retyped" => {}
            other => panic!("CLEAN with its {what}: {other:?}"),
        }
        call(&mut c, &["FLUSHDB"]);
    }
    assert!(server.alive());
    let log = server.log();
    assert!(
        !log.contains("internal error"),
        "a panic was logged:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// Hostile keyspace data: what other writers may leave under the names rules govern.

#[test]
fn sweeps_over_hostile_queue_run_and_collection_keys_stay_consistent() {
    let policy = r#"{"rules":[
        {"name":"mq","match":"bull:*","queue":{"flavor":"bullmq",
            "completed":{"max_age":"1ms","max_len":0},"failed":{"max_len":1},
            "events":{"max_len":0,"max_age":"1ms"},"orphan_age":"1ms"}},
        {"name":"b3","match":"bq:*","queue":{"flavor":"bull",
            "completed":{"max_age":"1ms"},"orphan_age":"1ms"}},
        {"name":"runs","match":"runs:*","runs":{"max_age":"1ms"}},
        {"name":"s","match":"s:*","type":"stream","trim":{"max_len":1,"max_age":"1ms"}},
        {"name":"l","match":"l:*","type":"list","trim":{"max_len":1}},
        {"name":"z","match":"z:*","type":"zset","trim":{"max_len":1,"max_age":"1ms","score_unit":"s"}},
        {"name":"rest","match":"*","ttl":"1h","cap":true}]}"#;
    let master = Server::start_paused(Some(policy));
    let replica = Server::start_paused(Some(policy));
    attach_replica(&master, &replica);
    let mut c = master.conn();
    let big = vec![b'm'; 1 << 20];
    let w = |c: &mut Connection, words: &[&[u8]]| {
        call_words(c, words);
    };
    // A BullMQ queue whose keys hold what nobody should have written.
    w(
        &mut c,
        &[b"HSET", b"bull:q:meta", b"version", b"bullmq:5.0.0"],
    );
    w(&mut c, &[b"HSET", b"bull:g:meta", b"version", b"\xff\xfe"]);
    w(&mut c, &[b"ZADD", b"bull:g:completed", b"1", b"1"]);
    w(&mut c, &[b"HSET", b"bull:q:id", b"not", b"a counter"]);
    w(&mut c, &[b"SET", b"bull:q:events", b"not a stream"]);
    for (score, member) in [
        (&b"-inf"[..], &b""[..]),
        (b"inf", b"\xff"),
        (b"0", &big[..]),
        (b"1e300", b"1:logs"),
        (b"1", b"de:x"),
        (b"2", b"repeat:a:1"),
        (b"3", b"7"),
        (b"4", b"8"),
    ] {
        w(&mut c, &[b"ZADD", b"bull:q:completed", score, member]);
        w(&mut c, &[b"ZADD", b"bull:q:failed", score, member]);
    }
    w(
        &mut c,
        &[
            b"HSET",
            b"bull:q:7",
            b"finishedOn",
            b"abc",
            b"parentKey",
            b"\xff",
        ],
    );
    w(
        &mut c,
        &[
            b"HSET",
            b"bull:q:8",
            b"deid",
            b"",
            b"parentKey",
            b"bull:q:7",
        ],
    );
    w(&mut c, &[b"SADD", b"bull:q:7:dependencies", b"bull:q:8"]);
    w(&mut c, &[b"RPUSH", b"bull:q:1:logs", b"x"]);
    w(&mut c, &[b"SET", b"bull:q:de:x", b"1"]);
    w(&mut c, &[b"ZADD", b"bull::completed", b"1", b"1"]);
    w(&mut c, &[b"ZADD", b"bull:completed", b"1", b"1"]);
    w(&mut c, &[b"SET", b"bull:", b"v"]);
    w(&mut c, &[b"HSET", b"bull:q:9", b"finishedOn", b"1"]);
    w(&mut c, &[b"HSET", b"bull:a:b:c:d", b"finishedOn", b"1"]);
    // A Bull queue with a limiter index of the wrong type.
    w(&mut c, &[b"SET", b"bq:q:id", b"2"]);
    w(&mut c, &[b"SET", b"bq:q:limiter:index", b"x"]);
    w(
        &mut c,
        &[b"ZADD", b"bq:q:completed", b"1", b"1", b"2", b"2"],
    );
    w(
        &mut c,
        &[b"HSET", b"bq:q:1", b"finishedOn", b"-99999999999999999999"],
    );
    w(
        &mut c,
        &[b"HSET", b"bq:q:2", b"timestamp", b"1", b"finishedOn", b""],
    );
    // Run sets with halves of the wrong type, foreign scores, lone halves.
    w(&mut c, &[b"SET", b"runs:a:index", b"x"]);
    w(&mut c, &[b"HSET", b"runs:a:data", b"r", b"{}"]);
    w(
        &mut c,
        &[
            b"ZADD",
            b"runs:b:index",
            b"inf",
            b"r",
            b"-inf",
            b"s",
            b"1.5",
            b"t",
        ],
    );
    w(&mut c, &[b"RPUSH", b"runs:c:data", b"x"]);
    w(&mut c, &[b"ZADD", b"runs:d:index", b"1", b"r"]);
    w(&mut c, &[b"HSET", b"runs:d:data", b"other", &big[..]]);
    // Collections of the wrong type or with extreme entries.
    w(&mut c, &[b"RPUSH", b"s:1", b"x"]);
    w(&mut c, &[b"XADD", b"l:1", b"1-1", b"f", b"v"]);
    w(
        &mut c,
        &[
            b"XADD",
            b"s:2",
            b"18446744073709551615-18446744073709551615",
            b"f",
            b"v",
        ],
    );
    w(&mut c, &[b"XADD", b"s:3", b"0-1", b"f", b"v"]);
    w(
        &mut c,
        &[
            b"ZADD", b"z:1", b"-inf", b"a", b"inf", b"b", b"1e308", b"c", b"-1e308", b"d",
        ],
    );
    w(&mut c, &[b"SET", &big[..], b"a 1 MB name"]);
    w(&mut c, &[b"SET", b"k", b"v", b"PX", b"9999999999999"]);

    let first = call(&mut c, &["RETENTION.SWEEP"]);
    assert!(map_int(&first, "jobs_removed") > 0, "{first:?}");
    assert!(map_int(&first, "entries_trimmed") > 0, "{first:?}");
    assert!(map_int(&first, "runs_expired") > 0, "{first:?}");
    let second = call(&mut c, &["RETENTION.SWEEP"]);
    assert_eq!(map_int(&second, "errors"), 0, "{second:?}");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(
            &[
                "bull:q:meta",
                "bull:q:id",
                "bull:q:de:x",
                "bq:q:id",
                "bull:g:meta",
            ][..],
        )
        .query(&mut c)
        .expect("EXISTS");
    assert_eq!(exists, 5, "queue structure was deleted");
    assert_same_data(&master, &replica, &[0], "hostile keyspace");
    for server in [&master, &replica] {
        let log = server.log();
        assert!(
            !log.contains("internal error"),
            "a panic was logged:\n{log}"
        );
        assert!(!log.contains("panicked"), "a panic was logged:\n{log}");
    }
}

/// Sends one command on a raw socket and closes it without reading the reply.
fn send_and_hang_up(port: u16, words: &[&str]) {
    use std::io::Write;
    let mut resp = format!("*{}\r\n", words.len());
    for w in words {
        resp.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket.write_all(resp.as_bytes()).expect("send");
    socket.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(20));
}

#[test]
fn callers_that_hang_up_or_are_killed_mid_work_do_not_hurt_the_server() {
    let (mut server, mut c) = server_with_200k_keys();
    fill(&mut c, "list", "l", 500_000);
    fill(&mut c, "zset", "z", 300_000);
    call(&mut c, &["HSET", "bull:q:meta", "version", "bullmq:5.0.0"]);
    let _: i64 = redis::cmd("EVAL")
        .arg(
            "for i = 1, 30000 do \
               redis.call('HSET', 'bull:q:' .. i, 'finishedOn', i) \
               redis.call('ZADD', 'bull:q:completed', i, i) \
             end return 1",
        )
        .arg(0)
        .query(&mut c)
        .expect("jobs");
    // Hung up at once: every kind of sliced work, several at a time.
    send_and_hang_up(server.port, &["RETENTION.SWEEP", "BUDGET", "50"]);
    send_and_hang_up(server.port, &["RETENTION.TRIM", "l", "MAXLEN", "10"]);
    send_and_hang_up(server.port, &["RETENTION.TRIM", "z", "MAXLEN", "10"]);
    send_and_hang_up(server.port, &CLEAN_QUEUE_Q);
    // Killed while blocked, from another client.
    let mut victim = server.conn();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut victim)
        .expect("id");
    fill(&mut c, "list", "l2", 500_000);
    let blocked = std::thread::spawn(move || {
        redis::cmd("RETENTION.TRIM")
            .arg(&["l2", "MAXLEN", "0"][..])
            .query::<Value>(&mut victim)
    });
    std::thread::sleep(Duration::from_millis(5));
    let _ = try_call(&mut c, &["CLIENT", "UNBLOCK", &id.to_string(), "ERROR"]);
    let _ = try_call(&mut c, &["CLIENT", "KILL", "ID", &id.to_string()]);
    let _ = blocked.join().expect("victim thread");
    // The work of the callers that went away stops before its next slice (each caller's
    // work is counted once, unless it finished first); the server answers meanwhile.
    let idle = wait_until(Duration::from_secs(60), || {
        let status = call(&mut c, &["RETENTION.STATUS"]);
        map_int(&status, "running") == 0
    });
    assert!(idle, "a pass is still running after 60 s");
    let stopped = stat(&mut c, "stopped_client_gone");
    assert!(
        (1..=5).contains(&stopped),
        "{stopped} commands stopped for callers that went away"
    );
    // And nothing is left half-usable: the same work, asked for again, finishes.
    for key in ["l", "z"] {
        let _: i64 = redis::cmd("RETENTION.TRIM")
            .arg(&[key, "MAXLEN", "10"][..])
            .query(&mut c)
            .expect("TRIM");
    }
    let l: i64 = redis::cmd("LLEN").arg("l").query(&mut c).expect("LLEN");
    let z: i64 = redis::cmd("ZCARD").arg("z").query(&mut c).expect("ZCARD");
    assert_eq!((l, z), (10, 10));
    call(&mut c, &CLEAN_QUEUE_Q);
    let report = call(&mut c, &["RETENTION.SWEEP"]);
    assert_eq!(map_int(&report, "errors"), 0);
    let left: i64 = redis::cmd("ZCARD")
        .arg("bull:q:completed")
        .query(&mut c)
        .expect("ZCARD");
    assert_eq!(left, 0, "the clean asked for again did not finish");
    assert!(server.alive());
    let log = server.log();
    assert!(
        !log.contains("internal error"),
        "a panic was logged:\n{log}"
    );
}

#[test]
fn concurrent_callers_on_the_same_keys_share_the_work_exactly() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    config_set(&mut c, "retention.sweep-budget-us", "50");
    fill(&mut c, "stream", "s", 300_000);
    call(&mut c, &["HSET", "bull:q:meta", "version", "bullmq:5.0.0"]);
    let _: i64 = redis::cmd("EVAL")
        .arg(
            "for i = 1, 20000 do \
               redis.call('HSET', 'bull:q:' .. i, 'finishedOn', i) \
               redis.call('ZADD', 'bull:q:completed', i, i) \
             end return 1",
        )
        .arg(0)
        .query(&mut c)
        .expect("jobs");
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let mut conn = server.conn();
            std::thread::spawn(move || {
                let words: &[&str] = if i % 2 == 0 {
                    &["RETENTION.TRIM", "s", "MAXLEN", "100"]
                } else {
                    &CLEAN_QUEUE_Q
                };
                (i, try_call(&mut conn, words))
            })
        })
        .collect();
    let (mut trimmed, mut removed) = (0, 0);
    for caller in callers {
        let (i, reply) = caller.join().expect("caller");
        let reply = reply.expect("reply");
        if i % 2 == 0 {
            trimmed += redis::from_redis_value::<i64>(&reply).expect("a count");
        } else {
            removed += jobs_removed(&reply);
        }
    }
    // Each entry and each job is removed by exactly one of the callers.
    assert_eq!(trimmed, 300_000 - 100);
    assert_eq!(removed, 20_000);
    let len: i64 = redis::cmd("XLEN").arg("s").query(&mut c).expect("XLEN");
    assert_eq!(len, 100);
    let left: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(left, 3, "s, bull:q:meta and bull:q:events remain");
}

// ---------------------------------------------------------------------------------------
// Policy files: huge, many rules, binary, not files at all. The old policy stays on error.

fn policy_in_force(c: &mut Connection) -> (String, i64) {
    let p: Value = redis::cmd("RETENTION.POLICY").query(c).expect("POLICY");
    (
        map_str(&p, "source").unwrap_or_default(),
        map_int(&p, "rule_count"),
    )
}

fn set_policy_file(c: &mut Connection, path: &[u8]) -> redis::RedisResult<()> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("retention.policy-file")
        .arg(path)
        .query(c)
}

/// A policy of `n` ttl rules named `<tag><i>`.
fn many_rules(tag: &str, n: usize) -> String {
    let rules: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"{tag}{i}","match":"{tag}:{i}:*","ttl":"1h"}}"#))
        .collect();
    format!(r#"{{"rules":[{}]}}"#, rules.join(","))
}

#[test]
fn huge_and_hostile_policy_files_load_or_fail_clearly_keeping_the_old_policy() {
    let mut server = Server::start_paused(Some(CORPUS_POLICY));
    let mut c = server.conn();
    let dir = server.dir.clone();
    let original = dir.join("policy.json");
    let (source, rules) = policy_in_force(&mut c);
    assert_eq!((source.as_str(), rules), (original.to_str().unwrap(), 1));
    let baseline = used_memory_alone(&mut c);

    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write policy");
        path
    };
    let refused = |c: &mut Connection, path: &[u8], want: &str| {
        let err = set_policy_file(c, path).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(want),
            "{}: {text}",
            String::from_utf8_lossy(path)
        );
        // The path is echoed whole (a known issue for megabyte paths, not checked here).
        assert!(
            text.len() < MAX_ERROR_BYTES + path.len(),
            "{} bytes of error",
            text.len()
        );
        assert_eq!(
            policy_in_force(c),
            (original.to_str().unwrap().to_string(), 1),
            "the old policy must stay"
        );
    };

    // Not files, or not readable as text.
    refused(
        &mut c,
        dir.to_str().unwrap().as_bytes(),
        "cannot read policy file",
    );
    refused(
        &mut c,
        b"/nonexistent/policy.json",
        "cannot read policy file",
    );
    refused(&mut c, b"policy\x00.json", "cannot read policy file");
    refused(&mut c, b"\xff\xfe.json", "must be a UTF-8 path");
    refused(&mut c, &vec![b'p'; 1 << 20], "cannot read policy file");
    let binary: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let path = write("binary.json", &binary);
    refused(
        &mut c,
        path.to_str().unwrap().as_bytes(),
        "did not contain valid UTF-8",
    );

    // Every policy of the pure corpus gives the same verdict in the server. RELOAD shows the
    // whole message (CONFIG SET cuts a module's error at 255 bytes); CONFIG SET refuses the
    // same files and keeps the policy.
    let live = dir.join("live.json");
    std::fs::write(&live, CORPUS_POLICY).expect("live.json");
    let live_bytes = live.to_str().unwrap().as_bytes().to_vec();
    for entry in std::fs::read_dir(corpus_dir().join("policies")).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let expect = std::fs::read_to_string(path.with_extension("expect")).expect("expect");
        let expect = expect.trim_end();
        set_policy_file(&mut c, &live_bytes).expect("live.json");
        std::fs::copy(&path, &live).expect("copy corpus policy");
        let reload = redis::cmd("RETENTION.RELOAD").query::<()>(&mut c);
        match expect.split_once(' ').unwrap_or((expect, "")) {
            ("ok", _) => {
                reload.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                set_policy_file(&mut c, path.to_str().unwrap().as_bytes()).expect("loads");
            }
            (_, want) => {
                let err = reload.expect_err("refused").to_string();
                assert!(err.contains(want), "{}: {err}", path.display());
                assert!(err.len() < MAX_ERROR_BYTES, "{}: {err}", path.display());
                assert_eq!(policy_in_force(&mut c).0, live.to_str().unwrap());
                std::fs::write(&live, CORPUS_POLICY).expect("live.json");
                set_policy_file(&mut c, original.to_str().unwrap().as_bytes()).expect("back");
                refused(&mut c, path.to_str().unwrap().as_bytes(), "POLICY");
            }
        }
    }
    set_policy_file(&mut c, original.to_str().unwrap().as_bytes()).expect("back");

    // 100k rules load; the same with a duplicate at the end is refused naming both rules.
    let path = write("100k.json", many_rules("r", 100_000).as_bytes());
    set_policy_file(&mut c, path.to_str().unwrap().as_bytes()).expect("100k rules");
    assert_eq!(policy_in_force(&mut c).1, 100_000);
    let policy: Value = redis::cmd("RETENTION.POLICY")
        .query(&mut c)
        .expect("POLICY");
    assert!(map_str(&policy, "policy").unwrap_or_default().len() > 3_000_000);
    let mut text = many_rules("r", 100_000);
    text.truncate(text.len() - 2);
    text.push_str(r#",{"name":"r0","match":"x","keep":true}]}"#);
    let dup = write("100k-dup.json", text.as_bytes());
    let err = set_policy_file(&mut c, dup.to_str().unwrap().as_bytes()).expect_err("dup");
    assert!(
        err.to_string()
            .contains("rules[100000] (\"r0\"): name: duplicate rule name (also rules[0])"),
        "{err}"
    );
    assert_eq!(policy_in_force(&mut c).1, 100_000, "the 100k rules stay");
    set_policy_file(&mut c, original.to_str().unwrap().as_bytes()).expect("back");
    for p in [&path, &dup] {
        std::fs::remove_file(p).expect("rm");
    }

    // 100 MB: a valid policy with a 100 MB comment loads (or, should the module cap the
    // size of policy files, is refused saying so); 100 MB of whitespace and then garbage,
    // and 100 MB of '[', are refused with a position.
    let mb100 = 100 << 20;
    let mut big = String::with_capacity(mb100 + 100);
    big.push_str(r#"{"rules":[{"name":"big","match":"k:*","ttl":"1h","comment":""#);
    big.extend(std::iter::repeat_n('c', mb100));
    big.push_str(r#""}]}"#);
    let path = write("100mb.json", big.as_bytes());
    drop(big);
    match set_policy_file(&mut c, path.to_str().unwrap().as_bytes()) {
        Ok(()) => assert_eq!(policy_in_force(&mut c), (path.display().to_string(), 1)),
        Err(e) => {
            assert!(e.to_string().contains("POLICY"), "{e}");
            assert_eq!(policy_in_force(&mut c).0, original.display().to_string());
        }
    }
    std::fs::remove_file(&path).expect("rm");
    set_policy_file(&mut c, original.to_str().unwrap().as_bytes()).expect("back");
    let mut spaces = vec![b' '; mb100];
    spaces.extend_from_slice(b"}");
    let path = write("100mb-spaces.json", &spaces);
    drop(spaces);
    refused(
        &mut c,
        path.to_str().unwrap().as_bytes(),
        "invalid JSON: expected value",
    );
    std::fs::remove_file(&path).expect("rm");
    let path = write("100mb-open.json", &vec![b'['; mb100]);
    refused(
        &mut c,
        path.to_str().unwrap().as_bytes(),
        "recursion limit exceeded",
    );
    std::fs::remove_file(&path).expect("rm");

    // RELOAD of a file that went bad or away keeps the policy too.
    let path = write("reload.json", CORPUS_POLICY.as_bytes());
    set_policy_file(&mut c, path.to_str().unwrap().as_bytes()).expect("reload.json");
    let in_force = policy_in_force(&mut c);
    std::fs::write(&path, vec![b'['; 1 << 20]).expect("damage");
    let err = redis::cmd("RETENTION.RELOAD")
        .query::<()>(&mut c)
        .expect_err("bad");
    assert!(err.to_string().contains("recursion limit"), "{err}");
    assert_eq!(policy_in_force(&mut c), in_force);
    std::fs::remove_file(&path).expect("rm");
    let err = redis::cmd("RETENTION.RELOAD")
        .query::<()>(&mut c)
        .expect_err("gone");
    assert!(err.to_string().contains("cannot read policy file"), "{err}");
    assert_eq!(policy_in_force(&mut c), in_force);

    // Back on a small policy, the module holds no more than before (per-rule counters of the
    // rules loaded above stay, a few hundred bytes each; nothing of the 100 MB files).
    set_policy_file(&mut c, original.to_str().unwrap().as_bytes()).expect("back");
    let after = used_memory_alone(&mut c);
    assert!(
        after - baseline < 64 << 20,
        "the module holds {} MB more after the big policies",
        (after - baseline) >> 20
    );
    assert!(server.alive());
    assert!(!server.log().contains("internal error"));
}

// ---------------------------------------------------------------------------------------
// Bugs found by this suite outside the pure parsers: each test fails until its fix lands
// (then drop the `ignore`).

/// `RETENTION.SWEEP` in a thread; returns the reply, or None when it did not come within
/// `limit` (the server keeps working on it; the guard kills it at the end of the test).
fn sweep_within(server: &Server, limit: Duration) -> Option<redis::RedisResult<Value>> {
    let mut c = server.conn();
    c.set_read_timeout(Some(limit)).expect("timeout");
    match redis::cmd("RETENTION.SWEEP")
        .arg("DRYRUN")
        .query::<Value>(&mut c)
    {
        Err(e) if e.is_timeout() => None,
        other => Some(other),
    }
}

/// Regression: every slice used to zero and sum one counter per rule (with 100k rules that
/// alone outlasted the budget and a pass never advanced), and each key tried every rule in
/// turn. Per-rule counters now exist only for rules that did something, and a key's rule is
/// found through the rules' literal prefixes.
#[test]
fn a_sweep_under_100k_rules_makes_progress() {
    let dir = scratch_dir("rules100k");
    let path = write_policy(&dir, &many_rules("r", 100_000));
    let server = Server::start_in(dir, ServerOpts::default().paused().policy(&path))
        .expect("server with 100k rules");
    let mut c = server.conn();
    call(&mut c, &["SET", "r:99999:x", "v"]);
    let reply = sweep_within(&server, Duration::from_secs(20));
    let status = call(&mut c, &["RETENTION.STATUS"]);
    let report = reply.unwrap_or_else(|| panic!("no reply in 20 s; STATUS: {status:?}"));
    assert_eq!(map_int(&report.expect("sweep"), "ttl_set"), 1);
    // New-key tracking finds the last rule as well (the DRYRUN above set nothing).
    assert_eq!(call(&mut c, &["TTL", "r:99999:x"]), Value::Int(-1));
    config_set(&mut c, "retention.enabled", "yes");
    call(&mut c, &["SET", "r:77777:y", "v"]);
    let tracked = wait_until(
        Duration::from_secs(10),
        || matches!(call(&mut c, &["TTL", "r:77777:y"]), Value::Int(t) if t > 3000),
    );
    assert!(tracked, "the new key got no TTL from rule r77777");
}

#[test]
fn a_policy_path_that_is_a_fifo_does_not_block_the_server() {
    use std::os::unix::fs::OpenOptionsExt;
    let server = Server::start_paused(Some(CORPUS_POLICY));
    let fifo = server.dir.join("policy.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    // Connected before: a client connecting to a blocked server would wait for its
    // handshake forever.
    let mut c = server.conn();
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut setter = server.conn();
    let fifo_bytes = fifo.to_str().unwrap().as_bytes().to_vec();
    let set = std::thread::spawn(move || set_policy_file(&mut setter, &fifo_bytes));
    std::thread::sleep(Duration::from_millis(300));
    let pong = redis::cmd("PING").query::<String>(&mut c);
    // Whatever happened, let a server waiting for a writer go on: open the write end
    // without blocking (fails with ENXIO when nobody reads) and close it: EOF.
    for _ in 0..20 {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        if opened.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let set = set.join().expect("setter thread");
    assert_eq!(
        pong.ok().as_deref(),
        Some("PONG"),
        "the server stopped answering"
    );
    let err = set.expect_err("a FIFO is not a policy file");
    assert!(err.to_string().contains("POLICY"), "{err}");
}

#[test]
fn an_endless_policy_file_is_refused_and_the_server_lives() {
    let mut server = Server::start_paused(Some(CORPUS_POLICY));
    // Guard the machine while the bug is there: cap the server's address space at 4 GB, so
    // the endless read kills only the server, quickly.
    let cap = libc::rlimit {
        rlim_cur: 4 << 30,
        rlim_max: 4 << 30,
    };
    // SAFETY: a valid rlimit for a process this test started.
    let rc = unsafe {
        libc::prlimit(
            server.pid() as libc::pid_t,
            libc::RLIMIT_AS,
            &cap,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit");
    let mut c = server.conn();
    let result = set_policy_file(&mut c, b"/dev/zero");
    assert!(server.alive(), "the server died reading /dev/zero");
    let err = result.expect_err("/dev/zero is not a policy");
    assert!(err.to_string().contains("POLICY"), "{err}");
    assert_eq!(policy_in_force(&mut c).1, 1);
}

#[test]
fn reloading_policies_with_new_rule_names_keeps_module_memory_bounded() {
    let server = Server::start_paused(Some(CORPUS_POLICY));
    let mut c = server.conn();
    let original = server.dir.join("policy.json");
    let mut after_round = Vec::new();
    for round in 0..6 {
        let path = server.dir.join(format!("round{round}.json"));
        std::fs::write(&path, many_rules(&format!("g{round}_"), 20_000)).expect("policy");
        set_policy_file(&mut c, path.to_str().unwrap().as_bytes()).expect("loads");
        set_policy_file(&mut c, original.to_str().unwrap().as_bytes()).expect("back");
        after_round.push(used_memory_alone(&mut c));
    }
    let grown = after_round[5] - after_round[0];
    assert!(
        grown < 1 << 20,
        "5 reloads of 20k new rule names left {} MB behind: {after_round:?}",
        grown >> 20
    );
}

#[test]
fn a_finished_set_member_naming_queue_structure_never_deletes_it() {
    // The id counter, `meta`, the state lists and dedup keys are never deleted.
    // A member `meta` (or `de:x`, `metrics:completed`, ...) in `completed` is a corrupt entry
    // (BullMQ itself would have written that job over the queue's own key): CLEAN deletes
    // `bull:q:meta` as if it were the job's hash. Such members should be left (or only the
    // member removed), as the orphan check already does with `is_structure_id`.
    let server = Server::start_paused(None);
    let mut c = server.conn();
    call(&mut c, &["HSET", "bull:q:meta", "version", "bullmq:5.0.0"]);
    call(&mut c, &["SET", "bull:q:id", "1"]);
    call(&mut c, &["SET", "bull:q:de:x", "1"]);
    call(&mut c, &["HSET", "bull:q:metrics:completed", "count", "1"]);
    call(
        &mut c,
        &["HSET", "bull:q:1", "name", "j", "finishedOn", "1"],
    );
    call(
        &mut c,
        &[
            "ZADD",
            "bull:q:completed",
            "1",
            "1",
            "2",
            "meta",
            "3",
            "de:x",
            "4",
            "metrics:completed",
        ],
    );
    call(&mut c, &CLEAN_QUEUE_Q);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(
            &[
                "bull:q:meta",
                "bull:q:id",
                "bull:q:de:x",
                "bull:q:metrics:completed",
            ][..],
        )
        .query(&mut c)
        .expect("EXISTS");
    let job: i64 = redis::cmd("EXISTS")
        .arg("bull:q:1")
        .query(&mut c)
        .expect("EXISTS");
    assert_eq!(job, 0, "the real job goes");
    assert_eq!(exists, 4, "a structure key was deleted");
}

#[test]
fn every_accepted_pressure_ratio_survives_a_restart() {
    // The ratio is kept in thousandths: 0.0004 is accepted and stored as 0, CONFIG GET (and
    // so CONFIG REWRITE) then says `0`, which the module refuses at load: after a rewrite
    // and restart the server aborts ("Can't load module ... server aborting").
    let server = Server::start_paused(None);
    let mut c = server.conn();
    for ratio in ["0.0004", "1e-300", "0.8", "1"] {
        let set = try_call(
            &mut c,
            &["CONFIG", "SET", "retention.pressure-ratio", ratio],
        );
        if set.is_err() {
            continue; // refused: fine, nothing to carry over
        }
        let shown: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("retention.pressure-ratio")
            .query(&mut c)
            .expect("CONFIG GET");
        let restarted = Server::start(
            ServerOpts::default()
                .paused()
                .module_arg("pressure-ratio", &shown[1]),
        );
        assert!(
            restarted.is_ok(),
            "CONFIG SET {ratio} was accepted and shows as {}, which a restart refuses",
            shown[1]
        );
    }
}

/// Regression: scores another writer left (1.5, +inf) were replied floored (1.5 -> 1,
/// +inf -> i64::MAX): an ASC walk from (1, x) returned x again forever, i64::MAX was refused
/// as a position, and a DESC walk from +inf skipped the runs scored +inf. Such scores are
/// now replied exactly ("1.5", "inf") and read back exactly; an empty id starts at a score.
#[test]
fn keyset_pages_over_foreign_scores_visit_every_run_once() {
    let server = Server::start_paused(None);
    let mut c = server.conn();
    call(
        &mut c,
        &[
            "ZADD",
            "f:{a}:index",
            "1.5",
            "x",
            "1.5",
            "w",
            "2",
            "y",
            "inf",
            "z",
            "inf",
            "z2",
            "-inf",
            "a",
        ],
    );
    call(
        &mut c,
        &[
            "HSET",
            "f:{a}:data",
            "a",
            "{}",
            "w",
            "{}",
            "x",
            "{}",
            "y",
            "{}",
            "z",
            "{}",
            "z2",
            "{}",
        ],
    );
    for order in ["ASC", "DESC"] {
        let mut position = (
            if order == "ASC" { "-inf" } else { "+inf" }.to_string(),
            String::new(),
        );
        let mut seen = Vec::new();
        for _ in 0..10 {
            let reply = try_call(
                &mut c,
                &[
                    "ACTIVERUNS.AFTER",
                    "f:{a}",
                    &position.0,
                    &position.1,
                    "1",
                    order,
                ],
            );
            let Ok(Value::Array(parts)) = reply else {
                panic!("{order} after {position:?}: {reply:?}");
            };
            let Value::Array(rows) = &parts[1] else {
                panic!("{parts:?}")
            };
            if rows.is_empty() {
                break;
            }
            let id: String = redis::from_redis_value(&rows[0]).expect("id");
            let score: String = redis::from_redis_value(&rows[2]).expect("score");
            seen.push(id.clone());
            position = (score, id);
        }
        let mut expected = vec!["a", "w", "x", "y", "z", "z2"];
        if order == "DESC" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order} walk");
    }
}

#[test]
fn names_that_sanitize_alike_keep_info_retention() {
    // INFO field names allow [A-Za-z0-9_]: `celery-results` and `celery_results` both
    // become `rule_celery_results`, the crate's INFO builder refuses the duplicate field,
    // and the whole `INFO retention` output (every counter) disappears. Queue counters
    // (`emails-high`, `emails_high`) do the same once both queues were cleaned.
    let policy = r#"{"rules":[
        {"name":"celery-results","match":"a:*","ttl":"1h"},
        {"name":"celery_results","match":"b:*","ttl":"1h"}]}"#;
    let server = Server::start_paused(Some(policy));
    let mut c = server.conn();
    let text = info(&mut c, "retention");
    assert!(
        text.contains("keys_scanned"),
        "INFO retention is empty: {text:?}"
    );

    let server = Server::start_paused(None);
    let mut c = server.conn();
    for queue in ["emails-high", "emails_high"] {
        call(
            &mut c,
            &["HSET", &format!("bull:{queue}:1"), "finishedOn", "1"],
        );
        call(
            &mut c,
            &["ZADD", &format!("bull:{queue}:completed"), "1", "1"],
        );
        call(&mut c, &["SET", &format!("bull:{queue}:id"), "1"]);
        let removed = call(
            &mut c,
            &[
                "RETENTION.JOBS",
                "CLEAN",
                "bull",
                queue,
                "completed",
                "MAXAGE",
                "0",
                "FLAVOR",
                "bullmq",
            ],
        );
        assert_eq!(jobs_removed(&removed), 1, "{queue}");
    }
    let text = info(&mut c, "retention");
    assert!(
        text.contains("keys_scanned"),
        "INFO retention is empty: {text:?}"
    );
}
