//! Resource limits of the HTTP control plane, and the guard that enforces
//! the ones around login.
//!
//! Why these exist: argon2 is memory-hard on purpose (19 MiB per check with
//! the default parameters), so 200 concurrent logins once took the API to
//! 5 GiB and 143 threads, and nothing stopped an attacker from trying
//! passwords as fast as the CPU would hash them. Hashing now runs under a
//! small semaphore (memory and threads bounded by the permit count, not by
//! the number of callers), and failed logins are counted per (user,
//! address), per address and per user in fixed one-minute windows; past a
//! threshold the answer is a cheap 429 with `Retry-After`, without hashing.
//!
//! Whose lockout each count is: the per-(user, address) and per-address
//! counts only ever hold back the address that failed. The per-user count
//! (distributed guessing: many addresses, a few tries each) would, on its
//! own, let anyone lock the real admin out by failing 20 times from 20
//! addresses. So it never applies to an address this user has logged in
//! from successfully (kept in a bounded map for [`TRUST_FOR`]): the
//! attacker's fresh addresses are held back, the operator's own is not.
//! An operator at an address with no successful login since the API
//! started waits out the window like anyone else.
//!
//! The throttle's maps are bounded: when full, expired windows are dropped
//! first and then the oldest one, so a flood of distinct addresses costs a
//! bounded amount of memory (at worst it forgets the oldest offender).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a successful login exempts its (user, address) from the
/// per-user count.
pub const TRUST_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Settings fixed at start (`decnet api` flags).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Open TCP connections served at once; beyond it a new connection
    /// gets a 503 and is closed.
    pub max_connections: usize,
    /// A connection that has not sent a complete request head this long
    /// after connecting (or after its previous response) is closed.
    pub header_read_timeout: Duration,
    /// Password checks (argon2) running at once.
    pub hash_concurrency: usize,
    /// Longest a login waits for a hashing slot before a 503.
    pub hash_wait: Duration,
    pub throttle: ThrottleConfig,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            hash_concurrency: 2,
            hash_wait: Duration::from_secs(10),
            throttle: ThrottleConfig::default(),
        }
    }
}

/// Failed-login thresholds, each per `window`.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    pub window: Duration,
    /// Failures of one user name from one address.
    pub per_user_addr: u32,
    /// Failures from one address, any user names (password spraying).
    pub per_addr: u32,
    /// Failures for one user name, any addresses (distributed guessing);
    /// never applied to an address the user has logged in from.
    pub per_user: u32,
    /// Entries each map may hold.
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            window: Duration::from_secs(60),
            per_user_addr: 5,
            per_addr: 20,
            per_user: 20,
            max_tracked: 10_000,
        }
    }
}

/// One fixed window of failures.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counts keyed by `K`, bounded to `max` entries.
#[derive(Debug)]
struct Counter<K> {
    map: HashMap<K, Window>,
    limit: u32,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(limit: u32) -> Self {
        Counter { map: HashMap::new(), limit }
    }

    /// Seconds until `key` may try again, if it is over its limit now.
    fn blocked_for(&self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let w = self.map.get(key)?;
        let ends = w.started + window;
        (w.failures >= self.limit && ends > now).then(|| ends - now)
    }

    fn fail(&mut self, key: K, now: Instant, window: Duration, max: usize) {
        if !self.map.contains_key(&key) && self.map.len() >= max {
            self.map.retain(|_, w| w.started + window > now);
            if self.map.len() >= max {
                // Still full of live windows: forget the oldest one rather
                // than grow or stop counting new offenders.
                if let Some(oldest) = self.map.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| k.clone()) {
                    self.map.remove(&oldest);
                }
            }
        }
        let w = self.map.entry(key).or_insert(Window { started: now, failures: 0 });
        if w.started + window <= now {
            *w = Window { started: now, failures: 0 };
        }
        w.failures = w.failures.saturating_add(1);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

#[derive(Debug)]
struct Counters {
    user_addr: Counter<(String, IpAddr)>,
    addr: Counter<IpAddr>,
    user: Counter<String>,
    /// (user, address) pairs with a successful login, and when it was.
    trusted: HashMap<(String, IpAddr), Instant>,
}

impl Counters {
    fn is_trusted(&self, user: &str, addr: Option<IpAddr>, now: Instant) -> bool {
        addr.and_then(|a| self.trusted.get(&(user.to_owned(), a))).is_some_and(|at| *at + TRUST_FOR > now)
    }

    fn trust(&mut self, user: &str, addr: IpAddr, now: Instant, max: usize) {
        let key = (user.to_owned(), addr);
        if !self.trusted.contains_key(&key) && self.trusted.len() >= max {
            self.trusted.retain(|_, at| *at + TRUST_FOR > now);
            if self.trusted.len() >= max {
                // Only successful logins land here, so this is a map of
                // real operators: forgetting the least recent is harmless.
                if let Some(oldest) = self.trusted.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) {
                    self.trusted.remove(&oldest);
                }
            }
        }
        self.trusted.insert(key, now);
    }
}

