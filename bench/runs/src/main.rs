//! Listing the newest page of "active runs" four ways, side by side on one server:
//!
//! * `ACTIVERUNS.PAGE base 1 50` — one round trip, the module does index + documents;
//! * `HMGET data <50 ids>` — the floor: the documents alone, ids known in advance;
//! * `ZREVRANGE index 0 49` then `HMGET data <ids>` — today's client, two round trips;
//! * `HGETALL legacy` + parse every JSON + sort by start time + take 50 — the old way.
//!
//! Each workload runs closed-loop on `clients` connections for a fixed time; the table
//! shows requests/s, p50/p99 latency and how PAGE compares (SPEC 6 targets: ≥ 0.8× the
//! HMGET floor, ≥ 1.5× the two-round-trip client, ≥ 20× HGETALL + sort). Every workload
//! does the same client work: parse the reply into owned id and document bytes.
//!
//! `--rtt 0.5ms` runs the workloads' connections through a latency proxy on loopback
//! (`proxy.rs`: each chunk held half the round trip in each direction), as a client in
//! the same cloud region sees the server; loading and checks go direct.

mod proxy;

use std::time::{Duration, Instant};

use redis::{Connection, Value};

struct Opts {
    url: String,
    runs: usize,
    small_runs: Vec<usize>,
    doc_bytes: usize,
    page_size: usize,
    seconds: f64,
    clients: Vec<usize>,
    /// Alternating rounds the fast workloads are measured in.
    rounds: usize,
    /// Leave the loaded data in place (for profiling with other tools).
    keep: bool,
    /// Added round trip (through the latency proxy), if any.
    rtt: Option<Duration>,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench-runs --port P [--runs 100000] [--small-runs 1000,10000] [--doc-bytes 1024] \
         [--page-size 50] [--seconds 3] [--clients 1,8] [--rounds 10] [--keep] [--rtt 0.5ms]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        url: String::new(),
        runs: 100_000,
        small_runs: vec![1_000, 10_000],
        doc_bytes: 1024,
        page_size: 50,
        seconds: 3.0,
        clients: vec![1, 8],
        rounds: 10,
        keep: false,
        rtt: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |v: &str| -> Vec<usize> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap_or_else(|_| usage()))
            .collect()
    };
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--keep" {
            o.keep = true;
            i += 1;
            continue;
        }
        let v = args.get(i + 1).cloned().unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--port" => o.url = format!("redis://127.0.0.1:{v}/"),
            "--runs" => o.runs = v.parse().unwrap_or_else(|_| usage()),
            "--small-runs" => o.small_runs = list(&v),
            "--doc-bytes" => o.doc_bytes = v.parse().unwrap_or_else(|_| usage()),
            "--page-size" => o.page_size = v.parse().unwrap_or_else(|_| usage()),
            "--seconds" => o.seconds = v.parse().unwrap_or_else(|_| usage()),
            "--clients" => o.clients = list(&v),
            "--rounds" => o.rounds = v.parse().unwrap_or_else(|_| usage()),
            "--rtt" => o.rtt = Some(proxy::parse_duration(&v).unwrap_or_else(|| usage())),
            _ => usage(),
        }
        i += 2;
    }
    if o.url.is_empty() {
        usage();
    }
    o
}

fn connect(url: &str) -> Connection {
    let c = redis::Client::open(url).expect("url");
    let con = c.get_connection().expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(300)))
        .expect("timeout");
    con
}

const T0_MS: i64 = 1_750_000_000_000;

