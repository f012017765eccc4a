//! Reading one generation of a log: complete lines from a byte position,
//! and noticing when the file is no longer the one the position belongs to.
//!
//! The reader holds the file open, so after a rename it can still finish
//! it; only at its end, with the followed path naming another inode and
//! the file unchanged (no write, no rename: its ctime) for
//! [`ROTATION_GRACE`], does it report [`Step::Finished`] (the caller then
//! moves to the next generation, see [`super::rotation`]). The grace covers
//! a writer that checked the path just before the rename and still appends
//! one batch to the old file; counting it from the file's own ctime rather
//! than from when the reader looked means a file rotated long ago is left
//! at once, so a reader stopped right after finishing one has its next
//! file's cursor already.
//!
//! Truncation (copytruncate) is [`Step::Truncated`]: the file is shorter
//! than the position, or it was truncated and has grown past the position
//! again, which the length alone cannot show. For that the reader keeps the
//! last [`CHECK_LEN`] bytes before its position (they end in the last LF it
//! consumed) and compares them with the file before reading on: reading on
//! from a position inside different content would hand out the torn second
//! half of a line.
//!
//! A last line without its LF is never handed out: the writer may be
//! halfway through it.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the followed path must name another file, with nothing more
/// written to this one, before this one counts as finished.
pub const ROTATION_GRACE: Duration = Duration::from_millis(250);
/// Bytes before the position kept to recognise the file's content.
pub const CHECK_LEN: usize = 64;

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
    /// The last bytes before `end` (the reader's check once consumed).
    pub check: Vec<u8>,
    /// A line longer than the read limit was skipped in this chunk.
    pub skipped_overlong: bool,
    /// The chunk ends the file, which was already rotated away: only a
    /// writer racing the rename could still add to it (the reader stays for
    /// the grace to catch that; a restart in between need not call the
    /// file's disappearance a gap).
    pub finished: bool,
}

impl Chunk {
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.data.split(|b| *b == b'\n').filter(|l| !l.is_empty())
    }
}

/// What a read found.
#[derive(Debug)]
pub enum Step {
    Lines(Chunk),
    /// Nothing complete to hand out yet.
    Idle,
    /// At the end of a file the followed path no longer names, within the
    /// grace (nothing to hand out; [`Step::Finished`] comes next).
    Rotated,
    /// The file is not the content the position was in (truncated in place).
    Truncated,
    /// Read to the end, and the followed path names another file now.
    Finished,
}

#[derive(Debug)]
pub struct Tail {
    /// The path being followed (this file may have been renamed from it).
    log: PathBuf,
    file: File,
    inode: u64,
    offset: u64,
    check: Vec<u8>,
    max_read: usize,
}

fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The last [`CHECK_LEN`] bytes of `data` (after the previous `check`).
fn last_bytes(previous: &[u8], data: &[u8]) -> Vec<u8> {
    if data.len() >= CHECK_LEN {
        return data[data.len() - CHECK_LEN..].to_vec();
    }
    let keep = CHECK_LEN - data.len();
    let mut out = previous[previous.len().saturating_sub(keep)..].to_vec();
    out.extend_from_slice(data);
    out
}

/// Whether `file` holds `check` just before `offset`.
pub fn holds(file: &File, offset: u64, check: &[u8]) -> std::io::Result<bool> {
    let Some(at) = offset.checked_sub(check.len() as u64) else { return Ok(false) };
    let mut buf = vec![0u8; check.len()];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64)? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    Ok(buf == check)
}

impl Tail {
    /// A reader of `file` (a generation of `log`) from `offset`, where the
    /// bytes before `offset` are `check` (empty when unknown).
    pub fn new(
        log: impl Into<PathBuf>,
        file: File,
        offset: u64,
        check: Vec<u8>,
        max_read: usize,
    ) -> std::io::Result<Self> {
        let inode = file.metadata()?.ino();
        Ok(Tail { log: log.into(), file, inode, offset, check, max_read: max_read.max(1) })
    }

    pub fn inode(&self) -> u64 {
        self.inode
    }

    pub fn position(&self) -> Position {
        Position { inode: self.inode, offset: self.offset }
    }

    pub fn check(&self) -> &[u8] {
        &self.check
    }

