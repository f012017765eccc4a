//! `decnet bench-collector`: lines per second through the whole collector
//! path on this machine, bounded in lines and time.
//!
//! It starts a collector (TCP on a free loopback port) and an ingester on
//! a fresh SQLite file in a scratch folder, sends `--lines` realistic decky
//! lines over `--connections` octet-counted TCP connections as fast as the
//! collector takes them, and times three points: all lines written as
//! records to `<log>.json`, and all rows committed in `logs`. A parse-only
//! figure (the same lines through `parse_record` on one thread) separates
//! parser cost from I/O. Nothing here is a test: numbers go to
//! BENCHMARKS.md with the command that produced them.
//!
//! `--workload` picks the lines: `mixed` (the default: half logins with a
//! new credential each, half commands) or `sweep` (a connect scan across
//! 1,000 deckies, issue 24).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::collector::{Collector, CollectorConfig, Stats};
use crate::ingest::{IngestBus, IngestConfig, IngestStats};

#[derive(Debug, clap::Args)]
pub struct BenchCollectorArgs {
    /// Lines to send in total.
    #[arg(long, default_value_t = 200_000)]
    pub lines: usize,
    /// TCP connections sending in parallel.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Give up (and report what was reached) after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// What the lines are: `mixed` (half new-credential logins, half
    /// commands) or `sweep` (a connect scan across 1,000 deckies).
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    pub workload: Workload,
}

/// The kind of traffic the bench's lines stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Half `login_attempt` with a credential never seen before, half `command`.
    Mixed,
    /// `nmap -sT` across 1,000 deckies × 3 ports, each pass from the next
    /// of 256 scanning addresses: every connection is a decky session
    /// opened and closed at once, which a decky logs as `connect`,
    /// `disconnect` and `session_recorded`.
    Sweep,
}

impl Workload {
    pub fn line(self, i: usize) -> String {
        match self {
            Workload::Mixed => sample_line(i),
            Workload::Sweep => sweep_line(i),
        }
    }
}

/// Deckies, ports and attackers of the sweep workload.
const SWEEP_DECKIES: usize = 1_000;
/// The services on the swept ports (22, 80, 445); a decky's line names
/// the service, not the port.
const SWEEP_SERVICES: [&str; 3] = ["ssh", "http", "smb"];
/// The collector keeps one `connect`/`disconnect` per (attacker, decky,
/// service) per second (collector::dedup): one attacker sweeping the same
/// fleet again within the second is rightly collapsed. At the rates
/// measured a pass takes well under a second, so each pass comes from
/// another address; the bench still reports (and accounts for) any line
/// the dedup dropped.
const SWEEP_ATTACKERS: usize = 256;

/// Line `i` of a connect sweep: connection `i / 3` hits one (decky,
/// port), the sweep walking ports within a decky, deckies within a pass,
/// and one attacker per pass. The three lines are what a decky's session
/// writes for a connection closed right after the accept (decnet-decky
/// `event::Session::open` and `finish("client closed")`, no recording).
pub fn sweep_line(i: usize) -> String {
    use crate::events::rfc5424::{format_event, RelayEvent, Severity};
    let conn = i / 3;
    let service = SWEEP_SERVICES[conn % SWEEP_SERVICES.len()];
    let decky = (conn / SWEEP_SERVICES.len()) % SWEEP_DECKIES;
    let pass = conn / (SWEEP_SERVICES.len() * SWEEP_DECKIES);
    let ip = format!("198.51.{}.{}", 100 + pass % SWEEP_ATTACKERS / 128, pass % 128 + 1);
    let src_port = 32768 + conn % 28000;
    // A session id like the decky's (16 hex digits), one per connection.
    let sid = format!("{:016x}", (conn as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut params = vec![
        ("src_ip".to_string(), ip.clone()),
        ("src_port".to_string(), src_port.to_string()),
        ("sid".to_string(), sid),
    ];
    let (msgid, msg) = match i % 3 {
        0 => ("connect", Some(format!("connection from {ip}:{src_port}"))),
        1 => {
            params.extend([
                ("reason".to_string(), "client closed".to_string()),
                ("duration_s".to_string(), "0.001".to_string()),
                ("bytes".to_string(), "0".to_string()),
            ]);
            ("disconnect", None)
        }
        _ => {
            params.extend([
                ("service".to_string(), service.to_string()),
                ("duration_s".to_string(), "0.001".to_string()),
                ("bytes".to_string(), "0".to_string()),
                ("bytes_in".to_string(), "0".to_string()),
                ("commands".to_string(), "[]".to_string()),
            ]);
            ("session_recorded", None)
        }
    };
    format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity: Severity::Info,
        host: format!("decky-{decky:04}"),
        app: service.into(),
        msgid: msgid.into(),
        params,
        msg,
    })
}

