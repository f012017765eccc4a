//! The fleet table: each decky's archetype, current services, mutation
//! interval, when it last changed and whether it is deployed. The mutator
//! reads and writes it; the database, not the bus, is the truth.

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

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

/// What a fleet file says of one decky, saved by [`save_specs`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeckySpec {
    pub name: String,
    pub archetype: Option<String>,
    pub interval_minutes: u32,
    /// `None` keeps the address the decky has (or will be given).
    pub address: Option<String>,
    /// Persona overrides, a JSON object; `None` clears them.
    pub persona: Option<serde_json::Value>,
}

/// Rows per multi-row statement: a handful of parameters each, far under
/// SQLite's 32,766 bound parameters per statement.
const ROWS_PER_STATEMENT: usize = 500;

/// Save what a fleet file says of many deckies, in one transaction and a
/// statement per [`ROWS_PER_STATEMENT`] deckies (a deploy of 10,000
/// deckies is a few dozen round trips to SQLite's thread, not 40,000). A
/// new decky is inserted undeployed; an existing one keeps its services
/// and deployment and takes the archetype, interval and persona, and the
/// address when one is given. A decky not deployed forgets whether the
/// mutator served it (`serving`), so the next answer is about this deploy.
pub async fn save_specs(pool: &SqlitePool, specs: &[DeckySpec]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for chunk in specs.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO fleet_deckies (name, archetype, interval_minutes, address, persona) ");
        q.push_values(chunk, |mut b, spec| {
            b.push_bind(&spec.name)
                .push_bind(&spec.archetype)
                .push_bind(i64::from(spec.interval_minutes))
                .push_bind(&spec.address)
                .push_bind(spec.persona.as_ref().map(|p| p.to_string()));
        });
        q.push(
            " ON CONFLICT(name) DO UPDATE SET archetype = excluded.archetype,
                 interval_minutes = excluded.interval_minutes,
                 address = COALESCE(excluded.address, address), persona = excluded.persona,
                 serving = CASE WHEN deployed THEN serving ELSE NULL END",
        );
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A first deploy to record with [`record_creations`].
#[derive(Debug, Clone, PartialEq)]
pub struct Creation {
    pub name: String,
    pub services: Vec<String>,
}

/// Record first deploys at `at`, as [`record_mutation`] plus a
/// `creation` row in `decky_mutations` each, in one transaction of
/// multi-row statements. Fails, recording nothing, if a decky is not in
/// the fleet.
pub async fn record_creations(pool: &SqlitePool, created: &[Creation], at: f64) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for chunk in created.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<(&str, String)> = chunk
            .iter()
            .map(|c| Ok((c.name.as_str(), serde_json::to_string(&c.services)?)))
            .collect::<anyhow::Result<_>>()?;
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE fleet_deckies SET services = v.column2, last_mutated = ");
        q.push_bind(at).push(", deployed = 1 FROM (");
        // A VALUES list as a table: UPDATE … FROM (SQLite 3.33+).
        q.push_values(&rows, |mut b, (name, services)| {
            b.push_bind(*name).push_bind(services);
        });
        q.push(") AS v WHERE fleet_deckies.name = v.column1");
        let done = q.build().execute(&mut *tx).await?;
        if done.rows_affected() != chunk.len() as u64 {
            anyhow::bail!(
                "{} of {} deckies to record are not in the fleet",
                chunk.len() as u64 - done.rows_affected(),
                chunk.len()
            );
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO decky_mutations (timestamp, decky, old_services, new_services, trigger, actor) ",
        );
        q.push_values(&rows, |mut b, (name, services)| {
            b.push_bind(at)
                .push_bind(*name)
                .push_bind("[]")
                .push_bind(services)
                .push_bind("creation")
                .push_bind(None::<String>);
        });
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
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

/// Whether the running mutator serves each of `names` (as
/// [`serving_of`]), in one query per [`ROWS_PER_STATEMENT`] names; names
/// not in the fleet are left out.
pub async fn serving_of_many(
    pool: &SqlitePool,
    names: &[&str],
) -> anyhow::Result<std::collections::HashMap<String, Option<String>>> {
    let mut out = std::collections::HashMap::with_capacity(names.len());
    for chunk in names.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT name, serving FROM fleet_deckies WHERE name IN (");
        let mut list = q.separated(", ");
        for name in chunk {
            list.push_bind(*name);
        }
        q.push(")");
        for row in q.build().fetch_all(pool).await? {
            out.insert(row.try_get("name")?, row.try_get("serving")?);
        }
    }
    Ok(out)
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
