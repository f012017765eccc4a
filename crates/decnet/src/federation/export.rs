//! Export: local events matching `--export` go to NATS.
//!
//! The bridge is a connection of the broker like any client, so its queue
//! is the export queue with the same drop-oldest behaviour: while NATS is
//! away the exporter stops draining, the queue keeps the newest events and
//! drops (and counts) the oldest, and publishers never notice. Once NATS is
//! back what is queued goes out, oldest first.
//!
//! Each queued item is an encoded `EVT <topic>` frame; its body is already
//! the envelope JSON, sent to NATS unchanged (a slice, not a copy).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use bytes::Bytes;
use decnet_bus::frame::{FrameSpan, Scan};
use decnet_bus::server::broker::ConnHandle;
use tokio_util::sync::CancellationToken;

use super::counters::FederationCounters;
use super::options::FederationConfig;
use super::presence::Identity;
use super::sequence::Numbering;
use super::{INSTANCE_HEADER, SEQ_HEADER};

/// How often the exporter looks at the connection while NATS is away.
const RECONNECT_POLL: Duration = Duration::from_millis(50);

pub async fn run(
    conn: Arc<ConnHandle>,
    client: async_nats::Client,
    config: Arc<FederationConfig>,
    id: Arc<Identity>,
    shutdown: CancellationToken,
) {
    let counters = &id.counters;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(super::ORIGIN_HEADER, config.host_id.as_str());
    headers.insert(INSTANCE_HEADER, id.instance.as_str());
    let mut numbering = Numbering::default();
    let numbered = |headers: &async_nats::HeaderMap, numbering: &mut Numbering, topic: &str| {
        let mut h = headers.clone();
        h.insert(SEQ_HEADER, numbering.next(topic).to_string().as_str());
        h
    };
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let mut subject = String::with_capacity(64);
    loop {
        // NATS first: while it is away, events wait in the broker queue,
        // which is the one place that drops the oldest.
        while client.connection_state() != State::Connected {
            note_queue_drops(&conn, counters);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = id.halt.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_POLL) => {}
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = id.halt.cancelled() => return, // refused: nothing more goes out
            more = conn.queue.drain_into(&mut batch) => if !more { break },
        }
        note_queue_drops(&conn, counters);
        while let Some(frame) = batch.pop_front() {
            let Some((topic, envelope)) = split_evt(&frame) else {
                // Built by our own broker, so this cannot happen; skip
                // rather than send NATS something malformed.
                continue;
            };
            subject.clear();
            subject.push_str(&config.prefix);
            subject.push('.');
            subject.push_str(topic);
            let headers = numbered(&headers, &mut numbering, topic);
            match client.publish_with_headers(subject.clone(), headers, envelope).await {
                Ok(()) => FederationCounters::add(&counters.exported, 1),
                Err(e) => {
                    let n = FederationCounters::add(&counters.dropped, 1);
                    if n.is_power_of_two() {
                        tracing::warn!(error = %e, dropped = n, "NATS refused an export; dropped");
                    }
                    0
                }
            };
        }
    }
    // Shutdown: hand NATS what is already queued (the stop task flushes).
    conn.queue.try_drain_into(&mut batch);
    for frame in batch {
        if let Some((topic, envelope)) = split_evt(&frame) {
            let subject = format!("{}.{topic}", config.prefix);
            let headers = numbered(&headers, &mut numbering, topic);
            if client.publish_with_headers(subject, headers, envelope).await.is_ok() {
                FederationCounters::add(&counters.exported, 1);
            }
        }
    }
}

/// Count what the export queue dropped; warn at the start of a burst only
/// (the bridge's ticker logs its end and total).
fn note_queue_drops(conn: &ConnHandle, counters: &FederationCounters) {
    let n = conn.queue.take_unreported_drops();
    if n > 0 {
        let total = FederationCounters::add(&counters.dropped, n);
        if counters.export_drops.note(n) {
            tracing::warn!(
                dropped_total = total,
                "NATS export queue full: oldest exports dropped (counted in federation.dropped; \
                 one line per burst)"
            );
        }
    }
}

/// The topic and envelope of an encoded `EVT` frame; the envelope shares
/// the frame's memory.
pub fn split_evt(frame: &Bytes) -> Option<(&str, Bytes)> {
    match FrameSpan::scan(frame) {
        Ok(Scan::Frame(span)) if span.len == frame.len() && span.verb == decnet_bus::Verb::Evt => {
            let topic = span.arg_str(frame);
            Some((topic, frame.slice(span.body.clone())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_evt_gives_topic_and_body() {
        let mut buf = bytes::BytesMut::new();
        decnet_bus::frame::encode_frame(decnet_bus::Verb::Evt, "a.b", br#"{"v":1}"#, &mut buf).unwrap();
        let frame = buf.freeze();
        let (topic, body) = split_evt(&frame).unwrap();
        assert_eq!(topic, "a.b");
        assert_eq!(&body[..], br#"{"v":1}"#);
        assert!(split_evt(&frame.slice(..frame.len() - 1)).is_none(), "a truncated frame is not split");
    }
}
