//! `decnet-bench floor`: the latency this machine gives *any* server.
//!
//! The latency workload's event crosses two wake-ups: the publisher's write
//! wakes the server, the server's write wakes the subscriber. On a VM each
//! wake-up of a sleeping thread costs tens of microseconds and now and then
//! much more (an idle vCPU has to be scheduled by the host), whatever the
//! server does. This mode measures exactly that with no server at all: a
//! publisher paced as in `--rate` mode writes an 8-byte stamp into a UNIX
//! socket pair, `--hops - 1` relay threads copy it on (blocking read, write),
//! and a subscriber thread records stamp→receive time. `--hops 2` is the
//! path through a server; a server's p99 can only be judged against it.

use anyhow::Context;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::load::{new_histogram, wait_until, Pace};

#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Events per second, as `--rate`.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    /// How long to publish.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Wake-ups per event: 2 is publisher → server → subscriber.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub hops: u32,
    /// How the publisher waits between events (as for `--rate`).
    #[arg(long, value_enum, default_value_t = Pace::Sleep)]
    pub pace: Pace,
}

pub fn run(args: &FloorArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs.is_finite() && args.secs > 0.0, "--secs must be a positive number of seconds");
    let total = (args.rate as f64 * args.secs).round().max(1.0) as u64;
    let origin = Instant::now();
    let (mut publisher, mut downstream) = UnixStream::pair().context("socket pair")?;
    let mut relays = Vec::new();
    for _ in 1..args.hops {
        let (into_next, next_end) = UnixStream::pair().context("socket pair")?;
        let mut from = downstream;
        let mut to = into_next;
        relays.push(std::thread::spawn(move || {
            let mut stamp = [0u8; 8];
            // Ends when the publisher's side closes.
            while from.read_exact(&mut stamp).is_ok() && to.write_all(&stamp).is_ok() {}
        }));
        downstream = next_end;
    }
    let mut subscriber = downstream;
    subscriber.set_read_timeout(Some(Duration::from_secs(5)))?;
    let receiver = std::thread::spawn(move || -> anyhow::Result<hdrhistogram::Histogram<u64>> {
        let mut hist = new_histogram();
        let mut stamp = [0u8; 8];
        for _ in 0..total {
            subscriber.read_exact(&mut stamp).context("subscriber read")?;
            let now = origin.elapsed().as_nanos() as u64;
            let _ = hist.record(now.saturating_sub(u64::from_le_bytes(stamp)).max(1));
        }
        Ok(hist)
    });
    args.pace.prepare_thread();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = Instant::now();
    for i in 0..total {
        wait_until(start + interval.mul_f64(i as f64), args.pace);
        let now = origin.elapsed().as_nanos() as u64;
        publisher.write_all(&now.to_le_bytes()).context("publisher write")?;
    }
    let hist = receiver.join().map_err(|_| anyhow::anyhow!("subscriber thread panicked"))??;
    drop(publisher);
    for r in relays {
        let _ = r.join();
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let max = hist.max() as f64 / 1000.0;
    println!(
        "floor: {} hops, no server, {} events/s for {} s: p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
        args.hops,
        args.rate,
        args.secs,
        us(0.5),
        us(0.99),
        us(0.999),
        max
    );
    println!(
        "summary target=floor mode=latency hops={} samples={} pace={} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
        args.hops,
        hist.len(),
        format!("{:?}", args.pace).to_lowercase(),
        us(0.5),
        us(0.99),
        us(0.999),
        max
    );
    Ok(())
}
