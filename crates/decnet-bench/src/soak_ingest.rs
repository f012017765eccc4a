//! `decnet-bench soak-ingest`: issue 25's hostile loads against a running
//! intelligence pipeline (a `decnet collector` and the process serving
//! native deckies, `decnet mutator --driver native`, e.g. under `decnet up
//! --driver native`), each bounded in count and time:
//!
//! - `amplify`: telnet sessions of 4,000 bytes of shell input each, as
//!   tiny commands (the most log lines per input byte) and as 1,000-byte
//!   commands (the most log bytes); prints the bytes of log (raw + JSON)
//!   each session cost, against the per-session log budget;
//! - `stalled-collector`: the collector stopped (SIGSTOP, always resumed)
//!   while sessions of long commands run; prints the deckies' process peak
//!   RSS (the sink queue is bounded in bytes);
//! - `udp-flood`: 60,000-byte datagrams to the collector's UDP listener;
//!   prints the collector's peak RSS, the kernel's drop count for the port
//!   and the raw log's disk growth (bounded by its rotation);
//! - `slot-hog`: one address opens 64 slow telnet sessions on one decky;
//!   prints how many it got and whether another address is still served;
//! - `forge`: a decky line sent to the network listener from the host;
//!   prints how it was stored (`ingest_trusted`).
//!
//! Memory is VmRSS sampled every 20 ms from /proc (see [`crate::soak_api`]).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::soak_api::{proc_status, ProcSampler};

#[derive(Debug, clap::Args)]
pub struct SoakIngestArgs {
    /// Pid of the `decnet collector` under test.
    #[arg(long)]
    pub collector_pid: u32,
    /// Pid of the process serving the native deckies (`decnet mutator --driver native`).
    #[arg(long)]
    pub mutator_pid: u32,
    /// The collector's network syslog listener (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5514")]
    pub collector_addr: SocketAddr,
    /// The collector's raw ingest log (its rotated files and `.json` are measured too).
    #[arg(long)]
    pub ingest_log: PathBuf,
    /// A native decky's telnet service, `address:port`.
    #[arg(long)]
    pub telnet: SocketAddr,
    /// Seconds of each timed load (stalled-collector, udp-flood).
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Loads to run (default: all), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = LOADS.map(String::from))]
    pub loads: Vec<String>,
}

// The flood last: the backlog it leaves would delay the others' lines.
const LOADS: [&str; 5] = ["amplify", "stalled-collector", "slot-hog", "forge", "udp-flood"];

/// Input one amplifying session sends (the 4,000 bytes).
const SESSION_INPUT: usize = 4_000;

pub fn run(args: &SoakIngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs.is_finite() && args.secs > 0.0, "--secs must be positive");
    for l in &args.loads {
        anyhow::ensure!(LOADS.contains(&l.as_str()), "unknown load {l:?} (known: {})", LOADS.join(", "));
    }
    let secs = Duration::from_secs_f64(args.secs);
    println!(
        "soak-ingest: collector pid {}, deckies pid {}, telnet {}, {} s per timed load",
        args.collector_pid, args.mutator_pid, args.telnet, args.secs
    );
    let mut worst = (0u64, 0u64);
    for load in &args.loads {
        let collector = ProcSampler::start(args.collector_pid);
        let mutator = ProcSampler::start(args.mutator_pid);
        let result = match load.as_str() {
            "amplify" => amplify(args),
            "stalled-collector" => stalled_collector(args, secs),
            "udp-flood" => udp_flood(args, secs),
            "slot-hog" => slot_hog(args),
            "forge" => forge(args),
            _ => unreachable!("checked above"),
        };
        let (c_peak, _) = collector.finish();
        let (m_peak, _) = mutator.finish();
        worst = (worst.0.max(c_peak), worst.1.max(m_peak));
        println!(
            "  [{load}] peak RSS: collector {:.1} MiB, deckies {:.1} MiB",
            c_peak as f64 / 1024.0,
            m_peak as f64 / 1024.0
        );
        if let Err(e) = result {
            println!("  [{load}] failed: {e:#}");
        }
    }
    let hwm = |pid| proc_status(pid, "VmHWM:").unwrap_or(0);
    let (c, m) = (worst.0.max(hwm(args.collector_pid)), worst.1.max(hwm(args.mutator_pid)));
    let verdict = |kib: u64| if (kib as f64) < 256.0 * 1024.0 { "met" } else { "MISSED" };
    println!(
        "target peak RSS < 256 MiB: collector {:.1} MiB ({}), deckies {:.1} MiB ({}) (VmHWM or the highest sample)",
        c as f64 / 1024.0,
        verdict(c),
        m as f64 / 1024.0,
        verdict(m)
    );
    Ok(())
}

