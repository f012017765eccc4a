//! A bounded queue that drops its *oldest* item when full.
//!
//! The bus is at-most-once and fire-and-forget: a slow reader must never
//! slow the publisher, so pushing never waits. When a reader falls behind,
//! the freshest events are the useful ones, hence drop-oldest. The daemon
//! uses one per connection (items are encoded EVT frames); in-process
//! subscriptions (FakeBus, client streams) use the same type so every
//! transport has the same overflow behaviour.
//!
//! The consumer takes everything queued in one lock ([`EventQueue::drain_into`]),
//! which lets the daemon coalesce all pending frames into one socket write,
//! and producers only wake the consumer when the queue goes from empty to
//! non-empty, so a busy queue costs no wake-up per event.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

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
    closed: bool,
    dropped_total: u64,
    dropped_unreported: u64,
}

#[derive(Debug)]
pub struct EventQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    capacity: usize,
}

impl<T> EventQueue<T> {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        EventQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
                dropped_total: 0,
                dropped_unreported: 0,
            }),
            notify: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the deque torn, so
        // a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, item: T) -> PushOutcome {
        let mut st = self.lock();
        if st.closed {
            return PushOutcome::Closed;
        }
        let was_empty = st.items.is_empty();
        let outcome = if st.items.len() >= self.capacity {
            st.items.pop_front();
            st.dropped_total += 1;
            st.dropped_unreported += 1;
            PushOutcome::DroppedOldest
        } else {
            PushOutcome::Queued
        };
        st.items.push_back(item);
        drop(st);
        if was_empty {
            self.notify.notify_one();
        }
        outcome
    }

    /// Wait until items are queued or the queue is closed, then move every
    /// queued item into `out`. Returns false once closed and fully drained.
    pub async fn drain_into(&self, out: &mut VecDeque<T>) -> bool {
        loop {
            {
                let mut st = self.lock();
                if !st.items.is_empty() {
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

    /// Take everything queued now, without waiting.
    pub fn try_drain_into(&self, out: &mut VecDeque<T>) -> usize {
        let mut st = self.lock();
        let n = st.items.len();
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
        let items = std::mem::take(&mut self.lock().items);
        drop(items); // outside the lock
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
