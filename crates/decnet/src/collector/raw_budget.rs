//! The raw ingest log's disk budget: past a size the file is rotated
//! (`<log>` → `<log>.1` → … → `<log>.<keep>`, the oldest deleted), so a
//! flood costs at most `max_bytes × (keep + 1)` of disk however long it
//! lasts.
//!
//! Rotation is a rename of the path, which [`super::writer::RotatingFile`]
//! already follows (it reopens when the path names another file), so the
//! writer needs no change and an operator's logrotate keeps working too.
//! The JSON records are not rotated here: the ingester tails them with a
//! cursor, and what reaches them is bounded upstream (the per-session log
//! budget of the deckies, the noise and dedup filters).

use std::path::{Path, PathBuf};

/// Default size at which the raw log is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default number of rotated files kept.
pub const DEFAULT_KEEP: usize = 4;

#[derive(Debug, Clone)]
pub struct RawLogBudget {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
}

/// `<path>.<n>`.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RawLogBudget {
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64, keep: usize) -> Self {
        RawLogBudget { path: path.into(), max_bytes: max_bytes.max(1), keep: keep.max(1) }
    }

    /// Before appending `incoming` bytes: rotate if they would take the file
    /// past the budget. `Ok(true)` when it rotated. A file that is empty is
    /// never rotated (one batch larger than the budget is still written).
    pub fn make_room(&self, incoming: usize) -> std::io::Result<bool> {
        let size = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if size == 0 || size + incoming as u64 <= self.max_bytes {
            return Ok(false);
        }
        // Oldest first, so nothing is overwritten before it moved on; a
        // rename onto `<log>.<keep>` replaces (deletes) the oldest.
        for n in (1..self.keep).rev() {
            let from = rotated_path(&self.path, n);
            match std::fs::rename(&from, rotated_path(&self.path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::writer::RotatingFile;

    #[test]
    fn the_raw_log_never_takes_more_than_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.log");
        let budget = RawLogBudget::new(&path, 1000, 2);
        let mut file = RotatingFile::new(&path);
        let batch = vec![b'x'; 299];
        let mut rotations = 0;
        for i in 0..100 {
            let mut lines = batch.clone();
            lines.push(b'\n');
            lines[0] = b'0' + (i % 10) as u8;
            if budget.make_room(lines.len()).unwrap() {
                rotations += 1;
            }
            file.append(&lines).unwrap();
        }
        let sizes: Vec<u64> = [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)]
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect();
        assert!(sizes.iter().all(|s| *s <= 1000), "{sizes:?}");
        assert!(!rotated_path(&path, 3).exists(), "only `keep` rotated files are kept");
        // 3 batches of 300 bytes a file: 100 batches rotate 33 times.
        assert_eq!(rotations, 33);
        // The newest batch is in the live file, the one before in .1.
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(live.starts_with('9'), "{}", &live[..1]);
        let total: u64 = sizes.iter().sum();
        assert!(total <= 3000);
    }

    #[test]
    fn an_empty_or_missing_file_is_not_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.log");
        let budget = RawLogBudget::new(&path, 10, 1);
        assert!(!budget.make_room(100).unwrap());
        std::fs::write(&path, b"").unwrap();
        assert!(!budget.make_room(100).unwrap());
        assert!(!rotated_path(&path, 1).exists());
    }
}
