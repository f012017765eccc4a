//! The bus daemon (`decnet bus`): accept connections, route, heartbeat,
//! shut down cleanly.
//!
//! - [`broker`]: routing state and counters.
//! - [`busy_poll`]: opt-in polling after traffic, for lower latency.
//! - [`connection`]: one client's reader and writer.
//! - [`cost`]: what routing work costs, so no client holds the thread long.
//! - [`listener`]: binding the socket safely.
//! - [`limits`]: what clients may make the daemon hold.
//! - [`logging`]: escaping and rate-limiting what clients make it log.
//! - `own_bus`: the daemon publishing its own heartbeat through the SDK.
//!
//! Shutdown is a first-class path: cancelling the token stops accepting,
//! every connection is told BYE and flushed (bounded by a grace period),
//! and the socket file is removed, so the next start finds a clean slate.

pub mod broker;
pub mod busy_poll;
pub mod connection;
pub mod cost;
pub mod limits;
pub mod listener;
pub mod logging;
mod own_bus;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use broker::{Broker, Stats};
pub use limits::Limits;
pub use listener::{bind_socket, BindError};

/// How long connections get to flush their BYE at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub socket: PathBuf,
    /// Group for the socket file; `None` means `decnet` when it exists.
    pub group: Option<String>,
    /// Events queued per connection before the oldest is dropped.
    pub queue_capacity: usize,
    /// `system.bus.health` period; zero disables the heartbeat.
    pub heartbeat_interval: Duration,
    /// Kernel send buffer asked for on every accepted connection
    /// (`SO_SNDBUF`); 0 keeps the system default. See [`DEFAULT_SEND_BUFFER`].
    pub send_buffer: usize,
    /// Resource limits per connection and daemon-wide.
    pub limits: Limits,
    /// Keep polling this long after traffic instead of sleeping (see
    /// [`busy_poll`]); zero (the default) never spins.
    pub busy_poll: Duration,
}

/// 2 MiB of kernel send buffer per connection (the Linux default is about
/// 208 KiB). It is what lets a subscriber that keeps up *on average* ride
/// out a scheduling hiccup: at a million events/s, 208 KiB is under a
/// millisecond of events, one time slice of a busy 2-core host, and the
/// daemon's drop-oldest queue (1,024 events) is the same again. Nothing
/// waits on it, so a slow subscriber still never slows a publisher; a
/// lagging one costs at most this much kernel memory, and the drop-oldest
/// queue behind it behaves as before. Capped by `net.core.wmem_max`.
pub const DEFAULT_SEND_BUFFER: usize = 2 << 20;

impl ServerConfig {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ServerConfig {
            socket: socket.into(),
            group: None,
            queue_capacity: 1024,
            heartbeat_interval: Duration::from_secs(10),
            send_buffer: DEFAULT_SEND_BUFFER,
            limits: Limits::default(),
            busy_poll: Duration::ZERO,
        }
    }
}

/// A bound, not yet running, daemon.
pub struct BusServer {
    config: ServerConfig,
    listener: UnixListener,
    broker: Arc<Broker>,
    /// More `system.bus.health` fields (the NATS bridge's counters).
    health_extra: Option<crate::sdk::HealthExtra>,
}

impl BusServer {
    /// Bind the socket (see [`listener::bind_socket`] for the rules).
    pub fn bind(config: ServerConfig) -> Result<BusServer, BindError> {
        let listener = bind_socket(&config.socket, config.group.as_deref())?;
        let mut broker = Broker::with_limits(config.queue_capacity, config.limits.clone());
        if !config.busy_poll.is_zero() {
            broker.busy_poll = Some(Arc::new(busy_poll::BusyPoll::new(config.busy_poll)));
        }
        let broker = Arc::new(broker);
        Ok(BusServer { config, listener, broker, health_extra: None })
    }

    /// Add fields to every `system.bus.health` (computed each beat). The
    /// broker's own counters win over a clashing key.
    pub fn set_health_extra(&mut self, extra: crate::sdk::HealthExtra) {
        self.health_extra = Some(extra);
    }

    pub fn socket_path(&self) -> &Path {
        &self.config.socket
    }

    pub fn broker(&self) -> Arc<Broker> {
        self.broker.clone()
    }

    /// Serve until `shutdown` is cancelled, then close every connection
    /// with BYE and remove the socket file.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let BusServer { config, listener, broker, health_extra } = self;
        tracing::info!(
            socket = %config.socket.display(),
            queue = config.queue_capacity,
            pid = std::process::id(),
            "bus listening"
        );
        // Under systemd (Type=notify) this marks the unit started; elsewhere
        // NOTIFY_SOCKET is unset and this does nothing.
        crate::sdk::notify_ready("bus listening", shutdown.clone());

