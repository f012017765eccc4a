//! The UNIX-socket client ([`UnixBus`]), what every worker uses to talk to
//! `decnet bus`.
//!
//! One connection per `UnixBus` (clones share it), opened lazily on first
//! use, exactly once even when many tasks race to use it first. A single
//! *link task* owns the socket: publishers hand it encoded frames through a
//! channel and it writes everything pending in one syscall; it reads EVT
//! frames and fans each one out to the local subscriptions whose pattern
//! matches (the daemon sends one EVT per connection, however many local
//! subscriptions want it).
//!
//! When the daemon goes away the link task reconnects with capped backoff
//! (≤ 1 s between tries), re-sends HELLO and one SUB per subscribed
//! pattern, and events resume on the same [`Subscription`] streams.
//! Publishes while disconnected are dropped and counted: the bus is
//! at-most-once and the database is the source of truth, so an unbounded
//! replay buffer would only hide the outage and grow memory.

use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::bus::{Bus, BusError, RawEvent, Subscription};
use crate::envelope::pub_body;
use crate::frame::{encode_frame, FrameSpan, Scan, Verb};
use crate::queue::EventQueue;
use crate::topic::{pattern_matches, validate_pattern, validate_topic};

/// Frames waiting for the link task before publishers wait for it.
const COMMAND_CAPACITY: usize = 4096;
/// Backoff between reconnect attempts: doubles from the first to the cap.
const RECONNECT_FIRST: Duration = Duration::from_millis(20);
const RECONNECT_CAP: Duration = Duration::from_secs(1);
/// How long `close()` waits for pending frames to be written.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Reconnect and resubscribe when the daemon goes away (default). When
    /// false, losing the daemon ends every subscription and closes the bus.
    pub reconnect: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { reconnect: true }
    }
}

enum Command {
    Frame(Bytes),
    /// Answered once every frame sent before it has been written.
    Flush(oneshot::Sender<()>),
    /// Write what is pending, say BYE and stop.
    Close(oneshot::Sender<()>),
}

struct LocalSub {
    pattern: String,
    queue: Arc<EventQueue<RawEvent>>,
}

/// Local subscriptions, shared by the handles (which add and remove) and
/// the link task (which fans out and resubscribes).
#[derive(Default)]
struct SubTable {
    next_id: u64,
    subs: HashMap<u64, LocalSub>,
    /// Local subscriptions per pattern: SUB on 0→1, UNSUB on 1→0.
    patterns: HashMap<String, usize>,
}

struct Shared {
    name: String,
    path: PathBuf,
    options: ClientOptions,
    subs: Mutex<SubTable>,
    /// Bumped on every change of `subs`, so the reader's fan-out cache knows when to refresh.
    generation: AtomicU64,
    connected: AtomicBool,
    closed: AtomicBool,
    closed_publish_warned: AtomicBool,
    dropped_while_disconnected: AtomicU64,
}

impl Shared {
    fn subs(&self) -> std::sync::MutexGuard<'_, SubTable> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end_all_subscriptions(&self) {
        let mut table = self.subs();
        for sub in table.subs.values() {
            sub.queue.close();
        }
        table.subs.clear();
        self.generation.fetch_add(1, Ordering::Release);
        table.patterns.clear();
    }
}

/// A bus client over the daemon's UNIX socket. Cheap to clone.
#[derive(Clone)]
pub struct UnixBus {
    shared: Arc<Shared>,
    link: Arc<OnceCell<mpsc::Sender<Command>>>,
}

impl std::fmt::Debug for UnixBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixBus").field("name", &self.shared.name).field("path", &self.shared.path).finish()
    }
}

impl UnixBus {
    /// A client that connects on first use.
    pub fn new(client_name: &str, path: impl Into<PathBuf>) -> UnixBus {
        Self::with_options(client_name, path, ClientOptions::default())
    }

