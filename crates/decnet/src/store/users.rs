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
    /// Unix time of the last `decnet user passwd`; tokens issued before it
    /// are refused.
    pub password_changed_at: Option<f64>,
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
    let row = sqlx::query("SELECT username, password_hash, role, password_changed_at FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        let role: String = r.try_get("role")?;
        let role = role.parse::<Role>().map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(User {
            username: r.try_get("username")?,
            password_hash: r.try_get("password_hash")?,
            role,
            password_changed_at: r.try_get("password_changed_at")?,
        })
    })
    .transpose()
}

/// One row of `decnet user list`.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub username: String,
    pub role: Role,
    /// Unix time the user was created.
    pub created_at: f64,
}

/// Every user, by name.
pub async fn list(pool: &SqlitePool) -> Result<Vec<UserSummary>, sqlx::Error> {
    let rows = sqlx::query("SELECT username, role, created_at FROM users ORDER BY username").fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            let role = role.parse::<Role>().map_err(|e| sqlx::Error::Decode(e.into()))?;
            Ok(UserSummary { username: r.try_get("username")?, role, created_at: r.try_get("created_at")? })
        })
        .collect()
}

/// Replace `username`'s password hash (revoking tokens issued before now);
/// false when there is no such user.
pub async fn set_password(pool: &SqlitePool, username: &str, password_hash: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?")
        .bind(password_hash)
        .bind(decnet_bus::envelope::now_ts())
        .bind(username)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Give `username` the role `role`; false when there is no such user.
/// Requests see the new role at once (every request looks the user up);
/// open event streams end (see `api::revocation`).
pub async fn set_role(pool: &SqlitePool, username: &str, role: Role) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET role = ? WHERE username = ?")
        .bind(role.as_str())
        .bind(username)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Delete `username`; false when there is no such user. Their tokens stop
/// working at once (every request looks the user up).
pub async fn delete(pool: &SqlitePool, username: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM users WHERE username = ?").bind(username).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

/// How many admins exist (deleting the last one is refused by the CLI).
pub async fn count_admins(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetch_one(pool).await
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

    #[tokio::test]
    async fn list_set_password_delete() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("t.db")).await.unwrap();
        create(&pool, "bob", "h1", Role::Viewer).await.unwrap();
        create(&pool, "alice", "h1", Role::Admin).await.unwrap();
        let names: Vec<_> = list(&pool).await.unwrap().into_iter().map(|u| (u.username, u.role)).collect();
        assert_eq!(names, [("alice".to_string(), Role::Admin), ("bob".to_string(), Role::Viewer)]);
        assert!(set_password(&pool, "bob", "h2").await.unwrap());
        assert_eq!(find(&pool, "bob").await.unwrap().unwrap().password_hash, "h2");
        assert!(!set_password(&pool, "nobody", "h2").await.unwrap());
        assert_eq!(count_admins(&pool).await.unwrap(), 1);
        assert!(delete(&pool, "bob").await.unwrap());
        assert!(!delete(&pool, "bob").await.unwrap());
        assert!(find(&pool, "bob").await.unwrap().is_none());
    }
}
