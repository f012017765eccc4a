//! The routing core: who is connected, who wants what, and the counters.
//!
//! A publish runs entirely on the publisher's connection task: validate the
//! body, build the envelope, encode the EVT frame **once**, look up the
//! subscribed connections and push the same `Bytes` (a refcount bump, not a
//! copy) onto each one's drop-oldest queue. Nothing here awaits, so a slow
//! subscriber can never slow a publisher: the worst it can do is lose its
//! own oldest events.
//!
//! Each publishing connection keeps a [`RouteCache`]: topic → the
//! connections to push to, valid while the broker's subscription
//! generation is unchanged. A hit costs one hash lookup and no lock, which
//! matters because a publisher usually repeats a handful of topics. A miss
//! goes to the index under a *read* lock (its own topic cache is updated
//! selectively, see [`crate::index`]), so publishers never queue behind
//! one another; only SUB/UNSUB/disconnect take the write lock.
//!
//! Every operation reports the routing work it cost (see [`super::cost`]:
//! body bytes validated, trie nodes visited, targets pushed, pattern tokens
//! and cached topics walked), so the connection can yield once a slice has
//! cost enough: one client's expensive frames cannot hold the thread for
//! long. For the same reason a disconnect frees its subscriptions a slice
//! at a time ([`Broker::disconnect_begin`]).

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::cost;
use super::limits::{Limits, SubLimitError};
use super::logging::{escape, hostile_limiter, Admit, LogLimiter};
use crate::envelope::{EnvelopeParts, Stamp};
use crate::frame::{FrameError, MAX_BODY_LEN};
use crate::index::{Retiring, SubscriptionIndex};
use crate::queue::{ByteBudget, EventQueue, PushOutcome};

pub type ConnId = u64;

/// Large bodies validated at once off the routing thread: the machine's two
/// cores, more would only queue in the kernel instead of here.
const LARGE_BODY_SLOTS: usize = 2;

/// What a connection's writer sends: already-encoded frames.
pub type OutboundQueue = EventQueue<Bytes>;

/// Per-connection state the router needs.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: ConnId,
    pub label: String,
    pub queue: OutboundQueue,
    /// Set on the first drop of a burst so the burst is logged once.
    pub dropping: AtomicBool,
}

/// Daemon-wide counters, reported in `system.bus.health`.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub connections: u64,
    pub subscriptions: u64,
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Trie nodes the subscriptions use (memory, roughly 100 bytes each).
    pub index_nodes: u64,
    /// Bytes waiting in all outbound queues.
    pub queued_bytes: u64,
}

/// Where each topic a connection publishes on goes, minus the connection
/// itself (no echo). Thrown away whenever any subscription changes, and
/// when it grows past [`RouteCache::MAX_TOPICS`] (a publisher spraying
/// distinct topics only ever costs its own connection a re-lookup).
#[derive(Debug)]
pub struct RouteCache {
    generation: u64,
    // foldhash, not SipHash: SipHash of the topic was ~4 % of the daemon's
    // instructions per event. Hash flooding is no concern here: the keys
    // are the topics of one publisher, and the cache is its own and
    // capped at MAX_TOPICS.
    routes: HashMap<Box<str>, Arc<[Arc<ConnHandle>]>, foldhash::fast::RandomState>,
}

impl RouteCache {
    pub const MAX_TOPICS: usize = 1024;

    pub fn new() -> Self {
        RouteCache { generation: u64::MAX, routes: HashMap::default() }
    }
}

impl Default for RouteCache {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
pub struct Broker {
    index: RwLock<SubscriptionIndex<ConnId>>,
    /// Bumped after every change to who is subscribed to what; route
    /// caches older than this are stale.
    generation: AtomicU64,
    conns: RwLock<HashMap<ConnId, Arc<ConnHandle>>>,
    next_id: AtomicU64,
    queue_capacity: usize,
    limits: Limits,
    /// Bytes in every outbound queue together (`Limits::max_queued_bytes`).
    queued: Arc<ByteBudget>,
    /// Bytes of large half-received frames (`Limits::max_read_bytes`).
    pub read_budget: ByteBudget,
    /// Large PUB bodies being validated off the routing thread at once
    /// (see `connection.rs`): bounds the blocking threads they use.
    pub large_body_slots: tokio::sync::Semaphore,
    /// Hostile-connection log lines (see [`Broker::log_hostile`]).
    hostile_log: LogLimiter,
    pub counters: Counters,
    pub started: Instant,
    /// Busy polling after traffic (`--busy-poll-us`), if turned on.
    pub busy_poll: Option<Arc<super::busy_poll::BusyPoll>>,
}

impl Broker {
    pub fn new(queue_capacity: usize) -> Broker {
        Self::with_limits(queue_capacity, Limits::default())
    }

