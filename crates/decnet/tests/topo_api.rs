//! The topology routes over real HTTP: auth and roles, validation, the
//! state machine's 409s, optimistic concurrency, and commit-then-publish.

mod topo_common;

use decnet::api::events::EventsConfig;
use decnet::store::topology as topo;
use decnet::topology::{MutationState, TopologyStatus};
use serde_json::json;
use topo_common::{start, BusKind};

fn add_decky(name: &str) -> serde_json::Value {
    json!({"op": "add_decky", "payload": {"name": name, "services": ["ssh"]}})
}

#[tokio::test]
async fn every_route_needs_a_token_and_admin_routes_need_admin() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let id = api.active_topology(&[("a", &["ssh"])]).await;
    let gets = [
        "/api/v1/topologies".to_string(),
        format!("/api/v1/topologies/{id}"),
        format!("/api/v1/topologies/{id}/mutations"),
    ];
    let posts = [
        ("/api/v1/topologies".to_string(), json!({"name": "x", "deckies": []})),
        (format!("/api/v1/topologies/{id}/deploy"), json!({})),
        (format!("/api/v1/topologies/{id}/mutations"), add_decky("b")),
    ];
    for path in &gets {
        assert_eq!(api.get(path, None).await.0, 401, "GET {path} without token");
        assert_eq!(api.get(path, Some("not-a-jwt")).await.0, 401, "GET {path} with garbage token");
        assert_eq!(api.get(path, Some(&api.viewer)).await.0, 200, "GET {path} as viewer");
    }
    for (path, body) in &posts {
        let (status, err) = api.post(path, None, body.clone()).await;
        assert_eq!(status, 401, "POST {path} without token");
        assert!(err["error"].is_string());
        let (status, err) = api.post(path, Some(&api.viewer), body.clone()).await;
        assert_eq!(status, 403, "POST {path} as viewer");
        assert!(err["error"].as_str().unwrap().contains("admin"), "{err}");
    }
    // Nothing slipped through the refused requests.
    assert_eq!(topo::list_topologies(&api.pool).await.unwrap().len(), 1);
    assert!(topo::list_mutations(&api.pool, &id, None).await.unwrap().is_empty());
    assert_eq!(topo::get_topology(&api.pool, &id).await.unwrap().unwrap().status, TopologyStatus::Active);
}

