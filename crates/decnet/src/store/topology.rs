//! Topologies, their deckies and the mutation queue, in SQLite.
//!
//! The database is the source of truth; bus events about topologies are
//! published only after the rows they describe are committed. Writes that
//! depend on a read (status checks, version checks, applying an op) run in
//! `BEGIN IMMEDIATE` transactions so the write lock is taken up front and
//! concurrent writers queue on `busy_timeout` instead of racing; the claim
//! is a single `UPDATE ... RETURNING`, which SQLite runs under the write lock.

use serde::Serialize;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::topology::{
    validate_topology, Decky, MutationOp, MutationState, TopologyStatus, TransitionError, UnknownValue, ValidationError,
};

/// A topology with its deckies in declaration order.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Topology {
    pub id: String,
    pub name: String,
    pub status: TopologyStatus,
    pub version: i64,
    pub deckies: Vec<Decky>,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds.
    pub updated_at: f64,
}

/// One queued change to a topology.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Mutation {
    pub id: i64,
    pub topology_id: String,
    pub op: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub state: MutationState,
    /// Why it failed (only for `failed`).
    pub reason: Option<String>,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds.
    pub updated_at: f64,
}

impl Mutation {
    /// The typed op, re-parsed from the stored row.
    pub fn op(&self) -> std::result::Result<MutationOp, ValidationError> {
        MutationOp::parse(&self.op, &self.payload)
    }
}

/// A queued mutation and the topology version it produced (what a client
/// sends as `expected_version` next).
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub mutation: Mutation,
    pub version: i64,
}

/// A status change that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    pub previous: TopologyStatus,
    pub status: TopologyStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyStoreError {
    #[error("no topology with id {0:?}")]
    NotFound(String),
    #[error("no mutation with id {0}")]
    MutationNotFound(i64),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("topology {id} is {status}; mutations are accepted only when it is active or degraded")]
    NotMutable { id: String, status: TopologyStatus },
    #[error("topology {id} is at version {current}, not the expected {expected}; reload it and retry")]
    VersionConflict { id: String, expected: i64, current: i64 },
    #[error("mutation {id} is {state}; this needs it {expected}")]
    MutationState { id: i64, state: MutationState, expected: &'static str },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
}

impl From<UnknownValue> for TopologyStoreError {
    fn from(e: UnknownValue) -> Self {
        TopologyStoreError::Corrupt(e.to_string())
    }
}

type Result<T> = std::result::Result<T, TopologyStoreError>;

fn now() -> f64 {
    decnet_bus::envelope::now_ts()
}

const TOPOLOGY_COLUMNS: &str = "id, name, status, version, created_at, updated_at";
const MUTATION_COLUMNS: &str = "id, topology_id, op, payload, state, reason, created_at, updated_at";

