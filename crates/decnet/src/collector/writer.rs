//! The collector's two output files: every raw line to the ingest log (the
//! full record, also where the mutator writes its events), and one JSON
//! record per parsed line to `<log>.json` (what the ingester tails).
//!
//! Rotation: logrotate (or an operator) renames the file away and expects
//! the writer to start a new one. Before each batch the path is stat'ed and
//! compared with the open file's device and inode; a mismatch or a missing
//! file reopens (creating it). One stat per batch is cheap next to the
//! write, and catches a rotation before the very next line.
//!
//! Copytruncate (logrotate copies the file, then truncates it in place)
//! shows in the same stat as a length below what this writer alone has
//! put in the file: appends go on at the new end (O_APPEND), but lines
//! written between the copy and the truncation are in neither file, so
//! each one is logged at WARN and counted ([`RotatingFile::truncations`]).
//! The rotation to use is the rename one (deploy/decnet.logrotate).
//!
//! Each batch is one `write` on an `O_APPEND` descriptor, so lines stay
//! whole next to the mutator's own appends to the same file. The files are
//! created 0600 (they hold what attackers typed, credentials included),
//! and an existing one left looser is tightened when opened.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `<log>.json` next to the ingest log `<log>`.
pub fn json_log_path(ingest_log: &Path) -> PathBuf {
    let mut s = ingest_log.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// An append-only file that follows its path across rotation.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    open: Option<(File, u64, u64)>,
    /// The least the open file's length can be: its length when last
    /// seen plus what this writer appended since (others only add).
    least_len: u64,
    truncations: u64,
}

impl RotatingFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RotatingFile { path: path.into(), open: None, least_len: 0, truncations: 0 }
    }

    /// How often the file was seen truncated in place.
    pub fn truncations(&self) -> u64 {
        self.truncations
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `bytes` (whole lines) in one write, reopening first if the
    /// path no longer names the open file.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino(), m.len()));
        let stale = match (&self.open, current) {
            (Some((_, dev, ino)), Some((d, i, _))) => (*dev, *ino) != (d, i),
            _ => true,
        };
        if stale {
            self.open = None;
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file =
                OpenOptions::new().create(true).append(true).mode(crate::state_dir::FILE_MODE).open(&self.path)?;
            if let Err(e) = crate::state_dir::tighten(&self.path, crate::state_dir::FILE_MODE) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot restrict the log's permissions");
            }
            let meta = file.metadata()?;
            self.least_len = meta.len();
            self.open = Some((file, meta.dev(), meta.ino()));
        } else if let Some((_, _, len)) = current.filter(|(_, _, len)| *len < self.least_len) {
            self.truncations += 1;
            tracing::warn!(path = %self.path.display(), expected_at_least = self.least_len, len,
                "log truncated in place (copytruncate?): lines written between the copy and the truncation are lost; rotate by renaming instead (deploy/decnet.logrotate)");
            self.least_len = len;
        } else if let Some((_, _, len)) = current {
            self.least_len = len;
        }
        let (file, _, _) = self.open.as_mut().expect("opened above");
        let result = file.write_all(bytes);
        if result.is_err() {
            // Start clean next batch (the disk may come back, the path may change).
            self.open = None;
        } else {
            self.least_len += bytes.len() as u64;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_appends_the_suffix() {
        assert_eq!(json_log_path(Path::new("/x/ingest.log")), PathBuf::from("/x/ingest.log.json"));
    }

    #[test]
    fn rotation_and_deletion_reopen_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ingest.log");
        let mut f = RotatingFile::new(&path);
        f.append(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("sub/ingest.log.1")).unwrap();
        f.append(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/ingest.log.1")).unwrap(), "one\n");
        std::fs::remove_file(&path).unwrap();
        f.append(b"three\n").unwrap();
        f.append(b"four\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\nfour\n");
    }

    #[test]
    fn files_are_owner_only_even_when_left_looser() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.log");
        let mut f = RotatingFile::new(&path);
        f.append(b"one\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let old = dir.path().join("old.log");
        std::fs::write(&old, "x\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        RotatingFile::new(&old).append(b"y\n").unwrap();
        assert_eq!(mode(&old), 0o600);
    }

    #[test]
    fn copytruncate_is_noticed_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.log");
        let mut f = RotatingFile::new(&path);
        f.append(b"one\n").unwrap();
        // Someone else appending is no truncation.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"mutator\n").unwrap();
        f.append(b"two\n").unwrap();
        assert_eq!(f.truncations(), 0);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        f.append(b"three\n").unwrap();
        assert_eq!(f.truncations(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n", "appends go on at the new end");
    }
}
