//! Believable password authentication: the persona's [`AuthPolicy`]
//! applied per source address.
//!
//! A honeypot that takes every password on the first try is spotted at
//! once; one that takes none records only failures. So a source's
//! password is accepted on its Nth attempt, N drawn at random per source
//! in the policy's `accept_after` range and counted across connections
//! (a brute-forcer reconnects every few tries, as sshd's MaxAuthTries
//! makes it). The password that got in stays that user's password for the
//! source, like a real one would; the next user starts a fresh count.
//! Exact `credentials` of the policy always succeed.
//!
//! The state is per decky and bounded: at most [`MAX_SOURCES`] sources,
//! the least recently seen forgotten first, and a few remembered
//! passwords per source, kept as SHA-256 digests (an attacker's 30 KB
//! "password" costs 32 bytes, and no secret sits in memory in clear).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use rand::Rng;

use crate::persona::AuthPolicy;

/// Sources one decky remembers; a scan from a whole network cannot grow it.
pub const MAX_SOURCES: usize = 4096;
/// Accepted (user, password) pairs remembered per source.
const MAX_REMEMBERED: usize = 8;

/// What one password attempt gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One of the policy's exact credentials.
    Credential,
    /// The source reached its drawn attempt count.
    Guessed,
    /// The password this source already got in with, again.
    Remembered,
    /// A wrong password (or before the source's count).
    Wrong,
    /// root with a password where the persona's sshd forbids it.
    RootRefused,
}

impl Verdict {
    pub fn accepted(self) -> bool {
        matches!(self, Verdict::Credential | Verdict::Guessed | Verdict::Remembered)
    }

    /// The `outcome` field of a `login_attempt` line.
    pub fn outcome(self) -> &'static str {
        if self.accepted() {
            "success"
        } else {
            "failure"
        }
    }
}

type Digest = [u8; 32];

