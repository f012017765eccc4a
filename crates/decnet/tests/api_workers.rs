//! The workers routes against a FakeBus and a stand-in systemctl: list,
//! stop over the bus, start through systemd, and names that must never
//! reach systemctl.

mod api_support;

use api_support::*;
use decnet_bus::fake::FakeBus;
use decnet_bus::sdk::AppBus;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UNITS: &str = "decnet-bus.service enabled enabled\n\
                     decnet-mutator.service disabled enabled\n\
                     decnet-sniffer.service enabled enabled\n\
                     decnet-evil.service enabled enabled\n";

fn stand_in() -> SystemctlMode {
    SystemctlMode::StandIn { units: UNITS, failing: &["sniffer"] }
}

fn worker<'a>(body: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    body["workers"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap()
}

#[tokio::test]
async fn list_shows_heartbeats_installed_units_and_bus_state() {
    let hub = FakeBus::new();
    let h = Harness::start(Arc::new(AppBus::fixed(hub.client("api"))), stand_in()).await;
    let token = h.admin().await;
    let worker_bus = hub.client("mutator");
    // Wait for the registry's subscriptions before publishing.
    eventually(5, "registry subscribed", || async { hub.subscription_count() >= 2 }).await;
    worker_bus
        .publish("system.mutator.health", "health", serde_json::json!({"worker": "mutator", "ts": 1, "queue": 3}))
        .await
        .unwrap();
    worker_bus.publish("system.intruder.health", "health", serde_json::json!({"worker": "intruder"})).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let body = loop {
        let body = h.call("GET", "/api/v1/workers", Some(&token)).await.1;
        if worker(&body, "mutator")["status"] == "ok" && worker(&body, "api")["status"] == "ok" {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "mutator and api never ok: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["bus_connected"], true);
    assert!(body["generated_at"].as_f64().unwrap() > 0.0);
    let names: Vec<_> = body["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, KNOWN, "unknown heartbeat names never add rows");
    let m = worker(&body, "mutator");
    assert_eq!(m["extra"], serde_json::json!({"queue": 3}));
    assert!(m["seconds_since"].as_f64().unwrap() < 5.0);
    assert_eq!(m["installed"], true);
    let s = worker(&body, "sniffer");
    assert_eq!((s["status"].as_str(), s["last_heartbeat_ts"].is_null()), (Some("unknown"), true));
    assert_eq!(s["installed"], true);
    assert_eq!(worker(&body, "api")["installed"], false);
    assert!(h.argv().contains(&"list-unit-files|decnet-*.service|--no-legend|".to_string()), "{:?}", h.argv());
    h.shutdown().await;
}

#[tokio::test]
async fn installed_is_cached_between_requests() {
    let h = Harness::start(no_bus(), stand_in()).await;
    let token = h.admin().await;
    for _ in 0..3 {
        assert_eq!(h.call("GET", "/api/v1/workers", Some(&token)).await.0, 200);
    }
    assert_eq!(h.argv().iter().filter(|l| l.starts_with("list-unit-files")).count(), 1, "{:?}", h.argv());
    h.shutdown().await;
}

#[tokio::test]
async fn installed_is_empty_and_page_renders_when_systemctl_is_missing() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    let token = h.admin().await;
    let (status, body) = h.call("GET", "/api/v1/workers", Some(&token)).await;
    assert_eq!(status, 200);
    assert!(body["workers"].as_array().unwrap().iter().all(|w| w["installed"] == false), "{body}");
    assert_eq!(body["bus_connected"], false);
    // start-all with nothing installed starts nothing and fails nothing.
    let (status, body) = h.call("POST", "/api/v1/workers/start-all", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"started": [], "failed": []}));
    // A single start reports the missing program as a StartFailure.
    let (status, body) = h.call("POST", "/api/v1/workers/bus/start", Some(&token)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!((body["worker"].as_str(), body["returncode"].as_i64()), (Some("bus"), Some(-1)));
    assert!(body["stderr"].as_str().unwrap().contains("cannot run systemctl"), "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn installed_is_empty_and_page_renders_when_list_unit_files_fails() {
    let h = Harness::start(no_bus(), SystemctlMode::Failing).await;
    let token = h.admin().await;
    let (status, body) = h.call("GET", "/api/v1/workers", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let workers = body["workers"].as_array().unwrap();
    assert_eq!(workers.len(), KNOWN.len(), "{body}");
    // The failing run printed bus and mutator units: its output must not count.
    assert!(workers.iter().all(|w| w["installed"] == false), "{body}");
    assert_eq!(h.argv(), ["list-unit-files|decnet-*.service|--no-legend|"], "systemctl was really asked");
    h.shutdown().await;
}

#[tokio::test]
async fn stop_publishes_a_control_intent_and_answers_202() {
    let hub = FakeBus::new();
    let h = Harness::start(Arc::new(AppBus::fixed(hub.client("api"))), stand_in()).await;
    let token = h.admin().await;
    let mutator = hub.client("mutator");
    let mut control = mutator.subscribe("system.mutator.control").await.unwrap();
    let (status, body) = h.call("POST", "/api/v1/workers/mutator/stop", Some(&token)).await;
    assert_eq!(status, 202, "{body}");
    let here = decnet_bus::sdk::host_id();
    assert_eq!(body, serde_json::json!({"accepted": true, "worker": "mutator", "host": here, "action": "stop"}));
    let env = tokio::time::timeout(Duration::from_secs(5), control.recv()).await.unwrap().unwrap();
    assert_eq!(env.topic, "system.mutator.control");
    assert_eq!(env.payload["action"], "stop");
    assert_eq!(env.payload["host"], here.as_str(), "the intent names its host");
    assert_eq!(env.payload["requested_by"], "root");
    assert!(env.payload["ts"].as_f64().unwrap() > 0.0);
    assert!(h.argv().is_empty(), "stop never runs systemctl: {:?}", h.argv());
    h.shutdown().await;
}

/// Federation: rows per (host, worker), `?host=` filters, a stop names
/// the remote host it targets, and a host never heard from is 404.
#[tokio::test]
async fn workers_are_listed_and_stopped_per_host() {
    let hub = FakeBus::new();
    let h = Harness::start(Arc::new(AppBus::fixed(hub.client("api"))), stand_in()).await;
    let token = h.admin().await;
    eventually(5, "registry subscribed", || async { hub.subscription_count() >= 2 }).await;
    let here = decnet_bus::sdk::host_id();
    let remote = format!("far-{here}");
    let beats = hub.client("remote");
    beats.publish("system.mutator.health", "health", serde_json::json!({"host": remote, "q": 1})).await.unwrap();
    let path = format!("/api/v1/workers?host={remote}");
    let mut body = serde_json::Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while body["workers"].as_array().is_none_or(|w| w.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "remote host row never appeared: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        body = h.call("GET", &path, Some(&token)).await.1;
    }
    let rows = body["workers"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "a remote host lists only the workers heard from: {body}");
    assert_eq!((rows[0]["host"].as_str(), rows[0]["name"].as_str()), (Some(remote.as_str()), Some("mutator")));
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(rows[0]["extra"], serde_json::json!({"q": 1}));
    assert_eq!(rows[0]["installed"], false, "systemctl knows only this host's units");

    let all = h.call("GET", "/api/v1/workers", Some(&token)).await.1;
    let hosts: Vec<_> = all["workers"].as_array().unwrap().iter().map(|w| w["host"].as_str().unwrap()).collect();
    assert_eq!(hosts.iter().filter(|h| **h == here).count(), KNOWN.len(), "the local host shows the known list");
    assert_eq!(hosts.last().copied(), Some(remote.as_str()));
    let local = h.call("GET", &format!("/api/v1/workers?host={here}"), Some(&token)).await.1;
    assert_eq!(local["workers"].as_array().unwrap().len(), KNOWN.len());

    let mutator = hub.client("mutator");
    let mut control = mutator.subscribe("system.mutator.control").await.unwrap();
    let (status, body) = h.call("POST", &format!("/api/v1/workers/mutator/stop?host={remote}"), Some(&token)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["host"], remote.as_str());
    let env = tokio::time::timeout(Duration::from_secs(5), control.recv()).await.unwrap().unwrap();
    assert_eq!(env.payload["host"], remote.as_str());
    let (status, body) = h.call("POST", "/api/v1/workers/mutator/stop?host=nowhere", Some(&token)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("unknown host"), "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn stop_of_an_unknown_worker_is_404() {
    let hub = FakeBus::new();
    let h = Harness::start(Arc::new(AppBus::fixed(hub.client("api"))), stand_in()).await;
    let token = h.admin().await;
    for route in ["stop", "start"] {
        let (status, body) = h.call("POST", &format!("/api/v1/workers/collector/{route}"), Some(&token)).await;
        assert_eq!(status, 404, "{route}: {body}");
        assert!(body["error"].as_str().unwrap().contains("unknown worker"));
    }
    assert!(h.argv().is_empty(), "{:?}", h.argv());
    h.shutdown().await;
}

#[tokio::test]
async fn stop_with_the_bus_down_is_503() {
    // The production shared bus, pointed at a socket nobody listens on.
    let h = Harness::start(no_bus(), stand_in()).await;
    let token = h.admin().await;
    let (status, body) = h.call("POST", "/api/v1/workers/mutator/stop", Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("bus"), "{body}");
    let (_, list) = h.call("GET", "/api/v1/workers", Some(&token)).await;
    assert_eq!(list["bus_connected"], false);
    h.shutdown().await;
}

/// Send one raw request line (reqwest would normalise `..` away).
async fn raw_post(h: &Harness, path: &str, token: &str) -> String {
    let addr = h.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn hostile_worker_names_never_reach_systemctl() {
    let h = Harness::start(no_bus(), stand_in()).await;
    let token = h.admin().await;
    let long = "a".repeat(300);
    let names = ["a%2Fb", "..%2Fbus", "a..b", "bus%20x", "%20bus", "Bus", "MUTATOR", long.as_str(), "-bus", "bus;id"];
    for name in names {
        for route in ["start", "stop"] {
            let (status, body) = h.call("POST", &format!("/api/v1/workers/{name}/{route}"), Some(&token)).await;
            assert!(status == 400 || status == 404, "{name} {route}: {status} {body}");
            assert!(body["error"].is_string(), "{name} {route}: {body}");
        }
    }
    for route in ["start", "stop"] {
        let answer = raw_post(&h, &format!("/api/v1/workers/../{route}"), &token).await;
        let status_line = answer.lines().next().unwrap();
        assert!(status_line.contains(" 400 ") || status_line.contains(" 404 "), "..: {status_line}");
    }
    assert!(h.argv().is_empty(), "systemctl was run: {:?}", h.argv());
    h.shutdown().await;
}

#[tokio::test]
async fn start_runs_systemctl_with_separate_argv_entries() {
    let h = Harness::start(no_bus(), stand_in()).await;
    let token = h.admin().await;
    let (status, body) = h.call("POST", "/api/v1/workers/mutator/start", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"started": true, "worker": "mutator", "unit": "decnet-mutator.service"}));
    assert_eq!(h.argv(), ["start|--no-ask-password|decnet-mutator.service|"]);
    h.shutdown().await;
}

#[tokio::test]
async fn start_failure_reports_returncode_and_stderr() {
    let h = Harness::start(no_bus(), stand_in()).await;
    let token = h.admin().await;
    let (status, body) = h.call("POST", "/api/v1/workers/sniffer/start", Some(&token)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["worker"], "sniffer");
    assert_eq!(body["returncode"], 5);
    assert_eq!(body["stderr"], "Job for decnet-sniffer.service failed: unit not found.");
    assert!(body["error"].as_str().unwrap().contains("decnet-sniffer.service"));
    h.shutdown().await;
}

#[tokio::test]
async fn start_all_starts_installed_known_workers_and_reports_failures() {
    let h = Harness::start(no_bus(), stand_in()).await;
    let token = h.admin().await;
    let (status, body) = h.call("POST", "/api/v1/workers/start-all", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["started"], serde_json::json!(["bus", "mutator"]));
    assert_eq!(
        body["failed"],
        serde_json::json!([{"worker": "sniffer", "returncode": 5,
                            "stderr": "Job for decnet-sniffer.service failed: unit not found."}])
    );
    // `evil` is installed but not on the known list: never started.
    let starts: Vec<_> = h.argv().into_iter().filter(|l| l.starts_with("start|")).collect();
    assert_eq!(
        starts,
        [
            "start|--no-ask-password|decnet-bus.service|",
            "start|--no-ask-password|decnet-mutator.service|",
            "start|--no-ask-password|decnet-sniffer.service|"
        ]
    );
    h.shutdown().await;
}
