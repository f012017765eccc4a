//! One event per (attacker ip, event type, fingerprint) per window (5 min
//! by default): a scanner opening a thousand connections is one JA3, not a
//! thousand events. Bounded: when the table is full even after dropping
//! expired keys it starts over, so memory stays capped under a flood at
//! the price of some repeats.

use std::collections::HashMap;
use std::net::IpAddr;

pub const DEFAULT_WINDOW_SECS: f64 = 300.0;
pub const DEFAULT_MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct Dedup {
    window: f64,
    max: usize,
    seen: HashMap<(IpAddr, &'static str, String), f64>,
    pub suppressed: u64,
}

impl Dedup {
    pub fn new(window_secs: f64, max_keys: usize) -> Self {
        Dedup { window: window_secs, max: max_keys.max(1), seen: HashMap::new(), suppressed: 0 }
    }

    /// True when this is the first sighting within the window.
    pub fn first(&mut self, ip: IpAddr, ty: &'static str, fingerprint: &str, now: f64) -> bool {
        let key = (ip, ty, fingerprint.to_string());
        if let Some(at) = self.seen.get(&key) {
            if now - at < self.window {
                self.suppressed += 1;
                return false;
            }
        }
        if self.seen.len() >= self.max && !self.seen.contains_key(&key) {
            let window = self.window;
            self.seen.retain(|_, at| now - *at < window);
            if self.seen.len() >= self.max {
                self.seen.clear();
            }
        }
        self.seen.insert(key, now);
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_window_and_bounded() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut d = Dedup::new(300.0, 3);
        assert!(d.first(ip, "tls_client_hello", "a", 0.0));
        assert!(!d.first(ip, "tls_client_hello", "a", 299.0));
        assert!(d.first(ip, "tls_client_hello", "b", 1.0));
        assert!(d.first(ip, "ssh_client_banner", "a", 1.0));
        assert!(d.first(ip, "tls_client_hello", "a", 301.0), "window over");
        for i in 0..10 {
            d.first(ip, "tcp_syn_fingerprint", &i.to_string(), 400.0);
            assert!(d.len() <= 3);
        }
        assert_eq!(d.suppressed, 1);
    }
}
