//! The HTTP control plane (SPEC §7): an axum router over [`AppState`].
//!
//! [`router`] builds the routes and middleware, [`serve`] runs them on a
//! listener together with the background tasks the API needs (worker
//! registry, own heartbeat) until a shutdown future resolves. `decnet api`,
//! `decnet up` and the integration tests all go through these two, so what
//! is tested is what runs. Each route group lives in its own file and
//! contributes its OpenAPI fragment to [`openapi`].

pub mod artifacts;
pub mod assets;
pub mod attacker_events;
pub mod attackers;
pub mod console;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod fleet;
pub mod limits;
pub mod login;
pub mod logs;
pub mod metrics;
pub mod recordings;
pub mod redact;
pub mod revocation;
pub mod serve;
pub mod state;
pub mod topologies;
pub mod webhooks;
pub mod workers;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
pub use state::{ApiConfig, AppState, EvidenceDirs};

/// Largest request body accepted; the API takes small JSON documents only.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a handler may take to produce its response head. (Streaming
/// bodies such as SSE are not cut: the timeout ends at the headers.)
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Every route, with tracing, a timeout and a body-size limit (413 with
/// the usual JSON error body).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/static/asciinema-player.js", get(assets::player_js))
        .route("/static/asciinema-player.css", get(assets::player_css))
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/auth/login", post(login::login))
        .route("/api/v1/workers", get(workers::list))
        .route("/api/v1/workers/start-all", post(workers::start_all))
        .route("/api/v1/workers/{name}/stop", post(workers::stop))
        .route("/api/v1/workers/{name}/start", post(workers::start))
        .route("/api/v1/topologies", post(topologies::create).get(topologies::list))
        .route("/api/v1/topologies/{id}", get(topologies::show))
        .route("/api/v1/topologies/{id}/deploy", post(topologies::deploy))
        .route("/api/v1/topologies/{id}/mutations", post(topologies::enqueue).get(topologies::mutations))
        .route("/api/v1/topologies/{id}/events", get(events::events))
        .route("/api/v1/attackers", get(attackers::list))
        .route("/api/v1/attackers/stream", get(attacker_events::stream))
        .route("/api/v1/attackers/{ip}", get(attackers::show))
        .route("/api/v1/attackers/{ip}/artifacts", get(artifacts::for_attacker))
        .route("/api/v1/attackers/{ip}/sessions", get(recordings::for_attacker))
        .route("/api/v1/artifacts/{sha256}", get(artifacts::download))
        .route("/api/v1/recordings/{sid}", get(recordings::cast))
        .route("/api/v1/identities", get(attackers::identities))
        .route("/api/v1/logs", get(logs::list))
        .route("/api/v1/fleet", get(fleet::list))
        .route("/api/v1/overview", get(console::overview))
        .route("/api/v1/credentials", get(console::credentials))
        .route("/api/v1/sessions", get(console::sessions))
        .route("/api/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/api/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route("/api/v1/webhooks/{id}", get(webhooks::show).patch(webhooks::update).delete(webhooks::delete))
        .route("/api/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/api/v1/siem", get(webhooks::siem))
        .fallback(no_such_route)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // Outside the limit, so it sees (and turns into JSON) the limit's own 413.
        .layer(axum::middleware::map_response(error::json_payload_too_large))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
        // Spans carry the URI with `token=` values blanked: SSE clients
        // authenticate in the query string, and debug logs must not hold
        // working credentials.
        .layer(TraceLayer::new_for_http().make_span_with(redact::make_span))
        // Outermost, so the limits' own 413 and 503 are counted too.
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::count_requests))
        .with_state(state)
}

/// Serve `router(state)` on `listener` until `shutdown` resolves, running
/// the worker registry and the API's own heartbeat alongside. Connections
/// are bounded in number and in how long they may take to send a request
/// head (see [`serve`] and `state.limits`). On shutdown
/// `state.shutdown` is cancelled (ending SSE streams and background tasks)
/// and in-flight requests are allowed to finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cancel = state.shutdown.clone();
    let registry = tokio::spawn(state.registry.clone().run(state.bus.clone(), cancel.clone()));
    let heartbeat = tokio::spawn(heartbeat(state.clone()));
    let alerts = tokio::spawn(crate::alerts::run(state.clone()));
    let limits = state.limits.clone();
    let app = router(state);
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stop.cancelled() => {}
        }
        stop.cancel();
    });
    let result = serve::run(listener, app, limits, cancel.clone()).await;
    cancel.cancel();
    let _ = tokio::join!(registry, heartbeat, alerts);
    result
}

/// Publish `system.api.health` every `config.heartbeat_interval` while the
/// bus is up. The bus never echoes an event to the connection that
/// published it, so the API's registry cannot hear its own heartbeat:
/// each one that goes out is also recorded locally.
async fn heartbeat(state: AppState) {
    let topic = match decnet_bus::topics::system_health("api") {
        Ok(t) => t,
        Err(e) => return tracing::error!(error = %e, "cannot build the API heartbeat topic"),
    };
    let mut tick = tokio::time::interval(state.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(bus) = state.bus.get().await.filter(|b| b.is_connected()) else { continue };
        let metrics = state.metrics.clone();
        let extra: decnet_bus::sdk::HealthExtra = std::sync::Arc::new(move || Ok(metrics.health_extra()));
        let payload = decnet_bus::sdk::health_payload("api", Some(&extra));
        match bus.publish(topic.as_str(), "health", payload).await {
            Ok(()) => {
                let fields = serde_json::Value::Object(state.metrics.health_extra());
                state.registry.record("api", decnet_bus::envelope::now_ts(), fields);
            }
            Err(e) => tracing::debug!(error = %e, "API heartbeat not published"),
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    /// Always `ok` when the API answers.
    pub status: String,
    pub bus_connected: bool,
}

/// Liveness probe: no auth, no database.
#[utoipa::path(get, path = "/api/v1/health", tag = "meta", responses((status = 200, body = HealthResponse)))]
pub async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok".into(), bus_connected: state.bus.is_connected() })
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

async fn no_such_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "decnet control plane", description = "Worker registry, worker control, topologies and mutations."),
    paths(health, openapi_json),
    components(schemas(HealthResponse, ErrorBody)),
    modifiers(&BearerAuth)
)]
struct MetaDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The whole document: one fragment per route group, merged.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = MetaDoc::openapi();
    doc.merge(login::LoginDoc::openapi());
    doc.merge(workers::WorkersDoc::openapi());
    doc.merge(topologies::TopologiesDoc::openapi());
    doc.merge(events::EventsDoc::openapi());
    doc.merge(attackers::AttackersDoc::openapi());
    doc.merge(attacker_events::AttackerEventsDoc::openapi());
    doc.merge(artifacts::ArtifactsDoc::openapi());
    doc.merge(recordings::RecordingsDoc::openapi());
    doc.merge(logs::LogsDoc::openapi());
    doc.merge(fleet::FleetDoc::openapi());
    doc.merge(console::ConsoleDoc::openapi());
    doc.merge(webhooks::WebhooksDoc::openapi());
    doc
}
