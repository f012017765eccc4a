//! A fixed set of named counters for a worker's heartbeat, for workers
//! whose counts are few and flat (the profiler's passes, the clusterer's
//! changes, the log shipping pair): the names are the heartbeat fields the
//! catalogue reads.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

#[derive(Debug)]
pub struct NamedCounters {
    counters: Vec<(&'static str, AtomicU64)>,
}

impl NamedCounters {
    pub fn new(names: &[&'static str]) -> Self {
        NamedCounters { counters: names.iter().map(|n| (*n, AtomicU64::new(0))).collect() }
    }

    fn slot(&self, name: &str) -> &AtomicU64 {
        // A name not given to `new` is a programming error, caught by any
        // test that runs the code path.
        match self.counters.iter().find(|(n, _)| *n == name) {
            Some((_, c)) => c,
            None => panic!("no counter named {name:?}"),
        }
    }

    pub fn add(&self, name: &str, n: u64) {
        self.slot(name).fetch_add(n, Ordering::Relaxed);
    }

    /// For gauges: replace the value.
    pub fn set(&self, name: &str, v: u64) {
        self.slot(name).store(v, Ordering::Relaxed);
    }

    pub fn get(&self, name: &str) -> u64 {
        self.slot(name).load(Ordering::Relaxed)
    }

    /// Every counter as a heartbeat field.
    pub fn snapshot(&self) -> Map<String, Value> {
        self.counters.iter().map(|(n, c)| (n.to_string(), Value::from(c.load(Ordering::Relaxed)))).collect()
    }
}
