//! The workloads: the same threads, sockets and bytes against either
//! system (see [`crate::proto`]).
//!
//! - throughput: `--pubs N` publisher threads share `--msgs K` events,
//!   written as fast as the socket takes them; `--subs M` subscriber
//!   threads each expect all K.
//! - latency (`--rate R`): one publisher thread paced at R events/s that
//!   writes *and flushes* each event on its own (a blocking publisher, the
//!   way a worker publishes one event at a time); every event carries its
//!   send time and each subscriber records publish→receive latency.
//! - idle (`--idle-conns N`): hold N connections, for the daemon's memory
//!   per connection.
//!
//! Nothing here asserts a speed: the numbers are for BENCHMARKS.md. The
//! last line of a run (`summary ...`) is `key=value` pairs for
//! `scripts/bench-compare`.

use anyhow::Context;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::{Conn, Target};
use crate::BenchArgs;

/// A PUB body / NATS message of exactly `size` bytes with room for a send
/// timestamp: `{"type":"bench","payload":{"t":"<20 digits>","pad":"xx…"}}`
/// (a string: JSON numbers may not have the leading zeros of a fixed width).
pub struct BodyTemplate {
    pub bytes: Vec<u8>,
    stamp_at: usize,
}

const STAMP_DIGITS: usize = 20;
const STAMP_KEY: &[u8] = b"{\"t\":\"";

