//! How much of the daemon one client (and all of them together) may use.
//!
//! Anyone in the socket's group can connect, so every resource a client can
//! make the daemon hold is bounded: subscriptions (trie memory), queued
//! outbound bytes, buffered inbound bytes, connections, and time spent on a
//! half-sent frame. A client over a per-connection limit is closed with one
//! log line naming the limit; a global budget protects everyone from many
//! clients each staying just under theirs.
//!
//! The defaults keep the daemon well under 256 MiB whatever clients do
//! (see BENCHMARKS.md, the soak run) while staying far above what a fleet
//! uses: DECNET workers hold a few dozen short patterns each.

use std::time::Duration;

/// Every limit, with the defaults `decnet bus` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest SUB/UNSUB pattern, in bytes.
    pub max_pattern_len: usize,
    /// Most tokens in one pattern.
    pub max_pattern_tokens: usize,
    /// Most patterns one connection may hold.
    pub max_subs_per_conn: usize,
    /// Trie nodes all connections together may create. Each costs about a
    /// hundred bytes, so the default bounds the index near 100 MiB even if
    /// many connections each fill their own allowance.
    pub max_index_nodes: usize,
    /// Bytes one connection's outbound queue may hold before its oldest
    /// events are dropped (alongside the event-count capacity).
    pub queue_bytes: usize,
    /// Bytes all outbound queues together may hold; past it, the queue being
    /// pushed drops its oldest events.
    pub max_queued_bytes: usize,
    /// Bytes all connections together may hold in half-received large
    /// frames (bodies over the 64 KiB read chunk). A reader over budget waits
    /// for room, within `frame_timeout`.
    pub max_read_bytes: usize,
    /// A frame whose first byte arrived longer ago than this and that is
    /// still incomplete closes its connection.
    pub frame_timeout: Duration,
    /// Connections served at once; more are accepted and closed at once
    /// with a log line, so the listen queue never fills with them.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pattern_len: 1024,
            max_pattern_tokens: 256,
            max_subs_per_conn: 10_000,
            max_index_nodes: 1_000_000,
            queue_bytes: 8 << 20,
            max_queued_bytes: 128 << 20,
            max_read_bytes: 64 << 20,
            frame_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Why a SUB was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubLimitError {
    #[error("pattern of {0} bytes exceeds the {1}-byte limit (--max-pattern-len)")]
    PatternTooLong(usize, usize),
    #[error("pattern of {0} tokens exceeds the {1}-token limit (--max-pattern-tokens)")]
    TooManyTokens(usize, usize),
    #[error("connection already holds {0} subscriptions, the limit (--max-subs-per-conn)")]
    TooManySubs(usize),
    #[error("the subscription index is full ({0} nodes, --max-index-nodes)")]
    IndexFull(usize),
}

impl Limits {
    /// Check one pattern's own size (before touching the index).
    pub fn check_pattern(&self, pattern: &str) -> Result<(), SubLimitError> {
        if pattern.len() > self.max_pattern_len {
            return Err(SubLimitError::PatternTooLong(pattern.len(), self.max_pattern_len));
        }
        let tokens = pattern.bytes().filter(|&b| b == b'.').count() + 1;
        if tokens > self.max_pattern_tokens {
            return Err(SubLimitError::TooManyTokens(tokens, self.max_pattern_tokens));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_length_and_tokens_are_bounded() {
        let l = Limits { max_pattern_len: 16, max_pattern_tokens: 3, ..Limits::default() };
        assert!(l.check_pattern("a.b.c").is_ok());
        assert_eq!(l.check_pattern("a.b.c.d"), Err(SubLimitError::TooManyTokens(4, 3)));
        assert_eq!(l.check_pattern(&"x".repeat(17)), Err(SubLimitError::PatternTooLong(17, 16)));
        assert!(l.check_pattern(&"x".repeat(16)).is_ok());
    }
}
