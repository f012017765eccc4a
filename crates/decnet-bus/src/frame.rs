//! The wire frame (SPEC §2), shared by the daemon and every client.
//!
//! ```text
//! <VERB>[ <args>]\n      ASCII header line, LF-terminated (CR before LF tolerated)
//! <u32 BE length>
//! <body bytes>           UTF-8 JSON object, or empty
//! ```
//!
//! Decoding works on a `BytesMut` that the connection fills from the socket:
//! [`Frame::parse`] either consumes one whole frame or leaves the buffer
//! untouched and asks for more bytes. The body is split off the read buffer
//! (`split_to(..).freeze()`), so it is never copied after the socket read.
//!
//! Encoding refuses exactly what decoding refuses, so a frame we send can
//! never be one a peer (or we) would reject as hostile.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Longest header line accepted, including the terminating LF.
pub const MAX_HEADER_LEN: usize = 4096;
/// Largest body of any frame, in either direction (1 MiB, SPEC §2): every
/// client enforces it on what it receives, so the daemon never sends an
/// EVT whose envelope is larger (the PUB is refused instead).
pub const MAX_BODY_LEN: usize = 1_048_576;

/// The verbs of the protocol. Anything else on the wire is hostile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Hello,
    Pub,
    Sub,
    Unsub,
    Evt,
    Bye,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Hello => "HELLO",
            Verb::Pub => "PUB",
            Verb::Sub => "SUB",
            Verb::Unsub => "UNSUB",
            Verb::Evt => "EVT",
            Verb::Bye => "BYE",
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Verb> {
        Some(match b {
            b"HELLO" => Verb::Hello,
            b"PUB" => Verb::Pub,
            b"SUB" => Verb::Sub,
            b"UNSUB" => Verb::Unsub,
            b"EVT" => Verb::Evt,
            b"BYE" => Verb::Bye,
            _ => return None,
        })
    }

    /// Largest body this verb may carry: [`MAX_BODY_LEN`] for every verb,
    /// the server's EVT included.
    pub fn max_body_len(self) -> usize {
        MAX_BODY_LEN
    }

    /// Verbs whose argument (a topic or pattern) is mandatory.
    pub fn requires_arg(self) -> bool {
        matches!(self, Verb::Pub | Verb::Sub | Verb::Unsub | Verb::Evt)
    }
}

impl FrameError {
    /// A PUB the daemon refuses although it is well-formed: valid JSON that
    /// subscribers could not read, or an envelope over the frame limit.
    /// The publisher may be a well-meaning worker (Python's `json.dumps`
    /// writes `10**400` as digits), so it is told why in its BYE.
    pub fn is_refused_publish(&self) -> bool {
        matches!(self, FrameError::Unportable(_) | FrameError::EnvelopeTooLarge(_))
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame was refused. The `Display` text is what the daemon logs as
/// the reason when it closes a hostile connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty header line")]
    EmptyHeader,
    #[error("header line longer than {MAX_HEADER_LEN} bytes")]
    HeaderTooLong,
    #[error("non-ASCII byte in header line")]
    NonAsciiHeader,
    #[error("unknown verb {0:?}")]
    UnknownVerb(String),
    #[error("{0} without an argument")]
    MissingArgument(Verb),
    #[error("body of {0} bytes exceeds the {1}-byte limit")]
    BodyTooLarge(usize, usize),
    #[error("body is not valid UTF-8 JSON: {0}")]
    InvalidJson(String),
    #[error("body is not a JSON object")]
    BodyNotObject,
    #[error("\"payload\" is not a JSON object")]
    PayloadNotObject,
    #[error("body is JSON that DECNET's Python clients cannot parse: {0}")]
    Unportable(#[from] crate::json_portable::Unportable),
    #[error("the event envelope would be {0} bytes, over the {MAX_BODY_LEN}-byte frame limit every client enforces")]
    EnvelopeTooLarge(usize),
    #[error("line break inside a header argument")]
    LineBreakInHeader,
    #[error("connection closed mid-frame")]
    Truncated,
}

/// One decoded frame. `arg` is the trimmed text after the verb ("" when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub verb: Verb,
    pub arg: String,
    pub body: Bytes,
}

impl Frame {
    pub fn new(verb: Verb, arg: impl Into<String>, body: impl Into<Bytes>) -> Frame {
        Frame { verb, arg: arg.into(), body: body.into() }
    }

