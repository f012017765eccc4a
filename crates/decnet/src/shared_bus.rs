//! The seam between the control plane and "the bus this process shares".
//!
//! In production it is the SDK's `AppBus` (one lazily connected UNIX
//! client per process, reconnect attempts rate-limited); tests hand the
//! same routes an in-process `FakeBus` client or a bus that is down, so
//! every route and the registry run unchanged against either.

use decnet_bus::client::UnixBus;
use decnet_bus::Bus;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A failed connect is retried at most this often (SPEC §6).
pub const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// The production shared bus: a UNIX-socket client to `socket`, connected
/// on first need. Once connected, the client reconnects by itself when the
/// daemon restarts, so the same handle is returned from then on.
pub fn app_bus(client_name: &str, socket: &Path) -> Arc<dyn SharedBus> {
    Arc::new(LazyUnixBus {
        name: client_name.to_owned(),
        socket: socket.to_path_buf(),
        last_attempt: Mutex::new(None),
        connected_bus: std::sync::OnceLock::new(),
    })
}

struct LazyUnixBus {
    name: String,
    socket: PathBuf,
    /// Held while connecting, so concurrent callers connect once.
    last_attempt: Mutex<Option<Instant>>,
    /// Set once the first connect succeeded; read without locking.
    connected_bus: std::sync::OnceLock<Arc<UnixBus>>,
}

#[async_trait::async_trait]
impl SharedBus for LazyUnixBus {
    async fn get(&self) -> Option<Arc<dyn Bus>> {
        if let Some(bus) = self.connected_bus.get() {
            return (!bus.is_closed()).then(|| bus.clone() as Arc<dyn Bus>);
        }
        let mut last_attempt = self.last_attempt.lock().await;
        if let Some(bus) = self.connected_bus.get() {
            return Some(bus.clone());
        }
        if last_attempt.is_some_and(|at| at.elapsed() < CONNECT_RETRY) {
            return None;
        }
        *last_attempt = Some(Instant::now());
        match UnixBus::connect(&self.name, self.socket.clone()).await {
            Ok(bus) => {
                tracing::info!(socket = %self.socket.display(), "connected to the bus");
                let bus = self.connected_bus.get_or_init(|| Arc::new(bus));
                Some(bus.clone())
            }
            Err(e) => {
                tracing::debug!(error = %e, "bus not reachable; retrying in {}s", CONNECT_RETRY.as_secs());
                None
            }
        }
    }

    fn is_connected(&self) -> bool {
        self.connected_bus.get().is_some_and(|b| b.is_connected())
    }

    async fn close(&self) {
        if let Some(bus) = self.connected_bus.get() {
            bus.close().await;
        }
    }
}

#[async_trait::async_trait]
pub trait SharedBus: Send + Sync + 'static {
    /// The bus if it can be had now (connecting if needed, never blocking
    /// long); `None` while it is down. Never an error: a dead bus must not
    /// fail a request that does not need it.
    async fn get(&self) -> Option<Arc<dyn Bus>>;

    /// Whether the bus connection is up at this moment.
    fn is_connected(&self) -> bool;

    /// Close the underlying bus on shutdown (say BYE). Idempotent.
    async fn close(&self) {}
}

/// A fixed, already-connected bus (an in-process `FakeBus` client, say).
pub struct FixedBus(pub Arc<dyn Bus>);

#[async_trait::async_trait]
impl SharedBus for FixedBus {
    async fn get(&self) -> Option<Arc<dyn Bus>> {
        (!self.0.is_closed()).then(|| self.0.clone())
    }

    fn is_connected(&self) -> bool {
        self.0.is_connected()
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

/// No bus at all: every `get` is `None`, `is_connected` is false.
pub struct NoBus;

#[async_trait::async_trait]
impl SharedBus for NoBus {
    async fn get(&self) -> Option<Arc<dyn Bus>> {
        None
    }

    fn is_connected(&self) -> bool {
        false
    }
}
