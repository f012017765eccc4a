//! Attacker routes: the profiler's `attackers` rows as a filtered, sorted,
//! paginated list; one attacker in full (timeline, credentials, commands,
//! fingerprints, traversal with the mutations it crossed); the identities.
//!
//! Every filter is checked before any SQL runs and a bad one answers 400
//! naming the parameter, so a typo never silently returns "no attackers".
//! Values reach SQL only as bound parameters.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use super::state::AppState;
use crate::auth::RequireViewer;
use crate::profiler::behavior::Behavior;
use crate::profiler::correlation::mutations_in_window;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// Events of the detail page's timeline (newest first).
pub const TIMELINE_LIMIT: i64 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttackerFilter {
    /// IP prefix (`10.0.`, `2001:db8:`).
    pub q: Option<String>,
    /// Same as `q`.
    pub ip: Option<String>,
    /// Only attackers that touched this service.
    pub service: Option<String>,
    /// Only attackers that touched this decky.
    pub decky: Option<String>,
    /// unknown, slow_scan, scanning, brute_force, beaconing, interactive or mixed.
    pub behavior: Option<String>,
    /// Only attackers seen at or after this unix time.
    pub since: Option<f64>,
    /// last_seen (default), first_seen or events; always newest/most first.
    pub sort: Option<String>,
    /// 1-based page.
    pub page: Option<u32>,
    /// Rows per page (1–500, default 50).
    pub limit: Option<u32>,
}

/// A filter value that names a decky or service: non-empty, short, printable.
pub(crate) fn check_name(param: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > 128 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(format!(
            "{param} must be 1-128 printable characters without spaces, got {value:?}"
        )));
    }
    Ok(())
}

pub(crate) fn check_time(param: &str, value: f64) -> Result<(), ApiError> {
    if !value.is_finite() || value < 0.0 {
        return Err(ApiError::bad_request(format!("{param} must be a unix time in seconds, got {value}")));
    }
    Ok(())
}

/// One bound SQL parameter of a filter built at run time.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Real(f64),
    Int(i64),
}

type Args<'q> = sqlx::sqlite::SqliteArguments<'q>;

impl Bind {
    pub(crate) fn bind_to<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, Args<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, Args<'q>> {
        match self {
            Bind::Text(s) => q.bind(s),
            Bind::Real(v) => q.bind(v),
            Bind::Int(v) => q.bind(v),
        }
    }

    fn bind_scalar<'q>(
        self,
        q: sqlx::query::QueryScalar<'q, sqlx::Sqlite, i64, Args<'q>>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Sqlite, i64, Args<'q>> {
        match self {
            Bind::Text(s) => q.bind(s),
            Bind::Real(v) => q.bind(v),
            Bind::Int(v) => q.bind(v),
        }
    }
}

/// Columns of a list row (the detail adds commands and fingerprints).
const SUMMARY: &str = "ip, first_seen, last_seen, event_count, service_count, decky_count, services, deckies,
    traversal_path, is_traversal, credential_count, behavior, identity_id";

fn json_col(r: &sqlx::sqlite::SqliteRow, col: &str) -> Value {
    r.try_get::<String, _>(col).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Array(vec![]))
}

fn summary(r: &sqlx::sqlite::SqliteRow) -> Result<Value, sqlx::Error> {
    Ok(json!({
        "ip": r.try_get::<String, _>("ip")?,
        "first_seen": r.try_get::<f64, _>("first_seen")?,
        "last_seen": r.try_get::<f64, _>("last_seen")?,
        "event_count": r.try_get::<i64, _>("event_count")?,
        "service_count": r.try_get::<i64, _>("service_count")?,
        "decky_count": r.try_get::<i64, _>("decky_count")?,
        "services": json_col(r, "services"),
        "deckies": json_col(r, "deckies"),
        "traversal_path": r.try_get::<String, _>("traversal_path")?,
        "is_traversal": r.try_get::<i64, _>("is_traversal")? != 0,
        "credential_count": r.try_get::<i64, _>("credential_count")?,
        "behavior": r.try_get::<String, _>("behavior")?,
        "identity_id": r.try_get::<Option<i64>, _>("identity_id")?,
    }))
}

/// `?limit=`, defaulted and checked against the route's maximum (400 beyond).
pub(crate) fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {max}, got {limit}")));
    }
    Ok(limit)
}

/// A log row's fields as `admin` or a viewer may see them: the guessed
/// password rides in the line's fields (`secret_b64`), and a viewer gets
/// it only masked, in `credentials` (issue 27). Every route that returns
/// log fields goes through here.
pub(crate) fn fields_for(admin: bool, mut fields: Value) -> Value {
    if !admin {
        if let Some(f) = fields.as_object_mut() {
            f.remove("secret_b64");
        }
    }
    fields
}

