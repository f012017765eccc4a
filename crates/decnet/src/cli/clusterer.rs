//! `decnet clusterer`: link attackers sharing a strong fingerprint into identities.

use std::path::PathBuf;
use std::time::Duration;

use crate::clusterer::{run as run_clusterer, ClustererConfig};

#[derive(Debug, clap::Args)]
pub struct ClustererArgs {
    /// SQLite database (default: `$DECNET_HOME/decnet.db`).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// Bus socket (default as for `decnet bus`).
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Seconds between clustering passes.
    #[arg(long, env = "DECNET_CLUSTERER_INTERVAL_SECS", default_value_t = 5.0)]
    pub interval_secs: f64,
    /// Seconds between `system.clusterer.health` heartbeats.
    #[arg(long, env = "DECNET_CLUSTERER_HEARTBEAT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

pub async fn run(args: ClustererArgs) -> anyhow::Result<()> {
    if !(args.interval_secs.is_finite() && (0.05..=3600.0).contains(&args.interval_secs)) {
        anyhow::bail!("--interval-secs must be between 0.05 and 3600, got {}", args.interval_secs);
    }
    run_clusterer(ClustererConfig {
        db_path: args.db.unwrap_or_else(crate::store::default_db_path),
        socket_path: decnet_bus::paths::resolve_socket_path(args.socket.as_deref()),
        interval: Duration::from_secs_f64(args.interval_secs),
        heartbeat: Duration::from_secs(args.heartbeat_secs),
        metrics: args.metrics,
    })
    .await
}
