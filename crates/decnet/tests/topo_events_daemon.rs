//! SSE streams against the real `decnet bus` daemon: after 100
//! connect/disconnect cycles the daemon's own `system.bus.health` counter
//! shows no subscription left behind.

mod support;
mod topo_common;

use std::sync::Arc;
use std::time::Duration;

use decnet::api::events::EventsConfig;
use decnet_bus::sdk::AppBus;
use decnet_bus::client::UnixBus;
use decnet_bus::{Bus, Subscription};
use topo_common::{start, BusKind, SseReader};

/// Read `system.bus.health` until its `subscriptions` count is `want`, for up to 5 s.
async fn wait_for_count(health: &mut Subscription, want: u64) -> Result<(), u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = u64::MAX;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, health.recv()).await {
        last = event.payload["subscriptions"].as_u64().expect("health carries a subscription count");
        if last == want {
            return Ok(());
        }
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_cycles_leave_no_subscription_in_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = support::Daemon::start(dir.path(), &["--heartbeat-secs", "0.1"]);
    let api_bus: Arc<dyn Bus> = Arc::new(UnixBus::connect("api", &daemon.socket).await.unwrap());
    let api = start(BusKind::Shared(Arc::new(AppBus::fixed(api_bus))), EventsConfig::default()).await;
    let id = api.active_topology(&[]).await;

    let watcher = UnixBus::connect("watcher", &daemon.socket).await.unwrap();
    let mut health = watcher.subscribe("system.bus.health").await.unwrap();
    // Only the watcher's own subscription exists before any stream.
    wait_for_count(&mut health, 1).await.expect("baseline of one subscription");

    let mut open = SseReader::new(api.events(&id, &api.viewer).await);
    open.next().await;
    wait_for_count(&mut health, 2).await.expect("an open stream shows as one more subscription");
    drop(open);

    for _ in 0..100 {
        let mut stream = SseReader::new(api.events(&id, &api.viewer).await);
        assert_eq!(stream.next().await.event.as_deref(), Some("snapshot"));
        drop(stream);
    }
    if let Err(last) = wait_for_count(&mut health, 1).await {
        panic!("the daemon still counts {last} subscriptions after 100 cycles (want 1)");
    }
}
