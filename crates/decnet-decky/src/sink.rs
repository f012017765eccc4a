//! The line sink: ships honeypot lines to the collector as syslog with
//! octet counting (RFC 6587 §3.4.1: `<len> <line>`, one line per frame, no
//! trailing LF), over the collector's local UNIX socket (the default: only
//! processes allowed by its file mode can write there, so lines that
//! arrive on it are the deckies') or over TCP to a network listener.
//!
//! Why octet counting and not LF framing: a line carries attacker input
//! (escaped, but a collector should not have to trust that), and the
//! length prefix makes frame boundaries independent of the content.
//!
//! A honeypot session must never wait for the collector. `push` only
//! appends to a queue bounded in *bytes* (a count of lines would let long
//! lines take gigabytes); when it is full the *oldest* lines are dropped
//! and counted (fresh interactions matter more than stale ones during an
//! outage). One writer task drains the queue, connecting and reconnecting
//! with doubling backoff.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Default collector address (the collector's default TCP listener).
pub const DEFAULT_COLLECTOR_ADDR: &str = "127.0.0.1:5514";
/// Bytes of lines held while the collector is away.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// What a queued line costs besides its text (the `String` and its slot),
/// so a flood of tiny lines is bounded too.
const LINE_OVERHEAD: usize = 32;

/// Where the sink ships to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectorTarget {
    /// The collector's local UNIX socket.
    Unix(PathBuf),
    /// A collector's TCP syslog listener.
    Tcp(SocketAddr),
}

impl std::fmt::Display for CollectorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CollectorTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            CollectorTarget::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl From<SocketAddr> for CollectorTarget {
    fn from(a: SocketAddr) -> Self {
        CollectorTarget::Tcp(a)
    }
}

impl From<PathBuf> for CollectorTarget {
    fn from(p: PathBuf) -> Self {
        CollectorTarget::Unix(p)
    }
}

#[derive(Debug, Default)]
pub struct SinkCounters {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    /// Bytes of the dropped lines.
    pub dropped_bytes: AtomicU64,
    pub connects: AtomicU64,
}

/// The queue and the bytes it holds (text plus [`LINE_OVERHEAD`] a line).
#[derive(Default)]
struct Queue {
    lines: VecDeque<String>,
    bytes: usize,
}

fn cost(line: &str) -> usize {
    line.len() + LINE_OVERHEAD
}

struct Inner {
    queue: Mutex<Queue>,
    /// Bytes the queue may hold.
    capacity: usize,
    wake: Notify,
    counters: SinkCounters,
}

/// A cheap, cloneable handle; all clones feed the same queue.
#[derive(Clone)]
pub struct LineSink {
    inner: Arc<Inner>,
}

impl LineSink {
    /// A sink with no writer: lines stay queued (at most `capacity` bytes)
    /// until one is started. Used for one-shot processes and as the base of
    /// [`LineSink::start`].
    pub fn detached(capacity: usize) -> LineSink {
        LineSink {
            inner: Arc::new(Inner {
                queue: Mutex::new(Queue::default()),
                capacity: capacity.max(1),
                wake: Notify::new(),
                counters: SinkCounters::default(),
            }),
        }
    }

    /// A sink whose writer task sends to `collector` until `stop`.
    pub fn start(collector: impl Into<CollectorTarget>, capacity: usize, stop: CancellationToken) -> LineSink {
        let sink = LineSink::detached(capacity);
        tokio::spawn(writer(sink.clone(), collector.into(), stop));
        sink
    }

    /// Queue one line; never blocks on the network. A line larger than the
    /// whole queue is dropped itself.
    pub fn push(&self, line: String) {
        {
            let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            let need = cost(&line);
            if need > self.inner.capacity {
                drop(q);
                self.count_dropped(line.len());
                return;
            }
            while q.bytes + need > self.inner.capacity {
                let Some(old) = q.lines.pop_front() else { break };
                q.bytes -= cost(&old);
                self.count_dropped(old.len());
            }
            q.bytes += need;
            q.lines.push_back(line);
        }
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        self.inner.wake.notify_one();
    }

    fn count_dropped(&self, bytes: usize) {
        let c = &self.inner.counters;
        c.dropped_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let dropped = c.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // One warning per power of two: visible, never a flood.
        if dropped.is_power_of_two() {
            tracing::warn!(dropped, "collector queue full; dropping the oldest lines");
        }
    }

    pub fn counters(&self) -> &SinkCounters {
        &self.inner.counters
    }

    /// Lines waiting to be sent.
    pub fn backlog(&self) -> usize {
        self.inner.queue.lock().map(|q| q.lines.len()).unwrap_or(0)
    }

    /// Bytes the waiting lines hold (as counted against the capacity).
    pub fn backlog_bytes(&self) -> usize {
        self.inner.queue.lock().map(|q| q.bytes).unwrap_or(0)
    }