        let mut send_buffer = SendBuffer { wanted: config.send_buffer, warned: false };
        let tracker = TaskTracker::new();
        if !config.heartbeat_interval.is_zero() {
            tracker.spawn(heartbeat(broker.clone(), config.heartbeat_interval, health_extra, shutdown.clone()));
        }
        tracker.spawn(hostile_summaries(broker.clone(), shutdown.clone()));
        if let Some(poller) = &broker.busy_poll {
            tracing::info!(window_us = config.busy_poll.as_micros() as u64, "busy polling after traffic");
            tracker.spawn(poller.clone().run(shutdown.clone()));
        }
        // Connections are counted by their tasks, which the tracker counts
        // from the moment of the spawn: the broker's counter only moves once
        // a task has run, so a burst of accepts could overshoot it.
        let own_tasks = tracker.len();
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        backoff.recovered();
                        if tracker.len() - own_tasks >= config.limits.max_connections {
                            // Accept and close at once: left in the listen
                            // queue it would be accepted again and again.
                            drop(stream);
                            broker.log_hostile(
                                "new connection",
                                &format!("{} connections already served (--max-connections)", config.limits.max_connections),
                                "connection limit reached",
                            );
                            continue;
                        }
                        send_buffer.apply(&stream);
                        tracker.spawn(connection::serve_connection(broker.clone(), stream, shutdown.clone()));
                    }
                    Err(e) => {
                        let pause = backoff.failed(&e);
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                },
            }
        }

        crate::sdk::notify_stopping();
        drop(listener);
        if let Err(e) = std::fs::remove_file(&config.socket) {
            tracing::warn!(socket = %config.socket.display(), error = %e, "could not remove the socket file");
        }
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
            tracing::warn!("some connections did not close within the grace period");
        }
        tracing::info!(stats = ?broker.stats(), "bus stopped");
        Ok(())
    }
}

/// Backing off when `accept` fails (EMFILE/ENFILE when out of file
/// descriptors, ENOBUFS…): the pending connection stays in the listen
/// queue, so retrying at once would fail again at once and spin the CPU
/// and the log. The pause doubles from 10 ms to 1 s; one line is logged
/// when failures start (and at most once per 10 s while they last), one
/// when accepting works again.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u64,
    pause: Duration,
    last_log: Option<std::time::Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const CAP: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.failures += 1;
        self.pause = if self.pause.is_zero() { Self::FIRST } else { (self.pause * 2).min(Self::CAP) };
        if self.last_log.is_none_or(|t| t.elapsed() >= Self::LOG_EVERY) {
            self.last_log = Some(std::time::Instant::now());
            tracing::error!(
                error = %e,
                failures = self.failures,
                "accept failed; backing off (up to {} s between tries; raise LimitNOFILE if out of file descriptors)",
                Self::CAP.as_secs()
            );
        }
        self.pause
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::warn!(failures = self.failures, "accepting connections again");
            *self = AcceptBackoff::default();
        }
    }
}

/// Write the "suppressed N hostile-connection log lines" summary within a
/// second of a flood, even if no further line comes to carry it.
async fn hostile_summaries(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(logging::SUMMARY_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => broker.flush_hostile_summary(),
        }
    }
}

/// Sets `SO_SNDBUF` on accepted connections and says once, with the fix,
/// when the kernel grants less than asked.
struct SendBuffer {
    wanted: usize,
    warned: bool,
}

impl SendBuffer {
    fn apply(&mut self, stream: &tokio::net::UnixStream) {
        use nix::sys::socket::{getsockopt, setsockopt, sockopt::SndBuf};
        if self.wanted == 0 {
            return;
        }
        if let Err(e) = setsockopt(stream, SndBuf, &self.wanted) {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(error = %e, "could not set the connection send buffer; using the system default");
            }
            return;
        }
        if self.warned {
            return; // said once; no need to read it back on every accept
        }
        // Linux doubles the value for bookkeeping and caps it at
        // net.core.wmem_max: half of what it reports is the usable size.
        let granted = getsockopt(stream, SndBuf).map(|n| n / 2).unwrap_or(self.wanted);
        if granted < self.wanted && !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(
                wanted = self.wanted,
                granted,
                "connection send buffer capped by net.core.wmem_max; raise it (sysctl -w net.core.wmem_max={}) \
                 so subscribers ride out bursts",
                self.wanted
            );
        }
    }
}

/// `system.bus.health` every `every`, through the same SDK heartbeat as
/// every worker; the counters ride in its `extra`.
async fn heartbeat(
    broker: Arc<Broker>,
    every: Duration,
    more: Option<crate::sdk::HealthExtra>,
    shutdown: CancellationToken,
) {
    let bus: Arc<dyn crate::Bus> = Arc::new(own_bus::OwnBus::new(broker.clone()));
    let extra: crate::sdk::HealthExtra = Arc::new(move || match health_payload(&broker) {
        serde_json::Value::Object(map) => {
            let mut out = match &more {
                Some(more) => more()?,
                None => serde_json::Map::new(),
            };
            out.extend(map);
            Ok(out)
        }
        _ => Err("health payload is not an object".into()),
    });
    // "bus" is a valid topic segment, so this cannot fail.
    let _ = crate::sdk::run_health_heartbeat(bus, "bus", every, Some(extra), shutdown).await;
}

/// `{worker, ts, pid, uptime_sec, connections, subscriptions, published,
/// delivered, dropped, index_nodes, queued_bytes}`.
pub fn health_payload(broker: &Broker) -> serde_json::Value {
    let s = broker.stats();
    serde_json::json!({
        "worker": "bus",
        "ts": crate::envelope::now_ts(),
        "pid": std::process::id(),
        "uptime_sec": broker.started.elapsed().as_secs_f64(),
        "connections": s.connections,
        "subscriptions": s.subscriptions,
        "published": s.published,
        "delivered": s.delivered,
        "dropped": s.dropped,
        "index_nodes": s.index_nodes,
        "queued_bytes": s.queued_bytes,
    })
}
