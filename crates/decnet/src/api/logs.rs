//! `GET /api/v1/logs`: the collector's rows, newest first, filtered and
//! paged by cursor.
//!
//! Rows are ordered by `(timestamp, id)` descending: by event time, since
//! a forwarder may deliver old lines late, with the id to break ties. The
//! cursor is the `(timestamp, id)` of the previous page's last row
//! (`next_cursor`, written `TIMESTAMP:ID`), not an offset: a page costs the
//! same at row one million as at row one, and rows arriving meanwhile never
//! shift a page. Every filter column has a `(column, timestamp)` index
//! (migration 0005, the rowid is its last key), so SQLite walks the matches
//! already in order and stops after `limit`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::attackers::{check_name, check_time, Bind};
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::state::AppState;
use crate::auth::RequireViewer;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    pub decky: Option<String>,
    pub service: Option<String>,
    /// Attacker IP (exact).
    pub ip: Option<String>,
    /// Event type (`login_attempt`, `command`, …).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Unix time, inclusive.
    pub since: Option<f64>,
    /// Unix time, inclusive.
    pub until: Option<f64>,
    /// Rows per page (1–1000, default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (`TIMESTAMP:ID`): the rows after it.
    pub cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/logs", tag = "attackers", security(("bearer" = [])), params(LogFilter),
    responses(
        (status = 200, description = "`{logs: [...], next_cursor}` (null on the last page)"),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    RequireViewer(viewer): RequireViewer,
    ApiQuery(f): ApiQuery<LogFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::attackers::page_limit(f.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let mut clauses: Vec<&str> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    for (param, column, value) in [
        ("decky", "decky = ?", &f.decky),
        ("service", "service = ?", &f.service),
        ("type", "event_type = ?", &f.event_type),
    ] {
        if let Some(v) = value {
            check_name(param, v)?;
            clauses.push(column);
            binds.push(Bind::Text(v.clone()));
        }
    }
    if let Some(ip) = &f.ip {
        let ip = ip.parse::<std::net::IpAddr>().map(|i| i.to_string()).or_else(|_| {
            // The collector's placeholder for "no address" is a valid filter too.
            if ip == crate::profiler::fold::UNKNOWN_IP {
                Ok(ip.clone())
            } else {
                Err(ApiError::bad_request(format!("ip must be an IP address, got {ip:?}")))
            }
        })?;
        clauses.push("attacker_ip = ?");
        binds.push(Bind::Text(ip));
    }
    for (param, column, value) in [("since", "timestamp >= ?", f.since), ("until", "timestamp <= ?", f.until)] {
        if let Some(v) = value {
            check_time(param, v)?;
            clauses.push(column);
            binds.push(Bind::Real(v));
        }
    }
    if let (Some(s), Some(u)) = (f.since, f.until) {
        if s > u {
            return Err(ApiError::bad_request(format!("since ({s}) is after until ({u})")));
        }
    }
    if let Some(c) = &f.cursor {
        let (ts, id) = parse_cursor(c).ok_or_else(|| {
            ApiError::bad_request(format!("cursor must be a next_cursor value (TIMESTAMP:ID), got {c:?}"))
        })?;
        // A row-value comparison: SQLite seeks the index to it.
        clauses.push("(timestamp, id) < (?, ?)");
        binds.push(Bind::Real(ts));
        binds.push(Bind::Int(id));
    }
    let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let sql = format!(
        "SELECT id, timestamp, decky, service, event_type, attacker_ip, fields, msg, source FROM logs {filter}
         ORDER BY timestamp DESC, id DESC LIMIT ?"
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = b.bind_to(q);
    }
    let rows = q.bind(i64::from(limit)).fetch_all(&state.pool).await?;
    let admin = viewer.role == crate::auth::Role::Admin;
    let logs = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>("id")?,
                "timestamp": r.try_get::<f64, _>("timestamp")?,
                "decky": r.try_get::<String, _>("decky")?,
                "service": r.try_get::<String, _>("service")?,
                "event_type": r.try_get::<String, _>("event_type")?,
                "attacker_ip": r.try_get::<String, _>("attacker_ip")?,
                "fields": super::attackers::fields_for(admin, super::attackers::json_column(r, "fields")),
                "msg": r.try_get::<String, _>("msg")?,
                "source": r.try_get::<String, _>("source")?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next_cursor = if logs.len() == limit as usize {
        logs.last().map(|l| format!("{}:{}", l["timestamp"].as_f64().unwrap_or(0.0), l["id"]))
    } else {
        None
    };
    Ok(Json(json!({ "logs": logs, "next_cursor": next_cursor })))
}

/// `TIMESTAMP:ID` → its parts; `None` unless both parse and make sense.
fn parse_cursor(text: &str) -> Option<(f64, i64)> {
    let (ts, id) = text.rsplit_once(':')?;
    let ts: f64 = ts.parse().ok().filter(|t: &f64| t.is_finite() && *t >= 0.0)?;
    let id: i64 = id.parse().ok().filter(|i| *i > 0)?;
    Some((ts, id))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct LogsDoc;
