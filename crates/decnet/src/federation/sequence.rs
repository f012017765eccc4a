//! Per-origin sequence numbers, so a receiving host counts what it lost.
//!
//! NATS core is at-most-once: a node killed mid-stream, or an importer
//! too slow for what arrives, loses messages without the sender knowing
//! (it handed them to NATS; its `dropped` stays 0). So every export
//! carries `Decnet-Instance` (random per bridge start) and `Decnet-Seq`,
//! numbered from 1 per topic within the instance: per topic because a
//! receiver importing only some of another host's topics must not count
//! the rest as lost. A receiver that sees a topic's number jump counts the
//! numbers skipped as `lost`, per origin and in total; a new instance (the
//! sender restarted) or a number going backwards (its table was reset)
//! starts that topic afresh without counting. Losses at the very end of a
//! stream show once the next message on that topic arrives.
//!
//! Both tables are bounded: a sender or receiver seeing more topics than
//! [`MAX_STREAMS`] starts over (the sender from 1, the receiver resyncing),
//! so a host spraying topics costs memory up to the bound, never more.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Topics numbered (sender) or tracked (receiver, per origin and topic).
pub const MAX_STREAMS: usize = 65_536;
/// Origins reported one by one in `system.bus.health`; more are only in
/// the totals.
pub const MAX_ORIGINS_REPORTED: usize = 256;

/// The sender's side: the next number for each topic.
#[derive(Debug, Default)]
pub struct Numbering {
    next: HashMap<Box<str>, u64>,
}

impl Numbering {
    pub fn next(&mut self, topic: &str) -> u64 {
        if let Some(n) = self.next.get_mut(topic) {
            *n += 1;
            return *n;
        }
        if self.next.len() >= MAX_STREAMS {
            self.next.clear();
        }
        self.next.insert(topic.into(), 1);
        1
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OriginStats {
    /// Numbered messages received from this origin.
    pub received: u64,
    /// Numbers skipped: messages this origin sent that never arrived.
    pub lost: u64,
}

#[derive(Debug)]
struct Stream {
    instance: Box<str>,
    last: u64,
}

#[derive(Debug, Default)]
struct Tables {
    streams: HashMap<(Box<str>, Box<str>), Stream>,
    origins: BTreeMap<Box<str>, OriginStats>,
}

/// The receiver's side, shared by the import tasks.
#[derive(Debug, Default)]
pub struct GapCounter {
    tables: Mutex<Tables>,
    /// Every loss counted, whichever origin (reported as `lost`).
    pub lost: AtomicU64,
}

impl GapCounter {
    /// Record message `seq` of `instance` of `origin` on `topic`; returns
    /// how many messages before it were lost.
    pub fn observe(&self, origin: &str, instance: &str, topic: &str, seq: u64) -> u64 {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let key = (Box::<str>::from(origin), Box::<str>::from(topic));
        let lost = match t.streams.get_mut(&key) {
            Some(s) if &*s.instance == instance && seq > s.last => {
                let lost = seq - s.last - 1;
                s.last = seq;
                lost
            }
            Some(s) => {
                // A new instance, or numbering that started over: resync.
                s.instance = instance.into();
                s.last = seq;
                0
            }
            None => {
                if t.streams.len() >= MAX_STREAMS {
                    t.streams.clear();
                }
                t.streams.insert(key, Stream { instance: instance.into(), last: seq });
                0
            }
        };
        if t.origins.contains_key(origin) || t.origins.len() < MAX_ORIGINS_REPORTED {
            let stats = t.origins.entry(origin.into()).or_default();
            stats.received += 1;
            stats.lost += lost;
        }
        drop(t);
        self.lost.fetch_add(lost, Ordering::Relaxed);
        lost
    }

    /// `{origin: {received, lost}}` for `system.bus.health`.
    pub fn to_json(&self) -> serde_json::Value {
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_value(&t.origins).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_count_per_topic_from_one() {
        let mut n = Numbering::default();
        assert_eq!([n.next("a"), n.next("a"), n.next("b"), n.next("a")], [1, 2, 1, 3]);
    }

    #[test]
    fn gaps_are_counted_per_origin_and_restarts_are_not_gaps() {
        let g = GapCounter::default();
        assert_eq!(g.observe("h1", "i1", "a", 1), 0);
        assert_eq!(g.observe("h1", "i1", "a", 2), 0);
        assert_eq!(g.observe("h1", "i1", "a", 5), 2, "3 and 4 never came");
        assert_eq!(g.observe("h1", "i1", "b", 7), 0, "a topic first seen mid-stream starts there");
        assert_eq!(g.observe("h2", "j1", "a", 1), 0, "another origin, its own numbers");
        assert_eq!(g.observe("h1", "i2", "a", 1), 0, "h1 restarted: a new instance");
        assert_eq!(g.observe("h1", "i2", "a", 3), 1);
        assert_eq!(g.observe("h1", "i2", "a", 1), 0, "numbering started over: resync");
        assert_eq!(g.lost.load(Ordering::Relaxed), 3);
        assert_eq!(
            g.to_json(),
            serde_json::json!({"h1": {"received": 7, "lost": 3}, "h2": {"received": 1, "lost": 0}})
        );
    }

    #[test]
    fn tables_are_bounded() {
        let g = GapCounter::default();
        for i in 0..MAX_ORIGINS_REPORTED + 10 {
            g.observe(&format!("h{i}"), "i", "t", 1);
        }
        assert_eq!(g.to_json().as_object().unwrap().len(), MAX_ORIGINS_REPORTED);
        let mut n = Numbering::default();
        for i in 0..MAX_STREAMS + 1 {
            n.next(&format!("t{i}"));
        }
        assert!(n.next.len() <= MAX_STREAMS);
    }
}