    /// When the file was last written.
    pub fn modified(&self) -> SystemTime {
        self.file.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Start over from `offset` with `check` (after another reader moved
    /// the shared cursor of this file).
    pub fn reposition(&mut self, offset: u64, check: Vec<u8>) {
        self.offset = offset;
        self.check = check;
    }

    /// Mark a chunk consumed.
    pub fn advance(&mut self, chunk: &Chunk) {
        if chunk.inode == self.inode && chunk.start == self.offset {
            self.offset = chunk.end;
            self.check = chunk.check.clone();
        }
    }

    /// The next complete lines after the position, or what stops them.
    /// Does not move the position (see [`Tail::advance`]).
    pub fn read(&mut self) -> std::io::Result<Step> {
        let meta = self.file.metadata()?;
        let len = meta.len();
        if len < self.offset {
            return Ok(Step::Truncated);
        }
        if len > self.offset {
            if !self.check.is_empty() && !holds(&self.file, self.offset, &self.check)? {
                return Ok(Step::Truncated);
            }
            return self.read_lines(&meta);
        }
        // At the end: has the path moved on to another file?
        if inode_of(&self.log).is_none_or(|now| now == self.inode) {
            return Ok(Step::Idle);
        }
        // Unchanged (no write, no rename: its ctime) for the grace?
        let nanos = meta.ctime_nsec().clamp(0, 999_999_999) as u32;
        let changed = UNIX_EPOCH + Duration::new(meta.ctime().max(0) as u64, nanos);
        let quiet = SystemTime::now().duration_since(changed).unwrap_or_default();
        Ok(if quiet >= ROTATION_GRACE { Step::Finished } else { Step::Rotated })
    }

    fn read_lines(&self, meta: &std::fs::Metadata) -> std::io::Result<Step> {
        let len = meta.len();
        let want = (len - self.offset).min(self.max_read as u64) as usize;
        let mut data = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match self.file.read_at(&mut data[got..], self.offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        data.truncate(got);
        if let Some(last_lf) = data.iter().rposition(|b| *b == b'\n') {
            data.truncate(last_lf + 1);
            let end = self.offset + data.len() as u64;
            let check = last_bytes(&self.check, &data);
            let finished = end == len && inode_of(&self.log).is_some_and(|now| now != self.inode);
            return Ok(Step::Lines(Chunk {
                inode: self.inode,
                start: self.offset,
                end,
                data,
                check,
                skipped_overlong: false,
                finished,
            }));
        }
        if got == self.max_read {
            // A "line" longer than anything the collector writes: skip
            // what was read rather than stall behind it forever.
            let end = self.offset + got as u64;
            let check = last_bytes(&self.check, &data);
            return Ok(Step::Lines(Chunk {
                inode: self.inode,
                start: self.offset,
                end,
                data: Vec::new(),
                check,
                skipped_overlong: true,
                finished: false,
            }));
        }
        // Only a partial last line: wait for its LF.
        Ok(Step::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, s: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(s.as_bytes()).unwrap();
    }

    fn open(path: &Path, max: usize) -> Tail {
        Tail::new(path, File::open(path).unwrap(), 0, Vec::new(), max).unwrap()
    }

    fn consume(t: &mut Tail) -> (Vec<String>, Step) {
        let mut out = Vec::new();
        loop {
            match t.read().unwrap() {
                Step::Lines(c) => {
                    out.extend(c.lines().map(|l| String::from_utf8(l.to_vec()).unwrap()));
                    t.advance(&c);
                }
                other => return (out, other),
            }
        }
    }

    #[test]
    fn partial_lines_wait_for_their_lf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, "");
        let mut t = open(&p, 1 << 20);
        assert!(matches!(t.read().unwrap(), Step::Idle));
        append(&p, "a\nb");
        assert_eq!(consume(&mut t).0, ["a"]);
        append(&p, "c\n");
        assert_eq!(consume(&mut t).0, ["bc"]);
        assert_eq!(t.position().offset, 5);
    }

    #[test]
    fn a_renamed_file_is_finished_only_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, "old1\n");
        let mut t = open(&p, 1 << 20);
        assert_eq!(consume(&mut t).0, ["old1"]);
        std::fs::rename(&p, dir.path().join("x.json.1")).unwrap();
        append(&p, "new1\n");
        assert!(matches!(t.read().unwrap(), Step::Rotated), "not before the grace");
        // A late batch of the writer into the renamed file is still read.
        append(&dir.path().join("x.json.1"), "old2\n");
        assert_eq!(consume(&mut t).0, ["old2"]);
        std::thread::sleep(ROTATION_GRACE + Duration::from_millis(20));
        assert!(matches!(t.read().unwrap(), Step::Finished));
    }

    #[test]
    fn truncation_is_seen_even_after_the_file_grew_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, "aaaa\nbbbb\n");
        let mut t = open(&p, 1 << 20);
        assert_eq!(consume(&mut t).0.len(), 2);
        // Shorter than the position.
        std::fs::write(&p, "c\n").unwrap();
        assert!(matches!(t.read().unwrap(), Step::Truncated));
        // Truncated and refilled past the position: reading on at 10 would
        // hand out "xxxx" torn from the middle of a line.
        let mut t = open(&p, 1 << 20);
        assert_eq!(consume(&mut t).0, ["c"]);
        std::fs::write(&p, "").unwrap();
        append(&p, "0123456789xxxx\n");
        assert!(matches!(t.read().unwrap(), Step::Truncated));
    }

    #[test]
    fn check_bytes_follow_the_position() {
        let long = "y".repeat(100);
        assert_eq!(last_bytes(b"", format!("{long}\n").as_bytes()).len(), CHECK_LEN);
        assert_eq!(last_bytes(b"abc\n", b"de\n"), b"abc\nde\n");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, &format!("{long}\nz\n"));
        let mut t = open(&p, 1 << 20);
        consume(&mut t);
        assert!(holds(&File::open(&p).unwrap(), t.position().offset, t.check()).unwrap());
        assert!(t.check().ends_with(b"\nz\n"));
    }

    #[test]
    fn an_overlong_line_is_skipped_not_stalled_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        append(&p, &format!("{}\nok\n", "z".repeat(100)));
        let mut t = open(&p, 64);
        let Step::Lines(c) = t.read().unwrap() else { panic!("expected lines") };
        assert!(c.skipped_overlong);
        t.advance(&c);
        // The rest of the long line, then the next good one.
        let got = consume(&mut t).0;
        assert_eq!(got.last().map(String::as_str), Some("ok"));
    }
}
