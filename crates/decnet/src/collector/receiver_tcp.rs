//! Syslog over TCP: RFC 6587 octet counting (`<len> <line>`, what native
//! deckies and rsyslog's `TCP_Framing="octet-counted"` send), with the
//! LF-terminated framing most other senders use as a fallback. The framing
//! is chosen per frame: one that starts with digits and a space is octet
//! counted, anything else runs to the next LF.
//!
//! Every connection is hostile until proven otherwise, so each one is
//! bounded: its buffer never holds more than one line of at most
//! `max_line` bytes (of a longer frame the first `max_line` bytes are kept,
//! marked truncated, and the rest skipped as it streams in, never
//! buffered); it is closed after `idle` without data; the
//! number of connections is capped in total and per source address. Only
//! senders in `--allow` are accepted at all (see [`super::access`]). Each
//! line first waits for room in its source's share of the queue's memory
//! budget ([`super::budget`]), then goes to the pipeline through the shared
//! bounded queue with `send().await`: a flooding connection waits its turn,
//! and TCP backpressure slows the flooder, not the others.
//!
//! The connection handling ([`serve`]) is shared with the UNIX socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::access::{Networks, Transport};
use super::budget::ByteBudget;
use super::stats::Stats;
use super::Incoming;

/// What every receiver task shares: the queue, its memory budget, the
/// counters and the shutdown signal.
#[derive(Clone)]
pub struct Shared {
    pub queue: mpsc::Sender<Incoming>,
    pub budget: Arc<ByteBudget>,
    pub stats: Arc<Stats>,
    pub shutdown: CancellationToken,
}

/// Longest length prefix accepted as octet counting (9 digits, < 1 GB).
const MAX_LEN_DIGITS: usize = 9;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// One unit the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Line(Bytes),
    /// The first `max_line` bytes of a longer frame (the rest is skipped).
    Truncated(Bytes),
}

#[derive(Debug)]
enum Skip {
    None,
    /// Bytes of an oversize octet-counted frame still to discard.
    Octets(usize),
    /// Discard through the next LF (an oversize LF-framed line).
    ToLf,
}

/// Splits a byte stream into syslog frames (see the module docs).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_line: usize,
    skip: Skip,
}

impl FrameDecoder {
    pub fn new(max_line: usize) -> Self {
        FrameDecoder { buf: BytesMut::with_capacity(READ_CHUNK), max_line, skip: Skip::None }
    }

