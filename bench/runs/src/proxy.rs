//! A latency proxy on loopback, for benchmarks over a network round trip (issue 20).
//!
//! What Toxiproxy's `latency` toxic does: every chunk of bytes read from one side at time t
//! is written to the other side at t + rtt/2, in order. Chunks are not serialized behind
//! each other: a pipelined burst arrives one half round trip later as a burst, as it would
//! over a real link (bandwidth is not limited). The kernel of the benchmark VM has no
//! `netem` qdisc, so `tc` cannot add the delay.
//!
//! The proxy's own thread wake-ups add ~0.1 ms to a round trip on the benchmark VM, so
//! `calibrate` shortens the hold until `PING` through the proxy measures the round trip
//! asked for (printed with the bench results, as the check of the proxy).
//!
//! Per connection: a reader and a writer thread per direction (std only; used by
//! `examples/bench.rs` through `#[path]` and by the `bench-runs` binary).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes read at once (Toxiproxy reads up to 32 KiB).
const CHUNK: usize = 64 * 1024;

/// A listening proxy; new connections are refused once it is dropped (open ones go on
/// until either side closes).
pub struct LatencyProxy {
    pub port: u16,
    /// How long each chunk is held, in ns (shared with the connections' writers).
    hold_ns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// What `calibrate` found.
pub struct Calibration {
    /// The round trip asked for.
    pub rtt: Duration,
    /// Each chunk's hold, per direction, after calibration.
    pub hold: Duration,
    /// PING round trips through the proxy: median and p99 (after calibration).
    pub ping_p50: Duration,
    pub ping_p99: Duration,
    /// PING round trips straight to the server (median).
    pub direct_p50: Duration,
}

impl Calibration {
    /// One line for the bench output.
    pub fn describe(&self) -> String {
        format!(
            "latency proxy: {} round trip asked; PING through it p50 {}, p99 {} (direct p50 {}; each chunk held {} per direction, the rest is the proxy's own thread wake-ups)",
            ms(self.rtt),
            ms(self.ping_p50),
            ms(self.ping_p99),
            ms(self.direct_p50),
            ms(self.hold)
        )
    }
}

impl LatencyProxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `127.0.0.1:upstream_port`, holding every chunk `rtt / 2` in each direction.
    pub fn start(upstream_port: u16, rtt: Duration) -> io::Result<LatencyProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream_port).into();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let hold_ns = Arc::new(AtomicU64::new((rtt / 2).as_nanos() as u64));
        let hold = hold_ns.clone();
        thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    match TcpStream::connect(upstream) {
                        Ok(server) => {
                            if let Err(e) = connect_pair(client, server, &hold) {
                                eprintln!("latency proxy: {e}");
                            }
                        }
                        Err(e) => eprintln!("latency proxy: cannot reach {upstream}: {e}"),
                    }
                }
            })?;
        Ok(LatencyProxy {
            port,
            hold_ns,
            stop,
        })
    }

    /// Holds each chunk `hold` per direction from now on (a calibrated value; used by
    /// `examples/bench.rs`, which calibrates once for all its proxies).
    #[allow(dead_code)]
    pub fn set_hold(&self, hold: Duration) {
        self.hold_ns
            .store(hold.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Round trips of PING through the proxy: (median, p99).
    pub fn ping_rtt(&self, samples: usize) -> io::Result<(Duration, Duration)> {
        ping_rtt(self.port, samples)
    }

    /// Shortens the hold until the median PING through the proxy is `rtt` (the server on
    /// `upstream_port` answers PING in ~10 µs; its own time counts as network time).
    pub fn calibrate(&self, upstream_port: u16, rtt: Duration) -> io::Result<Calibration> {
        let (direct_p50, _) = ping_rtt(upstream_port, 200)?;
        let target = rtt.as_nanos() as i64;
        let mut hold = target / 2;
        let (mut ping_p50, mut ping_p99) = (Duration::ZERO, Duration::ZERO);
        // The machine's own noise moves a median of 400 PINGs by ~20 µs: stop within 4%,
        // correcting by half the excess each round.
        for _ in 0..8 {
            self.hold_ns.store(hold.max(0) as u64, Ordering::Relaxed);
            (ping_p50, ping_p99) = self.ping_rtt(400)?;
            let excess = ping_p50.as_nanos() as i64 - target;
            if excess.abs() <= target / 25 {
                break;
            }
            hold -= excess / 2;
        }
        Ok(Calibration {
            rtt,
            hold: Duration::from_nanos(hold.max(0) as u64),
            ping_p50,
            ping_p99,
            direct_p50,
        })
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn connect_pair(client: TcpStream, server: TcpStream, hold: &Arc<AtomicU64>) -> io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    pipe(client.try_clone()?, server.try_clone()?, hold.clone())?;
    pipe(server, client, hold.clone())
}

/// One direction: a reader stamps each chunk with its due time, a writer writes it then.
fn pipe(mut from: TcpStream, mut to: TcpStream, hold: Arc<AtomicU64>) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<Option<(Instant, Vec<u8>)>>();
    thread::Builder::new()
        .name("proxy-read".into())
        .spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        break;
                    }
                    Ok(n) => {
                        let due =
                            Instant::now() + Duration::from_nanos(hold.load(Ordering::Relaxed));
                        if tx.send(Some((due, buf[..n].to_vec()))).is_err() {
                            let _ = from.shutdown(Shutdown::Read);
                            break;
                        }
                    }
                }
            }
        })?;
    thread::Builder::new()
        .name("proxy-write".into())
        .spawn(move || {
            precise_sleeps();
            for chunk in rx {
                let Some((due, bytes)) = chunk else { break };
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })?;
    Ok(())
}

