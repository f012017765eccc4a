//! What routing work costs, in one unit, so one connection's slice of the
//! routing thread can be bounded by what it really does.
//!
//! The daemon routes every connection on one thread (see `decnet bus
//! --threads`). A reader handles the frames it has read until their work
//! reaches [`SLICE_WORK`], then yields so other connections run. Counting
//! *frames* is not enough: a 200-token SUB, a SUB checked against 4,096
//! cached topics, a 1 MB PUB body or a publish walking 8,000 wildcard
//! branches each cost a thousand times a small PUB. So each operation is
//! charged for the steps it takes, in units of about one trie node visit
//! (10-40 ns of daemon time on the 2-core machine of BENCHMARKS.md). The
//! constants are rough estimates (callgrind puts a small PUB routed 1 -> 1
//! at ~5,000 daemon instructions in all; a new trie node is two
//! allocations); they need only be right within a factor of two or so:
//! the aim is slices well under a millisecond, not accounting.

/// A frame handled at all: parse, topic check, envelope, counters (~150 ns
/// for a small PUB).
pub const FRAME: usize = 16;
/// Body bytes per unit: validating a PUB body as JSON and copying it into
/// the EVT frame runs at about a byte per nanosecond.
pub const BODY_BYTES_PER_UNIT: usize = 8;
/// One target queue pushed (lock, refcount, maybe a wake-up).
pub const TARGET: usize = 4;
/// One trie node visited by a lookup (a pointer chase and a key copy).
pub const TRIE_NODE: usize = 2;
/// One pattern token inserted or removed: a node found, allocated or
/// freed, with its token string (two allocations for a new node).
pub const TOKEN: usize = 12;
/// One cached topic checked against a pattern on SUB/UNSUB/disconnect.
pub const CACHE_ENTRY: usize = 3;

/// Work a reader may do before it yields: a few hundred microseconds, so a
/// healthy client's event waits behind at most a few slices even when
/// every other connection is hostile (issue 15's soak: p99 < 5 ms).
/// Ordinary 128-byte PUBs cost 36-48 units each, so 340 or more of them
/// fit in a slice: about one yield per 64 KiB read, as before.
pub const SLICE_WORK: usize = 16_384;

/// The charge for handling one PUB with `body_len` bytes of body that
/// went to `targets` connections after `trie_nodes` node visits.
pub fn publish(body_len: usize, trie_nodes: usize, targets: usize) -> usize {
    FRAME + body_len / BODY_BYTES_PER_UNIT + trie_nodes * TRIE_NODE + targets * TARGET
}

/// The charge for a SUB/UNSUB that walked `tokens` pattern tokens and
/// checked `cache_entries` cached topics.
pub fn subscription(tokens: usize, cache_entries: usize) -> usize {
    FRAME + tokens * TOKEN + cache_entries * CACHE_ENTRY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_traffic_fits_a_read_per_slice_and_heavy_frames_do_not() {
        // Most of a 64 KiB read of 128-byte PUBs (~400 frames), 1 -> 1 and 1 -> 4.
        assert!(400 * publish(128, 0, 1) < SLICE_WORK);
        assert!(300 * publish(128, 0, 4) < SLICE_WORK);
        // A 1 MB body is a slice on its own.
        assert!(publish(1 << 20, 0, 1) > SLICE_WORK);
        // 64 KiB of 400-byte SUBs of 200 tokens is well over a slice.
        assert!((65_536 / 400) * subscription(200, 0) > SLICE_WORK);
        // So are 100 tiny SUBs against a full topic cache.
        assert!(100 * subscription(2, 4096) > SLICE_WORK);
    }
}
