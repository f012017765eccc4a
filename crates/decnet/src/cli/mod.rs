//! The `decnet` command line: one subcommand per file in this folder.
//!
//! Every subcommand is an async function returning `anyhow::Result<()>`;
//! [`run`] owns the runtime, logging and the mapping of errors to a
//! message on stderr and a non-zero exit code.

pub mod correlate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    /// Fold the ingest log's mutation events per decky and check every chain is unbroken.
    Correlate(correlate::CorrelateArgs),
}

/// Log to stderr; `RUST_LOG` (e.g. `debug`, `decnet_bus=trace`) overrides the default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
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
            Command::Correlate(args) => correlate::run(args).await,
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
