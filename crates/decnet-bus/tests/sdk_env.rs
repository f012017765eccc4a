//! `get_bus` reads the environment; one test function so no other test in
//! this process races on the variables.

use decnet_bus::sdk::{fake_hub, get_bus, BUS_ENABLED_ENV, BUS_TYPE_ENV};
use decnet_bus::BusError;

#[tokio::test]
async fn get_bus_follows_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("DECNET_BUS_SOCKET", dir.path().join("bus.sock"));

    // Disabled: a NullBus (never connected, publishes succeed).
    for off in ["false", "0", "no", "OFF"] {
        std::env::set_var(BUS_ENABLED_ENV, off);
        let bus = get_bus("w").unwrap();
        assert!(!bus.is_connected(), "{off}");
        bus.publish("a.b", "t", serde_json::json!({})).await.unwrap();
    }
    std::env::set_var(BUS_ENABLED_ENV, "maybe");
    let err = get_bus("w").err().expect("unknown boolean refused").to_string();
    assert!(err.contains("maybe") && err.contains("false"), "{err}");

    // Enabled, default type: the socket client, lazily (nothing listens, no error yet).
    std::env::set_var(BUS_ENABLED_ENV, "true");
    std::env::remove_var(BUS_TYPE_ENV);
    let bus = get_bus("w").unwrap();
    assert!(!bus.is_connected());
    assert!(matches!(bus.publish("a.b", "t", serde_json::json!({})).await, Err(BusError::Connect { .. })));
    std::env::set_var(BUS_TYPE_ENV, "unix");
    assert!(!get_bus("w").unwrap().is_connected());

    // Fake: a client of the process-wide hub.
    std::env::set_var(BUS_TYPE_ENV, "fake");
    let bus = get_bus("worker").unwrap();
    let peer = fake_hub().client("test"); // keep it: a dropped client ends its streams
    let mut sub = peer.subscribe("x.y").await.unwrap();
    bus.publish("x.y", "t", serde_json::json!({"n": 1})).await.unwrap();
    assert_eq!(sub.recv().await.unwrap().payload["n"], 1);

    // Anything else is an error naming the accepted values.
    std::env::set_var(BUS_TYPE_ENV, "nats");
    match get_bus("w") {
        Err(BusError::Config(msg)) => assert!(msg.contains("nats") && msg.contains("unix, fake"), "{msg}"),
        other => panic!("expected a config error, got {:?}", other.map(|b| b.name().to_owned())),
    }
}
