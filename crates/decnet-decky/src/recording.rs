//! Session recordings: one asciicast v2 file per shell session.
//!
//! Format (asciicast v2): a header line, a JSON object with `version` 2,
//! `width`, `height`, `timestamp` (Unix seconds of the session's start)
//! and `env` (`SHELL`, `TERM`); then one JSON array per event,
//! `[seconds_since_start, "o" | "i", "data"]` ("o" what the session sent,
//! "i" what the attacker typed). Data is UTF-8 (invalid bytes become
//! U+FFFD), escaped by serde_json, so no attacker byte can break a line.
//!
//! Bounded: the whole file is at most `limit` bytes. The event that would
//! cross it is replaced by one marker event (`"m"`, label
//! `recording truncated`) and nothing more is kept.
//!
//! Never blocks the session: events are buffered in memory (bounded as
//! above) and the file is written once, when the session finishes, on a
//! blocking thread ([`Recording::finish`] is plain `std::fs`; the session
//! calls it inside `spawn_blocking`). Files are created new with mode
//! 0600 in directories created 0700, never executable.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default bound of one recording (the whole file).
pub const DEFAULT_LIMIT: usize = 1024 * 1024;

/// Room kept for the header (its variable parts are bounded below).
const HEADER_RESERVE: usize = 512;
/// Room kept for the truncation marker.
const MARKER_RESERVE: usize = 96;
/// Longest `TERM` kept (the client names it).
const MAX_TERM_CHARS: usize = 64;

/// One session's recording, in memory until [`Recording::finish`].
#[derive(Debug)]
pub struct Recording {
    started: Instant,
    timestamp: i64,
    width: u32,
    height: u32,
    shell: String,
    term: String,
    events: Vec<u8>,
    limit: usize,
    truncated: bool,
}

/// What was written: for the `session_recorded` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

impl Recording {
    pub fn new(shell: &str, limit: usize) -> Recording {
        Recording {
            started: Instant::now(),
            timestamp: time::OffsetDateTime::now_utc().unix_timestamp(),
            width: 80,
            height: 24,
            shell: shell.chars().take(MAX_TERM_CHARS).collect(),
            term: "xterm".into(),
            events: Vec::new(),
            limit: limit.max(HEADER_RESERVE + MARKER_RESERVE),
            truncated: false,
        }
    }

    /// The terminal the client asked for (SSH `pty-req`). Sizes are
    /// clamped so a hostile value cannot make a player allocate absurdly.
    pub fn terminal(&mut self, term: &str, width: u32, height: u32) {
        let term: String = term.chars().filter(|c| !c.is_control()).take(MAX_TERM_CHARS).collect();
        if !term.is_empty() {
            self.term = term;
        }
        if width > 0 {
            self.width = width.min(1000);
        }
        if height > 0 {
            self.height = height.min(1000);
        }
    }

    /// Whether anything was recorded (an empty session leaves no file).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn output(&mut self, data: &[u8]) {
        self.push_at(self.started.elapsed(), "o", data);
    }

    pub fn input(&mut self, data: &[u8]) {
        self.push_at(self.started.elapsed(), "i", data);
    }

    /// One event at `at` after the start (times come from a monotonic
    /// clock, so they never go back).
    fn push_at(&mut self, at: Duration, kind: &str, data: &[u8]) {
        if self.truncated || data.is_empty() {
            return;
        }
        let seconds = at.as_micros() as f64 / 1e6;
        let line = event_line(seconds, kind, &String::from_utf8_lossy(data));
        if HEADER_RESERVE + self.events.len() + line.len() + MARKER_RESERVE > self.limit {
            self.truncated = true;
            self.events.extend_from_slice(event_line(seconds, "m", "recording truncated").as_bytes());
            return;
        }
        self.events.extend_from_slice(line.as_bytes());
    }

    /// The whole file: header then events.
    pub fn contents(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "version": 2,
            "width": self.width,
            "height": self.height,
            "timestamp": self.timestamp,
            "env": { "SHELL": self.shell, "TERM": self.term },
        });
        let mut out = header.to_string().into_bytes();
        out.push(b'\n');
        out.extend_from_slice(&self.events);
        out
    }

    /// Write `<dir>/<decky>/<sid>.cast` (blocking: call off the async
    /// threads). The file must not exist yet: a recording never
    /// overwrites another.
    pub fn finish(&self, dir: &Path, decky: &str, sid: &str) -> std::io::Result<Written> {
        let folder = dir.join(path_component(decky));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder)?;
        let path = folder.join(format!("{}.cast", path_component(sid)));
        let contents = self.contents();
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        file.write_all(&contents)?;
        file.sync_all()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &contents);
        let sha256 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Written { path, bytes: contents.len() as u64, sha256 })
    }
}

