//! Docker's log stream, turned into lines.
//!
//! `GET /containers/{id}/logs` answers in one of two formats:
//!
//! - **multiplexed** (container without a TTY): frames of an 8-byte header
//!   `[stream, 0, 0, 0, len: u32 BE]` then `len` bytes of output; stream 1
//!   is stdout, 2 stderr, 3 an error from the daemon itself;
//! - **raw** (container with a TTY): the bytes as they were written.
//!
//! With `timestamps=1` the daemon starts every log message with an
//! RFC 3339 timestamp and a space. Docker stores a line longer than 16 KiB
//! as several messages, each with its own timestamp and its own frame, only
//! the last ending in LF; so a timestamp is expected at the start of each
//! frame and after each LF, and a continuation's timestamp is dropped.
//!
//! Why hand-written and not a crate: the format is eight bytes of header
//! (documented in the Engine API under "Stream format"), and decoding it
//! here lets every bound be ours: a header claiming 4 GiB allocates
//! nothing (its bytes are streamed through, never collected), a line is
//! buffered up to `max_line` bytes; of a longer one those bytes are kept
//! (marked truncated) and the rest skipped to its LF and counted.
//!
//! The timestamps also make a **cursor**: the last line's time and how many
//! lines carried exactly that time. After a reconnect the follower asks for
//! `since=<cursor time>` (the daemon's `since` is inclusive) and the
//! decoder skips what the cursor already covers, so nothing is read twice.

use bytes::Bytes;

/// Longest timestamp token looked for (`2026-12-02T16:10:00.123456789+00:00` is 35).
const MAX_TS: usize = 40;

/// Where a container's log was read up to: `ts` in unix nanoseconds and
/// how many lines carried exactly that time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i128,
    pub count: u64,
}

impl Cursor {
    /// Start at `ts`: lines before it are skipped, none at it yet seen.
    pub fn at(ts: i128) -> Cursor {
        Cursor { ts, count: 0 }
    }

    /// The `since` query value: unix seconds with nine decimals.
    pub fn since_param(&self) -> String {
        let secs = self.ts.div_euclid(1_000_000_000);
        let nanos = self.ts.rem_euclid(1_000_000_000);
        format!("{secs}.{nanos:09}")
    }
}

/// One thing the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A complete line, without its LF (and CR), never empty.
    Line(Bytes),
    /// The first `max_line` bytes of a longer line (the rest skipped).
    Truncated(Bytes),
    /// A stream-3 frame: the daemon reports an error in the stream.
    DaemonError(String),
}

/// The stream is not the multiplexed format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a Docker stream frame header: {0:02x?}")]
pub struct BadHeader(pub [u8; 8]);

#[derive(Debug)]
pub struct LogDecoder {
    multiplexed: bool,
    max_line: usize,
    header: [u8; 8],
    header_have: usize,
    /// Payload bytes left in the current frame, and its stream.
    remaining: u32,
    stream: u8,
    daemon_error: Vec<u8>,
    /// The next bytes may be a timestamp token (`ts_token` holds it so far).
    want_ts: bool,
    ts_token: Vec<u8>,
    /// The line being assembled, its first timestamp, and whether it went over the limit.
    line: Vec<u8>,
    line_ts: Option<i128>,
    oversize: bool,
    resume: Cursor,
    skipped_at_resume: u64,
    /// Advanced past every line the decoder returned or skipped as oversize.
    pub cursor: Cursor,
}

fn parse_ts(token: &[u8]) -> Option<i128> {
    let s = std::str::from_utf8(token).ok()?;
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos())
}

impl LogDecoder {
    /// `multiplexed`: the container has no TTY. Lines the `resume` cursor
    /// covers are skipped.
    pub fn new(multiplexed: bool, max_line: usize, resume: Cursor) -> LogDecoder {
        LogDecoder {
            multiplexed,
            max_line,
            header: [0; 8],
            header_have: 0,
            remaining: 0,
            stream: 0,
            daemon_error: Vec::new(),
            want_ts: true,
            ts_token: Vec::with_capacity(MAX_TS),
            line: Vec::new(),
            line_ts: None,
            oversize: false,
            resume,
            skipped_at_resume: 0,
            cursor: resume,
        }
    }

