//! Alerts over real processes: `decnet bus`, `decnet api --siem tcp://…`
//! and `decnet pub` as a worker would publish, a webhook receiver and a
//! syslog receiver on loopback. Proves the wiring `decnet api` really
//! runs: its own alerts connection to the bus daemon and the --siem flag.

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::{decnet, free_port, Daemon, Proc, BIN};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decnet_api_sends_one_slack_alert_per_new_attacker_and_exports_to_the_siem() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Daemon::start(dir.path(), &[]);
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    let hash = decnet::auth::hash_password("admin-password-1").unwrap();
    decnet::store::users::create(&pool, "root", &hash, decnet::auth::Role::Admin).await.unwrap();

    // The webhook receiver: records bodies, answers 200.
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = bodies.clone();
    let app = axum::Router::new().route(
        "/hook/secret",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| async move {
            seen.lock().unwrap().push(v);
            "ok"
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook/secret", hook_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(hook_listener, app).await });
    let siem = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _api = Proc(
        Command::new(BIN)
            .args(["api", "--listen", &format!("127.0.0.1:{port}"), "--no-ingest"])
            .arg("--siem")
            .arg(format!("tcp://{}", siem.local_addr().unwrap()))
            .env("DECNET_HOME", dir.path())
            .env("DECNET_DB", dir.path().join("decnet.db"))
            .env("DECNET_BUS_SOCKET", &bus.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let mut token = None;
    for _ in 0..300 {
        if let Ok(r) = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "root", "password": "admin-password-1"}))
            .send()
            .await
        {
            token = r.json::<Value>().await.ok().and_then(|v| v["access_token"].as_str().map(str::to_owned));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token.expect("the API answers a login");
    let resp = http
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"name": "slack", "url": hook_url, "format": "slack", "topics": ["attacker.observed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let observed = r#"{"attacker_ip":"203.0.113.77","decky":"web-01","service":"ssh"}"#;
    let publish = |payload: &'static str| {
        let out = decnet(&bus.socket, &["pub", "attacker.observed", payload, "--type", "observed"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // Until the API's alerts connection has subscribed, events are not
    // heard; the same attacker published again must never alert twice.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bodies.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no alert arrived");
        publish(observed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publish(observed);
    publish(r#"{"attacker_ip":"198.51.100.78","decky":"web-02","service":"http"}"#);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bodies.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "second attacker's alert missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0]["text"].as_str().unwrap().contains("203.0.113.77"));
    assert!(got[1]["text"].as_str().unwrap().contains("198.51.100.78"));

    // The SIEM receiver got the same events as ECS JSON in counted frames.
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), siem.accept()).await.unwrap().unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let docs = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await.expect("SIEM frames").unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let docs = parse_frames(&buf);
        if docs.iter().any(|d| d["source"]["ip"] == "198.51.100.78") {
            break docs;
        }
    };
    let doc = docs.iter().find(|d| d["source"]["ip"] == "198.51.100.78").unwrap();
    assert_eq!(doc["event"]["action"], "attacker.observed");
    assert_eq!(doc["event"]["kind"], "alert");
    assert_eq!(doc["host"]["name"], "web-02");
    assert_eq!(doc["service"]["name"], "http");
    drop(bus);
}

/// Every complete octet-counted frame in `buf`, as the JSON in its MSG.
fn parse_frames(mut buf: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(space) = buf.iter().position(|b| *b == b' ') {
        let n: usize = std::str::from_utf8(&buf[..space]).unwrap().parse().expect("a frame length");
        let Some(msg) = buf.get(space + 1..space + 1 + n) else { break };
        let msg = std::str::from_utf8(msg).unwrap();
        out.push(serde_json::from_str(&msg[msg.find('{').unwrap()..]).expect("valid JSON"));
        buf = &buf[space + 1 + n..];
    }
    out
}