fn event_line(seconds: f64, kind: &str, data: &str) -> String {
    let mut line = serde_json::json!([seconds, kind, data]).to_string();
    line.push('\n');
    line
}

/// A name safe as one path component: decky names come from the operator
/// and sids from us, but neither may climb out of the recordings folder.
fn path_component(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if safe.is_empty() || safe.starts_with('.') {
        format!("_{safe}")
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    #[test]
    fn writes_asciicast_v2_line_by_line() {
        let mut r = Recording::new("/bin/bash", DEFAULT_LIMIT);
        r.terminal("xterm-256color", 132, 43);
        r.push_at(Duration::from_millis(5), "o", b"root@web:~# ");
        r.push_at(Duration::from_millis(900), "i", b"echo \"hi\"\n\x1b]0;\x07");
        r.push_at(Duration::from_millis(901), "o", b"hi\r\n\xff");
        let parsed = lines(&r.contents());
        let header = &parsed[0];
        assert_eq!(header["version"], 2);
        assert_eq!(header["width"], 132);
        assert_eq!(header["height"], 43);
        assert!(header["timestamp"].as_i64().unwrap() > 1_600_000_000);
        assert_eq!(header["env"]["SHELL"], "/bin/bash");
        assert_eq!(header["env"]["TERM"], "xterm-256color");
        assert_eq!(parsed[1], serde_json::json!([0.005, "o", "root@web:~# "]));
        assert_eq!(parsed[2], serde_json::json!([0.9, "i", "echo \"hi\"\n\u{1b}]0;\u{7}"]));
        assert_eq!(parsed[3], serde_json::json!([0.901, "o", "hi\r\n\u{fffd}"]));
        assert_eq!(parsed.len(), 4);
    }

    #[test]
    fn timing_is_monotonic_with_the_real_clock() {
        let mut r = Recording::new("/bin/sh", DEFAULT_LIMIT);
        for i in 0..200u32 {
            r.output(format!("line {i}\r\n").as_bytes());
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let times: Vec<f64> = lines(&r.contents())[1..].iter().map(|e| e[0].as_f64().unwrap()).collect();
        assert_eq!(times.len(), 200);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(times[199] >= 0.006, "{}", times[199]);
    }

    #[test]
    fn the_bound_holds_and_ends_with_one_marker() {
        let limit = 4096;
        let mut r = Recording::new("/bin/bash", limit);
        r.terminal(&"x".repeat(10_000), u32::MAX, u32::MAX);
        for i in 0..1000u64 {
            r.push_at(Duration::from_millis(i), "o", &[b'"'; 100]);
        }
        let contents = r.contents();
        assert!(contents.len() <= limit, "{} > {limit}", contents.len());
        let parsed = lines(&contents);
        assert_eq!(parsed[0]["width"], 1000);
        let last = parsed.last().unwrap();
        assert_eq!(last[1], "m");
        assert_eq!(last[2], "recording truncated");
        assert_eq!(parsed.iter().filter(|e| e[1] == "m").count(), 1);
        // Everything before the marker is whole output.
        assert!(parsed.len() > 10);
        assert!(parsed[1..parsed.len() - 1].iter().all(|e| e[1] == "o" && e[2].as_str().unwrap().len() == 100));
    }

    #[test]
    fn the_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recording::new("/bin/bash", DEFAULT_LIMIT);
        r.output(b"hello");
        let written = r.finish(&dir.path().join("recordings"), "../evil/decky", "abc123").unwrap();
        assert_eq!(written.path, dir.path().join("recordings/_.._evil_decky/abc123.cast"));
        let contents = std::fs::read(&written.path).unwrap();
        assert_eq!(written.bytes, contents.len() as u64);
        let digest = ring::digest::digest(&ring::digest::SHA256, &contents);
        assert_eq!(written.sha256, digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&written.path), 0o600);
        assert_eq!(mode(written.path.parent().unwrap()), 0o700);
        let again = r.finish(&dir.path().join("recordings"), "../evil/decky", "abc123");
        assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    }
}
