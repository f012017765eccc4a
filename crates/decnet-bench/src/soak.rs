//! `decnet-bench soak`: the hostile loads of issue 15, each for a bounded
//! time against a running daemon, while a healthy client publishes 1,000
//! events/s to itself and records their latency.
//!
//! For each load it prints the daemon's peak RSS during the load (VmRSS
//! sampled every 20 ms from /proc/<pid>/status), the healthy client's
//! p50/p99/max latency and how many of its events arrived; at the end the
//! daemon's VmHWM (peak since it started). The loads:
//!
//! - `big-patterns`: SUBs of 4 KB patterns in a reconnect loop (refused by
//!   the pattern limits), and connections filling the subscription index
//!   with 200-token patterns until the daemon-wide node limit closes them;
//! - `wildcards`: 8,192 patterns mixing `x` and `*` over 13 tokens, and a
//!   publisher of unique deep topics that all of them match;
//! - `slow-readers`: 20 subscribers that never read, a publisher of 1 MB events;
//! - `stalled-bodies`: 500 connections that send half of a 1 MiB PUB and stall;
//! - `hostile-frames`: connect, send garbage, repeat.
//!
//! Every loop is bounded by `--secs` per load, and connections by fixed counts.

use hdrhistogram::Histogram;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::{read_stamp, BodyTemplate};
use crate::proto::{Conn, Target};

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Bus socket of the daemon under test.
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Pid of the daemon, to read its memory from /proc.
    #[arg(long)]
    pub pid: u32,
    /// Seconds each load runs.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Loads to run (default: all), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = LOADS.map(String::from))]
    pub loads: Vec<String>,
}

const LOADS: [&str; 5] = ["big-patterns", "wildcards", "slow-readers", "stalled-bodies", "hostile-frames"];

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs.is_finite() && args.secs > 0.0, "--secs must be positive");
    for l in &args.loads {
        anyhow::ensure!(LOADS.contains(&l.as_str()), "unknown load {l:?} (known: {})", LOADS.join(", "));
    }
    let socket = decnet_bus::paths::resolve_socket_path(args.socket.as_deref());
    let target = Target::Bus(socket.clone());
    let secs = Duration::from_secs_f64(args.secs);
    println!(
        "soak: daemon pid {}, {} s per load; healthy client: 1,000 events/s, write+flush each",
        args.pid, args.secs
    );
    println!(
        "| load | daemon peak RSS (MiB) | healthy p50 (µs) | healthy p99 (µs) | healthy max (µs) | healthy delivered |"
    );
    println!("|---|---|---|---|---|---|");
    let mut worst_rss = (0u64, String::new());
    let mut worst_p99 = (0f64, String::new());
    let mut lost = Vec::new();
    let mut phases = vec!["baseline".to_string()];
    phases.extend(args.loads.iter().cloned());
    for load in phases {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = crate::soak_api::ProcSampler::start(args.pid);
        let healthy = Healthy::start(&target)?;
        let workers = start_load(&load, &socket, &target, stop.clone())?;
        std::thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
        let (hist, sent, got) = healthy.finish();
        for w in workers {
            let _ = w.join();
        }
        let (peak, _threads) = sampler.finish();
        let q = |p: f64| hist.as_ref().map_or(f64::NAN, |h| h.value_at_quantile(p) as f64 / 1000.0);
        let max = hist.as_ref().map_or(f64::NAN, |h| h.max() as f64 / 1000.0);
        println!(
            "| {load} | {:.1} | {:.0} | {:.0} | {:.0} | {got} of {sent} |",
            peak as f64 / 1024.0,
            q(0.5),
            q(0.99),
            max
        );
        if peak > worst_rss.0 {
            worst_rss = (peak, load.clone());
        }
        if q(0.99) > worst_p99.0 || q(0.99).is_nan() {
            worst_p99 = (q(0.99), load.clone());
        }
        if got < sent {
            lost.push(format!("{load}: {} of {sent}", sent - got));
        }
        // Let the daemon close what the load left behind before the next.
        std::thread::sleep(Duration::from_millis(500));
    }
    let hwm = crate::soak_api::proc_status(args.pid, "VmHWM:").unwrap_or(0);
    println!("daemon VmHWM (peak RSS since start): {:.1} MiB", hwm as f64 / 1024.0);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let rss_mib = worst_rss.0.max(hwm) as f64 / 1024.0;
    println!(
        "target daemon RSS < 256 MiB under every load: {} (highest {rss_mib:.1} MiB, VmHWM or `{}`)",
        verdict(rss_mib < 256.0),
        worst_rss.1
    );
    println!(
        "target healthy p99 < 5 ms under every load: {} (worst {:.0} µs under `{}`)",
        verdict(worst_p99.0 < 5000.0),
        worst_p99.0,
        worst_p99.1
    );
    println!("healthy client lost events: {}", if lost.is_empty() { "none".to_string() } else { lost.join(", ") });
    Ok(())
}

