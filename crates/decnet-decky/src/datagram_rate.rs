//! How many datagrams and bytes a decky's UDP services take from each
//! source address: a token bucket per source (datagrams and bytes per
//! second, with a burst), and one for the decky as a whole so that a
//! flood from spoofed addresses is bounded too.
//!
//! Written here rather than with a rate-limiting crate: the map of sources
//! must stay bounded at every moment (a spoofed flood brings a new address
//! per datagram), and when it is full the decky falls back to its overall
//! bucket alone instead of growing; the keyed limiters we looked at grow
//! until an explicit cleanup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// The decky's UDP budgets.
#[derive(Debug, Clone)]
pub struct DatagramLimits {
    /// Datagrams per second from one address (sustained).
    pub per_source_datagrams: f64,
    /// Datagrams one address may send at once after being quiet.
    pub per_source_burst: f64,
    /// Bytes per second from one address; the burst is one second's worth.
    pub per_source_bytes: f64,
    /// Datagrams per second for the decky, all sources together.
    pub per_decky_datagrams: f64,
    /// Sources remembered at once.
    pub max_sources: usize,
}

impl Default for DatagramLimits {
    fn default() -> Self {
        DatagramLimits {
            // A walk, a zone's worth of lookups or a SIP scan line by line
            // stays under it; a flood does not.
            per_source_datagrams: 50.0,
            per_source_burst: 100.0,
            per_source_bytes: 64.0 * 1024.0,
            per_decky_datagrams: 1_000.0,
            max_sources: 4_096,
        }
    }
}

/// One bucket: `tokens` refill at `rate` per second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst, at: now }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// One source's two buckets.
#[derive(Debug, Clone, Copy)]
struct Source {
    datagrams: Bucket,
    bytes: Bucket,
}

/// Whether a datagram may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Refused, with the reason logged in `connection_refused`.
    Refused(&'static str),
}

/// Per-decky state of the UDP budgets.
#[derive(Debug)]
pub struct DatagramRates {
    limits: DatagramLimits,
    sources: HashMap<IpAddr, Source>,
    decky: Bucket,
}

impl DatagramRates {
    pub fn new(limits: DatagramLimits) -> DatagramRates {
        let now = Instant::now();
        DatagramRates { decky: Bucket::full(limits.per_decky_datagrams, now), limits, sources: HashMap::new() }
    }

    /// Sources remembered now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Take one datagram of `bytes` from `source` at `now`, or refuse it.
    pub fn admit(&mut self, source: IpAddr, bytes: usize, now: Instant) -> Verdict {
        let l = &self.limits;
        self.decky.refill(l.per_decky_datagrams, l.per_decky_datagrams, now);
        if self.decky.tokens < 1.0 {
            return Verdict::Refused("decky rate");
        }
        if !self.sources.contains_key(&source) && self.sources.len() >= l.max_sources.max(1) {
            // Forget sources whose buckets have refilled: they are the
            // same as new ones.
            let (dr, db, br) = (l.per_source_datagrams, l.per_source_burst, l.per_source_bytes);
            self.sources.retain(|_, s| {
                let mut s = *s;
                s.datagrams.refill(dr, db, now);
                s.bytes.refill(br, br, now);
                s.datagrams.tokens < db || s.bytes.tokens < br
            });
        }
        let bytes = bytes as f64;
        if let Some(s) = self.sources.get_mut(&source) {
            s.datagrams.refill(l.per_source_datagrams, l.per_source_burst, now);
            s.bytes.refill(l.per_source_bytes, l.per_source_bytes, now);
            if s.datagrams.tokens < 1.0 || s.bytes.tokens < bytes {
                return Verdict::Refused("source rate");
            }
            s.datagrams.tokens -= 1.0;
            s.bytes.tokens -= bytes;
        } else if self.sources.len() < l.max_sources.max(1) {
            if bytes > l.per_source_bytes {
                return Verdict::Refused("source rate");
            }
            let mut s = Source {
                datagrams: Bucket::full(l.per_source_burst, now),
                bytes: Bucket::full(l.per_source_bytes, now),
            };
            s.datagrams.tokens -= 1.0;
            s.bytes.tokens -= bytes;
            self.sources.insert(source, s);
        }
        // A source that could not be remembered is held by the decky's
        // bucket alone.
        self.decky.tokens -= 1.0;
        Verdict::Admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> DatagramLimits {
        DatagramLimits {
            per_source_datagrams: 10.0,
            per_source_burst: 5.0,
            per_source_bytes: 1000.0,
            per_decky_datagrams: 100.0,
            max_sources: 8,
        }
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut r = DatagramRates::new(limits());
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(r.admit(ip(1), 10, t0), Verdict::Admitted);
        }
        assert_eq!(r.admit(ip(1), 10, t0), Verdict::Refused("source rate"));
        // Another source is not affected.
        assert_eq!(r.admit(ip(2), 10, t0), Verdict::Admitted);
        // 10 per second: one more after 100 ms, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.admit(ip(1), 10, t1), Verdict::Admitted);
        assert_eq!(r.admit(ip(1), 10, t1), Verdict::Refused("source rate"));
    }

    #[test]
    fn bytes_are_budgeted_apart_from_datagrams() {
        let mut r = DatagramRates::new(limits());
        let t0 = Instant::now();
        assert_eq!(r.admit(ip(1), 900, t0), Verdict::Admitted);
        assert_eq!(r.admit(ip(1), 200, t0), Verdict::Refused("source rate"));
        assert_eq!(r.admit(ip(1), 100, t0), Verdict::Admitted);
        // A first datagram larger than a second's bytes is refused outright.
        assert_eq!(r.admit(ip(9), 1001, t0), Verdict::Refused("source rate"));
    }

    #[test]
    fn the_decky_bucket_bounds_a_spoofed_flood() {
        let mut r = DatagramRates::new(limits());
        let t0 = Instant::now();
        let admitted = (0..1000).filter(|i| r.admit(ip(*i), 10, t0) == Verdict::Admitted).count();
        assert_eq!(admitted, 100);
        assert_eq!(r.admit(ip(5000), 10, t0), Verdict::Refused("decky rate"));
        assert!(r.sources() <= 8, "{} sources remembered", r.sources());
    }

    #[test]
    fn the_source_map_stays_bounded_and_forgets_quiet_sources() {
        let mut r = DatagramRates::new(limits());
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(r.admit(ip(i), 10, t0), Verdict::Admitted);
        }
        assert_eq!(r.sources(), 8);
        // An unremembered source is still limited by the decky's bucket,
        // and once the old ones have refilled they make room.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(r.admit(ip(100), 10, later), Verdict::Admitted);
        assert_eq!(r.sources(), 1);
    }
}
