//! A bounded queue that drops its *oldest* item when full.
//!
//! The bus is at-most-once and fire-and-forget: a slow reader must never
//! slow the publisher, so pushing never waits. When a reader falls behind,
//! the freshest events are the useful ones, hence drop-oldest. The daemon
//! uses one per connection (items are encoded EVT frames); in-process
//! subscriptions (FakeBus, client streams) use the same type so every
//! transport has the same overflow behaviour.
//!
//! A queue may also be bounded by bytes ([`EventQueue::with_bytes`]): a
//! count bound alone lets 1,024 one-megabyte events pile up per slow
//! reader. The byte bound drops oldest the same way, always keeping the
//! newest item, and a shared [`ByteBudget`] bounds all queues together:
//! past it, the queue being pushed drops its own oldest items first.
//!
//! The consumer takes everything queued in one lock ([`EventQueue::drain_into`]),
//! which lets the daemon coalesce all pending frames into one socket write,
//! and producers only wake the consumer when the queue goes from empty to
//! non-empty, so a busy queue costs no wake-up per event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Bytes held by many queues together, against one limit.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget { used: AtomicUsize::new(0), limit }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }

    /// Take `n` bytes if they fit under the limit (for callers that wait
    /// rather than drop, like the daemon's large-frame reads).
    pub fn try_acquire(&self, n: usize) -> bool {
        self.used.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| (u + n <= self.limit).then_some(u + n)).is_ok()
    }

    /// Give back what [`try_acquire`](Self::try_acquire) took.
    pub fn release(&self, n: usize) {
        self.sub(n);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// Queued, and the oldest item was dropped to make room.
    DroppedOldest,
    /// The queue is closed; the item was discarded.
    Closed,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// Weight of `items`.
    bytes: usize,
    closed: bool,
    dropped_total: u64,
    dropped_unreported: u64,
}

#[derive(Debug)]
pub struct EventQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    capacity: usize,
    max_bytes: usize,
    weigh: fn(&T) -> usize,
    global: Option<Arc<ByteBudget>>,
}

impl<T> EventQueue<T> {
    /// Bounded by count only.
    pub fn new(capacity: usize) -> Self {
        Self::with_bytes(capacity, usize::MAX, |_| 0, None)
    }

    /// Bounded by count, by `max_bytes` as measured by `weigh`, and (when
    /// given) by a budget shared with other queues.
    pub fn with_bytes(
        capacity: usize,
        max_bytes: usize,
        weigh: fn(&T) -> usize,
        global: Option<Arc<ByteBudget>>,
    ) -> Self {
        let capacity = capacity.max(1);
        EventQueue {
            state: Mutex::new(State {
                // Small at first: most connections never queue much, and a
                // thousand idle ones should not cost 1,024 slots each.
                items: VecDeque::with_capacity(capacity.min(16)),
                bytes: 0,
                closed: false,
                dropped_total: 0,
                dropped_unreported: 0,
            }),
            notify: Notify::new(),
            capacity,
            max_bytes,
            weigh,
            global,
        }
    }

