//! Alerts end to end: the real API (router, SQLite file, alerts loop) on
//! loopback, events published on a FakeBus hub by other "workers", a tiny
//! HTTP webhook receiver and a syslog receiver on 127.0.0.1.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use decnet::alerts::siem::{Siem, SiemConfig};
use decnet::alerts::{Alerts, AlertsConfig};
use decnet::api::{self, ApiConfig, AppState};
use decnet::auth::{self, JwtKeys, Role};
use decnet::registry::WorkerRegistry;
use decnet::systemd::Systemctl;
use decnet_bus::fake::FakeBus;
use decnet_bus::sdk::AppBus;
use decnet_bus::Envelope;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

const ADMIN: (&str, &str) = ("root", "root-password-1");
const VIEWER: (&str, &str) = ("eve", "eve-password-12");
/// The part of a webhook URL that is a secret, as in a Slack URL.
const SECRET_PATH: &str = "/services/T0001/B0001/s3cr3tT0k3n";

/// A webhook receiver: records every body, answers with the queued
/// statuses in order, then 200.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Receiver, String) {
        let rx = Receiver::default();
        rx.answers.lock().unwrap().extend(answers);
        let app = axum::Router::new().route(SECRET_PATH, axum::routing::post(Self::hook)).with_state(rx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{SECRET_PATH}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (rx, url)
    }

    async fn hook(State(rx): State<Receiver>, axum::Json(body): axum::Json<Value>) -> StatusCode {
        rx.bodies.lock().unwrap().push(body);
        let code = rx.answers.lock().unwrap().pop_front().unwrap_or(200);
        StatusCode::from_u16(code).unwrap()
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
    state: AppState,
    hub: FakeBus,
    _dir: tempfile::TempDir,
}

fn fast() -> AlertsConfig {
    AlertsConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_attempts: 4,
        request_timeout: Duration::from_secs(2),
        max_in_flight: 16,
        stale_check: Duration::from_millis(50),
    }
}

