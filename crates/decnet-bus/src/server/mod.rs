//! The bus daemon (`decnet bus`): accept connections, route, heartbeat,
//! shut down cleanly.
//!
//! - [`broker`]: routing state and counters.
//! - [`connection`]: one client's reader and writer.
//! - [`listener`]: binding the socket safely.
//!
//! Shutdown is a first-class path: cancelling the token stops accepting,
//! every connection is told BYE and flushed (bounded by a grace period),
//! and the socket file is removed, so the next start finds a clean slate.

pub mod broker;
pub mod connection;
pub mod listener;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use broker::{Broker, Stats};
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
}

impl ServerConfig {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ServerConfig {
            socket: socket.into(),
            group: None,
            queue_capacity: 1024,
            heartbeat_interval: Duration::from_secs(10),
        }
    }
}

/// A bound, not yet running, daemon.
pub struct BusServer {
    config: ServerConfig,
    listener: UnixListener,
    broker: Arc<Broker>,
}

impl BusServer {
    /// Bind the socket (see [`listener::bind_socket`] for the rules).
    pub fn bind(config: ServerConfig) -> Result<BusServer, BindError> {
        let listener = bind_socket(&config.socket, config.group.as_deref())?;
        let broker = Arc::new(Broker::new(config.queue_capacity));
        Ok(BusServer { config, listener, broker })
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
        let BusServer { config, listener, broker } = self;
        tracing::info!(
            socket = %config.socket.display(),
            queue = config.queue_capacity,
            pid = std::process::id(),
            "bus listening"
        );
        // Under systemd (Type=notify) this marks the unit started; elsewhere
        // NOTIFY_SOCKET is unset and this does nothing.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

        let tracker = TaskTracker::new();
        if !config.heartbeat_interval.is_zero() {
            tracker.spawn(heartbeat(broker.clone(), config.heartbeat_interval, shutdown.clone()));
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tracker.spawn(connection::serve_connection(broker.clone(), stream, shutdown.clone()));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }

        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
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

/// Publish `system.bus.health` on the daemon's own router every `every`.
async fn heartbeat(broker: Arc<Broker>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let body = serde_json::json!({ "type": "health", "payload": health_payload(&broker) });
        if let Err(e) = broker.publish(None, "system.bus.health", body.to_string().as_bytes()) {
            tracing::error!(error = %e, "could not publish the bus heartbeat");
        }
    }
}

/// `{worker, ts, pid, uptime_sec, connections, subscriptions, published, delivered, dropped}`.
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
    })
}
