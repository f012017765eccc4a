//! `decnet bench`: load a running bus the way `nats bench` loads NATS, and
//! (with `--nats URL`) run the identical workload against a NATS server, so
//! both are measured by the same tool on the same machine.
//!
//! Modes:
//! - throughput (default): `--pubs N` publishers share `--msgs K` events as
//!   fast as they can; `--subs M` subscribers each expect all K.
//! - latency (`--rate R`): one paced publisher for `--secs S`; every event
//!   carries its send time and subscribers record one-way latency.
//! - idle connections (`--idle-conns N`): open N connections and hold them,
//!   for measuring the daemon's memory per connection.
//!
//! The numbers are for people, not tests: nothing asserts a speed. The
//! last line (`summary ...`) is `key=value` pairs for `scripts/bench-compare`.

mod target;

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use target::{Conn, Target, LOCAL_SUB_CAPACITY};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Bus socket to load. Default: as for every other command.
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Run the workload against this NATS server instead (e.g. nats://127.0.0.1:4222).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// Publishers (one connection each); they share --msgs between them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub pubs: u32,
    /// Subscribers (one connection each); each expects every event.
    #[arg(long, default_value_t = 1)]
    pub subs: u32,
    /// Events to publish in throughput mode (total over all publishers).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub msgs: u64,
    /// Bytes per published event (the PUB body / NATS message), at least 64.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(64..=1_000_000))]
    pub size: u32,
    /// Latency mode: one publisher paced at this many events per second.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Latency mode: how long to publish.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Topic (NATS subject) the workload publishes on.
    #[arg(long, default_value = "bench.load")]
    pub topic: String,
    /// Extra connections holding subscriptions that never match the workload.
    #[arg(long, default_value_t = 0)]
    pub idle_subs_conns: u32,
    /// Non-matching patterns per --idle-subs-conns connection.
    #[arg(long, default_value_t = 1000)]
    pub idle_subs_per_conn: u32,
    /// Idle mode: open this many connections, print a line, and hold them.
    #[arg(long)]
    pub idle_conns: Option<u32>,
    /// Idle mode: how long to hold the connections (0 = until SIGTERM/SIGINT).
    #[arg(long, default_value_t = 0.0)]
    pub hold_secs: f64,
    /// Give up on missing events after this long without progress.
    #[arg(long, default_value_t = 2.0)]
    pub idle_timeout_secs: f64,
    /// Bus only: how long to wait for a `system.bus.health` heartbeat before
    /// and after the run to report the daemon's drops (start the daemon with
    /// a short --heartbeat-secs, e.g. 1).
    #[arg(long, default_value_t = 3.0)]
    pub health_wait_secs: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.secs.is_finite() || args.secs <= 0.0 {
        anyhow::bail!("--secs must be a positive number of seconds");
    }
    decnet_bus::topic::validate_topic(&args.topic).map_err(|e| anyhow::anyhow!("--topic: {e}"))?;
    let target = match &args.nats {
        Some(url) => Target::Nats(url.clone()),
        None => Target::Bus(decnet_bus::paths::resolve_socket_path(args.socket.as_deref())),
    };
    if let Some(n) = args.idle_conns {
        return hold_idle_connections(&target, n, args.hold_secs).await;
    }
    if args.subs == 0 {
        anyhow::bail!("--subs must be at least 1 (nothing would measure delivery)");
    }

    let _idle = open_idle_subscriptions(&target, &args).await?;
    let health = match &target {
        Target::Bus(_) => Some(HealthWatch::start(&target, args.health_wait_secs).await?),
        Target::Nats(_) => None,
    };
    let drops_before = match &health {
        Some(h) => h.wait_newer_than(None).await,
        None => None,
    };

    let report = match args.rate {
        Some(rate) => latency_run(&target, &args, rate).await?,
        None => throughput_run(&target, &args).await?,
    };

    let run_end = Instant::now();
    let drops_after = match &health {
        Some(h) => h.wait_newer_than(Some(run_end)).await,
        None => None,
    };
    let drops = match (drops_before, drops_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    report.print(&target, &args, drops);
    Ok(())
}

/// What a run measured.
struct Report {
    mode: &'static str,
    published: u64,
    publish_secs: f64,
    expected: u64,
    delivered: u64,
    deliver_secs: f64,
    latency: Option<Histogram<u64>>,
}

impl Report {
    fn print(&self, target: &Target, args: &BenchArgs, drops: Option<u64>) {
        let pub_rate = self.published as f64 / self.publish_secs.max(1e-9);
        let del_rate = self.delivered as f64 / self.deliver_secs.max(1e-9);
        let pct = 100.0 * self.delivered as f64 / self.expected.max(1) as f64;
        println!(
            "{} {} mode: {} pub -> {} sub, {}-byte events{}",
            target.label(),
            self.mode,
            if self.mode == "latency" { 1 } else { args.pubs },
            args.subs,
            args.size,
            if args.idle_subs_conns > 0 {
                format!(", {} idle subscriptions", args.idle_subs_conns * args.idle_subs_per_conn)
            } else {
                String::new()
            }
        );
        println!(
            "  published  {:>10} events in {:.3} s  = {:>12.0} events/s",
            self.published, self.publish_secs, pub_rate
        );
        println!(
            "  delivered  {:>10} of {} ({:.2} %) in {:.3} s = {:>12.0} events/s",
            self.delivered, self.expected, pct, self.deliver_secs, del_rate
        );
        let mut summary = format!(
            "summary target={} mode={} pubs={} subs={} size={} published={} expected={} delivered={} \
             pub_rate={:.0} delivered_rate={:.0} delivered_pct={:.2}",
            match target {
                Target::Bus(_) => "bus",
                Target::Nats(_) => "nats",
            },
            self.mode,
            args.pubs,
            args.subs,
            args.size,
            self.published,
            self.expected,
            self.delivered,
            pub_rate,
            del_rate,
            pct
        );
        if let Some(h) = &self.latency {
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "  latency    p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs  ({} samples)",
                us(0.5),
                us(0.99),
                us(0.999),
                h.max() as f64 / 1000.0,
                h.len()
            );
            summary += &format!(
                " p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
                us(0.5),
                us(0.99),
                us(0.999),
                h.max() as f64 / 1000.0
            );
        }
        match (target, drops) {
            (Target::Bus(_), Some(d)) => {
                println!("  daemon dropped {d} events during the run (system.bus.health)");
                summary += &format!(" daemon_dropped={d}");
            }
            (Target::Bus(_), None) => {
                println!("  daemon drops unknown: no system.bus.health heartbeat seen (run the daemon with --heartbeat-secs 1)");
                summary += " daemon_dropped=unknown";
            }
            (Target::Nats(_), _) => summary += " daemon_dropped=n/a",
        }
        println!("{summary}");
    }
}

