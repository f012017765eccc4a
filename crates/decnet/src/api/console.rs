//! The analyst's console (issue 27): what the dashboard's Overview,
//! Credentials and Sessions pages read.
//!
//! - `GET /api/v1/overview?hours=`: activity per hour or day, the top
//!   sources, usernames, passwords, commands, deckies and services, the
//!   newest artifacts and log rows. Counters come from the roll-ups the
//!   0020 migration's triggers keep (`console_hourly`, `console_top`), so
//!   the page costs a few dozen indexed rows however large `logs` grows.
//! - `GET /api/v1/credentials`: username/password pairs by tries, with the
//!   attackers and targets that used each (reuse across deckies).
//! - `GET /api/v1/sessions`: recorded shell sessions, filtered.
//!
//! Passwords are attackers' guesses, not secrets of ours, but a viewer sees
//! them masked ([`shown_secret`]); only an admin sees the clear text.

use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::attackers::{check_name, check_time, page_limit, parse_ip};
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::state::AppState;
use crate::auth::{RequireViewer, Role};

/// Rows per "top" list on the Overview.
pub const TOP_LIMIT: i64 = 10;
/// Longest window the Overview charts (90 days).
pub const MAX_HOURS: u32 = 24 * 90;
/// Past this many hours the chart's buckets are days, not hours.
pub const DAILY_AFTER_HOURS: u32 = 72;

/// What a caller of `role` may see of an attacker's guessed secret: the
/// clear text for an admin; for a viewer its first two characters and a
/// star for each other one (`hunter2` → `hu*****`), all stars when it is
/// that short.
pub fn shown_secret(role: Role, text: &str) -> String {
    if role == Role::Admin {
        return text.to_string();
    }
    let n = text.chars().count();
    let keep = if n > 2 { 2 } else { 0 };
    text.chars().take(keep).chain(std::iter::repeat_n('*', n - keep)).collect()
}

