//! The `users` table: operators of the control plane and their roles.
//!
//! Passwords arrive here already hashed (see `crate::auth`); this module
//! only stores and finds rows, and turns the UNIQUE constraint into a
//! [`UserError::Duplicate`] the CLI can explain.

use sqlx::{Row, SqlitePool};

use crate::auth::Role;

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} already exists")]
    Duplicate(String),
    #[error("invalid user name {0:?}: use 1-64 characters, letters, digits, '.', '_', '-' or '@'")]
    InvalidName(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// User names are typed on command lines and shown in logs: keep them
/// short and free of whitespace and control characters.
pub fn validate_username(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.to_owned()))
    }
}

/// Insert a user; a name already taken is [`UserError::Duplicate`].
pub async fn create(pool: &SqlitePool, username: &str, password_hash: &str, role: Role) -> Result<(), UserError> {
    validate_username(username)?;
    let result = sqlx::query("INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)")
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(decnet_bus::envelope::now_ts())
        .execute(pool)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(UserError::Duplicate(username.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// The user named `username`, if any.
pub async fn find(pool: &SqlitePool, username: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query("SELECT username, password_hash, role FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        let role: String = r.try_get("role")?;
        let role = role.parse::<Role>().map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(User { username: r.try_get("username")?, password_hash: r.try_get("password_hash")?, role })
    })
    .transpose()
}

/// How many users exist (the API warns at start when there are none).
pub async fn count(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_find_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("t.db")).await.unwrap();
        create(&pool, "alice", "h", Role::Admin).await.unwrap();
        let u = find(&pool, "alice").await.unwrap().unwrap();
        assert_eq!((u.username.as_str(), u.role), ("alice", Role::Admin));
        assert!(matches!(create(&pool, "alice", "h2", Role::Viewer).await, Err(UserError::Duplicate(_))));
        assert!(find(&pool, "bob").await.unwrap().is_none());
        assert!(matches!(create(&pool, "bad name", "h", Role::Viewer).await, Err(UserError::InvalidName(_))));
    }
}