impl BodyTemplate {
    pub fn new(size: usize) -> BodyTemplate {
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

    /// Write `nanos` into the template's stamp, in place.
    pub fn stamp(&mut self, nanos: u64) {
        let mut n = nanos;
        for slot in self.bytes[self.stamp_at..self.stamp_at + STAMP_DIGITS].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
}

/// The send timestamp inside a received event (envelope or raw message).
pub fn read_stamp(event: &[u8]) -> Option<u64> {
    let at = memfind(event, STAMP_KEY)? + STAMP_KEY.len();
    let digits = event.get(at..at + STAMP_DIGITS)?;
    digits.iter().try_fold(0u64, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0')))
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a run measured.
pub struct Report {
    pub mode: &'static str,
    pub published: u64,
    pub publish_secs: f64,
    pub expected: u64,
    pub delivered: u64,
    pub deliver_secs: f64,
    pub latency: Option<Histogram<u64>>,
}

impl Report {
    pub fn print(&self, target: &Target, args: &BenchArgs, drops: Option<u64>) {
        let pub_rate = self.published as f64 / self.publish_secs.max(1e-9);
        let del_rate = self.delivered as f64 / self.deliver_secs.max(1e-9);
        let pct = 100.0 * self.delivered as f64 / self.expected.max(1) as f64;
        let idle = args.idle_subs_conns * args.idle_subs_per_conn;
        println!(
            "{} {} mode: {} pub -> {} sub, {}-byte events{}",
            target.label(),
            self.mode,
            if self.mode == "latency" { 1 } else { args.pubs },
            args.subs,
            args.size,
            if idle > 0 { format!(", {idle} idle subscriptions") } else { String::new() }
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
            target.short(),
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
        if self.mode == "latency" {
            let pace = format!("{:?}", args.pace).to_lowercase();
            println!("  pacing     {} events/s, publisher waits by {pace}", args.rate.unwrap_or(0));
            summary += &format!(" pace={pace}");
        }
        if let Some(h) = &self.latency {
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            let max = h.max() as f64 / 1000.0;
            println!(
                "  latency    p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs  ({} samples)",
                us(0.5),
                us(0.99),
                us(0.999),
                max,
                h.len()
            );
            summary +=
                &format!(" p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}", us(0.5), us(0.99), us(0.999), max);
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

/// Throughput mode: a subscriber reports its count and reads the clock
/// once per this many events (and at its last one).
const PROGRESS_EVERY: u64 = 256;

/// Shared progress of the subscriber threads.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    /// Nanoseconds since the run's origin of the latest receive.
    last_receive_ns: AtomicU64,
}

struct Subscribers {
    progress: Arc<Progress>,
    threads: Vec<std::thread::JoinHandle<Option<Histogram<u64>>>>,
    _conns: Vec<Conn>,
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 60 s, 3 significant digits; these bounds are valid.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Connect `args.subs` subscribers on `args.topic` and start their threads.
fn start_subscribers(
    target: &Target,
    args: &BenchArgs,
    origin: Instant,
    expected_each: u64,
    measure_latency: bool,
) -> anyhow::Result<Subscribers> {
    let progress = Arc::new(Progress::default());
    let idle = Duration::from_secs_f64(args.idle_timeout_secs);
    let mut threads = Vec::new();
    let mut conns = Vec::new();
    for i in 0..args.subs {
        let mut conn = target.connect(&format!("bench-sub-{i}"))?;
        conn.subscribe(&args.topic)?;
        conn.sync()?;
        let mut reader = conn.take_reader();
        conns.push(conn);
        let progress = progress.clone();
        reader.set_read_timeout(Some(Duration::from_millis(100)))?;
        threads.push(std::thread::spawn(move || {
            let mut hist = measure_latency.then(new_histogram);
            let mut got = 0u64;
            // Counted here and handed to the shared progress (and the clock
            // read) once per PROGRESS_EVERY events in throughput mode: a
            // clock read and two atomics on a cache line shared by every
            // subscriber thread, per event, cost the load generator ~15 %
            // of a core at 6 M events/s, CPU the servers then lack.
            let mut unreported = 0u64;
            let mut last_progress = Instant::now();
            let report = |unreported: &mut u64, now_ns: u64| {
                progress.received.fetch_add(std::mem::take(unreported), Ordering::Relaxed);
                progress.last_receive_ns.fetch_max(now_ns, Ordering::Relaxed);
            };
            while got < expected_each {
                match reader.next() {
                    Ok(Some(event)) => {
                        got += 1;
                        unreported += 1;
                        if let Some(h) = hist.as_mut() {
                            let now_ns = origin.elapsed().as_nanos() as u64;
                            if let Some(sent) = read_stamp(event.body) {
                                let _ = h.record(now_ns.saturating_sub(sent).max(1));
                            }
                            report(&mut unreported, now_ns);
                            last_progress = Instant::now();
                        } else if unreported == PROGRESS_EVERY || got == expected_each {
                            report(&mut unreported, origin.elapsed().as_nanos() as u64);
                            last_progress = Instant::now();
                        }
                    }
                    Ok(None) => break,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        // The read timed out, so whatever was left unreported
                        // arrived before now: report it with the time of the
                        // last report (at most PROGRESS_EVERY events earlier).
                        if unreported > 0 {
                            let at = progress.last_receive_ns.load(Ordering::Relaxed);
                            report(&mut unreported, at);
                        }
                        // Publishing starts after every subscriber is up, so
                        // the idle clock only runs once events have flowed.
                        if got > 0 && last_progress.elapsed() >= idle {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("subscriber {i}: {e}");
                        break;
                    }
                }
            }
            report(&mut unreported, progress.last_receive_ns.load(Ordering::Relaxed));
            hist
        }));
    }
    Ok(Subscribers { progress, threads, _conns: conns })
}

impl Subscribers {
    /// Wait until every thread got its events or went idle; the merged histogram.
    fn finish(self, published_by: Instant, idle: Duration) -> Option<Histogram<u64>> {
        let mut merged: Option<Histogram<u64>> = None;
        // A subscriber that never got anything would wait forever: give up
        // `idle` after the last publish.
        while self.threads.iter().any(|t| !t.is_finished()) {
            if self.progress.received.load(Ordering::Relaxed) == 0 && published_by.elapsed() >= idle {
                eprintln!("no event received within {:.1} s of the last publish", idle.as_secs_f64());
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.threads {
            if let Ok(Some(h)) = t.join() {
                match merged.as_mut() {
                    Some(m) => {
                        let _ = m.add(&h);
                    }
                    None => merged = Some(h),
                }
            }
        }
        merged
    }
}

/// The bus gives no SUB acknowledgement: publish on a side topic until one
/// event comes back on a probe subscriber connected after the others.
/// Since SUBs on one connection are applied in order and connections are
/// served in turn, this is a barrier for the subscriptions made before.
fn bus_barrier(target: &Target) -> anyhow::Result<()> {
    if !matches!(target, Target::Bus(_)) {
        return Ok(());
    }
    let mut probe = target.connect("bench-barrier")?;
    probe.subscribe("bench.barrier")?;
    probe.flush()?;
    let mut reader = probe.take_reader();
    reader.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut publisher = target.connect("bench-barrier-pub")?;
    for _ in 0..500 {
        publisher.publish("bench.barrier", b"{}")?;
        publisher.flush()?;
        match reader.next() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => anyhow::bail!("the bus closed the barrier connection"),
            Err(_) => continue,
        }
    }
    anyhow::bail!("the bus never delivered a barrier event")
}

pub fn throughput_run(target: &Target, args: &BenchArgs) -> anyhow::Result<Report> {
    let origin = Instant::now();
    let subs = start_subscribers(target, args, origin, args.msgs, false)?;
    bus_barrier(target)?;
    let template = BodyTemplate::new(args.size as usize);
    let body = Arc::new(template.bytes);

    let mut publishers = Vec::new();
    for i in 0..args.pubs {
        publishers.push(target.connect(&format!("bench-pub-{i}"))?);
    }
    let share = args.msgs / u64::from(args.pubs);
    let extra = args.msgs % u64::from(args.pubs);
    let start = Instant::now();
    let mut threads = Vec::new();
    for (i, mut conn) in publishers.into_iter().enumerate() {
        let count = share + u64::from((i as u64) < extra);
        let topic = args.topic.clone();
        let body = body.clone();
        threads.push(std::thread::spawn(move || -> anyhow::Result<Conn> {
            for _ in 0..count {
                conn.publish(&topic, &body)?;
            }
            conn.sync()?;
            Ok(conn)
        }));
    }
    let mut done = Vec::new();
    for t in threads {
        done.push(t.join().map_err(|_| anyhow::anyhow!("publisher thread panicked"))??);
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let published_by = Instant::now();

    let progress = subs.progress.clone();
    let expected = args.msgs * u64::from(args.subs);
    subs.finish(published_by, Duration::from_secs_f64(args.idle_timeout_secs));
    drop(done);
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

pub fn latency_run(target: &Target, args: &BenchArgs, rate: u64) -> anyhow::Result<Report> {
    let origin = Instant::now();
    let total = (rate as f64 * args.secs).round().max(1.0) as u64;
    let subs = start_subscribers(target, args, origin, total, true)?;
    bus_barrier(target)?;
    let mut publisher = target.connect("bench-pub-0")?;
    let mut template = BodyTemplate::new(args.size as usize);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    args.pace.prepare_thread();
    let start = Instant::now();
    for i in 0..total {
        // Fixed due times: an event sent late does not push the next ones.
        let due = start + interval.mul_f64(i as f64);
        wait_until(due, args.pace);
        template.stamp(origin.elapsed().as_nanos() as u64);
        publisher.publish(&args.topic, &template.bytes)?;
        // Blocking publisher: every event leaves on its own write.
        publisher.flush()?;
    }
    publisher.sync()?;
    let publish_secs = start.elapsed().as_secs_f64();
    let published_by = Instant::now();

    let progress = subs.progress.clone();
    let expected = total * u64::from(args.subs);
    let latency = subs.finish(published_by, Duration::from_secs_f64(args.idle_timeout_secs));
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

/// How the latency publisher waits for each event's due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// Sleep until due (timer slack 1 ns), the way a worker that publishes
    /// an event now and then waits: the publisher takes almost no CPU, so
    /// on a 2-core machine it does not compete with the server and the
    /// subscriber.
    Sleep,
    /// Sleep most of the wait and spin the last 200 µs: exact pacing, but
    /// at 20 k/s (a 50 µs interval) the publisher spins all the time and
    /// holds a whole core, and on a 2-core host the server and subscriber
    /// then share the other one (the p99 becomes the scheduler's tick).
    Spin,
}

impl Pace {
    /// Set up the calling (publisher) thread for this pacing.
    pub fn prepare_thread(self) {
        if self == Pace::Sleep {
            // Linux lets a sleep end up to the thread's timer slack (50 µs
            // by default) late: at 20 k/s that is a whole interval. With
            // 1 ns of slack a sleep ends within the machine's wake-up latency.
            let _ = nix::sys::prctl::set_timerslack(1);
        }
    }
}

pub fn wait_until(due: Instant, pace: Pace) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        match pace {
            Pace::Sleep => std::thread::sleep(left),
            Pace::Spin if left > Duration::from_micros(200) => std::thread::sleep(left - Duration::from_micros(150)),
            Pace::Spin => std::hint::spin_loop(),
        }
    }
}

/// Connections holding patterns that never match `--topic` (they live
/// under `idle.`), to show what a large subscription table costs a publish.
pub fn open_idle_subscriptions(target: &Target, args: &BenchArgs) -> anyhow::Result<Vec<Conn>> {
    let mut held = Vec::new();
    for c in 0..args.idle_subs_conns {
        let mut conn = target.connect(&format!("bench-idle-{c}"))?;
        for p in 0..args.idle_subs_per_conn {
            // A mix of literal and wildcard patterns, like a real fleet.
            let pattern = match p % 4 {
                0 => format!("idle.c{c}.p{p}.*"),
                1 => format!("idle.c{c}.p{p}.>"),
                _ => format!("idle.c{c}.p{p}"),
            };
            conn.subscribe(&pattern)?;
        }
        conn.sync()?;
        held.push(conn);
    }
    if args.idle_subs_conns > 0 {
        bus_barrier(target)?;
        eprintln!("holding {} idle subscriptions", args.idle_subs_conns * args.idle_subs_per_conn);
    }
    Ok(held)
}

pub fn hold_idle_connections(target: &Target, n: u32, hold_secs: f64) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut c = target.connect(&format!("bench-idle-{i}"))?;
        c.flush()?;
        conns.push(c);
    }
    // The compare script waits for this line before reading the daemon's RSS.
    println!("holding {n} idle connections");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if hold_secs > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(hold_secs));
    } else {
        loop {
            std::thread::sleep(Duration::from_secs(3600)); // until killed
        }
    }
    Ok(())
}

/// The daemon's `dropped` counter, read from its `system.bus.health`
/// heartbeats by a thread on a raw connection.
pub struct HealthWatch {
    latest: Arc<Mutex<Option<(Instant, u64)>>>,
    wait: Duration,
}

impl HealthWatch {
    pub fn start(target: &Target, wait_secs: f64) -> anyhow::Result<HealthWatch> {
        let mut conn = target.connect("bench-health")?;
        conn.subscribe("system.bus.health")?;
        conn.flush()?;
        let mut reader = conn.take_reader();
        let latest = Arc::new(Mutex::new(None));
        let sink = latest.clone();
        std::thread::spawn(move || {
            let _keep = conn;
            while let Ok(Some(event)) = reader.next() {
                let dropped = serde_json::from_slice::<serde_json::Value>(event.body)
                    .ok()
                    .and_then(|v| v["payload"]["dropped"].as_u64());
                if let Some(d) = dropped {
                    *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), d));
                }
            }
        });
        Ok(HealthWatch { latest, wait: Duration::from_secs_f64(wait_secs.max(0.0)) })
    }

    /// The drop counter from a heartbeat received after `after` (any, if
    /// `None`), waiting up to the configured time for one.
    pub fn wait_newer_than(&self, after: Option<Instant>) -> Option<u64> {
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
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Run the configured workload and print its report.
pub fn run(args: &BenchArgs, target: &Target) -> anyhow::Result<()> {
    if let Some(n) = args.idle_conns {
        return hold_idle_connections(target, n, args.hold_secs);
    }
    anyhow::ensure!(args.subs > 0, "--subs must be at least 1 (nothing would measure delivery)");
    let _idle = open_idle_subscriptions(target, args).context("opening the idle subscriptions")?;
    let health = match target {
        Target::Bus(_) => Some(HealthWatch::start(target, args.health_wait_secs)?),
        Target::Nats(_) => None,
    };
    let drops_before = health.as_ref().and_then(|h| h.wait_newer_than(None));
    let report = match args.rate {
        Some(rate) => latency_run(target, args, rate)?,
        None => throughput_run(target, args)?,
    };
    let run_end = Instant::now();
    let drops_after = health.as_ref().and_then(|h| h.wait_newer_than(Some(run_end)));
    let drops = match (drops_before, drops_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    report.print(target, args, drops);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_size_and_a_readable_stamp() {
        for size in [64usize, 128, 1000] {
            let mut t = BodyTemplate::new(size);
            assert_eq!(t.bytes.len(), size);
            t.stamp(1_234_567);
            let v: serde_json::Value = serde_json::from_slice(&t.bytes).unwrap();
            assert_eq!(v["payload"]["t"], "00000000000001234567");
            assert_eq!(read_stamp(&t.bytes), Some(1_234_567));
        }
        assert_eq!(read_stamp(b"{\"t\":\"12x\"}"), None);
    }
}
