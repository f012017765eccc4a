//! The one-time admin password `decnet up` makes on a fresh home.
//!
//! `up` prints it once, and — because worker log lines can push that off
//! the screen — also keeps it in `$DECNET_HOME/initial-admin-password`
//! (mode 0600, the password and a newline) until it is no longer needed:
//! the API removes the file on that user's first successful login. From
//! then on the password the operator knows is the only copy.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The user `decnet up` creates on an empty database.
pub const USERNAME: &str = "admin";
/// File name of the kept password under `$DECNET_HOME`.
pub const FILE_NAME: &str = "initial-admin-password";

/// `<home>/initial-admin-password`.
pub fn path_in(home: &Path) -> PathBuf {
    home.join(FILE_NAME)
}

/// Write `password` to `<home>/initial-admin-password`, readable by its
/// owner only from the first byte (created 0600, never chmod-ed after).
pub fn write(home: &Path, password: &str) -> anyhow::Result<PathBuf> {
    let path = path_in(home);
    // A stale file from an earlier home would keep its old mode: replace it.
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::state_dir::FILE_MODE)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    writeln!(f, "{password}")?;
    f.sync_all()?;
    Ok(path)
}

/// After `username` logged in: remove the kept password if it was this
/// user's. Failing to remove is logged (the login itself succeeded).
pub fn forget_after_login(path: &Path, username: &str) {
    if username != USERNAME {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "first admin login: removed the initial password file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove the initial password file"),
    }
}

/// The box `decnet up` prints last: the password stands out from the
/// log lines around it.
pub fn render_box(password: &str, path: &Path) -> String {
    let lines = [
        format!("Sign in as {USERNAME} / {password}"),
        "(shown once; also in".to_string(),
        format!(" {}", path.display()),
        " until the first admin login)".to_string(),
    ];
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let rule = "─".repeat(width + 2);
    let mut out = format!("┌{rule}┐\n");
    for l in &lines {
        out.push_str(&format!("│ {l:<width$} │\n"));
    }
    out.push_str(&format!("└{rule}┘\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_is_owner_only_and_goes_after_the_admin_logs_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        forget_after_login(&path, "alice");
        assert!(path.exists(), "another user's login keeps it");
        forget_after_login(&path, USERNAME);
        assert!(!path.exists());
        forget_after_login(&path, USERNAME); // already gone: no panic
    }

    #[test]
    fn the_box_lines_up() {
        let b = render_box("pw", Path::new("/h/initial-admin-password"));
        let widths: Vec<usize> = b.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{b}");
        assert!(b.contains("admin / pw"));
    }
}
