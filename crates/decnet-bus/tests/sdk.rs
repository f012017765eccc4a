//! SDK behaviour over a FakeBus: heartbeats, control listener, worker
//! runtime, publish_safely, AppBus::fixed. Socket and process behaviour is
//! tested against the real daemon in `crates/decnet/tests/sdk_daemon.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::fake::FakeBus;
use decnet_bus::null::NullBus;
use decnet_bus::sdk::{
    publish_safely, run_control_listener, run_health_heartbeat, AppBus, BoxError, HealthExtra, ThreadSafePublisher,
    Worker,
};
use decnet_bus::{Envelope, Subscription};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

async fn recv(sub: &mut Subscription) -> Envelope {
    tokio::time::timeout(WAIT, sub.recv()).await.expect("event within 5 s").expect("stream open")
}

#[tokio::test]
async fn heartbeat_publishes_worker_ts_and_extra_each_tick() {
    let hub = FakeBus::new();
    let api = hub.client("api");
    let worker = hub.client("sniffer");
    let mut sub = api.subscribe("system.*.health").await.unwrap();
    let extra: HealthExtra = Arc::new(|| Ok(json!({"queue": 3, "worker": "spoofed"}).as_object().cloned().unwrap()));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_health_heartbeat(
        worker.clone(),
        "sniffer",
        Duration::from_millis(30),
        Some(extra),
        cancel.clone(),
    ));
    let mut last_ts = 0.0;
    for _ in 0..3 {
        let env = recv(&mut sub).await;
        assert_eq!((env.topic.as_str(), env.event_type.as_str()), ("system.sniffer.health", "health"));
        assert_eq!(env.payload["worker"], "sniffer", "extra cannot rename the worker");
        assert_eq!(env.payload["queue"], 3);
        let ts = env.payload["ts"].as_f64().expect("ts is a number");
        assert!(ts > last_ts, "ts advances");
        last_ts = ts;
    }
    cancel.cancel();
    tokio::time::timeout(WAIT, task).await.expect("heartbeat stops on cancel").unwrap().unwrap();
}

#[tokio::test]
async fn heartbeat_survives_failing_and_panicking_extra() {
    let hub = FakeBus::new();
    let api = hub.client("api");
    let worker = hub.client("prober");
    let mut sub = api.subscribe("system.prober.health").await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    // Tick 1 fine, tick 2 error, tick 3 panic, tick 4 fine again.
    let extra: HealthExtra = Arc::new(move || -> Result<Map<String, Value>, BoxError> {
        match counter.fetch_add(1, Ordering::SeqCst) {
            1 => Err("database locked".into()),
            2 => panic!("extra exploded"),
            n => Ok(json!({"tick": n}).as_object().cloned().unwrap()),
        }
    });
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(run_health_heartbeat(worker, "prober", Duration::from_millis(20), Some(extra), cancel.clone()));
    let payloads: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(recv(&mut sub).await.payload);
        }
        v
    };
    cancel.cancel();
    tokio::time::timeout(WAIT, task).await.expect("stops").expect("did not panic").unwrap();
    assert_eq!(payloads[0]["tick"], 0);
    for base in &payloads[1..3] {
        let keys: Vec<&String> = base.as_object().unwrap().keys().collect();
        // worker, ts and (federation) the host it runs on.
        assert_eq!(keys.len(), 3, "base payload only: {base}");
        assert_eq!(base["worker"], "prober");
        assert!(base["host"].is_string());
        assert!(base["ts"].is_f64());
    }
    assert_eq!(payloads[3]["tick"], 3, "later ticks use extra again");
}

#[tokio::test]
async fn heartbeat_cancellation_returns_promptly_even_with_a_long_interval_and_no_bus() {
    let hub = FakeBus::new();
    let cancel = CancellationToken::new();
    let with_bus =
        tokio::spawn(run_health_heartbeat(hub.client("w"), "w", Duration::from_secs(3600), None, cancel.clone()));
    let without_bus = tokio::spawn(run_health_heartbeat(None, "w", Duration::from_secs(3600), None, cancel.clone()));
    cancel.cancel();
    tokio::time::timeout(WAIT, with_bus).await.expect("returns").unwrap().unwrap();
    tokio::time::timeout(WAIT, without_bus).await.expect("returns").unwrap().unwrap();
}

#[tokio::test]
async fn heartbeat_refuses_a_worker_name_that_is_not_a_segment() {
    let err = run_health_heartbeat(None, "a.b", Duration::from_secs(1), None, CancellationToken::new()).await;
    assert!(err.is_err());
}

