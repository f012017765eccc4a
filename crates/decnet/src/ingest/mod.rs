//! The ingester: `<log>.json` (written by the collector) into SQLite.
//!
//! Exactly-once by construction: each batch is one transaction holding the
//! batch's `logs` rows, its `credentials` upserts and the cursor's move to
//! the end of the batch. If the process dies before the commit, none of it
//! happened and the next start reads the batch again; after the commit,
//! all of it did and the next start begins after it. Each file has its own
//! cursor, keyed by path and inode ([`follow`]), so ingesters of different
//! files (`decnet api` on the local log, `decnet ingest` on the listener's
//! master.json) never touch each other's; a cursor moves only if it is
//! still where this ingester last left it, so two ingesters of one file
//! cannot both store a batch: the loser rolls back and resumes from the
//! winner's cursor. Rotation (rename or copytruncate, also while no
//! ingester runs) is followed without loss ([`follow`], [`rotation`]).
//!
//! `credential.captured` goes out after the commit, once per credential
//! first seen (the upsert tells), never with the secret: only its SHA-256.
//! The same batch stores the deckies' evidence from trusted lines:
//! `artifact` lines become `artifacts` rows ([`artifacts`]; each new one
//! publishes `attacker.artifact` after the commit) and `session_recorded`
//! lines naming a recording become `recordings` rows ([`recordings`]).
//! The Overview's roll-ups of the batch's rows are counted in Rust and
//! written in the same transaction ([`rollups`]).

pub mod artifacts;
pub mod checkpoint;
pub mod decode;
pub mod follow;
pub mod recordings;
pub mod rollups;
pub mod rotation;
pub mod store;
pub mod tail;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::sdk::AppBus;
use decnet_bus::topics::{ATTACKER_ARTIFACT, CREDENTIAL_CAPTURED};
use decnet_bus::Bus;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use follow::Follower;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The collector's `<log>.json`.
    pub json_path: PathBuf,
    /// How often to look for new lines when there were none.
    pub poll: Duration,
    /// Most bytes read (and so stored) per transaction.
    pub max_batch_bytes: usize,
}

impl IngestConfig {
    pub fn new(json_path: PathBuf) -> Self {
        IngestConfig { json_path, poll: Duration::from_millis(100), max_batch_bytes: 4 * 1024 * 1024 }
    }
}

/// Where `credential.captured` and `attacker.artifact` go.
#[derive(Clone, Default)]
pub enum IngestBus {
    #[default]
    None,
    Fixed(Arc<dyn Bus>),
    /// The API's shared bus (connects lazily, never fails).
    App(Arc<AppBus>),
}

impl IngestBus {
    async fn get(&self) -> Option<Arc<dyn Bus>> {
        match self {
            IngestBus::None => None,
            IngestBus::Fixed(b) => Some(b.clone()),
            IngestBus::App(app) => app.get().await,
        }
    }
}

#[derive(Debug, Default)]
pub struct IngestStats {
    pub rows: AtomicU64,
    pub credentials_new: AtomicU64,
    pub artifacts_new: AtomicU64,
    pub recordings_new: AtomicU64,
    pub bad_lines: AtomicU64,
    pub batches: AtomicU64,
    /// Batches rolled back because another ingester moved the cursor.
    pub conflicts: AtomicU64,
    /// Stretches of a log no reader could have (the cursor's file deleted,
    /// a truncation with no copy); each logged at WARN.
    pub gaps: Arc<AtomicU64>,
    /// Bytes of the JSON log past the last committed batch, as of that
    /// batch (0 once caught up): how far behind the collector it runs.
    pub lag_bytes: AtomicU64,
}

/// The ingester as a task of `decnet api`, publishing through the API's
/// shared bus; a failure is logged, never takes the API down.
pub fn spawn_in_api(
    pool: SqlitePool,
    json_path: PathBuf,
    bus: Arc<AppBus>,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run(pool, IngestConfig::new(json_path), IngestBus::App(bus), stats, shutdown).await {
            tracing::error!(error = %format!("{e:#}"), "ingester stopped");
        }
    })
}

