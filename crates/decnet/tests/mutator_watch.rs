//! The mutator's watch loop (`watch_loop`) over the in-process FakeBus and
//! a real SQLite file: with a poll interval of an hour, only the wake-up
//! events can explain the work it does within seconds.

use std::sync::Arc;
use std::time::Duration;

use decnet::fleet::Fleet;
use decnet::mutator::drivers::DryRunDriver;
use decnet::mutator::watch::watch_loop;
use decnet::mutator::Mutator;
use decnet::store::topology as store;
use decnet::topology::{Decky, MutationOp, TopologyStatus};
use decnet_bus::fake::FakeBus;
use decnet_bus::{Bus, Envelope, Subscription};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

struct Rig {
    _dir: tempfile::TempDir,
    hub: FakeBus,
    pool: sqlx::SqlitePool,
    shutdown: CancellationToken,
    looped: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Rig {
    /// Two deckies (`a`, `b`) deployed just now, so neither is due for a
    /// minute, and the loop running with an hour between polls.
    async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
        let hub = FakeBus::new();
        let mutator =
            Mutator::new(pool.clone(), Arc::new(DryRunDriver), Some(hub.client("mutator")), dir.path().join("log"));
        let fleet = Fleet::parse(
            "interval = 1\n[[decky]]\nname = \"a\"\nservices = [\"ssh\"]\n[[decky]]\nname = \"b\"\nservices = [\"http\"]\n",
            "fleet.toml",
        )
        .unwrap();
        assert!(mutator.deploy_fleet(&fleet).await.unwrap().is_empty());
        let shutdown = CancellationToken::new();
        let looped = tokio::spawn(watch_loop(mutator, HOUR, shutdown.clone()));
        Rig { _dir: dir, hub, pool, shutdown, looped }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(5), self.looped).await;
        assert!(ended.expect("loop ends on shutdown").unwrap().is_ok());
    }
}

async fn next(sub: &mut Subscription) -> Envelope {
    tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("event within 5 s").expect("open")
}

/// Publish `topic` every 100 ms until `sub` sees an event `done` accepts
/// (the loop subscribes asynchronously and SUB has no acknowledgement).
async fn publish_until(
    bus: &dyn Bus,
    topic: &str,
    payload: serde_json::Value,
    sub: &mut Subscription,
    done: impl Fn(&Envelope) -> bool,
) -> Envelope {
    for _ in 0..50 {
        bus.publish(topic, "request", payload.clone()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(Some(env)) = tokio::time::timeout_at(deadline, sub.recv()).await {
            if done(&env) {
                return env;
            }
        }
    }
    panic!("nothing expected after publishing {topic} for 5 s");
}

#[tokio::test]
async fn mutate_request_mutates_only_the_named_decky_at_once() {
    let rig = Rig::start().await;
    let watcher = rig.hub.client("watcher");
    let mut mutations = watcher.subscribe("decky.*.mutation").await.unwrap();
    let operator = rig.hub.client("operator");
    let env = publish_until(
        &*operator,
        "decky.a.mutate_request",
        json!({"decky": "a", "actor": "alice"}),
        &mut mutations,
        |e| e.topic == "decky.a.mutation",
    )
    .await;
    assert_eq!(env.payload["trigger"], "operator");
    assert_eq!(env.payload["actor"], "alice");

    // Nothing for `b`: a sentinel from another client marks the end.
    rig.hub.client("sentinel").publish("decky.zz.mutation", "sentinel", json!({})).await.unwrap();
    loop {
        let env = next(&mut mutations).await;
        if env.event_type == "sentinel" {
            break;
        }
        assert_eq!(env.topic, "decky.a.mutation", "only the requested decky is mutated");
    }
    rig.stop().await;
}

#[tokio::test]
async fn deploy_request_and_enqueued_mutation_wake_the_loop() {
    let rig = Rig::start().await;
    let watcher = rig.hub.client("watcher");
    let mut topology_events = watcher.subscribe("topology.>").await.unwrap();
    let api = rig.hub.client("api");

    // Let the loop settle into its hour-long sleep: a request round trip
    // (after which it runs one more pass), then a moment for that pass.
    let mut mutations = watcher.subscribe("decky.*.mutation").await.unwrap();
    publish_until(&*api, "decky.b.mutate_request", json!({"decky": "b"}), &mut mutations, |e| {
        e.topic == "decky.b.mutation"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // What `POST …/deploy` does: status `deploying` in the store, then the event.
    let t = store::create_topology(&rig.pool, "lab", &[Decky { name: "w1".into(), services: vec!["ssh".into()] }])
        .await
        .unwrap();
    store::set_status(&rig.pool, &t.id, TopologyStatus::Deploying).await.unwrap();
    // Without a wake it stays `deploying`...
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = store::get_topology(&rig.pool, &t.id).await.unwrap().unwrap();
    assert_eq!(now.status, TopologyStatus::Deploying, "nothing touched it before the wake");
    let status_topic = format!("topology.{}.status", t.id);
    let deploying = json!({"topology_id": t.id, "status": "deploying", "previous": "pending"});
    // Only the mutator publishes `active`, and only the wake can make it do
    // so before its hour-long poll.
    let env = publish_until(&*api, &status_topic, deploying, &mut topology_events, |e| {
        e.topic == status_topic && e.payload["status"] != "deploying"
    })
    .await;
    assert_eq!(env.payload["status"], "active");

    // What `POST …/mutations` does: the row, then `mutation.enqueued`.
    let m = store::enqueue_mutation(
        &rig.pool,
        &t.id,
        &MutationOp::AddDecky { name: "w2".into(), services: vec!["ftp".into()] },
        None,
    )
    .await
    .unwrap();
    let enqueued_topic = format!("topology.{}.mutation.enqueued", t.id);
    let applied_topic = format!("topology.{}.mutation.applied", t.id);
    let enqueued = json!({"topology_id": t.id, "mutation_id": m.id, "state": "enqueued"});
    let env = publish_until(&*api, &enqueued_topic, enqueued, &mut topology_events, |e| e.topic == applied_topic).await;
    assert_eq!(env.payload["mutation_id"], json!(m.id));
    let topology = store::get_topology(&rig.pool, &t.id).await.unwrap().unwrap();
    assert!(topology.deckies.iter().any(|d| d.name == "w2"));
    rig.stop().await;
}
