//! WAL checkpoints beside the ingester instead of inside its commits.
//!
//! With SQLite's automatic checkpoint, the commit that crosses the WAL's
//! limit copies every page the WAL holds back into the database file (and
//! syncs both) before the ingester can read its next line: about a third
//! of the ingester's time under a connect sweep (BENCHMARKS.md, "Connect
//! sweep"). Here the ingester's connection does no automatic checkpoint
//! while it stores a batch; after each commit this task, on another
//! connection and so on another thread, runs a PASSIVE checkpoint (which
//! never blocks the writer) while the next batch is being stored.
//!
//! A WAL is only rewound to its start by a write transaction that begins
//! when the last checkpoint has copied every frame, which a writer that
//! never pauses would not see: the file would grow for as long as the load
//! lasts. So when the WAL passes [`MAX_WAL_FRAMES`], the ingester waits,
//! before its next batch, for the checkpoint of its last commit to finish;
//! that batch then starts the WAL over (unless a reader still holds an
//! old snapshot; the limit is then a soft one, checked again after the
//! next checkpoint). The wait is one batch's worth of copying, once per
//! `MAX_WAL_FRAMES` of log, instead of the whole log.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// WAL frames (one page each: 64 MiB with decnet's 8 KiB pages, 32 MiB
/// in an older 4 KiB database) past which the ingester lets the
/// checkpoint catch up so the WAL can start over.
pub const MAX_WAL_FRAMES: i64 = 8_192;

/// SQLite's own automatic checkpoint interval, which every connection the
/// ingester borrowed gets back after its batch.
pub const SQLITE_DEFAULT_AUTOCHECKPOINT: i64 = 1_000;

pub struct Checkpointer {
    /// Commits asked to be checkpointed so far.
    requested: Arc<AtomicU64>,
    wake: Arc<Notify>,
    /// The last `requested` value a finished checkpoint covered.
    covered: watch::Receiver<u64>,
    /// Frames in the WAL at the last checkpoint (-1 before the first).
    wal_frames: Arc<AtomicI64>,
    max_wal_frames: i64,
}

impl Checkpointer {
    /// Start checkpointing `pool`'s database until `shutdown`.
    pub fn start(pool: SqlitePool, shutdown: CancellationToken) -> Checkpointer {
        Self::with_limit(pool, shutdown, MAX_WAL_FRAMES)
    }

    pub fn with_limit(pool: SqlitePool, shutdown: CancellationToken, max_wal_frames: i64) -> Checkpointer {
        let requested = Arc::new(AtomicU64::new(0));
        let wake = Arc::new(Notify::new());
        let (covered_tx, covered) = watch::channel(0);
        let wal_frames = Arc::new(AtomicI64::new(-1));
        tokio::spawn(run(pool, requested.clone(), wake.clone(), covered_tx, wal_frames.clone(), shutdown));
        Checkpointer { requested, wake, covered, wal_frames, max_wal_frames }
    }

