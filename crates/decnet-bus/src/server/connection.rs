//! One client connection: a reader loop (frames in) and a writer task
//! (frames out), so reading a fast publisher never waits on writing to it.
//!
//! Any malformed frame (SPEC §2) makes the connection hostile: it is closed,
//! one log line names the peer and the reason, and nobody else notices.
//! A client over one of its [limits](super::limits) is closed the same way.
//! A well-formed PUB the daemon will not forward (JSON DECNET's clients
//! cannot parse, an envelope over the frame limit) is dropped and its
//! publisher closed the same way too, but first sent `BYE` with body
//! `{"error": "<reason>"}`: such a publisher may be an honest worker.
//!
//! Fairness: every connection shares one routing thread, so nothing one
//! client sends may hold it for long.
//! - The reader handles the frames of a read in slices of bounded routing
//!   work ([`cost::SLICE_WORK`]: frames charged by body size, trie nodes,
//!   targets, pattern tokens and cached topics walked) and yields between
//!   slices, so a client whose frames are expensive (deep topics against
//!   many wildcard patterns, 200-token SUBs, large bodies) shares the thread
//!   instead of holding it for a whole 64 KiB read of frames.
//! - A PUB body of [`OFFLOAD_BODY`] bytes or more is validated and built
//!   into its EVT frame on tokio's blocking pool (at most
//!   `Broker::large_body_slots` at once) while the reader awaits it: the
//!   order of one connection's events is kept, and the routing thread does
//!   not spend a millisecond per megabyte of JSON.
//! - A closed connection frees its subscriptions a slice at a time.
//! - The writer hands the kernel large queued frames with vectored writes
//!   (no copy into a staging buffer) and yields after every large write, so
//!   20 writers with room in their sockets do not copy 80 MB in one go.
//!
//! Memory: a body larger than the read chunk is buffered only with room
//! taken from the daemon-wide read budget (waiting for room if needed), a
//! frame must be complete within the frame timeout of its first byte, and
//! the writer takes at most [`WRITE_BATCH_BYTES`] off its queue at a time.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::broker::{build_evt_frame, Broker, ConnHandle, RouteCache};
use super::cost;
use super::logging::escape;
use crate::envelope::Stamp;
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
    /// A well-formed PUB the daemon will not forward (JSON subscribers
    /// cannot parse, an envelope over the frame limit): the publisher is
    /// told why in a BYE body, then closed like a hostile peer.
    Refused(String),
    /// Socket error (reset, etc.).
    Io(std::io::Error),
}

/// Read buffer size per connection; grows for large bodies, shrinks back.
const READ_CHUNK: usize = 64 * 1024;
/// PUB bodies this large are validated off the routing thread (above the
/// read chunk: such a body already took the large-frame path).
pub const OFFLOAD_BODY: usize = READ_CHUNK;
/// Most bytes the writer takes off the queue per write: what is not yet
/// taken can still be dropped oldest-first if the reader is slow.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// A batch holding a frame this large is written with `writev` straight
/// from the shared frames instead of being copied into the staging buffer.
const VECTORED_FRAME: usize = 16 * 1024;
/// Frames per vectored write (Linux's IOV_MAX).
const MAX_IOVECS: usize = 1024;
/// After writing this much in one go the writer yields: the kernel copy of
/// a few hundred KiB is ~100 µs, and a backlog of large events in many
/// writers must not hold the thread for their sum.
const WRITE_YIELD_BYTES: usize = 64 * 1024;
/// How often a reader waiting for read-budget room tries again.
const BUDGET_RETRY: Duration = Duration::from_millis(5);
/// How long a refused publisher's BYE may take to be written; a peer that
/// does not read is simply closed after it.
const REFUSAL_BYE_TIMEOUT: Duration = Duration::from_secs(1);

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

    // Nothing is routed to this connection from here on; its patterns are
    // freed a slice at a time so a client holding 10,000 of them does not
    // stall everyone while they go.
    let mut retiring = broker.disconnect_begin(conn.id);
    while !broker.disconnect_step(&mut retiring, cost::SLICE_WORK) {
        tokio::task::yield_now().await;
    }
    let who = if name.is_empty() { conn.label.clone() } else { format!("{} name={name}", conn.label) };
    match &ending {
        Ending::Hostile(reason) => broker.log_hostile(&who, reason, "malformed frame"),
        Ending::OverLimit(reason) => broker.log_hostile(&who, reason, "over a limit"),
        Ending::Refused(reason) => broker.log_hostile(&who, reason, "publish refused"),
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
    if let Ending::Refused(reason) = &ending {
        // Events still queued for it are dropped: it is closed as any peer
        // whose frame was refused, only told why first.
        conn.queue.clear();
        conn.queue.push(refusal_bye(reason));
    }
    conn.queue.close();
    if matches!(ending, Ending::Hostile(_) | Ending::OverLimit(_) | Ending::Io(_)) {
        // No point flushing to a hostile or broken peer.
        writer_task.abort();
    }
    if matches!(ending, Ending::Refused(_)) {
        let abort = writer_task.abort_handle();
        if tokio::time::timeout(REFUSAL_BYE_TIMEOUT, writer_task).await.is_err() {
            abort.abort();
        }
    } else {
        let _ = writer_task.await;
    }
    // Publishers' route caches may still hold this handle for a while:
    // do not let it pin undelivered frames too.
    conn.queue.clear();
}

