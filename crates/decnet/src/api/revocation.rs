//! Ending open event streams when their user is deleted, demoted or
//! promoted, or changes password.
//!
//! A request checks its token against the `users` table, but an SSE stream
//! is one request that lasts hours: without this, a user removed with
//! `decnet user del` kept receiving events until the token expired.
//! `decnet user` runs in another process and writes the database directly,
//! so the API cannot be told; it has to look. One task per API process
//! reads the (small) `users` table every [`POLL`] while at least one stream
//! is open and publishes the snapshot on a `watch` channel; every stream
//! compares its own user with it. That is one query per period however
//! many streams are open, and none while none are.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Row, SqlitePool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthUser, Role};

/// How often the `users` table is read while streams are open: the
/// longest a revoked user keeps receiving events.
pub const POLL: Duration = Duration::from_millis(250);

/// What a stream needs to know of a user to tell whether its token still
/// holds.
#[derive(Debug, Clone, PartialEq)]
pub struct UserStamp {
    pub role: Role,
    pub password_changed_at: Option<f64>,
}

/// `None` until the first read of the table.
type Snapshot = Option<Arc<HashMap<String, UserStamp>>>;

/// The per-process watcher of the `users` table, started by the first
/// stream that subscribes.
#[derive(Debug)]
pub struct UserWatch {
    tx: watch::Sender<Snapshot>,
    started: AtomicBool,
}

impl Default for UserWatch {
    fn default() -> Self {
        UserWatch { tx: watch::Sender::new(None), started: AtomicBool::new(false) }
    }
}

impl UserWatch {
    /// A [`Revocation`] for `user`'s stream, starting the watcher task on
    /// first use (it ends with `shutdown`).
    pub fn revocation(&self, user: &AuthUser, pool: &SqlitePool, shutdown: &CancellationToken) -> Revocation {
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(poll_users(self.tx.clone(), pool.clone(), shutdown.clone()));
        }
        Revocation {
            username: user.username.clone(),
            role: user.role,
            issued_at: user.token_issued_at,
            rx: self.tx.subscribe(),
        }
    }
}

async fn read_users(pool: &SqlitePool) -> Result<HashMap<String, UserStamp>, sqlx::Error> {
    let rows = sqlx::query("SELECT username, role, password_changed_at FROM users").fetch_all(pool).await?;
    let mut users = HashMap::with_capacity(rows.len());
    for r in rows {
        let role: String = r.try_get("role")?;
        // A role this version does not know holds no stream open.
        let Ok(role) = role.parse::<Role>() else { continue };
        users
            .insert(r.try_get("username")?, UserStamp { role, password_changed_at: r.try_get("password_changed_at")? });
    }
    Ok(users)
}

async fn poll_users(tx: watch::Sender<Snapshot>, pool: SqlitePool, shutdown: CancellationToken) {
    loop {
        // Only the watcher's own sender is left when no stream is open:
        // then there is nobody to tell, and no reason to query.
        if tx.receiver_count() > 0 {
            match read_users(&pool).await {
                Ok(users) => {
                    tx.send_if_modified(|current| {
                        let changed = current.as_deref() != Some(&users);
                        if changed {
                            *current = Some(Arc::new(users));
                        }
                        changed
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot read users to check open event streams"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One stream's view of its user: resolves when the token it was opened
/// with no longer stands.
#[derive(Debug)]
pub struct Revocation {
    username: String,
    role: Role,
    issued_at: i64,
    rx: watch::Receiver<Snapshot>,
}

impl Revocation {
    /// Why the stream must end, judged against one snapshot of `users`.
    fn verdict(&self, snapshot: &Snapshot) -> Option<&'static str> {
        let users = snapshot.as_ref()?;
        let Some(now) = users.get(&self.username) else { return Some("user deleted") };
        if now.role != self.role {
            return Some("role changed; log in again");
        }
        // Whole seconds, as in the request check (`AuthUser::from_token`).
        if now.password_changed_at.is_some_and(|changed| (self.issued_at as f64) < changed.floor()) {
            return Some("password changed; log in again");
        }
        None
    }

    /// Waits until the user is deleted, changes role or password; the
    /// reason. Cancel-safe (the receiver keeps what it has seen).
    pub async fn revoked(&mut self) -> &'static str {
        loop {
            let snapshot = self.rx.borrow_and_update().clone();
            if let Some(reason) = self.verdict(&snapshot) {
                return reason;
            }
            if self.rx.changed().await.is_err() {
                // The watcher is gone (shutdown): nothing more to learn.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(rx: watch::Receiver<Snapshot>) -> Revocation {
        Revocation { username: "bob".into(), role: Role::Viewer, issued_at: 100, rx }
    }

    fn snapshot(entries: &[(&str, Role, Option<f64>)]) -> Snapshot {
        Some(Arc::new(
            entries
                .iter()
                .map(|(n, role, pw)| (n.to_string(), UserStamp { role: *role, password_changed_at: *pw }))
                .collect(),
        ))
    }

    #[test]
    fn verdicts() {
        let (_tx, rx) = watch::channel(None);
        let r = revocation(rx);
        assert_eq!(r.verdict(&None), None, "no snapshot yet is no reason to end");
        assert_eq!(r.verdict(&snapshot(&[("bob", Role::Viewer, None)])), None);
        assert_eq!(r.verdict(&snapshot(&[("alice", Role::Admin, None)])), Some("user deleted"));
        assert_eq!(r.verdict(&snapshot(&[("bob", Role::Admin, None)])), Some("role changed; log in again"));
        assert_eq!(r.verdict(&snapshot(&[("bob", Role::Viewer, Some(100.5))])), None, "same second as the token");
        assert_eq!(r.verdict(&snapshot(&[("bob", Role::Viewer, Some(101.0))])), Some("password changed; log in again"));
    }
}