    pub fn with_options(client_name: &str, path: impl Into<PathBuf>, options: ClientOptions) -> UnixBus {
        UnixBus {
            shared: Arc::new(Shared {
                name: sanitize_name(client_name),
                path: path.into(),
                options,
                subs: Mutex::new(SubTable::default()),
                generation: AtomicU64::new(0),
                connected: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                closed_publish_warned: AtomicBool::new(false),
                dropped_while_disconnected: AtomicU64::new(0),
            }),
            link: Arc::new(OnceCell::new()),
        }
    }

    /// Connect now (instead of on first use), failing if the daemon is not there.
    pub async fn connect(client_name: &str, path: impl Into<PathBuf>) -> Result<UnixBus, BusError> {
        let bus = Self::new(client_name, path);
        bus.link().await?;
        Ok(bus)
    }

    pub fn socket_path(&self) -> &Path {
        &self.shared.path
    }

    /// Publishes dropped because the daemon was unreachable at the time.
    pub fn dropped_while_disconnected(&self) -> u64 {
        self.shared.dropped_while_disconnected.load(Ordering::Relaxed)
    }

    /// The link task's channel, connecting first if this is the first use.
    async fn link(&self) -> Result<&mpsc::Sender<Command>, BusError> {
        self.link
            .get_or_try_init(|| async {
                let stream = connect_and_greet(&self.shared).await?;
                let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
                self.shared.connected.store(true, Ordering::Release);
                tokio::spawn(run_link(self.shared.clone(), stream, rx));
                Ok(tx)
            })
            .await
    }

    /// Publish an already-built PUB body (`{"type":..,"payload":..}`): the
    /// fast path for tools that send the same body many times.
    ///
    /// The body must be empty or look like a JSON object (after trimming
    /// ASCII whitespace it starts with `{` and ends with `}`); anything else
    /// is refused with [`FrameError::BodyNotObject`](crate::frame::FrameError::BodyNotObject)
    /// and nothing is sent, because the daemon treats such a frame as hostile
    /// and closes the whole connection. This is only a shape check, to keep
    /// the hot path free of parsing: full JSON validation is the daemon's, so
    /// a body that passes the check but is not valid JSON (or has a
    /// non-string `type`) still gets this connection closed.
    pub async fn publish_raw(&self, topic: &str, body: &[u8]) -> Result<(), BusError> {
        validate_topic(topic)?;
        if !body.is_empty() {
            let trimmed = body.trim_ascii();
            if !(trimmed.starts_with(b"{") && trimmed.ends_with(b"}")) {
                return Err(crate::frame::FrameError::BodyNotObject.into());
            }
        }
        if self.drop_if_closed(topic) {
            return Ok(());
        }
        let mut frame = BytesMut::with_capacity(topic.len() + body.len() + 9);
        encode_frame(Verb::Pub, topic, body, &mut frame)?;
        let tx = self.link().await?;
        if !self.shared.connected.load(Ordering::Acquire) {
            self.shared.dropped_while_disconnected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic, "bus disconnected; publish dropped");
            return Ok(());
        }
        if tx.send(Command::Frame(frame.freeze())).await.is_err() {
            // The link task ended (connection lost without reconnect).
            self.drop_if_closed(topic);
        }
        Ok(())
    }

    /// Wait until everything published so far has been written to the socket.
    pub async fn flush(&self) -> Result<(), BusError> {
        let tx = self.link().await?;
        let (ack, done) = oneshot::channel();
        if tx.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
        Ok(())
    }

    /// True (and logged) when the bus is closed: WARN on the first dropped
    /// publish of this instance, DEBUG after, so a closing worker whose
    /// threads still publish does not flood the log.
    fn drop_if_closed(&self, topic: &str) -> bool {
        if !self.shared.closed.load(Ordering::Acquire) {
            return false;
        }
        if !self.shared.closed_publish_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(client = %self.shared.name, topic, "publish on a closed bus dropped (further drops logged at debug)");
        } else {
            tracing::debug!(client = %self.shared.name, topic, "publish on a closed bus dropped");
        }
        true
    }
}