    /// Buffer for the next read; never grows past one line plus a chunk.
    pub fn buffer(&mut self) -> &mut BytesMut {
        self.buf.reserve(READ_CHUNK);
        &mut self.buf
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.skip {
                Skip::Octets(n) => {
                    let take = n.min(self.buf.len());
                    self.buf.advance(take);
                    if take < n {
                        self.skip = Skip::Octets(n - take);
                        return None;
                    }
                    self.skip = Skip::None;
                }
                Skip::ToLf => match memchr(b'\n', &self.buf) {
                    Some(i) => {
                        self.buf.advance(i + 1);
                        self.skip = Skip::None;
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                },
                Skip::None => {}
            }
            // Separators some senders put between frames.
            let lead = self.buf.iter().take_while(|b| matches!(b, b'\n' | b'\r' | b'\0')).count();
            self.buf.advance(lead);
            if self.buf.is_empty() {
                return None;
            }
            let digits = self.buf.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 && digits <= MAX_LEN_DIGITS {
                match self.buf.get(digits) {
                    // Need more bytes to know which framing this is.
                    None => return None,
                    Some(b' ') => {
                        let len: usize = std::str::from_utf8(&self.buf[..digits])
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .expect("ASCII digits, at most 9");
                        if len > self.max_line {
                            if self.buf.len() < digits + 1 + self.max_line {
                                return None;
                            }
                            self.buf.advance(digits + 1);
                            let head = self.buf.split_to(self.max_line).freeze();
                            self.skip = Skip::Octets(len - self.max_line);
                            return Some(Frame::Truncated(head));
                        }
                        if self.buf.len() < digits + 1 + len {
                            return None;
                        }
                        self.buf.advance(digits + 1);
                        let mut line = self.buf.split_to(len).freeze();
                        while line.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                            line.truncate(line.len() - 1);
                        }
                        if line.is_empty() {
                            continue;
                        }
                        return Some(Frame::Line(line));
                    }
                    // Digits then something else: an LF-framed line.
                    Some(_) => {}
                }
            }
            match memchr(b'\n', &self.buf) {
                Some(i) if i <= self.max_line + 1 => {
                    let mut line = self.buf.split_to(i + 1).freeze();
                    line.truncate(i);
                    if line.last() == Some(&b'\r') {
                        line.truncate(line.len() - 1);
                    }
                    if line.len() > self.max_line {
                        return Some(Frame::Truncated(line.slice(..self.max_line)));
                    }
                    return Some(Frame::Line(line));
                }
                Some(i) => {
                    let head = self.buf.split_to(self.max_line).freeze();
                    self.buf.advance(i + 1 - self.max_line);
                    return Some(Frame::Truncated(head));
                }
                None if self.buf.len() > self.max_line + 1 => {
                    let head = self.buf.split_to(self.max_line).freeze();
                    self.buf.clear();
                    self.skip = Skip::ToLf;
                    return Some(Frame::Truncated(head));
                }
                None => return None,
            }
        }
    }

    /// At end of stream: an unterminated LF-framed line is a line (a client
    /// that sends one line without LF and closes); a cut-off octet frame is
    /// lost (`Err` with its buffered size).
    pub fn finish(&mut self) -> Result<Option<Bytes>, usize> {
        if matches!(self.skip, Skip::Octets(_)) {
            return Ok(None);
        }
        let rest = std::mem::take(&mut self.buf);
        let trimmed_start = rest.iter().take_while(|b| matches!(b, b'\n' | b'\r' | b'\0')).count();
        let rest = rest.freeze().slice(trimmed_start..);
        if rest.is_empty() || matches!(self.skip, Skip::ToLf) {
            return Ok(None);
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && digits <= MAX_LEN_DIGITS && rest.get(digits) == Some(&b' ') {
            return Err(rest.len());
        }
        Ok(Some(rest))
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

/// Connection limits of the TCP receiver.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    pub max_line: usize,
    pub max_connections: usize,
    pub max_per_source: usize,
    pub idle: Duration,
}

/// Open connections per source address, released when a connection ends.
#[derive(Debug, Default)]
struct Slots {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

struct SlotGuard {
    slots: Arc<Mutex<Slots>>,
    source: IpAddr,
    stats: Arc<Stats>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.total -= 1;
        if let Some(n) = s.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.per_source.remove(&self.source);
            }
        }
        self.stats.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Accept connections from `allow` until `shutdown`; each runs in its own task.
pub async fn run(listener: TcpListener, limits: TcpLimits, allow: Networks, ctx: Shared) {
    let Shared { stats, shutdown, .. } = ctx.clone();
    let slots = Arc::new(Mutex::new(Slots::default()));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on accept.
                tracing::warn!(error = %e, "collector TCP accept failed; pausing 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = peer.ip().to_canonical();
        if !allow.contains(source) {
            let n = stats.not_allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(%peer, refused = n, "collector: sender not in --allow; connection closed");
            }
            drop(stream);
            continue;
        }
        let admitted = {
            let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
            let mine = s.per_source.get(&source).copied().unwrap_or(0);
            if s.total >= limits.max_connections || mine >= limits.max_per_source {
                false
            } else {
                s.total += 1;
                *s.per_source.entry(source).or_default() += 1;
                true
            }
        };
        if !admitted {
            let n = stats.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(%peer, refused = n, "collector connection limit reached; closing new connection");
            }
            drop(stream);
            continue;
        }
        Stats::inc(&stats.connections);
        let guard = SlotGuard { slots: slots.clone(), source, stats: stats.clone() };
        let (limits, ctx) = (limits.clone(), ctx.clone());
        tasks.spawn(async move {
            let _guard = guard;
            let _ = stream.set_nodelay(true);
            serve(stream, Transport::Tcp, source, &peer.to_string(), &limits, &ctx).await;
        });
    }
    tasks.close();
    // Let connections hand over what they already framed, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
}

/// Hand one line to the pipeline once its source's share has room; false
/// when shutting down.
async fn hand_over(ctx: &Shared, transport: Transport, source: IpAddr, line: Bytes, cut: bool) -> bool {
    let held = tokio::select! {
        _ = ctx.shutdown.cancelled() => return false,
        h = ctx.budget.hold(source, line.len()) => h,
    };
    let incoming = Incoming::new(transport, source, line, Some(held));
    ctx.queue.send(if cut { incoming.cut() } else { incoming }).await.is_ok()
}