/// A TEXT column holding JSON, as JSON (null when absent or not JSON).
pub(crate) fn json_column(row: &sqlx::sqlite::SqliteRow, column: &str) -> Value {
    row.try_get::<String, _>(column).ok().and_then(|s| serde_json::from_str::<Value>(&s).ok()).unwrap_or(Value::Null)
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format!("database error: {e}"))
    }
}

#[utoipa::path(
    get, path = "/api/v1/attackers", tag = "attackers", security(("bearer" = [])), params(AttackerFilter),
    responses(
        (status = 200, description = "`{attackers: [...], total, page, limit}`"),
        (status = 400, description = "A bad filter, sort or page", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    RequireViewer(_viewer): RequireViewer,
    ApiQuery(f): ApiQuery<AttackerFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(f.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let page = f.page.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::bad_request("page starts at 1"));
    }
    let order = match f.sort.as_deref().unwrap_or("last_seen") {
        // Both keys descending, so one (column, ip) index serves the order.
        "last_seen" => "last_seen DESC, ip DESC",
        "first_seen" => "first_seen DESC, ip DESC",
        "events" => "event_count DESC, ip DESC",
        other => {
            return Err(ApiError::bad_request(format!("sort must be last_seen, first_seen or events, got {other:?}")))
        }
    };
    let mut clauses: Vec<&str> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    // Stored IPv6 addresses are lower-case (canonical form).
    let prefix = f.q.as_deref().or(f.ip.as_deref()).map(str::to_ascii_lowercase);
    if let Some(prefix) = prefix.as_deref().filter(|p| !p.is_empty()) {
        if prefix.len() > 45 || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':') {
            return Err(ApiError::bad_request(format!("q must be the start of an IP address, got {prefix:?}")));
        }
        // A range on the primary key: an index seek, unlike LIKE.
        clauses.push("ip >= ? AND ip < ?");
        binds.push(Bind::Text(prefix.to_string()));
        binds.push(Bind::Text(format!("{prefix}\u{10FFFF}")));
    }
    if let Some(service) = &f.service {
        check_name("service", service)?;
        clauses.push("EXISTS (SELECT 1 FROM json_each(attackers.services) WHERE value = ?)");
        binds.push(Bind::Text(service.clone()));
    }
    if let Some(decky) = &f.decky {
        check_name("decky", decky)?;
        clauses.push("EXISTS (SELECT 1 FROM json_each(attackers.deckies) WHERE value = ?)");
        binds.push(Bind::Text(decky.clone()));
    }
    if let Some(b) = &f.behavior {
        let b = Behavior::parse(b).ok_or_else(|| {
            ApiError::bad_request(format!(
                "behavior must be one of {}, got {b:?}",
                Behavior::ALL.map(Behavior::as_str).join(", ")
            ))
        })?;
        clauses.push("behavior = ?");
        binds.push(Bind::Text(b.as_str().to_string()));
    }
    if let Some(since) = f.since {
        check_time("since", since)?;
        clauses.push("last_seen >= ?");
        binds.push(Bind::Real(since));
    }
    let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let offset = i64::from(page - 1) * i64::from(limit);

    let count_sql = format!("SELECT COUNT(*) FROM attackers {filter}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for b in &binds {
        count = b.clone().bind_scalar(count);
    }
    let total = count.fetch_one(&state.pool).await?;

    let sql = format!("SELECT {SUMMARY} FROM attackers {filter} ORDER BY {order} LIMIT ? OFFSET ?");
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = b.bind_to(q);
    }
    let rows = q.bind(i64::from(limit)).bind(offset).fetch_all(&state.pool).await?;
    let attackers = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "attackers": attackers, "total": total, "page": page, "limit": limit })))
}

/// The path's IP in canonical form, or 400.
pub(crate) fn parse_ip(raw: &str) -> Result<String, ApiError> {
    raw.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| ApiError::bad_request(format!("{raw:?} is not an IP address")))
}

