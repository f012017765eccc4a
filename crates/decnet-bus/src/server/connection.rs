//! One client connection: a reader loop (frames in) and a writer task
//! (frames out), so reading a fast publisher never waits on writing to it.
//!
//! Any malformed frame (SPEC §2) makes the connection hostile: it is closed,
//! one log line names the peer and the reason, and nobody else notices.
//! A client over one of its [limits](super::limits) is closed the same way.
//!
//! Fairness: the reader handles the frames of a read in slices of bounded
//! routing work ([`BATCH_WORK`]) and yields between slices, so a client whose
//! topics are expensive to route (deep topics against many wildcard
//! patterns) shares the routing thread instead of holding it for a whole
//! 64 KiB read of frames.
//!
//! Memory: a body larger than the read chunk is buffered only with room
//! taken from the daemon-wide read budget (waiting for room if needed), a
//! frame must be complete within the frame timeout of its first byte, and
//! the writer takes at most [`WRITE_BATCH_BYTES`] off its queue at a time.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::broker::{Broker, ConnHandle, RouteCache};
use super::logging::escape;
use crate::frame::{check_json_object, encode_frame, FrameError, FrameSpan, Scan, Verb};
use crate::topic::{validate_pattern, validate_topic};

/// How a connection ended, for the log line.
#[derive(Debug)]
enum Ending {
    /// Client said BYE or closed cleanly between frames.
    ClientClosed,
    /// The daemon is shutting down.
    Shutdown,
    /// Hostile frame: the reason is logged.
    Hostile(String),
    /// Over a resource limit: the limit is logged.
    OverLimit(String),
    /// Socket error (reset, etc.).
    Io(std::io::Error),
}

/// Read buffer size per connection; grows for large bodies, shrinks back.
const READ_CHUNK: usize = 64 * 1024;
/// Routing work (frames, trie nodes visited, targets pushed) handled before
/// the reader yields to other connections. A hot topic costs ~2 units per
/// subscriber, so ordinary traffic yields every few thousand frames (no
/// measurable cost); a frame that walks thousands of trie nodes yields
/// after a handful.
pub const BATCH_WORK: usize = 8192;
/// Most bytes the writer takes off the queue per write: what is not yet
/// taken can still be dropped oldest-first if the reader is slow.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// How often a reader waiting for read-budget room tries again.
const BUDGET_RETRY: Duration = Duration::from_millis(5);

pub async fn serve_connection(broker: Arc<Broker>, stream: UnixStream, shutdown: CancellationToken) {
    let peer = match stream.peer_cred() {
        Ok(cred) => match cred.pid() {
            Some(pid) => format!("pid={pid} uid={}", cred.uid()),
            None => format!("uid={}", cred.uid()),
        },
        Err(_) => "peer=unknown".to_string(),
    };
    let conn = broker.connect(&peer);
    tracing::debug!(peer = %conn.label, "client connected");

    let (reader, writer) = stream.into_split();
    let writer_task = tokio::spawn(write_loop(broker.clone(), conn.clone(), writer));

    let mut name = String::new();
    let mut held = ReadHold { broker: &broker, bytes: 0 };
    let ending = read_loop(&broker, &conn, reader, &shutdown, &mut name, &mut held).await;
    drop(held);

    broker.disconnect(conn.id);
    let who = if name.is_empty() { conn.label.clone() } else { format!("{} name={name}", conn.label) };
    match &ending {
        Ending::Hostile(reason) => broker.log_hostile(&who, reason, "malformed frame"),
        Ending::OverLimit(reason) => broker.log_hostile(&who, reason, "over a limit"),
        Ending::Io(e) => tracing::info!(peer = %escape(&who), error = %e, "connection lost"),
        Ending::ClientClosed => tracing::debug!(peer = %escape(&who), "client disconnected"),
        Ending::Shutdown => tracing::debug!(peer = %escape(&who), "closing connection for shutdown"),
    }
    if matches!(ending, Ending::Shutdown | Ending::ClientClosed) {
        let mut bye = BytesMut::new();
        // BYE has no argument and no body, so encoding cannot fail.
        let _ = encode_frame(Verb::Bye, "", b"", &mut bye);
        conn.queue.push(bye.freeze());
    }
    conn.queue.close();
    if matches!(ending, Ending::Hostile(_) | Ending::OverLimit(_) | Ending::Io(_)) {
        // No point flushing to a hostile or broken peer.
        writer_task.abort();
    }
    let _ = writer_task.await;
    // Publishers' route caches may still hold this handle for a while:
    // do not let it pin undelivered frames too.
    conn.queue.clear();
}