impl Api {
    async fn start(siem: Option<Arc<Siem>>) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
        for ((name, pw), role) in [(ADMIN, Role::Admin), (VIEWER, Role::Viewer)] {
            decnet::store::users::create(&pool, name, &auth::hash_password(pw).unwrap(), role).await.unwrap();
        }
        let hub = FakeBus::new();
        let mut alerts = Alerts::new(fast()).with_bus(Arc::new(AppBus::fixed(hub.client("api-alerts"))));
        let with_siem = siem.is_some();
        if let Some(s) = siem {
            alerts = alerts.with_siem(s);
        }
        let state = AppState::new(
            pool,
            JwtKeys::new(b"alerts-test", Duration::from_secs(3600)),
            WorkerRegistry::new(vec!["api".into(), "sniffer".into()], Duration::from_millis(300)),
            Arc::new(AppBus::fixed(hub.client("api"))),
            Systemctl::with_search_path(dir.path().as_os_str()),
            // Short, so the API itself never turns stale during a test.
            ApiConfig { heartbeat_interval: Duration::from_millis(100) },
        )
        .with_alerts(alerts);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = state.shutdown.clone();
        tokio::spawn(api::serve(listener, state.clone(), async move { stop.cancelled().await }));
        // The registry subscribes 2 patterns; the alerts loop, on its own
        // connection, `>` with a SIEM, else the 5 bus topics webhooks take.
        let expected = if with_siem { 3 } else { 7 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while hub.subscription_count() < expected {
            assert!(tokio::time::Instant::now() < deadline, "alerts never subscribed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Api { base, http: reqwest::Client::new(), state, hub, _dir: dir }
    }

    async fn token(&self, (user, pw): (&str, &str)) -> String {
        let resp = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn add(&self, token: &str, body: Value) -> i64 {
        let (status, created) = self.call("POST", "/api/v1/webhooks", token, Some(body)).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_i64().unwrap()
    }

    async fn deliveries(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.call("GET", "/api/v1/webhooks/deliveries?limit=1000", token, None).await;
        assert_eq!(status, 200, "{body}");
        body["deliveries"].as_array().unwrap().clone()
    }

    async fn stop(self) {
        self.state.shutdown.cancel();
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_settled(api: &Api, token: &str, rows: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = api.deliveries(token).await;
        if log.len() >= rows && log.iter().all(|d| d["status"] != "pending") {
            return log;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries never settled: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn slack_gets_one_attacker_observed_per_new_attacker_and_only_admins_manage_webhooks() {
    let api = Api::start(None).await;
    let (rx, url) = Receiver::start(&[]).await;
    let admin = api.token(ADMIN).await;
    let viewer = api.token(VIEWER).await;
    let hook = json!({"name": "soc-slack", "url": url, "format": "slack", "topics": ["attacker.observed"]});

    // Viewers are refused every webhook route.
    assert_eq!(api.call("GET", "/api/v1/webhooks", &viewer, None).await.0, 403);
    assert_eq!(api.call("POST", "/api/v1/webhooks", &viewer, Some(hook.clone())).await.0, 403);
    // Bad input says what is wrong.
    let (status, err) = api
        .call("POST", "/api/v1/webhooks", &admin, Some(json!({"name": "x", "url": url, "topics": ["attacker.scored"]})))
        .await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("unknown topic"), "{err}");

    let id = api.add(&admin, hook.clone()).await;
    assert_eq!(api.call("POST", "/api/v1/webhooks", &admin, Some(hook)).await.0, 409);
    // The URL never comes back: only its redacted form.
    let (_, listed) = api.call("GET", "/api/v1/webhooks", &admin, None).await;
    assert!(!listed.to_string().contains("s3cr3t"), "{listed}");
    assert_eq!(listed["webhooks"][0]["destination"], format!("{}/…", url.split("/services").next().unwrap()));
    assert_eq!(api.call("GET", &format!("/api/v1/webhooks/{id}"), &viewer, None).await.0, 403);

    let profiler = api.hub.client("profiler");
    let sniffer = api.hub.client("sniffer");
    let observed = |ip: &str, decky: &str| json!({"attacker_ip": ip, "decky": decky, "service": "ssh", "ts": 1.0});
    profiler.publish("attacker.observed", "observed", observed("203.0.113.7", "web-01")).await.unwrap();
    // The sniffer reports the same attacker: no second notification.
    sniffer.publish("attacker.observed", "observed", observed("203.0.113.7", "web-02")).await.unwrap();
    profiler.publish("attacker.observed", "observed", observed("198.51.100.4", "<!channel> db-01")).await.unwrap();
    profiler.publish("attacker.scored", "scored", json!({"attacker_ip": "198.51.100.4"})).await.unwrap();
    profiler.publish("attacker.observed", "observed", observed("203.0.113.7", "web-03")).await.unwrap();

    until_settled(&api, &admin, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    for b in &bodies {
        assert!(b["text"].is_string() && b["blocks"].is_array(), "not a Slack message: {b}");
    }
    assert!(bodies[0]["text"].as_str().unwrap().contains("203.0.113.7"));
    assert!(bodies[1]["text"].as_str().unwrap().contains("198.51.100.4"));
    // Attacker text cannot ping the channel.
    assert!(!bodies[1].to_string().contains("<!channel>"), "{}", bodies[1]);
    assert!(bodies[1]["text"].as_str().unwrap().contains("&lt;!channel&gt;"));
    let log = api.deliveries(&admin).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1 && d["topic"] == "attacker.observed"));
    assert!(!Value::Array(log).to_string().contains("s3cr3t"));

    assert_eq!(api.call("DELETE", "/api/v1/webhooks/soc-slack", &admin, None).await.0, 204);
    assert_eq!(api.call("GET", &format!("/api/v1/webhooks/{id}"), &admin, None).await.0, 404);
    api.stop().await;
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_and_a_400_is_not() {
    let api = Api::start(None).await;
    let admin = api.token(ADMIN).await;
    let (rx, url) = Receiver::start(&[500, 503, 200]).await;
    api.add(&admin, json!({"name": "siem-hook", "url": url, "format": "json", "topics": ["credential.captured"]}))
        .await;
    let ingester = api.hub.client("ingester");
    let cred = json!({"attacker_ip": "203.0.113.9", "decky": "web-01", "service": "ssh", "username": "admin", "secret_sha256": "ab"});
    ingester.publish("credential.captured", "credential", cred.clone()).await.unwrap();
    let log = until_settled(&api, &admin, 1).await;
    assert_eq!(rx.bodies().len(), 3, "two failures then a success");
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(rx.bodies()[2]["payload"]["username"], "admin");

    // A 400 is the receiver refusing the body: retrying cannot help.
    rx.answers.lock().unwrap().push_back(400);
    ingester.publish("credential.captured", "credential", cred).await.unwrap();
    let log = until_settled(&api, &admin, 2).await;
    assert_eq!(log[0]["status"], "failed", "{log:?}");
    assert_eq!(log[0]["attempts"], 1);
    assert!(log[0]["last_error"].as_str().unwrap().contains("400"), "{log:?}");
    assert_eq!(rx.bodies().len(), 4);
    api.stop().await;
}

#[tokio::test]
async fn the_rate_limit_holds_per_destination() {
    let api = Api::start(None).await;
    let admin = api.token(ADMIN).await;
    let (slow, slow_url) = Receiver::start(&[]).await;
    let (other, other_url) = Receiver::start(&[]).await;
    let topics = ["attacker.artifact"];
    api.add(&admin, json!({"name": "slow", "url": slow_url, "topics": topics, "rate_per_min": 3})).await;
    api.add(&admin, json!({"name": "other", "url": other_url, "topics": topics, "rate_per_min": 100})).await;
    let ingester = api.hub.client("ingester");
    for n in 0..8 {
        let artifact = json!({"attacker_ip": "203.0.113.1", "decky": "web-01", "sid": "s1", "source": "upload",
                              "path": format!("/tmp/x{n}"), "sha256": "00", "size": 1, "mime": "text/plain"});
        ingester.publish("attacker.artifact", "artifact", artifact).await.unwrap();
    }
    let log = until_settled(&api, &admin, 16).await;
    assert_eq!(slow.bodies().len(), 3, "3 per minute to the limited destination");
    assert_eq!(other.bodies().len(), 8, "the other destination has its own budget");
    let limited = log.iter().filter(|d| d["webhook_name"] == "slow" && d["status"] == "rate_limited").count();
    assert_eq!(limited, 5, "{log:?}");
    api.stop().await;
}

#[tokio::test]
async fn a_test_notification_arrives_or_says_why_not() {
    let api = Api::start(None).await;
    let admin = api.token(ADMIN).await;
    let viewer = api.token(VIEWER).await;
    let (rx, url) = Receiver::start(&[]).await;
    api.add(&admin, json!({"name": "teams", "url": url, "format": "teams", "topics": ["identity.formed"]})).await;
    assert_eq!(api.call("POST", "/api/v1/webhooks/teams/test", &viewer, None).await.0, 403);
    let (status, outcome) = api.call("POST", "/api/v1/webhooks/teams/test", &admin, None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "delivered", "{outcome}");
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["@type"], "MessageCard");
    assert!(bodies[0]["title"].as_str().unwrap().contains("test notification"));

    // A destination nobody listens on: the answer says so, without the secret.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}{SECRET_PATH}", closed.local_addr().unwrap());
    drop(closed);
    api.add(&admin, json!({"name": "dead", "url": dead, "topics": ["worker.stale"]})).await;
    let (_, outcome) = api.call("POST", "/api/v1/webhooks/dead/test", &admin, None).await;
    assert_eq!(outcome["status"], "failed", "{outcome}");
    let error = outcome["error"].as_str().unwrap();
    assert!(!error.is_empty() && !error.contains("s3cr3t"), "{error}");
    api.stop().await;
}

#[tokio::test]
async fn a_worker_turning_stale_is_notified_once() {
    let api = Api::start(None).await;
    let admin = api.token(ADMIN).await;
    let (rx, url) = Receiver::start(&[]).await;
    api.add(&admin, json!({"name": "ops", "url": url, "topics": ["worker.stale"]})).await;
    api.hub.client("sniffer").publish("system.sniffer.health", "health", json!({"worker": "sniffer"})).await.unwrap();
    // Stale window 300 ms, checked every 50 ms.
    eventually("a worker.stale notification", || !rx.bodies().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["topic"], "worker.stale");
    assert_eq!(bodies[0]["payload"]["worker"], "sniffer");
    api.stop().await;
}

/// Read one RFC 6587 octet-counted frame; the JSON after the syslog header.
async fn read_frame(conn: &mut tokio::net::TcpStream) -> Option<Value> {
    let mut len = Vec::new();
    loop {
        let mut b = [0u8; 1];
        if conn.read(&mut b).await.ok()? == 0 {
            return None;
        }
        if b[0] == b' ' {
            break;
        }
        assert!(b[0].is_ascii_digit(), "frame length is not a number");
        len.push(b[0]);
    }
    let n: usize = String::from_utf8(len).unwrap().parse().unwrap();
    let mut msg = vec![0u8; n];
    conn.read_exact(&mut msg).await.ok()?;
    let msg = String::from_utf8(msg).unwrap();
    assert!(msg.starts_with('<') && msg.contains(">1 "), "not RFC 5424: {msg}");
    Some(serde_json::from_str(&msg[msg.find('{').unwrap()..]).expect("valid JSON"))
}

async fn frame_within(conn: &mut tokio::net::TcpStream) -> Value {
    tokio::time::timeout(Duration::from_secs(10), read_frame(conn)).await.expect("a frame in time").expect("a frame")
}

fn siem_to(addr: std::net::SocketAddr, queue: usize) -> Arc<Siem> {
    let mut config = SiemConfig::parse(&format!("tcp://{addr}"), None).unwrap();
    config.queue = queue;
    config.backoff_max = Duration::from_millis(200);
    config.hostname = "master-1".into();
    Siem::new(config)
}

#[tokio::test]
async fn the_siem_receiver_gets_every_event_as_ecs_json_but_no_heartbeats() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Api::start(Some(siem_to(listener.local_addr().unwrap(), 100))).await;
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap().unwrap();
    let worker = api.hub.client("ingester");
    worker.publish("system.sniffer.health", "health", json!({"worker": "sniffer"})).await.unwrap();
    let cred = json!({"attacker_ip": "203.0.113.9", "decky": "web-01", "service": "ssh", "username": "oracle", "secret_sha256": "ab"});
    worker.publish("credential.captured", "credential", cred).await.unwrap();
    worker
        .publish(
            "decky.web-01.mutation",
            "mutation",
            json!({"decky": "web-01", "old_services": [], "new_services": ["ssh"], "trigger": "creation"}),
        )
        .await
        .unwrap();

    let first = frame_within(&mut conn).await;
    assert_eq!(first["event"]["action"], "credential.captured", "heartbeats are not exported: {first}");
    assert_eq!(first["event"]["kind"], "alert");
    assert_eq!(first["source"]["ip"], "203.0.113.9");
    assert_eq!(first["user"]["name"], "oracle");
    assert_eq!(first["host"]["name"], "web-01");
    assert_eq!(first["observer"]["hostname"], "master-1");
    assert!(first["@timestamp"].as_str().unwrap().ends_with('Z'));
    let second = frame_within(&mut conn).await;
    assert_eq!(second["event"]["action"], "decky.web-01.mutation");
    assert_eq!(second["event"]["kind"], "event");
    assert_eq!(second["event"]["category"], json!(["configuration"]));
    let (_, stats) = api.call("GET", "/api/v1/siem", &api.token(ADMIN).await, None).await;
    assert_eq!(stats["enabled"], true);
    assert_eq!(stats["sent"], 2, "{stats}");
    api.stop().await;
}

fn event(n: u32) -> Envelope {
    Envelope {
        v: 1,
        id: format!("e{n}"),
        topic: "attacker.observed".into(),
        event_type: "observed".into(),
        ts: 1_700_000_000.0 + f64::from(n),
        payload: json!({"attacker_ip": format!("203.0.113.{n}"), "decky": "web-01", "service": "ssh"}),
    }
}

#[tokio::test]
async fn a_siem_receiver_down_then_up_gets_the_later_events_and_overflow_is_counted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let siem = siem_to(addr, 3);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(siem.clone().run(cancel.clone()));

    let (mut conn, _) = listener.accept().await.unwrap();
    siem.offer(&event(1));
    assert_eq!(frame_within(&mut conn).await["event"]["id"], "e1");

    // The receiver goes away (listener and connection).
    drop(conn);
    drop(listener);
    eventually("the exporter to notice", || !siem.stats().connected).await;
    // Down: three fit in the queue, two more are dropped and counted.
    for n in 2..=6 {
        siem.offer(&event(n));
    }
    assert_eq!(siem.stats().dropped, 2);
    tokio::time::sleep(Duration::from_millis(300)).await; // a few failed reconnects

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap().unwrap();
    let mut ids: Vec<Value> = Vec::new();
    for _ in 0..3 {
        ids.push(frame_within(&mut conn).await["event"]["id"].clone());
    }
    // And what comes after the outage.
    siem.offer(&event(7));
    ids.push(frame_within(&mut conn).await["event"]["id"].clone());
    assert_eq!(ids, vec![json!("e2"), json!("e3"), json!("e4"), json!("e7")]);
    let stats = siem.stats();
    assert!(stats.reconnects >= 1 && stats.last_error.is_some(), "{stats:?}");
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

/// `decnet webhook …` as an operator types it, against the running API.
async fn cli(api: &Api, token: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_decnet"))
        .arg("webhook")
        .args(args)
        .args(["--api", &api.base])
        .env("DECNET_TOKEN", token)
        .env("DECNET_HOME", api._dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test]
async fn the_webhook_cli_adds_lists_tests_and_deletes_through_the_api() {
    let api = Api::start(None).await;
    let admin = api.token(ADMIN).await;
    let (rx, url) = Receiver::start(&[]).await;
    // The URL comes on stdin: a Slack token stays out of argv.
    let (ok, out, err) = cli(
        &api,
        &admin,
        &["add", "soc", "--format", "slack", "--topic", "attacker.observed,credential.captured"],
        &url,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("added webhook soc") && !out.contains("s3cr3t"), "{out}");

    let (ok, out, _) = cli(&api, &admin, &["list"], "").await;
    assert!(ok);
    assert!(
        out.contains("soc") && out.contains("slack") && out.contains("attacker.observed,credential.captured"),
        "{out}"
    );
    assert!(!out.contains("s3cr3t"), "the URL is redacted: {out}");

    let (ok, out, err) = cli(&api, &admin, &["test", "soc"], "").await;
    assert!(ok, "{err}");
    assert!(out.contains("delivered"), "{out}");
    assert_eq!(rx.bodies().len(), 1);

    let (ok, _, err) = cli(&api, &admin, &["add", "bad", "--url", &url, "--topic", "attacker.scored"], "").await;
    assert!(!ok && err.contains("unknown topic"), "{err}");
    let viewer = api.token(VIEWER).await;
    let (ok, _, err) = cli(&api, &viewer, &["list"], "").await;
    assert!(!ok && err.contains("403"), "{err}");

    let (ok, out, _) = cli(&api, &admin, &["log"], "").await;
    assert!(ok && out.contains("webhook.test") && out.contains("delivered"), "{out}");
    let (ok, _, err) = cli(&api, &admin, &["del", "soc"], "").await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&api, &admin, &["test", "soc"], "").await;
    assert!(!ok && err.contains("404"), "{err}");
    api.stop().await;
}

/// A TLS syslog receiver on loopback with a certificate for 127.0.0.1
/// issued by a CA made in `dir/<ca_name>`; returns the acceptor's address.
async fn tls_receiver(
    dir: &std::path::Path,
    ca_name: &str,
) -> (tokio::net::TcpListener, tokio_rustls::TlsAcceptor, std::path::PathBuf) {
    use decnet::logship::{ca, tls};
    let ca_dir = dir.join(ca_name);
    let ca_cert = ca::init(&ca_dir, ca_name, ca::DEFAULT_CA_DAYS).unwrap();
    let (cert, key) = ca::issue(&ca_dir, "siem", &["127.0.0.1".into()], ca::DEFAULT_DAYS).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(tls::load_certs(&cert).unwrap(), tls::load_key(&key).unwrap())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (listener, tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca_cert)
}

#[tokio::test]
async fn tls_export_verifies_the_receiver_against_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, acceptor, ca_cert) = tls_receiver(dir.path(), "good-ca").await;
    let (_, _, other_ca) = tls_receiver(dir.path(), "other-ca").await;
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let mut out = Vec::new();
        // First the exporter that trusts another CA (its handshakes fail,
        // maybe more than once before it is stopped), then the one that
        // trusts ours.
        for _ in 0..50 {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut buf = vec![0u8; 8192];
                let n = tls.read(&mut buf).await.unwrap();
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                return out;
            }
        }
        out
    });

    let cancel = tokio_util::sync::CancellationToken::new();
    let wrong = Siem::new(SiemConfig::parse(&format!("tls://{addr}"), Some(other_ca)).unwrap());
    let wrong_task = tokio::spawn(wrong.clone().run(cancel.clone()));
    wrong.offer(&event(1));
    eventually("the untrusted receiver to be refused", || wrong.stats().last_error.is_some()).await;
    assert!(!wrong.stats().connected);
    assert_eq!(wrong.stats().sent, 0);
    assert!(wrong.stats().last_error.unwrap().to_lowercase().contains("certificate"), "{:?}", wrong.stats());
    cancel.cancel();
    wrong_task.await.unwrap();

    let cancel = tokio_util::sync::CancellationToken::new();
    let right = Siem::new(SiemConfig::parse(&format!("tls://{addr}"), Some(ca_cert)).unwrap());
    let right_task = tokio::spawn(right.clone().run(cancel.clone()));
    right.offer(&event(2));
    let got = tokio::time::timeout(Duration::from_secs(10), accepting).await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains(r#""id":"e2""#) && got[0].contains(r#""ip":"203.0.113.2""#), "{}", got[0]);
    cancel.cancel();
    right_task.await.unwrap();
}