/// Bytes of log on disk: the raw log, its rotated files, the JSON records.
fn log_bytes(raw: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let with = |suffix: &str| {
        let mut s = raw.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    size(raw) + size(&with(".json")) + (1..=64).map(|n| size(&with(&format!(".{n}")))).sum::<u64>()
}

/// The JSON records' size, and the raw logs' (live + rotated).
fn raw_bytes(raw: &Path) -> u64 {
    log_bytes(raw) - std::fs::metadata(format!("{}.json", raw.display())).map(|m| m.len()).unwrap_or(0)
}

/// Wait until the logs stop growing (3 s unchanged, at most 120 s: the
/// collector writes a flood's backlog in batches of up to 512 lines).
fn settle(raw: &Path) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = log_bytes(raw);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let now = log_bytes(raw);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(3) {
            break;
        }
    }
    last
}

fn connect_from(source: Option<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, None)?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Read until `needle` (at most 5 s).
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> std::io::Result<()> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.windows(needle.len()).any(|w| w == needle) {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no prompt"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() > 64 * 1024 {
            got.drain(..got.len() - needle.len());
        }
    }
    Ok(())
}

/// Log in over telnet and send `input` bytes of `command` lines; the
/// replies are drained by a thread so neither side blocks.
fn hostile_session(to: SocketAddr, command: &str, input: usize) -> std::io::Result<()> {
    let mut s = connect_from(None, to)?;
    read_until(&mut s, b"login: ")?;
    s.write_all(b"root\r\n")?;
    read_until(&mut s, b"Password: ")?;
    s.write_all(b"toor\r\n")?;
    read_until(&mut s, b"# ")?;
    let mut reader = s.try_clone()?;
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let line = format!("{command}\r\n");
    let mut sent = 0;
    while sent + line.len() <= input {
        if s.write_all(line.as_bytes()).is_err() {
            break;
        }
        sent += line.len();
    }
    let _ = s.write_all(b"exit\r\n");
    let _ = drain.join();
    Ok(())
}

fn amplify(args: &SoakIngestArgs) -> anyhow::Result<()> {
    const SESSIONS: usize = 5;
    let long = format!("echo {}", "A".repeat(994));
    for (shape, command) in [("3-byte commands", "a"), ("1,000-byte commands", long.as_str())] {
        let before = (settle(&args.ingest_log), raw_bytes(&args.ingest_log));
        for _ in 0..SESSIONS {
            hostile_session(args.telnet, command, SESSION_INPUT)?;
        }
        let after = (settle(&args.ingest_log), raw_bytes(&args.ingest_log));
        let per = (after.0.saturating_sub(before.0)) as f64 / SESSIONS as f64;
        let raw = (after.1.saturating_sub(before.1)) as f64 / SESSIONS as f64;
        println!(
            "  [amplify] {shape}: {SESSIONS} sessions of {SESSION_INPUT} B input -> per session {:.0} KiB of raw log ({:.0}x), {:.0} KiB raw + JSON",
            raw / 1024.0,
            raw / SESSION_INPUT as f64,
            per / 1024.0
        );
    }
    Ok(())
}

/// SIGCONT on drop, so a failing load never leaves the collector stopped.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGCONT);
    }
}