/// A well-behaved client: a paced publisher and a subscriber of its topic.
struct Healthy {
    stop: Arc<AtomicBool>,
    publisher: std::thread::JoinHandle<u64>,
    subscriber: std::thread::JoinHandle<(Histogram<u64>, u64)>,
    received: Arc<AtomicU64>,
}

impl Healthy {
    fn start(target: &Target) -> anyhow::Result<Healthy> {
        let origin = Instant::now();
        let mut sub = target.connect("soak-healthy-sub")?;
        sub.subscribe("soak.healthy")?;
        sub.flush()?;
        let mut reader = sub.take_reader();
        reader.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), received.clone());
        let subscriber = std::thread::spawn(move || {
            let _keep = sub;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
            let mut got = 0u64;
            let mut quiet_since: Option<Instant> = None;
            loop {
                match reader.next() {
                    Ok(Some(ev)) => {
                        let now = origin.elapsed().as_nanos() as u64;
                        if ev.topic != b"soak.healthy" {
                            continue;
                        }
                        if let Some(sent) = read_stamp(ev.body) {
                            let _ = hist.record(now.saturating_sub(sent).max(1));
                            got += 1;
                            count.store(got, Ordering::Relaxed);
                        }
                        quiet_since = None;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // After the stop, wait up to 2 s for stragglers.
                        if flag.load(Ordering::Relaxed) {
                            let since = *quiet_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(2) {
                                break;
                            }
                        }
                    }
                }
            }
            (hist, got)
        });
        // Let the subscription land before the first publish.
        std::thread::sleep(Duration::from_millis(200));
        let mut publisher = target.connect("soak-healthy-pub")?;
        let flag = stop.clone();
        let publisher = std::thread::spawn(move || {
            let mut template = BodyTemplate::new(128);
            let start = Instant::now();
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let due = start + Duration::from_millis(sent);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                template.stamp(origin.elapsed().as_nanos() as u64);
                if publisher.publish("soak.healthy", &template.bytes).and_then(|_| publisher.flush()).is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        });
        Ok(Healthy { stop, publisher, subscriber, received })
    }

    fn finish(self) -> (Option<Histogram<u64>>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.publisher.join().unwrap_or(0);
        // Stop waiting once everything sent has arrived.
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        match self.subscriber.join() {
            Ok((h, got)) => (Some(h), sent, got),
            Err(_) => (None, sent, 0),
        }
    }
}

