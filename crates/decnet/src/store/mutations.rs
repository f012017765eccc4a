//! `decky_mutations`: every deployed decky transition, as the mutator
//! emitted it, for the API's history views (the ingest log is the audit
//! record; this table is what can be queried).

use sqlx::{Row, SqlitePool};

/// One row of `decky_mutations`.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationRow {
    pub id: i64,
    pub timestamp: f64,
    pub decky: String,
    pub old_services: Vec<String>,
    pub new_services: Vec<String>,
    pub trigger: String,
    pub actor: Option<String>,
}

/// Record one transition. Service lists are stored as JSON arrays.
pub async fn record(
    pool: &SqlitePool,
    timestamp: f64,
    decky: &str,
    old_services: &[String],
    new_services: &[String],
    trigger: &str,
    actor: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO decky_mutations (timestamp, decky, old_services, new_services, trigger, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(timestamp)
    .bind(decky)
    .bind(serde_json::to_string(old_services)?)
    .bind(serde_json::to_string(new_services)?)
    .bind(trigger)
    .bind(actor)
    .execute(pool)
    .await?;
    Ok(())
}

/// A decky's transitions, oldest first.
pub async fn for_decky(pool: &SqlitePool, decky: &str) -> anyhow::Result<Vec<MutationRow>> {
    let rows = sqlx::query(
        "SELECT id, timestamp, decky, old_services, new_services, trigger, actor
         FROM decky_mutations WHERE decky = ?1 ORDER BY timestamp, id",
    )
    .bind(decky)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let old: String = r.try_get("old_services")?;
            let new: String = r.try_get("new_services")?;
            Ok(MutationRow {
                id: r.try_get("id")?,
                timestamp: r.try_get("timestamp")?,
                decky: r.try_get("decky")?,
                old_services: serde_json::from_str(&old)?,
                new_services: serde_json::from_str(&new)?,
                trigger: r.try_get("trigger")?,
                actor: r.try_get("actor")?,
            })
        })
        .collect()
}
