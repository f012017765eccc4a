//! The collector: hears every decky (and anything else that speaks
//! syslog), keeps the raw record, and turns each line into the parsed
//! record the rest of decnet works from.
//!
//! ```text
//! UNIX ───┐ (deckies, trusted)              ┌─ raw line   → ingest log (rotated at a size)
//! UDP ────┤ (--allow CIDRs)                 │
//! TCP ────┼─ queue bounded in bytes ─ pipeline ─ record → <log>.json   (parsed, tagged, not noise, not dup)
//! docker ─┘   (a fair share per source)     └─ system.log / attacker.session.ended → bus
//! ```
//!
//! One concern per file: [`receiver_unix`], [`receiver_udp`],
//! [`receiver_tcp`] (framing and connection limits), [`docker`] (labelled
//! containers' output), [`access`] (the trust boundary: allowed and trusted
//! senders), [`budget`] (the queue's memory budget), [`parse`], [`noise`],
//! [`dedup`], [`sessions`], [`writer`], [`raw_budget`] (the raw log's disk
//! budget), [`publisher`], [`pipeline`] (the glue), [`stats`]. The ingester
//! (tailing `<log>.json` into SQLite) is [`crate::ingest`].
//!
//! Why files in between and not a direct insert: the collector must keep
//! hearing deckies while the database is busy, migrating or down, and a
//! file is the buffer that survives a restart of either side; the ingester
//! resumes from its cursor.

pub mod access;
pub mod bsd;
pub mod budget;
pub mod dedup;
pub mod docker;
pub mod noise;
pub mod parse;
pub mod pipeline;
pub mod publisher;
pub mod raw_budget;
pub mod receiver_tcp;
pub mod receiver_udp;
pub mod receiver_unix;
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

pub use access::{Networks, Transport};
pub use parse::{parse_record, Record};
pub use stats::Stats;

/// The collector's default listen address (UDP and TCP).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5514";
/// Longest line kept whole; a longer one is cut to this, marked and kept.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// The UNIX socket's file name in `$DECNET_HOME`.
pub const SOCKET_NAME: &str = "collector.sock";
/// The source key of lines from the UNIX socket (they have no address;
/// this keeps their share of the queue apart from every network sender's).
pub const UNIX_SOURCE: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// `$DECNET_HOME/collector.sock`: where deckies ship by default.
pub fn default_socket_path() -> PathBuf {
    crate::home::decnet_home().join(SOCKET_NAME)
}

/// One framed line from a receiver.
#[derive(Debug)]
pub struct Incoming {
    /// The sender's address (for per-source shares and drop counters;
    /// [`UNIX_SOURCE`] and [`docker::SOURCE`] for the local transports).
    pub source: IpAddr,
    pub transport: Transport,
    pub line: Bytes,
    /// A place in the Docker source's share of the queue, given back when
    /// the pipeline drops the line (see [`docker`]); `None` otherwise.
    pub share: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The line's bytes in the queue's memory budget, given back likewise.
    pub held: Option<budget::Held>,
    /// The sender's line was longer than the limit: `line` is its head.
    pub truncated: bool,
}

impl Incoming {
    pub fn new(transport: Transport, source: IpAddr, line: Bytes, held: Option<budget::Held>) -> Incoming {
        Incoming { source, transport, line, share: None, held, truncated: false }
    }