/// Read-budget bytes this connection's buffer holds beyond its base chunk;
/// given back when the buffer shrinks and when the connection ends.
struct ReadHold<'a> {
    broker: &'a Broker,
    bytes: usize,
}

impl Drop for ReadHold<'_> {
    fn drop(&mut self) {
        self.broker.read_budget.release(std::mem::take(&mut self.bytes));
    }
}

async fn read_loop(
    broker: &Broker,
    conn: &ConnHandle,
    mut reader: OwnedReadHalf,
    shutdown: &CancellationToken,
    name: &mut String,
    held: &mut ReadHold<'_>,
) -> Ending {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut routes = RouteCache::new();
    let frame_timeout = broker.limits().frame_timeout;
    // When the first byte of the incomplete frame at the head of `buf` arrived.
    let mut partial_since: Option<Instant> = None;
    loop {
        // Handle complete frames already buffered, straight out of the
        // buffer, until they run out or the slice's work budget is spent.
        let mut work = 0usize;
        let mut consumed = 0usize;
        let mut needed = 0usize;
        while consumed < buf.len() && work < BATCH_WORK {
            let rest = &buf[consumed..];
            match FrameSpan::scan(rest) {
                Ok(Scan::Frame(span)) => {
                    consumed += span.len;
                    let arg = span.arg_str(rest);
                    let body = &rest[span.body.clone()];
                    match handle_frame(broker, conn, &mut routes, span.verb, arg, body, name) {
                        Ok(w) => work += w,
                        Err(ending) => return ending,
                    }
                }
                Ok(Scan::Incomplete { needed: n }) => {
                    needed = n;
                    break;
                }
                Err(e) => return Ending::Hostile(e.to_string()),
            }
        }
        buf.advance(consumed);
        let more_buffered = work >= BATCH_WORK && !buf.is_empty();
        if consumed > 0 {
            partial_since = None;
            shrink_if_large(&mut buf, held);
        }
        if work > 0 {
            // Let the writers this slice woke, and other readers, run before
            // going on. A woken task sits in this worker's LIFO slot, which
            // other workers cannot steal; without this yield a fast
            // publisher keeps the socket readable and the subscribers'
            // writers wait for its whole coop budget, long enough to
            // overflow their queues.
            tokio::task::yield_now().await;
        }
        if more_buffered {
            continue; // frames left from this read: handle them before reading
        }
        if !buf.is_empty() && partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        // A large body: make room for all of it so one read can land it,
        // with the room beyond the base chunk taken from the read budget.
        if needed > buf.capacity() {
            let extra = needed - READ_CHUNK.min(needed);
            if extra > held.bytes {
                let want = extra - held.bytes;
                let deadline = partial_since.unwrap_or_else(Instant::now) + frame_timeout;
                loop {
                    if broker.read_budget.try_acquire(want) {
                        held.bytes += want;
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Ending::OverLimit(format!(
                            "no room for a {needed}-byte frame within {} s: the daemon-wide read budget \
                             (--max-read-bytes {}) is in use",
                            frame_timeout.as_secs_f64(),
                            broker.read_budget.limit()
                        ));
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ending::Shutdown,
                        _ = tokio::time::sleep(BUDGET_RETRY) => {}
                    }
                }
            }
            buf.reserve(needed - buf.len());
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        let timeout = async {
            match partial_since {
                Some(since) => tokio::time::sleep_until(since + frame_timeout).await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ending::Shutdown,
            r = reader.read_buf(&mut buf) => r,
            _ = timeout => {
                return Ending::OverLimit(format!(
                    "frame not completed within {} s of its first byte ({} bytes received)",
                    frame_timeout.as_secs_f64(),
                    buf.len()
                ));
            }
        };
        match read {
            Ok(0) if buf.is_empty() => return Ending::ClientClosed,
            Ok(0) => return Ending::Hostile(FrameError::Truncated.to_string()),
            Ok(_) => {}
            Err(e) => return Ending::Io(e),
        }
    }
}

/// After a large frame: go back to a base-size buffer (copying what little
/// follows the frame) and give the read budget back.
fn shrink_if_large(buf: &mut BytesMut, held: &mut ReadHold<'_>) {
    if buf.capacity() <= 2 * READ_CHUNK || buf.len() > READ_CHUNK / 2 {
        return;
    }
    let mut fresh = BytesMut::with_capacity(READ_CHUNK);
    fresh.extend_from_slice(buf);
    *buf = fresh;
    held.broker.read_budget.release(std::mem::take(&mut held.bytes));
}

/// Apply one frame: `Ok` is the routing work it cost, `Err` ends the connection.
fn handle_frame(
    broker: &Broker,
    conn: &ConnHandle,
    routes: &mut RouteCache,
    verb: Verb,
    arg: &str,
    body: &[u8],
    name: &mut String,
) -> Result<usize, Ending> {
    let hostile = |reason: String| Err(Ending::Hostile(reason));
    match verb {
        Verb::Pub => {
            if let Err(e) = validate_topic(arg) {
                return hostile(format!("PUB to invalid topic: {e}"));
            }
            return broker.publish_from(conn, routes, arg, body).map_err(|e| Ending::Hostile(e.to_string()));
        }
        Verb::Sub | Verb::Unsub => {
            if let Err(e) = validate_pattern(arg) {
                return hostile(format!("{verb} with invalid pattern: {e}"));
            }
            if let Err(e) = check_json_object(body) {
                return hostile(e.to_string());
            }
            if verb == Verb::Sub {
                if let Err(e) = broker.subscribe(conn.id, arg) {
                    return Err(Ending::OverLimit(format!("SUB refused: {e}")));
                }
            } else {
                broker.unsubscribe(conn.id, arg);
            }
            // A subscription change walks the topic cache: charge for it.
            return Ok(64);
        }
        Verb::Hello => {
            if let Err(e) = check_json_object(body) {
                return hostile(e.to_string());
            }
            tracing::debug!(peer = %conn.label, client = %escape(arg), "hello");
            *name = arg.to_owned();
        }
        Verb::Bye => return Err(Ending::ClientClosed),
        Verb::Evt => return hostile("client sent EVT (only the server sends events)".into()),
    }
    Ok(1)
}

/// Drain the connection's queue, coalescing everything queued into one
/// write per wake-up: under load that is one syscall for many events.
async fn write_loop(broker: Arc<Broker>, conn: Arc<ConnHandle>, mut writer: OwnedWriteHalf) {
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    while conn.queue.drain_bytes_into(&mut batch, WRITE_BATCH_BYTES).await {
        let mut events = 0u64;
        for frame in batch.drain(..) {
            // Only EVT frames count as deliveries (BYE is also queued here).
            events += u64::from(frame.starts_with(b"EVT "));
            out.extend_from_slice(&frame);
        }
        if let Err(e) = writer.write_all(&out).await {
            tracing::debug!(peer = %conn.label, error = %e, "write failed; closing");
            return;
        }
        broker.counters.delivered.fetch_add(events, Ordering::Relaxed);
        out.clear();
        if out.capacity() > 4 * READ_CHUNK {
            out = BytesMut::with_capacity(READ_CHUNK);
        }
        // The queue is empty again: if this peer was dropping, the burst is over.
        // (`dropping` first: the common case then costs no queue lock.)
        if conn.dropping.load(Ordering::Relaxed)
            && conn.queue.is_empty()
            && conn.dropping.swap(false, Ordering::Relaxed)
        {
            let dropped = conn.queue.take_unreported_drops();
            tracing::warn!(peer = %conn.label, dropped, "subscriber caught up after dropping events");
        }
    }
    let _ = writer.shutdown().await;
}
