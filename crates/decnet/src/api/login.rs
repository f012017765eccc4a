//! `POST /api/v1/auth/login`: trade a user name and password for a bearer
//! token.
//!
//! A wrong password and an unknown user get the same 401 and take the same
//! time (an unknown user is checked against a dummy hash), so the answer
//! does not reveal which user names exist.
//!
//! Password checks run under the hashing semaphore, and failures are
//! throttled per (user, address), per address and per user (see
//! [`super::limits`]): a throttled attempt is a 429 with `Retry-After`,
//! answered before any hashing, so guessing costs the attacker time and
//! the server almost nothing. Throttling never holds back an address the
//! user has logged in from because of failures from other addresses.
//!
//! The token answer carries `Cache-Control: no-store`.

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
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
        (status = 429, description = "Too many failed logins for this user or from this address; see Retry-After", body = ErrorBody),
        (status = 500, description = "Database error or failed password check", body = ErrorBody),
        (status = 503, description = "Every password-check slot stayed busy; see Retry-After", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    PeerIp(peer): PeerIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<(NoStore, Json<LoginResponse>), Response> {
    let guard = &state.login_guard;
    if let Some(wait) = guard.throttle.check(&req.username, peer) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        tracing::info!(username = %req.username.escape_debug(), peer = ?peer, retry_after = secs, "login throttled");
        let err =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("too many failed logins; try again in {secs} s"));
        return Err(retry_after(err, secs));
    }
    let user = users::find(&state.pool, &req.username)
        .await
        .map_err(|e| ApiError::internal(format!("user lookup failed: {e}")).into_response())?;
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.clone());
    let password = req.password;
    // argon2 is deliberately slow and memory-hard: off the async workers,
    // and only a few at once.
    let matches = match guard.hashing.run(move || auth::verify_password(&password, &hash)).await {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(ApiError::internal(format!("password check failed: {e}")).into_response()),
        None => {
            tracing::warn!("login refused: every password-check slot stayed busy");
            return Err(retry_after(ApiError::unavailable("the server is busy checking passwords; try again"), 5));
        }
    };
    let user = match user {
        Some(u) if matches => u,
        _ => {
            guard.throttle.fail(&req.username, peer);
            tracing::info!(username = %req.username.escape_debug(), peer = ?peer, "failed login");
            return Err(ApiError::unauthorized("invalid user name or password").into_response());
        }
    };
    guard.throttle.succeed(&user.username, peer);
    let (token, claims) =
        state.jwt.issue(&user.username, user.role).map_err(|e| ApiError::internal(e.to_string()).into_response())?;
    tracing::info!(username = %user.username, role = %user.role, "login");
    if let Some(path) = &state.initial_password_file {
        crate::initial_admin::forget_after_login(path, &user.username);
    }
    let body =
        LoginResponse { access_token: token, token_type: "bearer".into(), role: user.role, expires_at: claims.exp };
    Ok((NoStore, Json(body)))
}

/// `Cache-Control: no-store` (and HTTP/1.0's `Pragma: no-cache`): a bearer
/// token must not be kept by a browser cache or a proxy (RFC 6749 §5.1).
pub struct NoStore;

impl axum::response::IntoResponseParts for NoStore {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut res: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        Ok(res)
    }
}

fn retry_after(err: ApiError, secs: u64) -> Response {
    let mut resp = err.into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// The client's IP address, when the server knows it (it always does
/// behind [`super::serve`]; a router driven in-process may not).
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(login), components(schemas(LoginRequest, LoginResponse, Role, ErrorBody)))]
pub struct LoginDoc;
