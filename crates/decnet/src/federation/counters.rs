//! The bridge's counters, reported under `federation` in `system.bus.health`.
//!
//! Relaxed atomics: they are statistics read once per heartbeat, nothing
//! synchronises on them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct FederationCounters {
    /// Whether the NATS connection is up right now.
    pub connected: AtomicBool,
    /// Times the connection came (back) up.
    pub connects: AtomicU64,
    /// Local events handed to NATS.
    pub exported: AtomicU64,
    /// NATS messages delivered to local subscribers.
    pub imported: AtomicU64,
    /// Exports lost: export queue overflow while NATS was slow or away,
    /// or a publish NATS refused.
    pub dropped: AtomicU64,
    /// NATS messages refused as malformed or hostile.
    pub rejected: AtomicU64,
    /// NATS messages that were our own exports coming back (dropped).
    pub own_origin: AtomicU64,
}

impl FederationCounters {
    pub fn add(counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Ordering::Relaxed) + n
    }

    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "connects": get(&self.connects),
            "exported": get(&self.exported),
            "imported": get(&self.imported),
            "dropped": get(&self.dropped),
            "rejected": get(&self.rejected),
            "own_origin": get(&self.own_origin),
        })
    }
}