/// Run until `shutdown`. Database errors are logged and retried after a
/// pause (the batch was rolled back; nothing is lost or doubled).
pub async fn run(
    pool: SqlitePool,
    config: IngestConfig,
    bus: IngestBus,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let file = follow::cursor_key(&config.json_path);
    let mut follower = Follower::start(&pool, &config.json_path, config.max_batch_bytes, stats.gaps.clone()).await?;
    let mut checkpointer = checkpoint::Checkpointer::start(pool.clone(), shutdown.clone());
    tracing::info!(path = %file, "ingester started");
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let chunk = match follower.next(&pool).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                stats.lag_bytes.store(0, Ordering::Relaxed);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(config.poll) => continue,
                }
            }
            Err(e) => {
                tracing::warn!(path = %file, error = %format!("{e:#}"), "ingester cannot read; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if chunk.skipped_overlong {
            tracing::warn!(path = %file, at = chunk.start, "ingester skipped an overlong line");
            stats.bad_lines.fetch_add(1, Ordering::Relaxed);
        }
        let Some(from) = follower.at() else { continue };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = checkpointer.bound_wal() => {}
        }
        let mut bad_line = |e: &serde_json::Error| {
            stats.bad_lines.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %file, error = %e, "ingester skipped a line that is not a record");
        };
        match store_batch(&pool, &from, &chunk, follower.modified(), &mut bad_line).await {
            Ok(Some(stored)) => {
                checkpointer.after_commit();
                follower.advance(&chunk);
                // The file's size now, against where this batch ended; a
                // rotated-away file reads as caught up until the next batch.
                let size = std::fs::metadata(&config.json_path).map(|m| m.len()).unwrap_or(0);
                stats.lag_bytes.store(size.saturating_sub(chunk.end), Ordering::Relaxed);
                stats.rows.fetch_add(stored.rows, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.credentials_new.fetch_add(stored.credentials.len() as u64, Ordering::Relaxed);
                stats.artifacts_new.fetch_add(stored.artifacts.len() as u64, Ordering::Relaxed);
                stats.recordings_new.fetch_add(stored.recordings, Ordering::Relaxed);
                if !stored.credentials.is_empty() || !stored.artifacts.is_empty() {
                    if let Some(bus) = bus.get().await {
                        for payload in stored.credentials {
                            decnet_bus::sdk::publish_safely(Some(&*bus), CREDENTIAL_CAPTURED, payload, "credential")
                                .await;
                        }
                        for payload in stored.artifacts {
                            decnet_bus::sdk::publish_safely(Some(&*bus), ATTACKER_ARTIFACT, payload, "artifact").await;
                        }
                    }
                }
            }
            Ok(None) => {
                stats.conflicts.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = follower.reload(&pool).await {
                    // The stored cursor stays the truth: reading it again
                    // next turn loses nothing.
                    tracing::warn!(error = %format!("{e:#}"), "ingester cannot reload its cursor; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "ingester batch failed (rolled back); retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// What a committed batch added that the bus hears about.
#[derive(Debug, Default)]
struct Stored {
    /// `logs` rows inserted.
    rows: u64,
    /// `credential.captured` payloads of first-seen credentials.
    credentials: Vec<serde_json::Value>,
    /// `attacker.artifact` payloads of first-seen artifacts.
    artifacts: Vec<serde_json::Value>,
    /// New `recordings` rows.
    recordings: u64,
}

/// One transaction: cursor guard, rows, credentials, artifacts,
/// recordings. `None` when the cursor was not at `from` (nothing written).
///
/// The chunk's lines are decoded a slice at a time while SQLite stores the
/// slice before (on sqlx's worker thread): the two costs about the same
/// per line, and done one after the other they were the ingester's whole
/// time.
async fn store_batch(
    pool: &SqlitePool,
    from: &store::CursorAt,
    chunk: &tail::Chunk,
    modified: f64,
    bad_line: &mut impl FnMut(&serde_json::Error),
) -> anyhow::Result<Option<Stored>> {
    let mut conn = pool.acquire().await?;
    let stored = store_batch_on(&mut conn, from, chunk, modified, bad_line).await;
    // The connection goes back to the pool as every other one is: counted
    // by the triggers and checkpointing; one that cannot be is closed.
    let restored = match store::set_triggers(&mut conn, true).await {
        Ok(()) => store::restore_autocheckpoint(&mut conn).await,
        Err(e) => Err(e),
    };
    if let Err(e) = restored {
        tracing::warn!(error = %format!("{e:#}"), "cannot restore a connection's triggers or checkpointing; closing it");
        conn.close_on_drop();
    }
    stored
}

async fn store_batch_on(
    conn: &mut sqlx::SqliteConnection,
    from: &store::CursorAt,
    chunk: &tail::Chunk,
    modified: f64,
    bad_line: &mut impl FnMut(&serde_json::Error),
) -> anyhow::Result<Option<Stored>> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    store::tune_for_batches(&mut tx).await?;
    if !store::advance_cursor(&mut tx, from, chunk.end, &chunk.check, modified, chunk.finished).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    // The batch's `logs` roll-ups are counted here, one upsert per key,
    // not by the row triggers (see [`rollups`]); the other tables'
    // triggers (`credentials`) run as usual, after the rows.
    store::set_triggers(&mut tx, false).await?;
    let mut lines = chunk.lines();
    let mut rollups = rollups::LogRollups::default();
    let mut evidence: Vec<decode::Evidence> = Vec::new();
    let mut rows = 0u64;
    let mut spent: Vec<decode::StoredLine> = Vec::new();
    let mut next = decode::next_lines(&mut lines, store::ROWS_PER_INSERT, bad_line);
    while !next.is_empty() {
        let slice = std::mem::take(&mut next);
        // join! polls the INSERT first: it builds the statement and hands
        // it to the worker thread; the previous slice is freed and the next
        // one decoded here meanwhile.
        let (inserted, decoded) = tokio::join!(store::insert_logs(&mut tx, &slice), async {
            drop(std::mem::take(&mut spent));
            decode::next_lines(&mut lines, store::ROWS_PER_INSERT, bad_line)
        });
        inserted?;
        next = decoded;
        rows += slice.len() as u64;
        for line in slice {
            rollups.add(&line.record);
            evidence.extend(decode::evidence_of(line));
        }
    }
    store::set_triggers(&mut tx, true).await?;
    rollups.apply(&mut tx).await?;
    let mut stored = Stored { rows, ..Stored::default() };
    for e in &evidence {
        let r = &e.record;
        if let Some(artifact) = &e.artifact {
            if artifacts::insert(&mut tx, r, artifact).await? {
                stored.artifacts.push(artifacts::payload(r, artifact));
            }
        }
        if let Some(recording) = &e.recording {
            if recordings::insert(&mut tx, r, recording).await? {
                stored.recordings += 1;
            }
        }
        if let Some(cred) = &e.credential {
            if store::upsert_credential(&mut tx, r, cred).await? {
                stored.credentials.push(serde_json::json!({
                    "attacker_ip": r.attacker_ip,
                    "decky": r.decky,
                    "service": r.service,
                    "username": cred.username,
                    "secret_sha256": cred.secret_sha256,
                }));
            }
        }
    }
    tx.commit().await?;
    Ok(Some(stored))
}
