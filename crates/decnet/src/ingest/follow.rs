//! Following one log path across rotations with its cursors in SQLite:
//! which generation to read, from where, and what to do when one ends or
//! is truncated under the reader.
//!
//! Every generation the path goes through has its own `file_cursors` row
//! (path, inode), so any number of ingesters on different paths never
//! share a cursor, and several on one path share exactly the rows of the
//! files they read. On start the reader goes back to the newest row's file
//! wherever it is now (renamed to `<log>.1` or `<log>.2` while nobody was
//! reading), finishes it, and walks the [`super::rotation::chain`] to the
//! current file: rotations while the ingester was down lose nothing.
//!
//! Copytruncate: the file shrinks under the reader (or refills past it).
//! The lines between the reader's position and the truncation are in the
//! copy logrotate made first, so the reader finds the rotated generation
//! that holds the reader's last bytes at its position, reads it from
//! there, and then the truncated file from 0. Lines written between the
//! copy and the truncation are in neither file: no reader can have them,
//! which is why the logrotate snippet in `deploy/` renames instead. Every
//! gap a reader cannot avoid (no copy found, the cursor's file deleted) is
//! counted in [`GapCounter`] and logged at WARN.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::SqlitePool;

use super::rotation::{self, Generation};
use super::store::{self, CursorAt, FileCursor};
use super::tail::{self, Chunk, Step, Tail};

/// Gaps a reader could not avoid.
pub type GapCounter = Arc<AtomicU64>;

/// The cursor key of `log`: its absolute path, so `decnet api` and
/// `decnet ingest` started from different folders agree.
pub fn cursor_key(log: &Path) -> String {
    std::path::absolute(log).unwrap_or_else(|_| log.to_path_buf()).display().to_string()
}

pub struct Follower {
    log: PathBuf,
    key: String,
    max_read: usize,
    tail: Option<Tail>,
    seq: i64,
    gaps: GapCounter,
    /// The current file's row says it was read to its end after rotation.
    marked_finished: bool,
}

impl Follower {
    /// Resume following `log` where its cursors say.
    pub async fn start(pool: &SqlitePool, log: &Path, max_read: usize, gaps: GapCounter) -> anyhow::Result<Follower> {
        let mut f = Follower {
            log: log.to_path_buf(),
            key: cursor_key(log),
            max_read,
            tail: None,
            seq: 0,
            gaps,
            marked_finished: false,
        };
        let Some(latest) = store::latest_cursor(pool, &f.key).await? else {
            tracing::info!(path = %f.key, "ingester starts a new file");
            return Ok(f);
        };
        f.seq = latest.seq;
        match rotation::find(log, latest.inode) {
            Some(generation) => {
                tracing::info!(path = %f.key, file = %generation.path.display(), offset = latest.position, "ingester resumes");
                f.open(&generation, &latest)?;
            }
            None if latest.finished => {
                tracing::info!(path = %f.key, inode = latest.inode, "the file this cursor finished is gone; reading the ones after it");
                f.begin_after(pool, &latest).await?;
            }
            None => {
                f.gap(&format!(
                    "the file this cursor was on (inode {}, stored up to byte {}) is gone; whatever it held after that is lost",
                    latest.inode, latest.position
                ));
                f.begin_after(pool, &latest).await?;
            }
        }
        Ok(f)
    }

    /// Begin the oldest generation written since the (gone) file of `cursor`.
    /// Its successors are the generations last written at or after its own
    /// last write as the cursor saw it.
    async fn begin_after(&mut self, pool: &SqlitePool, cursor: &FileCursor) -> anyhow::Result<()> {
        let since = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(cursor.modified.max(0.0));
        if let Some(next) = rotation::chain(&self.log).into_iter().find(|g| g.modified >= since) {
            self.begin(pool, &next, 0, &[]).await?;
        }
        Ok(())
    }