/// A line like a native decky's: a login attempt with a credential, or a command.
pub fn sample_line(i: usize) -> String {
    use crate::events::rfc5424::{format_event, RelayEvent, Severity};
    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let (msgid, params, msg) = if i.is_multiple_of(2) {
        (
            "login_attempt",
            vec![
                ("src_ip".to_string(), ip),
                ("src_port".to_string(), (40000 + i % 20000).to_string()),
                ("username".to_string(), "root".to_string()),
                ("secret_b64".to_string(), "aHVudGVyMg==".to_string()),
            ],
            Some("password attempt".to_string()),
        )
    } else {
        (
            "command",
            vec![("src_ip".to_string(), ip), ("sid".to_string(), format!("s{}", i / 8))],
            Some(format!("CMD cat /etc/passwd #{i}")),
        )
    };
    format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity: Severity::Info,
        host: format!("decky-{}", i % 8),
        app: "ssh".into(),
        msgid: msgid.into(),
        params,
        msg,
    })
}

pub async fn run(args: BenchCollectorArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.lines > 0 && args.connections > 0, "--lines and --connections must be positive");
    let dir = std::env::temp_dir().join(format!("decnet-bench-collector-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = bench(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(args: &BenchCollectorArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let lines: Vec<String> = (0..args.lines).map(|i| args.workload.line(i)).collect();

    let t = Instant::now();
    let mut parsed = 0usize;
    for l in &lines {
        parsed += crate::collector::parse_record(l, 0.0).is_ok() as usize;
    }
    let parse_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(parsed == lines.len(), "sample lines failed to parse");

    let log = dir.join("ingest.log");
    let pool = crate::store::open(&dir.join("bench.db")).await?;
    let stop = CancellationToken::new();
    let mut config = CollectorConfig::new("127.0.0.1:0".parse()?, log.clone());
    config.udp = false;
    // The bench's lines stand for deckies' (credentials and all): trust their sender.
    config.trust_networks = crate::collector::Networks::loopback();
    let collector = Collector::start(config, None, stop.clone()).await?;
    let addr = collector.tcp_addr.expect("tcp is on");
    let stats: Arc<Stats> = collector.stats.clone();
    let ingest_stats = Arc::new(IngestStats::default());
    let ingester = tokio::spawn(crate::ingest::run(
        pool.clone(),
        IngestConfig::new(crate::collector::writer::json_log_path(&log)),
        IngestBus::None,
        ingest_stats.clone(),
        stop.clone(),
    ));

    let per = lines.len().div_ceil(args.connections);
    let lines = Arc::new(lines);
    let start = Instant::now();
    let mut senders = Vec::new();
    for c in 0..args.connections {
        let lines = lines.clone();
        senders.push(tokio::spawn(async move {
            let mut stream =
                tokio::io::BufWriter::with_capacity(64 * 1024, tokio::net::TcpStream::connect(addr).await?);
            for l in lines.iter().skip(c * per).take(per) {
                stream.write_all(format!("{} {l}", l.len()).as_bytes()).await?;
            }
            stream.flush().await?;
            stream.into_inner().shutdown().await?;
            anyhow::Ok(())
        }));
    }
    for s in senders {
        s.await??;
    }
    let sent_secs = start.elapsed().as_secs_f64();
    let n = lines.len() as u64;
    let deadline = start + Duration::from_secs(args.timeout_secs);
    let mut json_secs = None;
    let mut db_secs = None;
    // Lines the collector's dedup left out on purpose are no row to wait
    // for (none in the mixed workload, which has no connect lines).
    let collected = || Stats::get(&stats.stored) + Stats::get(&stats.deduped);
    while Instant::now() < deadline && db_secs.is_none() {
        if json_secs.is_none() && collected() >= n {
            json_secs = Some(start.elapsed().as_secs_f64());
        }
        if json_secs.is_some() && ingest_stats.rows.load(Ordering::Relaxed) >= Stats::get(&stats.stored) {
            db_secs = Some(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    collector.wait().await;
    let _ = ingester.await;
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM logs").fetch_one(&pool).await?;
    let (creds,): (i64,) = sqlx::query_as("SELECT count(*) FROM credentials").fetch_one(&pool).await?;
    pool.close().await;

    let deduped = Stats::get(&stats.deduped);
    let rate = |secs: f64| n as f64 / secs;
    println!(
        "collector bench: {n} lines ({:?} workload), {} TCP connection(s), octet counting",
        args.workload, args.connections
    );
    println!("  parse only (1 thread):      {:>10.0} lines/s", rate(parse_secs));
    println!("  sent over TCP:              {:>10.0} lines/s ({sent_secs:.2} s)", rate(sent_secs));
    match json_secs {
        Some(s) => println!("  received → <log>.json:      {:>10.0} lines/s ({s:.2} s)", rate(s)),
        None => println!("  received → <log>.json:      incomplete ({} of {n})", collected()),
    }
    match db_secs {
        Some(s) => println!("  end to end (rows in SQLite): {:>9.0} lines/s ({s:.2} s)", rows as f64 / s),
        None => println!("  end to end (rows in SQLite): incomplete ({rows} of {n} within {} s)", args.timeout_secs),
    }
    println!(
        "  logs rows {rows}, credentials {creds}, deduped {deduped}, dropped {}, malformed {}",
        Stats::get(&stats.dropped),
        Stats::get(&stats.malformed)
    );
    anyhow::ensure!(rows as u64 + deduped == n, "stored {rows} rows (+ {deduped} deduped) of {n}");
    Ok(())
}
