//! The worker SDK (SPEC §6): everything a decnet worker needs to be a good
//! citizen of the bus, so each worker's `main` is its own logic and a few
//! lines of wiring.
//!
//! - [`get_bus`]: the transport the environment asks for (socket, in-process, or off).
//! - [`publish_safely`]: publish without ever failing the caller.
//! - [`ThreadSafePublisher`]: publish from `std::thread` code without blocking it.
//! - [`run_health_heartbeat`]: `system.<worker>.health` every interval.
//! - [`run_control_listener`]: `{"action":"stop"}` on `system.<worker>.control` → shutdown.
//! - [`AppBus`]: the process-wide bus of a request server, never failing a request.
//! - [`run_worker`] / [`Worker`]: all of the above wired around a worker body,
//!   with SIGTERM/SIGINT and the control listener on one shutdown token.
//! - [`notify_ready`]: `READY=1` and watchdog keep-alives under systemd.
//!
//! A whole worker (see `examples/heartbeat_worker.rs`):
//!
//! ```no_run
//! # async fn demo() -> Result<(), decnet_bus::BusError> {
//! decnet_bus::sdk::run_worker("sniffer", |ctx| async move {
//!     // ... do the work, publishing with ctx.bus ...
//!     ctx.shutdown.cancelled().await;
//! })
//! .await
//! # }
//! ```

mod app_bus;
mod control;
mod env;
mod heartbeat;
mod host;
mod publish;
mod systemd_notify;
mod worker;

pub use app_bus::{AppBus, APP_BUS_RETRY_WINDOW};
pub use control::{run_control_listener, ControlAction};
pub use env::{fake_hub, get_bus, BUS_ENABLED_ENV, BUS_TYPE_ENV};
pub use heartbeat::{health_payload, run_health_heartbeat, HealthExtra, DEFAULT_HEARTBEAT_INTERVAL};
pub use host::{host_id, hostname, valid_host_id, HOST_ID_ENV, MAX_HOST_ID_LEN};
pub use publish::{publish_safely, ThreadSafePublisher};
pub use systemd_notify::{keepalive_interval, notify_ready, notify_stopping};
pub use worker::{cancel_on_signal, run_worker, ShutdownSignals, Worker, WorkerContext, HEARTBEAT_SECS_ENV};

/// Error type health `extra` functions may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
