//! The collector: hears every decky (and anything else that speaks
//! syslog), keeps the raw record, and turns each line into the parsed
//! record the rest of decnet works from.
//!
//! ```text
//! UDP ────┐                      ┌─ raw line   → ingest log   (everything)
//! TCP ────┼─ bounded queue ─ pipeline ─ record → <log>.json   (parsed, not noise, not dup)
//! docker ─┘                      └─ system.log / attacker.session.ended → bus
//! ```
//!
//! One concern per file: [`receiver_udp`], [`receiver_tcp`] (framing and
//! connection limits), [`docker`] (labelled containers' output), [`parse`], [`noise`], [`dedup`], [`sessions`],
//! [`writer`], [`publisher`], [`pipeline`] (the glue), [`stats`]. The
//! ingester (tailing `<log>.json` into SQLite) is [`crate::ingest`].
//!
//! Why files in between and not a direct insert: the collector must keep
//! hearing deckies while the database is busy, migrating or down, and a
//! file is the buffer that survives a restart of either side; the ingester
//! resumes from its cursor.

pub mod dedup;
pub mod docker;
pub mod noise;
pub mod parse;
pub mod pipeline;
pub mod publisher;
pub mod receiver_tcp;
pub mod receiver_udp;
pub mod sessions;
pub mod stats;
pub mod writer;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use decnet_bus::Bus;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use parse::{parse_record, Record};
pub use stats::Stats;

/// The collector's default listen address (UDP and TCP).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5514";
/// Longest line accepted; longer ones are skipped and counted.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// One framed line from a receiver.
#[derive(Debug)]
pub struct Incoming {
    /// The sender's address (for per-source drop counters).
    pub source: IpAddr,
    pub line: Bytes,
    /// A place in the Docker source's share of the queue, given back when
    /// the pipeline drops the line (see [`docker`]); `None` for UDP/TCP.
    pub share: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Incoming {
    pub fn new(source: IpAddr, line: Bytes) -> Incoming {
        Incoming { source, line, share: None }
    }
}

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// UDP and TCP listen on this address (port 0: one free port for both).
    pub listen: SocketAddr,
    pub udp: bool,
    pub tcp: bool,
    /// The raw ingest log; records go to `<ingest_log>.json`.
    pub ingest_log: PathBuf,
    pub noise_apps: Vec<String>,
    pub max_line: usize,
    /// Lines the queue between receivers and the pipeline holds.
    pub queue: usize,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub idle_timeout: Duration,
    /// Read labelled containers' output from this Docker daemon (`None`: off).
    pub docker: Option<docker::DockerConfig>,
}

impl CollectorConfig {
    pub fn new(listen: SocketAddr, ingest_log: PathBuf) -> Self {
        CollectorConfig {
            listen,
            udp: true,
            tcp: true,
            ingest_log,
            noise_apps: noise::DEFAULT_NOISE_APPS.iter().map(|s| s.to_string()).collect(),
            max_line: DEFAULT_MAX_LINE,
            queue: 8192,
            max_connections: 1024,
            max_connections_per_source: 256,
            idle_timeout: Duration::from_secs(600),
            docker: None,
        }
    }
}

/// A started collector.
pub struct Collector {
    pub stats: Arc<Stats>,
    pub tcp_addr: Option<SocketAddr>,
    pub udp_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pipeline: Option<std::thread::JoinHandle<()>>,
}

/// Bind both sockets on one port; with port 0, retry a few free TCP ports
/// until the same UDP port is free too.
async fn bind(config: &CollectorConfig) -> std::io::Result<(Option<TcpListener>, Option<UdpSocket>)> {
    let mut last_err = None;
    for _ in 0..if config.listen.port() == 0 { 20 } else { 1 } {
        let tcp = match config.tcp {
            true => Some(TcpListener::bind(config.listen).await?),
            false => None,
        };
        let addr = match &tcp {
            Some(l) => l.local_addr()?,
            None => config.listen,
        };
        if !config.udp {
            return Ok((tcp, None));
        }
        match UdpSocket::bind(addr).await {
            Ok(udp) => return Ok((tcp, Some(udp))),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port")))
}

impl Collector {
    /// Bind and start receiving; runs until `shutdown`, then [`Collector::wait`].
    pub async fn start(
        config: CollectorConfig,
        bus: Option<Arc<dyn Bus>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Collector> {
        if config.max_line == 0 || config.queue == 0 {
            anyhow::bail!("--max-line-bytes and --queue must be positive");
        }
        let (tcp, udp) = bind(&config)
            .await
            .map_err(|e| anyhow::anyhow!("collector cannot listen on {}: {e} (use --listen)", config.listen))?;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = tokio::sync::mpsc::channel(config.queue);
        let pipeline = pipeline::Pipeline {
            raw: writer::RotatingFile::new(&config.ingest_log),
            json: writer::RotatingFile::new(writer::json_log_path(&config.ingest_log)),
            noise: noise::NoiseFilter::new(&config.noise_apps),
            dedup: dedup::Dedup::default(),
            sessions: sessions::Sessions::new(),
            publisher: publisher::Publisher::new(bus),
            stats: stats.clone(),
        };
        let pipeline = std::thread::Builder::new().name("collector-pipeline".into()).spawn(move || pipeline.run(rx))?;
        let mut tasks = Vec::new();
        let tcp_addr = tcp.as_ref().map(|l| l.local_addr()).transpose()?;
        let udp_addr = udp.as_ref().map(|s| s.local_addr()).transpose()?;
        if let Some(listener) = tcp {
            let limits = receiver_tcp::TcpLimits {
                max_line: config.max_line,
                max_connections: config.max_connections.max(1),
                max_per_source: config.max_connections_per_source.max(1),
                idle: config.idle_timeout,
            };
            tasks.push(tokio::spawn(receiver_tcp::run(listener, limits, tx.clone(), stats.clone(), shutdown.clone())));
        }
        if let Some(socket) = udp {
            tasks.push(tokio::spawn(receiver_udp::run(
                socket,
                config.max_line,
                tx.clone(),
                stats.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(docker) = config.docker.clone() {
            tasks.push(tokio::spawn(docker::run(
                docker,
                tx.clone(),
                config.queue,
                config.max_line,
                stats.clone(),
                shutdown,
            )));
        }
        drop(tx);
        tracing::info!(
            tcp = ?tcp_addr, udp = ?udp_addr, log = %config.ingest_log.display(),
            "collector listening"
        );
        Ok(Collector { stats, tcp_addr, udp_addr, tasks, pipeline: Some(pipeline) })
    }

    /// Wait for the receivers to stop (after shutdown) and the pipeline to
    /// write what they handed over.
    pub async fn wait(mut self) {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(p) = self.pipeline.take() {
            let _ = tokio::task::spawn_blocking(move || p.join()).await;
        }
    }
}