    /// Try to take one whole frame off the front of `buf`.
    ///
    /// `Ok(None)` means "need more bytes" and leaves `buf` untouched; an
    /// error means the peer is hostile and the connection should be closed.
    /// Limits are enforced as soon as they can be known, so a peer can never
    /// make us buffer more than one header plus one maximum body.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        Ok(RawFrame::parse(buf)?.map(|raw| Frame { verb: raw.verb, arg: raw.arg().to_owned(), body: raw.body }))
    }

    /// Append this frame's bytes to `dst`, refusing anything `parse` would refuse.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(self.verb, &self.arg, &self.body, dst)
    }

    /// Check that the body is empty or a JSON object (SPEC §2).
    pub fn check_body(&self) -> Result<(), FrameError> {
        check_json_object(&self.body)
    }
}

/// A decoded frame whose argument still lives in the read buffer: the
/// hot paths (daemon reader, client reader) parse with this so a frame
/// costs no allocation, only reference-count bumps on the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub verb: Verb,
    /// Trimmed argument bytes, checked ASCII by the parser.
    arg: Bytes,
    pub body: Bytes,
}

impl RawFrame {
    /// Same contract as [`Frame::parse`].
    pub fn parse(buf: &mut BytesMut) -> Result<Option<RawFrame>, FrameError> {
        match FrameSpan::scan(buf)? {
            Scan::Frame(span) => {
                let whole = buf.split_to(span.len).freeze();
                Ok(Some(RawFrame { verb: span.verb, arg: whole.slice(span.arg), body: whole.slice(span.body) }))
            }
            Scan::Incomplete { needed } => {
                // Reserve now so the socket read lands the whole body in one buffer.
                buf.reserve(needed.saturating_sub(buf.len()));
                Ok(None)
            }
        }
    }

    /// The trimmed argument ("" when none).
    pub fn arg(&self) -> &str {
        // The parser refused any non-ASCII header byte, so this never fails.
        std::str::from_utf8(&self.arg).unwrap_or_default()
    }
}

/// Where the first whole frame of a buffer lies, found without copying or
/// touching reference counts: the daemon's reader parses a whole read's
/// worth of frames straight out of its buffer with this and advances the
/// buffer once, instead of splitting off a shared `Bytes` per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpan {
    pub verb: Verb,
    /// The trimmed argument, as a range of the scanned slice.
    pub arg: std::ops::Range<usize>,
    /// The body, as a range of the scanned slice.
    pub body: std::ops::Range<usize>,
    /// Bytes the whole frame takes.
    pub len: usize,
}

/// Outcome of [`FrameSpan::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Frame(FrameSpan),
    /// Not a whole frame yet; `needed` is the buffer length the frame will
    /// take once known (0 while the header is incomplete).
    Incomplete {
        needed: usize,
    },
}

impl FrameSpan {
    /// Find the first frame of `buf`, enforcing every limit of SPEC §2 as
    /// soon as it can be known (same contract as [`Frame::parse`]).
    pub fn scan(buf: &[u8]) -> Result<Scan, FrameError> {
        let scan = &buf[..buf.len().min(MAX_HEADER_LEN)];
        let Some(lf) = memchr_lf(scan) else {
            if buf.len() >= MAX_HEADER_LEN {
                return Err(FrameError::HeaderTooLong);
            }
            // Refuse non-ASCII early rather than waiting for the LF.
            if !buf.is_ascii() {
                return Err(FrameError::NonAsciiHeader);
            }
            return Ok(Scan::Incomplete { needed: 0 });
        };
        let (verb, arg) = parse_header(&buf[..lf])?;
        let after_header = lf + 1;
        if buf.len() < after_header + 4 {
            return Ok(Scan::Incomplete { needed: 0 });
        }
        let len_bytes = &buf[after_header..after_header + 4];
        let body_len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        if body_len > verb.max_body_len() {
            return Err(FrameError::BodyTooLarge(body_len, verb.max_body_len()));
        }
        let len = after_header + 4 + body_len;
        if buf.len() < len {
            return Ok(Scan::Incomplete { needed: len });
        }
        Ok(Scan::Frame(FrameSpan { verb, arg, body: after_header + 4..len, len }))
    }

    /// The argument as text; the scan refused any non-ASCII header byte.
    pub fn arg_str<'a>(&self, buf: &'a [u8]) -> &'a str {
        std::str::from_utf8(&buf[self.arg.clone()]).unwrap_or_default()
    }
}