/// A ~`bytes`-long run document with the start time the old way sorts by.
fn document(i: usize, bytes: usize) -> String {
    let head = format!(
        r#"{{"id":"run-{i:07}","startedAt":{},"status":"running","workflow":"wf-{}","pad":""#,
        T0_MS + i as i64 * 1000,
        i % 97
    );
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

struct RunSet {
    base: String,
    legacy: String,
    runs: usize,
}

impl RunSet {
    fn index(&self) -> String {
        format!("{}:index", self.base)
    }
    fn data(&self) -> String {
        format!("{}:data", self.base)
    }
}

/// The same runs twice: as a module run set (index + data) and as a legacy hash.
fn load(con: &mut Connection, runs: usize, doc_bytes: usize) -> RunSet {
    let set = RunSet {
        base: format!("bench:{{r{runs}}}"),
        legacy: format!("bench:{{r{runs}}}:legacy"),
        runs,
    };
    let _: () = redis::cmd("DEL")
        .arg(set.index())
        .arg(set.data())
        .arg(&set.legacy)
        .query(con)
        .expect("DEL");
    for chunk in (0..runs).collect::<Vec<_>>().chunks(1000) {
        let mut p = redis::pipe();
        for &i in chunk {
            let id = format!("run-{i:07}");
            let doc = document(i, doc_bytes);
            p.cmd("ACTIVERUNS.ADD")
                .arg(&set.base)
                .arg(&id)
                .arg(&doc)
                .arg("SCORE")
                .arg(T0_MS + i as i64 * 1000)
                .ignore();
            p.cmd("HSET").arg(&set.legacy).arg(&id).arg(&doc).ignore();
        }
        let _: () = p.query(con).expect("load");
    }
    set
}

/// One run of a page: (id, document).
type Run = (Vec<u8>, Vec<u8>);
type Page = Vec<Run>;
/// A workload: one request and the client's handling of its reply.
type Workload<'a> = &'a (dyn Fn(&mut Connection) + Sync);

fn bulk(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

fn module_page(con: &mut Connection, set: &RunSet, size: usize) -> Page {
    let v: Value = redis::cmd("ACTIVERUNS.PAGE")
        .arg(&set.base)
        .arg(1)
        .arg(size)
        .query(con)
        .expect("PAGE");
    let Value::Array(mut parts) = v else {
        panic!("PAGE reply")
    };
    let Some(Value::Array(items)) = parts.pop() else {
        panic!("PAGE rows")
    };
    let mut items = items.into_iter();
    let mut page = Vec::with_capacity(items.len() / 2);
    while let (Some(id), Some(doc)) = (items.next(), items.next()) {
        page.push((bulk(id), bulk(doc)));
    }
    page
}

fn hmget_docs(con: &mut Connection, set: &RunSet, ids: &[Vec<u8>]) -> Vec<Vec<u8>> {
    redis::cmd("HMGET")
        .arg(set.data())
        .arg(ids)
        .query(con)
        .expect("HMGET")
}

/// The floor: the ids are known (the client keeps its own copy of them).
fn hmget(con: &mut Connection, set: &RunSet, ids: &[Vec<u8>]) -> Page {
    let docs = hmget_docs(con, set, ids);
    ids.iter().cloned().zip(docs).collect()
}

fn two_round_trips(con: &mut Connection, set: &RunSet, size: usize) -> Page {
    let ids: Vec<Vec<u8>> = redis::cmd("ZREVRANGE")
        .arg(set.index())
        .arg(0)
        .arg(size - 1)
        .query(con)
        .expect("ZREVRANGE");
    let docs = hmget_docs(con, set, &ids);
    ids.into_iter().zip(docs).collect()
}

fn hgetall_sort(con: &mut Connection, set: &RunSet, size: usize) -> Page {
    let all: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(&set.legacy)
        .query(con)
        .expect("HGETALL");
    // What the application does with it: parse every document to learn its start time.
    let mut keyed: Vec<(i64, Run)> = all
        .into_iter()
        .map(|(id, doc)| {
            let v: serde_json::Value = serde_json::from_slice(&doc).expect("json");
            (v["startedAt"].as_i64().unwrap_or(0), (id, doc))
        })
        .collect();
    keyed.sort_by_key(|k| std::cmp::Reverse(k.0));
    keyed.into_iter().take(size).map(|(_, r)| r).collect()
}

#[derive(Default)]
struct Measured {
    requests: usize,
    seconds: f64,
    latencies_us: Vec<u32>,
    /// CPU time the server process used meanwhile (None when it is not on this host).
    server_cpu_s: Option<f64>,
}

impl Measured {
    fn add(&mut self, other: Measured) {
        self.requests += other.requests;
        self.seconds += other.seconds;
        self.latencies_us.extend(other.latencies_us);
        self.server_cpu_s = match (self.server_cpu_s, other.server_cpu_s) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) => Some(a + b),
        };
    }
    fn server_us_per_request(&self) -> Option<f64> {
        self.server_cpu_s.map(|s| s * 1e6 / self.requests as f64)
    }
    fn per_sec(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn percentile_us(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        self.latencies_us[((n as f64 * p) as usize).min(n - 1)] as f64
    }
}

/// The server's pid, when it runs on this host (for its CPU time).
fn server_pid(url: &str) -> Option<u32> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut connect(url))
        .ok()?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()?;
    server_cpu_s(Some(pid)).map(|_| pid)
}

