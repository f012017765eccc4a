//! The topology routes (SPEC §7): create, list, show, deploy, and the
//! mutation queue.
//!
//! Every change is committed to the database first and only then announced
//! on the bus (`topology.<id>.status`, `topology.<id>.mutation.enqueued`), so
//! a subscriber that reacts to an event always finds the row; the announce
//! is best-effort and a dead bus never fails the request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use decnet_bus::topics::MutationState as BusMutationState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::state::AppState;
use crate::auth::{RequireAdmin, RequireViewer};
use crate::store::topology::{self as store, Mutation, Topology, TopologyStoreError};
use crate::topology::{Decky, MutationOp, MutationState, TopologyStatus};
use crate::topology_events::TopologyEvent;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopology {
    pub name: String,
    #[serde(default)]
    pub deckies: Vec<Decky>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopologyCreated {
    pub id: String,
    /// Always `pending`.
    pub status: TopologyStatus,
    pub version: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopologyList {
    pub topologies: Vec<Topology>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployAccepted {
    pub id: String,
    /// Always `deploying`; the mutator moves it to `active` or `failed`.
    pub status: TopologyStatus,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueMutation {
    /// `add_decky`, `remove_decky` or `set_services`.
    pub op: String,
    /// `add_decky`: `{name, services}`; `remove_decky`: `{name}`;
    /// `set_services`: `{decky, services}`.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The topology version the client based this change on; a different
    /// current version answers 409.
    pub expected_version: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MutationAccepted {
    pub mutation_id: i64,
    /// Always `pending`.
    pub state: MutationState,
    /// The topology version after this mutation was queued.
    pub version: i64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MutationFilter {
    /// Only rows in this state.
    pub state: Option<MutationState>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MutationList {
    pub topology_id: String,
    pub mutations: Vec<Mutation>,
}

/// The HTTP answer for each store failure.
impl From<TopologyStoreError> for ApiError {
    fn from(e: TopologyStoreError) -> Self {
        let message = e.to_string();
        match e {
            TopologyStoreError::NotFound(_) | TopologyStoreError::MutationNotFound(_) => ApiError::not_found(message),
            TopologyStoreError::Invalid(_) => ApiError::bad_request(message),
            TopologyStoreError::NotMutable { status, .. } => {
                ApiError::with_fields(StatusCode::CONFLICT, message, serde_json::json!({ "status": status }))
            }
            TopologyStoreError::VersionConflict { current, expected, .. } => ApiError::with_fields(
                StatusCode::CONFLICT,
                message,
                serde_json::json!({ "current_version": current, "expected_version": expected }),
            ),
            TopologyStoreError::Transition(t) => ApiError::with_fields(
                StatusCode::CONFLICT,
                message,
                serde_json::json!({ "status": t.from, "requested": t.to }),
            ),
            TopologyStoreError::MutationState { .. } => ApiError::conflict(message),
            TopologyStoreError::Db(_) | TopologyStoreError::Corrupt(_) => ApiError::internal(message),
        }
    }
}

async fn publish(state: &AppState, event: Result<TopologyEvent, decnet_bus::TopicError>) {
    match event {
        Ok(event) => {
            state.event_streams.echo(&event);
            let bus = state.bus.get().await;
            event.publish(bus.as_deref()).await;
        }
        Err(e) => tracing::warn!(error = %e, "cannot build topology event topic"),
    }
}

async fn existing(state: &AppState, id: &str) -> Result<Topology, ApiError> {
    store::get_topology(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no topology with id {id:?}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/topologies",
    tag = "topologies",
    security(("bearer" = [])),
    request_body = CreateTopology,
    responses(
        (status = 201, description = "Created in status pending", body = TopologyCreated),
        (status = 400, description = "Malformed body, bad name, unknown service or duplicate decky", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 413, description = "Body over the 64 KiB limit", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    RequireAdmin(_user): RequireAdmin,
    ApiJson(body): ApiJson<CreateTopology>,
) -> Result<(StatusCode, Json<TopologyCreated>), ApiError> {
    let topology = store::create_topology(&state.pool, &body.name, &body.deckies).await?;
    Ok((
        StatusCode::CREATED,
        Json(TopologyCreated { id: topology.id, status: topology.status, version: topology.version }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/topologies",
    tag = "topologies",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every topology with its deckies", body = TopologyList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    RequireViewer(_user): RequireViewer,
) -> Result<Json<TopologyList>, ApiError> {
    Ok(Json(TopologyList { topologies: store::list_topologies(&state.pool).await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/topologies/{id}",
    tag = "topologies",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Topology id")),
    responses(
        (status = 200, description = "The topology", body = Topology),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such topology", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    RequireViewer(_user): RequireViewer,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Topology>, ApiError> {
    Ok(Json(existing(&state, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/topologies/{id}/deploy",
    tag = "topologies",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Topology id")),
    responses(
        (status = 202, description = "Status is now deploying; the mutator runs the deploy", body = DeployAccepted),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such topology", body = ErrorBody),
        (status = 409, description = "Its status cannot go to deploying (e.g. already deploying)", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn deploy(
    State(state): State<AppState>,
    RequireAdmin(_user): RequireAdmin,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<DeployAccepted>), ApiError> {
    let change = store::set_status(&state.pool, &id, TopologyStatus::Deploying).await?;
    publish(&state, TopologyEvent::status(&id, change)).await;
    Ok((StatusCode::ACCEPTED, Json(DeployAccepted { id, status: change.status })))
}

#[utoipa::path(
    post,
    path = "/api/v1/topologies/{id}/mutations",
    tag = "topologies",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Topology id")),
    request_body = EnqueueMutation,
    responses(
        (status = 202, description = "Queued (committed, then published as mutation.enqueued)", body = MutationAccepted),
        (status = 400, description = "Unknown op, bad payload, unknown service, duplicate or missing decky", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such topology", body = ErrorBody),
        (status = 409, description = "Topology not active/degraded, or expected_version is stale", body = ErrorBody),
        (status = 413, description = "Body over the 64 KiB limit", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn enqueue(
    State(state): State<AppState>,
    RequireAdmin(_user): RequireAdmin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EnqueueMutation>,
) -> Result<(StatusCode, Json<MutationAccepted>), ApiError> {
    // 404 before 400: a bad op against a topology that does not exist is
    // reported as the missing topology.
    existing(&state, &id).await?;
    let op = MutationOp::parse(&body.op, &body.payload).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let queued = store::enqueue_mutation_with_version(&state.pool, &id, &op, body.expected_version).await?;
    publish(&state, TopologyEvent::mutation(&queued.mutation, BusMutationState::Enqueued)).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(MutationAccepted {
            mutation_id: queued.mutation.id,
            state: queued.mutation.state,
            version: queued.version,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/topologies/{id}/mutations",
    tag = "topologies",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Topology id"), MutationFilter),
    responses(
        (status = 200, description = "The mutation rows, oldest first", body = MutationList),
        (status = 400, description = "Unknown state", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such topology", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn mutations(
    State(state): State<AppState>,
    RequireViewer(_user): RequireViewer,
    ApiPath(id): ApiPath<String>,
    ApiQuery(filter): ApiQuery<MutationFilter>,
) -> Result<Json<MutationList>, ApiError> {
    existing(&state, &id).await?;
    let mutations = store::list_mutations(&state.pool, &id, filter.state).await?;
    Ok(Json(MutationList { topology_id: id, mutations }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, show, deploy, enqueue, mutations),
    components(schemas(
        CreateTopology,
        TopologyCreated,
        TopologyList,
        Topology,
        Decky,
        TopologyStatus,
        DeployAccepted,
        EnqueueMutation,
        MutationAccepted,
        MutationList,
        Mutation,
        MutationState
    ))
)]
pub struct TopologiesDoc;
