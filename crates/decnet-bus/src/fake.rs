//! `FakeBus`: an in-process hub with the daemon's semantics, for tests and
//! for single-process setups (`DECNET_BUS_TYPE=fake`).
//!
//! It routes with the same [`SubscriptionIndex`] the daemon uses and feeds
//! each subscription through the same drop-oldest [`EventQueue`], and its
//! events are real envelopes built by [`build_envelope`], so code tested
//! against it sees exactly what it would see over the socket: the same
//! wildcard matches, the same overflow behaviour, no echo of a client's own
//! publishes, server-minted `id`/`ts`.
//!
//! ```
//! # tokio_test_block_on(async {
//! use decnet_bus::fake::FakeBus;
//! let hub = FakeBus::new();
//! let api = hub.client("api");
//! let sniffer = hub.client("sniffer");
//! let mut sub = api.subscribe("system.*.health").await.unwrap();
//! sniffer.publish("system.sniffer.health", "health", serde_json::json!({"worker": "sniffer"})).await.unwrap();
//! assert_eq!(sub.recv().await.unwrap().topic, "system.sniffer.health");
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::BytesMut;

use crate::bus::{Bus, BusError, RawEvent, Subscription};
use crate::envelope::{build_envelope, pub_body};
use crate::index::SubscriptionIndex;
use crate::queue::{EventQueue, PushOutcome};
use crate::topic::{Pattern, Topic};

/// The hub. Cheap to clone; every clone is the same hub.
#[derive(Clone, Default)]
pub struct FakeBus {
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    state: Mutex<HubState>,
    next_client: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
}

#[derive(Default)]
struct HubState {
    /// Keyed per subscription (not per client): the daemon routes per
    /// connection and the client then fans out to each matching local
    /// subscription, which ends in the same set of deliveries.
    index: SubscriptionIndex<u64>,
    subs: HashMap<u64, SubEntry>,
    next_sub: u64,
}

struct SubEntry {
    client: u64,
    pattern: Pattern,
    queue: Arc<EventQueue<RawEvent>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Nothing panics while holding this lock in a way that tears state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove_sub(&self, id: u64) {
        let mut st = self.lock();
        if let Some(entry) = st.subs.remove(&id) {
            st.index.remove(id, entry.pattern.as_str());
            entry.queue.close();
        }
    }
}

impl std::fmt::Debug for FakeBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBus").field("subscriptions", &self.subscription_count()).finish()
    }
}

impl FakeBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new client connection to this hub, announced as `name`.
    pub fn client(&self, name: &str) -> Arc<dyn Bus> {
        Arc::new(self.fake_client(name))
    }

    /// Like [`client`](Self::client), keeping the concrete type.
    pub fn fake_client(&self, name: &str) -> FakeBusClient {
        FakeBusClient {
            name: name.to_owned(),
            id: self.hub.next_client.fetch_add(1, Ordering::Relaxed),
            hub: self.hub.clone(),
            closed: AtomicBool::new(false),
            warned_after_close: AtomicBool::new(false),
        }
    }

    /// Open subscriptions across all clients.
    pub fn subscription_count(&self) -> usize {
        self.hub.lock().subs.len()
    }

    /// Events accepted from publishers.
    pub fn published(&self) -> u64 {
        self.hub.published.load(Ordering::Relaxed)
    }

    /// Events queued to subscriptions (one per matching subscription).
    pub fn delivered(&self) -> u64 {
        self.hub.delivered.load(Ordering::Relaxed)
    }
}

/// One client of a [`FakeBus`] hub.
pub struct FakeBusClient {
    name: String,
    id: u64,
    hub: Arc<Hub>,
    closed: AtomicBool,
    warned_after_close: AtomicBool,
}

impl std::fmt::Debug for FakeBusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBusClient").field("name", &self.name).field("closed", &self.is_closed()).finish()
    }
}

/// SPEC §6: the first publish dropped after close is a WARN (likely a bug
/// in shutdown ordering), later ones only DEBUG so a closing worker cannot
/// flood the log.
pub(crate) fn log_publish_after_close(warned: &AtomicBool, client: &str, topic: &str) {
    if warned.swap(true, Ordering::Relaxed) {
        tracing::debug!(client, topic, "bus closed: publish dropped");
    } else {
        tracing::warn!(client, topic, "bus closed: publish dropped (further drops are logged at debug)");
    }
}

#[async_trait::async_trait]
impl Bus for FakeBusClient {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, topic: &str, event_type: &str, payload: serde_json::Value) -> Result<(), BusError> {
        let topic = Topic::new(topic)?;
        if self.is_closed() {
            log_publish_after_close(&self.warned_after_close, &self.name, topic.as_str());
            return Ok(());
        }
        let mut body = BytesMut::new();
        build_envelope(topic.as_str(), &pub_body(event_type, &payload), &mut body)?;
        let event = RawEvent { topic: Arc::from(topic.as_str()), body: body.freeze() };

        self.hub.published.fetch_add(1, Ordering::Relaxed);
        let st = self.hub.lock();
        let targets = st.index.lookup(topic.as_str());
        let mut delivered = 0;
        for sub_id in targets.iter() {
            let Some(entry) = st.subs.get(sub_id) else { continue };
            if entry.client == self.id {
                continue; // SPEC §4: never echo to the publishing connection.
            }
            match entry.queue.push(event.clone()) {
                PushOutcome::Queued => delivered += 1,
                PushOutcome::DroppedOldest => {
                    delivered += 1;
                    let dropped = entry.queue.take_unreported_drops();
                    if dropped > 0 {
                        tracing::debug!(pattern = %entry.pattern, dropped, "fake bus: slow subscriber, oldest events dropped");
                    }
                }
                PushOutcome::Closed => {}
            }
        }
        drop(st);
        self.hub.delivered.fetch_add(delivered, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe_with_capacity(&self, pattern: &str, capacity: usize) -> Result<Subscription, BusError> {
        let pattern = Pattern::new(pattern)?;
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let queue = Arc::new(EventQueue::new(capacity));
        let id = {
            let mut st = self.hub.lock();
            // Re-check under the lock so a concurrent close cannot miss this one.
            if self.is_closed() {
                return Err(BusError::Closed);
            }
            let id = st.next_sub;
            st.next_sub += 1;
            st.index.insert(id, pattern.as_str());
            st.subs.insert(id, SubEntry { client: self.id, pattern: pattern.clone(), queue: queue.clone() });
            id
        };
        let hub: Weak<Hub> = Arc::downgrade(&self.hub);
        let on_drop = Box::new(move || {
            if let Some(hub) = hub.upgrade() {
                hub.remove_sub(id);
            }
        });
        Ok(Subscription::new(pattern.into_string(), queue, Some(on_drop)))
    }

    async fn close(&self) {
        self.shut();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl FakeBusClient {
    /// Mark closed and end every subscription of this client. Idempotent.
    fn shut(&self) {
        let mut st = self.hub.lock();
        // Flipped under the hub lock so a concurrent subscribe either lands
        // before (and is ended here) or sees the flag and refuses.
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let mine: Vec<u64> = st.subs.iter().filter(|(_, e)| e.client == self.id).map(|(id, _)| *id).collect();
        for id in mine {
            if let Some(entry) = st.subs.remove(&id) {
                st.index.remove(id, entry.pattern.as_str());
                entry.queue.close();
            }
        }
    }
}

impl Drop for FakeBusClient {
    fn drop(&mut self) {
        // A dropped client is a closed connection: its subscriptions end.
        self.shut();
    }
}
