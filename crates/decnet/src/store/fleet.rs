//! The fleet table: each decky's archetype, current services, mutation
//! interval, when it last changed and whether it is deployed. The mutator
//! reads and writes it; the database, not the bus, is the truth.

use sqlx::{Row, SqlitePool};

#[derive(Debug, Clone, PartialEq)]
pub struct FleetDecky {
    pub name: String,
    pub archetype: Option<String>,
    pub services: Vec<String>,
    pub interval_minutes: u32,
    /// Unix seconds of the last successful deploy, if any.
    pub last_mutated: Option<f64>,
    pub deployed: bool,
}

impl FleetDecky {
    /// Unix seconds at which this decky is next due, `None` when it is not
    /// deployed (nothing to rotate) or was never deployed.
    pub fn due_at(&self) -> Option<f64> {
        if !self.deployed {
            return None;
        }
        self.last_mutated.map(|t| t + f64::from(self.interval_minutes) * 60.0)
    }
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<FleetDecky> {
    let services: String = row.try_get("services")?;
    let interval: i64 = row.try_get("interval_minutes")?;
    Ok(FleetDecky {
        name: row.try_get("name")?,
        archetype: row.try_get("archetype")?,
        services: serde_json::from_str(&services)
            .map_err(|e| anyhow::anyhow!("fleet_deckies.services is not a JSON list: {e}"))?,
        interval_minutes: u32::try_from(interval).unwrap_or(1).max(1),
        last_mutated: row.try_get("last_mutated")?,
        deployed: row.try_get::<i64, _>("deployed")? != 0,
    })
}

const COLUMNS: &str = "name, archetype, services, interval_minutes, last_mutated, deployed";

/// Insert or replace a decky's whole row.
pub async fn upsert(pool: &SqlitePool, decky: &FleetDecky) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO fleet_deckies (name, archetype, services, interval_minutes, last_mutated, deployed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(name) DO UPDATE SET archetype = ?2, services = ?3, interval_minutes = ?4,
             last_mutated = ?5, deployed = ?6",
    )
    .bind(&decky.name)
    .bind(&decky.archetype)
    .bind(serde_json::to_string(&decky.services)?)
    .bind(i64::from(decky.interval_minutes))
    .bind(decky.last_mutated)
    .bind(decky.deployed as i64)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(pool: &SqlitePool, name: &str) -> anyhow::Result<Option<FleetDecky>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM fleet_deckies WHERE name = ?1"))
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every decky, by name.
pub async fn list(pool: &SqlitePool) -> anyhow::Result<Vec<FleetDecky>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM fleet_deckies ORDER BY name")).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// The deployed deckies, by name.
pub async fn list_deployed(pool: &SqlitePool) -> anyhow::Result<Vec<FleetDecky>> {
    Ok(list(pool).await?.into_iter().filter(|d| d.deployed).collect())
}

/// Record a successful deploy of `services` at `at` (unix seconds).
pub async fn record_mutation(pool: &SqlitePool, name: &str, services: &[String], at: f64) -> anyhow::Result<()> {
    let done = sqlx::query("UPDATE fleet_deckies SET services = ?2, last_mutated = ?3, deployed = 1 WHERE name = ?1")
        .bind(name)
        .bind(serde_json::to_string(services)?)
        .bind(at)
        .execute(pool)
        .await?;
    anyhow::ensure!(done.rows_affected() == 1, "decky {name:?} is not in the fleet");
    Ok(())
}

/// Mark a decky torn down: no services, not deployed.
pub async fn record_retirement(pool: &SqlitePool, name: &str, at: f64) -> anyhow::Result<()> {
    sqlx::query("UPDATE fleet_deckies SET services = '[]', last_mutated = ?2, deployed = 0 WHERE name = ?1")
        .bind(name)
        .bind(at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Set a decky's address (the native driver's listeners bind there).
pub async fn set_address(pool: &SqlitePool, name: &str, address: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE fleet_deckies SET address = ?2 WHERE name = ?1").bind(name).bind(address).execute(pool).await?;
    Ok(())
}

/// What a decky's persona is made from: its archetype and the fleet
/// file's persona overrides (a JSON object), if any.
pub async fn persona_inputs(
    pool: &SqlitePool,
    name: &str,
) -> anyhow::Result<(Option<String>, Option<serde_json::Value>)> {
    let row = sqlx::query("SELECT archetype, persona FROM fleet_deckies WHERE name = ?1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok((None, None)) };
    let overrides: Option<String> = row.try_get("persona")?;
    let overrides = overrides.map(|t| serde_json::from_str(&t)).transpose()?;
    Ok((row.try_get("archetype")?, overrides))
}

/// Store a decky's persona overrides (`None` clears them).
pub async fn set_persona(pool: &SqlitePool, name: &str, overrides: Option<&serde_json::Value>) -> anyhow::Result<()> {
    sqlx::query("UPDATE fleet_deckies SET persona = ?2 WHERE name = ?1")
        .bind(name)
        .bind(overrides.map(|o| o.to_string()))
        .execute(pool)
        .await?;
    Ok(())
}

/// Every decky's address, by name (deckies without one are left out).
/// Record whether the running mutator serves `name` (`None`: not tried yet).
pub async fn set_serving(pool: &SqlitePool, name: &str, serving: Option<&str>) -> anyhow::Result<()> {
    sqlx::query("UPDATE fleet_deckies SET serving = ? WHERE name = ?").bind(serving).bind(name).execute(pool).await?;
    Ok(())
}

/// Whether the running mutator serves `name`: `None` not tried yet,
/// `Some("ok")`, or the cause it cannot.
pub async fn serving_of(pool: &SqlitePool, name: &str) -> anyhow::Result<Option<String>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT serving FROM fleet_deckies WHERE name = ?").bind(name).fetch_optional(pool).await?;
    Ok(row.and_then(|(s,)| s))
}

/// One decky's address, if it has one (a single-row lookup: deploys call
/// it per decky, so it must not read the whole fleet).
pub async fn address_of(pool: &SqlitePool, name: &str) -> anyhow::Result<Option<String>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT address FROM fleet_deckies WHERE name = ?").bind(name).fetch_optional(pool).await?;
    Ok(row.and_then(|(a,)| a))
}

pub async fn addresses(pool: &SqlitePool) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let rows = sqlx::query("SELECT name, address FROM fleet_deckies WHERE address IS NOT NULL").fetch_all(pool).await?;
    rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("address")?))).collect()
}
