//! Bounded I/O for attacker-facing sessions.
//!
//! [`Metered`] counts every byte in and out of a session and fails reads
//! past the byte budget; [`Conn`] reads lines with a length cap and an
//! idle timeout and writes with a timeout, so a client that floods, stalls
//! or never reads ends its own session and nothing else.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};

use super::event::ByteCount;

/// A stream that counts bytes and refuses to read past `max_in`.
pub struct Metered<S> {
    inner: S,
    bytes: Arc<ByteCount>,
    max_in: u64,
}

impl<S> Metered<S> {
    pub fn new(inner: S, bytes: Arc<ByteCount>, max_in: u64) -> Self {
        Metered { inner, bytes, max_in }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The error a read past the byte budget gives (recognised by [`end_of`]).
const BYTE_LIMIT: &str = "session byte limit reached";

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.bytes.received.load(Ordering::Relaxed) >= self.max_in {
            return Poll::Ready(Err(io::Error::other(BYTE_LIMIT)));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let n = (buf.filled().len() - before) as u64;
            self.bytes.received.fetch_add(n, Ordering::Relaxed);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            self.bytes.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        res
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a session ended, as the `reason` of its `disconnect` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    Idle,
    LineTooLong,
    ByteLimit,
    /// The service said goodbye (QUIT, exit, a served HTTP request).
    Done,
    Io(String),
}

impl End {
    pub fn reason(&self) -> String {
        match self {
            End::ClientClosed => "client closed".into(),
            End::Idle => "idle timeout".into(),
            End::LineTooLong => "line too long".into(),
            End::ByteLimit => "byte limit".into(),
            End::Done => "done".into(),
            End::Io(e) => format!("i/o error: {e}"),
        }
    }
}

/// The [`End`] an I/O error means.
pub fn end_of(e: io::Error) -> End {
    if e.to_string() == BYTE_LIMIT {
        End::ByteLimit
    } else if matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    ) {
        End::ClientClosed
    } else {
        End::Io(e.to_string())
    }
}

/// A line-oriented, bounded connection.
pub struct Conn<S> {
    inner: BufReader<Metered<S>>,
    max_line: usize,
    idle: Duration,
    /// A bare CR ends a line too (telnet clients send CR NUL or CR LF for
    /// Enter); the LF or NUL after it is then skipped.
    cr_ends_line: bool,
    after_cr: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: Metered<S>, max_line: usize, idle: Duration) -> Self {
        Conn { inner: BufReader::with_capacity(8192, stream), max_line, idle, cr_ends_line: false, after_cr: false }
    }

    /// Also end lines at a bare CR (for telnet).
    pub fn cr_ends_lines(mut self) -> Self {
        self.cr_ends_line = true;
        self
    }

    /// The next line without its LF (and a CR before it). A line longer
    /// than the cap ends the session *before* it is all read: a client
    /// cannot make the decky buffer more than `max_line` bytes.
    pub async fn read_line(&mut self) -> Result<Vec<u8>, End> {
        let mut line = Vec::new();
        loop {
            let buf = match tokio::time::timeout(self.idle, self.inner.fill_buf()).await {
                Err(_) => return Err(End::Idle),
                Ok(Err(e)) => return Err(end_of(e)),
                Ok(Ok(b)) => b,
            };
            if buf.is_empty() {
                return Err(End::ClientClosed);
            }
            if self.after_cr {
                self.after_cr = false;
                if matches!(buf[0], b'\n' | 0) {
                    self.inner.consume(1);
                    continue;
                }
            }
            let cr = self.cr_ends_line;
            let (taken, done) = match buf.iter().position(|b| *b == b'\n' || (cr && *b == b'\r')) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            line.extend_from_slice(&buf[..taken]);
            self.inner.consume(taken);
            if done {
                if line.pop() == Some(b'\r') {
                    self.after_cr = true;
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max_line {
                    return Err(End::LineTooLong);
                }
                return Ok(line);
            }
            if line.len() > self.max_line + 1 {
                return Err(End::LineTooLong);
            }
        }
    }

    /// Read exactly up to `n` bytes that are already coming (a request
    /// body), bounded by the same idle timeout; returns how many arrived.
    pub async fn discard(&mut self, mut n: usize) -> Result<usize, End> {
        let mut got = 0;
        while n > 0 {
            let buf = match tokio::time::timeout(self.idle, self.inner.fill_buf()).await {
                Err(_) => return Err(End::Idle),
                Ok(Err(e)) => return Err(end_of(e)),
                Ok(Ok(b)) => b,
            };
            if buf.is_empty() {
                break;
            }
            let k = buf.len().min(n);
            self.inner.consume(k);
            n -= k;
            got += k;
        }
        Ok(got)
    }

    /// Read exactly `n` bytes the service keeps (a request body it
    /// records), each read bounded by the idle timeout. The caller bounds
    /// `n` before calling: nothing here allocates more than `n`.
    pub async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, End> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let buf = match tokio::time::timeout(self.idle, self.inner.fill_buf()).await {
                Err(_) => return Err(End::Idle),
                Ok(Err(e)) => return Err(end_of(e)),
                Ok(Ok(b)) => b,
            };
            if buf.is_empty() {
                return Err(End::ClientClosed);
            }
            let k = buf.len().min(n - out.len());
            out.extend_from_slice(&buf[..k]);
            self.inner.consume(k);
        }
        Ok(out)
    }

    /// Read up to `n` bytes that are coming (a request body whose length
    /// the caller has already bounded), within the idle timeout; fewer
    /// when the client closes first.
    pub async fn read_up_to(&mut self, n: usize) -> Result<Vec<u8>, End> {
        let mut out = Vec::with_capacity(n.min(64 * 1024));
        while out.len() < n {
            let buf = match tokio::time::timeout(self.idle, self.inner.fill_buf()).await {
                Err(_) => return Err(End::Idle),
                Ok(Err(e)) => return Err(end_of(e)),
                Ok(Ok(b)) => b,
            };
            if buf.is_empty() {
                break;
            }
            let k = buf.len().min(n - out.len());
            out.extend_from_slice(&buf[..k]);
            self.inner.consume(k);
        }
        Ok(out)
    }

    /// Write everything or fail; a client that stops reading is cut off
    /// after the idle timeout instead of holding the task forever.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        let w = self.inner.get_mut();
        match tokio::time::timeout(self.idle, async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
        {
            Err(_) => Err(End::Idle),
            Ok(Err(e)) => Err(end_of(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The metered stream back, dropping whatever the client sent past
    /// the last line read (a STARTTLS upgrade must not let plaintext sent
    /// before the handshake count as encrypted input).
    pub fn into_inner(self) -> Metered<S> {
        self.inner.into_inner()
    }

    pub fn stream(&self) -> &S {
        self.inner.get_ref().get_ref()
    }

    pub async fn send_str(&mut self, s: &str) -> Result<(), End> {
        self.send(s.as_bytes()).await
    }
}

/// Lossy UTF-8 with control characters (other than tab) shown as `\xNN`,
/// so a logged command or path is readable and one line.
pub fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}
