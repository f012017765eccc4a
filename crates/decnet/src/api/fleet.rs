//! `GET /api/v1/fleet`: every decky the mutator knows, its address and
//! services, and its recent mutation history (from `decky_mutations`).
//! Each decky also says what it really serves (`listeners`: per service
//! the port and whether it is `listening`, `not_served`, `pending` or
//! `down` with the cause) and who it pretends to be (`persona`), so the
//! Fleet page never shows a service nobody answers on as live.

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
        "SELECT name, archetype, services, interval_minutes, last_mutated, deployed, address, serving, persona
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
        let services: Vec<String> = serde_json::from_str(&services).unwrap_or_default();
        let deployed = r.try_get::<i64, _>("deployed")? != 0;
        let serving: Option<String> = r.try_get("serving")?;
        let address: Option<String> = r.try_get("address")?;
        let archetype: Option<String> = r.try_get("archetype")?;
        let overrides: Option<String> = r.try_get("persona")?;
        let listeners: Vec<Value> =
            services.iter().map(|s| listener(s, deployed, serving.as_deref(), port_offset())).collect();
        deckies.push(json!({
            "listeners": listeners,
            "persona": persona_summary(&name, archetype.as_deref(), address.as_deref(), overrides.as_deref()),
            "name": name,
            "address": address,
            "archetype": archetype,
            "services": services,
            "deployed": deployed,
            "last_mutated": r.try_get::<Option<f64>, _>("last_mutated")?,
            "interval_minutes": r.try_get::<i64, _>("interval_minutes")?,
            "mutations": mutations,
            // null: the mutator has not opened it yet; "ok"; or why it cannot.
            "serving": serving,
        }));
    }
    Ok(Json(json!({ "deckies": deckies })))
}

/// The port offset native deckies add to each default port
/// (`DECNET_NATIVE_PORT_OFFSET`, which `decnet up` hands every child).
fn port_offset() -> u16 {
    std::env::var("DECNET_NATIVE_PORT_OFFSET").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One service of a decky as an attacker would find it. Only a deployed
/// decky the mutator reported `ok` for is `listening`; a catalogue service
/// decnet has no native honeypot for is `not_served` whatever the fleet says.
fn listener(service: &str, deployed: bool, serving: Option<&str>, offset: u16) -> Value {
    let Some(port) = decnet_decky::default_port(service) else {
        return json!({"service": service, "port": null, "state": "not_served",
                      "detail": "decnet has no native honeypot for this service"});
    };
    let port = port.saturating_add(offset);
    let (state, detail) = match (deployed, serving) {
        (false, _) => ("down", Some("torn down")),
        (true, Some("ok")) => ("listening", None),
        (true, None) => ("pending", Some("the mutator has not opened it yet")),
        (true, Some(cause)) => ("down", Some(cause)),
    };
    json!({"service": service, "port": port, "state": state, "detail": detail})
}

/// Who the decky pretends to be: the persona the mutator derives from its
/// name, archetype and address, with the fleet file's overrides.
fn persona_summary(name: &str, archetype: Option<&str>, address: Option<&str>, overrides: Option<&str>) -> Value {
    let address = address.and_then(|a| a.parse().ok());
    let mut persona = decnet_decky::Persona::derive(name, archetype, address, 0);
    if let Some(o) = overrides.and_then(|o| serde_json::from_str::<Value>(o).ok()) {
        match persona.clone().with_overrides(&o) {
            Ok(p) => persona = p,
            Err(e) => return json!({"error": format!("persona overrides rejected: {e}")}),
        }
    }
    json!({"hostname": persona.hostname, "os": persona.pretty_name, "kernel": persona.kernel_release,
           "archetype": persona.archetype})
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct FleetDoc;