/// A PUB body / NATS message of exactly `size` bytes with room for a send
/// timestamp: `{"type":"bench","payload":{"t":"<20 digits>","pad":"xx…"}}`
/// (a string: JSON numbers may not have the leading zeros of a fixed width).
struct BodyTemplate {
    bytes: Vec<u8>,
    stamp_at: usize,
}

const STAMP_DIGITS: usize = 20;
const STAMP_KEY: &[u8] = b"{\"t\":\"";

impl BodyTemplate {
    fn new(size: usize) -> BodyTemplate {
        let head = br#"{"type":"bench","payload":{"t":""#;
        let stamp_at = head.len();
        let mid = br#"","pad":""#;
        let tail = br#""}}"#;
        let fixed = head.len() + STAMP_DIGITS + mid.len() + tail.len();
        let mut bytes = Vec::with_capacity(size.max(fixed));
        bytes.extend_from_slice(head);
        bytes.extend_from_slice(&[b'0'; STAMP_DIGITS]);
        bytes.extend_from_slice(mid);
        bytes.resize(bytes.len() + size.saturating_sub(fixed), b'x');
        bytes.extend_from_slice(tail);
        BodyTemplate { bytes, stamp_at }
    }

    fn stamped(&self, nanos: u64) -> Bytes {
        let mut b = self.bytes.clone();
        let digits = format!("{nanos:020}");
        b[self.stamp_at..self.stamp_at + STAMP_DIGITS].copy_from_slice(digits.as_bytes());
        Bytes::from(b)
    }
}

