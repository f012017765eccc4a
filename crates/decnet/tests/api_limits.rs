//! API hardening, in-process: the real router and accept loop on a real
//! TCP listener (127.0.0.1:0) with a real SQLite file. Failed logins are
//! throttled (429 + Retry-After) per user and address, idle or slow
//! connections are closed after the header-read timeout, the connection
//! limit answers 503 without hurting clients once slots free up, and
//! every SSE stream (topology and attackers) ends when its token expires,
//! or when `decnet user` (another process) deletes or re-roles its user.
//! Failures from many addresses never lock an address the user logged in
//! from, and the token answer is never cached.

mod topo_common;

use decnet::api::events::EventsConfig;
use decnet::api::limits::ApiLimits;
use decnet::api::{self, ApiConfig, AppState};
use decnet::auth::{self, unix_now, Claims, JwtKeys, Role};
use decnet::registry::WorkerRegistry;
use decnet::systemd::Systemctl;
use decnet_bus::sdk::AppBus;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "correct horse battery";

struct Server {
    addr: SocketAddr,
    state: AppState,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(limits: ApiLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
        let hash = auth::hash_password(PASSWORD).unwrap();
        decnet::store::users::create(&pool, "root", &hash, Role::Admin).await.unwrap();
        let state = AppState::new(
            pool,
            JwtKeys::new(b"limits-test-secret", Duration::from_secs(3600)),
            WorkerRegistry::new(vec!["api".into()], Duration::from_secs(90)),
            Arc::new(AppBus::new("api", dir.path().join("no-daemon.sock"))),
            Systemctl::with_search_path(dir.path()),
            ApiConfig::default(),
        )
        .with_limits(limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = state.shutdown.clone();
        tokio::spawn(api::serve(listener, state.clone(), async move { stop.cancelled().await }));
        Server { addr, state, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}

/// A client whose connections come from `ip` (any 127/8 address works on
/// Linux loopback), so the throttle sees distinct peers.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

async fn login(http: &reqwest::Client, s: &Server, password: &str) -> reqwest::Response {
    http.post(s.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "root", "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_passwords_are_throttled_and_another_address_still_logs_in() {
    let s = Server::start(ApiLimits::default()).await;
    let attacker = client_from("127.0.0.1");
    let mut statuses = Vec::new();
    for i in 0..20 {
        let resp = login(&attacker, &s, &format!("guess-{i}")).await;
        let status = resp.status().as_u16();
        if status == 429 {
            let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("too many failed logins"), "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], &[429; 15], "{statuses:?}");
    // Even the right password is refused from the throttled address...
    assert_eq!(login(&attacker, &s, PASSWORD).await.status(), 429);
    // ...but the operator at another address gets in.
    let operator = client_from("127.0.0.2");
    let resp = login(&operator, &s, PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn failures_from_many_addresses_never_lock_the_admin_out_of_their_own() {
    let s = Server::start(ApiLimits::default()).await;
    let admin = client_from("127.0.0.60");
    assert_eq!(login(&admin, &s, PASSWORD).await.status(), 200);
    // Distributed guessing: one failure from each of 20 addresses.
    for i in 0..20 {
        let attacker = client_from(&format!("127.0.1.{}", i + 1));
        assert_eq!(login(&attacker, &s, &format!("guess-{i}")).await.status(), 401);
    }
    // The next fresh address is held back by the per-user count...
    assert_eq!(login(&client_from("127.0.1.99"), &s, "guess-x").await.status(), 429);
    assert_eq!(login(&client_from("127.0.1.98"), &s, PASSWORD).await.status(), 429);
    // ...but the admin's own address, where they logged in before, is not.
    let resp = login(&admin, &s, PASSWORD).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<serde_json::Value>().await.unwrap()["access_token"].is_string());
}

#[tokio::test]
async fn the_token_answer_is_never_cached() {
    let s = Server::start(ApiLimits::default()).await;
    let resp = login(&client_from("127.0.0.61"), &s, PASSWORD).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
    assert_eq!(resp.headers().get("pragma").map(|v| v.to_str().unwrap()), Some("no-cache"));
}

#[tokio::test]
async fn spraying_user_names_from_one_address_is_throttled() {
    let s = Server::start(ApiLimits::default()).await;
    let attacker = client_from("127.0.0.3");
    let mut throttled = 0;
    for i in 0..25 {
        let resp = attacker
            .post(s.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": format!("user{i}"), "password": "x"}))
            .send()
            .await
            .unwrap();
        throttled += usize::from(resp.status() == 429);
    }
    // 20 failures per address (any names) per minute, then 429.
    assert_eq!(throttled, 5);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_header_timeout() {
    let limits = ApiLimits { header_read_timeout: Duration::from_millis(500), ..ApiLimits::default() };
    let s = Server::start(limits).await;
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    // Slow loris: a request line, then nothing.
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    for conn in [&mut idle, &mut slow] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "connection still open after 5 s");
    }
    assert!(started.elapsed() >= Duration::from_millis(400), "closed too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn three_hundred_idle_connections_do_not_stop_health() {
    let s = Server::start(ApiLimits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let resp = tokio::time::timeout(Duration::from_secs(1), reqwest::get(s.url("/api/v1/health")))
        .await
        .expect("/health did not answer within 1 s")
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(idle);
}

#[tokio::test]
async fn over_the_connection_limit_is_503_and_slots_come_back() {
    let limits =
        ApiLimits { max_connections: 20, header_read_timeout: Duration::from_millis(800), ..ApiLimits::default() };
    let s = Server::start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Give the accept loop time to take all 20 slots.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), extra.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    // The idle ones are dropped by the header timeout, freeing their slots.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(r) = http.get(s.url("/api/v1/health")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "/health never came back after the idle connections timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(idle);
}

/// Reads an SSE body to its end; fails if it is still open after `secs`.
async fn read_to_end(mut resp: reqwest::Response, secs: u64, what: &str) -> String {
    assert_eq!(resp.status(), 200, "{what}");
    let mut body = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            body.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(ended.is_ok(), "{what}: stream still open {secs} s after a 2 s token; got:\n{body}");
    body
}

#[tokio::test]
async fn every_event_stream_ends_when_its_token_expires() {
    let events = EventsConfig { keepalive: Duration::from_millis(200), ..EventsConfig::default() };
    let api = topo_common::start(topo_common::BusKind::Down, events).await;
    let id = api.active_topology(&[("d1", &["ssh"])]).await;
    let now = unix_now();
    let token =
        api.state.jwt.sign(&Claims { sub: "victor".into(), role: Role::Viewer, iat: now, exp: now + 2 }).unwrap();
    let (topology, attackers) =
        tokio::join!(async { read_to_end(api.events(&id, &token).await, 6, "topology stream").await }, async {
            let url = api.url(&format!("/api/v1/attackers/stream?token={token}"));
            read_to_end(api.http.get(url).send().await.unwrap(), 6, "attackers stream").await
        },);
    assert!(topology.contains("event: snapshot"), "{topology}");
    assert!(attackers.contains("event: ready"), "{attackers}");
    for body in [&topology, &attackers] {
        assert!(body.contains(": keepalive"), "stream ended before it ran at all:\n{body}");
        assert!(body.contains("event: token_expired"), "{body}");
    }
    // The user's slots are free again: a fresh token opens new streams.
    let fresh = api.state.jwt.issue("victor", Role::Viewer).unwrap().0;
    assert_eq!(api.events(&id, &fresh).await.status(), 200);
    let url = api.url(&format!("/api/v1/attackers/stream?token={fresh}"));
    assert_eq!(api.http.get(url).send().await.unwrap().status(), 200);
}

/// `decnet user ARGS` on `db`, the real binary in its own process.
fn decnet_user(db: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_decnet"))
        .arg("user")
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "decnet user {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_or_changing_their_role_ends_their_streams_at_once() {
    // Keepalives far apart: a stream that ends did so because of the change.
    let events = EventsConfig { keepalive: Duration::from_secs(60), ..EventsConfig::default() };
    let api = topo_common::start(topo_common::BusKind::Down, events).await;
    let id = api.active_topology(&[("d1", &["ssh"])]).await;
    let open = |token: String| {
        let url = api.url(&format!("/api/v1/attackers/stream?token={token}"));
        let (api, id) = (&api, &id);
        async move { (api.events(id, &token).await, api.http.get(url).send().await.unwrap()) }
    };
    // victor (viewer) will be deleted, carol (admin) demoted; alice stays.
    let (victor_topo, victor_att) = open(api.viewer.clone()).await;
    let (carol_topo, carol_att) = open(api.admin2.clone()).await;
    let (alice_topo, _alice_att) = open(api.admin.clone()).await;
    let started = Instant::now();
    decnet_user(&api.db, &["del", "victor"]);
    decnet_user(&api.db, &["role", "carol", "--role", "viewer"]);
    let ends = [
        (victor_topo, "user deleted"),
        (victor_att, "user deleted"),
        (carol_topo, "role changed"),
        (carol_att, "role changed"),
    ];
    for (resp, why) in ends {
        let body = read_to_end(resp, 5, why).await;
        assert!(body.contains("event: revoked") && body.contains(why), "{body}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Nobody else's stream is touched.
    let mut alice = alice_topo;
    let more = tokio::time::timeout(Duration::from_millis(800), async {
        while let Some(chunk) = alice.chunk().await.unwrap() {
            if std::str::from_utf8(&chunk).unwrap().contains("revoked") {
                return true;
            }
        }
        true
    })
    .await;
    assert!(more.is_err(), "alice's stream ended or was revoked");
}

#[tokio::test]
async fn a_password_change_revokes_older_tokens() {
    let s = Server::start(ApiLimits::default()).await;
    let now = unix_now();
    let old =
        s.state.jwt.sign(&Claims { sub: "root".into(), role: Role::Admin, iat: now - 10, exp: now + 600 }).unwrap();
    let http = reqwest::Client::new();
    let workers = |t: String| http.get(s.url("/api/v1/workers")).bearer_auth(t).send();
    assert_eq!(workers(old.clone()).await.unwrap().status(), 200);
    let hash = auth::hash_password("another long password").unwrap();
    assert!(decnet::store::users::set_password(&s.state.pool, "root", &hash).await.unwrap());
    let resp = workers(old).await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("password change"), "{body}");
    // A login with the new password works at once.
    let resp = login(&client_from("127.0.0.4"), &s, "another long password").await;
    assert_eq!(resp.status(), 200);
    let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(workers(token).await.unwrap().status(), 200);
}