/// `BYE` with body `{"error": "<reason>"}`: the frame grammar allows a
/// JSON object body on any verb, and a client that ignores BYE bodies
/// still sees a plain BYE.
fn refusal_bye(reason: &str) -> Bytes {
    let body = serde_json::to_vec(&serde_json::json!({ "error": reason })).unwrap_or_default();
    let mut bye = BytesMut::new();
    // The reason is a few hundred bytes at most (an error message with a
    // number truncated to 40 characters), so encoding cannot fail.
    let _ = encode_frame(Verb::Bye, "", &body, &mut bye);
    bye.freeze()
}

/// The connection's ending for a PUB `broker` refused: well-formed but
/// unforwardable, or hostile.
fn publish_refused(e: FrameError) -> Ending {
    if e.is_refused_publish() {
        Ending::Refused(e.to_string())
    } else {
        Ending::Hostile(e.to_string())
    }
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
        let mut large_pub = None;
        // Every event of this slice arrived by now: one `ts` for them all.
        let stamp = Stamp::now();
        while consumed < buf.len() && work < cost::SLICE_WORK {
            let rest = &buf[consumed..];
            match FrameSpan::scan(rest) {
                Ok(Scan::Frame(span)) => {
                    if span.verb == Verb::Pub && span.body.len() >= OFFLOAD_BODY {
                        large_pub = Some(span); // handled below, off this thread
                        break;
                    }
                    consumed += span.len;
                    match handle_frame(broker, conn, &mut routes, &stamp, &span, rest, name) {
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
        let had_large_pub = large_pub.is_some();
        if let Some(span) = large_pub {
            match publish_large(broker, conn, &mut routes, &mut buf, span, held, shutdown).await {
                Ok(w) => work += w,
                Err(ending) => return ending,
            }
            consumed += 1; // progress was made: restart the frame timer
        }
        let more_buffered = (work >= cost::SLICE_WORK || had_large_pub) && !buf.is_empty();
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
            Ok(_) => {
                if let Some(poller) = &broker.busy_poll {
                    poller.touch();
                }
            }
            Err(e) => return Ending::Io(e),
        }
    }
}

/// Route a PUB whose body is [`OFFLOAD_BODY`] bytes or more, at the head
/// of `buf`: the frame is split off the buffer (no copy), validated and
/// built on the blocking pool while this reader waits, then routed here.
/// The buffer starts afresh with whatever followed the frame.
async fn publish_large(
    broker: &Broker,
    conn: &ConnHandle,
    routes: &mut RouteCache,
    buf: &mut BytesMut,
    span: FrameSpan,
    held: &mut ReadHold<'_>,
    shutdown: &CancellationToken,
) -> Result<usize, Ending> {
    let topic = span.arg_str(buf).to_owned();
    if let Err(e) = validate_topic(&topic) {
        return Err(Ending::Hostile(format!("PUB to invalid topic: {e}")));
    }
    let frame = buf.split_to(span.len).freeze();
    let mut fresh = BytesMut::with_capacity(READ_CHUNK.max(buf.len()));
    fresh.extend_from_slice(buf);
    *buf = fresh;
    let body = frame.slice(span.body.clone());
    let body_len = body.len();
    let _slot = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Err(Ending::Shutdown),
        permit = broker.large_body_slots.acquire() => permit.map_err(|_| Ending::Shutdown)?,
    };
    let job_topic = topic.clone();
    let job = tokio::task::spawn_blocking(move || build_evt_frame(&job_topic, &body));
    let built = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Err(Ending::Shutdown),
        built = job => built,
    };
    drop(frame);
    // The PUB frame is gone: its room in the read budget can be given back
    // unless what followed it is itself a large partial frame.
    if buf.len() <= READ_CHUNK {
        held.broker.read_budget.release(std::mem::take(&mut held.bytes));
    }
    match built {
        Ok(Ok(evt)) => Ok(broker.route_built(conn, routes, &topic, evt, body_len)),
        Ok(Err(e)) => Err(publish_refused(e)),
        Err(e) => Err(Ending::Io(std::io::Error::other(format!("validating a large body failed: {e}")))),
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

/// Apply one frame (`span` within `buf`): `Ok` is the routing work it
/// cost, `Err` ends the connection.
fn handle_frame(
    broker: &Broker,
    conn: &ConnHandle,
    routes: &mut RouteCache,
    stamp: &Stamp,
    span: &FrameSpan,
    buf: &[u8],
    name: &mut String,
) -> Result<usize, Ending> {
    let (verb, arg, body) = (span.verb, span.arg_str(buf), &buf[span.body.clone()]);
    let hostile = |reason: String| Err(Ending::Hostile(reason));
    match verb {
        Verb::Pub => {
            if let Err(e) = validate_topic(arg) {
                return hostile(format!("PUB to invalid topic: {e}"));
            }
            return broker.publish_from(conn, routes, arg, body, stamp).map_err(publish_refused);
        }
        Verb::Sub | Verb::Unsub => {
            if let Err(e) = validate_pattern(arg) {
                return hostile(format!("{verb} with invalid pattern: {e}"));
            }
            if let Err(e) = check_json_object(body) {
                return hostile(e.to_string());
            }
            // Charged for the tokens and cached topics walked (see `cost`).
            if verb == Verb::Sub {
                return match broker.subscribe_counted(conn.id, arg) {
                    Ok((_, work)) => Ok(work),
                    Err(e) => Err(Ending::OverLimit(format!("SUB refused: {e}"))),
                };
            }
            return Ok(broker.unsubscribe_counted(conn.id, arg).1);
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
    Ok(cost::FRAME)
}

/// Drain the connection's queue, handing everything taken to the kernel in
/// one write per batch: under load that is one syscall for many events. A
/// batch with a large frame goes out with vectored writes, without a copy
/// into the staging buffer (the frames are shared with every other
/// subscriber of the event, and a 1 MB event would otherwise be copied
/// once more per subscriber).
async fn write_loop(broker: Arc<Broker>, conn: Arc<ConnHandle>, mut writer: OwnedWriteHalf) {
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let mut staging = BytesMut::new();
    while conn.queue.drain_bytes_into(&mut batch, WRITE_BATCH_BYTES).await {
        // Only EVT frames count as deliveries (BYE is also queued here).
        let events = batch.iter().filter(|f| f.starts_with(b"EVT ")).count() as u64;
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        let written = if batch.iter().all(|f| f.len() < VECTORED_FRAME) {
            // Small frames: one copy into a staging buffer and one plain
            // write is as cheap as the kernel walking hundreds of iovecs
            // (writev of every small frame measured slower 1 -> 4: 2.35-2.81 M/s
            // against 2.61-3.44 M/s copied, BENCHMARKS.md), so keep it for
            // ordinary traffic.
            staging.clear();
            for frame in batch.drain(..) {
                staging.extend_from_slice(&frame);
            }
            let result = writer.write_all(&staging).await;
            if staging.capacity() > 4 * READ_CHUNK {
                staging = BytesMut::new();
            }
            result
        } else {
            write_batch(&mut writer, &mut batch).await
        };
        if let Err(e) = written {
            tracing::debug!(peer = %conn.label, error = %e, "write failed; closing");
            return;
        }
        broker.counters.delivered.fetch_add(events, Ordering::Relaxed);
        if bytes >= WRITE_YIELD_BYTES {
            tokio::task::yield_now().await;
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

/// Write every frame of `batch` (emptying it), up to [`MAX_IOVECS`] frames
/// per `writev`, resuming partial writes mid-frame.
async fn write_batch(writer: &mut OwnedWriteHalf, batch: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !batch.is_empty() {
        // A fresh slice vector per writev: one allocation per hundreds of
        // frames, simpler than keeping borrowed slices across writes.
        let iov: Vec<IoSlice<'_>> = batch.iter().take(MAX_IOVECS).map(|f| IoSlice::new(f)).collect();
        let written = writer.write_vectored(&iov).await?;
        drop(iov);
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        while left > 0 {
            let Some(front) = batch.front_mut() else { break };
            if front.len() <= left {
                left -= front.len();
                batch.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(verb_line: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!("{verb_line}\n").into_bytes();
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// A daemon connection over a socket pair: the client end.
    fn serve(broker: &Arc<Broker>, shutdown: &CancellationToken) -> UnixStream {
        let (client, server) = UnixStream::pair().unwrap();
        tokio::spawn(serve_connection(broker.clone(), server, shutdown.clone()));
        client
    }

    /// Read EVT frames off `sock` until `n` have arrived: (topic, body).
    async fn read_events(sock: &mut UnixStream, n: usize) -> Vec<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 65_536];
        while out.len() < n {
            let got = tokio::time::timeout(Duration::from_secs(20), sock.read(&mut chunk)).await.unwrap().unwrap();
            assert!(got > 0, "connection closed after {} events", out.len());
            buf.extend_from_slice(&chunk[..got]);
            while let Ok(Scan::Frame(span)) = FrameSpan::scan(&buf) {
                out.push((span.arg_str(&buf).to_owned(), buf[span.body.clone()].to_vec()));
                buf.drain(..span.len);
            }
        }
        out
    }

    /// A body large enough to be validated off the routing thread keeps
    /// its place among the connection's other frames, and arrives intact.
    #[tokio::test]
    async fn large_bodies_validated_off_thread_keep_their_order() {
        let broker = Arc::new(Broker::new(64));
        let shutdown = CancellationToken::new();
        let mut sub = serve(&broker, &shutdown);
        sub.write_all(&frame("SUB t.>", b"")).await.unwrap();
        while broker.stats().subscriptions == 0 {
            tokio::task::yield_now().await;
        }
        let mut publisher = serve(&broker, &shutdown);
        let pad = "x".repeat(OFFLOAD_BODY * 2);
        let big = format!(r#"{{"type":"big","payload":{{"pad":"{pad}"}}}}"#);
        let mut bytes = frame("PUB t.a", br#"{"type":"a"}"#);
        bytes.extend_from_slice(&frame("PUB t.b", big.as_bytes()));
        bytes.extend_from_slice(&frame("PUB t.c", br#"{"type":"c"}"#));
        publisher.write_all(&bytes).await.unwrap();
        let got = read_events(&mut sub, 3).await;
        let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, ["t.a", "t.b", "t.c"]);
        let env = crate::envelope::Envelope::from_slice(&got[1].1).unwrap();
        assert_eq!(env.payload["pad"].as_str().map(str::len), Some(pad.len()));
        shutdown.cancel();
    }

    /// A large body that is not valid JSON closes its connection like a
    /// small one does, and nothing is published.
    #[tokio::test]
    async fn large_invalid_body_closes_only_its_connection() {
        let broker = Arc::new(Broker::new(64));
        let shutdown = CancellationToken::new();
        let mut hostile = serve(&broker, &shutdown);
        let mut body = vec![b'{'; 1];
        body.extend(std::iter::repeat_n(b'"', OFFLOAD_BODY * 2));
        hostile.write_all(&frame("PUB t.bad", &body)).await.unwrap();
        let mut rest = Vec::new();
        match tokio::time::timeout(Duration::from_secs(20), hostile.read_to_end(&mut rest)).await.unwrap() {
            Ok(n) => assert_eq!(n, 0, "a hostile connection gets no BYE, just closed"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        assert_eq!(broker.stats().published, 0);
        // Everyone else is still served.
        let mut other = serve(&broker, &shutdown);
        other.write_all(&frame("PUB ok.x", b"{}")).await.unwrap();
        while broker.stats().published == 0 {
            tokio::task::yield_now().await;
        }
        shutdown.cancel();
    }

    /// Vectored writes resume mid-frame: frames of every size, through a
    /// socket with a small send buffer read back slowly, arrive byte for
    /// byte in order.
    #[tokio::test]
    async fn vectored_writes_deliver_every_byte_in_order() {
        let (a, mut b) = UnixStream::pair().unwrap();
        nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
        let (_r, mut w) = a.into_split();
        let mut batch = VecDeque::new();
        let mut expected = Vec::new();
        for i in 0..3000usize {
            let len = [1, 7, 250, 4096, 70_000][i % 5];
            let frame: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            expected.extend_from_slice(&frame);
            batch.push_back(Bytes::from(frame));
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 3000];
            loop {
                let n = b.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&chunk[..n]);
            }
        });
        write_batch(&mut w, &mut batch).await.unwrap();
        assert!(batch.is_empty());
        w.shutdown().await.unwrap();
        drop(w);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes arrived out of order or damaged");
    }
}