    /// Decode the next bytes of the response body.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Item>) -> Result<(), BadHeader> {
        if !self.multiplexed {
            self.payload(data, out);
            return Ok(());
        }
        while !data.is_empty() {
            if self.remaining == 0 {
                let take = (8 - self.header_have).min(data.len());
                self.header[self.header_have..self.header_have + take].copy_from_slice(&data[..take]);
                self.header_have += take;
                data = &data[take..];
                if self.header_have < 8 {
                    return Ok(());
                }
                self.header_have = 0;
                if self.header[0] > 3 || self.header[1..4] != [0, 0, 0] {
                    return Err(BadHeader(self.header));
                }
                self.stream = self.header[0];
                self.remaining = u32::from_be_bytes([self.header[4], self.header[5], self.header[6], self.header[7]]);
                // Each message Docker sends is a frame of its own, with its own timestamp.
                self.want_ts = true;
                self.daemon_error.clear();
                continue;
            }
            let take = (self.remaining as usize).min(data.len());
            let (chunk, rest) = data.split_at(take);
            data = rest;
            self.remaining -= take as u32;
            match self.stream {
                1 | 2 => self.payload(chunk, out),
                3 => {
                    let room = 512usize.saturating_sub(self.daemon_error.len());
                    self.daemon_error.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if self.remaining == 0 {
                        out.push(Item::DaemonError(String::from_utf8_lossy(&self.daemon_error).trim().to_string()));
                    }
                }
                _ => {} // stdin: never asked for
            }
        }
        Ok(())
    }

    /// The body ended cleanly: a last line without LF is still a line.
    pub fn finish(&mut self, out: &mut Vec<Item>) {
        let token = std::mem::take(&mut self.ts_token);
        self.content(&token);
        if !self.line.is_empty() || self.oversize {
            self.end_line(out);
        }
    }

    fn payload(&mut self, mut data: &[u8], out: &mut Vec<Item>) {
        while !data.is_empty() {
            if !self.want_ts {
                match data.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        self.content(&data[..i]);
                        self.end_line(out);
                        data = &data[i + 1..];
                    }
                    None => {
                        self.content(data);
                        return;
                    }
                }
                continue;
            }
            match data.iter().position(|b| matches!(b, b' ' | b'\n')) {
                Some(i) if data[i] == b' ' && self.ts_token.len() + i <= MAX_TS => {
                    self.ts_token.extend_from_slice(&data[..i]);
                    self.want_ts = false;
                    let token = std::mem::take(&mut self.ts_token);
                    match parse_ts(&token) {
                        // A continuation's timestamp is dropped: the line keeps its first.
                        Some(ts) => {
                            self.line_ts.get_or_insert(ts);
                        }
                        None => {
                            self.content(&token);
                            self.content(b" ");
                        }
                    }
                    self.ts_token = token;
                    self.ts_token.clear();
                    data = &data[i + 1..];
                }
                Some(_) => self.not_a_timestamp(),
                None if self.ts_token.len() + data.len() > MAX_TS => self.not_a_timestamp(),
                None => {
                    self.ts_token.extend_from_slice(data);
                    return;
                }
            }
        }
    }

    /// What was taken for a timestamp is content after all.
    fn not_a_timestamp(&mut self) {
        self.want_ts = false;
        let token = std::mem::take(&mut self.ts_token);
        self.content(&token);
        self.ts_token = token;
        self.ts_token.clear();
    }

    /// Bytes of the current line (no LF in them).
    fn content(&mut self, data: &[u8]) {
        if self.oversize || data.is_empty() {
            return;
        }
        if self.line.len() + data.len() > self.max_line {
            // Keep the head, skip to the LF.
            let room = self.max_line - self.line.len();
            self.line.extend_from_slice(&data[..room]);
            self.oversize = true;
            return;
        }
        self.line.extend_from_slice(data);
    }

    fn end_line(&mut self, out: &mut Vec<Item>) {
        self.want_ts = true;
        let oversize = std::mem::take(&mut self.oversize);
        let mut line = std::mem::take(&mut self.line);
        if let Some(ts) = self.line_ts.take() {
            if self.already_read(ts) {
                return;
            }
            match ts.cmp(&self.cursor.ts) {
                std::cmp::Ordering::Greater => self.cursor = Cursor { ts, count: 1 },
                std::cmp::Ordering::Equal => self.cursor.count += 1,
                // A clock step back: keep the cursor where it is.
                std::cmp::Ordering::Less => {}
            }
        }
        if oversize {
            out.push(Item::Truncated(Bytes::from(line)));
            return;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.is_empty() {
            out.push(Item::Line(Bytes::from(line)));
        }
    }

    fn already_read(&mut self, ts: i128) -> bool {
        if ts < self.resume.ts {
            return true;
        }
        if ts == self.resume.ts && self.skipped_at_resume < self.resume.count {
            self.skipped_at_resume += 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-02T16:10:00.000000001Z";
    const T0_NS: i128 = 1_796_227_800_000_000_001;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn lines(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Line(l) => String::from_utf8_lossy(l).into_owned(),
                Item::Truncated(l) => format!("<cut>{}", String::from_utf8_lossy(l)),
                Item::DaemonError(e) => format!("<error {e}>"),
            })
            .collect()
    }

    fn decode_all(multiplexed: bool, max: usize, resume: Cursor, input: &[u8]) -> (Vec<String>, Cursor) {
        // Byte by byte and in one piece must agree.
        let mut whole = LogDecoder::new(multiplexed, max, resume);
        let mut out = Vec::new();
        whole.feed(input, &mut out).unwrap();
        whole.finish(&mut out);
        let mut split = LogDecoder::new(multiplexed, max, resume);
        let mut out2 = Vec::new();
        for b in input {
            split.feed(std::slice::from_ref(b), &mut out2).unwrap();
        }
        split.finish(&mut out2);
        assert_eq!(out, out2);
        assert_eq!(whole.cursor, split.cursor);
        (lines(&out), whole.cursor)
    }

    #[test]
    fn multiplexed_frames_with_timestamps() {
        let mut input = frame(1, format!("{T0} <1>1 first\n").as_bytes());
        input.extend(frame(2, b"2026-12-02T16:10:01Z on stderr\r\n"));
        input.extend(frame(3, b"error from daemon in stream: boom"));
        let (got, cursor) = decode_all(true, 100, Cursor::at(0), &input);
        assert_eq!(got, vec!["<1>1 first", "on stderr", "<error error from daemon in stream: boom>"]);
        assert_eq!(cursor, Cursor { ts: 1_796_227_801_000_000_000, count: 1 });
    }

    #[test]
    fn a_long_line_split_into_messages_is_one_line() {
        let mut input = frame(1, format!("{T0} part one,").as_bytes());
        input.extend(frame(1, b"2026-12-02T16:10:00.5Z  part two\n"));
        let (got, cursor) = decode_all(true, 100, Cursor::at(0), &input);
        assert_eq!(got, vec!["part one, part two"]);
        assert_eq!(cursor, Cursor { ts: T0_NS, count: 1 });
    }

    #[test]
    fn raw_tty_stream_and_lines_without_timestamps() {
        let input = format!("{T0} <1>1 tty line\r\nno timestamp here\nlast without lf");
        let (got, cursor) = decode_all(false, 100, Cursor::at(0), input.as_bytes());
        assert_eq!(got, vec!["<1>1 tty line", "no timestamp here", "last without lf"]);
        assert_eq!(cursor, Cursor { ts: T0_NS, count: 1 }, "lines without a timestamp do not move the cursor");
    }

    #[test]
    fn resume_skips_what_the_cursor_covers_including_equal_timestamps() {
        let input = format!("{T0} a\n{T0} b\n{T0} c\n2026-12-02T16:10:02Z d\n");
        let (got, cursor) = decode_all(false, 100, Cursor::at(0), input.as_bytes());
        assert_eq!(got, vec!["a", "b", "c", "d"]);
        // After reading a and b, a reconnect from their cursor yields c and d only.
        let (got, _) = decode_all(false, 100, Cursor { ts: T0_NS, count: 2 }, input.as_bytes());
        assert_eq!(got, vec!["c", "d"]);
        let (got, after) = decode_all(false, 100, cursor, input.as_bytes());
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(after, cursor);
        // Lines from before the collector started are not read.
        let (got, _) = decode_all(false, 100, Cursor::at(T0_NS + 1), input.as_bytes());
        assert_eq!(got, vec!["d"]);
    }

    #[test]
    fn oversize_lines_keep_their_head_and_skip_to_their_lf_without_buffering() {
        let big = "x".repeat(1000);
        let input = format!("{T0} {big}\n{T0} ok\n");
        let (got, cursor) = decode_all(false, 100, Cursor::at(0), input.as_bytes());
        assert_eq!(got, vec![format!("<cut>{}", &big[..100]), "ok".to_string()]);
        assert_eq!(cursor.count, 2, "a skipped line is still read");
        let mut d = LogDecoder::new(false, 100, Cursor::at(0));
        let mut out = Vec::new();
        d.feed(format!("{T0} {big}").as_bytes(), &mut out).unwrap();
        assert!(d.line.capacity() <= 100 + MAX_TS, "buffer kept: {}", d.line.capacity());
        // Exactly at the limit is a line.
        let at_limit = "y".repeat(100);
        let (got, _) = decode_all(false, 100, Cursor::at(0), format!("{at_limit}\n").as_bytes());
        assert_eq!(got, vec![at_limit]);
    }

    #[test]
    fn a_huge_length_header_allocates_nothing() {
        let mut d = LogDecoder::new(true, 64, Cursor::at(0));
        let mut out = Vec::new();
        d.feed(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], &mut out).unwrap();
        for _ in 0..100 {
            d.feed(&[0xfe; 4096], &mut out).unwrap();
        }
        assert!(d.line.capacity() <= 64 + MAX_TS);
        assert_eq!(d.remaining, u32::MAX - 409_600);
        d.feed(b"\n", &mut out).unwrap();
        assert_eq!(lines(&out), vec![format!("<cut>{}", "\u{fffd}".repeat(64))]);
    }

    #[test]
    fn a_bad_header_is_an_error() {
        let mut d = LogDecoder::new(true, 64, Cursor::at(0));
        let mut out = Vec::new();
        assert_eq!(d.feed(b"GET / HTTP/1.1\r\n", &mut out), Err(BadHeader(*b"GET / HT")));
        let mut d = LogDecoder::new(true, 64, Cursor::at(0));
        assert!(d.feed(&[9, 0, 0, 0, 0, 0, 0, 1, b'x'], &mut out).is_err());
    }

    #[test]
    fn since_param_has_nanoseconds() {
        assert_eq!(Cursor::at(T0_NS).since_param(), "1796227800.000000001");
        assert_eq!(Cursor::at(5).since_param(), "0.000000005");
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics_and_stays_bounded(
            multiplexed in proptest::bool::ANY,
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..20),
        ) {
            let mut d = LogDecoder::new(multiplexed, 32, Cursor::at(0));
            let mut out = Vec::new();
            for c in chunks {
                if d.feed(&c, &mut out).is_err() {
                    break;
                }
                proptest::prop_assert!(d.line.len() <= 32 && d.ts_token.len() <= MAX_TS);
            }
            d.finish(&mut out);
            for item in &out {
                if let Item::Line(l) = item {
                    proptest::prop_assert!(!l.is_empty() && l.len() <= 32 && !l.contains(&b'\n'));
                }
            }
        }
    }
}
