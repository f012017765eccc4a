//! What attackers brought: `GET /api/v1/attackers/{ip}/artifacts` (viewer)
//! lists the files captured from an attacker and the URLs it asked the
//! deckies to fetch; `GET /api/v1/artifacts/{sha256}` (admin) hands out
//! the bytes.
//!
//! A captured file is live malware until proven otherwise, so it is only
//! ever a download: `application/octet-stream`, `Content-Disposition:
//! attachment`, `nosniff` and a sandboxing CSP, whatever the decky thought
//! its type was. The file is found from the hash alone (`<artifacts
//! dir>/<64 hex digits>`): the path never comes from a request or a log
//! line, so nothing can climb out of the folder.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sqlx::Row;

use super::attackers::{json_column, parse_ip};
use super::error::{ApiError, ApiPath, ErrorBody};
use super::state::AppState;
use crate::auth::{RequireAdmin, RequireViewer};
use crate::ingest::artifacts::is_sha256_hex;

/// Rows of each list on one attacker's page (newest first).
pub const LIST_LIMIT: i64 = 500;

#[utoipa::path(
    get, path = "/api/v1/attackers/{ip}/artifacts", tag = "attackers", security(("bearer" = [])),
    params(("ip" = String, Path, description = "Attacker IP address")),
    responses(
        (status = 200, description = "`{artifacts: [{sid, decky, source, url, path, sha256, size, mime, first_seen}], downloads: [{timestamp, decky, sid, tool, url, path, fetch}]}`, newest first"),
        (status = 400, description = "Not an IP address", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn for_attacker(
    State(state): State<AppState>,
    RequireViewer(_viewer): RequireViewer,
    ApiPath(ip): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let ip = parse_ip(&ip)?;
    let artifacts = sqlx::query(
        "SELECT decky, sid, source, url, path, sha256, size, mime, first_seen FROM artifacts
         WHERE attacker_ip = ? ORDER BY first_seen DESC, id DESC LIMIT ?",
    )
    .bind(&ip)
    .bind(LIST_LIMIT)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({
            "decky": r.try_get::<String, _>("decky")?,
            "sid": r.try_get::<String, _>("sid")?,
            "source": r.try_get::<String, _>("source")?,
            "url": r.try_get::<Option<String>, _>("url")?,
            "path": r.try_get::<String, _>("path")?,
            "sha256": r.try_get::<String, _>("sha256")?,
            "size": r.try_get::<i64, _>("size")?,
            "mime": r.try_get::<String, _>("mime")?,
            "first_seen": r.try_get::<f64, _>("first_seen")?,
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // Every URL asked for, fetched or not, is a `download` line in `logs`
    // (the attacker's rows through logs_by_ip, newest first).
    let downloads = sqlx::query(
        "SELECT timestamp, decky, fields FROM logs
         WHERE attacker_ip = ? AND event_type = 'download' ORDER BY timestamp DESC, id DESC LIMIT ?",
    )
    .bind(&ip)
    .bind(LIST_LIMIT)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        let fields = json_column(r, "fields");
        let field = |k: &str| fields.get(k).cloned().unwrap_or(Value::Null);
        Ok(json!({
            "timestamp": r.try_get::<f64, _>("timestamp")?,
            "decky": r.try_get::<String, _>("decky")?,
            "sid": field("sid"),
            "tool": field("tool"),
            "url": field("url"),
            "path": field("path"),
            "fetch": field("fetch"),
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "artifacts": artifacts, "downloads": downloads })))
}

#[utoipa::path(
    get, path = "/api/v1/artifacts/{sha256}", tag = "attackers", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "The artifact's SHA-256, 64 hex digits")),
    responses(
        (status = 200, description = "The file, as an attachment (`application/octet-stream`)"),
        (status = 400, description = "Not a SHA-256", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such artifact, or its file is no longer kept", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(sha256): ApiPath<String>,
) -> Result<Response, ApiError> {
    if !is_sha256_hex(&sha256) {
        return Err(ApiError::bad_request("sha256 must be 64 hex digits"));
    }
    let sha256 = sha256.to_ascii_lowercase();
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM artifacts WHERE sha256 = ? LIMIT 1")
        .bind(&sha256)
        .fetch_optional(&state.pool)
        .await?;
    if known.is_none() {
        return Err(ApiError::not_found(format!("no artifact {sha256}")));
    }
    let path = state.evidence.artifacts.join(&sha256);
    // The deckies write only regular files here: a symlink (or anything
    // else) in its place is not theirs, and is never followed.
    let gone = || ApiError::not_found(format!("artifact {sha256} is no longer kept (evicted)"));
    let file = match tokio::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path).await {
        Ok(f) => f,
        // The quarantine folder is bounded: the oldest files go first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            tracing::warn!(path = %path.display(), "artifact is a symlink; not served");
            return Err(gone());
        }
        Err(e) => return Err(ApiError::internal(format!("cannot open artifact {sha256}: {e}"))),
    };
    let meta = file.metadata().await.map_err(|e| ApiError::internal(format!("cannot read artifact {sha256}: {e}")))?;
    if !meta.is_file() {
        tracing::warn!(path = %path.display(), "artifact is not a regular file; not served");
        return Err(gone());
    }
    tracing::info!(user = %admin.username, %sha256, bytes = meta.len(), "artifact downloaded");
    // Streamed: an artifact may be as large as the deckies' fetch limit.
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{sha256}.bin\"")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
        ],
        body,
    )
        .into_response())
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(for_attacker, download))]
pub struct ArtifactsDoc;
