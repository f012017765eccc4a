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
    #[error(
        "connection's patterns would hold {0} tokens, over its fair share of {1} (1/{FAIR_SHARES} of --max-index-nodes)"
    )]
    OverFairShare(usize, usize),
    #[error(
        "the subscription index is nearly full ({0} nodes): its last 1/{FAIR_SHARES} is kept for connections \
         holding at most {SMALL_CLIENT_TOKENS} pattern tokens"
    )]
    IndexReserved(usize),
}

/// No connection may hold more than this fraction of `max_index_nodes` in
/// pattern tokens, and the last such fraction of the index is kept for
/// small subscribers: one client filling the index must not leave every
/// new subscriber refused (issue 25).
pub const FAIR_SHARES: usize = 8;

/// A connection holding at most this many pattern tokens may still
/// subscribe in the reserved last share of the index. DECNET's workers
/// hold a few dozen patterns of a few tokens each: a few hundred.
pub const SMALL_CLIENT_TOKENS: usize = 1024;

impl Limits {
    /// Pattern tokens one connection may hold: its fair share of the index
    /// (never below what a small subscriber may hold).
    pub fn conn_token_budget(&self) -> usize {
        (self.max_index_nodes / FAIR_SHARES).max(SMALL_CLIENT_TOKENS)
    }

    /// Index nodes beyond which only small subscribers may add patterns.
    pub fn reserved_from(&self) -> usize {
        self.max_index_nodes - self.max_index_nodes / FAIR_SHARES
    }

    /// Whether a connection holding `held` pattern tokens may add a pattern
    /// of `tokens` to an index of `nodes` nodes: its fair share, the
    /// reserve for small subscribers, then the index's own bound.
    pub fn check_index_room(&self, held: usize, tokens: usize, nodes: usize) -> Result<(), SubLimitError> {
        let after = held + tokens;
        if after > self.conn_token_budget() {
            return Err(SubLimitError::OverFairShare(after, self.conn_token_budget()));
        }
        if nodes + tokens > self.max_index_nodes {
            return Err(SubLimitError::IndexFull(nodes));
        }
        if nodes + tokens > self.reserved_from() && after > SMALL_CLIENT_TOKENS {
            return Err(SubLimitError::IndexReserved(nodes));
        }
        Ok(())
    }

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

    #[test]
    fn index_room_is_shared_fairly() {
        let l = Limits { max_index_nodes: 80_000, ..Limits::default() };
        assert_eq!(l.conn_token_budget(), 10_000);
        assert_eq!(l.check_index_room(9_900, 100, 0), Ok(()));
        assert_eq!(l.check_index_room(9_901, 100, 0), Err(SubLimitError::OverFairShare(10_001, 10_000)));
        // The last eighth: small subscribers only.
        assert_eq!(l.check_index_room(2_000, 100, 69_950), Err(SubLimitError::IndexReserved(69_950)));
        assert_eq!(l.check_index_room(900, 100, 69_950), Ok(()));
        assert_eq!(l.check_index_room(0, 100, 79_950), Err(SubLimitError::IndexFull(79_950)));
        // A tiny index still lets one small subscriber in.
        let tiny = Limits { max_index_nodes: 100, ..Limits::default() };
        assert_eq!(tiny.check_index_room(0, 50, 0), Ok(()));
    }
}
