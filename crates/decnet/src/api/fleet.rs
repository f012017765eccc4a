//! `GET /api/v1/fleet`: every decky the mutator knows, its address and
//! services, and its recent mutation history (from `decky_mutations`).
//! The dashboard's first screen.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use sqlx::Row;

use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use crate::auth::RequireViewer;
use crate::profiler::correlation::mutation_from_row;

/// Mutations listed per decky (newest first).
pub const HISTORY_LIMIT: i64 = 20;

#[utoipa::path(
    get, path = "/api/v1/fleet", tag = "attackers", security(("bearer" = [])),
    responses(
        (status = 200, description = "`{deckies: [{name, address, archetype, services, deployed, last_mutated, interval_minutes, mutations}]}`"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    RequireViewer(_viewer): RequireViewer,
) -> Result<Json<Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT name, archetype, services, interval_minutes, last_mutated, deployed, address, serving
         FROM fleet_deckies ORDER BY deployed DESC, name",
    )
    .fetch_all(&state.pool)
    .await?;
    let mut deckies = Vec::with_capacity(rows.len());
    for r in &rows {
        let name: String = r.try_get("name")?;
        let mutations = sqlx::query(
            "SELECT timestamp, decky, old_services, new_services, trigger, actor FROM decky_mutations
             WHERE decky = ? ORDER BY timestamp DESC, id DESC LIMIT ?",
        )
        .bind(&name)
        .bind(HISTORY_LIMIT)
        .fetch_all(&state.pool)
        .await?
        .iter()
        .map(mutation_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let services: String = r.try_get("services")?;
        deckies.push(json!({
            "name": name,
            "address": r.try_get::<Option<String>, _>("address")?,
            "archetype": r.try_get::<Option<String>, _>("archetype")?,
            "services": serde_json::from_str::<Value>(&services).unwrap_or(Value::Array(vec![])),
            "deployed": r.try_get::<i64, _>("deployed")? != 0,
            "last_mutated": r.try_get::<Option<f64>, _>("last_mutated")?,
            "interval_minutes": r.try_get::<i64, _>("interval_minutes")?,
            "mutations": mutations,
            // null: the mutator has not opened it yet; "ok"; or why it cannot.
            "serving": r.try_get::<Option<String>, _>("serving")?,
        }));
    }
    Ok(Json(json!({ "deckies": deckies })))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct FleetDoc;