#[async_trait::async_trait]
impl Bus for UnixBus {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn publish(&self, topic: &str, event_type: &str, payload: serde_json::Value) -> Result<(), BusError> {
        // Refused here, not by the daemon, which would close the whole
        // connection (and every subscription on it) over one bad payload.
        if !(payload.is_object() || payload.is_null()) {
            return Err(crate::frame::FrameError::PayloadNotObject.into());
        }
        self.publish_raw(topic, &pub_body(event_type, &payload)).await
    }

    async fn subscribe_with_capacity(&self, pattern: &str, capacity: usize) -> Result<Subscription, BusError> {
        validate_pattern(pattern)?;
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let tx = self.link().await?;
        let queue = Arc::new(EventQueue::new(capacity));
        let (id, first) = {
            let mut table = self.shared.subs();
            table.next_id += 1;
            let id = table.next_id;
            table.subs.insert(id, LocalSub { pattern: pattern.to_string(), queue: queue.clone() });
            self.shared.generation.fetch_add(1, Ordering::Release);
            let count = table.patterns.entry(pattern.to_string()).or_insert(0);
            *count += 1;
            (id, *count == 1)
        };
        if first && self.shared.connected.load(Ordering::Acquire) {
            // Wait until the SUB is on the wire, so an event published after
            // subscribe() returns is ordered after it at the daemon. (While
            // disconnected, the reconnect re-sends it from the table.)
            let mut frame = BytesMut::new();
            encode_frame(Verb::Sub, pattern, b"", &mut frame)?;
            let (ack, done) = oneshot::channel();
            if tx.send(Command::Frame(frame.freeze())).await.is_ok() && tx.send(Command::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        }

        let shared = Arc::downgrade(&self.shared);
        let weak_tx = tx.downgrade();
        let pattern_owned = pattern.to_string();
        let on_drop = Box::new(move || {
            let Some(shared) = shared.upgrade() else { return };
            let last = {
                let mut table = shared.subs();
                table.subs.remove(&id);
                shared.generation.fetch_add(1, Ordering::Release);
                match table.patterns.get_mut(&pattern_owned) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    Some(_) => {
                        table.patterns.remove(&pattern_owned);
                        true
                    }
                    None => false,
                }
            };
            if last && shared.connected.load(Ordering::Acquire) {
                let mut frame = BytesMut::new();
                if encode_frame(Verb::Unsub, &pattern_owned, b"", &mut frame).is_ok() {
                    if let Some(tx) = weak_tx.upgrade() {
                        // Best effort: if the channel is full the daemon keeps
                        // sending events nobody reads here, which is harmless.
                        let _ = tx.try_send(Command::Frame(frame.freeze()));
                    }
                }
            }
        });
        Ok(Subscription::new(pattern, queue, Some(on_drop)))
    }

    async fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(tx) = self.link.get() {
            let (ack, done) = oneshot::channel();
            if tx.send(Command::Close(ack)).await.is_ok() {
                let _ = tokio::time::timeout(CLOSE_FLUSH, done).await;
            }
        }
        self.shared.connected.store(false, Ordering::Release);
        self.shared.end_all_subscriptions();
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    fn is_connected(&self) -> bool {
        !self.is_closed() && self.shared.connected.load(Ordering::Acquire)
    }
}

/// Client names go in a header line: keep them printable ASCII, no spaces.
fn sanitize_name(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(200).collect();
    if s.is_empty() {
        "anonymous".into()
    } else {
        s
    }
}

async fn connect_and_greet(shared: &Shared) -> Result<UnixStream, BusError> {
    let mut stream = UnixStream::connect(&shared.path)
        .await
        .map_err(|source| BusError::Connect { path: shared.path.display().to_string(), source })?;
    let mut hello = BytesMut::new();
    encode_frame(Verb::Hello, &shared.name, b"", &mut hello)?;
    // Resubscribe in the same write as HELLO (first connect: table is empty).
    let patterns: Vec<String> = shared.subs().patterns.keys().cloned().collect();
    for p in &patterns {
        encode_frame(Verb::Sub, p, b"", &mut hello)?;
    }
    stream.write_all(&hello).await?;
    Ok(stream)
}

