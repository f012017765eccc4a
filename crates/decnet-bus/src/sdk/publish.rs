//! Publishing that never gets in the caller's way.
//!
//! Bus delivery is best-effort (the database is the source of truth), so a
//! worker must not fail a request, a probe or a capture because the bus is
//! down. [`publish_safely`] swallows and logs; [`ThreadSafePublisher`] lets
//! blocking code (packet capture loops, probe threads) hand events to the
//! async runtime without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::bus::{Bus, BusError};

/// Transport errors (daemon down) are logged at WARN at most this often per
/// process; a worker publishing every second must not flood the journal.
const TRANSPORT_WARN_EVERY_SECS: u64 = 30;
static LAST_TRANSPORT_WARN: AtomicU64 = AtomicU64::new(0);

/// Publish, never returning an error: a missing bus is a no-op, an invalid
/// topic is logged as the bug it is, a transport failure is logged (rate-limited).
pub async fn publish_safely(bus: Option<&dyn Bus>, topic: &str, payload: Value, event_type: &str) {
    let Some(bus) = bus else { return };
    match bus.publish(topic, event_type, payload).await {
        Ok(()) => {}
        Err(BusError::Topic(e)) => tracing::error!(client = bus.name(), topic, error = %e, "refused to publish"),
        Err(e) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
            let last = LAST_TRANSPORT_WARN.load(Ordering::Relaxed);
            if now >= last + TRANSPORT_WARN_EVERY_SECS
                && LAST_TRANSPORT_WARN.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                tracing::warn!(client = bus.name(), topic, error = %e, "publish failed; event dropped (repeats logged at debug)");
            } else {
                tracing::debug!(client = bus.name(), topic, error = %e, "publish failed; event dropped");
            }
        }
    }
}

struct Outgoing {
    topic: String,
    event_type: String,
    payload: Value,
}

/// A cloneable handle for publishing from plain threads.
///
/// `publish` puts the event on a bounded queue and returns at once; one task
/// on the runtime drains it in order (so one thread's events keep their
/// order). A full queue drops the event and counts it, never blocks. Once
/// the bus is closed, `publish` does nothing.
#[derive(Clone)]
pub struct ThreadSafePublisher {
    bus: Arc<dyn Bus>,
    runtime: Handle,
    queue: mpsc::Sender<Outgoing>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for ThreadSafePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadSafePublisher").field("bus", &self.bus.name()).finish_non_exhaustive()
    }
}

impl ThreadSafePublisher {
    /// Default number of events waiting for the runtime before new ones drop.
    pub const DEFAULT_CAPACITY: usize = 16 * 1024;

    /// A publisher for `bus` whose publishes run on `runtime`.
    pub fn new(bus: Arc<dyn Bus>, runtime: Handle) -> Self {
        Self::with_capacity(bus, runtime, Self::DEFAULT_CAPACITY)
    }

    /// A publisher on the runtime of the calling task (panics outside a runtime,
    /// like `Handle::current`).
    pub fn current(bus: Arc<dyn Bus>) -> Self {
        Self::new(bus, Handle::current())
    }

    pub fn with_capacity(bus: Arc<dyn Bus>, runtime: Handle, capacity: usize) -> Self {
        let (queue, mut rx) = mpsc::channel::<Outgoing>(capacity.max(1));
        let pump_bus = bus.clone();
        runtime.spawn(async move {
            while let Some(ev) = rx.recv().await {
                if pump_bus.is_closed() {
                    continue; // drain and discard: the handles may still be alive
                }
                publish_safely(Some(&*pump_bus), &ev.topic, ev.payload, &ev.event_type).await;
            }
        });
        ThreadSafePublisher { bus, runtime, queue, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queue one event for publishing and return immediately. Never blocks,
    /// never fails; a no-op once the bus is closed.
    pub fn publish(&self, topic: &str, event_type: &str, payload: Value) {
        if self.bus.is_closed() {
            return;
        }
        let ev = Outgoing { topic: topic.to_owned(), event_type: event_type.to_owned(), payload };
        match self.queue.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(topic = %ev.topic, dropped = n, "publisher queue full; event dropped");
                }
            }
            // The pump ended: the runtime is gone, so is the bus for us.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Events dropped because the queue to the runtime was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }
}
