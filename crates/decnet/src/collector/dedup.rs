//! Dedup of connection bookkeeping events.
//!
//! A port scan or a reconnecting client produces bursts of identical
//! `connect`/`disconnect`/`accept`/`close` lines; one per (attacker, decky,
//! service, event type) per second says everything the profiler needs
//! (that contact happened, and when) at a fraction of the rows. Only these
//! four types are deduped: every login attempt and command is evidence.
//!
//! The window is measured on the collector's monotonic clock, not the
//! line's TIMESTAMP, which the sender (or an attacker forging lines)
//! controls. The map is bounded: expired keys leave in arrival order, and
//! when a flood of distinct keys fills it the oldest are evicted early
//! (that can let a duplicate through, never lose a first event).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use super::parse::Record;

pub const DEDUP_TYPES: [&str; 4] = ["connect", "disconnect", "accept", "close"];
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);
pub const DEFAULT_CAPACITY: usize = 65_536;

/// A (attacker, decky, service, event type) as a 64-bit hash keyed with
/// this process's random key: copying the four strings into the map for
/// every connect was a third of the collector's time under a sweep. Two
/// distinct events would share a key with odds of about 1 in 2^64 / 65,536
/// (the map's capacity), and a sender cannot aim for that without the key;
/// the cost of it happening is one connect counted as a repeat.
type Key = u64;

#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    key_hasher: RandomState,
    last_seen: HashMap<Key, Instant>,
    /// Keys in the order they were (re)stamped; may hold stale entries for
    /// keys stamped again later, which are skipped when they come up.
    order: VecDeque<(Key, Instant)>,
}

impl Dedup {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Dedup {
            window,
            capacity: capacity.max(1),
            key_hasher: RandomState::new(),
            last_seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True when `record` repeats an event seen less than the window ago
    /// (the caller drops it); false otherwise, and the event is remembered.
    pub fn is_duplicate(&mut self, record: &Record, now: Instant) -> bool {
        if !DEDUP_TYPES.contains(&record.event_type.as_str()) {
            return false;
        }
        self.expire(now);
        let key = self.key_hasher.hash_one((&record.attacker_ip, &record.decky, &record.service, &record.event_type));
        if let Some(seen) = self.last_seen.get(&key) {
            if now.duration_since(*seen) < self.window {
                return true;
            }
        }
        while self.last_seen.len() >= self.capacity {
            match self.order.pop_front() {
                Some((old, stamp)) => {
                    if self.last_seen.get(&old) == Some(&stamp) {
                        self.last_seen.remove(&old);
                    }
                }
                None => break,
            }
        }
        self.last_seen.insert(key, now);
        self.order.push_back((key, now));
        false
    }

    fn expire(&mut self, now: Instant) {
        while let Some((key, stamp)) = self.order.front() {
            if now.duration_since(*stamp) < self.window {
                break;
            }
            if self.last_seen.get(key) == Some(stamp) {
                self.last_seen.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// Keys remembered now (for tests and the bound).
    pub fn len(&self) -> usize {
        self.last_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_seen.is_empty()
    }
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup::new(DEFAULT_WINDOW, DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ip: &str, event_type: &str) -> Record {
        Record {
            timestamp: 0.0,
            decky: "d1".into(),
            service: "ssh".into(),
            event_type: event_type.into(),
            attacker_ip: ip.into(),
            fields: Default::default(),
            msg: String::new(),
            raw_line: String::new(),
            source: None,
        }
    }

    #[test]
    fn repeats_within_the_window_are_dropped() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        for ty in DEDUP_TYPES {
            assert!(!d.is_duplicate(&rec("1.1.1.1", ty), t0), "{ty}");
            assert!(d.is_duplicate(&rec("1.1.1.1", ty), t0 + Duration::from_millis(500)), "{ty}");
        }
        // Another attacker, another decky: not a duplicate.
        assert!(!d.is_duplicate(&rec("2.2.2.2", "connect"), t0));
        let mut other = rec("1.1.1.1", "connect");
        other.decky = "d2".into();
        assert!(!d.is_duplicate(&other, t0));
        // After the window, the event counts again.
        assert!(!d.is_duplicate(&rec("1.1.1.1", "connect"), t0 + Duration::from_millis(1001)));
    }

    #[test]
    fn evidence_is_never_deduped() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!d.is_duplicate(&rec("1.1.1.1", "login_attempt"), t0));
            assert!(!d.is_duplicate(&rec("1.1.1.1", "command"), t0));
        }
        assert!(d.is_empty());
    }

    #[test]
    fn the_map_stays_bounded_under_a_flood_of_keys() {
        let mut d = Dedup::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            assert!(!d.is_duplicate(&rec(&format!("10.0.{}.{}", i / 256, i % 256), "connect"), t0));
            assert!(d.len() <= 100);
        }
        assert!(d.order.len() <= 100);
        // The newest keys are still remembered.
        assert!(d.is_duplicate(&rec("10.0.39.15", "connect"), t0));
    }

    #[test]
    fn expired_keys_leave() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        for i in 0..50 {
            d.is_duplicate(&rec(&format!("1.1.1.{i}"), "close"), t0);
        }
        assert_eq!(d.len(), 50);
        d.is_duplicate(&rec("9.9.9.9", "close"), t0 + Duration::from_secs(2));
        assert_eq!(d.len(), 1);
    }
}
