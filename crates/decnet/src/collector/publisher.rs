//! What the collector tells the bus: `system.log` per stored record and
//! `attacker.session.ended` when a session's recording closes.
//!
//! The pipeline runs on a plain thread (file writes block), so events go
//! through the SDK's [`ThreadSafePublisher`]: a bounded queue into the
//! runtime that drops (and counts) instead of ever blocking the pipeline.
//! The bus is fire-and-forget; `<log>.json` and the database are the record.

use std::sync::Arc;

use decnet_bus::sdk::ThreadSafePublisher;
use decnet_bus::topics::{ATTACKER_SESSION_ENDED, SYSTEM_LOG};
use decnet_bus::Bus;
use serde_json::Value;

use super::parse::Record;

#[derive(Debug, Clone, Default)]
pub struct Publisher {
    inner: Option<ThreadSafePublisher>,
}

impl Publisher {
    /// Publish on `bus` from the current runtime; `None` publishes nothing.
    pub fn new(bus: Option<Arc<dyn Bus>>) -> Self {
        Publisher { inner: bus.map(ThreadSafePublisher::current) }
    }

    pub fn system_log(&self, record: &Record) {
        if let Some(p) = &self.inner {
            p.publish(SYSTEM_LOG, &record.event_type, record.log_payload());
        }
    }

    pub fn session_ended(&self, payload: Value) {
        if let Some(p) = &self.inner {
            p.publish(ATTACKER_SESSION_ENDED, "session_ended", payload);
        }
    }

    /// Events the queue to the runtime had to drop.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, ThreadSafePublisher::dropped)
    }
}
