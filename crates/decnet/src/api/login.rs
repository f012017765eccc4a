//! `POST /api/v1/auth/login`: trade a user name and password for a bearer
//! token.
//!
//! A wrong password and an unknown user get the same 401 and take the same
//! time (an unknown user is checked against a dummy hash), so the answer
//! does not reveal which user names exist.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

use super::error::{ApiError, ApiJson, ErrorBody};
use super::state::AppState;
use crate::auth::{self, Role};
use crate::store::users;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    pub role: Role,
    /// Unix time (seconds) after which the token is refused.
    pub expires_at: i64,
}

static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| auth::hash_password("decnet-timing-equaliser").unwrap_or_default());

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 413, description = "Body over the 64 KiB limit", body = ErrorBody),
        (status = 500, description = "Database error or failed password check", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let user = users::find(&state.pool, &req.username)
        .await
        .map_err(|e| ApiError::internal(format!("user lookup failed: {e}")))?;
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.clone());
    let password = req.password;
    // argon2 is deliberately slow: keep it off the async workers.
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::internal(format!("password check failed: {e}")))?;
    let user = match user {
        Some(u) if matches => u,
        _ => {
            tracing::info!(username = %req.username.escape_debug(), "failed login");
            return Err(ApiError::unauthorized("invalid user name or password"));
        }
    };
    let (token, claims) = state.jwt.issue(&user.username, user.role).map_err(|e| ApiError::internal(e.to_string()))?;
    tracing::info!(username = %user.username, role = %user.role, "login");
    Ok(Json(LoginResponse {
        access_token: token,
        token_type: "bearer".into(),
        role: user.role,
        expires_at: claims.exp,
    }))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(login), components(schemas(LoginRequest, LoginResponse, Role, ErrorBody)))]
pub struct LoginDoc;