/// Encode a frame from its parts without building a [`Frame`] first.
pub fn encode_frame(verb: Verb, arg: &str, body: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
    let arg = arg.trim();
    if verb.requires_arg() && arg.is_empty() {
        return Err(FrameError::MissingArgument(verb));
    }
    if !arg.is_ascii() {
        return Err(FrameError::NonAsciiHeader);
    }
    if arg.bytes().any(|b| b == b'\n' || b == b'\r') {
        return Err(FrameError::LineBreakInHeader);
    }
    let header_len = verb.as_str().len() + if arg.is_empty() { 0 } else { 1 + arg.len() } + 1;
    if header_len > MAX_HEADER_LEN {
        return Err(FrameError::HeaderTooLong);
    }
    if body.len() > verb.max_body_len() {
        return Err(FrameError::BodyTooLarge(body.len(), verb.max_body_len()));
    }
    dst.reserve(header_len + 4 + body.len());
    dst.put_slice(verb.as_str().as_bytes());
    if !arg.is_empty() {
        dst.put_u8(b' ');
        dst.put_slice(arg.as_bytes());
    }
    dst.put_u8(b'\n');
    dst.put_u32(body.len() as u32);
    dst.put_slice(body);
    Ok(())
}

/// Empty, or a JSON object. Used for every body the daemon accepts.
pub fn check_json_object(body: &[u8]) -> Result<(), FrameError> {
    if body.is_empty() {
        return Ok(());
    }
    // serde_json checks syntax without building a tree when asked for
    // `IgnoredAny`, but skips UTF-8 checks inside ignored strings, hence the
    // explicit check. The first significant byte tells object-ness.
    std::str::from_utf8(body).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(FrameError::BodyNotObject),
    }
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

