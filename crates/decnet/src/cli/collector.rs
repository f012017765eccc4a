//! `decnet collector`: the syslog collector as the `collector` worker
//! (heartbeat with its counters, stop over the bus, SIGTERM).
//!
//! The sockets are bound before the worker announces itself, so a port
//! already in use is a clear error at start instead of a healthy-looking
//! worker that hears nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::sdk::Worker;
use tokio_util::sync::CancellationToken;

use crate::collector::{docker, Collector, CollectorConfig, DEFAULT_LISTEN, DEFAULT_MAX_LINE};

#[derive(Debug, Clone, clap::Args)]
pub struct CollectorArgs {
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
    /// Address for syslog over UDP and TCP (RFC 5424; TCP with RFC 6587
    /// octet counting or LF framing), for network sources.
    #[arg(long, env = "DECNET_COLLECTOR_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The deckies' UNIX socket (mode 0660; lines on it are trusted).
    /// Default: `$DECNET_HOME/collector.sock`.
    #[arg(long, env = "DECNET_COLLECTOR_SOCKET")]
    pub unix_socket: Option<PathBuf>,
    /// Do not open the UNIX socket.
    #[arg(long)]
    pub no_unix: bool,
    /// Network senders the UDP/TCP listener accepts (CIDR or address,
    /// comma-separated or repeated); others are refused and counted.
    #[arg(long, env = "DECNET_COLLECTOR_ALLOW", value_delimiter = ',', default_values_t = ["127.0.0.0/8".to_string(), "::1/128".to_string()])]
    pub allow: Vec<String>,
    /// Network senders trusted to speak for deckies (CIDR or address);
    /// lines from other network senders are stored with
    /// `ingest_trusted=false` and make no attackers. Default: none (the
    /// deckies of this host use the UNIX socket).
    #[arg(long, env = "DECNET_COLLECTOR_TRUST_NETWORK", value_delimiter = ',')]
    pub trust_network: Vec<String>,
    /// Raw ingest log (default: `$DECNET_HOME/ingest.log`); parsed records
    /// go to the same path plus `.json`.
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// APP-NAMEs dropped from the parsed stream (kept in the raw log),
    /// comma-separated; an empty value keeps everything.
    #[arg(long, env = "DECNET_COLLECTOR_NOISE_APPS", value_delimiter = ',',
          default_values_t = crate::collector::noise::DEFAULT_NOISE_APPS.iter().map(|s| s.to_string()))]
    pub noise_apps: Vec<String>,
    /// Longest line accepted, in bytes; longer ones are skipped and counted.
    #[arg(long, env = "DECNET_COLLECTOR_MAX_LINE", default_value_t = DEFAULT_MAX_LINE)]
    pub max_line_bytes: usize,
    /// Lines buffered between the receivers and the writer.
    #[arg(long, env = "DECNET_COLLECTOR_QUEUE", default_value_t = 8192)]
    pub queue: usize,
    /// Bytes buffered between the receivers and the writer, in total.
    #[arg(long, env = "DECNET_COLLECTOR_QUEUE_BYTES", default_value_t = crate::collector::budget::DEFAULT_QUEUE_BYTES)]
    pub queue_bytes: usize,
    /// Bytes of that one sender may hold (its fair share).
    #[arg(long, env = "DECNET_COLLECTOR_QUEUE_BYTES_PER_SOURCE",
          default_value_t = crate::collector::budget::DEFAULT_QUEUE_BYTES_PER_SOURCE)]
    pub queue_bytes_per_source: usize,
    /// Size at which the raw ingest log is rotated (`<log>.1`, …).
    #[arg(long, env = "DECNET_COLLECTOR_RAW_LOG_MAX_BYTES", default_value_t = crate::collector::raw_budget::DEFAULT_MAX_BYTES)]
    pub raw_log_max_bytes: u64,
    /// Rotated raw logs kept (the oldest is deleted).
    #[arg(long, env = "DECNET_COLLECTOR_RAW_LOG_KEEP", default_value_t = crate::collector::raw_budget::DEFAULT_KEEP)]
    pub raw_log_keep: usize,
    /// Open TCP connections allowed in total.
    #[arg(long, env = "DECNET_COLLECTOR_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Open TCP connections allowed from one address.
    #[arg(long, env = "DECNET_COLLECTOR_MAX_CONNECTIONS_PER_SOURCE", default_value_t = 256)]
    pub max_connections_per_source: usize,
    /// Seconds a TCP connection may stay silent before it is closed.
    #[arg(long, env = "DECNET_COLLECTOR_IDLE_SECS", default_value_t = 600.0)]
    pub idle_timeout_secs: f64,
    /// Do not listen on UDP.
    #[arg(long)]
    pub no_udp: bool,
    /// Docker daemon socket for container output (containers labelled
    /// `decnet.fleet.service=true`); default: `DOCKER_HOST=unix://PATH`,
    /// else /var/run/docker.sock. No daemon there: one log line, and the
    /// collector runs on, retrying quietly.
    #[arg(long, env = "DECNET_COLLECTOR_DOCKER_SOCKET")]
    pub docker_socket: Option<PathBuf>,
    /// Do not read container output at all.
    #[arg(long)]
    pub no_docker: bool,
    /// Seconds between listings of labelled containers (new ones are read
    /// from the collector's start, so nothing is lost to the delay).
    #[arg(long, env = "DECNET_COLLECTOR_DOCKER_POLL_SECS", default_value_t = 2.0)]
    pub docker_poll_secs: f64,
    /// Seconds between `system.collector.health` heartbeats.
    #[arg(long, env = "DECNET_COLLECTOR_HEARTBEAT_SECS", default_value_t = 30.0)]
    pub heartbeat_secs: f64,
}

