//! Syslog over UDP (RFC 5426): one datagram, one message.
//!
//! UDP cannot be slowed down, so when the pipeline's queue is full, or the
//! sender's share of its memory budget is, the datagram is dropped and
//! counted against its sender (`try_send`), instead of blocking this loop
//! and letting the kernel drop everyone's datagrams unseen. What the kernel
//! drops anyway (its receive buffer overflowed) is read from /proc and
//! reported as `udp_kernel_drops` ([`super::stats`]). Datagrams from
//! senders outside `--allow` are dropped unparsed and counted.
//!
//! Source addresses of UDP can be spoofed; they are used only for the
//! drop counters and the fair shares, both bounded in total.

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::access::{Networks, Transport};
use super::receiver_tcp::Shared;
use super::stats::Stats;
use super::Incoming;

/// Receive until shutdown.
pub async fn run(socket: UdpSocket, max_line: usize, allow: Networks, ctx: Shared) {
    let Shared { queue, budget, stats, shutdown } = ctx;
    // The largest possible UDP payload, so nothing is silently truncated.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors and the like surface here; they concern one peer.
                    tracing::debug!(error = %e, "collector UDP receive failed");
                    continue;
                }
            },
        };
        let source = peer.ip().to_canonical();
        if !allow.contains(source) {
            Stats::inc(&stats.not_allowed);
            continue;
        }
        let mut data = &buf[..n];
        while let Some((last, rest)) = data.split_last() {
            if !matches!(last, b'\n' | b'\r' | b'\0') {
                break;
            }
            data = rest;
        }
        if data.is_empty() {
            continue;
        }
        stats.received_on(Transport::Udp);
        // A longer datagram keeps its head, marked, instead of vanishing.
        let (data, cut) = if data.len() > max_line {
            Stats::inc(&stats.oversize);
            (&data[..max_line], true)
        } else {
            (data, false)
        };
        let Some(held) = budget.try_hold(source, data.len()) else {
            stats.drop_from(source);
            continue;
        };
        let incoming = Incoming::new(Transport::Udp, source, Bytes::copy_from_slice(data), Some(held));
        match queue.try_send(if cut { incoming.cut() } else { incoming }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => stats.drop_from(source),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
