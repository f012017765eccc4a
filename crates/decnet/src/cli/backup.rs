//! `decnet backup FILE` and `decnet restore FILE` (see `store::backup`).

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (must not exist; created mode 0600). Safe
    /// while decnet runs: the copy is the database as it was when the
    /// backup began.
    pub file: PathBuf,
    /// SQLite database to back up (default: `$DECNET_HOME/decnet.db`).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A file written by `decnet backup`. Refused if it fails SQLite's
    /// integrity check or comes from a newer decnet.
    pub file: PathBuf,
    /// The database to replace (default: `$DECNET_HOME/decnet.db`). Stop
    /// every decnet daemon using it first; the replaced file is kept as
    /// `<db>.before-restore-<time>`.
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub async fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let db = args.db.unwrap_or_else(crate::store::default_db_path);
    let report = crate::store::backup::backup(&db, &args.file).await?;
    println!(
        "backed up {} to {} ({}, schema version {}); restore with `decnet restore {}`",
        db.display(),
        args.file.display(),
        megabytes(report.bytes),
        report.schema_version,
        args.file.display()
    );
    Ok(())
}

pub async fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let db = args.db.unwrap_or_else(crate::store::default_db_path);
    let home = crate::home::decnet_home();
    let report = crate::store::backup::restore(&args.file, &db, &home).await?;
    match &report.previous {
        Some(previous) => println!("the previous database is kept as {}", previous.display()),
        None => println!("there was no database at {} before", db.display()),
    }
    println!(
        "restored {} into {} (backup schema version {}, now {})",
        args.file.display(),
        db.display(),
        report.backup_schema_version,
        crate::store::known_schema_version()
    );
    Ok(())
}
