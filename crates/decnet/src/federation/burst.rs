//! One warning per burst of losses, not one per event or per poll.
//!
//! A loss that lasts (NATS away for a minute, an import that cannot keep
//! up with 250 k/s) used to log a line every 50 ms or every message. Now
//! the first loss of a burst logs a warning, later ones only count, and
//! the burst ends with one summary line once a whole tick passes without
//! a new loss. The counters in `system.bus.health` carry the totals.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct BurstLog {
    /// Losses in the current burst (0: no burst).
    in_burst: AtomicU64,
    /// A loss was noted since the last tick.
    fresh: AtomicBool,
}

impl BurstLog {
    /// Note `n` losses; true when they start a burst (log the warning).
    pub fn note(&self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        self.fresh.store(true, Ordering::Relaxed);
        self.in_burst.fetch_add(n, Ordering::Relaxed) == 0
    }

    /// Called periodically: `Some(total)` when a burst ended (no loss
    /// since the previous tick), to log once as its summary.
    pub fn tick(&self) -> Option<u64> {
        if self.fresh.swap(false, Ordering::Relaxed) {
            return None;
        }
        match self.in_burst.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_once_and_ends_after_a_quiet_tick() {
        let b = BurstLog::default();
        assert_eq!(b.tick(), None, "no burst yet");
        assert!(b.note(3), "the first loss starts a burst");
        assert!(!b.note(1));
        assert_eq!(b.tick(), None, "losses since the last tick: still going");
        assert!(!b.note(2));
        assert_eq!(b.tick(), None);
        assert_eq!(b.tick(), Some(6), "a quiet tick ends it with the total");
        assert_eq!(b.tick(), None);
        assert!(b.note(1), "the next loss starts a new burst");
        assert!(!b.note(0));
    }
}