/// The send timestamp inside a received event (envelope or raw message).
fn read_stamp(event: &[u8]) -> Option<u64> {
    let at = event.windows(STAMP_KEY.len()).position(|w| w == STAMP_KEY)? + STAMP_KEY.len();
    let digits = event.get(at..at + STAMP_DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Shared progress of the subscribers.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    /// Nanoseconds since the run's origin of the latest receive.
    last_receive_ns: AtomicU64,
}

struct Subscribers {
    progress: Arc<Progress>,
    tasks: Vec<tokio::task::JoinHandle<Option<Histogram<u64>>>>,
    conns: Vec<Conn>,
}

async fn start_subscribers(
    target: &Target,
    args: &BenchArgs,
    origin: Instant,
    expected_each: u64,
    measure_latency: bool,
) -> anyhow::Result<Subscribers> {
    let progress = Arc::new(Progress::default());
    let mut tasks = Vec::new();
    let mut conns = Vec::new();
    for i in 0..args.subs {
        let conn = target.connect(&format!("bench-sub-{i}")).await?;
        let mut sub = conn.subscribe(&args.topic, LOCAL_SUB_CAPACITY).await?;
        conn.flush().await?;
        conns.push(conn);
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = measure_latency.then(|| Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap());
            let mut got = 0u64;
            while got < expected_each {
                let Some(event) = sub.next().await else { break };
                let now_ns = origin.elapsed().as_nanos() as u64;
                if let Some(h) = hist.as_mut() {
                    if let Some(sent) = read_stamp(&event) {
                        let _ = h.record(now_ns.saturating_sub(sent).max(1));
                    }
                }
                got += 1;
                progress.received.fetch_add(1, Ordering::Relaxed);
                progress.last_receive_ns.fetch_max(now_ns, Ordering::Relaxed);
            }
            hist
        }));
    }
    // Subscriptions are on the wire; give the server a moment to apply them
    // (neither protocol acknowledges a SUB) so no early event is missed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Subscribers { progress, tasks, conns })
}

impl Subscribers {
    /// Wait until `total` events arrived, or nothing arrived for `idle`.
    /// Returns the merged latency histogram, if measured.
    async fn finish(self, total: u64, idle: Duration) -> Option<Histogram<u64>> {
        let mut last = u64::MAX;
        let mut last_change = Instant::now();
        loop {
            let now = self.progress.received.load(Ordering::Relaxed);
            if now >= total {
                break;
            }
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() >= idle {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut merged: Option<Histogram<u64>> = None;
        for task in self.tasks {
            if !task.is_finished() {
                task.abort();
            }
            if let Ok(Some(h)) = task.await {
                match merged.as_mut() {
                    Some(m) => {
                        let _ = m.add(&h);
                    }
                    None => merged = Some(h),
                }
            }
        }
        for conn in &self.conns {
            conn.close().await;
        }
        merged
    }
}

async fn throughput_run(target: &Target, args: &BenchArgs) -> anyhow::Result<Report> {
    let origin = Instant::now();
    let subs = start_subscribers(target, args, origin, args.msgs, false).await?;
    let template = BodyTemplate::new(args.size as usize);
    let body = Bytes::from(template.bytes.clone());

    let mut publishers = Vec::new();
    for i in 0..args.pubs {
        publishers.push(target.connect(&format!("bench-pub-{i}")).await?);
    }
    let share = args.msgs / u64::from(args.pubs);
    let extra = args.msgs % u64::from(args.pubs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, conn) in publishers.iter().cloned().enumerate() {
        let count = share + u64::from((i as u64) < extra);
        let topic = args.topic.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                conn.publish(&topic, body.clone()).await?;
            }
            conn.flush().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("publisher task failed")??;
    }
    let publish_secs = start.elapsed().as_secs_f64();

    let progress = subs.progress.clone();
    let expected = args.msgs * u64::from(args.subs);
    subs.finish(expected, Duration::from_secs_f64(args.idle_timeout_secs)).await;
    for p in &publishers {
        p.close().await;
    }
    Ok(Report {
        mode: "throughput",
        published: args.msgs,
        publish_secs,
        expected,
        delivered: progress.received.load(Ordering::Relaxed),
        deliver_secs: deliver_secs(&progress, origin, start),
        latency: None,
    })
}

fn deliver_secs(progress: &Progress, origin: Instant, start: Instant) -> f64 {
    let last = origin + Duration::from_nanos(progress.last_receive_ns.load(Ordering::Relaxed));
    last.saturating_duration_since(start).as_secs_f64()
}

async fn latency_run(target: &Target, args: &BenchArgs, rate: u64) -> anyhow::Result<Report> {
    let origin = Instant::now();
    let total = (rate as f64 * args.secs).round().max(1.0) as u64;
    let subs = start_subscribers(target, args, origin, total, true).await?;
    let publisher = target.connect("bench-pub-0").await?;
    let template = BodyTemplate::new(args.size as usize);

    // Pace on a dedicated OS thread: sleeping there is precise to tens of
    // microseconds, where a tokio timer (1 ms wheel) would send bursts.
    let handle = tokio::runtime::Handle::current();
    let conn = publisher.clone();
    let topic = args.topic.clone();
    let start = Instant::now();
    let paced = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let body = template.stamped(origin.elapsed().as_nanos() as u64);
            handle.block_on(conn.publish(&topic, body))?;
        }
        handle.block_on(conn.flush())
    });
    paced.await.context("publisher thread failed")??;
    let publish_secs = start.elapsed().as_secs_f64();

    let progress = subs.progress.clone();
    let expected = total * u64::from(args.subs);
    let latency = subs.finish(expected, Duration::from_secs_f64(args.idle_timeout_secs)).await;
    publisher.close().await;
    Ok(Report {
        mode: "latency",
        published: total,
        publish_secs,
        expected,
        delivered: progress.received.load(Ordering::Relaxed),
        deliver_secs: deliver_secs(&progress, origin, start),
        latency,
    })
}

