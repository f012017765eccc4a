//! The `fingerprints` table (migration 0007), shared by prober and sniffer.
//!
//! One row per (attacker_ip, kind, port, source): the latest hash with
//! first/last seen. The upsert reports the hash it replaced, which is how
//! the prober learns that an attacker's server changed
//! (`attacker.fingerprint_rotated`) without keeping state of its own.

use serde_json::Value;
use sqlx::SqlitePool;

/// Who recorded a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Prober,
    Sniffer,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Prober => "prober",
            Source::Sniffer => "sniffer",
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upsert {
    New,
    Same,
    /// The stored hash was different; here it is.
    Changed(String),
}

/// Insert or refresh the row; returns whether the hash is new, the same or changed.
#[allow(clippy::too_many_arguments)]
pub async fn upsert(
    pool: &SqlitePool,
    attacker_ip: &str,
    kind: &str,
    port: u16,
    hash: &str,
    details: &Value,
    source: Source,
    now: f64,
) -> Result<Upsert, sqlx::Error> {
    // IMMEDIATE: take the write lock first. A deferred transaction that
    // reads and then writes cannot wait for another writer (SQLite answers
    // "database is locked" at once instead of using the busy timeout).
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let old: Option<(String,)> =
        sqlx::query_as("SELECT hash FROM fingerprints WHERE attacker_ip = ? AND kind = ? AND port = ? AND source = ?")
            .bind(attacker_ip)
            .bind(kind)
            .bind(port as i64)
            .bind(source.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO fingerprints (attacker_ip, kind, port, hash, details, source, first_seen, last_seen)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (attacker_ip, kind, port, source) DO UPDATE SET
            hash = excluded.hash, details = excluded.details, last_seen = excluded.last_seen,
            first_seen = CASE WHEN fingerprints.hash = excluded.hash THEN fingerprints.first_seen ELSE excluded.first_seen END",
    )
    .bind(attacker_ip)
    .bind(kind)
    .bind(port as i64)
    .bind(hash)
    .bind(details.to_string())
    .bind(source.as_str())
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(match old {
        None => Upsert::New,
        Some((h,)) if h == hash => Upsert::Same,
        Some((h,)) => Upsert::Changed(h),
    })
}

/// [`upsert`], tried up to three times (0.2 s then 0.4 s apart): on a busy
/// host several workers write the database, and a write that outlasts the
/// busy timeout would otherwise lose the row for good (the sniffer's dedup
/// and the prober's period mean the same fingerprint is not sent again soon).
#[allow(clippy::too_many_arguments)]
pub async fn upsert_retrying(
    pool: &SqlitePool,
    attacker_ip: &str,
    kind: &str,
    port: u16,
    hash: &str,
    details: &Value,
    source: Source,
    now: f64,
) -> Result<Upsert, sqlx::Error> {
    let mut wait = std::time::Duration::from_millis(200);
    let mut tries = 1;
    loop {
        match upsert(pool, attacker_ip, kind, port, hash, details, source, now).await {
            Err(e) if tries < 3 => {
                tracing::warn!(attacker_ip, kind, error = %e, "cannot store a fingerprint; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Every attacker IP the profiler has recorded (for the prober's start).
pub async fn known_attackers(pool: &SqlitePool) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT ip FROM attackers ORDER BY last_seen DESC").fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(ip,)| ip).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Another writer holding the database: the upsert waits for it (busy
    /// timeout) instead of failing at once; one holding it longer than the
    /// busy timeout (5 s) makes the first attempt fail and the retry stores
    /// the row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_blocked_past_the_busy_timeout_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decnet.db");
        let pool = crate::store::open(&path).await.unwrap();
        let details = serde_json::json!({"ja4": "t13d"});
        let mut short = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO decnet_meta (key, value) VALUES ('short', '1')").execute(&mut *short).await.unwrap();
        let short_release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            short.commit().await.unwrap();
        });
        assert_eq!(
            upsert(&pool, "127.0.0.8", "ja3", 443, "abc", &details, Source::Sniffer, 1.0).await.unwrap(),
            Upsert::New
        );
        short_release.await.unwrap();

        // Another writer: a transaction that has written holds the write lock.
        let mut blocker = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO decnet_meta (key, value) VALUES ('blocker', '1')")
            .execute(&mut *blocker)
            .await
            .unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5300)).await;
            blocker.commit().await.unwrap();
        });
        let started = Instant::now();
        let r = upsert_retrying(&pool, "127.0.0.9", "ja3", 443, "abc", &details, Source::Sniffer, 1.0).await;
        assert_eq!(r.unwrap(), Upsert::New);
        assert!(started.elapsed() > Duration::from_secs(5), "the first attempt waited out the busy timeout");
        let _ = release.await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fingerprints WHERE attacker_ip = '127.0.0.9'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}
