//! `decnet sniffer`: the passive fingerprinting worker (heartbeat and
//! control as `sniffer`). See `crate::sniffer` for what it extracts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::sniffer::worker::{parse_decky, SnifferConfig, Stats};

#[derive(Debug, clap::Args)]
pub struct SnifferArgs {
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
    /// Interface to capture on.
    #[arg(long, short = 'i', env = "DECNET_SNIFFER_INTERFACE", default_value = "lo")]
    pub interface: String,
    /// A decky to watch, as NAME=ADDRESS (repeatable). Deployed deckies with
    /// an address in the database are watched too.
    #[arg(long = "decky", env = "DECNET_SNIFFER_DECKIES", value_delimiter = ',')]
    pub deckies: Vec<String>,
    /// SQLite database (default: `$DECNET_HOME/decnet.db`).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// RFC 5424 ingest log (default: `$DECNET_HOME/ingest.log`).
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// One event per (attacker, type, fingerprint) per this many seconds.
    #[arg(long, env = "DECNET_SNIFFER_DEDUP_SECS", default_value_t = 300)]
    pub dedup_secs: u64,
    /// Seconds between re-reads of the decky addresses from the database.
    #[arg(long, env = "DECNET_SNIFFER_REFRESH_SECS", default_value_t = 10)]
    pub refresh_secs: u64,
}

pub async fn run(args: SnifferArgs) -> anyhow::Result<()> {
    let deckies = args
        .deckies
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_decky(s.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = SnifferConfig {
        interface: args.interface,
        deckies,
        db_path: Some(args.db.unwrap_or_else(crate::store::default_db_path)),
        log_path: args.ingest_log.unwrap_or_else(crate::events::default_ingest_log_path),
        dedup_window: Duration::from_secs(args.dedup_secs),
        refresh: Duration::from_secs(args.refresh_secs.max(1)),
    };
    let stats = Arc::new(Stats::default());
    let health = stats.clone();
    let fields = stats.clone();
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let _stop_metrics = metrics_stop.clone().drop_guard();
    crate::metrics::serve_worker(
        &args.metrics,
        &crate::metrics::catalogue::SNIFFER,
        Arc::new(move || fields.health()),
        metrics_stop,
    )
    .await?;
    decnet_bus::sdk::Worker::new("sniffer")
        .health_extra(move || Ok(health.health()))
        .run(|ctx| async move { crate::sniffer::worker::run(config, ctx.bus, stats, ctx.shutdown).await })
        .await?
}