/// Connections holding patterns that never match `--topic` (they live
/// under `idle.`), to show what a large subscription table costs a publish.
async fn open_idle_subscriptions(target: &Target, args: &BenchArgs) -> anyhow::Result<Vec<(Conn, Vec<target::Sub>)>> {
    let mut held = Vec::new();
    for c in 0..args.idle_subs_conns {
        let conn = target.connect(&format!("bench-idle-{c}")).await?;
        let mut subs = Vec::new();
        for p in 0..args.idle_subs_per_conn {
            // A mix of literal and wildcard patterns, like a real fleet.
            let pattern = match p % 4 {
                0 => format!("idle.c{c}.p{p}.*"),
                1 => format!("idle.c{c}.p{p}.>"),
                _ => format!("idle.c{c}.p{p}"),
            };
            subs.push(conn.subscribe(&pattern, 1).await?);
        }
        conn.flush().await?;
        held.push((conn, subs));
    }
    if args.idle_subs_conns > 0 {
        eprintln!("holding {} idle subscriptions", args.idle_subs_conns * args.idle_subs_per_conn);
    }
    Ok(held)
}

async fn hold_idle_connections(target: &Target, n: u32, hold_secs: f64) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(n as usize);
    for i in 0..n {
        conns.push(target.connect(&format!("bench-idle-{i}")).await?);
    }
    for c in &conns {
        c.flush().await?;
    }
    // The compare script waits for this line before reading the daemon's RSS.
    println!("holding {n} idle connections");
    if hold_secs > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(hold_secs)).await;
    } else {
        let token = tokio_util::sync::CancellationToken::new();
        super::bus::cancel_on_signal(token.clone()).await;
    }
    for c in &conns {
        c.close().await;
    }
    Ok(())
}

/// The daemon's `dropped` counter, read from its `system.bus.health` heartbeats.
struct HealthWatch {
    latest: Arc<std::sync::Mutex<Option<(Instant, u64)>>>,
    wait: Duration,
    _task: tokio::task::JoinHandle<()>,
    _conn: Conn,
}

impl HealthWatch {
    async fn start(target: &Target, wait_secs: f64) -> anyhow::Result<HealthWatch> {
        let conn = target.connect("bench-health").await?;
        let Conn::Bus(bus) = &conn else { anyhow::bail!("health is only read from the decnet bus") };
        use decnet_bus::bus::Bus;
        let mut sub = bus.subscribe("system.bus.health").await?;
        let latest = Arc::new(std::sync::Mutex::new(None));
        let sink = latest.clone();
        let task = tokio::spawn(async move {
            while let Some(env) = sub.recv().await {
                if let Some(d) = env.payload.get("dropped").and_then(|d| d.as_u64()) {
                    *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), d));
                }
            }
        });
        Ok(HealthWatch { latest, wait: Duration::from_secs_f64(wait_secs.max(0.0)), _task: task, _conn: conn })
    }

    /// The drop counter from a heartbeat received after `after` (any, if
    /// `None`), waiting up to the configured time for one.
    async fn wait_newer_than(&self, after: Option<Instant>) -> Option<u64> {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some((at, dropped)) = *self.latest.lock().unwrap_or_else(|e| e.into_inner()) {
                if after.is_none_or(|a| at > a) {
                    return Some(dropped);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_size_and_a_readable_stamp() {
        for size in [64usize, 128, 1000] {
            let t = BodyTemplate::new(size);
            assert_eq!(t.bytes.len(), size);
            let b = t.stamped(1_234_567);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["payload"]["t"], "00000000000001234567");
            assert_eq!(read_stamp(&b), Some(1_234_567));
        }
    }
}
