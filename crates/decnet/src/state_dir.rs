//! Owner-only permissions for the state under `$DECNET_HOME`.
//!
//! The database holds the users' argon2 hashes and the JWT secret signs
//! every token: readable by other local users, either hands them the
//! control plane (offline cracking, or forging admin tokens outright).
//! SQLite creates its file with the process umask (0644 typically) and
//! `create_dir_all` makes 0755 folders, so both are set explicitly here:
//! the home folder 0700, the database and its `-wal`/`-shm` files and the
//! secret 0600. Homes made by older versions are tightened on start, with a
//! log line saying what changed; a file we do not own (so cannot chmod) is
//! logged and left, never a reason to refuse to start.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of `$DECNET_HOME` and of folders we create for a database.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the database files and the JWT secret.
pub const FILE_MODE: u32 = 0o600;

/// Remove from `path` every permission bit outside `allowed`. Returns
/// whether anything changed; a missing path is not an error (false).
pub fn tighten(path: &Path, allowed: u32) -> std::io::Result<bool> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !allowed == 0 {
        return Ok(false);
    }
    let new = mode & allowed;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(new))?;
    tracing::warn!(path = %path.display(), old = format!("{mode:04o}"), new = format!("{new:04o}"), "tightened permissions (state must not be readable by other users)");
    Ok(true)
}

/// [`tighten`], logging instead of failing when it cannot.
fn tighten_or_log(path: &Path, allowed: u32) {
    if let Err(e) = tighten(path, allowed) {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict permissions; fix them by hand (chmod {allowed:o})");
    }
}

/// Create folders down to `dir` (new ones mode 0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// `$DECNET_HOME`, created 0700 if missing and tightened to 0700 (plus its
/// JWT secret to 0600) if an older version left it looser.
pub fn prepare_home() -> anyhow::Result<PathBuf> {
    let home = crate::home::decnet_home();
    create_private_dir(&home).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", home.display()))?;
    tighten_or_log(&home, DIR_MODE);
    tighten_or_log(&home.join("jwt.secret"), FILE_MODE);
    Ok(home)
}

/// The database file and its WAL companions: `db` is created empty with
/// mode 0600 before SQLite opens it (SQLite gives `-wal` and `-shm` the
/// mode of the main file), and any of the three left looser is tightened.
pub fn secure_db_files(db: &Path) -> anyhow::Result<()> {
    match std::fs::OpenOptions::new().append(true).create_new(true).mode(FILE_MODE).open(db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => anyhow::bail!("cannot create database {}: {e}", db.display()),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        tighten_or_log(Path::new(&name), FILE_MODE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tighten_removes_group_and_other_bits_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(tighten(&f, FILE_MODE).unwrap());
        assert_eq!(mode(&f), 0o600);
        assert!(!tighten(&f, FILE_MODE).unwrap(), "second call changes nothing");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(!tighten(&f, FILE_MODE).unwrap(), "stricter than allowed is left alone");
        assert_eq!(mode(&f), 0o400);
        assert!(!tighten(&dir.path().join("missing"), FILE_MODE).unwrap());
    }

    #[test]
    fn new_database_file_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        secure_db_files(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
    }
}
