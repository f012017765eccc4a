//! Who is on the federation: each bridge announces its host id and a
//! random instance id, so two buses given the same host id notice.
//!
//! With the same host id, each bus took the other's exports for its own
//! coming back and dropped them: the two exchanged nothing, silently. Now
//! a bridge that hears its own host id from another instance, in an
//! announcement or on an event, refuses to federate: one ERROR line
//! naming the host id and what to do, `federation.error` in
//! `system.bus.health`, and no more exports or imports (the local bus
//! keeps working). The other bus does the same, because every bridge
//! answers an announcement from an instance it has not heard before, and
//! answers a duplicate in any case before refusing.
//!
//! Announcements travel on `_DECNET.bridge.<prefix>`, outside the prefix's
//! topics, so no import pattern sees them. A bridge announces when it
//! connects and after every reconnect.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::counters::FederationCounters;
use super::{INSTANCE_HEADER, ORIGIN_HEADER};

/// Header saying whether an announcement answers another.
const HELLO_HEADER: &str = "Decnet-Hello";
/// Instances answered, remembered so each is answered once (bounded: a
/// flood of fake instances only costs extra answers past it).
const MAX_ANSWERED: usize = 4096;

pub fn subject(prefix: &str) -> String {
    format!("_DECNET.bridge.{prefix}")
}

/// This bridge's identity on the federation, and the switch that stops it.
#[derive(Debug)]
pub struct Identity {
    pub host: String,
    pub instance: String,
    /// Cancelled when the bridge refuses to federate.
    pub halt: CancellationToken,
    pub counters: Arc<FederationCounters>,
}

impl Identity {
    /// Another bus federates under our host id: refuse, once.
    pub fn duplicate(&self, other_instance: &str) {
        let reason = format!(
            "duplicate host id {:?}: another bus (instance {}) federates under it on this NATS; \
             give each host a unique --host-id and restart",
            self.host,
            other_instance.chars().take(64).collect::<String>()
        );
        let mut error = self.counters.error.lock().unwrap_or_else(|e| e.into_inner());
        if error.is_none() {
            tracing::error!(host_id = %self.host, instance = %self.instance, "NATS federation refused: {reason}");
            *error = Some(reason);
            self.halt.cancel();
        }
    }

    fn headers(&self, reply: bool) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(ORIGIN_HEADER, self.host.as_str());
        h.insert(INSTANCE_HEADER, self.instance.as_str());
        h.insert(HELLO_HEADER, if reply { "reply" } else { "announce" });
        h
    }
}

/// Announce on `announce` (connects), answer others, detect duplicates.
pub async fn run(
    client: async_nats::Client,
    id: Arc<Identity>,
    prefix: String,
    announce: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let subject = subject(&prefix);
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(subject, error = %e, "cannot subscribe to bridge announcements; duplicate host ids go unnoticed");
            return;
        }
    };
    let answered = Mutex::new(HashSet::<String>::new());
    let say = |reply: bool| {
        let client = client.clone();
        let subject = subject.clone();
        let headers = id.headers(reply);
        async move {
            let _ = client.publish_with_headers(subject, headers, bytes::Bytes::new()).await;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = id.halt.cancelled() => break,
            _ = announce.notified() => {
                say(false).await;
                continue;
            }
            msg = sub.next() => match msg { Some(msg) => msg, None => break },
        };
        let Some(headers) = msg.headers.as_ref() else { continue };
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let (Some(origin), Some(instance)) = (get(ORIGIN_HEADER), get(INSTANCE_HEADER)) else { continue };
        if instance == id.instance {
            continue;
        }
        let is_reply = get(HELLO_HEADER).as_deref() == Some("reply");
        if origin == id.host {
            // Make sure the other bus hears us too, then refuse.
            if !is_reply {
                say(true).await;
            }
            let _ = client.flush().await;
            id.duplicate(&instance);
            break;
        }
        let first_time = {
            let mut seen = answered.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() >= MAX_ANSWERED {
                seen.clear();
            }
            seen.insert(instance)
        };
        if !is_reply && first_time {
            say(true).await;
        }
    }
    let _ = sub.unsubscribe().await;
}
