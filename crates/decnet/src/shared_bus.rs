//! The seam between the control plane and "the bus this process shares".
//!
//! In production it is the SDK's `AppBus` (one lazily connected UNIX
//! client per process, reconnect attempts rate-limited); tests hand the
//! same routes an in-process `FakeBus` client or a bus that is down, so
//! every route and the registry run unchanged against either.

use decnet_bus::Bus;
use std::sync::Arc;

#[async_trait::async_trait]
pub trait SharedBus: Send + Sync + 'static {
    /// The bus if it can be had now (connecting if needed, never blocking
    /// long); `None` while it is down. Never an error: a dead bus must not
    /// fail a request that does not need it.
    async fn get(&self) -> Option<Arc<dyn Bus>>;

    /// Whether the bus connection is up at this moment.
    fn is_connected(&self) -> bool;
}

/// A fixed, already-connected bus (an in-process `FakeBus` client, say).
pub struct FixedBus(pub Arc<dyn Bus>);

#[async_trait::async_trait]
impl SharedBus for FixedBus {
    async fn get(&self) -> Option<Arc<dyn Bus>> {
        (!self.0.is_closed()).then(|| self.0.clone())
    }

    fn is_connected(&self) -> bool {
        self.0.is_connected()
    }
}

/// No bus at all: every `get` is `None`, `is_connected` is false.
pub struct NoBus;

#[async_trait::async_trait]
impl SharedBus for NoBus {
    async fn get(&self) -> Option<Arc<dyn Bus>> {
        None
    }

    fn is_connected(&self) -> bool {
        false
    }
}
