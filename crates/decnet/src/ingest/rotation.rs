//! Finding the files a rotated log went through.
//!
//! logrotate (or an operator's `mv`) renames `<log>` to `<log>.1`, the
//! previous `<log>.1` to `<log>.2`, and so on (or, with `dateext`, to
//! `<log>-YYYYMMDD`); with `copytruncate` it copies `<log>` to `<log>.1` and
//! truncates `<log>` in place. A reader that was away across one or more of
//! these (a restart, a stopped forwarder) must still read every file it has
//! not finished, in the order they were written: this is that order.
//! Compressed generations (`.gz`, …) are not readable lines and are left
//! out; a reader that needed one counts the gap (see the readers).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One file of the chain.
#[derive(Debug, Clone)]
pub struct Generation {
    pub path: PathBuf,
    pub inode: u64,
    pub len: u64,
    pub modified: SystemTime,
}

impl Generation {
    fn of(path: PathBuf, meta: &Metadata) -> Generation {
        Generation {
            path,
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// The rotation number of `name` as a generation of `base`: `Some(n)` for
/// `<base>.n`, `Some(0)` for a `dateext` `<base>-<digits>` (ordered by
/// time alone), `None` for anything else (`<base>.json`, `<base>.1.gz`).
fn rotation_number(base: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(base)?;
    if let Some(n) = rest.strip_prefix('.') {
        return n.parse().ok().filter(|_| n.bytes().all(|b| b.is_ascii_digit()));
    }
    let date = rest.strip_prefix('-')?;
    (!date.is_empty() && date.bytes().all(|b| b.is_ascii_digit())).then_some(0)
}

/// Every readable generation of `log`, oldest first, `log` itself last.
/// Rotated files are ordered by when they were last written (then by
/// rotation number, higher is older): a file stops being written when it
/// is rotated away, so that is the order they were written in.
pub fn chain(log: &Path) -> Vec<Generation> {
    let mut rotated = Vec::new();
    let (Some(dir), Some(base)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| rotation_number(base, n)) else { continue };
            let path = entry.path();
            if let Ok(meta) = std::fs::metadata(&path).filter_meta() {
                rotated.push((Generation::of(path, &meta), number));
            }
        }
    }
    rotated.sort_by(|(a, an), (b, bn)| a.modified.cmp(&b.modified).then(bn.cmp(an)));
    let mut out: Vec<Generation> = rotated.into_iter().map(|(g, _)| g).collect();
    if let Ok(meta) = std::fs::metadata(log).filter_meta() {
        // A hard link or a rename racing the listing must not list one file twice.
        out.retain(|g| g.inode != meta.ino());
        out.push(Generation::of(log.to_path_buf(), &meta));
    }
    out
}

trait RegularFile {
    fn filter_meta(self) -> std::io::Result<Metadata>;
}

impl RegularFile for std::io::Result<Metadata> {
    /// Only regular files are generations.
    fn filter_meta(self) -> std::io::Result<Metadata> {
        let meta = self?;
        if meta.is_file() {
            Ok(meta)
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    }
}

/// The generation of `log` with `inode`, if it still exists.
pub fn find(log: &Path, inode: u64) -> Option<Generation> {
    chain(log).into_iter().find(|g| g.inode == inode)
}

/// The file written after the one with `inode` (last written at
/// `modified`): the next generation in [`chain`], or, when that file is
/// gone from the chain already, the oldest generation written since.
pub fn successor(log: &Path, inode: u64, modified: SystemTime) -> Option<Generation> {
    let chain = chain(log);
    match chain.iter().position(|g| g.inode == inode) {
        Some(i) => chain.into_iter().nth(i + 1),
        None => chain.into_iter().find(|g| g.modified >= modified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_generations() {
        assert_eq!(rotation_number("ingest.log", "ingest.log.1"), Some(1));
        assert_eq!(rotation_number("ingest.log", "ingest.log.12"), Some(12));
        assert_eq!(rotation_number("ingest.log", "ingest.log-20261203"), Some(0));
        for not in ["ingest.log", "ingest.log.json", "ingest.log.1.gz", "ingest.log.", "ingest.log.+1", "other.1"] {
            assert_eq!(rotation_number("ingest.log", not), None, "{not}");
        }
    }

    #[test]
    fn chain_is_oldest_first_and_successor_walks_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "a\n").unwrap();
        let first = std::fs::metadata(&log).unwrap().ino();
        std::fs::rename(&log, dir.path().join("x.log.1")).unwrap();
        std::fs::write(&log, "b\n").unwrap();
        let second = std::fs::metadata(&log).unwrap().ino();
        std::fs::rename(dir.path().join("x.log.1"), dir.path().join("x.log.2")).unwrap();
        std::fs::rename(&log, dir.path().join("x.log.1")).unwrap();
        std::fs::write(&log, "c\n").unwrap();
        std::fs::write(dir.path().join("x.log.json"), "not a generation\n").unwrap();
        std::fs::write(dir.path().join("x.log.3.gz"), "compressed\n").unwrap();
        let third = std::fs::metadata(&log).unwrap().ino();
        let inodes: Vec<u64> = chain(&log).iter().map(|g| g.inode).collect();
        assert_eq!(inodes, [first, second, third]);
        let m = |ino| find(&log, ino).unwrap().modified;
        assert_eq!(successor(&log, first, m(first)).unwrap().inode, second);
        assert_eq!(successor(&log, second, m(second)).unwrap().inode, third);
        assert!(successor(&log, third, m(third)).is_none());
        // A file deleted after it was left: the oldest one written since.
        let when = m(first);
        std::fs::remove_file(dir.path().join("x.log.2")).unwrap();
        assert_eq!(successor(&log, first, when).unwrap().inode, second);
    }
}
