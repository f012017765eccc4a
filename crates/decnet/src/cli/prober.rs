//! `decnet prober`: the active fingerprinting worker (heartbeat and
//! control as `prober`). See `crate::prober` for what it does and why.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::prober::policy::Policy;
use crate::prober::worker::{ProberConfig, Stats};
use crate::prober::{Probe, PROBE_TIMEOUT};

#[derive(Debug, clap::Args)]
pub struct ProberArgs {
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
    /// SQLite database: attackers are read from it at start, fingerprints stored in it
    /// (default: `$DECNET_HOME/decnet.db`).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// RFC 5424 ingest log the fingerprints are appended to (default: `$DECNET_HOME/ingest.log`).
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// Networks that may be probed (CIDR or address, repeatable or comma-separated).
    /// Default: loopback only.
    #[arg(long, env = "DECNET_PROBER_ALLOW", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Networks never probed; wins over --allow.
    #[arg(long, env = "DECNET_PROBER_DENY", value_delimiter = ',')]
    pub deny: Vec<String>,
    /// Each (attacker, probe, port) is probed at most once per this many seconds.
    #[arg(long, env = "DECNET_PROBER_PERIOD_SECS", default_value_t = 3600)]
    pub period_secs: u64,
    /// Which probes run (comma-separated).
    #[arg(
        long,
        env = "DECNET_PROBER_PROBES",
        value_enum,
        value_delimiter = ',',
        default_value = "jarm,tls,hassh,tcpfp"
    )]
    pub probes: Vec<Probe>,
    /// Ports JARM runs on.
    #[arg(long, env = "DECNET_PROBER_JARM_PORTS", value_delimiter = ',', default_value = "443,8443")]
    pub jarm_ports: Vec<u16>,
    /// Ports the TLS certificate probe runs on.
    #[arg(long, env = "DECNET_PROBER_TLS_PORTS", value_delimiter = ',', default_value = "443,8443")]
    pub tls_ports: Vec<u16>,
    /// Ports HASSH runs on.
    #[arg(long, env = "DECNET_PROBER_HASSH_PORTS", value_delimiter = ',', default_value = "22,2222")]
    pub hassh_ports: Vec<u16>,
    /// Ports the TCP SYN fingerprint runs on (needs CAP_NET_RAW).
    #[arg(long, env = "DECNET_PROBER_TCPFP_PORTS", value_delimiter = ',', default_value = "22,80,443")]
    pub tcpfp_ports: Vec<u16>,
    /// Probes in flight per attacker.
    #[arg(long, env = "DECNET_PROBER_PER_TARGET_CONCURRENCY", default_value_t = 2)]
    pub per_target_concurrency: usize,
    /// Minimum milliseconds between two probe starts to one attacker.
    #[arg(long, env = "DECNET_PROBER_PER_TARGET_GAP_MS", default_value_t = 250)]
    pub per_target_gap_ms: u64,
    /// Probes in flight in total.
    #[arg(long, env = "DECNET_PROBER_MAX_IN_FLIGHT", default_value_t = 32)]
    pub max_in_flight: usize,
    /// Per-probe timeout in seconds.
    #[arg(long, env = "DECNET_PROBER_TIMEOUT_SECS", default_value_t = PROBE_TIMEOUT.as_secs())]
    pub timeout_secs: u64,
}

pub async fn run(args: ProberArgs) -> anyhow::Result<()> {
    let policy = Policy::parse(&args.allow, &args.deny)?;
    tracing::info!(allow = ?policy.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        deny = ?policy.deny.iter().map(|n| n.to_string()).collect::<Vec<_>>(), "probe policy");
    let config = ProberConfig {
        db_path: Some(args.db.unwrap_or_else(crate::store::default_db_path)),
        log_path: args.ingest_log.unwrap_or_else(crate::events::default_ingest_log_path),
        policy,
        period: Duration::from_secs(args.period_secs.max(1)),
        ports: [
            (Probe::Jarm, args.jarm_ports),
            (Probe::TlsCertificate, args.tls_ports),
            (Probe::Hassh, args.hassh_ports),
            (Probe::Tcpfp, args.tcpfp_ports),
        ]
        .into_iter()
        .filter(|(p, _)| args.probes.contains(p))
        .collect(),
        per_target_concurrency: args.per_target_concurrency,
        per_target_gap: Duration::from_millis(args.per_target_gap_ms),
        max_in_flight: args.max_in_flight,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let stats = Arc::new(Stats::default());
    let health = stats.clone();
    let fields = stats.clone();
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let _stop_metrics = metrics_stop.clone().drop_guard();
    crate::metrics::serve_worker(
        &args.metrics,
        &crate::metrics::catalogue::PROBER,
        Arc::new(move || fields.health()),
        metrics_stop,
    )
    .await?;
    decnet_bus::sdk::Worker::new("prober")
        .health_extra(move || Ok(health.health()))
        .run(|ctx| async move { crate::prober::worker::run(config, ctx.bus, stats, ctx.shutdown).await })
        .await?
}
