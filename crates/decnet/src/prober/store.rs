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
    let mut tx = pool.begin().await?;
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

/// Every attacker IP the profiler has recorded (for the prober's start).
pub async fn known_attackers(pool: &SqlitePool) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT ip FROM attackers ORDER BY last_seen DESC").fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(ip,)| ip).collect())
}
