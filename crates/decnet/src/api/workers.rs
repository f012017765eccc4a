//! The workers routes (SPEC §7): list health, stop over the bus, start
//! through systemd.
//!
//! A worker name from the URL is checked twice before it is used: it must
//! match `^[a-z][a-z0-9_-]*$` (400 otherwise) and be on the known list (404
//! otherwise). Only then does it become a topic or a unit name.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use super::state::AppState;
use crate::auth::{RequireAdmin, RequireViewer};
use crate::registry::{WorkerHealth, WorkerStatus};
use crate::systemd::{self, StartFailure};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkersResponse {
    pub workers: Vec<WorkerStatus>,
    /// Unix time this answer was built.
    pub generated_at: f64,
    /// Whether the API's own bus connection is up right now.
    pub bus_connected: bool,
}

/// `?host=`: one host's rows, or the stop target.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HostFilter {
    /// A host id (a bus daemon's `--host-id`); default: every host for
    /// the list, this API's host for a stop.
    pub host: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StopAccepted {
    pub accepted: bool,
    pub worker: String,
    /// The host whose worker was asked to stop.
    pub host: String,
    /// Always `stop`.
    pub action: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StartResponse {
    pub started: bool,
    pub worker: String,
    pub unit: String,
}

/// A failed start as an error answer: `StartFailure` plus `error`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StartFailureBody {
    pub error: String,
    pub worker: String,
    pub returncode: i32,
    pub stderr: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StartAllResponse {
    pub started: Vec<String>,
    pub failed: Vec<StartFailure>,
}

/// 400 for a name that could never be a worker, 404 for one not on the list.
fn check_worker(state: &AppState, name: &str) -> Result<(), ApiError> {
    if !systemd::valid_worker_name(name) {
        let shown: String = name.chars().take(64).collect();
        return Err(ApiError::bad_request(format!(
            "invalid worker name {shown:?}: must match ^[a-z][a-z0-9_-]*$ and be at most 64 characters"
        )));
    }
    if !state.registry.is_known(name) {
        return Err(ApiError::not_found(format!("unknown worker {name:?}")));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/v1/workers",
    tag = "workers",
    security(("bearer" = [])),
    params(HostFilter),
    responses(
        (status = 200, description = "Every known worker of every host heard from (or of ?host=)", body = WorkersResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error looking up the token's user", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: RequireViewer,
    ApiQuery(filter): ApiQuery<HostFilter>,
) -> Json<WorkersResponse> {
    let installed = state.systemctl.installed().await;
    let now = decnet_bus::envelope::now_ts();
    let local = state.registry.local_host().to_owned();
    let workers = state
        .registry
        .snapshot_host(now, filter.host.as_deref())
        .into_iter()
        .map(|mut w| {
            // systemctl only knows this host's units.
            w.installed = w.host == local && installed.contains(&w.name);
            w
        })
        .collect();
    Json(WorkersResponse { workers, generated_at: now, bus_connected: state.bus.is_connected() })
}

#[utoipa::path(
    post,
    path = "/api/v1/workers/{name}/stop",
    tag = "workers",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Worker name from the known list"), HostFilter),
    responses(
        (status = 202, description = "Stop request naming its host published on system.<name>.control", body = StopAccepted),
        (status = 400, description = "Invalid worker name", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown worker or host", body = ErrorBody),
        (status = 503, description = "Bus down", body = ErrorBody),
        (status = 500, description = "Database error looking up the token's user", body = ErrorBody),
    )
)]
pub async fn stop(
    State(state): State<AppState>,
    RequireAdmin(user): RequireAdmin,
    ApiPath(name): ApiPath<String>,
    ApiQuery(filter): ApiQuery<HostFilter>,
) -> Result<(StatusCode, Json<StopAccepted>), ApiError> {
    check_worker(&state, &name)?;
    // The intent names its host: with federated buses every host's worker
    // of this name hears it, and only the named host's obeys.
    let host = filter.host.unwrap_or_else(|| state.registry.local_host().to_owned());
    if !state.registry.is_known_host(&host) {
        let shown: String = host.chars().take(64).collect();
        return Err(ApiError::not_found(format!("unknown host {shown:?}: no heartbeat seen from it")));
    }
    let topic = decnet_bus::topics::system_control(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let bus = match state.bus.get().await {
        Some(bus) if bus.is_connected() => bus,
        _ => return Err(ApiError::unavailable("bus is not connected; the stop request was not sent")),
    };
    let payload = serde_json::json!({
        "action": "stop", "host": host, "requested_by": user.username, "ts": decnet_bus::envelope::now_ts()
    });
    bus.publish(topic.as_str(), "control", payload)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot publish the stop request: {e}")))?;
    tracing::info!(worker = %name, host = %host, by = %user.username, "stop requested");
    Ok((StatusCode::ACCEPTED, Json(StopAccepted { accepted: true, worker: name, host, action: "stop".into() })))
}

fn start_failure(f: StartFailure) -> ApiError {
    let message = format!("systemctl start {} failed with code {}", systemd::unit_name(&f.worker), f.returncode);
    ApiError::with_fields(StatusCode::BAD_GATEWAY, message, f)
}

#[utoipa::path(
    post,
    path = "/api/v1/workers/{name}/start",
    tag = "workers",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Worker name from the known list"), HostFilter),
    responses(
        (status = 200, description = "decnet-<name>.service started", body = StartResponse),
        (status = 400, description = "Invalid worker name, or ?host= names another host (start is local)", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
        (status = 502, description = "systemctl failed (StartFailure)", body = StartFailureBody),
        (status = 500, description = "Database error looking up the token's user", body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    RequireAdmin(user): RequireAdmin,
    ApiPath(name): ApiPath<String>,
    ApiQuery(filter): ApiQuery<HostFilter>,
) -> Result<Json<StartResponse>, ApiError> {
    check_worker(&state, &name)?;
    // A stop travels over the (federated) bus; a start is `systemctl` on
    // this API's own machine, and the SPEC has no path to start a unit on
    // another host. Say so instead of starting the local unit.
    if let Some(host) = filter.host.as_deref().filter(|h| *h != state.registry.local_host()) {
        let shown: String = host.chars().take(64).collect();
        return Err(ApiError::bad_request(format!(
            "cannot start a worker on host {shown:?} from this API: start runs systemctl on the API's own host ({}); \
             use that host's API (decnet workers start {name} --api URL)",
            state.registry.local_host()
        )));
    }
    tracing::info!(worker = %name, by = %user.username, "start requested");
    state.systemctl.start(&name).await.map_err(start_failure)?;
    Ok(Json(StartResponse { started: true, unit: systemd::unit_name(&name), worker: name }))
}

#[utoipa::path(
    post,
    path = "/api/v1/workers/start-all",
    tag = "workers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every installed known worker was asked to start", body = StartAllResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 500, description = "Database error looking up the token's user", body = ErrorBody),
    )
)]
pub async fn start_all(State(state): State<AppState>, RequireAdmin(user): RequireAdmin) -> Json<StartAllResponse> {
    tracing::info!(by = %user.username, "start-all requested");
    let installed = state.systemctl.installed().await;
    let mut started = Vec::new();
    let mut failed = Vec::new();
    // Known-list order (bus before the workers that need it); only units
    // that exist, so an absent optional worker is not a failure.
    for name in state.registry.known().iter().filter(|n| installed.contains(*n)) {
        match state.systemctl.start(name).await {
            Ok(()) => started.push(name.clone()),
            Err(f) => failed.push(f),
        }
    }
    Json(StartAllResponse { started, failed })
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, stop, start, start_all),
    components(schemas(
        WorkersResponse,
        WorkerStatus,
        WorkerHealth,
        StopAccepted,
        StartResponse,
        StartFailureBody,
        StartAllResponse,
        StartFailure,
        ErrorBody
    ))
)]
pub struct WorkersDoc;
