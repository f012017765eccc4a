//! Opt-in busy polling (`decnet bus --busy-poll-us N`): after traffic,
//! keep the routing thread awake for N µs instead of sleeping in epoll.
//!
//! Why: an event crosses two wake-ups, publisher → daemon and daemon →
//! subscriber. On a VM each wake-up of a sleeping thread costs ~30 µs and
//! now and then far more (the idle vCPU must be scheduled by the host):
//! `decnet-bench floor` measures p99 66–119 µs for the two wake-ups with
//! no server at all. A daemon that is still running when the next PUB
//! arrives removes the first wake-up. The price is CPU: while events keep
//! arriving less than N µs apart, one core stays busy. So it is off by
//! default (a host-local bus on a honeypot host should be boring and
//! cheap); latency-sensitive hosts can turn it on.
//!
//! How: readers [`touch`](BusyPoll::touch) the poller after every read;
//! the poller task then yields in a loop until N µs pass without a touch.
//! On tokio's current-thread runtime a yielding task makes the runtime
//! poll its I/O driver without blocking (`epoll_wait` with timeout 0), so
//! a new PUB is seen as soon as it lands. When the window passes, the
//! poller sleeps until the next touch and the thread parks as usual.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct BusyPoll {
    window: Duration,
    origin: Instant,
    /// Nanoseconds since `origin` of the latest touch.
    last_touch: AtomicU64,
    /// The poller is asleep and needs a notify to start spinning.
    asleep: AtomicBool,
    wake: Notify,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            origin: Instant::now(),
            last_touch: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Traffic just arrived: keep (or start) polling for the window.
    pub fn touch(&self) {
        self.last_touch.store(self.origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // `asleep` first: while spinning, a touch costs one relaxed store.
        if self.asleep.load(Ordering::Relaxed) && self.asleep.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_touch.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// The poller task: runs until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.asleep.store(true, Ordering::Release);
            // A touch between the store and here leaves a permit in
            // `wake`, so this does not miss it.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
            }
            while self.quiet_for() < self.window {
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        }
    }

    /// Polling now, i.e. not asleep waiting for a touch (for tests).
    pub fn is_polling(&self) -> bool {
        !self.asleep.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asleep until touched, polling after a touch, asleep again once the
    /// window has passed without one; other tasks keep running meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn polls_for_the_window_after_a_touch_then_sleeps() {
        let poller = Arc::new(BusyPoll::new(Duration::from_millis(20)));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(poller.clone().run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!poller.is_polling(), "polling with no traffic");
        poller.touch();
        tokio::task::yield_now().await;
        assert!(poller.is_polling(), "a touch did not start polling");
        // This task's timer still fires while the poller spins.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!poller.is_polling(), "still polling long after the window");
        poller.touch();
        tokio::task::yield_now().await;
        assert!(poller.is_polling(), "a second touch did not wake it");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("poller stops on shutdown").unwrap();
    }
}
