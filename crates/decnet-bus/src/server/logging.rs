//! What the daemon writes to its log about clients, made safe to read.
//!
//! Two threats from a client that can reach the socket:
//! - **Terminal and log injection.** A HELLO name, a verb or a topic is
//!   ASCII but may hold ESC, CR or other control bytes; written raw, they
//!   repaint an operator's terminal or forge log lines. [`escape`] turns
//!   every control byte into a visible `\xNN` escape.
//! - **Log flooding.** Each hostile connection earns one log line (SPEC
//!   §2), so a client reconnecting in a loop could write thousands of lines
//!   a second. [`LogLimiter`] is a token bucket: a burst is logged in full,
//!   beyond it lines are counted, and one "suppressed N" line says how many
//!   were left out.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `s` with control bytes and DEL escaped as `\xNN`; borrowed when
/// nothing needed escaping (the common case costs no allocation).
pub fn escape(s: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control();
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs(c) && (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if needs(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Token bucket for one kind of log line.
#[derive(Debug)]
pub struct LogLimiter {
    state: Mutex<Bucket>,
    per_sec: f64,
    burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

/// What the caller should do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write the line; `suppressed` lines were left out before it (say so first when > 0).
    Log { suppressed: u64 },
    /// Leave it out; it was counted.
    Suppress,
}

impl LogLimiter {
    /// `per_sec` lines a second on average, bursts of up to `burst`.
    pub fn new(per_sec: f64, burst: u32) -> LogLimiter {
        let burst = f64::from(burst.max(1));
        LogLimiter {
            state: Mutex::new(Bucket { tokens: burst, last: Instant::now(), suppressed: 0 }),
            per_sec: per_sec.max(0.001),
            burst,
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let earned = now.saturating_duration_since(b.last).as_secs_f64() * self.per_sec;
        b.tokens = (b.tokens + earned).min(self.burst);
        b.last = now;
    }

    /// One line wants out.
    pub fn admit(&self) -> Admit {
        let mut b = self.bucket();
        self.refill(&mut b, Instant::now());
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admit::Log { suppressed: std::mem::take(&mut b.suppressed) }
        } else {
            b.suppressed += 1;
            Admit::Suppress
        }
    }

    /// Lines left out and not yet reported, when the bucket has room to say
    /// so. Called periodically, so the summary appears even when no further
    /// line arrives.
    pub fn take_summary(&self) -> Option<u64> {
        let mut b = self.bucket();
        self.refill(&mut b, Instant::now());
        if b.suppressed == 0 || b.tokens < 1.0 {
            return None;
        }
        b.tokens -= 1.0;
        Some(std::mem::take(&mut b.suppressed))
    }
}

/// Hostile-connection lines: 20 a second, bursts of 50. Enough to see
/// every detail of a handful of misbehaving clients; a flood costs a few
/// lines and a count.
pub fn hostile_limiter() -> LogLimiter {
    LogLimiter::new(20.0, 50)
}

/// How often the daemon writes pending "suppressed N" summaries.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_and_backslash_are_escaped() {
        assert!(matches!(escape("worker-1 ok"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[31mred\r\nfake line"), "a\\x1b[31mred\\x0d\\x0afake line");
        assert_eq!(escape("del\x7f"), "del\\x7f");
        assert_eq!(escape("tab\there"), "tab\\x09here");
    }

    #[test]
    fn burst_then_suppression_then_summary() {
        let l = LogLimiter::new(0.001, 3);
        assert_eq!(l.admit(), Admit::Log { suppressed: 0 });
        assert_eq!(l.admit(), Admit::Log { suppressed: 0 });
        assert_eq!(l.admit(), Admit::Log { suppressed: 0 });
        for _ in 0..10 {
            assert_eq!(l.admit(), Admit::Suppress);
        }
        // No token left: the summary waits too.
        assert_eq!(l.take_summary(), None);
        let fast = LogLimiter::new(1000.0, 1);
        assert_eq!(fast.admit(), Admit::Log { suppressed: 0 });
        assert_eq!(fast.admit(), Admit::Suppress);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(fast.take_summary(), Some(1));
        assert_eq!(fast.take_summary(), None);
    }
}
