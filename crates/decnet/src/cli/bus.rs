//! `decnet bus`: run the host's bus daemon.

use decnet_bus::server::{BusServer, Limits, ServerConfig};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct BusArgs {
    /// Socket to listen on. Default: /run/decnet/bus.sock when /run/decnet
    /// exists, else $DECNET_HOME/bus.sock (folder created).
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Group owning the socket (mode 0660). Default: `decnet` if that group exists.
    #[arg(long, env = "DECNET_BUS_GROUP")]
    pub group: Option<String>,
    /// Events queued per connection before its oldest are dropped.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
    /// Seconds between `system.bus.health` heartbeats (0 disables).
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat_secs: f64,
    /// Kernel send buffer per connection in bytes (SO_SNDBUF), the slack a
    /// subscriber has to ride out a burst before its drop-oldest queue
    /// fills. 0 keeps the system default. Capped by net.core.wmem_max.
    #[arg(long, env = "DECNET_BUS_SEND_BUFFER", default_value_t = decnet_bus::server::DEFAULT_SEND_BUFFER)]
    pub send_buffer: usize,
    /// Threads routing events. 1 (the default) is the fastest on small
    /// hosts: no cross-thread wake-ups, and the cores stay free for the
    /// workers. More helps only with many busy publishers on many cores.
    #[arg(long, env = "DECNET_BUS_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// After traffic, keep the routing thread polling this many µs instead
    /// of sleeping: lower latency (one thread wake-up less per event) for
    /// up to a core of CPU while events arrive closer together than this.
    /// 0 (the default) never spins. Only with --threads 1.
    #[arg(long, env = "DECNET_BUS_BUSY_POLL_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub busy_poll_us: u64,
    /// Longest SUB pattern in bytes; a longer one closes the connection.
    #[arg(long, env = "DECNET_BUS_MAX_PATTERN_LEN", default_value_t = Limits::default().max_pattern_len)]
    pub max_pattern_len: usize,
    /// Most tokens in one SUB pattern; more closes the connection.
    #[arg(long, env = "DECNET_BUS_MAX_PATTERN_TOKENS", default_value_t = Limits::default().max_pattern_tokens)]
    pub max_pattern_tokens: usize,
    /// Most patterns one connection may hold; one more closes the connection.
    #[arg(long, env = "DECNET_BUS_MAX_SUBS_PER_CONN", default_value_t = Limits::default().max_subs_per_conn)]
    pub max_subs_per_conn: usize,
    /// Trie nodes all subscriptions together may use (~100 bytes each); a
    /// SUB that would go over closes its connection.
    #[arg(long, env = "DECNET_BUS_MAX_INDEX_NODES", default_value_t = Limits::default().max_index_nodes)]
    pub max_index_nodes: usize,
    /// Bytes one connection's outbound queue may hold before its oldest
    /// events are dropped (besides --queue events).
    #[arg(long, env = "DECNET_BUS_QUEUE_BYTES", default_value_t = Limits::default().queue_bytes)]
    pub queue_bytes: usize,
    /// Bytes all outbound queues together may hold; past it, the queue
    /// being pushed drops its oldest events.
    #[arg(long, env = "DECNET_BUS_MAX_QUEUED_BYTES", default_value_t = Limits::default().max_queued_bytes)]
    pub max_queued_bytes: usize,
    /// Bytes all connections together may hold in half-received large
    /// frames; a reader over it waits (within --frame-timeout-secs).
    #[arg(long, env = "DECNET_BUS_MAX_READ_BYTES", default_value_t = Limits::default().max_read_bytes)]
    pub max_read_bytes: usize,
    /// Seconds a frame may take to arrive from its first byte; a slower
    /// one closes the connection.
    #[arg(long, env = "DECNET_BUS_FRAME_TIMEOUT_SECS", default_value_t = Limits::default().frame_timeout.as_secs_f64())]
    pub frame_timeout_secs: f64,
    /// Connections served at once; more are closed at once, with a log line.
    #[arg(long, env = "DECNET_BUS_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Federation over NATS (SPEC §9): --nats, --export, --import, --host-id, …
    /// Boxed: its many options would make every `Command` as large.
    #[command(flatten)]
    pub nats: Box<crate::federation::NatsArgs>,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

pub async fn run(args: BusArgs) -> anyhow::Result<()> {
    let socket = match args.socket {
        Some(explicit) => explicit,
        None => {
            let path = decnet_bus::paths::default_socket_path();
            // Only the default location is created for the operator; an
            // explicit path with a missing folder is a mistake to report.
            if let Some(parent) = path.parent() {
                if !parent.exists() {
                    crate::home::ensure_home()?;
                    std::fs::create_dir_all(parent)?;
                }
            }
            path
        }
    };
    if !args.heartbeat_secs.is_finite() || args.heartbeat_secs < 0.0 {
        anyhow::bail!("--heartbeat-secs must be zero or a positive number of seconds");
    }
    if !args.frame_timeout_secs.is_finite() || args.frame_timeout_secs <= 0.0 {
        anyhow::bail!("--frame-timeout-secs must be a positive number of seconds");
    }
    if args.busy_poll_us > 0 && args.threads != 1 {
        // On the multi-thread runtime another worker may be the one parked
        // on the I/O driver while the poller spins: CPU spent for nothing.
        anyhow::bail!("--busy-poll-us needs --threads 1 (the routing thread is the one that polls)");
    }
    let limits = Limits {
        max_pattern_len: args.max_pattern_len,
        max_pattern_tokens: args.max_pattern_tokens,
        max_subs_per_conn: args.max_subs_per_conn,
        max_index_nodes: args.max_index_nodes,
        queue_bytes: args.queue_bytes,
        max_queued_bytes: args.max_queued_bytes,
        max_read_bytes: args.max_read_bytes,
        frame_timeout: Duration::from_secs_f64(args.frame_timeout_secs),
        max_connections: args.max_connections as usize,
    };
    // Checked before binding: a typo in a pattern must not leave a daemon
    // running that silently bridges nothing.
    let federation = args.nats.config()?;
    let host_id = args.nats.resolved_host_id()?;
    let config = ServerConfig {
        socket,
        group: args.group,
        queue_capacity: args.queue as usize,
        heartbeat_interval: Duration::from_secs_f64(args.heartbeat_secs),
        send_buffer: args.send_buffer,
        limits,
        busy_poll: Duration::from_micros(args.busy_poll_us),
    };
    // Handlers first: READY goes out as soon as the socket listens, and a
    // stop right after it must still get the clean shutdown path.
    let shutdown = CancellationToken::new();
    spawn_signal_handler(&shutdown)?;
    let mut server = BusServer::bind(config)?;
    let (bridge, extra) = match federation {
        Some(fed) => {
            let bridge = crate::federation::Bridge::start(server.broker(), fed, shutdown.clone()).await?;
            let extra = bridge.health_extra();
            (Some(bridge), extra)
        }
        None => (None, crate::federation::host_only_extra(host_id)),
    };
    server.set_health_extra(extra.clone());
    // /metrics reads what `system.bus.health` carries: the broker's
    // counters over the bridge's, as the heartbeat merges them.
    let broker = server.broker();
    let fields: crate::metrics::Fields = std::sync::Arc::new(move || {
        let mut fields = extra().unwrap_or_default();
        if let serde_json::Value::Object(own) = decnet_bus::server::health_payload(&broker) {
            fields.extend(own);
        }
        fields
    });
    crate::metrics::serve_worker(&args.metrics, &crate::metrics::catalogue::BUS, fields, shutdown.clone()).await?;
    server.run(shutdown).await?;
    if let Some(bridge) = bridge {
        bridge.join().await;
    }
    Ok(())
}

/// Cancel `token` on SIGTERM or SIGINT (systemd stop, Ctrl-C).
pub async fn cancel_on_signal(token: CancellationToken) {
    decnet_bus::sdk::cancel_on_signal(token.clone(), token).await
}

/// Register the SIGTERM/SIGINT handlers *now* (before the caller reports
/// readiness) and cancel `token` when one arrives.
pub fn spawn_signal_handler(token: &CancellationToken) -> anyhow::Result<()> {
    let signals = decnet_bus::sdk::ShutdownSignals::install()
        .map_err(|e| anyhow::anyhow!("cannot install SIGTERM/SIGINT handlers: {e}"))?;
    tokio::spawn(signals.cancel_on_signal(token.clone(), token.clone()));
    Ok(())
}
