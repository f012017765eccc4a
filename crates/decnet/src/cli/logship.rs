//! `decnet listener` and `decnet forwarder`: log shipping over mutual TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::sdk::HealthExtra;
use tokio_util::sync::CancellationToken;

use crate::metrics::{catalogue, NamedCounters};

use crate::logship::{forwarder, listener, tls};

#[derive(Debug, clap::Args)]
pub struct ListenerArgs {
    /// Address to accept forwarders on (6514 is syslog over TLS).
    #[arg(long, env = "DECNET_LISTENER_ADDR", default_value = "0.0.0.0:6514")]
    pub listen: SocketAddr,
    /// CA certificate forwarders' certificates must chain to. Default: $DECNET_HOME/ca/ca.pem.
    #[arg(long, env = "DECNET_LISTENER_CA")]
    pub ca: Option<PathBuf>,
    /// Listener certificate. Default: $DECNET_HOME/ca/master.pem.
    #[arg(long, env = "DECNET_LISTENER_CERT")]
    pub cert: Option<PathBuf>,
    /// Listener key. Default: $DECNET_HOME/ca/master.key.
    #[arg(long, env = "DECNET_LISTENER_KEY")]
    pub key: Option<PathBuf>,
    /// Revocation list (`decnet ca revoke` writes it); re-read whenever it
    /// changes, checked at every connection; none while the file is
    /// missing. Default: crl.pem beside the --ca certificate.
    #[arg(long, env = "DECNET_LISTENER_CRL")]
    pub crl: Option<PathBuf>,
    /// Folder for master.log and master.json. Default: $DECNET_HOME.
    #[arg(long, env = "DECNET_LISTENER_OUT")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub heartbeat: HeartbeatArgs,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

/// The shipping pair's heartbeat on the local bus (when one runs there).
#[derive(Debug, clap::Args)]
pub struct HeartbeatArgs {
    /// Seconds between `system.<listener|forwarder>.health` heartbeats on
    /// the local bus (its counters; nothing is sent while no bus runs).
    #[arg(long, default_value_t = 30.0)]
    pub heartbeat_secs: f64,
}

impl HeartbeatArgs {
    /// Heartbeat as `worker` with `extra` until `shutdown`.
    fn spawn(&self, worker: &'static str, extra: HealthExtra, shutdown: CancellationToken) -> anyhow::Result<()> {
        if !(self.heartbeat_secs.is_finite() && self.heartbeat_secs > 0.0) {
            anyhow::bail!("--heartbeat-secs must be a positive number of seconds");
        }
        let bus = decnet_bus::sdk::get_bus(worker)?;
        let every = Duration::from_secs_f64(self.heartbeat_secs);
        tokio::spawn(async move {
            let _ = decnet_bus::sdk::run_health_heartbeat(bus.clone(), worker, every, Some(extra), shutdown).await;
            bus.close().await;
        });
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct ForwarderArgs {
    /// The master's listener, HOST:PORT.
    #[arg(long, env = "DECNET_FORWARDER_MASTER")]
    pub master: String,
    /// Name the listener's certificate must carry. Default: the host part of --master.
    #[arg(long, env = "DECNET_FORWARDER_SERVER_NAME")]
    pub server_name: Option<String>,
    /// CA certificate. Default: $DECNET_HOME/ca/ca.pem.
    #[arg(long, env = "DECNET_FORWARDER_CA")]
    pub ca: Option<PathBuf>,
    /// This host's certificate (its CN tags the shipped lines).
    #[arg(long, env = "DECNET_FORWARDER_CERT")]
    pub cert: PathBuf,
    /// This host's key.
    #[arg(long, env = "DECNET_FORWARDER_KEY")]
    pub key: PathBuf,
    /// Log to ship. Default: DECNET_INGEST_LOG_FILE, else $DECNET_HOME/ingest.log.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Where the acknowledged cursor is kept. Default: $DECNET_HOME/forwarder.state.
    #[arg(long, env = "DECNET_FORWARDER_STATE")]
    pub state: Option<PathBuf>,
    /// Longest wait between attempts to reach a listener that refuses or
    /// is down, in seconds (waits start at 0.5 s and double, ±20% jitter).
    #[arg(long, env = "DECNET_FORWARDER_RETRY_MAX_SECS", default_value_t = forwarder::RETRY_MAX.as_secs_f64())]
    pub retry_max_secs: f64,
    #[command(flatten)]
    pub heartbeat: HeartbeatArgs,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

fn ca_file(name: &str) -> PathBuf {
    crate::logship::ca::default_dir().join(name)
}

pub async fn run_listener(args: ListenerArgs) -> anyhow::Result<()> {
    let ca = args.ca.unwrap_or_else(|| ca_file("ca.pem"));
    let crl = args.crl.unwrap_or_else(|| ca.with_file_name(crate::logship::ca::CRL));
    let config = tls::server_config(
        &ca,
        &args.cert.unwrap_or_else(|| ca_file("master.pem")),
        &args.key.unwrap_or_else(|| ca_file("master.key")),
        &crl,
    )?;
    let out = args.out.unwrap_or_else(crate::home::decnet_home);
    let shutdown = CancellationToken::new();
    super::bus::spawn_signal_handler(&shutdown)?;
    let stats = Arc::new(NamedCounters::new(listener::STAT_NAMES));
    let fields = stats.clone();
    let fields: crate::metrics::Fields = Arc::new(move || fields.snapshot());
    crate::metrics::serve_worker(&args.metrics, &catalogue::LISTENER, fields.clone(), shutdown.clone()).await?;
    args.heartbeat.spawn("listener", Arc::new(move || Ok(fields())), shutdown.clone())?;
    listener::run(listener::ListenerConfig { listen: args.listen, tls: config, out, stats }, shutdown).await
}

pub async fn run_forwarder(args: ForwarderArgs) -> anyhow::Result<()> {
    let tls = tls::client_config(&args.ca.unwrap_or_else(|| ca_file("ca.pem")), &args.cert, &args.key)?;
    let server_name = match args.server_name {
        Some(n) => n,
        None => match args.master.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            None => anyhow::bail!("--master must be HOST:PORT"),
        },
    };
    let log = args.log.unwrap_or_else(crate::events::default_ingest_log_path);
    let state = args.state.unwrap_or_else(|| crate::home::decnet_home().join("forwarder.state"));
    let shutdown = CancellationToken::new();
    super::bus::spawn_signal_handler(&shutdown)?;
    if !(args.retry_max_secs.is_finite() && args.retry_max_secs >= 0.5) {
        anyhow::bail!("--retry-max-secs must be at least 0.5 (got {})", args.retry_max_secs);
    }
    let retry_max = std::time::Duration::from_secs_f64(args.retry_max_secs);
    let stats = Arc::new(forwarder::ForwarderStats::default());
    let (fields_stats, fields_log) = (stats.clone(), log.clone());
    let fields: crate::metrics::Fields = Arc::new(move || fields_stats.health(&fields_log));
    crate::metrics::serve_worker(&args.metrics, &catalogue::FORWARDER, fields.clone(), shutdown.clone()).await?;
    args.heartbeat.spawn("forwarder", Arc::new(move || Ok(fields())), shutdown.clone())?;
    let config = forwarder::ForwarderConfig {
        master: args.master,
        server_name,
        tls,
        log,
        state,
        retry_first: forwarder::RETRY_FIRST,
        retry_max,
        stats,
    };
    forwarder::run(config, shutdown).await
}
