//! The `decnet` command line: one subcommand per file in this folder.
//!
//! Every subcommand is an async function returning `anyhow::Result<()>`;
//! [`run`] owns the runtime, logging and the mapping of errors to a
//! message on stderr and a non-zero exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod bench;
pub mod bus;
pub mod pubsub;

#[derive(Debug, Parser)]
#[command(
    name = "decnet",
    version,
    about = "decnet: service bus, control plane and mutator for a honeypot deception network"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bus daemon (UNIX-socket pub/sub broker, one per host).
    Bus(bus::BusArgs),
    /// Publish one event on the bus.
    Pub(pubsub::PubArgs),
    /// Print events matching patterns, one envelope JSON per line.
    Sub(pubsub::SubArgs),
    /// Load the bus (or, with --nats, a NATS server) and report throughput, latency and drops.
    Bench(bench::BenchArgs),
}

/// Log to stderr; `RUST_LOG` (e.g. `debug`, `decnet_bus=trace`) overrides the default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        match cli.command {
            Command::Bus(args) => bus::run(args).await,
            Command::Pub(args) => pubsub::run_pub(args).await,
            Command::Sub(args) => pubsub::run_sub(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
