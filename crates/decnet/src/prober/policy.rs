//! What the prober may touch, and how hard.
//!
//! Probing back is active traffic towards addresses that attackers can
//! choose (a spoofed source, a victim's address), so nothing is probed
//! unless the operator allowed its network: the default allow list is
//! loopback only (the demo), deny always wins, and every target gets a
//! minimum gap between probe starts and a cap on probes in flight, so one
//! noisy attacker neither floods a third party nor starves the others.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Networks allowed when the operator sets none.
pub const DEFAULT_ALLOW: &[&str] = &["127.0.0.0/8", "::1/128"];

#[derive(Debug, Clone)]
pub struct Policy {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl Policy {
    /// Parse CIDR lists (a bare address is a /32 or /128).
    pub fn parse(allow: &[String], deny: &[String]) -> anyhow::Result<Policy> {
        let parse = |list: &[String], what: &str| -> anyhow::Result<Vec<IpNet>> {
            list.iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<IpNet>()
                        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| anyhow::anyhow!("{what} entry {s:?} is not a CIDR network or address"))
                })
                .collect()
        };
        let mut allow = parse(allow, "--allow")?;
        if allow.is_empty() {
            allow = DEFAULT_ALLOW.iter().map(|s| s.parse().expect("valid default")).collect();
        }
        Ok(Policy { allow, deny: parse(deny, "--deny")? })
    }

    /// Allowed: inside some allow network and no deny network. IPv4-mapped
    /// IPv6 addresses are judged as the IPv4 address they carry.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        !self.deny.iter().any(|n| n.contains(&ip)) && self.allow.iter().any(|n| n.contains(&ip))
    }
}

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

    #[test]
    fn default_is_loopback_only_and_deny_wins() {
        let p = Policy::parse(&[], &[]).unwrap();
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("::1".parse().unwrap()));
        assert!(p.permits("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!p.permits("10.0.0.1".parse().unwrap()));
        let p = Policy::parse(&["127.0.0.0/8,192.0.2.0/24".into()], &["127.0.0.9".into()]).unwrap();
        assert!(p.permits("192.0.2.7".parse().unwrap()));
        assert!(!p.permits("127.0.0.9".parse().unwrap()));
        let e = Policy::parse(&["nope".into()], &[]).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

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
