//! `GET /api/v1/logs`: the collector's rows, newest first, filtered and
//! paged by cursor.
//!
//! The cursor is the last `id` of the previous page (`next_cursor`), not an
//! offset: a page costs the same at row one million as at row one, and
//! rows arriving meanwhile never shift a page. Each equality filter has a
//! `(column, id)` index (migration 0012), so SQLite walks the matches in
//! id order and stops after `limit`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::attackers::{check_name, check_time};
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
    /// `next_cursor` of the previous page: rows with a smaller id.
    pub cursor: Option<i64>,
}

#[utoipa::path(
    get, path = "/api/v1/logs", tag = "attackers", security(("bearer" = [])), params(LogFilter),
    responses(
        (status = 200, description = "`{logs: [...], next_cursor}` (null on the last page)"),
        (status = 400, description = "A bad filter", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    RequireViewer(_viewer): RequireViewer,
    ApiQuery(f): ApiQuery<LogFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}, got {limit}")));
    }
    let mut clauses: Vec<&str> = Vec::new();
    let mut texts: Vec<(usize, String)> = Vec::new();
    let mut numbers: Vec<(usize, f64)> = Vec::new();
    let mut n = 0;
    for (param, column, value) in [
        ("decky", "decky = ?", &f.decky),
        ("service", "service = ?", &f.service),
        ("type", "event_type = ?", &f.event_type),
    ] {
        if let Some(v) = value {
            check_name(param, v)?;
            clauses.push(column);
            texts.push((n, v.clone()));
            n += 1;
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
        texts.push((n, ip));
        n += 1;
    }
    for (param, column, value) in [("since", "timestamp >= ?", f.since), ("until", "timestamp <= ?", f.until)] {
        if let Some(v) = value {
            check_time(param, v)?;
            clauses.push(column);
            numbers.push((n, v));
            n += 1;
        }
    }
    if let (Some(s), Some(u)) = (f.since, f.until) {
        if s > u {
            return Err(ApiError::bad_request(format!("since ({s}) is after until ({u})")));
        }
    }
    if let Some(c) = f.cursor {
        if c <= 0 {
            return Err(ApiError::bad_request(format!("cursor must be a positive row id, got {c}")));
        }
        clauses.push("id < ?");
        numbers.push((n, c as f64));
    }
    let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let sql = format!(
        "SELECT id, timestamp, decky, service, event_type, attacker_ip, fields, msg, source FROM logs {filter}
         ORDER BY id DESC LIMIT ?"
    );
    // Bind in clause order: text and number binds interleave by position.
    let mut all: Vec<(usize, Value)> = texts.into_iter().map(|(i, t)| (i, Value::String(t))).collect();
    all.extend(numbers.into_iter().map(|(i, v)| (i, json!(v))));
    all.sort_by_key(|(i, _)| *i);
    let mut q = sqlx::query(&sql);
    for (_, v) in &all {
        q = match v {
            Value::String(s) => q.bind(s.clone()),
            other => q.bind(other.as_f64()),
        };
    }
    let rows = q.bind(i64::from(limit)).fetch_all(&state.pool).await?;
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
                "fields": r.try_get::<String, _>("fields").ok().and_then(|s| serde_json::from_str::<Value>(&s).ok()).unwrap_or(Value::Null),
                "msg": r.try_get::<String, _>("msg")?,
                "source": r.try_get::<String, _>("source")?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next_cursor = if logs.len() == limit as usize { logs.last().map(|l| l["id"].clone()) } else { None };
    Ok(Json(json!({ "logs": logs, "next_cursor": next_cursor })))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct LogsDoc;
