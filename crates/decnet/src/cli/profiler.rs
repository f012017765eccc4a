//! `decnet profiler`: fold the collector's `logs` into attacker profiles.

use std::path::PathBuf;
use std::time::Duration;

use crate::profiler::{run as run_profiler, ProfilerConfig};

#[derive(Debug, clap::Args)]
pub struct ProfilerArgs {
    /// SQLite database (default: `$DECNET_HOME/decnet.db`).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// Bus socket (default as for `decnet bus`).
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Ingest log the `traversal_detected` lines are appended to
    /// (default: `$DECNET_HOME/ingest.log`).
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// Pause between passes once caught up, in milliseconds.
    #[arg(long, env = "DECNET_PROFILER_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,
    /// Seconds between `system.profiler.health` heartbeats.
    #[arg(long, env = "DECNET_PROFILER_HEARTBEAT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

pub async fn run(args: ProfilerArgs) -> anyhow::Result<()> {
    run_profiler(ProfilerConfig {
        db_path: args.db.unwrap_or_else(crate::store::default_db_path),
        socket_path: decnet_bus::paths::resolve_socket_path(args.socket.as_deref()),
        log_path: args.ingest_log.unwrap_or_else(crate::events::default_ingest_log_path),
        poll: Duration::from_millis(args.poll_ms),
        heartbeat: Duration::from_secs(args.heartbeat_secs),
        metrics: args.metrics,
    })
    .await
}
