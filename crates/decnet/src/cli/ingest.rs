//! `decnet ingest`: the ingester on its own (it also runs inside
//! `decnet api`), for hosts where the API runs elsewhere or for tests.

use std::path::PathBuf;
use std::sync::Arc;

use decnet_bus::sdk::Worker;

use crate::ingest::{IngestBus, IngestConfig, IngestStats};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// SQLite database (default: `$DECNET_HOME/decnet.db`).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// The collector's raw ingest log; `<log>.json` is what is read
    /// (default: `$DECNET_HOME/ingest.log`).
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// Milliseconds between looks at the file when it has nothing new.
    #[arg(long, env = "DECNET_INGEST_POLL_MS", default_value_t = 100)]
    pub poll_ms: u64,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

pub fn json_path(ingest_log: Option<PathBuf>) -> PathBuf {
    crate::collector::writer::json_log_path(&ingest_log.unwrap_or_else(crate::events::default_ingest_log_path))
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let pool = crate::store::open(&args.db.unwrap_or_else(crate::store::default_db_path)).await?;
    let mut config = IngestConfig::new(json_path(args.ingest_log));
    config.poll = std::time::Duration::from_millis(args.poll_ms.max(1));
    let stats = Arc::new(IngestStats::default());
    let extra_stats = stats.clone();
    let metrics_stats = stats.clone();
    let registry = crate::metrics::worker_registry(
        &crate::metrics::catalogue::INGESTER,
        Arc::new(move || ingest_extra(&metrics_stats)),
    );
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let _stop_metrics = metrics_stop.clone().drop_guard();
    crate::metrics::spawn(&args.metrics, registry, metrics_stop).await?;
    let result = Worker::new("ingester")
        .health_extra(move || Ok(ingest_extra(&extra_stats)))
        .run(|ctx| async move {
            crate::ingest::run(pool, config, IngestBus::Fixed(ctx.bus.clone()), stats, ctx.shutdown.clone()).await
        })
        .await?;
    result
}

/// The ingester's counters as heartbeat fields.
pub fn ingest_extra(s: &IngestStats) -> serde_json::Map<String, serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("rows", &s.rows),
        ("credentials_new", &s.credentials_new),
        ("artifacts_new", &s.artifacts_new),
        ("recordings_new", &s.recordings_new),
        ("bad_lines", &s.bad_lines),
        ("batches", &s.batches),
        ("conflicts", &s.conflicts),
        ("gaps", &*s.gaps),
        ("lag_bytes", &s.lag_bytes),
    ] {
        m.insert(k.into(), v.load(Relaxed).into());
    }
    m
}