    fn gap(&self, what: &str) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %self.key, "ingest gap: {what}");
    }

    fn open(&mut self, generation: &Generation, cursor: &FileCursor) -> anyhow::Result<()> {
        let file = File::open(&generation.path)?;
        self.tail = Some(Tail::new(&self.log, file, cursor.position, cursor.check.clone(), self.max_read)?);
        self.seq = cursor.seq;
        self.marked_finished = cursor.finished;
        Ok(())
    }

    /// Read `generation` next, as the generation after the current one,
    /// from `position` (unless another reader got further already).
    async fn begin(
        &mut self,
        pool: &SqlitePool,
        generation: &Generation,
        position: u64,
        check: &[u8],
    ) -> anyhow::Result<()> {
        let cursor = store::begin_generation(pool, &self.key, generation.inode, self.seq + 1, position, check).await?;
        self.open(generation, &cursor)
    }

    /// Where the next batch starts.
    pub fn at(&self) -> Option<CursorAt> {
        let tail = self.tail.as_ref()?;
        let p = tail.position();
        Some(CursorAt { path: self.key.clone(), inode: p.inode, seq: self.seq, offset: p.offset })
    }

    /// The last write time of the file being read (unix seconds).
    pub fn modified(&self) -> f64 {
        self.tail.as_ref().map(|t| store::unix_secs(t.modified())).unwrap_or_default()
    }

    /// The batch was stored.
    pub fn advance(&mut self, chunk: &Chunk) {
        if let Some(tail) = self.tail.as_mut() {
            tail.advance(chunk);
        }
    }

    /// Another ingester moved this file's cursor: continue from its row.
    pub async fn reload(&mut self, pool: &SqlitePool) -> anyhow::Result<()> {
        let Some(tail) = self.tail.as_mut() else { return Ok(()) };
        match store::cursor_of(pool, &self.key, tail.inode()).await? {
            Some(c) if c.seq >= self.seq => {
                tracing::info!(path = %self.key, offset = c.position, "another ingester moved the cursor; resuming from it");
                self.seq = c.seq;
                tail.reposition(c.position, c.check);
            }
            // Our row was started over or pruned: begin again from the
            // newest row, as at start.
            _ => {
                let gaps = self.gaps.clone();
                *self = Follower::start(pool, &self.log, self.max_read, gaps).await?;
            }
        }
        Ok(())
    }

    /// The next lines to store, `None` when there are none yet.
    pub async fn next(&mut self, pool: &SqlitePool) -> anyhow::Result<Option<Chunk>> {
        // Each turn either returns or moves to another generation; a
        // handful of turns covers every rotation since the last look.
        for _ in 0..64 {
            let Some(tail) = self.tail.as_mut() else {
                let Some(current) = rotation::chain(&self.log).pop() else { return Ok(None) };
                self.begin(pool, &current, 0, &[]).await?;
                continue;
            };
            match tail.read()? {
                Step::Lines(chunk) => return Ok(Some(chunk)),
                Step::Idle => return Ok(None),
                Step::Rotated => {
                    if !self.marked_finished {
                        if let Some(at) = self.at() {
                            store::mark_finished(pool, &at).await?;
                        }
                        self.marked_finished = true;
                    }
                    return Ok(None);
                }
                Step::Finished => {
                    let (inode, modified) = (tail.inode(), tail.modified());
                    match rotation::successor(&self.log, inode, modified) {
                        Some(next) => {
                            tracing::info!(path = %self.key, next = %next.path.display(), "ingest file rotated; reading the next one");
                            self.begin(pool, &next, 0, &[]).await?;
                        }
                        None => return Ok(None),
                    }
                }
                Step::Truncated => self.truncated(pool).await?,
            }
        }
        Ok(None)
    }

    /// The file was truncated in place under the reader.
    async fn truncated(&mut self, pool: &SqlitePool) -> anyhow::Result<()> {
        let Some(tail) = self.tail.as_ref() else { return Ok(()) };
        let (inode, offset, check) = (tail.inode(), tail.position().offset, tail.check().to_vec());
        // The copy: the newest other generation holding our last bytes at
        // our position (any long enough one when the bytes are unknown).
        let copy = rotation::chain(&self.log).into_iter().rev().find(|g| {
            g.inode != inode
                && g.len >= offset
                && File::open(&g.path).and_then(|f| tail::holds(&f, offset, &check)).unwrap_or(false)
        });
        match copy {
            Some(copy) => {
                tracing::warn!(path = %self.key, copy = %copy.path.display(), offset,
                    "ingest file truncated in place (copytruncate); finishing its copy first");
                self.begin(pool, &copy, offset, &check).await?;
            }
            None => {
                self.gap(&format!(
                    "the file was truncated in place at byte {offset} and no rotated copy holds what followed; those lines are lost"
                ));
                match rotation::find(&self.log, inode).or_else(|| rotation::chain(&self.log).pop()) {
                    Some(current) => self.begin(pool, &current, 0, &[]).await?,
                    None => self.tail = None,
                }
            }
        }
        Ok(())
    }
}