enum SessionEnd {
    Closed(Option<oneshot::Sender<()>>),
    Lost(String),
}

/// The link task: run sessions, reconnecting between them, until closed.
async fn run_link(shared: Arc<Shared>, mut stream: UnixStream, mut rx: mpsc::Receiver<Command>) {
    loop {
        match session(&shared, stream, &mut rx).await {
            SessionEnd::Closed(ack) => {
                shared.connected.store(false, Ordering::Release);
                shared.end_all_subscriptions();
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                return;
            }
            SessionEnd::Lost(reason) => {
                shared.connected.store(false, Ordering::Release);
                if !shared.options.reconnect {
                    tracing::warn!(client = %shared.name, reason, "lost the bus; not reconnecting");
                    shared.closed.store(true, Ordering::Release);
                    shared.end_all_subscriptions();
                    return;
                }
                tracing::warn!(client = %shared.name, reason, socket = %shared.path.display(), "lost the bus; reconnecting");
            }
        }
        match reconnect(&shared, &mut rx).await {
            Some(s) => {
                tracing::info!(client = %shared.name, "reconnected to the bus");
                shared.connected.store(true, Ordering::Release);
                stream = s;
            }
            None => {
                shared.end_all_subscriptions();
                return;
            }
        }
    }
}

/// Retry until connected (Some) or closed (None). Commands arriving
/// meanwhile are discarded: publishes are dropped (and counted), and
/// subscription changes are already in the table the reconnect replays.
async fn reconnect(shared: &Shared, rx: &mut mpsc::Receiver<Command>) -> Option<UnixStream> {
    let mut delay = RECONNECT_FIRST;
    loop {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                cmd = rx.recv() => match cmd {
                    None => return None,
                    Some(Command::Close(ack)) => { let _ = ack.send(()); return None; }
                    Some(Command::Flush(ack)) => { let _ = ack.send(()); }
                    Some(Command::Frame(f)) => {
                        if f.starts_with(b"PUB ") {
                            shared.dropped_while_disconnected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                },
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            return None;
        }
        match connect_and_greet(shared).await {
            Ok(stream) => return Some(stream),
            Err(e) => tracing::debug!(error = %e, "reconnect attempt failed"),
        }
        delay = (delay * 2).min(RECONNECT_CAP);
    }
}

/// One connected period: write what publishers send, fan out what arrives.
async fn session(shared: &Shared, stream: UnixStream, rx: &mut mpsc::Receiver<Command>) -> SessionEnd {
    let (mut reader, mut writer) = stream.into_split();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut cmds = Vec::with_capacity(256);
    let mut fanout = Fanout::default();
    let mut spans: Vec<(usize, FrameSpan)> = Vec::with_capacity(512);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut cmds, 1024) => {
                if n == 0 {
                    // Every handle is gone: say goodbye.
                    let _ = write_bye(&mut writer, &mut out).await;
                    return SessionEnd::Closed(None);
                }
                let mut acks = Vec::new();
                let mut close = None;
                for cmd in cmds.drain(..) {
                    match cmd {
                        Command::Frame(f) => out.extend_from_slice(&f),
                        Command::Flush(ack) => acks.push(ack),
                        Command::Close(ack) => close = Some(ack),
                    }
                }
                if let Some(ack) = close {
                    let _ = write_bye(&mut writer, &mut out).await;
                    return SessionEnd::Closed(Some(ack));
                }
                if let Err(e) = writer.write_all(&out).await {
                    return SessionEnd::Lost(format!("write failed: {e}"));
                }
                out.clear();
                for ack in acks {
                    let _ = ack.send(());
                }
            }
            read = reader.read_buf(&mut rbuf) => {
                match read {
                    Ok(0) => return SessionEnd::Lost("the daemon closed the connection".into()),
                    Err(e) => return SessionEnd::Lost(format!("read failed: {e}")),
                    Ok(_) => {}
                }
                // Find every whole frame first, then freeze them as one chunk:
                // each event's body is a slice of it (one refcount bump), not
                // a buffer split of its own.
                let mut consumed = 0usize;
                let mut needed = 0usize;
                while consumed < rbuf.len() {
                    match FrameSpan::scan(&rbuf[consumed..]) {
                        Ok(Scan::Frame(span)) => {
                            let len = span.len;
                            spans.push((consumed, span));
                            consumed += len;
                        }
                        Ok(Scan::Incomplete { needed: n }) => {
                            needed = n;
                            break;
                        }
                        Err(e) => return SessionEnd::Lost(format!("bad frame from the daemon: {e}")),
                    }
                }
                if consumed > 0 {
                    let chunk = rbuf.split_to(consumed).freeze();
                    for (base, span) in spans.drain(..) {
                        match span.verb {
                            Verb::Evt => {
                                let frame = &chunk[base..base + span.len];
                                let body = chunk.slice(base + span.body.start..base + span.body.end);
                                fanout.dispatch(shared, span.arg_str(frame), body);
                            }
                            Verb::Bye => {
                                // A refused publish comes with the reason (docs/protocol.md).
                                let body = &chunk[base + span.body.start..base + span.body.end];
                                let reason = serde_json::from_slice::<serde_json::Value>(body)
                                    .ok()
                                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
                                return SessionEnd::Lost(match reason {
                                    Some(reason) => format!("the daemon said BYE: {reason}"),
                                    None => "the daemon said BYE".into(),
                                });
                            }
                            other => return SessionEnd::Lost(format!("unexpected {other} from the daemon")),
                        }
                    }
                }
                rbuf.reserve(needed.saturating_sub(rbuf.len()));
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(64 * 1024);
                }
                // Let the subscription readers this chunk woke run before the
                // next read: they sit in this worker's LIFO slot, which no
                // other worker can steal, so a busy socket would starve them.
                tokio::task::yield_now().await;
            }
        }
    }
}

