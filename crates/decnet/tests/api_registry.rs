//! The worker registry fed by a FakeBus through the AppBus, with short
//! stale windows: ok, stale, unknown, and names off the known list.

use decnet::registry::{WorkerHealth, WorkerRegistry};
use decnet_bus::fake::FakeBus;
use decnet_bus::sdk::AppBus;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn status(reg: &WorkerRegistry, name: &str) -> WorkerHealth {
    reg.snapshot(decnet_bus::envelope::now_ts()).into_iter().find(|w| w.name == name).unwrap().status
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn heartbeats_turn_ok_then_stale_after_the_window() {
    let hub = FakeBus::new();
    let reg = Arc::new(WorkerRegistry::new(vec!["bus".into(), "sniffer".into()], Duration::from_millis(300)));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reg.clone().run(Arc::new(AppBus::fixed(hub.client("api"))), cancel.clone()));
    until("subscribed", || hub.subscription_count() == 2).await;
    assert_eq!(status(&reg, "sniffer"), WorkerHealth::Unknown);

    let daemon = hub.client("bus");
    daemon.publish("system.bus.health", "health", serde_json::json!({"pid": 42})).await.unwrap();
    until("bus ok", || status(&reg, "bus") == WorkerHealth::Ok).await;
    let row = reg.snapshot(decnet_bus::envelope::now_ts()).into_iter().find(|w| w.name == "bus").unwrap();
    assert_eq!(row.extra, serde_json::json!({"pid": 42}));
    until("bus stale", || status(&reg, "bus") == WorkerHealth::Stale).await;
    // A new heartbeat brings it back.
    daemon.publish("system.bus.health", "health", serde_json::json!({})).await.unwrap();
    until("bus ok again", || status(&reg, "bus") == WorkerHealth::Ok).await;
    assert_eq!(status(&reg, "sniffer"), WorkerHealth::Unknown);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("registry stops on cancel").unwrap();
}

#[tokio::test]
async fn names_off_the_known_list_never_add_rows() {
    let hub = FakeBus::new();
    let reg = Arc::new(WorkerRegistry::new(vec!["sniffer".into()], Duration::from_secs(90)));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reg.clone().run(Arc::new(AppBus::fixed(hub.client("api"))), cancel.clone()));
    until("subscribed", || hub.subscription_count() == 2).await;
    let other = hub.client("x");
    for name in ["intruder", "collector", "bus"] {
        other.publish(&format!("system.{name}.health"), "health", serde_json::json!({})).await.unwrap();
    }
    // Then a known one, so we know the others were processed before it.
    other.publish("system.sniffer.health", "health", serde_json::json!({})).await.unwrap();
    until("sniffer ok", || status(&reg, "sniffer") == WorkerHealth::Ok).await;
    let names: Vec<_> = reg.snapshot(decnet_bus::envelope::now_ts()).into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["sniffer"]);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn registry_waits_for_a_bus_that_is_down_and_stops_cleanly() {
    let reg = Arc::new(WorkerRegistry::new(vec!["bus".into()], Duration::from_secs(90)));
    let cancel = CancellationToken::new();
    let bus = Arc::new(AppBus::new("api", "/nonexistent/decnet/bus.sock"));
    let task = tokio::spawn(reg.clone().run(bus, cancel.clone()));
    tokio::task::yield_now().await;
    assert_eq!(status(&reg, "bus"), WorkerHealth::Unknown);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops while the bus is down").unwrap();
}
