//! The SQLite store: the source of truth (the bus is fire-and-forget).
//!
//! One database file under `$DECNET_HOME` (or wherever `--db`/`DECNET_DB`
//! points). Schema changes are sqlx migrations in `crates/decnet/migrations`,
//! embedded in the binary and applied on every start, so a fresh machine
//! gets its schema on first run. Each table family has its own submodule.

pub mod backup;
pub mod fleet;
pub mod mutations;
pub mod topology;
pub mod users;
pub mod webhooks;

use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The database path: `DECNET_DB`, else `$DECNET_HOME/decnet.db`.
pub fn default_db_path() -> PathBuf {
    match std::env::var_os("DECNET_DB").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => crate::home::decnet_home().join("decnet.db"),
    }
}

/// Open (creating if needed) the database at `path` and apply migrations.
pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Private: the folder and the file hold password hashes.
        crate::state_dir::create_private_dir(parent)
            .map_err(|e| anyhow::anyhow!("cannot create database folder {}: {e}", parent.display()))?;
    }
    crate::state_dir::secure_db_files(path)?;
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        // WAL lets the API read while the mutator writes; busy_timeout makes
        // concurrent writers wait for each other instead of failing.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        // Incremental auto-vacuum lets the pruner give freed pages back to
        // the filesystem in small steps (`crate::retention`). SQLite takes
        // the mode only while the file has no tables: a new database gets
        // it here, before the migrations; on an older database the pragma
        // is recorded and ignored until a full VACUUM, which `decnet
        // backup` + `decnet restore` performs (docs/deployment.md).
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        // 8 KiB pages for a new file (an existing one keeps its own): `logs`
        // rows of about 1 KB and five indexes split pages and log WAL
        // frames about 7% less often per row than with 4 KiB (BENCHMARKS.md,
        // "Connect sweep").
        .page_size(8192);
    // The first connection to a new file switches it to WAL, which needs
    // the file to itself: SQLite answers a second process doing the same at
    // that moment with "database is locked" at once, without waiting out
    // busy_timeout. So the first connection is made, like the migrations,
    // under the open lock.
    let lock = open_lock(path).await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        // sqlx pings a pooled connection before every use by default, a
        // second round trip to the connection's worker thread per query:
        // that is for network databases whose connections go stale. A
        // SQLite connection is a local file handle; a broken one still
        // fails its query with the cause. (Deploying 10,000 deckies: most
        // of the time went to these thread hand-offs.)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
    let migrated = async {
        refuse_newer_schema(&mut *pool.acquire().await?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
        MIGRATOR.run(&pool).await.map_err(|e| anyhow::anyhow!("cannot migrate database {}: {e}", path.display()))
    }
    .await;
    drop(lock);
    migrated?;
    // The WAL files exist now; a home from an older version may have
    // left them readable.
    crate::state_dir::secure_db_files(path)?;
    Ok(pool)
}

/// The migrations embedded in this binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The newest schema version this binary knows (its last migration).
pub fn known_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The schema versions applied to the database behind `conn` (empty for a
/// new file).
pub async fn applied_schema_versions(conn: &mut sqlx::SqliteConnection) -> anyhow::Result<Vec<i64>> {
    let (has_table,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !has_table {
        return Ok(Vec::new());
    }
    let versions: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version").fetch_all(conn).await?;
    Ok(versions.into_iter().map(|(v,)| v).collect())
}

/// Fail with a message that says what to do when the database was
/// migrated by a newer decnet: this binary does not know its schema, and
/// writing to it could corrupt what the newer version expects. (sqlx would
/// refuse too, naming only a "missing" migration.)
pub async fn refuse_newer_schema(conn: &mut sqlx::SqliteConnection) -> anyhow::Result<()> {
    let unknown: Vec<i64> =
        applied_schema_versions(conn).await?.into_iter().filter(|v| !MIGRATOR.version_exists(*v)).collect();
    if let Some(newest) = unknown.iter().max() {
        anyhow::bail!(
            "the database has schema version {newest}, written by a newer decnet (this one knows up to {}); \
             run that newer version, or restore a backup taken with this one",
            known_schema_version()
        );
    }
    Ok(())
}

/// An exclusive `flock` on `<db>.migrate-lock`, held while a process makes
/// its first connection and applies the migrations. `decnet up` starts its
/// children together and each opens the database; on a new file they all
/// found the migration table empty and all but the first failed with
/// "table already exists", because sqlx's migration lock is a no-op on
/// SQLite, or failed switching the new file to WAL at the same moment. The
/// lock file is separate from the database so SQLite's own locking is left
/// alone; the kernel drops the lock if the holder dies.
pub async fn open_lock(path: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::OpenOptionsExt;
    let lock_path = PathBuf::from(format!("{}.migrate-lock", path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("cannot open the migration lock {}: {e}", lock_path.display()))?;
    tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
        .await?
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", lock_path.display()))
}