/// The verb and the byte range of the trimmed argument within `line`.
fn parse_header(line: &[u8]) -> Result<(Verb, std::ops::Range<usize>), FrameError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.is_ascii() {
        return Err(FrameError::NonAsciiHeader);
    }
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(FrameError::EmptyHeader);
    }
    let (verb_bytes, rest_start) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], i + 1),
        None => (line, line.len()),
    };
    let verb = Verb::from_bytes(verb_bytes)
        .ok_or_else(|| FrameError::UnknownVerb(String::from_utf8_lossy(verb_bytes).into_owned()))?;
    // Trim exactly what `str::trim` trims (on ASCII that includes \x0B,
    // which `u8::is_ascii_whitespace` does not).
    let blank = |b: u8| char::from(b).is_whitespace();
    let mut start = rest_start;
    let mut end = line.len();
    while start < end && blank(line[start]) {
        start += 1;
    }
    while end > start && blank(line[end - 1]) {
        end -= 1;
    }
    if verb.requires_arg() && start == end {
        return Err(FrameError::MissingArgument(verb));
    }
    Ok((verb, start..end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        Frame::parse(&mut BytesMut::from(bytes))
    }

    #[test]
    fn round_trip_pub() {
        let f = Frame::new(Verb::Pub, "decky.d1.state", &br#"{"type":"state"}"#[..]);
        let mut buf = BytesMut::new();
        f.encode(&mut buf).unwrap();
        assert_eq!(&buf[..19], b"PUB decky.d1.state\n");
        assert_eq!(&buf[19..23], &16u32.to_be_bytes());
        assert_eq!(parse_all(&buf).unwrap(), Some(f));
    }

    #[test]
    fn crlf_and_trimmed_args_are_tolerated() {
        let mut buf = BytesMut::from(&b"SUB   a.*  \r\n\0\0\0\0"[..]);
        let f = Frame::parse(&mut buf).unwrap().unwrap();
        assert_eq!((f.verb, f.arg.as_str()), (Verb::Sub, "a.*"));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_input_asks_for_more_and_leaves_buffer() {
        let full = b"PUB a.b\n\0\0\0\x02{}";
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(Frame::parse(&mut buf).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert_eq!(parse_all(b"\n\0\0\0\0"), Err(FrameError::EmptyHeader));
        assert_eq!(parse_all(b"  \r\n\0\0\0\0"), Err(FrameError::EmptyHeader));
        assert_eq!(parse_all(b"NOPE x\n"), Err(FrameError::UnknownVerb("NOPE".into())));
        assert_eq!(parse_all(b"pub a\n"), Err(FrameError::UnknownVerb("pub".into())));
        assert_eq!(parse_all(b"PUB\n"), Err(FrameError::MissingArgument(Verb::Pub)));
        assert_eq!(parse_all(b"SUB  \n"), Err(FrameError::MissingArgument(Verb::Sub)));
        assert_eq!(parse_all("PUB caf\u{e9}\n".as_bytes()), Err(FrameError::NonAsciiHeader));
        assert_eq!(parse_all("PUB caf\u{e9}".as_bytes()), Err(FrameError::NonAsciiHeader));
        let long = vec![b'A'; MAX_HEADER_LEN];
        assert_eq!(parse_all(&long), Err(FrameError::HeaderTooLong));
    }

    #[test]
    fn header_of_exactly_the_limit_is_accepted() {
        let arg = "a".repeat(MAX_HEADER_LEN - "PUB \n".len());
        let mut buf = BytesMut::new();
        encode_frame(Verb::Pub, &arg, b"", &mut buf).unwrap();
        assert!(parse_all(&buf).unwrap().is_some());
        let mut buf = BytesMut::new();
        assert_eq!(encode_frame(Verb::Pub, &format!("{arg}a"), b"", &mut buf), Err(FrameError::HeaderTooLong));
    }

    #[test]
    fn oversize_body_is_refused_before_it_arrives() {
        let mut b = b"PUB a\n".to_vec();
        b.extend_from_slice(&((MAX_BODY_LEN as u32) + 1).to_be_bytes());
        assert_eq!(parse_all(&b), Err(FrameError::BodyTooLarge(MAX_BODY_LEN + 1, MAX_BODY_LEN)));
        let mut buf = BytesMut::new();
        let big = vec![b' '; MAX_BODY_LEN + 1];
        assert_eq!(
            encode_frame(Verb::Pub, "a", &big, &mut buf),
            Err(FrameError::BodyTooLarge(MAX_BODY_LEN + 1, MAX_BODY_LEN))
        );
    }

    #[test]
    fn evt_bodies_have_the_same_limit() {
        // SPEC §2: every frame, the server's EVT included, is at most 1 MiB.
        let mut buf = BytesMut::new();
        encode_frame(Verb::Evt, "a", &vec![b' '; MAX_BODY_LEN], &mut buf).unwrap();
        assert_eq!(parse_all(&buf).unwrap().unwrap().body.len(), MAX_BODY_LEN);
        let mut buf = BytesMut::new();
        let over = vec![b' '; MAX_BODY_LEN + 1];
        assert_eq!(
            encode_frame(Verb::Evt, "a", &over, &mut buf),
            Err(FrameError::BodyTooLarge(MAX_BODY_LEN + 1, MAX_BODY_LEN))
        );
        for verb in ["EVT a", "PUB a", "SUB a", "HELLO x"] {
            let mut b = format!("{verb}\n").into_bytes();
            b.extend_from_slice(&((MAX_BODY_LEN as u32) + 1).to_be_bytes());
            assert!(matches!(parse_all(&b), Err(FrameError::BodyTooLarge(_, MAX_BODY_LEN))), "{verb}");
        }
    }

    #[test]
    fn encode_refuses_missing_args_and_line_breaks() {
        let mut buf = BytesMut::new();
        assert!(encode_frame(Verb::Sub, " ", b"", &mut buf).is_err());
        assert!(encode_frame(Verb::Pub, "a\nb", b"", &mut buf).is_err());
        assert!(encode_frame(Verb::Pub, "caf\u{e9}", b"", &mut buf).is_err());
        assert!(buf.is_empty());
        encode_frame(Verb::Bye, "", b"", &mut buf).unwrap();
        assert_eq!(&buf[..], b"BYE\n\0\0\0\0");
    }

    #[test]
    fn body_must_be_empty_or_object() {
        assert!(check_json_object(b"").is_ok());
        assert!(check_json_object(b" {\"a\":1} ").is_ok());
        assert_eq!(check_json_object(b"[1]"), Err(FrameError::BodyNotObject));
        assert_eq!(check_json_object(b"\"x\""), Err(FrameError::BodyNotObject));
        assert!(matches!(check_json_object(b"{"), Err(FrameError::InvalidJson(_))));
        assert!(matches!(check_json_object(b"\xff"), Err(FrameError::InvalidJson(_))));
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(arg in "[a-z0-9.*>_-]{1,64}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::new();
            encode_frame(Verb::Evt, &arg, &body, &mut buf).unwrap();
            let f = Frame::parse(&mut buf).unwrap().unwrap();
            prop_assert_eq!(f.arg, arg);
            prop_assert_eq!(&f.body[..], &body[..]);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_all(&bytes);
        }
    }
}
