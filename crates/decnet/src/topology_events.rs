//! The bus events about topologies, built in one place so the API (which
//! publishes `mutation.enqueued` and the `deploying` status) and the mutator
//! (`applying`, `applied`, `failed`, and the deploy outcome) publish the same
//! shapes:
//!
//! - `topology.<id>.mutation.<state>`, event type `mutation`, payload
//!   `{topology_id, mutation_id, op, payload, state, reason?}` where `state`
//!   is the topic leaf (`enqueued`, `applying`, `applied`, `failed`);
//! - `topology.<id>.status`, event type `status`, payload
//!   `{topology_id, status, previous}`.
//!
//! Publishing is best-effort: the database is the truth and already holds
//! the change, so a bus that is down or slow costs an event, never a request.

use std::time::Duration;

use decnet_bus::topics::{self, MutationState as BusMutationState};
use decnet_bus::{Bus, Topic, TopicError};
use serde_json::{json, Value};

use crate::store::topology::{Mutation, StatusChange};

/// Longest a best-effort publish may hold up its caller.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// One event ready to publish.
#[derive(Debug, Clone)]
pub struct TopologyEvent {
    pub topic: Topic,
    pub event_type: String,
    pub payload: Value,
}

impl TopologyEvent {
    /// `topology.<id>.mutation.<state>` for `mutation`; `reason` comes from
    /// the row (set by `mark_failed`).
    pub fn mutation(mutation: &Mutation, state: BusMutationState) -> Result<TopologyEvent, TopicError> {
        let mut payload = json!({
            "topology_id": mutation.topology_id,
            "mutation_id": mutation.id,
            "op": mutation.op,
            "payload": mutation.payload,
            "state": state.as_str(),
        });
        if let Some(reason) = &mutation.reason {
            payload["reason"] = Value::from(reason.as_str());
        }
        Ok(TopologyEvent {
            topic: topics::topology_mutation(&mutation.topology_id, state)?,
            event_type: "mutation".into(),
            payload,
        })
    }

    /// `topology.<id>.status` for a status change that was committed.
    pub fn status(topology_id: &str, change: StatusChange) -> Result<TopologyEvent, TopicError> {
        Ok(TopologyEvent {
            topic: topics::topology_status(topology_id)?,
            event_type: "status".into(),
            payload: json!({
                "topology_id": topology_id,
                "status": change.status.as_str(),
                "previous": change.previous.as_str(),
            }),
        })
    }

    /// Publish on `bus` if there is one; failures and timeouts are logged,
    /// never returned. Returns whether the bus accepted the event.
    pub async fn publish(&self, bus: Option<&dyn Bus>) -> bool {
        let Some(bus) = bus else {
            tracing::debug!(topic = %self.topic.as_str(), "bus down; topology event not published");
            return false;
        };
        let publish = bus.publish(self.topic.as_str(), &self.event_type, self.payload.clone());
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(topic = %self.topic.as_str(), error = %e, "topology event not published");
                false
            }
            Err(_) => {
                tracing::warn!(topic = %self.topic.as_str(), "topology event not published: bus publish timed out");
                false
            }
        }
    }
}
