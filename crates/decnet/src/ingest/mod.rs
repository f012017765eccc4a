//! The ingester: `<log>.json` (written by the collector) into SQLite.
//!
//! Exactly-once by construction: each batch is one transaction holding the
//! batch's `logs` rows, its `credentials` upserts and the cursor's move to
//! the end of the batch. If the process dies before the commit, none of it
//! happened and the next start reads the batch again; after the commit,
//! all of it did and the next start begins after it. The cursor moves
//! only if it is still where this ingester last left it, so two ingesters
//! on one database (say `decnet api` and `decnet ingest`) cannot both store
//! a batch: the loser rolls back and resumes from the winner's cursor.
//!
//! `credential.captured` goes out after the commit, once per credential
//! first seen (the upsert tells), never with the secret: only its SHA-256.

pub mod store;
pub mod tail;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::sdk::AppBus;
use decnet_bus::topics::CREDENTIAL_CAPTURED;
use decnet_bus::Bus;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::collector::Record;
use tail::Tail;

/// The cursor row of the ingester in `cursors`.
pub const CURSOR_NAME: &str = "ingester";

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The collector's `<log>.json`.
    pub json_path: PathBuf,
    /// How often to look for new lines when there were none.
    pub poll: Duration,
    /// Most bytes read (and so stored) per transaction.
    pub max_batch_bytes: usize,
    pub cursor_name: String,
}

impl IngestConfig {
    pub fn new(json_path: PathBuf) -> Self {
        IngestConfig {
            json_path,
            poll: Duration::from_millis(100),
            max_batch_bytes: 4 * 1024 * 1024,
            cursor_name: CURSOR_NAME.to_string(),
        }
    }
}

/// Where `credential.captured` goes.
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
    pub bad_lines: AtomicU64,
    pub batches: AtomicU64,
    /// Batches rolled back because another ingester moved the cursor.
    pub conflicts: AtomicU64,
}

/// The ingester as a task of `decnet api`, publishing through the API's
/// shared bus; a failure is logged, never takes the API down.
pub fn spawn_in_api(
    pool: SqlitePool,
    json_path: PathBuf,
    bus: Arc<AppBus>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stats = Arc::new(IngestStats::default());
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
    let file = config.json_path.display().to_string();
    store::ensure_cursor(&pool, &config.cursor_name, &file).await?;
    let mut committed = store::load_cursor(&pool, &config.cursor_name).await?;
    let mut tail = Tail::new(&config.json_path, committed, config.max_batch_bytes);
    tracing::info!(path = %file, resume = ?committed, "ingester started");
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let chunk = match tail.read() {
            Ok(Some(c)) => c,
            Ok(None) => {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(config.poll) => continue,
                }
            }
            Err(e) => {
                tracing::warn!(path = %file, error = %e, "ingester cannot read; retrying");
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
        let mut records = Vec::new();
        for line in chunk.lines() {
            match serde_json::from_slice::<Record>(line) {
                Ok(r) => records.push(r),
                Err(e) => {
                    stats.bad_lines.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %file, error = %e, "ingester skipped a line that is not a record");
                }
            }
        }
        let to = tail::Position { inode: chunk.inode, offset: chunk.end };
        match store_batch(&pool, &config.cursor_name, &file, committed, to, &records).await {
            Ok(Some(new_creds)) => {
                committed = Some(to);
                tail.advance(&chunk);
                stats.rows.fetch_add(records.len() as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.credentials_new.fetch_add(new_creds.len() as u64, Ordering::Relaxed);
                if !new_creds.is_empty() {
                    if let Some(bus) = bus.get().await {
                        for payload in new_creds {
                            decnet_bus::sdk::publish_safely(Some(&*bus), CREDENTIAL_CAPTURED, payload, "credential")
                                .await;
                        }
                    }
                }
            }
            Ok(None) => {
                stats.conflicts.fetch_add(1, Ordering::Relaxed);
                committed = store::load_cursor(&pool, &config.cursor_name).await?;
                tracing::info!(resume = ?committed, "another ingester moved the cursor; resuming from it");
                tail.reset(committed);
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

/// One transaction: cursor guard, rows, credentials. `None` when the
/// cursor was not at `from` (nothing written); else the
/// `credential.captured` payloads of first-seen credentials.
async fn store_batch(
    pool: &SqlitePool,
    cursor: &str,
    file: &str,
    from: Option<tail::Position>,
    to: tail::Position,
    records: &[Record],
) -> anyhow::Result<Option<Vec<serde_json::Value>>> {
    let mut tx = pool.begin().await?;
    if !store::advance_cursor(&mut tx, cursor, file, from, to).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    store::insert_logs(&mut tx, records).await?;
    let mut new_creds = Vec::new();
    for r in records {
        if let Some(cred) = store::credential_of(r) {
            if store::upsert_credential(&mut tx, r, &cred).await? {
                new_creds.push(serde_json::json!({
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
    Ok(Some(new_creds))
}