fn secs(flag: &str, v: f64) -> anyhow::Result<Duration> {
    match Duration::try_from_secs_f64(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => anyhow::bail!("{flag} must be a positive number of seconds, got {v}"),
    }
}

impl CollectorArgs {
    pub fn config(&self) -> anyhow::Result<CollectorConfig> {
        let log = self.ingest_log.clone().unwrap_or_else(crate::events::default_ingest_log_path);
        let mut c = CollectorConfig::new(self.listen, log);
        c.udp = !self.no_udp;
        c.unix_socket = match self.no_unix {
            true => None,
            false => Some(self.unix_socket.clone().unwrap_or_else(crate::collector::default_socket_path)),
        };
        let networks = |flag: &str, values: &[String]| -> anyhow::Result<crate::collector::Networks> {
            let nets = values
                .iter()
                .filter(|v| !v.trim().is_empty())
                .map(|v| crate::collector::access::parse_network(v))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
            Ok(crate::collector::Networks(nets))
        };
        c.allow = networks("--allow", &self.allow)?;
        c.trust_networks = networks("--trust-network", &self.trust_network)?;
        c.queue_bytes = self.queue_bytes;
        c.queue_bytes_per_source = self.queue_bytes_per_source;
        anyhow::ensure!(
            self.raw_log_max_bytes > 0 && self.raw_log_keep > 0,
            "--raw-log-max-bytes and --raw-log-keep must be positive"
        );
        c.raw_log_max_bytes = self.raw_log_max_bytes;
        c.raw_log_keep = self.raw_log_keep;
        c.noise_apps = self.noise_apps.clone();
        c.max_line = self.max_line_bytes;
        c.queue = self.queue;
        c.max_connections = self.max_connections;
        c.max_connections_per_source = self.max_connections_per_source;
        c.idle_timeout = secs("--idle-timeout-secs", self.idle_timeout_secs)?;
        let poll = secs("--docker-poll-secs", self.docker_poll_secs)?;
        c.docker = match self.no_docker {
            true => None,
            false => {
                let docker_host = std::env::var("DOCKER_HOST").ok();
                match docker::resolve_socket(self.docker_socket.as_deref(), docker_host.as_deref()) {
                    Ok(socket) => Some(docker::DockerConfig { socket, poll }),
                    Err(e) => {
                        tracing::warn!("docker: {e}; container ingestion off");
                        None
                    }
                }
            }
        };
        Ok(c)
    }
}

pub async fn run(args: CollectorArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let heartbeat = secs("--heartbeat-secs", args.heartbeat_secs)?;
    let bus = decnet_bus::sdk::get_bus("collector")?;
    let stop = CancellationToken::new();
    let collector = Collector::start(config, Some(bus.clone()), stop.clone()).await?;
    let stats = collector.stats.clone();
    let metrics_stats = collector.stats.clone();
    let registry = crate::metrics::worker_registry(
        &crate::metrics::catalogue::COLLECTOR,
        Arc::new(move || metrics_stats.snapshot()),
    );
    crate::metrics::spawn(&args.metrics, registry, stop.clone()).await?;
    Worker::new("collector")
        .heartbeat_interval(heartbeat)
        .bus(bus)
        .health_extra(move || Ok(stats.snapshot()))
        .run(|ctx| async move {
            ctx.shutdown.cancelled().await;
            stop.cancel();
            collector.wait().await;
        })
        .await?;
    Ok(())
}
