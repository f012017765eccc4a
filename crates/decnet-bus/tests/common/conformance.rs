//! Pattern/topic routing cases every transport must agree on (FakeBus in
//! `crates/decnet-bus/tests/fake_bus.rs`, the real daemon in
//! `crates/decnet/tests/sdk_daemon.rs`, which includes this file by path).

use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet_bus::{Bus, Subscription};
use futures_util::FutureExt;

/// (pattern, topic, delivered?)
pub const ROUTING_CASES: &[(&str, &str, bool)] = &[
    ("topology.>", "topology.a.status", true),
    ("topology.>", "topology.a", true),
    ("topology.>", "topology", false),
    ("a.*", "a.b", true),
    ("a.*", "a.b.c", false),
    ("a.*", "a", false),
    ("*", "a", true),
    ("*", "a.b", false),
    (">", "a.b.c", true),
    ("a.b", "a.b", true),
    ("a.b", "a.c", false),
    ("a.b", "a.b.c", false),
    ("a.b.c", "a.b", false),
    ("*.b.>", "x.b.c.d", true),
    ("*.b.>", "x.b", false),
    ("system.*.health", "system.bus.health", true),
    ("system.*.health", "system.sniffer.health", true),
    ("system.*.health", "system.sniffer.control", false),
    ("decky.*.mutate_request", "decky.d1.mutate_request", true),
    ("topology.*.mutation.enqueued", "topology.t1.mutation.enqueued", true),
    ("topology.*.mutation.enqueued", "topology.t1.mutation.applied", false),
    ("topology.t1.>", "topology.t2.status", false),
    ("attacker.>", "attacker.session.started", true),
    ("identity.observation.*", "identity.observation.linked", true),
];

/// Topics a publisher must be refused (client-side, before anything is sent).
pub const BAD_TOPICS: &[&str] = &["", "a.*", "a.>", ">", "a..b", ".a", "a.", "a b", "a\tb", "caf\u{e9}"];
/// Patterns a subscriber must be refused.
pub const BAD_PATTERNS: &[&str] = &["", "a.>.b", "a..b", "a.b*", "a.>>", ". ", "a b", "\u{e9}"];

const FENCE: &str = "zz.fence";
const DEADLINE: Duration = Duration::from_secs(5);

/// Everything queued on `sub` right now, without waiting.
fn take_ready(sub: &mut Subscription) -> Vec<String> {
    let mut topics = Vec::new();
    while let Some(Some(env)) = sub.recv().now_or_never() {
        topics.push(env.topic);
    }
    topics
}

/// Publish fences (numbered) until the fence subscription sees `want`;
/// returns the last sequence number used. Events on one connection arrive
/// in order, so once the fence is in, everything published before it on
/// the same publisher is already queued on the subscriber's other streams.
async fn fence(publisher: &dyn Bus, fence_sub: &mut Subscription, seq: &mut u64) {
    let start = Instant::now();
    loop {
        *seq += 1;
        let want = *seq;
        publisher.publish(FENCE, "fence", serde_json::json!({"seq": want})).await.expect("publish fence");
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(200) {
            match tokio::time::timeout(Duration::from_millis(50), fence_sub.recv()).await {
                Ok(Some(env)) if env.payload["seq"] == want => return,
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => panic!("fence subscription ended"),
            }
        }
        assert!(start.elapsed() < DEADLINE, "fence {want} never arrived");
    }
}

/// Run every routing case with fresh clients from `client` and check
/// delivery, no echo, and client-side refusals.
pub async fn run_conformance(client: impl Fn(&str) -> Arc<dyn Bus>) {
    for (i, &(pattern, topic, want)) in ROUTING_CASES.iter().enumerate() {
        let subscriber = client(&format!("case-sub-{i}"));
        let publisher = client(&format!("case-pub-{i}"));
        let mut sub = subscriber.subscribe(pattern).await.expect("subscribe pattern");
        let mut fence_sub = subscriber.subscribe(FENCE).await.expect("subscribe fence");
        // The publisher also listens on the pattern: it must never get its own event.
        let mut echo = publisher.subscribe(pattern).await.expect("subscribe echo");
        let mut seq = 0;
        // The protocol has no SUB acknowledgement: a fence round trip proves
        // the daemon has registered both subscriptions.
        fence(&*publisher, &mut fence_sub, &mut seq).await;
        take_ready(&mut sub);
        publisher.publish(topic, "case", serde_json::json!({"case": i})).await.expect("publish");
        fence(&*publisher, &mut fence_sub, &mut seq).await;
        let got = take_ready(&mut sub);
        assert_eq!(got.iter().any(|t| t == topic), want, "case {i}: pattern {pattern:?} topic {topic:?}, got {got:?}");
        assert!(!take_ready(&mut echo).iter().any(|t| t == topic), "case {i}: publisher got its own event");
        subscriber.close().await;
        publisher.close().await;
    }

    let bus = client("refusals");
    for bad in BAD_TOPICS {
        assert!(bus.publish(bad, "x", serde_json::json!({})).await.is_err(), "publish accepted {bad:?}");
    }
    for bad in BAD_PATTERNS {
        assert!(bus.subscribe(bad).await.is_err(), "subscribe accepted {bad:?}");
    }
    bus.close().await;
}