/// A credentials row's clear text: `secret_text`, or for a row stored
/// before it existed, its base64 decoded.
pub fn secret_text_of(row: &sqlx::sqlite::SqliteRow) -> String {
    if let Ok(Some(text)) = row.try_get::<Option<String>, _>("secret_text") {
        return text;
    }
    let b64: String = row.try_get("secret_b64").unwrap_or_default();
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(b64.trim()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    /// Hours of activity to chart, ending now (1–2160, default 24). Past 72
    /// the buckets are days.
    pub hours: Option<u32>,
}

async fn top(state: &AppState, kind: &str) -> Result<Vec<(String, i64, f64)>, ApiError> {
    let rows =
        sqlx::query("SELECT value, hits, last_seen FROM console_top WHERE kind = ? ORDER BY hits DESC, value LIMIT ?")
            .bind(kind)
            .bind(TOP_LIMIT)
            .fetch_all(&state.pool)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("value")?, r.try_get("hits")?, r.try_get("last_seen")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(Into::into)
}

fn top_json(rows: Vec<(String, i64, f64)>) -> Value {
    Value::Array(
        rows.into_iter().map(|(value, hits, last)| json!({"value": value, "hits": hits, "last_seen": last})).collect(),
    )
}

#[utoipa::path(
    get, path = "/api/v1/overview", tag = "attackers", security(("bearer" = [])), params(OverviewQuery),
    responses(
        (status = 200, description = "`{hours, bucket_seconds, activity: [{t, events, new_attackers, credentials, sessions}], totals, top_sources, top_usernames, top_passwords, top_commands, top_deckies, top_services, newest_artifacts, latest_events}`"),
        (status = 400, description = "hours out of range", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn overview(
    State(state): State<AppState>,
    RequireViewer(viewer): RequireViewer,
    ApiQuery(q): ApiQuery<OverviewQuery>,
) -> Result<Json<Value>, ApiError> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::bad_request(format!("hours must be between 1 and {MAX_HOURS}, got {hours}")));
    }
    let now = decnet_bus::envelope::now_ts();
    let this_hour = (now / 3600.0).floor() as i64;
    let first_hour = this_hour - i64::from(hours) + 1;
    let bucket_hours: i64 = if hours > DAILY_AFTER_HOURS { 24 } else { 1 };
    // Every bucket of the window, the empty ones too, so the chart's x axis
    // is time and a quiet hour shows as a gap.
    let rows = sqlx::query(
        "SELECT hour, events, new_attackers, credentials, sessions FROM console_hourly
         WHERE hour >= ? AND hour <= ? ORDER BY hour",
    )
    .bind(first_hour)
    .bind(this_hour)
    .fetch_all(&state.pool)
    .await?;
    let first_bucket = first_hour.div_euclid(bucket_hours);
    let buckets = (this_hour.div_euclid(bucket_hours) - first_bucket + 1) as usize;
    let mut activity: Vec<[i64; 4]> = vec![[0; 4]; buckets];
    let mut totals = [0i64; 4];
    for r in &rows {
        let hour: i64 = r.try_get("hour")?;
        let slot = (hour.div_euclid(bucket_hours) - first_bucket) as usize;
        let counts = [
            r.try_get::<i64, _>("events")?,
            r.try_get::<i64, _>("new_attackers")?,
            r.try_get::<i64, _>("credentials")?,
            r.try_get::<i64, _>("sessions")?,
        ];
        for i in 0..4 {
            activity[slot][i] += counts[i];
            totals[i] += counts[i];
        }
    }
    let activity: Vec<Value> = activity
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"t": (first_bucket + i as i64) * bucket_hours * 3600, "events": c[0], "new_attackers": c[1],
                   "credentials": c[2], "sessions": c[3]})
        })
        .collect();

    let sources = sqlx::query(
        "SELECT ip, event_count, last_seen, behavior FROM attackers ORDER BY event_count DESC, ip DESC LIMIT ?",
    )
    .bind(TOP_LIMIT)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({"value": r.try_get::<String, _>("ip")?, "hits": r.try_get::<i64, _>("event_count")?,
                  "last_seen": r.try_get::<f64, _>("last_seen")?, "behavior": r.try_get::<String, _>("behavior")?}))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;

    // Passwords are counted by hash; the text comes from any one row with it.
    let mut passwords = Vec::new();
    for (sha, hits, last) in top(&state, "password").await? {
        let row =
            sqlx::query("SELECT secret_text, secret_b64, secret_kind FROM credentials WHERE secret_sha256 = ? LIMIT 1")
                .bind(&sha)
                .fetch_optional(&state.pool)
                .await?;
        let (text, kind) = match &row {
            Some(r) => (secret_text_of(r), r.try_get::<String, _>("secret_kind")?),
            None => (String::new(), "password".into()),
        };
        passwords.push(json!({"value": shown_secret(viewer.role, &text), "kind": kind, "sha256": sha,
                              "hits": hits, "last_seen": last}));
    }

    let artifacts = sqlx::query(
        "SELECT sha256, size, mime, source, url, path, decky, attacker_ip, first_seen FROM artifacts
         ORDER BY first_seen DESC LIMIT ?",
    )
    .bind(TOP_LIMIT)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({
            "sha256": r.try_get::<String, _>("sha256")?, "size": r.try_get::<i64, _>("size")?,
            "mime": r.try_get::<String, _>("mime")?, "source": r.try_get::<String, _>("source")?,
            "url": r.try_get::<Option<String>, _>("url")?, "path": r.try_get::<String, _>("path")?,
            "decky": r.try_get::<String, _>("decky")?, "attacker_ip": r.try_get::<String, _>("attacker_ip")?,
            "first_seen": r.try_get::<f64, _>("first_seen")?,
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;

    // The feed's first screenful; the page adds what the SSE stream brings.
    let latest = sqlx::query(
        "SELECT id, timestamp, decky, service, event_type, attacker_ip, msg FROM logs ORDER BY id DESC LIMIT 20",
    )
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({
            "id": r.try_get::<i64, _>("id")?, "timestamp": r.try_get::<f64, _>("timestamp")?,
            "decky": r.try_get::<String, _>("decky")?, "service": r.try_get::<String, _>("service")?,
            "event_type": r.try_get::<String, _>("event_type")?, "attacker_ip": r.try_get::<String, _>("attacker_ip")?,
            "msg": r.try_get::<String, _>("msg")?,
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;

    Ok(Json(json!({
        "hours": hours,
        "bucket_seconds": bucket_hours * 3600,
        "activity": activity,
        "totals": {"events": totals[0], "new_attackers": totals[1], "credentials": totals[2], "sessions": totals[3]},
        "top_sources": sources,
        "top_usernames": top_json(top(&state, "username").await?),
        "top_passwords": passwords,
        "top_commands": top_json(top(&state, "command").await?),
        "top_deckies": top_json(top(&state, "decky").await?),
        "top_services": top_json(top(&state, "service").await?),
        "newest_artifacts": artifacts,
        "latest_events": latest,
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CredentialFilter {
    /// Only this username (exact).
    pub username: Option<String>,
    /// Only pairs tried against this decky.
    pub decky: Option<String>,
    /// Rows (1–500, default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/api/v1/credentials", tag = "attackers", security(("bearer" = [])), params(CredentialFilter),
    responses(
        (status = 200, description = "`{credentials: [{username, secret, secret_kind, secret_sha256, attempts, attackers, targets, first_seen, last_seen}]}`, most tried first; `secret` is clear text for admins, masked for viewers; `targets` are `decky:service`, more than one = reuse"),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn credentials(
    State(state): State<AppState>,
    RequireViewer(viewer): RequireViewer,
    ApiQuery(f): ApiQuery<CredentialFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(f.limit, 100, 500)?;
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    if let Some(u) = &f.username {
        if u.len() > 256 {
            return Err(ApiError::bad_request("username must be at most 256 bytes"));
        }
        clauses.push("username = ?");
        binds.push(u.clone());
    }
    if let Some(d) = &f.decky {
        check_name("decky", d)?;
        clauses.push("decky = ?");
        binds.push(d.clone());
    }
    // Unfiltered, the most-tried pairs come from the `console_pairs`
    // roll-up (an index walk) and only their rows are read; a filter
    // narrows `credentials` by index first and groups what is left.
    // (`limit` is a checked integer, so it can be part of the SQL text.)
    let pairs = if clauses.is_empty() {
        format!(
            "(SELECT c.* FROM (SELECT username, secret_sha256 FROM console_pairs ORDER BY attempts DESC LIMIT {limit}) AS top
              JOIN credentials c ON c.username = top.username AND c.secret_sha256 = top.secret_sha256)"
        )
    } else {
        format!("(SELECT * FROM credentials WHERE {})", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT username, secret_sha256, MAX(secret_text) AS secret_text, MAX(secret_b64) AS secret_b64,
                MAX(secret_kind) AS secret_kind, SUM(attempts) AS attempts,
                json_group_array(DISTINCT attacker_ip) AS attackers,
                json_group_array(DISTINCT decky || ':' || service) AS targets,
                MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen
         FROM {pairs} GROUP BY username, secret_sha256 ORDER BY attempts DESC, last_seen DESC LIMIT ?"
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.bind(i64::from(limit)).fetch_all(&state.pool).await?;
    let list = rows
        .iter()
        .map(|r| {
            let parse = |c: &str| {
                serde_json::from_str::<Value>(&r.try_get::<String, _>(c).unwrap_or_default()).unwrap_or(json!([]))
            };
            Ok(json!({
                "username": r.try_get::<String, _>("username")?,
                "secret": shown_secret(viewer.role, &secret_text_of(r)),
                "secret_kind": r.try_get::<String, _>("secret_kind")?,
                "secret_sha256": r.try_get::<String, _>("secret_sha256")?,
                "attempts": r.try_get::<i64, _>("attempts")?,
                "attackers": parse("attackers"),
                "targets": parse("targets"),
                "first_seen": r.try_get::<f64, _>("first_seen")?,
                "last_seen": r.try_get::<f64, _>("last_seen")?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "credentials": list, "masked": viewer.role != Role::Admin })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionFilter {
    /// Only this attacker.
    pub ip: Option<String>,
    pub decky: Option<String>,
    pub service: Option<String>,
    /// Only sessions logged in as this user.
    pub username: Option<String>,
    /// Only sessions started at or after this unix time.
    pub since: Option<f64>,
    /// Rows (1–500, default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/api/v1/sessions", tag = "attackers", security(("bearer" = [])), params(SessionFilter),
    responses(
        (status = 200, description = "`{sessions: [{sid, attacker_ip, decky, service, username, started, ended, duration_s, commands}]}`, newest first; replay with /api/v1/recordings/{sid}"),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn sessions(
    State(state): State<AppState>,
    RequireViewer(_viewer): RequireViewer,
    ApiQuery(f): ApiQuery<SessionFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(f.limit, 100, 500)?;
    let mut clauses: Vec<&str> = Vec::new();
    let mut binds: Vec<super::attackers::Bind> = Vec::new();
    use super::attackers::Bind;
    if let Some(ip) = &f.ip {
        clauses.push("attacker_ip = ?");
        binds.push(Bind::Text(parse_ip(ip)?));
    }
    for (param, column, value) in [
        ("decky", "decky = ?", &f.decky),
        ("service", "service = ?", &f.service),
        ("username", "username = ?", &f.username),
    ] {
        if let Some(v) = value {
            check_name(param, v)?;
            clauses.push(column);
            binds.push(Bind::Text(v.clone()));
        }
    }
    if let Some(since) = f.since {
        check_time("since", since)?;
        clauses.push("started >= ?");
        binds.push(Bind::Real(since));
    }
    let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let sql = format!(
        "SELECT sid, attacker_ip, decky, service, username, started, ended, commands FROM recordings {filter}
         ORDER BY started DESC LIMIT ?"
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = b.bind_to(q);
    }
    let rows = q.bind(i64::from(limit)).fetch_all(&state.pool).await?;
    let list = rows
        .iter()
        .map(|r| {
            let (started, ended) = (r.try_get::<f64, _>("started")?, r.try_get::<f64, _>("ended")?);
            Ok(json!({
                "sid": r.try_get::<String, _>("sid")?,
                "attacker_ip": r.try_get::<String, _>("attacker_ip")?,
                "decky": r.try_get::<String, _>("decky")?,
                "service": r.try_get::<String, _>("service")?,
                "username": r.try_get::<Option<String>, _>("username")?,
                "started": started,
                "ended": ended,
                "duration_s": (ended - started).max(0.0),
                "commands": r.try_get::<i64, _>("commands")?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "sessions": list })))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(overview, credentials, sessions))]
pub struct ConsoleDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_see_a_masked_guess_and_admins_the_clear_text() {
        assert_eq!(shown_secret(Role::Viewer, "hunter2"), "hu*****");
        assert_eq!(shown_secret(Role::Admin, "hunter2"), "hunter2");
        assert_eq!(shown_secret(Role::Viewer, "ab"), "**");
        assert_eq!(shown_secret(Role::Viewer, "pässwörd"), "pä******");
        assert_eq!(shown_secret(Role::Viewer, ""), "");
    }
}
