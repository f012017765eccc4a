//! The SSE stream `GET /api/v1/topologies/{id}/events` over real HTTP:
//! auth before 404, snapshot first, ordered live events, keepalives,
//! the per-user cap, subscription cleanup on disconnect, and a dead bus.

mod topo_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet::api::events::EventsConfig;
use decnet::store::topology as topo;
use decnet_bus::sdk::AppBus;
use serde_json::json;
use topo_common::{eventually, start, BusKind, HungBus, SseReader};

fn quick(max_streams_per_user: usize) -> EventsConfig {
    EventsConfig { keepalive: Duration::from_millis(100), max_streams_per_user }
}

#[tokio::test]
async fn auth_is_checked_before_the_topology_lookup() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let id = api.active_topology(&[("a", &["ssh"])]).await;
    for path in ["/api/v1/topologies/nope/events".to_string(), format!("/api/v1/topologies/{id}/events")] {
        let resp = api.http.get(api.url(&path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} without token");
        let resp = api.http.get(api.url(&format!("{path}?token=forged"))).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} with a bad token");
    }
    let resp = api.events("nope", &api.viewer).await;
    assert_eq!(resp.status().as_u16(), 404);
    // The header form works too.
    let resp = api
        .http
        .get(api.url(&format!("/api/v1/topologies/{id}/events")))
        .bearer_auth(&api.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn snapshot_then_enqueued_applying_applied_in_order() {
    let api = start(BusKind::Fake, quick(4)).await;
    let id = api.active_topology(&[("a", &["ssh"])]).await;
    // Something already in flight shows in the snapshot.
    let op = decnet::topology::MutationOp::SetServices { decky: "a".into(), services: vec!["rdp".into()] };
    let earlier = topo::enqueue_mutation(&api.pool, &id, &op, None).await.unwrap();

    let mut stream = SseReader::new(api.events(&id, &api.viewer).await);
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event.as_deref(), Some("snapshot"), "the first frame is the snapshot: {snapshot:?}");
    let snap = snapshot.json();
    assert_eq!(snap["topology_id"], id.as_str());
    assert_eq!(snap["status"], "active");
    assert_eq!(snap["in_flight"].as_array().unwrap().len(), 1);
    assert_eq!(snap["in_flight"][0]["id"], earlier.id);
    topo::mark_failed(&api.pool, earlier.id, "cleared by the test").await.unwrap();

    // The real mutator on its own bus connection, waking on `enqueued`
    // (and polling every second, in case its subscription is not live yet:
    // SUB has no acknowledgement).
    let hub = api.hub.as_ref().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let mutator = decnet::mutator::Mutator::new(
        api.pool.clone(),
        Arc::new(decnet::mutator::drivers::DryRunDriver),
        Some(hub.client("mutator")),
        log_dir.path().join("ingest.log"),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let mutator_loop = tokio::spawn(decnet::mutator::watch::watch_loop(mutator, Duration::from_secs(1), stop.clone()));

    let (status, accepted) = api
        .post(
            &format!("/api/v1/topologies/{id}/mutations"),
            Some(&api.admin),
            json!({"op": "add_decky", "payload": {"name": "b", "services": ["ftp"]}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let mut names = Vec::new();
    let mut frames = Vec::new();
    while names.len() < 3 {
        let frame = stream.next_event().await;
        names.push(frame.event.clone().unwrap());
        frames.push(frame);
    }
    assert_eq!(names, ["mutation.enqueued", "mutation.applying", "mutation.applied"]);
    for (frame, state) in frames.iter().zip(["enqueued", "applying", "applied"]) {
        let data = frame.json();
        assert_eq!(data["topic"], format!("topology.{id}.mutation.{state}"));
        assert_eq!(data["type"], "mutation");
        assert_eq!(data["payload"]["state"], state);
        assert!(data["ts"].as_f64().unwrap() > 0.0);
        assert_eq!(data["payload"]["mutation_id"], accepted["mutation_id"]);
    }
    stop.cancel();
    mutator_loop.await.unwrap().unwrap();
    let deckies = topo::get_topology(&api.pool, &id).await.unwrap().unwrap().deckies;
    assert_eq!(deckies.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
}

#[tokio::test]
async fn other_topologies_events_are_not_forwarded_and_status_is_named_status() {
    let api = start(BusKind::Fake, quick(4)).await;
    let id = api.active_topology(&[]).await;
    let other = api.active_topology(&[]).await;
    let mut stream = SseReader::new(api.events(&id, &api.viewer).await);
    stream.next().await; // snapshot
    let mutator = api.hub.as_ref().unwrap().client("mutator");
    mutator.publish(&format!("topology.{other}.status"), "status", json!({"status": "degraded"})).await.unwrap();
    mutator.publish(&format!("topology.{id}.status"), "status", json!({"status": "degraded"})).await.unwrap();
    let frame = stream.next_event().await;
    assert_eq!(frame.event.as_deref(), Some("status"));
    assert_eq!(frame.json()["topic"], format!("topology.{id}.status"));
    assert_eq!(frame.json()["payload"], json!({"status": "degraded"}));
}

#[tokio::test]
async fn keepalive_comments_arrive_between_events() {
    let api = start(BusKind::Fake, quick(4)).await;
    let id = api.active_topology(&[]).await;
    let mut stream = SseReader::new(api.events(&id, &api.viewer).await);
    assert_eq!(stream.next().await.event.as_deref(), Some("snapshot"));
    for _ in 0..2 {
        let frame = stream.next().await;
        assert_eq!(frame.comment.as_deref(), Some("keepalive"), "{frame:?}");
        assert!(frame.event.is_none() && frame.data.is_none());
    }
}

#[tokio::test]
async fn open_streams_are_capped_per_user_and_freed_on_disconnect() {
    let api = start(BusKind::Fake, quick(2)).await;
    let id = api.active_topology(&[]).await;
    let first = SseReader::new(api.events(&id, &api.admin).await);
    let mut second = SseReader::new(api.events(&id, &api.admin).await);
    second.next().await;

    let refused = api.events(&id, &api.admin).await;
    assert_eq!(refused.status().as_u16(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("alice"), "{body}");
    // The cap is per user: another user still gets in.
    let other = api.events(&id, &api.admin2).await;
    assert_eq!(other.status().as_u16(), 200);

    drop(first);
    assert!(eventually(|| api.state.event_streams.open_for("alice") == 1).await, "the closed stream kept its slot");
    let again = api.events(&id, &api.admin).await;
    assert_eq!(again.status().as_u16(), 200);
}

#[tokio::test]
async fn a_hundred_connect_disconnect_cycles_leave_no_bus_subscription() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let hub = api.hub.as_ref().unwrap();
    let id = api.active_topology(&[]).await;
    let baseline = hub.subscription_count();
    for _ in 0..100 {
        let mut stream = SseReader::new(api.events(&id, &api.viewer).await);
        assert_eq!(stream.next().await.event.as_deref(), Some("snapshot"));
        assert!(hub.subscription_count() > baseline, "the open stream holds a subscription");
        drop(stream);
    }
    assert!(
        eventually(|| hub.subscription_count() == baseline).await,
        "{} subscriptions left over after 100 cycles",
        hub.subscription_count() - baseline
    );
    assert_eq!(api.state.event_streams.open_for("victor"), 0);
}

#[tokio::test]
async fn with_the_bus_down_the_stream_sends_snapshot_keepalives_and_local_events() {
    let api = start(BusKind::Down, quick(4)).await;
    let id = api.active_topology(&[]).await;
    let mut stream = SseReader::new(api.events(&id, &api.viewer).await);
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event.as_deref(), Some("snapshot"));
    assert_eq!(snapshot.json()["in_flight"], json!([]));
    assert_eq!(stream.next().await.comment.as_deref(), Some("keepalive"));

    let (status, _) = api
        .post(
            &format!("/api/v1/topologies/{id}/mutations"),
            Some(&api.admin),
            json!({"op": "add_decky", "payload": {"name": "b", "services": ["ftp"]}}),
        )
        .await;
    assert_eq!(status, 202);
    let frame = stream.next_event().await;
    assert_eq!(frame.event.as_deref(), Some("mutation.enqueued"), "the API's own events reach its streams");
}

#[tokio::test]
async fn a_bus_whose_subscribe_never_answers_holds_back_neither_headers_nor_snapshot() {
    let hung = Arc::new(HungBus::default());
    let api = start(BusKind::Shared(Arc::new(AppBus::fixed(hung.clone()))), quick(4)).await;
    let id = api.active_topology(&[]).await;

    let asked = Instant::now();
    // `send` resolves on the response head: this is when the headers arrived.
    let resp = api.events(&id, &api.viewer).await;
    let headers_after = asked.elapsed();
    let mut stream = SseReader::new(resp);
    let snapshot = stream.next().await;
    let snapshot_after = asked.elapsed();
    assert_eq!(snapshot.event.as_deref(), Some("snapshot"), "{snapshot:?}");
    assert_eq!(snapshot.json()["topology_id"], id.as_str());
    // A stream that waited on the subscribe would take its 2 s timeout.
    assert!(headers_after < Duration::from_millis(500), "headers after {headers_after:?}");
    assert!(snapshot_after < Duration::from_millis(900), "snapshot after {snapshot_after:?}");
    assert!(hung.subscribe_calls() >= 1, "the stream never tried to subscribe, so this tested nothing");

    // Keepalives keep their 100 ms pace while the subscribe still hangs
    // (a keepalive that waited on a resubscribe would take 2 s).
    let keepalives_from = Instant::now();
    for _ in 0..3 {
        assert_eq!(stream.next().await.comment.as_deref(), Some("keepalive"));
    }
    assert!(keepalives_from.elapsed() < Duration::from_millis(1500), "{:?}", keepalives_from.elapsed());

    // The API's own events still reach the stream through the local echo.
    let (status, _) = api
        .post(
            &format!("/api/v1/topologies/{id}/mutations"),
            Some(&api.admin),
            json!({"op": "add_decky", "payload": {"name": "b", "services": ["ftp"]}}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(stream.next_event().await.event.as_deref(), Some("mutation.enqueued"));

    // A disconnect frees the slot although the subscribe never finished.
    drop(stream);
    assert!(eventually(|| api.state.event_streams.open_for("victor") == 0).await, "the slot was kept");
}
