//! `AppBus`: the one bus connection a request server (the API) shares
//! across all its handlers.
//!
//! A request must never fail or stall because the bus is down, and a dead
//! daemon must not turn every request into a connect attempt. So: handlers
//! ask [`AppBus::get`] and get `None` while the bus is unreachable; a failed
//! connect is retried at most once per [`APP_BUS_RETRY_WINDOW`], and one
//! caller connects while the others wait for its result instead of opening
//! connections of their own. Once connected, the socket client reconnects
//! by itself (keeping subscriptions), so the connection is kept for good.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bus::Bus;
use crate::client::UnixBus;
use crate::paths::resolve_socket_path;

/// Minimum time between two connect attempts (SPEC §6).
pub const APP_BUS_RETRY_WINDOW: Duration = Duration::from_secs(2);
/// A connect to a local socket either answers at once or something is badly
/// wrong; never hold requests longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct AppBus {
    client_name: String,
    socket_path: Option<PathBuf>,
    retry_window: Duration,
    /// The established bus, readable without waiting (fast path, `is_connected`).
    current: Mutex<Option<Arc<dyn Bus>>>,
    /// Held by the one caller attempting a connect; stores when it last tried.
    connecting: tokio::sync::Mutex<Option<Instant>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for AppBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBus")
            .field("client_name", &self.client_name)
            .field("socket_path", &self.socket_path)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl AppBus {
    /// An app bus over the daemon socket at `socket_path`. Nothing is
    /// connected until the first [`get`](Self::get).
    pub fn new(client_name: &str, socket_path: impl Into<PathBuf>) -> Self {
        Self::build(client_name, Some(socket_path.into()), None)
    }

    /// An app bus over the socket `DECNET_BUS_SOCKET` (or the default path) names.
    pub fn from_env(client_name: &str) -> Self {
        Self::new(client_name, resolve_socket_path(None))
    }

    /// An app bus that always hands out `bus` (a `FakeBus` client in tests,
    /// or the in-process bus of an all-in-one process).
    pub fn fixed(bus: Arc<dyn Bus>) -> Self {
        let name = bus.name().to_owned();
        Self::build(&name, None, Some(bus))
    }

    /// Change the retry window (tests; the default is the SPEC's 2 s).
    pub fn with_retry_window(mut self, window: Duration) -> Self {
        self.retry_window = window;
        self
    }

    fn build(client_name: &str, socket_path: Option<PathBuf>, bus: Option<Arc<dyn Bus>>) -> Self {
        AppBus {
            client_name: client_name.to_owned(),
            socket_path,
            retry_window: APP_BUS_RETRY_WINDOW,
            current: Mutex::new(bus),
            connecting: tokio::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    fn current(&self) -> Option<Arc<dyn Bus>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The shared bus if it is connected now, else `None` (after at most one
    /// connect attempt per retry window, shared by all concurrent callers).
    /// Never an error: a request goes on without the bus.
    pub async fn get(&self) -> Option<Arc<dyn Bus>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if let Some(bus) = self.current() {
            // Connected, or reconnecting by itself after a daemon restart.
            return bus.is_connected().then_some(bus);
        }
        let path = self.socket_path.as_ref()?;
        let mut last_attempt = self.connecting.lock().await;
        // Someone else may have connected while we waited for the lock.
        if let Some(bus) = self.current() {
            return bus.is_connected().then_some(bus);
        }
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if last_attempt.is_some_and(|t| t.elapsed() < self.retry_window) {
            return None;
        }
        *last_attempt = Some(Instant::now());
        match tokio::time::timeout(CONNECT_TIMEOUT, UnixBus::connect(&self.client_name, path.clone())).await {
            Ok(Ok(bus)) => {
                tracing::info!(client = %self.client_name, socket = %path.display(), "connected to the bus");
                let bus: Arc<dyn Bus> = Arc::new(bus);
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(bus.clone());
                if self.closed.load(Ordering::Acquire) {
                    // close() ran during the connect: do not leak the connection.
                    bus.close().await;
                    return None;
                }
                Some(bus)
            }
            Ok(Err(e)) => {
                tracing::debug!(client = %self.client_name, error = %e, "bus unavailable; retrying in {:?}", self.retry_window);
                None
            }
            Err(_) => {
                tracing::warn!(client = %self.client_name, socket = %path.display(), "bus connect timed out");
                None
            }
        }
    }

    /// Whether the shared bus is connected right now (no connect attempt).
    pub fn is_connected(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.current().is_some_and(|b| b.is_connected())
    }

    /// Close the shared bus; later `get`s return `None`. Idempotent.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let bus = self.current.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(bus) = bus {
            bus.close().await;
        }
    }
}
