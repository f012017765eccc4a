//! `/api/v1/webhooks`: alert webhooks, admins only (docs/alerts.md).
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/webhooks` | `{webhooks: [WebhookView]}` |
//! | `POST /api/v1/webhooks` | 201 `WebhookView` |
//! | `GET /api/v1/webhooks/{id}` | `WebhookView` |
//! | `PATCH /api/v1/webhooks/{id}` | `WebhookView` (fields given replace the stored ones) |
//! | `DELETE /api/v1/webhooks/{id}` | 204 |
//! | `POST /api/v1/webhooks/{id}/test` | `DeliveryOutcome` of one test notification |
//! | `GET /api/v1/webhooks/deliveries?webhook=&limit=` | `{deliveries: [Delivery]}` newest first |
//! | `GET /api/v1/siem` | `SiemStats`, or `{enabled: false}` |
//!
//! `{id}` is the number or the name. The URL is write-only: every answer
//! carries `destination`, its redacted form, since Slack and Teams URLs
//! are bearer secrets and viewers of a screen share should not get one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::state::AppState;
use crate::alerts::DeliveryOutcome;
use crate::auth::RequireAdmin;
use crate::store::webhooks::{self as store, Delivery, NewWebhook, Webhook, WebhookError, WebhookFormat};

/// A webhook as the API shows it: never the URL itself.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub name: String,
    /// `scheme://host[:port]/…`: the URL with its path and query hidden.
    pub destination: String,
    pub format: WebhookFormat,
    pub topics: Vec<String>,
    pub rate_per_min: u32,
    pub enabled: bool,
    pub created_by: Option<String>,
    pub created_at: f64,
}

impl From<&Webhook> for WebhookView {
    fn from(h: &Webhook) -> Self {
        WebhookView {
            id: h.id,
            name: h.name.clone(),
            destination: h.destination(),
            format: h.format,
            topics: h.topics.clone(),
            rate_per_min: h.rate_per_min,
            enabled: h.enabled,
            created_by: h.created_by.clone(),
            created_at: h.created_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub name: String,
    pub url: String,
    #[serde(default = "default_format")]
    pub format: WebhookFormat,
    pub topics: Vec<String>,
    /// Notifications per minute at most (default 30).
    pub rate_per_min: Option<u32>,
    pub enabled: Option<bool>,
}

fn default_format() -> WebhookFormat {
    WebhookFormat::Json
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub name: Option<String>,
    pub url: Option<String>,
    pub format: Option<WebhookFormat>,
    pub topics: Option<Vec<String>>,
    pub rate_per_min: Option<u32>,
    pub enabled: Option<bool>,
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Duplicate(_) => ApiError::conflict(e.to_string()),
            WebhookError::Invalid(m) => ApiError::bad_request(m),
            WebhookError::Db(e) => ApiError::internal(format!("database error: {e}")),
        }
    }
}

async fn lookup(state: &AppState, key: &str) -> Result<Webhook, ApiError> {
    store::find(&state.pool, key).await?.ok_or_else(|| ApiError::not_found(format!("no webhook {key:?}")))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "alerts", security(("bearer" = [])),
    responses((status = 200, description = "`{webhooks: [WebhookView]}`"),
              (status = 401, body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    RequireAdmin(_admin): RequireAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hooks = store::list(&state.pool).await?;
    Ok(Json(json!({"webhooks": hooks.iter().map(WebhookView::from).collect::<Vec<_>>()})))
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "alerts", security(("bearer" = [])), request_body = CreateWebhook,
    responses((status = 201, body = WebhookView), (status = 400, description = "Bad URL, topic, name or rate", body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, description = "Name taken", body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 413, description = "Body too large", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let hook = NewWebhook {
        name: body.name,
        url: body.url,
        format: body.format,
        topics: body.topics,
        rate_per_min: body.rate_per_min.unwrap_or(store::DEFAULT_RATE_PER_MIN),
        enabled: body.enabled.unwrap_or(true),
    };
    let created = store::create(&state.pool, &hook, Some(&admin.username)).await?;
    tracing::info!(webhook = %created.name, destination = %created.destination(), by = %admin.username, "webhook added");
    Ok((StatusCode::CREATED, Json(WebhookView::from(&created))))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id or name")),
    responses((status = 200, body = WebhookView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    RequireAdmin(_admin): RequireAdmin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(WebhookView::from(&lookup(&state, &id).await?)))
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "alerts", security(("bearer" = [])), request_body = UpdateWebhook,
    params(("id" = String, Path, description = "Webhook id or name")),
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 413, description = "Body too large", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let old = lookup(&state, &id).await?;
    let merged = NewWebhook {
        name: body.name.unwrap_or(old.name),
        url: body.url.unwrap_or(old.url),
        format: body.format.unwrap_or(old.format),
        topics: body.topics.unwrap_or(old.topics),
        rate_per_min: body.rate_per_min.unwrap_or(old.rate_per_min),
        enabled: body.enabled.unwrap_or(old.enabled),
    };
    if !store::update(&state.pool, old.id, &merged).await? {
        return Err(ApiError::not_found(format!("no webhook {id:?}")));
    }
    let hook =
        store::get(&state.pool, old.id).await?.ok_or_else(|| ApiError::not_found(format!("no webhook {id:?}")))?;
    tracing::info!(webhook = %hook.name, by = %admin.username, "webhook changed");
    Ok(Json(WebhookView::from(&hook)))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id or name")),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let hook = lookup(&state, &id).await?;
    store::delete(&state.pool, hook.id).await?;
    tracing::info!(webhook = %hook.name, by = %admin.username, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "alerts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id or name")),
    responses((status = 200, description = "How the test went (delivered or failed, with the error)", body = DeliveryOutcome),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeliveryOutcome>, ApiError> {
    let hook = lookup(&state, &id).await?;
    Ok(Json(state.alerts.send_test(&state.pool, &hook, &admin.username).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveriesQuery {
    /// Only this webhook's (id or name).
    pub webhook: Option<String>,
    /// Rows at most, 1-1000 (default 100).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/deliveries", tag = "alerts", security(("bearer" = [])), params(DeliveriesQuery),
    responses((status = 200, description = "`{deliveries: [Delivery]}`, newest first"), (status = 403, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    RequireAdmin(_admin): RequireAdmin,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to 1000, got {limit}")));
    }
    let webhook = match q.webhook {
        Some(key) => Some(lookup(&state, &key).await?.id),
        None => None,
    };
    let rows: Vec<Delivery> = store::recent_deliveries(&state.pool, webhook, limit).await?;
    Ok(Json(json!({"deliveries": rows})))
}

#[utoipa::path(get, path = "/api/v1/siem", tag = "alerts", security(("bearer" = [])),
    responses((status = 200, description = "`SiemStats` with `enabled: true`, or `{enabled: false}`"), (status = 403, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 500, description = "Database error", body = ErrorBody)))]
pub async fn siem(State(state): State<AppState>, RequireAdmin(_admin): RequireAdmin) -> Json<serde_json::Value> {
    match state.alerts.siem() {
        Some(s) => {
            let mut v = serde_json::to_value(s.stats()).unwrap_or_default();
            v["enabled"] = true.into();
            Json(v)
        }
        None => Json(json!({"enabled": false})),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, create, show, update, delete, test, deliveries, siem),
    components(schemas(
        WebhookView,
        CreateWebhook,
        UpdateWebhook,
        WebhookFormat,
        Delivery,
        DeliveryOutcome,
        store::DeliveryStatus,
        crate::alerts::siem::SiemStats
    ))
)]
pub struct WebhooksDoc;
