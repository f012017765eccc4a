//! `decnet-bench soak-api`: the hostile HTTP loads of issue 15 against a
//! running `decnet api`, each for a bounded time, while a healthy client
//! polls `/api/v1/health`. Reports the API process's peak RSS and threads
//! during each load, its RSS once the load has stopped (what is retained),
//! how the login attempts were answered, and the healthy client's latency.
//!
//! HTTP is written by hand on blocking sockets, like the raw bus and NATS
//! clients of [`crate::proto`]: a load generator must not let a client
//! library's pooling, retries or its own thread pool decide what the server
//! sees. Each attacking connection binds its own loopback source address
//! (127.0.1.x), so the per-address throttle sees 200 addresses, as it would
//! from a botnet; only loopback is ever touched.

use hdrhistogram::Histogram;
use socket2::{Domain, Socket, Type};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOADS: &[&str] = &["baseline", "bad-logins", "spray", "idle-conns", "slow-headers"];

#[derive(Debug, clap::Args)]
pub struct SoakApiArgs {
    /// The API to soak: a loopback HOST:PORT (e.g. 127.0.0.1:8080).
    #[arg(long)]
    pub addr: SocketAddr,
    /// Pid of the `decnet api` process (for /proc/<pid>/status).
    #[arg(long)]
    pub pid: u32,
    /// Seconds per load (bounded: at most 60).
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// User the bad-logins load guesses passwords for.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Attacking connections for the login loads.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=250))]
    pub clients: u32,
    /// Connections held open by idle-conns and slow-headers.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub idle: u32,
    /// Loads to run, in order (baseline, bad-logins, spray, idle-conns, slow-headers).
    #[arg(long, value_delimiter = ',', default_value = "baseline,bad-logins,spray,idle-conns,slow-headers")]
    pub loads: Vec<String>,
}

pub fn run(args: &SoakApiArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.addr.ip().is_loopback(),
        "--addr must be a loopback address; the soak attacks what it targets"
    );
    anyhow::ensure!(args.secs.is_finite() && args.secs > 0.0 && args.secs <= 60.0, "--secs must be in (0, 60]");
    for load in &args.loads {
        anyhow::ensure!(LOADS.contains(&load.as_str()), "unknown load {load:?}; known: {}", LOADS.join(", "));
    }
    anyhow::ensure!(
        std::path::Path::new(&format!("/proc/{}/status", args.pid)).exists(),
        "no process {} (--pid must be the running decnet api)",
        args.pid
    );
    http(args.addr, "GET", "/api/v1/health", None, None)
        .map_err(|e| anyhow::anyhow!("the API at {} does not answer /api/v1/health: {e}", args.addr))?;
    let secs = Duration::from_secs_f64(args.secs);
    println!(
        "| load | API peak RSS (MiB) | RSS 1 s after (MiB) | peak threads | login answers | healthy p50 / p99 / max (ms) | healthy ok / failed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for load in &args.loads {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = ProcSampler::start(args.pid);
        let healthy = Healthy::start(args.addr);
        let answers = Arc::new(Answers::default());
        let workers = start_load(load, args, stop.clone(), answers.clone());
        std::thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let _ = w.join();
        }
        let (latency, ok, failed) = healthy.finish();
        let (peak_rss, peak_threads) = sampler.finish();
        std::thread::sleep(Duration::from_secs(1));
        let after = proc_status(args.pid, "VmRSS:").unwrap_or(0);
        let ms = |q: f64| latency.as_ref().map_or(f64::NAN, |h| h.value_at_quantile(q) as f64 / 1000.0);
        println!(
            "| {load} | {:.1} | {:.1} | {peak_threads} | {} | {:.2} / {:.2} / {:.2} | {ok} / {failed} |",
            peak_rss as f64 / 1024.0,
            after as f64 / 1024.0,
            answers.summary(),
            ms(0.5),
            ms(0.99),
            ms(1.0),
        );
    }
    println!("API VmHWM over the whole soak: {:.1} MiB", proc_status(args.pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0);
    Ok(())
}

/// A numeric `/proc/<pid>/status` field (kB for memory, a count for
/// Threads); both soaks read the process they load through it.
pub(crate) fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak VmRSS (KiB) and thread count of a process, sampled every 20 ms.
pub(crate) struct ProcSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl ProcSampler {
    pub(crate) fn start(pid: u32) -> ProcSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut rss, mut threads) = (0, 0);
            loop {
                rss = rss.max(proc_status(pid, "VmRSS:").unwrap_or(0));
                threads = threads.max(proc_status(pid, "Threads:").unwrap_or(0));
                if flag.load(Ordering::Relaxed) {
                    return (rss, threads);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ProcSampler { stop, thread }
    }

    pub(crate) fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// How the attacking login requests were answered.
#[derive(Default)]
struct Answers {
    by_status: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Requests that got no answer, by what went wrong (a 5 s timeout of
    /// this client while queued behind the hashing limit, a reset, ...).
    errors: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Answers {
    fn record(&self, answer: std::io::Result<u16>) {
        match answer {
            Ok(status) => *self.by_status.lock().unwrap().entry(status).or_default() += 1,
            Err(e) => *self.errors.lock().unwrap().entry(format!("{:?}", e.kind())).or_default() += 1,
        }
    }

    fn summary(&self) -> String {
        let by_status = self.by_status.lock().unwrap();
        let errors = self.errors.lock().unwrap();
        let parts: Vec<String> = by_status
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .chain(errors.iter().map(|(kind, n)| format!("{kind}×{n}")))
            .collect();
        if parts.is_empty() {
            return "-".into();
        }
        parts.join(", ")
    }
}

/// One request on a fresh connection from `source`, answered with its
/// status code. `Connection: close` and a 5 s timeout both ways.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    source: Option<Ipv4Addr>,
) -> std::io::Result<u16> {
    let mut stream = connect(addr, source)?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    read_status(&mut BufReader::new(stream))
}

fn connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())?;
    }
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads one response (status line, headers, Content-Length body) and
/// gives its status; the connection can then carry the next request.
fn read_status(reader: &mut impl BufRead) -> std::io::Result<u16> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a response"));
    }
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status line"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("closed inside the headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            }
        }
    }
    std::io::copy(&mut reader.take(length as u64), &mut std::io::sink())?;
    Ok(status)
}