    pub fn with_limits(queue_capacity: usize, limits: Limits) -> Broker {
        Broker {
            index: RwLock::new(SubscriptionIndex::new()),
            generation: AtomicU64::new(0),
            conns: RwLock::new(HashMap::new()),
            // 0 is reserved for events the daemon publishes itself.
            next_id: AtomicU64::new(1),
            queue_capacity,
            queued: Arc::new(ByteBudget::new(limits.max_queued_bytes)),
            read_budget: ByteBudget::new(limits.max_read_bytes),
            large_body_slots: tokio::sync::Semaphore::new(LARGE_BODY_SLOTS),
            limits,
            hostile_log: hostile_limiter(),
            counters: Counters::default(),
            busy_poll: None,
            started: Instant::now(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, SubscriptionIndex<ConnId>> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, SubscriptionIndex<ConnId>> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Log one line about a client closed for misbehaving, escaped and
    /// rate-limited: a flood of hostile connections costs a few lines and
    /// a "suppressed N" count, never the log.
    pub fn log_hostile(&self, peer: &str, reason: &str, what: &str) {
        match self.hostile_log.admit() {
            Admit::Suppress => {}
            Admit::Log { suppressed } => {
                if suppressed > 0 {
                    tracing::warn!(suppressed, "suppressed {suppressed} hostile-connection log lines");
                }
                tracing::warn!(peer = %escape(peer), reason = %escape(reason), "closing connection: {what}");
            }
        }
    }

    /// Say how many hostile-connection lines were left out, if any (called
    /// periodically so the count appears even when the flood stops).
    pub fn flush_hostile_summary(&self) {
        if let Some(n) = self.hostile_log.take_summary() {
            tracing::warn!(suppressed = n, "suppressed {n} hostile-connection log lines");
        }
    }

    /// Register a new connection and hand back its handle.
    pub fn connect(&self, peer: &str) -> Arc<ConnHandle> {
        self.connect_with_capacity(peer, self.queue_capacity)
    }

    /// Register an in-process connection with its own queue bound (the NATS
    /// bridge: its queue *is* the export queue, sized by `--nats-queue`).
    pub fn connect_with_capacity(&self, peer: &str, capacity: usize) -> Arc<ConnHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnHandle {
            id,
            label: format!("conn#{id} {peer}"),
            queue: EventQueue::with_bytes(capacity, self.limits.queue_bytes, Bytes::len, Some(self.queued.clone())),
            dropping: AtomicBool::new(false),
        });
        self.conns.write().unwrap_or_else(|e| e.into_inner()).insert(id, handle.clone());
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        handle
    }

    /// Forget a connection and all its subscriptions, all at once (for
    /// in-process connections with a few patterns; client connections use
    /// [`disconnect_begin`](Self::disconnect_begin)).
    pub fn disconnect(&self, id: ConnId) {
        let mut retiring = self.disconnect_begin(id);
        while !self.disconnect_step(&mut retiring, usize::MAX) {}
    }

    /// Forget a connection now (nothing is routed to it any more) and start
    /// freeing its subscriptions; finish with
    /// [`disconnect_step`](Self::disconnect_step), yielding between steps.
    /// A connection may hold 10,000 patterns of 200 tokens: freeing those
    /// million trie nodes at once held the routing thread for tens of
    /// milliseconds (issue 15's `big-patterns` soak load).
    pub fn disconnect_begin(&self, id: ConnId) -> Retiring<ConnId> {
        // Out of the map first: a lookup that still finds the id in the
        // trie skips it (see `resolve`).
        if self.conns.write().unwrap_or_else(|e| e.into_inner()).remove(&id).is_some() {
            self.counters.connections.fetch_sub(1, Ordering::Relaxed);
        }
        let retiring = self.index_mut().retire(id);
        self.bump_generation();
        retiring
    }

    /// Free up to about `budget` work of a disconnected connection's
    /// subscriptions. True once all are freed.
    pub fn disconnect_step(&self, retiring: &mut Retiring<ConnId>, budget: usize) -> bool {
        let done = {
            let mut index = self.index_mut();
            index.retire_step(retiring, budget / cost::TOKEN.max(1));
            retiring.is_done()
        };
        if done {
            self.bump_generation();
        }
        done
    }

    /// Add a subscription within the limits. `Ok(false)`: already held.
    /// The pattern must already be validated.
    pub fn subscribe(&self, id: ConnId, pattern: &str) -> Result<bool, SubLimitError> {
        self.subscribe_counted(id, pattern).map(|(added, _)| added)
    }

    /// [`subscribe`](Self::subscribe), also returning the work it cost.
    pub fn subscribe_counted(&self, id: ConnId, pattern: &str) -> Result<(bool, usize), SubLimitError> {
        self.limits.check_pattern(pattern)?;
        let mut index = self.index_mut();
        if index.contains(id, pattern) {
            return Ok((false, cost::FRAME));
        }
        let held = index.len_of(id);
        if held >= self.limits.max_subs_per_conn {
            return Err(SubLimitError::TooManySubs(held));
        }
        // At most one new node per token: refuse before building any. One
        // connection gets a fair share, and the last share of the index
        // is kept for small subscribers (see `limits`).
        let tokens = pattern.split('.').count();
        self.limits.check_index_room(index.tokens_of(id), tokens, index.node_count())?;
        let (added, walked) = index.insert_counted(id, pattern);
        drop(index);
        self.bump_generation();
        Ok((added, cost::subscription(tokens, walked.saturating_sub(tokens))))
    }

    pub fn unsubscribe(&self, id: ConnId, pattern: &str) -> bool {
        self.unsubscribe_counted(id, pattern).0
    }

    /// [`unsubscribe`](Self::unsubscribe), also returning the work it cost.
    pub fn unsubscribe_counted(&self, id: ConnId, pattern: &str) -> (bool, usize) {
        let (removed, walked) = self.index_mut().remove_counted(id, pattern);
        if removed {
            self.bump_generation();
        }
        let tokens = pattern.split('.').count();
        (removed, cost::subscription(tokens, walked.saturating_sub(tokens)))
    }

    /// After the index changed: a publisher that read the old generation
    /// before its lookup re-resolves on its next publish.
    fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The connections `topic` goes to, excluding `from`, and the trie
    /// nodes visited to find them.
    fn resolve(&self, from: Option<ConnId>, topic: &str) -> (Arc<[Arc<ConnHandle>]>, usize) {
        let (ids, visited) = self.index().lookup_counted(topic);
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        let targets = ids.iter().filter(|id| Some(**id) != from).filter_map(|id| conns.get(id).cloned()).collect();
        (targets, visited)
    }

    /// Route one PUB from a client connection, through its route cache.
    /// Same contract as [`Broker::publish`]; `Ok` carries the work done
    /// (see [`cost::publish`]).
    pub fn publish_from(
        &self,
        from: &ConnHandle,
        cache: &mut RouteCache,
        topic: &str,
        body: &[u8],
        stamp: &Stamp,
    ) -> Result<usize, FrameError> {
        let frame = build_evt_frame_at(topic, body, stamp)?;
        Ok(self.route_built(from, cache, topic, frame, body.len()))
    }

    /// Route an EVT frame already built by [`build_evt_frame`] (off the
    /// routing thread, for a large body) from a client connection; returns
    /// the work done, counting `body_len` as [`publish_from`](Self::publish_from) would.
    pub fn route_built(
        &self,
        from: &ConnHandle,
        cache: &mut RouteCache,
        topic: &str,
        frame: Bytes,
        body_len: usize,
    ) -> usize {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.load(Ordering::Acquire);
        if cache.generation != generation || cache.routes.len() >= RouteCache::MAX_TOPICS {
            cache.routes.clear();
            cache.generation = generation;
        }
        // A hit borrows the cached list: no refcount traffic per event.
        if let Some(targets) = cache.routes.get(topic) {
            self.deliver(frame, targets);
            return cost::publish(body_len, 0, targets.len());
        }
        let (targets, visited) = self.resolve(Some(from.id), topic);
        self.deliver(frame, &targets);
        let work = cost::publish(body_len, visited, targets.len());
        cache.routes.insert(topic.into(), targets);
        work
    }

    /// Route one PUB. `from` is never delivered to (no echo). Errors are
    /// body faults that make the publisher's connection hostile.
    pub fn publish(&self, from: Option<ConnId>, topic: &str, body: &[u8]) -> Result<(), FrameError> {
        // Validate and build even when nobody listens: a hostile body must
        // be refused the same way whether or not anyone is subscribed.
        let frame = build_evt_frame(topic, body)?;
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        self.deliver(frame, &self.resolve(from, topic).0);
        Ok(())
    }

    /// Deliver an envelope built elsewhere (an event imported from another
    /// host: its id, ts and origin must survive) to the local subscribers
    /// of `topic`, never to `from`. The bridge passes its own connection,
    /// which is what keeps an import from being exported again.
    ///
    /// The caller has validated `topic` and `envelope` (a JSON object that
    /// DECNET's clients can parse); this only refuses what would break the
    /// frame: an envelope over the 1 MiB every client enforces.
    pub fn publish_envelope(&self, from: Option<ConnId>, topic: &str, envelope: &[u8]) -> Result<(), FrameError> {
        if envelope.len() > MAX_BODY_LEN {
            return Err(FrameError::EnvelopeTooLarge(envelope.len()));
        }
        let mut frame = BytesMut::with_capacity(10 + topic.len() + envelope.len());
        frame.put_slice(b"EVT ");
        frame.put_slice(topic.as_bytes());
        frame.put_u8(b'\n');
        frame.put_u32(envelope.len() as u32);
        frame.put_slice(envelope);
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        self.deliver(frame.freeze(), &self.resolve(from, topic).0);
        Ok(())
    }

    /// Push the same frame onto each target's queue: a refcount bump each,
    /// and the last target takes the frame itself (no bump at all 1→1).
    fn deliver(&self, frame: Bytes, targets: &[Arc<ConnHandle>]) {
        let Some((last, rest)) = targets.split_last() else { return };
        for conn in rest {
            self.push(conn, frame.clone());
        }
        self.push(last, frame);
    }

    fn push(&self, conn: &ConnHandle, frame: Bytes) {
        let (outcome, dropped) = conn.queue.push_counted(frame);
        if outcome == PushOutcome::DroppedOldest {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            if !conn.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    peer = %conn.label,
                    queue = self.queue_capacity,
                    "subscriber is not keeping up: its queue is full, dropping its oldest events"
                );
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            subscriptions: self.index().len() as u64,
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            index_nodes: self.index().node_count() as u64,
            queued_bytes: self.queued.used() as u64,
        }
    }

