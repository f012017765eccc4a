//! The worker runtime: one call that runs a worker body with everything a
//! decnet worker owes the system wired around it.
//!
//! - the bus from the environment ([`get_bus`](super::get_bus));
//! - one shutdown [`CancellationToken`] cancelled by SIGTERM, SIGINT, or a
//!   `{"action":"stop"}` on `system.<name>.control`, whichever comes first;
//! - heartbeats on `system.<name>.health`, started only once the control
//!   subscription is in place, so anything that sees a heartbeat can stop
//!   the worker;
//! - when the body returns: heartbeat and listener stopped, bus closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::control::listen;
use super::heartbeat::{run_health_heartbeat, HealthExtra, DEFAULT_HEARTBEAT_INTERVAL};
use super::{get_bus, BoxError};
use crate::bus::{Bus, BusError};
use crate::topics::validate_segment;

/// Overrides the heartbeat interval (seconds, fractions allowed) of every
/// worker started through [`Worker`].
pub const HEARTBEAT_SECS_ENV: &str = "DECNET_HEARTBEAT_SECS";
/// How long to wait for the heartbeat and listener tasks to finish.
const AUX_STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// What the worker body gets.
#[derive(Clone)]
pub struct WorkerContext {
    pub name: String,
    pub bus: Arc<dyn Bus>,
    /// Cancelled on SIGTERM/SIGINT or a bus stop request: return when it fires.
    pub shutdown: CancellationToken,
}

/// A worker to run; [`run_worker`] is `Worker::new(name).run(body)`.
pub struct Worker {
    name: String,
    heartbeat_interval: Duration,
    extra: Option<HealthExtra>,
    bus: Option<Arc<dyn Bus>>,
}

impl Worker {
    /// Heartbeat interval: `DECNET_HEARTBEAT_SECS`, else 30 s.
    pub fn new(name: &str) -> Self {
        let interval = std::env::var(HEARTBEAT_SECS_ENV)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
        Worker { name: name.to_owned(), heartbeat_interval: interval, extra: None, bus: None }
    }

    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Extra heartbeat fields, computed each tick.
    pub fn health_extra(
        mut self,
        extra: impl Fn() -> Result<Map<String, Value>, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.extra = Some(Arc::new(extra));
        self
    }

    /// Use `bus` instead of the one the environment selects.
    pub fn bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Run `body` to completion with heartbeat, control listener and signals
    /// wired. Errors before the body starts: an invalid worker name or bus
    /// configuration.
    pub async fn run<F, Fut>(self, body: F) -> Result<Fut::Output, BusError>
    where
        F: FnOnce(WorkerContext) -> Fut,
        Fut: Future,
    {
        validate_segment(&self.name)?;
        let bus = match self.bus {
            Some(bus) => bus,
            None => get_bus(&self.name)?,
        };
        let shutdown = CancellationToken::new();
        // Stops the helpers once the body is done, whatever ended it.
        let helpers = CancellationToken::new();

        // Installed here, before the heartbeat says the worker is up.
        let signals = match ShutdownSignals::install() {
            Ok(signals) => tokio::spawn(signals.cancel_on_signal(shutdown.clone(), helpers.clone())),
            Err(e) => {
                tracing::error!(error = %e, "cannot install SIGTERM/SIGINT handlers; stop the worker over the bus");
                tokio::spawn(async {})
            }
        };

        let (ready_tx, ready_rx) = oneshot::channel();
        let listener = tokio::spawn({
            let (bus, name, shutdown) = (bus.clone(), self.name.clone(), shutdown.clone());
            async move { listen(Some(bus), &name, shutdown, Some(ready_tx)).await }
        });
        // Wait for the first subscribe attempt (or a stop before it).
        tokio::select! {
            _ = ready_rx => {}
            _ = shutdown.cancelled() => {}
        }
        let heartbeat = tokio::spawn({
            let (bus, name, extra, helpers) = (bus.clone(), self.name.clone(), self.extra, helpers.clone());
            let interval = self.heartbeat_interval;
            async move { run_health_heartbeat(bus, &name, interval, extra, helpers).await }
        });
        tracing::info!(worker = %self.name, bus = bus.name(), "worker started");
        // Every worker run through here is a systemd Type=notify unit.
        super::notify_ready(&format!("{} started", self.name), helpers.clone());

        let output =
            body(WorkerContext { name: self.name.clone(), bus: bus.clone(), shutdown: shutdown.clone() }).await;

        super::notify_stopping();
        helpers.cancel();
        shutdown.cancel();
        for task in [listener, heartbeat] {
            if tokio::time::timeout(AUX_STOP_TIMEOUT, task).await.is_err() {
                tracing::warn!(worker = %self.name, "a worker helper task did not stop in time");
            }
        }
        signals.abort();
        bus.close().await;
        tracing::info!(worker = %self.name, "worker stopped");
        Ok(output)
    }
}

/// Run a worker body named `name` with the defaults (see [`Worker`]).
pub async fn run_worker<F, Fut>(name: &str, body: F) -> Result<Fut::Output, BusError>
where
    F: FnOnce(WorkerContext) -> Fut,
    Fut: Future,
{
    Worker::new(name).run(body).await
}

/// SIGTERM and SIGINT handlers, registered the moment this is created.
///
/// Create it *before* announcing readiness (sd_notify READY, "listening"):
/// a handler that is only installed once a spawned task first runs leaves
/// a window in which systemd's stop kills the process outright (no BYE, no
/// socket clean-up).
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Register the handlers now (needs a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Cancel `shutdown` on the first signal; give up once `done` fires.
    /// Pass the same token twice to stop listening once shutdown started
    /// some other way.
    pub async fn cancel_on_signal(mut self, shutdown: CancellationToken, done: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT received; shutting down"),
            _ = done.cancelled() => return,
        }
        shutdown.cancel();
    }
}

/// [`ShutdownSignals::install`] then [`ShutdownSignals::cancel_on_signal`],
/// for callers with nothing to announce.
pub async fn cancel_on_signal(shutdown: CancellationToken, done: CancellationToken) {
    match ShutdownSignals::install() {
        Ok(signals) => signals.cancel_on_signal(shutdown, done).await,
        Err(e) => tracing::error!(
            error = %e,
            "cannot install SIGTERM/SIGINT handlers; stop this process another way (a stop over the bus for workers)"
        ),
    }
}