fn digest(text: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

struct Source {
    attempts: u32,
    accept_on: u32,
    /// (user, password) digests that got in.
    remembered: Vec<(Digest, Digest)>,
    last_seen: u64,
}

/// Per-source attempt counts of one decky.
pub struct AuthTracker {
    state: Mutex<(HashMap<IpAddr, Source>, u64)>,
    capacity: usize,
}

impl Default for AuthTracker {
    fn default() -> Self {
        AuthTracker::with_capacity(MAX_SOURCES)
    }
}

/// The attempt on which a source gets in: uniform in the policy's range
/// (ends in either order); 0 never.
fn draw(policy: &AuthPolicy) -> u32 {
    let (a, b) = policy.accept_after;
    let (lo, hi) = (a.min(b), a.max(b));
    if hi == 0 {
        return 0;
    }
    rand::rng().random_range(lo.max(1)..=hi)
}

impl AuthTracker {
    pub fn with_capacity(capacity: usize) -> AuthTracker {
        AuthTracker { state: Mutex::new((HashMap::new(), 0)), capacity: capacity.max(1) }
    }

    /// A login service's check (telnet, ftp, smtp): the same count per
    /// source as SSH, so a source's Nth password gets in whichever service
    /// it tries. Root's password policy is SSH's own (sshd_config); these
    /// services decide about root themselves.
    pub fn check(&self, policy: &AuthPolicy, source: IpAddr, user: &str, password: &[u8]) -> bool {
        self.password(policy, true, source, user, &String::from_utf8_lossy(password)).accepted()
    }

    /// Sources currently remembered.
    pub fn sources(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    /// Judge one password attempt by `source` for `user`. `root_allowed`
    /// is whether the service lets root in with a password at all.
    pub fn password(
        &self,
        policy: &AuthPolicy,
        root_allowed: bool,
        source: IpAddr,
        user: &str,
        password: &str,
    ) -> Verdict {
        // The operator's explicit credentials win over everything else,
        // root policy included: listing root's password is a decision.
        if policy.credentials.iter().any(|(u, p)| u == user && p == password) {
            return Verdict::Credential;
        }
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (sources, clock) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if !sources.contains_key(&source) && sources.len() >= self.capacity {
            if let Some(oldest) = sources.iter().min_by_key(|(_, s)| s.last_seen).map(|(ip, _)| *ip) {
                sources.remove(&oldest);
            }
        }
        let entry = sources.entry(source).or_insert_with(|| Source {
            attempts: 0,
            accept_on: draw(policy),
            remembered: Vec::new(),
            last_seen: now,
        });
        entry.last_seen = now;
        if user == "root" && !root_allowed {
            entry.attempts = entry.attempts.saturating_add(1);
            return Verdict::RootRefused;
        }
        let (user_digest, password_digest) = (digest(user), digest(password));
        if let Some((_, known)) = entry.remembered.iter().find(|(u, _)| *u == user_digest) {
            if *known == password_digest {
                return Verdict::Remembered;
            }
            entry.attempts = entry.attempts.saturating_add(1);
            return Verdict::Wrong;
        }
        entry.attempts = entry.attempts.saturating_add(1);
        // A policy of 0 never accepts, whatever was drawn under an older one.
        let never = policy.accept_after.0.max(policy.accept_after.1) == 0;
        if never || entry.accept_on == 0 || entry.attempts < entry.accept_on {
            return Verdict::Wrong;
        }
        if entry.remembered.len() >= MAX_REMEMBERED {
            entry.remembered.remove(0);
        }
        entry.remembered.push((user_digest, password_digest));
        entry.attempts = 0;
        entry.accept_on = draw(policy);
        Verdict::Guessed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(lo: u32, hi: u32) -> AuthPolicy {
        AuthPolicy { accept_after: (lo, hi), credentials: vec![("svc".into(), "S3cret!".into())] }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn the_nth_attempt_of_a_source_gets_in_and_not_before() {
        let t = AuthTracker::default();
        let p = policy(3, 3);
        assert_eq!(t.password(&p, true, A, "admin", "a"), Verdict::Wrong);
        assert_eq!(t.password(&p, true, B, "admin", "a"), Verdict::Wrong, "sources count apart");
        assert_eq!(t.password(&p, true, A, "admin", "b"), Verdict::Wrong);
        assert_eq!(t.password(&p, true, A, "admin", "c"), Verdict::Guessed);
        assert_eq!(t.password(&p, true, A, "admin", "c"), Verdict::Remembered);
        assert_eq!(t.password(&p, true, A, "admin", "d"), Verdict::Wrong, "admin's password is now c");
        assert_eq!(t.password(&p, true, B, "admin", "b"), Verdict::Wrong);
        assert_eq!(t.password(&p, true, B, "admin", "z"), Verdict::Guessed);
    }

    #[test]
    fn a_drawn_count_stays_in_the_range() {
        for _ in 0..200 {
            let t = AuthTracker::default();
            let p = policy(5, 2);
            let n = (1..=10).find(|i| t.password(&p, true, A, "u", &i.to_string()).accepted()).unwrap();
            assert!((2..=5).contains(&n), "{n}");
        }
    }

    #[test]
    fn root_is_refused_unless_allowed_and_credentials_always_win() {
        let t = AuthTracker::default();
        let p = AuthPolicy { accept_after: (1, 1), credentials: vec![("root".into(), "toor".into())] };
        assert_eq!(t.password(&p, false, A, "root", "x"), Verdict::RootRefused);
        assert_eq!(t.password(&p, false, A, "root", "x"), Verdict::RootRefused);
        assert_eq!(t.password(&p, false, A, "root", "toor"), Verdict::Credential);
        assert_eq!(t.password(&p, true, B, "root", "x"), Verdict::Guessed);
        let never = policy(0, 0);
        assert!((0..20).all(|i| !t.password(&never, true, A, "u", &i.to_string()).accepted()));
        assert_eq!(t.password(&never, true, A, "svc", "S3cret!"), Verdict::Credential);
    }

    #[test]
    fn sources_are_bounded_and_the_oldest_goes_first() {
        let t = AuthTracker::with_capacity(3);
        let p = policy(2, 2);
        let ip = |i: u8| IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i));
        t.password(&p, true, ip(1), "u", "x");
        for i in 2..=50 {
            t.password(&p, true, ip(i), "u", "x");
            // ip(1) stays the most recent one, so it is never evicted.
            t.password(&p, true, ip(1), "v", "x");
        }
        assert_eq!(t.sources(), 3);
        // ip(1) kept its count through the churn: its second "v" attempt
        // got in long ago, so "v" is remembered with password x.
        assert_eq!(t.password(&p, true, ip(1), "v", "x"), Verdict::Remembered);
    }
}
