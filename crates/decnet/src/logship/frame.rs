//! RFC 5425 framing (`MSG-LEN SP SYSLOG-MSG`, octet counting) and the two
//! messages of our own that ride beside it.
//!
//! - forwarder → listener: frames. A frame whose message starts with
//!   `#decnet-pos ` is a position marker (`#decnet-pos <inode> <offset>`:
//!   the next line starts at that offset of that file); a real syslog
//!   message starts with `<PRI>`, so the two cannot be confused.
//! - listener → forwarder: LF-terminated ASCII lines, `RESUME <inode>
//!   <offset>` once after the handshake and `ACK <inode> <offset>` after
//!   each durable append. RFC 5425 has no acknowledgement; without one a
//!   forwarder cannot know what a crashed master kept.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Largest message accepted (the bus's body limit; a syslog line is far smaller).
pub const MAX_MSG: usize = 1 << 20;
pub const POS_PREFIX: &str = "#decnet-pos ";

pub fn encode(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// Read one frame; `Ok(None)` on a clean EOF between frames.
pub async fn read_frame<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut len = 0usize;
    let mut digits = 0;
    loop {
        let mut b = [0u8; 1];
        if r.read(&mut b).await? == 0 {
            if digits == 0 {
                return Ok(None);
            }
            return Err(bad("connection closed inside a frame header"));
        }
        match b[0] {
            b' ' if digits > 0 => break,
            d @ b'0'..=b'9' if digits < 8 && !(digits == 0 && d == b'0') => {
                len = len * 10 + (d - b'0') as usize;
                digits += 1;
            }
            _ => return Err(bad("malformed RFC 5425 frame length")),
        }
    }
    if len > MAX_MSG {
        return Err(bad("frame over the 1 MiB limit"));
    }
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

/// `Some((inode, offset))` for a position marker.
pub fn parse_pos(msg: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(msg).ok()?.strip_prefix(POS_PREFIX)?;
    let (inode, offset) = text.split_once(' ')?;
    Some((inode.parse().ok()?, offset.parse().ok()?))
}

/// Read one `<WORD> <inode> <offset>` control line.
pub async fn read_control<R: AsyncBufRead + Unpin>(r: &mut R, word: &str) -> std::io::Result<Option<(u64, u64)>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let parsed = line.trim_end().strip_prefix(word).and_then(|rest| rest.strip_prefix(' ')).and_then(|rest| {
        let (a, b) = rest.split_once(' ')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    });
    parsed.map(Some).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("expected {word}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_fail() {
        let mut buf = Vec::new();
        encode(b"<134>1 - - - - - hi", &mut buf);
        encode(b"", &mut buf);
        encode(b"#decnet-pos 12 34", &mut buf);
        let mut r = tokio::io::BufReader::new(&buf[..]);
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"<134>1 - - - - - hi");
        assert!(read_frame(&mut r).await.is_err(), "a zero length has no leading-zero-free form: refused");
        for bad in [&b"x 1"[..], b"01 a", b"123456789 a", b"5 ab"] {
            let mut r = tokio::io::BufReader::new(bad);
            assert!(read_frame(&mut r).await.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_pos(b"#decnet-pos 12 34"), Some((12, 34)));
        assert_eq!(parse_pos(b"<134>1 #decnet-pos 1 2"), None);
        let mut r = tokio::io::BufReader::new(&b"ACK 5 6\nNOPE\n"[..]);
        assert_eq!(read_control(&mut r, "ACK").await.unwrap(), Some((5, 6)));
        assert!(read_control(&mut r, "ACK").await.is_err());
    }

    /// Read frames off `input` until EOF or the first error: what the
    /// listener does with one connection's bytes (`read_frame` never waits
    /// on an in-memory reader, so each call completes at once).
    fn drain(input: &[u8]) -> Vec<Vec<u8>> {
        use futures_util::FutureExt as _;
        let mut r = tokio::io::BufReader::new(input);
        let mut frames = Vec::new();
        // Each frame consumes at least two bytes: at most len/2 + 1 calls.
        for _ in 0..=input.len() / 2 + 1 {
            match read_frame(&mut r).now_or_never().expect("an in-memory read never waits") {
                Ok(Some(f)) => frames.push(f),
                Ok(None) | Err(_) => return frames,
            }
        }
        panic!("read_frame made no progress on {input:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Fuzz target: any bytes → no panic, frames within the limit, never
        /// more bytes out than in, and the loop ends.
        #[test]
        fn any_bytes_decode_without_panic_and_bounded(input in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let frames = drain(&input);
            proptest::prop_assert!(frames.iter().map(|f| f.len()).sum::<usize>() <= input.len());
            for f in &frames {
                let _ = parse_pos(f);
            }
        }

        /// Near-valid input: real frames with lying lengths, cut anywhere,
        /// control lines with junk. What was whole comes back exactly.
        #[test]
        fn lying_lengths_and_cut_frames(
            msgs in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..40), 0..8),
            lie in proptest::option::of((0usize..8, 0usize..99_999_999)),
            cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
            control in "\\PC{0,30}",
        ) {
            let mut buf = Vec::new();
            for m in &msgs {
                encode(m, &mut buf);
            }
            if let Some((which, len)) = lie.filter(|(w, _)| *w < msgs.len()) {
                // Rewrite one frame's header to claim `len` bytes.
                let start: usize = msgs[..which].iter().map(|m| m.len().to_string().len() + 1 + m.len()).sum();
                let old = msgs[which].len().to_string().len();
                buf.splice(start..start + old, len.to_string().into_bytes());
            }
            let whole = buf.len();
            if let Some(at) = cut {
                buf.truncate(at.index(whole + 1));
            }
            let frames = drain(&buf);
            proptest::prop_assert!(frames.len() <= msgs.len() + 1);
            if lie.is_none() && cut.is_none() {
                proptest::prop_assert_eq!(&frames, &msgs);
            }
            let mut r = tokio::io::BufReader::new(control.as_bytes());
            use futures_util::FutureExt as _;
            let _ = read_control(&mut r, "ACK").now_or_never().expect("never waits");
        }
    }
}