/// The failed-login throttle.
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    counters: Mutex<Counters>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        let counters = Counters {
            user_addr: Counter::new(config.per_user_addr),
            addr: Counter::new(config.per_addr),
            user: Counter::new(config.per_user),
            trusted: HashMap::new(),
        };
        LoginThrottle { config, counters: Mutex::new(counters) }
    }

    /// How long `user` from `addr` must wait, when throttled. `addr` is
    /// `None` only when the server does not know the peer (in-process
    /// tests); then only the per-user count applies.
    pub fn check(&self, user: &str, addr: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let window = self.config.window;
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let by_user =
            if c.is_trusted(user, addr, now) { None } else { c.user.blocked_for(&user.to_owned(), now, window) };
        let by_addr = addr.and_then(|a| {
            let pair = c.user_addr.blocked_for(&(user.to_owned(), a), now, window);
            let any = c.addr.blocked_for(&a, now, window);
            pair.max(any)
        });
        by_user.max(by_addr)
    }

    /// Count one failed login.
    pub fn fail(&self, user: &str, addr: Option<IpAddr>) {
        let now = Instant::now();
        let (window, max) = (self.config.window, self.config.max_tracked);
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.user.fail(user.to_owned(), now, window, max);
        if let Some(a) = addr {
            c.user_addr.fail((user.to_owned(), a), now, window, max);
            c.addr.fail(a, now, window, max);
        }
    }

    /// A successful login forgets that pair's failures (a user who mistyped
    /// twice and then got it right starts afresh) and exempts the pair from
    /// the per-user count from now on. The per-address and per-user windows
    /// stay: success on one account does not excuse spraying others.
    pub fn succeed(&self, user: &str, addr: Option<IpAddr>) {
        if let Some(a) = addr {
            let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            c.user_addr.map.remove(&(user.to_owned(), a));
            c.trust(user, a, Instant::now(), self.config.max_tracked);
        }
    }

    /// Entries held across the three maps (for tests of the bound).
    pub fn tracked(&self) -> usize {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.user_addr.len() + c.addr.len() + c.user.len() + c.trusted.len()
    }
}

/// The semaphore password checks run under.
#[derive(Debug)]
pub struct HashSlots {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl HashSlots {
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        HashSlots { permits: Arc::new(Semaphore::new(concurrency.max(1))), wait }
    }

    /// A slot, or `None` after waiting `wait` (the caller answers 503).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await.ok()?.ok()
    }

    /// Run `f` (a password hash or check) on the blocking pool while
    /// holding a slot. `None` when no slot came free in time.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<Result<T, tokio::task::JoinError>> {
        let permit = self.acquire().await?;
        Some(
            tokio::task::spawn_blocking(move || {
                // Released when the hash is done, even if the request that
                // asked for it was dropped meanwhile.
                let _permit = permit;
                f()
            })
            .await,
        )
    }
}

/// Login protections shared by every request.
#[derive(Debug)]
pub struct LoginGuard {
    pub throttle: LoginThrottle,
    pub hashing: HashSlots,
}

impl LoginGuard {
    pub fn new(limits: &ApiLimits) -> Self {
        LoginGuard {
            throttle: LoginThrottle::new(limits.throttle.clone()),
            hashing: HashSlots::new(limits.hash_concurrency, limits.hash_wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn pair_threshold_blocks_only_that_pair() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        for _ in 0..5 {
            assert!(t.check("root", ip("10.0.0.1")).is_none());
            t.fail("root", ip("10.0.0.1"));
        }
        let wait = t.check("root", ip("10.0.0.1")).expect("throttled after 5");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50), "{wait:?}");
        assert!(t.check("root", ip("10.0.0.2")).is_none());
        assert!(t.check("alice", ip("10.0.0.1")).is_none());
    }

    #[test]
    fn spraying_from_one_address_is_throttled() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        for i in 0..20 {
            t.fail(&format!("u{i}"), ip("10.0.0.9"));
        }
        assert!(t.check("fresh", ip("10.0.0.9")).is_some());
        assert!(t.check("fresh", ip("10.0.0.8")).is_none());
    }

    #[test]
    fn failures_from_many_addresses_never_lock_out_an_address_that_logged_in() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        t.succeed("admin", ip("10.9.9.9"));
        for i in 0..40 {
            t.fail("admin", Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a01_0000 + i))));
        }
        assert!(t.check("admin", ip("10.9.9.9")).is_none(), "the admin's own address is not held back");
        assert!(t.check("admin", ip("10.2.0.1")).is_some(), "a fresh address is");
        // The address's own failures still count against it.
        for _ in 0..5 {
            t.fail("admin", ip("10.9.9.9"));
        }
        assert!(t.check("admin", ip("10.9.9.9")).is_some());
    }

    #[test]
    fn trusted_pairs_stay_bounded() {
        let cfg = ThrottleConfig { max_tracked: 50, ..ThrottleConfig::default() };
        let t = LoginThrottle::new(cfg);
        for i in 0..1_000u32 {
            t.succeed("admin", Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))));
        }
        assert!(t.tracked() <= 50, "{}", t.tracked());
    }

    #[test]
    fn windows_expire() {
        let cfg = ThrottleConfig { window: Duration::from_millis(50), ..ThrottleConfig::default() };
        let t = LoginThrottle::new(cfg);
        for _ in 0..5 {
            t.fail("root", ip("10.0.0.1"));
        }
        assert!(t.check("root", ip("10.0.0.1")).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check("root", ip("10.0.0.1")).is_none());
    }

    #[test]
    fn maps_stay_bounded_under_a_flood_of_addresses() {
        let cfg = ThrottleConfig { max_tracked: 100, ..ThrottleConfig::default() };
        let t = LoginThrottle::new(cfg);
        for i in 0..5_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.fail("root", Some(a));
        }
        // user_addr + addr at most 100 each, user map has one entry.
        assert!(t.tracked() <= 201, "{}", t.tracked());
        // The newest offender is still counted.
        let last = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 4_999));
        for _ in 0..4 {
            t.fail("root", Some(last));
        }
        assert!(t.check("root", Some(last)).is_some());
    }
}
