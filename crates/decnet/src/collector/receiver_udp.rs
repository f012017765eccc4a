//! Syslog over UDP (RFC 5426): one datagram, one message.
//!
//! UDP cannot be slowed down, so when the pipeline's queue is full the
//! datagram is dropped and counted against its sender (`try_send`), instead
//! of blocking this loop and letting the kernel drop everyone's datagrams
//! unseen. Source addresses of UDP can be spoofed; they are used only for
//! the drop counters, which are bounded.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use super::Incoming;

/// Receive until `shutdown`.
pub async fn run(
    socket: UdpSocket,
    max_line: usize,
    queue: mpsc::Sender<Incoming>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
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
        Stats::inc(&stats.received);
        if data.len() > max_line {
            Stats::inc(&stats.oversize);
            stats.drop_from(source);
            continue;
        }
        match queue.try_send(Incoming::new(source, Bytes::copy_from_slice(data))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => stats.drop_from(source),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
