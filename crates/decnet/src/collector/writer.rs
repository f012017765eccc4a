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
//! Each batch is one `write` on an `O_APPEND` descriptor, so lines stay
//! whole next to the mutator's own appends to the same file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
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
}

impl RotatingFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RotatingFile { path: path.into(), open: None }
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
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        let stale = match (&self.open, current) {
            (Some((_, dev, ino)), Some((d, i))) => (*dev, *ino) != (d, i),
            _ => true,
        };
        if stale {
            self.open = None;
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            let meta = file.metadata()?;
            self.open = Some((file, meta.dev(), meta.ino()));
        }
        let (file, _, _) = self.open.as_mut().expect("opened above");
        let result = file.write_all(bytes);
        if result.is_err() {
            // Start clean next batch (the disk may come back, the path may change).
            self.open = None;
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
}
