//! Retention: what decnet keeps, for how long, and the pruner that
//! deletes the rest (issue 26).
//!
//! Every event costs about 1 KB between its `logs` row and the ingest log
//! files; nothing used to be deleted. Each kind has its own limit in days
//! ([`RetentionPolicy`], `None` = keep forever):
//!
//! - **logs**: `logs` rows by event time, and `credentials` last tried
//!   before the limit (they are folded from the same lines);
//! - **ingest files**: rotated generations of the raw ingest log and its
//!   parsed `.json` (`ingest.log.1`, `ingest.log.json.2.gz`,
//!   `ingest.log-20261203`), by last write; never the live files, never a
//!   `.json` generation the ingester has not finished reading;
//! - **artifacts**: `artifacts` rows by first capture, and each quarantined
//!   file once no row names its SHA-256 any more;
//! - **recordings**: `recordings` rows by session end, and their files
//!   (only inside the recordings folder);
//! - **attackers**: profiles idle (last seen) past the limit, with their
//!   identity memberships (identities left empty go too) and fingerprints
//!   not refreshed since.
//!
//! The pruner runs inside `decnet api` (which `decnet up` runs) and must
//! never hold up the ingester, which shares the database's single write
//! lock: each batch is one short statement (at most `batch_rows` rows,
//! found through an index on the time column), and the pruner pauses
//! between batches so a waiting ingester gets the lock. Afterwards the
//! freed pages are handed back to the filesystem with `PRAGMA
//! incremental_vacuum`, a few pages per step for the same reason (see
//! `store::open` for how a database gets incremental auto-vacuum).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind is kept; `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub logs: Option<Duration>,
    pub ingest_files: Option<Duration>,
    pub artifacts: Option<Duration>,
    pub recordings: Option<Duration>,
    pub attackers: Option<Duration>,
}

impl RetentionPolicy {
    /// Days as the flags take them: 0 keeps forever.
    pub fn days(days: u32) -> Option<Duration> {
        (days > 0).then(|| DAY * days)
    }

    /// Nothing is ever deleted.
    pub fn keep_forever() -> Self {
        RetentionPolicy { logs: None, ingest_files: None, artifacts: None, recordings: None, attackers: None }
    }
}

/// The defaults of the `--retain-*-days` flags.
pub mod defaults {
    /// Log rows: the bulk of the database (~1 KB per event).
    pub const LOGS_DAYS: u32 = 90;
    /// Rotated ingest log files: the database holds their content by then.
    pub const INGEST_FILES_DAYS: u32 = 30;
    /// Captured files and their rows: rare and worth studying later.
    pub const ARTIFACTS_DAYS: u32 = 180;
    /// Session recordings.
    pub const RECORDINGS_DAYS: u32 = 180;
    /// Attacker profiles not seen for this long.
    pub const ATTACKERS_DAYS: u32 = 365;
    /// Seconds between pruning rounds.
    pub const INTERVAL_SECS: u64 = 3600;
}

/// The files the pruner may delete from.
#[derive(Debug, Clone)]
pub struct RetentionPaths {
    /// The live raw ingest log (`<log>`; its parsed records are `<log>.json`).
    pub ingest_log: PathBuf,
    pub artifacts_dir: PathBuf,
    pub recordings_dir: PathBuf,
}

/// How the pruner paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Most rows one statement deletes.
    pub batch_rows: u32,
    /// Pause after each batch, so a waiting writer takes the lock.
    pub pause: Duration,
    /// Pages one `incremental_vacuum` step gives back (4 KiB each).
    pub vacuum_pages: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        // A batch of 200 log rows took ~11 ms in a debug build on a busy
        // machine (BENCHMARKS.md): 500 holds the write lock for tens of
        // milliseconds at most, all an ingest batch may wait.
        Pacing { batch_rows: 500, pause: Duration::from_millis(10), vacuum_pages: 256 }
    }
}

/// What one round deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub logs: u64,
    pub credentials: u64,
    pub attackers: u64,
    pub identities: u64,
    pub fingerprints: u64,
    pub artifacts: u64,
    pub artifact_files: u64,
    pub recordings: u64,
    pub recording_files: u64,
    pub ingest_files: u64,
    /// Bytes the database file shrank by (incremental vacuum).
    pub bytes_vacuumed: u64,
}

impl PruneReport {
    pub fn deleted_anything(&self) -> bool {
        *self != PruneReport { bytes_vacuumed: self.bytes_vacuumed, ..PruneReport::default() }
    }
}

