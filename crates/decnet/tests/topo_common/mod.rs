//! Test harness for the topology routes: the real router on a real TCP
//! listener, a real SQLite file in a temp folder, users in the database,
//! and either an in-process FakeBus hub or no bus at all.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decnet::api::events::{EventStreams, EventsConfig};
use decnet::api::{ApiConfig, AppState};
use decnet::auth::{JwtKeys, Role};
use decnet::registry::WorkerRegistry;
use decnet::store::topology as topo;
use decnet::systemd::Systemctl;
use decnet::topology::{Decky, TopologyStatus};
use decnet_bus::fake::FakeBus;
use decnet_bus::sdk::AppBus;
use decnet_bus::{Bus, BusError, Subscription};
use serde_json::{json, Value};
use sqlx::SqlitePool;

pub enum BusKind {
    Fake,
    Down,
    Shared(Arc<AppBus>),
}

pub struct Api {
    pub base: String,
    /// The SQLite file behind `pool` (for `decnet user` run beside it).
    pub db: std::path::PathBuf,
    pub pool: SqlitePool,
    pub hub: Option<FakeBus>,
    pub state: AppState,
    pub admin: String,
    pub admin2: String,
    pub viewer: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn start(bus: BusKind, events: EventsConfig) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decnet.db");
    let pool = decnet::store::open(&db).await.unwrap();
    for (name, role) in [("alice", Role::Admin), ("carol", Role::Admin), ("victor", Role::Viewer)] {
        // Tokens are issued directly; the hash is never checked here.
        decnet::store::users::create(&pool, name, "unused-hash", role).await.unwrap();
    }
    let (hub, shared): (Option<FakeBus>, Arc<AppBus>) = match bus {
        BusKind::Fake => {
            let hub = FakeBus::new();
            let client = hub.client("api");
            (Some(hub), Arc::new(AppBus::fixed(client)))
        }
        // A real socket path with no daemon behind it: the bus is down.
        BusKind::Down => (None, Arc::new(AppBus::new("api", dir.path().join("no-daemon.sock")))),
        BusKind::Shared(bus) => (None, bus),
    };
    let jwt = JwtKeys::new(b"test-secret-test-secret-test-secret", Duration::from_secs(3600));
    let mut state = AppState::new(
        pool.clone(),
        jwt,
        WorkerRegistry::new(vec!["api".into()], Duration::from_secs(90)),
        shared,
        Systemctl::with_search_path(dir.path()),
        ApiConfig::default(),
    );
    state.event_streams = Arc::new(EventStreams::new(events));
    let token = |user: &str, role| state.jwt.issue(user, role).unwrap().0;
    let (admin, admin2, viewer) =
        (token("alice", Role::Admin), token("carol", Role::Admin), token("victor", Role::Viewer));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = decnet::api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api { base, db, pool, hub, state, admin, admin2, viewer, http: reqwest::Client::new(), _dir: dir }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_parts(req.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_parts(req.send().await.unwrap()).await
    }

    /// A topology created through the store and moved to `active`.
    pub async fn active_topology(&self, deckies: &[(&str, &[&str])]) -> String {
        let deckies: Vec<Decky> = deckies
            .iter()
            .map(|(n, s)| Decky { name: n.to_string(), services: s.iter().map(|x| x.to_string()).collect() })
            .collect();
        let t = topo::create_topology(&self.pool, "lab", &deckies).await.unwrap();
        topo::set_status(&self.pool, &t.id, TopologyStatus::Deploying).await.unwrap();
        topo::set_status(&self.pool, &t.id, TopologyStatus::Active).await.unwrap();
        t.id
    }

    /// Open an SSE stream (token in the query string, as EventSource does).
    pub async fn events(&self, id: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(&format!("/api/v1/topologies/{id}/events?token={token}"))).send().await.unwrap()
    }
}

async fn into_parts(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(json!({ "raw": text })))
}

/// One parsed SSE frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("frame has data")).unwrap()
    }
}

/// Reads SSE frames off a streaming response.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        assert_eq!(resp.status().as_u16(), 200);
        let ctype = resp.headers().get("content-type").unwrap().to_str().unwrap().to_string();
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        SseReader { resp, buf: String::new() }
    }

    /// The next frame, waiting at most 5 s.
    pub async fn next(&mut self) -> Frame {
        tokio::time::timeout(Duration::from_secs(5), self.next_inner()).await.expect("no SSE frame within 5 s")
    }

    /// The next frame that is not a keepalive comment.
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let f = self.next().await;
            if f.comment.is_none() {
                return f;
            }
        }
    }

    async fn next_inner(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame { event: None, data: None, comment: None };
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix(':') {
                        frame.comment = Some(v.trim().to_string());
                    }
                }
                return frame;
            }
            let chunk = self.resp.chunk().await.unwrap().expect("SSE stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// Poll `cond` every 10 ms for up to 5 s.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// A bus that is "connected" but whose subscribe never answers (a daemon
/// wedged mid-handshake, say). Publishes succeed at once, so the routes
/// that publish are not held up; only subscribers wait.
#[derive(Debug, Default)]
pub struct HungBus {
    subscribe_calls: AtomicUsize,
}

impl HungBus {
    /// Subscribe attempts made so far (each one still hanging or timed out).
    pub fn subscribe_calls(&self) -> usize {
        self.subscribe_calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Bus for HungBus {
    fn name(&self) -> &str {
        "api"
    }

    async fn publish(&self, _topic: &str, _event_type: &str, _payload: Value) -> Result<(), BusError> {
        Ok(())
    }

    async fn subscribe_with_capacity(&self, _pattern: &str, _capacity: usize) -> Result<Subscription, BusError> {
        self.subscribe_calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }

    async fn close(&self) {}

    fn is_closed(&self) -> bool {
        false
    }
}
