//! Who may call the control plane: argon2id password hashes, HS256 bearer
//! tokens, and the axum extractors that check them.
//!
//! Routes declare what they need in their signature (`RequireAdmin`,
//! `RequireViewer`, or `ViewerFromQuery` for EventSource clients that
//! cannot set headers), so a handler can never forget the check. Every
//! failure is a JSON 401 (no or bad token) or 403 (role too low); the
//! message says which, without saying whether a user name exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::store::users;

/// Default lifetime of a bearer token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Roles, ordered: an admin may do everything a viewer may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (expected admin or viewer)")),
        }
    }
}

/// Hash a password with argon2id and a fresh random salt (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("cannot encode salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash`. A malformed hash is a
/// mismatch, not an error: the caller answers 401 either way.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Shortest password `decnet user add` / `passwd` accept by default.
pub const DEFAULT_MIN_PASSWORD_LEN: usize = 12;
/// Longest accepted: argon2 takes anything, but a megabyte "password" is
/// only a way to burn CPU.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Whether `password` may be set: at least `min` characters (not bytes,
/// so non-ASCII passphrases are not favoured), at most [`MAX_PASSWORD_LEN`].
pub fn check_new_password(password: &str, min: usize) -> anyhow::Result<()> {
    let chars = password.chars().count();
    anyhow::ensure!(chars >= min, "password too short: {chars} characters, at least {min} required");
    anyhow::ensure!(chars <= MAX_PASSWORD_LEN, "password too long: at most {MAX_PASSWORD_LEN} characters");
    Ok(())
}

/// What a token says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// Signing and verifying keys plus the token lifetime.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token past `exp` is refused at once.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Issue a token for `username` with `role`, valid for `self.ttl`.
    pub fn issue(&self, username: &str, role: Role) -> anyhow::Result<(String, Claims)> {
        let now = unix_now();
        let claims = Claims { sub: username.to_owned(), role, iat: now, exp: now + self.ttl.as_secs() as i64 };
        let token = self.sign(&claims)?;
        Ok((token, claims))
    }

    /// Sign arbitrary claims (tests use this to forge expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| anyhow::anyhow!("cannot sign token: {e}"))
    }

    /// Check signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The JWT secret: `DECNET_JWT_SECRET` when set, else the file
/// `<home>/jwt.secret`, created once (mode 0600) with 32 random bytes so
/// tokens survive restarts of the API.
pub fn load_or_create_secret(home: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = std::env::var_os("DECNET_JWT_SECRET").filter(|s| !s.is_empty()) {
        return Ok(s.into_encoded_bytes());
    }
    let path = home.join("jwt.secret");
    match std::fs::read(&path) {
        Ok(bytes) if !bytes.is_empty() => return Ok(bytes),
        Ok(_) => anyhow::bail!("JWT secret file {} is empty; delete it to generate a new one", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read JWT secret {}: {e}", path.display()),
    }
    std::fs::create_dir_all(home).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", home.display()))?;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: if another process raced us, read what it wrote instead.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write JWT secret {}: {e}", path.display()))?;
            Ok(secret.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read JWT secret {}: {e}", path.display()))
        }
        Err(e) => anyhow::bail!("cannot create JWT secret {}: {e}", path.display()),
    }
}

/// An authenticated caller: the token was valid and the user still exists.
/// The role is the one in the database now, so demoting or deleting a
/// user takes effect on their next request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub username: String,
    pub role: Role,
    /// Unix time the presented token expires (long-lived responses such
    /// as SSE streams end then, instead of outliving their credential).
    pub token_expires_at: i64,
    /// Unix time the token was issued (an SSE stream ends when the
    /// password changes after it; see `api::revocation`).
    pub token_issued_at: i64,
}

impl AuthUser {
    /// 403 unless this user has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this action needs the {role} role; {} is {}", self.username, self.role)))
        }
    }

    /// Validate `token` against the keys and the user table.
    pub async fn from_token(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
        let claims = state.jwt.verify(token).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthorized("token expired; log in again"),
                ErrorKind::InvalidSignature => ApiError::unauthorized("token signature is invalid"),
                _ => ApiError::unauthorized("token is malformed"),
            }
        })?;
        let user = users::find(&state.pool, &claims.sub)
            .await
            .map_err(|e| ApiError::internal(format!("user lookup failed: {e}")))?
            .ok_or_else(|| ApiError::unauthorized("token names a user that no longer exists"))?;
        // Whole seconds: `iat` has no fraction, and a token issued in the
        // very second of the change is the new password's own login.
        if user.password_changed_at.is_some_and(|changed| (claims.iat as f64) < changed.floor()) {
            return Err(ApiError::unauthorized("token predates a password change; log in again"));
        }
        Ok(AuthUser {
            username: user.username,
            role: user.role,
            token_expires_at: claims.exp,
            token_issued_at: claims.iat,
        })
    }
}

fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized("Authorization header is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized("Authorization header must be `Bearer <token>`")),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        AuthUser::from_token(state, token).await
    }
}

/// Any logged-in user (viewer or admin), from the Authorization header.
#[derive(Debug, Clone)]
pub struct RequireViewer(pub AuthUser);

/// An admin, from the Authorization header.
#[derive(Debug, Clone)]
pub struct RequireAdmin(pub AuthUser);

impl FromRequestParts<AppState> for RequireViewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require(Role::Viewer)?;
        Ok(RequireViewer(user))
    }
}

impl FromRequestParts<AppState> for RequireAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require(Role::Admin)?;
        Ok(RequireAdmin(user))
    }
}

/// A viewer authenticated by the Authorization header or, for browser
/// EventSource connections that cannot send headers, by `?token=`.
#[derive(Debug, Clone)]
pub struct ViewerFromQuery(pub AuthUser);

impl FromRequestParts<AppState> for ViewerFromQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = match bearer_token(parts)? {
            Some(t) => t.to_owned(),
            None => query_token(&parts.uri).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?,
        };
        let user = AuthUser::from_token(state, &token).await?;
        user.require(Role::Viewer)?;
        Ok(ViewerFromQuery(user))
    }
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    #[derive(Deserialize)]
    struct Q {
        token: Option<String>,
    }
    let q = axum::extract::Query::<Q>::try_from_uri(uri).ok()?;
    q.0.token.filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_roundtrip() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn token_roundtrip_and_rejections() {
        let keys = JwtKeys::new(b"k1", Duration::from_secs(60));
        let (tok, claims) = keys.issue("alice", Role::Admin).unwrap();
        assert_eq!(keys.verify(&tok).unwrap().sub, "alice");
        assert_eq!(claims.exp - claims.iat, 60);
        let other = JwtKeys::new(b"k2", Duration::from_secs(60));
        assert!(other.verify(&tok).is_err());
        let expired =
            keys.sign(&Claims { sub: "alice".into(), role: Role::Admin, iat: 0, exp: unix_now() - 1 }).unwrap();
        assert!(keys.verify(&expired).is_err());
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Admin > Role::Viewer);
        assert_eq!("viewer".parse::<Role>().unwrap(), Role::Viewer);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn query_token_is_found() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(query_token(&uri("/x?a=1&token=abc")), Some("abc".into()));
        assert_eq!(query_token(&uri("/x?token=")), None);
        assert_eq!(query_token(&uri("/x")), None);
    }
}
