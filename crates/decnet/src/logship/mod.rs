//! Log shipping: each host's `decnet forwarder` tails its ingest log and
//! sends it to the master's `decnet listener` as syslog over TLS (RFC 5425
//! octet-counted frames, TLS ≥ 1.2, mutual certificates from our own CA),
//! and nothing is lost or duplicated across restarts of either side.
//!
//! - [`ca`]: `decnet ca init` / `decnet ca issue NAME` (rcgen).
//! - [`tls`]: the rustls configurations (ring provider) and the peer CN.
//! - [`frame`]: RFC 5425 framing and our two control messages.
//! - [`listener`]: the master side, writing `master.log` + `master.json`.
//! - [`forwarder`]: the host side, tailing with an inode + offset cursor.
//!
//! Exactly-once rests on the master being the source of truth for the
//! position: every `master.json` record carries the sender's file inode
//! and the byte offset just past the shipped line, so on (re)connect the
//! listener tells the forwarder where to resume, from data it has written.
//! The forwarder persists the offset the master acknowledged, never more.

pub mod ca;
pub mod forwarder;
pub mod frame;
pub mod listener;
pub mod tls;
