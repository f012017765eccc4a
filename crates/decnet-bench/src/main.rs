//! `decnet-bench`: load the decnet bus the way `nats bench` loads NATS,
//! run the identical workload against a nats-server (`--nats URL`), and
//! soak a bus daemon with hostile loads (`decnet-bench soak`) and the API
//! with hostile HTTP (`decnet-bench soak-api`), soak the intelligence
//! pipeline (`decnet-bench soak-ingest`), and measure the machine's
//! own latency floor (`decnet-bench floor`).
//!
//! A separate binary so the production `decnet` binary does not carry a
//! load generator's dependencies (hdrhistogram); `decnet bench` execs this
//! binary with the same arguments. Both protocols are spoken raw (see
//! [`proto`]) so the comparison measures the servers, not two client
//! libraries.

mod floor;
mod load;
mod proto;
mod soak;
mod soak_api;
mod soak_ingest;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "decnet-bench",
    version,
    about = "Load the decnet bus (or, with --nats, a NATS server) and report throughput, latency and drops",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run hostile loads against a running daemon and report its peak
    /// memory and a healthy client's latency under each.
    Soak(soak::SoakArgs),
    /// Run the hostile HTTP loads (wrong-password floods, password
    /// spraying, idle and slow-header connections) against a running
    /// `decnet api` and report its peak memory and threads and a healthy
    /// client's latency under each.
    SoakApi(soak_api::SoakApiArgs),
    /// Run issue 25's hostile loads (amplifying sessions, a stalled
    /// collector, a UDP flood, a slot hog, a forged line) against a
    /// running collector and native deckies, and report their peak memory
    /// and the bytes of log each hostile session cost.
    SoakIngest(soak_ingest::SoakIngestArgs),
    /// Measure this machine's latency floor with no server at all: the
    /// `--rate` workload's two wake-ups (publisher → relay thread →
    /// subscriber) over UNIX socket pairs. A server's p99 is judged
    /// against it.
    Floor(floor::FloorArgs),
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Bus socket to load. Default: as for every decnet command.
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
    /// Latency mode: one blocking publisher (a write and flush per event)
    /// paced at this many events per second.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Latency mode: how the publisher waits between events. `sleep`
    /// takes almost no CPU; `spin` paces exactly but holds a core.
    #[arg(long, value_enum, default_value_t = load::Pace::Sleep)]
    pub pace: load::Pace,
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
    /// Idle mode: how long to hold the connections (0 = until killed).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Soak(args)) => soak::run(&args),
        Some(Command::SoakApi(args)) => soak_api::run(&args),
        Some(Command::SoakIngest(args)) => soak_ingest::run(&args),
        Some(Command::Floor(args)) => floor::run(&args),
        None => run_load(&cli.load),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_load(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs.is_finite() && args.secs > 0.0, "--secs must be a positive number of seconds");
    decnet_bus::topic::validate_topic(&args.topic).map_err(|e| anyhow::anyhow!("--topic: {e}"))?;
    let target = match &args.nats {
        Some(url) => proto::Target::nats(url),
        None => proto::Target::Bus(decnet_bus::paths::resolve_socket_path(args.socket.as_deref())),
    };
    load::run(args, &target)
}
