//! The `decnet` command line: one subcommand per file in this folder.
//!
//! Every subcommand is an async function returning `anyhow::Result<()>`;
//! [`run`] owns the runtime, logging and the mapping of errors to a
//! message on stderr and a non-zero exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod api;
pub mod bench;
pub mod bus;
pub mod ca;
pub mod correlate;
pub mod deploy;
pub mod login;
pub mod logship;
pub mod mutate;
pub mod mutator;
pub mod pubsub;
pub mod teardown;
pub mod up;
pub mod user;
pub mod workers;

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
    /// Run the whole stack locally: bus, API + dashboard, mutator, demo fleet.
    Up(up::UpArgs),
    /// Run the HTTP control plane (worker registry, worker stop/start).
    Api(api::ApiArgs),
    /// Manage control-plane users.
    User(user::UserArgs),
    /// Log in to the API and store the token under $DECNET_HOME.
    Login(login::LoginArgs),
    /// List, stop and start workers through the API.
    Workers(workers::WorkersArgs),
    /// Fold the ingest log's mutation events per decky and check every chain is unbroken.
    Correlate(correlate::CorrelateArgs),
    /// Deploy the deckies of a fleet file and start rotating them.
    Deploy(deploy::DeployArgs),
    /// Tear deckies down (all when none are named).
    Teardown(teardown::TeardownArgs),
    /// Run the mutator: rotate decky services on schedule and on request.
    Mutator(mutator::MutatorArgs),
    /// Ask for deckies to be mutated now (or do it in-process with --now).
    Mutate(mutate::MutateArgs),
    /// Load the bus (or, with --nats, a NATS server) and report throughput, latency and drops.
    Bench(bench::BenchArgs),
    /// Make the log-shipping certificates (`ca init`, `ca issue NAME`).
    Ca(ca::CaArgs),
    /// Receive shipped logs from forwarders (master side, mutual TLS).
    Listener(logship::ListenerArgs),
    /// Ship this host's ingest log to the master's listener.
    Forwarder(logship::ForwarderArgs),
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
    // The bus daemon routes on one thread unless told otherwise (see
    // `decnet bus --threads`); everything else uses the default pool.
    let mut builder = match &cli.command {
        Command::Bus(args) if args.threads == 1 => tokio::runtime::Builder::new_current_thread(),
        Command::Bus(args) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(args.threads.into());
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
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
            Command::Up(args) => up::run(args).await,
            Command::Api(args) => api::run(args).await,
            Command::User(args) => user::run(args).await,
            Command::Login(args) => login::run(args).await,
            Command::Workers(args) => workers::run(args).await,
            Command::Correlate(args) => correlate::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Teardown(args) => teardown::run(args).await,
            Command::Mutator(args) => mutator::run(args).await,
            Command::Mutate(args) => mutate::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Ca(args) => ca::run(args).await,
            Command::Listener(args) => logship::run_listener(args).await,
            Command::Forwarder(args) => logship::run_forwarder(args).await,
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