/// Read frames from one connection until it ends, idles out or shutdown.
pub async fn serve<S: AsyncRead + Unpin>(
    mut stream: S,
    transport: Transport,
    source: IpAddr,
    peer: &str,
    limits: &TcpLimits,
    ctx: &Shared,
) {
    let (stats, shutdown) = (&*ctx.stats, &ctx.shutdown);
    let mut decoder = FrameDecoder::new(limits.max_line);
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(limits.idle, stream.read_buf(decoder.buffer())) => r,
        };
        match read {
            Err(_) => {
                Stats::inc(&stats.idle_closed);
                tracing::debug!(%peer, "collector connection idle; closing");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "collector connection read failed");
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
        }
        while let Some(frame) = decoder.next_frame() {
            match frame {
                Frame::Line(line) => {
                    stats.received_on(transport);
                    if !hand_over(ctx, transport, source, line, false).await {
                        return; // the pipeline is gone: shutting down
                    }
                }
                Frame::Truncated(head) => {
                    stats.received_on(transport);
                    Stats::inc(&stats.oversize);
                    if !hand_over(ctx, transport, source, head, true).await {
                        return;
                    }
                }
            }
        }
    }
    match decoder.finish() {
        Ok(Some(line)) => {
            stats.received_on(transport);
            let _ = hand_over(ctx, transport, source, line, false).await;
        }
        Ok(None) => {}
        Err(bytes) => {
            tracing::debug!(%peer, bytes, "collector connection closed mid-frame; frame dropped");
            stats.drop_from(source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(decoder: &mut FrameDecoder) -> Vec<Frame> {
        std::iter::from_fn(|| decoder.next_frame()).collect()
    }

    fn line(s: &str) -> Frame {
        Frame::Line(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn octet_counted_and_lf_framed_mixed() {
        let mut d = FrameDecoder::new(100);
        d.extend(b"5 hello3 abc\n<1>1 lf line\r\n12 with\nnewline\n\n2 ok");
        assert_eq!(
            frames(&mut d),
            vec![line("hello"), line("abc"), line("<1>1 lf line"), line("with\nnewline"), line("ok")]
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn frames_split_across_reads() {
        let input = b"12 <1>1 abcdefg<2>1 second\n13 <3>1 hijklmn\n";
        for cut in 0..input.len() {
            let mut d = FrameDecoder::new(100);
            d.extend(&input[..cut]);
            let mut got = frames(&mut d);
            d.extend(&input[cut..]);
            got.extend(frames(&mut d));
            assert_eq!(got, vec![line("<1>1 abcdefg"), line("<2>1 second"), line("<3>1 hijklmn")], "cut {cut}");
        }
    }

    #[test]
    fn digits_without_a_space_are_an_lf_line() {
        let mut d = FrameDecoder::new(100);
        d.extend(b"123abc\n1234567890 ten digits\n");
        assert_eq!(frames(&mut d), vec![line("123abc"), line("1234567890 ten digits")]);
    }

    #[test]
    fn oversize_frames_keep_their_head_and_skip_the_rest_without_buffering() {
        let cut = |s: &str| Frame::Truncated(Bytes::copy_from_slice(s.as_bytes()));
        let mut d = FrameDecoder::new(10);
        d.extend(b"20 ");
        assert_eq!(frames(&mut d), vec![]);
        d.extend(&[b'x'; 15]);
        assert_eq!(frames(&mut d), vec![cut("xxxxxxxxxx")]);
        assert_eq!(d.buffered(), 0);
        d.extend(b"xxxxx3 abc");
        assert_eq!(frames(&mut d), vec![line("abc")]);

        let mut d = FrameDecoder::new(10);
        d.extend(b"<1>1 this line is far too long");
        assert_eq!(frames(&mut d), vec![cut("<1>1 this ")]);
        d.extend(b" still going");
        assert_eq!(frames(&mut d), vec![]);
        assert_eq!(d.buffered(), 0);
        d.extend(b" end\nshort\n");
        assert_eq!(frames(&mut d), vec![line("short")]);

        // Exactly at the limit is whole, in both framings; one over is cut,
        // and so is one whose LF arrives with it.
        let mut d = FrameDecoder::new(10);
        d.extend(b"10 0123456789<123456789\n<1234567890\n<123456789ABCDEF\nok\n");
        assert_eq!(
            frames(&mut d),
            vec![line("0123456789"), line("<123456789"), cut("<123456789"), cut("<123456789"), line("ok")]
        );
    }

    #[test]
    fn end_of_stream() {
        let mut d = FrameDecoder::new(100);
        d.extend(b"<1>1 no newline");
        assert_eq!(frames(&mut d), vec![]);
        assert_eq!(d.finish(), Ok(Some(Bytes::from_static(b"<1>1 no newline"))));
        let mut d = FrameDecoder::new(100);
        d.extend(b"30 <1>1 cut");
        assert_eq!(frames(&mut d), vec![]);
        assert_eq!(d.finish(), Err(11));
        let mut d = FrameDecoder::new(100);
        d.extend(b"\r\n");
        assert_eq!(d.finish(), Ok(None));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics_and_stays_bounded(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..20)) {
            let mut d = FrameDecoder::new(32);
            for c in chunks {
                d.extend(&c);
                while let Some(f) = d.next_frame() {
                    let (Frame::Line(l) | Frame::Truncated(l)) = f;
                    proptest::prop_assert!(l.len() <= 32);
                }
                proptest::prop_assert!(d.buffered() <= 32 + MAX_LEN_DIGITS + 1 + 64);
            }
            let _ = d.finish();
        }
    }
}
