//! The bridge's counters, reported under `federation` in `system.bus.health`.
//!
//! Relaxed atomics: they are statistics read once per heartbeat, nothing
//! synchronises on them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::burst::BurstLog;
use super::sequence::GapCounter;

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
    /// Imports NATS handed us faster than we took them: async-nats dropped
    /// them (its slow-consumer notice; a lower bound under a flood, as
    /// those notices can themselves overflow: `lost` counts exactly).
    pub receive_overflow: AtomicU64,
    /// Sequence gaps: messages other hosts sent that never arrived, in
    /// total and per origin (see `sequence`).
    pub gaps: GapCounter,
    /// Why the bridge refused to federate (a duplicate host id), if it did.
    pub error: Mutex<Option<String>>,
    /// Warn once per burst of export-queue drops.
    pub export_drops: BurstLog,
    /// Warn once per burst of receive overflows.
    pub receive_drops: BurstLog,
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
            "receive_overflow": get(&self.receive_overflow),
            "lost": get(&self.gaps.lost),
            "origins": self.gaps.to_json(),
            "error": self.error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
}