    fn pop(&self) -> Option<String> {
        let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        let line = q.lines.pop_front()?;
        q.bytes -= cost(&line);
        Some(line)
    }

    fn unpop(&self, line: String) {
        let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.bytes + cost(&line) <= self.inner.capacity {
            q.bytes += cost(&line);
            q.lines.push_front(line);
        } else {
            drop(q);
            self.count_dropped(line.len());
        }
    }
}

/// One RFC 6587 octet-counted frame.
pub fn frame(line: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 8);
    out.extend_from_slice(line.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(line.as_bytes());
    out
}

/// A connection to the collector, over either transport.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    async fn connect(target: &CollectorTarget) -> std::io::Result<Conn> {
        Ok(match target {
            CollectorTarget::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
            CollectorTarget::Unix(p) => Conn::Unix(tokio::net::UnixStream::connect(p).await?),
        })
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes).await,
            Conn::Unix(s) => s.write_all(bytes).await,
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.try_read(buf),
            Conn::Unix(s) => s.try_read(buf),
        }
    }
}

async fn writer(sink: LineSink, collector: CollectorTarget, stop: CancellationToken) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut backoff = FIRST_BACKOFF;
    let mut warned = false;
    while !stop.is_cancelled() {
        let connect = tokio::time::timeout(Duration::from_secs(3), Conn::connect(&collector));
        let mut stream = match tokio::select! { _ = stop.cancelled() => return, r = connect => r } {
            Ok(Ok(s)) => s,
            other => {
                let error = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_string(),
                };
                if !warned {
                    tracing::warn!(%collector, %error, "cannot reach the collector; lines are queued (bounded) and retried");
                    warned = true;
                }
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        sink.inner.counters.connects.fetch_add(1, Ordering::Relaxed);
        if warned {
            tracing::info!(%collector, "collector reachable again");
        }
        warned = false;
        backoff = FIRST_BACKOFF;
        // Drain until the queue is empty, then wait for more; a write
        // error puts the line back and reconnects.
        loop {
            // The collector never writes; a readable socket means it closed
            // (idle timeout, restart). Reconnect *before* writing, or the
            // next line would go into a dead connection and be lost.
            if peer_closed(&stream) {
                tracing::info!(%collector, "the collector closed the connection; reconnecting");
                break;
            }
            let Some(line) = sink.pop() else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = sink.inner.wake.notified() => continue,
                    // Wake now and then even without a push, so a peer
                    // that closed is noticed and a stray lost notify costs little.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            let bytes = frame(&line);
            let sent = tokio::select! {
                _ = stop.cancelled() => { sink.unpop(line); return }
                r = tokio::time::timeout(Duration::from_secs(10), stream.write_all(&bytes)) => r,
            };
            match sent {
                Ok(Ok(())) => {
                    sink.inner.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    sink.unpop(line);
                    tracing::warn!(%collector, "lost the collector connection; reconnecting");
                    break;
                }
            }
        }
    }
}

/// True when the peer has closed (EOF or error) the connection.
fn peer_closed(stream: &Conn) -> bool {
    let mut probe = [0u8; 64];
    match stream.try_read(&mut probe) {
        Ok(0) => true,
        // Unexpected bytes from a collector: ignore them.
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_length_space_line() {
        assert_eq!(frame("<134>1 x"), b"8 <134>1 x".to_vec());
        // Length counts bytes, not characters.
        assert_eq!(frame("é"), b"2 \xc3\xa9".to_vec());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let sink = LineSink::detached(3 * cost("l0"));
        for i in 0..5 {
            sink.push(format!("l{i}"));
        }
        assert_eq!(sink.counters().dropped.load(Ordering::Relaxed), 2);
        assert_eq!(sink.pop().as_deref(), Some("l2"));
        assert_eq!(sink.backlog(), 2);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_not_lines() {
        // Room for 100 short lines, but long lines are held by size: a
        // flood of 64 KiB lines never holds more than the capacity.
        let capacity = 256 * 1024;
        let sink = LineSink::detached(capacity);
        let long = "x".repeat(64 * 1024);
        for _ in 0..1000 {
            sink.push(long.clone());
        }
        assert!(sink.backlog_bytes() <= capacity, "{} bytes queued", sink.backlog_bytes());
        assert_eq!(sink.backlog(), 3);
        assert_eq!(sink.counters().dropped.load(Ordering::Relaxed), 997);
        assert_eq!(sink.counters().dropped_bytes.load(Ordering::Relaxed), 997 * 64 * 1024);
        // A line larger than the whole queue is dropped, not queued.
        sink.push("y".repeat(capacity));
        assert_eq!(sink.backlog(), 3);
        // Popping gives the room back.
        while sink.pop().is_some() {}
        assert_eq!(sink.backlog_bytes(), 0);
    }
}
