//! Identity fan-out (SPEC §4): the clusterer's result, published as one
//! event per item.
//!
//! A clustering pass produces four lists at once (identities formed,
//! observations linked to an identity, merges and unmerges). Consumers care
//! about single facts ("this observation now belongs to that identity"), so
//! each item becomes its own event on its own topic; an empty list sends
//! nothing, so a quiet pass is silent on the bus.

use serde_json::Value;

use crate::bus::{Bus, BusError};
use crate::topics::{IDENTITY_FORMED, IDENTITY_MERGED, IDENTITY_OBSERVATION_LINKED, IDENTITY_UNMERGED};

/// Event types used for the four identity topics.
pub const FORMED_TYPE: &str = "formed";
pub const LINKED_TYPE: &str = "linked";
pub const MERGED_TYPE: &str = "merged";
pub const UNMERGED_TYPE: &str = "unmerged";

/// What one clustering pass changed. Items are free-form JSON objects (the
/// clusterer owns their shape); each becomes the payload of one event.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterResult {
    /// Newly formed identities → `identity.formed`.
    #[serde(default)]
    pub formed: Vec<Value>,
    /// Observations linked to an identity → `identity.observation.linked`.
    #[serde(default)]
    pub linked: Vec<Value>,
    /// Identities merged into one → `identity.merged`.
    #[serde(default)]
    pub merged: Vec<Value>,
    /// Merges undone → `identity.unmerged`.
    #[serde(default)]
    pub unmerged: Vec<Value>,
}

impl ClusterResult {
    pub fn is_empty(&self) -> bool {
        self.formed.is_empty() && self.linked.is_empty() && self.merged.is_empty() && self.unmerged.is_empty()
    }

    /// Number of events [`publish`](Self::publish) sends.
    pub fn event_count(&self) -> usize {
        self.formed.len() + self.linked.len() + self.merged.len() + self.unmerged.len()
    }

    /// `(topic, event type, items)` for each list, in publish order.
    pub fn groups(&self) -> [(&'static str, &'static str, &[Value]); 4] {
        [
            (IDENTITY_FORMED, FORMED_TYPE, &self.formed),
            (IDENTITY_OBSERVATION_LINKED, LINKED_TYPE, &self.linked),
            (IDENTITY_MERGED, MERGED_TYPE, &self.merged),
            (IDENTITY_UNMERGED, UNMERGED_TYPE, &self.unmerged),
        ]
    }

    /// Publish one event per item on its list's topic; empty lists publish
    /// nothing. Returns how many events were handed to the bus. Stops at the
    /// first transport error (the bus is fire-and-forget, so that means a
    /// broken bus rather than one lost event).
    pub async fn publish(&self, bus: &dyn Bus) -> Result<usize, BusError> {
        let mut sent = 0;
        for (topic, event_type, items) in self.groups() {
            for item in items {
                bus.publish(topic, event_type, item.clone()).await?;
                sent += 1;
            }
        }
        Ok(sent)
    }
}