/// Unix seconds of `now - age` (the oldest time still kept).
fn cutoff(now: SystemTime, age: Duration) -> f64 {
    crate::ingest::store::unix_secs(now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// Delete old data once, as `policy` says, as of `now`. Stops early (with
/// what it did so far) when `stop` is cancelled.
pub async fn prune_once(
    pool: &SqlitePool,
    policy: &RetentionPolicy,
    paths: &RetentionPaths,
    pacing: Pacing,
    now: SystemTime,
    stop: &CancellationToken,
) -> anyhow::Result<PruneReport> {
    let mut report = PruneReport::default();
    let batches = Batches { pool, pacing, stop };
    if let Some(age) = policy.logs {
        let before = cutoff(now, age);
        report.logs = batches
            .delete(
                "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE timestamp < ? ORDER BY timestamp LIMIT ?)",
                before,
            )
            .await?;
        report.credentials = batches
            .delete(
                "DELETE FROM credentials WHERE id IN \
                 (SELECT id FROM credentials WHERE last_seen < ? ORDER BY last_seen LIMIT ?)",
                before,
            )
            .await?;
    }
    if let Some(age) = policy.attackers {
        let before = cutoff(now, age);
        prune_attackers(&batches, before, &mut report).await?;
    }
    if let Some(age) = policy.artifacts {
        prune_artifacts(&batches, cutoff(now, age), &paths.artifacts_dir, &mut report).await?;
    }
    if let Some(age) = policy.recordings {
        prune_recordings(&batches, cutoff(now, age), &paths.recordings_dir, &mut report).await?;
    }
    if let Some(age) = policy.ingest_files {
        report.ingest_files = prune_ingest_files(pool, &paths.ingest_log, now, age).await?;
    }
    if report.deleted_anything() {
        report.bytes_vacuumed = vacuum(&batches).await?;
    }
    Ok(report)
}

/// Deletes in small autocommit statements with a pause between.
struct Batches<'a> {
    pool: &'a SqlitePool,
    pacing: Pacing,
    stop: &'a CancellationToken,
}

impl Batches<'_> {
    /// Run `sql` (binding the cutoff, then the batch size) until it
    /// deletes fewer rows than a batch. Returns the rows deleted.
    async fn delete(&self, sql: &str, before: f64) -> anyhow::Result<u64> {
        let mut total = 0;
        loop {
            let done =
                sqlx::query(sql).bind(before).bind(self.pacing.batch_rows).execute(self.pool).await?.rows_affected();
            total += done;
            if done < u64::from(self.pacing.batch_rows) || !self.pause().await {
                return Ok(total);
            }
        }
    }

    /// Like [`Self::delete`] for a `DELETE … RETURNING <text>`: the
    /// returned values of every batch.
    async fn delete_returning(&self, sql: &str, before: f64) -> anyhow::Result<Vec<String>> {
        let mut all = Vec::new();
        loop {
            let rows: Vec<(String,)> =
                sqlx::query_as(sql).bind(before).bind(self.pacing.batch_rows).fetch_all(self.pool).await?;
            let done = rows.len();
            all.extend(rows.into_iter().map(|(v,)| v));
            if done < self.pacing.batch_rows as usize || !self.pause().await {
                return Ok(all);
            }
        }
    }

    /// Wait between batches; false when asked to stop.
    async fn pause(&self) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(self.pacing.pause) => true,
        }
    }
}

/// Attackers idle since before `before`, their memberships, the
/// identities left without members, and fingerprints not seen since.
async fn prune_attackers(batches: &Batches<'_>, before: f64, report: &mut PruneReport) -> anyhow::Result<()> {
    loop {
        // One transaction per batch: a profile and its membership go together.
        let mut tx = batches.pool.begin().await?;
        let ips: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM attackers WHERE ip IN \
             (SELECT ip FROM attackers WHERE last_seen < ? ORDER BY last_seen LIMIT ?) RETURNING ip",
        )
        .bind(before)
        .bind(batches.pacing.batch_rows)
        .fetch_all(&mut *tx)
        .await?;
        for (ip,) in &ips {
            sqlx::query("DELETE FROM identity_members WHERE attacker_ip = ?").bind(ip).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        report.attackers += ips.len() as u64;
        if ips.len() < batches.pacing.batch_rows as usize || !batches.pause().await {
            break;
        }
    }
    report.identities = batches
        .delete(
            // `? IS NOT NULL` only consumes the cutoff: an empty identity goes whatever its age.
            "DELETE FROM identities WHERE id IN (SELECT id FROM identities WHERE ? IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM identity_members m WHERE m.identity_id = identities.id) LIMIT ?)",
            before,
        )
        .await?;
    report.fingerprints = batches
        .delete(
            "DELETE FROM fingerprints WHERE id IN \
             (SELECT id FROM fingerprints WHERE last_seen < ? ORDER BY last_seen LIMIT ?)",
            before,
        )
        .await?;
    Ok(())
}