    /// A batch was committed: checkpoint it soon (requests coalesce).
    pub fn after_commit(&self) {
        self.requested.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Frames the WAL held at the last checkpoint (-1 before the first).
    pub fn wal_frames(&self) -> i64 {
        self.wal_frames.load(Ordering::Acquire)
    }

    /// Before a batch: when the WAL has grown past the limit, wait for the
    /// checkpoint of every commit so far, so the batch starts the WAL over.
    /// Returns at once when the checkpointer is gone (shutdown).
    pub async fn bound_wal(&mut self) {
        if self.wal_frames() <= self.max_wal_frames {
            return;
        }
        let wanted = self.requested.load(Ordering::Acquire);
        let _ = self.covered.wait_for(|covered| *covered >= wanted).await;
        // The next write transaction rewinds the WAL; until the next
        // checkpoint says otherwise, it is small again.
        self.wal_frames.store(0, Ordering::Release);
    }
}

async fn run(
    pool: SqlitePool,
    requested: Arc<AtomicU64>,
    wake: Arc<Notify>,
    covered: watch::Sender<u64>,
    wal_frames: Arc<AtomicI64>,
    shutdown: CancellationToken,
) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
        }
        // Every commit counted so far is in the WAL: this checkpoint covers it.
        let covering = requested.load(Ordering::Acquire);
        let result: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await;
        match result {
            // `log` is -1 when another connection was checkpointing.
            Ok((_busy, log, _copied)) if log >= 0 => wal_frames.store(log, Ordering::Release),
            Ok(_) => {}
            Err(e) => {
                // The WAL then grows until a checkpoint works again (SQLite
                // keeps every frame); once per minute is enough to say so.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_error_log = Some(Instant::now());
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying after the next batch");
                }
            }
        }
        covered.send_replace(covering);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL frames and the frames copied into the database, as a
    /// PASSIVE checkpoint reports them.
    async fn wal(pool: &SqlitePool) -> (i64, i64) {
        let (_, log, copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await.unwrap();
        (log, copied)
    }

    /// Batches written as the ingester writes them (no automatic
    /// checkpoint on their connection), `after_commit` and `bound_wal`
    /// around each: the WAL stays near the limit instead of holding every
    /// batch, and the checkpoints were this task's. Each batch waits for
    /// its checkpoint so the result does not depend on scheduling.
    #[tokio::test]
    async fn the_wal_stays_bounded_under_batches_that_never_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("decnet.db")).await.unwrap();
        sqlx::query("CREATE TABLE filler (body TEXT NOT NULL)").execute(&pool).await.unwrap();
        let stop = CancellationToken::new();
        let limit = 100;
        let mut checkpointer = Checkpointer::with_limit(pool.clone(), stop.clone(), limit);
        let body = "x".repeat(1000);
        let mut most = 0;
        for _ in 0..40 {
            checkpointer.bound_wal().await;
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("PRAGMA wal_autocheckpoint = 0").execute(&mut *conn).await.unwrap();
            let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
            for _ in 0..200 {
                sqlx::query("INSERT INTO filler (body) VALUES (?)").bind(&body).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
            drop(conn);
            checkpointer.after_commit();
            // As when the checkpointer keeps up with the batches (on a
            // loaded machine it may lag: the bound is then reached later).
            let wanted = checkpointer.requested.load(Ordering::Acquire);
            checkpointer.covered.wait_for(|c| *c >= wanted).await.unwrap();
            most = most.max(checkpointer.wal_frames());
        }
        // 40 batches of ~200 KB are ~1,000 frames of 8 KiB: without the
        // checkpoints (or without the wait that lets the WAL start over)
        // the log would hold them all.
        let (log, copied) = wal(&pool).await;
        assert!(most > 0, "the checkpointer reported the WAL ({most})");
        assert!(log < 3 * limit, "WAL of {log} frames after 40 batches (limit {limit}; most seen {most})");
        assert!(most < 3 * limit, "most frames seen {most} (copied at the end {copied})");
        stop.cancel();
        // After shutdown a wait returns at once instead of hanging.
        checkpointer.wal_frames.store(limit + 1, Ordering::Release);
        checkpointer.after_commit();
        tokio::time::timeout(Duration::from_secs(5), checkpointer.bound_wal()).await.expect("no hang after shutdown");
    }

    /// Past the limit, `bound_wal` returns only once a checkpoint covered
    /// every commit so far (a checkpointer stood in by the test's own
    /// channel, so nothing here depends on timing), and then counts the
    /// WAL as started over.
    #[tokio::test]
    async fn past_the_limit_the_next_batch_waits_for_the_checkpoint() {
        let (covered_tx, covered) = watch::channel(0);
        let mut checkpointer = Checkpointer {
            requested: Arc::new(AtomicU64::new(0)),
            wake: Arc::new(Notify::new()),
            covered,
            wal_frames: Arc::new(AtomicI64::new(50)),
            max_wal_frames: 100,
        };
        checkpointer.after_commit();
        tokio::time::timeout(Duration::from_secs(5), checkpointer.bound_wal()).await.expect("under the limit: no wait");
        checkpointer.wal_frames.store(101, Ordering::Release);
        checkpointer.after_commit();
        covered_tx.send_replace(1);
        let waited = tokio::time::timeout(Duration::from_millis(200), checkpointer.bound_wal()).await;
        assert!(waited.is_err(), "returned before the checkpoint of commit 2");
        covered_tx.send_replace(2);
        tokio::time::timeout(Duration::from_secs(5), checkpointer.bound_wal()).await.expect("covered: no more wait");
        assert_eq!(checkpointer.wal_frames(), 0, "the next batch starts the WAL over");
    }
}
