//! What the prober may touch, and how hard.
//!
//! Probing back is active traffic towards addresses that attackers can
//! choose (a spoofed source, a victim's address), so nothing is probed
//! unless the operator allowed its network: the default allow list is
//! loopback only (the demo), deny always wins, and every target gets a
//! minimum gap between probe starts and a cap on probes in flight, so one
//! noisy attacker neither floods a third party nor starves the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

// The allow/deny rule lives in the decky crate: the deckies' fetcher (what
// an attacker downloads) is judged by the same lists and syntax.
pub use decnet_decky::net_policy::{CidrPolicy as Policy, DEFAULT_ALLOW};

/// Per-target pacing: at most `concurrency` probes in flight and at least
/// `min_gap` between two probe starts to the same address.
#[derive(Clone)]
pub struct Limiter {
    concurrency: usize,
    min_gap: Duration,
    targets: Arc<Mutex<HashMap<IpAddr, Target>>>,
}

struct Target {
    slots: Arc<Semaphore>,
    next_start: Instant,
}

impl Limiter {
    pub fn new(concurrency: usize, min_gap: Duration) -> Self {
        Limiter { concurrency: concurrency.max(1), min_gap, targets: Arc::default() }
    }

    /// Wait for a slot and the pacing gap; the permit frees the slot when dropped.
    pub async fn acquire(&self, ip: IpAddr) -> OwnedSemaphorePermit {
        let slots = {
            let mut t = self.targets.lock().expect("limiter lock");
            t.entry(ip)
                .or_insert_with(|| Target {
                    slots: Arc::new(Semaphore::new(self.concurrency)),
                    next_start: Instant::now(),
                })
                .slots
                .clone()
        };
        let permit = slots.acquire_owned().await.expect("semaphore never closed");
        let wait = {
            let mut t = self.targets.lock().expect("limiter lock");
            let now = Instant::now();
            let target = t.get_mut(&ip).expect("inserted above");
            let start = target.next_start.max(now);
            target.next_start = start + self.min_gap;
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_starts_and_caps_concurrency() {
        let l = Limiter::new(1, Duration::from_millis(100));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = tokio::time::Instant::now();
        let a = l.acquire(ip).await;
        drop(a);
        let _b = l.acquire(ip).await;
        assert!(t0.elapsed() >= Duration::from_millis(100));
        // The one slot is held: a third acquire must wait until it is freed.
        let l2 = l.clone();
        let third = tokio::spawn(async move { l2.acquire(ip).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished());
        drop(_b);
        let _permit = tokio::time::timeout(Duration::from_secs(1), third).await.unwrap().unwrap();
    }
}