fn topology_from_row(row: &SqliteRow, deckies: Vec<Decky>) -> Result<Topology> {
    Ok(Topology {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        status: row.try_get::<String, _>("status")?.parse()?,
        version: row.try_get("version")?,
        deckies,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn mutation_from_row(row: &SqliteRow) -> Result<Mutation> {
    let payload: String = row.try_get("payload")?;
    Ok(Mutation {
        id: row.try_get("id")?,
        topology_id: row.try_get("topology_id")?,
        op: row.try_get("op")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| TopologyStoreError::Corrupt(format!("mutation payload is not JSON: {e}")))?,
        state: row.try_get::<String, _>("state")?.parse()?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn decky_from_row(row: &SqliteRow) -> Result<Decky> {
    let services: String = row.try_get("services")?;
    Ok(Decky {
        name: row.try_get("name")?,
        services: serde_json::from_str(&services)
            .map_err(|e| TopologyStoreError::Corrupt(format!("decky services are not a JSON list: {e}")))?,
    })
}

async fn load_deckies(conn: &mut SqliteConnection, topology_id: &str) -> Result<Vec<Decky>> {
    let rows = sqlx::query("SELECT name, services FROM topology_deckies WHERE topology_id = ? ORDER BY position")
        .bind(topology_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(decky_from_row).collect()
}

async fn write_deckies(conn: &mut SqliteConnection, topology_id: &str, deckies: &[Decky]) -> Result<()> {
    sqlx::query("DELETE FROM topology_deckies WHERE topology_id = ?").bind(topology_id).execute(&mut *conn).await?;
    for (position, decky) in deckies.iter().enumerate() {
        let services = serde_json::to_string(&decky.services).expect("a list of strings serialises");
        sqlx::query("INSERT INTO topology_deckies (topology_id, name, services, position) VALUES (?, ?, ?, ?)")
            .bind(topology_id)
            .bind(&decky.name)
            .bind(services)
            .bind(position as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn load_topology(conn: &mut SqliteConnection, id: &str) -> Result<Option<Topology>> {
    let row = sqlx::query(&format!("SELECT {TOPOLOGY_COLUMNS} FROM topologies WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => {
            let deckies = load_deckies(conn, id).await?;
            Ok(Some(topology_from_row(&row, deckies)?))
        }
        None => Ok(None),
    }
}

async fn load_mutation(conn: &mut SqliteConnection, id: i64) -> Result<Mutation> {
    let row = sqlx::query(&format!("SELECT {MUTATION_COLUMNS} FROM topology_mutations WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(TopologyStoreError::MutationNotFound(id))?;
    mutation_from_row(&row)
}

/// Create a topology in status `pending` at version 1, after validating
/// its name and deckies.
pub async fn create_topology(pool: &SqlitePool, name: &str, deckies: &[Decky]) -> Result<Topology> {
    validate_topology(name, deckies)?;
    let id = uuid::Uuid::new_v4().to_string();
    let ts = now();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("INSERT INTO topologies (id, name, status, version, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)")
        .bind(&id)
        .bind(name)
        .bind(TopologyStatus::Pending.as_str())
        .bind(ts)
        .bind(ts)
        .execute(&mut *tx)
        .await?;
    write_deckies(&mut tx, &id, deckies).await?;
    tx.commit().await?;
    Ok(Topology {
        id,
        name: name.to_string(),
        status: TopologyStatus::Pending,
        version: 1,
        deckies: deckies.to_vec(),
        created_at: ts,
        updated_at: ts,
    })
}

pub async fn get_topology(pool: &SqlitePool, id: &str) -> Result<Option<Topology>> {
    let mut conn = pool.acquire().await?;
    load_topology(&mut conn, id).await
}

/// Every topology, oldest first.
pub async fn list_topologies(pool: &SqlitePool) -> Result<Vec<Topology>> {
    topologies_where(pool, None).await
}

/// Topologies in `status`, oldest first (the mutator finds deploys to run
/// with `TopologyStatus::Deploying`).
pub async fn topologies_with_status(pool: &SqlitePool, status: TopologyStatus) -> Result<Vec<Topology>> {
    topologies_where(pool, Some(status)).await
}

async fn topologies_where(pool: &SqlitePool, status: Option<TopologyStatus>) -> Result<Vec<Topology>> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(&format!(
        "SELECT {TOPOLOGY_COLUMNS} FROM topologies WHERE ?1 IS NULL OR status = ?1 ORDER BY created_at, id"
    ))
    .bind(status.map(|s| s.as_str()))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        let deckies = load_deckies(&mut conn, &id).await?;
        out.push(topology_from_row(row, deckies)?);
    }
    Ok(out)
}

/// Move a topology to `next` if the state machine allows it from its
/// current status. Refused edges are a [`TopologyStoreError::Transition`].
pub async fn set_status(pool: &SqlitePool, id: &str, next: TopologyStatus) -> Result<StatusChange> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let current: String = sqlx::query_scalar("SELECT status FROM topologies WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| TopologyStoreError::NotFound(id.to_string()))?;
    let previous: TopologyStatus = current.parse()?;
    previous.transition(next)?;
    sqlx::query("UPDATE topologies SET status = ?, updated_at = ? WHERE id = ?")
        .bind(next.as_str())
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusChange { previous, status: next })
}

/// Queue `op` on a topology: the topology must be active or degraded, at
/// `expected_version` when given, and the op must fit the topology as it
/// will be once everything already queued is applied. Bumps the version
/// and inserts the row in one transaction; returns the pending row.
pub async fn enqueue_mutation(
    pool: &SqlitePool,
    topology_id: &str,
    op: &MutationOp,
    expected_version: Option<i64>,
) -> Result<Mutation> {
    Ok(enqueue_mutation_with_version(pool, topology_id, op, expected_version).await?.mutation)
}

/// [`enqueue_mutation`], also returning the topology's new version.
pub async fn enqueue_mutation_with_version(
    pool: &SqlitePool,
    topology_id: &str,
    op: &MutationOp,
    expected_version: Option<i64>,
) -> Result<Enqueued> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let topology = load_topology(&mut tx, topology_id)
        .await?
        .ok_or_else(|| TopologyStoreError::NotFound(topology_id.to_string()))?;
    if !topology.status.accepts_mutations() {
        return Err(TopologyStoreError::NotMutable { id: topology.id, status: topology.status });
    }
    if let Some(expected) = expected_version {
        if expected != topology.version {
            return Err(TopologyStoreError::VersionConflict { id: topology.id, expected, current: topology.version });
        }
    }
    // Validate against the projected shape: the applied deckies plus every
    // op still in flight, so `add x` then `remove x` can be queued back to back.
    let mut projected = topology.deckies;
    for queued in in_flight_rows(&mut tx, topology_id).await? {
        if let Ok(queued_op) = queued.op() {
            // An op that no longer fits will fail when the mutator applies
            // it; it does not change the projection.
            let _ = queued_op.apply(&mut projected);
        }
    }
    op.apply(&mut projected)?;

    let ts = now();
    sqlx::query("UPDATE topologies SET version = version + 1, updated_at = ? WHERE id = ?")
        .bind(ts)
        .bind(topology_id)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(&format!(
        "INSERT INTO topology_mutations (topology_id, op, payload, state, created_at, updated_at) \
         VALUES (?, ?, ?, 'pending', ?, ?) RETURNING {MUTATION_COLUMNS}"
    ))
    .bind(topology_id)
    .bind(op.name())
    .bind(op.payload().to_string())
    .bind(ts)
    .bind(ts)
    .fetch_one(&mut *tx)
    .await?;
    let mutation = mutation_from_row(&row)?;
    tx.commit().await?;
    Ok(Enqueued { mutation, version: topology.version + 1 })
}

/// The mutations of a topology, oldest first, optionally only in `state`.
pub async fn list_mutations(
    pool: &SqlitePool,
    topology_id: &str,
    state: Option<MutationState>,
) -> Result<Vec<Mutation>> {
    let rows = sqlx::query(&format!(
        "SELECT {MUTATION_COLUMNS} FROM topology_mutations \
         WHERE topology_id = ?1 AND (?2 IS NULL OR state = ?2) ORDER BY created_at, id"
    ))
    .bind(topology_id)
    .bind(state.map(|s| s.as_str()))
    .fetch_all(pool)
    .await?;
    rows.iter().map(mutation_from_row).collect()
}

async fn in_flight_rows(conn: &mut SqliteConnection, topology_id: &str) -> Result<Vec<Mutation>> {
    let rows = sqlx::query(&format!(
        "SELECT {MUTATION_COLUMNS} FROM topology_mutations \
         WHERE topology_id = ? AND state IN ('pending', 'applying') ORDER BY created_at, id"
    ))
    .bind(topology_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(mutation_from_row).collect()
}

/// Pending and applying mutations of a topology, oldest first.
pub async fn in_flight(pool: &SqlitePool, topology_id: &str) -> Result<Vec<Mutation>> {
    let mut conn = pool.acquire().await?;
    in_flight_rows(&mut conn, topology_id).await
}

/// Ids of topologies the mutator should drain: active, with at least one
/// pending mutation. A degraded topology is not drained (SPEC §8: draining
/// stops at its first failure); its queue waits until an operator
/// redeploys it (`degraded -> deploying -> active`).
pub async fn live_topologies(pool: &SqlitePool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT t.id FROM topologies t WHERE t.status = 'active' \
         AND EXISTS (SELECT 1 FROM topology_mutations m WHERE m.topology_id = t.id AND m.state = 'pending') \
         ORDER BY t.created_at, t.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Atomically move the oldest pending mutation of a topology to `applying`
/// and return it; `None` when nothing is pending. One statement under the
/// write lock, and the `state = 'pending'` re-check means two claimers can
/// never both get the same row.
pub async fn claim_next_pending(pool: &SqlitePool, topology_id: &str) -> Result<Option<Mutation>> {
    let row = sqlx::query(&format!(
        "UPDATE topology_mutations SET state = 'applying', updated_at = ?1 \
         WHERE id = (SELECT id FROM topology_mutations WHERE topology_id = ?2 AND state = 'pending' \
                     ORDER BY created_at, id LIMIT 1) \
           AND state = 'pending' \
         RETURNING {MUTATION_COLUMNS}"
    ))
    .bind(now())
    .bind(topology_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(mutation_from_row).transpose()
}

/// Apply a claimed (`applying`) mutation to its topology's deckies and mark
/// it `applied`, in one transaction. If the op no longer fits the topology
/// nothing changes and the [`ValidationError`] comes back (the caller then
/// calls [`mark_failed`] with it as the reason).
pub async fn mark_applied(pool: &SqlitePool, mutation_id: i64) -> Result<Mutation> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mutation = load_mutation(&mut tx, mutation_id).await?;
    if mutation.state != MutationState::Applying {
        return Err(TopologyStoreError::MutationState { id: mutation_id, state: mutation.state, expected: "applying" });
    }
    let op = mutation.op()?;
    let mut deckies = load_deckies(&mut tx, &mutation.topology_id).await?;
    op.apply(&mut deckies)?;
    write_deckies(&mut tx, &mutation.topology_id, &deckies).await?;
    let ts = now();
    sqlx::query("UPDATE topologies SET updated_at = ? WHERE id = ?")
        .bind(ts)
        .bind(&mutation.topology_id)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(&format!(
        "UPDATE topology_mutations SET state = 'applied', reason = NULL, updated_at = ? WHERE id = ? \
         RETURNING {MUTATION_COLUMNS}"
    ))
    .bind(ts)
    .bind(mutation_id)
    .fetch_one(&mut *tx)
    .await?;
    let applied = mutation_from_row(&row)?;
    tx.commit().await?;
    Ok(applied)
}

/// Mark a pending or applying mutation `failed` with `reason`.
pub async fn mark_failed(pool: &SqlitePool, mutation_id: i64, reason: &str) -> Result<Mutation> {
    let row = sqlx::query(&format!(
        "UPDATE topology_mutations SET state = 'failed', reason = ?, updated_at = ? \
         WHERE id = ? AND state IN ('pending', 'applying') RETURNING {MUTATION_COLUMNS}"
    ))
    .bind(reason)
    .bind(now())
    .bind(mutation_id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => mutation_from_row(&row),
        None => {
            let mut conn = pool.acquire().await?;
            let existing = load_mutation(&mut conn, mutation_id).await?;
            Err(TopologyStoreError::MutationState {
                id: mutation_id,
                state: existing.state,
                expected: "pending or applying",
            })
        }
    }
}
