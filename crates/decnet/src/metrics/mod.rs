//! Prometheus metrics: `GET /metrics` on `--metrics-listen ADDR`, for every
//! daemon, off unless asked for.
//!
//! - [`catalogue`]: every metric name and the heartbeat field it reads.
//! - [`render`]: heartbeat fields to exposition text (prometheus-client).
//!
//! A daemon's endpoint renders the same counters its heartbeat carries,
//! read at scrape time; the API's endpoint also renders the last heartbeat
//! of every worker it hears (`host` and `worker` labels), so one scrape
//! target covers a whole installation, federated hosts included.
//!
//! The endpoint has no authentication, so it binds loopback only unless
//! `--metrics-allow-remote` says the operator put it behind something.

pub mod catalogue;
pub mod counters;
pub mod render;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

pub use counters::NamedCounters;
pub use render::{HeartbeatCollector, HeartbeatSource};

/// The OpenMetrics text format prometheus-client writes (Prometheus
/// scrapes it natively).
pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The flags every daemon takes (flattened into its arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on `GET /metrics` at this address (e.g.
    /// 127.0.0.1:9464); off when unset. Unauthenticated: only loopback
    /// addresses unless --metrics-allow-remote.
    // No environment variable: `decnet up` hands its environment to every
    // daemon it starts, and they cannot all bind one port.
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Allow --metrics-listen on a non-loopback address (anyone who can
    /// reach it reads the counters: firewall it or put a proxy in front).
    #[arg(long = "metrics-allow-remote")]
    pub metrics_allow_remote: bool,
}

/// Why an address may not serve metrics.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--metrics-listen {0}: not a loopback address; the metrics endpoint has no authentication \
     (pass --metrics-allow-remote if it is firewalled or behind a proxy)"
)]
pub struct RemoteRefused(pub SocketAddr);

/// Loopback, or anything when `allow_remote`.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), RemoteRefused> {
    if allow_remote || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(RemoteRefused(addr))
    }
}

/// A daemon's heartbeat fields, as its heartbeat would send them now.
pub type Fields = Arc<dyn Fn() -> Map<String, Value> + Send + Sync>;

/// A registry holding one worker's own heartbeat fields.
pub fn worker_registry(worker: &'static catalogue::WorkerMetrics, fields: Fields) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HeartbeatCollector::new(move || {
        vec![HeartbeatSource { worker, labels: Vec::new(), fields: Value::Object(fields()) }]
    })));
    registry
}

/// Serve `worker`'s heartbeat `fields` as metrics when `args` asks for it
/// (see [`spawn`]): the one call a daemon makes.
pub async fn serve_worker(
    args: &MetricsArgs,
    worker: &'static catalogue::WorkerMetrics,
    fields: Fields,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    if args.metrics_listen.is_none() {
        return Ok(None);
    }
    spawn(args, worker_registry(worker, fields), shutdown).await
}

/// The exposition text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; a collector's own error would be a
    // bug, and a partial page still says more than none.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    text
}

/// Bind `args.listen` (checked) and serve `registry` until `shutdown`.
/// Nothing when no address was given. Errors: a refused or unbindable
/// address, so a daemon asked for metrics never runs silently without.
pub async fn spawn(
    args: &MetricsArgs,
    registry: Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = args.metrics_listen else { return Ok(None) };
    check_listen(addr, args.metrics_allow_remote)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-listen {addr}: cannot bind: {e}"))?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], encode(&registry)).into_response() }
        }),
    );
    tracing::info!(addr = %bound, "serving metrics on /metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_the_flag() {
        let lo: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9464".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:9464".parse().unwrap();
        assert_eq!(check_listen(lo, false), Ok(()));
        assert_eq!(check_listen(lo6, false), Ok(()));
        assert_eq!(check_listen(any, false), Err(RemoteRefused(any)));
        assert_eq!(check_listen(lan, false), Err(RemoteRefused(lan)));
        assert_eq!(check_listen(lan, true), Ok(()));
        assert!(RemoteRefused(any).to_string().contains("--metrics-allow-remote"));
    }

    #[test]
    fn every_daemon_takes_the_flags_without_a_clash() {
        // The flags are flattened into a dozen subcommands; clap only
        // notices an id used twice (a daemon's own --listen) when it builds
        // the command, so build them all.
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }

    #[test]
    fn heartbeat_fields_become_samples_and_missing_ones_none() {
        let fields: Fields = Arc::new(|| {
            serde_json::json!({
                "published": 7, "delivered": 5, "dropped": 2, "connections": 3,
                "federation": {"connected": true, "rejected": 4},
            })
            .as_object()
            .unwrap()
            .clone()
        });
        let text = encode(&worker_registry(&catalogue::BUS, fields));
        assert!(text.contains("# TYPE decnet_bus_events_delivered counter\n"), "{text}");
        assert!(text.contains("\ndecnet_bus_events_delivered_total 5.0\n"), "{text}");
        assert!(text.contains("\ndecnet_bus_events_dropped_total{reason=\"slow_subscriber\"} 2.0\n"), "{text}");
        assert!(text.contains("\ndecnet_bus_connections 3.0\n"), "{text}");
        assert!(text.contains("\ndecnet_federation_connected 1.0\n"), "{text}");
        assert!(text.contains("decnet_federation_events_dropped_total{reason=\"rejected\"} 4.0\n"), "{text}");
        assert!(!text.contains("decnet_federation_events_exported"), "not in the heartbeat, so no sample: {text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