    /// This line is the first `--max-line-bytes` of a longer one.
    pub fn cut(mut self) -> Incoming {
        self.truncated = true;
        self
    }
}

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// UDP and TCP listen on this address (port 0: one free port for both).
    pub listen: SocketAddr,
    pub udp: bool,
    pub tcp: bool,
    /// The deckies' UNIX socket (`None`: not opened).
    pub unix_socket: Option<PathBuf>,
    /// Network senders accepted by the UDP/TCP listener.
    pub allow: Networks,
    /// Network senders whose lines are trusted (as a decky's).
    pub trust_networks: Networks,
    /// The raw ingest log; records go to `<ingest_log>.json`.
    pub ingest_log: PathBuf,
    pub noise_apps: Vec<String>,
    pub max_line: usize,
    /// Lines the queue between receivers and the pipeline holds.
    pub queue: usize,
    /// Bytes it holds, in total and from one source.
    pub queue_bytes: usize,
    pub queue_bytes_per_source: usize,
    /// The raw log is rotated past this size, keeping this many old files.
    pub raw_log_max_bytes: u64,
    pub raw_log_keep: usize,
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
            unix_socket: None,
            allow: Networks::loopback(),
            trust_networks: Networks::default(),
            ingest_log,
            noise_apps: noise::DEFAULT_NOISE_APPS.iter().map(|s| s.to_string()).collect(),
            max_line: DEFAULT_MAX_LINE,
            queue: 8192,
            queue_bytes: budget::DEFAULT_QUEUE_BYTES,
            queue_bytes_per_source: budget::DEFAULT_QUEUE_BYTES_PER_SOURCE,
            raw_log_max_bytes: raw_budget::DEFAULT_MAX_BYTES,
            raw_log_keep: raw_budget::DEFAULT_KEEP,
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
    pub unix_socket: Option<PathBuf>,
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
        // Every line must fit a source's share, or a long one would wait forever.
        if config.queue_bytes_per_source < config.max_line + budget::LINE_OVERHEAD
            || config.queue_bytes < config.queue_bytes_per_source
        {
            anyhow::bail!(
                "--queue-bytes-per-source must hold one line (--max-line-bytes + {}) and --queue-bytes one share",
                budget::LINE_OVERHEAD
            );
        }
        let (tcp, udp) = bind(&config)
            .await
            .map_err(|e| anyhow::anyhow!("collector cannot listen on {}: {e} (use --listen)", config.listen))?;
        let unix = match &config.unix_socket {
            Some(path) => Some(
                receiver_unix::bind(path)
                    .map_err(|e| anyhow::anyhow!("collector cannot listen on {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let stats = Arc::new(Stats::default());
        let memory = budget::ByteBudget::new(config.queue_bytes, config.queue_bytes_per_source);
        let (tx, rx) = tokio::sync::mpsc::channel(config.queue);
        let pipeline = pipeline::Pipeline {
            raw: writer::RotatingFile::new(&config.ingest_log),
            raw_budget: raw_budget::RawLogBudget::new(
                &config.ingest_log,
                config.raw_log_max_bytes,
                config.raw_log_keep,
            ),
            trust_networks: config.trust_networks.clone(),
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
        let limits = receiver_tcp::TcpLimits {
            max_line: config.max_line,
            max_connections: config.max_connections.max(1),
            max_per_source: config.max_connections_per_source.max(1),
            idle: config.idle_timeout,
        };
        let ctx = receiver_tcp::Shared {
            queue: tx.clone(),
            budget: memory.clone(),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        if let Some(listener) = tcp {
            tasks.push(tokio::spawn(receiver_tcp::run(listener, limits.clone(), config.allow.clone(), ctx.clone())));
        }
        let unix_socket = unix.as_ref().map(|(_, path)| path.clone());
        if let Some((listener, path)) = unix {
            tasks.push(tokio::spawn(receiver_unix::run(listener, path, limits.clone(), ctx.clone())));
        }
        if let Some(socket) = udp {
            stats.udp_port.store(udp_addr.map(|a| a.port()).unwrap_or(0) as u64, std::sync::atomic::Ordering::Relaxed);
            tasks.push(tokio::spawn(receiver_udp::run(socket, config.max_line, config.allow.clone(), ctx.clone())));
        }
        if let Some(docker) = config.docker.clone() {
            tasks.push(tokio::spawn(docker::run(
                docker,
                tx.clone(),
                config.queue,
                memory.clone(),
                config.max_line,
                stats.clone(),
                shutdown,
            )));
        }
        drop(tx);
        drop(ctx);
        tracing::info!(
            tcp = ?tcp_addr, udp = ?udp_addr, unix = ?unix_socket, log = %config.ingest_log.display(),
            "collector listening"
        );
        Ok(Collector { stats, tcp_addr, udp_addr, unix_socket, tasks, pipeline: Some(pipeline) })
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