/// utime + stime of a process from /proc (Linux; clock ticks of 10 ms).
fn server_cpu_s(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Closed loop on `clients` connections for `seconds` (each does at least one request).
fn measure(
    url: &str,
    clients: usize,
    seconds: f64,
    work: &(dyn Fn(&mut Connection) + Sync),
) -> Measured {
    let duration = Duration::from_secs_f64(seconds);
    let pid = server_pid(url);
    let cpu_before = server_cpu_s(pid);
    let start = Instant::now();
    let lats: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(move || {
                    let mut con = connect(url);
                    work(&mut con); // connection warm-up, not measured
                    let mut lat = Vec::new();
                    let stop = Instant::now() + duration;
                    while lat.is_empty() || Instant::now() < stop {
                        let t = Instant::now();
                        work(&mut con);
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let server_cpu_s = match (cpu_before, server_cpu_s(pid)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let latencies_us: Vec<u32> = lats.into_iter().flatten().collect();
    Measured {
        requests: latencies_us.len(),
        seconds,
        latencies_us,
        server_cpu_s,
    }
}

/// The machine is shared: load from elsewhere comes and goes. Running the workloads in
/// alternating short rounds exposes each to the same conditions.
fn measure_interleaved(
    url: &str,
    clients: usize,
    seconds: f64,
    rounds: usize,
    workloads: &[&(dyn Fn(&mut Connection) + Sync)],
) -> Vec<Measured> {
    let mut out: Vec<Measured> = workloads.iter().map(|_| Measured::default()).collect();
    for _ in 0..rounds {
        for (w, total) in workloads.iter().zip(out.iter_mut()) {
            total.add(measure(url, clients, seconds / rounds as f64, *w));
        }
    }
    out
}

struct Row {
    runs: usize,
    clients: usize,
    name: &'static str,
    m: Measured,
    p50_us: f64,
    p99_us: f64,
    /// PAGE's throughput over this one's, and the SPEC target for it.
    ratio: Option<(f64, f64)>,
}

fn print_table(rows: &[Row], page_size: usize, doc_bytes: usize, path: &str) {
    println!();
    println!(
        "ACTIVERUNS.PAGE base 1 {page_size} vs client-side listing; documents ~{doc_bytes} B; {path}"
    );
    println!(
        "{:>7} {:>7}  {:<34} {:>9} {:>9} {:>8} {:>8} {:>13}  {:>11}  target",
        "runs",
        "clients",
        "workload",
        "requests",
        "req/s",
        "p50 us",
        "p99 us",
        "srv CPU us/req",
        "PAGE / this",
    );
    for r in rows {
        let (ratio, target) = match r.ratio {
            Some((x, t)) => (
                format!("{x:.2}x"),
                format!("{} {t}x", if x >= t { "ok  >=" } else { "MISS >=" }),
            ),
            None => (String::new(), String::new()),
        };
        let cpu =
            r.m.server_us_per_request()
                .map_or("-".to_string(), |us| format!("{us:.0}"));
        println!(
            "{:>7} {:>7}  {:<34} {:>9} {:>9.0} {:>8.0} {:>8.0} {:>13}  {:>11}  {}",
            r.runs,
            r.clients,
            r.name,
            r.m.requests,
            r.m.per_sec(),
            r.p50_us,
            r.p99_us,
            cpu,
            ratio,
            target
        );
    }
}

fn main() {
    let o = parse_opts();
    let mut con = connect(&o.url);
    let size = o.page_size;
    // The workloads' connections: direct, or through the latency proxy.
    let (_proxy, work_url, path) = match o.rtt {
        None => (None, o.url.clone(), "loopback".to_string()),
        Some(rtt) => {
            let port: u16 = o
                .url
                .trim_end_matches('/')
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port");
            let proxy = proxy::LatencyProxy::start(port, rtt).expect("latency proxy");
            let check = proxy
                .calibrate(port, rtt)
                .expect("PING through the latency proxy")
                .describe();
            eprintln!("{check}");
            let url = format!("redis://127.0.0.1:{}/", proxy.port);
            (Some(proxy), url, check)
        }
    };
    let mut sizes = vec![o.runs];
    sizes.extend(o.small_runs.iter().copied().filter(|n| *n != o.runs));
    let mut rows = Vec::new();
    for (n, &runs) in sizes.iter().enumerate() {
        let full = n == 0;
        eprintln!("loading {runs} runs of ~{} B ...", o.doc_bytes);
        let set = load(&mut con, runs, o.doc_bytes);
        // All four ways must return the same page, or the comparison means nothing.
        let page = module_page(&mut con, &set, size);
        let ids: Vec<Vec<u8>> = page.iter().map(|r| r.0.clone()).collect();
        assert_eq!(page.len(), size.min(set.runs));
        assert_eq!(page, two_round_trips(&mut con, &set, size));
        assert_eq!(page, hgetall_sort(&mut con, &set, size));
        assert_eq!(page, hmget(&mut con, &set, &ids));
        let url = work_url.as_str();
        for &clients in &o.clients {
            eprintln!("measuring {runs} runs, {clients} clients ...");
            let page_w = |c: &mut Connection| {
                module_page(c, &set, size);
            };
            let hmget_w = |c: &mut Connection| {
                hmget(c, &set, &ids);
            };
            let two_w = |c: &mut Connection| {
                two_round_trips(c, &set, size);
            };
            let all_w = |c: &mut Connection| {
                hgetall_sort(c, &set, size);
            };
            let mut named: Vec<(&'static str, Option<f64>, Workload)> =
                vec![("ACTIVERUNS.PAGE base 1 50", None, &page_w)];
            if full {
                named.push(("HMGET data <50 ids> (floor)", Some(0.8), &hmget_w));
                named.push(("ZREVRANGE + HMGET (2 round trips)", Some(1.5), &two_w));
            }
            // HGETALL of a big set takes seconds per request: measured on its own, once.
            let fast: Vec<_> = named.iter().map(|n| n.2).collect();
            let mut results = measure_interleaved(url, clients, o.seconds, o.rounds, &fast);
            results.push(measure(url, clients, o.seconds, &all_w));
            named.push(("HGETALL + parse + sort + slice", Some(20.0), &all_w));
            let page_rate = results[0].per_sec();
            for ((name, target, _), mut m) in named.into_iter().zip(results) {
                let (p50_us, p99_us) = (m.percentile_us(0.5), m.percentile_us(0.99));
                let ratio = target.map(|t| (page_rate / m.per_sec(), t));
                m.latencies_us = Vec::new();
                rows.push(Row {
                    runs,
                    clients,
                    name,
                    m,
                    p50_us,
                    p99_us,
                    ratio,
                });
            }
        }
        if !o.keep {
            let _: () = redis::cmd("DEL")
                .arg(set.index())
                .arg(set.data())
                .arg(&set.legacy)
                .query(&mut con)
                .expect("DEL");
        }
    }
    print_table(&rows, size, o.doc_bytes, &path);
}