#[utoipa::path(
    get, path = "/api/v1/attackers/{ip}", tag = "attackers", security(("bearer" = [])),
    params(("ip" = String, Path, description = "Attacker IP address")),
    responses(
        (status = 200, description = "The profile with `timeline`, `credentials`, `commands`, `fingerprints`, `traversal`"),
        (status = 400, description = "Not an IP address", body = ErrorBody),
        (status = 404, description = "No such attacker", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    RequireViewer(viewer): RequireViewer,
    ApiPath(ip): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let ip = parse_ip(&ip)?;
    let admin = viewer.role == crate::auth::Role::Admin;
    let row = sqlx::query(&format!("SELECT {SUMMARY}, commands FROM attackers WHERE ip = ?"))
        .bind(&ip)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no attacker {ip}")))?;
    let mut body = summary(&row)?;
    body["commands"] = json_col(&row, "commands");

    let timeline = sqlx::query(
        "SELECT id, timestamp, decky, service, event_type, fields, msg FROM logs
         WHERE attacker_ip = ? ORDER BY id DESC LIMIT ?",
    )
    .bind(&ip)
    .bind(TIMELINE_LIMIT)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        let fields = fields_for(admin, json_column(r, "fields"));
        Ok(json!({
            "id": r.try_get::<i64, _>("id")?,
            "timestamp": r.try_get::<f64, _>("timestamp")?,
            "decky": r.try_get::<String, _>("decky")?,
            "service": r.try_get::<String, _>("service")?,
            "event_type": r.try_get::<String, _>("event_type")?,
            "fields": fields,
            "msg": r.try_get::<String, _>("msg")?,
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    body["timeline"] = Value::Array(timeline);

    let credentials = sqlx::query(
        "SELECT decky, service, username, secret_b64, secret_text, secret_kind, attempts, first_seen, last_seen FROM credentials
         WHERE attacker_ip = ? ORDER BY first_seen LIMIT 1000",
    )
    .bind(&ip)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        // Clear text for an admin, masked for a viewer (api::console);
        // the base64 form is the clear text too, so admins only.
        let secret_b64 = if admin { Some(r.try_get::<String, _>("secret_b64")?) } else { None };
        Ok(json!({
            "decky": r.try_get::<String, _>("decky")?,
            "service": r.try_get::<String, _>("service")?,
            "username": r.try_get::<String, _>("username")?,
            "secret": super::console::shown_secret(viewer.role, &super::console::secret_text_of(r)),
            "secret_b64": secret_b64,
            "secret_kind": r.try_get::<String, _>("secret_kind")?,
            "attempts": r.try_get::<i64, _>("attempts")?,
            "first_seen": r.try_get::<f64, _>("first_seen")?,
            "last_seen": r.try_get::<f64, _>("last_seen")?,
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    body["credentials"] = Value::Array(credentials);

    let fingerprints = sqlx::query(
        "SELECT kind, port, hash, details, source, first_seen, last_seen FROM fingerprints
         WHERE attacker_ip = ? ORDER BY kind, port",
    )
    .bind(&ip)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({
            "kind": r.try_get::<String, _>("kind")?,
            "port": r.try_get::<i64, _>("port")?,
            "hash": r.try_get::<String, _>("hash")?,
            "details": json_column(r, "details"),
            "source": r.try_get::<String, _>("source")?,
            "first_seen": r.try_get::<f64, _>("first_seen")?,
            "last_seen": r.try_get::<f64, _>("last_seen")?,
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    body["fingerprints"] = Value::Array(fingerprints);

    let deckies: Vec<String> = serde_json::from_value(body["deckies"].clone()).unwrap_or_default();
    let (first, last) = (body["first_seen"].as_f64().unwrap_or(0.0), body["last_seen"].as_f64().unwrap_or(0.0));
    let mutations = mutations_in_window(&state.pool, &deckies, first, last).await?;
    body["traversal"] = json!({
        "is_traversal": body["is_traversal"],
        "path": body["traversal_path"],
        "deckies": deckies,
        "mutations": mutations,
    });
    Ok(Json(body))
}

#[utoipa::path(
    get, path = "/api/v1/identities", tag = "attackers", security(("bearer" = [])),
    responses(
        (status = 200, description = "`{identities: [{id, created_at, updated_at, fingerprints, members}]}`"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn identities(
    State(state): State<AppState>,
    RequireViewer(_viewer): RequireViewer,
) -> Result<Json<Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT i.id, i.created_at, i.updated_at, i.fingerprints,
                COALESCE((SELECT json_group_array(attacker_ip) FROM
                    (SELECT attacker_ip FROM identity_members m WHERE m.identity_id = i.id ORDER BY attacker_ip)), '[]') AS members
         FROM identities i ORDER BY i.id LIMIT 1000",
    )
    .fetch_all(&state.pool)
    .await?;
    let identities = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>("id")?,
                "created_at": r.try_get::<f64, _>("created_at")?,
                "updated_at": r.try_get::<f64, _>("updated_at")?,
                "fingerprints": json_col(r, "fingerprints"),
                "members": json_col(r, "members"),
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "identities": identities })))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, identities))]
pub struct AttackersDoc;
