//! What every handler can reach: the database, the token keys, the worker
//! registry, the shared bus, systemctl and the static configuration.
//!
//! Cheap to clone (everything is behind an `Arc`); axum clones it per
//! request. Later route groups (topologies, SSE) use the same state.

use sqlx::SqlitePool;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::events::{EventStreams, EventsConfig};
use super::limits::{ApiLimits, LoginGuard};
use crate::auth::JwtKeys;
use crate::registry::WorkerRegistry;
use crate::systemd::Systemctl;
use decnet_bus::sdk::AppBus;

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Interval of the API's own `system.api.health` heartbeat.
    pub heartbeat_interval: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { heartbeat_interval: Duration::from_secs(30) }
    }
}

/// Where the deckies keep what they captured: the API serves artifacts
/// and session recordings from these folders only.
#[derive(Debug, Clone)]
pub struct EvidenceDirs {
    /// Quarantined files, one per SHA-256 (`<dir>/<sha256>`).
    pub artifacts: PathBuf,
    /// Session recordings (`<dir>/<decky>/<sid>.cast`).
    pub recordings: PathBuf,
}

impl EvidenceDirs {
    /// `$DECNET_HOME/artifacts` and `$DECNET_HOME/recordings`, where the
    /// deckies put them by default.
    pub fn in_home() -> Self {
        let home = decnet_bus::paths::decnet_home();
        EvidenceDirs { artifacts: home.join("artifacts"), recordings: home.join("recordings") }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub jwt: Arc<JwtKeys>,
    pub registry: Arc<WorkerRegistry>,
    /// The process-wide bus connection (SPEC §6): `get()` is `None` while
    /// the bus is down; `is_connected()` is what `bus_connected` reports.
    pub bus: Arc<AppBus>,
    pub systemctl: Arc<Systemctl>,
    pub config: Arc<ApiConfig>,
    /// Cancelled when the server shuts down: long-lived responses (SSE)
    /// and background tasks end on it so graceful shutdown never hangs.
    pub shutdown: CancellationToken,
    /// Settings and per-user counts of open SSE streams (tests swap in a
    /// short keepalive or a small cap).
    pub event_streams: Arc<EventStreams>,
    /// Connection, header-timeout and login limits (see `api::limits`).
    pub limits: Arc<ApiLimits>,
    /// The hashing semaphore and failed-login throttle built from `limits`.
    pub login_guard: Arc<LoginGuard>,
    /// The artifacts and recordings folders.
    pub evidence: Arc<EvidenceDirs>,
    /// `decnet up`'s kept admin password, removed on the admin's first
    /// login (see `initial_admin`); `None`: nothing to remove.
    pub initial_password_file: Option<Arc<std::path::PathBuf>>,
    /// Request counts and the in-process ingester's counters (`api::metrics`).
    pub metrics: Arc<super::metrics::ApiMetrics>,
    /// Webhooks and the SIEM export (see `crate::alerts`).
    pub alerts: Arc<crate::alerts::Alerts>,
}

impl AppState {
    pub fn new(
        pool: SqlitePool,
        jwt: JwtKeys,
        registry: WorkerRegistry,
        bus: Arc<AppBus>,
        systemctl: Systemctl,
        config: ApiConfig,
    ) -> Self {
        AppState {
            pool,
            jwt: Arc::new(jwt),
            registry: Arc::new(registry),
            bus,
            systemctl: Arc::new(systemctl),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            event_streams: Arc::new(EventStreams::default()),
            limits: Arc::new(ApiLimits::default()),
            login_guard: Arc::new(LoginGuard::new(&ApiLimits::default())),
            evidence: Arc::new(EvidenceDirs::in_home()),
            initial_password_file: None,
            metrics: Arc::new(super::metrics::ApiMetrics::default()),
            alerts: Arc::new(crate::alerts::Alerts::default()),
        }
    }

    /// The same state alerting through `alerts` (its bus connection,
    /// SIEM exporter and retry settings).
    pub fn with_alerts(mut self, alerts: crate::alerts::Alerts) -> Self {
        self.alerts = Arc::new(alerts);
        self
    }

    /// The same state serving artifacts and recordings from `dirs`.
    pub fn with_evidence(mut self, dirs: EvidenceDirs) -> Self {
        self.evidence = Arc::new(dirs);
        self
    }

    /// The same state removing `path` on the initial admin's first login.
    pub fn with_initial_password_file(mut self, path: std::path::PathBuf) -> Self {
        self.initial_password_file = Some(Arc::new(path));
        self
    }

    /// The same state reporting `metrics` (with the ingester's counters).
    pub fn with_metrics(mut self, metrics: super::metrics::ApiMetrics) -> Self {
        self.metrics = Arc::new(metrics);
        self
    }

    /// The same state with `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.login_guard = Arc::new(LoginGuard::new(&limits));
        self.limits = Arc::new(limits);
        self
    }

    /// The same state with SSE streams run by `config` (keepalive period,
    /// per-user cap) instead of the defaults.
    pub fn with_events(mut self, config: EventsConfig) -> Self {
        self.event_streams = Arc::new(EventStreams::new(config));
        self
    }
}
