//! FakeBus and NullBus behaviour, plus the shared routing table.

#[path = "common/conformance.rs"]
mod conformance;

use std::time::Duration;

use decnet_bus::fake::FakeBus;
use decnet_bus::null::NullBus;
use decnet_bus::{Bus, BusError};
use serde_json::json;

async fn recv(sub: &mut decnet_bus::Subscription) -> decnet_bus::Envelope {
    tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("event within 5 s").expect("stream open")
}

#[tokio::test]
async fn fake_bus_passes_the_shared_routing_table() {
    let hub = FakeBus::new();
    conformance::run_conformance(|name| hub.client(name)).await;
    assert_eq!(hub.subscription_count(), 0, "closed clients leave no subscriptions behind");
}

#[tokio::test]
async fn events_are_real_envelopes() {
    let hub = FakeBus::new();
    let a = hub.client("a");
    let b = hub.client("b");
    let mut sub = a.subscribe("decky.*.state").await.unwrap();
    b.publish("decky.d1.state", "state", json!({"services": ["ssh"]})).await.unwrap();
    let env = recv(&mut sub).await;
    assert_eq!((env.v, env.topic.as_str(), env.event_type.as_str()), (1, "decky.d1.state", "state"));
    assert_eq!(env.payload, json!({"services": ["ssh"]}));
    assert_eq!(env.id.len(), 32);
    assert!(env.ts > 1.6e9);
}

#[tokio::test]
async fn slow_subscriber_drops_oldest() {
    let hub = FakeBus::new();
    let a = hub.client("a");
    let b = hub.client("b");
    let mut sub = a.subscribe_with_capacity("n", 3).await.unwrap();
    for i in 0..10 {
        b.publish("n", "n", json!({"i": i})).await.unwrap();
    }
    let got: Vec<_> = [recv(&mut sub).await, recv(&mut sub).await, recv(&mut sub).await]
        .iter()
        .map(|e| e.payload["i"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [7, 8, 9]);
    assert_eq!(sub.dropped(), 7);
}

#[tokio::test]
async fn close_ends_streams_refuses_subscribe_and_drops_publishes() {
    let hub = FakeBus::new();
    let a = hub.client("a");
    let b = hub.client("b");
    let mut sub = a.subscribe(">").await.unwrap();
    a.close().await;
    a.close().await; // idempotent
    assert!(tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.unwrap().is_none());
    assert!(matches!(a.subscribe("x").await, Err(BusError::Closed)));
    a.publish("x", "t", json!({})).await.expect("publish after close is dropped, not an error");
    b.publish("x", "t", json!({})).await.unwrap();
    assert_eq!(hub.delivered(), 0);
    assert!(a.is_closed() && !a.is_connected());
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let hub = FakeBus::new();
    let a = hub.client("a");
    let sub = a.subscribe("x.>").await.unwrap();
    assert_eq!(hub.subscription_count(), 1);
    drop(sub);
    assert_eq!(hub.subscription_count(), 0);
}

#[tokio::test]
async fn null_bus_is_silent_and_ends_subscriptions_on_close() {
    let bus = NullBus::new("w");
    bus.publish("a.b", "t", json!({})).await.unwrap();
    assert!(bus.publish("a.*", "t", json!({})).await.is_err(), "topics are still validated");
    assert!(bus.subscribe("a.>.b").await.is_err());
    let mut sub = bus.subscribe("a.>").await.unwrap();
    let waiter = tokio::spawn(async move { sub.recv().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished(), "a NullBus subscription waits until close");
    bus.close().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("ends on close").unwrap();
    assert!(ended.is_none());
    bus.publish("a.b", "t", json!({})).await.unwrap();
    assert!(matches!(bus.subscribe("a").await, Err(BusError::Closed)));
}
