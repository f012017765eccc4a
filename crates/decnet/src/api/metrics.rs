//! The API's metrics: requests by route and status (counted here, by a
//! middleware), its in-process ingester, and the last heartbeat of every
//! worker the registry heard, so one scrape covers the installation.
//! Served by `decnet api --metrics-listen` (see [`crate::metrics`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::ingest::IngestStats;
use crate::metrics::catalogue::{self, Kind};
use crate::metrics::render::encode_points;
use crate::metrics::{HeartbeatCollector, HeartbeatSource};
use crate::registry::{WorkerHealth, WorkerRegistry};

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// `decnet_api_requests_total{route, method, status}`.
    requests: Family<Labels, Counter>,
    /// All requests, for the heartbeat (the family has no sum).
    requests_total: AtomicU64,
    /// The ingester running in this process, if one does.
    pub ingest: Option<Arc<IngestStats>>,
}

impl ApiMetrics {
    pub fn with_ingest(ingest: Option<Arc<IngestStats>>) -> Self {
        ApiMetrics { ingest, ..Default::default() }
    }

    /// Count one answered request. `route` is the route's pattern
    /// (`/api/v1/attackers/{ip}`), never the path asked for, and methods
    /// outside the usual few are `other`: a scanner cannot grow the
    /// number of series.
    pub fn count(&self, route: &str, method: &axum::http::Method, status: u16) {
        let method = match method.as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
            _ => "other",
        };
        let labels = vec![("route", route.to_owned()), ("method", method.to_owned()), ("status", status.to_string())];
        self.requests.get_or_create(&labels).inc();
        self.requests_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The API heartbeat's extra fields: its request count and, when it
    /// runs one, its ingester's counters.
    pub fn health_extra(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("requests".into(), self.requests_total.load(Ordering::Relaxed).into());
        if let Some(ingest) = &self.ingest {
            m.insert("ingester".into(), crate::cli::ingest::ingest_extra(ingest).into());
        }
        m
    }
}

/// The middleware counting every request by its matched route.
pub async fn count_requests(State(metrics): State<Arc<ApiMetrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.count(route.as_deref().unwrap_or("unmatched"), &method, response.status().as_u16());
    response
}

/// Everything `decnet api --metrics-listen` serves.
pub fn registry(metrics: Arc<ApiMetrics>, workers: Arc<WorkerRegistry>) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        catalogue::API_REQUESTS.trim_end_matches("_total"),
        "HTTP requests answered, by route pattern, method and status.",
        metrics.requests.clone(),
    );
    let heard = workers.clone();
    registry.register_collector(Box::new(HeartbeatCollector::new(move || {
        let mut sources = Vec::new();
        if let Some(ingest) = &metrics.ingest {
            sources.push(HeartbeatSource {
                worker: &catalogue::INGESTER,
                labels: vec![("host".into(), heard.local_host().to_owned()), ("worker".into(), "api".into())],
                fields: crate::cli::ingest::ingest_extra(ingest).into(),
            });
        }
        for row in heard.snapshot(decnet_bus::envelope::now_ts()) {
            let Some(worker) = catalogue::for_worker(&row.name) else { continue };
            if row.status == WorkerHealth::Unknown {
                continue;
            }
            sources.push(HeartbeatSource {
                worker,
                labels: vec![("host".into(), row.host.clone()), ("worker".into(), row.name.clone())],
                fields: row.extra.clone(),
            });
        }
        sources
    })));
    registry.register_collector(Box::new(WorkerLiveness(workers)));
    registry
}

/// `decnet_worker_up` and `decnet_worker_heartbeat_age_seconds` for every
/// row of the worker registry.
#[derive(Debug)]
struct WorkerLiveness(Arc<WorkerRegistry>);

impl Collector for WorkerLiveness {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.0.snapshot(decnet_bus::envelope::now_ts());
        let labels =
            |host: &str, name: &str| vec![("host".to_owned(), host.to_owned()), ("worker".to_owned(), name.to_owned())];
        let up: Vec<_> = rows
            .iter()
            .map(|r| (labels(&r.host, &r.name), if r.status == WorkerHealth::Ok { 1.0 } else { 0.0 }))
            .collect();
        let age: Vec<_> = rows.iter().filter_map(|r| Some((labels(&r.host, &r.name), r.seconds_since?))).collect();
        encode_points(
            &mut encoder,
            catalogue::WORKER_UP,
            "1 while the worker's heartbeats arrive (status ok), 0 when stale or never heard.",
            Kind::Gauge,
            &up,
        )?;
        encode_points(
            &mut encoder,
            catalogue::WORKER_HEARTBEAT_AGE,
            "Seconds since the worker's last heartbeat.",
            Kind::Gauge,
            &age,
        )
    }
}
