//! The line sink: ships honeypot lines to the collector as syslog over TCP
//! with octet counting (RFC 6587 §3.4.1: `<len> <line>`, one line per
//! frame, no trailing LF).
//!
//! Why octet counting and not LF framing: a line carries attacker input
//! (escaped, but a collector should not have to trust that), and the
//! length prefix makes frame boundaries independent of the content.
//!
//! A honeypot session must never wait for the collector. `push` only
//! appends to a bounded in-memory queue; when it is full the *oldest*
//! line is dropped and counted (fresh interactions matter more than stale
//! ones during an outage). One writer task drains the queue, connecting
//! and reconnecting with doubling backoff.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Default collector address (the collector's default TCP listener).
pub const DEFAULT_COLLECTOR_ADDR: &str = "127.0.0.1:5514";
/// Lines held while the collector is away.
pub const DEFAULT_QUEUE: usize = 10_000;

#[derive(Debug, Default)]
pub struct SinkCounters {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub connects: AtomicU64,
}

struct Inner {
    queue: Mutex<VecDeque<String>>,
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
    /// A sink with no writer: lines stay queued (bounded) until one is
    /// started. Used for one-shot processes and as the base of [`LineSink::start`].
    pub fn detached(capacity: usize) -> LineSink {
        LineSink {
            inner: Arc::new(Inner {
                queue: Mutex::new(VecDeque::new()),
                capacity: capacity.max(1),
                wake: Notify::new(),
                counters: SinkCounters::default(),
            }),
        }
    }

    /// A sink whose writer task sends to `collector` until `stop`.
    pub fn start(collector: SocketAddr, capacity: usize, stop: CancellationToken) -> LineSink {
        let sink = LineSink::detached(capacity);
        tokio::spawn(writer(sink.clone(), collector, stop));
        sink
    }

    /// Queue one line; never blocks on the network.
    pub fn push(&self, line: String) {
        {
            let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= self.inner.capacity {
                q.pop_front();
                let dropped = self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // One warning per power of two: visible, never a flood.
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "collector queue full; dropping the oldest lines");
                }
            }
            q.push_back(line);
        }
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        self.inner.wake.notify_one();
    }

    pub fn counters(&self) -> &SinkCounters {
        &self.inner.counters
    }

    /// Lines waiting to be sent.
    pub fn backlog(&self) -> usize {
        self.inner.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    fn pop(&self) -> Option<String> {
        self.inner.queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    fn unpop(&self, line: String) {
        let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() < self.inner.capacity {
            q.push_front(line);
        } else {
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
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

async fn writer(sink: LineSink, collector: SocketAddr, stop: CancellationToken) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut backoff = FIRST_BACKOFF;
    let mut warned = false;
    while !stop.is_cancelled() {
        let connect = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(collector));
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
        let _ = stream.set_nodelay(true);
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
fn peer_closed(stream: &tokio::net::TcpStream) -> bool {
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
        let sink = LineSink::detached(3);
        for i in 0..5 {
            sink.push(format!("l{i}"));
        }
        assert_eq!(sink.counters().dropped.load(Ordering::Relaxed), 2);
        assert_eq!(sink.pop().as_deref(), Some("l2"));
        assert_eq!(sink.backlog(), 2);
    }
}