async fn write_bye(writer: &mut tokio::net::unix::OwnedWriteHalf, out: &mut BytesMut) -> std::io::Result<()> {
    let _ = encode_frame(Verb::Bye, "", b"", out);
    writer.write_all(out).await?;
    writer.shutdown().await
}

/// Fans EVTs out to the local subscriptions. Streams of events on one
/// topic are the common case, so the matches of the last topic are kept
/// until the topic or the subscription table changes: no pattern matching
/// and no topic allocation per event.
#[derive(Default)]
struct Fanout {
    generation: u64,
    topic: Option<Arc<str>>,
    targets: Vec<Arc<EventQueue<RawEvent>>>,
}

impl Fanout {
    fn dispatch(&mut self, shared: &Shared, topic: &str, body: Bytes) {
        let generation = shared.generation.load(Ordering::Acquire);
        let cached = match &self.topic {
            Some(t) => self.generation == generation && **t == *topic,
            None => false,
        };
        if !cached {
            let table = shared.subs();
            self.generation = generation;
            self.topic = Some(Arc::from(topic));
            self.targets.clear();
            self.targets
                .extend(table.subs.values().filter(|s| pattern_matches(&s.pattern, topic)).map(|s| s.queue.clone()));
        }
        let Some(topic) = &self.topic else { return };
        // A subscription dropped since caching has a closed queue: the push
        // is a no-op. The last one takes `body` itself.
        let Some((last, rest)) = self.targets.split_last() else { return };
        for queue in rest {
            queue.push(RawEvent { topic: topic.clone(), body: body.clone() });
        }
        last.push(RawEvent { topic: topic.clone(), body });
    }
}