/// A quarantine file name: 64 lowercase hex digits (anything else in a
/// row never becomes a path).
fn is_sha256_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn prune_artifacts(
    batches: &Batches<'_>,
    before: f64,
    dir: &Path,
    report: &mut PruneReport,
) -> anyhow::Result<()> {
    let deleted = batches
        .delete_returning(
            "DELETE FROM artifacts WHERE id IN \
             (SELECT id FROM artifacts WHERE first_seen < ? ORDER BY first_seen LIMIT ?) RETURNING sha256",
            before,
        )
        .await?;
    report.artifacts = deleted.len() as u64;
    let hashes: BTreeSet<String> = deleted.into_iter().collect();
    for sha in hashes {
        // The same file captured again recently keeps it.
        let (still_named,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM artifacts WHERE sha256 = ?)")
            .bind(&sha)
            .fetch_one(batches.pool)
            .await?;
        if still_named || !is_sha256_name(&sha) {
            continue;
        }
        if remove_file_logged(&dir.join(&sha)).await {
            report.artifact_files += 1;
        }
    }
    Ok(())
}

async fn prune_recordings(
    batches: &Batches<'_>,
    before: f64,
    dir: &Path,
    report: &mut PruneReport,
) -> anyhow::Result<()> {
    let paths = batches
        .delete_returning(
            "DELETE FROM recordings WHERE sid IN \
             (SELECT sid FROM recordings WHERE ended < ? ORDER BY ended LIMIT ?) RETURNING path",
            before,
        )
        .await?;
    report.recordings = paths.len() as u64;
    let Ok(dir) = tokio::fs::canonicalize(dir).await else { return Ok(()) };
    for path in paths {
        // Only a file inside the recordings folder is ours to delete, as
        // only such a file is served (the row's path came from a decky).
        let inside = match tokio::fs::canonicalize(&path).await {
            Ok(real) => real.starts_with(&dir),
            Err(_) => false,
        };
        if inside && remove_file_logged(Path::new(&path)).await {
            report.recording_files += 1;
        }
    }
    Ok(())
}

async fn remove_file_logged(path: &Path) -> bool {
    match tokio::fs::remove_file(path).await {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "retention cannot delete an expired file");
            false
        }
    }
}

/// Whether `name` is a rotated generation of `base`: `<base>.<n>` or
/// `<base>-<digits>`, optionally compressed (`.gz`, `.xz`, …).
fn is_rotated(base: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(base) else { return false };
    let Some(rest) = rest.strip_prefix('.').or_else(|| rest.strip_prefix('-')) else { return false };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && (rest.len() == digits || rest.as_bytes()[digits] == b'.')
}