#[tokio::test]
async fn control_listener_stops_on_stop_and_ignores_everything_else() {
    let hub = FakeBus::new();
    let worker = hub.client("collector");
    let operator = hub.client("api");
    let shutdown = CancellationToken::new();
    let listener = tokio::spawn(run_control_listener(worker, "collector", shutdown.clone()));
    // Wait until the listener's subscription exists.
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.subscription_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "listener never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for ignored in [json!({"action": "reboot"}), json!({"action": 5}), json!({}), json!({"action": "start"})] {
        operator.publish("system.collector.control", "control", ignored).await.unwrap();
    }
    // A payload that is not an object never reaches the listener (SPEC §2).
    assert!(operator.publish("system.collector.control", "control", json!("stop")).await.is_err());
    // Another worker's stop is not ours.
    operator.publish("system.sniffer.control", "control", json!({"action": "stop"})).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), shutdown.cancelled()).await.is_err(),
        "a non-stop message cancelled the worker"
    );
    operator
        .publish("system.collector.control", "control", json!({"action": "stop", "requested_by": "admin"}))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, shutdown.cancelled()).await.expect("stop cancels the token");
    tokio::time::timeout(WAIT, listener).await.expect("listener returns").unwrap().unwrap();
}

#[tokio::test]
async fn worker_runtime_heartbeats_then_stops_on_bus_request_and_closes_its_bus() {
    let hub = FakeBus::new();
    let api = hub.client("api");
    let mut health = api.subscribe("system.mutator.health").await.unwrap();
    let bus = hub.client("mutator");
    let worker_bus = bus.clone();
    let run = tokio::spawn(async move {
        Worker::new("mutator")
            .bus(worker_bus)
            .heartbeat_interval(Duration::from_millis(50))
            .health_extra(|| Ok(json!({"pending": 0}).as_object().cloned().unwrap()))
            .run(|ctx| async move {
                assert_eq!(ctx.name, "mutator");
                ctx.shutdown.cancelled().await;
                "body done"
            })
            .await
    });
    let hb = recv(&mut health).await;
    assert_eq!(hb.payload["pending"], 0);
    // A heartbeat means the control subscription is already in place.
    api.publish("system.mutator.control", "control", json!({"action": "stop"})).await.unwrap();
    let out = tokio::time::timeout(WAIT, run).await.expect("worker stops").unwrap().unwrap();
    assert_eq!(out, "body done");
    assert!(bus.is_closed(), "the runtime closes the bus on exit");
    assert_eq!(hub.subscription_count(), 1, "only the api's subscription is left");
}

#[tokio::test]
async fn worker_runtime_refuses_bad_names_before_running_the_body() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let res = Worker::new("bad name")
        .bus(Arc::new(NullBus::new("x")))
        .run(|_| async move { r.fetch_add(1, Ordering::SeqCst) })
        .await;
    assert!(res.is_err());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn publish_safely_never_fails() {
    let hub = FakeBus::new();
    let api = hub.client("api");
    let w = hub.client("w");
    let mut sub = api.subscribe("a.>").await.unwrap();
    publish_safely(None, "a.b", json!({}), "t").await;
    publish_safely(Some(&*w), "a.*", json!({}), "t").await; // invalid topic: logged
    publish_safely(Some(&*w), "a.b", json!({"ok": true}), "t").await;
    assert_eq!(recv(&mut sub).await.payload, json!({"ok": true}));
    w.close().await;
    publish_safely(Some(&*w), "a.b", json!({}), "t").await;
    assert_eq!(hub.published(), 1);
}

#[tokio::test]
async fn thread_safe_publisher_keeps_order_per_thread_and_stops_after_close() {
    let hub = FakeBus::new();
    let api = hub.client("api");
    let w = hub.client("sniffer");
    let mut sub = api.subscribe("attacker.observed").await.unwrap();
    let publisher = ThreadSafePublisher::current(w.clone());
    let p = publisher.clone();
    std::thread::spawn(move || {
        for i in 0..100 {
            p.publish("attacker.observed", "observed", json!({"i": i}));
        }
    })
    .join()
    .unwrap();
    for i in 0..100 {
        assert_eq!(recv(&mut sub).await.payload["i"], i);
    }
    w.close().await;
    publisher.publish("attacker.observed", "observed", json!({"i": -1}));
    assert_eq!(hub.published(), 100);
}

#[tokio::test]
async fn app_bus_fixed_hands_out_its_bus_until_closed() {
    let hub = FakeBus::new();
    let app = AppBus::fixed(hub.client("api"));
    assert!(app.is_connected());
    assert_eq!(app.get().await.expect("bus").name(), "api");
    app.close().await;
    assert!(app.get().await.is_none());
    assert!(!app.is_connected());
}
