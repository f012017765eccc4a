//! The memory budget of the queue between the receivers and the pipeline,
//! in bytes, with a fair share per source.
//!
//! Why bytes and not lines: lines run from 100 bytes to 64 KiB, so a queue
//! of 8,192 lines can hold 512 MiB. Every line waiting for the pipeline
//! holds its size (plus [`LINE_OVERHEAD`]) here until the pipeline is done
//! with it, so the queue never holds more than the total budget, whatever
//! arrives.
//!
//! Why a share per source: one flooding sender must not take the whole
//! budget from the others. A source holds at most its share; TCP and UNIX
//! connections over it wait (their senders slow down), UDP datagrams over
//! it are dropped and counted against the source.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What a queued line costs besides its bytes (the `Incoming`, its slot).
pub const LINE_OVERHEAD: usize = 64;
/// Default total budget.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Default share of one source.
pub const DEFAULT_QUEUE_BYTES_PER_SOURCE: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
struct State {
    used: usize,
    by_source: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
pub struct ByteBudget {
    total: usize,
    per_source: usize,
    state: Mutex<State>,
    freed: Notify,
}

/// Bytes held for one queued line; given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<ByteBudget>,
    source: IpAddr,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        {
            let mut s = self.budget.state.lock().unwrap_or_else(|e| e.into_inner());
            s.used -= self.bytes;
            if let Some(n) = s.by_source.get_mut(&self.source) {
                *n -= self.bytes;
                if *n == 0 {
                    s.by_source.remove(&self.source);
                }
            }
        }
        self.budget.freed.notify_waiters();
    }
}

impl ByteBudget {
    pub fn new(total: usize, per_source: usize) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            total: total.max(1),
            per_source: per_source.clamp(1, total.max(1)),
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        })
    }

    /// Bytes held now, in total and by `source`.
    pub fn used(&self) -> usize {
        self.state.lock().map(|s| s.used).unwrap_or(0)
    }

    pub fn used_by(&self, source: IpAddr) -> usize {
        self.state.lock().map(|s| s.by_source.get(&source).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Hold room for a line of `len` bytes from `source`, if its share and
    /// the total allow it now.
    pub fn try_hold(self: &Arc<Self>, source: IpAddr, len: usize) -> Option<Held> {
        let bytes = len + LINE_OVERHEAD;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.by_source.get(&source).copied().unwrap_or(0);
        if s.used + bytes > self.total || mine + bytes > self.per_source {
            return None;
        }
        s.used += bytes;
        *s.by_source.entry(source).or_default() += bytes;
        Some(Held { budget: self.clone(), source, bytes })
    }

    /// Wait until room for the line is free (senders that can be slowed).
    pub async fn hold(self: &Arc<Self>, source: IpAddr, len: usize) -> Held {
        loop {
            // Registered before trying, so a release between the try and
            // the wait is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(held) = self.try_hold(source, len) {
                return held;
            }
            freed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_share_and_no_more_and_others_still_fit() {
        let b = ByteBudget::new(4000, 1000);
        let a = ip("10.0.0.1");
        let held: Vec<Held> = std::iter::from_fn(|| b.try_hold(a, 100)).take(100).collect();
        // 164 bytes a line: 6 lines fit in a 1000-byte share.
        assert_eq!(held.len(), 6);
        assert_eq!(b.used_by(a), 6 * 164);
        // Another source is not starved by the first one's flood.
        assert!(b.try_hold(ip("10.0.0.2"), 100).is_some());
        drop(held);
        assert_eq!(b.used_by(a), 0);
        assert!(b.try_hold(a, 100).is_some());
    }

    #[test]
    fn the_total_bounds_many_sources() {
        let b = ByteBudget::new(10_000, 5_000);
        let mut held = Vec::new();
        for i in 0..1000u32 {
            if let Some(h) = b.try_hold(IpAddr::from(i.to_be_bytes()), 1000) {
                held.push(h);
            }
        }
        assert_eq!(held.len(), 9);
        assert!(b.used() <= 10_000);
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_in_when_room_is_freed() {
        let b = ByteBudget::new(1000, 1000);
        let a = ip("10.0.0.1");
        let first = b.try_hold(a, 800).unwrap();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.hold(a, 800).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "no room yet");
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(b.used(), 864);
        drop(second);
        assert_eq!(b.used(), 0);
    }
}