fn stalled_collector(args: &SoakIngestArgs, secs: Duration) -> anyhow::Result<()> {
    let pid = args.collector_pid as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP)?;
    let _resume = Resume(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicU64::new(0));
    let long = format!("echo {}", "B".repeat(994));
    // 8 attackers at once, each session 1 MiB of long commands (the input
    // budget), for the load's time.
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (stop, sessions, long, to) = (stop.clone(), sessions.clone(), long.clone(), args.telnet);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if hostile_session(to, &long, 1024 * 1024).is_ok() {
                        sessions.fetch_add(1, Ordering::Relaxed);
                    } else {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    println!(
        "  [stalled-collector] {} sessions of up to 1 MiB input while the collector was stopped",
        sessions.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Datagrams the kernel dropped for `port` (/proc/net/udp{,6}, last column).
fn kernel_udp_drops(port: u16) -> u64 {
    let wanted = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|row| {
                    let cols: Vec<&str> = row.split_whitespace().collect();
                    if !cols.get(1)?.ends_with(&wanted) {
                        return None;
                    }
                    cols.last()?.parse::<u64>().ok()
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

fn udp_flood(args: &SoakIngestArgs, secs: Duration) -> anyhow::Result<()> {
    let drops_before = kernel_udp_drops(args.collector_addr.port());
    let raw_before = raw_bytes(&args.ingest_log);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, sent, to) = (stop.clone(), sent.clone(), args.collector_addr);
            std::thread::spawn(move || -> std::io::Result<()> {
                let udp = UdpSocket::bind("127.0.0.1:0")?;
                let datagram = vec![b'Z'; 60_000];
                while !stop.load(Ordering::Relaxed) {
                    if udp.send_to(&datagram, to).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    settle(&args.ingest_log);
    let sent = sent.load(Ordering::Relaxed);
    println!(
        "  [udp-flood] {sent} datagrams ({:.0} MiB) sent; kernel dropped {}; raw log on disk grew {:.0} MiB",
        sent as f64 * 60_000.0 / 1048576.0,
        kernel_udp_drops(args.collector_addr.port()).saturating_sub(drops_before),
        raw_bytes(&args.ingest_log).saturating_sub(raw_before) as f64 / 1048576.0
    );
    Ok(())
}

fn slot_hog(args: &SoakIngestArgs) -> anyhow::Result<()> {
    let hog: IpAddr = "127.0.0.1".parse()?;
    let mut held = Vec::new();
    let mut served = 0;
    for _ in 0..64 {
        let Ok(mut s) = connect_from(Some(hog), args.telnet) else { continue };
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        if read_until(&mut s, b"login: ").is_ok() {
            served += 1;
        }
        held.push(s);
    }
    let other =
        connect_from(Some("127.0.0.2".parse()?), args.telnet).and_then(|mut s| read_until(&mut s, b"login: ")).is_ok();
    println!(
        "  [slot-hog] one address opened 64 sessions: {served} served; another address served: {}",
        if other { "yes" } else { "NO" }
    );
    drop(held);
    Ok(())
}

fn forge(args: &SoakIngestArgs) -> anyhow::Result<()> {
    let marker = format!("forged-{}", std::process::id());
    let line = format!(
        "<134>1 2026-12-03T12:00:00.000000Z web-01 ssh - login_attempt [relay@55555 src_ip=\"6.6.6.6\" username=\"root\" ingest_trusted=\"true\"] {marker}"
    );
    let mut s = TcpStream::connect_timeout(&args.collector_addr, Duration::from_secs(5))?;
    s.write_all(format!("{} {line}", line.len()).as_bytes())?;
    drop(s);
    let json = PathBuf::from(format!("{}.json", args.ingest_log.display()));
    // Behind whatever the flood before it left queued.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&json).unwrap_or_default();
        if let Some(row) = text.lines().find(|l| l.contains(&marker)) {
            let record: serde_json::Value = serde_json::from_str(row)?;
            println!(
                "  [forge] a decky line sent to {} from the host was stored with ingest_transport={} ingest_trusted={}",
                args.collector_addr, record["fields"]["ingest_transport"], record["fields"]["ingest_trusted"]
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("  [forge] the forged line was not stored (refused by --allow?)");
    Ok(())
}