    fn forget_bytes(&self, st: &mut State<T>, n: usize) {
        st.bytes -= n;
        if let Some(g) = &self.global {
            g.sub(n);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the deque torn, so
        // a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, item: T) -> PushOutcome {
        self.push_counted(item).0
    }

    /// Push, and say how many old items were dropped to make room (more
    /// than one when a large item pushes out several small ones).
    pub fn push_counted(&self, item: T) -> (PushOutcome, u64) {
        let weight = (self.weigh)(&item);
        let mut st = self.lock();
        if st.closed {
            return (PushOutcome::Closed, 0);
        }
        let was_empty = st.items.is_empty();
        st.items.push_back(item);
        st.bytes += weight;
        if let Some(g) = &self.global {
            g.add(weight);
        }
        let mut dropped = 0u64;
        // The newest item always stays: dropping it would make a queue over
        // budget unable to carry anything at all.
        while st.items.len() > 1
            && (st.items.len() > self.capacity
                || st.bytes > self.max_bytes
                || self.global.as_ref().is_some_and(|g| g.over()))
        {
            let Some(old) = st.items.pop_front() else { break };
            let w = (self.weigh)(&old);
            self.forget_bytes(&mut st, w);
            dropped += 1;
        }
        st.dropped_total += dropped;
        st.dropped_unreported += dropped;
        drop(st);
        if was_empty {
            self.notify.notify_one();
        }
        (if dropped > 0 { PushOutcome::DroppedOldest } else { PushOutcome::Queued }, dropped)
    }

    /// Wait until items are queued or the queue is closed, then move every
    /// queued item into `out`. Returns false once closed and fully drained.
    pub async fn drain_into(&self, out: &mut VecDeque<T>) -> bool {
        loop {
            {
                let mut st = self.lock();
                if !st.items.is_empty() {
                    let bytes = st.bytes;
                    self.forget_bytes(&mut st, bytes);
                    if out.is_empty() {
                        std::mem::swap(out, &mut st.items);
                    } else {
                        out.extend(st.items.drain(..));
                    }
                    return true;
                }
                if st.closed {
                    return false;
                }
            }
            // A push between the unlock and here leaves a permit, so no wake is lost.
            self.notify.notified().await;
        }
    }

    /// Like [`drain_into`](Self::drain_into), but take items only up to
    /// `max_bytes` (always at least one): the daemon's writer holds no more
    /// than that outside the queue, where drop-oldest can no longer reach it.
    pub async fn drain_bytes_into(&self, out: &mut VecDeque<T>, max_bytes: usize) -> bool {
        loop {
            {
                let mut st = self.lock();
                if st.bytes <= max_bytes && !st.items.is_empty() {
                    let bytes = st.bytes;
                    self.forget_bytes(&mut st, bytes);
                    out.extend(st.items.drain(..));
                    return true;
                }
                if !st.items.is_empty() {
                    let mut taken = 0usize;
                    while let Some(front) = st.items.front() {
                        let w = (self.weigh)(front);
                        if taken > 0 && taken + w > max_bytes {
                            break;
                        }
                        taken += w;
                        if let Some(item) = st.items.pop_front() {
                            out.push_back(item);
                        }
                    }
                    self.forget_bytes(&mut st, taken);
                    return true;
                }
                if st.closed {
                    return false;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Take everything queued now, without waiting.
    pub fn try_drain_into(&self, out: &mut VecDeque<T>) -> usize {
        let mut st = self.lock();
        let n = st.items.len();
        let bytes = st.bytes;
        self.forget_bytes(&mut st, bytes);
        out.extend(st.items.drain(..));
        n
    }

    /// Stop accepting items and wake the consumer. Items already queued can
    /// still be drained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Drop everything still queued (after the consumer is gone).
    pub fn clear(&self) {
        let items = {
            let mut st = self.lock();
            let bytes = st.bytes;
            self.forget_bytes(&mut st, bytes);
            std::mem::take(&mut st.items)
        };
        drop(items); // outside the lock
    }

    /// Bytes queued now (0 for a queue without a byte bound).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn dropped_total(&self) -> u64 {
        self.lock().dropped_total
    }

    /// Drops since the last call: lets the consumer log one line per burst.
    pub fn take_unreported_drops(&self) -> u64 {
        std::mem::take(&mut self.lock().dropped_unreported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drops_oldest_when_full() {
        let q = EventQueue::new(3);
        for i in 0..5 {
            q.push(i);
        }
        let mut out = VecDeque::new();
        q.try_drain_into(&mut out);
        assert_eq!(out, [2, 3, 4]);
        assert_eq!(q.dropped_total(), 2);
        assert_eq!(q.take_unreported_drops(), 2);
        assert_eq!(q.take_unreported_drops(), 0);
    }

    #[test]
    fn byte_bound_drops_oldest_and_keeps_the_newest() {
        let q: EventQueue<Vec<u8>> = EventQueue::with_bytes(100, 10, |v| v.len(), None);
        q.push(vec![0; 4]);
        q.push(vec![1; 4]);
        assert_eq!(q.push_counted(vec![2; 4]), (PushOutcome::DroppedOldest, 1));
        assert_eq!(q.bytes(), 8);
        // One item over the whole bound pushes everything else out but stays.
        assert_eq!(q.push_counted(vec![3; 50]), (PushOutcome::DroppedOldest, 2));
        assert_eq!((q.len(), q.bytes()), (1, 50));
        assert_eq!(q.dropped_total(), 3);
    }

    #[test]
    fn global_budget_bounds_all_queues_together() {
        let budget = Arc::new(ByteBudget::new(20));
        let a: EventQueue<Vec<u8>> = EventQueue::with_bytes(100, 1000, |v| v.len(), Some(budget.clone()));
        let b: EventQueue<Vec<u8>> = EventQueue::with_bytes(100, 1000, |v| v.len(), Some(budget.clone()));
        for _ in 0..3 {
            a.push(vec![0; 5]);
        }
        assert_eq!(budget.used(), 15);
        // b pushing past the budget drops its own oldest, never a's.
        b.push(vec![1; 5]);
        assert_eq!(b.push_counted(vec![2; 5]), (PushOutcome::DroppedOldest, 1));
        assert_eq!((a.len(), b.len(), budget.used()), (3, 1, 20));
        let mut out = VecDeque::new();
        a.try_drain_into(&mut out);
        b.clear();
        assert_eq!(budget.used(), 0, "draining and clearing give the bytes back");
        assert!(budget.try_acquire(20));
        assert!(!budget.try_acquire(1));
        budget.release(20);
    }

    #[tokio::test]
    async fn bounded_drain_takes_at_most_the_bytes_asked() {
        let q: EventQueue<Vec<u8>> = EventQueue::with_bytes(100, 1000, |v| v.len(), None);
        for i in 0..5u8 {
            q.push(vec![i; 10]);
        }
        let mut out = VecDeque::new();
        assert!(q.drain_bytes_into(&mut out, 25).await);
        assert_eq!(out.len(), 2);
        assert_eq!(q.bytes(), 30);
        q.push(vec![9; 100]);
        out.clear();
        assert!(q.drain_bytes_into(&mut out, 25).await);
        assert_eq!(out.len(), 2);
        out.clear();
        assert!(q.drain_bytes_into(&mut out, 25).await);
        assert_eq!(out.len(), 1, "the next one would go over");
        out.clear();
        assert!(q.drain_bytes_into(&mut out, 25).await);
        assert_eq!(out[0].len(), 100, "at least one item even when it alone is over");
        assert_eq!(q.bytes(), 0);
    }

    #[tokio::test]
    async fn close_wakes_and_ends_after_drain() {
        let q = Arc::new(EventQueue::new(8));
        q.push(1);
        let q2 = q.clone();
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = VecDeque::new();
            while q2.drain_into(&mut buf).await {
                got.extend(buf.drain(..));
            }
            got
        });
        tokio::task::yield_now().await;
        q.push(2);
        q.close();
        assert_eq!(q.push(3), PushOutcome::Closed);
        assert_eq!(consumer.await.unwrap(), vec![1, 2]);
    }
}
