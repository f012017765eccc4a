//! The daemon's own voice on the bus: a [`Bus`] that publishes straight
//! into the broker (no socket), so the daemon's `system.bus.health` goes
//! through the same SDK heartbeat code as every worker's.
//!
//! It only publishes: nothing in the daemon subscribes, and a subscription
//! here would need a connection of its own in the broker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::broker::Broker;
use crate::bus::{Bus, BusError, Subscription};
use crate::topic::validate_topic;

pub struct OwnBus {
    broker: Arc<Broker>,
    closed: AtomicBool,
}

impl OwnBus {
    pub fn new(broker: Arc<Broker>) -> Self {
        OwnBus { broker, closed: AtomicBool::new(false) }
    }
}

#[async_trait::async_trait]
impl Bus for OwnBus {
    fn name(&self) -> &str {
        "bus"
    }

    async fn publish(&self, topic: &str, event_type: &str, payload: serde_json::Value) -> Result<(), BusError> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        validate_topic(topic)?;
        let body = serde_json::json!({ "type": event_type, "payload": payload });
        // From no connection (`None`): every subscriber gets it.
        self.broker.publish(None, topic, body.to_string().as_bytes())?;
        Ok(())
    }

    async fn subscribe_with_capacity(&self, _pattern: &str, _capacity: usize) -> Result<Subscription, BusError> {
        Err(BusError::Config("the daemon's own bus only publishes".into()))
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}