/// Linux lets a sleeping thread wake up to 50 µs late by default ("timer slack"), a fifth of
/// a 0.5 ms round trip's half: ask for 1 ns.
fn precise_sleeps() {
    extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
    }
    const PR_SET_TIMERSLACK: c_int = 29;
    // SAFETY: prctl(PR_SET_TIMERSLACK, ns) only changes this thread's timer slack.
    let rc = unsafe { prctl(PR_SET_TIMERSLACK, 1 as std::os::raw::c_ulong) };
    debug_assert_eq!(rc, 0, "prctl(PR_SET_TIMERSLACK)");
}

/// Round trips of `PING` on one connection to `port`: (median, p99), after a warm-up.
pub fn ping_rtt(port: u16, samples: usize) -> io::Result<(Duration, Duration)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut times = Vec::with_capacity(samples);
    let mut reply = [0u8; 7];
    for i in 0..samples + 10 {
        let t = Instant::now();
        s.write_all(b"PING\r\n")?;
        s.read_exact(&mut reply)?;
        if &reply != b"+PONG\r\n" {
            return Err(io::Error::other(format!(
                "PING answered {}",
                reply.escape_ascii()
            )));
        }
        if i >= 10 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok((at(0.5), at(0.99)))
}

/// `0.5ms`, `500us`, `1ms`, `0.001s` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1e-3)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0 && v * scale < 60.0)
        .then(|| Duration::from_nanos((v * scale * 1e9).round() as u64))
}

/// A duration as "0.50 ms".
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0.5ms"), Some(Duration::from_micros(500)));
        assert_eq!(parse_duration("500us"), Some(Duration::from_micros(500)));
        assert_eq!(parse_duration("2"), Some(Duration::from_millis(2)));
        assert_eq!(parse_duration("0.001s"), Some(Duration::from_millis(1)));
        assert_eq!(parse_duration("-1ms"), None);
        assert_eq!(parse_duration("fast"), None);
    }

    /// Bytes arrive complete and in order, each message one round trip later; pipelined
    /// messages are not serialized behind each other's delay.
    #[test]
    fn forwards_in_order_pipelined() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        thread::spawn(move || {
            for s in echo.incoming() {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = io::copy(&mut r, &mut s);
                });
            }
        });
        let rtt = Duration::from_millis(40);
        let proxy = LatencyProxy::start(echo_port, rtt).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        c.set_nodelay(true).unwrap();
        // 30 messages 2 ms apart (separate chunks), then one large one.
        let mut w = c.try_clone().unwrap();
        let messages: Vec<Vec<u8>> = (0..30u8)
            .map(|i| vec![i; 100])
            .chain([(0..1_000_000u32).map(|i| (i % 251) as u8).collect()])
            .collect();
        let sent: Vec<u8> = messages.concat();
        let t = Instant::now();
        let writer = thread::spawn(move || {
            for m in messages {
                w.write_all(&m).unwrap();
                thread::sleep(Duration::from_millis(2));
            }
        });
        let mut back = vec![0u8; sent.len()];
        c.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        let took = t.elapsed();
        assert!(back == sent, "bytes changed on the way");
        assert!(took >= rtt, "arrived before one round trip: {took:?}");
        // Serialized, 31 messages would take 31 half round trips each way (1.2 s).
        assert!(
            took < rtt * 10,
            "pipelined messages were serialized: {took:?}"
        );
    }
}