/// Source address of attacking connection `i`: 127.0.1.1 and up.
fn source_of(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
}

fn start_load(
    load: &str,
    args: &SoakApiArgs,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
) -> Vec<std::thread::JoinHandle<()>> {
    let addr = args.addr;
    // Every loop is bounded by the stop flag and by a count.
    const MAX_REQUESTS_PER_CLIENT: u32 = 10_000;
    match load {
        "baseline" => Vec::new(),
        // Wrong passwords for one real user from many addresses: the
        // per-user throttle's case.
        "bad-logins" | "spray" => (0..args.clients)
            .map(|i| {
                let (stop, answers) = (stop.clone(), answers.clone());
                let user = if load == "spray" { format!("sprayed-{i}") } else { args.user.clone() };
                std::thread::spawn(move || {
                    for n in 0..MAX_REQUESTS_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let body = serde_json::json!({"username": user, "password": format!("wrong-guess-{n}")});
                        let answer =
                            http(addr, "POST", "/api/v1/auth/login", Some(&body.to_string()), Some(source_of(i)));
                        answers.record(answer);
                    }
                })
            })
            .collect(),
        // Connections that never send a byte (idle) or send a header a
        // byte at a time every 500 ms (slow-headers); each is reopened
        // when the server closes it.
        "idle-conns" | "slow-headers" => {
            let slow = load == "slow-headers";
            let per_thread = 25;
            (0..args.idle.div_ceil(per_thread))
                .map(|t| {
                    let stop = stop.clone();
                    let count = per_thread.min(args.idle - t * per_thread);
                    std::thread::spawn(move || hold_connections(addr, t, count, slow, &stop))
                })
                .collect()
        }
        _ => unreachable!("loads are checked in run"),
    }
}

fn hold_connections(addr: SocketAddr, thread: u32, count: u32, slow: bool, stop: &AtomicBool) {
    let header = b"GET /api/v1/health HTTP/1.1\r\nHost: soak\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut conns: Vec<(Option<TcpStream>, usize)> = (0..count).map(|_| (None, 0)).collect();
    let mut reopened = 0u32;
    while !stop.load(Ordering::Relaxed) {
        for (i, (conn, sent)) in conns.iter_mut().enumerate() {
            if conn.is_none() && reopened < 100_000 {
                reopened += 1;
                *conn = connect(addr, Some(source_of(thread * 25 + i as u32))).ok();
                *sent = 0;
            }
            if slow {
                if let Some(stream) = conn {
                    if stream.write_all(&header[*sent % header.len()..][..1]).is_err() {
                        *conn = None;
                    }
                    *sent += 1;
                }
            }
        }
        // A closed connection shows up as a failed write (slow) or is
        // found by a non-blocking peek (idle).
        if !slow {
            for (conn, _) in conns.iter_mut() {
                if let Some(stream) = conn {
                    let _ = stream.set_nonblocking(true);
                    let mut byte = [0u8; 1];
                    if matches!(stream.peek(&mut byte), Ok(0)) {
                        *conn = None;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(if slow { 500 } else { 100 }));
    }
}

/// The well-behaved client: `GET /api/v1/health` every 20 ms, each on a
/// fresh connection (what a monitoring probe does), timing each answer.
struct Healthy {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Option<Histogram<u64>>, u64, u64)>,
}

impl Healthy {
    fn start(addr: SocketAddr) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let (mut ok, mut failed) = (0, 0);
            while !flag.load(Ordering::Relaxed) && ok + failed < 100_000 {
                let started = Instant::now();
                match http(addr, "GET", "/api/v1/health", None, None) {
                    Ok(200) => {
                        ok += 1;
                        if let Some(h) = latency.as_mut() {
                            let _ = h.record(started.elapsed().as_micros() as u64);
                        }
                    }
                    _ => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (latency.filter(|h| !h.is_empty()), ok, failed)
        });
        Healthy { stop, thread }
    }

    fn finish(self) -> (Option<Histogram<u64>>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((None, 0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_read_to_its_end_and_the_next_one_follows() {
        let two = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 5\r\nRetry-After: 3\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let mut reader = BufReader::new(&two[..]);
        assert_eq!(read_status(&mut reader).unwrap(), 429);
        assert_eq!(read_status(&mut reader).unwrap(), 200);
        assert!(read_status(&mut reader).is_err(), "nothing left");
    }

    #[test]
    fn garbage_and_truncated_responses_are_errors() {
        assert!(read_status(&mut BufReader::new(&b"garbage\r\n\r\n"[..])).is_err());
        assert!(read_status(&mut BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Le"[..])).is_err());
    }

    #[test]
    fn attackers_get_distinct_loopback_sources() {
        let all: std::collections::HashSet<_> = (0..250).map(source_of).collect();
        assert_eq!(all.len(), 250);
        assert!(all.iter().all(|ip| ip.is_loopback()));
    }
}