fn frame(verb_line: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{verb_line}\n").into_bytes();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

type Workers = Vec<std::thread::JoinHandle<()>>;

fn start_load(load: &str, socket: &Path, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Workers> {
    let socket = socket.to_path_buf();
    let mut workers: Workers = Vec::new();
    match load {
        "baseline" => {}
        "big-patterns" => {
            // The issue's load: 2,000 SUBs of ~4 KB patterns, reconnecting.
            let (s, flag) = (socket.clone(), stop.clone());
            workers.push(std::thread::spawn(move || {
                let pattern = format!("big.{}", "p".repeat(4000));
                let mut bytes = frame("HELLO soak-big-patterns", b"");
                for i in 0..2000 {
                    bytes.extend_from_slice(&frame(&format!("SUB {pattern}{i}"), b""));
                }
                while !flag.load(Ordering::Relaxed) {
                    if let Ok(mut c) = UnixStream::connect(&s) {
                        let _ = c.write_all(&bytes);
                        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = std::io::Read::read(&mut c, &mut [0u8; 64]);
                    }
                }
            }));
            // Within the per-pattern limits: fill the index with unique
            // 200-token patterns, 10,000 per connection, until refused.
            let (s, flag) = (socket.clone(), stop.clone());
            workers.push(std::thread::spawn(move || {
                let tail = ["t"; 199].join(".");
                let mut conns = Vec::new();
                let mut n = 0u64;
                while !flag.load(Ordering::Relaxed) && conns.len() < 200 {
                    let Ok(mut c) = UnixStream::connect(&s) else { break };
                    let mut bytes = frame("HELLO soak-index-filler", b"");
                    for _ in 0..10_000 {
                        bytes.extend_from_slice(&frame(&format!("SUB u{n}.{tail}"), b""));
                        n += 1;
                    }
                    let _ = c.write_all(&bytes);
                    conns.push(c);
                }
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }));
        }
        "wildcards" => {
            let mut holder = target.connect("soak-wildcards")?;
            for bits in 0..(1u32 << 13) {
                let toks: Vec<&str> = (0..13).map(|i| if bits >> i & 1 == 1 { "*" } else { "x" }).collect();
                holder.subscribe(&format!("{}.>", toks.join(".")))?;
            }
            holder.flush()?;
            let mut publisher = target.connect("soak-wildcards-pub")?;
            let flag = stop.clone();
            workers.push(std::thread::spawn(move || {
                let _keep = holder;
                let mut i = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let _ = publisher.publish(&format!("x.x.x.x.x.x.x.x.x.x.x.x.x.u{i}"), b"{}");
                        i += 1;
                    }
                    if publisher.flush().is_err() {
                        break;
                    }
                }
            }));
        }
        "slow-readers" => {
            let mut readers: Vec<Conn> = Vec::new();
            for i in 0..20 {
                let mut c = target.connect(&format!("soak-slow-{i}"))?;
                c.subscribe("soak.big.>")?;
                c.flush()?;
                readers.push(c);
            }
            std::thread::sleep(Duration::from_millis(200));
            let mut publisher = target.connect("soak-big-pub")?;
            let flag = stop.clone();
            workers.push(std::thread::spawn(move || {
                let _keep = readers;
                let body = format!(r#"{{"type":"big","payload":{{"pad":"{}"}}}}"#, "x".repeat(1_000_000));
                while !flag.load(Ordering::Relaxed) {
                    if publisher.publish("soak.big.event", body.as_bytes()).and_then(|_| publisher.flush()).is_err() {
                        break;
                    }
                }
            }));
        }
        "stalled-bodies" => {
            let flag = stop.clone();
            workers.push(std::thread::spawn(move || {
                let body = format!(r#"{{"payload":{{"pad":"{}"}}}}"#, "x".repeat(1_048_000));
                let whole = frame("PUB soak.stalled", body.as_bytes());
                let mut held = Vec::new();
                // Reopen the ones the daemon times out, up to 500 at a time.
                while !flag.load(Ordering::Relaxed) {
                    while held.len() < 500 && !flag.load(Ordering::Relaxed) {
                        let Ok(mut c) = UnixStream::connect(&socket) else { break };
                        let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
                        let _ = c.write_all(&frame("HELLO soak-stalled", b""));
                        let _ = c.write_all(&whole[..whole.len() - 1000]);
                        held.push(c);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    held.retain(|c| {
                        let _ = c.set_nonblocking(true);
                        let mut probe = [0u8; 1];
                        !matches!(std::io::Read::read(&mut &*c, &mut probe), Ok(0))
                    });
                }
            }));
        }
        "hostile-frames" => {
            let flag = stop.clone();
            workers.push(std::thread::spawn(move || {
                let bytes = frame("HELLO soak-hostile\x1b[2J", b"");
                while !flag.load(Ordering::Relaxed) {
                    if let Ok(mut c) = UnixStream::connect(&socket) {
                        let _ = c.write_all(&bytes);
                        let _ = c.write_all(b"NOPE\n\0\0\0\0");
                        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = std::io::Read::read(&mut c, &mut [0u8; 64]);
                    }
                }
            }));
        }
        other => anyhow::bail!("unknown load {other}"),
    }
    Ok(workers)
}
