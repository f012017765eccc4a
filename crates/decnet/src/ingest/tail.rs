//! Tailing `<log>.json`: hand out complete lines from a byte position,
//! follow the path across rotation, notice truncation.
//!
//! Identity is (path, inode). The reader holds the file open, so after a
//! rename it can still finish the old file; only at its end, with the path
//! now naming another inode, does it switch, and the new file starts at 0.
//! A file that shrank below the position (copy-truncate) starts again at 0.
//! A last line without its LF is not handed out: the collector may be
//! halfway through writing it.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where a reader is: the file's inode and the byte offset after the last
/// line consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

/// Complete lines read from one file.
#[derive(Debug)]
pub struct Chunk {
    pub inode: u64,
    pub start: u64,
    /// Offset after the last complete line (the next cursor).
    pub end: u64,
    /// Whole lines, each ending in LF.
    pub data: Vec<u8>,
    /// A line longer than the read limit was skipped in this chunk.
    pub skipped_overlong: bool,
}

impl Chunk {
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.data.split(|b| *b == b'\n').filter(|l| !l.is_empty())
    }
}

#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    open: Option<(File, u64)>,
    offset: u64,
    max_read: usize,
}

fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl Tail {
    /// A reader of `path` resuming at `resume` if it still names that inode.
    pub fn new(path: impl Into<PathBuf>, resume: Option<Position>, max_read: usize) -> Self {
        let mut tail = Tail { path: path.into(), open: None, offset: 0, max_read: max_read.max(1) };
        tail.reopen(resume);
        tail
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reopen(&mut self, resume: Option<Position>) {
        self.open = None;
        self.offset = 0;
        let Ok(file) = File::open(&self.path) else { return };
        let Ok(meta) = file.metadata() else { return };
        let inode = meta.ino();
        if let Some(pos) = resume.filter(|p| p.inode == inode && p.offset <= meta.len()) {
            self.offset = pos.offset;
        } else if let Some(pos) = resume {
            tracing::info!(path = %self.path.display(), old_inode = pos.inode, inode, "ingest file rotated or truncated; reading it from the start");
        }
        self.open = Some((file, inode));
    }

    /// The position reached by consumed chunks (call [`Tail::advance`]).
    pub fn position(&self) -> Option<Position> {
        self.open.as_ref().map(|(_, inode)| Position { inode: *inode, offset: self.offset })
    }

    /// Start over from `pos` (after another reader moved the shared cursor).
    pub fn reset(&mut self, pos: Option<Position>) {
        self.reopen(pos);
    }

    /// Mark a chunk consumed.
    pub fn advance(&mut self, chunk: &Chunk) {
        if self.open.as_ref().is_some_and(|(_, ino)| *ino == chunk.inode) {
            self.offset = chunk.end;
        }
    }

    /// The next complete lines after the position, or `None` when there
    /// are none yet. Does not move the position (see [`Tail::advance`]).
    pub fn read(&mut self) -> std::io::Result<Option<Chunk>> {
        for _ in 0..2 {
            if self.open.is_none() {
                self.reopen(None);
                if self.open.is_none() {
                    return Ok(None); // no file yet
                }
            }
            let (file, inode) = self.open.as_ref().expect("opened above");
            let inode = *inode;
            let len = file.metadata()?.len();
            if len < self.offset {
                tracing::warn!(path = %self.path.display(), "ingest file shrank; reading it from the start");
                self.offset = 0;
            }
            if len > self.offset {
                let want = (len - self.offset).min(self.max_read as u64) as usize;
                let mut data = vec![0u8; want];
                let mut got = 0;
                while got < want {
                    match file.read_at(&mut data[got..], self.offset + got as u64)? {
                        0 => break,
                        n => got += n,
                    }
                }
                data.truncate(got);
                if let Some(last_lf) = data.iter().rposition(|b| *b == b'\n') {
                    data.truncate(last_lf + 1);
                    let end = self.offset + data.len() as u64;
                    return Ok(Some(Chunk { inode, start: self.offset, end, data, skipped_overlong: false }));
                }
                if got == self.max_read {
                    // A "line" longer than anything the collector writes:
                    // skip what was read rather than stall behind it forever.
                    let end = self.offset + got as u64;
                    return Ok(Some(Chunk {
                        inode,
                        start: self.offset,
                        end,
                        data: Vec::new(),
                        skipped_overlong: true,
                    }));
                }
                // Only a partial last line: wait for its LF.
                return Ok(None);
            }
            // At the end: has the path moved on to another file?
            match inode_of(&self.path) {
                Some(now) if now != inode => {
                    tracing::info!(path = %self.path.display(), "ingest file rotated; following the new file");
                    // Read what the old file got since the length check
                    // before letting go of it.
                    if file.metadata()?.len() > self.offset {
                        continue;
                    }
                    self.reopen(None);
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, s: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(s.as_bytes()).unwrap();
    }

    fn consume(t: &mut Tail) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(c) = t.read().unwrap() {
            out.extend(c.lines().map(|l| String::from_utf8(l.to_vec()).unwrap()));
            t.advance(&c);
        }
        out
    }

    #[test]
    fn partial_lines_wait_for_their_lf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let mut t = Tail::new(&p, None, 1 << 20);
        assert!(t.read().unwrap().is_none());
        append(&p, "a\nb");
        assert_eq!(consume(&mut t), ["a"]);
        append(&p, "c\n");
        assert_eq!(consume(&mut t), ["bc"]);
        assert_eq!(t.position().unwrap().offset, 5);
    }

    #[test]
    fn resume_same_inode_and_restart_on_another() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, "1\n2\n");
        let mut t = Tail::new(&p, None, 1 << 20);
        assert_eq!(consume(&mut t), ["1", "2"]);
        let pos = t.position().unwrap();
        append(&p, "3\n");
        let mut t2 = Tail::new(&p, Some(pos), 1 << 20);
        assert_eq!(consume(&mut t2), ["3"]);
        // The cursor's inode is gone: the file at the path starts at 0.
        std::fs::rename(&p, dir.path().join("x.json.1")).unwrap();
        append(&p, "4\n");
        let mut t3 = Tail::new(&p, Some(pos), 1 << 20);
        assert_eq!(consume(&mut t3), ["4"]);
    }

    #[test]
    fn rotation_finishes_the_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, "old1\n");
        let mut t = Tail::new(&p, None, 1 << 20);
        assert_eq!(consume(&mut t), ["old1"]);
        append(&p, "old2\n");
        std::fs::rename(&p, dir.path().join("x.json.1")).unwrap();
        append(&dir.path().join("x.json.1"), "old3\n");
        append(&p, "new1\n");
        assert_eq!(consume(&mut t), ["old2", "old3", "new1"]);
    }

    #[test]
    fn truncation_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, "aaaa\nbbbb\n");
        let mut t = Tail::new(&p, None, 1 << 20);
        assert_eq!(consume(&mut t).len(), 2);
        std::fs::write(&p, "c\n").unwrap();
        assert_eq!(consume(&mut t), ["c"]);
    }

    #[test]
    fn an_overlong_line_is_skipped_not_stalled_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, &format!("{}\nok\n", "z".repeat(100)));
        let mut t = Tail::new(&p, None, 64);
        let c = t.read().unwrap().unwrap();
        assert!(c.skipped_overlong);
        t.advance(&c);
        // The rest of the long line, then the next good one.
        let got = consume(&mut t);
        assert_eq!(got.last().map(String::as_str), Some("ok"));
    }
}
