//! One client connection: a reader loop (frames in) and a writer task
//! (frames out), so reading a fast publisher never waits on writing to it.
//!
//! Any malformed frame (SPEC §2) makes the connection hostile: it is closed,
//! one log line names the peer and the reason, and nobody else notices.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::broker::{Broker, ConnHandle, RouteCache};
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
    /// Socket error (reset, etc.).
    Io(std::io::Error),
}

/// Read buffer size per connection; grows for large bodies, shrinks back.
const READ_CHUNK: usize = 64 * 1024;

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
    let ending = read_loop(&broker, &conn, reader, &shutdown, &mut name).await;

    broker.disconnect(conn.id);
    let who = if name.is_empty() { conn.label.clone() } else { format!("{} name={name}", conn.label) };
    match &ending {
        Ending::Hostile(reason) => {
            tracing::warn!(peer = %who, reason = %reason, "closing connection: malformed frame");
        }
        Ending::Io(e) => tracing::info!(peer = %who, error = %e, "connection lost"),
        Ending::ClientClosed => tracing::debug!(peer = %who, "client disconnected"),
        Ending::Shutdown => tracing::debug!(peer = %who, "closing connection for shutdown"),
    }
    if matches!(ending, Ending::Shutdown | Ending::ClientClosed) {
        let mut bye = BytesMut::new();
        // BYE has no argument and no body, so encoding cannot fail.
        let _ = encode_frame(Verb::Bye, "", b"", &mut bye);
        conn.queue.push(bye.freeze());
    }
    conn.queue.close();
    if matches!(ending, Ending::Hostile(_) | Ending::Io(_)) {
        // No point flushing to a hostile or broken peer.
        writer_task.abort();
    }
    let _ = writer_task.await;
    // Publishers' route caches may still hold this handle for a while:
    // do not let it pin undelivered frames too.
    conn.queue.clear();
}

async fn read_loop(
    broker: &Broker,
    conn: &ConnHandle,
    mut reader: OwnedReadHalf,
    shutdown: &CancellationToken,
    name: &mut String,
) -> Ending {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut routes = RouteCache::new();
    loop {
        // Handle every complete frame already buffered before reading
        // more, straight out of the buffer, then drop them all at once.
        let mut handled = 0usize;
        let mut consumed = 0usize;
        let mut needed = 0usize;
        while consumed < buf.len() {
            let rest = &buf[consumed..];
            match FrameSpan::scan(rest) {
                Ok(Scan::Frame(span)) => {
                    handled += 1;
                    consumed += span.len;
                    let arg = span.arg_str(rest);
                    let body = &rest[span.body.clone()];
                    if let Some(ending) = handle_frame(broker, conn, &mut routes, span.verb, arg, body, name) {
                        return ending;
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
        // A large body: make room for all of it so one read can land it.
        buf.reserve(needed.saturating_sub(buf.len()));
        if handled > 0 {
            // Let the writers this batch woke run before reading more. A
            // woken task sits in this worker's LIFO slot, which other
            // workers cannot steal; without this yield a fast publisher
            // keeps the socket readable and the subscribers' writers wait
            // for its whole coop budget (~128 reads, tens of thousands of
            // events), long enough to overflow their queues.
            tokio::task::yield_now().await;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ending::Shutdown,
            r = reader.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) if buf.is_empty() => return Ending::ClientClosed,
            Ok(0) => return Ending::Hostile(FrameError::Truncated.to_string()),
            Ok(_) => {}
            Err(e) => return Ending::Io(e),
        }
    }
}

/// Apply one frame; `Some` ends the connection.
fn handle_frame(
    broker: &Broker,
    conn: &ConnHandle,
    routes: &mut RouteCache,
    verb: Verb,
    arg: &str,
    body: &[u8],
    name: &mut String,
) -> Option<Ending> {
    let hostile = |reason: String| Some(Ending::Hostile(reason));
    match verb {
        Verb::Pub => {
            if let Err(e) = validate_topic(arg) {
                return hostile(format!("PUB to invalid topic: {e}"));
            }
            if let Err(e) = broker.publish_from(conn, routes, arg, body) {
                return hostile(e.to_string());
            }
        }
        Verb::Sub | Verb::Unsub => {
            if let Err(e) = validate_pattern(arg) {
                return hostile(format!("{verb} with invalid pattern: {e}"));
            }
            if let Err(e) = check_json_object(body) {
                return hostile(e.to_string());
            }
            if verb == Verb::Sub {
                broker.subscribe(conn.id, arg);
            } else {
                broker.unsubscribe(conn.id, arg);
            }
        }
        Verb::Hello => {
            if let Err(e) = check_json_object(body) {
                return hostile(e.to_string());
            }
            tracing::debug!(peer = %conn.label, client = %arg, "hello");
            *name = arg.to_owned();
        }
        Verb::Bye => return Some(Ending::ClientClosed),
        Verb::Evt => return hostile("client sent EVT (only the server sends events)".into()),
    }
    None
}

/// Drain the connection's queue, coalescing everything queued into one
/// write per wake-up: under load that is one syscall for many events.
async fn write_loop(broker: Arc<Broker>, conn: Arc<ConnHandle>, mut writer: OwnedWriteHalf) {
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    while conn.queue.drain_into(&mut batch).await {
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
