//! Identity fan-out and prober fingerprints, observed through a FakeBus.

use std::time::Duration;

use decnet_bus::fake::FakeBus;
use decnet_bus::fingerprint::{publish_fingerprint, ProbeFamily};
use decnet_bus::identity::ClusterResult;
use futures_util::FutureExt;
use serde_json::json;

#[tokio::test]
async fn cluster_result_publishes_one_event_per_item_and_nothing_for_empty_lists() {
    let hub = FakeBus::new();
    let api = hub.client("api");
    let clusterer = hub.client("clusterer");
    let mut sub = api.subscribe("identity.>").await.unwrap();

    let result = ClusterResult {
        formed: vec![json!({"identity": "i1"}), json!({"identity": "i2"})],
        linked: vec![json!({"identity": "i1", "observation": "o9"})],
        merged: vec![],
        unmerged: vec![json!({"identity": "i3"})],
    };
    assert_eq!(result.publish(&*clusterer).await.unwrap(), 4);
    let mut got = Vec::new();
    for _ in 0..4 {
        let env = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.unwrap().unwrap();
        got.push((env.topic, env.event_type, env.payload));
    }
    assert_eq!(
        got,
        vec![
            ("identity.formed".into(), "formed".into(), json!({"identity": "i1"})),
            ("identity.formed".into(), "formed".into(), json!({"identity": "i2"})),
            ("identity.observation.linked".into(), "linked".into(), json!({"identity": "i1", "observation": "o9"})),
            ("identity.unmerged".into(), "unmerged".into(), json!({"identity": "i3"})),
        ]
    );

    assert_eq!(ClusterResult::default().publish(&*clusterer).await.unwrap(), 0);
    assert_eq!(hub.published(), 4, "an empty result publishes nothing");
    assert!(sub.recv().now_or_never().is_none());
}

#[tokio::test]
async fn fingerprint_event_type_is_the_family() {
    let hub = FakeBus::new();
    let profiler = hub.client("profiler");
    let prober = hub.client("prober");
    let mut sub = profiler.subscribe("attacker.fingerprinted").await.unwrap();
    for family in ProbeFamily::ALL {
        let extra = json!({"probe_ms": 12}).as_object().cloned();
        publish_fingerprint(&*prober, family, "192.0.2.7".parse().unwrap(), 22, "h4sh", extra).await.unwrap();
        let env = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.unwrap().unwrap();
        assert_eq!(env.event_type, family.as_str());
        assert_eq!(env.payload, json!({"attacker_ip": "192.0.2.7", "port": 22, "hash": "h4sh", "probe_ms": 12}));
    }
}