#[tokio::test]
async fn create_validates_then_lists_and_shows() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let body = json!({"name": "lab", "deckies": [{"name": "web1", "services": ["http", "ssh"]}, {"name": "db1", "services": ["mysql"]}]});
    let (status, created) = api.post("/api/v1/topologies", Some(&api.admin), body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["version"], 1);
    let id = created["id"].as_str().unwrap().to_string();

    let (status, shown) = api.get(&format!("/api/v1/topologies/{id}"), Some(&api.viewer)).await;
    assert_eq!(status, 200);
    assert_eq!(
        shown["deckies"],
        json!([{"name": "web1", "services": ["http", "ssh"]}, {"name": "db1", "services": ["mysql"]}])
    );
    let (_, listed) = api.get("/api/v1/topologies", Some(&api.viewer)).await;
    assert_eq!(listed["topologies"][0]["id"], id.as_str());

    let (status, err) = api.get("/api/v1/topologies/does-not-exist", Some(&api.viewer)).await;
    assert_eq!(status, 404);
    assert!(err["error"].as_str().unwrap().contains("does-not-exist"), "{err}");

    let bad = [
        (json!({"name": "x", "deckies": [{"name": "a", "services": ["gopher"]}]}), "gopher"),
        (
            json!({"name": "x", "deckies": [{"name": "a", "services": ["ssh"]}, {"name": "a", "services": ["ftp"]}]}),
            "already exists",
        ),
        (json!({"name": "x", "deckies": [{"name": "a.b", "services": ["ssh"]}]}), "a.b"),
        (json!({"name": "", "deckies": []}), "topology name"),
        (json!({"name": "x", "deckies": "nope"}), "deckies"),
        (json!({"deckies": []}), "name"),
    ];
    for (body, needle) in bad {
        let (status, err) = api.post("/api/v1/topologies", Some(&api.admin), body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(err["error"].as_str().unwrap().contains(needle), "{body} -> {err}");
    }
    let malformed = api
        .http
        .post(api.url("/api/v1/topologies"))
        .bearer_auth(&api.admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(topo::list_topologies(&api.pool).await.unwrap().len(), 1, "refused bodies stored nothing");
}

#[tokio::test]
async fn deploy_moves_to_deploying_publishes_status_and_refuses_a_second_deploy() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let watcher = api.hub.as_ref().unwrap().client("watcher");
    let mut statuses = watcher.subscribe("topology.*.status").await.unwrap();
    let (_, created) = api.post("/api/v1/topologies", Some(&api.admin), json!({"name": "lab", "deckies": []})).await;
    let id = created["id"].as_str().unwrap();

    let (status, body) = api.post(&format!("/api/v1/topologies/{id}/deploy"), Some(&api.admin), json!({})).await;
    assert_eq!((status, &body["status"]), (202, &json!("deploying")), "{body}");
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), statuses.recv()).await.unwrap().unwrap();
    assert_eq!(event.topic, format!("topology.{id}.status"));
    assert_eq!(event.event_type, "status");
    assert_eq!(event.payload, json!({"topology_id": id, "status": "deploying", "previous": "pending"}));

    let (status, err) = api.post(&format!("/api/v1/topologies/{id}/deploy"), Some(&api.admin), json!({})).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"].as_str().unwrap().contains("deploying to deploying"), "{err}");
    let (status, _) = api.post("/api/v1/topologies/nope/deploy", Some(&api.admin), json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn mutations_are_checked_against_status_version_op_and_topology() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let (_, created) = api
        .post(
            "/api/v1/topologies",
            Some(&api.admin),
            json!({"name": "lab", "deckies": [{"name": "a", "services": ["ssh"]}]}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/topologies/{id}/mutations");

    let (status, err) = api.post(&path, Some(&api.admin), add_decky("b")).await;
    assert_eq!(status, 409, "pending topology: {err}");
    assert_eq!(err["status"], "pending");
    let (status, _) = api.post("/api/v1/topologies/nope/mutations", Some(&api.admin), add_decky("b")).await;
    assert_eq!(status, 404);

    topo::set_status(&api.pool, &id, TopologyStatus::Deploying).await.unwrap();
    topo::set_status(&api.pool, &id, TopologyStatus::Active).await.unwrap();

    let bad = [
        (json!({"op": "explode", "payload": {}}), "explode"),
        (json!({"op": "add_decky", "payload": {"name": "b"}}), "services"),
        (json!({"op": "add_decky", "payload": {"name": "b", "services": ["gopher"]}}), "gopher"),
        (json!({"op": "add_decky", "payload": {"name": "a", "services": ["ftp"]}}), "\"a\" already exists"),
        (json!({"op": "remove_decky", "payload": {"name": "ghost"}}), "ghost"),
        (json!({"op": "set_services", "payload": {"decky": "ghost", "services": ["ssh"]}}), "ghost"),
        (json!({"op": "set_services", "payload": {"decky": "a", "services": ["ssh", "ssh"]}}), "twice"),
        (json!({"op": "add_decky"}), "payload"),
        (
            json!({"op": "add_decky", "payload": {"name": "b", "services": ["ssh"]}, "expected_version": "two"}),
            "expected_version",
        ),
    ];
    for (body, needle) in bad {
        let (status, err) = api.post(&path, Some(&api.admin), body.clone()).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert!(err["error"].as_str().unwrap().contains(needle), "{body} -> {err}");
    }
    assert!(topo::list_mutations(&api.pool, &id, None).await.unwrap().is_empty(), "no refused op was queued");

    let mut body = add_decky("b");
    body["expected_version"] = json!(1);
    let (status, accepted) = api.post(&path, Some(&api.admin), body.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["state"], "pending");
    assert_eq!(accepted["version"], 2);
    let mutation_id = accepted["mutation_id"].as_i64().unwrap();

    let mut stale = add_decky("c");
    stale["expected_version"] = json!(1);
    let (status, err) = api.post(&path, Some(&api.admin), stale).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!((err["current_version"].as_i64(), err["expected_version"].as_i64()), (Some(2), Some(1)));

    let (status, rows) = api.get(&format!("{path}?state=pending"), Some(&api.viewer)).await;
    assert_eq!(status, 200);
    assert_eq!(rows["mutations"].as_array().unwrap().len(), 1);
    assert_eq!(rows["mutations"][0]["id"], mutation_id);
    assert_eq!(rows["mutations"][0]["payload"], json!({"name": "b", "services": ["ssh"]}));
    let (_, applied) = api.get(&format!("{path}?state=applied"), Some(&api.viewer)).await;
    assert!(applied["mutations"].as_array().unwrap().is_empty());
    let (status, err) = api.get(&format!("{path}?state=done"), Some(&api.viewer)).await;
    assert_eq!(status, 400, "{err}");
    let (status, _) = api.get("/api/v1/topologies/nope/mutations", Some(&api.viewer)).await;
    assert_eq!(status, 404);

    topo::set_status(&api.pool, &id, TopologyStatus::Degraded).await.unwrap();
    let (status, _) = api.post(&path, Some(&api.admin), add_decky("d")).await;
    assert_eq!(status, 202, "degraded topologies accept mutations");
}

#[tokio::test]
async fn enqueued_is_published_only_after_the_row_is_committed() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let id = api.active_topology(&[("a", &["ssh"])]).await;
    let watcher = api.hub.as_ref().unwrap().client("watcher");
    let mut enqueued = watcher.subscribe("topology.*.mutation.enqueued").await.unwrap();
    let pool = api.pool.clone();
    // The subscriber looks the row up the instant the event arrives.
    let check = tokio::spawn(async move {
        let event = enqueued.recv().await.unwrap();
        let mutation_id = event.payload["mutation_id"].as_i64().unwrap();
        let topology_id = event.payload["topology_id"].as_str().unwrap().to_string();
        let rows = topo::list_mutations(&pool, &topology_id, Some(MutationState::Pending)).await.unwrap();
        (event, rows.iter().any(|m| m.id == mutation_id))
    });
    let (status, accepted) =
        api.post(&format!("/api/v1/topologies/{id}/mutations"), Some(&api.admin), add_decky("b")).await;
    assert_eq!(status, 202);
    let (event, found) = tokio::time::timeout(std::time::Duration::from_secs(5), check).await.unwrap().unwrap();
    assert!(found, "the event arrived before its row was visible");
    assert_eq!(event.topic, format!("topology.{id}.mutation.enqueued"));
    assert_eq!(event.event_type, "mutation");
    assert_eq!(event.payload["mutation_id"], accepted["mutation_id"]);
    assert_eq!(event.payload["op"], "add_decky");
    assert_eq!(event.payload["state"], "enqueued");
}

#[tokio::test]
async fn a_dead_bus_never_fails_a_request() {
    let api = start(BusKind::Down, EventsConfig::default()).await;
    let id = api.active_topology(&[("a", &["ssh"])]).await;
    let (status, accepted) =
        api.post(&format!("/api/v1/topologies/{id}/mutations"), Some(&api.admin), add_decky("b")).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(topo::list_mutations(&api.pool, &id, None).await.unwrap().len(), 1);

    let (_, created) = api.post("/api/v1/topologies", Some(&api.admin), json!({"name": "x"})).await;
    let other = created["id"].as_str().unwrap();
    let (status, _) = api.post(&format!("/api/v1/topologies/{other}/deploy"), Some(&api.admin), json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(topo::get_topology(&api.pool, other).await.unwrap().unwrap().status, TopologyStatus::Deploying);
}

#[tokio::test]
async fn openapi_documents_the_topology_routes() {
    let api = start(BusKind::Fake, EventsConfig::default()).await;
    let (status, doc) = api.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/topologies",
        "/api/v1/topologies/{id}",
        "/api/v1/topologies/{id}/deploy",
        "/api/v1/topologies/{id}/mutations",
        "/api/v1/topologies/{id}/events",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    assert!(paths["/api/v1/topologies/{id}/mutations"]["post"]["responses"]["409"].is_object());
    assert!(paths["/api/v1/topologies/{id}/events"]["get"]["responses"]["429"].is_object());
    for schema in ["Topology", "Mutation", "EnqueueMutation", "MutationAccepted"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
}
