//! `decnet backup` and `decnet restore`: the database as one file.
//!
//! **Backup** is SQLite's `VACUUM INTO`: it reads the database inside one
//! read transaction, so the copy is the database exactly as it was when
//! the backup began, every row committed before then and none after, while
//! the ingester and the API keep writing (WAL readers do not block
//! writers). It writes a fresh, compact file with incremental auto-vacuum
//! (the connection asks for it, see [`super::open`]). The copy is made
//! under a temporary name created 0600 (it holds password hashes) and
//! linked to its final name only when complete, never over an existing
//! file.
//!
//! **Restore** puts a backup in the database's place. It refuses
//! - a file that is not a decnet database or fails `PRAGMA
//!   integrity_check`;
//! - a backup whose schema is newer than this binary (as opening such a
//!   database refuses);
//! - while `decnet api`, `decnet up` or `decnet mutator` hold their home
//!   lock, or any process has the database open (SQLite's own lock: an
//!   exclusive lock cannot be had while another connection is open).
//!
//! The database it replaces is kept beside it as
//! `<db>.before-restore-<unix time>`; the restored file is migrated to
//! this binary's schema right away (an older backup is upgraded as an
//! older database would be on start).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteLockingMode};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

/// What a backup wrote.
#[derive(Debug)]
pub struct BackupReport {
    pub bytes: u64,
    pub schema_version: i64,
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    /// The backup's schema version, before migrating.
    pub backup_schema_version: i64,
    /// Where the replaced database went (None when there was none).
    pub previous: Option<PathBuf>,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Flush `path`'s folder, so a rename or link in it survives a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

/// A file created empty with mode 0600 (`create_new`: never an existing one).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).mode(crate::state_dir::FILE_MODE).open(path)
}

/// Copy the database at `db` into the new file `dest`, consistently while
/// other processes write to it.
pub async fn backup(db: &Path, dest: &Path) -> anyhow::Result<BackupReport> {
    if !db.is_file() {
        anyhow::bail!("no database at {} (set --db or DECNET_DB)", db.display());
    }
    if dest.exists() {
        anyhow::bail!("{} already exists; give the backup a new name", dest.display());
    }
    let pool = super::open(db).await?;
    let partial = with_suffix(dest, &format!(".partial-{}", std::process::id()));
    // VACUUM INTO accepts an existing file only if it is empty; creating it
    // first is what makes the backup 0600 whatever the umask.
    create_private(&partial).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", partial.display()))?;
    let written = async {
        let target = partial.to_str().ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", partial.display()))?;
        sqlx::query("VACUUM INTO ?").bind(target).execute(&pool).await?;
        std::fs::File::open(&partial)?.sync_all()?;
        // A link fails if `dest` appeared meanwhile: nothing is overwritten.
        std::fs::hard_link(&partial, dest).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dest.display()))?;
        sync_parent(dest)?;
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&partial);
    pool.close().await;
    written.map_err(|e| anyhow::anyhow!("backup of {} failed: {e:#}", db.display()))?;
    let mut copy = open_backup(dest).await?;
    let schema_version = super::applied_schema_versions(&mut copy).await?.into_iter().max().unwrap_or(0);
    copy.close().await?;
    Ok(BackupReport { bytes: std::fs::metadata(dest)?.len(), schema_version })
}