/// Rotated raw and parsed ingest files last written before `now - age`.
async fn prune_ingest_files(pool: &SqlitePool, log: &Path, now: SystemTime, age: Duration) -> anyhow::Result<u64> {
    let json = crate::collector::writer::json_log_path(log);
    let (Some(dir), Some(raw_base), Some(json_base)) = (
        log.parent(),
        log.file_name().and_then(|n| n.to_str()).map(str::to_owned),
        json.file_name().and_then(|n| n.to_str()).map(str::to_owned),
    ) else {
        return Ok(0);
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Some(oldest_kept) = now.checked_sub(age) else { return Ok(0) };
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => anyhow::bail!("cannot list {}: {e}", dir.display()),
    };
    let json_key = crate::ingest::follow::cursor_key(&json);
    let mut deleted = 0;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let parsed = is_rotated(&json_base, name);
        if !parsed && !is_rotated(&raw_base, name) {
            continue;
        }
        let Ok(meta) = entry.metadata().await else { continue };
        if !meta.is_file() || meta.modified().map_or(true, |m| m >= oldest_kept) {
            continue;
        }
        if parsed && unfinished_by_ingester(pool, &json_key, &meta).await? {
            tracing::info!(path = %entry.path().display(), "retention keeps an expired ingest file the ingester has not finished");
            continue;
        }
        if remove_file_logged(&entry.path()).await {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Whether the ingester has a cursor on this file that has not reached
/// its end (its rows are not all in the database yet).
async fn unfinished_by_ingester(pool: &SqlitePool, key: &str, meta: &std::fs::Metadata) -> anyhow::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let position: Option<(i64,)> = sqlx::query_as("SELECT position FROM file_cursors WHERE path = ? AND inode = ?")
        .bind(key)
        .bind(meta.ino() as i64)
        .fetch_optional(pool)
        .await?;
    // No cursor: never read (and not the live file), or read and the row
    // since dropped as an old generation: either way the ingester will not
    // come back for it.
    Ok(position.is_some_and(|(p,)| u64::try_from(p).unwrap_or(0) < meta.len()))
}

/// Give the database's free pages back to the filesystem, a few at a time.
/// Returns the bytes the file shrank by (0 without incremental auto-vacuum:
/// freed pages are then reused by new rows, the file keeps its size).
async fn vacuum(batches: &Batches<'_>) -> anyhow::Result<u64> {
    let pool = batches.pool;
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum").fetch_one(pool).await?;
    if mode != 2 {
        tracing::info!(
            "retention: this database predates incremental vacuum; freed space is reused but the file does not shrink \
             (convert it with `decnet backup` + `decnet restore`, docs/deployment.md)"
        );
        return Ok(0);
    }
    let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size").fetch_one(pool).await?;
    let mut freed = 0u64;
    loop {
        let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count").fetch_one(pool).await?;
        if free <= 0 {
            return Ok(freed);
        }
        let (before,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(pool).await?;
        sqlx::query(&format!("PRAGMA incremental_vacuum({})", batches.pacing.vacuum_pages)).execute(pool).await?;
        let (after,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(pool).await?;
        if after >= before {
            // Nothing moved (another connection holds the pages): next round.
            return Ok(freed);
        }
        freed += u64::try_from((before - after) * page_size).unwrap_or(0);
        if !batches.pause().await {
            return Ok(freed);
        }
    }
}

/// Prune every `interval` until `shutdown`, starting now. Errors are
/// logged and the next round tries again.
pub fn spawn(
    pool: SqlitePool,
    policy: RetentionPolicy,
    paths: RetentionPaths,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if policy == RetentionPolicy::keep_forever() {
            tracing::info!("retention: every --retain-*-days is 0, nothing is ever deleted");
            return;
        }
        let days =
            |age: Option<Duration>| age.map_or_else(|| "forever".to_string(), |d| (d.as_secs() / 86_400).to_string());
        tracing::info!(
            logs_days = days(policy.logs),
            ingest_files_days = days(policy.ingest_files),
            artifacts_days = days(policy.artifacts),
            recordings_days = days(policy.recordings),
            attackers_days = days(policy.attackers),
            interval_secs = interval.as_secs(),
            "retention pruner started"
        );
        loop {
            match prune_once(&pool, &policy, &paths, Pacing::default(), SystemTime::now(), &shutdown).await {
                Ok(report) if report.deleted_anything() => tracing::info!(?report, "retention pruned expired data"),
                Ok(_) => tracing::debug!("retention: nothing expired"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "retention round failed; retrying next round"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names() {
        for yes in ["ingest.log.1", "ingest.log.12.gz", "ingest.log-20261203", "ingest.log-20261203.xz"] {
            assert!(is_rotated("ingest.log", yes), "{yes}");
        }
        for no in
            ["ingest.log", "ingest.log.json", "ingest.log.json.1", "ingest.log.", "ingest.log.1x", "ingest.logx.1"]
        {
            assert!(!is_rotated("ingest.log", no), "{no}");
        }
        assert!(is_rotated("ingest.log.json", "ingest.log.json.1"));
        assert!(!is_rotated("ingest.log.json", "ingest.log.json"));
    }

    #[test]
    fn zero_days_keeps_forever() {
        assert_eq!(RetentionPolicy::days(0), None);
        assert_eq!(RetentionPolicy::days(2), Some(Duration::from_secs(2 * 86_400)));
    }

    #[test]
    fn only_hex_digests_name_quarantine_files() {
        assert!(is_sha256_name(&"ab".repeat(32)));
        assert!(!is_sha256_name("../../etc/passwd"));
        assert!(!is_sha256_name(&"AB".repeat(32)));
    }
}