    /// Every live connection (used to say BYE on shutdown).
    pub fn connections(&self) -> Vec<Arc<ConnHandle>> {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// The whole `EVT <topic>` frame for one publish, envelope written in
/// place: one allocation per event, shared by every subscriber. The topic
/// must be valid (checked by the caller); the body is validated here.
pub fn build_evt_frame(topic: &str, body: &[u8]) -> Result<Bytes, FrameError> {
    build_evt_frame_at(topic, body, &Stamp::now())
}

/// [`build_evt_frame`] with the envelope's `ts` given (the daemon reads
/// the clock once per socket read, see [`crate::envelope`]).
pub fn build_evt_frame_at(topic: &str, body: &[u8], stamp: &Stamp) -> Result<Bytes, FrameError> {
    let parts = EnvelopeParts::new(topic, body)?;
    let envelope_len = parts.encoded_len(stamp);
    // SPEC §2: a PUB body near 1 MiB plus the envelope's keys, id, ts and
    // topic can exceed the frame limit every client enforces on what it
    // receives. Such an event is never sent; its PUB is refused.
    if envelope_len > MAX_BODY_LEN {
        return Err(FrameError::EnvelopeTooLarge(envelope_len));
    }
    // The topic was validated (ASCII, no line break, no longer than the PUB
    // header it came in), so the EVT header is valid by construction. The
    // frame is allocated at its exact size: frozen with no spare capacity,
    // it becomes a `Bytes` without a second allocation.
    let frame_len = 4 + topic.len() + 1 + 4 + envelope_len;
    let mut frame = BytesMut::with_capacity(frame_len);
    frame.put_slice(b"EVT ");
    frame.put_slice(topic.as_bytes());
    frame.put_u8(b'\n');
    frame.put_u32(envelope_len as u32);
    parts.write(stamp, &mut frame);
    debug_assert_eq!(frame.len(), frame_len);
    Ok(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(conn: &ConnHandle) -> Vec<Bytes> {
        let mut out = std::collections::VecDeque::new();
        conn.queue.try_drain_into(&mut out);
        out.into()
    }

    #[test]
    fn routes_without_echo_and_counts() {
        let b = Broker::new(4);
        let a = b.connect("a");
        let c = b.connect("c");
        b.subscribe(a.id, "x.>").unwrap();
        b.subscribe(c.id, "x.*").unwrap();
        b.publish(Some(a.id), "x.y", br#"{"type":"t"}"#).unwrap();
        assert!(drain(&a).is_empty(), "publisher must not receive its own event");
        let got = drain(&c);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with(b"EVT x.y\n"));
        assert_eq!(b.stats().published, 1);
        assert_eq!(b.stats().subscriptions, 2);
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let b = Broker::new(2);
        let s = b.connect("s");
        b.subscribe(s.id, ">").unwrap();
        for i in 0..5 {
            b.publish(None, "t", format!(r#"{{"payload":{{"i":{i}}}}}"#).as_bytes()).unwrap();
        }
        let got = drain(&s);
        assert_eq!(got.len(), 2);
        assert!(String::from_utf8_lossy(&got[1]).contains(r#""i":4"#));
        assert_eq!(b.stats().dropped, 3);
    }

    #[test]
    fn disconnect_forgets_subscriptions() {
        let b = Broker::new(2);
        let s = b.connect("s");
        b.subscribe(s.id, "a").unwrap();
        b.subscribe(s.id, "b.>").unwrap();
        assert_eq!(b.stats().index_nodes, 2);
        b.disconnect(s.id);
        assert_eq!(b.stats().subscriptions, 0);
        assert_eq!(b.stats().index_nodes, 0);
        assert_eq!(b.stats().connections, 0);
    }

    #[test]
    fn evt_frame_parses_back_to_the_envelope() {
        let frame = build_evt_frame("a.b", br#"{"type":"t","payload":{"k":1}}"#).unwrap();
        let mut buf = BytesMut::from(&frame[..]);
        let parsed = crate::frame::Frame::parse(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!((parsed.verb, parsed.arg.as_str()), (crate::frame::Verb::Evt, "a.b"));
        let env = crate::envelope::Envelope::from_slice(&parsed.body).unwrap();
        assert_eq!(env.payload, serde_json::json!({"k": 1}));
    }

    #[test]
    fn subscription_limits_are_enforced() {
        let limits = Limits { max_subs_per_conn: 2, max_index_nodes: 6, ..Limits::default() };
        let b = Broker::with_limits(4, limits);
        let s = b.connect("s");
        assert_eq!(b.subscribe(s.id, "a.b"), Ok(true));
        assert_eq!(b.subscribe(s.id, "a.b"), Ok(false), "a repeat costs nothing");
        assert_eq!(b.subscribe(s.id, &"x".repeat(1025)), Err(SubLimitError::PatternTooLong(1025, 1024)));
        assert_eq!(b.subscribe(s.id, "c.d.e.f.g"), Err(SubLimitError::IndexFull(2)));
        assert_eq!(b.subscribe(s.id, "c.d"), Ok(true));
        assert_eq!(b.subscribe(s.id, "e"), Err(SubLimitError::TooManySubs(2)));
        let t = b.connect("t");
        assert_eq!(b.subscribe(t.id, "a.b"), Ok(true), "shared nodes are free");
    }

    /// Issue 25: one connection subscribing as much as it may leaves room
    /// for new subscribers (before, it could fill the whole index, and
    /// every later SUB was refused with "index full").
    #[test]
    fn one_connection_cannot_take_the_whole_index() {
        let limits = Limits { max_index_nodes: 80_000, ..Limits::default() };
        let b = Broker::with_limits(4, limits);
        let hog = |name: &str| {
            let c = b.connect(name);
            let mut refused = None;
            for i in 0..1000 {
                let pattern: Vec<String> = (0..100).map(|t| format!("{name}{i}t{t}")).collect();
                if let Err(e) = b.subscribe(c.id, &pattern.join(".")) {
                    refused = Some(e);
                    break;
                }
            }
            refused.expect("a hog is stopped")
        };
        assert!(matches!(hog("a"), SubLimitError::OverFairShare(_, 10_000)));
        assert!(b.stats().index_nodes <= 10_000);
        // Greedy connections stop at the reserve...
        for name in ["b", "c", "d", "e", "f", "g"] {
            hog(name);
        }
        assert!(matches!(hog("h"), SubLimitError::IndexReserved(_)));
        // ...and a newcomer with a worker's patterns still gets in.
        let worker = b.connect("worker");
        for p in ["system.*.health", "decky.>", "topology.*.status", "attacker.>"] {
            assert_eq!(b.subscribe(worker.id, p), Ok(true), "{p}");
        }
    }

    #[test]
    fn queues_are_bounded_by_bytes_too() {
        let limits = Limits { queue_bytes: 4096, ..Limits::default() };
        let b = Broker::with_limits(1024, limits);
        let s = b.connect("s");
        b.subscribe(s.id, ">").unwrap();
        let pad = "x".repeat(1000);
        for _ in 0..20 {
            b.publish(None, "t", format!(r#"{{"payload":{{"p":"{pad}"}}}}"#).as_bytes()).unwrap();
        }
        assert!(s.queue.len() <= 4, "{} queued", s.queue.len());
        assert!(b.stats().queued_bytes <= 4096 + 1200);
        assert_eq!(b.stats().dropped, 20 - s.queue.len() as u64);
        b.disconnect(s.id);
        s.queue.clear();
        assert_eq!(b.stats().queued_bytes, 0);
    }

    #[test]
    fn prebuilt_envelope_reaches_others_but_not_its_sender() {
        let b = Broker::new(4);
        let bridge = b.connect_with_capacity("bridge", 2);
        let local = b.connect("local");
        b.subscribe(bridge.id, "x.>").unwrap();
        b.subscribe(local.id, "x.>").unwrap();
        let env = br#"{"v":1,"id":"abc","topic":"x.y","type":"t","ts":1.5,"payload":{},"origin":"h2"}"#;
        b.publish_envelope(Some(bridge.id), "x.y", env).unwrap();
        assert!(drain(&bridge).is_empty(), "an import must not go back to the bridge");
        let got = drain(&local);
        assert_eq!(got.len(), 1);
        let mut buf = BytesMut::from(&got[0][..]);
        let frame = crate::frame::Frame::parse(&mut buf).unwrap().unwrap();
        assert_eq!(&frame.body[..], &env[..], "the envelope is delivered byte for byte");
        assert_eq!(bridge.queue.capacity(), 2);
        let huge = vec![b' '; MAX_BODY_LEN + 1];
        assert_eq!(b.publish_envelope(None, "x.y", &huge), Err(FrameError::EnvelopeTooLarge(MAX_BODY_LEN + 1)));
    }

    #[test]
    fn disconnect_stops_routing_at_once_and_frees_in_bounded_steps() {
        let b = Broker::new(16);
        let stay = b.connect("stay");
        b.subscribe(stay.id, "keep.>").unwrap();
        let baseline = b.stats();
        let big = b.connect("big");
        for i in 0..300 {
            b.subscribe(big.id, &format!("p{i}.a.b.c.d.e.f.g.h.i")).unwrap();
        }
        b.subscribe(big.id, ">").unwrap();
        let mut retiring = b.disconnect_begin(big.id);
        b.publish(None, "p1.a.b.c.d.e.f.g.h.i", b"{}").unwrap();
        assert!(drain(&big).is_empty(), "nothing is routed to a connection being retired");
        assert_eq!(b.stats().connections, 1);
        let mut steps = 0;
        let mut last = b.stats();
        // 100 units = 8 tokens a step: one pattern of 10 tokens.
        while !b.disconnect_step(&mut retiring, 100) {
            steps += 1;
            let now = b.stats();
            assert!(now.index_nodes < last.index_nodes && now.subscriptions < last.subscriptions);
            last = now;
        }
        assert!(steps >= 50, "freed in {steps} steps, not bounded ones");
        let end = b.stats();
        assert_eq!((end.subscriptions, end.index_nodes), (baseline.subscriptions, baseline.index_nodes));
        b.publish(None, "keep.x", b"{}").unwrap();
        assert_eq!(drain(&stay).len(), 1);
    }

    #[test]
    fn subscriptions_are_charged_by_tokens_and_cached_topics() {
        let b = Broker::new(16);
        let s = b.connect("s");
        let (_, short) = b.subscribe_counted(s.id, "a.b").unwrap();
        let long: String = (0..200).map(|i| format!("t{i}")).collect::<Vec<_>>().join(".");
        let (_, deep) = b.subscribe_counted(s.id, &long).unwrap();
        assert!(deep >= short + 198 * cost::TOKEN, "{deep} vs {short}");
        // Fill the index's topic cache: every SUB now checks each entry.
        for i in 0..1000 {
            b.publish(None, &format!("topic.{i}"), b"{}").unwrap();
        }
        let (_, against_cache) = b.subscribe_counted(s.id, "c.d").unwrap();
        assert!(against_cache >= short + 1000 * cost::CACHE_ENTRY, "{against_cache} vs {short}");
        let (_, unsub) = b.unsubscribe_counted(s.id, "c.d");
        assert!(unsub >= 1000 * cost::CACHE_ENTRY);
    }

    #[test]
    fn publish_is_charged_by_body_size() {
        let b = Broker::new(16);
        let p = b.connect("p");
        let mut routes = RouteCache::new();
        let small = b.publish_from(&p, &mut routes, "t", b"{}", &Stamp::now()).unwrap();
        let body = format!(r#"{{"payload":{{"pad":"{}"}}}}"#, "x".repeat(100_000));
        let large = b.publish_from(&p, &mut routes, "t", body.as_bytes(), &Stamp::now()).unwrap();
        assert!(large >= 100_000 / cost::BODY_BYTES_PER_UNIT && small < 100, "{large} vs {small}");
    }

    /// SPEC §2: a PUB body within the 1 MiB limit whose envelope would not
    /// be is refused, and nothing is published; one a few bytes smaller
    /// goes out as an EVT of at most 1 MiB.
    #[test]
    fn an_envelope_over_the_frame_limit_is_never_built() {
        let b = Broker::new(4);
        let s = b.connect("s");
        b.subscribe(s.id, ">").unwrap();
        let body = |len: usize| {
            let mut body = br#"{"type":"big","payload":{"pad":""#.to_vec();
            body.resize(len - 3, b'x');
            body.extend_from_slice(br#""}}"#);
            body
        };
        let at_limit = body(MAX_BODY_LEN);
        assert!(matches!(b.publish(None, "t", &at_limit), Err(FrameError::EnvelopeTooLarge(n)) if n > MAX_BODY_LEN));
        assert_eq!(b.stats().published, 0);
        assert!(drain(&s).is_empty());
        // The envelope adds about 110 bytes for a one-letter topic.
        let fits = body(MAX_BODY_LEN - 200);
        b.publish(None, "t", &fits).unwrap();
        let got = drain(&s);
        let mut buf = BytesMut::from(&got[0][..]);
        let frame = crate::frame::Frame::parse(&mut buf).unwrap().unwrap();
        assert!(frame.body.len() <= MAX_BODY_LEN);
    }

    #[test]
    fn hostile_body_is_refused_even_without_subscribers() {
        let b = Broker::new(2);
        assert_eq!(b.publish(None, "a", b"[1]"), Err(FrameError::BodyNotObject));
        assert_eq!(b.stats().published, 0);
    }
}