/// A backup file, read-only.
async fn open_backup(path: &Path) -> anyhow::Result<SqliteConnection> {
    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .read_only(true)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// Check that `path` is a sound decnet database this binary can run.
/// Returns its schema version.
pub async fn check_backup(path: &Path) -> anyhow::Result<i64> {
    if !path.is_file() {
        anyhow::bail!("no backup file at {}", path.display());
    }
    let mut conn = open_backup(path).await?;
    let verdict: Result<(String,), _> = sqlx::query_as("PRAGMA integrity_check(1)").fetch_one(&mut conn).await;
    match verdict {
        Ok((ok,)) if ok == "ok" => {}
        Ok((problem,)) => anyhow::bail!("{} fails SQLite's integrity check: {problem}", path.display()),
        Err(e) => anyhow::bail!("{} is not a readable SQLite database: {e}", path.display()),
    }
    let versions = super::applied_schema_versions(&mut conn).await?;
    let Some(version) = versions.iter().max().copied() else {
        anyhow::bail!("{} is not a decnet database (no schema history)", path.display());
    };
    super::refuse_newer_schema(&mut conn).await?;
    conn.close().await?;
    Ok(version)
}

/// Refuse while a decnet daemon runs on `home` or anyone has `db` open.
async fn refuse_while_in_use(home: &Path, db: &Path) -> anyhow::Result<()> {
    for role in ["api", "mutator"] {
        if let Some(pid) = crate::lock::holder(home, role)? {
            anyhow::bail!(
                "decnet {role} is running on {} (pid {pid} holds {}); stop it, and every decnet daemon using {}, then restore",
                home.display(),
                crate::lock::lock_path(home, role).display(),
                db.display()
            );
        }
    }
    if !db.exists() {
        return Ok(());
    }
    // Exclusive locking mode takes SQLite's exclusive file lock on first
    // use and keeps it; a WAL-mode connection open in any other process
    // holds a shared lock on the file, so this fails at once (no busy wait).
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .locking_mode(SqliteLockingMode::Exclusive)
        .busy_timeout(Duration::ZERO);
    let mut conn = None;
    let taken = async {
        let c = conn.insert(options.connect().await?);
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut *c).await?;
        sqlx::query("COMMIT").execute(&mut *c).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = taken {
        if let Some(c) = conn {
            let _ = c.close().await;
        }
        anyhow::bail!(
            "{} is open in another process ({e:#}): stop every decnet daemon using it (profiler, clusterer, prober, sniffer, ingest, …) before restoring",
            db.display()
        );
    }
    // Closing the last connection checkpoints the WAL into the file, so
    // the database kept aside is complete on its own.
    if let Some(c) = conn {
        c.close().await?;
    }
    Ok(())
}

/// Replace the database at `db` (of the home `home`) with the backup `from`.
pub async fn restore(from: &Path, db: &Path, home: &Path) -> anyhow::Result<RestoreReport> {
    let backup_schema_version =
        check_backup(from).await.map_err(|e| anyhow::anyhow!("will not restore {}: {e:#}", from.display()))?;
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::state_dir::create_private_dir(parent)
            .map_err(|e| anyhow::anyhow!("cannot create database folder {}: {e}", parent.display()))?;
    }
    // Held throughout: a decnet process starting now waits in `open`
    // until the restored file is in place, then migrates that.
    let lock = super::open_lock(db).await?;
    refuse_while_in_use(home, db).await?;
    let partial = with_suffix(db, ".restore-partial");
    let _ = std::fs::remove_file(&partial);
    let copied = (|| {
        let mut out = create_private(&partial)?;
        std::io::copy(&mut std::fs::File::open(from)?, &mut out)?;
        out.flush()?;
        out.sync_all()
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        anyhow::bail!("cannot copy {} to {}: {e}", from.display(), partial.display());
    }
    let previous = if db.exists() {
        let stamp = crate::ingest::store::unix_secs(std::time::SystemTime::now()) as u64;
        let aside = with_suffix(db, &format!(".before-restore-{stamp}"));
        // The WAL companions go with their file (SQLite pairs them by name).
        for suffix in ["-wal", "-shm", ""] {
            let (from_path, to_path) = (with_suffix(db, suffix), with_suffix(&aside, suffix));
            if from_path.exists() {
                std::fs::rename(&from_path, &to_path).map_err(|e| {
                    anyhow::anyhow!("cannot move {} aside to {}: {e}", from_path.display(), to_path.display())
                })?;
            }
        }
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&partial, db)
        .map_err(|e| anyhow::anyhow!("cannot move the restored copy into {}: {e}", db.display()))?;
    sync_parent(db)?;
    drop(lock);
    // Upgrade an older backup to this binary's schema now, not at the
    // next daemon start.
    super::open(db).await?.close().await;
    Ok(RestoreReport { backup_schema_version, previous })
}
