//! Replayable shell sessions: `GET /api/v1/attackers/{ip}/sessions` lists
//! an attacker's recorded sessions, `GET /api/v1/recordings/{sid}` hands
//! the dashboard's player the asciicast file (viewer and admin).
//!
//! The file's path came from a decky's `session_recorded` line; it is
//! served only when it resolves (symlinks followed) to a regular file
//! inside this API's recordings folder and its size and SHA-256 are still
//! the ones the line reported, so a row can never be turned into a reader
//! of any other file on the host, and a file changed after the session
//! is refused rather than replayed as evidence.

use std::path::Path;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::artifacts::LIST_LIMIT;
use super::attackers::parse_ip;
use super::error::{ApiError, ApiPath, ErrorBody};
use super::state::AppState;
use crate::auth::RequireViewer;
use crate::ingest::recordings::is_session_id;

/// Largest recording served (deckies bound theirs at 1 MiB by default).
pub const MAX_RECORDING_BYTES: u64 = 16 * 1024 * 1024;

#[utoipa::path(
    get, path = "/api/v1/attackers/{ip}/sessions", tag = "attackers", security(("bearer" = [])),
    params(("ip" = String, Path, description = "Attacker IP address")),
    responses(
        (status = 200, description = "`{sessions: [{sid, decky, service, username, started, ended, duration_s, commands, bytes, sha256}]}`, newest first; only sessions with a recording"),
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
    let sessions = sqlx::query(
        "SELECT sid, decky, service, username, started, ended, commands, bytes, sha256 FROM recordings
         WHERE attacker_ip = ? ORDER BY started DESC LIMIT ?",
    )
    .bind(&ip)
    .bind(LIST_LIMIT)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        let (started, ended) = (r.try_get::<f64, _>("started")?, r.try_get::<f64, _>("ended")?);
        Ok(json!({
            "sid": r.try_get::<String, _>("sid")?,
            "decky": r.try_get::<String, _>("decky")?,
            "service": r.try_get::<String, _>("service")?,
            "username": r.try_get::<Option<String>, _>("username")?,
            "started": started,
            "ended": ended,
            "duration_s": ended - started,
            "commands": r.try_get::<i64, _>("commands")?,
            "bytes": r.try_get::<i64, _>("bytes")?,
            "sha256": r.try_get::<String, _>("sha256")?,
        }))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "sessions": sessions })))
}

#[utoipa::path(
    get, path = "/api/v1/recordings/{sid}", tag = "attackers", security(("bearer" = [])),
    params(("sid" = String, Path, description = "Session id (1-64 of A-Z a-z 0-9 _ -)")),
    responses(
        (status = 200, description = "The asciicast v2 file (`application/x-asciicast`, as an attachment)"),
        (status = 400, description = "Not a session id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such recording, or its file is gone", body = ErrorBody),
        (status = 409, description = "The file no longer matches what the decky recorded", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn cast(
    State(state): State<AppState>,
    RequireViewer(_viewer): RequireViewer,
    ApiPath(sid): ApiPath<String>,
) -> Result<Response, ApiError> {
    if !is_session_id(&sid) {
        return Err(ApiError::bad_request("sid must be 1-64 letters, digits, '_' or '-'"));
    }
    let row = sqlx::query("SELECT path, bytes, sha256 FROM recordings WHERE sid = ?")
        .bind(&sid)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no recording of session {sid}")))?;
    let (path, bytes, sha256): (String, i64, String) =
        (row.try_get("path")?, row.try_get("bytes")?, row.try_get("sha256")?);
    let folder = state.evidence.recordings.clone();
    let contents = tokio::task::spawn_blocking(move || read_recording(&folder, Path::new(&path), bytes, &sha256))
        .await
        .map_err(|e| ApiError::internal(format!("recording reader failed: {e}")))??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-asciicast".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{sid}.cast\"")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        contents,
    )
        .into_response())
}

/// The file at `path` if it is a regular file inside `folder` of exactly
/// `bytes` bytes hashing to `sha256`.
fn read_recording(folder: &Path, path: &Path, bytes: i64, sha256: &str) -> Result<Vec<u8>, ApiError> {
    let gone = || ApiError::not_found("the recording's file is gone");
    let folder = folder.canonicalize().map_err(|_| gone())?;
    let real = path.canonicalize().map_err(|_| gone())?;
    if !real.starts_with(&folder) {
        tracing::warn!(path = %path.display(), folder = %folder.display(), "recording outside the recordings folder refused");
        return Err(ApiError::not_found("the recording is not in this API's recordings folder"));
    }
    let meta = std::fs::metadata(&real).map_err(|_| gone())?;
    if !meta.is_file() || meta.len() > MAX_RECORDING_BYTES || i64::try_from(meta.len()).ok() != Some(bytes) {
        return Err(ApiError::conflict("the recording's file no longer matches what was recorded"));
    }
    let contents = std::fs::read(&real).map_err(|_| gone())?;
    let digest: String = Sha256::digest(&contents).iter().map(|b| format!("{b:02x}")).collect();
    if digest != sha256 {
        return Err(ApiError::conflict("the recording's file no longer matches what was recorded"));
    }
    Ok(contents)
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(for_attacker, cast))]
pub struct RecordingsDoc;
