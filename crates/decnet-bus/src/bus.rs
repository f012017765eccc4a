//! The [`Bus`] trait every transport implements, and the [`Subscription`]
//! stream they all hand out.
//!
//! Workers hold an `Arc<dyn Bus>` and never care whether it is the UNIX
//! socket client, the in-process `FakeBus` or the `NullBus`; tests swap one
//! for another through `get_bus` and the environment.

use bytes::Bytes;
use futures_core::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::envelope::Envelope;
use crate::queue::EventQueue;
use crate::topic::TopicError;

/// Default bound of a subscription's local queue (drop-oldest when full).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("bus is closed")]
    Closed,
    #[error("cannot connect to bus at {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bus I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
    #[error("invalid bus configuration: {0}")]
    Config(String),
}

/// One event as it travels inside a process: the routed topic and the
/// envelope JSON bytes, shared (not copied) between subscriptions.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub topic: Arc<str>,
    pub body: Bytes,
}

impl RawEvent {
    pub fn decode(&self) -> Result<Envelope, serde_json::Error> {
        Envelope::from_slice(&self.body)
    }
}

/// A pub/sub transport.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The client name announced with HELLO.
    fn name(&self) -> &str;

    /// Publish `payload` on `topic` with event `type`. Fire-and-forget: `Ok`
    /// means handed to the transport, not delivered. After `close()` a
    /// publish is dropped and returns `Ok` (see the transport for logging).
    async fn publish(&self, topic: &str, event_type: &str, payload: serde_json::Value) -> Result<(), BusError>;

    /// Subscribe to `pattern` with the default local queue size.
    async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        self.subscribe_with_capacity(pattern, DEFAULT_SUBSCRIPTION_CAPACITY).await
    }

    /// Subscribe with a local queue of `capacity` events (drop-oldest).
    async fn subscribe_with_capacity(&self, pattern: &str, capacity: usize) -> Result<Subscription, BusError>;

    /// Close the bus: end every open subscription, drop later publishes.
    /// Idempotent.
    async fn close(&self);

    fn is_closed(&self) -> bool;

    /// Whether the transport currently has a live connection (always true
    /// for in-process buses while open).
    fn is_connected(&self) -> bool {
        !self.is_closed()
    }
}

/// Called once when a [`Subscription`] is dropped, to undo the subscribe.
pub type Unsubscriber = Box<dyn FnOnce() + Send + Sync>;

/// A pending wait on the queue: the drained events and whether it is still open.
type DrainFuture = Pin<Box<dyn std::future::Future<Output = (VecDeque<RawEvent>, bool)> + Send>>;

/// A stream of events for one pattern. Ends when the bus closes; dropping
/// it unsubscribes.
pub struct Subscription {
    pattern: String,
    queue: Arc<EventQueue<RawEvent>>,
    buffered: VecDeque<RawEvent>,
    pending: Option<DrainFuture>,
    finished: bool,
    on_drop: Option<Unsubscriber>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("pattern", &self.pattern).finish_non_exhaustive()
    }
}

impl Subscription {
    /// Build a subscription fed through `queue`. Transports push into the
    /// queue and close it to end the stream.
    pub fn new(pattern: impl Into<String>, queue: Arc<EventQueue<RawEvent>>, on_drop: Option<Unsubscriber>) -> Self {
        Subscription {
            pattern: pattern.into(),
            queue,
            buffered: VecDeque::new(),
            pending: None,
            finished: false,
            on_drop,
        }
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Events dropped locally because this subscription's reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped_total()
    }

    /// Next raw event (topic + envelope bytes), or `None` once ended.
    pub async fn next_raw(&mut self) -> Option<RawEvent> {
        std::future::poll_fn(|cx| self.poll_raw(cx)).await
    }

    /// Next decoded envelope, or `None` once ended. Events that do not
    /// decode are logged and skipped.
    pub async fn recv(&mut self) -> Option<Envelope> {
        std::future::poll_fn(|cx| self.poll_envelope(cx)).await
    }

    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<RawEvent>> {
        loop {
            if let Some(ev) = self.buffered.pop_front() {
                return Poll::Ready(Some(ev));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            // Fast path: take whatever is queued without allocating a future.
            if self.pending.is_none() && self.queue.try_drain_into(&mut self.buffered) > 0 {
                continue;
            }
            let fut = self.pending.get_or_insert_with(|| {
                let queue = self.queue.clone();
                Box::pin(async move {
                    let mut buf = VecDeque::new();
                    let open = queue.drain_into(&mut buf).await;
                    (buf, open)
                })
            });
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready((buf, open)) => {
                    self.pending = None;
                    self.buffered = buf;
                    if !open {
                        self.finished = true;
                    }
                }
            }
        }
    }

    fn poll_envelope(&mut self, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        loop {
            match self.poll_raw(cx) {
                Poll::Ready(Some(raw)) => match raw.decode() {
                    Ok(env) => return Poll::Ready(Some(env)),
                    Err(e) => tracing::warn!(topic = %raw.topic, error = %e, "skipping undecodable event"),
                },
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Envelope;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        self.get_mut().poll_envelope(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}
