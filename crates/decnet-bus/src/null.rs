//! `NullBus`: the transport when the bus is disabled
//! (`DECNET_BUS_ENABLED=false`).
//!
//! Every call succeeds and does nothing, so a worker runs unchanged without
//! a daemon. Topics and patterns are still validated: a bug that would fail
//! against the real bus should not hide while the bus is off.
//! Subscriptions never yield an event; they end when the NullBus is
//! closed, so code waiting on one still shuts down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::bus::{Bus, BusError, RawEvent, Subscription};
use crate::queue::EventQueue;
use crate::topic::{Pattern, Topic};

#[derive(Debug)]
pub struct NullBus {
    name: String,
    closed: AtomicBool,
    /// Open subscriptions' queues, to end them on close. Weak: a dropped
    /// subscription must not be kept alive by the bus.
    queues: Mutex<Vec<Weak<EventQueue<RawEvent>>>>,
}

impl NullBus {
    pub fn new(name: &str) -> Self {
        NullBus { name: name.to_owned(), closed: AtomicBool::new(false), queues: Mutex::new(Vec::new()) }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Vec<Weak<EventQueue<RawEvent>>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Bus for NullBus {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, topic: &str, _event_type: &str, _payload: serde_json::Value) -> Result<(), BusError> {
        Topic::new(topic)?;
        Ok(())
    }

    async fn subscribe_with_capacity(&self, pattern: &str, _capacity: usize) -> Result<Subscription, BusError> {
        let pattern = Pattern::new(pattern)?;
        // Nothing is ever pushed, so the smallest queue will do.
        let queue = Arc::new(EventQueue::new(1));
        {
            let mut queues = self.queues();
            if self.is_closed() {
                return Err(BusError::Closed);
            }
            queues.retain(|q| q.strong_count() > 0);
            queues.push(Arc::downgrade(&queue));
        }
        Ok(Subscription::new(pattern.into_string(), queue, None))
    }

    async fn close(&self) {
        let mut queues = self.queues();
        self.closed.store(true, Ordering::SeqCst);
        for q in queues.drain(..).filter_map(|q| q.upgrade()) {
            q.close();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A disabled bus never has a connection.
    fn is_connected(&self) -> bool {
        false
    }
}
